//! The load balancer's timeouts fire when they should, not merely "eventually":
//!
//! - `idle-timeout`: a connection silent both ways for `timeouts.idle` is closed then: a
//!   client that pauses past it sees the end of the stream within a few milliseconds of
//!   the load balancer's last activity plus the timeout (stall sessions; half-open sessions
//!   whose backend keeps its side open).
//! - `half-close-timeout`: once one side sent FIN, a direction silent for
//!   `timeouts.half_close` is closed then (half-open sessions whose backend closes: the
//!   load balancer's client socket closes at the backend's FIN plus the timeout, or the
//!   idle timeout if that is shorter).
//! - `connect-timeout`: a backend connect not done by `timeouts.connect` is given up then
//!   (and the next backend tried), and none takes longer.
//!
//! Bounds allow a tick of timer rounding each way and the link latency for the FIN to
//! reach the client.

use super::flows::{Flow, Flows};
use super::{secs, violation_at, Violation};
use crate::client::{Outcome, Phase, SessionRecord};
use crate::net::ConnectOutcome;
use crate::run::Observations;
use crate::scenario::SessionKind;
use lb_runtime::demo::DemoMode;
use std::time::Duration;

/// Runs the checks of this module.
pub fn check(obs: &Observations, flows: &Flows, out: &mut Vec<Violation>) {
    for s in &obs.sessions {
        if !obs.allowed(s.client) || !matches!(s.phase, Phase::Chaos | Phase::Liveness) {
            continue;
        }
        let Some(flow) = s.local.and_then(|l| flows.find(s.lb, l, s.start, s.end)) else {
            continue;
        };
        match s.kind {
            SessionKind::Stall => stalled(obs, s, flow, out),
            SessionKind::HalfOpen => half_open(obs, s, flow, out),
            _ => {}
        }
    }
    connects(obs, flows, out);
}

/// When the load balancer last moved a byte of this session before the client read at
/// `read` (its last read of interest), as well as the client can tell: its backend
/// connection was made, or it wrote what the client read (less the latency).
fn last_activity(
    obs: &Observations,
    s: &SessionRecord,
    flow: &Flow,
    read: Option<Duration>,
) -> Option<(Duration, Duration)> {
    let plan = &obs.plan;
    let log = &obs.lb_logs[s.lb];
    let established = flow
        .connects
        .last()
        .map(|&c| &log.connects[c])
        .filter(|c| matches!(c.outcome, ConnectOutcome::Connected { .. }))
        .and_then(|c| c.resolved)?;
    let read = read.unwrap_or(established);
    let lo = established.max(read.saturating_sub(plan.max_latency + plan.tick));
    let hi = established.max(read);
    Some((lo, hi))
}

/// Whether something else may have ended the connection: a fault on its backend's path,
/// or the operator taking its backend away.
fn disturbed(obs: &Observations, s: &SessionRecord, flow: &Flow) -> bool {
    flow.established.is_some_and(|b| {
        obs.unreachable_during(b, s.start, s.end)
            || obs.out_of_rotation_during(s.lb, b, s.start, s.end)
    })
}

fn stalled(obs: &Observations, s: &SessionRecord, flow: &Flow, out: &mut Vec<Violation>) {
    let plan = &obs.plan;
    let idle = plan.lb.idle_timeout;
    let Some((_, to)) = s.stall else { return };
    if disturbed(obs, s, flow) {
        return;
    }
    // Nothing moved since the last answer before the pause (or the backend connect).
    let Some((lo, hi)) = last_activity(obs, s, flow, s.stall_last_read) else {
        return;
    };
    // Only a pause that surely outlasted the load balancer's timer must end in a close.
    if to < hi + idle + plan.max_latency + plan.tick * 3 {
        return;
    }
    judge(obs, s, "idle-timeout", idle, lo, hi, s.closed_at, out);
}

fn half_open(obs: &Observations, s: &SessionRecord, flow: &Flow, out: &mut Vec<Violation>) {
    let plan = &obs.plan;
    if s.outcome != Outcome::Complete || disturbed(obs, s, flow) {
        return;
    }
    let Some(backend) = flow.established else {
        return;
    };
    match plan.backends[backend] {
        // The echo keeps its side open: nothing moves, the idle timeout ends it.
        DemoMode::Echo => {
            let Some((lo, hi)) = last_activity(obs, s, flow, s.last_read) else {
                return;
            };
            judge(
                obs,
                s,
                "idle-timeout",
                plan.lb.idle_timeout,
                lo,
                hi,
                s.closed_at,
                out,
            );
        }
        // The backend closed after its answer; the load balancer passed the FIN on (the
        // client's end of stream) and closes when the silent direction times out.
        DemoMode::Http => {
            let Some(eof) = s.closed_at else { return };
            let (timeout, check) = if plan.lb.half_close_timeout <= plan.lb.idle_timeout {
                (plan.lb.half_close_timeout, "half-close-timeout")
            } else {
                (plan.lb.idle_timeout, "idle-timeout")
            };
            let lo = eof.saturating_sub(plan.max_latency + plan.tick);
            // The load balancer's own socket to the client: no latency to add.
            let closed = flow.closed.map(|c| c + plan.max_latency);
            judge(obs, s, check, timeout, lo, eof, closed, out);
        }
    }
}

/// The load balancer's last activity was in `[lo, hi]`: the close must come `timeout`
/// after it (as seen at `closed`, which may lag by the link latency).
#[allow(clippy::too_many_arguments)]
fn judge(
    obs: &Observations,
    s: &SessionRecord,
    check: &'static str,
    timeout: Duration,
    lo: Duration,
    hi: Duration,
    closed: Option<Duration>,
    out: &mut Vec<Violation>,
) {
    let plan = &obs.plan;
    let earliest = (lo + timeout).saturating_sub(plan.tick);
    let latest = hi + timeout + plan.max_latency + plan.tick * 2;
    let ok = closed.is_some_and(|c| c >= earliest && c <= latest);
    if !ok {
        violation_at(
            out,
            check,
            latest,
            format!(
                "{} ({}, {}..{}): silent since {}..{}, so closed by {}ms later ({}..{}); closed {}",
                s.id,
                s.kind.name(),
                secs(s.start),
                secs(s.end),
                secs(lo),
                secs(hi),
                timeout.as_millis(),
                secs(earliest),
                secs(latest),
                closed.map_or("never".to_string(), secs)
            ),
        );
    }
}

fn connects(obs: &Observations, flows: &Flows, out: &mut Vec<Violation>) {
    let plan = &obs.plan;
    let timeout = plan.lb.connect_timeout;
    let cut_off = plan.stop.map_or(obs.end, |s| s.at);
    let mut reported = 0;
    for (lb, lb_flows) in flows.per_lb.iter().enumerate() {
        let log = &obs.lb_logs[lb];
        for f in lb_flows {
            for &c in &f.connects {
                let conn = &log.connects[c];
                let took = conn.resolved.unwrap_or(obs.end).saturating_sub(conn.at);
                let too_long =
                    took > timeout + plan.tick * 2 && conn.at + timeout + plan.tick * 2 < cut_off;
                // Given up without a failure of the client's: only by the timeout.
                let too_soon = conn.outcome == ConnectOutcome::Abandoned
                    && !f.failed
                    && conn.resolved.is_some_and(|r| r < cut_off)
                    && took + plan.tick < timeout;
                if (too_long || too_soon) && reported < 5 {
                    reported += 1;
                    violation_at(
                        out,
                        "connect-timeout",
                        conn.at + took,
                        format!(
                            "lb{lb}: a connect of {} to {} at {} was {:?} after {}ms (connect timeout {}ms)",
                            f.peer,
                            conn.addr,
                            secs(conn.at),
                            conn.outcome,
                            took.as_millis(),
                            timeout.as_millis()
                        ),
                    );
                }
            }
        }
    }
}
