//! The state all tasks of one load balancer share: the balancer machine (listeners and
//! pools) behind a lock that is taken only at accept, routing, connect, close, health and
//! admin events (it also holds the settings of new flows, so a reload changes them in one
//! place), and the clock.

use crate::clock::Clock;
use lb_sans_io::discovery::DiscoveryNews;
use lb_sans_io::pool::StateCause;
use lb_sans_io::{BackendId, BackendState, Balancer, PoolEvent, PoolId, Timestamp};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::Notify;

/// Tells the flows connected to one backend that health checks took it down
/// (`on_backend_down: close`): each raise bumps the generation and wakes the watchers.
#[derive(Debug, Default)]
pub struct DownSignal {
    generation: AtomicU64,
    notify: Notify,
}

impl DownSignal {
    /// The number of raises so far.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    fn raise(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.notify.notify_waiters();
    }

    /// Completes at the first raise after `generation`.
    pub async fn raised_after(&self, generation: u64) {
        loop {
            let notified = self.notify.notified();
            if self.generation() != generation {
                return;
            }
            notified.await;
        }
    }
}

/// Shared by the accept loops, every flow task and the probe task.
pub struct Shared {
    balancer: Mutex<Balancer>,
    /// By pool and backend, created as flows ask.
    down_signals: Mutex<BTreeMap<(PoolId, BackendId), Arc<DownSignal>>>,
    /// The driver's clock.
    pub clock: Clock,
    next_flow: AtomicU64,
    probes_wake: Notify,
    /// Deliberate bugs of the driver (the simulation's broken builds).
    #[cfg(feature = "seams")]
    pub defects: lb_sans_io::defect::Defects,
}

impl Shared {
    /// Wraps a balancer.
    pub fn new(balancer: Balancer, clock: Clock) -> Shared {
        Shared {
            balancer: Mutex::new(balancer),
            down_signals: Mutex::new(BTreeMap::new()),
            clock,
            next_flow: AtomicU64::new(0),
            probes_wake: Notify::new(),
            #[cfg(feature = "seams")]
            defects: lb_sans_io::defect::Defects::NONE,
        }
    }

    /// With deliberate bugs of the driver (the simulation's broken builds).
    #[cfg(feature = "seams")]
    pub fn with_defects(mut self, defects: lb_sans_io::defect::Defects) -> Shared {
        self.defects = defects;
        self
    }

    /// A new flow id, unique across every accept loop of this load balancer.
    pub fn next_flow_id(&self) -> u64 {
        self.next_flow.fetch_add(1, Ordering::Relaxed)
    }

    /// Completes when the balancer said its next timeout moved earlier (an admin change or a
    /// reload made a probe due sooner), so the probe task asks it again. A wake while the
    /// task is busy is kept for its next wait.
    pub async fn probes_woken(&self) {
        self.probes_wake.notified().await;
    }

    /// The signal of health checks taking backend `backend` of pool `pool` down.
    pub fn down_signal(&self, pool: PoolId, backend: BackendId) -> Arc<DownSignal> {
        let mut signals = self.down_signals.lock().unwrap_or_else(|p| p.into_inner());
        signals.entry((pool, backend)).or_default().clone()
    }

    fn lock(&self) -> MutexGuard<'_, Balancer> {
        // A panic while holding the lock is a bug already reported; keep serving.
        self.balancer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the balancer at the current time, then logs whatever its pools report
    /// and wakes the probe task if its next timeout moved earlier.
    pub fn with_balancer<R>(&self, f: impl FnOnce(&mut Balancer, Timestamp) -> R) -> R {
        let mut balancer = self.lock();
        let now = self.clock.now();
        let r = f(&mut balancer, now);
        while let Some((pool, event)) = balancer.poll_event() {
            if let PoolEvent::CloseConnections { backend } = event {
                self.down_signal(pool, backend).raise();
            }
            log_pool_event(&balancer, pool, &event);
        }
        if balancer.poll_timeout_moved() {
            self.probes_wake.notify_one();
        }
        r
    }
}

fn log_pool_event(balancer: &Balancer, pool_id: PoolId, event: &PoolEvent) {
    let Some(pool) = balancer.pool(pool_id) else {
        return;
    };
    let pool_name = balancer.pool_name(pool_id);
    match event {
        PoolEvent::Discovery(news) => {
            let target = pool
                .discovery()
                .map(|d| d.target().to_string())
                .unwrap_or_default();
            match news {
                DiscoveryNews::Resolving(n) => tracing::info!(
                    pool = pool_name, discover = %target, backends = n,
                    "pool {pool_name}: {target} resolves to {n} backend(s)"
                ),
                DiscoveryNews::Failing(why) => tracing::warn!(
                    pool = pool_name, discover = %target, reason = %why,
                    "pool {pool_name}: {target} failed ({why}): keeping the last known backends"
                ),
            }
        }
        PoolEvent::Discovered(summary) => {
            let removed: Vec<&str> = summary.removed.iter().map(|(n, _)| n.as_str()).collect();
            tracing::info!(
                pool = pool_name, added = %summary.added.join(","), removed = %removed.join(","), kept = summary.kept,
                "pool {pool_name}: DNS discovery added {} and removed {} backend(s)",
                summary.added.len(), removed.len()
            );
        }
        PoolEvent::CloseConnections { backend } => {
            if let Some(b) = pool.backend(*backend) {
                tracing::warn!(
                    pool = pool_name, backend = %b.name, open = b.active,
                    "backend {} is down: closing its {} open connection(s) (on_backend_down: close)",
                    b.name, b.active
                );
            }
        }
        PoolEvent::BackendStateChanged {
            backend,
            from,
            to,
            cause,
        } => {
            let Some(b) = pool.backend(*backend) else {
                return;
            };
            let by_probe = *cause == StateCause::Probe;
            let cause = match cause {
                StateCause::Probe => "health check",
                StateCause::ClientConnectFailed => "client connects failed",
                StateCause::Admin => "admin request",
                StateCause::Reload => "config reload",
            };
            let message = format!("backend {} is {to}", b.name);
            match to {
                BackendState::Up | BackendState::Draining | BackendState::Disabled => {
                    tracing::info!(
                        pool = pool_name, backend = %b.name, address = %b.addr, from = %from, to = %to, cause, "{message}"
                    )
                }
                BackendState::Down => {
                    // A probe's own failure says why; a client connect's is in its own line.
                    let reason = b
                        .last_check
                        .as_ref()
                        .filter(|_| by_probe)
                        .and_then(|c| Some((c.result.as_ref().err()?.to_string(), c.duration)));
                    match reason {
                        Some((reason, took)) => tracing::warn!(
                            pool = pool_name, backend = %b.name, address = %b.addr, from = %from, to = %to, cause, reason, check_ms = took.as_millis() as u64, "{message}"
                        ),
                        None => tracing::warn!(
                            pool = pool_name, backend = %b.name, address = %b.addr, from = %from, to = %to, cause, "{message}"
                        ),
                    }
                }
            }
        }
    }
}
