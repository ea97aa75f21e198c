//! Protection and connection handling through the real binary: `per_client` limits
//! (concurrent connections and rate, per client IP, from many loopback source addresses)
//! and `on_backend_down`.
// These tests drive real processes on the real clock: the driver's determinism lint
// (lb-runtime/clippy.toml) is for the driver, not for them.
#![allow(clippy::disallowed_methods)]

mod common;
use common::*;
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A connection from `src` (a 127.0.0.0/8 address) to the load balancer on `port`.
fn connect_from(src: Ipv4Addr, port: u16) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.bind(&SocketAddr::from((src, 0)).into()).unwrap();
    socket
        .connect_timeout(&addr(port).into(), Duration::from_secs(2))
        .unwrap();
    let s: TcpStream = socket.into();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    s
}

/// Whether the load balancer serves `s`: an echo of one line comes back (false when the
/// connection is closed without an answer).
fn served(s: &mut TcpStream) -> bool {
    if s.write_all(b"ping\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 5];
    let mut got = 0;
    while got < buf.len() {
        match s.read(&mut buf[got..]) {
            Ok(0) => return false,
            Ok(n) => got += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut => {
                panic!("neither served nor closed")
            }
            Err(_) => return false,
        }
    }
    &buf == b"ping\n"
}

fn echo_lb(dir: &TempDir, extra: &str) -> (Vec<Proc>, Proc, u16) {
    let port = free_port();
    let server = start_server(&dir.0, port, "echo", true);
    let (lb, lb_port) = start_lb(
        &dir.0,
        &config(
            &[port],
            &format!(r#","health_check":{{"start_up":true}}{extra}"#),
        ),
    );
    (vec![server], lb, lb_port)
}

#[test]
fn per_client_max_connections_refuses_a_clients_extra_connections_only() {
    let dir = TempDir::new("per-client-max");
    let (_servers, lb, port) = echo_lb(&dir, r#","per_client":{"max_connections":2}"#);
    let a = Ipv4Addr::new(127, 0, 0, 2);
    let mut held: Vec<TcpStream> = (0..2).map(|_| connect_from(a, port)).collect();
    for s in &mut held {
        assert!(served(s), "{}", lb.log_text());
    }
    // A third from the same address is closed at once, unanswered...
    let mut third = connect_from(a, port);
    assert!(
        !served(&mut third),
        "a third connection from {a} was served"
    );
    // ...while another address is not affected.
    let mut other = connect_from(Ipv4Addr::new(127, 0, 0, 3), port);
    assert!(served(&mut other));
    // Once one of the two closes, there is room again.
    drop(held.pop());
    assert!(
        lb.wait_log("end=completed", 1, Duration::from_secs(2)),
        "{}",
        lb.log_text()
    );
    let mut again = connect_from(a, port);
    assert!(served(&mut again), "{}", lb.log_text());
    assert!(lb.log_text().contains("end=rejected_per_client_limit"));
}

#[test]
fn per_client_connection_rate_is_a_token_bucket_per_address() {
    let dir = TempDir::new("per-client-rate");
    let (_servers, lb, port) = echo_lb(&dir, r#","per_client":{"connection_rate":"5/s"}"#);
    let a = Ipv4Addr::new(127, 0, 0, 4);
    let burst = || {
        let start = Instant::now();
        let n = (0..10)
            .filter(|_| served(&mut connect_from(a, port)))
            .count();
        (n, start.elapsed())
    };
    let (n, took) = burst();
    // The burst of 5, plus one more token per 200 ms the burst itself took.
    let extra = (took.as_millis() / 200) as usize;
    assert!(
        n >= 5 && n <= 5 + extra,
        "{n} of 10 served in {took:?}: {}",
        lb.log_text()
    );
    // Others are not affected, however many.
    for i in 0..20u8 {
        assert!(served(&mut connect_from(
            Ipv4Addr::new(127, 0, 1, i + 1),
            port
        )));
    }
    // A second later the bucket is full again.
    std::thread::sleep(Duration::from_millis(1100));
    let (n, took) = burst();
    let extra = (took.as_millis() / 200) as usize;
    assert!(n >= 5 && n <= 5 + extra, "{n} of 10 after a pause");
}

#[test]
fn per_client_limits_apply_to_each_of_many_addresses() {
    let dir = TempDir::new("per-client-many");
    let (_servers, lb, port) = echo_lb(
        &dir,
        r#","per_client":{"max_connections":1,"connection_rate":"1/h"}"#,
    );
    // 300 addresses, one connection each: every one is served...
    let mut held = Vec::new();
    for i in 0..300u32 {
        let src = Ipv4Addr::new(127, 2, (i / 250) as u8, (i % 250) as u8 + 1);
        let mut s = connect_from(src, port);
        assert!(served(&mut s), "{src}: {}", lb.log_text());
        held.push((src, s));
    }
    // ...and a second from any of them is not (its one connection is open; its rate spent).
    for (src, _) in held.iter().step_by(37) {
        assert!(!served(&mut connect_from(*src, port)), "{src}");
    }
}

/// A backend that echoes on every connection it accepted, until told to stop listening:
/// then new connects (health probes) are refused while the connections already open go on.
fn backend_that_stops_listening() -> (u16, Arc<AtomicBool>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    std::thread::spawn(move || {
        listener.set_nonblocking(true).unwrap();
        let end = Instant::now() + Duration::from_secs(30);
        while !flag.load(Ordering::Acquire) && Instant::now() < end {
            match listener.accept() {
                Ok((mut s, _)) => {
                    s.set_nonblocking(false).unwrap();
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 1024];
                        while let Ok(n) = s.read(&mut buf) {
                            if n == 0 || s.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                    });
                }
                Err(_) => std::thread::sleep(Duration::from_millis(2)),
            }
        }
        // Dropping the listener: new connects are refused from now on.
    });
    (port, stop)
}

fn held_connection_when_checks_fail(on_backend_down: &str) -> (TempDir, Proc, TcpStream, bool) {
    let dir = TempDir::new("backend-down");
    let (backend, stop) = backend_that_stops_listening();
    let extra = format!(
        r#","health_check":{{"interval":"100ms","timeout":"100ms","rise":1,"fall":2}}{on_backend_down}"#
    );
    let (lb, port) = start_lb(&dir.0, &config(&[backend], &extra));
    lb.wait_up(1);
    let mut held = connect_from(Ipv4Addr::LOCALHOST, port);
    assert!(served(&mut held));
    stop.store(true, Ordering::Release);
    assert!(
        lb.wait_log(" is down", 1, Duration::from_secs(3)),
        "{}",
        lb.log_text()
    );
    std::thread::sleep(Duration::from_millis(100));
    let alive = served(&mut held);
    (dir, lb, held, alive)
}

#[test]
fn on_backend_down_close_resets_the_connections_of_a_backend_its_checks_take_down() {
    let (_dir, lb, _held, alive) =
        held_connection_when_checks_fail(r#","on_backend_down":"close""#);
    assert!(!alive, "the connection survived: {}", lb.log_text());
    assert!(
        lb.log_text().contains("end=backend_down"),
        "{}",
        lb.log_text()
    );
}

#[test]
fn by_default_the_connections_of_a_backend_marked_down_go_on() {
    let (_dir, lb, _held, alive) = held_connection_when_checks_fail("");
    assert!(alive, "the connection was cut: {}", lb.log_text());
}
