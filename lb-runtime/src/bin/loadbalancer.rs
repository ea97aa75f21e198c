//! `loadbalancer [PORT] [--config PATH] [--check] [--demo]`: the Layer-4 load balancer.
//!
//! Exit codes: 0 clean shutdown, 2 usage or config error, 1 runtime failure.

use clap::Parser;
use lb_runtime::demo::{self, DemoMode};
use lb_runtime::load::{self, io_message, ConfigSource};
use lb_runtime::{Balancer, Net, TokioNet};
use std::hash::{BuildHasher, Hasher};
use std::path::PathBuf;
use std::process::ExitCode;
use tokio::sync::{mpsc, watch};

/// A Layer-4 (TCP) load balancer.
#[derive(Parser, Debug)]
#[command(version, about, long_about = None)]
struct Cli {
    /// Port to listen on; overrides the port of `listen` in the config (the address stays).
    port: Option<u16>,
    /// Config file. Default: ./config.json, or the built-in default when that is absent.
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Validate the config, print a one-line summary and exit (0 valid, 2 invalid).
    #[arg(long)]
    check: bool,
    /// Also start a demo backend (the `server` program) on each backend address.
    #[arg(long)]
    demo: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let mut loaded = match load::load(cli.config.as_deref()) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    if let Some(port) = cli.port {
        loaded.config.listen.set_port(port);
    }
    if cli.check {
        println!("{}: ok: {}", loaded.source, loaded.config.summary());
        return ExitCode::SUCCESS;
    }
    if loaded.source == ConfigSource::BuiltIn {
        tracing::info!("no ./config.json: using the built-in default config");
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
    let reload = Reload {
        path: cli.config.clone(),
        port: cli.port,
    };
    let code = runtime.block_on(run(loaded, cli.demo, reload));
    lb_runtime::logging::flush();
    code
}

/// How to read the config again on SIGHUP: as at startup.
struct Reload {
    path: Option<PathBuf>,
    port: Option<u16>,
}

async fn run(loaded: load::Loaded, with_demo: bool, reload: Reload) -> ExitCode {
    // First of all, so a SIGHUP or SIGTERM that comes while starting (say, right after
    // the first backend is logged up) is queued, not the default action (exit).
    let signals = Signals::install();
    let net = TokioNet;
    let config = &loaded.config;
    if with_demo {
        for (b, &addr) in config.backends.iter().zip(&loaded.addrs) {
            match net.bind(addr).await {
                Ok(listener) => {
                    tracing::info!("demo backend {} serving on {addr}", b.name);
                    net.spawn(demo::serve(net, listener, b.name.clone(), DemoMode::Http));
                }
                Err(e) => {
                    eprintln!(
                        "loadbalancer: cannot start demo backend {} on {addr}: {}",
                        b.name,
                        io_message(&e)
                    );
                    return ExitCode::from(1);
                }
            }
        }
    }
    let listener = match lb_runtime::net::listen(config.listen) {
        Ok(l) => l,
        Err(e) => {
            eprintln!(
                "loadbalancer: cannot listen on {}: {}",
                config.listen,
                io_message(&e)
            );
            return ExitCode::from(1);
        }
    };
    let local = listener.local_addr().unwrap_or(config.listen);
    let admin_listener = match config.admin {
        None => None,
        Some(addr) => match net.bind(addr).await {
            Ok(l) => Some(l),
            Err(e) => {
                eprintln!(
                    "loadbalancer: cannot listen on the admin address {addr}: {}",
                    io_message(&e)
                );
                return ExitCode::from(1);
            }
        },
    };
    let balancer = Balancer::new(config, &loaded.addrs, random_seed());
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    tracing::info!(
        "listening on {local} ({}; config: {}; {workers} worker thread(s))",
        config.summary(),
        loaded.source
    );
    for (b, addr) in config.backends.iter().zip(&loaded.addrs) {
        tracing::info!(
            "backend {} at {addr}, weight {}: down until its first health check passes",
            b.name,
            b.weight
        );
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let stop = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    net.spawn({
        let b = balancer.clone_handle();
        b_run_probes(b, stop(stop_rx.clone()))
    });
    if let Some(admin) = admin_listener {
        match net.local_addr(&admin) {
            Ok(addr) => tracing::info!("admin endpoint on http://{addr}/"),
            Err(e) => tracing::warn!("admin endpoint: {}", io_message(&e)),
        }
        let info = lb_sans_io::admin::Info {
            listen: local,
            started: balancer.shared().clock.now(),
        };
        let shared = balancer.shared().clone();
        // It serves through the drain after SIGTERM, so /status shows connections ending.
        net.spawn(async move {
            lb_runtime::admin::serve(TokioNet, admin, shared, info, std::future::pending()).await
        });
    }
    let grace = config.timeouts.shutdown_grace.0;
    let (done_tx, mut done_rx) = mpsc::unbounded_channel();
    for i in 0..workers {
        let std_listener = match listener.try_clone() {
            Ok(l) => l,
            Err(e) => {
                eprintln!(
                    "loadbalancer: cannot share the listening socket: {}",
                    io_message(&e)
                );
                return ExitCode::from(1);
            }
        };
        let (b, rx, done) = (balancer.clone_handle(), stop_rx.clone(), done_tx.clone());
        let spawned = std::thread::Builder::new()
            .name(format!("lb-worker-{i}"))
            .spawn(move || {
                let stopped = worker(b, std_listener, grace, stop(rx));
                let _ = done.send(stopped);
            });
        if let Err(e) = spawned {
            eprintln!(
                "loadbalancer: cannot start worker thread: {}",
                io_message(&e)
            );
            return ExitCode::from(1);
        }
    }
    // The workers hold the listening socket now: it closes when the last one stops.
    drop(listener);
    drop(done_tx);
    let mut running = config.clone();
    let Some(mut signals) = signals else {
        tracing::error!("cannot install signal handlers; stop with SIGKILL");
        return std::future::pending().await;
    };
    loop {
        match signals.next().await {
            Signal::Stop(name) => {
                tracing::info!("{name}: shutting down");
                break;
            }
            Signal::Reload => reload_config(&balancer, &reload, &mut running).await,
        }
    }
    let _ = stop_tx.send(true);
    let mut abandoned = 0;
    while let Some(stopped) = done_rx.recv().await {
        match stopped {
            Ok(s) => abandoned += s.abandoned,
            Err(e) => tracing::error!("worker failed: {e}"),
        }
    }
    tracing::info!("stopped ({abandoned} connection(s) cut at the end of the grace period)");
    ExitCode::SUCCESS
}

async fn b_run_probes(b: Balancer, stop: impl std::future::Future<Output = ()>) {
    b.run_probes(TokioNet, stop).await;
}

/// One worker thread: a single-threaded runtime that accepts clients on its clone of the
/// listening socket and runs their flows, with no cross-thread wake-ups on the data path.
fn worker(
    balancer: Balancer,
    listener: std::net::TcpListener,
    grace: std::time::Duration,
    stop: impl std::future::Future<Output = ()>,
) -> std::io::Result<lb_runtime::Stopped> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        Ok(balancer.accept_loop(TokioNet, listener, grace, stop).await)
    })
}

enum Signal {
    /// SIGTERM or SIGINT.
    Stop(&'static str),
    /// SIGHUP.
    Reload,
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

    async fn next(&mut self) -> Signal {
        tokio::select! {
            biased;
            _ = self.term.recv() => Signal::Stop("SIGTERM"),
            _ = self.int.recv() => Signal::Stop("SIGINT"),
            _ = self.hup.recv() => Signal::Reload,
        }
    }
}

/// SIGHUP: reads the config as at startup (file, `PORT` override, host names resolved) and
/// hands it to the pool, which decides what changes. An invalid file changes nothing. The
/// listening socket is never touched.
async fn reload_config(balancer: &Balancer, how: &Reload, running: &mut lb_sans_io::Config) {
    let path = how.path.clone();
    let read = tokio::task::spawn_blocking(move || load::load(path.as_deref())).await;
    let loaded = match read.map_err(|e| e.to_string()) {
        Ok(Ok(loaded)) => loaded,
        Ok(Err(e)) => return reload_failed(e),
        Err(e) => return reload_failed(e),
    };
    let mut new = loaded.config;
    if let Some(port) = how.port {
        new.listen.set_port(port);
    }
    let shared = balancer.shared();
    let summary = shared.with_pool(|pool, now| pool.reconfigure(&new, &loaded.addrs, now));
    shared.wake_probes();
    let removed: Vec<String> = summary
        .removed
        .iter()
        .map(|(name, open)| format!("{name} ({open} open connection(s) drain)"))
        .collect();
    tracing::info!(
        "SIGHUP: config reloaded from {}: {}; {} backend(s) kept, added: [{}], removed: [{}]",
        loaded.source,
        new.summary(),
        summary.kept,
        summary.added.join(", "),
        removed.join(", ")
    );
    let later = running.restart_needed(&new);
    if !later.is_empty() {
        tracing::warn!(
            "SIGHUP: {} changed; that takes a restart (the running values stay)",
            later.join(", ")
        );
    }
    *running = running.reloaded(new);
}

fn reload_failed(error: impl std::fmt::Display) {
    tracing::error!("SIGHUP: reload failed, still serving the previous config: {error}");
}

/// A seed for the pool's generator from the OS's per-process randomness.
fn random_seed() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(std::process::id() as u64);
    h.finish()
}

fn init_logging() {
    lb_runtime::logging::init();
}
