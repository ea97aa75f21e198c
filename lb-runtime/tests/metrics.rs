//! The operator's view through the real binary: `/metrics` parses as Prometheus text (by a
//! parser crate, and by `promtool check metrics` where Prometheus is installed), counts
//! bytes while a connection is still open, and has the histograms, the process figures and
//! the build; a refused health check's reason shows in `/status`; a weight changes at run
//! time by `POST …/weight`.
// These tests drive real processes on the real clock: the driver's determinism lint
// (lb-runtime/clippy.toml) is for the driver, not for them.
#![allow(clippy::disallowed_methods)]

mod common;
use common::*;
use std::io::Write;
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CHECKS: &str =
    r#","health_check":{"interval":"100ms","timeout":"100ms"},"admin":"127.0.0.1:0""#;

/// Every sample of `metrics`, parsed by the `prometheus-parse` crate; panics (with the
/// text) if it does not parse.
fn parse(metrics: &str) -> prometheus_parse::Scrape {
    let lines = metrics.lines().map(|l| Ok(l.to_string()));
    prometheus_parse::Scrape::parse(lines).unwrap_or_else(|e| panic!("{e}: {metrics}"))
}

/// The value of the sample `name` whose labels include `labels`.
fn value(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .find_map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => Some(v),
            _ => None,
        })
}

/// `promtool check metrics` on `metrics`: `None` when promtool is not installed, else its
/// verdict and what it said.
fn promtool(metrics: &str) -> Option<(bool, String)> {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .ok()?;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(metrics.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Some((out.status.success(), said))
}

#[test]
fn metrics_parse_and_count_bytes_while_a_connection_is_open() {
    let dir = TempDir::new("metrics");
    let (_servers, ports) = servers(&dir, 1);
    let (lb, port) = start_lb(&dir.0, &config(&ports, CHECKS));
    let admin = admin_port(&lb);
    lb.wait_up(1);
    let backend = format!("s{}", ports[0]);
    let labels = [("pool", "default"), ("backend", backend.as_str())];

    // One kept-alive connection asks again and again, for longer than a second: its bytes
    // show before it closes.
    let mut s = TcpStream::connect(addr(port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let start = Instant::now();
    let mut shown = None;
    while start.elapsed() < Duration::from_secs(5) {
        assert_eq!(ask(&mut s), backend);
        let (_, text) = request(admin, "GET", "/metrics");
        let to_client = value(
            &parse(&text),
            "lb_bytes_total",
            &[labels[0], labels[1], ("direction", "to_client")],
        );
        if to_client.is_some_and(|v| v > 0.0) {
            shown = Some(start.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let shown = shown.expect("bytes of an open connection never showed in /metrics");
    assert!(
        status(admin)["active_connections"] == 1,
        "the connection is still open"
    );
    drop(s);
    assert!(lb.wait_log("connection closed", 1, Duration::from_secs(5)));

    let (code, text) = request(admin, "GET", "/metrics");
    assert_eq!(code, 200);
    let m = parse(&text);
    // The histograms, with their buckets, sum and count.
    assert_eq!(
        value(&m, "lb_backend_connect_seconds_count", &labels),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(
            &m,
            "lb_connection_duration_seconds_count",
            &[("listener", "default")]
        ),
        Some(1.0),
        "{text}"
    );
    let lived = value(
        &m,
        "lb_connection_duration_seconds_sum",
        &[("listener", "default")],
    )
    .unwrap();
    assert!(lived >= shown.as_secs_f64() * 0.5, "{lived} {shown:?}");
    // The process, and the build.
    for name in [
        "process_start_time_seconds",
        "process_cpu_seconds_total",
        "process_open_fds",
        "process_max_fds",
        "process_resident_memory_bytes",
    ] {
        // CPU time may still round to 0.00 in a young process.
        let least = if name == "process_cpu_seconds_total" {
            0.0
        } else {
            1.0
        };
        assert!(
            value(&m, name, &[]).is_some_and(|v| v >= least),
            "{name}: {text}"
        );
    }
    assert_eq!(
        value(
            &m,
            "lb_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        Some(1.0),
        "{text}"
    );
    match promtool(&text) {
        None => eprintln!(
            "SKIPPED promtool check: promtool is not installed (apt-get install prometheus)"
        ),
        Some((ok, said)) => assert!(ok, "promtool check metrics failed: {said}\n{text}"),
    }
}

#[test]
fn a_refused_check_says_why_and_a_weight_changes_at_run_time() {
    let dir = TempDir::new("metrics-why");
    let (_servers, mut ports) = servers(&dir, 1);
    // Nothing listens on the second backend's port.
    let dead = free_port();
    ports.push(dead);
    let (lb, _port) = start_lb(&dir.0, &config(&ports, CHECKS));
    let admin = admin_port(&lb);
    lb.wait_up(1);
    let dead_name = format!("s{dead}");
    let end = Instant::now() + Duration::from_secs(5);
    let b = loop {
        let b = backend(admin, &dead_name);
        if !b["last_check"].is_null() || Instant::now() > end {
            break b;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(b["state"], "down", "{b}");
    assert_eq!(b["last_check"]["result"], "failed", "{b}");
    assert_eq!(b["last_check"]["reason"], "connection refused", "{b}");
    assert!(b["downtime_ms"].as_u64().unwrap() > 0, "{b}");

    let live = format!("s{}", ports[0]);
    let body = r#"{"weight": 42}"#;
    let (code, answer) = raw(
        admin,
        format!(
            "POST /backends/{live}/weight HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    assert_eq!(code, 200, "{answer}");
    assert_eq!(backend(admin, &live)["weight"], 42);
    let (code, answer) = raw(
        admin,
        b"POST /backends/nope/weight HTTP/1.1\r\nContent-Length: 13\r\n\r\n{\"weight\": 1}",
    );
    assert_eq!(code, 404, "{answer}");
    let body = r#"{"weight": 1001}"#;
    let (code, answer) = raw(
        admin,
        format!(
            "POST /backends/{live}/weight HTTP/1.1\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    assert_eq!(code, 400, "{answer}");
    assert!(answer.contains("out of range"), "{answer}");
    assert_eq!(backend(admin, &live)["weight"], 42);
}
