//! Group networking: one network namespace per container group, wired to a per-agent Linux bridge by CNI.
//!
//! # How the pieces fit
//! - [`Network::new`] validates a [`NetworkConfig`], checks the CNI plugins are installed, makes
//!   `state_dir/netns` a shared mount point (as `ip netns` does with `/run/netns`) and writes Berth's own
//!   conflist to `state_dir/cni/berth.conflist`: `bridge` (gateway, IP masquerade, hairpin, `host-local`
//!   IPAM) then `portmap` then `firewall` (whose admin chain is Berth's isolation chain, see
//!   [`isolation`]). The network is named `berth-<bridge>`, so iptables chains and leases of several
//!   agents on one host never collide.
//! - [`Network::restore`] (at agent start) ensures the node's isolation chains and anti-spoofing table
//!   and the rules of every sandbox still there, as saved.
//! - [`Network::setup`] pins a fresh network namespace on `state_dir/netns/<id>` (a bind mount of a
//!   namespace made by a short-lived thread), runs the `loopback` plugin on `lo`, then the chain on `eth0`
//!   (each plugin gets the previous plugin's result as `prevResult`), sets the group's isolation rules
//!   (only its exposed `ports` are reached from outside it) and anti-spoofing rules (its veth admits
//!   only frames from its own MAC and IP, see [`spoofing`]), and saves the final CNI result in
//!   `state_dir/sandboxes/<id>.json`. If anything fails, what was done is undone.
//! - [`Network::teardown`] removes the group's isolation and anti-spoofing rules, runs CNI `DEL`
//!   through the chain in reverse with the saved result, then `loopback`, then unmounts and deletes
//!   the namespace file. The saved result is dropped only when every `DEL` succeeded, so a failed
//!   teardown can be retried (and is found by [`Network::sandboxes`]).
//!
//! Nothing here uses libcni: the plugins are executed directly (CNI 1.0.0 conflist semantics) and the
//! saved result plays the part of libcni's result cache. `host-local` keeps its leases in
//! `state_dir/cni/ipam/<network>/<ip>`.
//!
//! # What the agent must call
//! - Before creating a group's containers: `setup(group_id, ports)`, then put
//!   `{"type": "network", "path": sandbox.netns}` in every container's `linux.namespaces`.
//! - On delete: stop and delete every task and container of the group first, then
//!   `teardown(group_id)`; on error, retry later (it is idempotent).
//! - After a restart: `restore()`, `existing(group_id)` for groups it still runs; `teardown` for every
//!   id in `sandboxes()` that belongs to no group (state left by a crash).
//! - To remove the node entirely (and in tests): [`Network::purge`], which also deletes the bridge,
//!   the node's isolation chains and its anti-spoofing table.
//!
//! # State on disk (under `state_dir`)
//! - `cni/berth.conflist`: the chain, rewritten by every [`Network::new`].
//! - `cni/ipam/<network>/`: `host-local`'s leases (`<ip>` files naming their sandbox).
//! - `netns/<id>`: the pinned namespaces (the directory itself is a shared bind mount).
//! - `sandboxes/<id>.json`: the ports and final CNI result of each sandbox.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::fs::{self, OpenOptions};
use std::io;
use std::net::IpAddr;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;
use nix::sys::statfs;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt as _;
use tokio::sync::OwnedMutexGuard;
use tracing::{debug, warn};

use self::isolation::{Family, Isolation, IsolationError};
use self::spoofing::{Spoofing, SpoofingError};

pub mod isolation;
pub mod spoofing;

/// The CNI spec version of Berth's conflist and of every plugin invocation.
const CNI_VERSION: &str = "1.0.0";
/// How long one plugin invocation may take before it is killed.
const PLUGIN_TIMEOUT: Duration = Duration::from_secs(30);
/// The sandbox-side interface the chain creates.
const IFNAME: &str = "eth0";
/// Plugins that must be present in the CNI bin directory.
const REQUIRED_PLUGINS: [&str; 5] = ["loopback", "bridge", "host-local", "portmap", "firewall"];
/// Where CNI plugins are usually installed: Debian's package, then the upstream release layout.
const CNI_BIN_DIRS: [&str; 2] = ["/usr/lib/cni", "/opt/cni/bin"];
/// Linux interface names are at most 15 bytes.
const MAX_BRIDGE_LEN: usize = 15;
/// Sandbox ids become file names and CNI container ids.
const MAX_ID_LEN: usize = 64;
/// What is kept of a crashed plugin's output in an error.
const MAX_OUTPUT_IN_ERROR: usize = 2000;
/// Directories a plugin may need to find `iptables`, added after the agent's own `PATH`.
const SBIN_PATH: &str = "/usr/local/sbin:/usr/sbin:/sbin:/usr/local/bin:/usr/bin:/bin";

/// Where the CNI plugins live: `/usr/lib/cni` if it has `bridge`, else `/opt/cni/bin` if that has it,
/// else `/usr/lib/cni`.
pub fn default_cni_bin_dir() -> PathBuf {
    CNI_BIN_DIRS
        .iter()
        .map(PathBuf::from)
        .find(|dir| dir.join("bridge").is_file())
        .unwrap_or_else(|| PathBuf::from(CNI_BIN_DIRS[0]))
}

/// How an agent's group networking is set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkConfig {
    /// Where the CNI plugin binaries are (see [`default_cni_bin_dir`]).
    pub cni_bin_dir: PathBuf,
    /// The agent's network state: conflist, leases, namespaces, saved results. Must be absolute.
    pub state_dir: PathBuf,
    /// The Linux bridge the sandboxes are attached to (at most 15 characters), one per agent.
    pub bridge: String,
    /// The sandboxes' subnet in CIDR notation; the bridge gets its first address.
    pub subnet: String,
    /// Whether a sandbox's ports are published on every host address (host port = container port).
    pub publish_ports: bool,
}

impl NetworkConfig {
    /// The defaults (bridge `berth0`, subnet `10.88.0.0/16`, no published ports) with state in `state_dir`.
    pub fn new(state_dir: impl Into<PathBuf>) -> NetworkConfig {
        NetworkConfig {
            cni_bin_dir: default_cni_bin_dir(),
            state_dir: state_dir.into(),
            bridge: "berth0".to_string(),
            subnet: "10.88.0.0/16".to_string(),
            publish_ports: false,
        }
    }
}

/// A group's network: its pinned namespace and the address CNI gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sandbox {
    /// The sandbox (group) id.
    pub id: String,
    /// The namespace file to put in the OCI spec's `linux.namespaces` as the `network` path.
    pub netns: PathBuf,
    /// The sandbox's address on the bridge.
    pub ip: IpAddr,
    /// The bridge's address, the sandbox's default gateway.
    pub gateway: Option<IpAddr>,
}

/// A transport protocol of a published port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl Protocol {
    /// The name CNI's `portMappings` use.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

/// A port a group exposes; published on the host under the same number when the config says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PortSpec {
    /// The port number (not 0).
    pub port: u16,
    /// Its protocol.
    pub protocol: Protocol,
}

/// A CNI operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CniCommand {
    /// Attach a sandbox.
    Add,
    /// Detach a sandbox.
    Del,
}

impl fmt::Display for CniCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CniCommand::Add => "ADD",
            CniCommand::Del => "DEL",
        })
    }
}

/// Why group networking could not be set up or torn down.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    /// The bridge name is not a usable Linux interface name.
    #[error(
        "bridge name {name:?} is invalid: use 1 to 15 characters from letters, digits, '-', '_' and '.'"
    )]
    InvalidBridge {
        /// The name given.
        name: String,
    },
    /// The subnet is not a usable CIDR.
    #[error("subnet {subnet:?} is invalid: {reason}")]
    InvalidSubnet {
        /// The subnet given.
        subnet: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The state directory must be absolute: its paths are handed to plugins and runc.
    #[error("the network state directory {path} must be an absolute path")]
    RelativeStateDir {
        /// The path given.
        path: PathBuf,
    },
    /// A sandbox id that could escape the state directory or is not a valid CNI container id.
    #[error("sandbox id {id:?} is invalid: use 1 to 64 characters from a-z, 0-9 and '-'")]
    InvalidId {
        /// The id given.
        id: String,
    },
    /// Port 0 cannot be published.
    #[error("port 0 cannot be exposed")]
    InvalidPort,
    /// A CNI plugin is not installed where the config says.
    #[error(
        "CNI plugin {plugin:?} is not an executable file in {dir}: install containernetworking-plugins \
         or point cni_bin_dir at the directory that has them"
    )]
    PluginMissing {
        /// The plugin's name.
        plugin: String,
        /// The directory searched.
        dir: PathBuf,
    },
    /// A file or directory of the network state could not be handled.
    #[error("could not {action} {path}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A mount or namespace operation failed (the agent needs CAP_SYS_ADMIN, i.e. root).
    #[error("could not {action} {path}")]
    Mount {
        /// What was being done.
        action: &'static str,
        /// The mount point.
        path: PathBuf,
        /// The cause.
        #[source]
        source: Errno,
    },
    /// The thread that creates a namespace could not be started or died.
    #[error("the thread creating network namespace {path} could not run")]
    NetnsThread {
        /// The namespace being created.
        path: PathBuf,
    },
    /// A plugin could not be started or talked to.
    #[error("could not run CNI plugin {path}")]
    PluginSpawn {
        /// The plugin's binary.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A plugin took longer than allowed and was killed.
    #[error("CNI plugin {plugin:?} did not finish {command} within {} s", PLUGIN_TIMEOUT.as_secs())]
    PluginTimeout {
        /// The plugin's name.
        plugin: String,
        /// The operation.
        command: CniCommand,
    },
    /// A plugin reported a CNI error.
    #[error("CNI plugin {plugin:?} failed {command} (code {code}): {msg}{}", details_suffix(.details))]
    Plugin {
        /// The plugin's name.
        plugin: String,
        /// The operation.
        command: CniCommand,
        /// The CNI error code (1-99 are defined by the spec, 100+ by the plugin).
        code: u32,
        /// The plugin's message.
        msg: String,
        /// The plugin's details, possibly empty.
        details: String,
    },
    /// A plugin failed without a CNI error on stdout (crashed, killed, or not a CNI plugin).
    #[error("CNI plugin {plugin:?} failed {command} ({status}): {output}")]
    PluginCrashed {
        /// The plugin's name.
        plugin: String,
        /// The operation.
        command: CniCommand,
        /// How it exited.
        status: String,
        /// The start of its stderr (or stdout).
        output: String,
    },
    /// A plugin succeeded but its result is not usable.
    #[error("CNI plugin {plugin:?} returned an unusable result: {reason}")]
    BadResult {
        /// The plugin's name.
        plugin: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The saved result could not be written.
    #[error("could not save the network result of sandbox {id}")]
    SaveResult {
        /// The sandbox.
        id: String,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// Some teardown steps failed; the others were done. Retrying `teardown` is safe.
    #[error("could not fully tear down sandbox {id}: {}", join_errors(.failures))]
    Teardown {
        /// The sandbox.
        id: String,
        /// Every step that failed.
        failures: Vec<NetworkError>,
    },
    /// The bridge could not be deleted.
    #[error("could not delete bridge {bridge}: {reason}")]
    BridgeDelete {
        /// The bridge.
        bridge: String,
        /// Why.
        reason: String,
    },
    /// An isolation rule could not be set or removed.
    #[error("could not apply the group isolation rules")]
    Isolation(#[from] IsolationError),
    /// An anti-spoofing rule could not be set or removed.
    #[error("could not apply the group anti-spoofing rules")]
    Spoofing(#[from] SpoofingError),
    /// Some steps of [`Network::purge`] failed; the others were done.
    #[error("could not fully remove the network: {}", join_errors(.failures))]
    Purge {
        /// Every step that failed.
        failures: Vec<NetworkError>,
    },
}

fn details_suffix(details: &str) -> String {
    if details.is_empty() {
        String::new()
    } else {
        format!(" ({details})")
    }
}

/// Errors with their causes, for variants that gather several.
fn join_errors(errors: &[NetworkError]) -> String {
    errors
        .iter()
        .map(|error| {
            let mut text = error.to_string();
            let mut source = std::error::Error::source(error);
            while let Some(cause) = source {
                text.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            text
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The groups' networking on one agent: see the module documentation.
pub struct Network {
    config: NetworkConfig,
    /// The conflist's network name, `berth-<bridge>`.
    name: String,
    /// The conflist's plugins, in ADD order.
    plugins: Vec<Value>,
    isolation: Isolation,
    spoofing: Spoofing,
    locks: IdLocks,
}

impl fmt::Debug for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Network")
            .field("config", &self.config)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// What is saved per sandbox: enough to answer [`Network::existing`] and to run `DEL` like libcni.
#[derive(Debug, Serialize, Deserialize)]
struct SandboxRecord {
    id: String,
    netns: PathBuf,
    ip: IpAddr,
    gateway: Option<IpAddr>,
    ports: Vec<PortSpec>,
    /// The chain's final CNI result, the `prevResult` of every `DEL`.
    result: Value,
}

impl SandboxRecord {
    fn sandbox(&self) -> Sandbox {
        Sandbox {
            id: self.id.clone(),
            netns: self.netns.clone(),
            ip: self.ip,
            gateway: self.gateway,
        }
    }
}

impl Network {
    /// Validates the config and writes Berth's CNI conflist (`state_dir/cni/berth.conflist`): `bridge`
    /// (isGateway, ipMasq, hairpinMode, `host-local` IPAM with its dataDir under `state_dir`, a default
    /// route) then `portmap` (capability `portMappings`) then `firewall`; `loopback` is run separately.
    /// Nothing is written if the config is invalid or a plugin is missing.
    pub fn new(config: NetworkConfig) -> Result<Network, NetworkError> {
        validate_bridge(&config.bridge)?;
        let subnet = Subnet::parse(&config.subnet)?;
        if !config.state_dir.is_absolute() {
            return Err(NetworkError::RelativeStateDir {
                path: config.state_dir.clone(),
            });
        }
        check_plugins(&config.cni_bin_dir)?;

        let conflist = build_conflist(&config, subnet);
        let network = Network {
            name: network_name(&config.bridge),
            plugins: conflist["plugins"].as_array().cloned().unwrap_or_default(),
            isolation: Isolation::new(
                Family::of(subnet.addr),
                &config.bridge,
                &subnet.to_string(),
                plugin_path_env(),
            ),
            spoofing: Spoofing::new(&config.bridge, plugin_path_env()),
            config,
            locks: IdLocks::default(),
        };
        for dir in [
            network.cni_dir(),
            network.netns_dir(),
            network.records_dir(),
        ] {
            create_dir(&dir)?;
        }
        make_shared_mount(&network.netns_dir())?;
        let conflist_path = network.cni_dir().join("berth.conflist");
        let text = serde_json::to_vec_pretty(&conflist).unwrap_or_default();
        write_atomically(&conflist_path, &text)?;
        Ok(network)
    }

    /// The config this network was built with.
    pub fn config(&self) -> &NetworkConfig {
        &self.config
    }

    /// Creates the sandbox's network namespace (`state_dir/netns/<id>`), runs CNI ADD (`loopback` on
    /// `lo`, then the chain on `eth0`), lets connections from outside the sandbox reach `ports` and
    /// nothing else, and returns its address. `ports` are also published on the host when the config
    /// says so. Idempotent: an existing sandbox is returned as it is (its ports unchanged, its
    /// isolation rules ensured); leftovers of an interrupted setup are torn down first. On failure,
    /// what was done is undone.
    pub async fn setup(&self, id: &str, ports: &[PortSpec]) -> Result<Sandbox, NetworkError> {
        validate_id(id)?;
        if ports.iter().any(|spec| spec.port == 0) {
            return Err(NetworkError::InvalidPort);
        }
        let ports: Vec<PortSpec> = ports
            .iter()
            .copied()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        self.isolation.ensure_node_once().await?;
        self.spoofing.ensure_node_once().await?;
        let _guard = self.locks.acquire(id).await;
        if let Some(record) = self.live_record(id) {
            self.ensure_rules(id, record.ip, &record.ports, &record.result)
                .await?;
            return Ok(record.sandbox());
        }
        if self.has_state(id) && !self.is_prepared(id) {
            debug!(
                sandbox = id,
                "tearing down the leftovers of an earlier setup"
            );
            self.teardown_locked(id).await?;
        }
        self.create(id, &ports).await
    }

    /// Creates the sandbox's network namespace without attaching it, so containers can be created in
    /// it while [`Network::setup`] (which attaches it, the slow part) runs. Returns its path.
    /// Idempotent; [`Network::teardown`] removes it like a full sandbox.
    pub async fn prepare(&self, id: &str) -> Result<PathBuf, NetworkError> {
        validate_id(id)?;
        let _guard = self.locks.acquire(id).await;
        let netns = self.netns_path(id);
        if self.existing(id).is_some() || self.is_prepared(id) {
            return Ok(netns);
        }
        if self.has_state(id) {
            self.teardown_locked(id).await?;
        }
        create_netns(&netns).await?;
        Ok(netns)
    }

    /// A live namespace without a saved result: made by [`Network::prepare`], not attached yet.
    fn is_prepared(&self, id: &str) -> bool {
        self.load_record(id).is_none() && netns_is_live(&self.netns_path(id))
    }

    /// The sandbox as set up earlier (also by a previous agent process), if its result is saved and
    /// its namespace is still mounted.
    pub fn existing(&self, id: &str) -> Option<Sandbox> {
        self.live_record(id).map(|record| record.sandbox())
    }

    fn live_record(&self, id: &str) -> Option<SandboxRecord> {
        validate_id(id).ok()?;
        let record = self.load_record(id)?;
        netns_is_live(&self.netns_path(id)).then_some(record)
    }

    /// Ensures the node's isolation chains and anti-spoofing table and the rules of every sandbox
    /// still set up, as saved: for an agent start, so that what a crash or an operator lost comes
    /// back. Idempotent.
    pub async fn restore(&self) -> Result<(), NetworkError> {
        self.isolation.ensure_node().await?;
        self.spoofing.ensure_node().await?;
        for id in self.sandboxes() {
            let _guard = self.locks.acquire(&id).await;
            if let Some(record) = self.live_record(&id) {
                self.ensure_rules(&id, record.ip, &record.ports, &record.result)
                    .await?;
            }
        }
        Ok(())
    }

    /// Ensures the isolation and anti-spoofing rules of sandbox `id` at `ip` exposing `ports`, whose
    /// chain's final CNI result is `result`.
    async fn ensure_rules(
        &self,
        id: &str,
        ip: IpAddr,
        ports: &[PortSpec],
        result: &Value,
    ) -> Result<(), NetworkError> {
        self.isolation.ensure_group(id, ip, ports).await?;
        let link = spoofing::link_of(result, &self.config.bridge, ip).map_err(|reason| {
            NetworkError::BadResult {
                plugin: "bridge".to_string(),
                reason,
            }
        })?;
        self.spoofing.ensure_group(id, &link).await?;
        Ok(())
    }

    /// Runs CNI DEL (the chain in reverse with the saved result, then `loopback`), unmounts and deletes
    /// the namespace file and drops the saved result. Idempotent and tolerant: a missing namespace,
    /// lease or result is fine, and every step is tried. If a DEL fails, the saved result is kept so
    /// that calling `teardown` again (or garbage collection through [`Network::sandboxes`]) finishes.
    pub async fn teardown(&self, id: &str) -> Result<(), NetworkError> {
        validate_id(id)?;
        let _guard = self.locks.acquire(id).await;
        self.teardown_locked(id).await
    }

    /// The ids of every sandbox with state on disk (a namespace file or a saved result), sorted.
    pub fn sandboxes(&self) -> Vec<String> {
        let namespaces = list_dir(&self.netns_dir())
            .into_iter()
            .filter(|name| validate_id(name).is_ok());
        let records = list_dir(&self.records_dir())
            .into_iter()
            .filter_map(|name| {
                let id = name.strip_suffix(".json")?;
                validate_id(id).is_ok().then(|| id.to_string())
            });
        namespaces
            .chain(records)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    }

    /// Tears down every sandbox, removes the node's isolation chains and anti-spoofing table, deletes
    /// the bridge and unmounts `state_dir/netns`: for removing a node and for tests. Not for a normal
    /// agent stop, which leaves the groups running. The iptables chains shared by every CNI user on
    /// the host (`CNI-FORWARD`, `CNI-HOSTPORT-*`) are left in place.
    pub async fn purge(&self) -> Result<(), NetworkError> {
        let mut failures = Vec::new();
        for id in self.sandboxes() {
            if let Err(error) = self.teardown(&id).await {
                failures.push(error);
            }
        }
        if let Err(error) = self.isolation.remove_node().await {
            failures.push(error.into());
        }
        if let Err(error) = self.spoofing.remove_node().await {
            failures.push(error.into());
        }
        if let Err(error) = delete_bridge(&self.config.bridge).await {
            failures.push(error);
        }
        if let Err(error) = unmount(&self.netns_dir()) {
            failures.push(error);
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(NetworkError::Purge { failures })
        }
    }

    fn cni_dir(&self) -> PathBuf {
        self.config.state_dir.join("cni")
    }

    fn netns_dir(&self) -> PathBuf {
        self.config.state_dir.join("netns")
    }

    fn records_dir(&self) -> PathBuf {
        self.config.state_dir.join("sandboxes")
    }

    pub(crate) fn netns_path(&self, id: &str) -> PathBuf {
        self.netns_dir().join(id)
    }

    fn record_path(&self, id: &str) -> PathBuf {
        self.records_dir().join(format!("{id}.json"))
    }

    fn has_state(&self, id: &str) -> bool {
        [self.netns_path(id), self.record_path(id)]
            .iter()
            .any(|path| fs::symlink_metadata(path).is_ok())
    }

    fn load_record(&self, id: &str) -> Option<SandboxRecord> {
        let path = self.record_path(id);
        let bytes = fs::read(&path).ok()?;
        match serde_json::from_slice(&bytes) {
            Ok(record) => Some(record),
            Err(error) => {
                warn!(path = %path.display(), %error, "ignoring an unreadable sandbox network record");
                None
            }
        }
    }

    /// Creates the namespace and runs ADD; undoes everything on failure.
    async fn create(&self, id: &str, ports: &[PortSpec]) -> Result<Sandbox, NetworkError> {
        let netns = self.netns_path(id);
        if !netns_is_live(&netns) {
            create_netns(&netns).await?;
        }
        let mut last_result = None;
        let outcome = async {
            let result = self.add_all(id, &netns, ports, &mut last_result).await?;
            let (ip, _) = self.address(&result)?;
            self.ensure_rules(id, ip, ports, &result).await?;
            self.save(id, &netns, ports, result)
        }
        .await;
        if outcome.is_err() {
            let failures = self.remove(id, last_result.as_ref(), ports).await;
            for failure in failures {
                warn!(sandbox = id, error = %failure, "could not undo part of a failed network setup");
            }
        }
        outcome
    }

    /// Runs ADD for `loopback` and the chain; `last` holds the latest result for a rollback.
    async fn add_all(
        &self,
        id: &str,
        netns: &Path,
        ports: &[PortSpec],
        last: &mut Option<Value>,
    ) -> Result<Value, NetworkError> {
        let netns = netns.to_string_lossy();
        self.run_loopback(CniCommand::Add, id, &netns).await?;
        for plugin in &self.plugins {
            let result = self
                .run_chained(plugin, CniCommand::Add, id, &netns, last.as_ref(), ports)
                .await?;
            let Some(result) = result else {
                return Err(NetworkError::BadResult {
                    plugin: plugin_type(plugin).to_string(),
                    reason: "ADD printed no result".to_string(),
                });
            };
            *last = Some(result);
        }
        last.clone().ok_or_else(|| NetworkError::BadResult {
            plugin: "bridge".to_string(),
            reason: "the conflist has no plugins".to_string(),
        })
    }

    /// The sandbox's address and gateway in the chain's final result.
    fn address(&self, result: &Value) -> Result<(IpAddr, Option<IpAddr>), NetworkError> {
        sandbox_address(result).map_err(|reason| NetworkError::BadResult {
            plugin: plugin_type(self.plugins.last().unwrap_or(&Value::Null)).to_string(),
            reason,
        })
    }

    /// Saves the record of a sandbox whose ADD succeeded.
    fn save(
        &self,
        id: &str,
        netns: &Path,
        ports: &[PortSpec],
        result: Value,
    ) -> Result<Sandbox, NetworkError> {
        let (ip, gateway) = self.address(&result)?;
        let record = SandboxRecord {
            id: id.to_string(),
            netns: netns.to_path_buf(),
            ip,
            gateway,
            ports: ports.to_vec(),
            result,
        };
        let bytes = serde_json::to_vec(&record).map_err(|source| NetworkError::SaveResult {
            id: id.to_string(),
            source,
        })?;
        write_atomically(&self.record_path(id), &bytes)?;
        Ok(record.sandbox())
    }

    async fn teardown_locked(&self, id: &str) -> Result<(), NetworkError> {
        let record = self.load_record(id);
        let (prev_result, ports) = match &record {
            Some(record) => (Some(&record.result), record.ports.as_slice()),
            None => (None, &[][..]),
        };
        let mut failures = self.remove(id, prev_result, ports).await;
        if failures.is_empty()
            && let Err(error) = remove_file(&self.record_path(id))
        {
            failures.push(error);
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(NetworkError::Teardown {
                id: id.to_string(),
                failures,
            })
        }
    }

    /// Removes the isolation and anti-spoofing rules, runs DEL for the chain in reverse and `loopback`,
    /// then removes the namespace; every step is tried and the failures are returned.
    async fn remove(
        &self,
        id: &str,
        prev_result: Option<&Value>,
        ports: &[PortSpec],
    ) -> Vec<NetworkError> {
        let netns_path = self.netns_path(id);
        // Plugins treat an empty CNI_NETNS as "the namespace is gone" and clean up what they can.
        let netns = if netns_is_live(&netns_path) {
            netns_path.to_string_lossy().into_owned()
        } else {
            String::new()
        };
        let mut failures = Vec::new();
        if let Err(error) = self.isolation.remove_group(id).await {
            failures.push(error.into());
        }
        if let Err(error) = self.spoofing.remove_group(id).await {
            failures.push(error.into());
        }
        for plugin in self.plugins.iter().rev() {
            let deleted = self
                .run_chained(plugin, CniCommand::Del, id, &netns, prev_result, ports)
                .await;
            if let Err(error) = deleted {
                failures.push(error);
            }
        }
        if let Err(error) = self.run_loopback(CniCommand::Del, id, &netns).await {
            failures.push(error);
        }
        if let Err(error) = remove_netns(&netns_path) {
            failures.push(error);
        }
        failures
    }

    async fn run_loopback(
        &self,
        command: CniCommand,
        id: &str,
        netns: &str,
    ) -> Result<Option<Value>, NetworkError> {
        let stdin = json!({"cniVersion": CNI_VERSION, "name": self.name, "type": "loopback"});
        let call = PluginCall {
            plugin: "loopback",
            command,
            id,
            netns,
            ifname: "lo",
        };
        self.run_plugin(&call, &stdin).await
    }

    async fn run_chained(
        &self,
        plugin: &Value,
        command: CniCommand,
        id: &str,
        netns: &str,
        prev_result: Option<&Value>,
        ports: &[PortSpec],
    ) -> Result<Option<Value>, NetworkError> {
        let mappings = if self.config.publish_ports {
            port_mappings(ports)
        } else {
            Vec::new()
        };
        let stdin = plugin_stdin(&self.name, plugin, prev_result, &mappings);
        let call = PluginCall {
            plugin: plugin_type(plugin),
            command,
            id,
            netns,
            ifname: IFNAME,
        };
        self.run_plugin(&call, &stdin).await
    }

    /// Executes one plugin the CNI way: parameters in the environment, config on stdin, result or
    /// error on stdout.
    async fn run_plugin(
        &self,
        call: &PluginCall<'_>,
        stdin: &Value,
    ) -> Result<Option<Value>, NetworkError> {
        let path = self.config.cni_bin_dir.join(call.plugin);
        debug!(plugin = call.plugin, command = %call.command, sandbox = call.id, "running CNI plugin");
        let mut child = tokio::process::Command::new(&path)
            .env_clear()
            .env("PATH", plugin_path_env())
            .env("CNI_COMMAND", call.command.to_string())
            .env("CNI_CONTAINERID", call.id)
            .env("CNI_NETNS", call.netns)
            .env("CNI_IFNAME", call.ifname)
            .env("CNI_PATH", &self.config.cni_bin_dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| NetworkError::PluginSpawn {
                path: path.clone(),
                source,
            })?;
        let input = stdin.to_string().into_bytes();
        let pipe = child.stdin.take();
        let run = async move {
            if let Some(mut pipe) = pipe
                && let Err(error) = pipe.write_all(&input).await
                && error.kind() != io::ErrorKind::BrokenPipe
            {
                return Err(error);
            }
            child.wait_with_output().await
        };
        let output = tokio::time::timeout(PLUGIN_TIMEOUT, run)
            .await
            .map_err(|_| NetworkError::PluginTimeout {
                plugin: call.plugin.to_string(),
                command: call.command,
            })?
            .map_err(|source| NetworkError::PluginSpawn { path, source })?;
        interpret_output(
            call.plugin,
            call.command,
            output.status,
            &output.stdout,
            &output.stderr,
        )
    }
}

/// The parameters of one plugin execution.
struct PluginCall<'a> {
    plugin: &'a str,
    command: CniCommand,
    id: &'a str,
    netns: &'a str,
    ifname: &'a str,
}

/// `PATH` for plugins: the agent's own, then the usual system directories (for `iptables`).
pub(crate) fn plugin_path_env() -> String {
    match std::env::var("PATH") {
        Ok(path) if !path.is_empty() => format!("{path}:{SBIN_PATH}"),
        _ => SBIN_PATH.to_string(),
    }
}

/// The network name in the conflist: per bridge, so agents sharing a host never share chains or leases.
fn network_name(bridge: &str) -> String {
    format!("berth-{bridge}")
}

/// Berth's conflist for `config`.
fn build_conflist(config: &NetworkConfig, subnet: Subnet) -> Value {
    let default_route = match subnet.addr {
        IpAddr::V4(_) => "0.0.0.0/0",
        IpAddr::V6(_) => "::/0",
    };
    let ipam_dir = config.state_dir.join("cni").join("ipam");
    json!({
        "cniVersion": CNI_VERSION,
        "name": network_name(&config.bridge),
        "plugins": [
            {
                "type": "bridge",
                "bridge": config.bridge,
                "isGateway": true,
                "ipMasq": true,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": subnet.to_string()}]],
                    "routes": [{"dst": default_route}],
                    "dataDir": ipam_dir,
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": true}},
            {
                "type": "firewall",
                "backend": "iptables",
                "iptablesAdminChainName": isolation::forward_chain(&config.bridge),
            },
        ],
    })
}

fn plugin_type(plugin: &Value) -> &str {
    plugin["type"].as_str().unwrap_or("?")
}

/// What one chained plugin reads on stdin, as libcni builds it: the plugin's own config plus the
/// conflist's `cniVersion` and `name`, the previous result, and the runtime config of the
/// capabilities the plugin declares.
fn plugin_stdin(
    name: &str,
    plugin: &Value,
    prev_result: Option<&Value>,
    port_mappings: &[Value],
) -> Value {
    let mut stdin = plugin.clone();
    if let Some(object) = stdin.as_object_mut() {
        object.insert("cniVersion".to_string(), json!(CNI_VERSION));
        object.insert("name".to_string(), json!(name));
        if let Some(prev_result) = prev_result {
            object.insert("prevResult".to_string(), prev_result.clone());
        }
        let wants_ports = plugin["capabilities"]["portMappings"].as_bool() == Some(true);
        if wants_ports && !port_mappings.is_empty() {
            object.insert(
                "runtimeConfig".to_string(),
                json!({"portMappings": port_mappings}),
            );
        }
    }
    stdin
}

/// CNI `portMappings` publishing each port under its own number.
fn port_mappings(ports: &[PortSpec]) -> Vec<Value> {
    ports
        .iter()
        .map(|spec| {
            json!({
                "hostPort": spec.port,
                "containerPort": spec.port,
                "protocol": spec.protocol.as_str(),
            })
        })
        .collect()
}

/// A CNI error as plugins print it on stdout.
#[derive(Deserialize)]
struct CniErrorBody {
    code: u32,
    msg: String,
    #[serde(default)]
    details: String,
}

/// Turns a plugin's exit status and output into its result (`None` when it printed nothing) or an error.
fn interpret_output(
    plugin: &str,
    command: CniCommand,
    status: ExitStatus,
    stdout: &[u8],
    stderr: &[u8],
) -> Result<Option<Value>, NetworkError> {
    if status.success() {
        if command == CniCommand::Del || stdout.trim_ascii().is_empty() {
            return Ok(None);
        }
        return serde_json::from_slice(stdout)
            .map(Some)
            .map_err(|error| NetworkError::BadResult {
                plugin: plugin.to_string(),
                reason: format!("stdout is not JSON ({error})"),
            });
    }
    if let Ok(error) = serde_json::from_slice::<CniErrorBody>(stdout) {
        return Err(NetworkError::Plugin {
            plugin: plugin.to_string(),
            command,
            code: error.code,
            msg: error.msg,
            details: error.details,
        });
    }
    let output = if stderr.trim_ascii().is_empty() {
        stdout
    } else {
        stderr
    };
    let mut output = String::from_utf8_lossy(output.trim_ascii()).into_owned();
    if output.len() > MAX_OUTPUT_IN_ERROR {
        let mut end = MAX_OUTPUT_IN_ERROR;
        while !output.is_char_boundary(end) {
            end -= 1;
        }
        output.truncate(end);
        output.push('…');
    }
    Err(NetworkError::PluginCrashed {
        plugin: plugin.to_string(),
        command,
        status: status.to_string(),
        output,
    })
}

/// The parts of a CNI result Berth reads.
#[derive(Deserialize)]
struct CniResult {
    #[serde(default)]
    interfaces: Vec<CniInterface>,
    #[serde(default)]
    ips: Vec<CniIp>,
}

#[derive(Deserialize)]
struct CniInterface {
    #[serde(default)]
    sandbox: Option<String>,
}

#[derive(Deserialize)]
struct CniIp {
    address: String,
    #[serde(default)]
    gateway: Option<IpAddr>,
    #[serde(default)]
    interface: Option<usize>,
}

/// The sandbox's address and gateway in a CNI result: the first address on an interface inside the
/// sandbox, else the first address.
fn sandbox_address(result: &Value) -> Result<(IpAddr, Option<IpAddr>), String> {
    let result = CniResult::deserialize(result).map_err(|error| error.to_string())?;
    let in_sandbox = |ip: &&CniIp| {
        ip.interface
            .and_then(|index| result.interfaces.get(index))
            .is_some_and(|interface| interface.sandbox.as_deref().is_some_and(|s| !s.is_empty()))
    };
    let chosen = result
        .ips
        .iter()
        .find(in_sandbox)
        .or_else(|| result.ips.first())
        .ok_or("it has no IP address")?;
    let address = chosen.address.split('/').next().unwrap_or_default();
    let ip = address
        .parse()
        .map_err(|_| format!("address {:?} is not an IP address", chosen.address))?;
    Ok((ip, chosen.gateway))
}

/// A parsed CIDR whose host bits are zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Subnet {
    addr: IpAddr,
    prefix: u8,
}

impl Subnet {
    fn parse(text: &str) -> Result<Subnet, NetworkError> {
        let invalid = |reason: &str| NetworkError::InvalidSubnet {
            subnet: text.to_string(),
            reason: reason.to_string(),
        };
        let (addr, prefix) = text
            .split_once('/')
            .ok_or_else(|| invalid("write it as address/prefix, e.g. 10.88.0.0/16"))?;
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| invalid("the address is not an IP address"))?;
        let prefix: u8 = prefix
            .parse()
            .map_err(|_| invalid("the prefix length is not a number"))?;
        // At least 4 addresses: network, gateway, one sandbox, broadcast.
        let (bits, host_bits_set) = match addr {
            IpAddr::V4(v4) => (
                32,
                prefix <= 32 && u32::from(v4) & host_mask_v4(prefix) != 0,
            ),
            IpAddr::V6(v6) => (
                128,
                prefix <= 128 && u128::from(v6) & host_mask_v6(prefix) != 0,
            ),
        };
        if prefix > bits - 2 {
            return Err(invalid(&format!(
                "the prefix length must be at most {} to leave room for sandboxes",
                bits - 2
            )));
        }
        if host_bits_set {
            return Err(invalid(
                "the address has host bits set; use the network's first address",
            ));
        }
        Ok(Subnet { addr, prefix })
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

fn host_mask_v4(prefix: u8) -> u32 {
    u32::MAX.checked_shr(u32::from(prefix)).unwrap_or(0)
}

fn host_mask_v6(prefix: u8) -> u128 {
    u128::MAX.checked_shr(u32::from(prefix)).unwrap_or(0)
}

fn validate_bridge(name: &str) -> Result<(), NetworkError> {
    let valid_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    let valid = !name.is_empty()
        && name.len() <= MAX_BRIDGE_LEN
        && name.chars().all(valid_char)
        && name != "."
        && name != "..";
    if valid {
        Ok(())
    } else {
        Err(NetworkError::InvalidBridge {
            name: name.to_string(),
        })
    }
}

/// Accepts ids that are safe as file names and CNI container ids: `[a-z0-9-]{1,64}`.
fn validate_id(id: &str) -> Result<(), NetworkError> {
    let valid = !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if valid {
        Ok(())
    } else {
        Err(NetworkError::InvalidId { id: id.to_string() })
    }
}

fn check_plugins(dir: &Path) -> Result<(), NetworkError> {
    for plugin in REQUIRED_PLUGINS {
        let executable = fs::metadata(dir.join(plugin))
            .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0);
        if !executable {
            return Err(NetworkError::PluginMissing {
                plugin: plugin.to_string(),
                dir: dir.to_path_buf(),
            });
        }
    }
    Ok(())
}

fn create_dir(path: &Path) -> Result<(), NetworkError> {
    fs::create_dir_all(path).map_err(|source| NetworkError::Io {
        action: "create directory",
        path: path.to_path_buf(),
        source,
    })
}

/// Writes `bytes` to a temporary file beside `path` and renames it over `path`.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), NetworkError> {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = PathBuf::from(temporary);
    let written = fs::write(&temporary, bytes).and_then(|()| fs::rename(&temporary, path));
    written.map_err(|source| {
        let _ = fs::remove_file(&temporary);
        NetworkError::Io {
            action: "write",
            path: path.to_path_buf(),
            source,
        }
    })
}

/// Removes a file; one that is already gone is fine.
fn remove_file(path: &Path) -> Result<(), NetworkError> {
    match fs::remove_file(path) {
        Err(source) if source.kind() != io::ErrorKind::NotFound => Err(NetworkError::Io {
            action: "remove",
            path: path.to_path_buf(),
            source,
        }),
        _ => Ok(()),
    }
}

/// The names of a directory's entries; none if it cannot be read.
fn list_dir(dir: &Path) -> Vec<String> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .collect()
}

/// Makes `dir` a shared mount point, bind-mounting it on itself first if it is not a mount point,
/// like `ip netns` does for `/run/netns`: namespace mounts made in it then propagate to (and their
/// unmounts reach) mount namespaces cloned from this one, such as those of containerd's shims.
fn make_shared_mount(dir: &Path) -> Result<(), NetworkError> {
    let make_shared = || {
        nix::mount::mount(
            None::<&str>,
            dir,
            None::<&str>,
            MsFlags::MS_SHARED | MsFlags::MS_REC,
            None::<&str>,
        )
    };
    let shared = match make_shared() {
        // EINVAL: not a mount point yet.
        Err(Errno::EINVAL) => nix::mount::mount(
            Some(dir),
            dir,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .and_then(|()| make_shared()),
        other => other,
    };
    shared.map_err(|source| NetworkError::Mount {
        action: "make a shared mount point of",
        path: dir.to_path_buf(),
        source,
    })
}

/// Lazily unmounts `path`; one that is not mounted or does not exist is fine.
fn unmount(path: &Path) -> Result<(), NetworkError> {
    match nix::mount::umount2(path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(Errno::EINVAL | Errno::ENOENT) => Ok(()),
        Err(source) => Err(NetworkError::Mount {
            action: "unmount",
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Whether `path` is a mounted network (or other) namespace, rather than a plain or missing file.
fn netns_is_live(path: &Path) -> bool {
    statfs::statfs(path).is_ok_and(|stat| stat.filesystem_type() == statfs::NSFS_MAGIC)
}

/// Creates a new network namespace and pins it by bind-mounting it on `path` (which must not exist).
///
/// The namespace is made by a dedicated thread that unshares its own network namespace, mounts
/// `/proc/thread-self/ns/net` and exits; no other thread's namespace changes. On failure `path` is
/// removed again.
async fn create_netns(path: &Path) -> Result<(), NetworkError> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o444)
        .open(path)
        .map_err(|source| NetworkError::Io {
            action: "create",
            path: path.to_path_buf(),
            source,
        })?;
    let (sender, receiver) = tokio::sync::oneshot::channel();
    let target = path.to_path_buf();
    let spawned = std::thread::Builder::new()
        .name("berth-netns".to_string())
        .spawn(move || {
            // The receiver is gone only if the setup was cancelled; the caller's next setup or
            // teardown then finds the file and cleans it up.
            let _ = sender.send(pin_new_netns(&target));
        });
    let pinned = match spawned {
        Ok(_) => receiver.await.unwrap_or_else(|_| {
            Err(NetworkError::NetnsThread {
                path: path.to_path_buf(),
            })
        }),
        Err(_) => Err(NetworkError::NetnsThread {
            path: path.to_path_buf(),
        }),
    };
    if pinned.is_err() {
        let _ = fs::remove_file(path);
    }
    pinned
}

/// Runs on a thread of its own: moves it into a new network namespace and pins that on `target`.
fn pin_new_netns(target: &Path) -> Result<(), NetworkError> {
    let failed = |action, source| NetworkError::Mount {
        action,
        path: target.to_path_buf(),
        source,
    };
    nix::sched::unshare(CloneFlags::CLONE_NEWNET)
        .map_err(|source| failed("create a network namespace for", source))?;
    nix::mount::mount(
        Some("/proc/thread-self/ns/net"),
        target,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|source| failed("bind-mount a network namespace on", source))
}

/// Unmounts and deletes a pinned namespace; a missing or unmounted one is fine.
fn remove_netns(path: &Path) -> Result<(), NetworkError> {
    unmount(path)?;
    remove_file(path)
}

/// Deletes the bridge with `ip link`; a bridge that does not exist is fine.
async fn delete_bridge(bridge: &str) -> Result<(), NetworkError> {
    let failed = |reason: String| NetworkError::BridgeDelete {
        bridge: bridge.to_string(),
        reason,
    };
    let output = tokio::process::Command::new("ip")
        .args(["link", "delete", bridge, "type", "bridge"])
        .env("PATH", plugin_path_env())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|error| {
            failed(format!(
                "could not run `ip` ({error}); is iproute2 installed?"
            ))
        })?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if output.status.success() || stderr.contains("Cannot find device") {
        Ok(())
    } else {
        Err(failed(stderr.trim().to_string()))
    }
}

/// One async lock per sandbox id, so that `setup` and `teardown` of one sandbox never interleave while
/// different sandboxes proceed in parallel. Entries are dropped when nobody holds or awaits them.
#[derive(Default)]
struct IdLocks {
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

struct IdGuard<'a> {
    locks: &'a IdLocks,
    id: String,
    lock: Arc<tokio::sync::Mutex<()>>,
    guard: Option<OwnedMutexGuard<()>>,
}

impl IdLocks {
    async fn acquire(&self, id: &str) -> IdGuard<'_> {
        let lock = self
            .locks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(id.to_string())
            .or_default()
            .clone();
        let guard = lock.clone().lock_owned().await;
        IdGuard {
            locks: self,
            id: id.to_string(),
            lock,
            guard: Some(guard),
        }
    }
}

impl Drop for IdGuard<'_> {
    fn drop(&mut self) {
        self.guard.take();
        let mut locks = self
            .locks
            .locks
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Only the map and this guard hold it: nobody else waits for this id.
        if Arc::strong_count(&self.lock) == 2 {
            locks.remove(&self.id);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::os::unix::process::ExitStatusExt as _;
    use std::process::{Command, Output};

    use tokio::io::AsyncWriteExt as _;

    use super::*;

    // ---- pure logic ----

    fn sample_config() -> NetworkConfig {
        NetworkConfig {
            cni_bin_dir: PathBuf::from("/usr/lib/cni"),
            state_dir: PathBuf::from("/var/lib/berth/network"),
            bridge: "berth7".to_string(),
            subnet: "10.77.0.0/16".to_string(),
            publish_ports: true,
        }
    }

    #[test]
    fn the_conflist_chains_bridge_portmap_and_firewall() {
        let config = sample_config();
        let conflist = build_conflist(&config, Subnet::parse(&config.subnet).unwrap());
        assert_eq!(conflist["cniVersion"], "1.0.0");
        assert_eq!(conflist["name"], "berth-berth7");
        let plugins = conflist["plugins"].as_array().unwrap();
        let types: Vec<&str> = plugins.iter().map(plugin_type).collect();
        assert_eq!(types, ["bridge", "portmap", "firewall"]);

        let bridge = &plugins[0];
        assert_eq!(bridge["bridge"], "berth7");
        for flag in ["isGateway", "ipMasq", "hairpinMode"] {
            assert_eq!(bridge[flag], true, "{flag}");
        }
        let ipam = &bridge["ipam"];
        assert_eq!(ipam["type"], "host-local");
        assert_eq!(ipam["ranges"], json!([[{"subnet": "10.77.0.0/16"}]]));
        assert_eq!(ipam["routes"], json!([{"dst": "0.0.0.0/0"}]));
        assert_eq!(ipam["dataDir"], "/var/lib/berth/network/cni/ipam");
        assert_eq!(plugins[1]["capabilities"], json!({"portMappings": true}));
        assert_eq!(
            plugins[2],
            json!({
                "type": "firewall",
                "backend": "iptables",
                "iptablesAdminChainName": "BERTH-FWD-berth7",
            })
        );

        let v6 = build_conflist(&config, Subnet::parse("fd00:88::/64").unwrap());
        assert_eq!(v6["plugins"][0]["ipam"]["routes"], json!([{"dst": "::/0"}]));
    }

    #[test]
    fn chained_plugins_get_version_name_prev_result_and_their_capabilities() {
        let config = sample_config();
        let conflist = build_conflist(&config, Subnet::parse(&config.subnet).unwrap());
        let plugins = conflist["plugins"].as_array().unwrap();
        let prev = json!({"cniVersion": "1.0.0", "ips": [{"address": "10.77.0.2/16"}]});
        let mappings = port_mappings(&[PortSpec {
            port: 8080,
            protocol: Protocol::Udp,
        }]);

        let bridge = plugin_stdin("berth-berth7", &plugins[0], None, &mappings);
        assert_eq!(bridge["cniVersion"], "1.0.0");
        assert_eq!(bridge["name"], "berth-berth7");
        assert!(bridge.get("prevResult").is_none());
        assert!(
            bridge.get("runtimeConfig").is_none(),
            "bridge declares no capability"
        );

        let portmap = plugin_stdin("berth-berth7", &plugins[1], Some(&prev), &mappings);
        assert_eq!(portmap["prevResult"], prev);
        assert_eq!(
            portmap["runtimeConfig"],
            json!({"portMappings": [{"hostPort": 8080, "containerPort": 8080, "protocol": "udp"}]})
        );
        let unpublished = plugin_stdin("berth-berth7", &plugins[1], Some(&prev), &[]);
        assert!(unpublished.get("runtimeConfig").is_none());
    }

    fn exit(code: i32) -> ExitStatus {
        ExitStatus::from_raw(code << 8)
    }

    #[test]
    fn cni_errors_name_the_plugin_and_its_message() {
        let stdout = br#"{"cniVersion":"1.0.0","code":11,"msg":"failed to allocate for range 0","details":"no IP addresses available"}"#;
        let error = interpret_output("bridge", CniCommand::Add, exit(1), stdout, b"").unwrap_err();
        assert!(
            matches!(error, NetworkError::Plugin { code: 11, .. }),
            "{error:?}"
        );
        assert_eq!(
            error.to_string(),
            "CNI plugin \"bridge\" failed ADD (code 11): failed to allocate for range 0 \
             (no IP addresses available)"
        );

        let error = interpret_output("portmap", CniCommand::Del, exit(2), b"", b"panic: boom\n")
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "CNI plugin \"portmap\" failed DEL (exit status: 2): panic: boom"
        );

        let long = vec![b'x'; 5000];
        let error = interpret_output("bridge", CniCommand::Add, exit(1), &long, b"").unwrap_err();
        assert!(error.to_string().len() < MAX_OUTPUT_IN_ERROR + 100);

        let result = interpret_output("bridge", CniCommand::Add, exit(0), br#"{"ips":[]}"#, b"");
        assert_eq!(result.unwrap(), Some(json!({"ips": []})));
        let error = interpret_output("bridge", CniCommand::Add, exit(0), b"oops", b"").unwrap_err();
        assert!(matches!(error, NetworkError::BadResult { .. }), "{error:?}");
        assert_eq!(
            interpret_output("bridge", CniCommand::Del, exit(0), b"", b"").unwrap(),
            None
        );
    }

    #[test]
    fn the_sandbox_address_is_the_one_on_the_sandbox_interface() {
        let result = json!({
            "interfaces": [
                {"name": "berth0", "mac": "aa"},
                {"name": "veth1", "mac": "bb"},
                {"name": "eth0", "mac": "cc", "sandbox": "/x/netns/a"},
            ],
            "ips": [
                {"interface": 0, "address": "10.88.0.1/16"},
                {"interface": 2, "address": "10.88.0.5/16", "gateway": "10.88.0.1"},
            ],
        });
        assert_eq!(
            sandbox_address(&result).unwrap(),
            (
                "10.88.0.5".parse().unwrap(),
                Some("10.88.0.1".parse().unwrap())
            )
        );
        let bare = json!({"ips": [{"address": "fd00::7/64"}]});
        assert_eq!(
            sandbox_address(&bare).unwrap(),
            ("fd00::7".parse().unwrap(), None)
        );
        assert!(sandbox_address(&json!({"ips": []})).is_err());
        assert!(sandbox_address(&json!({"ips": [{"address": "nope/8"}]})).is_err());
    }

    #[test]
    fn subnets_bridges_and_ids_are_validated() {
        assert_eq!(
            Subnet::parse("10.88.0.0/16").unwrap().to_string(),
            "10.88.0.0/16"
        );
        assert!(Subnet::parse("fd00::/64").is_ok());
        for bad in [
            "10.88.0.0",
            "10.88.0.1/16",
            "10.88.0.0/31",
            "10.88.0.0/x",
            "nope/8",
            "::/127",
        ] {
            assert!(
                matches!(Subnet::parse(bad), Err(NetworkError::InvalidSubnet { .. })),
                "{bad}"
            );
        }
        assert!(validate_bridge("berth0").is_ok());
        for bad in ["", "a-name-too-long-x", "has space", "a/b", "..", "ü"] {
            assert!(validate_bridge(bad).is_err(), "{bad:?}");
        }
        assert!(validate_id("0f6c1a2e-9b1d-4c3e-8f00-1234567890ab").is_ok());
        for bad in [
            "",
            "..",
            "../etc",
            "a/b",
            "Upper",
            "a_b",
            "a.b",
            &"a".repeat(65),
        ] {
            assert!(validate_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_missing_cni_bin_dir_is_a_clear_error_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = NetworkConfig::new(dir.path().join("state"));
        config.cni_bin_dir = dir.path().join("no-such-dir");
        let error = Network::new(config).unwrap_err();
        assert!(
            matches!(error, NetworkError::PluginMissing { .. }),
            "{error:?}"
        );
        let message = error.to_string();
        assert!(message.contains("\"loopback\""), "{message}");
        assert!(message.contains("no-such-dir"), "{message}");
        assert!(!dir.path().join("state").exists());

        let relative = NetworkConfig::new("relative/state");
        assert!(matches!(
            Network::new(relative),
            Err(NetworkError::RelativeStateDir { .. })
        ));
    }

    // ---- real namespaces and plugins (root only) ----

    /// These tests need root (namespaces, mounts, bridges, iptables); without it they say so and pass.
    fn privileged() -> bool {
        let root = nix::unistd::geteuid().is_root();
        if !root {
            eprintln!("skipped: needs root for network namespaces, bridges and iptables");
        }
        root
    }

    /// A network of its own for one test: bridge `bt<pid><n>`, subnet `10.<200+n>.<pid%250>.0/24`,
    /// state in a tempdir. Purged (sandboxes, bridge, mount) when dropped, also when the test fails.
    struct TestNet {
        network: Arc<Network>,
        prefix: String,
        _dir: tempfile::TempDir,
    }

    impl TestNet {
        fn config(n: u32, dir: &Path) -> NetworkConfig {
            let pid = std::process::id();
            NetworkConfig {
                cni_bin_dir: default_cni_bin_dir(),
                state_dir: dir.join("state"),
                bridge: format!("bt{}{n}", pid % 10000),
                subnet: format!("10.{}.{}.0/24", 200 + n, pid % 250),
                publish_ports: false,
            }
        }

        fn new(n: u32, adjust: impl FnOnce(&mut NetworkConfig, &Path)) -> TestNet {
            let dir = tempfile::tempdir().unwrap();
            let mut config = TestNet::config(n, dir.path());
            adjust(&mut config, dir.path());
            let prefix = config.subnet.trim_end_matches("0/24").to_string();
            TestNet {
                network: Arc::new(Network::new(config).unwrap()),
                prefix,
                _dir: dir,
            }
        }

        fn bridge(&self) -> &str {
            &self.network.config.bridge
        }

        /// The host-side interfaces attached to the bridge.
        fn bridge_ports(&self) -> Vec<String> {
            let output = run("ip", &["-o", "link", "show", "master", self.bridge()]);
            String::from_utf8_lossy(&output.stdout)
                .lines()
                .filter_map(|line| line.split(": ").nth(1))
                .map(|name| name.split('@').next().unwrap_or(name).to_string())
                .collect()
        }

        /// The addresses `host-local` has leased.
        fn leases(&self) -> BTreeSet<String> {
            let dir = self.network.cni_dir().join("ipam").join(&self.network.name);
            list_dir(&dir)
                .into_iter()
                .filter(|name| name.parse::<IpAddr>().is_ok())
                .collect()
        }

        /// iptables NAT rules that mention this test's subnet.
        fn nat_rules(&self) -> Vec<String> {
            let output = run("iptables", &["-w", "-t", "nat", "-S"]);
            String::from_utf8_lossy(&output.stdout)
                .lines()
                .filter(|line| line.contains(&self.prefix))
                .map(str::to_string)
                .collect()
        }

        /// Deletes this test's NAT rules and their chains, as a reboot would.
        fn forget_nat_rules(&self) {
            for rule in self.nat_rules() {
                // The jumps into each sandbox's chain; the chain itself goes after its jump.
                let Some(rule) = rule
                    .strip_prefix("-A ")
                    .filter(|r| r.starts_with("POSTROUTING"))
                else {
                    continue;
                };
                // `iptables -S` quotes like a shell, so a shell splits it back.
                let delete = format!("iptables -w -t nat -D {rule}");
                assert!(run("sh", &["-c", &delete]).status.success(), "{delete}");
                if let Some((_, chain)) = rule.rsplit_once(" -j ")
                    && chain.starts_with("CNI-")
                {
                    run("iptables", &["-w", "-t", "nat", "-F", chain]);
                    run("iptables", &["-w", "-t", "nat", "-X", chain]);
                }
            }
            assert!(self.nat_rules().is_empty(), "{:?}", self.nat_rules());
        }

        /// `iptables`, or `ip6tables` for an IPv6 subnet.
        fn iptables(&self) -> &'static str {
            if self.network.config.subnet.contains(':') {
                "ip6tables"
            } else {
                "iptables"
            }
        }

        /// The filter-table rules of this network's isolation (`iptables -S`): every rule of, or
        /// jumping to, the node's chains or the chains of groups `ids`, and those chains themselves.
        fn isolation_rules(&self, ids: &[&str]) -> Vec<String> {
            let mut chains = vec![
                isolation::forward_chain(self.bridge()),
                isolation::input_chain(self.bridge()),
            ];
            chains.extend(
                ids.iter()
                    .map(|id| isolation::group_chain(self.bridge(), id)),
            );
            let output = run(self.iptables(), &["-w", "-S"]);
            String::from_utf8_lossy(&output.stdout)
                .lines()
                .filter(|line| line.split(' ').any(|word| chains.iter().any(|c| c == word)))
                .map(str::to_string)
                .collect()
        }

        /// The rules that name group `id`'s chain or `ip`.
        fn group_rules(&self, id: &str, ip: IpAddr) -> Vec<String> {
            let chain = isolation::group_chain(self.bridge(), id);
            let address = format!(" {ip}/");
            let output = run(self.iptables(), &["-w", "-S"]);
            String::from_utf8_lossy(&output.stdout)
                .lines()
                .filter(|line| line.split(' ').any(|word| word == chain) || line.contains(&address))
                .map(str::to_string)
                .collect()
        }

        /// This network's anti-spoofing table, in an order of its own: the map's elements as
        /// `<port> -> <chain>` (sorted), then each chain's rules as `<chain>: <rule>` (no counters).
        /// Empty if there is no table.
        fn spoofing_rules(&self) -> Vec<String> {
            let table = spoofing::table(self.bridge());
            let output = run(
                spoofing::PROGRAM,
                &["-j", "list", "table", "bridge", &table],
            );
            if !output.status.success() {
                return Vec::new();
            }
            let state = spoofing::TableState::parse(&output.stdout).unwrap();
            let mut rules: Vec<String> = state
                .elements
                .iter()
                .map(|(port, chain)| format!("{port} -> {chain}"))
                .collect();
            rules.sort();
            for chain in &state.chains {
                rules.extend(
                    nft_chain(&table, chain)
                        .into_iter()
                        .map(|rule| format!("{chain}: {rule}")),
                );
            }
            rules
        }

        /// The rules of group `id`'s anti-spoofing chain (none if it does not exist).
        fn spoofing_chain(&self, id: &str) -> Vec<String> {
            let chain = spoofing::group_chain(self.bridge(), id);
            nft_chain(&spoofing::table(self.bridge()), &chain)
        }

        /// The host-side veth of a sandbox, from its saved result.
        fn host_veth(&self, id: &str) -> String {
            let record = self.network.load_record(id).unwrap();
            record.result["interfaces"]
                .as_array()
                .unwrap()
                .iter()
                .find(|interface| {
                    interface.get("sandbox").is_none() && interface["name"] != self.bridge()
                })
                .and_then(|interface| interface["name"].as_str())
                .unwrap()
                .to_string()
        }
    }

    impl Drop for TestNet {
        fn drop(&mut self) {
            let network = Arc::clone(&self.network);
            let purged = std::thread::spawn(move || {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap()
                    .block_on(network.purge())
            })
            .join();
            if let Ok(Err(error)) = purged {
                eprintln!("test cleanup: {error}");
            }
        }
    }

    fn run(program: &str, args: &[&str]) -> Output {
        Command::new(program).args(args).output().unwrap()
    }

    /// The rules of `chain` in the bridge `table`, as `nft -s` (no counters) lists them.
    fn nft_chain(table: &str, chain: &str) -> Vec<String> {
        let output = run(
            spoofing::PROGRAM,
            &["-s", "list", "chain", "bridge", table, chain],
        );
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.ends_with('{') && *line != "}")
            .map(str::to_string)
            .collect()
    }

    /// The MAC of `eth0` in `netns`, as `ip` shows it.
    fn sandbox_mac(netns: &Path) -> String {
        let net = format!("--net={}", netns.display());
        let output = run("nsenter", &[&net, "ip", "-o", "link", "show", "eth0"]);
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        text.split_whitespace()
            .skip_while(|word| *word != "link/ether")
            .nth(1)
            .unwrap_or_else(|| panic!("no MAC in {text:?}"))
            .to_string()
    }

    /// Runs `scripts/lib/send-frames.pl` with `args` in `netns` with no capability but
    /// CAP_NET_RAW: what any container may do.
    fn send_frames(netns: &Path, args: &[&str]) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/lib/send-frames.pl");
        let output = Command::new("nsenter")
            .arg(format!("--net={}", netns.display()))
            .args(["setpriv", "--bounding-set", "-all,+net_raw", "perl"])
            .arg(script)
            .args(args)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "send-frames {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// The link-layer address the node's neighbour table has for `ip`, if any.
    fn neighbour(bridge: &str, ip: IpAddr) -> Option<String> {
        let ip = ip.to_string();
        let output = run("ip", &["neigh", "show", "dev", bridge, &ip]);
        String::from_utf8_lossy(&output.stdout)
            .split_whitespace()
            .skip_while(|word| *word != "lladdr")
            .nth(1)
            .map(str::to_string)
    }

    /// The bridge port the bridge forwards frames for `mac` to.
    fn fdb_port(bridge: &str, mac: &str) -> Option<String> {
        let output = run("bridge", &["fdb", "show", "br", bridge]);
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .find(|line| line.starts_with(&format!("{mac} dev ")))
            .and_then(|line| line.split_whitespace().nth(2))
            .map(str::to_string)
    }

    fn ping_from(netns: &Path, ip: &str) -> bool {
        let net = format!("--net={}", netns.display());
        let output = run("nsenter", &[&net, "busybox", "ping", "-c1", "-W2", ip]);
        output.status.success()
    }

    /// Ping from the host itself, whose own traffic to the sandboxes is not filtered.
    fn ping_from_host(ip: IpAddr) -> bool {
        let ip = ip.to_string();
        run("busybox", &["ping", "-c1", "-W2", &ip])
            .status
            .success()
    }

    /// What each sandbox's web servers serve.
    const PAGE: &str = "berth-sandbox-page";

    /// A busybox `httpd` serving [`PAGE`] on `port` inside `netns`; killed when dropped.
    fn serve(netns: &Path, port: u16, root: &Path) -> tokio::process::Child {
        fs::write(root.join("index.html"), format!("{PAGE}\n")).unwrap();
        tokio::process::Command::new("nsenter")
            .arg(format!("--net={}", netns.display()))
            .args(["busybox", "httpd", "-f", "-p", &port.to_string(), "-h"])
            .arg(root)
            .kill_on_drop(true)
            .spawn()
            .unwrap()
    }

    /// Whether `GET http://ip:port/` from inside `netns` (or from the host) returns [`PAGE`].
    fn fetch(netns: Option<&Path>, ip: IpAddr, port: u16) -> bool {
        let url = format!("http://{}/", std::net::SocketAddr::from((ip, port)));
        let mut command = match netns {
            Some(netns) => {
                let mut command = Command::new("nsenter");
                command
                    .arg(format!("--net={}", netns.display()))
                    .arg("busybox");
                command
            }
            None => Command::new("busybox"),
        };
        let output = command
            .args(["timeout", "3", "busybox", "wget", "-q", "-O", "-", &url])
            .output()
            .unwrap();
        output.status.success() && String::from_utf8_lossy(&output.stdout).contains(PAGE)
    }

    /// Waits until the host is served on `ip:port`: the server is up, so a refusal elsewhere is
    /// the rules, not a server still starting.
    async fn wait_served(ip: IpAddr, port: u16) {
        for _ in 0..100 {
            if fetch(None, ip, port) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{ip}:{port} never served the host");
    }

    fn all_links() -> String {
        String::from_utf8_lossy(&run("ip", &["-o", "link"]).stdout).into_owned()
    }

    #[tokio::test]
    async fn sandboxes_reach_only_exposed_ports_and_teardown_removes_everything() {
        if !privileged() {
            return;
        }
        let net = TestNet::new(1, |_, _| {});
        let network = &net.network;
        let web = PortSpec {
            port: 8080,
            protocol: Protocol::Tcp,
        };
        // Concurrently, as the supervisor starts groups.
        let exposed = [web];
        let (a, b) = tokio::join!(
            network.setup("group-a", &exposed),
            network.setup("group-b", &[])
        );
        let (a, b) = (a.unwrap(), b.unwrap());

        assert_ne!(a.ip, b.ip);
        for sandbox in [&a, &b] {
            assert!(
                sandbox.ip.to_string().starts_with(&net.prefix),
                "{sandbox:?}"
            );
            assert_eq!(
                sandbox.gateway,
                Some(format!("{}1", net.prefix).parse().unwrap())
            );
            assert!(netns_is_live(&sandbox.netns));
        }
        assert_eq!(a.netns, network.config.state_dir.join("netns/group-a"));

        // Servers on an exposed and an unexposed port of a, and on the same port of b (which
        // exposes nothing); each answers the host.
        let root = tempfile::tempdir().unwrap();
        let _servers = [
            serve(&a.netns, 8080, root.path()),
            serve(&a.netns, 8081, root.path()),
            serve(&b.netns, 8080, root.path()),
        ];
        for (ip, port) in [(a.ip, 8080), (a.ip, 8081), (b.ip, 8080)] {
            wait_served(ip, port).await;
        }
        assert!(
            fetch(Some(&b.netns), a.ip, 8080),
            "b cannot reach a's exposed port"
        );
        assert!(
            !fetch(Some(&b.netns), a.ip, 8081),
            "b reaches a's unexposed port"
        );
        assert!(
            !fetch(Some(&a.netns), b.ip, 8080),
            "a reaches b, which exposes nothing"
        );
        assert!(!ping_from(&b.netns, &a.ip.to_string()), "b pings a");
        assert!(!ping_from(&a.netns, &b.ip.to_string()), "a pings b");
        assert!(ping_from(&a.netns, "127.0.0.1"), "lo is not up in a");
        let gateway = a.gateway.unwrap();
        assert!(
            !ping_from(&a.netns, &gateway.to_string()),
            "the node answers a"
        );
        assert!(
            ping_from_host(a.ip) && ping_from_host(b.ip),
            "the host reaches both"
        );
        let chain_a = isolation::group_chain(net.bridge(), "group-a");
        let rules = net.isolation_rules(&["group-a", "group-b"]);
        assert!(
            rules.contains(&format!(
                "-A {chain_a} -p tcp -m tcp --dport 8080 -j ACCEPT"
            )),
            "{rules:#?}"
        );

        assert_eq!(network.sandboxes(), ["group-a", "group-b"]);
        assert_eq!(
            net.leases(),
            BTreeSet::from([a.ip.to_string(), b.ip.to_string()])
        );
        let veth_a = net.host_veth("group-a");
        assert_eq!(net.bridge_ports().len(), 2);
        assert!(net.bridge_ports().contains(&veth_a));
        let spoof = net.spoofing_rules();
        let spoof_a = spoofing::group_chain(net.bridge(), "group-a");
        let spoof_b = spoofing::group_chain(net.bridge(), "group-b");
        let veth_b = net.host_veth("group-b");
        let elements: Vec<&String> = spoof.iter().filter(|rule| rule.contains(" -> ")).collect();
        let mut expected = [
            format!("{veth_a} -> {spoof_a}"),
            format!("{veth_b} -> {spoof_b}"),
        ];
        expected.sort();
        assert_eq!(elements, expected.iter().collect::<Vec<_>>(), "{spoof:#?}");
        // What the kernel holds is the builder's rules for a's own MAC, as a's namespace shows it.
        let link_a = spoofing::Link {
            veth: veth_a.clone(),
            mac: spoofing::Mac::parse(&sandbox_mac(&a.netns)).unwrap(),
            ip: a.ip,
        };
        assert_eq!(
            net.spoofing_chain("group-a"),
            spoofing::group_rules(&link_a)
        );
        assert!(
            spoof.contains(&"prerouting: iifname vmap @groups".to_string()),
            "{spoof:#?}"
        );
        assert!(
            net.nat_rules()
                .iter()
                .any(|rule| rule.contains(&a.ip.to_string()))
        );

        // Idempotent setup, and the view after an agent restart; the rules are there once.
        assert_eq!(network.setup("group-a", &[web]).await.unwrap(), a);
        assert_eq!(net.isolation_rules(&["group-a", "group-b"]), rules);
        assert_eq!(net.spoofing_rules(), spoof);
        assert_eq!(network.existing("group-a"), Some(a.clone()));
        assert_eq!(network.existing("group-c"), None);

        network.teardown("group-a").await.unwrap();
        assert!(!a.netns.exists());
        assert!(
            !all_links().contains(&format!(" {veth_a}@")),
            "{veth_a} is still there"
        );
        assert_eq!(net.leases(), BTreeSet::from([b.ip.to_string()]));
        assert!(
            !net.nat_rules()
                .iter()
                .any(|rule| rule.contains(&format!("{}/32", a.ip)))
        );
        let left = net.group_rules("group-a", a.ip);
        assert!(left.is_empty(), "{left:#?}");
        let left = net.spoofing_rules();
        assert!(
            !left
                .iter()
                .any(|rule| rule.contains(&spoof_a) || rule.contains(&veth_a)),
            "{left:#?}"
        );
        assert_eq!(network.existing("group-a"), None);
        assert_eq!(network.sandboxes(), ["group-b"]);
        assert!(ping_from_host(b.ip), "b lost its network");
        network.teardown("group-a").await.unwrap();
        network.teardown("never-set-up").await.unwrap();

        network.teardown("group-b").await.unwrap();
        assert!(network.sandboxes().is_empty());
        assert!(net.leases().is_empty());
        assert!(net.bridge_ports().is_empty());
        assert!(net.nat_rules().is_empty(), "{:?}", net.nat_rules());
        assert!(net.group_rules("group-b", b.ip).is_empty());

        // Removing the node removes its chains and the jumps to them, and its table.
        assert!(!net.isolation_rules(&[]).is_empty());
        assert_eq!(
            net.spoofing_rules(),
            [
                "prerouting: type filter hook prerouting priority dstnat; policy accept;",
                "prerouting: iifname vmap @groups"
            ]
        );
        network.purge().await.unwrap();
        assert!(
            net.isolation_rules(&[]).is_empty(),
            "{:#?}",
            net.isolation_rules(&[])
        );
        assert!(
            net.spoofing_rules().is_empty(),
            "{:#?}",
            net.spoofing_rules()
        );
    }

    #[tokio::test]
    async fn isolation_is_restored_once_by_a_new_agent_and_a_crash_leaves_no_rule() {
        if !privileged() {
            return;
        }
        let net = TestNet::new(6, |_, _| {});
        let web = PortSpec {
            port: 8080,
            protocol: Protocol::Tcp,
        };
        let a = net.network.setup("group-a", &[web]).await.unwrap();
        let b = net.network.setup("group-b", &[]).await.unwrap();
        let root = tempfile::tempdir().unwrap();
        let _server = serve(&a.netns, 8080, root.path());
        wait_served(a.ip, 8080).await;
        assert!(fetch(Some(&b.netns), a.ip, 8080));
        let rules = net.isolation_rules(&["group-a", "group-b"]);
        let spoof = net.spoofing_rules();

        // What a crash or an operator may lose: a's jump, b's chain, the node's INPUT hook.
        let forward = isolation::forward_chain(net.bridge());
        let jump = format!(
            "-d {}/32 -j {}",
            a.ip,
            isolation::group_chain(net.bridge(), "group-a")
        );
        let chain_b = isolation::group_chain(net.bridge(), "group-b");
        let input = isolation::input_chain(net.bridge());
        let table = spoofing::table(net.bridge());
        let spoof_b = spoofing::group_chain(net.bridge(), "group-b");
        for script in [
            format!("iptables -w -D {forward} {jump}"),
            format!(
                "iptables -w -D {forward} -d {}/32 -j {chain_b} && iptables -w -X {chain_b}",
                b.ip
            ),
            format!("iptables -w -D INPUT -i {} -j {input}", net.bridge()),
            // The same of the anti-spoofing table: a's element, b's element and chain, the base
            // chain's lookup.
            format!(
                "nft delete element bridge {table} groups '{{ \"{}\" }}'",
                net.host_veth("group-a")
            ),
            format!(
                "nft delete element bridge {table} groups '{{ \"{}\" }}' && \
                 nft delete chain bridge {table} {spoof_b}",
                net.host_veth("group-b")
            ),
            format!("nft flush chain bridge {table} prerouting"),
        ] {
            assert!(run("sh", &["-c", &script]).status.success(), "{script}");
        }
        assert!(
            !fetch(Some(&b.netns), a.ip, 8080),
            "a lost its jump: closed, not open"
        );

        // A new agent on the same state: everything back, once, twice over.
        let restarted = Network::new(net.network.config.clone()).unwrap();
        for _ in 0..2 {
            restarted.restore().await.unwrap();
            let mut now = net.isolation_rules(&["group-a", "group-b"]);
            let mut before = rules.clone();
            now.sort();
            before.sort();
            assert_eq!(now, before);
            let mut now = net.spoofing_rules();
            let mut before = spoof.clone();
            now.sort();
            before.sort();
            assert_eq!(now, before);
        }
        assert!(
            fetch(Some(&b.netns), a.ip, 8080),
            "a's exposed port is back"
        );
        assert!(!ping_from(&b.netns, &b.gateway.unwrap().to_string()));

        // A setup that died after its rules but before its record: teardown still finds them.
        restarted
            .isolation
            .ensure_group("crashed", "10.1.2.3".parse().unwrap(), &[web])
            .await
            .unwrap();
        let crashed = "10.1.2.3".parse().unwrap();
        let link = spoofing::Link {
            veth: "vethcrashed".to_string(),
            mac: spoofing::Mac::parse("02:00:0a:01:02:03").unwrap(),
            ip: crashed,
        };
        restarted
            .spoofing
            .ensure_group("crashed", &link)
            .await
            .unwrap();
        assert_eq!(net.group_rules("crashed", crashed).len(), 3);
        assert_eq!(net.spoofing_chain("crashed"), spoofing::group_rules(&link));
        restarted.teardown("crashed").await.unwrap();
        assert!(net.group_rules("crashed", crashed).is_empty());
        assert!(net.spoofing_chain("crashed").is_empty());
        assert!(
            !net.spoofing_rules()
                .iter()
                .any(|rule| rule.contains("vethcrashed"))
        );
    }

    #[tokio::test]
    async fn a_sandbox_cannot_claim_another_sandboxs_addresses() {
        if !privileged() {
            return;
        }
        let net = TestNet::new(8, |_, _| {});
        let a = net.network.setup("group-a", &[]).await.unwrap();
        let b = net.network.setup("group-b", &[]).await.unwrap();
        let (mac_a, mac_b) = (sandbox_mac(&a.netns), sandbox_mac(&b.netns));
        let veth_a = net.host_veth("group-a");
        let gateway = a.gateway.unwrap().to_string();
        assert!(ping_from_host(a.ip) && ping_from_host(b.ip));
        assert_eq!(neighbour(net.bridge(), a.ip), Some(mac_a.clone()));
        assert_eq!(fdb_port(net.bridge(), &mac_a), Some(veth_a.clone()));
        // The kernel lets an ARP change a neighbour entry a second after the last change.
        tokio::time::sleep(Duration::from_millis(1100)).await;

        // b announces a's address as its own (a gratuitous ARP), then answers for it to the node.
        let (ip_a, broadcast, zero) = (a.ip.to_string(), "ff:ff:ff:ff:ff:ff", "00:00:00:00:00:00");
        let node_mac = fs::read_to_string(format!("/sys/class/net/{}/address", net.bridge()))
            .unwrap()
            .trim()
            .to_string();
        send_frames(
            &b.netns,
            &[
                "eth0", "3", broadcast, &mac_b, "arp", "1", &mac_b, &ip_a, zero, &ip_a,
            ],
        );
        send_frames(
            &b.netns,
            &[
                "eth0", "3", &node_mac, &mac_b, "arp", "2", &mac_b, &ip_a, &node_mac, &gateway,
            ],
        );
        assert_eq!(
            neighbour(net.bridge(), a.ip),
            Some(mac_a.clone()),
            "b took a's address in the node's neighbour table"
        );
        // b sends from a's MAC: the bridge would send a's frames to b.
        send_frames(
            &b.netns,
            &[
                "eth0", "3", broadcast, &mac_a, "arp", "1", &mac_a, &ip_a, zero, &gateway,
            ],
        );
        assert_eq!(
            fdb_port(net.bridge(), &mac_a),
            Some(veth_a),
            "b took a's MAC on the bridge"
        );
        assert!(ping_from_host(a.ip) && ping_from_host(b.ip));
    }

    #[tokio::test]
    async fn an_ipv6_subnet_is_isolated_with_ip6tables() {
        if !privileged() {
            return;
        }
        let net = TestNet::new(7, |config, _| {
            config.subnet = format!("fd00:{:x}:7::/64", std::process::id() % 65536);
        });
        let network = &net.network;
        let web = [PortSpec {
            port: 8080,
            protocol: Protocol::Tcp,
        }];
        let a = network.setup("group-a", &web).await.unwrap();
        let b = network.setup("group-b", &[]).await.unwrap();
        assert!(a.ip.is_ipv6(), "{a:?}");
        let root = tempfile::tempdir().unwrap();
        let _servers = [
            serve(&a.netns, 8080, root.path()),
            serve(&a.netns, 8081, root.path()),
        ];
        wait_served(a.ip, 8080).await;
        wait_served(a.ip, 8081).await;
        assert!(
            fetch(Some(&b.netns), a.ip, 8080),
            "b cannot reach a's exposed port"
        );
        assert!(
            !fetch(Some(&b.netns), a.ip, 8081),
            "b reaches a's unexposed port"
        );
        let chain = isolation::group_chain(net.bridge(), "group-a");
        let rules = net.isolation_rules(&["group-a"]);
        assert!(
            rules.contains(&format!("-A {chain} -p tcp -m tcp --dport 8080 -j ACCEPT")),
            "{rules:#?}"
        );

        network.teardown("group-a").await.unwrap();
        assert!(net.group_rules("group-a", a.ip).is_empty());
        network.purge().await.unwrap();
        assert!(
            net.isolation_rules(&[]).is_empty(),
            "{:#?}",
            net.isolation_rules(&[])
        );
    }

    #[tokio::test]
    async fn published_ports_reach_the_sandbox_through_the_host() {
        if !privileged() {
            return;
        }
        let net = TestNet::new(2, |config, _| config.publish_ports = true);
        let port = 30000 + (std::process::id() % 30000) as u16;
        let spec = PortSpec {
            port,
            protocol: Protocol::Tcp,
        };
        let sandbox = net.network.setup("published", &[spec]).await.unwrap();

        let mut server = tokio::process::Command::new("nsenter")
            .arg(format!("--net={}", sandbox.netns.display()))
            .args(["busybox", "nc", "-l", "-p", &port.to_string()])
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        // The bridge's address is a host address: the connection goes through portmap's DNAT.
        let host = (sandbox.gateway.unwrap(), port);
        let mut stream = None;
        for _ in 0..50 {
            if let Ok(connected) = tokio::net::TcpStream::connect(host).await {
                stream = Some(connected);
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut stream = stream.expect("the published port never accepted a connection");
        stream.write_all(b"hello berth\n").await.unwrap();
        stream.shutdown().await.unwrap();
        drop(stream);
        let mut stdout = server.stdout.take().unwrap();
        let mut received = String::new();
        let read = tokio::io::AsyncReadExt::read_to_string(&mut stdout, &mut received);
        tokio::time::timeout(Duration::from_secs(5), read)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(received, "hello berth\n");
        let _ = server.kill().await;

        let dport = |rules: &str| {
            rules
                .lines()
                .any(|line| line.contains("dport") && line.contains(&port.to_string()))
        };
        let rules = || {
            String::from_utf8_lossy(&run("iptables", &["-w", "-t", "nat", "-S"]).stdout)
                .into_owned()
        };
        assert!(dport(&rules()));
        net.network.teardown("published").await.unwrap();
        assert!(!dport(&rules()), "portmap rules survived the teardown");
    }

    #[tokio::test]
    async fn a_failing_plugin_leaves_nothing_behind() {
        if !privileged() {
            return;
        }
        let net = TestNet::new(3, |config, dir| {
            // Real plugins, except a portmap that refuses every ADD: it fails after bridge succeeded.
            let bin = dir.join("bin");
            fs::create_dir(&bin).unwrap();
            for plugin in ["loopback", "bridge", "host-local", "firewall"] {
                std::os::unix::fs::symlink(config.cni_bin_dir.join(plugin), bin.join(plugin))
                    .unwrap();
            }
            let script = "#!/bin/sh\ncat >/dev/null\n[ \"$CNI_COMMAND\" = DEL ] && exit 0\n\
                          echo '{\"cniVersion\":\"1.0.0\",\"code\":7,\"msg\":\"fake portmap refuses\",\"details\":\"test\"}'\n\
                          exit 1\n";
            fs::write(bin.join("portmap"), script).unwrap();
            fs::set_permissions(bin.join("portmap"), fs::Permissions::from_mode(0o755)).unwrap();
            config.cni_bin_dir = bin;
        });
        let error = net.network.setup("doomed", &[]).await.unwrap_err();
        assert!(
            matches!(&error, NetworkError::Plugin { plugin, code: 7, .. } if plugin == "portmap"),
            "{error:?}"
        );
        assert!(
            error.to_string().contains("fake portmap refuses"),
            "{error}"
        );

        assert!(net.network.sandboxes().is_empty());
        assert!(list_dir(&net.network.netns_dir()).is_empty());
        assert!(list_dir(&net.network.records_dir()).is_empty());
        assert!(net.leases().is_empty(), "{:?}", net.leases());
        assert!(net.bridge_ports().is_empty(), "{:?}", net.bridge_ports());
        assert!(net.nat_rules().is_empty(), "{:?}", net.nat_rules());
        let chain = isolation::group_chain(net.bridge(), "doomed");
        assert!(
            !net.isolation_rules(&["doomed"])
                .iter()
                .any(|rule| rule.contains(&chain)),
            "{:#?}",
            net.isolation_rules(&["doomed"])
        );
    }

    #[tokio::test]
    async fn invalid_ids_and_ports_are_refused() {
        if !privileged() {
            return;
        }
        let net = TestNet::new(4, |_, _| {});
        let network = &net.network;
        for bad in ["", "..", "../escape", "a/b", "Group", &"a".repeat(65)] {
            let error = network.setup(bad, &[]).await.unwrap_err();
            assert!(
                matches!(error, NetworkError::InvalidId { .. }),
                "{bad:?}: {error:?}"
            );
            assert!(matches!(
                network.teardown(bad).await,
                Err(NetworkError::InvalidId { .. })
            ));
            assert_eq!(network.existing(bad), None);
        }
        let port_zero = PortSpec {
            port: 0,
            protocol: Protocol::Tcp,
        };
        assert!(matches!(
            network.setup("ok", &[port_zero]).await,
            Err(NetworkError::InvalidPort)
        ));
        assert!(network.sandboxes().is_empty());
        assert!(list_dir(&network.netns_dir()).is_empty());
    }

    #[tokio::test]
    async fn a_lost_namespace_is_replaced_and_its_lease_released() {
        if !privileged() {
            return;
        }
        let net = TestNet::new(5, |_, _| {});
        let network = &net.network;
        let first = network.setup("rebooted", &[]).await.unwrap();
        // What a reboot does: the namespace mount and the iptables rules are gone, the saved result
        // and the lease (both on disk) remain.
        nix::mount::umount2(&first.netns, MntFlags::MNT_DETACH).unwrap();
        net.forget_nat_rules();
        network.isolation.remove_node().await.unwrap();
        assert!(net.isolation_rules(&["rebooted"]).is_empty());
        assert_eq!(network.existing("rebooted"), None);
        assert_eq!(network.sandboxes(), ["rebooted"]);

        let second = network.setup("rebooted", &[]).await.unwrap();
        assert!(netns_is_live(&second.netns));
        assert!(ping_from_host(second.ip));
        let chain = isolation::group_chain(net.bridge(), "rebooted");
        let jump = format!(
            "-A {} -d {}/32 -j {chain}",
            isolation::forward_chain(net.bridge()),
            second.ip
        );
        let rules = net.isolation_rules(&["rebooted"]);
        assert_eq!(
            rules.iter().filter(|rule| **rule == jump).count(),
            1,
            "{rules:#?}"
        );
        assert_eq!(net.leases(), BTreeSet::from([second.ip.to_string()]));
        assert_eq!(net.bridge_ports().len(), 1, "{:?}", net.bridge_ports());
        network.teardown("rebooted").await.unwrap();
        assert!(net.nat_rules().is_empty(), "{:?}", net.nat_rules());
        assert!(net.group_rules("rebooted", second.ip).is_empty());
    }
}
