//! The harness's checks can fail: a broken selector, and faults injected between the
//! machines and the checks, must each be reported as the rule they break. Without these, a
//! harness that checked nothing would pass every fuzz run.

use lb_harness::{
    check_admin_bytes, check_admin_bytes_with, check_client_hello_bytes,
    check_client_hello_bytes_with, check_config_bytes, check_config_bytes_with, run, run_with,
    AdminMutation, AdminSel, Advance, AttemptSel, BackendSel, ClientHelloMutation, ConfigMutation,
    ConfigSpec, Mutation, Op, Options, ProbeSel, Rule, Scenario, SideSel, StrayCall,
};
use lb_sans_io::select::{SelectCtx, Selector};
use lb_sans_io::BackendId;

const ACCEPT: Op = Op::Accept { client: 1 };
const CONNECTED: Op = Op::Connected {
    flow: 0,
    attempt: AttemptSel::Current,
};

fn read(side: SideSel, len: u16) -> Op {
    Op::Read {
        flow: 0,
        side,
        len,
        force: false,
    }
}

fn written(side: SideSel) -> Op {
    Op::Written {
        flow: 0,
        side,
        amount: lb_harness::Amount::All,
    }
}

fn eof(side: SideSel) -> Op {
    Op::Eof {
        flow: 0,
        side,
        force: false,
    }
}

/// Two backends, both down until probed; only backend 1's probe passes.
fn only_backend_1_up() -> (ConfigSpec, Vec<Op>) {
    let mut config = ConfigSpec::simple(2);
    config.start_up = false;
    let ops = vec![
        Op::Advance(Advance::Secs(1)),
        Op::ProbeResult {
            probe: ProbeSel::ForBackend(1),
            passed: true,
        },
    ];
    (config, ops)
}

fn rule_of(scenario: &Scenario, options: Options) -> Rule {
    match run_with(scenario, options) {
        Ok(_) => panic!("the harness found nothing wrong with {options:?}"),
        Err(v) => {
            eprintln!("reported as expected: {v}");
            v.rule
        }
    }
}

#[test]
fn a_whole_flow_life_passes() {
    let ops = vec![
        ACCEPT,
        read(SideSel::Client, 50),
        CONNECTED,
        written(SideSel::Backend),
        read(SideSel::Backend, 300),
        read(SideSel::Backend, 10),
        written(SideSel::Client),
        read(SideSel::Backend, 10),
        eof(SideSel::Client),
        eof(SideSel::Backend),
        written(SideSel::Client),
        Op::Advance(Advance::NextDeadline),
    ];
    let (config, probes) = only_backend_1_up();
    run(&Scenario {
        config: ConfigSpec::simple(3),
        ops: ops.clone(),
    })
    .unwrap();
    run(&Scenario {
        config,
        ops: probes.into_iter().chain(ops).collect(),
    })
    .unwrap();
}

/// Ignores health and limits: any configured backend, at random.
struct IgnoresHealth;

impl Selector for IgnoresHealth {
    fn select(&mut self, ctx: SelectCtx<'_>) -> Option<BackendId> {
        Some(BackendId(ctx.rng.below(ctx.len() as u64) as u32))
    }
}

/// Ignores eligibility for backend 0 only: it always gets a connection it may take (a
/// policy that forgot the admin state, since backend 0 is up and has no limit in the tests).
struct PrefersBackend0;

impl Selector for PrefersBackend0 {
    fn select(&mut self, ctx: SelectCtx<'_>) -> Option<BackendId> {
        if !ctx.exclude.contains(&BackendId(0)) {
            return Some(BackendId(0));
        }
        ctx.usable_from(0).next().map(|i| BackendId(i as u32))
    }
}

/// Never chooses.
struct Refuses;

impl Selector for Refuses {
    fn select(&mut self, _: SelectCtx<'_>) -> Option<BackendId> {
        None
    }
}

#[test]
fn a_selector_that_ignores_health_is_caught() {
    let (config, mut ops) = only_backend_1_up();
    ops.extend([ACCEPT; 8]);
    let scenario = Scenario { config, ops };
    run(&scenario).unwrap();
    let options = Options {
        selector: Some(|_| Box::new(IgnoresHealth)),
        mutation: None,
    };
    assert_eq!(rule_of(&scenario, options), Rule::ConnectTarget);
}

#[test]
fn a_selector_that_refuses_while_a_backend_is_up_is_caught() {
    let scenario = Scenario {
        config: ConfigSpec::simple(2),
        ops: vec![ACCEPT],
    };
    run(&scenario).unwrap();
    let options = Options {
        selector: Some(|_| Box::new(Refuses)),
        mutation: None,
    };
    assert_eq!(rule_of(&scenario, options), Rule::MissedAlternative);
}

fn mutated(mutation: Mutation, config: ConfigSpec, ops: Vec<Op>) -> Rule {
    let scenario = Scenario { config, ops };
    run(&scenario).unwrap();
    rule_of(
        &scenario,
        Options {
            selector: None,
            mutation: Some(mutation),
        },
    )
}

#[test]
fn a_lost_close_is_caught() {
    let ops = vec![
        ACCEPT,
        Op::Reset {
            flow: 0,
            side: SideSel::Client,
        },
    ];
    assert_eq!(
        mutated(Mutation::DropClose, ConfigSpec::simple(1), ops),
        Rule::Liveness
    );
}

/// Both sides sent FIN, the backend's bytes wait to be written, then the backend resets:
/// the flow writes them, asks for their delivery and only then passes the reset on. The
/// liveness check leaves a flow alone while its delivery is being reported (the fuzzer's
/// `regressions/events/reset-after-both-fins-awaiting-delivery`), and still catches a flow
/// that stays open after it.
#[test]
fn a_reset_after_both_fins_closes_once_delivered_and_a_lost_close_there_is_caught() {
    let forced = |op| match op {
        Op::Eof { flow, side, .. } => Op::Eof {
            flow,
            side,
            force: true,
        },
        Op::Read {
            flow, side, len, ..
        } => Op::Read {
            flow,
            side,
            len,
            force: true,
        },
        op => op,
    };
    let ops = vec![
        ACCEPT,
        CONNECTED,
        forced(eof(SideSel::Client)),
        forced(read(SideSel::Backend, 500)),
        forced(eof(SideSel::Backend)),
        Op::Reset {
            flow: 0,
            side: SideSel::Backend,
        },
    ];
    let scenario = Scenario {
        config: ConfigSpec::simple(1),
        ops: ops.clone(),
    };
    run(&scenario).unwrap();
    assert_eq!(
        mutated(Mutation::DropClose, ConfigSpec::simple(1), ops),
        Rule::Liveness
    );
}

#[test]
fn a_lost_resume_is_caught() {
    // 150 bytes pass the high watermark of 101; writing them all must resume reading.
    let ops = vec![
        ACCEPT,
        CONNECTED,
        read(SideSel::Client, 150),
        written(SideSel::Backend),
    ];
    assert_eq!(
        mutated(Mutation::DropResume, ConfigSpec::simple(1), ops),
        Rule::Backpressure
    );
}

#[test]
fn a_connect_to_a_down_backend_is_caught() {
    let (config, mut ops) = only_backend_1_up();
    ops.push(ACCEPT);
    assert_eq!(
        mutated(Mutation::RedirectConnect, config, ops),
        Rule::ConnectTarget
    );
}

#[test]
fn reordered_bytes_are_caught() {
    let ops = vec![
        ACCEPT,
        CONNECTED,
        read(SideSel::Client, 10),
        read(SideSel::Client, 10),
    ];
    assert_eq!(
        mutated(Mutation::SwapWrites, ConfigSpec::simple(1), ops),
        Rule::ByteOrder
    );
}

/// A reset passed on at once loses the bytes the client had not read yet.
#[test]
fn a_reset_passed_on_before_its_bytes_is_caught() {
    let ops = vec![
        ACCEPT,
        CONNECTED,
        read(SideSel::Backend, 300),
        Op::Reset {
            flow: 0,
            side: SideSel::Backend,
        },
        written(SideSel::Client),
    ];
    let scenario = Scenario {
        config: ConfigSpec::simple(1),
        ops: ops.clone(),
    };
    run(&scenario).unwrap();
    assert_eq!(
        mutated(Mutation::EagerReset, ConfigSpec::simple(1), ops),
        Rule::ByteOrder
    );
}

#[test]
fn reading_a_paused_side_breaks_the_watermark_bound() {
    let ops = vec![
        ACCEPT,
        CONNECTED,
        read(SideSel::Client, 150),
        read(SideSel::Client, 150),
    ];
    assert_eq!(
        mutated(Mutation::ReadWhilePaused, ConfigSpec::simple(1), ops),
        Rule::Watermark
    );
}

fn admin(backend: BackendSel, state: AdminSel) -> Op {
    Op::Admin { backend, state }
}

#[test]
fn admin_changes_pass() {
    // Flows on backends that are drained, disabled and enabled again, with probes and an
    // unknown backend in between.
    let mut ops = vec![ACCEPT, CONNECTED, read(SideSel::Client, 20)];
    for state in [AdminSel::Drain, AdminSel::Disable, AdminSel::Enable] {
        for backend in [BackendSel::Index(0), BackendSel::Raw(7), BackendSel::Raw(2)] {
            ops.push(admin(backend, state));
            ops.extend([ACCEPT, Op::Advance(Advance::Secs(1))]);
            ops.push(Op::ProbeResult {
                probe: ProbeSel::ForBackend(0),
                passed: state != AdminSel::Drain,
            });
        }
    }
    ops.extend([
        written(SideSel::Backend),
        eof(SideSel::Client),
        eof(SideSel::Backend),
    ]);
    let stats = run(&Scenario {
        config: ConfigSpec::simple(3),
        ops,
    })
    .unwrap();
    // Backends 0 and 2 (named raw) change three times each; 7 does not exist.
    assert_eq!(stats.admin_changes, 6, "{stats:?}");
    assert!(stats.state_changes >= 3, "{stats:?}");
}

#[test]
fn a_selector_that_ignores_admin_state_is_caught() {
    let options = Options {
        selector: Some(|_| Box::new(PrefersBackend0)),
        mutation: None,
    };
    // Fine while backend 0 is enabled ...
    let enabled = Scenario {
        config: ConfigSpec::simple(2),
        ops: vec![ACCEPT, ACCEPT],
    };
    run_with(&enabled, options).unwrap();
    // ... not once it is drained or disabled.
    for state in [AdminSel::Drain, AdminSel::Disable] {
        let scenario = Scenario {
            config: ConfigSpec::simple(2),
            ops: vec![admin(BackendSel::Index(0), state), ACCEPT],
        };
        run(&scenario).unwrap();
        assert_eq!(rule_of(&scenario, options), Rule::ConnectTarget);
    }
}

#[test]
fn a_pool_that_ignores_admin_changes_is_caught() {
    for state in [AdminSel::Drain, AdminSel::Disable] {
        let ops = vec![ACCEPT, admin(BackendSel::Index(1), state), ACCEPT];
        assert_eq!(
            mutated(Mutation::DropAdmin, ConfigSpec::simple(2), ops),
            Rule::Admin
        );
    }
}

#[test]
fn local_connect_failures_blamed_on_the_backend_are_caught() {
    let local_failure = Op::ConnectFailed {
        flow: 0,
        attempt: AttemptSel::Current,
        local: true,
    };
    assert_eq!(
        mutated(
            Mutation::BlameLocal,
            ConfigSpec::simple(2),
            vec![ACCEPT, local_failure]
        ),
        Rule::LocalFailure
    );
}

#[test]
fn probes_that_could_not_run_counted_as_failed_are_caught() {
    let (config, mut ops) = only_backend_1_up();
    // Backend 1 is up and due for its next probe, which cannot run (say, out of descriptors).
    ops.extend([
        Op::Advance(Advance::Secs(1)),
        Op::ProbeNotRun {
            probe: ProbeSel::ForBackend(1),
        },
    ]);
    assert_eq!(
        mutated(Mutation::BlameLocal, config, ops),
        Rule::LocalFailure
    );
}

#[test]
fn an_action_after_close_is_caught() {
    let ops = vec![
        ACCEPT,
        Op::Reset {
            flow: 0,
            side: SideSel::Client,
        },
    ];
    assert_eq!(
        mutated(Mutation::DoubleClose, ConfigSpec::simple(1), ops),
        Rule::ActionAfterClose
    );
}

#[test]
fn a_pool_that_serves_unknown_flow_ids_is_caught() {
    // The stray call names flow 2^32 + 0, which the mutation cuts down to flow 0: open, on
    // a backend.
    for call in [StrayCall::CloseFlow, StrayCall::Select] {
        let ops = vec![
            ACCEPT,
            CONNECTED,
            Op::Stray {
                call,
                flow: 0,
                backend: 0,
            },
        ];
        assert_eq!(
            mutated(Mutation::TruncateFlowIds, ConfigSpec::simple(2), ops),
            Rule::UnknownFlow
        );
    }
}

#[test]
fn a_seat_never_given_back_is_caught() {
    let ops = vec![
        ACCEPT,
        CONNECTED,
        Op::Reset {
            flow: 0,
            side: SideSel::Backend,
        },
    ];
    assert_eq!(
        mutated(Mutation::LeakFlow, ConfigSpec::simple(1), ops),
        Rule::ActiveCount
    );
}

#[test]
fn a_connection_limit_off_by_one_is_caught() {
    // max_connections = 1 + 1: the second client must be admitted.
    let mut config = ConfigSpec::simple(2);
    config.max_connections = 1;
    assert_eq!(
        mutated(Mutation::LimitOffByOne, config, vec![ACCEPT, ACCEPT]),
        Rule::ConnectionLimit
    );
}

#[test]
fn a_deadline_in_the_past_is_caught() {
    // The connect deadline is at 1 s; the driver, told 999 ms, wakes up for nothing.
    let ops = vec![ACCEPT, Op::Advance(Advance::Millis(999))];
    assert_eq!(
        mutated(Mutation::EarlyDeadline, ConfigSpec::simple(1), ops),
        Rule::Timer
    );
}

#[test]
fn a_close_reason_for_the_wrong_side_is_caught() {
    let ops = vec![
        ACCEPT,
        CONNECTED,
        Op::Reset {
            flow: 0,
            side: SideSel::Client,
        },
    ];
    assert_eq!(
        mutated(Mutation::SwapResetSide, ConfigSpec::simple(1), ops),
        Rule::CloseReason
    );
}

#[test]
fn an_unbounded_burst_of_outputs_is_caught() {
    let ops = vec![ACCEPT, CONNECTED, read(SideSel::Client, 1000)];
    assert_eq!(
        mutated(Mutation::SplitWrites, ConfigSpec::simple(1), ops),
        Rule::Unbounded
    );
}

#[test]
fn lost_pool_events_are_caught() {
    let (config, ops) = only_backend_1_up();
    assert_eq!(mutated(Mutation::DropEvents, config, ops), Rule::PoolEvents);
}

#[test]
fn a_latency_sample_for_the_wrong_backend_is_caught() {
    // The connect time is a sample with every algorithm, and the first one given: with
    // least_response_time the time to first byte (through `UpdatePool`) would come next.
    let mut least = ConfigSpec::simple(2);
    least.algorithm = lb_harness::available_algorithms()
        .iter()
        .position(|&a| a == lb_sans_io::config::Algorithm::LeastResponseTime)
        .expect("least_response_time is available") as u8;
    for config in [ConfigSpec::simple(2), least] {
        let ops = vec![
            ACCEPT,
            CONNECTED,
            read(SideSel::Client, 10),
            read(SideSel::Backend, 10),
        ];
        assert_eq!(
            mutated(Mutation::LatencyWrongBackend, config, ops),
            Rule::Latency
        );
    }
}

/// One backend up from the start, `rise` = `fall` = 2 (the spec's 1 folded), probed every
/// second (`only_backend_1_up` style): `results` are its probes' outcomes, one a second.
fn probed(start_up: bool, results: &[bool]) -> (ConfigSpec, Vec<Op>) {
    let mut config = ConfigSpec::simple(1);
    config.start_up = start_up;
    let mut ops = Vec::new();
    for &passed in results {
        ops.push(Op::Advance(Advance::Secs(1)));
        ops.push(Op::ProbeResult {
            probe: ProbeSel::ForBackend(0),
            passed,
        });
    }
    (config, ops)
}

#[test]
fn a_pool_that_ignores_probe_results_is_caught() {
    for (start_up, passed) in [(false, true), (true, false)] {
        let (config, ops) = probed(start_up, &[passed, passed]);
        assert_eq!(
            mutated(Mutation::IgnoreProbeResults, config, ops),
            Rule::Health
        );
    }
}

#[test]
fn a_pool_without_passive_health_is_caught() {
    // fall = 1: one failed connect takes the backend down (and counts as a failure).
    let mut config = ConfigSpec::simple(2);
    config.fall = 0;
    let connect_failed = Op::ConnectFailed {
        flow: 0,
        attempt: AttemptSel::Current,
        local: false,
    };
    let connect_timeout = Op::Advance(Advance::Secs(2));
    for failure in [connect_failed, connect_timeout] {
        assert_eq!(
            mutated(
                Mutation::NoPassiveHealth,
                config.clone(),
                vec![ACCEPT, failure]
            ),
            Rule::Health
        );
    }
}

#[test]
fn rise_off_by_one_is_caught() {
    // Down and unchecked: a first failure ends the free first pass, then two passes (rise)
    // bring it up.
    let (config, ops) = probed(false, &[false, true, true]);
    assert_eq!(mutated(Mutation::RiseOffByOne, config, ops), Rule::Health);
}

#[test]
fn fall_off_by_one_is_caught() {
    let (config, ops) = probed(true, &[false, false]);
    assert_eq!(mutated(Mutation::FallOffByOne, config, ops), Rule::Health);
}

#[test]
fn the_health_model_agrees_with_the_pool_on_every_path() {
    // Two backends, down until checked, rise = fall = 2; probes every second, failed 500 ms
    // after they start; connects time out after 1 s.
    let mut config = ConfigSpec::simple(2);
    config.start_up = false;
    let probe = |b: u8, passed: bool| Op::ProbeResult {
        probe: ProbeSel::ForBackend(b),
        passed,
    };
    let ops = vec![
        Op::Advance(Advance::Secs(1)),
        // Unchecked: one pass is enough.
        probe(0, true),
        // Could not run: counts for nothing, b1 stays unchecked.
        Op::ProbeNotRun {
            probe: ProbeSel::ForBackend(1),
        },
        // Never issued: ignored.
        Op::ProbeResult {
            probe: ProbeSel::Raw(9_999),
            passed: false,
        },
        Op::Advance(Advance::Secs(1)),
        // Both probes time out: b0's first failure (1 of 2), b1 checked and down.
        Op::Advance(Advance::Millis(600)),
        // A late answer to a timed-out probe: ignored.
        Op::ProbeResult {
            probe: ProbeSel::Outstanding(0),
            passed: true,
        },
        // A refused client connect is b0's second failure: down.
        ACCEPT,
        Op::ConnectFailed {
            flow: 0,
            attempt: AttemptSel::Current,
            local: false,
        },
        // b1 is disabled while its probe runs; the result still counts (1 pass of 2).
        Op::Advance(Advance::Secs(1)),
        admin(BackendSel::Index(1), AdminSel::Disable),
        probe(1, true),
        // Enabled again: unchecked, probed at once, up on its first pass.
        admin(BackendSel::Index(1), AdminSel::Enable),
        probe(1, true),
        // A connect to b1 times out: its first failure (still up).
        Op::Accept { client: 2 },
        Op::Advance(Advance::Millis(1_000)),
        // b0, checked and down, comes back after two passes in a row.
        Op::Advance(Advance::Secs(1)),
        probe(0, true),
        Op::Advance(Advance::Secs(1)),
        probe(0, true),
    ];
    let scenario = Scenario { config, ops };
    let stats = run(&scenario).unwrap();
    assert!(stats.probe_timeouts >= 2, "{stats:?}");
    assert_eq!(stats.passive_failures, 2, "{stats:?}");
    assert!(stats.state_changes >= 4, "{stats:?}");
    // The same checks under a model one off in rise or fall disagree with the pool.
    for mutation in [Mutation::RiseOffByOne, Mutation::FallOffByOne] {
        let options = Options {
            selector: None,
            mutation: Some(mutation),
        };
        assert_eq!(rule_of(&scenario, options), Rule::Health);
    }
}

fn config_rule(data: &[u8], mutation: ConfigMutation) -> Rule {
    check_config_bytes(data).unwrap();
    match check_config_bytes_with(data, Some(mutation)) {
        Ok(()) => panic!("the config check found nothing wrong with {mutation:?}"),
        Err(v) => {
            eprintln!("reported as expected: {v}");
            v.rule
        }
    }
}

#[test]
fn a_config_parser_that_ignores_trailing_bytes_is_caught() {
    // The regression input: a config, then a second object (the real parser refuses it).
    let trailing = include_bytes!("../../fuzz/regressions/config/trailing-second-object");
    assert_eq!(
        config_rule(trailing, ConfigMutation::IgnoreTrailing),
        Rule::ConfigRoundTrip
    );
}

#[test]
fn a_config_parser_that_reads_arrays_is_caught() {
    // The regression input: a config written as an array (the real parser refuses it).
    let array = include_bytes!("../../fuzz/regressions/config/top-level-array");
    assert_eq!(
        config_rule(array, ConfigMutation::ReadsArrays),
        Rule::ConfigRoundTrip
    );
}

#[test]
fn a_config_renderer_that_drops_a_field_is_caught() {
    let data = br#"{"backends":[{"address":"127.0.0.1:1"}],"retries":5}"#;
    assert_eq!(
        config_rule(data, ConfigMutation::RendererDropsRetries),
        Rule::ConfigRoundTrip
    );
}

/// Named-form configs (listeners and pools) read and render in their own form: the shape
/// rule compares the rendered config with the text, so they must pass it, and the
/// renderer's fault is found in a pool's field too.
#[test]
fn named_configs_pass_the_config_check_and_a_dropped_pool_field_is_caught() {
    use lb_sans_io::config::{Config, Form};
    let named: [&[u8]; 3] = [
        include_bytes!("../../fuzz/corpus/config/named-two-listeners-sni"),
        include_bytes!("../../fuzz/corpus/config/named-sni-only"),
        include_bytes!("../../fuzz/corpus/config/named-keepalive-three-pools"),
    ];
    for data in named {
        let text = std::str::from_utf8(data).unwrap();
        let config = Config::from_json(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(config.form, Form::Named);
        assert!(config.to_json().contains("\"listeners\""));
        check_config_bytes(data).unwrap();
    }
    // A pool with `retries` other than the default (1 and 7 here).
    for data in [named[0], named[2]] {
        assert_eq!(
            config_rule(data, ConfigMutation::RendererDropsRetries),
            Rule::ConfigRoundTrip
        );
    }
    // Other shapes of a named config are refused, by the real parser and the derived
    // reader alike (it reads only the top level without the shape rule).
    for data in [
        &include_bytes!("../../fuzz/corpus/config/named-pool-as-array")[..],
        include_bytes!("../../fuzz/corpus/config/named-mixed-with-flat"),
    ] {
        let text = std::str::from_utf8(data).unwrap();
        assert!(Config::from_json(text).is_err());
        assert!(Config::from_json_any_shape(text).is_err());
        check_config_bytes_with(data, Some(ConfigMutation::ReadsArrays)).unwrap();
    }
}

fn admin_rule(request: &[u8], mutation: AdminMutation) -> Rule {
    // The first byte is where the connection's bytes split: after the whole head.
    let mut data = vec![255];
    data.extend_from_slice(request);
    check_admin_bytes(&data).unwrap();
    match check_admin_bytes_with(&data, Some(mutation)) {
        Ok(()) => panic!("the admin check found nothing wrong with {mutation:?}"),
        Err(v) => {
            eprintln!("reported as expected: {v}");
            v.rule
        }
    }
}

#[test]
fn a_wrong_content_length_is_caught() {
    for request in [
        &b"GET /status HTTP/1.1\r\n\r\n"[..],
        b"HEAD /metrics HTTP/1.1\r\n\r\n",
        b"POST /backends/a/drain HTTP/1.1\r\n\r\n",
        b"GET /nowhere HTTP/1.1\r\n\r\n",
    ] {
        assert_eq!(
            admin_rule(request, AdminMutation::ContentLengthOffByOne),
            Rule::AdminHttp
        );
    }
}

#[test]
fn an_action_answered_to_get_is_caught() {
    assert_eq!(
        admin_rule(
            b"GET /backends/a/drain HTTP/1.1\r\n\r\n",
            AdminMutation::IgnoreMethod
        ),
        Rule::AdminHttp
    );
}

/// A client of the `sni` listener (odd clients) whose first bytes are stream kind `kind`
/// of `lb_harness::hello::client_stream` (0: a ClientHello naming `api.example.com`, 2:
/// `www.example.com`, 3: `db.internal.example.com`, 7: `other.net`, 13: one without
/// `server_name`, 14: a ClientHello cut short, 15: an HTTP request).
fn tls_client(kind: u8) -> Op {
    Op::Accept {
        client: 2 * kind + 1,
    }
}

fn read_flow(flow: u8, side: SideSel, len: u16) -> Op {
    Op::Read {
        flow,
        side,
        len,
        force: false,
    }
}

/// Two listeners; pools: 0 (the plain listener's), 1 and 2; the `sni` listener routes
/// `api.example.com` to 1, `*.example.com` to 2, `*.internal.example.com` to 1 and has no
/// default pool (`API2.Example.COM` and `*.org` left out). Watermarks high enough for a
/// whole ClientHello.
fn routed_config() -> ConfigSpec {
    let mut config =
        ConfigSpec::simple(6).with_routes(3, None, [Some(1), Some(2), Some(1), None, None]);
    config.high_watermark = 20_000;
    config.low_watermark = 5_000;
    config
}

#[test]
fn routing_by_server_name_passes() {
    let built = routed_config().build();
    let tls = &built.config.listeners[1];
    assert!(tls.pool.is_none(), "{tls:?}");
    assert_eq!(built.config.pools.len(), 3);
    let mut ops = Vec::new();
    // Flow 0: a plain client; flows 1..: ClientHellos read whole, in pieces, stalled,
    // without a name, garbage.
    ops.push(Op::Accept { client: 2 });
    for kind in [0, 2, 3, 7, 13, 14, 15, 0, 3] {
        ops.push(tls_client(kind));
    }
    for flow in 0..10u8 {
        // Pieces of 1, 7 and 60 bytes, then the rest (a ClientHello in 1-byte records,
        // padded, is about 4 KB).
        for len in [1, 7, 60, 10_000] {
            ops.push(read_flow(flow, SideSel::Client, len));
        }
        ops.push(Op::Connected {
            flow,
            attempt: AttemptSel::Current,
        });
        ops.push(read_flow(flow, SideSel::Backend, 30));
    }
    // The stalled client is routed by timeouts.client_hello.
    ops.push(Op::Advance(Advance::Secs(5)));
    let stats = run(&Scenario {
        config: routed_config(),
        ops,
    })
    .unwrap();
    eprintln!("{stats:?}");
    // Names: api, www, db (twice with the second api); other.net, no name, garbage and the
    // stalled one have no route (no default pool).
    assert_eq!(stats.routed_by_name, 5, "{stats:?}");
    assert_eq!(stats.no_route, 4, "{stats:?}");
    assert_eq!(stats.client_hello_timeouts, 1, "{stats:?}");
}

#[test]
fn a_balancer_that_ignores_sni_is_caught() {
    // `api.example.com` routes to pool 1; ignoring the name leaves no route.
    let ops = vec![
        tls_client(0),
        read_flow(0, SideSel::Client, 2_000),
        CONNECTED,
    ];
    assert_eq!(
        mutated(Mutation::SniIgnored, routed_config(), ops),
        Rule::Route
    );
    // With a default pool, the flow lands there instead of on its name's pool.
    let with_default = ConfigSpec::simple(6).with_routes(2, Some(0), [Some(1); 5]);
    let ops = vec![tls_client(2), read_flow(0, SideSel::Client, 2_000)];
    let mut config = with_default;
    config.high_watermark = 20_000;
    assert_eq!(mutated(Mutation::SniIgnored, config, ops), Rule::Route);
}

#[test]
fn a_client_hello_judged_by_its_first_segment_is_caught() {
    // Read whole, the first segment names the server: fine even with the mutation.
    let whole = Scenario {
        config: routed_config(),
        ops: vec![tls_client(0), read_flow(0, SideSel::Client, 2_000)],
    };
    let options = Options {
        selector: None,
        mutation: Some(Mutation::FirstSegmentOnly),
    };
    run_with(&whole, options).unwrap();
    // Split anywhere, it must route the same.
    for first in [1, 5, 6, 50] {
        let ops = vec![
            tls_client(0),
            read_flow(0, SideSel::Client, first),
            read_flow(0, SideSel::Client, 2_000),
        ];
        assert_eq!(
            mutated(Mutation::FirstSegmentOnly, routed_config(), ops),
            Rule::Route
        );
    }
}

#[test]
fn a_connect_to_another_pools_backend_is_caught() {
    let ops = vec![Op::Accept { client: 0 }];
    assert_eq!(
        mutated(Mutation::ConnectOtherPool, routed_config(), ops),
        Rule::Route
    );
    let ops = vec![tls_client(3), read_flow(0, SideSel::Client, 2_000)];
    assert_eq!(
        mutated(Mutation::ConnectOtherPool, routed_config(), ops),
        Rule::Route
    );
}

#[test]
fn an_allow_list_ignored_is_caught() {
    // The plain listener allows 192.168.0.0/21 (clients 0 to 7 modulo 16): client 8 is
    // refused.
    let mut config = routed_config();
    config.seed |= 1 << 17;
    let ops = vec![Op::Accept { client: 0 }, Op::Accept { client: 8 }];
    let scenario = Scenario {
        config: config.clone(),
        ops: ops.clone(),
    };
    assert_eq!(run(&scenario).unwrap().not_allowed, 1);
    assert_eq!(
        mutated(Mutation::AllowIgnored, config, ops),
        Rule::ConnectionLimit
    );
}

#[test]
fn a_reader_that_does_not_reassemble_records_is_caught() {
    // A ClientHello in records of 100 bytes (from the fuzz corpus), read in three pieces.
    let hello = include_bytes!("../../fuzz/corpus/client_hello/tls13-sni-records-100");
    check_client_hello_bytes(hello).unwrap();
    let v = check_client_hello_bytes_with(hello, Some(ClientHelloMutation::FirstRecordOnly))
        .expect_err("the reader's fault is found");
    eprintln!("reported as expected: {v}");
    assert_eq!(v.rule, Rule::Route);
}

/// The test that makes each rule fire. The match is exhaustive: a new rule does not compile
/// until it is listed here, and `every_rule_is_shown_to_fire` fails until the test named
/// exists and asserts that rule.
fn test_for(rule: Rule) -> &'static str {
    match rule {
        Rule::ByteOrder => "reordered_bytes_are_caught",
        Rule::ActionAfterClose => "an_action_after_close_is_caught",
        Rule::UnknownFlow => "a_pool_that_serves_unknown_flow_ids_is_caught",
        Rule::ConnectTarget => "a_connect_to_a_down_backend_is_caught",
        Rule::MissedAlternative => "a_selector_that_refuses_while_a_backend_is_up_is_caught",
        Rule::ActiveCount => "a_seat_never_given_back_is_caught",
        Rule::ConnectionLimit => "a_connection_limit_off_by_one_is_caught",
        Rule::Backpressure => "a_lost_resume_is_caught",
        Rule::Watermark => "reading_a_paused_side_breaks_the_watermark_bound",
        Rule::Timer => "a_deadline_in_the_past_is_caught",
        Rule::Liveness => "a_lost_close_is_caught",
        Rule::CloseReason => "a_close_reason_for_the_wrong_side_is_caught",
        Rule::Unbounded => "an_unbounded_burst_of_outputs_is_caught",
        Rule::PoolEvents => "lost_pool_events_are_caught",
        Rule::Latency => "a_latency_sample_for_the_wrong_backend_is_caught",
        Rule::ConfigRoundTrip => "a_config_renderer_that_drops_a_field_is_caught",
        Rule::Admin => "a_pool_that_ignores_admin_changes_is_caught",
        Rule::LocalFailure => "local_connect_failures_blamed_on_the_backend_are_caught",
        Rule::AdminHttp => "a_wrong_content_length_is_caught",
        Rule::Health => "a_pool_that_ignores_probe_results_is_caught",
        Rule::Route => "a_balancer_that_ignores_sni_is_caught",
    }
}

#[test]
fn every_rule_is_shown_to_fire() {
    const ALL: [Rule; 21] = [
        Rule::ByteOrder,
        Rule::ActionAfterClose,
        Rule::UnknownFlow,
        Rule::ConnectTarget,
        Rule::MissedAlternative,
        Rule::ActiveCount,
        Rule::ConnectionLimit,
        Rule::Backpressure,
        Rule::Watermark,
        Rule::Timer,
        Rule::Liveness,
        Rule::CloseReason,
        Rule::Unbounded,
        Rule::PoolEvents,
        Rule::Latency,
        Rule::ConfigRoundTrip,
        Rule::Admin,
        Rule::LocalFailure,
        Rule::AdminHttp,
        Rule::Health,
        Rule::Route,
    ];
    let source = include_str!("harness_mutations.rs");
    for rule in ALL {
        let name = test_for(rule);
        let start = source
            .find(&format!("#[test]\nfn {name}()"))
            .unwrap_or_else(|| panic!("{rule:?}: no test {name}"));
        let body = &source[start + 8..];
        let body = &body[..body.find("\n#[test]").unwrap_or(body.len())];
        assert!(
            body.contains(&format!("Rule::{rule:?}")),
            "{rule:?}: {name} does not assert it"
        );
    }
}
