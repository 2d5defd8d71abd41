//! What follows a committed group change, in one place: the DNS zone recomputed, the node told,
//! the scheduler woken. Every effect takes the node as the change's own transaction saw it, never
//! one read before it (a group placed in between would be missed).

use crate::dns::ZoneDirty;
use crate::nodes::NodeGateway;
use crate::scheduler::SchedulerHandle;

/// A group change that has been committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Committed<'a> {
    /// A new group waits for a node.
    Created,
    /// The group has a new generation (update, restart); `node` is where the transaction found it.
    NewGeneration { node: Option<&'a str> },
    /// The group gave its node up (stop, delete); `node` is the one the transaction released.
    Released { node: Option<&'a str> },
    /// A stopped group waits for a node again.
    Started,
}

/// The handles the after-commit effects go through.
#[derive(Clone)]
pub struct Effects {
    gateway: NodeGateway,
    scheduler: SchedulerHandle,
    zone_dirty: ZoneDirty,
}

impl Effects {
    pub fn new(gateway: NodeGateway, scheduler: SchedulerHandle, zone_dirty: ZoneDirty) -> Self {
        Self {
            gateway,
            scheduler,
            zone_dirty,
        }
    }

    /// Carries out what `change` of group `group_id` calls for.
    pub async fn after(&self, group_id: &str, change: Committed<'_>) {
        match change {
            // No address yet: the zone learns of it from the node's report.
            Committed::Created => self.scheduler.wake(),
            Committed::NewGeneration { node } => {
                self.zone_dirty.poke();
                if let Some(node) = node {
                    self.gateway.refresh(node, group_id).await;
                }
            }
            Committed::Released { node } => {
                self.zone_dirty.poke();
                if let Some(node) = node {
                    self.gateway.remove(node, group_id);
                    self.scheduler.capacity_changed();
                }
            }
            Committed::Started => {
                self.zone_dirty.poke();
                self.scheduler.wake();
            }
        }
    }
}
