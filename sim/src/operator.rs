//! The operator: a host that sends the plan's admin requests (drain, disable, enable,
//! weight) to
//! the load balancers' real admin endpoints over the simulated network (by pool, as
//! `/pools/POOL/backends/NAME/...`, in a `services` plan), and records when
//! each was sent, when its answer came and what status it had. (Reloads and the stop are
//! not network requests: the run sends them on the nodes' control channels.)

use crate::net::sim_now;
use crate::scenario::{OpAction, Plan, ADMIN_PORT};
use crate::trace::Trace;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use turmoil::net::TcpStream;

/// How long one admin request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// One operator action, as carried out.
#[derive(Clone, Debug)]
pub struct OpRecord {
    /// What was asked.
    pub action: OpAction,
    /// When it was sent (an admin request) or handed to the nodes (a reload).
    pub sent: Duration,
    /// When the answer came (admin requests only).
    pub answered: Option<Duration>,
    /// The HTTP status of the answer (admin requests only).
    pub status: Option<u16>,
    /// A reload's config was valid (reloads only).
    pub valid: bool,
}

/// The operator host's software: every admin request of the plan, at its time.
pub async fn run(
    plan: Arc<Plan>,
    records: Arc<Mutex<Vec<OpRecord>>>,
    trace: Trace,
) -> turmoil::Result {
    for &(at, action) in &plan.ops {
        let OpAction::Admin {
            lb,
            backend,
            action: what,
        } = action
        else {
            continue;
        };
        if sim_now() < at {
            tokio::time::sleep(at - sim_now()).await;
        }
        let sent = sim_now();
        trace.push(sent, "op", format!("{action}"));
        // With several pools (whose backend names repeat), by pool.
        let path = match &plan.services {
            Some(s) => format!(
                "/pools/{}/backends/{}/{}",
                s.pools[plan.pool_of(backend)].name,
                s.backend_name(backend),
                what.name()
            ),
            None => format!("/backends/b{backend}/{}", what.name()),
        };
        let body = match what {
            crate::scenario::AdminAction::Weight(w) => format!("{{\"weight\": {w}}}"),
            _ => String::new(),
        };
        let status = tokio::time::timeout(REQUEST_TIMEOUT, post(lb, &path, &body))
            .await
            .ok()
            .flatten();
        let answered = status.map(|_| sim_now());
        trace.push(sim_now(), "op", format!("{action}: answered {status:?}"));
        records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(OpRecord {
                action,
                sent,
                answered,
                status,
                valid: true,
            });
    }
    Ok(())
}

/// `POST path` to load balancer `lb`'s admin endpoint: the answer's status.
async fn post(lb: usize, path: &str, body: &str) -> Option<u16> {
    let ip = turmoil::lookup(format!("lb{lb}"));
    let mut stream = TcpStream::connect((ip, ADMIN_PORT)).await.ok()?;
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: sim\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
        }
    }
    let line = answer.split(|&b| b == b'\r').next()?;
    let code = std::str::from_utf8(line).ok()?.split(' ').nth(1)?;
    code.parse().ok()
}
