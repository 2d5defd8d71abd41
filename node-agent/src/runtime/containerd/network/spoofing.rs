//! Anti-spoofing: a group sends into the node's bridge only from its own MAC and IP address.
//!
//! Containers keep `CAP_NET_RAW` (Docker's default set; busybox `ping` and `arping` need it), so a
//! tenant can write any frame onto its `eth0`: a gratuitous ARP claiming another group's address or
//! the gateway's (the node and the other groups then send that traffic to the attacker), a frame from
//! another group's MAC (the bridge then moves that MAC to the attacker's port), a packet from another
//! group's IP. The isolation rules ([`super::isolation`]) look at IP addresses and cannot tell. So
//! what enters the bridge from a group's host-side veth must come from the group's own MAC (its
//! `eth0`'s, in the CNI result) and be
//! - ARP (Ethernet and IPv4 sizes) whose sender MAC and sender IP are the group's own,
//! - IPv4 from the group's own IP (an IPv4 subnet) or IPv6 from its own IP (an IPv6 subnet),
//! - ICMPv6 router solicitations, neighbour solicitations and advertisements and MLDv2 reports from a
//!   link-local source, or (but advertisements) from the unspecified one, as duplicate address
//!   detection sends them: what an IPv6 stack needs to find its neighbours, nothing else over
//!   link-local addresses (which the isolation rules do not cover);
//!
//! and a neighbour advertisement may only announce the group's own IP or a link-local address,
//! router advertisements and redirects never. Anything else is dropped: other MACs, other addresses,
//! DHCP (Berth gives addresses with `host-local`), other ethertypes (VLAN tags included).
//!
//! The rules are nftables' bridge family, in a table per node, `bridge berth-<bridge>`: its base
//! chain `prerouting` (hook `prerouting`, priority -300, where ebtables' `nat` table sits) sees a frame
//! before the bridge learns its source MAC and before the node or another group receives it, so a
//! dropped frame changes nothing (a frame dropped in the later `forward` or `input` hooks has already
//! moved the victim's MAC to the attacker's port). The base chain looks the frame's input port up in
//! the verdict map `groups` (`"<veth>" : jump g-<hash>`, the hash of the group's isolation chain);
//! a group's chain `g-<hash>` accepts the frames above and drops the rest (the drops count). A port
//! without an element is not filtered: this kernel's nftables cannot tell the bridge of a port
//! (`meta ibrname`), so the base chain cannot drop what no group claims without dropping the
//! frames of every other bridge. A group's processes start only once its rules are there, and
//! [`super::Network::restore`] brings back what was lost.
//!
//! Every change is one `nft -f` transaction: the node's table, map and base chain are added if
//! missing (the base chain refilled), a group's chain is refilled whole and its element replaces
//! any stale one, so a change is never half done and ensuring again changes nothing. Removal is by
//! name: a group's element and chain, or the node's whole table. Building is pure ([`node_script`],
//! [`group_rules`], [`group_script`], [`removal_script`], [`link_of`], [`TableState::parse`]) and
//! [`Spoofing`] runs it.

use std::collections::BTreeSet;
use std::io;
use std::net::IpAddr;
use std::process::{Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use tokio::io::AsyncWriteExt as _;

use super::isolation;

/// nftables' command-line tool.
pub(crate) const PROGRAM: &str = "nft";
/// The node's base chain.
const BASE_CHAIN: &str = "prerouting";
/// The node's verdict map from input port to group chain.
const MAP: &str = "groups";
/// Where the base chain hooks: `dstnat`, before the bridge learns a frame's source or delivers it.
const PRIORITY: i32 = -300;
/// How long one `nft` call may take before it is killed.
const NFT_TIMEOUT: Duration = Duration::from_secs(30);

/// Serialises this process's reads and changes of the nodes' tables (a process may run several
/// networks on one bridge: tests), so that a change is never built from a listing another one made
/// stale.
static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The node's table (family `bridge`).
pub(crate) fn table(bridge: &str) -> String {
    format!("berth-{bridge}")
}

/// The chain of group `id` in the node's table.
pub(crate) fn group_chain(bridge: &str, id: &str) -> String {
    format!("g-{}", isolation::group_hash(bridge, id))
}

/// An Ethernet address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Mac([u8; 6]);

impl Mac {
    /// `aa:bb:cc:dd:ee:ff` (either case), else `None`.
    pub(crate) fn parse(text: &str) -> Option<Mac> {
        let mut bytes = [0u8; 6];
        let mut parts = text.split(':');
        for byte in &mut bytes {
            let part = parts.next()?;
            if part.len() != 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            *byte = u8::from_str_radix(part, 16).ok()?;
        }
        parts.next().is_none().then_some(Mac(bytes))
    }
}

impl std::fmt::Display for Mac {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

/// What a group's frames may carry, and where they enter the bridge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Link {
    /// The host side of the group's veth (a port of the bridge).
    pub(crate) veth: String,
    /// The MAC of the group's `eth0`.
    pub(crate) mac: Mac,
    /// The group's address.
    pub(crate) ip: IpAddr,
}

/// The parts of a CNI result [`link_of`] reads.
#[derive(Deserialize)]
struct LinkResult {
    #[serde(default)]
    interfaces: Vec<LinkInterface>,
    #[serde(default)]
    ips: Vec<LinkIp>,
}

#[derive(Deserialize)]
struct LinkInterface {
    #[serde(default)]
    name: String,
    #[serde(default)]
    mac: Option<String>,
    #[serde(default)]
    sandbox: Option<String>,
}

impl LinkInterface {
    fn in_sandbox(&self) -> bool {
        self.sandbox.as_deref().is_some_and(|path| !path.is_empty())
    }
}

#[derive(Deserialize)]
struct LinkIp {
    address: String,
    #[serde(default)]
    interface: Option<usize>,
}

/// The group's [`Link`] in the chain's final CNI `result` on the node with `bridge`, for the group's
/// address `ip`: the sandbox interface that has `ip` (else the only sandbox interface) and the one
/// host-side interface that is not the bridge.
pub(crate) fn link_of(result: &Value, bridge: &str, ip: IpAddr) -> Result<Link, String> {
    let result = LinkResult::deserialize(result).map_err(|error| error.to_string())?;
    let has_ip =
        |entry: &&LinkIp| entry.address.split('/').next().and_then(|a| a.parse().ok()) == Some(ip);
    let by_address = result
        .ips
        .iter()
        .find(has_ip)
        .and_then(|entry| entry.interface)
        .and_then(|index| result.interfaces.get(index))
        .filter(|interface| interface.in_sandbox());
    let inside: Vec<&LinkInterface> = result
        .interfaces
        .iter()
        .filter(|interface| interface.in_sandbox())
        .collect();
    let container = match (by_address, inside.as_slice()) {
        (Some(interface), _) | (None, &[interface]) => interface,
        (None, _) => return Err(format!("no sandbox interface has {ip}")),
    };
    let mac = container
        .mac
        .as_deref()
        .and_then(Mac::parse)
        .ok_or_else(|| format!("interface {:?} has no usable MAC address", container.name))?;
    let outside: Vec<&str> = result
        .interfaces
        .iter()
        .filter(|interface| !interface.in_sandbox() && interface.name != bridge)
        .map(|interface| interface.name.as_str())
        .collect();
    let [veth] = outside.as_slice() else {
        return Err(format!("expected one host-side veth, found {outside:?}"));
    };
    if !usable_interface_name(veth) {
        return Err(format!("host-side interface name {veth:?} is not usable"));
    }
    Ok(Link {
        veth: (*veth).to_string(),
        mac,
        ip,
    })
}

/// A Linux interface name that can be written in an nft string as it is.
fn usable_interface_name(name: &str) -> bool {
    (1..=15).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// The commands that make the node's table, map and base chain (refilled) if they are missing.
pub(crate) fn node_script(bridge: &str) -> Vec<String> {
    let table = table(bridge);
    vec![
        format!("add table bridge {table}"),
        format!(
            "add chain bridge {table} {BASE_CHAIN} {{ type filter hook prerouting priority \
             {PRIORITY}; policy accept; }}"
        ),
        format!("add map bridge {table} {MAP} {{ type ifname : verdict; }}"),
        format!("flush chain bridge {table} {BASE_CHAIN}"),
        format!("add rule bridge {table} {BASE_CHAIN} iifname vmap @{MAP}"),
    ]
}

/// The rules of the chain of a group with `link`, in order, as `nft list` prints them.
pub(crate) fn group_rules(link: &Link) -> Vec<String> {
    let mac = link.mac;
    let mut rules = vec![format!("ether saddr != {mac} counter drop")];
    // A neighbour advertisement's target address: 16 bytes from byte 8 of the ICMPv6 header.
    let link_local_target = "@th,64,16 & 0xffc0 != 0xfe80";
    match link.ip {
        IpAddr::V4(ip) => {
            rules.push(format!(
                "arp hlen 6 arp plen 4 arp saddr ether {mac} arp saddr ip {ip} accept"
            ));
            rules.push(format!("ip saddr {ip} accept"));
            rules.push("icmpv6 type { nd-router-advert, nd-redirect } counter drop".to_string());
            rules.push(format!(
                "icmpv6 type nd-neighbor-advert {link_local_target} counter drop"
            ));
        }
        IpAddr::V6(ip) => {
            rules.push("icmpv6 type { nd-router-advert, nd-redirect } counter drop".to_string());
            rules.push(format!(
                "icmpv6 type nd-neighbor-advert @th,64,128 != {:#034x} {link_local_target} \
                 counter drop",
                u128::from(ip)
            ));
            rules.push(format!("ip6 saddr {ip} accept"));
        }
    }
    rules.push(
        "ip6 saddr fe80::/10 icmpv6 type { nd-router-solicit, nd-neighbor-solicit, \
         nd-neighbor-advert, mld2-listener-report } accept"
            .to_string(),
    );
    rules.push(
        "ip6 saddr :: icmpv6 type { nd-router-solicit, nd-neighbor-solicit, mld2-listener-report } \
         accept"
            .to_string(),
    );
    rules.push("counter drop".to_string());
    rules
}

/// What Berth reads of a node's table: its chains and its map's elements.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct TableState {
    /// The chains' names.
    pub(crate) chains: BTreeSet<String>,
    /// The map's elements: input port and the chain it jumps to.
    pub(crate) elements: Vec<(String, String)>,
}

impl TableState {
    /// The state in `nft -j list table bridge <table>`'s output.
    pub(crate) fn parse(listing: &[u8]) -> Result<TableState, String> {
        #[derive(Deserialize)]
        struct Listing {
            nftables: Vec<Value>,
        }
        let listing: Listing =
            serde_json::from_slice(listing).map_err(|error| error.to_string())?;
        let mut state = TableState::default();
        for object in &listing.nftables {
            if let Some(name) = object["chain"]["name"].as_str() {
                state.chains.insert(name.to_string());
            }
            if object["map"]["name"].as_str() != Some(MAP) {
                continue;
            }
            let elements = object["map"]["elem"]
                .as_array()
                .map_or(&[][..], Vec::as_slice);
            for element in elements {
                let (Some(key), Some(target)) =
                    (element[0].as_str(), element[1]["jump"]["target"].as_str())
                else {
                    return Err(format!("unexpected map element {element}"));
                };
                state.elements.push((key.to_string(), target.to_string()));
            }
        }
        Ok(state)
    }

    /// The elements that would keep frames of a port other than `veth` going to `chain`, or frames
    /// of `veth` going elsewhere.
    fn stale(&self, veth: &str, chain: &str) -> Vec<&str> {
        self.elements
            .iter()
            .filter(|(key, target)| (key == veth) != (target == chain))
            .map(|(key, _)| key.as_str())
            .collect()
    }
}

/// The element key `key` as an nft string, if it can be written as one.
fn quoted(key: &str) -> Result<String, String> {
    if usable_interface_name(key) {
        Ok(format!("\"{key}\""))
    } else {
        Err(format!("map element {key:?} cannot be written back"))
    }
}

/// The commands that give group `id` with `link` its chain and element on the node with `bridge`
/// (the node's table too), given the table's `state` (`None`: no table yet).
pub(crate) fn group_script(
    bridge: &str,
    id: &str,
    link: &Link,
    state: Option<&TableState>,
) -> Result<Vec<String>, String> {
    let table = table(bridge);
    let chain = group_chain(bridge, id);
    let mut script = node_script(bridge);
    script.push(format!("add chain bridge {table} {chain}"));
    script.push(format!("flush chain bridge {table} {chain}"));
    script.extend(
        group_rules(link)
            .into_iter()
            .map(|rule| format!("add rule bridge {table} {chain} {rule}")),
    );
    for key in state.map_or_else(Vec::new, |state| state.stale(&link.veth, &chain)) {
        script.push(format!(
            "delete element bridge {table} {MAP} {{ {} }}",
            quoted(key)?
        ));
    }
    script.push(format!(
        "add element bridge {table} {MAP} {{ {} : jump {chain} }}",
        quoted(&link.veth)?
    ));
    Ok(script)
}

/// The commands that remove group `id`'s elements and chain from the node's table in `state`.
pub(crate) fn removal_script(
    bridge: &str,
    id: &str,
    state: &TableState,
) -> Result<Vec<String>, String> {
    let table = table(bridge);
    let chain = group_chain(bridge, id);
    let mut script = Vec::new();
    for (key, target) in &state.elements {
        if *target == chain {
            script.push(format!(
                "delete element bridge {table} {MAP} {{ {} }}",
                quoted(key)?
            ));
        }
    }
    if state.chains.contains(&chain) {
        script.push(format!("delete chain bridge {table} {chain}"));
    }
    Ok(script)
}

/// Why an anti-spoofing rule could not be set or removed.
#[derive(Debug, thiserror::Error)]
pub enum SpoofingError {
    /// `nft` could not be started.
    #[error("could not run {PROGRAM} (is nftables installed? scripts/setup installs it)")]
    Spawn {
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// `nft` did not finish in time and was killed.
    #[error("`{PROGRAM} {action}` did not finish within {} s", NFT_TIMEOUT.as_secs())]
    Timeout {
        /// What it was doing.
        action: String,
    },
    /// `nft` refused a change or a listing.
    #[error("`{PROGRAM} {action}` failed ({status}): {stderr}")]
    Failed {
        /// What it was doing (the first line of a script).
        action: String,
        /// How it exited.
        status: String,
        /// What it said.
        stderr: String,
    },
    /// The table holds what Berth cannot read or write back.
    #[error("the anti-spoofing table {table} is not as Berth makes it: {reason}")]
    Unexpected {
        /// The table.
        table: String,
        /// What is wrong.
        reason: String,
    },
}

/// Applies and removes one node's anti-spoofing rules.
#[derive(Debug)]
pub(crate) struct Spoofing {
    bridge: String,
    table: String,
    /// Whether [`Spoofing::ensure_node`] ran since this value was made or the table was removed.
    node_ready: AtomicBool,
    /// `PATH` for `nft`.
    path_env: String,
}

impl Spoofing {
    pub(crate) fn new(bridge: &str, path_env: String) -> Spoofing {
        Spoofing {
            bridge: bridge.to_string(),
            table: table(bridge),
            node_ready: AtomicBool::new(false),
            path_env,
        }
    }

    /// Creates the node's table, map and base chain if they are missing.
    pub(crate) async fn ensure_node(&self) -> Result<(), SpoofingError> {
        let _guard = LOCK.lock().await;
        self.apply(&node_script(&self.bridge)).await?;
        self.node_ready.store(true, Ordering::Release);
        Ok(())
    }

    /// [`Spoofing::ensure_node`] unless it already ran.
    pub(crate) async fn ensure_node_once(&self) -> Result<(), SpoofingError> {
        if self.node_ready.load(Ordering::Acquire) {
            return Ok(());
        }
        self.ensure_node().await
    }

    /// Makes group `id`'s chain admit exactly what `link` may send, and the node's map send the
    /// frames from `link`'s veth (and no other port's) to it; the node's table too, if it went.
    pub(crate) async fn ensure_group(&self, id: &str, link: &Link) -> Result<(), SpoofingError> {
        let _guard = LOCK.lock().await;
        let state = self.state().await?;
        let script = group_script(&self.bridge, id, link, state.as_ref())
            .map_err(|reason| self.unexpected(reason))?;
        self.apply(&script).await
    }

    /// Removes group `id`'s elements and chain; ones already gone are fine.
    pub(crate) async fn remove_group(&self, id: &str) -> Result<(), SpoofingError> {
        let _guard = LOCK.lock().await;
        let Some(state) = self.state().await? else {
            return Ok(());
        };
        let script =
            removal_script(&self.bridge, id, &state).map_err(|reason| self.unexpected(reason))?;
        if script.is_empty() {
            return Ok(());
        }
        self.apply(&script).await
    }

    /// Removes the node's table, and with it every group's chain: for removing the node.
    pub(crate) async fn remove_node(&self) -> Result<(), SpoofingError> {
        let _guard = LOCK.lock().await;
        self.node_ready.store(false, Ordering::Release);
        if self.state().await?.is_none() {
            return Ok(());
        }
        self.apply(&[format!("delete table bridge {}", self.table)])
            .await
    }

    fn unexpected(&self, reason: String) -> SpoofingError {
        SpoofingError::Unexpected {
            table: self.table.clone(),
            reason,
        }
    }

    /// The node's table as it is, or `None` if there is none.
    async fn state(&self) -> Result<Option<TableState>, SpoofingError> {
        let args = ["-j", "list", "table", "bridge", &self.table];
        let action = args.join(" ");
        let output = self.run(&args, None, &action).await?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            if stderr.contains("No such file or directory") {
                return Ok(None);
            }
            return Err(failed(action, &output));
        }
        TableState::parse(&output.stdout)
            .map(Some)
            .map_err(|reason| self.unexpected(reason))
    }

    /// Runs `script` as one transaction (`nft -f -`).
    async fn apply(&self, script: &[String]) -> Result<(), SpoofingError> {
        let action = format!("-f - ({})", script.first().map_or("", String::as_str));
        let input = script.join("\n") + "\n";
        let output = self.run(&["-f", "-"], Some(input), &action).await?;
        if output.status.success() {
            Ok(())
        } else {
            Err(failed(action, &output))
        }
    }

    async fn run(
        &self,
        args: &[&str],
        stdin: Option<String>,
        action: &str,
    ) -> Result<Output, SpoofingError> {
        let mut child = tokio::process::Command::new(PROGRAM)
            .args(args)
            .env("PATH", &self.path_env)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| SpoofingError::Spawn { source })?;
        let pipe = child.stdin.take();
        let run = async move {
            if let (Some(mut pipe), Some(input)) = (pipe, stdin) {
                pipe.write_all(input.as_bytes()).await?;
            }
            child.wait_with_output().await
        };
        tokio::time::timeout(NFT_TIMEOUT, run)
            .await
            .map_err(|_| SpoofingError::Timeout {
                action: action.to_string(),
            })?
            .map_err(|source| SpoofingError::Spawn { source })
    }
}

fn failed(action: String, output: &Output) -> SpoofingError {
    SpoofingError::Failed {
        action,
        status: output.status.to_string(),
        stderr: String::from_utf8_lossy(output.stderr.trim_ascii()).into_owned(),
    }
}

#[cfg(test)]
mod tests;
