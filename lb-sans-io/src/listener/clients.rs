//! Per-client limits (`per_client`): how many connections each client IP has open, and a
//! token bucket of new connections per client IP. The table's memory is bounded whatever
//! the number of distinct clients: a client with connections open is always tracked (at
//! most `max_connections` of them), and among the others the least recently seen are
//! forgotten first once the table is full (a forgotten client starts again with a full
//! bucket).

use crate::config::{PerClientConfig, Rate};
use crate::time::Timestamp;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

/// Clients tracked at most (beyond those with connections open).
pub const MAX_TRACKED_CLIENTS: usize = 65_536;

/// Tokens are kept in millionths, so refills of a fraction of a token add up exactly.
const SCALE: u128 = 1_000_000;

#[derive(Clone, Copy, Debug)]
struct Entry {
    open: u32,
    /// Millionths of a token.
    tokens: u128,
    /// When `tokens` was last brought up to date (and when the client was last seen).
    at: Timestamp,
}

/// The per-client table of one pool.
#[derive(Clone, Debug)]
pub(crate) struct ClientTable {
    limits: PerClientConfig,
    cap: usize,
    entries: BTreeMap<IpAddr, Entry>,
    /// Clients with no connection open, by when they were last seen: the eviction order.
    idle: BTreeSet<(Timestamp, IpAddr)>,
}

impl ClientTable {
    pub(crate) fn new(limits: PerClientConfig) -> ClientTable {
        ClientTable::with_cap(limits, MAX_TRACKED_CLIENTS)
    }

    pub(crate) fn with_cap(limits: PerClientConfig, cap: usize) -> ClientTable {
        ClientTable {
            limits,
            cap: cap.max(1),
            entries: BTreeMap::new(),
            idle: BTreeSet::new(),
        }
    }

    /// New limits (a reload); what is tracked stays.
    pub(crate) fn set_limits(&mut self, limits: PerClientConfig) {
        self.limits = limits;
    }

    /// Clients tracked now.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    fn full_bucket(rate: Option<Rate>) -> u128 {
        rate.map_or(0, |r| u128::from(r.count) * SCALE)
    }

    /// A client at `ip` connects: admitted (and counted) unless it has `max_connections`
    /// open or its bucket is empty.
    pub(crate) fn admit(&mut self, ip: IpAddr, now: Timestamp) -> bool {
        let rate = self.limits.connection_rate;
        let max = self.limits.max_connections;
        if !self.entries.contains_key(&ip) {
            if self.entries.len() >= self.cap {
                // Forget the client seen least recently that has nothing open.
                if let Some(oldest) = self.idle.pop_first() {
                    self.entries.remove(&oldest.1);
                }
            }
            self.entries.insert(
                ip,
                Entry {
                    open: 0,
                    tokens: Self::full_bucket(rate),
                    at: now,
                },
            );
        }
        let e = self.entries.get_mut(&ip).expect("inserted above");
        if e.open == 0 {
            self.idle.remove(&(e.at, ip));
        }
        if let Some(r) = rate {
            let elapsed = now.saturating_duration_since(e.at).as_nanos();
            let per = r.per.as_nanos().max(1);
            let refill = elapsed.saturating_mul(u128::from(r.count) * SCALE) / per;
            e.tokens = (e.tokens + refill).min(Self::full_bucket(rate));
        }
        e.at = e.at.max(now);
        let over_count = max.is_some_and(|m| e.open >= m);
        let over_rate = rate.is_some() && e.tokens < SCALE;
        let admitted = !over_count && !over_rate;
        if admitted {
            e.open += 1;
            if rate.is_some() {
                e.tokens -= SCALE;
            }
        } else if e.open == 0 {
            self.idle.insert((e.at, ip));
        }
        admitted
    }

    /// A connection `admit` counted has closed.
    pub(crate) fn release(&mut self, ip: IpAddr) {
        if let Some(e) = self.entries.get_mut(&ip) {
            e.open = e.open.saturating_sub(1);
            if e.open == 0 {
                self.idle.insert((e.at, ip));
            }
        }
    }

    /// Connections open from `ip`, as counted.
    #[cfg(any(test, feature = "seams"))]
    pub(crate) fn open(&self, ip: IpAddr) -> u32 {
        self.entries.get(&ip).map_or(0, |e| e.open)
    }

    /// The bookkeeping agrees with itself.
    #[cfg(any(test, feature = "seams"))]
    pub(crate) fn check_invariants(&self) {
        let idle: BTreeSet<(Timestamp, IpAddr)> = self
            .entries
            .iter()
            .filter(|(_, e)| e.open == 0)
            .map(|(ip, e)| (e.at, *ip))
            .collect();
        assert_eq!(idle, self.idle, "per-client idle index");
        let busy = self.entries.values().filter(|e| e.open > 0).count();
        assert!(
            self.entries.len() <= self.cap.max(busy + 1),
            "per-client table over its cap"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ip(n: u32) -> IpAddr {
        IpAddr::from(n.to_be_bytes())
    }

    fn at(ms: u64) -> Timestamp {
        Timestamp::from_nanos(ms * 1_000_000)
    }

    #[test]
    fn at_most_max_connections_open_per_client() {
        let mut t = ClientTable::new(PerClientConfig {
            max_connections: Some(2),
            connection_rate: None,
        });
        assert!(t.admit(ip(1), at(0)));
        assert!(t.admit(ip(1), at(0)));
        assert!(!t.admit(ip(1), at(0)), "a third at once");
        assert!(t.admit(ip(2), at(0)), "other clients are not affected");
        t.release(ip(1));
        assert!(t.admit(ip(1), at(1)), "room again once one closed");
        assert_eq!(t.open(ip(1)), 2);
        t.check_invariants();
    }

    #[test]
    fn the_rate_is_a_token_bucket_with_a_burst_of_its_count() {
        let rate = Rate {
            count: 5,
            per: Duration::from_secs(1),
        };
        let mut t = ClientTable::new(PerClientConfig {
            max_connections: None,
            connection_rate: Some(rate),
        });
        let admitted = (0..10).filter(|_| t.admit(ip(1), at(0))).count();
        assert_eq!(admitted, 5, "the burst");
        assert!(!t.admit(ip(1), at(199)), "one token takes 200 ms");
        assert!(t.admit(ip(1), at(200)));
        assert!(!t.admit(ip(1), at(200)));
        // A long pause refills no more than the burst.
        let admitted = (0..10).filter(|_| t.admit(ip(1), at(60_000))).count();
        assert_eq!(admitted, 5);
        t.check_invariants();
    }

    #[test]
    fn memory_is_bounded_whatever_the_number_of_clients() {
        let limits = PerClientConfig {
            max_connections: Some(1),
            connection_rate: Some(Rate {
                count: 1,
                per: Duration::from_secs(3600),
            }),
        };
        let mut t = ClientTable::with_cap(limits, 100);
        // Ten clients keep a connection open; 10,000 others come and go.
        for n in 0..10 {
            assert!(t.admit(ip(n), at(0)));
        }
        for n in 10..10_010 {
            assert!(t.admit(ip(n), at(u64::from(n))));
            t.release(ip(n));
            assert!(t.len() <= 100, "{} tracked", t.len());
        }
        // The busy ones were never forgotten: still at their limit.
        for n in 0..10 {
            assert!(!t.admit(ip(n), at(20_000)), "client {n} forgotten");
        }
        // The most recent idle one is still limited by its bucket; the oldest was forgotten.
        assert!(!t.admit(ip(10_009), at(20_000)));
        assert!(
            t.admit(ip(10), at(20_000)),
            "forgotten: a full bucket again"
        );
        t.check_invariants();
    }
}
