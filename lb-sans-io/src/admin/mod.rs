//! The admin endpoint's decisions: which request gets which answer, and what `POST
//! /pools/POOL/backends/NAME/{drain,disable,enable}` does to the balancer. The driver only
//! moves bytes: it reads a head until [`parse_request`] has one, calls [`handle`] under the
//! balancer's lock and writes [`Reply::bytes`].
//!
//! - `GET /metrics`: Prometheus text.
//! - `GET /status`: JSON.
//! - `GET /`: the dashboard, a static page whose script polls `/status` ([`dashboard`]).
//! - `POST /pools/POOL/backends/NAME/drain`, `/disable`, `/enable` (names percent-encoded
//!   as needed); `POST /backends/NAME/...` when NAME is the name of a backend in one pool
//!   only (`409 Conflict` when several pools have one).
//!
//! Which connections it serves when more arrive than it has room for is [`slots`]'s
//! decision.

mod dashboard;
mod http;
mod render;
pub mod slots;

pub use http::{parse_request, Method, Parsed, Request, Response, MAX_HEAD};

use crate::balancer::Balancer;
use crate::ids::{BackendId, PoolId};
use crate::pool::AdminState;
use crate::time::Timestamp;
use serde_json::json;

/// What the endpoint shows about the load balancer itself (the listeners and pools are the
/// balancer's).
#[derive(Clone, Copy, Debug)]
pub struct Info {
    /// When the load balancer started (for the uptime).
    pub started: Timestamp,
}

/// The answer to one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// The response.
    pub response: Response,
    /// False for `HEAD`: the head only.
    pub send_body: bool,
}

impl Reply {
    fn new(response: Response) -> Reply {
        Reply {
            response,
            send_body: true,
        }
    }

    /// The answer on the wire.
    pub fn bytes(&self) -> Vec<u8> {
        self.response.to_bytes(self.send_body)
    }
}

/// The answer to a request that could not be parsed ([`Parsed::Bad`]).
pub fn reply_to_bad(response: Response) -> Reply {
    Reply::new(response)
}

/// The answer to a client that did not send a whole request head in time.
pub fn timed_out() -> Reply {
    Reply::new(Response::text(408, "request head not received in time\n"))
}

/// The answer to a connection closed to make room for a new one while it was still
/// waiting for its request head (see [`slots`]).
pub fn evicted() -> Reply {
    Reply::new(Response::text(
        408,
        "request head not received; every admin connection slot is taken and this connection was the oldest waiting\n",
    ))
}

/// Answers `req`, applying admin actions to `balancer`.
pub fn handle(req: &Request, balancer: &mut Balancer, info: &Info, now: Timestamp) -> Reply {
    let path = req.path.as_str();
    if let Some(rest) = path.strip_prefix("/backends/") {
        return backend_action(req, None, rest, balancer, now);
    }
    if let Some(rest) = path.strip_prefix("/pools/") {
        let Some((pool, rest)) = rest.split_once("/backends/") else {
            return error(
                404,
                "expected /pools/POOL/backends/NAME/drain, /disable or /enable".to_string(),
            );
        };
        return backend_action(req, Some(pool), rest, balancer, now);
    }
    let pool = balancer;
    let (body, content_type) = match path {
        "/" => (dashboard::page(), "text/html; charset=utf-8"),
        "/metrics" => (
            render::metrics(pool, info, now),
            "text/plain; version=0.0.4; charset=utf-8",
        ),
        "/status" => (render::status(pool, info, now), "application/json"),
        _ => return Reply::new(Response::text(404, format!("no such page: {path}\n"))),
    };
    match req.method {
        Method::Get | Method::Head => Reply {
            response: Response {
                status: 200,
                content_type,
                allow: None,
                body,
            },
            send_body: req.method == Method::Get,
        },
        _ => Reply::new(method_not_allowed("GET, HEAD")),
    }
}

fn method_not_allowed(allow: &'static str) -> Response {
    Response {
        allow: Some(allow),
        ..Response::text(405, format!("method not allowed; use {allow}\n"))
    }
}

/// A JSON error answer.
fn error(status: u16, message: String) -> Reply {
    Reply::new(Response::json(
        status,
        format!("{}\n", json!({ "error": message })),
    ))
}

/// `POST /pools/POOL/backends/NAME/ACTION` (`pool` given) or `POST /backends/NAME/ACTION`.
fn backend_action(
    req: &Request,
    pool: Option<&str>,
    rest: &str,
    balancer: &mut Balancer,
    now: Timestamp,
) -> Reply {
    let Some((name, action)) = rest.rsplit_once('/') else {
        return error(
            404,
            "expected /backends/NAME/drain, /disable or /enable".to_string(),
        );
    };
    let admin = match action {
        "drain" => AdminState::Draining,
        "disable" => AdminState::Disabled,
        "enable" => AdminState::Enabled,
        other => {
            return error(
                404,
                format!("unknown action {other:?}: expected drain, disable or enable"),
            )
        }
    };
    if req.method != Method::Post {
        return Reply::new(method_not_allowed("POST"));
    }
    let (pool, id): (PoolId, BackendId) = match pool {
        Some(pool_name) => {
            let Some(pool) = balancer.pool_by_name(pool_name) else {
                return error(404, format!("no pool named {pool_name:?}"));
            };
            let Some(id) = balancer.pool(pool).and_then(|p| p.backend_by_name(name)) else {
                return error(
                    404,
                    format!("no backend named {name:?} in pool {pool_name:?}"),
                );
            };
            (pool, id)
        }
        None => match balancer.backends_named(name)[..] {
            [] => return error(404, format!("no backend named {name:?}")),
            [one] => one,
            ref several => {
                let pools: Vec<&str> = several
                    .iter()
                    .map(|(p, _)| balancer.pool_name(*p))
                    .collect();
                return error(
                    409,
                    format!(
                        "pools {} each have a backend named {name:?}: use /pools/POOL/backends/{name}/{action}",
                        pools.join(", ")
                    ),
                );
            }
        },
    };
    if balancer.set_admin(pool, id, admin, now).is_err() {
        return error(404, format!("no backend named {name:?}"));
    }
    let body = balancer
        .pool(pool)
        .and_then(|p| p.backend(id))
        .map(|b| {
            let mut v = render::backend_json(b, now);
            v["pool"] = json!(balancer.pool_name(pool));
            v
        })
        .unwrap_or_default();
    Reply {
        response: Response::json(200, format!("{body}\n")),
        send_body: true,
    }
}

#[cfg(test)]
mod tests;
