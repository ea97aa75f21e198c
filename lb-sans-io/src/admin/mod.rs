//! The admin endpoint's decisions: which request gets which answer, and what `POST
//! /backends/NAME/{drain,disable,enable}` does to the pool. The driver only moves bytes:
//! it reads a head until [`parse_request`] has one, calls [`handle`] under the pool's
//! lock and writes [`Reply::bytes`].
//!
//! - `GET /metrics`: Prometheus text.
//! - `GET /status`: JSON.
//! - `GET /`: an HTML page of the same, reloading itself.
//! - `POST /backends/NAME/drain`, `/disable`, `/enable` (NAME percent-encoded as needed).
//!
//! Which connections it serves when more arrive than it has room for is [`slots`]'s
//! decision.

mod http;
mod render;
pub mod slots;

pub use http::{parse_request, Method, Parsed, Request, Response, MAX_HEAD};

use crate::pool::{AdminState, Pool};
use crate::time::Timestamp;
use serde_json::json;
use std::net::SocketAddr;

/// What the endpoint shows about the load balancer itself.
#[derive(Clone, Copy, Debug)]
pub struct Info {
    /// The address clients connect to.
    pub listen: SocketAddr,
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

/// Answers `req`, applying admin actions to `pool`.
pub fn handle(req: &Request, pool: &mut Pool, info: &Info, now: Timestamp) -> Reply {
    let path = req.path.as_str();
    if let Some(rest) = path.strip_prefix("/backends/") {
        return backend_action(req, rest, pool, now);
    }
    let (body, content_type) = match path {
        "/" => (
            render::dashboard(pool, info, now),
            "text/html; charset=utf-8",
        ),
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

/// `POST /backends/NAME/ACTION`.
fn backend_action(req: &Request, rest: &str, pool: &mut Pool, now: Timestamp) -> Reply {
    let error = |status, message: String| {
        Reply::new(Response::json(
            status,
            format!("{}\n", json!({ "error": message })),
        ))
    };
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
    let Some(id) = pool.backend_by_name(name) else {
        return error(404, format!("no backend named {name:?}"));
    };
    if pool.set_admin(id, admin, now).is_err() {
        return error(404, format!("no backend named {name:?}"));
    }
    let body = pool
        .backend(id)
        .map(|b| render::backend_json(b, now))
        .unwrap_or_default();
    Reply {
        response: Response::json(200, format!("{body}\n")),
        send_body: true,
    }
}

#[cfg(test)]
mod tests;
