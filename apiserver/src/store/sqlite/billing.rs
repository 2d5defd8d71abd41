//! The usage ledger in SQLite: runs, caps, node losses and the append-only ledger (see
//! `crate::billing` for the rules). Every function here runs inside the caller's transaction, so a
//! ledger row commits with the state change it comes from or not at all.

use berth_proto::node::GroupStatus;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection};

use super::{GROUP_COLUMNS, corrupt, group_from_row};
use crate::billing::{Period, Rates, RunFacts, split};
use crate::model::OsType;
use crate::store::{GroupRecord, Result};

const RUN_COLUMNS: &str = "id, group_id, node_id, generation, started_ms, finished_ms, alive_ms, cap_ms, \
     superseded_ms, os_type, cpu_millis, memory_mib, gpu, gpu_sku, billed_until_ms, open";

/// A run as stored, with its facts and what the ledger holds of it.
#[derive(Debug, Clone)]
struct Run {
    id: i64,
    node_id: String,
    facts: RunFacts,
    rates: Rates,
    billed_until_ms: i64,
    open: bool,
}

fn run_from_row(row: &SqliteRow) -> Result<Run> {
    let os: String = row.try_get("os_type")?;
    Ok(Run {
        id: row.try_get("id")?,
        node_id: row.try_get("node_id")?,
        facts: RunFacts {
            started_ms: row.try_get("started_ms")?,
            finished_ms: row.try_get("finished_ms")?,
            alive_ms: row.try_get("alive_ms")?,
            cap_ms: row.try_get("cap_ms")?,
            superseded_ms: row.try_get("superseded_ms")?,
            lost_ms: None,
        },
        rates: Rates {
            os_type: OsType::parse(&os).ok_or_else(|| corrupt("usage_runs.os_type", &os))?,
            cpu_millis: row.try_get("cpu_millis")?,
            memory_mib: row.try_get("memory_mib")?,
            gpu: row.try_get("gpu")?,
            gpu_sku: row.try_get("gpu_sku")?,
        },
        billed_until_ms: row.try_get("billed_until_ms")?,
        open: row.try_get::<i64, _>("open")? != 0,
    })
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

/// What a group requests, from the live group (remembered on the way) or, once deleted, from what
/// billing remembered of it.
async fn rates_of(conn: &mut SqliteConnection, group_id: &str) -> Result<Option<Rates>> {
    let sql = format!("SELECT {GROUP_COLUMNS} FROM groups g WHERE g.id = ?");
    if let Some(row) = sqlx::query(&sql)
        .bind(group_id)
        .fetch_optional(&mut *conn)
        .await?
    {
        let group = group_from_row(&row)?;
        remember_group(conn, &group).await?;
    }
    let Some(row) = sqlx::query(
        "SELECT os_type, cpu_millis, memory_mib, gpu, gpu_sku FROM usage_groups WHERE id = ?",
    )
    .bind(group_id)
    .fetch_optional(&mut *conn)
    .await?
    else {
        return Ok(None);
    };
    let os: String = row.try_get("os_type")?;
    Ok(Some(Rates {
        os_type: OsType::parse(&os).ok_or_else(|| corrupt("usage_groups.os_type", &os))?,
        cpu_millis: row.try_get("cpu_millis")?,
        memory_mib: row.try_get("memory_mib")?,
        gpu: row.try_get("gpu")?,
        gpu_sku: row.try_get("gpu_sku")?,
    }))
}

/// Folds a node's report into its run: opens the run on its first report, records that it finished,
/// and writes to the ledger whatever that changes. Reports without a run (not started, removed) say
/// nothing billing needs.
pub(super) async fn observe(
    conn: &mut SqliteConnection,
    node_id: &str,
    seq: u64,
    status: &GroupStatus,
) -> Result<()> {
    let started = status.run_started_unix_ms;
    if started <= 0 {
        return Ok(());
    }
    let observed = status.observed_unix_ms.max(started);
    let finished = (status.run_finished_unix_ms > 0).then_some(status.run_finished_unix_ms);
    let cause = ("report", seq as i64);
    let sql = format!(
        "SELECT {RUN_COLUMNS} FROM usage_runs WHERE group_id = ? AND node_id = ? AND started_ms = ?"
    );
    let existing = sqlx::query(&sql)
        .bind(&status.group_id)
        .bind(node_id)
        .bind(started)
        .fetch_optional(&mut *conn)
        .await?;
    if let Some(row) = existing {
        let mut run = run_from_row(&row)?;
        let before = run.facts.clone();
        if run.facts.finished_ms.is_none() {
            run.facts.finished_ms = finished;
        }
        run.facts.alive_ms = run.facts.alive_ms.max(observed);
        if run.facts != before {
            settle(conn, &mut run, cause).await?;
        }
        return Ok(());
    }

    let Some(rates) = rates_of(conn, &status.group_id).await? else {
        tracing::debug!(group = %status.group_id, "a report about a group billing never knew");
        return Ok(());
    };
    let generation = status.generation as i64;
    let cap_ms: Option<i64> = sqlx::query_scalar(
        "SELECT MIN(at_ms) FROM usage_caps WHERE group_id = ? AND generation >= ?",
    )
    .bind(&status.group_id)
    .bind(generation)
    .fetch_one(&mut *conn)
    .await?;
    let superseded_ms: Option<i64> = sqlx::query_scalar(
        "SELECT MIN(started_ms) FROM usage_runs WHERE group_id = ? AND node_id = ? AND started_ms > ?",
    )
    .bind(&status.group_id)
    .bind(node_id)
    .bind(started)
    .fetch_one(&mut *conn)
    .await?;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO usage_runs (group_id, node_id, generation, started_ms, finished_ms, alive_ms, cap_ms, \
         superseded_ms, os_type, cpu_millis, memory_mib, gpu, gpu_sku, billed_until_ms, open) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1) RETURNING id",
    )
    .bind(&status.group_id)
    .bind(node_id)
    .bind(generation)
    .bind(started)
    .bind(finished)
    .bind(observed)
    .bind(cap_ms)
    .bind(superseded_ms)
    .bind(rates.os_type.as_str())
    .bind(rates.cpu_millis)
    .bind(rates.memory_mib)
    .bind(rates.gpu)
    .bind(&rates.gpu_sku)
    .bind(started)
    .fetch_one(&mut *conn)
    .await?;
    let mut run = Run {
        id,
        node_id: node_id.to_owned(),
        facts: RunFacts {
            started_ms: started,
            finished_ms: finished,
            alive_ms: observed,
            cap_ms,
            superseded_ms,
            lost_ms: None,
        },
        rates,
        billed_until_ms: started,
        open: true,
    };
    settle(conn, &mut run, cause).await?;

    // This run ends the earlier runs of the group on this node (a restart or an update).
    let sql = format!(
        "SELECT {RUN_COLUMNS} FROM usage_runs WHERE group_id = ? AND node_id = ? AND started_ms < ? \
         AND (superseded_ms IS NULL OR superseded_ms > ?)"
    );
    let earlier = sqlx::query(&sql)
        .bind(&status.group_id)
        .bind(node_id)
        .bind(started)
        .bind(started)
        .fetch_all(&mut *conn)
        .await?;
    for row in earlier {
        let mut run = run_from_row(&row)?;
        run.facts.superseded_ms = Some(started);
        settle(conn, &mut run, cause).await?;
    }
    Ok(())
}

/// The API stopped or deleted the group at `at_ms`: every run of `generation` or older ends there at
/// the latest. `cause` is `stop` or `delete`.
pub(super) async fn cap(
    conn: &mut SqliteConnection,
    group_id: &str,
    generation: i64,
    at_ms: i64,
    cause: &'static str,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO usage_caps (group_id, generation, at_ms) VALUES (?, ?, ?) \
         ON CONFLICT (group_id, generation) DO UPDATE SET at_ms = MIN(at_ms, excluded.at_ms)",
    )
    .bind(group_id)
    .bind(generation)
    .bind(at_ms)
    .execute(&mut *conn)
    .await?;
    let sql = format!(
        "SELECT {RUN_COLUMNS} FROM usage_runs WHERE group_id = ? AND generation <= ? \
         AND (cap_ms IS NULL OR cap_ms > ?)"
    );
    let rows = sqlx::query(&sql)
        .bind(group_id)
        .bind(generation)
        .bind(at_ms)
        .fetch_all(&mut *conn)
        .await?;
    for row in rows {
        let mut run = run_from_row(&row)?;
        run.facts.cap_ms = Some(at_ms);
        settle(conn, &mut run, (cause, generation)).await?;
    }
    Ok(())
}

/// The node went silent; `last_ms` is its last heartbeat (node clock). Its runs not known to have
/// finished end there, until the node reports them again.
pub(super) async fn node_lost(conn: &mut SqliteConnection, node_id: &str, last_ms: i64) -> Result<()> {
    sqlx::query("INSERT OR IGNORE INTO usage_node_losses (node_id, at_ms) VALUES (?, ?)")
        .bind(node_id)
        .bind(last_ms)
        .execute(&mut *conn)
        .await?;
    let sql = format!(
        "SELECT {RUN_COLUMNS} FROM usage_runs WHERE node_id = ? AND finished_ms IS NULL"
    );
    let rows = sqlx::query(&sql)
        .bind(node_id)
        .fetch_all(&mut *conn)
        .await?;
    for row in rows {
        let mut run = run_from_row(&row)?;
        settle(conn, &mut run, ("lost", last_ms)).await?;
    }
    Ok(())
}

/// Records the node clock of a node's latest message (its last heartbeat should it go silent).
pub(super) async fn node_seen(conn: &mut SqliteConnection, node_id: &str, node_ms: i64) -> Result<()> {
    sqlx::query("UPDATE nodes SET last_node_ms = MAX(last_node_ms, ?) WHERE id = ?")
        .bind(node_ms)
        .bind(node_id)
        .execute(conn)
        .await?;
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

/// Works out the run's end from its facts and writes the difference to the ledger, then stores the run.
async fn settle(conn: &mut SqliteConnection, run: &mut Run, cause: (&str, i64)) -> Result<()> {
    run.facts.lost_ms = sqlx::query_scalar(
        "SELECT MIN(at_ms) FROM usage_node_losses WHERE node_id = ? AND at_ms >= ?",
    )
    .bind(&run.node_id)
    .bind(run.facts.alive_ms)
    .fetch_one(&mut *conn)
    .await?;
    match run.facts.end() {
        Some(end) => {
            if end != run.billed_until_ms {
                append(conn, run, run.billed_until_ms, end, cause).await?;
                run.billed_until_ms = end;
            }
            run.open = false;
        }
        None => run.open = true,
    }
    sqlx::query(
        "UPDATE usage_runs SET finished_ms = ?, alive_ms = ?, cap_ms = ?, superseded_ms = ?, \
         billed_until_ms = ?, open = ? WHERE id = ?",
    )
    .bind(run.facts.finished_ms)
    .bind(run.facts.alive_ms)
    .bind(run.facts.cap_ms)
    .bind(run.facts.superseded_ms)
    .bind(run.billed_until_ms)
    .bind(i64::from(run.open))
    .bind(run.id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Appends the rows for moving a run's billed end from `from` to `to`: positive when it grows,
/// negative (a correction) when it shrinks; one row per meter and UTC day.
async fn append(
    conn: &mut SqliteConnection,
    run: &Run,
    from: i64,
    to: i64,
    (cause, cause_seq): (&str, i64),
) -> Result<()> {
    let (lo, hi, sign) = if to > from {
        (from, to, 1)
    } else {
        (to, from, -1)
    };
    for (meter, rate) in run.rates.meters() {
        if rate == 0 {
            continue;
        }
        for (start, end) in split(lo, hi, Period::Day) {
            sqlx::query(
                "INSERT OR IGNORE INTO usage_ledger (run_id, meter, start_ms, end_ms, quantity, cause, cause_seq) \
                 VALUES (?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(run.id)
            .bind(&meter)
            .bind(start)
            .bind(end)
            .bind(sign * rate * (end - start))
            .bind(cause)
            .bind(cause_seq)
            .execute(&mut *conn)
            .await?;
        }
    }
    Ok(())
}
