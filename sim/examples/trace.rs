//! Prints one run's plan, its trace between two times (probes included) and its
//! violations, e.g. `cargo run --release -p sim --example trace services 2194 2.0 2.2`
//! (scenario, seed, and optionally the window in seconds; the whole run without one).
use sim::{run, Mutation, Plan, Scenario};
use std::time::Duration;
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: trace SCENARIO SEED [FROM_SECS TO_SECS]";
    let name = args.get(1).expect(usage);
    let Some(scenario) = Scenario::ALL.into_iter().find(|s| s.name() == name) else {
        eprintln!("no scenario {name}; {usage}");
        std::process::exit(2);
    };
    let seed: u64 = args.get(2).and_then(|a| a.parse().ok()).expect(usage);
    let secs = |i: usize, or: f64| {
        args.get(i)
            .and_then(|a| a.parse::<f64>().ok())
            .map_or(Duration::from_secs_f64(or), Duration::from_secs_f64)
    };
    let (from, to) = (secs(3, 0.0), secs(4, 1e6));
    let out = run(Plan::new(scenario, seed, Mutation::None));
    println!("{}", sim::sweep::describe(&out.obs.plan));
    for e in out.trace.iter().filter(|e| e.at >= from && e.at <= to) {
        println!("{e}");
    }
    for v in &out.violations {
        println!("{v}");
    }
}
