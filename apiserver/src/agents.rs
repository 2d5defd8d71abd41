//! Dialling node agents' `AgentService` (port 8445 by default) to proxy a user's logs request (and,
//! later, exec and attach).
//!
//! The apiserver presents the client certificate the cluster CA issued it at start (CN and SAN
//! `apiserver.berth.internal`, kept in memory only), trusts only the cluster CA, and verifies an agent
//! under the name `<node-id>.node.berth.internal` whatever address the node advertised, so a node can
//! never answer for another. One lazily connected channel per node is kept and reused; it reconnects
//! by itself.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_proto::node::LogsRequest;
use berth_proto::node::agent_service_client::AgentServiceClient;
use tonic::Code;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

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

    /// Reads a container's logs from `node_id`'s agent at `endpoint`: the rendered text, at most the
    /// last `max_bytes` of it (whole lines).
    pub async fn logs(
        &self,
        node_id: &str,
        endpoint: &str,
        request: LogsRequest,
        max_bytes: usize,
    ) -> Result<Vec<u8>, AgentCallError> {
        let channel = self.channel(node_id, endpoint)?;
        let call = async {
            let mut stream = AgentServiceClient::new(channel)
                .logs(request)
                .await?
                .into_inner();
            let mut tail = TailBuffer::new(max_bytes);
            while let Some(chunk) = stream.message().await? {
                tail.push(&chunk.data);
            }
            Ok::<_, tonic::Status>(tail.finish())
        };
        match tokio::time::timeout(CALL_TIMEOUT, call).await {
            Ok(Ok(content)) => Ok(content),
            Ok(Err(status)) => Err(classify(endpoint, status)),
            Err(_) => Err(AgentCallError::TimedOut {
                endpoint: endpoint.to_owned(),
            }),
        }
    }
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

/// Keeps the last `max` bytes of what is pushed, starting at a line: ACI answers the newest lines
/// when a log is larger than one answer may be.
struct TailBuffer {
    max: usize,
    bytes: Vec<u8>,
    /// Something was dropped from the front.
    cut: bool,
    /// The last byte dropped ended a line (what is kept starts at a line).
    cut_at_line: bool,
}

impl TailBuffer {
    fn new(max: usize) -> Self {
        Self {
            max,
            bytes: Vec::new(),
            cut: false,
            cut_at_line: true,
        }
    }

    fn push(&mut self, data: &[u8]) {
        self.bytes.extend_from_slice(data);
        // Trim only once twice the limit is held, so trimming costs O(1) per byte.
        if self.bytes.len() > self.max.saturating_mul(2) {
            self.trim();
        }
    }

    fn trim(&mut self) {
        let excess = self.bytes.len().saturating_sub(self.max);
        if excess > 0 {
            self.cut_at_line = self.bytes[excess - 1] == b'\n';
            self.bytes.drain(..excess);
            self.cut = true;
        }
    }

    fn finish(mut self) -> Vec<u8> {
        self.trim();
        if self.cut && !self.cut_at_line {
            let first_line_end = self.bytes.iter().position(|&b| b == b'\n');
            match first_line_end {
                Some(end) => {
                    self.bytes.drain(..=end);
                }
                None => self.bytes.clear(),
            }
        }
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tail(max: usize, chunks: &[&str]) -> String {
        let mut buffer = TailBuffer::new(max);
        for chunk in chunks {
            buffer.push(chunk.as_bytes());
        }
        String::from_utf8(buffer.finish()).unwrap()
    }

    #[test]
    fn a_log_within_the_limit_is_kept_whole() {
        assert_eq!(tail(100, &["one\n", "tw", "o\n"]), "one\ntwo\n");
        assert_eq!(tail(8, &["one\ntwo\n"]), "one\ntwo\n");
    }

    #[test]
    fn a_larger_log_keeps_its_newest_whole_lines() {
        // Cut inside "three": the partial line goes.
        assert_eq!(tail(8, &["one\ntwo\nthree\nfour\n"]), "four\n");
        // Cut right after a newline: nothing more goes.
        assert_eq!(tail(11, &["one\ntwo\nthree\nfour\n"]), "three\nfour\n");
        // Many small chunks trim as they come and end the same.
        let many: Vec<String> = (0..1000).map(|i| format!("line {i}\n")).collect();
        let chunks: Vec<&str> = many.iter().map(String::as_str).collect();
        assert_eq!(tail(20, &chunks), "line 998\nline 999\n");
        // One line longer than the limit leaves nothing rather than half a line.
        assert_eq!(tail(4, &["a very long line\n"]), "");
    }

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
