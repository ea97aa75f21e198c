//! `loadbalancer [PORT] [--config PATH] [--check] [--demo] [--seed N] [--log-format FORMAT]
//! [--no-cpu-affinity]`: the Layer-4 load balancer. This file only parses the command line,
//! loads the config, turns signals into control messages and runs the [`Node`]; everything
//! else is the node's.
//!
//! Exit codes: 0 clean shutdown, 2 usage or config error, 1 runtime failure.

use clap::Parser;
use lb_runtime::cli::Cli;
use lb_runtime::demo::{DemoMode, DemoServer};
use lb_runtime::load::{io_message, ConfigSource, LoadError, Loaded};
use lb_runtime::{Control, Net, Node, NodeOptions, TokioNet};
use lb_sans_io::spread::worker_cpus;
use std::hash::{BuildHasher, Hasher};
use std::process::ExitCode;
use tokio::sync::mpsc;

/// mimalloc rather than glibc's malloc: tokio allocates each connection's task and its two
/// reactor entries 128-byte aligned, which glibc serves through its slow `memalign` path.
/// Measured (bench/instructions.sh, two runs each): 35.5-35.6k to 32.4-32.5k user-space
/// instructions per `conn` connection; the idle memory per connection did not change
/// (bench/hold.py: 2,346 and 2,330 B).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    lb_runtime::logging::init(cli.log_format);
    let loaded = match cli.load() {
        Ok(l) => l,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    if cli.check {
        for line in loaded.config.summary_lines() {
            println!("{}: ok: {line}", loaded.source);
        }
        for warning in loaded.config.warnings() {
            println!("{}: warning: {warning}", loaded.source);
        }
        return ExitCode::SUCCESS;
    }
    if loaded.source == ConfigSource::BuiltIn {
        use std::io::IsTerminal;
        if std::io::stderr().is_terminal() {
            tracing::info!("no ./config.json: using the built-in demo config");
        } else {
            tracing::warn!(
                "no ./config.json and no --config: using the built-in demo config (127.0.0.1:8080 over 127.0.0.1:5001-5003); pass --config PATH"
            );
        }
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("loadbalancer: cannot start the runtime: {}", io_message(&e));
            return ExitCode::from(1);
        }
    };
    let code = runtime.block_on(run(cli, loaded));
    lb_runtime::logging::flush();
    code
}

async fn run(cli: Cli, loaded: Loaded) -> ExitCode {
    // First of all, so a SIGHUP or SIGTERM that comes while starting (say, right after
    // the first backend is logged up) is queued, not the default action (exit).
    let Some(signals) = Signals::install() else {
        eprintln!("loadbalancer: cannot install signal handlers");
        return ExitCode::from(1);
    };
    if cli.demo {
        if let Err(message) = start_demo(&loaded).await {
            eprintln!("loadbalancer: {message}");
            return ExitCode::from(1);
        }
    }
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let seed = cli.seed.unwrap_or_else(random_seed);
    // Where the workers run: the CPUs this process may use, and whether to bind them
    // (`lb_sans_io::spread::worker_cpus` decides; unknown CPUs leave them unbound).
    let allowed = lb_runtime::sys::allowed_cpus().unwrap_or_default();
    let options = NodeOptions {
        process_metrics: true,
        worker_cpus: worker_cpus(!cli.no_cpu_affinity, workers, &allowed),
        ..NodeOptions::new(workers, seed)
    };
    let node = Node::new(loaded, options);
    let (control, control_rx) = mpsc::unbounded_channel();
    TokioNet.spawn(signals.forward(cli, control));
    match node.run(TokioNet, control_rx).await {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loadbalancer: {e}");
            ExitCode::from(1)
        }
    }
}

/// `--demo`: a demo HTTP backend on every backend address of every pool (reading the PROXY
/// header its pool makes the load balancer send, if any). An address in several pools gets
/// one.
async fn start_demo(loaded: &Loaded) -> Result<(), String> {
    let net = TokioNet;
    let mut started = std::collections::BTreeSet::new();
    for (pool, b, addr) in loaded.backends() {
        if !started.insert(addr) {
            continue;
        }
        let listener = net.bind(addr).await.map_err(|e| {
            format!(
                "cannot start demo backend {} on {addr}: {}",
                b.name,
                io_message(&e)
            )
        })?;
        tracing::info!("demo backend {} serving on {addr}", b.name);
        let server = DemoServer {
            name: b.name.clone(),
            mode: DemoMode::Http,
            proxy_protocol: pool.proxy_protocol.is_some(),
        };
        net.spawn(server.run(net, listener));
    }
    Ok(())
}

struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> Option<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Some(Signals {
            term: signal(SignalKind::terminate()).ok()?,
            int: signal(SignalKind::interrupt()).ok()?,
            hup: signal(SignalKind::hangup()).ok()?,
        })
    }

    /// SIGTERM and SIGINT stop the node; SIGHUP reads the config again (on a blocking
    /// thread, as at startup) and hands it over, valid or not: the node decides.
    async fn forward(mut self, cli: Cli, control: mpsc::UnboundedSender<Control>) {
        loop {
            let stop = tokio::select! {
                biased;
                _ = self.term.recv() => "SIGTERM",
                _ = self.int.recv() => "SIGINT",
                _ = self.hup.recv() => {
                    let cli = cli.clone();
                    // Reading the file and resolving host names block: off the runtime.
                    #[allow(clippy::disallowed_methods)]
                    let config = tokio::task::spawn_blocking(move || cli.load())
                        .await
                        .unwrap_or_else(|e| Err(LoadError::Other(e.to_string())));
                    let _ = control.send(Control::Reload { cause: "SIGHUP", config });
                    continue;
                }
            };
            tracing::info!("{stop}: shutting down");
            let _ = control.send(Control::Stop);
            return;
        }
    }
}

/// A seed for the pool's generator from the OS's per-process randomness.
fn random_seed() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(std::process::id() as u64);
    h.finish()
}
