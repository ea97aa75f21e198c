//! Property tests of every balancing algorithm's definition over random backend sets,
//! weights, health changes and connection counts.

use lb_sans_io::pool::slow_start_weight;
use lb_sans_io::select::{
    BackendView, LeastConnections, Maglev, MaglevTable, PowerOfTwo, RoundRobin, SelectCtx,
    Selector, WeightedRoundRobin, DEFAULT_TABLE_SIZE, WEIGHT_SCALE,
};
use lb_sans_io::{LbRng, Timestamp};
use proptest::prelude::*;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

fn choose(
    s: &mut dyn Selector,
    views: &[BackendView],
    rng: &mut LbRng,
    client: IpAddr,
) -> Option<usize> {
    s.select(SelectCtx {
        backends: views,
        exclude: &[],
        client,
        now: Timestamp::ZERO,
        rng,
    })
    .map(|b| b.index())
}

fn views_of(weights: &[u32], up: &[bool], active: &[u32]) -> Vec<BackendView> {
    weights
        .iter()
        .zip(up)
        .zip(active)
        .map(|((&w, &eligible), &active)| BackendView {
            weight: w * WEIGHT_SCALE,
            active,
            eligible,
        })
        .collect()
}

fn ip(c: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(c))
}

/// Cases per property: the default, or `PROPTEST_CASES` for a longer run.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3));

type Backends = (Vec<u32>, Vec<bool>, Vec<u32>);

fn backends() -> impl Strategy<Value = Backends> {
    (1usize..12).prop_flat_map(|n| {
        (
            prop::collection::vec(1u32..=20, n),
            prop::collection::vec(any::<bool>(), n),
            prop::collection::vec(0u32..50, n),
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(200)))]

    /// Round robin: over any window of `u` choices (u = usable backends) every usable backend
    /// gets exactly one turn, and no other backend any.
    #[test]
    fn round_robin_gives_exact_equal_turns((weights, up, active) in backends()) {
        let v = views_of(&weights, &up, &active);
        let usable: Vec<usize> = (0..v.len()).filter(|&i| up[i]).collect();
        let mut rr = RoundRobin::new(v.len());
        let mut rng = LbRng::seed(0);
        if usable.is_empty() {
            prop_assert_eq!(choose(&mut rr, &v, &mut rng, CLIENT), None);
            return Ok(());
        }
        for _ in 0..3 {
            let mut got: Vec<usize> = (0..usable.len())
                .map(|_| choose(&mut rr, &v, &mut rng, CLIENT).unwrap())
                .collect();
            got.sort();
            prop_assert_eq!(&got, &usable);
        }
    }

    /// Smooth WRR: over a full cycle (Σ weights choices) each usable backend gets exactly its
    /// weight in turns; after every prefix of k choices no backend is a whole turn ahead of
    /// its exact share k·w/W nor more than (N − 1)/2 turns behind it; and a run of r turns in
    /// a row satisfies r·(W − w) < 2W (weights 5, 1, 1: at most 4 in a row, across cycles).
    #[test]
    fn weighted_round_robin_exact_shares_and_smoothness((weights, up, active) in backends()) {
        let v = views_of(&weights, &up, &active);
        let usable: Vec<usize> = (0..v.len()).filter(|&i| up[i]).collect();
        prop_assume!(!usable.is_empty());
        let total: u64 = usable.iter().map(|&i| weights[i] as u64).sum();
        let mut s = WeightedRoundRobin::new(v.len());
        let mut rng = LbRng::seed(0);
        let seq: Vec<usize> = (0..total * 3)
            .map(|_| choose(&mut s, &v, &mut rng, CLIENT).unwrap())
            .collect();
        for cycle in seq.chunks(total as usize) {
            for &i in &usable {
                prop_assert_eq!(cycle.iter().filter(|&&c| c == i).count() as u32, weights[i]);
            }
        }
        let mut turns = vec![0u64; v.len()];
        for (k, &c) in seq.iter().enumerate() {
            turns[c] += 1;
            let n = usable.len() as u64;
            for &i in &usable {
                // In integers: turns·W − (k+1)·w < W and 2·((k+1)·w − turns·W) ≤ (N − 1)·W.
                let exact = (k as u64 + 1) * weights[i] as u64;
                let have = turns[i] * total;
                prop_assert!(have < exact + total,
                    "backend {} is a turn ahead: {} turns after {} choices, share {}/{}", i, turns[i], k + 1, weights[i], total);
                prop_assert!(2 * exact.saturating_sub(have) <= (n - 1) * total,
                    "backend {} is behind: {} turns after {} choices, share {}/{}", i, turns[i], k + 1, weights[i], total);
            }
        }
        let mut run = 1u64;
        for w in seq.windows(2) {
            run = if w[0] == w[1] { run + 1 } else { 1 };
            let wi = weights[w[1]] as u64;
            prop_assert!(wi == total || run * (total - wi) < 2 * total,
                "run of {} for weight {} of {}", run, wi, total);
        }
    }

    /// Least connections always picks a usable backend with minimal active / weight.
    #[test]
    fn least_connections_picks_a_minimum((weights, up, active) in backends(), rounds in 1usize..20) {
        let mut v = views_of(&weights, &up, &active);
        let mut s = LeastConnections::new(v.len());
        let mut rng = LbRng::seed(0);
        for _ in 0..rounds {
            let Some(c) = choose(&mut s, &v, &mut rng, CLIENT) else {
                prop_assert!(!up.iter().any(|&u| u));
                return Ok(());
            };
            prop_assert!(v[c].eligible);
            let load = |b: &BackendView| b.active as f64 / b.weight as f64;
            for b in v.iter().filter(|b| b.eligible) {
                prop_assert!(load(&v[c]) <= load(b) + 1e-12);
            }
            v[c].active += 1;
        }
    }

    /// Equal backends share least-connections turns evenly (the tie-break rotates).
    #[test]
    fn least_connections_ties_rotate(n in 2usize..10) {
        let v = views_of(&vec![1; n], &vec![true; n], &vec![0; n]);
        let mut s = LeastConnections::new(n);
        let mut rng = LbRng::seed(0);
        let mut counts = vec![0; n];
        for _ in 0..n * 4 {
            counts[choose(&mut s, &v, &mut rng, CLIENT).unwrap()] += 1;
        }
        prop_assert!(counts.iter().all(|&c| c == 4), "{:?}", counts);
    }

    /// P2C never picks the busier (relative to weight) of the two it compared, and only
    /// usable backends.
    #[test]
    fn power_of_two_never_picks_the_busier((weights, up, active) in backends(), seed in any::<u64>()) {
        let v = views_of(&weights, &up, &active);
        let mut s = PowerOfTwo::default();
        let mut rng = LbRng::seed(seed);
        for _ in 0..20 {
            let Some(c) = choose(&mut s, &v, &mut rng, CLIENT) else {
                prop_assert!(!up.iter().any(|&u| u));
                return Ok(());
            };
            prop_assert!(v[c].eligible);
            if let Some((a, b)) = s.last_pair() {
                prop_assert!(a != b);
                prop_assert!(c == a.index() || c == b.index());
                let other = if c == a.index() { b.index() } else { a.index() };
                let (x, y) = (&v[c], &v[other]);
                prop_assert!(
                    (x.active as u64) * (y.weight as u64) <= (y.active as u64) * (x.weight as u64)
                );
            } else {
                prop_assert_eq!(up.iter().filter(|&&u| u).count(), 1);
            }
        }
    }

    /// Slow start: the effective weight starts at 10%, never decreases and reaches full.
    #[test]
    fn slow_start_grows_monotonically_to_full(w in 1u32..=1000, ramp_ms in 1u64..100_000) {
        let full = w * WEIGHT_SCALE;
        let ramp = Duration::from_millis(ramp_ms);
        prop_assert_eq!(slow_start_weight(full, Duration::ZERO, ramp), (full / 10).max(1));
        let mut last = 0;
        for k in 0..=50u32 {
            let e = slow_start_weight(full, ramp * k / 50, ramp);
            prop_assert!(e >= last && e <= full);
            last = e;
        }
        prop_assert_eq!(last, full);
        prop_assert_eq!(slow_start_weight(full, ramp * 2, ramp), full);
    }
}

fn names(n: usize, salt: u32) -> Vec<String> {
    (0..n).map(|i| format!("srv-{salt}-{i}")).collect()
}

/// A small prime table for the properties that hold at any size (the hashing and the
/// fill are the same as at 65,537 slots), so they run many more cases.
const SMALL_TABLE: usize = 2_039;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(128)))]

    /// Maglev tables are balanced: each backend's share of slots is within 1% (relative) of
    /// its weight share, for the default 65,537-slot table.
    #[test]
    fn maglev_tables_are_balanced(
        n in 1usize..20,
        salt in any::<u32>(),
        weights in prop::collection::vec(1u32..=10, 20),
    ) {
        let weights = &weights[..n];
        let t = MaglevTable::build(&names(n, salt), weights, DEFAULT_TABLE_SIZE);
        let total: u32 = weights.iter().sum();
        for (i, &s) in t.shares(n).iter().enumerate() {
            let ideal = DEFAULT_TABLE_SIZE as f64 * weights[i] as f64 / total as f64;
            prop_assert!(
                (s as f64 - ideal).abs() <= ideal * 0.01,
                "backend {} has {} slots, ideal {}", i, s, ideal
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(256)))]

    /// Identical inputs give identical tables (two load balancers agree), and the same client
    /// lands on the same backend through two independent selectors.
    #[test]
    fn maglev_is_identical_across_instances(
        n in 1usize..16,
        salt in any::<u32>(),
        clients in prop::collection::vec(any::<u32>(), 50),
    ) {
        let w = vec![1; n];
        let a = MaglevTable::build(&names(n, salt), &w, SMALL_TABLE);
        let b = MaglevTable::build(&names(n, salt), &w, SMALL_TABLE);
        prop_assert_eq!(&a, &b);
        let v = views_of(&w, &vec![true; n], &vec![0; n]);
        let (mut sa, mut sb) = (Maglev::new(a), Maglev::new(b));
        let (mut ra, mut rb) = (LbRng::seed(1), LbRng::seed(2));
        for c in clients {
            prop_assert_eq!(choose(&mut sa, &v, &mut ra, ip(c)), choose(&mut sb, &v, &mut rb, ip(c)));
        }
    }

    /// A backend going down moves only its own clients; when it comes back they return.
    #[test]
    fn maglev_down_backend_moves_only_its_clients(
        n in 2usize..12,
        salt in any::<u32>(),
        down in any::<prop::sample::Index>(),
        clients in prop::collection::vec(any::<u32>(), 300),
    ) {
        let w = vec![1; n];
        let mut s = Maglev::new(MaglevTable::build(&names(n, salt), &w, SMALL_TABLE));
        let mut rng = LbRng::seed(0);
        let mut v = views_of(&w, &vec![true; n], &vec![0; n]);
        let before: Vec<usize> = clients
            .iter()
            .map(|&c| choose(&mut s, &v, &mut rng, ip(c)).unwrap())
            .collect();
        let d = down.index(n);
        v[d].eligible = false;
        for (k, &c) in clients.iter().enumerate() {
            let now = choose(&mut s, &v, &mut rng, ip(c)).unwrap();
            prop_assert!(now != d);
            if before[k] != d {
                prop_assert_eq!(now, before[k], "a client of a healthy backend moved");
            }
        }
        v[d].eligible = true;
        let after: Vec<usize> = clients
            .iter()
            .map(|&c| choose(&mut s, &v, &mut rng, ip(c)).unwrap())
            .collect();
        prop_assert_eq!(before, after);
    }
}

/// Removing 1 of N backends from the config (a rebuild) moves few keys beyond the removed
/// backend's own: Maglev's bound is about twice the ideal 1/N. Prints the measured share.
#[test]
fn maglev_rebuild_without_one_backend_moves_a_small_share_of_keys() {
    for n in [5usize, 10, 50] {
        let all = names(n, 7);
        let w = vec![1; n];
        let full = MaglevTable::build(&all, &w, DEFAULT_TABLE_SIZE);
        let removed = n / 2;
        let rest: Vec<String> = all
            .iter()
            .enumerate()
            .filter(|&(i, _)| i != removed)
            .map(|(_, s)| s.clone())
            .collect();
        let smaller = MaglevTable::build(&rest, &w[1..], DEFAULT_TABLE_SIZE);
        let moved = (0..DEFAULT_TABLE_SIZE)
            .filter(|&s| all[full.owner(s).index()] != rest[smaller.owner(s).index()])
            .count();
        let share = moved as f64 / DEFAULT_TABLE_SIZE as f64;
        let ideal = 1.0 / n as f64;
        println!(
            "maglev: removing 1 of {n} backends moves {:.2}% of keys (ideal {:.2}%)",
            share * 100.0,
            ideal * 100.0
        );
        assert!(
            share >= ideal * 0.95,
            "the removed backend's keys must move"
        );
        assert!(share <= ideal * 2.5, "moved {share} for n={n}");
    }
}

#[test]
fn maglev_weights_5_1_1_give_five_sevenths_of_clients_to_the_heavy_backend() {
    let t = MaglevTable::build(&names(3, 1), &[5, 1, 1], DEFAULT_TABLE_SIZE);
    let s = t.shares(3);
    assert!((s[0] as f64 / s[1] as f64 - 5.0).abs() < 0.01, "{s:?}");
    let mut rng = LbRng::seed(0);
    let mut sel = Maglev::new(t);
    let v = views_of(&[5, 1, 1], &[true; 3], &[0; 3]);
    let mut counts = [0usize; 3];
    for c in 0..70_000u32 {
        counts[choose(&mut sel, &v, &mut rng, ip(c.wrapping_mul(2_654_435_761))).unwrap()] += 1;
    }
    let share0 = counts[0] as f64 / 70_000.0;
    assert!((share0 - 5.0 / 7.0).abs() < 0.02, "{counts:?}");
}
