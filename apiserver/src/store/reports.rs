//! Node reports: what a node observed of its groups, folded into them.

use std::collections::HashMap;

use super::{ProvisioningState, Result};
use crate::billing::meter::{MeterEvent, observation};
use crate::model::reported::{ContainerRun, EventKind, GroupPhase, ReportedStatus};

/// A node's report of one group, with the node's sequence number for it.
#[derive(Debug, Clone)]
pub struct NodeReport {
    pub node_id: String,
    pub seq: u64,
    pub status: ReportedStatus,
}

/// What changed when a node's report was applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatusOutcome {
    /// Stored; the group's provisioning state is now this.
    Applied {
        provisioning_state: ProvisioningState,
    },
    /// The group is not assigned to this node, or the report is about an older generation.
    Ignored,
}

/// Node reports.
#[async_trait::async_trait]
pub trait ReportStore: Send + Sync {
    /// Applies one report (and meters it): stores it on the group if the group is assigned to this
    /// node at this generation or an older one, moves its provisioning state, and finishes the
    /// operations it completes.
    async fn apply_status(
        &self,
        node_id: &str,
        status: &ReportedStatus,
        now_ms: i64,
    ) -> Result<StatusOutcome>;
    /// Applies many reports in one transaction, in order, metering each; records each node's latest
    /// clock (`node_clocks`: node id, node time of its latest message).
    async fn apply_statuses(
        &self,
        reports: &[NodeReport],
        node_clocks: &[(String, i64)],
        now_ms: i64,
    ) -> Result<Vec<StatusOutcome>>;
}

/// What the meter hears of a batch of reports: every report, in order, except those about a copy
/// left behind, whose placement epoch is not its group's (`epochs`: group id to current epoch, for
/// the groups that exist). Such a copy's run ended when its node was lost or drained, and a later
/// report of it must not reopen or extend it (the group runs elsewhere, billed there). A report of
/// a deleted group is metered as before (its delete capped its runs).
pub(super) fn metered(reports: &[NodeReport], epochs: &HashMap<String, i64>) -> Vec<MeterEvent> {
    reports
        .iter()
        .filter(|r| {
            epochs
                .get(&r.status.group_id)
                .is_none_or(|epoch| *epoch == r.status.placement as i64)
        })
        .map(|r| observation(&r.node_id, r.seq, &r.status))
        .collect()
}

/// Provisioning state that a node's report implies.
pub(super) fn provisioning_for(status: &ReportedStatus) -> Option<ProvisioningState> {
    match status.phase {
        GroupPhase::Pending => Some(ProvisioningState::Creating),
        GroupPhase::Running | GroupPhase::Succeeded => Some(ProvisioningState::Succeeded),
        GroupPhase::Failed => {
            // A group whose containers ran and then failed was deployed (ACI: Succeeded, state Failed);
            // one that never started a container failed to deploy.
            let started =
                |r: &Option<ContainerRun>| r.as_ref().is_some_and(|r| r.start_time_unix_ms > 0);
            let ran = status
                .containers
                .iter()
                .any(|c| started(&c.current) || started(&c.previous));
            Some(if ran {
                ProvisioningState::Succeeded
            } else {
                ProvisioningState::Failed
            })
        }
        GroupPhase::Stopped | GroupPhase::Removed | GroupPhase::Unspecified => None,
    }
}

/// ACI's error code and message for a group that failed to deploy: the node's group-level warning
/// when it names an ACI code (`InaccessibleImage`), else the last warning of any container.
pub(super) fn failure(status: &ReportedStatus) -> (&'static str, String) {
    const CODES: [&str; 1] = ["InaccessibleImage"];
    if let Some((code, event)) = status.events.iter().rev().find_map(|e| {
        CODES
            .iter()
            .find(|code| e.kind == EventKind::Warning && e.name == **code)
            .map(|code| (*code, e))
    }) {
        return (code, event.message.clone());
    }
    let message = status
        .containers
        .iter()
        .flat_map(|c| c.events.iter())
        .chain(status.events.iter())
        .rfind(|e| e.kind == EventKind::Warning)
        .map(|e| e.message.clone())
        .unwrap_or_else(|| "The container group failed to start.".to_owned());
    ("ContainerGroupDeploymentFailed", message)
}
