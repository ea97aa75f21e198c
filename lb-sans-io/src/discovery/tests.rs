use super::*;
use crate::config::Config;
use crate::ids::{BackendId, FlowId, PoolId};
use crate::pool::{BackendState, Pool, PoolEvent};
use crate::Balancer;

fn at(ms: u64) -> Timestamp {
    Timestamp::from_nanos(ms * 1_000_000)
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn srv(priority: u16, weight: u16, port: u16, addrs: &[&str]) -> SrvRecord {
    SrvRecord {
        priority,
        weight,
        port,
        target: format!("t{port}.example."),
        addrs: addrs.iter().map(|a| ip(a)).collect(),
    }
}

#[test]
fn an_a_answer_names_every_address_on_the_port_once() {
    let target = DiscoverTarget::Dns {
        name: "web".into(),
        port: 8080,
    };
    let answer = DnsAnswer::Addrs(vec![
        ip("10.0.0.2"),
        ip("::1"),
        ip("10.0.0.1"),
        ip("10.0.0.2"),
    ]);
    let got = backends_of(&target, &answer);
    let want: Vec<Discovered> = vec![
        ("10.0.0.1:8080".parse().unwrap(), 1),
        ("10.0.0.2:8080".parse().unwrap(), 1),
        ("[::1]:8080".parse().unwrap(), 1),
    ];
    assert_eq!(got, want);
    // The wrong kind of answer names nothing.
    assert!(backends_of(&target, &DnsAnswer::Srv(vec![srv(1, 1, 80, &["10.0.0.1"])])).is_empty());
}

#[test]
fn srv_takes_the_lowest_priority_its_ports_and_clamped_weights() {
    let target = DiscoverTarget::Srv {
        name: "_web._tcp.example".into(),
    };
    let answer = DnsAnswer::Srv(vec![
        srv(20, 5, 9000, &["10.0.0.9"]),
        srv(10, 0, 8001, &["10.0.0.1"]),
        srv(10, 5000, 8002, &["10.0.0.2", "10.0.0.3"]),
        srv(10, 7, 8003, &[]),
    ]);
    let got = backends_of(&target, &answer);
    let want: Vec<Discovered> = vec![
        // Weight 0 counts as 1; over 1000 is 1000; priority 20 is a fallback, unused.
        ("10.0.0.1:8001".parse().unwrap(), 1),
        ("10.0.0.2:8002".parse().unwrap(), 1000),
        ("10.0.0.3:8002".parse().unwrap(), 1000),
    ];
    assert_eq!(got, want);
    assert!(backends_of(&target, &DnsAnswer::Srv(Vec::new())).is_empty());
}

/// A flat config discovering `web:80` every second (with `extra` fields), and its balancer.
fn discovering(extra: &str) -> Balancer {
    let c = Config::from_json(&format!(
        r#"{{"discover":{{"dns":"web:80","interval":"1s"}},"health_check":{{"start_up":true}}{extra}}}"#
    ))
    .unwrap();
    Balancer::new(&c, &[Vec::new()], 1, Timestamp::ZERO)
}

fn pool(b: &Balancer) -> &Pool {
    b.pool(PoolId(0)).unwrap()
}

/// The live backends (name, state).
fn live(b: &Balancer) -> Vec<(String, BackendState)> {
    pool(b)
        .backends()
        .iter()
        .filter(|b| !b.removed())
        .map(|b| (b.name.clone(), b.state()))
        .collect()
}

fn events(b: &mut Balancer) -> Vec<PoolEvent> {
    std::iter::from_fn(|| b.poll_event().map(|(_, e)| e)).collect()
}

/// Answers the question due at `now` with `answer`; panics if none is due.
fn answer(b: &mut Balancer, now: Timestamp, answer: Result<DnsAnswer, DnsError>) {
    let (p, q) = b.poll_discovery(now).expect("a question is due");
    assert_eq!(
        q.target,
        DiscoverTarget::Dns {
            name: "web".into(),
            port: 80
        }
    );
    assert_eq!(b.poll_discovery(now), None, "one question out at a time");
    b.handle_discovery(p, answer, now);
    b.check_invariants();
}

fn addrs(list: &[&str]) -> Result<DnsAnswer, DnsError> {
    Ok(DnsAnswer::Addrs(list.iter().map(|a| ip(a)).collect()))
}

#[test]
fn answers_are_applied_like_a_reload_and_failures_keep_the_last_set() {
    let mut b = discovering("");
    // An empty pool until the first answer; asked at once.
    assert!(live(&b).is_empty());
    assert_eq!(b.poll_timeout(), Some(Timestamp::ZERO));
    answer(&mut b, at(0), addrs(&["10.0.0.1", "10.0.0.2"]));
    let up = BackendState::Up;
    assert_eq!(
        live(&b),
        [("10.0.0.1:80".into(), up), ("10.0.0.2:80".into(), up)]
    );
    assert!(events(&mut b).contains(&PoolEvent::Discovery(DiscoveryNews::Resolving(2))));
    // Not asked again before the interval.
    assert_eq!(b.poll_discovery(at(999)), None);
    // A connection open to 10.0.0.1.
    let client: SocketAddr = "192.168.0.1:4000".parse().unwrap();
    use crate::flow::FlowPool;
    b.open_flow(FlowId(1), crate::ListenerId(0), client.ip(), at(500))
        .unwrap();
    let (first, _) = b.select(FlowId(1), client, &[], at(500)).unwrap();
    b.connect_succeeded(FlowId(1), first, at(500));
    assert_eq!(first, BackendId(0));

    // Scale: 10.0.0.1 replaced by 10.0.0.3; 10.0.0.2 kept with its counters.
    answer(&mut b, at(1_000), addrs(&["10.0.0.3", "10.0.0.2"]));
    let names: Vec<String> = live(&b).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["10.0.0.2:80", "10.0.0.3:80"]);
    let gone = pool(&b).backend(first).unwrap();
    assert!(gone.removed());
    assert_eq!(
        gone.state(),
        BackendState::Draining,
        "its connection drains"
    );
    assert_eq!(gone.active, 1);
    let ev = events(&mut b);
    assert!(
        ev.iter().any(|e| matches!(e, PoolEvent::Discovered(s)
            if s.added == ["10.0.0.3:80"] && s.removed == [("10.0.0.1:80".to_string(), 1)] && s.kept == 1)),
        "{ev:?}"
    );
    // Resolving again is not news.
    assert!(
        !ev.iter().any(|e| matches!(e, PoolEvent::Discovery(_))),
        "{ev:?}"
    );

    // DNS down, then an empty answer: the set stays, each counted; news once per change.
    answer(&mut b, at(2_000), Err(DnsError::Timeout));
    answer(&mut b, at(3_000), Err(DnsError::Timeout));
    answer(&mut b, at(4_000), addrs(&[]));
    assert_eq!(live(&b).len(), 2);
    let d = pool(&b).discovery().unwrap();
    assert_eq!(d.errors_total, 3);
    assert_eq!(d.last_error, Some((at(4_000), "empty answer".to_string())));
    assert_eq!(d.last_success, Some(at(1_000)));
    let news: Vec<PoolEvent> = events(&mut b)
        .into_iter()
        .filter(|e| matches!(e, PoolEvent::Discovery(_)))
        .collect();
    assert_eq!(
        news,
        [
            PoolEvent::Discovery(DiscoveryNews::Failing("timeout".into())),
            PoolEvent::Discovery(DiscoveryNews::Failing("empty answer".into())),
        ]
    );
    // Back: the same set is no change, but it is news.
    answer(&mut b, at(5_000), addrs(&["10.0.0.2", "10.0.0.3"]));
    assert_eq!(
        events(&mut b),
        [PoolEvent::Discovery(DiscoveryNews::Resolving(2))]
    );
    // The drained backend comes back in place when DNS names it again.
    answer(
        &mut b,
        at(6_000),
        addrs(&["10.0.0.1", "10.0.0.2", "10.0.0.3"]),
    );
    assert!(!pool(&b).backend(first).unwrap().removed());
}

#[test]
fn new_backends_start_down_without_start_up_and_static_ones_stay() {
    let c = Config::from_json(
        r#"{"backends":[{"name":"fixed","address":"10.0.0.9:80"}],
            "discover":{"dns":"web:80"}}"#,
    )
    .unwrap();
    let fixed: SocketAddr = "10.0.0.9:80".parse().unwrap();
    let mut b = Balancer::new(&c, &[vec![fixed]], 1, Timestamp::ZERO);
    let (p, _) = b.poll_discovery(at(0)).unwrap();
    // DNS also names the static backend's address: not added twice.
    b.handle_discovery(p, addrs(&["10.0.0.1", "10.0.0.9"]), at(0));
    let names: Vec<(String, BackendState)> = live(&b);
    assert_eq!(
        names,
        [
            ("fixed".into(), BackendState::Down),
            ("10.0.0.1:80".into(), BackendState::Down)
        ]
    );
    // Gone from DNS: the static one stays.
    let (p, _) = b.poll_discovery(at(5_000)).unwrap();
    b.handle_discovery(p, addrs(&["10.0.0.2"]), at(5_000));
    let names: Vec<String> = live(&b).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["fixed", "10.0.0.2:80"]);
    // A reload of the same question keeps the discovered set; its interval is kept.
    let reloaded = Config::from_json(
        r#"{"backends":[{"name":"fixed","address":"10.0.0.9:80","weight":2}],
            "discover":{"dns":"web:80"}}"#,
    )
    .unwrap();
    b.reconfigure(&reloaded, &[vec![fixed]], at(6_000));
    let names: Vec<String> = live(&b).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["fixed", "10.0.0.2:80"]);
    assert_eq!(b.poll_discovery(at(6_000)), None);
    // Another question starts over: asked at once, the old answer's backends drain only
    // when the new answer comes.
    let other = Config::from_json(
        r#"{"backends":[{"name":"fixed","address":"10.0.0.9:80"}],
            "discover":{"srv":"_web._tcp.example"}}"#,
    )
    .unwrap();
    b.reconfigure(&other, &[vec![fixed]], at(7_000));
    let (p, q) = b.poll_discovery(at(7_000)).unwrap();
    assert_eq!(
        q.target,
        DiscoverTarget::Srv {
            name: "_web._tcp.example".into()
        }
    );
    b.handle_discovery(
        p,
        Ok(DnsAnswer::Srv(vec![srv(1, 3, 9000, &["10.0.0.5"])])),
        at(7_000),
    );
    let live_now: Vec<(String, u32)> = pool(&b)
        .backends()
        .iter()
        .filter(|b| !b.removed())
        .map(|b| (b.name.clone(), b.weight))
        .collect();
    assert_eq!(live_now, [("fixed".into(), 1), ("10.0.0.5:9000".into(), 3)]);
    b.check_invariants();
}

#[test]
fn with_hash_instances_that_see_the_same_set_in_any_order_choose_alike() {
    // Two instances learn the same three backends in different orders (and one through a
    // detour): every client goes to the same backend on both.
    let mut one = discovering(r#","algorithm":"hash""#);
    let mut two = discovering(r#","algorithm":"hash""#);
    let all = ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5"];
    answer(&mut one, at(0), addrs(&all));
    answer(&mut two, at(0), addrs(&["10.0.0.5", "10.0.0.3"]));
    answer(&mut two, at(1_000), addrs(&all));
    use crate::flow::FlowPool;
    // Order changes only a few dozen of Maglev's 65,537 slots: ask for many clients.
    for k in 0..100_000u32 {
        let client = SocketAddr::new(IpAddr::from((0x0a00_0000 + k * 7919).to_be_bytes()), 1);
        let pick = |b: &mut Balancer| {
            let f = FlowId(u64::from(k));
            b.open_flow(f, crate::ListenerId(0), client.ip(), at(2_000))
                .unwrap();
            let (_, addr) = b.select(f, client, &[], at(2_000)).unwrap();
            b.close_flow(f, 0, 0, at(2_000));
            addr
        };
        assert_eq!(pick(&mut one), pick(&mut two), "client {client}");
    }
}

#[test]
fn status_and_metrics_show_what_discovery_knows() {
    let mut b = discovering("");
    answer(&mut b, at(0), addrs(&["10.0.0.1"]));
    answer(&mut b, at(1_000), Err(DnsError::ServerFailure));
    let info = crate::admin::Info::new(Timestamp::ZERO);
    let get = |b: &mut Balancer, path: &str| {
        let req = crate::admin::Request {
            method: crate::admin::Method::Get,
            path: path.to_string(),
            body: Vec::new(),
        };
        crate::admin::handle(&req, b, &info, at(1_500))
            .response
            .body
    };
    let v: serde_json::Value = serde_json::from_str(&get(&mut b, "/status")).unwrap();
    let d = &v["pools"][0]["discovery"];
    assert_eq!(d["query"], "dns web:80");
    assert_eq!(d["backends"], 1);
    assert_eq!(d["last_success_ms_ago"], 1_500);
    assert_eq!(d["last_error"]["reason"], "server failure (SERVFAIL)");
    assert_eq!(d["last_error"]["ms_ago"], 500);
    assert_eq!(d["errors_total"], 1);
    assert_eq!(v["backends"][0]["name"], "10.0.0.1:80");
    let m = get(&mut b, "/metrics");
    assert!(
        m.lines()
            .any(|l| l == r#"lb_discovery_errors_total{pool="default"} 1"#),
        "{m}"
    );
    assert!(
        m.lines()
            .any(|l| l == r#"lb_discovered_backends{pool="default"} 1"#),
        "{m}"
    );
}
