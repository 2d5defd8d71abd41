//! `berth-logger`: the log driver containerd's shim starts for every container task Berth runs
//! (`binary://` stdio). It outlives the agent: logs keep flowing while the agent restarts.
//!
//! The shim hands over the container's stdout on fd 3 and stderr on fd 4, and waits until fd 5
//! (a pipe) is written to or closed before it starts the task. Lines go to `<dir>/current.log` as
//! `<RFC 3339 UTC timestamp> <stdout|stderr> <line>`; a file larger than `--max-bytes` is rotated to
//! `current.log.1` … `current.log.<max-files>` (the oldest is dropped). Reading the descriptors through
//! `/proc/self/fd` keeps this program free of `unsafe`.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read as _, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

/// The longest line kept whole; longer ones are split.
const MAX_LINE: usize = 16 * 1024;

struct Options {
    dir: PathBuf,
    max_bytes: u64,
    max_files: u32,
}

fn parse_args() -> Result<Options, String> {
    // The shim passes the URI's query as `key value` pairs in any order.
    let mut args = std::env::args().skip(1);
    let mut options = Options {
        dir: PathBuf::new(),
        max_bytes: 10 * 1024 * 1024,
        max_files: 1,
    };
    while let Some(key) = args.next() {
        let value = args.next().ok_or(format!("{key} needs a value"))?;
        match key.as_str() {
            "--dir" => options.dir = PathBuf::from(value),
            "--max-bytes" => {
                options.max_bytes = value
                    .parse()
                    .map_err(|_| format!("bad --max-bytes {value}"))?;
            }
            "--max-files" => {
                options.max_files = value
                    .parse()
                    .map_err(|_| format!("bad --max-files {value}"))?;
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if options.dir.as_os_str().is_empty() {
        return Err("--dir is required".into());
    }
    Ok(options)
}

struct Sink {
    options: Options,
    file: File,
    written: u64,
}

impl Sink {
    fn open(options: Options) -> std::io::Result<Self> {
        let path = options.dir.join("current.log");
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        let written = file.metadata()?.len();
        Ok(Self {
            options,
            file,
            written,
        })
    }

    fn rotated(dir: &Path, n: u32) -> PathBuf {
        dir.join(format!("current.log.{n}"))
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        let dir = self.options.dir.clone();
        let max = self.options.max_files;
        if max == 0 {
            self.file.set_len(0)?;
            self.written = 0;
            return Ok(());
        }
        let _ = std::fs::remove_file(Self::rotated(&dir, max));
        for n in (1..max).rev() {
            let _ = std::fs::rename(Self::rotated(&dir, n), Self::rotated(&dir, n + 1));
        }
        std::fs::rename(dir.join("current.log"), Self::rotated(&dir, 1))?;
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("current.log"))?;
        self.written = 0;
        Ok(())
    }

    fn write_line(&mut self, stream: &str, line: &[u8]) -> std::io::Result<()> {
        let stamp = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        let mut record = Vec::with_capacity(stamp.len() + stream.len() + line.len() + 3);
        record.extend_from_slice(stamp.as_bytes());
        record.push(b' ');
        record.extend_from_slice(stream.as_bytes());
        record.push(b' ');
        record.extend_from_slice(line);
        record.push(b'\n');
        if self.written > 0 && self.written + record.len() as u64 > self.options.max_bytes {
            self.rotate()?;
        }
        self.file.write_all(&record)?;
        self.written += record.len() as u64;
        Ok(())
    }
}

fn pump(fd: u32, stream: &'static str, sink: Arc<Mutex<Sink>>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let Ok(file) = File::open(format!("/proc/self/fd/{fd}")) else {
            return;
        };
        let mut reader = BufReader::with_capacity(64 * 1024, file);
        let mut line = Vec::with_capacity(1024);
        loop {
            line.clear();
            match reader
                .by_ref()
                .take(MAX_LINE as u64)
                .read_until(b'\n', &mut line)
            {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    if line.last() == Some(&b'\n') {
                        line.pop();
                    }
                    let mut sink = sink.lock().unwrap_or_else(PoisonError::into_inner);
                    if let Err(error) = sink.write_line(stream, &line) {
                        eprintln!("berth-logger: {error}");
                    }
                }
            }
        }
    })
}

fn main() {
    let options = match parse_args() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("berth-logger: {message}");
            std::process::exit(2);
        }
    };
    if let Err(error) = std::fs::create_dir_all(&options.dir) {
        eprintln!("berth-logger: {}: {error}", options.dir.display());
        std::process::exit(1);
    }
    let sink = match Sink::open(options) {
        Ok(sink) => Arc::new(Mutex::new(sink)),
        Err(error) => {
            eprintln!("berth-logger: {error}");
            std::process::exit(1);
        }
    };
    let out = pump(3, "stdout", Arc::clone(&sink));
    let err = pump(4, "stderr", Arc::clone(&sink));
    // Tell the shim we are ready (it reads one byte or end of file from fd 5).
    if let Ok(mut ready) = OpenOptions::new().write(true).open("/proc/self/fd/5") {
        let _ = ready.write_all(b"r");
    }
    let _ = out.join();
    let _ = err.join();
}
