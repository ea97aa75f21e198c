//! Many services in one process, through the real binaries: named `listeners` and `pools`
//! (each listener reaches only its pool, each pool with its own algorithm), what `/status`,
//! `/metrics` and the admin actions show of them, TLS passthrough routing by server name
//! (SNI) end to end against `openssl s_server` backends, reloads that add and remove
//! listeners, and the command line of the named form.
// These tests drive real processes on the real clock: the driver's determinism lint
// (lb-runtime/clippy.toml) is for the driver, not for them.
#![allow(clippy::disallowed_methods)]

mod common;
use common::*;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const FAST: &str = r#""health_check":{"interval":"100ms","timeout":"100ms"}"#;

/// One backend of a pool, as config JSON.
fn entry(name: &str, port: u16) -> String {
    format!(r#"{{"name":"{name}","address":"127.0.0.1:{port}"}}"#)
}

/// Waits (bounded) until `f` holds.
fn wait_until(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + within;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The port listener `name` listens on, from its startup line
/// (`listening on 127.0.0.1:PORT (listener NAME on ...`).
fn listener_port(lb: &Proc, name: &str) -> u16 {
    const HEAD: &str = "listening on 127.0.0.1:";
    let marker = format!(" (listener {name} on ");
    let mut found = None;
    let ok = wait_until(Duration::from_secs(10), || {
        found = lb.log_text().lines().find_map(|line| {
            let rest = &line[line.find(HEAD)? + HEAD.len()..];
            let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
            rest[digits.len()..]
                .starts_with(&marker)
                .then(|| digits.parse().ok())
                .flatten()
        });
        found.is_some()
    });
    assert!(ok, "no listener {name}: {}", lb.log_text());
    found.unwrap()
}

/// Starts the load balancer on `config` (written to `config.json` in `dir`).
fn start(dir: &TempDir, config: &str) -> (Proc, PathBuf) {
    let path = dir.write("config.json", config);
    let lb = Proc::spawn(LB, &["--config", path.to_str().unwrap()], &dir.0, "lb");
    (lb, path)
}

/// Rewrites the config and sends SIGHUP; waits for the `n`th line containing `outcome`
/// (`config reloaded` or `reload failed`).
fn reload(lb: &Proc, path: &Path, text: &str, outcome: &str, n: usize) -> Instant {
    std::fs::write(path, text).unwrap();
    lb.signal("HUP");
    assert!(
        lb.wait_log(outcome, n, Duration::from_secs(5)),
        "{}",
        lb.log_text()
    );
    Instant::now()
}

/// One HTTP request from source address `src`; returns who answered.
fn get_from(src: Ipv4Addr, port: u16) -> std::io::Result<String> {
    use socket2::{Domain, Socket, Type};
    let sock = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    sock.bind(&SocketAddr::from((src, 0)).into())?;
    sock.connect_timeout(&addr(port).into(), Duration::from_secs(2))?;
    let mut s: TcpStream = sock.into();
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    match out.split_once("\r\n\r\n") {
        Some((head, body)) if head.starts_with("HTTP/1.1 200") => Ok(who(body)),
        _ => Err(std::io::Error::other(format!("bad answer: {out:?}"))),
    }
}

/// Whether a connect to `port` is refused now.
fn refused(port: u16) -> bool {
    matches!(
        TcpStream::connect_timeout(&addr(port), Duration::from_millis(500)),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused
    )
}

/// `GET /metrics` as a map from series (`name{labels}`) to value.
fn metrics(admin: u16) -> BTreeMap<String, f64> {
    let (code, body) = request(admin, "GET", "/metrics");
    assert_eq!(code, 200, "{body}");
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.rsplit_once(' '))
        .map(|(k, v)| (k.to_string(), v.parse().unwrap()))
        .collect()
}

/// The entry named `name` in `/status`'s list `list` (`listeners` or `pools`).
fn named<'a>(status: &'a Value, list: &str, name: &str) -> &'a Value {
    status[list]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("no {list} entry {name}: {status:#}"))
}

/// The names in `/status`'s list `list`.
fn names(status: &Value, list: &str) -> Vec<String> {
    status[list]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_string())
        .collect()
}

/// A backend of `pool` in `/status` (from the pool's own list).
fn pool_backend<'a>(status: &'a Value, pool: &str, name: &str) -> &'a Value {
    named(status, "pools", pool)["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == name)
        .unwrap_or_else(|| panic!("no backend {name} in pool {pool}: {status:#}"))
}

/// Waits until no client connection is open (so counters are final).
fn wait_idle(admin: u16) {
    assert!(
        wait_until(Duration::from_secs(5), || status(admin)
            ["active_connections"]
            == 0),
        "{:#}",
        status(admin)
    );
}

// ---------------------------------------------------------------------------------------
// Two listeners, two pools.
// ---------------------------------------------------------------------------------------

#[test]
fn two_listeners_reach_only_their_own_pool_with_its_own_algorithm() {
    let dir = TempDir::new("svc-two");
    let ports: Vec<u16> = (0..4).map(|_| free_port()).collect();
    let names4 = ["web-a", "web-b", "api-a", "api-g"];
    let _servers: Vec<Proc> = ports
        .iter()
        .zip(names4)
        .map(|(&p, n)| start_server(&dir.0, p, n, false))
        .collect();
    // Both pools have a backend named "alpha" (on different servers).
    let config = format!(
        r#"{{"listeners":[{{"name":"web","listen":"127.0.0.1:0","pool":"web"}},
                          {{"name":"api","listen":"127.0.0.1:0","pool":"api"}}],
            "pools":{{"web":{{"algorithm":"round_robin","backends":[{},{}],{FAST}}},
                      "api":{{"algorithm":"hash","backends":[{},{}],{FAST}}}}},
            "admin":"127.0.0.1:0"}}"#,
        entry("alpha", ports[0]),
        entry("beta", ports[1]),
        entry("alpha", ports[2]),
        entry("gamma", ports[3]),
    );
    let (lb, _path) = start(&dir, &config);
    let web = listener_port(&lb, "web");
    let api = listener_port(&lb, "api");
    let admin = admin_port(&lb);
    lb.wait_up(4);

    // Round robin on `web`: strict turns, only web servers.
    let seq: Vec<String> = (0..8).map(|_| who(&http_get(web).unwrap())).collect();
    assert!(
        seq.iter().all(|n| n == "web-a" || n == "web-b"),
        "web reached another pool: {seq:?}"
    );
    assert!(
        seq.windows(2).all(|w| w[0] != w[1]),
        "round robin does not alternate: {seq:?}"
    );
    // One client IP on `web` still takes turns: the hash is `api`'s, not `web`'s.
    let src = Ipv4Addr::new(127, 0, 0, 2);
    let seq2: Vec<String> = (0..4).map(|_| get_from(src, web).unwrap()).collect();
    assert!(seq2.windows(2).all(|w| w[0] != w[1]), "{seq2:?}");

    // Hash on `api`: each client IP sticks to one api server.
    let mut by_ip: BTreeMap<Ipv4Addr, String> = BTreeMap::new();
    for i in 2..22 {
        let src = Ipv4Addr::new(127, 0, 0, i);
        let got: Vec<String> = (0..3).map(|_| get_from(src, api).unwrap()).collect();
        assert!(
            got.iter().all(|n| *n == got[0]),
            "{src} moved between backends: {got:?}"
        );
        assert!(
            got[0] == "api-a" || got[0] == "api-g",
            "api reached another pool: {got:?}"
        );
        by_ip.insert(src, got[0].clone());
    }
    let used: BTreeSet<&String> = by_ip.values().collect();
    // The mapping is a function of the IP (Maglev over the names): 20 IPs on one of two
    // backends would mean no hashing at all.
    assert_eq!(used.len(), 2, "20 client IPs all on one backend: {by_ip:?}");
    let on_alpha = by_ip.values().filter(|n| *n == "api-a").count() as u64;

    // /status: both listeners and both pools, with their counts.
    wait_idle(admin);
    let st = status(admin);
    assert_eq!(names(&st, "listeners"), ["web", "api"], "{st:#}");
    for (name, port, pool, total) in [("web", web, "web", 12), ("api", api, "api", 60)] {
        let l = named(&st, "listeners", name);
        assert_eq!(l["listen"], format!("127.0.0.1:{port}"), "{l:#}");
        assert_eq!(l["pool"], pool, "{l:#}");
        assert_eq!(l["sni"], serde_json::json!({}), "{l:#}");
        assert_eq!(l["active_connections"], 0, "{l:#}");
        assert_eq!(l["connections_total"], total, "{l:#}");
        let rejected = l["rejected"].as_object().unwrap();
        assert!(rejected.contains_key("no_route"), "{l:#}");
        assert!(rejected.values().all(|v| *v == 0), "{l:#}");
    }
    let mut pools = names(&st, "pools");
    pools.sort();
    assert_eq!(pools, ["api", "web"], "{st:#}");
    assert_eq!(named(&st, "pools", "web")["algorithm"], "round_robin");
    assert_eq!(named(&st, "pools", "api")["algorithm"], "hash");
    let totals = |pool: &str| -> Vec<(String, u64)> {
        named(&st, "pools", pool)["backends"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| {
                (
                    b["name"].as_str().unwrap().to_string(),
                    b["connections_total"].as_u64().unwrap(),
                )
            })
            .collect()
    };
    assert_eq!(
        totals("web"),
        [("alpha".to_string(), 6), ("beta".to_string(), 6)],
        "{st:#}"
    );
    assert_eq!(
        totals("api"),
        [
            ("alpha".to_string(), 3 * on_alpha),
            ("gamma".to_string(), 3 * (20 - on_alpha))
        ],
        "{st:#}"
    );
    // The flattened list: every backend once, naming its pool.
    let flat: BTreeSet<(String, String, String)> = st["backends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["pool"].as_str().unwrap().to_string(),
                b["name"].as_str().unwrap().to_string(),
                b["address"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let want: BTreeSet<(String, String, String)> = [
        ("web", "alpha", ports[0]),
        ("web", "beta", ports[1]),
        ("api", "alpha", ports[2]),
        ("api", "gamma", ports[3]),
    ]
    .iter()
    .map(|(p, n, port)| (p.to_string(), n.to_string(), format!("127.0.0.1:{port}")))
    .collect();
    assert_eq!(flat, want, "{st:#}");
    assert_eq!(st["backends"].as_array().unwrap().len(), 4);

    // /metrics: backend series by pool and backend, client series by listener.
    let m = metrics(admin);
    let at = |k: &str| {
        *m.get(k)
            .unwrap_or_else(|| panic!("no series {k} in {:#?}", m.keys()))
    };
    assert_eq!(at(r#"lb_connections_total{listener="web"}"#), 12.0);
    assert_eq!(at(r#"lb_connections_total{listener="api"}"#), 60.0);
    assert_eq!(at(r#"lb_connections_active{listener="api"}"#), 0.0);
    assert_eq!(
        at(r#"lb_connections_rejected_total{listener="web",reason="no_route"}"#),
        0.0
    );
    assert_eq!(
        at(r#"lb_backend_connections_total{pool="web",backend="alpha"}"#),
        6.0
    );
    assert_eq!(
        at(r#"lb_backend_connections_total{pool="api",backend="alpha"}"#),
        (3 * on_alpha) as f64
    );
    for (pool, b) in [
        ("web", "alpha"),
        ("web", "beta"),
        ("api", "alpha"),
        ("api", "gamma"),
    ] {
        assert_eq!(
            at(&format!(r#"lb_backend_up{{pool="{pool}",backend="{b}"}}"#)),
            1.0
        );
    }
    for k in m.keys().filter(|k| k.starts_with("lb_backend_")) {
        assert!(k.contains("pool=\"") && k.contains("backend=\""), "{k}");
    }

    // Admin: the short form is ambiguous for "alpha" and changes nothing.
    for action in ["drain", "disable", "enable"] {
        let (code, body) = request(admin, "POST", &format!("/backends/alpha/{action}"));
        assert_eq!(code, 409, "{action}: {body}");
        assert!(
            body.contains("web") && body.contains("api") && body.contains("/pools/POOL/"),
            "{body}"
        );
    }
    let st = status(admin);
    assert_eq!(pool_backend(&st, "web", "alpha")["state"], "up");
    assert_eq!(pool_backend(&st, "api", "alpha")["state"], "up");

    // By pool path: drain api's alpha only.
    let (code, body) = request(admin, "POST", "/pools/api/backends/alpha/drain");
    assert_eq!(code, 200, "{body}");
    let b: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (&b["pool"], &b["name"], &b["state"]),
        (
            &Value::from("api"),
            &Value::from("alpha"),
            &Value::from("draining")
        ),
        "{body}"
    );
    let st = status(admin);
    assert_eq!(pool_backend(&st, "api", "alpha")["state"], "draining");
    assert_eq!(pool_backend(&st, "web", "alpha")["state"], "up");
    for (ip, _) in by_ip.iter().take(8) {
        assert_eq!(get_from(*ip, api).unwrap(), "api-g", "{ip}");
    }
    let seq: Vec<String> = (0..4).map(|_| who(&http_get(web).unwrap())).collect();
    assert!(seq.windows(2).all(|w| w[0] != w[1]), "{seq:?}");

    // The short form works for a name in one pool.
    let (code, body) = request(admin, "POST", "/backends/beta/disable");
    assert_eq!(code, 200, "{body}");
    let b: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (&b["pool"], &b["state"]),
        (&"web".into(), &"disabled".into())
    );
    for _ in 0..4 {
        assert_eq!(who(&http_get(web).unwrap()), "web-a");
    }
    let m = metrics(admin);
    assert_eq!(m[r#"lb_backend_up{pool="api",backend="alpha"}"#], 0.0);
    assert_eq!(m[r#"lb_backend_up{pool="web",backend="alpha"}"#], 1.0);
    assert_eq!(m[r#"lb_backend_up{pool="web",backend="beta"}"#], 0.0);
    assert_eq!(m[r#"lb_backend_up{pool="api",backend="gamma"}"#], 1.0);

    // Wrong pool, wrong method.
    let (code, body) = request(admin, "POST", "/pools/nope/backends/alpha/drain");
    assert_eq!(code, 404, "{body}");
    let (code, body) = request(admin, "POST", "/pools/web/backends/gamma/drain");
    assert_eq!(code, 404, "{body}");
    let (code, _) = request(admin, "GET", "/pools/api/backends/alpha/drain");
    assert_eq!(code, 405);

    // Enable both again: each IP goes back to its backend, web takes turns again.
    let (code, body) = request(admin, "POST", "/pools/api/backends/alpha/enable");
    assert_eq!(code, 200, "{body}");
    let (code, body) = request(admin, "POST", "/backends/beta/enable");
    assert_eq!(code, 200, "{body}");
    // A backend enabled again is down until its checks pass (none ran while disabled).
    for (pool, b) in [("api", "alpha"), ("web", "beta")] {
        assert!(
            wait_until(Duration::from_secs(3), || pool_backend(
                &status(admin),
                pool,
                b
            )["state"]
                == "up"),
            "{pool}/{b}: {:#}",
            status(admin)
        );
    }
    for (ip, who) in &by_ip {
        assert_eq!(get_from(*ip, api).unwrap(), *who, "{ip}");
    }
    let seq: Vec<String> = (0..4).map(|_| who(&http_get(web).unwrap())).collect();
    assert!(seq.windows(2).all(|w| w[0] != w[1]), "{seq:?}");
}

// ---------------------------------------------------------------------------------------
// SNI.
// ---------------------------------------------------------------------------------------

/// Whether `openssl` is on the PATH; prints why the test is skipped if not.
fn have_openssl(test: &str) -> bool {
    let found = Command::new("which")
        .arg("openssl")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        eprintln!("SKIPPED {test}: `which openssl` found no openssl binary (needed for TLS backends and clients)");
    }
    found
}

/// A self-signed certificate for `/CN=cn` in `dir`; returns (cert, key).
fn make_cert(dir: &Path, cn: &str) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join(format!("{cn}.crt")), dir.join(format!("{cn}.key")));
    let out = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .arg("ec_paramgen_curve:prime256v1")
        .args(["-nodes", "-days", "2", "-subj", &format!("/CN={cn}")])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl req: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert, key)
}

/// A TLS backend on `port` (`openssl s_server -www`, a certificate for `/CN=cn`): it
/// answers `GET /` inside the TLS session with `HTTP/1.0 200 ok` and a status page.
fn tls_server(dir: &Path, port: u16, cn: &str) -> Proc {
    let (cert, key) = make_cert(dir, cn);
    let accept = format!("127.0.0.1:{port}");
    let p = Proc::spawn(
        "openssl",
        &[
            "s_server",
            "-accept",
            &accept,
            "-cert",
            cert.to_str().unwrap(),
            "-key",
            key.to_str().unwrap(),
            "-www",
            "-quiet",
        ],
        dir,
        &format!("s_server-{cn}"),
    );
    assert!(
        wait_listening(port, Duration::from_secs(10)),
        "s_server {cn}: {}",
        p.log_text()
    );
    p
}

/// What an `openssl s_client` session through the load balancer saw.
struct TlsSession {
    /// Its stdout and stderr.
    out: String,
}

impl TlsSession {
    /// The CN of the certificate the client was shown (`subject=CN = NAME`).
    fn cn(&self) -> Option<String> {
        let subject = self.out.lines().find(|l| l.starts_with("subject="))?;
        let compact = subject.replace(' ', "");
        compact
            .rsplit_once("CN=")
            .map(|(_, cn)| cn.split([',', '/']).next().unwrap_or("").to_string())
    }

    /// Whether the backend's answer came back inside the session.
    fn answered(&self) -> bool {
        self.out.contains("HTTP/1.0 200 ok")
    }
}

static SESSIONS: AtomicUsize = AtomicUsize::new(0);

/// Opens a TLS session to `port` with `openssl s_client`, sending `server_name` (or none),
/// sends `GET /` inside it and reads until the server closes (at most 10 s).
fn s_client(dir: &Path, port: u16, server_name: Option<&str>) -> TlsSession {
    let n = SESSIONS.fetch_add(1, Ordering::Relaxed);
    let out_path = dir.join(format!("s_client-{n}.out"));
    let connect = format!("127.0.0.1:{port}");
    let mut args = vec!["s_client", "-connect", &connect, "-ign_eof"];
    match server_name {
        Some(name) => args.extend(["-servername", name]),
        None => args.push("-noservername"),
    }
    let out = std::fs::File::create(&out_path).unwrap();
    let mut child = Command::new("openssl")
        .args(&args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    // A closed connection may end s_client before it reads this: ignore the error.
    let _ = child
        .stdin
        .take()
        .unwrap()
        .write_all(b"GET / HTTP/1.0\r\n\r\n");
    let end = Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "s_client {args:?} did not end: {}",
                std::fs::read_to_string(&out_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    TlsSession {
        out: std::fs::read_to_string(&out_path).unwrap_or_default(),
    }
}

/// Sends `payload` to `port`, half-closes and returns every byte that comes back.
fn echo_through(port: u16, payload: &[u8]) -> Vec<u8> {
    let s = TcpStream::connect_timeout(&addr(port), Duration::from_secs(2)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut w = s.try_clone().unwrap();
    let data = payload.to_vec();
    let writer = std::thread::spawn(move || {
        w.write_all(&data).unwrap();
        w.shutdown(Shutdown::Write).unwrap();
    });
    let mut out = Vec::new();
    (&s).read_to_end(&mut out).unwrap();
    writer.join().unwrap();
    out
}

#[test]
fn sni_routes_tls_by_server_name_end_to_end() {
    if !have_openssl("sni_routes_tls_by_server_name_end_to_end") {
        return;
    }
    let dir = TempDir::new("svc-sni");
    let [pa, pi, pw, pd, pe] = free_ports(5)[..] else {
        unreachable!()
    };
    let _tls: Vec<Proc> = [
        (pa, "api-backend"),
        (pi, "internal-backend"),
        (pw, "wide-backend"),
        (pd, "default-backend"),
    ]
    .iter()
    .map(|&(p, cn)| tls_server(&dir.0, p, cn))
    .collect();
    let _echo = start_server(&dir.0, pe, "echo", true);
    let checks = r#""health_check":{"interval":"200ms","timeout":"200ms"}"#;
    let config = format!(
        r#"{{"listeners":[
              {{"name":"tls","listen":"127.0.0.1:0","pool":"default",
                "sni":{{"api.example.com":"api","*.internal.example.com":"internal",
                        "*.example.com":"wide"}}}},
              {{"name":"mixed","listen":"127.0.0.1:0","pool":"echo",
                "sni":{{"api.example.com":"api"}}}},
              {{"name":"strict","listen":"127.0.0.1:0","sni":{{"api.example.com":"api"}}}}],
            "pools":{{"api":{{"backends":[{}],{checks}}},
                      "internal":{{"backends":[{}],{checks}}},
                      "wide":{{"backends":[{}],{checks}}},
                      "default":{{"backends":[{}],{checks}}},
                      "echo":{{"backends":[{}],{checks}}}}},
            "admin":"127.0.0.1:0"}}"#,
        entry("api-1", pa),
        entry("internal-1", pi),
        entry("wide-1", pw),
        entry("default-1", pd),
        entry("echo-1", pe),
    );
    let (lb, _path) = start(&dir, &config);
    let tls = listener_port(&lb, "tls");
    let mixed = listener_port(&lb, "mixed");
    let strict = listener_port(&lb, "strict");
    let admin = admin_port(&lb);
    lb.wait_up(5);

    // On `tls`: exact (in any case), the longest wildcard, unknown and no name.
    for (name, want) in [
        (Some("api.example.com"), "api-backend"),
        (Some("API.Example.COM"), "api-backend"),
        (Some("db.internal.example.com"), "internal-backend"),
        (Some("a.b.internal.example.com"), "internal-backend"),
        // `*.internal.example.com` needs a label in front; `*.example.com` matches.
        (Some("internal.example.com"), "wide-backend"),
        (Some("www.example.com"), "wide-backend"),
        (Some("unknown.test"), "default-backend"),
        (Some("example.com"), "default-backend"),
        (None, "default-backend"),
    ] {
        let s = s_client(&dir.0, tls, name);
        // The client sees the backend's own certificate and its answer: TLS end to end.
        assert_eq!(
            s.cn().as_deref(),
            Some(want),
            "{name:?}: {}\nload balancer: {}",
            s.out,
            lb.log_text()
        );
        assert!(s.answered(), "{name:?}: no answer: {}", s.out);
    }

    // On `mixed`: TLS still routes by name; plain TCP and garbage that starts like a TLS
    // record reach the default (echo) pool with every byte.
    let s = s_client(&dir.0, mixed, Some("api.example.com"));
    assert_eq!(s.cn().as_deref(), Some("api-backend"), "{}", s.out);
    assert!(s.answered(), "{}", s.out);
    let plain = b"hello, plain TCP: not a ClientHello\r\n".to_vec();
    assert_eq!(echo_through(mixed, &plain), plain);
    // A handshake record header announcing 16000 bytes, then 40000 bytes of noise: no
    // server name within 16 KiB, so the whole stream goes to the default pool unchanged.
    let mut noise = vec![0x16, 0x03, 0x01, 0x3e, 0x80];
    let mut x: u32 = 0x1234_5678;
    noise.extend((0..40_000).map(|_| {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        x as u8
    }));
    let back = echo_through(mixed, &noise);
    assert!(
        back == noise,
        "{} of {} bytes back",
        back.len(),
        noise.len()
    );

    // On `strict` (no default pool): a known name goes through, others are closed.
    let s = s_client(&dir.0, strict, Some("api.example.com"));
    assert_eq!(s.cn().as_deref(), Some("api-backend"), "{}", s.out);
    assert!(s.answered(), "{}", s.out);
    for name in [Some("unknown.test"), None] {
        let s = s_client(&dir.0, strict, name);
        assert_eq!(s.cn(), None, "{name:?} was served: {}", s.out);
        assert!(!s.answered(), "{name:?} was served: {}", s.out);
    }

    wait_idle(admin);
    let st = status(admin);
    let l = named(&st, "listeners", "strict");
    assert_eq!(l["rejected"]["no_route"], 2, "{l:#}");
    assert_eq!(l["pool"], Value::Null, "{l:#}");
    assert_eq!(
        l["sni"],
        serde_json::json!({"api.example.com": "api"}),
        "{l:#}"
    );
    for name in ["tls", "mixed"] {
        assert_eq!(
            named(&st, "listeners", name)["rejected"]["no_route"],
            0,
            "{st:#}"
        );
    }
    assert_eq!(named(&st, "listeners", "tls")["pool"], "default");
    // Every client reached exactly the backend it was routed to (probes are not counted).
    for (pool, backend, n) in [
        ("api", "api-1", 4),
        ("internal", "internal-1", 2),
        ("wide", "wide-1", 2),
        ("default", "default-1", 3),
        ("echo", "echo-1", 2),
    ] {
        assert_eq!(
            pool_backend(&st, pool, backend)["connections_total"],
            n,
            "{pool}: {st:#}"
        );
    }
    let m = metrics(admin);
    assert_eq!(
        m[r#"lb_connections_rejected_total{listener="strict",reason="no_route"}"#],
        2.0
    );
    assert_eq!(
        m[r#"lb_connections_rejected_total{listener="tls",reason="no_route"}"#],
        0.0
    );
    // The connection log names the server name and the pool it chose (a line comes when
    // its connection's task ends, after the counts above).
    let closed = |words: &[&str]| {
        wait_until(Duration::from_secs(3), || {
            lb.log_text()
                .lines()
                .any(|l| l.contains("connection closed") && words.iter().all(|w| l.contains(w)))
        })
    };
    for words in [
        &[
            "listener=tls",
            "pool=internal",
            "db.internal.example.com",
            "backend=internal-1",
        ][..],
        &["listener=strict", "pool=-", "unknown.test", "no_route"],
    ] {
        assert!(closed(words), "no line with {words:?}: {}", lb.log_text());
    }
}

// ---------------------------------------------------------------------------------------
// Reloads.
// ---------------------------------------------------------------------------------------

/// `n` distinct free ports.
fn free_ports(n: usize) -> Vec<u16> {
    let mut ports = BTreeSet::new();
    while ports.len() < n {
        ports.insert(free_port());
    }
    ports.into_iter().collect()
}

/// Opens a keep-alive HTTP connection and returns it with who answered its first request.
fn hold(port: u16) -> (TcpStream, String) {
    let mut s = TcpStream::connect_timeout(&addr(port), Duration::from_secs(2)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let who = ask(&mut s);
    (s, who)
}

#[test]
fn a_reload_removes_and_adds_listeners_and_the_kept_one_refuses_no_one() {
    let dir = TempDir::new("svc-reload");
    let [p_old, p_steady, p_stays, p_new] = free_ports(4)[..] else {
        unreachable!()
    };
    let backend_ports = free_ports(4);
    let _servers: Vec<Proc> = backend_ports
        .iter()
        .zip(["old-1", "steady-1", "steady-2", "new-1"])
        .map(|(&p, n)| start_server(&dir.0, p, n, false))
        .collect();
    let pool = |name: &str, backends: &[(&str, u16)]| {
        let list: Vec<String> = backends.iter().map(|(n, p)| entry(n, *p)).collect();
        format!(r#""{name}":{{"backends":[{}],{FAST}}}"#, list.join(","))
    };
    let listener = |name: &str, port: u16, pool: &str| {
        format!(r#"{{"name":"{name}","listen":"127.0.0.1:{port}","pool":"{pool}"}}"#)
    };
    let old_pool = pool("old", &[("old-1", backend_ports[0])]);
    let steady_pool = pool(
        "steady",
        &[
            ("steady-1", backend_ports[1]),
            ("steady-2", backend_ports[2]),
        ],
    );
    let new_pool = pool("new", &[("new-1", backend_ports[3])]);
    let before = format!(
        r#"{{"listeners":[{},{},{}],"pools":{{{old_pool},{steady_pool}}},"admin":"127.0.0.1:0"}}"#,
        listener("old", p_old, "old"),
        listener("steady", p_steady, "steady"),
        listener("stays", p_stays, "steady"),
    );
    // `old` goes, `new` comes, `stays` keeps its address but routes to the new pool.
    let after = format!(
        r#"{{"listeners":[{},{},{}],"pools":{{{steady_pool},{new_pool}}},"admin":"127.0.0.1:0"}}"#,
        listener("steady", p_steady, "steady"),
        listener("stays", p_stays, "new"),
        listener("new", p_new, "new"),
    );
    let (lb, path) = start(&dir, &before);
    listener_port(&lb, "steady");
    let admin = admin_port(&lb);
    lb.wait_up(3);
    assert!(refused(p_new), "something listens on {p_new} already");
    assert!(who(&http_get(p_stays).unwrap()).starts_with("steady-"));
    // A connection to `old` opened before the reload.
    let (mut held, first) = hold(p_old);
    assert_eq!(first, "old-1");

    // Two clients connect to `steady` back to back through the reload (at most 3 s).
    let stop = Arc::new(AtomicBool::new(false));
    let spans: Arc<Mutex<Vec<(Instant, Instant)>>> = Arc::default();
    let failures: Arc<Mutex<Vec<String>>> = Arc::default();
    let clients: Vec<_> = (0..2)
        .map(|_| {
            let (stop, spans, failures) = (stop.clone(), spans.clone(), failures.clone());
            std::thread::spawn(move || {
                let until = Instant::now() + Duration::from_secs(3);
                while !stop.load(Ordering::Relaxed) && Instant::now() < until {
                    let start = Instant::now();
                    match http_get(p_steady) {
                        Ok(body) if who(&body).starts_with("steady-") => {
                            spans.lock().unwrap().push((start, Instant::now()))
                        }
                        Ok(body) => failures.lock().unwrap().push(format!("answer {body:?}")),
                        Err(e) => failures.lock().unwrap().push(e.to_string()),
                    }
                }
            })
        })
        .collect();
    let served_since = |t: Instant| spans.lock().unwrap().iter().filter(|s| s.0 > t).count();
    let t0 = Instant::now();
    assert!(
        wait_until(Duration::from_secs(2), || served_since(t0) >= 4),
        "clients stalled before the reload: {:?}",
        failures.lock().unwrap()
    );
    let hup = Instant::now();
    let seen = reload(&lb, &path, &after, "config reloaded", 1);
    assert!(
        wait_until(Duration::from_secs(2), || served_since(seen) >= 4),
        "clients stalled after the reload: {:?}",
        failures.lock().unwrap()
    );
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    let failures = failures.lock().unwrap();
    assert!(
        failures.is_empty(),
        "clients of the kept listener failed: {failures:?}\n{}",
        lb.log_text()
    );
    let spans = spans.lock().unwrap();
    let overlapping = spans.iter().filter(|s| s.0 <= seen && hup <= s.1).count();
    assert!(
        spans.iter().any(|s| s.1 < hup) && spans.iter().any(|s| s.0 > seen) && overlapping > 0,
        "the reload did not happen while clients were connecting"
    );
    eprintln!(
        "{} requests to the kept listener, {overlapping} overlapping the reload, none failed",
        spans.len()
    );

    let log = lb.log_text();
    for line in [
        format!("SIGHUP: stopped listening on 127.0.0.1:{p_old}"),
        format!("SIGHUP: listening on 127.0.0.1:{p_new}"),
        "listeners added: [new], removed: [old (1 open connection(s) drain)]".to_string(),
        "pools added: [new], removed: [old (1 open connection(s) drain)]".to_string(),
    ] {
        assert!(log.contains(&line), "no {line:?} in {log}");
    }
    assert!(
        !log.contains(&format!("stopped listening on 127.0.0.1:{p_steady}"))
            && !log.contains(&format!("stopped listening on 127.0.0.1:{p_stays}")),
        "{log}"
    );
    // The removed listener's port refuses new clients.
    assert!(
        wait_until(Duration::from_secs(3), || refused(p_old)),
        "{p_old} still accepts after its listener was removed"
    );
    for _ in 0..3 {
        assert!(refused(p_old), "{p_old} accepted again");
    }
    // The added one serves (once its pool's backend is up); the kept one with a new pool
    // routes there, on the same socket.
    assert!(
        lb.wait_log("backend new-1 is up", 1, Duration::from_secs(5)),
        "{}",
        lb.log_text()
    );
    assert_eq!(who(&http_get(p_new).unwrap()), "new-1");
    assert_eq!(who(&http_get(p_stays).unwrap()), "new-1");
    // The connection opened before the reload still works, to its removed pool.
    assert_eq!(ask(&mut held), "old-1");
    let st = status(admin);
    let old = named(&st, "listeners", "old");
    assert_eq!(
        (&old["removed"], &old["active_connections"]),
        (&Value::from(true), &Value::from(1)),
        "{st:#}"
    );
    assert_eq!(
        named(&st, "listeners", "new")["listen"],
        format!("127.0.0.1:{p_new}")
    );
    // Once it ends, the removed listener is gone from /status.
    drop(held);
    assert!(
        wait_until(Duration::from_secs(5), || {
            names(&status(admin), "listeners") == ["steady", "stays", "new"]
        }),
        "{:#}",
        status(admin)
    );
}

#[test]
fn a_reload_whose_new_address_is_taken_is_rejected_and_changes_nothing() {
    let dir = TempDir::new("svc-reload-taken");
    let [p_a, p_b, p_x] = free_ports(3)[..] else {
        unreachable!()
    };
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let p_t = taken.local_addr().unwrap().port();
    let bp = free_ports(3);
    let _servers: Vec<Proc> = bp
        .iter()
        .zip(["a-1", "b-1", "c-1"])
        .map(|(&p, n)| start_server(&dir.0, p, n, false))
        .collect();
    let before = format!(
        r#"{{"listeners":[{{"name":"a","listen":"127.0.0.1:{p_a}","pool":"pa"}},
                          {{"name":"b","listen":"127.0.0.1:{p_b}","pool":"pb"}}],
            "pools":{{"pa":{{"backends":[{}],{FAST}}},"pb":{{"backends":[{}],{FAST}}}}},
            "admin":"127.0.0.1:0"}}"#,
        entry("a-1", bp[0]),
        entry("b-1", bp[1]),
    );
    // Removes `b`, moves `a` to a new pool, adds `x` (free) and `t` (taken).
    let after = format!(
        r#"{{"listeners":[{{"name":"a","listen":"127.0.0.1:{p_a}","pool":"pc"}},
                          {{"name":"x","listen":"127.0.0.1:{p_x}","pool":"pc"}},
                          {{"name":"t","listen":"127.0.0.1:{p_t}","pool":"pc"}}],
            "pools":{{"pc":{{"backends":[{}],{FAST}}}}},
            "admin":"127.0.0.1:0"}}"#,
        entry("c-1", bp[2]),
    );
    let (lb, path) = start(&dir, &before);
    listener_port(&lb, "b");
    let admin = admin_port(&lb);
    lb.wait_up(2);
    reload(&lb, &path, &after, "reload failed", 1);
    let line = format!(
        "SIGHUP: reload failed, still serving the previous config: cannot listen on 127.0.0.1:{p_t}: address already in use"
    );
    assert!(lb.log_text().contains(&line), "{}", lb.log_text());
    assert!(
        !lb.log_text().contains("config reloaded"),
        "{}",
        lb.log_text()
    );
    // Nothing changed: both listeners serve their pools, `x`'s address was let go.
    for _ in 0..3 {
        assert_eq!(who(&http_get(p_a).unwrap()), "a-1");
        assert_eq!(who(&http_get(p_b).unwrap()), "b-1");
    }
    assert!(refused(p_x), "the rejected reload left {p_x} bound");
    let st = status(admin);
    assert_eq!(names(&st, "listeners"), ["a", "b"], "{st:#}");
    assert_eq!(names(&st, "pools"), ["pa", "pb"], "{st:#}");
    assert!(
        st["listeners"]
            .as_array()
            .unwrap()
            .iter()
            .all(|l| l["removed"] == false),
        "{st:#}"
    );

    // Once the address is free, it reloads. (Without `x`: a reload adding two listeners
    // at once is a known bug, see `a_reload_that_adds_two_listeners_serves_both`.)
    drop(taken);
    let after = after.replace(
        &format!(r#"{{"name":"x","listen":"127.0.0.1:{p_x}","pool":"pc"}},"#),
        "",
    );
    assert!(!after.contains(r#""x""#), "{after}");
    reload(&lb, &path, &after, "config reloaded", 1);
    assert!(
        lb.wait_log("backend c-1 is up", 1, Duration::from_secs(5)),
        "{}",
        lb.log_text()
    );
    for port in [p_a, p_t] {
        assert_eq!(who(&http_get(port).unwrap()), "c-1", "{port}");
    }
    assert!(
        wait_until(Duration::from_secs(3), || refused(p_b)),
        "{p_b} still accepts"
    );
}

/// A reload may add several listeners at once.
#[test]
fn a_reload_that_adds_two_listeners_serves_both() {
    let dir = TempDir::new("svc-reload-two");
    let [p_a, p_b, p_c] = free_ports(3)[..] else {
        unreachable!()
    };
    let bp = free_port();
    let _server = start_server(&dir.0, bp, "s-1", false);
    let listener = |name: &str, port: u16| {
        format!(r#"{{"name":"{name}","listen":"127.0.0.1:{port}","pool":"p"}}"#)
    };
    let pools = format!(
        r#""pools":{{"p":{{"backends":[{}],{FAST}}}}}"#,
        entry("s-1", bp)
    );
    let before = format!(r#"{{"listeners":[{}],{pools}}}"#, listener("a", p_a));
    let after = format!(
        r#"{{"listeners":[{},{},{}],{pools}}}"#,
        listener("a", p_a),
        listener("b", p_b),
        listener("c", p_c)
    );
    let (mut lb, path) = start(&dir, &before);
    listener_port(&lb, "a");
    lb.wait_up(1);
    std::fs::write(&path, &after).unwrap();
    lb.signal("HUP");
    let reloaded = lb.wait_log("config reloaded", 1, Duration::from_secs(5));
    let exited = lb.wait_exit(Duration::from_millis(100));
    assert!(
        reloaded && exited.is_none(),
        "exited: {exited:?}\n{}",
        lb.log_text()
    );
    for port in [p_a, p_b, p_c] {
        assert_eq!(who(&http_get(port).unwrap()), "s-1", "{port}");
    }
}

/// Listeners on ephemeral ports (`127.0.0.1:0`, as tests and quick trials write them):
/// removing one of two must close its own socket, not the other's.
#[test]
fn ephemeral_port_listeners_keep_their_own_sockets_across_a_reload() {
    let dir = TempDir::new("svc-reload-eph");
    let bp = free_ports(2);
    let _servers: Vec<Proc> = bp
        .iter()
        .zip(["a-1", "b-1"])
        .map(|(&p, n)| start_server(&dir.0, p, n, false))
        .collect();
    let l_b = r#"{"name":"b","listen":"127.0.0.1:0","pool":"pb"}"#;
    let pool_b = format!(r#""pb":{{"backends":[{}],{FAST}}}"#, entry("b-1", bp[1]));
    let before = format!(
        r#"{{"listeners":[{{"name":"a","listen":"127.0.0.1:0","pool":"pa"}},{l_b}],
            "pools":{{"pa":{{"backends":[{}],{FAST}}},{pool_b}}}}}"#,
        entry("a-1", bp[0]),
    );
    let after = format!(r#"{{"listeners":[{l_b}],"pools":{{{pool_b}}}}}"#);
    let (lb, path) = start(&dir, &before);
    let (p_a, p_b) = (listener_port(&lb, "a"), listener_port(&lb, "b"));
    lb.wait_up(2);
    assert_eq!(who(&http_get(p_b).unwrap()), "b-1");
    reload(&lb, &path, &after, "config reloaded", 1);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        http_get(p_b).map(|b| who(&b)).map_err(|e| e.to_string()),
        Ok("b-1".to_string()),
        "listener b's own port"
    );
    assert!(
        refused(p_a),
        "removed listener a's port {p_a} still accepts"
    );
}

// ---------------------------------------------------------------------------------------
// The command line.
// ---------------------------------------------------------------------------------------

fn run(args: &[&str], dir: &Path) -> (Option<i32>, String, String) {
    let out = Command::new(LB)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn port_overrides_the_first_listener_only_and_check_prints_a_line_per_listener() {
    let dir = TempDir::new("svc-cli");
    let [p_first, p_second, p_third, p_cli] = free_ports(4)[..] else {
        unreachable!()
    };
    let bp = free_ports(2);
    let _servers: Vec<Proc> = bp
        .iter()
        .zip(["front-1", "back-1"])
        .map(|(&p, n)| start_server(&dir.0, p, n, false))
        .collect();
    let text = format!(
        r#"{{"listeners":[{{"name":"front","listen":"127.0.0.1:{p_first}","pool":"pf"}},
                          {{"name":"back","listen":"127.0.0.1:{p_second}","pool":"pb"}},
                          {{"name":"tls","listen":"127.0.0.1:{p_third}",
                            "sni":{{"api.example.com":"pb"}}}}],
            "pools":{{"pf":{{"backends":[{}],{FAST}}},
                      "pb":{{"algorithm":"hash","backends":[{}],{FAST}}}}},
            "admin":"127.0.0.1:0"}}"#,
        entry("front-1", bp[0]),
        entry("back-1", bp[1]),
    );
    let path = dir.write("named.json", &text);
    let p = path.to_str().unwrap();

    // --check: one line per listener, the admin address on the last.
    let (code, out, err) = run(&["--check", "--config", p], &dir.0);
    assert_eq!(code, Some(0), "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    let prefix = format!("{p}: ok: ");
    // Each line starts with its listener and says how it routes (the wording around
    // that is free).
    for (line, (head, words)) in lines.iter().zip([
        (
            format!("listener front on 127.0.0.1:{p_first},"),
            &["pool pf", "round_robin over 1 backend"][..],
        ),
        (
            format!("listener back on 127.0.0.1:{p_second},"),
            &["pool pb", "hash over 1 backend"],
        ),
        (
            format!("listener tls on 127.0.0.1:{p_third},"),
            &["sni 1 name(s)", "unmatched clients rejected (no_route)"],
        ),
    ]) {
        assert!(
            line.starts_with(&format!("{prefix}{head}")) && words.iter().all(|w| line.contains(w)),
            "{line}\nwanted: {head} ... {words:?}"
        );
    }
    assert!(lines[2].ends_with(", admin 127.0.0.1:0"), "{out}");
    assert!(
        !lines[0].contains("admin") && !lines[1].contains("admin"),
        "{out}"
    );

    // PORT overrides the first listener's port, and only that.
    let port = p_cli.to_string();
    let (code, out, err) = run(&[&port, "--check", "--config", p], &dir.0);
    assert_eq!(code, Some(0), "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(
        lines[0].contains(&format!("listener front on 127.0.0.1:{p_cli},")),
        "{out}"
    );
    assert!(
        lines[1].contains(&format!("listener back on 127.0.0.1:{p_second},")),
        "{out}"
    );
    assert!(
        lines[2].contains(&format!("listener tls on 127.0.0.1:{p_third},")),
        "{out}"
    );

    // And for real: front on PORT, the others where the file says.
    let lb = Proc::spawn(LB, &[&port, "--config", p], &dir.0, "lb");
    assert_eq!(listener_port(&lb, "front"), p_cli);
    assert_eq!(listener_port(&lb, "back"), p_second);
    assert_eq!(listener_port(&lb, "tls"), p_third);
    let admin = admin_port(&lb);
    lb.wait_up(2);
    assert_eq!(who(&http_get(p_cli).unwrap()), "front-1");
    assert_eq!(who(&http_get(p_second).unwrap()), "back-1");
    let first = format!("127.0.0.1:{p_first}");
    let log = lb.log_text();
    assert!(
        log.match_indices(&first)
            .all(|(i, _)| log[i + first.len()..].starts_with(|c: char| c.is_ascii_digit())),
        "the first listener's own port is in use: {log}"
    );
    let st = status(admin);
    assert_eq!(st["listen"], format!("127.0.0.1:{p_cli}"), "{st:#}");
    assert_eq!(
        named(&st, "listeners", "front")["listen"],
        format!("127.0.0.1:{p_cli}")
    );
    // A reload reads the file again with the same PORT: nothing moves.
    lb.signal("HUP");
    assert!(
        lb.wait_log("config reloaded", 1, Duration::from_secs(5)),
        "{}",
        lb.log_text()
    );
    assert!(
        !lb.log_text().contains("stopped listening"),
        "{}",
        lb.log_text()
    );
    assert_eq!(who(&http_get(p_cli).unwrap()), "front-1");
    assert_eq!(who(&http_get(p_second).unwrap()), "back-1");
}

#[test]
fn named_config_errors_exit_2_and_name_the_field() {
    let dir = TempDir::new("svc-bad");
    let pool = r#""p":{"backends":[{"address":"127.0.0.1:1"}]}"#;
    let cases = [
        (
            format!(
                r#"{{"listeners":[{{"name":"a","listen":"127.0.0.1:0","pool":"p"}},
                                  {{"name":"b","listen":"127.0.0.1:0","pool":"nope"}}],
                    "pools":{{{pool}}}}}"#
            ),
            r#"bad.json: listeners[1].pool: no pool named "nope" (pools: "p")"#,
        ),
        (
            format!(
                r#"{{"listeners":[{{"name":"d","listen":"127.0.0.1:0","protocol":"udp","pool":"p"}}],
                    "pools":{{{pool}}}}}"#
            ),
            r#"bad.json: listeners[0].protocol: "udp" is not supported yet"#,
        ),
        (
            format!(
                r#"{{"listeners":[{{"listen":"127.0.0.1:0","sni":{{"api.example.com":"q"}}}}],
                    "pools":{{{pool}}}}}"#
            ),
            r#"bad.json: listeners[0].sni.api.example.com: no pool named "q""#,
        ),
        (
            format!(r#"{{"listeners":[{{"listen":"127.0.0.1:0"}}],"pools":{{{pool}}}}}"#),
            "bad.json: listeners[0].pool: missing",
        ),
        (
            format!(
                r#"{{"listeners":[{{"listen":"127.0.0.1:0","pool":"p"}}],
                    "pools":{{{pool},"q":{{"backends":[{{"address":"127.0.0.1:2"}}]}}}}}}"#
            ),
            "bad.json: pools.q: no listener uses this pool",
        ),
        (
            format!(
                r#"{{"listen":"127.0.0.1:0","listeners":[{{"listen":"127.0.0.1:0","pool":"p"}}],
                    "pools":{{{pool}}}}}"#
            ),
            "bad.json: listen: `listen` is a listener setting",
        ),
        (
            format!(
                r#"{{"listeners":[{{"name":"a","listen":"127.0.0.1:7","pool":"p"}},
                                  {{"name":"a","listen":"127.0.0.1:8","pool":"p"}}],
                    "pools":{{{pool}}}}}"#
            ),
            r#"bad.json: listeners[1].name: duplicate listener name "a""#,
        ),
        (
            format!(
                r#"{{"listeners":[{{"name":"a","listen":"127.0.0.1:7","pool":"p"}},
                                  {{"name":"b","listen":"127.0.0.1:7","pool":"p"}}],
                    "pools":{{{pool}}}}}"#
            ),
            "bad.json: listeners[1].listen: 127.0.0.1:7 is also listeners[0].listen",
        ),
        (
            format!(
                r#"{{"listeners":[{{"listen":"127.0.0.1:0","pool":"p",
                                    "sni":{{"*.*.example.com":"p"}}}}],
                    "pools":{{{pool}}}}}"#
            ),
            "bad.json: listeners[0].sni.*.*.example.com:",
        ),
        (
            r#"{"listeners":[{"listen":"127.0.0.1:0","pool":"p"}],
                "pools":{"p":{"backends":[{"name":"x","address":"127.0.0.1:1"},
                                          {"name":"x","address":"127.0.0.1:2"}]}}}"#
                .to_string(),
            r#"bad.json: pools.p.backends[1].name: duplicate name "x""#,
        ),
        (
            format!(r#"{{"pools":{{{pool}}}}}"#),
            "bad.json: listeners: missing",
        ),
    ];
    for (text, expected) in &cases {
        let p = dir.write("bad.json", text);
        // --check and a real start fail the same way.
        for check in [true, false] {
            let mut args = vec!["--config", p.to_str().unwrap()];
            if check {
                args.push("--check");
            }
            let (code, out, err) = run(&args, &dir.0);
            assert_eq!(code, Some(2), "{text}: {out}{err}");
            assert!(
                err.contains(expected),
                "{text}\nwanted: {expected}\ngot: {err}"
            );
        }
    }
}
