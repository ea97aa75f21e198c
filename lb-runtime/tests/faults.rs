//! Faults through the real binary, as an operator meets them: each test injects one fault
//! into a running load balancer with real backends on loopback and checks what it promises
//! under it. Every process is stopped by its PID; every wait is bounded. (Running out of
//! file descriptors is `balancing.rs`'s
//! `running_out_of_file_descriptors_does_not_mark_backends_down`.)
//!
//! Bounds: the machine is a shared two-core one and these tests run beside the others, so
//! every time bound is the configured time plus a margin of several hundred milliseconds
//! (the checks every 100 ms), far below what the broken builds produce (no retry: a failed
//! client at once; no idle timeout: seconds more; no backpressure: 200 MB of memory).
// These tests drive real processes on the real clock: the driver's determinism lint
// (lb-runtime/clippy.toml) is for the driver, not for them.
#![allow(clippy::disallowed_methods)]

mod common;
use common::*;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Checks every 100 ms (down after 2 failures, up after 2 passes), a 300 ms connect
/// timeout and 2 retries.
const FAST_CHECKS: &str = r#","health_check":{"interval":"100ms","timeout":"100ms","rise":2,"fall":2},
    "timeouts":{"connect":"300ms"},"retries":2"#;

/// A kept-alive HTTP request on `s`: who answered, or why there was no answer.
fn try_ask(s: &mut TcpStream) -> std::io::Result<String> {
    s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::Error::new(ErrorKind::UnexpectedEof, "closed"));
        }
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf);
        if let Some((_, body)) = text.split_once("\r\n\r\n") {
            if body.ends_with('\n') {
                return Ok(who(body));
            }
        }
    }
}

/// Threads that open a new connection through the load balancer for every request until
/// stopped, each request bounded by `http_get`'s timeouts; every failure is kept, with
/// when its request started.
struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<(usize, Failures)>>,
}

/// Failed requests: when each began, and why it failed.
type Failures = Vec<(Instant, String)>;

impl Load {
    fn start(port: u16, threads: usize, limit: Duration) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..threads)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let end = Instant::now() + limit;
                    let (mut served, mut failures) = (0, Vec::new());
                    while !stop.load(Ordering::Relaxed) && Instant::now() < end {
                        let started = Instant::now();
                        match http_get(port) {
                            Ok(_) => served += 1,
                            Err(e) => failures.push((started, e.to_string())),
                        }
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    (served, failures)
                })
            })
            .collect();
        Load { stop, threads }
    }

    /// Stops; returns the requests served and the failures.
    fn stop(self) -> (usize, Failures) {
        self.stop.store(true, Ordering::Relaxed);
        let (mut served, mut failures) = (0, Vec::new());
        for t in self.threads {
            let (s, f) = t.join().unwrap();
            served += s;
            failures.extend(f);
        }
        (served, failures)
    }
}

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
        lb.wait_log("end=backend_reset", 1, Duration::from_secs(2)),
        "{}",
        lb.log_text()
    );
}

/// `kill -9` of a backend under load: the clients of the other backends never notice (their
/// kept-alive connections go on, new connections are all served: a connect to the dead
/// one is retried elsewhere), only the dead backend's own connections end, and it is
/// marked down.
#[test]
fn a_backend_killed_under_load_ends_only_its_own_connections() {
    let dir = TempDir::new("kill9");
    let (mut servers, ports) = servers(&dir, 3);
    let (lb, port) = start_lb(&dir.0, &config(&ports, FAST_CHECKS));
    lb.wait_up(3);
    let victim = format!("s{}", ports[1]);
    // Nine kept-alive connections, three to each backend (round robin).
    let mut held: Vec<(TcpStream, String)> = (0..9)
        .map(|_| {
            let mut s = TcpStream::connect(addr(port)).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
            let name = try_ask(&mut s).unwrap();
            (s, name)
        })
        .collect();
    assert_eq!(held.iter().filter(|(_, n)| *n == victim).count(), 3);
    let load = Load::start(port, 2, Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(200));

    servers[1].kill(); // SIGKILL
    let killed = Instant::now();
    // Round after round on every held connection for a while: the victim's end, the
    // others answer every time, from the same backend.
    let mut ended = vec![false; held.len()];
    while killed.elapsed() < Duration::from_millis(1500) {
        for (i, (s, name)) in held.iter_mut().enumerate() {
            if ended[i] {
                continue;
            }
            match try_ask(s) {
                Ok(answer) => assert_eq!(&answer, name, "a connection changed backend"),
                Err(_) if *name == victim => ended[i] = true,
                Err(e) => panic!("a connection to {name} failed: {e}: {}", lb.log_text()),
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    for ((_, name), ended) in held.iter().zip(&ended) {
        assert_eq!(*ended, *name == victim, "{name}: ended {ended}");
    }
    assert!(
        lb.wait_log(
            &format!("backend {victim} is down"),
            1,
            Duration::from_millis(500)
        ),
        "not marked down: {}",
        lb.log_text()
    );
    let (served, failures) = load.stop();
    // A request already on its way to the victim when it died fails with it (nothing can
    // replay a stream half sent); every request begun after the kill is served.
    let after: Vec<_> = failures.iter().filter(|(t, _)| *t >= killed).collect();
    assert!(
        after.is_empty(),
        "{} of {} new connections begun after the kill failed: {after:?}: {}",
        after.len(),
        served + failures.len(),
        lb.log_text()
    );
    assert!(
        failures.len() <= 2,
        "more failures than the two load threads' requests in flight at the kill: {failures:?}"
    );
    assert!(served > 20, "only {served} requests served");
}

/// Sends SIGSTOP to a process, and SIGCONT when dropped (so it can be stopped by PID even
/// if the test fails first).
struct Frozen<'a>(&'a Proc);

impl<'a> Frozen<'a> {
    fn new(p: &'a Proc) -> Frozen<'a> {
        p.signal("STOP");
        Frozen(p)
    }
}

impl Drop for Frozen<'_> {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-CONT", &self.0.pid().to_string()])
            .status();
    }
}

/// A hung backend (SIGSTOP: its kernel still completes handshakes, so connects succeed and
/// nothing answers): the connections that reach it end at the idle timeout, its HTTP
/// checks time out and mark it down, after which no client reaches it; SIGCONT brings it
/// back after `rise` checks and it gets its turns again.
#[test]
fn a_hung_backend_is_marked_down_its_clients_end_at_the_idle_timeout_and_it_returns() {
    const IDLE: Duration = Duration::from_millis(1500);
    let dir = TempDir::new("sigstop");
    let (servers, ports) = servers(&dir, 2);
    let cfg = config(
        &ports,
        r#","health_check":{"type":"http","interval":"100ms","timeout":"200ms","rise":2,"fall":2},
           "timeouts":{"connect":"300ms","idle":"1500ms"},"retries":2"#,
    );
    let (lb, port) = start_lb(&dir.0, &cfg);
    lb.wait_up(2);
    let victim = format!("s{}", ports[1]);
    let other = format!("s{}", ports[0]);

    let frozen = Frozen::new(&servers[1]);
    let stopped = Instant::now();
    // Three clients, one request per connection, each waiting up to 5 s for its answer.
    let clients: Vec<_> = (0..3)
        .map(|_| {
            std::thread::spawn(move || {
                let mut results = Vec::new();
                while stopped.elapsed() < Duration::from_millis(2500) {
                    let start = Instant::now();
                    let answer = (|| {
                        let mut s =
                            TcpStream::connect_timeout(&addr(port), Duration::from_secs(2))?;
                        s.set_read_timeout(Some(Duration::from_secs(5)))?;
                        s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")?;
                        let mut out = String::new();
                        s.read_to_string(&mut out)?;
                        match out.split_once("\r\n\r\n") {
                            Some((_, body)) if !body.is_empty() => Ok(who(body)),
                            _ => Err(std::io::Error::other("closed without an answer")),
                        }
                    })();
                    results.push((
                        start - stopped,
                        start.elapsed(),
                        answer.map_err(|e| e.to_string()),
                    ));
                    std::thread::sleep(Duration::from_millis(10));
                }
                results
            })
        })
        .collect();
    let results: Vec<_> = clients
        .into_iter()
        .flat_map(|c| c.join().unwrap())
        .collect();
    let down = lb.log_text().contains(&format!("backend {victim} is down"));
    assert!(
        down,
        "the hung backend was not marked down: {}",
        lb.log_text()
    );
    let mut hung = 0;
    for (at, took, answer) in &results {
        match answer {
            Ok(name) => assert_eq!(*name, other, "the hung backend answered"),
            Err(e) => {
                // It reached the hung backend before it was down: ended by the idle
                // timeout, not before, not much after.
                hung += 1;
                assert!(
                    *took >= IDLE - Duration::from_millis(20) && *took < IDLE + Duration::from_millis(1000),
                    "a request sent {at:?} after SIGSTOP ended after {took:?} ({e}), not at the {IDLE:?} idle timeout: {}",
                    lb.log_text()
                );
            }
        }
    }
    eprintln!(
        "{hung} of {} requests reached the hung backend: {results:?}",
        results.len()
    );
    assert!(hung >= 1, "no client reached the hung backend: {results:?}");
    // Once down, it gets no client: the requests sent in the last second all succeeded.
    let late: Vec<_> = results
        .iter()
        .filter(|(at, _, _)| *at > Duration::from_millis(1500))
        .collect();
    assert!(
        !late.is_empty() && late.iter().all(|(_, _, a)| a.is_ok()),
        "{late:?}"
    );
    assert!(
        lb.log_text().contains("end=idle_timeout"),
        "{}",
        lb.log_text()
    );

    drop(frozen); // SIGCONT
    assert!(
        lb.wait_log(
            &format!("backend {victim} is up"),
            2,
            Duration::from_secs(3)
        ),
        "not back up after SIGCONT: {}",
        lb.log_text()
    );
    let names: Vec<String> = (0..4).map(|_| who(&http_get(port).unwrap())).collect();
    assert_eq!(
        names.iter().filter(|n| **n == victim).count(),
        2,
        "{names:?}"
    );
}

/// A backend that accepts and never reads, while a client uploads: reading the client
/// pauses once 256 KiB wait for the backend, so the upload stalls at what the sockets'
/// kernel buffers hold and the load balancer's memory stays flat.
#[test]
fn a_backend_that_never_reads_does_not_grow_the_load_balancers_memory() {
    const UPLOAD: usize = 200 << 20;
    let dir = TempDir::new("never-reads");
    let backend = TcpListener::bind("127.0.0.1:0").unwrap();
    let bport = backend.local_addr().unwrap().port();
    let done = Arc::new(AtomicBool::new(false));
    let holder = {
        let done = done.clone();
        std::thread::spawn(move || {
            backend.set_nonblocking(true).unwrap();
            let mut held = Vec::new();
            let end = Instant::now() + Duration::from_secs(20);
            while !done.load(Ordering::Relaxed) && Instant::now() < end {
                match backend.accept() {
                    Ok((s, _)) => held.push(s),
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        })
    };
    let cfg = config(
        &[bport],
        r#","health_check":{"start_up":true,"interval":"10s"},"timeouts":{"idle":"30s"}"#,
    );
    let (lb, port) = start_lb(&dir.0, &cfg);
    let mut client = TcpStream::connect(addr(port)).unwrap();
    // Warm up (the connection is made, its buffers allocated) before measuring.
    client.write_all(&[1u8; 64 * 1024]).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let before = rss_kib(lb.pid());
    client
        .set_write_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    let chunk = vec![7u8; 1 << 20];
    let mut pushed = 0;
    let start = Instant::now();
    while pushed < UPLOAD && start.elapsed() < Duration::from_secs(10) {
        match client.write(&chunk) {
            Ok(n) => pushed += n,
            Err(_) => break, // blocked for a second: backpressure reached the client
        }
    }
    let after = rss_kib(lb.pid());
    done.store(true, Ordering::Relaxed);
    holder.join().unwrap();
    let growth_mib = after.saturating_sub(before) / 1024;
    eprintln!("pushed {} MiB; RSS {before} -> {after} KiB", pushed >> 20);
    // Kernel buffers (the client's, both of the load balancer's sockets, the backend's)
    // hold some tens of MiB at most; the load balancer itself holds 256 KiB and a read.
    assert!(
        growth_mib < 24,
        "RSS grew by {growth_mib} MiB ({before} -> {after} KiB) while {} MiB were pushed",
        pushed >> 20
    );
    assert!(
        pushed < 100 << 20,
        "{} MiB of the upload went through to a backend that reads nothing",
        pushed >> 20
    );
}

/// What the test backend saw on one connection: the request head (as far as it got) and
/// how the connection ended for it.
type Seen = Arc<Mutex<Vec<(String, String)>>>;

/// A backend for the reset tests: `GET /small` gets a short answer; `GET /big` gets up to
/// 64 MiB, as fast as the client takes them; anything else is read until the connection
/// ends. Records (head, end) per connection: `eof`, `reset`, `write failed: ...`, `...`.
fn recording_backend(seen: Seen, done: Arc<AtomicBool>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        listener.set_nonblocking(true).unwrap();
        let end = Instant::now() + Duration::from_secs(20);
        while !done.load(Ordering::Relaxed) && Instant::now() < end {
            let Ok((mut s, _)) = listener.accept() else {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            };
            let seen = seen.clone();
            std::thread::spawn(move || {
                s.set_nonblocking(false).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                s.set_write_timeout(Some(Duration::from_secs(3))).unwrap();
                let mut head = Vec::new();
                let mut chunk = [0u8; 1024];
                let end = loop {
                    if head.windows(4).any(|w| w == b"\r\n\r\n") {
                        break None;
                    }
                    match s.read(&mut chunk) {
                        Ok(0) => break Some("eof".to_string()),
                        Ok(n) => head.extend_from_slice(&chunk[..n]),
                        Err(e) if e.kind() == ErrorKind::ConnectionReset => {
                            break Some("reset".to_string())
                        }
                        Err(e) => break Some(format!("read failed: {e}")),
                    }
                };
                let head = String::from_utf8_lossy(&head).into_owned();
                let end = end.unwrap_or_else(|| {
                    if head.starts_with("GET /small") {
                        let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\nConnection: close\r\n\r\nsmall\n";
                        return match s.write_all(answer) {
                            Ok(()) => "answered".to_string(),
                            Err(e) => format!("write failed: {e}"),
                        };
                    }
                    let block = vec![b'x'; 64 * 1024];
                    for _ in 0..1024 {
                        if let Err(e) = s.write_all(&block) {
                            return match e.kind() {
                                ErrorKind::ConnectionReset | ErrorKind::BrokenPipe => {
                                    "reset".to_string()
                                }
                                _ => format!("write failed: {e}"),
                            };
                        }
                    }
                    "wrote everything".to_string()
                });
                seen.lock().unwrap().push((head, end));
            });
        }
    });
    port
}

/// A client connection with SO_LINGER 0: dropping it sends a reset.
fn resetting_client(port: u16) -> TcpStream {
    let s = TcpStream::connect(addr(port)).unwrap();
    socket2::SockRef::from(&s)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    s
}

/// Clients that reset (SO_LINGER 0) in the middle of their request and in the middle of
/// the answer: the backend's connection is reset too (its read, or its write, fails with a
/// reset at once), others are served meanwhile, and afterwards `/status` shows no
/// connection left open.
#[test]
fn a_client_reset_mid_request_or_mid_answer_resets_its_backend_connection() {
    let dir = TempDir::new("client-reset");
    let seen: Seen = Arc::default();
    let done = Arc::new(AtomicBool::new(false));
    let bport = recording_backend(seen.clone(), done.clone());
    let cfg = config(
        &[bport],
        r#","health_check":{"start_up":true,"interval":"10s"},"timeouts":{"idle":"30s"},"admin":"127.0.0.1:0""#,
    );
    let (lb, port) = start_lb(&dir.0, &cfg);
    let admin = lb.admin_port();
    let ask_small = || {
        let (code, body) = http_exchange(
            port,
            b"GET /small HTTP/1.1\r\nHost: t\r\n\r\n",
            Duration::from_secs(3),
        )
        .unwrap_or_else(|e| panic!("a client was not served: {e}: {}", lb.log_text()));
        assert_eq!((code, body.as_str()), (200, "small\n"));
    };

    // Mid-request: part of a head, then a reset.
    let mut partial = resetting_client(port);
    partial
        .write_all(b"GET /partial HTTP/1.1\r\nHost:")
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    ask_small();
    drop(partial);
    // Mid-answer: a few of the answer's bytes, then a reset.
    let mut big = resetting_client(port);
    big.write_all(b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut got = vec![0u8; 100 * 1024];
    big.read_exact(&mut got).unwrap();
    ask_small();
    drop(big);
    ask_small();

    // Both backend connections end with a reset, within a second or two.
    let end = Instant::now() + Duration::from_secs(3);
    let ends = loop {
        let ends: Vec<(String, String)> = seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(head, _)| head.starts_with("GET /partial") || head.starts_with("GET /big"))
            .cloned()
            .collect();
        if ends.len() == 2 || Instant::now() > end {
            break ends;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    for (head, how) in [("GET /partial", "reset"), ("GET /big", "reset")] {
        let found = ends.iter().find(|(h, _)| h.starts_with(head));
        assert_eq!(
            found.map(|(_, e)| e.as_str()),
            Some(how),
            "{head}: {ends:?}: {}",
            lb.log_text()
        );
    }
    assert!(
        lb.wait_log("end=client_reset", 2, Duration::from_secs(2)),
        "{}",
        lb.log_text()
    );
    // No connection left open, in the pool or to the backend.
    let end = Instant::now() + Duration::from_secs(2);
    loop {
        let (code, body) = http_exchange(
            admin,
            b"GET /status HTTP/1.1\r\nHost: a\r\n\r\n",
            Duration::from_secs(3),
        )
        .unwrap();
        assert_eq!(code, 200);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        if v["active_connections"] == 0 && v["backends"][0]["active_connections"] == 0 {
            break;
        }
        assert!(Instant::now() < end, "connections left open: {v}");
        std::thread::sleep(Duration::from_millis(50));
    }
    done.store(true, Ordering::Relaxed);
}

/// A client that connects and sends nothing is closed at `timeouts.idle` (1 s here): not
/// before, and not much after; a client that keeps talking, more slowly than that in
/// total but with gaps under it, is not.
#[test]
fn a_connection_that_sends_nothing_is_closed_at_the_idle_timeout() {
    const IDLE: Duration = Duration::from_secs(1);
    let dir = TempDir::new("idle");
    let (_servers, ports) = servers(&dir, 1);
    let cfg = config(
        &ports,
        r#","health_check":{"interval":"100ms"},"timeouts":{"idle":"1s"}"#,
    );
    let (lb, port) = start_lb(&dir.0, &cfg);
    lb.wait_up(1);
    let talker = std::thread::spawn(move || {
        let mut s = TcpStream::connect(addr(port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let start = Instant::now();
        let mut asked = 0;
        while start.elapsed() < Duration::from_millis(2500) {
            try_ask(&mut s).map_err(|e| format!("after {:?}: {e}", start.elapsed()))?;
            asked += 1;
            std::thread::sleep(Duration::from_millis(400));
        }
        Ok::<_, String>(asked)
    });
    let start = Instant::now();
    let mut silent = TcpStream::connect(addr(port)).unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buf = [0u8; 16];
    let n = silent.read(&mut buf).unwrap_or(0);
    let took = start.elapsed();
    eprintln!("the silent client was closed after {took:?}");
    assert_eq!(n, 0, "the silent client got bytes");
    assert!(
        took >= IDLE - Duration::from_millis(20) && took < IDLE + Duration::from_millis(750),
        "closed after {took:?}, not at the {IDLE:?} idle timeout: {}",
        lb.log_text()
    );
    let asked = talker
        .join()
        .unwrap()
        .unwrap_or_else(|e| panic!("the talking client was cut off {e}: {}", lb.log_text()));
    assert!(asked >= 5, "{asked}");
    assert!(
        lb.wait_log("end=idle_timeout", 1, Duration::from_secs(1)),
        "{}",
        lb.log_text()
    );
}

/// Abuse of the admin endpoint (request heads over its 8 KiB limit, binary garbage, a
/// stream of `/metrics` requests, and more idle connections than it has slots, reopened as
/// they are closed) while clients use the load balancer: every client is served,
/// promptly, `/status` still answers, and the log has a line or two about the slots, not
/// one per connection.
#[test]
fn admin_abuse_does_not_disturb_the_data_path() {
    let dir = TempDir::new("admin-abuse");
    let (_servers, ports) = servers(&dir, 2);
    let (lb, port) = start_lb(
        &dir.0,
        &config(&ports, &format!(r#"{FAST_CHECKS},"admin":"127.0.0.1:0""#)),
    );
    let admin = lb.admin_port();
    lb.wait_up(2);
    let flood = IdleFlood::start(admin, 80, Duration::from_secs(20));
    assert!(flood.wait_opened(80, Duration::from_secs(5)));
    let stop = Arc::new(AtomicBool::new(false));
    let abuser = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut statuses = std::collections::BTreeMap::new();
            let mut x: u32 = 0x2545_f491;
            let mut round = 0u32;
            let end = Instant::now() + Duration::from_secs(15);
            while !stop.load(Ordering::Relaxed) && Instant::now() < end {
                round += 1;
                let request: Vec<u8> = if round % 3 == 0 {
                    // Well-formed and answered under the pool's lock, like every page.
                    b"GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n".to_vec()
                } else if round % 3 == 1 {
                    // A head of 20 KiB: one header line that never ends in time.
                    let mut r = b"GET /status HTTP/1.1\r\nX-Pad: ".to_vec();
                    r.resize(20 * 1024, b'a');
                    r
                } else {
                    // 2 KiB of pseudo-random bytes, then an empty line.
                    let mut r: Vec<u8> = (0..2048)
                        .map(|_| {
                            x ^= x << 13;
                            x ^= x >> 17;
                            x ^= x << 5;
                            x as u8
                        })
                        .collect();
                    r.extend_from_slice(b"\r\n\r\n");
                    r
                };
                let status = http_exchange(admin, &request, Duration::from_secs(3))
                    .map(|(code, _)| code.to_string())
                    .unwrap_or_else(|e| e.kind().to_string());
                *statuses.entry(status).or_insert(0) += 1;
                std::thread::sleep(Duration::from_millis(1));
            }
            statuses
        })
    };
    // Clients through the load balancer meanwhile: all served, each within a second.
    let start = Instant::now();
    let mut slowest = Duration::ZERO;
    let mut served = 0;
    while start.elapsed() < Duration::from_secs(3) {
        let t = Instant::now();
        http_get(port).unwrap_or_else(|e| panic!("a client failed: {e}: {}", lb.log_text()));
        slowest = slowest.max(t.elapsed());
        served += 1;
        std::thread::sleep(Duration::from_millis(10));
    }
    let (code, _) = http_exchange(
        admin,
        b"GET /status HTTP/1.1\r\nHost: a\r\n\r\n",
        Duration::from_secs(3),
    )
    .unwrap_or_else(|e| panic!("/status unreachable during the abuse: {e}"));
    assert_eq!(code, 200);
    stop.store(true, Ordering::Relaxed);
    let statuses = abuser.join().unwrap();
    let evicted = flood.stop();
    eprintln!("{served} clients served, slowest {slowest:?}; admin abuse answered {statuses:?}; {evicted} idle connections made room");
    assert!(
        slowest < Duration::from_secs(1),
        "a client waited {slowest:?}"
    );
    assert!(served >= 50, "only {served} clients served in 3 s");
    // Oversized heads get 431, garbage 400 (or 431 if it had no line end early enough),
    // /metrics 200.
    assert!(statuses.get("200").is_some_and(|&n| n > 0), "{statuses:?}");
    assert!(statuses.get("431").is_some_and(|&n| n > 0), "{statuses:?}");
    assert!(statuses.get("400").is_some_and(|&n| n > 0), "{statuses:?}");
    assert!(evicted > 0, "the idle connections never made room");
    let log = lb.log_text();
    let lines = log.matches("admin: every connection slot is taken").count();
    assert!(
        (1..=2).contains(&lines),
        "{lines} lines about the slots: {log}"
    );
}

/// IPv6 end to end: a load balancer listening on `[::1]`, a backend on `[::1]`, a client
/// over IPv6 gets its answer.
#[test]
fn a_client_over_ipv6_reaches_a_backend_over_ipv6() {
    let Ok(probe) = TcpListener::bind("[::1]:0") else {
        eprintln!("skipped: ::1 is not available on this machine (no IPv6 loopback)");
        return;
    };
    let bport = probe.local_addr().unwrap().port();
    drop(probe);
    let dir = TempDir::new("ipv6");
    let bport_s = bport.to_string();
    let _server = Proc::spawn(
        SERVER,
        &[&bport_s, "--name", "v6", "--bind", "::1"],
        &dir.0,
        "v6",
    );
    let backend = SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, bport));
    let end = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect_timeout(&backend, Duration::from_millis(100)).is_err() {
        assert!(Instant::now() < end, "the IPv6 demo backend did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
    let cfg = format!(
        r#"{{"listen":"[::1]:0","backends":[{{"name":"v6","address":"[::1]:{bport}"}}]{FAST_CHECKS}}}"#
    );
    let path = dir.write("config.json", &cfg);
    let lb = Proc::spawn(LB, &["--config", path.to_str().unwrap()], &dir.0, "lb");
    let listen = lb.wait_lb_addr();
    assert!(listen.is_ipv6(), "{listen}");
    lb.wait_up(1);
    let mut s = TcpStream::connect_timeout(&listen, Duration::from_secs(2)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(try_ask(&mut s).unwrap(), "v6");
    drop(s);
    assert!(
        lb.wait_log("client=[::1]:", 1, Duration::from_secs(2)),
        "{}",
        lb.log_text()
    );
}
