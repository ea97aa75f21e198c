//! DNS service discovery (`fleet`), judged against the scripted DNS.
//!
//! - `discovery`: no load balancer lists, or connects to, a backend DNS never named up to
//!   then.
//! - `discovery-kept`: a load balancer's pool lists, at every moment once it has learned
//!   anything, a set DNS named within the last [`staleness`] (one interval and slack): a
//!   new answer is applied within one interval, and a failure or an empty answer keeps the
//!   last known set (the pool never lists nothing because DNS failed). Since every
//!   instance follows the same script, the three instances' sets agree within one
//!   interval; `affinity` then compares their choices whenever their lists agree.
//!
//! Connections lost to a backend DNS stopped naming are judged by `close-cause` (only the
//! replaced backend's death, a fault, may end them), and `health-*` leave a backend alone
//! while DNS does not name it (it is out of rotation, see `run::rotation`).

use super::flows::Flows;
use super::{secs, violation_at, Violation};
use crate::dns::staleness;
use crate::run::{mask_names, Observations};
use std::time::Duration;

/// Runs the checks of this module (only for plans with a scripted DNS).
pub fn check(obs: &Observations, flows: &Flows, out: &mut Vec<Violation>) {
    let Some(script) = &obs.plan.dns else {
        return;
    };
    let n = obs.plan.backends.len();
    let stale = staleness(script.interval);
    // Connects only to addresses DNS named by then.
    for (lb, lb_flows) in flows.per_lb.iter().enumerate() {
        let log = &obs.lb_logs[lb];
        let mut reported = 0;
        for f in lb_flows {
            for (k, &c) in f.connects.iter().enumerate() {
                let conn = &log.connects[c];
                let named = script.ever_named_by(conn.at);
                let ok = f.targets[k].is_some_and(|x| named & (1 << x) != 0);
                if !ok && reported < 5 {
                    reported += 1;
                    violation_at(
                        out,
                        "discovery",
                        conn.at,
                        format!(
                            "lb{lb} connected to {} at {}, an address DNS never named by then (named so far: {})",
                            conn.addr,
                            secs(conn.at),
                            mask_names(named, n)
                        ),
                    );
                }
            }
        }
    }
    // With `hash`, instances listing the same backends (and having the same up) build the
    // same table, whatever order they learned them in: compared over many made-up clients.
    let mut seen: std::collections::BTreeMap<(u64, u64), (u64, usize, Duration)> =
        std::collections::BTreeMap::new();
    let mut reported = 0;
    for (lb, samples) in obs.tables.iter().enumerate() {
        for &(t, listed, up, fingerprint) in samples {
            if listed == 0 {
                continue;
            }
            match seen.get(&(listed, up)) {
                None => {
                    seen.insert((listed, up), (fingerprint, lb, t));
                }
                Some(&(other, other_lb, when)) if other != fingerprint && reported < 3 => {
                    reported += 1;
                    violation_at(
                        out,
                        "affinity",
                        t,
                        format!(
                            "lb{other_lb} at {} and lb{lb} at {} list {} with {} up but choose differently for some of 4,096 clients (their hash tables differ)",
                            secs(when),
                            secs(t),
                            mask_names(listed, n),
                            mask_names(up, n)
                        ),
                    );
                }
                Some(_) => {}
            }
        }
    }
    // What each pool lists, over time.
    for (lb, samples) in obs.pool_listed.iter().enumerate() {
        let start = obs.plan.lb_start.get(lb).copied().unwrap_or_default();
        let mut learned = false;
        let mut reported = 0;
        for (i, &(t, listed)) in samples.iter().enumerate() {
            if reported >= 3 {
                break;
            }
            let until = samples.get(i + 1).map_or(obs.end, |s| s.0);
            let never = listed & !script.ever_named_by(t);
            if never != 0 {
                reported += 1;
                violation_at(
                    out,
                    "discovery",
                    t,
                    format!(
                        "lb{lb}'s pool lists {} at {}, never named by DNS by then",
                        mask_names(never, n),
                        secs(t)
                    ),
                );
                continue;
            }
            learned |= listed != 0;
            // The moments to judge this sample at: its start, and each time within it by
            // which a change of the script must have been learned.
            let mut moments = vec![t];
            moments.extend(
                script
                    .sets
                    .iter()
                    .map(|(at, _)| *at + stale)
                    .chain(std::iter::once(start + stale))
                    .filter(|&m| m > t && m < until),
            );
            for m in moments {
                if !learned && m < start + stale {
                    continue;
                }
                let may = script.may_hold_at(m);
                if listed == 0 || !may.contains(&listed) {
                    reported += 1;
                    let may: Vec<String> = may.iter().map(|s| mask_names(*s, n)).collect();
                    let outage = script
                        .outage_at(m.saturating_sub(Duration::from_millis(1)))
                        .map_or(String::new(), |o| format!(" (DNS: {o:?})"));
                    violation_at(
                        out,
                        "discovery-kept",
                        m,
                        format!(
                            "lb{lb}'s pool lists {} at {}{outage}, but DNS named only {} within the last {}",
                            mask_names(listed, n),
                            secs(m),
                            may.join(" or "),
                            secs(stale)
                        ),
                    );
                    break;
                }
            }
        }
    }
}
