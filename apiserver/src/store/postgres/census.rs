//! The census in PostgreSQL: four counting queries on the pool.

use super::PgStore;
use crate::store::census::{GROUPS_SQL, NODES_SQL, PENDING_SQL};
use crate::store::{Census, CensusStore, Result};

#[async_trait::async_trait]
impl CensusStore for PgStore {
    async fn census(&self) -> Result<Census> {
        let nodes = sqlx::query_as(NODES_SQL).fetch_all(&self.pool).await?;
        let groups = sqlx::query_as(GROUPS_SQL).fetch_all(&self.pool).await?;
        let pending = sqlx::query_scalar(PENDING_SQL)
            .fetch_one(&self.pool)
            .await?;
        let ledger = sqlx::query_scalar("SELECT COALESCE(SUM(rows), 0)::BIGINT FROM usage_days")
            .fetch_one(&self.pool)
            .await?;
        Ok(Census::from_rows(nodes, groups, pending, ledger))
    }
}
