//! What the admin endpoint shows: the balancer's state (listeners, pools and their
//! backends) as Prometheus metrics, as JSON and as an HTML page. Read-only views of
//! [`Balancer`].

use super::Info;
use crate::balancer::Balancer;
use crate::histogram::Histogram;
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
        "Bytes forwarded, client to backend (to_backend) and back (to_client), counted as they flow (at least every 256 KiB or 1 s of each connection).",
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
    family(
        "lb_pool_retries_total",
        "counter",
        "Connects tried on another backend of the pool after one failed.",
        listed_pools(balancer)
            .map(|(_, name, p)| (format!("{{pool=\"{}\"}}", label(name)), p.retries()))
            .collect(),
    );
    family(
        "lb_discovery_errors_total",
        "counter",
        "DNS discovery failures and empty answers of the pool (the last known backends are kept).",
        listed_pools(balancer)
            .filter_map(|(_, name, p)| {
                let d = p.discovery()?;
                Some((format!("{{pool=\"{}\"}}", label(name)), d.errors_total))
            })
            .collect(),
    );
    family(
        "lb_discovered_backends",
        "gauge",
        "Backends the pool's last successful DNS answer named.",
        listed_pools(balancer)
            .filter_map(|(_, name, p)| {
                let d = p.discovery()?;
                Some((
                    format!("{{pool=\"{}\"}}", label(name)),
                    d.current.len() as u64,
                ))
            })
            .collect(),
    );
    family(
        "lb_backend_peak_connections",
        "gauge",
        "The most connections the backend held at once since start.",
        per_backend(&|b| u64::from(b.peak_active)),
    );
    family(
        "lb_backend_state_changes_total",
        "counter",
        "Changes of the backend's state (up, down, draining, disabled).",
        per_backend(&|b| b.state_changes),
    );
    let _ = writeln!(
        out,
        "# HELP lb_backend_downtime_seconds_total Time the backend spent down (enabled and failing its checks).\n# TYPE lb_backend_downtime_seconds_total counter"
    );
    for (pool, b) in &backends {
        let _ = writeln!(
            out,
            "lb_backend_downtime_seconds_total{{pool=\"{}\",backend=\"{}\"}} {:.3}",
            label(pool),
            label(&b.name),
            b.downtime(now).as_secs_f64()
        );
    }
    let _ = writeln!(
        out,
        "# HELP lb_backend_response_time_seconds The backend's response time: peak-EWMA of connect times and times to first byte (what least_response_time compares), once measured.\n# TYPE lb_backend_response_time_seconds gauge"
    );
    for (pool, b) in &backends {
        if let Some(rt) = b.response_time(now) {
            let _ = writeln!(
                out,
                "lb_backend_response_time_seconds{{pool=\"{}\",backend=\"{}\"}} {}",
                label(pool),
                label(&b.name),
                rt.as_secs_f64()
            );
        }
    }
    histogram_family(
        &mut out,
        "lb_backend_connect_seconds",
        "Time to connect to the backend, for connects that succeeded.",
        backends.iter().map(|(pool, b)| {
            (
                format!("pool=\"{}\",backend=\"{}\"", label(pool), label(&b.name)),
                &b.connect_times,
            )
        }),
    );
    histogram_family(
        &mut out,
        "lb_connection_duration_seconds",
        "Life of a client connection, from accept to close, by listener.",
        listeners
            .iter()
            .map(|l| (format!("listener=\"{}\"", label(&l.name)), &l.durations)),
    );
    let _ = writeln!(
        out,
        "# HELP lb_build_info The version and commit of this build.\n# TYPE lb_build_info gauge\nlb_build_info{{version=\"{}\",commit=\"{}\"}} 1",
        label(info.build.version),
        label(info.build.commit)
    );
    if let Some(p) = info.process {
        let _ = writeln!(
            out,
            "# HELP process_start_time_seconds Start time of the process since unix epoch in seconds.\n# TYPE process_start_time_seconds gauge\nprocess_start_time_seconds {:.2}",
            p.start_time_seconds
        );
        let _ = writeln!(
            out,
            "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.\n# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total {:.2}",
            p.cpu_seconds
        );
        let _ = writeln!(
            out,
            "# HELP process_open_fds Number of open file descriptors.\n# TYPE process_open_fds gauge\nprocess_open_fds {}",
            p.open_fds
        );
        let _ = writeln!(
            out,
            "# HELP process_max_fds Maximum number of open file descriptors.\n# TYPE process_max_fds gauge\nprocess_max_fds {}",
            p.max_fds
        );
        let _ = writeln!(
            out,
            "# HELP process_resident_memory_bytes Resident memory size in bytes.\n# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes {}",
            p.resident_memory_bytes
        );
    }
    let _ = writeln!(
        out,
        "# HELP lb_uptime_seconds Seconds since the load balancer started.\n# TYPE lb_uptime_seconds gauge\nlb_uptime_seconds {:.3}",
        now.saturating_duration_since(info.started).as_secs_f64()
    );
    out
}

/// One histogram family: `_bucket{le=...}` (cumulative, ending with `+Inf`), `_sum` and
/// `_count` per labelled histogram.
fn histogram_family<'a>(
    out: &mut String,
    name: &str,
    help: &str,
    series: impl Iterator<Item = (String, &'a Histogram)>,
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
    for (labels, h) in series {
        for (le, n) in h.cumulative() {
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels},le=\"+Inf\"}} {count}\n{name}_sum{{{labels}}} {sum}\n{name}_count{{{labels}}} {count}",
            count = h.count(),
            sum = h.sum().as_secs_f64()
        );
    }
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
        "peak_connections": b.peak_active,
        "response_time_ms": b.response_time(now).map(|d| d.as_secs_f64() * 1e3),
        "state_changes": b.state_changes,
        "last_change": b.last_change.map(|c| json!({
            "from": c.from.label(),
            "to": c.to.label(),
            "ms_ago": now.saturating_duration_since(c.at).as_millis() as u64,
        })),
        "downtime_ms": b.downtime(now).as_millis() as u64,
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
                "retries_total": p.retries(),
                "discovery": p.discovery().map(|d| json!({
                    "query": d.target().to_string(),
                    "resolver": d.config().resolver.map(|r| r.to_string()),
                    "interval_ms": d.interval().as_millis() as u64,
                    "backends": d.current.len(),
                    "last_success_ms_ago": d.last_success
                        .map(|t| now.saturating_duration_since(t).as_millis() as u64),
                    "last_error": d.last_error.as_ref().map(|(t, why)| json!({
                        "reason": why,
                        "ms_ago": now.saturating_duration_since(*t).as_millis() as u64,
                    })),
                    "errors_total": d.errors_total,
                })),
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
