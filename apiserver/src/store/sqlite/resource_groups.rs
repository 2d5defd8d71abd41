//! Resource groups in SQLite: explicit ones (PUT) here; implicit ones are inserted with the first
//! container group created into them, in the same transaction (`batch`).

use std::collections::BTreeMap;

use sqlx::{SqliteConnection, SqlitePool};

use super::SqliteStore;
use super::json;
use crate::store::ResourceGroupStore;
use crate::store::rows::{RESOURCE_GROUP_COLUMNS as COLUMNS, resource_group_from_row as from_row};
use crate::store::{
    RESOURCE_GROUPS_PER_SUBSCRIPTION, ResourceGroupCreation, ResourceGroupDeletion,
    ResourceGroupRecord, Result,
};

pub(super) async fn get(
    reader: &SqlitePool,
    subscription: &str,
    name: &str,
) -> Result<Option<ResourceGroupRecord>> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM resource_groups WHERE subscription = ? AND name = ?"
    ))
    .bind(subscription)
    .bind(name.to_ascii_lowercase())
    .fetch_optional(reader)
    .await?;
    row.as_ref().map(from_row).transpose()
}

pub(super) async fn list(
    reader: &SqlitePool,
    subscription: &str,
) -> Result<Vec<ResourceGroupRecord>> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM resource_groups WHERE subscription = ? ORDER BY name"
    ))
    .bind(subscription)
    .fetch_all(reader)
    .await?;
    rows.iter().map(from_row).collect()
}

/// Inserts the group unless its name is taken or the subscription is at the limit; one statement,
/// so two racing creates cannot both pass the limit (there is one writer).
pub(super) async fn insert(
    conn: &mut SqliteConnection,
    group: &ResourceGroupRecord,
) -> Result<ResourceGroupCreation> {
    let inserted = sqlx::query(
        "INSERT INTO resource_groups (subscription, name, name_as, location, tags, created_ms, updated_ms) \
         SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?6 \
         WHERE (SELECT COUNT(*) FROM resource_groups WHERE subscription = ?1) < ?7 \
         ON CONFLICT DO NOTHING",
    )
    .bind(&group.subscription)
    .bind(group.name.to_ascii_lowercase())
    .bind(&group.name)
    .bind(&group.location)
    .bind(json(&group.tags))
    .bind(group.created_ms)
    .bind(RESOURCE_GROUPS_PER_SUBSCRIPTION)
    .execute(&mut *conn)
    .await?;
    if inserted.rows_affected() == 1 {
        return Ok(ResourceGroupCreation::Created);
    }
    let exists: Option<i64> =
        sqlx::query_scalar("SELECT 1 FROM resource_groups WHERE subscription = ? AND name = ?")
            .bind(&group.subscription)
            .bind(group.name.to_ascii_lowercase())
            .fetch_optional(&mut *conn)
            .await?;
    Ok(if exists.is_some() {
        ResourceGroupCreation::Exists
    } else {
        ResourceGroupCreation::LimitReached
    })
}

pub(super) async fn create(
    writer: &SqlitePool,
    group: &ResourceGroupRecord,
) -> Result<ResourceGroupCreation> {
    let mut conn = writer.acquire().await?;
    insert(&mut conn, group).await
}

pub(super) async fn set_tags(
    writer: &SqlitePool,
    subscription: &str,
    name: &str,
    tags: &BTreeMap<String, String>,
    now_ms: i64,
) -> Result<()> {
    sqlx::query(
        "UPDATE resource_groups SET tags = ?, updated_ms = ? WHERE subscription = ? AND name = ?",
    )
    .bind(json(tags))
    .bind(now_ms)
    .bind(subscription)
    .bind(name.to_ascii_lowercase())
    .execute(writer)
    .await?;
    Ok(())
}

/// Deletes the group if no container group is in it; the check and the delete are one statement.
pub(super) async fn delete(
    writer: &SqlitePool,
    subscription: &str,
    name: &str,
) -> Result<ResourceGroupDeletion> {
    let key = name.to_ascii_lowercase();
    let mut tx = writer.begin().await?;
    let deleted = sqlx::query(
        "DELETE FROM resource_groups WHERE subscription = ?1 AND name = ?2 \
         AND NOT EXISTS (SELECT 1 FROM groups WHERE subscription = ?1 AND resource_group = ?2)",
    )
    .bind(subscription)
    .bind(&key)
    .execute(&mut *tx)
    .await?;
    let outcome = if deleted.rows_affected() == 1 {
        ResourceGroupDeletion::Deleted
    } else {
        let exists: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM resource_groups WHERE subscription = ? AND name = ?")
                .bind(subscription)
                .bind(&key)
                .fetch_optional(&mut *tx)
                .await?;
        if exists.is_some() {
            ResourceGroupDeletion::NotEmpty
        } else {
            ResourceGroupDeletion::NotFound
        }
    };
    tx.commit().await?;
    Ok(outcome)
}

#[async_trait::async_trait]
impl ResourceGroupStore for SqliteStore {
    async fn resource_group(
        &self,
        subscription: &str,
        name: &str,
    ) -> Result<Option<ResourceGroupRecord>> {
        get(&self.reader, subscription, name).await
    }

    async fn resource_groups(&self, subscription: &str) -> Result<Vec<ResourceGroupRecord>> {
        list(&self.reader, subscription).await
    }

    async fn create_resource_group(
        &self,
        group: &ResourceGroupRecord,
    ) -> Result<ResourceGroupCreation> {
        create(&self.writer, group).await
    }

    async fn set_resource_group_tags(
        &self,
        subscription: &str,
        name: &str,
        tags: &BTreeMap<String, String>,
        now_ms: i64,
    ) -> Result<()> {
        set_tags(&self.writer, subscription, name, tags, now_ms).await
    }

    async fn delete_resource_group(
        &self,
        subscription: &str,
        name: &str,
    ) -> Result<ResourceGroupDeletion> {
        delete(&self.writer, subscription, name).await
    }
}
