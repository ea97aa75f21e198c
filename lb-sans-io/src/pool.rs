//! The pool: one set of backends, shared by the flows routed to it. It owns backend state
//! (health, admin state, connection counts, counters), selection, the per-backend
//! connection limits, and the schedule of health probes. Flows reach it (through the
//! [`crate::Balancer`]) only when they pick a backend, learn how their connect went, and
//! close, so the data path never touches it. Admitting clients is the listener's job.

use crate::config::Algorithm;
use crate::config::{BackendConfig, HealthCheckConfig, OnBackendDown, PoolConfig, ProxyProtocol};
use crate::defect::{Defect, Defects};
use crate::discovery::{Discovered, Discovery, DiscoveryNews, DnsAnswer, DnsError, DnsQuery};
use crate::flow::{ConnectFailure, PoolLimits};
use crate::health::{Health, HealthCounter};
use crate::histogram::{Histogram, CONNECT_BUCKETS};
use crate::ids::{BackendId, FlowId, ProbeId};
use crate::probe::{CheckFailure, ProbeOutcome};
use crate::rng::LbRng;
use crate::select::{
    selector_for, BackendView, PeakEwma, SelectCtx, Selector, SelectorSpec, DEFAULT_DECAY,
    WEIGHT_SCALE,
};
use crate::time::Timestamp;
use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

/// A backend's state as users see it (`/status`, logs): the admin state when an operator
/// took the backend out, its health otherwise.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum BackendState {
    /// Enabled and passing its checks: receives new connections.
    Up,
    /// Enabled and failing its checks: no new connections.
    Down,
    /// Drained by an operator ([`AdminState::Draining`]): no new connections, open ones
    /// continue, health checks continue.
    Draining,
    /// Disabled by an operator ([`AdminState::Disabled`]): no new connections, open ones
    /// continue, no health checks.
    Disabled,
}

impl BackendState {
    /// The label used in logs, `/status` and metrics.
    pub fn label(self) -> &'static str {
        match self {
            BackendState::Up => "up",
            BackendState::Down => "down",
            BackendState::Draining => "draining",
            BackendState::Disabled => "disabled",
        }
    }
}

impl fmt::Display for BackendState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// What an operator decided about a backend (`POST /backends/NAME/drain`, `/disable`,
/// `/enable`), independent of its health.
///
/// In every state, connections already open to the backend continue to completion and keep
/// their slot (they are counted in [`Backend::active`] and released as usual), and failed
/// connects of flows that were still connecting count as failed checks (passive health).
/// Only [`AdminState::Enabled`] backends receive new connections ([`Backend::eligible`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AdminState {
    /// Normal operation: receives new connections while up and under its limit.
    #[default]
    Enabled,
    /// No new connections; health probes continue, so the backend's health is current
    /// when it is enabled again.
    Draining,
    /// No new connections, and no new health probes are started. A probe already running
    /// when the backend was disabled still finishes (or times out) and is recorded like any
    /// check. On [`AdminState::Enabled`] (or [`AdminState::Draining`]) again, the backend
    /// was not checked for a while: it is down until its first check passes (which brings
    /// it up at once, as for a new backend), and it is probed at once.
    Disabled,
}

impl AdminState {
    /// The label used in logs and the admin endpoint: `enabled`, `draining`, `disabled`.
    pub fn label(self) -> &'static str {
        match self {
            AdminState::Enabled => "enabled",
            AdminState::Draining => "draining",
            AdminState::Disabled => "disabled",
        }
    }
}

impl fmt::Display for AdminState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// A backend id the pool does not know ([`Pool::set_admin`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnknownBackend(pub BackendId);

impl fmt::Display for UnknownBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "no backend with id {}", self.0 .0)
    }
}

impl std::error::Error for UnknownBackend {}

/// Why a backend's state changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StateCause {
    /// An active health probe passed or failed.
    Probe,
    /// Client connections to it failed (passive health).
    ClientConnectFailed,
    /// An operator drained, disabled or enabled it ([`Pool::set_admin`]).
    Admin,
    /// A reloaded config no longer has it ([`Pool::reconfigure`]): it drains until its
    /// open connections end.
    Reload,
}

pub use crate::flow::RejectReason;

/// Something the driver should know about (and log).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PoolEvent {
    /// A backend's user-visible [`BackendState`] changed. Health changes of a draining or
    /// disabled backend are not reported (its state stays `Draining` / `Disabled`); the
    /// event when it is enabled again goes to its health as of then.
    BackendStateChanged {
        /// The backend.
        backend: BackendId,
        /// Its state before.
        from: BackendState,
        /// Its state now.
        to: BackendState,
        /// What made it change.
        cause: StateCause,
    },
    /// `on_backend_down: close`: health checks took this backend down, so every flow
    /// connected to it must close now. The driver tells them
    /// ([`crate::Flow::handle_backend_down`]); each flow asked to be told
    /// ([`crate::FlowAction::WatchBackend`]).
    CloseConnections {
        /// The backend.
        backend: BackendId,
    },
    /// DNS discovery started working, or failing (said once per change of outcome).
    Discovery(DiscoveryNews),
    /// DNS discovery named a new set of backends, applied like a reload of the pool.
    Discovered(ReloadSummary),
}

pub use crate::probe::ProbeKind;

/// A health probe the driver must run, then report with [`Pool::handle_probe_result`].
/// The driver sets no timeout of its own: the pool fails the probe at its deadline
/// ([`Pool::handle_timeout`]), and the driver then stops it ([`Pool::probe_pending`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeRequest {
    /// Names this probe in its result.
    pub id: ProbeId,
    /// The backend probed.
    pub backend: BackendId,
    /// Where to connect.
    pub addr: SocketAddr,
    /// What to do once connected.
    pub kind: ProbeKind,
}

/// A backend's last completed health check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckRecord {
    /// When its result came.
    pub at: Timestamp,
    /// From the probe's start to its result.
    pub duration: Duration,
    /// Passed, or why it failed.
    pub result: Result<(), CheckFailure>,
}

impl CheckRecord {
    /// Whether the check passed.
    pub fn passed(&self) -> bool {
        self.result.is_ok()
    }
}

/// A probe the pool is waiting for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct InFlight {
    id: ProbeId,
    started: Timestamp,
    deadline: Timestamp,
}

/// Everything the pool knows about one backend.
#[derive(Clone, Debug)]
pub struct Backend {
    /// Unique name from the config.
    pub name: String,
    /// Resolved address.
    pub addr: SocketAddr,
    /// Configured weight.
    pub weight: u32,
    /// Per-backend connection limit.
    pub max_connections: Option<u32>,
    health: HealthCounter,
    admin: AdminState,
    /// Connections held now (connecting or established).
    pub active: u32,
    /// Client connections established to it since start.
    pub connections_total: u64,
    /// Client connects to it that failed or timed out.
    pub connect_failures_total: u64,
    /// Bytes of closed flows, client to backend.
    pub bytes_to_backend: u64,
    /// Bytes of closed flows, backend to client.
    pub bytes_to_client: u64,
    /// Probes that passed.
    pub checks_passed: u64,
    /// Probes that failed.
    pub checks_failed: u64,
    /// The last probe's result, when it came and how long it took.
    pub last_check: Option<CheckRecord>,
    next_probe_at: Timestamp,
    probe_in_flight: Option<InFlight>,
    /// When it last came up, while its slow start lasts.
    ramp_since: Option<Timestamp>,
    /// A reloaded config no longer has it: it keeps its open connections and gets nothing
    /// new (see [`Pool::reconfigure`]).
    removed: bool,
    /// Its last change of [`Backend::state`], if it ever changed.
    pub last_change: Option<StateChange>,
    /// How many times its state changed.
    pub state_changes: u64,
    /// The most connections it held at once.
    pub peak_active: u32,
    /// Since when it is `Down`, while it is.
    down_since: Option<Timestamp>,
    /// Time spent `Down` in earlier periods.
    downtime_before: Duration,
    /// Peak-EWMA of its connect times and times to first byte (whatever the algorithm).
    response_time: Option<PeakEwma>,
    /// Its successful connect times.
    pub connect_times: Histogram,
}

/// A change of a backend's [`BackendState`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StateChange {
    /// When.
    pub at: Timestamp,
    /// The state before.
    pub from: BackendState,
    /// The state after.
    pub to: BackendState,
}

impl Backend {
    /// A backend as configured, never checked, first probed at `first_probe`.
    fn new(
        b: &BackendConfig,
        addr: SocketAddr,
        hc: &HealthCheckConfig,
        now: Timestamp,
        first_probe: Timestamp,
    ) -> Backend {
        Backend {
            name: b.name.clone(),
            addr,
            weight: b.weight,
            max_connections: b.max_connections,
            health: HealthCounter::new(hc.rise, hc.fall, hc.start_up),
            admin: AdminState::Enabled,
            active: 0,
            connections_total: 0,
            connect_failures_total: 0,
            bytes_to_backend: 0,
            bytes_to_client: 0,
            checks_passed: 0,
            checks_failed: 0,
            last_check: None,
            next_probe_at: first_probe,
            probe_in_flight: None,
            ramp_since: None,
            removed: false,
            last_change: None,
            state_changes: 0,
            peak_active: 0,
            down_since: (!hc.start_up).then_some(now),
            downtime_before: Duration::ZERO,
            response_time: None,
            connect_times: Histogram::new(CONNECT_BUCKETS),
        }
    }

    /// Its state went from `from` to `to` at `now`: remembered for `/status`, and the
    /// downtime clock starts or stops.
    fn note_change(&mut self, from: BackendState, to: BackendState, now: Timestamp) {
        if from == to {
            return;
        }
        self.last_change = Some(StateChange { at: now, from, to });
        self.state_changes += 1;
        if to == BackendState::Down {
            self.down_since.get_or_insert(now);
        } else if let Some(since) = self.down_since.take() {
            self.downtime_before += now.saturating_duration_since(since);
        }
    }

    /// The time it has spent `Down` (its checks failing while enabled) up to `now`.
    pub fn downtime(&self, now: Timestamp) -> Duration {
        self.downtime_before
            + self
                .down_since
                .map_or(Duration::ZERO, |s| now.saturating_duration_since(s))
    }

    /// Its response time as seen at `now`: the peak-EWMA of its connect times and times to
    /// first byte (the estimate `least_response_time` uses); `None` before any sample.
    pub fn response_time(&self, now: Timestamp) -> Option<Duration> {
        self.response_time
            .map(|e| Duration::from_nanos(e.value_at(now, DEFAULT_DECAY) as u64))
    }

    /// The state users see: `Draining` / `Disabled` when an operator said so, else `Up` /
    /// `Down` from its health.
    pub fn state(&self) -> BackendState {
        if self.removed {
            return BackendState::Draining;
        }
        match self.admin {
            AdminState::Disabled => BackendState::Disabled,
            AdminState::Draining => BackendState::Draining,
            AdminState::Enabled => match self.health.health() {
                Health::Up => BackendState::Up,
                Health::Down => BackendState::Down,
            },
        }
    }

    /// Its health as far as its checks (active and passive) go, whatever its admin state:
    /// for a disabled backend, the last known one.
    pub fn health(&self) -> Health {
        self.health.health()
    }

    /// What an operator decided about it.
    pub fn admin(&self) -> AdminState {
        self.admin
    }

    fn has_room(&self) -> bool {
        self.max_connections.is_none_or(|m| self.active < m)
    }

    /// Whether it may take a new connection: healthy, [`AdminState::Enabled`] and under its
    /// connection limit. This is what selectors see as [`BackendView::eligible`].
    pub fn eligible(&self) -> bool {
        self.health.health() == Health::Up
            && self.admin == AdminState::Enabled
            && !self.removed
            && self.has_room()
    }

    /// Whether a reloaded config removed it. A removed backend shows as
    /// [`BackendState::Draining`] while connections to it are open; with none left it is
    /// gone for users (`/status`, metrics) but keeps its [`BackendId`].
    pub fn removed(&self) -> bool {
        self.removed
    }

    /// Whether users still see it: configured, or removed with connections open.
    pub fn listed(&self) -> bool {
        !self.removed || self.active > 0
    }

    /// Whether the pool starts health probes of it.
    fn probed(&self) -> bool {
        self.admin != AdminState::Disabled && !self.removed
    }
}

/// Health check settings the pool uses.
#[derive(Clone, Debug)]
struct CheckSettings {
    /// What a probe does (`send` / `expect`, `http` path).
    check: HealthCheckConfig,
    /// The PROXY header version probes send first, if any.
    proxy: Option<ProxyProtocol>,
    interval: Duration,
    timeout: Duration,
}

/// A flow's seat in the pool: which backend it holds, if any.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FlowSlot {
    backend: Option<BackendId>,
    /// When its backend was chosen (the connect's start).
    since: Timestamp,
}

/// The shared pool machine. See the module docs.
pub struct Pool {
    backends: Vec<Backend>,
    algorithm: Algorithm,
    selector: Box<dyn Selector>,
    rng: LbRng,
    checks: CheckSettings,
    slow_start: Option<Duration>,
    views: Vec<BackendView>,
    /// Backends whose slow start is under way (few at once), so a pick updates only them.
    ramping: Vec<usize>,
    /// `on_backend_down`.
    on_backend_down: OnBackendDown,
    limits: PoolLimits,
    flows: BTreeMap<FlowId, FlowSlot>,
    rejected: BTreeMap<RejectReason, u64>,
    /// Connects tried on another backend after one failed.
    retries: u64,
    events: VecDeque<PoolEvent>,
    next_probe_id: u64,
    /// Something made a probe due earlier than [`Pool::poll_timeout`] said before.
    timeout_moved: bool,
    /// Deliberate bugs (the simulation's broken builds); none in the binaries.
    defects: Defects,
    last_now: Timestamp,
    /// The config as given (its static `backends`), and their addresses.
    config: PoolConfig,
    static_addrs: Vec<SocketAddr>,
    /// `discover`, if configured.
    discovery: Option<Discovery>,
}

impl Pool {
    /// A pool for `config`, whose backend `i` is at `addrs[i]` (the driver resolves host
    /// names). `seed` determines every random choice the pool makes.
    ///
    /// # Panics
    /// If `addrs` and `config.backends` differ in length (a driver bug).
    pub fn new(config: &PoolConfig, addrs: &[SocketAddr], seed: u64, now: Timestamp) -> Pool {
        Pool::with_selector(config, addrs, seed, now, Pool::selector_of(config))
    }

    /// [`Pool::new`] with a given selector instead of the configured algorithm's: for
    /// harnesses that want the same algorithm built smaller (a Maglev table of a few hundred
    /// slots instead of 65,537), or a deliberately broken one. A selector may return any
    /// configured backend, eligible or not; the pool takes what it returns. A test seam
    /// (feature `seams`).
    ///
    /// # Panics
    /// If `addrs` and `config.backends` differ in length (a driver bug).
    #[cfg(feature = "seams")]
    pub fn new_with_selector(
        config: &PoolConfig,
        addrs: &[SocketAddr],
        seed: u64,
        now: Timestamp,
        selector: Box<dyn Selector>,
    ) -> Pool {
        Pool::with_selector(config, addrs, seed, now, selector)
    }

    fn with_selector(
        config: &PoolConfig,
        addrs: &[SocketAddr],
        seed: u64,
        now: Timestamp,
        selector: Box<dyn Selector>,
    ) -> Pool {
        assert_eq!(
            addrs.len(),
            config.backends.len(),
            "one address per backend"
        );
        let hc = &config.health_check;
        let mut rng = LbRng::seed(seed);
        let interval = hc.interval.0;
        let backends = config
            .backends
            .iter()
            .zip(addrs)
            // First probes go out at once, spread over a tenth of the interval.
            .map(|(b, &addr)| {
                Backend::new(b, addr, hc, now, now + rng.duration_below(interval / 10))
            })
            .collect::<Vec<_>>();
        let mut pool = Pool {
            algorithm: config.algorithm,
            selector,
            slow_start: config.slow_start.map(|d| d.0).filter(|d| !d.is_zero()),
            views: Vec::with_capacity(backends.len()),
            ramping: Vec::new(),
            backends,
            rng,
            checks: CheckSettings {
                check: hc.clone(),
                proxy: config.proxy_protocol,
                interval,
                timeout: hc.timeout.0,
            },
            on_backend_down: config.on_backend_down,
            limits: PoolLimits::from_pool(config),
            flows: BTreeMap::new(),
            rejected: BTreeMap::new(),
            retries: 0,
            events: VecDeque::new(),
            next_probe_id: 0,
            timeout_moved: true,
            defects: Defects::NONE,
            last_now: now,
            config: config.clone(),
            static_addrs: addrs.to_vec(),
            discovery: config
                .discover
                .as_ref()
                .and_then(|d| Discovery::new(d, now)),
        };
        for i in 0..pool.backends.len() {
            let view = pool.view_of(i, now);
            pool.views.push(view);
        }
        pool
    }

    /// [`Pool::new`]'s selector: for `hash`, Maglev's table over the backends sorted by
    /// name (see [`reload`]), so that the order they are listed in does not matter.
    fn selector_of(config: &PoolConfig) -> Box<dyn Selector> {
        let names: Vec<String> = config.backends.iter().map(|b| b.name.clone()).collect();
        let weights: Vec<u32> = config.backends.iter().map(|b| b.weight).collect();
        if config.algorithm == Algorithm::Hash {
            let mut order: Vec<usize> = (0..names.len()).collect();
            order.sort_by(|&a, &b| names[a].cmp(&names[b]));
            let sorted: Vec<String> = order.iter().map(|&i| names[i].clone()).collect();
            let w: Vec<u32> = order.iter().map(|&i| weights[i]).collect();
            let ids: Vec<u32> = order.iter().map(|&i| i as u32).collect();
            let table = crate::select::MaglevTable::build(
                &sorted,
                &w,
                crate::select::MaglevTable::size_for(sorted.len()),
            );
            return Box::new(crate::select::Maglev::new(table.with_ids(&ids)));
        }
        selector_for(
            config.algorithm,
            &SelectorSpec {
                names: &names,
                weights: &weights,
            },
        )
    }

    /// Gives the pool deliberate bugs, for the simulation's broken builds.
    #[cfg(feature = "seams")]
    pub fn inject(&mut self, defects: Defects) {
        self.defects = defects;
    }

    /// What selectors see of backend `i` at `now`.
    fn view_of(&self, i: usize, now: Timestamp) -> BackendView {
        let b = &self.backends[i];
        let full = b.weight.max(1) * WEIGHT_SCALE;
        let weight = match (self.slow_start, b.ramp_since) {
            (Some(ramp), Some(since)) => {
                slow_start_weight(full, now.saturating_duration_since(since), ramp)
            }
            _ => full,
        };
        BackendView {
            weight,
            active: b.active,
            eligible: b.eligible(),
        }
    }

    fn refresh(&mut self, i: usize) {
        let now = self.last_now;
        self.views[i] = self.view_of(i, now);
    }

    /// Brings slow-starting backends' weights up to date; ends ramps that are over.
    fn advance_ramps(&mut self, now: Timestamp) {
        let Some(ramp) = self.slow_start else {
            return;
        };
        let mut k = 0;
        while k < self.ramping.len() {
            let i = self.ramping[k];
            if self.backends[i]
                .ramp_since
                .is_none_or(|since| now.saturating_duration_since(since) >= ramp)
            {
                self.backends[i].ramp_since = None;
                self.ramping.swap_remove(k);
            } else {
                k += 1;
            }
            self.views[i] = self.view_of(i, now);
        }
    }

    // ---- getters -------------------------------------------------------------------

    /// All backends, indexed by [`BackendId`].
    pub fn backends(&self) -> &[Backend] {
        &self.backends
    }

    /// One backend; `None` for an id the pool does not know.
    pub fn backend(&self, id: BackendId) -> Option<&Backend> {
        self.backends.get(id.index())
    }

    /// The configured backend with this name (names are unique), for the admin endpoint.
    /// Backends a reload removed are not found.
    pub fn backend_by_name(&self, name: &str) -> Option<BackendId> {
        self.backends
            .iter()
            .position(|b| b.name == name && !b.removed)
            .map(|i| BackendId(i as u32))
    }

    /// The selection algorithm in use.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The settings the pool gives its flows (from the config, and kept up to date by
    /// [`Pool::reconfigure`]).
    pub fn limits(&self) -> PoolLimits {
        self.limits
    }

    /// Connects tried on another backend after one failed (retries), since start.
    pub fn retries(&self) -> u64 {
        self.retries
    }

    /// Client connections routed to this pool and open now.
    pub fn open_flows(&self) -> usize {
        self.flows.len()
    }

    /// Client connections refused for a reason of this pool's (`no_backend`).
    pub fn rejected(&self, reason: RejectReason) -> u64 {
        self.rejected.get(&reason).copied().unwrap_or(0)
    }

    /// The backend a flow holds now, if any.
    pub fn flow_backend(&self, flow: FlowId) -> Option<BackendId> {
        self.flows.get(&flow).and_then(|s| s.backend)
    }

    // ---- flows ---------------------------------------------------------------------

    fn observe(&mut self, now: Timestamp) -> Timestamp {
        self.last_now = self.last_now.max(now);
        self.last_now
    }

    fn reject(&mut self, reason: RejectReason) {
        *self.rejected.entry(reason).or_insert(0) += 1;
    }

    fn release_slot(&mut self, flow: FlowId, backend: BackendId) {
        if let Some(s) = self.flows.get_mut(&flow) {
            if s.backend == Some(backend) {
                s.backend = None;
                let b = &mut self.backends[backend.index()];
                b.active = b.active.saturating_sub(1);
                self.refresh(backend.index());
            }
        }
    }

    // ---- admin state ---------------------------------------------------------------

    /// Drains, disables or enables a backend (see [`AdminState`] for what each means).
    /// Reports a [`PoolEvent::BackendStateChanged`] with [`StateCause::Admin`] when its
    /// user-visible state changes; setting the state it already has changes nothing.
    /// Connections open to it are untouched.
    ///
    /// Leaving [`AdminState::Disabled`] makes its next probe due at once (unless one is
    /// still running), so its health is confirmed promptly.
    pub fn set_admin(
        &mut self,
        backend: BackendId,
        admin: AdminState,
        now: Timestamp,
    ) -> Result<(), UnknownBackend> {
        let now = self.observe(now);
        let i = backend.index();
        let Some(b) = self.backends.get_mut(i) else {
            return Err(UnknownBackend(backend));
        };
        if b.admin == admin || self.defects.has(Defect::AdminIgnored) {
            return Ok(());
        }
        let before = b.state();
        if b.admin == AdminState::Disabled {
            // Unchecked while disabled: no stale "up" may send it clients before a check.
            let hc = &self.checks.check;
            b.health = HealthCounter::new(hc.rise, hc.fall, false);
            b.next_probe_at = b.next_probe_at.min(now);
            self.timeout_moved = true;
        }
        b.admin = admin;
        self.push_change(backend, before, StateCause::Admin);
        Ok(())
    }

    /// Sets `backend`'s weight (1..=1000; the caller checks the range) until the next
    /// reload, which sets the configured one again.
    pub fn set_weight(
        &mut self,
        backend: BackendId,
        weight: u32,
        now: Timestamp,
    ) -> Result<(), UnknownBackend> {
        self.observe(now);
        let i = backend.index();
        let Some(b) = self.backends.get_mut(i) else {
            return Err(UnknownBackend(backend));
        };
        if b.weight == weight || self.defects.has(Defect::WeightIgnored) {
            return Ok(());
        }
        b.weight = weight;
        if self.algorithm == Algorithm::Hash {
            // Maglev's table is built from the weights; the other selectors read them from
            // the views at each pick.
            self.selector = reload::build_selector(self.algorithm, &self.backends, self.defects);
        }
        self.refresh(i);
        Ok(())
    }

    // ---- health probes -------------------------------------------------------------

    /// The next probe to start now, if one is due. Call until `None` after every event.
    /// Disabled backends are not probed.
    #[must_use]
    pub fn poll_probe(&mut self, now: Timestamp) -> Option<ProbeRequest> {
        let now = self.observe(now);
        let interval = self.checks.interval;
        let i = self
            .backends
            .iter()
            .position(|b| b.probed() && b.probe_in_flight.is_none() && b.next_probe_at <= now)?;
        let id = ProbeId(self.next_probe_id);
        self.next_probe_id += 1;
        // Up to a tenth less than the interval, so probes of many backends (and of many
        // load balancers) do not synchronise, and never later than the interval.
        let jitter = self.rng.duration_below(interval / 10);
        let b = &mut self.backends[i];
        b.probe_in_flight = Some(InFlight {
            id,
            started: now,
            deadline: now + self.checks.timeout,
        });
        b.next_probe_at = now + interval.saturating_sub(jitter);
        Some(ProbeRequest {
            id,
            backend: BackendId(i as u32),
            addr: b.addr,
            kind: ProbeKind::from_config(&self.checks.check, b.addr, self.checks.proxy),
        })
    }

    /// Whether the pool still waits for this probe's result. Once it does not (the probe
    /// timed out, or its backend was removed by a reload), the driver stops running it.
    pub fn probe_pending(&self, probe: ProbeId) -> bool {
        self.backends
            .iter()
            .any(|b| b.probe_in_flight.is_some_and(|p| p.id == probe))
    }

    /// A probe finished: the one way a probe's result enters the pool.
    ///
    /// - [`ProbeOutcome::Passed`] and [`ProbeOutcome::Failed`] are a passed or failed check
    ///   (rise / fall), kept with its reason and duration in [`Backend::last_check`].
    /// - [`ProbeOutcome::NotRun`] (this host out of descriptors, memory or ephemeral ports)
    ///   neither passes nor fails: the backend's health is untouched and it is probed
    ///   again at its next interval.
    ///
    /// Results of probes that are no longer current (timed out already, or unknown) are
    /// ignored. The result of a probe that was running when its backend was disabled is
    /// recorded like any other.
    pub fn handle_probe_result(&mut self, probe: ProbeId, outcome: ProbeOutcome, now: Timestamp) {
        let now = self.observe(now);
        let Some(i) = self
            .backends
            .iter()
            .position(|b| b.probe_in_flight.is_some_and(|p| p.id == probe))
        else {
            return;
        };
        let result = match outcome {
            ProbeOutcome::Passed => Ok(()),
            ProbeOutcome::Failed(why) => Err(why),
            ProbeOutcome::NotRun(_) => {
                self.backends[i].probe_in_flight = None;
                return;
            }
        };
        self.record_check(BackendId(i as u32), result, now);
    }

    fn record_check(&mut self, id: BackendId, result: Result<(), CheckFailure>, now: Timestamp) {
        let b = &mut self.backends[id.index()];
        let started = b.probe_in_flight.take().map_or(now, |p| p.started);
        let passed = result.is_ok();
        b.last_check = Some(CheckRecord {
            at: now,
            duration: now.saturating_duration_since(started),
            result,
        });
        let before = b.state();
        let flipped = if passed {
            b.checks_passed += 1;
            let stuck = self.defects.has(Defect::StuckDown)
                && b.health.health() == Health::Down
                && (b.checks_failed > 0 || b.connect_failures_total > 0);
            if stuck {
                None
            } else {
                b.health.record_success()
            }
        } else {
            b.checks_failed += 1;
            b.health.record_failure()
        };
        if flipped.is_some() {
            self.push_change(id, before, StateCause::Probe);
        }
    }

    /// After a health or admin change of `backend`, whose user-visible state was `from`:
    /// starts or ends its slow start, refreshes its view and reports the change, if any.
    /// Slow start begins whenever the state becomes `Up`, whatever the cause (a backend
    /// enabled again after a drain ramps up like one that recovered).
    fn push_change(&mut self, backend: BackendId, from: BackendState, cause: StateCause) {
        let now = self.last_now;
        let b = &mut self.backends[backend.index()];
        let to = b.state();
        if to != BackendState::Up {
            b.ramp_since = None;
            self.ramping.retain(|&i| i != backend.index());
        } else if from != BackendState::Up && self.slow_start.is_some() {
            b.ramp_since = Some(now);
            if !self.ramping.contains(&backend.index()) {
                self.ramping.push(backend.index());
            }
        }
        b.note_change(from, to, now);
        self.refresh(backend.index());
        if from != to {
            self.events.push_back(PoolEvent::BackendStateChanged {
                backend,
                from,
                to,
                cause,
            });
        }
        // Health took an enabled backend down (an operator's drain or disable, or a
        // reload, never closes anything).
        let by_health = matches!(cause, StateCause::Probe | StateCause::ClientConnectFailed);
        if from == BackendState::Up
            && to == BackendState::Down
            && by_health
            && self.on_backend_down == OnBackendDown::Close
            && !self.defects.has(Defect::BackendDownIgnored)
        {
            self.events
                .push_back(PoolEvent::CloseConnections { backend });
        }
    }

    /// Time passed: a probe past its deadline fails with [`CheckFailure::Timeout`]. This
    /// is the only place a probe times out. Harmless when early.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        let now = self.observe(now);
        let timeout = self.checks.timeout;
        for i in 0..self.backends.len() {
            if self.backends[i]
                .probe_in_flight
                .is_some_and(|p| p.deadline <= now)
            {
                self.record_check(
                    BackendId(i as u32),
                    Err(CheckFailure::Timeout(timeout)),
                    now,
                );
            }
        }
    }

    /// When [`Pool::handle_timeout`] or [`Pool::poll_probe`] next has work: the earliest
    /// probe due or probe deadline (disabled backends have no probe due). Never earlier than
    /// the latest `now` seen; `None` when nothing is scheduled (every backend disabled).
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        self.backends
            .iter()
            .filter_map(|b| match b.probe_in_flight {
                Some(p) => Some(p.deadline),
                None => b.probed().then_some(b.next_probe_at),
            })
            .chain(self.discovery.as_ref().and_then(Discovery::poll_timeout))
            .min()
            .map(|t| t.max(self.last_now))
    }

    /// With `hash`: the backend the selector would choose for a new connection from
    /// `client` now, without choosing it (nothing reserved or counted, the pool's generator
    /// untouched). `None` for other algorithms (their turns would move). For tests and the
    /// simulation, which compare instances' tables over many clients.
    pub fn preview_select(
        &mut self,
        client: std::net::IpAddr,
        now: Timestamp,
    ) -> Option<BackendId> {
        if self.algorithm != Algorithm::Hash {
            return None;
        }
        let mut rng = self.rng.clone();
        self.selector.select(SelectCtx {
            backends: &self.views,
            exclude: &[],
            client,
            now,
            rng: &mut rng,
        })
    }

    // ---- DNS discovery ---------------------------------------------------------------

    /// Its DNS discovery, if configured.
    pub fn discovery(&self) -> Option<&Discovery> {
        self.discovery.as_ref()
    }

    /// The DNS question to ask now, if `discover` is configured and one is due. Then
    /// report the result with [`Pool::handle_discovery`]; none is asked meanwhile.
    #[must_use]
    pub fn poll_discovery(&mut self, now: Timestamp) -> Option<DnsQuery> {
        let now = self.observe(now);
        self.discovery.as_mut()?.poll_query(now)
    }

    /// The result of the question [`Pool::poll_discovery`] gave. A set of backends that
    /// differs from the last one is applied like a reload of the pool: backends still
    /// named keep their health, counters and connections; new ones start as at startup
    /// (down until their first check passes, unless `start_up`); ones no longer named drain.
    /// A failure or an empty answer keeps the last set. News for the log come as events.
    pub fn handle_discovery(&mut self, result: Result<DnsAnswer, DnsError>, now: Timestamp) {
        let now = self.observe(now);
        let Some(d) = self.discovery.as_mut() else {
            return;
        };
        let failed = match &result {
            Ok(answer) => crate::discovery::backends_of(d.target(), answer).is_empty(),
            Err(_) => true,
        };
        let (mut apply, news) = d.handle_result(result, now);
        if failed && self.defects.has(Defect::DiscoveryEmptiesOnFailure) && !d.current.is_empty() {
            d.current.clear();
            apply = Some(Vec::new());
        }
        self.timeout_moved = true;
        if let Some(news) = news {
            self.events.push_back(PoolEvent::Discovery(news));
        }
        if apply.is_some() {
            let (config, addrs) = self.merged();
            let summary = self.apply_config(&config, &addrs, now);
            if !summary.added.is_empty() || !summary.removed.is_empty() {
                self.events.push_back(PoolEvent::Discovered(summary));
            }
        }
    }

    /// The static config with the discovered backends added (named `IP:PORT`, after the
    /// static ones; an address listed statically is not added twice), and every address.
    fn merged(&self) -> (PoolConfig, Vec<SocketAddr>) {
        let mut config = self.config.clone();
        let mut addrs = self.static_addrs.clone();
        for &(addr, weight) in self.discovery.iter().flat_map(|d| &d.current) {
            if addrs.contains(&addr) {
                continue;
            }
            config.backends.push(BackendConfig {
                name: addr.to_string(),
                address: crate::config::BackendAddress::Socket(addr),
                weight,
                max_connections: None,
            });
            addrs.push(addr);
        }
        (config, addrs)
    }

    /// The discovered backends now in force (`IP:PORT`, weight).
    pub fn discovered(&self) -> &[Discovered] {
        self.discovery.as_ref().map_or(&[], |d| &d.current)
    }

    /// Whether [`Pool::poll_timeout`] may have moved earlier since the last call (an
    /// admin change or a reload made a probe due sooner): a driver whose timer sleeps
    /// until the old deadline re-arms it. True once after the pool is built. Cheap: call
    /// it after every call into the pool.
    #[must_use]
    pub fn poll_timeout_moved(&mut self) -> bool {
        std::mem::take(&mut self.timeout_moved)
    }

    /// The next thing that happened, for the driver to log. Drain after every call.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<PoolEvent> {
        self.events.pop_front()
    }

    /// Checks the pool's internal bookkeeping; harnesses call it after every step. A test
    /// seam (feature `seams`).
    ///
    /// # Panics
    /// When the counts disagree (a bug in the pool).
    #[cfg(any(test, feature = "seams"))]
    pub fn check_invariants(&self) {
        for (i, b) in self.backends.iter().enumerate() {
            let held = self
                .flows
                .values()
                .filter(|s| s.backend == Some(BackendId(i as u32)))
                .count();
            assert_eq!(b.active as usize, held, "backend {i} active count");
        }
        for (i, v) in self.views.iter().enumerate() {
            let b = &self.backends[i];
            assert_eq!(
                (v.active, v.eligible),
                (b.active, b.eligible()),
                "backend {i} view"
            );
            assert!(
                !v.eligible || (b.admin == AdminState::Enabled && b.state() == BackendState::Up),
                "backend {i} is eligible while {}",
                b.state()
            );
            if b.state() != BackendState::Up {
                assert!(
                    b.ramp_since.is_none(),
                    "backend {i} ramps while {}",
                    b.state()
                );
            }
            assert_eq!(
                b.ramp_since.is_some(),
                self.ramping.contains(&i),
                "backend {i} ramp list"
            );
            assert!(
                !b.removed || (!b.eligible() && b.ramp_since.is_none()),
                "removed backend {i} is eligible or ramping"
            );
        }
    }
}

/// The pool's side of a flow's life: its seat, selection, connect outcomes, latency
/// samples and release. Only the [`crate::Balancer`] calls these, on behalf of a
/// [`crate::Flow`] (drivers hand the balancer to the flow's `handle_*` methods), so every
/// seat a flow takes is given back by the flow.
impl Pool {
    /// A flow was routed to this pool: it takes a seat (no backend yet). An id already
    /// seated is not seated twice.
    pub fn open_flow(&mut self, flow: FlowId, now: Timestamp) {
        self.observe(now);
        self.flows.entry(flow).or_insert(FlowSlot {
            backend: None,
            since: now,
        });
    }

    /// Chooses a backend for a seated flow among those up, under their connection limit
    /// and not in `exclude` (the ones this flow already tried), and reserves a connection
    /// slot on it. `None` when there is none, or the flow has no seat.
    pub fn select(
        &mut self,
        flow: FlowId,
        client: SocketAddr,
        exclude: &[BackendId],
        now: Timestamp,
    ) -> Option<(BackendId, SocketAddr)> {
        let now = self.observe(now);
        let slot = *self.flows.get(&flow)?;
        if let Some(held) = slot.backend {
            // A flow picks again only after its connect failed; release defensively.
            self.release_slot(flow, held);
        }
        self.advance_ramps(now);
        let chosen = self.selector.select(SelectCtx {
            backends: &self.views,
            exclude,
            client: client.ip(),
            now,
            rng: &mut self.rng,
        });
        // A selector naming a backend that does not exist chooses nothing.
        let Some(id) = chosen.filter(|id| id.index() < self.backends.len()) else {
            if exclude.is_empty() {
                self.reject(RejectReason::NoBackend);
            }
            return None;
        };
        if !exclude.is_empty() {
            self.retries += 1;
        }
        let b = &mut self.backends[id.index()];
        b.active += 1;
        b.peak_active = b.peak_active.max(b.active);
        self.refresh(id.index());
        if let Some(s) = self.flows.get_mut(&flow) {
            s.backend = Some(id);
            s.since = now;
        }
        Some((id, self.backends[id.index()].addr))
    }
    /// The flow's connect to `backend` succeeded.
    pub fn connect_succeeded(&mut self, flow: FlowId, backend: BackendId, now: Timestamp) {
        let now = self.observe(now);
        if self.flow_backend(flow) == Some(backend) {
            let since = self.flows.get(&flow).map_or(now, |s| s.since);
            let b = &mut self.backends[backend.index()];
            b.connect_times.record(now.saturating_duration_since(since));
            b.connections_total += 1;
            if b.connections_total == 1 && self.defects.has(Defect::CountersOffByOne) {
                b.connections_total += 1;
            }
        }
    }
    /// The flow's connect to `backend` failed or timed out: releases the slot and, when the
    /// backend is to blame ([`ConnectFailure::Backend`]), counts a failed check against it
    /// (passive health). A local failure (this host out of descriptors or ports) leaves the
    /// backend's health and counters alone: otherwise a load spike that exhausts the
    /// host would mark every healthy backend down.
    pub fn connect_failed(
        &mut self,
        flow: FlowId,
        backend: BackendId,
        failure: ConnectFailure,
        now: Timestamp,
    ) {
        self.observe(now);
        if self.flow_backend(flow) != Some(backend) {
            return;
        }
        self.release_slot(flow, backend);
        if failure == ConnectFailure::Local {
            return;
        }
        let b = &mut self.backends[backend.index()];
        b.connect_failures_total += 1;
        let before = b.state();
        if b.health.record_failure().is_some() {
            self.push_change(backend, before, StateCause::ClientConnectFailed);
        }
    }
    /// A latency sample of `backend`: a connect time or a time to first byte. Feeds the
    /// `least_response_time` algorithm.
    pub fn record_latency(&mut self, backend: BackendId, sample: Duration, now: Timestamp) {
        let now = self.observe(now);
        if let Some(b) = self.backends.get_mut(backend.index()) {
            match &mut b.response_time {
                Some(e) => e.observe(sample, now, DEFAULT_DECAY),
                None => b.response_time = Some(PeakEwma::new(sample, now)),
            }
            self.selector.observe_latency(backend, sample, now);
        }
    }
    /// The flow forwarded these bytes since its last report: they count for its backend
    /// now, not only when it closes.
    pub fn forwarded(&mut self, flow: FlowId, to_backend: u64, to_client: u64, now: Timestamp) {
        self.observe(now);
        if let Some(id) = self.flow_backend(flow) {
            let b = &mut self.backends[id.index()];
            b.bytes_to_backend += to_backend;
            b.bytes_to_client += to_client;
        }
    }

    /// The flow closed: frees its seat and its backend slot and adds its bytes to the
    /// backend's counters. Unknown or already closed flows are ignored.
    pub fn close_flow(
        &mut self,
        flow: FlowId,
        bytes_to_backend: u64,
        bytes_to_client: u64,
        now: Timestamp,
    ) {
        self.observe(now);
        let Some(slot) = self.flows.remove(&flow) else {
            return;
        };
        if let Some(id) = slot.backend {
            let b = &mut self.backends[id.index()];
            b.active = b.active.saturating_sub(1);
            b.bytes_to_backend += bytes_to_backend;
            b.bytes_to_client += bytes_to_client;
            self.refresh(id.index());
        }
    }
}

/// Slow start: a backend's effective weight `full × (10% + 90% × elapsed / ramp)`, reaching
/// `full` when `elapsed ≥ ramp`; never below 1.
pub fn slow_start_weight(full: u32, elapsed: Duration, ramp: Duration) -> u32 {
    if elapsed >= ramp || ramp.is_zero() {
        return full;
    }
    let base = full as u128 / 10;
    let grow = (full as u128 - base) * elapsed.as_nanos() / ramp.as_nanos();
    ((base + grow) as u32).max(1)
}

mod reload;
pub use reload::ReloadSummary;

#[cfg(test)]
mod tests;
