//! The admin dashboard (`GET /`) in a real headless browser: Chromium, driven over the
//! Chrome DevTools Protocol (a websocket), looks at the page as a person would.
//!
//! - Every backend's name and state is visible, a down backend shows why its check failed
//!   (`connection refused`), bytes are human-readable, a name with markup in it shows as
//!   text (and injects nothing).
//! - Clicking a backend's Drain button drains it (seen through `/status`) and the page
//!   shows it; a refused action shows the endpoint's JSON error on the page.
//!
//! Skipped (passing, with the reason printed) where no `chromium` or `chromium-browser` is
//! on the PATH (`apt-get install chromium`; `.ci/run` installs it).
//!
//! A screenshot for the README: run this test with `LB_DASHBOARD_SCREENSHOT=PATH.png`
//! (it saves the page after the drain: backends up, down with a reason, and draining):
//!
//! ```text
//! LB_DASHBOARD_SCREENSHOT=/tmp/dashboard.png cargo test -p lb-runtime --test dashboard -- --nocapture
//! ```
//!
//! or, against a running load balancer (admin on 127.0.0.1:9000), with Chromium alone:
//!
//! ```text
//! chromium --headless --no-sandbox --disable-gpu --window-size=1800,1000 \
//!   --virtual-time-budget=5000 --screenshot=/tmp/dashboard.png http://127.0.0.1:9000/
//! ```
// These tests drive real processes on the real clock: the driver's determinism lint
// (lb-runtime/clippy.toml) is for the driver, not for them.
#![allow(clippy::disallowed_methods)]

mod common;
use common::*;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The first of `chromium`, `chromium-browser` on the PATH.
fn find_chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    ["chromium", "chromium-browser"].iter().find_map(|name| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    })
}

/// Headless Chromium in its own process group; the group is killed by its id (the
/// browser's PID) on drop, so its helper processes go too.
struct Chromium {
    child: Child,
    log: PathBuf,
    /// The browser's DevTools websocket URL.
    ws_url: String,
}

impl Chromium {
    fn start(bin: &Path, dir: &Path) -> Chromium {
        let profile = dir.join("chromium-profile");
        std::fs::create_dir_all(&profile).unwrap();
        let log = dir.join("chromium.log");
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(bin)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-extensions",
                "--disable-background-networking",
                "--no-first-run",
                "--no-default-browser-check",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                "--window-size=1800,1000",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .process_group(0)
            .spawn()
            .unwrap();
        let mut c = Chromium {
            child,
            log,
            ws_url: String::new(),
        };
        // DevToolsActivePort: the port, then the browser's websocket path.
        let file = profile.join("DevToolsActivePort");
        let end = Instant::now() + Duration::from_secs(30);
        while Instant::now() < end {
            let text = std::fs::read_to_string(&file).unwrap_or_default();
            let mut lines = text.lines();
            if let (Some(port), Some(path)) = (lines.next(), lines.next()) {
                c.ws_url = format!("ws://127.0.0.1:{port}{path}");
                return c;
            }
            if let Ok(Some(status)) = c.child.try_wait() {
                panic!("chromium exited ({status}): {}", c.log_text());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "chromium wrote no DevToolsActivePort in 30 s: {}",
            c.log_text()
        );
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        // The whole group (renderers, zygote, ...): its id is the browser's PID.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One page of the browser, attached over the DevTools protocol (flat session).
struct Page {
    ws: tungstenite::WebSocket<TcpStream>,
    session: String,
    next_id: u64,
}

impl Page {
    fn attach(browser: &Chromium) -> Page {
        let rest = browser.ws_url.trim_start_matches("ws://");
        let host = rest.split('/').next().unwrap();
        let stream = TcpStream::connect(host).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let (ws, _) = tungstenite::client(browser.ws_url.as_str(), stream)
            .unwrap_or_else(|e| panic!("devtools websocket {}: {e}", browser.ws_url));
        let mut page = Page {
            ws,
            session: String::new(),
            next_id: 0,
        };
        let targets = page.call("Target.getTargets", json!({}), false);
        let target = targets["targetInfos"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["type"] == "page")
            .unwrap_or_else(|| panic!("no page target: {targets}"))["targetId"]
            .clone();
        let attached = page.call(
            "Target.attachToTarget",
            json!({ "targetId": target, "flatten": true }),
            false,
        );
        page.session = attached["sessionId"].as_str().unwrap().to_string();
        page
    }

    /// Sends a command (to the page's session if `on_page`) and waits (up to 10 s) for its
    /// answer, skipping events; panics on an error answer.
    fn call(&mut self, method: &str, params: Value, on_page: bool) -> Value {
        self.try_call(method, params, on_page)
            .unwrap_or_else(|e| panic!("{method}: {e}"))
    }

    /// [`Page::call`], with an error answer as `Err`.
    fn try_call(&mut self, method: &str, params: Value, on_page: bool) -> Result<Value, Value> {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({ "id": id, "method": method, "params": params });
        if on_page {
            msg["sessionId"] = json!(self.session);
        }
        self.ws
            .send(tungstenite::Message::text(msg.to_string()))
            .unwrap();
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end {
            let m = self
                .ws
                .read()
                .unwrap_or_else(|e| panic!("{method}: devtools: {e}"));
            let tungstenite::Message::Text(text) = m else {
                continue;
            };
            let v: Value = serde_json::from_str(text.as_str()).unwrap();
            if v["id"] == id {
                return match v["error"].is_null() {
                    true => Ok(v["result"].clone()),
                    false => Err(v),
                };
            }
        }
        panic!("{method}: no answer in 10 s");
    }

    /// Evaluates `expr` in the page; its value (JSON), or the error (an exception, or no
    /// context while the page loads).
    fn try_eval(&mut self, expr: &str) -> Result<Value, Value> {
        let r = self.try_call(
            "Runtime.evaluate",
            json!({ "expression": expr, "returnByValue": true, "awaitPromise": true }),
            true,
        )?;
        match r["exceptionDetails"].is_null() {
            true => Ok(r["result"]["value"].clone()),
            false => Err(r),
        }
    }

    fn eval(&mut self, expr: &str) -> Value {
        self.try_eval(expr)
            .unwrap_or_else(|e| panic!("{expr}: {e}"))
    }

    /// Evaluates `expr` every 100 ms until `ok` holds for its value (at most `within`);
    /// the last value either way.
    fn wait_for(&mut self, expr: &str, within: Duration, ok: impl Fn(&Value) -> bool) -> Value {
        let end = Instant::now() + within;
        loop {
            let v = self.try_eval(expr).unwrap_or(Value::Null);
            if ok(&v) || Instant::now() >= end {
                return v;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// What a person sees: the page's rendered text, and per backend row its cells' text.
const VIEW: &str = r#"(() => {
  if (!document.getElementById("message")) return null;
  const cell = (tr, c) => { const e = tr.querySelector("td." + c); return e ? e.innerText : null; };
  return {
    body: document.body.innerText,
    title: document.title,
    images: document.images.length,
    message: document.getElementById("message").innerText,
    messageClass: document.getElementById("message").className,
    rows: [...document.querySelectorAll("tr.backend")].map((tr) => ({
      pool: tr.dataset.pool,
      name: cell(tr, "c-name"),
      state: cell(tr, "c-state"),
      check: cell(tr, "c-check"),
      to_backend: cell(tr, "c-to-backend"),
      to_client: cell(tr, "c-to-client"),
      rate: cell(tr, "c-rate-to-backend"),
      downtime: cell(tr, "c-downtime"),
      weight: cell(tr, "c-weight"),
      text: tr.innerText,
    })),
  };
})()"#;

fn row<'a>(view: &'a Value, pool: &str, name: &str) -> Option<&'a Value> {
    view["rows"]
        .as_array()?
        .iter()
        .find(|r| r["pool"] == pool && r["name"] == name)
}

fn row_is(view: &Value, pool: &str, name: &str, field: &str, want: impl Fn(&str) -> bool) -> bool {
    row(view, pool, name)
        .and_then(|r| r[field].as_str())
        .is_some_and(want)
}

/// A JS expression clicking the button `action` in the row of `pool`/`name`; true if found.
fn click(pool: &str, name: &str, action: &str) -> String {
    format!(
        r#"(() => {{
  const tr = [...document.querySelectorAll("tr.backend")]
    .find((t) => t.dataset.pool === {pool} && t.dataset.backend === {name});
  const b = tr && tr.querySelector('button[data-action="{action}"]');
  if (!b) return false;
  b.click();
  return true;
}})()"#,
        pool = json!(pool),
        name = json!(name),
    )
}

/// The backend `name` of `pool` in `/status`.
fn status_backend(admin: u16, pool: &str, name: &str) -> Value {
    status(admin)["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["pool"] == pool && b["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no backend {pool}/{name} in /status"))
}

/// Standard base64 (the screenshot DevTools sends).
fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    };
    let bytes: Vec<u8> = s.bytes().filter(|&c| c != b'=').map(val).collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut n = 0u32;
        for (i, b) in chunk.iter().enumerate() {
            n |= u32::from(*b) << (18 - 6 * i);
        }
        out.extend_from_slice(&n.to_be_bytes()[1..chunk.len()]);
    }
    out
}

/// A backend name that would run script if it were inserted as markup (names may not
/// contain quotes).
const WEIRD: &str = "<img src=x onerror=document.title=1>";

#[test]
fn the_dashboard_in_a_browser_shows_backends_and_drains_one() {
    let Some(chromium) = find_chromium() else {
        println!(
            "SKIPPED: no `chromium` or `chromium-browser` on the PATH; install Debian's \
             `chromium` package to run the dashboard browser test"
        );
        return;
    };
    let dir = TempDir::new("dashboard");
    let (web_port, weird_port, echo_port, dead_port) =
        (free_port(), free_port(), free_port(), free_port());
    let _web = start_server(&dir.0, web_port, "alpha", false);
    let _weird = start_server(&dir.0, weird_port, "weird", false);
    let _echo = start_server(&dir.0, echo_port, "echo", true);
    // Nothing listens on dead_port: its checks fail with `connection refused`.
    let (web_listen, bulk_listen, tls_listen) = (free_port(), free_port(), free_port());
    let backend =
        |name: &str, port: u16| json!({ "name": name, "address": format!("127.0.0.1:{port}") });
    let checks = json!({ "interval": "100ms", "timeout": "100ms" });
    let config = json!({
        "listeners": [
            { "name": "web", "listen": format!("127.0.0.1:{web_listen}"), "pool": "web" },
            { "name": "bulk", "listen": format!("127.0.0.1:{bulk_listen}"), "pool": "bulk" },
            { "name": "tls", "listen": format!("127.0.0.1:{tls_listen}"),
              "sni": { "*.example.com": "web" } }
        ],
        "pools": {
            "web": { "health_check": checks, "backends": [
                backend("alpha", web_port), backend(WEIRD, weird_port), backend("dead", dead_port)
            ] },
            "bulk": { "health_check": checks, "backends": [ backend("echo", echo_port) ] }
        },
        "admin": "127.0.0.1:0"
    });
    let path = dir.write("config.json", &config.to_string());
    let lb = Proc::spawn(LB, &["--config", path.to_str().unwrap()], &dir.0, "lb");
    let admin = admin_port(&lb);
    lb.wait_up(3);
    assert!(wait_listening(bulk_listen, Duration::from_secs(5)));

    // Traffic: a few requests through `web`, 1.5 MiB each way through `bulk` (echo).
    for _ in 0..4 {
        http_get(web_listen).unwrap();
    }
    let payload = vec![b'x'; 3 * 512 * 1024];
    {
        let mut s = TcpStream::connect(addr(bulk_listen)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut writer = s.try_clone().unwrap();
        let data = payload.clone();
        let sender = std::thread::spawn(move || {
            writer.write_all(&data).unwrap();
            half_close(&writer);
        });
        let mut back = Vec::new();
        s.read_to_end(&mut back).unwrap();
        sender.join().unwrap();
        assert_eq!(back.len(), payload.len());
    }
    let end = Instant::now() + Duration::from_secs(10);
    while status_backend(admin, "bulk", "echo")["bytes_to_client"] != json!(payload.len())
        && Instant::now() < end
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        status_backend(admin, "bulk", "echo")["bytes_to_backend"],
        json!(payload.len())
    );

    let browser = Chromium::start(&chromium, &dir.0);
    let mut page = Page::attach(&browser);
    let origin = format!("http://127.0.0.1:{admin}");
    page.call(
        "Page.navigate",
        json!({ "url": format!("{origin}/") }),
        true,
    );

    // What a person sees once two polls have given rates.
    let ready = |v: &Value| {
        row_is(v, "web", "alpha", "state", |s| s == "up")
            && row_is(v, "web", WEIRD, "state", |s| s == "up")
            && row_is(v, "web", "dead", "check", |s| {
                s.contains("connection refused")
            })
            && row_is(v, "bulk", "echo", "rate", |s| s.ends_with("/s"))
    };
    let view = page.wait_for(VIEW, Duration::from_secs(20), ready);
    assert!(
        ready(&view),
        "the page did not show the backends: {view:#}\nchromium: {}",
        browser.log_text()
    );
    let body = view["body"].as_str().unwrap();
    for name in ["alpha", WEIRD, "dead", "echo"] {
        assert!(body.contains(name), "{name} not visible in\n{body}");
    }
    // The down backend: its state and why, as text a person reads.
    let dead = row(&view, "web", "dead").unwrap();
    assert_eq!(dead["state"], "down", "{dead}");
    assert!(
        dead["text"]
            .as_str()
            .unwrap()
            .contains("connection refused"),
        "{dead}"
    );
    // Bytes in binary units.
    let echo = row(&view, "bulk", "echo").unwrap();
    assert_eq!(echo["to_backend"], "1.50 MiB", "{echo}");
    assert_eq!(echo["to_client"], "1.50 MiB", "{echo}");
    // The name with markup shows as text and injected nothing.
    assert_eq!(view["images"], 0, "markup from a name became an element");
    assert_ne!(view["title"], "1", "markup from a name ran");
    // Listeners with their routes; the header; the real admin URL in the curl examples.
    for part in [
        "SNI *.example.com \u{2192} web",
        "rejected (no_route)",
        &format!("127.0.0.1:{bulk_listen}"),
        &format!("on 127.0.0.1:{web_listen}"),
        &format!("curl -X POST {origin}/pools/POOL/backends/NAME/drain"),
    ] {
        assert!(body.contains(part), "{part:?} not visible in\n{body}");
    }

    // Drain alpha with its button: /status says draining, then the page does.
    assert_eq!(page.eval(&click("web", "alpha", "drain")), json!(true));
    let end = Instant::now() + Duration::from_secs(5);
    while status_backend(admin, "web", "alpha")["state"] != "draining" && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        status_backend(admin, "web", "alpha")["state"],
        "draining",
        "the Drain button did not drain alpha; page: {:#}",
        page.eval(VIEW)
    );
    let drained = |v: &Value| row_is(v, "web", "alpha", "state", |s| s == "draining");
    let view = page.wait_for(VIEW, Duration::from_secs(10), drained);
    assert!(drained(&view), "{view:#}");
    assert!(
        view["message"].as_str().unwrap().contains("drain alpha"),
        "{view:#}"
    );
    // The others are untouched.
    assert_eq!(status_backend(admin, "web", WEIRD)["state"], "up");

    if let Some(path) = std::env::var_os("LB_DASHBOARD_SCREENSHOT") {
        let shot = page.call(
            "Page.captureScreenshot",
            json!({ "format": "png", "captureBeyondViewport": true }),
            true,
        );
        std::fs::write(&path, base64_decode(shot["data"].as_str().unwrap())).unwrap();
        println!("screenshot saved to {}", PathBuf::from(path).display());
    }

    // A refused action (weight 0 is out of range; before the weight endpoint existed, an
    // unknown action): the endpoint's JSON error, on the page.
    const SET_ZERO: &str = r#"(() => {
  const tr = [...document.querySelectorAll("tr.backend")].find((t) => t.dataset.backend === "alpha");
  tr.querySelector('input[type="number"]').value = "0";
  tr.querySelector('button[data-action="weight"]').click();
  return true;
})()"#;
    page.eval(SET_ZERO);
    let failed = |v: &Value| v["messageClass"] == "error";
    let view = page.wait_for(VIEW, Duration::from_secs(5), failed);
    let message = view["message"].as_str().unwrap();
    assert!(failed(&view), "{view:#}");
    assert!(
        message.contains("weight alpha (pool web) failed: 4"),
        "{message}"
    );
    assert!(
        !message.contains("{\""),
        "the JSON error was not unpacked: {message}"
    );
    assert_eq!(status_backend(admin, "web", "alpha")["weight"], 1);

    // A weight in range is applied: /status has it, and the page shows it.
    const SET_SEVEN: &str = r#"(() => {
  const tr = [...document.querySelectorAll("tr.backend")].find((t) => t.dataset.backend === "alpha");
  tr.querySelector('input[type="number"]').value = "7";
  tr.querySelector('button[data-action="weight"]').click();
  return true;
})()"#;
    page.eval(SET_SEVEN);
    let end = Instant::now() + Duration::from_secs(5);
    while status_backend(admin, "web", "alpha")["weight"] != 7 && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        status_backend(admin, "web", "alpha")["weight"],
        7,
        "the Set button did not set the weight; page: {:#}",
        page.eval(VIEW)
    );
    let set = |v: &Value| {
        v["messageClass"] != "error"
            && v["message"]
                .as_str()
                .is_some_and(|m| m.contains("weight alpha"))
    };
    let view = page.wait_for(VIEW, Duration::from_secs(5), set);
    assert!(set(&view), "{view:#}");
    // The down backend's downtime is counted and shown (not "-").
    let down = status_backend(admin, "web", "dead");
    assert!(
        down["downtime_ms"].as_u64().is_some_and(|d| d > 0),
        "{down}"
    );
    let shown = |v: &Value| row_is(v, "web", "dead", "downtime", |s| s != "-" && !s.is_empty());
    let view = page.wait_for(VIEW, Duration::from_secs(5), shown);
    assert!(shown(&view), "{view:#}");
    drop(page);
    drop(browser);
}
