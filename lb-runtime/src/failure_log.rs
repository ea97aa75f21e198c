//! Keeps a run of repeated failures (accepts or probes failing while the host is out of
//! descriptors) to a few log lines: the first failure, a reminder while it lasts, and one
//! line when things work again. Out of descriptors, accept fails every 10 ms on every
//! worker and every probe fails; one line each would bury everything else in the log.

use std::time::Duration;
use tokio::time::Instant;

/// While failures go on, how often to log that they still do.
pub const REMINDER: Duration = Duration::from_secs(10);

/// One kind of repeated failure, e.g. "accept failed" / "accepting again".
pub struct FailureRun {
    failed: &'static str,
    recovered: &'static str,
    count: u64,
    since: Option<Instant>,
    logged: Option<Instant>,
}

impl FailureRun {
    /// Lines read `{failed}: why` while failing and `{recovered} after ...` at the end.
    pub const fn new(failed: &'static str, recovered: &'static str) -> FailureRun {
        FailureRun {
            failed,
            recovered,
            count: 0,
            since: None,
            logged: None,
        }
    }

    /// Records a failure; returns the line to log, if this one deserves a line.
    pub fn failed(&mut self, why: &str, now: Instant) -> Option<String> {
        self.count += 1;
        let since = *self.since.get_or_insert(now);
        if self
            .logged
            .is_some_and(|t| now.duration_since(t) < REMINDER)
        {
            return None;
        }
        self.logged = Some(now);
        Some(if self.count == 1 {
            format!("{}: {why}", self.failed)
        } else {
            format!(
                "{}: {why} (still, {} times in {:?})",
                self.failed,
                self.count,
                now.duration_since(since)
            )
        })
    }

    /// Records a success; returns the line to log if it ends a run of failures.
    pub fn succeeded(&mut self, now: Instant) -> Option<String> {
        let since = self.since.take()?;
        let line = format!(
            "{} after {} failures in {:?}",
            self.recovered,
            self.count,
            now.duration_since(since)
        );
        self.count = 0;
        self.logged = None;
        Some(line)
    }
}

/// Repeated events with no end to report (the admin endpoint refusing or evicting
/// connections while its slots are full): the first is logged, then at most one line per
/// [`REMINDER`], saying how many went unlogged since the last line.
pub struct Throttle {
    what: &'static str,
    unlogged: u64,
    logged: Option<Instant>,
}

impl Throttle {
    /// Lines read `{what}: detail`.
    pub const fn new(what: &'static str) -> Throttle {
        Throttle {
            what,
            unlogged: 0,
            logged: None,
        }
    }

    /// Records an event; returns the line to log, if this one deserves a line.
    pub fn event(&mut self, detail: &str, now: Instant) -> Option<String> {
        if self
            .logged
            .is_some_and(|t| now.duration_since(t) < REMINDER)
        {
            self.unlogged += 1;
            return None;
        }
        let line = match (self.unlogged, self.logged) {
            (0, _) | (_, None) => format!("{}: {detail}", self.what),
            (n, Some(t)) => format!(
                "{}: {detail} (and {n} more in the {:?} since the last line)",
                self.what,
                now.duration_since(t)
            ),
        };
        self.logged = Some(now);
        self.unlogged = 0;
        Some(line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_of_failures_logs_first_reminders_and_the_end() {
        let t0 = crate::clock::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut run = FailureRun::new("accept failed", "accepting again");
        assert_eq!(run.succeeded(t0), None, "no run to end");
        assert_eq!(
            run.failed("too many open files", t0).as_deref(),
            Some("accept failed: too many open files")
        );
        for i in 1..1000 {
            assert_eq!(run.failed("too many open files", ms(i * 10)), None);
        }
        assert_eq!(
            run.failed("too many open files", ms(10_000)).as_deref(),
            Some("accept failed: too many open files (still, 1001 times in 10s)")
        );
        assert_eq!(run.failed("too many open files", ms(10_010)), None);
        assert_eq!(
            run.succeeded(ms(12_000)).as_deref(),
            Some("accepting again after 1002 failures in 12s")
        );
        assert_eq!(run.succeeded(ms(12_010)), None);
        // A new run starts from scratch.
        assert_eq!(
            run.failed("too many open files", ms(12_020)).as_deref(),
            Some("accept failed: too many open files")
        );
    }

    #[test]
    fn throttled_events_log_one_line_per_ten_seconds_with_a_count() {
        let t0 = crate::clock::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut slots = Throttle::new("admin: connection slots full");
        assert_eq!(
            slots.event("evicted one", t0).as_deref(),
            Some("admin: connection slots full: evicted one")
        );
        for i in 1..500 {
            assert_eq!(slots.event("evicted one", ms(i * 20)), None);
        }
        assert_eq!(
            slots.event("refused one", ms(10_000)).as_deref(),
            Some("admin: connection slots full: refused one (and 499 more in the 10s since the last line)")
        );
        // Quiet for a while: the next one is logged at once, with nothing unlogged.
        assert_eq!(
            slots.event("evicted one", ms(60_000)).as_deref(),
            Some("admin: connection slots full: evicted one")
        );
    }
}
