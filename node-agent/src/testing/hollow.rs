//! Hollow nodes that can die like machines, for tests and benches of node loss.
//!
//! [`HollowNodes`] runs `config.hollow_nodes` hollow nodes in one agent (as the binary's
//! `--hollow-nodes` does), each apiserver replica reached through a [`Relay`] of the set's own.
//! [`HollowNodes::die`] ends them all at once the way a power cut ends machines: the relays go
//! silent first (nothing more reaches any apiserver, and no stream is closed: the apiserver's end of
//! each connection stays open and hears nothing), then the agent stops (its hollow groups vanish
//! with it). Other sets, and nodes started otherwise, keep running. Start several sets for a
//! cluster where some machines die and the rest live.

use std::net::SocketAddr;

use anyhow::Context as _;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::relay::Relay;
use crate::config::{AgentConfig, RuntimeKind};
use crate::connection::dial::ServerAddr;

/// A set of hollow nodes in one agent, behind relays of their own.
pub struct HollowNodes {
    names: Vec<String>,
    relays: Vec<Relay>,
    shutdown: CancellationToken,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl HollowNodes {
    /// Starts the nodes `config` describes (hollow runtime only). Each of `config.servers` must
    /// name an IP address, or a name that resolves to one address, on this machine: its relay
    /// listens on that address. Returns at once; the nodes join and turn Ready on their own.
    pub async fn start(mut config: AgentConfig) -> anyhow::Result<HollowNodes> {
        anyhow::ensure!(
            matches!(config.runtime, RuntimeKind::Hollow(_)),
            "HollowNodes runs the hollow runtime only"
        );
        config.validate()?;
        let mut relays = Vec::new();
        let mut servers = Vec::new();
        for server in &config.servers {
            let addr: ServerAddr = server
                .parse()
                .with_context(|| format!("server {server:?}"))?;
            let upstream: SocketAddr = tokio::net::lookup_host((addr.host(), addr.port()))
                .await
                .with_context(|| format!("resolving {server}"))?
                .next()
                .with_context(|| format!("{server} resolves to no address"))?;
            let relay = Relay::start(upstream)
                .await
                .with_context(|| format!("starting a relay to {upstream}"))?;
            let host = if addr.host().contains(':') {
                format!("[{}]", addr.host())
            } else {
                addr.host().to_owned()
            };
            servers.push(format!("https://{host}:{}", relay.addr().port()));
            relays.push(relay);
        }
        config.servers = servers;
        let names = config.nodes().into_iter().map(|(name, _)| name).collect();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(crate::run(config, shutdown.clone()));
        Ok(HollowNodes {
            names,
            relays,
            shutdown,
            task: Some(task),
        })
    }

    /// The nodes' names (`<node_name>-<i>`, or `node_name` for one node).
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Cuts every node off at once and stops them (see the module doc). Returns once the agent has
    /// stopped; its error, if it had failed before.
    pub async fn die(&mut self) -> anyhow::Result<()> {
        for relay in &self.relays {
            relay.go_silent();
        }
        self.stop().await
    }

    /// Stops the agent with its relays still passing (the streams close as at any shutdown).
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        match self.task.take() {
            Some(task) => task.await.context("the agent task panicked")?,
            None => Ok(()),
        }
    }
}

impl Drop for HollowNodes {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
