//! Balancing and health through the real binaries: equal turns, a killed backend leaves
//! without failing anyone's connection, a restarted one comes back.
// These tests drive real processes on the real clock: the driver's determinism lint
// (lb-runtime/clippy.toml) is for the driver, not for them.
#![allow(clippy::disallowed_methods)]

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
    lb.wait_up(3);
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

/// The victim's connect failures (client connects to it that failed), from `/status`.
fn connect_failures(admin: u16, name: &str) -> u64 {
    backend(admin, name)["connect_failures_total"]
        .as_u64()
        .unwrap()
}

/// Probes every 250 ms: a dead backend's second failed probe comes at least 225 ms (the
/// interval less its jitter of up to a tenth) after its first, so the clients that connect
/// every few milliseconds meanwhile reach it first; a restarted one needs 4 passing probes,
/// at least 3 × 225 = 675 ms apart from first to last.
const KILL_CHECKS: &str = r#","health_check":{"interval":"250ms","timeout":"100ms","rise":4,"fall":2},
    "timeouts":{"connect":"300ms"},"retries":2,"admin":"127.0.0.1:0""#;

#[test]
fn a_killed_backend_leaves_without_failing_clients_and_returns_after_rise() {
    let dir = TempDir::new("kill");
    let (mut servers, ports) = servers(&dir, 3);
    let (lb, port) = start_lb(&dir.0, &config(&ports, KILL_CHECKS));
    let admin = admin_port(&lb);
    lb.wait_up(3);
    let victim = format!("s{}", ports[1]);
    assert_eq!(connect_failures(admin, &victim), 0);

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
    // fall (2) x interval (250ms) + timeout (100ms), with slack for a loaded machine.
    assert!(
        down_after < Duration::from_millis(1500),
        "down after {down_after:?}"
    );
    assert!(
        !served.contains_key(&victim),
        "a dead backend answered: {served:?}"
    );
    // Round robin reached it within three connections, before its probes could fail
    // twice: the connects that failed meanwhile are counted (and, with `fall` 2, may be
    // what took it down).
    let failed_while_up = connect_failures(admin, &victim);
    assert!(
        failed_while_up >= 1,
        "no client connect to the killed backend was counted: {}",
        lb.log_text()
    );
    // After it is down, new connections skip it without a failed connect first: had
    // round robin still tried it, every third connection would add a connect failure
    // (and then go on to the next backend, so the clients would not notice).
    let failures_before = lb.log_text().matches("connect failed").count();
    for _ in 0..20 {
        let name = who(&http_get(port).unwrap());
        assert_ne!(name, victim);
    }
    assert_eq!(
        lb.log_text().matches("connect failed").count(),
        failures_before
    );
    assert_eq!(
        connect_failures(admin, &victim),
        failed_while_up,
        "a backend marked down was still tried: {}",
        lb.log_text()
    );

    // Restart it on the same port: back after `rise` passing checks. Its first passing
    // probe comes after it listens, so after `restarting`, and the fourth at least 675 ms
    // after that: no client may reach it sooner (650 ms, for the clock readings). Ignoring
    // `rise`, the first passing probe (within one interval, 250 ms) would bring it back.
    // With `rise`, it is back within rise × interval + timeout = 1.1 s of listening
    // (`back`), 2 s with slack for a loaded machine.
    let restarting = Instant::now();
    servers[1] = start_server(&dir.0, ports[1], &victim, false);
    let back = Instant::now();
    let mut first_served = None;
    while back.elapsed() < Duration::from_secs(3) {
        let body = http_get(port).unwrap_or_else(|e| panic!("a client failed: {e}"));
        if who(&body) == victim {
            first_served = Some((restarting.elapsed(), back.elapsed()));
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let (since_restarting, since_back) =
        first_served.unwrap_or_else(|| panic!("{victim} never served again: {}", lb.log_text()));
    eprintln!("{victim} served again {since_restarting:?} after its restart, {since_back:?} after it listened");
    assert!(
        since_restarting >= Duration::from_millis(650),
        "{victim} served {since_restarting:?} after its restart, before 4 probes could pass: {}",
        lb.log_text()
    );
    assert!(
        since_back < Duration::from_millis(2000),
        "{victim} served only {since_back:?} after it listened again"
    );
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
        lb.wait_log("end=rejected_no_backend", 1, Duration::from_secs(2)),
        "{}",
        lb.log_text()
    );
}

/// The soft open-file limit of process `pid`, from `/proc/PID/limits`.
fn soft_nofile(pid: u32) -> String {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    line.split_whitespace().nth(3).unwrap().to_string()
}

/// Sets the soft open-file limit of process `pid` (lowering it, or raising it back up to
/// the hard limit, needs no privilege).
fn set_soft_nofile(pid: u32, soft: &str) {
    let ok = std::process::Command::new("prlimit")
        .args(["--pid", &pid.to_string(), &format!("--nofile={soft}:")])
        .status()
        .unwrap()
        .success();
    assert!(ok, "prlimit --pid {pid} --nofile={soft}:");
}

/// A load balancer that runs out of file descriptors must not blame its backends: probes
/// that cannot even open a socket leave them up, a client that arrives meanwhile waits
/// instead of being refused, and it serves from every backend once descriptors free up.
#[test]
fn running_out_of_file_descriptors_does_not_mark_backends_down() {
    let dir = TempDir::new("nofile");
    let (_servers, ports) = servers(&dir, 2);
    let (lb, port) = start_lb(&dir.0, &config(&ports, FAST_CHECKS));
    lb.wait_up(2);
    // A soft limit of 3 leaves no descriptor to allocate (0, 1 and 2 are open), however
    // many the load balancer holds: every socket() and accept() fails with EMFILE.
    let soft = soft_nofile(lb.pid());
    set_soft_nofile(lb.pid(), "3");
    // Probes come every 100 ms with `fall` 2: each failure to probe is a chance to blame.
    assert!(
        lb.wait_log(
            "cannot probe backends: too many open files",
            1,
            Duration::from_secs(5)
        ),
        "descriptors never ran out: {}",
        lb.log_text()
    );
    // A client that connects now completes its handshake in the kernel's backlog and
    // waits there until the load balancer can accept it.
    let waiting = std::thread::spawn(move || http_get(port));
    assert!(
        lb.wait_log(
            "accept failed: too many open files",
            1,
            Duration::from_secs(5)
        ),
        "{}",
        lb.log_text()
    );
    std::thread::sleep(Duration::from_secs(1));
    set_soft_nofile(lb.pid(), &soft);
    let body = waiting.join().unwrap();
    assert!(body.is_ok(), "{body:?}: {}", lb.log_text());
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
    assert_eq!(names.len(), 2, "{names:?}: {}", lb.log_text());
    // Probes failed for over a second, on both backends, far more than `fall` times; the
    // log says so in two lines, not one per probe.
    assert!(
        lb.wait_log("probing again after", 1, Duration::from_secs(2)),
        "{}",
        lb.log_text()
    );
    let log = lb.log_text();
    let probes_failed: u64 = log
        .split("probing again after ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no failure count: {log}"));
    assert!(probes_failed >= 8, "{probes_failed} probes failed: {log}");
    assert!(!log.contains(" is down"), "a backend was blamed: {log}");
    assert_eq!(log.matches("cannot probe").count(), 1, "{log}");
    // Accept failed every 10 ms for a second; the log says so once per worker thread
    // and says when it recovered.
    let workers: usize = log
        .split(" worker thread(s)")
        .next()
        .and_then(|head| head.rsplit("; ").next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no worker count in the startup line: {log}"));
    let failed = log.matches("accept failed").count();
    assert!((1..=workers).contains(&failed), "{failed} lines: {log}");
    assert!(
        lb.wait_log("accepting again after", 1, Duration::from_secs(2)),
        "{log}"
    );
}
