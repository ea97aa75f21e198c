//! `random` and `power_of_two`: choices drawn from the pool's seeded generator.

use super::{lighter, SelectCtx, Selector};
use crate::ids::BackendId;

/// Draws a usable backend uniformly at random: a few rejection draws, then an exact draw over
/// the usable ones.
fn draw(ctx: &mut SelectCtx<'_>, not: Option<usize>) -> Option<usize> {
    let n = ctx.len();
    for _ in 0..8 {
        let i = ctx.rng.below(n as u64) as usize;
        if Some(i) != not && ctx.usable(i) {
            return Some(i);
        }
    }
    let count = (0..n).filter(|&i| Some(i) != not && ctx.usable(i)).count();
    if count == 0 {
        return None;
    }
    let k = ctx.rng.below(count as u64) as usize;
    (0..n).filter(|&i| Some(i) != not && ctx.usable(i)).nth(k)
}

/// `random`: each choice is a usable backend drawn uniformly (weights ignored).
#[derive(Clone, Copy, Debug, Default)]
pub struct RandomChoice;

impl Selector for RandomChoice {
    fn select(&mut self, mut ctx: SelectCtx<'_>) -> Option<BackendId> {
        draw(&mut ctx, None).map(|i| BackendId(i as u32))
    }
}

/// `power_of_two` (P2C): draws two distinct usable backends uniformly and picks the one with
/// fewer active connections relative to its weight (the first drawn on a tie). With one
/// usable backend, that one.
#[derive(Clone, Copy, Debug, Default)]
pub struct PowerOfTwo {
    last_pair: Option<(BackendId, BackendId)>,
}

impl PowerOfTwo {
    /// The two backends the last choice compared. A test seam (feature `seams`).
    #[cfg(any(test, feature = "seams"))]
    pub fn last_pair(&self) -> Option<(BackendId, BackendId)> {
        self.last_pair
    }
}

impl Selector for PowerOfTwo {
    fn select(&mut self, mut ctx: SelectCtx<'_>) -> Option<BackendId> {
        self.last_pair = None;
        let a = draw(&mut ctx, None)?;
        let Some(b) = draw(&mut ctx, Some(a)) else {
            return Some(BackendId(a as u32));
        };
        debug_assert_ne!(a, b);
        self.last_pair = Some((BackendId(a as u32), BackendId(b as u32)));
        let pick = if lighter(&ctx.backends[b], &ctx.backends[a]) {
            b
        } else {
            a
        };
        Some(BackendId(pick as u32))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;
    use crate::rng::LbRng;

    #[test]
    fn random_covers_usable_backends_only() {
        let mut rng = LbRng::seed(9);
        let mut v = views(4);
        v[2].eligible = false;
        let mut seen = [0; 4];
        let mut s = RandomChoice;
        for _ in 0..400 {
            seen[pick(&mut s, &v, &mut rng).unwrap() as usize] += 1;
        }
        assert_eq!(seen[2], 0);
        assert!(
            seen.iter().enumerate().all(|(i, &c)| i == 2 || c > 70),
            "{seen:?}"
        );
    }

    #[test]
    fn power_of_two_never_picks_the_busiest_of_two() {
        let mut rng = LbRng::seed(3);
        let mut v = views(2);
        v[0].active = 5;
        let mut s = PowerOfTwo::default();
        for _ in 0..50 {
            assert_eq!(pick(&mut s, &v, &mut rng), Some(1));
        }
        v[1].eligible = false;
        assert_eq!(pick(&mut s, &v, &mut rng), Some(0));
    }
}
