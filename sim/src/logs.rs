//! What the load balancers logged about their connections: one "connection closed" line
//! per connection, captured from `tracing` while a run lasts (every simulated host runs on
//! the test's thread, so a thread-local subscriber sees them all), with the simulated time
//! it was written. The `stop` check holds every accepted connection to one such line.

use crate::net::sim_now;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing::field::{Field, Visit};
use tracing::Level;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::Layer;

/// One "connection closed" line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloseLine {
    /// When it was written.
    pub at: Duration,
    /// The `client` field.
    pub client: Option<SocketAddr>,
    /// The `backend` field.
    pub backend: String,
    /// The `end` field: how the connection ended.
    pub end: String,
    /// The `pool` field (`-`: none).
    pub pool: String,
    /// The `server_name` field (`-`: none).
    pub server_name: String,
}

/// Any other line about the node as a whole (reloads), with its message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    /// When it was written.
    pub at: Duration,
    /// The message.
    pub message: String,
}

/// The captured lines: connection closes, and reload lines.
#[derive(Clone, Debug, Default)]
pub struct Captured {
    /// Every "connection closed" line.
    pub closes: Vec<CloseLine>,
    /// Every line about a reload (`config reloaded`, `reload failed`).
    pub reloads: Vec<LogLine>,
}

/// Where a run's lines are captured.
pub type CloseLog = Arc<Mutex<Captured>>;

struct Capture(CloseLog);

#[derive(Default)]
struct Fields {
    message: String,
    client: Option<SocketAddr>,
    backend: String,
    end: String,
    pool: String,
    server_name: String,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let text = format!("{value:?}");
        match field.name() {
            "message" => self.message = text,
            "client" => self.client = text.parse().ok(),
            "backend" => self.backend = text,
            "end" => self.end = text,
            "pool" => self.pool = text,
            "server_name" => self.server_name = text,
            _ => {}
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.record_debug(field, &format_args!("{value}"));
    }
}

impl<S: tracing::Subscriber> Layer<S> for Capture {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        let mut f = Fields::default();
        event.record(&mut f);
        let mut captured = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if f.message == "connection closed" {
            captured.closes.push(CloseLine {
                at: sim_now(),
                client: f.client,
                backend: f.backend,
                end: f.end,
                pool: f.pool,
                server_name: f.server_name,
            });
        } else if f.message.contains("config reloaded") || f.message.contains("reload failed") {
            captured.reloads.push(LogLine {
                at: sim_now(),
                message: f.message,
            });
        }
    }
}

/// Captures "connection closed" lines into `log` on this thread until the guard drops.
/// Only the two places that write the lines are listened to, so every other event (the
/// demo servers' debug lines, say) costs nothing, as without a subscriber.
pub fn capture(log: CloseLog) -> tracing::subscriber::DefaultGuard {
    let targets = Targets::new()
        .with_target("lb_runtime::flow_task", Level::INFO)
        .with_target("lb_runtime::node", Level::INFO);
    let subscriber = tracing_subscriber::registry().with(Capture(log).with_filter(targets));
    tracing::subscriber::set_default(subscriber)
}
