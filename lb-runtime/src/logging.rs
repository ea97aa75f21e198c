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

mod close;
pub use close::{log_close, CloseNames};

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
    // ASCII (nearly every value) byte by byte; other text by its characters.
    let ascii = v.is_ascii();
    let bare = !v.is_empty()
        && if ascii {
            v.bytes().all(|b| BARE[usize::from(b)])
        } else {
            v.chars()
                .all(|c| !c.is_whitespace() && !c.is_control() && c != '=' && c != '"')
        };
    if bare {
        return out.write_str(v);
    }
    out.write_char('"')?;
    // ASCII with nothing to escape (a message, say): as it is, between the quotes.
    if ascii && v.bytes().all(|b| QUOTED_AS_IS[usize::from(b)]) {
        out.write_str(v)?;
        return out.write_char('"');
    }
    // Runs of characters that need no escape go out in one write.
    let mut run = 0;
    for (i, c) in v.char_indices() {
        let escape = match c {
            '"' => "\\\"",
            '\\' => "\\\\",
            '\n' => "\\n",
            '\r' => "\\r",
            '\t' => "\\t",
            c if c.is_control() => "",
            _ => continue,
        };
        out.write_str(&v[run..i])?;
        run = i + c.len_utf8();
        if escape.is_empty() {
            write!(out, "\\u{{{:x}}}", c as u32)?;
        } else {
            out.write_str(escape)?;
        }
    }
    out.write_str(&v[run..])?;
    out.write_char('"')
}

/// The ASCII bytes a bare logfmt value may hold: printable, no space, not `=` or `"`.
const BARE: [bool; 128] = printable_but(b'!', [b'=', b'"']);

/// The ASCII bytes a quoted logfmt value holds as they are: printable, not `"` or `\`.
const QUOTED_AS_IS: [bool; 128] = printable_but(b' ', [b'"', b'\\']);

/// A table of the ASCII bytes from `first` to `~`, less the two in `but`.
const fn printable_but(first: u8, but: [u8; 2]) -> [bool; 128] {
    let mut table = [false; 128];
    let mut b = first;
    while b < 0x7f {
        table[b as usize] = b != but[0] && b != but[1];
        b += 1;
    }
    table
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
    /// Both, in one pass: for an event whose first field is its message (every event of
    /// the `tracing` macros with a message).
    All,
}

/// Writes an event's fields as logfmt straight into the line, the message first: in one
/// pass when it is the first field, else in a pass of its own before the others.
struct LogfmtFields<'a, W> {
    out: &'a mut W,
    pass: Pass,
    /// The message was written (in the message pass).
    message: bool,
    result: std::fmt::Result,
}

impl<W: std::fmt::Write> LogfmtFields<'_, W> {
    /// If this pass writes `field`: its key (` key=`, none for the message), then what
    /// `value` writes.
    fn field(&mut self, field: &Field, value: impl FnOnce(&mut W) -> std::fmt::Result) {
        let is_message = field.name() == "message";
        let wanted = match self.pass {
            Pass::Message => is_message,
            Pass::Fields => !is_message,
            Pass::All => true,
        };
        if self.result.is_err() || !wanted {
            return;
        }
        self.message |= is_message;
        if !is_message {
            self.result = (self.out.write_char(' '))
                .and_then(|()| self.out.write_str(field.name()))
                .and_then(|()| self.out.write_char('='));
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
        self.field(field, |out| {
            out.write_str(itoa::Buffer::new().format(value))
        });
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.field(field, |out| {
            out.write_str(itoa::Buffer::new().format(value))
        });
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.field(field, |out| {
            out.write_str(if value { "true" } else { "false" })
        });
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        // `inf`, `NaN` and every number print without a space or quote: bare.
        self.field(field, |out| write_f64(value, out));
    }
}

/// Writes `value` as `{value}` would. A number of thousandths (the close line's
/// milliseconds, rounded to the microsecond) is written by integer arithmetic, the same
/// digits `Display` picks (for such a number the shortest decimal that reads back to it
/// has at most three decimals), without the float formatter.
fn write_f64(value: f64, out: &mut impl std::fmt::Write) -> std::fmt::Result {
    let thousandths = (value * 1000.0).round();
    if !(thousandths.abs() < 1e15 && thousandths / 1000.0 == value) {
        return write!(out, "{value}");
    }
    // Exact: |thousandths| < 1e15 < 2^53.
    let t = thousandths as i64;
    if t < 0 || value.is_sign_negative() && t == 0 {
        out.write_char('-')?;
    }
    write_thousandths(t.unsigned_abs(), out)
}

/// Writes `t` thousandths as `{}` writes the float `t / 1000` (for `t` below `10^15`):
/// the whole part, then the thousandths without trailing zeros, if any.
fn write_thousandths(t: u64, out: &mut impl std::fmt::Write) -> std::fmt::Result {
    let (whole, mut frac) = (t / 1000, t % 1000);
    out.write_str(itoa::Buffer::new().format(whole))?;
    if frac == 0 {
        return Ok(());
    }
    let mut digits = 3;
    while frac % 10 == 0 {
        frac /= 10;
        digits -= 1;
    }
    out.write_char('.')?;
    write_padded(frac, digits, out)
}

/// Writes `n` in `width` digits, zero-padded on the left (`width` at most 9, `n` below
/// `10^width`).
fn write_padded(mut n: u64, width: usize, out: &mut impl std::fmt::Write) -> std::fmt::Result {
    let mut buf = [b'0'; 9];
    for d in buf[..width].iter_mut().rev() {
        *d = b'0' + (n % 10) as u8;
        n /= 10;
    }
    // ASCII digits.
    out.write_str(std::str::from_utf8(&buf[..width]).unwrap_or("0"))
}

thread_local! {
    /// The second `write_now` last wrote, and its text up to the fraction
    /// (`2026-12-01T03:37:48.`): a line in the same second only adds its microseconds.
    static SECOND: std::cell::RefCell<(u64, String)> = const { std::cell::RefCell::new((u64::MAX, String::new())) };
}

/// Writes the wall-clock time as RFC 3339 in UTC with microseconds,
/// `2026-12-01T03:37:48.653286Z`.
fn write_now(out: &mut impl std::fmt::Write) -> std::fmt::Result {
    // Process plumbing of the binaries (the log's timestamp): never in the simulation.
    #[allow(clippy::disallowed_methods)]
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    write_time(since, out)
}

/// [`write_now`] for a time since the Unix epoch.
fn write_time(since: Duration, out: &mut impl std::fmt::Write) -> std::fmt::Result {
    let secs = since.as_secs();
    SECOND.with(|second| {
        let mut second = second.borrow_mut();
        if second.0 != secs {
            let (days, rem) = (secs / 86_400, secs % 86_400);
            let (y, m, d) = civil_from_days(days as i64);
            second.1.clear();
            write!(
                second.1,
                "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.",
                rem / 3_600,
                rem / 60 % 60,
                rem % 60
            )?;
            second.0 = secs;
        }
        out.write_str(&second.1)
    })?;
    write_padded(u64::from(since.subsec_micros()), 6, out)?;
    out.write_char('Z')
}

/// The proleptic Gregorian date of a day counted from 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// A socket address for a log line: written as `Display` writes it, an IPv4 one digit by
/// digit into one buffer (std's formatter goes through the formatting machinery octet by
/// octet, a noticeable part of a connection's close line).
pub struct LogAddr(pub std::net::SocketAddr);

impl LogAddr {
    /// The address as text on the stack, for a log field recorded as a `&str` (which
    /// skips the `Display` path of a `%` field).
    pub fn text(&self) -> StackStr<64> {
        let mut text = StackStr::new();
        // At most 55 characters (`[` 39 `%` 10 `]:` 5): it fits.
        let _ = self.write_to(&mut text);
        text
    }

    /// Writes the address to `out`.
    pub fn write_to(&self, out: &mut impl std::fmt::Write) -> std::fmt::Result {
        let std::net::SocketAddr::V4(v4) = self.0 else {
            return write!(out, "{}", self.0);
        };
        for (i, octet) in v4.ip().octets().into_iter().enumerate() {
            if i > 0 {
                out.write_char('.')?;
            }
            out.write_str(itoa::Buffer::new().format(octet))?;
        }
        out.write_char(':')?;
        out.write_str(itoa::Buffer::new().format(v4.port()))
    }
}

impl std::fmt::Display for LogAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.text().as_str())
    }
}

/// Text of at most `N` bytes formatted on the stack: a log field's value recorded as a
/// `&str` without a `String` or the `Debug` path. Writing past `N` bytes fails and keeps
/// what fitted.
pub struct StackStr<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> StackStr<N> {
    /// Empty.
    pub fn new() -> StackStr<N> {
        StackStr {
            buf: [0; N],
            len: 0,
        }
    }

    /// What was written.
    pub fn as_str(&self) -> &str {
        // Only whole `str`s are copied in, so this is UTF-8.
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or("-")
    }
}

impl<const N: usize> Default for StackStr<N> {
    fn default() -> StackStr<N> {
        StackStr::new()
    }
}

impl<const N: usize> std::fmt::Write for StackStr<N> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        let room = self.buf.get_mut(self.len..end).ok_or(std::fmt::Error)?;
        room.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
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
        // The line is put together in a `String` of this thread's (its many small writes
        // are then plain appends, not calls through the writer's `dyn fmt::Write`) and
        // handed over in one write.
        LINE.with(|line| match line.try_borrow_mut() {
            Ok(mut line) => {
                line.clear();
                logfmt_line(&mut *line, event)?;
                let r = writer.write_str(&line);
                if line.capacity() > LINE_KEEP {
                    *line = String::new();
                }
                r
            }
            // An event logged while formatting one (not ours): write it directly.
            Err(_) => logfmt_line(&mut writer, event),
        })
    }
}

thread_local! {
    /// Where [`Logfmt`] puts a line together.
    static LINE: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

/// Most capacity [`LINE`] keeps after an unusually long line.
const LINE_KEEP: usize = 4096;

/// Writes `event` as one logfmt line: `time=… level=… msg=… key=value…\n`.
fn logfmt_line(out: &mut impl std::fmt::Write, event: &Event<'_>) -> std::fmt::Result {
    out.write_str("time=")?;
    write_now(out)?;
    let level = match *event.metadata().level() {
        tracing::Level::ERROR => "error",
        tracing::Level::WARN => "warn",
        tracing::Level::INFO => "info",
        tracing::Level::DEBUG => "debug",
        tracing::Level::TRACE => "trace",
    };
    out.write_str(" level=")?;
    out.write_str(level)?;
    out.write_str(" msg=")?;
    let message_first =
        event.metadata().fields().iter().next().map(|f| f.name()) == Some("message");
    let mut fields = LogfmtFields {
        out,
        pass: if message_first {
            Pass::All
        } else {
            Pass::Message
        },
        message: false,
        result: Ok(()),
    };
    if !message_first {
        event.record(&mut fields);
        if !fields.message {
            fields.result = fields.result.and_then(|()| fields.out.write_str("\"\""));
        }
        fields.pass = Pass::Fields;
    }
    event.record(&mut fields);
    fields.result?;
    fields.out.write_char('\n')
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

/// [`BUFFER`], once `init` sends text lines there: where the close line is written
/// directly ([`log_close`]).
static DIRECT: OnceLock<Arc<Buffer>> = OnceLock::new();

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
        (LogFormat::Text, false) => {
            builder
                .event_format(Logfmt)
                .with_writer(MakeBuffered(buffer.clone()))
                .init();
            let _ = DIRECT.set(buffer.clone());
        }
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

/// What the logfmt format writes for the events `log` logs (a test's view of the log).
#[cfg(test)]
fn logfmt_of(log: impl FnOnce()) -> String {
    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);
    impl Write for Lines {
        fn write(&mut self, data: &[u8]) -> io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend_from_slice(data);
            Ok(data.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let lines = Lines::default();
    let out = lines.clone();
    let subscriber = tracing_subscriber::fmt()
        .event_format(Logfmt)
        .with_writer(move || out.clone())
        .finish();
    tracing::subscriber::with_default(subscriber, log);
    let bytes = lines.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
    String::from_utf8_lossy(&bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fixed-point path writes what `Display` writes, for the close line's
    /// milliseconds and for every other float.
    #[test]
    fn floats_are_written_as_display_writes_them() {
        let mut values: Vec<f64> = (-2_000..20_000).map(|t| f64::from(t) / 1000.0).collect();
        values.extend((0..2_000u64).map(|i| (i * 7_919 % 100_003) as f64 * 1.000_1 + 123_456.789));
        values.extend([
            0.0,
            -0.0,
            1e14,
            1e15,
            1e300,
            f64::MIN_POSITIVE,
            0.000_5,
            0.1 + 0.2,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
            86_400_000.001,
        ]);
        for v in values {
            let mut ours = String::new();
            write_f64(v, &mut ours).unwrap();
            assert_eq!(ours, format!("{v}"), "{v:?}");
        }
    }

    /// The message leads the line wherever the event has it among its fields (first, as
    /// the macros put it; later, when named explicitly; not at all), then every field once.
    #[test]
    fn lines_put_the_message_first_and_every_field_once() {
        let text = logfmt_of(|| {
            tracing::info!(pool = "web", n = 3_u64, "backend {} is up", "b1");
            tracing::warn!(a = 1_i64, message = "late message", b = true);
            tracing::info!(c = 0.25_f64, d = %"x y");
        });
        let tails: Vec<&str> = text
            .lines()
            .map(|l| l.split_once(" level=").expect("time, then level").1)
            .collect();
        assert_eq!(
            tails,
            [
                r#"info msg="backend b1 is up" pool=web n=3"#,
                r#"warn msg="late message" a=1 b=true"#,
                r#"info msg="" c=0.25 d="x y""#,
            ]
        );
    }

    #[test]
    fn values_are_quoted_when_logfmt_needs_it() {
        for (v, written) in [
            ("web", "web"),
            ("127.0.0.1:80", "127.0.0.1:80"),
            ("café", "café"),
            ("", r#""""#),
            ("a b", r#""a b""#),
            ("a=b", r#""a=b""#),
            ("say \"hi\"", r#""say \"hi\"""#),
            ("back\\slash", "back\\slash"),
            ("tab\there", r#""tab\there""#),
            ("del\u{7f}", r#""del\u{7f}""#),
            ("nbsp\u{a0}x", "\"nbsp\u{a0}x\""),
            ("line\u{2028}sep", "\"line\u{2028}sep\""),
            ("bell\u{7}", r#""bell\u{7}""#),
            ("connection closed", r#""connection closed""#),
            ("a b\\c", r#""a b\\c""#),
            ("a b\"c", r#""a b\"c""#),
            ("a b\u{7f}", r#""a b\u{7f}""#),
            ("a b é", "\"a b é\""),
            ("a\u{1f} b", r#""a\u{1f} b""#),
        ] {
            let mut out = String::new();
            logfmt_value(v, &mut out).unwrap();
            assert_eq!(out, written, "{v:?}");
        }
    }

    #[test]
    fn addresses_are_written_as_display_writes_them() {
        for a in [
            "0.0.0.0:0",
            "127.0.0.1:8080",
            "255.255.255.255:65535",
            "10.20.30.40:5",
            "[::1]:443",
            "[2001:db8::7]:65535",
        ] {
            let addr: std::net::SocketAddr = a.parse().unwrap();
            assert_eq!(LogAddr(addr).to_string(), addr.to_string());
            assert_eq!(LogAddr(addr).text().as_str(), addr.to_string());
            assert_eq!(format!("{:>24}", LogAddr(addr)), format!("{addr:>24}"));
        }
        // The longest there is: every IPv6 digit, a scope id, the highest port.
        let longest = std::net::SocketAddr::V6(std::net::SocketAddrV6::new(
            std::net::Ipv6Addr::from(u128::MAX),
            u16::MAX,
            0,
            u32::MAX,
        ));
        assert_eq!(LogAddr(longest).text().as_str(), longest.to_string());
    }

    #[test]
    fn stack_text_keeps_what_fits() {
        let mut text = StackStr::<8>::new();
        assert!(text.write_str("abcd").is_ok());
        assert!(write!(text, "{}", 1234).is_ok());
        assert_eq!(text.as_str(), "abcd1234");
        assert!(write!(text, "x").is_err());
        assert_eq!(text.as_str(), "abcd1234");
        // A piece that does not fit is left out whole, so the text stays UTF-8.
        let mut text = StackStr::<4>::new();
        assert!(text.write_str("é").is_ok());
        assert!(text.write_str("€").is_err(), "5 bytes into 4");
        assert_eq!(text.as_str(), "é");
    }

    /// Times as tracing-subscriber's RFC 3339 formatter wrote them, including the second
    /// cache (a later time in a new second, then one in an earlier second).
    #[test]
    fn times_are_rfc3339_with_microseconds() {
        for (secs, micros, text) in [
            (1_796_096_268, 653_286, "2026-12-01T03:37:48.653286Z"),
            (1_796_096_268, 7, "2026-12-01T03:37:48.000007Z"),
            (1_796_096_269, 999_999, "2026-12-01T03:37:49.999999Z"),
            (0, 0, "1970-01-01T00:00:00.000000Z"),
            (951_782_400, 500_000, "2000-02-29T00:00:00.500000Z"),
            (4_107_542_399, 1, "2100-02-28T23:59:59.000001Z"),
            (4_107_542_400, 1, "2100-03-01T00:00:00.000001Z"),
            (1_709_251_199, 0, "2024-02-29T23:59:59.000000Z"),
        ] {
            let mut out = String::new();
            write_time(
                Duration::from_secs(secs) + Duration::from_micros(micros),
                &mut out,
            )
            .unwrap();
            assert_eq!(out, text);
        }
    }

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
