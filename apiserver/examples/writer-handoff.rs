//! Measures what a SQLite statement costs the apiserver's writer as it is built today (sqlx: every
//! statement a round trip between a tokio worker and sqlx's SQLite thread) against a dedicated
//! writer thread that owns a rusqlite connection and runs a whole batch as one job (one round trip
//! a batch, cached prepared statements). Same database file settings as the store (WAL, NORMAL),
//! same batch shape: a transaction of `STATEMENTS` guarded single-row updates, `BATCHES` times.
//!
//!   cargo run --release -p berth-apiserver --example writer-handoff [STATEMENTS] [BATCHES]
//!
//! Prints wall time and process CPU time per batch and per statement for each, and the ratio. This is
//! the measurement behind ARCHITECTURE.md "Performance"'s next step; it changes nothing in Berth.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

const ROWS: i64 = 10_000;

/// User plus system CPU time of this process so far.
fn cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command (which is in parentheses and may hold spaces): utime is the 12th.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // clock ticks are 100 a second on Linux.
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

fn schema(conn: &rusqlite::Connection) -> anyhow::Result<()> {
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;
         CREATE TABLE IF NOT EXISTS groups (id INTEGER PRIMARY KEY, generation INTEGER NOT NULL,
             status BLOB, updated_ms INTEGER NOT NULL);",
    )?;
    let tx = conn.unchecked_transaction()?;
    {
        let mut insert = tx.prepare(
            "INSERT OR REPLACE INTO groups (id, generation, updated_ms) VALUES (?, 1, 0)",
        )?;
        for id in 0..ROWS {
            insert.execute([id])?;
        }
    }
    tx.commit()?;
    Ok(())
}

const UPDATE: &str =
    "UPDATE groups SET status = ?, updated_ms = ? WHERE id = ? AND generation <= ?";

async fn with_sqlx(
    path: &std::path::Path,
    statements: usize,
    batches: usize,
) -> anyhow::Result<()> {
    let options = SqliteConnectOptions::new()
        .filename(path)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal);
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await?;
    let status = vec![7u8; 200];
    let (wall, cpu0) = (Instant::now(), cpu());
    for batch in 0..batches {
        let mut tx = pool.begin().await?;
        for s in 0..statements {
            let id = ((batch * statements + s) as i64) % ROWS;
            sqlx::query(UPDATE)
                .bind(&status)
                .bind(batch as i64)
                .bind(id)
                .bind(1_i64)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
    }
    report(
        "sqlx, a round trip a statement",
        wall.elapsed(),
        cpu() - cpu0,
        statements,
        batches,
    );
    pool.close().await;
    Ok(())
}

type Job = Box<dyn FnOnce(&mut rusqlite::Connection) + Send>;

async fn with_writer_thread(
    path: &std::path::Path,
    statements: usize,
    batches: usize,
) -> anyhow::Result<()> {
    let conn = rusqlite::Connection::open(path)?;
    conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;")?;
    let (jobs, rx) = std::sync::mpsc::channel::<Job>();
    let writer = std::thread::spawn(move || {
        let mut conn = conn;
        while let Ok(job) = rx.recv() {
            job(&mut conn);
        }
    });
    let status = std::sync::Arc::new(vec![7u8; 200]);
    let (wall, cpu0) = (Instant::now(), cpu());
    for batch in 0..batches {
        let (done, answer) = tokio::sync::oneshot::channel::<rusqlite::Result<()>>();
        let status = status.clone();
        jobs.send(Box::new(move |conn: &mut rusqlite::Connection| {
            let mut run = || -> rusqlite::Result<()> {
                let tx = conn.transaction()?;
                {
                    let mut update = tx.prepare_cached(UPDATE)?;
                    for s in 0..statements {
                        let id = ((batch * statements + s) as i64) % ROWS;
                        update.execute(rusqlite::params![&*status, batch as i64, id, 1_i64])?;
                    }
                }
                tx.commit()
            };
            let _ = done.send(run());
        }))
        .map_err(|_| anyhow::anyhow!("the writer thread stopped"))?;
        answer.await.context("the writer thread dropped a job")??;
    }
    report(
        "writer thread, a round trip a batch",
        wall.elapsed(),
        cpu() - cpu0,
        statements,
        batches,
    );
    drop(jobs);
    writer
        .join()
        .map_err(|_| anyhow::anyhow!("the writer thread panicked"))?;
    Ok(())
}

fn report(what: &str, wall: Duration, cpu: Duration, statements: usize, batches: usize) {
    let per = |d: Duration, n: usize| d.as_secs_f64() * 1e6 / n as f64;
    println!(
        "{what:38} wall {:7.1} µs a batch ({:5.1} a statement), cpu {:7.1} µs a batch ({:5.1} a statement)",
        per(wall, batches),
        per(wall, batches * statements),
        per(cpu, batches),
        per(cpu, batches * statements),
    );
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let statements: usize = args.next().map_or(Ok(12), |a| a.parse())?;
    let batches: usize = args.next().map_or(Ok(5_000), |a| a.parse())?;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("handoff.db");
    schema(&rusqlite::Connection::open(&path)?)?;
    // As in the apiserver: a multi-threaded runtime, the caller on one of its workers.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    println!("{batches} transactions of {statements} single-row updates each");
    runtime.block_on(async {
        with_sqlx(&path, statements, batches).await?;
        with_writer_thread(&path, statements, batches).await
    })
}
