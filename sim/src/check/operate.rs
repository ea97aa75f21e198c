//! What the operator relies on, judged from the operator's records, the load balancers'
//! sockets and logs, and the backends' sockets.
//!
//! - `admin`: every admin request is answered `200`; a backend drained or disabled gets no
//!   new connection from that load balancer after the answer, until it is enabled again;
//!   once enabled, a reachable backend is up within `rise × interval + timeout`.
//! - `reload`: every reload is applied (or, for an invalid file, refused) and logged; the
//!   backends it keeps keep their health (one up stays up); a backend a reload removed gets
//!   no new connection until a reload adds it back; one a reload added is up within
//!   `rise × interval + timeout` if reachable. (A client closed
//!   or refused with no cause of its own while a reload was applied is reported under
//!   `reload` by the `close-cause` check.)
//! - `stop`: after a graceful stop the listener is closed (no connection opened after it
//!   is served); connections open at the stop finish if they can within the grace period,
//!   and the rest are closed by its end; when the node returns, every connection it
//!   accepted has been released (none open in the pool), logged once, and the aborted
//!   ones are counted.
//! - `proxy`: with `proxy_protocol`, every backend connection starts with a valid header
//!   that names the real client and the address it connected to (health probes: none).
//! - `allow`: a client outside `allow` never reaches a backend and is refused at once, and
//!   each refusal is counted (`not_allowed`).
//! - `per-client`: with `per_client.max_connections`, no client IP has more admitted
//!   connections open at once, and each refusal is counted (`per_client_limit`).
//! - `backend-down`: with `on_backend_down: close`, a backend that health checks take down
//!   has every connection established to it closed at once.

use super::flows::Flows;
use super::integrity::{payload, session_id};
use super::{secs, violation, violation_at, Violation};
use crate::client::{Outcome, Phase};
use crate::net::{ConnectOutcome, Origin};
use crate::run::Observations;
use crate::scenario::{AdminAction, OpAction, ReloadChange};
use lb_runtime::demo::proxy::{self, Origin as ProxyOrigin, Parsed};
use std::net::SocketAddr;
use std::time::Duration;

/// Runs the checks of this module.
pub fn check(obs: &Observations, flows: &Flows, out: &mut Vec<Violation>) {
    admin(obs, flows, out);
    reload(obs, flows, out);
    stop(obs, flows, out);
    proxy_headers(obs, out);
    allow(obs, flows, out);
    per_client(obs, flows, out);
    backend_down(obs, flows, out);
}

/// `per-client`: with `per_client.max_connections`, no client IP ever has more admitted
/// connections open at once, and every refusal for it is counted.
fn per_client(obs: &Observations, flows: &Flows, out: &mut Vec<Violation>) {
    let Some(max) = obs.plan.per_client_max else {
        return;
    };
    for (lb, lb_flows) in flows.per_lb.iter().enumerate() {
        let admitted: Vec<_> = lb_flows.iter().filter(|f| !f.connects.is_empty()).collect();
        for f in &admitted {
            let t = f.accepted;
            let open = admitted
                .iter()
                .filter(|g| g.peer.ip() == f.peer.ip())
                .filter(|g| g.accepted <= t && g.closed.is_none_or(|c| c > t))
                .count();
            if open > max as usize {
                violation_at(
                    out,
                    "per-client",
                    t,
                    format!(
                        "lb{lb}: {} had {open} connections open at {} (per_client.max_connections {max})",
                        f.peer.ip(),
                        secs(t)
                    ),
                );
                break;
            }
        }
        let Some(Some(snap)) = obs.final_pools.get(lb) else {
            continue;
        };
        let logged = obs
            .closes
            .iter()
            .filter(|l| l.end.contains("per_client_limit"))
            .filter(|l| lb_flows.iter().any(|f| Some(f.peer) == l.client))
            .count() as u64;
        if snap.rejected_per_client != logged {
            violation(
                out,
                "per-client",
                format!(
                    "lb{lb} counted {} refusal(s) for per_client, logged {logged}",
                    snap.rejected_per_client
                ),
            );
        }
    }
}

/// `backend-down`: with `on_backend_down: close`, when health checks take a backend down,
/// every connection established to it is closed at once.
fn backend_down(obs: &Observations, flows: &Flows, out: &mut Vec<Violation>) {
    let plan = &obs.plan;
    if !plan.close_on_backend_down {
        return;
    }
    let tick = plan.tick;
    for (lb, states) in obs.pool_states.iter().enumerate() {
        let log = &obs.lb_logs[lb];
        for w in states.windows(2) {
            let ((_, before), (t, after)) = (w[0], w[1]);
            for b in 0..plan.backends.len() {
                let went_down = before & (1 << b) != 0 && after & (1 << b) == 0;
                // Not the operator's doing (a drain, a disable, a removal) nor the stop's.
                let by_operator = obs.ops.iter().any(|o| {
                    o.sent + tick * 3 >= t
                        && o.sent <= t
                        && match o.action {
                            OpAction::Admin { lb: l, backend, .. } => l == lb && backend == b,
                            OpAction::Reload(ReloadChange::Remove(x)) => x == b,
                            OpAction::Reload(_) => false,
                        }
                }) || obs.out_of_rotation_during(lb, b, t, t);
                let stopping = plan.stop.is_some_and(|s| t >= s.at);
                if !went_down || by_operator || stopping {
                    continue;
                }
                for f in &flows.per_lb[lb] {
                    let Some(&last) = f.connects.last() else {
                        continue;
                    };
                    let c = &log.connects[last];
                    let established_before = matches!(c.outcome, ConnectOutcome::Connected { .. })
                        && c.resolved.is_some_and(|r| r + tick <= t);
                    let open = f.closed.is_none_or(|closed| closed > t + tick * 2);
                    if f.established == Some(b) && established_before && open {
                        violation_at(
                            out,
                            "backend-down",
                            t,
                            format!(
                                "lb{lb} took b{b} down at {} (on_backend_down close), but its connection from {} stayed open until {}",
                                secs(t),
                                f.peer,
                                f.closed.map_or("the end".to_string(), secs)
                            ),
                        );
                    }
                }
            }
        }
    }
}

/// Connects of load balancer `lb` to backend `b` made in `(from, to)`.
fn connects_to(
    obs: &Observations,
    flows: &Flows,
    lb: usize,
    b: usize,
    from: Duration,
    to: Duration,
) -> Vec<(Duration, SocketAddr)> {
    let log = &obs.lb_logs[lb];
    let mut out = Vec::new();
    for f in &flows.per_lb[lb] {
        for (k, &c) in f.connects.iter().enumerate() {
            let at = log.connects[c].at;
            if f.targets[k] == Some(b) && at > from && at < to {
                out.push((at, f.peer));
            }
        }
    }
    out
}

/// Whether load balancer `lb` had backend `b` up at some sample in `[from, to]`.
fn up_during(obs: &Observations, lb: usize, b: usize, from: Duration, to: Duration) -> bool {
    obs.up_mask_at(lb, from) & (1 << b) != 0
        || obs.pool_states[lb]
            .iter()
            .any(|&(t, m)| t >= from && t <= to && m & (1 << b) != 0)
}

/// A backend back in rotation at `at` (enabled, or added by a reload) must be up within
/// the health bound, unless a fault or another operator action stands in the way.
fn comes_back(
    obs: &Observations,
    check: &'static str,
    lb: usize,
    b: usize,
    at: Duration,
    what: &str,
    out: &mut Vec<Violation>,
) {
    let plan = &obs.plan;
    let deadline = at + plan.lb.up_bound(plan.tick) + plan.tick * 2;
    let other_op = obs.ops.iter().any(|o| {
        o.sent > at
            && o.sent <= deadline
            && match o.action {
                OpAction::Admin { lb: l, backend, .. } => l == lb && backend == b,
                OpAction::Reload(ReloadChange::Remove(x)) => x == b,
                OpAction::Reload(_) => false,
            }
    });
    if deadline > obs.end
        || other_op
        || obs.unreachable_during(b, at.saturating_sub(plan.lb.interval), deadline)
        || plan.stop.is_some_and(|s| s.at <= deadline)
    {
        return;
    }
    if !up_during(obs, lb, b, at, deadline) {
        violation_at(
            out,
            check,
            deadline,
            format!(
                "b{b} {what} at {} but not up in lb{lb}'s pool by {}",
                secs(at),
                secs(deadline)
            ),
        );
    }
}

fn admin(obs: &Observations, flows: &Flows, out: &mut Vec<Violation>) {
    for (i, op) in obs.ops.iter().enumerate() {
        let OpAction::Admin {
            lb,
            backend: b,
            action,
        } = op.action
        else {
            continue;
        };
        if op.status != Some(200) {
            violation_at(
                out,
                "admin",
                op.sent,
                format!("{}: answered {:?}, not 200", op.action, op.status),
            );
            continue;
        }
        let Some(answered) = op.answered else {
            continue;
        };
        match action {
            AdminAction::Weight(w) => {
                // Kept until a later weight for it on this node, or a reload (which sets
                // the configured weights again).
                let overridden = obs.ops[i + 1..].iter().any(|o| match o.action {
                    OpAction::Admin {
                        lb: l,
                        backend: x,
                        action: AdminAction::Weight(_),
                    } => l == lb && x == b,
                    OpAction::Reload(_) => o.valid,
                    _ => false,
                });
                let Some(Some(snap)) = obs.final_pools.get(lb) else {
                    continue;
                };
                let now = snap.backends.get(b).map(|s| s.weight);
                if !overridden && now != Some(w) {
                    violation_at(
                        out,
                        "admin",
                        answered,
                        format!(
                            "lb{lb} answered 200 to weight {w} for b{b} at {}, and has weight {now:?} at the end",
                            secs(answered)
                        ),
                    );
                }
            }
            AdminAction::Enable => comes_back(obs, "admin", lb, b, answered, "enabled", out),
            AdminAction::Drain | AdminAction::Disable => {
                let until = obs.ops[i + 1..]
                    .iter()
                    .find(|o| {
                        o.action
                            == OpAction::Admin {
                                lb,
                                backend: b,
                                action: AdminAction::Enable,
                            }
                    })
                    .map_or(obs.end, |o| o.sent);
                if let Some(&(at, peer)) = connects_to(obs, flows, lb, b, answered, until).first() {
                    violation_at(
                        out,
                        "admin",
                        at,
                        format!(
                            "lb{lb} connected {peer} to b{b} at {}, after answering `{}` at {}",
                            secs(at),
                            action.name(),
                            secs(answered)
                        ),
                    );
                }
            }
        }
    }
}

/// Every reload is applied (or refused) by every node and logged as such within two ticks.
/// Reloads whose windows overlap are judged together (seed 506 of `operate` sent two 6 ms
/// apart, and each one's window held both's lines): the group's window holds one "config
/// reloaded" per node per valid file and one "reload failed" per node per invalid one.
fn reload_logged(obs: &Observations, out: &mut Vec<Violation>) {
    let plan = &obs.plan;
    let window = plan.tick * 2;
    let mut reloads: Vec<&crate::operator::OpRecord> = obs
        .ops
        .iter()
        .filter(|o| matches!(o.action, OpAction::Reload(_)))
        .filter(|o| plan.stop.is_none_or(|s| o.sent < s.at))
        .collect();
    reloads.sort_by_key(|o| o.sent);
    let mut k = 0;
    while k < reloads.len() {
        let mut end = k + 1;
        while end < reloads.len() && reloads[end].sent <= reloads[end - 1].sent + window {
            end += 1;
        }
        let group = &reloads[k..end];
        let (from, to) = (group[0].sent, group[group.len() - 1].sent + window);
        let lines = |what: &str| {
            obs.log_lines
                .iter()
                .filter(|l| l.at >= from && l.at <= to && l.message.contains(what))
                .count()
        };
        let valid = group.iter().filter(|o| o.valid).count();
        let (applied, refused) = (lines("config reloaded"), lines("reload failed"));
        let (want_applied, want_refused) = (valid * plan.lbs, (group.len() - valid) * plan.lbs);
        if applied != want_applied || refused != want_refused {
            let names: Vec<String> = group
                .iter()
                .map(|o| format!("{} at {}", o.action, secs(o.sent)))
                .collect();
            violation_at(
                out,
                "reload",
                from,
                format!(
                    "{}: {applied} \"config reloaded\" and {refused} \"reload failed\" logged by {} load balancer(s) from {} to {}; expected {want_applied} and {want_refused}",
                    names.join(", "),
                    plan.lbs,
                    secs(from),
                    secs(to)
                ),
            );
        }
        k = end;
    }
}

fn reload(obs: &Observations, flows: &Flows, out: &mut Vec<Violation>) {
    let plan = &obs.plan;
    reload_logged(obs, out);
    for (i, op) in obs.ops.iter().enumerate() {
        let OpAction::Reload(change) = op.action else {
            continue;
        };
        if !op.valid {
            continue;
        }
        // The backends it keeps keep their health: one up before stays up (unless it became
        // unreachable, or the operator has it out of rotation).
        let before = op.sent.saturating_sub(plan.tick);
        let after = op.sent + plan.tick * 3;
        for lb in 0..plan.lbs {
            for b in 0..plan.backends.len() {
                let kept = change != ReloadChange::Remove(b) && change != ReloadChange::Add(b);
                let was_up = obs.up_mask_at(lb, before) & (1 << b) != 0;
                if !kept
                    || !was_up
                    || obs.unreachable_during(b, before.saturating_sub(plan.lb.interval * 2), after)
                    || obs.out_of_rotation_during(lb, b, before, after)
                {
                    continue;
                }
                let dropped = obs.pool_states[lb]
                    .iter()
                    .find(|&&(t, m)| t >= op.sent && t <= after && m & (1 << b) == 0);
                if let Some(&(t, _)) = dropped {
                    violation_at(
                        out,
                        "reload",
                        t,
                        format!(
                            "{} at {}: lb{lb} had b{b} up before and kept it, but not up at {}",
                            op.action,
                            secs(op.sent),
                            secs(t)
                        ),
                    );
                }
            }
        }
        match change {
            ReloadChange::Remove(b) => {
                let until = obs.ops[i + 1..]
                    .iter()
                    .find(|o| o.valid && o.action == OpAction::Reload(ReloadChange::Add(b)))
                    .map_or(obs.end, |o| o.sent);
                for lb in 0..plan.lbs {
                    // Applied at the node's next step.
                    let from = op.sent + plan.tick;
                    if let Some(&(at, peer)) = connects_to(obs, flows, lb, b, from, until).first() {
                        violation_at(
                            out,
                            "reload",
                            at,
                            format!(
                                "lb{lb} connected {peer} to b{b} at {}, which the reload at {} removed",
                                secs(at),
                                secs(op.sent)
                            ),
                        );
                    }
                }
            }
            ReloadChange::Add(b) => {
                for lb in 0..plan.lbs {
                    comes_back(obs, "reload", lb, b, op.sent, "added by a reload", out);
                }
            }
            ReloadChange::Weight(..) | ReloadChange::Invalid | ReloadChange::SwapListeners => {}
        }
    }
}

fn stop(obs: &Observations, flows: &Flows, out: &mut Vec<Violation>) {
    let Some(plan_stop) = obs.plan.stop else {
        return;
    };
    let tick = obs.plan.tick;
    let grace_end = plan_stop.at + plan_stop.grace;
    for s in &obs.sessions {
        let at = format!("{} ({}..{})", s.id, secs(s.start), secs(s.end));
        // (A client no pool takes is closed at once: `route` judges it.)
        if !obs.allowed(s.client) || obs.plan.expected_pool(s.listener, &s.greeting).is_none() {
            continue;
        }
        match s.phase {
            Phase::Stopped => {
                if !s.recv.is_empty() || s.outcome == Outcome::Complete {
                    violation_at(
                        out,
                        "stop",
                        s.start,
                        format!(
                            "{at}: opened after the stop at {}, and served",
                            secs(plan_stop.at)
                        ),
                    );
                }
            }
            Phase::Stopping { long: false } => {
                let per_client = s
                    .local
                    .and_then(|l| flows.find(s.lb, l, s.start, s.end))
                    .is_some_and(|f| super::integrity::refused_per_client(obs, flows, s.lb, f));
                if s.outcome != Outcome::Complete && !per_client {
                    violation_at(
                        out,
                        "stop",
                        s.end,
                        format!(
                            "{at}: {:?}, though it could finish within the grace period (stop at {}, grace {}ms)",
                            s.outcome,
                            secs(plan_stop.at),
                            plan_stop.grace.as_millis()
                        ),
                    );
                }
            }
            Phase::Stopping { long: true } => {
                if s.local
                    .and_then(|l| flows.find(s.lb, l, s.start, s.end))
                    .is_some_and(|f| super::integrity::refused_per_client(obs, flows, s.lb, f))
                {
                    continue;
                }
                let closed = s.closed_at;
                let in_time =
                    closed.is_some_and(|c| c + tick >= grace_end && c <= grace_end + tick * 4);
                if s.outcome == Outcome::Complete || !in_time {
                    violation_at(
                        out,
                        "stop",
                        closed.unwrap_or(s.end),
                        format!(
                            "{at}: {:?}, closed at {}; open past the grace period, it must be closed at its end ({})",
                            s.outcome,
                            closed.map_or("never".to_string(), secs),
                            secs(grace_end)
                        ),
                    );
                }
            }
            Phase::Chaos | Phase::Liveness => {}
        }
    }
    for (lb, rec) in obs.stops.iter().enumerate() {
        let Some(rec) = rec else {
            violation(
                out,
                "stop",
                format!(
                    "lb{lb}: its node did not return after the stop at {}",
                    secs(plan_stop.at)
                ),
            );
            continue;
        };
        if rec.open_flows != 0 {
            violation_at(
                out,
                "stop",
                rec.returned,
                format!(
                    "lb{lb}: its node returned at {} with {} connection(s) still open in the pool",
                    secs(rec.returned),
                    rec.open_flows
                ),
            );
        }
        let mut aborted = 0;
        let mut missing = Vec::new();
        for f in &flows.per_lb[lb] {
            let lines: Vec<_> = obs
                .closes
                .iter()
                .filter(|l| l.client == Some(f.peer) && l.at <= rec.returned)
                .collect();
            match lines.as_slice() {
                [one] => aborted += usize::from(one.end == "shutdown"),
                [] => missing.push(f.peer),
                many => violation(
                    out,
                    "stop",
                    format!("lb{lb}: {} logged {} times", f.peer, many.len()),
                ),
            }
        }
        if !missing.is_empty() {
            violation_at(
                out,
                "stop",
                rec.returned,
                format!(
                    "lb{lb}: {} connection(s) never logged as closed by the time its node returned at {} (first: {})",
                    missing.len(),
                    secs(rec.returned),
                    missing[0]
                ),
            );
        }
        if aborted != rec.aborted {
            violation_at(
                out,
                "stop",
                rec.returned,
                format!(
                    "lb{lb}: reports {} connection(s) aborted at the end of the grace period, its log {aborted}",
                    rec.aborted
                ),
            );
        }
    }
}

fn proxy_headers(obs: &Observations, out: &mut Vec<Violation>) {
    if obs.plan.proxy.is_none() {
        return;
    }
    let mut reported = 0;
    for (b, log) in obs.backend_logs.iter().enumerate() {
        for s in &log.streams {
            let Origin::Accepted { peer, .. } = s.origin else {
                continue;
            };
            let Some(lb) = obs.lb_addrs.iter().position(|ip| *ip == peer.ip()) else {
                continue;
            };
            let problem = match proxy::parse(&s.data_in) {
                // Cut before the whole header came (or nothing sent): nothing to judge.
                Parsed::Incomplete => None,
                Parsed::Invalid => Some("does not start with a PROXY header".to_string()),
                Parsed::Header(_, origin) => {
                    let carried = session_id(payload(obs, &s.data_in));
                    match origin {
                        // A health probe's: no client behind it.
                        ProxyOrigin::Local => carried
                            .map(|id| format!("carries {id} with a header that names no client")),
                        ProxyOrigin::Client {
                            source,
                            destination,
                        } => {
                            let client = obs
                                .sessions
                                .iter()
                                .find(|r| r.lb == lb && r.local == Some(source));
                            match client {
                                None => Some(format!(
                                    "has a header naming {source} -> {destination}, which is no client of lb{lb}"
                                )),
                                Some(r) if carried.is_some_and(|id| id != r.id) => Some(format!(
                                    "carries {} with a header naming {source}, the address of {}",
                                    carried.unwrap_or_default(),
                                    r.id
                                )),
                                Some(r) if destination != SocketAddr::new(obs.lb_addrs[lb], r.port) => Some(format!(
                                    "has a header naming {destination} as the address the client connected to, not {}",
                                    SocketAddr::new(obs.lb_addrs[lb], r.port)
                                )),
                                Some(_) => None,
                            }
                        }
                    }
                }
            };
            if let Some(p) = problem {
                if reported < 5 {
                    reported += 1;
                    violation_at(
                        out,
                        "proxy",
                        s.opened,
                        format!("b{b}: a connection from lb{lb} at {} {p}", secs(s.opened)),
                    );
                }
            }
        }
    }
}

fn allow(obs: &Observations, flows: &Flows, out: &mut Vec<Violation>) {
    let Some(allowed) = &obs.plan.allow else {
        return;
    };
    for s in &obs.sessions {
        if allowed.contains(&s.client) {
            continue;
        }
        let at = format!("{} ({}..{})", s.id, secs(s.start), secs(s.end));
        let reached: Vec<String> = obs
            .backend_logs
            .iter()
            .enumerate()
            .filter(|(_, log)| {
                log.streams
                    .iter()
                    .any(|st| session_id(payload(obs, &st.data_in)) == Some(s.id.as_str()))
            })
            .map(|(b, _)| format!("b{b}"))
            .collect();
        if !reached.is_empty() || !s.recv.is_empty() {
            violation_at(
                out,
                "allow",
                s.start,
                format!(
                    "{at}: a client outside `allow` reached {} (read {} bytes)",
                    reached.join(", "),
                    s.recv.len()
                ),
            );
            continue;
        }
        if let Some(f) = s.local.and_then(|l| flows.find(s.lb, l, s.start, s.end)) {
            if !f.connects.is_empty() {
                violation_at(
                    out,
                    "allow",
                    f.accepted,
                    format!(
                        "{at}: lb{} opened {} backend connection(s) for a client outside `allow`",
                        s.lb,
                        f.connects.len()
                    ),
                );
            }
        }
    }
    for (lb, snap) in obs.final_pools.iter().enumerate() {
        let Some(snap) = snap else { continue };
        let denied = flows.per_lb[lb]
            .iter()
            .filter(|f| {
                obs.client_addrs
                    .iter()
                    .position(|ip| *ip == f.peer.ip())
                    .is_some_and(|c| !allowed.contains(&c))
            })
            .count() as u64;
        if snap.rejected_not_allowed != denied {
            violation(
                out,
                "allow",
                format!(
                    "lb{lb} counted {} connection(s) rejected as not allowed; {denied} came from clients outside `allow`",
                    snap.rejected_not_allowed
                ),
            );
        }
    }
}
