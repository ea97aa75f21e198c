//! The probe task: runs the health probes the pool asks for and reports their results.
//! When to probe and what a result means are the pool's decisions.

use crate::failure_log::FailureRun;
use crate::load::io_message;
use crate::net::{connect_failure, Net};
use crate::shared::Shared;
use lb_sans_io::{ConnectFailure, ProbeId, ProbeRequest};
use std::future::Future;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// What one probe found; the pool decides what each means.
enum Outcome {
    Passed,
    /// The backend refused, reset, timed out or answered wrong ([`ConnectFailure::Backend`]).
    Failed,
    /// This host is out of descriptors, ports or memory ([`ConnectFailure::Local`]); the
    /// reason, for the log.
    LocalFailure(String),
}

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
                    Outcome::LocalFailure(why) => local_failures.failed(why, Instant::now()),
                    Outcome::Passed | Outcome::Failed => local_failures.succeeded(Instant::now()),
                };
                if let Some(line) = line {
                    tracing::warn!("{line}");
                }
                shared.with_pool(|pool, now| match outcome {
                    Outcome::Passed => pool.handle_probe_result(id, true, now),
                    Outcome::Failed => pool.handle_probe_failed(id, ConnectFailure::Backend, now),
                    Outcome::LocalFailure(_) => {
                        pool.handle_probe_failed(id, ConnectFailure::Local, now)
                    }
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
/// what that means). The timeout bounds the connect and the exchange together.
async fn probe<N: Net>(net: N, req: ProbeRequest, tx: mpsc::UnboundedSender<(ProbeId, Outcome)>) {
    let outcome = tokio::time::timeout(req.timeout, check(&net, &req))
        .await
        .unwrap_or(Outcome::Failed);
    // The receiver is gone only when the load balancer is stopping.
    let _ = tx.send((req.id, outcome));
}

/// Connects, writes what the probe sends, and reads until the probe's kind has a verdict.
async fn check<N: Net>(net: &N, req: &ProbeRequest) -> Outcome {
    let mut stream = match net.connect(req.addr).await {
        Ok(s) => s,
        Err(e) => {
            return match connect_failure(&e) {
                ConnectFailure::Local => Outcome::LocalFailure(io_message(&e)),
                ConnectFailure::Backend => Outcome::Failed,
            }
        }
    };
    let request = req.kind.request();
    if !request.is_empty() && stream.write_all(request).await.is_err() {
        return Outcome::Failed;
    }
    let mut reply = Vec::new();
    let mut chunk = [0u8; 2048];
    let passed = loop {
        if let Some(verdict) = req.kind.judge(&reply, false) {
            break verdict;
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => break req.kind.judge(&reply, true) == Some(true),
            Ok(n) => reply.extend_from_slice(&chunk[..n]),
        }
    };
    if passed {
        Outcome::Passed
    } else {
        Outcome::Failed
    }
}
