//! The same seed gives the same run: two runs of one seed record equal traces (compared
//! by hash, and event by event when they differ), and different seeds differ.

use sim::sweep::seeds;
use sim::{run, Mutation, Plan, Scenario};

fn assert_replays(scenario: Scenario, seed: u64) {
    let a = run(Plan::new(scenario, seed, Mutation::None));
    let b = run(Plan::new(scenario, seed, Mutation::None));
    if a.trace_hash != b.trace_hash {
        let at = a
            .trace
            .iter()
            .zip(&b.trace)
            .position(|(x, y)| x != y)
            .unwrap_or(a.trace.len().min(b.trace.len()));
        panic!(
            "seed {seed} of {scenario} did not replay: traces of {} and {} events differ at event {at}:\n  first run:  {}\n  second run: {}\nreplay with: SIM_SEED={seed} cargo test -p sim same_seed_same_trace",
            a.trace.len(),
            b.trace.len(),
            a.trace.get(at).map(|e| e.to_string()).unwrap_or_default(),
            b.trace.get(at).map(|e| e.to_string()).unwrap_or_default(),
        );
    }
    assert!(a.trace.len() > 100, "a run records a real trace");
    assert_eq!(a.violations, b.violations);
}

#[test]
fn same_seed_same_trace() {
    for seed in seeds(2) {
        assert_replays(Scenario::Mix, seed);
        assert_replays(Scenario::MidTransfer, seed);
        assert_replays(Scenario::Operate, seed);
        assert_replays(Scenario::Services, seed);
    }
}

#[test]
fn different_seeds_differ() {
    let a = run(Plan::new(Scenario::Crash, 1, Mutation::None));
    let b = run(Plan::new(Scenario::Crash, 2, Mutation::None));
    assert_ne!(a.trace_hash, b.trace_hash);
}
