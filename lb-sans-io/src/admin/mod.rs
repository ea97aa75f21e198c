//! The admin endpoint's decisions: which request gets which answer, and what `POST
//! /pools/POOL/backends/NAME/{drain,disable,enable}` does to the balancer. The driver only
//! moves bytes: it reads a head until [`parse_request`] has one, calls [`handle`] under the
//! balancer's lock and writes [`Reply::bytes`].
//!
//! - `GET /metrics`: Prometheus text.
//! - `GET /status`: JSON.
//! - `GET /`: the dashboard, a static page whose script polls `/status` ([`dashboard`]).
//! - `POST /pools/POOL/backends/NAME/drain`, `/disable`, `/enable` (names percent-encoded
//!   as needed), and `/weight` with a body `{"weight": N}` (1..=1000, until the next
//!   reload); `POST /backends/NAME/...` when NAME is the name of a backend in one pool
//!   only (`409 Conflict` when several pools have one).
//!
//! Which connections it serves when more arrive than it has room for is [`slots`]'s
//! decision.

mod dashboard;
mod http;
mod render;
pub mod slots;

pub use http::{parse_request, Method, Parsed, Request, Response, MAX_BODY, MAX_HEAD};

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
    /// Its version and commit (`lb_build_info`).
    pub build: BuildInfo,
    /// The process' own figures, read by the driver for this request (`process_*`
    /// metrics); `None` where there is no process to read (the simulation).
    pub process: Option<ProcessStats>,
}

impl Info {
    /// Started at `started`, with no build or process figures.
    pub fn new(started: Timestamp) -> Info {
        Info {
            started,
            build: BuildInfo {
                version: "unknown",
                commit: "unknown",
            },
            process: None,
        }
    }
}

/// The build, as `lb_build_info` labels it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BuildInfo {
    /// The package version.
    pub version: &'static str,
    /// The git commit it was built from.
    pub commit: &'static str,
}

/// A process' figures, as the standard `process_*` metrics name them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ProcessStats {
    /// Start time, seconds since the Unix epoch.
    pub start_time_seconds: f64,
    /// User and system CPU time spent, in seconds.
    pub cpu_seconds: f64,
    /// Open file descriptors.
    pub open_fds: u64,
    /// The limit of open file descriptors.
    pub max_fds: u64,
    /// Resident memory, in bytes.
    pub resident_memory_bytes: u64,
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
    if !["drain", "disable", "enable", "weight"].contains(&action) {
        return error(
            404,
            format!("unknown action {action:?}: expected drain, disable, enable or weight"),
        );
    }
    if req.method != Method::Post {
        return Reply::new(method_not_allowed("POST"));
    }
    let change = match action {
        "drain" => Change::Admin(AdminState::Draining),
        "disable" => Change::Admin(AdminState::Disabled),
        "enable" => Change::Admin(AdminState::Enabled),
        _ => match weight_of(&req.body) {
            Ok(w) => Change::Weight(w),
            Err(why) => return error(400, why),
        },
    };
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
    let done = match change {
        Change::Admin(admin) => balancer.set_admin(pool, id, admin, now),
        Change::Weight(w) => balancer.set_weight(pool, id, w, now),
    };
    if done.is_err() {
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

/// What a `POST` on a backend asks for.
enum Change {
    Admin(AdminState),
    Weight(u32),
}

/// The weight in a `/weight` body: `{"weight": N}`, N in 1..=1000.
fn weight_of(body: &[u8]) -> Result<u32, String> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        weight: u64,
    }
    let b: Body = serde_json::from_slice(body)
        .map_err(|e| format!("the body must be {{\"weight\": N}} with N from 1 to 1000: {e}"))?;
    if !(1..=1000).contains(&b.weight) {
        return Err(format!(
            "weight {} is out of range: it must be from 1 to 1000",
            b.weight
        ));
    }
    Ok(b.weight as u32)
}

#[cfg(test)]
mod tests;
