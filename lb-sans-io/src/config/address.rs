//! Addresses in config files: socket addresses, and backend `host:port` names kept for the
//! driver to resolve.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::net::SocketAddr;

/// A backend address as written in config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BackendAddress {
    /// `1.2.3.4:80` or `[::1]:80`.
    Socket(SocketAddr),
    /// `name:port`, resolved by the driver when the config is loaded.
    Host {
        /// The DNS name.
        host: String,
        /// The port.
        port: u16,
    },
}

impl BackendAddress {
    /// Parses `IP:PORT`, `[IPv6]:PORT` or `host:port`. Port 0 parses; a config rejects it
    /// ([`crate::Config::validate`]).
    pub fn parse(s: &str) -> Result<BackendAddress, String> {
        if let Ok(a) = s.parse::<SocketAddr>() {
            return Ok(BackendAddress::Socket(a));
        }
        let bad = || format!("invalid socket address \"{s}\" (expected IP:PORT or host:port)");
        let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
        // Digits only: `parse` would also take "+80".
        if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let port: u16 = port.parse().map_err(|_| bad())?;
        // A name whose last label is all digits is not a DNS name but an IPv4 address in a
        // form resolvers read unexpectedly ("1.1", "063.0.0.1" as octal): reject it.
        let last_label_numeric = host
            .rsplit('.')
            .next()
            .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()));
        let host_ok = !host.is_empty()
            && host.len() <= 253
            && !last_label_numeric
            && host
                .split('.')
                .all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
        if !host_ok {
            return Err(bad());
        }
        Ok(BackendAddress::Host {
            host: host.to_string(),
            port,
        })
    }

    /// The port as written.
    pub fn port(&self) -> u16 {
        match self {
            BackendAddress::Socket(a) => a.port(),
            BackendAddress::Host { port, .. } => *port,
        }
    }
}

impl fmt::Display for BackendAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BackendAddress::Socket(a) => write!(f, "{a}"),
            BackendAddress::Host { host, port } => write!(f, "{host}:{port}"),
        }
    }
}

impl Serialize for BackendAddress {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for BackendAddress {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        BackendAddress::parse(&s).map_err(serde::de::Error::custom)
    }
}

fn parse_socket_addr<E: serde::de::Error>(s: &str) -> Result<SocketAddr, E> {
    s.parse().map_err(|_| {
        E::custom(format!(
            "invalid socket address \"{s}\" (expected IP:PORT, e.g. \"127.0.0.1:8080\" or \"[::]:8080\")"
        ))
    })
}

/// `SocketAddr` fields with a message that says what is wrong.
pub(crate) mod socket_addr {
    use super::*;
    pub fn serialize<S: Serializer>(a: &SocketAddr, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(a)
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
        parse_socket_addr(&String::deserialize(d)?)
    }
}

/// Optional `SocketAddr` fields.
pub(crate) mod opt_socket_addr {
    use super::*;
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
        match Option::<String>::deserialize(d)? {
            Some(s) => parse_socket_addr(&s).map(Some),
            None => Ok(None),
        }
    }
}
