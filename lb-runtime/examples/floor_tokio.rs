//! The floor on tokio: what `floor_proxy` does, but on the runtime the project uses, so that
//! the project's CPU per request above the floor can be split into what tokio costs and what
//! the project's own work costs (the flow machine, the shared balancer, the access log,
//! timers). NOT the product: a measuring stick for `docs/performance.md`.
//!
//! One thread per CPU, bound to it, each with a current-thread tokio runtime (as the
//! project's workers) and its own `SO_REUSEPORT` listener (`SO_INCOMING_CPU` set); a task per
//! connection that connects to the next backend in turn and copies both ways with
//! `tokio::io::copy_bidirectional_with_sizes` (16 KiB per direction; a direction's end of
//! stream shuts down the other side's writes); no timers, no clock, no log, no health checks.
//!
//! usage: cargo run --release -p lb-runtime --example floor_tokio -- LISTEN=BACKEND[,BACKEND...]...
//!   (`FLOOR_BIN=target/release/examples/floor_tokio bench/floor-lb.sh` runs it in
//!   `bench/run.sh` in the project's place)
//!   environment: FLOOR_WORKERS (default: the CPUs it may use; bound one each when equal),
//!                FLOOR_BIND=0 (never bind)

use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};

const BUF: usize = 16 * 1024;

/// A listening address and the backends its clients are spread over, in turn.
struct Route {
    listen: SocketAddr,
    backends: Vec<SocketAddr>,
}

fn listener(listen: SocketAddr, cpu: Option<usize>) -> io::Result<TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(listen),
        socket2::Type::STREAM,
        None,
    )?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    if let Some(cpu) = cpu {
        socket.set_cpu_affinity(cpu)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&listen.into())?;
    socket.listen(4096)?;
    TcpListener::from_std(socket.into())
}

async fn serve(listener: TcpListener, backends: Rc<Vec<SocketAddr>>) {
    let mut next = 0usize;
    loop {
        let Ok((mut client, _)) = listener.accept().await else {
            continue;
        };
        let addr = backends[next % backends.len()];
        next += 1;
        // Not the product: no simulation here, a plain local task.
        #[allow(clippy::disallowed_methods)]
        tokio::task::spawn_local(async move {
            let Ok(mut backend) = TcpStream::connect(addr).await else {
                return;
            };
            let _ = client.set_nodelay(true);
            let _ = backend.set_nodelay(true);
            let _ =
                tokio::io::copy_bidirectional_with_sizes(&mut client, &mut backend, BUF, BUF).await;
        });
    }
}

fn worker(routes: Arc<Vec<Route>>, cpu: Option<usize>) -> io::Result<()> {
    if let Some(cpu) = cpu {
        lb_runtime::sys::bind_thread_to(cpu)?;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async {
        for route in routes.iter() {
            let l = listener(route.listen, cpu)?;
            let backends = Rc::new(route.backends.clone());
            #[allow(clippy::disallowed_methods)]
            tokio::task::spawn_local(serve(l, backends));
        }
        std::future::pending::<io::Result<()>>().await
    })
}

fn main() {
    let routes: Vec<Route> = std::env::args()
        .skip(1)
        .map(|arg| {
            let parse = |s: &str| -> SocketAddr {
                s.parse().unwrap_or_else(|e| {
                    eprintln!("floor_tokio: {arg}: {s}: {e}");
                    std::process::exit(2)
                })
            };
            let Some((listen, backends)) = arg.split_once('=') else {
                eprintln!("floor_tokio: {arg}: expected LISTEN=BACKEND[,BACKEND...]");
                std::process::exit(2)
            };
            Route {
                listen: parse(listen),
                backends: backends.split(',').map(parse).collect(),
            }
        })
        .collect();
    if routes.is_empty() {
        eprintln!("usage: floor_tokio LISTEN=BACKEND[,BACKEND...]...");
        std::process::exit(2);
    }
    let routes = Arc::new(routes);
    let cpus = lb_runtime::sys::allowed_cpus().unwrap_or_default();
    let workers = std::env::var("FLOOR_WORKERS")
        .ok()
        .and_then(|w| w.parse().ok())
        .unwrap_or(cpus.len().max(1));
    let bind = workers == cpus.len() && std::env::var("FLOOR_BIND").as_deref() != Ok("0");
    let threads: Vec<_> = (0..workers)
        .map(|i| {
            let routes = Arc::clone(&routes);
            let cpu = bind.then(|| cpus[i]);
            #[allow(clippy::disallowed_methods)]
            std::thread::spawn(move || worker(routes, cpu))
        })
        .collect();
    eprintln!(
        "floor_tokio: {workers} worker(s){}",
        if bind { ", bound to a CPU each" } else { "" }
    );
    for t in threads {
        if let Ok(Err(e)) = t.join() {
            eprintln!("floor_tokio: {e}");
            std::process::exit(1);
        }
    }
}
