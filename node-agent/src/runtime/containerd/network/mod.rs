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
//!
//! # Layout
//! - `cni`: the conflist, and running one plugin the CNI way (environment, stdin, result or error).
//! - `sandbox`: attaching one sandbox (ADD through the chain, undone on failure) and detaching it.
//! - `netns`: creating, pinning and removing network namespaces; the shared mount of `netns/`.
//! - `state`: the state directory's layout, the saved sandbox records, small file helpers.
//! - `validate`: subnets, bridge names and sandbox ids the network accepts.
//! - `locks`: one async lock per sandbox id.
//! - `error`: [`NetworkError`].
//! - [`isolation`], [`spoofing`]: the group's iptables and nftables rules.

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tracing::debug;

use self::cni::{build_conflist, check_plugins, network_name};
use self::isolation::{Family, Isolation};
use self::locks::IdLocks;
use self::netns::{create_netns, make_shared_mount, netns_is_live, unmount};
use self::spoofing::Spoofing;
use self::state::{SandboxRecord, create_dir, list_dir, write_atomically};
use self::validate::{Subnet, validate_bridge, validate_id};

pub use self::cni::CniCommand;
pub(crate) use self::cni::plugin_path_env;
pub use self::error::NetworkError;

mod cni;
mod error;
pub mod isolation;
mod locks;
mod netns;
mod sandbox;
pub mod spoofing;
mod state;
mod validate;

/// Where CNI plugins are usually installed: Debian's package, then the upstream release layout.
const CNI_BIN_DIRS: [&str; 2] = ["/usr/lib/cni", "/opt/cni/bin"];

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

#[cfg(test)]
mod tests;
