//! Faults through the real binary, as an operator meets them: each test injects one fault
//! into a running load balancer with real backends on loopback and checks what it promises
//! under it. Every process is stopped by its PID; every wait is bounded.
// These tests drive real processes on the real clock: the driver's determinism lint
// (lb-runtime/clippy.toml) is for the driver, not for them.
#![allow(clippy::disallowed_methods)]

mod common;
use common::*;
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// The byte at offset `i` of a backend's answer: position-dependent, so a byte lost,
/// doubled or moved shows.
fn pattern(i: usize) -> u8 {
    (i % 251) as u8
}

/// A backend that answers the first request it gets with `len` bytes, waits `pause`, then
/// resets the connection (SO_LINGER 0). Connections that send nothing (health probes) are
/// closed.
fn write_then_reset_backend(len: usize, pause: Duration) -> (u16, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = std::thread::spawn(move || {
        listener.set_nonblocking(true).unwrap();
        let end = Instant::now() + Duration::from_secs(20);
        while Instant::now() < end {
            let Ok((mut s, _)) = listener.accept() else {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            };
            s.set_nonblocking(false).unwrap();
            s.set_read_timeout(Some(Duration::from_millis(500)))
                .unwrap();
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                match s.read(&mut byte) {
                    Ok(1) => head.push(byte[0]),
                    _ => break,
                }
            }
            if !head.ends_with(b"\r\n\r\n") {
                continue; // a probe
            }
            let body: Vec<u8> = (0..len).map(pattern).collect();
            s.write_all(&body).unwrap();
            std::thread::sleep(pause);
            socket2::SockRef::from(&s)
                .set_linger(Some(Duration::ZERO))
                .unwrap();
            drop(s);
            return;
        }
    });
    (port, handle)
}

/// A backend that writes its answer and then resets: a client that reads slowly still
/// gets every byte the load balancer had read, and then the reset. (Envoy's issue 45190;
/// before the fix, the client got about a third of it.)
#[test]
fn bytes_read_before_a_backend_reset_all_reach_a_slow_client() {
    const LEN: usize = 200 * 1024;
    let dir = TempDir::new("reset-after-write");
    let (backend, thread) = write_then_reset_backend(LEN, Duration::from_millis(300));
    let config = config(
        &[backend],
        r#","health_check":{"start_up":true,"interval":"10s"},"timeouts":{"idle":"10s"}"#,
    );
    let (lb, port) = start_lb(&dir.0, &config);
    // A client with a small receive window, so most of the answer waits in the load
    // balancer (its buffers and its socket) when the reset comes.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket
        .connect_timeout(&addr(port).into(), Duration::from_secs(2))
        .unwrap();
    let mut client: TcpStream = socket.into();
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    client
        .write_all(b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    // Let the backend write everything and reset while the client reads nothing.
    std::thread::sleep(Duration::from_millis(600));
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    let end = loop {
        match client.read(&mut chunk) {
            Ok(0) => break "end of stream",
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break "reset",
            Err(e) => panic!(
                "read failed after {} bytes: {e}: {}",
                got.len(),
                lb.log_text()
            ),
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    thread.join().unwrap();
    assert_eq!(
        got.len(),
        LEN,
        "the client got {} of {LEN} bytes, then {end}: {}",
        got.len(),
        lb.log_text()
    );
    assert!(
        got.iter().enumerate().all(|(i, &b)| b == pattern(i)),
        "bytes changed on the way"
    );
    assert_eq!(end, "reset", "the backend's reset is passed on as a reset");
    assert!(
        lb.wait_log("end=reset by backend", 1, Duration::from_secs(2)),
        "{}",
        lb.log_text()
    );
}
