//! The `client_hello` target: arbitrary bytes as a client's first bytes on an `sni`
//! listener, through the ClientHello reader alone and through a flow that reads them in
//! pieces.

use super::scenario::ListenerModel;
use super::{Rule, Violation};
use bytes::Bytes;
use lb_sans_io::config::Config;
use lb_sans_io::flow::{Flow, FlowAction};
use lb_sans_io::ids::{FlowId, ListenerId, PoolId, Side};
use lb_sans_io::sni::{read_client_hello, ClientHello, MAX_CLIENT_HELLO};
use lb_sans_io::time::Timestamp;
use lb_sans_io::Balancer;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::OnceLock;

/// Inputs up to this long have every prefix read; longer ones a sample of prefixes (every
/// prefix of a 16 KiB input would be 16,385 reads of up to 16 KiB each).
const ALL_PREFIXES_UP_TO: usize = 600;

/// A deliberate fault in the ClientHello reader as the check sees it, so tests can show
/// the check fires (see [`check_client_hello_bytes_with`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientHelloMutation {
    /// The reader gives up (no server name) once the first TLS record is complete when the
    /// ClientHello goes on in the next one: a reader that does not reassemble records.
    FirstRecordOnly,
}

/// The listener the flows are checked on: `sni` patterns of each kind and a default pool.
const CONFIG: &str = r#"{
  "listeners": [{
    "name": "tls", "listen": "127.0.0.1:8443", "pool": "default",
    "sni": {"api.example.com": "api", "*.example.com": "example", "*.org": "org"}
  }],
  "pools": {
    "default": {"backends": [{"address": "10.0.0.1:443"}], "health_check": {"start_up": true}},
    "api": {"backends": [{"address": "10.0.1.1:443"}], "health_check": {"start_up": true}},
    "example": {"backends": [{"address": "10.0.2.1:443"}], "health_check": {"start_up": true}},
    "org": {"backends": [{"address": "10.0.3.1:443"}], "health_check": {"start_up": true}}
  }
}"#;

fn config() -> &'static Config {
    static CONFIG_ONCE: OnceLock<Config> = OnceLock::new();
    CONFIG_ONCE.get_or_init(|| Config::from_json(CONFIG).expect("the check's config is valid"))
}

/// The same listener as the harness models it (pools in file order).
fn model() -> ListenerModel {
    ListenerModel {
        sni: vec![
            ("api.example.com".into(), 1),
            ("*.example.com".into(), 2),
            ("*.org".into(), 3),
        ],
        default: Some(0),
        allow: None,
        max_connections: 10_000,
        per_client_max: None,
    }
}

/// Reads `data` after its first four bytes as everything a client sent first, arriving in
/// three pieces (split where the first two big-endian `u16`s say, modulo the length).
/// Checks:
///
/// - [`read_client_hello`] never panics; it says `Incomplete` only for fewer than
///   [`MAX_CLIENT_HELLO`] bytes; and once a prefix of the bytes has an answer, every longer
///   prefix has the same one (every prefix of a short input, a sample of a long one);
/// - a flow on an `sni` listener fed the pieces asks to be routed after exactly the first
///   piece whose bytes so far have an answer (or at the client's FIN), names the server
///   the whole bytes name (none when they name none, or have no answer by the FIN), and
///   goes to the pool the listener's routes give that name, on one of its backends.
pub fn check_client_hello_bytes(data: &[u8]) -> Result<(), Violation> {
    check_client_hello_bytes_with(data, None)
}

/// [`check_client_hello_bytes`] with a fault injected into the reader it checks.
pub fn check_client_hello_bytes_with(
    data: &[u8],
    mutation: Option<ClientHelloMutation>,
) -> Result<(), Violation> {
    outcome_with(data, mutation).map(|_| ())
}

/// [`check_client_hello_bytes`], and the reader's answer for the whole bytes: shows the
/// corpus reaches names, refusals and incomplete hellos.
pub fn client_hello_outcome(data: &[u8]) -> Result<ClientHello, Violation> {
    outcome_with(data, None)
}

/// The reader, with the fault injected.
fn reader(mutation: Option<ClientHelloMutation>) -> impl Fn(&[u8]) -> ClientHello {
    move |bytes: &[u8]| {
        let answer = read_client_hello(bytes);
        if mutation != Some(ClientHelloMutation::FirstRecordOnly) || bytes.len() < 5 {
            return answer;
        }
        let first = 5 + usize::from(u16::from_be_bytes([bytes[3], bytes[4]]));
        if bytes.len() >= first && read_client_hello(&bytes[..first]) == ClientHello::Incomplete {
            return ClientHello::NoServerName;
        }
        answer
    }
}

fn fail(detail: String) -> Violation {
    Violation {
        step: 0,
        rule: Rule::Route,
        detail,
    }
}

fn name_of(answer: &ClientHello) -> Option<String> {
    match answer {
        ClientHello::ServerName(name) => Some(name.clone()),
        _ => None,
    }
}

fn outcome_with(
    data: &[u8],
    mutation: Option<ClientHelloMutation>,
) -> Result<ClientHello, Violation> {
    let (head, bytes) = data.split_at(data.len().min(4));
    let split = |k: usize| {
        let v = head
            .get(2 * k..2 * k + 2)
            .map_or(0, |b| usize::from(u16::from_be_bytes([b[0], b[1]])));
        v % (bytes.len() + 1)
    };
    let (a, b) = (split(0).min(split(1)), split(0).max(split(1)));
    let read = reader(mutation);
    let whole = read(bytes);
    if whole == ClientHello::Incomplete && bytes.len() >= MAX_CLIENT_HELLO {
        return Err(fail(format!(
            "{} bytes are still incomplete (at most {MAX_CLIENT_HELLO} are read)",
            bytes.len()
        )));
    }
    // Prefixes: all of a short input; the ends, the pieces' ends and an even sample of a
    // long one.
    let n = bytes.len();
    let prefixes: BTreeSet<usize> = if n <= ALL_PREFIXES_UP_TO {
        (0..=n).collect()
    } else {
        (0..=64)
            .chain(n - 64..=n)
            .chain((0..=256).map(|k| k * n / 256))
            .chain([a, b, MAX_CLIENT_HELLO - 1, MAX_CLIENT_HELLO].map(|k| k.min(n)))
            .collect()
    };
    let mut decided: Option<(usize, ClientHello)> = None;
    for k in prefixes {
        let answer = read(&bytes[..k]);
        match (&decided, answer) {
            (_, ClientHello::Incomplete) if k >= MAX_CLIENT_HELLO => {
                return Err(fail(format!(
                    "a prefix of {k} bytes is incomplete (at most {MAX_CLIENT_HELLO} are read)"
                )))
            }
            (Some((at, first)), answer) if answer != *first => {
                return Err(fail(format!(
                    "the first {at} bytes answer {first:?}, the first {k} {answer:?}"
                )))
            }
            (None, ClientHello::Incomplete) => {}
            (None, answer) => decided = Some((k, answer)),
            (Some(_), _) => {}
        }
    }
    check_flow(bytes, [a, b], &read, &whole)?;
    Ok(whole)
}

/// Feeds `bytes`, cut at `cuts`, to a flow on the `sni` listener, then its FIN.
fn check_flow(
    bytes: &[u8],
    cuts: [usize; 2],
    read: &dyn Fn(&[u8]) -> ClientHello,
    whole: &ClientHello,
) -> Result<(), Violation> {
    let config = config();
    let addrs: Vec<Vec<SocketAddr>> = config
        .pools
        .iter()
        .map(|p| {
            p.backends
                .iter()
                .map(|b| b.address.to_string().parse().expect("socket addresses"))
                .collect()
        })
        .collect();
    let now = Timestamp::ZERO;
    let mut balancer = Balancer::new(config, &addrs, 1, now);
    // No pause while the bytes are read: the flow holds them all.
    let high = (bytes.len() + 1).max(1 << 16);
    balancer.set_watermarks(high, high / 2);
    let client = SocketAddr::from(([192, 168, 0, 1], 40_000));
    let mut flow = Flow::accept(&mut balancer, FlowId(0), ListenerId(0), client, None, now);
    let bytes = Bytes::copy_from_slice(bytes);
    let pieces = [
        bytes.slice(..cuts[0]),
        bytes.slice(cuts[0]..cuts[1]),
        bytes.slice(cuts[1]..),
    ];
    let mut routed = false;
    let mut end = 0;
    for (k, piece) in pieces.iter().enumerate() {
        let mut actions = Vec::new();
        if k == 0 {
            // Nothing at accept: the flow waits for bytes.
            actions.extend(std::iter::from_fn(|| flow.poll_action()));
        }
        if piece.is_empty() && actions.is_empty() {
            continue;
        }
        end += piece.len();
        flow.handle_read(Side::Client, piece.clone(), now);
        actions.extend(std::iter::from_fn(|| flow.poll_action()));
        let route = actions.contains(&FlowAction::Route);
        let answered = read(&bytes[..end]) != ClientHello::Incomplete;
        let expected = answered && !routed;
        if route != expected || actions.iter().any(|a| *a != FlowAction::Route) {
            return Err(fail(format!(
                "after {end} of {} bytes in pieces cut at {cuts:?} (answered: {answered}, routed before: {routed}), the flow asked {actions:?}",
                bytes.len()
            )));
        }
        routed |= route;
    }
    if !routed {
        flow.handle_eof(Side::Client, now);
        let actions: Vec<FlowAction> = std::iter::from_fn(|| flow.poll_action()).collect();
        if actions != [FlowAction::Route] {
            return Err(fail(format!(
                "after all {} bytes and the client's FIN, the flow asked {actions:?}",
                bytes.len()
            )));
        }
    }
    flow.handle_route(&mut balancer, now);
    let name = name_of(whole);
    let pool = model().route(name.as_deref());
    let seen = (flow.summary().server_name, flow.pool().map(PoolId::index));
    if seen != (name.clone(), pool) {
        return Err(fail(format!(
            "{} bytes in pieces cut at {cuts:?}: the flow read server name {:?} and went to pool {:?}; read whole, the bytes name {name:?}, for pool {pool:?}",
            bytes.len(),
            seen.0,
            seen.1
        )));
    }
    let pool = pool.expect("the listener has a default pool");
    match flow.poll_action() {
        Some(FlowAction::Connect { addr, .. }) if addrs[pool].contains(&addr) => Ok(()),
        other => Err(fail(format!(
            "routed to pool {pool}, the flow's next action is {other:?}, not a connect to one of {:?}",
            addrs[pool]
        ))),
    }
}
