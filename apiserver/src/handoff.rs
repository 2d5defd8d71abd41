//! What the scheduler and the node gateway tell each other, defined here so that neither imports the
//! other: the gateway (and the HTTP side) wake the scheduler through a [`SchedulerHandle`] (new work,
//! capacity changed, a node became Ready or was lost), and the scheduler hands the placements it
//! committed to a [`PlacementSink`] (the gateway, which sends them to their nodes).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Notify;

use crate::store::Placement;

/// Wakes the scheduler loop; clones share one loop.
#[derive(Debug, Clone, Default)]
pub struct SchedulerHandle {
    notify: Arc<Notify>,
    /// Set when capacity may have changed behind the scheduler's back (delete, stop, node health).
    stale: Arc<AtomicBool>,
}

impl SchedulerHandle {
    /// New work: groups are waiting.
    pub fn wake(&self) {
        self.notify.notify_one();
    }

    /// Capacity freed or nodes changed: re-read the nodes before the next round.
    pub fn capacity_changed(&self) {
        self.stale.store(true, Ordering::Release);
        self.notify.notify_one();
    }

    /// Resolves at the next [`wake`](Self::wake) or [`capacity_changed`](Self::capacity_changed)
    /// (or at once if one came since the last time).
    pub async fn woken(&self) {
        self.notify.notified().await;
    }

    /// Whether capacity changed since the last call (and clears it).
    pub fn take_capacity_changed(&self) -> bool {
        self.stale.swap(false, Ordering::AcqRel)
    }
}

/// Where the scheduler's committed placements go. The scheduler awaits [`placed`](Self::placed)
/// before its next round, so a node hears of its groups in the order they were committed.
pub trait PlacementSink: Send + Sync + 'static {
    /// Placements the store has committed, in one batch per round.
    fn placed(&self, placements: Vec<Placement>) -> impl Future<Output = ()> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn capacity_changed_wakes_and_is_taken_once() {
        let handle = SchedulerHandle::default();
        assert!(!handle.take_capacity_changed());
        handle.capacity_changed();
        tokio::time::timeout(std::time::Duration::from_secs(1), handle.woken())
            .await
            .expect("a capacity change wakes the loop");
        assert!(handle.take_capacity_changed());
        assert!(!handle.take_capacity_changed(), "taken once");
        handle.wake();
        assert!(
            !handle.take_capacity_changed(),
            "new work is not a capacity change"
        );
    }
}
