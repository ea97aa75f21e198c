//! Many services in one load balancer: the `services` scenario's listeners and pools, the
//! config file that names them, the TLS ClientHellos its clients send first, and the
//! route each client must get, computed here from the plan alone (independently of the
//! load balancer's routing code).
//!
//! The shape: listener `plain` (port [`LB_PORT`]) sends everyone to pool `web`; listener
//! `tls` ([`TLS_PORT`]) reads the ClientHello and routes `api.sim` to pool `api` and
//! `*.internal.sim` to pool `internal`, anything else to its seed-chosen default pool (or
//! nowhere: `no_route`). Listeners `old` ([`OLD_PORT`], to `web`) and `new` ([`NEW_PORT`],
//! to `api`) take turns: the first config has `old`, and each reload that swaps them
//! removes the one and adds the other. Every backend belongs to exactly one pool; pools
//! reachable through `tls` are echo backends only (an HTTP backend would answer a
//! ClientHello with 400).

use crate::rng::SimRng;
use crate::scenario::{ADMIN_PORT, LB_PORT};
use lb_runtime::demo::DemoMode;
use lb_sans_io::Algorithm;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// The `tls` listener's port.
pub const TLS_PORT: u16 = 8443;
/// The `old` listener's port (in the first config).
pub const OLD_PORT: u16 = 8081;
/// The `new` listener's port (added by a reload that removes `old`).
pub const NEW_PORT: u16 = 8082;

/// Index of pool `web` in [`Services::pools`].
pub const WEB: usize = 0;
/// Index of pool `api`.
pub const API: usize = 1;
/// Index of pool `internal`.
pub const INTERNAL: usize = 2;

/// Index of listener `plain` in [`Services::listeners`].
pub const PLAIN: usize = 0;
/// Index of listener `tls`.
pub const TLS: usize = 1;
/// Index of listener `old`.
pub const OLD: usize = 2;
/// Index of listener `new`.
pub const NEW: usize = 3;

/// The exact `sni` entry.
pub const API_NAME: &str = "api.sim";
/// The wildcard `sni` entry's suffix (`*.internal.sim`).
pub const INTERNAL_SUFFIX: &str = ".internal.sim";

/// One pool of the plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolPlan {
    /// Its name in the config.
    pub name: &'static str,
    /// `algorithm`.
    pub algorithm: &'static str,
    /// Its backends (indices into the plan's backends), in config order.
    pub backends: Vec<usize>,
}

/// One listener of the plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenerPlan {
    /// Its name in the config.
    pub name: &'static str,
    /// Its port.
    pub port: u16,
    /// `pool` (an index into [`Services::pools`]).
    pub pool: Option<usize>,
    /// `sni`: patterns and pools.
    pub sni: Vec<(&'static str, usize)>,
    /// `timeouts.client_hello`, when set.
    pub client_hello: Option<Duration>,
    /// In the first config.
    pub initial: bool,
}

/// The listeners and pools of a `services` plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Services {
    /// `web`, `api`, `internal`.
    pub pools: Vec<PoolPlan>,
    /// `plain`, `tls`, `old`, `new`.
    pub listeners: Vec<ListenerPlan>,
}

/// What a client sends first on a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Greeting {
    /// Nothing special: its requests.
    Plain,
    /// A TLS ClientHello, then its requests.
    Hello {
        /// The `server_name` it carries (as sent: case and all), if any.
        name: Option<String>,
        /// The hello's bytes (one or two TLS records).
        bytes: Vec<u8>,
        /// Offsets where the client splits its writes of `bytes`.
        cuts: Vec<usize>,
    },
}

impl Greeting {
    /// The server name sent, if a ClientHello carried one.
    pub fn server_name(&self) -> Option<&str> {
        match self {
            Greeting::Hello { name, .. } => name.as_deref(),
            Greeting::Plain => None,
        }
    }

    /// Whether a ClientHello was sent first.
    pub fn is_hello(&self) -> bool {
        matches!(self, Greeting::Hello { .. })
    }

    /// A short description for traces.
    pub fn describe(&self) -> String {
        match self {
            Greeting::Plain => "plain".to_string(),
            Greeting::Hello { name, bytes, cuts } => format!(
                "hello {} ({} bytes in {} write(s))",
                name.as_deref().unwrap_or("(no server_name)"),
                bytes.len(),
                cuts.len() + 1
            ),
        }
    }
}

impl Services {
    /// Draws the listeners and pools, and what each backend serves.
    pub fn draw(rng: &mut SimRng) -> (Services, Vec<DemoMode>) {
        let default = [None, Some(WEB), Some(API), Some(INTERNAL)][rng.gen_range(0..4usize)];
        let sizes = [
            rng.gen_range(2..=3usize),
            rng.gen_range(2..=3usize),
            rng.gen_range(1..=2usize),
        ];
        let names = ["web", "api", "internal"];
        let mut pools = Vec::new();
        let mut modes = Vec::new();
        for (p, (&name, &size)) in names.iter().zip(&sizes).enumerate() {
            let all = Algorithm::ALL;
            let algorithm = all[rng.gen_range(0..all.len())].name();
            let mut backends = Vec::new();
            for k in 0..size {
                backends.push(modes.len());
                // Only `web` serves HTTP, and only when `tls` never sends it a client.
                let http = p == WEB && default != Some(WEB) && (k == 1 || rng.gen_bool(0.5));
                modes.push(if http { DemoMode::Http } else { DemoMode::Echo });
            }
            pools.push(PoolPlan {
                name,
                algorithm,
                backends,
            });
        }
        let client_hello = Duration::from_millis(rng.gen_range(1000..=3000));
        let listeners = vec![
            ListenerPlan {
                name: "plain",
                port: LB_PORT,
                pool: Some(WEB),
                sni: Vec::new(),
                client_hello: None,
                initial: true,
            },
            ListenerPlan {
                name: "tls",
                port: TLS_PORT,
                pool: default,
                sni: vec![(API_NAME, API), ("*.internal.sim", INTERNAL)],
                client_hello: Some(client_hello),
                initial: true,
            },
            ListenerPlan {
                name: "old",
                port: OLD_PORT,
                pool: Some(WEB),
                sni: Vec::new(),
                client_hello: None,
                initial: true,
            },
            ListenerPlan {
                name: "new",
                port: NEW_PORT,
                pool: Some(API),
                sni: Vec::new(),
                client_hello: None,
                initial: false,
            },
        ];
        (Services { pools, listeners }, modes)
    }

    /// The pool of backend `b`.
    pub fn pool_of(&self, b: usize) -> Option<usize> {
        self.pools.iter().position(|p| p.backends.contains(&b))
    }

    /// Backend `b`'s name in its pool's config (names repeat across pools, so the admin
    /// endpoint must be addressed by pool).
    pub fn backend_name(&self, b: usize) -> String {
        let p = self.pool_of(b).unwrap_or(0);
        let k = self.pools[p]
            .backends
            .iter()
            .position(|&x| x == b)
            .unwrap_or(0);
        format!("s{k}")
    }

    /// The listener on `port`.
    pub fn listener_on(&self, port: u16) -> Option<usize> {
        self.listeners.iter().position(|l| l.port == port)
    }

    /// The pool a client of listener `listener` must reach, having sent `greeting`: the
    /// exact name first (any case), then the longest `*.suffix`, else the listener's
    /// `pool`; `None`: nowhere (`no_route`). Computed from the plan, not by the load
    /// balancer's code.
    pub fn expected_pool(&self, listener: usize, greeting: &Greeting) -> Option<usize> {
        let l = &self.listeners[listener];
        let Some(name) = greeting.server_name() else {
            return l.pool;
        };
        let name = name.to_ascii_lowercase();
        let mut best: Option<(usize, usize)> = None;
        for &(pattern, pool) in &l.sni {
            match pattern.strip_prefix('*') {
                None if pattern == name => return Some(pool),
                Some(suffix)
                    if name.len() > suffix.len()
                        && name.ends_with(suffix)
                        && best.is_none_or(|(len, _)| suffix.len() > len) =>
                {
                    best = Some((suffix.len(), pool));
                }
                _ => {}
            }
        }
        best.map(|(_, p)| p).or(l.pool)
    }

    /// The config file: listeners `live` (by index), each pool with the backends
    /// `configured` now at their `weights`, and the settings every pool and listener
    /// shares.
    pub fn config_json(
        &self,
        live: &[bool],
        backends: &[BackendEntry],
        common: &Common<'_>,
    ) -> String {
        let mut listeners = Vec::new();
        for (i, l) in self.listeners.iter().enumerate() {
            if !live[i] {
                continue;
            }
            let mut fields = vec![
                format!(r#""name": "{}""#, l.name),
                format!(r#""listen": "0.0.0.0:{}""#, l.port),
            ];
            if let Some(p) = l.pool {
                fields.push(format!(r#""pool": "{}""#, self.pools[p].name));
            }
            if !l.sni.is_empty() {
                let entries: Vec<String> = l
                    .sni
                    .iter()
                    .map(|(pattern, p)| format!(r#""{pattern}": "{}""#, self.pools[*p].name))
                    .collect();
                fields.push(format!(r#""sni": {{ {} }}"#, entries.join(", ")));
            }
            if let Some(d) = l.client_hello {
                fields.push(format!(
                    r#""timeouts": {{ "client_hello": "{}ms" }}"#,
                    d.as_millis()
                ));
            }
            if let Some(ips) = common.allow {
                let nets: Vec<String> = ips.iter().map(|ip| format!("\"{ip}\"")).collect();
                fields.push(format!(r#""allow": [{}]"#, nets.join(", ")));
            }
            listeners.push(format!("{{ {} }}", fields.join(", ")));
        }
        let mut pools = Vec::new();
        for p in &self.pools {
            let list: Vec<String> = backends
                .iter()
                .filter(|e| p.backends.contains(&e.index))
                .map(|e| {
                    format!(
                        r#"{{ "name": "{}", "address": "{}", "weight": {} }}"#,
                        e.name, e.addr, e.weight
                    )
                })
                .collect();
            let mut more = String::new();
            if let Some(v) = common.proxy {
                more.push_str(&format!(r#", "proxy_protocol": "{v}""#));
            }
            if common.close_on_backend_down {
                more.push_str(r#", "on_backend_down": "close""#);
            }
            pools.push(format!(
                r#"    "{name}": {{ "algorithm": "{algorithm}", "backends": [{list}], "health_check": {health}, "retries": {retries}{more} }}"#,
                name = p.name,
                algorithm = p.algorithm,
                list = list.join(", "),
                health = common.health_check,
                retries = common.retries,
            ));
        }
        format!(
            r#"{{
  "listeners": [
    {listeners}
  ],
  "pools": {{
{pools}
  }},
  "timeouts": {{ "connect": "{connect}ms", "idle": "{idle}ms", "half_close": "{half_close}ms", "shutdown_grace": "{grace}ms" }},
  "admin": "0.0.0.0:{admin}"
}}"#,
            listeners = listeners.join(",\n    "),
            pools = pools.join(",\n"),
            connect = common.connect.as_millis(),
            idle = common.idle.as_millis(),
            half_close = common.half_close.as_millis(),
            grace = common.grace.as_millis(),
            admin = ADMIN_PORT,
        )
    }
}

/// One backend as a config lists it.
#[derive(Clone, Debug)]
pub struct BackendEntry {
    /// Its index in the plan.
    pub index: usize,
    /// Its name in its pool.
    pub name: String,
    /// Its address.
    pub addr: SocketAddr,
    /// Its weight.
    pub weight: u32,
}

/// The settings every pool and listener of a `services` config shares.
#[derive(Clone, Debug)]
pub struct Common<'a> {
    /// The `health_check` object, as JSON.
    pub health_check: String,
    /// `retries`.
    pub retries: u32,
    /// `timeouts.connect`.
    pub connect: Duration,
    /// `timeouts.idle`.
    pub idle: Duration,
    /// `timeouts.half_close`.
    pub half_close: Duration,
    /// `timeouts.shutdown_grace`.
    pub grace: Duration,
    /// `proxy_protocol` of every pool.
    pub proxy: Option<&'a str>,
    /// `allow` of every listener.
    pub allow: Option<&'a [IpAddr]>,
    /// `on_backend_down: close` in every pool.
    pub close_on_backend_down: bool,
}

/// A TLS ClientHello as a client's first flight: a handshake message of type 1 in one TLS
/// record (type 22), or split across two records at `split` bytes of the message. It
/// carries `name` in a `server_name` extension (none when `None`), the session's `id` in
/// its legacy session id (at most 32 bytes), and `pad` bytes of padding extension.
pub fn client_hello(id: &str, name: Option<&str>, pad: usize, split: Option<usize>) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&[3, 3]); // legacy_version: TLS 1.2
                                     // random: derived from the id, so hellos differ.
    let mut x = id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    for _ in 0..32 {
        x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        body.push((x >> 56) as u8);
    }
    let sid = &id.as_bytes()[..id.len().min(32)];
    body.push(sid.len() as u8);
    body.extend_from_slice(sid);
    let suites: [u16; 4] = [0x1301, 0x1302, 0x1303, 0xc02f];
    body.extend_from_slice(&((suites.len() * 2) as u16).to_be_bytes());
    for s in suites {
        body.extend_from_slice(&s.to_be_bytes());
    }
    body.extend_from_slice(&[1, 0]); // compression: null
    let mut ext = Vec::new();
    if let Some(name) = name {
        let n = name.as_bytes();
        let mut list = vec![0u8]; // host_name
        list.extend_from_slice(&(n.len() as u16).to_be_bytes());
        list.extend_from_slice(n);
        let mut data = (list.len() as u16).to_be_bytes().to_vec();
        data.extend_from_slice(&list);
        push_ext(&mut ext, 0, &data);
    }
    push_ext(&mut ext, 43, &[2, 3, 4]); // supported_versions: TLS 1.3
    push_ext(&mut ext, 10, &[0, 2, 0, 29]); // supported_groups: x25519
    if pad > 0 {
        push_ext(&mut ext, 21, &vec![0u8; pad]); // padding
    }
    body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    body.extend_from_slice(&ext);
    let mut message = vec![1u8]; // client_hello
    message.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    message.extend_from_slice(&body);
    let parts: Vec<&[u8]> = match split.filter(|&s| s > 0 && s < message.len()) {
        Some(s) => vec![&message[..s], &message[s..]],
        None => vec![&message[..]],
    };
    let mut out = Vec::new();
    for part in parts {
        out.extend_from_slice(&[22, 3, 1]);
        out.extend_from_slice(&(part.len() as u16).to_be_bytes());
        out.extend_from_slice(part);
    }
    out
}

fn push_ext(out: &mut Vec<u8>, kind: u16, data: &[u8]) {
    out.extend_from_slice(&kind.to_be_bytes());
    out.extend_from_slice(&(data.len() as u16).to_be_bytes());
    out.extend_from_slice(data);
}

/// The bytes after the complete TLS handshake records at the start of `data` (a
/// ClientHello's), or `None` when `data` ends inside one. Data that does not start with a
/// handshake record is returned whole.
pub fn after_hello(data: &[u8]) -> Option<&[u8]> {
    let mut rest = data;
    while rest.first() == Some(&22) {
        if rest.len() < 5 {
            return None;
        }
        let len = usize::from(u16::from_be_bytes([rest[3], rest[4]]));
        rest = rest.get(5 + len..)?;
    }
    Some(rest)
}

/// Draws what a client of listener `listener` sends first, for session `id`.
pub fn draw_greeting(services: &Services, listener: usize, id: &str, rng: &mut SimRng) -> Greeting {
    if listener != TLS {
        return Greeting::Plain;
    }
    let upper = rng.gen_bool(0.3);
    let case = |s: String| if upper { s.to_ascii_uppercase() } else { s };
    let name = match rng.gen_range(0..100u32) {
        0..=34 => Some(case(API_NAME.to_string())),
        35..=59 => {
            let label = format!("n{}", rng.gen_range(0..1000u32));
            let deeper = if rng.gen_bool(0.3) { "x." } else { "" };
            Some(case(format!("{deeper}{label}{INTERNAL_SUFFIX}")))
        }
        // Unknown names: one that only looks close (the bare suffix, a longer name).
        60..=69 => Some(
            ["www.other.sim", "internal.sim", "xapi.sim", "api.sim.evil"][rng.gen_range(0..4usize)]
                .to_string(),
        ),
        70..=79 => None,
        _ => return Greeting::Plain,
    };
    let _ = services;
    let pad = if rng.gen_bool(0.5) {
        rng.gen_range(0..600usize)
    } else {
        0
    };
    let probe = client_hello(id, name.as_deref(), pad, None);
    let message_len = probe.len() - 5;
    let split = rng.gen_bool(0.3).then(|| rng.gen_range(1..message_len));
    let bytes = client_hello(id, name.as_deref(), pad, split);
    let writes = rng.gen_range(1..=3usize);
    let mut cuts: Vec<usize> = (1..writes).map(|_| rng.gen_range(1..bytes.len())).collect();
    cuts.sort_unstable();
    cuts.dedup();
    Greeting::Hello { name, bytes, cuts }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lb_sans_io::sni::{read_client_hello, ClientHello};

    #[test]
    fn hand_built_client_hellos_are_read_by_the_load_balancers_reader() {
        for pad in [0, 1, 300] {
            for name in [Some("API.Sim"), Some("a.b.internal.sim"), None] {
                let whole = client_hello("c1.2.3", name, pad, None);
                let message = whole.len() - 5;
                let expected = match name {
                    Some(n) => ClientHello::ServerName(n.to_ascii_lowercase()),
                    None => ClientHello::NoServerName,
                };
                for split in [None, Some(1), Some(4), Some(message / 2), Some(message - 1)] {
                    let bytes = client_hello("c1.2.3", name, pad, split);
                    assert_eq!(
                        read_client_hello(&bytes),
                        expected,
                        "{name:?} pad {pad} split {split:?}"
                    );
                    for cut in 0..bytes.len() {
                        assert_eq!(
                            read_client_hello(&bytes[..cut]),
                            ClientHello::Incomplete,
                            "{name:?} pad {pad} split {split:?} cut {cut}"
                        );
                    }
                    assert_eq!(after_hello(&bytes), Some(&[][..]));
                    let mut more = bytes.clone();
                    more.extend_from_slice(b"GET /x/r0 HTTP/1.1\r\n\r\n");
                    assert_eq!(after_hello(&more), Some(&b"GET /x/r0 HTTP/1.1\r\n\r\n"[..]));
                    assert_eq!(after_hello(&bytes[..bytes.len() - 1]), None);
                }
            }
        }
    }

    #[test]
    fn expected_routes_follow_the_sni_table() {
        let mut rng = SimRng::seed_from_u64(7);
        let (mut s, _) = Services::draw(&mut rng);
        let hello = |n: &str| Greeting::Hello {
            name: Some(n.to_string()),
            bytes: Vec::new(),
            cuts: Vec::new(),
        };
        for default in [None, Some(WEB), Some(INTERNAL)] {
            s.listeners[TLS].pool = default;
            assert_eq!(s.expected_pool(TLS, &hello("API.SIM")), Some(API));
            assert_eq!(
                s.expected_pool(TLS, &hello("a.b.Internal.sim")),
                Some(INTERNAL)
            );
            assert_eq!(s.expected_pool(TLS, &hello("internal.sim")), default);
            assert_eq!(s.expected_pool(TLS, &hello("xapi.sim")), default);
            assert_eq!(s.expected_pool(TLS, &Greeting::Plain), default);
            assert_eq!(s.expected_pool(PLAIN, &hello("api.sim")), Some(WEB));
        }
    }
}
