//! The listener: one address clients connect to. It owns admission (the allow-list, the
//! connection limit and per-client limits), routing (its default pool and its `sni`
//! table) and the client-side settings its flows get, and counts its clients: open, total
//! and rejected by reason.

mod clients;

use crate::config::{Cidr, ListenerConfig};
use crate::defect::{Defect, Defects};
use crate::flow::{FlowLimits, RejectReason};
use crate::histogram::{Histogram, DURATION_BUCKETS};
use crate::ids::PoolId;
use crate::sni::SniRoutes;
use crate::time::Timestamp;
use clients::ClientTable;
pub use clients::MAX_TRACKED_CLIENTS;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// Where a listener sends its clients.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Routes {
    /// The listener's `pool`: clients no `sni` entry takes.
    pub default: Option<PoolId>,
    /// The `sni` table; empty: the listener reads no ClientHello.
    pub sni: SniRoutes<PoolId>,
}

/// One listener's state. See the module docs.
#[derive(Clone, Debug)]
pub struct Listener {
    /// Its name.
    pub name: String,
    /// The address as configured.
    pub listen: SocketAddr,
    /// The address it is bound to, once the driver says (a configured port 0 becomes the
    /// port the system chose).
    pub bound: Option<SocketAddr>,
    config: ListenerConfig,
    routes: Routes,
    allow: Option<Vec<Cidr>>,
    max_connections: u32,
    clients: Option<ClientTable>,
    limits: FlowLimits,
    /// Client connections open now.
    pub open: usize,
    /// Client connections admitted since start.
    pub total: u64,
    rejected: BTreeMap<RejectReason, u64>,
    /// A reload removed it: its socket is closed, its connections drain.
    pub removed: bool,
    /// The lives of its closed client connections, from accept to close.
    pub durations: Histogram,
    defects: Defects,
}

impl Listener {
    /// A listener for `config`, routing as `routes` says.
    pub fn new(config: &ListenerConfig, routes: Routes) -> Listener {
        Listener {
            name: config.name.clone(),
            listen: config.listen,
            bound: None,
            config: config.clone(),
            routes,
            allow: config.allow.clone(),
            max_connections: config.max_connections,
            clients: config.per_client.map(ClientTable::new),
            limits: FlowLimits::for_listener(config),
            open: 0,
            total: 0,
            rejected: BTreeMap::new(),
            removed: false,
            durations: Histogram::new(DURATION_BUCKETS),
            defects: Defects::NONE,
        }
    }

    /// Applies a reloaded config of this listener: admission, routing and the settings of
    /// new flows change; the counters, the open connections and what `per_client` tracks
    /// stay. Returns whether the per-client table was replaced (set or unset), so that the
    /// flows it counted must no longer be counted off it.
    pub fn reconfigure(&mut self, config: &ListenerConfig, routes: Routes) -> bool {
        self.listen = config.listen;
        if config.listen != self.config.listen {
            self.bound = None;
        }
        self.routes = routes;
        self.allow = config.allow.clone();
        self.max_connections = config.max_connections;
        let replaced = match (&mut self.clients, config.per_client) {
            (Some(table), Some(limits)) => {
                table.set_limits(limits);
                false
            }
            (table, limits) => {
                let replaced = table.is_some() || limits.is_some();
                *table = limits.map(ClientTable::new);
                replaced
            }
        };
        self.limits = FlowLimits {
            high_watermark: self.limits.high_watermark,
            low_watermark: self.limits.low_watermark,
            ..FlowLimits::for_listener(config)
        };
        self.config = config.clone();
        replaced
    }

    /// Gives the listener deliberate bugs (the simulation's broken builds).
    pub(crate) fn inject(&mut self, defects: Defects) {
        self.defects = defects;
    }

    /// Its config as last applied.
    pub fn config(&self) -> &ListenerConfig {
        &self.config
    }

    /// Where it sends its clients.
    pub fn routes(&self) -> &Routes {
        &self.routes
    }

    /// The settings its flows start with.
    pub fn limits(&self) -> FlowLimits {
        self.limits
    }

    /// Replaces the settings of its new flows (smaller watermarks, say). A test seam.
    #[cfg(any(test, feature = "seams"))]
    pub fn set_limits(&mut self, limits: FlowLimits) {
        self.limits = limits;
    }

    /// Client connections refused, by reason.
    pub fn rejected(&self, reason: RejectReason) -> u64 {
        self.rejected.get(&reason).copied().unwrap_or(0)
    }

    /// Counts a refusal.
    pub(crate) fn reject(&mut self, reason: RejectReason) -> RejectReason {
        *self.rejected.entry(reason).or_insert(0) += 1;
        reason
    }

    /// A client at `client` connected: admits it (`Ok(counted)`: whether `per_client`
    /// counted it, so its close must be counted off) or says why not, counting the refusal.
    pub(crate) fn admit(&mut self, client: IpAddr, now: Timestamp) -> Result<bool, RejectReason> {
        if let Some(allow) = self
            .allow
            .as_ref()
            .filter(|_| !self.defects.has(Defect::AllowIgnored))
        {
            if !allow.iter().any(|net| net.contains(client)) {
                return Err(self.reject(RejectReason::NotAllowed));
            }
        }
        if self.open >= self.max_connections as usize {
            return Err(self.reject(RejectReason::MaxConnections));
        }
        let mut counted = false;
        if let Some(clients) = self
            .clients
            .as_mut()
            .filter(|_| !self.defects.has(Defect::PerClientIgnored))
        {
            if !clients.admit(client, now) {
                return Err(self.reject(RejectReason::PerClientLimit));
            }
            counted = true;
        }
        self.open += 1;
        self.total += 1;
        Ok(counted)
    }

    /// A client it admitted closed.
    pub(crate) fn release(&mut self, client: IpAddr, counted: bool, lived: Duration) {
        self.open = self.open.saturating_sub(1);
        self.durations.record(lived);
        if let (true, Some(clients)) = (counted, self.clients.as_mut()) {
            clients.release(client);
        }
    }

    /// Checks the per-client table against the open flows it counted (`counted`: client
    /// address and flows open). A test seam.
    #[cfg(any(test, feature = "seams"))]
    pub(crate) fn check_invariants(&self, counted: &BTreeMap<IpAddr, u32>) {
        if let Some(clients) = &self.clients {
            clients.check_invariants();
            for (ip, n) in counted {
                assert_eq!(clients.open(*ip), *n, "per-client count of {ip}");
            }
        }
    }
}

#[cfg(test)]
mod tests;
