//! One simulated run: builds the turmoil world of a [`Plan`] (backends, load balancers,
//! clients, the operator), drives it step by step from the outer loop where faults,
//! reloads and the stop are applied, samples every load balancer's pool after each step,
//! and gathers the [`Observations`] the checkers judge.
//!
//! The load balancers are the production [`Node`] (workers, flow tasks, probe task, admin
//! endpoint, reload and drain, and the `lb-sans-io` machines) on [`TurmoilNet`], driven
//! through its control channel as the binary's signal handler drives it; the backends are
//! the production demo servers. Nothing in the data path is a copy or a mock.

use crate::check::{self, Violation};
use crate::client::{self, ClientCtx, SessionRecord};
use crate::logs::{self, CloseLine, CloseLog, LogLine};
use crate::net::{self, NetLog, SharedLog, TurmoilNet};
use crate::operator::{self, OpRecord};
use crate::scenario::{ConfigExtras, Fault, Mutation, OpAction, Plan, ReloadChange, BACKEND_PORT};
use crate::services::{BackendEntry, Common};
use crate::trace::{hash_events, Event, Trace};
use lb_runtime::demo::DemoServer;
use lb_runtime::load::{self, ConfigSource, Loaded};
use lb_runtime::node::SelectorFactory;
use lb_runtime::shared::Shared;
use lb_runtime::{Control, Net, Node, NodeOptions};
use lb_sans_io::select::{SelectCtx, Selector};
use lb_sans_io::{BackendId, BackendState};
use std::cell::RefCell;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

/// Segments a turmoil stream may have unread. turmoil 0.7.2 gives a stream's receive
/// queue and its sender's window the same size, but a FIN takes no window: when a sender
/// fills the whole window and then sends FIN, the FIN finds the queue full, stays in the
/// reorder buffer, and is never delivered (nothing retries it), so the reader never sees
/// the end of the stream. Our largest transfers stay far below this many segments, so
/// the window is never full and the bug cannot fire. (Default: 64.)
pub const TCP_CAPACITY: usize = 1024;

/// How long a run goes on after its last flow closed.
const LINGER: Duration = Duration::from_millis(500);

/// One backend's counters as the pool reported them at the end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendSnapshot {
    /// Up or down.
    pub state: BackendState,
    /// Connections held.
    pub active: u32,
    /// Client connections established.
    pub connections_total: u64,
    /// Client connects that failed or timed out.
    pub connect_failures_total: u64,
    /// Bytes of closed flows, client to backend.
    pub bytes_to_backend: u64,
    /// Bytes of closed flows, backend to client.
    pub bytes_to_client: u64,
    /// Its weight now.
    pub weight: u32,
}

/// How a load balancer's node returned after the planned stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StopRecord {
    /// When `Node::run` returned.
    pub returned: Duration,
    /// Connections it aborted at the end of the grace period.
    pub aborted: usize,
    /// Flows the pool still had open when it returned.
    pub open_flows: usize,
}

/// A load balancer's pool at the end of the run.
#[derive(Clone, Debug)]
pub struct PoolSnapshot {
    /// Per backend.
    pub backends: Vec<BackendSnapshot>,
    /// Flows still open.
    pub open_flows: usize,
    /// Clients refused as outside `allow`.
    pub rejected_not_allowed: u64,
    /// Clients refused for `per_client`.
    pub rejected_per_client: u64,
    /// Clients refused because no pool took them (`no_route`), on every listener.
    pub rejected_no_route: u64,
    /// `Pool::check_invariants`: the panic message if it failed.
    pub invariants: Result<(), String>,
}

/// Everything the checkers look at.
#[derive(Debug)]
pub struct Observations {
    /// The plan that ran.
    pub plan: Arc<Plan>,
    /// Backend `i`'s address.
    pub backend_addrs: Vec<SocketAddr>,
    /// Load balancer `i`'s address.
    pub lb_addrs: Vec<IpAddr>,
    /// Faults as applied, with the simulated time they took effect.
    pub applied: Vec<(Duration, Fault)>,
    /// Per backend: intervals `[from, to)` in which it could not be reached from the load
    /// balancers (crashed, restarting, partitioned or held). `to` is the time the fault
    /// was healed plus [`Observations::restore_margin`] (a restarted backend listens again
    /// only once its software has run).
    pub unreachable: Vec<Vec<(Duration, Duration)>>,
    /// Added to the end of every unreachable interval.
    pub restore_margin: Duration,
    /// Per load balancer: the pool's up backends (bit mask), at every change.
    pub pool_states: Vec<Vec<(Duration, u64)>>,
    /// Per load balancer: the backends its pool lists (not removed; bit mask), at every
    /// change.
    pub pool_listed: Vec<Vec<(Duration, u64)>>,
    /// (`fleet`) Per load balancer: at every change of what its pool lists or has up, the
    /// listed and up masks and a fingerprint of its `hash` table
    /// ([`net::table_fingerprint`]).
    pub tables: Vec<Vec<(Duration, u64, u64, u64)>>,
    /// Every client connection.
    pub sessions: Vec<SessionRecord>,
    /// Per load balancer: its sockets and tasks.
    pub lb_logs: Vec<NetLog>,
    /// Per backend: its sockets (with contents) and tasks.
    pub backend_logs: Vec<NetLog>,
    /// Per load balancer: its pool at the end (`None` if it never started).
    pub final_pools: Vec<Option<PoolSnapshot>>,
    /// Errors a host returned, or the run's own failures (such as not finishing).
    pub host_errors: Vec<String>,
    /// When every client had finished.
    pub clients_done: Option<Duration>,
    /// When the run stopped.
    pub end: Duration,
    /// The operator's actions as carried out: admin requests (by the operator host) and
    /// reloads (by the run), in time order.
    pub ops: Vec<OpRecord>,
    /// Per load balancer: how its node returned after the planned stop.
    pub stops: Vec<Option<StopRecord>>,
    /// Every "connection closed" log line of every load balancer.
    pub closes: Vec<CloseLine>,
    /// Every reload line (applied or refused) of every load balancer.
    pub log_lines: Vec<LogLine>,
    /// The client hosts' addresses, by index.
    pub client_addrs: Vec<IpAddr>,
    /// Per load balancer, per backend: intervals `[from, to)` in which the operator had it
    /// out of that load balancer's rotation (not configured, drained or disabled), each
    /// extended by the time a backend back in rotation may take to come up.
    pub out_of_rotation: Vec<Vec<Vec<(Duration, Duration)>>>,
}

impl Observations {
    /// The backend index of an address, if it is a backend.
    pub fn backend_of(&self, addr: SocketAddr) -> Option<usize> {
        self.backend_addrs.iter().position(|a| *a == addr)
    }

    /// Whether backend `b` was unreachable at some time in `[from, to]`.
    pub fn unreachable_during(&self, b: usize, from: Duration, to: Duration) -> bool {
        self.unreachable[b]
            .iter()
            .any(|&(a, e)| a <= to && e >= from)
    }

    /// Whether the operator had backend `b` out of load balancer `lb`'s rotation at some
    /// time in `[from, to]`.
    pub fn out_of_rotation_during(
        &self,
        lb: usize,
        b: usize,
        from: Duration,
        to: Duration,
    ) -> bool {
        self.out_of_rotation
            .get(lb)
            .and_then(|v| v.get(b))
            .is_some_and(|iv| iv.iter().any(|&(a, e)| a <= to && e >= from))
    }

    /// Whether client host `c` may use the load balancers (`allow`).
    pub fn allowed(&self, client: usize) -> bool {
        self.plan
            .allow
            .as_ref()
            .is_none_or(|list| list.contains(&client))
    }

    /// The pool's up mask of load balancer `lb` at time `t` (as sampled after each step).
    pub fn up_mask_at(&self, lb: usize, t: Duration) -> u64 {
        let states = &self.pool_states[lb];
        let i = states.partition_point(|(at, _)| *at <= t);
        if i == 0 {
            0
        } else {
            states[i - 1].1
        }
    }
}

/// The result of one run.
#[derive(Debug)]
pub struct RunOutput {
    /// What was observed.
    pub obs: Observations,
    /// The event trace.
    pub trace: Vec<Event>,
    /// Hash of the trace (equal for two runs of one seed).
    pub trace_hash: u64,
    /// What the checkers found.
    pub violations: Vec<Violation>,
}

/// The sending end of a node's control channel.
type ControlTx = tokio::sync::mpsc::UnboundedSender<Control>;

/// The selector of [`Mutation::IgnoreHealth`]: any configured backend, up or not.
struct IgnoreHealth;

impl Selector for IgnoreHealth {
    fn select(&mut self, ctx: SelectCtx<'_>) -> Option<BackendId> {
        let n = ctx.len() as u64;
        Some(BackendId(ctx.rng.below(n) as u32))
    }
}

/// The selector of [`Mutation::FirstAvailable`]: the first usable backend.
struct FirstAvailable;

impl Selector for FirstAvailable {
    fn select(&mut self, ctx: SelectCtx<'_>) -> Option<BackendId> {
        (0..ctx.len())
            .find(|&i| ctx.usable(i))
            .map(|i| BackendId(i as u32))
    }
}

/// The selector of [`Mutation::ClientBlind`]: a random usable backend.
struct ClientBlind;

impl Selector for ClientBlind {
    fn select(&mut self, ctx: SelectCtx<'_>) -> Option<BackendId> {
        let usable: Vec<usize> = (0..ctx.len()).filter(|&i| ctx.usable(i)).collect();
        if usable.is_empty() {
            return None;
        }
        let i = usable[ctx.rng.below(usable.len() as u64) as usize];
        Some(BackendId(i as u32))
    }
}

/// The node's options for `plan`: its workers, its seed, and the broken selector of the
/// plan's mutation, if any.
fn node_options(plan: &Plan, seed: u64) -> NodeOptions {
    let mut options = NodeOptions::new(plan.workers, seed);
    options.selector = match plan.mutation {
        Mutation::IgnoreHealth => {
            Some(Arc::new(|_: &_| Box::new(IgnoreHealth) as Box<dyn Selector>) as SelectorFactory)
        }
        Mutation::ClientBlind => {
            Some(Arc::new(|_: &_| Box::new(ClientBlind) as Box<dyn Selector>) as SelectorFactory)
        }
        Mutation::FirstAvailable => {
            Some(Arc::new(|_: &_| Box::new(FirstAvailable) as Box<dyn Selector>) as SelectorFactory)
        }
        _ => None,
    };
    if let Mutation::Defect(d) = plan.mutation {
        options.defects = options.defects.with(d);
    }
    options
}

/// The configs of a run: the plan's settings and extras, over the backends configured now.
struct Configs {
    plan: Arc<Plan>,
    backend_addrs: Vec<SocketAddr>,
    allow_ips: Option<Vec<IpAddr>>,
    /// Backend `i` is in the config now.
    configured: Vec<bool>,
    /// Backend `i`'s weight now.
    weights: Vec<u32>,
    /// (`services`) Listener `i` is in the config now.
    listeners: Vec<bool>,
    /// (`services`) Listener `i` was in some config so far.
    listeners_ever: Vec<bool>,
}

impl Configs {
    fn text(&self) -> String {
        if let Some(services) = &self.plan.services {
            return self.services_text(services);
        }
        // (`fleet`) No static backends: DNS names them.
        let named: Vec<(String, SocketAddr, u32)> = (0..self.backend_addrs.len())
            .filter(|&i| self.configured[i] && self.plan.dns.is_none())
            .map(|i| (format!("b{i}"), self.backend_addrs[i], self.weights[i]))
            .collect();
        self.plan.lb_runtime_settings().config_json(
            &named,
            &ConfigExtras {
                proxy: self.plan.proxy,
                allow: self.allow_ips.as_deref(),
                grace: self.plan.stop_grace(),
                per_client_max: self.plan.per_client_max,
                close_on_backend_down: self.plan.close_on_backend_down,
                discover: self.plan.dns.as_ref().map(|d| {
                    format!(
                        r#"{{ "dns": "{}:{BACKEND_PORT}", "interval": "{}ms" }}"#,
                        crate::dns::NAME,
                        d.interval.as_millis()
                    )
                }),
            },
        )
    }

    /// The `services` config: the plan's listeners and pools, as configured now.
    fn services_text(&self, services: &crate::services::Services) -> String {
        let s = self.plan.lb_runtime_settings();
        let backends: Vec<BackendEntry> = (0..self.backend_addrs.len())
            .filter(|&i| self.configured[i])
            .map(|i| BackendEntry {
                index: i,
                name: self.plan.backend_name(i),
                addr: self.backend_addrs[i],
                weight: self.weights[i],
            })
            .collect();
        // Under `StaleListeners` the load balancer is never told to remove one.
        let live = if self.plan.mutation == Mutation::StaleListeners {
            &self.listeners_ever
        } else {
            &self.listeners
        };
        services.config_json(
            live,
            &backends,
            &Common {
                health_check: format!(
                    r#"{{ "type": "tcp", "interval": "{}ms", "timeout": "{}ms", "rise": {}, "fall": {} }}"#,
                    s.interval.as_millis(),
                    s.check_timeout.as_millis(),
                    s.rise,
                    s.fall
                ),
                retries: s.retries,
                connect: s.connect_timeout,
                idle: s.idle_timeout,
                half_close: s.half_close_timeout,
                grace: self.plan.stop_grace(),
                proxy: self.plan.proxy,
                allow: self.allow_ips.as_deref(),
                close_on_backend_down: self.plan.close_on_backend_down,
            },
        )
    }

    fn load(&self) -> Result<Loaded, load::LoadError> {
        load::from_text(&self.text(), ConfigSource::File("sim.json".into()))
    }

    /// Applies a reload's change and reads the new config (an invalid one for `Invalid`).
    fn reload(&mut self, change: ReloadChange) -> Result<Loaded, load::LoadError> {
        match change {
            ReloadChange::Remove(b) => self.configured[b] = false,
            ReloadChange::Add(b) => self.configured[b] = true,
            ReloadChange::Weight(b, w) => self.weights[b] = w,
            ReloadChange::SwapListeners => {
                use crate::services::{NEW, OLD};
                let old = self.listeners[OLD];
                self.listeners[OLD] = !old;
                self.listeners[NEW] = old;
                self.listeners_ever[OLD] |= !old;
                self.listeners_ever[NEW] |= old;
            }
            ReloadChange::Invalid => {
                let text = self.text().replacen("\"retries\"", "\"retires\"", 1);
                return load::from_text(&text, ConfigSource::File("sim.json".into()));
            }
        }
        self.load()
    }
}

/// The pool of a load balancer, with backends in the simulation's order (by address:
/// backends a reload added have later ids in the pool).
fn snapshot(shared: &Shared, backend_addrs: &[SocketAddr]) -> PoolSnapshot {
    shared.with_balancer(|balancer, _| {
        let invariants =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| balancer.check_invariants()))
                .map_err(|p| {
                    p.downcast_ref::<String>()
                        .cloned()
                        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default()
                });
        PoolSnapshot {
            backends: backend_addrs
                .iter()
                .map(|a| {
                    // The live backend at this address, else the last removed one.
                    let all: Vec<_> = balancer
                        .pools()
                        .flat_map(|(_, _, pool)| pool.backends().iter())
                        .filter(|b| b.addr == *a)
                        .collect();
                    all.iter()
                        .find(|b| !b.removed())
                        .or(all.last())
                        .map(|b| (*b).clone())
                })
                .map(|b| match b {
                    Some(b) => BackendSnapshot {
                        state: b.state(),
                        active: b.active,
                        connections_total: b.connections_total,
                        connect_failures_total: b.connect_failures_total,
                        bytes_to_backend: b.bytes_to_backend,
                        bytes_to_client: b.bytes_to_client,
                        weight: b.weight,
                    },
                    // Never configured in this run.
                    None => BackendSnapshot {
                        state: BackendState::Down,
                        active: 0,
                        connections_total: 0,
                        connect_failures_total: 0,
                        bytes_to_backend: 0,
                        bytes_to_client: 0,
                        weight: 0,
                    },
                })
                .collect(),
            open_flows: balancer.open_flows(),
            rejected_not_allowed: balancer.rejected(lb_sans_io::RejectReason::NotAllowed),
            rejected_per_client: balancer.rejected(lb_sans_io::RejectReason::PerClientLimit),
            rejected_no_route: balancer.rejected(lb_sans_io::RejectReason::NoRoute),
            invariants,
        }
    })
}

fn copy_log(log: &SharedLog) -> NetLog {
    log.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

/// Runs `plan` and checks everything it observed.
pub fn run(plan: Plan) -> RunOutput {
    let plan = Arc::new(plan);
    let trace = Trace::new();
    let closes: CloseLog = Arc::new(Mutex::new(Default::default()));
    // Every host runs on this thread: one subscriber sees every load balancer's lines.
    let _capture = logs::capture(closes.clone());
    let mut sim = turmoil::Builder::new()
        .rng_seed(plan.seed)
        .epoch(UNIX_EPOCH + Duration::from_secs(1_700_000_000))
        .tick_duration(plan.tick)
        .simulation_duration(Duration::from_secs(3600))
        .min_message_latency(Duration::ZERO)
        .max_message_latency(plan.max_latency)
        .tcp_capacity(TCP_CAPACITY)
        .build();

    // Backends.
    let backend_logs: Vec<SharedLog> = plan.backends.iter().map(|_| net::new_log(true)).collect();
    for (i, &mode) in plan.backends.iter().enumerate() {
        let log = backend_logs[i].clone();
        let proxy_protocol = plan.proxy.is_some();
        sim.host(format!("b{i}"), move || {
            let log = log.clone();
            async move {
                let net = TurmoilNet::new(log);
                let listener = net
                    .bind(SocketAddr::from(([0, 0, 0, 0], BACKEND_PORT)))
                    .await?;
                let server = DemoServer {
                    name: format!("b{i}"),
                    mode,
                    proxy_protocol,
                };
                server.run(net, listener).await;
                Ok(())
            }
        });
    }
    let backend_addrs: Vec<SocketAddr> = (0..plan.backends.len())
        .map(|i| SocketAddr::new(sim.lookup(format!("b{i}")), BACKEND_PORT))
        .collect();

    // Clients and the operator (their software starts at the first step).
    let sessions = Arc::new(Mutex::new(Vec::new()));
    for c in 0..plan.clients {
        let ctx = ClientCtx {
            plan: plan.clone(),
            client: c,
            sessions: sessions.clone(),
            trace: trace.clone(),
        };
        sim.client(format!("c{c}"), client::run(ctx));
    }
    let client_addrs: Vec<IpAddr> = (0..plan.clients)
        .map(|c| sim.lookup(format!("c{c}")))
        .collect();
    let op_records = Arc::new(Mutex::new(Vec::new()));
    if plan
        .ops
        .iter()
        .any(|(_, op)| matches!(op, OpAction::Admin { .. }))
    {
        sim.client(
            "op",
            operator::run(plan.clone(), op_records.clone(), trace.clone()),
        );
    }

    // Load balancers.
    let listeners_initial: Vec<bool> = plan
        .services
        .as_ref()
        .map(|s| s.listeners.iter().map(|l| l.initial).collect())
        .unwrap_or_default();
    let mut configs = Configs {
        plan: plan.clone(),
        backend_addrs: backend_addrs.clone(),
        allow_ips: plan
            .allow
            .as_ref()
            .map(|list| list.iter().map(|&c| client_addrs[c]).collect()),
        configured: plan.initial.clone(),
        weights: plan.weights.clone(),
        listeners: listeners_initial.clone(),
        listeners_ever: listeners_initial,
    };
    let lb_logs: Vec<SharedLog> = (0..plan.lbs).map(|_| net::new_log(false)).collect();
    let slots: Vec<Rc<RefCell<Option<Arc<Shared>>>>> =
        (0..plan.lbs).map(|_| Rc::new(RefCell::new(None))).collect();
    let controls: Vec<Rc<RefCell<Option<ControlTx>>>> =
        (0..plan.lbs).map(|_| Rc::new(RefCell::new(None))).collect();
    let stops: Vec<Rc<RefCell<Option<StopRecord>>>> =
        (0..plan.lbs).map(|_| Rc::new(RefCell::new(None))).collect();
    let loaded = match configs.load() {
        Ok(l) => l,
        Err(e) => {
            let mut obs = empty_observations(&plan, backend_addrs);
            obs.host_errors.push(format!("config rejected: {e}"));
            let violations = check::check_all(&obs);
            return RunOutput {
                obs,
                trace: Vec::new(),
                trace_hash: 0,
                violations,
            };
        }
    };
    for lb in 0..plan.lbs {
        let log = lb_logs[lb].clone();
        let slot = slots[lb].clone();
        let control_slot = controls[lb].clone();
        let stop_slot = stops[lb].clone();
        let plan = plan.clone();
        let loaded = loaded.clone();
        let addrs = backend_addrs.clone();
        let trace = trace.clone();
        sim.host(format!("lb{lb}"), move || {
            let log = log.clone();
            let slot = slot.clone();
            let control_slot = control_slot.clone();
            let stop_slot = stop_slot.clone();
            let plan = plan.clone();
            let loaded = loaded.clone();
            let addrs = addrs.clone();
            let trace = trace.clone();
            async move {
                // (`fleet`) A load balancer that joins late.
                let start = plan.lb_start.get(lb).copied().unwrap_or_default();
                if !start.is_zero() {
                    tokio::time::sleep(start).await;
                }
                let seed = plan.seed.wrapping_mul(31).wrapping_add(lb as u64);
                // The production node, exactly: only its network is turmoil's.
                let node = Node::new(loaded, node_options(&plan, seed));
                let shared = node.shared().clone();
                *slot.borrow_mut() = Some(shared.clone());
                let (control, control_rx) = tokio::sync::mpsc::unbounded_channel();
                *control_slot.borrow_mut() = Some(control);
                let mut net = TurmoilNet::for_balancer(log, shared.clone(), addrs.clone())
                    .with_trace(trace, format!("lb{lb}"), addrs.clone());
                if let Some(script) = &plan.dns {
                    net = net.with_dns(Arc::new(script.clone()), addrs);
                }
                let stopped = node.run(net, control_rx).await?;
                *stop_slot.borrow_mut() = Some(StopRecord {
                    returned: net::sim_now(),
                    aborted: stopped.aborted,
                    open_flows: shared.with_balancer(|b, _| b.open_flows()),
                });
                Ok(())
            }
        });
    }
    let lb_addrs: Vec<IpAddr> = (0..plan.lbs)
        .map(|i| sim.lookup(format!("lb{i}")))
        .collect();

    // The outer loop: faults, reloads, the stop, steps, pool samples.
    let n = plan.backends.len();
    let mut unreachable: Vec<Vec<(Duration, Duration)>> = vec![Vec::new(); n];
    let mut down_since: Vec<Option<Duration>> = vec![None; n];
    let mut applied = Vec::new();
    let mut reloads: Vec<OpRecord> = Vec::new();
    let mut pool_states: Vec<Vec<(Duration, u64)>> = vec![Vec::new(); plan.lbs];
    let mut pool_listed: Vec<Vec<(Duration, u64)>> = vec![Vec::new(); plan.lbs];
    let mut tables: Vec<Vec<(Duration, u64, u64, u64)>> = vec![Vec::new(); plan.lbs];
    let mut next_dns = 0;
    let mut host_errors = Vec::new();
    let mut clients_done = None;
    let mut drained_at: Option<Duration> = None;
    let mut next_fault = 0;
    let mut next_op = 0;
    let mut stop_sent = false;
    let settle = plan.lb.idle_timeout
        + plan.lb.half_close_timeout
        + plan.lb.connect_timeout * (plan.lb.retries + 1)
        + Duration::from_secs(3);
    let hard_limit = plan.liveness_start + Duration::from_secs(120);
    let restore_margin = plan.tick * 2;
    let send = |control: Control| {
        for c in &controls {
            if let Some(tx) = c.borrow().as_ref() {
                // A node that already returned has dropped its receiver: nothing to do.
                let _ = tx.send(match &control {
                    Control::Stop => Control::Stop,
                    Control::Reload { cause, config } => Control::Reload {
                        cause,
                        config: match config {
                            Ok(l) => Ok(l.clone()),
                            Err(e) => Err(load::LoadError::Other(e.to_string())),
                        },
                    },
                });
            }
        }
    };
    loop {
        let now = sim.elapsed();
        while next_fault < plan.faults.len() && plan.faults[next_fault].0 <= now {
            let fault = plan.faults[next_fault].1;
            next_fault += 1;
            let b = fault.backend();
            let host = format!("b{b}");
            let lbs: Vec<String> = (0..plan.lbs).map(|i| format!("lb{i}")).collect();
            match fault {
                Fault::Crash(_) => sim.crash(host.as_str()),
                Fault::Restart(_) | Fault::Bounce(_) => sim.bounce(host.as_str()),
                Fault::Partition(_) => lbs
                    .iter()
                    .for_each(|l| sim.partition(l.as_str(), host.as_str())),
                Fault::Repair(_) => lbs
                    .iter()
                    .for_each(|l| sim.repair(l.as_str(), host.as_str())),
                Fault::Hold(_) => lbs.iter().for_each(|l| sim.hold(l.as_str(), host.as_str())),
                Fault::Release(_) => lbs
                    .iter()
                    .for_each(|l| sim.release(l.as_str(), host.as_str())),
                Fault::Slow(_, d) => lbs
                    .iter()
                    .for_each(|l| sim.set_link_latency(l.as_str(), host.as_str(), d)),
                Fault::Unslow(_) => lbs.iter().for_each(|l| {
                    sim.set_link_latency(l.as_str(), host.as_str(), Duration::ZERO);
                    sim.set_link_max_message_latency(l.as_str(), host.as_str(), plan.max_latency);
                }),
            }
            match fault {
                Fault::Crash(_) | Fault::Partition(_) | Fault::Hold(_) => {
                    down_since[b].get_or_insert(now);
                }
                Fault::Restart(_) | Fault::Repair(_) | Fault::Release(_) => {
                    if let Some(from) = down_since[b].take() {
                        unreachable[b].push((from, now + restore_margin));
                    }
                }
                Fault::Bounce(_) => {
                    let from = down_since[b].take().unwrap_or(now);
                    unreachable[b].push((from, now + restore_margin));
                }
                Fault::Slow(..) | Fault::Unslow(_) => {}
            }
            applied.push((now, fault));
            trace.push(now, "sim", fault.to_string());
        }
        while next_op < plan.ops.len() && plan.ops[next_op].0 <= now {
            let action = plan.ops[next_op].1;
            next_op += 1;
            let OpAction::Reload(change) = action else {
                continue; // the operator host sends admin requests
            };
            let config = configs.reload(change);
            trace.push(now, "sim", format!("{action}"));
            reloads.push(OpRecord {
                action,
                sent: now,
                answered: None,
                status: None,
                valid: config.is_ok(),
            });
            send(Control::Reload {
                cause: "sim",
                config,
            });
        }
        if let Some(script) = &plan.dns {
            while next_dns < script.events.len() && script.events[next_dns].0 <= now {
                trace.push(now, "sim", script.events[next_dns].1.to_string());
                next_dns += 1;
            }
        }
        if let Some(stop) = plan.stop.filter(|s| !stop_sent && s.at <= now) {
            stop_sent = true;
            trace.push(
                now,
                "sim",
                format!("stop (grace {}ms)", stop.grace.as_millis()),
            );
            send(Control::Stop);
        }
        match sim.step() {
            Ok(done) => {
                if done && clients_done.is_none() {
                    clients_done = Some(sim.elapsed());
                    trace.push(sim.elapsed(), "sim", "clients done");
                }
            }
            Err(e) => {
                host_errors.push(format!("host failed: {e}"));
                break;
            }
        }
        let now = sim.elapsed();
        for (lb, slot) in slots.iter().enumerate() {
            if let Some(shared) = slot.borrow().as_ref() {
                let listed = net::listed_mask(shared, &backend_addrs);
                if pool_listed[lb].last().map(|(_, m)| *m) != Some(listed) {
                    pool_listed[lb].push((now, listed));
                    trace.push(
                        now,
                        format!("lb{lb}"),
                        format!("pool lists {}", mask_names(listed, n)),
                    );
                }
                let mask = net::up_mask(shared, &backend_addrs);
                let key = Some((listed, mask));
                if plan.dns.is_some() && tables[lb].last().map(|t| (t.1, t.2)) != key {
                    let fingerprint = net::table_fingerprint(shared);
                    tables[lb].push((now, listed, mask, fingerprint));
                }
                if pool_states[lb].last().map(|(_, m)| *m) != Some(mask) {
                    pool_states[lb].push((now, mask));
                    trace.push(
                        now,
                        format!("lb{lb}"),
                        format!("pool up {}", mask_names(mask, n)),
                    );
                }
            }
        }
        if let Some(t) = clients_done {
            // Done when every flow has closed (then a little longer, so tasks finish and
            // late segments land), or when the timeouts have surely run.
            let drained = slots.iter().all(|s| {
                s.borrow()
                    .as_ref()
                    .is_none_or(|shared| shared.with_balancer(|b, _| b.open_flows() == 0))
            });
            match (drained, drained_at) {
                (true, None) => drained_at = Some(now),
                (false, Some(_)) => drained_at = None,
                _ => {}
            }
            let stopped = plan.stop.is_none() || stops.iter().all(|s| s.borrow().is_some());
            if now >= t + settle || (stopped && drained_at.is_some_and(|d| now >= d + LINGER)) {
                break;
            }
        }
        if now > hard_limit {
            host_errors.push(format!(
                "run did not finish by {:.1}s (a client is stuck)",
                hard_limit.as_secs_f64()
            ));
            break;
        }
    }
    let end = sim.elapsed();
    for (b, since) in down_since.iter().enumerate() {
        if let Some(from) = since {
            unreachable[b].push((*from, end + Duration::from_secs(3600)));
        }
    }
    let final_pools = slots
        .iter()
        .map(|s| {
            s.borrow()
                .as_ref()
                .map(|shared| snapshot(shared, &backend_addrs))
        })
        .collect();
    let stops = stops.iter().map(|s| *s.borrow()).collect();
    // Copies, taken before the world goes: dropping it ends every task and socket.
    let lb_logs: Vec<NetLog> = lb_logs.iter().map(copy_log).collect();
    let backend_logs: Vec<NetLog> = backend_logs.iter().map(copy_log).collect();
    drop(sim);
    let mut sessions = std::mem::take(&mut *sessions.lock().unwrap_or_else(|p| p.into_inner()));
    sessions.sort_by(|a, b| a.start.cmp(&b.start).then(a.id.cmp(&b.id)));
    let mut ops = std::mem::take(&mut *op_records.lock().unwrap_or_else(|p| p.into_inner()));
    ops.extend(reloads);
    ops.sort_by_key(|o| o.sent);
    let captured = std::mem::take(&mut *closes.lock().unwrap_or_else(|p| p.into_inner()));
    let out_of_rotation = rotation(&plan, &ops, end);
    let obs = Observations {
        plan: plan.clone(),
        backend_addrs,
        lb_addrs,
        applied,
        unreachable,
        restore_margin,
        pool_states,
        pool_listed,
        tables,
        sessions,
        lb_logs,
        backend_logs,
        final_pools,
        host_errors,
        clients_done,
        end,
        ops,
        stops,
        closes: captured.closes,
        log_lines: captured.reloads,
        client_addrs,
        out_of_rotation,
    };
    let violations = check::check_all(&obs);
    let events = trace.events();
    RunOutput {
        trace_hash: hash_events(&events),
        trace: events,
        obs,
        violations,
    }
}

/// When the operator had each backend out of each load balancer's rotation: from a drain,
/// disable or removal (or the start, for a backend the first config did not list) until
/// the enable was answered or the reload added it back, plus the time a backend back in
/// rotation may take to come up (it is probed at once; up after `rise` passes at most).
fn rotation(plan: &Plan, ops: &[OpRecord], end: Duration) -> Vec<Vec<Vec<(Duration, Duration)>>> {
    let n = plan.backends.len();
    let settle = plan.lb.up_bound(plan.tick) + plan.tick * 2;
    let forever = end + Duration::from_secs(3600);
    let mut out = vec![vec![Vec::new(); n]; plan.lbs];
    let mut admin_since: Vec<Vec<Option<Duration>>> = vec![vec![None; n]; plan.lbs];
    let mut removed_since: Vec<Option<Duration>> = (0..n)
        .map(|b| (!plan.initial[b]).then_some(Duration::ZERO))
        .collect();
    // (`fleet`) A backend DNS does not name is out of rotation, from when DNS stops naming
    // it until its pools may have learned that it is named again and brought it up.
    if let Some(script) = &plan.dns {
        let learn = crate::dns::staleness(script.interval);
        let mut since: Vec<Option<Duration>> = vec![Some(Duration::ZERO); n];
        for &(at, set) in &script.sets {
            for (b, s) in since.iter_mut().enumerate() {
                match (set & (1 << b) != 0, *s) {
                    (true, Some(from)) => {
                        for iv in out.iter_mut() {
                            iv[b].push((from, at + learn + settle));
                        }
                        *s = None;
                    }
                    (false, None) => *s = Some(at),
                    _ => {}
                }
            }
        }
        for (b, s) in since.iter().enumerate() {
            if let Some(from) = s {
                for iv in out.iter_mut() {
                    iv[b].push((*from, forever));
                }
            }
        }
        // A load balancer that joins late has nothing in rotation until it has learned.
        for (lb, &start) in plan.lb_start.iter().enumerate() {
            if !start.is_zero() {
                for iv in out[lb].iter_mut() {
                    iv.push((Duration::ZERO, start + learn + settle));
                }
            }
        }
    }
    for op in ops {
        match op.action {
            OpAction::Admin {
                lb,
                backend,
                action,
            } => match action {
                crate::scenario::AdminAction::Enable => {
                    if let Some(from) = admin_since[lb][backend].take() {
                        let to = op.answered.unwrap_or(forever) + settle;
                        out[lb][backend].push((from, to));
                    }
                }
                crate::scenario::AdminAction::Drain | crate::scenario::AdminAction::Disable => {
                    admin_since[lb][backend].get_or_insert(op.sent);
                }
                crate::scenario::AdminAction::Weight(_) => {}
            },
            OpAction::Reload(ReloadChange::Remove(b)) if op.valid => {
                removed_since[b].get_or_insert(op.sent);
            }
            OpAction::Reload(ReloadChange::Add(b)) if op.valid => {
                if let Some(from) = removed_since[b].take() {
                    for iv in out.iter_mut() {
                        iv[b].push((from, op.sent + settle));
                    }
                }
            }
            OpAction::Reload(_) => {}
        }
    }
    for (lb, per_lb) in admin_since.iter().enumerate() {
        for (b, since) in per_lb.iter().enumerate() {
            if let Some(from) = since {
                out[lb][b].push((*from, forever));
            }
        }
    }
    for (b, since) in removed_since.iter().enumerate() {
        if let Some(from) = since {
            for iv in out.iter_mut() {
                iv[b].push((*from, forever));
            }
        }
    }
    out
}

/// `b0,b2` for a mask with bits 0 and 2.
pub fn mask_names(mask: u64, n: usize) -> String {
    let names: Vec<String> = (0..n)
        .filter(|i| mask & (1 << i) != 0)
        .map(|i| format!("b{i}"))
        .collect();
    if names.is_empty() {
        "none".to_string()
    } else {
        names.join(",")
    }
}

fn empty_observations(plan: &Arc<Plan>, backend_addrs: Vec<SocketAddr>) -> Observations {
    let n = plan.backends.len();
    Observations {
        plan: plan.clone(),
        backend_addrs,
        lb_addrs: Vec::new(),
        applied: Vec::new(),
        unreachable: vec![Vec::new(); n],
        restore_margin: plan.tick * 2,
        pool_states: vec![Vec::new(); plan.lbs],
        pool_listed: vec![Vec::new(); plan.lbs],
        tables: vec![Vec::new(); plan.lbs],
        sessions: Vec::new(),
        lb_logs: Vec::new(),
        backend_logs: Vec::new(),
        final_pools: Vec::new(),
        host_errors: Vec::new(),
        clients_done: None,
        end: Duration::ZERO,
        ops: Vec::new(),
        stops: Vec::new(),
        closes: Vec::new(),
        log_lines: Vec::new(),
        client_addrs: Vec::new(),
        out_of_rotation: vec![vec![Vec::new(); n]; plan.lbs],
    }
}
