//! Routing TLS by server name without terminating it: reading the `server_name` (SNI) of a
//! client's first message, its ClientHello, from the bytes it sent so far (split across
//! any number of TCP segments and TLS records, bounded to 16 KiB), and the listener's
//! table from names to pools (an exact name first, then the longest `*.suffix`).
//!
//! The ClientHello's fields are parsed by the `tls-parser` crate (sans-IO, nom-based);
//! this module reassembles the handshake message from its records, walks the extensions
//! and judges the name. Garbage, a truncated or oversized message, or a name that is not
//! a host name are all "no server name": the client then goes to the listener's default
//! pool, never to an error.

use std::collections::BTreeMap;

/// Most bytes read while waiting for a ClientHello; beyond it there is no server name.
pub const MAX_CLIENT_HELLO: usize = 16 * 1024;

/// TLS record content type of handshake messages.
const HANDSHAKE: u8 = 22;
/// Handshake message type of a ClientHello.
const CLIENT_HELLO: u8 = 1;
/// Extension type of `server_name`.
const SERVER_NAME: u16 = 0;
/// Longest TLS record payload allowed (2^14 plus the expansion TLS allows).
const MAX_RECORD: usize = 16_384 + 2_048;

/// What the bytes a client sent first say about the server it wants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientHello {
    /// Not enough bytes yet: read more (up to [`MAX_CLIENT_HELLO`]).
    Incomplete,
    /// A ClientHello naming this host (lower case, no trailing dot).
    ServerName(String),
    /// No server name will come: not TLS, a ClientHello without a usable `server_name`,
    /// a malformed one, or none within [`MAX_CLIENT_HELLO`] bytes.
    NoServerName,
}

/// Reads the server name from `buf`, everything the client sent so far.
pub fn read_client_hello(buf: &[u8]) -> ClientHello {
    let buf = &buf[..buf.len().min(MAX_CLIENT_HELLO)];
    let give_up = |buf: &[u8]| {
        if buf.len() >= MAX_CLIENT_HELLO {
            ClientHello::NoServerName
        } else {
            ClientHello::Incomplete
        }
    };
    let mut handshake: Vec<u8> = Vec::new();
    let mut pos = 0;
    loop {
        if handshake.len() >= 4 {
            if handshake[0] != CLIENT_HELLO {
                return ClientHello::NoServerName;
            }
            let len = u32::from_be_bytes([0, handshake[1], handshake[2], handshake[3]]) as usize;
            if len + 4 > MAX_CLIENT_HELLO {
                return ClientHello::NoServerName;
            }
            if handshake.len() >= len + 4 {
                return server_name(&handshake[4..len + 4]);
            }
        }
        let rest = &buf[pos..];
        if rest.len() < 5 {
            // A record header in pieces: check what is there.
            if !rest.is_empty() && rest[0] != HANDSHAKE || rest.len() >= 2 && rest[1] != 3 {
                return ClientHello::NoServerName;
            }
            return give_up(buf);
        }
        let len = usize::from(u16::from_be_bytes([rest[3], rest[4]]));
        if rest[0] != HANDSHAKE || rest[1] != 3 || len == 0 || len > MAX_RECORD {
            return ClientHello::NoServerName;
        }
        let payload = &rest[5..rest.len().min(5 + len)];
        handshake.extend_from_slice(payload);
        if payload.len() < len {
            // The record is not all here: its first part may hold the whole message.
            if handshake.len() >= 4 && handshake[0] == CLIENT_HELLO {
                let msg =
                    u32::from_be_bytes([0, handshake[1], handshake[2], handshake[3]]) as usize;
                if handshake.len() >= msg + 4 && msg + 4 <= MAX_CLIENT_HELLO {
                    return server_name(&handshake[4..msg + 4]);
                }
            }
            return give_up(buf);
        }
        pos += 5 + len;
    }
}

/// The server name in a whole ClientHello body.
fn server_name(body: &[u8]) -> ClientHello {
    let Ok((_, hello)) = tls_parser::parse_tls_handshake_client_hello(body) else {
        return ClientHello::NoServerName;
    };
    let mut ext = hello.ext.unwrap_or_default();
    // Walk the extensions by their lengths; only `server_name` is parsed.
    while ext.len() >= 4 {
        let kind = u16::from_be_bytes([ext[0], ext[1]]);
        let len = usize::from(u16::from_be_bytes([ext[2], ext[3]]));
        let Some(data) = ext.get(4..4 + len) else {
            return ClientHello::NoServerName;
        };
        if kind == SERVER_NAME {
            let Ok((_, tls_parser::TlsExtension::SNI(names))) =
                tls_parser::parse_tls_extension_sni_content(data)
            else {
                return ClientHello::NoServerName;
            };
            return names
                .iter()
                .find(|(kind, _)| kind.0 == 0)
                .and_then(|(_, name)| host_name(name))
                .map_or(ClientHello::NoServerName, ClientHello::ServerName);
        }
        ext = &ext[4 + len..];
    }
    ClientHello::NoServerName
}

/// A `server_name` as a host name: ASCII letters, digits, `-`, `_` and dots, lower case,
/// without a trailing dot; `None` for anything else.
fn host_name(raw: &[u8]) -> Option<String> {
    let raw = raw.strip_suffix(b".").unwrap_or(raw);
    let ok = !raw.is_empty()
        && raw.len() <= 253
        && raw
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
    ok.then(|| String::from_utf8_lossy(raw).to_ascii_lowercase())
}

/// Whether `pattern` can be an `sni` key: a host name (`api.example.com`: letters, digits,
/// `-` and `_` in dot-separated labels, at most 253 bytes) or `*.` and one
/// (`*.example.com`). The error says what is wrong.
pub fn check_pattern(pattern: &str) -> Result<(), String> {
    let name = pattern.strip_prefix("*.").unwrap_or(pattern);
    if name.contains('*') {
        return Err("a wildcard is written `*.` at the start only (`*.example.com`)".into());
    }
    if name.is_empty() || name.len() > 253 {
        return Err("a server name is 1 to 253 bytes long".into());
    }
    if name
        .split('.')
        .any(|label| label.is_empty() || label.len() > 63)
    {
        return Err(
            "empty or over-long label (write the name without a trailing dot, labels of 1 to 63 characters)"
                .into(),
        );
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
    {
        return Err("a server name has only letters, digits, `-`, `_` and dots".into());
    }
    Ok(())
}

/// A listener's `sni` table: server names to routes (pool indices, say), exact names and
/// `*.suffix` patterns.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SniRoutes<T> {
    exact: BTreeMap<String, T>,
    /// `(".suffix", route)`, longest suffix first.
    wildcards: Vec<(String, T)>,
}

impl<T: Clone> SniRoutes<T> {
    /// The table of `(pattern, route)` pairs: `api.example.com` matches that name (in any
    /// case); `*.example.com` matches any name ending in `.example.com`.
    pub fn new(entries: impl IntoIterator<Item = (String, T)>) -> SniRoutes<T> {
        let mut routes = SniRoutes {
            exact: BTreeMap::new(),
            wildcards: Vec::new(),
        };
        for (pattern, route) in entries {
            let pattern = pattern.to_ascii_lowercase();
            match pattern.strip_prefix('*') {
                Some(suffix) => routes.wildcards.push((suffix.to_string(), route)),
                None => {
                    routes.exact.insert(pattern, route);
                }
            }
        }
        routes
            .wildcards
            .sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.0.cmp(&b.0)));
        routes
    }

    /// The route for `name` (lower case): the exact entry, else the longest matching
    /// `*.suffix`, else `None`.
    pub fn route(&self, name: &str) -> Option<T> {
        if let Some(r) = self.exact.get(name) {
            return Some(r.clone());
        }
        self.wildcards
            .iter()
            .find(|(suffix, _)| name.len() > suffix.len() && name.ends_with(suffix.as_str()))
            .map(|(_, r)| r.clone())
    }

    /// Every route the table names (with repeats).
    pub fn targets(&self) -> impl Iterator<Item = T> + '_ {
        self.exact
            .values()
            .chain(self.wildcards.iter().map(|(_, r)| r))
            .cloned()
    }

    /// Whether the table has no entry.
    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.wildcards.is_empty()
    }
}

#[cfg(test)]
pub(crate) mod tests;
