//! `berth billing export`: every subscription's usage rows, as the server streams them, to stdout or
//! to a file.
//!
//! The body is copied chunk by chunk, in constant memory. A file is written as `FILE.partial` and
//! renamed to FILE once the whole body is in, flushed and synced, so FILE is never a truncated export;
//! a failed or interrupted (Ctrl-C, SIGTERM) export removes `FILE.partial`. While a file is written
//! and stderr is a terminal, stderr shows the rows so far: a bar toward the server's estimate
//! (`x-berth-row-estimate`) or, without one, a spinner.

use std::ffi::OsString;
use std::fs::File;
use std::io::{BufWriter, IsTerminal as _, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use indicatif::{HumanBytes, HumanCount, ProgressBar, ProgressStyle};
use time::OffsetDateTime;

use crate::CommandExit;
use crate::billing::row_counter::RowCounter;
use crate::billing::{ADMIN_USAGE_PATH, ROW_ESTIMATE_HEADER, UsageFormat, UsageQuery};
use crate::cli::BillingExportArgs;
use crate::client::Streaming;
use crate::commands::Context;
use crate::terminal::{EndRequests, Interrupts};

/// The exit code of an export ended by Ctrl-C, as a shell gives it (128 + SIGINT).
const INTERRUPTED: u8 = 128 + 2;

/// Streams the usage export to stdout, or to `--file` through `FILE.partial`.
pub async fn export(ctx: &Context, args: &BillingExportArgs) -> anyhow::Result<()> {
    let query = UsageQuery::new(
        args.from,
        args.to,
        args.granularity,
        args.format,
        OffsetDateTime::now_utc(),
    )?;
    let target = query.target(ADMIN_USAGE_PATH);
    let accept = match args.format {
        Some(format) => format.media_type(),
        None => "text/csv, application/x-ndjson",
    };
    let Some(file) = &args.file else {
        let answer = ctx.client.stream(&target, accept).await?;
        return to_stdout(answer).await;
    };
    // Before asking: an unwritable path should not cost the server an export.
    let mut partial = PartialFile::create(file)?;
    let mut interrupts = Interrupts::listen().context("cannot listen for signals")?;
    let mut end_requests = EndRequests::listen().context("cannot listen for signals")?;
    let write = async {
        let answer = ctx.client.stream(&target, accept).await?;
        to_file(answer, args.format, partial.writer()).await
    };
    // An interruption drops `write` (and its progress bar) and `partial`, which removes the file.
    let rows = tokio::select! {
        rows = write => rows?,
        () = interrupts.interrupted() => {
            return Err(CommandExit { code: INTERRUPTED, message: String::new() }.into());
        }
        code = end_requests.requested() => {
            return Err(CommandExit { code, message: String::new() }.into());
        }
    };
    partial.commit()?;
    eprintln!(
        "wrote {rows} row{} to {}",
        if rows == 1 { "" } else { "s" },
        file.display()
    );
    Ok(())
}

/// Copies the body to stdout. A closed pipe (`… | head`) ends the copy without an error.
async fn to_stdout(mut answer: Streaming) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    while let Some(chunk) = answer.chunk().await? {
        match stdout.write_all(&chunk) {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
            other => other.context("cannot write to stdout")?,
        }
    }
    match stdout.flush() {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("cannot write to stdout"),
    }
}

/// Copies the body to `out`, counting its data rows for the progress line; returns the rows.
async fn to_file(
    mut answer: Streaming,
    requested: Option<UsageFormat>,
    out: &mut PartialWriter,
) -> anyhow::Result<u64> {
    let format = answer
        .content_type()
        .as_deref()
        .and_then(UsageFormat::from_content_type)
        .or(requested);
    let estimate = answer
        .header(ROW_ESTIMATE_HEADER)
        .and_then(|v| v.trim().parse::<u64>().ok());
    let mut rows = RowCounter::new(format);
    let progress = Progress::start(std::io::stderr().is_terminal(), estimate);
    let mut bytes = 0_u64;
    while let Some(chunk) = answer.chunk().await? {
        out.write_all(&chunk)?;
        rows.feed(&chunk);
        bytes += chunk.len() as u64;
        progress.update(rows.rows(), bytes);
    }
    Ok(rows.rows())
}

/// `FILE.partial` while it is written; [`PartialFile::commit`] renames it to FILE. Dropped before
/// then, it removes `FILE.partial`.
#[derive(Debug)]
struct PartialFile {
    target: PathBuf,
    writer: PartialWriter,
    committed: bool,
}

/// Writes to `FILE.partial`, saying which file an error is about.
#[derive(Debug)]
struct PartialWriter {
    path: PathBuf,
    out: BufWriter<File>,
}

impl PartialWriter {
    fn write_all(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        self.out
            .write_all(bytes)
            .with_context(|| format!("cannot write to {}", self.path.display()))
    }
}

impl PartialFile {
    /// Creates (or truncates) `FILE.partial`.
    fn create(target: &Path) -> anyhow::Result<Self> {
        let path = partial_path(target);
        let file =
            File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
        Ok(Self {
            target: target.to_path_buf(),
            writer: PartialWriter {
                path,
                out: BufWriter::with_capacity(64 * 1024, file),
            },
            committed: false,
        })
    }

    fn writer(&mut self) -> &mut PartialWriter {
        &mut self.writer
    }

    /// Flushes and syncs `FILE.partial`, then renames it to FILE (replacing what was there).
    fn commit(mut self) -> anyhow::Result<()> {
        let path = self.writer.path.clone();
        self.writer
            .out
            .flush()
            .and_then(|()| self.writer.out.get_ref().sync_all())
            .with_context(|| format!("cannot write to {}", path.display()))?;
        std::fs::rename(&path, &self.target).with_context(|| {
            format!(
                "cannot rename {} to {}",
                path.display(),
                self.target.display()
            )
        })?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for PartialFile {
    fn drop(&mut self) {
        if !self.committed {
            // Nothing more to do if it cannot be removed; the final name was never touched.
            let _ = std::fs::remove_file(&self.writer.path);
        }
    }
}

/// `FILE.partial`, beside FILE.
fn partial_path(target: &Path) -> PathBuf {
    let mut name = OsString::from(target.as_os_str());
    name.push(".partial");
    PathBuf::from(name)
}

/// The rows written so far, on stderr; cleared when dropped.
struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    /// A bar toward `estimate` rows, or a spinner without one; nothing unless `show`.
    fn start(show: bool, estimate: Option<u64>) -> Self {
        let bar = show.then(|| {
            let (bar, template) = match estimate {
                Some(rows) => (
                    ProgressBar::new(rows),
                    "{bar:30} {human_pos}/{human_len} rows, {msg}, {eta} left",
                ),
                None => (
                    ProgressBar::new_spinner(),
                    "{spinner} {human_pos} rows, {msg} [{elapsed}]",
                ),
            };
            if let Ok(style) = ProgressStyle::with_template(template) {
                bar.set_style(style);
            }
            bar.set_message(describe(0, 0, Duration::ZERO));
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        Self { bar }
    }

    fn update(&self, rows: u64, bytes: u64) {
        let Some(bar) = &self.bar else {
            return;
        };
        // The estimate is only one: splitting at boundaries adds rows.
        if bar.length().is_some_and(|length| rows > length) {
            bar.set_length(rows);
        }
        bar.set_position(rows);
        // indicatif draws at most 20 times a second, whatever the updates.
        bar.set_message(describe(rows, bytes, bar.elapsed()));
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// `12.3 MiB, 1,234 rows/s, 2.1 MiB/s`.
fn describe(rows: u64, bytes: u64, elapsed: Duration) -> String {
    let seconds = elapsed.as_secs_f64();
    if seconds < 0.5 {
        return HumanBytes(bytes).to_string();
    }
    // Rates for people: rounding is harmless here.
    let per_second = |n: u64| (n as f64 / seconds) as u64;
    format!(
        "{}, {} rows/s, {}/s",
        HumanBytes(bytes),
        HumanCount(per_second(rows)),
        HumanBytes(per_second(bytes))
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn partial_files_sit_beside_the_target() {
        assert_eq!(
            partial_path(Path::new("out/usage.csv")),
            Path::new("out/usage.csv.partial")
        );
        assert_eq!(partial_path(Path::new("usage")), Path::new("usage.partial"));
    }

    #[test]
    fn a_partial_file_becomes_the_target_only_on_commit() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("usage.csv");
        std::fs::write(&target, "the previous export\n").unwrap();

        let mut partial = PartialFile::create(&target).unwrap();
        partial.writer().write_all(b"A,B\n1,2\n").unwrap();
        assert!(dir.path().join("usage.csv.partial").exists());
        drop(partial);
        assert!(!dir.path().join("usage.csv.partial").exists());
        assert_eq!(
            std::fs::read_to_string(&target).unwrap(),
            "the previous export\n",
            "an abandoned export leaves the target alone"
        );

        let mut partial = PartialFile::create(&target).unwrap();
        partial.writer().write_all(b"A,B\n").unwrap();
        partial.writer().write_all(b"1,2\n").unwrap();
        partial.commit().unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "A,B\n1,2\n");
        assert!(!dir.path().join("usage.csv.partial").exists());
    }

    #[test]
    fn an_uncreatable_file_is_an_error_before_any_request() {
        let dir = tempfile::tempdir().unwrap();
        let err = PartialFile::create(&dir.path().join("missing/usage.csv")).unwrap_err();
        assert!(
            err.to_string().contains("usage.csv.partial"),
            "names the file: {err:#}"
        );
    }

    #[test]
    fn progress_describes_bytes_and_rates() {
        assert_eq!(describe(0, 0, Duration::ZERO), "0 B");
        assert_eq!(
            describe(2_000, 4 * 1024 * 1024, Duration::from_secs(2)),
            "4.00 MiB, 1,000 rows/s, 2.00 MiB/s"
        );
    }
}
