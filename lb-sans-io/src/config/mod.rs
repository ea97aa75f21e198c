//! The config file: its serde types, its defaults, and validation whose every error names
//! the field at fault (`backends[1].address: invalid socket address "localhost"`).
//!
//! Parsing is pure: host names in backend addresses are kept as written and resolved by
//! the driver at load time.

mod address;
mod cidr;
mod discover;
mod duration;
mod entries;
mod limits;
mod raw;
mod shape;
mod suggest;
mod validate;

pub use address::BackendAddress;
pub use cidr::Cidr;
pub use discover::{DiscoverConfig, DiscoverTarget};
pub use duration::ConfigDuration;
pub use limits::{PerClientConfig, Rate};

use serde::{Deserialize, Serialize};
use serde_path_to_error::Segment;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;
#[cfg(test)]
use suggest::edit_distance;

/// Largest accepted backend weight.
pub const MAX_WEIGHT: u32 = 1000;
/// Longest backend `name`, in bytes (names appear in logs, metrics and admin URLs).
pub const MAX_NAME_LEN: usize = 255;
/// Largest accepted `retries`.
pub const MAX_RETRIES: u32 = 100;
/// Largest accepted `rise` / `fall`.
pub const MAX_RISE_FALL: u32 = 100;
/// Longest `tcp_keepalive.idle` and `.interval`, in seconds (Linux's `MAX_TCP_KEEPIDLE` and
/// `MAX_TCP_KEEPINTVL`).
pub const MAX_KEEPALIVE_SECS: u64 = 32_767;
/// Largest `tcp_keepalive.count` (Linux's `MAX_TCP_KEEPCNT`).
pub const MAX_KEEPALIVE_COUNT: u32 = 127;

/// The whole config, normalised: the listeners clients connect to and the pools of
/// backends they reach. The flat form of the file (`listen`, `backends`, ... at the top
/// level) is one listener and one pool, both named `default`.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// The listeners, in file order (at least one); a listener's index is its
    /// [`crate::ListenerId`] when the config is first loaded.
    pub listeners: Vec<ListenerConfig>,
    /// The pools, in file order (at least one, each used by a listener).
    pub pools: Vec<PoolConfig>,
    /// The top-level timeouts: defaults for listeners and pools, and the process-wide
    /// `shutdown_grace`.
    pub timeouts: TimeoutsConfig,
    /// Address of the admin HTTP endpoint; absent disables it.
    pub admin: Option<SocketAddr>,
    /// Which form the file was written in; [`Config::to_json`] writes the same.
    pub form: Form,
}

/// The two ways of writing a config file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Form {
    /// One service: `listen`, `backends` and the rest at the top level.
    Flat,
    /// `listeners` and `pools`.
    Named,
}

/// The name of the listener and the pool of a flat config.
pub const DEFAULT_NAME: &str = "default";

/// A listener: an address clients connect to, and how they are admitted and routed.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ListenerConfig {
    /// Unique among listeners; defaults to the `listen` address as written.
    pub name: String,
    /// The address to listen on.
    #[serde(with = "address::socket_addr")]
    pub listen: SocketAddr,
    /// `tcp` (the only one supported yet).
    pub protocol: Protocol,
    /// The pool for this listener's clients (those no `sni` entry routes elsewhere).
    /// Absent only with `sni`: then an unmatched client is rejected (`no_route`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    /// TLS server name patterns (`api.example.com`, `*.example.com`) and the pool each
    /// routes to, in file order. Empty: no ClientHello is read.
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        serialize_with = "entries_as_object"
    )]
    pub sni: Vec<(String, String)>,
    /// Client networks allowed to connect; others are closed at accept and counted as
    /// rejected. Absent: every client is allowed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow: Option<Vec<Cidr>>,
    /// Most client connections of this listener open at once. Default 10000.
    pub max_connections: u32,
    /// Limits on each client IP address (`per_client_limit`). Absent: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_client: Option<PerClientConfig>,
    /// Client-side timeouts.
    pub timeouts: ListenerTimeouts,
    /// TCP keepalive on client sockets. Absent: off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp_keepalive: Option<TcpKeepaliveConfig>,
}

/// A listener's protocol.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(remote = "Self", rename_all = "snake_case")]
pub enum Protocol {
    /// TCP connections, each proxied to one backend.
    #[default]
    Tcp,
    /// UDP datagrams (planned; a config error for now).
    Udp,
}

/// A listener's client-side timeouts (each defaults to the top-level one).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct ListenerTimeouts {
    /// No byte in either direction for this long closes the connection.
    pub idle: ConfigDuration,
    /// After one side's FIN, how long the other direction may stay open with no traffic.
    pub half_close: ConfigDuration,
    /// With `sni`: how long the client may take to send its whole ClientHello.
    pub client_hello: ConfigDuration,
}

/// A pool: backends, how one is chosen, and how they are checked and connected to.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PoolConfig {
    /// Unique among pools (the key in `pools`; `default` in the flat form).
    #[serde(skip)]
    pub name: String,
    /// How a backend is chosen for each new connection. Default `round_robin`.
    pub algorithm: Algorithm,
    /// The backends, in order; a backend's index is its [`crate::BackendId`].
    pub backends: Vec<BackendConfig>,
    /// Active health checks.
    pub health_check: HealthCheckConfig,
    /// How many other backends a client's connection is tried on after a failed connect.
    /// Default 2.
    pub retries: u32,
    /// A backend that comes up ramps from 10% to its full weight linearly over this long
    /// (weighted algorithms). Absent: no ramp.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slow_start: Option<ConfigDuration>,
    /// Send a PROXY protocol header to backends (and probes) first. Absent: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy_protocol: Option<ProxyProtocol>,
    /// What happens to a backend's open connections when health checks mark it down.
    /// Default `keep`.
    #[serde(skip_serializing_if = "OnBackendDown::is_keep")]
    pub on_backend_down: OnBackendDown,
    /// Backend-side timeouts.
    pub timeouts: PoolTimeouts,
    /// TCP keepalive on backend sockets. Absent: off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp_keepalive: Option<TcpKeepaliveConfig>,
    /// Backends from DNS, besides `backends`. Absent: `backends` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub discover: Option<DiscoverConfig>,
}

/// A pool's timeouts (each defaults to the top-level one).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct PoolTimeouts {
    /// Backend connect.
    pub connect: ConfigDuration,
}

fn entries_as_object<S: serde::Serializer>(
    entries: &[(String, String)],
    s: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut map = s.serialize_map(Some(entries.len()))?;
    for (k, v) in entries {
        map.serialize_entry(k, v)?;
    }
    map.end()
}

/// `on_backend_down`: what happens to a backend's open connections when its health checks
/// mark it down (an operator's drain or disable never closes any).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(remote = "Self", rename_all = "snake_case")]
pub enum OnBackendDown {
    /// They go on (they end when the backend's failure reaches them, or normally).
    #[default]
    Keep,
    /// They are reset at once.
    Close,
}

impl OnBackendDown {
    fn is_keep(&self) -> bool {
        *self == OnBackendDown::Keep
    }
}

/// Selection algorithms named by `"algorithm"`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(remote = "Self", rename_all = "snake_case")]
pub enum Algorithm {
    /// Equal turns in configured order, weights ignored.
    #[default]
    RoundRobin,
    /// Smooth weighted round robin as nginx does it.
    WeightedRoundRobin,
    /// Fewest active connections relative to weight.
    LeastConnections,
    /// Lowest peak-EWMA latency times (active + 1).
    LeastResponseTime,
    /// Maglev consistent hashing of the client IP.
    Hash,
    /// Uniformly random.
    Random,
    /// Two random picks, fewer active connections relative to weight wins.
    PowerOfTwo,
}

impl Algorithm {
    /// The config name of the algorithm.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::RoundRobin => "round_robin",
            Algorithm::WeightedRoundRobin => "weighted_round_robin",
            Algorithm::LeastConnections => "least_connections",
            Algorithm::LeastResponseTime => "least_response_time",
            Algorithm::Hash => "hash",
            Algorithm::Random => "random",
            Algorithm::PowerOfTwo => "power_of_two",
        }
    }

    /// Every algorithm.
    pub const ALL: [Algorithm; 7] = [
        Algorithm::RoundRobin,
        Algorithm::WeightedRoundRobin,
        Algorithm::LeastConnections,
        Algorithm::LeastResponseTime,
        Algorithm::Hash,
        Algorithm::Random,
        Algorithm::PowerOfTwo,
    ];
}

/// One backend server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self", deny_unknown_fields)]
pub struct BackendConfig {
    /// Unique name used in logs and metrics, at most [`MAX_NAME_LEN`] bytes. Defaults to
    /// the address as written.
    #[serde(default)]
    pub name: String,
    /// `IP:PORT`, `[IPv6]:PORT` or `host:port` (resolved when the config is loaded).
    pub address: BackendAddress,
    /// Relative weight, 1..=1000. Default 1.
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// Most connections open to this backend at once; absent means no per-backend limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<u32>,
}

/// The PROXY protocol version sent to backends (`"v1"`: text, `"v2"`: binary).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(remote = "Self", rename_all = "snake_case")]
pub enum ProxyProtocol {
    /// `PROXY TCP4 src dst sport dport\r\n`.
    V1,
    /// The binary header.
    V2,
}

/// Kinds of active health check.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(remote = "Self", rename_all = "snake_case")]
pub enum CheckType {
    /// A TCP connect that succeeds within the timeout; with `send` / `expect`, also an
    /// exchange of bytes.
    #[default]
    Tcp,
    /// An HTTP/1.1 `GET` of `path` whose status must be 2xx or 3xx.
    Http,
}

impl CheckType {
    /// The config name.
    pub fn name(self) -> &'static str {
        match self {
            CheckType::Tcp => "tcp",
            CheckType::Http => "http",
        }
    }
}

/// Longest `send`, `expect` or `path` of a health check.
pub const MAX_CHECK_TEXT: usize = 4096;

/// `health_check`: how backends are probed and when they change state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self", deny_unknown_fields)]
pub struct HealthCheckConfig {
    /// The kind of probe. Default `tcp`.
    #[serde(rename = "type", default)]
    pub kind: CheckType,
    /// Time between probes of one backend. Default 1s.
    #[serde(default = "default_interval")]
    pub interval: ConfigDuration,
    /// A probe that has not succeeded after this long has failed. Default 500ms.
    #[serde(default = "default_check_timeout")]
    pub timeout: ConfigDuration,
    /// Consecutive successes that bring a down backend up. Default 2.
    #[serde(default = "default_rise_fall")]
    pub rise: u32,
    /// Consecutive failures that take an up backend down. Default 2.
    #[serde(default = "default_rise_fall")]
    pub fall: u32,
    /// Treat backends as up before their first check. Default false: a backend starts
    /// down and its first successful check brings it up.
    #[serde(default)]
    pub start_up: bool,
    /// `tcp` only: bytes the probe writes once connected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send: Option<String>,
    /// `tcp` only: the probe passes once the reply contains these bytes (and fails if the
    /// backend closes first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect: Option<String>,
    /// `http` only: the path requested. Default `/health`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

/// The top-level `timeouts`, resolved: the defaults listeners and pools take, and the
/// process-wide `shutdown_grace`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct TimeoutsConfig {
    /// Backend connect. Default 1s.
    pub connect: ConfigDuration,
    /// No byte in either direction for this long closes the connection. Default 5m.
    pub idle: ConfigDuration,
    /// After one side's FIN, how long the other direction may stay open with no traffic.
    /// Default 1m.
    pub half_close: ConfigDuration,
    /// With `sni`: how long a client may take to send its whole ClientHello. Default 5s.
    pub client_hello: ConfigDuration,
    /// On SIGTERM/SIGINT, how long open connections may take to finish. Default 30s.
    pub shutdown_grace: ConfigDuration,
}

// Each read only from its own JSON shape (see `shape`; `raw` has the file's own objects).
shape::object_only!(BackendConfig);
shape::object_only!(HealthCheckConfig);
shape::string_only!(Protocol);
shape::object_only!(TcpKeepaliveConfig);
shape::string_only!(Algorithm);
shape::string_only!(CheckType);
shape::string_only!(ProxyProtocol);
shape::string_only!(OnBackendDown);
shape::object_only!(PerClientConfig);

/// `tcp_keepalive`: the kernel probes a connection that has been silent for `idle`, every
/// `interval`, and gives it up (resets it) after `count` probes go unanswered. Whole
/// seconds, as the kernel counts them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(remote = "Self", deny_unknown_fields)]
pub struct TcpKeepaliveConfig {
    /// Silence before the first probe. Default 60s.
    #[serde(default = "default_keepalive_idle")]
    pub idle: ConfigDuration,
    /// Time between unanswered probes. Default 10s.
    #[serde(default = "default_keepalive_interval")]
    pub interval: ConfigDuration,
    /// Unanswered probes before the connection is given up. Default 6.
    #[serde(default = "default_keepalive_count")]
    pub count: u32,
}

impl Default for TcpKeepaliveConfig {
    fn default() -> Self {
        TcpKeepaliveConfig {
            idle: default_keepalive_idle(),
            interval: default_keepalive_interval(),
            count: default_keepalive_count(),
        }
    }
}

fn default_keepalive_idle() -> ConfigDuration {
    ConfigDuration(Duration::from_secs(60))
}
fn default_keepalive_interval() -> ConfigDuration {
    ConfigDuration(Duration::from_secs(10))
}
fn default_keepalive_count() -> u32 {
    6
}

pub(crate) fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}
pub(crate) fn default_retries() -> u32 {
    2
}
pub(crate) fn default_max_connections() -> u32 {
    10_000
}
fn default_weight() -> u32 {
    1
}
fn default_rise_fall() -> u32 {
    2
}
fn default_interval() -> ConfigDuration {
    ConfigDuration(Duration::from_secs(1))
}
fn default_check_timeout() -> ConfigDuration {
    ConfigDuration(Duration::from_millis(500))
}
pub(crate) fn default_connect() -> ConfigDuration {
    ConfigDuration(Duration::from_secs(1))
}
pub(crate) fn default_idle() -> ConfigDuration {
    ConfigDuration(Duration::from_secs(300))
}
pub(crate) fn default_half_close() -> ConfigDuration {
    ConfigDuration(Duration::from_secs(60))
}
pub(crate) fn default_shutdown_grace() -> ConfigDuration {
    ConfigDuration(Duration::from_secs(30))
}
pub(crate) fn default_client_hello() -> ConfigDuration {
    ConfigDuration(Duration::from_secs(5))
}

impl HealthCheckConfig {
    /// The path an `http` check requests.
    pub fn http_path(&self) -> &str {
        self.path.as_deref().unwrap_or("/health")
    }

    /// The kind of check, for the summary line: `tcp`, `tcp send/expect`, `http GET /health`.
    pub fn describe(&self) -> String {
        match self.kind {
            CheckType::Tcp if self.send.is_some() || self.expect.is_some() => {
                "tcp send/expect".to_string()
            }
            CheckType::Tcp => "tcp".to_string(),
            CheckType::Http => format!("http GET {}", self.http_path()),
        }
    }
}

impl Default for HealthCheckConfig {
    fn default() -> Self {
        HealthCheckConfig {
            kind: CheckType::Tcp,
            interval: default_interval(),
            timeout: default_check_timeout(),
            rise: default_rise_fall(),
            fall: default_rise_fall(),
            start_up: false,
            send: None,
            expect: None,
            path: None,
        }
    }
}

impl Default for TimeoutsConfig {
    fn default() -> Self {
        TimeoutsConfig {
            connect: default_connect(),
            idle: default_idle(),
            half_close: default_half_close(),
            client_hello: default_client_hello(),
            shutdown_grace: default_shutdown_grace(),
        }
    }
}

/// A config field that a reload does not change: [`Config::restart_needed`] warns about
/// it, [`Config::reloaded`] keeps its running value.
#[derive(Clone, Copy, Debug)]
pub struct RestartOnly {
    /// Its path in the config file, as logged: `timeouts.shutdown_grace`.
    pub name: &'static str,
    /// Whether the two configs (running, new) differ in it.
    pub differs: fn(&Config, &Config) -> bool,
    /// Sets it in the first config (new) to its value in the second (running).
    pub keep: fn(&mut Config, &Config),
}

/// One [`RestartOnly`] per field path (`timeouts.shutdown_grace`), named by it.
macro_rules! restart_only {
    ($($first:ident $(. $rest:ident)*),* $(,)?) => {
        &[$(RestartOnly {
            name: concat!(stringify!($first) $(, ".", stringify!($rest))*),
            differs: |running, new| running.$first$(.$rest)* != new.$first$(.$rest)*,
            keep: |new, running| new.$first$(.$rest)* = running.$first$(.$rest)*,
        }),*]
    };
}

/// The fields only a restart changes: the admin endpoint's socket stays open across a
/// reload; the drain period is fixed when the workers start. (Listeners are reloadable: a
/// reload binds new addresses and closes removed ones.) Adding
/// one here is all it takes for a reload to warn about it and keep its running value.
pub const RESTART_ONLY: &[RestartOnly] = restart_only![admin, timeouts.shutdown_grace];

/// Why a config was rejected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// The text is not valid JSON.
    Syntax {
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
        /// What the JSON parser expected.
        message: String,
    },
    /// An object has a field it does not take (a typo is never silently ignored).
    UnknownField {
        /// The object: `backends[1]`, `health_check`, or empty for the top level.
        path: String,
        /// The field as written.
        field: String,
        /// The known field it is probably a typo of.
        suggestion: Option<&'static str>,
        /// Every field the object takes.
        known: &'static [&'static str],
    },
    /// A field is missing, of the wrong type, or has a value out of range.
    Field {
        /// Where: `backends[1].address`, or empty for the top level.
        path: String,
        /// What is wrong and, where it helps, what would be right.
        message: String,
    },
}

impl ConfigError {
    fn field(path: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError::Field {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Syntax {
                line,
                column,
                message,
            } => write!(f, "invalid JSON at line {line} column {column}: {message}"),
            ConfigError::UnknownField {
                path,
                field,
                suggestion,
                known,
            } => {
                if !path.is_empty() {
                    write!(f, "{path}: ")?;
                }
                write!(f, "unknown field {field:?}")?;
                match suggestion {
                    Some(s) => write!(f, ", did you mean {s:?}?"),
                    None => write!(f, " (known fields: {})", known.join(", ")),
                }
            }
            ConfigError::Field { path, message } if path.is_empty() => f.write_str(message),
            ConfigError::Field { path, message } => write!(f, "{path}: {message}"),
        }
    }
}

impl std::error::Error for ConfigError {}

/// If `path` ends in a key that the object holding it does not take, the error at `path`
/// is that key being unknown: that error, with the closest known field.
fn unknown_field(path: &serde_path_to_error::Path) -> Option<ConfigError> {
    let segments: Vec<&Segment> = path.iter().collect();
    let (Segment::Map { key }, parent) = segments.split_last()? else {
        return None;
    };
    let known = raw::known_fields(parent)?;
    if known.contains(&key.as_str()) {
        return None;
    }
    let path = parent
        .iter()
        .map(|s| match s {
            Segment::Seq { index } => format!("[{index}]"),
            _ => format!(".{s}"),
        })
        .collect::<String>();
    Some(ConfigError::UnknownField {
        path: path.trim_start_matches('.').to_string(),
        field: key.clone(),
        suggestion: suggest::closest(key, known),
        known,
    })
}

/// serde_json's messages end in " at line L column C"; the path says where already.
fn strip_position(message: &str) -> &str {
    match message.rfind(" at line ") {
        Some(i) => &message[..i],
        None => message,
    }
}

impl Config {
    /// Parses and validates a config file's text: one JSON object, followed by nothing but
    /// whitespace. A UTF-8 byte-order mark at the start is skipped (error positions count
    /// from after it).
    pub fn from_json(text: &str) -> Result<Config, ConfigError> {
        Config::read(text, |de| serde_path_to_error::deserialize(de))
    }

    /// [`Config::from_json`] reading the top level with serde's derived reader, which takes
    /// a JSON array by field order too: the deliberately broken parser of the config
    /// check's mutation test (the shape rule is what makes the real one refuse arrays).
    #[cfg(feature = "seams")]
    pub fn from_json_any_shape(text: &str) -> Result<Config, ConfigError> {
        Config::read(text, |de| {
            let mut track = serde_path_to_error::Track::new();
            raw::RawConfig::any_shape(serde_path_to_error::Deserializer::new(de, &mut track))
                .map_err(|e| serde_path_to_error::Error::new(track.path(), e))
        })
    }

    fn read(
        text: &str,
        parse: impl FnOnce(
            &mut serde_json::Deserializer<serde_json::de::StrRead<'_>>,
        )
            -> Result<raw::RawConfig, serde_path_to_error::Error<serde_json::Error>>,
    ) -> Result<Config, ConfigError> {
        // Some editors start a UTF-8 file with a byte-order mark; it is not JSON.
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut de = serde_json::Deserializer::from_str(text);
        let raw = match parse(&mut de) {
            Ok(c) => c,
            Err(e) => {
                let unknown = unknown_field(e.path());
                let path = e.path().to_string();
                let inner = e.into_inner();
                if inner.is_syntax() || inner.is_eof() {
                    return Err(ConfigError::Syntax {
                        line: inner.line(),
                        column: inner.column(),
                        message: strip_position(&inner.to_string()).to_string(),
                    });
                }
                if let Some(unknown) = unknown {
                    return Err(unknown);
                }
                let path = if path == "." { String::new() } else { path };
                return Err(ConfigError::field(
                    path,
                    strip_position(&inner.to_string()).to_string(),
                ));
            }
        };
        // Only whitespace may follow the value: a second object (with a misspelled field,
        // say) would otherwise go unread.
        if let Err(e) = de.end() {
            return Err(ConfigError::Syntax {
                line: e.line(),
                column: e.column(),
                message:
                    "trailing content after the config; only whitespace may follow its closing `}`"
                        .to_string(),
            });
        }
        let mut config = raw.normalise()?;
        config.fill_names();
        config.validate()?;
        Ok(config)
    }

    /// The config as pretty JSON, in the form it was read from; [`Config::from_json`] of it
    /// gives back an equal config.
    pub fn to_json(&self) -> String {
        raw::to_json(self)
    }

    /// Fills in derived defaults (a backend's name defaults to its address).
    fn fill_names(&mut self) {
        for p in &mut self.pools {
            for b in &mut p.backends {
                if b.name.is_empty() {
                    b.name = b.address.to_string();
                }
            }
        }
    }

    /// The listener named `name`.
    pub fn listener(&self, name: &str) -> Option<&ListenerConfig> {
        self.listeners.iter().find(|l| l.name == name)
    }

    /// The pool named `name`.
    pub fn pool(&self, name: &str) -> Option<&PoolConfig> {
        self.pools.iter().find(|p| p.name == name)
    }

    /// Where a field of pool `pool` is written: `backends[1].address` in the flat form,
    /// `pools.web.backends[1].address` in the named one.
    pub fn pool_path(&self, pool: &str, field: &str) -> String {
        match self.form {
            Form::Flat => field.to_string(),
            Form::Named => format!("pools.{pool}.{field}"),
        }
    }

    /// Where a field of listener `index` is written: `allow` in the flat form,
    /// `listeners[0].allow` in the named one.
    pub fn listener_path(&self, index: usize, field: &str) -> String {
        match self.form {
            Form::Flat => field.to_string(),
            Form::Named => format!("listeners[{index}].{field}"),
        }
    }

    /// Checks every value's range and the constraints between fields.
    pub fn validate(&self) -> Result<(), ConfigError> {
        validate::config(self)
    }

    /// Settings that are valid but probably not meant: an admin endpoint (which has no
    /// authentication) outside loopback, a health check timeout longer than its interval.
    /// The binary logs them at startup and on reload, and `--check` prints them.
    pub fn warnings(&self) -> Vec<String> {
        validate::warnings(self)
    }

    /// The fields that differ between this (running) config and `new` but take a restart
    /// to apply ([`RESTART_ONLY`]). A reload applies everything else.
    pub fn restart_needed(&self, new: &Config) -> Vec<&'static str> {
        RESTART_ONLY
            .iter()
            .filter(|f| (f.differs)(self, new))
            .map(|f| f.name)
            .collect()
    }

    /// The config that runs after reloading `new` over this one: `new`, except for the
    /// fields only a restart changes ([`RESTART_ONLY`]), which keep their running values.
    pub fn reloaded(&self, mut new: Config) -> Config {
        for f in RESTART_ONLY {
            (f.keep)(&mut new, self);
        }
        new
    }

    /// One line per listener, for `--check` and the startup log: its address, how it
    /// routes, and the pool (or pools) it reaches. The admin endpoint, if any, is on the
    /// last line.
    pub fn summary_lines(&self) -> Vec<String> {
        let mut lines: Vec<String> = self
            .listeners
            .iter()
            .map(|l| self.listener_summary(l))
            .collect();
        if let (Some(a), Some(last)) = (self.admin, lines.last_mut()) {
            last.push_str(&format!(", admin {a}"));
        }
        lines
    }

    /// [`Config::summary_lines`] joined with `; `.
    pub fn summary(&self) -> String {
        self.summary_lines().join("; ")
    }

    fn listener_summary(&self, l: &ListenerConfig) -> String {
        let mut line = match self.form {
            Form::Flat => format!("listen {}", l.listen),
            Form::Named => format!("listener {} on {}", l.name, l.listen),
        };
        if !l.sni.is_empty() {
            let mut targets: Vec<&str> = Vec::new();
            for (_, to) in &l.sni {
                if !targets.contains(&to.as_str()) {
                    targets.push(to);
                }
            }
            line.push_str(&format!(
                ", sni {} name(s) to pool(s) {} (ClientHello within {})",
                l.sni.len(),
                targets.join(", "),
                l.timeouts.client_hello
            ));
        }
        match l.pool.as_deref().and_then(|p| self.pool(p)) {
            Some(p) => {
                if self.form == Form::Named {
                    line.push_str(&format!(", pool {}:", p.name));
                } else {
                    line.push(',');
                }
                line.push_str(&format!(" {}", p.summary()));
            }
            None => line.push_str(", unmatched clients rejected (no_route)"),
        }
        line.push_str(&format!(", max_connections {}", l.max_connections));
        if let Some(a) = &l.allow {
            line.push_str(&format!(", allow {} network(s)", a.len()));
        }
        if let Some(k) = l.tcp_keepalive {
            line.push_str(&format!(
                ", tcp_keepalive idle {} interval {} count {}",
                k.idle, k.interval, k.count
            ));
        }
        line
    }
}

impl PoolConfig {
    /// The pool in a few words: `round_robin over 3 backends, tcp checks every 1s
    /// (timeout 500ms, rise 2, fall 2), retries 2`.
    pub fn summary(&self) -> String {
        let hc = &self.health_check;
        let discovered = match self.discover.as_ref().map(|d| (d.target(), d.interval)) {
            Some((Ok(t), every)) => format!(" and those of {t} (every {every})"),
            _ => String::new(),
        };
        format!(
            "{} over {} backend{}{discovered}, {} checks every {} (timeout {}, rise {}, fall {}), retries {}",
            self.algorithm.name(),
            self.backends.len(),
            if self.backends.len() == 1 { "" } else { "s" },
            hc.describe(),
            hc.interval,
            hc.timeout,
            hc.rise,
            hc.fall,
            self.retries,
        ) + &self
            .proxy_protocol
            .map(|v| {
                format!(
                    ", proxy_protocol {}",
                    if v == ProxyProtocol::V1 { "v1" } else { "v2" }
                )
            })
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests;
