//! Nodes leaving: lost (silent past `--node-lost-after`), cordoned, drained, deleted. The rule for
//! which groups run again elsewhere ([`runs_again_elsewhere`]) is pure and shared by both backends.

use super::Result;
use crate::model::reported::GroupPhase;

/// What taking every group off a node did (a lost node, a drain, a forced delete).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Unassigned {
    /// Groups waiting for a node again (their restart policy runs them again): the scheduler places
    /// them through the normal rounds, with a new placement epoch.
    pub moved: Vec<String>,
    /// Groups that had finished and whose policy does not run them again: taken off the node, their
    /// last status kept, never placed again until started or restarted.
    pub settled: Vec<String>,
}

impl Unassigned {
    /// Every group taken off the node (the node's stream is told to remove them all).
    pub fn all(&self) -> impl Iterator<Item = &String> {
        self.moved.iter().chain(self.settled.iter())
    }
}

/// Why a node delete was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeDeleteRefusal {
    /// Groups are still assigned to it (drain it first, or force).
    NotEmpty { groups: u64 },
}

/// Whether a group on a lost or drained node is placed again: `Always` always; `OnFailure` unless
/// it succeeded; `Never` only if it had not finished. `phase` is the node's last report of it
/// (`None`: never reported).
pub fn runs_again_elsewhere(restart_policy: &str, phase: Option<GroupPhase>) -> bool {
    let _ = (restart_policy, phase);
    todo!("lane store")
}

/// Lost, cordoned, drained and deleted nodes.
#[async_trait::async_trait]
pub trait NodeLifecycleStore: Send + Sync {
    /// Judges a node lost, in one transaction: only if it is `NotReady` and its stored
    /// `last_heartbeat_ms` is not after `not_heard_since_ms` (no replica heard from it since; with
    /// `force`, whatever its status). Sets it `Lost`; takes every group off it (capacity released,
    /// `used` back to zero); each group [`runs_again_elsewhere`] goes back to Pending (status cleared,
    /// `pending_since_ms = now_ms`, event `NodeLost`), the others are settled (event `NodeLost` too).
    /// Billing of its runs ended at its last heartbeat already (NotReady) and never reopens: the
    /// node's later reports about them carry an old epoch. `None`: the guard did not hold.
    async fn lose_node(
        &self,
        id: &str,
        not_heard_since_ms: i64,
        now_ms: i64,
        force: bool,
    ) -> Result<Option<Unassigned>>;
    /// Cordons (no new placement) or uncordons a node; uncordon also ends a drain. Returns whether
    /// the node exists.
    async fn set_cordoned(&self, id: &str, cordoned: bool) -> Result<bool>;
    /// Cordons the node, marks it draining, and takes every group off it as a stop does (billing of
    /// each run ends at `now_ms`), moving or settling each as [`NodeLifecycleStore::lose_node`] does
    /// (event `NodeDrained`). `None`: no such node.
    async fn drain_node(&self, id: &str, now_ms: i64) -> Result<Option<Unassigned>>;
    /// Deletes a node with no group assigned (`Ok(Err(NotEmpty))` otherwise); `false`: no such node.
    async fn delete_node(&self, id: &str) -> Result<std::result::Result<bool, NodeDeleteRefusal>>;
}

#[cfg(test)]
mod tests {}
