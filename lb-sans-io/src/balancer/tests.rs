use super::*;
use crate::config::Config;
use crate::pool::BackendState;

fn at(ms: u64) -> Timestamp {
    Timestamp::from_nanos(ms * 1_000_000)
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
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

fn balancer(json: &str) -> Balancer {
    let c = Config::from_json(json).unwrap();
    Balancer::new(&c, &addrs(&c), 1, Timestamp::ZERO)
}

fn reload(b: &mut Balancer, json: &str, now: Timestamp) -> BalancerReload {
    let c = Config::from_json(json).unwrap();
    let r = b.reconfigure(&c, &addrs(&c), now);
    b.check_invariants();
    r
}

/// Two listeners and three pools. `tls` routes by server name (pattern case as written);
/// `plain` admits 10/8 only, two at a time.
const TWO_BY_THREE: &str = r#"{
  "listeners": [
    { "name": "tls", "listen": "127.0.0.1:8443", "pool": "web", "max_connections": 3,
      "sni": { "API.example.com": "api", "*.example.com": "api",
               "*.internal.example.com": "internal", "db.internal.example.com": "api" } },
    { "name": "plain", "listen": "127.0.0.1:8080", "pool": "web", "max_connections": 2,
      "allow": ["10.0.0.0/8"] }
  ],
  "pools": {
    "web": { "retries": 4, "health_check": { "start_up": true },
             "backends": [ { "name": "w0", "address": "127.0.0.1:6000" },
                           { "name": "w1", "address": "127.0.0.1:6001" } ] },
    "api": { "algorithm": "hash", "retries": 5, "health_check": { "start_up": true },
             "backends": [ { "name": "a0", "address": "127.0.0.1:7000" },
                           { "name": "a1", "address": "127.0.0.1:7001" },
                           { "name": "a2", "address": "127.0.0.1:7002" } ] },
    "internal": { "algorithm": "weighted_round_robin", "proxy_protocol": "v1",
                  "timeouts": { "connect": "3s" }, "health_check": { "start_up": true },
                  "backends": [ { "name": "i0", "address": "127.0.0.1:8000", "weight": 1 },
                                { "name": "i1", "address": "127.0.0.1:8001", "weight": 3 } ] }
  }
}"#;

const TLS: ListenerId = ListenerId(0);
const PLAIN: ListenerId = ListenerId(1);
const WEB: PoolId = PoolId(0);
const API: PoolId = PoolId(1);
const INTERNAL: PoolId = PoolId(2);

/// Opens flow `id` on `listener` from `client` and routes it by `name` (on an `sni`
/// listener); its pool.
fn open_routed(
    b: &mut Balancer,
    id: u64,
    listener: ListenerId,
    client: &str,
    name: Option<&str>,
) -> Result<PoolId, RejectReason> {
    let opened = b.open_flow(FlowId(id), listener, ip(client), at(1))?;
    b.check_invariants();
    let pool = match opened.route {
        Some(p) => p,
        None => b.route(FlowId(id), name, at(1))?.pool,
    };
    b.check_invariants();
    Ok(pool)
}

/// Picks a backend for an open flow and connects it; the backend's name.
fn connect(b: &mut Balancer, id: u64, client: &str) -> Option<String> {
    let client = SocketAddr::new(ip(client), 40000);
    let (backend, _) = b.select(FlowId(id), client, &[], at(2))?;
    b.connect_succeeded(FlowId(id), backend, at(2));
    b.check_invariants();
    let (_, pool) = b.flow_route(FlowId(id)).unwrap();
    Some(b.pool(pool.unwrap())?.backend(backend)?.name.clone())
}

#[test]
fn admission_is_per_listener() {
    let mut b = balancer(TWO_BY_THREE);
    // `plain`: its allow-list first, then its limit of two.
    assert_eq!(open_routed(&mut b, 1, PLAIN, "10.0.0.1", None), Ok(WEB));
    assert_eq!(
        open_routed(&mut b, 2, PLAIN, "192.168.1.1", None),
        Err(RejectReason::NotAllowed)
    );
    assert_eq!(open_routed(&mut b, 3, PLAIN, "10.0.0.2", None), Ok(WEB));
    assert_eq!(
        open_routed(&mut b, 4, PLAIN, "10.0.0.3", None),
        Err(RejectReason::MaxConnections)
    );
    // `tls` has its own limit of three and no allow-list: the client `plain` refused is
    // welcome, and `plain` being full takes nothing from it.
    assert_eq!(
        open_routed(&mut b, 5, TLS, "192.168.1.1", Some("other.org")),
        Ok(WEB)
    );
    assert_eq!(
        open_routed(&mut b, 6, TLS, "10.0.0.3", Some("other.org")),
        Ok(WEB)
    );
    assert_eq!(
        open_routed(&mut b, 7, TLS, "10.0.0.4", Some("other.org")),
        Ok(WEB)
    );
    assert_eq!(
        open_routed(&mut b, 8, TLS, "10.0.0.5", Some("other.org")),
        Err(RejectReason::MaxConnections)
    );
    let count = |b: &Balancer, l: ListenerId| {
        let l = b.listener(l).unwrap();
        (
            l.open,
            l.total,
            l.rejected(RejectReason::NotAllowed),
            l.rejected(RejectReason::MaxConnections),
        )
    };
    assert_eq!(count(&b, PLAIN), (2, 2, 1, 1));
    assert_eq!(count(&b, TLS), (3, 3, 0, 1));
    assert_eq!(b.rejected(RejectReason::MaxConnections), 2);
    assert_eq!(b.open_flows(), 5);
    assert_eq!(b.pool(WEB).unwrap().open_flows(), 5);
    // A close makes room on its own listener only.
    b.close_flow(FlowId(1), 0, 0, at(3));
    b.check_invariants();
    assert_eq!(
        open_routed(&mut b, 9, TLS, "10.0.0.6", Some("other.org")),
        Err(RejectReason::MaxConnections)
    );
    assert_eq!(open_routed(&mut b, 10, PLAIN, "10.0.0.6", None), Ok(WEB));
    assert_eq!(count(&b, PLAIN), (2, 3, 1, 1));
    assert_eq!(count(&b, TLS), (3, 3, 0, 2));
    for f in [3, 5, 6, 7, 10] {
        b.close_flow(FlowId(f), 0, 0, at(4));
        b.check_invariants();
    }
    assert_eq!(b.open_flows(), 0);
    assert_eq!(b.pool(WEB).unwrap().open_flows(), 0);
}

#[test]
fn routing_takes_an_exact_name_then_the_longest_suffix_then_the_default_pool() {
    let mut b = balancer(TWO_BY_THREE);
    for (k, (name, want)) in [
        // Exact, whatever the case it was written in.
        (Some("api.example.com"), API),
        // Exact before any wildcard that also matches.
        (Some("db.internal.example.com"), API),
        // The longest matching suffix.
        (Some("x.internal.example.com"), INTERNAL),
        (Some("a.b.internal.example.com"), INTERNAL),
        (Some("www.example.com"), API),
        // A suffix matches names under it only, not itself.
        (Some("internal.example.com"), API),
        (Some("example.com"), WEB),
        // No match, or no name: the listener's pool.
        (Some("notexample.com"), WEB),
        (Some("other.org"), WEB),
        (None, WEB),
    ]
    .into_iter()
    .enumerate()
    {
        let id = FlowId(k as u64);
        let opened = b.open_flow(id, TLS, ip("10.0.0.1"), at(1)).unwrap();
        assert_eq!(
            opened.route, None,
            "an sni listener routes after the ClientHello"
        );
        assert_eq!(b.flow_route(id), Some((TLS, None)));
        let routed = b.route(id, name, at(1)).unwrap();
        assert_eq!(routed.pool, want, "{name:?}");
        assert_eq!(b.flow_route(id), Some((TLS, Some(want))));
        // The flow gets its pool's settings.
        let pool_limits = b.pool(want).unwrap().limits();
        assert_eq!(routed.limits.retries, pool_limits.retries, "{name:?}");
        assert_eq!(routed.limits.connect_timeout, pool_limits.connect_timeout);
        assert_eq!(routed.limits.proxy_protocol, pool_limits.proxy_protocol);
        // Routing it again changes nothing (and takes no second seat).
        assert_eq!(b.route(id, Some("other.org"), at(1)), Ok(routed));
        b.check_invariants();
        b.close_flow(id, 0, 0, at(1));
        b.check_invariants();
    }
    assert_eq!(b.rejected(RejectReason::NoRoute), 0);
    // A listener without `sni` is routed at accept, with its pool's settings.
    let opened = b
        .open_flow(FlowId(99), PLAIN, ip("10.0.0.1"), at(1))
        .unwrap();
    assert_eq!(opened.route, Some(WEB));
    assert_eq!(opened.limits.retries, 4);
    assert_eq!(
        b.open_flow(FlowId(99), PLAIN, ip("10.0.0.1"), at(1)),
        Ok(opened),
        "the same flow again: the same answer, nothing counted twice"
    );
    assert_eq!(b.listener(PLAIN).unwrap().total, 1);
    // The PROXY header needs the local address only where a reachable pool sends one.
    assert!(b.wants_local_addr(TLS));
    assert!(!b.wants_local_addr(PLAIN));
    b.check_invariants();
}

#[test]
fn no_route_is_refused_counted_on_its_listener_and_released() {
    let strict = TWO_BY_THREE.replace(
        r#""name": "tls", "listen": "127.0.0.1:8443", "pool": "web","#,
        r#""name": "tls", "listen": "127.0.0.1:8443","#,
    );
    let mut b = balancer(&strict);
    assert_eq!(b.listener(TLS).unwrap().config().pool, None);
    assert_eq!(
        open_routed(&mut b, 1, TLS, "10.0.0.1", Some("other.org")),
        Err(RejectReason::NoRoute)
    );
    assert_eq!(
        open_routed(&mut b, 2, TLS, "10.0.0.1", None),
        Err(RejectReason::NoRoute)
    );
    assert_eq!(
        open_routed(&mut b, 3, TLS, "10.0.0.1", Some("x.internal.example.com")),
        Ok(INTERNAL)
    );
    let l = b.listener(TLS).unwrap();
    assert_eq!(l.rejected(RejectReason::NoRoute), 2);
    assert_eq!(
        b.listener(PLAIN).unwrap().rejected(RejectReason::NoRoute),
        0
    );
    assert_eq!(b.rejected(RejectReason::NoRoute), 2);
    // Refused flows hold no seat in any pool, and their close gives back their admission.
    assert_eq!(l.open, 3);
    assert_eq!(b.flow_route(FlowId(1)), Some((TLS, None)));
    assert!(b
        .pools()
        .all(|(id, _, p)| p.open_flows() == usize::from(id == INTERNAL)));
    assert_eq!(
        b.select(FlowId(1), "10.0.0.1:1".parse().unwrap(), &[], at(2)),
        None
    );
    b.close_flow(FlowId(1), 0, 0, at(2));
    b.close_flow(FlowId(2), 0, 0, at(2));
    b.check_invariants();
    assert_eq!(b.listener(TLS).unwrap().open, 1);
    assert_eq!(b.open_flows(), 1);
}

#[test]
fn each_pool_runs_its_own_algorithm() {
    let mut b = balancer(TWO_BY_THREE);
    let (mut web, mut internal, mut api, mut spread) = (vec![], vec![], vec![], vec![]);
    let mut id = 0;
    let mut next = || {
        id += 1;
        id
    };
    for k in 0..8u64 {
        // Interleaved: one flow to each pool in turn; each closes before the next.
        let f = next();
        assert_eq!(open_routed(&mut b, f, PLAIN, "10.0.0.1", None), Ok(WEB));
        web.push(connect(&mut b, f, "10.0.0.1").unwrap());
        b.close_flow(FlowId(f), 0, 0, at(3));
        let f = next();
        let name = Some("svc.internal.example.com");
        assert_eq!(open_routed(&mut b, f, TLS, "10.9.9.9", name), Ok(INTERNAL));
        internal.push(connect(&mut b, f, "10.9.9.9").unwrap());
        b.close_flow(FlowId(f), 0, 0, at(3));
        let f = next();
        assert_eq!(
            open_routed(&mut b, f, TLS, "10.7.7.7", Some("api.example.com")),
            Ok(API)
        );
        api.push(connect(&mut b, f, "10.7.7.7").unwrap());
        b.close_flow(FlowId(f), 0, 0, at(3));
        let f = next();
        let client = format!("10.1.{k}.{}", 3 * k + 1);
        assert_eq!(
            open_routed(&mut b, f, TLS, &client, Some("api.example.com")),
            Ok(API)
        );
        spread.push(connect(&mut b, f, &client).unwrap());
        b.close_flow(FlowId(f), 0, 0, at(3));
        b.check_invariants();
    }
    assert_eq!(
        web,
        ["w0", "w1", "w0", "w1", "w0", "w1", "w0", "w1"],
        "round robin"
    );
    assert_eq!(
        internal.iter().filter(|n| *n == "i1").count(),
        6,
        "weights 1:3: {internal:?}"
    );
    assert!(
        api.iter().all(|n| *n == api[0]),
        "hash: one client, one backend: {api:?}"
    );
    assert!(
        spread.iter().all(|n| n.starts_with('a')),
        "every api flow stays in its pool: {spread:?}"
    );
    // Each pool's counters saw its own flows only.
    for (pool, want) in [(WEB, 8), (INTERNAL, 8), (API, 16)] {
        let p = b.pool(pool).unwrap();
        let total: u64 = p.backends().iter().map(|b| b.connections_total).sum();
        assert_eq!(total, want, "{}", b.pool_name(pool));
    }
    // Admin state is per pool too: disabling w0 leaves a0 as it was.
    b.set_admin(WEB, BackendId(0), crate::pool::AdminState::Disabled, at(4))
        .unwrap();
    assert_eq!(b.pool(API).unwrap().backends()[0].state(), BackendState::Up);
    let f = next();
    open_routed(&mut b, f, PLAIN, "10.0.0.1", None).unwrap();
    assert_eq!(connect(&mut b, f, "10.0.0.1").as_deref(), Some("w1"));
    b.check_invariants();
}

#[test]
fn a_reload_adds_and_removes_pools_and_listeners() {
    let mut b = balancer(TWO_BY_THREE);
    // 1: on `plain`, connected in `web`.
    assert_eq!(open_routed(&mut b, 1, PLAIN, "10.0.0.1", None), Ok(WEB));
    assert_eq!(connect(&mut b, 1, "10.0.0.1").as_deref(), Some("w0"));
    // 2: connected in `internal`; 3: routed there, no backend yet; 4: not routed yet.
    let svc = Some("svc.internal.example.com");
    assert_eq!(open_routed(&mut b, 2, TLS, "10.0.0.2", svc), Ok(INTERNAL));
    let held = connect(&mut b, 2, "10.0.0.2").unwrap();
    assert_eq!(open_routed(&mut b, 3, TLS, "10.0.0.3", svc), Ok(INTERNAL));
    b.open_flow(FlowId(4), TLS, ip("10.0.0.4"), at(1)).unwrap();
    assert_eq!(
        b.open_flow(FlowId(5), TLS, ip("10.0.0.5"), at(1)),
        Err(RejectReason::MaxConnections)
    );
    b.check_invariants();

    // `internal` and `plain` go; `extra` and `new` come; `tls`, `web` and `api` stay.
    let next = r#"{
      "listeners": [
        { "name": "tls", "listen": "127.0.0.1:8443", "pool": "web", "max_connections": 10,
          "sni": { "api.example.com": "api" } },
        { "name": "new", "listen": "127.0.0.1:9443", "pool": "extra" }
      ],
      "pools": {
        "web": { "health_check": { "start_up": true },
                 "backends": [ { "name": "w0", "address": "127.0.0.1:6000" },
                               { "name": "w1", "address": "127.0.0.1:6001" } ] },
        "extra": { "health_check": { "start_up": true },
                   "backends": [ { "name": "e0", "address": "127.0.0.1:9000" } ] },
        "api": { "algorithm": "hash", "health_check": { "start_up": true },
                 "backends": [ { "name": "a0", "address": "127.0.0.1:7000" },
                               { "name": "a1", "address": "127.0.0.1:7001" },
                               { "name": "a2", "address": "127.0.0.1:7002" } ] }
      }
    }"#;
    let summary = reload(&mut b, next, at(10));
    assert_eq!(summary.pools_added, ["extra"]);
    assert_eq!(summary.pools_removed, [("internal".to_string(), 2)]);
    let kept: Vec<&str> = summary.pools.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(kept, ["web", "api"]);
    assert_eq!(summary.listeners_kept, ["tls"]);
    assert_eq!(summary.listeners_added, ["new"]);
    assert_eq!(summary.listeners_removed, [("plain".to_string(), 1)]);
    let extra = b.pool_by_name("extra").unwrap();
    let new = b.listener_by_name("new").unwrap();
    assert_eq!(
        (extra, new),
        (PoolId(3), ListenerId(2)),
        "ids are never reused"
    );
    assert_eq!(b.pool_by_name("internal"), None);
    assert!(b.pool_removed(INTERNAL));
    assert_eq!(b.listener_by_name("plain"), None);
    assert!(b.listener(PLAIN).unwrap().removed);
    assert_eq!(
        b.listening(),
        [
            (TLS, "127.0.0.1:8443".parse().unwrap()),
            (new, "127.0.0.1:9443".parse().unwrap())
        ]
    );

    // Counters of what stays are kept.
    let tls = b.listener(TLS).unwrap();
    assert_eq!(
        (
            tls.open,
            tls.total,
            tls.rejected(RejectReason::MaxConnections)
        ),
        (3, 3, 1)
    );
    assert_eq!(b.pool(WEB).unwrap().backends()[0].connections_total, 1);
    assert_eq!(b.pool(WEB).unwrap().backends()[0].active, 1);

    // The removed pool drains: no new selection, even for the flow seated in it ...
    assert_eq!(
        b.select(FlowId(3), "10.0.0.3:1".parse().unwrap(), &[], at(11)),
        None
    );
    assert!(b
        .pool(INTERNAL)
        .unwrap()
        .backends()
        .iter()
        .all(|x| x.state() == BackendState::Draining && !x.eligible()));
    // ... and no probes.
    while let Some((pool, probe)) = b.poll_probe(at(60_000)) {
        assert_ne!(pool, INTERNAL, "probed a removed pool");
        b.handle_probe_result(pool, probe.id, crate::ProbeOutcome::Passed, at(60_000));
    }
    // The waiting flow is routed by the new table: its old pool is gone.
    assert_eq!(b.route(FlowId(4), svc, at(11)).map(|r| r.pool), Ok(WEB));
    assert_eq!(
        b.route(FlowId(6), Some("api.example.com"), at(11)),
        Err(RejectReason::NoRoute),
        "an unknown flow has no route"
    );
    // The new listener admits into the new pool.
    assert_eq!(open_routed(&mut b, 7, new, "10.0.0.7", None), Ok(extra));
    assert_eq!(connect(&mut b, 7, "10.0.0.7").as_deref(), Some("e0"));
    // The kept listener's new limit applies.
    for f in 8..15 {
        assert_eq!(
            open_routed(&mut b, f, TLS, "10.0.0.8", Some("api.example.com")),
            Ok(API)
        );
    }
    assert_eq!(
        b.open_flow(FlowId(15), TLS, ip("10.0.0.8"), at(12)),
        Err(RejectReason::MaxConnections)
    );

    // Open flows of the removed pool and listener end cleanly, their bytes counted.
    b.close_flow(FlowId(2), 11, 22, at(13));
    b.check_invariants();
    let internal = b.pool(INTERNAL).unwrap();
    assert_eq!(
        internal.backend_by_name(&held),
        None,
        "a removed pool's backends are not found by name"
    );
    let x = internal.backends().iter().find(|x| x.name == held).unwrap();
    assert_eq!(
        (x.active, x.bytes_to_backend, x.bytes_to_client),
        (0, 11, 22)
    );
    b.close_flow(FlowId(3), 0, 0, at(13));
    b.close_flow(FlowId(1), 5, 6, at(13));
    b.check_invariants();
    assert_eq!(b.pool(INTERNAL).unwrap().open_flows(), 0);
    assert_eq!(b.listener(PLAIN).unwrap().open, 0);
    assert_eq!(b.pool(WEB).unwrap().backends()[0].bytes_to_client, 6);
    assert!(b.backends_named("i1").is_empty());

    // Back again: a pool and a listener with old names are new ones.
    let summary = reload(&mut b, TWO_BY_THREE, at(20));
    assert_eq!(summary.pools_added, ["internal"]);
    assert_eq!(summary.pools_removed, [("extra".to_string(), 1)]);
    assert_eq!(summary.listeners_added, ["plain"]);
    assert_eq!(summary.listeners_removed, [("new".to_string(), 1)]);
    assert_eq!(b.pool_by_name("internal"), Some(PoolId(4)));
    assert_eq!(b.listener_by_name("plain"), Some(ListenerId(3)));
    assert_eq!(
        open_routed(&mut b, 16, ListenerId(3), "10.0.0.1", None),
        Ok(WEB)
    );
    assert_eq!(
        open_routed(&mut b, 17, TLS, "10.0.0.9", svc),
        Err(RejectReason::MaxConnections),
        "tls is back to three, with eight open"
    );
    b.close_flow(FlowId(7), 0, 0, at(21));
    for f in 4..15 {
        b.close_flow(FlowId(f), 0, 0, at(21));
        b.check_invariants();
    }
    assert_eq!(open_routed(&mut b, 18, TLS, "10.0.0.9", svc), Ok(PoolId(4)));
    assert!(connect(&mut b, 18, "10.0.0.9").unwrap().starts_with('i'));
    b.check_invariants();
}

/// Flows of one listener and pool share one copy of their settings (a pointer each, not
/// 168 bytes), each listener/pool pair its own; a reload that changes the settings reaches
/// the next flow, while open flows keep what they were given.
#[test]
fn flows_share_their_settings_until_a_reload_changes_them() {
    let mut b = balancer(TWO_BY_THREE);
    let first = b
        .open_flow(FlowId(1), PLAIN, ip("10.0.0.1"), at(1))
        .unwrap();
    let second = b
        .open_flow(FlowId(2), PLAIN, ip("10.0.0.2"), at(1))
        .unwrap();
    assert_eq!(first.route, Some(WEB));
    assert!(
        Arc::ptr_eq(&first.limits, &second.limits),
        "one copy per listener and pool"
    );
    assert_eq!(first.limits.retries, 4);
    // The same listener, another pool (by server name), and the same pool through another
    // listener: other settings, other copies.
    let peeking = b.open_flow(FlowId(3), TLS, ip("192.0.2.1"), at(1)).unwrap();
    assert_eq!(peeking.route, None);
    let routed = b.route(FlowId(3), Some("api.example.com"), at(1)).unwrap();
    assert_eq!((routed.pool, routed.limits.retries), (API, 5));
    assert!(!Arc::ptr_eq(&routed.limits, &first.limits));
    b.open_flow(FlowId(4), TLS, ip("192.0.2.2"), at(1)).unwrap();
    let web_by_tls = b.route(FlowId(4), None, at(1)).unwrap();
    assert_eq!((web_by_tls.pool, web_by_tls.limits.retries), (WEB, 4));
    assert!(
        !Arc::ptr_eq(&web_by_tls.limits, &first.limits),
        "per listener too"
    );
    b.close_flow(FlowId(2), 0, 0, at(2));
    reload(
        &mut b,
        &TWO_BY_THREE.replace(r#""retries": 4"#, r#""retries": 1"#),
        at(3),
    );
    let third = b
        .open_flow(FlowId(5), PLAIN, ip("10.0.0.3"), at(4))
        .unwrap();
    assert_eq!(third.limits.retries, 1, "the reloaded setting");
    assert_eq!(first.limits.retries, 4, "an open flow keeps its settings");
    b.check_invariants();
}
