//! What replicas of one control plane share beyond the store: the leader lease ([`lease`]: who runs
//! the scheduler and the liveness monitor) and the bus ([`bus`]: the signals one replica gives the
//! others: assignments for a node whose stream is elsewhere, scheduler wake-ups, zone pokes, node
//! joins). With SQLite there is one process: the lease is always its own and the bus stays in it.

pub mod bus;
pub mod lease;
mod pgbus;
mod wire;

pub use bus::{Bus, Event, Heard, LocalBus, Subscription};
pub use lease::{Leadership, Lease, Timing};
pub use pgbus::{BusError, PgBus};
