//! The checks can fail: deliberately broken load balancers run under the same scenarios,
//! and the simulation must catch each of them, with the check that should.

use sim::sweep::{describe, find_failure};
use sim::{Mutation, Scenario};

fn assert_caught(scenario: Scenario, mutation: Mutation, max_seeds: u64, expected: &[&str]) {
    let Some(out) = find_failure(scenario, mutation, max_seeds) else {
        panic!("{mutation:?} under {scenario} went unnoticed for {max_seeds} seeds");
    };
    let checks: Vec<&str> = out.violations.iter().map(|v| v.check).collect();
    eprintln!(
        "{mutation:?} caught by {checks:?} at seed {}; first: {}\n{}",
        out.obs.plan.seed,
        out.violations[0],
        describe(&out.obs.plan)
    );
    assert!(
        checks.iter().any(|c| expected.contains(c)),
        "{mutation:?} was caught, but not by {expected:?}: {:#?}",
        out.violations
    );
}

/// A selector that ignores health sends connections to dead backends.
#[test]
fn broken_selector_ignoring_health_is_caught() {
    assert_caught(
        Scenario::Crash,
        Mutation::IgnoreHealth,
        10,
        &["selector", "health-down"],
    );
}

/// Health checks ten times too lax keep dead backends in rotation, and live ones out.
#[test]
fn broken_lax_health_is_caught() {
    assert_caught(
        Scenario::Crash,
        Mutation::LaxHealth,
        10,
        &["health-down", "health-up"],
    );
}

/// A load balancer that does not retry fails clients when one backend dies.
#[test]
fn broken_no_retries_is_caught() {
    assert_caught(Scenario::Crash, Mutation::NoRetries, 10, &["retries"]);
}

/// A selector that ignores the client breaks `hash` affinity between load balancers.
#[test]
fn broken_client_blind_hash_is_caught() {
    assert_caught(
        Scenario::HashAffinity,
        Mutation::ClientBlind,
        5,
        &["affinity"],
    );
}
