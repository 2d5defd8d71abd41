//! What the cluster holds, counted: nodes by status, groups by state, groups waiting for a node,
//! ledger rows. `/metrics` reads it at scrape time, with a few counting queries (the pending count
//! walks a partial index, the ledger's comes from its per-day row counts; the groups' is one scan
//! of the groups table).

use super::Result;

/// The counts, each list in the order of its labels.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Census {
    /// Nodes by status (`Ready`, `NotReady`, `Lost`), statuses with none left out.
    pub nodes: Vec<(String, u64)>,
    /// Groups by provisioning state and desired state, pairs with none left out.
    pub groups: Vec<GroupCount>,
    /// Groups the scheduler would take: unplaced, to run, not settled, not failed.
    pub pending_groups: u64,
    /// Rows in the usage ledger.
    pub ledger_rows: u64,
}

/// How many groups are in one (provisioning state, desired state).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupCount {
    /// `Pending`, `Creating`, `Succeeded`, `Failed`, …
    pub provisioning_state: String,
    /// `Running` or `Stopped`: what the API last asked of the group.
    pub desired: String,
    pub count: u64,
}

/// The counts `/metrics` shows of the store.
#[async_trait::async_trait]
pub trait CensusStore: Send + Sync {
    async fn census(&self) -> Result<Census>;
}

/// An SQL count (never negative) as the `u64` it is.
pub(crate) fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}
