//! Lost, cordoned, drained and deleted nodes (sqlite).

use super::SqliteStore;
use crate::store::{NodeDeleteRefusal, NodeLifecycleStore, Result, StoreError, Unassigned};

// TODO(lane store): the real thing.
#[async_trait::async_trait]
impl NodeLifecycleStore for SqliteStore {
    async fn lose_node(
        &self,
        _id: &str,
        _not_heard_since_ms: i64,
        _now_ms: i64,
        _force: bool,
    ) -> Result<Option<Unassigned>> {
        Err(StoreError::Unsupported("lose_node: not yet"))
    }

    async fn set_cordoned(&self, _id: &str, _cordoned: bool) -> Result<bool> {
        Err(StoreError::Unsupported("set_cordoned: not yet"))
    }

    async fn drain_node(&self, _id: &str, _now_ms: i64) -> Result<Option<Unassigned>> {
        Err(StoreError::Unsupported("drain_node: not yet"))
    }

    async fn delete_node(&self, _id: &str) -> Result<std::result::Result<bool, NodeDeleteRefusal>> {
        Err(StoreError::Unsupported("delete_node: not yet"))
    }
}
