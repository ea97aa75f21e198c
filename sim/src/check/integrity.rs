//! End-to-end integrity of every client connection, and the cause of every close.
//!
//! - `bytes`: what a client sent reached at most one backend connection, as a prefix of
//!   what it sent (all of it when the connection completed), and what the client read is
//!   a prefix of what that backend wrote (all of it on completion). Requests name their
//!   connection, so the backend side is found by content.
//! - `close-cause`: a connection that did not complete was closed either by a timeout
//!   (the client paused at least `timeouts.idle`) or by a fault on its own path: the
//!   backend it was connected to was unreachable at some time during the connection, or
//!   every backend it tried was, or the pool had no backend up when it arrived.
//! - `retries`: a connection given up on before `retries + 1` attempts had no backend
//!   left that was up and reachable.
//! - `liveness`: every connection of the liveness phase (all faults healed) completes.

use super::flows::{Flow, Flows};
use super::{secs, stamp, violation, Violation};
use crate::client::{Outcome, Phase};
use crate::net::Origin;
use crate::run::{mask_names, Observations};
use crate::scenario::OpAction;
use std::collections::BTreeMap;

/// What a backend connection received from the client: everything after the PROXY
/// header, when the run sends one (its checks are `proxy`'s).
pub fn payload<'a>(obs: &Observations, data: &'a [u8]) -> &'a [u8] {
    if obs.plan.proxy.is_none() {
        return data;
    }
    match lb_runtime::demo::proxy::parse(data) {
        lb_runtime::demo::proxy::Parsed::Header(len, _) => &data[len..],
        _ => data,
    }
}

/// The session id a backend connection carries: `GET /ID/...` or `POST /ID/...` (after
/// the ClientHello the client sent first, if any).
pub fn session_id(data: &[u8]) -> Option<&str> {
    let data = crate::services::after_hello(data)?;
    let rest = data
        .strip_prefix(b"GET /")
        .or_else(|| data.strip_prefix(b"POST /"))?;
    let end = rest.iter().position(|&b| b == b'/')?;
    std::str::from_utf8(&rest[..end]).ok()
}

fn first_difference(a: &[u8], b: &[u8]) -> usize {
    a.iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .unwrap_or(a.len().min(b.len()))
}

/// Whether `flow` was refused at once because its client had `per_client.max_connections`
/// admitted connections open at that moment.
pub fn refused_per_client(obs: &Observations, flows: &Flows, lb: usize, flow: &Flow) -> bool {
    let Some(max) = obs.plan.per_client_max else {
        return false;
    };
    let t = flow.accepted;
    let open = flows.per_lb[lb]
        .iter()
        .filter(|f| f.peer.ip() == flow.peer.ip() && !f.connects.is_empty())
        .filter(|f| f.accepted <= t && f.closed.is_none_or(|c| c >= t))
        .count();
    flow.connects.is_empty() && open >= max as usize
}

/// The session whose bytes a backend stream carried, found through the load balancer's
/// sockets rather than by content: the load balancer's connection from the stream's peer
/// address, the flow that made it, and the client connection of that flow. For streams
/// cut before their session's name arrived (inside a ClientHello, say).
fn carried_by_address<'a>(
    obs: &'a Observations,
    flows: &Flows,
    stream: &crate::net::StreamRec,
) -> Option<&'a str> {
    let Origin::Accepted { peer, .. } = stream.origin else {
        return None;
    };
    let lb = obs.lb_addrs.iter().position(|ip| *ip == peer.ip())?;
    let log = &obs.lb_logs[lb];
    // The latest of the load balancer's connections from that address opened by then.
    let connect = log
        .streams
        .iter()
        .filter(|st| st.local == Some(peer) && st.opened <= stream.opened + SLACK)
        .filter_map(|st| match st.origin {
            Origin::Connected { connect } => Some((st.opened, connect)),
            Origin::Accepted { .. } => None,
        })
        .max()?
        .1;
    let task = log.connects[connect].task?;
    let flow = flows.per_lb[lb].iter().find(|f| f.task == Some(task))?;
    obs.sessions
        .iter()
        .find(|s| {
            s.lb == lb
                && s.local == Some(flow.peer)
                && s.start <= flow.accepted + SLACK
                && flow.accepted <= s.end + SLACK
        })
        .map(|s| s.id.as_str())
}

/// How far apart two hosts' readings of the simulated clock may be.
const SLACK: std::time::Duration = std::time::Duration::from_millis(10);

/// Backend connections (backend, stream) by the session they carried: by the name in
/// their requests, else through the load balancer's sockets.
pub fn carried<'a>(obs: &'a Observations, flows: &Flows) -> BTreeMap<&'a str, Vec<(usize, usize)>> {
    let mut carried: BTreeMap<&str, Vec<(usize, usize)>> = BTreeMap::new();
    for (b, log) in obs.backend_logs.iter().enumerate() {
        for (i, s) in log.streams.iter().enumerate() {
            let data = payload(obs, &s.data_in);
            let id = match session_id(data) {
                Some(id) => Some(id),
                // Cut inside (or right after) a ClientHello.
                None if data.first() == Some(&22) => carried_by_address(obs, flows, s),
                None => None,
            };
            if let Some(id) = id {
                carried.entry(id).or_default().push((b, i));
            }
        }
    }
    carried
}

/// Runs the checks of this module.
pub fn check(obs: &Observations, flows: &Flows, out: &mut Vec<Violation>) {
    let carried = carried(obs, flows);
    let plan = &obs.plan;
    let n = plan.backends.len();
    let pools = plan.pools();
    let mut stamp_from = out.len();
    let mut stamp_at = None;
    for s in &obs.sessions {
        stamp(out, stamp_from, stamp_at);
        stamp_from = out.len();
        stamp_at = Some(s.end);
        let at = format!(
            "{} ({}, {}..{})",
            s.id,
            s.kind.name(),
            secs(s.start),
            secs(s.end)
        );
        let conns = carried.get(s.id.as_str()).map(Vec::as_slice).unwrap_or(&[]);
        let complete = s.outcome == Outcome::Complete;
        match conns {
            [] => {
                if !s.recv.is_empty() || complete {
                    violation(
                        out,
                        "bytes",
                        format!(
                            "{at}: read {} bytes ({:?}) but no backend connection carried it",
                            s.recv.len(),
                            s.outcome
                        ),
                    );
                }
            }
            [(b, i)] => {
                let rec = &obs.backend_logs[*b].streams[*i];
                let data_in = payload(obs, &rec.data_in);
                if !s.sent.starts_with(data_in) {
                    violation(
                        out,
                        "bytes",
                        format!(
                            "{at}: backend b{b} received {} bytes that are not what the client sent ({} bytes); first difference at byte {}",
                            data_in.len(),
                            s.sent.len(),
                            first_difference(data_in, &s.sent)
                        ),
                    );
                }
                if !rec.data_out.starts_with(&s.recv) {
                    violation(
                        out,
                        "bytes",
                        format!(
                            "{at}: client read {} bytes that backend b{b} did not send ({} bytes); first difference at byte {}",
                            s.recv.len(),
                            rec.data_out.len(),
                            first_difference(&rec.data_out, &s.recv)
                        ),
                    );
                }
                if complete && (data_in.len() != s.sent.len() || rec.data_out.len() != s.recv.len())
                {
                    violation(
                        out,
                        "bytes",
                        format!(
                            "{at}: completed, but client sent {} / backend b{b} received {}, backend sent {} / client read {}",
                            s.sent.len(),
                            data_in.len(),
                            rec.data_out.len(),
                            s.recv.len()
                        ),
                    );
                }
            }
            many => {
                let names: Vec<String> = many.iter().map(|(b, _)| format!("b{b}")).collect();
                violation(
                    out,
                    "bytes",
                    format!(
                        "{at}: its bytes reached {} backend connections ({})",
                        many.len(),
                        names.join(", ")
                    ),
                );
            }
        }

        // Why did it end? (Around a stop, for clients outside `allow`, for clients no pool
        // takes and for listeners not configured when the client came, the `stop`,
        // `allow`, `route` and `listeners` checks judge.)
        if !obs.allowed(s.client) || matches!(s.phase, Phase::Stopping { .. } | Phase::Stopped) {
            continue;
        }
        let Some(pool) = plan.expected_pool(s.listener, &s.greeting) else {
            continue;
        };
        if super::services::listener_state(obs, s.listener, s.start) != Some(true) {
            continue;
        }
        // A connection attempt under way while a reload removed its listener is refused.
        if s.outcome == Outcome::ConnectFailed
            && super::services::listener_state_over(obs, s.listener, s.start, s.end) != Some(true)
        {
            continue;
        }
        let pool_mask = pools[pool].mask();
        // A close with no cause of its own while a reload was applied is the reload's.
        let cause_check = if obs.ops.iter().any(|o| {
            matches!(o.action, OpAction::Reload(_)) && o.sent >= s.start && o.sent <= s.end
        }) {
            "reload"
        } else {
            "close-cause"
        };
        match s.outcome {
            Outcome::Complete => continue,
            Outcome::TimedOut => {
                violation(
                    out,
                    "close-cause",
                    format!("{at}: neither served nor closed by the load balancer (client deadline passed; answered {}/{})", s.answered, s.requests),
                );
                continue;
            }
            Outcome::ConnectFailed => {
                violation(
                    out,
                    cause_check,
                    format!("{at}: could not connect to lb{}", s.lb),
                );
                continue;
            }
            Outcome::Refused | Outcome::Cut => {}
        }
        if s.phase == Phase::Liveness {
            // Lanes of one client host share its address: `per_client` may refuse one.
            let local = s.local;
            if local
                .and_then(|l| flows.find(s.lb, l, s.start, s.end))
                .is_some_and(|f| refused_per_client(obs, flows, s.lb, f))
            {
                continue;
            }
            violation(
                out,
                "liveness",
                format!(
                    "{at}: {:?} in the liveness phase (every fault healed); answered {}/{}",
                    s.outcome, s.answered, s.requests
                ),
            );
            continue;
        }
        if s.stall.is_some_and(|(a, b)| b - a >= plan.lb.idle_timeout) {
            continue; // the idle timeout closed it
        }
        let Some(local) = s.local else { continue };
        let Some(flow) = flows.find(s.lb, local, s.start, s.end) else {
            violation(
                out,
                "close-cause",
                format!("{at}: {:?}, and lb{} has no record of it", s.outcome, s.lb),
            );
            continue;
        };
        let log = &obs.lb_logs[s.lb];
        if let Some(x) = flow.established {
            if !obs.unreachable_during(x, s.start, s.end) {
                violation(
                    out,
                    cause_check,
                    format!(
                        "{at}: {:?} on b{x} (answered {}/{}, client {}) with no fault on its path and no timeout",
                        s.outcome,
                        s.answered,
                        s.requests,
                        if s.reset { "reset" } else { "saw end of stream" }
                    ),
                );
            }
            continue;
        }
        let tried: Vec<usize> = flow.targets.iter().flatten().copied().collect();
        if tried.is_empty() {
            // Refused at once: only right when the pool had no backend up, or the client
            // had `per_client.max_connections` open already.
            let t = flow.accepted;
            if refused_per_client(obs, flows, s.lb, flow) {
                continue;
            }
            // (Decided when it was routed: at once, or, on an `sni` listener, once its
            // ClientHello was read; by the close in any case.)
            let decided = flow.closed.unwrap_or(t).max(t);
            let mut around = vec![t.saturating_sub(plan.tick), t, decided + plan.tick];
            around.extend(
                obs.pool_states[s.lb]
                    .iter()
                    .map(|&(at, _)| at)
                    .filter(|&at| at >= t && at <= decided + plan.tick),
            );
            if around
                .iter()
                .all(|&u| obs.up_mask_at(s.lb, u) & pool_mask != 0)
            {
                violation(
                    out,
                    cause_check,
                    format!(
                        "{at}: refused at once although lb{} had {} of pool {} up",
                        s.lb,
                        mask_names(obs.up_mask_at(s.lb, t) & pool_mask, n),
                        pools[pool].name
                    ),
                );
            }
            continue;
        }
        let healthy_tried: Vec<String> = tried
            .iter()
            .filter(|&&b| !obs.unreachable_during(b, s.start, s.end))
            .map(|b| format!("b{b}"))
            .collect();
        if !healthy_tried.is_empty() {
            violation(
                out,
                cause_check,
                format!(
                    "{at}: {:?}: connects to {} failed with no fault on their path",
                    s.outcome,
                    healthy_tried.join(", ")
                ),
            );
            continue;
        }
        if tried.len() <= plan.lb.retries as usize {
            // It gave up with retries left: no other backend may have been up and reachable.
            let last = &log.connects[*flow.connects.last().expect("tried is not empty")];
            let t = last.resolved.unwrap_or(last.at);
            let stable = obs.up_mask_at(s.lb, t.saturating_sub(plan.tick))
                & obs.up_mask_at(s.lb, t + plan.tick)
                & pool_mask;
            let spare: Vec<String> = (0..n)
                .filter(|&b| stable & (1 << b) != 0)
                .filter(|b| !tried.contains(b))
                .filter(|&b| !obs.unreachable_during(b, s.start, s.end))
                .map(|b| format!("b{b}"))
                .collect();
            if !spare.is_empty() {
                violation(
                    out,
                    "retries",
                    format!(
                        "{at}: given up after {} attempt(s) ({}) with {} retries allowed, while {} was up and reachable",
                        tried.len(),
                        tried.iter().map(|b| format!("b{b}")).collect::<Vec<_>>().join(", "),
                        plan.lb.retries,
                        spare.join(", ")
                    ),
                );
            }
        }
    }
    stamp(out, stamp_from, stamp_at);
}
