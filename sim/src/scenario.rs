//! The scenario vocabulary and the plan of one run, drawn from its seed.
//!
//! A [`Plan`] is everything a run does that is not a consequence of the code under test:
//! the network's shape and latency, the load balancer's settings, the client behaviour mix
//! and the timeline of injected faults. Each seed picks its own settings within the
//! scenario's ranges and which faults are on ("swarm testing", as TigerBeetle does it).
//! Every fault is healed by [`Plan::chaos_end`]; a liveness phase follows.

pub use crate::dns::DnsScript;
use crate::rng::SimRng;
pub use crate::services::{Greeting, Services};
use lb_runtime::demo::DemoMode;
use lb_sans_io::defect::Defect;
use lb_sans_io::Algorithm;
use std::fmt;
use std::time::Duration;

/// What a run injects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scenario {
    /// Backends crash and come back after a while.
    Crash,
    /// Backends restart at once (crash and immediate restart).
    Bounce,
    /// The link between the load balancer and one backend is cut (segments lost), then
    /// repaired.
    Partition,
    /// One backend's link gets slow (higher latency) or stalls without loss (hold).
    Slow,
    /// A backend goes down and up faster than `rise` / `fall` can follow.
    Flap,
    /// Every backend goes down, then they all come back.
    AllDown,
    /// Clients that half-close (FIN) before or while the answer flows.
    HalfClose,
    /// Clients that stall mid-connection, some longer than the idle timeout.
    Stall,
    /// Backends die in the middle of large transfers.
    MidTransfer,
    /// A seed-chosen mix of all of the above.
    Mix,
    /// Two load balancers with `hash` in front of the same backends, with crashes.
    HashAffinity,
    /// An operator at work while backends crash: drains, disables and enables through the
    /// admin endpoint, reloads that add, remove and reweight backends (and one invalid
    /// file), PROXY headers, an allow-list, and a graceful stop with connections open.
    Operate,
    /// Many services in one load balancer: two listeners (one routing TLS by server name)
    /// and three pools, faults on backends of every pool, clients that send ClientHellos
    /// (split across writes and records) or plain bytes, and an operator who addresses
    /// backends by pool and reloads configs that swap one listener for another.
    Services,
    /// A fleet: three load balancers with the same config and `hash`, whose one pool takes
    /// its backends from a scripted DNS that scales up, scales down, replaces a backend,
    /// fails for a while and answers nothing for a while; one load balancer joins late.
    Fleet,
}

impl Scenario {
    /// Every scenario the default sweep runs.
    pub const ALL: [Scenario; 14] = [
        Scenario::Crash,
        Scenario::Bounce,
        Scenario::Partition,
        Scenario::Slow,
        Scenario::Flap,
        Scenario::AllDown,
        Scenario::HalfClose,
        Scenario::Stall,
        Scenario::MidTransfer,
        Scenario::Mix,
        Scenario::HashAffinity,
        Scenario::Operate,
        Scenario::Services,
        Scenario::Fleet,
    ];

    /// The scenario's name (also the name of its test).
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Crash => "crash",
            Scenario::Bounce => "bounce",
            Scenario::Partition => "partition",
            Scenario::Slow => "slow",
            Scenario::Flap => "flap",
            Scenario::AllDown => "all_down",
            Scenario::HalfClose => "half_close",
            Scenario::Stall => "stall",
            Scenario::MidTransfer => "mid_transfer",
            Scenario::Mix => "mix",
            Scenario::HashAffinity => "hash_affinity",
            Scenario::Operate => "operate",
            Scenario::Services => "services",
            Scenario::Fleet => "fleet",
        }
    }

    fn salt(self) -> u64 {
        Scenario::ALL.iter().position(|s| *s == self).unwrap_or(0) as u64 + 1
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A deliberate defect injected into the load balancer, to prove the checks catch it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mutation {
    /// The real load balancer.
    None,
    /// A selector that ignores health: any configured backend, up or down.
    IgnoreHealth,
    /// Health checks far too lax: the load balancer runs with `fall` and `rise` ten times
    /// what the checkers are told.
    LaxHealth,
    /// No retries: the load balancer runs with `retries: 0` while the plan says more.
    NoRetries,
    /// A selector that ignores the client: a seeded random pick among the healthy
    /// backends (breaks `hash` affinity).
    ClientBlind,
    /// A selector that always picks the first usable backend (in configured order): every
    /// backend gets connections only while those before it are down.
    FirstAvailable,
    /// A deliberate bug in the pool or the driver (see `lb_sans_io::defect`).
    Defect(Defect),
    /// Reloads never remove a listener: the load balancer's config keeps every listener
    /// it ever had, while the checkers are told the plan's (a listener swapped out keeps
    /// accepting).
    StaleListeners,
}

/// What an operator asks of a backend through the admin endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdminAction {
    /// `POST /backends/NAME/drain`.
    Drain,
    /// `POST /backends/NAME/disable`.
    Disable,
    /// `POST /backends/NAME/enable`.
    Enable,
    /// `POST /backends/NAME/weight` with `{"weight": N}`.
    Weight(u32),
}

impl AdminAction {
    /// The action's path segment.
    pub fn name(self) -> &'static str {
        match self {
            AdminAction::Drain => "drain",
            AdminAction::Disable => "disable",
            AdminAction::Enable => "enable",
            AdminAction::Weight(_) => "weight",
        }
    }
}

/// What a reload changes in the config.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReloadChange {
    /// The config no longer lists backend `b`.
    Remove(usize),
    /// The config lists backend `b` (again, or for the first time).
    Add(usize),
    /// Backend `b` gets weight `w`.
    Weight(usize, u32),
    /// The new file is invalid: nothing may change.
    Invalid,
    /// (`services`) Listener `old` is removed and `new` added, or the other way round.
    SwapListeners,
}

/// An operator's action, applied at a planned time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpAction {
    /// An admin request to load balancer `lb` about backend `backend`.
    Admin {
        /// The load balancer.
        lb: usize,
        /// The backend.
        backend: usize,
        /// What to do.
        action: AdminAction,
    },
    /// Every load balancer reloads a config with this change.
    Reload(ReloadChange),
}

impl fmt::Display for OpAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpAction::Admin {
                lb,
                backend,
                action,
            } => match action {
                AdminAction::Weight(w) => write!(f, "admin lb{lb}: b{backend} weight {w}"),
                _ => write!(f, "admin lb{lb}: {} b{backend}", action.name()),
            },
            OpAction::Reload(ReloadChange::Remove(b)) => write!(f, "reload: remove b{b}"),
            OpAction::Reload(ReloadChange::Add(b)) => write!(f, "reload: add b{b}"),
            OpAction::Reload(ReloadChange::Weight(b, w)) => {
                write!(f, "reload: b{b} weight {w}")
            }
            OpAction::Reload(ReloadChange::Invalid) => write!(f, "reload: an invalid file"),
            OpAction::Reload(ReloadChange::SwapListeners) => {
                write!(f, "reload: swap listeners old/new")
            }
        }
    }
}

/// A graceful stop of every load balancer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StopPlan {
    /// When `Control::Stop` is sent.
    pub at: Duration,
    /// `timeouts.shutdown_grace`.
    pub grace: Duration,
}

/// One fault action, applied between two simulation steps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Kill backend `b` (its sockets close as if the process died).
    Crash(usize),
    /// Start a crashed backend `b` again.
    Restart(usize),
    /// Restart backend `b` at once.
    Bounce(usize),
    /// Cut every load balancer's link to backend `b`: segments in flight are lost.
    Partition(usize),
    /// Repair the links to backend `b`.
    Repair(usize),
    /// Hold segments between the load balancers and backend `b` (delay without loss).
    Hold(usize),
    /// Release held segments to backend `b`.
    Release(usize),
    /// Give the links to backend `b` a fixed latency.
    Slow(usize, Duration),
    /// Restore the links to backend `b` to the normal latency.
    Unslow(usize),
}

impl Fault {
    /// The backend the fault acts on.
    pub fn backend(self) -> usize {
        match self {
            Fault::Crash(b)
            | Fault::Restart(b)
            | Fault::Bounce(b)
            | Fault::Partition(b)
            | Fault::Repair(b)
            | Fault::Hold(b)
            | Fault::Release(b)
            | Fault::Slow(b, _)
            | Fault::Unslow(b) => b,
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Crash(b) => write!(f, "crash b{b}"),
            Fault::Restart(b) => write!(f, "restart b{b}"),
            Fault::Bounce(b) => write!(f, "bounce b{b}"),
            Fault::Partition(b) => write!(f, "partition lb-b{b}"),
            Fault::Repair(b) => write!(f, "repair lb-b{b}"),
            Fault::Hold(b) => write!(f, "hold lb-b{b}"),
            Fault::Release(b) => write!(f, "release lb-b{b}"),
            Fault::Slow(b, d) => write!(f, "slow lb-b{b} to {}ms", d.as_millis()),
            Fault::Unslow(b) => write!(f, "unslow lb-b{b}"),
        }
    }
}

/// How a client connection behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionKind {
    /// Writes its requests with short pauses, then half-closes and reads to the end.
    Pipelined,
    /// Writes everything and half-closes at once, then reads to the end.
    EarlyHalfClose,
    /// One request at a time, each after the previous answer; closes after the last.
    Interactive,
    /// Interactive, with one pause in the middle; pauses at least as long as the idle
    /// timeout are allowed to end in an idle-timeout close.
    Stall,
    /// One large upload (`POST` with a body), read back concurrently; then half-closes.
    Bulk,
    /// One request asking the backend to close (`Connection: close`); reads to the end
    /// and then keeps its own side open and silent, so the load balancer's half-close
    /// timeout (or, when the backend does not close, its idle timeout) must end it.
    HalfOpen,
}

impl SessionKind {
    /// A short name for traces.
    pub fn name(self) -> &'static str {
        match self {
            SessionKind::Pipelined => "pipelined",
            SessionKind::EarlyHalfClose => "early-fin",
            SessionKind::Interactive => "interactive",
            SessionKind::Stall => "stall",
            SessionKind::Bulk => "bulk",
            SessionKind::HalfOpen => "half-open",
        }
    }
}

/// Relative weights of the session kinds clients pick from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mix {
    /// Weights of pipelined, early half-close, interactive, stall, bulk and half-open
    /// sessions.
    pub weights: [u32; 6],
}

impl Mix {
    /// Draws a session kind.
    pub fn pick(&self, rng: &mut SimRng) -> SessionKind {
        let total: u32 = self.weights.iter().sum();
        let mut x = rng.gen_range(0..total.max(1));
        let kinds = [
            SessionKind::Pipelined,
            SessionKind::EarlyHalfClose,
            SessionKind::Interactive,
            SessionKind::Stall,
            SessionKind::Bulk,
            SessionKind::HalfOpen,
        ];
        for (k, w) in kinds.iter().zip(self.weights) {
            if x < w {
                return *k;
            }
            x -= w;
        }
        SessionKind::Pipelined
    }
}

/// The load balancer's settings, as the checkers know them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LbSettings {
    /// `algorithm` in config.json.
    pub algorithm: &'static str,
    /// `health_check.interval`.
    pub interval: Duration,
    /// `health_check.timeout`.
    pub check_timeout: Duration,
    /// `health_check.rise`.
    pub rise: u32,
    /// `health_check.fall`.
    pub fall: u32,
    /// `timeouts.connect`.
    pub connect_timeout: Duration,
    /// `timeouts.idle`.
    pub idle_timeout: Duration,
    /// `timeouts.half_close`.
    pub half_close_timeout: Duration,
    /// `retries`.
    pub retries: u32,
}

impl LbSettings {
    /// The config file for these settings, with backend `i` named `backends[i].0`, at
    /// `backends[i].1`, of weight `backends[i].2`, and the `extras`.
    pub fn config_json(
        &self,
        backends: &[(String, std::net::SocketAddr, u32)],
        extras: &ConfigExtras<'_>,
    ) -> String {
        let list: Vec<String> = backends
            .iter()
            .map(|(name, addr, weight)| {
                format!(r#"{{ "name": "{name}", "address": "{addr}", "weight": {weight} }}"#)
            })
            .collect();
        let mut more = String::new();
        if let Some(v) = extras.proxy {
            more.push_str(&format!(",\n  \"proxy_protocol\": \"{v}\""));
        }
        if let Some(ips) = extras.allow {
            let nets: Vec<String> = ips.iter().map(|ip| format!("\"{ip}\"")).collect();
            more.push_str(&format!(",\n  \"allow\": [{}]", nets.join(", ")));
        }
        if let Some(m) = extras.per_client_max {
            more.push_str(&format!(
                ",\n  \"per_client\": {{ \"max_connections\": {m} }}"
            ));
        }
        if extras.close_on_backend_down {
            more.push_str(",\n  \"on_backend_down\": \"close\"");
        }
        if let Some(d) = &extras.discover {
            more.push_str(&format!(",\n  \"discover\": {d}"));
        }
        format!(
            r#"{{
  "listen": "0.0.0.0:{port}",
  "admin": "0.0.0.0:{admin}",
  "algorithm": "{algorithm}",
  "backends": [{backends}],
  "health_check": {{ "type": "tcp", "interval": "{interval}ms", "timeout": "{timeout}ms", "rise": {rise}, "fall": {fall} }},
  "timeouts": {{ "connect": "{connect}ms", "idle": "{idle}ms", "half_close": "{half_close}ms", "shutdown_grace": "{grace}ms" }},
  "retries": {retries}{more}
}}"#,
            port = LB_PORT,
            admin = ADMIN_PORT,
            algorithm = self.algorithm,
            backends = list.join(", "),
            interval = self.interval.as_millis(),
            timeout = self.check_timeout.as_millis(),
            rise = self.rise,
            fall = self.fall,
            connect = self.connect_timeout.as_millis(),
            idle = self.idle_timeout.as_millis(),
            half_close = self.half_close_timeout.as_millis(),
            grace = extras.grace.as_millis(),
            retries = self.retries,
        )
    }

    /// How long after a backend becomes unreachable it may still get new connections:
    /// `fall × interval + timeout`, plus one tick per probe for timer rounding.
    pub fn down_bound(&self, tick: Duration) -> Duration {
        self.interval * self.fall + self.check_timeout + tick * (self.fall + 2)
    }

    /// How long after a backend is reachable again the pool may take to bring it up:
    /// `rise × interval + timeout`, plus one tick per probe.
    pub fn up_bound(&self, tick: Duration) -> Duration {
        self.interval * self.rise + self.check_timeout + tick * (self.rise + 2)
    }
}

/// The port every load balancer listens on.
pub const LB_PORT: u16 = 8080;
/// The port of every load balancer's admin endpoint.
pub const ADMIN_PORT: u16 = 9090;

/// The parts of a config beyond [`LbSettings`].
#[derive(Clone, Debug)]
pub struct ConfigExtras<'a> {
    /// `proxy_protocol`.
    pub proxy: Option<&'a str>,
    /// `allow`: these hosts.
    pub allow: Option<&'a [std::net::IpAddr]>,
    /// `timeouts.shutdown_grace`.
    pub grace: Duration,
    /// `per_client.max_connections`.
    pub per_client_max: Option<u32>,
    /// `on_backend_down: close`.
    pub close_on_backend_down: bool,
    /// `discover`, as JSON, if any.
    pub discover: Option<String>,
}
/// The port every backend listens on.
pub const BACKEND_PORT: u16 = 9000;

/// Everything a run does, drawn from `(scenario, seed)`.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The scenario.
    pub scenario: Scenario,
    /// The seed.
    pub seed: u64,
    /// The defect injected, if any.
    pub mutation: Mutation,
    /// One entry per backend: what it serves.
    pub backends: Vec<DemoMode>,
    /// One entry per backend: its configured weight.
    pub weights: Vec<u32>,
    /// Number of load balancers.
    pub lbs: usize,
    /// Worker loops (accept loops) per load balancer, as the binary runs one per core.
    pub workers: usize,
    /// Number of client hosts.
    pub clients: usize,
    /// Concurrent connections per client host.
    pub lanes: usize,
    /// The simulation's tick.
    pub tick: Duration,
    /// Largest latency of a message on a normal link.
    pub max_latency: Duration,
    /// The load balancer's settings.
    pub lb: LbSettings,
    /// When clients start (the pool has probed every backend by then).
    pub warmup: Duration,
    /// When the chaos phase ends: every fault is healed and clients stop opening
    /// connections until the liveness phase.
    pub chaos_end: Duration,
    /// When the liveness phase starts: every backend must be up and serving.
    pub liveness_start: Duration,
    /// Connections each client lane opens in the liveness phase.
    pub liveness_sessions: usize,
    /// The client behaviour mix.
    pub mix: Mix,
    /// Fault actions, sorted by time.
    pub faults: Vec<(Duration, Fault)>,
    /// Backends the first config lists (the others may be added by a reload).
    pub initial: Vec<bool>,
    /// Operator actions, sorted by time; every one is undone by the end of the chaos phase
    /// (a drained backend enabled, a removed one added back).
    pub ops: Vec<(Duration, OpAction)>,
    /// `proxy_protocol`: `"v1"` or `"v2"`; the backends then expect the header.
    pub proxy: Option<&'static str>,
    /// `allow`: the client hosts allowed (by index); `None` allows everyone.
    pub allow: Option<Vec<usize>>,
    /// A graceful stop at the end, if any.
    pub stop: Option<StopPlan>,
    /// `per_client.max_connections`, if set.
    pub per_client_max: Option<u32>,
    /// `on_backend_down: close`.
    pub close_on_backend_down: bool,
    /// (`services`) The listeners and pools; `None`: the flat config, one listener and
    /// one pool with every backend.
    pub services: Option<Services>,
    /// (`fleet`) The scripted DNS the pool discovers its backends from; `None`: static
    /// backends.
    pub dns: Option<DnsScript>,
    /// When each load balancer starts (clients use one only once it has had time to learn
    /// its backends).
    pub lb_start: Vec<Duration>,
}

/// One pool as the checkers see it (the flat config's is `default`, with every backend).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolView {
    /// Its name.
    pub name: &'static str,
    /// Its algorithm.
    pub algorithm: &'static str,
    /// Its backends, by index.
    pub backends: Vec<usize>,
}

impl PoolView {
    /// Bit `b` set for each of its backends.
    pub fn mask(&self) -> u64 {
        self.backends.iter().fold(0, |m, b| m | 1 << b)
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

impl Plan {
    /// Draws the plan of one run.
    pub fn new(scenario: Scenario, seed: u64, mutation: Mutation) -> Plan {
        Plan::draw(scenario, seed, mutation, None)
    }

    /// Like [`Plan::new`], with a chaos phase of `chaos` (instead of 12 to 20 seconds).
    pub fn with_chaos(scenario: Scenario, seed: u64, mutation: Mutation, chaos: Duration) -> Plan {
        Plan::draw(scenario, seed, mutation, Some(chaos))
    }

    fn draw(scenario: Scenario, seed: u64, mutation: Mutation, chaos: Option<Duration>) -> Plan {
        let mut rng =
            SimRng::seed_from_u64(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ scenario.salt());
        let (services, backends) = if scenario == Scenario::Services {
            let (s, modes) = Services::draw(&mut rng);
            (Some(s), modes)
        } else {
            let n = if scenario == Scenario::Fleet {
                rng.gen_range(4..=6usize)
            } else {
                rng.gen_range(3..=5usize)
            };
            let mut backends: Vec<DemoMode> = (0..n)
                .map(|_| {
                    if rng.gen_bool(0.5) {
                        DemoMode::Echo
                    } else {
                        DemoMode::Http
                    }
                })
                .collect();
            // At least one of each kind.
            backends[0] = DemoMode::Echo;
            backends[1] = DemoMode::Http;
            (None, backends)
        };
        let n = backends.len();
        let interval = ms(*[300u64, 500, 1000]
            .get(rng.gen_range(0..3usize))
            .unwrap_or(&500));
        let check_timeout = ms(rng.gen_range(80..=200));
        let lb = LbSettings {
            algorithm: match scenario {
                Scenario::HashAffinity | Scenario::Fleet => "hash",
                // Swarm: the mix runs every algorithm this build has.
                Scenario::Mix | Scenario::Operate => {
                    let all = Algorithm::ALL;
                    all[rng.gen_range(0..all.len())].name()
                }
                // Each pool has its own.
                Scenario::Services => "per pool",
                _ => "round_robin",
            },
            interval,
            check_timeout,
            rise: rng.gen_range(1..=3),
            fall: rng.gen_range(1..=3),
            connect_timeout: ms(rng.gen_range(200..=600)),
            idle_timeout: ms(rng.gen_range(2500..=5000)),
            half_close_timeout: ms(rng.gen_range(1500..=4000)),
            retries: rng.gen_range(1..=3),
        };
        let max_latency = ms(rng.gen_range(1..=8));
        let warmup = interval + check_timeout + ms(500);
        let chaos_len = ms(rng.gen_range(12_000..=20_000));
        let chaos_len = chaos.unwrap_or(chaos_len);
        let chaos_end = warmup + chaos_len;
        let liveness_start = chaos_end + lb.up_bound(ms(1)) + ms(500);
        let mix = match scenario {
            Scenario::HalfClose => Mix {
                weights: [3, 6, 1, 0, 2, 3],
            },
            Scenario::Stall => Mix {
                weights: [1, 1, 2, 6, 0, 2],
            },
            Scenario::MidTransfer => Mix {
                weights: [1, 1, 1, 0, 6, 0],
            },
            _ => Mix {
                weights: [3, 2, 3, 1, 1, 1],
            },
        };
        let weights = backends
            .iter()
            .map(|_| {
                if scenario == Scenario::Mix || scenario == Scenario::Services {
                    rng.gen_range(1..=4)
                } else {
                    1
                }
            })
            .collect();
        let mut plan = Plan {
            scenario,
            seed,
            mutation,
            backends,
            weights,
            lbs: match scenario {
                Scenario::HashAffinity => 2,
                Scenario::Fleet => 3,
                Scenario::Operate | Scenario::Services => rng.gen_range(1..=2),
                _ => 1,
            },
            workers: rng.gen_range(1..=2),
            clients: rng.gen_range(2..=4),
            lanes: rng.gen_range(1..=3),
            tick: ms(5),
            max_latency,
            lb,
            warmup,
            chaos_end,
            liveness_start,
            liveness_sessions: 2,
            mix,
            faults: Vec::new(),
            initial: vec![true; n],
            ops: Vec::new(),
            proxy: None,
            allow: None,
            stop: None,
            per_client_max: None,
            close_on_backend_down: false,
            services,
            dns: None,
            lb_start: Vec::new(),
        };
        plan.lb_start = vec![Duration::ZERO; plan.lbs];
        plan.faults = draw_faults(&plan, &mut rng);
        if plan.scenario == Scenario::Fleet {
            plan.draw_fleet(&mut rng);
            return plan;
        }
        if plan.scenario == Scenario::Services {
            plan.draw_services_extras(&mut rng);
            return plan;
        }
        // The operator: always in `operate`; in `mix`, each part on or off by the seed.
        let operate = plan.scenario == Scenario::Operate;
        let mix = plan.scenario == Scenario::Mix;
        if operate || (mix && rng.gen_bool(0.5)) {
            if operate && rng.gen_bool(0.5) {
                // The last backend is not in the first config: a reload adds it.
                plan.initial[n - 1] = false;
            }
            plan.ops = draw_ops(&plan, &mut rng);
        }
        if operate || (mix && rng.gen_bool(0.3)) {
            plan.proxy = Some(if rng.gen_bool(0.5) { "v1" } else { "v2" });
        }
        if (operate || mix) && plan.clients > 1 && rng.gen_bool(if operate { 0.6 } else { 0.2 }) {
            // Every client but one is allowed.
            let denied = rng.gen_range(0..plan.clients);
            plan.allow = Some((0..plan.clients).filter(|&c| c != denied).collect());
        }
        if (operate || mix) && rng.gen_bool(if operate { 0.5 } else { 0.2 }) {
            plan.per_client_max = Some(rng.gen_range(1..=2));
        }
        if (operate || mix) && rng.gen_bool(if operate { 0.5 } else { 0.2 }) {
            plan.close_on_backend_down = true;
        }
        if operate || (mix && rng.gen_bool(0.3)) {
            // A connection that pauses past the grace period must not reach the idle
            // timeout first.
            let longest = (plan.lb.idle_timeout.as_millis() as u64).saturating_sub(1200);
            let grace = ms(rng.gen_range(600..=longest.clamp(600, 2000)));
            // After the liveness sessions: short ones, but a lane starts them only once its
            // last chaos session is over, which may pause for an idle timeout and hold a
            // half-open connection for a half-close timeout more (10 s at most).
            let at = plan.liveness_start + ms(rng.gen_range(12_000..=13_000));
            plan.stop = Some(StopPlan { at, grace });
        }
        plan
    }

    /// The `services` plan's operator, PROXY headers, allow-list, `on_backend_down` and
    /// stop, each on or off by the seed.
    fn draw_services_extras(&mut self, rng: &mut SimRng) {
        if rng.gen_bool(0.8) {
            self.ops = draw_ops(self, rng);
        }
        if rng.gen_bool(0.3) {
            self.proxy = Some(if rng.gen_bool(0.5) { "v1" } else { "v2" });
        }
        if self.clients > 1 && rng.gen_bool(0.3) {
            let denied = rng.gen_range(0..self.clients);
            self.allow = Some((0..self.clients).filter(|&c| c != denied).collect());
        }
        self.close_on_backend_down = rng.gen_bool(0.4);
        if rng.gen_bool(0.4) {
            let longest = (self.lb.idle_timeout.as_millis() as u64).saturating_sub(1200);
            let grace = ms(rng.gen_range(600..=longest.clamp(600, 2000)));
            let at = self.liveness_start + ms(rng.gen_range(12_000..=13_000));
            self.stop = Some(StopPlan { at, grace });
        }
    }

    /// The `fleet` plan's DNS script, the death of the backend it replaces, and the late
    /// load balancer; the chaos phase lasts until the script's last change has settled.
    fn draw_fleet(&mut self, rng: &mut SimRng) {
        let n = self.backends.len();
        let (script, faults, settled) = DnsScript::draw(n, ms(1000), self.warmup + ms(500), rng);
        let end = settled + ms(rng.gen_range(500..=1500));
        self.chaos_end = end.max(self.chaos_end);
        self.liveness_start = self.chaos_end + self.lb.up_bound(ms(1)) + ms(500);
        // The random crashes (drawn up to the old chaos end) spare the replaced backend.
        let spared: Vec<usize> = faults.iter().map(|(_, f)| f.backend()).collect();
        self.faults.retain(|(_, f)| !spared.contains(&f.backend()));
        self.faults.extend(faults);
        self.faults.sort_by_key(|(at, _)| *at);
        // The last load balancer joins after the second change, between outages.
        let mut join = script.events.get(1).map_or(self.warmup, |(t, _)| *t) + ms(600);
        while let Some(&(_, e, _)) = script
            .outages
            .iter()
            .find(|(a, e, _)| *a <= join && join < *e)
        {
            join = e + ms(100);
        }
        self.lb_start[self.lbs - 1] = join;
        self.dns = Some(script);
    }

    /// When clients may use load balancer `lb`: once it has started, learned its backends
    /// and probed them.
    pub fn lb_ready(&self, lb: usize) -> Duration {
        match self.lb_start.get(lb) {
            Some(t) if !t.is_zero() => *t + ms(300) + self.lb.up_bound(self.tick),
            _ => Duration::ZERO,
        }
    }

    /// The pools: the plan's, or the flat config's one pool `default` with every backend.
    pub fn pools(&self) -> Vec<PoolView> {
        match &self.services {
            Some(s) => s
                .pools
                .iter()
                .map(|p| PoolView {
                    name: p.name,
                    algorithm: p.algorithm,
                    backends: p.backends.clone(),
                })
                .collect(),
            None => vec![PoolView {
                name: "default",
                algorithm: self.lb.algorithm,
                backends: (0..self.backends.len()).collect(),
            }],
        }
    }

    /// The pool of backend `b` (each backend is in exactly one).
    pub fn pool_of(&self, b: usize) -> usize {
        self.services
            .as_ref()
            .and_then(|s| s.pool_of(b))
            .unwrap_or(0)
    }

    /// The pool a client of listener `listener` must reach after sending `greeting`
    /// (`None`: no route); see [`Services::expected_pool`]. The flat config's one listener
    /// sends everyone to its one pool.
    pub fn expected_pool(&self, listener: usize, greeting: &Greeting) -> Option<usize> {
        match &self.services {
            Some(s) => s.expected_pool(listener, greeting),
            None => Some(0),
        }
    }

    /// Listener `listener`'s port.
    pub fn listener_port(&self, listener: usize) -> u16 {
        self.services
            .as_ref()
            .map_or(LB_PORT, |s| s.listeners[listener].port)
    }

    /// Backend `b`'s name in the config.
    pub fn backend_name(&self, b: usize) -> String {
        match &self.services {
            Some(s) => s.backend_name(b),
            None => format!("b{b}"),
        }
    }

    /// When every client is done: the liveness sessions (and, with a stop, the sessions
    /// around it) are over.
    pub fn stop_grace(&self) -> Duration {
        self.stop.map_or(Duration::from_secs(5), |s| s.grace)
    }

    /// The settings the load balancer actually runs with (differs under a mutation).
    pub fn lb_runtime_settings(&self) -> LbSettings {
        let mut s = self.lb.clone();
        match self.mutation {
            Mutation::LaxHealth => {
                s.fall *= 10;
                s.rise *= 10;
            }
            Mutation::NoRetries => s.retries = 0,
            _ => {}
        }
        s
    }

    /// The command that replays this run.
    pub fn replay_command(&self, test: &str) -> String {
        format!("SIM_SEED={} cargo test -p sim {test}", self.seed)
    }
}

/// Episodes are laid out on a timeline from `warmup` to `chaos_end - margin`.
fn draw_faults(plan: &Plan, rng: &mut SimRng) -> Vec<(Duration, Fault)> {
    let n = plan.backends.len();
    let start = plan.warmup + ms(500);
    let end = plan.chaos_end.saturating_sub(ms(500));
    let detect = plan.lb.down_bound(plan.tick);
    let mut out = Vec::new();
    let mut t = start;
    let span = |rng: &mut SimRng, lo: Duration, hi: Duration| -> Duration {
        let lo = lo.as_millis() as u64;
        let hi = (hi.as_millis() as u64).max(lo + 1);
        ms(rng.gen_range(lo..hi))
    };
    let kinds: Vec<u8> = match plan.scenario {
        Scenario::Crash | Scenario::HashAffinity => vec![0],
        Scenario::Fleet => vec![0, 9],
        Scenario::Operate => vec![0, 1, 9],
        Scenario::Bounce => vec![1],
        Scenario::Partition => vec![2],
        Scenario::Slow => vec![3, 4],
        Scenario::Flap => vec![5],
        Scenario::AllDown => vec![6],
        Scenario::HalfClose | Scenario::Stall => vec![0, 9],
        Scenario::MidTransfer => vec![0, 1],
        // Every kind of fault on one backend, and whole pools down.
        Scenario::Services => vec![0, 1, 2, 3, 4, 7, 9],
        Scenario::Mix => {
            // Swarm testing: each seed turns a random subset of the faults on.
            let mut k: Vec<u8> = (0..=6).filter(|_| rng.gen_bool(0.5)).collect();
            if k.is_empty() {
                k.push(rng.gen_range(0..=6));
            }
            k
        }
    };
    while t < end {
        t += span(rng, ms(300), ms(2500));
        let kind = kinds[rng.gen_range(0..kinds.len())];
        let b = rng.gen_range(0..n);
        let steps: Vec<(Duration, Fault)> = match kind {
            // crash for a while
            0 => {
                let d = span(rng, ms(200), detect * 3);
                vec![(t, Fault::Crash(b)), (t + d, Fault::Restart(b))]
            }
            // instant restart
            1 => vec![(t, Fault::Bounce(b))],
            // partition
            2 => {
                let d = span(rng, ms(200), detect * 3);
                vec![(t, Fault::Partition(b)), (t + d, Fault::Repair(b))]
            }
            // slow link
            3 => {
                let d = span(rng, ms(1000), ms(6000));
                let lat = span(rng, ms(10), plan.lb.check_timeout / 3);
                vec![(t, Fault::Slow(b, lat)), (t + d, Fault::Unslow(b))]
            }
            // stalled link, no loss
            4 => {
                let d = span(rng, ms(100), detect * 2);
                vec![(t, Fault::Hold(b)), (t + d, Fault::Release(b))]
            }
            // flap: down and up faster than fall / rise can follow
            5 => {
                let mut v = Vec::new();
                let mut u = t;
                let down_max = (plan.lb.interval * plan.lb.fall).max(ms(150));
                let up_max = (plan.lb.interval * plan.lb.rise).max(ms(150));
                for _ in 0..rng.gen_range(3..=8u32) {
                    let down = span(rng, ms(50), down_max);
                    let up = span(rng, ms(50), up_max);
                    v.push((u, Fault::Crash(b)));
                    v.push((u + down, Fault::Restart(b)));
                    u += down + up;
                }
                v
            }
            // everything down, then back (possibly one by one)
            6 => {
                let d = span(rng, ms(500), detect * 3);
                let mut v: Vec<(Duration, Fault)> = (0..n).map(|i| (t, Fault::Crash(i))).collect();
                for i in 0..n {
                    v.push((t + d + span(rng, ms(0), ms(800)), Fault::Restart(i)));
                }
                v
            }
            // every backend of one pool down, then back
            7 => {
                let d = span(rng, ms(500), detect * 3);
                let pool = plan.pools().swap_remove(plan.pool_of(b)).backends;
                let mut v: Vec<(Duration, Fault)> =
                    pool.iter().map(|&i| (t, Fault::Crash(i))).collect();
                for &i in &pool {
                    v.push((t + d + span(rng, ms(0), ms(800)), Fault::Restart(i)));
                }
                v
            }
            // nothing this time
            _ => Vec::new(),
        };
        let last = steps.iter().map(|(at, _)| *at).max().unwrap_or(t);
        if last >= end {
            break;
        }
        out.extend(steps);
        t = last;
    }
    out.sort_by_key(|(at, _)| *at);
    out
}

/// Operator episodes on a timeline from `warmup` to `chaos_end - margin`, one at a time:
/// a drain or disable and the enable that ends it, a removal and the reload that adds the
/// backend back, a weight change, an invalid file; and the addition of a backend the first
/// config did not list.
fn draw_ops(plan: &Plan, rng: &mut SimRng) -> Vec<(Duration, OpAction)> {
    let n = plan.backends.len();
    let start = plan.warmup + ms(300);
    let end = plan.chaos_end.saturating_sub(ms(800));
    let mut out = Vec::new();
    let mut t = start;
    let mut absent: Vec<usize> = (0..n).filter(|&b| !plan.initial[b]).collect();
    while t < end {
        t += ms(rng.gen_range(300..2000));
        let b = rng.gen_range(0..n);
        let d = ms(rng.gen_range(500..4000));
        let steps: Vec<(Duration, OpAction)> = match rng.gen_range(0..6u32) {
            // (Not for a backend no config has listed yet: the endpoint answers 404.)
            0 | 1 if !absent.contains(&b) => {
                let lb = rng.gen_range(0..plan.lbs);
                let action = if rng.gen_bool(0.5) {
                    AdminAction::Drain
                } else {
                    AdminAction::Disable
                };
                vec![
                    (
                        t,
                        OpAction::Admin {
                            lb,
                            backend: b,
                            action,
                        },
                    ),
                    (
                        t + d,
                        OpAction::Admin {
                            lb,
                            backend: b,
                            action: AdminAction::Enable,
                        },
                    ),
                ]
            }
            // (Never a pool's last backend.)
            2 if !absent.contains(&b) && plan.pools()[plan.pool_of(b)].backends.len() > 1 => {
                vec![
                    (t, OpAction::Reload(ReloadChange::Remove(b))),
                    (t + d, OpAction::Reload(ReloadChange::Add(b))),
                ]
            }
            4 if plan.services.is_none() || rng.gen_bool(0.3) => {
                vec![(t, OpAction::Reload(ReloadChange::Invalid))]
            }
            // (`services` has every backend in its first config: this is its other change.)
            4 | 5 if plan.services.is_some() => {
                let mut v = vec![(t, OpAction::Reload(ReloadChange::SwapListeners))];
                if rng.gen_bool(0.5) {
                    v.push((t + d, OpAction::Reload(ReloadChange::SwapListeners)));
                }
                v
            }
            // A weight, by a reload or (until the next reload) through the admin endpoint.
            3 if !absent.contains(&b) => {
                let w = rng.gen_range(1..=4);
                if rng.gen_bool(0.5) {
                    vec![(t, OpAction::Reload(ReloadChange::Weight(b, w)))]
                } else {
                    let lb = rng.gen_range(0..plan.lbs);
                    vec![(
                        t,
                        OpAction::Admin {
                            lb,
                            backend: b,
                            action: AdminAction::Weight(w),
                        },
                    )]
                }
            }
            _ => match absent.pop() {
                Some(new) => vec![(t, OpAction::Reload(ReloadChange::Add(new)))],
                None => Vec::new(),
            },
        };
        let last = steps.iter().map(|(at, _)| *at).max().unwrap_or(t);
        if last >= end {
            break;
        }
        out.extend(steps);
        t = last;
    }
    // A backend the first config did not list is added by the end in any case.
    for b in absent {
        out.push((end, OpAction::Reload(ReloadChange::Add(b))));
    }
    out.sort_by_key(|(at, _)| *at);
    out
}
