//! Node reports in PostgreSQL, folded into their groups with the operations they finish.
//!
//! A batch locks its groups in id order first (two replicas folding one node's reports during a
//! reconnect wait for each other instead of deadlocking, and the meter's reads that follow see
//! groups nobody else is changing; every writer takes groups, then nodes, then the meter's runs),
//! then writes the common reports (Pending, Running) with one
//! guarded multi-row `UPDATE` and one statement finishing the operations they complete; a failure
//! report, which carries its own error message, goes alone.

use std::collections::HashMap;

use sqlx::{PgConnection, Row};

use super::{PgStore, billing, operations};
use crate::model::reported::ReportedStatus;
use crate::store::rows::{encode_status, provisioning};
use crate::store::{
    NodeReport, OperationStatus, ProvisioningState, ReportStore, Result, StatusOutcome, failure,
    metered, provisioning_for,
};

/// Folds one node report into its group and finishes the operations it completes. One statement:
/// the guard (assigned to this node in this placement, not an older generation) is in the `WHERE`.
async fn apply_one(
    tx: &mut PgConnection,
    node_id: &str,
    status: &ReportedStatus,
    now_ms: i64,
) -> Result<StatusOutcome> {
    let row = sqlx::query(
        "UPDATE groups SET status = $1, provisioning_state = COALESCE($2, provisioning_state), \
         updated_ms = $3 WHERE id = $4 AND node_id = $5 AND generation <= $6 AND placement = $7 \
         RETURNING generation, provisioning_state",
    )
    .bind(encode_status(status))
    .bind(provisioning_for(status).map(ProvisioningState::as_str))
    .bind(now_ms)
    .bind(&status.group_id)
    .bind(node_id)
    .bind(status.generation as i64)
    .bind(status.placement as i64)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row else {
        return Ok(StatusOutcome::Ignored);
    };
    let generation: i64 = row.try_get("generation")?;
    let state = provisioning(&row)?;
    match state {
        ProvisioningState::Succeeded => {
            operations::finish(
                tx,
                &status.group_id,
                generation,
                OperationStatus::Succeeded,
                None,
                now_ms,
            )
            .await?
        }
        ProvisioningState::Failed => {
            let (code, message) = failure(status);
            operations::finish(
                tx,
                &status.group_id,
                generation,
                OperationStatus::Failed,
                Some((code, &message)),
                now_ms,
            )
            .await?
        }
        _ => {}
    }
    Ok(StatusOutcome::Applied {
        provisioning_state: state,
    })
}

/// Locks the groups in id order; returns the placement epoch of each that exists.
async fn lock_groups(tx: &mut PgConnection, ids: &[&str]) -> Result<HashMap<String, i64>> {
    let rows =
        sqlx::query("SELECT id, placement FROM groups WHERE id = ANY($1) ORDER BY id FOR UPDATE")
            .bind(ids)
            .fetch_all(tx)
            .await?;
    rows.iter()
        .map(|row| Ok((row.try_get("id")?, row.try_get("placement")?)))
        .collect()
}

#[async_trait::async_trait]
impl ReportStore for PgStore {
    async fn apply_status(
        &self,
        node_id: &str,
        status: &ReportedStatus,
        now_ms: i64,
    ) -> Result<StatusOutcome> {
        let mut tx = self.pool.begin().await?;
        let epochs = lock_groups(&mut tx, &[status.group_id.as_str()]).await?;
        let outcome = apply_one(&mut tx, node_id, status, now_ms).await?;
        if self.billing {
            let report = NodeReport {
                node_id: node_id.to_owned(),
                seq: 0,
                status: status.clone(),
            };
            billing::record(&mut tx, &metered(std::slice::from_ref(&report), &epochs)).await?;
        }
        tx.commit().await?;
        Ok(outcome)
    }

    /// Reports are whole statuses, so only the last one per group counts; the rest are answered
    /// with the outcome of the last. Billing sees every report.
    async fn apply_statuses(
        &self,
        reports: &[NodeReport],
        node_clocks: &[(String, i64)],
        now_ms: i64,
    ) -> Result<Vec<StatusOutcome>> {
        let mut last: HashMap<&str, usize> = HashMap::new();
        for (i, NodeReport { status, .. }) in reports.iter().enumerate() {
            last.insert(status.group_id.as_str(), i);
        }
        let mut latest: Vec<usize> = last.values().copied().collect();
        latest.sort_unstable();
        let (single, multi): (Vec<usize>, Vec<usize>) = latest.into_iter().partition(|i| {
            provisioning_for(&reports[*i].status) == Some(ProvisioningState::Failed)
        });
        let mut outcome_of: HashMap<usize, StatusOutcome> = HashMap::new();
        let mut tx = self.pool.begin().await?;
        let epochs = if last.is_empty() {
            HashMap::new()
        } else {
            let ids: Vec<&str> = last.keys().copied().collect();
            lock_groups(&mut tx, &ids).await?
        };
        for i in single {
            let NodeReport {
                node_id, status, ..
            } = &reports[i];
            outcome_of.insert(i, apply_one(&mut tx, node_id, status, now_ms).await?);
        }
        if !multi.is_empty() {
            let status = |i: &usize| &reports[*i].status;
            let rows = sqlx::query(
                "UPDATE groups SET status = r.status, \
                 provisioning_state = COALESCE(r.provisioning_state, groups.provisioning_state), updated_ms = $6 \
                 FROM unnest($1::text[], $2::bytea[], $3::text[], $4::text[], $5::bigint[], $7::bigint[]) \
                      AS r(id, status, provisioning_state, node_id, generation, placement) \
                 WHERE groups.id = r.id AND groups.node_id = r.node_id AND groups.generation <= r.generation \
                 AND groups.placement = r.placement RETURNING groups.id, groups.provisioning_state",
            )
            .bind(multi.iter().map(|i| status(i).group_id.as_str()).collect::<Vec<_>>())
            .bind(multi.iter().map(|i| encode_status(status(i))).collect::<Vec<_>>())
            .bind(
                multi
                    .iter()
                    .map(|i| provisioning_for(status(i)).map(ProvisioningState::as_str))
                    .collect::<Vec<_>>(),
            )
            .bind(multi.iter().map(|i| reports[*i].node_id.as_str()).collect::<Vec<_>>())
            .bind(multi.iter().map(|i| status(i).generation as i64).collect::<Vec<_>>())
            .bind(now_ms)
            .bind(multi.iter().map(|i| status(i).placement as i64).collect::<Vec<_>>())
            .fetch_all(&mut *tx)
            .await?;
            let mut applied: HashMap<String, ProvisioningState> = HashMap::new();
            for row in rows {
                applied.insert(row.try_get("id")?, provisioning(&row)?);
            }
            // Every pending operation of a group whose current generation is Succeeded is done.
            let succeeded: Vec<&str> = applied
                .iter()
                .filter(|(_, p)| **p == ProvisioningState::Succeeded)
                .map(|(id, _)| id.as_str())
                .collect();
            if !succeeded.is_empty() {
                sqlx::query(
                    "UPDATE operations SET status = 'Succeeded', ended_ms = $1 \
                     WHERE status = 'Pending' AND group_id = ANY($2)",
                )
                .bind(now_ms)
                .bind(&succeeded)
                .execute(&mut *tx)
                .await?;
            }
            for i in &multi {
                let outcome = match applied.remove(&status(i).group_id) {
                    Some(provisioning_state) => StatusOutcome::Applied { provisioning_state },
                    None => StatusOutcome::Ignored,
                };
                outcome_of.insert(*i, outcome);
            }
        }
        // The nodes before the meter's runs: the order deletes, stops and a node judged lost take
        // them in (the meter does not read what `nodes_seen` writes).
        billing::nodes_seen(&mut tx, node_clocks).await?;
        // The whole batch is one fold of the meter: a run's end may be in an earlier report. A copy
        // left behind (another placement epoch) is not metered: its run stays ended.
        if self.billing {
            billing::record(&mut tx, &metered(reports, &epochs)).await?;
        }
        tx.commit().await?;
        Ok(reports
            .iter()
            .map(|NodeReport { status, .. }| {
                outcome_of
                    .get(&last[status.group_id.as_str()])
                    .cloned()
                    .unwrap_or(StatusOutcome::Ignored)
            })
            .collect())
    }
}
