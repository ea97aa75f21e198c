//! The config file as written, in either form, and its normalisation into [`Config`]:
//! the flat form (`listen`, `backends`, ... at the top level) becomes one listener and one
//! pool named `default`; the named form's listeners and pools take the top-level
//! `timeouts` as defaults. Writing a flat field beside `listeners` / `pools` is an error
//! naming the flat field. [`Config::to_json`] writes a config back in its own form.

use super::address;
use super::entries::Entries;
use super::shape;
use super::suggest;
use super::*;
use serde_path_to_error::Segment;

/// `Some(T)` read from whatever the field holds, `null` included (which `T` then rejects
/// if it is not its shape): for fields that have a default but no "none" value.
fn present<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

fn present_addr<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
    address::socket_addr::deserialize(d).map(Some)
}

/// The top level of the file, either form.
#[derive(Deserialize)]
#[serde(remote = "Self", deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default, deserialize_with = "present_addr")]
    listen: Option<SocketAddr>,
    #[serde(default, deserialize_with = "present")]
    algorithm: Option<Algorithm>,
    #[serde(default, deserialize_with = "present")]
    backends: Option<Vec<BackendConfig>>,
    #[serde(default, deserialize_with = "present")]
    health_check: Option<HealthCheckConfig>,
    #[serde(default, deserialize_with = "present")]
    timeouts: Option<RawTimeouts>,
    #[serde(default, deserialize_with = "present")]
    retries: Option<u32>,
    #[serde(default)]
    slow_start: Option<ConfigDuration>,
    #[serde(default, deserialize_with = "present")]
    max_connections: Option<u32>,
    #[serde(default)]
    proxy_protocol: Option<ProxyProtocol>,
    #[serde(default)]
    allow: Option<Vec<Cidr>>,
    #[serde(default)]
    per_client: Option<PerClientConfig>,
    #[serde(default, deserialize_with = "present")]
    on_backend_down: Option<OnBackendDown>,
    #[serde(default, deserialize_with = "address::opt_socket_addr::deserialize")]
    admin: Option<SocketAddr>,
    #[serde(default)]
    tcp_keepalive: Option<TcpKeepaliveConfig>,
    #[serde(default)]
    discover: Option<DiscoverConfig>,
    #[serde(default, deserialize_with = "present")]
    listeners: Option<Vec<RawListener>>,
    #[serde(default, deserialize_with = "present")]
    pools: Option<Entries<RawPool>>,
}

/// The top-level `timeouts`.
#[derive(Deserialize)]
#[serde(remote = "Self", deny_unknown_fields)]
struct RawTimeouts {
    #[serde(default, deserialize_with = "present")]
    connect: Option<ConfigDuration>,
    #[serde(default, deserialize_with = "present")]
    idle: Option<ConfigDuration>,
    #[serde(default, deserialize_with = "present")]
    half_close: Option<ConfigDuration>,
    #[serde(default, deserialize_with = "present")]
    client_hello: Option<ConfigDuration>,
    #[serde(default, deserialize_with = "present")]
    shutdown_grace: Option<ConfigDuration>,
}

/// One of `listeners`.
#[derive(Deserialize)]
#[serde(remote = "Self", deny_unknown_fields)]
struct RawListener {
    #[serde(default, deserialize_with = "present")]
    name: Option<String>,
    #[serde(with = "address::socket_addr")]
    listen: SocketAddr,
    #[serde(default, deserialize_with = "present")]
    protocol: Option<Protocol>,
    #[serde(default, deserialize_with = "present")]
    pool: Option<String>,
    #[serde(default, deserialize_with = "present")]
    sni: Option<Entries<String>>,
    #[serde(default)]
    allow: Option<Vec<Cidr>>,
    #[serde(default, deserialize_with = "present")]
    max_connections: Option<u32>,
    #[serde(default)]
    per_client: Option<PerClientConfig>,
    #[serde(default, deserialize_with = "present")]
    timeouts: Option<RawListenerTimeouts>,
    #[serde(default)]
    tcp_keepalive: Option<TcpKeepaliveConfig>,
}

/// A listener's `timeouts`.
#[derive(Deserialize)]
#[serde(remote = "Self", deny_unknown_fields)]
struct RawListenerTimeouts {
    #[serde(default, deserialize_with = "present")]
    idle: Option<ConfigDuration>,
    #[serde(default, deserialize_with = "present")]
    half_close: Option<ConfigDuration>,
    #[serde(default, deserialize_with = "present")]
    client_hello: Option<ConfigDuration>,
}

/// One of `pools`.
#[derive(Deserialize)]
#[serde(remote = "Self", deny_unknown_fields)]
struct RawPool {
    #[serde(default, deserialize_with = "present")]
    algorithm: Option<Algorithm>,
    #[serde(default, deserialize_with = "present")]
    backends: Option<Vec<BackendConfig>>,
    #[serde(default, deserialize_with = "present")]
    health_check: Option<HealthCheckConfig>,
    #[serde(default, deserialize_with = "present")]
    retries: Option<u32>,
    #[serde(default)]
    slow_start: Option<ConfigDuration>,
    #[serde(default)]
    proxy_protocol: Option<ProxyProtocol>,
    #[serde(default, deserialize_with = "present")]
    on_backend_down: Option<OnBackendDown>,
    #[serde(default, deserialize_with = "present")]
    timeouts: Option<RawPoolTimeouts>,
    #[serde(default)]
    tcp_keepalive: Option<TcpKeepaliveConfig>,
    #[serde(default)]
    discover: Option<DiscoverConfig>,
}

/// A pool's `timeouts`.
#[derive(Deserialize)]
#[serde(remote = "Self", deny_unknown_fields)]
struct RawPoolTimeouts {
    #[serde(default, deserialize_with = "present")]
    connect: Option<ConfigDuration>,
}

shape::object_only!(read RawConfig, "config must be a JSON object");
shape::object_only!(read RawTimeouts);
shape::object_only!(read RawListener);
shape::object_only!(read RawListenerTimeouts);
shape::object_only!(read RawPool);
shape::object_only!(read RawPoolTimeouts);

impl RawConfig {
    /// Reads the file with serde's derived reader, which takes arrays by field order too
    /// (no shape rule): for the config check's mutation that shows the rule matters.
    #[cfg(feature = "seams")]
    pub(super) fn any_shape<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        RawConfig::deserialize(d)
    }

    /// The config this file means: defaults filled in, the flat form made one listener and
    /// one pool. Mixing the forms is an error naming the flat field.
    pub(super) fn normalise(self) -> Result<Config, ConfigError> {
        let t = self.timeouts.unwrap_or(RawTimeouts {
            connect: None,
            idle: None,
            half_close: None,
            client_hello: None,
            shutdown_grace: None,
        });
        let timeouts = TimeoutsConfig {
            connect: t.connect.unwrap_or_else(default_connect),
            idle: t.idle.unwrap_or_else(default_idle),
            half_close: t.half_close.unwrap_or_else(default_half_close),
            client_hello: t.client_hello.unwrap_or_else(default_client_hello),
            shutdown_grace: t.shutdown_grace.unwrap_or_else(default_shutdown_grace),
        };
        let listener_timeouts = ListenerTimeouts {
            idle: timeouts.idle,
            half_close: timeouts.half_close,
            client_hello: timeouts.client_hello,
        };
        let pool_timeouts = PoolTimeouts {
            connect: timeouts.connect,
        };
        if self.listeners.is_none() && self.pools.is_none() {
            let backends = match (self.backends, &self.discover) {
                (Some(b), _) => b,
                (None, Some(_)) => Vec::new(),
                (None, None) => {
                    return Err(ConfigError::field(
                        "",
                        "missing field `backends` (or `discover`, or `listeners` and `pools` for several services)",
                    ))
                }
            };
            let listener = ListenerConfig {
                name: DEFAULT_NAME.to_string(),
                listen: self.listen.unwrap_or_else(default_listen),
                protocol: Protocol::Tcp,
                pool: Some(DEFAULT_NAME.to_string()),
                sni: Vec::new(),
                allow: self.allow,
                max_connections: self.max_connections.unwrap_or_else(default_max_connections),
                per_client: self.per_client,
                timeouts: listener_timeouts,
                tcp_keepalive: self.tcp_keepalive,
            };
            let pool = PoolConfig {
                name: DEFAULT_NAME.to_string(),
                algorithm: self.algorithm.unwrap_or_default(),
                backends,
                health_check: self.health_check.unwrap_or_default(),
                retries: self.retries.unwrap_or_else(default_retries),
                slow_start: self.slow_start,
                proxy_protocol: self.proxy_protocol,
                on_backend_down: self.on_backend_down.unwrap_or_default(),
                timeouts: pool_timeouts,
                tcp_keepalive: self.tcp_keepalive,
                discover: self.discover,
            };
            return Ok(Config {
                listeners: vec![listener],
                pools: vec![pool],
                timeouts,
                admin: self.admin,
                form: Form::Flat,
            });
        }
        // The named form: no flat field may be written beside it.
        let listener_field =
            "is a listener setting: with `listeners` and `pools`, write it in a listener";
        let pool_field = "is a pool setting: with `listeners` and `pools`, write it in a pool";
        let flat: [(&str, bool, &str); 13] = [
            ("listen", self.listen.is_some(), listener_field),
            ("allow", self.allow.is_some(), listener_field),
            ("max_connections", self.max_connections.is_some(), listener_field),
            ("per_client", self.per_client.is_some(), listener_field),
            (
                "tcp_keepalive",
                self.tcp_keepalive.is_some(),
                "is a listener and pool setting: with `listeners` and `pools`, write it in a listener (client sockets) or a pool (backend sockets)",
            ),
            ("algorithm", self.algorithm.is_some(), pool_field),
            ("backends", self.backends.is_some(), pool_field),
            ("health_check", self.health_check.is_some(), pool_field),
            ("retries", self.retries.is_some(), pool_field),
            ("slow_start", self.slow_start.is_some(), pool_field),
            ("proxy_protocol", self.proxy_protocol.is_some(), pool_field),
            ("on_backend_down", self.on_backend_down.is_some(), pool_field),
            ("discover", self.discover.is_some(), pool_field),
        ];
        if let Some((field, _, why)) = flat.iter().find(|(_, set, _)| *set) {
            return Err(ConfigError::field(*field, format!("`{field}` {why}")));
        }
        let Some(raw_listeners) = self.listeners else {
            return Err(ConfigError::field(
                "listeners",
                "missing: a config with `pools` needs `listeners` (each names its pool)",
            ));
        };
        let Some(Entries(raw_pools)) = self.pools else {
            return Err(ConfigError::field(
                "pools",
                "missing: a config with `listeners` needs `pools`",
            ));
        };
        let mut pools = Vec::with_capacity(raw_pools.len());
        for (name, p) in raw_pools {
            let at = |field: &str| format!("pools.{name}.{field}");
            let backends = match (p.backends, &p.discover) {
                (Some(b), _) => b,
                (None, Some(_)) => Vec::new(),
                (None, None) => {
                    return Err(ConfigError::field(
                        at("backends"),
                        "missing: a pool needs its backends (or `discover`)",
                    ))
                }
            };
            pools.push(PoolConfig {
                algorithm: p.algorithm.unwrap_or_default(),
                backends,
                health_check: p.health_check.unwrap_or_default(),
                retries: p.retries.unwrap_or_else(default_retries),
                slow_start: p.slow_start,
                proxy_protocol: p.proxy_protocol,
                on_backend_down: p.on_backend_down.unwrap_or_default(),
                timeouts: PoolTimeouts {
                    connect: p
                        .timeouts
                        .and_then(|t| t.connect)
                        .unwrap_or(timeouts.connect),
                },
                tcp_keepalive: p.tcp_keepalive,
                discover: p.discover,
                name,
            });
        }
        let listeners = raw_listeners
            .into_iter()
            .map(|l| {
                let lt = l.timeouts.unwrap_or(RawListenerTimeouts {
                    idle: None,
                    half_close: None,
                    client_hello: None,
                });
                ListenerConfig {
                    name: l.name.unwrap_or_else(|| l.listen.to_string()),
                    listen: l.listen,
                    protocol: l.protocol.unwrap_or_default(),
                    pool: l.pool,
                    sni: l.sni.map(|e| e.0).unwrap_or_default(),
                    allow: l.allow,
                    max_connections: l.max_connections.unwrap_or_else(default_max_connections),
                    per_client: l.per_client,
                    timeouts: ListenerTimeouts {
                        idle: lt.idle.unwrap_or(timeouts.idle),
                        half_close: lt.half_close.unwrap_or(timeouts.half_close),
                        client_hello: lt.client_hello.unwrap_or(timeouts.client_hello),
                    },
                    tcp_keepalive: l.tcp_keepalive,
                }
            })
            .collect();
        Ok(Config {
            listeners,
            pools,
            timeouts,
            admin: self.admin,
            form: Form::Named,
        })
    }
}

/// A flat config as written: the one listener's and the one pool's fields at the top level.
#[derive(Serialize)]
struct FlatOut<'a> {
    #[serde(with = "address::socket_addr")]
    listen: &'a SocketAddr,
    algorithm: &'a Algorithm,
    backends: &'a [BackendConfig],
    health_check: &'a HealthCheckConfig,
    timeouts: &'a TimeoutsConfig,
    retries: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    slow_start: Option<ConfigDuration>,
    max_connections: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    proxy_protocol: Option<ProxyProtocol>,
    #[serde(skip_serializing_if = "Option::is_none")]
    allow: Option<&'a Vec<Cidr>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    per_client: Option<&'a PerClientConfig>,
    #[serde(skip_serializing_if = "OnBackendDown::is_keep")]
    on_backend_down: OnBackendDown,
    #[serde(skip_serializing_if = "Option::is_none")]
    admin: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tcp_keepalive: Option<TcpKeepaliveConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    discover: Option<&'a DiscoverConfig>,
}

/// A named config as written.
#[derive(Serialize)]
struct NamedOut<'a> {
    listeners: &'a [ListenerConfig],
    #[serde(serialize_with = "pools_as_object")]
    pools: &'a [PoolConfig],
    timeouts: &'a TimeoutsConfig,
    #[serde(skip_serializing_if = "Option::is_none")]
    admin: Option<String>,
}

fn pools_as_object<S: serde::Serializer>(pools: &&[PoolConfig], s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut map = s.serialize_map(Some(pools.len()))?;
    for p in pools.iter() {
        map.serialize_entry(&p.name, p)?;
    }
    map.end()
}

/// The config as the pretty JSON of its own form. Written straight to text: a
/// `serde_json::Value` would sort the keys of `pools` and `sni`, whose order matters.
pub(super) fn to_json(config: &Config) -> String {
    let admin = config.admin.map(|a| a.to_string());
    let text = match (config.form, &config.listeners[..], &config.pools[..]) {
        (Form::Flat, [l], [p]) => serde_json::to_string_pretty(&FlatOut {
            listen: &l.listen,
            algorithm: &p.algorithm,
            backends: &p.backends,
            health_check: &p.health_check,
            timeouts: &config.timeouts,
            retries: p.retries,
            slow_start: p.slow_start,
            max_connections: l.max_connections,
            proxy_protocol: p.proxy_protocol,
            allow: l.allow.as_ref(),
            per_client: l.per_client.as_ref(),
            on_backend_down: p.on_backend_down,
            admin,
            tcp_keepalive: l.tcp_keepalive,
            discover: p.discover.as_ref(),
        }),
        _ => serde_json::to_string_pretty(&NamedOut {
            listeners: &config.listeners,
            pools: &config.pools,
            timeouts: &config.timeouts,
            admin,
        }),
    };
    // Serialising these plain types cannot fail.
    text.expect("config serialises")
}

/// The fields the object at `parent` (a path into the file) takes, if it is a config
/// object: for "did you mean".
pub(super) fn known_fields(parent: &[&Segment]) -> Option<&'static [&'static str]> {
    #[derive(Clone, Copy, PartialEq)]
    enum Scope {
        Top,
        Listener,
        Pool,
    }
    let key = |s: &Segment| match s {
        Segment::Map { key } => Some(key.clone()),
        _ => None,
    };
    let (scope, rest) = match parent {
        [s, Segment::Seq { .. }, rest @ ..] if key(s).as_deref() == Some("listeners") => {
            (Scope::Listener, rest)
        }
        [s, Segment::Map { .. }, rest @ ..] if key(s).as_deref() == Some("pools") => {
            (Scope::Pool, rest)
        }
        rest => (Scope::Top, rest),
    };
    Some(match rest {
        [] => match scope {
            Scope::Top => suggest::field_names::<RawConfig>(),
            Scope::Listener => suggest::field_names::<RawListener>(),
            Scope::Pool => suggest::field_names::<RawPool>(),
        },
        [s] => match (key(s)?.as_str(), scope) {
            ("health_check", Scope::Top | Scope::Pool) => {
                suggest::field_names::<HealthCheckConfig>()
            }
            ("timeouts", Scope::Top) => suggest::field_names::<RawTimeouts>(),
            ("timeouts", Scope::Listener) => suggest::field_names::<RawListenerTimeouts>(),
            ("timeouts", Scope::Pool) => suggest::field_names::<RawPoolTimeouts>(),
            ("per_client", Scope::Top | Scope::Listener) => {
                suggest::field_names::<PerClientConfig>()
            }
            ("tcp_keepalive", _) => suggest::field_names::<TcpKeepaliveConfig>(),
            ("discover", Scope::Top | Scope::Pool) => suggest::field_names::<DiscoverConfig>(),
            _ => return None,
        },
        [s, Segment::Seq { .. }]
            if key(s).as_deref() == Some("backends") && scope != Scope::Listener =>
        {
            suggest::field_names::<BackendConfig>()
        }
        _ => return None,
    })
}
