//! The probe task: runs the health probes the pools ask for and reports their outcomes,
//! and asks DNS the pools' discovery questions and reports the answers.
//! When to probe, when a probe has taken too long and what an outcome means are the
//! pools' decisions; this task connects, moves the probe's bytes, and stops a probe as
//! soon as the pool no longer waits for it (it timed out, or its backend was removed).

use crate::clock;
use crate::failure_log::FailureRun;
use crate::load::io_message;
use crate::net::{connect_failure, Net};
use crate::shared::Shared;
use lb_sans_io::{CheckFailure, ConnectFailure, PoolId, ProbeId, ProbeOutcome, ProbeRequest};
use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

/// Drives the pools' probe schedules until `stop` completes.
pub async fn run<N: Net>(net: N, shared: Arc<Shared>, stop: impl Future<Output = ()>) {
    let (tx, mut rx) = mpsc::unbounded_channel::<((PoolId, ProbeId), ProbeOutcome)>();
    // Dropping a probe's sender stops it.
    let mut running: BTreeMap<(PoolId, ProbeId), oneshot::Sender<()>> = BTreeMap::new();
    let mut local_failures = FailureRun::new("cannot probe backends", "probing again");
    let (dns_tx, mut dns_rx) = mpsc::unbounded_channel();
    tokio::pin!(stop);
    loop {
        let next = shared.with_balancer(|b, now| {
            b.handle_timeout(now);
            running.retain(|(pool, id), _| b.probe_pending(*pool, *id));
            while let Some((pool, req)) = b.poll_probe(now) {
                let (cancel_tx, cancel_rx) = oneshot::channel();
                running.insert((pool, req.id), cancel_tx);
                net.spawn(probe(net.clone(), pool, req, cancel_rx, tx.clone()));
            }
            while let Some((pool, query)) = b.poll_discovery(now) {
                let (net, dns_tx) = (net.clone(), dns_tx.clone());
                net.clone().spawn(async move {
                    let answer = net.resolve(query).await;
                    let _ = dns_tx.send((pool, answer));
                });
            }
            b.poll_timeout()
        });
        let deadline = next.map(|t| shared.clock.instant(t));
        tokio::select! {
            biased;
            _ = &mut stop => return,
            Some((id, outcome)) = rx.recv() => {
                running.remove(&id);
                let line = match &outcome {
                    ProbeOutcome::NotRun(why) => local_failures.failed(why, clock::now()),
                    _ => local_failures.succeeded(clock::now()),
                };
                if let Some(line) = line {
                    tracing::warn!("{line}");
                }
                shared.with_balancer(|b, now| b.handle_probe_result(id.0, id.1, outcome, now));
            }
            Some((pool, answer)) = dns_rx.recv() => {
                shared.with_balancer(|b, now| b.handle_discovery(pool, answer, now));
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

/// Runs one probe until it has an outcome or is cancelled, and reports the outcome.
async fn probe<N: Net>(
    net: N,
    pool: PoolId,
    req: ProbeRequest,
    cancel: oneshot::Receiver<()>,
    tx: mpsc::UnboundedSender<((PoolId, ProbeId), ProbeOutcome)>,
) {
    tokio::select! {
        biased;
        // The sender is dropped when the pool no longer waits for this probe.
        _ = cancel => {}
        outcome = check(&net, &req) => {
            // The receiver is gone only when the load balancer is stopping.
            let _ = tx.send(((pool, req.id), outcome));
        }
    }
}

/// Connects, writes what the probe sends, and reads until the probe's kind has a verdict.
async fn check<N: Net>(net: &N, req: &ProbeRequest) -> ProbeOutcome {
    let mut stream = match net.connect(req.addr).await {
        Ok(s) => s,
        Err(e) => return connect_outcome(&e),
    };
    let request = req.kind.request();
    if !request.is_empty() && stream.write_all(request).await.is_err() {
        return ProbeOutcome::Failed(CheckFailure::Closed);
    }
    let mut reply = Vec::new();
    let mut chunk = [0u8; 2048];
    loop {
        match req.kind.judge(&reply, false) {
            Some(Ok(())) => return ProbeOutcome::Passed,
            Some(Err(why)) => return ProbeOutcome::Failed(why),
            None => {}
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return req.kind.judge_end(&reply),
            Ok(n) => reply.extend_from_slice(&chunk[..n]),
        }
    }
}

/// What a failed connect means for a probe: this host's problem, a refusal, or another
/// failure in the system's words.
fn connect_outcome(e: &io::Error) -> ProbeOutcome {
    match connect_failure(e) {
        ConnectFailure::Local => ProbeOutcome::NotRun(io_message(e)),
        ConnectFailure::Backend if e.kind() == io::ErrorKind::ConnectionRefused => {
            ProbeOutcome::Failed(CheckFailure::Refused)
        }
        ConnectFailure::Backend => ProbeOutcome::Failed(CheckFailure::Connect(io_message(e))),
    }
}
