//! The flow task: one per client connection. It owns the two sockets and performs the flow
//! machine's actions (connect, write, shut down, pause, close), reporting every outcome back
//! as an event. One task polls both sockets, so no channel or lock sits on the data path.

use crate::logging::{log_close, CloseNames};
use crate::net::{BoxFuture, Net};
use crate::shared::Shared;
use bytes::{Buf, Bytes};
use lb_sans_io::{
    BackendId, ConnectFailure, Flow, FlowAction, FlowId, ListenerId, PoolId, Side, Timestamp,
};
use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::AsyncWrite;
use tokio::time::Sleep;

#[cfg(feature = "seams")]
mod broken;

/// Smallest and largest read buffers. A side's read size adapts: it doubles after a read
/// that fills its buffer and halves after one that uses under an eighth of it, so
/// request/response traffic reads into small buffers and bulk transfers into large ones.
const MIN_READ: usize = 4 * 1024;
const MAX_READ: usize = 64 * 1024;
const FIRST_READ: usize = 16 * 1024;
/// Most queued chunks gathered into one vectored write.
const MAX_IOVECS: usize = 16;

/// Something that happened on a flow's sockets or timer.
#[derive(Debug)]
enum IoEvent<S> {
    Connected(u32, S),
    ConnectFailed(u32, ConnectFailure),
    Read(Side, Bytes),
    Eof(Side),
    Failed(Side),
    Written(Side, usize),
    Timer,
    /// Everything written to this side has reached its peer (after `AwaitDelivery`).
    Delivered(Side),
    /// Health checks took this backend down (after `WatchBackend`).
    BackendDown(BackendId),
    /// The node gives up on its open connections (the shutdown grace period is over).
    Abort,
}

/// A queued operation on a socket's write half.
enum Op {
    Write(Bytes),
    Shutdown,
}

struct FlowIo<N: Net> {
    net: N,
    sockets: [Option<N::Stream>; 2],
    connecting: Option<(u32, BoxFuture<io::Result<N::Stream>>)>,
    out: [VecDeque<Op>; 2],
    paused: [bool; 2],
    read_done: [bool; 2],
    /// This side's read was found pending earlier in the same poll of the task: its waker
    /// is registered, and nothing can make it ready before the task yields (readiness
    /// that arrives meanwhile wakes the task), so later rounds of this poll skip it.
    read_parked: [bool; 2],
    write_failed: [bool; 2],
    read_size: [usize; 2],
    timer: Option<(Timestamp, Pin<Box<Sleep>>)>,
    /// The flow's next deadline, armed only when the task is about to sleep.
    deadline: Option<(Timestamp, tokio::time::Instant)>,
    /// Waiting for this side's peer to acknowledge everything written to it, checked every
    /// [`DELIVERY_POLL`].
    delivery: Option<(Side, Pin<Box<Sleep>>)>,
    /// `WatchBackend`: completes when health checks take the backend down.
    watch: Option<(PoolId, BackendId, BoxFuture<()>)>,
    /// Events a broken build made up between wake-ups (`Defect::DropChunk`).
    #[cfg(feature = "seams")]
    injected: Vec<IoEvent<N::Stream>>,
}

/// The events of one wake-up. They live on the stack of the poll that gathers them and
/// feeds them to the flow, not in the task: an idle connection keeps no event list.
/// (At most about ten per wake-up: connect, a write and a read per side, delivery, backend
/// down, timer, abort.)
type Events<S> = smallvec::SmallVec<[IoEvent<S>; 10]>;

/// How often a reset waiting for its bytes to be delivered asks the kernel again.
const DELIVERY_POLL: std::time::Duration = std::time::Duration::from_millis(5);

impl<N: Net> FlowIo<N> {
    fn new(net: N, client: N::Stream) -> Self {
        FlowIo {
            net,
            sockets: [Some(client), None],
            connecting: None,
            out: [VecDeque::new(), VecDeque::new()],
            paused: [false; 2],
            read_done: [false; 2],
            read_parked: [false; 2],
            write_failed: [false; 2],
            read_size: [FIRST_READ; 2],
            timer: None,
            deadline: None,
            delivery: None,
            watch: None,
            #[cfg(feature = "seams")]
            injected: Vec::new(),
        }
    }

    /// Polls everything the flow waits on and records what is ready. Ready when at least
    /// one event was recorded.
    fn poll_events(&mut self, cx: &mut Context<'_>, events: &mut Events<N::Stream>) -> Poll<()> {
        if let Some((attempt, fut)) = &mut self.connecting {
            if let Poll::Ready(r) = fut.as_mut().poll(cx) {
                let attempt = *attempt;
                self.connecting = None;
                events.push(match r {
                    Ok(s) => IoEvent::Connected(attempt, s),
                    Err(e) => IoEvent::ConnectFailed(attempt, crate::net::connect_failure(&e)),
                });
            }
        }
        for side in Side::BOTH {
            self.poll_writes(side, cx, events);
        }
        for side in Side::BOTH {
            self.poll_read(side, cx, events);
        }
        self.poll_delivery(cx, events);
        if let Some((_, backend, watch)) = &mut self.watch {
            if watch.as_mut().poll(cx).is_ready() {
                events.push(IoEvent::BackendDown(*backend));
                self.watch = None;
            }
        }
        if !events.is_empty() {
            return Poll::Ready(());
        }
        self.poll_sleep(cx, events)
    }

    /// Everything but the timer has been polled and found pending: arms the timer and
    /// sleeps, unless it is due.
    fn poll_sleep(&mut self, cx: &mut Context<'_>, events: &mut Events<N::Stream>) -> Poll<()> {
        // Only now that the task is about to sleep is its timer (re)armed: a deadline that
        // moves while events keep coming (a ClientHello read at once, then the connect's
        // deadline) costs no timer reset, which would wake the runtime's driver.
        self.arm_pending();
        if let Some((_, sleep)) = &mut self.timer {
            if sleep.as_mut().poll(cx).is_ready() {
                self.timer = None;
                events.push(IoEvent::Timer);
                return Poll::Ready(());
            }
        }
        // The task yields: the next poll looks at every read again.
        self.read_parked = [false; 2];
        Poll::Pending
    }

    /// While a reset waits: done once the side's queue is written and its peer has
    /// acknowledged every byte (or the socket is gone, or it cannot tell).
    fn poll_delivery(&mut self, cx: &mut Context<'_>, events: &mut Events<N::Stream>) {
        while let Some((side, sleep)) = &mut self.delivery {
            let side = *side;
            let i = side.index();
            let done = match &self.sockets[i] {
                None => true,
                Some(_) if self.write_failed[i] => true,
                Some(_) if !self.out[i].is_empty() => false,
                Some(sock) => self.net.unacked(sock).map_or(true, |n| n == 0),
            };
            if done {
                self.delivery = None;
                events.push(IoEvent::Delivered(side));
                return;
            }
            if sleep.as_mut().poll(cx).is_pending() {
                return;
            }
            sleep.as_mut().reset(crate::clock::now() + DELIVERY_POLL);
        }
    }

    fn poll_writes(&mut self, side: Side, cx: &mut Context<'_>, events: &mut Events<N::Stream>) {
        let i = side.index();
        let (Some(sock), false) = (&mut self.sockets[i], self.write_failed[i]) else {
            return;
        };
        let mut written = 0;
        let mut failed = false;
        let queue = &mut self.out[i];
        while let Some(op) = queue.front() {
            match op {
                Op::Write(_) => {
                    // Gather the queued chunks up to the next shutdown into one write.
                    let mut slices = [io::IoSlice::new(&[]); MAX_IOVECS];
                    let mut count = 0;
                    let mut then_fin = false;
                    for op in queue.iter().take(MAX_IOVECS + 1) {
                        match op {
                            Op::Write(d) if count < MAX_IOVECS => {
                                slices[count] = io::IoSlice::new(d);
                                count += 1;
                            }
                            Op::Write(_) => break,
                            Op::Shutdown => {
                                then_fin = true;
                                break;
                            }
                        }
                    }
                    // The shutdown right after these bytes may share their segment.
                    let poll = if then_fin {
                        self.net.poll_write_then_fin(sock, cx, &slices[..count])
                    } else if count > 1 {
                        Pin::new(&mut *sock).poll_write_vectored(cx, &slices[..count])
                    } else {
                        Pin::new(&mut *sock).poll_write(cx, &slices[0])
                    };
                    match poll {
                        Poll::Ready(Ok(n)) if n > 0 => {
                            written += n;
                            consume(queue, n);
                        }
                        Poll::Ready(_) => {
                            failed = true;
                            break;
                        }
                        Poll::Pending => break,
                    }
                }
                Op::Shutdown => match Pin::new(&mut *sock).poll_shutdown(cx) {
                    // A failed shutdown means the peer is gone; its read side reports that.
                    Poll::Ready(_) => {
                        queue.pop_front();
                    }
                    Poll::Pending => break,
                },
            }
        }
        if written > 0 {
            events.push(IoEvent::Written(side, written));
        }
        if failed {
            self.write_failed[i] = true;
            self.out[i].clear();
            events.push(IoEvent::Failed(side));
        }
    }

    fn poll_read(&mut self, side: Side, cx: &mut Context<'_>, events: &mut Events<N::Stream>) {
        let i = side.index();
        if self.paused[i] || self.read_done[i] || self.read_parked[i] {
            return;
        }
        let Some(sock) = &mut self.sockets[i] else {
            return;
        };
        // A short read is followed by one more. Without news since, tokio answers it
        // without a system call (a short read drained the socket); when the peer's FIN
        // came with the data, it is the end of stream, known before the data is written
        // on, so the shutdown can share the data's segment (`poll_writes`).
        for _ in 0..2 {
            let size = self.read_size[i];
            match self.net.poll_read_bytes(sock, cx, size) {
                Poll::Ready(Ok(None)) => {
                    self.read_done[i] = true;
                    events.push(IoEvent::Eof(side));
                    return;
                }
                Poll::Ready(Ok(Some(data))) => {
                    let short = data.len() < size;
                    if data.len() == size {
                        self.read_size[i] = (size * 2).min(MAX_READ);
                    } else if data.len() < size / 8 {
                        self.read_size[i] = (size / 2).max(MIN_READ);
                    }
                    events.push(IoEvent::Read(side, data));
                    if !short {
                        return;
                    }
                }
                Poll::Ready(Err(_)) => {
                    self.read_done[i] = true;
                    events.push(IoEvent::Failed(side));
                    return;
                }
                Poll::Pending => {
                    self.read_parked[i] = true;
                    return;
                }
            }
        }
    }

    /// Puts a newly connected backend socket in place. It has not been polled yet, so no
    /// earlier pending read of this poll (a previous attempt's socket) may skip it.
    fn set_backend(&mut self, stream: N::Stream) {
        let i = Side::Backend.index();
        self.sockets[i] = Some(stream);
        self.read_parked[i] = false;
    }

    /// Sets the deadline the timer is to be armed for when the task next sleeps.
    fn arm(&mut self, deadline: Option<Timestamp>, shared: &Shared) {
        self.deadline = deadline.map(|d| (d, shared.clock.instant(d)));
    }

    /// Arms the timer for the deadline set, unless it is armed for an earlier time already
    /// (an early wake-up is harmless: the flow re-arms from `poll_timeout`).
    fn arm_pending(&mut self) {
        match (self.deadline, &mut self.timer) {
            (None, _) => self.timer = None,
            (Some((d, _)), Some((armed, _))) if *armed <= d => {}
            (Some((d, at)), Some((armed, sleep))) => {
                *armed = d;
                sleep.as_mut().reset(at);
            }
            (Some((d, at)), None) => {
                self.timer = Some((d, Box::pin(tokio::time::sleep_until(at))));
            }
        }
    }
}

/// Tells a worker's flows to give up (at the end of the shutdown grace period).
#[derive(Debug, Default)]
pub struct AbortSignal {
    raised: std::sync::atomic::AtomicBool,
    notify: tokio::sync::Notify,
}

impl AbortSignal {
    /// Every flow watching this signal aborts (through its machine, so it is released
    /// and logged like any other close).
    pub fn raise(&self) {
        self.raised
            .store(true, std::sync::atomic::Ordering::Release);
        self.notify.notify_waiters();
    }

    fn raised(&self) -> bool {
        self.raised.load(std::sync::atomic::Ordering::Acquire)
    }
}

/// Runs one client connection of `listener` from accept to close, or until `abort` is
/// raised; `done` is dropped when it ends.
///
/// A plain function returning one `async move` block rather than an `async fn`: an
/// `async fn` keeps its arguments and the locals made from them side by side for the
/// task's whole life, and for an idle connection the task is most of what it costs.
#[allow(clippy::too_many_arguments, clippy::manual_async_fn)]
pub fn run<N: Net>(
    net: N,
    shared: Arc<Shared>,
    id: FlowId,
    listener: ListenerId,
    client: N::Stream,
    peer: SocketAddr,
    abort: Arc<AbortSignal>,
    done: impl Send + 'static,
) -> impl Future<Output = ()> + Send + 'static {
    async move {
        let _done = done;
        // Registered before the flag is read, so a raise in between is not missed.
        let aborted = abort.notify.notified();
        tokio::pin!(aborted);
        let mut abort_seen = abort.raised();
        // The waker `aborted` was last polled with.
        let mut abort_waker: Option<std::task::Waker> = None;
        let (mut flow, local) = shared.with_balancer(|balancer, now| {
            // The address the client connected to, which only a PROXY header carries: one
            // getsockname, only when a pool the listener routes to sends the header.
            let local = balancer
                .wants_local_addr(listener)
                .then(|| net.stream_local_addr(&client).ok())
                .flatten();
            (
                Flow::accept(balancer, id, listener, peer, local, now),
                local,
            )
        });
        #[cfg(not(feature = "seams"))]
        let _ = local;
        if !flow.is_closed() {
            set_keepalive(
                &net,
                &client,
                flow.keepalive(Side::Client),
                id,
                Side::Client,
            );
        }
        let mut io = FlowIo::new(net.clone(), client);
        #[cfg(feature = "seams")]
        let mut broken = broken::BrokenFlow::new(shared.defects, id);
        loop {
            #[cfg(feature = "seams")]
            broken.maybe_panic();
            while let Some(action) = flow.poll_action() {
                match action {
                    FlowAction::Connect { addr, attempt, .. } => {
                        if let Some(old) = io.sockets[Side::Backend.index()].take() {
                            net.abort(old);
                        }
                        let preamble = flow.preamble().cloned();
                        #[cfg(feature = "seams")]
                        let preamble = wrong_header(&shared, preamble, peer, local);
                        io.connecting = Some((attempt, connect(&net, addr, preamble)));
                    }
                    FlowAction::Write { side, data } => {
                        #[cfg(feature = "seams")]
                        if broken.write(side, &data, &mut io.out[side.index()], &mut io.injected) {
                            continue;
                        }
                        io.out[side.index()].push_back(Op::Write(data))
                    }
                    FlowAction::Shutdown { side } => {
                        #[cfg(feature = "seams")]
                        if side == Side::Client {
                            broken.flush(&mut io.out[side.index()]);
                        }
                        io.out[side.index()].push_back(Op::Shutdown)
                    }
                    FlowAction::PauseRead { side } => io.paused[side.index()] = true,
                    FlowAction::ResumeRead { side } => io.paused[side.index()] = false,
                    FlowAction::WatchBackend { pool, backend } => {
                        let signal = shared.down_signal(pool, backend);
                        let generation = signal.generation();
                        io.watch = Some((
                            pool,
                            backend,
                            Box::pin(async move { signal.raised_after(generation).await }),
                        ));
                    }
                    FlowAction::AwaitDelivery { to } => {
                        io.delivery = Some((to, Box::pin(tokio::time::sleep(DELIVERY_POLL))));
                    }
                    FlowAction::UpdatePool => {
                        shared.with_balancer(|b, now| flow.update_pool(b, now));
                    }
                    FlowAction::Route => {
                        shared.with_balancer(|b, now| flow.handle_route(b, now));
                    }
                    FlowAction::Close { reset, .. } => {
                        close(&net, io, reset);
                        // The names the close line shows are copied under the balancer's
                        // lock; the line is put together after it is released.
                        let (summary, names) = shared.with_balancer(|b, now| {
                            #[cfg(feature = "seams")]
                            let release = !broken.skip_release();
                            #[cfg(not(feature = "seams"))]
                            let release = true;
                            if release {
                                flow.release(b, now);
                            }
                            let summary = flow.summary();
                            let names = CloseNames::of(&summary, b);
                            (summary, names)
                        });
                        log_close(&summary, &names);
                        return;
                    }
                }
            }
            io.arm(flow.poll_timeout(), &shared);
            // The events are fed to the flow inside the poll, where they were gathered:
            // the list (a few hundred bytes on the stack) is not moved out of the poll and
            // into the loop on every wake-up.
            poll_fn(|cx| {
                let mut events = Events::new();
                #[cfg(feature = "seams")]
                events.extend(io.injected.drain(..));
                // Polling the `Notified` takes the signal's lock, so it is polled only
                // when it has not seen this task's waker; once registered, the flag (set
                // before the wake) says whether the abort came.
                if !abort_seen {
                    if abort_waker
                        .as_ref()
                        .is_some_and(|w| w.will_wake(cx.waker()))
                    {
                        abort_seen = abort.raised();
                    } else if aborted.as_mut().poll(cx).is_ready() {
                        abort_seen = true;
                    } else {
                        abort_waker = Some(cx.waker().clone());
                    }
                }
                if abort_seen {
                    events.push(IoEvent::Abort);
                } else if io.poll_events(cx, &mut events).is_pending() {
                    return Poll::Pending;
                }
                let now = shared.clock.now();
                // Writes that completed are all this round found (the reads and the rest
                // were polled after the writes and are pending): if they give the flow
                // nothing to do, the task can sleep now, without polling everything again
                // to find it all still pending.
                loop {
                    let only_written = events.iter().all(|e| matches!(e, IoEvent::Written(..)));
                    for event in events.drain(..) {
                        #[cfg(feature = "seams")]
                        let event = broken.event(event);
                        match event {
                            IoEvent::Read(side, data) => flow.handle_read(side, data, now),
                            IoEvent::Written(side, n) => flow.handle_written(side, n, now),
                            IoEvent::Eof(side) => flow.handle_eof(side, now),
                            IoEvent::Failed(side) => flow.handle_reset(side, now),
                            IoEvent::Connected(attempt, stream) => {
                                // Through `io` and `flow`, not the task's own copies: each
                                // variable this poll captures costs the idle task 8 bytes.
                                let keepalive = flow.keepalive(Side::Backend);
                                set_keepalive(
                                    &io.net,
                                    &stream,
                                    keepalive,
                                    flow.id(),
                                    Side::Backend,
                                );
                                io.set_backend(stream);
                                shared
                                    .with_balancer(|b, now| flow.handle_connected(b, attempt, now));
                            }
                            IoEvent::ConnectFailed(attempt, failure) => {
                                shared.with_balancer(|b, now| {
                                    flow.handle_connect_failed(b, attempt, failure, now)
                                });
                            }
                            IoEvent::Timer => {
                                shared.with_balancer(|b, now| flow.handle_timeout(b, now))
                            }
                            IoEvent::Delivered(side) => flow.handle_delivered(side, now),
                            IoEvent::BackendDown(backend) => flow.handle_backend_down(backend, now),
                            IoEvent::Abort => flow.handle_abort(now),
                        }
                    }
                    if !only_written || flow.has_actions() {
                        return Poll::Ready(());
                    }
                    io.arm(flow.poll_timeout(), &shared);
                    if io.poll_sleep(cx, &mut events).is_pending() {
                        return Poll::Pending;
                    }
                    // The timer is due: its event is handled like any other.
                }
            })
            .await;
        }
    }
}

/// [`Defect::ProxyWrongClient`](lb_sans_io::defect::Defect::ProxyWrongClient): the header
/// names the load balancer as the client.
#[cfg(feature = "seams")]
fn wrong_header(
    shared: &Shared,
    preamble: Option<Bytes>,
    peer: SocketAddr,
    local: Option<SocketAddr>,
) -> Option<Bytes> {
    use lb_sans_io::defect::Defect;
    match (preamble, local) {
        (Some(p), Some(local)) if shared.defects.has(Defect::ProxyWrongClient) => {
            let version = if p.starts_with(b"PROXY") {
                lb_sans_io::config::ProxyProtocol::V1
            } else {
                lb_sans_io::config::ProxyProtocol::V2
            };
            Some(lb_sans_io::proxy_header::header(version, local, Some(peer)))
        }
        (p, _) => p,
    }
}

/// Connects to a backend and writes the flow's preamble (PROXY header), if it has one,
/// before the connection counts as made.
fn connect<N: Net>(
    net: &N,
    addr: SocketAddr,
    preamble: Option<Bytes>,
) -> BoxFuture<io::Result<N::Stream>> {
    let connecting = net.connect(addr);
    match preamble {
        None => connecting,
        Some(bytes) => Box::pin(async move {
            let mut stream = connecting.await?;
            tokio::io::AsyncWriteExt::write_all(&mut stream, &bytes).await?;
            Ok(stream)
        }),
    }
}

/// Applies the flow's keepalive settings (if any) to one of its sockets. The settings are
/// validated against the kernel's limits, so this does not fail on a live socket; if it
/// does, the connection goes on without keepalive.
fn set_keepalive<N: Net>(
    net: &N,
    stream: &N::Stream,
    keepalive: Option<lb_sans_io::Keepalive>,
    id: FlowId,
    side: Side,
) {
    if let Some(keepalive) = keepalive {
        if let Err(e) = net.set_keepalive(stream, keepalive) {
            tracing::debug!(flow = id.0, ?side, "cannot set TCP keepalive: {e}");
        }
    }
}

/// Drops `n` written bytes from the front of a write queue.
fn consume(queue: &mut VecDeque<Op>, mut n: usize) {
    while n > 0 {
        let Some(Op::Write(data)) = queue.front_mut() else {
            return;
        };
        if n < data.len() {
            data.advance(n);
            return;
        }
        n -= data.len();
        queue.pop_front();
    }
}

fn close<N: Net>(net: &N, mut io: FlowIo<N>, reset: bool) {
    io.connecting = None;
    for sock in io.sockets.iter_mut().filter_map(Option::take) {
        if reset {
            net.abort(sock);
        } else {
            // A graceful close comes after both sides' FINs and every write: the receive
            // buffers are empty, so close() itself sends the FIN a queued shutdown would
            // have (one syscall fewer per connection). Timeouts close with data unsent.
            drop(sock);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn size_of_task<Fut>(
        _run: impl FnOnce(
            crate::TokioNet,
            Arc<Shared>,
            FlowId,
            ListenerId,
            tokio::net::TcpStream,
            SocketAddr,
            Arc<AbortSignal>,
            (),
        ) -> Fut,
    ) -> usize {
        std::mem::size_of::<Fut>()
    }

    /// An idle connection costs mostly its task, this future (boxed by the accept loop, so
    /// in an allocation of its own next to tokio's small task cell): it grew unnoticed from
    /// feature to feature (docs/performance.md), so it has a bound now. A change that needs
    /// more raises the bound knowingly, with the idle figure in docs/performance.md
    /// measured again (`bench/hold.py`).
    #[test]
    fn a_connections_task_stays_small() {
        let size = size_of_task(|n, s, i, l, c, p, a, d: ()| run(n, s, i, l, c, p, a, d));
        // Debug build; with the test seams' extra state when they are compiled in.
        // History: 1,152 B; 1,184 when the abort signal's waker was kept (idle memory
        // unchanged, the cell rounding to 128); 1,016 since a flow points to its shared
        // settings instead of holding a copy (992 B in release, a cell 128 B smaller:
        // 2,669 to 2,539 B per idle connection by bench/hold.py).
        let bound = if cfg!(feature = "seams") {
            1_152
        } else {
            1_024
        };
        assert!(
            size <= bound,
            "a connection's task future is {size} bytes, over {bound}"
        );
    }
}
