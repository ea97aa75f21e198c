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

/// An admin weight change answered 200 and not applied.
#[test]
fn broken_weight_change_that_does_nothing_is_caught() {
    assert_caught(
        Scenario::Operate,
        Mutation::Defect(Defect::WeightIgnored),
        20,
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

/// A driver that loses one chunk on its way to the client (reporting it written).
#[test]
fn broken_driver_dropping_a_chunk_is_caught() {
    assert_caught(
        Scenario::MidTransfer,
        Mutation::Defect(Defect::DropChunk),
        10,
        &["bytes"],
    );
}

/// A driver that sends one chunk twice.
#[test]
fn broken_driver_duplicating_a_chunk_is_caught() {
    assert_caught(
        Scenario::MidTransfer,
        Mutation::Defect(Defect::DuplicateChunk),
        10,
        &["bytes"],
    );
}

/// A driver that swaps two chunks.
#[test]
fn broken_driver_reordering_chunks_is_caught() {
    assert_caught(
        Scenario::MidTransfer,
        Mutation::Defect(Defect::ReorderChunks),
        10,
        &["bytes"],
    );
}

/// Connections reset for no reason of their own, in the chaos and in the liveness phase.
#[test]
fn broken_driver_resetting_healthy_connections_is_caught() {
    assert_caught(
        Scenario::Crash,
        Mutation::Defect(Defect::SpuriousReset),
        10,
        &["close-cause", "liveness"],
    );
}

/// A selector that always picks the first usable backend: a recovered backend never gets
/// its turn again while one before it is up.
#[test]
fn broken_selector_favouring_the_first_backend_is_caught() {
    assert_caught(
        Scenario::Crash,
        Mutation::FirstAvailable,
        20,
        &["health-traffic"],
    );
}

/// A pool that counts one connection twice.
#[test]
fn broken_counters_are_caught() {
    assert_caught(
        Scenario::Crash,
        Mutation::Defect(Defect::CountersOffByOne),
        5,
        &["counters"],
    );
}

/// A driver that never gives some closed connections back to the pool.
#[test]
fn broken_driver_leaking_flows_is_caught() {
    assert_caught(
        Scenario::Crash,
        Mutation::Defect(Defect::LeakFlow),
        5,
        &["leak"],
    );
}

/// A backend that went down never comes back, whatever its checks say.
#[test]
fn broken_health_stuck_down_is_caught() {
    assert_caught(
        Scenario::Crash,
        Mutation::Defect(Defect::StuckDown),
        10,
        &["health-up", "state"],
    );
}

/// A connection's task panics.
#[test]
fn broken_task_panicking_is_caught() {
    assert_caught(
        Scenario::Crash,
        Mutation::Defect(Defect::PanicInFlow),
        5,
        &["panic"],
    );
}

/// A node that fails as it starts.
#[test]
fn broken_node_failing_to_start_is_caught() {
    assert_caught(
        Scenario::Crash,
        Mutation::Defect(Defect::FailToStart),
        5,
        &["host"],
    );
}

/// No idle timeout: a client that pauses past it is not closed.
#[test]
fn broken_idle_timeout_is_caught() {
    assert_caught(
        Scenario::Stall,
        Mutation::Defect(Defect::NoIdleTimeout),
        10,
        &["idle-timeout"],
    );
}

/// No half-close timeout: a connection half-closed and silent stays open.
#[test]
fn broken_half_close_timeout_is_caught() {
    assert_caught(
        Scenario::HalfClose,
        Mutation::Defect(Defect::NoHalfCloseTimeout),
        20,
        &["half-close-timeout"],
    );
}

/// No connect timeout: a connect to a crashed backend (which, in turmoil, hangs until the
/// backend is back) is not given up in time.
#[test]
fn broken_connect_timeout_is_caught() {
    assert_caught(
        Scenario::Crash,
        Mutation::Defect(Defect::NoConnectTimeout),
        10,
        &["connect-timeout"],
    );
}

/// `per_client` not enforced: a client keeps more connections open than it may.
#[test]
fn broken_per_client_limit_is_caught() {
    assert_caught(
        Scenario::Operate,
        Mutation::Defect(Defect::PerClientIgnored),
        20,
        &["per-client"],
    );
}

/// `on_backend_down: close` that closes nothing.
#[test]
fn broken_on_backend_down_is_caught() {
    assert_caught(
        Scenario::Operate,
        Mutation::Defect(Defect::BackendDownIgnored),
        30,
        &["backend-down"],
    );
}

/// Routing that ignores the `sni` table sends every TLS client to the listener's default
/// pool (or refuses it for `no_route`), whatever server name it asked for.
#[test]
fn broken_sni_routing_is_caught() {
    assert_caught(
        Scenario::Services,
        Mutation::Defect(Defect::SniIgnored),
        10,
        &["route"],
    );
}

/// One pool with no backend up makes every pool refuse its clients.
#[test]
fn broken_isolation_between_pools_is_caught() {
    assert_caught(
        Scenario::Services,
        Mutation::Defect(Defect::SharedPoolFaults),
        20,
        &["isolation"],
    );
}

/// Reloads that never remove a listener: the one swapped out keeps accepting.
#[test]
fn broken_listener_removal_is_caught() {
    assert_caught(
        Scenario::Services,
        Mutation::StaleListeners,
        20,
        &["listeners"],
    );
}

/// DNS discovery that applies a failed resolution or an empty answer as "no backends"
/// empties the pool while DNS is down.
#[test]
fn broken_discovery_emptying_on_failure_is_caught() {
    assert_caught(
        Scenario::Fleet,
        Mutation::Defect(Defect::DiscoveryEmptiesOnFailure),
        5,
        &["discovery-kept"],
    );
}

/// A Maglev table built over the backends in the order each instance learned them: the
/// instance that joined late builds another table for the same set.
#[test]
fn broken_discovery_unsorted_table_is_caught() {
    assert_caught(
        Scenario::Fleet,
        Mutation::Defect(Defect::DiscoveryUnsorted),
        20,
        &["affinity"],
    );
}
