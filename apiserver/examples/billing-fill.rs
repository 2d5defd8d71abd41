//! Fills a new Berth database with a synthetic billing ledger, for `scripts/bench billing`.
//!
//! ```text
//! billing-fill --db PATH [--rows 10000000] [--groups N] [--start 2026-10-01] [--days 31] [--seed 1]
//! ```
//!
//! The schema is Berth's own: [`SqliteStore::open`] creates the database and runs the migrations,
//! then the rows go in through rusqlite, in large transactions over prepared statements.
//!
//! The data is what the ledger holds after a month of many short runs: `--groups` groups (a few
//! subscriptions, resource groups, tags) start runs back to back on their node (now and then on
//! another), each run from a minute to eight hours long with up to twenty minutes between runs. A run is
//! written as Berth writes it when its end becomes known (`billing::settle` on the node's report): cut at
//! UTC midnights, one ledger row per meter (`linux/vcpu_seconds` at the group's millicores,
//! `linux/memory_gib_seconds` at its MiB) per piece, quantity = rate × duration exactly, cause `report`
//! with the node's sequence number. Ledger ids follow the order of those writes (by a run's end), run
//! ids the order of the runs' starts, as in a live cluster. Every run is closed (`open = 0`,
//! `billed_until_ms` = its end), so an export holds exactly the ledger rows of its window.
//!
//! Generation stops at exactly `--rows` ledger rows (runs are started across all groups in time order,
//! so the data ends at the same time for every group, a little before the end of `--days`). Prints
//! what it wrote, the time it took and the file's size; the last line is for scripts:
//! `fill rows=N intervals=N from=RFC3339 to=RFC3339`.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail, ensure};
use berth_apiserver::billing::{Period, Rates, split};
use berth_apiserver::model::OsType;
use berth_apiserver::store::SqliteStore;
use clap::Parser;
use rusqlite::{Connection, params};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

const DAY_MS: i64 = 86_400_000;
const MINUTE_MS: i64 = 60_000;
/// Ledger rows a transaction holds.
const ROWS_PER_COMMIT: u64 = 1_000_000;

/// Fills a new Berth SQLite database with a synthetic billing ledger.
#[derive(Debug, Parser)]
struct Args {
    /// The database to create (it must not exist).
    #[arg(long)]
    db: PathBuf,
    /// Ledger rows to write (even: every interval is written for two meters).
    #[arg(long, default_value_t = 10_000_000)]
    rows: u64,
    /// Container groups [default: one per 1,000 rows, at least one].
    #[arg(long)]
    groups: Option<u64>,
    /// The first day of the data (UTC).
    #[arg(long, default_value = "2026-10-01")]
    start: String,
    /// Days the data may span: generation stops at --rows or at the end of these, whichever first.
    #[arg(long, default_value_t = 31)]
    days: i64,
    /// Seed of the generator (the same seed and flags give the same database).
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    ensure!(
        args.rows % 2 == 0,
        "--rows must be even (each interval is two ledger rows)"
    );
    ensure!(args.days > 0, "--days must be positive");
    if args.db.exists() {
        bail!(
            "{} exists: give a path for a new database",
            args.db.display()
        );
    }
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let start_ms = time::Date::parse(&args.start, format)
        .with_context(|| format!("--start {}: not YYYY-MM-DD", args.start))?
        .midnight()
        .assume_utc()
        .unix_timestamp()
        * 1000;
    let window = (start_ms, start_ms + args.days * DAY_MS);
    let groups = args.groups.unwrap_or(args.rows / 1000).max(1);

    let began = Instant::now();
    create_schema(&args.db)?;
    let mut conn = Connection::open(&args.db)
        .with_context(|| format!("while opening {}", args.db.display()))?;
    // A scratch database written by one process: no journal and no syncs while filling (a failed fill
    // is thrown away), a page cache large enough for the indexes; WAL again at the end, as Berth keeps
    // it. (WAL with synchronous=OFF writes every page twice, to the log and at the checkpoint.)
    conn.execute_batch(
        "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; PRAGMA locking_mode = EXCLUSIVE; \
         PRAGMA cache_size = -1048576; PRAGMA temp_store = MEMORY;",
    )
    .context("while setting the fill's pragmas")?;
    let written = fill(&mut conn, &args, groups, window)?;
    conn.execute_batch("PRAGMA locking_mode = NORMAL; PRAGMA journal_mode = WAL;")
        .context("while switching back to WAL")?;
    drop(conn);
    let seconds = began.elapsed().as_secs_f64();

    let bytes = file_size(&args.db)?;
    println!(
        "ledger rows: {} (a ledger row is one meter's interval within one UTC day: {} intervals × 2 meters)",
        written.ledger,
        written.ledger / 2
    );
    println!(
        "runs: {} (all closed), groups: {groups}, subscriptions: {}, nodes: {}",
        written.runs, written.subscriptions, written.nodes
    );
    println!(
        "data: {} to {} (window {} to {})",
        rfc3339(written.first_ms)?,
        rfc3339(written.last_ms)?,
        rfc3339(window.0)?,
        rfc3339(window.1)?
    );
    println!(
        "fill: {seconds:.1} s, {:.0} ledger rows/s; database {:.0} MB ({} bytes)",
        written.ledger as f64 / seconds,
        bytes as f64 / 1e6,
        bytes
    );
    println!(
        "fill rows={} intervals={} from={} to={}",
        written.ledger,
        written.ledger / 2,
        rfc3339(window.0)?,
        rfc3339(window.1)?
    );
    Ok(())
}

/// Creates the database through Berth's store, so the schema is the migrations' own.
fn create_schema(path: &Path) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(async {
            let store = SqliteStore::open(path)
                .await
                .with_context(|| format!("while creating {}", path.display()))?;
            store.close().await;
            Ok(())
        })
}

fn file_size(db: &Path) -> anyhow::Result<u64> {
    let mut bytes = std::fs::metadata(db)?.len();
    for suffix in ["-wal", "-shm"] {
        let mut other = db.as_os_str().to_owned();
        other.push(suffix);
        if let Ok(meta) = std::fs::metadata(&other) {
            bytes += meta.len();
        }
    }
    Ok(bytes)
}

fn rfc3339(ms: i64) -> anyhow::Result<String> {
    Ok(OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))?.format(&Rfc3339)?)
}

/// SplitMix64: small, fast and the same everywhere, so a seed gives the same database.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, n)`.
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    fn uuid(&mut self) -> String {
        let (a, b) = (self.next(), self.next());
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0x0fff,
            0x8000 | ((b >> 48) & 0x3fff),
            b & 0xffff_ffff_ffff
        )
    }
}

/// A group as billing remembers it.
struct Group {
    id: String,
    cpu_millis: i64,
    memory_mib: i64,
    /// The node its runs go to (now and then it moves).
    node: usize,
    next_start_ms: i64,
}

/// A run whose end is not known yet: its ledger rows are written when the clock passes its end.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Pending {
    end_ms: i64,
    run_id: i64,
    start_ms: i64,
    node: usize,
    subject: i64,
    cpu_millis: i64,
    memory_mib: i64,
}

struct Written {
    ledger: u64,
    runs: u64,
    subscriptions: usize,
    nodes: usize,
    first_ms: i64,
    last_ms: i64,
}

const TEAMS: [&str; 8] = [
    "payments", "search", "ml", "web", "batch", "data", "edge", "ops",
];
const ENVS: [&str; 3] = ["Prod", "Staging", "Dev"];
const KINDS: [&str; 6] = ["api", "worker", "cron", "etl", "render", "train"];
const CPU_MILLIS: [i64; 6] = [250, 500, 1000, 1000, 2000, 4000];
const MEMORY_MIB: [i64; 7] = [512, 1024, 1536, 2048, 4096, 8192, 16384];

fn fill(
    conn: &mut Connection,
    args: &Args,
    group_count: u64,
    (window_start, window_end): (i64, i64),
) -> anyhow::Result<Written> {
    let mut rng = Rng(args.seed);
    let subscriptions: Vec<String> = (0..5).map(|_| rng.uuid()).collect();
    let nodes: Vec<String> = (0..(group_count / 50).max(1)).map(|_| rng.uuid()).collect();
    let mut node_seq = vec![0i64; nodes.len()];
    // Berth's own meter names, from the rates of a Linux group.
    let meters = Rates {
        os_type: OsType::Linux,
        cpu_millis: 1,
        memory_mib: 1,
        gpu: 0,
        gpu_sku: None,
    }
    .meters();
    let (vcpu, memory) = (meters[0].0.as_str(), meters[1].0.as_str());

    let mut groups = Vec::with_capacity(group_count as usize);
    let tx = conn.transaction()?;
    {
        let mut insert = tx.prepare(
            "INSERT INTO usage_groups (id, subscription, resource_group, name, location, tags, os_type, \
             cpu_millis, memory_mib, gpu, gpu_sku) VALUES (?1, ?2, ?3, ?4, 'local', ?5, 'Linux', ?6, ?7, 0, NULL)",
        )?;
        for i in 0..group_count {
            let team = *rng.pick(&TEAMS);
            let env = *rng.pick(&ENVS);
            let group = Group {
                id: rng.uuid(),
                cpu_millis: *rng.pick(&CPU_MILLIS),
                memory_mib: *rng.pick(&MEMORY_MIB),
                node: rng.below(nodes.len() as u64) as usize,
                next_start_ms: window_start + rng.below(2 * 60) as i64 * MINUTE_MS,
            };
            let tags = format!(
                r#"{{"cost-center":"cc-{}","env":"{env}","team":"{team}"}}"#,
                100 + i % 37
            );
            insert.execute(params![
                group.id,
                rng.pick(&subscriptions),
                format!("{team}-{env}"),
                format!("{team}-{}-{i:05}", rng.pick(&KINDS)),
                tags,
                group.cpu_millis,
                group.memory_mib,
            ])?;
            groups.push(group);
        }
    }
    tx.commit()?;

    let mut starts: BinaryHeap<Reverse<(i64, usize)>> = groups
        .iter()
        .enumerate()
        .map(|(i, g)| Reverse((g.next_start_ms, i)))
        .collect();
    let mut pending: BinaryHeap<Reverse<Pending>> = BinaryHeap::new();
    let mut left = args.rows;
    let mut written = Written {
        ledger: 0,
        runs: 0,
        subscriptions: subscriptions.len(),
        nodes: nodes.len(),
        first_ms: i64::MAX,
        last_ms: i64::MIN,
    };
    let mut since_commit = 0u64;
    let mut subjects: std::collections::HashMap<(usize, usize), i64> =
        std::collections::HashMap::new();
    let mut tx = conn.transaction()?;
    loop {
        {
            let mut insert_run = tx.prepare(
                "INSERT INTO usage_runs (id, group_id, node_id, subject, generation, started_ms, finished_ms, \
                 alive_ms, cap_ms, superseded_ms, os_type, cpu_millis, memory_mib, gpu, gpu_sku, billed_until_ms, \
                 open) VALUES (?1, ?2, ?3, ?8, 1, ?4, ?5, ?5, NULL, NULL, 'Linux', ?6, ?7, 0, NULL, ?5, 0)",
            )?;
            let mut insert_subject = tx.prepare(
                "INSERT INTO usage_subjects (key, group_id, node_id) VALUES (?1, ?2, ?3)",
            )?;
            let mut insert_ledger = tx.prepare(
                "INSERT INTO usage_ledger (run_id, subject, meter, start_ms, end_ms, quantity, cause, cause_seq) \
                 VALUES (?1, ?7, ?2, ?3, ?4, ?5, 'report', ?6)",
            )?;
            // Writes the ledger rows of every run that ended by `now`, in order of their ends.
            let mut settle = |now: i64,
                              pending: &mut BinaryHeap<Reverse<Pending>>|
             -> anyhow::Result<u64> {
                let mut rows = 0;
                while pending.peek().is_some_and(|p| p.0.end_ms <= now) {
                    let Some(Reverse(run)) = pending.pop() else {
                        break;
                    };
                    node_seq[run.node] += 1;
                    for (a, b) in split(run.start_ms, run.end_ms, Period::Day) {
                        for (meter, rate) in [(vcpu, run.cpu_millis), (memory, run.memory_mib)] {
                            insert_ledger.execute(params![
                                run.run_id,
                                meter,
                                a,
                                b,
                                rate * (b - a),
                                node_seq[run.node],
                                run.subject
                            ])?;
                            rows += 1;
                        }
                    }
                }
                Ok(rows)
            };

            while since_commit < ROWS_PER_COMMIT && left > 0 {
                let Some(Reverse((start, g))) = starts.pop() else {
                    break;
                };
                if start >= window_end {
                    break;
                }
                since_commit += settle(start, &mut pending)?;
                // From a minute to eight hours, log-uniform (most runs are short), then a pause.
                let minutes = (480f64.ln() * rng.unit()).exp();
                let mut end = (start + (minutes * MINUTE_MS as f64) as i64).min(window_end);
                let mut pieces = split(start, end, Period::Day).count() as u64;
                if 2 * pieces > left {
                    // The last rows: a run within its day, so the count comes out exact.
                    end = end.min(Period::Day.next_boundary(start));
                    pieces = 1;
                }
                left -= 2 * pieces;
                let group = &mut groups[g];
                if rng.below(20) == 0 {
                    group.node = rng.below(nodes.len() as u64) as usize;
                }
                written.runs += 1;
                let run_id = written.runs as i64;
                let next_subject = subjects.len() as i64 + 1;
                let subject = *subjects.entry((g, group.node)).or_insert(next_subject);
                if subject == next_subject {
                    insert_subject.execute(params![subject, group.id, nodes[group.node]])?;
                }
                insert_run.execute(params![
                    run_id,
                    group.id,
                    nodes[group.node],
                    start,
                    end,
                    group.cpu_millis,
                    group.memory_mib,
                    subject
                ])?;
                written.first_ms = written.first_ms.min(start);
                written.last_ms = written.last_ms.max(end);
                pending.push(Reverse(Pending {
                    end_ms: end,
                    run_id,
                    start_ms: start,
                    node: group.node,
                    subject,
                    cpu_millis: group.cpu_millis,
                    memory_mib: group.memory_mib,
                }));
                group.next_start_ms =
                    end + rng.below(20) as i64 * MINUTE_MS + rng.below(MINUTE_MS as u64) as i64;
                starts.push(Reverse((group.next_start_ms, g)));
            }
            if since_commit < ROWS_PER_COMMIT {
                // Out of rows or of days: the runs still pending end, and are written.
                since_commit += settle(i64::MAX, &mut pending)?;
                written.ledger += since_commit;
                break;
            }
        }
        written.ledger += since_commit;
        since_commit = 0;
        tx.commit()?;
        tx = conn.transaction()?;
    }
    // The per-day row counts the apiserver keeps with every append.
    tx.execute(
        "INSERT INTO usage_days (day, rows) SELECT start_ms / 86400000, COUNT(*) FROM usage_ledger GROUP BY 1",
        [],
    )?;
    tx.commit()?;
    if written.ledger != args.rows {
        eprintln!(
            "billing-fill: the {} days ran out after {} of {} rows (fewer groups or more days give more)",
            args.days, written.ledger, args.rows
        );
    }
    Ok(written)
}
