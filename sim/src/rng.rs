//! The simulation's random draws: the core's own [`LbRng`] (a fixed, documented algorithm),
//! so a seed draws the same plan and the same client behaviour after any dependency
//! upgrade, and a replay command printed today still replays the same run tomorrow.

use lb_sans_io::LbRng;
use std::ops::{Range, RangeInclusive};

/// A seeded generator with the few draws the simulation needs.
#[derive(Clone, Debug)]
pub struct SimRng(LbRng);

/// A range of integers of type `T` to draw from.
pub trait DrawRange<T> {
    /// A uniform draw from the range (its start when it is empty).
    fn draw(self, rng: &mut LbRng) -> T;
}

macro_rules! draw_range {
    ($($t:ty),*) => {$(
        impl DrawRange<$t> for Range<$t> {
            fn draw(self, rng: &mut LbRng) -> $t {
                let span = (self.end as u64).saturating_sub(self.start as u64);
                self.start + rng.below(span) as $t
            }
        }
        impl DrawRange<$t> for RangeInclusive<$t> {
            fn draw(self, rng: &mut LbRng) -> $t {
                let (lo, hi) = (*self.start() as u64, *self.end() as u64);
                if hi < lo {
                    return *self.start();
                }
                match (hi - lo).checked_add(1) {
                    Some(span) => (lo + rng.below(span)) as $t,
                    None => rng.next_u64() as $t,
                }
            }
        }
    )*};
}
draw_range!(u8, u32, u64, usize);

impl SimRng {
    /// A generator whose draws are determined by `seed`.
    pub fn seed_from_u64(seed: u64) -> SimRng {
        SimRng(LbRng::seed(seed))
    }

    /// A uniform integer of `range`.
    pub fn gen_range<T, R: DrawRange<T>>(&mut self, range: R) -> T {
        range.draw(&mut self.0)
    }

    /// True with probability `p` (to a millionth).
    pub fn gen_bool(&mut self, p: f64) -> bool {
        (self.0.below(1_000_000) as f64) < p * 1_000_000.0
    }

    /// 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }
}
