//! What one agent process is told to be: server, identity location, the node(s) it pretends or is, and
//! the runtime behind them.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use berth_proto::node::{OsType, Resources};

use crate::runtime::containerd::ContainerdConfig;
use crate::runtime::hollow::HollowConfig;

/// Everything [`crate::run`] needs. Built by the binary from flags, or directly by tests.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The apiserver's node gateway, e.g. `https://127.0.0.1:8444`: one per replica (tried in turn;
    /// a DNS name counts once per address). At least one.
    pub servers: Vec<String>,
    /// `<id>.<secret>.<ca-sha256-hex>`; needed only if `state_dir` holds no identity yet.
    pub join_token: Option<String>,
    /// Where the node key, certificate, CA and `node.json` live.
    pub state_dir: PathBuf,
    /// The node's name. With `hollow_nodes > 1`, node `i` (0-based) is `<node_name>-<i>` and keeps its
    /// state in `state_dir/<that name>`.
    pub node_name: String,
    /// The OS the node reports (and the only OS of groups placed on it).
    pub os_type: OsType,
    /// What each node offers: `cpu_millis`, `memory_mib`, `gpu`.
    pub capacity: Resources,
    /// Labels reported at join and in every `Hello`.
    pub labels: BTreeMap<String, String>,
    /// The container runtime behind the node(s).
    pub runtime: RuntimeKind,
    /// How many independent nodes this process runs (hollow only; default 1).
    pub hollow_nodes: u32,
    /// Where the node serves `AgentService` (logs) to the apiserver, e.g. `0.0.0.0:8445`; `None`: it
    /// serves none (the apiserver then answers that the node has no logs).
    pub agent_listen: Option<SocketAddr>,
    /// The URL the apiserver dials for `AgentService`, sent in `Hello`. Default:
    /// `https://<the local address used to reach the first server>:<the bound port>`.
    pub agent_advertise: Option<String>,
    /// After this long without a `DesiredState` from any apiserver the node fences itself: it stops
    /// every group (the control plane may be running them elsewhere by now). Must stay below the
    /// apiserver's `--node-lost-after`. `None`: never. Default [`DEFAULT_FENCE_AFTER`].
    pub fence_after: Option<Duration>,
    /// How often each node samples its running groups (CPU, memory, network) and sends the samples
    /// to the apiserver. `None`: never. Default [`DEFAULT_METRICS_INTERVAL`].
    pub metrics_interval: Option<Duration>,
}

/// The default of [`AgentConfig::metrics_interval`]: ACI's metrics have a one-minute grain, so six
/// samples per point.
pub const DEFAULT_METRICS_INTERVAL: Duration = Duration::from_secs(10);

/// The default of [`AgentConfig::fence_after`]: below the apiserver's default `--node-lost-after`
/// (30 s), above its NotReady timeout (15 s).
pub const DEFAULT_FENCE_AFTER: Duration = Duration::from_secs(20);

/// Which runtime converges the node's groups.
#[derive(Debug, Clone)]
pub enum RuntimeKind {
    /// Kubemark-style: no containers run, statuses are made up with plausible timing.
    Hollow(HollowConfig),
    /// Real containers on containerd.
    Containerd(Box<ContainerdConfig>),
}

impl AgentConfig {
    /// A config with defaults for everything but the server, state dir and node name: Linux, no
    /// capacity, no labels, one hollow node with default timings. More servers: push to `servers`.
    pub fn new(
        server: impl Into<String>,
        state_dir: impl Into<PathBuf>,
        node_name: impl Into<String>,
    ) -> Self {
        Self {
            servers: vec![server.into()],
            join_token: None,
            state_dir: state_dir.into(),
            node_name: node_name.into(),
            os_type: OsType::Linux,
            capacity: Resources::default(),
            labels: BTreeMap::new(),
            runtime: RuntimeKind::Hollow(HollowConfig::default()),
            hollow_nodes: 1,
            agent_listen: None,
            agent_advertise: None,
            fence_after: Some(DEFAULT_FENCE_AFTER),
            metrics_interval: Some(DEFAULT_METRICS_INTERVAL),
        }
    }

    /// The names and state directories of the nodes this process runs.
    pub(crate) fn nodes(&self) -> Vec<(String, PathBuf)> {
        if self.hollow_nodes <= 1 {
            return vec![(self.node_name.clone(), self.state_dir.clone())];
        }
        (0..self.hollow_nodes)
            .map(|i| {
                let name = format!("{}-{i}", self.node_name);
                let dir = self.state_dir.join(&name);
                (name, dir)
            })
            .collect()
    }
}

/// Why a config cannot run.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// No server to join or sync with.
    #[error("at least one server is needed")]
    NoServers,
    /// `hollow_nodes` is 0.
    #[error("hollow_nodes must be at least 1")]
    NoNodes,
    /// The node name is empty.
    #[error("the node name is empty")]
    EmptyName,
    /// Several nodes in one process are for the hollow runtime only.
    #[error("hollow_nodes > 1 needs the hollow runtime")]
    ManyRealNodes,
    /// Several nodes cannot share one agent service port.
    #[error("an agent service address is for a single node, not hollow_nodes > 1")]
    ManyAgentServices,
    /// `agent_advertise` is not an `https://host:port` URL.
    #[error("the agent service URL {0:?} is not like https://10.0.0.5:8445")]
    AgentAdvertise(String),
}

impl AgentConfig {
    /// Checks what can be checked without the network or the disk.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.servers.is_empty() {
            return Err(ConfigError::NoServers);
        }
        if self.hollow_nodes == 0 {
            return Err(ConfigError::NoNodes);
        }
        if self.node_name.trim().is_empty() {
            return Err(ConfigError::EmptyName);
        }
        if self.agent_listen.is_some() && self.hollow_nodes > 1 {
            return Err(ConfigError::ManyAgentServices);
        }
        if let Some(url) = &self.agent_advertise {
            let uri: Option<http::Uri> = url.parse().ok();
            let usable = uri.is_some_and(|uri| {
                uri.scheme_str() == Some("https") && uri.host().is_some_and(|h| !h.is_empty())
            });
            if !usable {
                return Err(ConfigError::AgentAdvertise(url.clone()));
            }
        }
        match self.runtime {
            RuntimeKind::Hollow(_) => Ok(()),
            RuntimeKind::Containerd(_) if self.hollow_nodes > 1 => Err(ConfigError::ManyRealNodes),
            RuntimeKind::Containerd(_) => Ok(()),
        }
    }
}

/// The interval between heartbeats when `node.json` does not say (the apiserver's default).
pub(crate) const DEFAULT_HEARTBEAT: Duration = Duration::from_millis(5000);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_node_uses_the_name_and_dir_as_given() {
        let config = AgentConfig::new("https://x:8444", "/state", "n1");
        assert_eq!(
            config.nodes(),
            vec![("n1".to_string(), PathBuf::from("/state"))]
        );
    }

    #[test]
    fn many_nodes_get_suffixed_names_and_subdirs() {
        let mut config = AgentConfig::new("https://x:8444", "/state", "hollow");
        config.hollow_nodes = 3;
        let nodes = config.nodes();
        assert_eq!(nodes.len(), 3);
        assert_eq!(
            nodes[0],
            ("hollow-0".into(), PathBuf::from("/state/hollow-0"))
        );
        assert_eq!(
            nodes[2],
            ("hollow-2".into(), PathBuf::from("/state/hollow-2"))
        );
    }

    #[test]
    fn the_agent_service_is_for_one_node_at_an_https_url() {
        let mut config = AgentConfig::new("https://x:8444", "/state", "n");
        config.agent_listen = Some("0.0.0.0:8445".parse().unwrap());
        config.validate().unwrap();
        config.hollow_nodes = 2;
        assert!(matches!(
            config.validate(),
            Err(ConfigError::ManyAgentServices)
        ));
        config.hollow_nodes = 1;
        config.agent_advertise = Some("https://10.0.0.5:8445".into());
        config.validate().unwrap();
        for bad in [
            "http://10.0.0.5:8445",
            "10.0.0.5:8445",
            "https://",
            "not a url",
        ] {
            config.agent_advertise = Some(bad.into());
            assert!(
                matches!(config.validate(), Err(ConfigError::AgentAdvertise(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn zero_nodes_is_rejected() {
        let mut config = AgentConfig::new("https://x:8444", "/state", "n");
        config.hollow_nodes = 0;
        assert!(matches!(config.validate(), Err(ConfigError::NoNodes)));
    }

    #[test]
    fn a_server_is_needed() {
        let mut config = AgentConfig::new("https://x:8444", "/state", "n");
        config.servers.clear();
        assert!(matches!(config.validate(), Err(ConfigError::NoServers)));
    }
}
