//! Health check kinds through the real binaries: an `http` check passes only on a 2xx/3xx
//! answer, a `send` / `expect` check only when the reply holds the expected bytes.
// These tests drive real processes on the real clock: the driver's determinism lint
// (lb-runtime/clippy.toml) is for the driver, not for them.
#![allow(clippy::disallowed_methods)]

mod common;
use common::*;
use std::time::{Duration, Instant};

/// An HTTP demo backend and an echo backend behind a load balancer with `check` (and an
/// admin endpoint); returns the load balancer, its port, and the two backends' names (http,
/// echo).
fn http_and_echo(dir: &TempDir, check: &str) -> (Vec<Proc>, Proc, u16, String, String) {
    let (http_port, echo_port) = (free_port(), free_port());
    let http = start_server(&dir.0, http_port, &format!("s{http_port}"), false);
    let echo = start_server(&dir.0, echo_port, &format!("s{echo_port}"), true);
    let cfg = config(
        &[http_port, echo_port],
        &format!(r#","health_check":{check},"admin":"127.0.0.1:0""#),
    );
    let (lb, port) = start_lb(&dir.0, &cfg);
    (
        vec![http, echo],
        lb,
        port,
        format!("s{http_port}"),
        format!("s{echo_port}"),
    )
}

/// Waits (up to 5 s) until `name` has failed three probes and its last one failed, and
/// returns its `/status` entry: the backend was probed, and the probes failed, rather than
/// never being sent.
fn probed_and_failed(lb: &Proc, name: &str) -> serde_json::Value {
    let admin = admin_port(lb);
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        let b = backend(admin, name);
        if b["checks_failed"].as_u64().unwrap() >= 3 && b["last_check"]["result"] == "failed" {
            assert_eq!(b["checks_passed"], 0, "{b}");
            assert_eq!(b["state"], "down", "{b}");
            assert!(b["last_check"]["duration_ms"].is_u64(), "{b}");
            return b;
        }
        assert!(
            Instant::now() < end,
            "{name} was not probed, or its probes did not fail: {b}\n{}",
            lb.log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn an_http_check_passes_only_backends_that_answer_2xx() {
    let dir = TempDir::new("check-http");
    let (_servers, lb, port, http, echo) = http_and_echo(
        &dir,
        r#"{"type":"http","interval":"100ms","timeout":"200ms"}"#,
    );
    assert!(
        lb.wait_log(&format!("backend {http} is up"), 1, Duration::from_secs(5)),
        "{}",
        lb.log_text()
    );
    // The echo backend answers a GET with the GET itself: not an HTTP status.
    let b = probed_and_failed(&lb, &echo);
    assert_eq!(b["last_check"]["reason"], "not an HTTP response", "{b}");
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !lb.log_text().contains(&format!("backend {echo} is up")),
        "{}",
        lb.log_text()
    );
    for _ in 0..4 {
        assert_eq!(who(&http_get(port).unwrap()), http);
    }
    assert!(
        lb.log_text().contains("http GET /health checks"),
        "{}",
        lb.log_text()
    );
}

#[test]
fn a_send_expect_check_needs_the_expected_reply() {
    let dir = TempDir::new("check-expect");
    let (_servers, lb, port, http, echo) = http_and_echo(
        &dir,
        r#"{"send":"PING\r\n","expect":"PING","interval":"100ms","timeout":"200ms"}"#,
    );
    assert!(
        lb.wait_log(&format!("backend {echo} is up"), 1, Duration::from_secs(5)),
        "{}",
        lb.log_text()
    );
    // The HTTP backend never says PING.
    let b = probed_and_failed(&lb, &http);
    assert_eq!(b["last_check"]["reason"], "expect not matched", "{b}");
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !lb.log_text().contains(&format!("backend {http} is up")),
        "{}",
        lb.log_text()
    );
    // Every client goes to the echo backend.
    for _ in 0..3 {
        let mut s = std::net::TcpStream::connect(addr(port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        use std::io::{Read, Write};
        s.write_all(b"hello").unwrap();
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"hello");
    }
}
