//! Exports read the ledger on a connection of their own, from one snapshot (`REPEATABLE READ, READ
//! ONLY`): the ledger and the open runs accrued to now agree, whatever the meter commits meanwhile.
//! The ledger comes through a server-side cursor a page at a time, and who a page's rows are about
//! in one lookup per page of the subjects it has not met yet.
//!
//! [`UsageReader`] is blocking (the HTTP export runs it on `spawn_blocking`, the `export-time`
//! example from `main`, outside any runtime), sqlx is async: the reader owns a current-thread runtime
//! and its connection lives on it, so each call is `block_on` of that runtime. Not
//! `Handle::block_on` of the caller's runtime: there may be none (the example), and on a
//! current-thread one a `Handle::block_on` cannot drive the connection's I/O. The rows are handed to
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
