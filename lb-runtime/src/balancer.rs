//! The load balancer as one future: the accept loop, the probe task and the flow tasks,
//! with a graceful drain when asked to stop. Generic over [`Net`], so the binary and the
//! simulation run this same code.

use crate::clock::Clock;
use crate::failure_log::FailureRun;
use crate::flow_task;
use crate::load::io_message;
use crate::net::Net;
use crate::probes;
use crate::shared::Shared;
use lb_sans_io::{Config, FlowId, FlowLimits, Pool};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

/// How long to wait before accepting again after `accept` failed (e.g. out of file
/// descriptors), so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(10);

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stopped {
    /// Connections still open when the shutdown grace period ran out (closed by exiting).
    pub abandoned: usize,
}

/// Counts live flow tasks, so a drain knows when the last one ends.
#[derive(Default)]
struct TaskCount {
    live: AtomicUsize,
    idle: Notify,
}

struct TaskGuard(Arc<TaskCount>);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        if self.0.live.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// A running load balancer's handles, for the driver and for tests.
pub struct Balancer {
    shared: Arc<Shared>,
}

impl Balancer {
    /// A load balancer for `config`, whose backend `i` is at `addrs[i]`, with its random
    /// choices drawn from `seed`.
    pub fn new(config: &Config, addrs: &[SocketAddr], seed: u64) -> Balancer {
        let clock = Clock::start();
        let pool = Pool::new(config, addrs, seed, clock.now());
        Balancer {
            shared: Arc::new(Shared::new(pool, clock)),
        }
    }

    /// A load balancer around a pool the caller built, for instance with
    /// [`Pool::new_with_selector`] to inject a policy in tests. `clock` is the clock the pool's
    /// `now` was read from; `limits` are the settings of every new flow.
    pub fn from_pool(mut pool: Pool, clock: Clock, limits: FlowLimits) -> Balancer {
        pool.set_flow_limits(limits);
        Balancer {
            shared: Arc::new(Shared::new(pool, clock)),
        }
    }

    /// The shared state (pool and clock), e.g. to read counters.
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Serves `listener` until `shutdown` completes, then stops accepting (closing the
    /// listener), lets open connections finish for up to `grace`, and returns. Runs the
    /// health probes meanwhile. Everything runs on the current runtime (the simulation's
    /// host, or a single-runtime binary).
    pub async fn serve<N: Net>(
        &self,
        net: N,
        listener: N::Listener,
        grace: Duration,
        shutdown: impl Future<Output = ()>,
    ) -> Stopped {
        let (stop_tx, mut stop_rx) = watch::channel(false);
        net.spawn({
            let (net, this) = (net.clone(), self.clone_handle());
            async move {
                this.run_probes(net, async move {
                    let _ = stop_rx.wait_for(|s| *s).await;
                })
                .await
            }
        });
        let stopped = self.accept_loop(net, listener, grace, shutdown).await;
        let _ = stop_tx.send(true);
        stopped
    }

    /// Another handle on the same load balancer (for other threads or tasks).
    pub fn clone_handle(&self) -> Balancer {
        Balancer {
            shared: self.shared.clone(),
        }
    }

    /// Runs the health probes the pool asks for until `stop` completes.
    pub async fn run_probes<N: Net>(&self, net: N, stop: impl Future<Output = ()>) {
        probes::run(net, self.shared.clone(), stop).await;
    }

    /// Accepts clients on `listener` and runs their flows on the current runtime until
    /// `shutdown` completes; then closes the listener and waits up to `grace` for this
    /// loop's open connections. Several accept loops (one per thread, on clones of one
    /// listening socket) may share a load balancer.
    pub async fn accept_loop<N: Net>(
        &self,
        net: N,
        listener: N::Listener,
        grace: Duration,
        shutdown: impl Future<Output = ()>,
    ) -> Stopped {
        let tasks = Arc::new(TaskCount::default());
        let mut failures = FailureRun::new("accept failed", "accepting again");
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                biased;
                _ = &mut shutdown => break,
                accepted = net.accept(&listener) => match accepted {
                    Ok((stream, peer)) => {
                        if let Some(line) = failures.succeeded(Instant::now()) {
                            tracing::info!("{line}");
                        }
                        let id = FlowId(self.shared.next_flow_id());
                        tasks.live.fetch_add(1, Ordering::AcqRel);
                        let guard = TaskGuard(tasks.clone());
                        let shared = self.shared.clone();
                        let task_net = net.clone();
                        net.spawn(async move {
                            flow_task::run(task_net, shared, id, stream, peer).await;
                            drop(guard);
                        });
                    }
                    Err(e) => {
                        if let Some(line) = failures.failed(&io_message(&e), Instant::now()) {
                            tracing::warn!("{line}");
                        }
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                    }
                },
            }
        }
        drop(listener);
        let open = tasks.live.load(Ordering::Acquire);
        if open > 0 {
            tracing::info!(
                "stopped accepting; waiting up to {:?} for {open} open connection(s)",
                grace
            );
        }
        let drained = tokio::time::timeout(grace, async {
            loop {
                let idle = tasks.idle.notified();
                if tasks.live.load(Ordering::Acquire) == 0 {
                    break;
                }
                idle.await;
            }
        })
        .await;
        let abandoned = if drained.is_ok() {
            0
        } else {
            tasks.live.load(Ordering::Acquire)
        };
        if abandoned > 0 {
            tracing::warn!("shutdown grace over: closing {abandoned} open connection(s)");
        }
        Stopped { abandoned }
    }
}
