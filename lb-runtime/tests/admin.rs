//! The admin endpoint through the real binary: `/status`, `/metrics` and the dashboard
//! report what happened; drain, disable and enable take effect by name; bad requests and
//! idle clients get answers without holding anyone up; the endpoint and the demo `server`
//! judge the same request bytes alike.
// These tests drive real processes on the real clock: the driver's determinism lint
// (lb-runtime/clippy.toml) is for the driver, not for them.
#![allow(clippy::disallowed_methods)]

mod common;
use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const CHECKS: &str =
    r#","health_check":{"interval":"100ms","timeout":"100ms"},"admin":"127.0.0.1:0""#;

#[test]
fn status_and_metrics_report_traffic_per_backend() {
    let dir = TempDir::new("admin-status");
    let (_servers, ports) = servers(&dir, 2);
    let (lb, port) = start_lb(&dir.0, &config(&ports, CHECKS));
    let admin = admin_port(&lb);
    lb.wait_up(2);
    for _ in 0..6 {
        http_get(port).unwrap();
    }
    // Byte counts are added when a connection closes; the closes are logged.
    assert!(lb.wait_log("connection closed", 6, Duration::from_secs(5)));
    let v = status(admin);
    assert_eq!(v["algorithm"], "round_robin");
    assert_eq!(v["listen"], format!("127.0.0.1:{port}"));
    assert_eq!(v["active_connections"], 0);
    let listed = v["backends"].as_array().unwrap();
    assert_eq!(listed.len(), ports.len(), "{v}");
    for (b, p) in listed.iter().zip(&ports) {
        assert_eq!(b["name"], format!("s{p}"));
        assert_eq!(b["address"], format!("127.0.0.1:{p}"));
        assert_eq!(b["state"], "up");
        assert_eq!(b["connections_total"], 3, "{b}");
        assert!(b["bytes_to_client"].as_u64().unwrap() > 3 * 20, "{b}");
        assert_eq!(b["last_check"]["result"], "passed", "{b}");
    }

    let (code, metrics) = request(admin, "GET", "/metrics");
    assert_eq!(code, 200);
    let sample = |line: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(line)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {line} in {metrics}"))
    };
    for p in &ports {
        assert_eq!(
            sample(&format!(
                "lb_backend_up{{pool=\"default\",backend=\"s{p}\"}}"
            )),
            1
        );
        assert_eq!(
            sample(&format!(
                "lb_backend_connections_total{{pool=\"default\",backend=\"s{p}\"}}"
            )),
            3
        );
        assert!(
            sample(&format!(
                "lb_health_checks_total{{pool=\"default\",backend=\"s{p}\",result=\"passed\"}}"
            )) >= 1
        );
    }
    assert_eq!(
        sample("lb_connections_rejected_total{listener=\"default\",reason=\"no_backend\"}"),
        0
    );

    let (code, page) = request(admin, "GET", "/");
    assert_eq!(code, 200);
    // The dashboard is a static page that reads /status in the browser (what it shows
    // there: tests/dashboard.rs).
    assert!(page.contains(r#"fetch("/status""#), "{page}");
}

#[test]
fn a_drained_backend_keeps_its_connections_and_gets_no_new_ones_until_enabled() {
    let dir = TempDir::new("admin-drain");
    let (_servers, ports) = servers(&dir, 2);
    let (lb, port) = start_lb(&dir.0, &config(&ports, CHECKS));
    let admin = admin_port(&lb);
    lb.wait_up(2);
    let mut held = TcpStream::connect(addr(port)).unwrap();
    held.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let victim = ask(&mut held);
    let other = format!(
        "s{}",
        ports.iter().find(|p| format!("s{p}") != victim).unwrap()
    );

    let (code, body) = request(admin, "POST", &format!("/backends/{victim}/drain"));
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["state"], "draining");
    assert_eq!(v["active_connections"], 1);
    for _ in 0..6 {
        assert_eq!(who(&http_get(port).unwrap()), other);
    }
    // The open connection goes on with the drained backend.
    assert_eq!(ask(&mut held), victim);
    assert_eq!(backend(admin, &victim)["active_connections"], 1);
    drop(held);

    let (code, _) = request(admin, "POST", &format!("/backends/{victim}/disable"));
    assert_eq!(code, 200);
    assert_eq!(backend(admin, &victim)["state"], "disabled");
    assert_eq!(who(&http_get(port).unwrap()), other);

    let (code, _) = request(admin, "POST", &format!("/backends/{victim}/enable"));
    assert_eq!(code, 200);
    // Unchecked while disabled, it is probed at once and takes clients when that passes.
    let end = Instant::now() + Duration::from_secs(2);
    while backend(admin, &victim)["state"] != "up" {
        assert!(
            Instant::now() < end,
            "not up after enable: {}",
            lb.log_text()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let names: Vec<String> = (0..4).map(|_| who(&http_get(port).unwrap())).collect();
    assert_eq!(
        names.iter().filter(|n| **n == victim).count(),
        2,
        "{names:?}"
    );
    for state in ["draining", "disabled", "up"] {
        assert!(
            lb.wait_log(
                &format!("backend {victim} is {state}"),
                1,
                Duration::from_secs(2)
            ),
            "{}",
            lb.log_text()
        );
    }
}

#[test]
fn enabling_a_disabled_backend_probes_it_at_once() {
    let dir = TempDir::new("admin-probe");
    let (_servers, ports) = servers(&dir, 1);
    // Probes every 5 s: the first within 0.5 s, the next not for seconds.
    let cfg = config(
        &ports,
        r#","health_check":{"interval":"5s","timeout":"1s"},"admin":"127.0.0.1:0""#,
    );
    let (lb, _port) = start_lb(&dir.0, &cfg);
    let admin = admin_port(&lb);
    let name = format!("s{}", ports[0]);
    lb.wait_up(1);
    let passed = backend(admin, &name)["checks_passed"].as_u64().unwrap();
    assert_eq!(
        request(admin, "POST", &format!("/backends/{name}/disable")).0,
        200
    );
    assert_eq!(
        request(admin, "POST", &format!("/backends/{name}/enable")).0,
        200
    );
    let end = Instant::now() + Duration::from_secs(2);
    loop {
        let now_passed = backend(admin, &name)["checks_passed"].as_u64().unwrap();
        if now_passed > passed {
            break;
        }
        assert!(
            Instant::now() < end,
            "no probe after enable: {}",
            lb.log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn bad_requests_get_errors_and_an_idle_client_holds_nobody_up() {
    let dir = TempDir::new("admin-bad");
    let (_servers, ports) = servers(&dir, 1);
    let (lb, _port) = start_lb(&dir.0, &config(&ports, CHECKS));
    let admin = admin_port(&lb);
    // Connected, sends nothing: it may keep its connection for up to 5 s, but nobody
    // waits for it. Once the endpoint has surely accepted it (200 ms), the next request is
    // answered at once (within 1 s, slack for a loaded machine; an answer takes
    // milliseconds), not after it.
    let _idle = TcpStream::connect(addr(admin)).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let start = Instant::now();
    assert_eq!(request(admin, "GET", "/status").0, 200);
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "held up by an idle client: {:?}",
        start.elapsed()
    );
    assert_eq!(request(admin, "GET", "/nope").0, 404);
    assert_eq!(request(admin, "DELETE", "/status").0, 405);
    assert_eq!(request(admin, "GET", "/backends/x/drain").0, 405);
    assert_eq!(request(admin, "POST", "/backends/x/drain").0, 404);
    assert_eq!(request(admin, "POST", "/backends/x/reboot").0, 404);
    assert_eq!(raw(admin, b"\x16\x03\x01\x00\xa5\x01\r\n\r\n").0, 400);
    assert_eq!(raw(admin, b"GET / HTTP/2.0\r\n\r\n").0, 505);
    // A POST with a body still gets its whole answer.
    let (code, body) = raw(
        admin,
        format!(
            "POST /backends/s{}/drain HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello",
            ports[0]
        )
        .as_bytes(),
    );
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"draining\""), "{body}");
}

#[test]
fn the_admin_endpoint_and_the_server_binary_judge_request_heads_alike() {
    let dir = TempDir::new("admin-heads");
    let (_servers, ports) = servers(&dir, 1);
    let (lb, _port) = start_lb(&dir.0, &config(&ports, CHECKS));
    let admin = admin_port(&lb);
    // The same bytes to both binaries; each request ends its connection (HTTP/1.0,
    // `Connection: close` or an error), so both answer and close.
    let cases: [(&[u8], u16); 5] = [
        (b"GET /status HTTP/1.0\n\n", 200),
        (b"\r\n\nGET /status HTTP/1.1\nConnection: close\n\n", 200),
        (
            b"GET /status HTTP/1.1\r\nConnection: close\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            400,
        ),
        (b"GET /status HTTP/1.1\rConnection: close\r\r", 400),
        (b"GET /status HTTP/1.1\r\nConnection: close\r\n folded\r\n\r\n", 400),
    ];
    for (bytes, expected) in cases {
        let shown = String::from_utf8_lossy(bytes);
        assert_eq!(raw(admin, bytes).0, expected, "admin: {shown:?}");
        assert_eq!(raw(ports[0], bytes).0, expected, "server: {shown:?}");
    }
}

#[test]
fn a_taken_admin_address_exits_1_and_says_so() {
    let dir = TempDir::new("admin-taken");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let p = dir.write(
        "lb.json",
        &config(&[5001], &format!(r#","admin":"127.0.0.1:{port}""#)),
    );
    let mut lb = Proc::spawn(LB, &["--config", p.to_str().unwrap()], &dir.0, "lb");
    let status = lb.wait_exit(Duration::from_secs(10)).expect("did not exit");
    assert_eq!(status.code(), Some(1));
    let log = lb.log_text();
    assert!(
        log.contains(&format!(
            "cannot listen on the admin address 127.0.0.1:{port}: address already in use"
        )),
        "{log}"
    );
}

#[test]
fn a_client_outside_allow_is_closed_at_once_and_counted() {
    let dir = TempDir::new("allow");
    let (_servers, ports) = servers(&dir, 1);
    let cfg = config(
        &ports,
        r#","allow":["10.0.0.0/8","::1"],"health_check":{"interval":"100ms"},"admin":"127.0.0.1:0""#,
    );
    let (lb, port) = start_lb(&dir.0, &cfg);
    let admin = admin_port(&lb);
    lb.wait_up(1);
    // 127.0.0.1 is outside: closed at once, without an answer.
    let mut s = TcpStream::connect(addr(port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let start = Instant::now();
    let _ = s.write_all(b"GET / HTTP/1.1\r\n\r\n");
    let mut buf = [0u8; 64];
    assert_eq!(
        s.read(&mut buf).unwrap_or(0),
        0,
        "answered a client outside allow"
    );
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
    assert!(
        lb.wait_log("end=rejected_not_allowed", 1, Duration::from_secs(2)),
        "{}",
        lb.log_text()
    );
    let (_, metrics) = request(admin, "GET", "/metrics");
    assert!(
        metrics
            .lines()
            .any(|l| l
                == r#"lb_connections_rejected_total{listener="default",reason="not_allowed"} 1"#),
        "{metrics}"
    );
    assert_eq!(status(admin)["backends"][0]["connections_total"], 0);
}

#[test]
fn a_client_inside_allow_is_served() {
    let dir = TempDir::new("allow-in");
    let (_servers, ports) = servers(&dir, 1);
    let cfg = config(
        &ports,
        r#","allow":["127.0.0.0/8"],"health_check":{"interval":"100ms"}"#,
    );
    let (lb, port) = start_lb(&dir.0, &cfg);
    lb.wait_up(1);
    assert_eq!(who(&http_get(port).unwrap()), format!("s{}", ports[0]));
}

/// A local process that holds more idle connections than the endpoint has slots (64), and
/// opens a new one for each that is closed, does not make `/status` unreachable: each
/// request takes the slot of the oldest connection still waiting for its head (which gets
/// a `408`), and the log says so once per 10 s, not once per connection.
#[test]
fn status_answers_while_idle_connections_hold_every_slot() {
    let dir = TempDir::new("admin-flood");
    let (_servers, ports) = servers(&dir, 1);
    let (lb, _port) = start_lb(&dir.0, &config(&ports, CHECKS));
    let admin = admin_port(&lb);
    let flood = IdleFlood::start(admin, 80, Duration::from_secs(30));
    assert!(
        flood.wait_opened(80, Duration::from_secs(5)),
        "the flood could not open its connections"
    );
    // Each answer within 2 s: a request waits for nothing but its own turn (the flood
    // churns a few hundred connections a second on a loaded two-core machine).
    for i in 0..10 {
        let start = Instant::now();
        let answer = http_exchange(
            admin,
            b"GET /status HTTP/1.1\r\nHost: admin\r\n\r\n",
            Duration::from_secs(3),
        );
        let (code, body) = answer
            .unwrap_or_else(|e| panic!("request {i}: /status unreachable: {e}: {}", lb.log_text()));
        assert_eq!(code, 200, "request {i}: {body}");
        assert!(body.contains("\"backends\""), "{body}");
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "request {i} took {:?}",
            start.elapsed()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let closed = flood.stop();
    assert!(closed >= 10, "only {closed} idle connections made room");
    // One line for the whole flood (it lasted under 10 s), which says what happened.
    std::thread::sleep(Duration::from_millis(300));
    let log = lb.log_text();
    let lines = log.matches("admin: every connection slot is taken").count();
    assert!((1..=2).contains(&lines), "{lines} lines: {log}");
    assert!(
        log.contains("closed the oldest connection still waiting for its request (408)"),
        "{log}"
    );
}
