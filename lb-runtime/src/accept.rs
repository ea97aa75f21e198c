//! The one accept loop: client listeners, the admin endpoint and the demo backends all
//! accept through it, and so do the workers taking clients from each other's queues. A
//! failed accept (out of descriptors, say) is logged through a [`FailureRun`] (the first
//! failure, a reminder every 10 s, the recovery) and retried after a short pause, so the
//! loop never spins and never ends on an error.

use crate::clock;
use crate::failure_log::FailureRun;
use crate::load::io_message;
use crate::net::{AcceptFuture, Net};
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

/// How long to wait before accepting again after `accept` failed.
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(10);

/// Accepts on `listener` until `stop` completes, handing each client to `on_accept`.
/// Failures are logged through `failures`.
pub async fn accept_loop<N: Net>(
    net: &N,
    listener: &N::Listener,
    failures: FailureRun,
    stop: impl Future<Output = ()>,
    on_accept: impl FnMut(N::Stream, SocketAddr),
) {
    accept_each(|| net.accept(listener), failures, stop, on_accept).await;
}

/// The loop itself, over any way of accepting (`next` starts one accept, as
/// [`Net::accept`] or [`Net::take_while`]): accepts until `stop` completes, handing each
/// client to `on_accept`. Failures are logged through `failures`.
pub async fn accept_each<'a, S>(
    mut next: impl FnMut() -> AcceptFuture<'a, S>,
    mut failures: FailureRun,
    stop: impl Future<Output = ()>,
    mut on_accept: impl FnMut(S, SocketAddr),
) {
    tokio::pin!(stop);
    loop {
        tokio::select! {
            biased;
            _ = &mut stop => return,
            accepted = next() => match accepted {
                Ok((stream, peer)) => {
                    if let Some(line) = failures.succeeded(clock::now()) {
                        tracing::info!("{line}");
                    }
                    on_accept(stream, peer);
                }
                Err(e) => {
                    if let Some(line) = failures.failed(&io_message(&e), clock::now()) {
                        tracing::warn!("{line}");
                    }
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
        }
    }
}
