//! Where each node's agent serves `AgentService` (logs, exec), from its latest `Hello`. Kept after the
//! Sync stream breaks: the agent's service may well outlive a stream, and a dead one is answered as
//! unreachable.

use std::collections::HashMap;
use std::sync::Mutex;

use super::lock;

#[derive(Debug, Default)]
pub(super) struct Endpoints {
    by_node: Mutex<HashMap<String, String>>,
}

impl Endpoints {
    /// `None` if the node serves none or has not said since the apiserver started.
    pub(super) fn get(&self, node_id: &str) -> Option<String> {
        lock(&self.by_node).get(node_id).cloned()
    }

    /// What the node's `Hello` said; empty: it serves none.
    pub(super) fn remember(&self, node_id: &str, endpoint: &str) {
        let mut by_node = lock(&self.by_node);
        if endpoint.is_empty() {
            by_node.remove(node_id);
        } else if by_node.get(node_id).map(String::as_str) != Some(endpoint) {
            tracing::info!(node = %node_id, %endpoint, "agent endpoint");
            by_node.insert(node_id.to_owned(), endpoint.to_owned());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_latest_hello_wins_and_an_empty_one_forgets() {
        let endpoints = Endpoints::default();
        assert_eq!(endpoints.get("n1"), None);
        endpoints.remember("n1", "https://10.0.0.1:8444");
        endpoints.remember("n1", "https://10.0.0.2:8444");
        endpoints.remember("n2", "https://10.0.0.3:8444");
        assert_eq!(
            endpoints.get("n1").as_deref(),
            Some("https://10.0.0.2:8444")
        );
        endpoints.remember("n1", "");
        assert_eq!(endpoints.get("n1"), None);
        assert_eq!(
            endpoints.get("n2").as_deref(),
            Some("https://10.0.0.3:8444")
        );
    }
}
