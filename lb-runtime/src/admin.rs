//! The admin endpoint's plumbing: accepts on the admin address, reads one request head per
//! connection (bounded in size and time), lets `lb_sans_io::admin` answer it under the
//! pool's lock, writes the answer and closes. What each request means is decided there.

use crate::accept::accept_loop;
use crate::failure_log::FailureRun;
use crate::net::Net;
use crate::shared::Shared;
use lb_sans_io::admin::{self, Info, Parsed, Reply, Request, Response};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;

/// How long a client may take to send its request head.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// How long writing the answer may take.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Admin connections served at once; more are closed at accept.
const MAX_CONNECTIONS: usize = 64;

/// Serves the admin endpoint on `listener` until `stop` completes.
pub async fn serve<N: Net>(
    net: N,
    listener: N::Listener,
    shared: Arc<Shared>,
    info: Info,
    stop: impl Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let failures = FailureRun::new("admin: accept failed", "admin: accepting again");
    accept_loop(&net, &listener, failures, stop, |stream, peer| {
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "admin: {MAX_CONNECTIONS} requests already open; closing");
            return;
        };
        let shared = shared.clone();
        net.spawn(async move {
            answer(stream, &shared, &info).await;
            drop(slot);
        });
    })
    .await;
}

/// One request and its answer.
async fn answer<S>(mut stream: S, shared: &Shared, info: &Info)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let reply = match tokio::time::timeout(READ_TIMEOUT, read_request(&mut stream)).await {
        Err(_) => admin::timed_out(),
        Ok(None) => return,
        Ok(Some(Err(response))) => admin::reply_to_bad(response),
        Ok(Some(Ok(req))) => {
            let reply = shared.with_pool(|pool, now| admin::handle(&req, pool, info, now));
            tracing::debug!(method = ?req.method, path = %req.path, status = reply.response.status, "admin request");
            reply
        }
    };
    let _ = tokio::time::timeout(WRITE_TIMEOUT, write_reply(&mut stream, &reply)).await;
}

/// Reads until a request head is complete (`Ok`) or cannot be one (`Err`, the answer to
/// give); `None` if the client left or the read failed first.
async fn read_request<S: tokio::io::AsyncRead + Unpin>(
    stream: &mut S,
) -> Option<Result<Request, Response>> {
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

/// Writes the answer, then ends the write side and reads what the client still sends
/// (a request body, say) until it closes, so unread bytes do not turn the close into a
/// reset that could destroy the answer in flight.
async fn write_reply<S>(stream: &mut S, reply: &Reply)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    if stream.write_all(&reply.bytes()).await.is_err() || stream.shutdown().await.is_err() {
        return;
    }
    let mut sink = [0u8; 2048];
    let mut left = admin::MAX_HEAD * 8;
    while left > 0 {
        match stream.read(&mut sink).await {
            Ok(0) | Err(_) => return,
            Ok(n) => left = left.saturating_sub(n),
        }
    }
}
