//! Where each node's agent serves `AgentService` (logs, exec, attach), as its latest `Hello` said:
//! written by the replica holding the node's Sync stream, read by whichever replica serves a request.

use super::Result;

/// Agent endpoints, a column of the node's row.
#[async_trait::async_trait]
pub trait AgentEndpointStore: Send + Sync {
    /// Records what node `node_id`'s latest `Hello` said; `None`: it serves none. An unknown node is
    /// no error (it changes nothing).
    async fn set_agent_endpoint(&self, node_id: &str, endpoint: Option<&str>) -> Result<()>;
    /// `None` if the node is unknown or serves none.
    async fn agent_endpoint(&self, node_id: &str) -> Result<Option<String>>;
}
