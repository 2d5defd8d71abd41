//! Resource groups in PostgreSQL: explicit ones (PUT) here; implicit ones are inserted with the
//! first container group created into them, in the same transaction (`creates`).
//!
//! Two rules need more than a guarded statement at READ COMMITTED:
//! - the per-subscription limit is a count, and two inserts cannot see each other's new row: a new
//!   resource group takes the subscription's advisory lock first (`pg_advisory_xact_lock`, held
//!   until commit), so the count of the statement after it sees every committed one;
//! - "delete only when empty": a create into an existing resource group holds its row `FOR KEY
//!   SHARE` until it commits, and a delete takes the row `FOR UPDATE` first (waiting for those
//!   creates) and only then, in a new statement that sees them, checks that it is empty.

use std::collections::BTreeMap;

use sqlx::PgConnection;

use super::{PgStore, RESOURCE_GROUP_LOCK};
use crate::store::rows::{RESOURCE_GROUP_COLUMNS, json, resource_group_from_row};
use crate::store::{
    RESOURCE_GROUPS_PER_SUBSCRIPTION, ResourceGroupCreation, ResourceGroupDeletion,
    ResourceGroupRecord, ResourceGroupStore, Result,
};

/// Inserts the group unless its name is taken or the subscription is at the limit. Runs inside the
/// caller's transaction (the advisory lock is held until it ends).
pub(super) async fn insert(
    conn: &mut PgConnection,
    group: &ResourceGroupRecord,
) -> std::result::Result<ResourceGroupCreation, sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
        .bind(RESOURCE_GROUP_LOCK)
        .bind(&group.subscription)
        .execute(&mut *conn)
        .await?;
    let inserted = sqlx::query(
        "INSERT INTO resource_groups (subscription, name, name_as, location, tags, created_ms, updated_ms) \
         SELECT $1, $2, $3, $4, $5, $6, $6 \
         WHERE (SELECT COUNT(*) FROM resource_groups WHERE subscription = $1) < $7 \
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
    let exists: Option<i32> =
        sqlx::query_scalar("SELECT 1 FROM resource_groups WHERE subscription = $1 AND name = $2")
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

#[async_trait::async_trait]
impl ResourceGroupStore for PgStore {
    async fn resource_group(
        &self,
        subscription: &str,
        name: &str,
    ) -> Result<Option<ResourceGroupRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {RESOURCE_GROUP_COLUMNS} FROM resource_groups WHERE subscription = $1 AND name = $2"
        ))
        .bind(subscription)
        .bind(name.to_ascii_lowercase())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(resource_group_from_row).transpose()
    }

    async fn resource_groups(&self, subscription: &str) -> Result<Vec<ResourceGroupRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {RESOURCE_GROUP_COLUMNS} FROM resource_groups WHERE subscription = $1 ORDER BY name"
        ))
        .bind(subscription)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(resource_group_from_row).collect()
    }

    async fn create_resource_group(
        &self,
        group: &ResourceGroupRecord,
    ) -> Result<ResourceGroupCreation> {
        let mut tx = self.pool.begin().await?;
        let outcome = insert(&mut tx, group).await?;
        tx.commit().await?;
        Ok(outcome)
    }

    async fn set_resource_group_tags(
        &self,
        subscription: &str,
        name: &str,
        tags: &BTreeMap<String, String>,
        now_ms: i64,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE resource_groups SET tags = $1, updated_ms = $2 WHERE subscription = $3 AND name = $4",
        )
        .bind(json(tags))
        .bind(now_ms)
        .bind(subscription)
        .bind(name.to_ascii_lowercase())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn delete_resource_group(
        &self,
        subscription: &str,
        name: &str,
    ) -> Result<ResourceGroupDeletion> {
        let key = name.to_ascii_lowercase();
        let mut tx = self.pool.begin().await?;
        let exists: Option<i32> = sqlx::query_scalar(
            "SELECT 1 FROM resource_groups WHERE subscription = $1 AND name = $2 FOR UPDATE",
        )
        .bind(subscription)
        .bind(&key)
        .fetch_optional(&mut *tx)
        .await?;
        if exists.is_none() {
            return Ok(ResourceGroupDeletion::NotFound);
        }
        let deleted = sqlx::query(
            "DELETE FROM resource_groups WHERE subscription = $1 AND name = $2 \
             AND NOT EXISTS (SELECT 1 FROM groups WHERE subscription = $1 AND resource_group = $2)",
        )
        .bind(subscription)
        .bind(&key)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(if deleted.rows_affected() == 1 {
            ResourceGroupDeletion::Deleted
        } else {
            ResourceGroupDeletion::NotEmpty
        })
    }
}
