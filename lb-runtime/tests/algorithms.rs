//! Every algorithm through the real binaries: shares, weights, load awareness and hash
//! stickiness, observed from clients on 127.0.0.x source addresses.
// These tests drive real processes on the real clock: the driver's determinism lint
// (lb-runtime/clippy.toml) is for the driver, not for them.
#![allow(clippy::disallowed_methods)]

mod common;
use common::*;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

const CHECKS: &str = r#""health_check":{"interval":"100ms","timeout":"100ms"}"#;

fn weighted_config(alg: &str, backends: &[(u16, u32)]) -> String {
    let list: Vec<String> = backends
        .iter()
        .map(|(p, w)| format!(r#"{{"name":"s{p}","address":"127.0.0.1:{p}","weight":{w}}}"#))
        .collect();
    format!(
        r#"{{"listen":"127.0.0.1:0","algorithm":"{alg}","backends":[{}],{CHECKS}}}"#,
        list.join(",")
    )
}

/// One HTTP request from source address `src` (port chosen by the kernel).
fn get_from(src: Ipv4Addr, port: u16) -> String {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.bind(SocketAddr::new(IpAddr::V4(src), 0)).unwrap();
        let mut s = tokio::time::timeout(Duration::from_secs(5), sock.connect(addr(port)))
            .await
            .unwrap()
            .unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut out = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
            .await
            .unwrap()
            .unwrap();
        let out = String::from_utf8(out).unwrap();
        who(out.split_once("\r\n\r\n").unwrap().1)
    })
}

/// Opens a keep-alive HTTP connection, reads one answer and keeps the connection open.
fn hold(port: u16) -> (TcpStream, String) {
    let mut s = TcpStream::connect(addr(port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 512];
    loop {
        let n = s.read(&mut chunk).unwrap();
        assert!(n > 0, "closed early");
        buf.extend_from_slice(&chunk[..n]);
        if buf.ends_with(b"\n") && buf.windows(4).any(|w| w == b"\r\n\r\n") {
            let text = String::from_utf8_lossy(&buf).into_owned();
            let body = text.split_once("\r\n\r\n").unwrap().1.to_string();
            if body.ends_with('\n') {
                return (s, who(&body));
            }
        }
    }
}

fn counts(names: &[String]) -> BTreeMap<String, usize> {
    let mut c = BTreeMap::new();
    for n in names {
        *c.entry(n.clone()).or_insert(0) += 1;
    }
    c
}

#[test]
fn weighted_round_robin_5_1_1_gives_the_smooth_sequence() {
    let dir = TempDir::new("wrr");
    let (_s, p) = servers(&dir, 3);
    let (lb, port) = start_lb(
        &dir.0,
        &weighted_config("weighted_round_robin", &[(p[0], 5), (p[1], 1), (p[2], 1)]),
    );
    lb.wait_up(3);
    let letter = |n: &str| match n.trim_start_matches('s').parse::<u16>().unwrap() {
        x if x == p[0] => 'a',
        x if x == p[1] => 'b',
        _ => 'c',
    };
    let seq: String = (0..14)
        .map(|_| letter(&who(&http_get(port).unwrap())))
        .collect();
    assert_eq!(seq, "aabacaaaabacaa");
}

#[test]
fn least_connections_spreads_held_connections_by_weight() {
    let dir = TempDir::new("lc");
    let (_s, p) = servers(&dir, 3);
    let (lb, port) = start_lb(
        &dir.0,
        &weighted_config("least_connections", &[(p[0], 2), (p[1], 1), (p[2], 1)]),
    );
    lb.wait_up(3);
    let held: Vec<(TcpStream, String)> = (0..8).map(|_| hold(port)).collect();
    let c = counts(&held.iter().map(|(_, n)| n.clone()).collect::<Vec<_>>());
    assert_eq!(c[&format!("s{}", p[0])], 4, "{c:?}");
    assert_eq!(c[&format!("s{}", p[1])], 2, "{c:?}");
    assert_eq!(c[&format!("s{}", p[2])], 2, "{c:?}");
    // Weighted round robin gives the same 4/2/2 without looking at connections. Close the
    // heavy backend's four: it holds 0 (of weight 2) against 2 and 2 (of weight 1), so
    // least_connections gives it the next four (0/2, 1/2, 2/2 and 3/2 are all below 2/1),
    // where any round robin would give the others their turns.
    let heavy = format!("s{}", p[0]);
    let (closed, mut kept): (Vec<_>, Vec<_>) = held.into_iter().partition(|(_, n)| *n == heavy);
    drop(closed);
    // The pool has released a connection when its close is logged.
    assert!(
        lb.wait_log("connection closed", 4, Duration::from_secs(5)),
        "{}",
        lb.log_text()
    );
    let next: Vec<String> = (0..4)
        .map(|_| {
            let (s, n) = hold(port);
            kept.push((s, n.clone()));
            n
        })
        .collect();
    assert!(
        next.iter().all(|n| *n == heavy),
        "with {heavy} idle and the others busy: {next:?}"
    );
}

#[test]
fn power_of_two_sends_each_connection_to_the_lighter_backend() {
    let dir = TempDir::new("p2c");
    let (_s, p) = servers(&dir, 2);
    let (lb, port) = start_lb(
        &dir.0,
        &weighted_config("power_of_two", &[(p[0], 1), (p[1], 1)]),
    );
    lb.wait_up(2);
    // With two backends both are always drawn, so the lighter always wins: held connections
    // alternate and never differ by more than one. (With more backends the pair is random
    // and only the property tests can see which two were compared.)
    let mut held = Vec::new();
    for k in 1..=10 {
        held.push(hold(port));
        let c = counts(&held.iter().map(|(_, n)| n.clone()).collect::<Vec<_>>());
        let (min, max) = (c.values().min().unwrap(), c.values().max().unwrap());
        let min = if c.len() < 2 { &0 } else { min };
        assert!(max - min <= 1, "after {k}: {c:?}");
    }
    // Round robin alternates too. Close the five held on one backend: it holds 0 against
    // 5, so power_of_two gives it the next five, where round robin would alternate.
    let light = held[0].1.clone();
    let (closed, mut kept): (Vec<_>, Vec<_>) = held.into_iter().partition(|(_, n)| *n == light);
    assert_eq!(closed.len(), 5);
    drop(closed);
    // The pool has released a connection when its close is logged.
    assert!(
        lb.wait_log("connection closed", 5, Duration::from_secs(5)),
        "{}",
        lb.log_text()
    );
    let next: Vec<String> = (0..5)
        .map(|_| {
            let (s, n) = hold(port);
            kept.push((s, n.clone()));
            n
        })
        .collect();
    assert!(
        next.iter().all(|n| *n == light),
        "with {light} idle and the other holding 5: {next:?}"
    );
}

#[test]
fn random_reaches_every_backend() {
    let dir = TempDir::new("random");
    let (_s, p) = servers(&dir, 3);
    let (lb, port) = start_lb(
        &dir.0,
        &weighted_config("random", &[(p[0], 1), (p[1], 1), (p[2], 1)]),
    );
    lb.wait_up(3);
    let names: Vec<String> = (0..60).map(|_| who(&http_get(port).unwrap())).collect();
    let c = counts(&names);
    // P(a backend gets none of 60 uniform draws) = 3·(2/3)^60 < 1e-10.
    assert_eq!(c.len(), 3, "{c:?}");
    // Round robin (and weighted round robin with equal weights) is a strict rotation:
    // never the same backend twice in a row. Uniform draws repeat the previous one with
    // probability 1/3 each time: P(no repeat in 59 pairs) = (2/3)^59 < 1e-10.
    let repeats = names.windows(2).filter(|w| w[0] == w[1]).count();
    assert!(repeats > 0, "a strict rotation: {names:?}");
}

#[test]
fn hash_keeps_each_client_ip_on_one_backend_across_load_balancers() {
    let dir = TempDir::new("hash");
    let (_s, p) = servers(&dir, 3);
    let cfg = weighted_config("hash", &[(p[0], 1), (p[1], 1), (p[2], 1)]);
    let (lb1, port1) = start_lb(&dir.0, &cfg);
    let dir2 = TempDir::new("hash2");
    let (lb2, port2) = start_lb(&dir2.0, &cfg);
    lb1.wait_up(3);
    lb2.wait_up(3);
    let mut owner = BTreeMap::new();
    for host in 1..=24u8 {
        let ip = Ipv4Addr::new(127, 0, 0, host);
        let first = get_from(ip, port1);
        for k in 0..3 {
            let port = if k % 2 == 0 { port2 } else { port1 };
            assert_eq!(get_from(ip, port), first, "client {ip} moved");
        }
        owner.insert(host, first);
    }
    let spread = counts(&owner.values().cloned().collect::<Vec<_>>());
    assert!(
        spread.len() >= 2,
        "24 clients all on one backend: {spread:?}"
    );
}

/// A backend that answers after `delay`, in HTTP, naming itself.
fn slow_backend(name: &'static str, delay: Duration) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            std::thread::spawn(move || {
                let mut s = s;
                let mut buf = [0u8; 1024];
                if s.read(&mut buf).unwrap_or(0) == 0 {
                    return; // a health probe
                }
                std::thread::sleep(delay);
                let body = format!("Hello from {name}\n");
                let _ = write!(
                    s,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            });
        }
    });
    port
}

#[test]
fn least_response_time_prefers_the_fast_backend() {
    let dir = TempDir::new("lrt");
    let slow = slow_backend("slow", Duration::from_millis(150));
    let fast = slow_backend("fast", Duration::ZERO);
    let cfg = format!(
        r#"{{"listen":"127.0.0.1:0","algorithm":"least_response_time","backends":[
            {{"name":"slow","address":"127.0.0.1:{slow}"}},{{"name":"fast","address":"127.0.0.1:{fast}"}}],{CHECKS}}}"#
    );
    let (lb, port) = start_lb(&dir.0, &cfg);
    lb.wait_up(2);
    let start = Instant::now();
    let names: Vec<String> = (0..20).map(|_| who(&http_get(port).unwrap())).collect();
    let c = counts(&names);
    // Each backend is measured once; after that the 150 ms backend loses every comparison.
    assert!(c.get("slow").copied().unwrap_or(0) <= 2, "{c:?}");
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
}
