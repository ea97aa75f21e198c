use super::*;
use crate::config::Config;
use crate::pool::{BackendState, Pool};

const CLIENT: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 40000);

fn at(ms: u64) -> Timestamp {
    Timestamp::from_nanos(ms * 1_000_000)
}

struct Rig {
    pool: Pool,
    limits: FlowLimits,
}

impl Rig {
    /// `n` backends, all up (`start_up`).
    fn new(n: usize, extra: &str) -> Rig {
        let backends: Vec<String> = (0..n)
            .map(|i| format!(r#"{{"name":"b{i}","address":"127.0.0.1:{}"}}"#, 5001 + i))
            .collect();
        let c = Config::from_json(&format!(
            r#"{{"backends":[{}],"health_check":{{"start_up":true,"fall":100}}{extra}}}"#,
            backends.join(",")
        ))
        .unwrap();
        let addrs: Vec<SocketAddr> = (0..n)
            .map(|i| SocketAddr::from(([127, 0, 0, 1], 5001 + i as u16)))
            .collect();
        let mut limits = FlowLimits::from_config(&c);
        limits.high_watermark = 100;
        limits.low_watermark = 40;
        Rig {
            pool: Pool::new(&c, &addrs, 3, Timestamp::ZERO),
            limits,
        }
    }

    fn accept(&mut self, id: u64, now: Timestamp) -> Flow {
        Flow::accept(&mut self.pool, FlowId(id), CLIENT, None, self.limits, now)
    }

    /// Accepts and connects a flow to its first backend.
    fn established(&mut self, id: u64) -> Flow {
        let mut f = self.accept(id, at(0));
        let FlowAction::Connect { attempt, .. } = f.poll_action().unwrap() else {
            panic!("expected connect")
        };
        f.handle_connected(&mut self.pool, attempt, at(0));
        assert_eq!(f.poll_action(), None);
        f
    }
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
    f.handle_connected(&mut r.pool, attempt, at(2));
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
    f.release(&mut r.pool, at(5));
    assert_eq!(r.pool.open_flows(), 0);
    assert_eq!(r.pool.backends()[0].active, 0);
    assert_eq!(r.pool.backends()[0].bytes_to_backend, 4);
    assert_eq!(r.pool.backends()[0].bytes_to_client, 4);
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
    f.handle_connected(&mut r.pool, attempt, at(2));
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
    f.handle_timeout(&mut r.pool, at(10_000));
    assert_eq!(drain(&mut f), [], "an early timer is harmless");
    f.handle_timeout(&mut r.pool, at(14_000));
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
    f.handle_timeout(&mut r.pool, at(8_000));
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
        f.release(&mut r.pool, at(2));
        r.pool.check_invariants();
        assert_eq!(r.pool.open_flows(), 0);
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
                f.handle_connect_failed(&mut r.pool, attempt, ConnectFailure::Backend, at(1));
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
    f.release(&mut r.pool, at(1));
    r.pool.check_invariants();
}

#[test]
fn retries_are_bounded_by_the_config() {
    let mut r = Rig::new(5, r#","retries":1"#);
    let mut f = r.accept(1, at(0));
    let mut connects = 0;
    while let Some(a) = f.poll_action() {
        if let FlowAction::Connect { attempt, .. } = a {
            connects += 1;
            f.handle_connect_failed(&mut r.pool, attempt, ConnectFailure::Backend, at(1));
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
            f.handle_connect_failed(&mut r.pool, attempt, ConnectFailure::Local, at(1));
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
    for b in r.pool.backends() {
        assert_eq!(b.state(), BackendState::Up, "{}", b.name);
        assert_eq!(b.connect_failures_total, 0);
    }
    f.release(&mut r.pool, at(1));
    r.pool.check_invariants();
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
    f.handle_timeout(&mut r.pool, at(1_000));
    let Some(FlowAction::Connect {
        backend: second,
        attempt: a2,
        ..
    }) = f.poll_action()
    else {
        panic!()
    };
    assert_ne!(first, second);
    f.handle_connected(&mut r.pool, a1, at(1_001));
    assert_eq!(drain(&mut f), [], "the abandoned attempt is ignored");
    f.handle_connected(&mut r.pool, a2, at(1_002));
    assert_eq!(f.backend(), Some(second));
    assert_eq!(r.pool.backends()[first.index()].active, 0);
    assert_eq!(r.pool.backends()[second.index()].active, 1);
    assert_eq!(r.pool.backends()[first.index()].connect_failures_total, 1);
}

#[test]
fn all_backends_down_closes_the_client_at_once() {
    let mut r = Rig::new(2, "");
    // Take both down by failed probes (fall is 100 in the rig, so use the counter directly).
    let c =
        Config::from_json(r#"{"backends":[{"address":"127.0.0.1:1"},{"address":"127.0.0.1:2"}]}"#)
            .unwrap();
    r.pool = Pool::new(
        &c,
        &[
            "127.0.0.1:1".parse().unwrap(),
            "127.0.0.1:2".parse().unwrap(),
        ],
        1,
        Timestamp::ZERO,
    );
    assert!(r
        .pool
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
    f.release(&mut r.pool, at(0));
    assert_eq!(r.pool.open_flows(), 0);
    assert_eq!(r.pool.rejected(RejectReason::NoBackend), 1);
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
    outside.release(&mut r.pool, at(0));
    assert_eq!(r.pool.rejected(RejectReason::NotAllowed), 1);
    // It took no seat: an allowed client still gets the only one.
    let inside: SocketAddr = "10.9.8.7:5555".parse().unwrap();
    let mut f = Flow::accept(&mut r.pool, FlowId(2), inside, None, r.limits, at(0));
    assert!(matches!(f.poll_action(), Some(FlowAction::Connect { .. })));
    let v6: SocketAddr = "[::1]:5555".parse().unwrap();
    let mut g = Flow::accept(&mut r.pool, FlowId(3), v6, None, r.limits, at(0));
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
    let mut f = Flow::accept(&mut r.pool, FlowId(1), CLIENT, Some(local), r.limits, at(0));
    let want = &b"PROXY TCP4 127.0.0.1 127.0.0.1 40000 8080\r\n"[..];
    assert_eq!(f.preamble().map(|b| &b[..]), Some(want));
    let Some(FlowAction::Connect { attempt, .. }) = f.poll_action() else {
        panic!("expected connect")
    };
    // A retry is a new connection: it carries the same header.
    f.handle_connect_failed(&mut r.pool, attempt, ConnectFailure::Backend, at(1));
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
    second.release(&mut r.pool, at(0));
    assert_eq!(
        r.pool.open_flows(),
        1,
        "releasing a rejected flow frees nothing"
    );
}

#[test]
fn a_client_that_resets_while_connecting_frees_its_backend_slot() {
    let mut r = Rig::new(1, "");
    let mut f = r.accept(1, at(0));
    drain(&mut f);
    assert_eq!(r.pool.backends()[0].active, 1);
    f.handle_reset(Side::Client, at(1));
    f.release(&mut r.pool, at(1));
    assert_eq!(r.pool.backends()[0].active, 0);
    r.pool.check_invariants();
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
        f.release(&mut r.pool, at(7));
        assert_eq!(r.pool.open_flows(), 0);
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
    f.handle_timeout(&mut r.pool, at(2_999));
    assert_eq!(drain(&mut f), []);
    f.handle_timeout(&mut r.pool, at(3_000));
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
    rig.pool.reconfigure(&c, &addrs, at(1));
    let limits = rig.pool.flow_limits();
    let after = Flow::accept(&mut rig.pool, FlowId(2), CLIENT, None, limits, at(2));
    assert_eq!(before.keepalive(Side::Backend), None);
    let defaults = Keepalive {
        idle: Duration::from_secs(60),
        interval: Duration::from_secs(10),
        count: 6,
    };
    assert_eq!(after.keepalive(Side::Client), Some(defaults));
    assert_eq!(after.keepalive(Side::Backend), Some(defaults));
}
