//! Exports read the ledger on a connection of their own, from one snapshot (`REPEATABLE READ, READ
//! ONLY`): the ledger and the open runs accrued to now agree, whatever the meter commits meanwhile.
//! The ledger comes through a server-side cursor a page at a time, and who a page's rows are about
//! in one lookup per page of the subjects it has not met yet.
//!
//! [`UsageReader`] is blocking (the HTTP export runs it on `spawn_blocking`; a tool may call it with
//! no runtime at all), sqlx is async: the reader owns a current-thread runtime and its connection
//! lives on it, so each call is `block_on` of that runtime. Not `Handle::block_on` of the caller's
//! runtime: there may be none, and on a current-thread one `Handle::block_on` does not drive the
//! connection's I/O itself (only that runtime's own `block_on` does). The rows are handed to
//! `each` outside `block_on`, between pages: the HTTP sink (`blocking_send`) must not run inside a
//! runtime. It is dropped with `shutdown_background`, so dropping it anywhere (even on an async task)
//! does not block.

use sqlx::postgres::PgRow;
use sqlx::{Connection, PgConnection, Row};

use crate::billing::Period;
use crate::store::usage_rows::{Accruals, OpenRun, SUBJECT_SELECT, Subject, Subjects};
use crate::store::{
    BackendError, BackendErrorKind, Result, StoreError, UsageFilter, UsageReader, UsageRow,
};

/// Ledger rows fetched at once.
const PAGE: usize = 4_096;

pub(super) struct PgUsageReader {
    /// Both `Some` until dropped.
    conn: Option<PgConnection>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl PgUsageReader {
    pub(super) fn open(url: &str) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| {
                StoreError::Backend(BackendError {
                    kind: BackendErrorKind::Unavailable,
                    message: format!("export: no runtime for its connection: {e}"),
                })
            })?;
        let conn = runtime.block_on(PgConnection::connect(url))?;
        Ok(Self {
            conn: Some(conn),
            runtime: Some(runtime),
        })
    }

    fn parts(&mut self) -> Result<(&tokio::runtime::Runtime, &mut PgConnection)> {
        match (&self.runtime, &mut self.conn) {
            (Some(runtime), Some(conn)) => Ok((runtime, conn)),
            _ => Err(StoreError::Unavailable),
        }
    }
}

impl Drop for PgUsageReader {
    fn drop(&mut self) {
        drop(self.conn.take());
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

fn subject_from_row(row: &PgRow, first: usize) -> Result<Subject> {
    let mut subject = Subject::default();
    for (i, slot) in subject.0.iter_mut().enumerate() {
        *slot = row.try_get(first + i)?;
    }
    Ok(subject)
}

impl UsageReader for PgUsageReader {
    fn estimate(&mut self, filter: &UsageFilter) -> Result<u64> {
        let from = Period::Day.floor(filter.from_ms).div_euclid(86_400_000);
        let to = (filter.to_ms + 86_399_999).div_euclid(86_400_000);
        let (runtime, conn) = self.parts()?;
        let rows: i64 = runtime.block_on(
            sqlx::query_scalar(
                "SELECT COALESCE(SUM(rows), 0)::bigint FROM usage_days WHERE day >= $1 AND day < $2",
            )
            .bind(from)
            .bind(to)
            .fetch_one(conn),
        )?;
        Ok(rows.max(0) as u64)
    }

    fn read(
        &mut self,
        filter: &UsageFilter,
        now_ms: i64,
        each: &mut dyn FnMut(&UsageRow<'_>) -> std::io::Result<()>,
    ) -> Result<()> {
        let from = Period::Day.floor(filter.from_ms);
        let (runtime, conn) = self.parts()?;
        // Dropped on an error: rolled back.
        let mut tx = runtime.block_on(conn.begin())?;
        let open = runtime.block_on(async {
            sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                .execute(&mut *tx)
                .await?;
            let sql = format!(
                "SELECT r.id, r.billed_until_ms, r.cpu_millis, r.memory_mib, r.gpu, r.gpu_sku, r.subject, \
                 {SUBJECT_SELECT} FROM usage_runs r JOIN usage_subjects s ON s.key = r.subject \
                 JOIN usage_groups g ON g.id = s.group_id WHERE r.open = 1"
            );
            let rows = sqlx::query(&sql).fetch_all(&mut *tx).await?;
            sqlx::query(
                "DECLARE usage_export NO SCROLL CURSOR FOR SELECT id, subject, meter, start_ms, end_ms, quantity \
                 FROM usage_ledger WHERE start_ms >= $1 AND start_ms < $2 ORDER BY start_ms, id",
            )
            .bind(from)
            .bind(filter.to_ms)
            .execute(&mut *tx)
            .await?;
            rows.iter()
                .map(|row| {
                    Ok(OpenRun {
                        run_id: row.try_get(0)?,
                        billed_until_ms: row.try_get(1)?,
                        cpu_millis: row.try_get(2)?,
                        memory_mib: row.try_get(3)?,
                        gpu: row.try_get(4)?,
                        gpu_sku: row.try_get(5)?,
                        subject_key: row.try_get(6)?,
                        subject: subject_from_row(row, 7)?,
                    })
                })
                .collect::<Result<Vec<_>>>()
        })?;
        let mut accruals = Accruals::new(open, filter, now_ms);
        let mut subjects = Subjects::new(filter);
        let fetch = format!("FETCH {PAGE} FROM usage_export");
        let lookup = format!(
            "SELECT s.key, {SUBJECT_SELECT} FROM usage_subjects s JOIN usage_groups g ON g.id = s.group_id \
             WHERE s.key = ANY($1::bigint[])"
        );
        loop {
            let page = runtime.block_on(sqlx::query(&fetch).fetch_all(&mut *tx))?;
            if page.is_empty() {
                break;
            }
            let keys = page
                .iter()
                .map(|row| row.try_get::<i64, _>(1))
                .collect::<std::result::Result<Vec<i64>, _>>()?;
            let unknown = |subjects: &Subjects<'_>| {
                let mut unknown: Vec<i64> = keys
                    .iter()
                    .copied()
                    .filter(|k| !subjects.contains(*k))
                    .collect();
                unknown.sort_unstable();
                unknown.dedup();
                unknown
            };
            subjects.make_room(unknown(&subjects).len());
            let wanted = unknown(&subjects);
            if !wanted.is_empty() {
                let found =
                    runtime.block_on(sqlx::query(&lookup).bind(&wanted).fetch_all(&mut *tx))?;
                for row in &found {
                    subjects.insert(row.try_get(0)?, Some(subject_from_row(row, 1)?));
                }
                for key in wanted {
                    if !subjects.contains(key) {
                        subjects.insert(key, None);
                    }
                }
            }
            for (row, key) in page.iter().zip(keys) {
                let Some(Some(subject)) = subjects.get(key) else {
                    continue;
                };
                let start_ms: i64 = row.try_get(3)?;
                accruals.before(start_ms, each)?;
                let usage = UsageRow {
                    ledger_id: row.try_get(0)?,
                    subject: key,
                    meter: row.try_get(2)?,
                    start_ms,
                    end_ms: row.try_get(4)?,
                    quantity: row.try_get(5)?,
                    accrued: false,
                    group: subject.group(),
                };
                each(&usage).map_err(StoreError::Sink)?;
            }
        }
        runtime.block_on(tx.commit())?;
        accruals.rest(each)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::store::UsageStore;
    use crate::store::postgres::PgStore;
    use crate::store::postgres::tests::fresh_store;
    use crate::store::usage_rows::SUBJECTS_CACHED;

    /// 2026-11-22T00:00:00Z.
    const DAY0: i64 = 1_795_305_600_000;

    /// Subjects `n1..=n{count}`, odd ones of `g-a` (subscription `sub-a`), even ones of `g-b`
    /// (`sub-b`), each with a finished run and two ledger rows (vCPU seconds): one at `DAY0 + 10 i`,
    /// one at `DAY0 + 3,600,000 + 10 i`; and one open run of `n1`, billed to `DAY0 + 5`.
    async fn ledger_of(store: &PgStore, count: i64) {
        for sql in [
            "INSERT INTO usage_groups (id, subscription, resource_group, name, location, tags, os_type, \
             cpu_millis, memory_mib, gpu) VALUES ('g-a', 'sub-a', 'rg', 'a', 'local', '{}', 'Linux', 1000, 0, 0), \
             ('g-b', 'sub-b', 'rg', 'b', 'local', '{}', 'Linux', 1000, 0, 0)",
            "INSERT INTO usage_subjects (key, group_id, node_id) SELECT i, CASE WHEN i % 2 = 1 THEN 'g-a' ELSE 'g-b' END, \
             'n' || i FROM generate_series(1, $1) i",
            "INSERT INTO usage_runs (id, group_id, node_id, subject, generation, started_ms, finished_ms, alive_ms, \
             os_type, cpu_millis, memory_mib, gpu, billed_until_ms, open) \
             SELECT i, s.group_id, s.node_id, i, 1, 0, 10, 10, 'Linux', 1000, 0, 0, 10, 0 \
             FROM generate_series(1, $1) i JOIN usage_subjects s ON s.key = i",
            "INSERT INTO usage_runs (id, group_id, node_id, subject, generation, started_ms, alive_ms, \
             os_type, cpu_millis, memory_mib, gpu, billed_until_ms, open) \
             VALUES ($1 + 1, 'g-a', 'n1', 1, 2, 20, 20, 'Linux', 1000, 0, 0, 1795305600005, 1)",
            "INSERT INTO usage_ledger (run_id, subject, meter, start_ms, end_ms, quantity, cause, cause_seq) \
             SELECT i, i, 'linux/vcpu_seconds', 1795305600000 + h + 10 * i, 1795305600000 + h + 10 * i + 10, \
             10000, 'report', h FROM generate_series(1, $1) i, (VALUES (0), (3600000)) hours (h)",
        ] {
            let query = sqlx::query(sql);
            let query = if sql.contains("$1") {
                query.bind(count)
            } else {
                query
            };
            query.execute(&store.pool).await.unwrap();
        }
    }

    /// (ledger id, start, node, quantity, accrued) of every row `read` hands out.
    type Seen = Vec<(i64, i64, String, i64, bool)>;

    async fn read(store: &PgStore, filter: UsageFilter, now_ms: i64) -> (u64, Seen) {
        let store = store.clone();
        tokio::task::spawn_blocking(move || {
            let mut reader = store.usage_reader().unwrap();
            let estimate = reader.estimate(&filter).unwrap();
            let mut seen = Vec::new();
            reader
                .read(&filter, now_ms, &mut |row| {
                    seen.push((
                        row.ledger_id,
                        row.start_ms,
                        row.group.node_id.to_owned(),
                        row.quantity,
                        row.accrued,
                    ));
                    Ok(())
                })
                .unwrap();
            (estimate, seen)
        })
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn an_export_reads_every_page_in_order_with_each_row_s_own_subject() {
        let store = fresh_store().await;
        // More subjects than are cached at once, more rows than a page.
        let count = SUBJECTS_CACHED as i64 + 1_000;
        ledger_of(&store, count).await;
        let filter = UsageFilter {
            from_ms: DAY0,
            to_ms: DAY0 + 86_400_000,
            subscription: Some("SUB-A".to_owned()),
        };
        let (_, seen) = read(&store, filter, DAY0 + 15).await;
        let ledger: Vec<_> = seen.iter().filter(|r| !r.4).collect();
        assert_eq!(
            ledger.len() as i64,
            (count + 1) / 2 * 2,
            "sub-a's rows, both hours"
        );
        for (_, start, node, quantity, _) in &ledger {
            let i = (start - DAY0) % 3_600_000 / 10;
            assert_eq!(node, &format!("n{i}"), "the row at {start} is n{i}'s");
            assert_eq!(*quantity, 10_000);
        }
        assert!(
            seen.windows(2).all(|w| w[0].1 <= w[1].1),
            "in order of start"
        );
        // n1's open run accrues from its billed end to now, before the ledger rows starting later.
        let accrued: Vec<_> = seen.iter().filter(|r| r.4).collect();
        assert_eq!(accrued, vec![&(0, DAY0 + 5, "n1".to_owned(), 10_000, true)]);
        assert!(seen[0].4, "{:?}", &seen[..2]);
        store.close().await;
    }

    #[tokio::test]
    async fn an_export_sees_the_ledger_and_the_open_runs_of_one_moment() {
        let store = fresh_store().await;
        ledger_of(&store, 1).await;
        // The meter keeps settling n1's open run while exports read: each step moves its billed end
        // and appends the ledger row for the stretch, in one transaction.
        let writer = store.clone();
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop = std::sync::Arc::clone(&done);
        let meter = tokio::spawn(async move {
            let mut until = DAY0 + 5;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let mut tx = writer.pool.begin().await.unwrap();
                sqlx::query(
                    "INSERT INTO usage_ledger (run_id, subject, meter, start_ms, end_ms, quantity, cause, cause_seq) \
                     VALUES (2, 1, 'linux/vcpu_seconds', $1, $1 + 10, 10000, 'report', $1)",
                )
                .bind(until)
                .execute(&mut *tx)
                .await
                .unwrap();
                sqlx::query("UPDATE usage_runs SET billed_until_ms = $1 + 10 WHERE id = 2")
                    .bind(until)
                    .execute(&mut *tx)
                    .await
                    .unwrap();
                tx.commit().await.unwrap();
                until += 10;
            }
        });
        let now = DAY0 + 60_000_000;
        let filter = UsageFilter {
            from_ms: DAY0,
            to_ms: DAY0 + 86_400_000,
            subscription: Some("sub-a".to_owned()),
        };
        let reader = store.clone();
        let totals = tokio::task::spawn_blocking(move || {
            let mut reader = reader.usage_reader().unwrap();
            (0..200)
                .map(|_| {
                    let mut total = 0;
                    reader
                        .read(&filter, now, &mut |row| {
                            if row.start_ms >= DAY0 + 5 && row.group.node_id == "n1" {
                                total += row.quantity;
                            }
                            Ok(())
                        })
                        .unwrap();
                    total
                })
                .collect::<Vec<i64>>()
        })
        .await
        .unwrap();
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        meter.await.unwrap();
        // The open run from DAY0 + 5 to now, whatever part of it the ledger held at that moment
        // (n1's finished run's rows start at DAY0 + 10 and DAY0 + 1 h + 10).
        let expected = 1_000 * (now - DAY0 - 5) + 2 * 10_000;
        assert!(
            totals.iter().all(|t| *t == expected),
            "{totals:?} != {expected}"
        );
        store.close().await;
    }

    #[tokio::test]
    async fn the_estimate_counts_the_rows_of_the_days_the_window_touches() {
        let store = fresh_store().await;
        sqlx::query("INSERT INTO usage_days (day, rows) VALUES ($1, 5), ($1 + 1, 7), ($1 + 2, 11)")
            .bind(DAY0 / 86_400_000)
            .execute(&store.pool)
            .await
            .unwrap();
        let filter = UsageFilter {
            from_ms: DAY0 + 1_000,
            to_ms: DAY0 + 86_400_000 + 1,
            subscription: None,
        };
        let (estimate, seen) = read(&store, filter, DAY0).await;
        assert_eq!(estimate, 12);
        assert!(seen.is_empty());
        store.close().await;
    }

    #[tokio::test]
    async fn a_reader_dropped_on_an_async_task_does_not_block_or_panic() {
        let store = fresh_store().await;
        let usage = store.clone();
        let reader = tokio::task::spawn_blocking(move || usage.usage_reader().unwrap())
            .await
            .unwrap();
        drop(reader);
        store.close().await;
    }
}
