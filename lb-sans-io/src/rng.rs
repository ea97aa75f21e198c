//! The machine's own seeded random generator: the only randomness in the core, so one seed
//! replays a run exactly.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::time::Duration;

/// A seeded generator owned by a machine (never a thread-local or global one).
#[derive(Clone, Debug)]
pub struct LbRng(StdRng);

impl LbRng {
    /// A generator whose whole sequence is determined by `seed`.
    pub fn seed(seed: u64) -> LbRng {
        LbRng(StdRng::seed_from_u64(seed))
    }

    /// A uniform integer in `0..n`; 0 when `n` is 0.
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.0.gen_range(0..n)
        }
    }

    /// A uniform duration in `0..max` (zero when `max` is zero).
    pub fn duration_below(&mut self, max: Duration) -> Duration {
        let nanos = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(self.below(nanos))
    }
}
