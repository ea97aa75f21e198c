//! `affinity`: with `hash`, the backend a client is sent to depends only on the client's
//! address and on which backends are up, so every load balancer (and one load balancer
//! over time) sends a client to the same backend whenever their pools agree on who is up.
//! The first attempt of each flow is compared; retries exclude backends already tried.
//! A reload that changes the backends (or their weights) changes the table: choices are
//! compared within one config only, and not in the tick a reload is applied. A weight set
//! through one load balancer's admin endpoint changes that one's table until the next
//! reload: choices are compared only between load balancers (and times) with the same
//! such changes in force. With DNS discovery (`fleet`) the backends the pool lists stand
//! for the config: choices are compared whenever two instances (or times) list the same
//! backends, whatever order they learned them in.

use super::flows::Flows;
use super::{secs, violation, violation_at, Violation};
use crate::run::{mask_names, Observations};
use crate::scenario::{AdminAction, OpAction};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

/// Runs the check (only for pools with `hash`, each on its own: the up set compared is
/// the pool's).
pub fn check(obs: &Observations, flows: &Flows, out: &mut Vec<Violation>) {
    let plan = &obs.plan;
    let pools = plan.pools();
    if pools.iter().all(|p| p.algorithm != "hash") {
        return;
    }
    let n = plan.backends.len();
    // The config in force: valid reloads so far; `None` while one is being applied.
    let reloads: Vec<Duration> = obs
        .ops
        .iter()
        .filter(|o| o.valid && matches!(o.action, OpAction::Reload(_)))
        .map(|o| o.sent)
        .collect();
    let epoch = |t: Duration| -> Option<usize> {
        if reloads.iter().any(|&r| t >= r && t <= r + plan.tick * 2) {
            return None;
        }
        Some(reloads.iter().filter(|&&r| r < t).count())
    };
    // Admin weight changes answered: (lb, from, op index). From its sending (it may apply
    // before the answer comes) until the next valid reload.
    let weights: Vec<(usize, Duration, Duration, usize)> = obs
        .ops
        .iter()
        .enumerate()
        .filter_map(|(i, o)| match o.action {
            OpAction::Admin {
                lb,
                action: AdminAction::Weight(_),
                ..
            } if o.status == Some(200) => Some((lb, o.sent, o.answered?, i)),
            _ => None,
        })
        .collect();
    // The weight changes in force on `lb` at `t`; `None` while one is being applied.
    let overrides = |lb: usize, t: Duration| -> Option<Vec<usize>> {
        let last_reload = reloads.iter().filter(|&&r| r < t).max().copied();
        let mut on = Vec::new();
        for &(l, sent, answered, i) in &weights {
            if l != lb || last_reload.is_some_and(|r| sent < r) {
                continue;
            }
            if t >= sent && t <= answered + plan.tick * 2 {
                return None;
            }
            if sent < t {
                on.push(i);
            }
        }
        Some(on)
    };
    // (client, up set of the pool, config, weight changes) -> (backend, lb, when)
    type Key = (IpAddr, u64, usize, Vec<usize>);
    let mut seen: BTreeMap<Key, (usize, usize, Duration)> = BTreeMap::new();
    let mut across = 0usize;
    let mut reported = 0;
    for (lb, lb_flows) in flows.per_lb.iter().enumerate() {
        let log = &obs.lb_logs[lb];
        for f in lb_flows {
            let (Some(&c), Some(&Some(x))) = (f.connects.first(), f.targets.first()) else {
                continue;
            };
            let conn = &log.connects[c];
            let (Some(config), Some(changed)) = (epoch(conn.at), overrides(lb, conn.at)) else {
                continue;
            };
            let pool = &pools[plan.pool_of(x)];
            if pool.algorithm != "hash" {
                continue;
            }
            // With discovery, the table is the one of the backends the pool lists: choices
            // are compared between instances (and times) whose lists agree.
            let config = match &plan.dns {
                Some(_) => conn.listed_mask.unwrap_or(0) as usize,
                None => config,
            };
            let key = (
                f.peer.ip(),
                conn.up_mask.unwrap_or(0) & pool.mask(),
                config,
                changed,
            );
            match seen.get(&key) {
                None => {
                    seen.insert(key, (x, lb, conn.at));
                }
                Some(&(y, other_lb, when)) => {
                    if other_lb != lb {
                        across += 1;
                    }
                    if y != x && reported < 5 {
                        reported += 1;
                        violation_at(
                            out,
                            "affinity",
                            conn.at,
                            format!(
                                "client {} with {} up: lb{other_lb} chose b{y} at {}, lb{lb} chose b{x} at {}",
                                key.0,
                                mask_names(key.1, n),
                                secs(when),
                                secs(conn.at)
                            ),
                        );
                    }
                }
            }
        }
    }
    if plan.lbs > 1 && across == 0 && !obs.sessions.is_empty() && plan.services.is_none() {
        violation(
            out,
            "affinity",
            "no client reached two load balancers with the same backends up: nothing was compared"
                .to_string(),
        );
    }
}
