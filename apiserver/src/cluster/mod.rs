//! What replicas of one control plane share beyond the store: the leader lease ([`lease`]: who runs
//! the scheduler and the liveness monitor) and the bus ([`bus`]: the signals one replica gives the
//! others: assignments for a node whose stream is elsewhere, scheduler wake-ups, zone pokes, node
//! joins). With SQLite there is one process: the lease is always its own and the bus stays in it.

pub mod bus;
pub mod lease;
mod pgbus;
mod wire;

use std::sync::Arc;

pub use bus::{Bus, Event, Heard, LocalBus, Subscription};
pub use lease::{Leadership, Lease, Timing};
pub use pgbus::{BusError, PgBus};

/// This replica among the others: the bus to them and whether it leads.
#[derive(Clone)]
pub struct Replica {
    pub bus: Arc<dyn Bus>,
    pub leadership: Leadership,
}

impl Replica {
    /// The only replica: a bus of its own, always leading (tests, tools).
    pub fn alone() -> Self {
        Self {
            bus: Arc::new(LocalBus::default()),
            leadership: Leadership::always(),
        }
    }
}
