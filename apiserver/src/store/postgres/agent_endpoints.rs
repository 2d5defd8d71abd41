//! Agent endpoints in PostgreSQL: a column of the node's row.

use super::PgStore;
use crate::store::{AgentEndpointStore, Result};

#[async_trait::async_trait]
impl AgentEndpointStore for PgStore {
    async fn set_agent_endpoint(&self, node_id: &str, endpoint: Option<&str>) -> Result<()> {
        sqlx::query("UPDATE nodes SET agent_endpoint = $1 WHERE id = $2 AND agent_endpoint IS DISTINCT FROM $1")
            .bind(endpoint)
            .bind(node_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn agent_endpoint(&self, node_id: &str) -> Result<Option<String>> {
        let endpoint: Option<Option<String>> =
            sqlx::query_scalar("SELECT agent_endpoint FROM nodes WHERE id = $1")
                .bind(node_id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(endpoint.flatten())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use crate::store::AgentEndpointStore as _;
    use crate::store::postgres::tests::fresh_store;

    /// The conformance case's assertions, with the node written directly (this backend's
    /// `NodeStore` is another module's).
    #[tokio::test]
    async fn the_latest_endpoint_wins_and_none_forgets() {
        let store = fresh_store().await;
        for id in ["n1", "n2"] {
            sqlx::query(
                "INSERT INTO nodes (id, name, os_type, cpu_millis, memory_mib, gpu, labels, \
                 agent_version, status, last_heartbeat_ms, joined_ms) \
                 VALUES ($1, $1, 'Linux', 1000, 1024, 0, '{}', 't', 'Ready', 1, 1)",
            )
            .bind(id)
            .execute(&store.pool)
            .await
            .unwrap();
        }
        assert_eq!(store.agent_endpoint("n1").await.unwrap(), None);
        store
            .set_agent_endpoint("n1", Some("https://10.0.0.1:8445"))
            .await
            .unwrap();
        store
            .set_agent_endpoint("n1", Some("https://10.0.0.2:8445"))
            .await
            .unwrap();
        store
            .set_agent_endpoint("n2", Some("https://10.0.0.3:8445"))
            .await
            .unwrap();
        assert_eq!(
            store.agent_endpoint("n1").await.unwrap().as_deref(),
            Some("https://10.0.0.2:8445")
        );
        store.set_agent_endpoint("n1", None).await.unwrap();
        assert_eq!(store.agent_endpoint("n1").await.unwrap(), None);
        assert_eq!(
            store.agent_endpoint("n2").await.unwrap().as_deref(),
            Some("https://10.0.0.3:8445")
        );
        store
            .set_agent_endpoint("ghost", Some("https://10.0.0.9:8445"))
            .await
            .unwrap();
        assert_eq!(store.agent_endpoint("ghost").await.unwrap(), None);
    }
}
