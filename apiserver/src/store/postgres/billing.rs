//! The meter's storage in PostgreSQL: runs, caps, node losses and the append-only ledger (the rules
//! are `crate::billing::meter`'s). Everything here runs inside the caller's transaction, so a ledger
//! row commits with the state change it comes from or not at all.
//!
//! A batch costs a constant number of statements whatever its size: keys go in as arrays (`= ANY`),
//! rows go out as arrays too (`unnest`), one statement per table.
//!
//! Many writers (READ COMMITTED): `load` first takes what the fold decides on, in one order for
//! every transaction (so they cannot deadlock each other):
//! 1. the rows of the nodes that reported (any report of the batch) or were lost (`FOR NO KEY
//!    UPDATE`, the lock every
//!    `UPDATE nodes` takes, so a report and the loss of its node wait for each other, and a run a
//!    report opens on a node is seen by the loss that follows it);
//! 2. a transaction-level advisory lock per group (a group's row may be gone, deleted, or not hold
//!    the lock: a report the group ignores still bills), so two folds of one group serialize;
//! 3. the runs it reads, `FOR UPDATE` (a run of the group on another node, folded by that node's
//!    loss).
//!
//! Only then does it read caps, assignments, losses and rates, in a later statement, so with a
//! snapshot that holds whatever the transactions it waited for committed. The ledger's UNIQUE
//! (run, cause, cause number, meter, start) stays the last guard: a row is never written twice.
//!
//! What callers keep to for the order to hold: a group's row before its node's (stop and delete
//! claim the group, then release the node's capacity), no node row after the fold but those it
//! locked (a report batch's `nodes_seen` after it: the batch's reporting nodes),
//! and one fold per transaction (the locks are per fold: two folds in one transaction take two
//! orders). A deadlock outside these is still detected by PostgreSQL and fails one transaction
//! (`40P01`: unavailable, retried as any).

// Until the PostgreSQL store's writes call these (lane pg-store, issue 15); its tests do.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};

use crate::billing::meter::{Keys, MeterChanges, MeterEvent, MeterState, MeterTx, Run, RunId};
use crate::billing::{Rates, RunFacts};
use crate::model::OsType;
use crate::store::{GroupRecord, Result, StoreError};

/// The advisory lock class of the meter's group locks (`pg_advisory_xact_lock(class, key)`: its
/// own key space, apart from the one-key locks other parts of the store take).
const GROUP_LOCK_CLASS: i32 = 0x6d65_7472; // "metr"

const RUN_COLUMNS: &str = "id, group_id, node_id, generation, started_ms, finished_ms, alive_ms, cap_ms, \
     superseded_ms, os_type, cpu_millis, memory_mib, gpu, gpu_sku, billed_until_ms, open";

/// The first GPU model a group's stored spec names, lower case.
const GPU_SKU: &str = "(SELECT lower(c->>'gpu_sku') FROM json_array_elements(g.spec::json->'containers') c \
     WHERE c->>'gpu_sku' IS NOT NULL LIMIT 1)";

/// Takes the meter's locks on the nodes $1 (see the module's doc).
const LOCK_NODES: &str =
    "SELECT id FROM nodes WHERE id = ANY($1::text[]) ORDER BY id FOR NO KEY UPDATE";

/// Takes the meter's locks on the groups $1, in one order (volatile functions in the select list run
/// after ORDER BY).
static LOCK_GROUPS: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "SELECT pg_advisory_xact_lock({GROUP_LOCK_CLASS}, h) FROM \
         (SELECT DISTINCT hashtext(k) AS h FROM unnest($1::text[]) k) keys ORDER BY h"
    )
});

/// The runs of the groups $1 and the unfinished runs of the lost nodes $2, locked.
static RUNS: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "SELECT {RUN_COLUMNS} FROM usage_runs WHERE group_id = ANY($1::text[]) \
         OR (finished_ms IS NULL AND node_id = ANY($2::text[])) ORDER BY id FOR UPDATE"
    )
});

/// Caps and assignments of the groups $1, losses of the nodes $2, rates of the groups $1 (from the
/// live group, else from what billing remembered of it): one statement, columns unused by a kind
/// are NULL.
static STATE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "SELECT 'cap' AS kind, group_id AS id, generation, at_ms, NULL::text AS node_id, NULL::text AS os_type, \
         NULL::bigint AS cpu_millis, NULL::bigint AS memory_mib, NULL::bigint AS gpu, NULL::text AS gpu_sku \
         FROM usage_caps WHERE group_id = ANY($1::text[]) \
         UNION ALL SELECT 'assignment', group_id, generation, NULL, node_id, NULL, NULL, NULL, NULL, NULL \
         FROM usage_assignments WHERE group_id = ANY($1::text[]) \
         UNION ALL SELECT 'loss', NULL, NULL, at_ms, node_id, NULL, NULL, NULL, NULL, NULL \
         FROM usage_node_losses WHERE node_id = ANY($2::text[]) \
         UNION ALL SELECT 'rates', g.id, NULL, NULL, NULL, g.os_type, g.cpu_millis, g.memory_mib, g.gpu, {GPU_SKU} \
         FROM groups g WHERE g.id = ANY($1::text[]) \
         UNION ALL SELECT 'rates', u.id, NULL, NULL, NULL, u.os_type, u.cpu_millis, u.memory_mib, u.gpu, u.gpu_sku \
         FROM usage_groups u WHERE u.id = ANY($1::text[]) AND NOT EXISTS (SELECT 1 FROM groups g WHERE g.id = u.id)"
    )
});

/// Remembers who the live groups $1 are (and what they request), also for after they are deleted.
static REMEMBER_LIVE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "INSERT INTO usage_groups (id, subscription, resource_group, name, location, tags, os_type, \
         cpu_millis, memory_mib, gpu, gpu_sku) \
         SELECT g.id, g.subscription, g.resource_group_as, g.name, g.location, g.tags, g.os_type, \
         g.cpu_millis, g.memory_mib, g.gpu, {GPU_SKU} FROM groups g WHERE g.id = ANY($1::text[]) \
         ON CONFLICT (id) DO UPDATE SET tags = excluded.tags, cpu_millis = excluded.cpu_millis, \
         memory_mib = excluded.memory_mib, gpu = excluded.gpu, gpu_sku = excluded.gpu_sku"
    )
});

/// Gives each (group, node) of ($1, $2) its subject.
const SUBJECTS: &str = "INSERT INTO usage_subjects (group_id, node_id) \
     SELECT * FROM unnest($1::text[], $2::text[]) ON CONFLICT DO NOTHING";

const INSERT_RUNS: &str = "INSERT INTO usage_runs (group_id, node_id, subject, generation, started_ms, \
     finished_ms, alive_ms, cap_ms, superseded_ms, os_type, cpu_millis, memory_mib, gpu, gpu_sku, \
     billed_until_ms, open) \
     SELECT v.group_id, v.node_id, s.key, v.generation, v.started_ms, v.finished_ms, v.alive_ms, v.cap_ms, \
     v.superseded_ms, v.os_type, v.cpu_millis, v.memory_mib, v.gpu, v.gpu_sku, v.billed_until_ms, v.open \
     FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[], \
     $7::bigint[], $8::bigint[], $9::text[], $10::bigint[], $11::bigint[], $12::bigint[], $13::text[], \
     $14::bigint[], $15::bigint[]) AS v (group_id, node_id, generation, started_ms, finished_ms, alive_ms, \
     cap_ms, superseded_ms, os_type, cpu_millis, memory_mib, gpu, gpu_sku, billed_until_ms, open) \
     JOIN usage_subjects s ON s.group_id = v.group_id AND s.node_id = v.node_id \
     RETURNING id, group_id, node_id, started_ms";

const UPDATE_RUNS: &str = "UPDATE usage_runs SET finished_ms = v.finished_ms, alive_ms = v.alive_ms, \
     cap_ms = v.cap_ms, superseded_ms = v.superseded_ms, billed_until_ms = v.billed_until_ms, open = v.open \
     FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[], \
     $7::bigint[]) AS v (id, finished_ms, alive_ms, cap_ms, superseded_ms, billed_until_ms, open) \
     WHERE usage_runs.id = v.id";

/// Keeps the earliest cap per (group, generation), also among the batch's own.
const CAPS: &str = "INSERT INTO usage_caps (group_id, generation, at_ms) \
     SELECT group_id, generation, min(at_ms) FROM unnest($1::text[], $2::bigint[], $3::bigint[]) \
     AS v (group_id, generation, at_ms) GROUP BY group_id, generation \
     ON CONFLICT (group_id, generation) DO UPDATE SET at_ms = LEAST(usage_caps.at_ms, excluded.at_ms)";

const LOSSES: &str = "INSERT INTO usage_node_losses (node_id, at_ms) \
     SELECT * FROM unnest($1::text[], $2::bigint[]) ON CONFLICT DO NOTHING";

/// Appends ledger rows; a row the same cause wrote before (the UNIQUE constraint) is skipped.
const LEDGER: &str = "INSERT INTO usage_ledger (run_id, subject, meter, start_ms, end_ms, quantity, cause, cause_seq) \
     SELECT v.run_id, r.subject, v.meter, v.start_ms, v.end_ms, v.quantity, v.cause, v.cause_seq \
     FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[], $6::text[], $7::bigint[]) \
     AS v (run_id, meter, start_ms, end_ms, quantity, cause, cause_seq) JOIN usage_runs r ON r.id = v.run_id \
     ON CONFLICT DO NOTHING RETURNING start_ms";

const DAYS: &str = "INSERT INTO usage_days (day, rows) SELECT * FROM unnest($1::bigint[], $2::bigint[]) \
     ON CONFLICT (day) DO UPDATE SET rows = usage_days.rows + excluded.rows";

/// Folds `events` through the meter in the transaction `conn` is in.
pub(super) async fn record(conn: &mut PgConnection, events: &[MeterEvent]) -> Result<()> {
    let reporting = events
        .iter()
        .filter_map(|event| match event {
            MeterEvent::Observed(o) => Some(o.node_id.clone()),
            _ => None,
        })
        .collect();
    crate::billing::meter::record(&mut PgMeter { conn, reporting }, events).await
}

struct PgMeter<'a> {
    conn: &'a mut PgConnection,
    /// Every node of the batch's reports, also those whose reports bill nothing (locked with the
    /// others, so a `nodes_seen` after the fold takes no new node lock).
    reporting: BTreeSet<String>,
}

fn corrupt(what: &str, err: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {err}"))
}

fn rates_from_row(row: &PgRow, table: &str) -> Result<Rates> {
    let os: String = row.try_get("os_type")?;
    Ok(Rates {
        os_type: OsType::parse(&os).ok_or_else(|| corrupt(table, &os))?,
        cpu_millis: row.try_get("cpu_millis")?,
        memory_mib: row.try_get("memory_mib")?,
        gpu: row.try_get("gpu")?,
        gpu_sku: row.try_get("gpu_sku")?,
    })
}

fn run_from_row(row: &PgRow) -> Result<Run> {
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

fn strings<'a>(keys: impl IntoIterator<Item = &'a String>) -> Vec<&'a str> {
    keys.into_iter().map(String::as_str).collect()
}

#[async_trait::async_trait]
impl MeterTx for PgMeter<'_> {
    async fn load(&mut self, keys: &Keys) -> Result<MeterState> {
        let conn = &mut *self.conn;
        let groups = strings(&keys.groups);
        let lost = strings(&keys.lost_nodes);
        let nodes: BTreeSet<&str> = keys
            .nodes
            .iter()
            .chain(&keys.lost_nodes)
            .map(String::as_str)
            .collect();
        let locked: BTreeSet<&str> = nodes
            .iter()
            .copied()
            .chain(self.reporting.iter().map(String::as_str))
            .collect();
        if !locked.is_empty() {
            sqlx::query(LOCK_NODES)
                .bind(locked.into_iter().collect::<Vec<_>>())
                .fetch_all(&mut *conn)
                .await?;
        }
        if !groups.is_empty() {
            sqlx::query(&LOCK_GROUPS)
                .bind(&groups)
                .fetch_all(&mut *conn)
                .await?;
        }
        let mut state = MeterState::default();
        for row in sqlx::query(&RUNS)
            .bind(&groups)
            .bind(&lost)
            .fetch_all(&mut *conn)
            .await?
        {
            state.runs.push(run_from_row(&row)?);
        }
        // Losses of the nodes that reported or were lost, and of every node a loaded run is on.
        let loss_nodes: BTreeSet<&str> = nodes
            .iter()
            .copied()
            .chain(state.runs.iter().map(|r| r.node_id.as_str()))
            .collect();
        let rows = sqlx::query(&STATE)
            .bind(&groups)
            .bind(loss_nodes.into_iter().collect::<Vec<_>>())
            .fetch_all(&mut *conn)
            .await?;
        for row in rows {
            let kind: String = row.try_get("kind")?;
            match kind.as_str() {
                "cap" => {
                    state
                        .caps
                        .entry(row.try_get("id")?)
                        .or_default()
                        .insert(row.try_get("generation")?, row.try_get("at_ms")?);
                }
                "assignment" => {
                    state
                        .assignments
                        .entry(row.try_get("id")?)
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
        let conn = &mut *self.conn;
        if !changes.caps.is_empty() {
            let (groups, generations, at): (Vec<&str>, Vec<i64>, Vec<i64>) = changes
                .caps
                .iter()
                .map(|(g, generation, at)| (g.as_str(), *generation, *at))
                .collect();
            sqlx::query(CAPS)
                .bind(groups)
                .bind(generations)
                .bind(at)
                .execute(&mut *conn)
                .await?;
        }
        if !changes.losses.is_empty() {
            let (nodes, at): (Vec<&str>, Vec<i64>) = changes
                .losses
                .iter()
                .map(|(n, at)| (n.as_str(), *at))
                .unzip();
            sqlx::query(LOSSES)
                .bind(nodes)
                .bind(at)
                .execute(&mut *conn)
                .await?;
        }
        if !changes.new_runs.is_empty() {
            let groups: BTreeSet<&str> = changes
                .new_runs
                .iter()
                .map(|r| r.group_id.as_str())
                .collect();
            sqlx::query(&REMEMBER_LIVE)
                .bind(groups.into_iter().collect::<Vec<_>>())
                .execute(&mut *conn)
                .await?;
            let subjects: BTreeSet<(&str, &str)> = changes
                .new_runs
                .iter()
                .map(|r| (r.group_id.as_str(), r.node_id.as_str()))
                .collect();
            let (groups, nodes): (Vec<&str>, Vec<&str>) = subjects.into_iter().unzip();
            sqlx::query(SUBJECTS)
                .bind(groups)
                .bind(nodes)
                .execute(&mut *conn)
                .await?;
        }
        let ids = insert_runs(conn, &changes.new_runs).await?;
        update_runs(conn, &changes.updated_runs).await?;
        append(conn, changes, &ids).await
    }
}

/// Inserts the batch's new runs (their subjects exist); the ids they got, in order.
async fn insert_runs(conn: &mut PgConnection, runs: &[Run]) -> Result<Vec<i64>> {
    if runs.is_empty() {
        return Ok(Vec::new());
    }
    let column = |f: fn(&Run) -> i64| runs.iter().map(f).collect::<Vec<i64>>();
    let optional = |f: fn(&Run) -> Option<i64>| runs.iter().map(f).collect::<Vec<Option<i64>>>();
    let rows = sqlx::query(INSERT_RUNS)
        .bind(runs.iter().map(|r| r.group_id.as_str()).collect::<Vec<_>>())
        .bind(runs.iter().map(|r| r.node_id.as_str()).collect::<Vec<_>>())
        .bind(column(|r| r.generation))
        .bind(column(|r| r.facts.started_ms))
        .bind(optional(|r| r.facts.finished_ms))
        .bind(column(|r| r.facts.alive_ms))
        .bind(optional(|r| r.facts.cap_ms))
        .bind(optional(|r| r.facts.superseded_ms))
        .bind(
            runs.iter()
                .map(|r| r.rates.os_type.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(column(|r| r.rates.cpu_millis))
        .bind(column(|r| r.rates.memory_mib))
        .bind(column(|r| r.rates.gpu))
        .bind(
            runs.iter()
                .map(|r| r.rates.gpu_sku.as_deref())
                .collect::<Vec<_>>(),
        )
        .bind(column(|r| r.billed_until_ms))
        .bind(column(|r| i64::from(r.open)))
        .fetch_all(&mut *conn)
        .await?;
    let mut got: HashMap<(String, String, i64), i64> = HashMap::new();
    for row in rows {
        got.insert(
            (
                row.try_get("group_id")?,
                row.try_get("node_id")?,
                row.try_get("started_ms")?,
            ),
            row.try_get("id")?,
        );
    }
    runs.iter()
        .map(|run| {
            let key = (
                run.group_id.clone(),
                run.node_id.clone(),
                run.facts.started_ms,
            );
            got.get(&key)
                .copied()
                .ok_or_else(|| corrupt("usage_runs", format!("run {key:?} was not inserted")))
        })
        .collect()
}

/// Writes the final state of the stored runs the batch changed.
async fn update_runs(conn: &mut PgConnection, runs: &[Run]) -> Result<()> {
    let stored: Vec<(i64, &Run)> = runs
        .iter()
        .filter_map(|run| match run.id {
            RunId::Stored(id) => Some((id, run)),
            RunId::New(_) => None,
        })
        .collect();
    if stored.is_empty() {
        return Ok(());
    }
    let column = |f: fn(&Run) -> i64| stored.iter().map(|(_, r)| f(r)).collect::<Vec<i64>>();
    let optional =
        |f: fn(&Run) -> Option<i64>| stored.iter().map(|(_, r)| f(r)).collect::<Vec<_>>();
    sqlx::query(UPDATE_RUNS)
        .bind(stored.iter().map(|(id, _)| *id).collect::<Vec<i64>>())
        .bind(optional(|r| r.facts.finished_ms))
        .bind(column(|r| r.facts.alive_ms))
        .bind(optional(|r| r.facts.cap_ms))
        .bind(optional(|r| r.facts.superseded_ms))
        .bind(column(|r| r.billed_until_ms))
        .bind(column(|r| i64::from(r.open)))
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Appends the ledger rows and counts them per day. A row the same cause wrote before is not
/// written twice (and said: it would mean a cause number was reused).
async fn append(conn: &mut PgConnection, changes: &MeterChanges, new_ids: &[i64]) -> Result<()> {
    let ledger = &changes.ledger;
    if ledger.is_empty() {
        return Ok(());
    }
    let run_ids = ledger
        .iter()
        .map(|row| match row.run {
            RunId::Stored(id) => Ok(id),
            RunId::New(i) => new_ids
                .get(i)
                .copied()
                .ok_or_else(|| corrupt("usage_ledger", format!("no new run {i}"))),
        })
        .collect::<Result<Vec<i64>>>()?;
    let written = sqlx::query(LEDGER)
        .bind(run_ids)
        .bind(ledger.iter().map(|r| r.meter.as_str()).collect::<Vec<_>>())
        .bind(ledger.iter().map(|r| r.start_ms).collect::<Vec<_>>())
        .bind(ledger.iter().map(|r| r.end_ms).collect::<Vec<_>>())
        .bind(ledger.iter().map(|r| r.quantity).collect::<Vec<_>>())
        .bind(ledger.iter().map(|r| r.cause).collect::<Vec<_>>())
        .bind(ledger.iter().map(|r| r.cause_seq).collect::<Vec<_>>())
        .fetch_all(&mut *conn)
        .await?;
    if written.len() < ledger.len() {
        tracing::error!(
            rows = ledger.len(),
            written = written.len(),
            "ledger rows already written by the same cause; not written twice"
        );
    }
    let mut days: BTreeMap<i64, i64> = BTreeMap::new();
    for row in written {
        *days
            .entry(row.try_get::<i64, _>("start_ms")?.div_euclid(86_400_000))
            .or_default() += 1;
    }
    if days.is_empty() {
        return Ok(());
    }
    let (days, rows): (Vec<i64>, Vec<i64>) = days.into_iter().unzip();
    sqlx::query(DAYS)
        .bind(days)
        .bind(rows)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Keeps who the group is (and what it requests) for billing, also after it is deleted.
pub(super) async fn remember_group(conn: &mut PgConnection, group: &GroupRecord) -> Result<()> {
    let tags = serde_json::to_string(&group.tags).map_err(|e| corrupt("group tags", e))?;
    sqlx::query(
        "INSERT INTO usage_groups (id, subscription, resource_group, name, location, tags, os_type, \
         cpu_millis, memory_mib, gpu, gpu_sku) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
         ON CONFLICT (id) DO UPDATE SET tags = excluded.tags, cpu_millis = excluded.cpu_millis, \
         memory_mib = excluded.memory_mib, gpu = excluded.gpu, gpu_sku = excluded.gpu_sku",
    )
    .bind(&group.id)
    .bind(&group.subscription)
    .bind(&group.resource_group)
    .bind(&group.name)
    .bind(&group.location)
    .bind(tags)
    .bind(group.spec.os_type.as_str())
    .bind(group.requests.cpu_millis as i64)
    .bind(group.requests.memory_mib as i64)
    .bind(i64::from(group.requests.gpu))
    .bind(group.spec.gpu_sku().map(str::to_ascii_lowercase))
    .execute(conn)
    .await?;
    Ok(())
}

/// Records the node clock of nodes' latest messages (their last heartbeat should they go silent):
/// one statement; a clock only moves forward.
pub(super) async fn nodes_seen(conn: &mut PgConnection, clocks: &[(String, i64)]) -> Result<()> {
    if clocks.is_empty() {
        return Ok(());
    }
    let (nodes, at): (Vec<&str>, Vec<i64>) = clocks.iter().map(|(n, at)| (n.as_str(), *at)).unzip();
    sqlx::query(
        "UPDATE nodes SET last_node_ms = GREATEST(nodes.last_node_ms, seen.node_ms) \
         FROM (SELECT id, max(node_ms) AS node_ms FROM unnest($1::text[], $2::bigint[]) AS v (id, node_ms) \
         GROUP BY id) seen WHERE nodes.id = seen.id",
    )
    .bind(nodes)
    .bind(at)
    .execute(conn)
    .await?;
    Ok(())
}

/// The node clock of the node's latest message, 0 if unknown.
pub(super) async fn last_node_ms(conn: &mut PgConnection, node_id: &str) -> Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT last_node_ms FROM nodes WHERE id = $1")
            .bind(node_id)
            .fetch_optional(conn)
            .await?
            .unwrap_or(0),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
