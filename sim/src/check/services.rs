//! Many services in one load balancer: each client reaches the pool its route names, one
//! pool's faults stay its own, and listeners come and go with reloads.
//!
//! - `route`: the pool a client must reach is computed from the plan (its listener, and
//!   the server name of the ClientHello it sent first: exact name in any case, then the
//!   longest `*.suffix`, else the listener's `pool`). Every backend connection of its flow
//!   (retries included), and every backend connection that carried its bytes, is to a
//!   backend of that pool; the load balancer logs that pool (and the server name, lower
//!   case) for it. A client no pool takes (`no_route`) gets no backend connection and no
//!   byte, is logged as rejected for `no_route`, and each such refusal is counted (and
//!   nothing else is).
//! - `isolation`: a client whose pool had no fault (no backend unreachable or slow, no
//!   operator action on one, from `rise × interval + timeout` before it came until it
//!   ended) and no reload during it completes, or ends by its own pause past the idle
//!   timeout: the faults of other pools do not disturb it.
//! - `listeners`: a listener a reload removed accepts nothing from then on (until a reload
//!   adds it back), and a configured listener refuses nothing, during reloads included.
//!   (A reload is applied at the node's next step: the few ticks after it are not judged;
//!   nor is a connection attempt under way while a reload removed its listener.)

use super::flows::Flows;
use super::{secs, violation, violation_at, Violation};
use crate::client::{Outcome, Phase};
use crate::run::Observations;
use crate::scenario::{Fault, OpAction, ReloadChange};
use crate::services::{NEW, OLD};
use std::collections::BTreeMap;
use std::time::Duration;

/// Whether listener `listener` was configured at `t`: `None` in the few ticks a reload
/// that adds or removes it takes to apply. The flat config's one listener always is.
pub fn listener_state(obs: &Observations, listener: usize, t: Duration) -> Option<bool> {
    let plan = &obs.plan;
    let Some(s) = &plan.services else {
        return Some(true);
    };
    let mut live = s.listeners[listener].initial;
    if listener != OLD && listener != NEW {
        return Some(live);
    }
    for op in &obs.ops {
        if !op.valid || op.action != OpAction::Reload(ReloadChange::SwapListeners) {
            continue;
        }
        if t >= op.sent && t <= op.sent + plan.tick * 3 {
            return None;
        }
        if op.sent < t {
            live = !live;
        }
    }
    Some(live)
}

/// Whether listener `listener` was configured from `from` to `to` alike: `None` when a
/// reload that adds or removes it was applied (or applying) in between. A connection
/// attempt spans its whole connect: its SYN may arrive after a reload the client started
/// before (seeds 1571, 1706, 1939, 2064, 2194 and 2894 of `services` once counted such a
/// refusal against a listener that was being removed).
pub fn listener_state_over(
    obs: &Observations,
    listener: usize,
    from: Duration,
    to: Duration,
) -> Option<bool> {
    let first = listener_state(obs, listener, from)?;
    let last = listener_state(obs, listener, to.max(from))?;
    let swapped = obs.ops.iter().any(|op| {
        op.valid
            && op.action == OpAction::Reload(ReloadChange::SwapListeners)
            && op.sent > from
            && op.sent <= to
            && (listener == OLD || listener == NEW)
    });
    (first == last && !swapped).then_some(first)
}

/// Runs the checks of this module.
pub fn check(obs: &Observations, flows: &Flows, out: &mut Vec<Violation>) {
    let carried = super::integrity::carried(obs, flows);
    route(obs, flows, &carried, out);
    isolation(obs, flows, out);
    listeners(obs, flows, out);
}

fn route(
    obs: &Observations,
    flows: &Flows,
    carried: &BTreeMap<&str, Vec<(usize, usize)>>,
    out: &mut Vec<Violation>,
) {
    let plan = &obs.plan;
    let pools = plan.pools();
    let mut reported = 0;
    let mut no_route_logged = vec![0u64; plan.lbs];
    for s in &obs.sessions {
        if reported >= 10 {
            break;
        }
        let before = out.len();
        let expected = plan.expected_pool(s.listener, &s.greeting);
        let expected_name = expected.map_or("none (no_route)", |p| pools[p].name);
        let at = format!(
            "{} (port {}, {}, {}..{})",
            s.id,
            s.port,
            s.greeting.describe(),
            secs(s.start),
            secs(s.end)
        );
        let outside = |b: usize| expected.is_none_or(|p| !pools[p].backends.contains(&b));
        let flow = s.local.and_then(|l| flows.find(s.lb, l, s.start, s.end));
        if let Some(f) = flow {
            let wrong: Vec<String> = f
                .targets
                .iter()
                .flatten()
                .filter(|&&b| outside(b))
                .map(|b| format!("b{b} (pool {})", pools[plan.pool_of(*b)].name))
                .collect();
            if !wrong.is_empty() {
                violation_at(
                    out,
                    "route",
                    f.accepted,
                    format!(
                        "{at}: lb{} connected it to {}; its route is pool {expected_name}",
                        s.lb,
                        wrong.join(", ")
                    ),
                );
            }
        }
        let reached: Vec<String> = carried
            .get(s.id.as_str())
            .into_iter()
            .flatten()
            .filter(|(b, _)| outside(*b))
            .map(|(b, _)| format!("b{b}"))
            .collect();
        if !reached.is_empty() {
            violation_at(
                out,
                "route",
                s.start,
                format!(
                    "{at}: its bytes reached {}; its route is pool {expected_name}",
                    reached.join(", ")
                ),
            );
        }
        if expected.is_none() && !s.recv.is_empty() {
            violation_at(
                out,
                "route",
                s.start,
                format!("{at}: no pool takes it, but it read {} bytes", s.recv.len()),
            );
        }
        // What the load balancer logged for it.
        if let Some(f) = flow {
            let line = obs.closes.iter().find(|l| l.client == Some(f.peer));
            let no_route = line.is_some_and(|l| l.end.contains("no_route"));
            if no_route {
                no_route_logged[s.lb] += 1;
            }
            let routed_phase = matches!(s.phase, Phase::Chaos | Phase::Liveness);
            match (expected, line) {
                (None, Some(l)) if obs.allowed(s.client) && routed_phase && !no_route => {
                    violation_at(
                        out,
                        "route",
                        l.at,
                        format!(
                            "{at}: no pool takes it, but lb{} logged its end as {:?} (pool {})",
                            s.lb, l.end, l.pool
                        ),
                    );
                }
                (Some(p), Some(l)) if no_route || (l.pool != "-" && l.pool != pools[p].name) => {
                    violation_at(
                        out,
                        "route",
                        l.at,
                        format!(
                            "{at}: lb{} logged pool {} and end {:?}; its route is pool {}",
                            s.lb, l.pool, l.end, pools[p].name
                        ),
                    );
                }
                (Some(_), Some(l)) if l.pool != "-" => {
                    // An `sni` listener logs the name it read (lower case), others none.
                    let sni = plan
                        .services
                        .as_ref()
                        .is_some_and(|sv| !sv.listeners[s.listener].sni.is_empty());
                    let name = s
                        .greeting
                        .server_name()
                        .filter(|_| sni)
                        .map_or("-".to_string(), str::to_ascii_lowercase);
                    if l.server_name != name {
                        violation_at(
                            out,
                            "route",
                            l.at,
                            format!(
                                "{at}: lb{} logged server name {:?}; the client sent {:?}",
                                s.lb,
                                l.server_name,
                                s.greeting.server_name()
                            ),
                        );
                    }
                }
                _ => {}
            }
        }
        if out.len() > before {
            reported += 1;
        }
    }
    // Every refusal for `no_route` counted, and only those.
    for (lb, snap) in obs.final_pools.iter().enumerate() {
        let Some(snap) = snap else { continue };
        let logged = obs
            .closes
            .iter()
            .filter(|l| l.end.contains("no_route"))
            .filter(|l| flows.per_lb[lb].iter().any(|f| Some(f.peer) == l.client))
            .count() as u64;
        if snap.rejected_no_route != logged {
            violation(
                out,
                "route",
                format!(
                    "lb{lb} counted {} client(s) rejected for no_route, logged {logged} ({} of them clients no pool takes)",
                    snap.rejected_no_route, no_route_logged[lb]
                ),
            );
        }
    }
}

fn isolation(obs: &Observations, flows: &Flows, out: &mut Vec<Violation>) {
    let plan = &obs.plan;
    if plan.services.is_none() {
        return;
    }
    let pools = plan.pools();
    let up_bound = plan.lb.up_bound(plan.tick);
    // Per backend: when its links were slow (a fault too, though not unreachable).
    let n = plan.backends.len();
    let mut slow: Vec<Vec<(Duration, Duration)>> = vec![Vec::new(); n];
    let mut since: Vec<Option<Duration>> = vec![None; n];
    for &(at, fault) in &obs.applied {
        match fault {
            Fault::Slow(b, _) => {
                since[b].get_or_insert(at);
            }
            Fault::Unslow(b) => {
                if let Some(from) = since[b].take() {
                    slow[b].push((from, at + obs.restore_margin));
                }
            }
            _ => {}
        }
    }
    for (b, from) in since.iter().enumerate() {
        if let Some(from) = from {
            slow[b].push((*from, obs.end + Duration::from_secs(3600)));
        }
    }
    let mut reported = 0;
    for s in &obs.sessions {
        if s.phase != Phase::Chaos
            || !obs.allowed(s.client)
            || s.outcome == Outcome::Complete
            || listener_state(obs, s.listener, s.start) != Some(true)
        {
            continue;
        }
        let Some(p) = plan.expected_pool(s.listener, &s.greeting) else {
            continue;
        };
        if s.stall.is_some_and(|(a, b)| b - a >= plan.lb.idle_timeout) {
            continue; // its own pause ended it
        }
        let from = s.start.saturating_sub(up_bound);
        let pool = &pools[p];
        let faulted = pool.backends.iter().any(|&b| {
            obs.unreachable_during(b, from, s.end)
                || slow[b].iter().any(|&(a, e)| a <= s.end && e >= from)
                || obs.out_of_rotation_during(s.lb, b, from, s.end)
        });
        let reloaded = obs
            .ops
            .iter()
            .any(|o| matches!(o.action, OpAction::Reload(_)) && o.sent >= from && o.sent <= s.end);
        if faulted || reloaded {
            continue;
        }
        let others: Vec<String> = obs
            .applied
            .iter()
            .filter(|(at, f)| *at >= from && *at <= s.end && !pool.backends.contains(&f.backend()))
            .map(|(at, f)| format!("{f} at {}", secs(*at)))
            .take(4)
            .collect();
        let how = s
            .local
            .and_then(|l| flows.find(s.lb, l, s.start, s.end))
            .map_or("no record at the load balancer".to_string(), |f| {
                let tried: Vec<String> = f
                    .targets
                    .iter()
                    .flatten()
                    .map(|b| format!("b{b}"))
                    .collect();
                format!("tried [{}]", tried.join(", "))
            });
        if reported < 5 {
            reported += 1;
            violation_at(
                out,
                "isolation",
                s.end,
                format!(
                    "{} (port {}, {}, {}, {}..{}): {:?} (answered {}/{}, {how}) though pool {} had no fault; faults elsewhere meanwhile: [{}]",
                    s.id,
                    s.port,
                    s.kind.name(),
                    s.greeting.describe(),
                    secs(s.start),
                    secs(s.end),
                    s.outcome,
                    s.answered,
                    s.requests,
                    pool.name,
                    others.join("; ")
                ),
            );
        }
    }
}

fn listeners(obs: &Observations, flows: &Flows, out: &mut Vec<Violation>) {
    let plan = &obs.plan;
    let Some(services) = &plan.services else {
        return;
    };
    let stop = plan.stop.map_or(obs.end, |s| s.at);
    // Accepted on a listener that was not configured.
    for (lb, lb_flows) in flows.per_lb.iter().enumerate() {
        for f in lb_flows {
            let Some(l) = services.listener_on(f.port) else {
                continue;
            };
            if listener_state(obs, l, f.accepted) == Some(false) {
                violation_at(
                    out,
                    "listeners",
                    f.accepted,
                    format!(
                        "lb{lb} accepted {} on port {} (listener {}) at {}, which no config had then",
                        f.peer,
                        f.port,
                        services.listeners[l].name,
                        secs(f.accepted)
                    ),
                );
                break;
            }
        }
    }
    // Refused by a listener that was configured.
    for s in &obs.sessions {
        if s.outcome != Outcome::ConnectFailed || s.start >= stop {
            continue;
        }
        if listener_state_over(obs, s.listener, s.start, s.end) == Some(true) {
            let reload = obs
                .ops
                .iter()
                .filter(|o| matches!(o.action, OpAction::Reload(_)))
                .filter(|o| o.sent + Duration::from_secs(1) >= s.start && o.sent <= s.end)
                .min_by_key(|o| o.sent.abs_diff(s.start))
                .map_or(String::new(), |o| {
                    format!(" (during {} at {})", o.action, secs(o.sent))
                });
            violation_at(
                out,
                "listeners",
                s.start,
                format!(
                    "{}: lb{} refused it on port {} (listener {}) at {}{reload}",
                    s.id,
                    s.lb,
                    s.port,
                    services.listeners[s.listener].name,
                    secs(s.start)
                ),
            );
        }
    }
}
