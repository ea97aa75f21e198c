//! Runs many seeds of every scenario and prints each failing run's violations (without
//! stopping at the first), e.g. `cargo run --release -p sim --example explore 200`
//! (count, first seed, and optionally one scenario by name: `explore 3000 0 fleet`).
use sim::{run, Mutation, Plan, Scenario};
fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100);
    let first: u64 = std::env::args()
        .nth(2)
        .and_then(|a| a.parse().ok())
        .unwrap_or(0);
    let only = std::env::args().nth(3);
    for scenario in Scenario::ALL
        .into_iter()
        .filter(|s| only.as_deref().is_none_or(|o| o == s.name()))
    {
        let mut failed = 0;
        for seed in first..first + n {
            let out = run(Plan::new(scenario, seed, Mutation::None));
            if !out.violations.is_empty() {
                failed += 1;
                println!("FAIL {scenario} seed {seed}:");
                for v in out.violations.iter().take(5) {
                    println!("    {v}");
                }
            }
        }
        println!("{scenario}: {failed} of {n} failed");
    }
}
