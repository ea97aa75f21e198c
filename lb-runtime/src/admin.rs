//! The admin endpoint's plumbing: accepts on the admin address, reads one request head per
//! connection (bounded in size and time), lets `lb_sans_io::admin` answer it under the
//! pool's lock, writes the answer and closes. What each request means is decided there,
//! and so is which connection makes room when every slot is taken
//! ([`lb_sans_io::admin::slots`]): this module tells that connection's task to stop.

use crate::accept::accept_loop;
use crate::clock;
use crate::failure_log::{FailureRun, Throttle};
use crate::net::Net;
use crate::shared::Shared;
use lb_sans_io::admin::slots::{Admission, SlotId, Slots, Stage};
use lb_sans_io::admin::{self, Info, Parsed, Reply, Request, Response};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::oneshot;

/// How long a client may take to send its request head.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// How long writing the answer (and waiting for the client to close after it) may take.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a connection evicted to make room may take to receive its `408`.
const EVICTED_WRITE_TIMEOUT: Duration = Duration::from_secs(1);
/// Admin connections served at once; see [`Slots`] for who makes room for more.
const MAX_CONNECTIONS: usize = 64;

/// The slots, each holding the sender that tells its connection's task it was evicted.
type SlotTable = Arc<Mutex<Slots<oneshot::Sender<()>>>>;

fn lock(slots: &SlotTable) -> MutexGuard<'_, Slots<oneshot::Sender<()>>> {
    // The table is consistent after every call: a panic elsewhere cannot break it.
    slots.lock().unwrap_or_else(|p| p.into_inner())
}

/// Frees the connection's slot when its task ends, however it ends.
struct SlotGuard {
    slots: SlotTable,
    id: SlotId,
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        lock(&self.slots).release(self.id);
    }
}

/// Serves the admin endpoint on `listener` until `stop` completes.
pub async fn serve<N: Net>(
    net: N,
    listener: N::Listener,
    shared: Arc<Shared>,
    info: Info,
    process_metrics: bool,
    stop: impl Future<Output = ()>,
) {
    let slots: SlotTable = Arc::new(Mutex::new(Slots::new(MAX_CONNECTIONS)));
    let failures = FailureRun::new("admin: accept failed", "admin: accepting again");
    // An idle-connection flood evicts (or is refused) once per connection it opens: one
    // line per 10 s says so, with a count.
    let mut full = Throttle::new("admin: every connection slot is taken");
    accept_loop(&net, &listener, failures, stop, |stream, peer| {
        let (evict_tx, evict_rx) = oneshot::channel();
        let admission = lock(&slots).admit(evict_tx);
        let id = match admission {
            Admission::Refused => {
                let why = format!(
                    "refused a connection from {peer} (all {MAX_CONNECTIONS} are being answered)"
                );
                if let Some(line) = full.event(&why, clock::now()) {
                    tracing::warn!("{line}");
                }
                return;
            }
            Admission::Admitted { id, evicted } => {
                if let Some((_, evict)) = evicted {
                    let _ = evict.send(());
                    let why = format!(
                        "closed the oldest connection still waiting for its request (408) to serve one from {peer}"
                    );
                    if let Some(line) = full.event(&why, clock::now()) {
                        tracing::warn!("{line}");
                    }
                }
                id
            }
        };
        let guard = SlotGuard {
            slots: slots.clone(),
            id,
        };
        let shared = shared.clone();
        net.spawn(async move {
            answer(stream, &shared, (&info, process_metrics), &guard, evict_rx).await;
            drop(guard);
        });
    })
    .await;
}

/// One request and its answer; or a `408` as soon as the connection is evicted while it
/// still waits for its request head (or for its client to close after the answer).
async fn answer<S>(
    mut stream: S,
    shared: &Shared,
    (info, process_metrics): (&Info, bool),
    slot: &SlotGuard,
    mut evicted: oneshot::Receiver<()>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    // The sender is sent on (or dropped) only when the slot is taken away.
    let head = tokio::select! {
        biased;
        _ = &mut evicted => None,
        head = tokio::time::timeout(READ_TIMEOUT, read_request(&mut stream)) => Some(head),
    };
    let set_stage = |stage| {
        let mut slots = lock(&slot.slots);
        slots.set_stage(slot.id, stage);
        slots.stage(slot.id).is_some()
    };
    let Some(head) = head.filter(|_| set_stage(Stage::Answer)) else {
        let bytes = admin::evicted().bytes();
        let _ = tokio::time::timeout(EVICTED_WRITE_TIMEOUT, async {
            stream.write_all(&bytes).await?;
            stream.shutdown().await
        })
        .await;
        return;
    };
    let reply = match head {
        Err(_) => admin::timed_out(),
        Ok(None) => return,
        Ok(Some(Err(response))) => admin::reply_to_bad(response),
        Ok(Some(Ok(req))) => {
            let info = Info {
                process: if process_metrics && req.path == "/metrics" {
                    crate::process::stats()
                } else {
                    None
                },
                ..*info
            };
            let reply = shared.with_balancer(|b, now| admin::handle(&req, b, &info, now));
            tracing::debug!(method = ?req.method, path = %req.path, status = reply.response.status, "admin request");
            reply
        }
    };
    let _ = tokio::time::timeout(WRITE_TIMEOUT, async {
        if write_reply(&mut stream, &reply).await {
            set_stage(Stage::Linger);
            tokio::select! {
                biased;
                _ = &mut evicted => {}
                _ = linger(&mut stream) => {}
            }
        }
    })
    .await;
}

/// Reads until a request head is complete (`Ok`) or cannot be one (`Err`, the answer to
/// give); `None` if the client left or the read failed first.
async fn read_request<S: AsyncRead + Unpin>(stream: &mut S) -> Option<Result<Request, Response>> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        match admin::parse_request(&buf) {
            Parsed::Incomplete => continue,
            Parsed::Request(req) => return Some(Ok(req)),
            Parsed::Bad(response) => return Some(Err(response)),
        }
    }
}

/// Writes the answer and ends the write side; false if the client is gone.
async fn write_reply<S: AsyncWrite + Unpin>(stream: &mut S, reply: &Reply) -> bool {
    stream.write_all(&reply.bytes()).await.is_ok() && stream.shutdown().await.is_ok()
}

/// After the answer: reads what the client still sends (a request body, say) until it
/// closes, so unread bytes do not turn the close into a reset that could destroy the
/// answer in flight.
async fn linger<S: AsyncRead + Unpin>(stream: &mut S) {
    let mut sink = [0u8; 2048];
    let mut left = admin::MAX_HEAD * 8;
    while left > 0 {
        match stream.read(&mut sink).await {
            Ok(0) | Err(_) => return,
            Ok(n) => left = left.saturating_sub(n),
        }
    }
}
