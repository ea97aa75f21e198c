//! The close line: the one log line of each connection (`msg="connection closed"` and its
//! fields). In the text log to a file or a pipe, what runs in production, the line is
//! written straight into the log's buffer in the logfmt the `tracing` formatter writes,
//! without `tracing`'s dispatch of each field through its visitor, which was a fifth of a
//! short connection's user-space instructions. Everywhere else (JSON, a terminal, the
//! simulation's captured logs) it is a `tracing` event like any other. `RUST_LOG` governs
//! both: the line is written only where `tracing` would write it.

use super::{
    logfmt_value, write_f64, write_now, write_thousandths, LogAddr, StackStr, DIRECT, LINE,
};
use lb_sans_io::{Balancer, FlowSummary};
use std::fmt::Write as _;

/// The module the close line is logged from, as `RUST_LOG` directives name it (the line
/// was a `tracing` event of the flow's task before it was written here).
const TARGET: &str = "lb_runtime::flow_task";

/// The names a close line shows (its listener, pool and backend), copied out of the
/// balancer while its lock is held, so that the line is put together after the lock is
/// released (the other workers wait on that lock).
pub struct CloseNames {
    /// The three names, one after another.
    text: smallvec::SmallVec<[u8; 96]>,
    /// Where the listener's and the pool's names end in `text`.
    ends: [usize; 2],
}

impl CloseNames {
    /// The names of `summary`'s listener, pool and backend (`-` for none).
    pub fn of(summary: &FlowSummary, balancer: &Balancer) -> CloseNames {
        let listener = balancer
            .listener(summary.listener)
            .map_or("-", |l| l.name.as_str());
        let pool = summary.pool.map_or("-", |p| balancer.pool_name(p));
        let backend = summary
            .pool
            .zip(summary.backend)
            .and_then(|(p, b)| balancer.pool(p)?.backend(b))
            .map_or("-", |b| b.name.as_str());
        CloseNames::new(listener, pool, backend)
    }

    /// These three names, copied.
    fn new(listener: &str, pool: &str, backend: &str) -> CloseNames {
        let mut text = smallvec::SmallVec::new();
        text.extend_from_slice(listener.as_bytes());
        text.extend_from_slice(pool.as_bytes());
        text.extend_from_slice(backend.as_bytes());
        CloseNames {
            text,
            ends: [listener.len(), listener.len() + pool.len()],
        }
    }

    fn name(&self, i: usize) -> &str {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        let end = self.ends.get(i).copied().unwrap_or(self.text.len());
        // Whole `str`s were copied in, so each name is UTF-8.
        std::str::from_utf8(&self.text[start..end]).unwrap_or("-")
    }
}

/// One connection's close line, its values ready to write.
pub struct CloseLine<'a> {
    summary: &'a FlowSummary,
    listener: &'a str,
    pool: &'a str,
    backend: &'a str,
    end: &'static str,
    detail: StackStr<96>,
}

impl<'a> CloseLine<'a> {
    /// The line for `summary`, with the names of its listener, pool and backend.
    pub fn new(summary: &'a FlowSummary, names: &'a CloseNames) -> CloseLine<'a> {
        let mut detail = StackStr::new();
        if let Some(reason) = summary.reason {
            let _ = write!(detail, "{reason}");
        }
        CloseLine {
            summary,
            listener: names.name(0),
            pool: names.name(1),
            backend: names.name(2),
            end: summary.reason.map_or("open", |r| r.code()),
            detail,
        }
    }

    fn server_name(&self) -> &str {
        self.summary.server_name.as_deref().unwrap_or("-")
    }

    /// The connect time in microseconds (`None`: it never connected).
    fn connect_us(&self) -> Option<u64> {
        self.summary.connect_time.map(micros)
    }

    fn retries(&self) -> u32 {
        self.summary.attempts.saturating_sub(1)
    }

    /// Writes the line after its time (` level=info msg="connection closed" listener=…
    /// flow=…`), as the logfmt formatter writes the event [`CloseLine::event`] logs.
    fn write_after_time(&self, out: &mut String) -> std::fmt::Result {
        let s = self.summary;
        out.push_str(" level=info msg=\"connection closed\" listener=");
        logfmt_value(self.listener, out)?;
        out.push_str(" client=");
        // An address has no space, `=`, quote or control character: it goes out bare.
        LogAddr(s.client).write_to(out)?;
        out.push_str(" server_name=");
        logfmt_value(self.server_name(), out)?;
        out.push_str(" pool=");
        logfmt_value(self.pool, out)?;
        out.push_str(" backend=");
        logfmt_value(self.backend, out)?;
        out.push_str(" backend_address=");
        match s.backend_addr {
            Some(a) => LogAddr(a).write_to(out)?,
            None => out.push('-'),
        }
        out.push_str(" connect_ms=");
        match self.connect_us() {
            Some(us) => write_millis(us, out)?,
            None => out.push_str("-1"),
        }
        out.push_str(" retries=");
        out.push_str(itoa::Buffer::new().format(self.retries()));
        out.push_str(" bytes_from_client=");
        out.push_str(itoa::Buffer::new().format(s.bytes_from_client));
        out.push_str(" bytes_from_backend=");
        out.push_str(itoa::Buffer::new().format(s.bytes_from_backend));
        out.push_str(" duration_ms=");
        write_millis(micros(s.duration), out)?;
        out.push_str(" end=");
        logfmt_value(self.end, out)?;
        out.push_str(" detail=");
        logfmt_value(self.detail.as_str(), out)?;
        out.push_str(" flow=");
        out.push_str(itoa::Buffer::new().format(s.id.0));
        out.push('\n');
        Ok(())
    }

    /// Logs the line as a `tracing` event.
    fn event(&self) {
        let s = self.summary;
        let client = LogAddr(s.client).text();
        let backend_address = s.backend_addr.map(|a| LogAddr(a).text());
        tracing::info!(
            target: TARGET,
            // The message as a `&str` field, and first, so the line is written in one pass.
            message = "connection closed",
            listener = self.listener,
            // Every value goes in as a number or a `&str`: a `%` field would take the
            // slower `Debug` path of the log's field visitor.
            client = client.as_str(),
            server_name = self.server_name(),
            pool = self.pool,
            backend = self.backend,
            backend_address = backend_address.as_ref().map_or("-", |a| a.as_str()),
            connect_ms = self.connect_us().map_or(-1.0, millis),
            retries = self.retries(),
            bytes_from_client = s.bytes_from_client,
            bytes_from_backend = s.bytes_from_backend,
            duration_ms = millis(micros(s.duration)),
            end = self.end,
            detail = self.detail.as_str(),
            flow = s.id.0,
        );
    }

    /// Writes the line into the text log's buffer; false where there is none (JSON, a
    /// terminal, no log set up: the simulation and the tests).
    fn write_direct(&self) -> bool {
        let Some(buffer) = DIRECT.get() else {
            return false;
        };
        LINE.with(|line| {
            let Ok(mut line) = line.try_borrow_mut() else {
                return false;
            };
            line.clear();
            line.push_str("time=");
            if write_now(&mut *line)
                .and_then(|()| self.write_after_time(&mut line))
                .is_err()
            {
                return false;
            }
            buffer.push(line.as_bytes());
            true
        })
    }
}

/// Logs a connection's close line (at `info`, as the flow task's).
pub fn log_close(summary: &FlowSummary, names: &CloseNames) {
    if !tracing::enabled!(target: TARGET, tracing::Level::INFO) {
        return;
    }
    let line = CloseLine::new(summary, names);
    if !line.write_direct() {
        line.event();
    }
}

/// A duration in microseconds, rounded to the nearest.
fn micros(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_nanos().saturating_add(500) / 1000).unwrap_or(u64::MAX)
}

/// Microseconds as a number of milliseconds, for a log field.
fn millis(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// Writes microseconds as milliseconds, as `{}` writes [`millis`] of them (the digits of
/// the integer, not the float formatter's, below 10^15).
fn write_millis(us: u64, out: &mut String) -> std::fmt::Result {
    if us < 1_000_000_000_000_000 {
        write_thousandths(us, out)
    } else {
        write_f64(millis(us), out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lb_sans_io::{CloseReason, FlowId, ListenerId, Side};
    use std::time::Duration;

    fn summaries() -> Vec<FlowSummary> {
        let open = FlowSummary {
            id: FlowId(0),
            client: "127.0.0.1:40000".parse().unwrap(),
            listener: ListenerId(0),
            pool: None,
            server_name: None,
            backend: None,
            backend_addr: None,
            attempts: 0,
            connect_time: None,
            bytes_from_client: 0,
            bytes_from_backend: 0,
            duration: Duration::ZERO,
            reason: None,
        };
        vec![
            open.clone(),
            FlowSummary {
                id: FlowId(u64::MAX),
                client: "[2001:db8::7%3]:65535".parse().unwrap(),
                server_name: Some("shop example \"q\"".into()),
                backend_addr: Some("10.0.0.255:8080".parse().unwrap()),
                attempts: 3,
                bytes_from_client: 79,
                bytes_from_backend: u64::MAX,
                duration: Duration::from_secs(86_400) + Duration::from_nanos(1_500),
                connect_time: Some(Duration::from_nanos(999_999_499)),
                reason: Some(CloseReason::Reset(Side::Backend)),
                ..open.clone()
            },
            // Past 10^15 microseconds (31 years), the float formatter's digits.
            FlowSummary {
                client: "255.255.255.255:65535".parse().unwrap(),
                backend_addr: Some("0.0.0.0:0".parse().unwrap()),
                connect_time: Some(Duration::from_micros(999_999_999_999_999)),
                duration: Duration::MAX,
                reason: Some(CloseReason::IdleTimeout),
                ..open.clone()
            },
            FlowSummary {
                attempts: 1,
                connect_time: Some(Duration::from_nanos(400)),
                duration: Duration::from_micros(359),
                reason: Some(CloseReason::Completed),
                ..open
            },
        ]
    }

    /// What the `tracing` formatter writes for `line`'s event, from its level on.
    fn through_tracing(line: &CloseLine<'_>) -> String {
        let text = super::super::logfmt_of(|| line.event());
        let (time, rest) = text.split_once(' ').expect("a time, then the rest");
        assert!(time.starts_with("time=") && time.ends_with('Z'), "{text}");
        format!(" {rest}")
    }

    /// Where the two ways of writing the line first differ, if they do.
    fn difference(
        line: &CloseLine<'_>,
        write: fn(&CloseLine<'_>, &mut String) -> std::fmt::Result,
    ) -> Option<String> {
        let mut direct = String::new();
        write(line, &mut direct).unwrap();
        let traced = through_tracing(line);
        (direct != traced).then(|| format!("written directly:\n{direct}through tracing:\n{traced}"))
    }

    /// The line written straight into the buffer is, from its level on, the line the
    /// logfmt formatter writes for the `tracing` event: every field, in order, quoted
    /// alike (names with spaces, a server name with quotes, IPv6 with a scope, none).
    #[test]
    fn the_direct_line_is_the_line_tracing_writes() {
        let all_names = [
            CloseNames::new("default", "default", "server-5001"),
            CloseNames::new("web front", "pool=a", "b\"1"),
            CloseNames::new("-", "-", "-"),
            CloseNames::new(&"l".repeat(255), &"p".repeat(255), &"b".repeat(255)),
        ];
        for summary in summaries() {
            for names in &all_names {
                let line = CloseLine::new(&summary, names);
                if let Some(d) = difference(&line, |l, out| l.write_after_time(out)) {
                    panic!("{d}");
                }
            }
        }
    }

    /// The check above catches a direct line that differs from the event: one that
    /// leaves a field out, and one that writes the fields in another order.
    #[test]
    fn the_comparison_catches_a_line_that_differs() {
        fn without_flow(line: &CloseLine<'_>, out: &mut String) -> std::fmt::Result {
            line.write_after_time(out)?;
            let cut = out.rfind(" flow=").unwrap();
            out.truncate(cut);
            out.push('\n');
            Ok(())
        }
        fn swapped(line: &CloseLine<'_>, out: &mut String) -> std::fmt::Result {
            line.write_after_time(out)?;
            *out = out.replacen(" listener=default client=", " client=", 1);
            let at = out.find(" server_name=").unwrap();
            out.insert_str(at, " listener=default");
            Ok(())
        }
        let summary = &summaries()[3];
        let names = CloseNames::new("default", "default", "server-5001");
        let line = CloseLine::new(summary, &names);
        assert!(difference(&line, without_flow).is_some());
        assert!(difference(&line, swapped).is_some());
        assert!(difference(&line, |l, out| l.write_after_time(out)).is_none());
    }

    /// The names come out as they went in, long ones (past the inline room) too.
    #[test]
    fn names_come_back_whole() {
        let long = "n".repeat(300);
        for (l, p, b) in [("a", "bb", "ccc"), ("-", "-", "-"), (&*long, "é", &*long)] {
            let n = CloseNames::new(l, p, b);
            assert_eq!([n.name(0), n.name(1), n.name(2)], [l, p, b]);
        }
    }
}
