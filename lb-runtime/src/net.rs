//! The network the driver runs on: a small trait with a `tokio::net` implementation here and
//! a `turmoil::net` one in `sim/`, so the same driver code runs in production and in the
//! simulation. No Cargo feature switches it (features unify across a workspace).

use bytes::{Bytes, BytesMut};
use lb_sans_io::{ConnectFailure, Keepalive};
use lb_sans_io::{DnsAnswer, DnsError, DnsQuery};
use socket2::{Domain, Protocol, Socket, Type};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, Interest};

/// A boxed future that owns everything it needs.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// The future of one `accept` on a borrowed listener.
pub type AcceptFuture<'a, S> =
    Pin<Box<dyn Future<Output = io::Result<(S, SocketAddr)>> + Send + 'a>>;

/// A worker's whole life: made on the worker (its future need not be `Send`) and run there.
pub type WorkerTask = Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = ()>>> + Send + 'static>;

/// Sockets and task spawning, as the driver needs them.
pub trait Net: Clone + Send + Sync + 'static {
    /// A connected TCP stream.
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    /// A listening socket.
    type Listener: Send + Sync + 'static;

    /// Binds a listener.
    fn bind(&self, addr: SocketAddr) -> BoxFuture<io::Result<Self::Listener>>;
    /// Another handle on the same listening socket, for another worker's accept loop: the
    /// kernel hands each new client to one of them. The socket closes when the last handle
    /// is dropped.
    fn share_listener(&self, listener: &Self::Listener) -> io::Result<Self::Listener>;
    /// A handle on one worker's share of a listener (see [`Net::taker`]).
    type Taker: Send + Sync + 'static;
    /// A handle on `share` (one worker's share of a listener, made by
    /// [`Net::share_listener`]) that another worker can take waiting clients from with
    /// [`Net::take_while`]: on a busy worker's share, a less busy worker takes clients its
    /// owner has not accepted yet (`lb_sans_io::spread`). The socket stays open while a
    /// taker of it does.
    fn taker(&self, share: &Self::Listener) -> io::Result<Self::Taker>;
    /// Waits for a client waiting on `taker`'s socket and accepts it, but only while
    /// `take()` says so: while it does not, clients are left to the socket's owner (and
    /// `take` is asked again later). Resolves with one client, or an error.
    fn take_while<'a>(
        &self,
        taker: &'a Self::Taker,
        take: impl Fn() -> bool + Send + 'a,
    ) -> AcceptFuture<'a, Self::Stream>;
    /// The address a listener is bound to.
    fn local_addr(&self, listener: &Self::Listener) -> io::Result<SocketAddr>;
    /// The local address of a connected stream (for a client: the address it connected
    /// to).
    fn stream_local_addr(&self, stream: &Self::Stream) -> io::Result<SocketAddr>;
    /// Waits for the next client.
    fn accept<'a>(&self, listener: &'a Self::Listener) -> AcceptFuture<'a, Self::Stream>;
    /// Connects to `addr` (no timeout of its own: callers bound it).
    fn connect(&self, addr: SocketAddr) -> BoxFuture<io::Result<Self::Stream>>;
    /// Runs a task in the background, on the current worker (in the simulation, on the
    /// current host).
    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static);
    /// Starts a worker named `name` that runs `task`: with tokio, an OS thread with its own
    /// single-threaded runtime, so a worker's connections never wake another thread, bound
    /// to `cpu` when one is given, its listening sockets asking for the clients that CPU
    /// handles; in the simulation, one more task on the current host (no CPUs there).
    fn spawn_worker(&self, name: &str, cpu: Option<usize>, task: WorkerTask) -> io::Result<()>;
    /// Bytes written to `stream` that its peer has not received (acknowledged) yet. Networks
    /// that cannot tell report 0.
    fn unacked(&self, stream: &Self::Stream) -> io::Result<usize> {
        let _ = stream;
        Ok(0)
    }
    /// Closes a stream so the peer sees a reset (RST) rather than a FIN, where the network
    /// can; otherwise just closes it.
    fn abort(&self, stream: Self::Stream) {
        drop(stream);
    }
    /// Turns TCP keepalive on for `stream` with these settings (the flow decides which
    /// stream gets which: [`lb_sans_io::Flow::keepalive`]).
    fn set_keepalive(&self, stream: &Self::Stream, keepalive: Keepalive) -> io::Result<()>;

    /// Asks DNS a pool's discovery question (within `query.timeout`).
    fn resolve(&self, query: DnsQuery) -> BoxFuture<Result<DnsAnswer, DnsError>>;

    /// Reads up to `size` bytes into a fresh buffer: `Some(bytes)`, or `None` at end of
    /// stream. The buffer belongs to the returned `Bytes`, so a connection waiting for data
    /// holds no read buffer. This default allocates before polling; networks with readiness
    /// (tokio) allocate only once data is there.
    fn poll_read_bytes(
        &self,
        stream: &mut Self::Stream,
        cx: &mut Context<'_>,
        size: usize,
    ) -> Poll<io::Result<Option<Bytes>>> {
        read_fresh(stream, cx, size)
    }

    /// Writes `bufs`, the last bytes before a shutdown of the stream that follows at once
    /// (the driver calls this only then). A network may hold them back until the shutdown
    /// so that the FIN leaves in the same segment: one packet, and one acknowledgement,
    /// fewer. This default writes them as any write.
    fn poll_write_then_fin(
        &self,
        stream: &mut Self::Stream,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(stream).poll_write_vectored(cx, bufs)
    }
}

thread_local! {
    /// The CPU this worker thread is bound to ([`Net::spawn_worker`]), if any.
    static WORKER_CPU: std::cell::Cell<Option<usize>> = const { std::cell::Cell::new(None) };
}

/// The real network: `tokio::net`.
#[derive(Clone, Copy, Debug, Default)]
pub struct TokioNet;

/// A listening socket's descriptor, made on one runtime and registered (as `R`) with the
/// reactor of the runtime that first uses it: the worker's, whichever made it.
#[derive(Debug)]
struct Unregistered<R> {
    /// The socket until its first use.
    unregistered: std::sync::Mutex<Option<std::net::TcpListener>>,
    registered: std::sync::OnceLock<R>,
}

impl<R> Unregistered<R> {
    fn new(std: std::net::TcpListener) -> Unregistered<R> {
        Unregistered {
            unregistered: std::sync::Mutex::new(Some(std)),
            registered: std::sync::OnceLock::new(),
        }
    }

    /// The registered socket, registered by `register` on the current runtime at the
    /// first call.
    fn get(&self, register: impl FnOnce(std::net::TcpListener) -> io::Result<R>) -> io::Result<&R> {
        if let Some(r) = self.registered.get() {
            return Ok(r);
        }
        let std = self
            .unregistered
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(std) = std {
            // Only this thread can be here: a socket is used by one loop.
            let _ = self.registered.set(register(std)?);
        }
        self.registered
            .get()
            .ok_or_else(|| io::Error::other("listener registration failed"))
    }
}

/// A listening socket for [`TokioNet`]. It registers with the reactor of the runtime that
/// first accepts on it, so a handle made on one runtime (by [`Net::share_listener`]) serves
/// a worker on another.
#[derive(Debug)]
pub struct TokioListener {
    socket: Unregistered<tokio::net::TcpListener>,
    local: SocketAddr,
}

impl TokioListener {
    fn new(std: std::net::TcpListener) -> io::Result<TokioListener> {
        Ok(TokioListener {
            local: std.local_addr()?,
            socket: Unregistered::new(std),
        })
    }

    /// The tokio listener, registered on the current runtime at the first call. On a worker
    /// bound to a CPU, the socket asks the kernel for the clients that CPU handles
    /// (`SO_INCOMING_CPU`: of a `SO_REUSEPORT` group, the kernel picks the socket whose CPU
    /// is the one a new connection's packets arrived on, else hashes as before).
    fn tokio(&self) -> io::Result<&tokio::net::TcpListener> {
        self.socket.get(|std| {
            #[cfg(target_os = "linux")]
            if let Some(cpu) = WORKER_CPU.get() {
                if let Err(e) = socket2::SockRef::from(&std).set_cpu_affinity(cpu) {
                    tracing::debug!("cannot set SO_INCOMING_CPU {cpu} on {}: {e}", self.local);
                }
            }
            tokio::net::TcpListener::from_std(std)
        })
    }

    /// Another descriptor of the same socket.
    fn socket(&self) -> io::Result<std::net::TcpListener> {
        if let Some(l) = self.socket.registered.get() {
            let fd = socket2::SockRef::from(l).try_clone()?;
            return Ok(fd.into());
        }
        match &*self
            .socket
            .unregistered
            .lock()
            .unwrap_or_else(|p| p.into_inner())
        {
            Some(std) => std.try_clone(),
            None => Err(io::Error::other("listener registration failed")),
        }
    }
}

/// A [`TokioNet`] taker: another descriptor of a worker's listening socket, for another
/// worker to take clients from. Like [`TokioListener`], it registers with the reactor of
/// the runtime that first takes from it.
///
/// It registers as a `tokio::net::TcpStream`, although the socket listens: that type only
/// carries the descriptor and its readiness here (readable: a client waiting), which
/// `tokio::net::TcpListener` does not show without accepting, and `AsyncFd`'s safe
/// constructors are deprecated as unsound. Clients are accepted with `accept(2)` on the
/// descriptor (socket2).
#[derive(Debug)]
pub struct TokioTaker(Unregistered<tokio::net::TcpStream>);

impl TokioTaker {
    /// The descriptor, registered on the current runtime at the first call.
    fn fd(&self) -> io::Result<&tokio::net::TcpStream> {
        self.0.get(|std| {
            std.set_nonblocking(true)?;
            let fd = std::os::fd::OwnedFd::from(std);
            tokio::net::TcpStream::from_std(fd.into())
        })
    }
}

impl Net for TokioNet {
    type Stream = tokio::net::TcpStream;
    type Listener = TokioListener;
    type Taker = TokioTaker;

    fn bind(&self, addr: SocketAddr) -> BoxFuture<io::Result<Self::Listener>> {
        Box::pin(async move { TokioListener::new(listen_group(addr)?) })
    }

    /// On Linux, another socket of the listener's `SO_REUSEPORT` group: each worker gets its
    /// own accept queue, and the kernel spreads new connections over them evenly. (One
    /// socket shared by every worker lets whichever wakes first take the connection: the
    /// spread drifts, one worker gets most of the load and its clients a longer tail.)
    /// Elsewhere, the same socket.
    fn share_listener(&self, listener: &Self::Listener) -> io::Result<Self::Listener> {
        #[cfg(target_os = "linux")]
        return TokioListener::new(join_group(listener.local)?);
        #[cfg(not(target_os = "linux"))]
        TokioListener::new(listener.socket()?)
    }

    /// A duplicate descriptor of the share's socket, not registered anywhere until the
    /// first take.
    fn taker(&self, share: &Self::Listener) -> io::Result<Self::Taker> {
        Ok(TokioTaker(Unregistered::new(share.socket()?)))
    }

    /// Waits for the socket to be readable (a client waiting) and then accepts if `take()`
    /// says so; otherwise forgets the readiness and waits for the next client to arrive
    /// (the owner, woken too, accepts the waiting ones).
    fn take_while<'a>(
        &self,
        taker: &'a Self::Taker,
        take: impl Fn() -> bool + Send + 'a,
    ) -> AcceptFuture<'a, Self::Stream> {
        Box::pin(async move {
            let fd = taker.fd()?;
            let socket = socket2::SockRef::from(fd);
            loop {
                fd.readable().await?;
                // `try_io` forgets the readiness when its operation would block.
                let accepted = fd.try_io(Interest::READABLE, || match take() {
                    true => socket.accept(),
                    false => Err(io::ErrorKind::WouldBlock.into()),
                });
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    // Readiness kept: after the caller's pause, the waiting client is tried
                    // again.
                    Err(e) => return Err(e),
                };
                let peer = peer
                    .as_socket()
                    .ok_or_else(|| io::Error::other("a client without an IP address"))?;
                stream.set_nonblocking(true)?;
                // Linux copies TCP_NODELAY from the listener (see `listen`); elsewhere set it.
                #[cfg(not(target_os = "linux"))]
                stream.set_tcp_nodelay(true)?;
                return Ok((tokio::net::TcpStream::from_std(stream.into())?, peer));
            }
        })
    }

    fn local_addr(&self, listener: &Self::Listener) -> io::Result<SocketAddr> {
        Ok(listener.local)
    }

    fn stream_local_addr(&self, stream: &Self::Stream) -> io::Result<SocketAddr> {
        stream.local_addr()
    }

    fn accept<'a>(&self, listener: &'a Self::Listener) -> AcceptFuture<'a, Self::Stream> {
        Box::pin(async move {
            let (stream, peer) = listener.tokio()?.accept().await?;
            // Linux copies TCP_NODELAY from the listener (see `listen`); elsewhere set it.
            #[cfg(not(target_os = "linux"))]
            let _ = stream.set_nodelay(true);
            Ok((stream, peer))
        })
    }

    fn connect(&self, addr: SocketAddr) -> BoxFuture<io::Result<Self::Stream>> {
        Box::pin(connect(addr))
    }

    #[allow(clippy::disallowed_methods)] // The `Net` implementation is where tasks start.
    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        tokio::spawn(task);
    }

    #[allow(clippy::disallowed_methods)] // The `Net` implementation is where workers start.
    fn spawn_worker(&self, name: &str, cpu: Option<usize>, task: WorkerTask) -> io::Result<()> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let name = name.to_string();
        std::thread::Builder::new()
            .name(name.clone())
            .spawn(move || {
                if let Some(cpu) = cpu {
                    match crate::sys::bind_thread_to(cpu) {
                        Ok(()) => WORKER_CPU.set(Some(cpu)),
                        // It still works, only unbound: say so and go on.
                        Err(e) => tracing::warn!("{name}: cannot bind to CPU {cpu}: {e}"),
                    }
                }
                rt.block_on(task())
            })?;
        Ok(())
    }

    fn unacked(&self, stream: &Self::Stream) -> io::Result<usize> {
        use std::os::fd::AsFd;
        crate::sys::unacked(stream.as_fd())
    }

    fn resolve(&self, query: DnsQuery) -> BoxFuture<Result<DnsAnswer, DnsError>> {
        Box::pin(crate::dns::resolve(query))
    }

    fn set_keepalive(&self, stream: &Self::Stream, keepalive: Keepalive) -> io::Result<()> {
        let params = socket2::TcpKeepalive::new()
            .with_time(keepalive.idle)
            .with_interval(keepalive.interval);
        #[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
        let params = params.with_retries(keepalive.count);
        socket2::SockRef::from(stream).set_tcp_keepalive(&params)
    }

    fn abort(&self, stream: Self::Stream) {
        // SO_LINGER 0 makes close() send RST; it never blocks on a non-blocking socket.
        let _ = stream.set_zero_linger();
        drop(stream);
    }

    fn poll_read_bytes(
        &self,
        stream: &mut Self::Stream,
        cx: &mut Context<'_>,
        size: usize,
    ) -> Poll<io::Result<Option<Bytes>>> {
        // Read only once the socket is readable, through `poll_read`, which (unlike
        // `try_read`) notes that a short read drained the socket, saving the extra `recv`
        // that would only return EAGAIN.
        ready!(stream.poll_read_ready(cx))?;
        read_slab(stream, cx, size)
    }

    fn poll_write_then_fin(
        &self,
        stream: &mut Self::Stream,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        // `MSG_MORE` holds a short tail in the socket until the shutdown, whose FIN the
        // kernel then puts on that segment (where the platform has no such flag, a write).
        #[cfg(any(target_os = "linux", target_os = "android"))]
        loop {
            ready!(stream.poll_write_ready(cx))?;
            let sock = socket2::SockRef::from(&*stream);
            match stream.try_io(Interest::WRITABLE, || {
                sock.send_vectored_with_flags(bufs, libc::MSG_MORE | libc::MSG_NOSIGNAL)
            }) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                r => return Poll::Ready(r),
            }
        }
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        Pin::new(stream).poll_write_vectored(cx, bufs)
    }
}

/// Most connections waiting to be accepted; the kernel caps it at `net.core.somaxconn`.
/// (std's `bind` uses 128, which overflows in a burst of new clients: a dropped SYN costs
/// the client a one-second retransmission.)
const LISTEN_BACKLOG: i32 = 4096;

/// Opens the load balancer's listening socket: non-blocking, `SO_REUSEADDR` (a restarted
/// load balancer can listen again while old connections linger in TIME_WAIT), a backlog of
/// 4096, and `TCP_NODELAY`, which Linux copies to every accepted socket (one `setsockopt`
/// fewer per client).
pub fn listen(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = stream_socket(addr)?;
    socket.set_reuse_address(true)?;
    socket.set_tcp_nodelay(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}

/// Opens the first socket of a listener, ready for [`join_group`] to add one per worker:
/// [`listen`]'s socket with `SO_REUSEPORT` on Linux. An address some other socket listens
/// on is refused even when that one set `SO_REUSEPORT` too: a second load balancer started
/// on the same address by mistake must fail, not silently take half the clients. (A
/// socket without the option binds first, as a probe, and is closed at once.)
pub fn listen_group(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    #[cfg(target_os = "linux")]
    {
        let probe = stream_socket(addr)?;
        probe.set_reuse_address(true)?;
        probe.bind(&addr.into())?;
        let bound = probe
            .local_addr()?
            .as_socket()
            .ok_or_else(|| io::Error::other("the listening socket has no IP address"))?;
        drop(probe);
        join_group(bound)
    }
    #[cfg(not(target_os = "linux"))]
    listen(addr)
}

/// Another socket of the `SO_REUSEPORT` group listening on `addr` (Linux).
#[cfg(target_os = "linux")]
fn join_group(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = stream_socket(addr)?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_tcp_nodelay(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}

/// A non-blocking TCP socket for `addr`'s address family.
fn stream_socket(addr: SocketAddr) -> io::Result<Socket> {
    let domain = Domain::for_address(addr);
    #[cfg(target_os = "linux")]
    let socket = Socket::new(domain, Type::STREAM.nonblocking(), Some(Protocol::TCP))?;
    #[cfg(not(target_os = "linux"))]
    let socket = {
        let socket = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?;
        socket.set_nonblocking(true)?;
        socket
    };
    Ok(socket)
}

/// Connects to a backend with `TCP_NODELAY` set before the handshake (forwarded segments
/// must not wait for Nagle's algorithm). Success is read from the socket's readiness: a
/// failed handshake reports the write side closed, and only then is `SO_ERROR` fetched for
/// the message. (`tokio::net::TcpStream::connect` fetches it on every connect: one
/// `getsockopt` per proxied connection.)
async fn connect(addr: SocketAddr) -> io::Result<tokio::net::TcpStream> {
    let socket = stream_socket(addr)?;
    socket.set_tcp_nodelay(true)?;
    match socket.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    let stream = tokio::net::TcpStream::from_std(socket.into())?;
    let ready = stream.ready(Interest::WRITABLE).await?;
    if ready.is_write_closed() {
        return Err(stream
            .take_error()?
            .unwrap_or_else(|| io::ErrorKind::ConnectionRefused.into()));
    }
    Ok(stream)
}

/// Whose fault a failed backend connect was. Running out of descriptors, memory or
/// ephemeral ports is this host's problem, not the backend's; everything else (refused,
/// reset, unreachable, timed out) is reported as the backend's.
pub fn connect_failure(error: &io::Error) -> ConnectFailure {
    match error.raw_os_error() {
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM | libc::EADDRNOTAVAIL) => {
            ConnectFailure::Local
        }
        _ => ConnectFailure::Backend,
    }
}

/// Reads up to `size` bytes into a newly allocated buffer; `None` at end of stream.
fn read_fresh<S: AsyncRead + Unpin>(
    stream: &mut S,
    cx: &mut Context<'_>,
    size: usize,
) -> Poll<io::Result<Option<Bytes>>> {
    let mut buf = BytesMut::with_capacity(size);
    let n = ready!(tokio_util::io::poll_read_buf(
        Pin::new(stream),
        cx,
        &mut buf
    ))?;
    Poll::Ready(Ok((n > 0).then(|| buf.freeze())))
}

/// Reads of at most this many bytes are copied out of the worker's read slab into a
/// buffer of their own size.
const COPY_AT_MOST: usize = 1024;
/// The size of a worker's read slab (the largest read a flow asks for).
const SLAB: usize = 64 * 1024;

thread_local! {
    /// The worker thread's read slab: every read of its flows lands here first.
    static READ_SLAB: std::cell::RefCell<BytesMut> = std::cell::RefCell::new(BytesMut::new());
}

/// Reads up to `size` bytes through the worker's read slab; `None` at end of stream.
///
/// - The end of a stream, or a read that finds nothing, costs no allocation (a fresh
///   buffer per read cost one for every connection's two end-of-stream reads).
/// - A read of up to [`COPY_AT_MOST`] bytes is copied into an exact-size buffer, which
///   the allocator serves from its per-thread cache, and the slab is reused as it was:
///   request/response traffic allocates nothing larger than its messages, and a client
///   that trickles single bytes to a stalled backend holds a few bytes per chunk, not a
///   buffer of the read size.
/// - A larger read is cut off the slab as it is (no copy); the chunks of one slab share
///   its allocation, and a new slab is taken when too little of this one is left.
fn read_slab<S: AsyncRead + Unpin>(
    stream: &mut S,
    cx: &mut Context<'_>,
    size: usize,
) -> Poll<io::Result<Option<Bytes>>> {
    READ_SLAB.with(|slab| {
        let Ok(mut slab) = slab.try_borrow_mut() else {
            // Not reentered by design; if it ever is, read on its own.
            return read_fresh(stream, cx, size);
        };
        if slab.capacity() - slab.len() < size {
            *slab = BytesMut::with_capacity(SLAB.max(size));
        }
        let n = ready!(tokio_util::io::poll_read_buf(
            Pin::new(stream),
            cx,
            &mut bytes::BufMut::limit(&mut *slab, size)
        ))?;
        Poll::Ready(Ok(match n {
            0 => None,
            n if n <= COPY_AT_MOST => {
                let data = Bytes::copy_from_slice(&slab[..n]);
                slab.clear();
                Some(data)
            }
            n => Some(slab.split_to(n).freeze()),
        }))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A worker started with a CPU runs there, and a listening socket it accepts on asks
    /// the kernel for the clients that CPU handles (`SO_INCOMING_CPU`); one started without
    /// runs anywhere the process may and leaves its sockets to the group's hash.
    #[test]
    #[cfg(target_os = "linux")]
    fn a_bound_worker_runs_on_its_cpu_and_its_sockets_ask_for_that_cpus_clients() {
        let allowed = crate::sys::allowed_cpus().unwrap();
        let cpu = *allowed.last().unwrap();
        for bound in [Some(cpu), None] {
            let listener = std::sync::Arc::new(
                TokioListener::new(listen_group("127.0.0.1:0".parse().unwrap()).unwrap()).unwrap(),
            );
            let (tx, rx) = std::sync::mpsc::channel();
            let l = listener.clone();
            TokioNet
                .spawn_worker(
                    "test-worker",
                    bound,
                    Box::new(move || {
                        Box::pin(async move {
                            let registered = l.tokio().unwrap();
                            let steered = socket2::SockRef::from(registered).cpu_affinity();
                            let _ = tx.send((crate::sys::allowed_cpus().unwrap(), steered.ok()));
                        })
                    }),
                )
                .unwrap();
            let (runs_on, steered) = rx.recv_timeout(Duration::from_secs(10)).unwrap();
            match bound {
                Some(cpu) => {
                    assert_eq!(runs_on, [cpu]);
                    assert_eq!(steered, Some(cpu));
                }
                None => {
                    assert_eq!(runs_on, allowed);
                    // The kernel reports -1 (unset).
                    assert!(
                        !steered.is_some_and(|c| allowed.contains(&c)),
                        "{steered:?}"
                    );
                }
            }
        }
    }

    /// Reads of every kind through the slab — small ones (copied), large ones (cut off the
    /// slab), the boundary sizes, enough to need new slabs — each keep their own bytes
    /// while later reads reuse or replace the slab, and the end of the stream is `None`.
    #[tokio::test]
    async fn reads_through_the_slab_keep_their_bytes() {
        let sizes = [
            1,
            100,
            COPY_AT_MOST,
            COPY_AT_MOST + 1,
            4_096,
            SLAB,
            3,
            SLAB - 1,
            40_000,
            40_000,
            2,
            COPY_AT_MOST,
        ];
        let total: usize = sizes.iter().sum();
        let stream: Vec<u8> = (0..total).map(|i| (i * 7 % 251) as u8).collect();
        let (mut reader, mut writer) = tokio::io::duplex(SLAB);
        let mut chunks = Vec::new();
        let mut offset = 0;
        for &size in &sizes {
            // Exactly one read's worth waits, so each read returns `size` bytes.
            tokio::io::AsyncWriteExt::write_all(&mut writer, &stream[offset..offset + size])
                .await
                .unwrap();
            offset += size;
            let chunk = std::future::poll_fn(|cx| read_slab(&mut reader, cx, size))
                .await
                .unwrap()
                .expect("data, not the end");
            assert_eq!(chunk.len(), size);
            chunks.push(chunk);
        }
        drop(writer);
        let end = std::future::poll_fn(|cx| read_slab(&mut reader, cx, 16))
            .await
            .unwrap();
        assert_eq!(end, None);
        let read = chunks.concat();
        let first_wrong = read.iter().zip(&stream).position(|(a, b)| a != b);
        assert!(
            read.len() == stream.len() && first_wrong.is_none(),
            "a chunk changed after it was read: byte {first_wrong:?} of {}",
            stream.len()
        );
    }

    /// Bytes written just before a shutdown leave in the FIN's segment: the peer gets the
    /// bytes and the end of the stream in one segment fewer than after a plain write.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn bytes_before_a_shutdown_share_its_segment() {
        use std::os::fd::AsFd;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let net = TokioNet;
        let listener = net.bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = net.local_addr(&listener).unwrap();
        let mut received = Vec::new();
        for then_fin in [false, true] {
            let (reader, accepted) = tokio::join!(net.connect(addr), net.accept(&listener));
            let (mut reader, (mut writer, _)) = (reader.unwrap(), accepted.unwrap());
            let bufs = [io::IoSlice::new(b"hello, "), io::IoSlice::new(b"world")];
            let n = if then_fin {
                std::future::poll_fn(|cx| net.poll_write_then_fin(&mut writer, cx, &bufs)).await
            } else {
                writer.write_vectored(&bufs).await
            };
            assert_eq!(n.unwrap(), 12);
            writer.shutdown().await.unwrap();
            let mut got = Vec::new();
            reader.read_to_end(&mut got).await.unwrap();
            assert_eq!(got, b"hello, world");
            received.push(crate::sys::segments(reader.as_fd()).unwrap().received);
        }
        assert_eq!(
            received[1] + 1,
            received[0],
            "segments the reader received (handshake, bytes, FIN): a plain write then a \
             shutdown, a write_then_fin then a shutdown"
        );
    }

    #[tokio::test]
    async fn accepted_and_connected_sockets_have_nodelay() {
        let net = TokioNet;
        let listener = net.bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = net.local_addr(&listener).unwrap();
        let shared = net.share_listener(&listener).unwrap();
        drop(listener);
        let (connected, accepted) = tokio::join!(net.connect(addr), net.accept(&shared));
        let (connected, (accepted, peer)) = (connected.unwrap(), accepted.unwrap());
        assert_eq!(peer, connected.local_addr().unwrap());
        assert!(
            connected.nodelay().unwrap(),
            "backend connection without TCP_NODELAY"
        );
        assert!(
            accepted.nodelay().unwrap(),
            "client connection without TCP_NODELAY"
        );
    }

    #[tokio::test]
    async fn keepalive_settings_reach_the_socket() {
        let net = TokioNet;
        let listener = net.bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = net.local_addr(&listener).unwrap();
        let (connected, accepted) = tokio::join!(net.connect(addr), net.accept(&listener));
        let (connected, (accepted, _)) = (connected.unwrap(), accepted.unwrap());
        let keepalive = Keepalive {
            idle: std::time::Duration::from_secs(37),
            interval: std::time::Duration::from_secs(11),
            count: 4,
        };
        net.set_keepalive(&accepted, keepalive).unwrap();
        let sock = socket2::SockRef::from(&accepted);
        assert!(sock.keepalive().unwrap());
        assert_eq!(sock.tcp_keepalive_time().unwrap(), keepalive.idle);
        assert_eq!(sock.tcp_keepalive_interval().unwrap(), keepalive.interval);
        assert_eq!(sock.tcp_keepalive_retries().unwrap(), keepalive.count);
        // Off unless asked for.
        assert!(!socket2::SockRef::from(&connected).keepalive().unwrap());
    }

    #[tokio::test]
    async fn connect_to_a_closed_port_fails_with_the_reason() {
        // Bind then drop a listener: nothing listens on that port any more.
        let addr = listen("127.0.0.1:0".parse().unwrap())
            .unwrap()
            .local_addr()
            .unwrap();
        let err = TokioNet.connect(addr).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused, "{err}");
    }

    #[test]
    fn running_out_of_local_resources_is_not_the_backends_fault() {
        for errno in [
            libc::EMFILE,
            libc::ENFILE,
            libc::EADDRNOTAVAIL,
            libc::ENOBUFS,
        ] {
            let e = io::Error::from_raw_os_error(errno);
            assert_eq!(connect_failure(&e), ConnectFailure::Local, "{e}");
        }
        for errno in [libc::ECONNREFUSED, libc::ECONNRESET, libc::EHOSTUNREACH] {
            let e = io::Error::from_raw_os_error(errno);
            assert_eq!(connect_failure(&e), ConnectFailure::Backend, "{e}");
        }
        let timeout = io::Error::from(io::ErrorKind::TimedOut);
        assert_eq!(connect_failure(&timeout), ConnectFailure::Backend);
    }

    /// Each worker's share of a listener has its own accept queue: clients that connected
    /// while nobody accepted are spread over the shares, not all queued on one socket
    /// that every worker races for. (64 clients: one share holding between 8 and 56 of
    /// them fails by chance about once in a million runs.)
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_listeners_shares_split_the_clients() {
        let net = TokioNet;
        let listener = net.bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = net.local_addr(&listener).unwrap();
        let share = net.share_listener(&listener).unwrap();
        let unregistered = |l: TokioListener| l.socket.unregistered.into_inner().unwrap().unwrap();
        let (first, second) = (unregistered(listener), unregistered(share));
        let clients: Vec<_> = (0..64)
            .map(|_| std::net::TcpStream::connect(addr).unwrap())
            .collect();
        let mut queued = [0; 2];
        for (n, socket) in queued.iter_mut().zip([&first, &second]) {
            socket.set_nonblocking(true).unwrap();
            while socket.accept().is_ok() {
                *n += 1;
            }
        }
        assert_eq!(queued[0] + queued[1], clients.len(), "{queued:?}");
        assert!(
            (8..=56).contains(&queued[0]),
            "one share queued {} of the 64 clients: {queued:?}",
            queued[0]
        );
    }

    /// A worker takes clients waiting in another worker's queue through a taker of that
    /// worker's share, only while its predicate allows: share A's clients are taken
    /// while it does, and wait in A's queue (for A itself) while it does not. The kernel
    /// hashes 32 clients over shares A and B: none in A by chance, 2^-32.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_taker_takes_another_shares_clients_only_while_allowed() {
        use std::sync::atomic::{AtomicBool, Ordering};
        const CLIENTS: usize = 32;
        let net = TokioNet;
        let a = net.bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = net.local_addr(&a).unwrap();
        let b = net.share_listener(&a).unwrap();
        let taker = net.taker(&a).unwrap();
        let allowed = AtomicBool::new(true);
        let allow = || allowed.load(Ordering::Acquire);
        let limit = Duration::from_secs(5);
        let mut clients = Vec::new();

        // Allowed: B accepts its own clients, the taker A's; between them, all of them.
        clients.extend((0..CLIENTS).map(|_| std::net::TcpStream::connect(addr).unwrap()));
        let (mut taken, mut own, mut accepted) = (0, 0, Vec::new());
        let deadline = tokio::time::sleep(limit);
        tokio::pin!(deadline);
        while taken + own < CLIENTS {
            tokio::select! {
                r = net.take_while(&taker, allow) => { accepted.push(r.unwrap()); taken += 1; }
                r = net.accept(&b) => { accepted.push(r.unwrap()); own += 1; }
                _ = &mut deadline => {
                    panic!("{taken} taken and {own} accepted of {CLIENTS} clients in {limit:?}")
                }
            }
        }
        assert!(
            taken > 0,
            "none of {CLIENTS} clients taken from A ({own} on B)"
        );

        // Not allowed: the taker takes none while B accepts its own; A's wait for A.
        allowed.store(false, Ordering::Release);
        clients.extend((0..CLIENTS).map(|_| std::net::TcpStream::connect(addr).unwrap()));
        let (mut taken, mut own) = (0, 0);
        let watch = tokio::time::sleep(Duration::from_millis(300));
        tokio::pin!(watch);
        loop {
            tokio::select! {
                r = net.take_while(&taker, allow) => { accepted.push(r.unwrap()); taken += 1; }
                r = net.accept(&b) => { accepted.push(r.unwrap()); own += 1; }
                _ = &mut watch => break,
            }
        }
        assert_eq!(taken, 0, "clients taken while not allowed ({own} on B)");
        let mut waited = 0;
        while own + waited < CLIENTS {
            match tokio::time::timeout(limit, net.accept(&a)).await {
                Ok(r) => {
                    accepted.push(r.unwrap());
                    waited += 1;
                }
                Err(_) => panic!("{own} on B and {waited} on A of {CLIENTS} clients"),
            }
        }
        assert!(waited > 0, "no client in A's queue ({own} on B)");
    }

    /// A second load balancer started on an address the first listens on fails, although
    /// the first one's sockets allow sharing the port (`SO_REUSEPORT`).
    #[test]
    fn a_second_listener_group_on_the_same_address_fails() {
        let first = listen_group("127.0.0.1:0".parse().unwrap()).unwrap();
        let err = listen_group(first.local_addr().unwrap()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");
    }

    #[test]
    fn listening_on_a_taken_address_fails() {
        let first = listen("127.0.0.1:0".parse().unwrap()).unwrap();
        let err = listen(first.local_addr().unwrap()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");
    }
}
