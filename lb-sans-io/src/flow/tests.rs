use super::*;
use crate::balancer::Balancer;
use crate::config::Config;
use crate::pool::{BackendState, Pool};

const CLIENT: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 40000);

fn at(ms: u64) -> Timestamp {
    Timestamp::from_nanos(ms * 1_000_000)
}

/// A balancer from a config, with small watermarks, and the flows' listener.
struct Rig {
    lb: Balancer,
}

impl Rig {
    /// A flat config of `n` backends, all up (`start_up`).
    fn new(n: usize, extra: &str) -> Rig {
        let backends: Vec<String> = (0..n)
            .map(|i| format!(r#"{{"name":"b{i}","address":"127.0.0.1:{}"}}"#, 5001 + i))
            .collect();
        Rig::from_json(&format!(
            r#"{{"backends":[{}],"health_check":{{"start_up":true,"fall":100}}{extra}}}"#,
            backends.join(",")
        ))
    }

    /// Any config whose backend addresses are all `IP:PORT`.
    fn from_json(json: &str) -> Rig {
        let c = Config::from_json(json).unwrap();
        let mut lb = Balancer::new(&c, &addrs(&c), 3, Timestamp::ZERO);
        lb.set_watermarks(100, 40);
        Rig { lb }
    }

    /// The first pool (the only one of a flat config).
    fn pool(&self) -> &Pool {
        self.lb.pool(PoolId(0)).unwrap()
    }

    fn accept(&mut self, id: u64, now: Timestamp) -> Flow {
        Flow::accept(&mut self.lb, FlowId(id), ListenerId(0), CLIENT, None, now)
    }

    /// Accepts and connects a flow to its first backend.
    fn established(&mut self, id: u64) -> Flow {
        let mut f = self.accept(id, at(0));
        let FlowAction::Connect { attempt, .. } = f.poll_action().unwrap() else {
            panic!("expected connect")
        };
        f.handle_connected(&mut self.lb, attempt, at(0));
        assert_eq!(f.poll_action(), None);
        f
    }
}

/// The backend addresses of every pool of `c`, as written.
fn addrs(c: &Config) -> Vec<Vec<SocketAddr>> {
    c.pools
        .iter()
        .map(|p| {
            p.backends
                .iter()
                .map(|b| b.address.to_string().parse().unwrap())
                .collect()
        })
        .collect()
}

fn drain(f: &mut Flow) -> Vec<FlowAction> {
    std::iter::from_fn(|| f.poll_action()).collect()
}

fn b(s: &'static str) -> Bytes {
    Bytes::from_static(s.as_bytes())
}

fn write(side: Side, s: &'static str) -> FlowAction {
    FlowAction::Write { side, data: b(s) }
}

#[test]
fn bytes_are_forwarded_in_order_both_ways() {
    let mut r = Rig::new(1, "");
    let mut f = r.established(1);
    f.handle_read(Side::Client, b("GET / HTTP/1.1\r\n"), at(1));
    f.handle_read(Side::Client, b("\r\n"), at(1));
    f.handle_read(Side::Backend, b("HTTP/1.1 200 OK\r\n"), at(2));
    assert_eq!(
        drain(&mut f),
        [
            write(Side::Backend, "GET / HTTP/1.1\r\n"),
            write(Side::Backend, "\r\n"),
            write(Side::Client, "HTTP/1.1 200 OK\r\n"),
        ]
    );
}

#[test]
fn forwarding_passes_the_same_buffer_without_copying() {
    let mut r = Rig::new(1, "");
    let mut f = r.established(1);
    let data = Bytes::from(vec![7u8; 50]);
    let ptr = data.as_ptr();
    f.handle_read(Side::Client, data, at(1));
    let Some(FlowAction::Write { data, .. }) = f.poll_action() else {
        panic!()
    };
    assert_eq!(data.as_ptr(), ptr);
}

#[test]
fn client_bytes_sent_before_the_backend_is_up_are_delivered_first() {
    let mut r = Rig::new(1, "");
    let mut f = r.accept(1, at(0));
    let FlowAction::Connect { attempt, .. } = f.poll_action().unwrap() else {
        panic!()
    };
    f.handle_read(Side::Client, b("early "), at(1));
    f.handle_read(Side::Client, b("bird"), at(1));
    f.handle_eof(Side::Client, at(1));
    assert_eq!(drain(&mut f), []);
    f.handle_connected(&mut r.lb, attempt, at(2));
    assert_eq!(
        drain(&mut f),
        [
            write(Side::Backend, "early "),
            write(Side::Backend, "bird"),
            FlowAction::Shutdown {
                side: Side::Backend
            },
        ]
    );
}

#[test]
fn client_half_close_is_passed_on_and_the_reply_keeps_flowing() {
    let mut r = Rig::new(1, "");
    let mut f = r.established(1);
    f.handle_read(Side::Client, b("ping"), at(1));
    f.handle_eof(Side::Client, at(1));
    assert_eq!(
        drain(&mut f),
        [
            write(Side::Backend, "ping"),
            FlowAction::Shutdown {
                side: Side::Backend
            }
        ]
    );
    f.handle_written(Side::Backend, 4, at(2));
    f.handle_read(Side::Backend, b("pong"), at(3));
    assert_eq!(drain(&mut f), [write(Side::Client, "pong")]);
    f.handle_eof(Side::Backend, at(4));
    assert_eq!(drain(&mut f), [FlowAction::Shutdown { side: Side::Client }]);
    assert!(!f.is_closed(), "the reply is not delivered yet");
    f.handle_written(Side::Client, 4, at(5));
    assert_eq!(
        drain(&mut f),
        [FlowAction::Close {
            reason: CloseReason::Completed,
            reset: false
        }]
    );
    f.release(&mut r.lb, at(5));
    assert_eq!(r.lb.open_flows(), 0);
    assert_eq!(r.pool().open_flows(), 0);
    r.lb.check_invariants();
    assert_eq!(r.pool().backends()[0].active, 0);
    assert_eq!(r.pool().backends()[0].bytes_to_backend, 4);
    assert_eq!(r.pool().backends()[0].bytes_to_client, 4);
}

#[test]
fn backend_half_close_is_passed_on_and_the_client_keeps_sending() {
    let mut r = Rig::new(1, "");
    let mut f = r.established(1);
    f.handle_eof(Side::Backend, at(1));
    assert_eq!(drain(&mut f), [FlowAction::Shutdown { side: Side::Client }]);
    f.handle_read(Side::Client, b("more"), at(2));
    assert_eq!(drain(&mut f), [write(Side::Backend, "more")]);
    f.handle_written(Side::Backend, 4, at(2));
    f.handle_eof(Side::Client, at(3));
    assert_eq!(
        drain(&mut f),
        [
            FlowAction::Shutdown {
                side: Side::Backend
            },
            FlowAction::Close {
                reason: CloseReason::Completed,
                reset: false
            },
        ]
    );
}

#[test]
fn backpressure_pauses_at_the_high_watermark_and_resumes_at_the_low() {
    let mut r = Rig::new(1, "");
    let mut f = r.established(1);
    let chunk = Bytes::from(vec![1u8; 30]);
    for _ in 0..3 {
        f.handle_read(Side::Client, chunk.clone(), at(1));
    }
    assert!(!f.is_paused(Side::Client));
    f.handle_read(Side::Client, chunk.clone(), at(1));
    let actions = drain(&mut f);
    assert_eq!(actions.len(), 5);
    assert_eq!(actions[4], FlowAction::PauseRead { side: Side::Client });
    assert!(f.is_paused(Side::Client));
    assert_eq!(f.backlog(Side::Client), 120);
    // The other direction is not affected.
    assert!(!f.is_paused(Side::Backend));
    f.handle_written(Side::Backend, 60, at(2));
    assert_eq!(
        drain(&mut f),
        [],
        "60 bytes still queued: above the low watermark"
    );
    f.handle_written(Side::Backend, 20, at(2));
    assert_eq!(
        drain(&mut f),
        [FlowAction::ResumeRead { side: Side::Client }]
    );
    assert!(!f.is_paused(Side::Client));
}

#[test]
fn bytes_count_for_the_backend_as_they_are_forwarded_not_only_at_close() {
    let mut r = Rig::new(1, "");
    r.lb.set_watermarks(1 << 20, 1 << 19);
    let mut f = r.established(1);
    let sent = |r: &Rig| {
        let b = &r.pool().backends()[0];
        (b.bytes_to_backend, b.bytes_to_client)
    };
    // 200 KiB written on: under REPORT_BYTES, and under a second: nothing to report.
    let chunk = Bytes::from(vec![1u8; 100 * 1024]);
    for _ in 0..2 {
        f.handle_read(Side::Client, chunk.clone(), at(1));
        f.handle_written(Side::Backend, chunk.len(), at(1));
    }
    assert!(!drain(&mut f).contains(&FlowAction::UpdatePool));
    // Another 100 KiB read, half written: 250 KiB forwarded, still under.
    f.handle_read(Side::Client, chunk.clone(), at(2));
    f.handle_written(Side::Backend, 50 * 1024, at(2));
    assert!(!drain(&mut f).contains(&FlowAction::UpdatePool));
    // The rest written: 300 KiB forwarded, over REPORT_BYTES: one report of all of it.
    f.handle_written(Side::Backend, 50 * 1024, at(3));
    let actions = drain(&mut f);
    assert_eq!(actions, [FlowAction::UpdatePool]);
    assert_eq!(
        sent(&r),
        (0, 0),
        "counted when the flow reports, not before"
    );
    f.update_pool(&mut r.lb, at(3));
    assert_eq!(sent(&r), (300 * 1024, 0));
    // A few bytes each way a second later: reported then, though few.
    f.handle_read(Side::Backend, b("hello"), at(500));
    f.handle_written(Side::Client, 5, at(500));
    assert!(!drain(&mut f).contains(&FlowAction::UpdatePool));
    f.handle_read(Side::Backend, b("world"), at(1_003));
    f.handle_written(Side::Client, 5, at(1_003));
    assert_eq!(drain(&mut f).last(), Some(&FlowAction::UpdatePool));
    f.update_pool(&mut r.lb, at(1_003));
    assert_eq!(sent(&r), (300 * 1024, 10));
    // At close, only the bytes not reported yet are added: no byte is counted twice.
    f.handle_read(Side::Client, b("bye"), at(1_100));
    f.handle_written(Side::Backend, 3, at(1_100));
    f.handle_eof(Side::Client, at(1_100));
    f.handle_eof(Side::Backend, at(1_100));
    drain(&mut f);
    assert!(f.is_closed());
    f.release(&mut r.lb, at(1_100));
    assert_eq!(sent(&r), (300 * 1024 + 3, 10));
}

#[test]
fn the_backlog_before_connect_is_bounded_too() {
    let mut r = Rig::new(1, "");
    let mut f = r.accept(1, at(0));
    let FlowAction::Connect { attempt, .. } = f.poll_action().unwrap() else {
        panic!()
    };
    f.handle_read(Side::Client, Bytes::from(vec![0u8; 100]), at(1));
    assert_eq!(
        drain(&mut f),
        [FlowAction::PauseRead { side: Side::Client }]
    );
    f.handle_connected(&mut r.lb, attempt, at(2));
    assert_eq!(drain(&mut f).len(), 1);
    f.handle_written(Side::Backend, 100, at(3));
    assert_eq!(
        drain(&mut f),
        [FlowAction::ResumeRead { side: Side::Client }]
    );
}

#[test]
fn idle_timeout_closes_a_silent_flow_and_traffic_defers_it() {
    let mut r = Rig::new(1, r#","timeouts":{"idle":"10s"}"#);
    let mut f = r.established(1);
    assert_eq!(f.poll_timeout(), Some(at(10_000)));
    f.handle_read(Side::Client, b("x"), at(4_000));
    drain(&mut f);
    assert_eq!(f.poll_timeout(), Some(at(14_000)));
    f.handle_timeout(&mut r.lb, at(10_000));
    assert_eq!(drain(&mut f), [], "an early timer is harmless");
    f.handle_timeout(&mut r.lb, at(14_000));
    assert_eq!(
        drain(&mut f),
        [FlowAction::Close {
            reason: CloseReason::IdleTimeout,
            reset: false
        }]
    );
    assert_eq!(f.poll_timeout(), None);
}

#[test]
fn half_close_timeout_bounds_the_other_direction() {
    let mut r = Rig::new(1, r#","timeouts":{"idle":"1h","half_close":"5s"}"#);
    let mut f = r.established(1);
    f.handle_eof(Side::Client, at(1_000));
    drain(&mut f);
    assert_eq!(f.poll_timeout(), Some(at(6_000)));
    f.handle_read(Side::Backend, b("still talking"), at(3_000));
    drain(&mut f);
    assert_eq!(f.poll_timeout(), Some(at(8_000)));
    f.handle_timeout(&mut r.lb, at(8_000));
    assert_eq!(
        drain(&mut f),
        [FlowAction::Close {
            reason: CloseReason::HalfCloseTimeout,
            reset: false
        }]
    );
}

#[test]
fn a_reset_on_one_side_resets_the_other() {
    for side in Side::BOTH {
        let mut r = Rig::new(1, "");
        let mut f = r.established(1);
        f.handle_reset(side, at(1));
        assert_eq!(
            drain(&mut f),
            [FlowAction::Close {
                reason: CloseReason::Reset(side),
                reset: true
            }]
        );
        // Nothing after the close.
        f.handle_read(Side::Client, b("late"), at(2));
        f.handle_eof(Side::Backend, at(2));
        assert_eq!(drain(&mut f), []);
        f.release(&mut r.lb, at(2));
        r.lb.check_invariants();
        assert_eq!(r.lb.open_flows(), 0);
    }
}

#[test]
fn retries_try_other_backends_and_never_repeat_one() {
    let mut r = Rig::new(3, r#","retries":5"#);
    let mut f = r.accept(1, at(0));
    let mut tried = Vec::new();
    loop {
        match f.poll_action().unwrap() {
            FlowAction::Connect {
                backend, attempt, ..
            } => {
                assert!(!tried.contains(&backend), "{backend:?} tried twice");
                tried.push(backend);
                f.handle_connect_failed(&mut r.lb, attempt, ConnectFailure::Backend, at(1));
            }
            FlowAction::Close { reason, reset } => {
                assert_eq!(
                    reason,
                    CloseReason::ConnectFailed {
                        attempts: 3,
                        local: false
                    }
                );
                assert!(!reset);
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(tried.len(), 3);
    f.release(&mut r.lb, at(1));
    r.lb.check_invariants();
}

#[test]
fn retries_are_bounded_by_the_config() {
    let mut r = Rig::new(5, r#","retries":1"#);
    let mut f = r.accept(1, at(0));
    let mut connects = 0;
    while let Some(a) = f.poll_action() {
        if let FlowAction::Connect { attempt, .. } = a {
            connects += 1;
            f.handle_connect_failed(&mut r.lb, attempt, ConnectFailure::Backend, at(1));
        }
    }
    assert_eq!(connects, 2);
    assert_eq!(
        f.summary().reason,
        Some(CloseReason::ConnectFailed {
            attempts: 2,
            local: false
        })
    );
}

#[test]
fn local_connect_failures_retry_without_blaming_the_backends() {
    let mut r = Rig::new(2, r#","retries":1"#);
    let mut f = r.accept(1, at(0));
    let mut tried = Vec::new();
    while let Some(a) = f.poll_action() {
        if let FlowAction::Connect {
            backend, attempt, ..
        } = a
        {
            tried.push(backend);
            f.handle_connect_failed(&mut r.lb, attempt, ConnectFailure::Local, at(1));
        }
    }
    // Both backends were tried (ephemeral ports run out per destination) ...
    assert_eq!(tried.len(), 2);
    let reason = f.summary().reason.unwrap();
    assert_eq!(
        reason,
        CloseReason::ConnectFailed {
            attempts: 2,
            local: true
        }
    );
    assert_eq!(
        reason.to_string(),
        "no local resources for a backend connection (2 attempts)"
    );
    // ... and neither was blamed.
    for b in r.pool().backends() {
        assert_eq!(b.state(), BackendState::Up, "{}", b.name);
        assert_eq!(b.connect_failures_total, 0);
    }
    f.release(&mut r.lb, at(1));
    r.lb.check_invariants();
}

#[test]
fn a_connect_timeout_moves_on_to_the_next_backend_and_ignores_the_late_answer() {
    let mut r = Rig::new(2, r#","timeouts":{"connect":"1s"}"#);
    let mut f = r.accept(1, at(0));
    let Some(FlowAction::Connect {
        backend: first,
        attempt: a1,
        ..
    }) = f.poll_action()
    else {
        panic!()
    };
    assert_eq!(f.poll_timeout(), Some(at(1_000)));
    f.handle_timeout(&mut r.lb, at(1_000));
    let Some(FlowAction::Connect {
        backend: second,
        attempt: a2,
        ..
    }) = f.poll_action()
    else {
        panic!()
    };
    assert_ne!(first, second);
    f.handle_connected(&mut r.lb, a1, at(1_001));
    assert_eq!(drain(&mut f), [], "the abandoned attempt is ignored");
    f.handle_connected(&mut r.lb, a2, at(1_002));
    assert_eq!(f.backend(), Some(second));
    assert_eq!(r.pool().backends()[first.index()].active, 0);
    assert_eq!(r.pool().backends()[second.index()].active, 1);
    assert_eq!(r.pool().backends()[first.index()].connect_failures_total, 1);
}

#[test]
fn all_backends_down_closes_the_client_at_once() {
    let mut r = Rig::new(2, "");
    // Take both down by failed probes (fall is 100 in the rig, so use the counter directly).
    let c =
        Config::from_json(r#"{"backends":[{"address":"127.0.0.1:1"},{"address":"127.0.0.1:2"}]}"#)
            .unwrap();
    r.lb = Balancer::new(
        &c,
        &[vec![
            "127.0.0.1:1".parse().unwrap(),
            "127.0.0.1:2".parse().unwrap(),
        ]],
        1,
        Timestamp::ZERO,
    );
    assert!(r
        .pool()
        .backends()
        .iter()
        .all(|b| b.state() == BackendState::Down));
    let mut f = r.accept(1, at(0));
    assert_eq!(
        drain(&mut f),
        [FlowAction::Close {
            reason: CloseReason::Rejected(RejectReason::NoBackend),
            reset: false
        }]
    );
    f.release(&mut r.lb, at(0));
    assert_eq!(r.lb.open_flows(), 0);
    assert_eq!(r.lb.rejected(RejectReason::NoBackend), 1);
    assert_eq!(r.pool().rejected(RejectReason::NoBackend), 1);
    r.lb.check_invariants();
}

#[test]
fn a_client_outside_allow_is_closed_at_once_without_a_connect() {
    let mut r = Rig::new(1, r#","allow":["10.0.0.0/8","::1"],"max_connections":1"#);
    let mut outside = r.accept(1, at(0));
    assert_eq!(
        drain(&mut outside),
        [FlowAction::Close {
            reason: CloseReason::Rejected(RejectReason::NotAllowed),
            reset: false
        }]
    );
    outside.release(&mut r.lb, at(0));
    assert_eq!(r.lb.rejected(RejectReason::NotAllowed), 1);
    // It took no seat: an allowed client still gets the only one.
    let inside: SocketAddr = "10.9.8.7:5555".parse().unwrap();
    let mut f = Flow::accept(&mut r.lb, FlowId(2), ListenerId(0), inside, None, at(0));
    assert!(matches!(f.poll_action(), Some(FlowAction::Connect { .. })));
    let v6: SocketAddr = "[::1]:5555".parse().unwrap();
    let mut g = Flow::accept(&mut r.lb, FlowId(3), ListenerId(0), v6, None, at(0));
    assert_eq!(
        drain(&mut g),
        [FlowAction::Close {
            reason: CloseReason::Rejected(RejectReason::MaxConnections),
            reset: false
        }],
        "allowed, but over max_connections"
    );
}

#[test]
fn every_connect_carries_the_proxy_header_when_configured() {
    let mut r = Rig::new(2, r#","proxy_protocol":"v1""#);
    let local: SocketAddr = "127.0.0.1:8080".parse().unwrap();
    let mut f = Flow::accept(
        &mut r.lb,
        FlowId(1),
        ListenerId(0),
        CLIENT,
        Some(local),
        at(0),
    );
    let want = &b"PROXY TCP4 127.0.0.1 127.0.0.1 40000 8080\r\n"[..];
    assert_eq!(f.preamble().map(|b| &b[..]), Some(want));
    let Some(FlowAction::Connect { attempt, .. }) = f.poll_action() else {
        panic!("expected connect")
    };
    // A retry is a new connection: it carries the same header.
    f.handle_connect_failed(&mut r.lb, attempt, ConnectFailure::Backend, at(1));
    assert!(matches!(f.poll_action(), Some(FlowAction::Connect { .. })));
    assert_eq!(f.preamble().map(|b| &b[..]), Some(want));
    // Without `proxy_protocol`, nothing.
    let plain = Rig::new(1, "").accept(2, at(0));
    assert_eq!(plain.preamble(), None);
}

#[test]
fn the_connection_limit_rejects_at_once() {
    let mut r = Rig::new(1, r#","max_connections":1"#);
    let _first = r.established(1);
    let mut second = r.accept(2, at(0));
    assert_eq!(
        drain(&mut second),
        [FlowAction::Close {
            reason: CloseReason::Rejected(RejectReason::MaxConnections),
            reset: false
        }]
    );
    second.release(&mut r.lb, at(0));
    assert_eq!(
        r.lb.open_flows(),
        1,
        "releasing a rejected flow frees nothing"
    );
    assert_eq!(r.pool().open_flows(), 1);
    r.lb.check_invariants();
}

#[test]
fn a_client_that_resets_while_connecting_frees_its_backend_slot() {
    let mut r = Rig::new(1, "");
    let mut f = r.accept(1, at(0));
    drain(&mut f);
    assert_eq!(r.pool().backends()[0].active, 1);
    f.handle_reset(Side::Client, at(1));
    f.release(&mut r.lb, at(1));
    assert_eq!(r.pool().backends()[0].active, 0);
    r.lb.check_invariants();
}

#[test]
fn poll_timeout_is_never_in_the_past() {
    let mut r = Rig::new(1, r#","timeouts":{"connect":"1s"}"#);
    let mut f = r.accept(1, at(0));
    drain(&mut f);
    f.handle_read(Side::Client, b("x"), at(5_000));
    assert_eq!(f.poll_timeout(), Some(at(5_000)));
}

#[test]
fn a_reset_is_passed_on_only_after_the_bytes_before_it_were_delivered() {
    for from in Side::BOTH {
        let to = from.other();
        let mut r = Rig::new(1, r#","timeouts":{"idle":"10s"}"#);
        let mut f = r.established(1);
        f.handle_read(from, b("first part "), at(1));
        f.handle_read(from, b("second part"), at(1));
        f.handle_written(to, 11, at(2));
        drain(&mut f);
        // Reset with 11 bytes still on their way: nothing is closed yet, nothing more is
        // read from either side, and the rest is still written.
        f.handle_reset(from, at(3));
        let paused = drain(&mut f);
        assert_eq!(
            paused,
            [
                FlowAction::PauseRead { side: Side::Client },
                FlowAction::PauseRead {
                    side: Side::Backend
                }
            ]
        );
        assert!(!f.is_closed());
        f.handle_read(from, b("late"), at(3));
        f.handle_read(to, b("nowhere to go"), at(3));
        assert_eq!(drain(&mut f), [], "nothing forwarded after a reset");
        f.handle_written(to, 5, at(4));
        assert_eq!(drain(&mut f), []);
        f.handle_written(to, 6, at(5));
        // All of it handed to the socket: the driver is asked to wait for delivery.
        assert_eq!(drain(&mut f), [FlowAction::AwaitDelivery { to }]);
        f.handle_delivered(from, at(6));
        assert_eq!(
            drain(&mut f),
            [],
            "delivery to the wrong side changes nothing"
        );
        f.handle_delivered(to, at(7));
        assert_eq!(
            drain(&mut f),
            [FlowAction::Close {
                reason: CloseReason::Reset(from),
                reset: true
            }]
        );
        f.release(&mut r.lb, at(7));
        assert_eq!(r.lb.open_flows(), 0);
    }
}

#[test]
fn a_reset_waits_for_its_bytes_no_longer_than_the_idle_timeout() {
    let mut r = Rig::new(1, r#","timeouts":{"idle":"2s"}"#);
    let mut f = r.established(1);
    f.handle_read(Side::Backend, b("never read by a stuck client"), at(1));
    drain(&mut f);
    f.handle_reset(Side::Backend, at(1_000));
    drain(&mut f);
    assert_eq!(f.poll_timeout(), Some(at(3_000)));
    f.handle_timeout(&mut r.lb, at(2_999));
    assert_eq!(drain(&mut f), []);
    f.handle_timeout(&mut r.lb, at(3_000));
    assert_eq!(
        drain(&mut f),
        [FlowAction::Close {
            reason: CloseReason::Reset(Side::Backend),
            reset: true
        }]
    );
}

#[test]
fn a_reset_of_the_other_side_while_delivering_closes_at_once() {
    let mut r = Rig::new(1, "");
    let mut f = r.established(1);
    f.handle_read(Side::Backend, b("pending"), at(1));
    drain(&mut f);
    f.handle_reset(Side::Backend, at(2));
    drain(&mut f);
    f.handle_reset(Side::Backend, at(2));
    assert_eq!(drain(&mut f), [], "the same side again changes nothing");
    // The client is gone too: the bytes cannot be delivered.
    f.handle_reset(Side::Client, at(3));
    assert_eq!(
        drain(&mut f),
        [FlowAction::Close {
            reason: CloseReason::Reset(Side::Backend),
            reset: true
        }]
    );
}

#[test]
fn both_sockets_get_the_configured_keepalive_and_none_without_it() {
    let mut rig = Rig::new(
        1,
        r#","tcp_keepalive":{"idle":"30s","interval":"5s","count":4}"#,
    );
    let f = rig.established(1);
    let want = Keepalive {
        idle: Duration::from_secs(30),
        interval: Duration::from_secs(5),
        count: 4,
    };
    assert_eq!(f.keepalive(Side::Client), Some(want));
    assert_eq!(f.keepalive(Side::Backend), Some(want));
    let mut rig = Rig::new(1, "");
    let f = rig.established(1);
    assert_eq!(f.keepalive(Side::Client), None);
    assert_eq!(f.keepalive(Side::Backend), None);
}

#[test]
fn a_reload_changes_keepalive_for_new_flows_only() {
    let mut rig = Rig::new(1, "");
    let before = rig.established(1);
    let c = Config::from_json(
        r#"{"backends":[{"name":"b0","address":"127.0.0.1:5001"}],"tcp_keepalive":{}}"#,
    )
    .unwrap();
    let addrs = [SocketAddr::from(([127, 0, 0, 1], 5001))];
    rig.lb.reconfigure(&c, &[addrs.to_vec()], at(1));
    let after = Flow::accept(&mut rig.lb, FlowId(2), ListenerId(0), CLIENT, None, at(2));
    assert_eq!(before.keepalive(Side::Backend), None);
    let defaults = Keepalive {
        idle: Duration::from_secs(60),
        interval: Duration::from_secs(10),
        count: 6,
    };
    assert_eq!(after.keepalive(Side::Client), Some(defaults));
    assert_eq!(after.keepalive(Side::Backend), Some(defaults));
}

// ---- reading the ClientHello on an `sni` listener ----------------------------------------

mod sni {
    use super::*;
    use crate::sni::tests::{client_hello, rerecord, TLS12, TLS13};

    /// One listener routing `api.example.com` to `api` (which sends PROXY headers) and
    /// everything else to `web`, with a ClientHello timeout of 2 s; or, `strict`, with no
    /// default pool.
    fn rig(strict: bool) -> Rig {
        // Without a default pool, `web` is reached by one name only.
        let pool = if strict {
            r#""sni":{"api.example.com":"api","www.example.net":"web"},"#
        } else {
            r#""pool":"web","sni":{"api.example.com":"api"},"#
        };
        Rig::from_json(&format!(
            r#"{{"listeners":[{{"name":"tls","listen":"127.0.0.1:8443",{pool}
                   "timeouts":{{"client_hello":"2s"}}}}],
                "pools":{{
                  "web":{{"backends":[{{"name":"w0","address":"127.0.0.1:6000"}}],"health_check":{{"start_up":true}}}},
                  "api":{{"backends":[{{"name":"a0","address":"127.0.0.1:7000"}}],"health_check":{{"start_up":true}},
                          "proxy_protocol":"v1","retries":0,"timeouts":{{"connect":"3s"}}}}
                }}}}"#
        ))
    }

    const WEB: PoolId = PoolId(0);
    const API: PoolId = PoolId(1);

    fn web_addr() -> SocketAddr {
        "127.0.0.1:6000".parse().unwrap()
    }

    fn api_addr() -> SocketAddr {
        "127.0.0.1:7000".parse().unwrap()
    }

    /// A flow accepted at `now` that reads its ClientHello: no action yet.
    fn peeking(r: &mut Rig, id: u64, now: Timestamp) -> Flow {
        let local: SocketAddr = "127.0.0.1:8443".parse().unwrap();
        let mut f = Flow::accept(
            &mut r.lb,
            FlowId(id),
            ListenerId(0),
            CLIENT,
            Some(local),
            now,
        );
        assert_eq!(drain(&mut f), [], "nothing before the ClientHello");
        assert_eq!(f.pool(), None);
        assert_eq!(f.preamble(), None);
        r.lb.check_invariants();
        f
    }

    /// After `Route`: routes the flow and connects it; the backend's address. Every
    /// action before the `Connect` is returned in `before`.
    fn route_and_connect(r: &mut Rig, f: &mut Flow, now: Timestamp) -> SocketAddr {
        f.handle_route(&mut r.lb, now);
        r.lb.check_invariants();
        let Some(FlowAction::Connect { addr, attempt, .. }) = f.poll_action() else {
            panic!("expected connect")
        };
        assert_eq!(drain(f), []);
        f.handle_connected(&mut r.lb, attempt, now);
        r.lb.check_invariants();
        addr
    }

    /// What a flow asks once it has read `read` bytes and its ClientHello is judged: to be
    /// routed, and (the rig's high watermark is 100) to pause reading while its bytes wait.
    fn route_asked(read: usize) -> Vec<FlowAction> {
        let mut want = vec![FlowAction::Route];
        if read >= 100 {
            want.push(FlowAction::PauseRead { side: Side::Client });
        }
        want
    }

    /// The bytes of the `Write`s to the backend among `actions`, in order, and whether
    /// every action is such a write.
    fn written_to_backend(actions: &[FlowAction]) -> (Vec<u8>, bool) {
        let mut out = Vec::new();
        let mut only_writes = true;
        for a in actions {
            match a {
                FlowAction::Write {
                    side: Side::Backend,
                    data,
                } => out.extend_from_slice(data),
                _ => only_writes = false,
            }
        }
        (out, only_writes)
    }

    #[test]
    fn a_client_hello_split_at_every_byte_routes_the_same_and_reaches_the_backend_first() {
        let mut r = rig(false);
        let mut id = 0;
        for versions in [TLS13, TLS12] {
            let hello = client_hello(Some("API.Example.com"), versions);
            assert!(hello.len() > 100, "longer than the rig's high watermark");
            for cut in 1..hello.len() {
                id += 1;
                let mut f = peeking(&mut r, id, at(0));
                f.handle_read(Side::Client, Bytes::copy_from_slice(&hello[..cut]), at(1));
                assert_eq!(
                    drain(&mut f),
                    [],
                    "cut at {cut} of {}: not all there yet, and reading goes on",
                    hello.len()
                );
                f.handle_read(Side::Client, Bytes::copy_from_slice(&hello[cut..]), at(1));
                assert_eq!(drain(&mut f), route_asked(hello.len()), "cut at {cut}");
                assert_eq!(route_and_connect(&mut r, &mut f, at(2)), api_addr());
                assert_eq!(f.pool(), Some(API));
                assert_eq!(f.summary().server_name.as_deref(), Some("api.example.com"));
                // The pool's settings: its PROXY header, then the ClientHello, unchanged.
                let want = &b"PROXY TCP4 127.0.0.1 127.0.0.1 40000 8443\r\n"[..];
                assert_eq!(f.preamble().map(|b| &b[..]), Some(want));
                let actions = drain(&mut f);
                assert_eq!(
                    actions,
                    [
                        FlowAction::Write {
                            side: Side::Backend,
                            data: Bytes::copy_from_slice(&hello[..cut]),
                        },
                        FlowAction::Write {
                            side: Side::Backend,
                            data: Bytes::copy_from_slice(&hello[cut..]),
                        },
                    ],
                    "cut at {cut}"
                );
                // Then the flow forwards as any other.
                f.handle_read(Side::Client, b("after"), at(3));
                assert_eq!(drain(&mut f), [write(Side::Backend, "after")]);
                f.handle_abort(at(4));
                drain(&mut f);
                f.release(&mut r.lb, at(4));
                r.lb.check_invariants();
            }
        }
        assert_eq!(r.lb.open_flows(), 0);
    }

    #[test]
    fn a_client_hello_read_a_byte_at_a_time_across_many_records_is_forwarded_whole() {
        let mut r = rig(false);
        for (id, size) in [1usize, 7, 64, 1000].into_iter().enumerate() {
            // One record per `size` bytes of the message: many more bytes than the
            // high watermark.
            let hello = rerecord(&client_hello(Some("api.example.com"), TLS13), size);
            let mut f = peeking(&mut r, id as u64, at(0));
            for (k, byte) in hello.iter().enumerate() {
                f.handle_read(Side::Client, Bytes::copy_from_slice(&[*byte]), at(1));
                let actions = drain(&mut f);
                if k + 1 < hello.len() {
                    assert_eq!(
                        actions,
                        [],
                        "records of {size}: byte {k} of {}",
                        hello.len()
                    );
                } else {
                    assert_eq!(actions, route_asked(hello.len()));
                }
            }
            assert_eq!(route_and_connect(&mut r, &mut f, at(2)), api_addr());
            let actions = drain(&mut f);
            assert_eq!(actions.len(), hello.len(), "one write per read");
            assert_eq!(written_to_backend(&actions), (hello, true));
            f.handle_reset(Side::Client, at(3));
            drain(&mut f);
            f.release(&mut r.lb, at(3));
            r.lb.check_invariants();
        }
    }

    #[test]
    fn plain_bytes_go_to_the_default_pool_with_every_byte() {
        let mut r = rig(false);
        let mut f = peeking(&mut r, 1, at(0));
        f.handle_read(Side::Client, b("GET / HTTP/1.1\r\n"), at(1));
        assert_eq!(
            drain(&mut f),
            [FlowAction::Route],
            "not TLS: no need to wait"
        );
        // Bytes read before the route is settled queue behind the first ones.
        f.handle_read(Side::Client, b("Host: x\r\n\r\n"), at(1));
        assert_eq!(drain(&mut f), []);
        assert_eq!(route_and_connect(&mut r, &mut f, at(2)), web_addr());
        assert_eq!(f.pool(), Some(WEB));
        assert_eq!(f.summary().server_name, None);
        assert_eq!(f.preamble(), None, "web sends no PROXY header");
        assert_eq!(
            drain(&mut f),
            [
                write(Side::Backend, "GET / HTTP/1.1\r\n"),
                write(Side::Backend, "Host: x\r\n\r\n"),
            ]
        );
        // A ClientHello naming no configured name goes there too, whole.
        let hello = client_hello(Some("other.example.org"), TLS13);
        let mut g = peeking(&mut r, 2, at(0));
        g.handle_read(Side::Client, Bytes::from(hello.clone()), at(1));
        assert_eq!(drain(&mut g), route_asked(hello.len()));
        assert_eq!(route_and_connect(&mut r, &mut g, at(2)), web_addr());
        assert_eq!(
            g.summary().server_name.as_deref(),
            Some("other.example.org")
        );
        assert_eq!(written_to_backend(&drain(&mut g)), (hello, true));
        // And one without a server name.
        let hello = client_hello(None, TLS12);
        let mut h = peeking(&mut r, 3, at(0));
        h.handle_read(Side::Client, Bytes::from(hello.clone()), at(1));
        assert_eq!(drain(&mut h), route_asked(hello.len()));
        assert_eq!(route_and_connect(&mut r, &mut h, at(2)), web_addr());
        assert_eq!(written_to_backend(&drain(&mut h)), (hello, true));
        r.lb.check_invariants();
    }

    #[test]
    fn a_client_hello_not_complete_in_time_goes_to_the_default_pool_with_what_was_sent() {
        let mut r = rig(false);
        let hello = client_hello(Some("api.example.com"), TLS13);
        let mut f = peeking(&mut r, 1, at(1_000));
        assert_eq!(f.poll_timeout(), Some(at(3_000)), "timeouts.client_hello");
        f.handle_read(
            Side::Client,
            Bytes::copy_from_slice(&hello[..40]),
            at(1_500),
        );
        assert_eq!(
            f.poll_timeout(),
            Some(at(3_000)),
            "bytes do not extend the ClientHello's time"
        );
        f.handle_timeout(&mut r.lb, at(2_999));
        assert_eq!(drain(&mut f), [], "an early timer is harmless");
        f.handle_timeout(&mut r.lb, at(3_000));
        assert_eq!(drain(&mut f), [FlowAction::Route]);
        assert_eq!(f.poll_timeout(), None, "routing waits for the driver");
        // The rest arriving now changes nothing: the route is settled (and the bytes wait,
        // over the high watermark).
        f.handle_read(
            Side::Client,
            Bytes::copy_from_slice(&hello[40..]),
            at(3_001),
        );
        assert_eq!(
            drain(&mut f),
            [FlowAction::PauseRead { side: Side::Client }]
        );
        assert_eq!(route_and_connect(&mut r, &mut f, at(3_002)), web_addr());
        assert_eq!(f.summary().server_name, None);
        assert_eq!(written_to_backend(&drain(&mut f)), (hello, true));
        // Nothing at all by then: the same.
        let mut g = peeking(&mut r, 2, at(0));
        g.handle_timeout(&mut r.lb, at(2_000));
        assert_eq!(drain(&mut g), [FlowAction::Route]);
        assert_eq!(route_and_connect(&mut r, &mut g, at(2_001)), web_addr());
        assert_eq!(drain(&mut g), []);
        r.lb.check_invariants();
    }

    #[test]
    fn eof_while_peeking_routes_on_what_there_is_and_passes_the_fin_on() {
        let mut r = rig(false);
        let hello = client_hello(Some("api.example.com"), TLS13);
        let mut f = peeking(&mut r, 1, at(0));
        f.handle_read(Side::Client, Bytes::copy_from_slice(&hello[..30]), at(1));
        f.handle_eof(Side::Client, at(1));
        assert_eq!(drain(&mut f), [FlowAction::Route]);
        assert_eq!(route_and_connect(&mut r, &mut f, at(2)), web_addr());
        assert_eq!(
            drain(&mut f),
            [
                FlowAction::Write {
                    side: Side::Backend,
                    data: Bytes::copy_from_slice(&hello[..30]),
                },
                FlowAction::Shutdown {
                    side: Side::Backend
                },
            ]
        );
        // The backend's answer still flows back, and the flow completes.
        f.handle_written(Side::Backend, 30, at(3));
        f.handle_read(Side::Backend, b("alert"), at(3));
        f.handle_eof(Side::Backend, at(3));
        assert_eq!(
            drain(&mut f),
            [
                write(Side::Client, "alert"),
                FlowAction::Shutdown { side: Side::Client }
            ]
        );
        f.handle_written(Side::Client, 5, at(4));
        assert_eq!(
            drain(&mut f),
            [FlowAction::Close {
                reason: CloseReason::Completed,
                reset: false
            }]
        );
        f.release(&mut r.lb, at(4));
        // A client that closes before sending anything.
        let mut g = peeking(&mut r, 2, at(0));
        g.handle_eof(Side::Client, at(1));
        assert_eq!(drain(&mut g), [FlowAction::Route]);
        assert_eq!(route_and_connect(&mut r, &mut g, at(2)), web_addr());
        assert_eq!(
            drain(&mut g),
            [FlowAction::Shutdown {
                side: Side::Backend
            }]
        );
        g.handle_abort(at(3));
        drain(&mut g);
        g.release(&mut r.lb, at(3));
        r.lb.check_invariants();
        assert_eq!(r.lb.open_flows(), 0);
        let web = r.lb.pool(WEB).unwrap();
        assert_eq!(web.backends()[0].bytes_to_backend, 30);
        assert_eq!(web.backends()[0].active, 0);
    }

    #[test]
    fn a_reset_while_peeking_or_routing_closes_at_once_and_releases() {
        let mut r = rig(false);
        let hello = client_hello(Some("api.example.com"), TLS13);
        let mut f = peeking(&mut r, 1, at(0));
        f.handle_read(Side::Client, Bytes::copy_from_slice(&hello[..30]), at(1));
        f.handle_reset(Side::Client, at(2));
        assert_eq!(
            drain(&mut f),
            [FlowAction::Close {
                reason: CloseReason::Reset(Side::Client),
                reset: true
            }]
        );
        assert_eq!(f.poll_timeout(), None);
        f.release(&mut r.lb, at(2));
        r.lb.check_invariants();
        assert_eq!(r.lb.open_flows(), 0);
        assert_eq!(r.lb.listener(ListenerId(0)).unwrap().open, 0);
        // Reset after the ClientHello was read, before the driver routed it: a late
        // `handle_route` does nothing.
        let mut g = peeking(&mut r, 2, at(0));
        let len = hello.len();
        g.handle_read(Side::Client, Bytes::from(hello), at(1));
        assert_eq!(drain(&mut g), route_asked(len));
        g.handle_reset(Side::Client, at(2));
        assert!(g.is_closed());
        drain(&mut g);
        g.handle_route(&mut r.lb, at(3));
        assert_eq!(drain(&mut g), []);
        assert_eq!(g.pool(), None);
        g.release(&mut r.lb, at(3));
        r.lb.check_invariants();
        assert_eq!(r.lb.open_flows(), 0);
        assert!(r.lb.pools().all(|(_, _, p)| p.open_flows() == 0));
        // Backend bytes before there is a backend are ignored.
        let mut h = peeking(&mut r, 3, at(0));
        h.handle_read(Side::Backend, b("x"), at(1));
        h.handle_eof(Side::Backend, at(1));
        assert_eq!(drain(&mut h), []);
        assert!(!h.is_closed());
    }

    #[test]
    fn no_route_closes_counts_and_releases() {
        let mut r = rig(true);
        for (id, first) in [
            client_hello(Some("other.example.org"), TLS13),
            client_hello(None, TLS13),
            b"GET / HTTP/1.1\r\n\r\n".to_vec(),
        ]
        .into_iter()
        .enumerate()
        {
            let mut f = peeking(&mut r, id as u64, at(0));
            let len = first.len();
            f.handle_read(Side::Client, Bytes::from(first), at(1));
            assert_eq!(drain(&mut f), route_asked(len));
            f.handle_route(&mut r.lb, at(1));
            assert_eq!(
                drain(&mut f),
                [FlowAction::Close {
                    reason: CloseReason::Rejected(RejectReason::NoRoute),
                    reset: false
                }]
            );
            f.release(&mut r.lb, at(1));
            r.lb.check_invariants();
        }
        let l = r.lb.listener(ListenerId(0)).unwrap();
        assert_eq!((l.open, l.total), (0, 3));
        assert_eq!(l.rejected(RejectReason::NoRoute), 3);
        assert!(r.lb.pools().all(|(_, _, p)| p.open_flows() == 0));
        // The name it knows still goes through.
        let mut f = peeking(&mut r, 9, at(0));
        let hello = client_hello(Some("api.example.com"), TLS12);
        f.handle_read(Side::Client, Bytes::from(hello.clone()), at(1));
        assert_eq!(drain(&mut f), route_asked(hello.len()));
        assert_eq!(route_and_connect(&mut r, &mut f, at(2)), api_addr());
        assert_eq!(written_to_backend(&drain(&mut f)), (hello, true));
    }

    #[test]
    fn the_chosen_pools_settings_apply_once_routed() {
        let mut r = rig(false);
        let mut f = peeking(&mut r, 1, at(0));
        f.handle_read(
            Side::Client,
            Bytes::from(client_hello(Some("api.example.com"), TLS13)),
            at(10),
        );
        drain(&mut f);
        f.handle_route(&mut r.lb, at(10));
        let Some(FlowAction::Connect { attempt, .. }) = f.poll_action() else {
            panic!("expected connect")
        };
        // api: a connect timeout of 3 s and no retries.
        assert_eq!(f.poll_timeout(), Some(at(3_010)));
        f.handle_connect_failed(&mut r.lb, attempt, ConnectFailure::Backend, at(20));
        assert_eq!(
            drain(&mut f),
            [FlowAction::Close {
                reason: CloseReason::ConnectFailed {
                    attempts: 1,
                    local: false
                },
                reset: false
            }]
        );
        f.release(&mut r.lb, at(20));
        r.lb.check_invariants();
    }
}
