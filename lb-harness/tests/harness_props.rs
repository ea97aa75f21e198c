//! Properties: random configs and event sequences through the fuzz harness, on stable.
//! The same invariants as the `events` fuzz target (see `lb_harness`).

use lb_harness::{
    run, AdminSel, Advance, Amount, AttemptSel, BackendSel, BackendSpec, ConfigSpec, Op, ProbeSel,
    Scenario, SideSel, StrayCall,
};
use proptest::prelude::*;

fn side() -> impl Strategy<Value = SideSel> {
    prop_oneof![Just(SideSel::Client), Just(SideSel::Backend)]
}

fn attempt() -> impl Strategy<Value = AttemptSel> {
    prop_oneof![
        6 => Just(AttemptSel::Current),
        1 => Just(AttemptSel::Previous),
        1 => any::<u32>().prop_map(AttemptSel::Raw),
    ]
}

fn amount() -> impl Strategy<Value = Amount> {
    prop_oneof![
        4 => Just(Amount::All),
        4 => any::<u16>().prop_map(Amount::Some),
        1 => any::<u16>().prop_map(Amount::TooMuch),
    ]
}

fn advance() -> impl Strategy<Value = Advance> {
    prop_oneof![
        any::<u16>().prop_map(Advance::Micros),
        any::<u16>().prop_map(Advance::Millis),
        (0u8..5).prop_map(Advance::Secs),
        Just(Advance::NextDeadline),
    ]
}

fn probe() -> impl Strategy<Value = ProbeSel> {
    prop_oneof![
        3 => any::<u8>().prop_map(ProbeSel::ForBackend),
        2 => any::<u8>().prop_map(ProbeSel::Outstanding),
        1 => any::<u16>().prop_map(ProbeSel::Raw),
    ]
}

fn stray() -> impl Strategy<Value = StrayCall> {
    prop_oneof![
        Just(StrayCall::Select),
        Just(StrayCall::ConnectSucceeded),
        Just(StrayCall::ConnectFailed),
        Just(StrayCall::CloseFlow),
    ]
}

/// Mostly configured backends, sometimes any id.
fn admin() -> impl Strategy<Value = Op> {
    (
        prop_oneof![
            4 => any::<u8>().prop_map(BackendSel::Index),
            1 => any::<u8>().prop_map(BackendSel::Raw),
        ],
        prop_oneof![
            Just(AdminSel::Enable),
            Just(AdminSel::Drain),
            Just(AdminSel::Disable),
        ],
    )
        .prop_map(|(backend, state)| Op::Admin { backend, state })
}

/// Reads mostly small, some the size of a ClientHello, sometimes up to the 64 KiB cap.
fn len() -> impl Strategy<Value = u16> {
    prop_oneof![4 => 0u16..200, 1 => 200u16..2_000, 1 => any::<u16>()]
}

/// Any client, or one of a few (so that clients come back: per-client limits, and the
/// same first bytes again).
fn client() -> impl Strategy<Value = u8> {
    prop_oneof![any::<u8>(), 0u8..8]
}

/// Events weighted towards a working flow life: accept, connect, data, drain, FIN.
fn op() -> impl Strategy<Value = Op> {
    let flow = any::<u8>();
    prop_oneof![
        3 => client().prop_map(|client| Op::Accept { client }),
        3 => (flow, attempt()).prop_map(|(flow, attempt)| Op::Connected { flow, attempt }),
        1 => (flow, attempt(), prop::bool::weighted(0.3))
            .prop_map(|(flow, attempt, local)| Op::ConnectFailed { flow, attempt, local }),
        6 => (flow, side(), len(), prop::bool::weighted(0.05))
            .prop_map(|(flow, side, len, force)| Op::Read { flow, side, len, force }),
        5 => (flow, side(), amount()).prop_map(|(flow, side, amount)| Op::Written { flow, side, amount }),
        2 => (flow, side(), prop::bool::weighted(0.05))
            .prop_map(|(flow, side, force)| Op::Eof { flow, side, force }),
        1 => (flow, side()).prop_map(|(flow, side)| Op::Reset { flow, side }),
        1 => flow.prop_map(|flow| Op::Abort { flow }),
        3 => advance().prop_map(Op::Advance),
        1 => flow.prop_map(|flow| Op::EarlyTimer { flow }),
        1 => Just(Op::PoolEarlyTimer),
        3 => (probe(), prop::bool::weighted(0.7)).prop_map(|(probe, passed)| Op::ProbeResult { probe, passed }),
        1 => probe().prop_map(|probe| Op::ProbeNotRun { probe }),
        1 => flow.prop_map(|flow| Op::Release { flow }),
        1 => (stray(), any::<u16>(), any::<u8>()).prop_map(|(call, flow, backend)| Op::Stray { call, flow, backend }),
        1 => admin(),
    ]
}

fn backend() -> impl Strategy<Value = BackendSpec> {
    (any::<u16>(), prop::option::weighted(0.3, 0u8..4)).prop_map(|(weight, max_connections)| {
        BackendSpec {
            weight,
            max_connections,
        }
    })
}

fn config() -> impl Strategy<Value = ConfigSpec> {
    (
        (
            prop::collection::vec(backend(), 1..=16),
            any::<u8>(),
            0u8..4,
            0u8..4,
            any::<bool>(),
        ),
        (
            50u16..2000,
            10u16..1000,
            10u16..2000,
            100u16..20_000,
            100u16..10_000,
        ),
        (
            0u8..4,
            prop::option::weighted(0.3, any::<u16>()),
            prop_oneof![0u8..8, Just(255u8)],
        ),
        (
            prop_oneof![1u32..300, 1u32..300_000],
            any::<u32>(),
            any::<u64>(),
            (any::<bool>(), any::<bool>()),
        ),
    )
        .prop_map(
            |(
                (backends, algorithm, rise, fall, start_up),
                (
                    check_interval_ms,
                    check_timeout_ms,
                    connect_timeout_ms,
                    idle_timeout_ms,
                    half_close_timeout_ms,
                ),
                (retries, slow_start_ms, max_connections),
                (high_watermark, low_watermark, seed, (routes, per_client)),
            )| ConfigSpec {
                backends,
                algorithm,
                rise,
                fall,
                start_up,
                check_interval_ms,
                check_timeout_ms,
                connect_timeout_ms,
                idle_timeout_ms,
                half_close_timeout_ms,
                retries,
                slow_start_ms,
                max_connections,
                high_watermark,
                low_watermark,
                // Half of the scenarios have two listeners, one routing by server name
                // (`ConfigSpec::routes_by_name`: seed bits 12 and 13), and half a
                // per-client limit (`ConfigSpec::per_client_max`: bits 4 and 5 = 1).
                seed: {
                    let seed = if routes {
                        seed | 3 << 12
                    } else {
                        seed & !(1 << 12)
                    };
                    if per_client {
                        seed & !(3 << 4) | 1 << 4
                    } else {
                        seed
                    }
                },
            },
        )
}

fn scenario() -> impl Strategy<Value = Scenario> {
    (config(), prop::collection::vec(op(), 0..200))
        .prop_map(|(config, ops)| Scenario { config, ops })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn every_invariant_holds_after_every_event(s in scenario()) {
        if let Err(v) = run(&s) {
            prop_assert!(false, "{}", v);
        }
    }
}

/// The generators are not vacuous: over a fixed set of scenarios, flows complete, pause,
/// retry, time out, get refused, and backends change state.
#[test]
fn the_generators_reach_every_outcome() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::{Config, TestRng, TestRunner};
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::deterministic_rng(proptest::test_runner::RngAlgorithm::ChaCha),
    );
    let mut total = lb_harness::Stats::default();
    for _ in 0..128 {
        let s = scenario().new_tree(&mut runner).unwrap().current();
        total += run(&s).unwrap_or_else(|v| panic!("{v}\n{s:?}"));
    }
    eprintln!("{total:?}");
    let counts = [
        ("flows", total.flows),
        ("connects", total.connects),
        ("retries", total.retries),
        ("pauses", total.pauses),
        ("latency reports", total.latency_reports),
        ("state changes", total.state_changes),
        ("admin changes", total.admin_changes),
        ("completed", total.completed),
        ("reset", total.reset),
        ("timed out", total.timed_out),
        ("rejected", total.rejected),
        ("connect failed", total.connect_failed),
        ("probe timeouts", total.probe_timeouts),
        ("passive failures", total.passive_failures),
        ("per-client rejections", total.per_client_rejections),
        ("closes for a backend down", total.backend_down_closes),
        ("resets passed on after delivery", total.delivered_resets),
        ("flows routed by server name", total.routed_by_name),
        (
            "flows routed to an sni listener's pool",
            total.routed_to_default,
        ),
        ("ClientHello timeouts", total.client_hello_timeouts),
        ("no_route refusals", total.no_route),
        ("not_allowed refusals", total.not_allowed),
    ];
    for (what, n) in counts {
        assert!(n > 0, "no {what} in 128 scenarios: {total:?}");
    }
    assert!(total.bytes_forwarded > 0);
}

/// Bytes of one admin connection: mostly near-valid requests, with junk mixed in.
fn admin_bytes() -> impl Strategy<Value = Vec<u8>> {
    let method = prop::sample::select(vec!["GET", "POST", "HEAD", "PUT", "", "get"]);
    let path = prop::sample::select(vec![
        "/",
        "/status",
        "/metrics",
        "/backends/a/drain",
        "/backends/b%20c/disable",
        "/backends/a/enable",
        "/backends/d/disable",
        "/pools/web/backends/b%20c/drain",
        "/pools/api/backends/d/enable",
        "/pools/api/backends/a/drain",
        "/pools/nope/backends/a/drain",
        "/pools/web/a/drain",
        "/backends/zz/drain",
        "/backends/a",
        "/backends//drain",
        "/%zz",
        "status",
    ]);
    let version = prop::sample::select(vec!["HTTP/1.1", "HTTP/1.0", "HTTP/2", ""]);
    let end = prop::sample::select(vec!["\r\n\r\n", "\n\n", "\r\n", ""]);
    (
        any::<u8>(),
        method,
        path,
        version,
        end,
        prop::collection::vec(any::<u8>(), 0..16),
    )
        .prop_map(|(split, m, p, v, e, junk)| {
            let mut out = vec![split];
            out.extend_from_slice(format!("{m} {p} {v}{e}").as_bytes());
            out.extend_from_slice(&junk);
            out
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn admin_requests_get_well_formed_answers_and_only_actions_change_state(
        data in admin_bytes()
    ) {
        if let Err(v) = lb_harness::check_admin_bytes(&data) {
            prop_assert!(false, "{}", v);
        }
    }

    #[test]
    fn arbitrary_admin_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..300)) {
        if let Err(v) = lb_harness::check_admin_bytes(&data) {
            prop_assert!(false, "{}", v);
        }
    }
}

/// The admin generator is not vacuous: over a fixed set of its inputs, a good share parse
/// as requests and are routed (at least 10%), pages and actions answer 200, and junk is
/// refused. A generator of garbage only, or a parser that refuses everything, fails here
/// while the properties above still pass.
#[test]
fn the_admin_generator_reaches_routed_requests() {
    use lb_harness::AdminOutcome;
    use proptest::strategy::ValueTree;
    use proptest::test_runner::{Config, TestRng, TestRunner};
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::deterministic_rng(proptest::test_runner::RngAlgorithm::ChaCha),
    );
    let cases = 512;
    let outcomes: Vec<AdminOutcome> = (0..cases)
        .map(|_| {
            let data = admin_bytes().new_tree(&mut runner).unwrap().current();
            lb_harness::admin_outcome(&data).unwrap_or_else(|v| panic!("{v}\n{data:?}"))
        })
        .collect();
    let count = |f: &dyn Fn(&AdminOutcome) -> bool| outcomes.iter().filter(|o| f(o)).count();
    let routed = count(&|o| matches!(o, AdminOutcome::Routed(_)));
    let ok = count(&|o| *o == AdminOutcome::Routed(200));
    let refused = count(&|o| matches!(o, AdminOutcome::Refused(_)));
    let incomplete = count(&|o| *o == AdminOutcome::Incomplete);
    eprintln!("{routed} routed ({ok} answered 200), {refused} refused, {incomplete} incomplete");
    assert!(routed * 10 >= cases, "{routed} of {cases} routed");
    assert!(ok * 50 >= cases, "{ok} of {cases} answered 200");
    assert!(refused > 0, "no input refused");
}

/// A client's first bytes for the `client_hello` check: a ClientHello of the harness's
/// (any name, layout and record size), cut anywhere or followed by other bytes, or junk.
fn client_hello_bytes() -> impl Strategy<Value = Vec<u8>> {
    let hello = (any::<u8>(), any::<u64>(), any::<u16>(), any::<bool>()).prop_map(
        |(sel, flow, cut, whole)| {
            let prefix = lb_harness::hello::client_stream(sel, flow).prefix;
            let cut = if whole {
                prefix.len()
            } else {
                usize::from(cut) % (prefix.len() + 1)
            };
            prefix[..cut].to_vec()
        },
    );
    (
        any::<[u8; 4]>(),
        prop_oneof![3 => hello, 1 => prop::collection::vec(any::<u8>(), 0..300)],
        prop::collection::vec(any::<u8>(), 0..40),
    )
        .prop_map(|(splits, mut bytes, tail)| {
            bytes.extend_from_slice(&tail);
            let mut out = splits.to_vec();
            out.extend_from_slice(&bytes);
            out
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn client_hellos_read_in_pieces_route_as_read_whole(data in client_hello_bytes()) {
        if let Err(v) = lb_harness::check_client_hello_bytes(&data) {
            prop_assert!(false, "{}", v);
        }
    }
}

/// The `client_hello` generator is not vacuous: it reaches server names, hellos without
/// one and incomplete ones.
#[test]
fn the_client_hello_generator_reaches_every_answer() {
    use lb_sans_io::sni::ClientHello;
    use proptest::strategy::ValueTree;
    use proptest::test_runner::{Config, TestRng, TestRunner};
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::deterministic_rng(proptest::test_runner::RngAlgorithm::ChaCha),
    );
    let (mut named, mut none, mut incomplete) = (0, 0, 0);
    for _ in 0..256 {
        let data = client_hello_bytes()
            .new_tree(&mut runner)
            .unwrap()
            .current();
        match lb_harness::client_hello_outcome(&data).unwrap_or_else(|v| panic!("{v}")) {
            ClientHello::ServerName(_) => named += 1,
            ClientHello::NoServerName => none += 1,
            ClientHello::Incomplete => incomplete += 1,
        }
    }
    eprintln!("{named} named, {none} without a name, {incomplete} incomplete");
    assert!(named * 10 >= 256 && none > 0 && incomplete > 0);
}
