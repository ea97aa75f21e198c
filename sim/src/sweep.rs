//! Seed sweeps and replay. `SIM_SEED=N` replays the one run of seed `N`; `SIM_SEEDS=K`
//! runs seeds `0..K` instead of a test's default count. A failing run is reported with
//! its seed, the command that replays it, its plan, what the checkers found and the last
//! events of its trace.

use crate::run::{run, RunOutput};
use crate::scenario::{Mutation, Plan, Scenario};
use std::fmt::Write as _;

/// Trace events shown with a failure.
pub const TRACE_TAIL: usize = 30;

/// The seeds to run: `SIM_SEED` alone if set, else `0..SIM_SEEDS`, else `0..default`.
///
/// # Panics
/// If `SIM_SEED` or `SIM_SEEDS` is set but not a number.
pub fn seeds(default: u64) -> Vec<u64> {
    if let Ok(s) = std::env::var("SIM_SEED") {
        return vec![s.trim().parse().expect("SIM_SEED must be a number")];
    }
    let count = match std::env::var("SIM_SEEDS") {
        Ok(s) => s.trim().parse().expect("SIM_SEEDS must be a number"),
        Err(_) => default,
    };
    (0..count).collect()
}

/// A one-paragraph description of a plan.
pub fn describe(plan: &Plan) -> String {
    let kinds: Vec<String> = plan
        .backends
        .iter()
        .zip(&plan.weights)
        .map(|(m, w)| format!("{} w{w}", m.as_str()))
        .collect();
    let s = &plan.lb;
    let mut text = format!(
        "scenario {} seed {} mutation {:?}: {} backends [{}], {} lb, {} clients x {} lanes, {}, interval {}ms, check timeout {}ms, rise {}, fall {}, connect {}ms, idle {}ms, half_close {}ms, retries {}, latency <= {}ms, chaos until {:.1}s, liveness from {:.1}s",
        plan.scenario,
        plan.seed,
        plan.mutation,
        plan.backends.len(),
        kinds.join(", "),
        plan.lbs,
        plan.clients,
        plan.lanes,
        s.algorithm,
        s.interval.as_millis(),
        s.check_timeout.as_millis(),
        s.rise,
        s.fall,
        s.connect_timeout.as_millis(),
        s.idle_timeout.as_millis(),
        s.half_close_timeout.as_millis(),
        s.retries,
        plan.max_latency.as_millis(),
        plan.chaos_end.as_secs_f64(),
        plan.liveness_start.as_secs_f64(),
    );
    let faults: Vec<String> = plan
        .faults
        .iter()
        .map(|(at, f)| format!("{:.3}s {f}", at.as_secs_f64()))
        .collect();
    let _ = write!(
        text,
        "\n  faults: {}",
        if faults.is_empty() {
            "none".to_string()
        } else {
            faults.join("; ")
        }
    );
    if let Some(sv) = &plan.services {
        let pools: Vec<String> = sv
            .pools
            .iter()
            .map(|p| {
                let bs: Vec<String> = p.backends.iter().map(|b| format!("b{b}")).collect();
                format!("{} {} [{}]", p.name, p.algorithm, bs.join(", "))
            })
            .collect();
        let listeners: Vec<String> = sv
            .listeners
            .iter()
            .map(|l| {
                let mut t = format!("{} :{}", l.name, l.port);
                if let Some(p) = l.pool {
                    t.push_str(&format!(" pool {}", sv.pools[p].name));
                }
                for (pattern, p) in &l.sni {
                    t.push_str(&format!(" {pattern}->{}", sv.pools[*p].name));
                }
                if let Some(d) = l.client_hello {
                    t.push_str(&format!(" client_hello {}ms", d.as_millis()));
                }
                if !l.initial {
                    t.push_str(" (not in the first config)");
                }
                t
            })
            .collect();
        let _ = write!(
            text,
            "\n  pools: {}\n  listeners: {}",
            pools.join("; "),
            listeners.join("; ")
        );
    }
    let _ = write!(text, "\n  {} worker(s) per load balancer", plan.workers);
    if plan.initial.iter().any(|c| !c) {
        let absent: Vec<String> = (0..plan.initial.len())
            .filter(|&b| !plan.initial[b])
            .map(|b| format!("b{b}"))
            .collect();
        let _ = write!(text, "; not in the first config: {}", absent.join(", "));
    }
    if let Some(v) = plan.proxy {
        let _ = write!(text, "; proxy_protocol {v}");
    }
    if let Some(list) = &plan.allow {
        let names: Vec<String> = list.iter().map(|c| format!("c{c}")).collect();
        let _ = write!(text, "; allow {}", names.join(", "));
    }
    if let Some(m) = plan.per_client_max {
        let _ = write!(text, "; per_client max_connections {m}");
    }
    if plan.close_on_backend_down {
        let _ = write!(text, "; on_backend_down close");
    }
    if let Some(stop) = plan.stop {
        let _ = write!(
            text,
            "; stop at {:.3}s, grace {}ms",
            stop.at.as_secs_f64(),
            stop.grace.as_millis()
        );
    }
    if !plan.ops.is_empty() {
        let ops: Vec<String> = plan
            .ops
            .iter()
            .map(|(at, op)| format!("{:.3}s {op}", at.as_secs_f64()))
            .collect();
        let _ = write!(text, "\n  operator: {}", ops.join("; "));
    }
    text
}

/// The failure report of a run: seed, replay command, plan, violations and trace tail.
pub fn report(test: &str, out: &RunOutput) -> String {
    let plan = &out.obs.plan;
    let mut r = String::new();
    let _ = writeln!(r, "simulation failed: seed {}", plan.seed);
    let _ = writeln!(r, "replay with: {}", plan.replay_command(test));
    let _ = writeln!(r, "plan: {}", describe(plan));
    let _ = writeln!(r, "{} violation(s):", out.violations.len());
    for v in out.violations.iter().take(20) {
        let _ = writeln!(r, "  {v}");
    }
    if out.violations.len() > 20 {
        let _ = writeln!(r, "  ... and {} more", out.violations.len() - 20);
    }
    // The events up to a second after the first violation with a time (or the end),
    // without the periodic health probes.
    let cutoff = out
        .violations
        .iter()
        .filter_map(|v| v.at)
        .min()
        .map(|t| t + std::time::Duration::from_secs(1));
    let shown: Vec<&crate::trace::Event> = out
        .trace
        .iter()
        .filter(|e| cutoff.is_none_or(|c| e.at <= c))
        .filter(|e| !e.what.contains("(probe "))
        .collect();
    let start = shown.len().saturating_sub(TRACE_TAIL);
    let _ = writeln!(
        r,
        "last {} trace events{} (probes left out; {} events in all):",
        shown.len() - start,
        match cutoff {
            Some(c) => format!(" up to {:.3}s", c.as_secs_f64()),
            None => String::new(),
        },
        out.trace.len()
    );
    for e in &shown[start..] {
        let _ = writeln!(r, "  {e}");
    }
    r
}

/// Runs `scenario` over the seeds (see [`seeds`]) and panics with a [`report`] at the
/// first run that breaks a check. Returns the number of runs.
pub fn check_sweep(test: &str, scenario: Scenario, default: u64) -> usize {
    let seeds = seeds(default);
    for &seed in &seeds {
        let out = run(Plan::new(scenario, seed, Mutation::None));
        if !out.violations.is_empty() {
            panic!("{}", report(test, &out));
        }
    }
    eprintln!(
        "{test}: {} run(s) of scenario {scenario} passed every check",
        seeds.len()
    );
    seeds.len()
}

/// Runs `scenario` with `mutation` over seeds `0..max` and returns the first run a check
/// caught, if any.
pub fn find_failure(scenario: Scenario, mutation: Mutation, max: u64) -> Option<RunOutput> {
    (0..max)
        .map(|seed| run(Plan::new(scenario, seed, mutation)))
        .find(|out| !out.violations.is_empty())
}
