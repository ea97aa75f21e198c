//! The pool's books against the sockets, at the end of the run.
//!
//! - `counters`: per backend, `connections_total` equals the flow connects that
//!   succeeded; `connect_failures_total` the flow connects refused or given up by the
//!   connect timeout; `bytes_to_backend` / `bytes_to_client` the bytes the flows read from
//!   the client / the backend, added to the backend whose slot each flow held when it
//!   closed. Accepted connections equal the clients' successful connects.
//!   `Pool::check_invariants` holds.
//! - `leak`: after every client finished (and the timeouts had time to run), no flow is
//!   open, no backend holds a connection, no flow task is still running.
//! - `state`: every backend, reachable again at the end, is up.
//! - `panic`: no task of any host panicked. `host`: no host failed and the run finished.

use super::flows::Flows;
use super::{violation, Violation};
use crate::client::Outcome;
use crate::run::Observations;
use lb_sans_io::BackendState;

/// Runs the checks of this module.
pub fn check(obs: &Observations, flows: &Flows, out: &mut Vec<Violation>) {
    for e in &obs.host_errors {
        violation(out, "host", e.clone());
    }
    let logs = obs
        .lb_logs
        .iter()
        .enumerate()
        .map(|(i, l)| (format!("lb{i}"), l))
        .chain(
            obs.backend_logs
                .iter()
                .enumerate()
                .map(|(i, l)| (format!("b{i}"), l)),
        );
    for (host, log) in logs {
        for t in &log.tasks {
            if let Some(p) = &t.panicked {
                violation(out, "panic", format!("a task of {host} panicked: {p}"));
            }
        }
    }
    let n = obs.plan.backends.len();
    for (lb, snap) in obs.final_pools.iter().enumerate() {
        let Some(snap) = snap else {
            violation(out, "host", format!("lb{lb} never started"));
            continue;
        };
        let log = &obs.lb_logs[lb];
        let lb_flows = &flows.per_lb[lb];
        if let Err(e) = &snap.invariants {
            violation(
                out,
                "counters",
                format!("lb{lb}: pool invariants broken: {e}"),
            );
        }
        if obs.clients_done.is_some() {
            if snap.open_flows != 0 {
                violation(
                    out,
                    "leak",
                    format!(
                        "lb{lb}: {} flow(s) still open after every client finished",
                        snap.open_flows
                    ),
                );
            }
            for (b, s) in snap.backends.iter().enumerate() {
                if s.active != 0 {
                    violation(
                        out,
                        "leak",
                        format!("lb{lb}: b{b} still holds {} connection(s)", s.active),
                    );
                }
            }
            let running = lb_flows
                .iter()
                .filter(|f| f.task.is_some() && f.finished.is_none())
                .count();
            if running != 0 {
                violation(
                    out,
                    "leak",
                    format!("lb{lb}: {running} flow task(s) still running"),
                );
            }
            let reachable_at_end =
                (0..n).all(|b| obs.unreachable[b].iter().all(|&(_, e)| e <= obs.end));
            if reachable_at_end {
                for (b, s) in snap.backends.iter().enumerate() {
                    if s.state != BackendState::Up
                        && !obs.out_of_rotation_during(lb, b, obs.end, obs.end)
                    {
                        violation(
                            out,
                            "state",
                            format!("lb{lb}: b{b} is {} at the end, though reachable", s.state),
                        );
                    }
                }
            }
        }
        let mut connected = vec![0u64; n];
        let mut failures = vec![0u64; n];
        let mut to_backend = vec![0u64; n];
        let mut to_client = vec![0u64; n];
        for f in lb_flows {
            if let Some(x) = f.established {
                connected[x] += 1;
            }
            for b in f.failed_connects(log) {
                failures[b] += 1;
            }
            if let Some(x) = f.attributed(log) {
                to_backend[x] += f.client_read;
                to_client[x] += f.backend_read;
            }
        }
        for (b, s) in snap.backends.iter().enumerate() {
            let pairs = [
                ("connections_total", s.connections_total, connected[b]),
                (
                    "connect_failures_total",
                    s.connect_failures_total,
                    failures[b],
                ),
                ("bytes_to_backend", s.bytes_to_backend, to_backend[b]),
                ("bytes_to_client", s.bytes_to_client, to_client[b]),
            ];
            for (name, pool, seen) in pairs {
                if pool != seen {
                    violation(
                        out,
                        "counters",
                        format!(
                            "lb{lb}: b{b} {name} is {pool} in the pool, the sockets saw {seen}"
                        ),
                    );
                }
            }
        }
        let clients = obs
            .sessions
            .iter()
            .filter(|s| s.lb == lb && s.outcome != Outcome::ConnectFailed)
            .count();
        if clients != lb_flows.len() {
            violation(
                out,
                "counters",
                format!(
                    "lb{lb} accepted {} connections, clients made {clients}",
                    lb_flows.len()
                ),
            );
        }
    }
}
