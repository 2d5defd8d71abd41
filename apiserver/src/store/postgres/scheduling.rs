//! Scheduling in PostgreSQL: the groups waiting for a node, committing a round's placements, events
//! and failures.
//!
//! A round is a constant number of statements whatever its size: its groups and then the nodes it
//! reserves on are locked in id order (groups before nodes, the order of every writer of both:
//! reports, deletes, stops, a node judged lost); the nodes are reserved on in one guarded multi-row
//! `UPDATE` (the capacity check is in the `WHERE`, and `CHECK` constraints back it) and the groups
//! assigned in one guarded `UPDATE` (still unplaced, still at the generation decided on); what did
//! not stick is given back.

use std::collections::{BTreeMap, HashSet};

use sqlx::Row;

use super::PgStore;
use super::groups::release;
use super::operations;
use crate::model::Size;
use crate::store::rows::{PENDING_COLUMNS, events, json, pending_from_row};
use crate::store::{
    GroupEvent, OperationStatus, PendingGroup, Placement, Result, SchedulingStore, merge_event,
};

#[async_trait::async_trait]
impl SchedulingStore for PgStore {
    async fn pending_groups(&self, limit: i64) -> Result<Vec<PendingGroup>> {
        let rows = sqlx::query(&format!(
            "SELECT {PENDING_COLUMNS} FROM groups WHERE node_id IS NULL AND desired = 'Running' \
             AND settled_ms IS NULL AND provisioning_state != 'Failed' ORDER BY seq LIMIT $1"
        ))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(pending_from_row).collect()
    }

    async fn commit_placements(
        &self,
        placements: &[Placement],
        now_ms: i64,
    ) -> Result<Vec<Placement>> {
        if placements.is_empty() {
            return Ok(Vec::new());
        }
        let mut per_node: BTreeMap<&str, Size> = BTreeMap::new();
        for p in placements {
            let sum = per_node.entry(p.node_id.as_str()).or_default();
            *sum = sum.add(&p.requests);
        }
        let nodes: Vec<&str> = per_node.keys().copied().collect();
        let mut tx = self.pool.begin().await?;
        // Groups before nodes, as every other writer of both takes them.
        sqlx::query("SELECT 1 FROM groups WHERE id = ANY($1) ORDER BY id FOR UPDATE")
            .bind(
                placements
                    .iter()
                    .map(|p| p.group_id.as_str())
                    .collect::<Vec<_>>(),
            )
            .execute(&mut *tx)
            .await?;
        sqlx::query("SELECT 1 FROM nodes WHERE id = ANY($1) ORDER BY id FOR NO KEY UPDATE")
            .bind(&nodes)
            .execute(&mut *tx)
            .await?;
        let reserved: HashSet<String> = sqlx::query_scalar(
            "UPDATE nodes SET cpu_used = nodes.cpu_used + r.cpu, memory_used = nodes.memory_used + r.memory, \
             gpu_used = nodes.gpu_used + r.gpu \
             FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[]) AS r(id, cpu, memory, gpu) \
             WHERE nodes.id = r.id AND nodes.status = 'Ready' AND nodes.cordoned = 0 AND nodes.cpu_used + r.cpu <= nodes.cpu_millis \
             AND nodes.memory_used + r.memory <= nodes.memory_mib AND nodes.gpu_used + r.gpu <= nodes.gpu \
             RETURNING nodes.id",
        )
        .bind(&nodes)
        .bind(per_node.values().map(|s| s.cpu_millis as i64).collect::<Vec<_>>())
        .bind(per_node.values().map(|s| s.memory_mib as i64).collect::<Vec<_>>())
        .bind(per_node.values().map(|s| i64::from(s.gpu)).collect::<Vec<_>>())
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .collect();
        let candidates: Vec<&Placement> = placements
            .iter()
            .filter(|p| reserved.contains(&p.node_id))
            .collect();
        let mut assigned: HashSet<String> = HashSet::new();
        // A placement's events: why it waited (`FailedScheduling`) is over; why it was moved
        // (`NodeLost`, `NodeDrained`) stays in its story.
        if !candidates.is_empty() {
            let ids: Vec<&str> = candidates.iter().map(|p| p.group_id.as_str()).collect();
            let rows = sqlx::query(
                "UPDATE groups SET node_id = p.node_id, placement = groups.placement + 1, \
                 provisioning_state = 'Creating', updated_ms = $4, \
                 events = CASE WHEN groups.events = '[]' THEN '[]' ELSE \
                 (SELECT COALESCE(jsonb_agg(e.value ORDER BY e.i), '[]'::jsonb)::text \
                  FROM jsonb_array_elements(groups.events::jsonb) WITH ORDINALITY AS e(value, i) \
                  WHERE e.value->>'name' <> 'FailedScheduling') END \
                 FROM unnest($1::text[], $2::text[], $3::bigint[]) AS p(id, node_id, generation) \
                 WHERE groups.id = p.id AND groups.node_id IS NULL AND groups.desired = 'Running' \
                 AND groups.settled_ms IS NULL AND groups.generation = p.generation RETURNING groups.id",
            )
            .bind(&ids)
            .bind(candidates.iter().map(|p| p.node_id.as_str()).collect::<Vec<_>>())
            .bind(candidates.iter().map(|p| p.generation).collect::<Vec<_>>())
            .bind(now_ms)
            .fetch_all(&mut *tx)
            .await?;
            for row in rows {
                assigned.insert(row.try_get("id")?);
            }
        }
        // Groups deleted, stopped or changed since the round began give their reservation back.
        let mut give_back: BTreeMap<&str, Size> = BTreeMap::new();
        for p in &candidates {
            if !assigned.contains(&p.group_id) {
                let sum = give_back.entry(p.node_id.as_str()).or_default();
                *sum = sum.add(&p.requests);
            }
        }
        for (node, size) in give_back {
            release(&mut tx, node, &size).await?;
        }
        let placed: Vec<&Placement> = candidates
            .into_iter()
            .filter(|p| assigned.contains(&p.group_id))
            .collect();
        // Billing opens runs only for groups a node was given: keep who was given what (a group
        // placed again after its node was lost or drained keeps its generation: the new node is
        // who has it).
        if self.billing && !placed.is_empty() {
            sqlx::query(
                "INSERT INTO usage_assignments (group_id, generation, node_id) \
                 SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[]) \
                 ON CONFLICT (group_id, generation) DO UPDATE SET node_id = excluded.node_id",
            )
            .bind(
                placed
                    .iter()
                    .map(|p| p.group_id.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(placed.iter().map(|p| p.generation).collect::<Vec<_>>())
            .bind(
                placed
                    .iter()
                    .map(|p| p.node_id.as_str())
                    .collect::<Vec<_>>(),
            )
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(placed.into_iter().cloned().collect())
    }

    /// The row is locked while its events are merged, so every concurrent event counts.
    async fn record_event(&self, group_id: &str, event: GroupEvent) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query("SELECT events FROM groups WHERE id = $1 FOR UPDATE")
            .bind(group_id)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else {
            return Ok(());
        };
        let mut stored = events(&row)?;
        merge_event(&mut stored, event);
        sqlx::query("UPDATE groups SET events = $1 WHERE id = $2")
            .bind(json(&stored))
            .bind(group_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn fail_group(
        &self,
        group_id: &str,
        code: &str,
        message: &str,
        now_ms: i64,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let generation: Option<i64> = sqlx::query_scalar(
            "UPDATE groups SET provisioning_state = 'Failed', updated_ms = $1 \
             WHERE id = $2 AND node_id IS NULL RETURNING generation",
        )
        .bind(now_ms)
        .bind(group_id)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(generation) = generation {
            operations::finish(
                &mut tx,
                group_id,
                generation,
                OperationStatus::Failed,
                Some((code, message)),
                now_ms,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
