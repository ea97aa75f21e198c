//! SIGHUP reloads the config through the real binary: backends come and go by name, open
//! connections to a removed backend go on, an invalid file changes nothing, and the
//! listening socket never closes.
// These tests drive real processes on the real clock: the driver's determinism lint
// (lb-runtime/clippy.toml) is for the driver, not for them.
#![allow(clippy::disallowed_methods)]

mod common;
use common::*;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const CHECKS: &str = r#","health_check":{"interval":"100ms","timeout":"100ms"}"#;

/// Rewrites the config file and sends SIGHUP; waits for the `n`th reload line.
fn reload(lb: &Proc, path: &std::path::Path, text: &str, n: usize) {
    std::fs::write(path, text).unwrap();
    lb.signal("HUP");
    assert!(
        lb.wait_log("SIGHUP: ", n, Duration::from_secs(5)),
        "{}",
        lb.log_text()
    );
}

#[test]
fn sighup_swaps_backends_and_open_connections_to_a_removed_one_go_on() {
    let dir = TempDir::new("reload-swap");
    let (_servers, ports) = servers(&dir, 3);
    let path = dir.write("config.json", &config(&ports[..2], CHECKS));
    let lb = Proc::spawn(LB, &["--config", path.to_str().unwrap()], &dir.0, "lb");
    let port = lb.wait_lb_port();
    lb.wait_up(2);
    let first = format!("s{}", ports[0]);
    let mut held = TcpStream::connect(addr(port)).unwrap();
    held.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(ask(&mut held), first);

    reload(&lb, &path, &config(&ports[1..], CHECKS), 1);
    let new = format!("s{}", ports[2]);
    assert!(
        lb.wait_log(&format!("backend {new} is up"), 1, Duration::from_secs(5)),
        "{}",
        lb.log_text()
    );
    let log = lb.log_text();
    assert!(log.contains("pool default: 1 backend(s) kept"), "{log}");
    assert!(log.contains(&format!("added: [{new}]")), "{log}");
    assert!(
        log.contains(&format!("removed: [{first} (1 open connection(s) drain)]")),
        "{log}"
    );
    assert!(
        lb.wait_log(
            &format!("backend {first} is draining"),
            1,
            Duration::from_secs(2)
        ),
        "{}",
        lb.log_text()
    );
    let names: Vec<String> = (0..6).map(|_| who(&http_get(port).unwrap())).collect();
    assert!(
        !names.contains(&first),
        "a removed backend got a connection: {names:?}"
    );
    assert!(names.contains(&new), "{names:?}");
    // The connection opened before the reload still talks to the removed backend.
    assert_eq!(ask(&mut held), first);
}

#[test]
fn an_invalid_config_on_sighup_changes_nothing() {
    let dir = TempDir::new("reload-bad");
    let (_servers, ports) = servers(&dir, 2);
    let good = config(&ports, CHECKS);
    let path = dir.write("config.json", &good);
    let lb = Proc::spawn(LB, &["--config", path.to_str().unwrap()], &dir.0, "lb");
    let port = lb.wait_lb_port();
    lb.wait_up(2);

    reload(
        &lb,
        &path,
        r#"{"backends":[{"address":"127.0.0.1:1","weight":0}]}"#,
        1,
    );
    assert!(
        lb.wait_log(
            "reload failed, still serving the previous config",
            1,
            Duration::from_secs(2)
        ),
        "{}",
        lb.log_text()
    );
    assert!(
        lb.log_text().contains("backends[0].weight"),
        "{}",
        lb.log_text()
    );
    let names: std::collections::BTreeSet<String> =
        (0..4).map(|_| who(&http_get(port).unwrap())).collect();
    assert_eq!(names.len(), 2, "{names:?}");

    // A new listen address that cannot be bound (taken by another socket): the reload is
    // rejected whole, and the old socket keeps serving.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_addr = taken.local_addr().unwrap();
    let moved = good.replace("127.0.0.1:0", &taken_addr.to_string());
    assert_ne!(moved, good);
    reload(&lb, &path, &moved, 2);
    assert!(
        lb.wait_log(
            &format!("reload failed, still serving the previous config: cannot listen on {taken_addr}: address already in use"),
            1,
            Duration::from_secs(2)
        ),
        "{}",
        lb.log_text()
    );
    let names: std::collections::BTreeSet<String> =
        (0..4).map(|_| who(&http_get(port).unwrap())).collect();
    assert_eq!(names.len(), 2, "{names:?}");
}

/// When one client request began and ended.
type Span = (Instant, Instant);

/// What the clients did: when each request began and ended, and the first failure.
#[derive(Default)]
struct Requests {
    spans: Mutex<Vec<Span>>,
    failed: Mutex<Option<String>>,
}

impl Requests {
    /// Waits (up to 5 s) until `n` requests that began after `since` have ended; panics
    /// at once if a client failed.
    fn wait_served(&self, since: Instant, n: usize, lb: &Proc) {
        let end = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(e) = self.failed.lock().unwrap().as_ref() {
                panic!("{e}: {}", lb.log_text());
            }
            if self
                .spans
                .lock()
                .unwrap()
                .iter()
                .filter(|s| s.0 > since)
                .count()
                >= n
            {
                return;
            }
            assert!(
                Instant::now() < end,
                "the clients stalled: {}",
                lb.log_text()
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

#[test]
fn no_client_is_refused_or_cut_during_reloads() {
    let dir = TempDir::new("reload-busy");
    let (_servers, ports) = servers(&dir, 3);
    let a = config(&ports[..2], CHECKS);
    let b = config(&ports[1..], CHECKS);
    let path = dir.write("config.json", &a);
    let lb = Proc::spawn(LB, &["--config", path.to_str().unwrap()], &dir.0, "lb");
    let port = lb.wait_lb_port();
    lb.wait_up(2);
    let stop = Arc::new(AtomicBool::new(false));
    let requests: Arc<Requests> = Arc::default();
    // Two clients, each with one request at a time back to back: at any moment at least
    // one of them has a request open (between two requests a client only records a span).
    let clients: Vec<_> = (0..2)
        .map(|_| {
            let (stop, requests) = (stop.clone(), requests.clone());
            std::thread::spawn(move || {
                let until = Instant::now() + Duration::from_secs(60);
                let mut served = 0;
                while !stop.load(Ordering::Relaxed) && served < 20_000 && Instant::now() < until {
                    let start = Instant::now();
                    if let Err(e) = http_get(port) {
                        let e = format!("request {served} failed: {e}");
                        *requests.failed.lock().unwrap() = Some(e.clone());
                        return Err(e);
                    }
                    requests.spans.lock().unwrap().push((start, Instant::now()));
                    served += 1;
                }
                Ok(served)
            })
        })
        .collect();
    // Each reload: when SIGHUP was sent and when its log line was seen.
    let mut reloads: Vec<Span> = Vec::new();
    let mut last = Instant::now();
    for i in 0..10 {
        // Requests before it: some began after the previous reload was logged.
        requests.wait_served(last, 4, &lb);
        std::fs::write(&path, if i % 2 == 0 { &b } else { &a }).unwrap();
        let hup = Instant::now();
        lb.signal("HUP");
        assert!(
            lb.wait_log("SIGHUP: ", i + 1, Duration::from_secs(5)),
            "{}",
            lb.log_text()
        );
        last = Instant::now();
        reloads.push((hup, last));
        std::thread::sleep(Duration::from_millis(30));
    }
    requests.wait_served(last, 4, &lb);
    stop.store(true, Ordering::Relaxed);
    let mut served = 0;
    for client in clients {
        served += client
            .join()
            .unwrap()
            .unwrap_or_else(|e| panic!("{e}: {}", lb.log_text()));
    }
    assert!(served > 10, "{served}");
    // Every reload happened while clients were connecting: a request was open when SIGHUP
    // was sent and one when its log line was seen; requests also began and ended between
    // the previous reload and this one, and after the last.
    let spans = requests.spans.lock().unwrap();
    let open_at = |t: Instant| spans.iter().filter(|s| s.0 <= t && t <= s.1).count();
    let mut previous = None;
    for (k, &(hup, seen)) in reloads.iter().enumerate() {
        let before = spans
            .iter()
            .filter(|s| previous.is_none_or(|p| s.0 > p) && s.1 < hup)
            .count();
        assert!(before > 0, "reload {k}: no request before it");
        assert!(open_at(hup) > 0, "reload {k}: no request open at SIGHUP");
        assert!(
            open_at(seen) > 0,
            "reload {k}: no request open when it was logged"
        );
        previous = Some(seen);
    }
    let after = spans.iter().filter(|s| s.0 > last).count();
    assert!(after > 0, "no request after the last reload");
    let during: Vec<usize> = reloads
        .iter()
        .map(|&(hup, seen)| spans.iter().filter(|s| s.0 <= seen && hup <= s.1).count())
        .collect();
    eprintln!("{served} requests; requests overlapping each reload: {during:?}");
}
