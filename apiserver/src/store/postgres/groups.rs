//! Container groups in PostgreSQL: reads, guarded changes, stop, start, restart and delete.
//!
//! A change decided on the row as it is takes the row with `SELECT … FOR UPDATE` (delete, stop:
//! what capacity to give back depends on the node the group is on) or is one guarded `UPDATE`
//! (update, start: the generation or the desired state is in the `WHERE`, which PostgreSQL
//! re-evaluates on the newest row version when another writer got there first).

use std::collections::BTreeMap;

use sqlx::{PgConnection, Postgres, Row, Transaction};

use super::{PgStore, billing, operations};
use crate::billing::meter::CapCause;
use crate::model::{GroupSpec, Size};
use crate::store::rows::{GROUP_COLUMNS, dns_record, group_from_row, json, restart_columns};
use crate::store::sqlx_error::is_unique_violation;
use crate::store::{
    Change, Conflict, GroupKey, GroupRecord, GroupStore, NewGroup, OperationRecord, Result,
    StoreError, capped,
};

/// Records the operation that waits for `generation` and commits the change that bumped it.
async fn record_operation(
    mut tx: Transaction<'_, Postgres>,
    generation: i64,
    operation: &OperationRecord,
) -> Result<i64> {
    operations::insert(
        &mut tx,
        &OperationRecord {
            generation,
            ..operation.clone()
        },
    )
    .await?;
    tx.commit().await?;
    Ok(generation)
}

/// Why a guarded change of a group matched no row: it is gone, or it moved.
async fn refused(mut tx: Transaction<'_, Postgres>, id: &str) -> Result<Change> {
    let exists: Option<i32> = sqlx::query_scalar("SELECT 1 FROM groups WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(if exists.is_some() {
        Change::Moved
    } else {
        Change::NotFound
    })
}

/// Gives back `size` on `node_id`.
pub(super) async fn release(conn: &mut PgConnection, node_id: &str, size: &Size) -> Result<()> {
    sqlx::query(
        "UPDATE nodes SET cpu_used = cpu_used - $1, memory_used = memory_used - $2, gpu_used = gpu_used - $3 \
         WHERE id = $4",
    )
    .bind(size.cpu_millis as i64)
    .bind(size.memory_mib as i64)
    .bind(i64::from(size.gpu))
    .bind(node_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Takes a group off its node and gives back the capacity it held there, if any (delete and stop);
/// returns the group as it was. The row is locked first, so of racing deletes and stops the later
/// ones see it unassigned (or gone): capacity is released exactly once, and a placement committed
/// before the lock is seen and undone.
async fn unassign(conn: &mut PgConnection, id: &str) -> Result<Option<GroupRecord>> {
    let row = sqlx::query(&format!(
        "SELECT {GROUP_COLUMNS} FROM groups g WHERE g.id = $1 FOR UPDATE"
    ))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let group = group_from_row(&row)?;
    if let Some(node) = &group.node_id {
        sqlx::query("UPDATE groups SET node_id = NULL WHERE id = $1")
            .bind(id)
            .execute(&mut *conn)
            .await?;
        release(conn, node, &group.requests).await?;
    }
    Ok(Some(group))
}

#[async_trait::async_trait]
impl GroupStore for PgStore {
    async fn group(&self, key: &GroupKey) -> Result<Option<GroupRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {GROUP_COLUMNS} FROM groups g \
             WHERE g.subscription = $1 AND g.resource_group = $2 AND g.name = $3"
        ))
        .bind(&key.subscription)
        .bind(&key.resource_group)
        .bind(&key.name)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(group_from_row).transpose()
    }

    async fn group_by_id(&self, id: &str) -> Result<Option<GroupRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {GROUP_COLUMNS} FROM groups g WHERE g.id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(group_from_row).transpose()
    }

    async fn list_groups(
        &self,
        subscription: &str,
        resource_group: Option<&str>,
        after: i64,
        limit: i64,
    ) -> Result<Vec<GroupRecord>> {
        // A NULL resource group lists the whole subscription.
        let rows = sqlx::query(&format!(
            "SELECT {GROUP_COLUMNS} FROM groups g WHERE g.subscription = $1 \
             AND ($2::text IS NULL OR g.resource_group = $2) AND g.seq > $3 ORDER BY g.seq LIMIT $4"
        ))
        .bind(subscription)
        .bind(resource_group.map(str::to_ascii_lowercase))
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(group_from_row).collect()
    }

    async fn create_group(&self, g: &NewGroup) -> Result<()> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.creates
            .send((g.clone(), reply))
            .await
            .map_err(|_| StoreError::Unavailable)?;
        answer.await.map_err(|_| StoreError::Unavailable)?
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
        let mut tx = self.pool.begin().await?;
        let generation: Option<i64> = sqlx::query_scalar(
            "UPDATE groups SET spec = $1, sealed_spec = $2, tags = $3, generation = generation + 1, \
             provisioning_state = CASE WHEN desired = 'Running' THEN 'Updating' ELSE provisioning_state END, \
             pending_since_ms = CASE WHEN settled_ms IS NULL THEN pending_since_ms ELSE $4 END, \
             settled_ms = NULL, updated_ms = $4, fqdn = $7 WHERE id = $5 AND generation = $6 RETURNING generation",
        )
        .bind(json(&spec.redacted()))
        .bind(sealed)
        .bind(json(tags))
        .bind(now_ms)
        .bind(id)
        .bind(expected_generation)
        .bind(fqdn)
        .fetch_optional(&mut *tx)
        .await
        .map_err(|err| {
            if is_unique_violation(&err) {
                StoreError::Conflict(Conflict::DnsLabel)
            } else {
                err.into()
            }
        })?;
        match generation {
            Some(generation) => Ok(Change::Applied {
                generation: record_operation(tx, generation, operation).await?,
            }),
            None => refused(tx, id).await,
        }
    }

    async fn set_tags(&self, id: &str, tags: &BTreeMap<String, String>, now_ms: i64) -> Result<()> {
        sqlx::query("UPDATE groups SET tags = $1, updated_ms = $2 WHERE id = $3")
            .bind(json(tags))
            .bind(now_ms)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn delete_group(&self, id: &str, now_ms: i64) -> Result<Option<GroupRecord>> {
        let mut tx = self.pool.begin().await?;
        let Some(group) = unassign(&mut tx, id).await? else {
            return Ok(None);
        };
        operations::cancel(&mut tx, id, now_ms).await?;
        if self.billing {
            billing::remember_group(&mut tx, &group).await?;
            billing::record(&mut tx, &[capped(&group, now_ms, CapCause::Delete)]).await?;
        }
        sqlx::query("DELETE FROM groups WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE subscription_usage SET groups = groups - 1, cpu_millis = cpu_millis - $1 \
             WHERE subscription = $2",
        )
        .bind(group.requests.cpu_millis as i64)
        .bind(&group.subscription)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(group))
    }

    async fn stop_group(&self, id: &str, now_ms: i64) -> Result<Option<GroupRecord>> {
        let mut tx = self.pool.begin().await?;
        let Some(group) = unassign(&mut tx, id).await? else {
            return Ok(None);
        };
        sqlx::query(
            "UPDATE groups SET desired = 'Stopped', node_id = NULL, provisioning_state = 'Succeeded', \
             updated_ms = $1 WHERE id = $2",
        )
        .bind(now_ms)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        operations::cancel(&mut tx, id, now_ms).await?;
        if self.billing {
            billing::record(&mut tx, &[capped(&group, now_ms, CapCause::Stop)]).await?;
        }
        tx.commit().await?;
        Ok(Some(group))
    }

    async fn start_group(
        &self,
        id: &str,
        operation: &OperationRecord,
        now_ms: i64,
    ) -> Result<Change> {
        let mut tx = self.pool.begin().await?;
        // Only a stopped group (which holds no node and no capacity) starts.
        let generation: Option<i64> = sqlx::query_scalar(
            "UPDATE groups SET desired = 'Running', node_id = NULL, status = NULL, generation = generation + 1, \
             provisioning_state = 'Pending', events = '[]', updated_ms = $1, pending_since_ms = $1, \
             settled_ms = NULL WHERE id = $2 AND desired = 'Stopped' RETURNING generation",
        )
        .bind(now_ms)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        match generation {
            Some(generation) => Ok(Change::Applied {
                generation: record_operation(tx, generation, operation).await?,
            }),
            None => refused(tx, id).await,
        }
    }

    async fn restart_group(
        &self,
        id: &str,
        operation: &OperationRecord,
        now_ms: i64,
    ) -> Result<Option<String>> {
        let mut tx = self.pool.begin().await?;
        let sql = format!(
            "UPDATE groups SET generation = generation + 1, {}, updated_ms = $1 \
             WHERE id = $2 RETURNING generation, node_id",
            restart_columns("$1")
        );
        let (generation, node_id): (i64, Option<String>) = sqlx::query_as(&sql)
            .bind(now_ms)
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
        record_operation(tx, generation, operation).await?;
        Ok(node_id)
    }

    async fn sealed_spec(&self, id: &str) -> Result<Option<Vec<u8>>> {
        Ok(
            sqlx::query_scalar("SELECT sealed_spec FROM groups WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    async fn group_with_sealed(&self, id: &str) -> Result<Option<(GroupRecord, Vec<u8>)>> {
        let row = sqlx::query(&format!(
            "SELECT {GROUP_COLUMNS}, g.sealed_spec FROM groups g WHERE g.id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        Ok(Some((group_from_row(&row)?, row.try_get("sealed_spec")?)))
    }

    async fn groups_with_sealed(&self, ids: &[String]) -> Result<Vec<(GroupRecord, Vec<u8>)>> {
        let rows = sqlx::query(&format!(
            "SELECT {GROUP_COLUMNS}, g.sealed_spec FROM groups g WHERE g.id = ANY($1)"
        ))
        .bind(ids)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| Ok((group_from_row(row)?, row.try_get("sealed_spec")?)))
            .collect()
    }

    async fn groups_on_node(&self, node_id: &str) -> Result<Vec<GroupRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {GROUP_COLUMNS} FROM groups g WHERE g.node_id = $1 ORDER BY g.seq"
        ))
        .bind(node_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(group_from_row).collect()
    }

    async fn dns_records(&self) -> Result<Vec<(String, Vec<std::net::IpAddr>)>> {
        let rows = sqlx::query(
            "SELECT fqdn, status FROM groups \
             WHERE fqdn IS NOT NULL AND desired = 'Running' AND node_id IS NOT NULL AND status IS NOT NULL",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut records = Vec::new();
        for row in &rows {
            records.extend(dns_record(row)?);
        }
        Ok(records)
    }
}
