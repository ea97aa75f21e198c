//! Log output for the binaries: logfmt text (`time=… level=info msg="connection closed"
//! listener=web client=… end=completed`, every value with a space, `=` or quote quoted) or
//! one JSON object per line (`--log-format json`). On a terminal, lines go out as they are
//! written. Otherwise (a file, a pipe, journald) they are gathered in a buffer flushed
//! every 100 ms or at 64 KiB, so the per-connection line costs a memory copy, not a
//! `write` syscall and a contended stderr lock on every close.

use std::fmt::Write as _;
use std::io::{self, IsTerminal, Write};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// logfmt: `key=value` pairs, values quoted where needed.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// A logfmt value: bare when it has no space, `=`, quote or control character (and is not
/// empty), else quoted with `"` and `\` escaped.
pub fn logfmt_value(v: &str, out: &mut String) {
    let bare = !v.is_empty()
        && v.chars()
            .all(|c| !c.is_whitespace() && !c.is_control() && c != '=' && c != '"');
    if bare {
        out.push_str(v);
        return;
    }
    out.push('"');
    for c in v.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Collects an event's fields as logfmt: the message first (`msg=`), then the others.
#[derive(Default)]
struct LogfmtFields {
    msg: String,
    rest: String,
}

impl LogfmtFields {
    fn push(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.msg = value.to_string();
            return;
        }
        self.rest.push(' ');
        self.rest.push_str(field.name());
        self.rest.push('=');
        logfmt_value(value, &mut self.rest);
    }
}

impl Visit for LogfmtFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.push(field, value);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.push(field, &format!("{value:?}"));
    }
}

/// The logfmt event format: `time=… level=… msg=… key=value…`.
struct Logfmt;

impl<S, N> FormatEvent<S, N> for Logfmt
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let mut time = String::new();
        SystemTime.format_time(&mut Writer::new(&mut time))?;
        let mut fields = LogfmtFields::default();
        event.record(&mut fields);
        let mut line = String::with_capacity(96 + fields.rest.len());
        line.push_str("time=");
        line.push_str(&time);
        line.push_str(" level=");
        line.push_str(&event.metadata().level().as_str().to_ascii_lowercase());
        line.push_str(" msg=");
        logfmt_value(&fields.msg, &mut line);
        line.push_str(&fields.rest);
        writeln!(writer, "{line}")
    }
}

const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// Buffered lines at which the flusher is woken early.
const FLUSH_AT: usize = 64 * 1024;
/// Most bytes of log lines waiting for the flusher. A worker never writes to stderr
/// itself (a slow reader of the log, a full pipe, a stalled journald, would stall every
/// connection of that worker): past this, lines are dropped and counted, and the flusher
/// says how many.
const BUFFER_LIMIT: usize = 4 * 1024 * 1024;

/// The shared log buffer, filled by the workers and written out by the flusher thread.
#[derive(Default)]
struct Buffer {
    pending: Mutex<Pending>,
    /// The flusher thread, woken when [`FLUSH_AT`] bytes wait.
    flusher: OnceLock<std::thread::Thread>,
}

#[derive(Default)]
struct Pending {
    bytes: Vec<u8>,
    /// Lines dropped since the last flush (the buffer was at [`BUFFER_LIMIT`]).
    dropped: u64,
    /// The flusher was woken and has not flushed since.
    woken: bool,
}

impl Buffer {
    /// Appends a line, or drops it when the buffer is full; wakes the flusher once
    /// [`FLUSH_AT`] bytes wait. Never blocks on the log's reader.
    fn push(&self, line: &[u8]) {
        let wake = {
            let mut p = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            if p.bytes.len() + line.len() > BUFFER_LIMIT {
                p.dropped += 1;
            } else {
                p.bytes.extend_from_slice(line);
            }
            let wake = p.bytes.len() >= FLUSH_AT && !p.woken;
            p.woken |= wake;
            wake
        };
        if wake {
            match self.flusher.get() {
                Some(flusher) => flusher.unpark(),
                // No flusher thread could be started: write out here.
                None => self.flush(),
            }
        }
    }

    /// Writes out the waiting lines to `out`, and a line saying how many were dropped.
    fn flush_to(&self, out: &mut impl Write) {
        let (bytes, dropped) = {
            let mut p = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            p.woken = false;
            (std::mem::take(&mut p.bytes), std::mem::take(&mut p.dropped))
        };
        // Nowhere to report a failed log write; the lines are lost.
        let _ = out.write_all(&bytes);
        if dropped > 0 {
            let mut time = String::new();
            let _ = SystemTime.format_time(&mut Writer::new(&mut time));
            let _ = writeln!(
                out,
                "time={time} level=warn msg=\"log lines dropped: the log's reader did not keep up\" dropped={dropped}"
            );
        }
    }

    fn flush(&self) {
        self.flush_to(&mut io::stderr().lock());
    }
}

static BUFFER: OnceLock<Arc<Buffer>> = OnceLock::new();

/// A writer that appends to the shared buffer.
struct BufferWriter(Arc<Buffer>);

impl Write for BufferWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.0.push(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[derive(Clone)]
struct MakeBuffered(Arc<Buffer>);

impl<'a> MakeWriter<'a> for MakeBuffered {
    type Writer = BufferWriter;
    fn make_writer(&'a self) -> Self::Writer {
        BufferWriter(self.0.clone())
    }
}

/// Sets up `tracing` for a binary: level from `RUST_LOG` (default `info`), to stderr, in
/// `format`.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(false);
    let terminal = io::stderr().is_terminal();
    let buffer = BUFFER.get_or_init(Arc::default).clone();
    match (format, terminal) {
        (LogFormat::Text, true) => builder.event_format(Logfmt).with_writer(io::stderr).init(),
        (LogFormat::Text, false) => builder
            .event_format(Logfmt)
            .with_writer(MakeBuffered(buffer.clone()))
            .init(),
        (LogFormat::Json, true) => builder
            .json()
            .flatten_event(true)
            .with_writer(io::stderr)
            .init(),
        (LogFormat::Json, false) => builder
            .json()
            .flatten_event(true)
            .with_writer(MakeBuffered(buffer.clone()))
            .init(),
    }
    if terminal {
        return;
    }
    // A detached flusher; `flush` at exit writes out the rest.
    // Process plumbing outside any runtime (and never in the simulation): a thread that
    // flushes the log buffer.
    let flusher = buffer.clone();
    #[allow(clippy::disallowed_methods)]
    let thread = std::thread::Builder::new()
        .name("log-flush".into())
        .spawn(move || loop {
            std::thread::park_timeout(FLUSH_EVERY);
            flusher.flush();
        });
    if let Ok(thread) = thread {
        let _ = buffer.flusher.set(thread.thread().clone());
    }
}

/// Writes out buffered log lines; call before the process exits.
pub fn flush() {
    if let Some(b) = BUFFER.get() {
        b.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A log reader that does not keep up costs lines, never a worker's time: the buffer
    /// stops at its limit, counts what it dropped, and says so when it is written out.
    #[test]
    fn a_full_log_buffer_drops_lines_and_says_how_many() {
        let buffer = Buffer::default();
        // Nobody flushes: the "flusher" is this thread, which is not looking.
        let _ = buffer.flusher.set(std::thread::current());
        let line = [b'x'; 99]
            .iter()
            .copied()
            .chain(*b"\n")
            .collect::<Vec<u8>>();
        let lines = 2 * BUFFER_LIMIT / line.len();
        for _ in 0..lines {
            buffer.push(&line);
        }
        let kept = buffer.pending.lock().unwrap().bytes.len();
        assert!(kept <= BUFFER_LIMIT, "{kept} bytes buffered");
        let mut out = Vec::new();
        buffer.flush_to(&mut out);
        let out = String::from_utf8(out).unwrap();
        let dropped = lines - kept / line.len();
        assert!(
            out.ends_with(&format!(
                "level=warn msg=\"log lines dropped: the log's reader did not keep up\" dropped={dropped}\n"
            )),
            "{}",
            &out[out.len().saturating_sub(200)..]
        );
        // Written out, the buffer takes lines again, and reports no drop.
        buffer.push(&line);
        let mut out = Vec::new();
        buffer.flush_to(&mut out);
        assert_eq!(out, line);
    }
}
