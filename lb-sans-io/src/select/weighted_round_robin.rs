//! `weighted_round_robin`: smooth weighted round robin, as nginx defines it.

use super::{SelectCtx, Selector};
use crate::ids::BackendId;

/// nginx's smooth weighted round robin. Each choice adds every usable backend's effective
/// weight to its `current`, picks the backend with the largest `current` (the first one on
/// ties), and subtracts the total of the added weights from the winner's `current`. Over a
/// cycle of `Σ weights` choices each backend gets exactly `weight` turns, spread out:
/// weights 5, 1, 1 give `a a b a c a a`, never a burst.
#[derive(Clone, Debug)]
pub struct WeightedRoundRobin {
    current: Vec<i64>,
}

impl WeightedRoundRobin {
    /// A fresh selector over `n` backends.
    pub fn new(n: usize) -> WeightedRoundRobin {
        WeightedRoundRobin {
            current: vec![0; n],
        }
    }
}

impl Selector for WeightedRoundRobin {
    fn select(&mut self, ctx: SelectCtx<'_>) -> Option<BackendId> {
        if self.current.len() != ctx.len() {
            // A reload that added backends: the others keep their place in the cycle.
            self.current.resize(ctx.len(), 0);
        }
        let mut total: i64 = 0;
        let mut best: Option<(usize, i64)> = None;
        if ctx.exclude.is_empty() {
            // The common case as one plain scan.
            let mut best_i = usize::MAX;
            let mut best_c = i64::MIN;
            for (i, (b, cur)) in ctx.backends.iter().zip(self.current.iter_mut()).enumerate() {
                if b.eligible {
                    let w = b.weight as i64;
                    *cur += w;
                    total += w;
                    if *cur > best_c {
                        best_c = *cur;
                        best_i = i;
                    }
                }
            }
            if best_i == usize::MAX {
                return None;
            }
            self.current[best_i] -= total;
            return Some(BackendId(best_i as u32));
        }
        for i in ctx.usable_from(0) {
            let w = ctx.backends[i].weight as i64;
            let c = self.current[i] + w;
            self.current[i] = c;
            total += w;
            if best.is_none_or(|(_, bc)| c > bc) {
                best = Some((i, c));
            }
        }
        let (best, _) = best?;
        self.current[best] -= total;
        Some(BackendId(best as u32))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::super::WEIGHT_SCALE;
    use super::*;
    use crate::rng::LbRng;

    #[test]
    fn weights_5_1_1_give_the_nginx_sequence() {
        let mut rng = LbRng::seed(1);
        let mut v = views(3);
        v[0].weight = 5 * WEIGHT_SCALE;
        let mut s = WeightedRoundRobin::new(3);
        let seq: String = (0..14)
            .map(|_| (b'a' + pick(&mut s, &v, &mut rng).unwrap() as u8) as char)
            .collect();
        assert_eq!(seq, "aabacaaaabacaa");
    }
}
