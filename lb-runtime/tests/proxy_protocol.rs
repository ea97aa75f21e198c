//! `proxy_protocol` through the real binaries: the backend receives the PROXY header naming
//! the real client before the client's first byte, and health probes (which have no client)
//! still pass.
// These tests drive real processes on the real clock: the driver's determinism lint
// (lb-runtime/clippy.toml) is for the driver, not for them.
#![allow(clippy::disallowed_methods)]

mod common;
use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Sends `hello` through a load balancer with `version` in front of an echo backend and
/// returns what came back (the header the backend got, then `hello`), with the client's
/// and the load balancer's ports.
fn echo_through(version: &str) -> (Vec<u8>, u16, u16, String) {
    let dir = TempDir::new(&format!("proxy-{version}"));
    let bport = free_port();
    let _echo = start_server(&dir.0, bport, "echo", true);
    let cfg = config(
        &[bport],
        &format!(r#","proxy_protocol":"{version}","health_check":{{"interval":"100ms"}}"#),
    );
    let (lb, port) = start_lb(&dir.0, &cfg);
    lb.wait_up(1);
    let mut s = TcpStream::connect(addr(port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let client_port = s.local_addr().unwrap().port();
    s.write_all(b"hello").unwrap();
    half_close(&s);
    let mut got = Vec::new();
    s.read_to_end(&mut got).unwrap();
    (got, client_port, port, lb.log_text())
}

#[test]
fn version_1_puts_the_client_on_the_first_line() {
    let (got, client_port, port, log) = echo_through("v1");
    let want = format!("PROXY TCP4 127.0.0.1 127.0.0.1 {client_port} {port}\r\nhello");
    assert_eq!(String::from_utf8_lossy(&got), want, "{log}");
    assert!(log.contains("proxy_protocol v1"), "{log}");
}

#[test]
fn version_2_sends_the_binary_header() {
    let (got, client_port, port, log) = echo_through("v2");
    let mut want = b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c".to_vec();
    want.extend_from_slice(&[127, 0, 0, 1, 127, 0, 0, 1]);
    want.extend_from_slice(&client_port.to_be_bytes());
    want.extend_from_slice(&port.to_be_bytes());
    want.extend_from_slice(b"hello");
    assert_eq!(got, want, "{log}");
}
