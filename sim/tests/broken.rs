//! The checks can fail: deliberately broken load balancers run under the same scenarios,
//! and the simulation must catch each of them with every check that should: a broken
//! build passes only when each expected check fired in some run.

use lb_sans_io::defect::Defect;
use sim::sweep::describe;
use sim::{Mutation, Plan, Scenario};
use std::collections::BTreeSet;

/// Runs `mutation` under `scenario` over seeds `0..max_seeds` until every one of
/// `expected` has fired; panics naming those that never did.
fn assert_caught(scenario: Scenario, mutation: Mutation, max_seeds: u64, expected: &[&str]) {
    let mut fired: BTreeSet<&'static str> = BTreeSet::new();
    for seed in 0..max_seeds {
        let out = sim::run(Plan::new(scenario, seed, mutation));
        for v in &out.violations {
            if expected.contains(&v.check) && fired.insert(v.check) {
                eprintln!(
                    "{mutation:?} under {scenario}: [{}] fired at seed {seed}: {}\n{}",
                    v.check,
                    v.detail,
                    describe(&out.obs.plan)
                );
            }
        }
        if expected.iter().all(|c| fired.contains(c)) {
            return;
        }
    }
    let missing: Vec<&&str> = expected.iter().filter(|c| !fired.contains(*c)).collect();
    panic!("{mutation:?} under {scenario}: {missing:?} never fired in {max_seeds} seeds (fired: {fired:?})");
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

/// A drain or disable answered but not applied keeps sending clients to the backend.
#[test]
fn broken_admin_that_does_nothing_is_caught() {
    assert_caught(
        Scenario::Operate,
        Mutation::Defect(Defect::AdminIgnored),
        10,
        &["admin"],
    );
}

/// A reload that forgets the health of the backends it keeps takes them out of rotation.
#[test]
fn broken_reload_forgetting_health_is_caught() {
    assert_caught(
        Scenario::Operate,
        Mutation::Defect(Defect::ReloadForgetsHealth),
        10,
        &["reload"],
    );
}

/// A reload that leaves removed backends in rotation keeps sending them clients.
#[test]
fn broken_reload_keeping_removed_backends_is_caught() {
    assert_caught(
        Scenario::Operate,
        Mutation::Defect(Defect::ReloadKeepsRemoved),
        10,
        &["reload"],
    );
}

/// A stop that drops open connections at the end of the grace period, without releasing,
/// counting or logging them.
#[test]
fn broken_stop_dropping_connections_is_caught() {
    assert_caught(
        Scenario::Operate,
        Mutation::Defect(Defect::StopDropsFlows),
        10,
        &["stop"],
    );
}

/// A PROXY header that names the load balancer instead of the client.
#[test]
fn broken_proxy_header_is_caught() {
    assert_caught(
        Scenario::Operate,
        Mutation::Defect(Defect::ProxyWrongClient),
        5,
        &["proxy"],
    );
}

/// An allow-list that is not enforced lets every client through.
#[test]
fn broken_allow_list_is_caught() {
    assert_caught(
        Scenario::Operate,
        Mutation::Defect(Defect::AllowIgnored),
        10,
        &["allow"],
    );
}
