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
    runtime.block_on(run(loaded, cli.demo))
}

async fn run(loaded: load::Loaded, with_demo: bool) -> ExitCode {
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
    let listener = match net.bind(config.listen).await {
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
    let local = net.local_addr(&listener).unwrap_or(config.listen);
    let balancer = Balancer::new(config, &loaded.addrs, random_seed());
    tracing::info!(
        "listening on {local} ({}; config: {})",
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
    let stopped = balancer
        .serve(
            net,
            listener,
            config.timeouts.shutdown_grace.0,
            shutdown_signal(),
        )
        .await;
    tracing::info!(
        "stopped ({} connection(s) cut at the end of the grace period)",
        stopped.abandoned
    );
    ExitCode::SUCCESS
}

/// Completes on SIGTERM or SIGINT. SIGHUP is caught so it does not kill the process.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        tracing::error!("cannot install signal handlers; stop with SIGKILL");
        return std::future::pending().await;
    };
    loop {
        tokio::select! {
            biased;
            _ = term.recv() => { tracing::info!("SIGTERM: shutting down"); return; }
            _ = int.recv() => { tracing::info!("SIGINT: shutting down"); return; }
            _ = hup.recv() => {
                tracing::warn!("SIGHUP: config reload is not available in this version; still serving the loaded config");
            }
        }
    }
}

/// A seed for the pool's generator from the OS's per-process randomness.
fn random_seed() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(std::process::id() as u64);
    h.finish()
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}
