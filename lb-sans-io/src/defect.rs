//! Deliberate bugs, for the simulation's broken builds: each is one wrong decision that a
//! check of the simulation must catch, so the checks are shown to fail when they should.
//! They exist only with the `seams` feature (the binaries never have it): without it this
//! module is private and [`Defects::has`] is always false, so every test of it compiles away.

/// One deliberate bug.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Defect {
    /// An admin drain or disable is answered as done, but not applied.
    AdminIgnored,
    /// An admin weight change is answered as done, but not applied.
    WeightIgnored,
    /// A reload forgets the health of the backends it keeps: they start down again.
    ReloadForgetsHealth,
    /// A reload restarts the selector's turns (round robin begins again at the first
    /// backend), so frequent reloads starve the last backends.
    ReloadRestartsTurns,
    /// A reload leaves the backends it removes in rotation.
    ReloadKeepsRemoved,
    /// `allow` is not enforced.
    AllowIgnored,
    /// `per_client` is not enforced.
    PerClientIgnored,
    /// `on_backend_down: close` does not close anything.
    BackendDownIgnored,
    /// (Driver) The PROXY header names the load balancer's address as the client's.
    ProxyWrongClient,
    /// (Driver) At the end of the shutdown grace period, open connections are dropped
    /// without going through their machines: not released, counted or logged.
    StopDropsFlows,
    /// (Driver) Some connections lose one chunk to the client: reported written, never
    /// sent.
    DropChunk,
    /// (Driver) Some connections send one chunk to the client twice.
    DuplicateChunk,
    /// (Driver) Some connections send two chunks to the client in the wrong order.
    ReorderChunks,
    /// (Driver) Some connections are reset as if their backend had reset them, when its
    /// first bytes arrive.
    SpuriousReset,
    /// (Driver) Some connections, once closed, are never given back to the pool.
    LeakFlow,
    /// (Driver) One connection's task panics.
    PanicInFlow,
    /// (Driver) The node fails as it starts.
    FailToStart,
    /// The pool counts the first connection to each backend twice.
    CountersOffByOne,
    /// A backend that went down never comes up again, whatever its checks say.
    StuckDown,
    /// (Driver) New connections get no idle timeout.
    NoIdleTimeout,
    /// (Driver) New connections get no half-close timeout.
    NoHalfCloseTimeout,
    /// (Driver) New connections get no connect timeout.
    NoConnectTimeout,
    /// Routing ignores the listener's `sni` table: every client goes to its `pool`.
    SniIgnored,
    /// A pool with no backend up makes every pool refuse new clients: one pool's outage
    /// is shared by all.
    SharedPoolFaults,
    /// DNS discovery applies a failed resolution or an empty answer as "no backends": the
    /// pool forgets every discovered backend instead of keeping the last known set.
    DiscoveryEmptiesOnFailure,
    /// With `hash`, Maglev's table is built over the backends in the order the pool learned
    /// them (its ids), not sorted by name: instances that learned the same set in another
    /// order build other tables.
    DiscoveryUnsorted,
}

/// A set of [`Defect`]s; empty by default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Defects(u64);

impl Defects {
    /// No defect.
    pub const NONE: Defects = Defects(0);

    /// This set and `defect`.
    #[must_use]
    pub fn with(self, defect: Defect) -> Defects {
        Defects(self.0 | 1 << defect as u32)
    }

    /// Whether `defect` is in the set (always false without the `seams` feature).
    #[inline]
    pub fn has(self, defect: Defect) -> bool {
        cfg!(feature = "seams") && self.0 & (1 << defect as u32) != 0
    }
}
