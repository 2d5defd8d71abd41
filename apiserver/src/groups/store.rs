//! What the group service needs of the store (its port): part of [`Store`]'s `GroupStore` and
//! `OperationStore`, and nothing else.
//!
//! A narrow port keeps the service honest about what it touches and lets a test put a store in
//! front of it that changes the world between two of its steps (a placement landing between a
//! read and a stop).

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::model::GroupSpec;
use crate::store::{Change, GroupKey, GroupRecord, NewGroup, OperationRecord, Result, Store};

/// The group service's store. See [`Store`] for what each method promises.
#[async_trait::async_trait]
pub trait ServiceStore: Send + Sync + 'static {
    async fn group(&self, key: &GroupKey) -> Result<Option<GroupRecord>>;
    async fn group_by_id(&self, id: &str) -> Result<Option<GroupRecord>>;
    async fn list_groups(
        &self,
        subscription: &str,
        resource_group: Option<&str>,
        after: i64,
        limit: i64,
    ) -> Result<Vec<GroupRecord>>;
    async fn create_group(&self, group: &NewGroup) -> Result<()>;
    #[allow(clippy::too_many_arguments)]
    async fn update_group(
        &self,
        id: &str,
        expected_generation: i64,
        spec: &GroupSpec,
        sealed: &[u8],
        tags: &BTreeMap<String, String>,
        fqdn: Option<&str>,
        operation: &OperationRecord,
        now_ms: i64,
    ) -> Result<Change>;
    async fn set_tags(&self, id: &str, tags: &BTreeMap<String, String>, now_ms: i64) -> Result<()>;
    async fn delete_group(&self, id: &str, now_ms: i64) -> Result<Option<GroupRecord>>;
    async fn stop_group(&self, id: &str, now_ms: i64) -> Result<Option<GroupRecord>>;
    async fn start_group(
        &self,
        id: &str,
        operation: &OperationRecord,
        now_ms: i64,
    ) -> Result<Change>;
    async fn restart_group(
        &self,
        id: &str,
        operation: &OperationRecord,
        now_ms: i64,
    ) -> Result<Option<String>>;
    async fn sealed_spec(&self, id: &str) -> Result<Option<Vec<u8>>>;
    async fn insert_operation(&self, operation: &OperationRecord) -> Result<()>;
}

#[async_trait::async_trait]
impl ServiceStore for Arc<dyn Store> {
    async fn group(&self, key: &GroupKey) -> Result<Option<GroupRecord>> {
        (**self).group(key).await
    }
    async fn group_by_id(&self, id: &str) -> Result<Option<GroupRecord>> {
        (**self).group_by_id(id).await
    }
    async fn list_groups(
        &self,
        subscription: &str,
        resource_group: Option<&str>,
        after: i64,
        limit: i64,
    ) -> Result<Vec<GroupRecord>> {
        (**self)
            .list_groups(subscription, resource_group, after, limit)
            .await
    }
    async fn create_group(&self, group: &NewGroup) -> Result<()> {
        (**self).create_group(group).await
    }
    async fn update_group(
        &self,
        id: &str,
        expected_generation: i64,
        spec: &GroupSpec,
        sealed: &[u8],
        tags: &BTreeMap<String, String>,
        fqdn: Option<&str>,
        operation: &OperationRecord,
        now_ms: i64,
    ) -> Result<Change> {
        (**self)
            .update_group(
                id,
                expected_generation,
                spec,
                sealed,
                tags,
                fqdn,
                operation,
                now_ms,
            )
            .await
    }
    async fn set_tags(&self, id: &str, tags: &BTreeMap<String, String>, now_ms: i64) -> Result<()> {
        (**self).set_tags(id, tags, now_ms).await
    }
    async fn delete_group(&self, id: &str, now_ms: i64) -> Result<Option<GroupRecord>> {
        (**self).delete_group(id, now_ms).await
    }
    async fn stop_group(&self, id: &str, now_ms: i64) -> Result<Option<GroupRecord>> {
        (**self).stop_group(id, now_ms).await
    }
    async fn start_group(
        &self,
        id: &str,
        operation: &OperationRecord,
        now_ms: i64,
    ) -> Result<Change> {
        (**self).start_group(id, operation, now_ms).await
    }
    async fn restart_group(
        &self,
        id: &str,
        operation: &OperationRecord,
        now_ms: i64,
    ) -> Result<Option<String>> {
        (**self).restart_group(id, operation, now_ms).await
    }
    async fn sealed_spec(&self, id: &str) -> Result<Option<Vec<u8>>> {
        (**self).sealed_spec(id).await
    }
    async fn insert_operation(&self, operation: &OperationRecord) -> Result<()> {
        (**self).insert_operation(operation).await
    }
}
