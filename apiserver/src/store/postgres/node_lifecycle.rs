//! Lost, cordoned, drained and deleted nodes (postgres).
//!
//! Taking a node's groups off it locks them (`FOR UPDATE`, id order) before the node, the order of
//! every writer of both. Between that lock and the node's, a placement may still have committed a
//! group onto it (a loss is judged on a NotReady node, where placements do not reserve, but the
//! store does not rely on it): with the node locked, such late groups are locked too, `NOWAIT`, so
//! a report of one that waits for the node gives up this transaction instead of deadlocking (the
//! monitor judges again on its next tick). A drain and a forced loss cordon the node first, in a
//! statement of their own, so once they take its groups no placement commits on it any more.

use sqlx::{PgConnection, Row};

use super::{PgStore, billing};
use crate::billing::meter::MeterEvent;
use crate::store::node_lifecycle::{Eviction, TakenOff, take_off};
use crate::store::rows::{GROUP_COLUMNS, group_from_row};
use crate::store::{GroupRecord, NodeDeleteRefusal, NodeLifecycleStore, Result, Unassigned};

/// The groups on `node_id` (not those in `except`), locked in id order.
async fn lock_groups_on(
    conn: &mut PgConnection,
    node_id: &str,
    except: &[String],
    nowait: bool,
) -> Result<Vec<GroupRecord>> {
    let rows = sqlx::query(&format!(
        "SELECT {GROUP_COLUMNS} FROM groups g WHERE g.node_id = $1 AND g.id <> ALL($2) ORDER BY g.id \
         FOR UPDATE{}",
        if nowait { " NOWAIT" } else { "" }
    ))
    .bind(node_id)
    .bind(except)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter().map(group_from_row).collect()
}

/// Takes the locked `groups` off their node: each moves (Pending again, status cleared, waiting
/// since now) or settles (status kept), with a new placement epoch and its event, in one statement.
async fn take_all_off(
    conn: &mut PgConnection,
    groups: &[GroupRecord],
    node_name: &str,
    why: Eviction,
    now_ms: i64,
) -> Result<Unassigned> {
    let taken: Vec<TakenOff> = groups
        .iter()
        .map(|g| take_off(g, node_name, why, now_ms))
        .collect();
    if !taken.is_empty() {
        sqlx::query(
            "UPDATE groups SET node_id = NULL, placement = groups.placement + 1, events = t.events, \
             updated_ms = $4, \
             provisioning_state = t.provisioning_state, \
             status = CASE WHEN t.moved THEN NULL ELSE groups.status END, \
             pending_since_ms = CASE WHEN t.moved THEN $4 ELSE groups.pending_since_ms END, \
             settled_ms = CASE WHEN t.moved THEN groups.settled_ms ELSE $4 END \
             FROM unnest($1::text[], $2::bool[], $3::text[], $5::text[]) AS t(id, moved, events, provisioning_state) \
             WHERE groups.id = t.id",
        )
        .bind(taken.iter().map(|t| t.id.as_str()).collect::<Vec<_>>())
        .bind(taken.iter().map(|t| t.moved).collect::<Vec<_>>())
        .bind(taken.iter().map(|t| t.events.as_str()).collect::<Vec<_>>())
        .bind(now_ms)
        .bind(
            taken
                .iter()
                .map(|t| t.provisioning_state.as_str())
                .collect::<Vec<_>>(),
        )
        .execute(&mut *conn)
        .await?;
    }
    Ok(Unassigned::of(&taken))
}

/// Ends billing of the node's unfinished runs at `at_ms` (node clock), for good: the node's later
/// reports about the groups taken off carry an old placement epoch and are not metered.
async fn end_runs(conn: &mut PgConnection, node_id: &str, at_ms: i64) -> Result<()> {
    if at_ms > 0 {
        let lost = MeterEvent::NodeLost {
            node_id: node_id.to_owned(),
            at_ms,
        };
        billing::record(conn, &[lost]).await?;
    }
    Ok(())
}

/// Cordons a node in a statement of its own; returns whether it exists.
async fn cordon(conn: &mut PgConnection, id: &str, draining: bool) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE nodes SET cordoned = 1, draining = CASE WHEN $2 THEN 1 ELSE draining END WHERE id = $1",
    )
    .bind(id)
    .bind(draining)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

#[async_trait::async_trait]
impl NodeLifecycleStore for PgStore {
    async fn lose_node(
        &self,
        id: &str,
        not_heard_since_ms: i64,
        now_ms: i64,
        force: bool,
    ) -> Result<Option<Unassigned>> {
        if force {
            let mut conn = self.pool.acquire().await?;
            if !cordon(&mut conn, id, false).await? {
                return Ok(None);
            }
        }
        let mut tx = self.pool.begin().await?;
        let mut groups = lock_groups_on(&mut tx, id, &[], false).await?;
        // The guard is re-evaluated on the newest row: a heartbeat another replica committed wins.
        let node = sqlx::query(
            "UPDATE nodes SET status = 'Lost', cpu_used = 0, memory_used = 0, gpu_used = 0 \
             WHERE id = $1 AND ($2 OR (status = 'NotReady' AND last_heartbeat_ms <= $3)) \
             RETURNING name, last_heartbeat_ms",
        )
        .bind(id)
        .bind(force)
        .bind(not_heard_since_ms)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(node) = node else {
            return Ok(None);
        };
        let (name, last_heard_ms): (String, i64) =
            (node.try_get("name")?, node.try_get("last_heartbeat_ms")?);
        let seen: Vec<String> = groups.iter().map(|g| g.id.clone()).collect();
        groups.extend(lock_groups_on(&mut tx, id, &seen, true).await?);
        let why = Eviction::Lost { last_heard_ms };
        let unassigned = take_all_off(&mut tx, &groups, &name, why, now_ms).await?;
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
            "UPDATE nodes SET cordoned = $1, draining = CASE WHEN $1 = 1 THEN draining ELSE 0 END \
             WHERE id = $2",
        )
        .bind(i64::from(cordoned))
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(changed.rows_affected() == 1)
    }

    async fn drain_node(&self, id: &str, now_ms: i64) -> Result<Option<Unassigned>> {
        {
            let mut conn = self.pool.acquire().await?;
            if !cordon(&mut conn, id, true).await? {
                return Ok(None);
            }
        }
        let mut tx = self.pool.begin().await?;
        // Cordoned: no placement commits on it any more, so these are all its groups.
        let groups = lock_groups_on(&mut tx, id, &[], false).await?;
        let name: Option<String> = sqlx::query_scalar(
            "UPDATE nodes SET cpu_used = 0, memory_used = 0, gpu_used = 0 WHERE id = $1 RETURNING name",
        )
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(name) = name else {
            return Ok(None);
        };
        let unassigned = take_all_off(&mut tx, &groups, &name, Eviction::Drained, now_ms).await?;
        if self.billing {
            // As a stop does: billing ends now (in the node's clock, never before its last message,
            // so no run it reported is left open).
            let last = billing::last_node_ms(&mut tx, id).await?;
            end_runs(&mut tx, id, now_ms.max(last)).await?;
        }
        tx.commit().await?;
        Ok(Some(unassigned))
    }

    /// The groups' foreign key on their node is the guard: a placement committed meanwhile makes
    /// the delete fail (counted and refused); one still running holds the node's key lock, which
    /// the delete waits for.
    async fn delete_node(&self, id: &str) -> Result<std::result::Result<bool, NodeDeleteRefusal>> {
        let deleted = sqlx::query("DELETE FROM nodes WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await;
        match deleted {
            Ok(done) => Ok(Ok(done.rows_affected() == 1)),
            Err(sqlx::Error::Database(db)) if db.is_foreign_key_violation() => {
                let groups: i64 =
                    sqlx::query_scalar("SELECT count(*) FROM groups WHERE node_id = $1")
                        .bind(id)
                        .fetch_one(&self.pool)
                        .await?;
                Ok(Err(NodeDeleteRefusal::NotEmpty {
                    groups: groups.max(1) as u64,
                }))
            }
            Err(err) => Err(err.into()),
        }
    }
}
