//! `least_connections`: fewest active connections relative to weight.

use super::{lighter, BackendView, SelectCtx, Selector};
use crate::ids::BackendId;

/// Picks a usable backend with the fewest `active / weight` (compared exactly). Ties are
/// broken by a rotating start: each choice begins its scan one backend further along, and
/// the first minimum found wins, so equal backends share evenly instead of the first one
/// always winning.
#[derive(Clone, Debug)]
pub struct LeastConnections {
    start: usize,
}

impl LeastConnections {
    /// A fresh selector over `n` backends.
    pub fn new(_n: usize) -> LeastConnections {
        LeastConnections { start: 0 }
    }
}

impl Selector for LeastConnections {
    fn select(&mut self, ctx: SelectCtx<'_>) -> Option<BackendId> {
        let n = ctx.len();
        if n == 0 {
            return None;
        }
        let start = self.start % n;
        self.start = (start + 1) % n;
        if !ctx.exclude.is_empty() {
            let mut best: Option<(usize, &BackendView)> = None;
            for i in ctx.usable_from(start) {
                let b = &ctx.backends[i];
                if best.is_none_or(|(_, cur)| lighter(b, cur)) {
                    best = Some((i, b));
                }
            }
            return best.map(|(i, _)| BackendId(i as u32));
        }
        // The common case, as two plain slice scans the compiler can keep tight: the minimum
        // of active/weight, compared exactly as active_i·w_best < active_best·w_i.
        let mut best = usize::MAX;
        let (mut best_active, mut best_weight) = (0u64, 1u64);
        let mut scan = |from: usize, views: &[BackendView]| {
            for (k, b) in views.iter().enumerate() {
                if b.eligible
                    && (best == usize::MAX
                        || (b.active as u64) * best_weight < best_active * (b.weight as u64))
                {
                    best = from + k;
                    best_active = b.active as u64;
                    best_weight = b.weight as u64;
                }
            }
        };
        scan(start, &ctx.backends[start..]);
        scan(0, &ctx.backends[..start]);
        (best != usize::MAX).then_some(BackendId(best as u32))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::super::WEIGHT_SCALE;
    use super::*;
    use crate::rng::LbRng;

    #[test]
    fn picks_the_least_loaded_relative_to_weight() {
        let mut rng = LbRng::seed(1);
        let mut v = views(3);
        v[0].active = 4;
        v[1].active = 3;
        v[2].active = 5;
        v[2].weight = 2 * WEIGHT_SCALE; // 5/2 < 3/1
        let mut s = LeastConnections::new(3);
        assert_eq!(pick(&mut s, &v, &mut rng), Some(2));
    }

    #[test]
    fn equal_backends_share_turns() {
        let mut rng = LbRng::seed(1);
        let v = views(3);
        let mut s = LeastConnections::new(3);
        let got: Vec<u32> = (0..6)
            .map(|_| pick(&mut s, &v, &mut rng).unwrap())
            .collect();
        assert_eq!(got, [0, 1, 2, 0, 1, 2]);
    }
}
