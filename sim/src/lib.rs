//! Deterministic simulation of whole networks around the load balancer, in the manner of
//! FoundationDB and TigerBeetle: each run is a turmoil world of clients, load balancers and
//! backends, driven by one seed, with faults injected on a seed-drawn timeline, and judged
//! by checkers afterwards. The load balancers run the production driver (`lb-runtime`'s
//! `Balancer`) and state machines (`lb-sans-io`) on a turmoil implementation of the
//! driver's `Net` trait; the backends run the production demo servers.
//!
//! - [`net`]: the turmoil `Net`, recording what every socket did.
//! - [`scenario`]: the scenario vocabulary and the seed-drawn [`scenario::Plan`].
//! - [`services`]: many listeners and pools: their config, ClientHellos and routes.
//! - [`client`]: the simulated clients and their records.
//! - [`dns`]: the scripted DNS of the `fleet` scenario.
//! - [`operator`]: the operator host (admin requests over the network).
//! - [`logs`]: the load balancers' "connection closed" lines, captured.
//! - [`run`]: builds and drives one run and gathers its observations.
//! - [`check`]: the checkers.
//! - [`trace`]: the event trace and its hash.
//! - [`rng`]: the seeded draws (the core's own generator).
//! - [`sweep`]: seed sweeps, replay (`SIM_SEED`, `SIM_SEEDS`) and failure reports.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod check;
pub mod client;
pub mod dns;
pub mod logs;
pub mod net;
pub mod operator;
pub mod rng;
pub mod run;
pub mod scenario;
pub mod services;
pub mod sweep;
pub mod trace;

pub use run::{run, RunOutput};
pub use scenario::{Mutation, Plan, Scenario};
