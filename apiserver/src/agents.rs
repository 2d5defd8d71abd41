//! Dialling node agents' `AgentService` (port 8445 by default) to proxy a user's logs, exec and attach
//! requests.
//!
//! The apiserver presents the client certificate the cluster CA issued it at start (CN and SAN
//! `apiserver.berth.internal`, kept in memory only), trusts only the cluster CA, and verifies an agent
//! under the name `<node-id>.node.berth.internal` whatever address the node advertised, so a node can
//! never answer for another. One lazily connected channel per node is kept and reused; it reconnects
//! by itself.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_proto::node::agent_service_client::AgentServiceClient;
use berth_proto::node::{
    ExecInput, ExecOutput, ExecStart, LogChunk, LogsRequest, exec_input, exec_output,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Code, Streaming};

use crate::tls::{ClusterCa, TlsError};

/// How long a TCP connect plus TLS handshake to an agent may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest a whole logs call may take.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Why an agent call gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum AgentCallError {
    /// The node advertised an endpoint that is not an `https://` URL.
    #[error("the node advertised an unusable agent endpoint {endpoint:?}")]
    BadEndpoint { endpoint: String },
    /// The agent cannot be reached (refused, unreachable, TLS failure).
    #[error("the agent at {endpoint} cannot be reached")]
    Unreachable {
        endpoint: String,
        #[source]
        source: tonic::Status,
    },
    /// The agent did not finish answering within [`CALL_TIMEOUT`].
    #[error("the agent at {endpoint} did not answer within {CALL_TIMEOUT:?}")]
    TimedOut { endpoint: String },
    /// The agent runs no such group or container (not started yet, or already gone).
    #[error("the agent does not run that container")]
    NotFound(#[source] tonic::Status),
    /// The agent answered with any other error.
    #[error("the agent at {endpoint} failed the call")]
    Failed {
        endpoint: String,
        #[source]
        source: tonic::Status,
    },
}

struct Inner {
    identity: Identity,
    ca: Certificate,
    /// Node id -> (the endpoint the channel dials, the channel).
    channels: Mutex<HashMap<String, (String, Channel)>>,
}

/// Cheap handle to the apiserver's agent connections; clones share them.
#[derive(Clone)]
pub struct AgentDialer {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for AgentDialer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentDialer").finish_non_exhaustive()
    }
}

impl AgentDialer {
    /// Issues the apiserver's client certificate from `ca` and prepares to dial agents with it.
    pub fn new(ca: &ClusterCa) -> Result<Self, TlsError> {
        let client = ca.issue_apiserver_client()?;
        Ok(Self {
            inner: Arc::new(Inner {
                identity: Identity::from_pem(client.cert_pem, client.key_pem),
                ca: Certificate::from_pem(ca.cert_pem()),
                channels: Mutex::default(),
            }),
        })
    }

    /// The channel to `node_id`'s agent at `endpoint`: the cached one unless the node moved.
    fn channel(&self, node_id: &str, endpoint: &str) -> Result<Channel, AgentCallError> {
        let mut channels = self
            .inner
            .channels
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some((dialled, channel)) = channels.get(node_id)
            && dialled == endpoint
        {
            return Ok(channel.clone());
        }
        let bad = || AgentCallError::BadEndpoint {
            endpoint: endpoint.to_owned(),
        };
        let uri: http::Uri = endpoint.parse().map_err(|_| bad())?;
        if uri.scheme_str() != Some("https") || uri.host().is_none() {
            return Err(bad());
        }
        let tls = ClientTlsConfig::new()
            .ca_certificate(self.inner.ca.clone())
            .identity(self.inner.identity.clone())
            .domain_name(berth_proto::names::node(node_id));
        let channel = Endpoint::from(uri)
            .tls_config(tls)
            .map_err(|_| bad())?
            .connect_timeout(CONNECT_TIMEOUT)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_timeout(Duration::from_secs(20))
            .connect_lazy();
        channels.insert(node_id.to_owned(), (endpoint.to_owned(), channel.clone()));
        Ok(channel)
    }

    /// A container's whole log (current or previous run) as its agent renders it. The agent keeps
    /// at most `--log-max-bytes` × files per run, so this is bounded without another cap here.
    pub async fn logs(
        &self,
        node_id: &str,
        endpoint: &str,
        request: LogsRequest,
    ) -> Result<Vec<u8>, AgentCallError> {
        let channel = self.channel(node_id, endpoint)?;
        let call = async {
            let mut stream = AgentServiceClient::new(channel)
                .logs(request)
                .await?
                .into_inner();
            let mut content = Vec::new();
            while let Some(chunk) = stream.message().await? {
                content.extend_from_slice(&chunk.data);
            }
            Ok::<_, tonic::Status>(content)
        };
        match tokio::time::timeout(CALL_TIMEOUT, call).await {
            Ok(Ok(content)) => Ok(content),
            Ok(Err(status)) => Err(classify(endpoint, status)),
            Err(_) => Err(AgentCallError::TimedOut {
                endpoint: endpoint.to_owned(),
            }),
        }
    }

    /// A container's log as a stream (for `follow`): the call is answered (or refused) within
    /// [`CALL_TIMEOUT`]; the stream then lasts as long as the agent keeps it open.
    pub async fn logs_stream(
        &self,
        node_id: &str,
        endpoint: &str,
        request: LogsRequest,
    ) -> Result<Streaming<LogChunk>, AgentCallError> {
        let channel = self.channel(node_id, endpoint)?;
        let mut client = AgentServiceClient::new(channel);
        let call = client.logs(request);
        match tokio::time::timeout(CALL_TIMEOUT, call).await {
            Ok(Ok(response)) => Ok(response.into_inner()),
            Ok(Err(status)) => Err(classify(endpoint, status)),
            Err(_) => Err(AgentCallError::TimedOut {
                endpoint: endpoint.to_owned(),
            }),
        }
    }

    /// Starts a process in a container: returns once the agent has started it (or said why not).
    /// Dropping the returned [`ExecCall`] cancels the call, and the agent kills the process.
    pub async fn exec(
        &self,
        node_id: &str,
        endpoint: &str,
        start: ExecStart,
    ) -> Result<ExecCall, AgentCallError> {
        let channel = self.channel(node_id, endpoint)?;
        let (input, rx) = mpsc::channel(EXEC_INPUT_QUEUE);
        let first = ExecInput {
            input: Some(exec_input::Input::Start(start)),
        };
        // The queue is empty: this cannot wait.
        let _ = input.try_send(first);
        let call = async {
            let mut output = AgentServiceClient::new(channel)
                .exec(ReceiverStream::new(rx))
                .await?
                .into_inner();
            match output.message().await? {
                Some(ExecOutput {
                    output: Some(exec_output::Output::StartedPid(pid)),
                }) => Ok((output, pid)),
                _ => Err(tonic::Status::internal(
                    "the agent did not say the process started",
                )),
            }
        };
        match tokio::time::timeout(CALL_TIMEOUT, call).await {
            Ok(Ok((output, pid))) => Ok(ExecCall { input, output, pid }),
            Ok(Err(status)) => Err(classify(endpoint, status)),
            Err(_) => Err(AgentCallError::TimedOut {
                endpoint: endpoint.to_owned(),
            }),
        }
    }
}

/// Stdin and resizes queued towards an agent before a sender waits.
const EXEC_INPUT_QUEUE: usize = 64;

/// A running exec call: send stdin, resizes and the end of stdin into `input`; read output and, last,
/// the exit code from `output`.
pub struct ExecCall {
    pub input: mpsc::Sender<ExecInput>,
    pub output: Streaming<ExecOutput>,
    /// The process's pid on the node.
    pub pid: u32,
}

fn classify(endpoint: &str, status: tonic::Status) -> AgentCallError {
    let endpoint = endpoint.to_owned();
    match status.code() {
        Code::NotFound => AgentCallError::NotFound(status),
        // tonic reports connect, TLS and broken-connection failures as Unavailable.
        Code::Unavailable | Code::DeadlineExceeded => AgentCallError::Unreachable {
            endpoint,
            source: status,
        },
        _ => AgentCallError::Failed {
            endpoint,
            source: status,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_errors_are_told_apart() {
        assert!(matches!(
            classify("https://x", tonic::Status::not_found("no")),
            AgentCallError::NotFound(_)
        ));
        assert!(matches!(
            classify("https://x", tonic::Status::unavailable("down")),
            AgentCallError::Unreachable { .. }
        ));
        assert!(matches!(
            classify("https://x", tonic::Status::permission_denied("not you")),
            AgentCallError::Failed { .. }
        ));
    }
}
