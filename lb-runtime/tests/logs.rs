//! The log lines parse: every line of a run as logfmt (with a logfmt parser from
//! crates.io, not ours) and, with `--log-format json`, as one JSON object; and a
//! connection's close line carries the fields the contract names.
// These tests drive real processes on the real clock: the driver's determinism lint
// (lb-runtime/clippy.toml) is for the driver, not for them.
#![allow(clippy::disallowed_methods)]

mod common;
use common::*;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n";

/// One log line's fields, every value as text.
type Fields = BTreeMap<String, String>;

/// A log line as logfmt: every key with a value, no key twice.
fn parse_logfmt(line: &str) -> Result<Fields, String> {
    let mut fields = Fields::new();
    for pair in logfmt::parse(line) {
        let Some(val) = pair.val else {
            return Err(format!("key {:?} has no value in {line:?}", pair.key));
        };
        if fields.insert(pair.key.clone(), val).is_some() {
            return Err(format!("key {:?} twice in {line:?}", pair.key));
        }
    }
    for key in ["time", "level", "msg"] {
        if !fields.contains_key(key) {
            return Err(format!("no {key} in {line:?}"));
        }
    }
    Ok(fields)
}

/// A log line as JSON: one object with `timestamp`, `level` and `message`, its values
/// as text (strings unquoted).
fn parse_json(line: &str) -> Result<Fields, String> {
    let value: serde_json::Value =
        serde_json::from_str(line).map_err(|e| format!("{e} in {line:?}"))?;
    let object = value
        .as_object()
        .ok_or_else(|| format!("not an object: {line:?}"))?;
    let mut fields = Fields::new();
    for (k, v) in object {
        let text = match v {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Number(n) => n.to_string(),
            serde_json::Value::Bool(b) => b.to_string(),
            other => return Err(format!("{k} is {other} in {line:?}")),
        };
        // The logfmt names, so one check reads both.
        let key = match k.as_str() {
            "timestamp" => "time",
            "message" => "msg",
            k => k,
        };
        fields.insert(key.to_string(), text);
    }
    for key in ["time", "level", "msg"] {
        if !fields.contains_key(key) {
            return Err(format!("no {key} in {line:?}"));
        }
    }
    Ok(fields)
}

/// Every line of the log, parsed; panics naming the first that does not parse.
fn parsed(lb: &Proc, parse: fn(&str) -> Result<Fields, String>) -> Vec<Fields> {
    lb.log_text()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| parse(l).unwrap_or_else(|e| panic!("a log line does not parse: {e}")))
        .collect()
}

/// Waits (up to 10 s) for a line whose `msg` starts with `prefix`.
fn wait_line(lb: &Proc, parse: fn(&str) -> Result<Fields, String>, prefix: &str) -> Fields {
    let end = Instant::now() + Duration::from_secs(10);
    while Instant::now() < end {
        if let Some(f) = parsed(lb, parse)
            .into_iter()
            .find(|f| f["msg"].starts_with(prefix))
        {
            return f;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("no {prefix:?} line in: {}", lb.log_text());
}

fn number(fields: &Fields, key: &str) -> f64 {
    fields
        .get(key)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{key} is not a number: {fields:?}"))
}

/// Starts `loadbalancer --demo` with `args`, makes one HTTP request through it, stops it,
/// and checks every line and the connection's close line.
fn one_connection(tag: &str, args: &[&str], parse: fn(&str) -> Result<Fields, String>) {
    let dir = TempDir::new(tag);
    let backend_port = free_port();
    let p = dir.write("lb.json", &config(&[backend_port], ""));
    let mut all = vec!["--demo", "--config", p.to_str().unwrap()];
    all.extend_from_slice(args);
    let mut lb = Proc::spawn(LB, &all, &dir.0, "lb");

    let listening = wait_line(&lb, parse, "listening on 127.0.0.1:");
    let port: u16 = listening["msg"]["listening on 127.0.0.1:".len()..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|d| d.parse().ok())
        .unwrap_or_else(|| panic!("no port in {listening:?}"));
    wait_line(&lb, parse, "backend s");

    let mut s = TcpStream::connect_timeout(&addr(port), Duration::from_secs(2)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let client = s.local_addr().unwrap().to_string();
    s.write_all(REQUEST).unwrap();
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).unwrap();
    drop(s);
    assert!(answer.starts_with(b"HTTP/1.1 200"), "{answer:?}");

    let closed = wait_line(&lb, parse, "connection closed");
    lb.signal("TERM");
    assert!(
        lb.wait_exit(Duration::from_secs(10)).is_some(),
        "did not exit"
    );
    // Every line of the whole run parses (the exit's lines included).
    let lines = parsed(&lb, parse);
    assert!(lines.len() >= 4, "{}", lb.log_text());

    let text = |k: &str| closed.get(k).map(String::as_str);
    assert_eq!(
        text("level").map(str::to_lowercase).as_deref(),
        Some("info")
    );
    assert_eq!(text("listener"), Some("default"), "{closed:?}");
    assert_eq!(text("client"), Some(client.as_str()), "{closed:?}");
    assert_eq!(text("pool"), Some("default"), "{closed:?}");
    let backend = format!("s{backend_port}");
    assert_eq!(text("backend"), Some(backend.as_str()), "{closed:?}");
    let backend_address = format!("127.0.0.1:{backend_port}");
    assert_eq!(
        text("backend_address"),
        Some(backend_address.as_str()),
        "{closed:?}"
    );
    let connect_ms = number(&closed, "connect_ms");
    let duration_ms = number(&closed, "duration_ms");
    assert!(connect_ms >= 0.0 && connect_ms <= duration_ms, "{closed:?}");
    assert!(duration_ms < 10_000.0, "{closed:?}");
    assert_eq!(number(&closed, "retries"), 0.0, "{closed:?}");
    assert_eq!(
        number(&closed, "bytes_from_client"),
        REQUEST.len() as f64,
        "{closed:?}"
    );
    assert_eq!(
        number(&closed, "bytes_from_backend"),
        answer.len() as f64,
        "{closed:?}"
    );
    assert_eq!(text("end"), Some("completed"), "{closed:?}");
    assert_eq!(text("detail"), Some("completed"), "{closed:?}");
    assert_eq!(text("msg"), Some("connection closed"), "{closed:?}");
}

#[test]
fn text_logs_parse_as_logfmt_and_the_close_line_has_its_fields() {
    one_connection("logfmt", &[], parse_logfmt);
}

#[test]
fn json_logs_parse_and_the_close_line_has_its_fields() {
    one_connection("json", &["--log-format", "json"], parse_json);
}

/// `RUST_LOG` governs the close line as it does every line: with the flow task's lines
/// at `warn`, a completed connection leaves none, while the other `info` lines are there.
#[test]
fn rust_log_can_silence_the_close_line() {
    let dir = TempDir::new("quiet-close");
    let backend_port = free_port();
    let p = dir.write("lb.json", &config(&[backend_port], ""));
    let args = ["--demo", "--config", p.to_str().unwrap()];
    let filter = "info,lb_runtime::flow_task=warn";
    let mut lb = Proc::spawn_logging(LB, &args, &dir.0, "lb", filter);
    let port = lb.wait_lb_port();
    wait_line(&lb, parse_logfmt, "backend s");

    let mut s = TcpStream::connect_timeout(&addr(port), Duration::from_secs(2)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(REQUEST).unwrap();
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).unwrap();
    drop(s);
    assert!(answer.starts_with(b"HTTP/1.1 200"), "{answer:?}");

    lb.signal("TERM");
    assert!(
        lb.wait_exit(Duration::from_secs(10)).is_some(),
        "did not exit"
    );
    // Flushed at exit: every line the run wrote is in the file now.
    let lines = parsed(&lb, parse_logfmt);
    assert!(
        lines.iter().any(|f| f["msg"].starts_with("listening on")),
        "{}",
        lb.log_text()
    );
    assert!(
        !lines.iter().any(|f| f["msg"] == "connection closed"),
        "{}",
        lb.log_text()
    );
}

#[test]
fn the_parser_used_here_rejects_an_unquoted_value_with_a_space() {
    assert!(parse_logfmt("time=1 level=info msg=x end=rejected (no_backend)").is_err());
    assert!(parse_logfmt(r#"time=1 level=info msg="a b" end=rejected"#).is_ok());
    assert!(parse_json("time=1").is_err());
}
