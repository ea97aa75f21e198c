//! What a fuzz input means: a config and a sequence of driver events.
//!
//! Every value of these types is a valid scenario: out-of-range numbers are folded into
//! range when the config is built, and events may name flows, attempts, probes and
//! backends that do not exist or are already closed (the machines must ignore those).
//! The types derive `arbitrary::Arbitrary`, so any byte string decodes to a
//! scenario.

use lb_sans_io::config::{
    Algorithm, BackendAddress, BackendConfig, CheckType, Config, ConfigDuration, HealthCheckConfig,
    OnBackendDown, PerClientConfig, TimeoutsConfig, MAX_RETRIES, MAX_RISE_FALL, MAX_WEIGHT,
};
use lb_sans_io::flow::FlowLimits;
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
    /// The newest outstanding probe of backend n (modulo the backend count).
    ForBackend(u8),
    /// Any id: never issued, or already answered or timed out.
    Raw(u16),
}

/// A pool call for a flow the pool has never seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, arbitrary::Arbitrary)]
pub enum StrayCall {
    /// `Pool::select`.
    Select,
    /// `Pool::connect_succeeded`.
    ConnectSucceeded,
    /// `Pool::connect_failed`.
    ConnectFailed,
    /// `Pool::close_flow`.
    CloseFlow,
}

/// Which backend an admin change names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, arbitrary::Arbitrary)]
pub enum BackendSel {
    /// Backend n modulo the backend count (always a configured one).
    Index(u8),
    /// Id n as it is: a configured backend only when n is below the backend count.
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
    /// A client connects (from an address derived from `client`).
    Accept {
        /// Picks the client address.
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
    /// `Pool::handle_timeout` before the pool's deadline (must be harmless).
    PoolEarlyTimer,
    /// A health probe finished.
    ProbeResult {
        /// Which probe.
        probe: ProbeSel,
        /// Whether it passed.
        passed: bool,
    },
    /// A health probe could not run for a local reason (`Pool::handle_probe_failed` with `ConnectFailure::Local`).
    ProbeNotRun {
        /// Which probe.
        probe: ProbeSel,
    },
    /// `Flow::release` again, or on an open flow (must do nothing).
    Release {
        /// The flow.
        flow: u8,
    },
    /// A pool call about a flow id the pool never saw, and any backend id.
    Stray {
        /// Which call.
        call: StrayCall,
        /// Picks the unknown flow id.
        flow: u16,
        /// The backend id (may be out of range).
        backend: u8,
    },
    /// An operator drains, disables or enables a backend (`Pool::set_admin`), possibly one
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

/// Backend `i`'s address.
pub fn backend_addr(i: usize) -> SocketAddr {
    SocketAddr::from(([10, 0, (i / 250) as u8, (i % 250) as u8 + 1], 8000))
}

/// The address of the client an `Accept { client }` names.
pub fn client_addr(client: u8) -> SocketAddr {
    SocketAddr::from((
        [192, 168, client % 16, client / 16 + 1],
        40_000 + u16::from(client),
    ))
}

fn ms(v: u16) -> ConfigDuration {
    ConfigDuration(Duration::from_millis(u64::from(v) + 1))
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
        self.seed >> 6 & 1 == 1
    }

    /// The config and flow limits this spec stands for, and the backends' addresses.
    /// The config always passes [`Config::validate`].
    pub fn build(&self) -> (Config, FlowLimits, Vec<SocketAddr>) {
        let mut specs: Vec<BackendSpec> =
            self.backends.iter().take(MAX_BACKENDS).copied().collect();
        if specs.is_empty() {
            specs.push(BackendSpec {
                weight: 1,
                max_connections: None,
            });
        }
        let addrs: Vec<SocketAddr> = (0..specs.len()).map(backend_addr).collect();
        let available = available_algorithms();
        let config = Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            algorithm: available[usize::from(self.algorithm) % available.len()],
            backends: specs
                .iter()
                .enumerate()
                .map(|(i, b)| BackendConfig {
                    name: format!("b{i}"),
                    address: BackendAddress::Socket(addrs[i]),
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
            timeouts: TimeoutsConfig {
                connect: ms(self.connect_timeout_ms),
                idle: ms(self.idle_timeout_ms),
                half_close: ms(self.half_close_timeout_ms),
                shutdown_grace: ConfigDuration(Duration::from_secs(30)),
            },
            retries: u32::from(self.retries) % (MAX_RETRIES + 1),
            slow_start: self
                .slow_start_ms
                .map(|v| ConfigDuration(Duration::from_millis(v.into()))),
            max_connections: u32::from(self.max_connections) + 1,
            proxy_protocol: None,
            allow: None,
            per_client: self.per_client_max().map(|m| PerClientConfig {
                max_connections: Some(m),
                connection_rate: None,
            }),
            on_backend_down: if self.closes_on_backend_down() {
                OnBackendDown::Close
            } else {
                OnBackendDown::Keep
            },
            admin: None,
            tcp_keepalive: None,
        };
        let mut limits = FlowLimits::from_config(&config);
        let high = 1 + self.high_watermark % MAX_HIGH_WATERMARK;
        limits.high_watermark = high as usize;
        limits.low_watermark = (self.low_watermark % high) as usize;
        (config, limits, addrs)
    }
}
