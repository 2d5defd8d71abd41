//! The containerd runtime: runs each assigned group for real, through containerd's gRPC API in its own
//! containerd namespace (`berth`).
//!
//! - [`image`]: OCI pulls into containerd's content store and snapshots (no `ctr`).
//! - [`network`]: one network namespace per group, its IP from CNI.
//! - [`volumes`]: emptyDir, secret, gitRepo and share volumes.
//! - [`confine`]: the agent's hidden `__confine` mode, which runs git in a group's network namespace
//!   as an unprivileged user.
//! - [`spec`]: the OCI runtime spec of a container.
//! - [`client`]: containers, tasks and snapshots.
//! - [`logs`]: per-container log files written by `berth-logger` and read back.
//! - `group`: one worker task per group that owns its life.
//! - `exec`: processes started in a running container, wired to FIFOs.
//! - `sample`: what each running container uses (cgroups) and each group's network carries.
//! - `resolv`: a group's `/etc/hostname`, `/etc/hosts` and `/etc/resolv.conf` (Berth's nameserver first).
//!
//! On the node, under the agent's state directory:
//! `runtime/groups/<group>/{assignment.pb,status.pb,etc/,volumes/}`, `runtime/logs/<group>/<container>/`,
//! `runtime/network/` (CNI config, IPAM leases, netns mounts) and `runtime/exec/<exec-id>/` (the FIFOs
//! of one exec process). A restarted agent reads `runtime/groups/` and adopts what still runs; anything
//! in containerd's namespace or on disk that no group claims is removed, and exec processes a previous
//! agent left are killed.

pub mod client;
pub mod confine;
mod exec;
mod group;
pub mod image;
pub mod logs;
pub mod network;
mod probe;
mod resolv;
mod sample;
pub mod spec;
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
pub mod volumes;

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use berth_proto::node::{ContainerState, ExecStart, GroupAssignment, GroupStatus};
use prost::Message as _;
use tokio::sync::mpsc;

use self::client::Containerd;
use self::group::{Command, StatusHandle, Worker};
use self::image::ImageService;
use self::network::{Network, NetworkConfig};
use self::volumes::git::GitConfig;
use super::{BoxFuture, Changes, ExecError, ExecProcess, Runtime, RuntimeError};

/// Labels on every containerd container Berth makes.
pub const LABEL_GROUP: &str = "berth.group";
pub const LABEL_CONTAINER: &str = "berth.container";
pub const LABEL_INIT: &str = "berth.init";
/// The placement epoch of the assignment the container was made for (`GroupAssignment.placement`).
pub const LABEL_PLACEMENT: &str = "berth.placement";

/// How the containerd runtime runs groups.
#[derive(Debug, Clone)]
pub struct ContainerdConfig {
    /// containerd's gRPC socket.
    pub socket: PathBuf,
    /// containerd namespace of every Berth container, image and snapshot.
    pub namespace: String,
    pub snapshotter: String,
    /// Where the CNI plugins are.
    pub cni_bin_dir: PathBuf,
    /// The groups' bridge and subnet.
    pub bridge: String,
    pub subnet: String,
    /// Publish the groups' ports on the node (portmap, hostPort = port).
    pub publish_ports: bool,
    /// The nameserver of groups' resolv.conf (`--dns-server`), before the apiserver's advertised
    /// one; `None`: the advertised one, if any.
    pub dns_server: Option<IpAddr>,
    /// The root of `azureFile` shares (`<root>/<account>/<share>`); none: such volumes fail.
    pub share_root: Option<PathBuf>,
    /// The `berth-logger` binary containerd's shim runs for each task.
    pub logger: PathBuf,
    pub log_max_bytes: u64,
    pub log_max_files: u32,
    /// May a group ask for a privileged container?
    pub allow_privileged: bool,
    /// SIGTERM to SIGKILL.
    pub stop_grace: Duration,
    /// First crash back-off; doubles per restart up to `restart_backoff_max`.
    pub restart_backoff: Duration,
    pub restart_backoff_max: Duration,
    /// Registries spoken to over plain HTTP (besides loopback ones).
    pub insecure_registries: Vec<String>,
    /// The cgroup under which every group's cgroup goes (`/<parent>/<group>/<container>`).
    pub cgroup_parent: String,
    /// How gitRepo volumes are cloned (user, size and time limits).
    pub git: GitConfig,
}

impl Default for ContainerdConfig {
    fn default() -> Self {
        let logger = std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(|dir| dir.join("berth-logger")))
            .unwrap_or_else(|| PathBuf::from("/usr/local/bin/berth-logger"));
        Self {
            socket: PathBuf::from("/run/containerd/containerd.sock"),
            namespace: "berth".into(),
            snapshotter: "overlayfs".into(),
            cni_bin_dir: network::default_cni_bin_dir(),
            bridge: "berth0".into(),
            subnet: "10.88.0.0/16".into(),
            publish_ports: false,
            dns_server: None,
            share_root: None,
            logger,
            log_max_bytes: 10 * 1024 * 1024,
            log_max_files: 1,
            allow_privileged: false,
            stop_grace: Duration::from_secs(10),
            restart_backoff: Duration::from_secs(10),
            restart_backoff_max: Duration::from_secs(300),
            insecure_registries: Vec::new(),
            cgroup_parent: "berth".into(),
            git: GitConfig::default(),
        }
    }
}

struct GroupHandle {
    status: StatusHandle,
    tx: mpsc::UnboundedSender<Command>,
}

pub(crate) struct Inner {
    config: ContainerdConfig,
    dir: PathBuf,
    cd: Containerd,
    images: ImageService,
    network: Network,
    changes: Changes,
    groups: Mutex<HashMap<String, GroupHandle>>,
    /// The previous readings, for rates.
    sampler: sample::Sampler,
    /// The nameserver the apiserver advertised last ([`Runtime::set_advertised_dns`]).
    advertised_dns: Mutex<Option<IpAddr>>,
}

impl Inner {
    /// Berth's nameserver for a new group's resolv.conf: `--dns-server`, else the advertised one.
    fn dns_server(&self) -> Option<IpAddr> {
        self.config.dns_server.or(*self
            .advertised_dns
            .lock()
            .unwrap_or_else(PoisonError::into_inner))
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, GroupHandle>> {
        self.groups.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn group_dir(&self, group_id: &str) -> PathBuf {
        self.dir.join("groups").join(group_id)
    }

    fn log_dir(&self, group_id: &str, container: &str) -> PathBuf {
        logs::container_dir(&self.dir.join("logs"), group_id, container)
    }

    /// Where exec processes' FIFOs live, one directory each.
    fn exec_root(&self) -> PathBuf {
        self.dir.join("exec")
    }

    /// The `binary://` URI that makes containerd's shim run `berth-logger` for a task.
    fn stdio_uri(&self, log_dir: &Path) -> String {
        fn escape(s: &str) -> String {
            s.replace('%', "%25")
                .replace('&', "%26")
                .replace('=', "%3D")
                .replace(' ', "%20")
                .replace('+', "%2B")
                .replace('#', "%23")
        }
        format!(
            "binary://{}?--dir={}&--max-bytes={}&--max-files={}",
            self.config.logger.display(),
            escape(&log_dir.to_string_lossy()),
            self.config.log_max_bytes,
            self.config.log_max_files,
        )
    }

    /// Removes everything of a group from the node but its shares: containers, tasks, snapshots,
    /// network namespace and IP lease, volume mounts, cgroups, logs and state.
    async fn teardown(&self, group_id: &str) {
        let containers = self
            .cd
            .containers_labelled(LABEL_GROUP, Some(group_id))
            .await
            .unwrap_or_default();
        for container in containers {
            if let Err(status) = self.cd.destroy(&container.id).await {
                tracing::warn!(container = %container.id, %status, "cannot delete a container");
            }
        }
        if let Err(error) = self.network.teardown(group_id).await {
            tracing::warn!(group = group_id, %error, "cannot tear the group's network down");
        }
        let dir = self.group_dir(group_id);
        if let Err(error) = volumes::cleanup(&dir.join("volumes")) {
            tracing::warn!(group = group_id, %error, "cannot remove the group's volumes");
        }
        remove_cgroups(&self.config.cgroup_parent, group_id);
        let _ = std::fs::remove_dir_all(self.dir.join("logs").join(group_id));
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn forget(&self, group_id: &str) {
        self.lock().remove(group_id);
        self.changes.mark(group_id);
    }
}

/// Removes `/<parent>/<group>` from every cgroup hierarchy (runc removes each container's own).
fn remove_cgroups(parent: &str, group_id: &str) {
    let Ok(mountinfo) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    for line in mountinfo.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(dash) = fields.iter().position(|f| *f == "-") else {
            continue;
        };
        let fstype = fields.get(dash + 1).copied().unwrap_or_default();
        if fstype != "cgroup" && fstype != "cgroup2" {
            continue;
        }
        let Some(mount_point) = fields.get(4) else {
            continue;
        };
        let group = Path::new(mount_point).join(parent).join(group_id);
        if let Ok(children) = std::fs::read_dir(&group) {
            for child in children.flatten() {
                if child.path().is_dir() {
                    let _ = std::fs::remove_dir(child.path());
                }
            }
        }
        let _ = std::fs::remove_dir(&group);
    }
}

/// The containerd [`Runtime`] of one node.
#[derive(Clone)]
pub struct ContainerdRuntime {
    inner: Arc<Inner>,
}

/// Why the runtime could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot reach containerd at {socket}: {source}")]
    Connect {
        socket: PathBuf,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("the group network: {0}")]
    Network(#[from] network::NetworkError),
    #[error("the cgroup parent {0:?} must be one plain name (letters, digits, '-', '_', '.')")]
    CgroupParent(String),
    #[error("git must not run as root: its uid and gid must not be 0")]
    GitUser,
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl ContainerdRuntime {
    /// Connects to containerd, prepares the network and adopts the groups a previous agent left in
    /// `state_dir`.
    pub async fn start(
        config: ContainerdConfig,
        state_dir: &Path,
        changes: Changes,
    ) -> Result<Self, StartError> {
        let plain = !config.cgroup_parent.is_empty()
            && volumes::is_plain_name(&config.cgroup_parent)
            && config
                .cgroup_parent
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !plain {
            return Err(StartError::CgroupParent(config.cgroup_parent.clone()));
        }
        if config.git.uid == 0 || config.git.gid == 0 {
            return Err(StartError::GitUser);
        }
        let dir = state_dir.join("runtime");
        for sub in ["groups", "logs", "network", "exec"] {
            let path = dir.join(sub);
            std::fs::create_dir_all(&path).map_err(|source| StartError::Io { path, source })?;
        }
        let channel = containerd_client::connect(&config.socket)
            .await
            .map_err(|source| StartError::Connect {
                socket: config.socket.clone(),
                source,
            })?;
        let network = Network::new(NetworkConfig {
            cni_bin_dir: config.cni_bin_dir.clone(),
            state_dir: dir.join("network"),
            bridge: config.bridge.clone(),
            subnet: config.subnet.clone(),
            publish_ports: config.publish_ports,
        })?;
        // Before adoption: the groups still running keep (or get back) their isolation and
        // anti-spoofing rules.
        network.restore().await?;
        let images = ImageService::new(channel.clone(), &config.namespace, &config.snapshotter)
            .with_insecure_registries(config.insecure_registries.clone());
        let inner = Arc::new(Inner {
            cd: Containerd::new(channel, &config.namespace, &config.snapshotter),
            config,
            dir,
            images,
            network,
            changes,
            groups: Mutex::new(HashMap::new()),
            sampler: sample::Sampler::default(),
            advertised_dns: Mutex::new(None),
        });
        exec::reap_leftovers(&inner.cd, &inner.exec_root());
        let runtime = Self { inner };
        runtime.adopt().await;
        Ok(runtime)
    }

    /// The image service (benchmarks and tests pull through it).
    pub fn images(&self) -> &ImageService {
        &self.inner.images
    }

    fn spawn_worker(
        &self,
        status: GroupStatus,
        adopt: Option<GroupAssignment>,
    ) -> mpsc::UnboundedSender<Command> {
        let (tx, rx) = mpsc::unbounded_channel();
        let handle = StatusHandle::new(Arc::clone(&self.inner), status);
        self.inner.lock().insert(
            handle.get().group_id,
            GroupHandle {
                status: handle.clone(),
                tx: tx.clone(),
            },
        );
        let worker = Worker::new(Arc::clone(&self.inner), handle, rx, tx.clone());
        tokio::spawn(worker.run(adopt));
        tx
    }

    /// Takes over the groups saved on disk and removes what nobody claims.
    async fn adopt(&self) {
        let groups_dir = self.inner.dir.join("groups");
        let mut known = Vec::new();
        for entry in std::fs::read_dir(&groups_dir)
            .into_iter()
            .flatten()
            .flatten()
        {
            let group_id = entry.file_name().to_string_lossy().to_string();
            let read = |name: &str| std::fs::read(entry.path().join(name)).ok();
            let assignment =
                read("assignment.pb").and_then(|b| GroupAssignment::decode(b.as_slice()).ok());
            let status = read("status.pb").and_then(|b| GroupStatus::decode(b.as_slice()).ok());
            match (assignment, status) {
                (Some(assignment), Some(status)) if assignment.group_id == group_id => {
                    tracing::info!(group = %group_id, "adopting a group");
                    known.push(group_id);
                    self.spawn_worker(status, Some(assignment));
                }
                _ => {
                    tracing::info!(group = %group_id, "removing an unknown group's leftovers");
                    self.inner.teardown(&group_id).await;
                }
            }
        }
        // Containers and sandboxes no saved group claims (e.g. the agent died before saving).
        if let Ok(containers) = self.inner.cd.containers_labelled(LABEL_GROUP, None).await {
            for container in containers {
                let owner = container
                    .labels
                    .get(LABEL_GROUP)
                    .cloned()
                    .unwrap_or_default();
                if !known.contains(&owner) {
                    let _ = self.inner.cd.destroy(&container.id).await;
                }
            }
        }
        for sandbox in self.inner.network.sandboxes() {
            if !known.contains(&sandbox) {
                let _ = self.inner.network.teardown(&sandbox).await;
            }
        }
    }

    fn send(&self, group_id: &str, command: Command) -> bool {
        match self.inner.lock().get(group_id) {
            Some(handle) => handle.tx.send(command).is_ok(),
            None => false,
        }
    }
}

impl Runtime for ContainerdRuntime {
    fn start<'a>(
        &'a self,
        assignment: &'a GroupAssignment,
    ) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async move {
            if !self.send(&assignment.group_id, Command::Start(assignment.clone())) {
                let status = GroupStatus {
                    group_id: assignment.group_id.clone(),
                    generation: assignment.generation,
                    placement: assignment.placement,
                    phase: berth_proto::node::GroupPhase::Pending as i32,
                    ..Default::default()
                };
                let tx = self.spawn_worker(status, None);
                let _ = tx.send(Command::Start(assignment.clone()));
            }
            Ok(())
        })
    }

    fn stop<'a>(
        &'a self,
        assignment: &'a GroupAssignment,
    ) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async move {
            if !self.send(&assignment.group_id, Command::Stop(assignment.clone())) {
                let status = GroupStatus {
                    group_id: assignment.group_id.clone(),
                    generation: assignment.generation,
                    placement: assignment.placement,
                    ..Default::default()
                };
                let tx = self.spawn_worker(status, None);
                let _ = tx.send(Command::Stop(assignment.clone()));
            }
            Ok(())
        })
    }

    fn remove<'a>(&'a self, group_id: &'a str) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async move {
            self.send(group_id, Command::Remove);
            Ok(())
        })
    }

    fn status(&self, group_id: &str) -> Option<GroupStatus> {
        self.inner.lock().get(group_id).map(|h| h.status.get())
    }

    fn groups(&self) -> Vec<GroupStatus> {
        self.inner.lock().values().map(|h| h.status.get()).collect()
    }

    fn record_event(&self, group_id: &str, kind: &str, name: &str, message: String) {
        let handle = self.inner.lock().get(group_id).map(|h| h.status.clone());
        if let Some(handle) = handle {
            handle.event(None, kind, name, message);
        }
    }

    fn set_advertised_dns(&self, server: Option<IpAddr>) {
        *self
            .inner
            .advertised_dns
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = server;
    }

    fn log_dir(&self, group_id: &str, container: &str) -> Option<PathBuf> {
        let status = self.status(group_id)?;
        let known = status.containers.iter().any(|c| c.name == container);
        known.then(|| self.inner.log_dir(group_id, container))
    }

    fn exec<'a>(&'a self, start: &'a ExecStart) -> BoxFuture<'a, Result<ExecProcess, ExecError>> {
        Box::pin(async move {
            let not_found = || ExecError::NotFound {
                group_id: start.group_id.clone(),
                container: start.container.clone(),
            };
            let status = self.status(&start.group_id).ok_or_else(not_found)?;
            let target = status
                .containers
                .iter()
                .find(|c| c.name == start.container)
                .ok_or_else(not_found)?;
            let running = target
                .current
                .as_ref()
                .is_some_and(|run| run.state == ContainerState::Running as i32);
            if !running {
                return Err(ExecError::NotRunning {
                    container: start.container.clone(),
                });
            }
            // Init and app containers are numbered apart, in the order the status lists them.
            let index = status
                .containers
                .iter()
                .filter(|c| c.init == target.init)
                .position(|c| c.name == start.container)
                .ok_or_else(not_found)?;
            let id = group::container_id(&start.group_id, target.init, index);
            let (cd, root, start) = (self.inner.cd.clone(), self.inner.exec_root(), start.clone());
            // On a task of its own: should the caller go away mid-start, the process still gets
            // started and then dropped, which kills it, rather than running with nobody to read it.
            tokio::spawn(async move { exec::start(&cd, &root, &id, &start).await })
                .await
                .map_err(|_| ExecError::Interrupted)?
        })
    }

    fn sample(&self) -> BoxFuture<'_, Vec<berth_proto::node::GroupSample>> {
        let inner = Arc::clone(&self.inner);
        Box::pin(async move {
            // Files of /sys and /proc: off the async workers.
            tokio::task::spawn_blocking(move || {
                let statuses: Vec<GroupStatus> =
                    inner.lock().values().map(|h| h.status.get()).collect();
                inner.sampler.sample(&inner.config.cgroup_parent, &statuses)
            })
            .await
            .unwrap_or_default()
        })
    }
}
