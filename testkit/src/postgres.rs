//! A PostgreSQL server of the test's own: `initdb` into a temporary directory, `postgres` listening on
//! 127.0.0.1 at a free port and on a socket in that directory, trust authentication for the one role
//! `berth`. Durability is off (`fsync`, `synchronous_commit`, `full_page_writes`): a test's database
//! does not outlive the test.
//!
//! The server stops when the [`TempPostgres`] is dropped, and also when the process that started it
//! exits without dropping it (a `static` shared by a test binary's tests, a test killed by a signal):
//! a small watchdog shell waits for the starting process to go away, then stops the server with
//! `SIGQUIT` (PostgreSQL's immediate shutdown) and removes the directory.
//!
//! As root (CI), the server runs as the `postgres` user (`initdb` refuses root) through `setpriv`,
//! which execs, so the child's pid is the postmaster's.

use std::io::{Error, ErrorKind, Result};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The role every test connects as (a superuser of its own server).
pub const USER: &str = "berth";

/// Where Debian's `postgresql` package puts the server binaries, newest first.
const BIN_DIRS: &[&str] = &[
    "/usr/lib/postgresql/17/bin",
    "/usr/lib/postgresql/16/bin",
    "/usr/lib/postgresql/15/bin",
];

/// How long a fresh server may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A running PostgreSQL server of this process's own.
#[derive(Debug)]
pub struct TempPostgres {
    dir: tempfile::TempDir,
    port: u16,
    server: Child,
    watchdog: Option<Child>,
}

/// The directory holding `initdb`, `postgres` and `pg_ctl`: `BERTH_PG_BIN` if set, else Debian's.
pub fn bin_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("BERTH_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    BIN_DIRS
        .iter()
        .map(PathBuf::from)
        .find(|dir| dir.join("postgres").exists())
        .ok_or_else(|| {
            Error::new(
                ErrorKind::NotFound,
                "no PostgreSQL server binaries (install Debian's postgresql: scripts/setup)",
            )
        })
}

fn is_root() -> bool {
    // The effective uid, without libc: /proc/self/status's "Uid:" line is real, effective, saved, fs.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// `program args…`, as the `postgres` user when this process is root.
fn command(program: &Path) -> Command {
    if is_root() {
        let mut cmd = Command::new("setpriv");
        cmd.args([
            "--reuid=postgres",
            "--regid=postgres",
            "--init-groups",
            "--reset-env",
        ]);
        cmd.arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

fn free_port() -> Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}

fn check(status: std::process::ExitStatus, what: &str, log: &Path) -> Result<()> {
    if status.success() {
        return Ok(());
    }
    let tail = std::fs::read_to_string(log).unwrap_or_default();
    Err(Error::other(format!("{what} failed ({status}): {tail}")))
}

impl TempPostgres {
    /// Creates a cluster and starts its server; returns once it accepts connections.
    pub fn start() -> Result<Self> {
        let bin = bin_dir()?;
        let dir = tempfile::Builder::new().prefix("berth-pg-").tempdir()?;
        let data = dir.path().join("data");
        let log = dir.path().join("postgres.log");
        if is_root() {
            // The server's user must reach its directory and own the data directory.
            set_mode(dir.path(), 0o755)?;
            let status = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(dir.path())
                .status()?;
            if !status.success() {
                return Err(Error::other("cannot chown the PostgreSQL directory"));
            }
        }
        let initdb_log = dir.path().join("initdb.log");
        let status = command(&bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                USER,
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
            ])
            .stdout(std::fs::File::create(&initdb_log)?)
            .stderr(Stdio::from(
                std::fs::File::create(&initdb_log)?.try_clone()?,
            ))
            .status()?;
        check(status, "initdb", &initdb_log)?;

        let port = free_port()?;
        let server = command(&bin.join("postgres"))
            .arg("-D")
            .arg(&data)
            .arg("-p")
            .arg(port.to_string())
            .arg("-k")
            .arg(dir.path())
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=300",
                "-c",
                "shared_buffers=128MB",
            ])
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log)?)
            .stderr(Stdio::from(std::fs::File::create(&log)?.try_clone()?))
            .spawn()?;
        let mut pg = Self {
            port,
            server,
            watchdog: None,
            dir,
        };
        pg.watchdog = Some(pg.watch()?);
        pg.wait_ready(&log)?;
        Ok(pg)
    }

    /// One server for the whole test binary, started on first use; stopped by its watchdog when the
    /// process exits.
    pub fn shared() -> Result<&'static Self> {
        static SHARED: OnceLock<std::result::Result<TempPostgres, String>> = OnceLock::new();
        SHARED
            .get_or_init(|| Self::start().map_err(|e| e.to_string()))
            .as_ref()
            .map_err(|e| Error::other(e.clone()))
    }

    /// Stops the server (`SIGQUIT`) and removes the directory once this process is gone.
    fn watch(&self) -> Result<Child> {
        let script = r#"while kill -0 "$0" 2>/dev/null; do sleep 0.5; done; kill -QUIT "$1" 2>/dev/null; sleep 1; kill -KILL "$1" 2>/dev/null; rm -rf "$2""#;
        Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg(std::process::id().to_string())
            .arg(self.server.id().to_string())
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
    }

    fn wait_ready(&mut self, log: &Path) -> Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let bin = bin_dir()?;
        loop {
            if let Some(status) = self.server.try_wait()? {
                check(status, "postgres", log)?;
                return Err(Error::other("postgres exited"));
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                let ready = Command::new(bin.join("pg_isready"))
                    .args([
                        "-h",
                        "127.0.0.1",
                        "-p",
                        &self.port.to_string(),
                        "-U",
                        USER,
                        "-q",
                    ])
                    .status()?;
                if ready.success() {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                return Err(Error::new(ErrorKind::TimedOut, "postgres did not start"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory holding the data directory, the socket and `postgres.log`.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `postgres://berth@127.0.0.1:PORT/DB`.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://{USER}@127.0.0.1:{}/{database}", self.port)
    }

    /// Creates an empty database `name` (lower-case letters, digits and `_`) and returns its URL.
    pub fn create_database(&self, name: &str) -> Result<String> {
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            return Err(Error::new(ErrorKind::InvalidInput, "database name"));
        }
        let psql_log = self.dir.path().join(format!("createdb-{name}.log"));
        let status = Command::new("psql")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", USER])
            .args(["-d", "postgres", "-v", "ON_ERROR_STOP=1", "-q", "-c"])
            .arg(format!("CREATE DATABASE {name}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&psql_log)?)
            .status()?;
        check(status, "CREATE DATABASE", &psql_log)?;
        Ok(self.url(name))
    }

    /// A database no other caller in this process got: `prefix_N`.
    pub fn fresh_database(&self, prefix: &str) -> Result<String> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.create_database(&format!("{prefix}_{n}"))
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }

    /// Kills the server at once (as a crash would).
    pub fn kill(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

impl Drop for TempPostgres {
    fn drop(&mut self) {
        // SIGQUIT: immediate shutdown (the postmaster tells its children and exits).
        let _ = Command::new("kill")
            .args(["-QUIT", &self.server.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if matches!(self.server.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.server.kill();
        let _ = self.server.wait();
        if let Some(mut watchdog) = self.watchdog.take() {
            let _ = watchdog.kill();
            let _ = watchdog.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_starts_takes_databases_and_stops() -> Result<()> {
        let pg = TempPostgres::start()?;
        let url = pg.create_database("one")?;
        assert!(url.ends_with("/one"));
        assert!(pg.create_database("one").is_err(), "a database exists once");
        assert!(pg.create_database("Bad-Name").is_err());
        let out = Command::new("psql")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &pg.port().to_string(),
                "-U",
                USER,
                "-d",
                "one",
            ])
            .args(["-tA", "-c", "SELECT 40 + 2"])
            .output()?;
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "42");
        let port = pg.port();
        drop(pg);
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        assert!(
            TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err(),
            "stopped when dropped"
        );
        Ok(())
    }
}
