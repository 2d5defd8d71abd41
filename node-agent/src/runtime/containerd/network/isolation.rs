//! Group isolation: the iptables chains of Berth's own that keep the groups on one bridge apart.
//!
//! Every group sits on the node's bridge and, with `br_netfilter`, traffic between two groups passes
//! the filter table's `FORWARD` like traffic from anywhere else; traffic from a group to the node
//! itself passes `INPUT`. The rules, in the filter table of `iptables` (or `ip6tables` for an IPv6
//! subnet), per node (`<bridge>` is the node's bridge, so nodes sharing a host never share a chain):
//!
//! - `BERTH-FWD-<bridge>` is the CNI `firewall` plugin's admin chain (`iptablesAdminChainName`), which
//!   the plugin jumps to from `CNI-FORWARD` before its own per-address accepts:
//!   replies (`ESTABLISHED,RELATED`) to the subnet are accepted; the subnet's traffic to link-local
//!   addresses (`169.254.0.0/16`, where clouds answer metadata) is dropped (on IPv6, neighbour
//!   discovery is accepted instead); then one jump per group (`-d <ip>`) to the group's chain; then
//!   everything else to the subnet is dropped. So a group whose rules are not (or no longer) there is
//!   closed, never open.
//! - `BERTH-G-<hash of bridge and group>` accepts the group's exposed ports (`ipAddress.ports`, the
//!   container port itself: ACI has no port mapping) and returns otherwise, to the drop.
//! - `BERTH-IN-<bridge>`, jumped to from `INPUT` for packets in from the bridge (any of the node's
//!   addresses): replies are accepted, DNS (UDP and TCP 53) is accepted, IPv6 neighbour discovery is
//!   accepted, the rest is dropped.
//!
//! Egress (a group's connections to the world) is untouched, and so is the node's own traffic to a
//! group (`OUTPUT`): the node's processes are the operator's, root anyway.
//!
//! Rules are ensured idempotently (`-C` before `-A`/`-I`; a group chain that differs from what it
//! should be is flushed and refilled) and removed by name, so a crash between two changes is repaired
//! by the next ensure or removal. Rule building is pure ([`node_rules`], [`group_rules`]) and
//! [`Isolation`] runs it.

use std::fmt;
use std::io;
use std::net::IpAddr;
use std::process::Output;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sha2::{Digest as _, Sha256};
use tracing::debug;

use super::{PortSpec, Protocol};

/// The chain the CNI `firewall` plugin jumps to from `FORWARD`, and that jumps to the admin chain.
pub(crate) const PLUGIN_CHAIN: &str = "CNI-FORWARD";
/// The comment on the plugin's jump from `FORWARD` to [`PLUGIN_CHAIN`] (the plugin's own text).
const PLUGIN_RULES_COMMENT: &str = "CNI firewall plugin rules";
/// The comment on the plugin's jump from [`PLUGIN_CHAIN`] to the admin chain (the plugin's own text).
const PLUGIN_ADMIN_COMMENT: &str = "CNI firewall plugin admin overrides";
/// Where clouds put metadata services (169.254.169.254) and other host-local services.
const LINK_LOCAL_V4: &str = "169.254.0.0/16";
/// How many hex digits of the hash name a group's chain.
const GROUP_HASH_LEN: usize = 16;
/// How long one `iptables` call may take (it waits for the xtables lock) before it is killed.
const IPTABLES_TIMEOUT: Duration = Duration::from_secs(60);

/// Which `iptables` a subnet needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Family {
    /// `iptables`.
    V4,
    /// `ip6tables`.
    V6,
}

impl Family {
    pub(crate) fn of(ip: IpAddr) -> Family {
        match ip {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }

    fn program(self) -> &'static str {
        match self {
            Family::V4 => "iptables",
            Family::V6 => "ip6tables",
        }
    }

    fn host_prefix(self) -> u8 {
        match self {
            Family::V4 => 32,
            Family::V6 => 128,
        }
    }
}

/// One rule of the filter table: its chain and what follows `-A <chain>` (matches and target).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rule {
    pub(crate) chain: String,
    pub(crate) spec: Vec<String>,
}

impl Rule {
    pub(crate) fn new(chain: &str, spec: &[&str]) -> Rule {
        Rule {
            chain: chain.to_string(),
            spec: spec.iter().map(|arg| arg.to_string()).collect(),
        }
    }

    /// `iptables <verb> <chain> [<position>] <spec>` (`ebtables` takes the same shape).
    pub(crate) fn args(&self, verb: &str, position: Option<&str>) -> Vec<String> {
        let mut args = vec![verb.to_string(), self.chain.clone()];
        args.extend(position.map(str::to_string));
        args.extend(self.spec.iter().cloned());
        args
    }
}

impl fmt::Display for Rule {
    /// As `iptables -S` lists it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "-A {}", self.chain)?;
        for arg in &self.spec {
            if arg.contains(' ') {
                write!(f, " \"{arg}\"")?;
            } else {
                write!(f, " {arg}")?;
            }
        }
        Ok(())
    }
}

/// The per-node chain the firewall plugin jumps to (its `iptablesAdminChainName`).
pub(crate) fn forward_chain(bridge: &str) -> String {
    format!("BERTH-FWD-{bridge}")
}

/// The per-node chain for packets from the groups to the node itself.
pub(crate) fn input_chain(bridge: &str) -> String {
    format!("BERTH-IN-{bridge}")
}

/// The chain of group `id` on the node with `bridge`: a hash, as ids are longer than chain names.
pub(crate) fn group_chain(bridge: &str, id: &str) -> String {
    format!("BERTH-G-{}", group_hash(bridge, id))
}

/// What names group `id`'s chains on the node with `bridge` (its anti-spoofing chain too): hex digits
/// of a hash of both.
pub(crate) fn group_hash(bridge: &str, id: &str) -> String {
    let digest = Sha256::new()
        .chain_update(bridge.as_bytes())
        .chain_update([0])
        .chain_update(id.as_bytes())
        .finalize();
    let hex: String = digest.iter().map(|byte| format!("{byte:02x}")).collect();
    hex[..GROUP_HASH_LEN].to_string()
}

/// What one node needs before any group is attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NodeRules {
    /// Chains to create if missing: Berth's two and the plugin's (its jump target).
    pub(crate) chains: Vec<String>,
    /// The rules of Berth's chains, in order, each appended if missing.
    pub(crate) rules: Vec<Rule>,
    /// Jumps from chains that are not Berth's, each inserted first if missing, in this order.
    pub(crate) hooks: Vec<Rule>,
}

/// The node's rules for `bridge` and `subnet` (in CIDR notation, of `family`).
pub(crate) fn node_rules(family: Family, bridge: &str, subnet: &str) -> NodeRules {
    let forward = forward_chain(bridge);
    let input = input_chain(bridge);
    let replies = ["-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED"];
    // IPv6's ARP, which bridged traffic passes through ip6tables: without it a group cannot find its
    // gateway's or another group's link-layer address.
    let neighbour_discovery = |chain: &str| {
        ["135", "136"].map(|kind| {
            let spec = ["-p", "ipv6-icmp", "-m", "icmp6", "--icmpv6-type", kind];
            Rule::new(chain, &[&spec[..], &["-j", "ACCEPT"]].concat())
        })
    };
    let mut rules = vec![Rule::new(
        &forward,
        &[&["-d", subnet], &replies[..], &["-j", "ACCEPT"]].concat(),
    )];
    match family {
        Family::V4 => rules.push(Rule::new(
            &forward,
            &["-i", bridge, "-d", LINK_LOCAL_V4, "-j", "DROP"],
        )),
        Family::V6 => rules.extend(neighbour_discovery(&forward)),
    }
    rules.push(Rule::new(&forward, &["-d", subnet, "-j", "DROP"]));

    rules.push(Rule::new(
        &input,
        &[&replies[..], &["-j", "ACCEPT"]].concat(),
    ));
    for protocol in ["udp", "tcp"] {
        rules.push(Rule::new(
            &input,
            &[
                "-p", protocol, "-m", protocol, "--dport", "53", "-j", "ACCEPT",
            ],
        ));
    }
    if family == Family::V6 {
        rules.extend(neighbour_discovery(&input));
    }
    rules.push(Rule::new(&input, &["-j", "DROP"]));

    let hooks = vec![
        Rule::new(
            PLUGIN_CHAIN,
            &[
                "-m",
                "comment",
                "--comment",
                PLUGIN_ADMIN_COMMENT,
                "-j",
                &forward,
            ],
        ),
        Rule::new(
            "FORWARD",
            &[
                "-m",
                "comment",
                "--comment",
                PLUGIN_RULES_COMMENT,
                "-j",
                PLUGIN_CHAIN,
            ],
        ),
        Rule::new("INPUT", &["-i", bridge, "-j", &input]),
    ];
    NodeRules {
        chains: vec![forward, input, PLUGIN_CHAIN.to_string()],
        rules,
        hooks,
    }
}

/// What one group needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GroupRules {
    /// The group's chain.
    pub(crate) chain: String,
    /// Its rules, in order: one accept per exposed port.
    pub(crate) rules: Vec<Rule>,
    /// The jump from the node's forward chain, inserted first.
    pub(crate) jump: Rule,
}

/// The rules of group `id` at `ip`, exposing `ports`, on the node with `bridge`.
pub(crate) fn group_rules(bridge: &str, id: &str, ip: IpAddr, ports: &[PortSpec]) -> GroupRules {
    let chain = group_chain(bridge, id);
    let rules = ports
        .iter()
        .map(|spec| {
            let protocol = match spec.protocol {
                Protocol::Tcp => "tcp",
                Protocol::Udp => "udp",
            };
            let port = spec.port.to_string();
            Rule::new(
                &chain,
                &[
                    "-p", protocol, "-m", protocol, "--dport", &port, "-j", "ACCEPT",
                ],
            )
        })
        .collect();
    let destination = format!("{ip}/{}", Family::of(ip).host_prefix());
    let jump = Rule::new(&forward_chain(bridge), &["-d", &destination, "-j", &chain]);
    GroupRules { chain, rules, jump }
}

/// Splits a line of `iptables -S` into arguments: words, or double-quoted strings with `\"` and `\\`.
pub(crate) fn split_rule(line: &str) -> Vec<String> {
    let mut args = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let Some(&first) = chars.peek() else {
            return args;
        };
        let mut arg = String::new();
        if first == '"' {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '"' => break,
                    '\\' => arg.extend(chars.next()),
                    c => arg.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                arg.push(c);
            }
        }
        args.push(arg);
    }
}

/// The rules of `chain` in an `iptables -S <chain>` listing, in order.
pub(crate) fn listed_rules(listing: &str, chain: &str) -> Vec<Rule> {
    listing
        .lines()
        .filter_map(|line| {
            let args = split_rule(line);
            match args.as_slice() {
                [append, listed, spec @ ..] if append == "-A" && listed == chain => Some(Rule {
                    chain: chain.to_string(),
                    spec: spec.to_vec(),
                }),
                _ => None,
            }
        })
        .collect()
}

/// The rules of a listing that jump to `target`.
pub(crate) fn jumps_to<'a>(rules: &'a [Rule], target: &str) -> Vec<&'a Rule> {
    rules
        .iter()
        .filter(|rule| {
            rule.spec
                .windows(2)
                .last()
                .is_some_and(|tail| tail[0] == "-j" && tail[1] == target)
        })
        .collect()
}

/// Why an isolation rule could not be set or removed.
#[derive(Debug, thiserror::Error)]
pub enum IsolationError {
    /// `iptables` could not be started.
    #[error("could not run {program} (is iptables installed?)")]
    Spawn {
        /// The program.
        program: &'static str,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// `iptables` did not finish in time and was killed.
    #[error("`{program} {}` did not finish within {} s", .args.join(" "), IPTABLES_TIMEOUT.as_secs())]
    Timeout {
        /// The program.
        program: &'static str,
        /// Its arguments.
        args: Vec<String>,
    },
    /// `iptables` refused a change.
    #[error("`{program} {}` failed ({status}): {stderr}", .args.join(" "))]
    Failed {
        /// The program.
        program: &'static str,
        /// Its arguments.
        args: Vec<String>,
        /// How it exited.
        status: String,
        /// What it said.
        stderr: String,
    },
}

/// Applies and removes one node's isolation rules.
#[derive(Debug)]
pub(crate) struct Isolation {
    family: Family,
    bridge: String,
    node: NodeRules,
    /// Whether [`Isolation::ensure_node`] ran since this value was made or the rules were removed.
    node_ready: AtomicBool,
    /// Serialises Berth's own changes, so that a check and the change it decides are never split.
    lock: tokio::sync::Mutex<()>,
    /// `PATH` for `iptables`.
    path_env: String,
}

impl Isolation {
    pub(crate) fn new(family: Family, bridge: &str, subnet: &str, path_env: String) -> Isolation {
        Isolation {
            family,
            bridge: bridge.to_string(),
            node: node_rules(family, bridge, subnet),
            node_ready: AtomicBool::new(false),
            lock: tokio::sync::Mutex::new(()),
            path_env,
        }
    }

    /// Creates the node's chains and rules that are missing (see the module documentation).
    pub(crate) async fn ensure_node(&self) -> Result<(), IsolationError> {
        let _guard = self.lock.lock().await;
        self.ensure_node_locked().await
    }

    /// [`Isolation::ensure_node`] unless it already ran: for each setup, where the plugins of other
    /// setups may change the same hooks at the same time.
    pub(crate) async fn ensure_node_once(&self) -> Result<(), IsolationError> {
        let _guard = self.lock.lock().await;
        if self.node_ready.load(Ordering::Acquire) {
            return Ok(());
        }
        self.ensure_node_locked().await
    }

    async fn ensure_node_locked(&self) -> Result<(), IsolationError> {
        for chain in &self.node.chains {
            self.ensure_chain(chain).await?;
        }
        for rule in &self.node.rules {
            if !self.exists(rule).await? {
                self.checked(&rule.args("-A", None)).await?;
            }
        }
        for hook in &self.node.hooks {
            if !self.exists(hook).await? {
                self.checked(&hook.args("-I", Some("1"))).await?;
            }
        }
        self.node_ready.store(true, Ordering::Release);
        Ok(())
    }

    /// Makes group `id`'s chain accept exactly `ports` and the node's forward chain send `ip` to it.
    pub(crate) async fn ensure_group(
        &self,
        id: &str,
        ip: IpAddr,
        ports: &[PortSpec],
    ) -> Result<(), IsolationError> {
        let group = group_rules(&self.bridge, id, ip, ports);
        let _guard = self.lock.lock().await;
        if self.list_if_exists(&group.jump.chain).await?.is_none() {
            // The node's chains went (an operator, a firewall reload) since they were ensured.
            self.ensure_node_locked().await?;
        }
        self.ensure_chain(&group.chain).await?;
        let listing = self.list(&group.chain).await?;
        if listed_rules(&listing, &group.chain) != group.rules {
            debug!(group = id, chain = %group.chain, "filling the group's isolation chain");
            self.checked(&["-F".to_string(), group.chain.clone()])
                .await?;
            for rule in &group.rules {
                self.checked(&rule.args("-A", None)).await?;
            }
        }
        let forward = &group.jump.chain;
        let listing = self.list(forward).await?;
        let rules = listed_rules(&listing, forward);
        let jumps = jumps_to(&rules, &group.chain);
        if jumps.len() != 1 || jumps[0] != &group.jump {
            for stale in jumps {
                self.checked(&stale.args("-D", None)).await?;
            }
            self.checked(&group.jump.args("-I", Some("1"))).await?;
        }
        Ok(())
    }

    /// Removes group `id`'s jump and chain; ones already gone are fine.
    pub(crate) async fn remove_group(&self, id: &str) -> Result<(), IsolationError> {
        let chain = group_chain(&self.bridge, id);
        let _guard = self.lock.lock().await;
        self.remove_jumps(&forward_chain(&self.bridge), &chain)
            .await?;
        self.remove_chain(&chain).await
    }

    /// Removes the node's chains, their hooks and any group chain still jumped to: for removing the
    /// node. The plugin's own `CNI-FORWARD` and its jump from `FORWARD` are shared and stay.
    pub(crate) async fn remove_node(&self) -> Result<(), IsolationError> {
        let _guard = self.lock.lock().await;
        self.node_ready.store(false, Ordering::Release);
        let forward = forward_chain(&self.bridge);
        let input = input_chain(&self.bridge);
        self.remove_jumps(PLUGIN_CHAIN, &forward).await?;
        self.remove_jumps("INPUT", &input).await?;
        let listing = self.list_if_exists(&forward).await?.unwrap_or_default();
        let groups: Vec<String> = listed_rules(&listing, &forward)
            .into_iter()
            .filter_map(|rule| rule.spec.last().cloned())
            .filter(|target| target.starts_with("BERTH-G-"))
            .collect();
        self.remove_chain(&forward).await?;
        for chain in groups {
            self.remove_chain(&chain).await?;
        }
        self.remove_chain(&input).await
    }

    async fn remove_jumps(&self, chain: &str, target: &str) -> Result<(), IsolationError> {
        let Some(listing) = self.list_if_exists(chain).await? else {
            return Ok(());
        };
        let rules = listed_rules(&listing, chain);
        for jump in jumps_to(&rules, target) {
            self.checked(&jump.args("-D", None)).await?;
        }
        Ok(())
    }

    async fn remove_chain(&self, chain: &str) -> Result<(), IsolationError> {
        if self.list_if_exists(chain).await?.is_none() {
            return Ok(());
        }
        self.checked(&["-F".to_string(), chain.to_string()]).await?;
        self.checked(&["-X".to_string(), chain.to_string()]).await?;
        Ok(())
    }

    async fn ensure_chain(&self, chain: &str) -> Result<(), IsolationError> {
        if self.list_if_exists(chain).await?.is_some() {
            return Ok(());
        }
        let create = ["-N".to_string(), chain.to_string()];
        let output = self.run(&create).await?;
        // Another user of the plugin's chain may have made it meanwhile.
        if output.status.success() || self.list_if_exists(chain).await?.is_some() {
            Ok(())
        } else {
            Err(self.failed(&create, &output))
        }
    }

    async fn exists(&self, rule: &Rule) -> Result<bool, IsolationError> {
        Ok(self.run(&rule.args("-C", None)).await?.status.success())
    }

    async fn list(&self, chain: &str) -> Result<String, IsolationError> {
        let args = ["-S".to_string(), chain.to_string()];
        let output = self.run(&args).await?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            Err(self.failed(&args, &output))
        }
    }

    /// `-S <chain>`, or `None` if the chain does not exist.
    async fn list_if_exists(&self, chain: &str) -> Result<Option<String>, IsolationError> {
        let output = self.run(&["-S".to_string(), chain.to_string()]).await?;
        Ok(output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).into_owned()))
    }

    async fn checked(&self, args: &[String]) -> Result<(), IsolationError> {
        let output = self.run(args).await?;
        if output.status.success() {
            Ok(())
        } else {
            Err(self.failed(args, &output))
        }
    }

    fn failed(&self, args: &[String], output: &Output) -> IsolationError {
        IsolationError::Failed {
            program: self.family.program(),
            args: args.to_vec(),
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(output.stderr.trim_ascii()).into_owned(),
        }
    }

    /// `iptables -w -t filter <args>` (or `ip6tables`), waiting for the xtables lock.
    async fn run(&self, args: &[String]) -> Result<Output, IsolationError> {
        let program = self.family.program();
        let command = tokio::process::Command::new(program)
            .args(["-w", "-t", "filter"])
            .args(args)
            .env("PATH", &self.path_env)
            .kill_on_drop(true)
            .output();
        tokio::time::timeout(IPTABLES_TIMEOUT, command)
            .await
            .map_err(|_| IsolationError::Timeout {
                program,
                args: args.to_vec(),
            })?
            .map_err(|source| IsolationError::Spawn { program, source })
    }
}

#[cfg(test)]
mod tests;
