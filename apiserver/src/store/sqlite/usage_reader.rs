//! Exports read the ledger through rusqlite on a connection of their own: synchronous stepping over a
//! prepared statement costs a fraction of an async driver's per-row overhead, which is what lets an
//! export stream millions of rows a second. Both drivers link the same SQLite.
//!
//! The ledger is read from `usage_ledger_export` alone (the index holds every column an export needs,
//! in order of start); who a row is about comes from its subject, looked up once per subject.

use std::collections::HashMap;
use std::path::PathBuf;
use std::rc::Rc;

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

use crate::billing::{Period, Rates, split};
use crate::model::OsType;
use crate::store::{Result, StoreError, UsageFilter, UsageGroup, UsageReader, UsageRow};

/// Subjects kept at once; past this the cache starts over (exports over more subjects stay bounded).
const SUBJECTS_CACHED: usize = 15_000;

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

/// Who a subject is: group id, node id, subscription, resource group, name, location, tags, OS.
#[derive(Debug, Clone, Default)]
struct Subject([String; 8]);

impl Subject {
    fn group(&self) -> UsageGroup<'_> {
        let s = &self.0;
        UsageGroup {
            id: &s[0],
            node_id: &s[1],
            subscription: &s[2],
            resource_group: &s[3],
            name: &s[4],
            location: &s[5],
            tags: &s[6],
            os_type: &s[7],
        }
    }

    fn from_row(row: &rusqlite::Row<'_>, first: usize) -> Result<Self> {
        let mut subject = Subject::default();
        for (i, slot) in subject.0.iter_mut().enumerate() {
            *slot = text(row, first + i)?.to_owned();
        }
        Ok(subject)
    }

    fn in_subscription(&self, subscription: Option<&str>) -> bool {
        subscription.is_none_or(|s| self.0[2].eq_ignore_ascii_case(s))
    }
}

const SUBJECT_SELECT: &str = "s.group_id, s.node_id, g.subscription, g.resource_group, g.name, g.location, g.tags, g.os_type";

/// An open run's accrued piece, owned (the open runs are few: those running now).
struct Accrued {
    meter: String,
    start_ms: i64,
    end_ms: i64,
    quantity: i64,
    run_id: i64,
    subject_key: i64,
    subject: Rc<Subject>,
}

impl Accrued {
    fn row(&self) -> UsageRow<'_> {
        UsageRow {
            ledger_id: 0,
            subject: self.subject_key,
            meter: &self.meter,
            start_ms: self.start_ms,
            end_ms: self.end_ms,
            quantity: self.quantity,
            accrued: true,
            group: self.subject.group(),
        }
    }
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
        let subscription = filter.subscription.as_deref();
        // One read transaction: the ledger and the open runs from the same snapshot.
        let tx = self.conn.transaction().map_err(database)?;

        let mut accrued = Vec::new();
        {
            let sql = format!(
                "SELECT r.id, r.billed_until_ms, r.cpu_millis, r.memory_mib, r.gpu, r.gpu_sku, r.subject, \
                 {SUBJECT_SELECT} FROM usage_runs r JOIN usage_subjects s ON s.key = r.subject \
                 JOIN usage_groups g ON g.id = s.group_id WHERE r.open = 1"
            );
            let mut stmt = tx.prepare(&sql).map_err(database)?;
            let mut rows = stmt.query([]).map_err(database)?;
            while let Some(row) = rows.next().map_err(database)? {
                let subject = Subject::from_row(row, 7)?;
                if !subject.in_subscription(subscription) {
                    continue;
                }
                let subject = Rc::new(subject);
                let run_id: i64 = row.get(0).map_err(database)?;
                let billed_until: i64 = row.get(1).map_err(database)?;
                let rates = Rates {
                    os_type: OsType::parse(&subject.0[7]).unwrap_or(OsType::Linux),
                    cpu_millis: row.get(2).map_err(database)?,
                    memory_mib: row.get(3).map_err(database)?,
                    gpu: row.get(4).map_err(database)?,
                    gpu_sku: row.get(5).map_err(database)?,
                };
                let subject_key: i64 = row.get(6).map_err(database)?;
                for (meter, rate) in rates.meters() {
                    if rate == 0 {
                        continue;
                    }
                    for (start, end) in split(billed_until, now_ms, Period::Day) {
                        if start >= from && start < filter.to_ms {
                            accrued.push(Accrued {
                                meter: meter.clone(),
                                start_ms: start,
                                end_ms: end,
                                quantity: rate * (end - start),
                                run_id,
                                subject_key,
                                subject: Rc::clone(&subject),
                            });
                        }
                    }
                }
            }
        }
        accrued.sort_by(|a, b| {
            (a.start_ms, a.run_id, &a.meter).cmp(&(b.start_ms, b.run_id, &b.meter))
        });
        let mut accrued = accrued.into_iter().peekable();

        let mut lookup = tx
            .prepare(&format!(
                "SELECT {SUBJECT_SELECT} FROM usage_subjects s JOIN usage_groups g ON g.id = s.group_id \
                 WHERE s.key = ?1"
            ))
            .map_err(database)?;
        let mut subjects: HashMap<i64, Option<Rc<Subject>>> = HashMap::new();
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
            let subject = match subjects.get(&key) {
                Some(subject) => subject.clone(),
                None => {
                    if subjects.len() >= SUBJECTS_CACHED {
                        subjects.clear();
                    }
                    let subject = lookup
                        .query_row(params![key], |row| Ok(Subject::from_row(row, 0)))
                        .optional()
                        .map_err(database)?
                        .transpose()?
                        .filter(|s| s.in_subscription(subscription))
                        .map(Rc::new);
                    subjects.insert(key, subject.clone());
                    subject
                }
            };
            let Some(subject) = subject else { continue };
            let start_ms: i64 = row.get(3).map_err(database)?;
            while let Some(piece) = accrued.next_if(|a| a.start_ms < start_ms) {
                each(&piece.row()).map_err(StoreError::Sink)?;
            }
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
        for piece in accrued {
            each(&piece.row()).map_err(StoreError::Sink)?;
        }
        Ok(())
    }
}
