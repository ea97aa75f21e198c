//! Helpers for tests that start the real `loadbalancer` and `server` binaries on loopback.
//! Every process is stopped by its PID when its handle drops; every wait is bounded.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub const LB: &str = env!("CARGO_BIN_EXE_loadbalancer");
pub const SERVER: &str = env!("CARGO_BIN_EXE_server");

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    // The kernel may hand out a port it just handed out (the probe socket is closed at
    // once), and two servers of one test on the same port make its config invalid: a port
    // is given to one caller of this process only.
    static GIVEN: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    for _ in 0..100 {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if GIVEN.lock().unwrap_or_else(|p| p.into_inner()).insert(port) {
            return port;
        }
    }
    panic!("no port this process has not used yet in 100 tries");
}

/// A scratch directory removed at drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!(
            "lb-test-{tag}-{}-{:?}",
            std::process::id(),
            Instant::now()
        ));
        let p = PathBuf::from(p.to_string_lossy().replace(['{', '}', ' ', ':'], "_"));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child process whose stderr goes to a file; killed by PID on drop.
pub struct Proc {
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    pub fn spawn(bin: &str, args: &[&str], dir: &Path, tag: &str) -> Proc {
        Proc::spawn_logging(bin, args, dir, tag, "info")
    }

    /// [`Proc::spawn`] with `RUST_LOG` set to `rust_log`.
    pub fn spawn_logging(bin: &str, args: &[&str], dir: &Path, tag: &str, rust_log: &str) -> Proc {
        let log = dir.join(format!("{tag}.log"));
        let err = std::fs::File::create(&log).unwrap();
        let child = Command::new(bin)
            .args(args)
            .current_dir(dir)
            .env("RUST_LOG", rust_log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .unwrap();
        Proc { child, log }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until `pattern` occurs `count` times in the log.
    pub fn wait_log(&self, pattern: &str, count: usize, within: Duration) -> bool {
        let end = Instant::now() + within;
        while Instant::now() < end {
            if self.log_text().matches(pattern).count() >= count {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    /// Sends a signal by PID with the `kill` command.
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.pid().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig} {}", self.pid());
    }

    /// Waits for the process to exit.
    pub fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let end = Instant::now() + within;
        while Instant::now() < end {
            if let Some(s) = self.child.try_wait().unwrap() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Waits until something accepts connections on `port`.
pub fn wait_listening(port: u16, within: Duration) -> bool {
    let end = Instant::now() + within;
    while Instant::now() < end {
        if TcpStream::connect_timeout(&addr(port), Duration::from_millis(100)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

pub fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A demo backend on `port`.
pub fn start_server(dir: &Path, port: u16, name: &str, echo: bool) -> Proc {
    let port_s = port.to_string();
    let mut args = vec![port_s.as_str(), "--name", name];
    if echo {
        args.push("--echo");
    }
    let p = Proc::spawn(SERVER, &args, dir, name);
    assert!(
        wait_listening(port, Duration::from_secs(10)),
        "server {name} did not start"
    );
    p
}

/// `n` HTTP demo backends named `s<port>`, on free ports.
pub fn servers(dir: &TempDir, n: usize) -> (Vec<Proc>, Vec<u16>) {
    let ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
    let procs = ports
        .iter()
        .map(|&p| start_server(&dir.0, p, &format!("s{p}"), false))
        .collect();
    (procs, ports)
}

/// The load balancer with `config` (whose `listen` should be 127.0.0.1:0); returns it and
/// the port it listens on, read from its log.
pub fn start_lb(dir: &Path, config: &str) -> (Proc, u16) {
    let path = dir.join("config.json");
    std::fs::write(&path, config).unwrap();
    let p = Proc::spawn(LB, &["--config", path.to_str().unwrap()], dir, "lb");
    let port = p.wait_lb_port();
    (p, port)
}

impl Proc {
    /// Waits (up to 5 s) until a load balancer has logged `n` backends up; panics with its
    /// log otherwise.
    pub fn wait_up(&self, n: usize) {
        assert!(
            self.wait_log(" is up", n, Duration::from_secs(5)),
            "{}",
            self.log_text()
        );
    }

    /// The port a load balancer listens on, from its startup line.
    pub fn wait_lb_port(&self) -> u16 {
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end {
            let log = self.log_text();
            if let Some(i) = log.find("msg=\"listening on 127.0.0.1:") {
                let rest = &log[i + "msg=\"listening on 127.0.0.1:".len()..];
                let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
                if let Ok(port) = digits.parse() {
                    return port;
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("load balancer did not start: {}", self.log_text());
    }
}

/// One HTTP request over a new connection; returns the body.
pub fn http_get(port: u16) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(&addr(port), Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(b"GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    match out.split_once("\r\n\r\n") {
        Some((head, body)) if head.starts_with("HTTP/1.1 200") => Ok(body.to_string()),
        _ => Err(std::io::Error::other(format!("bad answer: {out:?}"))),
    }
}

/// The backend name in a demo server's body (`Hello from NAME\n`).
pub fn who(body: &str) -> String {
    body.trim().trim_start_matches("Hello from ").to_string()
}

/// A config listening on an ephemeral loopback port in front of `ports`.
pub fn config(ports: &[u16], extra: &str) -> String {
    let backends: Vec<String> = ports
        .iter()
        .map(|p| format!(r#"{{"name":"s{p}","address":"127.0.0.1:{p}"}}"#))
        .collect();
    format!(
        r#"{{"listen":"127.0.0.1:0","backends":[{}]{extra}}}"#,
        backends.join(",")
    )
}

pub fn half_close(s: &TcpStream) {
    s.shutdown(Shutdown::Write).unwrap();
}

/// A kept-alive HTTP request on `s`; returns who answered (the demo server's body is one
/// line).
pub fn ask(s: &mut TcpStream) -> String {
    s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        let n = s.read(&mut chunk).unwrap();
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&buf));
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf);
        if let Some((_, body)) = text.split_once("\r\n\r\n") {
            if body.ends_with('\n') {
                return who(body);
            }
        }
    }
}

impl Proc {
    /// The address a load balancer listens on (any family), from its startup line.
    pub fn wait_lb_addr(&self) -> SocketAddr {
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end {
            let log = self.log_text();
            if let Some(i) = log.find("msg=\"listening on ") {
                let rest = &log[i + "msg=\"listening on ".len()..];
                if let Some(Ok(addr)) = rest.split_whitespace().next().map(str::parse) {
                    return addr;
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("load balancer did not start: {}", self.log_text());
    }

    /// The admin endpoint's port (on 127.0.0.1), from the startup log.
    pub fn admin_port(&self) -> u16 {
        const LINE: &str = "admin endpoint on http://127.0.0.1:";
        assert!(
            self.wait_log(LINE, 1, Duration::from_secs(10)),
            "{}",
            self.log_text()
        );
        let log = self.log_text();
        let rest = log.split(LINE).nth(1).unwrap();
        let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
        digits.parse().unwrap()
    }
}

/// Sends `request` to `port` on a new connection and reads the answer to its end, all
/// within `within`; returns the status code and body.
pub fn http_exchange(
    port: u16,
    request: &[u8],
    within: Duration,
) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr(port), within)?;
    s.set_read_timeout(Some(within))?;
    s.set_write_timeout(Some(within))?;
    s.write_all(request)?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    let out = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no status in {out:?}")))?;
    Ok((status, body.to_string()))
}

/// A local process holding `n` idle connections to `port` (sending nothing), opening a new
/// one for each that the other end closes, until stopped (at most `limit`). Stopped and
/// joined on drop.
pub struct IdleFlood {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    opened: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    thread: Option<std::thread::JoinHandle<usize>>,
}

impl IdleFlood {
    pub fn start(port: u16, n: usize, limit: Duration) -> IdleFlood {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let opened = std::sync::Arc::new(AtomicUsize::new(0));
        let (stop2, opened2) = (stop.clone(), opened.clone());
        let thread = std::thread::spawn(move || {
            let end = Instant::now() + limit;
            let mut conns: Vec<Option<TcpStream>> = (0..n).map(|_| None).collect();
            let mut closed = 0;
            let mut buf = [0u8; 512];
            while !stop2.load(Ordering::Relaxed) && Instant::now() < end {
                // At most 8 new connections per round: a steady churn, not a SYN flood.
                let mut new = 0;
                for slot in conns.iter_mut() {
                    match slot {
                        Some(s) => match s.read(&mut buf) {
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                            // Closed (with a 408 or without): open another.
                            _ => {
                                *slot = None;
                                closed += 1;
                            }
                        },
                        None if new < 8 => {
                            new += 1;
                            if let Ok(s) =
                                TcpStream::connect_timeout(&addr(port), Duration::from_millis(500))
                            {
                                s.set_nonblocking(true).unwrap();
                                *slot = Some(s);
                                opened2.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        None => {}
                    }
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            closed
        });
        IdleFlood {
            stop,
            opened,
            thread: Some(thread),
        }
    }

    /// Waits until `n` connections have been opened in all.
    pub fn wait_opened(&self, n: usize, within: Duration) -> bool {
        let end = Instant::now() + within;
        while Instant::now() < end {
            if self.opened.load(std::sync::atomic::Ordering::Relaxed) >= n {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    /// Stops; returns how many connections the other end closed.
    pub fn stop(mut self) -> usize {
        self.stop_join()
    }

    fn stop_join(&mut self) -> usize {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread
            .take()
            .map_or(0, |t| t.join().unwrap_or_default())
    }
}

impl Drop for IdleFlood {
    fn drop(&mut self) {
        self.stop_join();
    }
}

/// Resident memory of process `pid`, in KiB (`VmRSS` of `/proc/PID/status`).
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status"))
}
/// The admin port of a load balancer whose config has `"admin":"127.0.0.1:0"`, from its
/// startup log.
pub fn admin_port(lb: &Proc) -> u16 {
    assert!(
        lb.wait_log(
            "admin endpoint on http://127.0.0.1:",
            1,
            Duration::from_secs(10)
        ),
        "{}",
        lb.log_text()
    );
    let log = lb.log_text();
    let rest = log
        .split("admin endpoint on http://127.0.0.1:")
        .nth(1)
        .unwrap();
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().unwrap()
}

/// Sends raw bytes to the admin endpoint; returns the status code and body.
pub fn raw(port: u16, request: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect_timeout(&addr(port), Duration::from_secs(2)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(request).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {out:?}"));
    (status, body.to_string())
}

/// One admin request; returns the status code and body.
pub fn request(port: u16, method: &str, path: &str) -> (u16, String) {
    raw(
        port,
        format!("{method} {path} HTTP/1.1\r\nHost: admin\r\n\r\n").as_bytes(),
    )
}

/// `GET /status` of the admin endpoint on `port`.
pub fn status(port: u16) -> serde_json::Value {
    let (code, body) = request(port, "GET", "/status");
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// The backend's entry in `/status`.
pub fn backend(port: u16, name: &str) -> serde_json::Value {
    status(port)["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no backend {name}"))
}
