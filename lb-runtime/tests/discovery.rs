//! DNS service discovery through the real binary, against a real DNS server on loopback
//! (dnsmasq, started and stopped by the test by its PID): A and AAAA answers that change
//! (backends added, removed, replaced), SRV records (the lowest priority, its weights), and
//! a server that stops answering (the last known backends keep serving, the failure is
//! counted and shown). Skips, saying why, where dnsmasq is not installed.
// These tests drive real processes on the real clock: the driver's determinism lint
// (lb-runtime/clippy.toml) is for the driver, not for them.
#![allow(clippy::disallowed_methods)]

mod common;
use common::*;
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// dnsmasq, from PATH or where Debian puts it.
fn dnsmasq() -> Option<PathBuf> {
    let in_path = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("dnsmasq"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    in_path
        .into_iter()
        .chain([PathBuf::from("/usr/sbin/dnsmasq")])
        .find(|p| p.is_file())
}

/// A DNS server on 127.0.0.1:`port` answering from `hosts` (re-read on SIGHUP) and the
/// given SRV records, nothing else.
fn start_dns(bin: &Path, dir: &TempDir, port: u16, hosts: &Path, srv: &[&str]) -> Proc {
    let mut args = vec![
        "--keep-in-foreground".to_string(),
        "--conf-file=/dev/null".to_string(),
        "--no-resolv".to_string(),
        "--no-hosts".to_string(),
        "--no-negcache".to_string(),
        format!("--addn-hosts={}", hosts.display()),
        "--listen-address=127.0.0.1".to_string(),
        "--bind-interfaces".to_string(),
        format!("--port={port}"),
        format!("--pid-file={}", dir.0.join("dnsmasq.pid").display()),
        "--log-facility=-".to_string(),
        "--local=/test/".to_string(),
    ];
    args.extend(srv.iter().map(|s| format!("--srv-host={s}")));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let p = Proc::spawn(bin.to_str().unwrap(), &args, &dir.0, "dnsmasq");
    assert!(
        p.wait_log("started", 1, Duration::from_secs(10)),
        "dnsmasq did not start: {}",
        p.log_text()
    );
    p
}

/// A demo HTTP backend named `name` on `addr`.
fn backend_at(dir: &TempDir, addr: SocketAddr, name: &str) -> Proc {
    let port = addr.port().to_string();
    let bind = addr.ip().to_string();
    let p = Proc::spawn(
        SERVER,
        &[&port, "--name", name, "--bind", &bind],
        &dir.0,
        name,
    );
    let end = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(
            Instant::now() < end,
            "{name} did not start: {}",
            p.log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    p
}

/// The live backends of `pool` in `/status`: (name, state, weight).
fn live(admin: u16, pool: &str) -> BTreeSet<(String, String, u64)> {
    status(admin)["pools"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["name"] == pool)
        .flat_map(|p| p["backends"].as_array().unwrap().clone())
        .filter(|b| b["removed"] == false)
        .map(|b| {
            (
                b["name"].as_str().unwrap().to_string(),
                b["state"].as_str().unwrap().to_string(),
                b["weight"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// Waits up to 10 s for `pool`'s live backends to be `want`, all up.
fn wait_for(admin: u16, pool: &str, want: &[(&str, u64)]) {
    let want: BTreeSet<(String, String, u64)> = want
        .iter()
        .map(|(n, w)| (n.to_string(), "up".to_string(), *w))
        .collect();
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let got = live(admin, pool);
        if got == want {
            return;
        }
        assert!(
            Instant::now() < end,
            "pool {pool}: wanted {want:?}, have {got:?}\n{}",
            status(admin)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Who answers `n` requests to `port`.
fn answered_by(port: u16, n: usize) -> BTreeSet<String> {
    (0..n)
        .map(|_| {
            let mut s = TcpStream::connect(addr(port)).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                .unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).unwrap();
            who(out.split_once("\r\n\r\n").map_or("", |(_, b)| b))
        })
        .collect()
}

#[test]
fn backends_follow_dns_answers_and_survive_a_dns_outage() {
    let Some(dns_bin) = dnsmasq() else {
        eprintln!("SKIPPED: dnsmasq is not installed (apt-get install dnsmasq)");
        return;
    };
    let dir = TempDir::new("discovery");
    // Backends on one port, told apart by address: 127.0.0.2-4 and ::1.
    let port = free_port();
    let at = |ip: &str| SocketAddr::new(ip.parse().unwrap(), port);
    let _b2 = backend_at(&dir, at("127.0.0.2"), "b2");
    let _b3 = backend_at(&dir, at("127.0.0.3"), "b3");
    let _b4 = backend_at(&dir, at("127.0.0.4"), "b4");
    let v6 = std::net::TcpListener::bind("[::1]:0").is_ok();
    let _b6 = v6.then(|| backend_at(&dir, at("::1"), "b6"));

    let dns_port = free_port();
    let hosts = dir.write(
        "hosts",
        "127.0.0.2 web.test\n127.0.0.3 web.test\n127.0.0.4 srv-a.test\n127.0.0.3 srv-b.test\n127.0.0.2 srv-c.test\n",
    );
    // SRV: two targets at priority 10 (weights 5 and 2), a fallback at 20 (unused).
    let srv = [
        format!("_web._tcp.test,srv-a.test,{port},10,5"),
        format!("_web._tcp.test,srv-b.test,{port},10,2"),
        format!("_web._tcp.test,srv-c.test,{port},20,9"),
    ];
    let srv: Vec<&str> = srv.iter().map(String::as_str).collect();
    let mut dns = start_dns(&dns_bin, &dir, dns_port, &hosts, &srv);

    let resolver = format!("127.0.0.1:{dns_port}");
    let config = format!(
        r#"{{
  "listeners": [
    {{ "name": "a", "listen": "127.0.0.1:0", "pool": "by_name" }},
    {{ "name": "srv", "listen": "127.0.0.1:0", "pool": "by_srv" }}
  ],
  "pools": {{
    "by_name": {{ "discover": {{ "dns": "web.test:{port}", "interval": "200ms", "resolver": "{resolver}" }},
                 "health_check": {{ "interval": "100ms", "timeout": "100ms", "rise": 1 }} }},
    "by_srv": {{ "algorithm": "weighted_round_robin",
                 "discover": {{ "srv": "_web._tcp.test", "interval": "200ms", "resolver": "{resolver}" }},
                 "health_check": {{ "interval": "100ms", "timeout": "100ms", "rise": 1 }} }}
  }},
  "admin": "127.0.0.1:0"
}}"#
    );
    let path = dir.write("lb.json", &config);
    let lb = Proc::spawn(LB, &["--config", path.to_str().unwrap()], &dir.0, "lb");
    let admin = admin_port(&lb);
    assert!(lb.wait_log("listening on", 2, Duration::from_secs(10)));
    let listen = |name: &str| -> u16 {
        let v = status(admin);
        let l = v["listeners"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["name"] == name)
            .unwrap()
            .clone();
        l["listen"]
            .as_str()
            .unwrap()
            .parse::<SocketAddr>()
            .unwrap()
            .port()
    };

    // The first answers.
    let name = |ip: &str| at(ip).to_string();
    wait_for(
        admin,
        "by_name",
        &[(&name("127.0.0.2"), 1), (&name("127.0.0.3"), 1)],
    );
    wait_for(
        admin,
        "by_srv",
        &[(&name("127.0.0.4"), 5), (&name("127.0.0.3"), 2)],
    );
    let a = listen("a");
    assert_eq!(
        answered_by(a, 6),
        ["b2", "b3"].map(String::from).into_iter().collect()
    );
    assert_eq!(
        answered_by(listen("srv"), 7),
        ["b3", "b4"].map(String::from).into_iter().collect()
    );

    // DNS changes: 127.0.0.3 is replaced by 127.0.0.4, and ::1 (AAAA) is added.
    let mut next = "127.0.0.2 web.test\n127.0.0.4 web.test\n".to_string();
    if v6 {
        next.push_str("::1 web.test\n");
    }
    next.push_str("127.0.0.4 srv-a.test\n127.0.0.3 srv-b.test\n127.0.0.2 srv-c.test\n");
    std::fs::write(&hosts, next).unwrap();
    dns.signal("HUP");
    let mut want = vec![(name("127.0.0.2"), 1), (name("127.0.0.4"), 1)];
    if v6 {
        want.push((name("::1"), 1));
    }
    let want_ref: Vec<(&str, u64)> = want.iter().map(|(n, w)| (n.as_str(), *w)).collect();
    wait_for(admin, "by_name", &want_ref);
    let mut who_now: BTreeSet<String> = ["b2", "b4"].map(String::from).into_iter().collect();
    if v6 {
        who_now.insert("b6".into());
    }
    assert_eq!(answered_by(a, 9), who_now);
    assert!(
        lb.wait_log("DNS discovery added", 1, Duration::from_secs(5)),
        "{}",
        lb.log_text()
    );

    // The DNS server stops answering: the last known backends keep serving, the failure
    // is counted and shown, and logged once.
    dns.signal("STOP");
    let end = Instant::now() + Duration::from_secs(10);
    let failing = loop {
        let v = status(admin);
        let d = v["pools"][0]["discovery"].clone();
        if d["errors_total"].as_u64().unwrap_or(0) >= 2 {
            break d;
        }
        assert!(Instant::now() < end, "no DNS failure counted: {v}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(failing["last_error"]["reason"], "timeout", "{failing}");
    wait_for(admin, "by_name", &want_ref);
    assert_eq!(answered_by(a, 9), who_now);
    let (_, metrics) = request(admin, "GET", "/metrics");
    assert!(
        metrics.lines().any(
            |l| l.starts_with("lb_discovery_errors_total{pool=\"by_name\"} ") && !l.ends_with(" 0")
        ),
        "{metrics}"
    );
    let log = lb.log_text();
    let failed_lines = log
        .lines()
        .filter(|l| l.contains("dns web.test") && l.contains("failed (timeout)"))
        .count();
    assert_eq!(failed_lines, 1, "logged once per change of outcome:\n{log}");
    dns.signal("CONT");
    assert!(
        lb.wait_log("resolves to", 3, Duration::from_secs(10)),
        "{}",
        lb.log_text()
    );
    dns.kill();
}
