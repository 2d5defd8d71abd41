//! Real-process fixtures for tests: a containerd with its own root, a local registry, and the
//! project's busybox test image; and hollow nodes that die like machines ([`hollow`], behind a
//! [`relay`] that can go silent). Compiled without `cfg(test)` because the end-to-end test crate uses
//! it too; nothing in production calls it.
//!
//! Needs root, `containerd`, `runc`, `docker-registry`, `skopeo`, `busybox-static` and, for
//! registries with authentication, `htpasswd` (apache2-utils): `scripts/setup` installs them.
//!
//! Every fixture lives in a directory the caller owns (a tempdir) and cleans up in `Drop`: processes
//! are killed and waited for, containers and mounts under the directory are removed. Unix socket
//! paths must stay under 108 bytes, so keep the directory short: `tempfile::Builder::new()
//! .prefix("b").tempdir_in("/tmp")` is fine, a deep `target/` path is not.

pub mod hollow;
pub mod outside;
pub mod relay;

use std::collections::HashSet;
use std::fs;
use std::io::Write as _;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::sync::OnceCell;
use tonic::transport::Channel;

/// The longest Unix socket path (`sun_path` is 108 bytes, NUL included).
const MAX_SOCKET_PATH: usize = 107;
/// How long a daemon may take to answer after starting (a loaded CI machine is slow).
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a daemon may take to stop on SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// How often readiness is probed.
const POLL: Duration = Duration::from_millis(100);
/// Where the runc shim keeps container state by default (one directory per namespace).
const RUNC_ROOTS: &str = "/run/containerd/runc";
/// Where cgroup hierarchies are mounted (v2 directly, v1 one per controller below).
const CGROUP_ROOT: &str = "/sys/fs/cgroup";
/// Where containerd 1.6/1.7 shims put their sockets, whatever the daemon's state directory.
const SHIM_SOCKETS: &str = "/run/containerd/s";

/// A containerd daemon with its own root, state and sockets under one directory.
pub struct Containerd {
    /// The gRPC socket (`dir/containerd.sock`).
    pub socket: PathBuf,
    /// containerd's persistent root (`dir/root`).
    pub root: PathBuf,
    /// containerd's state directory (`dir/state`).
    pub state: PathBuf,
    dir: PathBuf,
    config: PathBuf,
    /// Directories searched before containerd's own `PATH` (by it and its shims, e.g. for `runc`).
    path_first: Option<PathBuf>,
    child: Option<Child>,
}

impl Containerd {
    /// Writes a config under `dir` (which must exist and be short, see the module doc) and starts
    /// containerd with it; returns once it answers `Version`. Its log is `dir/containerd.log`.
    pub async fn start(dir: &Path) -> anyhow::Result<Containerd> {
        Self::start_with_path(dir, None).await
    }

    /// As [`Containerd::start`], with `path_first` searched first for programs (by containerd and
    /// the shims it starts: a `runc` there is the one tasks run with).
    pub async fn start_with_path(
        dir: &Path,
        path_first: Option<&Path>,
    ) -> anyhow::Result<Containerd> {
        let socket = dir.join("containerd.sock");
        let ttrpc = dir.join("containerd.sock.ttrpc");
        if ttrpc.as_os_str().len() > MAX_SOCKET_PATH {
            bail!(
                "{} is too long for a Unix socket ({} > {MAX_SOCKET_PATH} bytes): use a shorter directory",
                ttrpc.display(),
                ttrpc.as_os_str().len()
            );
        }
        let root = dir.join("root");
        let state = dir.join("state");
        fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
        fs::create_dir_all(&state).with_context(|| format!("creating {}", state.display()))?;
        let config = dir.join("config.toml");
        let text = format!(
            "version = 2\n\
             root = {root}\n\
             state = {state}\n\
             disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             \n\
             [grpc]\n  address = {socket}\n\
             \n\
             [ttrpc]\n  address = {ttrpc}\n\
             \n\
             [debug]\n  address = {debug}\n  level = \"info\"\n\
             \n\
             [plugins.\"io.containerd.internal.v1.opt\"]\n  path = {opt}\n",
            root = toml_string(&root),
            state = toml_string(&state),
            socket = toml_string(&socket),
            ttrpc = toml_string(&ttrpc),
            debug = toml_string(&dir.join("debug.sock")),
            opt = toml_string(&dir.join("opt")),
        );
        fs::write(&config, text).with_context(|| format!("writing {}", config.display()))?;
        let mut containerd = Containerd {
            socket,
            root,
            state,
            dir: dir.to_path_buf(),
            config,
            path_first: path_first.map(Path::to_path_buf),
            child: None,
        };
        containerd.spawn().await?;
        Ok(containerd)
    }

    /// A fresh gRPC channel to this containerd.
    pub async fn channel(&self) -> anyhow::Result<Channel> {
        containerd_client::connect(&self.socket)
            .await
            .with_context(|| format!("connecting to {}", self.socket.display()))
    }

    /// Stops containerd with SIGTERM (SIGKILL after a while) and starts it again on the same root
    /// and state. Running shims and their containers survive, as they do in production.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        if let Some(child) = self.child.take() {
            terminate(child, STOP_TIMEOUT);
        }
        self.spawn().await
    }

    async fn spawn(&mut self) -> anyhow::Result<()> {
        let log_path = self.dir.join("containerd.log");
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("opening {}", log_path.display()))?;
        let mut command = Command::new("containerd");
        if let Some(first) = &self.path_first {
            let path = std::env::var_os("PATH").unwrap_or_default();
            let paths = std::iter::once(first.clone()).chain(std::env::split_paths(&path));
            command.env("PATH", std::env::join_paths(paths)?);
        }
        let child = command
            .arg("--config")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting containerd (is it installed? scripts/setup)")?;
        let child = self.child.insert(child);
        let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait()? {
                bail!(
                    "containerd exited with {status} while starting; its log ends:\n{}",
                    log_tail(&log_path)
                );
            }
            if answers_version(&self.socket).await {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                bail!(
                    "containerd did not answer on {} within {READY_TIMEOUT:?}; its log ends:\n{}",
                    self.socket.display(),
                    log_tail(&log_path)
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Deletes runc containers whose bundle lies under our state directory (killing their
    /// processes), then kills the shims this containerd started and removes their sockets.
    fn remove_leftover_containers(&self) {
        for runc_root in subdirectories(Path::new(RUNC_ROOTS)) {
            for id in runc_containers_under(&runc_root, &self.state) {
                let _ = Command::new("runc")
                    .arg("--root")
                    .arg(&runc_root)
                    .args(["delete", "--force", &id])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
        }
        let address = self.socket.to_string_lossy().into_owned();
        for shim in processes_matching(|cmdline| {
            cmdline.contains("containerd-shim") && cmdline.contains(&address)
        }) {
            let sockets = socket_paths_of(shim);
            let doomed: Vec<i32> = descendants(shim).into_iter().chain([shim]).collect();
            for pid in &doomed {
                let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
            }
            wait_gone(&doomed);
            for socket in sockets.iter().filter(|s| s.starts_with(SHIM_SOCKETS)) {
                let _ = fs::remove_file(socket);
            }
        }
    }
}

/// Waits (up to 5 s) until the killed `pids` are dead: gone, or zombies with no command line left.
fn wait_gone(pids: &[i32]) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let alive = |pid: &i32| {
        fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmdline| !cmdline.is_empty())
    };
    while pids.iter().any(alive) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        // containerd goes first: a shim killed under a running containerd makes it start a cleanup
        // shim (`… delete`), which would outlive the fixture.
        if let Some(child) = self.child.take() {
            terminate(child, STOP_TIMEOUT);
        }
        self.remove_leftover_containers();
        unmount_under(&self.dir);
        self.remove_empty_namespace_dirs();
    }
}

impl Containerd {
    /// Removes the per-namespace runc roots and cgroup parents that tasks of this containerd
    /// created, where they are empty (`rmdir` refuses otherwise, so others' stay).
    fn remove_empty_namespace_dirs(&self) {
        let tasks = self.state.join("io.containerd.runtime.v2.task");
        let cgroup_roots: Vec<PathBuf> = std::iter::once(PathBuf::from(CGROUP_ROOT))
            .chain(subdirectories(Path::new(CGROUP_ROOT)))
            .collect();
        for namespace in subdirectories(&tasks) {
            let Some(name) = namespace.file_name() else {
                continue;
            };
            let _ = fs::remove_dir(Path::new(RUNC_ROOTS).join(name));
            for root in &cgroup_roots {
                let _ = fs::remove_dir(root.join(name));
            }
        }
    }
}

async fn answers_version(socket: &Path) -> bool {
    if !socket.exists() {
        return false;
    }
    let Ok(channel) = containerd_client::connect(socket).await else {
        return false;
    };
    containerd_client::services::v1::version_client::VersionClient::new(channel)
        .version(())
        .await
        .is_ok()
}

/// A Docker registry (Debian's `docker-registry`) on a free loopback port, storing under a
/// directory, optionally with htpasswd (bcrypt) authentication.
pub struct Registry {
    /// `127.0.0.1:<port>`: the registry part of image references.
    pub addr: SocketAddr,
    child: Option<Child>,
    dir: PathBuf,
}

impl Registry {
    /// Starts a registry storing under `dir`; with `auth`, only that user and password may use it.
    /// Returns once `/v2/` answers.
    pub async fn start(dir: &Path, auth: Option<(&str, &str)>) -> anyhow::Result<Registry> {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let auth_section = match auth {
            Some((user, password)) => {
                let htpasswd = dir.join("htpasswd");
                fs::write(&htpasswd, htpasswd_line(user, password)?)?;
                format!(
                    "auth:\n  htpasswd:\n    realm: berth-test\n    path: {}\n",
                    htpasswd.display()
                )
            }
            None => String::new(),
        };
        // A port is free when we look; another process may take it before the registry binds, so
        // try a few.
        let mut last_error = None;
        for _ in 0..3 {
            let addr = free_loopback_port()?;
            let config = dir.join("config.yml");
            let text = format!(
                "version: 0.1\n\
                 log:\n  level: info\n  accesslog:\n    disabled: false\n\
                 storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n\
                 http:\n  addr: {addr}\n  secret: berth-test-secret\n\
                 {auth_section}",
                storage = dir.join("storage").display(),
            );
            fs::write(&config, text)?;
            match Self::spawn(dir, &config, addr).await {
                Ok(registry) => return Ok(registry),
                Err(error) => last_error = Some(error),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("the registry did not start")))
    }

    async fn spawn(dir: &Path, config: &Path, addr: SocketAddr) -> anyhow::Result<Registry> {
        let log_path = dir.join("registry.log");
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)?;
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(config)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting docker-registry (is it installed? scripts/setup)")?;
        let mut registry = Registry {
            addr,
            child: Some(child),
            dir: dir.to_path_buf(),
        };
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(5))
            .build()?;
        let url = format!("http://{addr}/v2/");
        let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(child) = registry.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!(
                    "docker-registry exited with {status} while starting; its log ends:\n{}",
                    log_tail(&log_path)
                );
            }
            if let Ok(response) = http.get(&url).send().await
                && matches!(response.status().as_u16(), 200 | 401)
            {
                return Ok(registry);
            }
            if tokio::time::Instant::now() > deadline {
                registry.stop();
                bail!(
                    "docker-registry did not answer on {url} within {READY_TIMEOUT:?}; its log ends:\n{}",
                    log_tail(&log_path)
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Stops the registry now (later requests to it fail to connect).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The registry's log (including its access log), for assertions and debugging.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("registry.log")).unwrap_or_default()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The busybox OCI layout built once per process, and its manifest digest.
static BUSYBOX: OnceCell<(PathBuf, String)> = OnceCell::const_new();

/// Pushes the project's busybox test image (`scripts/lib/busybox-image`, built once per process) to
/// `registry` as `repository_and_tag` (`busybox:latest`), with `auth` if the registry wants it.
/// Returns the manifest digest, the same on every run.
pub async fn push_busybox(
    registry: &Registry,
    repository_and_tag: &str,
    auth: Option<(&str, &str)>,
) -> anyhow::Result<String> {
    let (layout, digest) = BUSYBOX.get_or_try_init(build_busybox).await?;
    let mut command = tokio::process::Command::new("skopeo");
    command.args(["copy", "--insecure-policy", "--dest-tls-verify=false"]);
    if let Some((user, password)) = auth {
        command
            .arg("--dest-creds")
            .arg(format!("{user}:{password}"));
    }
    let output = command
        .arg(format!("oci:{}:latest", layout.display()))
        .arg(format!("docker://{}/{repository_and_tag}", registry.addr))
        .stdin(Stdio::null())
        .output()
        .await
        .context("running skopeo (is it installed? scripts/setup)")?;
    if !output.status.success() {
        bail!(
            "skopeo copy to {}/{repository_and_tag} failed ({}): {}",
            registry.addr,
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(digest.clone())
}

/// Builds the busybox layout under the temp directory, named by our pid; removes layouts left by
/// processes that are gone.
async fn build_busybox() -> anyhow::Result<(PathBuf, String)> {
    const PREFIX: &str = "berth-busybox-oci-";
    let temp = std::env::temp_dir();
    for entry in fs::read_dir(&temp)?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(pid) = name.strip_prefix(PREFIX)
            && !Path::new("/proc").join(pid).exists()
        {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
    let layout = temp.join(format!("{PREFIX}{}", std::process::id()));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/lib/busybox-image");
    let output = tokio::process::Command::new("bash")
        .arg(&script)
        .arg(&layout)
        .stdin(Stdio::null())
        .output()
        .await
        .with_context(|| format!("running {}", script.display()))?;
    if !output.status.success() {
        bail!(
            "{} failed ({}): {}",
            script.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let digest = String::from_utf8_lossy(&output.stdout).trim().to_string();
    if !digest.starts_with("sha256:") {
        bail!("{} printed {digest:?}, not a digest", script.display());
    }
    Ok((layout, digest))
}

/// `user:<bcrypt hash>` from `htpasswd -Bbn`.
fn htpasswd_line(user: &str, password: &str) -> anyhow::Result<String> {
    let output = Command::new("htpasswd")
        .args(["-Bbn", user, password])
        .stdin(Stdio::null())
        .output()
        .context("running htpasswd (apt-get install apache2-utils; scripts/setup)")?;
    if !output.status.success() {
        bail!(
            "htpasswd failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string() + "\n")
}

fn free_loopback_port() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?)
}

/// A TOML basic string holding `path`.
fn toml_string(path: &Path) -> String {
    let text = path.to_string_lossy();
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The last lines of a log file, for error messages.
fn log_tail(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// SIGTERM, then SIGKILL if `child` has not exited within `timeout`; always reaps it.
fn terminate(mut child: Child, timeout: Duration) {
    if let Ok(pid) = i32::try_from(child.id()) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    }
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn subdirectories(dir: &Path) -> Vec<PathBuf> {
    fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.is_dir())
                .collect()
        })
        .unwrap_or_default()
}

/// Ids of the runc containers under `runc_root` whose bundle is below `state`.
fn runc_containers_under(runc_root: &Path, state: &Path) -> Vec<String> {
    #[derive(serde::Deserialize)]
    struct Listed {
        id: String,
        bundle: String,
    }
    let Ok(output) = Command::new("runc")
        .arg("--root")
        .arg(runc_root)
        .args(["list", "--format", "json"])
        .stderr(Stdio::null())
        .output()
    else {
        return Vec::new();
    };
    let listed: Vec<Listed> = serde_json::from_slice::<Option<Vec<Listed>>>(&output.stdout)
        .ok()
        .flatten()
        .unwrap_or_default();
    listed
        .into_iter()
        .filter(|c| Path::new(&c.bundle).starts_with(state))
        .map(|c| c.id)
        .collect()
}

/// Pids of processes whose command line (arguments joined by spaces) satisfies `matches`.
fn processes_matching(matches: impl Fn(&str) -> bool) -> Vec<i32> {
    let mut pids = Vec::new();
    for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(raw) = fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&raw).replace('\0', " ");
        if matches(&cmdline) {
            pids.push(pid);
        }
    }
    pids
}

/// All descendants of `pid` (children first found, then theirs).
fn descendants(pid: i32) -> Vec<i32> {
    let mut parents: Vec<(i32, i32)> = Vec::new();
    for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(child) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<i32>().ok());
        if let Some(ppid) = ppid {
            parents.push((child, ppid));
        }
    }
    let mut found = Vec::new();
    let mut frontier = vec![pid];
    while let Some(parent) = frontier.pop() {
        for &(child, ppid) in &parents {
            if ppid == parent && !found.contains(&child) {
                found.push(child);
                frontier.push(child);
            }
        }
    }
    found
}

/// Paths of the Unix sockets `pid` has open (from its fds and `/proc/net/unix`).
fn socket_paths_of(pid: i32) -> Vec<PathBuf> {
    let inodes: HashSet<String> = fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|fd| fs::read_link(fd.path()).ok())
        .filter_map(|target| {
            let target = target.to_string_lossy().into_owned();
            target
                .strip_prefix("socket:[")
                .and_then(|rest| rest.strip_suffix(']'))
                .map(str::to_string)
        })
        .collect();
    let table = fs::read_to_string("/proc/net/unix").unwrap_or_default();
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let inode = fields.get(6)?;
            let path = fields.get(7)?;
            inodes.contains(*inode).then(|| PathBuf::from(path))
        })
        .collect()
}

/// Lazily unmounts every mount point at or below `dir`, deepest first.
fn unmount_under(dir: &Path) {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut points: Vec<PathBuf> = mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|field| PathBuf::from(unescape_mount_path(field)))
        .filter(|point| point.starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    for point in points {
        if let Err(error) = nix::mount::umount2(&point, nix::mount::MntFlags::MNT_DETACH) {
            let _ = writeln!(
                std::io::stderr(),
                "testing: unmounting {} failed: {error}",
                point.display()
            );
        }
    }
}

/// Undoes mountinfo's octal escapes (`\040` is a space).
fn unescape_mount_path(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let code = (bytes[i] == b'\\' && i + 3 < bytes.len())
            .then(|| std::str::from_utf8(&bytes[i + 1..i + 4]).ok())
            .flatten()
            .and_then(|digits| u8::from_str_radix(digits, 8).ok());
        if let Some(code) = code {
            out.push(code);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Removes what a test node may leave on the host once its agent and containerd are gone: whatever is
/// still mounted under `dir` (the netns directory, a bind mount of itself; secret tmpfs), deepest
/// first; Berth's isolation chains of the node and of its groups, and the jumps to them (as
/// `Network::purge` removes them); every iptables rule about `subnet` (a `/24`; groups still running
/// when a test ends keep their CNI rules, a deleted group's go with CNI DEL) and the CNI chains they
/// jump to; and `bridge`. `iptables -w`: tests run side by side and contend for the xtables lock.
pub fn remove_node_leftovers(dir: &Path, subnet: &str, bridge: &str) {
    let root = dir.to_string_lossy().into_owned();
    let mut mounts: Vec<String> = fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .filter(|point| point.starts_with(&root))
        .map(str::to_owned)
        .collect();
    mounts.sort_by_key(|point| std::cmp::Reverse(point.len()));
    for point in mounts {
        let _ = nix::mount::umount2(point.as_str(), nix::mount::MntFlags::MNT_DETACH);
    }
    // First: the rules naming the subnet include the jumps that name the group chains.
    remove_isolation_chains(dir, subnet, bridge);
    let prefix = subnet.trim_end_matches("0/24");
    let script = r#"
for table in nat filter; do
  iptables-save -t "$table" | grep '^-A ' | grep -F -- "$1" | while IFS= read -r rule; do
    chain=$(printf '%s\n' "$rule" | grep -o -- '-j CNI-[0-9a-f]*' | cut -d' ' -f2)
    eval "iptables -w -t $table -D ${rule#-A }" 2>/dev/null
    if [ -n "$chain" ]; then iptables -w -t "$table" -F "$chain" 2>/dev/null; iptables -w -t "$table" -X "$chain" 2>/dev/null; fi
  done
done"#;
    let _ = Command::new("sh")
        .args(["-c", script, "sh", prefix])
        .stderr(Stdio::null())
        .status();
    let _ = Command::new("ip")
        .args(["link", "delete", bridge])
        .stderr(Stdio::null())
        .status();
}

/// Removes the isolation chains of the node with `bridge` and `subnet`, and the jumps to them: the
/// node's, and those of every group with network state under `dir` (an agent killed between two
/// rule changes may leave a group chain nothing jumps to); and the node's anti-spoofing table.
fn remove_isolation_chains(dir: &Path, subnet: &str, bridge: &str) {
    use crate::runtime::containerd::network::{isolation, plugin_path_env, spoofing};
    let family = subnet
        .split('/')
        .next()
        .and_then(|addr| addr.parse().ok())
        .map_or(isolation::Family::V4, isolation::Family::of);
    let rules = isolation::Isolation::new(family, bridge, subnet, plugin_path_env());
    let spoofing = spoofing::Spoofing::new(bridge, plugin_path_env());
    let groups = sandbox_ids(dir, 6);
    // On a thread of its own: callers are `Drop`s, maybe inside a runtime.
    let removed = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok()?;
        Some(runtime.block_on(async {
            let mut errors = Vec::new();
            if let Err(error) = spoofing.remove_node().await {
                errors.push(error.to_string());
            }
            let isolated = async {
                for id in &groups {
                    rules.remove_group(id).await?;
                }
                rules.remove_node().await
            };
            if let Err(error) = isolated.await {
                errors.push(error.to_string());
            }
            errors
        }))
    })
    .join();
    for error in removed.ok().flatten().unwrap_or_default() {
        eprintln!("test cleanup: {error}");
    }
}

/// The ids of the sandboxes a `Network` keeps state for under `dir` (`…/network/netns/<id>`,
/// `…/network/sandboxes/<id>.json`), looking `depth` levels down.
fn sandbox_ids(dir: &Path, depth: u32) -> HashSet<String> {
    let mut ids = HashSet::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return ids;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if !entry.file_type().is_ok_and(|kind| kind.is_dir()) {
            continue;
        }
        let name = entry.file_name();
        let in_network = dir.file_name().is_some_and(|parent| parent == "network");
        if in_network && (name == "netns" || name == "sandboxes") {
            for file in fs::read_dir(&path).into_iter().flatten().flatten() {
                let file = file.file_name().to_string_lossy().into_owned();
                ids.insert(file.trim_end_matches(".json").to_owned());
            }
        } else if depth > 0 {
            ids.extend(sandbox_ids(&path, depth - 1));
        }
    }
    ids
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::runtime::containerd::image::ImageService;

    const NAMESPACE: &str = "berth-fixture";

    fn processes_mentioning(text: &str) -> Vec<i32> {
        let me = i32::try_from(std::process::id()).unwrap();
        processes_matching(|cmdline| cmdline.contains(text))
            .into_iter()
            .filter(|pid| *pid != me)
            .collect()
    }

    fn mounts_under(dir: &Path) -> Vec<String> {
        fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .filter_map(|line| line.split(' ').nth(4))
            .filter(|point| Path::new(&unescape_mount_path(point)).starts_with(dir))
            .map(str::to_string)
            .collect()
    }

    #[tokio::test]
    async fn containerd_survives_a_restart_and_leaves_nothing_behind() {
        let dir = tempfile::Builder::new()
            .prefix("bf")
            .tempdir_in("/tmp")
            .unwrap();
        let registry = Registry::start(&dir.path().join("r"), None).await.unwrap();
        push_busybox(&registry, "busybox:latest", None)
            .await
            .unwrap();
        let image = format!("{}/busybox:latest", registry.addr);
        let mut containerd = Containerd::start(&dir.path().join("c")).await.unwrap();
        let service =
            ImageService::new(containerd.channel().await.unwrap(), NAMESPACE, "overlayfs");
        service.ensure(&image, &[]).await.unwrap();

        // The channel reconnects to the restarted daemon, whose root kept the image.
        containerd.restart().await.unwrap();
        assert!(service.ensure(&image, &[]).await.unwrap().cached);

        // A running container (shim, runc, rootfs mount) must not outlive the fixture.
        let marker = format!("{}", 7000 + std::process::id() % 1000);
        let output = Command::new("ctr")
            .arg("--address")
            .arg(&containerd.socket)
            .args(["-n", NAMESPACE, "run", "-d", "--snapshotter", "overlayfs"])
            .args([image.as_str(), "fixture-probe", "sleep", marker.as_str()])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "ctr run: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let socket = containerd.socket.to_string_lossy().into_owned();
        assert!(!processes_mentioning(&socket).is_empty(), "no shim runs");
        assert!(!mounts_under(dir.path()).is_empty(), "no rootfs is mounted");

        drop(containerd);
        assert_eq!(processes_mentioning(&socket), Vec::<i32>::new());
        assert_eq!(
            processes_mentioning(&format!("sleep {marker}")),
            Vec::<i32>::new()
        );
        assert_eq!(mounts_under(dir.path()), Vec::<String>::new());
        assert!(
            !Path::new(RUNC_ROOTS).join(NAMESPACE).exists(),
            "runc state left behind"
        );
        assert!(
            !Path::new(CGROUP_ROOT)
                .join("memory")
                .join(NAMESPACE)
                .exists()
                && !Path::new(CGROUP_ROOT).join(NAMESPACE).exists(),
            "cgroups left behind"
        );
    }

    #[test]
    fn mount_points_are_unescaped() {
        assert_eq!(unescape_mount_path(r"/tmp/a\040b"), "/tmp/a b");
        assert_eq!(unescape_mount_path(r"/tmp/x\"), r"/tmp/x\");
        assert_eq!(unescape_mount_path("/plain"), "/plain");
    }
}
