//! Health hysteresis: consecutive successes bring a backend up (`rise`), consecutive
//! failures take it down (`fall`). The counter knows nothing of probes or clocks.

/// Whether a backend may receive new connections as far as its checks go.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Health {
    /// Checks pass.
    Up,
    /// Checks fail, or no check has passed yet.
    Down,
}

impl Health {
    /// The label used in the admin endpoint: `up` or `down`.
    pub fn label(self) -> &'static str {
        match self {
            Health::Up => "up",
            Health::Down => "down",
        }
    }
}

/// Counts consecutive check results and flips between [`Health::Up`] and [`Health::Down`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthCounter {
    health: Health,
    /// No result recorded yet: the first success brings the backend up at once.
    fresh: bool,
    /// Consecutive results against the current state (successes while down, failures
    /// while up).
    streak: u32,
    rise: u32,
    fall: u32,
}

impl HealthCounter {
    /// A counter that starts `Down` (or `Up` with `start_up`). A fresh counter goes up
    /// on its first success, so a new load balancer serves as soon as a backend answers.
    pub fn new(rise: u32, fall: u32, start_up: bool) -> HealthCounter {
        HealthCounter {
            health: if start_up { Health::Up } else { Health::Down },
            fresh: !start_up,
            streak: 0,
            rise: rise.max(1),
            fall: fall.max(1),
        }
    }

    /// New `rise` / `fall` thresholds (a reloaded config); the state and streak stay.
    pub fn set_thresholds(&mut self, rise: u32, fall: u32) {
        self.rise = rise.max(1);
        self.fall = fall.max(1);
    }

    /// The current state.
    pub fn health(&self) -> Health {
        self.health
    }

    /// Records a passed check; returns the new state if it changed.
    pub fn record_success(&mut self) -> Option<Health> {
        let fresh = std::mem::replace(&mut self.fresh, false);
        match self.health {
            Health::Up => {
                self.streak = 0;
                None
            }
            Health::Down => {
                self.streak += 1;
                if fresh || self.streak >= self.rise {
                    self.health = Health::Up;
                    self.streak = 0;
                    Some(Health::Up)
                } else {
                    None
                }
            }
        }
    }

    /// Records a failed check; returns the new state if it changed.
    pub fn record_failure(&mut self) -> Option<Health> {
        self.fresh = false;
        match self.health {
            Health::Down => {
                self.streak = 0;
                None
            }
            Health::Up => {
                self.streak += 1;
                if self.streak >= self.fall {
                    self.health = Health::Down;
                    self.streak = 0;
                    Some(Health::Down)
                } else {
                    None
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_success_brings_a_fresh_backend_up() {
        let mut h = HealthCounter::new(3, 2, false);
        assert_eq!(h.health(), Health::Down);
        assert_eq!(h.record_success(), Some(Health::Up));
    }

    #[test]
    fn a_fresh_backend_that_fails_first_needs_rise_successes() {
        let mut h = HealthCounter::new(3, 2, false);
        assert_eq!(h.record_failure(), None);
        assert_eq!(h.record_success(), None);
        assert_eq!(h.record_success(), None);
        assert_eq!(h.record_success(), Some(Health::Up));
    }

    #[test]
    fn fall_consecutive_failures_take_it_down_and_rise_bring_it_back() {
        let mut h = HealthCounter::new(2, 3, true);
        assert_eq!(h.health(), Health::Up);
        assert_eq!(h.record_failure(), None);
        assert_eq!(h.record_failure(), None);
        assert_eq!(
            h.record_success(),
            None,
            "a success resets the failure streak"
        );
        assert_eq!(h.record_failure(), None);
        assert_eq!(h.record_failure(), None);
        assert_eq!(h.record_failure(), Some(Health::Down));
        assert_eq!(h.record_success(), None);
        assert_eq!(
            h.record_failure(),
            None,
            "a failure resets the success streak"
        );
        assert_eq!(h.record_success(), None);
        assert_eq!(h.record_success(), Some(Health::Up));
    }
}
