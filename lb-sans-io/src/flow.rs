//! The flow: one client connection and its backend connection. It owns forwarding,
//! half-close, backpressure, reading the ClientHello on an `sni` listener, the
//! connect/retry sequence and the client-hello, connect, idle and half-close timeouts. It
//! is owned by one driver task; only admission, routing, the connect phase, a latency
//! report and the close consult the shared balancer, through the narrow [`FlowPool`]
//! trait, so forwarding bytes never takes a shared lock (and this module does not depend
//! on the balancer's or the pool's).

use crate::config::{Algorithm, Config, ListenerConfig, OnBackendDown, PoolConfig, ProxyProtocol};
use crate::ids::{BackendId, FlowId, ListenerId, PoolId, Side};
use crate::sni::{read_client_hello, ClientHello, MAX_CLIENT_HELLO};
use crate::time::Timestamp;
use bytes::Bytes;
use std::collections::VecDeque;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// What a flow needs from the shared balancer, and all it may ask of it.
/// [`crate::Balancer`] implements it; drivers pass it to the flow's methods and never call
/// these themselves, so a seat is taken and given back by the flow alone.
pub trait FlowPool {
    /// A client of `listener` connected from `client`: admit it, or say why not. An id
    /// already open is not counted twice.
    fn open_flow(
        &mut self,
        flow: FlowId,
        listener: ListenerId,
        client: IpAddr,
        now: Timestamp,
    ) -> Result<Opened, RejectReason>;
    /// The pool for an open flow whose listener routes by server name, now that its
    /// ClientHello was read: `server_name` if it named one. `Err` when no pool takes it
    /// (`no_route`).
    fn route(
        &mut self,
        flow: FlowId,
        server_name: Option<&str>,
        now: Timestamp,
    ) -> Result<Routed, RejectReason>;
    /// Choose a backend for an open flow, not one of `exclude` (already tried), and reserve
    /// a connection slot on it; `None` when there is none, or the flow is not open.
    fn select(
        &mut self,
        flow: FlowId,
        client: SocketAddr,
        exclude: &[BackendId],
        now: Timestamp,
    ) -> Option<(BackendId, SocketAddr)>;
    /// The flow's connect to `backend` succeeded.
    fn connect_succeeded(&mut self, flow: FlowId, backend: BackendId, now: Timestamp);
    /// The flow's connect to `backend` failed (whose fault: `failure`); its slot is free.
    fn connect_failed(
        &mut self,
        flow: FlowId,
        backend: BackendId,
        failure: ConnectFailure,
        now: Timestamp,
    );
    /// A latency sample of the flow's `backend`: a connect time or a time to first byte.
    fn record_latency(
        &mut self,
        flow: FlowId,
        backend: BackendId,
        sample: Duration,
        now: Timestamp,
    );
    /// The flow forwarded these bytes since its last report (or its start): count them for
    /// its backend now.
    fn forwarded(&mut self, flow: FlowId, to_backend: u64, to_client: u64, now: Timestamp);
    /// The flow closed: free its seat and slot, add its bytes (those not reported by
    /// [`FlowPool::forwarded`]) to its backend's counters. Unknown or already closed flows
    /// are ignored.
    fn close_flow(
        &mut self,
        flow: FlowId,
        bytes_to_backend: u64,
        bytes_to_client: u64,
        now: Timestamp,
    );
}

/// An admitted flow: its settings, and where it goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Opened {
    /// The listener's settings (and the pool's, when `route` is `Some`), shared by every
    /// flow with the same ones.
    pub limits: Arc<FlowLimits>,
    /// The pool, or `None` when the listener routes by server name: the flow reads the
    /// ClientHello first and asks [`FlowPool::route`].
    pub route: Option<PoolId>,
}

/// A flow's pool, chosen by server name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Routed {
    /// The pool.
    pub pool: PoolId,
    /// The flow's settings with the pool's, shared by every flow with the same ones.
    pub limits: Arc<FlowLimits>,
}

/// Default high watermark: bytes read from one side and not yet written to the other
/// beyond which reading that side pauses.
pub const DEFAULT_HIGH_WATERMARK: usize = 256 * 1024;
/// Default low watermark: reading resumes once the backlog is down to this.
pub const DEFAULT_LOW_WATERMARK: usize = 64 * 1024;

/// The per-flow settings: the listener's when the flow is accepted, with its pool's once
/// it is routed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowLimits {
    /// With `sni`: how long the client may take to send its whole ClientHello.
    pub client_hello_timeout: Duration,
    /// How long one backend connect may take.
    pub connect_timeout: Duration,
    /// No byte either way for this long closes the flow.
    pub idle_timeout: Duration,
    /// After one side's FIN, how long the other direction may stay open with no traffic.
    pub half_close_timeout: Duration,
    /// Backends tried after the first one fails.
    pub retries: u32,
    /// Backlog (bytes read from one side, not yet written to the other) that pauses reading.
    pub high_watermark: usize,
    /// Backlog at which reading resumes.
    pub low_watermark: usize,
    /// Emit [`FlowAction::ReportLatency`] with the backend's time to first byte (only the
    /// `least_response_time` algorithm uses it).
    pub report_latency: bool,
    /// Send a PROXY protocol header of this version to the backend before any client byte.
    pub proxy_protocol: Option<ProxyProtocol>,
    /// `on_backend_down: close`: once connected, ask to be told when health checks take the
    /// backend down ([`FlowAction::WatchBackend`]), and close then.
    pub close_on_backend_down: bool,
    /// TCP keepalive for the client's socket (the listener's setting); `None`: off.
    pub client_keepalive: Option<Keepalive>,
    /// TCP keepalive for backend sockets (the pool's setting); `None`: off.
    pub backend_keepalive: Option<Keepalive>,
}

/// TCP keepalive settings for one socket, as the driver applies them (`SO_KEEPALIVE`,
/// `TCP_KEEPIDLE`, `TCP_KEEPINTVL`, `TCP_KEEPCNT`): after `idle` without traffic the
/// kernel sends a probe every `interval`, and resets the connection after `count`
/// unanswered ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Keepalive {
    /// Silence before the first probe (whole seconds).
    pub idle: Duration,
    /// Time between unanswered probes (whole seconds).
    pub interval: Duration,
    /// Unanswered probes before the connection is given up.
    pub count: u32,
}

impl From<crate::config::TcpKeepaliveConfig> for Keepalive {
    fn from(c: crate::config::TcpKeepaliveConfig) -> Keepalive {
        Keepalive {
            idle: c.idle.0,
            interval: c.interval.0,
            count: c.count,
        }
    }
}

impl Default for FlowLimits {
    /// The documented defaults of every setting.
    fn default() -> FlowLimits {
        use crate::config::*;
        FlowLimits {
            client_hello_timeout: default_client_hello().0,
            connect_timeout: default_connect().0,
            idle_timeout: default_idle().0,
            half_close_timeout: default_half_close().0,
            retries: default_retries(),
            high_watermark: DEFAULT_HIGH_WATERMARK,
            low_watermark: DEFAULT_LOW_WATERMARK,
            report_latency: false,
            proxy_protocol: None,
            close_on_backend_down: false,
            client_keepalive: None,
            backend_keepalive: None,
        }
    }
}

/// The settings a pool gives its flows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolLimits {
    /// How long one backend connect may take.
    pub connect_timeout: Duration,
    /// Backends tried after the first one fails.
    pub retries: u32,
    /// Report the backend's time to first byte (`least_response_time`).
    pub report_latency: bool,
    /// The PROXY header to send first, if any.
    pub proxy_protocol: Option<ProxyProtocol>,
    /// `on_backend_down: close`.
    pub close_on_backend_down: bool,
    /// TCP keepalive for backend sockets.
    pub backend_keepalive: Option<Keepalive>,
}

impl PoolLimits {
    /// The settings of `pool`.
    pub fn from_pool(pool: &PoolConfig) -> PoolLimits {
        PoolLimits {
            connect_timeout: pool.timeouts.connect.0,
            retries: pool.retries,
            report_latency: pool.algorithm == Algorithm::LeastResponseTime,
            proxy_protocol: pool.proxy_protocol,
            close_on_backend_down: pool.on_backend_down == OnBackendDown::Close,
            backend_keepalive: pool.tcp_keepalive.map(Keepalive::from),
        }
    }
}

impl FlowLimits {
    /// The settings of `listener`, with the default watermarks and the default pool
    /// settings (until [`FlowLimits::with_pool`]).
    pub fn for_listener(listener: &ListenerConfig) -> FlowLimits {
        FlowLimits {
            client_hello_timeout: listener.timeouts.client_hello.0,
            idle_timeout: listener.timeouts.idle.0,
            half_close_timeout: listener.timeouts.half_close.0,
            client_keepalive: listener.tcp_keepalive.map(Keepalive::from),
            ..FlowLimits::default()
        }
    }

    /// These settings with the pool's.
    #[must_use]
    pub fn with_pool(self, p: PoolLimits) -> FlowLimits {
        FlowLimits {
            connect_timeout: p.connect_timeout,
            retries: p.retries,
            report_latency: p.report_latency,
            proxy_protocol: p.proxy_protocol,
            close_on_backend_down: p.close_on_backend_down,
            backend_keepalive: p.backend_keepalive,
            ..self
        }
    }

    /// The first listener's settings with its pool's: a one-service config's flows.
    pub fn from_config(config: &Config) -> FlowLimits {
        let l = &config.listeners[0];
        let base = FlowLimits::for_listener(l);
        match l.pool.as_deref().and_then(|p| config.pool(p)) {
            Some(p) => base.with_pool(PoolLimits::from_pool(p)),
            None => base,
        }
    }
}

/// Why a new client connection was refused before any backend was tried.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RejectReason {
    /// `max_connections` client connections were already open.
    MaxConnections,
    /// No backend was up (or all were at their connection limit).
    NoBackend,
    /// The client's address is outside `allow`.
    NotAllowed,
    /// The client's IP address has `per_client.max_connections` open, or is over its
    /// `per_client.connection_rate`.
    PerClientLimit,
    /// The listener routes by server name, nothing matched, and it has no default `pool`.
    NoRoute,
}

impl RejectReason {
    /// Every reason, in the order metrics list them.
    pub const ALL: [RejectReason; 5] = [
        RejectReason::MaxConnections,
        RejectReason::NoBackend,
        RejectReason::NotAllowed,
        RejectReason::PerClientLimit,
        RejectReason::NoRoute,
    ];

    /// The label used in logs and metrics.
    pub fn label(self) -> &'static str {
        match self {
            RejectReason::MaxConnections => "max_connections",
            RejectReason::NoBackend => "no_backend",
            RejectReason::NotAllowed => "not_allowed",
            RejectReason::PerClientLimit => "per_client_limit",
            RejectReason::NoRoute => "no_route",
        }
    }
}

/// Why a connection to a backend could not be opened, as far as health is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectFailure {
    /// The backend, or the network to it, refused, reset or did not answer. Counts as a
    /// failed health check of the backend (passive health).
    Backend,
    /// This host could not open the connection: out of file descriptors, ephemeral ports
    /// or memory. The backend is not to blame, so its health is untouched; the flow still
    /// tries the next backend (ephemeral ports run out per destination).
    Local,
}

/// How a flow ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// Both sides sent FIN and everything was delivered.
    Completed,
    /// This side reset its connection (or failed); the other side was reset too, once the
    /// bytes read from this side before the reset had reached it (or the idle timeout said
    /// they will not).
    Reset(Side),
    /// No byte either way for `timeouts.idle`.
    IdleTimeout,
    /// One side half-closed and the other sent nothing for `timeouts.half_close`.
    HalfCloseTimeout,
    /// Refused before any backend was tried.
    Rejected(RejectReason),
    /// Every backend tried (`retries` + 1 at most) failed to connect.
    ConnectFailed {
        /// Backends tried.
        attempts: u32,
        /// The last attempt failed for lack of local resources ([`ConnectFailure::Local`]),
        /// not because of the backend.
        local: bool,
    },
    /// The driver closed it (for instance at the end of the shutdown grace period).
    Aborted,
    /// Health checks took its backend down, and `on_backend_down` is `close`.
    BackendDown,
}

impl CloseReason {
    /// The stable code logs and metrics use: `completed`, `client_reset`,
    /// `backend_reset`, `idle_timeout`, `half_close_timeout`, `connect_failed`,
    /// `no_local_resources`, `shutdown`, `backend_down`, `rejected_no_backend`,
    /// `rejected_max_connections`, `rejected_not_allowed`, `rejected_no_route`,
    /// `rejected_per_client_limit`.
    pub fn code(self) -> &'static str {
        match self {
            CloseReason::Completed => "completed",
            CloseReason::Reset(Side::Client) => "client_reset",
            CloseReason::Reset(Side::Backend) => "backend_reset",
            CloseReason::IdleTimeout => "idle_timeout",
            CloseReason::HalfCloseTimeout => "half_close_timeout",
            CloseReason::ConnectFailed { local: false, .. } => "connect_failed",
            CloseReason::ConnectFailed { local: true, .. } => "no_local_resources",
            CloseReason::Aborted => "shutdown",
            CloseReason::BackendDown => "backend_down",
            CloseReason::Rejected(RejectReason::NoBackend) => "rejected_no_backend",
            CloseReason::Rejected(RejectReason::MaxConnections) => "rejected_max_connections",
            CloseReason::Rejected(RejectReason::NotAllowed) => "rejected_not_allowed",
            CloseReason::Rejected(RejectReason::NoRoute) => "rejected_no_route",
            CloseReason::Rejected(RejectReason::PerClientLimit) => "rejected_per_client_limit",
        }
    }

    /// Every code [`CloseReason::code`] gives.
    pub const CODES: [&'static str; 14] = [
        "completed",
        "client_reset",
        "backend_reset",
        "idle_timeout",
        "half_close_timeout",
        "connect_failed",
        "no_local_resources",
        "shutdown",
        "backend_down",
        "rejected_no_backend",
        "rejected_max_connections",
        "rejected_not_allowed",
        "rejected_no_route",
        "rejected_per_client_limit",
    ];
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::Completed => f.write_str("completed"),
            CloseReason::Reset(side) => write!(f, "reset by {side}"),
            CloseReason::IdleTimeout => f.write_str("idle timeout"),
            CloseReason::HalfCloseTimeout => f.write_str("half-close timeout"),
            CloseReason::Rejected(r) => write!(f, "rejected ({})", r.label()),
            CloseReason::ConnectFailed {
                attempts,
                local: false,
            } => write!(f, "backend connect failed ({attempts} attempts)"),
            CloseReason::ConnectFailed {
                attempts,
                local: true,
            } => write!(
                f,
                "no local resources for a backend connection ({attempts} attempts)"
            ),
            CloseReason::Aborted => f.write_str("aborted"),
            CloseReason::BackendDown => f.write_str("backend down"),
        }
    }
}

/// What the driver must do for a flow, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FlowAction {
    /// Open the backend connection; report the outcome with this `attempt`. A new
    /// `Connect` abandons any earlier attempt still in progress.
    Connect {
        /// The chosen backend.
        backend: BackendId,
        /// Where it is.
        addr: SocketAddr,
        /// Names this attempt in [`Flow::handle_connected`] / [`Flow::handle_connect_failed`].
        /// Connecting includes writing [`Flow::preamble`], if the flow has one.
        attempt: u32,
    },
    /// Queue these bytes for writing to `side`; report progress with [`Flow::handle_written`].
    Write {
        /// Where to write.
        side: Side,
        /// The bytes, as read from the other side (never copied).
        data: Bytes,
    },
    /// After the queued writes to `side`, shut down its write half (send FIN).
    Shutdown {
        /// Which socket.
        side: Side,
    },
    /// Stop reading `side` (its backlog is over the high watermark).
    PauseRead {
        /// Which socket.
        side: Side,
    },
    /// Read `side` again.
    ResumeRead {
        /// Which socket.
        side: Side,
    },
    /// `side` was reset: everything the flow read from it has now been handed to the other
    /// side's socket. Report [`Flow::handle_delivered`] for `to` once that socket's peer has
    /// received (acknowledged) all of it; the reset is passed on then (or at the idle
    /// timeout, whichever comes first).
    AwaitDelivery {
        /// The socket whose send queue must drain.
        to: Side,
    },
    /// Tell the flow ([`Flow::handle_backend_down`]) if health checks take this backend
    /// down while the flow is connected to it (only with `on_backend_down: close`).
    WatchBackend {
        /// The pool of the backend.
        pool: PoolId,
        /// The backend connected to.
        backend: BackendId,
    },
    /// The ClientHello is read (or will not come): call [`Flow::handle_route`] with the
    /// balancer, which picks the flow's pool.
    Route,
    /// The flow has news for the pool (the backend's time to first byte, at most once per
    /// flow and only with [`FlowLimits::report_latency`]; bytes forwarded, every
    /// [`REPORT_BYTES`] or [`REPORT_EVERY`]): call [`Flow::update_pool`] with the pool.
    UpdatePool,
    /// The flow is over: perform any queued shutdowns, then close both sockets, with a reset
    /// (RST) if `reset`. Then call [`Flow::release`]. No action follows.
    Close {
        /// Why.
        reason: CloseReason,
        /// Close abortively, so each peer still connected sees a reset.
        reset: bool,
    },
}

/// One direction of a flow, named by the side it reads from.
#[derive(Clone, Debug, Default)]
struct Direction {
    /// Bytes read from the source side.
    bytes: u64,
    /// Bytes read and not yet reported written to the other side.
    backlog: usize,
    /// The source side sent FIN.
    fin: bool,
    /// FIN was passed on (a `Shutdown` of the other side was emitted).
    fin_forwarded: bool,
    /// Reading the source side is paused.
    paused: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Reading the client's ClientHello (an `sni` listener), until `deadline`.
    Peeking {
        deadline: Timestamp,
    },
    /// The ClientHello is read: waiting for [`Flow::handle_route`].
    Routing,
    Connecting {
        backend: BackendId,
        since: Timestamp,
        deadline: Timestamp,
    },
    Established {
        backend: BackendId,
    },
    Closed,
}

/// A summary of a closed flow, for the driver's one log line per connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowSummary {
    /// The flow.
    pub id: FlowId,
    /// The client's address.
    pub client: SocketAddr,
    /// The listener it came through.
    pub listener: ListenerId,
    /// Its pool, once routed.
    pub pool: Option<PoolId>,
    /// The server name its ClientHello named, on an `sni` listener.
    pub server_name: Option<String>,
    /// The last backend chosen for it, if any.
    pub backend: Option<BackendId>,
    /// That backend's address.
    pub backend_addr: Option<SocketAddr>,
    /// Backends tried (connect attempts).
    pub attempts: u32,
    /// From the start of the successful connect to the connection being up (`None`: it
    /// never connected).
    pub connect_time: Option<Duration>,
    /// Bytes read from the client.
    pub bytes_from_client: u64,
    /// Bytes read from the backend.
    pub bytes_from_backend: u64,
    /// From accept to close.
    pub duration: Duration,
    /// How it ended (`None` while open).
    pub reason: Option<CloseReason>,
}

/// The per-flow machine. See the module docs.
///
/// Use: create with [`Flow::accept`]; after that and after every `handle_*` call, drain
/// [`Flow::poll_action`] until `None` and re-arm the timer from [`Flow::poll_timeout`].
/// Events for a closed flow, stale connect attempts and reads after FIN are ignored.
#[derive(Debug)]
pub struct Flow {
    id: FlowId,
    client: SocketAddr,
    /// This load balancer's address as the client sees it, when known (PROXY headers).
    local: Option<SocketAddr>,
    listener: ListenerId,
    pool: Option<PoolId>,
    server_name: Option<String>,
    /// The flow's settings, shared with every flow of the same listener and pool (one
    /// pointer per connection instead of a copy): `None` until the flow is admitted, which
    /// reads as the defaults.
    limits: Option<Arc<FlowLimits>>,
    /// What each backend connection sends first (PROXY header), if anything.
    preamble: Option<Bytes>,
    started: Timestamp,
    last_now: Timestamp,
    last_activity: Timestamp,
    phase: Phase,
    attempt: u32,
    tried: Vec<BackendId>,
    /// The address of the backend last chosen.
    backend_addr: Option<SocketAddr>,
    /// How long the successful connect took.
    connect_time: Option<Duration>,
    /// How the latest connect attempt failed, if one did.
    last_failure: Option<ConnectFailure>,
    /// Client bytes read before the backend connection was up.
    early: VecDeque<Bytes>,
    /// Their total length.
    early_len: usize,
    dirs: [Direction; 2],
    first_fin_at: Option<Timestamp>,
    /// When the backend had something to answer (connected, or first client bytes after),
    /// until its first byte is reported.
    awaiting_first_byte: Option<Timestamp>,
    /// A time to first byte not yet given to the pool.
    latency_report: Option<(BackendId, Duration)>,
    /// This side was reset: its bytes still go to the other side, then the reset follows.
    reset_from: Option<Side>,
    /// `AwaitDelivery` was emitted for the reset's passing on.
    awaiting_delivery: bool,
    actions: VecDeque<FlowAction>,
    reason: Option<CloseReason>,
    released: bool,
    /// Bytes of each direction (indexed by the side read from) already reported to the
    /// pool by [`FlowPool::forwarded`].
    reported: [u64; 2],
    /// When bytes were last reported (or the flow started).
    last_report: Timestamp,
    /// An `UpdatePool` for the bytes is queued and not yet acted on.
    report_queued: bool,
}

/// Forwarded bytes are reported to the pool once this many are unreported...
pub const REPORT_BYTES: u64 = 256 * 1024;
/// ...or once this long has passed since the last report with any unreported, so a long
/// connection's bytes show in `/metrics` as they flow, not only at its close.
pub const REPORT_EVERY: Duration = Duration::from_secs(1);

impl Flow {
    /// A client at `client` connected to `listener` at `local` (this load balancer's
    /// address as the client sees it; needed only for a PROXY header, `None` when
    /// unknown): asks the balancer to admit it and, unless the listener routes by server
    /// name, to pick a backend. The first action is `Connect`, or `Close` when the flow is
    /// refused (not allowed, connection limit, no backend up); on an `sni` listener, none:
    /// the flow reads the ClientHello first.
    pub fn accept(
        pool: &mut dyn FlowPool,
        id: FlowId,
        listener: ListenerId,
        client: SocketAddr,
        local: Option<SocketAddr>,
        now: Timestamp,
    ) -> Flow {
        let mut flow = Flow {
            id,
            client,
            local,
            listener,
            pool: None,
            server_name: None,
            limits: None,
            preamble: None,
            started: now,
            last_now: now,
            last_activity: now,
            phase: Phase::Closed,
            attempt: 0,
            tried: Vec::new(),
            backend_addr: None,
            connect_time: None,
            last_failure: None,
            early: VecDeque::new(),
            early_len: 0,
            dirs: Default::default(),
            first_fin_at: None,
            awaiting_first_byte: None,
            latency_report: None,
            reset_from: None,
            awaiting_delivery: false,
            // Room for the usual most at once (a shutdown and the close, a write and a
            // report), not the four a first push would make: the queue is kept for the
            // connection's life, idle or not.
            actions: VecDeque::with_capacity(2),
            reason: None,
            released: false,
            reported: [0; 2],
            last_report: now,
            report_queued: false,
        };
        match pool.open_flow(id, listener, client.ip(), now) {
            Ok(Opened {
                limits,
                route: Some(to),
            }) => {
                flow.set_pool(to, limits);
                flow.connect_next(pool, now);
            }
            Ok(Opened {
                limits,
                route: None,
            }) => {
                flow.phase = Phase::Peeking {
                    deadline: now + limits.client_hello_timeout,
                };
                flow.limits = Some(limits);
            }
            Err(reason) => flow.close(CloseReason::Rejected(reason), false),
        }
        flow
    }

    fn set_pool(&mut self, pool: PoolId, limits: Arc<FlowLimits>) {
        self.pool = Some(pool);
        self.preamble = limits
            .proxy_protocol
            .map(|v| crate::proxy_header::header(v, self.client, self.local));
        self.limits = Some(limits);
    }

    /// The flow's settings (the defaults until it is admitted).
    fn limits(&self) -> &FlowLimits {
        static DEFAULTS: std::sync::LazyLock<FlowLimits> =
            std::sync::LazyLock::new(FlowLimits::default);
        match &self.limits {
            Some(limits) => limits,
            None => &DEFAULTS,
        }
    }

    /// After [`FlowAction::Route`]: asks the balancer for the pool of the server name read
    /// (if any), then connects, or closes when no pool takes the client.
    pub fn handle_route(&mut self, pool: &mut dyn FlowPool, now: Timestamp) {
        let now = self.observe(now);
        if self.phase != Phase::Routing {
            return;
        }
        match pool.route(self.id, self.server_name.as_deref(), now) {
            Ok(Routed { pool: to, limits }) => {
                self.set_pool(to, limits);
                self.connect_next(pool, now);
            }
            Err(reason) => self.close(CloseReason::Rejected(reason), false),
        }
    }

    /// While peeking: judges the bytes read so far; once there is an answer, asks to be
    /// routed.
    fn peek(&mut self, done: bool) {
        let answer = if self.early.len() == 1 {
            read_client_hello(&self.early[0])
        } else {
            let mut buf = Vec::with_capacity(self.early_len.min(MAX_CLIENT_HELLO));
            for chunk in &self.early {
                let room = MAX_CLIENT_HELLO - buf.len();
                buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
                if buf.len() == MAX_CLIENT_HELLO {
                    break;
                }
            }
            read_client_hello(&buf)
        };
        let name = match answer {
            ClientHello::Incomplete if !done => return,
            ClientHello::ServerName(name) => Some(name),
            _ => None,
        };
        self.server_name = name;
        self.phase = Phase::Routing;
        self.actions.push_back(FlowAction::Route);
        self.maybe_pause(Side::Client);
    }

    // ---- getters -------------------------------------------------------------------

    /// Bytes every backend connection of this flow carries before any client byte (the
    /// PROXY protocol header), if any. Writing them is part of connecting: the driver
    /// reports the connect as done only once they are written, and as failed if writing
    /// them fails. (Not in [`FlowAction::Connect`], so the action stays small.)
    pub fn preamble(&self) -> Option<&Bytes> {
        self.preamble.as_ref()
    }

    /// The TCP keepalive settings for `side`'s socket (`None`: leave keepalive off), from
    /// the limits the flow was accepted with. The driver applies the client's at accept
    /// and the backend's to each connected backend socket.
    pub fn keepalive(&self, side: Side) -> Option<Keepalive> {
        match side {
            Side::Client => self.limits().client_keepalive,
            Side::Backend => self.limits().backend_keepalive,
        }
    }

    /// This flow's id.
    pub fn id(&self) -> FlowId {
        self.id
    }

    /// Whether the flow has closed (its `Close` action was emitted).
    pub fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    /// The backend the flow is connected or connecting to.
    pub fn backend(&self) -> Option<BackendId> {
        match self.phase {
            Phase::Connecting { backend, .. } | Phase::Established { backend } => Some(backend),
            _ => None,
        }
    }

    /// The flow's pool, once routed.
    pub fn pool(&self) -> Option<PoolId> {
        self.pool
    }

    /// The listener the flow came through.
    pub fn listener(&self) -> ListenerId {
        self.listener
    }

    /// Bytes read from `side` and not yet written to the other side.
    pub fn backlog(&self, from: Side) -> usize {
        self.dirs[from.index()].backlog
    }

    /// Whether reading `side` is paused.
    pub fn is_paused(&self, side: Side) -> bool {
        self.dirs[side.index()].paused
    }

    /// What the driver logs when the flow closes.
    pub fn summary(&self) -> FlowSummary {
        FlowSummary {
            id: self.id,
            client: self.client,
            listener: self.listener,
            pool: self.pool,
            server_name: self.server_name.clone(),
            backend: self.tried.last().copied(),
            backend_addr: self.backend_addr,
            attempts: self.tried.len() as u32,
            connect_time: self.connect_time,
            bytes_from_client: self.dirs[Side::Client.index()].bytes,
            bytes_from_backend: self.dirs[Side::Backend.index()].bytes,
            duration: self.last_now.saturating_duration_since(self.started),
            reason: self.reason,
        }
    }

    // ---- events --------------------------------------------------------------------

    fn observe(&mut self, now: Timestamp) -> Timestamp {
        self.last_now = self.last_now.max(now);
        self.last_now
    }

    /// The backend connection of `attempt` is up.
    pub fn handle_connected(&mut self, pool: &mut dyn FlowPool, attempt: u32, now: Timestamp) {
        let now = self.observe(now);
        let Phase::Connecting { backend, since, .. } = self.phase else {
            return;
        };
        if attempt != self.attempt {
            return;
        }
        pool.connect_succeeded(self.id, backend, now);
        let took = now.saturating_duration_since(since);
        self.connect_time = Some(took);
        pool.record_latency(self.id, backend, took, now);
        self.phase = Phase::Established { backend };
        self.last_activity = now;
        if let (true, Some(pool)) = (self.limits().close_on_backend_down, self.pool) {
            self.actions
                .push_back(FlowAction::WatchBackend { pool, backend });
        }
        if self.limits().report_latency {
            self.awaiting_first_byte = Some(now);
        }
        self.early_len = 0;
        while let Some(data) = self.early.pop_front() {
            self.actions.push_back(FlowAction::Write {
                side: Side::Backend,
                data,
            });
        }
        if self.dirs[Side::Client.index()].fin {
            self.forward_fin(Side::Client);
        }
        self.maybe_complete();
    }

    /// The backend connect of `attempt` failed (see [`ConnectFailure`] for how the cause
    /// matters): the flow tries another backend or closes.
    pub fn handle_connect_failed(
        &mut self,
        pool: &mut dyn FlowPool,
        attempt: u32,
        failure: ConnectFailure,
        now: Timestamp,
    ) {
        let now = self.observe(now);
        let Phase::Connecting { backend, .. } = self.phase else {
            return;
        };
        if attempt != self.attempt {
            return;
        }
        self.last_failure = Some(failure);
        pool.connect_failed(self.id, backend, failure, now);
        self.connect_next(pool, now);
    }

    /// Bytes were read from `side`. They are passed on to the other side untouched (or held
    /// until the backend connection is up); past the high watermark reading `side` pauses.
    pub fn handle_read(&mut self, side: Side, data: Bytes, now: Timestamp) {
        let now = self.observe(now);
        if self.reset_from.is_some() {
            return; // a reset is being passed on: nothing more is forwarded
        }
        let established = match self.phase {
            Phase::Closed => return,
            Phase::Established { .. } => true,
            Phase::Peeking { .. } | Phase::Routing | Phase::Connecting { .. } => false,
        };
        let dir = &mut self.dirs[side.index()];
        if data.is_empty() || dir.fin || (!established && side == Side::Backend) {
            return;
        }
        let peeking = matches!(self.phase, Phase::Peeking { .. });
        self.last_activity = now;
        if established && dir.bytes == 0 {
            self.first_bytes(side, now);
        }
        let dir = &mut self.dirs[side.index()];
        dir.bytes += data.len() as u64;
        dir.backlog += data.len();
        if established {
            self.actions.push_back(FlowAction::Write {
                side: side.other(),
                data,
            });
        } else {
            self.early_len += data.len();
            self.early.push_back(data);
        }
        if peeking {
            // Reading goes on while the ClientHello is read (it is bounded by
            // MAX_CLIENT_HELLO): a pause would stall it until `timeouts.client_hello`.
            self.peek(false);
        } else {
            self.maybe_pause(side);
        }
    }

    /// Pauses reading `side` (unless it is done) if its backlog is over the high watermark.
    fn maybe_pause(&mut self, side: Side) {
        let high = self.limits().high_watermark;
        let dir = &mut self.dirs[side.index()];
        if !dir.paused && !dir.fin && dir.backlog >= high {
            dir.paused = true;
            self.actions.push_back(FlowAction::PauseRead { side });
        }
    }

    /// `n` bytes queued for `side` were written to its socket.
    pub fn handle_written(&mut self, side: Side, n: usize, now: Timestamp) {
        let now = self.observe(now);
        if self.is_closed() {
            return;
        }
        let from = side.other();
        let low = self.limits().low_watermark;
        let dir = &mut self.dirs[from.index()];
        dir.backlog = dir.backlog.saturating_sub(n);
        if n > 0 {
            self.last_activity = now;
        }
        if self.reset_from.is_some() {
            return self.await_delivery();
        }
        if dir.paused && dir.backlog <= low {
            dir.paused = false;
            self.actions
                .push_back(FlowAction::ResumeRead { side: from });
        }
        self.maybe_report(now);
        self.maybe_complete();
    }

    /// Bytes written by each direction (indexed by the side read from) and not reported.
    fn unreported(&self) -> [u64; 2] {
        [0, 1].map(|i| {
            let d = &self.dirs[i];
            (d.bytes - d.backlog as u64).saturating_sub(self.reported[i])
        })
    }

    /// Queues an `UpdatePool` when enough forwarded bytes are unreported.
    fn maybe_report(&mut self, now: Timestamp) {
        if self.report_queued {
            return;
        }
        let [a, b] = self.unreported();
        let due = a + b >= REPORT_BYTES
            || (a + b > 0 && now.saturating_duration_since(self.last_report) >= REPORT_EVERY);
        if due {
            self.report_queued = true;
            self.actions.push_back(FlowAction::UpdatePool);
        }
    }

    /// `side` sent FIN: it will send no more. The FIN is passed on to the other side after
    /// the bytes before it; the other direction keeps flowing.
    pub fn handle_eof(&mut self, side: Side, now: Timestamp) {
        let now = self.observe(now);
        if self.reset_from.is_some() {
            return;
        }
        let established = match self.phase {
            Phase::Closed => return,
            Phase::Established { .. } => true,
            Phase::Peeking { .. } | Phase::Routing | Phase::Connecting { .. } => false,
        };
        if self.dirs[side.index()].fin || (!established && side == Side::Backend) {
            return;
        }
        self.dirs[side.index()].fin = true;
        self.last_activity = now;
        self.first_fin_at.get_or_insert(now);
        if established {
            self.forward_fin(side);
        }
        if matches!(self.phase, Phase::Peeking { .. }) {
            // No more of a ClientHello will come: route on what there is.
            self.peek(true);
        }
        self.maybe_complete();
    }

    /// `side` was reset, or reading or writing it failed: the other side is reset too, but
    /// only after every byte already read from `side` has reached it. Until then nothing more
    /// is read from either side (the other side's bytes have nowhere to go), the backlog
    /// from `side` is written out, the driver is asked to report its delivery
    /// ([`FlowAction::AwaitDelivery`]), and then the flow closes with a reset. The idle
    /// timeout bounds the wait. A reset of the other side meanwhile closes at once.
    pub fn handle_reset(&mut self, side: Side, now: Timestamp) {
        let now = self.observe(now);
        if self.is_closed() {
            return;
        }
        if let Some(first) = self.reset_from {
            if first != side {
                self.close(CloseReason::Reset(first), true);
            }
            return;
        }
        let established = matches!(self.phase, Phase::Established { .. });
        if !established || self.dirs[side.index()].bytes == 0 {
            // Nothing of it went anywhere: pass the reset on at once.
            return self.close(CloseReason::Reset(side), true);
        }
        self.reset_from = Some(side);
        self.last_activity = now;
        let other = side.other();
        for s in Side::BOTH {
            let dir = &mut self.dirs[s.index()];
            if !dir.paused && !dir.fin {
                dir.paused = true;
                self.actions.push_back(FlowAction::PauseRead { side: s });
            }
        }
        // Nothing more goes to the reset side.
        self.dirs[other.index()].backlog = 0;
        self.await_delivery();
    }

    /// Everything written to `side` has been received by its peer (after
    /// [`FlowAction::AwaitDelivery`]): the pending reset is passed on.
    pub fn handle_delivered(&mut self, side: Side, now: Timestamp) {
        self.observe(now);
        if let (Some(from), true) = (self.reset_from, self.awaiting_delivery) {
            if side == from.other() && !self.is_closed() {
                self.close(CloseReason::Reset(from), true);
            }
        }
    }

    /// After a reset of `reset_from`: once its backlog is written, ask for delivery.
    fn await_delivery(&mut self) {
        let Some(from) = self.reset_from else { return };
        if !self.awaiting_delivery && self.dirs[from.index()].backlog == 0 {
            self.awaiting_delivery = true;
            self.actions
                .push_back(FlowAction::AwaitDelivery { to: from.other() });
        }
    }

    /// Health checks took `backend` down and `on_backend_down` is `close`: a flow connected
    /// to it closes with a reset. Any other flow ignores it.
    pub fn handle_backend_down(&mut self, backend: BackendId, now: Timestamp) {
        self.observe(now);
        if self.phase == (Phase::Established { backend }) {
            self.close(CloseReason::BackendDown, true);
        }
    }

    /// The driver gives up on the flow (shutdown grace over): close it with a reset.
    pub fn handle_abort(&mut self, now: Timestamp) {
        self.observe(now);
        if !self.is_closed() {
            self.close(CloseReason::Aborted, true);
        }
    }

    /// Time passed: connect, idle and half-close timeouts. Harmless when early.
    pub fn handle_timeout(&mut self, pool: &mut dyn FlowPool, now: Timestamp) {
        let now = self.observe(now);
        match self.phase {
            Phase::Closed => {}
            Phase::Connecting {
                backend, deadline, ..
            } => {
                if now >= deadline {
                    self.last_failure = Some(ConnectFailure::Backend);
                    pool.connect_failed(self.id, backend, ConnectFailure::Backend, now);
                    self.connect_next(pool, now);
                }
            }
            Phase::Peeking { deadline } => {
                if now >= deadline {
                    // `timeouts.client_hello`: no server name, route on what there is.
                    self.peek(true);
                }
            }
            Phase::Routing => {}
            Phase::Established { .. } => {
                if let Some(from) = self.reset_from {
                    // The reset waits for its bytes no longer than the idle timeout.
                    if now >= self.last_activity + self.limits().idle_timeout {
                        self.close(CloseReason::Reset(from), true);
                    }
                } else if now >= self.last_activity + self.limits().idle_timeout {
                    self.close(CloseReason::IdleTimeout, false);
                } else if self.half_close_deadline().is_some_and(|d| now >= d) {
                    self.close(CloseReason::HalfCloseTimeout, false);
                }
            }
        }
    }

    /// The next action, in order. Drain until `None` after every call into the flow.
    #[must_use]
    pub fn poll_action(&mut self) -> Option<FlowAction> {
        self.actions.pop_front()
    }

    /// Whether an action waits for [`Flow::poll_action`].
    #[must_use]
    pub fn has_actions(&self) -> bool {
        !self.actions.is_empty()
    }

    /// When [`Flow::handle_timeout`] next has work; never earlier than the latest `now`.
    /// `None` once closed.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        let t = match self.phase {
            Phase::Closed | Phase::Routing => return None,
            Phase::Peeking { deadline } | Phase::Connecting { deadline, .. } => deadline,
            Phase::Established { .. } => {
                let idle = self.last_activity + self.limits().idle_timeout;
                if self.reset_from.is_some() {
                    idle
                } else {
                    self.half_close_deadline().map_or(idle, |h| h.min(idle))
                }
            }
        };
        Some(t.max(self.last_now))
    }

    /// After [`FlowAction::UpdatePool`]: gives the pool what the flow has for it.
    pub fn update_pool(&mut self, pool: &mut dyn FlowPool, now: Timestamp) {
        let now = self.observe(now);
        if let Some((backend, latency)) = self.latency_report.take() {
            pool.record_latency(self.id, backend, latency, now);
        }
        let [up, down] = self.unreported();
        if up + down > 0 {
            pool.forwarded(self.id, up, down, now);
            self.reported[0] += up;
            self.reported[1] += down;
            self.last_report = now;
        }
        self.report_queued = false;
    }

    /// After the `Close` action: gives the flow's seat and byte counts back to the pool.
    /// Calling it again, or on an open flow, does nothing.
    pub fn release(&mut self, pool: &mut dyn FlowPool, now: Timestamp) {
        let now = self.observe(now);
        if self.is_closed() && !self.released {
            self.released = true;
            self.update_pool(pool, now);
            let c = Side::Client.index();
            let b = Side::Backend.index();
            pool.close_flow(
                self.id,
                self.dirs[c].bytes.saturating_sub(self.reported[c]),
                self.dirs[b].bytes.saturating_sub(self.reported[b]),
                now,
            );
        }
    }

    // ---- internals -----------------------------------------------------------------

    fn half_close_deadline(&self) -> Option<Timestamp> {
        let first = self.first_fin_at?;
        Some(first.max(self.last_activity) + self.limits().half_close_timeout)
    }

    fn connect_next(&mut self, pool: &mut dyn FlowPool, now: Timestamp) {
        if self.tried.len() > self.limits().retries as usize {
            let attempts = self.tried.len() as u32;
            let local = self.last_failure == Some(ConnectFailure::Local);
            return self.close(CloseReason::ConnectFailed { attempts, local }, false);
        }
        match pool.select(self.id, self.client, &self.tried, now) {
            Some((backend, addr)) => {
                self.attempt += 1;
                self.tried.push(backend);
                self.backend_addr = Some(addr);
                self.phase = Phase::Connecting {
                    backend,
                    since: now,
                    deadline: now + self.limits().connect_timeout,
                };
                self.actions.push_back(FlowAction::Connect {
                    backend,
                    addr,
                    attempt: self.attempt,
                });
            }
            None if self.tried.is_empty() => {
                self.close(CloseReason::Rejected(RejectReason::NoBackend), false)
            }
            None => {
                let attempts = self.tried.len() as u32;
                let local = self.last_failure == Some(ConnectFailure::Local);
                self.close(CloseReason::ConnectFailed { attempts, local }, false)
            }
        }
    }

    /// The first bytes from `side` since the backend connection is up: the clock of the
    /// backend's time to first byte starts at the client's first bytes, stops at the backend's.
    fn first_bytes(&mut self, side: Side, now: Timestamp) {
        let Some(since) = self.awaiting_first_byte else {
            return;
        };
        match (side, self.phase) {
            (Side::Client, _) => self.awaiting_first_byte = Some(since.max(now)),
            (Side::Backend, Phase::Established { backend }) => {
                self.awaiting_first_byte = None;
                self.latency_report = Some((backend, now.saturating_duration_since(since)));
                self.actions.push_back(FlowAction::UpdatePool);
            }
            _ => {}
        }
    }

    fn forward_fin(&mut self, from: Side) {
        let dir = &mut self.dirs[from.index()];
        if !dir.fin_forwarded {
            dir.fin_forwarded = true;
            self.actions
                .push_back(FlowAction::Shutdown { side: from.other() });
        }
    }

    fn maybe_complete(&mut self) {
        if matches!(self.phase, Phase::Established { .. })
            && self.dirs.iter().all(|d| d.fin_forwarded && d.backlog == 0)
        {
            self.close(CloseReason::Completed, false);
        }
    }

    fn close(&mut self, reason: CloseReason, reset: bool) {
        self.phase = Phase::Closed;
        self.reason = Some(reason);
        self.early.clear();
        self.early_len = 0;
        self.actions.push_back(FlowAction::Close { reason, reset });
    }
}

#[cfg(test)]
mod tests;
