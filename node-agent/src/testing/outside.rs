//! A machine "on the internet" for tests: a network namespace of the test's own, joined to the host by
//! a veth pair in a private `/30` (the host end `.1`, the outside end `.2`, its default route back
//! through the host), as a remote server would be. A group reaches it the way it reaches anything
//! outside the node: out of its bridge, masqueraded by CNI, routed by the host. It is never one of the
//! node's own addresses, so a node that keeps groups off its own services still lets them reach it.
//!
//! The namespace lives as long as a `sleep` started in it by `unshare --net`; servers run in it with
//! `nsenter --net=/proc/<pid>/ns/net`. [`OutsideHost::serve_git`] runs `git daemon` there (git://, port
//! 9418) over a directory of bare repositories. Dropping the host kills its servers and the `sleep`,
//! which takes the namespace and the veth pair with it.
//!
//! Needs root, iproute2, util-linux (`unshare`, `nsenter`) and git with `git-daemon` (Debian's `git`).

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::{Context as _, bail};

/// The port `git daemon` listens on (git://'s own).
pub const GIT_PORT: u16 = 9418;
/// How long a server may take to listen.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A network namespace reachable from the host (and from groups) at [`OutsideHost::addr`].
pub struct OutsideHost {
    /// The outside end's address.
    pub addr: Ipv4Addr,
    /// The host end's address (the outside host's default gateway).
    pub gateway: Ipv4Addr,
    host_link: String,
    holder: Option<Child>,
    servers: Vec<Child>,
}

impl OutsideHost {
    /// Makes the namespace, its veth pair and routes, with addresses and names of this process's own.
    pub fn start() -> anyhow::Result<OutsideHost> {
        let pid = std::process::id();
        let holder = Command::new("unshare")
            .args(["--net", "--", "sleep", "86400"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .context("starting `unshare --net sleep` (util-linux)")?;
        let mut host = OutsideHost {
            addr: Ipv4Addr::UNSPECIFIED,
            gateway: Ipv4Addr::UNSPECIFIED,
            host_link: String::new(),
            holder: Some(holder),
            servers: Vec::new(),
        };
        host.wait_for_namespace()?;
        // A /30 in 172.30.0.0/16 no interface of the host uses yet.
        let (n, network) = loop {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            if n > 1000 {
                bail!("no free /30 in 172.30.0.0/16 for an outside host");
            }
            let slot = (pid.wrapping_mul(64).wrapping_add(n)) % (256 * 64);
            let network = Ipv4Addr::new(172, 30, (slot / 64) as u8, ((slot % 64) * 4) as u8);
            if !address_in_use(network)? {
                break (n, network);
            }
        };
        let base = u32::from(network);
        host.gateway = Ipv4Addr::from(base + 1);
        host.addr = Ipv4Addr::from(base + 2);
        host.host_link = format!("bo{}x{n}", pid % 100_000);
        let peer = format!("bp{}x{n}", pid % 100_000);
        let holder_pid = host.holder_pid()?.to_string();
        run(Command::new("ip").args([
            "link",
            "add",
            &host.host_link,
            "type",
            "veth",
            "peer",
            "name",
            &peer,
            "netns",
            &holder_pid,
        ]))?;
        let gateway_cidr = format!("{}/30", host.gateway);
        run(Command::new("ip").args(["addr", "add", &gateway_cidr, "dev", &host.host_link]))?;
        run(Command::new("ip").args(["link", "set", &host.host_link, "up"]))?;
        let addr_cidr = format!("{}/30", host.addr);
        let gateway = host.gateway.to_string();
        run(host.command("ip").args(["link", "set", "lo", "up"]))?;
        run(host
            .command("ip")
            .args(["addr", "add", &addr_cidr, "dev", &peer]))?;
        run(host.command("ip").args(["link", "set", &peer, "up"]))?;
        run(host
            .command("ip")
            .args(["route", "add", "default", "via", &gateway]))?;
        Ok(host)
    }

    fn holder_pid(&self) -> anyhow::Result<u32> {
        self.holder
            .as_ref()
            .map(Child::id)
            .context("the namespace's holder is gone")
    }

    /// The namespace's path (`/proc/<pid>/ns/net` of its holder).
    pub fn netns(&self) -> PathBuf {
        let pid = self.holder.as_ref().map_or(0, Child::id);
        PathBuf::from(format!("/proc/{pid}/ns/net"))
    }

    /// `program` to be run in the outside host's network namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut command = Command::new("nsenter");
        command
            .arg(format!("--net={}", self.netns().display()))
            .arg("--")
            .arg(program);
        command
    }

    /// Waits until `unshare` has made the namespace (its holder's differs from ours).
    fn wait_for_namespace(&mut self) -> anyhow::Result<()> {
        let ours = std::fs::read_link("/proc/self/ns/net")?;
        let deadline = std::time::Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self
                .holder
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                bail!("`unshare --net sleep` exited with {status}");
            }
            if std::fs::read_link(self.netns()).is_ok_and(|theirs| theirs != ours) {
                return Ok(());
            }
            if std::time::Instant::now() > deadline {
                bail!("`unshare --net` made no namespace within {READY_TIMEOUT:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Serves the bare repositories under `base` over git:// (`git://<addr>/<name>`, read-only) and
    /// returns once the daemon accepts connections. Its log is `log`.
    pub fn serve_git(&mut self, base: &Path, log: &Path) -> anyhow::Result<()> {
        let log = std::fs::File::create(log).with_context(|| format!("{}", log.display()))?;
        let child = self
            .command("git")
            .arg("daemon")
            .arg("--reuseaddr")
            .arg("--export-all")
            .arg("--verbose")
            .arg(format!("--listen={}", self.addr))
            .arg(format!("--port={GIT_PORT}"))
            .arg(format!("--base-path={}", base.display()))
            .arg(base)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting `git daemon` (Debian's git ships it)")?;
        self.servers.push(child);
        let addr = SocketAddr::from((self.addr, GIT_PORT));
        let deadline = std::time::Instant::now() + READY_TIMEOUT;
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if std::time::Instant::now() > deadline {
                bail!("git daemon did not listen on {addr} within {READY_TIMEOUT:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// `git://<addr>/<name>`: a repository under the base given to [`OutsideHost::serve_git`].
    pub fn git_url(&self, name: &str) -> String {
        format!("git://{}/{name}", self.addr)
    }
}

impl Drop for OutsideHost {
    fn drop(&mut self) {
        for mut server in self.servers.drain(..).chain(self.holder.take()) {
            let _ = server.kill();
            let _ = server.wait();
        }
        // Gone with the namespace already, unless something else still holds it.
        if !self.host_link.is_empty() {
            let _ = Command::new("ip")
                .args(["link", "delete", &self.host_link])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// True if some interface of the host has an address in `network`/30.
fn address_in_use(network: Ipv4Addr) -> anyhow::Result<bool> {
    let output = Command::new("ip")
        .args(["-4", "-o", "addr", "show", "to", &format!("{network}/30")])
        .output()
        .context("running `ip addr show`")?;
    Ok(!output.stdout.is_empty())
}

fn run(command: &mut Command) -> anyhow::Result<()> {
    let output = command
        .output()
        .with_context(|| format!("running {command:?}"))?;
    if !output.status.success() {
        bail!(
            "{command:?} failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// Runs `git args…` in `dir` with no system or global config and a fixed identity; returns its
/// trimmed stdout.
pub fn git(dir: &Path, args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.invalid")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.invalid")
        .output()
        .with_context(|| format!("running git {args:?}"))?;
    if !output.status.success() {
        bail!(
            "git {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// Makes the bare repository `<base>/<name>` with one commit per `(file, contents)` in `commits`
/// (each writing one file) and returns the commits' hashes in order.
pub fn bare_repository(
    base: &Path,
    name: &str,
    commits: &[(&str, &[u8])],
) -> anyhow::Result<Vec<String>> {
    let work = base.join(format!("{name}.work"));
    std::fs::create_dir_all(&work)?;
    git(&work, &["init", "-q", "-b", "main"])?;
    let mut hashes = Vec::new();
    for (i, (file, contents)) in commits.iter().enumerate() {
        std::fs::write(work.join(file), contents)?;
        git(&work, &["add", "."])?;
        git(&work, &["commit", "-q", "-m", &format!("commit {i}")])?;
        hashes.push(git(&work, &["rev-parse", "HEAD"])?);
    }
    let work_str = work.to_string_lossy().into_owned();
    git(base, &["clone", "-q", "--bare", &work_str, name])?;
    std::fs::remove_dir_all(&work)?;
    Ok(hashes)
}
