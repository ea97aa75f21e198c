//! `cargo bench -p lb-sans-io --bench selection`: the cost of one selection per algorithm
//! among 10 and 1,000 backends, of a whole pool pick (seat, select, release), and of
//! building a Maglev table for 100 backends. A plain harness: median of several timed runs.
// Benchmarks measure wall-clock time by definition; the core's clippy.toml bans the clock
// for the state machines, not for their benchmarks.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use lb_sans_io::select::{
    selector_for, BackendView, MaglevTable, SelectCtx, SelectorSpec, WEIGHT_SCALE,
};
use lb_sans_io::{Algorithm, BackendId, Config, FlowId, LbRng, Pool, Timestamp};
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

/// Median over `runs` of the time per iteration of `f` run `iters` times.
fn measure(runs: usize, iters: u64, mut f: impl FnMut(u64)) -> Duration {
    let mut samples: Vec<Duration> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            for i in 0..iters {
                f(i);
            }
            start.elapsed() / iters as u32
        })
        .collect();
    samples.sort();
    samples[runs / 2]
}

fn views(n: usize) -> Vec<BackendView> {
    (0..n)
        .map(|i| BackendView {
            weight: (1 + (i as u32 % 5)) * WEIGHT_SCALE,
            active: (i as u32 * 7) % 13,
            // One in ten down, as a realistic pool.
            eligible: i % 10 != 3,
        })
        .collect()
}

fn main() {
    let quick = std::env::args().any(|a| a == "--test"); // `cargo test --benches` smoke run
    let (runs, iters) = if quick { (1, 100) } else { (9, 200_000) };
    println!("one selection (selector only), median of {runs} runs:");
    println!(
        "{:<22} {:>12} {:>12}",
        "algorithm", "10 backends", "1000 backends"
    );
    for alg in Algorithm::ALL {
        let mut cells = Vec::new();
        for n in [10usize, 1000] {
            let names: Vec<String> = (0..n).map(|i| format!("backend-{i}")).collect();
            let weights: Vec<u32> = (0..n).map(|i| 1 + (i as u32 % 5)).collect();
            let mut sel = selector_for(
                alg,
                &SelectorSpec {
                    names: &names,
                    weights: &weights,
                },
            );
            let v = views(n);
            let mut rng = LbRng::seed(1);
            for b in 0..n {
                sel.observe_latency(
                    BackendId(b as u32),
                    Duration::from_micros(100 + b as u64),
                    Timestamp::ZERO,
                );
            }
            let t = measure(runs, iters, |i| {
                let client = IpAddr::V4(
                    Ipv4Addr::from(i as u32)
                        .to_bits()
                        .wrapping_mul(2_654_435_761)
                        .into(),
                );
                black_box(sel.select(SelectCtx {
                    backends: black_box(&v),
                    exclude: &[],
                    client,
                    now: Timestamp::from_nanos(i),
                    rng: &mut rng,
                }));
            });
            cells.push(t);
        }
        println!(
            "{:<22} {:>10.0}ns {:>10.0}ns",
            alg.name(),
            cells[0].as_nanos(),
            cells[1].as_nanos()
        );
    }

    println!("\nwhole pool pick (seat flow, select, close flow), 10 backends:");
    for alg in Algorithm::ALL {
        let json = format!(
            r#"{{"algorithm":"{}","health_check":{{"start_up":true}},"backends":[{}]}}"#,
            alg.name(),
            (0..10)
                .map(|i| format!(r#"{{"address":"127.0.0.1:{}"}}"#, 5000 + i))
                .collect::<Vec<_>>()
                .join(",")
        );
        let config = Config::from_json(&json).unwrap();
        let addrs: Vec<SocketAddr> = (0..10)
            .map(|i| SocketAddr::from(([127, 0, 0, 1], 5000 + i)))
            .collect();
        let mut pool = Pool::new(&config.pools[0], &addrs, 1, Timestamp::ZERO);
        let client = SocketAddr::from(([10, 0, 0, 1], 40000));
        let t = measure(runs, iters, |i| {
            let f = FlowId(i);
            pool.open_flow(f, Timestamp::ZERO);
            black_box(pool.select(f, client, &[], Timestamp::ZERO));
            pool.close_flow(f, 0, 0, Timestamp::ZERO);
        });
        println!("{:<22} {:>10.0}ns", alg.name(), t.as_nanos());
    }

    let names: Vec<String> = (0..100).map(|i| format!("backend-{i}")).collect();
    let weights = vec![1; 100];
    let build_runs = if quick { 1 } else { 9 };
    let t = measure(build_runs, 1, |_| {
        black_box(MaglevTable::build(
            &names,
            &weights,
            MaglevTable::size_for(100),
        ));
    });
    println!(
        "\nMaglev table build, 100 backends, 65537 slots: {:.2} ms",
        t.as_secs_f64() * 1e3
    );
    let weights: Vec<u32> = (0..100).map(|i| 1 + i % 10).collect();
    let t = measure(build_runs, 1, |_| {
        black_box(MaglevTable::build(
            &names,
            &weights,
            MaglevTable::size_for(100),
        ));
    });
    println!(
        "Maglev table build, 100 backends, weights 1..10: {:.2} ms",
        t.as_secs_f64() * 1e3
    );
}
