//! What the admin endpoint shows: the balancer's state (listeners, pools and their
//! backends) as Prometheus metrics, as JSON and as an HTML page. Read-only views of
//! [`Balancer`].

use super::Info;
use crate::balancer::Balancer;
use crate::ids::PoolId;
use crate::listener::Listener;
use crate::pool::{Backend, BackendState, Pool, RejectReason};
use crate::time::Timestamp;
use serde_json::{json, Value};
use std::fmt::Write as _;

/// The pools users see: live ones, and removed ones while connections to them are open.
fn listed_pools(b: &Balancer) -> impl Iterator<Item = (PoolId, &str, &Pool)> {
    b.pools()
        .filter(move |(id, _, p)| !b.pool_removed(*id) || p.open_flows() > 0)
}

/// The listeners users see: live ones, and removed ones while connections are open.
fn listed_listeners(b: &Balancer) -> impl Iterator<Item = &Listener> {
    b.listeners().iter().filter(|l| !l.removed || l.open > 0)
}

/// A label value and how a backend's sample for it is read.
type LabelledValue<'a> = (&'a str, &'a dyn Fn(&Backend) -> u64);

/// `GET /metrics`: the Prometheus text exposition format (0.0.4). Backend series carry
/// `pool` and `backend` labels, listener series a `listener` label.
pub fn metrics(balancer: &Balancer, info: &Info, now: Timestamp) -> String {
    let mut out = String::new();
    let backends: Vec<(&str, &Backend)> = listed_pools(balancer)
        .flat_map(|(_, name, p)| {
            p.backends()
                .iter()
                .filter(|b| b.listed())
                .map(move |b| (name, b))
        })
        .collect();
    let listeners: Vec<&Listener> = listed_listeners(balancer).collect();
    let mut family = |name: &str, kind: &str, help: &str, samples: Vec<(String, u64)>| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{labels} {value}");
        }
    };
    let backend_labels = |pool: &str, b: &Backend| {
        format!("pool=\"{}\",backend=\"{}\"", label(pool), label(&b.name))
    };
    let per_backend = |f: &dyn Fn(&Backend) -> u64| -> Vec<(String, u64)> {
        backends
            .iter()
            .map(|(pool, b)| (format!("{{{}}}", backend_labels(pool, b)), f(b)))
            .collect()
    };
    let per_backend2 = |extra: &str, values: [LabelledValue<'_>; 2]| {
        backends
            .iter()
            .flat_map(|(pool, b)| {
                values.map(|(v, f)| {
                    (
                        format!("{{{},{extra}=\"{v}\"}}", backend_labels(pool, b)),
                        f(b),
                    )
                })
            })
            .collect::<Vec<_>>()
    };
    family(
        "lb_backend_up",
        "gauge",
        "1 if the backend takes new connections (enabled and passing its checks), else 0.",
        per_backend(&|b| u64::from(b.state() == BackendState::Up)),
    );
    family(
        "lb_backend_active_connections",
        "gauge",
        "Connections open to the backend now (connecting or established).",
        per_backend(&|b| u64::from(b.active)),
    );
    family(
        "lb_backend_connections_total",
        "counter",
        "Client connections established to the backend.",
        per_backend(&|b| b.connections_total),
    );
    family(
        "lb_backend_connect_failures_total",
        "counter",
        "Connects to the backend for clients that failed or timed out.",
        per_backend(&|b| b.connect_failures_total),
    );
    family(
        "lb_bytes_total",
        "counter",
        "Bytes forwarded by closed connections, client to backend (to_backend) and back (to_client).",
        per_backend2(
            "direction",
            [("to_backend", &|b| b.bytes_to_backend), ("to_client", &|b| b.bytes_to_client)],
        ),
    );
    family(
        "lb_health_checks_total",
        "counter",
        "Health probes of the backend, by result.",
        per_backend2(
            "result",
            [
                ("passed", &|b| b.checks_passed),
                ("failed", &|b| b.checks_failed),
            ],
        ),
    );
    family(
        "lb_connections_rejected_total",
        "counter",
        "Client connections closed at once, by listener and reason.",
        listeners
            .iter()
            .flat_map(|l| {
                RejectReason::ALL.iter().map(move |r| {
                    (
                        format!(
                            "{{listener=\"{}\",reason=\"{}\"}}",
                            label(&l.name),
                            r.label()
                        ),
                        l.rejected(*r),
                    )
                })
            })
            .collect(),
    );
    family(
        "lb_connections_active",
        "gauge",
        "Client connections open now, by listener.",
        listeners
            .iter()
            .map(|l| {
                (
                    format!("{{listener=\"{}\"}}", label(&l.name)),
                    l.open as u64,
                )
            })
            .collect(),
    );
    family(
        "lb_connections_total",
        "counter",
        "Client connections admitted, by listener.",
        listeners
            .iter()
            .map(|l| (format!("{{listener=\"{}\"}}", label(&l.name)), l.total))
            .collect(),
    );
    family(
        "lb_pool_active_connections",
        "gauge",
        "Client connections routed to the pool and open now.",
        listed_pools(balancer)
            .map(|(_, name, p)| {
                (
                    format!("{{pool=\"{}\"}}", label(name)),
                    p.open_flows() as u64,
                )
            })
            .collect(),
    );
    let _ = writeln!(
        out,
        "# HELP lb_uptime_seconds Seconds since the load balancer started.\n# TYPE lb_uptime_seconds gauge\nlb_uptime_seconds {:.3}",
        now.saturating_duration_since(info.started).as_secs_f64()
    );
    out
}

/// A Prometheus label value, escaped.
fn label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// One backend as `/status` and the `POST` actions show it.
pub fn backend_json(b: &Backend, now: Timestamp) -> Value {
    json!({
        "name": b.name,
        "address": b.addr.to_string(),
        "weight": b.weight,
        "max_connections": b.max_connections,
        "state": b.state().label(),
        "removed": b.removed(),
        "admin": b.admin().label(),
        "health": b.health().label(),
        "active_connections": b.active,
        "connections_total": b.connections_total,
        "connect_failures_total": b.connect_failures_total,
        "bytes_to_backend": b.bytes_to_backend,
        "bytes_to_client": b.bytes_to_client,
        "checks_passed": b.checks_passed,
        "checks_failed": b.checks_failed,
        "last_check": b.last_check.as_ref().map(|c| json!({
            "result": if c.passed() { "passed" } else { "failed" },
            "reason": c.result.as_ref().err().map(ToString::to_string),
            "duration_ms": c.duration.as_millis() as u64,
            "age_ms": now.saturating_duration_since(c.at).as_millis() as u64,
        })),
    })
}

/// One listener as `/status` shows it.
fn listener_json(l: &Listener) -> Value {
    let c = l.config();
    let rejected: serde_json::Map<String, Value> = RejectReason::ALL
        .iter()
        .map(|r| (r.label().to_string(), json!(l.rejected(*r))))
        .collect();
    let sni: serde_json::Map<String, Value> = c
        .sni
        .iter()
        .map(|(pattern, pool)| (pattern.clone(), json!(pool)))
        .collect();
    json!({
        "name": l.name,
        "listen": l.bound.unwrap_or(l.listen).to_string(),
        "protocol": "tcp",
        "pool": c.pool,
        "sni": sni,
        "removed": l.removed,
        "active_connections": l.open,
        "connections_total": l.total,
        "max_connections": c.max_connections,
        "rejected": rejected,
    })
}

/// `GET /status`: the whole load balancer as JSON: its listeners, its pools with their
/// backends, and (for one-service tools) every backend in one list naming its pool, the
/// first listener's address and the first pool's algorithm.
pub fn status(balancer: &Balancer, info: &Info, now: Timestamp) -> String {
    let rejected: serde_json::Map<String, Value> = RejectReason::ALL
        .iter()
        .map(|r| (r.label().to_string(), json!(balancer.rejected(*r))))
        .collect();
    let first_listener = balancer.listeners().iter().find(|l| !l.removed);
    let pools: Vec<Value> = listed_pools(balancer)
        .map(|(id, name, p)| {
            json!({
                "name": name,
                "algorithm": p.algorithm().name(),
                "removed": balancer.pool_removed(id),
                "active_connections": p.open_flows(),
                "rejected": { "no_backend": p.rejected(RejectReason::NoBackend) },
                "backends": p.backends().iter().filter(|b| b.listed())
                    .map(|b| backend_json(b, now)).collect::<Vec<_>>(),
            })
        })
        .collect();
    let backends: Vec<Value> = listed_pools(balancer)
        .flat_map(|(_, name, p)| {
            p.backends().iter().filter(|b| b.listed()).map(move |b| {
                let mut v = backend_json(b, now);
                v["pool"] = json!(name);
                v
            })
        })
        .collect();
    let v = json!({
        "algorithm": listed_pools(balancer).next().map(|(_, _, p)| p.algorithm().name()),
        "listen": first_listener.map(|l| l.bound.unwrap_or(l.listen).to_string()),
        "uptime_ms": now.saturating_duration_since(info.started).as_millis() as u64,
        "active_connections": balancer.open_flows(),
        "rejected": rejected,
        "listeners": listed_listeners(balancer).map(listener_json).collect::<Vec<_>>(),
        "pools": pools,
        "backends": backends,
    });
    let mut s = serde_json::to_string_pretty(&v).unwrap_or_default();
    s.push('\n');
    s
}
