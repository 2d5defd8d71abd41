//! Usage: a subscription's quota usage, and the billing ledger's rows for exports.

use super::Result;
use crate::model::Size;

/// Which usage an export reads: rows starting in `[from_ms, to_ms)` after widening `from_ms` to its UTC
/// day (ledger rows never cross a day, so this holds every row that overlaps the window).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageFilter {
    pub from_ms: i64,
    pub to_ms: i64,
    pub subscription: Option<String>,
}

/// Who a usage row is about.
#[derive(Debug, Clone, Copy)]
pub struct UsageGroup<'a> {
    pub id: &'a str,
    pub subscription: &'a str,
    pub resource_group: &'a str,
    pub name: &'a str,
    pub location: &'a str,
    /// A JSON object.
    pub tags: &'a str,
    pub os_type: &'a str,
    pub node_id: &'a str,
}

/// One ledger row, or one day of an open run accrued to now (`ledger_id` 0, `accrued`).
#[derive(Debug, Clone, Copy)]
pub struct UsageRow<'a> {
    pub ledger_id: i64,
    /// Who on which node: the same number for every row of the same (group, node), so readers of
    /// many rows can keep per-subject work (`usage_subjects.key`).
    pub subject: i64,
    pub meter: &'a str,
    pub start_ms: i64,
    pub end_ms: i64,
    /// Integer units of the meter over the whole row; negative for a correction.
    pub quantity: i64,
    pub accrued: bool,
    pub group: UsageGroup<'a>,
}

/// Reads usage for an export on its own connection, from one consistent snapshot. Blocking: run it on
/// a blocking thread (`spawn_blocking`) or outside any runtime, never on an async task (the
/// PostgreSQL reader runs a runtime of its own). Dropping it is fine anywhere.
pub trait UsageReader: Send {
    /// About how many ledger rows the filter selects (for progress bars): the rows of the days the
    /// window touches, all subscriptions.
    fn estimate(&mut self, filter: &UsageFilter) -> Result<u64>;
    /// Calls `each` for every ledger row and accrued piece the filter selects, in order of start
    /// (then ledger id); stops at the first error `each` returns.
    fn read(
        &mut self,
        filter: &UsageFilter,
        now_ms: i64,
        each: &mut dyn FnMut(&UsageRow<'_>) -> std::io::Result<()>,
    ) -> Result<()>;
}

/// Usage.
#[async_trait::async_trait]
pub trait UsageStore: Send + Sync {
    /// A subscription's group count and requested CPU (for usages and quota messages).
    async fn usage(&self, subscription: &str) -> Result<(i64, Size)>;
    /// A reader for exports, on its own connection.
    fn usage_reader(&self) -> Result<Box<dyn UsageReader>>;
}
