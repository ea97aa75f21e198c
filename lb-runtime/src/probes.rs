//! The probe task: runs the health probes the pool asks for and reports their results.
//! When to probe and what a result means are the pool's decisions.

use crate::load::io_message;
use crate::net::{connect_failure, Net};
use crate::shared::Shared;
use lb_sans_io::pool::ProbeKind;
use lb_sans_io::{ConnectFailure, ProbeId, ProbeRequest};
use std::future::Future;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Drives the pool's probe schedule until `stop` completes.
pub async fn run<N: Net>(net: N, shared: Arc<Shared>, stop: impl Future<Output = ()>) {
    let (tx, mut rx) = mpsc::unbounded_channel::<(ProbeId, Outcome)>();
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
                shared.with_pool(|pool, now| match outcome {
                    Outcome::Passed => pool.handle_probe_result(id, true, now),
                    Outcome::Failed => pool.handle_probe_result(id, false, now),
                    Outcome::NotRun => pool.handle_probe_not_run(id, now),
                });
            }
            _ = sleep_until(deadline) => {}
        }
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// What became of one probe.
#[derive(Clone, Copy, Debug)]
enum Outcome {
    Passed,
    Failed,
    /// This host could not open the connection (see `net::connect_failure`).
    NotRun,
}

async fn probe<N: Net>(net: N, req: ProbeRequest, tx: mpsc::UnboundedSender<(ProbeId, Outcome)>) {
    let outcome = match req.kind {
        ProbeKind::TcpConnect => {
            match tokio::time::timeout(req.timeout, net.connect(req.addr)).await {
                Ok(Ok(_)) => Outcome::Passed,
                Ok(Err(e)) => match connect_failure(&e) {
                    ConnectFailure::Local => {
                        tracing::warn!("cannot probe {}: {}", req.addr, io_message(&e));
                        Outcome::NotRun
                    }
                    ConnectFailure::Backend => Outcome::Failed,
                },
                Err(_) => Outcome::Failed,
            }
        }
    };
    // The receiver is gone only when the load balancer is stopping.
    let _ = tx.send((req.id, outcome));
}
