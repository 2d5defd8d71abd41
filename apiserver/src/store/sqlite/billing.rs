//! The meter's storage in SQLite: runs, caps, node losses and the append-only ledger, read and
//! written in bulk (the rules are `crate::billing::meter`'s). Everything here runs inside the
//! caller's transaction, so a ledger row commits with the state change it comes from or not at all.
//!
//! A batch costs a constant number of statements: keys go in as one JSON array (`json_each`), so the
//! reads are the same prepared statements whatever the batch's size; rows go out in multi-row
//! statements of up to `CHUNK` rows.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection};

use super::corrupt;
use crate::billing::meter::{Keys, MeterChanges, MeterEvent, MeterState, MeterTx, Run, RunId};
use crate::billing::{Rates, RunFacts};
use crate::model::OsType;
use crate::store::{GroupRecord, Result};

/// Rows per multi-row statement (SQLite allows 32,766 bound parameters; runs have 16 columns).
const CHUNK: usize = 256;

const RUN_COLUMNS: &str = "id, group_id, node_id, generation, started_ms, finished_ms, alive_ms, cap_ms, \
     superseded_ms, os_type, cpu_millis, memory_mib, gpu, gpu_sku, billed_until_ms, open";

/// Folds `events` through the meter in the transaction `conn` is in.
pub(super) async fn record(conn: &mut SqliteConnection, events: &[MeterEvent]) -> Result<()> {
    crate::billing::meter::record(&mut SqliteMeter(conn), events).await
}

struct SqliteMeter<'a>(&'a mut SqliteConnection);

fn rates_from_row(row: &SqliteRow, table: &str) -> Result<Rates> {
    let os: String = row.try_get("os_type")?;
    Ok(Rates {
        os_type: OsType::parse(&os).ok_or_else(|| corrupt(table, &os))?,
        cpu_millis: row.try_get("cpu_millis")?,
        memory_mib: row.try_get("memory_mib")?,
        gpu: row.try_get("gpu")?,
        gpu_sku: row.try_get("gpu_sku")?,
    })
}

fn run_from_row(row: &SqliteRow) -> Result<Run> {
    Ok(Run {
        id: RunId::Stored(row.try_get("id")?),
        group_id: row.try_get("group_id")?,
        node_id: row.try_get("node_id")?,
        generation: row.try_get("generation")?,
        facts: RunFacts {
            started_ms: row.try_get("started_ms")?,
            finished_ms: row.try_get("finished_ms")?,
            alive_ms: row.try_get("alive_ms")?,
            cap_ms: row.try_get("cap_ms")?,
            superseded_ms: row.try_get("superseded_ms")?,
            lost_ms: None,
        },
        rates: rates_from_row(row, "usage_runs.os_type")?,
        billed_until_ms: row.try_get("billed_until_ms")?,
        open: row.try_get::<i64, _>("open")? != 0,
    })
}

/// The first GPU model a group's stored spec names, lower case.
const GPU_SKU: &str = "(SELECT lower(json_extract(c.value, '$.gpu_sku')) FROM json_each(g.spec, '$.containers') c \
     WHERE json_extract(c.value, '$.gpu_sku') IS NOT NULL LIMIT 1)";

/// What the meter reads for a batch: runs, caps, assignments, losses, rates (see `MeterState`).
static LOAD: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "SELECT 'run' AS kind, {RUN_COLUMNS} FROM usage_runs WHERE group_id IN (SELECT value FROM json_each(?1)) \
         UNION ALL SELECT 'run' AS kind, {RUN_COLUMNS} FROM usage_runs WHERE finished_ms IS NULL \
         AND node_id IN (SELECT value FROM json_each(?2)) AND group_id NOT IN (SELECT value FROM json_each(?1)); \
         SELECT 'cap' AS kind, group_id, generation, at_ms FROM usage_caps \
         WHERE group_id IN (SELECT value FROM json_each(?1)); \
         SELECT 'assignment' AS kind, group_id, generation, node_id FROM usage_assignments \
         WHERE group_id IN (SELECT value FROM json_each(?1)); \
         SELECT 'loss' AS kind, node_id, at_ms FROM usage_node_losses \
         WHERE node_id IN (SELECT value FROM json_each(?3)) OR node_id IN (SELECT value FROM json_each(?2)) \
         OR node_id IN (SELECT node_id FROM usage_runs WHERE group_id IN (SELECT value FROM json_each(?1))); \
         SELECT 'rates' AS kind, g.id, g.os_type, g.cpu_millis, g.memory_mib, g.gpu, {GPU_SKU} AS gpu_sku \
         FROM groups g WHERE g.id IN (SELECT value FROM json_each(?1)) \
         UNION ALL SELECT 'rates' AS kind, u.id, u.os_type, u.cpu_millis, u.memory_mib, u.gpu, u.gpu_sku \
         FROM usage_groups u WHERE u.id IN (SELECT value FROM json_each(?1)) \
         AND NOT EXISTS (SELECT 1 FROM groups g WHERE g.id = u.id)"
    )
});

/// Remembers who the live groups ?1 are (and what they request), also for after they are deleted,
/// and gives each (group, node) of ?2 its subject.
const REMEMBER: &str = "INSERT INTO usage_groups (id, subscription, resource_group, name, location, tags, os_type, \
     cpu_millis, memory_mib, gpu, gpu_sku) \
     SELECT g.id, g.subscription, g.resource_group_as, g.name, g.location, g.tags, g.os_type, \
     g.cpu_millis, g.memory_mib, g.gpu, \
     (SELECT lower(json_extract(c.value, '$.gpu_sku')) FROM json_each(g.spec, '$.containers') c \
      WHERE json_extract(c.value, '$.gpu_sku') IS NOT NULL LIMIT 1) \
     FROM groups g WHERE g.id IN (SELECT value FROM json_each(?1)) \
     ON CONFLICT (id) DO UPDATE SET tags = excluded.tags, cpu_millis = excluded.cpu_millis, \
     memory_mib = excluded.memory_mib, gpu = excluded.gpu, gpu_sku = excluded.gpu_sku; \
     INSERT INTO usage_subjects (group_id, node_id) \
     SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each(?2) WHERE true \
     ON CONFLICT DO NOTHING";

fn json_keys<'a>(keys: impl IntoIterator<Item = &'a String>) -> String {
    super::json(&keys.into_iter().collect::<Vec<_>>())
}

fn values(row: &str, n: usize) -> String {
    vec![row; n].join(", ")
}

#[async_trait::async_trait]
impl MeterTx for SqliteMeter<'_> {
    async fn load(&mut self, keys: &Keys) -> Result<MeterState> {
        let mut state = MeterState::default();
        // One command, one cached prepared statement of five: ?1 the groups, ?2 the lost nodes, ?3
        // the nodes that reported.
        let rows = sqlx::query(&LOAD)
            .bind(json_keys(&keys.groups))
            .bind(json_keys(&keys.lost_nodes))
            .bind(json_keys(&keys.nodes))
            .fetch_all(&mut *self.0)
            .await?;
        for row in rows {
            let kind: String = row.try_get("kind")?;
            match kind.as_str() {
                "run" => state.runs.push(run_from_row(&row)?),
                "cap" => {
                    state
                        .caps
                        .entry(row.try_get("group_id")?)
                        .or_default()
                        .insert(row.try_get("generation")?, row.try_get("at_ms")?);
                }
                "assignment" => {
                    state
                        .assignments
                        .entry(row.try_get("group_id")?)
                        .or_default()
                        .insert(row.try_get("generation")?, row.try_get("node_id")?);
                }
                "loss" => {
                    state
                        .losses
                        .entry(row.try_get("node_id")?)
                        .or_default()
                        .insert(row.try_get("at_ms")?);
                }
                _ => {
                    state.rates.insert(
                        row.try_get("id")?,
                        rates_from_row(&row, "usage_groups.os_type")?,
                    );
                }
            }
        }
        Ok(state)
    }

    async fn save(&mut self, changes: &MeterChanges) -> Result<()> {
        let conn = &mut *self.0;
        for chunk in changes.caps.chunks(CHUNK) {
            let sql = format!(
                "INSERT INTO usage_caps (group_id, generation, at_ms) VALUES {} \
                 ON CONFLICT (group_id, generation) DO UPDATE SET at_ms = MIN(at_ms, excluded.at_ms)",
                values("(?, ?, ?)", chunk.len())
            );
            let mut query = sqlx::query(&sql);
            for (group, generation, at) in chunk {
                query = query.bind(group).bind(generation).bind(at);
            }
            query.execute(&mut *conn).await?;
        }
        for chunk in changes.losses.chunks(CHUNK) {
            let sql = format!(
                "INSERT INTO usage_node_losses (node_id, at_ms) VALUES {} ON CONFLICT DO NOTHING",
                values("(?, ?)", chunk.len())
            );
            let mut query = sqlx::query(&sql);
            for (node, at) in chunk {
                query = query.bind(node).bind(at);
            }
            query.execute(&mut *conn).await?;
        }
        if !changes.new_runs.is_empty() {
            let groups: BTreeSet<&String> = changes.new_runs.iter().map(|r| &r.group_id).collect();
            let subjects: BTreeSet<(&String, &String)> = changes
                .new_runs
                .iter()
                .map(|r| (&r.group_id, &r.node_id))
                .collect();
            sqlx::query(REMEMBER)
                .bind(json_keys(groups))
                .bind(super::json(&subjects))
                .execute(&mut *conn)
                .await?;
        }
        let ids = insert_runs(conn, &changes.new_runs).await?;
        for chunk in changes.updated_runs.chunks(CHUNK) {
            let sql = format!(
                "WITH v (id, finished_ms, alive_ms, cap_ms, superseded_ms, billed_until_ms, open) AS (VALUES {}) \
                 UPDATE usage_runs SET finished_ms = v.finished_ms, alive_ms = v.alive_ms, cap_ms = v.cap_ms, \
                 superseded_ms = v.superseded_ms, billed_until_ms = v.billed_until_ms, open = v.open \
                 FROM v WHERE usage_runs.id = v.id",
                values("(?, ?, ?, ?, ?, ?, ?)", chunk.len())
            );
            let mut query = sqlx::query(&sql);
            for run in chunk {
                let RunId::Stored(id) = run.id else {
                    continue;
                };
                query = query
                    .bind(id)
                    .bind(run.facts.finished_ms)
                    .bind(run.facts.alive_ms)
                    .bind(run.facts.cap_ms)
                    .bind(run.facts.superseded_ms)
                    .bind(run.billed_until_ms)
                    .bind(i64::from(run.open));
            }
            query.execute(&mut *conn).await?;
        }
        append(conn, changes, &ids).await
    }
}

/// Inserts the batch's new runs (their subjects exist); the ids they got, in order.
async fn insert_runs(conn: &mut SqliteConnection, runs: &[Run]) -> Result<Vec<i64>> {
    let mut ids = Vec::with_capacity(runs.len());
    for chunk in runs.chunks(CHUNK) {
        let sql = format!(
            "WITH v (group_id, node_id, generation, started_ms, finished_ms, alive_ms, cap_ms, superseded_ms, \
             os_type, cpu_millis, memory_mib, gpu, gpu_sku, billed_until_ms, open) AS (VALUES {}) \
             INSERT INTO usage_runs (group_id, node_id, subject, generation, started_ms, finished_ms, alive_ms, \
             cap_ms, superseded_ms, os_type, cpu_millis, memory_mib, gpu, gpu_sku, billed_until_ms, open) \
             SELECT v.group_id, v.node_id, s.key, v.generation, v.started_ms, v.finished_ms, v.alive_ms, \
             v.cap_ms, v.superseded_ms, v.os_type, v.cpu_millis, v.memory_mib, v.gpu, v.gpu_sku, \
             v.billed_until_ms, v.open \
             FROM v JOIN usage_subjects s ON s.group_id = v.group_id AND s.node_id = v.node_id WHERE true \
             RETURNING id, group_id, node_id, started_ms",
            values("(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", chunk.len())
        );
        let mut query = sqlx::query(&sql);
        for run in chunk {
            query = query
                .bind(&run.group_id)
                .bind(&run.node_id)
                .bind(run.generation)
                .bind(run.facts.started_ms)
                .bind(run.facts.finished_ms)
                .bind(run.facts.alive_ms)
                .bind(run.facts.cap_ms)
                .bind(run.facts.superseded_ms)
                .bind(run.rates.os_type.as_str())
                .bind(run.rates.cpu_millis)
                .bind(run.rates.memory_mib)
                .bind(run.rates.gpu)
                .bind(&run.rates.gpu_sku)
                .bind(run.billed_until_ms)
                .bind(i64::from(run.open));
        }
        let mut got: HashMap<(String, String, i64), i64> = HashMap::new();
        for row in query.fetch_all(&mut *conn).await? {
            got.insert(
                (
                    row.try_get("group_id")?,
                    row.try_get("node_id")?,
                    row.try_get("started_ms")?,
                ),
                row.try_get("id")?,
            );
        }
        for run in chunk {
            let key = (
                run.group_id.clone(),
                run.node_id.clone(),
                run.facts.started_ms,
            );
            let id = got
                .get(&key)
                .ok_or_else(|| corrupt("usage_runs", format!("run {key:?} was not inserted")))?;
            ids.push(*id);
        }
    }
    Ok(ids)
}

/// Appends the ledger rows and counts them per day. A row the same cause wrote before is not
/// written twice (and said: it would mean a cause number was reused).
async fn append(
    conn: &mut SqliteConnection,
    changes: &MeterChanges,
    new_ids: &[i64],
) -> Result<()> {
    let mut days: BTreeMap<i64, i64> = BTreeMap::new();
    for chunk in changes.ledger.chunks(CHUNK) {
        let sql = format!(
            "WITH v (run_id, meter, start_ms, end_ms, quantity, cause, cause_seq) AS (VALUES {}) \
             INSERT INTO usage_ledger (run_id, subject, meter, start_ms, end_ms, quantity, cause, cause_seq) \
             SELECT v.run_id, r.subject, v.meter, v.start_ms, v.end_ms, v.quantity, v.cause, v.cause_seq \
             FROM v JOIN usage_runs r ON r.id = v.run_id WHERE true ON CONFLICT DO NOTHING RETURNING start_ms",
            values("(?, ?, ?, ?, ?, ?, ?)", chunk.len())
        );
        let mut query = sqlx::query(&sql);
        for row in chunk {
            let run_id = match row.run {
                RunId::Stored(id) => id,
                RunId::New(i) => *new_ids
                    .get(i)
                    .ok_or_else(|| corrupt("usage_ledger", format!("no new run {i}")))?,
            };
            query = query
                .bind(run_id)
                .bind(&row.meter)
                .bind(row.start_ms)
                .bind(row.end_ms)
                .bind(row.quantity)
                .bind(row.cause)
                .bind(row.cause_seq);
        }
        let written = query.fetch_all(&mut *conn).await?;
        if written.len() < chunk.len() {
            tracing::error!(
                rows = chunk.len(),
                written = written.len(),
                "ledger rows already written by the same cause; not written twice"
            );
        }
        for row in written {
            *days
                .entry(row.try_get::<i64, _>("start_ms")?.div_euclid(86_400_000))
                .or_default() += 1;
        }
    }
    let days: Vec<(i64, i64)> = days.into_iter().collect();
    for chunk in days.chunks(CHUNK) {
        let sql = format!(
            "INSERT INTO usage_days (day, rows) VALUES {} \
             ON CONFLICT (day) DO UPDATE SET rows = rows + excluded.rows",
            values("(?, ?)", chunk.len())
        );
        let mut query = sqlx::query(&sql);
        for (day, rows) in chunk {
            query = query.bind(day).bind(rows);
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Keeps who the group is (and what it requests) for billing, also after it is deleted.
pub(super) async fn remember_group(conn: &mut SqliteConnection, group: &GroupRecord) -> Result<()> {
    sqlx::query(
        "INSERT INTO usage_groups (id, subscription, resource_group, name, location, tags, os_type, \
         cpu_millis, memory_mib, gpu, gpu_sku) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
         ON CONFLICT (id) DO UPDATE SET tags = excluded.tags, cpu_millis = excluded.cpu_millis, \
         memory_mib = excluded.memory_mib, gpu = excluded.gpu, gpu_sku = excluded.gpu_sku",
    )
    .bind(&group.id)
    .bind(&group.subscription)
    .bind(&group.resource_group)
    .bind(&group.name)
    .bind(&group.location)
    .bind(super::json(&group.tags))
    .bind(group.spec.os_type.as_str())
    .bind(group.requests.cpu_millis as i64)
    .bind(group.requests.memory_mib as i64)
    .bind(i64::from(group.requests.gpu))
    .bind(group.spec.gpu_sku().map(str::to_ascii_lowercase))
    .execute(conn)
    .await?;
    Ok(())
}

/// Records the node clock of nodes' latest messages (their last heartbeat should they go silent),
/// one statement per chunk.
pub(super) async fn nodes_seen(
    conn: &mut SqliteConnection,
    clocks: &[(String, i64)],
) -> Result<()> {
    for chunk in clocks.chunks(CHUNK) {
        let sql = format!(
            "WITH seen (id, node_ms) AS (VALUES {}) UPDATE nodes SET last_node_ms = \
             CASE WHEN seen.node_ms > nodes.last_node_ms THEN seen.node_ms ELSE nodes.last_node_ms END \
             FROM seen WHERE nodes.id = seen.id",
            values("(?, ?)", chunk.len())
        );
        let mut query = sqlx::query(&sql);
        for (node, node_ms) in chunk {
            query = query.bind(node).bind(node_ms);
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

/// The node clock of the node's latest message, 0 if unknown.
pub(super) async fn last_node_ms(conn: &mut SqliteConnection, node_id: &str) -> Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT last_node_ms FROM nodes WHERE id = ?")
            .bind(node_id)
            .fetch_optional(conn)
            .await?
            .unwrap_or(0),
    )
}

#[cfg(test)]
mod tests {
    //! The meter's property (`billing::meter::store_tests`) on SQLite.

    use proptest::prelude::*;

    use super::*;
    use crate::billing::meter::store_tests::{self, MeterStore};
    use crate::billing::meter::testing;
    use crate::store::UsageStore;
    use crate::store::sqlite::SqliteStore;

    #[async_trait::async_trait]
    impl MeterStore for SqliteStore {
        async fn execute(&self, sql: &str) {
            sqlx::query(sql).execute(&self.writer).await.unwrap();
        }

        async fn scalar(&self, sql: &str) -> i64 {
            sqlx::query_scalar(sql)
                .fetch_one(&self.writer)
                .await
                .unwrap()
        }

        async fn runs(&self) -> Vec<(i64, i64, i64)> {
            sqlx::query_as(
                "SELECT started_ms, billed_until_ms, open FROM usage_runs ORDER BY started_ms",
            )
            .fetch_all(&self.writer)
            .await
            .unwrap()
        }

        async fn apply(&self, events: &[MeterEvent]) {
            let mut tx = self.writer.begin().await.unwrap();
            record(&mut tx, events).await.unwrap();
            tx.commit().await.unwrap();
        }

        fn usage(&self) -> Box<dyn UsageStore> {
            Box::new(self.clone())
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        #[test]
        fn every_run_is_billed_its_true_time_whatever_the_order(case in testing::case()) {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async {
                let dir = tempfile::tempdir().unwrap();
                let store = SqliteStore::open(&dir.path().join("t.db")).await.unwrap();
                let outcome = store_tests::billed_its_true_time(&store, case).await;
                store.close().await;
                outcome
            })?;
        }
    }

    #[tokio::test]
    async fn a_replayed_report_adds_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("t.db")).await.unwrap();
        store_tests::a_replayed_report_adds_nothing(&store).await;
        store.close().await;
    }
}
