//! The probe task: runs the health probes the pool asks for and reports their results.
//! When to probe and what a result means are the pool's decisions.

use crate::net::Net;
use crate::shared::Shared;
use lb_sans_io::pool::ProbeKind;
use lb_sans_io::{ProbeId, ProbeRequest};
use std::future::Future;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Drives the pool's probe schedule until `stop` completes.
pub async fn run<N: Net>(net: N, shared: Arc<Shared>, stop: impl Future<Output = ()>) {
    let (tx, mut rx) = mpsc::unbounded_channel::<(ProbeId, bool)>();
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
            Some((id, passed)) = rx.recv() => {
                shared.with_pool(|pool, now| pool.handle_probe_result(id, passed, now));
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

async fn probe<N: Net>(net: N, req: ProbeRequest, tx: mpsc::UnboundedSender<(ProbeId, bool)>) {
    let passed = match req.kind {
        ProbeKind::TcpConnect => matches!(
            tokio::time::timeout(req.timeout, net.connect(req.addr)).await,
            Ok(Ok(_))
        ),
    };
    // The receiver is gone only when the load balancer is stopping.
    let _ = tx.send((req.id, passed));
}
