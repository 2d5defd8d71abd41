//! The containerd runtime for real, below the API: a containerd of the test's own, a local registry
//! with the busybox image, and assignments handed straight to [`ContainerdRuntime`], so what the node
//! itself refuses or confines is proven whatever the apiserver let through. Needs root, containerd,
//! runc and the CNI plugins (`scripts/setup`), and `berth-logger` and `berth-node-agent` built next to
//! the test binary's directory (`cargo build -p berth-node-agent`, which `scripts/test` does first).

mod git;
mod halt;
mod probed;
mod sample;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use berth_proto::node::{
    Container, DesiredPhase, GroupAssignment, GroupPhase, GroupSpec, GroupStatus,
};

use super::{ContainerdConfig, ContainerdRuntime};
use crate::runtime::{Changes, Runtime as _};
use crate::testing::{Containerd, Registry, push_busybox};

/// Generous: two cores shared with a compiler.
const PATIENCE: Duration = Duration::from_secs(180);

static NEXT: AtomicU32 = AtomicU32::new(0);

/// `target/debug`, where `berth-logger` and `berth-node-agent` are built.
pub(super) fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    exe.parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps")
        .to_path_buf()
}

/// One node's runtime and what it runs on, removed when dropped (also when the test fails).
pub(super) struct TestNode {
    pub(super) runtime: ContainerdRuntime,
    /// `127.0.0.1:<port>/busybox:latest`.
    pub(super) image: String,
    /// The agent's state directory.
    pub(super) state: PathBuf,
    bridge: String,
    subnet: String,
    cgroup_parent: String,
    containerd: Option<Containerd>,
    registry: Option<Registry>,
    dir: tempfile::TempDir,
}

impl TestNode {
    /// A runtime with the test defaults, changed by `adjust`.
    pub(super) async fn start(adjust: impl FnOnce(&mut ContainerdConfig)) -> TestNode {
        Self::start_with_path(None, adjust).await
    }

    /// As [`TestNode::start`], with containerd (and its shims) finding programs in `path_first`
    /// first, e.g. a `runc` that wraps the real one.
    pub(super) async fn start_with_path(
        path_first: Option<&Path>,
        adjust: impl FnOnce(&mut ContainerdConfig),
    ) -> TestNode {
        let logger = bin_dir().join("berth-logger");
        assert!(
            logger.is_file(),
            "{} is missing: run `cargo build -p berth-node-agent` first",
            logger.display()
        );
        let dir = tempfile::Builder::new()
            .prefix("bg")
            .tempdir_in("/tmp")
            .expect("temp dir");
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let containerd = Containerd::start_with_path(&dir.path().join("c"), path_first)
            .await
            .expect("containerd starts");
        let registry = Registry::start(&dir.path().join("r"), None)
            .await
            .expect("registry starts");
        push_busybox(&registry, "busybox:latest", None)
            .await
            .expect("busybox pushed");
        let image = format!("{}/busybox:latest", registry.addr);
        let bridge = format!("bg{}{n}", pid % 10_000);
        let subnet = format!("10.{}.{}.0/24", 240 + n % 10, pid % 250);
        let cgroup_parent = format!("berth-rt-test-{pid}-{n}");
        let mut config = ContainerdConfig {
            socket: containerd.socket.clone(),
            // runc keeps state per namespace for the whole host: ours alone.
            namespace: format!("berth-rt-{pid}-{n}"),
            bridge: bridge.clone(),
            subnet: subnet.clone(),
            logger,
            cgroup_parent: cgroup_parent.clone(),
            stop_grace: Duration::from_secs(2),
            ..ContainerdConfig::default()
        };
        // The test binary is not the agent: git is confined by the agent's binary.
        config.git.confiner = bin_dir().join("berth-node-agent");
        adjust(&mut config);
        let state = dir.path().join("a");
        let runtime = ContainerdRuntime::start(config, &state, Changes::default())
            .await
            .expect("the runtime starts");
        TestNode {
            runtime,
            image,
            state,
            bridge,
            subnet,
            cgroup_parent,
            containerd: Some(containerd),
            registry: Some(registry),
            dir,
        }
    }

    /// The test's own directory (for repositories, listeners' files, …).
    pub(super) fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Where group `group`'s volumes live on the node.
    pub(super) fn volumes_dir(&self, group: &str) -> PathBuf {
        self.state
            .join("runtime")
            .join("groups")
            .join(group)
            .join("volumes")
    }

    /// Group `name` with one busybox container `app` running `command`, restart policy Never.
    pub(super) fn group(&self, name: &str, command: &[&str]) -> GroupSpec {
        GroupSpec {
            name: name.into(),
            restart_policy: "Never".into(),
            containers: vec![Container {
                name: "app".into(),
                image: self.image.clone(),
                command: command.iter().map(|s| (*s).to_owned()).collect(),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    /// Assigns `spec` as group `spec.name` at `placement` (generation 1, to run).
    pub(super) async fn assign(&self, spec: GroupSpec, placement: u64) {
        let assignment = GroupAssignment {
            placement,
            group_id: spec.name.clone(),
            generation: 1,
            phase: DesiredPhase::Running as i32,
            spec: Some(spec),
        };
        self.runtime
            .start(&assignment)
            .await
            .expect("the runtime takes the assignment");
    }

    /// Waits until group `group_id`'s status satisfies `done` (`what` names it in the failure).
    pub(super) async fn wait_for(
        &self,
        group_id: &str,
        what: &str,
        done: impl Fn(&GroupStatus) -> bool,
    ) -> GroupStatus {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let status = self.runtime.status(group_id);
            if let Some(status) = &status
                && done(status)
            {
                return status.clone();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "group {group_id} never {what}: {status:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Assigns `spec` at `placement` and waits until it runs with an IP.
    pub(super) async fn run(&self, spec: GroupSpec, placement: u64) -> GroupStatus {
        let group_id = spec.name.clone();
        self.assign(spec, placement).await;
        self.wait_for(&group_id, "ran", |s| {
            s.phase() == GroupPhase::Running && !s.ip.is_empty()
        })
        .await
    }

    /// Assigns `spec` as group `spec.name` and waits until it has succeeded or failed.
    pub(super) async fn run_to_end(&self, spec: GroupSpec) -> GroupStatus {
        let group_id = spec.name.clone();
        self.assign(spec, 1).await;
        self.wait_for(&group_id, "ended", |s| {
            matches!(s.phase(), GroupPhase::Succeeded | GroupPhase::Failed)
        })
        .await
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        // containerd first (it kills what still runs and unmounts root filesystems), then mounts,
        // CNI rules and the bridge, then the cgroup parent.
        drop(self.containerd.take());
        drop(self.registry.take());
        crate::testing::remove_node_leftovers(self.dir.path(), &self.subnet, &self.bridge);
        let hierarchies = std::fs::read_dir("/sys/fs/cgroup").into_iter().flatten();
        for hierarchy in hierarchies
            .flatten()
            .map(|e| e.path())
            .chain([PathBuf::from("/sys/fs/cgroup")])
        {
            let parent = hierarchy.join(&self.cgroup_parent);
            for group in std::fs::read_dir(&parent).into_iter().flatten().flatten() {
                let _ = std::fs::remove_dir(group.path());
            }
            let _ = std::fs::remove_dir(&parent);
        }
    }
}

/// Every event message of `status` (the group's and its containers'), one per line.
pub(super) fn events(status: &GroupStatus) -> String {
    status
        .events
        .iter()
        .chain(status.containers.iter().flat_map(|c| c.events.iter()))
        .map(|e| format!("{}: {}", e.name, e.message))
        .collect::<Vec<_>>()
        .join("\n")
}
