//! Health checking as users rely on it.
//!
//! - `selector`: every backend connection of a flow goes to a backend the pool had up at
//!   that moment (recorded by the network at the connect). Every plan puts each backend
//!   in exactly one pool, so the up set by address is that pool's; `route` checks that
//!   the backend is in the flow's own pool.
//! - `health-down`: no flow connects to a backend more than `fall × interval + timeout`
//!   (plus a tick per probe for timer rounding) after it became unreachable.
//! - `health-up`: a backend reachable again, and left alone for `rise × interval +
//!   timeout` (plus ticks), is up in every load balancer's pool within that time.
//! - `health-traffic` (round robin only, where turns are exact): once up again, it gets a
//!   connection among the next `2 × backends` its pool's connections a load balancer
//!   makes.
//!
//! A backend the operator took out of a load balancer's rotation (removed by a reload,
//! drained, disabled) is not held to `health-up` and `health-traffic` there meanwhile.

use super::flows::Flows;
use super::{secs, violation_at, Violation};
use crate::run::Observations;
use std::time::Duration;

/// Runs the checks of this module.
pub fn check(obs: &Observations, flows: &Flows, out: &mut Vec<Violation>) {
    let plan = &obs.plan;
    let n = plan.backends.len();
    let pools = plan.pools();
    let down_bound = plan.lb.down_bound(plan.tick);
    let up_bound = plan.lb.up_bound(plan.tick);
    for (lb, lb_flows) in flows.per_lb.iter().enumerate() {
        let log = &obs.lb_logs[lb];
        let mut reported_selector = 0;
        for f in lb_flows {
            for (k, &c) in f.connects.iter().enumerate() {
                let Some(x) = f.targets[k] else { continue };
                let conn = &log.connects[c];
                if let Some(mask) = conn.up_mask {
                    if mask & (1 << x) == 0 && reported_selector < 5 {
                        reported_selector += 1;
                        violation_at(
                            out,
                            "selector",
                            conn.at,
                            format!(
                                "lb{lb} sent a connection from {} to b{x} at {} while its pool had b{x} down",
                                f.peer,
                                secs(conn.at)
                            ),
                        );
                    }
                }
                for &(a, e) in &obs.unreachable[x] {
                    // Once healed it may be chosen again at once (rise 1, or a probe in
                    // flight), so the interval here ends when the fault was healed.
                    if conn.at > a + down_bound && conn.at + obs.restore_margin < e {
                        violation_at(
                            out,
                            "health-down",
                            conn.at,
                            format!(
                                "lb{lb} sent a connection to b{x} at {}, {} after it became unreachable at {} (bound {}: fall {} × interval {}ms + timeout {}ms)",
                                secs(conn.at),
                                secs(conn.at - a),
                                secs(a),
                                secs(down_bound),
                                plan.lb.fall,
                                plan.lb.interval.as_millis(),
                                plan.lb.check_timeout.as_millis()
                            ),
                        );
                        break;
                    }
                }
            }
        }
    }
    // Recovery.
    for x in 0..n {
        let intervals = &obs.unreachable[x];
        for (i, &(_, e)) in intervals.iter().enumerate() {
            let deadline = e + up_bound;
            let next = intervals.get(i + 1).map(|iv| iv.0);
            if next.is_some_and(|ns| ns < deadline) || deadline > obs.end {
                continue;
            }
            for lb in 0..obs.pool_states.len() {
                // Out of rotation by the operator's hand (removed, drained, disabled), a
                // backend is not up whatever its health: judged by `admin` and `reload`.
                if obs.out_of_rotation_during(lb, x, e, deadline) {
                    continue;
                }
                let states = &obs.pool_states[lb];
                let up_at = if obs.up_mask_at(lb, e) & (1 << x) != 0 {
                    Some(e)
                } else {
                    states
                        .iter()
                        .find(|(t, m)| *t > e && *t <= deadline && m & (1 << x) != 0)
                        .map(|(t, _)| *t)
                };
                let Some(up_at) = up_at else {
                    violation_at(
                        out,
                        "health-up",
                        deadline,
                        format!(
                            "b{x} reachable again at {} but not up in lb{lb}'s pool by {} (bound {}: rise {} × interval {}ms + timeout {}ms)",
                            secs(e),
                            secs(deadline),
                            secs(up_bound),
                            plan.lb.rise,
                            plan.lb.interval.as_millis(),
                            plan.lb.check_timeout.as_millis()
                        ),
                    );
                    continue;
                };
                // Among the connections of its own pool (only round robin's turns are exact).
                let pool = &pools[plan.pool_of(x)];
                if pool.algorithm != "round_robin" {
                    continue;
                }
                // Until the next fault, the end of the chaos, or the operator's next action
                // that takes it out of rotation, whichever comes first.
                let until = next.unwrap_or(plan.chaos_end).min(plan.chaos_end);
                let until = obs
                    .out_of_rotation
                    .get(lb)
                    .and_then(|v| v.get(x))
                    .into_iter()
                    .flatten()
                    .map(|&(a, _)| a)
                    .filter(|&a| a > up_at)
                    .fold(until, Duration::min);
                let log = &obs.lb_logs[lb];
                let mut made = 0;
                let mut got = false;
                let mut last_at = Duration::ZERO;
                for f in &flows.per_lb[lb] {
                    for (k, &c) in f.connects.iter().enumerate() {
                        let at = log.connects[c].at;
                        let in_pool = f.targets[k].is_some_and(|t| pool.backends.contains(&t));
                        if at > up_at && at < until && in_pool {
                            made += 1;
                            last_at = last_at.max(at);
                            got |= f.targets[k] == Some(x);
                        }
                    }
                }
                if made >= 2 * pool.backends.len() && !got {
                    violation_at(
                        out,
                        "health-traffic",
                        last_at,
                        format!(
                            "b{x} up again in lb{lb} at {} but none of the {made} connections made until {} went to it",
                            secs(up_at),
                            secs(last_at)
                        ),
                    );
                }
            }
        }
    }
}
