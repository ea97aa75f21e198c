//! `least_response_time`: lowest peak-EWMA latency, weighted by load.

use super::{BackendView, SelectCtx, Selector};
use crate::ids::BackendId;
use crate::time::Timestamp;
use std::time::Duration;

/// The default decay time constant of [`PeakEwma`]: 10 s, as linkerd uses.
pub const DEFAULT_DECAY: Duration = Duration::from_secs(10);

/// A peak-sensitive exponentially weighted moving average of latency (Finagle's and
/// linkerd's "peak EWMA"). A sample above the average replaces it at once; a sample below
/// is blended in with weight `1 - e^(-Δt/τ)`, where Δt is the time since the previous sample
/// and τ the decay constant. Read at time `now`, the value decays toward zero by
/// `e^(-Δt/τ)`, so a backend that was slow long ago gets tried again.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PeakEwma {
    value_ns: f64,
    stamp: Timestamp,
}

impl PeakEwma {
    /// The average after its first sample.
    pub fn new(sample: Duration, now: Timestamp) -> PeakEwma {
        PeakEwma {
            value_ns: sample.as_nanos() as f64,
            stamp: now,
        }
    }

    fn decay(&self, now: Timestamp, tau: Duration) -> f64 {
        let dt = now.saturating_duration_since(self.stamp).as_secs_f64();
        (-dt / tau.as_secs_f64().max(1e-9)).exp()
    }

    /// Adds a sample taken at `now`.
    pub fn observe(&mut self, sample: Duration, now: Timestamp, tau: Duration) {
        let s = sample.as_nanos() as f64;
        if s > self.value_ns {
            self.value_ns = s;
        } else {
            let w = self.decay(now, tau);
            self.value_ns = self.value_ns * w + s * (1.0 - w);
        }
        self.stamp = self.stamp.max(now);
    }

    /// The average as seen at `now`, in nanoseconds.
    pub fn value_at(&self, now: Timestamp, tau: Duration) -> f64 {
        self.value_ns * self.decay(now, tau)
    }
}

/// Picks the usable backend with the lowest `peak-EWMA latency × (active + 1)`, where the
/// latency samples are each connection's connect time and its time to the backend's first
/// byte. Backends without any sample yet are tried first (in rotation), so every backend gets
/// measured. Ties go to the first found from a rotating start.
///
/// The comparison runs in log space, where the decay is a constant shift: `ln cost =
/// ln(value) + stamp/τ − now/τ + ln(active + 1)`, and `now/τ` is common to all backends. So
/// each backend keeps `ln(value) + stamp/τ`, updated only when a sample arrives, and a choice
/// costs an addition and a table look-up per backend instead of an exponential.
#[derive(Clone, Debug)]
pub struct LeastResponseTime {
    ewma: Vec<Option<PeakEwma>>,
    /// `ln(value_ns + 1) + stamp/τ` per backend; −∞ before its first sample, so unmeasured
    /// backends win the minimum (and are tried first).
    log_key: Vec<f64>,
    /// `ln(a + 1)` for small active counts.
    ln_table: Vec<f64>,
    tau: Duration,
    start: usize,
}

const LN_TABLE_SIZE: usize = 4096;

impl LeastResponseTime {
    /// A selector over `n` backends with decay constant `tau`.
    pub fn new(n: usize, tau: Duration) -> LeastResponseTime {
        LeastResponseTime {
            ewma: vec![None; n],
            log_key: vec![f64::NEG_INFINITY; n],
            ln_table: (0..LN_TABLE_SIZE).map(|a| ((a + 1) as f64).ln()).collect(),
            tau,
            start: 0,
        }
    }

    fn ln_load(&self, active: u32) -> f64 {
        match self.ln_table.get(active as usize) {
            Some(&l) => l,
            None => (active as f64 + 1.0).ln(),
        }
    }

    fn refresh_key(&mut self, i: usize) {
        if let Some(e) = self.ewma[i] {
            let tau = self.tau.as_secs_f64().max(1e-9);
            self.log_key[i] = (e.value_ns + 1.0).ln() + e.stamp.since_epoch().as_secs_f64() / tau;
        }
    }

    /// The current average of `backend` at `now`, in nanoseconds (`None` before a sample).
    pub fn latency_ns(&self, backend: BackendId, now: Timestamp) -> Option<f64> {
        self.ewma
            .get(backend.index())
            .copied()
            .flatten()
            .map(|e| e.value_at(now, self.tau))
    }
}

impl Selector for LeastResponseTime {
    fn select(&mut self, ctx: SelectCtx<'_>) -> Option<BackendId> {
        let n = ctx.len();
        if n == 0 {
            return None;
        }
        if self.ewma.len() != n {
            self.ewma.resize(n, None);
            self.log_key.resize(n, f64::NEG_INFINITY);
        }
        let start = self.start % n;
        self.start = (start + 1) % n;
        if !ctx.exclude.is_empty() {
            let mut best: Option<(usize, f64)> = None;
            for i in ctx.usable_from(start) {
                let cost = self.log_key[i] + self.ln_load(ctx.backends[i].active);
                if best.is_none_or(|(_, c)| cost < c) {
                    best = Some((i, cost));
                }
            }
            return best.map(|(i, _)| BackendId(i as u32));
        }
        // The common case, as two plain slice scans.
        let (mut best, mut best_cost) = (usize::MAX, f64::INFINITY);
        let ln_table = &self.ln_table;
        let mut scan = |from: usize, views: &[BackendView], keys: &[f64]| {
            for (k, (b, &key)) in views.iter().zip(keys).enumerate() {
                if b.eligible {
                    let ln_load = match ln_table.get(b.active as usize) {
                        Some(&l) => l,
                        None => (b.active as f64 + 1.0).ln(),
                    };
                    let cost = key + ln_load;
                    if best == usize::MAX || cost < best_cost {
                        best = from + k;
                        best_cost = cost;
                    }
                }
            }
        };
        scan(start, &ctx.backends[start..], &self.log_key[start..]);
        scan(0, &ctx.backends[..start], &self.log_key[..start]);
        (best != usize::MAX).then_some(BackendId(best as u32))
    }

    fn observe_latency(&mut self, backend: BackendId, sample: Duration, now: Timestamp) {
        let tau = self.tau;
        let i = backend.index();
        if i >= self.ewma.len() {
            self.ewma.resize(i + 1, None);
            self.log_key.resize(i + 1, f64::NEG_INFINITY);
        }
        match &mut self.ewma[i] {
            Some(e) => e.observe(sample, now, tau),
            slot @ None => *slot = Some(PeakEwma::new(sample, now)),
        }
        self.refresh_key(i);
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;
    use crate::rng::LbRng;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }
    fn at(ms: u64) -> Timestamp {
        Timestamp::from_nanos(ms * 1_000_000)
    }

    #[test]
    fn peak_ewma_jumps_up_at_once_and_decays_down_with_tau() {
        let tau = ms(1000);
        let mut e = PeakEwma::new(ms(10), at(0));
        e.observe(ms(100), at(1), tau);
        assert_eq!(e.value_at(at(1), tau), 100e6);
        // A fast sample one τ later moves the average 1 - 1/e of the way down.
        e.observe(ms(10), at(1001), tau);
        let expected = 100e6 * (-1f64).exp() + 10e6 * (1.0 - (-1f64).exp());
        assert!((e.value_at(at(1001), tau) - expected).abs() < 1.0);
        // Unobserved, the value decays toward zero.
        assert!(e.value_at(at(5001), tau) < expected / 50.0);
    }

    #[test]
    fn unmeasured_backends_first_then_the_fastest() {
        let mut rng = LbRng::seed(1);
        let v = views(3);
        let mut s = LeastResponseTime::new(3, DEFAULT_DECAY);
        s.observe_latency(BackendId(0), ms(5), Timestamp::ZERO);
        s.observe_latency(BackendId(2), ms(1), Timestamp::ZERO);
        assert_eq!(pick(&mut s, &v, &mut rng), Some(1), "never measured");
        s.observe_latency(BackendId(1), ms(3), Timestamp::ZERO);
        for _ in 0..3 {
            assert_eq!(pick(&mut s, &v, &mut rng), Some(2));
        }
    }

    #[test]
    fn load_multiplies_latency() {
        let mut rng = LbRng::seed(1);
        let mut v = views(2);
        let mut s = LeastResponseTime::new(2, DEFAULT_DECAY);
        s.observe_latency(BackendId(0), ms(1), Timestamp::ZERO);
        s.observe_latency(BackendId(1), ms(3), Timestamp::ZERO);
        v[0].active = 3; // 1 ms × 4 > 3 ms × 1
        assert_eq!(pick(&mut s, &v, &mut rng), Some(1));
    }
}
