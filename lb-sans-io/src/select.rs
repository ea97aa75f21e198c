//! Selection: which eligible backend a new connection goes to. The pool decides which
//! backends are eligible (up, enabled, under their connection limit, not yet tried by this
//! connection); a [`Selector`] only chooses among them.

use crate::config::Algorithm;
use crate::ids::BackendId;
use crate::rng::LbRng;
use crate::time::Timestamp;
use std::net::IpAddr;

/// What a selector may know about one eligible backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// The backend.
    pub id: BackendId,
    /// Its configured weight (1..=1000).
    pub weight: u32,
    /// Connections it holds now, including ones still connecting.
    pub active: u32,
}

/// The context of one choice.
pub struct SelectCtx<'a> {
    /// Eligible backends, in ascending id order; never empty.
    pub candidates: &'a [Candidate],
    /// Number of configured backends (eligible or not).
    pub backend_count: usize,
    /// The client's address (for hashing).
    pub client: IpAddr,
    /// The time of the choice.
    pub now: Timestamp,
    /// The pool's seeded generator.
    pub rng: &'a mut LbRng,
}

/// A balancing algorithm: picks one of the candidates.
pub trait Selector: Send {
    /// Chooses one of `ctx.candidates` (which is never empty) and returns its id.
    fn select(&mut self, ctx: SelectCtx<'_>) -> BackendId;
}

/// The selector for a configured algorithm.
pub fn selector_for(algorithm: Algorithm, backend_count: usize) -> Box<dyn Selector> {
    // Config validation rejects the algorithms this version does not implement yet.
    debug_assert!(algorithm.is_available(), "{algorithm:?}");
    Box::new(RoundRobin::new(backend_count))
}

/// Equal turns in configured order: each choice takes the first eligible backend after the
/// one chosen last, so with every backend eligible the turns are exactly equal.
#[derive(Clone, Debug)]
pub struct RoundRobin {
    /// The backend chosen last (`None` before the first choice).
    last: Option<BackendId>,
}

impl RoundRobin {
    /// A round robin that starts with the first backend.
    pub fn new(_backend_count: usize) -> RoundRobin {
        RoundRobin { last: None }
    }
}

impl Selector for RoundRobin {
    fn select(&mut self, ctx: SelectCtx<'_>) -> BackendId {
        let pick = match self.last {
            None => ctx.candidates[0].id,
            Some(last) => {
                ctx.candidates
                    .iter()
                    .find(|c| c.id > last)
                    .unwrap_or(&ctx.candidates[0])
                    .id
            }
        };
        self.last = Some(pick);
        pick
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cands(ids: &[u32]) -> Vec<Candidate> {
        ids.iter()
            .map(|&i| Candidate {
                id: BackendId(i),
                weight: 1,
                active: 0,
            })
            .collect()
    }

    fn pick(s: &mut dyn Selector, ids: &[u32], rng: &mut LbRng) -> u32 {
        let c = cands(ids);
        s.select(SelectCtx {
            candidates: &c,
            backend_count: 4,
            client: IpAddr::from([127, 0, 0, 1]),
            now: Timestamp::ZERO,
            rng,
        })
        .0
    }

    #[test]
    fn round_robin_takes_equal_turns_in_order() {
        let mut rng = LbRng::seed(1);
        let mut rr = RoundRobin::new(3);
        let got: Vec<u32> = (0..9)
            .map(|_| pick(&mut rr, &[0, 1, 2], &mut rng))
            .collect();
        assert_eq!(got, [0, 1, 2, 0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn round_robin_skips_ineligible_backends_and_keeps_its_place() {
        let mut rng = LbRng::seed(1);
        let mut rr = RoundRobin::new(4);
        assert_eq!(pick(&mut rr, &[0, 1, 2, 3], &mut rng), 0);
        assert_eq!(pick(&mut rr, &[0, 2, 3], &mut rng), 2);
        assert_eq!(pick(&mut rr, &[0, 2], &mut rng), 0);
        assert_eq!(pick(&mut rr, &[0, 1, 2, 3], &mut rng), 1);
    }
}
