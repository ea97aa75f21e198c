//! The config file: its serde types, its defaults, and validation whose every error names
//! the field at fault (`backends[1].address: invalid socket address "localhost"`).
//!
//! Parsing is pure: host names in backend addresses are kept as written and resolved by
//! the driver at load time.

mod address;
mod cidr;
mod duration;
mod limits;
mod shape;
mod suggest;

pub use address::BackendAddress;
pub use cidr::Cidr;
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

/// The whole config file. Only `backends` is required.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self", deny_unknown_fields)]
pub struct Config {
    /// Address the load balancer listens on. Default `127.0.0.1:8080`.
    #[serde(default = "default_listen", with = "address::socket_addr")]
    pub listen: SocketAddr,
    /// How a backend is chosen for each new connection. Default `round_robin`.
    #[serde(default)]
    pub algorithm: Algorithm,
    /// The backends, in order; a backend's index is its [`crate::BackendId`].
    pub backends: Vec<BackendConfig>,
    /// Active health checks.
    #[serde(default)]
    pub health_check: HealthCheckConfig,
    /// Connection timeouts.
    #[serde(default)]
    pub timeouts: TimeoutsConfig,
    /// How many other backends a client's connection is tried on after a failed connect.
    /// Default 2.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// A backend that comes up ramps from 10% to its full weight linearly over this long
    /// (weighted algorithms). Absent: no ramp.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slow_start: Option<ConfigDuration>,
    /// Most client connections open at once; past it new clients are closed at once.
    /// Default 10000.
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
    /// Send a PROXY protocol header to backends (and probes) first. Absent: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_protocol: Option<ProxyProtocol>,
    /// Client networks allowed to connect; others are closed at accept and counted as
    /// rejected. Absent: every client is allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow: Option<Vec<Cidr>>,
    /// Limits on each client IP address; past them a new client is closed at accept and
    /// counted as rejected (`per_client_limit`). Absent: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_client: Option<PerClientConfig>,
    /// What happens to a backend's open connections when health checks mark it down.
    /// Default `keep`.
    #[serde(default, skip_serializing_if = "OnBackendDown::is_keep")]
    pub on_backend_down: OnBackendDown,
    /// Address of the admin HTTP endpoint; absent disables it.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "address::opt_socket_addr"
    )]
    pub admin: Option<SocketAddr>,
    /// TCP keepalive on client and backend sockets (in the flat form, one setting for both
    /// sides). Absent: off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_keepalive: Option<TcpKeepaliveConfig>,
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

/// `timeouts`: every one optional.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self", deny_unknown_fields)]
pub struct TimeoutsConfig {
    /// Backend connect. Default 1s.
    #[serde(default = "default_connect")]
    pub connect: ConfigDuration,
    /// No byte in either direction for this long closes the connection. Default 5m.
    #[serde(default = "default_idle")]
    pub idle: ConfigDuration,
    /// After one side's FIN, how long the other direction may stay open with no traffic.
    /// Default 1m.
    #[serde(default = "default_half_close")]
    pub half_close: ConfigDuration,
    /// On SIGTERM/SIGINT, how long open connections may take to finish. Default 30s.
    #[serde(default = "default_shutdown_grace")]
    pub shutdown_grace: ConfigDuration,
}

// Each read only from its own JSON shape (see `shape`).
shape::object_only!(Config, "config must be a JSON object");
shape::object_only!(BackendConfig);
shape::object_only!(HealthCheckConfig);
shape::object_only!(TimeoutsConfig);
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

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}
fn default_retries() -> u32 {
    2
}
fn default_max_connections() -> u32 {
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
fn default_connect() -> ConfigDuration {
    ConfigDuration(Duration::from_secs(1))
}
fn default_idle() -> ConfigDuration {
    ConfigDuration(Duration::from_secs(300))
}
fn default_half_close() -> ConfigDuration {
    ConfigDuration(Duration::from_secs(60))
}
fn default_shutdown_grace() -> ConfigDuration {
    ConfigDuration(Duration::from_secs(30))
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

/// The fields only a restart changes: the listening socket stays open across a reload, and
/// so does the admin endpoint's; the drain period is fixed when the workers start. Adding
/// one here is all it takes for a reload to warn about it and keep its running value.
pub const RESTART_ONLY: &[RestartOnly] = restart_only![listen, admin, timeouts.shutdown_grace];

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
    let key_is = |s: &Segment, name: &str| matches!(s, Segment::Map { key } if key == name);
    let known = match parent {
        [] => suggest::field_names::<Config>(),
        [s] if key_is(s, "health_check") => suggest::field_names::<HealthCheckConfig>(),
        [s] if key_is(s, "timeouts") => suggest::field_names::<TimeoutsConfig>(),
        [s] if key_is(s, "per_client") => suggest::field_names::<PerClientConfig>(),
        [s] if key_is(s, "tcp_keepalive") => suggest::field_names::<TcpKeepaliveConfig>(),
        [s, Segment::Seq { .. }] if key_is(s, "backends") => {
            suggest::field_names::<BackendConfig>()
        }
        _ => return None,
    };
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
        // Some editors start a UTF-8 file with a byte-order mark; it is not JSON.
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut de = serde_json::Deserializer::from_str(text);
        let mut config: Config = match serde_path_to_error::deserialize(&mut de) {
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
        config.normalise();
        config.validate()?;
        Ok(config)
    }

    /// The config as pretty JSON; [`Config::from_json`] of it gives back an equal config.
    pub fn to_json(&self) -> String {
        // Serialising these plain types cannot fail.
        serde_json::to_string_pretty(self).expect("config serialises")
    }

    /// Fills in derived defaults (a backend's name defaults to its address).
    fn normalise(&mut self) {
        for b in &mut self.backends {
            if b.name.is_empty() {
                b.name = b.address.to_string();
            }
        }
    }

    /// Checks every value's range and the constraints between fields.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.backends.is_empty() {
            return Err(ConfigError::field(
                "backends",
                "at least one backend is required",
            ));
        }
        for (i, b) in self.backends.iter().enumerate() {
            let at = |field: &str| format!("backends[{i}].{field}");
            if b.name.len() > MAX_NAME_LEN {
                let hint = if b.name == b.address.to_string() {
                    " (it defaults to the address; set a shorter \"name\")"
                } else {
                    ""
                };
                return Err(ConfigError::field(
                    at("name"),
                    format!(
                        "must be at most {MAX_NAME_LEN} bytes long, got {}{hint}",
                        b.name.len()
                    ),
                ));
            }
            if let Some(j) = self.backends[..i].iter().position(|o| o.name == b.name) {
                return Err(ConfigError::field(
                    at("name"),
                    format!("duplicate name \"{}\" (also backends[{j}].name)", b.name),
                ));
            }
            // Port 0 means "any port" to a listening socket, nothing to connect to.
            if b.address.port() == 0 {
                return Err(ConfigError::field(
                    at("address"),
                    format!(
                        "port 0 in \"{}\": a backend needs the port it listens on",
                        b.address
                    ),
                ));
            }
            if b.name.chars().any(|c| c.is_control() || c == '"') {
                return Err(ConfigError::field(
                    at("name"),
                    "must not contain quotes or control characters",
                ));
            }
            if !(1..=MAX_WEIGHT).contains(&b.weight) {
                return Err(ConfigError::field(
                    at("weight"),
                    format!("must be between 1 and {MAX_WEIGHT}, got {}", b.weight),
                ));
            }
            if b.max_connections == Some(0) {
                return Err(ConfigError::field(
                    at("max_connections"),
                    "must be at least 1 (omit it for no limit)",
                ));
            }
        }
        let hc = &self.health_check;
        for (name, v) in [("rise", hc.rise), ("fall", hc.fall)] {
            if !(1..=MAX_RISE_FALL).contains(&v) {
                return Err(ConfigError::field(
                    format!("health_check.{name}"),
                    format!("must be between 1 and {MAX_RISE_FALL}, got {v}"),
                ));
            }
        }
        match hc.kind {
            CheckType::Tcp => {
                if hc.path.is_some() {
                    return Err(ConfigError::field(
                        "health_check.path",
                        "only an \"http\" check has a path (set \"type\": \"http\")",
                    ));
                }
            }
            CheckType::Http => {
                for (field, v) in [("send", &hc.send), ("expect", &hc.expect)] {
                    if v.is_some() {
                        return Err(ConfigError::field(
                            format!("health_check.{field}"),
                            "only a \"tcp\" check has send / expect (an \"http\" check sends a GET of `path`)",
                        ));
                    }
                }
                if let Some(path) = &hc.path {
                    if !path.starts_with('/')
                        || path.chars().any(|c| c.is_whitespace() || c.is_control())
                    {
                        return Err(ConfigError::field(
                            "health_check.path",
                            format!("must start with / and have no spaces or control characters, got {path:?}"),
                        ));
                    }
                }
            }
        }
        for (field, v) in [
            ("send", &hc.send),
            ("expect", &hc.expect),
            ("path", &hc.path),
        ] {
            if let Some(v) = v {
                if v.is_empty() || v.len() > MAX_CHECK_TEXT {
                    return Err(ConfigError::field(
                        format!("health_check.{field}"),
                        format!("must be 1 to {MAX_CHECK_TEXT} bytes long (omit it for none)"),
                    ));
                }
            }
        }
        if let Some(pc) = &self.per_client {
            if pc.max_connections == Some(0) {
                return Err(ConfigError::field(
                    "per_client.max_connections",
                    "must be at least 1 (omit it for no limit)",
                ));
            }
        }
        let positive = [
            ("health_check.interval", hc.interval),
            ("health_check.timeout", hc.timeout),
            ("timeouts.connect", self.timeouts.connect),
            ("timeouts.idle", self.timeouts.idle),
            ("timeouts.half_close", self.timeouts.half_close),
        ];
        for (path, d) in positive {
            if d.0.is_zero() {
                return Err(ConfigError::field(path, "must be greater than zero"));
            }
        }
        if self.retries > MAX_RETRIES {
            return Err(ConfigError::field(
                "retries",
                format!("must be at most {MAX_RETRIES}, got {}", self.retries),
            ));
        }
        if self.max_connections == 0 {
            return Err(ConfigError::field("max_connections", "must be at least 1"));
        }
        if self.allow.as_ref().is_some_and(|a| a.is_empty()) {
            return Err(ConfigError::field(
                "allow",
                "an empty list refuses every client (omit `allow` to allow all)",
            ));
        }
        if let Some(ka) = &self.tcp_keepalive {
            for (field, d) in [("idle", ka.idle), ("interval", ka.interval)] {
                let secs = d.0.as_secs();
                if d.0.subsec_nanos() != 0 || !(1..=MAX_KEEPALIVE_SECS).contains(&secs) {
                    return Err(ConfigError::field(
                        format!("tcp_keepalive.{field}"),
                        format!(
                            "must be whole seconds from 1s to {} (the kernel counts seconds, up to {MAX_KEEPALIVE_SECS}), got {d}",
                            ConfigDuration(Duration::from_secs(MAX_KEEPALIVE_SECS))
                        ),
                    ));
                }
            }
            if !(1..=MAX_KEEPALIVE_COUNT).contains(&ka.count) {
                return Err(ConfigError::field(
                    "tcp_keepalive.count",
                    format!(
                        "must be between 1 and {MAX_KEEPALIVE_COUNT}, got {}",
                        ka.count
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The fields that differ between this (running) config and `new` but take a restart
    /// to apply ([`RESTART_ONLY`]). A reload applies everything else
    /// ([`crate::Pool::reconfigure`]).
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

    /// One line for `--check` and the startup log.
    pub fn summary(&self) -> String {
        format!(
            "listen {}, {} over {} backend{}, {} checks every {} (timeout {}, rise {}, fall {}), retries {}, max_connections {}",
            self.listen,
            self.algorithm.name(),
            self.backends.len(),
            if self.backends.len() == 1 { "" } else { "s" },
            self.health_check.describe(),
            self.health_check.interval,
            self.health_check.timeout,
            self.health_check.rise,
            self.health_check.fall,
            self.retries,
            self.max_connections,
        )
            + &self
                .proxy_protocol
                .map(|v| format!(", proxy_protocol {}", if v == ProxyProtocol::V1 { "v1" } else { "v2" }))
                .unwrap_or_default()
            + &self
                .allow
                .as_ref()
                .map(|a| format!(", allow {} network(s)", a.len()))
                .unwrap_or_default()
            + &self
                .tcp_keepalive
                .map(|k| format!(", tcp_keepalive idle {} interval {} count {}", k.idle, k.interval, k.count))
                .unwrap_or_default()
            + &self
                .admin
                .map(|a| format!(", admin {a}"))
                .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests;
