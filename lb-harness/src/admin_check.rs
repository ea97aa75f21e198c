//! The `admin` target: arbitrary bytes sent to the admin endpoint.

use super::{Rule, Violation};
use lb_sans_io::admin::{self, Info, Method, Parsed};
use lb_sans_io::config::Config;
use lb_sans_io::pool::BackendState;
use lb_sans_io::time::Timestamp;
use lb_sans_io::Balancer;
use std::net::SocketAddr;

/// A deliberate fault in the admin endpoint as the check sees it, so tests can show
/// [`Rule::AdminHttp`] fires (see [`check_admin_bytes_with`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdminMutation {
    /// The response's `Content-Length` is one more than its body (a length counted before
    /// a trailing newline was dropped).
    ContentLengthOffByOne,
    /// The router matches a backend action by its path alone: `GET /backends/NAME/drain`
    /// (or `/pools/POOL/backends/NAME/drain`) drains.
    IgnoreMethod,
}

/// Feeds `data` after its first byte to the admin endpoint as the bytes of one
/// connection, arriving in two pieces (split where the first byte says), and answers it
/// against a balancer of two listeners and two pools: `web` (backends `a` and `b c`) and
/// `api` (`d` and `b c`: a name two pools have, which the short `/backends/NAME/...` form
/// must refuse as ambiguous).
/// Checks: no panic; the head parses the same whole as in pieces and with more bytes after
/// it; every answer is a well-formed HTTP/1.1 response whose `Content-Length` is its body's
/// length (with no body for `HEAD`), and `/status` answers JSON; only a `POST` to a backend
/// action (`/backends/NAME/ACTION` or `/pools/POOL/backends/NAME/ACTION`) changes the
/// balancer, and only that backend's state; the balancer's invariants hold.
pub fn check_admin_bytes(data: &[u8]) -> Result<(), Violation> {
    check_admin_bytes_with(data, None)
}

/// [`check_admin_bytes`] with a fault injected into the endpoint it checks.
pub fn check_admin_bytes_with(
    data: &[u8],
    mutation: Option<AdminMutation>,
) -> Result<(), Violation> {
    outcome_with(data, mutation).map(|_| ())
}

/// What the admin endpoint made of one input of [`check_admin_bytes`]: shows the
/// generators reach parsed and routed requests, not only refusals.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdminOutcome {
    /// No bytes, or an incomplete head: no answer yet.
    Incomplete,
    /// The head was refused (a 4xx or 5xx answer without routing).
    Refused(u16),
    /// The head parsed as a request and was routed; the answer's status.
    Routed(u16),
}

/// [`check_admin_bytes`], and what the endpoint made of the input.
pub fn admin_outcome(data: &[u8]) -> Result<AdminOutcome, Violation> {
    outcome_with(data, None)
}

fn outcome_with(data: &[u8], mutation: Option<AdminMutation>) -> Result<AdminOutcome, Violation> {
    let fail = |detail: String| Violation {
        step: 0,
        rule: Rule::AdminHttp,
        detail,
    };
    let Some((&split, data)) = data.split_first() else {
        return Ok(AdminOutcome::Incomplete);
    };
    let split = usize::from(split).min(data.len());
    let whole = admin::parse_request(data);
    let first = admin::parse_request(&data[..split]);
    if !matches!(first, Parsed::Incomplete) && first != whole {
        // A complete head in the first piece must be the same head as in the whole.
        return Err(fail(format!(
            "the head parsed differently in pieces: {first:?} vs {whole:?}"
        )));
    }
    if let Parsed::Request(_) = &whole {
        let mut longer = data.to_vec();
        longer.extend_from_slice(b"GET /other HTTP/1.1\r\n\r\n");
        let again = admin::parse_request(&longer);
        if again != whole {
            return Err(fail(format!(
                "bytes after the head changed it: {whole:?} vs {again:?}"
            )));
        }
    }
    let mut balancer = balancer();
    let before = states(&balancer);
    let info = Info::new(Timestamp::ZERO);
    let (reply, request) = match whole {
        Parsed::Incomplete => return Ok(AdminOutcome::Incomplete),
        Parsed::Bad(response) => (admin::reply_to_bad(response), None),
        Parsed::Request(req) => {
            let mut routed = req.clone();
            if mutation == Some(AdminMutation::IgnoreMethod) && is_action_path(&routed.path) {
                routed.method = Method::Post;
            }
            (
                admin::handle(
                    &routed,
                    &mut balancer,
                    &info,
                    Timestamp::from_nanos(1_000_000_000),
                ),
                Some(req),
            )
        }
    };
    balancer.check_invariants();
    let mut wire = reply.bytes();
    if mutation == Some(AdminMutation::ContentLengthOffByOne) {
        let header = format!("Content-Length: {}\r\n", reply.response.body.len());
        let wrong = format!("Content-Length: {}\r\n", reply.response.body.len() + 1);
        wire = String::from_utf8_lossy(&wire)
            .replacen(&header, &wrong, 1)
            .into_bytes();
    }
    check_response(&wire, reply.send_body, reply.response.body.len()).map_err(fail)?;
    let status_page = request
        .as_ref()
        .is_some_and(|r| r.method == Method::Get && r.path == "/status");
    if status_page && reply.response.status == 200 {
        let body = &reply.response.body;
        let json: serde_json::Value =
            serde_json::from_str(body).map_err(|e| fail(format!("/status is not JSON: {e}")))?;
        for key in ["listeners", "pools", "backends"] {
            if !json[key].is_array() && !json[key].is_object() {
                return Err(fail(format!("/status has no {key:?}: {body}")));
            }
        }
    }
    let after = states(&balancer);
    let changed: Vec<usize> = (0..after.len())
        .filter(|&i| after[i] != before[i])
        .collect();
    let is_action = request.as_ref().is_some_and(|r| {
        r.method == Method::Post && is_action_path(&r.path) && reply.response.status == 200
    });
    if !changed.is_empty() && !is_action {
        return Err(fail(format!(
            "{request:?} (status {}) changed backends {changed:?}",
            reply.response.status
        )));
    }
    if changed.len() > 1 {
        return Err(fail(format!("{request:?} changed backends {changed:?}")));
    }
    let status = reply.response.status;
    Ok(match request {
        Some(_) => AdminOutcome::Routed(status),
        None => AdminOutcome::Refused(status),
    })
}

/// Whether a path names a backend action (in either form).
fn is_action_path(path: &str) -> bool {
    path.starts_with("/backends/") || path.starts_with("/pools/")
}

/// Every backend's state, pool by pool.
fn states(balancer: &Balancer) -> Vec<BackendState> {
    balancer
        .pools()
        .flat_map(|(_, _, pool)| pool.backends().iter().map(|b| b.state()))
        .collect()
}

fn balancer() -> Balancer {
    let config = Config::from_json(
        r#"{"listeners":[{"name":"plain","listen":"127.0.0.1:8080","pool":"web"},
                         {"name":"tls","listen":"127.0.0.1:8443","sni":{"api.example.com":"api"}}],
            "pools":{"web":{"backends":[{"name":"a","address":"127.0.0.1:1"},{"name":"b c","address":"127.0.0.1:2"}],
                            "health_check":{"start_up":true}},
                     "api":{"backends":[{"name":"d","address":"127.0.0.1:3"},{"name":"b c","address":"127.0.0.1:4"}],
                            "health_check":{"start_up":true}}}}"#,
    )
    .expect("the harness config is valid");
    let addrs = [
        vec![
            SocketAddr::from(([127, 0, 0, 1], 1)),
            SocketAddr::from(([127, 0, 0, 1], 2)),
        ],
        vec![
            SocketAddr::from(([127, 0, 0, 1], 3)),
            SocketAddr::from(([127, 0, 0, 1], 4)),
        ],
    ];
    Balancer::new(&config, &addrs, 1, Timestamp::ZERO)
}

/// A response on the wire: status line, headers, blank line, and a body of its
/// `Content-Length` (none on the wire when `with_body` is false).
fn check_response(wire: &[u8], with_body: bool, body_len: usize) -> Result<(), String> {
    let text = String::from_utf8(wire.to_vec()).map_err(|_| "response is not UTF-8".to_string())?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no end of head: {text:?}"))?;
    let status = head
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(|| format!("bad status line: {head:?}"))?;
    if !(200..600).contains(&status) {
        return Err(format!("status {status}"));
    }
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("no Content-Length: {head:?}"))?;
    if length != body_len {
        return Err(format!("Content-Length {length}, body {body_len}"));
    }
    let expected = if with_body { body_len } else { 0 };
    if body.len() != expected {
        return Err(format!(
            "{} body bytes on the wire, expected {expected}",
            body.len()
        ));
    }
    if !head.contains("\r\nConnection: close") {
        return Err(format!("no Connection: close: {head:?}"));
    }
    Ok(())
}
