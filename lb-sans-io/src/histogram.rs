//! Latency histograms as `/metrics` shows them: fixed bucket bounds, a count per bucket,
//! the number of samples and their sum. Recording is a few comparisons; no allocation.

use std::time::Duration;

/// Bucket upper bounds for a backend connect, in seconds (0.5 ms to 10 s).
pub const CONNECT_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Bucket upper bounds for a whole connection's life, in seconds (1 ms to 1 h).
pub const DURATION_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 3600.0,
];

/// A histogram of durations over fixed bucket bounds (in seconds, ascending).
#[derive(Clone, Debug, PartialEq)]
pub struct Histogram {
    bounds: &'static [f64],
    /// Samples per bucket (not cumulative); the last entry counts samples above every
    /// bound.
    counts: Vec<u64>,
    sum: Duration,
    count: u64,
}

impl Histogram {
    /// An empty histogram over `bounds` (seconds, ascending).
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: vec![0; bounds.len() + 1],
            sum: Duration::ZERO,
            count: 0,
        }
    }

    /// Adds one sample.
    pub fn record(&mut self, sample: Duration) {
        let s = sample.as_secs_f64();
        let i = self
            .bounds
            .iter()
            .position(|&b| s <= b)
            .unwrap_or(self.bounds.len());
        self.counts[i] += 1;
        self.sum = self.sum.saturating_add(sample);
        self.count += 1;
    }

    /// The number of samples.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The sum of the samples.
    pub fn sum(&self) -> Duration {
        self.sum
    }

    /// `(upper bound in seconds, samples at or below it)` for every bound, cumulative, as
    /// Prometheus' `_bucket{le=...}` series; the `+Inf` bucket is [`Histogram::count`].
    pub fn cumulative(&self) -> impl Iterator<Item = (f64, u64)> + '_ {
        let mut acc = 0;
        self.bounds.iter().zip(&self.counts).map(move |(&b, &n)| {
            acc += n;
            (b, acc)
        })
    }

    /// Adds every sample of `other` (same bounds) to this one.
    pub fn merge(&mut self, other: &Histogram) {
        if self.bounds != other.bounds {
            return;
        }
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.sum = self.sum.saturating_add(other.sum);
        self.count += other.count;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_land_in_the_first_bucket_at_or_above_them_and_add_up() {
        let mut h = Histogram::new(&[0.001, 0.01, 0.1]);
        for ms in [0, 1, 2, 10, 50, 100, 101, 5_000] {
            h.record(Duration::from_millis(ms));
        }
        let c: Vec<(f64, u64)> = h.cumulative().collect();
        // ≤1 ms: 0, 1; ≤10 ms: +2, 10; ≤100 ms: +50, 100; above: 101, 5000.
        assert_eq!(c, [(0.001, 2), (0.01, 4), (0.1, 6)]);
        assert_eq!(h.count(), 8);
        assert_eq!(h.sum(), Duration::from_millis(5_264));
        let mut m = Histogram::new(&[0.001, 0.01, 0.1]);
        m.merge(&h);
        m.merge(&h);
        assert_eq!(m.count(), 16);
        assert_eq!(m.cumulative().last(), Some((0.1, 12)));
    }
}
