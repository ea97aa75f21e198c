//! The checks' own edges, on recorded runs: a run the wide sweeps once reported falsely
//! passes, and the same run with its observations broken in the way the check exists for
//! is caught. (The broken builds of `broken.rs` show the checks catch broken load
//! balancers; these show where a check's window ends.)

use sim::check::check_all;
use sim::client::Outcome;
use sim::{run, Mutation, Plan, Scenario};
use std::time::Duration;

fn fired(obs: &sim::run::Observations) -> Vec<&'static str> {
    let mut checks: Vec<&'static str> = check_all(obs).iter().map(|v| v.check).collect();
    checks.dedup();
    checks
}

/// Seed 2194 of `services`: a client starts to connect to listener `old` 1 ms before a
/// reload removes it, and its SYN arrives after; the refusal is the reload's and not
/// judged. The same refusal 10 ms earlier, with the listener configured all along, is.
#[test]
fn a_refusal_racing_a_listeners_removal_passes_and_one_before_it_is_caught() {
    let out = run(Plan::new(Scenario::Services, 2194, Mutation::None));
    assert!(out.violations.is_empty(), "{:?}", out.violations);
    let mut obs = out.obs;
    let s = obs
        .sessions
        .iter_mut()
        .find(|s| s.id == "c1.1.6")
        .expect("seed 2194 has session c1.1.6");
    assert_eq!(s.outcome, Outcome::ConnectFailed);
    s.start -= Duration::from_millis(10);
    s.end -= Duration::from_millis(10);
    let checks = fired(&obs);
    assert!(checks.contains(&"listeners"), "{checks:?}");
}

/// Seed 506 of `operate`: two reloads 6 ms apart, each window holding both's log lines,
/// pass; losing one of their "config reloaded" lines (of either node) is caught, as is
/// a line too many.
#[test]
fn reload_lines_of_close_reloads_are_counted_together() {
    let fresh = || run(Plan::new(Scenario::Operate, 506, Mutation::None));
    let out = fresh();
    assert!(out.violations.is_empty(), "{:?}", out.violations);
    let in_group =
        |at: Duration| at >= Duration::from_millis(13_800) && at <= Duration::from_millis(13_830);
    let lines: Vec<usize> = (0..out.obs.log_lines.len())
        .filter(|&i| in_group(out.obs.log_lines[i].at))
        .filter(|&i| out.obs.log_lines[i].message.contains("config reloaded"))
        .collect();
    assert_eq!(lines.len(), 2 * out.obs.plan.lbs, "two reloads, every node");
    for &i in &lines {
        let mut obs = fresh().obs;
        obs.log_lines.remove(i);
        let checks = fired(&obs);
        assert!(checks.contains(&"reload"), "line {i} lost: {checks:?}");
    }
    let mut obs = fresh().obs;
    obs.log_lines.push(obs.log_lines[lines[0]].clone());
    let checks = fired(&obs);
    assert!(checks.contains(&"reload"), "a line too many: {checks:?}");
}
