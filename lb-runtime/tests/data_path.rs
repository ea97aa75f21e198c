//! Bytes through the real binaries: large transfers are byte-identical, half-close is
//! honoured, and SIGTERM drains open connections before exiting 0.
// These tests drive real processes on the real clock: the driver's determinism lint
// (lb-runtime/clippy.toml) is for the driver, not for them.
#![allow(clippy::disallowed_methods)]

mod common;
use common::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
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

/// A backend that says its last bytes and closes (its FIN in the bytes' segment, as a
/// server that writes and closes at once often manages) reaches the client in one segment
/// too: the load balancer reads the end of the stream with the bytes and sends the FIN
/// with them, one packet and one acknowledgement fewer per connection (issue 16).
#[cfg(target_os = "linux")]
#[test]
fn a_backends_last_bytes_and_its_fin_reach_the_client_in_one_segment() {
    use std::os::fd::AsFd;
    let dir = TempDir::new("finseg");
    let backend = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let bport = backend.local_addr().unwrap().port();
    // Answers every connection (health checks included) with the greeting and its FIN in
    // one segment; stops when the test ends (the listener's thread is detached, bounded
    // by the process).
    std::thread::spawn(move || {
        for conn in backend.incoming().take(1_000) {
            let Ok(mut conn) = conn else { continue };
            std::thread::spawn(move || {
                let sock = socket2::SockRef::from(&conn);
                let _ = sock.send_with_flags(b"greeting", libc::MSG_MORE);
                let _ = conn.shutdown(std::net::Shutdown::Write);
                let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
                let _ = conn.read_to_end(&mut Vec::new());
            });
        }
    });
    let (lb, port) = start_lb(&dir.0, &config(&[bport], CHECKS));
    lb.wait_up(1);
    for _ in 0..3 {
        let mut client = TcpStream::connect(addr(port)).unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut got = Vec::new();
        client.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"greeting");
        let segments = lb_runtime::sys::segments(client.as_fd()).unwrap();
        assert_eq!(
            segments.received, 2,
            "segments the client received: the handshake's SYN-ACK, then the greeting \
             with the FIN"
        );
    }
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
    // The abort woke the connection at once, not its own next timer: its close is logged
    // within 200 ms of the grace period's end.
    let at = |pattern: &str| {
        let line = log
            .lines()
            .find(|l| l.contains(pattern))
            .unwrap_or_else(|| panic!("no {pattern:?} in {log}"));
        log_time(line)
    };
    let (aborting, closed) = (at("shutdown grace over"), at("end=shutdown"));
    assert!(
        closed
            .duration_since(aborting)
            .is_ok_and(|d| d < Duration::from_millis(200)),
        "the stuck connection closed {:?} after the grace period ended",
        closed.duration_since(aborting)
    );
    for line in [
        "waiting up to 500ms for 1 open connection(s)",
        "shutdown grace over: aborting 1 open connection(s)",
        "end=shutdown",
        "stopped (1 connection(s) aborted",
    ] {
        assert!(log.contains(line), "no {line:?} in {log}");
    }
}

/// A time as `ss -o` prints it: `7min`, `1min5sec`, `12sec`, `1.884sec`, `340ms`, and, in
/// iproute2 6.x, seconds under ten as `1.884ms` (seconds, with the millisecond suffix), and
/// nothing at all for a timer due now.
fn ss_time(s: &str) -> Option<Duration> {
    if s.is_empty() {
        return Some(Duration::ZERO);
    }
    let secs = |x: &str| x.parse::<f64>().ok().map(Duration::from_secs_f64);
    if let Some(x) = s.strip_suffix("ms") {
        return if x.contains('.') {
            secs(x)
        } else {
            x.parse().ok().map(Duration::from_millis)
        };
    }
    if let Some(x) = s.strip_suffix("sec") {
        return match x.split_once("min") {
            Some((m, s)) => Some(Duration::from_secs(m.parse::<u64>().ok()? * 60) + secs(s)?),
            None => secs(x),
        };
    }
    let m = s.strip_suffix("min")?;
    Some(Duration::from_secs(m.parse::<u64>().ok()? * 60))
}

/// The keepalive timer `ss` shows for the established TCP socket from `local` to `peer`:
/// `Ok(None)` if the socket has no keepalive timer running, `Err` if `ss` is missing or
/// the socket was not found.
fn keepalive_timer(local: SocketAddr, peer: SocketAddr) -> Result<Option<Duration>, String> {
    let out = std::process::Command::new("ss")
        .args(["-tnoH", "state", "established"])
        .output()
        .map_err(|e| format!("cannot run ss: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            cols.len() >= 4 && cols[2] == local.to_string() && cols[3] == peer.to_string()
        })
        .ok_or_else(|| format!("no socket {local} -> {peer} in:\n{text}"))?;
    let Some(timer) = line.split("timer:(keepalive,").nth(1) else {
        return Ok(None);
    };
    let value = timer.split(',').next().unwrap_or_default();
    ss_time(value)
        .map(Some)
        .ok_or_else(|| format!("cannot read {value:?} in {line}"))
}

/// With `tcp_keepalive`, both the client's socket and the backend's (the load balancer's
/// ends of them) run a keepalive timer with the configured `idle`, and after the first
/// probe, the configured `interval`. `ss -o` shows each socket's timer; `count` cannot
/// show on loopback, where every probe is answered (`net.rs` tests read it back from the
/// socket).
#[test]
fn tcp_keepalive_is_set_on_client_and_backend_sockets() {
    if std::process::Command::new("ss").arg("-V").output().is_err() {
        eprintln!("skipped: `ss` (iproute2) is not installed, so keepalive timers cannot be read");
        return;
    }
    let dir = TempDir::new("keepalive");
    // A backend that keeps every connection open and silent.
    let backend = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let backend_addr = backend.local_addr().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        backend.set_nonblocking(true).unwrap();
        let end = Instant::now() + Duration::from_secs(20);
        while Instant::now() < end {
            match backend.accept() {
                Ok(conn) => {
                    if tx.send(conn).is_err() {
                        return;
                    }
                }
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    });
    let config = config(
        &[backend_addr.port()],
        r#","health_check":{"start_up":true,"interval":"10s"},"timeouts":{"idle":"30s"},
           "tcp_keepalive":{"idle":"2s","interval":"13s","count":4}"#,
    );
    let (lb, port) = start_lb(&dir.0, &config);
    let mut client = TcpStream::connect(addr(port)).unwrap();
    client.write_all(b"hello").unwrap();
    // The backend connection that carries "hello" (probes send nothing and close).
    let end = Instant::now() + Duration::from_secs(5);
    let lb_backend_end = loop {
        let (mut conn, peer) = rx
            .recv_timeout(end.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| panic!("nothing reached the backend: {}", lb.log_text()));
        conn.set_nonblocking(false).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut got = [0u8; 5];
        if conn.read_exact(&mut got).is_ok() && &got == b"hello" {
            std::mem::forget(conn); // held open until the test ends
            break peer;
        }
    };
    let sockets = [
        ("client", addr(port), client.local_addr().unwrap()),
        ("backend", lb_backend_end, backend_addr),
    ];
    // Before the first probe: a keepalive timer of at most `idle` (the kernel's default,
    // without keepalive, is no timer at all).
    for (side, local, peer) in sockets {
        let timer = keepalive_timer(local, peer).unwrap();
        let timer = timer.unwrap_or_else(|| panic!("{side} socket: no keepalive timer"));
        assert!(timer <= Duration::from_secs(2), "{side} socket: {timer:?}");
    }
    // Once `idle` has passed with no traffic the kernel probes, and the timer is re-armed
    // for `interval` (13 s, longer than `idle`).
    for (side, local, peer) in sockets {
        let end = Instant::now() + Duration::from_secs(6);
        let timer = loop {
            let timer = keepalive_timer(local, peer).unwrap();
            if timer.is_some_and(|t| t > Duration::from_secs(2)) || Instant::now() > end {
                break timer;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let timer = timer.unwrap_or_else(|| panic!("{side} socket: no keepalive timer"));
        assert!(
            timer > Duration::from_secs(2) && timer <= Duration::from_secs(13),
            "{side} socket: after idle, timer {timer:?}, not the 13 s interval"
        );
    }
    assert!(
        lb.log_text()
            .contains("tcp_keepalive idle 2s interval 13s count 4"),
        "{}",
        lb.log_text()
    );
}

/// The `time=` of a logfmt line (`2026-12-01T03:37:48.653286Z`, UTC) as a `SystemTime`.
fn log_time(line: &str) -> std::time::SystemTime {
    let t = line
        .strip_prefix("time=")
        .and_then(|r| r.split(' ').next())
        .and_then(|t| t.strip_suffix('Z'))
        .unwrap_or_else(|| panic!("no time= in {line:?}"));
    let (date, clock) = t.split_once('T').expect("date T time");
    let num = |s: &str| {
        s.parse::<i64>()
            .unwrap_or_else(|_| panic!("bad time {t:?}"))
    };
    let d: Vec<i64> = date.split('-').map(num).collect();
    let (hms, frac) = clock.split_once('.').unwrap_or((clock, "0"));
    let c: Vec<i64> = hms.split(':').map(num).collect();
    // Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil).
    let (y, m, day) = (d[0] - i64::from(d[1] <= 2), d[1], d[2]);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    let secs = days * 86_400 + c[0] * 3_600 + c[1] * 60 + c[2];
    let nanos = format!("{frac:0<9}")[..9].parse::<u64>().expect("fraction");
    std::time::UNIX_EPOCH
        + Duration::from_secs(u64::try_from(secs).expect("after 1970"))
        + Duration::from_nanos(nanos)
}

#[test]
fn log_times_parse() {
    let t = log_time("time=2026-12-01T03:37:48.653286Z level=info msg=x");
    let since = t.duration_since(std::time::UNIX_EPOCH).unwrap();
    assert_eq!(
        since,
        Duration::from_secs(1_796_096_268) + Duration::from_micros(653_286)
    );
}
