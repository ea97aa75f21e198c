//! The scripted DNS of the `fleet` scenario: which backends the name `web.sim` names over
//! (simulated) time, and when DNS fails or answers nothing. The load balancers' `Net`
//! answers their discovery questions from it ([`DnsScript::answer`]); the checkers read the
//! same script to know what each load balancer may have learned by when.

use crate::rng::SimRng;
use crate::scenario::Fault;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

/// The name the fleet's pool discovers (on the backends' port).
pub const NAME: &str = "web.sim";

/// How a DNS outage answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outage {
    /// SERVFAIL, at once.
    ServerFailure,
    /// A resolver that gives up at once with a timeout.
    Timeout,
    /// No answer at all: the question waits for its timeout.
    Hang,
    /// An answer naming no address.
    Empty,
}

/// One change in the script.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DnsEvent {
    /// Backend `b` is named from now on (scale up).
    Add(usize),
    /// Backend `b` is no longer named (scale down).
    Remove(usize),
    /// Backend `old` is replaced by `new` in one change (and `old` dies a little later).
    Replace(usize, usize),
    /// DNS fails (or answers nothing) this long.
    Down(Outage, Duration),
}

impl fmt::Display for DnsEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DnsEvent::Add(b) => write!(f, "dns: add b{b}"),
            DnsEvent::Remove(b) => write!(f, "dns: remove b{b}"),
            DnsEvent::Replace(old, new) => write!(f, "dns: replace b{old} by b{new}"),
            DnsEvent::Down(o, d) => write!(f, "dns: {o:?} for {}ms", d.as_millis()),
        }
    }
}

/// What DNS answers over the run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsScript {
    /// The pool's `discover.interval`.
    pub interval: Duration,
    /// The set named (bit `b` for backend `b`) from each time on; the first at zero.
    pub sets: Vec<(Duration, u64)>,
    /// Windows `[from, to)` in which DNS fails or answers nothing.
    pub outages: Vec<(Duration, Duration, Outage)>,
    /// The script's changes as drawn, for the description.
    pub events: Vec<(Duration, DnsEvent)>,
}

impl DnsScript {
    /// Draws a script over `n` backends with changes from `start` on: some named at first,
    /// then (in a seed-chosen order) a scale up, a scale down, a replacement, an outage of
    /// a seed-chosen kind and an empty answer, each a staleness apart. Returns the script,
    /// the crash (and late restart) of the replaced backend, and when the last change's
    /// effects have settled.
    pub fn draw(
        n: usize,
        interval: Duration,
        start: Duration,
        rng: &mut SimRng,
    ) -> (DnsScript, Vec<(Duration, Fault)>, Duration) {
        let ms = Duration::from_millis;
        // Two backends not named at first (n >= 4): one for the scale up, one to replace with.
        let mut absent: Vec<usize> = Vec::new();
        while absent.len() < 2 {
            let b = rng.gen_range(0..n);
            if !absent.contains(&b) {
                absent.push(b);
            }
        }
        let mut named: u64 = (0..n)
            .filter(|b| !absent.contains(b))
            .fold(0, |m, b| m | 1 << b);
        let mut kinds: Vec<u8> = vec![0, 1, 2, 3, 4];
        // Shuffle (Fisher-Yates on the seeded generator).
        for i in (1..kinds.len()).rev() {
            let j = rng.gen_range(0..=i);
            kinds.swap(i, j);
        }
        let stale = spacing(interval);
        let mut script = DnsScript {
            interval,
            sets: vec![(Duration::ZERO, named)],
            outages: Vec::new(),
            events: Vec::new(),
        };
        let mut faults = Vec::new();
        let mut t = start;
        let mut replaced = None;
        for kind in kinds {
            let present: Vec<usize> = (0..n).filter(|b| named & (1 << b) != 0).collect();
            let event = match kind {
                0 => DnsEvent::Add(absent.remove(0)),
                1 => DnsEvent::Remove(present[rng.gen_range(0..present.len())]),
                2 => {
                    let old = present[rng.gen_range(0..present.len())];
                    DnsEvent::Replace(old, absent.pop().unwrap_or(old))
                }
                3 => {
                    let outage = [Outage::ServerFailure, Outage::Timeout, Outage::Hang]
                        [rng.gen_range(0..3usize)];
                    DnsEvent::Down(outage, ms(rng.gen_range(1500..=4000)))
                }
                _ => DnsEvent::Down(Outage::Empty, ms(rng.gen_range(1000..=3000))),
            };
            let mut end = t;
            match event {
                DnsEvent::Add(b) => named |= 1 << b,
                DnsEvent::Remove(b) => named &= !(1 << b),
                DnsEvent::Replace(old, new) => {
                    named = (named & !(1 << old)) | 1 << new;
                    replaced = Some((old, t + ms(rng.gen_range(1500..=2500))));
                }
                DnsEvent::Down(o, d) => {
                    script.outages.push((t, t + d, o));
                    end = t + d;
                }
            }
            if !matches!(event, DnsEvent::Down(..)) {
                script.sets.push((t, named));
            }
            script.events.push((t, event));
            t = end + stale + ms(rng.gen_range(200..=900));
        }
        // The replaced backend's host goes away, and is back (not named) by the chaos end.
        let settled = t;
        if let Some((old, at)) = replaced {
            faults.push((at, Fault::Crash(old)));
            faults.push((
                settled.saturating_sub(ms(300)).max(at + ms(100)),
                Fault::Restart(old),
            ));
        }
        (script, faults, settled)
    }

    /// The set named at `t`.
    pub fn named_at(&self, t: Duration) -> u64 {
        let i = self.sets.partition_point(|(at, _)| *at <= t);
        self.sets[i.saturating_sub(1)].1
    }

    /// Every backend named at some time up to `t`.
    pub fn ever_named_by(&self, t: Duration) -> u64 {
        self.sets
            .iter()
            .filter(|(at, _)| *at <= t)
            .fold(0, |m, (_, s)| m | s)
    }

    /// The outage at `t`, if any.
    pub fn outage_at(&self, t: Duration) -> Option<Outage> {
        self.outages
            .iter()
            .find(|(a, e, _)| *a <= t && t < *e)
            .map(|(_, _, o)| *o)
    }

    /// The sets a load balancer may hold at `t`: the one named at `t - staleness` and every
    /// one named since.
    pub fn may_hold_at(&self, t: Duration) -> Vec<u64> {
        let from = t.saturating_sub(staleness(self.interval));
        let mut out = vec![self.named_at(from)];
        out.extend(
            self.sets
                .iter()
                .filter(|(at, _)| *at > from && *at <= t)
                .map(|(_, s)| *s),
        );
        out
    }

    /// The answer to a question asked at `t`: the addresses named (rotated by the time,
    /// as round-robin DNS does), or the outage.
    pub fn answer(&self, t: Duration, backends: &[SocketAddr]) -> Result<Vec<SocketAddr>, Outage> {
        if let Some(o) = self.outage_at(t) {
            return Err(o);
        }
        let mask = self.named_at(t);
        let mut addrs: Vec<SocketAddr> = (0..backends.len())
            .filter(|b| mask & (1 << b) != 0)
            .map(|b| backends[b])
            .collect();
        if !addrs.is_empty() {
            let k = (t.as_millis() as usize) % addrs.len();
            addrs.rotate_left(k);
        }
        Ok(addrs)
    }
}

/// How long after a change of the set named a load balancer may still hold the previous
/// set: a question asked just before the change is answered with it, and the next comes
/// one interval later; plus slack for the answer's latency and ticks.
pub fn staleness(interval: Duration) -> Duration {
    interval + Duration::from_millis(300)
}

/// The least time between two changes of the script: after an outage whose last question
/// hangs until its timeout (one interval), the next question comes one interval later; a
/// change comes only once every load balancer has had a good answer since.
pub fn spacing(interval: Duration) -> Duration {
    interval * 3 + Duration::from_millis(300)
}
