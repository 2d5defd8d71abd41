//! Exports read the ledger through rusqlite on a connection of their own: synchronous stepping over a
//! prepared statement costs a fraction of an async driver's per-row overhead, which is what lets an
//! export stream millions of rows a second. Both drivers link the same SQLite.

use std::path::PathBuf;

use rusqlite::{Connection, OpenFlags, params};

use crate::billing::{Period, Rates, split};
use crate::model::OsType;
use crate::store::{Result, StoreError, UsageFilter, UsageGroup, UsageReader, UsageRow};

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
    StoreError::Database(sqlx::Error::Protocol(format!("export: {err}")))
}

/// An open run's accrued piece, owned (the open runs are few: those running now).
struct Accrued {
    meter: String,
    start_ms: i64,
    end_ms: i64,
    quantity: i64,
    run_id: i64,
    group: [String; 8],
}

impl Accrued {
    fn row(&self) -> UsageRow<'_> {
        let g = &self.group;
        UsageRow {
            ledger_id: 0,
            meter: &self.meter,
            start_ms: self.start_ms,
            end_ms: self.end_ms,
            quantity: self.quantity,
            accrued: true,
            group: UsageGroup {
                id: &g[0],
                subscription: &g[1],
                resource_group: &g[2],
                name: &g[3],
                location: &g[4],
                tags: &g[5],
                os_type: &g[6],
                node_id: &g[7],
            },
        }
    }
}

const GROUP_SELECT: &str = "r.group_id, g.subscription, g.resource_group, g.name, g.location, g.tags, r.os_type, r.node_id";

impl UsageReader for SqliteUsageReader {
    fn estimate(&mut self, filter: &UsageFilter) -> Result<u64> {
        let from = Period::Day.floor(filter.from_ms);
        let count: i64 = match &filter.subscription {
            None => self.conn.query_row(
                "SELECT COUNT(*) FROM usage_ledger WHERE start_ms >= ?1 AND start_ms < ?2",
                params![from, filter.to_ms],
                |row| row.get(0),
            ),
            Some(subscription) => self.conn.query_row(
                "SELECT COUNT(*) FROM usage_ledger l JOIN usage_runs r ON r.id = l.run_id \
                 JOIN usage_groups g ON g.id = r.group_id \
                 WHERE l.start_ms >= ?1 AND l.start_ms < ?2 AND g.subscription = ?3 COLLATE NOCASE",
                params![from, filter.to_ms, subscription],
                |row| row.get(0),
            ),
        }
        .map_err(database)?;
        Ok(count.max(0) as u64)
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
                "SELECT r.id, r.billed_until_ms, r.cpu_millis, r.memory_mib, r.gpu, r.gpu_sku, {GROUP_SELECT} \
                 FROM usage_runs r JOIN usage_groups g ON g.id = r.group_id \
                 WHERE r.open = 1 AND (?1 IS NULL OR g.subscription = ?1 COLLATE NOCASE)"
            );
            let mut stmt = tx.prepare(&sql).map_err(database)?;
            let mut rows = stmt.query(params![subscription]).map_err(database)?;
            while let Some(row) = rows.next().map_err(database)? {
                let run_id: i64 = row.get(0).map_err(database)?;
                let billed_until: i64 = row.get(1).map_err(database)?;
                let mut group: [String; 8] = Default::default();
                for (i, slot) in group.iter_mut().enumerate() {
                    *slot = row.get(6 + i).map_err(database)?;
                }
                let rates = Rates {
                    os_type: OsType::parse(&group[6]).unwrap_or(OsType::Linux),
                    cpu_millis: row.get(2).map_err(database)?,
                    memory_mib: row.get(3).map_err(database)?,
                    gpu: row.get(4).map_err(database)?,
                    gpu_sku: row.get(5).map_err(database)?,
                };
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
                                group: group.clone(),
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

        let sql = format!(
            "SELECT l.id, l.meter, l.start_ms, l.end_ms, l.quantity, {GROUP_SELECT} \
             FROM usage_ledger l JOIN usage_runs r ON r.id = l.run_id JOIN usage_groups g ON g.id = r.group_id \
             WHERE l.start_ms >= ?1 AND l.start_ms < ?2 AND (?3 IS NULL OR g.subscription = ?3 COLLATE NOCASE) \
             ORDER BY l.start_ms, l.id"
        );
        let mut stmt = tx.prepare(&sql).map_err(database)?;
        let mut rows = stmt
            .query(params![from, filter.to_ms, subscription])
            .map_err(database)?;
        while let Some(row) = rows.next().map_err(database)? {
            let start_ms: i64 = row.get(2).map_err(database)?;
            while let Some(piece) = accrued.next_if(|a| a.start_ms < start_ms) {
                each(&piece.row()).map_err(StoreError::Sink)?;
            }
            let usage = UsageRow {
                ledger_id: row.get(0).map_err(database)?,
                meter: text(row, 1)?,
                start_ms,
                end_ms: row.get(3).map_err(database)?,
                quantity: row.get(4).map_err(database)?,
                accrued: false,
                group: UsageGroup {
                    id: text(row, 5)?,
                    subscription: text(row, 6)?,
                    resource_group: text(row, 7)?,
                    name: text(row, 8)?,
                    location: text(row, 9)?,
                    tags: text(row, 10)?,
                    os_type: text(row, 11)?,
                    node_id: text(row, 12)?,
                },
            };
            each(&usage).map_err(StoreError::Sink)?;
        }
        for piece in accrued {
            each(&piece.row()).map_err(StoreError::Sink)?;
        }
        Ok(())
    }
}
