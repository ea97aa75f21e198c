//! The command lines of the binaries, as clap definitions: [`Cli`] is `loadbalancer`'s
//! (the binary parses it), [`loadbalancer_command`] and [`demo_server_command`] the clap
//! `Command`s the man pages and shell completions are generated from
//! (`lb-runtime/tests/generated.rs`).

use crate::load::{self, LoadError, Loaded};
use crate::logging::LogFormat;
use clap::{CommandFactory, Parser};
use std::path::PathBuf;

/// `loadbalancer VERSION (COMMIT)`.
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("LB_COMMIT"), ")");

/// A Layer-4 (TCP) load balancer: listeners, pools of backends with health checks, seven
/// balancing algorithms, TLS passthrough routing by server name, reload on SIGHUP and a
/// graceful drain on SIGTERM.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "loadbalancer",
    version = VERSION,
    about = "A Layer-4 (TCP) load balancer",
    long_about = "A Layer-4 (TCP) load balancer: listeners, pools of backends with health \
checks, seven balancing algorithms, TLS passthrough routing by server name, reload on SIGHUP \
and a graceful drain on SIGTERM.\n\nWithout --config it reads ./config.json, or runs a \
built-in demo config (127.0.0.1:8080 over 127.0.0.1:5001-5003) when that file does not exist.",
    after_help = "Signals: SIGHUP reloads the config; SIGTERM/SIGINT stop accepting, drain for \
timeouts.shutdown_grace and exit 0. Exit codes: 0 clean shutdown, 2 usage or config error, \
1 runtime failure."
)]
pub struct Cli {
    /// Port to listen on; overrides the port of the first listener (the address stays).
    pub port: Option<u16>,
    /// Config file. Default: ./config.json, or the built-in default when that is absent.
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Validate the config, print a one-line summary per listener and exit (0 valid, 2
    /// invalid).
    #[arg(long)]
    pub check: bool,
    /// Also start a demo backend (the `server` program) on each backend address of every
    /// pool.
    #[arg(long)]
    pub demo: bool,
    /// Seed of the load balancer's random choices (`random`, `power_of_two`, probe jitter).
    /// Logged at startup; give the logged value to replay a run's choices. Default: random.
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// Log lines as logfmt text (`key=value`, quoted where needed) or one JSON object per
    /// line.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, value_name = "FORMAT")]
    pub log_format: LogFormat,
    /// Leave the workers to the scheduler. By default, with one worker per CPU the process
    /// may use, each worker is bound to a CPU of its own and accepts the clients whose
    /// packets that CPU handles.
    #[arg(long)]
    pub no_cpu_affinity: bool,
}

impl Cli {
    /// Reads the config as the command line says: the file (or the built-in default),
    /// with `PORT` overriding the port of the first listener. The same at startup and on
    /// SIGHUP.
    pub fn load(&self) -> Result<Loaded, LoadError> {
        let mut loaded = load::load(self.config.as_deref())?;
        if let Some(port) = self.port {
            loaded.override_port(port);
        }
        Ok(loaded)
    }
}

/// `loadbalancer`'s clap `Command`, as the binary parses it.
pub fn loadbalancer_command() -> clap::Command {
    Cli::command()
}

/// The demo backend's clap `Command` under its installed name, `lb-demo-server`.
pub fn demo_server_command() -> clap::Command {
    crate::demo::cli::command("lb-demo-server")
}
