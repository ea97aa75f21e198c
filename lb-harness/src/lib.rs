//! A fuzzing and property-testing harness for the state machines of `lb-sans-io`.
//!
//! One harness serves three callers, so they all check the same invariants:
//!
//! - the cargo-fuzz targets in `fuzz/` (one-liners calling [`fuzz_events`],
//!   [`fuzz_config`], [`fuzz_admin`] and [`fuzz_client_hello`]),
//! - the proptest properties in `tests/harness_props.rs`, which generate [`Scenario`]s,
//! - the replay test in `tests/harness_replay.rs`, which runs every file of the fuzz
//!   corpus and every crash kept as a regression, on stable `cargo test`.
//!
//! A [`Scenario`] is a config and a sequence of driver events ([`Op`]). The config is the
//! flat one of one listener and one pool, or (for a quarter of the seeds,
//! [`ConfigSpec::routes_by_name`]) two listeners and two or three pools: a plain listener
//! on pool 0, and one that routes TLS clients by the server name of their ClientHello
//! (`sni` patterns from [`SNI_PATTERNS`], with or without a default pool), each with or
//! without an `allow` list. Clients of the second kind send a ClientHello first, written
//! by the harness ([`hello`]): naming a server or not, whole or cut short, in one record or
//! many, read in pieces of any size; or something else. [`run`] performs it with a model
//! driver that follows the driver contract (drain every output after every input, queue
//! `Write`/`Shutdown` per socket, stop reading a paused side, route a flow when it asks,
//! release a flow after its `Close`, wake up for due timers) against the
//! [`lb_sans_io::Balancer`] (listeners and pools) and the flows, and checks after every
//! event:
//!
//! - bytes written to a side are, in order, the bytes read from the other side
//!   ([`Rule::ByteOrder`]); no write after a side's shutdown, a shutdown only after the
//!   other side's FIN and all bytes before it, nothing to the backend before it connected;
//! - no action after a flow's `Close`, none for an event about a closed flow, and balancer
//!   calls for unknown flows change nothing ([`Rule::ActionAfterClose`],
//!   [`Rule::UnknownFlow`]);
//! - a flow goes to the pool its route names, by the harness's own model of routing: a
//!   plain listener's pool at accept; on an `sni` listener, once its whole ClientHello is
//!   read (not before, and at once), or at the client's FIN or `timeouts.client_hello`,
//!   the pool of the exact server name, else of the longest matching `*.suffix`, else the
//!   listener's pool, else it is refused with `no_route`; the name it read is the one the
//!   harness wrote (lower case, no trailing dot, none when it is not a host name), however
//!   the bytes were split; and every `Connect` goes to a backend of that pool
//!   ([`Rule::Route`]);
//! - clients are refused exactly when the listener's `allow` list leaves them out, its
//!   `max_connections` are open, or their address has `per_client.max_connections` open on
//!   it, in that order ([`Rule::ConnectionLimit`]);
//! - a `Connect` goes to a backend that is up, enabled (not draining or disabled, by the
//!   driver's own record of the admin events it gave), under its connection limit, eligible
//!   when the event came, not tried yet by this flow, within `retries`
//!   ([`Rule::ConnectTarget`]), and a flow is refused or given up only when no eligible
//!   untried backend was left ([`Rule::MissedAlternative`]);
//! - admin changes ([`Op::Admin`]): the balancer accepts exactly the configured backends
//!   of its pools, and an unknown pool or backend id changes nothing; each backend's admin state is the last one the driver set,
//!   its state is `draining` / `disabled` accordingly and its health otherwise, and its
//!   eligibility is healthy ∧ enabled ∧ under its limit; a disabled backend gets no new
//!   probe, one that leaves `disabled` is probed at once unless a probe of it is still
//!   running; state changes from admin events, and only those, have cause `Admin`
//!   ([`Rule::Admin`]);
//! - a local connect failure (this host out of descriptors or ports), of a flow or of a
//!   probe, leaves the backends' states and failure counts as they were
//!   ([`Rule::LocalFailure`]);
//! - each backend's health, and its counts of passed and failed probes and of failed
//!   connects, equal the harness's own model of the checks it gave the pool: probe results
//!   of the probe the pool waits for (stale and unknown ones count for nothing, as do
//!   probes that could not run), probe timeouts (the pool's timeout passing a probe's
//!   deadline is a failed check), and client connects that failed or timed out by the
//!   backend's fault (passive health), under `rise`, `fall` and `start_up`: a backend not
//!   checked yet goes up on its first pass, one leaving `disabled` is unchecked again
//!   ([`Rule::Health`]);
//! - each backend's active count equals the open flows holding it, each pool's open flows
//!   the flows routed to it, each listener's the flows it admitted
//!   ([`Rule::ActiveCount`], plus [`lb_sans_io::Balancer::check_invariants`]);
//! - the backlog equals bytes read and not yet written, a side is paused exactly when the
//!   actions said so, a side is not left paused at or below the low watermark, and the
//!   backlog never exceeds the high watermark by more than one read ([`Rule::Backpressure`],
//!   [`Rule::Watermark`]); a client is never paused while its ClientHello is read (the
//!   reader answers within 16 KiB, so its backlog is bounded by that plus one read);
//! - `poll_timeout` is never before the last `now`, is later than `now` once a due timeout
//!   fired, is absent only when every backend is disabled and no probe is running, and early
//!   timeouts change nothing ([`Rule::Timer`]);
//! - a flow whose both sides sent FIN and whose bytes are all written has closed, an open
//!   flow is always reading its ClientHello, connecting or connected, and at the end, once
//!   the peers finish and time runs, every flow closes ([`Rule::Liveness`]);
//! - bounded output per input ([`Rule::Unbounded`]), bounded sizes everywhere (at most
//!   [`MAX_OPS`] events, [`MAX_FLOWS`] flows, reads under 64 KiB);
//! - close reasons fit the event ([`Rule::CloseReason`]); pool events report every state
//!   change and probes name real backends ([`Rule::PoolEvents`]);
//! - latency samples (the connect time, the time to first byte) are for the flow's own
//!   backend, the time to first byte once and only with `report_latency`, and none is
//!   longer than the flow ([`Rule::Latency`]).
//!
//! The model driver also delivers, when the event says `force`, what a faithful driver
//! could not: reads while paused, reads and FINs after FIN or before the backend
//! connected, over-reported writes. The machines must survive those; the quantitative
//! checks they void (backlog equality, the watermark bound) are then skipped for that flow.
//!
//! The `client_hello` target ([`check_client_hello_bytes`]) checks the ClientHello reader
//! alone on arbitrary bytes (no panic, `Incomplete` only under 16 KiB, no answer taken
//! back by more bytes) and a flow reading the same bytes in three pieces against it.
//!
//! Hash configs run Maglev with a small table (the smallest prime of at least 257 in which
//! every backend owns a slot) instead of 65,537 slots: the same algorithm, built in
//! microseconds instead of milliseconds, which was most of a fuzz run's time.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod admin_check;
mod client_hello_check;
mod config_check;
mod driver;
mod health_model;
pub mod hello;
mod scenario;

pub use admin_check::{
    admin_outcome, check_admin_bytes, check_admin_bytes_with, AdminMutation, AdminOutcome,
};
pub use client_hello_check::{
    check_client_hello_bytes, check_client_hello_bytes_with, client_hello_outcome,
    ClientHelloMutation,
};
pub use config_check::{check_config_bytes, check_config_bytes_with, ConfigMutation};
pub use scenario::{
    available_algorithms, backend_addr, client_addr, pool_backend_addr, AdminSel, Advance, Amount,
    AttemptSel, BackendSel, BackendSpec, Built, ConfigSpec, ListenerModel, Op, ProbeSel, Scenario,
    SideSel, StrayCall, Topology, MAX_BACKENDS, MAX_FLOWS, MAX_HIGH_WATERMARK, MAX_OPS, MAX_READ,
    SNI_PATTERNS,
};

use lb_sans_io::select::Selector;
use std::fmt;

/// Which invariant a run broke.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    /// Written bytes differ from, or run ahead of, the bytes read from the other side; or
    /// a write or shutdown came at a time it must not; or the flow reported more bytes
    /// forwarded to the pool than it wrote, or an empty report.
    ByteOrder,
    /// An action after `Close`, or for an event about a closed flow.
    ActionAfterClose,
    /// A pool call about an unknown flow changed the pool.
    UnknownFlow,
    /// A `Connect` went to a backend it must not go to.
    ConnectTarget,
    /// A flow was refused or given up while an eligible, untried backend was left.
    MissedAlternative,
    /// Active counts or open flows disagree between pool, flows and actions.
    ActiveCount,
    /// A connection limit was exceeded, or a flow refused below it.
    ConnectionLimit,
    /// Pause state or backlog disagree with the actions and the bytes.
    Backpressure,
    /// The backlog is over the high watermark by more than one read, or a side stays paused
    /// when it should read again.
    Watermark,
    /// A deadline in the past, one that does not move on after it fired, or an early timeout
    /// that changed something.
    Timer,
    /// A flow that should have closed is open, or an open flow waits for nothing.
    Liveness,
    /// A close reason the event cannot cause, or a wrong detail in it.
    CloseReason,
    /// An input produced more outputs than any legitimate one can.
    Unbounded,
    /// Pool events or probes that do not match the pool.
    PoolEvents,
    /// A latency sample for the wrong backend, twice, or longer than the flow.
    Latency,
    /// A config was accepted but does not round-trip, its text is not exactly one JSON
    /// value, or validation disagrees with parsing.
    ConfigRoundTrip,
    /// An admin change was refused or accepted wrongly, or a backend's admin state, the
    /// state, eligibility or probing it implies, disagree with the admin events given.
    Admin,
    /// A local connect failure (this host out of resources) changed the backend's health
    /// or its failure count.
    LocalFailure,
    /// An admin request panicked, parsed differently in pieces, got a malformed answer, or
    /// changed the pool without being a `POST` action.
    AdminHttp,
    /// A backend's health, or its count of passed and failed probes or of failed connects,
    /// differs from the harness's model of the check results it gave the pool (`rise`,
    /// `fall`, `start_up`; probe timeouts fail, probes that could not run count for
    /// nothing).
    Health,
    /// A flow was routed to another pool than its route names (the exact server name, else
    /// the longest `*.suffix`, else the listener's pool, else refused with `no_route`), or
    /// connected to a backend of another pool; or it asked to be routed before its whole
    /// ClientHello was read, or not once it was (or once the client's FIN or
    /// `timeouts.client_hello` ended it); or a ClientHello read in pieces named another
    /// server than read whole; or [`check_client_hello_bytes`] found the reader
    /// inconsistent.
    Route,
}

/// A broken invariant: which rule, at which event, and what was seen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The index of the event in [`Scenario::ops`] (the number of events for the final
    /// phase).
    pub step: usize,
    /// The rule broken.
    pub rule: Rule,
    /// What was seen.
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} broken at event {}: {}",
            self.rule, self.step, self.detail
        )
    }
}

impl std::error::Error for Violation {}

/// A deliberate fault between the machines and the checks, so tests can show each check
/// fires: a stand-in for a broken machine, since the machines themselves are not edited for
/// it. Faults sit in the actions the driver receives, in the calls a flow makes to the pool
/// (every one goes through the harness), in what the driver reads back (deadlines, pool
/// events) or gives (probe results, ids), and, for rise and fall, in the health model (a
/// model one off from the pool is the same disagreement as a pool one off from the model).
/// `tests/harness_mutations.rs` shows each rule fired by one of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mutation {
    /// Drop every `Close` action.
    DropClose,
    /// Drop every `ResumeRead` action.
    DropResume,
    /// Rewrite every `Connect` to name backend 0.
    RedirectConnect,
    /// Deliver the first `Write` after the second one.
    SwapWrites,
    /// A reset is passed on at once, before the bytes already read from the reset side
    /// reached the other side (the data loss of Envoy's issue 45190).
    EagerReset,
    /// The driver keeps reading paused sides and the harness does not excuse it.
    ReadWhilePaused,
    /// Admin changes never reach the pool (a pool that ignores them); the driver still
    /// records them.
    DropAdmin,
    /// Local connect failures reach the flow as the backend's fault, and probes that could
    /// not run reach the pool as failed.
    BlameLocal,
    /// Every `Close` is delivered twice (a flow that closes again, say from a timer after a
    /// reset).
    DoubleClose,
    /// Pool calls about flow ids the pool never issued reach it with the id cut to its low
    /// 32 bits (a pool that keys its flows by a truncated id), so they land on real flows.
    TruncateFlowIds,
    /// A flow's `close_flow` never reaches the pool (a flow that forgets to give its seat
    /// back): the pool keeps counting the flow and its backend slot.
    LeakFlow,
    /// The pool refuses a client once one more would reach `max_connections`, one below the
    /// limit (`>=` where `>` was meant).
    LimitOffByOne,
    /// Flow deadlines reach the driver a millisecond early (a timer armed from a stale
    /// clock): the driver wakes before the flow has anything to do.
    EarlyDeadline,
    /// A reset's close reason names the other side.
    SwapResetSide,
    /// Every `Write` is split into one-byte writes (a flow that forwards byte by byte): the
    /// right bytes, but one action per byte read.
    SplitWrites,
    /// The pool's state-change events are lost on the way to the driver.
    DropEvents,
    /// Latency samples reach the pool for the next backend over (an off-by-one index).
    LatencyWrongBackend,
    /// Probe results never reach the pool (a pool that ignores them); the driver still
    /// models them.
    IgnoreProbeResults,
    /// Client connects that failed by the backend's fault reach the pool as local failures
    /// (a pool without passive health).
    NoPassiveHealth,
    /// The health model needs `rise + 1` passes: a stand-in for a pool that brings a backend
    /// up one passed check early.
    RiseOffByOne,
    /// The health model needs `fall + 1` failures: a stand-in for a pool that takes a
    /// backend down one failed check early.
    FallOffByOne,
    /// The balancer routes every client as if its ClientHello named no server (a listener
    /// that ignores `sni`): to the listener's pool, or refused.
    SniIgnored,
    /// The balancer is given the server name the client's first read alone names (none
    /// when that read is not a whole ClientHello): a stand-in for a flow that judges the
    /// first TCP segment instead of everything read so far.
    FirstSegmentOnly,
    /// Every `Connect` names the address of the backend of the same index in the next pool
    /// (a driver that looks backends up in the wrong pool).
    ConnectOtherPool,
    /// The listeners' `allow` lists are not enforced (`Defect::AllowIgnored`).
    AllowIgnored,
}

/// How [`run_with`] sets the machines up.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// Replaces the configured algorithm of every pool (given its backend count), via
    /// [`lb_sans_io::Balancer::new_with_selectors`].
    pub selector: Option<fn(usize) -> Box<dyn Selector>>,
    /// A fault to inject between the machines and the checks.
    pub mutation: Option<Mutation>,
}

/// What a run went through, to show the generators reach every outcome.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Flows accepted (refused ones included).
    pub flows: usize,
    /// `Connect` actions.
    pub connects: usize,
    /// `Connect` actions after a failed attempt.
    pub retries: usize,
    /// Bytes in `Write` actions.
    pub bytes_forwarded: u64,
    /// `PauseRead` actions.
    pub pauses: usize,
    /// `ReportLatency` actions.
    pub latency_reports: usize,
    /// Backend state changes.
    pub state_changes: usize,
    /// Admin changes the pool accepted (unknown backends excluded).
    pub admin_changes: usize,
    /// Flows closed `Completed`.
    pub completed: usize,
    /// Flows closed by a reset or an abort.
    pub reset: usize,
    /// Flows closed by the idle or half-close timeout.
    pub timed_out: usize,
    /// Flows refused.
    pub rejected: usize,
    /// Flows closed after every connect attempt failed.
    pub connect_failed: usize,
    /// Probes the pool failed at their deadline.
    pub probe_timeouts: usize,
    /// Client connects that failed by the backend's fault (refused or timed out): failed
    /// checks of it (passive health).
    pub passive_failures: usize,
    /// Clients refused for `per_client.max_connections`.
    pub per_client_rejections: usize,
    /// Flows closed because health took their backend down (`on_backend_down: close`).
    pub backend_down_closes: usize,
    /// Resets passed on after the bytes before them were delivered.
    pub delivered_resets: usize,
    /// Flows routed by an `sni` pattern matching their ClientHello's server name.
    pub routed_by_name: usize,
    /// Flows of an `sni` listener routed to its pool (no name, or none matched).
    pub routed_to_default: usize,
    /// Flows of an `sni` listener routed when `timeouts.client_hello` passed.
    pub client_hello_timeouts: usize,
    /// Flows refused with `no_route`.
    pub no_route: usize,
    /// Clients refused by a listener's `allow`.
    pub not_allowed: usize,
}

impl std::ops::AddAssign for Stats {
    fn add_assign(&mut self, o: Stats) {
        self.flows += o.flows;
        self.connects += o.connects;
        self.retries += o.retries;
        self.bytes_forwarded += o.bytes_forwarded;
        self.pauses += o.pauses;
        self.latency_reports += o.latency_reports;
        self.state_changes += o.state_changes;
        self.admin_changes += o.admin_changes;
        self.completed += o.completed;
        self.reset += o.reset;
        self.timed_out += o.timed_out;
        self.rejected += o.rejected;
        self.connect_failed += o.connect_failed;
        self.probe_timeouts += o.probe_timeouts;
        self.passive_failures += o.passive_failures;
        self.per_client_rejections += o.per_client_rejections;
        self.backend_down_closes += o.backend_down_closes;
        self.delivered_resets += o.delivered_resets;
        self.routed_by_name += o.routed_by_name;
        self.routed_to_default += o.routed_to_default;
        self.client_hello_timeouts += o.client_hello_timeouts;
        self.no_route += o.no_route;
        self.not_allowed += o.not_allowed;
    }
}

/// Runs a scenario against the real machines and checks every invariant after every event.
pub fn run(scenario: &Scenario) -> Result<Stats, Violation> {
    run_with(scenario, Options::default())
}

/// [`run`] with a replaced selector or an injected fault.
pub fn run_with(scenario: &Scenario, options: Options) -> Result<Stats, Violation> {
    driver::Driver::new(scenario, options).run(scenario)
}

/// Decodes fuzz bytes into a scenario (any bytes decode to one) and runs it.
pub fn check_events_bytes(data: &[u8]) -> Result<(), Violation> {
    run(&decode_scenario(data)).map(|_| ())
}

/// The scenario fuzz bytes stand for.
pub fn decode_scenario(data: &[u8]) -> Scenario {
    use arbitrary::{Arbitrary, Unstructured};
    let mut scenario =
        Scenario::arbitrary_take_rest(Unstructured::new(data)).unwrap_or_else(|_| Scenario {
            config: ConfigSpec::simple(1),
            ops: Vec::new(),
        });
    scenario.ops.truncate(MAX_OPS);
    scenario
}

/// The `events` fuzz target: panics with the violation, so libFuzzer records a crash.
pub fn fuzz_events(data: &[u8]) {
    if let Err(v) = check_events_bytes(data) {
        panic!("{v}\nscenario: {:?}", decode_scenario(data));
    }
}

/// The `config` fuzz target: panics with the violation, so libFuzzer records a crash.
pub fn fuzz_config(data: &[u8]) {
    if let Err(v) = check_config_bytes(data) {
        panic!("{v}");
    }
}

/// The `admin` fuzz target: panics with the violation, so libFuzzer records a crash.
pub fn fuzz_admin(data: &[u8]) {
    if let Err(v) = check_admin_bytes(data) {
        panic!("{v}");
    }
}

/// The `client_hello` target: panics with the violation, so libFuzzer records a crash.
pub fn fuzz_client_hello(data: &[u8]) {
    if let Err(v) = check_client_hello_bytes(data) {
        panic!("{v}");
    }
}
