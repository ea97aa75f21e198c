//! The demo backend's command line, shared by the `lb-demo-server` and `server` binaries:
//! `lb-demo-server PORT [--name NAME] [--echo] [--bind ADDR] [--proxy-protocol]`. By
//! default an HTTP/1.1 responder answering every request with `Hello from NAME\n`; with
//! `--echo` a raw TCP echo that honours half-close; with `--proxy-protocol`, every
//! connection must start with a PROXY protocol header (v1 or v2).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use super::{DemoMode, DemoServer};
use crate::net::{Net, TokioNet};
use clap::Parser;

/// The demo backend for the load balancer.
#[derive(Debug, Parser)]
#[command(
    name = "lb-demo-server",
    version,
    about = "The demo backend for the load balancer",
    long_about = "The demo backend for the load balancer: an HTTP/1.1 responder (keep-alive \
aware) that answers every request, `GET /health` included, with `200 OK` and the body \
`Hello from NAME`; with --echo, a raw TCP echo that honours half-close. Stops on SIGTERM or \
SIGINT."
)]
struct Args {
    /// TCP port to listen on.
    port: u16,
    /// Name shown in `Hello from NAME` and the `X-Backend` header [default: server-PORT].
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// Echo raw TCP bytes instead of answering HTTP.
    #[arg(long)]
    echo: bool,
    /// Address to listen on.
    #[arg(long, value_name = "ADDR", default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    bind: IpAddr,
    /// Expect a PROXY protocol header (version 1 or 2) at the start of every connection,
    /// as a backend behind `"proxy_protocol"` does; connections without one are closed.
    #[arg(long)]
    proxy_protocol: bool,
}

/// The demo backend's clap `Command`, named `name` in usage lines (`lb-demo-server`, or
/// `server`).
pub fn command(name: &'static str) -> clap::Command {
    use clap::CommandFactory;
    Args::command().name(name).bin_name(name)
}

/// The demo backend's `main`: parses the command line (`name` is the program's name in
/// usage lines: `lb-demo-server`, or `server`), serves until SIGTERM or SIGINT.
pub fn main(name: &'static str) -> std::process::ExitCode {
    use clap::FromArgMatches;
    let matches = command(name).get_matches();
    let args = match Args::from_arg_matches(&matches) {
        Ok(args) => args,
        Err(e) => e.exit(),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{name}: cannot start the runtime: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    runtime.block_on(serve(name, args))
}

async fn serve(name: &str, args: Args) -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();

    let mode = if args.echo {
        DemoMode::Echo
    } else {
        DemoMode::Http
    };
    let mut server = DemoServer::new(args.port, args.name, mode);
    server.proxy_protocol = args.proxy_protocol;
    let addr = SocketAddr::new(args.bind, args.port);
    let net = TokioNet;
    let listener = match net.bind(addr).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("{name}: cannot listen on {addr}: {error}");
            return std::process::ExitCode::from(1);
        }
    };
    let local = net.local_addr(&listener).unwrap_or(addr);
    tracing::info!("listening on {local} as {} ({})", server.name, server.mode);

    tokio::select! {
        biased;
        () = shutdown_signal() => {
            tracing::info!("signal received, exiting");
        }
        () = server.run(net, listener) => {}
    }
    std::process::ExitCode::SUCCESS
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    biased;
                    _ = term.recv() => {}
                    () = ctrl_c() => {}
                }
            }
            Err(error) => {
                tracing::warn!(%error, "cannot watch SIGTERM; only Ctrl-C stops the server");
                ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    ctrl_c().await;
}

/// Resolves on Ctrl-C; never, if Ctrl-C cannot be watched.
async fn ctrl_c() {
    if let Err(error) = tokio::signal::ctrl_c().await {
        tracing::warn!(%error, "cannot watch Ctrl-C");
        std::future::pending::<()>().await;
    }
}
