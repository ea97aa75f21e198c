//! `discover`: a pool's backends from DNS, as Kubernetes headless services and Consul's DNS
//! interface publish them: `{"dns": "web.service.consul:8080"}` (every A/AAAA address, that
//! port) or `{"srv": "_web._tcp.service.consul"}` (every SRV target's addresses with its
//! port and weight), asked again every `interval`, of `resolver` or the system's.

use super::address;
use super::duration::ConfigDuration;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

/// A pool's `discover` as written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(remote = "Self", deny_unknown_fields)]
pub struct DiscoverConfig {
    /// `NAME:PORT`: every A and AAAA address of NAME, on PORT.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<String>,
    /// An SRV name: every target's addresses, with the SRV port and weight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub srv: Option<String>,
    /// How often the name is asked again. Default 5s.
    #[serde(default = "default_interval")]
    pub interval: ConfigDuration,
    /// The DNS server to ask (`IP:PORT`). Absent: the system's resolver configuration.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "opt_addr_out",
        deserialize_with = "address::opt_socket_addr::deserialize"
    )]
    pub resolver: Option<SocketAddr>,
}

fn default_interval() -> ConfigDuration {
    ConfigDuration(Duration::from_secs(5))
}

fn opt_addr_out<S: serde::Serializer>(a: &Option<SocketAddr>, s: S) -> Result<S::Ok, S::Error> {
    match a {
        Some(a) => s.collect_str(a),
        None => s.serialize_none(),
    }
}

super::shape::object_only!(DiscoverConfig);

/// What to ask DNS.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DiscoverTarget {
    /// The A and AAAA records of `name`; backends on `port`.
    Dns {
        /// The name.
        name: String,
        /// The backends' port.
        port: u16,
    },
    /// The SRV records of `name`.
    Srv {
        /// The name.
        name: String,
    },
}

impl fmt::Display for DiscoverTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DiscoverTarget::Dns { name, port } => write!(f, "dns {name}:{port}"),
            DiscoverTarget::Srv { name } => write!(f, "srv {name}"),
        }
    }
}

impl DiscoverConfig {
    /// The query this asks for, or what is wrong with it (for `pools.P.discover`).
    pub fn target(&self) -> Result<DiscoverTarget, String> {
        match (&self.dns, &self.srv) {
            (Some(_), Some(_)) => Err("give `dns` or `srv`, not both".to_string()),
            (None, None) => {
                Err("give `dns` (\"NAME:PORT\") or `srv` (\"_service._tcp.NAME\")".to_string())
            }
            (Some(dns), None) => {
                let Some((name, port)) = dns.rsplit_once(':') else {
                    return Err(format!(
                        "dns: \"{dns}\" has no port (write \"NAME:PORT\", e.g. \"web.service.consul:8080\")"
                    ));
                };
                let port: u16 = match port.parse() {
                    Ok(p) if p > 0 => p,
                    _ => {
                        return Err(format!(
                            "dns: invalid port \"{port}\" in \"{dns}\" (1 to 65535)"
                        ))
                    }
                };
                check_name(name).map_err(|why| format!("dns: {why}"))?;
                Ok(DiscoverTarget::Dns {
                    name: name.to_string(),
                    port,
                })
            }
            (None, Some(srv)) => {
                check_name(srv).map_err(|why| format!("srv: {why}"))?;
                Ok(DiscoverTarget::Srv { name: srv.clone() })
            }
        }
    }
}

/// A DNS name: dot-separated labels of letters, digits, `-` and `_`, each 1 to 63 bytes,
/// 253 in all (a trailing dot allowed).
fn check_name(name: &str) -> Result<(), String> {
    let bare = name.strip_suffix('.').unwrap_or(name);
    if bare.is_empty() || bare.len() > 253 {
        return Err(format!("\"{name}\" is not a DNS name (1 to 253 bytes)"));
    }
    for label in bare.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !ok {
            return Err(format!(
                "\"{name}\" is not a DNS name (label \"{label}\": letters, digits, '-' and '_', 1 to 63 of them)"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dns: Option<&str>, srv: Option<&str>) -> DiscoverConfig {
        DiscoverConfig {
            dns: dns.map(str::to_string),
            srv: srv.map(str::to_string),
            interval: default_interval(),
            resolver: None,
        }
    }

    #[test]
    fn targets_parse_and_bad_ones_say_why() {
        assert_eq!(
            config(Some("web.service.consul:8080"), None).target(),
            Ok(DiscoverTarget::Dns {
                name: "web.service.consul".into(),
                port: 8080
            })
        );
        assert_eq!(
            config(None, Some("_web._tcp.service.consul.")).target(),
            Ok(DiscoverTarget::Srv {
                name: "_web._tcp.service.consul.".into()
            })
        );
        for (c, why) in [
            (config(Some("a:1"), Some("b")), "not both"),
            (config(None, None), "give `dns`"),
            (config(Some("web"), None), "has no port"),
            (config(Some("web:0"), None), "invalid port"),
            (config(Some("web:x"), None), "invalid port"),
            (config(Some(":80"), None), "not a DNS name"),
            (config(Some("a..b:80"), None), "not a DNS name"),
            (config(None, Some("we b")), "not a DNS name"),
        ] {
            let err = c.target().unwrap_err();
            assert!(err.contains(why), "{c:?}: {err}");
        }
    }
}
