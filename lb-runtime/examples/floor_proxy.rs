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

#[path = "floor_common/mod.rs"]
mod floor_common;

use floor_common::Route;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::sync::Arc;

const BUF: usize = 16 * 1024;
/// Listener `i`'s token is `usize::MAX - i`; a pair's sides are `2 * slot` and `2 * slot + 1`.
const LISTENERS: usize = usize::MAX - 64;

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

impl Dir {
    /// Writes what is pending to `to`: true when all of it went, false when the write
    /// would block (or the destination is still connecting).
    fn flush(&mut self, to: &mut TcpStream) -> io::Result<bool> {
        while self.start < self.end {
            match to.write(&self.buf[self.start..self.end]) {
                Ok(n) => self.start += n,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::NotConnected
                    ) =>
                {
                    return Ok(false)
                }
                Err(e) => return Err(e),
            }
        }
        self.start = 0;
        self.end = 0;
        Ok(true)
    }
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
            if !d.flush(to)? {
                return Ok(());
            }
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
                        d.flush(to)?;
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

fn worker(routes: Arc<Vec<Route>>, cpu: Option<usize>) -> io::Result<()> {
    let mut poll = Poll::new()?;
    let mut listeners = Vec::new();
    for (i, route) in routes.iter().enumerate() {
        let mut l = TcpListener::from_std(floor_common::listener(route.listen, cpu)?);
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
    let routes = floor_common::routes("floor_proxy");
    if routes.len() > 64 {
        eprintln!("floor_proxy: at most 64 listeners");
        std::process::exit(2);
    }
    floor_common::run("floor_proxy", routes, worker);
}
