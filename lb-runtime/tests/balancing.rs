//! Balancing and health through the real binaries: equal turns, a killed backend leaves
//! without failing anyone's connection, a restarted one comes back.

mod common;
use common::*;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const FAST_CHECKS: &str = r#","health_check":{"interval":"100ms","timeout":"100ms","rise":2,"fall":2},
    "timeouts":{"connect":"300ms"},"retries":2"#;

#[test]
fn round_robin_gives_three_backends_exactly_equal_turns() {
    let dir = TempDir::new("rr");
    let (_servers, ports) = servers(&dir, 3);
    let (lb, port) = start_lb(&dir.0, &config(&ports, FAST_CHECKS));
    assert!(
        lb.wait_log(" is up", 3, Duration::from_secs(5)),
        "{}",
        lb.log_text()
    );
    let names: Vec<String> = (0..30).map(|_| who(&http_get(port).unwrap())).collect();
    let mut counts = BTreeMap::new();
    for n in &names {
        *counts.entry(n.clone()).or_insert(0) += 1;
    }
    assert_eq!(counts.len(), 3, "{names:?}");
    assert!(counts.values().all(|&c| c == 10), "{counts:?}");
    // Turns rotate: every three consecutive connections reach three different backends.
    for w in names.windows(3) {
        assert!(w[0] != w[1] && w[1] != w[2] && w[0] != w[2], "{names:?}");
    }
}

#[test]
fn a_killed_backend_leaves_without_failing_clients_and_returns_after_rise() {
    let dir = TempDir::new("kill");
    let (mut servers, ports) = servers(&dir, 3);
    let (lb, port) = start_lb(&dir.0, &config(&ports, FAST_CHECKS));
    assert!(
        lb.wait_log(" is up", 3, Duration::from_secs(5)),
        "{}",
        lb.log_text()
    );
    let victim = format!("s{}", ports[1]);

    servers[1].kill();
    let killed = Instant::now();
    // Keep connecting while the load balancer notices: no client connection may fail.
    let mut down_after = None;
    let mut served = BTreeMap::new();
    while killed.elapsed() < Duration::from_secs(3) {
        let body = http_get(port).unwrap_or_else(|e| panic!("a client failed: {e}"));
        *served.entry(who(&body)).or_insert(0) += 1;
        if down_after.is_none() && lb.log_text().contains(&format!("backend {victim} is down")) {
            down_after = Some(killed.elapsed());
        }
        if down_after.is_some_and(|d| killed.elapsed() > d + Duration::from_millis(300)) {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let down_after = down_after.expect("the killed backend was never marked down");
    // fall (2) x interval (100ms) + timeout (100ms), with slack for a loaded machine.
    assert!(
        down_after < Duration::from_millis(1500),
        "down after {down_after:?}"
    );
    assert!(
        !served.contains_key(&victim),
        "a dead backend answered: {served:?}"
    );
    // After it is down, new connections skip it without a failed connect first.
    let failures_before = lb.log_text().matches("connect failed").count();
    for _ in 0..20 {
        let name = who(&http_get(port).unwrap());
        assert_ne!(name, victim);
    }
    assert_eq!(
        lb.log_text().matches("connect failed").count(),
        failures_before
    );

    // Restart it on the same port: back after `rise` passing checks.
    servers[1] = start_server(&dir.0, ports[1], &victim, false);
    let back = Instant::now();
    assert!(
        lb.wait_log(
            &format!("backend {victim} is up"),
            2,
            Duration::from_secs(3)
        ),
        "{}",
        lb.log_text()
    );
    assert!(
        back.elapsed() < Duration::from_millis(2000),
        "{:?}",
        back.elapsed()
    );
    let names: Vec<String> = (0..30).map(|_| who(&http_get(port).unwrap())).collect();
    assert_eq!(
        names.iter().filter(|n| **n == victim).count(),
        10,
        "{names:?}"
    );
}

#[test]
fn with_every_backend_down_a_new_client_is_closed_at_once() {
    use std::io::Read;
    let dir = TempDir::new("alldown");
    let dead = free_port();
    let (lb, port) = start_lb(&dir.0, &config(&[dead], FAST_CHECKS));
    let mut s = std::net::TcpStream::connect(addr(port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let start = Instant::now();
    let mut buf = [0u8; 16];
    let n = s.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0);
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
    assert!(
        lb.wait_log("rejected (no_backend)", 1, Duration::from_secs(2)),
        "{}",
        lb.log_text()
    );
}

/// A load balancer that runs out of file descriptors must not blame its backends: failed
/// probes and connects of its own making leave them up, and it serves again once
/// descriptors free up.
#[test]
fn running_out_of_file_descriptors_does_not_mark_backends_down() {
    let dir = TempDir::new("nofile");
    let (_servers, ports) = servers(&dir, 2);
    let path = dir.write("config.json", &config(&ports, FAST_CHECKS));
    // `prlimit` execs the load balancer in place, so the PID is the load balancer's.
    let lb = Proc::spawn(
        "prlimit",
        &["--nofile=64:64", LB, "--config", path.to_str().unwrap()],
        &dir.0,
        "lb",
    );
    let port = lb.wait_lb_port();
    assert!(
        lb.wait_log(" is up", 2, Duration::from_secs(5)),
        "{}",
        lb.log_text()
    );
    // Far more held connections than 64 descriptors allow (each needs two).
    let mut held = Vec::new();
    for _ in 0..60 {
        if let Ok(s) = std::net::TcpStream::connect_timeout(&addr(port), Duration::from_secs(1)) {
            held.push(s);
        }
    }
    // Probes come every 100 ms with `fall` 2: a second is ten chances to blame a backend.
    assert!(
        lb.wait_log("cannot probe", 2, Duration::from_secs(5)),
        "descriptors never ran out: {}",
        lb.log_text()
    );
    std::thread::sleep(Duration::from_secs(1));
    drop(held);
    // Both backends still serve, in turn.
    let mut names = std::collections::BTreeSet::new();
    let end = Instant::now() + Duration::from_secs(5);
    while names.len() < 2 && Instant::now() < end {
        if let Ok(body) = http_get(port) {
            names.insert(who(&body));
        } else {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let log = lb.log_text();
    assert_eq!(names.len(), 2, "{names:?}: {log}");
    assert!(!log.contains(" is down"), "a backend was blamed: {log}");
}
