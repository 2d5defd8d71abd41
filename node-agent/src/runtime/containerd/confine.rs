//! Running a program (git) on the node as a group would reach the world, not as the agent does: the
//! agent's own binary, started as `berth-node-agent __confine <options> -- <program> <args>…` by root,
//! enters the group's network namespace, makes itself a private mount namespace, drops to an
//! unprivileged user with no capabilities and `no_new_privs`, and execs the program. No shell, no
//! `unsafe` (nix's safe wrappers), and the program's argv and environment are the caller's alone.
//!
//! Inside, `/tmp` is a fresh tmpfs (the node's `/tmp` is out of sight) holding [`WORK_DIR`] (the one
//! directory the program may write, bound from `--work`) and [`HOME_DIR`] (its empty home and
//! `TMPDIR`); `/etc/resolv.conf` and `/etc/hosts` are the group's (read-only), so names resolve as the
//! group resolves them; every `--hide` directory (the agent's state, the shares) is covered by an
//! empty read-only tmpfs; and no file may grow past `--max-file-bytes` (`RLIMIT_FSIZE`, with SIGXFSZ
//! blocked so the write fails with EFBIG, "File too large", rather than killing the writer unheard).

use std::ffi::{CString, OsStr, OsString};
use std::os::fd::{AsFd as _, AsRawFd as _, OwnedFd};
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use nix::fcntl::OFlag;
use nix::mount::MsFlags;
use nix::sched::CloneFlags;
use nix::sys::stat::Mode;
use nix::unistd::{Gid, Uid};

/// The hidden subcommand of `berth-node-agent` that confines a program.
pub const SUBCOMMAND: &str = "__confine";
/// Where `--work` appears inside (the clone's target).
pub const WORK_DIR: &str = "/tmp/work";
/// The program's `HOME` and `TMPDIR` inside: empty, its own.
pub const HOME_DIR: &str = "/tmp/home";
/// The exit status of a confinement that failed before the program ran.
pub const CONFINE_FAILED: i32 = 125;
/// What a failed confinement's one line of stderr begins with.
pub const FAILURE_PREFIX: &str = "berth confine: ";

/// How to confine one program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confinement {
    /// The network namespace to enter (a group's, pinned by the network code).
    pub netns: PathBuf,
    /// Bound over `/etc/resolv.conf` and `/etc/hosts`.
    pub resolv_conf: PathBuf,
    pub hosts: PathBuf,
    /// The one directory the program may write, seen as [`WORK_DIR`]; owned by `uid`.
    pub work: PathBuf,
    pub uid: u32,
    pub gid: u32,
    /// The largest file the program may write.
    pub max_file_bytes: u64,
    /// Directories covered by an empty tmpfs.
    pub hide: Vec<PathBuf>,
}

/// Why a confinement could not be set up or its arguments read.
#[derive(Debug, thiserror::Error)]
pub enum ConfineError {
    #[error("usage: {0}")]
    Usage(String),
    #[error("{step}: {source}")]
    Sys {
        step: String,
        #[source]
        source: nix::Error,
    },
    #[error("{step}: {source}")]
    Io {
        step: String,
        #[source]
        source: std::io::Error,
    },
    #[error("capabilities are left after dropping to uid {uid}")]
    CapabilitiesLeft { uid: u32 },
    #[error("refusing to run as uid or gid 0")]
    Root,
}

fn sys(step: impl Into<String>) -> impl FnOnce(nix::Error) -> ConfineError {
    let step = step.into();
    move |source| ConfineError::Sys { step, source }
}

impl Confinement {
    /// The helper's arguments (after the binary) to run `program args…` confined.
    pub fn args(&self, program: &str, args: &[String]) -> Vec<OsString> {
        let mut out: Vec<OsString> = vec![SUBCOMMAND.into()];
        let mut pair = |flag: &str, value: &OsStr| {
            out.push(flag.into());
            out.push(value.to_owned());
        };
        pair("--netns", self.netns.as_os_str());
        pair("--resolv-conf", self.resolv_conf.as_os_str());
        pair("--hosts", self.hosts.as_os_str());
        pair("--work", self.work.as_os_str());
        pair("--user", OsStr::new(&format!("{}:{}", self.uid, self.gid)));
        pair(
            "--max-file-bytes",
            OsStr::new(&self.max_file_bytes.to_string()),
        );
        for hidden in &self.hide {
            pair("--hide", hidden.as_os_str());
        }
        out.push("--".into());
        out.push(program.into());
        out.extend(args.iter().map(OsString::from));
        out
    }

    /// Reads what [`Confinement::args`] wrote (without the subcommand): the confinement, the program
    /// and its arguments.
    pub fn parse(
        args: impl IntoIterator<Item = OsString>,
    ) -> Result<(Confinement, OsString, Vec<OsString>), ConfineError> {
        let mut args = args.into_iter();
        let (mut netns, mut resolv_conf, mut hosts, mut work) = (None, None, None, None);
        let (mut user, mut max_file_bytes) = (None, None);
        let mut hide = Vec::new();
        loop {
            let flag = args
                .next()
                .ok_or_else(|| ConfineError::Usage("missing `-- program`".into()))?;
            if flag == "--" {
                break;
            }
            let value = args
                .next()
                .ok_or_else(|| ConfineError::Usage(format!("{flag:?} needs a value")))?;
            let path = || PathBuf::from(&value);
            match flag.to_str() {
                Some("--netns") => netns = Some(path()),
                Some("--resolv-conf") => resolv_conf = Some(path()),
                Some("--hosts") => hosts = Some(path()),
                Some("--work") => work = Some(path()),
                Some("--hide") => hide.push(path()),
                Some("--user") => user = value.to_str().and_then(parse_user),
                Some("--max-file-bytes") => {
                    max_file_bytes = value.to_str().and_then(|v| v.parse().ok());
                }
                _ => return Err(ConfineError::Usage(format!("unknown option {flag:?}"))),
            }
        }
        let program = args
            .next()
            .ok_or_else(|| ConfineError::Usage("no program after `--`".into()))?;
        let missing = |what: &str| ConfineError::Usage(format!("{what} is required"));
        let (uid, gid) = user.ok_or_else(|| missing("--user <uid>:<gid>"))?;
        let confinement = Confinement {
            netns: netns.ok_or_else(|| missing("--netns"))?,
            resolv_conf: resolv_conf.ok_or_else(|| missing("--resolv-conf"))?,
            hosts: hosts.ok_or_else(|| missing("--hosts"))?,
            work: work.ok_or_else(|| missing("--work"))?,
            uid,
            gid,
            max_file_bytes: max_file_bytes.ok_or_else(|| missing("--max-file-bytes"))?,
            hide,
        };
        Ok((confinement, program, args.collect()))
    }
}

/// `uid:gid`, both numbers.
pub fn parse_user(s: &str) -> Option<(u32, u32)> {
    let (uid, gid) = s.split_once(':')?;
    Some((uid.parse().ok()?, gid.parse().ok()?))
}

/// The hidden subcommand: `args` are what follows [`SUBCOMMAND`]. Only returns if confining or
/// starting the program failed (status [`CONFINE_FAILED`], one line on stderr).
pub fn main(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    let error = match Confinement::parse(args) {
        Ok((confinement, program, args)) => match confinement.enter() {
            Ok(()) => exec(&program, &args),
            Err(error) => error,
        },
        Err(error) => error,
    };
    eprintln!("{FAILURE_PREFIX}{error}");
    ExitCode::from(CONFINE_FAILED as u8)
}

/// Execs `program` (looked up in `PATH`) with `args`, keeping the environment and the signal mask
/// (std's exec would clear the mask); returns only why it could not.
fn exec(program: &OsStr, args: &[OsString]) -> ConfineError {
    let step = || format!("running {}", Path::new(program).display());
    let c_string = |s: &OsStr| {
        CString::new(s.as_bytes()).map_err(|_| ConfineError::Usage(format!("{s:?} holds a NUL")))
    };
    let argv: Result<Vec<CString>, ConfineError> = std::iter::once(program)
        .chain(args.iter().map(OsString::as_os_str))
        .map(c_string)
        .collect();
    let argv = match argv {
        Ok(argv) => argv,
        Err(error) => return error,
    };
    match nix::unistd::execvp(&argv[0], &argv) {
        Err(source) => ConfineError::Sys {
            step: step(),
            source,
        },
        Ok(never) => match never {},
    }
}

/// `path` opened as a handle only (`O_PATH`), its last component never followed.
fn handle(path: &Path, directory: bool) -> Result<OwnedFd, ConfineError> {
    let mut flags = OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    if directory {
        flags |= OFlag::O_DIRECTORY;
    }
    nix::fcntl::open(path, flags, Mode::empty()).map_err(sys(format!("opening {}", path.display())))
}

/// The path through which `fd`'s file can be named (and bind-mounted).
fn fd_path(fd: &OwnedFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

fn bind(source: &Path, target: &str, read_only: bool) -> Result<(), ConfineError> {
    let step = || format!("binding {target}");
    nix::mount::mount(
        Some(source),
        target,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(sys(step()))?;
    let mut flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    if read_only {
        flags |= MsFlags::MS_RDONLY;
    }
    nix::mount::mount(None::<&str>, target, None::<&str>, flags, None::<&str>).map_err(sys(step()))
}

impl Confinement {
    /// Confines the calling process (which must be root and single-threaded) as described.
    fn enter(&self) -> Result<(), ConfineError> {
        if self.uid == 0 || self.gid == 0 {
            return Err(ConfineError::Root);
        }
        let netns = std::fs::File::open(&self.netns).map_err(|source| ConfineError::Io {
            step: format!("opening {}", self.netns.display()),
            source,
        })?;

        nix::sched::setns(netns.as_fd(), CloneFlags::CLONE_NEWNET)
            .map_err(sys("entering the network namespace"))?;
        drop(netns);
        nix::sched::unshare(CloneFlags::CLONE_NEWNS).map_err(sys("unsharing mounts"))?;
        nix::mount::mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_REC | MsFlags::MS_PRIVATE,
            None::<&str>,
        )
        .map_err(sys("making mounts private"))?;
        // Everything named from the node's view first (in this namespace: a bind mount's source must
        // be one of its own), for /tmp is about to be covered.
        let work = handle(&self.work, true)?;
        let resolv_conf = handle(&self.resolv_conf, false)?;
        let hosts = handle(&self.hosts, false)?;
        let no_exec = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
        nix::mount::mount(
            Some("tmpfs"),
            "/tmp",
            Some("tmpfs"),
            no_exec,
            Some("mode=0755,size=64m"),
        )
        .map_err(sys("mounting /tmp"))?;
        let owner = (Some(Uid::from_raw(self.uid)), Some(Gid::from_raw(self.gid)));
        nix::unistd::mkdir(WORK_DIR, Mode::from_bits_truncate(0o755))
            .map_err(sys(format!("making {WORK_DIR}")))?;
        nix::unistd::mkdir(HOME_DIR, Mode::from_bits_truncate(0o700))
            .map_err(sys(format!("making {HOME_DIR}")))?;
        nix::unistd::chown(HOME_DIR, owner.0, owner.1)
            .map_err(sys(format!("giving {HOME_DIR} away")))?;
        bind(&fd_path(&work), WORK_DIR, false)?;
        bind(&fd_path(&resolv_conf), "/etc/resolv.conf", true)?;
        bind(&fd_path(&hosts), "/etc/hosts", true)?;
        drop((work, resolv_conf, hosts));
        for hidden in &self.hide {
            // Under /tmp already out of sight, or absent: nothing to cover.
            if std::fs::symlink_metadata(hidden).is_ok_and(|m| m.is_dir()) {
                nix::mount::mount(
                    Some("tmpfs"),
                    hidden,
                    Some("tmpfs"),
                    no_exec | MsFlags::MS_RDONLY,
                    Some("mode=0755,size=4k"),
                )
                .map_err(sys(format!("covering {}", hidden.display())))?;
            }
        }

        use nix::sys::resource::{Resource, setrlimit};
        setrlimit(
            Resource::RLIMIT_FSIZE,
            self.max_file_bytes,
            self.max_file_bytes,
        )
        .map_err(sys("limiting file sizes"))?;
        setrlimit(Resource::RLIMIT_CORE, 0, 0).map_err(sys("disabling core dumps"))?;
        // Blocked (the mask survives exec and git's forks), SIGXFSZ does not kill the writer: its
        // write fails with EFBIG and git says "File too large", so the limit is told apart.
        let mut xfsz = nix::sys::signal::SigSet::empty();
        xfsz.add(nix::sys::signal::Signal::SIGXFSZ);
        nix::sys::signal::sigprocmask(nix::sys::signal::SigmaskHow::SIG_BLOCK, Some(&xfsz), None)
            .map_err(sys("blocking SIGXFSZ"))?;
        nix::unistd::chdir(HOME_DIR).map_err(sys(format!("entering {HOME_DIR}")))?;

        let (uid, gid) = (Uid::from_raw(self.uid), Gid::from_raw(self.gid));
        nix::unistd::setgroups(&[]).map_err(sys("clearing groups"))?;
        nix::unistd::setresgid(gid, gid, gid).map_err(sys("setting the gid"))?;
        nix::unistd::setresuid(uid, uid, uid).map_err(sys("setting the uid"))?;
        nix::sys::prctl::set_no_new_privs().map_err(sys("setting no_new_privs"))?;
        let status =
            std::fs::read_to_string("/proc/self/status").map_err(|source| ConfineError::Io {
                step: "reading /proc/self/status".into(),
                source,
            })?;
        if !no_capabilities(&status) {
            return Err(ConfineError::CapabilitiesLeft { uid: self.uid });
        }
        Ok(())
    }
}

/// True if `/proc/<pid>/status` text shows no permitted, effective or ambient capability.
fn no_capabilities(status: &str) -> bool {
    let sets: Vec<&str> = status
        .lines()
        .filter_map(|line| {
            ["CapPrm:", "CapEff:", "CapAmb:"]
                .iter()
                .find_map(|key| line.strip_prefix(key))
        })
        .map(str::trim)
        .collect();
    sets.len() == 3 && sets.iter().all(|set| set.bytes().all(|b| b == b'0'))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn sample() -> Confinement {
        Confinement {
            netns: "/run/x/netns/g1".into(),
            resolv_conf: "/s/g1/etc/resolv.conf".into(),
            hosts: "/s/g1/etc/hosts".into(),
            work: "/s/g1/git/v/code".into(),
            uid: 65534,
            gid: 65533,
            max_file_bytes: 1 << 30,
            hide: vec!["/s".into(), "/shares".into()],
        }
    }

    #[test]
    fn git_confinement_args_round_trip_and_keep_the_program_argv_apart() {
        let confinement = sample();
        let program_args = vec![
            "clone".to_string(),
            "--".into(),
            "--netns".into(),
            "https://h/r".into(),
        ];
        let args = confinement.args("git", &program_args);
        assert_eq!(args[0], SUBCOMMAND);
        let (parsed, program, rest) = Confinement::parse(args.into_iter().skip(1)).unwrap();
        assert_eq!(parsed, confinement);
        assert_eq!(program, "git");
        assert_eq!(
            rest,
            program_args.iter().map(OsString::from).collect::<Vec<_>>()
        );
    }

    #[test]
    fn git_confinement_needs_every_option_and_a_program() {
        let full = sample().args("git", &[]);
        for drop_at in (1..full.len() - 2).step_by(2) {
            let mut args: Vec<OsString> = full[1..].to_vec();
            if args[drop_at - 1] == "--hide" {
                continue;
            }
            args.drain(drop_at - 1..=drop_at);
            assert!(
                Confinement::parse(args).is_err(),
                "dropped {:?}",
                full[drop_at]
            );
        }
        let no_program: Vec<OsString> = full[1..full.len() - 1].to_vec();
        assert!(Confinement::parse(no_program).is_err());
        assert!(
            Confinement::parse(["--user".into(), "x:1".into(), "--".into(), "git".into()]).is_err()
        );
    }

    #[test]
    fn git_confinement_users_are_two_numbers() {
        assert_eq!(parse_user("65534:65534"), Some((65534, 65534)));
        assert_eq!(parse_user("1000"), None);
        assert_eq!(parse_user("nobody:nogroup"), None);
        assert_eq!(parse_user("1:-1"), None);
    }

    #[test]
    fn git_confinement_sees_leftover_capabilities() {
        let clean = "Name:\tgit\nCapInh:\t0000000000000000\nCapPrm:\t0000000000000000\nCapEff:\t0000000000000000\nCapBnd:\t000001ffffffffff\nCapAmb:\t0000000000000000\n";
        assert!(no_capabilities(clean));
        assert!(!no_capabilities(&clean.replace(
            "CapEff:\t0000000000000000",
            "CapEff:\t0000000000000400"
        )));
        assert!(!no_capabilities("Name:\tgit\n"), "unknown means not clean");
    }
}

/// The real confiner (the agent's binary) around real programs.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod confined {
    use super::*;
    use crate::runtime::containerd::tests::bin_dir;
    use crate::testing::outside::OutsideHost;

    #[test]
    fn git_confinement_runs_unprivileged_in_the_namespace_with_the_node_out_of_sight() {
        let dir = tempfile::Builder::new()
            .prefix("bc")
            .tempdir_in("/tmp")
            .unwrap();
        let hidden = tempfile::tempdir_in("/var/tmp").unwrap();
        std::fs::write(hidden.path().join("key"), "node-key").unwrap();
        let work = dir.path().join("work");
        std::fs::create_dir(&work).unwrap();
        std::os::unix::fs::chown(&work, Some(65534), Some(65534)).unwrap();
        std::fs::write(dir.path().join("resolv.conf"), "nameserver 192.0.2.53\n").unwrap();
        std::fs::write(dir.path().join("hosts"), "192.0.2.7\tgroup-host\n").unwrap();
        std::fs::write(dir.path().join("node-tmp-file"), "x").unwrap();
        let outside = OutsideHost::start().unwrap();
        let confinement = Confinement {
            netns: outside.netns(),
            resolv_conf: dir.path().join("resolv.conf"),
            hosts: dir.path().join("hosts"),
            work: work.clone(),
            uid: 65534,
            gid: 65534,
            max_file_bytes: 1000,
            hide: vec![hidden.path().to_path_buf()],
        };
        let script = format!(
            "id -u; id -G; grep -E '^Cap(Prm|Eff|Amb)|^NoNewPrivs' /proc/self/status; \
             cat /etc/resolv.conf /etc/hosts; ls /tmp; ls -A {hidden}; cat /proc/net/dev | cut -d: -f1; \
             echo written > {WORK_DIR}/out; head -c 5000 /dev/zero > {WORK_DIR}/big || echo big-refused",
            hidden = hidden.path().display()
        );
        let output = std::process::Command::new(bin_dir().join("berth-node-agent"))
            .args(confinement.args("sh", &["-c".into(), script]))
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{said}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let lines: Vec<&str> = said.lines().map(str::trim).collect();
        assert_eq!(lines[0], "65534", "{said}");
        assert_eq!(lines[1], "65534", "no supplementary groups: {said}");
        for set in ["CapPrm", "CapEff", "CapAmb"] {
            assert!(
                lines
                    .iter()
                    .any(|l| l.starts_with(set) && l.ends_with("0000000000000000")),
                "{set}: {said}"
            );
        }
        assert!(
            lines.contains(&"NoNewPrivs:\t1") || said.contains("NoNewPrivs:\t1"),
            "{said}"
        );
        assert!(
            said.contains("nameserver 192.0.2.53") && said.contains("group-host"),
            "{said}"
        );
        assert!(
            !said.contains("node-tmp-file"),
            "the node's /tmp is out of sight: {said}"
        );
        assert!(
            !said.contains("key"),
            "hidden directories are empty: {said}"
        );
        assert!(
            lines.iter().any(|l| l.starts_with("bp")),
            "the outside namespace's veth: {said}"
        );
        assert!(
            !said.contains("docker0") && !lines.contains(&"eth0"),
            "{said}"
        );
        assert!(
            said.contains("big-refused"),
            "files stop at --max-file-bytes: {said}"
        );
        assert_eq!(
            std::fs::read_to_string(work.join("out")).unwrap(),
            "written\n"
        );
        let meta = std::fs::metadata(work.join("out")).unwrap();
        assert_eq!(std::os::unix::fs::MetadataExt::uid(&meta), 65534);
    }

    #[test]
    fn git_confinement_refuses_root_and_says_why() {
        let mut confinement = Confinement {
            netns: "/proc/self/ns/net".into(),
            resolv_conf: "/etc/resolv.conf".into(),
            hosts: "/etc/hosts".into(),
            work: "/tmp".into(),
            uid: 0,
            gid: 0,
            max_file_bytes: 1,
            hide: vec![],
        };
        let run = |c: &Confinement| {
            std::process::Command::new(bin_dir().join("berth-node-agent"))
                .args(c.args("true", &[]))
                .output()
                .unwrap()
        };
        let output = run(&confinement);
        assert_eq!(output.status.code(), Some(CONFINE_FAILED));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.starts_with(FAILURE_PREFIX) && stderr.contains("uid or gid 0"),
            "{stderr}"
        );
        confinement.uid = 65534;
        confinement.gid = 65534;
        confinement.netns = "/nonexistent/netns".into();
        let output = run(&confinement);
        assert_eq!(output.status.code(), Some(CONFINE_FAILED));
        assert!(String::from_utf8_lossy(&output.stderr).contains("/nonexistent/netns"));
    }
}
