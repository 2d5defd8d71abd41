//! Resource groups: a subscription's named sets of container groups, with ARM's attributes.

use std::collections::BTreeMap;

use super::Result;

/// How many resource groups a subscription may have (ARM's limit).
pub const RESOURCE_GROUPS_PER_SUBSCRIPTION: i64 = 980;

/// A resource group: a subscription's named set of container groups, with ARM's attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceGroupRecord {
    pub subscription: String,
    /// As its creator wrote it; compared without case.
    pub name: String,
    pub location: String,
    pub tags: BTreeMap<String, String>,
    pub created_ms: i64,
    pub updated_ms: i64,
}

/// What creating a resource group did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourceGroupCreation {
    Created,
    /// One of that name (in any case) exists; nothing changed.
    Exists,
    /// The subscription has [`RESOURCE_GROUPS_PER_SUBSCRIPTION`] already; nothing changed.
    LimitReached,
}

/// What deleting a resource group did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourceGroupDeletion {
    Deleted,
    NotFound,
    /// Container groups are (again) in it; nothing changed.
    NotEmpty,
}

/// Resource groups. Implicit ones are created with the first container group into them
/// ([`super::GroupStore::create_group`]).
#[async_trait::async_trait]
pub trait ResourceGroupStore: Send + Sync {
    /// A resource group by name (compared without case).
    async fn resource_group(
        &self,
        subscription: &str,
        name: &str,
    ) -> Result<Option<ResourceGroupRecord>>;
    /// A subscription's resource groups, by name.
    async fn resource_groups(&self, subscription: &str) -> Result<Vec<ResourceGroupRecord>>;
    /// Creates a resource group unless one of its name exists or the subscription is at its limit.
    async fn create_resource_group(
        &self,
        group: &ResourceGroupRecord,
    ) -> Result<ResourceGroupCreation>;
    async fn set_resource_group_tags(
        &self,
        subscription: &str,
        name: &str,
        tags: &BTreeMap<String, String>,
        now_ms: i64,
    ) -> Result<()>;
    /// Deletes a resource group that holds no container group; the check and the delete are one
    /// decision.
    async fn delete_resource_group(
        &self,
        subscription: &str,
        name: &str,
    ) -> Result<ResourceGroupDeletion>;
}
