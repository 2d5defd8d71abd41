//! Exports read the ledger through rusqlite on a connection of their own: synchronous stepping over a
//! prepared statement costs a fraction of an async driver's per-row overhead, which is what lets an
//! export stream millions of rows a second. Both drivers link the same SQLite.
//!
//! The ledger is read from `usage_ledger_export` alone (the index holds every column an export needs,
//! in order of start); who a row is about comes from its subject, looked up once per subject.

use std::path::PathBuf;

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

use crate::billing::Period;
use crate::store::usage_rows::{Accruals, OpenRun, SUBJECT_SELECT, Subject, Subjects};
use crate::store::{Result, StoreError, UsageFilter, UsageReader, UsageRow};

pub(super) struct SqliteUsageReader {
    conn: Connection,
}

impl SqliteUsageReader {
    pub(super) fn open(path: &PathBuf) -> Result<Self> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(database)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(database)?;
        // 8 MiB of page cache: an export reads the index once, in order; more only costs memory.
        conn.pragma_update(None, "cache_size", -8192)
            .map_err(database)?;
        Ok(Self { conn })
    }
}

/// Column `i` of `row` as text, borrowed from the row.
fn text<'r>(row: &'r rusqlite::Row<'_>, i: usize) -> Result<&'r str> {
    match row.get_ref(i).map_err(database)? {
        rusqlite::types::ValueRef::Text(bytes) => std::str::from_utf8(bytes)
            .map_err(|e| StoreError::Corrupt(format!("usage text column {i}: {e}"))),
        _ => Err(StoreError::Corrupt(format!("usage column {i} is not text"))),
    }
}

fn database(err: rusqlite::Error) -> StoreError {
    StoreError::Backend(crate::store::BackendError {
        kind: crate::store::BackendErrorKind::Statement,
        message: format!("export: {err}"),
    })
}

/// The subject in the columns of `SUBJECT_SELECT` from `first` on.
fn subject_from_row(row: &rusqlite::Row<'_>, first: usize) -> Result<Subject> {
    let mut subject = Subject::default();
    for (i, slot) in subject.0.iter_mut().enumerate() {
        *slot = text(row, first + i)?.to_owned();
    }
    Ok(subject)
}

impl UsageReader for SqliteUsageReader {
    fn estimate(&mut self, filter: &UsageFilter) -> Result<u64> {
        let from = Period::Day.floor(filter.from_ms).div_euclid(86_400_000);
        let to = (filter.to_ms + 86_399_999).div_euclid(86_400_000);
        let rows: i64 = self
            .conn
            .query_row(
                "SELECT COALESCE(SUM(rows), 0) FROM usage_days WHERE day >= ?1 AND day < ?2",
                params![from, to],
                |row| row.get(0),
            )
            .map_err(database)?;
        Ok(rows.max(0) as u64)
    }

    fn read(
        &mut self,
        filter: &UsageFilter,
        now_ms: i64,
        each: &mut dyn FnMut(&UsageRow<'_>) -> std::io::Result<()>,
    ) -> Result<()> {
        let from = Period::Day.floor(filter.from_ms);
        // One read transaction: the ledger and the open runs from the same snapshot.
        let tx = self.conn.transaction().map_err(database)?;

        let mut open = Vec::new();
        {
            let sql = format!(
                "SELECT r.id, r.billed_until_ms, r.cpu_millis, r.memory_mib, r.gpu, r.gpu_sku, r.subject, \
                 {SUBJECT_SELECT} FROM usage_runs r JOIN usage_subjects s ON s.key = r.subject \
                 JOIN usage_groups g ON g.id = s.group_id WHERE r.open = 1"
            );
            let mut stmt = tx.prepare(&sql).map_err(database)?;
            let mut rows = stmt.query([]).map_err(database)?;
            while let Some(row) = rows.next().map_err(database)? {
                open.push(OpenRun {
                    run_id: row.get(0).map_err(database)?,
                    billed_until_ms: row.get(1).map_err(database)?,
                    cpu_millis: row.get(2).map_err(database)?,
                    memory_mib: row.get(3).map_err(database)?,
                    gpu: row.get(4).map_err(database)?,
                    gpu_sku: row.get(5).map_err(database)?,
                    subject_key: row.get(6).map_err(database)?,
                    subject: subject_from_row(row, 7)?,
                });
            }
        }
        let mut accruals = Accruals::new(open, filter, now_ms);

        let mut lookup = tx
            .prepare(&format!(
                "SELECT {SUBJECT_SELECT} FROM usage_subjects s JOIN usage_groups g ON g.id = s.group_id \
                 WHERE s.key = ?1"
            ))
            .map_err(database)?;
        let mut subjects = Subjects::new(filter);
        let mut stmt = tx
            .prepare(
                "SELECT id, subject, meter, start_ms, end_ms, quantity FROM usage_ledger \
                 INDEXED BY usage_ledger_export WHERE start_ms >= ?1 AND start_ms < ?2 \
                 ORDER BY start_ms, id",
            )
            .map_err(database)?;
        let mut rows = stmt.query(params![from, filter.to_ms]).map_err(database)?;
        while let Some(row) = rows.next().map_err(database)? {
            let key: i64 = row.get(1).map_err(database)?;
            let subject = match subjects.get(key) {
                Some(subject) => subject,
                None => {
                    subjects.make_room(1);
                    let found = lookup
                        .query_row(params![key], |row| Ok(subject_from_row(row, 0)))
                        .optional()
                        .map_err(database)?
                        .transpose()?;
                    subjects.insert(key, found)
                }
            };
            let Some(subject) = subject else { continue };
            let start_ms: i64 = row.get(3).map_err(database)?;
            accruals.before(start_ms, each)?;
            let usage = UsageRow {
                ledger_id: row.get(0).map_err(database)?,
                subject: key,
                meter: text(row, 2)?,
                start_ms,
                end_ms: row.get(4).map_err(database)?,
                quantity: row.get(5).map_err(database)?,
                accrued: false,
                group: subject.group(),
            };
            each(&usage).map_err(StoreError::Sink)?;
        }
        accruals.rest(each)
    }
}
