//! The checkers: each judges one property of a run from its [`Observations`] and reports
//! [`Violation`]s. They only read; none of them touches the simulation.
//!
//! - [`flows`]: the load balancer's flows as its sockets saw them (shared by the others).
//! - [`integrity`]: bytes intact and in order end to end; every close has a cause on its
//!   own path (a fault or a timeout); retries are used before a client is given up on;
//!   connections of the liveness phase all complete.
//! - [`health`]: no new connection to a backend unreachable for longer than
//!   `fall × interval + timeout`; a backend back for `rise × interval + timeout` is up
//!   and gets connections; the selector only picks backends the pool has up.
//! - [`counters`]: the pool's counters and states equal what the sockets saw; nothing
//!   leaks; no task panicked; no host failed.
//! - [`affinity`]: with `hash`, every load balancer sends a client to the same backend
//!   (with discovery: whenever their pools list the same backends).
//! - [`timeouts`]: the idle, half-close and connect timeouts fire when they should.
//! - [`operate`]: the operator's actions (admin requests, reloads, the graceful stop) do
//!   what they say; PROXY headers name the real client; `allow` keeps others out.
//! - [`services`]: each client reaches the pool its route names (by listener and server
//!   name); one pool's faults do not disturb another's clients; listeners a reload removes
//!   accept nothing, the ones it keeps refuse nothing.
//! - [`discovery`]: (`fleet`) pools list, and connect to, only what the scripted DNS
//!   named, follow its changes within one interval, and keep the last set through DNS
//!   failures and empty answers.

pub mod affinity;
pub mod counters;
pub mod discovery;
pub mod flows;
pub mod health;
pub mod integrity;
pub mod operate;
pub mod services;
pub mod timeouts;

use crate::run::Observations;
use std::fmt;

/// A property a run broke.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// Which check: `bytes`, `close-cause`, `retries`, `liveness`, `health-down`,
    /// `health-up`, `health-traffic`, `selector`, `counters`, `leak`, `state`, `panic`,
    /// `host`, `affinity`, `admin`, `reload`, `stop`, `proxy`, `allow`, `per-client`,
    /// `backend-down`, `idle-timeout`, `half-close-timeout`, `connect-timeout`, `route`,
    /// `isolation`, `listeners`, `discovery` or `discovery-kept`.
    pub check: &'static str,
    /// When it showed (simulated time), where one moment applies.
    pub at: Option<std::time::Duration>,
    /// What went wrong, with times, hosts and connection names.
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] {}", self.check, self.detail)
    }
}

/// Pushes a violation.
pub(crate) fn violation(out: &mut Vec<Violation>, check: &'static str, detail: String) {
    out.push(Violation {
        check,
        at: None,
        detail,
    });
}

/// Pushes a violation that showed at `at`.
pub(crate) fn violation_at(
    out: &mut Vec<Violation>,
    check: &'static str,
    at: std::time::Duration,
    detail: String,
) {
    out.push(Violation {
        check,
        at: Some(at),
        detail,
    });
}

/// Gives the violations from index `from` on the time `at`, if they have none.
pub(crate) fn stamp(out: &mut [Violation], from: usize, at: Option<std::time::Duration>) {
    for v in out.iter_mut().skip(from) {
        if v.at.is_none() {
            v.at = at;
        }
    }
}

/// Runs every checker.
pub fn check_all(obs: &Observations) -> Vec<Violation> {
    let mut out = Vec::new();
    let flows = flows::Flows::new(obs);
    counters::check(obs, &flows, &mut out);
    integrity::check(obs, &flows, &mut out);
    health::check(obs, &flows, &mut out);
    affinity::check(obs, &flows, &mut out);
    operate::check(obs, &flows, &mut out);
    timeouts::check(obs, &flows, &mut out);
    services::check(obs, &flows, &mut out);
    discovery::check(obs, &flows, &mut out);
    out
}

/// Seconds with millisecond precision, for messages.
pub(crate) fn secs(d: std::time::Duration) -> String {
    format!("{:.3}s", d.as_secs_f64())
}
