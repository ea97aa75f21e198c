//! Log output for the binaries. On a terminal, lines go out as they are written. Otherwise
//! (a file, a pipe, journald) they are gathered in a buffer flushed every 100 ms or at
//! 64 KiB, so the per-connection line costs a memory copy, not a `write` syscall and a
//! contended stderr lock on every close.

use std::io::{self, IsTerminal, Write};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

const FLUSH_EVERY: Duration = Duration::from_millis(100);
const FLUSH_AT: usize = 64 * 1024;

/// The shared log buffer.
#[derive(Default)]
struct Buffer {
    bytes: Mutex<Vec<u8>>,
}

impl Buffer {
    fn flush(&self) {
        let pending = {
            let mut b = self.bytes.lock().unwrap_or_else(|p| p.into_inner());
            if b.is_empty() {
                return;
            }
            std::mem::take(&mut *b)
        };
        // Nowhere to report a failed log write; the lines are lost.
        let _ = io::stderr().lock().write_all(&pending);
    }
}

static BUFFER: OnceLock<Arc<Buffer>> = OnceLock::new();

/// A writer that appends to the shared buffer.
struct BufferWriter(Arc<Buffer>);

impl Write for BufferWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let full = {
            let mut b = self.0.bytes.lock().unwrap_or_else(|p| p.into_inner());
            b.extend_from_slice(data);
            b.len() >= FLUSH_AT
        };
        if full {
            self.0.flush();
        }
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

/// Sets up `tracing` for a binary: level from `RUST_LOG` (default `info`), to stderr.
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    if io::stderr().is_terminal() {
        builder.with_ansi(true).with_writer(io::stderr).init();
        return;
    }
    let buffer = BUFFER.get_or_init(Arc::default).clone();
    builder
        .with_ansi(false)
        .with_writer(MakeBuffered(buffer.clone()))
        .init();
    // A detached flusher; `flush` at exit writes out the rest.
    // Process plumbing outside any runtime (and never in the simulation): a thread that
    // flushes the log buffer.
    #[allow(clippy::disallowed_methods)]
    let _ = std::thread::Builder::new()
        .name("log-flush".into())
        .spawn(move || loop {
            std::thread::sleep(FLUSH_EVERY);
            buffer.flush();
        });
}

/// Writes out buffered log lines; call before the process exits.
pub fn flush() {
    if let Some(b) = BUFFER.get() {
        b.flush();
    }
}
