use super::*;
use crate::config::Config;
use crate::flow::FlowPool;
use crate::ids::{BackendId, FlowId, ListenerId};
use crate::pool::{BackendState, Pool};
use std::net::SocketAddr;

/// A balancer of the flat config with two backends (one name with characters to escape).
fn balancer() -> Balancer {
    let c = Config::from_json(
        r#"{"listen":"127.0.0.1:8080","backends":[{"name":"web\\1 <a&b>","address":"127.0.0.1:5001"},
                        {"name":"b/2","address":"127.0.0.1:5002","weight":3}],
            "health_check":{"start_up":true}}"#,
    )
    .unwrap();
    let addrs = vec![
        SocketAddr::from(([127, 0, 0, 1], 5001)),
        SocketAddr::from(([127, 0, 0, 1], 5002)),
    ];
    Balancer::new(&c, &[addrs], 1, Timestamp::ZERO)
}

/// The one pool of a flat config.
fn pool0(b: &Balancer) -> &Pool {
    b.pool(PoolId(0)).unwrap()
}

fn info() -> Info {
    Info::new(Timestamp::ZERO)
}

fn at(ms: u64) -> Timestamp {
    Timestamp::from_nanos(ms * 1_000_000)
}

fn get(b: &mut Balancer, path: &str) -> Reply {
    let req = Request {
        method: Method::Get,
        path: path.to_string(),
        body: Vec::new(),
    };
    handle(&req, b, &info(), at(5_000))
}

fn post(b: &mut Balancer, path: &str) -> Reply {
    let req = Request {
        method: Method::Post,
        path: path.to_string(),
        body: Vec::new(),
    };
    handle(&req, b, &info(), at(5_000))
}

/// One finished connection through the first listener with these byte counts; the
/// backend it went to.
fn one_connection(b: &mut Balancer, flow: u64, up: u64, down: u64) -> BackendId {
    one_connection_on(b, ListenerId(0), flow, up, down)
}

/// [`one_connection`] through `listener` (one without `sni`).
fn one_connection_on(
    b: &mut Balancer,
    listener: ListenerId,
    flow: u64,
    up: u64,
    down: u64,
) -> BackendId {
    let client = SocketAddr::from(([127, 0, 0, 1], 40000));
    b.open_flow(FlowId(flow), listener, client.ip(), at(1))
        .unwrap();
    let (id, _) = b.select(FlowId(flow), client, &[], at(1)).unwrap();
    b.connect_succeeded(FlowId(flow), id, at(2));
    b.close_flow(FlowId(flow), up, down, at(3));
    id
}

#[test]
fn metrics_count_what_happened_with_escaped_labels() {
    let mut p = balancer();
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
        r#"lb_backend_up{pool="default",backend="web\\1 <a&b>"} 1"#,
        r#"lb_backend_up{pool="default",backend="b/2"} 1"#,
        r#"lb_backend_connections_total{pool="default",backend="web\\1 <a&b>"} 1"#,
        r#"lb_backend_connections_total{pool="default",backend="b/2"} 0"#,
        r#"lb_backend_active_connections{pool="default",backend="web\\1 <a&b>"} 0"#,
        r#"lb_backend_connect_failures_total{pool="default",backend="web\\1 <a&b>"} 0"#,
        r#"lb_bytes_total{pool="default",backend="web\\1 <a&b>",direction="to_backend"} 100"#,
        r#"lb_bytes_total{pool="default",backend="web\\1 <a&b>",direction="to_client"} 2000"#,
        r#"lb_connections_rejected_total{listener="default",reason="max_connections"} 0"#,
        r#"lb_connections_rejected_total{listener="default",reason="no_backend"} 0"#,
        r#"lb_health_checks_total{pool="default",backend="b/2",result="passed"} 0"#,
        r#"lb_connections_active{listener="default"} 0"#,
        r#"lb_connections_total{listener="default"} 1"#,
        r#"lb_pool_active_connections{pool="default"} 0"#,
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
    let mut p = balancer();
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
    let mut p = balancer();
    let (pool, probe) = p.poll_probe(at(1_000)).unwrap();
    p.handle_probe_result(
        pool,
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
    // The dashboard shows the reason and duration it reads there (in a browser:
    // lb-runtime/tests/dashboard.rs, with `connection refused`).
    let page = get(&mut p, "/").response.body;
    assert!(page.contains(r#"parts.push(": " + c.reason)"#), "{page}");
    assert!(page.contains("duration(c.duration_ms)"), "{page}");
}

#[test]
fn drain_disable_and_enable_change_the_state_by_name() {
    let mut p = balancer();
    let r = post(&mut p, "/backends/b\\2/drain");
    assert_eq!(r.response.status, 404, "unknown name");
    let r = post(&mut p, "/backends/b/2/drain");
    assert_eq!(r.response.status, 200, "{}", r.response.body);
    let v: serde_json::Value = serde_json::from_str(&r.response.body).unwrap();
    assert_eq!(v["state"], "draining");
    // The operator's decision and the checks' verdict are shown apart.
    assert_eq!(v["admin"], "draining");
    assert_eq!(v["health"], "up");
    assert_eq!(pool0(&p).backends()[1].state(), BackendState::Draining);

    assert_eq!(post(&mut p, "/backends/b/2/disable").response.status, 200);
    assert_eq!(pool0(&p).backends()[1].state(), BackendState::Disabled);
    // Nothing new goes to it: every connection lands on the other backend.
    for flow in 10..20 {
        assert_eq!(one_connection(&mut p, flow, 0, 0), BackendId(0));
    }
    assert_eq!(post(&mut p, "/backends/b/2/enable").response.status, 200);
    // Unchecked while disabled: down until its probe, due at once, passes.
    assert_eq!(pool0(&p).backends()[1].state(), BackendState::Down);
    let mut probed = Vec::new();
    while let Some((pool, probe)) = p.poll_probe(at(5)) {
        probed.push(probe.backend);
        p.handle_probe_result(pool, probe.id, crate::ProbeOutcome::Passed, at(5));
    }
    assert!(probed.contains(&BackendId(1)), "{probed:?}");
    assert_eq!(pool0(&p).backends()[1].state(), BackendState::Up);
    // Enabling again is harmless.
    assert_eq!(post(&mut p, "/backends/b/2/enable").response.status, 200);
}

#[test]
fn wrong_methods_and_paths_are_refused_with_the_right_status() {
    let mut p = balancer();
    let r = get(&mut p, "/backends/b/2/drain");
    assert_eq!(r.response.status, 405);
    assert_eq!(r.response.allow, Some("POST"));
    assert_eq!(
        pool0(&p).backends()[1].state(),
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
            body: Vec::new(),
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
fn the_dashboard_is_a_static_page_that_inserts_names_as_text() {
    let mut p = balancer();
    let r = get(&mut p, "/");
    assert_eq!(r.response.status, 200);
    assert_eq!(r.response.content_type, "text/html; charset=utf-8");
    let page = r.response.body;
    // The same bytes whatever the balancer holds: no name is rendered on the server, so
    // none can be injected there (the browser test, lb-runtime/tests/dashboard.rs, shows
    // a name with markup in it as text).
    assert_eq!(page, dashboard::PAGE);
    assert!(!page.contains("web\\1"), "{page}");
    assert!(!page.contains("b/2"), "{page}");
    // ...and in the browser, data goes in as text: no API that parses markup.
    for markup in [
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "eval(",
        "new Function",
    ] {
        assert!(!page.contains(markup), "the page uses {markup}");
    }
    assert!(page.contains(".textContent = "), "{page}");
    // It polls /status (relative, so it works on any admin address) and acts on
    // percent-encoded names.
    assert!(page.contains(r#"fetch("/status""#), "{page}");
    assert!(
        page.contains(r#""/pools/" + encodeURIComponent(pool) + "/backends/" + encodeURIComponent(name) + "/" + action"#),
        "{page}"
    );
    assert!(page.contains(r#"method: "POST""#), "{page}");
    // The real admin URL in the examples, not a placeholder; no self-reload.
    assert!(page.contains("location.origin"), "{page}");
    assert!(!page.contains("http://ADMIN"), "{page}");
    assert!(!page.contains(r#"http-equiv="refresh""#), "{page}");
    // Without JavaScript it points to the machine-readable pages.
    let noscript = &page[page.find("<noscript>").unwrap()..page.find("</noscript>").unwrap()];
    assert!(noscript.contains(r#"href="/status""#), "{noscript}");
    assert!(noscript.contains(r#"href="/metrics""#), "{noscript}");
    // Nothing from elsewhere (no CDN): every src/href is relative, and the policy says so.
    for attr in ["src=\"", "href=\""] {
        for (i, _) in page.match_indices(attr) {
            let url = &page[i + attr.len()..];
            assert!(
                url.starts_with('/'),
                "external resource at {:?}",
                &url[..40.min(url.len())]
            );
        }
    }
    assert!(page.contains("default-src 'none'"), "{page}");
    assert!(page.contains("connect-src 'self'"), "{page}");
}

// ---- several listeners and pools ------------------------------------------------------

/// Two listeners; pools `web` and `api` both have a backend named `shared`, each has one of
/// its own too.
fn two_pools() -> Balancer {
    let c = Config::from_json(
        r#"{
          "listeners": [
            { "name": "tls", "listen": "127.0.0.1:8443", "pool": "web",
              "sni": { "api.example.com": "api", "*.example.com": "web" } },
            { "name": "plain", "listen": "127.0.0.1:8080", "pool": "web", "max_connections": 7 }
          ],
          "pools": {
            "web": { "algorithm": "least_connections", "health_check": { "start_up": true },
                     "backends": [ { "name": "shared", "address": "127.0.0.1:6000" },
                                   { "name": "w1", "address": "127.0.0.1:6001" } ] },
            "api": { "algorithm": "hash", "health_check": { "start_up": true },
                     "backends": [ { "name": "a0", "address": "127.0.0.1:7000" },
                                   { "name": "shared", "address": "127.0.0.1:7001", "weight": 2 } ] }
          }
        }"#,
    )
    .unwrap();
    let addrs: Vec<Vec<SocketAddr>> = c
        .pools
        .iter()
        .map(|p| {
            p.backends
                .iter()
                .map(|b| b.address.to_string().parse().unwrap())
                .collect()
        })
        .collect();
    Balancer::new(&c, &addrs, 1, Timestamp::ZERO)
}

const WEB: PoolId = PoolId(0);
const API: PoolId = PoolId(1);

fn state(b: &Balancer, pool: PoolId, backend: &str) -> BackendState {
    let p = b.pool(pool).unwrap();
    p.backend(p.backend_by_name(backend).unwrap())
        .unwrap()
        .state()
}

fn json(r: &Reply) -> serde_json::Value {
    serde_json::from_str(&r.response.body).unwrap()
}

#[test]
fn actions_name_the_pool_and_change_only_its_backend() {
    let mut b = two_pools();
    let r = post(&mut b, "/pools/api/backends/shared/drain");
    assert_eq!(r.response.status, 200, "{}", r.response.body);
    let v = json(&r);
    assert_eq!(
        (v["pool"].as_str(), v["name"].as_str()),
        (Some("api"), Some("shared"))
    );
    assert_eq!(
        (v["state"].as_str(), v["weight"].as_u64()),
        (Some("draining"), Some(2))
    );
    assert_eq!(state(&b, API, "shared"), BackendState::Draining);
    assert_eq!(
        state(&b, WEB, "shared"),
        BackendState::Up,
        "web's shared untouched"
    );
    let r = post(&mut b, "/pools/web/backends/shared/disable");
    assert_eq!(r.response.status, 200);
    assert_eq!(json(&r)["pool"], "web");
    assert_eq!(state(&b, WEB, "shared"), BackendState::Disabled);
    assert_eq!(state(&b, API, "shared"), BackendState::Draining);
    let r = post(&mut b, "/pools/api/backends/shared/enable");
    assert_eq!(r.response.status, 200);
    assert_eq!(state(&b, API, "shared"), BackendState::Up);
    assert_eq!(state(&b, WEB, "shared"), BackendState::Disabled);
    // A name in one pool only, by its pool.
    let r = post(&mut b, "/pools/web/backends/w1/drain");
    assert_eq!(r.response.status, 200);
    assert_eq!(state(&b, WEB, "w1"), BackendState::Draining);
    // Unknown pool, unknown backend in a known pool, a backend of another pool.
    for (path, says) in [
        (
            "/pools/nope/backends/shared/drain",
            "no pool named \\\"nope\\\"",
        ),
        (
            "/pools/web/backends/nope/drain",
            "no backend named \\\"nope\\\" in pool \\\"web\\\"",
        ),
        (
            "/pools/web/backends/a0/drain",
            "no backend named \\\"a0\\\" in pool \\\"web\\\"",
        ),
        ("/pools/web/drain", "expected /pools/POOL/backends/NAME"),
        ("/pools/web/backends/shared/reboot", "unknown action"),
    ] {
        let r = post(&mut b, path);
        assert_eq!(r.response.status, 404, "{path}");
        assert!(
            r.response.body.contains(says),
            "{path}: {}",
            r.response.body
        );
    }
    assert_eq!(state(&b, API, "a0"), BackendState::Up);
    let r = get(&mut b, "/pools/api/backends/a0/drain");
    assert_eq!((r.response.status, r.response.allow), (405, Some("POST")));
    assert_eq!(
        state(&b, API, "a0"),
        BackendState::Up,
        "a GET changed state"
    );
}

#[test]
fn the_short_form_works_only_for_a_name_in_one_pool() {
    let mut b = two_pools();
    // In one pool only: that one.
    let r = post(&mut b, "/backends/a0/drain");
    assert_eq!(r.response.status, 200, "{}", r.response.body);
    assert_eq!(json(&r)["pool"], "api");
    assert_eq!(state(&b, API, "a0"), BackendState::Draining);
    let r = post(&mut b, "/backends/w1/disable");
    assert_eq!(r.response.status, 200);
    assert_eq!(json(&r)["pool"], "web");
    assert_eq!(state(&b, WEB, "w1"), BackendState::Disabled);
    // In two: a conflict naming both, and nothing changes.
    let r = post(&mut b, "/backends/shared/drain");
    assert_eq!(r.response.status, 409, "{}", r.response.body);
    let message = json(&r)["error"].as_str().unwrap().to_string();
    assert!(
        message.contains("web") && message.contains("api"),
        "{message}"
    );
    assert!(
        message.contains("/pools/POOL/backends/shared/drain"),
        "{message}"
    );
    assert_eq!(state(&b, WEB, "shared"), BackendState::Up);
    assert_eq!(state(&b, API, "shared"), BackendState::Up);
    // In none.
    let r = post(&mut b, "/backends/nope/drain");
    assert_eq!(r.response.status, 404);
    // Once only one live pool has the name, the short form finds it.
    let c = Config::from_json(
        r#"{
          "listeners": [ { "name": "tls", "listen": "127.0.0.1:8443", "pool": "web" } ],
          "pools": {
            "web": { "health_check": { "start_up": true },
                     "backends": [ { "name": "shared", "address": "127.0.0.1:6000" } ] }
          }
        }"#,
    )
    .unwrap();
    b.reconfigure(&c, &[vec!["127.0.0.1:6000".parse().unwrap()]], at(1));
    let r = post(&mut b, "/backends/shared/drain");
    assert_eq!(r.response.status, 200, "{}", r.response.body);
    assert_eq!(json(&r)["pool"], "web");
    assert_eq!(state(&b, WEB, "shared"), BackendState::Draining);
    let r = post(&mut b, "/pools/api/backends/a0/enable");
    assert_eq!(r.response.status, 404, "a removed pool takes no action");
}

#[test]
fn status_lists_listeners_pools_and_every_backend_with_its_pool() {
    let mut b = two_pools();
    b.set_bound(ListenerId(1), "127.0.0.1:18080".parse().unwrap());
    // One connection open through `tls` to `api`; one finished through `plain` to `web`.
    let client = SocketAddr::from(([10, 0, 0, 1], 40000));
    b.open_flow(FlowId(1), ListenerId(0), client.ip(), at(1))
        .unwrap();
    b.route(FlowId(1), Some("api.example.com"), at(1)).unwrap();
    let (id, _) = b.select(FlowId(1), client, &[], at(1)).unwrap();
    b.connect_succeeded(FlowId(1), id, at(1));
    assert_eq!(
        one_connection_on(&mut b, ListenerId(1), 2, 3, 4),
        BackendId(0)
    );
    let v = json(&get(&mut b, "/status"));
    let listeners = v["listeners"].as_array().unwrap();
    assert_eq!(listeners.len(), 2);
    let tls = &listeners[0];
    assert_eq!(tls["name"], "tls");
    assert_eq!(tls["listen"], "127.0.0.1:8443");
    assert_eq!(tls["pool"], "web");
    assert_eq!(tls["sni"]["api.example.com"], "api");
    assert_eq!(tls["sni"]["*.example.com"], "web");
    assert_eq!(
        (
            tls["active_connections"].as_u64(),
            tls["connections_total"].as_u64()
        ),
        (Some(1), Some(1))
    );
    let plain = &listeners[1];
    assert_eq!(plain["name"], "plain");
    assert_eq!(
        plain["listen"], "127.0.0.1:18080",
        "the address it is bound to"
    );
    assert_eq!(plain["max_connections"], 7);
    assert_eq!(plain["connections_total"], 1);
    assert_eq!(plain["rejected"]["no_route"], 0);
    let pools = v["pools"].as_array().unwrap();
    let names: Vec<&str> = pools.iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["web", "api"]);
    assert_eq!(pools[0]["algorithm"], "least_connections");
    assert_eq!(pools[1]["algorithm"], "hash");
    assert_eq!(pools[1]["active_connections"], 1);
    assert_eq!(pools[1]["backends"].as_array().unwrap().len(), 2);
    // Every backend once, naming its pool.
    let backends: Vec<(String, String)> = v["backends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (
                x["pool"].as_str().unwrap().to_string(),
                x["name"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let pairs: Vec<(&str, &str)> = backends
        .iter()
        .map(|(p, n)| (p.as_str(), n.as_str()))
        .collect();
    assert_eq!(
        pairs,
        [
            ("web", "shared"),
            ("web", "w1"),
            ("api", "a0"),
            ("api", "shared")
        ]
    );
    assert_eq!(v["active_connections"], 1);
    // The one-service fields describe the first listener and pool.
    assert_eq!(v["listen"], "127.0.0.1:8443");
    assert_eq!(v["algorithm"], "least_connections");
    // Metrics carry the same labels.
    let m = get(&mut b, "/metrics").response.body;
    for line in [
        r#"lb_backend_up{pool="web",backend="shared"} 1"#,
        r#"lb_backend_up{pool="api",backend="shared"} 1"#,
        r#"lb_backend_connections_total{pool="web",backend="shared"} 1"#,
        r#"lb_bytes_total{pool="web",backend="shared",direction="to_client"} 4"#,
        r#"lb_connections_active{listener="tls"} 1"#,
        r#"lb_connections_active{listener="plain"} 0"#,
        r#"lb_connections_total{listener="plain"} 1"#,
        r#"lb_connections_rejected_total{listener="tls",reason="no_route"} 0"#,
        r#"lb_pool_active_connections{pool="api"} 1"#,
    ] {
        assert!(m.lines().any(|l| l == line), "missing {line:?} in\n{m}");
    }
    // The dashboard draws the listeners (with their SNI routes) and pools from these
    // fields; lb-runtime/tests/dashboard.rs shows them in a browser.
    let page = get(&mut b, "/").response.body;
    for field in ["s.listeners", "l.sni", "s.pools", "b.pool === pool.name"] {
        assert!(page.contains(field), "missing {field:?} in\n{page}");
    }
}

#[test]
fn a_removed_pool_and_listener_stay_listed_while_their_connections_drain() {
    let mut b = two_pools();
    let client = SocketAddr::from(([10, 0, 0, 1], 40000));
    b.open_flow(FlowId(1), ListenerId(1), client.ip(), at(1))
        .unwrap();
    b.open_flow(FlowId(2), ListenerId(0), client.ip(), at(1))
        .unwrap();
    b.route(FlowId(2), Some("api.example.com"), at(1)).unwrap();
    let (id, _) = b.select(FlowId(2), client, &[], at(1)).unwrap();
    b.connect_succeeded(FlowId(2), id, at(1));
    let c = Config::from_json(
        r#"{
          "listeners": [ { "name": "tls", "listen": "127.0.0.1:8443", "pool": "web" } ],
          "pools": {
            "web": { "health_check": { "start_up": true },
                     "backends": [ { "name": "shared", "address": "127.0.0.1:6000" } ] }
          }
        }"#,
    )
    .unwrap();
    b.reconfigure(&c, &[vec!["127.0.0.1:6000".parse().unwrap()]], at(2));
    let v = json(&get(&mut b, "/status"));
    let listeners: Vec<(&str, bool)> = v["listeners"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| (l["name"].as_str().unwrap(), l["removed"].as_bool().unwrap()))
        .collect();
    assert_eq!(listeners, [("tls", false), ("plain", true)]);
    let pools: Vec<(&str, bool)> = v["pools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["name"].as_str().unwrap(), p["removed"].as_bool().unwrap()))
        .collect();
    assert_eq!(pools, [("web", false), ("api", true)]);
    let api = &v["pools"][1]["backends"];
    assert_eq!(
        api.as_array().unwrap().len(),
        1,
        "only the backend still in use"
    );
    assert_eq!(api[0]["state"], "draining");
    // Once their connections end, they are gone.
    b.close_flow(FlowId(1), 0, 0, at(3));
    b.close_flow(FlowId(2), 0, 0, at(3));
    let v = json(&get(&mut b, "/status"));
    assert_eq!(v["listeners"].as_array().unwrap().len(), 1);
    assert_eq!(v["pools"].as_array().unwrap().len(), 1);
    assert_eq!(v["backends"].as_array().unwrap().len(), 1);
    let m = get(&mut b, "/metrics").response.body;
    assert!(!m.contains(r#"pool="api""#), "{m}");
    assert!(!m.contains(r#"listener="plain""#), "{m}");
}

fn post_body(b: &mut Balancer, path: &str, body: &str, now: Timestamp) -> Reply {
    let req = Request {
        method: Method::Post,
        path: path.to_string(),
        body: body.as_bytes().to_vec(),
    };
    handle(&req, b, &info(), now)
}

/// Fails every probe of backend `i` due by `now` with `why`; the probes answered.
fn fail_probes(b: &mut Balancer, i: usize, now: Timestamp) -> usize {
    let mut n = 0;
    while let Some((pool, probe)) = b.poll_probe(now) {
        let outcome = if probe.backend.index() == i {
            crate::ProbeOutcome::Failed(crate::CheckFailure::Refused)
        } else {
            crate::ProbeOutcome::Passed
        };
        b.handle_probe_result(pool, probe.id, outcome, now);
        n += 1;
    }
    n
}

#[test]
fn a_down_backend_shows_why_since_when_and_for_how_long() {
    let mut p = balancer();
    // Two failed checks (fall 2) take backend 0 down at the second one.
    let mut downed_at = None;
    for k in 1..=4u64 {
        let now = at(k * 1_000);
        assert!(fail_probes(&mut p, 0, now) > 0, "probes due at {now:?}");
        if downed_at.is_none() && pool0(&p).backends()[0].state() == BackendState::Down {
            downed_at = Some(k * 1_000);
        }
    }
    let downed_at = downed_at.expect("backend 0 went down");
    let v: serde_json::Value = serde_json::from_str(&get(&mut p, "/status").response.body).unwrap();
    let b = &v["backends"][0];
    assert_eq!(b["state"], "down");
    assert_eq!(b["last_check"]["reason"], "connection refused");
    assert_eq!(b["last_change"]["from"], "up");
    assert_eq!(b["last_change"]["to"], "down");
    // `get` asks at 5 s.
    assert_eq!(b["last_change"]["ms_ago"], 5_000 - downed_at);
    assert_eq!(b["downtime_ms"], 5_000 - downed_at);
    assert_eq!(b["state_changes"], 1);
    // The other one never changed and was never down.
    assert_eq!(v["backends"][1]["last_change"], serde_json::Value::Null);
    assert_eq!(v["backends"][1]["downtime_ms"], 0);
    let m = get(&mut p, "/metrics").response.body;
    let downtime = format!(
        r#"lb_backend_downtime_seconds_total{{pool="default",backend="web\\1 <a&b>"}} {:.3}"#,
        (5_000 - downed_at) as f64 / 1e3
    );
    assert!(
        m.lines().any(|l| l == downtime),
        "missing {downtime} in\n{m}"
    );
    assert!(
        m.lines()
            .any(|l| l
                == r#"lb_backend_state_changes_total{pool="default",backend="web\\1 <a&b>"} 1"#)
    );
}

#[test]
fn histograms_count_connect_times_and_connection_lives() {
    let mut p = balancer();
    // Selected at 1 ms, connected at 2 ms, closed at 3 ms (see `one_connection`).
    one_connection(&mut p, 1, 0, 0);
    one_connection(&mut p, 2, 0, 0);
    let m = get(&mut p, "/metrics").response.body;
    for line in [
        "# TYPE lb_backend_connect_seconds histogram",
        r#"lb_backend_connect_seconds_bucket{pool="default",backend="web\\1 <a&b>",le="0.0005"} 0"#,
        r#"lb_backend_connect_seconds_bucket{pool="default",backend="web\\1 <a&b>",le="0.001"} 1"#,
        r#"lb_backend_connect_seconds_bucket{pool="default",backend="web\\1 <a&b>",le="+Inf"} 1"#,
        r#"lb_backend_connect_seconds_count{pool="default",backend="web\\1 <a&b>"} 1"#,
        r#"lb_backend_connect_seconds_sum{pool="default",backend="web\\1 <a&b>"} 0.001"#,
        r#"lb_backend_connect_seconds_count{pool="default",backend="b/2"} 1"#,
        "# TYPE lb_connection_duration_seconds histogram",
        r#"lb_connection_duration_seconds_bucket{listener="default",le="0.001"} 0"#,
        r#"lb_connection_duration_seconds_bucket{listener="default",le="0.005"} 2"#,
        r#"lb_connection_duration_seconds_count{listener="default"} 2"#,
        r#"lb_connection_duration_seconds_sum{listener="default"} 0.004"#,
        r#"lb_build_info{version="unknown",commit="unknown"} 1"#,
        r#"lb_backend_peak_connections{pool="default",backend="b/2"} 1"#,
        r#"lb_pool_retries_total{pool="default"} 0"#,
    ] {
        assert!(m.lines().any(|l| l == line), "missing {line:?} in\n{m}");
    }
    // No process figures unless the driver gives them.
    assert!(!m.contains("process_"), "{m}");
    let with_process = Info {
        process: Some(ProcessStats {
            start_time_seconds: 1_700_000_000.0,
            cpu_seconds: 1.5,
            open_fds: 12,
            max_fds: 1024,
            resident_memory_bytes: 4096,
        }),
        build: BuildInfo {
            version: "1.2.3",
            commit: "abc",
        },
        ..info()
    };
    let req = Request {
        method: Method::Get,
        path: "/metrics".into(),
        body: Vec::new(),
    };
    let m = handle(&req, &mut p, &with_process, at(5_000)).response.body;
    for line in [
        "process_start_time_seconds 1700000000.00",
        "process_cpu_seconds_total 1.50",
        "process_open_fds 12",
        "process_max_fds 1024",
        "process_resident_memory_bytes 4096",
        r#"lb_build_info{version="1.2.3",commit="abc"} 1"#,
    ] {
        assert!(m.lines().any(|l| l == line), "missing {line:?} in\n{m}");
    }
}

#[test]
fn the_response_time_average_is_shown_once_measured() {
    let mut p = balancer();
    let client = SocketAddr::from(([127, 0, 0, 1], 40000));
    p.open_flow(FlowId(1), ListenerId(0), client.ip(), at(1))
        .unwrap();
    let (id, _) = p.select(FlowId(1), client, &[], at(1)).unwrap();
    p.connect_succeeded(FlowId(1), id, at(2));
    let v: serde_json::Value = serde_json::from_str(&get(&mut p, "/status").response.body).unwrap();
    assert_eq!(
        v["backends"][id.index()]["response_time_ms"],
        serde_json::Value::Null
    );
    p.record_latency(
        FlowId(1),
        id,
        std::time::Duration::from_millis(40),
        at(5_000),
    );
    let v: serde_json::Value = serde_json::from_str(&get(&mut p, "/status").response.body).unwrap();
    assert_eq!(v["backends"][id.index()]["response_time_ms"], 40.0);
    assert_eq!(v["backends"][id.index()]["peak_connections"], 1);
    let m = get(&mut p, "/metrics").response.body;
    assert!(
        m.contains(
            r#"lb_backend_response_time_seconds{pool="default",backend="web\\1 <a&b>"} 0.04"#
        ),
        "{m}"
    );
}

#[test]
fn a_weight_changes_at_run_time_until_the_next_reload() {
    let mut p = balancer();
    let r = post_body(&mut p, "/backends/b/2/weight", r#"{"weight": 7}"#, at(10));
    assert_eq!(r.response.status, 200, "{}", r.response.body);
    assert_eq!(json(&r)["weight"], 7);
    assert_eq!(pool0(&p).backends()[1].weight, 7);
    // The long form too.
    let r = post_body(
        &mut p,
        "/pools/default/backends/b/2/weight",
        r#"{"weight":1000}"#,
        at(10),
    );
    assert_eq!(r.response.status, 200, "{}", r.response.body);
    assert_eq!(pool0(&p).backends()[1].weight, 1000);
    // Refused, changing nothing: out of range, not a number, not the expected shape, GET.
    for (body, why) in [
        (r#"{"weight": 0}"#, "out of range"),
        (r#"{"weight": 1001}"#, "out of range"),
        (r#"{"weight": "5"}"#, "with N from 1 to 1000"),
        (r#"{"weight": 5, "x": 1}"#, "with N from 1 to 1000"),
        ("", "with N from 1 to 1000"),
    ] {
        let r = post_body(&mut p, "/backends/b/2/weight", body, at(10));
        assert_eq!(r.response.status, 400, "{body}");
        assert!(r.response.body.contains(why), "{body}: {}", r.response.body);
    }
    assert_eq!(pool0(&p).backends()[1].weight, 1000);
    assert_eq!(get(&mut p, "/backends/b/2/weight").response.status, 405);
    // Weighted selection follows it: with 1 and 1000, nearly everything goes to b/2.
    let c = Config::from_json(
        r#"{"algorithm":"weighted_round_robin","backends":[{"name":"a","address":"127.0.0.1:5001"},
            {"name":"b","address":"127.0.0.1:5002"}],"health_check":{"start_up":true}}"#,
    )
    .unwrap();
    let addrs = vec![
        SocketAddr::from(([127, 0, 0, 1], 5001)),
        SocketAddr::from(([127, 0, 0, 1], 5002)),
    ];
    let mut w = Balancer::new(&c, std::slice::from_ref(&addrs), 1, Timestamp::ZERO);
    assert_eq!(
        post_body(&mut w, "/backends/b/weight", r#"{"weight":9}"#, at(1))
            .response
            .status,
        200
    );
    let to_b = (0..100)
        .filter(|f| one_connection(&mut w, *f, 0, 0) == BackendId(1))
        .count();
    assert_eq!(to_b, 90, "9 of every 10 to b");
    // A reload sets the configured weight again.
    w.reconfigure(&c, &[addrs], at(2));
    assert_eq!(w.pool(PoolId(0)).unwrap().backends()[1].weight, 1);
}
