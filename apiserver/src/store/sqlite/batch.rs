//! Group commit: many creates, placements or reports in one transaction and few statements.
//!
//! SQLite has one writer, and with sqlx every statement is a round trip to that writer's thread. So
//! throughput comes from doing more per statement: concurrent creates are gathered by one task and
//! inserted with multi-row statements; a scheduling round's placements reserve capacity with one
//! statement per node and assign groups with one statement per chunk; the gateway's heartbeats of
//! every node are written with one statement per chunk every few seconds.

use std::collections::{BTreeMap, HashMap, HashSet};

use sqlx::{Row, SqliteConnection, SqlitePool};
use tokio::sync::{mpsc, oneshot};

use super::{apply_one, corrupt, encode_status, json, provisioning_for, release, resource_groups};
use crate::model::Size;
use crate::store::{
    Conflict, Heartbeat, NewGroup, NodeReport, Placement, ProvisioningState, ResourceGroupCreation,
    ResourceGroupRecord, Result, StatusOutcome, StoreError, metered,
};

/// Creates gathered into one transaction at most.
const CREATE_BATCH: usize = 256;
/// Rows per multi-row statement (SQLite allows 32,766 bound parameters).
const CHUNK: usize = 256;

pub(super) type CreateRequest = (NewGroup, oneshot::Sender<Result<()>>);

/// Runs until every sender is gone: takes whatever creates have queued and commits them together.
pub(super) async fn create_writer(pool: SqlitePool, mut rx: mpsc::Receiver<CreateRequest>) {
    let mut batch = Vec::with_capacity(CREATE_BATCH);
    while rx.recv_many(&mut batch, CREATE_BATCH).await > 0 {
        let groups: Vec<&NewGroup> = batch.iter().map(|(g, _)| g).collect();
        let results = match commit_creates(&pool, &groups).await {
            Ok(results) => results,
            Err(err) => {
                tracing::error!(error = %err, creates = groups.len(), "create batch failed");
                groups
                    .iter()
                    .map(|_| Err(StoreError::Unavailable))
                    .collect()
            }
        };
        for ((_, reply), result) in batch.drain(..).zip(results) {
            // A caller that went away (client hung up) does not need its answer.
            let _ = reply.send(result);
        }
    }
}

const GROUP_INSERT: &str = "INSERT INTO groups (id, subscription, resource_group, resource_group_as, name, \
     location, tags, spec, sealed_spec, os_type, cpu_millis, memory_mib, gpu, fqdn, generation, desired, \
     provisioning_state, node_id, status, events, created_ms, updated_ms) VALUES ";
const GROUP_ROW: &str =
    "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, 'Running', 'Pending', NULL, NULL, '[]', ?, ?)";

async fn commit_creates(pool: &SqlitePool, groups: &[&NewGroup]) -> Result<Vec<Result<()>>> {
    let mut results: Vec<Option<Result<()>>> = groups.iter().map(|_| None).collect();
    let mut tx = pool.begin().await?;

    // 1. The groups, all at once; a row that breaks a uniqueness rule (name or FQDN) is skipped.
    let mut inserted = HashSet::new();
    for chunk in groups.chunks(CHUNK) {
        let sql = format!(
            "{GROUP_INSERT}{} ON CONFLICT DO NOTHING RETURNING id",
            vec![GROUP_ROW; chunk.len()].join(", ")
        );
        let mut query = sqlx::query(&sql);
        for g in chunk {
            let r = g.spec.requests();
            query = query
                .bind(&g.id)
                .bind(&g.key.subscription)
                .bind(&g.key.resource_group)
                .bind(&g.resource_group_as)
                .bind(&g.key.name)
                .bind(&g.location)
                .bind(json(&g.tags))
                .bind(json(&g.spec.redacted()))
                .bind(&g.sealed_spec)
                .bind(g.spec.os_type.as_str())
                .bind(r.cpu_millis as i64)
                .bind(r.memory_mib as i64)
                .bind(i64::from(r.gpu))
                .bind(&g.fqdn)
                .bind(g.now_ms)
                .bind(g.now_ms);
        }
        for row in query.fetch_all(&mut *tx).await? {
            inserted.insert(row.try_get::<String, _>("id")?);
        }
    }
    for (i, g) in groups.iter().enumerate() {
        if !inserted.contains(&g.id) {
            results[i] = Some(Err(StoreError::Conflict(conflict_kind(&mut tx, g).await?)));
        }
    }

    // 2. Quotas, per subscription: all of a subscription's creates in one conditional update; if they
    //    do not fit together, one by one, so each gets its own answer.
    let mut by_sub: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, g) in groups.iter().enumerate() {
        if results[i].is_none() {
            by_sub
                .entry(g.key.subscription.as_str())
                .or_default()
                .push(i);
        }
    }
    let mut refused = Vec::new();
    for (sub, members) in &by_sub {
        let quota = groups[members[0]].quota;
        let cpu: u64 = members
            .iter()
            .map(|i| groups[*i].spec.requests().cpu_millis)
            .sum();
        if count(&mut tx, sub, members.len() as i64, cpu, quota).await? {
            continue;
        }
        for i in members {
            let cpu = groups[*i].spec.requests().cpu_millis;
            if !count(&mut tx, sub, 1, cpu, quota).await? {
                let (groups_used, cpu_used) = usage(&mut tx, sub).await?;
                results[*i] = Some(Err(StoreError::QuotaExceeded {
                    groups: groups_used,
                    cpu_millis: cpu_used,
                }));
                refused.push(groups[*i].id.clone());
            }
        }
    }
    // 3. Resource groups that do not exist yet, with the location of the first group created into
    //    them; a group whose resource group would pass the subscription's limit is refused, and
    //    given back its quota.
    let mut resource_groups: BTreeMap<(&str, &str), Vec<usize>> = BTreeMap::new();
    for (i, g) in groups.iter().enumerate() {
        if results[i].is_none() {
            resource_groups
                .entry((g.key.subscription.as_str(), g.key.resource_group.as_str()))
                .or_default()
                .push(i);
        }
    }
    for members in resource_groups.values() {
        let first = groups[members[0]];
        let record = ResourceGroupRecord {
            subscription: first.key.subscription.clone(),
            name: first.resource_group_as.clone(),
            location: first.location.clone(),
            tags: BTreeMap::new(),
            created_ms: first.now_ms,
            updated_ms: first.now_ms,
        };
        if resource_groups::insert(&mut tx, &record).await? != ResourceGroupCreation::LimitReached {
            continue;
        }
        for i in members {
            let g = groups[*i];
            sqlx::query(
                "UPDATE subscription_usage SET groups = groups - 1, cpu_millis = cpu_millis - ? \
                 WHERE subscription = ?",
            )
            .bind(g.spec.requests().cpu_millis as i64)
            .bind(&g.key.subscription)
            .execute(&mut *tx)
            .await?;
            results[*i] = Some(Err(StoreError::ResourceGroupLimit));
            refused.push(g.id.clone());
        }
    }
    for chunk in refused.chunks(CHUNK) {
        let sql = format!(
            "DELETE FROM groups WHERE id IN ({})",
            vec!["?"; chunk.len()].join(", ")
        );
        let mut query = sqlx::query(&sql);
        for id in chunk {
            query = query.bind(id);
        }
        query.execute(&mut *tx).await?;
    }

    // 4. The create operations of the groups that made it.
    let created: Vec<&NewGroup> = groups
        .iter()
        .enumerate()
        .filter(|(i, _)| results[*i].is_none())
        .map(|(_, g)| *g)
        .collect();
    for chunk in created.chunks(CHUNK) {
        let sql = format!(
            "INSERT INTO operations (id, subscription, group_id, resource_id, kind, generation, status, started_ms) \
             VALUES {}",
            vec!["(?, ?, ?, ?, 'create', 1, 'Pending', ?)"; chunk.len()].join(", ")
        );
        let mut query = sqlx::query(&sql);
        for g in chunk {
            query = query
                .bind(&g.operation_id)
                .bind(&g.key.subscription)
                .bind(&g.id)
                .bind(&g.resource_id)
                .bind(g.now_ms);
        }
        query.execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(results.into_iter().map(|r| r.unwrap_or(Ok(()))).collect())
}

/// Which uniqueness rule a skipped row broke.
async fn conflict_kind(conn: &mut SqliteConnection, g: &NewGroup) -> Result<Conflict> {
    let taken: Option<i64> = sqlx::query_scalar(
        "SELECT 1 FROM groups WHERE subscription = ? AND resource_group = ? AND name = ?",
    )
    .bind(&g.key.subscription)
    .bind(&g.key.resource_group)
    .bind(&g.key.name)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(if taken.is_some() || g.fqdn.is_none() {
        Conflict::GroupName
    } else {
        Conflict::DnsLabel
    })
}

/// Counts `n` groups and `cpu` millicores against the subscription's quota, if they fit.
async fn count(
    conn: &mut SqliteConnection,
    sub: &str,
    n: i64,
    cpu: u64,
    quota: (i64, u64),
) -> Result<bool> {
    if n > quota.0 || cpu > quota.1 {
        return Ok(false);
    }
    let counted = sqlx::query(
        "INSERT INTO subscription_usage (subscription, groups, cpu_millis) VALUES (?1, ?2, ?3) \
         ON CONFLICT (subscription) DO UPDATE SET groups = groups + ?2, cpu_millis = cpu_millis + ?3 \
         WHERE groups + ?2 <= ?4 AND cpu_millis + ?3 <= ?5",
    )
    .bind(sub)
    .bind(n)
    .bind(cpu as i64)
    .bind(quota.0)
    .bind(quota.1 as i64)
    .execute(&mut *conn)
    .await?;
    Ok(counted.rows_affected() == 1)
}

async fn usage(conn: &mut SqliteConnection, sub: &str) -> Result<(i64, u64)> {
    let row =
        sqlx::query("SELECT groups, cpu_millis FROM subscription_usage WHERE subscription = ?")
            .bind(sub)
            .fetch_optional(&mut *conn)
            .await?;
    Ok(match row {
        Some(row) => (
            row.try_get("groups")?,
            row.try_get::<i64, _>("cpu_millis")? as u64,
        ),
        None => (0, 0),
    })
}

/// A placement's events: why it waited (`FailedScheduling`) is over; why it was moved (`NodeLost`,
/// `NodeDrained`) stays in its story.
const KEPT_EVENTS: &str = "CASE WHEN events = '[]' THEN '[]' ELSE (SELECT json_group_array(json(e.value)) \
     FROM json_each(groups.events) AS e WHERE json_extract(e.value, '$.name') != 'FailedScheduling') END";

/// Commits a scheduling round: reserve capacity per node (one conditional statement each), assign
/// groups in chunks, and give back the reservation of any group that changed meanwhile.
pub(super) async fn commit_placements(
    pool: &SqlitePool,
    placements: &[Placement],
    now_ms: i64,
    billing: bool,
) -> Result<Vec<Placement>> {
    let mut tx = pool.begin().await?;
    let mut per_node: BTreeMap<&str, Size> = BTreeMap::new();
    for p in placements {
        let sum = per_node.entry(p.node_id.as_str()).or_default();
        *sum = sum.add(&p.requests);
    }
    let mut reserved = HashSet::new();
    for (node, size) in &per_node {
        let done = sqlx::query(
            "UPDATE nodes SET cpu_used = cpu_used + ?1, memory_used = memory_used + ?2, gpu_used = gpu_used + ?3 \
             WHERE id = ?4 AND status = 'Ready' AND cordoned = 0 AND cpu_used + ?1 <= cpu_millis AND memory_used + ?2 <= memory_mib \
             AND gpu_used + ?3 <= gpu",
        )
        .bind(size.cpu_millis as i64)
        .bind(size.memory_mib as i64)
        .bind(i64::from(size.gpu))
        .bind(node)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 1 {
            reserved.insert(*node);
        }
    }
    let candidates: Vec<&Placement> = placements
        .iter()
        .filter(|p| reserved.contains(p.node_id.as_str()))
        .collect();
    let mut assigned = HashSet::new();
    for chunk in candidates.chunks(CHUNK) {
        let cases = vec!["WHEN ? THEN ?"; chunk.len()].join(" ");
        let sql = format!(
            "UPDATE groups SET node_id = CASE id {cases} END, placement = placement + 1, \
             provisioning_state = 'Creating', events = {KEPT_EVENTS}, updated_ms = ? \
             WHERE id IN ({}) AND node_id IS NULL AND desired = 'Running' AND settled_ms IS NULL \
             AND generation = CASE id {cases} END RETURNING id",
            vec!["?"; chunk.len()].join(", ")
        );
        let mut query = sqlx::query(&sql);
        for p in chunk {
            query = query.bind(&p.group_id).bind(&p.node_id);
        }
        query = query.bind(now_ms);
        for p in chunk {
            query = query.bind(&p.group_id);
        }
        for p in chunk {
            query = query.bind(&p.group_id).bind(p.generation);
        }
        for row in query.fetch_all(&mut *tx).await? {
            assigned.insert(row.try_get::<String, _>("id")?);
        }
    }
    // Groups deleted, stopped or changed since the round began give their reservation back.
    let mut give_back: HashMap<&str, Size> = HashMap::new();
    for p in &candidates {
        if !assigned.contains(&p.group_id) {
            let sum = give_back.entry(p.node_id.as_str()).or_default();
            *sum = sum.add(&p.requests);
        }
    }
    for (node, size) in give_back {
        release(&mut tx, node, &size).await?;
    }
    // Billing opens runs only for groups a node was given: keep who was given what (a group placed
    // again after its node was lost or drained keeps its generation: the new node is who has it).
    let placed: Vec<&Placement> = candidates
        .iter()
        .copied()
        .filter(|p| billing && assigned.contains(&p.group_id))
        .collect();
    for chunk in placed.chunks(CHUNK) {
        let sql = format!(
            "INSERT INTO usage_assignments (group_id, generation, node_id) VALUES {} \
             ON CONFLICT (group_id, generation) DO UPDATE SET node_id = excluded.node_id",
            vec!["(?, ?, ?)"; chunk.len()].join(", ")
        );
        let mut query = sqlx::query(&sql);
        for p in chunk {
            query = query.bind(&p.group_id).bind(p.generation).bind(&p.node_id);
        }
        query.execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(candidates
        .into_iter()
        .filter(|p| assigned.contains(&p.group_id))
        .cloned()
        .collect())
}

/// Folds a batch of node reports. Reports are whole statuses, so only the last one per group counts;
/// the rest are answered with the outcome of the last. The common reports (Pending, Running) are
/// written with one guarded multi-row `UPDATE` per chunk and one statement finishing the operations
/// they complete; a failure report, which carries its own error message, goes alone.
pub(super) async fn apply_statuses(
    pool: &SqlitePool,
    reports: &[NodeReport],
    node_clocks: &[(String, i64)],
    now_ms: i64,
    billing: bool,
) -> Result<Vec<StatusOutcome>> {
    let mut last: HashMap<&str, usize> = HashMap::new();
    for (i, NodeReport { status, .. }) in reports.iter().enumerate() {
        last.insert(status.group_id.as_str(), i);
    }
    let mut outcome_of: HashMap<usize, StatusOutcome> = HashMap::new();
    let mut tx = pool.begin().await?;
    let (single, multi): (Vec<usize>, Vec<usize>) = {
        let mut latest: Vec<usize> = last.values().copied().collect();
        latest.sort_unstable();
        latest
            .into_iter()
            .partition(|i| provisioning_for(&reports[*i].status) == Some(ProvisioningState::Failed))
    };
    for i in single {
        let NodeReport {
            node_id: node,
            status,
            ..
        } = &reports[i];
        outcome_of.insert(i, apply_one(&mut tx, node, status, now_ms).await?);
    }
    for chunk in multi.chunks(CHUNK) {
        let cases = vec!["WHEN ? THEN ?"; chunk.len()].join(" ");
        let sql = format!(
            "UPDATE groups SET status = CASE id {cases} END, \
             provisioning_state = COALESCE(CASE id {cases} END, provisioning_state), updated_ms = ? \
             WHERE id IN ({}) AND node_id = CASE id {cases} END AND generation <= CASE id {cases} END \
             AND placement = CASE id {cases} END RETURNING id, provisioning_state",
            vec!["?"; chunk.len()].join(", ")
        );
        let mut query = sqlx::query(&sql);
        for i in chunk {
            let status = &reports[*i].status;
            query = query.bind(&status.group_id).bind(encode_status(status));
        }
        for i in chunk {
            let status = &reports[*i].status;
            query = query
                .bind(&status.group_id)
                .bind(provisioning_for(status).map(ProvisioningState::as_str));
        }
        query = query.bind(now_ms);
        for i in chunk {
            query = query.bind(&reports[*i].status.group_id);
        }
        for i in chunk {
            query = query
                .bind(&reports[*i].status.group_id)
                .bind(&reports[*i].node_id);
        }
        for i in chunk {
            let status = &reports[*i].status;
            query = query.bind(&status.group_id).bind(status.generation as i64);
        }
        for i in chunk {
            let status = &reports[*i].status;
            query = query.bind(&status.group_id).bind(status.placement as i64);
        }
        let mut applied: HashMap<String, ProvisioningState> = HashMap::new();
        for row in query.fetch_all(&mut *tx).await? {
            let state: String = row.try_get("provisioning_state")?;
            let state = ProvisioningState::parse(&state)
                .ok_or_else(|| corrupt("groups.provisioning_state", &state))?;
            applied.insert(row.try_get("id")?, state);
        }
        // Every pending operation of a group whose current generation is Succeeded is done.
        let succeeded: Vec<&String> = applied
            .iter()
            .filter(|(_, p)| **p == ProvisioningState::Succeeded)
            .map(|(id, _)| id)
            .collect();
        if !succeeded.is_empty() {
            let sql = format!(
                "UPDATE operations SET status = 'Succeeded', ended_ms = ? WHERE status = 'Pending' AND group_id IN ({})",
                vec!["?"; succeeded.len()].join(", ")
            );
            let mut query = sqlx::query(&sql).bind(now_ms);
            for id in &succeeded {
                query = query.bind(*id);
            }
            query.execute(&mut *tx).await?;
        }
        for i in chunk {
            let outcome = match applied.remove(&reports[*i].status.group_id) {
                Some(provisioning_state) => StatusOutcome::Applied { provisioning_state },
                None => StatusOutcome::Ignored,
            };
            outcome_of.insert(*i, outcome);
        }
    }
    // Billing sees every report, not only the last per group: a run's end may be in an earlier one.
    // The whole batch is one fold of the meter: a constant number of statements.
    // A copy left behind (another placement epoch) is not metered: its run ended when its node was
    // lost or drained, and stays ended.
    // A group whose last report was applied is at that report's epoch; only the others (few: copies
    // left behind, groups gone) cost a read.
    if billing {
        let mut epochs = HashMap::with_capacity(last.len());
        let mut unknown = Vec::new();
        for (id, i) in &last {
            match outcome_of.get(i) {
                Some(StatusOutcome::Applied { .. }) => {
                    epochs.insert((*id).to_owned(), reports[*i].status.placement as i64);
                }
                _ => unknown.push(*id),
            }
        }
        epochs.extend(placements(&mut tx, &unknown).await?);
        super::billing::record(&mut tx, &metered(reports, &epochs)).await?;
    }
    super::billing::nodes_seen(&mut tx, node_clocks).await?;
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

/// The placement epoch of each of these groups that exists.
pub(super) async fn placements(
    conn: &mut SqliteConnection,
    ids: &[&str],
) -> Result<HashMap<String, i64>> {
    let mut epochs = HashMap::with_capacity(ids.len());
    for chunk in ids.chunks(CHUNK) {
        let sql = format!(
            "SELECT id, placement FROM groups WHERE id IN ({})",
            vec!["?"; chunk.len()].join(", ")
        );
        let mut query = sqlx::query(&sql);
        for id in chunk {
            query = query.bind(*id);
        }
        for row in query.fetch_all(&mut *conn).await? {
            epochs.insert(row.try_get("id")?, row.try_get("placement")?);
        }
    }
    Ok(epochs)
}

/// Writes the nodes' last messages, one statement per chunk, in one transaction. Either time only
/// moves forward, so a late or repeated write is harmless.
pub(super) async fn record_heartbeats(pool: &SqlitePool, beats: &[Heartbeat]) -> Result<()> {
    if beats.is_empty() {
        return Ok(());
    }
    let mut tx = pool.begin().await?;
    for chunk in beats.chunks(CHUNK) {
        let sql = format!(
            "WITH beats (id, at_ms, node_ms) AS (VALUES {}) \
             UPDATE nodes SET \
             last_heartbeat_ms = CASE WHEN beats.at_ms > nodes.last_heartbeat_ms THEN beats.at_ms ELSE nodes.last_heartbeat_ms END, \
             last_node_ms = CASE WHEN beats.node_ms > nodes.last_node_ms THEN beats.node_ms ELSE nodes.last_node_ms END \
             FROM beats WHERE nodes.id = beats.id",
            vec!["(?, ?, ?)"; chunk.len()].join(", ")
        );
        let mut query = sqlx::query(&sql);
        for beat in chunk {
            query = query
                .bind(&beat.node_id)
                .bind(beat.at_ms)
                .bind(beat.node_clock_ms);
        }
        query.execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(())
}
