//! What a fuzz input means: a config and a sequence of driver events.
//!
//! Every value of these types is a valid scenario: out-of-range numbers are folded into
//! range when the config is built, and events may name flows, attempts, probes and
//! backends that do not exist or are already closed (the machines must ignore those).
//! The types derive `arbitrary::Arbitrary`, so any byte string decodes to a
//! scenario.

use lb_sans_io::config::{
    Algorithm, BackendAddress, BackendConfig, CheckType, Cidr, Config, ConfigDuration, Form,
    HealthCheckConfig, ListenerConfig, ListenerTimeouts, OnBackendDown, PerClientConfig,
    PoolConfig, PoolTimeouts, Protocol, TimeoutsConfig, DEFAULT_NAME, MAX_RETRIES, MAX_RISE_FALL,
    MAX_WEIGHT,
};
use lb_sans_io::ids::{BackendId, Side};
use lb_sans_io::pool::AdminState;
use std::net::SocketAddr;
use std::time::Duration;

/// Most backends a scenario configures.
pub const MAX_BACKENDS: usize = 16;
/// Most events a scenario runs (the rest of a longer input is ignored).
pub const MAX_OPS: usize = 512;
/// Most flows a scenario accepts (later `Accept`s are skipped); closed flows stay
/// addressable so that late events for them are exercised.
pub const MAX_FLOWS: usize = 64;
/// Largest read: the tokio driver reads 64 KiB at most.
pub const MAX_READ: usize = 64 * 1024;
/// Largest high watermark a scenario picks.
pub const MAX_HIGH_WATERMARK: u32 = 512 * 1024;

/// A whole fuzz case: the config, then the events in order.
#[derive(Clone, Debug, PartialEq, Eq, arbitrary::Arbitrary)]
pub struct Scenario {
    /// The pool's config and the flows' limits.
    pub config: ConfigSpec,
    /// The events, applied in order (at most [`MAX_OPS`]).
    pub ops: Vec<Op>,
}

/// The config, as raw numbers folded into their valid ranges by [`ConfigSpec::build`].
#[derive(Clone, Debug, PartialEq, Eq, arbitrary::Arbitrary)]
pub struct ConfigSpec {
    /// 1 to [`MAX_BACKENDS`] backends (an empty list means one default backend).
    pub backends: Vec<BackendSpec>,
    /// Index into the algorithms this build implements ([`available_algorithms`], taken
    /// from [`Algorithm::ALL`], so a new algorithm is fuzzed once it is available).
    pub algorithm: u8,
    /// `health_check.rise`, folded into 1..=100.
    pub rise: u8,
    /// `health_check.fall`, folded into 1..=100.
    pub fall: u8,
    /// `health_check.start_up`.
    pub start_up: bool,
    /// `health_check.interval` in ms, plus one.
    pub check_interval_ms: u16,
    /// `health_check.timeout` in ms, plus one.
    pub check_timeout_ms: u16,
    /// `timeouts.connect` in ms, plus one.
    pub connect_timeout_ms: u16,
    /// `timeouts.idle` in ms, plus one.
    pub idle_timeout_ms: u16,
    /// `timeouts.half_close` in ms, plus one.
    pub half_close_timeout_ms: u16,
    /// `retries`, folded into 0..=100.
    pub retries: u8,
    /// `slow_start` in ms (absent: no ramp).
    pub slow_start_ms: Option<u16>,
    /// `max_connections`, plus one.
    pub max_connections: u8,
    /// The flows' high watermark, folded into 1..=[`MAX_HIGH_WATERMARK`].
    pub high_watermark: u32,
    /// The flows' low watermark, folded below the high one.
    pub low_watermark: u32,
    /// The pool's seed.
    pub seed: u64,
}

/// One backend of a [`ConfigSpec`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, arbitrary::Arbitrary)]
pub struct BackendSpec {
    /// Weight, folded into 1..=1000.
    pub weight: u16,
    /// Per-backend connection limit (0 counts as 1).
    pub max_connections: Option<u8>,
}

/// Which side of a flow an event is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, arbitrary::Arbitrary)]
pub enum SideSel {
    /// The client connection.
    Client,
    /// The backend connection.
    Backend,
}

impl SideSel {
    /// The side it names.
    pub fn side(self) -> Side {
        match self {
            SideSel::Client => Side::Client,
            SideSel::Backend => Side::Backend,
        }
    }
}

/// The attempt number a connect outcome reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, arbitrary::Arbitrary)]
pub enum AttemptSel {
    /// The flow's latest `Connect`.
    Current,
    /// The one before it (a late completion of an abandoned attempt).
    Previous,
    /// Any number at all.
    Raw(u32),
}

/// How many queued bytes a write completion reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, arbitrary::Arbitrary)]
pub enum Amount {
    /// Everything queued for the side.
    All,
    /// Up to this many of the queued bytes (nothing is reported when that is zero).
    Some(u16),
    /// More than was queued (a driver bug the flow must survive): queued + 1 + this.
    TooMuch(u16),
}

/// How far the clock moves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, arbitrary::Arbitrary)]
pub enum Advance {
    /// Microseconds.
    Micros(u16),
    /// Milliseconds.
    Millis(u16),
    /// Seconds.
    Secs(u8),
    /// To the earliest deadline of the pool and the open flows.
    NextDeadline,
}

impl Advance {
    /// The step, or `None` for [`Advance::NextDeadline`].
    pub fn duration(self) -> Option<Duration> {
        match self {
            Advance::Micros(n) => Some(Duration::from_micros(n.into())),
            Advance::Millis(n) => Some(Duration::from_millis(n.into())),
            Advance::Secs(n) => Some(Duration::from_secs(n.into())),
            Advance::NextDeadline => None,
        }
    }
}

/// Which probe a probe result names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, arbitrary::Arbitrary)]
pub enum ProbeSel {
    /// The n-th (modulo) probe the driver still has outstanding.
    Outstanding(u8),
    /// The newest outstanding probe of backend n (modulo the backend count, numbered across
    /// the pools as in [`BackendSel`]).
    ForBackend(u8),
    /// Any id: never issued, or already answered or timed out (of pool n modulo the pool
    /// count).
    Raw(u16),
}

/// A balancer call for a flow it has never seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, arbitrary::Arbitrary)]
pub enum StrayCall {
    /// `FlowPool::route`, then `FlowPool::select`.
    Select,
    /// `FlowPool::connect_succeeded`.
    ConnectSucceeded,
    /// `FlowPool::connect_failed`.
    ConnectFailed,
    /// `FlowPool::close_flow`.
    CloseFlow,
}

/// Which backend an admin change names. With several pools, backends are numbered across
/// them (pool 0's first, then pool 1's, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq, arbitrary::Arbitrary)]
pub enum BackendSel {
    /// Backend n modulo the backend count (always a configured one).
    Index(u8),
    /// Id n as it is: a configured backend only when n is below the backend count; above
    /// it, id n of pool n modulo (pools + 1) with several pools (the last: no such pool),
    /// of the one pool otherwise.
    Raw(u8),
}

impl BackendSel {
    /// The id it names among `n` configured backends.
    pub fn resolve(self, n: usize) -> BackendId {
        match self {
            BackendSel::Index(k) => BackendId((usize::from(k) % n.max(1)) as u32),
            BackendSel::Raw(k) => BackendId(u32::from(k)),
        }
    }
}

/// An operator's admin request (`POST /backends/NAME/enable`, `/drain`, `/disable`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, arbitrary::Arbitrary)]
pub enum AdminSel {
    /// `/enable`.
    Enable,
    /// `/drain`.
    Drain,
    /// `/disable`.
    Disable,
}

impl AdminSel {
    /// The admin state it asks for.
    pub fn state(self) -> AdminState {
        match self {
            AdminSel::Enable => AdminState::Enabled,
            AdminSel::Drain => AdminState::Draining,
            AdminSel::Disable => AdminState::Disabled,
        }
    }
}

/// One driver event. `flow` picks among all flows accepted so far, open or closed
/// (modulo their number; skipped while there are none).
#[derive(Clone, Copy, Debug, PartialEq, Eq, arbitrary::Arbitrary)]
pub enum Op {
    /// A client connects (from an address derived from `client`). With two listeners
    /// ([`ConfigSpec::routes_by_name`]), `client` also picks the listener (even: the plain
    /// one, odd: the `sni` one) and, with the flow's number, the client's first bytes
    /// ([`crate::hello::client_stream`] of `client / 2`): a ClientHello in some form, or
    /// something else.
    Accept {
        /// Picks the client address (and the listener and first bytes).
        client: u8,
    },
    /// A backend connect completed.
    Connected {
        /// The flow.
        flow: u8,
        /// The attempt reported.
        attempt: AttemptSel,
    },
    /// A backend connect failed.
    ConnectFailed {
        /// The flow.
        flow: u8,
        /// The attempt reported.
        attempt: AttemptSel,
        /// The failure was this host's (`ConnectFailure::Local`), not the backend's.
        local: bool,
    },
    /// `len` bytes arrive on `side`. A faithful driver reads only an open, connected,
    /// unpaused side before its EOF; with `force` the read is delivered anyway.
    Read {
        /// The flow.
        flow: u8,
        /// The side read.
        side: SideSel,
        /// Bytes read (0 to 64 KiB - 1).
        len: u16,
        /// Deliver it even where a faithful driver could not have read.
        force: bool,
    },
    /// Bytes queued for `side` were written to its socket.
    Written {
        /// The flow.
        flow: u8,
        /// The side written.
        side: SideSel,
        /// How many.
        amount: Amount,
    },
    /// `side` sent FIN (same delivery rule as `Read`).
    Eof {
        /// The flow.
        flow: u8,
        /// The side.
        side: SideSel,
        /// Deliver it even where a faithful driver could not have seen it.
        force: bool,
    },
    /// `side` was reset or failed.
    Reset {
        /// The flow.
        flow: u8,
        /// The side.
        side: SideSel,
    },
    /// The driver gives up on the flow.
    Abort {
        /// The flow.
        flow: u8,
    },
    /// Time passes; every due timer (pool and flows) fires, as a driver that woke up would.
    Advance(Advance),
    /// `Flow::handle_timeout` before the flow's deadline (must be harmless).
    EarlyTimer {
        /// The flow.
        flow: u8,
    },
    /// `Balancer::handle_timeout` before the pools' deadline (must be harmless).
    PoolEarlyTimer,
    /// A health probe finished.
    ProbeResult {
        /// Which probe.
        probe: ProbeSel,
        /// Whether it passed.
        passed: bool,
    },
    /// A health probe could not run for a local reason (`ProbeOutcome::NotRun`).
    ProbeNotRun {
        /// Which probe.
        probe: ProbeSel,
    },
    /// `Flow::release` again, or on an open flow (must do nothing).
    Release {
        /// The flow.
        flow: u8,
    },
    /// A balancer call about a flow id it never saw, and any backend id.
    Stray {
        /// Which call.
        call: StrayCall,
        /// Picks the unknown flow id.
        flow: u16,
        /// The backend id (may be out of range).
        backend: u8,
    },
    /// An operator drains, disables or enables a backend (`Balancer::set_admin`), possibly one
    /// that does not exist (must be refused and change nothing).
    Admin {
        /// Which backend.
        backend: BackendSel,
        /// The state asked for.
        state: AdminSel,
    },
}

/// Every algorithm: a new one is fuzzed as soon as it is added to `Algorithm::ALL`.
pub fn available_algorithms() -> Vec<Algorithm> {
    Algorithm::ALL.to_vec()
}

fn ms(v: u16) -> ConfigDuration {
    ConfigDuration(Duration::from_millis(u64::from(v) + 1))
}

/// The `sni` patterns a scenario's `sni` listener may have, each routing to a pool the seed
/// picks (or left out): an exact name, two nested wildcards, an exact name written in upper
/// case, and a wildcard of another domain. See [`crate::hello::SERVER_NAMES`] for the names
/// clients send.
pub const SNI_PATTERNS: [&str; 5] = [
    "api.example.com",
    "*.example.com",
    "*.internal.example.com",
    "API2.Example.COM",
    "*.org",
];

/// The harness's own model of one listener: who it admits and where it routes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenerModel {
    /// `sni`: patterns as written and the index of the pool each routes to. Empty: the
    /// listener reads no ClientHello.
    pub sni: Vec<(String, usize)>,
    /// The listener's `pool` (its clients that no `sni` pattern takes).
    pub default: Option<usize>,
    /// `allow`, as the third octets of the client addresses it admits (clients are
    /// `192.168.X.Y`; see [`client_addr`]). `None`: every client.
    pub allow: Option<std::ops::Range<u8>>,
    /// `max_connections`.
    pub max_connections: u32,
    /// `per_client.max_connections`.
    pub per_client_max: Option<u32>,
}

impl ListenerModel {
    /// The pool a client naming `server_name` (as a reader gives it: lower case) goes to,
    /// by the documented rule, written here independently of `lb_sans_io::sni::SniRoutes`:
    /// the exact name (patterns match in any case), else the longest `*.suffix` it ends in
    /// (a wildcard does not match its own suffix), else the listener's `pool`; `None`:
    /// refused with `no_route`.
    pub fn route(&self, server_name: Option<&str>) -> Option<usize> {
        let Some(name) = server_name.filter(|_| !self.sni.is_empty()) else {
            return self.default;
        };
        let patterns = || self.sni.iter().map(|(p, to)| (p.to_ascii_lowercase(), *to));
        if let Some((_, to)) = patterns().find(|(p, _)| p == name) {
            return Some(to);
        }
        patterns()
            .filter_map(|(p, to)| {
                let suffix = p.strip_prefix('*')?.to_string();
                (name.len() > suffix.len() && name.ends_with(&suffix)).then_some((suffix, to))
            })
            .max_by_key(|(suffix, _)| suffix.len())
            .map(|(_, to)| to)
            .or(self.default)
    }

    /// Whether `allow` admits client `client` ([`client_addr`]).
    pub fn allows(&self, client: u8) -> bool {
        self.allow
            .as_ref()
            .is_none_or(|octets| octets.contains(&(client % 16)))
    }

    /// Whether it reads a ClientHello first.
    pub fn routes_by_name(&self) -> bool {
        !self.sni.is_empty()
    }
}

/// A scenario's listeners and pools as the harness models them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Topology {
    /// Listener `i` is the balancer's `ListenerId(i)`.
    pub listeners: Vec<ListenerModel>,
    /// Pool `p`'s backend addresses (pool `p` is the balancer's `PoolId(p)`).
    pub addrs: Vec<Vec<SocketAddr>>,
}

impl Topology {
    /// The listener client `client` connects to: listener 0 with one listener; with two,
    /// even clients the plain one, odd clients the `sni` one.
    pub fn listener_of(&self, client: u8) -> usize {
        usize::from(client) % self.listeners.len()
    }
}

/// What [`ConfigSpec::build`] makes of a spec.
#[derive(Clone, Debug)]
pub struct Built {
    /// The config; it always passes [`Config::validate`].
    pub config: Config,
    /// The listeners and pools as the harness models them.
    pub topology: Topology,
    /// The flows' high watermark (`Balancer::set_watermarks`).
    pub high_watermark: usize,
    /// The flows' low watermark.
    pub low_watermark: usize,
}

/// Backend `i`'s address (of the first pool).
pub fn backend_addr(i: usize) -> SocketAddr {
    pool_backend_addr(0, i)
}

/// The address of backend `i` of pool `p`: each pool's backends are in their own network,
/// so a connect to another pool's backend is told from a connect to one of its own.
pub fn pool_backend_addr(p: usize, i: usize) -> SocketAddr {
    SocketAddr::from(([10, p as u8, (i / 250) as u8, (i % 250) as u8 + 1], 8000))
}

/// The address of the client an `Accept { client }` names.
pub fn client_addr(client: u8) -> SocketAddr {
    SocketAddr::from((
        [192, 168, client % 16, client / 16 + 1],
        40_000 + u16::from(client),
    ))
}

impl ConfigSpec {
    /// The spec of a config with `n` backends, all up from the start, and defaults
    /// elsewhere; a base for hand-written scenarios.
    pub fn simple(n: usize) -> ConfigSpec {
        ConfigSpec {
            backends: vec![
                BackendSpec {
                    weight: 1,
                    max_connections: None,
                };
                n
            ],
            algorithm: 0,
            rise: 1,
            fall: 1,
            start_up: true,
            check_interval_ms: 999,
            check_timeout_ms: 499,
            connect_timeout_ms: 999,
            idle_timeout_ms: 9_999,
            half_close_timeout_ms: 4_999,
            retries: 2,
            slow_start_ms: None,
            max_connections: 255,
            high_watermark: 100,
            low_watermark: 40,
            seed: 1,
        }
    }

    /// `per_client.max_connections` (1 to 3), for a quarter of the seeds. Drawn from the
    /// seed's bits so that saved fuzz inputs keep their meaning.
    pub fn per_client_max(&self) -> Option<u32> {
        (self.seed >> 4 & 3 == 1).then(|| 1 + (self.seed >> 8) as u32 % 3)
    }

    /// `on_backend_down: close`, for half of the seeds (from the seed's bits, as above).
    pub fn closes_on_backend_down(&self) -> bool {
        self.pool_closes_on_backend_down(0)
    }

    /// `on_backend_down: close` for pool `p` (pool 0: as [`ConfigSpec::closes_on_backend_down`]).
    fn pool_closes_on_backend_down(&self, p: usize) -> bool {
        self.seed >> [6, 7, 11][p.min(2)] & 1 == 1
    }

    /// Two listeners and two or three pools (a quarter of the seeds, from bits 12 and 13);
    /// otherwise the flat config of one listener and one pool, as before listeners and
    /// pools existed, so that saved fuzz inputs of other seeds keep their meaning.
    pub fn routes_by_name(&self) -> bool {
        self.seed >> 12 & 3 == 3
    }

    /// This spec with two listeners and `pools` pools (2 or 3), the `sni` listener's
    /// default pool `default` (`None`: it refuses unmatched clients), and the `sni`
    /// patterns routed as `sni` says: for each of [`SNI_PATTERNS`], the pool it routes to
    /// (`None`: left out). Pools no pattern names are routed to by `pN.example.net`. No
    /// `allow`. Sets the seed's bits that [`ConfigSpec::build`] reads.
    #[must_use]
    pub fn with_routes(
        mut self,
        pools: usize,
        default: Option<usize>,
        sni: [Option<usize>; 5],
    ) -> ConfigSpec {
        assert!((2..=3).contains(&pools), "2 or 3 pools");
        let mut seed = self.seed & !(0x3ff_ffff << 12);
        seed |= 3 << 12;
        seed |= ((pools - 2) as u64) << 14;
        let d = match default {
            None => 0,
            Some(0) => 1,
            Some(1) => 2,
            Some(p) => {
                assert_eq!(p, pools - 1, "the default is pool 0, 1 or the last");
                3
            }
        };
        seed |= d << 15;
        for (k, to) in sni.iter().enumerate() {
            let v = match to {
                Some(p) => {
                    assert!(*p < pools);
                    *p as u64
                }
                None => 3,
            };
            seed |= v << (20 + 2 * k);
        }
        self.seed = seed;
        self
    }

    /// The topology of [`ConfigSpec::routes_by_name`] configs, from the seed's bits: the
    /// pool count (bit 14), the `sni` listener's default pool (bits 15–16), `allow` on each
    /// listener (bits 17 and 18), the pool of each `sni` pattern (bits 20–29) and the
    /// `client_hello` timeout (bits 32–42).
    fn routed_topology(&self, max_connections: u32) -> (usize, Vec<ListenerModel>) {
        let pools = 2 + (self.seed >> 14 & 1) as usize;
        let default = match self.seed >> 15 & 3 {
            0 => None,
            1 => Some(0),
            2 => Some(1),
            _ => Some(pools - 1),
        };
        let mut sni: Vec<(String, usize)> = SNI_PATTERNS
            .iter()
            .enumerate()
            .filter_map(|(k, pattern)| {
                let v = (self.seed >> (20 + 2 * k) & 3) as usize;
                (v < 3).then(|| (pattern.to_string(), v % pools))
            })
            .collect();
        // Every pool must be used (validation): a pattern for each one nothing names.
        for p in 1..pools {
            if default != Some(p) && sni.iter().all(|(_, to)| *to != p) {
                sni.push((format!("p{p}.example.net"), p));
            }
        }
        if sni.is_empty() {
            // Only possible with a default pool: still a listener that reads ClientHellos.
            sni.push(("p1.example.net".to_string(), 1));
        }
        let per_client_max = self.per_client_max();
        let plain = ListenerModel {
            sni: Vec::new(),
            default: Some(0),
            allow: (self.seed >> 17 & 1 == 1).then_some(0..8),
            max_connections,
            per_client_max,
        };
        let tls = ListenerModel {
            sni,
            default,
            allow: (self.seed >> 18 & 1 == 1).then_some(8..16),
            max_connections,
            per_client_max,
        };
        (pools, vec![plain, tls])
    }

    /// `timeouts.client_hello`: 100 ms to 16.5 s, from the seed (bits 32–42).
    fn client_hello_timeout(&self) -> ConfigDuration {
        ConfigDuration(Duration::from_millis(100 + 8 * (self.seed >> 32 & 0x7ff)))
    }

    /// The config this spec stands for, the harness's model of its listeners and pools,
    /// and the watermarks. The config always passes [`Config::validate`].
    pub fn build(&self) -> Built {
        let mut specs: Vec<BackendSpec> =
            self.backends.iter().take(MAX_BACKENDS).copied().collect();
        if specs.is_empty() {
            specs.push(BackendSpec {
                weight: 1,
                max_connections: None,
            });
        }
        let available = available_algorithms();
        let max_connections = u32::from(self.max_connections) + 1;
        let (pool_count, listeners) = if self.routes_by_name() {
            self.routed_topology(max_connections)
        } else {
            let flat = ListenerModel {
                sni: Vec::new(),
                default: Some(0),
                allow: None,
                max_connections,
                per_client_max: self.per_client_max(),
            };
            (1, vec![flat])
        };
        // The backends, dealt to the pools in turn (a pool left without one gets a copy of
        // the first).
        let mut addrs = Vec::new();
        let mut pools = Vec::new();
        for p in 0..pool_count {
            let mut mine: Vec<BackendSpec> = specs
                .iter()
                .enumerate()
                .filter(|(i, _)| i % pool_count == p)
                .map(|(_, b)| *b)
                .collect();
            if mine.is_empty() {
                mine.push(specs[0]);
            }
            let a: Vec<SocketAddr> = (0..mine.len()).map(|i| pool_backend_addr(p, i)).collect();
            pools.push(PoolConfig {
                name: if pool_count == 1 {
                    DEFAULT_NAME.to_string()
                } else {
                    format!("p{p}")
                },
                algorithm: available[(usize::from(self.algorithm) + p) % available.len()],
                backends: mine
                    .iter()
                    .enumerate()
                    .map(|(i, b)| BackendConfig {
                        name: format!("b{i}"),
                        address: BackendAddress::Socket(a[i]),
                        weight: 1 + u32::from(b.weight) % MAX_WEIGHT,
                        max_connections: b.max_connections.map(|m| u32::from(m.max(1))),
                    })
                    .collect(),
                health_check: HealthCheckConfig {
                    kind: CheckType::Tcp,
                    interval: ms(self.check_interval_ms),
                    timeout: ms(self.check_timeout_ms),
                    rise: 1 + u32::from(self.rise) % MAX_RISE_FALL,
                    fall: 1 + u32::from(self.fall) % MAX_RISE_FALL,
                    start_up: self.start_up,
                    send: None,
                    expect: None,
                    path: None,
                },
                retries: u32::from(self.retries) % (MAX_RETRIES + 1),
                slow_start: self
                    .slow_start_ms
                    .map(|v| ConfigDuration(Duration::from_millis(v.into()))),
                proxy_protocol: None,
                on_backend_down: if self.pool_closes_on_backend_down(p) {
                    OnBackendDown::Close
                } else {
                    OnBackendDown::Keep
                },
                timeouts: PoolTimeouts {
                    connect: ms(self.connect_timeout_ms),
                },
                tcp_keepalive: None,
                discover: None,
            });
            addrs.push(a);
        }
        let timeouts = TimeoutsConfig {
            connect: ms(self.connect_timeout_ms),
            idle: ms(self.idle_timeout_ms),
            half_close: ms(self.half_close_timeout_ms),
            client_hello: self.client_hello_timeout(),
            shutdown_grace: ConfigDuration(Duration::from_secs(30)),
        };
        let flat = listeners.len() == 1;
        let config = Config {
            listeners: listeners
                .iter()
                .enumerate()
                .map(|(i, l)| ListenerConfig {
                    name: if flat {
                        DEFAULT_NAME.to_string()
                    } else {
                        ["plain", "tls"][i].to_string()
                    },
                    listen: SocketAddr::from(([127, 0, 0, 1], 8080 + i as u16)),
                    protocol: Protocol::Tcp,
                    pool: l.default.map(|p| pools[p].name.clone()),
                    sni: l
                        .sni
                        .iter()
                        .map(|(pattern, to)| (pattern.clone(), pools[*to].name.clone()))
                        .collect(),
                    allow: l.allow.as_ref().map(|octets| {
                        let net =
                            format!("192.168.{}.0/{}", octets.start, 24 - (octets.len().ilog2()));
                        vec![Cidr::parse(&net).expect("a valid network")]
                    }),
                    max_connections: l.max_connections,
                    per_client: l.per_client_max.map(|m| PerClientConfig {
                        max_connections: Some(m),
                        connection_rate: None,
                    }),
                    timeouts: ListenerTimeouts {
                        idle: timeouts.idle,
                        half_close: timeouts.half_close,
                        client_hello: timeouts.client_hello,
                    },
                    tcp_keepalive: None,
                })
                .collect(),
            pools,
            timeouts,
            admin: None,
            form: if flat { Form::Flat } else { Form::Named },
        };
        let high = 1 + self.high_watermark % MAX_HIGH_WATERMARK;
        Built {
            config,
            topology: Topology { listeners, addrs },
            high_watermark: high as usize,
            low_watermark: (self.low_watermark % high) as usize,
        }
    }
}
