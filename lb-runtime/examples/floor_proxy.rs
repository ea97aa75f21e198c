//! The floor: the least a TCP proxy of this shape can cost on this machine, for telling how
//! much of the project's CPU per request is its design (tokio's reactor and tasks, the flow
//! machine, the access log, timers) and how much is the kernel's. NOT the product and not a
//! load balancer anyone should run: a measuring stick for `docs/performance.md`.
//!
//! It does only what HAProxy's `mode tcp` does on the benchmark's `conn` and `keepalive`
//! loads, with nothing of the project's runtime: one thread per CPU, each bound to it, with
//! its own `SO_REUSEPORT` listener and its own edge-triggered epoll (mio), no tasks, no
//! timers, no clock, no log, no health checks; backends taken in turn; a 16 KiB buffer per
//! direction, reused from a per-worker pool; sockets closed without an `EPOLL_CTL_DEL` (mio
//! does not deregister on drop; the kernel removes a closed socket from the epoll set), and
//! a direction shut down only while the other is still open (a close sends the FIN
//! otherwise).
//!
//! usage: cargo run --release -p lb-runtime --example floor_proxy -- LISTEN=BACKEND[,BACKEND...]...
//!   e.g. floor_proxy 127.0.0.1:18405=127.0.0.1:18481,127.0.0.1:18482 127.0.0.1:18415=127.0.0.1:18490
//!   (`bench/floor-lb.sh` runs it in `bench/run.sh` in the project's place)
//!   environment: FLOOR_WORKERS (default: the CPUs it may use; bound one each when equal),
//!                FLOOR_BIND=0 (never bind)

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};

const BUF: usize = 16 * 1024;
/// Listener `i`'s token is `usize::MAX - i`; a pair's sides are `2 * slot` and `2 * slot + 1`.
const LISTENERS: usize = usize::MAX - 64;

/// A listening address and the backends its clients are spread over, in turn.
#[derive(Clone)]
struct Route {
    listen: SocketAddr,
    backends: Vec<SocketAddr>,
}

/// One direction: bytes read from `src` not yet written to the other side.
struct Dir {
    buf: Box<[u8; BUF]>,
    start: usize,
    end: usize,
    /// `src` reached its end of stream.
    eof: bool,
    /// The write side of the destination was shut down (or the pair is closing).
    shut: bool,
}

impl Dir {
    /// A direction with a buffer from the worker's pool (zeroed only when first made).
    fn new(pool: &mut Vec<Box<[u8; BUF]>>) -> Dir {
        Dir {
            buf: pool.pop().unwrap_or_else(|| Box::new([0; BUF])),
            start: 0,
            end: 0,
            eof: false,
            shut: false,
        }
    }
}

/// A client and its backend connection; side 0 is the client, 1 the backend.
struct Pair {
    socks: [TcpStream; 2],
    /// `dirs[s]` carries what side `s` sends to side `1 - s`.
    dirs: [Dir; 2],
}

enum Pumped {
    Open,
    Closed,
}

impl Pair {
    /// Moves what side `src` has sent on to the other side: writes what is pending, then
    /// reads and writes until a read comes back short or a write would block.
    fn pump(&mut self, src: usize) -> io::Result<()> {
        let dst = 1 - src;
        let [a, b] = &mut self.socks;
        let (from, to) = if src == 0 { (a, b) } else { (b, a) };
        let other_done = self.dirs[dst].shut;
        let d = &mut self.dirs[src];
        loop {
            while d.start < d.end {
                match to.write(&d.buf[d.start..d.end]) {
                    Ok(n) => d.start += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                    Err(e) if e.kind() == io::ErrorKind::NotConnected => return Ok(()),
                    Err(e) => return Err(e),
                }
            }
            d.start = 0;
            d.end = 0;
            if d.eof {
                if !d.shut {
                    d.shut = true;
                    // While the other direction is open, its peer must still be able to
                    // send: a half-close. Otherwise the close that follows sends the FIN.
                    if !other_done {
                        to.shutdown(Shutdown::Write)?;
                    }
                }
                return Ok(());
            }
            match from.read(&mut d.buf[..]) {
                Ok(0) => d.eof = true,
                Ok(n) => {
                    d.end = n;
                    if n < BUF {
                        // Drained: write it, and wait for the next edge.
                        while d.start < d.end {
                            match to.write(&d.buf[d.start..d.end]) {
                                Ok(n) => d.start += n,
                                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                                Err(e) if e.kind() == io::ErrorKind::NotConnected => return Ok(()),
                                Err(e) => return Err(e),
                            }
                        }
                        d.start = 0;
                        d.end = 0;
                        return Ok(());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    }

    fn on_event(&mut self, side: usize, readable: bool, writable: bool) -> Pumped {
        let mut r = Ok(());
        if readable {
            r = self.pump(side);
        }
        if writable && r.is_ok() {
            // What the other side sent may have been waiting for this one to take it.
            r = self.pump(1 - side);
        }
        if r.is_err() || (self.dirs[0].shut && self.dirs[1].shut) {
            Pumped::Closed
        } else {
            Pumped::Open
        }
    }
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
    Ok(TcpListener::from_std(socket.into()))
}

fn worker(routes: Vec<Route>, cpu: Option<usize>) -> io::Result<()> {
    if let Some(cpu) = cpu {
        lb_runtime::sys::bind_thread_to(cpu)?;
    }
    let mut poll = Poll::new()?;
    let mut listeners = Vec::new();
    for (i, route) in routes.iter().enumerate() {
        let mut l = listener(route.listen, cpu)?;
        poll.registry()
            .register(&mut l, Token(usize::MAX - i), Interest::READABLE)?;
        listeners.push(l);
    }
    let mut next_backend = vec![0usize; routes.len()];
    let mut pairs: Vec<Option<Pair>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let mut buffers: Vec<Box<[u8; BUF]>> = Vec::new();
    let mut events = Events::with_capacity(256);
    loop {
        match poll.poll(&mut events, None) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        for ev in events.iter() {
            if ev.token().0 > LISTENERS {
                let i = usize::MAX - ev.token().0;
                let backends = &routes[i].backends;
                loop {
                    let (mut client, _) = match listeners[i].accept() {
                        Ok(c) => c,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(_) => break,
                    };
                    let addr = backends[next_backend[i] % backends.len()];
                    next_backend[i] += 1;
                    let Ok(mut backend) = TcpStream::connect(addr) else {
                        continue;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = backend.set_nodelay(true);
                    let slot = free.pop().unwrap_or_else(|| {
                        pairs.push(None);
                        pairs.len() - 1
                    });
                    let both = Interest::READABLE | Interest::WRITABLE;
                    if poll
                        .registry()
                        .register(&mut client, Token(slot * 2), both)
                        .and_then(|()| {
                            poll.registry()
                                .register(&mut backend, Token(slot * 2 + 1), both)
                        })
                        .is_err()
                    {
                        free.push(slot);
                        continue;
                    }
                    pairs[slot] = Some(Pair {
                        socks: [client, backend],
                        dirs: [Dir::new(&mut buffers), Dir::new(&mut buffers)],
                    });
                }
                continue;
            }
            let slot = ev.token().0 / 2;
            let side = ev.token().0 % 2;
            let Some(pair) = pairs.get_mut(slot).and_then(Option::as_mut) else {
                continue;
            };
            let readable = ev.is_readable() || ev.is_read_closed() || ev.is_error();
            if let Pumped::Closed = pair.on_event(side, readable, ev.is_writable()) {
                // Dropped: closed, and so out of the epoll set without a system call.
                if let Some(pair) = pairs[slot].take() {
                    buffers.extend(pair.dirs.map(|d| d.buf));
                }
                free.push(slot);
            }
        }
    }
}

fn main() {
    let routes: Vec<Route> = std::env::args()
        .skip(1)
        .map(|arg| {
            let parse = |s: &str| -> SocketAddr {
                s.parse().unwrap_or_else(|e| {
                    eprintln!("floor_proxy: {arg}: {s}: {e}");
                    std::process::exit(2)
                })
            };
            let Some((listen, backends)) = arg.split_once('=') else {
                eprintln!("floor_proxy: {arg}: expected LISTEN=BACKEND[,BACKEND...]");
                std::process::exit(2)
            };
            Route {
                listen: parse(listen),
                backends: backends.split(',').map(parse).collect(),
            }
        })
        .collect();
    if routes.is_empty() || routes.len() > 64 {
        eprintln!("usage: floor_proxy LISTEN=BACKEND[,BACKEND...]... (1 to 64 listeners)");
        std::process::exit(2);
    }
    let cpus = lb_runtime::sys::allowed_cpus().unwrap_or_default();
    let workers = std::env::var("FLOOR_WORKERS")
        .ok()
        .and_then(|w| w.parse().ok())
        .unwrap_or(cpus.len().max(1));
    let bind = workers == cpus.len() && std::env::var("FLOOR_BIND").as_deref() != Ok("0");
    let threads: Vec<_> = (0..workers)
        .map(|i| {
            let routes = routes.clone();
            let cpu = bind.then(|| cpus[i]);
            // Not the product: no runtime, no simulation, plain threads.
            #[allow(clippy::disallowed_methods)]
            std::thread::spawn(move || worker(routes, cpu))
        })
        .collect();
    eprintln!(
        "floor_proxy: {workers} worker(s){}",
        if bind { ", bound to a CPU each" } else { "" }
    );
    for t in threads {
        if let Ok(Err(e)) = t.join() {
            eprintln!("floor_proxy: {e}");
            std::process::exit(1);
        }
    }
}
