//! What the two floors (`floor_proxy.rs`, `floor_tokio.rs`) share: their command line, their
//! listening sockets and their worker threads. Not the product: see `floor_proxy.rs`.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

/// A listening address and the backends its clients are spread over, in turn.
pub struct Route {
    pub listen: SocketAddr,
    pub backends: Vec<SocketAddr>,
}

/// The routes of the command line (`LISTEN=BACKEND[,BACKEND...]...`); exits with status 2
/// and a message naming the argument when one is malformed or none is given.
pub fn routes(name: &str) -> Vec<Route> {
    let routes: Vec<Route> = std::env::args()
        .skip(1)
        .map(|arg| {
            let parse = |s: &str| -> SocketAddr {
                s.parse().unwrap_or_else(|e| {
                    eprintln!("{name}: {arg}: {s}: {e}");
                    std::process::exit(2)
                })
            };
            let Some((listen, backends)) = arg.split_once('=') else {
                eprintln!("{name}: {arg}: expected LISTEN=BACKEND[,BACKEND...]");
                std::process::exit(2)
            };
            Route {
                listen: parse(listen),
                backends: backends.split(',').map(parse).collect(),
            }
        })
        .collect();
    if routes.is_empty() {
        eprintln!("usage: {name} LISTEN=BACKEND[,BACKEND...]...");
        std::process::exit(2);
    }
    routes
}

/// A non-blocking listening socket on `listen`, one of its `SO_REUSEPORT` group, asking for
/// the connections whose packets arrive on `cpu` when the worker is bound to one.
pub fn listener(listen: SocketAddr, cpu: Option<usize>) -> io::Result<std::net::TcpListener> {
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
    Ok(socket.into())
}

/// Runs `worker` on `FLOOR_WORKERS` threads (default: one per CPU the process may use),
/// each bound to a CPU of its own when there is one per CPU (unless `FLOOR_BIND=0`), and
/// exits with status 1 when one fails.
pub fn run(
    name: &str,
    routes: Vec<Route>,
    worker: fn(Arc<Vec<Route>>, Option<usize>) -> io::Result<()>,
) {
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
            // Not the product: no runtime to start workers through, plain threads.
            #[allow(clippy::disallowed_methods)]
            std::thread::spawn(move || {
                if let Some(cpu) = cpu {
                    lb_runtime::sys::bind_thread_to(cpu)?;
                }
                worker(routes, cpu)
            })
        })
        .collect();
    eprintln!(
        "{name}: {workers} worker(s){}",
        if bind { ", bound to a CPU each" } else { "" }
    );
    for t in threads {
        if let Ok(Err(e)) = t.join() {
            eprintln!("{name}: {e}");
            std::process::exit(1);
        }
    }
}
