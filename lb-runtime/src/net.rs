//! The network the driver runs on: a small trait with a `tokio::net` implementation here and
//! a `turmoil::net` one in `sim/`, so the same driver code runs in production and in the
//! simulation. No Cargo feature switches it (features unify across a workspace).

use bytes::{Bytes, BytesMut};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite};

/// A boxed future that owns everything it needs.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// The future of one `accept` on a borrowed listener.
pub type AcceptFuture<'a, S> =
    Pin<Box<dyn Future<Output = io::Result<(S, SocketAddr)>> + Send + 'a>>;

/// Sockets and task spawning, as the driver needs them.
pub trait Net: Clone + Send + Sync + 'static {
    /// A connected TCP stream.
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    /// A listening socket.
    type Listener: Send + Sync + 'static;

    /// Binds a listener.
    fn bind(&self, addr: SocketAddr) -> BoxFuture<io::Result<Self::Listener>>;
    /// The address a listener is bound to.
    fn local_addr(&self, listener: &Self::Listener) -> io::Result<SocketAddr>;
    /// Waits for the next client.
    fn accept<'a>(&self, listener: &'a Self::Listener) -> AcceptFuture<'a, Self::Stream>;
    /// Connects to `addr` (no timeout of its own: callers bound it).
    fn connect(&self, addr: SocketAddr) -> BoxFuture<io::Result<Self::Stream>>;
    /// Runs a task in the background (in the simulation, on the current host).
    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static);
    /// Per-stream settings on a new connection (e.g. `TCP_NODELAY`).
    fn configure(&self, _stream: &Self::Stream) {}
    /// Closes a stream so the peer sees a reset (RST) rather than a FIN, where the network
    /// can; otherwise just closes it.
    fn abort(&self, stream: Self::Stream) {
        drop(stream);
    }

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
}

/// The real network: `tokio::net`.
#[derive(Clone, Copy, Debug, Default)]
pub struct TokioNet;

impl Net for TokioNet {
    type Stream = tokio::net::TcpStream;
    type Listener = tokio::net::TcpListener;

    fn bind(&self, addr: SocketAddr) -> BoxFuture<io::Result<Self::Listener>> {
        Box::pin(async move {
            // std's bind sets SO_REUSEADDR on Unix, so a restarted load balancer can listen
            // again while old connections linger in TIME_WAIT.
            let std = std::net::TcpListener::bind(addr)?;
            std.set_nonblocking(true)?;
            tokio::net::TcpListener::from_std(std)
        })
    }

    fn local_addr(&self, listener: &Self::Listener) -> io::Result<SocketAddr> {
        listener.local_addr()
    }

    fn accept<'a>(&self, listener: &'a Self::Listener) -> AcceptFuture<'a, Self::Stream> {
        Box::pin(listener.accept())
    }

    fn connect(&self, addr: SocketAddr) -> BoxFuture<io::Result<Self::Stream>> {
        Box::pin(tokio::net::TcpStream::connect(addr))
    }

    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        tokio::spawn(task);
    }

    fn configure(&self, stream: &Self::Stream) {
        // Forwarded segments must not wait for Nagle's algorithm; failure only costs latency.
        let _ = stream.set_nodelay(true);
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
        // Allocate only once the socket is readable; then read through `poll_read`, which
        // (unlike `try_read`) notes that a short read drained the socket, saving the extra
        // `recv` that would only return EAGAIN.
        ready!(stream.poll_read_ready(cx))?;
        read_fresh(stream, cx, size)
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
