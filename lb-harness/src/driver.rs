//! The model driver: performs a [`Scenario`] against a [`Balancer`] (its listeners and
//! pools) and its [`Flow`]s the way the tokio driver does (drain every output after every
//! input, queue writes per side, honour pauses, route a flow when it asks, fire due
//! timers), and checks the invariants after every step.

use super::health_model::HealthModel;
use super::hello::{client_stream, ClientStream, Hello};
use super::scenario::{
    client_addr, AdminSel, Amount, AttemptSel, BackendSel, ListenerModel, Op, ProbeSel, Scenario,
    StrayCall, MAX_FLOWS, MAX_OPS,
};
use super::{Mutation, Options, Rule, Stats, Violation};
use bytes::Bytes;
use lb_sans_io::config::{Algorithm, OnBackendDown, PoolConfig};
use lb_sans_io::defect::{Defect, Defects};
use lb_sans_io::flow::{
    CloseReason, ConnectFailure, Flow, FlowAction, FlowPool, Opened, RejectReason, Routed,
};
use lb_sans_io::health::Health;
use lb_sans_io::ids::{BackendId, FlowId, ListenerId, PoolId, ProbeId, Side};
use lb_sans_io::pool::{AdminState, BackendState, Pool, PoolEvent, ProbeRequest, StateCause};
use lb_sans_io::probe::{CheckFailure, ProbeOutcome};
use lb_sans_io::select::{
    selector_for, Maglev, MaglevTable, Selector, SelectorSpec, DEFAULT_TABLE_SIZE,
};
use lb_sans_io::sni::{read_client_hello, ClientHello, MAX_CLIENT_HELLO};
use lb_sans_io::time::Timestamp;
use lb_sans_io::Balancer;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

/// Most outputs one input may produce before the harness calls it unbounded: every early
/// read can become one write, plus a handful of control actions.
const MAX_ACTIONS_PER_INPUT: usize = MAX_OPS + 16;
/// Probe requests the model driver remembers (older ones are forgotten, as if lost).
const MAX_OUTSTANDING_PROBES: usize = 64;
/// Rounds of "sleep until the next flow deadline" the final phase allows before it calls
/// a flow stuck: each round fires at least one flow's timer, which routes a flow reading
/// its ClientHello, fails a connect (at most 17 attempts per flow) or closes the flow.
const FINAL_TIMER_ROUNDS: usize = 20 * MAX_FLOWS;

/// The smallest Maglev table for these weights in which every backend still owns a slot
/// (as in the full-size table the pool builds for at most [`super::MAX_BACKENDS`]
/// backends): a prime of at least 257 that outlasts the turns the heavier backends take
/// before the lightest one's first. Backend `j` takes `⌊(w_j + w_min) / (2 w_min)⌋` turns
/// up to the virtual time `1 / (2 w_min)` of the lightest backend's first turn.
pub(super) fn small_maglev_size(weights: &[u32]) -> usize {
    let w_min = u64::from(weights.iter().copied().min().unwrap_or(1).max(1));
    let turns: u64 = weights
        .iter()
        .map(|&w| (u64::from(w.max(1)) + w_min) / (2 * w_min))
        .sum();
    let want = (turns as usize + 1).max(257);
    (want..)
        .find(|&m| m >= 2 && (2..).take_while(|d| d * d <= m).all(|d| m % d != 0))
        .unwrap_or(DEFAULT_TABLE_SIZE)
}

/// What a call about an unknown flow or backend must not change: open flows; per pool its
/// open flows and, per backend, its active count, state, admin state, connections, connect
/// failures and bytes; per listener its open and admitted clients and refusals by reason.
type Snapshot = (
    usize,
    Vec<(usize, Vec<(u32, BackendState, AdminState, u64, u64, u64)>)>,
    Vec<(usize, u64, Vec<u64>)>,
);

/// The event a flow was given, for the close reasons it may cause.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cause {
    Accept,
    Connected,
    ConnectFailed,
    Read,
    Written,
    Eof,
    Reset(Side),
    /// The driver reported the delivery asked for by `AwaitDelivery`.
    Delivered,
    /// The pool closed the connections of the flow's backend (`on_backend_down: close`).
    BackendDown,
    Abort,
    Timer,
    EarlyTimer,
    Release,
    /// The flow asked to be routed (`FlowAction::Route`) and was given the balancer.
    Route,
}

impl Cause {
    fn may_close(self, reason: CloseReason) -> bool {
        match (self, reason) {
            (Cause::Accept, CloseReason::Rejected(_)) => true,
            (
                Cause::Route,
                CloseReason::Rejected(RejectReason::NoRoute | RejectReason::NoBackend),
            ) => true,
            (Cause::ConnectFailed, CloseReason::ConnectFailed { .. }) => true,
            (
                Cause::Timer | Cause::EarlyTimer,
                CloseReason::ConnectFailed { .. }
                | CloseReason::IdleTimeout
                | CloseReason::HalfCloseTimeout,
            ) => true,
            (Cause::Written | Cause::Eof, CloseReason::Completed) => true,
            // A reset passes on once its bytes are delivered, at the idle timeout, or when
            // the other side resets too (then the first reset is the reason).
            (Cause::Reset(_) | Cause::Delivered | Cause::Timer, CloseReason::Reset(_)) => true,
            (Cause::Abort, CloseReason::Aborted) => true,
            (Cause::BackendDown, CloseReason::BackendDown) => true,
            _ => false,
        }
    }
}

/// Bytes read from one side and not yet seen in a `Write` to the other.
#[derive(Default)]
struct Stream {
    chunks: VecDeque<Bytes>,
    len: usize,
}

impl Stream {
    fn push(&mut self, data: Bytes) {
        self.len += data.len();
        self.chunks.push_back(data);
    }

    /// Takes `data` off the front if it is exactly the next bytes; otherwise says where
    /// it differs.
    fn consume(&mut self, data: &Bytes) -> Result<(), String> {
        if data.len() > self.len {
            return Err(format!(
                "a write of {} bytes, but only {} bytes were read and not yet written",
                data.len(),
                self.len
            ));
        }
        let mut off = 0;
        while off < data.len() {
            let front = self
                .chunks
                .front_mut()
                .expect("len counts the chunks' bytes");
            let n = front.len().min(data.len() - off);
            if front[..n] != data[off..off + n] {
                let i = (0..n).find(|&i| front[i] != data[off + i]).unwrap_or(0);
                return Err(format!(
                    "byte {} of a {}-byte write is {:#04x}, expected {:#04x}",
                    off + i,
                    data.len(),
                    data[off + i],
                    front[i]
                ));
            }
            let _ = front.split_to(n);
            if front.is_empty() {
                self.chunks.pop_front();
            }
            off += n;
        }
        self.len -= data.len();
        Ok(())
    }
}

/// The driver's write half of one socket.
#[derive(Default)]
struct OutQueue {
    /// Bytes queued by `Write` and not yet written.
    queued: usize,
    /// A `Shutdown` was queued.
    shutdown: bool,
}

/// The driver's view of one flow.
struct FlowModel {
    flow: Flow,
    id: FlowId,
    closed: bool,
    /// The listener it came through.
    listener: usize,
    /// The pool its route names, once routed (at accept on a plain listener, at `Route`
    /// on an `sni` one), by the harness's own routing model.
    pool: Option<usize>,
    /// What the client sends first (a ClientHello, or not).
    stream: ClientStream,
    /// Reading the ClientHello: admitted on an `sni` listener, not routed yet.
    peeking: bool,
    /// A `Route` action came.
    routed: bool,
    /// The client's first read as delivered (for [`Mutation::FirstSegmentOnly`]).
    first_read: Option<Bytes>,
    /// The latest `Connect`'s attempt number (0 before any).
    attempt: u32,
    /// The backend being connected to or connected (as the actions said).
    backend: Option<BackendId>,
    connecting: bool,
    /// While connecting: when the attempt times out (`timeouts.connect` after its `Connect`).
    connect_deadline: Timestamp,
    connected: bool,
    tried: Vec<BackendId>,
    /// EOF delivered and accepted, by side.
    eof: [bool; 2],
    /// By source side.
    streams: [Stream; 2],
    /// By destination side.
    out: [OutQueue; 2],
    /// By source side: bytes read and not yet reported written to the other side.
    unreported: [usize; 2],
    /// By side: paused as the actions said.
    paused: [bool; 2],
    /// By side: largest read accepted.
    max_read: [usize; 2],
    /// By side: stream offset of the next read.
    offset: [u64; 2],
    /// By side: bytes the flow accepted.
    bytes: [u64; 2],
    /// Over-reported writes: the backlog no longer equals the model's count.
    tainted_counts: bool,
    /// Reads delivered while paused: the watermark bound no longer holds.
    tainted_watermark: bool,
    /// The `now` of the latest event given to the flow.
    last_now: Timestamp,
    /// When it was accepted.
    accepted_at: Timestamp,
    /// A `ReportLatency` was emitted.
    latency_reported: bool,
    /// By source side: forwarded bytes the flow reported to the pool so far.
    bytes_reported: [u64; 2],
    /// The first side the driver reported reset (its bytes must be delivered first).
    reset_from: Option<Side>,
    /// `AwaitDelivery` asked for this side's delivery and the driver has not reported it.
    delivery: Option<Side>,
    /// The client's index (its address is `client_addr(client)`).
    client: u8,
    /// The pool and backend a `WatchBackend` named.
    watching: Option<(usize, BackendId)>,
}

impl FlowModel {
    fn readable(&self, side: Side) -> bool {
        // After a reset the flow forwards nothing more from either side.
        !self.closed
            && self.reset_from.is_none()
            && !self.eof[side.index()]
            && (side == Side::Client || self.connected)
    }

    /// The next `len` bytes the client sends: its first bytes, then pattern bytes.
    fn client_bytes(&self, len: usize) -> Bytes {
        let off = self.offset[Side::Client.index()] as usize;
        let prefix = &self.stream.prefix;
        if off >= prefix.len() {
            return pattern(self.id, Side::Client, off as u64, len);
        }
        let take = len.min(prefix.len() - off);
        if take == len {
            return prefix.slice(off..off + len);
        }
        let mut out = prefix[off..].to_vec();
        out.extend_from_slice(&pattern(
            self.id,
            Side::Client,
            (off + take) as u64,
            len - take,
        ));
        out.into()
    }
}

/// The harness's model of one pool: its backends as the driver knows them.
struct PoolModel {
    addrs: Vec<SocketAddr>,
    /// Backend states as the pool's events told them.
    states: Vec<BackendState>,
    /// Admin states as the driver set them (its own record, not the pool's).
    admin: Vec<AdminState>,
    /// By backend: the probe the pool waits for (id and deadline), as the driver models it:
    /// set when the pool starts it, cleared by its result, by `NotRun`, or when the pool's
    /// timeout passes its deadline (a failed check).
    probe_running: Vec<Option<(ProbeId, Timestamp)>>,
    /// By backend: the harness's own model of its health and check counts.
    health: Vec<HealthModel>,
    /// `on_backend_down: close`.
    close_on_down: bool,
    retries: u32,
    connect_timeout: Duration,
    /// `least_response_time`: flows report the time to first byte.
    report_latency: bool,
}

/// The balancer as a flow sees it: every call a flow makes goes through here, so the
/// harness sees the latency samples it reports, and some mutations stand in for a balancer
/// that misbehaves.
struct PoolTap<'a> {
    balancer: &'a mut Balancer,
    mutation: Option<Mutation>,
    /// The client's first read, for [`Mutation::FirstSegmentOnly`].
    first_read: Option<Bytes>,
    samples: Vec<(BackendId, std::time::Duration)>,
    /// Forwarded bytes reported: (to backend, to client).
    forwarded: Vec<(u64, u64)>,
}

impl<'a> PoolTap<'a> {
    fn new(balancer: &'a mut Balancer, options: Options) -> PoolTap<'a> {
        PoolTap {
            balancer,
            mutation: options.mutation,
            first_read: None,
            samples: Vec::new(),
            forwarded: Vec::new(),
        }
    }
}

impl FlowPool for PoolTap<'_> {
    fn open_flow(
        &mut self,
        flow: FlowId,
        listener: ListenerId,
        client: std::net::IpAddr,
        now: Timestamp,
    ) -> Result<Opened, RejectReason> {
        if self.mutation == Some(Mutation::LimitOffByOne) {
            if let Some(l) = self.balancer.listener(listener) {
                if l.open + 1 >= l.config().max_connections as usize {
                    return Err(RejectReason::MaxConnections);
                }
            }
        }
        self.balancer.open_flow(flow, listener, client, now)
    }
    fn route(
        &mut self,
        flow: FlowId,
        server_name: Option<&str>,
        now: Timestamp,
    ) -> Result<Routed, RejectReason> {
        match self.mutation {
            Some(Mutation::SniIgnored) => self.balancer.route(flow, None, now),
            Some(Mutation::FirstSegmentOnly) => {
                let first = self.first_read.as_deref().unwrap_or_default();
                let name = match read_client_hello(first) {
                    ClientHello::ServerName(name) => Some(name),
                    _ => None,
                };
                self.balancer.route(flow, name.as_deref(), now)
            }
            _ => self.balancer.route(flow, server_name, now),
        }
    }
    fn select(
        &mut self,
        flow: FlowId,
        client: std::net::SocketAddr,
        exclude: &[BackendId],
        now: Timestamp,
    ) -> Option<(BackendId, std::net::SocketAddr)> {
        self.balancer.select(flow, client, exclude, now)
    }
    fn connect_succeeded(&mut self, flow: FlowId, backend: BackendId, now: Timestamp) {
        self.balancer.connect_succeeded(flow, backend, now)
    }
    fn connect_failed(
        &mut self,
        flow: FlowId,
        backend: BackendId,
        failure: ConnectFailure,
        now: Timestamp,
    ) {
        let failure = match self.mutation {
            Some(Mutation::NoPassiveHealth) => ConnectFailure::Local,
            _ => failure,
        };
        self.balancer.connect_failed(flow, backend, failure, now)
    }
    fn record_latency(
        &mut self,
        flow: FlowId,
        backend: BackendId,
        sample: std::time::Duration,
        now: Timestamp,
    ) {
        let backend = match self.mutation {
            Some(Mutation::LatencyWrongBackend) => {
                let n = self
                    .balancer
                    .flow_route(flow)
                    .and_then(|(_, pool)| self.balancer.pool(pool?))
                    .map_or(1, |p| p.backends().len());
                BackendId(((backend.index() + 1) % n.max(1)) as u32)
            }
            _ => backend,
        };
        self.samples.push((backend, sample));
        self.balancer.record_latency(flow, backend, sample, now)
    }
    fn forwarded(&mut self, flow: FlowId, to_backend: u64, to_client: u64, now: Timestamp) {
        self.forwarded.push((to_backend, to_client));
        self.balancer.forwarded(flow, to_backend, to_client, now)
    }
    fn close_flow(&mut self, flow: FlowId, to_backend: u64, to_client: u64, now: Timestamp) {
        if self.mutation == Some(Mutation::LeakFlow) {
            return;
        }
        self.balancer.close_flow(flow, to_backend, to_client, now)
    }
}

/// Recognisable bytes: client streams are lower case, backend streams upper case, and the
/// letter is the stream offset modulo 26 (so a write from the wrong place is visible).
fn pattern(flow: FlowId, side: Side, offset: u64, len: usize) -> Bytes {
    let base = match side {
        Side::Client => b'a',
        Side::Backend => b'A',
    };
    let shift = flow.0 % 26;
    (0..len as u64)
        .map(|k| base + ((offset + k + shift) % 26) as u8)
        .collect::<Vec<u8>>()
        .into()
}

pub(super) struct Driver {
    balancer: Balancer,
    /// The watermarks every flow gets.
    high_watermark: usize,
    low_watermark: usize,
    /// `timeouts.client_hello`.
    client_hello_timeout: Duration,
    /// `health_check.timeout`: the pool fails a probe this long after it started.
    check_timeout: Duration,
    /// Listener `l` is `ListenerId(l)`.
    listeners: Vec<ListenerModel>,
    /// Pool `p` is `PoolId(p)`.
    pools: Vec<PoolModel>,
    /// Backends the pool said to close the connections of, not yet told to the flows.
    pending_down: Vec<(usize, BackendId)>,
    /// A backend health just took from up to down (with `close`): its `CloseConnections`
    /// must come next.
    last_down_by_health: Option<(usize, BackendId)>,
    flows: Vec<FlowModel>,
    next_flow: u64,
    now: Timestamp,
    step: usize,
    /// `health_check.rise` and `fall`, as the health model applies them.
    rise: u32,
    fall: u32,
    /// Pool events drained now come from an admin change (and must say so).
    in_admin_op: bool,
    probes: VecDeque<(usize, ProbeRequest)>,
    options: Options,
    /// A write held back by [`Mutation::SwapWrites`].
    held: Option<FlowAction>,
    stats: Stats,
}

/// Pool `p`'s selector as the harness builds it.
fn selector(p: &PoolConfig, options: Options) -> Box<dyn Selector> {
    let names: Vec<String> = p.backends.iter().map(|b| b.name.clone()).collect();
    let weights: Vec<u32> = p.backends.iter().map(|b| b.weight).collect();
    match options.selector {
        Some(make) => make(p.backends.len()),
        // The same algorithm with a small table: a 65,537-slot table costs milliseconds to
        // build, most of a run's time.
        None if p.algorithm == Algorithm::Hash => Box::new(Maglev::new(MaglevTable::build(
            &names,
            &weights,
            small_maglev_size(&weights),
        ))),
        None => selector_for(
            p.algorithm,
            &SelectorSpec {
                names: &names,
                weights: &weights,
            },
        ),
    }
}

impl Driver {
    pub(super) fn new(scenario: &Scenario, options: Options) -> Driver {
        let built = scenario.config.build();
        let config = &built.config;
        let seed = scenario.config.seed;
        let mut balancer = Balancer::new_with_selectors(
            config,
            &built.topology.addrs,
            seed,
            Timestamp::ZERO,
            &|p: &PoolConfig| selector(p, options),
        );
        balancer.set_watermarks(built.high_watermark, built.low_watermark);
        if options.mutation == Some(Mutation::AllowIgnored) {
            balancer.inject(Defects::NONE.with(Defect::AllowIgnored));
        }
        let pools = config
            .pools
            .iter()
            .zip(&built.topology.addrs)
            .map(|(p, addrs)| {
                let n = addrs.len();
                let start_up = p.health_check.start_up;
                let start = if start_up {
                    BackendState::Up
                } else {
                    BackendState::Down
                };
                PoolModel {
                    addrs: addrs.clone(),
                    states: vec![start; n],
                    admin: vec![AdminState::Enabled; n],
                    probe_running: vec![None; n],
                    health: vec![HealthModel::new(start_up); n],
                    close_on_down: p.on_backend_down == OnBackendDown::Close,
                    retries: p.retries,
                    connect_timeout: p.timeouts.connect.0,
                    report_latency: p.algorithm == Algorithm::LeastResponseTime,
                }
            })
            .collect();
        // Every pool of a scenario has the same health check.
        let hc = &config.pools[0].health_check;
        Driver {
            balancer,
            high_watermark: built.high_watermark,
            low_watermark: built.low_watermark,
            client_hello_timeout: config.timeouts.client_hello.0,
            check_timeout: hc.timeout.0,
            listeners: built.topology.listeners,
            pools,
            pending_down: Vec::new(),
            last_down_by_health: None,
            flows: Vec::new(),
            next_flow: 0,
            now: Timestamp::ZERO,
            step: 0,
            rise: hc.rise + u32::from(options.mutation == Some(Mutation::RiseOffByOne)),
            fall: hc.fall + u32::from(options.mutation == Some(Mutation::FallOffByOne)),
            in_admin_op: false,
            probes: VecDeque::new(),
            options,
            held: None,
            stats: Stats::default(),
        }
    }

    fn fail(&self, rule: Rule, detail: impl Into<String>) -> Violation {
        Violation {
            step: self.step,
            rule,
            detail: detail.into(),
        }
    }

    pub(super) fn run(mut self, scenario: &Scenario) -> Result<Stats, Violation> {
        self.drain_pool()?;
        self.check_all()?;
        for (i, op) in scenario.ops.iter().take(MAX_OPS).enumerate() {
            self.step = i;
            self.apply(*op)?;
            self.check_all()?;
        }
        self.step = scenario.ops.len().min(MAX_OPS);
        self.finish()
    }

    fn pick(&self, flow: u8) -> Option<usize> {
        if self.flows.is_empty() {
            None
        } else {
            Some(usize::from(flow) % self.flows.len())
        }
    }

    /// Pool `p` of the balancer.
    fn pool(&self, p: usize) -> &Pool {
        self.balancer
            .pool(PoolId(p as u32))
            .expect("the scenario's pools are never removed")
    }

    /// Backends of every pool.
    fn total_backends(&self) -> usize {
        self.pools.iter().map(|p| p.addrs.len()).sum()
    }

    /// The pool and id of backend `g` numbered across the pools (pool 0's first).
    fn locate(&self, mut g: usize) -> (usize, BackendId) {
        for (p, pm) in self.pools.iter().enumerate() {
            if g < pm.addrs.len() {
                return (p, BackendId(g as u32));
            }
            g -= pm.addrs.len();
        }
        unreachable!("backend index beyond the backends of every pool")
    }

    fn apply(&mut self, op: Op) -> Result<(), Violation> {
        match op {
            Op::Accept { client } => self.accept(client),
            Op::Connected { flow, attempt } => {
                let Some(i) = self.pick(flow) else {
                    return Ok(());
                };
                let a = self.resolve_attempt(i, attempt);
                let m = &mut self.flows[i];
                if !m.closed && m.connecting && a == m.attempt {
                    m.connecting = false;
                    m.connected = true;
                }
                self.call(i, Cause::Connected, |f, p, now| {
                    f.handle_connected(p, a, now)
                })
            }
            Op::ConnectFailed {
                flow,
                attempt,
                local,
            } => {
                let Some(i) = self.pick(flow) else {
                    return Ok(());
                };
                let a = self.resolve_attempt(i, attempt);
                let m = &self.flows[i];
                // The backend a local failure must leave alone, and how it stood before.
                let blameless = match (m.pool, m.backend) {
                    (Some(p), Some(b)) if local && !m.closed && m.connecting && a == m.attempt => {
                        self.pool(p)
                            .backend(b)
                            .map(|v| (p, b, v.state(), v.connect_failures_total))
                    }
                    _ => None,
                };
                let m = &mut self.flows[i];
                if !m.closed && m.connecting && a == m.attempt {
                    if let (Some(p), Some(b), false) = (m.pool, m.backend, local) {
                        // Passive health: a failed check of the backend.
                        self.pools[p].health[b.index()].connect_failed(self.rise, self.fall);
                        self.stats.passive_failures += 1;
                    }
                    let m = &mut self.flows[i];
                    m.connecting = false;
                    m.backend = None;
                }
                let blame_local = self.options.mutation == Some(Mutation::BlameLocal);
                let failure = if local && !blame_local {
                    ConnectFailure::Local
                } else {
                    ConnectFailure::Backend
                };
                self.call(i, Cause::ConnectFailed, |f, p, now| {
                    f.handle_connect_failed(p, a, failure, now)
                })?;
                if let Some((p, b, state, failures)) = blameless {
                    let after = self
                        .pool(p)
                        .backend(b)
                        .map(|v| (v.state(), v.connect_failures_total));
                    if after != Some((state, failures)) {
                        return Err(self.fail(
                            Rule::LocalFailure,
                            format!(
                                "a local connect failure changed backend {} of pool {p} from {:?} to {after:?}",
                                b.0,
                                (state, failures)
                            ),
                        ));
                    }
                }
                Ok(())
            }
            Op::Read {
                flow,
                side,
                len,
                force,
            } => {
                let Some(i) = self.pick(flow) else {
                    return Ok(());
                };
                self.read(i, side.side(), usize::from(len), force)
            }
            Op::Written { flow, side, amount } => {
                let Some(i) = self.pick(flow) else {
                    return Ok(());
                };
                self.written(i, side.side(), amount)
            }
            Op::Eof { flow, side, force } => {
                let Some(i) = self.pick(flow) else {
                    return Ok(());
                };
                self.eof(i, side.side(), force)
            }
            Op::Reset { flow, side } => {
                let Some(i) = self.pick(flow) else {
                    return Ok(());
                };
                let side = side.side();
                let m = &mut self.flows[i];
                let was_open = !m.closed;
                // Bytes of this side already forwarded must reach the other side first:
                // then the flow stays open until they are written and delivered.
                let must_deliver = was_open && m.connected && m.bytes[side.index()] > 0;
                if was_open && m.reset_from.is_none() {
                    m.reset_from = Some(side);
                    if must_deliver {
                        // Bytes towards the reset side go nowhere now: the flow drops them.
                        let other = side.other().index();
                        m.unreported[other] = 0;
                        m.streams[other] = Stream::default();
                    }
                }
                self.call(i, Cause::Reset(side), |f, _, now| f.handle_reset(side, now))?;
                if self.options.mutation == Some(Mutation::EagerReset) && !self.flows[i].closed {
                    let eligible = self.eligible();
                    let close = FlowAction::Close {
                        reason: CloseReason::Reset(side),
                        reset: true,
                    };
                    self.perform(i, Cause::Reset(side), close, false, &eligible)?;
                }
                if must_deliver && self.flows[i].reset_from == Some(side) {
                    return Ok(());
                }
                self.expect_closed(i, was_open, "a reset")
            }
            Op::Abort { flow } => {
                let Some(i) = self.pick(flow) else {
                    return Ok(());
                };
                let was_open = !self.flows[i].closed;
                self.call(i, Cause::Abort, |f, _, now| f.handle_abort(now))?;
                self.expect_closed(i, was_open, "an abort")
            }
            Op::Advance(a) => {
                let to = match a.duration() {
                    Some(d) => self.now + d,
                    None => self.next_deadline().unwrap_or(self.now),
                };
                self.now = self.now.max(to);
                self.fire_due()
            }
            Op::EarlyTimer { flow } => {
                let Some(i) = self.pick(flow) else {
                    return Ok(());
                };
                let due = self.deadline(&self.flows[i]).is_some_and(|t| t <= self.now);
                let state = |m: &FlowModel| (m.closed, m.attempt, m.routed);
                let before = state(&self.flows[i]);
                self.call(i, Cause::EarlyTimer, |f, p, now| f.handle_timeout(p, now))?;
                let m = &self.flows[i];
                if !due && state(m) != before {
                    return Err(self.fail(
                        Rule::Timer,
                        format!("{}: an early handle_timeout changed the flow", m.id),
                    ));
                }
                Ok(())
            }
            Op::PoolEarlyTimer => {
                let due = self.balancer.poll_timeout().is_some_and(|t| t <= self.now);
                self.pool_timeout();
                if !due {
                    if let Some(e) = self.balancer.poll_event() {
                        return Err(self.fail(
                            Rule::Timer,
                            format!("an early handle_timeout of the pools produced {e:?}"),
                        ));
                    }
                }
                self.drain_pool()
            }
            Op::ProbeResult { probe, passed } => {
                let (p, id) = self.resolve_probe(probe);
                if let Some(b) = self.probe_answered(p, id) {
                    self.pools[p].health[b].probe(passed, self.rise, self.fall);
                }
                let outcome = if passed {
                    ProbeOutcome::Passed
                } else {
                    ProbeOutcome::Failed(CheckFailure::Refused)
                };
                if self.options.mutation != Some(Mutation::IgnoreProbeResults) {
                    self.balancer
                        .handle_probe_result(PoolId(p as u32), id, outcome, self.now);
                }
                self.drain_pool()
            }
            Op::ProbeNotRun { probe } => {
                let (p, id) = self.resolve_probe(probe);
                // Neither passed nor failed: the model's health stays as it is.
                let _ = self.probe_answered(p, id);
                let health = |balancer: &Balancer| {
                    balancer
                        .pools()
                        .flat_map(|(_, _, pool)| pool.backends())
                        .map(|b| (b.state(), b.checks_passed, b.checks_failed))
                        .collect::<Vec<_>>()
                };
                let before = health(&self.balancer);
                let outcome = if self.options.mutation == Some(Mutation::BlameLocal) {
                    ProbeOutcome::Failed(CheckFailure::Connect("blamed".into()))
                } else {
                    ProbeOutcome::NotRun("too many open files".into())
                };
                self.balancer
                    .handle_probe_result(PoolId(p as u32), id, outcome, self.now);
                let after = health(&self.balancer);
                if after != before {
                    return Err(self.fail(
                        Rule::LocalFailure,
                        format!("a probe that could not run changed {before:?} to {after:?}"),
                    ));
                }
                self.drain_pool()
            }
            Op::Release { flow } => {
                let Some(i) = self.pick(flow) else {
                    return Ok(());
                };
                self.call(i, Cause::Release, |f, p, now| f.release(p, now))
            }
            Op::Stray {
                call,
                flow,
                backend,
            } => self.stray(call, flow, backend),
            Op::Admin { backend, state } => self.admin_op(backend, state),
        }
    }

    /// The pool and backend id an admin change names (see [`BackendSel`]).
    fn resolve_backend(&self, sel: BackendSel) -> (usize, BackendId) {
        let total = self.total_backends();
        match sel {
            BackendSel::Index(k) => self.locate(usize::from(k) % total),
            BackendSel::Raw(k) if usize::from(k) < total => self.locate(usize::from(k)),
            BackendSel::Raw(k) if self.pools.len() == 1 => (0, BackendId(u32::from(k))),
            BackendSel::Raw(k) => (
                usize::from(k) % (self.pools.len() + 1),
                BackendId(u32::from(k)),
            ),
        }
    }

    /// An operator's admin request: the balancer must accept exactly the configured
    /// backends, change nothing for others, and probe a backend leaving `disabled` at once.
    fn admin_op(&mut self, sel: BackendSel, state: AdminSel) -> Result<(), Violation> {
        let (p, id) = self.resolve_backend(sel);
        let admin = state.state();
        let known = self
            .pools
            .get(p)
            .is_some_and(|pm| id.index() < pm.addrs.len());
        let snapshot = self.snapshot();
        let pool = PoolId(p as u32);
        let result = if self.options.mutation == Some(Mutation::DropAdmin) && known {
            Ok(())
        } else {
            self.balancer.set_admin(pool, id, admin, self.now)
        };
        if !known {
            let problem = match result {
                Ok(()) => Some("accepted".to_string()),
                Err(e) if e.0 != id => Some(format!("refused naming {:?}", e.0)),
                Err(_) => (self.snapshot() != snapshot).then(|| "changed the balancer".into()),
            };
            if let Some(problem) = problem {
                return Err(self.fail(
                    Rule::Admin,
                    format!("set_admin of unknown {id:?} of pool {p} to {admin}: {problem}"),
                ));
            }
            return self.drain_pool();
        }
        if let Err(e) = result {
            return Err(self.fail(
                Rule::Admin,
                format!("set_admin of {id:?} of pool {p} to {admin} refused: {e}"),
            ));
        }
        let i = id.index();
        let was = std::mem::replace(&mut self.pools[p].admin[i], admin);
        if was != admin {
            self.stats.admin_changes += 1;
        }
        if was == AdminState::Disabled && admin != AdminState::Disabled {
            // Not checked while disabled: down until its first check passes.
            self.pools[p].health[i].restart();
        }
        self.in_admin_op = true;
        let probed = self.drain_pool_probes();
        self.in_admin_op = false;
        let probed = probed?;
        let running =
            self.pools[p].probe_running[i].is_some_and(|(_, deadline)| deadline > self.now);
        if was == AdminState::Disabled
            && admin != AdminState::Disabled
            && !running
            && !probed.contains(&(p, id))
        {
            return Err(self.fail(
                Rule::Admin,
                format!(
                    "{id:?} of pool {p} went from disabled to {admin} but was not probed at once"
                ),
            ));
        }
        Ok(())
    }

    fn resolve_attempt(&self, i: usize, a: AttemptSel) -> u32 {
        let current = self.flows[i].attempt;
        match a {
            AttemptSel::Current => current,
            AttemptSel::Previous => current.wrapping_sub(1),
            AttemptSel::Raw(n) => n,
        }
    }

    /// The pool and id of the probe `sel` names (taken off the outstanding ones).
    fn resolve_probe(&mut self, sel: ProbeSel) -> (usize, ProbeId) {
        let at = match sel {
            ProbeSel::Outstanding(k) if !self.probes.is_empty() => {
                Some(usize::from(k) % self.probes.len())
            }
            ProbeSel::ForBackend(b) => {
                let (p, b) = self.locate(usize::from(b) % self.total_backends());
                self.probes
                    .iter()
                    .rposition(|(q, r)| *q == p && r.backend == b)
            }
            _ => None,
        };
        match (at, sel) {
            (Some(at), _) => {
                let (p, r) = self.probes.remove(at).expect("index in range");
                (p, r.id)
            }
            (None, ProbeSel::Raw(n)) => (usize::from(n) % self.pools.len(), ProbeId(u64::from(n))),
            (None, _) => (0, ProbeId(u64::MAX)),
        }
    }

    fn accept(&mut self, client: u8) -> Result<(), Violation> {
        if self.flows.len() >= MAX_FLOWS {
            return Ok(());
        }
        let id = FlowId(self.next_flow);
        self.next_flow += 1;
        let l = usize::from(client) % self.listeners.len();
        let stream = if self.listeners.len() > 1 {
            client_stream(client / 2, id.0)
        } else {
            ClientStream::plain()
        };
        let open = |m: &&FlowModel| !m.closed && m.listener == l;
        let open_before = self.flows.iter().filter(open).count();
        let same_client = self
            .flows
            .iter()
            .filter(open)
            .filter(|m| m.client == client)
            .count();
        let eligible = self.eligible();
        let lm = &self.listeners[l];
        let peeking = lm.routes_by_name();
        let pool = if peeking { None } else { lm.default };
        let mut tap = PoolTap::new(&mut self.balancer, self.options);
        let flow = Flow::accept(
            &mut tap,
            id,
            ListenerId(l as u32),
            client_addr(client),
            None,
            self.now,
        );
        self.flows.push(FlowModel {
            flow,
            id,
            closed: false,
            listener: l,
            pool,
            stream,
            peeking,
            routed: false,
            first_read: None,
            attempt: 0,
            backend: None,
            connecting: false,
            connect_deadline: self.now,
            connected: false,
            tried: Vec::new(),
            eof: [false; 2],
            streams: Default::default(),
            out: Default::default(),
            unreported: [0; 2],
            paused: [false; 2],
            max_read: [0; 2],
            offset: [0; 2],
            bytes: [0; 2],
            tainted_counts: false,
            tainted_watermark: false,
            last_now: self.now,
            accepted_at: self.now,
            latency_reported: false,
            bytes_reported: [0; 2],
            reset_from: None,
            delivery: None,
            client,
            watching: None,
        });
        let i = self.flows.len() - 1;
        self.drain_flow(i, Cause::Accept, &eligible)?;
        // Admission, in the listener's order: `allow`, `max_connections`, `per_client`.
        let lm = &self.listeners[l];
        let expected = if !lm.allows(client) {
            Some(RejectReason::NotAllowed)
        } else if open_before >= lm.max_connections as usize {
            Some(RejectReason::MaxConnections)
        } else if lm
            .per_client_max
            .is_some_and(|max| same_client >= max as usize)
        {
            Some(RejectReason::PerClientLimit)
        } else {
            None
        };
        let f = &self.flows[i].flow;
        let refused = match f.summary().reason {
            Some(CloseReason::Rejected(
                r @ (RejectReason::NotAllowed
                | RejectReason::MaxConnections
                | RejectReason::PerClientLimit),
            )) => Some(r),
            _ => None,
        };
        if refused != expected {
            return Err(self.fail(
                Rule::ConnectionLimit,
                format!(
                    "{id}: client {client} on listener {l} (allowed {}, {open_before} open of {} allowed, {same_client} of its own open of {:?} per client): refused for {:?}, expected {:?}",
                    lm.allows(client),
                    lm.max_connections,
                    lm.per_client_max,
                    refused.map(RejectReason::label),
                    expected.map(RejectReason::label),
                ),
            ));
        }
        if refused.is_some() {
            return Ok(());
        }
        // A plain listener routes at once to its pool; an `sni` one reads first.
        if f.pool().map(PoolId::index) != pool || f.listener() != ListenerId(l as u32) {
            return Err(self.fail(
                Rule::Route,
                format!(
                    "{id}: accepted on listener {l} into pool {:?} (listener {:?}); its route names pool {pool:?}",
                    f.pool(),
                    f.listener()
                ),
            ));
        }
        Ok(())
    }

    fn read(&mut self, i: usize, side: Side, len: usize, force: bool) -> Result<(), Violation> {
        let m = &mut self.flows[i];
        let s = side.index();
        let faithful = m.readable(side) && !m.paused[s];
        let reads_ignore_pause =
            self.options.mutation == Some(Mutation::ReadWhilePaused) && m.readable(side);
        if !faithful && !force && !reads_ignore_pause {
            return Ok(());
        }
        let mut len = len;
        if side == Side::Client && m.peeking && m.stream.hello == Hello::Stalled {
            // A stalled client sends nothing more than its part of a ClientHello.
            let left = m.stream.prefix.len().saturating_sub(m.offset[s] as usize);
            if left == 0 {
                return Ok(());
            }
            len = len.min(left);
        }
        let data = match side {
            Side::Client => m.client_bytes(len),
            Side::Backend => pattern(m.id, side, m.offset[s], len),
        };
        m.offset[s] += len as u64;
        if m.readable(side) && len > 0 {
            if m.paused[s] && !reads_ignore_pause {
                m.tainted_watermark = true;
            }
            if side == Side::Client && m.first_read.is_none() {
                m.first_read = Some(data.clone());
            }
            m.streams[s].push(data.clone());
            m.unreported[s] += len;
            m.bytes[s] += len as u64;
            m.max_read[s] = m.max_read[s].max(len);
        }
        self.call(i, Cause::Read, |f, _, now| f.handle_read(side, data, now))?;
        // A whole ClientHello is judged as soon as it is read.
        let m = &self.flows[i];
        let len = m.stream.prefix.len();
        if !m.closed
            && m.peeking
            && matches!(m.stream.hello, Hello::Whole { .. })
            && m.bytes[Side::Client.index()] >= len as u64
        {
            return Err(self.fail(
                Rule::Route,
                format!(
                    "{}: the whole {len}-byte ClientHello was read ({} bytes in all), but the flow did not ask to be routed",
                    m.id, m.bytes[0]
                ),
            ));
        }
        Ok(())
    }

    fn written(&mut self, i: usize, side: Side, amount: Amount) -> Result<(), Violation> {
        let m = &mut self.flows[i];
        let q = &mut m.out[side.index()];
        let queued = q.queued;
        let n = match amount {
            Amount::All => queued,
            Amount::Some(k) => usize::from(k).min(queued),
            Amount::TooMuch(k) => queued + 1 + usize::from(k),
        };
        if !m.closed {
            if n == 0 {
                return Ok(());
            }
            if n > queued {
                m.tainted_counts = true;
            }
            let done = n.min(queued);
            q.queued -= done;
            let from = side.other().index();
            m.unreported[from] = m.unreported[from].saturating_sub(done);
        }
        self.call(i, Cause::Written, |f, _, now| {
            f.handle_written(side, n, now)
        })
    }

    fn eof(&mut self, i: usize, side: Side, force: bool) -> Result<(), Violation> {
        let m = &mut self.flows[i];
        let s = side.index();
        let faithful = m.readable(side) && !m.paused[s];
        if !faithful && !force {
            return Ok(());
        }
        let accepted = m.readable(side);
        if accepted {
            m.eof[s] = true;
        }
        self.call(i, Cause::Eof, |f, _, now| f.handle_eof(side, now))?;
        let m = &self.flows[i];
        if accepted && side == Side::Client && m.peeking && !m.closed {
            return Err(self.fail(
                Rule::Route,
                format!(
                    "{}: the client's FIN ends its ClientHello, but the flow did not ask to be routed",
                    m.id
                ),
            ));
        }
        Ok(())
    }

    fn expect_closed(&self, i: usize, was_open: bool, what: &str) -> Result<(), Violation> {
        let m = &self.flows[i];
        if was_open && !m.closed {
            return Err(self.fail(Rule::Liveness, format!("{}: still open after {what}", m.id)));
        }
        Ok(())
    }

    fn stray(&mut self, call: StrayCall, flow: u16, backend: u8) -> Result<(), Violation> {
        // Ids from 2^32 up are never issued (the model numbers flows from 0).
        let mut id = FlowId((1 << 32) + u64::from(flow));
        if self.options.mutation == Some(Mutation::TruncateFlowIds) {
            id = FlowId(id.0 & u64::from(u32::MAX));
        }
        let backend = BackendId(u32::from(backend));
        let snapshot = self.snapshot();
        let now = self.now;
        let b = &mut self.balancer;
        let (routed, chose) = match call {
            StrayCall::Select => {
                let routed = b.route(id, Some("api.example.com"), now).ok();
                (routed, b.select(id, client_addr(0), &[], now))
            }
            StrayCall::ConnectSucceeded => {
                b.connect_succeeded(id, backend, now);
                (None, None)
            }
            StrayCall::ConnectFailed => {
                b.connect_failed(id, backend, ConnectFailure::Backend, now);
                (None, None)
            }
            StrayCall::CloseFlow => {
                b.close_flow(id, 1, 1, now);
                (None, None)
            }
        };
        if routed.is_some() || chose.is_some() || self.snapshot() != snapshot {
            return Err(self.fail(
                Rule::UnknownFlow,
                format!(
                    "{call:?} for unknown {id} and {backend:?} changed the balancer (routed {routed:?}, chose {chose:?})"
                ),
            ));
        }
        self.drain_pool()
    }

    fn snapshot(&self) -> Snapshot {
        let pools = self
            .balancer
            .pools()
            .map(|(_, _, pool)| {
                let backends = pool
                    .backends()
                    .iter()
                    .map(|b| {
                        (
                            b.active,
                            b.state(),
                            b.admin(),
                            b.connections_total,
                            b.connect_failures_total,
                            b.bytes_to_backend,
                        )
                    })
                    .collect();
                (pool.open_flows(), backends)
            })
            .collect();
        let listeners = self
            .balancer
            .listeners()
            .iter()
            .map(|l| {
                let rejected = RejectReason::ALL.iter().map(|&r| l.rejected(r)).collect();
                (l.open, l.total, rejected)
            })
            .collect();
        (self.balancer.open_flows(), pools, listeners)
    }

    /// Which backends of each pool a new connect could go to now: healthy by the pool,
    /// enabled by the driver's own record of admin events, and under the limit.
    fn eligible(&self) -> Vec<Vec<bool>> {
        self.pools
            .iter()
            .enumerate()
            .map(|(p, pm)| {
                self.pool(p)
                    .backends()
                    .iter()
                    .zip(&pm.admin)
                    .map(|(b, &admin)| {
                        b.health() == Health::Up
                            && admin == AdminState::Enabled
                            && b.max_connections.is_none_or(|m| b.active < m)
                    })
                    .collect()
            })
            .collect()
    }

    /// Gives flow `i` one event, then drains its actions.
    fn call(
        &mut self,
        i: usize,
        cause: Cause,
        event: impl FnOnce(&mut Flow, &mut dyn FlowPool, Timestamp),
    ) -> Result<(), Violation> {
        let eligible = self.eligible();
        let now = self.now;
        let m = &self.flows[i];
        let timer = matches!(cause, Cause::Timer | Cause::EarlyTimer);
        if timer && !m.closed && m.connecting && now >= m.connect_deadline {
            if let (Some(p), Some(b)) = (m.pool, m.backend) {
                // The connect timed out: a failed check of the backend (passive health).
                self.pools[p].health[b.index()].connect_failed(self.rise, self.fall);
                self.stats.passive_failures += 1;
            }
        }
        let m = &mut self.flows[i];
        m.last_now = m.last_now.max(now);
        let mut tap = PoolTap::new(&mut self.balancer, self.options);
        event(&mut m.flow, &mut tap, now);
        // Samples given during an event (the connect time, when the backend connects):
        // for the backend the flow connected to, and no longer than the flow.
        let samples = tap.samples;
        let m = &self.flows[i];
        let age = now.saturating_duration_since(m.accepted_at);
        if let Some((backend, latency)) = samples
            .into_iter()
            .find(|&(b, latency)| !m.connected || m.backend != Some(b) || latency > age)
        {
            return Err(self.fail(
                Rule::Latency,
                format!(
                    "{}: a latency sample of {latency:?} for {backend:?} on {cause:?}; the flow is on {:?} (connected {}) and {age:?} old",
                    m.id, m.backend, m.connected
                ),
            ));
        }
        self.drain_flow(i, cause, &eligible)?;
        // A faithful driver whose peers acknowledge at once reports the delivery asked for.
        while let Some(to) = self.flows[i].delivery.take() {
            let now = self.now;
            self.flows[i].flow.handle_delivered(to, now);
            self.drain_flow(i, Cause::Delivered, &eligible)?;
        }
        // `timeouts.client_hello` over: the flow routes on what it has.
        let m = &self.flows[i];
        if timer && m.peeking && !m.closed && now >= m.accepted_at + self.client_hello_timeout {
            return Err(self.fail(
                Rule::Route,
                format!(
                    "{}: timeouts.client_hello ({:?}) passed, but the flow did not ask to be routed",
                    m.id, self.client_hello_timeout
                ),
            ));
        }
        Ok(())
    }

    fn mutate(&mut self, i: usize, action: FlowAction) -> Vec<FlowAction> {
        let p = self.flows[i].pool.unwrap_or(0);
        match (self.options.mutation, action) {
            (Some(Mutation::DropClose), FlowAction::Close { .. }) => vec![],
            (Some(Mutation::DropResume), FlowAction::ResumeRead { .. }) => vec![],
            (Some(Mutation::RedirectConnect), FlowAction::Connect { attempt, .. }) => {
                // Always the first backend, wherever the pool reserved the slot.
                vec![FlowAction::Connect {
                    backend: BackendId(0),
                    addr: self.pools[p].addrs[0],
                    attempt,
                }]
            }
            (
                Some(Mutation::ConnectOtherPool),
                FlowAction::Connect {
                    backend, attempt, ..
                },
            ) => {
                // The backend of the same index, looked up in the next pool.
                let other = &self.pools[(p + 1) % self.pools.len()].addrs;
                vec![FlowAction::Connect {
                    backend,
                    addr: other[backend.index() % other.len()],
                    attempt,
                }]
            }
            (Some(Mutation::SwapWrites), a @ FlowAction::Write { .. }) => match self.held.take() {
                None => {
                    self.held = Some(a);
                    vec![]
                }
                Some(first) => vec![a, first],
            },
            (Some(Mutation::DoubleClose), a @ FlowAction::Close { .. }) => vec![a.clone(), a],
            (
                Some(Mutation::SwapResetSide),
                FlowAction::Close {
                    reason: CloseReason::Reset(side),
                    reset,
                },
            ) => vec![FlowAction::Close {
                reason: CloseReason::Reset(side.other()),
                reset,
            }],
            (Some(Mutation::SplitWrites), FlowAction::Write { side, data }) => (0..data.len())
                .map(|k| FlowAction::Write {
                    side,
                    data: data.slice(k..k + 1),
                })
                .collect(),
            (_, a) => vec![a],
        }
    }

    /// Drains flow `i`'s actions after an event, checking each against the model. Actions
    /// after a `Route` come from the routing (`Cause::Route`).
    fn drain_flow(
        &mut self,
        i: usize,
        cause: Cause,
        eligible: &[Vec<bool>],
    ) -> Result<(), Violation> {
        let was_closed = self.flows[i].closed;
        let mut cause = cause;
        let mut count = 0;
        while let Some(action) = self.flows[i].flow.poll_action() {
            let route = action == FlowAction::Route;
            // Counted as delivered (after any mutation), so a fault that multiplies outputs
            // is bounded too.
            for action in self.mutate(i, action) {
                count += 1;
                if count > MAX_ACTIONS_PER_INPUT {
                    return Err(self.fail(
                        Rule::Unbounded,
                        format!(
                            "{}: more than {MAX_ACTIONS_PER_INPUT} actions for one {cause:?}",
                            self.flows[i].id
                        ),
                    ));
                }
                self.perform(i, cause, action, was_closed, eligible)?;
            }
            if route {
                cause = Cause::Route;
            }
        }
        self.drain_pool()?;
        self.check_flow(i)
    }

    /// `FlowAction::Route`: checks that it came when the ClientHello was read (or will not
    /// come), hands the flow the balancer, and checks the pool it was given against the
    /// harness's routing model: the exact name, else the longest `*.suffix`, else the
    /// listener's pool, else refused with `no_route`.
    fn route(&mut self, i: usize, cause: Cause) -> Result<(), Violation> {
        let m = &self.flows[i];
        let id = m.id;
        let l = m.listener;
        let lm = &self.listeners[l];
        let len = m.stream.prefix.len();
        let read = m.bytes[Side::Client.index()];
        let whole = read >= len as u64;
        let due = m.accepted_at + self.client_hello_timeout;
        let problem = if !lm.routes_by_name() {
            Some("on a listener without sni".to_string())
        } else if !m.peeking {
            Some("again, or after the flow was routed".to_string())
        } else {
            match (cause, &m.stream.hello) {
                (Cause::Accept, _) => Some("before any byte was read".to_string()),
                (Cause::Read, Hello::Whole { .. }) if !whole => {
                    Some(format!("after {read} of the {len} bytes of a ClientHello"))
                }
                (Cause::Read, Hello::Stalled) => Some(format!(
                    "after {read} bytes of a ClientHello cut at {len} bytes"
                )),
                (Cause::Timer | Cause::EarlyTimer, _) if self.now < due => Some(format!(
                    "by the timer at {}, before timeouts.client_hello at {due}",
                    self.now
                )),
                (Cause::Read | Cause::Eof | Cause::Timer | Cause::EarlyTimer, _) => None,
                (other, _) => Some(format!("on {other:?}")),
            }
        };
        if let Some(p) = problem {
            return Err(self.fail(Rule::Route, format!("{id}: Route {p}")));
        }
        // What the flow must have read: the name of a whole ClientHello, else none.
        let name = match &m.stream.hello {
            Hello::Whole { name } if whole => name.clone(),
            _ => None,
        };
        let by_pattern = name.as_deref().and_then(|n| {
            ListenerModel {
                default: None,
                ..lm.clone()
            }
            .route(Some(n))
        });
        let expected = lm.route(name.as_deref());
        let mut tap = PoolTap::new(&mut self.balancer, self.options);
        tap.first_read = m.first_read.clone();
        let hello = format!("{:?}, {len} bytes, {read} read", m.stream.hello);
        self.flows[i].flow.handle_route(&mut tap, self.now);
        let m = &mut self.flows[i];
        m.peeking = false;
        m.routed = true;
        m.pool = expected;
        let summary = m.flow.summary();
        let refused = summary.reason == Some(CloseReason::Rejected(RejectReason::NoRoute));
        let seen = (
            summary.server_name.clone(),
            m.flow.pool().map(PoolId::index),
            refused,
        );
        let want = (name.clone(), expected, expected.is_none());
        let seated = self.balancer.flow_route(id);
        let seated_ok = expected.is_none()
            || seated == Some((ListenerId(l as u32), expected.map(|p| PoolId(p as u32))));
        if seen != want || !seated_ok {
            return Err(self.fail(
                Rule::Route,
                format!(
                    "{id} on listener {l} ({hello}): the flow read server name {:?}, went to pool {:?} (refused no_route: {}), the balancer seats it at {seated:?}; its route is server name {:?}, pool {:?} (sni {:?}, default {:?})",
                    seen.0, seen.1, seen.2, want.0, want.1, self.listeners[l].sni, self.listeners[l].default
                ),
            ));
        }
        if by_pattern.is_some() {
            self.stats.routed_by_name += 1;
        } else if expected.is_some() {
            self.stats.routed_to_default += 1;
        }
        if matches!(cause, Cause::Timer | Cause::EarlyTimer) {
            self.stats.client_hello_timeouts += 1;
        }
        Ok(())
    }

    fn perform(
        &mut self,
        i: usize,
        cause: Cause,
        action: FlowAction,
        was_closed: bool,
        eligible: &[Vec<bool>],
    ) -> Result<(), Violation> {
        let id = self.flows[i].id;
        if self.flows[i].closed {
            let when = if was_closed {
                "an event for a closed flow produced"
            } else {
                "the Close action was followed by"
            };
            return Err(self.fail(
                Rule::ActionAfterClose,
                format!("{id}: {when} {action:?} ({cause:?})"),
            ));
        }
        match action {
            FlowAction::Connect {
                backend,
                addr,
                attempt,
            } => {
                let m = &self.flows[i];
                // Only to a backend of the pool the flow's route names.
                let Some(p) = m.pool else {
                    return Err(self.fail(
                        Rule::Route,
                        format!(
                            "{id}: connect to {backend:?} at {addr} before the flow was routed"
                        ),
                    ));
                };
                if self.pools[p].addrs.get(backend.index()) != Some(&addr) {
                    if let Some(q) = self.pools.iter().position(|pm| pm.addrs.contains(&addr)) {
                        return Err(self.fail(
                            Rule::Route,
                            format!("{id}: connect to {addr}, a backend of pool {q}, for a flow whose route is pool {p}"),
                        ));
                    }
                }
                let pm = &self.pools[p];
                let b = self.pool(p).backend(backend);
                let problem = if m.connected {
                    Some("after the flow was connected".to_string())
                } else if attempt <= m.attempt {
                    Some(format!("attempt {attempt} after attempt {}", m.attempt))
                } else if m.tried.contains(&backend) {
                    Some(format!("{backend:?} was tried already ({:?})", m.tried))
                } else if m.tried.len() > pm.retries as usize {
                    Some(format!(
                        "attempt {} with retries = {}",
                        m.tried.len() + 1,
                        pm.retries
                    ))
                } else if let Some(b) = b {
                    let admin = pm.admin[backend.index()];
                    if b.addr != addr {
                        Some(format!("address {addr} is not {backend:?}'s {}", b.addr))
                    } else if admin != AdminState::Enabled {
                        Some(format!("{backend:?} was set {admin} by an admin event"))
                    } else if b.state() != BackendState::Up {
                        Some(format!("{backend:?} is {}", b.state()))
                    } else if b.max_connections.is_some_and(|max| b.active > max) {
                        Some(format!(
                            "{backend:?} is over its limit ({} active)",
                            b.active
                        ))
                    } else if !eligible[p].get(backend.index()).copied().unwrap_or(false) {
                        Some(format!("{backend:?} was not eligible when {cause:?} came"))
                    } else {
                        None
                    }
                } else {
                    Some(format!("unknown {backend:?}"))
                };
                if let Some(problem) = problem {
                    return Err(self.fail(
                        Rule::ConnectTarget,
                        format!("{id}: connect to {backend:?} of pool {p}: {problem}"),
                    ));
                }
                let deadline = self.now + pm.connect_timeout;
                let m = &mut self.flows[i];
                m.attempt = attempt;
                m.backend = Some(backend);
                m.connecting = true;
                m.connect_deadline = deadline;
                m.tried.push(backend);
                self.stats.connects += 1;
                if m.tried.len() > 1 {
                    self.stats.retries += 1;
                }
            }
            FlowAction::Write { side, data } => {
                let m = &mut self.flows[i];
                let problem = if data.is_empty() {
                    Some("an empty write".to_string())
                } else if side == Side::Backend && !m.connected {
                    Some("a write to the backend before it connected".to_string())
                } else if m.out[side.index()].shutdown {
                    Some(format!("a write to the {side} after its shutdown"))
                } else {
                    m.streams[side.other().index()].consume(&data).err()
                };
                if let Some(p) = problem {
                    return Err(self.fail(Rule::ByteOrder, format!("{id}: to the {side}: {p}")));
                }
                m.out[side.index()].queued += data.len();
                self.stats.bytes_forwarded += data.len() as u64;
            }
            FlowAction::Shutdown { side } => {
                let m = &mut self.flows[i];
                let from = side.other().index();
                let problem = if side == Side::Backend && !m.connected {
                    Some("before the backend connected".to_string())
                } else if m.out[side.index()].shutdown {
                    Some("twice".to_string())
                } else if !m.eof[from] {
                    Some(format!("before the {} sent FIN", side.other()))
                } else if m.streams[from].len > 0 {
                    Some(format!(
                        "with {} bytes read and not yet written",
                        m.streams[from].len
                    ))
                } else {
                    None
                };
                if let Some(p) = problem {
                    return Err(
                        self.fail(Rule::ByteOrder, format!("{id}: shutdown of the {side} {p}"))
                    );
                }
                m.out[side.index()].shutdown = true;
            }
            FlowAction::PauseRead { side } => {
                let m = &mut self.flows[i];
                if m.paused[side.index()] {
                    return Err(self.fail(
                        Rule::Backpressure,
                        format!("{id}: pause of the paused {side}"),
                    ));
                }
                m.paused[side.index()] = true;
                self.stats.pauses += 1;
            }
            FlowAction::ResumeRead { side } => {
                let m = &mut self.flows[i];
                if !m.paused[side.index()] {
                    return Err(self.fail(
                        Rule::Backpressure,
                        format!("{id}: resume of the unpaused {side}"),
                    ));
                }
                m.paused[side.index()] = false;
            }
            FlowAction::WatchBackend { pool, backend } => {
                let m = &self.flows[i];
                let close_on_down = m.pool.is_some_and(|p| self.pools[p].close_on_down);
                if m.pool != Some(pool.index())
                    || !close_on_down
                    || !m.connected
                    || m.backend != Some(backend)
                {
                    let detail = format!(
                        "{id}: WatchBackend({pool:?}, {backend:?}) with on_backend_down close = {close_on_down}, the flow on pool {:?}, {:?} (connected {})",
                        m.pool, m.backend, m.connected
                    );
                    return Err(self.fail(Rule::PoolEvents, detail));
                }
                self.flows[i].watching = Some((pool.index(), backend));
            }
            FlowAction::AwaitDelivery { to } => {
                let m = &mut self.flows[i];
                let from = to.other();
                let problem = if m.reset_from != Some(from) {
                    Some(format!("without a reset of the {from}"))
                } else if !m.tainted_counts
                    && (m.streams[from.index()].len > 0 || m.out[to.index()].queued > 0)
                {
                    Some(format!(
                        "with bytes of the {from} unwritten ({} not in a write, {} queued)",
                        m.streams[from.index()].len,
                        m.out[to.index()].queued
                    ))
                } else {
                    None
                };
                if let Some(p) = problem {
                    return Err(self.fail(Rule::ByteOrder, format!("{id}: AwaitDelivery {p}")));
                }
                m.delivery = Some(to);
            }
            FlowAction::Route => self.route(i, cause)?,
            FlowAction::UpdatePool => {
                // The driver contract: hand the balancer to the flow. The tap records what
                // the flow tells it, so the sample itself can be checked.
                let mut tap = PoolTap::new(&mut self.balancer, self.options);
                self.flows[i].flow.update_pool(&mut tap, self.now);
                let samples = tap.samples;
                let forwarded = tap.forwarded;
                let m = &mut self.flows[i];
                // Bytes: only what the flow wrote on, never more than once.
                for (k, &(to_backend, to_client)) in forwarded.iter().enumerate() {
                    if k > 0 || to_backend + to_client == 0 {
                        return Err(self.fail(
                            Rule::ByteOrder,
                            format!("{id}: bytes report {k} of {to_backend}/{to_client}"),
                        ));
                    }
                    m.bytes_reported[0] += to_backend;
                    m.bytes_reported[1] += to_client;
                }
                for side in 0..2 {
                    let written = m.bytes[side] - m.unreported[side] as u64;
                    if m.bytes_reported[side] > written && !m.tainted_counts {
                        let reported = m.bytes_reported[side];
                        return Err(self.fail(
                            Rule::ByteOrder,
                            format!("{id}: reported {reported} bytes forwarded from side {side}, only {written} written"),
                        ));
                    }
                }
                if samples.is_empty() && !forwarded.is_empty() {
                    return Ok(());
                }
                let m = &mut self.flows[i];
                let report_latency = m.pool.is_some_and(|p| self.pools[p].report_latency);
                let age = self.now.saturating_duration_since(m.accepted_at);
                let problem = match samples.as_slice() {
                    [] => Some("asked for, with nothing to report".to_string()),
                    [_, _, ..] => Some(format!("of {} samples at once", samples.len())),
                    [(backend, latency)] => {
                        let (backend, latency) = (*backend, *latency);
                        if !report_latency {
                            Some("without report_latency".to_string())
                        } else if m.latency_reported {
                            Some("twice".to_string())
                        } else if !m.connected || m.backend != Some(backend) {
                            Some(format!(
                                "for {backend:?}, the flow is on {:?} (connected {})",
                                m.backend, m.connected
                            ))
                        } else if latency > age {
                            Some(format!("{latency:?}, longer than the flow's {age:?}"))
                        } else {
                            None
                        }
                    }
                };
                if let Some(p) = problem {
                    return Err(self.fail(Rule::Latency, format!("{id}: latency report {p}")));
                }
                let m = &mut self.flows[i];
                m.latency_reported = true;
                self.stats.latency_reports += 1;
            }
            FlowAction::Close { reason, reset } => self.close(i, cause, reason, reset, eligible)?,
        }
        Ok(())
    }

    /// `FlowAction::Close`: checks the reason against the event and the model, then
    /// releases the flow.
    fn close(
        &mut self,
        i: usize,
        cause: Cause,
        reason: CloseReason,
        reset: bool,
        eligible: &[Vec<bool>],
    ) -> Result<(), Violation> {
        let m = &self.flows[i];
        let id = m.id;
        let tainted = m.tainted_counts;
        // A reset is passed on only once the bytes read from the reset side were written to
        // the other side and delivered there; or at the idle timeout; or at once when the
        // other side resets too, or nothing of it was forwarded.
        let reset_early = match (cause, reason) {
            (Cause::Timer | Cause::EarlyTimer, _) => false,
            (Cause::Reset(s), CloseReason::Reset(from)) if s != from => false,
            (Cause::Delivered, CloseReason::Reset(from)) => {
                !tainted
                    && (m.streams[from.index()].len > 0 || m.out[from.other().index()].queued > 0)
            }
            (_, CloseReason::Reset(from)) => m.connected && m.bytes[from.index()] > 0,
            _ => false,
        };
        // The reset passed on is the first one the driver reported.
        let reset_side = match cause {
            Cause::Reset(s) => Some(m.reset_from.unwrap_or(s)),
            _ => m.reset_from,
        };
        let wrong_side = matches!(reason, CloseReason::Reset(r) if Some(r) != reset_side);
        // The pool whose backends the flow could have had.
        let mine: &[bool] = m.pool.map_or(&[], |p| &eligible[p]);
        let retries = m.pool.map_or(0, |p| self.pools[p].retries);
        let problem = if reset_early {
            Some(format!(
                "{reason:?} passed on with bytes of the reset side not yet written"
            ))
        } else if wrong_side {
            Some(format!(
                "{reason:?} when the {} was reset first",
                reset_side.map_or("neither side".to_string(), |s| s.to_string())
            ))
        } else if !cause.may_close(reason) {
            Some(format!("{cause:?} cannot close a flow with {reason:?}"))
        } else if reset
            != matches!(
                reason,
                CloseReason::Reset(_) | CloseReason::Aborted | CloseReason::BackendDown
            )
        {
            Some(format!("reset = {reset} for {reason:?}"))
        } else {
            match reason {
                CloseReason::Completed if !tainted => {
                    let done = m.eof == [true; 2]
                        && m.streams.iter().all(|s| s.len == 0)
                        && m.out.iter().all(|q| q.queued == 0 && q.shutdown);
                    (!done).then(|| {
                        format!(
                            "completed with data outstanding (eof {:?}, unwritten {:?}, queued {:?})",
                            m.eof,
                            [m.streams[0].len, m.streams[1].len],
                            [m.out[0].queued, m.out[1].queued]
                        )
                    })
                }
                CloseReason::ConnectFailed { attempts, .. } => {
                    if attempts as usize != m.tried.len() {
                        Some(format!(
                            "{attempts} attempts reported, {} made",
                            m.tried.len()
                        ))
                    } else if m.tried.len() <= retries as usize {
                        let alt = (0..mine.len())
                            .find(|&b| mine[b] && !m.tried.contains(&BackendId(b as u32)));
                        alt.map(|b| {
                            format!(
                                "gave up with b{b} eligible and untried, {} of {} attempts made",
                                m.tried.len(),
                                retries + 1
                            )
                        })
                    } else {
                        None
                    }
                }
                CloseReason::Rejected(RejectReason::NoBackend) => {
                    let alt = mine.iter().position(|&e| e);
                    if !m.tried.is_empty() {
                        Some("no backend after an attempt".to_string())
                    } else if m.pool.is_none() {
                        Some("no backend before the flow was routed".to_string())
                    } else {
                        alt.map(|b| format!("no backend, but b{b} was eligible"))
                    }
                }
                _ => None,
            }
        };
        if let Some(p) = problem {
            let rule = if reset_early {
                // Bytes lost on their way: the byte-order rule's to report.
                Rule::ByteOrder
            } else if matches!(
                reason,
                CloseReason::ConnectFailed { .. } | CloseReason::Rejected(_)
            ) && cause.may_close(reason)
            {
                Rule::MissedAlternative
            } else {
                Rule::CloseReason
            };
            return Err(self.fail(rule, format!("{id}: {p}")));
        }
        if reason == CloseReason::Rejected(RejectReason::NoRoute) && !(m.routed && m.pool.is_none())
        {
            return Err(self.fail(
                Rule::Route,
                format!(
                    "{id}: refused no_route, but its route is pool {:?} (routed {})",
                    m.pool, m.routed
                ),
            ));
        }
        match reason {
            CloseReason::Completed => self.stats.completed += 1,
            CloseReason::Reset(_) | CloseReason::Aborted | CloseReason::BackendDown => {
                self.stats.reset += 1;
                if reason == CloseReason::BackendDown {
                    self.stats.backend_down_closes += 1;
                }
                if cause == Cause::Delivered {
                    self.stats.delivered_resets += 1;
                }
            }
            CloseReason::IdleTimeout | CloseReason::HalfCloseTimeout => self.stats.timed_out += 1,
            CloseReason::Rejected(r) => {
                self.stats.rejected += 1;
                match r {
                    RejectReason::PerClientLimit => self.stats.per_client_rejections += 1,
                    RejectReason::NotAllowed => self.stats.not_allowed += 1,
                    RejectReason::NoRoute => self.stats.no_route += 1,
                    _ => {}
                }
            }
            CloseReason::ConnectFailed { .. } => self.stats.connect_failed += 1,
        }
        let m = &mut self.flows[i];
        m.closed = true;
        m.connecting = false;
        m.peeking = false;
        m.backend = None;
        // The driver contract: release after Close.
        let mut tap = PoolTap::new(&mut self.balancer, self.options);
        m.flow.release(&mut tap, self.now);
        Ok(())
    }

    /// Drains the balancer's events and probes (after every input, as drivers do).
    fn drain_pool(&mut self) -> Result<(), Violation> {
        self.drain_pool_probes().map(|_| ())
    }

    /// [`Driver::drain_pool`], returning the backends probed (pool and id).
    fn drain_pool_probes(&mut self) -> Result<Vec<(usize, BackendId)>, Violation> {
        let total = self.total_backends();
        let mut count = 0;
        while let Some((pool, event)) = self.balancer.poll_event() {
            let p = pool.index();
            let (backend, from, to, cause) = match event {
                PoolEvent::BackendStateChanged {
                    backend,
                    from,
                    to,
                    cause,
                } => (backend, from, to, cause),
                // The harness configures no `discover`.
                PoolEvent::Discovery(_) | PoolEvent::Discovered(_) => {
                    return Err(self.fail(
                        Rule::PoolEvents,
                        format!("{event:?} from {pool:?}, which has no discover"),
                    ));
                }
                PoolEvent::CloseConnections { backend } => {
                    // Only with `close`, only after health took it from up to down.
                    let pm = self.pools.get(p);
                    let state = pm.and_then(|pm| pm.states.get(backend.index()));
                    let ok = pm.is_some_and(|pm| pm.close_on_down)
                        && state == Some(&BackendState::Down)
                        && self.last_down_by_health == Some((p, backend));
                    if !ok {
                        return Err(self.fail(
                            Rule::PoolEvents,
                            format!(
                                "CloseConnections({pool:?}, {backend:?}) with on_backend_down close = {:?}, state {state:?}",
                                pm.map(|pm| pm.close_on_down),
                            ),
                        ));
                    }
                    self.last_down_by_health = None;
                    self.pending_down.push((p, backend));
                    continue;
                }
            };
            if self.options.mutation == Some(Mutation::DropEvents) {
                continue;
            }
            count += 1;
            let known = self
                .pools
                .get(p)
                .and_then(|pm| pm.states.get(backend.index()))
                .copied();
            if count > 2 * total || known != Some(from) || from == to {
                return Err(self.fail(
                    Rule::PoolEvents,
                    format!("{backend:?} of {pool:?} changed {from} -> {to}, but the events said {known:?} (event {count} of this input)"),
                ));
            }
            if (cause == StateCause::Admin) != self.in_admin_op {
                return Err(self.fail(
                    Rule::Admin,
                    format!(
                        "{backend:?} of {pool:?} changed {from} -> {to} with cause {cause:?} after {}",
                        if self.in_admin_op {
                            "an admin event"
                        } else {
                            "a non-admin event"
                        }
                    ),
                ));
            }
            self.pools[p].states[backend.index()] = to;
            self.stats.state_changes += 1;
            // Health took an enabled backend down: with `close`, its connections go next.
            if let Some((q, b)) = self.last_down_by_health.take() {
                return Err(self.fail(
                    Rule::PoolEvents,
                    format!("{b:?} of pool {q} went down by health with on_backend_down close, but no CloseConnections followed"),
                ));
            }
            let by_health = matches!(cause, StateCause::Probe | StateCause::ClientConnectFailed);
            if self.pools[p].close_on_down
                && by_health
                && from == BackendState::Up
                && to == BackendState::Down
            {
                self.last_down_by_health = Some((p, backend));
            }
        }
        if let Some((q, b)) = self.last_down_by_health.take() {
            return Err(self.fail(
                Rule::PoolEvents,
                format!("{b:?} of pool {q} went down by health with on_backend_down close, but no CloseConnections followed"),
            ));
        }
        // Tell the flows on each backend whose connections must close.
        let now = self.now;
        while let Some((p, backend)) = self.pending_down.pop() {
            let eligible = self.eligible();
            for j in 0..self.flows.len() {
                let m = &self.flows[j];
                if m.closed || !m.connected || m.pool != Some(p) || m.backend != Some(backend) {
                    continue;
                }
                if m.watching != Some((p, backend)) {
                    return Err(self.fail(
                        Rule::PoolEvents,
                        format!(
                            "{}: connected to {backend:?} of pool {p} without asking to watch it",
                            m.id
                        ),
                    ));
                }
                self.flows[j].flow.handle_backend_down(backend, now);
                self.drain_flow(j, Cause::BackendDown, &eligible)?;
                if !self.flows[j].closed {
                    return Err(self.fail(
                        Rule::Liveness,
                        format!("{}: still open after its backend {backend:?} of pool {p} went down (on_backend_down close)", self.flows[j].id),
                    ));
                }
            }
        }
        let mut count = 0;
        let mut probed = Vec::new();
        while let Some((pool, r)) = self.balancer.poll_probe(self.now) {
            count += 1;
            let p = pool.index();
            let ok = self
                .pools
                .get(p)
                .and_then(|pm| pm.addrs.get(r.backend.index()))
                == Some(&r.addr);
            if count > total || !ok {
                return Err(self.fail(
                    Rule::PoolEvents,
                    format!("probe {r:?} of {pool:?} (probe {count} of this input)"),
                ));
            }
            let i = r.backend.index();
            let pm = &mut self.pools[p];
            if pm.admin[i] == AdminState::Disabled {
                return Err(self.fail(
                    Rule::Admin,
                    format!("probe {r:?} of {pool:?} of a backend set disabled"),
                ));
            }
            if pm.probe_running[i].is_some_and(|(_, deadline)| deadline > self.now) {
                return Err(self.fail(
                    Rule::PoolEvents,
                    format!("probe {r:?} of {pool:?} while the previous one still runs"),
                ));
            }
            pm.probe_running[i] = Some((r.id, self.now + self.check_timeout));
            probed.push((p, r.backend));
            if self.probes.len() >= MAX_OUTSTANDING_PROBES {
                self.probes.pop_front();
            }
            self.probes.push_back((p, r));
        }
        Ok(probed)
    }

    /// The probe `id` of pool `p` was answered (or could not run): the backend whose
    /// current probe it is, if any (results of stale or unknown probes are ignored).
    fn probe_answered(&mut self, p: usize, id: ProbeId) -> Option<usize> {
        let running = &mut self.pools.get_mut(p)?.probe_running;
        let i = running
            .iter()
            .position(|r| r.is_some_and(|(probe, _)| probe == id))?;
        running[i] = None;
        Some(i)
    }

    /// `Balancer::handle_timeout` at `now`: every probe past its deadline is a failed check.
    fn pool_timeout(&mut self) {
        let now = self.now;
        for pm in &mut self.pools {
            for i in 0..pm.probe_running.len() {
                if pm.probe_running[i].is_some_and(|(_, deadline)| deadline <= now) {
                    pm.probe_running[i] = None;
                    pm.health[i].probe(false, self.rise, self.fall);
                    self.stats.probe_timeouts += 1;
                }
            }
        }
        self.balancer.handle_timeout(now);
    }

    /// A flow's deadline as the driver reads it (`Flow::poll_timeout`).
    fn deadline(&self, m: &FlowModel) -> Option<Timestamp> {
        let t = m.flow.poll_timeout();
        match self.options.mutation {
            Some(Mutation::EarlyDeadline) => {
                t.map(|t| t.saturating_sub(std::time::Duration::from_millis(1)))
            }
            _ => t,
        }
    }

    fn next_deadline(&self) -> Option<Timestamp> {
        self.flows
            .iter()
            .filter(|m| !m.closed)
            .filter_map(|m| self.deadline(m))
            .chain(self.balancer.poll_timeout())
            .min()
    }

    /// Fires every timer due at `now`, as a driver that just woke up.
    fn fire_due(&mut self) -> Result<(), Violation> {
        let now = self.now;
        if self.balancer.poll_timeout().is_some_and(|t| t <= now) {
            self.pool_timeout();
            self.drain_pool()?;
            if let Some(t) = self.balancer.poll_timeout().filter(|&t| t <= now) {
                return Err(self.fail(
                    Rule::Timer,
                    format!("the pools' deadline {t} is not after {now} once their timeout fired"),
                ));
            }
        }
        for i in 0..self.flows.len() {
            if self.flows[i].closed || self.deadline(&self.flows[i]).is_none_or(|t| t > now) {
                continue;
            }
            self.call(i, Cause::Timer, |f, p, now| f.handle_timeout(p, now))?;
            if let Some(t) = self.deadline(&self.flows[i]).filter(|&t| t <= now) {
                return Err(self.fail(
                    Rule::Timer,
                    format!(
                        "{}: deadline {t} is not after {now} once its timeout fired",
                        self.flows[i].id
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Checks one flow against the model.
    fn check_flow(&self, i: usize) -> Result<(), Violation> {
        let m = &self.flows[i];
        let id = m.id;
        let f = &m.flow;
        if f.is_closed() != m.closed {
            return Err(self.fail(
                Rule::Liveness,
                format!(
                    "{id}: the flow says closed = {}, its actions said {}",
                    f.is_closed(),
                    m.closed
                ),
            ));
        }
        let summary = f.summary();
        if [summary.bytes_from_client, summary.bytes_from_backend] != m.bytes {
            return Err(self.fail(
                Rule::ByteOrder,
                format!(
                    "{id}: summary counts {:?}, read {:?}",
                    [summary.bytes_from_client, summary.bytes_from_backend],
                    m.bytes
                ),
            ));
        }
        match self.deadline(m) {
            None if !m.closed => {
                return Err(self.fail(Rule::Timer, format!("{id}: open without a deadline")))
            }
            Some(t) if m.closed => {
                return Err(self.fail(Rule::Timer, format!("{id}: closed with deadline {t}")))
            }
            Some(t) if t < m.last_now => {
                return Err(self.fail(
                    Rule::Timer,
                    format!("{id}: deadline {t} before the last now {}", m.last_now),
                ))
            }
            _ => {}
        }
        if m.closed {
            return Ok(());
        }
        if m.peeking {
            // Reading its ClientHello: admitted on its listener, in no pool, on no backend.
            let seated = self.balancer.flow_route(id);
            let listener = Some((ListenerId(m.listener as u32), None));
            if f.backend().is_some() || f.pool().is_some() || seated != listener {
                return Err(self.fail(
                    Rule::Route,
                    format!(
                        "{id}: reading its ClientHello, the flow is on pool {:?}, {:?}, and the balancer seats it at {seated:?}",
                        f.pool(),
                        f.backend()
                    ),
                ));
            }
        } else {
            if m.connecting == m.connected {
                return Err(self.fail(
                    Rule::Liveness,
                    format!(
                        "{id}: open but connecting = {}, connected = {}",
                        m.connecting, m.connected
                    ),
                ));
            }
            let seated = m.pool.and_then(|p| self.pool(p).flow_backend(id));
            if f.backend() != m.backend || seated != m.backend {
                return Err(self.fail(
                    Rule::ActiveCount,
                    format!(
                        "{id}: actions say {:?}, the flow {:?}, its pool {:?} ({:?})",
                        m.backend,
                        f.backend(),
                        seated,
                        m.pool
                    ),
                ));
            }
        }
        let low = self.low_watermark;
        for side in Side::BOTH {
            let s = side.index();
            let backlog = f.backlog(side);
            // The client of an `sni` listener is read without pause while its ClientHello
            // is read (a pause would stall it until `timeouts.client_hello`); the reader
            // answers within 16 KiB, so its backlog may reach that, plus one read.
            let peek = side == Side::Client && self.listeners[m.listener].routes_by_name();
            let high = if peek {
                self.high_watermark.max(MAX_CLIENT_HELLO)
            } else {
                self.high_watermark
            };
            if peek && m.peeking && m.paused[s] {
                return Err(self.fail(
                    Rule::Watermark,
                    format!(
                        "{id}: the client paused while its ClientHello is read (backlog {backlog})"
                    ),
                ));
            }
            if f.is_paused(side) != m.paused[s] {
                return Err(self.fail(
                    Rule::Backpressure,
                    format!(
                        "{id}: the flow says the {side} is paused = {}, its actions said {}",
                        f.is_paused(side),
                        m.paused[s]
                    ),
                ));
            }
            if !m.tainted_counts && backlog != m.unreported[s] {
                return Err(self.fail(
                    Rule::Backpressure,
                    format!(
                        "{id}: backlog from the {side} {backlog}, read and unwritten {}",
                        m.unreported[s]
                    ),
                ));
            }
            if m.tainted_watermark || m.reset_from.is_some() {
                continue;
            }
            if backlog >= high + m.max_read[s].max(1) {
                return Err(self.fail(
                    Rule::Watermark,
                    format!("{id}: backlog from the {side} {backlog} over the high watermark {high} by more than one read ({})", m.max_read[s]),
                ));
            }
            // A side that sent FIN is read no more: pausing it is moot.
            let must_pause = backlog >= self.high_watermark && !m.eof[s] && !m.peeking;
            if !m.paused[s] && must_pause {
                return Err(self.fail(
                    Rule::Watermark,
                    format!(
                        "{id}: {side} not paused at backlog {backlog} >= {}",
                        self.high_watermark
                    ),
                ));
            }
            if m.paused[s] && backlog <= low {
                return Err(self.fail(
                    Rule::Watermark,
                    format!("{id}: {side} still paused at backlog {backlog} <= {low}"),
                ));
            }
        }
        // A flow passing on a reset waits for the driver to report its delivery
        // (`AwaitDelivery`); the driver reports it right after this check, and the check
        // after that report finds the flow closed or breaks here.
        let all_done = m.connected
            && m.eof == [true; 2]
            && m.streams.iter().all(|s| s.len == 0)
            && m.out.iter().all(|q| q.queued == 0)
            && m.delivery.is_none();
        if all_done && !m.tainted_counts {
            return Err(self.fail(
                Rule::Liveness,
                format!("{id}: both sides closed and everything written, but the flow is open"),
            ));
        }
        Ok(())
    }

    /// The checks after every step: every flow, and the listeners and pools against the
    /// flows.
    fn check_all(&self) -> Result<(), Violation> {
        for i in 0..self.flows.len() {
            self.check_flow(i)?;
        }
        let open: Vec<&FlowModel> = self.flows.iter().filter(|m| !m.closed).collect();
        if self.balancer.open_flows() != open.len() {
            return Err(self.fail(
                Rule::ActiveCount,
                format!(
                    "the balancer has {} flows open, the driver {}",
                    self.balancer.open_flows(),
                    open.len()
                ),
            ));
        }
        for (l, listener) in self.balancer.listeners().iter().enumerate() {
            let mine = open.iter().filter(|m| m.listener == l).count();
            if listener.open != mine {
                return Err(self.fail(
                    Rule::ActiveCount,
                    format!(
                        "listener {l} counts {} clients open, the driver {mine}",
                        listener.open
                    ),
                ));
            }
        }
        for (p, pm) in self.pools.iter().enumerate() {
            let pool = self.pool(p);
            let seated = open.iter().filter(|m| m.pool == Some(p)).count();
            if pool.open_flows() != seated {
                return Err(self.fail(
                    Rule::ActiveCount,
                    format!(
                        "pool {p} has {} flows open, {seated} open flows are routed to it",
                        pool.open_flows()
                    ),
                ));
            }
            for (i, b) in pool.backends().iter().enumerate() {
                let id = BackendId(i as u32);
                let holding = open
                    .iter()
                    .filter(|m| m.pool == Some(p) && m.backend == Some(id))
                    .count();
                if b.active as usize != holding {
                    return Err(self.fail(
                        Rule::ActiveCount,
                        format!(
                            "{id:?} of pool {p} counts {} active connections, {holding} open flows hold it",
                            b.active
                        ),
                    ));
                }
                if b.max_connections.is_some_and(|max| b.active > max) {
                    return Err(self.fail(
                        Rule::ConnectionLimit,
                        format!("{id:?} of pool {p}: {} active over its limit", b.active),
                    ));
                }
                let admin = pm.admin[i];
                let expected = match (admin, b.health()) {
                    (AdminState::Disabled, _) => BackendState::Disabled,
                    (AdminState::Draining, _) => BackendState::Draining,
                    (AdminState::Enabled, Health::Up) => BackendState::Up,
                    (AdminState::Enabled, Health::Down) => BackendState::Down,
                };
                let eligible = b.health() == Health::Up
                    && admin == AdminState::Enabled
                    && b.max_connections.is_none_or(|m| b.active < m);
                if b.admin() != admin || b.state() != expected || b.eligible() != eligible {
                    return Err(self.fail(
                        Rule::Admin,
                        format!(
                            "{id:?} of pool {p} set {admin} with health {:?}: the pool says admin {}, state {}, eligible {} (expected {expected}, eligible {eligible})",
                            b.health(),
                            b.admin(),
                            b.state(),
                            b.eligible()
                        ),
                    ));
                }
                if pm.states[i] != b.state() {
                    return Err(self.fail(
                        Rule::PoolEvents,
                        format!(
                            "{id:?} of pool {p} is {} but its events said {}",
                            b.state(),
                            pm.states[i]
                        ),
                    ));
                }
                let h = &pm.health[i];
                let seen = (
                    b.health(),
                    b.checks_passed,
                    b.checks_failed,
                    b.connect_failures_total,
                );
                let expected = (
                    h.health(),
                    h.checks_passed,
                    h.checks_failed,
                    h.connect_failures,
                );
                if seen != expected {
                    return Err(self.fail(
                        Rule::Health,
                        format!(
                            "{id:?} of pool {p} (rise {}, fall {}): the pool says {seen:?}, the checks given make it {expected:?} (health, probes passed, probes failed, connect failures)",
                            self.rise, self.fall
                        ),
                    ));
                }
            }
        }
        let idle = self.pools.iter().all(|pm| {
            pm.admin.iter().all(|&a| a == AdminState::Disabled)
                && pm
                    .probe_running
                    .iter()
                    .all(|r| r.is_none_or(|(_, deadline)| deadline <= self.now))
        });
        match self.balancer.poll_timeout() {
            Some(t) if t >= self.now => {}
            None if idle => {}
            t => {
                return Err(self.fail(
                    Rule::Timer,
                    format!(
                        "the pools' deadline {t:?} is before now {} (or absent with probes to run)",
                        self.now
                    ),
                ))
            }
        }
        self.balancer.check_invariants();
        Ok(())
    }

    /// The end: both peers of every flow finish (writes drain, each side sends FIN), then
    /// time runs until every flow has closed; a flow still open after that is stuck.
    fn finish(mut self) -> Result<Stats, Violation> {
        for i in 0..self.flows.len() {
            for _ in 0..4 {
                for side in Side::BOTH {
                    if !self.flows[i].closed && self.flows[i].out[side.index()].queued > 0 {
                        self.written(i, side, Amount::All)?;
                    }
                }
                for side in Side::BOTH {
                    self.eof(i, side, false)?;
                }
            }
        }
        self.check_all()?;
        for _ in 0..FINAL_TIMER_ROUNDS {
            if self.flows.iter().all(|m| m.closed) {
                break;
            }
            let next_flow_deadline = self
                .flows
                .iter()
                .filter(|m| !m.closed)
                .filter_map(|m| self.deadline(m))
                .min();
            if let Some(t) = next_flow_deadline {
                self.now = self.now.max(t);
            }
            self.fire_due()?;
            self.check_all()?;
        }
        if let Some(m) = self.flows.iter().find(|m| !m.closed) {
            return Err(self.fail(
                Rule::Liveness,
                format!(
                    "{} never closed (reading its ClientHello {}, connecting {}, connected {}, eof {:?})",
                    m.id, m.peeking, m.connecting, m.connected, m.eof
                ),
            ));
        }
        let active = self
            .balancer
            .pools()
            .any(|(_, _, p)| p.open_flows() != 0 || p.backends().iter().any(|b| b.active != 0));
        if self.balancer.open_flows() != 0 || active {
            return Err(self.fail(
                Rule::ActiveCount,
                "every flow closed but the balancer still counts some",
            ));
        }
        self.stats.flows = self.flows.len();
        Ok(self.stats)
    }
}

#[cfg(test)]
mod tests {
    use super::small_maglev_size;
    use lb_sans_io::select::MaglevTable;

    #[test]
    fn the_small_maglev_table_leaves_no_backend_without_a_slot() {
        let cases: [&[u32]; 5] = [
            &[1],
            &[1; 16],
            &[
                1, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000,
                1000, 1000,
            ],
            &[
                1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000,
                1000, 1,
            ],
            &[3, 999, 500, 2, 7],
        ];
        for weights in cases {
            let names: Vec<String> = (0..weights.len()).map(|i| format!("b{i}")).collect();
            let size = small_maglev_size(weights);
            assert!((257..8_000).contains(&size), "{size}");
            let shares = MaglevTable::build(&names, weights, size).shares(weights.len());
            assert!(shares.iter().all(|&s| s > 0), "{weights:?}: {shares:?}");
        }
        assert_eq!(small_maglev_size(&[1; 16]), 257);
    }
}
