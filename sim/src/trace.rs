//! The event trace of one run: what happened, when (simulated time) and where, in the order
//! the simulation saw it. Two runs of one seed must produce the same trace; its hash is how
//! a test checks that, and its tail is what a failure prints.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One recorded event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// Simulated time since the start of the run.
    pub at: Duration,
    /// The host (or `sim` for the fault injector and the pool observer).
    pub host: String,
    /// What happened.
    pub what: String,
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:>9.3}s {:<5} {}",
            self.at.as_secs_f64(),
            self.host,
            self.what
        )
    }
}

/// The trace of one run, shared by every host of the simulation.
#[derive(Clone, Debug, Default)]
pub struct Trace {
    events: Arc<Mutex<Vec<Event>>>,
}

impl Trace {
    /// An empty trace.
    pub fn new() -> Trace {
        Trace::default()
    }

    /// Appends an event.
    pub fn push(&self, at: Duration, host: impl Into<String>, what: impl Into<String>) {
        let event = Event {
            at,
            host: host.into(),
            what: what.into(),
        };
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(event);
    }

    /// A copy of every event so far.
    pub fn events(&self) -> Vec<Event> {
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Number of events.
    pub fn len(&self) -> usize {
        self.events.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// FNV-1a over every event's time, host and text: stable across builds and platforms.
pub fn hash_events(events: &[Event]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for &b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    };
    for e in events {
        eat(&(e.at.as_nanos() as u64).to_le_bytes());
        eat(e.host.as_bytes());
        eat(&[0]);
        eat(e.what.as_bytes());
        eat(&[0xff]);
    }
    h
}
