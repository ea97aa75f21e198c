//! The tokio driver of the load balancer. It performs the state machines' actions on real
//! (or simulated) sockets and reports what happened; it makes no decisions of its own.
//!
//! - [`net`]: the network trait, with the `tokio::net` implementation.
//! - [`balancer`]: accept loop, probe task, flow tasks and graceful drain.
//! - [`flow_task`]: one task per client connection, polling both sockets.
//! - [`probes`]: runs the health probes the pool asks for.
//! - [`load`]: reading and resolving the config for the binary.
//! - [`logging`]: buffered log output for the binaries.
//!
//! Not part of the driver: [`demo`], the demo backend behind `server` and
//! `loadbalancer --demo` (it only shares the [`net`] trait).
#![warn(missing_docs)]

pub mod admin;
pub mod balancer;
pub mod clock;
pub mod demo;
pub mod failure_log;
pub mod flow_task;
pub mod load;
pub mod logging;
pub mod net;
pub mod probes;
pub mod shared;

pub use balancer::{Balancer, Stopped};
pub use net::{Net, TokioNet};
