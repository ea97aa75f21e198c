//! The load balancer's decisions as pure state machines.
//!
//! No sockets, no async runtime, no clock and no global randomness: events go in through
//! `handle_*` methods that take `now`, actions come out of `poll_*` methods, and the only
//! random generator is a seeded one the machine owns. Two machines:
//!
//! - [`Balancer`], shared by all flows: the [`Listener`]s (admission, routing by server
//!   name, client settings) and the [`Pool`]s (backend state, health, selection,
//!   per-backend limits, the probe schedule). Touched only at accept, routing, connect and
//!   close.
//! - [`Flow`], one per client connection and owned by one task: reading a ClientHello,
//!   forwarding, half-close, backpressure, retries and timeouts. The data path runs here,
//!   free of shared locks.
//!
//! Around them, pure helpers the driver calls with bytes: [`admin`] (the admin endpoint's
//! requests and pages), [`probe`] (what a health probe sends and how its reply is judged)
//! and [`proxy_header`] (PROXY protocol headers); [`spread`] (when a worker takes a client
//! waiting in a busier worker's accept queue); and [`http`], the one HTTP/1.x request-head
//! parser, shared by the admin endpoint and the demo backend.
//!
//! The rule for drivers (as in str0m): after every input, drain the outputs
//! (`poll_action` / `poll_probe` / `poll_event`) until empty, then sleep until
//! `poll_timeout`, before giving the machine its next input.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod admin;
pub mod balancer;
pub mod config;
#[cfg(feature = "seams")]
pub mod defect;
#[cfg(not(feature = "seams"))]
#[allow(dead_code)]
mod defect;
pub mod discovery;
pub mod flow;
pub mod health;
pub mod histogram;
pub mod http;
pub mod ids;
pub mod listener;
pub mod pool;
pub mod probe;
pub mod proxy_header;
pub mod rng;
pub mod select;
pub mod sni;
pub mod spread;
pub mod time;

pub use balancer::{Balancer, BalancerReload};
pub use config::{Algorithm, Config, ConfigError};
pub use discovery::{DnsAnswer, DnsError, DnsQuery, SrvRecord};
pub use flow::{
    CloseReason, ConnectFailure, Flow, FlowAction, FlowLimits, FlowPool, FlowSummary, Keepalive,
    Opened, PoolLimits, RejectReason, Routed,
};
pub use ids::{BackendId, FlowId, ListenerId, PoolId, ProbeId, Side};
pub use listener::Listener;
pub use pool::{AdminState, BackendState, CheckRecord, Pool, PoolEvent, ProbeRequest};
pub use probe::{CheckFailure, ProbeOutcome};
pub use rng::LbRng;
pub use time::Timestamp;
