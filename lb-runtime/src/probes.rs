//! The probe task: runs the health probes the pool asks for and reports their results.
//! When to probe and what a result means are the pool's decisions.

use crate::failure_log::FailureRun;
use crate::load::io_message;
use crate::net::{connect_failure, Net};
use crate::shared::Shared;
use lb_sans_io::pool::ProbeKind;
use lb_sans_io::{ConnectFailure, ProbeId, ProbeRequest};
use std::future::Future;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// What one probe found: it passed, or its connect failed, and whose fault that was. A
/// local failure (this host out of descriptors, ports or memory) carries the reason, to be
/// logged.
type Outcome = Result<(), (ConnectFailure, Option<String>)>;

/// Drives the pool's probe schedule until `stop` completes.
pub async fn run<N: Net>(net: N, shared: Arc<Shared>, stop: impl Future<Output = ()>) {
    let (tx, mut rx) = mpsc::unbounded_channel::<(ProbeId, Outcome)>();
    let mut local_failures = FailureRun::new("cannot probe backends", "probing again");
    tokio::pin!(stop);
    loop {
        let next = shared.with_pool(|pool, now| {
            pool.handle_timeout(now);
            while let Some(req) = pool.poll_probe(now) {
                net.spawn(probe(net.clone(), req, tx.clone()));
            }
            pool.poll_timeout()
        });
        let deadline = next.map(|t| shared.clock.instant(t));
        tokio::select! {
            biased;
            _ = &mut stop => return,
            Some((id, outcome)) = rx.recv() => {
                let line = match &outcome {
                    Err((_, Some(why))) => local_failures.failed(why, Instant::now()),
                    _ => local_failures.succeeded(Instant::now()),
                };
                if let Some(line) = line {
                    tracing::warn!("{line}");
                }
                shared.with_pool(|pool, now| match outcome {
                    Ok(()) => pool.handle_probe_result(id, true, now),
                    Err((failure, _)) => pool.handle_probe_failed(id, failure, now),
                });
            }
            _ = sleep_until(deadline) => {}
            _ = shared.probes_woken() => {}
        }
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Runs one probe and reports it: passed, or whose fault the failure was (the pool decides
/// what that means).
async fn probe<N: Net>(net: N, req: ProbeRequest, tx: mpsc::UnboundedSender<(ProbeId, Outcome)>) {
    let outcome = match req.kind {
        ProbeKind::TcpConnect => {
            match tokio::time::timeout(req.timeout, net.connect(req.addr)).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => match connect_failure(&e) {
                    ConnectFailure::Local => Err((ConnectFailure::Local, Some(io_message(&e)))),
                    ConnectFailure::Backend => Err((ConnectFailure::Backend, None)),
                },
                Err(_) => Err((ConnectFailure::Backend, None)),
            }
        }
    };
    // The receiver is gone only when the load balancer is stopping.
    let _ = tx.send((req.id, outcome));
}
