//! The census in SQLite: four counting queries on the reader pool.

use super::SqliteStore;
use crate::store::census::{GROUPS_SQL, NODES_SQL, PENDING_SQL};
use crate::store::{Census, CensusStore, Result};

#[async_trait::async_trait]
impl CensusStore for SqliteStore {
    async fn census(&self) -> Result<Census> {
        let nodes = sqlx::query_as(NODES_SQL).fetch_all(&self.reader).await?;
        let groups = sqlx::query_as(GROUPS_SQL).fetch_all(&self.reader).await?;
        let pending = sqlx::query_scalar(PENDING_SQL)
            .fetch_one(&self.reader)
            .await?;
        let ledger = sqlx::query_scalar("SELECT COALESCE(SUM(rows), 0) FROM usage_days")
            .fetch_one(&self.reader)
            .await?;
        Ok(Census::from_rows(nodes, groups, pending, ledger))
    }
}
