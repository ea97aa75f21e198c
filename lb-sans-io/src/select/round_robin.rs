//! `round_robin`: equal turns in configured order, weights ignored.

use super::{SelectCtx, Selector};
use crate::ids::BackendId;

/// Each choice takes the first usable backend after the one chosen last (in configured
/// order, wrapping around). With every backend usable the turns are exactly equal; a backend
/// that is down or full is skipped without disturbing the others' order.
#[derive(Clone, Debug)]
pub struct RoundRobin {
    /// Index the next search starts at.
    next: usize,
}

impl RoundRobin {
    /// A round robin over `n` backends that starts with the first.
    pub fn new(_n: usize) -> RoundRobin {
        RoundRobin { next: 0 }
    }
}

impl Selector for RoundRobin {
    fn select(&mut self, ctx: SelectCtx<'_>) -> Option<BackendId> {
        let n = ctx.len();
        for k in 0..n {
            let i = (self.next + k) % n;
            if ctx.usable(i) {
                self.next = (i + 1) % n;
                return Some(BackendId(i as u32));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;
    use crate::rng::LbRng;

    #[test]
    fn equal_turns_in_order() {
        let mut rng = LbRng::seed(1);
        let mut rr = RoundRobin::new(3);
        let v = views(3);
        let got: Vec<u32> = (0..9)
            .map(|_| pick(&mut rr, &v, &mut rng).unwrap())
            .collect();
        assert_eq!(got, [0, 1, 2, 0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn skips_ineligible_backends_and_keeps_its_place() {
        let mut rng = LbRng::seed(1);
        let mut rr = RoundRobin::new(4);
        let mut v = views(4);
        assert_eq!(pick(&mut rr, &v, &mut rng), Some(0));
        v[1].eligible = false;
        assert_eq!(pick(&mut rr, &v, &mut rng), Some(2));
        v[3].eligible = false;
        assert_eq!(pick(&mut rr, &v, &mut rng), Some(0));
        v[1].eligible = true;
        v[3].eligible = true;
        assert_eq!(pick(&mut rr, &v, &mut rng), Some(1));
        for b in &mut v {
            b.eligible = false;
        }
        assert_eq!(pick(&mut rr, &v, &mut rng), None);
    }
}
