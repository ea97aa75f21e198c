//! `cargo bench -p lb-sans-io --bench flow`: events per second through one flow machine
//! (the data path without sockets): a read on one side, its write action drained, the write
//! reported done; and a whole connection's life (accept, connect, request, response, both
//! FINs, close, release).
// Benchmarks measure wall-clock time by definition; the core's clippy.toml bans the clock
// for the state machines, not for their benchmarks.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use bytes::Bytes;
use lb_sans_io::{Balancer, Config, Flow, FlowAction, FlowId, ListenerId, Side, Timestamp};
use std::hint::black_box;
use std::net::SocketAddr;
use std::time::Instant;

fn setup() -> Balancer {
    let config = Config::from_json(
        r#"{"backends":[{"address":"127.0.0.1:5001"},{"address":"127.0.0.1:5002"}],
            "health_check":{"start_up":true}}"#,
    )
    .unwrap();
    let addrs: Vec<SocketAddr> = vec![
        "127.0.0.1:5001".parse().unwrap(),
        "127.0.0.1:5002".parse().unwrap(),
    ];
    Balancer::new(&config, &[addrs], 1, Timestamp::ZERO)
}

fn drain(flow: &mut Flow) -> usize {
    let mut n = 0;
    while let Some(a) = flow.poll_action() {
        black_box(&a);
        n += 1;
    }
    n
}

fn main() {
    let quick = std::env::args().any(|a| a == "--test");
    let rounds: u64 = if quick { 1_000 } else { 5_000_000 };
    let mut pool = setup();
    let listener = ListenerId(0);
    let client: SocketAddr = "10.0.0.1:40000".parse().unwrap();

    // Steady state: read 1 KiB from alternating sides, drain, report it written.
    let mut flow = Flow::accept(
        &mut pool,
        FlowId(0),
        listener,
        client,
        None,
        Timestamp::ZERO,
    );
    let attempt = match flow.poll_action() {
        Some(FlowAction::Connect { attempt, .. }) => attempt,
        other => panic!("{other:?}"),
    };
    flow.handle_connected(&mut pool, attempt, Timestamp::ZERO);
    drain(&mut flow);
    let chunk = Bytes::from(vec![7u8; 1024]);
    let start = Instant::now();
    for i in 0..rounds {
        let now = Timestamp::from_nanos(i * 1000);
        let side = if i % 2 == 0 {
            Side::Client
        } else {
            Side::Backend
        };
        flow.handle_read(side, chunk.clone(), now);
        drain(&mut flow);
        flow.handle_written(side.other(), chunk.len(), now);
        drain(&mut flow);
        black_box(flow.poll_timeout());
    }
    let per = start.elapsed() / rounds as u32;
    println!(
        "forwarding: {:>6.1} ns per chunk (read + write + written + poll_timeout), {:.1} M events/s",
        per.as_nanos() as f64,
        3.0 / per.as_secs_f64() / 1e6
    );

    // Whole connections.
    let conns: u64 = if quick { 1_000 } else { 1_000_000 };
    let request = Bytes::from_static(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    let response = Bytes::from_static(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    let start = Instant::now();
    for i in 1..=conns {
        let now = Timestamp::from_nanos(i * 1000);
        let mut f = Flow::accept(&mut pool, FlowId(i), listener, client, None, now);
        let attempt = match f.poll_action() {
            Some(FlowAction::Connect { attempt, .. }) => attempt,
            other => panic!("{other:?}"),
        };
        f.handle_connected(&mut pool, attempt, now);
        f.handle_read(Side::Client, request.clone(), now);
        drain(&mut f);
        f.handle_written(Side::Backend, request.len(), now);
        f.handle_read(Side::Backend, response.clone(), now);
        f.handle_eof(Side::Backend, now);
        drain(&mut f);
        f.handle_written(Side::Client, response.len(), now);
        f.handle_eof(Side::Client, now);
        drain(&mut f);
        assert!(f.is_closed());
        f.release(&mut pool, now);
    }
    let per = start.elapsed() / conns as u32;
    println!(
        "connections: {:>6.1} ns per whole connection (10 events, listener admit, pool select/close), {:.2} M connections/s",
        per.as_nanos() as f64,
        1.0 / per.as_secs_f64() / 1e6
    );
}
