use super::*;
use crate::balancer::Balancer;
use crate::config::Config;
use crate::flow::FlowPool;
use crate::ids::{FlowId, ListenerId};
use std::time::Duration;

const CLIENT: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 40000);

fn at(ms: u64) -> Timestamp {
    Timestamp::from_nanos(ms * 1_000_000)
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A balancer of a flat config with one backend (up), plus `extra` top-level fields.
fn flat(extra: &str) -> Balancer {
    Balancer::new(&flat_config(extra), &[vec![backend()]], 1, Timestamp::ZERO)
}

fn flat_config(extra: &str) -> Config {
    Config::from_json(&format!(
        r#"{{"backends":[{{"name":"b0","address":"127.0.0.1:5001"}}],"health_check":{{"start_up":true}}{extra}}}"#
    ))
    .unwrap()
}

fn backend() -> SocketAddr {
    "127.0.0.1:5001".parse().unwrap()
}

const L: ListenerId = ListenerId(0);

#[test]
fn allow_admits_exactly_the_clients_in_its_networks() {
    let mut b = flat(r#","allow":["192.168.0.0/16","10.1.0.0/24","2001:db8::/32"]"#);
    let cases = [
        ("192.168.4.5", true),
        ("192.169.0.1", false),
        ("10.1.0.255", true),
        ("10.1.1.0", false),
        ("127.0.0.1", false),
        ("::ffff:192.168.1.1", true),
        ("2001:db8::7", true),
        ("2001:db9::7", false),
        ("::1", false),
    ];
    for (i, (client, allowed)) in cases.iter().enumerate() {
        let got = b
            .open_flow(FlowId(i as u64), L, ip(client), at(0))
            .map(|o| o.route);
        let want = if *allowed {
            Ok(Some(crate::ids::PoolId(0)))
        } else {
            Err(RejectReason::NotAllowed)
        };
        assert_eq!(got, want, "{client}");
        b.check_invariants();
    }
    let l = b.listener(L).unwrap();
    assert_eq!(l.rejected(RejectReason::NotAllowed), 5);
    assert_eq!((l.open, l.total), (4, 4));
    assert_eq!(b.open_flows(), 4);
    // A refused client took no seat in the pool either.
    assert_eq!(b.pool(crate::ids::PoolId(0)).unwrap().open_flows(), 4);
}

#[test]
fn per_client_limits_refuse_and_count_and_release() {
    let mut b = flat(r#","per_client":{"max_connections":1}"#);
    let other = ip("10.0.0.2");
    b.open_flow(FlowId(1), L, CLIENT.ip(), at(0)).unwrap();
    assert_eq!(
        b.open_flow(FlowId(2), L, CLIENT.ip(), at(0)),
        Err(RejectReason::PerClientLimit)
    );
    b.open_flow(FlowId(3), L, other, at(0)).unwrap();
    assert_eq!(b.rejected(RejectReason::PerClientLimit), 1);
    b.check_invariants();
    // A refused flow's close frees nothing; the admitted one's close makes room.
    b.close_flow(FlowId(2), 0, 0, at(1));
    assert_eq!(
        b.open_flow(FlowId(5), L, CLIENT.ip(), at(1)),
        Err(RejectReason::PerClientLimit)
    );
    b.close_flow(FlowId(1), 0, 0, at(1));
    b.open_flow(FlowId(4), L, CLIENT.ip(), at(1)).unwrap();
    assert_eq!(b.rejected(RejectReason::PerClientLimit), 2);
    b.check_invariants();
}

#[test]
fn the_connection_limit_counts_open_clients_and_a_close_makes_room() {
    let mut b = flat(r#","max_connections":2"#);
    b.open_flow(FlowId(1), L, CLIENT.ip(), at(0)).unwrap();
    b.open_flow(FlowId(2), L, CLIENT.ip(), at(0)).unwrap();
    assert_eq!(
        b.open_flow(FlowId(3), L, CLIENT.ip(), at(0)),
        Err(RejectReason::MaxConnections)
    );
    // The same id again is not a new client: not counted, not refused.
    assert!(b.open_flow(FlowId(2), L, CLIENT.ip(), at(0)).is_ok());
    assert_eq!(b.listener(L).unwrap().open, 2);
    b.close_flow(FlowId(1), 0, 0, at(1));
    b.close_flow(FlowId(1), 0, 0, at(1));
    assert_eq!(b.listener(L).unwrap().open, 1, "closed once");
    b.open_flow(FlowId(3), L, CLIENT.ip(), at(1)).unwrap();
    let l = b.listener(L).unwrap();
    assert_eq!(
        (l.open, l.total, l.rejected(RejectReason::MaxConnections)),
        (2, 3, 1)
    );
    b.check_invariants();
}

#[test]
fn a_reload_applies_admission_and_client_settings_and_keeps_counters() {
    let mut b = flat("");
    let inside = ip("10.0.0.1");
    b.open_flow(FlowId(1), L, CLIENT.ip(), at(0)).unwrap();
    let c2 = flat_config(
        r#","max_connections":2,"timeouts":{"idle":"9s","half_close":"3s"},"allow":["10.0.0.0/8"],
            "tcp_keepalive":{"idle":"20s"}"#,
    );
    let summary = b.reconfigure(&c2, &[vec![backend()]], at(1));
    assert_eq!(summary.listeners_kept, ["default"]);
    // The open flow from outside the new `allow` is untouched, and counts.
    let l = b.listener(L).unwrap();
    assert_eq!((l.open, l.total), (1, 1));
    assert_eq!(l.config(), &c2.listeners[0]);
    assert_eq!(
        b.open_flow(FlowId(2), L, CLIENT.ip(), at(1)),
        Err(RejectReason::NotAllowed)
    );
    let opened = b.open_flow(FlowId(3), L, inside, at(1)).unwrap();
    assert_eq!(opened.limits.idle_timeout, Duration::from_secs(9));
    assert_eq!(opened.limits.half_close_timeout, Duration::from_secs(3));
    assert_eq!(
        opened.limits.client_keepalive.map(|k| k.idle),
        Some(Duration::from_secs(20))
    );
    assert_eq!(
        b.open_flow(FlowId(4), L, inside, at(1)),
        Err(RejectReason::MaxConnections),
        "the old flow and the new one fill the new limit"
    );
    let l = b.listener(L).unwrap();
    assert_eq!(
        (
            l.rejected(RejectReason::NotAllowed),
            l.rejected(RejectReason::MaxConnections)
        ),
        (1, 1)
    );
    b.check_invariants();
}

#[test]
fn a_reload_keeps_the_watermarks_a_test_set() {
    let c = flat_config("");
    let routes = Routes {
        default: Some(crate::ids::PoolId(0)),
        sni: SniRoutes::new(Vec::new()),
    };
    let mut l = Listener::new(&c.listeners[0], routes.clone());
    let mut limits = l.limits();
    limits.high_watermark = 123;
    limits.low_watermark = 45;
    l.set_limits(limits);
    let c2 = flat_config(r#","timeouts":{"idle":"9s"}"#);
    assert!(!l.reconfigure(&c2.listeners[0], routes));
    let after = l.limits();
    assert_eq!(after.idle_timeout, Duration::from_secs(9));
    assert_eq!(
        (after.high_watermark, after.low_watermark),
        (123, 45),
        "watermarks kept"
    );
}

#[test]
fn a_reload_that_sets_or_unsets_per_client_keeps_the_books_straight() {
    let mut b = flat(r#","per_client":{"max_connections":1}"#);
    let other = ip("10.0.0.2");
    b.open_flow(FlowId(1), L, CLIENT.ip(), at(0)).unwrap();
    b.open_flow(FlowId(2), L, other, at(0)).unwrap();
    // New limits: the table stays, with what it counted.
    b.reconfigure(
        &flat_config(r#","per_client":{"max_connections":2}"#),
        &[vec![backend()]],
        at(1),
    );
    b.check_invariants();
    b.open_flow(FlowId(3), L, CLIENT.ip(), at(1)).unwrap();
    assert_eq!(
        b.open_flow(FlowId(4), L, CLIENT.ip(), at(1)),
        Err(RejectReason::PerClientLimit),
        "the flow open before the reload still counts"
    );
    // Unset: nothing is limited; the flows it counted close without harm.
    b.reconfigure(&flat_config(""), &[vec![backend()]], at(2));
    b.check_invariants();
    b.open_flow(FlowId(5), L, CLIENT.ip(), at(2)).unwrap();
    b.close_flow(FlowId(1), 0, 0, at(3));
    b.check_invariants();
    // Set again: a fresh table, which does not count the flows open before it.
    b.reconfigure(
        &flat_config(r#","per_client":{"max_connections":1}"#),
        &[vec![backend()]],
        at(4),
    );
    b.check_invariants();
    b.open_flow(FlowId(6), L, CLIENT.ip(), at(4)).unwrap();
    assert_eq!(
        b.open_flow(FlowId(7), L, CLIENT.ip(), at(4)),
        Err(RejectReason::PerClientLimit)
    );
    for f in [2, 3, 5] {
        b.close_flow(FlowId(f), 0, 0, at(5));
        b.check_invariants();
    }
    assert_eq!(
        b.open_flow(FlowId(8), L, CLIENT.ip(), at(5)),
        Err(RejectReason::PerClientLimit),
        "closing flows the new table never counted frees nothing in it"
    );
    b.close_flow(FlowId(6), 0, 0, at(6));
    b.open_flow(FlowId(8), L, CLIENT.ip(), at(6)).unwrap();
    b.check_invariants();
}
