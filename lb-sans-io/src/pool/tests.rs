use super::*;
use crate::config::{Config, PoolConfig};

/// A probe outcome: passed, or failed as a refused connection.
fn outcome(passed: bool) -> ProbeOutcome {
    if passed {
        ProbeOutcome::Passed
    } else {
        ProbeOutcome::Failed(CheckFailure::Refused)
    }
}

fn config(n: usize, extra: &str) -> Config {
    let backends: Vec<String> = (0..n)
        .map(|i| format!(r#"{{"name":"b{i}","address":"127.0.0.1:{}"}}"#, 5001 + i))
        .collect();
    Config::from_json(&format!(
        r#"{{"backends":[{}]{extra}}}"#,
        backends.join(",")
    ))
    .unwrap()
}

fn pool(n: usize, extra: &str) -> Pool {
    let c = config(n, extra);
    let addrs: Vec<SocketAddr> = (0..n)
        .map(|i| SocketAddr::from(([127, 0, 0, 1], 5001 + i as u16)))
        .collect();
    Pool::new(&c.pools[0], &addrs, 7, Timestamp::ZERO)
}

fn at(ms: u64) -> Timestamp {
    Timestamp::from_nanos(ms * 1_000_000)
}

const CLIENT: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 40000);

/// Runs every due probe and answers it with `ok(backend)`.
fn probe_round(p: &mut Pool, now: Timestamp, ok: impl Fn(BackendId) -> bool) -> usize {
    let mut n = 0;
    while let Some(req) = p.poll_probe(now) {
        p.handle_probe_result(req.id, outcome(ok(req.backend)), now);
        n += 1;
    }
    n
}

fn states(p: &Pool) -> Vec<BackendState> {
    p.backends().iter().map(|b| b.state()).collect()
}

#[test]
fn backends_start_down_and_the_first_passing_probe_brings_them_up() {
    let mut p = pool(3, "");
    assert_eq!(states(&p), [BackendState::Down; 3]);
    // First probes are due within a tenth of the interval.
    assert!(p.poll_timeout().unwrap() <= at(100));
    assert_eq!(probe_round(&mut p, at(100), |_| true), 3);
    assert_eq!(states(&p), [BackendState::Up; 3]);
    let changes: Vec<_> = std::iter::from_fn(|| p.poll_event()).collect();
    assert_eq!(changes.len(), 3);
}

#[test]
fn start_up_backends_are_up_before_any_check() {
    let p = pool(2, r#","health_check":{"start_up":true}"#);
    assert_eq!(states(&p), [BackendState::Up; 2]);
}

#[test]
fn fall_failed_probes_take_a_backend_down_and_rise_bring_it_back() {
    let mut p = pool(2, r#","health_check":{"rise":3,"fall":2,"interval":"1s"}"#);
    let mut now = at(100);
    probe_round(&mut p, now, |_| true);
    let _ = std::iter::from_fn(|| p.poll_event()).count();
    let mut history = Vec::new();
    // b1 fails from the second round to the fourth, then passes.
    for round in 1..=8u64 {
        now = at(100 + round * 1000);
        assert!(
            p.poll_timeout().unwrap() <= now,
            "probes come at least every interval"
        );
        probe_round(&mut p, now, |b| b.0 == 0 || !(1..=3).contains(&round));
        history.push(p.backends()[1].state());
    }
    use BackendState::{Down, Up};
    assert_eq!(history, [Up, Down, Down, Down, Down, Up, Up, Up]);
    assert_eq!(p.backends()[0].state(), Up);
}

#[test]
fn a_probe_that_never_answers_fails_at_its_timeout() {
    let mut p = pool(
        1,
        r#","health_check":{"timeout":"300ms","fall":1,"start_up":true}"#,
    );
    let req = p.poll_probe(at(100)).unwrap();
    assert_eq!(p.poll_timeout(), Some(at(400)));
    p.handle_timeout(at(399));
    assert_eq!(p.backends()[0].state(), BackendState::Up);
    assert!(p.probe_pending(req.id));
    p.handle_timeout(at(400));
    assert_eq!(p.backends()[0].state(), BackendState::Down);
    // The driver learns to stop the probe; the check says why it failed, and how long.
    assert!(!p.probe_pending(req.id));
    let last = p.backends()[0].last_check.clone().unwrap();
    assert_eq!(
        last.result,
        Err(CheckFailure::Timeout(Duration::from_millis(300)))
    );
    assert_eq!(last.result.unwrap_err().to_string(), "timeout after 300ms");
    assert_eq!(
        (last.at, last.duration),
        (at(400), Duration::from_millis(300))
    );
    // The late answer of the timed-out probe is ignored.
    p.handle_probe_result(req.id, outcome(true), at(401));
    assert_eq!(p.backends()[0].state(), BackendState::Down);
    assert_eq!(p.backends()[0].checks_failed, 1);
}

#[test]
fn selection_never_returns_a_down_backend() {
    let mut p = pool(3, "");
    probe_round(&mut p, at(100), |b| b.0 != 1);
    for i in 0..30 {
        let f = FlowId(i);
        p.open_flow(f, at(200));
        let (b, _) = p.select(f, CLIENT, &[], at(200)).unwrap();
        assert_ne!(b, BackendId(1));
        p.close_flow(f, 0, 0, at(200));
    }
    p.check_invariants();
}

#[test]
fn passive_failures_count_as_failed_checks() {
    let mut p = pool(2, r#","health_check":{"fall":2,"start_up":true}"#);
    for i in 0..2 {
        let f = FlowId(i);
        p.open_flow(f, at(0));
        let (b, _) = p.select(f, CLIENT, &[BackendId(0)], at(0)).unwrap();
        assert_eq!(b, BackendId(1));
        p.connect_failed(f, b, ConnectFailure::Backend, at(0));
        p.close_flow(f, 0, 0, at(0));
    }
    assert_eq!(p.backends()[1].state(), BackendState::Down);
    assert_eq!(p.backends()[1].connect_failures_total, 2);
    assert!(matches!(
        p.poll_event(),
        Some(PoolEvent::BackendStateChanged {
            cause: StateCause::ClientConnectFailed,
            to: BackendState::Down,
            ..
        })
    ));
    p.check_invariants();
}

#[test]
fn global_and_per_backend_connection_limits() {
    use crate::flow::FlowPool;
    use crate::ids::{ListenerId, PoolId};
    // `max_connections` (the listener's) and a backend's `max_connections` (the pool's),
    // through the balancer that owns both.
    let c = Config::from_json(
        r#"{"backends":[{"address":"127.0.0.1:1","max_connections":1},{"address":"127.0.0.1:2"}],
            "max_connections":3,"health_check":{"start_up":true}}"#,
    )
    .unwrap();
    let addrs: Vec<SocketAddr> = vec![
        "127.0.0.1:1".parse().unwrap(),
        "127.0.0.1:2".parse().unwrap(),
    ];
    let mut b = crate::Balancer::new(&c, std::slice::from_ref(&addrs), 1, Timestamp::ZERO);
    let l = ListenerId(0);
    let mut picks = Vec::new();
    for i in 0..3 {
        b.open_flow(FlowId(i), l, CLIENT.ip(), at(0)).unwrap();
        picks.push(b.select(FlowId(i), CLIENT, &[], at(0)).unwrap().0 .0);
    }
    assert_eq!(picks, [0, 1, 1], "backend 0 holds at most one connection");
    assert_eq!(
        b.open_flow(FlowId(9), l, CLIENT.ip(), at(0)),
        Err(RejectReason::MaxConnections)
    );
    assert_eq!(b.rejected(RejectReason::MaxConnections), 1);
    b.close_flow(FlowId(0), 10, 20, at(1));
    let p = b.pool(PoolId(0)).unwrap();
    assert_eq!(p.backends()[0].active, 0);
    assert_eq!(
        (
            p.backends()[0].bytes_to_backend,
            p.backends()[0].bytes_to_client
        ),
        (10, 20)
    );
    b.open_flow(FlowId(9), l, CLIENT.ip(), at(1)).unwrap();
    b.check_invariants();
    // The pool alone: a backend at its limit is not chosen, and with every backend at its
    // limit (or tried) nothing is.
    let mut p = Pool::new(&c.pools[0], &addrs, 1, Timestamp::ZERO);
    p.open_flow(FlowId(1), at(0));
    let first = p.select(FlowId(1), CLIENT, &[BackendId(1)], at(0));
    assert_eq!(first.map(|(b, _)| b), Some(BackendId(0)));
    p.open_flow(FlowId(2), at(0));
    assert_eq!(p.select(FlowId(2), CLIENT, &[BackendId(1)], at(0)), None);
    p.check_invariants();
}

#[test]
fn unknown_and_repeated_events_are_ignored() {
    let mut p = pool(2, r#","health_check":{"start_up":true}"#);
    p.close_flow(FlowId(42), 1, 1, at(0));
    p.connect_failed(FlowId(42), BackendId(0), ConnectFailure::Backend, at(0));
    p.connect_succeeded(FlowId(42), BackendId(1), at(0));
    p.handle_probe_result(ProbeId(999), outcome(false), at(0));
    assert_eq!(p.select(FlowId(42), CLIENT, &[], at(0)), None);
    p.open_flow(FlowId(1), at(0));
    p.open_flow(FlowId(1), at(0));
    assert_eq!(p.open_flows(), 1);
    // A seated flow with a backend is not reseated (which would forget its backend).
    let (held, _) = p.select(FlowId(1), CLIENT, &[], at(0)).unwrap();
    p.open_flow(FlowId(1), at(0));
    assert_eq!(p.flow_backend(FlowId(1)), Some(held));
    assert_eq!(p.backends()[held.index()].active, 1);
    p.check_invariants();
    assert_eq!(states(&p), [BackendState::Up; 2]);
}

#[test]
fn slow_start_ramps_a_returning_backends_share() {
    for alg in ["weighted_round_robin", "least_connections", "power_of_two"] {
        let mut p = pool(
            2,
            &format!(
                r#","algorithm":"{alg}","slow_start":"10s","health_check":{{"start_up":true,"fall":1,"rise":1,"interval":"1s"}}"#
            ),
        );
        // Backend 1 fails a check and comes back at t = 1.1 s.
        let req = std::iter::from_fn(|| p.poll_probe(at(100)))
            .find(|r| r.backend == BackendId(1))
            .unwrap();
        p.handle_probe_result(req.id, outcome(false), at(100));
        assert_eq!(p.backends()[1].state(), BackendState::Down);
        let req = std::iter::from_fn(|| p.poll_probe(at(1100)))
            .find(|r| r.backend == BackendId(1))
            .unwrap();
        p.handle_probe_result(req.id, outcome(true), at(1100));
        assert_eq!(p.backends()[1].state(), BackendState::Up);
        // Share of 2000 new connections it gets, at several
        // points of its ramp: about w·(10% + 90%·t/10s) against the other's full weight.
        let mut shares = Vec::new();
        for t_ms in [1_100u64, 3_600, 6_100, 11_100, 20_000] {
            let mut got = 0;
            for k in 0..2000 {
                let f = FlowId(t_ms * 10_000 + k);
                p.open_flow(f, at(t_ms));
                if p.select(f, CLIENT, &[], at(t_ms)).unwrap().0 == BackendId(1) {
                    got += 1;
                }
            }
            // All 2000 stay open during the window (so load-aware algorithms see the load
            // their weights allow), then close, so every window starts idle.
            for k in 0..2000 {
                p.close_flow(FlowId(t_ms * 10_000 + k), 0, 0, at(t_ms));
            }
            shares.push(got as f64 / 2000.0);
        }
        assert!(shares[0] < 0.2, "{alg}: starts near 10%: {shares:?}");
        assert!(
            shares.windows(2).all(|w| w[1] >= w[0] - 0.03),
            "{alg}: grows: {shares:?}"
        );
        assert!(
            (shares[4] - 0.5).abs() < 0.05,
            "{alg}: ends at its full share: {shares:?}"
        );
        p.check_invariants();
    }
}

fn events(p: &mut Pool) -> Vec<PoolEvent> {
    std::iter::from_fn(|| p.poll_event()).collect()
}

/// Opens a flow and gives it a backend.
fn connect(p: &mut Pool, flow: u64, now: Timestamp) -> Option<BackendId> {
    p.open_flow(FlowId(flow), now);
    let chosen = p.select(FlowId(flow), CLIENT, &[], now).map(|(b, _)| b);
    if let Some(b) = chosen {
        p.connect_succeeded(FlowId(flow), b, now);
    }
    chosen
}

#[test]
fn draining_stops_new_connections_and_keeps_open_ones() {
    let mut p = pool(2, r#","health_check":{"start_up":true}"#);
    assert_eq!(connect(&mut p, 0, at(0)), Some(BackendId(0)));
    assert_eq!(connect(&mut p, 1, at(0)), Some(BackendId(1)));
    p.set_admin(BackendId(0), AdminState::Draining, at(1))
        .unwrap();
    assert_eq!(p.backends()[0].state(), BackendState::Draining);
    assert_eq!(p.backends()[0].admin(), AdminState::Draining);
    assert_eq!(p.backends()[0].health(), Health::Up);
    assert!(!p.backends()[0].eligible());
    assert_eq!(
        events(&mut p),
        [PoolEvent::BackendStateChanged {
            backend: BackendId(0),
            from: BackendState::Up,
            to: BackendState::Draining,
            cause: StateCause::Admin,
        }]
    );
    // New connections go elsewhere; the open one stays counted.
    for f in 2..10 {
        assert_eq!(connect(&mut p, f, at(2)), Some(BackendId(1)));
    }
    assert_eq!(p.backends()[0].active, 1);
    p.check_invariants();
    // It finishes normally and is released.
    p.close_flow(FlowId(0), 5, 7, at(3));
    assert_eq!(p.backends()[0].active, 0);
    assert_eq!(p.backends()[0].bytes_to_backend, 5);
    p.check_invariants();
    // Probes continue while draining, and their results are recorded (silently: the
    // state users see stays `draining`).
    let mut probed = Vec::new();
    let mut now = at(0);
    for _ in 0..40 {
        now = now + Duration::from_millis(100);
        while let Some(req) = p.poll_probe(now) {
            probed.push(req.backend);
            p.handle_probe_result(req.id, outcome(req.backend != BackendId(0)), now);
        }
    }
    assert!(probed.contains(&BackendId(0)));
    assert_eq!(p.backends()[0].health(), Health::Down);
    assert_eq!(p.backends()[0].state(), BackendState::Draining);
    assert_eq!(events(&mut p), []);
    // Enabled again, it shows its current health.
    p.set_admin(BackendId(0), AdminState::Enabled, now).unwrap();
    assert_eq!(
        events(&mut p),
        [PoolEvent::BackendStateChanged {
            backend: BackendId(0),
            from: BackendState::Draining,
            to: BackendState::Down,
            cause: StateCause::Admin,
        }]
    );
    p.check_invariants();
}

#[test]
fn disabling_stops_probes_and_new_connections_and_enabling_resumes_both() {
    let mut p = pool(2, r#","health_check":{"start_up":true,"interval":"1s"}"#);
    assert_eq!(connect(&mut p, 0, at(0)), Some(BackendId(0)));
    p.set_admin(BackendId(0), AdminState::Disabled, at(0))
        .unwrap();
    assert_eq!(p.backends()[0].state(), BackendState::Disabled);
    assert_eq!(
        events(&mut p),
        [PoolEvent::BackendStateChanged {
            backend: BackendId(0),
            from: BackendState::Up,
            to: BackendState::Disabled,
            cause: StateCause::Admin,
        }]
    );
    // Ten seconds: backend 1 is probed every interval, backend 0 never.
    let mut probed = Vec::new();
    let mut now = at(0);
    while now < at(10_000) {
        now = p.poll_timeout().expect("backend 1 is still probed");
        p.handle_timeout(now);
        while let Some(req) = p.poll_probe(now) {
            probed.push(req.backend);
            p.handle_probe_result(req.id, outcome(true), now);
        }
        assert!(connect(&mut p, now.as_nanos(), now) == Some(BackendId(1)));
    }
    assert!(probed.len() >= 9, "{probed:?}");
    assert!(probed.iter().all(|&b| b == BackendId(1)), "{probed:?}");
    // The open connection is untouched and releasable.
    assert_eq!(p.backends()[0].active, 1);
    p.close_flow(FlowId(0), 0, 0, now);
    assert_eq!(p.backends()[0].active, 0);
    p.check_invariants();
    // Enabled again: unchecked while disabled, it is down until a probe (at once) passes,
    // then up at once and given new connections.
    p.set_admin(BackendId(0), AdminState::Enabled, now).unwrap();
    assert_eq!(p.backends()[0].state(), BackendState::Down);
    assert!(!p.backends()[0].eligible());
    let req = p.poll_probe(now).expect("probed at once");
    assert_eq!(req.backend, BackendId(0));
    p.handle_probe_result(req.id, outcome(true), now);
    assert!(p.backends()[0].eligible());
    assert_eq!(
        events(&mut p),
        [
            PoolEvent::BackendStateChanged {
                backend: BackendId(0),
                from: BackendState::Disabled,
                to: BackendState::Down,
                cause: StateCause::Admin,
            },
            PoolEvent::BackendStateChanged {
                backend: BackendId(0),
                from: BackendState::Down,
                to: BackendState::Up,
                cause: StateCause::Probe,
            }
        ]
    );
    let picks: Vec<_> = (0..4)
        .map(|k| connect(&mut p, 1_000_000 + k, now).unwrap())
        .collect();
    assert!(picks.contains(&BackendId(0)), "{picks:?}");
    p.check_invariants();
}

#[test]
fn a_probe_running_when_disabled_is_still_recorded() {
    let mut p = pool(
        1,
        r#","health_check":{"start_up":true,"rise":1,"fall":1,"timeout":"300ms"}"#,
    );
    let req = p.poll_probe(at(100)).unwrap();
    p.set_admin(BackendId(0), AdminState::Disabled, at(150))
        .unwrap();
    // Its deadline still counts; nothing else is scheduled.
    assert_eq!(p.poll_timeout(), Some(at(400)));
    p.handle_probe_result(req.id, outcome(false), at(200));
    assert_eq!(p.backends()[0].health(), Health::Down);
    assert_eq!(p.backends()[0].checks_failed, 1);
    assert_eq!(p.backends()[0].state(), BackendState::Disabled);
    assert_eq!(
        p.poll_timeout(),
        None,
        "a disabled backend has no probe due"
    );
    assert_eq!(p.poll_probe(at(5000)), None);
    // Enabled again it is down (unchecked while disabled) until a probe passes.
    p.set_admin(BackendId(0), AdminState::Enabled, at(6000))
        .unwrap();
    assert_eq!(p.backends()[0].state(), BackendState::Down);
    assert_eq!(p.poll_timeout(), Some(at(6000)));
    let req = p.poll_probe(at(6000)).unwrap();
    p.handle_probe_result(req.id, outcome(true), at(6001));
    assert_eq!(p.backends()[0].state(), BackendState::Up);
    let causes: Vec<_> = events(&mut p)
        .into_iter()
        .filter_map(|e| match e {
            PoolEvent::BackendStateChanged { to, cause, .. } => Some((to, cause)),
            PoolEvent::CloseConnections { .. }
            | PoolEvent::Discovery(_)
            | PoolEvent::Discovered(_) => None,
        })
        .collect();
    assert_eq!(
        causes,
        [
            (BackendState::Disabled, StateCause::Admin),
            (BackendState::Down, StateCause::Admin),
            (BackendState::Up, StateCause::Probe),
        ]
    );
    p.check_invariants();
}

#[test]
fn every_admin_transition_reports_only_real_changes() {
    use AdminState::{Disabled, Draining, Enabled};
    let mut p = pool(1, r#","health_check":{"start_up":true}"#);
    let mut last = BackendState::Up;
    for (admin, state) in [
        (Enabled, BackendState::Up),
        (Draining, BackendState::Draining),
        (Draining, BackendState::Draining),
        (Disabled, BackendState::Disabled),
        // Leaving `disabled`, it is unchecked: down until a probe passes.
        (Draining, BackendState::Draining),
        (Enabled, BackendState::Down),
        (Disabled, BackendState::Disabled),
        (Enabled, BackendState::Down),
    ] {
        p.set_admin(BackendId(0), admin, at(0)).unwrap();
        assert_eq!(p.backends()[0].state(), state);
        let expected: Vec<_> = (last != state)
            .then_some(PoolEvent::BackendStateChanged {
                backend: BackendId(0),
                from: last,
                to: state,
                cause: StateCause::Admin,
            })
            .into_iter()
            .collect();
        assert_eq!(events(&mut p), expected);
        last = state;
        p.check_invariants();
    }
}

#[test]
fn unknown_backends_are_rejected_without_change() {
    let mut p = pool(2, r#","health_check":{"start_up":true}"#);
    for id in [2, 3, u32::MAX] {
        for admin in [
            AdminState::Draining,
            AdminState::Disabled,
            AdminState::Enabled,
        ] {
            assert_eq!(
                p.set_admin(BackendId(id), admin, at(0)),
                Err(UnknownBackend(BackendId(id)))
            );
        }
    }
    assert_eq!(events(&mut p), []);
    assert_eq!(states(&p), [BackendState::Up; 2]);
    assert_eq!(p.backend_by_name("b1"), Some(BackendId(1)));
    assert_eq!(p.backend_by_name("b2"), None);
    assert_eq!(
        UnknownBackend(BackendId(2)).to_string(),
        "no backend with id 2"
    );
    p.check_invariants();
}

#[test]
fn states_and_admin_states_have_their_contract_labels() {
    let labels: Vec<String> = [
        BackendState::Up,
        BackendState::Down,
        BackendState::Draining,
        BackendState::Disabled,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(labels, ["up", "down", "draining", "disabled"]);
    assert_eq!(AdminState::default(), AdminState::Enabled);
    assert_eq!(AdminState::Draining.to_string(), "draining");
}

#[test]
fn a_backend_enabled_again_ramps_up_under_slow_start() {
    let mut p = pool(
        2,
        r#","algorithm":"weighted_round_robin","slow_start":"10s","health_check":{"start_up":true}"#,
    );
    p.set_admin(BackendId(1), AdminState::Draining, at(0))
        .unwrap();
    p.set_admin(BackendId(1), AdminState::Enabled, at(1000))
        .unwrap();
    let mut got = 0;
    for k in 0..1000 {
        let f = FlowId(k);
        p.open_flow(f, at(1000));
        if p.select(f, CLIENT, &[], at(1000)).unwrap().0 == BackendId(1) {
            got += 1;
        }
        p.close_flow(f, 0, 0, at(1000));
    }
    assert!(got < 150, "starts near 10% of its share: {got} of 1000");
    p.check_invariants();
}

#[test]
fn a_probe_that_could_not_run_neither_passes_nor_fails() {
    let mut p = pool(
        1,
        r#","health_check":{"interval":"1s","fall":1,"start_up":true}"#,
    );
    // The first probe comes within a tenth of the interval.
    let probe = p.poll_probe(at(100)).unwrap();
    p.handle_probe_result(
        probe.id,
        ProbeOutcome::NotRun("too many open files".into()),
        at(110),
    );
    let b = &p.backends()[0];
    assert_eq!(b.state(), BackendState::Up);
    assert_eq!((b.checks_passed, b.checks_failed), (0, 0));
    assert!(p.poll_event().is_none());
    // Probed again at the next interval, not before.
    assert!(p.poll_probe(at(500)).is_none());
    let next = p.poll_probe(at(1100)).unwrap();
    // A stale report of the old probe changes nothing.
    p.handle_probe_result(
        probe.id,
        ProbeOutcome::NotRun("too many open files".into()),
        at(1100),
    );
    p.handle_probe_result(next.id, outcome(false), at(1101));
    assert_eq!(p.backends()[0].state(), BackendState::Down);
    p.check_invariants();
}

// ---- reload ----------------------------------------------------------------------------

/// A pool's config and addresses for backends named by `specs`: (name, port, weight).
fn reload_config(specs: &[(&str, u16, u32)], extra: &str) -> (PoolConfig, Vec<SocketAddr>) {
    let backends: Vec<String> = specs
        .iter()
        .map(|(n, p, w)| format!(r#"{{"name":"{n}","address":"127.0.0.1:{p}","weight":{w}}}"#))
        .collect();
    let c = Config::from_json(&format!(
        r#"{{"backends":[{}],"health_check":{{"start_up":true}}{extra}}}"#,
        backends.join(",")
    ))
    .unwrap()
    .pools
    .remove(0);
    let addrs = specs
        .iter()
        .map(|(_, p, _)| SocketAddr::from(([127, 0, 0, 1], *p)))
        .collect();
    (c, addrs)
}

fn names_in_turn(p: &mut Pool, first_flow: u64, n: u64) -> Vec<String> {
    (first_flow..first_flow + n)
        .map(|f| {
            p.open_flow(FlowId(f), at(10));
            let (b, _) = p.select(FlowId(f), CLIENT, &[], at(10)).unwrap();
            p.close_flow(FlowId(f), 0, 0, at(10));
            p.backends()[b.index()].name.clone()
        })
        .collect()
}

#[test]
fn a_reload_keeps_backends_by_name_drains_removed_ones_and_adds_new_ones() {
    let (c, addrs) = reload_config(&[("a", 1, 1), ("b", 2, 1), ("c", 3, 1)], "");
    let mut p = Pool::new(&c, &addrs, 1, Timestamp::ZERO);
    // A connection open to b, and some history on a.
    p.open_flow(FlowId(100), at(1));
    let (held, _) = p.select(FlowId(100), CLIENT, &[], at(1)).unwrap();
    assert_eq!(held, BackendId(0));
    p.connect_succeeded(FlowId(100), held, at(1));
    p.set_admin(BackendId(2), AdminState::Draining, at(1))
        .unwrap();
    let _ = std::iter::from_fn(|| p.poll_event()).count();

    // a stays; b... is dropped; c stays (still drained by the operator); d is new.
    let (c2, addrs2) = reload_config(&[("c", 3, 1), ("a", 1, 5), ("d", 4, 1)], "");
    let summary = p.reconfigure(&c2, &addrs2, at(5));
    assert_eq!(summary.kept, 2);
    assert_eq!(summary.added, ["d"]);
    assert_eq!(summary.removed, [("b".to_string(), 0)]);
    p.check_invariants();
    let a = &p.backends()[0];
    assert_eq!(
        (a.name.as_str(), a.weight, a.active),
        ("a", 5, 1),
        "kept, reweighted"
    );
    assert_eq!(a.connections_total, 1);
    assert!(p.backends()[1].removed());
    assert!(!p.backends()[1].listed(), "b had no connection: gone");
    assert_eq!(
        p.backends()[2].state(),
        BackendState::Draining,
        "admin state kept"
    );
    assert_eq!(p.backends()[3].name, "d");
    assert_eq!(p.backend_by_name("b"), None);
    let events: Vec<_> = std::iter::from_fn(|| p.poll_event()).collect();
    assert_eq!(
        events,
        [PoolEvent::BackendStateChanged {
            backend: BackendId(1),
            from: BackendState::Up,
            to: BackendState::Draining,
            cause: StateCause::Reload,
        }]
    );
    // New connections go to a and d only (c is drained), round robin.
    let names = names_in_turn(&mut p, 0, 6);
    assert!(names.iter().all(|n| n == "a" || n == "d"), "{names:?}");
    assert_eq!(names.iter().filter(|n| *n == "d").count(), 3, "{names:?}");
    // The held connection still closes normally and adds its bytes to a.
    p.close_flow(FlowId(100), 7, 8, at(6));
    assert_eq!(p.backends()[0].active, 0);
    assert_eq!(p.backends()[0].bytes_to_client, 8);
    p.check_invariants();
}

/// An operator's tooling may reload often while traffic is light: if every reload started
/// the turns over, the first backends would take every connection and the last none (the
/// `services` simulation's seed 2944 found this: five reloads in twelve seconds, six
/// connections, none to the third backend of a round-robin pool).
#[test]
fn a_reload_keeps_the_turns_of_round_robin_and_weighted_round_robin() {
    for (extra, one_turn) in [
        ("", vec!["a", "b", "c"]),
        (
            r#","algorithm":"weighted_round_robin""#,
            vec!["a", "b", "c", "a"],
        ),
    ] {
        let weight_a = if extra.is_empty() { 1 } else { 2 };
        let specs = [("a", 1, weight_a), ("b", 2, 1), ("c", 3, 1)];
        let (c, addrs) = reload_config(&specs, extra);
        let mut p = Pool::new(&c, &addrs, 1, Timestamp::ZERO);
        // One connection, a reload, one connection, a reload...: every backend in turn.
        let mut got = Vec::new();
        for f in 0..one_turn.len() as u64 * 2 {
            got.extend(names_in_turn(&mut p, f, 1));
            let (c2, addrs2) = reload_config(&specs, extra);
            p.reconfigure(&c2, &addrs2, at(10));
        }
        let twice: Vec<&str> = one_turn.iter().chain(&one_turn).copied().collect();
        assert_eq!(got, twice, "{extra}");
        // A backend added by a reload joins the turns; the others keep their place.
        let (c3, addrs3) = reload_config(&[("a", 1, 1), ("b", 2, 1), ("c", 3, 1), ("d", 4, 1)], "");
        p.reconfigure(&c3, &addrs3, at(10));
        let next = names_in_turn(&mut p, 100, 4);
        assert_eq!(next, ["a", "b", "c", "d"]);
        p.check_invariants();
    }
    // The broken build that restarts the turns at every reload: only the first backend.
    let specs = [("a", 1, 1), ("b", 2, 1), ("c", 3, 1)];
    let (c, addrs) = reload_config(&specs, "");
    let mut p = Pool::new(&c, &addrs, 1, Timestamp::ZERO);
    p.inject(Defects::NONE.with(Defect::ReloadRestartsTurns));
    let mut got = Vec::new();
    for f in 0..3 {
        got.extend(names_in_turn(&mut p, f, 1));
        p.reconfigure(&c, &addrs, at(10));
    }
    assert_eq!(got, ["a", "a", "a"]);
}

#[test]
fn a_removed_backend_drains_its_open_connections_and_is_never_chosen() {
    let (c, addrs) = reload_config(&[("a", 1, 1), ("b", 2, 1)], "");
    let mut p = Pool::new(&c, &addrs, 1, Timestamp::ZERO);
    let mut held = Vec::new();
    for f in 0..4 {
        p.open_flow(FlowId(f), at(1));
        let (b, _) = p.select(FlowId(f), CLIENT, &[], at(1)).unwrap();
        p.connect_succeeded(FlowId(f), b, at(1));
        held.push(b);
    }
    let (c2, addrs2) = reload_config(&[("b", 2, 1)], "");
    let summary = p.reconfigure(&c2, &addrs2, at(2));
    assert_eq!(summary.removed, [("a".to_string(), 2)]);
    let a = &p.backends()[0];
    assert!(a.removed() && a.listed());
    assert_eq!(a.state(), BackendState::Draining);
    assert!(!a.eligible());
    // It is not probed any more.
    while let Some(req) = p.poll_probe(at(5_000)) {
        assert_ne!(req.backend, BackendId(0), "probed a removed backend");
        p.handle_probe_result(req.id, outcome(true), at(5_000));
    }
    for name in names_in_turn(&mut p, 10, 5) {
        assert_eq!(name, "b");
    }
    for (f, b) in held.iter().enumerate() {
        if *b == BackendId(0) {
            p.close_flow(FlowId(f as u64), 1, 1, at(6));
        }
    }
    assert!(!p.backends()[0].listed(), "gone once its connections ended");
    p.check_invariants();
    // Configured again with the same address: back in place, under the same id, with its
    // counters; unchecked while it was gone, its health starts over as a new backend's
    // (up here, as this config has `start_up`) and it is probed at once.
    let total = p.backends()[0].connections_total;
    let summary = p.reconfigure(&c, &addrs, at(7));
    assert_eq!(summary.added, ["a"]);
    assert_eq!(p.backends().len(), 2);
    assert!(!p.backends()[0].removed());
    assert_eq!(p.backend_by_name("a"), Some(BackendId(0)));
    assert_eq!(p.backends()[0].connections_total, total);
    assert_eq!(p.backends()[0].last_check, None);
    let probe = p.poll_probe(at(7)).expect("probed at once");
    assert_eq!(probe.backend, BackendId(0));
    p.check_invariants();
    // Without `start_up`, a backend configured again is down until its first check passes.
    let (c, addrs) = reload_config(&[("a", 1, 1), ("b", 2, 1)], "");
    let mut cold = c.clone();
    cold.health_check.start_up = false;
    let mut p = Pool::new(&c, &addrs, 1, Timestamp::ZERO);
    p.reconfigure(&c2, &addrs2, at(1));
    p.reconfigure(&cold, &addrs, at(2));
    assert_eq!(p.backends()[0].state(), BackendState::Down);
    assert_eq!(p.backends()[1].state(), BackendState::Up, "kept as it was");
    let probe = p.poll_probe(at(2)).expect("probed at once");
    p.handle_probe_result(probe.id, outcome(true), at(3));
    assert_eq!(p.backends()[0].state(), BackendState::Up);
    p.check_invariants();
}

#[test]
fn a_changed_address_is_a_new_backend() {
    let (c, addrs) = reload_config(&[("a", 1, 1)], "");
    let mut p = Pool::new(&c, &addrs, 1, Timestamp::ZERO);
    let (c2, addrs2) = reload_config(&[("a", 9, 1)], "");
    let summary = p.reconfigure(&c2, &addrs2, at(1));
    assert_eq!(summary.added, ["a"]);
    assert_eq!(summary.removed, [("a".to_string(), 0)]);
    assert_eq!(p.backend_by_name("a"), Some(BackendId(1)));
    assert_eq!(p.backends()[1].addr.port(), 9);
    assert_eq!(
        p.backends()[1].state(),
        BackendState::Up,
        "start_up in the new config"
    );
}

#[test]
fn a_reload_applies_algorithm_limits_and_flow_settings() {
    let (c, addrs) = reload_config(&[("a", 1, 1), ("b", 2, 3)], "");
    let mut p = Pool::new(&c, &addrs, 1, Timestamp::ZERO);
    assert_eq!(p.limits().retries, 2);
    let (c2, addrs2) = reload_config(
        &[("a", 1, 1), ("b", 2, 3)],
        r#","algorithm":"weighted_round_robin","retries":7,"proxy_protocol":"v1",
            "on_backend_down":"close","timeouts":{"connect":"9s"},"tcp_keepalive":{}"#,
    );
    p.reconfigure(&c2, &addrs2, at(1));
    assert_eq!(p.algorithm(), Algorithm::WeightedRoundRobin);
    let l = p.limits();
    assert_eq!((l.retries, l.connect_timeout), (7, Duration::from_secs(9)));
    assert_eq!(l.proxy_protocol, Some(ProxyProtocol::V1));
    assert!(l.close_on_backend_down);
    assert!(l.backend_keepalive.is_some());
    assert_eq!(l, PoolLimits::from_pool(&c2));
    let inside: SocketAddr = "10.0.0.1:1".parse().unwrap();
    let mut names = Vec::new();
    for f in 0..8 {
        p.open_flow(FlowId(f + 10), at(1));
        let (b, _) = p.select(FlowId(f + 10), inside, &[], at(1)).unwrap();
        names.push(b.0);
        p.close_flow(FlowId(f + 10), 0, 0, at(1));
    }
    assert_eq!(
        names.iter().filter(|&&b| b == 1).count(),
        6,
        "weights 1:3: {names:?}"
    );
    // And back: the settings follow the config again.
    p.reconfigure(&c, &addrs, at(2));
    assert_eq!(p.limits(), PoolLimits::from_pool(&c));
    assert_eq!(p.algorithm(), Algorithm::RoundRobin);
    p.check_invariants();
}

#[test]
fn hash_after_a_reload_matches_a_fresh_start_with_the_same_config() {
    let (c, addrs) = reload_config(
        &[("a", 1, 1), ("b", 2, 1), ("c", 3, 1)],
        r#","algorithm":"hash""#,
    );
    let mut p = Pool::new(&c, &addrs, 1, Timestamp::ZERO);
    let (c2, addrs2) = reload_config(&[("c", 3, 1), ("d", 4, 1)], r#","algorithm":"hash""#);
    p.reconfigure(&c2, &addrs2, at(1));
    let mut fresh = Pool::new(&c2, &addrs2, 1, Timestamp::ZERO);
    for i in 0..200u32 {
        let client = SocketAddr::from(([10, (i >> 8) as u8, i as u8, 1], 1000));
        let f = FlowId(u64::from(i));
        p.open_flow(f, at(1));
        fresh.open_flow(f, at(1));
        let (got, _) = p.select(f, client, &[], at(1)).unwrap();
        let (want, _) = fresh.select(f, client, &[], at(1)).unwrap();
        assert_eq!(
            p.backends()[got.index()].name,
            fresh.backends()[want.index()].name,
            "client {client}"
        );
        p.close_flow(f, 0, 0, at(1));
        fresh.close_flow(f, 0, 0, at(1));
    }
}

#[test]
fn random_reloads_keep_the_books_straight() {
    // Backends named by a small universe; every few steps a reload keeps a random subset.
    let universe: Vec<(String, u16)> = (0..6).map(|i| (format!("n{i}"), 100 + i)).collect();
    for seed in 0..40u64 {
        let mut rng = crate::rng::LbRng::seed(seed);
        let pick = |rng: &mut crate::rng::LbRng| -> Vec<(&str, u16, u32)> {
            let mut v: Vec<(&str, u16, u32)> = Vec::new();
            for (n, p) in &universe {
                if rng.below(2) == 0 {
                    v.push((n.as_str(), *p, 1 + rng.below(3) as u32));
                }
            }
            if v.is_empty() {
                v.push((universe[0].0.as_str(), universe[0].1, 1));
            }
            v
        };
        let specs = pick(&mut rng);
        let (c, addrs) = reload_config(&specs, "");
        let mut p = Pool::new(&c, &addrs, seed, Timestamp::ZERO);
        let mut open: Vec<FlowId> = Vec::new();
        let mut configured: Vec<String> = specs.iter().map(|s| s.0.to_string()).collect();
        for step in 0..200u64 {
            let now = at(step);
            match rng.below(4) {
                0 => {
                    let specs = pick(&mut rng);
                    let (c, addrs) = reload_config(&specs, "");
                    p.reconfigure(&c, &addrs, now);
                    configured = specs.iter().map(|s| s.0.to_string()).collect();
                }
                1 if !open.is_empty() => {
                    let f = open.swap_remove(rng.below(open.len() as u64) as usize);
                    p.close_flow(f, 1, 1, now);
                }
                _ => {
                    let f = FlowId(1000 + step);
                    p.open_flow(f, now);
                    match p.select(f, CLIENT, &[], now) {
                        Some((b, _)) => {
                            let name = &p.backends()[b.index()].name;
                            assert!(configured.contains(name), "seed {seed}: chose {name}");
                            assert!(!p.backends()[b.index()].removed());
                            p.connect_succeeded(f, b, now);
                            open.push(f);
                        }
                        None => p.close_flow(f, 0, 0, now),
                    }
                }
            }
            p.check_invariants();
            let listed: Vec<&str> = p
                .backends()
                .iter()
                .filter(|b| !b.removed())
                .map(|b| b.name.as_str())
                .collect();
            let mut want: Vec<&str> = configured.iter().map(|s| s.as_str()).collect();
            let mut got = listed.clone();
            want.sort();
            got.sort();
            assert_eq!(got, want, "seed {seed} step {step}");
            assert!(
                p.backends().len() <= universe.len(),
                "ids are reused by name"
            );
        }
    }
}

#[test]
fn changes_that_make_a_probe_due_sooner_say_so_and_nothing_else_does() {
    let mut p = pool(2, r#","health_check":{"interval":"10s","start_up":true}"#);
    assert!(p.poll_timeout_moved(), "a new pool has a first timeout");
    assert!(!p.poll_timeout_moved(), "said once");
    while p.poll_probe(at(1_000)).is_some() {}
    // Draining and probing move nothing earlier.
    p.set_admin(BackendId(0), AdminState::Draining, at(1_000))
        .unwrap();
    p.handle_timeout(at(1_100));
    assert!(!p.poll_timeout_moved());
    // Enabling a disabled backend makes its probe due now: the driver's timer must know.
    p.set_admin(BackendId(1), AdminState::Disabled, at(2_000))
        .unwrap();
    assert!(!p.poll_timeout_moved());
    p.set_admin(BackendId(1), AdminState::Enabled, at(3_000))
        .unwrap();
    assert!(p.poll_timeout_moved());
    assert_eq!(p.poll_timeout(), Some(at(3_000)));
    // So does a reload (new backends are probed within a tenth of the interval).
    let (c, addrs) = reload_config(&[("b0", 5001, 1), ("b9", 5009, 1)], "");
    p.reconfigure(&c, &addrs, at(4_000));
    assert!(p.poll_timeout_moved());
    assert!(!p.poll_timeout_moved());
}

#[test]
fn on_backend_down_close_closes_connections_only_when_health_takes_a_backend_down() {
    for (extra, expect_close) in [("", false), (r#","on_backend_down":"close""#, true)] {
        let mut p = pool(
            2,
            &format!(r#","health_check":{{"start_up":true,"fall":1}}{extra}"#),
        );
        // An admin drain or disable never closes anything.
        p.set_admin(BackendId(1), AdminState::Draining, at(1))
            .unwrap();
        p.set_admin(BackendId(1), AdminState::Enabled, at(2))
            .unwrap();
        assert!(!events(&mut p)
            .iter()
            .any(|e| matches!(e, PoolEvent::CloseConnections { .. })));
        // A failed client connect (passive health) takes backend 0 down.
        p.open_flow(FlowId(1), at(3));
        let (b, _) = p.select(FlowId(1), CLIENT, &[], at(3)).unwrap();
        p.connect_failed(FlowId(1), b, ConnectFailure::Backend, at(4));
        let closes: Vec<_> = events(&mut p)
            .into_iter()
            .filter(|e| matches!(e, PoolEvent::CloseConnections { .. }))
            .collect();
        if expect_close {
            assert_eq!(closes, [PoolEvent::CloseConnections { backend: b }]);
        } else {
            assert!(closes.is_empty(), "{closes:?}");
        }
        p.check_invariants();
    }
}

#[test]
fn a_reload_applies_new_rise_and_fall_to_the_backends_it_keeps() {
    let addrs = [SocketAddr::from(([127, 0, 0, 1], 5001))];
    let c = config(1, r#","health_check":{"start_up":true,"rise":5,"fall":5}"#);
    let mut p = Pool::new(&c.pools[0], &addrs, 7, Timestamp::ZERO);
    let c2 = config(1, r#","health_check":{"start_up":true,"rise":2,"fall":1}"#);
    p.reconfigure(&c2.pools[0], &addrs, at(1));
    assert_eq!(states(&p), [BackendState::Up], "kept as it was");
    // `fall: 1` now: one failed check takes it down (under the old 5 it would stay up).
    assert_eq!(probe_round(&mut p, at(200), |_| false), 1);
    assert_eq!(states(&p), [BackendState::Down]);
    // `rise: 2` now: the second passing check brings it back (the old 5 would need five).
    assert_eq!(probe_round(&mut p, at(1_200), |_| true), 1);
    assert_eq!(states(&p), [BackendState::Down]);
    assert_eq!(probe_round(&mut p, at(2_200), |_| true), 1);
    assert_eq!(states(&p), [BackendState::Up]);
}
