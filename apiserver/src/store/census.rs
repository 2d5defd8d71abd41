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

/// Nodes by status: `(status, count)`. Both backends run the census's queries as written here.
pub(crate) const NODES_SQL: &str =
    "SELECT status, COUNT(*) FROM nodes GROUP BY status ORDER BY status";
/// Groups by state: `(provisioning_state, desired, count)`.
pub(crate) const GROUPS_SQL: &str = "SELECT provisioning_state, desired, COUNT(*) FROM groups \
     GROUP BY provisioning_state, desired ORDER BY provisioning_state, desired";
/// The groups the scheduler would take (it walks the partial index of unplaced groups).
pub(crate) const PENDING_SQL: &str = "SELECT COUNT(*) FROM groups WHERE node_id IS NULL \
     AND desired = 'Running' AND settled_ms IS NULL AND provisioning_state != 'Failed'";

impl Census {
    /// The census from the rows of [`NODES_SQL`], [`GROUPS_SQL`], [`PENDING_SQL`] and the ledger's
    /// row count.
    pub(crate) fn from_rows(
        nodes: Vec<(String, i64)>,
        groups: Vec<(String, String, i64)>,
        pending: i64,
        ledger: i64,
    ) -> Self {
        Self {
            nodes: nodes.into_iter().map(|(s, n)| (s, count(n))).collect(),
            groups: groups
                .into_iter()
                .map(|(provisioning_state, desired, n)| GroupCount {
                    provisioning_state,
                    desired,
                    count: count(n),
                })
                .collect(),
            pending_groups: count(pending),
            ledger_rows: count(ledger),
        }
    }
}

/// An SQL count (never negative) as the `u64` it is.
pub(crate) fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}
