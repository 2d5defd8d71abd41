//! Real nodes: a containerd of the test's own (own root, state and socket), a local OCI registry
//! seeded with the busybox image, and the real `berth-node-agent` binary with the containerd runtime,
//! its own bridge, subnet and cgroup parent, so tests run side by side. Everything is stopped and
//! removed when the [`RealNode`] is dropped.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use berth_node_agent::testing::{Containerd, Registry, push_busybox};
use containerd_client::services::v1::containers_client::ContainersClient;
use containerd_client::services::v1::snapshots::ListSnapshotsRequest;
use containerd_client::services::v1::snapshots::snapshots_client::SnapshotsClient;
use containerd_client::services::v1::tasks_client::TasksClient;
use containerd_client::services::v1::{GetRequest, ListContainersRequest, ListTasksRequest};
use serde_json::{Value, json};
use tonic::Request;

use crate::harness::Cluster;
pub use crate::process::ApiserverProcess;

static NEXT: AtomicU32 = AtomicU32::new(0);

/// The workspace's `target/debug` (or wherever this test binary's siblings are).
/// A bridge name and a `/24` subnet no other node of this test process (nor, likely, of another)
/// uses; `n` counts the nodes (and networks) made so far.
fn network(n: u32) -> (String, String) {
    let pid = std::process::id();
    let bridge = format!("be{}x{n}", pid % 100_000);
    let subnet = format!(
        "10.{}.{}.0/24",
        100 + (pid % 100),
        (pid / 100 + n * 7) % 250
    );
    (bridge, subnet)
}

/// A network for a node made later with [`RealOptions::network`] (so a test can set up the bridge
/// first, e.g. a DNS server on its gateway address).
pub fn fresh_network() -> (String, String) {
    network(NEXT.fetch_add(1, Ordering::Relaxed))
}

pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let deps = exe.parent().expect("deps dir");
    deps.parent().expect("target profile dir").to_path_buf()
}

/// Options of a real node.
#[derive(Clone, Default)]
pub struct RealOptions {
    /// Basic auth on the registry.
    pub registry_auth: Option<(String, String)>,
    /// Extra environment of the agent process.
    pub agent_env: Vec<(String, String)>,
    /// What the node offers, cores and GiB [default: 2 and 4].
    pub capacity: Option<(f64, f64)>,
    /// The groups' bridge and subnet (`/24`) [default: ones of the node's own, from the test's pid].
    pub network: Option<(String, String)>,
}

pub struct RealNode {
    pub name: String,
    pub containerd: Containerd,
    pub registry: Registry,
    /// `127.0.0.1:<port>/busybox:latest` in the node's registry.
    pub image: String,
    pub state_dir: PathBuf,
    pub share_root: PathBuf,
    pub namespace: String,
    pub cgroup_parent: String,
    pub bridge: String,
    pub subnet: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
    agent: Option<tokio::process::Child>,
    // Last: removed after everything above stopped.
    dir: tempfile::TempDir,
}

impl Drop for RealNode {
    fn drop(&mut self) {
        if let Some(agent) = self.agent.as_mut() {
            let _ = agent.start_kill();
        }
        // Mounts under the node's directory, the CNI rules of groups still running, the bridge.
        berth_node_agent::testing::remove_node_leftovers(
            self.dir.path(),
            &self.subnet,
            &self.bridge,
        );
    }
}

impl RealNode {
    /// Starts containerd, a registry with the busybox image, and an agent joined to `cluster` as
    /// `name` (2 CPU, 4 GiB), and waits until the node is Ready.
    pub async fn start(cluster: &Cluster, name: &str, options: RealOptions) -> Self {
        let token = cluster.join_token(1).await;
        let node = Self::join(&cluster.node_url(), &token, name, options).await;
        cluster.wait_node(name, "Ready").await;
        node
    }

    /// Like [`RealNode::start`], for an apiserver known only by its node URL and a join token (one
    /// running as a process of its own); does not wait for the node to be Ready.
    pub async fn join(node_url: &str, token: &str, name: &str, options: RealOptions) -> Self {
        Self::join_servers(&[node_url], token, name, options).await
    }

    /// Like [`RealNode::join`], for an agent given several servers (`--server` each, in this
    /// order): the replicas of one control plane.
    pub async fn join_servers(
        servers: &[&str],
        token: &str,
        name: &str,
        options: RealOptions,
    ) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("bt")
            .tempdir_in("/tmp")
            .expect("temp dir");
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let containerd = Containerd::start(&dir.path().join("cd"))
            .await
            .expect("containerd starts");
        let auth = options
            .registry_auth
            .as_ref()
            .map(|(u, p)| (u.as_str(), p.as_str()));
        let registry = Registry::start(&dir.path().join("reg"), auth)
            .await
            .expect("registry starts");
        push_busybox(&registry, "busybox:latest", auth)
            .await
            .expect("image pushed");
        let image = format!("{}/busybox:latest", registry.addr);
        let state_dir = dir.path().join("agent");
        let share_root = dir.path().join("shares");
        let (bridge, subnet) = options.network.clone().unwrap_or_else(|| network(n));
        let namespace = format!("berth-{n}");
        let cgroup_parent = format!("berth-test-{pid}-{n}");
        let (cpu, memory) = options.capacity.unwrap_or((2.0, 4.0));
        let mut args: Vec<String> = servers
            .iter()
            .flat_map(|server| ["--server".to_owned(), (*server).to_owned()])
            .collect();
        args.extend(
            [
                "--state-dir",
                &state_dir.to_string_lossy(),
                "--name",
                name,
                "--cpu",
                &cpu.to_string(),
                "--memory",
                &memory.to_string(),
                "--runtime",
                "containerd",
                "--containerd",
                &containerd.socket.to_string_lossy(),
                "--containerd-namespace",
                &namespace,
                "--bridge",
                &bridge,
                "--subnet",
                &subnet,
                "--cgroup-parent",
                &cgroup_parent,
                "--share-root",
                &share_root.to_string_lossy(),
                "--logger",
                &bin_dir().join("berth-logger").to_string_lossy(),
                "--agent-listen",
                "127.0.0.1:0",
                "--stop-grace-secs",
                "2",
                "--restart-backoff-ms",
                "300",
                "--join-token",
                token,
            ]
            .iter()
            .map(|s| s.to_string()),
        );
        let mut node = Self {
            name: name.to_owned(),
            containerd,
            registry,
            image,
            state_dir,
            share_root,
            namespace,
            cgroup_parent,
            bridge,
            subnet,
            args,
            env: options.agent_env.clone(),
            agent: None,
            dir,
        };
        node.start_agent();
        node
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Starts the agent process (again), its log appended to `agent.log`.
    pub fn start_agent(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("agent.log"))
            .expect("agent log");
        let child = tokio::process::Command::new(bin_dir().join("berth-node-agent"))
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("RUST_LOG", "info,berth_node_agent=debug")
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("berth-node-agent runs (cargo build --workspace first)");
        self.agent = Some(child);
    }

    /// Kills the agent with SIGKILL and waits for it to be gone.
    pub async fn kill_agent(&mut self) {
        if let Some(mut agent) = self.agent.take() {
            let _ = agent.start_kill();
            let _ = agent.wait().await;
        }
    }

    /// Kills the node as a machine dies: the agent, containerd, every shim it started and every
    /// process of their containers, all with SIGKILL at once, nothing told, and its mounts go (as at
    /// a reboot). What is on disk stays (containerd's root and state, the agent's state dir, the
    /// group's netns files), as on a machine's disk; [`RealNode::boot`] starts it again on it. The registry is not the machine's:
    /// it stays up, so other nodes still pull [`RealNode::image`] from it.
    pub async fn kill_machine(&mut self) {
        let containerd_config = self.dir.path().join("cd").join("config.toml");
        let config = containerd_config.to_string_lossy().into_owned();
        let socket = self.containerd.socket.to_string_lossy().into_owned();
        let table = processes();
        let mut doomed: Vec<u32> = table
            .iter()
            .filter(|p| {
                (p.cmdline.contains("containerd-shim") && p.cmdline.contains(&socket))
                    || (p.cmdline.starts_with("containerd") && p.cmdline.contains(&config))
            })
            .map(|p| p.pid)
            .collect();
        // The containers' processes are the shims' children (and theirs).
        let mut i = 0;
        while i < doomed.len() {
            let parent = doomed[i];
            doomed.extend(
                table
                    .iter()
                    .filter(|p| p.ppid == parent && !doomed.contains(&p.pid))
                    .map(|p| p.pid)
                    .collect::<Vec<_>>(),
            );
            i += 1;
        }
        self.kill_agent().await;
        if !doomed.is_empty() {
            let _ = std::process::Command::new("kill")
                .arg("-KILL")
                .args(doomed.iter().map(u32::to_string))
                .status();
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while doomed.iter().copied().any(alive) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // A machine that dies loses its mounts (netns bind mounts, container root filesystems);
        // files stay.
        let root = self.dir.path().to_string_lossy().into_owned();
        let mut points: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter_map(|line| line.split(' ').nth(4))
            .filter(|point| point.starts_with(&root))
            .map(str::to_owned)
            .collect();
        points.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for point in points {
            let _ = std::process::Command::new("umount")
                .args(["-l", &point])
                .status();
        }
    }

    /// Starts a killed machine again ([`RealNode::kill_machine`]): containerd on the same root and
    /// state (it cleans up the tasks whose shims died), then the agent on its state dir.
    pub async fn boot(&mut self) {
        self.containerd
            .restart()
            .await
            .expect("containerd starts again on its state");
        self.start_agent();
    }

    /// What is left on this node of the group with agent id `gid` (whose IP was `ip`): its
    /// containers and tasks in containerd, its runtime state, mounts, netns files and saved CNI
    /// results, its IPAM lease, cgroups and logs. Empty once the agent removed it all.
    pub async fn leftovers(&self, gid: &str, ip: &str) -> Vec<String> {
        let mut left = Vec::new();
        for (id, name) in self.containers().await {
            if id.contains(gid) {
                left.push(format!("container {id} ({name})"));
            }
        }
        for (id, pid) in self.tasks().await {
            if id.contains(gid) {
                left.push(format!("task {id} (pid {pid})"));
            }
        }
        if self.group_ids().iter().any(|g| g == gid) {
            left.push(format!("runtime state {gid}"));
        }
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        left.extend(
            node_mounts(&mountinfo, self.dir.path(), gid)
                .into_iter()
                .map(|l| format!("mount {l}")),
        );
        for path in walk(&self.state_dir.join("runtime/network")) {
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
            if path.to_string_lossy().contains(gid) {
                left.push(format!("network state {}", path.display()));
            } else if !ip.is_empty() && name.as_deref() == Some(ip) {
                left.push(format!("IPAM lease {}", path.display()));
            }
        }
        for controller in ["memory", "cpu", "pids"] {
            let dir = Path::new("/sys/fs/cgroup")
                .join(controller)
                .join(&self.cgroup_parent)
                .join(gid);
            if dir.exists() {
                left.push(format!("cgroup {}", dir.display()));
            }
        }
        if self.state_dir.join("runtime/logs").join(gid).exists() {
            left.push(format!("logs of {gid}"));
        }
        left
    }

    /// The agent's log so far (for assertion messages).
    pub fn agent_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("agent.log")).unwrap_or_default()
    }

    pub async fn channel(&self) -> tonic::transport::Channel {
        containerd_client::connect(&self.containerd.socket)
            .await
            .expect("containerd answers")
    }

    fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        request.metadata_mut().insert(
            "containerd-namespace",
            self.namespace.parse().expect("ascii"),
        );
        request
    }

    /// Containers in the node's containerd namespace: `(id, berth.container label)`.
    pub async fn containers(&self) -> Vec<(String, String)> {
        let mut client = ContainersClient::new(self.channel().await);
        let list = client
            .list(self.request(ListContainersRequest { filters: vec![] }))
            .await
            .expect("list containers")
            .into_inner();
        list.containers
            .into_iter()
            .map(|c| {
                let name = c.labels.get("berth.container").cloned().unwrap_or_default();
                (c.id, name)
            })
            .collect()
    }

    /// Ids of the tasks in the node's namespace.
    pub async fn tasks(&self) -> Vec<(String, u32)> {
        let mut client = TasksClient::new(self.channel().await);
        let list = client
            .list(self.request(ListTasksRequest {
                filter: String::new(),
            }))
            .await
            .expect("list tasks")
            .into_inner();
        list.tasks.into_iter().map(|t| (t.id, t.pid)).collect()
    }

    /// The pid of container `id`'s task.
    pub async fn task_pid(&self, id: &str) -> Option<u32> {
        let mut client = TasksClient::new(self.channel().await);
        let got = client
            .get(self.request(GetRequest {
                container_id: id.to_owned(),
                exec_id: String::new(),
            }))
            .await
            .ok()?;
        got.into_inner().process.map(|p| p.pid)
    }

    /// Whether container `id`'s task runs (false once it has exited, or is gone).
    pub async fn task_running(&self, id: &str) -> bool {
        let mut client = TasksClient::new(self.channel().await);
        let got = client
            .get(self.request(GetRequest {
                container_id: id.to_owned(),
                exec_id: String::new(),
            }))
            .await;
        got.ok()
            .and_then(|got| got.into_inner().process)
            .is_some_and(|p| p.status == containerd_client::types::v1::Status::Running as i32)
    }

    /// Snapshot keys in the node's namespace (image layers included).
    pub async fn snapshots(&self) -> Vec<String> {
        use tokio_stream::StreamExt as _;
        let mut client = SnapshotsClient::new(self.channel().await);
        let mut stream = client
            .list(self.request(ListSnapshotsRequest {
                snapshotter: "overlayfs".into(),
                filters: vec![],
            }))
            .await
            .expect("list snapshots")
            .into_inner();
        let mut out = Vec::new();
        while let Some(Ok(page)) = stream.next().await {
            out.extend(page.info.into_iter().map(|i| i.name));
        }
        out
    }

    /// The cgroup (v1 `controller` hierarchy) directory of a group's container `name`.
    pub fn cgroup_dir(&self, controller: &str, group_id: &str, name: &str) -> PathBuf {
        Path::new("/sys/fs/cgroup")
            .join(controller)
            .join(&self.cgroup_parent)
            .join(group_id)
            .join(name)
    }

    /// The group id (the agent's) of the only group on this node.
    pub fn group_ids(&self) -> Vec<String> {
        std::fs::read_dir(self.state_dir.join("runtime/groups"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().to_string())
            .collect()
    }
}

/// A group of containers `(name, command)` on `image`, with ACI's restart policy.
pub fn real_group(image: &str, policy: &str, containers: &[(&str, &[&str])]) -> Value {
    let containers: Vec<Value> = containers
        .iter()
        .map(|(name, command)| {
            json!({
                "name": name,
                "properties": {
                    "image": image,
                    "command": command,
                    "resources": {"requests": {"cpu": 0.5, "memoryInGB": 0.25}}
                }
            })
        })
        .collect();
    json!({
        "location": "local",
        "properties": {
            "osType": "Linux",
            "restartPolicy": policy,
            "containers": containers,
        }
    })
}

/// The container `name`'s instance view in a group body.
pub fn view<'a>(body: &'a Value, name: &str) -> &'a Value {
    body["properties"]["containers"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == name))
        .map_or(&Value::Null, |c| &c["properties"]["instanceView"])
}

pub fn state_of(body: &Value, name: &str) -> String {
    view(body, name)["currentState"]["state"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

pub fn exit_code_of(body: &Value, name: &str) -> Option<i64> {
    view(body, name)["currentState"]["exitCode"].as_i64()
}

/// Waits with a generous bound (tests must not fail because the machine is slow).
pub const SLOW: u64 = 120;

pub async fn settle() {
    tokio::time::sleep(Duration::from_millis(200)).await;
}

/// Waits (up to [`SLOW`]) until group `name` in `rg` answers GET and `check` holds; the agent's log
/// goes into the failure message.
pub async fn wait_group(
    api: &crate::harness::Api,
    node: &RealNode,
    rg: &str,
    name: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    wait_group_in(api, node, crate::harness::SUB, rg, name, check).await
}

/// [`wait_group`] for a group in subscription `sub`.
pub async fn wait_group_in(
    api: &crate::harness::Api,
    node: &RealNode,
    sub: &str,
    rg: &str,
    name: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(SLOW);
    loop {
        let (status, body) = api.get_group(sub, rg, name).await;
        if status == reqwest::StatusCode::OK && check(&body) {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "group {name} never reached the expected state: {body}\n--- agent log ---\n{}",
            node.agent_log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `GET /` over HTTP/1.0 from the host: the whole answer, or `None` if nothing answered within a
/// few seconds.
pub async fn http_get(addr: std::net::SocketAddr) -> Option<String> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let get = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
        stream.write_all(b"GET / HTTP/1.0\r\n\r\n").await.ok()?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.ok()?;
        Some(answer)
    };
    tokio::time::timeout(Duration::from_secs(5), get)
        .await
        .ok()
        .flatten()
}

/// Every file and directory under `dir`, deepest first.
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        }
        out.push(path);
    }
    out
}

/// One process of the host, from `/proc`.
struct Process {
    pid: u32,
    ppid: u32,
    /// Its arguments joined by spaces.
    cmdline: String,
}

fn processes() -> Vec<Process> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid …`; comm may hold spaces and parentheses.
        let Some(ppid) = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse().ok())
        else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline)
            .split('\0')
            .filter(|a| !a.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        out.push(Process { pid, ppid, cmdline });
    }
    out
}

/// Whether process `pid` still runs: its `/proc` entry is there with a command line (a zombie's
/// has none).
fn alive(pid: u32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmdline| !cmdline.is_empty())
}

/// The lines of `mountinfo` mounted under `root` (one node's dir) whose mount point names group
/// `gid`. The mount table is the host's: another node running the same group (same id) has mounts
/// of it too, and they are not this node's.
fn node_mounts<'a>(mountinfo: &'a str, root: &Path, gid: &str) -> Vec<&'a str> {
    mountinfo
        .lines()
        .filter(|line| {
            line.split(' ')
                .nth(4)
                .is_some_and(|point| Path::new(point).starts_with(root) && point.contains(gid))
        })
        .collect()
}

#[test]
fn a_nodes_mounts_are_those_under_its_own_dir() {
    let gid = "64d7789c-bd2c-4b2e-9796-3fc4ef2ea23c";
    let mountinfo = format!(
        "57 27 254:0 /tmp/btB/agent/runtime/network/netns /tmp/btB/agent/runtime/network/netns rw shared:7 - ext4 /dev/vda rw\n\
         68 57 0:4 net:[4026532465] /tmp/btB/agent/runtime/network/netns/{gid} rw shared:9 - nsfs nsfs rw\n\
         71 27 0:53 / /tmp/btB/cd/state/io.containerd.runtime.v2.task/berth-1/{gid}-c0/rootfs rw - overlay overlay rw\n\
         72 27 0:54 / /tmp/btA/cd/state/io.containerd.runtime.v2.task/berth-0/{gid}-c0/rootfs rw - overlay overlay rw\n"
    );
    assert!(node_mounts(&mountinfo, Path::new("/tmp/btA/agent"), gid).is_empty());
    assert_eq!(node_mounts(&mountinfo, Path::new("/tmp/btA"), gid).len(), 1);
    assert_eq!(node_mounts(&mountinfo, Path::new("/tmp/btB"), gid).len(), 2);
    assert!(node_mounts(&mountinfo, Path::new("/tmp/bt"), gid).is_empty());
}

/// Container `container`'s log through the API once it has printed `done`.
pub async fn log_until_done(
    api: &crate::harness::Api,
    node: &RealNode,
    (sub, rg, name): (&str, &str, &str),
    container: &str,
) -> String {
    let path = crate::harness::group_path(sub, rg, name).replace(
        "?api-version",
        &format!("/containers/{container}/logs?api-version"),
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(SLOW);
    loop {
        let (status, body) = api.call(reqwest::Method::GET, &path, None).await;
        let content = body["content"].as_str().unwrap_or_default();
        if status == reqwest::StatusCode::OK && content.contains("done\n") {
            return content.to_owned();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{status} {body}\n--- agent log ---\n{}",
            node.agent_log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The Python venv `scripts/setup` makes (the SDKs, prometheus_client, selenium, websocket-client).
pub fn python() -> PathBuf {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/python/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/setup",
        python.display()
    );
    python
}
