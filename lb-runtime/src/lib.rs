//! The tokio driver of the load balancer. It performs the state machines' actions on real
//! (or simulated) sockets and reports what happened; it makes no decisions of its own.
//!
//! - [`node`]: the one assembly of a running load balancer (workers, probes, admin
//!   endpoint, reload and drain), driven by a control channel.
//! - [`net`]: the network trait, with the `tokio::net` implementation.
//! - [`accept`]: the accept loop every listener uses.
//! - [`flow_task`]: one task per client connection, polling both sockets.
//! - [`probes`]: runs the health probes the pool asks for.
//! - [`admin`]: the admin endpoint's plumbing.
//! - [`shared`]: the pool and clock all tasks share.
//! - [`load`]: reading and resolving the config.
//! - [`logging`]: buffered log output for the binaries.
//! - [`cli`]: the binaries' command lines (clap definitions).
//! - [`sys`]: the one `unsafe` call (how much a socket's peer has not acknowledged).
//!
//! Not part of the driver: [`demo`], the demo backend behind `server` and
//! `loadbalancer --demo` (it only shares the [`net`] trait and the accept loop).
#![warn(missing_docs)]

pub mod accept;
pub mod admin;
pub mod cli;
pub mod clock;
pub mod demo;
pub mod dns;
pub mod failure_log;
pub mod flow_task;
pub mod load;
pub mod logging;
pub mod net;
pub mod node;
pub mod probes;
pub mod process;
pub mod shared;
pub mod sys;

pub use net::{Net, TokioNet};

/// This build's version and commit, as `--version` and `lb_build_info` show them.
pub fn build_info() -> lb_sans_io::admin::BuildInfo {
    lb_sans_io::admin::BuildInfo {
        version: env!("CARGO_PKG_VERSION"),
        commit: env!("LB_COMMIT"),
    }
}
pub use node::{Control, Node, NodeOptions, StartError, Stopped};
