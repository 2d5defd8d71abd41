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

const RUN_COLUMNS: &str = "id, group_id, node_id, subject, generation, started_ms, finished_ms, alive_ms, cap_ms, \
     superseded_ms, os_type, cpu_millis, memory_mib, gpu, gpu_sku, billed_until_ms, open";

/// A run as stored, with its facts and what the ledger holds of it.
#[derive(Debug, Clone)]
struct Run {
    id: i64,
    node_id: String,
    /// `usage_subjects.key` of (group, node).
    subject: i64,
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
        subject: row.try_get("subject")?,
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
        if run.facts == before {
            return Ok(());
        }
        if run.open && run.facts.finished_ms.is_none() {
            // Still running and said so later: no loss can apply past this, the end stays unknown.
            sqlx::query("UPDATE usage_runs SET alive_ms = ? WHERE id = ?")
                .bind(run.facts.alive_ms)
                .bind(run.id)
                .execute(&mut *conn)
                .await?;
        } else {
            settle(conn, &mut run, cause).await?;
        }
        return Ok(());
    }

    let generation = status.generation as i64;
    let placed_on: Option<String> = sqlx::query_scalar(
        "SELECT node_id FROM usage_assignments WHERE group_id = ? AND generation <= ? \
         ORDER BY generation DESC LIMIT 1",
    )
    .bind(&status.group_id)
    .bind(generation)
    .fetch_optional(&mut *conn)
    .await?;
    if placed_on.as_deref() != Some(node_id) {
        tracing::warn!(node = node_id, group = %status.group_id, generation, "a node reported a run of a group it was not given; not billed");
        return Ok(());
    }
    let Some(rates) = rates_of(conn, &status.group_id).await? else {
        tracing::debug!(group = %status.group_id, "a report about a group billing never knew");
        return Ok(());
    };
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
    sqlx::query("INSERT OR IGNORE INTO usage_subjects (group_id, node_id) VALUES (?, ?)")
        .bind(&status.group_id)
        .bind(node_id)
        .execute(&mut *conn)
        .await?;
    let subject: i64 =
        sqlx::query_scalar("SELECT key FROM usage_subjects WHERE group_id = ? AND node_id = ?")
            .bind(&status.group_id)
            .bind(node_id)
            .fetch_one(&mut *conn)
            .await?;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO usage_runs (group_id, node_id, subject, generation, started_ms, finished_ms, alive_ms, \
         cap_ms, superseded_ms, os_type, cpu_millis, memory_mib, gpu, gpu_sku, billed_until_ms, open) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1) RETURNING id",
    )
    .bind(&status.group_id)
    .bind(node_id)
    .bind(subject)
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
        subject,
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
pub(super) async fn node_lost(
    conn: &mut SqliteConnection,
    node_id: &str,
    last_ms: i64,
) -> Result<()> {
    sqlx::query("INSERT OR IGNORE INTO usage_node_losses (node_id, at_ms) VALUES (?, ?)")
        .bind(node_id)
        .bind(last_ms)
        .execute(&mut *conn)
        .await?;
    let sql =
        format!("SELECT {RUN_COLUMNS} FROM usage_runs WHERE node_id = ? AND finished_ms IS NULL");
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
pub(super) async fn node_seen(
    conn: &mut SqliteConnection,
    node_id: &str,
    node_ms: i64,
) -> Result<()> {
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
            let written = sqlx::query(
                "INSERT OR IGNORE INTO usage_ledger (run_id, subject, meter, start_ms, end_ms, quantity, cause, cause_seq) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(run.id)
            .bind(run.subject)
            .bind(&meter)
            .bind(start)
            .bind(end)
            .bind(sign * rate * (end - start))
            .bind(cause)
            .bind(cause_seq)
            .execute(&mut *conn)
            .await?;
            if written.rows_affected() == 1 {
                sqlx::query(
                    "INSERT INTO usage_days (day, rows) VALUES (?, 1) \
                     ON CONFLICT (day) DO UPDATE SET rows = rows + 1",
                )
                .bind(start.div_euclid(86_400_000))
                .execute(&mut *conn)
                .await?;
            } else {
                // The same cause wrote this piece before: a replay, which the run's state should
                // already have absorbed. Say so: it would mean a cause number was reused.
                tracing::error!(
                    run = run.id,
                    meter,
                    cause,
                    cause_seq,
                    start,
                    "ledger row already written by the same cause; not written twice"
                );
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    //! Property: whatever order node reports, API stops and deletes, and node losses arrive in, and
    //! however often each is replayed, every run is billed exactly its true running time, and the
    //! exports (raw and rolled up) add up to the ledger.

    use berth_proto::node::GroupPhase;
    use proptest::prelude::*;

    use super::*;
    use crate::billing::export::{ExportQuery, Format, Granularity, write_export};
    use crate::billing::prices::PriceSheet;
    use crate::store::UsageStore as _;
    use crate::store::sqlite::SqliteStore;

    const GROUP: &str = "g-1";
    /// 2026-11-22T23:59:00Z: runs cross midnight often.
    const BASE: i64 = 1_795_391_940_000;

    #[derive(Debug, Clone)]
    enum Fate {
        /// The group exits by itself; maybe stopped through the API afterwards.
        Finish { stop_after: Option<i64> },
        /// Stopped through the API; the node maybe reports its teardown.
        Stop { teardown: Option<i64> },
        /// Restarted: the next run begins on the same node where this one ends.
        Restart,
        /// The node goes silent for good; maybe stopped through the API afterwards.
        LostForever { stop_after: Option<i64> },
        /// The node goes silent, comes back still running the group, then the group exits.
        LostAndBack { back_after: i64 },
    }

    #[derive(Debug, Clone)]
    enum Event {
        Report {
            node: &'static str,
            seq: u64,
            status: GroupStatus,
        },
        Cap {
            generation: i64,
            at: i64,
            cause: &'static str,
        },
        Lost {
            node: &'static str,
            at: i64,
        },
    }

    fn report(
        node: &'static str,
        seq: &mut u64,
        generation: i64,
        started: i64,
        observed: i64,
        finished: Option<i64>,
    ) -> Event {
        *seq += 1;
        Event::Report {
            node,
            seq: *seq,
            status: GroupStatus {
                group_id: GROUP.to_owned(),
                generation: generation as u64,
                phase: if finished.is_some() {
                    GroupPhase::Succeeded
                } else {
                    GroupPhase::Running
                } as i32,
                observed_unix_ms: observed,
                run_started_unix_ms: started,
                run_finished_unix_ms: finished.unwrap_or(0),
                ..Default::default()
            },
        }
    }

    /// The events of a plan, each run's true billed duration, and where each generation was placed.
    #[allow(clippy::type_complexity)]
    fn timeline(
        offset: i64,
        plan: &[(bool, i64, i64, Fate)],
    ) -> (Vec<Event>, Vec<i64>, Vec<(i64, &'static str)>) {
        let nodes = ["n1", "n2"];
        let mut dead = [false, false];
        let mut seq = 0u64;
        let mut events = Vec::new();
        let mut truth = Vec::new();
        let mut placed = Vec::new();
        let mut t = BASE + offset;
        let mut generation = 1i64;
        let mut forced: Option<usize> = None;
        let mut plan = plan.to_vec();
        if matches!(plan.last(), Some((_, _, _, Fate::Restart))) {
            let (pick, dur, gap, _) = plan[0].clone();
            plan.push((pick, dur, gap, Fate::Finish { stop_after: None }));
        }
        for (pick, dur, gap, fate) in plan {
            let restarted = forced.is_some();
            let n = match forced.take() {
                Some(n) => n,
                None => {
                    let preferred = usize::from(pick);
                    if !dead[preferred] {
                        preferred
                    } else if !dead[1 - preferred] {
                        1 - preferred
                    } else {
                        break;
                    }
                }
            };
            let node = nodes[n];
            placed.push((generation, node));
            // A restart's new run begins where the old one was ended.
            let started = if restarted { t } else { t + gap };
            events.push(report(node, &mut seq, generation, started, started, None));
            events.push(report(
                node,
                &mut seq,
                generation,
                started,
                started + dur / 2,
                None,
            ));
            let end;
            match fate {
                Fate::Finish { stop_after } => {
                    end = started + dur;
                    events.push(report(node, &mut seq, generation, started, end, Some(end)));
                    truth.push(dur);
                    if let Some(after) = stop_after {
                        events.push(Event::Cap {
                            generation,
                            at: end + after,
                            cause: "stop",
                        });
                    }
                    t = end + stop_after.unwrap_or(0);
                    generation += 1;
                }
                Fate::Stop { teardown } => {
                    end = started + dur;
                    events.push(Event::Cap {
                        generation,
                        at: end,
                        cause: "stop",
                    });
                    if let Some(td) = teardown {
                        events.push(report(
                            node,
                            &mut seq,
                            generation,
                            started,
                            end + td,
                            Some(end + td),
                        ));
                    }
                    truth.push(dur);
                    t = end + teardown.unwrap_or(0);
                    generation += 1;
                }
                Fate::Restart => {
                    end = started + dur.max(1);
                    truth.push(end - started);
                    t = end;
                    generation += 1;
                    forced = Some(n);
                    continue;
                }
                Fate::LostForever { stop_after } => {
                    // The last message was the report at started + dur / 2; the loss is noticed later.
                    let last = started + dur / 2;
                    events.push(Event::Lost { node, at: last });
                    truth.push(last - started);
                    dead[n] = true;
                    if let Some(after) = stop_after {
                        events.push(Event::Cap {
                            generation,
                            at: last + after,
                            cause: "stop",
                        });
                    }
                    t = last + stop_after.unwrap_or(0);
                    generation += 1;
                }
                Fate::LostAndBack { back_after } => {
                    let last = started + dur / 2;
                    events.push(Event::Lost { node, at: last });
                    let back = last + back_after;
                    events.push(report(node, &mut seq, generation, started, back, None));
                    end = back + dur / 2 + 1;
                    events.push(report(node, &mut seq, generation, started, end, Some(end)));
                    truth.push(end - started);
                    t = end;
                    generation += 1;
                }
            }
        }
        events.push(Event::Cap {
            generation: generation - 1,
            at: t + 1,
            cause: "delete",
        });
        (events, truth, placed)
    }

    fn fate() -> impl Strategy<Value = Fate> {
        prop_oneof![
            proptest::option::of(1i64..5_000).prop_map(|stop_after| Fate::Finish { stop_after }),
            proptest::option::of(0i64..3_000).prop_map(|teardown| Fate::Stop { teardown }),
            Just(Fate::Restart),
            proptest::option::of(1i64..5_000)
                .prop_map(|stop_after| Fate::LostForever { stop_after }),
            (1i64..20_000).prop_map(|back_after| Fate::LostAndBack { back_after }),
        ]
    }

    async fn assign(store: &SqliteStore, generation: i64, node: &str) {
        sqlx::query(
            "INSERT INTO usage_assignments (group_id, generation, node_id) VALUES (?, ?, ?)",
        )
        .bind(GROUP)
        .bind(generation)
        .bind(node)
        .execute(&store.writer)
        .await
        .unwrap();
    }

    async fn apply(store: &SqliteStore, event: &Event) {
        let mut tx = store.writer.begin().await.unwrap();
        match event {
            Event::Report { node, seq, status } => observe(&mut tx, node, *seq, status).await,
            Event::Cap {
                generation,
                at,
                cause,
            } => cap(&mut tx, GROUP, *generation, *at, cause).await,
            Event::Lost { node, at } => node_lost(&mut tx, node, *at).await,
        }
        .unwrap();
        tx.commit().await.unwrap();
    }

    /// An exact decimal (as JSON writes it) in units of 10^-13.
    fn fixed(text: &str) -> i128 {
        let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
        let negative = whole.starts_with('-');
        let whole: i128 = whole.trim_start_matches('-').parse().unwrap();
        let frac: i128 = format!("{frac:0<13}").parse().unwrap();
        let value = whole * 10i128.pow(13) + frac;
        if negative { -value } else { value }
    }

    fn export_total(store: &SqliteStore, granularity: Granularity, meter: &str) -> i128 {
        let mut out = Vec::new();
        let query = ExportQuery {
            from_ms: BASE - 86_400_000,
            to_ms: BASE + 10 * 86_400_000,
            granularity,
            format: Format::Jsonl,
            subscription: None,
        };
        let mut reader = store.usage_reader().unwrap();
        write_export(
            reader.as_mut(),
            &query,
            &PriceSheet::builtin(),
            BASE,
            &mut out,
        )
        .unwrap();
        // Read as text: a JSON parser would turn the exact decimals into floats.
        let field = |line: &str, name: &str| -> String {
            let at = line.find(&format!("\"{name}\":")).unwrap() + name.len() + 3;
            let rest = &line[at..];
            rest[..rest.find(',').unwrap()].trim_matches('"').to_owned()
        };
        String::from_utf8(out)
            .unwrap()
            .lines()
            .filter(|line| field(line, "SkuId") == meter)
            .map(|line| fixed(&field(line, "ConsumedQuantity")))
            .sum()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        #[test]
        fn every_run_is_billed_its_true_time_whatever_the_order(
            offset in 0i64..120_000,
            cpu in 1i64..4_000,
            memory in 1i64..16_384,
            plan in proptest::collection::vec(
                (any::<bool>(), 1i64..90_000, 1i64..10_000, fate()), 1..6),
            order in Just(()).prop_perturb(|_, mut rng| rng.random::<u64>()),
            duplicates in proptest::collection::vec(any::<prop::sample::Index>(), 0..8),
        ) {
            let (events, truth, placed) = timeline(offset, &plan);
            let mut delivered = events.clone();
            for index in &duplicates {
                delivered.push(events[index.index(events.len())].clone());
            }
            // Any order: a seeded shuffle.
            let mut state = order | 1;
            for i in (1..delivered.len()).rev() {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                delivered.swap(i, (state % (i as u64 + 1)) as usize);
            }

            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async {
                let dir = tempfile::tempdir().unwrap();
                let store = SqliteStore::open(&dir.path().join("t.db")).await.unwrap();
                sqlx::query(
                    "INSERT INTO usage_groups (id, subscription, resource_group, name, location, tags, os_type, \
                     cpu_millis, memory_mib, gpu) VALUES (?, 'sub', 'rg', 'web', 'local', '{}', 'Linux', ?, ?, 0)",
                )
                .bind(GROUP)
                .bind(cpu)
                .bind(memory)
                .execute(&store.writer)
                .await
                .unwrap();
                // Placements precede every report about them.
                for (generation, node) in &placed {
                    assign(&store, *generation, node).await;
                }
                for event in &delivered {
                    apply(&store, event).await;
                }

                let runs: Vec<(i64, i64, i64)> = sqlx::query_as(
                    "SELECT started_ms, billed_until_ms, open FROM usage_runs ORDER BY started_ms",
                )
                .fetch_all(&store.writer)
                .await
                .unwrap();
                let billed: Vec<i64> = runs.iter().map(|(s, until, _)| until - s).collect();
                prop_assert_eq!(&billed, &truth, "per run, in order of start");
                prop_assert!(runs.iter().all(|r| r.2 == 0), "every run has ended: {:?}", runs);

                let seconds: i64 = truth.iter().sum();
                for (meter, rate, per_second) in [
                    ("linux/vcpu_seconds", cpu, 1_000_000i128),
                    ("linux/memory_gib_seconds", memory, 1_024_000i128),
                ] {
                    let ledger: i64 = sqlx::query_scalar(
                        "SELECT COALESCE(SUM(quantity), 0) FROM usage_ledger WHERE meter = ?",
                    )
                    .bind(meter)
                    .fetch_one(&store.writer)
                    .await
                    .unwrap();
                    prop_assert_eq!(ledger, seconds * rate, "{} in the ledger", meter);
                    // Exports: quantities in units of 10^-13 of the meter's unit.
                    let expected = i128::from(seconds * rate) * 10i128.pow(13) / per_second;
                    for granularity in [Granularity::Raw, Granularity::Hourly, Granularity::Daily, Granularity::Monthly] {
                        prop_assert_eq!(
                            export_total(&store, granularity, meter),
                            expected,
                            "{} {:?}", meter, granularity
                        );
                    }
                }
                let crossing: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM usage_ledger WHERE start_ms / 86400000 != (end_ms - 1) / 86400000",
                )
                .fetch_one(&store.writer)
                .await
                .unwrap();
                prop_assert_eq!(crossing, 0, "no ledger row crosses midnight");
                store.close().await;
                Ok(())
            })?;
        }
    }

    #[tokio::test]
    async fn a_replayed_report_adds_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("t.db")).await.unwrap();
        sqlx::query(
            "INSERT INTO usage_groups (id, subscription, resource_group, name, location, tags, os_type, \
             cpu_millis, memory_mib, gpu) VALUES (?, 'sub', 'rg', 'web', 'local', '{}', 'Linux', 1000, 1024, 0)",
        )
        .bind(GROUP)
        .execute(&store.writer)
        .await
        .unwrap();
        assign(&store, 1, "n1").await;
        let mut seq = 0;
        // A node the group was never given cannot open a run for it.
        apply(
            &store,
            &report("n2", &mut seq, 1, BASE, BASE + 5_000, Some(BASE + 5_000)),
        )
        .await;
        let runs: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM usage_runs")
            .fetch_one(&store.writer)
            .await
            .unwrap();
        assert_eq!(runs, 0);
        let finished = report("n1", &mut seq, 1, BASE, BASE + 5_000, Some(BASE + 5_000));
        for _ in 0..3 {
            apply(&store, &finished).await;
        }
        let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM usage_ledger")
            .fetch_one(&store.writer)
            .await
            .unwrap();
        assert_eq!(rows, 2, "one row per meter");
        // An open run is accrued to now in exports, marked as such.
        let running = report("n1", &mut seq, 2, BASE + 10_000, BASE + 10_000, None);
        apply(&store, &running).await;
        let mut out = Vec::new();
        let query = ExportQuery {
            from_ms: BASE,
            to_ms: BASE + 60_000,
            granularity: Granularity::Raw,
            format: Format::Jsonl,
            subscription: None,
        };
        let mut reader = store.usage_reader().unwrap();
        write_export(
            reader.as_mut(),
            &query,
            &PriceSheet::builtin(),
            BASE + 12_000,
            &mut out,
        )
        .unwrap();
        let rows: Vec<serde_json::Value> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let accrued: Vec<&serde_json::Value> =
            rows.iter().filter(|r| r["x_Accrued"] == true).collect();
        assert_eq!(accrued.len(), 2, "{rows:?}");
        assert_eq!(accrued[0]["ConsumedQuantity"].to_string(), "2");
        assert_eq!(accrued[0]["x_LedgerId"], serde_json::Value::Null);
    }
}
