//! DNS service discovery's decisions: when a pool asks DNS again, which backends an answer
//! names (every A/AAAA address on the configured port; or the SRV records of the lowest
//! priority present, each target's addresses on the record's port with its weight clamped
//! to 1..=1000), and what an answer or a failure does: a new set is applied like a reload
//! of the pool; a failure or an empty answer keeps the last known set and is counted. The
//! resolving itself is the driver's (its `Net` asks a real or a scripted DNS).

use crate::config::{DiscoverConfig, DiscoverTarget};
use crate::time::Timestamp;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// A question for the driver to ask DNS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsQuery {
    /// The name and record type.
    pub target: DiscoverTarget,
    /// The server to ask; `None`: the system's resolver configuration.
    pub resolver: Option<SocketAddr>,
    /// How long the whole resolution may take before the driver reports
    /// [`DnsError::Timeout`]: the interval, at most [`MAX_RESOLVE_TIME`].
    pub timeout: Duration,
}

/// The longest a resolution may take, whatever the interval.
pub const MAX_RESOLVE_TIME: Duration = Duration::from_secs(5);

/// One SRV record, with its target's addresses (resolved by the driver).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SrvRecord {
    /// Lower is preferred; only the lowest present is used.
    pub priority: u16,
    /// The backend weight (clamped to 1..=1000; 0 counts as 1).
    pub weight: u16,
    /// The backends' port.
    pub port: u16,
    /// The target host name.
    pub target: String,
    /// The target's A and AAAA addresses.
    pub addrs: Vec<IpAddr>,
}

/// What DNS answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DnsAnswer {
    /// The A and AAAA addresses of a `dns` name.
    Addrs(Vec<IpAddr>),
    /// The SRV records of an `srv` name.
    Srv(Vec<SrvRecord>),
}

/// Why a resolution failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DnsError {
    /// No answer in time.
    Timeout,
    /// The name does not exist (NXDOMAIN).
    NoSuchName,
    /// The server failed (SERVFAIL) or refused.
    ServerFailure,
    /// Anything else, in the resolver's words.
    Other(String),
}

impl fmt::Display for DnsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DnsError::Timeout => f.write_str("timeout"),
            DnsError::NoSuchName => f.write_str("no such name (NXDOMAIN)"),
            DnsError::ServerFailure => f.write_str("server failure (SERVFAIL)"),
            DnsError::Other(why) => f.write_str(why),
        }
    }
}

/// A discovered backend: its address (also its name, `IP:PORT`) and weight.
pub type Discovered = (SocketAddr, u32);

/// The backends `answer` names for `target`, sorted by address, each once (the highest
/// weight given for it). Empty when the answer names none (or does not fit the target).
pub fn backends_of(target: &DiscoverTarget, answer: &DnsAnswer) -> Vec<Discovered> {
    let mut out: Vec<Discovered> = match (target, answer) {
        (DiscoverTarget::Dns { port, .. }, DnsAnswer::Addrs(addrs)) => addrs
            .iter()
            .map(|ip| (SocketAddr::new(*ip, *port), 1))
            .collect(),
        (DiscoverTarget::Srv { .. }, DnsAnswer::Srv(records)) => {
            let Some(best) = records.iter().map(|r| r.priority).min() else {
                return Vec::new();
            };
            records
                .iter()
                .filter(|r| r.priority == best && r.port != 0)
                .flat_map(|r| {
                    let weight = u32::from(r.weight).clamp(1, 1000);
                    r.addrs
                        .iter()
                        .map(move |ip| (SocketAddr::new(*ip, r.port), weight))
                })
                .collect()
        }
        _ => Vec::new(),
    };
    // Highest weight first within an address, then one per address.
    out.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
    out.dedup_by_key(|d| d.0);
    out
}

/// A pool's discovery: its question, its schedule, and what it knows.
#[derive(Clone, Debug)]
pub struct Discovery {
    config: DiscoverConfig,
    target: DiscoverTarget,
    next_at: Timestamp,
    in_flight: bool,
    /// The set last applied (sorted by address).
    pub current: Vec<Discovered>,
    /// When an answer last named backends.
    pub last_success: Option<Timestamp>,
    /// The last failure (or empty answer): when, and why.
    pub last_error: Option<(Timestamp, String)>,
    /// Failures and empty answers since start.
    pub errors_total: u64,
    /// Whether the last resolution succeeded (`None` before the first): a change of this,
    /// or of the error, is logged.
    last_ok: Option<Result<(), String>>,
}

/// What a resolution's result did, for the log: said once per change of outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DiscoveryNews {
    /// Resolution works (again), naming this many backends.
    Resolving(usize),
    /// Resolution fails (or answers nothing): the last known set is kept.
    Failing(String),
}

impl Discovery {
    /// The discovery `config` asks for (validated), first asked at `now`.
    pub fn new(config: &DiscoverConfig, now: Timestamp) -> Option<Discovery> {
        Some(Discovery {
            target: config.target().ok()?,
            config: config.clone(),
            next_at: now,
            in_flight: false,
            current: Vec::new(),
            last_success: None,
            last_error: None,
            errors_total: 0,
            last_ok: None,
        })
    }

    /// Its config.
    pub fn config(&self) -> &DiscoverConfig {
        &self.config
    }

    /// Its question.
    pub fn target(&self) -> &DiscoverTarget {
        &self.target
    }

    /// How often it asks.
    pub fn interval(&self) -> Duration {
        self.config.interval.0
    }

    /// A reloaded config of its pool: the same question keeps what it knows (and its
    /// schedule, at most one interval away); another starts over, asked at once.
    pub fn reconfigure(&mut self, config: &DiscoverConfig, now: Timestamp) -> bool {
        let Ok(target) = config.target() else {
            return false;
        };
        if target == self.target && config.resolver == self.config.resolver {
            self.config = config.clone();
            self.next_at = self.next_at.min(now + config.interval.0);
            return true;
        }
        *self = match Discovery::new(config, now) {
            Some(d) => d,
            None => return false,
        };
        true
    }

    /// The question to ask now, if one is due and none is out.
    pub fn poll_query(&mut self, now: Timestamp) -> Option<DnsQuery> {
        if self.in_flight || self.next_at > now {
            return None;
        }
        self.in_flight = true;
        Some(DnsQuery {
            target: self.target.clone(),
            resolver: self.config.resolver,
            timeout: self.interval().min(MAX_RESOLVE_TIME),
        })
    }

    /// When the next question is due (`None` while one is out).
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        (!self.in_flight).then_some(self.next_at)
    }

    /// The result of the question out: the set to apply (`Some` when it names backends and
    /// differs from the current one), and news for the log.
    pub fn handle_result(
        &mut self,
        result: Result<DnsAnswer, DnsError>,
        now: Timestamp,
    ) -> (Option<Vec<Discovered>>, Option<DiscoveryNews>) {
        self.in_flight = false;
        self.next_at = now + self.interval();
        let found = result.map(|a| backends_of(&self.target, &a));
        let outcome = match found {
            Ok(set) if !set.is_empty() => {
                self.last_success = Some(now);
                let n = set.len();
                let changed = set != self.current;
                if changed {
                    self.current = set.clone();
                }
                (changed.then_some(set), Ok(n))
            }
            other => {
                let why = match other {
                    Ok(_) => "empty answer".to_string(),
                    Err(e) => e.to_string(),
                };
                self.errors_total += 1;
                self.last_error = Some((now, why.clone()));
                (None, Err(why))
            }
        };
        let (apply, now_ok) = outcome;
        let key = now_ok.as_ref().map(|_| ()).map_err(Clone::clone);
        let news = (self.last_ok.as_ref() != Some(&key)).then(|| match &now_ok {
            Ok(n) => DiscoveryNews::Resolving(*n),
            Err(why) => DiscoveryNews::Failing(why.clone()),
        });
        self.last_ok = Some(key);
        (apply, news)
    }
}

#[cfg(test)]
mod tests;
