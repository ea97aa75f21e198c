//! The command line: `--check`, exit codes and the messages that say what to fix.
// These tests drive real processes on the real clock: the driver's determinism lint
// (lb-runtime/clippy.toml) is for the driver, not for them.
#![allow(clippy::disallowed_methods)]

mod common;
use common::*;
use std::process::Command;
use std::time::Duration;

fn run(args: &[&str], dir: &std::path::Path) -> (Option<i32>, String, String) {
    let out = Command::new(LB)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_prints_a_summary_and_exits_0() {
    let dir = TempDir::new("check");
    let p = dir.write("lb.json", &config(&[5001, 5002], ""));
    let (code, out, _) = run(&["--check", "--config", p.to_str().unwrap()], &dir.0);
    assert_eq!(code, Some(0));
    assert!(
        out.contains("ok: listen 127.0.0.1:0, round_robin over 2 backends"),
        "{out}"
    );
    // Without a config file the built-in default is used.
    let (code, out, _) = run(&["--check"], &dir.0);
    assert_eq!(code, Some(0));
    assert!(
        out.starts_with("built-in config: ok: listen 127.0.0.1:8080"),
        "{out}"
    );
    // PORT overrides the listen port.
    let (code, out, _) = run(&["9999", "--check"], &dir.0);
    assert_eq!(code, Some(0));
    assert!(out.contains("listen 127.0.0.1:9999"), "{out}");
}

#[test]
fn config_errors_exit_2_and_name_the_field() {
    let dir = TempDir::new("bad");
    let cases = [
        (
            r#"{"backends":[{"address":"127.0.0.1:1"},{"address":"localhost"}]}"#,
            r#"bad.json: backends[1].address: invalid socket address "localhost""#,
        ),
        (
            r#"{"backends":[{"address":"127.0.0.1:1"}],"timeouts":{"idle":300}}"#,
            "bad.json: timeouts.idle: invalid duration 300",
        ),
        (
            r#"{"backends":[{"address":"127.0.0.1:1"}],"retrys":1}"#,
            r#"bad.json: unknown field "retrys", did you mean "retries"?"#,
        ),
        (
            r#"{"backends":[]}"#,
            "bad.json: backends: at least one backend is required",
        ),
        ("{\"backends\": [", "bad.json: invalid JSON at line 1"),
    ];
    for (text, expected) in cases {
        let p = dir.write("bad.json", text);
        // --check and a real start fail the same way.
        for check in [true, false] {
            let mut args = vec!["--config", p.to_str().unwrap()];
            if check {
                args.push("--check");
            }
            let (code, _, err) = run(&args, &dir.0);
            assert_eq!(code, Some(2), "{text}: {err}");
            assert!(
                err.contains(expected),
                "{text}\nwanted: {expected}\ngot: {err}"
            );
        }
    }
    let (code, _, err) = run(&["--config", "missing.json"], &dir.0);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("missing.json: cannot read config: no such file"),
        "{err}"
    );
}

#[test]
fn trailing_content_after_the_config_exits_2() {
    let dir = TempDir::new("trailing");
    // A second object, with a misspelled field that would otherwise go unread.
    let text = config(&[5001], "") + "\n{\"helth_check\": {\"interval\": \"1s\"}}\n";
    let p = dir.write("lb.json", &text);
    let (code, out, err) = run(&["--check", "--config", p.to_str().unwrap()], &dir.0);
    assert_eq!(code, Some(2), "{out}{err}");
    assert!(
        err.contains("lb.json: invalid JSON at line 2 column 1: trailing content after the config"),
        "{err}"
    );
}

#[test]
fn usage_errors_exit_2() {
    let dir = TempDir::new("usage");
    let (code, _, err) = run(&["not-a-port"], &dir.0);
    assert_eq!(code, Some(2), "{err}");
    let (code, _, _) = run(&["--frobnicate"], &dir.0);
    assert_eq!(code, Some(2));
}

#[test]
fn a_taken_port_exits_1_and_says_so() {
    let dir = TempDir::new("taken");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let p = dir.write("lb.json", &config(&[5001], ""));
    let mut lb = Proc::spawn(
        LB,
        &[&port.to_string(), "--config", p.to_str().unwrap()],
        &dir.0,
        "lb",
    );
    let status = lb.wait_exit(Duration::from_secs(10)).expect("did not exit");
    assert_eq!(status.code(), Some(1));
    let log = lb.log_text();
    assert!(
        log.contains(&format!(
            "cannot listen on 127.0.0.1:{port}: address already in use"
        )),
        "{log}"
    );
}

#[test]
fn demo_mode_serves_with_no_other_process() {
    let dir = TempDir::new("demo");
    let ports = [free_port(), free_port(), free_port()];
    let p = dir.write("lb.json", &config(&ports, ""));
    let lb = Proc::spawn(
        LB,
        &["0", "--demo", "--config", p.to_str().unwrap()],
        &dir.0,
        "lb",
    );
    lb.wait_up(3);
    let port = lb.wait_lb_port();
    let mut seen: Vec<String> = (0..3).map(|_| who(&http_get(port).unwrap())).collect();
    seen.sort();
    let mut want: Vec<String> = ports.iter().map(|p| format!("s{p}")).collect();
    want.sort();
    assert_eq!(seen, want);
}

#[test]
fn every_example_config_passes_check() {
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut files: Vec<_> = std::fs::read_dir(&examples)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 10, "examples/ has {} configs", files.len());
    let dir = TempDir::new("examples");
    for file in files {
        let (code, out, err) = run(&["--check", "--config", file.to_str().unwrap()], &dir.0);
        let name = file.file_name().unwrap().to_string_lossy();
        assert_eq!(code, Some(0), "{name}: {out}{err}");
        let lines: Vec<&str> = out.lines().collect();
        assert!(
            !lines.is_empty() && lines.iter().all(|l| l.contains(": ok: ")),
            "{name}: wanted one summary line per listener and no warning, got:\n{out}{err}"
        );
    }
}

#[test]
fn foot_guns_are_warnings_that_say_what_to_do() {
    let dir = TempDir::new("warnings");
    // An admin endpoint outside loopback, and a check timeout longer than its interval:
    // valid, but each gets a warning from --check (and in the log at start).
    let p = dir.write(
        "lb.json",
        &config(
            &[5001],
            r#","admin":"0.0.0.0:9000","health_check":{"interval":"1s","timeout":"2s"}"#,
        ),
    );
    let (code, out, _) = run(&["--check", "--config", p.to_str().unwrap()], &dir.0);
    assert_eq!(code, Some(0), "{out}");
    let warnings: Vec<&str> = out.lines().filter(|l| l.contains(": warning: ")).collect();
    assert_eq!(warnings.len(), 2, "{out}");
    assert!(
        warnings[0].contains("admin: 0.0.0.0:9000 is not a loopback address")
            && warnings[0].contains("no authentication"),
        "{out}"
    );
    assert!(
        warnings[1].contains("health_check.timeout: 2s is longer than the interval (1s)"),
        "{out}"
    );
    // A clean config has none.
    let p = dir.write("ok.json", &config(&[5001], ""));
    let (_, out, _) = run(&["--check", "--config", p.to_str().unwrap()], &dir.0);
    assert!(!out.contains(": warning: "), "{out}");

    // No ./config.json and no --config, on a non-terminal (the test's pipe): the built-in
    // demo config runs, and a warning says so and how to pass one.
    let empty = TempDir::new("no-config");
    let port = free_port().to_string();
    let mut lb = Proc::spawn(LB, &[&port], &empty.0, "lb");
    let said = lb.wait_log("using the built-in demo config", 1, Duration::from_secs(10));
    let log = lb.log_text();
    lb.kill();
    assert!(said, "{log}");
    let line = log
        .lines()
        .find(|l| l.contains("using the built-in demo config"))
        .unwrap();
    assert!(line.contains("level=warn"), "{line}");
    assert!(line.contains("pass --config PATH"), "{line}");
}

/// The CPUs in a `/proc` list such as `0-3,8,10-11`.
fn cpu_list(list: &str) -> Vec<usize> {
    let mut cpus = Vec::new();
    for part in list.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => cpus.extend(a.parse::<usize>().unwrap()..=b.parse().unwrap()),
            None => cpus.push(part.parse().unwrap()),
        }
    }
    cpus
}

/// The CPUs a thread (`/proc/self/task/TID` or `/proc/PID/task/TID`) may run on.
fn allowed_cpus(task: &std::path::Path) -> Vec<usize> {
    let status = std::fs::read_to_string(task.join("status")).unwrap();
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .expect("Cpus_allowed_list in /proc/.../status");
    cpu_list(line)
}

/// The load balancer's worker threads by index, each with the CPUs it may run on.
fn workers_cpus(pid: u32) -> Vec<Vec<usize>> {
    let mut workers = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let task = task.unwrap().path();
        let name = std::fs::read_to_string(task.join("comm")).unwrap_or_default();
        if let Some(i) = name.trim().strip_prefix("lb-worker-") {
            workers.push((i.parse::<usize>().unwrap(), allowed_cpus(&task)));
        }
    }
    workers.sort();
    workers.into_iter().map(|(_, cpus)| cpus).collect()
}

/// With one worker per CPU the process may use, each worker runs on a CPU of its own, and
/// the log says which; `--no-cpu-affinity` leaves every worker free to run on any of them.
/// (With a CPU quota, fewer workers than CPUs, none is bound either way.)
#[test]
#[cfg(target_os = "linux")]
fn workers_are_bound_to_a_cpu_each_unless_told_not_to() {
    let dir = TempDir::new("affinity");
    let p = dir.write("lb.json", &config(&[free_port()], ""));
    let allowed = allowed_cpus(std::path::Path::new("/proc/thread-self"));
    for unbound in [false, true] {
        let mut args = vec!["0", "--config", p.to_str().unwrap()];
        if unbound {
            args.push("--no-cpu-affinity");
        }
        let mut lb = Proc::spawn(LB, &args, &dir.0, "lb");
        lb.wait_lb_port();
        let workers = workers_cpus(lb.pid());
        let log = lb.log_text();
        lb.kill();
        assert!(!workers.is_empty(), "no worker threads found\n{log}");
        if !unbound && workers.len() == allowed.len() {
            let want: Vec<Vec<usize>> = allowed.iter().map(|&c| vec![c]).collect();
            assert_eq!(workers, want, "{log}");
            let named = allowed.iter().map(|c| c.to_string()).collect::<Vec<_>>();
            assert!(
                log.contains(&format!("bound to CPUs {}", named.join(","))),
                "{log}"
            );
        } else {
            assert!(workers.iter().all(|w| *w == allowed), "{workers:?}\n{log}");
            assert!(!log.contains("bound to CPUs"), "{log}");
        }
    }
}
