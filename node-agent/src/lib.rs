//! Berth's node agent: joins the cluster, keeps one `Sync` stream to the apiserver, and converges its
//! container groups through a [`runtime::Runtime`].
//!
//! One process can run many independent nodes (`hollow_nodes`), each with its own identity, state
//! directory, connection, supervisor and runtime, all on one tokio runtime and one rustls crypto
//! provider, for scale tests with thousands of nodes.
//!
//! # Layout
//! - [`config`]: [`AgentConfig`], what a process is told to be.
//! - [`identity`]: the state directory (key, certificate, CA, `node.json`), join tokens, the pinned-CA
//!   verifier used before the node has a CA.
//! - [`connection`]: dialling with our own rustls connector, `Join`, the `Sync` stream with reconnect,
//!   the watch over how long no apiserver was heard.
//! - [`supervisor`]: the reconcile loop from desired state to runtime actions and status reports, and
//!   fencing (no apiserver heard for `--fence-after`: every group stopped).
//! - [`agent_service`]: the node's own mTLS gRPC service for the apiserver (`Logs`, `Exec`).
//! - [`sampling`]: each node's sampling loop (every `--metrics-interval`), the metrics on their way to
//!   the `Sync` stream, and the board of every node's newest samples.
//! - [`runtime`]: the [`runtime::Runtime`] trait and its implementations ([`runtime::containerd`]: real
//!   containers; [`runtime::hollow`]: simulated ones for scale work).
//! - `testing`: real-process fixtures (containerd, registry, the busybox image) for tests and benches.
//! - `node`: one node's life, from identity to stream.

pub mod agent_service;
pub mod config;
pub mod connection;
pub mod identity;
mod node;
pub mod runtime;
pub mod sampling;
pub mod supervisor;
#[doc(hidden)]
pub mod testing;
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;

use std::sync::Arc;

use anyhow::Context as _;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

pub use config::{AgentConfig, ConfigError, RuntimeKind};
pub use node::NodeError;
pub use runtime::hollow::HollowConfig;

use crate::connection::dial::ServerAddr;
use crate::connection::servers::Servers;
use crate::identity::JoinToken;

/// How many nodes of one process join at the same time.
const JOIN_CONCURRENCY: usize = 32;

/// Runs the agent's node(s) until `shutdown` is cancelled (then `Ok`), or until one of them fails for
/// good, e.g. a refused join (then every node stops and the error is returned).
pub async fn run(config: AgentConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    config.validate()?;
    let servers = config
        .servers
        .iter()
        .map(|server| {
            server
                .parse::<ServerAddr>()
                .with_context(|| format!("invalid server address {server:?}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let servers = Servers::new(servers)?;
    let token = config
        .join_token
        .as_deref()
        .map(str::parse::<JoinToken>)
        .transpose()
        .context("invalid join token")?;
    let shared = Arc::new(node::Shared {
        servers,
        token,
        provider: Arc::new(rustls::crypto::ring::default_provider()),
        join_permits: Semaphore::new(JOIN_CONCURRENCY),
        os_type: config.os_type,
        capacity: config.capacity.clone(),
        labels: config.labels.clone().into_iter().collect(),
        runtime: config.runtime.clone(),
        agent_listen: config.agent_listen,
        agent_advertise: config.agent_advertise.clone(),
        fence_after: config.fence_after,
        samples: sampling::Board::default(),
        metrics_interval: config.metrics_interval,
    });

    let nodes = config.nodes();
    tracing::info!(servers = %shared.servers, nodes = nodes.len(), "starting");
    let stop = shutdown.child_token();
    let mut tasks = JoinSet::new();
    for (name, state_dir) in nodes {
        let span = tracing::info_span!("node", name = %name);
        tasks.spawn(
            node::run_node(Arc::clone(&shared), name, state_dir, stop.clone()).instrument(span),
        );
    }

    let mut failure: Option<anyhow::Error> = None;
    while let Some(joined) = tasks.join_next().await {
        let error = match joined {
            Ok(Ok(())) => continue,
            Ok(Err(error)) => anyhow::Error::new(error),
            Err(join_error) => anyhow::Error::new(join_error).context("a node task panicked"),
        };
        if failure.is_none() {
            tracing::error!(error = format!("{error:#}"), "stopping every node");
            stop.cancel();
            failure = Some(error);
        }
    }
    match failure {
        Some(error) => Err(error),
        None => Ok(()),
    }
}
