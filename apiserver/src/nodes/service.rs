//! The gRPC `NodeService` agents call. `Join` may be called without a client certificate; `Sync`
//! takes the node's identity from its verified certificate (`CN=node:<id>`), never from anything the
//! agent says. Both only check and parse: what a message means is the other modules' business.

use std::pin::Pin;

use berth_proto::node::{
    AgentReport, DesiredState, Hello, JoinRequest, JoinResponse, agent_report,
    node_service_server::NodeService,
};
use futures::Stream;
use tokio_stream::StreamExt as _;
use tonic::{Request, Response, Status, Streaming};

use super::NodeGateway;
use super::sessions::Opened;
use crate::model::{OsType, Size};
use crate::store::{JoinRefusal, NodeRecord, NodeStatus, StoreError};
use crate::tls::node_id_from_cert;

impl From<StoreError> for Status {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Conflict(what) => Status::already_exists(what.to_string()),
            other => {
                tracing::error!(error = %other, "store error in node gateway");
                Status::unavailable("the apiserver's store is unavailable; retry")
            }
        }
    }
}

/// Splits "<id>.<secret>".
fn parse_join_token(token: &str) -> Option<(&str, &str)> {
    let (id, secret) = token.split_once('.')?;
    let ok = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    (ok(id, 6) && ok(secret, 16)).then_some((id, secret))
}

fn valid_node_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// The latest node clock in a `Hello` (0: it reports no group).
fn hello_clock(hello: &Hello) -> i64 {
    hello
        .groups
        .iter()
        .map(|g| g.observed_unix_ms)
        .max()
        .unwrap_or(0)
}

/// The node clock a message carries (0: none) and whether it carries reports.
fn clock_of(body: Option<&agent_report::Body>) -> (i64, bool) {
    match body {
        Some(agent_report::Body::Group(status)) => (status.observed_unix_ms, true),
        Some(agent_report::Body::Heartbeat(beat)) => (beat.node_time_unix_ms, false),
        Some(agent_report::Body::Metrics(metrics)) => (
            metrics
                .groups
                .iter()
                .map(|g| g.observed_unix_ms)
                .max()
                .unwrap_or(0),
            false,
        ),
        Some(agent_report::Body::Hello(hello)) => (hello_clock(hello), !hello.groups.is_empty()),
        None => (0, false),
    }
}

type SyncStream = Pin<Box<dyn Stream<Item = Result<DesiredState, Status>> + Send + 'static>>;

impl NodeGateway {
    /// A `Hello`'s news: where the agent serves, and the groups it runs.
    async fn hello(&self, node_id: &str, seq: u64, hello: &Hello) {
        if let Err(err) = self
            .inner
            .endpoints
            .remember(node_id, &hello.agent_endpoint)
            .await
        {
            // Logs and exec of the node fail until its next Hello; its groups are not affected.
            tracing::error!(error = %err, node = %node_id, "cannot record agent endpoint");
        }
        for status in &hello.groups {
            self.inner.reports.report(node_id, seq, status);
        }
    }

    /// Reads a node's stream until it ends or the apiserver stops, then forgets the session.
    async fn read_reports(self, node_id: String, epoch: u64, mut reports: Streaming<AgentReport>) {
        let shutdown = self.inner.shutdown.clone();
        loop {
            let report = tokio::select! {
                _ = shutdown.cancelled() => break,
                report = reports.next() => report,
            };
            let Some(report) = report else { break };
            if !self.inner.sessions.has(&node_id) {
                // The node was deleted (its stream ended): nothing it says counts any more.
                break;
            }
            let report = match report {
                Ok(report) => report,
                Err(status) => {
                    tracing::debug!(node = %node_id, %status, "sync stream error");
                    break;
                }
            };
            let (clock, with_reports) = clock_of(report.body.as_ref());
            if let Err(err) = self
                .inner
                .liveness
                .seen(&node_id, clock, with_reports)
                .await
            {
                tracing::error!(error = %err, node = %node_id, "cannot record heartbeat");
            }
            match report.body {
                Some(agent_report::Body::Group(status)) => {
                    self.inner.reports.report(&node_id, report.seq, &status)
                }
                Some(agent_report::Body::Heartbeat(_)) => self.inner.sessions.ack(&node_id, epoch),
                Some(agent_report::Body::Metrics(metrics)) => {
                    self.inner.samples.metrics(&node_id, &metrics)
                }
                None => {}
                Some(agent_report::Body::Hello(hello)) => {
                    self.hello(&node_id, report.seq, &hello).await
                }
            }
        }
        self.inner.sessions.close(&node_id, epoch);
        tracing::info!(node = %node_id, "node disconnected");
    }
}

#[tonic::async_trait]
impl NodeService for NodeGateway {
    async fn join(&self, request: Request<JoinRequest>) -> Result<Response<JoinResponse>, Status> {
        let req = request.into_inner();
        let (token_id, secret) = parse_join_token(&req.token)
            .ok_or_else(|| Status::unauthenticated("the join token is malformed"))?;
        if !valid_node_name(&req.node_name) {
            return Err(Status::invalid_argument(format!(
                "node name '{}' is not a DNS label (lower-case letters, digits, '-', at most 63)",
                req.node_name
            )));
        }
        let os_type = OsType::from_proto(req.os_type())
            .ok_or_else(|| Status::invalid_argument("os_type is required"))?;
        let capacity = req.capacity.unwrap_or_default();
        if capacity.cpu_millis == 0 || capacity.memory_mib == 0 {
            return Err(Status::invalid_argument(
                "capacity must have CPU and memory",
            ));
        }
        let node_id = uuid::Uuid::new_v4().to_string();
        let certificate_pem = self
            .inner
            .ca
            .sign_node_csr(&req.csr_pem, &node_id)
            .map_err(|e| Status::invalid_argument(format!("the CSR is not usable: {e}")))?;
        let now = crate::now_ms();
        let size = Size {
            cpu_millis: capacity.cpu_millis,
            memory_mib: capacity.memory_mib,
            gpu: capacity.gpu,
        };
        let record = NodeRecord {
            id: node_id.clone(),
            name: req.node_name.clone(),
            os_type,
            capacity: size,
            used: Size::default(),
            labels: req.labels.into_iter().collect(),
            agent_version: req.agent_version,
            status: NodeStatus::NotReady,
            last_heartbeat_ms: now,
            joined_ms: now,
            cordoned: false,
            draining: false,
        };
        match self
            .inner
            .store
            .join_node(token_id, &crate::auth::hash(secret), &record)
            .await?
        {
            Ok(()) => {}
            Err(JoinRefusal::InvalidToken) => {
                return Err(Status::unauthenticated(
                    "the join token is unknown, used up or expired",
                ));
            }
            Err(JoinRefusal::NameTaken) => {
                return Err(Status::already_exists(format!(
                    "a node named '{}' has already joined",
                    req.node_name
                )));
            }
        }
        self.joined(os_type, size);
        tracing::info!(node = %req.node_name, id = %node_id, "node joined");
        Ok(Response::new(JoinResponse {
            node_id,
            certificate_pem,
            ca_pem: self.inner.ca.cert_pem().to_owned(),
            heartbeat_interval_ms: self.inner.heartbeat_interval_ms,
        }))
    }

    type SyncStream = SyncStream;

    async fn sync(
        &self,
        request: Request<Streaming<AgentReport>>,
    ) -> Result<Response<Self::SyncStream>, Status> {
        let node_id = request
            .peer_certs()
            .and_then(|certs| certs.first().and_then(node_id_from_cert))
            .ok_or_else(|| Status::unauthenticated("Sync needs the node's client certificate"))?;
        if self.inner.store.node(&node_id).await?.is_none() {
            return Err(Status::permission_denied(
                "this node is not (or no longer) part of the cluster",
            ));
        }
        let mut reports = request.into_inner();
        let (hello_seq, hello) = match reports.next().await {
            Some(Ok(AgentReport {
                seq,
                body: Some(agent_report::Body::Hello(hello)),
            })) => (seq, hello),
            Some(Ok(_)) => {
                return Err(Status::failed_precondition(
                    "the first message of Sync must be Hello",
                ));
            }
            Some(Err(status)) => return Err(status),
            None => return Err(Status::cancelled("the stream closed before Hello")),
        };

        // Register first, then read the desired state: a change made in between reaches the node as a
        // delta after the full state, and deltas are idempotent.
        let Opened { epoch, tx, rx } = self.inner.sessions.open(&node_id);
        self.inner
            .liveness
            .seen(&node_id, hello_clock(&hello), !hello.groups.is_empty())
            .await?;
        self.hello(&node_id, hello_seq, &hello).await;
        let groups = self.inner.assignments.on_node(&node_id).await?;
        let _ = tx.send(Ok(self.inner.sessions.full(groups)));
        tracing::info!(node = %node_id, groups = hello.groups.len(), "node connected");

        tokio::spawn(self.clone().read_reports(node_id, epoch, reports));

        let shutdown = self.inner.shutdown.clone();
        let stream = futures::StreamExt::take_until(
            tokio_stream::wrappers::UnboundedReceiverStream::new(rx),
            async move { shutdown.cancelled_owned().await },
        );
        Ok(Response::new(Box::pin(stream) as SyncStream))
    }
}

#[cfg(test)]
mod tests {
    use berth_proto::node::{GroupStatus, Heartbeat};

    use super::*;

    #[test]
    fn join_tokens_have_kubeadm_shape() {
        assert_eq!(
            parse_join_token("abcdef.0123456789abcdef"),
            Some(("abcdef", "0123456789abcdef"))
        );
        assert_eq!(parse_join_token("ABCDEF.0123456789abcdef"), None);
        assert_eq!(parse_join_token("abcdef0123456789abcdef"), None);
        assert_eq!(parse_join_token("abc.0123456789abcdef"), None);
    }

    #[test]
    fn node_names_are_dns_labels() {
        assert!(valid_node_name("node-1"));
        assert!(!valid_node_name("Node_1"));
        assert!(!valid_node_name("-x"));
        assert!(!valid_node_name(""));
    }

    fn status(observed_unix_ms: i64) -> GroupStatus {
        GroupStatus {
            observed_unix_ms,
            ..Default::default()
        }
    }

    #[test]
    fn the_clock_of_a_message_and_whether_it_reports() {
        let group = agent_report::Body::Group(status(70));
        assert_eq!(clock_of(Some(&group)), (70, true));
        let beat = agent_report::Body::Heartbeat(Heartbeat {
            node_time_unix_ms: 90,
        });
        assert_eq!(
            clock_of(Some(&beat)),
            (90, false),
            "a heartbeat's clock waits"
        );
        let hello = agent_report::Body::Hello(Hello {
            groups: vec![status(30), status(80), status(50)],
            ..Default::default()
        });
        assert_eq!(
            clock_of(Some(&hello)),
            (80, true),
            "the latest of its groups"
        );
        let empty = agent_report::Body::Hello(Hello::default());
        assert_eq!(clock_of(Some(&empty)), (0, false));
        assert_eq!(clock_of(None), (0, false));
    }
}
