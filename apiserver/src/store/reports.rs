//! Node reports: what a node observed of its groups, folded into them.

use super::{ProvisioningState, Result};
use crate::model::reported::ReportedStatus;

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
