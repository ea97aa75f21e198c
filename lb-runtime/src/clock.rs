//! The driver's one clock: `tokio::time`, which turmoil virtualises. Everything in the
//! driver reads time through here (a lint forbids reading it anywhere else), and converts
//! between it and the machines' [`Timestamp`].

use lb_sans_io::Timestamp;
use tokio::time::Instant;

/// The driver's epoch; every `now` given to a machine is measured from it.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    epoch: Instant,
}

impl Clock {
    /// A clock whose epoch is now.
    pub fn start() -> Clock {
        Clock { epoch: now() }
    }

    /// The current time as a machine timestamp.
    pub fn now(&self) -> Timestamp {
        Timestamp::from_duration(now().saturating_duration_since(self.epoch))
    }

    /// The `tokio::time::Instant` of a machine timestamp (for sleeping until it).
    pub fn instant(&self, t: Timestamp) -> Instant {
        self.epoch + t.since_epoch()
    }
}

/// The current instant of the driver's clock (simulated under turmoil).
#[allow(clippy::disallowed_methods)] // The one place the clock is read.
pub fn now() -> Instant {
    Instant::now()
}
