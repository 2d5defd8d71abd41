//! The census in SQLite: four counting queries on the reader pool.

use super::SqliteStore;
use crate::store::census::count;
use crate::store::{Census, CensusStore, GroupCount, Result};

#[async_trait::async_trait]
impl CensusStore for SqliteStore {
    async fn census(&self) -> Result<Census> {
        let nodes: Vec<(String, i64)> =
            sqlx::query_as("SELECT status, COUNT(*) FROM nodes GROUP BY status ORDER BY status")
                .fetch_all(&self.reader)
                .await?;
        let groups: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT provisioning_state, desired, COUNT(*) FROM groups \
             GROUP BY provisioning_state, desired ORDER BY provisioning_state, desired",
        )
        .fetch_all(&self.reader)
        .await?;
        let pending: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM groups WHERE node_id IS NULL AND desired = 'Running' \
             AND settled_ms IS NULL AND provisioning_state != 'Failed'",
        )
        .fetch_one(&self.reader)
        .await?;
        let ledger: i64 = sqlx::query_scalar("SELECT COALESCE(SUM(rows), 0) FROM usage_days")
            .fetch_one(&self.reader)
            .await?;
        Ok(Census {
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
        })
    }
}
