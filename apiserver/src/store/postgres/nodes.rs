//! Join tokens and nodes in PostgreSQL: joining, readiness and heartbeats.

use super::{PgStore, billing};
use crate::billing::meter::MeterEvent;
use crate::store::rows::{json, node_from_row};
use crate::store::sqlx_error::is_unique_violation;
use crate::store::{Heartbeat, JoinRefusal, NodeRecord, NodeStatus, NodeStore, Result};

#[async_trait::async_trait]
impl NodeStore for PgStore {
    async fn insert_join_token(
        &self,
        id: &str,
        secret_hash: &str,
        uses: u32,
        expires_ms: i64,
        now_ms: i64,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO join_tokens (id, secret_hash, uses_left, expires_ms, created_ms) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(id)
        .bind(secret_hash)
        .bind(i64::from(uses))
        .bind(expires_ms)
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The use is taken by a guarded decrement (re-evaluated on the newest row when joins race); a
    /// refused insert rolls it back.
    async fn join_node(
        &self,
        token_id: &str,
        secret_hash: &str,
        node: &NodeRecord,
    ) -> Result<Result<(), JoinRefusal>> {
        let mut tx = self.pool.begin().await?;
        let used = sqlx::query(
            "UPDATE join_tokens SET uses_left = uses_left - 1 \
             WHERE id = $1 AND secret_hash = $2 AND uses_left > 0 AND expires_ms > $3",
        )
        .bind(token_id)
        .bind(secret_hash)
        .bind(node.joined_ms)
        .execute(&mut *tx)
        .await?;
        if used.rows_affected() != 1 {
            return Ok(Err(JoinRefusal::InvalidToken));
        }
        let inserted = sqlx::query(
            "INSERT INTO nodes (id, name, os_type, cpu_millis, memory_mib, gpu, labels, agent_version, status, \
             last_heartbeat_ms, joined_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(&node.id)
        .bind(&node.name)
        .bind(node.os_type.as_str())
        .bind(node.capacity.cpu_millis as i64)
        .bind(node.capacity.memory_mib as i64)
        .bind(i64::from(node.capacity.gpu))
        .bind(json(&node.labels))
        .bind(&node.agent_version)
        .bind(node.status.as_str())
        .bind(node.last_heartbeat_ms)
        .bind(node.joined_ms)
        .execute(&mut *tx)
        .await;
        match inserted {
            Ok(_) => {}
            // The transaction is aborted; dropping it rolls the use back.
            Err(err) if is_unique_violation(&err) => return Ok(Err(JoinRefusal::NameTaken)),
            Err(err) => return Err(err.into()),
        }
        tx.commit().await?;
        Ok(Ok(()))
    }

    async fn nodes(&self) -> Result<Vec<NodeRecord>> {
        let rows = sqlx::query("SELECT * FROM nodes ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(node_from_row).collect()
    }

    async fn node(&self, id: &str) -> Result<Option<NodeRecord>> {
        let row = sqlx::query("SELECT * FROM nodes WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(node_from_row).transpose()
    }

    async fn set_node_status(
        &self,
        id: &str,
        status: NodeStatus,
        last_heartbeat_ms: i64,
        node_clock_ms: i64,
    ) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        if status == NodeStatus::NotReady {
            // Groups before their node, as report folds and deletes take them, so a node judged
            // lost while one of its reports is folded never deadlocks.
            sqlx::query("SELECT 1 FROM groups WHERE node_id = $1 ORDER BY id FOR UPDATE")
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        billing::nodes_seen(&mut tx, &[(id.to_owned(), node_clock_ms)]).await?;
        // NotReady is a judgement on silence: it holds only if nobody (another replica) has heard
        // from the node since `last_heartbeat_ms`, and only for a node that is Ready. The guard is
        // re-evaluated on the newest row, so a heartbeat committed meanwhile wins.
        let changed = sqlx::query(
            "UPDATE nodes SET status = $1, last_heartbeat_ms = GREATEST(last_heartbeat_ms, $2) \
             WHERE id = $3 AND ($1 = 'Ready' OR (status = 'Ready' AND last_heartbeat_ms <= $2))",
        )
        .bind(status.as_str())
        .bind(last_heartbeat_ms)
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            > 0;
        if changed && status == NodeStatus::NotReady {
            if self.billing {
                let last = billing::last_node_ms(&mut tx, id).await?;
                if last > 0 {
                    let lost = MeterEvent::NodeLost {
                        node_id: id.to_owned(),
                        at_ms: last,
                    };
                    billing::record(&mut tx, &[lost]).await?;
                }
            }
            sqlx::query(
                "UPDATE groups SET provisioning_state = 'Unhealthy', updated_ms = $1 \
                 WHERE node_id = $2 AND desired = 'Running'",
            )
            .bind(last_heartbeat_ms)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(changed)
    }

    /// One statement for every node that beat, the rows locked in id order first (two replicas
    /// hearing one node during a reconnect never deadlock); either time only moves forward.
    async fn record_heartbeats(&self, beats: &[Heartbeat]) -> Result<()> {
        if beats.is_empty() {
            return Ok(());
        }
        let ids: Vec<&str> = beats.iter().map(|b| b.node_id.as_str()).collect();
        let at: Vec<i64> = beats.iter().map(|b| b.at_ms).collect();
        let node_ms: Vec<i64> = beats.iter().map(|b| b.node_clock_ms).collect();
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT 1 FROM nodes WHERE id = ANY($1) ORDER BY id FOR NO KEY UPDATE")
            .bind(&ids)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE nodes SET last_heartbeat_ms = GREATEST(nodes.last_heartbeat_ms, beats.at_ms), \
             last_node_ms = GREATEST(nodes.last_node_ms, beats.node_ms) \
             FROM (SELECT id, max(at_ms) AS at_ms, max(node_ms) AS node_ms \
                   FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS b(id, at_ms, node_ms) GROUP BY id) beats \
             WHERE nodes.id = beats.id",
        )
        .bind(&ids)
        .bind(&at)
        .bind(&node_ms)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn group_counts_by_node(&self) -> Result<Vec<String>> {
        Ok(
            sqlx::query_scalar("SELECT node_id FROM groups WHERE node_id IS NOT NULL")
                .fetch_all(&self.pool)
                .await?,
        )
    }
}
