//! Scheduling: the groups waiting for a node, committing placements, events and failures.

use super::{GroupEvent, Result};
use crate::model::{OsType, Size};

/// A group waiting for a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingGroup {
    pub id: String,
    pub os_type: OsType,
    pub requests: Size,
    pub generation: i64,
    /// The last scheduling event's message, so an unchanged reason is not rewritten every round.
    pub last_reason: Option<String>,
    /// Since when it has waited for a node (its create, start, or its node being lost or drained):
    /// past `--pending-timeout` the scheduler fails it.
    pub pending_since_ms: i64,
}

/// A decision of the scheduler, to be committed with its capacity reservation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub group_id: String,
    pub node_id: String,
    pub requests: Size,
    pub generation: i64,
}

/// Scheduling.
#[async_trait::async_trait]
pub trait SchedulingStore: Send + Sync {
    /// Groups that should run, have no node and have not failed, oldest first.
    async fn pending_groups(&self, limit: i64) -> Result<Vec<PendingGroup>>;
    /// Commits placements, each with its capacity reservation; returns the ones that held (a node
    /// that filled up or went NotReady meanwhile, or a group deleted, stopped or changed meanwhile,
    /// drops out). Concurrent commits never overcommit a node nor place a group twice.
    async fn commit_placements(
        &self,
        placements: &[Placement],
        now_ms: i64,
    ) -> Result<Vec<Placement>>;
    /// Adds an event to a group, or refreshes the one of its name (count, time, message). Concurrent
    /// calls each count.
    async fn record_event(&self, group_id: &str, event: GroupEvent) -> Result<()>;
    /// Fails a group that can never be placed (if it is still unplaced), failing its pending
    /// operations with `code` and `message`.
    async fn fail_group(
        &self,
        group_id: &str,
        code: &str,
        message: &str,
        now_ms: i64,
    ) -> Result<()>;
}

/// Adds `event` to a group's events, or refreshes the one of its name (count, time, message, kind).
pub(super) fn merge_event(events: &mut Vec<GroupEvent>, event: GroupEvent) {
    match events.iter_mut().find(|e| e.name == event.name) {
        Some(existing) => {
            existing.count += 1;
            existing.last_ms = event.last_ms;
            existing.message = event.message;
            existing.kind = event.kind;
        }
        None => events.push(event),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(name: &str, message: &str, at_ms: i64) -> GroupEvent {
        GroupEvent {
            name: name.to_owned(),
            message: message.to_owned(),
            kind: crate::model::reported::EventKind::Warning,
            count: 1,
            first_ms: at_ms,
            last_ms: at_ms,
        }
    }

    #[test]
    fn an_event_of_a_known_name_is_counted_and_refreshed_not_added() {
        let mut events = vec![event("FailedScheduling", "no node", 1)];
        merge_event(&mut events, event("FailedScheduling", "no node fits", 5));
        merge_event(&mut events, event("NodeLost", "gone", 6));
        assert_eq!(events.len(), 2);
        assert_eq!(
            (events[0].count, events[0].first_ms, events[0].last_ms),
            (2, 1, 5)
        );
        assert_eq!(events[0].message, "no node fits");
        assert_eq!((events[1].name.as_str(), events[1].count), ("NodeLost", 1));
    }
}
