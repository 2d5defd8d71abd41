//! Lost, cordoned, drained and deleted nodes (sqlite). One writer: each is one transaction, and no
//! placement, report or heartbeat interleaves with it.

use sqlx::SqliteConnection;

use super::{SqliteStore, billing};
use crate::billing::meter::MeterEvent;
use crate::store::node_lifecycle::{Eviction, TakenOff, take_off};
use crate::store::rows::{GROUP_COLUMNS, group_from_row};
use crate::store::{NodeDeleteRefusal, NodeLifecycleStore, Result, Unassigned};

/// Takes every group off `node_id`: each moves (Pending again, status cleared, waiting since now)
/// or settles (status kept), with a new placement epoch and its event. The node's capacity is the
/// caller's to reset.
async fn take_all_off(
    conn: &mut SqliteConnection,
    node_id: &str,
    node_name: &str,
    why: Eviction,
    now_ms: i64,
) -> Result<Unassigned> {
    let sql = format!("SELECT {GROUP_COLUMNS} FROM groups g WHERE g.node_id = ? ORDER BY g.id");
    let rows = sqlx::query(&sql)
        .bind(node_id)
        .fetch_all(&mut *conn)
        .await?;
    let mut taken: Vec<TakenOff> = Vec::with_capacity(rows.len());
    for row in &rows {
        taken.push(take_off(&group_from_row(row)?, node_name, why, now_ms));
    }
    for group in &taken {
        let sql = if group.moved {
            "UPDATE groups SET node_id = NULL, placement = placement + 1, events = ?1, updated_ms = ?2, \
             provisioning_state = ?3, status = NULL, pending_since_ms = ?2 WHERE id = ?4"
        } else {
            "UPDATE groups SET node_id = NULL, placement = placement + 1, events = ?1, updated_ms = ?2, \
             provisioning_state = ?3, settled_ms = ?2 WHERE id = ?4"
        };
        sqlx::query(sql)
            .bind(&group.events)
            .bind(now_ms)
            .bind(group.provisioning_state.as_str())
            .bind(&group.id)
            .execute(&mut *conn)
            .await?;
    }
    Ok(Unassigned::of(&taken))
}

/// Ends billing of the node's unfinished runs at `at_ms` (node clock), for good: the node's later
/// reports about the groups taken off carry an old placement epoch and are not metered.
async fn end_runs(conn: &mut SqliteConnection, node_id: &str, at_ms: i64) -> Result<()> {
    if at_ms > 0 {
        let lost = MeterEvent::NodeLost {
            node_id: node_id.to_owned(),
            at_ms,
        };
        billing::record(conn, &[lost]).await?;
    }
    Ok(())
}

#[async_trait::async_trait]
impl NodeLifecycleStore for SqliteStore {
    async fn lose_node(
        &self,
        id: &str,
        not_heard_since_ms: i64,
        now_ms: i64,
        force: bool,
    ) -> Result<Option<Unassigned>> {
        let mut tx = self.writer.begin().await?;
        let node: Option<(String, i64)> = sqlx::query_as(
            "UPDATE nodes SET status = 'Lost', cpu_used = 0, memory_used = 0, gpu_used = 0, \
             cordoned = CASE WHEN ?2 THEN 1 ELSE cordoned END \
             WHERE id = ?1 AND (?2 OR (status = 'NotReady' AND last_heartbeat_ms <= ?3)) \
             RETURNING name, last_heartbeat_ms",
        )
        .bind(id)
        .bind(force)
        .bind(not_heard_since_ms)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((name, last_heard_ms)) = node else {
            return Ok(None);
        };
        let why = Eviction::Lost { last_heard_ms };
        let unassigned = take_all_off(&mut tx, id, &name, why, now_ms).await?;
        if self.billing {
            // NotReady ended the runs at the node's last message already (a forced loss of a
            // Ready node ends them here); the same loss again changes nothing.
            let last = billing::last_node_ms(&mut tx, id).await?;
            end_runs(&mut tx, id, last).await?;
        }
        tx.commit().await?;
        Ok(Some(unassigned))
    }

    async fn set_cordoned(&self, id: &str, cordoned: bool) -> Result<bool> {
        let changed = sqlx::query(
            "UPDATE nodes SET cordoned = ?1, draining = CASE WHEN ?1 THEN draining ELSE 0 END \
             WHERE id = ?2",
        )
        .bind(cordoned)
        .bind(id)
        .execute(&self.writer)
        .await?;
        Ok(changed.rows_affected() == 1)
    }

    async fn drain_node(&self, id: &str, now_ms: i64) -> Result<Option<Unassigned>> {
        let mut tx = self.writer.begin().await?;
        let name: Option<String> = sqlx::query_scalar(
            "UPDATE nodes SET cordoned = 1, draining = 1, cpu_used = 0, memory_used = 0, gpu_used = 0 \
             WHERE id = ? RETURNING name",
        )
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(name) = name else {
            return Ok(None);
        };
        let unassigned = take_all_off(&mut tx, id, &name, Eviction::Drained, now_ms).await?;
        if self.billing {
            // As a stop does: billing ends now (in the node's clock, never before its last message,
            // so no run it reported is left open).
            let last = billing::last_node_ms(&mut tx, id).await?;
            end_runs(&mut tx, id, now_ms.max(last)).await?;
        }
        tx.commit().await?;
        Ok(Some(unassigned))
    }

    async fn delete_node(&self, id: &str) -> Result<std::result::Result<bool, NodeDeleteRefusal>> {
        let mut tx = self.writer.begin().await?;
        let groups: i64 = sqlx::query_scalar("SELECT count(*) FROM groups WHERE node_id = ?")
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
        if groups > 0 {
            return Ok(Err(NodeDeleteRefusal::NotEmpty {
                groups: groups as u64,
            }));
        }
        let deleted = sqlx::query("DELETE FROM nodes WHERE id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected()
            == 1;
        tx.commit().await?;
        Ok(Ok(deleted))
    }
}
