//! Reloading the config into a running pool: which backends stay (with their health,
//! counters, admin state and open connections), which are new, and which drain away.
//!
//! A backend keeps its [`BackendId`] for the pool's whole life, because open flows name
//! their backend by id: a removed backend stays in the list, marked removed, and a new one
//! is appended (or a removed one with the same name and address comes back in place).

use super::{Backend, CheckSettings, Pool, StateCause};
use crate::config::PoolConfig;
use crate::defect::{Defect, Defects};
use crate::discovery::Discovery;
use crate::flow::PoolLimits;
use crate::health::HealthCounter;
use crate::ids::BackendId;
use crate::select::{selector_for, Maglev, MaglevTable, Selector, SelectorSpec};
use crate::time::Timestamp;
use crate::Algorithm;
use std::net::SocketAddr;

/// What a reload changed, for the log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReloadSummary {
    /// Backends the new config added (or changed the address of), by name.
    pub added: Vec<String>,
    /// Backends the new config dropped (or changed the address of), by name, with the
    /// connections still open to them (they drain).
    pub removed: Vec<(String, u32)>,
    /// Backends kept as they were (health, counters, admin state, open connections).
    pub kept: usize,
}

impl Pool {
    /// Applies a reloaded `config` (already validated), whose backend `i` is at `addrs[i]`.
    ///
    /// - A backend with the same name and address as before is kept: its health, counters,
    ///   admin state and open connections carry over; its weight and connection limit
    ///   follow the new config.
    /// - A backend the config no longer has (or whose address changed) is removed: it gets
    ///   no new connections and no probes, its open connections continue, and it shows as
    ///   `draining` until they end ([`StateCause::Reload`]).
    /// - A new backend starts as one does at startup (down until its first probe passes,
    ///   unless `start_up`), probed within a tenth of the interval.
    /// - Algorithm, health check settings, `retries`, the connect timeout and `slow_start`
    ///   apply from now on (open flows keep the settings they started with). With the same
    ///   algorithm the selector carries over (round-robin turns go on where they were,
    ///   latency averages are kept): a reload, however frequent, does not send the next
    ///   connections to the first backends. A new algorithm starts afresh, and `hash`
    ///   rebuilds its table from the backends as they now are.
    ///
    /// With `discover`: the backends discovered so far stay (the same question keeps what
    /// it knows; another is asked at once and its answer applied when it comes).
    ///
    /// # Panics
    /// If `addrs` and `config.backends` differ in length (a driver bug).
    pub fn reconfigure(
        &mut self,
        config: &PoolConfig,
        addrs: &[SocketAddr],
        now: Timestamp,
    ) -> ReloadSummary {
        assert_eq!(
            addrs.len(),
            config.backends.len(),
            "one address per backend"
        );
        self.config = config.clone();
        self.static_addrs = addrs.to_vec();
        let now = self.observe(now);
        match (&config.discover, &mut self.discovery) {
            (Some(d), Some(current)) => {
                if !current.reconfigure(d, now) {
                    self.discovery = None;
                }
            }
            (Some(d), None) => self.discovery = Discovery::new(d, now),
            (None, _) => self.discovery = None,
        }
        let (merged, merged_addrs) = self.merged();
        self.apply_config(&merged, &merged_addrs, now)
    }

    /// Applies a whole backend set (static and discovered) and the pool's settings.
    pub(super) fn apply_config(
        &mut self,
        config: &PoolConfig,
        addrs: &[SocketAddr],
        now: Timestamp,
    ) -> ReloadSummary {
        assert_eq!(
            addrs.len(),
            config.backends.len(),
            "one address per backend"
        );
        let now = self.observe(now);
        let hc = &config.health_check;
        let interval = hc.interval.0;
        let mut summary = ReloadSummary::default();
        let find = |backends: &[Backend], name: &str, addr: SocketAddr| {
            backends
                .iter()
                .position(|b| b.name == name && b.addr == addr)
        };
        // Backends that stay or come back.
        let mut configured = vec![false; self.backends.len()];
        for (b, &addr) in config.backends.iter().zip(addrs) {
            match find(&self.backends, &b.name, addr) {
                Some(i) => {
                    configured[i] = true;
                    let old = &mut self.backends[i];
                    old.weight = b.weight;
                    old.max_connections = b.max_connections;
                    old.health.set_thresholds(hc.rise, hc.fall);
                    if self.defects.has(Defect::ReloadForgetsHealth) {
                        old.health = HealthCounter::new(hc.rise, hc.fall, false);
                    }
                    if old.removed {
                        // It was not checked while removed: it starts again like a new
                        // backend (down until its first check, unless `start_up`), keeping
                        // its counters and its id.
                        let before = old.state();
                        old.removed = false;
                        old.health = HealthCounter::new(hc.rise, hc.fall, hc.start_up);
                        let after = old.state();
                        old.note_change(before, after, now);
                        old.last_check = None;
                        old.next_probe_at = now;
                        summary.added.push(b.name.clone());
                    } else {
                        old.next_probe_at = old.next_probe_at.min(now + interval);
                        summary.kept += 1;
                    }
                }
                None => {
                    configured.push(true);
                    summary.added.push(b.name.clone());
                    let first_probe = now + self.rng.duration_below(interval / 10);
                    self.backends
                        .push(Backend::new(b, addr, hc, now, first_probe));
                }
            }
        }
        // Backends that go.
        let mut newly_removed = Vec::new();
        for (i, keep) in configured.iter().enumerate() {
            let b = &mut self.backends[i];
            if !keep && !b.removed && !self.defects.has(Defect::ReloadKeepsRemoved) {
                let before = b.state();
                b.removed = true;
                b.probe_in_flight = None;
                summary.removed.push((b.name.clone(), b.active));
                newly_removed.push((i, before));
            }
        }
        // The same algorithm keeps its selector (round-robin turns, latency averages: ids
        // are stable, and selectors grow with the backend list); `hash` rebuilds its
        // table from the backends as they now are.
        let keep_selector = self.algorithm == config.algorithm
            && config.algorithm != Algorithm::Hash
            && !self.defects.has(Defect::ReloadRestartsTurns);
        self.algorithm = config.algorithm;
        self.checks = CheckSettings {
            check: hc.clone(),
            proxy: config.proxy_protocol,
            interval,
            timeout: hc.timeout.0,
        };
        self.slow_start = config.slow_start.map(|d| d.0).filter(|d| !d.is_zero());
        self.on_backend_down = config.on_backend_down;
        self.limits = PoolLimits::from_pool(config);
        if !keep_selector {
            self.selector = build_selector(self.algorithm, &self.backends, self.defects);
        }
        if self.slow_start.is_none() {
            for &i in &self.ramping {
                self.backends[i].ramp_since = None;
            }
            self.ramping.clear();
        }
        self.views.clear();
        for i in 0..self.backends.len() {
            let view = self.view_of(i, now);
            self.views.push(view);
        }
        for (i, before) in newly_removed {
            self.push_change(BackendId(i as u32), before, StateCause::Reload);
        }
        self.timeout_moved = true;
        summary
    }
}

impl Pool {
    /// A reload removed the whole pool: every backend drains as a removed one does (no new
    /// connections, no probes, open connections continue).
    pub fn retire(&mut self, now: Timestamp) {
        let now = self.observe(now);
        // Nothing is asked of DNS for a pool that is gone.
        self.discovery = None;
        for i in 0..self.backends.len() {
            let b = &mut self.backends[i];
            if !b.removed {
                let before = b.state();
                b.removed = true;
                b.probe_in_flight = None;
                b.ramp_since = None;
                self.push_change(BackendId(i as u32), before, StateCause::Reload);
            }
        }
        self.ramping.clear();
        for i in 0..self.backends.len() {
            self.views[i] = self.view_of(i, now);
        }
        self.timeout_moved = true;
    }
}

/// The selector for `algorithm` over the pool's backends (indexed by id). Removed backends
/// are never eligible, so most selectors need only the count; Maglev's table is built over
/// the configured backends alone, so it is the table a fresh start with this config builds.
pub(super) fn build_selector(
    algorithm: Algorithm,
    backends: &[Backend],
    defects: Defects,
) -> Box<dyn Selector> {
    if algorithm == Algorithm::Hash {
        // Sorted by name: instances that know the same backends (from the same config, or
        // the same DNS answer in whatever order) build the same table.
        let mut ids: Vec<u32> = (0..backends.len() as u32)
            .filter(|&i| !backends[i as usize].removed)
            .collect();
        if !defects.has(Defect::DiscoveryUnsorted) {
            ids.sort_by(|&a, &b| backends[a as usize].name.cmp(&backends[b as usize].name));
        }
        let live: Vec<&Backend> = ids.iter().map(|&i| &backends[i as usize]).collect();
        let names: Vec<String> = live.iter().map(|b| b.name.clone()).collect();
        let weights: Vec<u32> = live.iter().map(|b| b.weight).collect();
        let table = MaglevTable::build(&names, &weights, MaglevTable::size_for(names.len()));
        return Box::new(Maglev::new(table.with_ids(&ids)));
    }
    let names: Vec<String> = backends.iter().map(|b| b.name.clone()).collect();
    let weights: Vec<u32> = backends.iter().map(|b| b.weight).collect();
    selector_for(
        algorithm,
        &SelectorSpec {
            names: &names,
            weights: &weights,
        },
    )
}
