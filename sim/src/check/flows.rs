//! The load balancer's flows, reconstructed from its socket log: one per accepted client
//! connection, with the task that served it, its connects in order, and the bytes the
//! flow machine accepted from each side.

use crate::net::{ConnectOutcome, NetLog, Origin};
use crate::run::Observations;
use crate::scenario::ADMIN_PORT;
use std::net::SocketAddr;
use std::time::Duration;

/// How far apart two hosts' readings of the simulated clock may be.
const SLACK: Duration = Duration::from_millis(10);

/// One client connection at one load balancer.
#[derive(Clone, Debug)]
pub struct Flow {
    /// The load balancer.
    pub lb: usize,
    /// The task that polled the client stream (`None` if it never did, e.g. refused at once).
    pub task: Option<usize>,
    /// The client's address.
    pub peer: SocketAddr,
    /// The port of the listener it came through.
    pub port: u16,
    /// When it was accepted.
    pub accepted: Duration,
    /// When the client stream was closed by the load balancer.
    pub closed: Option<Duration>,
    /// Bytes read from the client that the flow machine accepted.
    pub client_read: u64,
    /// Its connects, in order (indices into the log's `connects`).
    pub connects: Vec<usize>,
    /// Backend index of each connect.
    pub targets: Vec<Option<usize>>,
    /// Bytes read from the established backend stream that the machine accepted.
    pub backend_read: u64,
    /// The backend it established a connection with.
    pub established: Option<usize>,
    /// One of its sockets failed (the flow was reset).
    pub failed: bool,
    /// When its task ended.
    pub finished: Option<Duration>,
}

impl Flow {
    /// The backend whose connection slot the flow held when it closed: the pool adds the
    /// flow's bytes to that backend. A last connect that failed, or was given up by the
    /// connect timeout, released its slot; one abandoned because the client failed did not.
    pub fn attributed(&self, log: &NetLog) -> Option<usize> {
        let (&last, &target) = (self.connects.last()?, self.targets.last()?);
        match log.connects[last].outcome {
            ConnectOutcome::Connected { .. } | ConnectOutcome::Pending => target,
            ConnectOutcome::Failed => None,
            ConnectOutcome::Abandoned => {
                if self.failed {
                    target
                } else {
                    None
                }
            }
        }
    }

    /// Connect failures the pool should have counted, per connect: refused ones, and ones
    /// given up by the connect timeout (every abandoned one but a last one whose flow was
    /// reset by the client).
    pub fn failed_connects(&self, log: &NetLog) -> Vec<usize> {
        let mut out = Vec::new();
        for (k, &c) in self.connects.iter().enumerate() {
            let last = k + 1 == self.connects.len();
            let counted = match log.connects[c].outcome {
                ConnectOutcome::Failed => true,
                ConnectOutcome::Abandoned => !(last && self.failed),
                _ => false,
            };
            if counted {
                if let Some(b) = self.targets[k] {
                    out.push(b);
                }
            }
        }
        out
    }
}

/// Every load balancer's flows, and which connects were probes.
#[derive(Clone, Debug, Default)]
pub struct Flows {
    /// Per load balancer, its flows in accept order.
    pub per_lb: Vec<Vec<Flow>>,
}

impl Flows {
    /// Reconstructs the flows of every load balancer.
    pub fn new(obs: &Observations) -> Flows {
        let per_lb = obs
            .lb_logs
            .iter()
            .enumerate()
            .map(|(lb, log)| flows_of(obs, lb, log))
            .collect();
        Flows { per_lb }
    }

    /// The flow of a client connection from `local` accepted in `[from, to]` (give or take
    /// a few milliseconds: hosts read the simulated clock at their own steps).
    pub fn find(
        &self,
        lb: usize,
        local: SocketAddr,
        from: Duration,
        to: Duration,
    ) -> Option<&Flow> {
        self.per_lb
            .get(lb)?
            .iter()
            .find(|f| f.peer == local && f.accepted + SLACK >= from && f.accepted <= to + SLACK)
    }
}

fn flows_of(obs: &Observations, lb: usize, log: &NetLog) -> Vec<Flow> {
    let mut flows: Vec<Flow> = Vec::new();
    let mut by_task = std::collections::BTreeMap::new();
    for s in &log.streams {
        if let Origin::Accepted { peer, port } = s.origin {
            if port == ADMIN_PORT {
                continue; // the admin endpoint's
            }
            if let Some(t) = s.task {
                by_task.insert(t, flows.len());
            }
            flows.push(Flow {
                lb,
                task: s.task,
                peer,
                port,
                accepted: s.opened,
                closed: s.closed,
                client_read: s.read,
                connects: Vec::new(),
                targets: Vec::new(),
                backend_read: 0,
                established: None,
                failed: s.task.is_some_and(|t| log.tasks[t].failed),
                finished: s.task.and_then(|t| log.tasks[t].finished),
            });
        }
    }
    for (i, c) in log.connects.iter().enumerate() {
        let Some(&f) = c.task.and_then(|t| by_task.get(&t)) else {
            continue; // a health probe
        };
        let flow = &mut flows[f];
        let target = obs.backend_of(c.addr);
        flow.connects.push(i);
        flow.targets.push(target);
        if let ConnectOutcome::Connected { stream } = c.outcome {
            flow.established = target;
            flow.backend_read = log.streams[stream].read;
        }
    }
    flows
}
