//! What follows groups being taken off a node, whoever took them (the liveness monitor losing it,
//! an operator draining or deleting it): the node's stream is told to remove every one of them
//! (here and, over the bus, on the replica holding it: a node still connected somewhere stops
//! them), the scheduler re-reads capacity and places the moved ones, and the DNS zone drops their
//! old addresses. A deleted node's stream is closed on whichever replica holds it; its next Sync is
//! refused (its record is gone).

use tonic::Status;

use super::NodeGateway;
use crate::cluster::Event;
use crate::store::Unassigned;

impl NodeGateway {
    /// Groups were taken off `node_id` (committed in the store): tells the node, the scheduler and
    /// the DNS zone.
    pub fn evacuated(&self, node_id: &str, unassigned: &Unassigned) {
        let removed: Vec<String> = unassigned.all().cloned().collect();
        if !removed.is_empty() {
            self.tell_peers(node_id, Vec::new(), removed.clone());
            self.inner.sessions.send(node_id, Vec::new(), removed);
        }
        self.inner.scheduler.capacity_changed();
        self.inner.zone_dirty.poke();
    }

    /// A node's record was deleted: its stream is closed here and on every other replica.
    pub fn deleted(&self, node_id: &str) {
        self.inner.replica.bus.publish(Event::NodeDeleted {
            node: node_id.to_owned(),
        });
        self.disconnect(node_id);
        self.inner.scheduler.capacity_changed();
    }

    /// Closes a deleted node's stream if it streams here, and forgets it.
    pub(super) fn disconnect(&self, node_id: &str) {
        if self.inner.sessions.end(
            node_id,
            Status::permission_denied("this node was deleted from the cluster"),
        ) {
            tracing::info!(node = %node_id, "deleted node's stream closed");
        }
        self.inner.liveness.forget(node_id);
    }
}
