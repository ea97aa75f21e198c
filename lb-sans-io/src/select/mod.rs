//! Selection: which backend a new connection goes to. The pool keeps a [`BackendView`] of
//! every backend up to date (effective weight, active connections, whether it may take a
//! new connection); a [`Selector`] chooses among the usable ones. Each algorithm lives in its
//! own module and is defined precisely in its doc comment and in the README.

mod least_connections;
mod least_response_time;
mod maglev;
mod random;
mod round_robin;
mod weighted_round_robin;

pub use least_connections::LeastConnections;
pub use least_response_time::{LeastResponseTime, PeakEwma, DEFAULT_DECAY};
pub use maglev::{Maglev, MaglevTable, DEFAULT_TABLE_SIZE};
pub use random::{PowerOfTwo, RandomChoice};
pub use round_robin::RoundRobin;
pub use weighted_round_robin::WeightedRoundRobin;

use crate::config::Algorithm;
use crate::ids::BackendId;
use crate::rng::LbRng;
use crate::time::Timestamp;
use std::net::IpAddr;
use std::time::Duration;

/// Weights inside the selectors are in thousandths of a configured weight, so slow start
/// can give a weight-1 backend 10% of its share.
pub const WEIGHT_SCALE: u32 = 1000;

/// What a selector may know about one configured backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackendView {
    /// Effective weight in thousandths (configured weight × 1000, less during slow start);
    /// at least 1.
    pub weight: u32,
    /// Connections it holds now, including ones still connecting.
    pub active: u32,
    /// Up, enabled and under its connection limit.
    pub eligible: bool,
}

/// The context of one choice.
pub struct SelectCtx<'a> {
    /// Every configured backend, indexed by [`BackendId`].
    pub backends: &'a [BackendView],
    /// Backends this connection already tried (never chosen again).
    pub exclude: &'a [BackendId],
    /// The client's address (for hashing).
    pub client: IpAddr,
    /// The time of the choice.
    pub now: Timestamp,
    /// The pool's seeded generator.
    pub rng: &'a mut LbRng,
}

impl SelectCtx<'_> {
    /// Whether backend `i` may be chosen: eligible and not already tried.
    #[inline]
    pub fn usable(&self, i: usize) -> bool {
        self.backends[i].eligible
            && (self.exclude.is_empty() || !self.exclude.contains(&BackendId(i as u32)))
    }

    /// Indices of usable backends, scanning from `start` and wrapping around: the loop most
    /// selectors need, without a division per step.
    #[inline]
    pub fn usable_from(&self, start: usize) -> impl Iterator<Item = usize> + '_ {
        let n = self.backends.len();
        let start = if n == 0 { 0 } else { start % n };
        let no_exclusions = self.exclude.is_empty();
        (start..n).chain(0..start).filter(move |&i| {
            self.backends[i].eligible
                && (no_exclusions || !self.exclude.contains(&BackendId(i as u32)))
        })
    }

    /// Number of configured backends.
    pub fn len(&self) -> usize {
        self.backends.len()
    }

    /// Whether no backend is configured.
    pub fn is_empty(&self) -> bool {
        self.backends.is_empty()
    }
}

/// A balancing algorithm.
pub trait Selector: Send {
    /// Chooses a usable backend ([`SelectCtx::usable`]), or `None` when there is none.
    fn select(&mut self, ctx: SelectCtx<'_>) -> Option<BackendId>;

    /// A latency sample of `backend` (connect time, or time to its first byte).
    fn observe_latency(&mut self, _backend: BackendId, _sample: Duration, _now: Timestamp) {}
}

/// What a selector is built from: the configured backends, in order.
#[derive(Clone, Debug)]
pub struct SelectorSpec<'a> {
    /// Backend names (hash keys for Maglev, identical on every instance).
    pub names: &'a [String],
    /// Configured weights (1..=1000).
    pub weights: &'a [u32],
}

/// The selector for a configured algorithm.
pub fn selector_for(algorithm: Algorithm, spec: &SelectorSpec<'_>) -> Box<dyn Selector> {
    let n = spec.names.len();
    match algorithm {
        Algorithm::RoundRobin => Box::new(RoundRobin::new(n)),
        Algorithm::WeightedRoundRobin => Box::new(WeightedRoundRobin::new(n)),
        Algorithm::LeastConnections => Box::new(LeastConnections::new(n)),
        Algorithm::LeastResponseTime => Box::new(LeastResponseTime::new(n, DEFAULT_DECAY)),
        Algorithm::Hash => Box::new(Maglev::new(MaglevTable::build(
            spec.names,
            spec.weights,
            MaglevTable::size_for(n),
        ))),
        Algorithm::Random => Box::new(RandomChoice),
        Algorithm::PowerOfTwo => Box::new(PowerOfTwo::default()),
    }
}

/// Whether `a` is less loaded than `b`: `active / weight` compared exactly by
/// cross-multiplication.
#[inline]
pub(crate) fn lighter(a: &BackendView, b: &BackendView) -> bool {
    (a.active as u64) * (b.weight as u64) < (b.active as u64) * (a.weight as u64)
}

#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    /// Views of `n` backends, all eligible, weight 1, idle.
    pub fn views(n: usize) -> Vec<BackendView> {
        vec![
            BackendView {
                weight: WEIGHT_SCALE,
                active: 0,
                eligible: true
            };
            n
        ]
    }

    /// One choice with no exclusions from client 10.0.0.1.
    pub fn pick(s: &mut dyn Selector, views: &[BackendView], rng: &mut LbRng) -> Option<u32> {
        pick_for(s, views, rng, IpAddr::from([10, 0, 0, 1]))
    }

    /// One choice for `client`.
    pub fn pick_for(
        s: &mut dyn Selector,
        views: &[BackendView],
        rng: &mut LbRng,
        client: IpAddr,
    ) -> Option<u32> {
        s.select(SelectCtx {
            backends: views,
            exclude: &[],
            client,
            now: Timestamp::ZERO,
            rng,
        })
        .map(|b| b.0)
    }
}
