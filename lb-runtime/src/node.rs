//! The node: the one assembly of a running load balancer, in production and in the
//! simulation alike. It binds the listening socket and the admin endpoint, starts the
//! workers (accept loops, each running its own connections), the probe task and the admin
//! server, and then obeys its control channel: [`Control::Reload`] applies a new config,
//! [`Control::Stop`] drains and stops. Generic over [`Net`]; it decides nothing itself
//! (the pool and the flows do), it only wires them to sockets, timers and the channel.
//!
//! ```text
//!   control channel ──► node (control task): reload, stop, start-up log
//!                          │ spawns
//!       ┌──────────────────┼───────────────────────┬─────────────────────┐
//!   worker 0..N        probe task              admin server            (pool + clock:
//!   accept loop        poll_probe → probes     GET /status, POST …      Shared, locked
//!   └ flow tasks       outcomes → pool         → lb_sans_io::admin      only at connect,
//!     (one per client)                                                  close and health)
//! ```

use crate::accept::accept_loop;
use crate::clock::Clock;
use crate::failure_log::FailureRun;
use crate::flow_task::{self, AbortSignal};
use crate::load::{io_message, LoadError, Loaded};
use crate::net::Net;
use crate::shared::Shared;
use crate::{admin, probes};
use lb_sans_io::{Config, FlowId, Pool};
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch, Notify};

/// What a node's controller (the binary's signal handler, or the simulation) asks of it.
// A few messages in a node's life: their size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Control {
    /// Apply a config read again (`Err`: it could not be read or is invalid; the node logs
    /// that and keeps the running config). `cause` names who asked, for the log
    /// (`SIGHUP`).
    Reload {
        /// Who asked, for the log.
        cause: &'static str,
        /// The new config, or why there is none.
        config: Result<Loaded, LoadError>,
    },
    /// Stop accepting, let open connections finish for up to `timeouts.shutdown_grace`,
    /// abort the rest, and return.
    Stop,
}

/// How a node's run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stopped {
    /// Connections still open when the shutdown grace period ran out: each was aborted
    /// (released, counted and logged as any close).
    pub aborted: usize,
}

/// Why a node could not start.
#[derive(Debug)]
pub enum StartError {
    /// The listening address could not be bound.
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        error: io::Error,
    },
    /// The admin address could not be bound.
    Admin {
        /// The address.
        addr: SocketAddr,
        /// Why.
        error: io::Error,
    },
    /// A worker could not be started (no thread or runtime).
    Worker(io::Error),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Listen { addr, error } => {
                write!(f, "cannot listen on {addr}: {}", io_message(error))
            }
            StartError::Admin { addr, error } => write!(
                f,
                "cannot listen on the admin address {addr}: {}",
                io_message(error)
            ),
            StartError::Worker(error) => {
                write!(f, "cannot start a worker: {}", io_message(error))
            }
        }
    }
}

impl std::error::Error for StartError {}

/// A pool's selector built by a test, in place of the configured algorithm's (for
/// deliberately broken builds in the simulation).
#[cfg(feature = "seams")]
pub type SelectorFactory =
    Arc<dyn Fn(&Config) -> Box<dyn lb_sans_io::select::Selector> + Send + Sync>;

/// How to run a node.
#[derive(Clone)]
pub struct NodeOptions {
    /// Accept loops, each with its own connections (the binary: one per core).
    pub workers: usize,
    /// Seeds every random choice of the pool; logged at start so a run can be replayed.
    pub seed: u64,
    /// Replaces the pool's selector (tests only).
    #[cfg(feature = "seams")]
    pub selector: Option<SelectorFactory>,
    /// Deliberate bugs of the pool and the driver (the simulation's broken builds).
    #[cfg(feature = "seams")]
    pub defects: lb_sans_io::defect::Defects,
}

impl NodeOptions {
    /// `workers` accept loops, random choices seeded by `seed`.
    pub fn new(workers: usize, seed: u64) -> NodeOptions {
        NodeOptions {
            workers: workers.max(1),
            seed,
            #[cfg(feature = "seams")]
            selector: None,
            #[cfg(feature = "seams")]
            defects: lb_sans_io::defect::Defects::NONE,
        }
    }
}

/// A load balancer: see the module docs.
pub struct Node {
    shared: Arc<Shared>,
    loaded: Loaded,
    options: NodeOptions,
}

impl Node {
    /// A node for `loaded` (its pool is built now, at the current time; nothing is bound
    /// until [`Node::run`]).
    pub fn new(loaded: Loaded, options: NodeOptions) -> Node {
        let clock = Clock::start();
        let config = &loaded.config;
        #[cfg(feature = "seams")]
        let shared = {
            let mut pool = match &options.selector {
                Some(make) => Pool::new_with_selector(
                    config,
                    &loaded.addrs,
                    options.seed,
                    clock.now(),
                    make(config),
                ),
                None => Pool::new(config, &loaded.addrs, options.seed, clock.now()),
            };
            pool.inject(options.defects);
            // Timeouts the broken builds leave out, for every new flow.
            {
                use lb_sans_io::defect::Defect;
                let mut limits = pool.flow_limits();
                let never = Duration::from_secs(24 * 3600);
                if options.defects.has(Defect::NoIdleTimeout) {
                    limits.idle_timeout = never;
                }
                if options.defects.has(Defect::NoHalfCloseTimeout) {
                    limits.half_close_timeout = never;
                }
                if options.defects.has(Defect::NoConnectTimeout) {
                    limits.connect_timeout = never;
                }
                pool.set_flow_limits(limits);
            }
            Shared::new(pool, clock).with_defects(options.defects)
        };
        #[cfg(not(feature = "seams"))]
        let shared = Shared::new(
            Pool::new(config, &loaded.addrs, options.seed, clock.now()),
            clock,
        );
        Node {
            shared: Arc::new(shared),
            loaded,
            options,
        }
    }

    /// The pool and clock every task of this node shares (to read state in tests).
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Binds, starts everything, and serves until [`Control::Stop`] (or until every sender
    /// of `control` is gone, which means the same). Returns once every connection has been
    /// closed and the workers have ended.
    pub async fn run<N: Net>(
        self,
        net: N,
        mut control: mpsc::UnboundedReceiver<Control>,
    ) -> Result<Stopped, StartError> {
        let Node {
            shared,
            loaded,
            options,
        } = self;
        let config = &loaded.config;
        #[cfg(feature = "seams")]
        if shared.defects.has(lb_sans_io::defect::Defect::FailToStart) {
            return Err(StartError::Worker(io::Error::other(
                "deliberate failure (Defect::FailToStart)",
            )));
        }
        let listener = net
            .bind(config.listen)
            .await
            .map_err(|error| StartError::Listen {
                addr: config.listen,
                error,
            })?;
        let admin_listener = match config.admin {
            None => None,
            Some(addr) => Some(
                net.bind(addr)
                    .await
                    .map_err(|error| StartError::Admin { addr, error })?,
            ),
        };
        let local = net.local_addr(&listener).unwrap_or(config.listen);
        tracing::info!(
            "listening on {local} ({}; config: {}; {} worker thread(s))",
            config.summary(),
            loaded.source,
            options.workers,
        );
        tracing::info!(
            "random choices seeded with {} (`--seed {}` replays them)",
            options.seed,
            options.seed
        );
        for (b, addr) in config.backends.iter().zip(&loaded.addrs) {
            tracing::info!(
                "backend {} at {addr}, weight {}: down until its first health check passes",
                b.name,
                b.weight
            );
        }

        // Tasks that live as long as the node: probes and the admin endpoint. The admin
        // endpoint serves through the drain, so /status shows connections ending.
        let (end_tx, end_rx) = watch::channel(false);
        let ended = move || {
            let mut rx = end_rx.clone();
            async move {
                let _ = rx.wait_for(|e| *e).await;
            }
        };
        net.spawn(probes::run(net.clone(), shared.clone(), ended()));
        if let Some(admin_listener) = admin_listener {
            match net.local_addr(&admin_listener) {
                Ok(addr) => tracing::info!("admin endpoint on http://{addr}/"),
                Err(e) => tracing::warn!("admin endpoint: {}", io_message(&e)),
            }
            let info = lb_sans_io::admin::Info {
                listen: local,
                started: shared.clock.now(),
            };
            net.spawn(admin::serve(
                net.clone(),
                admin_listener,
                shared.clone(),
                info,
                ended(),
            ));
        }

        // The workers.
        let (stop_tx, stop_rx) = watch::channel(None::<Duration>);
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<usize>();
        for i in 0..options.workers {
            let worker = Worker {
                net: net.clone(),
                shared: shared.clone(),
                listener: net.share_listener(&listener).map_err(StartError::Worker)?,
                stop: stop_rx.clone(),
                done: done_tx.clone(),
            };
            net.spawn_worker(
                &format!("lb-worker-{i}"),
                Box::new(move || Box::pin(worker.run())),
            )
            .map_err(StartError::Worker)?;
        }
        // The workers hold the listening socket now: it closes when the last one stops.
        drop(listener);
        drop(done_tx);

        let mut running = loaded.config.clone();
        while let Some(Control::Reload { cause, config }) = control.recv().await {
            reload(&shared, cause, config, &mut running);
        }

        let grace = running.timeouts.shutdown_grace.0;
        let _ = stop_tx.send(Some(grace));
        let mut aborted = 0;
        while let Some(n) = done_rx.recv().await {
            aborted += n;
        }
        let _ = end_tx.send(true);
        tracing::info!(
            "stopped ({aborted} connection(s) aborted at the end of the shutdown grace period)"
        );
        Ok(Stopped { aborted })
    }
}

/// Applies a reloaded config: the pool decides what changes; the fields only a restart
/// changes keep their running values (and a change to them is warned about).
fn reload(shared: &Shared, cause: &str, config: Result<Loaded, LoadError>, running: &mut Config) {
    let loaded = match config {
        Ok(loaded) => loaded,
        Err(e) => {
            tracing::error!("{cause}: reload failed, still serving the previous config: {e}");
            return;
        }
    };
    let new = &loaded.config;
    let summary = shared.with_pool(|pool, now| pool.reconfigure(new, &loaded.addrs, now));
    let removed: Vec<String> = summary
        .removed
        .iter()
        .map(|(name, open)| format!("{name} ({open} open connection(s) drain)"))
        .collect();
    tracing::info!(
        "{cause}: config reloaded from {}: {}; {} backend(s) kept, added: [{}], removed: [{}]",
        loaded.source,
        new.summary(),
        summary.kept,
        summary.added.join(", "),
        removed.join(", ")
    );
    let later = running.restart_needed(new);
    if !later.is_empty() {
        tracing::warn!(
            "{cause}: {} changed; that takes a restart (the running values stay)",
            later.join(", ")
        );
    }
    *running = running.reloaded(loaded.config);
}

/// Counts a worker's live flow tasks, so its drain knows when the last one ends.
#[derive(Default)]
struct TaskCount {
    live: AtomicUsize,
    idle: Notify,
}

impl TaskCount {
    /// Waits until no flow task of this worker is left.
    async fn all_done(&self) {
        loop {
            let idle = self.idle.notified();
            if self.live.load(Ordering::Acquire) == 0 {
                return;
            }
            idle.await;
        }
    }
}

/// Held by each flow task; the last one to go wakes the drain.
struct TaskGuard(Arc<TaskCount>);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        if self.0.live.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// How long aborted flows may take to close (they close as soon as they run: this only
/// bounds the wait should a task not be scheduled).
const ABORT_WAIT: Duration = Duration::from_secs(5);

/// One accept loop and its connections.
struct Worker<N: Net> {
    net: N,
    shared: Arc<Shared>,
    listener: N::Listener,
    /// `Some(grace)` once the node stops.
    stop: watch::Receiver<Option<Duration>>,
    /// Receives, at the end, how many connections this worker aborted.
    done: mpsc::UnboundedSender<usize>,
}

impl<N: Net> Worker<N> {
    /// Accepts until the node stops, then closes the listener, lets open connections finish
    /// for up to the grace period, aborts the rest through their machines, and reports.
    async fn run(self) {
        let Worker {
            net,
            shared,
            listener,
            mut stop,
            done,
        } = self;
        let tasks = Arc::new(TaskCount::default());
        let abort = Arc::new(AbortSignal::default());
        let stopping = {
            let mut stop = stop.clone();
            async move {
                let _ = stop.wait_for(Option::is_some).await;
            }
        };
        let failures = FailureRun::new("accept failed", "accepting again");
        accept_loop(&net, &listener, failures, stopping, |stream, peer| {
            let id = FlowId(shared.next_flow_id());
            tasks.live.fetch_add(1, Ordering::AcqRel);
            let guard = TaskGuard(tasks.clone());
            let (shared, abort, task_net) = (shared.clone(), abort.clone(), net.clone());
            net.spawn(async move {
                flow_task::run(task_net, shared, id, stream, peer, abort).await;
                drop(guard);
            });
        })
        .await;
        drop(listener);
        let grace = stop.borrow_and_update().unwrap_or_default();
        let open = tasks.live.load(Ordering::Acquire);
        if open > 0 {
            tracing::info!(
                "stopped accepting; waiting up to {grace:?} for {open} open connection(s)"
            );
        }
        let mut aborted = 0;
        if tokio::time::timeout(grace, tasks.all_done()).await.is_err() {
            aborted = tasks.live.load(Ordering::Acquire);
            #[cfg(feature = "seams")]
            if shared
                .defects
                .has(lb_sans_io::defect::Defect::StopDropsFlows)
            {
                // The bug: give up on them without telling their machines.
                let _ = done.send(aborted);
                return;
            }
            tracing::warn!("shutdown grace over: aborting {aborted} open connection(s)");
            abort.raise();
            if tokio::time::timeout(ABORT_WAIT, tasks.all_done())
                .await
                .is_err()
            {
                tracing::error!(
                    "{} connection(s) did not close after the abort",
                    tasks.live.load(Ordering::Acquire)
                );
            }
        }
        let _ = done.send(aborted);
    }
}
