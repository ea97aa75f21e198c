use super::*;
use crate::config::Config;
use crate::flow::FlowPool;
use crate::ids::{BackendId, FlowId};
use crate::pool::BackendState;

fn pool() -> Pool {
    let c = Config::from_json(
        r#"{"backends":[{"name":"web\\1 <a&b>","address":"127.0.0.1:5001"},
                        {"name":"b/2","address":"127.0.0.1:5002","weight":3}],
            "health_check":{"start_up":true}}"#,
    )
    .unwrap();
    let addrs = [
        SocketAddr::from(([127, 0, 0, 1], 5001)),
        SocketAddr::from(([127, 0, 0, 1], 5002)),
    ];
    Pool::new(&c, &addrs, 1, Timestamp::ZERO)
}

fn info() -> Info {
    Info {
        listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
        started: Timestamp::ZERO,
    }
}

fn at(ms: u64) -> Timestamp {
    Timestamp::from_nanos(ms * 1_000_000)
}

fn get(pool: &mut Pool, path: &str) -> Reply {
    let req = Request {
        method: Method::Get,
        path: path.to_string(),
    };
    handle(&req, pool, &info(), at(5_000))
}

fn post(pool: &mut Pool, path: &str) -> Reply {
    let req = Request {
        method: Method::Post,
        path: path.to_string(),
    };
    handle(&req, pool, &info(), at(5_000))
}

/// One finished connection to backend 0 with these byte counts.
fn one_connection(p: &mut Pool, flow: u64, up: u64, down: u64) -> BackendId {
    let client = SocketAddr::from(([127, 0, 0, 1], 40000));
    p.open_flow(FlowId(flow), client.ip(), at(1)).unwrap();
    let (b, _) = p.select(FlowId(flow), client, &[], at(1)).unwrap();
    p.connect_succeeded(FlowId(flow), b, at(2));
    p.close_flow(FlowId(flow), up, down, at(3));
    b
}

#[test]
fn metrics_count_what_happened_with_escaped_labels() {
    let mut p = pool();
    let b = one_connection(&mut p, 1, 100, 2_000);
    assert_eq!(b, BackendId(0));
    let r = get(&mut p, "/metrics");
    assert_eq!(r.response.status, 200);
    assert!(r
        .response
        .content_type
        .starts_with("text/plain; version=0.0.4"));
    let m = r.response.body;
    for line in [
        r#"lb_backend_up{backend="web\\1 <a&b>"} 1"#,
        r#"lb_backend_up{backend="b/2"} 1"#,
        r#"lb_backend_connections_total{backend="web\\1 <a&b>"} 1"#,
        r#"lb_backend_connections_total{backend="b/2"} 0"#,
        r#"lb_backend_active_connections{backend="web\\1 <a&b>"} 0"#,
        r#"lb_backend_connect_failures_total{backend="web\\1 <a&b>"} 0"#,
        r#"lb_bytes_total{backend="web\\1 <a&b>",direction="to_backend"} 100"#,
        r#"lb_bytes_total{backend="web\\1 <a&b>",direction="to_client"} 2000"#,
        r#"lb_connections_rejected_total{reason="max_connections"} 0"#,
        r#"lb_connections_rejected_total{reason="no_backend"} 0"#,
        r#"lb_health_checks_total{backend="b/2",result="passed"} 0"#,
        "lb_connections_active 0",
        "lb_uptime_seconds 5.000",
        "# TYPE lb_bytes_total counter",
        "# TYPE lb_backend_up gauge",
    ] {
        assert!(m.lines().any(|l| l == line), "missing {line:?} in\n{m}");
    }
    // Every sample line is `name{labels} value` with a number.
    for l in m.lines().filter(|l| !l.starts_with('#')) {
        let value = l.rsplit(' ').next().unwrap();
        assert!(value.parse::<f64>().is_ok(), "{l}");
    }
}

#[test]
fn status_is_json_with_every_backend() {
    let mut p = pool();
    one_connection(&mut p, 1, 7, 9);
    let r = get(&mut p, "/status");
    assert_eq!(r.response.status, 200);
    assert_eq!(r.response.content_type, "application/json");
    let v: serde_json::Value = serde_json::from_str(&r.response.body).unwrap();
    assert_eq!(v["algorithm"], "round_robin");
    assert_eq!(v["listen"], "127.0.0.1:8080");
    assert_eq!(v["uptime_ms"], 5_000);
    let b = &v["backends"][0];
    assert_eq!(b["name"], "web\\1 <a&b>");
    assert_eq!(b["address"], "127.0.0.1:5001");
    assert_eq!(b["state"], "up");
    assert_eq!(b["connections_total"], 1);
    assert_eq!(b["bytes_to_backend"], 7);
    assert_eq!(b["bytes_to_client"], 9);
    assert_eq!(b["last_check"], serde_json::Value::Null);
    assert_eq!(v["backends"][1]["weight"], 3);
}

#[test]
fn the_last_check_shows_its_result_reason_duration_and_age() {
    let mut p = pool();
    let probe = p.poll_probe(at(1_000)).unwrap();
    p.handle_probe_result(
        probe.id,
        crate::ProbeOutcome::Failed(crate::CheckFailure::HttpStatus(503)),
        at(1_042),
    );
    let v: serde_json::Value = serde_json::from_str(&get(&mut p, "/status").response.body).unwrap();
    let checked = &v["backends"][probe.backend.index()]["last_check"];
    assert_eq!(checked["result"], "failed");
    assert_eq!(checked["reason"], "HTTP 503");
    assert_eq!(checked["duration_ms"], 42);
    assert_eq!(checked["age_ms"], 3_958);
    let page = get(&mut p, "/").response.body;
    assert!(page.contains("failed (HTTP 503)"), "{page}");
}

#[test]
fn drain_disable_and_enable_change_the_state_by_name() {
    let mut p = pool();
    let r = post(&mut p, "/backends/b\\2/drain");
    assert_eq!(r.response.status, 404, "unknown name");
    let r = post(&mut p, "/backends/b/2/drain");
    assert_eq!(r.response.status, 200, "{}", r.response.body);
    let v: serde_json::Value = serde_json::from_str(&r.response.body).unwrap();
    assert_eq!(v["state"], "draining");
    // The operator's decision and the checks' verdict are shown apart.
    assert_eq!(v["admin"], "draining");
    assert_eq!(v["health"], "up");
    assert_eq!(p.backends()[1].state(), BackendState::Draining);

    assert_eq!(post(&mut p, "/backends/b/2/disable").response.status, 200);
    assert_eq!(p.backends()[1].state(), BackendState::Disabled);
    // Nothing new goes to it: every connection lands on the other backend.
    for flow in 10..20 {
        assert_eq!(one_connection(&mut p, flow, 0, 0), BackendId(0));
    }
    assert_eq!(post(&mut p, "/backends/b/2/enable").response.status, 200);
    // Unchecked while disabled: down until its probe, due at once, passes.
    assert_eq!(p.backends()[1].state(), BackendState::Down);
    let mut probed = Vec::new();
    while let Some(probe) = p.poll_probe(at(5)) {
        probed.push(probe.backend);
        p.handle_probe_result(probe.id, crate::ProbeOutcome::Passed, at(5));
    }
    assert!(probed.contains(&BackendId(1)), "{probed:?}");
    assert_eq!(p.backends()[1].state(), BackendState::Up);
    // Enabling again is harmless.
    assert_eq!(post(&mut p, "/backends/b/2/enable").response.status, 200);
}

#[test]
fn wrong_methods_and_paths_are_refused_with_the_right_status() {
    let mut p = pool();
    let r = get(&mut p, "/backends/b/2/drain");
    assert_eq!(r.response.status, 405);
    assert_eq!(r.response.allow, Some("POST"));
    assert_eq!(
        p.backends()[1].state(),
        BackendState::Up,
        "a GET changed state"
    );
    let r = post(&mut p, "/status");
    assert_eq!(
        (r.response.status, r.response.allow),
        (405, Some("GET, HEAD"))
    );
    assert_eq!(get(&mut p, "/nope").response.status, 404);
    assert_eq!(post(&mut p, "/backends/b/2/reboot").response.status, 404);
    assert_eq!(post(&mut p, "/backends/").response.status, 404);
    let head = handle(
        &Request {
            method: Method::Head,
            path: "/status".into(),
        },
        &mut p,
        &info(),
        at(1),
    );
    assert_eq!(head.response.status, 200);
    assert!(!String::from_utf8(head.bytes())
        .unwrap()
        .contains("backends"));
}

#[test]
fn the_dashboard_lists_backends_escaped() {
    let mut p = pool();
    let r = get(&mut p, "/");
    assert_eq!(r.response.content_type, "text/html; charset=utf-8");
    let page = r.response.body;
    assert!(page.contains("<td>web\\1 &lt;a&amp;b&gt;</td>"), "{page}");
    assert!(page.contains("<td>b/2</td>"), "{page}");
    assert!(page.contains(r#"http-equiv="refresh""#), "{page}");
}
