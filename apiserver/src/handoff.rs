//! What the scheduler and the node gateway tell each other, defined here so that neither imports the
//! other: the gateway (and the HTTP side) wake the scheduler through a [`SchedulerHandle`] (new work,
//! capacity changed, a node became Ready or was lost), and the scheduler hands the placements it
//! committed to a [`PlacementSink`] (the gateway, which sends them to their nodes).
//!
//! With several replicas only the leader's scheduler runs: a handle [`linked`](SchedulerHandle::linked)
//! to the bus tells the leader's scheduler through it when this replica does not lead.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Notify;

use crate::cluster::{Bus, Event, Leadership, Subscription};
use crate::store::Placement;

/// Wakes the scheduler loop; clones share one loop.
#[derive(Clone, Default)]
pub struct SchedulerHandle {
    notify: Arc<Notify>,
    /// Set when capacity may have changed behind the scheduler's back (delete, stop, node health).
    stale: Arc<AtomicBool>,
    /// The other replicas, told while this one does not lead.
    peers: Option<Peers>,
}

#[derive(Clone)]
struct Peers {
    bus: Arc<dyn Bus>,
    leadership: Leadership,
}

impl std::fmt::Debug for SchedulerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchedulerHandle").finish_non_exhaustive()
    }
}

impl SchedulerHandle {
    /// A handle whose wake-ups also reach the leader's scheduler over `bus` while this replica
    /// does not lead.
    pub fn linked(bus: Arc<dyn Bus>, leadership: Leadership) -> Self {
        Self {
            peers: Some(Peers { bus, leadership }),
            ..Self::default()
        }
    }

    /// New work: groups are waiting.
    pub fn wake(&self) {
        self.notify.notify_one();
        self.tell_leader(false);
    }

    /// Capacity freed or nodes changed: re-read the nodes before the next round.
    pub fn capacity_changed(&self) {
        self.woken_by_peer(true);
        self.tell_leader(true);
    }

    /// Another replica's wake-up (from the bus): wakes this replica's loop only.
    pub fn woken_by_peer(&self, capacity_changed: bool) {
        if capacity_changed {
            self.stale.store(true, Ordering::Release);
        }
        self.notify.notify_one();
    }

    fn tell_leader(&self, capacity_changed: bool) {
        if let Some(peers) = &self.peers
            && !peers.leadership.is_leader()
        {
            peers.bus.publish(Event::SchedulerWake { capacity_changed });
        }
    }

    /// What the other replicas say, if this handle is linked to them.
    pub fn subscribe(&self) -> Option<Subscription> {
        self.peers.as_ref().map(|peers| peers.bus.subscribe())
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
#[allow(clippy::unwrap_used)]
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

    #[tokio::test]
    async fn a_follower_tells_the_leader_and_a_leader_keeps_it_to_itself() {
        use crate::cluster::{Heard, Lease, LocalBus};
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("t.db");
        let store = Arc::new(crate::store::SqliteStore::open(&file).await.unwrap());
        let here: Arc<dyn Bus> = Arc::new(LocalBus::for_database(Some(&file)));
        let mut elsewhere = LocalBus::for_database(Some(&file)).subscribe();
        // A lease loop never run: never leads.
        let (_, follows) = Lease::new(store, "f", Default::default());
        let follower = SchedulerHandle::linked(here.clone(), follows);
        let leader = SchedulerHandle::linked(here, Leadership::always());
        leader.wake();
        leader.capacity_changed();
        follower.capacity_changed();
        let wait = std::time::Duration::from_millis(200);
        let got = tokio::time::timeout(wait, elsewhere.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            *got,
            Heard::Event(Event::SchedulerWake {
                capacity_changed: true
            })
        );
        assert!(
            tokio::time::timeout(wait, elsewhere.recv()).await.is_err(),
            "the leader's wake-ups stayed local"
        );
        assert!(
            follower.take_capacity_changed(),
            "and the follower woke its own loop too"
        );
    }
}
