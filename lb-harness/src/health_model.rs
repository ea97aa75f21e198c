//! The harness's own model of a backend's health: what `rise`, `fall` and `start_up` say
//! its health must be after the check results the driver fed the pool (probe results,
//! probe timeouts, failed client connects). Written from the config's rules, not from
//! `lb_sans_io::health`, so the pool's hysteresis is checked rather than repeated:
//!
//! - A backend starts up with `start_up`, else down and *unchecked*: then its first
//!   passed check brings it up at once (a new load balancer serves as soon as a backend
//!   answers). Any result, passed or failed, ends the unchecked time.
//! - A down backend comes up when its latest `rise` results all passed; an up backend goes
//!   down when its latest `fall` results all failed.
//! - A backend that leaves `disabled` was not checked for a while: it is down and unchecked
//!   again.

use lb_sans_io::health::Health;

/// One backend's health as the harness expects it, and the checks it counted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct HealthModel {
    up: bool,
    /// No result since it started (or left `disabled`): its first pass brings it up.
    unchecked: bool,
    /// Passed results at the end of its history, counted back to the latest failure.
    passes: u32,
    /// Failed results at the end of its history, counted back to the latest pass.
    fails: u32,
    /// Probes that passed.
    pub(super) checks_passed: u64,
    /// Probes that failed or timed out.
    pub(super) checks_failed: u64,
    /// Client connects to it that failed by its fault (refused, timed out).
    pub(super) connect_failures: u64,
}

impl HealthModel {
    /// A backend as configured: up with `start_up`, else down until checked.
    pub(super) fn new(start_up: bool) -> HealthModel {
        HealthModel {
            up: start_up,
            unchecked: !start_up,
            passes: 0,
            fails: 0,
            checks_passed: 0,
            checks_failed: 0,
            connect_failures: 0,
        }
    }

    /// Its health now.
    pub(super) fn health(&self) -> Health {
        if self.up {
            Health::Up
        } else {
            Health::Down
        }
    }

    /// Down and unchecked again (leaving `disabled`); the counters stay.
    pub(super) fn restart(&mut self) {
        self.up = false;
        self.unchecked = true;
        self.passes = 0;
        self.fails = 0;
    }

    /// One check result (a probe's, or a failed client connect's), under `rise` / `fall`.
    pub(super) fn record(&mut self, passed: bool, rise: u32, fall: u32) {
        let first = std::mem::replace(&mut self.unchecked, false);
        if passed {
            self.passes += 1;
            self.fails = 0;
            if !self.up && (first || self.passes >= rise) {
                self.up = true;
            }
        } else {
            self.fails += 1;
            self.passes = 0;
            if self.up && self.fails >= fall {
                self.up = false;
            }
        }
    }

    /// A probe's result.
    pub(super) fn probe(&mut self, passed: bool, rise: u32, fall: u32) {
        if passed {
            self.checks_passed += 1;
        } else {
            self.checks_failed += 1;
        }
        self.record(passed, rise, fall);
    }

    /// A client connect failed by the backend's fault (passive health).
    pub(super) fn connect_failed(&mut self, rise: u32, fall: u32) {
        self.connect_failures += 1;
        self.record(false, rise, fall);
    }
}

#[cfg(test)]
mod tests {
    use super::HealthModel;
    use lb_sans_io::health::Health;

    fn run(mut m: HealthModel, results: &str, rise: u32, fall: u32) -> String {
        results
            .chars()
            .map(|c| {
                m.record(c == '+', rise, fall);
                if m.health() == Health::Up {
                    'U'
                } else {
                    'D'
                }
            })
            .collect()
    }

    #[test]
    fn rise_and_fall_count_the_latest_results() {
        // Unchecked: the first pass is enough.
        assert_eq!(run(HealthModel::new(false), "+-", 3, 2), "UU");
        // A first failure ends the unchecked time: `rise` passes in a row are needed.
        assert_eq!(run(HealthModel::new(false), "-++-+++", 3, 2), "DDDDDDU");
        // Up from the start: `fall` failures in a row take it down.
        assert_eq!(
            run(HealthModel::new(true), "--+---+-++", 2, 3),
            "UUUUUDDDDU"
        );
        let mut m = HealthModel::new(true);
        m.restart();
        assert_eq!(run(m, "+", 5, 5), "U");
    }
}
