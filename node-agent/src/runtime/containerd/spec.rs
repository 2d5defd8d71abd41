//! The OCI runtime spec of one container: the image's config, overridden by the group spec, inside the
//! group's sandbox (its network namespace and its hosts, resolv.conf and hostname files).
//!
//! Defaults follow containerd's own (`oci.populateDefaultUnixSpec`): Docker's 14 capabilities, masked
//! and read-only `/proc` paths, `noNewPrivileges`, a private mount, PID, IPC and UTS namespace per
//! container and the group's network namespace. Nothing is privileged unless the spec asks and the
//! operator allows it.

use std::path::{Path, PathBuf};

use berth_proto::node::{Container, Resources, SecurityContext};
use serde_json::{Value, json};

use super::image::ImageConfig;

/// The CFS period every container gets; the quota is `cpu × period`.
pub const CPU_PERIOD_US: u64 = 100_000;

/// Docker's and containerd's default capability set.
pub const DEFAULT_CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

const MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
];

const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Why a container's spec cannot be built: a problem of the group spec, shown to the user.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpecError {
    #[error(
        "container {container}: nothing to run: the image has no entrypoint or command and the spec gives no command"
    )]
    NoCommand { container: String },
    #[error(
        "container {container}: user {user:?} is not numeric (uid[:gid]); set securityContext.runAsUser"
    )]
    User { container: String, user: String },
    #[error("container {container}: privileged containers are not allowed on this node")]
    Privileged { container: String },
    #[error(
        "container {container}: capability {capability:?} is unknown, or beyond the baseline on a node that allows no privileged containers"
    )]
    Capability {
        container: String,
        capability: String,
    },
}

/// A bind mount into the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindMount {
    pub source: PathBuf,
    pub destination: String,
    pub read_only: bool,
}

/// Everything about the container's surroundings that the spec needs.
#[derive(Debug, Clone)]
pub struct SpecContext<'a> {
    pub hostname: &'a str,
    pub netns: &'a Path,
    /// The group's `/etc/hosts`, `/etc/resolv.conf` and `/etc/hostname` on the node.
    pub etc_files: &'a [(PathBuf, &'static str)],
    pub volumes: &'a [BindMount],
    pub cgroups_path: String,
    pub allow_privileged: bool,
}

/// The user a container runs as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
}

/// The user of `container`: `securityContext.runAsUser/Group` over the image's `User`.
pub fn user(container: &Container, image: &ImageConfig) -> Result<User, SpecError> {
    let bad = || SpecError::User {
        container: container.name.clone(),
        user: image.user.clone(),
    };
    let mut user = User { uid: 0, gid: 0 };
    let spec = image.user.trim();
    if !spec.is_empty() && spec != "root" {
        let (uid, gid) = spec.split_once(':').unwrap_or((spec, ""));
        user.uid = uid.parse().map_err(|_| bad())?;
        user.gid = if gid.is_empty() {
            user.uid
        } else {
            gid.parse().map_err(|_| bad())?
        };
    }
    if let Some(sc) = &container.security_context {
        if let Some(uid) = sc.run_as_user.and_then(|u| u32::try_from(u).ok()) {
            user.uid = uid;
        }
        if let Some(gid) = sc.run_as_group.and_then(|g| u32::try_from(g).ok()) {
            user.gid = gid;
        }
    }
    Ok(user)
}

/// The process's argv: ACI's `command` replaces the image's entrypoint and command (as Kubernetes'
/// `command` does).
pub fn args(container: &Container, image: &ImageConfig) -> Result<Vec<String>, SpecError> {
    let args = if container.command.is_empty() {
        image
            .entrypoint
            .iter()
            .chain(image.cmd.iter())
            .cloned()
            .collect()
    } else {
        container.command.clone()
    };
    if args.is_empty() {
        return Err(SpecError::NoCommand {
            container: container.name.clone(),
        });
    }
    Ok(args)
}

/// The environment: the image's, overridden by the spec's (secure values included), plus HOSTNAME.
pub fn env(container: &Container, image: &ImageConfig, hostname: &str) -> Vec<String> {
    let mut env: Vec<(String, String)> = Vec::new();
    let mut set = |name: &str, value: &str| {
        if let Some(slot) = env.iter_mut().find(|(n, _)| n == name) {
            slot.1 = value.to_string();
        } else {
            env.push((name.to_string(), value.to_string()));
        }
    };
    set(
        "PATH",
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    );
    for entry in &image.env {
        let (name, value) = entry.split_once('=').unwrap_or((entry, ""));
        set(name, value);
    }
    set("HOSTNAME", hostname);
    for var in &container.env {
        set(&var.name, &var.value);
    }
    env.into_iter().map(|(n, v)| format!("{n}={v}")).collect()
}

/// CPU quota (µs per [`CPU_PERIOD_US`]), CPU shares and memory limit (bytes) of a container: its
/// limits where given, else its requests (ACI's rule: a container gets what it requested).
pub fn limits(container: &Container) -> (u64, u64, u64) {
    let pick = |f: fn(&Resources) -> u64| {
        container
            .limits
            .as_ref()
            .map(f)
            .filter(|v| *v > 0)
            .or_else(|| container.requests.as_ref().map(f).filter(|v| *v > 0))
    };
    let cpu_millis = pick(|r| r.cpu_millis).unwrap_or(1000);
    let memory_mib = pick(|r| r.memory_mib).unwrap_or(1536);
    let requested_millis = container
        .requests
        .as_ref()
        .map(|r| r.cpu_millis)
        .filter(|v| *v > 0)
        .unwrap_or(cpu_millis);
    let quota = cpu_millis * CPU_PERIOD_US / 1000;
    // Kubernetes' conversion: 1024 shares per CPU, at least 2.
    let shares = (requested_millis * 1024 / 1000).max(2);
    (quota, shares, memory_mib * 1024 * 1024)
}

fn capabilities(
    container: &Container,
    sc: Option<&SecurityContext>,
    allow_privileged: bool,
) -> Result<Vec<String>, SpecError> {
    use berth_proto::spec::process;
    let mut caps: Vec<String> = DEFAULT_CAPABILITIES.iter().map(|c| c.to_string()).collect();
    let Some(sc) = sc else {
        return Ok(caps);
    };
    let refused = |capability: &str| SpecError::Capability {
        container: container.name.clone(),
        capability: capability.to_string(),
    };
    for drop in &sc.capabilities_drop {
        match process::capability_to_drop(drop).map_err(|_| refused(drop))? {
            None => caps.clear(),
            Some(name) => caps.retain(|c| *c != name),
        }
    }
    for add in &sc.capabilities_add {
        let name = process::capability_to_add(add, allow_privileged).map_err(|_| refused(add))?;
        if !caps.contains(&name) {
            caps.push(name);
        }
    }
    Ok(caps)
}

fn mount(destination: &str, kind: &str, source: &str, options: &[&str]) -> Value {
    json!({"destination": destination, "type": kind, "source": source, "options": options})
}

/// The whole OCI runtime spec (config.json) of `container`.
pub fn build(
    container: &Container,
    image: &ImageConfig,
    ctx: &SpecContext<'_>,
) -> Result<Value, SpecError> {
    let sc = container.security_context.as_ref();
    let privileged = sc.and_then(|s| s.privileged).unwrap_or(false);
    if privileged && !ctx.allow_privileged {
        return Err(SpecError::Privileged {
            container: container.name.clone(),
        });
    }
    let user = user(container, image)?;
    let args = args(container, image)?;
    let caps = if privileged {
        Vec::new()
    } else {
        capabilities(container, sc, ctx.allow_privileged)?
    };
    let no_new_privileges = !privileged
        && !sc
            .and_then(|s| s.allow_privilege_escalation)
            .unwrap_or(false);
    let (quota, shares, memory) = limits(container);
    let cwd = if image.working_dir.is_empty() {
        "/".to_string()
    } else {
        image.working_dir.clone()
    };

    let mut mounts = vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        ),
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", "ro"],
        ),
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", "ro"],
        ),
    ];
    for (source, destination) in ctx.etc_files {
        mounts.push(json!({
            "destination": destination,
            "type": "bind",
            "source": source,
            "options": ["rbind", "rprivate", "ro"],
        }));
    }
    for volume in ctx.volumes {
        mounts.push(json!({
            "destination": volume.destination,
            "type": "bind",
            "source": volume.source,
            "options": ["rbind", "rprivate", if volume.read_only { "ro" } else { "rw" }],
        }));
    }

    let mut linux = json!({
        "resources": {
            "devices": [{"allow": false, "access": "rwm"}],
            "memory": {"limit": memory},
            "cpu": {"quota": quota, "period": CPU_PERIOD_US, "shares": shares},
        },
        "cgroupsPath": ctx.cgroups_path,
        "namespaces": [
            {"type": "pid"},
            {"type": "ipc"},
            {"type": "uts"},
            {"type": "mount"},
            {"type": "network", "path": ctx.netns},
        ],
    });
    if privileged {
        linux["resources"]["devices"] = json!([{"allow": true, "access": "rwm"}]);
    } else {
        linux["maskedPaths"] = json!(MASKED_PATHS);
        linux["readonlyPaths"] = json!(READONLY_PATHS);
    }
    let all_caps: Vec<String> = if privileged { all_capabilities() } else { caps };
    Ok(json!({
        "ociVersion": "1.0.2-dev",
        "process": {
            "terminal": false,
            "user": {"uid": user.uid, "gid": user.gid},
            "args": args,
            "env": env(container, image, ctx.hostname),
            "cwd": cwd,
            "capabilities": {
                "bounding": all_caps,
                "effective": all_caps,
                "permitted": all_caps,
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024u64, "soft": 1024u64}],
            "noNewPrivileges": no_new_privileges,
        },
        "root": {"path": "rootfs", "readonly": false},
        "hostname": ctx.hostname,
        "mounts": mounts,
        "linux": linux,
    }))
}

fn all_capabilities() -> Vec<String> {
    // Every capability of Linux (what a privileged container gets).
    berth_proto::spec::process::CAPABILITIES
        .iter()
        .map(|c| format!("CAP_{c}"))
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use berth_proto::node::EnvVar;

    fn image() -> ImageConfig {
        ImageConfig {
            env: vec!["PATH=/bin".into(), "FOO=image".into()],
            entrypoint: vec![],
            cmd: vec!["sh".into()],
            working_dir: String::new(),
            user: String::new(),
        }
    }

    fn container() -> Container {
        Container {
            name: "app".into(),
            image: "busybox".into(),
            requests: Some(Resources {
                cpu_millis: 500,
                memory_mib: 256,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn ctx<'a>(volumes: &'a [BindMount], etc: &'a [(PathBuf, &'static str)]) -> SpecContext<'a> {
        SpecContext {
            hostname: "web",
            netns: Path::new("/run/netns/g1"),
            etc_files: etc,
            volumes,
            cgroups_path: "/berth/g1/c0".into(),
            allow_privileged: false,
        }
    }

    #[test]
    fn limits_come_from_limits_then_requests() {
        let mut c = container();
        assert_eq!(limits(&c), (50_000, 512, 256 * 1024 * 1024));
        c.limits = Some(Resources {
            cpu_millis: 1500,
            memory_mib: 512,
            ..Default::default()
        });
        assert_eq!(limits(&c), (150_000, 512, 512 * 1024 * 1024));
    }

    #[test]
    fn command_replaces_entrypoint_and_cmd() {
        let mut c = container();
        let mut img = image();
        img.entrypoint = vec!["/entry".into()];
        assert_eq!(args(&c, &img).unwrap(), vec!["/entry", "sh"]);
        c.command = vec!["echo".into(), "hi".into()];
        assert_eq!(args(&c, &img).unwrap(), vec!["echo", "hi"]);
        img.entrypoint.clear();
        img.cmd.clear();
        c.command.clear();
        assert!(matches!(args(&c, &img), Err(SpecError::NoCommand { .. })));
    }

    #[test]
    fn spec_env_overrides_image_env() {
        let mut c = container();
        c.env = vec![EnvVar {
            name: "FOO".into(),
            value: "spec".into(),
            secure: true,
        }];
        let env = env(&c, &image(), "web");
        assert!(env.contains(&"FOO=spec".to_string()));
        assert!(env.contains(&"PATH=/bin".to_string()));
        assert!(env.contains(&"HOSTNAME=web".to_string()));
    }

    #[test]
    fn users_are_numeric_and_overridable() {
        let mut c = container();
        let mut img = image();
        img.user = "1000:2000".into();
        assert_eq!(
            user(&c, &img).unwrap(),
            User {
                uid: 1000,
                gid: 2000
            }
        );
        img.user = "nobody".into();
        assert!(user(&c, &img).is_err());
        c.security_context = Some(SecurityContext {
            run_as_user: Some(7),
            ..Default::default()
        });
        img.user = "5".into();
        assert_eq!(user(&c, &img).unwrap(), User { uid: 7, gid: 5 });
    }

    #[test]
    fn the_spec_has_limits_namespaces_and_defaults() {
        let volumes = [BindMount {
            source: "/v/data".into(),
            destination: "/data".into(),
            read_only: true,
        }];
        let etc = [(PathBuf::from("/g/hosts"), "/etc/hosts")];
        let spec = build(&container(), &image(), &ctx(&volumes, &etc)).unwrap();
        assert_eq!(spec["linux"]["resources"]["cpu"]["quota"], 50_000);
        assert_eq!(
            spec["linux"]["resources"]["memory"]["limit"],
            256 * 1024 * 1024
        );
        assert_eq!(spec["linux"]["namespaces"][4]["path"], "/run/netns/g1");
        assert_eq!(spec["process"]["noNewPrivileges"], true);
        assert_eq!(
            spec["process"]["capabilities"]["bounding"]
                .as_array()
                .unwrap()
                .len(),
            DEFAULT_CAPABILITIES.len()
        );
        let mounts = spec["mounts"].as_array().unwrap();
        let data = mounts.iter().find(|m| m["destination"] == "/data").unwrap();
        assert!(data["options"].as_array().unwrap().contains(&json!("ro")));
        assert!(mounts.iter().any(|m| m["destination"] == "/etc/hosts"));
        assert!(
            spec["linux"]["maskedPaths"]
                .as_array()
                .unwrap()
                .contains(&json!("/proc/kcore"))
        );
    }

    #[test]
    fn privilege_needs_the_operator_and_caps_can_change() {
        let mut c = container();
        c.security_context = Some(SecurityContext {
            privileged: Some(true),
            ..Default::default()
        });
        assert!(matches!(
            build(&c, &image(), &ctx(&[], &[])),
            Err(SpecError::Privileged { .. })
        ));
        c.security_context = Some(SecurityContext {
            capabilities_add: vec!["NET_ADMIN".into()],
            capabilities_drop: vec!["CAP_KILL".into()],
            ..Default::default()
        });
        // Beyond the baseline: only where the operator allows privileged containers.
        assert!(matches!(
            build(&c, &image(), &ctx(&[], &[])),
            Err(SpecError::Capability { .. })
        ));
        let operator = SpecContext {
            allow_privileged: true,
            ..ctx(&[], &[])
        };
        let spec = build(&c, &image(), &operator).unwrap();
        let caps = spec["process"]["capabilities"]["bounding"]
            .as_array()
            .unwrap();
        assert!(caps.contains(&json!("CAP_NET_ADMIN")));
        assert!(!caps.contains(&json!("CAP_KILL")));
        for bad in ["net_admin", "CAP_", "FOO"] {
            c.security_context = Some(SecurityContext {
                capabilities_add: vec![bad.into()],
                ..Default::default()
            });
            assert!(
                matches!(
                    build(&c, &image(), &operator),
                    Err(SpecError::Capability { .. })
                ),
                "{bad}"
            );
        }
    }
}
