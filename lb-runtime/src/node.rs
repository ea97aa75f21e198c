//! The node: the one assembly of a running load balancer, in production and in the
//! simulation alike. It binds the listeners' sockets and the admin endpoint, starts the
//! workers (each runs an accept loop per listener, another on the next worker's share of it
//! to take clients from that worker's queue while it is busier, and its own connections),
//! the probe task and the admin server, and then obeys its control channel:
//! [`Control::Reload`] applies a new config (binding new listeners first, closing removed
//! ones, keeping the socket of every address still configured), [`Control::Stop`] drains
//! and stops. Generic over [`Net`]; it decides nothing itself (the balancer and the flows
//! do), it only wires them to sockets, timers and the channel.
//!
//! ```text
//!   control channel ──► node (control task): reload, stop, start-up log, listener sockets
//!                          │ spawns                 │ Listen commands
//!       ┌──────────────────┼────────────────────────┼──────────┬────────────────────┐
//!   worker 0..N        probe task              admin server    │   (balancer + clock:
//!   accept loop per    poll_probe → probes     GET /status,    │   Shared, locked only
//!   listener           outcomes → balancer     POST … →        │   at accept, route,
//!   └ flow tasks                               lb_sans_io::admin   connect, close, health)
//!     (one per client)
//! ```

use crate::accept::accept_each;
use crate::clock::Clock;
use crate::failure_log::FailureRun;
use crate::flow_task::{self, AbortSignal};
use crate::load::{io_message, LoadError, Loaded};
use crate::net::Net;
use crate::shared::Shared;
use crate::{admin, probes};
use lb_sans_io::spread::{take_from_other, watched_queue};
use lb_sans_io::{Balancer, Config, FlowId, ListenerId};
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
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
    /// A listener's address could not be bound.
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
pub type SelectorFactory = Arc<
    dyn Fn(&lb_sans_io::config::PoolConfig) -> Box<dyn lb_sans_io::select::Selector> + Send + Sync,
>;

/// How to run a node.
#[derive(Clone)]
pub struct NodeOptions {
    /// Workers, each with an accept loop per listener and its own connections (the binary:
    /// one per core).
    pub workers: usize,
    /// Seeds every random choice of the balancer; logged at start so a run can be replayed.
    pub seed: u64,
    /// Replaces each pool's selector (tests only).
    #[cfg(feature = "seams")]
    pub selector: Option<SelectorFactory>,
    /// Deliberate bugs of the balancer and the driver (the simulation's broken builds).
    #[cfg(feature = "seams")]
    pub defects: lb_sans_io::defect::Defects,
    /// `/metrics` shows this process' `process_*` figures (the binary; not the
    /// simulation, whose nodes share one test process).
    pub process_metrics: bool,
    /// The CPU each worker is bound to, one per worker
    /// (`lb_sans_io::spread::worker_cpus`); `None` leaves them to the scheduler.
    pub worker_cpus: Option<Vec<usize>>,
}

impl NodeOptions {
    /// `workers` workers, random choices seeded by `seed`.
    pub fn new(workers: usize, seed: u64) -> NodeOptions {
        NodeOptions {
            workers: workers.max(1),
            seed,
            #[cfg(feature = "seams")]
            selector: None,
            #[cfg(feature = "seams")]
            defects: lb_sans_io::defect::Defects::NONE,
            process_metrics: false,
            worker_cpus: None,
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
    /// A node for `loaded` (its balancer is built now, at the current time; nothing is
    /// bound until [`Node::run`]).
    pub fn new(loaded: Loaded, options: NodeOptions) -> Node {
        let clock = Clock::start();
        let config = &loaded.config;
        #[cfg(feature = "seams")]
        let shared = {
            let mut balancer = match &options.selector {
                Some(make) => Balancer::new_with_selectors(
                    config,
                    &loaded.addrs,
                    options.seed,
                    clock.now(),
                    &|p| make(p),
                ),
                None => Balancer::new(config, &loaded.addrs, options.seed, clock.now()),
            };
            balancer.inject(options.defects);
            Shared::new(balancer, clock).with_defects(options.defects)
        };
        #[cfg(not(feature = "seams"))]
        let shared = Shared::new(
            Balancer::new(config, &loaded.addrs, options.seed, clock.now()),
            clock,
        );
        Node {
            shared: Arc::new(shared),
            loaded,
            options,
        }
    }

    /// The balancer and clock every task of this node shares (to read state in tests).
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
        let listening = shared.with_balancer(|b, _| b.listening());
        let mut bound = Vec::with_capacity(listening.len());
        for &(_, addr) in &listening {
            let socket = net
                .bind(addr)
                .await
                .map_err(|error| StartError::Listen { addr, error })?;
            bound.push(socket);
        }
        let admin_listener = match config.admin {
            None => None,
            Some(addr) => Some(
                net.bind(addr)
                    .await
                    .map_err(|error| StartError::Admin { addr, error })?,
            ),
        };
        for (line, (socket, &(id, addr))) in config
            .summary_lines()
            .iter()
            .zip(bound.iter().zip(&listening))
        {
            let local = net.local_addr(socket).unwrap_or(addr);
            shared.with_balancer(|b, _| b.set_bound(id, local));
            tracing::info!("listening on {local} ({line})");
        }
        let pinned = options.worker_cpus.as_ref().map_or(String::new(), |cpus| {
            let cpus: Vec<String> = cpus.iter().map(|c| c.to_string()).collect();
            format!(
                ", bound to CPUs {} (`--no-cpu-affinity` leaves them unbound)",
                cpus.join(",")
            )
        });
        tracing::info!(
            "config: {}; {} worker thread(s){pinned}",
            loaded.source,
            options.workers
        );
        for warning in config.warnings() {
            tracing::warn!("config: {warning}");
        }
        tracing::info!(
            "random choices seeded with {} (`--seed {}` replays them)",
            options.seed,
            options.seed
        );
        for (pool, b, addr) in loaded.backends() {
            tracing::info!(
                pool = %pool.name,
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
                build: crate::build_info(),
                ..lb_sans_io::admin::Info::new(shared.clock.now())
            };
            net.spawn(admin::serve(
                net.clone(),
                admin_listener,
                shared.clone(),
                info,
                options.process_metrics,
                ended(),
            ));
        }

        // The workers, then the listeners handed to them.
        let (stop_tx, stop_rx) = watch::channel(None::<Duration>);
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<usize>();
        let mut workers = Vec::with_capacity(options.workers);
        // Each worker's count of open connections, made here so that every worker can read
        // the others' (to take clients from a busier one's queue).
        let loads: Vec<Arc<TaskCount>> = (0..options.workers)
            .map(|_| Arc::new(TaskCount::default()))
            .collect();
        for (i, load) in loads.iter().enumerate() {
            let (commands_tx, commands) = mpsc::unbounded_channel();
            let worker = Worker {
                net: net.clone(),
                shared: shared.clone(),
                tasks: load.clone(),
                commands,
                stop: stop_rx.clone(),
                done: done_tx.clone(),
            };
            let cpu = options
                .worker_cpus
                .as_ref()
                .and_then(|cpus| cpus.get(i).copied());
            net.spawn_worker(
                &format!("lb-worker-{i}"),
                cpu,
                Box::new(move || Box::pin(worker.run())),
            )
            .map_err(StartError::Worker)?;
            workers.push(commands_tx);
        }
        drop(done_tx);
        let mut sockets = Sockets {
            open: Vec::new(),
            workers,
            loads,
        };
        for (socket, &(id, addr)) in bound.into_iter().zip(&listening) {
            let name = shared
                .with_balancer(|b, _| b.listener(id).map(|l| l.name.clone()).unwrap_or_default());
            sockets
                .open(&net, socket, id, &name, addr)
                .map_err(StartError::Worker)?;
        }

        let mut running = loaded.config.clone();
        while let Some(Control::Reload { cause, config }) = control.recv().await {
            reload(&net, &shared, &mut sockets, cause, config, &mut running).await;
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

/// A listening socket the node keeps open: the address it was configured with, the
/// listener it accepts for (a reload may hand the address to a listener of another name),
/// and the switch that closes it.
struct OpenSocket {
    addr: SocketAddr,
    /// The address it is bound to (a configured port 0 made concrete).
    bound: SocketAddr,
    /// The name of the listener it accepts for.
    name: String,
    listener: Arc<AtomicU32>,
    close: watch::Sender<bool>,
}

/// The node's listening sockets and the workers that accept on them.
struct Sockets<N: Net> {
    open: Vec<OpenSocket>,
    workers: Vec<mpsc::UnboundedSender<Listen<N>>>,
    /// Each worker's open connections (`loads[i]` is `workers[i]`'s).
    loads: Vec<Arc<TaskCount>>,
}

impl<N: Net> Sockets<N> {
    /// Hands `socket` (bound for listener `id`, named `name`, at its configured `addr`) to
    /// every worker: each gets a share of its own, and a taker of the share of the worker
    /// it watches (`lb_sans_io::spread::watched_queue`). Nothing is handed out unless every
    /// share and taker could be made.
    fn open(
        &mut self,
        net: &N,
        socket: N::Listener,
        id: ListenerId,
        name: &str,
        addr: SocketAddr,
    ) -> io::Result<()> {
        let bound = net.local_addr(&socket).unwrap_or(addr);
        let listener = Arc::new(AtomicU32::new(id.0));
        let (close, closed) = watch::channel(false);
        // Every worker but the last gets a share of the socket, the last the socket itself
        // (closing it while clients wait in its queue would reset them). The workers hold
        // it now: it closes when the last of them lets it go.
        let mut shares = Vec::with_capacity(self.workers.len());
        for _ in 1..self.workers.len() {
            shares.push(net.share_listener(&socket)?);
        }
        shares.push(socket);
        // What each worker accepts from: its own share, and a taker of the share it watches.
        let mut queues: Vec<Option<Queue<N>>> = Vec::with_capacity(shares.len());
        for to in 0..shares.len() {
            let watched = watched_queue(to, shares.len()).map(|from| {
                Ok::<_, io::Error>(Queue::Other {
                    taker: net.taker(&shares[from])?,
                    load: self.loads[from].clone(),
                })
            });
            queues.push(watched.transpose()?);
        }
        for (worker, (share, watched)) in self.workers.iter().zip(shares.into_iter().zip(queues)) {
            for queue in std::iter::once(Queue::Own(share)).chain(watched) {
                let _ = worker.send(Listen {
                    queue,
                    listener: listener.clone(),
                    closed: closed.clone(),
                });
            }
        }
        self.open.push(OpenSocket {
            addr,
            bound,
            name: name.to_string(),
            listener,
            close,
        });
        Ok(())
    }
}

/// Applies a reloaded config. New listen addresses are bound first: if one cannot be, the
/// reload is rejected whole and the running config keeps serving. Then the balancer
/// decides what changes; every address still configured keeps its socket (no client is
/// refused), new ones are handed to the workers, removed ones are closed (their
/// connections drain). The fields only a restart changes keep their running values (and a
/// change to them is warned about).
async fn reload<N: Net>(
    net: &N,
    shared: &Shared,
    sockets: &mut Sockets<N>,
    cause: &str,
    config: Result<Loaded, LoadError>,
    running: &mut Config,
) {
    let loaded = match config {
        Ok(loaded) => loaded,
        Err(e) => {
            tracing::error!("{cause}: reload failed, still serving the previous config: {e}");
            return;
        }
    };
    let new = &loaded.config;
    // Each new listener's socket: its own (same name, same configured address), else one
    // open on that address (a renamed listener; not for port 0, where every listener has
    // its own), else a new one bound now. A bind failure rejects the reload.
    let before = sockets.open.len();
    let mut kept: Vec<Option<usize>> = vec![None; before];
    enum Socket<L> {
        Kept(usize),
        Fresh(L),
    }
    let mut plan: Vec<Socket<N::Listener>> = Vec::with_capacity(new.listeners.len());
    for (k, l) in new.listeners.iter().enumerate() {
        let free = |i: &usize| kept[*i].is_none() && sockets.open[*i].addr == l.listen;
        let own = (0..before).find(|i| free(i) && sockets.open[*i].name == l.name);
        let same_addr = || (0..before).find(|i| free(i) && l.listen.port() != 0);
        match own.or_else(same_addr) {
            Some(i) => {
                kept[i] = Some(k);
                plan.push(Socket::Kept(i));
            }
            None => match net.bind(l.listen).await {
                Ok(socket) => plan.push(Socket::Fresh(socket)),
                Err(e) => {
                    tracing::error!(
                        "{cause}: reload failed, still serving the previous config: cannot listen on {}: {}",
                        l.listen,
                        io_message(&e)
                    );
                    return;
                }
            },
        }
    }
    let (summary, ids) = shared.with_balancer(|b, now| {
        let summary = b.reconfigure(new, &loaded.addrs, now);
        let ids: Vec<Option<ListenerId>> = new
            .listeners
            .iter()
            .map(|l| b.listener_by_name(&l.name))
            .collect();
        (summary, ids)
    });
    // Kept sockets accept for their (maybe renamed) listener; fresh ones are handed out.
    for ((l, socket), id) in new.listeners.iter().zip(plan).zip(ids) {
        let Some(id) = id else { continue };
        match socket {
            Socket::Kept(i) => {
                let open = &mut sockets.open[i];
                open.listener.store(id.0, Ordering::Release);
                open.name = l.name.clone();
            }
            Socket::Fresh(socket) => {
                let local = net.local_addr(&socket).unwrap_or(l.listen);
                shared.with_balancer(|b, _| b.set_bound(id, local));
                tracing::info!("{cause}: listening on {local}");
                if let Err(e) = sockets.open(net, socket, id, &l.name, l.listen) {
                    tracing::error!(
                        "{cause}: cannot hand {local} to the workers: {}",
                        io_message(&e)
                    );
                }
            }
        }
    }
    // The sockets no listener kept close; their connections drain. (Sockets opened above
    // come after the `before` ones.)
    let mut index = 0;
    sockets.open.retain(|s| {
        let keep = index >= before || kept[index].is_some();
        index += 1;
        if !keep {
            let _ = s.close.send(true);
            tracing::info!("{cause}: stopped listening on {}", s.bound);
        }
        keep
    });
    let pools: Vec<String> = summary
        .pools
        .iter()
        .map(|(name, s)| {
            let removed: Vec<String> = s
                .removed
                .iter()
                .map(|(name, open)| format!("{name} ({open} open connection(s) drain)"))
                .collect();
            format!(
                "pool {name}: {} backend(s) kept, added: [{}], removed: [{}]",
                s.kept,
                s.added.join(", "),
                removed.join(", ")
            )
        })
        .collect();
    tracing::info!(
        "{cause}: config reloaded from {}: {}; {}; listeners added: [{}], removed: [{}]; pools added: [{}], removed: [{}]",
        loaded.source,
        new.summary(),
        pools.join("; "),
        summary.listeners_added.join(", "),
        summary
            .listeners_removed
            .iter()
            .map(|(n, open)| format!("{n} ({open} open connection(s) drain)"))
            .collect::<Vec<_>>()
            .join(", "),
        summary.pools_added.join(", "),
        summary
            .pools_removed
            .iter()
            .map(|(n, open)| format!("{n} ({open} open connection(s) drain)"))
            .collect::<Vec<_>>()
            .join(", "),
    );
    for warning in new.warnings() {
        tracing::warn!("{cause}: config: {warning}");
    }
    let later = running.restart_needed(new);
    if !later.is_empty() {
        tracing::warn!(
            "{cause}: {} changed; that takes a restart (the running values stay)",
            later.join(", ")
        );
    }
    *running = running.reloaded(loaded.config);
}

/// Counts a worker's live flow tasks, so its drain knows when the last one ends (and
/// other workers know how busy it is).
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

/// A listening socket for a worker to accept on, until `closed` (a reload removed its
/// listener) or the node stops.
struct Listen<N: Net> {
    /// Whose queue: the worker's own share, or another worker's.
    queue: Queue<N>,
    /// The listener its clients belong to (a reload may change it).
    listener: Arc<AtomicU32>,
    closed: watch::Receiver<bool>,
}

/// Where an accept loop takes its clients from.
enum Queue<N: Net> {
    /// The worker's own share of the listener: every client in its queue is accepted.
    Own(N::Listener),
    /// Another worker's share, through a taker; `load` counts that worker's open
    /// connections. Its clients are taken while [`take_from_other`] says so.
    Other {
        load: Arc<TaskCount>,
        taker: N::Taker,
    },
}

/// One worker: an accept loop per listener (and one on the share of it that it watches),
/// and the connections they accept.
struct Worker<N: Net> {
    net: N,
    shared: Arc<Shared>,
    /// Its open connections (made by the node, which shows them to the other workers).
    tasks: Arc<TaskCount>,
    /// Listening sockets to accept on, as the node binds them.
    commands: mpsc::UnboundedReceiver<Listen<N>>,
    /// `Some(grace)` once the node stops.
    stop: watch::Receiver<Option<Duration>>,
    /// Receives, at the end, how many connections this worker aborted.
    done: mpsc::UnboundedSender<usize>,
}

impl<N: Net> Worker<N> {
    /// Accepts on every listener it is given until the node stops, then lets open
    /// connections finish for up to the grace period, aborts the rest through their
    /// machines, and reports.
    async fn run(self) {
        let Worker {
            net,
            shared,
            tasks,
            mut commands,
            mut stop,
            done,
        } = self;
        let abort = Arc::new(AbortSignal::default());
        let accepting = Arc::new(TaskCount::default());
        let stop_for_loops = stop.clone();
        loop {
            tokio::select! {
                biased;
                _ = stop.wait_for(Option::is_some) => break,
                listen = commands.recv() => match listen {
                    Some(listen) => {
                        accepting.live.fetch_add(1, Ordering::AcqRel);
                        let guard = TaskGuard(accepting.clone());
                        let accept = accept_on(
                            net.clone(),
                            shared.clone(),
                            listen,
                            stop_for_loops.clone(),
                            tasks.clone(),
                            abort.clone(),
                        );
                        net.spawn(async move {
                            accept.await;
                            drop(guard);
                        });
                    }
                    None => break,
                },
            }
        }
        drop(commands);
        // Every accept loop stops (and lets its socket go) before the drain.
        accepting.all_done().await;
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

/// One listener's accept loop in one worker, on its own share or taking from another
/// worker's: each client gets a flow task of this worker.
async fn accept_on<N: Net>(
    net: N,
    shared: Arc<Shared>,
    listen: Listen<N>,
    stop: watch::Receiver<Option<Duration>>,
    tasks: Arc<TaskCount>,
    abort: Arc<AbortSignal>,
) {
    let Listen {
        queue,
        listener,
        mut closed,
    } = listen;
    let stopping = async move {
        let mut stop = stop;
        tokio::select! {
            biased;
            _ = stop.wait_for(Option::is_some) => {}
            _ = closed.wait_for(|c| *c) => {}
        }
    };
    let on_accept = |stream, peer| {
        let id = FlowId(shared.next_flow_id());
        let on = ListenerId(listener.load(Ordering::Acquire));
        tasks.live.fetch_add(1, Ordering::AcqRel);
        let guard = TaskGuard(tasks.clone());
        // Boxed, so tokio's task cell holds a pointer instead of the 1 KB future: spawning
        // moves the future three times and finishing it rewrites the cell's stage, each a
        // copy of the whole future otherwise (1.2k of 32.5k user-space instructions per
        // connection, bench/instructions.sh), and the cell's 128-byte rounding applied to
        // the future (hold.py: 2,330 to 2,118 B per idle connection).
        net.spawn(Box::pin(flow_task::run(
            net.clone(),
            shared.clone(),
            id,
            on,
            stream,
            peer,
            abort.clone(),
            guard,
        )));
    };
    match queue {
        Queue::Own(socket) => {
            let failures = FailureRun::new("accept failed", "accepting again");
            accept_each(|| net.accept(&socket), failures, stopping, on_accept).await;
        }
        Queue::Other { load, taker } => {
            let failures = FailureRun::new(
                "taking a client from another worker's queue failed",
                "taking clients again",
            );
            let take = || {
                take_from_other(
                    tasks.live.load(Ordering::Acquire),
                    load.live.load(Ordering::Acquire),
                )
            };
            accept_each(
                || net.take_while(&taker, take),
                failures,
                stopping,
                on_accept,
            )
            .await;
        }
    }
}
