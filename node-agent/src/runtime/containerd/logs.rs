//! Where containers' logs live on the node and how they are read back.
//!
//! `berth-logger` (started by containerd's shim for every task) writes `<dir>/current.log` and its
//! rotations `current.log.1…`; each line is `<RFC 3339 timestamp> <stdout|stderr> <text>`. When a
//! container starts again, the previous run's files become `previous.log*`, so the last run's output
//! survives one restart.

use std::path::{Path, PathBuf};

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The log directory of one container of one group.
pub fn container_dir(root: &Path, group_id: &str, container: &str) -> PathBuf {
    root.join(group_id).join(container)
}

/// Files of one run, oldest first.
pub(crate) fn run_files(dir: &Path, stem: &str) -> Vec<PathBuf> {
    let mut rotated: Vec<(u32, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().to_string();
            let n: u32 = name.strip_prefix(&format!("{stem}.log."))?.parse().ok()?;
            Some((n, entry.path()))
        })
        .collect();
    rotated.sort_by_key(|entry| std::cmp::Reverse(entry.0));
    let mut files: Vec<PathBuf> = rotated.into_iter().map(|(_, p)| p).collect();
    let current = dir.join(format!("{stem}.log"));
    if current.exists() {
        files.push(current);
    }
    files
}

/// Turns the current run's files into the previous run's (dropping the older previous run).
pub fn begin_run(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for old in run_files(dir, "previous") {
        std::fs::remove_file(old)?;
    }
    for file in run_files(dir, "current") {
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().replacen("current", "previous", 1));
        if let Some(name) = name {
            std::fs::rename(&file, dir.join(name))?;
        }
    }
    Ok(())
}

/// One parsed log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub timestamp: String,
    pub stream: String,
    pub text: String,
}

impl Line {
    /// Whether the line was logged at or after `since_unix_ms`. A line whose timestamp is not
    /// RFC 3339 is not.
    pub fn logged_since(&self, since_unix_ms: i64) -> bool {
        OffsetDateTime::parse(&self.timestamp, &Rfc3339).is_ok_and(|logged| {
            logged.unix_timestamp_nanos() >= i128::from(since_unix_ms) * 1_000_000
        })
    }
}

/// Keeps the lines logged at or after `since_unix_ms` (all of them if `None`).
pub fn keep_since(lines: &mut Vec<Line>, since_unix_ms: Option<i64>) {
    if let Some(since) = since_unix_ms {
        lines.retain(|line| line.logged_since(since));
    }
}

pub(crate) fn parse(raw: &str) -> Line {
    let mut parts = raw.splitn(3, ' ');
    let timestamp = parts.next().unwrap_or_default().to_string();
    let stream = parts.next().unwrap_or_default().to_string();
    let text = parts.next().unwrap_or_default().to_string();
    Line {
        timestamp,
        stream,
        text,
    }
}

/// The lines of a container's current (or previous) run logged at or after `since_unix_ms` if given,
/// the last `tail` of those if given.
pub fn read(
    dir: &Path,
    previous: bool,
    since_unix_ms: Option<i64>,
    tail: Option<usize>,
) -> std::io::Result<Vec<Line>> {
    let stem = if previous { "previous" } else { "current" };
    let mut lines = Vec::new();
    for file in run_files(dir, stem) {
        let bytes = match std::fs::read(&file) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
            Err(error) => return Err(error),
        };
        let text = String::from_utf8_lossy(&bytes);
        lines.extend(text.lines().map(parse));
    }
    keep_since(&mut lines, since_unix_ms);
    if let Some(tail) = tail {
        let skip = lines.len().saturating_sub(tail);
        lines.drain(..skip);
    }
    Ok(lines)
}

/// Renders lines as ACI's log `content`: the text, each line prefixed with its timestamp if asked.
pub fn render(lines: &[Line], timestamps: bool) -> String {
    let mut out = String::new();
    for line in lines {
        if timestamps {
            out.push_str(&line.timestamp);
            out.push(' ');
        }
        out.push_str(&line.text);
        out.push('\n');
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn runs_rotate_and_tail() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("current.log.1"), "t1 stdout one\nt2 stderr two\n").unwrap();
        std::fs::write(d.join("current.log"), "t3 stdout three\n").unwrap();
        let lines = read(d, false, None, Some(2)).unwrap();
        assert_eq!(render(&lines, false), "two\nthree\n");
        assert_eq!(render(&lines, true), "t2 two\nt3 three\n");
        begin_run(d).unwrap();
        assert!(read(d, false, None, None).unwrap().is_empty());
        assert_eq!(read(d, true, None, None).unwrap().len(), 3);
    }

    #[test]
    fn since_keeps_lines_logged_at_or_after_it_then_tail_applies() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(
            d.join("current.log"),
            "2025-01-01T00:00:00.999999Z stdout early\n\
             2025-01-01T00:00:01Z stdout exact\n\
             2025-01-01T01:00:01.5+01:00 stdout same-instant-elsewhere\n\
             garbage stdout undated\n\
             2025-01-01T00:00:02.000001Z stderr later\n",
        )
        .unwrap();
        // 2025-01-01T00:00:01Z
        let since = 1_735_689_601_000;
        let lines = read(d, false, Some(since), None).unwrap();
        assert_eq!(
            render(&lines, false),
            "exact\nsame-instant-elsewhere\nlater\n"
        );
        let lines = read(d, false, Some(since), Some(1)).unwrap();
        assert_eq!(render(&lines, false), "later\n");
        assert_eq!(read(d, false, None, None).unwrap().len(), 5);
        assert!(
            read(d, false, Some(since + 10_000), None)
                .unwrap()
                .is_empty()
        );
    }
}
