//! Prints one `fleet` run's plan, trace lines about DNS and pools, and violations, e.g.
//! `cargo run -p sim --example fleet_trace 3` (a seed; optionally a defect by name).
use lb_sans_io::defect::Defect;
use sim::{run, Mutation, Plan, Scenario};
fn main() {
    let seed: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(0);
    let mutation = match std::env::args().nth(2).as_deref() {
        Some("empties") => Mutation::Defect(Defect::DiscoveryEmptiesOnFailure),
        Some("unsorted") => Mutation::Defect(Defect::DiscoveryUnsorted),
        _ => Mutation::None,
    };
    let out = run(Plan::new(Scenario::Fleet, seed, mutation));
    println!("{}", sim::sweep::describe(&out.obs.plan));
    for e in &out.trace {
        let line = format!("{e:?}");
        if line.contains("dns") || line.contains("pool lists") {
            println!("{line}");
        }
    }
    println!(
        "{} sessions, end {:.1}s",
        out.obs.sessions.len(),
        out.obs.end.as_secs_f64()
    );
    for v in &out.violations {
        println!("{v}");
    }
}
