//! Times an export in process, without HTTP or TLS: the ledger read and the formatting alone, as
//! `scripts/bench billing` reports them beside the HTTPS figures.
//!
//!   export-time DB GRANULARITY FORMAT [DAYS]     # from 2026-10-01T00:00:00Z, 31 days by default

use std::io::Write;
use std::time::Instant;

use anyhow::Context as _;
use berth_apiserver::billing::export::{ExportQuery, Format, Granularity, write_export};
use berth_apiserver::billing::prices::PriceSheet;
use berth_apiserver::store::{SqliteStore, UsageStore};

/// Counts bytes, keeps nothing.
struct Count {
    bytes: u64,
}

impl Write for Count {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.bytes += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// 2026-10-01T00:00:00Z, where `billing-fill` starts.
const FROM_MS: i64 = 1_790_812_800_000;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: export-time DB raw|hourly|daily|monthly csv|jsonl [DAYS]";
    let db = args.get(1).context(usage)?;
    let granularity = Granularity::parse(args.get(2).context(usage)?).context(usage)?;
    let format = Format::parse(args.get(3).context(usage)?).context(usage)?;
    let days: i64 = match args.get(4) {
        Some(days) => days.parse().context(usage)?,
        None => 31,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let store = runtime.block_on(SqliteStore::open(std::path::Path::new(db)))?;
    let query = ExportQuery {
        from_ms: FROM_MS,
        to_ms: FROM_MS + days * 86_400_000,
        granularity,
        format,
        subscription: None,
    };
    let mut reader = store.usage_reader()?;
    let mut out = Count { bytes: 0 };
    let started = Instant::now();
    let rows = write_export(
        reader.as_mut(),
        &query,
        &PriceSheet::builtin(),
        FROM_MS + days * 86_400_000,
        &mut out,
    )?;
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "in process {} {}: {rows} rows, {} bytes, {seconds:.2} s, {:.0} rows/s",
        args[2],
        args[3],
        out.bytes,
        rows as f64 / seconds
    );
    Ok(())
}
