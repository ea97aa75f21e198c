//! The state all tasks of one load balancer share: the pool machine behind a lock that is
//! taken only at connect, close, health and admin events (it also holds the settings of new
//! flows, so a reload changes them in one place), and the clock.

use crate::clock::Clock;
use lb_sans_io::pool::StateCause;
use lb_sans_io::{BackendId, BackendState, Pool, PoolEvent, Timestamp};
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

/// Shared by the accept loop, every flow task and the probe task.
pub struct Shared {
    pool: Mutex<Pool>,
    /// By backend id, created as flows ask.
    down_signals: Mutex<Vec<Arc<DownSignal>>>,
    /// The driver's clock.
    pub clock: Clock,
    next_flow: AtomicU64,
    probes_wake: Notify,
    /// Deliberate bugs of the driver (the simulation's broken builds).
    #[cfg(feature = "seams")]
    pub defects: lb_sans_io::defect::Defects,
}

impl Shared {
    /// Wraps a pool.
    pub fn new(pool: Pool, clock: Clock) -> Shared {
        Shared {
            pool: Mutex::new(pool),
            down_signals: Mutex::new(Vec::new()),
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

    /// Completes when the pool said its next timeout moved earlier (an admin change or a
    /// reload made a probe due sooner), so the probe task asks it again. A wake while the
    /// task is busy is kept for its next wait.
    pub async fn probes_woken(&self) {
        self.probes_wake.notified().await;
    }

    /// The signal of backend `backend`'s health checks taking it down.
    pub fn down_signal(&self, backend: BackendId) -> Arc<DownSignal> {
        let mut signals = self.down_signals.lock().unwrap_or_else(|p| p.into_inner());
        let i = backend.index();
        if signals.len() <= i {
            signals.resize_with(i + 1, Default::default);
        }
        signals[i].clone()
    }

    fn lock(&self) -> MutexGuard<'_, Pool> {
        // A panic while holding the lock is a bug already reported; keep serving.
        self.pool.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the pool at the current time, then logs whatever the pool reports and
    /// wakes the probe task if the pool's next timeout moved earlier.
    pub fn with_pool<R>(&self, f: impl FnOnce(&mut Pool, Timestamp) -> R) -> R {
        let mut pool = self.lock();
        let now = self.clock.now();
        let r = f(&mut pool, now);
        while let Some(event) = pool.poll_event() {
            if let PoolEvent::CloseConnections { backend } = event {
                self.down_signal(backend).raise();
            }
            log_pool_event(&pool, &event);
        }
        if pool.poll_timeout_moved() {
            self.probes_wake.notify_one();
        }
        r
    }
}

fn log_pool_event(pool: &Pool, event: &PoolEvent) {
    match event {
        PoolEvent::CloseConnections { backend } => {
            if let Some(b) = pool.backend(*backend) {
                tracing::warn!(
                    backend = %b.name, open = b.active,
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
                        backend = %b.name, address = %b.addr, from = %from, to = %to, cause, "{message}"
                    )
                }
                BackendState::Down => {
                    // A probe's own failure says why; a client connect's is in its own line.
                    let reason = b
                        .last_check
                        .as_ref()
                        .filter(|_| by_probe)
                        .and_then(|c| c.result.as_ref().err())
                        .map(ToString::to_string);
                    match reason {
                        Some(reason) => tracing::warn!(
                            backend = %b.name, address = %b.addr, from = %from, to = %to, cause, reason, "{message}"
                        ),
                        None => tracing::warn!(
                            backend = %b.name, address = %b.addr, from = %from, to = %to, cause, "{message}"
                        ),
                    }
                }
            }
        }
    }
}
