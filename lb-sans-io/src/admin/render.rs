//! What the admin endpoint shows: the pool's state as Prometheus metrics, as JSON and as
//! an HTML page. Read-only views of [`Pool`].

use super::Info;
use crate::pool::{Backend, BackendState, Pool, RejectReason};
use crate::time::Timestamp;
use serde_json::{json, Value};
use std::fmt::Write as _;

/// `GET /metrics`: the Prometheus text exposition format (0.0.4).
pub fn metrics(pool: &Pool, info: &Info, now: Timestamp) -> String {
    let mut out = String::new();
    let backends: Vec<&Backend> = pool.backends().iter().filter(|b| b.listed()).collect();
    let mut family = |name: &str, kind: &str, help: &str, samples: Vec<(String, u64)>| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{labels} {value}");
        }
    };
    let per_backend = |f: &dyn Fn(&Backend) -> u64| -> Vec<(String, u64)> {
        backends
            .iter()
            .map(|b| (format!("{{backend=\"{}\"}}", label(&b.name)), f(b)))
            .collect()
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
    let bytes = backends
        .iter()
        .flat_map(|b| {
            let name = label(&b.name);
            [
                (
                    format!("{{backend=\"{name}\",direction=\"to_backend\"}}"),
                    b.bytes_to_backend,
                ),
                (
                    format!("{{backend=\"{name}\",direction=\"to_client\"}}"),
                    b.bytes_to_client,
                ),
            ]
        })
        .collect();
    family(
        "lb_bytes_total",
        "counter",
        "Bytes forwarded by closed connections, client to backend (to_backend) and back (to_client).",
        bytes,
    );
    family(
        "lb_connections_rejected_total",
        "counter",
        "Client connections closed at once, by reason.",
        RejectReason::ALL
            .iter()
            .map(|r| (format!("{{reason=\"{}\"}}", r.label()), pool.rejected(*r)))
            .collect(),
    );
    let checks = backends
        .iter()
        .flat_map(|b| {
            let name = label(&b.name);
            [
                (
                    format!("{{backend=\"{name}\",result=\"passed\"}}"),
                    b.checks_passed,
                ),
                (
                    format!("{{backend=\"{name}\",result=\"failed\"}}"),
                    b.checks_failed,
                ),
            ]
        })
        .collect();
    family(
        "lb_health_checks_total",
        "counter",
        "Health probes of the backend, by result.",
        checks,
    );
    family(
        "lb_connections_active",
        "gauge",
        "Client connections open now.",
        vec![(String::new(), pool.open_flows() as u64)],
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

/// `GET /status`: the whole load balancer as JSON.
pub fn status(pool: &Pool, info: &Info, now: Timestamp) -> String {
    let rejected: serde_json::Map<String, Value> = RejectReason::ALL
        .iter()
        .map(|r| (r.label().to_string(), json!(pool.rejected(*r))))
        .collect();
    let v = json!({
        "algorithm": pool.algorithm().name(),
        "listen": info.listen.to_string(),
        "uptime_ms": now.saturating_duration_since(info.started).as_millis() as u64,
        "active_connections": pool.open_flows(),
        "rejected": rejected,
        "backends": pool
            .backends()
            .iter()
            .filter(|b| b.listed())
            .map(|b| backend_json(b, now))
            .collect::<Vec<_>>(),
    });
    let mut s = serde_json::to_string_pretty(&v).unwrap_or_default();
    s.push('\n');
    s
}

/// `GET /`: a small page of the same, reloading itself every 2 s.
pub fn dashboard(pool: &Pool, info: &Info, now: Timestamp) -> String {
    let mut rows = String::new();
    for b in pool.backends().iter().filter(|b| b.listed()) {
        let last = match &b.last_check {
            Some(c) => format!(
                "{} {} ms ago",
                match &c.result {
                    Ok(()) => "passed".to_string(),
                    Err(why) => format!("failed ({})", html(&why.to_string())),
                },
                now.saturating_duration_since(c.at).as_millis()
            ),
            None => "none yet".to_string(),
        };
        let _ = writeln!(
            rows,
            "<tr class=\"{state}\"><td>{name}</td><td>{addr}</td><td>{weight}</td><td>{state}</td>\
             <td>{active}</td><td>{total}</td><td>{failures}</td><td>{to_b}</td><td>{to_c}</td><td>{last}</td></tr>",
            name = html(&b.name),
            addr = b.addr,
            weight = b.weight,
            state = b.state().label(),
            active = b.active,
            total = b.connections_total,
            failures = b.connect_failures_total,
            to_b = b.bytes_to_backend,
            to_c = b.bytes_to_client,
        );
    }
    format!(
        r#"<!doctype html>
<html><head><meta charset="utf-8"><meta http-equiv="refresh" content="2">
<title>loadbalancer {listen}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; }}
table {{ border-collapse: collapse; }}
th, td {{ padding: .3em .8em; border-bottom: 1px solid #ddd; text-align: left; }}
tr.up td:nth-child(4) {{ color: #070; }}
tr.down td:nth-child(4) {{ color: #b00; }}
tr.draining td:nth-child(4), tr.disabled td:nth-child(4) {{ color: #a60; }}
</style></head>
<body>
<h1>loadbalancer on {listen}</h1>
<p>{algorithm} &middot; up {uptime} s &middot; {open} open connection(s) &middot; rejected: {max} max_connections, {none} no_backend, {denied} not_allowed</p>
<table>
<tr><th>backend</th><th>address</th><th>weight</th><th>state</th><th>active</th><th>connections</th><th>connect failures</th><th>bytes to backend</th><th>bytes to client</th><th>last check</th></tr>
{rows}</table>
<p>Drain, disable or enable a backend: <code>curl -X POST http://ADMIN/backends/NAME/drain</code> (or <code>disable</code>, <code>enable</code>). Also: <a href="/status">/status</a>, <a href="/metrics">/metrics</a>.</p>
</body></html>
"#,
        listen = info.listen,
        algorithm = pool.algorithm().name(),
        uptime = now.saturating_duration_since(info.started).as_secs(),
        open = pool.open_flows(),
        max = pool.rejected(RejectReason::MaxConnections),
        none = pool.rejected(RejectReason::NoBackend),
        denied = pool.rejected(RejectReason::NotAllowed),
    )
}

/// Text escaped for HTML.
fn html(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
