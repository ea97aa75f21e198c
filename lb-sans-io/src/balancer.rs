//! The balancer: the one machine a load balancer's tasks share. It holds the listeners
//! (admission and routing) and the pools (backends, health, selection), knows which
//! listener and pool each open flow belongs to, and applies reloads that add, change and
//! remove both. Flows reach it through [`FlowPool`]; probes, admin actions and reloads
//! through its own methods. It decides; the driver binds what [`Balancer::listening`]
//! says and runs what [`Balancer::poll_probe`] asks.

use crate::config::{Config, ListenerConfig};
use crate::defect::{Defect, Defects};
use crate::discovery::{DnsAnswer, DnsError, DnsQuery};
use crate::flow::{ConnectFailure, FlowLimits, FlowPool, Opened, RejectReason, Routed};
use crate::ids::{BackendId, FlowId, ListenerId, PoolId, ProbeId};
use crate::listener::{Listener, Routes};
use crate::pool::{AdminState, Pool, PoolEvent, ProbeRequest, ReloadSummary, UnknownBackend};
use crate::probe::ProbeOutcome;
use crate::rng::LbRng;
use crate::sni::SniRoutes;
use crate::time::Timestamp;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// A pool and its name.
struct PoolEntry {
    name: String,
    pool: Pool,
    /// A reload removed it: its backends drain, nothing routes to it.
    removed: bool,
}

/// What the balancer knows of an open flow.
#[derive(Clone, Copy, Debug)]
struct FlowEntry {
    listener: ListenerId,
    pool: Option<PoolId>,
    client: IpAddr,
    /// `per_client` counted it on its listener.
    counted: bool,
    /// When it was admitted.
    opened: Timestamp,
}

/// What a reload changed, for the log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BalancerReload {
    /// Pools kept (by name), and what changed in each.
    pub pools: Vec<(String, ReloadSummary)>,
    /// Pools the new config added.
    pub pools_added: Vec<String>,
    /// Pools it removed, with the connections still open to them (they drain).
    pub pools_removed: Vec<(String, usize)>,
    /// Listeners kept (by name; a changed `listen` address is rebound).
    pub listeners_kept: Vec<String>,
    /// Listeners it added.
    pub listeners_added: Vec<String>,
    /// Listeners it removed, with their connections still open (they drain).
    pub listeners_removed: Vec<(String, usize)>,
}

/// A pool's selector built by a test, in place of the configured algorithm's.
#[cfg(feature = "seams")]
pub type MakeSelector<'a> =
    &'a dyn Fn(&crate::config::PoolConfig) -> Box<dyn crate::select::Selector>;

/// Builds one pool: its config, addresses, seed and start time.
type NewPool<'a> =
    dyn FnMut(&crate::config::PoolConfig, &[SocketAddr], u64, Timestamp) -> Pool + 'a;

/// The shared machine. See the module docs.
pub struct Balancer {
    listeners: Vec<Listener>,
    pools: Vec<PoolEntry>,
    flows: BTreeMap<FlowId, FlowEntry>,
    /// Seeds the pools added later.
    rng: LbRng,
    defects: Defects,
    /// Test seam: watermarks every new flow gets.
    watermarks: Option<(usize, usize)>,
    /// The settings handed to flows, one shared copy per listener and pool (the pool
    /// `None` while a flow waits for its ClientHello): a flow holds a pointer, not 168
    /// bytes of its own. Each is checked against the settings computed now, so a reload
    /// or a test seam that changes them is seen at the next flow.
    flow_limits: BTreeMap<(ListenerId, Option<PoolId>), Arc<FlowLimits>>,
}

impl Balancer {
    /// A balancer for `config`, whose pool `p`'s backend `i` is at `addrs[p][i]` (the
    /// driver resolves host names). `seed` determines every random choice.
    ///
    /// # Panics
    /// If `addrs` does not have one address per configured backend (a driver bug).
    pub fn new(config: &Config, addrs: &[Vec<SocketAddr>], seed: u64, now: Timestamp) -> Balancer {
        Balancer::build(config, addrs, seed, now, &mut |c, a, s, n| {
            Pool::new(c, a, s, n)
        })
    }

    /// [`Balancer::new`] with each pool's selector built by `make` (a test seam, feature
    /// `seams`; see [`Pool::new_with_selector`]).
    #[cfg(feature = "seams")]
    pub fn new_with_selectors(
        config: &Config,
        addrs: &[Vec<SocketAddr>],
        seed: u64,
        now: Timestamp,
        make: MakeSelector<'_>,
    ) -> Balancer {
        Balancer::build(config, addrs, seed, now, &mut |c, a, s, n| {
            Pool::new_with_selector(c, a, s, n, make(c))
        })
    }

    fn build(
        config: &Config,
        addrs: &[Vec<SocketAddr>],
        seed: u64,
        now: Timestamp,
        new_pool: &mut NewPool<'_>,
    ) -> Balancer {
        assert_eq!(addrs.len(), config.pools.len(), "addresses for every pool");
        let mut rng = LbRng::seed(seed);
        let mut b = Balancer {
            listeners: Vec::new(),
            pools: Vec::new(),
            flows: BTreeMap::new(),
            rng: LbRng::seed(0),
            defects: Defects::NONE,
            watermarks: None,
            flow_limits: BTreeMap::new(),
        };
        for (p, a) in config.pools.iter().zip(addrs) {
            // The first pool is seeded with the seed itself, so a one-pool balancer makes
            // the choices a lone pool with that seed makes.
            let pool_seed = if b.pools.is_empty() {
                seed
            } else {
                rng.next_u64()
            };
            b.pools.push(PoolEntry {
                name: p.name.clone(),
                pool: new_pool(p, a, pool_seed, now),
                removed: false,
            });
        }
        b.rng = rng;
        for l in &config.listeners {
            let routes = b.routes_for(l);
            b.listeners.push(Listener::new(l, routes));
        }
        b
    }

    /// The routes of `l`, by the pools live now.
    fn routes_for(&self, l: &ListenerConfig) -> Routes {
        let id = |name: &str| self.live_pool(name);
        Routes {
            default: l.pool.as_deref().and_then(id),
            sni: SniRoutes::new(
                l.sni
                    .iter()
                    .filter_map(|(pattern, to)| Some((pattern.clone(), id(to)?))),
            ),
        }
    }

    fn live_pool(&self, name: &str) -> Option<PoolId> {
        self.pools
            .iter()
            .position(|p| p.name == name && !p.removed)
            .map(|i| PoolId(i as u32))
    }

    /// Gives the balancer deliberate bugs, for the simulation's broken builds.
    #[cfg(feature = "seams")]
    pub fn inject(&mut self, defects: Defects) {
        self.defects = defects;
        for p in &mut self.pools {
            p.pool.inject(defects);
        }
        for l in &mut self.listeners {
            l.inject(defects);
        }
    }

    /// Every new flow gets these watermarks (small ones exercise backpressure). A test seam.
    #[cfg(any(test, feature = "seams"))]
    pub fn set_watermarks(&mut self, high: usize, low: usize) {
        self.watermarks = Some((high, low));
    }

    // ---- getters -------------------------------------------------------------------

    /// Every listener ever added, indexed by [`ListenerId`] (removed ones included).
    pub fn listeners(&self) -> &[Listener] {
        &self.listeners
    }

    /// One listener.
    pub fn listener(&self, id: ListenerId) -> Option<&Listener> {
        self.listeners.get(id.index())
    }

    /// The live listener named `name`.
    pub fn listener_by_name(&self, name: &str) -> Option<ListenerId> {
        self.listeners
            .iter()
            .position(|l| l.name == name && !l.removed)
            .map(|i| ListenerId(i as u32))
    }

    /// The live listeners and the addresses they are configured to listen on: what the
    /// driver keeps bound.
    pub fn listening(&self) -> Vec<(ListenerId, SocketAddr)> {
        self.listeners
            .iter()
            .enumerate()
            .filter(|(_, l)| !l.removed)
            .map(|(i, l)| (ListenerId(i as u32), l.listen))
            .collect()
    }

    /// The driver bound listener `id` at `addr` (shown in `/status`).
    pub fn set_bound(&mut self, id: ListenerId, addr: SocketAddr) {
        if let Some(l) = self.listeners.get_mut(id.index()) {
            l.bound = Some(addr);
        }
    }

    /// Whether flows of listener `id` may need the address the client connected to (a
    /// pool it routes to sends PROXY headers), which the driver then looks up at accept.
    pub fn wants_local_addr(&self, id: ListenerId) -> bool {
        let Some(l) = self.listener(id) else {
            return false;
        };
        let r = l.routes();
        r.default
            .into_iter()
            .chain(r.sni.targets())
            .any(|p| self.pools[p.index()].pool.limits().proxy_protocol.is_some())
    }

    /// Pools: id, name and machine, for every pool ever added (removed ones included:
    /// see [`Balancer::pool_removed`]).
    pub fn pools(&self) -> impl Iterator<Item = (PoolId, &str, &Pool)> {
        self.pools
            .iter()
            .enumerate()
            .map(|(i, p)| (PoolId(i as u32), p.name.as_str(), &p.pool))
    }

    /// One pool.
    pub fn pool(&self, id: PoolId) -> Option<&Pool> {
        self.pools.get(id.index()).map(|p| &p.pool)
    }

    /// What pool `id`'s `hash` selector would choose for a new connection from `client`
    /// now (see [`Pool::preview_select`]); `None` for other algorithms.
    pub fn preview_select(
        &mut self,
        id: PoolId,
        client: std::net::IpAddr,
        now: Timestamp,
    ) -> Option<BackendId> {
        self.pools
            .get_mut(id.index())?
            .pool
            .preview_select(client, now)
    }

    /// A pool's name.
    pub fn pool_name(&self, id: PoolId) -> &str {
        self.pools.get(id.index()).map_or("-", |p| p.name.as_str())
    }

    /// Whether a reload removed pool `id`.
    pub fn pool_removed(&self, id: PoolId) -> bool {
        self.pools.get(id.index()).is_none_or(|p| p.removed)
    }

    /// The live pool named `name`.
    pub fn pool_by_name(&self, name: &str) -> Option<PoolId> {
        self.live_pool(name)
    }

    /// Every configured backend named `name`, in any live pool (for the admin endpoint's
    /// short `/backends/NAME/...` form, which needs exactly one).
    pub fn backends_named(&self, name: &str) -> Vec<(PoolId, BackendId)> {
        self.pools
            .iter()
            .enumerate()
            .filter(|(_, p)| !p.removed)
            .filter_map(|(i, p)| Some((PoolId(i as u32), p.pool.backend_by_name(name)?)))
            .collect()
    }

    /// Client connections open now, on every listener.
    pub fn open_flows(&self) -> usize {
        self.flows.len()
    }

    /// Client connections refused on every listener, by reason.
    pub fn rejected(&self, reason: RejectReason) -> u64 {
        self.listeners.iter().map(|l| l.rejected(reason)).sum()
    }

    /// The pool and listener of an open flow.
    pub fn flow_route(&self, flow: FlowId) -> Option<(ListenerId, Option<PoolId>)> {
        self.flows.get(&flow).map(|f| (f.listener, f.pool))
    }

    // ---- admin ---------------------------------------------------------------------

    /// Drains, disables or enables a backend of a pool (see [`Pool::set_admin`]).
    pub fn set_admin(
        &mut self,
        pool: PoolId,
        backend: BackendId,
        admin: AdminState,
        now: Timestamp,
    ) -> Result<(), UnknownBackend> {
        match self.pools.get_mut(pool.index()) {
            Some(p) => p.pool.set_admin(backend, admin, now),
            None => Err(UnknownBackend(backend)),
        }
    }

    /// Sets the weight of `backend` of `pool` until the next reload.
    pub fn set_weight(
        &mut self,
        pool: PoolId,
        backend: BackendId,
        weight: u32,
        now: Timestamp,
    ) -> Result<(), UnknownBackend> {
        match self.pools.get_mut(pool.index()) {
            Some(p) => p.pool.set_weight(backend, weight, now),
            None => Err(UnknownBackend(backend)),
        }
    }

    // ---- probes and events ---------------------------------------------------------

    /// The next DNS question due (a pool with `discover`), and its pool. Drain until
    /// `None`; report each answer with [`Balancer::handle_discovery`].
    pub fn poll_discovery(&mut self, now: Timestamp) -> Option<(PoolId, DnsQuery)> {
        self.pools
            .iter_mut()
            .enumerate()
            .filter(|(_, p)| !p.removed)
            .find_map(|(i, p)| Some((PoolId(i as u32), p.pool.poll_discovery(now)?)))
    }

    /// The answer to pool `pool`'s DNS question (see [`Pool::handle_discovery`]).
    pub fn handle_discovery(
        &mut self,
        pool: PoolId,
        result: Result<DnsAnswer, DnsError>,
        now: Timestamp,
    ) {
        if let Some(p) = self.pools.get_mut(pool.index()) {
            p.pool.handle_discovery(result, now);
        }
    }

    /// The next health probe due, and its pool. Drain until `None`.
    pub fn poll_probe(&mut self, now: Timestamp) -> Option<(PoolId, ProbeRequest)> {
        self.pools
            .iter_mut()
            .enumerate()
            .find_map(|(i, p)| Some((PoolId(i as u32), p.pool.poll_probe(now)?)))
    }

    /// Whether a probe is still wanted (see [`Pool::probe_pending`]).
    pub fn probe_pending(&self, pool: PoolId, probe: ProbeId) -> bool {
        self.pool(pool).is_some_and(|p| p.probe_pending(probe))
    }

    /// A probe's outcome (see [`Pool::handle_probe_result`]).
    pub fn handle_probe_result(
        &mut self,
        pool: PoolId,
        probe: ProbeId,
        outcome: ProbeOutcome,
        now: Timestamp,
    ) {
        if let Some(p) = self.pools.get_mut(pool.index()) {
            p.pool.handle_probe_result(probe, outcome, now);
        }
    }

    /// Time passed: probe deadlines and schedules of every pool.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        for p in &mut self.pools {
            p.pool.handle_timeout(now);
        }
    }

    /// When [`Balancer::handle_timeout`] next has work.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        self.pools
            .iter()
            .filter_map(|p| p.pool.poll_timeout())
            .min()
    }

    /// Whether some pool's next timeout moved earlier than it said before (then the probe
    /// task asks [`Balancer::poll_timeout`] again). Clears the flags.
    pub fn poll_timeout_moved(&mut self) -> bool {
        let mut moved = false;
        for p in &mut self.pools {
            moved |= p.pool.poll_timeout_moved();
        }
        moved
    }

    /// The next event of some pool. Drain until `None`.
    pub fn poll_event(&mut self) -> Option<(PoolId, PoolEvent)> {
        self.pools
            .iter_mut()
            .enumerate()
            .find_map(|(i, p)| Some((PoolId(i as u32), p.pool.poll_event()?)))
    }

    // ---- reload --------------------------------------------------------------------

    /// Applies a reloaded `config` (already validated), whose pool `p`'s backend `i` is at
    /// `addrs[p][i]`.
    ///
    /// - Pools are matched by name: a kept pool is reconfigured ([`Pool::reconfigure`]:
    ///   backends with the same name and address keep their health, counters and open
    ///   connections); a new one starts as at startup; a removed one drains (its backends
    ///   get nothing new and are no longer probed, its open connections continue).
    /// - Listeners are matched by name: a kept one takes the new admission, routing and
    ///   client settings, keeping its counters and open connections; a new one is added; a
    ///   removed one accepts nothing more and its connections drain. Which addresses to
    ///   keep bound is [`Balancer::listening`].
    ///
    /// # Panics
    /// If `addrs` does not have one address per configured backend (a driver bug).
    pub fn reconfigure(
        &mut self,
        config: &Config,
        addrs: &[Vec<SocketAddr>],
        now: Timestamp,
    ) -> BalancerReload {
        assert_eq!(addrs.len(), config.pools.len(), "addresses for every pool");
        let mut out = BalancerReload::default();
        let mut live = vec![false; self.pools.len()];
        for (p, a) in config.pools.iter().zip(addrs) {
            match self.live_pool(&p.name) {
                Some(id) => {
                    live[id.index()] = true;
                    let summary = self.pools[id.index()].pool.reconfigure(p, a, now);
                    out.pools.push((p.name.clone(), summary));
                }
                None => {
                    let mut pool = Pool::new(p, a, self.rng.next_u64(), now);
                    #[cfg(feature = "seams")]
                    pool.inject(self.defects);
                    #[cfg(not(feature = "seams"))]
                    let _ = &mut pool;
                    self.pools.push(PoolEntry {
                        name: p.name.clone(),
                        pool,
                        removed: false,
                    });
                    live.push(true);
                    out.pools_added.push(p.name.clone());
                }
            }
        }
        for (i, keep) in live.iter().enumerate() {
            let p = &mut self.pools[i];
            if !keep && !p.removed {
                p.removed = true;
                p.pool.retire(now);
                out.pools_removed
                    .push((p.name.clone(), p.pool.open_flows()));
            }
        }
        let mut live = vec![false; self.listeners.len()];
        for l in &config.listeners {
            let routes = self.routes_for(l);
            match self.listener_by_name(&l.name) {
                Some(id) => {
                    live[id.index()] = true;
                    if self.listeners[id.index()].reconfigure(l, routes) {
                        // Flows counted by a per-client table that is gone are not counted
                        // off the new one.
                        for f in self.flows.values_mut().filter(|f| f.listener == id) {
                            f.counted = false;
                        }
                    }
                    out.listeners_kept.push(l.name.clone());
                }
                None => {
                    let mut listener = Listener::new(l, routes);
                    listener.inject(self.defects);
                    self.listeners.push(listener);
                    live.push(true);
                    out.listeners_added.push(l.name.clone());
                }
            }
        }
        for (i, keep) in live.iter().enumerate() {
            let l = &mut self.listeners[i];
            if !keep && !l.removed {
                l.removed = true;
                out.listeners_removed.push((l.name.clone(), l.open));
            }
        }
        out
    }

    // ---- flows ---------------------------------------------------------------------

    /// A flow's settings for a flow of `listener` in `pool`, with the driver defects of
    /// broken builds applied: the shared copy, made anew only when they changed.
    fn finish(
        &mut self,
        listener: ListenerId,
        pool: Option<PoolId>,
        limits: FlowLimits,
    ) -> Arc<FlowLimits> {
        let limits = self.with_defects(limits);
        match self.flow_limits.get(&(listener, pool)) {
            Some(shared) if **shared == limits => shared.clone(),
            _ => {
                let shared = Arc::new(limits);
                self.flow_limits.insert((listener, pool), shared.clone());
                shared
            }
        }
    }

    /// Settings with the driver defects of broken builds applied.
    fn with_defects(&self, mut limits: FlowLimits) -> FlowLimits {
        if let Some((high, low)) = self.watermarks {
            limits.high_watermark = high;
            limits.low_watermark = low;
        }
        let never = Duration::from_secs(24 * 3600);
        if self.defects.has(Defect::NoIdleTimeout) {
            limits.idle_timeout = never;
        }
        if self.defects.has(Defect::NoHalfCloseTimeout) {
            limits.half_close_timeout = never;
        }
        if self.defects.has(Defect::NoConnectTimeout) {
            limits.connect_timeout = never;
        }
        limits
    }

    fn flow_pool(&mut self, flow: FlowId) -> Option<&mut Pool> {
        let p = self.flows.get(&flow)?.pool?;
        Some(&mut self.pools[p.index()].pool)
    }

    /// Seats an admitted flow in pool `to`: its settings with the pool's.
    fn seat(&mut self, flow: FlowId, to: PoolId, now: Timestamp) -> Arc<FlowLimits> {
        let Some(entry) = self.flows.get_mut(&flow) else {
            return Arc::new(FlowLimits::default());
        };
        entry.pool = Some(to);
        let listener = entry.listener;
        let pool = &mut self.pools[to.index()].pool;
        pool.open_flow(flow, now);
        let limits = self.listeners[listener.index()]
            .limits()
            .with_pool(pool.limits());
        self.finish(listener, Some(to), limits)
    }

    /// Checks the bookkeeping of every listener and pool against the open flows; harnesses
    /// call it after every step. A test seam.
    ///
    /// # Panics
    /// When the counts disagree (a bug).
    #[cfg(any(test, feature = "seams"))]
    pub fn check_invariants(&self) {
        for (i, l) in self.listeners.iter().enumerate() {
            let mine = self
                .flows
                .values()
                .filter(|f| f.listener.index() == i)
                .collect::<Vec<_>>();
            assert_eq!(l.open, mine.len(), "listener {i} open count");
            let mut counted: BTreeMap<IpAddr, u32> = BTreeMap::new();
            for f in mine.iter().filter(|f| f.counted) {
                *counted.entry(f.client).or_insert(0) += 1;
            }
            l.check_invariants(&counted);
        }
        for (i, p) in self.pools.iter().enumerate() {
            let seated = self
                .flows
                .values()
                .filter(|f| f.pool == Some(PoolId(i as u32)))
                .count();
            assert_eq!(p.pool.open_flows(), seated, "pool {i} seat count");
            p.pool.check_invariants();
        }
    }
}

/// The balancer's side of a flow's life: admission and routing by the listener, then
/// selection, connect outcomes, latency samples and release by the flow's pool.
impl FlowPool for Balancer {
    fn open_flow(
        &mut self,
        flow: FlowId,
        listener: ListenerId,
        client: IpAddr,
        now: Timestamp,
    ) -> Result<Opened, RejectReason> {
        if let Some(f) = self.flows.get(&flow) {
            // Already open: nothing is counted twice; the same settings as the first time.
            let mut limits = self.listeners[f.listener.index()].limits();
            if let Some(p) = f.pool {
                limits = limits.with_pool(self.pools[p.index()].pool.limits());
            }
            let (listener, route) = (f.listener, f.pool);
            return Ok(Opened {
                limits: self.finish(listener, route, limits),
                route,
            });
        }
        let Some(l) = self.listeners.get_mut(listener.index()) else {
            return Err(RejectReason::NoRoute);
        };
        let counted = l.admit(client, now)?;
        let routes = l.routes();
        let by_name = !routes.sni.is_empty();
        let default = routes.default;
        let base = l.limits();
        self.flows.insert(
            flow,
            FlowEntry {
                listener,
                pool: None,
                client,
                counted,
                opened: now,
            },
        );
        match (by_name, default) {
            (false, Some(to)) => Ok(Opened {
                limits: self.seat(flow, to, now),
                route: Some(to),
            }),
            _ => Ok(Opened {
                limits: self.finish(listener, None, base),
                route: None,
            }),
        }
    }

    fn route(
        &mut self,
        flow: FlowId,
        server_name: Option<&str>,
        now: Timestamp,
    ) -> Result<Routed, RejectReason> {
        let Some(entry) = self.flows.get(&flow).copied() else {
            return Err(RejectReason::NoRoute);
        };
        if let Some(to) = entry.pool {
            let limits = self.listeners[entry.listener.index()]
                .limits()
                .with_pool(self.pools[to.index()].pool.limits());
            let limits = self.finish(entry.listener, Some(to), limits);
            return Ok(Routed { pool: to, limits });
        }
        let l = &mut self.listeners[entry.listener.index()];
        let routes = l.routes();
        let to = server_name
            .filter(|_| !self.defects.has(Defect::SniIgnored))
            .and_then(|n| routes.sni.route(n))
            .or(routes.default);
        match to {
            Some(to) => Ok(Routed {
                pool: to,
                limits: self.seat(flow, to, now),
            }),
            None => Err(l.reject(RejectReason::NoRoute)),
        }
    }

    fn select(
        &mut self,
        flow: FlowId,
        client: SocketAddr,
        exclude: &[BackendId],
        now: Timestamp,
    ) -> Option<(BackendId, SocketAddr)> {
        if self.defects.has(Defect::SharedPoolFaults)
            && self.pools.iter().any(|p| {
                let backends = p.pool.backends();
                !p.removed
                    && backends
                        .iter()
                        .all(|b| b.state() != crate::BackendState::Up)
            })
        {
            return None;
        }
        let chosen = self.flow_pool(flow)?.select(flow, client, exclude, now);
        if chosen.is_none() && exclude.is_empty() {
            if let Some(f) = self.flows.get(&flow) {
                self.listeners[f.listener.index()].reject(RejectReason::NoBackend);
            }
        }
        chosen
    }

    fn connect_succeeded(&mut self, flow: FlowId, backend: BackendId, now: Timestamp) {
        if let Some(p) = self.flow_pool(flow) {
            p.connect_succeeded(flow, backend, now);
        }
    }

    fn connect_failed(
        &mut self,
        flow: FlowId,
        backend: BackendId,
        failure: ConnectFailure,
        now: Timestamp,
    ) {
        if let Some(p) = self.flow_pool(flow) {
            p.connect_failed(flow, backend, failure, now);
        }
    }

    fn record_latency(
        &mut self,
        flow: FlowId,
        backend: BackendId,
        sample: Duration,
        now: Timestamp,
    ) {
        if let Some(p) = self.flow_pool(flow) {
            p.record_latency(backend, sample, now);
        }
    }

    fn forwarded(&mut self, flow: FlowId, to_backend: u64, to_client: u64, now: Timestamp) {
        if let Some(p) = self.flow_pool(flow) {
            p.forwarded(flow, to_backend, to_client, now);
        }
    }

    fn close_flow(
        &mut self,
        flow: FlowId,
        bytes_to_backend: u64,
        bytes_to_client: u64,
        now: Timestamp,
    ) {
        let Some(entry) = self.flows.remove(&flow) else {
            return;
        };
        self.listeners[entry.listener.index()].release(
            entry.client,
            entry.counted,
            now.saturating_duration_since(entry.opened),
        );
        if let Some(p) = entry.pool {
            self.pools[p.index()]
                .pool
                .close_flow(flow, bytes_to_backend, bytes_to_client, now);
        }
    }
}

#[cfg(test)]
mod tests;
