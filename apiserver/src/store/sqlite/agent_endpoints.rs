//! Agent endpoints in SQLite: a column of the node's row.

use super::SqliteStore;
use crate::store::{AgentEndpointStore, Result};

#[async_trait::async_trait]
impl AgentEndpointStore for SqliteStore {
    async fn set_agent_endpoint(&self, node_id: &str, endpoint: Option<&str>) -> Result<()> {
        sqlx::query("UPDATE nodes SET agent_endpoint = ? WHERE id = ? AND agent_endpoint IS NOT ?")
            .bind(endpoint)
            .bind(node_id)
            .bind(endpoint)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn agent_endpoint(&self, node_id: &str) -> Result<Option<String>> {
        let endpoint: Option<Option<String>> =
            sqlx::query_scalar("SELECT agent_endpoint FROM nodes WHERE id = ?")
                .bind(node_id)
                .fetch_optional(&self.reader)
                .await?;
        Ok(endpoint.flatten())
    }
}
