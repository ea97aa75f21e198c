//! The turmoil implementation of lb-runtime's [`Net`] trait, and the recording it does.
//!
//! [`TurmoilNet`] is what every simulated host (load balancer and backends) runs on. Tasks
//! are spawned with `tokio::task::spawn_local`, as turmoil needs for determinism; turmoil
//! has no RST on demand, so `abort` just drops the stream. Each stream is a [`SimStream`]
//! that records, into a [`NetLog`] the simulation owns, what the host's sockets did: which
//! task used them, how many bytes went each way (and, for backends, the bytes themselves),
//! every connect with its outcome, and any task that panicked. The checkers compare these
//! socket-level observations with what the load balancer's pool reports.
//!
//! A task's id is kept in a tokio task-local set by [`TurmoilNet::spawn`], so a stream
//! knows which flow task polls it without any help from the driver.

use crate::dns::{DnsScript, Outage};
use crate::trace::Trace;
use lb_runtime::net::{AcceptFuture, BoxFuture, Net, WorkerTask};
use lb_runtime::shared::Shared;
use lb_sans_io::BackendState;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use turmoil::net::{TcpListener, TcpStream};

tokio::task_local! {
    /// The [`NetLog`] index of the task being polled.
    static TASK: usize;
}

/// The simulated time now (the same clock on every host), or zero outside a simulation.
pub fn sim_now() -> Duration {
    turmoil::sim_elapsed().unwrap_or_default()
}

/// How a recorded stream came to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Accepted from `peer` on a listener of port `port`.
    Accepted {
        /// The remote address.
        peer: SocketAddr,
        /// The listener's port (a load balancer's clients, or its admin endpoint).
        port: u16,
    },
    /// Opened by connect number `connect` (an index into [`NetLog::connects`]).
    Connected {
        /// The connect record.
        connect: usize,
    },
}

/// One stream's life as the host saw it.
#[derive(Clone, Debug)]
pub struct StreamRec {
    /// How it was opened.
    pub origin: Origin,
    /// This end's address.
    pub local: Option<SocketAddr>,
    /// The task that first polled it.
    pub task: Option<usize>,
    /// When it was opened.
    pub opened: Duration,
    /// When it was dropped.
    pub closed: Option<Duration>,
    /// Bytes read while its task had seen no socket failure (what the driver's flow
    /// machine accepts, see [`TaskRec::failed`]).
    pub read: u64,
    /// All bytes read.
    pub read_all: u64,
    /// Bytes written.
    pub written: u64,
    /// The bytes read, when the host records contents (backends).
    pub data_in: Vec<u8>,
    /// The bytes written, when the host records contents (backends).
    pub data_out: Vec<u8>,
    /// A read returned end of stream.
    pub eof: bool,
    /// A read or write failed.
    pub error: bool,
}

/// One spawned task.
#[derive(Clone, Debug)]
pub struct TaskRec {
    /// When it was spawned.
    pub spawned: Duration,
    /// When it returned, panicked or was dropped (host crash).
    pub finished: Option<Duration>,
    /// One of its streams failed (read error, write error or a zero-length write). The
    /// flow task turns the first failure into a reset and ignores every later event of
    /// the same batch, so reads after it are not counted in [`StreamRec::read`].
    pub failed: bool,
    /// It panicked, with this message.
    pub panicked: Option<String>,
    /// What it is, for the trace: `probe` for a health probe, else `task`.
    pub label: &'static str,
}

/// How a connect ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectOutcome {
    /// Still in progress.
    Pending,
    /// Connected; the stream is [`NetLog::streams`]`[stream]`.
    Connected {
        /// Index of the stream.
        stream: usize,
    },
    /// Refused or failed.
    Failed,
    /// The future was dropped before it finished (a timeout or a closing flow).
    Abandoned,
}

/// One connect.
#[derive(Clone, Debug)]
pub struct ConnectRec {
    /// The task that called `connect`.
    pub task: Option<usize>,
    /// When `connect` was called.
    pub at: Duration,
    /// Where to.
    pub addr: SocketAddr,
    /// On a load balancer: bit `i` set when the pool had backend `i` up at that moment.
    pub up_mask: Option<u64>,
    /// On a load balancer: bit `i` set when the pool listed backend `i` (configured or
    /// discovered, not removed) at that moment.
    pub listed_mask: Option<u64>,
    /// How it ended.
    pub outcome: ConnectOutcome,
    /// When it ended.
    pub resolved: Option<Duration>,
}

/// Everything one host's sockets did; shared between the host and the simulation, and
/// kept across crashes and restarts of the host.
#[derive(Clone, Debug, Default)]
pub struct NetLog {
    /// Every stream, in the order they were opened.
    pub streams: Vec<StreamRec>,
    /// Every spawned task.
    pub tasks: Vec<TaskRec>,
    /// Every connect.
    pub connects: Vec<ConnectRec>,
    /// Record the contents of streams, not just their sizes.
    pub record_contents: bool,
}

/// A shared [`NetLog`].
pub type SharedLog = Arc<Mutex<NetLog>>;

fn lock(log: &SharedLog) -> MutexGuard<'_, NetLog> {
    // A panic while recording is reported by the task wrapper; keep the record usable.
    log.lock().unwrap_or_else(|p| p.into_inner())
}

/// A new, empty log.
pub fn new_log(record_contents: bool) -> SharedLog {
    Arc::new(Mutex::new(NetLog {
        record_contents,
        ..NetLog::default()
    }))
}

/// How often the simulation's [`Net::take_while`] asks its predicate again while it says no.
const TAKE_RECHECK: Duration = Duration::from_millis(1);

/// The turmoil network, recording into a [`NetLog`].
#[derive(Clone)]
pub struct TurmoilNet {
    log: SharedLog,
    /// On a load balancer, its shared state and the backends' addresses (in the
    /// simulation's order), so each connect records which backends the pool had up when
    /// it chose.
    lb: Option<(Arc<Shared>, Arc<[SocketAddr]>)>,
    /// Where accepts and connects are traced: the trace, this host's name, and the
    /// backends' addresses (to name them).
    trace: Option<(Trace, Arc<str>, Arc<[SocketAddr]>)>,
    /// The scripted DNS it asks, and the backends' addresses (in the simulation's order).
    dns: Option<(Arc<DnsScript>, Arc<[SocketAddr]>)>,
}

impl TurmoilNet {
    /// A network recording into `log`.
    pub fn new(log: SharedLog) -> TurmoilNet {
        TurmoilNet {
            log,
            lb: None,
            trace: None,
            dns: None,
        }
    }

    /// Also records accepts and connects in `trace` as host `host`, naming backend `i`
    /// (at `backends[i]`) `b{i}`.
    pub fn with_trace(mut self, trace: Trace, host: String, backends: Vec<SocketAddr>) -> Self {
        self.trace = Some((trace, host.into(), backends.into()));
        self
    }

    fn trace(&self, what: impl FnOnce(&dyn Fn(SocketAddr) -> String) -> String) {
        if let Some((trace, host, backends)) = &self.trace {
            let name = |a: SocketAddr| match backends.iter().position(|b| *b == a) {
                Some(i) => format!("b{i}"),
                None => a.to_string(),
            };
            trace.push(sim_now(), host.to_string(), what(&name));
        }
    }

    /// A load balancer's network: also records the pool's up backends (bit `i` for
    /// `backends[i]`) at each connect.
    pub fn for_balancer(
        log: SharedLog,
        shared: Arc<Shared>,
        backends: Vec<SocketAddr>,
    ) -> TurmoilNet {
        TurmoilNet {
            log,
            lb: Some((shared, backends.into())),
            trace: None,
            dns: None,
        }
    }

    /// Answers DNS questions from `script`, naming backend `i` by `backends[i]`'s address.
    pub fn with_dns(mut self, script: Arc<DnsScript>, backends: Vec<SocketAddr>) -> Self {
        self.dns = Some((script, backends.into()));
        self
    }

    fn new_stream(&self, inner: TcpStream, origin: Origin) -> SimStream {
        let mut log = lock(&self.log);
        let index = log.streams.len();
        let local = inner.local_addr().ok();
        log.streams.push(StreamRec {
            origin,
            local,
            task: None,
            opened: sim_now(),
            closed: None,
            read: 0,
            read_all: 0,
            written: 0,
            data_in: Vec::new(),
            data_out: Vec::new(),
            eof: false,
            error: false,
        });
        SimStream {
            inner,
            log: self.log.clone(),
            index,
        }
    }
}

/// Bit `i` set when the pool lists the backend at `backends[i]` (not removed).
pub fn listed_mask(shared: &Shared, backends: &[SocketAddr]) -> u64 {
    shared.with_balancer(|balancer, _| {
        balancer
            .pools()
            .filter(|(id, _, _)| !balancer.pool_removed(*id))
            .flat_map(|(_, _, pool)| pool.backends().iter())
            .filter(|b| !b.removed())
            .filter_map(|b| backends.iter().position(|a| *a == b.addr))
            .fold(0u64, |m, i| m | (1 << i))
    })
}

/// (`hash`) A fingerprint of the table of the (first) pool: the backends its selector
/// would choose for 4,096 made-up clients, by address, hashed. Two instances with the same
/// fingerprint choose alike for (almost) every client.
pub fn table_fingerprint(shared: &Shared) -> u64 {
    shared.with_balancer(|balancer, now| {
        let Some((id, _, _)) = balancer.pools().next() else {
            return 0;
        };
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for k in 0u32..4096 {
            let ip = std::net::IpAddr::from([10, 200, (k >> 8) as u8, k as u8]);
            let addr = balancer
                .preview_select(id, ip, now)
                .and_then(|b| balancer.pool(id)?.backend(b).map(|b| b.addr));
            for byte in format!("{addr:?}").bytes() {
                h ^= u64::from(byte);
                h = h.wrapping_mul(0x0000_0100_0000_01b3);
            }
        }
        h
    })
}

/// Bit `i` set when the pool has the backend at `backends[i]` up. (By address: a backend
/// a reload added has a later id in the pool than its index here.)
pub fn up_mask(shared: &Shared, backends: &[SocketAddr]) -> u64 {
    shared.with_balancer(|balancer, _| {
        balancer
            .pools()
            .filter(|(id, _, _)| !balancer.pool_removed(*id))
            .flat_map(|(_, _, pool)| pool.backends().iter())
            .filter(|b| b.state() == BackendState::Up && !b.removed())
            .filter_map(|b| backends.iter().position(|a| *a == b.addr))
            .fold(0u64, |m, i| m | (1 << i))
    })
}

impl Net for TurmoilNet {
    type Stream = SimStream;
    type Listener = Arc<TcpListener>;

    fn bind(&self, addr: SocketAddr) -> BoxFuture<io::Result<Arc<TcpListener>>> {
        Box::pin(async move { TcpListener::bind(addr).await.map(Arc::new) })
    }

    fn share_listener(&self, listener: &Arc<TcpListener>) -> io::Result<Arc<TcpListener>> {
        Ok(listener.clone())
    }

    type Taker = Arc<TcpListener>;

    /// The same listener: every worker's share is one socket here.
    fn taker(&self, share: &Arc<TcpListener>) -> io::Result<Arc<TcpListener>> {
        Ok(share.clone())
    }

    /// Turmoil has no readiness to wait on without accepting: while `take()` says no, asks
    /// it again every [`TAKE_RECHECK`] of simulated time; once it says yes, accepts as
    /// usual.
    fn take_while<'a>(
        &self,
        taker: &'a Arc<TcpListener>,
        take: impl Fn() -> bool + Send + 'a,
    ) -> AcceptFuture<'a, SimStream> {
        let net = self.clone();
        Box::pin(async move {
            while !take() {
                tokio::time::sleep(TAKE_RECHECK).await;
            }
            net.accept(taker).await
        })
    }

    fn local_addr(&self, listener: &Arc<TcpListener>) -> io::Result<SocketAddr> {
        listener.local_addr()
    }

    fn stream_local_addr(&self, stream: &SimStream) -> io::Result<SocketAddr> {
        stream.inner.local_addr()
    }

    fn accept<'a>(&self, listener: &'a Arc<TcpListener>) -> AcceptFuture<'a, SimStream> {
        let net = self.clone();
        Box::pin(async move {
            let (stream, peer) = listener.accept().await?;
            let port = listener.local_addr().map_or(0, |a| a.port());
            net.trace(|_| format!("accept {peer}"));
            Ok((
                net.new_stream(stream, Origin::Accepted { peer, port }),
                peer,
            ))
        })
    }

    fn connect(&self, addr: SocketAddr) -> BoxFuture<io::Result<SimStream>> {
        // Never called with the pool's lock held: the driver connects after draining the
        // flow's actions, outside `with_pool`.
        let up_mask = self
            .lb
            .as_ref()
            .map(|(shared, addrs)| up_mask(shared, addrs));
        let listed_mask = self
            .lb
            .as_ref()
            .map(|(shared, addrs)| listed_mask(shared, addrs));
        let task = TASK.try_with(|t| *t).ok();
        let who;
        let index = {
            let mut log = lock(&self.log);
            let label = task.map_or("main", |t| log.tasks[t].label);
            who = format!("({label} {})", task.unwrap_or(0));
            self.trace(|name| format!("connect {} {who}", name(addr)));
            log.connects.push(ConnectRec {
                task,
                at: sim_now(),
                addr,
                up_mask,
                listed_mask,
                outcome: ConnectOutcome::Pending,
                resolved: None,
            });
            log.connects.len() - 1
        };
        let net = self.clone();
        let guard = ConnectGuard {
            log: self.log.clone(),
            index,
            done: false,
        };
        Box::pin(async move {
            let mut guard = guard;
            let result = TcpStream::connect(addr).await;
            guard.done = true;
            let (outcome, result) = match result {
                Ok(s) => {
                    let stream = net.new_stream(s, Origin::Connected { connect: index });
                    (
                        ConnectOutcome::Connected {
                            stream: stream.index,
                        },
                        Ok(stream),
                    )
                }
                Err(e) => (ConnectOutcome::Failed, Err(e)),
            };
            net.trace(|name| format!("connect {} {who}: {:?}", name(addr), outcome));
            let mut log = lock(&net.log);
            log.connects[index].outcome = outcome;
            log.connects[index].resolved = Some(sim_now());
            result
        })
    }

    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        // Only for the trace: health probes are spawned as `probes::probe` futures.
        let label = if type_name_of(&task).contains("probes::probe") {
            "probe"
        } else {
            "task"
        };
        let id = {
            let mut log = lock(&self.log);
            log.tasks.push(TaskRec {
                spawned: sim_now(),
                finished: None,
                failed: false,
                panicked: None,
                label,
            });
            log.tasks.len() - 1
        };
        tokio::task::spawn_local(Guarded {
            inner: Box::pin(TASK.scope(id, task)),
            log: self.log.clone(),
            id,
            done: false,
        });
    }

    fn set_keepalive(
        &self,
        _stream: &SimStream,
        _keepalive: lb_sans_io::Keepalive,
    ) -> io::Result<()> {
        // turmoil's TCP has no keepalive (nor loss it would detect): nothing to set.
        Ok(())
    }

    fn resolve(
        &self,
        query: lb_sans_io::DnsQuery,
    ) -> lb_runtime::net::BoxFuture<Result<lb_sans_io::DnsAnswer, lb_sans_io::DnsError>> {
        use lb_sans_io::config::DiscoverTarget;
        use lb_sans_io::{DnsAnswer, DnsError};
        let dns = self.dns.clone();
        let trace = self.trace.clone();
        Box::pin(async move {
            let Some((script, backends)) = dns else {
                return Err(DnsError::Other("no DNS in this simulation".to_string()));
            };
            // The round trip to the DNS server.
            tokio::time::sleep(Duration::from_millis(2)).await;
            let asked = sim_now();
            let result = match &query.target {
                DiscoverTarget::Dns { name, .. } if name == crate::dns::NAME => {
                    match script.answer(asked, &backends) {
                        Ok(addrs) => Ok(DnsAnswer::Addrs(addrs.iter().map(|a| a.ip()).collect())),
                        Err(Outage::Empty) => Ok(DnsAnswer::Addrs(Vec::new())),
                        Err(Outage::ServerFailure) => Err(DnsError::ServerFailure),
                        Err(Outage::Timeout) => Err(DnsError::Timeout),
                        Err(Outage::Hang) => {
                            tokio::time::sleep(query.timeout).await;
                            Err(DnsError::Timeout)
                        }
                    }
                }
                _ => Err(DnsError::NoSuchName),
            };
            if let Some((trace, host, names)) = &trace {
                let what = match &result {
                    Ok(DnsAnswer::Addrs(ips)) => {
                        let named: Vec<String> = ips
                            .iter()
                            .map(|ip| match names.iter().position(|a| a.ip() == *ip) {
                                Some(i) => format!("b{i}"),
                                None => ip.to_string(),
                            })
                            .collect();
                        format!("dns answer [{}]", named.join(","))
                    }
                    Ok(other) => format!("dns answer {other:?}"),
                    Err(e) => format!("dns error: {e}"),
                };
                trace.push(sim_now(), host.to_string(), what);
            }
            result
        })
    }

    fn spawn_worker(&self, _name: &str, _cpu: Option<usize>, task: WorkerTask) -> io::Result<()> {
        // One more task on this host: the accept loop; its flows are spawned (and
        // recorded) through `spawn`.
        tokio::task::spawn_local(task());
        Ok(())
    }
}

fn type_name_of<T>(_: &T) -> &'static str {
    std::any::type_name::<T>()
}

/// Marks a connect abandoned when its future is dropped unfinished.
struct ConnectGuard {
    log: SharedLog,
    index: usize,
    done: bool,
}

impl Drop for ConnectGuard {
    fn drop(&mut self) {
        if !self.done {
            if let Some(c) = lock(&self.log).connects.get_mut(self.index) {
                c.outcome = ConnectOutcome::Abandoned;
                c.resolved = Some(sim_now());
            }
        }
    }
}

/// A spawned task: records its end and catches its panic (which the checkers report).
struct Guarded {
    inner: Pin<Box<dyn Future<Output = ()> + Send>>,
    log: SharedLog,
    id: usize,
    done: bool,
}

impl Future for Guarded {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        match catch_unwind(AssertUnwindSafe(|| this.inner.as_mut().poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(())) => {
                this.done = true;
                if let Some(t) = lock(&this.log).tasks.get_mut(this.id) {
                    t.finished = Some(sim_now());
                }
                Poll::Ready(())
            }
            Err(payload) => {
                let message = payload
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "non-string panic".to_string());
                this.done = true;
                let mut log = lock(&this.log);
                if let Some(t) = log.tasks.get_mut(this.id) {
                    t.finished = Some(sim_now());
                    t.panicked = Some(message);
                }
                Poll::Ready(())
            }
        }
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        if !self.done {
            if let Some(t) = lock(&self.log).tasks.get_mut(self.id) {
                t.finished.get_or_insert(sim_now());
            }
        }
    }
}

/// A turmoil stream that records what passes through it.
pub struct SimStream {
    inner: TcpStream,
    log: SharedLog,
    index: usize,
}

impl SimStream {
    /// Index of this stream's record in [`NetLog::streams`].
    pub fn index(&self) -> usize {
        self.index
    }

    /// Notes the polling task (the first one owns the stream) and returns it.
    fn touch(&self, log: &mut NetLog) -> Option<usize> {
        let task = TASK.try_with(|t| *t).ok();
        let rec = &mut log.streams[self.index];
        if rec.task.is_none() {
            rec.task = task;
        }
        task
    }
}

impl Drop for SimStream {
    fn drop(&mut self) {
        if let Some(s) = lock(&self.log).streams.get_mut(self.index) {
            s.closed.get_or_insert(sim_now());
        }
    }
}

impl AsyncRead for SimStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        let log = self.log.clone();
        let mut log = lock(&log);
        let task = self.touch(&mut log);
        if let Poll::Ready(result) = &r {
            let failed = task.is_some_and(|t| log.tasks[t].failed);
            let record = log.record_contents;
            let rec = &mut log.streams[self.index];
            match result {
                Ok(()) => {
                    let got = &buf.filled()[before..];
                    if got.is_empty() {
                        rec.eof = true;
                    } else {
                        rec.read_all += got.len() as u64;
                        if !failed {
                            rec.read += got.len() as u64;
                        }
                        if record {
                            rec.data_in.extend_from_slice(got);
                        }
                    }
                }
                Err(_) => {
                    rec.error = true;
                    if let Some(t) = task {
                        log.tasks[t].failed = true;
                    }
                }
            }
        }
        r
    }
}

impl AsyncWrite for SimStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, data);
        let log = self.log.clone();
        let mut log = lock(&log);
        let task = self.touch(&mut log);
        if let Poll::Ready(result) = &r {
            let record = log.record_contents;
            let rec = &mut log.streams[self.index];
            match result {
                Ok(n) if *n > 0 || data.is_empty() => {
                    rec.written += *n as u64;
                    if record {
                        rec.data_out.extend_from_slice(&data[..*n]);
                    }
                }
                _ => {
                    rec.error = true;
                    if let Some(t) = task {
                        log.tasks[t].failed = true;
                    }
                }
            }
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // A failed shutdown is not a failure event for the flow task (it ignores it).
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
