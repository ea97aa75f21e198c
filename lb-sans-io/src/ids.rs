//! Identifiers of the domain: flows, listeners, pools, backends, probes and the two sides
//! of a flow.

use std::fmt;

/// One proxied client connection, numbered by the driver in accept order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FlowId(pub u64);

/// A backend: its index in the configured `backends` list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BackendId(pub u32);

impl BackendId {
    /// The index of this backend in the pool's backend list.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// A listener of the [`crate::Balancer`]: given when it is added, never reused (a listener a
/// reload removes keeps its id while its connections drain).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ListenerId(pub u32);

impl ListenerId {
    /// The index of this listener in the balancer's list.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// A pool of the [`crate::Balancer`]: given when it is added, never reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PoolId(pub u32);

impl PoolId {
    /// The index of this pool in the balancer's list.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// One health probe; a result for a probe that is no longer current is ignored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProbeId(pub u64);

/// The two sockets of a flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Side {
    /// The accepted connection from the client.
    Client,
    /// The connection the load balancer opened to the chosen backend.
    Backend,
}

impl Side {
    /// The other side of the flow.
    pub fn other(self) -> Side {
        match self {
            Side::Client => Side::Backend,
            Side::Backend => Side::Client,
        }
    }

    /// 0 for the client, 1 for the backend: an index for per-side arrays.
    pub fn index(self) -> usize {
        match self {
            Side::Client => 0,
            Side::Backend => 1,
        }
    }

    /// Both sides, client first.
    pub const BOTH: [Side; 2] = [Side::Client, Side::Backend];
}

impl fmt::Display for FlowId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "flow#{}", self.0)
    }
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Client => "client",
            Side::Backend => "backend",
        })
    }
}
