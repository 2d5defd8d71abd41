//! `gitRepo` volumes: a clone of a public repository at `revision`, made so that the tenant's URL
//! reaches what the group could reach and nothing of the node's.
//!
//! - Only `https://`, `http://`, `git://` and `ssh://` URLs with a host ([`is_allowed_repository`],
//!   checked again here whatever the apiserver let through), and git itself is told the same with
//!   `protocol.allow` (so `file://`, a bare path, `ext::` never run).
//! - git runs [`confine`](super::super::confine)d: in the group's network namespace (after CNI has
//!   attached it; the node's loopback is not the group's), with the group's resolv.conf and hosts, as
//!   the unprivileged [`GitConfig::uid`], no capabilities, `no_new_privs`, the agent's state and the
//!   shares out of sight, no system or global config, no hooks, no credential helpers, no submodules.
//! - The clone is made in `<group>/git/<volume>` (root's, so only the target inside is the clone
//!   user's) and renamed into the volume directory once checked out: a volume that exists is whole,
//!   and a second bring-up keeps it. The target is watched as it grows ([`GitConfig::max_bytes`],
//!   without following its symlinks) and the whole thing has [`GitConfig::timeout`]; past either, git's
//!   process group is killed and the partial clone removed.
//! - The tenant reads `gitRepo volume <v>: git clone failed: <git's last fatal line>` ([`git_said`]),
//!   control characters out, credentials in URLs masked, length capped.

use std::os::fd::{AsFd as _, OwnedFd};
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Component, Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use berth_proto::node::GitRepo;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{Mode, SFlag};
use tokio::io::AsyncReadExt as _;

use crate::runtime::containerd::confine::{
    CONFINE_FAILED, Confinement, FAILURE_PREFIX, HOME_DIR, WORK_DIR,
};

/// The longest message of git's shown to the tenant, in characters.
const MAX_DETAIL_CHARS: usize = 300;
/// How much of git's stderr is kept (its end).
const STDERR_TAIL_BYTES: usize = 16 * 1024;
/// How often the clone's size is measured.
const SIZE_POLL: Duration = Duration::from_millis(250);
/// The transports git may use, as `GIT_ALLOW_PROTOCOL` spells them.
const PROTOCOLS: [&str; 4] = berth_proto::spec::git::TRANSPORTS;

/// How the node clones `gitRepo` volumes.
#[derive(Debug, Clone)]
pub struct GitConfig {
    /// The agent's own binary, run as `<confiner> __confine …` to confine git.
    pub confiner: PathBuf,
    /// The user and group git runs as (never 0).
    pub uid: u32,
    pub gid: u32,
    /// The largest a clone (objects and checkout) may grow.
    pub max_bytes: u64,
    /// The longest a clone and checkout may take.
    pub timeout: Duration,
}

impl Default for GitConfig {
    fn default() -> Self {
        Self {
            confiner: std::env::current_exe()
                .unwrap_or_else(|_| PathBuf::from("/usr/local/bin/berth-node-agent")),
            uid: 65534,
            gid: 65534,
            max_bytes: 1 << 30,
            timeout: Duration::from_secs(120),
        }
    }
}

/// Where one group's clones happen: its network and name files, a staging directory, and what git
/// must not see.
#[derive(Debug, Clone)]
pub struct GitSandbox {
    /// The group's network namespace, attached.
    pub netns: PathBuf,
    pub resolv_conf: PathBuf,
    pub hosts: PathBuf,
    /// Root's directory in which clones are made before they become volumes (`<group>/git`).
    pub staging: PathBuf,
    /// Directories covered while git runs (the agent's state, the shares).
    pub hide: Vec<PathBuf>,
}

/// Why a gitRepo volume could not be made.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error(
        "gitRepo volume {volume}: the repository must be an https://, http://, git:// or ssh:// URL with a host"
    )]
    Repository { volume: String },
    #[error("gitRepo volume {volume}: the directory {directory:?} must stay inside the volume")]
    Directory { volume: String, directory: String },
    #[error("gitRepo volume {volume}: the revision must not start with '-' or hold spaces")]
    Revision { volume: String },
    #[error("gitRepo volume {volume}: git {step} failed: {detail}")]
    Failed {
        volume: String,
        step: Step,
        detail: String,
    },
    #[error(
        "gitRepo volume {volume}: git {step} failed: the repository is larger than the node's limit of {limit} bytes"
    )]
    TooLarge {
        volume: String,
        step: Step,
        limit: u64,
    },
    #[error("gitRepo volume {volume}: git {step} failed: timed out after {timeout:?}")]
    TimedOut {
        volume: String,
        step: Step,
        timeout: Duration,
    },
    /// The node's own trouble (details in the agent's log, not the tenant's events).
    #[error("gitRepo volume {volume}: the node could not run git")]
    Node { volume: String },
}

/// Which git command failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Clone,
    Checkout,
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Step::Clone => "clone",
            Step::Checkout => "checkout",
        })
    }
}

/// True if `url` is a URL git may clone on a node: the apiserver's own rule
/// (`berth_proto::spec::git::repository`): `https`, `http`, `git` or `ssh`, with a host, in printable
/// ASCII without spaces or backslashes, no part of it able to pass for an option.
pub fn is_allowed_repository(url: &str) -> bool {
    berth_proto::spec::git::repository(url).is_ok()
}

/// The directory inside the volume the clone goes to: `directory` as components (none: the volume
/// itself), else the repository's last path segment without `.git`.
fn target_components(repository: &str, directory: &str) -> Option<Vec<String>> {
    let directory = berth_proto::spec::git::directory(repository, directory).ok()?;
    let mut out = Vec::new();
    for component in Path::new(&directory).components() {
        match component {
            Component::Normal(name) => out.push(name.to_str()?.to_string()),
            Component::CurDir => {}
            _ => return None,
        }
    }
    Some(out)
}

/// `-c` options every git run gets: only the allowed transports, no hooks, no credential helpers, no
/// filesystem monitor, no submodules, ssh that never asks.
fn hardening_args() -> Vec<String> {
    let mut config = vec!["protocol.allow=never".to_string()];
    config.extend(
        PROTOCOLS
            .iter()
            .map(|p| format!("protocol.{p}.allow=always")),
    );
    config.extend(
        [
            "core.hooksPath=/dev/null",
            "credential.helper=",
            "core.fsmonitor=false",
            "submodule.recurse=false",
            "core.askPass=",
            "advice.detachedHead=false",
        ]
        .map(String::from),
    );
    config
        .into_iter()
        .flat_map(|c| ["-c".to_string(), c])
        .collect()
}

/// git's argv (after `git`) to clone `repository` into the confinement's work directory.
pub fn clone_args(repository: &str) -> Vec<String> {
    let mut args = hardening_args();
    args.extend(
        [
            "clone",
            "--quiet",
            "--no-local",
            "--no-recurse-submodules",
            "--template=",
            "--",
            repository,
            WORK_DIR,
        ]
        .map(String::from),
    );
    args
}

/// git's argv (after `git`) to check `revision` out in the work directory.
pub fn checkout_args(revision: &str) -> Vec<String> {
    let mut args = hardening_args();
    args.extend(["-C", WORK_DIR, "checkout", "--quiet", revision, "--"].map(String::from));
    args
}

/// The whole environment git runs with (nothing of the agent's is inherited).
pub fn git_env() -> Vec<(&'static str, String)> {
    vec![
        ("PATH", "/usr/local/bin:/usr/bin:/bin".into()),
        ("HOME", HOME_DIR.into()),
        ("TMPDIR", HOME_DIR.into()),
        ("LC_ALL", "C".into()),
        ("GIT_CONFIG_NOSYSTEM", "1".into()),
        ("GIT_CONFIG_GLOBAL", "/dev/null".into()),
        ("GIT_TERMINAL_PROMPT", "0".into()),
        ("GIT_ALLOW_PROTOCOL", PROTOCOLS.join(":")),
        (
            "GIT_SSH_COMMAND",
            "ssh -F /dev/null -o BatchMode=yes -o StrictHostKeyChecking=accept-new -o UserKnownHostsFile=/dev/null"
                .into(),
        ),
    ]
}

/// What the tenant is told of a failed git run: git's last `fatal:` line (else its last `error:`
/// line), control characters out, `user:password@` in URLs masked, at most [`MAX_DETAIL_CHARS`].
pub fn git_said(stderr: &str, status: Option<i32>) -> String {
    let lines: Vec<&str> = stderr.lines().map(str::trim).collect();
    let said = ["fatal:", "error:"].iter().find_map(|prefix| {
        lines
            .iter()
            .rev()
            .find_map(|line| line.strip_prefix(prefix))
            .map(str::trim)
            .filter(|s| !s.is_empty())
    });
    let Some(said) = said else {
        return match status {
            Some(code) => format!("git exited with status {code}"),
            None => "git was killed".to_string(),
        };
    };
    let clean: String = mask_credentials(said)
        .chars()
        .filter(|c| !c.is_control())
        .collect();
    if clean.chars().count() > MAX_DETAIL_CHARS {
        let cut: String = clean.chars().take(MAX_DETAIL_CHARS).collect();
        format!("{cut}…")
    } else {
        clean
    }
}

/// `scheme://user:secret@host` becomes `scheme://***@host` wherever it appears.
fn mask_credentials(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (before, after) = rest.split_at(at + 3);
        out.push_str(before);
        let authority_end = after
            .find(|c: char| c == '/' || c == '\'' || c == '"' || c.is_whitespace())
            .unwrap_or(after.len());
        match after[..authority_end].rfind('@') {
            Some(at) => {
                out.push_str("***");
                out.push_str(&after[at..authority_end]);
            }
            None => out.push_str(&after[..authority_end]),
        }
        rest = &after[authority_end..];
    }
    out.push_str(rest);
    out
}

/// Bytes under `root` as stored (the larger of the apparent and the allocated size of each entry),
/// walked through directory handles that never follow a symlink.
fn tree_bytes(root: &Path) -> u64 {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let Ok(fd) = nix::fcntl::open(root, flags, Mode::empty()) else {
        return 0;
    };
    let mut total = 0u64;
    let mut pending: Vec<OwnedFd> = vec![fd];
    while let Some(dir_fd) = pending.pop() {
        let Ok(listing_fd) = dir_fd.try_clone() else {
            continue;
        };
        let Ok(mut dir) = nix::dir::Dir::from_fd(listing_fd) else {
            continue;
        };
        let names: Vec<_> = dir
            .iter()
            .flatten()
            .map(|entry| entry.file_name().to_owned())
            .filter(|name| name.to_bytes() != b"." && name.to_bytes() != b"..")
            .collect();
        for name in names {
            let Ok(stat) = nix::sys::stat::fstatat(
                dir_fd.as_fd(),
                name.as_c_str(),
                AtFlags::AT_SYMLINK_NOFOLLOW,
            ) else {
                continue;
            };
            let apparent = u64::try_from(stat.st_size).unwrap_or(0);
            let allocated = u64::try_from(stat.st_blocks)
                .unwrap_or(0)
                .saturating_mul(512);
            total = total.saturating_add(apparent.max(allocated));
            if SFlag::from_bits_truncate(stat.st_mode & SFlag::S_IFMT.bits()) == SFlag::S_IFDIR
                && let Ok(child) =
                    nix::fcntl::openat(dir_fd.as_fd(), name.as_c_str(), flags, Mode::empty())
            {
                pending.push(child);
            }
        }
    }
    total
}

/// How one confined git run ended badly.
enum RunFailure {
    /// git exited non-zero (or was killed by a signal: `None`); the end of its stderr.
    Exit {
        status: Option<i32>,
        stderr: String,
    },
    TooLarge,
    TimedOut,
    /// The confinement itself failed, or git could not be started.
    Node(String),
}

/// Kills a process group unless disarmed: git's helpers (remote-https, index-pack) go with it when a
/// clone is cut short or its bring-up dropped.
struct GroupKiller(Option<i32>);

impl GroupKiller {
    fn kill(&mut self) {
        if let Some(pgid) = self.0.take() {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pgid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

impl Drop for GroupKiller {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs `git args…` confined by `confinement` until `deadline`, watching `confinement.work` grow.
async fn run_confined(
    config: &GitConfig,
    confinement: &Confinement,
    args: &[String],
    deadline: tokio::time::Instant,
) -> Result<(), RunFailure> {
    let mut child = tokio::process::Command::new(&config.confiner)
        .args(confinement.args("git", args))
        .env_clear()
        .envs(git_env())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            RunFailure::Node(format!("cannot start {}: {e}", config.confiner.display()))
        })?;
    let mut killer = GroupKiller(child.id().and_then(|id| i32::try_from(id).ok()));
    let stderr = child.stderr.take();
    let reader = tokio::spawn(async move {
        let mut tail: Vec<u8> = Vec::new();
        let Some(mut stderr) = stderr else {
            return tail;
        };
        let mut buf = [0u8; 4096];
        while let Ok(n) = stderr.read(&mut buf).await {
            if n == 0 {
                break;
            }
            tail.extend_from_slice(&buf[..n]);
            if tail.len() > 2 * STDERR_TAIL_BYTES {
                tail.drain(..tail.len() - STDERR_TAIL_BYTES);
            }
        }
        tail
    });
    let mut poll = tokio::time::interval(SIZE_POLL);
    let exit = loop {
        tokio::select! {
            status = child.wait() => break status,
            () = tokio::time::sleep_until(deadline) => {
                killer.kill();
                let _ = child.wait().await;
                return Err(RunFailure::TimedOut);
            }
            _ = poll.tick() => {
                let work = confinement.work.clone();
                let used = tokio::task::spawn_blocking(move || tree_bytes(&work)).await.unwrap_or(0);
                if used > config.max_bytes {
                    killer.kill();
                    let _ = child.wait().await;
                    return Err(RunFailure::TooLarge);
                }
            }
        }
    };
    // Reaped: its process group id may be reused from now on.
    killer.0 = None;
    let stderr = match tokio::time::timeout(Duration::from_secs(2), reader).await {
        Ok(Ok(tail)) => String::from_utf8_lossy(&tail).into_owned(),
        _ => String::new(),
    };
    let status = exit.map_err(|e| RunFailure::Node(format!("waiting for git: {e}")))?;
    if status.success() {
        // The last files may have landed after the last look.
        if tree_bytes(&confinement.work) > config.max_bytes {
            return Err(RunFailure::TooLarge);
        }
        return Ok(());
    }
    if status.code() == Some(CONFINE_FAILED)
        && let Some(line) = stderr.lines().find(|l| l.starts_with(FAILURE_PREFIX))
    {
        return Err(RunFailure::Node(line.to_string()));
    }
    // A file that reached RLIMIT_FSIZE (the limit itself): its write failed with EFBIG (the confiner
    // blocks SIGXFSZ), and git said so.
    if stderr.contains("File too large") || status.signal() == Some(nix::libc::SIGXFSZ) {
        return Err(RunFailure::TooLarge);
    }
    Err(RunFailure::Exit {
        status: status.code(),
        stderr,
    })
}

/// Makes volume `volume` at `path` a clone of `git.repository` at `git.revision` (in
/// `git.directory`), unless `path` already exists (a clone made before).
pub async fn git_volume(
    volume: &str,
    git: &GitRepo,
    path: &Path,
    config: &GitConfig,
    sandbox: &GitSandbox,
) -> Result<(), GitError> {
    let named = || volume.to_string();
    if !is_allowed_repository(&git.repository) {
        return Err(GitError::Repository { volume: named() });
    }
    let Some(components) = target_components(&git.repository, &git.directory) else {
        return Err(GitError::Directory {
            volume: named(),
            directory: git.directory.clone(),
        });
    };
    if berth_proto::spec::git::revision(&git.revision).is_err() {
        return Err(GitError::Revision { volume: named() });
    }
    if std::fs::symlink_metadata(path).is_ok() {
        return Ok(());
    }
    let node_failure = |what: &str, error: &dyn std::fmt::Display| {
        tracing::warn!(volume, %error, "gitRepo: {what}");
        GitError::Node { volume: named() }
    };
    let staging = sandbox.staging.join(volume);
    if let Err(error) = remove_if_present(&staging) {
        return Err(node_failure("removing a partial clone", &error));
    }
    let target = components.iter().fold(staging.clone(), |p, c| p.join(c));
    let prepared = prepare_target(&staging, &target, config.uid, config.gid);
    if let Err(error) = prepared {
        return Err(node_failure("preparing the clone's directory", &error));
    }
    let result = clone_and_check_out(volume, git, &target, config, sandbox).await;
    let result = result.and_then(|()| {
        let parent = path.parent().unwrap_or(path);
        std::fs::create_dir_all(parent)
            .and_then(|()| std::fs::rename(&staging, path))
            .map_err(|error| node_failure("moving the clone into its volume", &error))
    });
    if result.is_err()
        && let Err(error) = remove_if_present(&staging)
    {
        tracing::warn!(volume, %error, "gitRepo: cannot remove a failed clone");
    }
    result
}

/// `staging` (root's, 0755) with `target` inside it: parents root's, `target` itself the clone
/// user's and empty.
fn prepare_target(staging: &Path, target: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
    if let Some(parent) = staging.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::create_dir(staging)?;
    std::fs::set_permissions(staging, std::fs::Permissions::from_mode(0o755))?;
    if target != staging {
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::create_dir(target)?;
        std::fs::set_permissions(target, std::fs::Permissions::from_mode(0o755))?;
    }
    std::os::unix::fs::chown(target, Some(uid), Some(gid))
}

fn remove_if_present(path: &Path) -> std::io::Result<()> {
    // std's remove_dir_all never follows a symlink inside the tree.
    match std::fs::remove_dir_all(path) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(error),
        _ => Ok(()),
    }
}

async fn clone_and_check_out(
    volume: &str,
    git: &GitRepo,
    target: &Path,
    config: &GitConfig,
    sandbox: &GitSandbox,
) -> Result<(), GitError> {
    let confinement = Confinement {
        netns: sandbox.netns.clone(),
        resolv_conf: sandbox.resolv_conf.clone(),
        hosts: sandbox.hosts.clone(),
        work: target.to_path_buf(),
        uid: config.uid,
        gid: config.gid,
        max_file_bytes: config.max_bytes,
        hide: sandbox.hide.clone(),
    };
    let deadline = tokio::time::Instant::now() + config.timeout;
    let mut steps = vec![(Step::Clone, clone_args(&git.repository))];
    if !git.revision.is_empty() {
        steps.push((Step::Checkout, checkout_args(&git.revision)));
    }
    for (step, args) in steps {
        let failure = match run_confined(config, &confinement, &args, deadline).await {
            Ok(()) => continue,
            Err(failure) => failure,
        };
        let volume = volume.to_string();
        return Err(match failure {
            RunFailure::Exit { status, stderr } => {
                tracing::info!(volume, %step, stderr = %stderr.trim(), "gitRepo: git failed");
                GitError::Failed {
                    volume,
                    step,
                    detail: git_said(&stderr, status),
                }
            }
            RunFailure::TooLarge => GitError::TooLarge {
                volume,
                step,
                limit: config.max_bytes,
            },
            RunFailure::TimedOut => GitError::TimedOut {
                volume,
                step,
                timeout: config.timeout,
            },
            RunFailure::Node(detail) => {
                tracing::warn!(volume, %step, %detail, "gitRepo: cannot run git confined");
                GitError::Node { volume }
            }
        });
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn git_repositories_are_network_urls_with_a_host() {
        for ok in [
            "https://github.com/Azure-Samples/aci-helloworld.git",
            "http://example.com/r",
            "git://10.0.0.2/app.git",
            "ssh://git@example.com:2222/r.git",
            "https://user:token@example.com/r.git",
            "https://[2001:db8::1]:8443/r",
            "https://example.com",
            "https://example.com:443",
        ] {
            assert!(is_allowed_repository(ok), "{ok}");
        }
        for bad in [
            "",
            "/srv/host/repo",
            "./repo",
            "file:///etc",
            "file://localhost/etc",
            "ext::sh -c id",
            "fd::3",
            "git@github.com:o/r.git",
            "HTTPS://example.com/r",
            "ftp://example.com/r",
            "https:///r",
            "https://",
            "https://@example.com/r",
            "ssh://-oProxyCommand=id/r",
            "ssh://-user@host/r",
            "https://exa mple.com/r",
            "https://example.com/r\n",
            "https://example.com\\@evil/r",
            "https://[::1/r",
            "https://[::1]x/r",
            "https://[]/r",
            "https://host:port/r",
            "https://host:123456/r",
            "https://a:b:80/r",
            "-https://x",
        ] {
            assert!(!is_allowed_repository(bad), "{bad:?}");
        }
    }

    #[test]
    fn git_targets_stay_inside_the_volume() {
        let t = |repo: &str, dir: &str| target_components(repo, dir);
        assert_eq!(t("https://h/o/app.git", ""), Some(vec!["app".into()]));
        assert_eq!(t("https://h/o/app/", ""), Some(vec!["app".into()]));
        assert_eq!(t("https://h", ""), Some(vec!["repo".into()]));
        assert_eq!(t("https://h/x", "."), Some(vec![]));
        assert_eq!(
            t("https://h/x", "a/./b"),
            Some(vec!["a".into(), "b".into()])
        );
        assert_eq!(t("https://h/x", "../etc"), None);
        assert_eq!(t("https://h/x", "/abs"), None);
        assert_eq!(t("https://h/x", "-x"), None);
        assert_eq!(t("https://h/..", ""), None);
    }

    #[test]
    fn git_runs_with_only_network_transports_and_no_hooks_or_helpers() {
        let args = clone_args("https://h/r.git");
        let config: Vec<&str> = args
            .windows(2)
            .filter(|w| w[0] == "-c")
            .map(|w| w[1].as_str())
            .collect();
        assert_eq!(config[0], "protocol.allow=never", "the default comes first");
        for expected in [
            "protocol.https.allow=always",
            "protocol.http.allow=always",
            "protocol.git.allow=always",
            "protocol.ssh.allow=always",
            "core.hooksPath=/dev/null",
            "credential.helper=",
            "core.fsmonitor=false",
            "submodule.recurse=false",
        ] {
            assert!(
                config.contains(&expected),
                "{expected} missing from {args:?}"
            );
        }
        assert!(
            !config
                .iter()
                .any(|c| c.starts_with("protocol.file") || c.starts_with("protocol.ext"))
        );
        let tail: Vec<&str> = args
            .iter()
            .rev()
            .take(3)
            .rev()
            .map(String::as_str)
            .collect();
        assert_eq!(
            tail,
            ["--", "https://h/r.git", WORK_DIR],
            "the URL is never an option"
        );
        assert!(args.contains(&"--no-recurse-submodules".to_string()));
        assert!(
            args.contains(&"--template=".to_string()),
            "no hook templates"
        );
        let checkout = checkout_args("abc123");
        assert_eq!(checkout.last().map(String::as_str), Some("--"));
        assert!(checkout.contains(&"abc123".to_string()));
    }

    #[test]
    fn git_env_is_all_there_is_and_ignores_every_config() {
        let env = git_env();
        let get = |k: &str| {
            env.iter()
                .find(|(key, _)| *key == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("GIT_CONFIG_NOSYSTEM"), Some("1"));
        assert_eq!(get("GIT_CONFIG_GLOBAL"), Some("/dev/null"));
        assert_eq!(get("GIT_TERMINAL_PROMPT"), Some("0"));
        assert_eq!(get("HOME"), Some(HOME_DIR));
        assert_eq!(get("GIT_ALLOW_PROTOCOL"), Some("https:http:git:ssh"));
        assert!(get("GIT_SSH_COMMAND").is_some_and(|c| c.contains("BatchMode=yes")));
        for inherited in [
            "GIT_DIR",
            "GIT_EXEC_PATH",
            "XDG_CONFIG_HOME",
            "GIT_CONFIG_SYSTEM",
            "http_proxy",
        ] {
            assert_eq!(get(inherited), None, "{inherited}");
        }
    }

    #[test]
    fn git_failures_are_gits_last_fatal_line() {
        let refused = "Cloning into '/tmp/work'...\nfatal: unable to access 'http://127.0.0.1:5000/v2/': Failed to connect to 127.0.0.1 port 5000 after 0 ms: Couldn't connect to server\n";
        assert_eq!(
            git_said(refused, Some(128)),
            "unable to access 'http://127.0.0.1:5000/v2/': Failed to connect to 127.0.0.1 port 5000 after 0 ms: Couldn't connect to server"
        );
        let not_found =
            "remote: Repository not found.\nfatal: repository 'https://h/r/' not found\n";
        assert_eq!(
            git_said(not_found, Some(128)),
            "repository 'https://h/r/' not found"
        );
        assert_eq!(
            git_said(
                "error: pathspec 'nope' did not match any file(s) known to git\n",
                Some(1)
            ),
            "pathspec 'nope' did not match any file(s) known to git"
        );
        assert_eq!(
            git_said("remote: anything the server says\n", Some(128)),
            "git exited with status 128"
        );
        assert_eq!(git_said("", None), "git was killed");
    }

    #[test]
    fn git_failures_mask_credentials_drop_control_characters_and_are_capped() {
        let said = git_said(
            "fatal: unable to access 'https://bob:hunter2@h/r.git/': The requested URL returned error: 403\n",
            Some(128),
        );
        assert_eq!(
            said,
            "unable to access 'https://***@h/r.git/': The requested URL returned error: 403"
        );
        assert!(!said.contains("hunter2"));
        let said = git_said("fatal: bad \u{1b}[31mred\u{7}\n", Some(128));
        assert_eq!(said, "bad [31mred");
        let long = format!("fatal: {}\n", "x".repeat(5000));
        assert_eq!(
            git_said(&long, Some(128)).chars().count(),
            MAX_DETAIL_CHARS + 1
        );
        assert_eq!(
            mask_credentials("a https://h/x and git://u@h2/y"),
            "a https://h/x and git://***@h2/y"
        );
    }

    #[test]
    fn git_tree_bytes_count_files_and_never_follow_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/big"), vec![7u8; 100_000]).unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("huge"), vec![7u8; 3_000_000]).unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("link")).unwrap();
        let bytes = tree_bytes(dir.path());
        assert!((100_000..200_000).contains(&bytes), "{bytes}");
        assert_eq!(
            tree_bytes(&dir.path().join("link")),
            0,
            "a symlinked root is not walked"
        );
    }
}

/// git itself, confined, refusing what the URL check should already have refused.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod confined {
    use super::*;
    use crate::runtime::containerd::tests::bin_dir;
    use crate::testing::outside::{OutsideHost, git};

    #[tokio::test]
    async fn git_refuses_local_transports_even_past_the_url_check() {
        let dir = tempfile::Builder::new()
            .prefix("bl")
            .tempdir_in("/tmp")
            .unwrap();
        // Not under /tmp, which the confinement covers anyway: git's own refusal is under test.
        let host_dir = tempfile::tempdir_in("/var/tmp").unwrap();
        let host_repo = host_dir.path().join("hostrepo");
        std::fs::create_dir_all(&host_repo).unwrap();
        git(&host_repo, &["init", "-q"]).unwrap();
        std::fs::write(host_repo.join("secret.txt"), "host-secret").unwrap();
        git(&host_repo, &["add", "."]).unwrap();
        git(&host_repo, &["commit", "-q", "-m", "s"]).unwrap();
        std::fs::write(dir.path().join("resolv.conf"), "").unwrap();
        std::fs::write(dir.path().join("hosts"), "").unwrap();
        let outside = OutsideHost::start().unwrap();
        let sandbox = GitSandbox {
            netns: outside.netns(),
            resolv_conf: dir.path().join("resolv.conf"),
            hosts: dir.path().join("hosts"),
            staging: dir.path().join("git"),
            hide: vec![],
        };
        let config = GitConfig {
            confiner: bin_dir().join("berth-node-agent"),
            ..GitConfig::default()
        };
        let path = host_repo.display().to_string();
        for (repository, transport) in [
            (format!("file://{path}"), "file"),
            (path.clone(), "file"),
            (format!("ext::sh -c cat% {path}/secret.txt"), "ext"),
        ] {
            let target = dir.path().join("target");
            let _ = std::fs::remove_dir_all(&target);
            std::fs::create_dir(&target).unwrap();
            std::os::unix::fs::chown(&target, Some(65534), Some(65534)).unwrap();
            let repo = GitRepo {
                repository: repository.clone(),
                ..Default::default()
            };
            let error = clone_and_check_out("v", &repo, &target, &config, &sandbox)
                .await
                .unwrap_err();
            assert_eq!(
                error.to_string(),
                format!("gitRepo volume v: git clone failed: transport '{transport}' not allowed"),
                "{repository}"
            );
            assert_eq!(
                std::fs::read_dir(&target).unwrap().count(),
                0,
                "{repository}"
            );
        }
    }
}
