//! SIGHUP reloads the config through the real binary: backends come and go by name, open
//! connections to a removed backend go on, an invalid file changes nothing, and the
//! listening socket never closes.
// These tests drive real processes on the real clock: the driver's determinism lint
// (lb-runtime/clippy.toml) is for the driver, not for them.
#![allow(clippy::disallowed_methods)]

mod common;
use common::*;
use std::net::TcpStream;
use std::time::Duration;

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
    assert!(log.contains("1 backend(s) kept"), "{log}");
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

    // A new listen address takes a restart: the old socket keeps serving.
    let moved = good.replace("127.0.0.1:0", "127.0.0.1:1");
    reload(&lb, &path, &moved, 2);
    assert!(
        lb.wait_log(
            "listen changed; that takes a restart",
            1,
            Duration::from_secs(2)
        ),
        "{}",
        lb.log_text()
    );
    http_get(port).unwrap();
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
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let client = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut served = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && served < 5_000 {
                if let Err(e) = http_get(port) {
                    return Err(format!("request {served} failed: {e}"));
                }
                served += 1;
            }
            Ok(served)
        })
    };
    for i in 0..10 {
        reload(&lb, &path, if i % 2 == 0 { &b } else { &a }, i + 1);
        std::thread::sleep(Duration::from_millis(30));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let served = client
        .join()
        .unwrap()
        .unwrap_or_else(|e| panic!("{e}: {}", lb.log_text()));
    assert!(served > 10, "{served}");
}
