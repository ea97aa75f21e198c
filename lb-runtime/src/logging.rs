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
pub fn logfmt_value(v: &str, out: &mut impl std::fmt::Write) -> std::fmt::Result {
    let bare = !v.is_empty()
        && v.chars()
            .all(|c| !c.is_whitespace() && !c.is_control() && c != '=' && c != '"');
    if bare {
        return out.write_str(v);
    }
    out.write_char('"')?;
    for c in v.chars() {
        match c {
            '"' => out.write_str("\\\"")?,
            '\\' => out.write_str("\\\\")?,
            '\n' => out.write_str("\\n")?,
            '\r' => out.write_str("\\r")?,
            '\t' => out.write_str("\\t")?,
            c if c.is_control() => write!(out, "\\u{{{:x}}}", c as u32)?,
            c => out.write_char(c)?,
        }
    }
    out.write_char('"')
}

thread_local! {
    /// Where a field's `Debug`/`Display` value is formatted before it is quoted: one per
    /// thread, kept, so a log line allocates nothing.
    static SCRATCH: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

/// Which fields a pass over an event's fields writes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Pass {
    /// Only the message, as `msg=…`.
    Message,
    /// Every other field, as ` key=value`.
    Fields,
}

/// Writes an event's fields as logfmt straight into the line: the message in one pass
/// (it comes first in the line, wherever it is among the fields), the others in a second.
struct LogfmtFields<'a, W> {
    out: &'a mut W,
    pass: Pass,
    /// The message was written (in the message pass).
    message: bool,
    result: std::fmt::Result,
}

impl<W: std::fmt::Write> LogfmtFields<'_, W> {
    /// Writes the key (per the pass), then the value `write` writes, as it is (`bare`) or
    /// through [`logfmt_value`].
    fn field(&mut self, field: &Field, value: impl FnOnce(&mut W) -> std::fmt::Result) {
        let is_message = field.name() == "message";
        if self.result.is_err() || is_message != (self.pass == Pass::Message) {
            return;
        }
        self.message |= is_message;
        if !is_message {
            self.result = write!(self.out, " {}=", field.name());
        }
        if self.result.is_ok() {
            self.result = value(self.out);
        }
    }

}

impl<W: std::fmt::Write> Visit for LogfmtFields<'_, W> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.field(field, |out| logfmt_value(value, out));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.field(field, |out| {
            SCRATCH.with(|scratch| match scratch.try_borrow_mut() {
                Ok(mut scratch) => {
                    scratch.clear();
                    write!(scratch, "{value:?}")?;
                    logfmt_value(&scratch, out)
                }
                // A value whose formatting logs (not ours): format it on its own.
                Err(_) => logfmt_value(&format!("{value:?}"), out),
            })
        });
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.field(field, |out| write!(out, "{value}"));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.field(field, |out| write!(out, "{value}"));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.field(field, |out| out.write_str(if value { "true" } else { "false" }));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        // `inf`, `NaN` and every number print without a space or quote: bare.
        self.field(field, |out| write!(out, "{value}"));
    }
}

/// The logfmt event format: `time=… level=… msg=… key=value…`, written straight into
/// the subscriber's line buffer (no allocation per line).
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
        writer.write_str("time=")?;
        SystemTime.format_time(&mut writer)?;
        let level = match *event.metadata().level() {
            tracing::Level::ERROR => "error",
            tracing::Level::WARN => "warn",
            tracing::Level::INFO => "info",
            tracing::Level::DEBUG => "debug",
            tracing::Level::TRACE => "trace",
        };
        write!(writer, " level={level} msg=")?;
        let mut fields = LogfmtFields {
            out: &mut writer,
            pass: Pass::Message,
            message: false,
            result: Ok(()),
        };
        event.record(&mut fields);
        if !fields.message {
            fields.result = fields.result.and_then(|()| fields.out.write_str("\"\""));
        }
        fields.pass = Pass::Fields;
        event.record(&mut fields);
        fields.result?;
        writeln!(writer)
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
/// Most capacity an emptied buffer keeps for its next use.
const KEEP_CAPACITY: usize = 256 * 1024;

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
    /// The buffer the flusher last wrote out, emptied, kept for the next swap: lines are
    /// appended into capacity already there, not into a buffer grown (copied) again after
    /// every flush.
    spare: Vec<u8>,
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
        let (mut bytes, dropped) = {
            let mut p = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            p.woken = false;
            let spare = std::mem::take(&mut p.spare);
            (
                std::mem::replace(&mut p.bytes, spare),
                std::mem::take(&mut p.dropped),
            )
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
        bytes.clear();
        // A burst's buffer (up to the limit) is not kept for ever.
        bytes.shrink_to(KEEP_CAPACITY);
        let mut p = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        p.spare = bytes;
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
