//! One node's life: get an identity (load it, or join), then keep the `Sync` stream up while the
//! supervisor converges the node's runtime.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use berth_proto::node::{JoinRequest, JoinResponse, OsType, Resources};
use rustls::crypto::CryptoProvider;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::agent_service::{self, AgentServiceError};
use crate::config::RuntimeKind;
use crate::connection::RECONNECT;
use crate::connection::join::{JoinError, join_once};
use crate::connection::servers::Servers;
use crate::connection::sync::{
    AGENT_VERSION, NodeFacts, error_chain, should_warn, sync_until_shutdown,
};
use crate::identity::{Identity, IdentityError, JoinToken, generate_key_and_csr};
use crate::runtime::containerd::{ContainerdConfig, ContainerdRuntime, StartError};
use crate::runtime::hollow::HollowRuntime;
use crate::runtime::{Changes, Runtime};
use crate::sampling::{Outgoing, Sampling};
use crate::supervisor::Supervisor;

/// Why a node stopped before shutdown.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The node has no identity and no join token was given.
    #[error("node {node}: {dir} holds no identity and no join token was given")]
    NoJoinToken { node: String, dir: PathBuf },
    /// The identity could not be loaded or saved.
    #[error("node {node}")]
    Identity {
        node: String,
        #[source]
        source: IdentityError,
    },
    /// The join failed for good. The reason is part of the message (it is what an operator must
    /// read: the apiserver's refusal or the CA pin mismatch).
    #[error("node {node} cannot join: {error}")]
    Join { node: String, error: JoinError },
    /// The agent service cannot start.
    /// The containerd runtime refused its configuration.
    #[error("node {node}: the containerd runtime cannot start")]
    Runtime {
        node: String,
        #[source]
        source: StartError,
    },
    #[error("node {node}")]
    AgentService {
        node: String,
        #[source]
        source: AgentServiceError,
    },
}

/// What every node of the process shares.
pub(crate) struct Shared {
    /// The apiserver replicas, tried in turn.
    pub servers: Servers,
    pub token: Option<JoinToken>,
    pub provider: Arc<CryptoProvider>,
    /// Bounds concurrent joins (thousands of hollow nodes join in waves).
    pub join_permits: Semaphore,
    pub os_type: OsType,
    pub capacity: Resources,
    pub labels: HashMap<String, String>,
    pub runtime: RuntimeKind,
    /// Where the node serves `AgentService`, if it does, and the URL it advertises for it.
    pub agent_listen: Option<std::net::SocketAddr>,
    pub agent_advertise: Option<String>,
    /// Fence after this long without news from any apiserver; `None`: never.
    pub fence_after: Option<std::time::Duration>,
    /// Where each node publishes its newest samples, for the agent's `/metrics`.
    pub samples: crate::sampling::Board,
    /// How often each node samples its running groups; `None`: never.
    pub metrics_interval: Option<std::time::Duration>,
}

/// Runs one node until `shutdown`; an error only if it can never run.
pub(crate) async fn run_node(
    shared: Arc<Shared>,
    name: String,
    state_dir: PathBuf,
    shutdown: CancellationToken,
) -> Result<(), NodeError> {
    let identity = tokio::select! {
        () = shutdown.cancelled() => return Ok(()),
        identity = obtain_identity(&shared, &name, &state_dir, &shutdown) => identity?,
    };
    let Some(identity) = identity else {
        return Ok(());
    };
    let tls = identity
        .client_config(Arc::clone(&shared.provider))
        .map_err(|source| NodeError::Identity {
            node: name.clone(),
            source,
        })?;
    let changes = Changes::default();
    let runtime: Arc<dyn Runtime> = match &shared.runtime {
        RuntimeKind::Hollow(config) => Arc::new(HollowRuntime::new(
            config.clone(),
            &identity.node_name,
            changes.clone(),
        )),
        RuntimeKind::Containerd(config) => {
            let started = tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                started = start_containerd(config, &state_dir, &changes, &shutdown) => started,
            };
            match started {
                Ok(Some(runtime)) => Arc::new(runtime),
                Ok(None) => return Ok(()),
                Err(source) => {
                    return Err(NodeError::Runtime {
                        node: name.clone(),
                        source,
                    });
                }
            }
        }
    };
    let agent_endpoint = match shared.agent_listen {
        Some(listen) => agent_service::start(
            listen,
            shared.agent_advertise.as_deref(),
            shared.servers.first(),
            identity.agent_tls(),
            Arc::clone(&runtime),
            shutdown.clone(),
        )
        .await
        .map_err(|source| NodeError::AgentService {
            node: name.clone(),
            source,
        })?,
        None => String::new(),
    };
    let mut supervisor = Supervisor::new(Arc::clone(&runtime), changes);
    let mut metrics = match shared.metrics_interval {
        Some(interval) => Sampling {
            node: identity.node_name.clone(),
            runtime,
            directory: supervisor.directory().clone(),
            board: shared.samples.clone(),
            interval,
        }
        .start(shutdown.clone()),
        None => Outgoing::none(),
    };
    let report_epoch = {
        let dir = state_dir.clone();
        off_runtime(move || crate::identity::next_report_epoch(&dir)).await
    }
    .map_err(|source| NodeError::Identity {
        node: name.clone(),
        source,
    })?;
    let facts = NodeFacts {
        capacity: shared.capacity.clone(),
        labels: shared.labels.clone(),
        heartbeat: identity.heartbeat_interval,
        agent_endpoint,
        report_epoch,
        fence_after: shared.fence_after,
    };
    sync_until_shutdown(
        &shared.servers,
        &Arc::new(tls),
        &facts,
        &mut supervisor,
        &mut metrics,
        &shutdown,
    )
    .await;
    tracing::info!("node stopped");
    Ok(())
}

/// Starts the containerd runtime, retrying with back-off while containerd cannot be reached; a
/// configuration it refuses is an error. `None` if shut down meanwhile.
async fn start_containerd(
    config: &ContainerdConfig,
    state_dir: &std::path::Path,
    changes: &Changes,
    shutdown: &CancellationToken,
) -> Result<Option<ContainerdRuntime>, StartError> {
    let mut backoff = RECONNECT.delays();
    let mut attempts: u32 = 0;
    loop {
        match ContainerdRuntime::start(config.clone(), state_dir, changes.clone()).await {
            Ok(runtime) => return Ok(Some(runtime)),
            Err(error) if !matches!(error, StartError::Connect { .. }) => return Err(error),
            Err(error) => {
                attempts += 1;
                let delay = backoff.next_delay();
                if should_warn(attempts) {
                    tracing::warn!(error = %error_chain(&error), ?delay, "the containerd runtime cannot start; retrying");
                }
                tokio::select! {
                    () = shutdown.cancelled() => return Ok(None),
                    () = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}

/// Loads the node's identity or joins for one. `None` if shut down while joining.
async fn obtain_identity(
    shared: &Shared,
    name: &str,
    state_dir: &std::path::Path,
    shutdown: &CancellationToken,
) -> Result<Option<Identity>, NodeError> {
    let identity_err = |source| NodeError::Identity {
        node: name.to_string(),
        source,
    };
    let loaded = {
        let (dir, name) = (state_dir.to_path_buf(), name.to_string());
        off_runtime(move || Identity::load(&dir, &name)).await
    };
    if let Some(identity) = loaded.map_err(identity_err)? {
        tracing::debug!(node_id = %identity.node_id, "identity loaded");
        return Ok(Some(identity));
    }
    let Some(token) = &shared.token else {
        return Err(NodeError::NoJoinToken {
            node: name.to_string(),
            dir: state_dir.to_path_buf(),
        });
    };
    let join_err = |error| NodeError::Join {
        node: name.to_string(),
        error,
    };
    let fresh = generate_key_and_csr(name).map_err(identity_err)?;
    let request = JoinRequest {
        token: token.credential(),
        node_name: name.to_string(),
        csr_pem: fresh.csr_pem.clone(),
        os_type: shared.os_type as i32,
        capacity: Some(shared.capacity.clone()),
        labels: shared.labels.clone(),
        agent_version: AGENT_VERSION.to_string(),
    };
    let mut backoff = RECONNECT.delays();
    let mut attempts: u32 = 0;
    let response = loop {
        let attempt = {
            let Ok(_permit) = shared.join_permits.acquire().await else {
                return Ok(None);
            };
            join_any(shared, token, &request).await
        };
        match attempt {
            Ok(response) => break response,
            Err(error) if error.is_fatal() => return Err(join_err(error)),
            Err(error) => {
                attempts += 1;
                let delay = backoff.next_delay();
                if should_warn(attempts) {
                    tracing::warn!(error = %error_chain(&error), attempts, ?delay, "join failed; retrying");
                } else {
                    tracing::debug!(error = %error_chain(&error), attempts, ?delay, "join failed; retrying");
                }
                tokio::select! {
                    () = shutdown.cancelled() => return Ok(None),
                    () = tokio::time::sleep(delay) => {}
                }
            }
        }
    };
    let identity = Identity::from_join(name, fresh.key_pem, &response, token.ca_sha256())
        .map_err(|error| join_err(JoinError::Identity(error)))?;
    let saved = {
        let (identity, dir) = (identity.clone(), state_dir.to_path_buf());
        off_runtime(move || identity.save(&dir)).await
    };
    saved.map_err(identity_err)?;
    tracing::info!(node_id = %identity.node_id, "joined");
    Ok(Some(identity))
}

/// One join round: each server in turn until one answers. A refusal or an untrusted certificate ends
/// the round (every replica of one cluster would say the same); the last transient error otherwise.
async fn join_any(
    shared: &Shared,
    token: &JoinToken,
    request: &JoinRequest,
) -> Result<JoinResponse, JoinError> {
    let mut last = None;
    for server in shared.servers.resolve().await {
        match join_once(
            &server,
            token,
            request.clone(),
            Arc::clone(&shared.provider),
        )
        .await
        {
            Ok(response) => return Ok(response),
            Err(error) if error.is_fatal() => return Err(error),
            Err(error) => {
                tracing::debug!(error = %error_chain(&error), %server, "join failed; trying the next server");
                last = Some(error);
            }
        }
    }
    Err(last.unwrap_or(JoinError::NoServer))
}

/// Runs disk work (reads, writes and fsyncs of the state directory) on the blocking pool, so thousands
/// of nodes joining at once do not stall the runtime's workers.
async fn off_runtime<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, IdentityError> + Send + 'static,
) -> Result<T, IdentityError> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result,
        Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
        Err(_) => Err(IdentityError::Interrupted),
    }
}
