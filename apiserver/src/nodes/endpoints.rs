//! Where each node's agent serves `AgentService` (logs, exec), from its latest `Hello`, kept in the
//! store ([`AgentEndpointStore`]): the replica holding the node's Sync stream writes it, any replica
//! serving a logs or exec request reads it. Kept after the Sync stream breaks: the agent's service may
//! well outlive a stream, and a dead one is answered as unreachable. Read from the store each time
//! (one indexed row): a per-replica cache would go stale when the node says Hello to another replica.

use std::sync::Arc;

use crate::store::{AgentEndpointStore, StoreError};

pub(super) struct Endpoints {
    store: Arc<dyn AgentEndpointStore>,
}

impl Endpoints {
    pub(super) fn new(store: Arc<dyn AgentEndpointStore>) -> Self {
        Self { store }
    }

    /// `None` if the node serves none or has not said.
    pub(super) async fn get(&self, node_id: &str) -> Result<Option<String>, StoreError> {
        self.store.agent_endpoint(node_id).await
    }

    /// What the node's `Hello` said; empty: it serves none. Written only if the store says otherwise
    /// (a reconnect storm of nodes whose endpoint did not change costs reads, not writes).
    pub(super) async fn remember(&self, node_id: &str, endpoint: &str) -> Result<(), StoreError> {
        let endpoint = (!endpoint.is_empty()).then_some(endpoint);
        if self.store.agent_endpoint(node_id).await?.as_deref() == endpoint {
            return Ok(());
        }
        tracing::info!(node = %node_id, ?endpoint, "agent endpoint");
        self.store.set_agent_endpoint(node_id, endpoint).await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::store::SqliteStore;
    use crate::store::conformance::fixtures;

    #[tokio::test]
    async fn what_one_replica_remembers_another_reads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let a = Arc::new(SqliteStore::open(&path).await.unwrap());
        let b = Arc::new(SqliteStore::open(&path).await.unwrap());
        fixtures::join(&*a, "n1", 1000).await;
        let (on_a, on_b) = (Endpoints::new(a), Endpoints::new(b));
        assert_eq!(on_b.get("n1").await.unwrap(), None);
        on_a.remember("n1", "https://10.0.0.1:8444").await.unwrap();
        assert_eq!(
            on_b.get("n1").await.unwrap().as_deref(),
            Some("https://10.0.0.1:8444")
        );
        on_a.remember("n1", "").await.unwrap();
        assert_eq!(
            on_b.get("n1").await.unwrap(),
            None,
            "an empty Hello forgets"
        );
    }
}
