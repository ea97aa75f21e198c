//! Bytes through the real binaries: large transfers are byte-identical, half-close is
//! honoured, and SIGTERM drains open connections before exiting 0.
// These tests drive real processes on the real clock: the driver's determinism lint
// (lb-runtime/clippy.toml) is for the driver, not for them.
#![allow(clippy::disallowed_methods)]

mod common;
use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const CHECKS: &str =
    r#","health_check":{"interval":"100ms","timeout":"100ms"},"timeouts":{"shutdown_grace":"5s"}"#;

/// Deterministic, incompressible-looking test data.
fn pattern(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[test]
fn thirty_two_mib_through_an_echo_backend_come_back_byte_identical() {
    let dir = TempDir::new("echo32");
    let bport = free_port();
    let _server = start_server(&dir.0, bport, "echo", true);
    let (lb, port) = start_lb(&dir.0, &config(&[bport], CHECKS));
    lb.wait_up(1);

    let data = pattern(32 << 20);
    let mut s = TcpStream::connect(addr(port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut w = s.try_clone().unwrap();
    let sent = data.clone();
    let writer = std::thread::spawn(move || {
        for chunk in sent.chunks(100_000) {
            w.write_all(chunk).unwrap();
        }
        // Half-close: the echo must still come back in full after our FIN.
        half_close(&w);
    });
    let mut back = Vec::with_capacity(data.len());
    s.read_to_end(&mut back).unwrap();
    writer.join().unwrap();
    assert_eq!(back.len(), data.len());
    assert!(back == data, "echoed bytes differ");
    assert!(
        lb.wait_log("end=completed", 1, Duration::from_secs(2)),
        "{}",
        lb.log_text()
    );
    assert!(lb
        .log_text()
        .contains(&format!("bytes_from_client={}", 32 << 20)));
}

#[test]
fn sigterm_refuses_new_clients_and_lets_open_connections_finish() {
    let dir = TempDir::new("term");
    let bport = free_port();
    let _server = start_server(&dir.0, bport, "echo", true);
    let (mut lb, port) = start_lb(&dir.0, &config(&[bport], CHECKS));
    lb.wait_up(1);

    let mut open = TcpStream::connect(addr(port)).unwrap();
    open.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    open.write_all(b"before").unwrap();
    let mut buf = [0u8; 6];
    open.read_exact(&mut buf).unwrap();

    lb.signal("TERM");
    assert!(
        lb.wait_log("stopped accepting", 1, Duration::from_secs(5)),
        "{}",
        lb.log_text()
    );
    assert!(
        TcpStream::connect(addr(port)).is_err(),
        "new clients must be refused"
    );
    assert!(
        lb.wait_exit(Duration::from_millis(300)).is_none(),
        "exited with a connection open"
    );

    open.write_all(b"after!").unwrap();
    open.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"after!");
    half_close(&open);
    assert_eq!(open.read(&mut buf).unwrap(), 0);
    let status = lb
        .wait_exit(Duration::from_secs(5))
        .expect("did not exit after the drain");
    assert_eq!(status.code(), Some(0));
}

#[test]
fn sigterm_with_a_stuck_connection_exits_after_the_grace_period() {
    let dir = TempDir::new("grace");
    let bport = free_port();
    let _server = start_server(&dir.0, bport, "echo", true);
    let cfg = config(
        &[bport],
        r#","health_check":{"interval":"100ms"},"timeouts":{"shutdown_grace":"500ms"}"#,
    );
    let (mut lb, port) = start_lb(&dir.0, &cfg);
    lb.wait_up(1);
    let _stuck = TcpStream::connect(addr(port)).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let start = Instant::now();
    lb.signal("INT");
    let status = lb.wait_exit(Duration::from_secs(5)).expect("did not exit");
    let took = start.elapsed();
    assert_eq!(status.code(), Some(0));
    assert!(took >= Duration::from_millis(450), "{took:?}");
    // The grace period (500 ms) and the abort, not some other wait, ended it: 1.5 s of
    // slack for a loaded machine, a third of the 5 s this test waits for the exit.
    assert!(took < Duration::from_millis(2000), "{took:?}");
    // The stuck connection was aborted through its machine: counted, and its close
    // logged like any other.
    let log = lb.log_text();
    for line in [
        "waiting up to 500ms for 1 open connection(s)",
        "shutdown grace over: aborting 1 open connection(s)",
        "end=aborted",
        "stopped (1 connection(s) aborted",
    ] {
        assert!(log.contains(line), "no {line:?} in {log}");
    }
}
