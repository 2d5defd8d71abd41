//! The node gateway: the gRPC `NodeService` that agents call (Join, Sync) and the live sessions;
//! `liveness` has when each node was last heard from, the monitor that marks silent nodes NotReady
//! and the writer of their last heartbeats.
//!
//! Heartbeats are kept in memory and written to the store every `--heartbeat-store-interval-ms`
//! (5 s), for every node whose heartbeat moved in one statement, so thousands of nodes beating cost
//! the single writer one statement every few seconds. The node clock of a message that carries
//! reports is written with the reports instead (billing needs the store's node clock never behind a
//! report it holds).
//!
//! Only `Join` may be called without a client certificate; `Sync` takes the node's identity from its
//! verified certificate (`CN=node:<id>`), never from anything the agent says.

use std::collections::{BTreeMap, HashMap};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_proto::node::{
    self, AgentReport, DesiredPhase, DesiredState, GroupAssignment, JoinRequest, JoinResponse,
    agent_report, node_service_server::NodeService,
};
use futures::Stream;
use tokio::sync::mpsc;
use tokio_stream::StreamExt as _;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

use crate::model::{GroupSpec, OsType, Size};
use crate::scheduler::SchedulerHandle;
use crate::secrets::SecretBox;
use crate::store::{
    GroupRecord, JoinRefusal, NodeRecord, NodeReport, NodeStatus, Placement, Store, StoreError,
};
use crate::tls::{ClusterCa, node_id_from_cert};

mod liveness;

use liveness::Seen;

impl From<StoreError> for Status {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Conflict(what) => Status::already_exists(what),
            other => {
                tracing::error!(error = %other, "store error in node gateway");
                Status::unavailable("the apiserver's store is unavailable; retry")
            }
        }
    }
}

struct Session {
    /// Identifies this connection, so an old stream ending does not remove a newer session.
    epoch: u64,
    tx: mpsc::UnboundedSender<Result<DesiredState, Status>>,
}

struct Inner {
    store: Arc<dyn Store>,
    ca: Arc<ClusterCa>,
    secrets: Arc<SecretBox>,
    scheduler: SchedulerHandle,
    heartbeat_interval_ms: u32,
    node_timeout_ms: i64,
    sessions: Mutex<HashMap<String, Session>>,
    /// Node id -> when its last message came, whether it is Ready as far as the store knows, and the
    /// latest node clock it sent (its last heartbeat for billing, should it go silent).
    liveness: Mutex<HashMap<String, Seen>>,
    /// Distinct node capacities per OS, for "could any node ever hold this?".
    capacities: Mutex<HashMap<OsType, Vec<Size>>>,
    /// Node id -> where its agent serves `AgentService`, from its latest `Hello` (absent: none).
    endpoints: Mutex<HashMap<String, String>>,
    next_epoch: std::sync::atomic::AtomicU64,
    next_seq: std::sync::atomic::AtomicU64,
    /// Ends every Sync stream when the apiserver stops, so graceful shutdown does not wait on them.
    shutdown: CancellationToken,
    /// Node reports and clocks on their way to the store, written in batches by [`write_reports`].
    reports: mpsc::UnboundedSender<Incoming>,
}

/// What the report writer stores.
#[derive(Debug)]
enum Incoming {
    Report(NodeReport),
    /// A node's clock in its latest message.
    Clock(String, i64),
}

/// Cheap handle to the gateway; clones share everything.
#[derive(Clone)]
pub struct NodeGateway {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for NodeGateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeGateway").finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// How often nodes beat, and how long the gateway waits for a beat before a node is lost.
#[derive(Debug, Clone, Copy)]
pub struct Liveness {
    pub heartbeat_interval_ms: u32,
    pub node_timeout: Duration,
}

impl NodeGateway {
    pub async fn new(
        store: Arc<dyn Store>,
        ca: Arc<ClusterCa>,
        secrets: Arc<SecretBox>,
        scheduler: SchedulerHandle,
        Liveness {
            heartbeat_interval_ms,
            node_timeout,
        }: Liveness,
        zone_dirty: crate::dns::ZoneDirty,
        shutdown: CancellationToken,
    ) -> Result<Self, StoreError> {
        let (reports, reports_rx) = mpsc::unbounded_channel();
        tokio::spawn(write_reports(
            store.clone(),
            reports_rx,
            zone_dirty,
            shutdown.clone(),
        ));
        let gateway = Self {
            inner: Arc::new(Inner {
                store,
                ca,
                secrets,
                scheduler,
                heartbeat_interval_ms,
                node_timeout_ms: node_timeout.as_millis() as i64,
                sessions: Mutex::default(),
                liveness: Mutex::default(),
                capacities: Mutex::default(),
                endpoints: Mutex::default(),
                next_epoch: 1.into(),
                next_seq: 1.into(),
                shutdown,
                reports,
            }),
        };
        // After a restart every node known Ready gets a full timeout to reconnect.
        let now = crate::now_ms();
        for node in gateway.inner.store.nodes().await? {
            gateway.remember_capacity(node.os_type, node.capacity);
            lock(&gateway.inner.liveness).insert(
                node.id.clone(),
                Seen {
                    at_ms: now,
                    heard_ms: node.last_heartbeat_ms,
                    ready: node.status == NodeStatus::Ready,
                    node_clock_ms: 0,
                    unwritten: false,
                },
            );
        }
        Ok(gateway)
    }

    fn remember_capacity(&self, os: OsType, size: Size) {
        let mut caps = lock(&self.inner.capacities);
        let list = caps.entry(os).or_default();
        if !list.contains(&size) {
            list.push(size);
        }
    }

    /// Whether some joined node (Ready or not) is large enough for `request` at all.
    pub fn could_ever_fit(&self, os: OsType, request: &Size) -> bool {
        lock(&self.inner.capacities)
            .get(&os)
            .is_some_and(|sizes| sizes.iter().any(|s| request.fits_in(s)))
    }

    fn seq(&self) -> u64 {
        self.inner
            .next_seq
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    fn send(&self, node_id: &str, message: DesiredState) {
        if let Some(session) = lock(&self.inner.sessions).get(node_id) {
            // A closed channel means the stream is ending; the node gets full state when it reconnects.
            let _ = session.tx.send(Ok(message));
        }
    }

    /// The assignment of one group, secrets included, or None if it is gone.
    async fn assignment(&self, group_id: &str) -> Result<Option<GroupAssignment>, StoreError> {
        match self.inner.store.group_with_sealed(group_id).await? {
            Some((group, sealed)) => self.to_assignment(&group, &sealed).map(Some),
            None => Ok(None),
        }
    }

    fn to_assignment(
        &self,
        group: &GroupRecord,
        sealed: &[u8],
    ) -> Result<GroupAssignment, StoreError> {
        let plain = self
            .inner
            .secrets
            .open(sealed)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let spec: GroupSpec = serde_json::from_slice(&plain)
            .map_err(|e| StoreError::Corrupt(format!("sealed spec: {e}")))?;
        Ok(GroupAssignment {
            group_id: group.id.clone(),
            generation: group.generation as u64,
            phase: DesiredPhase::Running as i32,
            spec: Some(spec.to_proto(
                &group.name,
                &group.subscription,
                &group.resource_group,
                group.fqdn.as_deref(),
            )),
        })
    }

    /// Sends new placements to their nodes.
    pub async fn assign(&self, placements: Vec<Placement>) {
        let ids: Vec<String> = placements.iter().map(|p| p.group_id.clone()).collect();
        let node_of: HashMap<&str, &str> = placements
            .iter()
            .map(|p| (p.group_id.as_str(), p.node_id.as_str()))
            .collect();
        let rows = match self.inner.store.groups_with_sealed(&ids).await {
            Ok(rows) => rows,
            Err(err) => {
                // The nodes get these groups with their next full state (on reconnect).
                tracing::error!(error = %err, groups = ids.len(), "cannot build assignments");
                return;
            }
        };
        let mut by_node: BTreeMap<String, Vec<GroupAssignment>> = BTreeMap::new();
        for (group, sealed) in rows {
            let Some(node) = node_of.get(group.id.as_str()) else {
                continue;
            };
            match self.to_assignment(&group, &sealed) {
                Ok(a) => by_node.entry((*node).to_owned()).or_default().push(a),
                Err(err) => {
                    tracing::error!(error = %err, group = %group.id, "cannot build assignment")
                }
            }
        }
        for (node_id, groups) in by_node {
            let seq = self.seq();
            self.send(
                &node_id,
                DesiredState {
                    seq,
                    full: false,
                    groups,
                    removed: Vec::new(),
                },
            );
        }
    }

    /// Re-sends one group's assignment (new generation: restart, update).
    pub async fn refresh(&self, node_id: &str, group_id: &str) {
        match self.assignment(group_id).await {
            Ok(Some(a)) => {
                let seq = self.seq();
                self.send(
                    node_id,
                    DesiredState {
                        seq,
                        full: false,
                        groups: vec![a],
                        removed: Vec::new(),
                    },
                );
            }
            Ok(None) => {}
            Err(err) => tracing::error!(error = %err, group = %group_id, "cannot build assignment"),
        }
    }

    /// Tells a node to tear a group down.
    pub fn remove(&self, node_id: &str, group_id: &str) {
        let seq = self.seq();
        self.send(
            node_id,
            DesiredState {
                seq,
                full: false,
                groups: Vec::new(),
                removed: vec![group_id.to_owned()],
            },
        );
    }

    /// Where node `node_id` serves `AgentService`, as its latest `Hello` said; `None` if it serves
    /// none or has not said since the apiserver started. Kept after the stream breaks: the agent's
    /// service may well outlive a Sync stream, and a dead one is answered as unreachable.
    pub fn agent_endpoint(&self, node_id: &str) -> Option<String> {
        lock(&self.inner.endpoints).get(node_id).cloned()
    }

    fn remember_endpoint(&self, node_id: &str, endpoint: &str) {
        let mut endpoints = lock(&self.inner.endpoints);
        if endpoint.is_empty() {
            endpoints.remove(node_id);
        } else if endpoints.get(node_id).map(String::as_str) != Some(endpoint) {
            tracing::info!(node = %node_id, %endpoint, "agent endpoint");
            endpoints.insert(node_id.to_owned(), endpoint.to_owned());
        }
    }

    /// Node ids with a live Sync stream.
    pub fn connected(&self) -> Vec<String> {
        lock(&self.inner.sessions).keys().cloned().collect()
    }

    /// Queues a report for the store; reports are applied in arrival order.
    fn apply(&self, node_id: &str, seq: u64, status: &node::GroupStatus) {
        // The writer only stops at shutdown, when reports no longer matter.
        let _ = self.inner.reports.send(Incoming::Report(NodeReport {
            node_id: node_id.to_owned(),
            seq,
            status: status.into(),
        }));
    }

    async fn full_state(&self, node_id: &str) -> Result<DesiredState, StoreError> {
        let ids: Vec<String> = self
            .inner
            .store
            .groups_on_node(node_id)
            .await?
            .into_iter()
            .map(|g| g.id)
            .collect();
        let mut groups = Vec::with_capacity(ids.len());
        for (group, sealed) in self.inner.store.groups_with_sealed(&ids).await? {
            // Only what is still assigned here: a group may have moved since the first read.
            if group.node_id.as_deref() == Some(node_id) {
                groups.push(self.to_assignment(&group, &sealed)?);
            }
        }
        Ok(DesiredState {
            seq: self.seq(),
            full: true,
            groups,
            removed: Vec::new(),
        })
    }
}

/// Most reports written in one transaction.
const REPORT_BATCH: usize = 1024;

/// Writes node reports to the store in batches: one transaction for whatever has arrived, so a burst
/// of thousands of reports costs a handful of commits rather than thousands.
async fn write_reports(
    store: Arc<dyn Store>,
    mut rx: mpsc::UnboundedReceiver<Incoming>,
    zone_dirty: crate::dns::ZoneDirty,
    shutdown: CancellationToken,
) {
    let mut incoming = Vec::with_capacity(REPORT_BATCH);
    let mut reports = Vec::with_capacity(REPORT_BATCH);
    let mut clocks: HashMap<String, i64> = HashMap::new();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            n = rx.recv_many(&mut incoming, REPORT_BATCH) => {
                if n == 0 {
                    return;
                }
            }
        }
        for item in incoming.drain(..) {
            match item {
                Incoming::Report(report) => reports.push(report),
                Incoming::Clock(node, ms) => {
                    let clock = clocks.entry(node).or_default();
                    *clock = (*clock).max(ms);
                }
            }
        }
        let clocks_now: Vec<(String, i64)> = clocks.drain().collect();
        if let Err(err) = store
            .apply_statuses(&reports, &clocks_now, crate::now_ms())
            .await
        {
            tracing::error!(error = %err, reports = reports.len(), "cannot apply node reports");
        }
        if !reports.is_empty() {
            // A group may have started running with an IP, or stopped.
            zone_dirty.poke();
        }
        reports.clear();
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

type SyncStream = Pin<Box<dyn Stream<Item = Result<DesiredState, Status>> + Send + 'static>>;

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
        self.remember_capacity(os_type, size);
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
        let (first_seq, hello) = match reports.next().await {
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
        let (tx, rx) = mpsc::unbounded_channel();
        let epoch = self
            .inner
            .next_epoch
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        lock(&self.inner.sessions).insert(
            node_id.clone(),
            Session {
                epoch,
                tx: tx.clone(),
            },
        );
        let hello_seq = first_seq;
        let clock = hello
            .groups
            .iter()
            .map(|g| g.observed_unix_ms)
            .max()
            .unwrap_or(0);
        self.seen(&node_id, clock, !hello.groups.is_empty()).await?;
        self.remember_endpoint(&node_id, &hello.agent_endpoint);
        for status in &hello.groups {
            self.apply(&node_id, hello_seq, status);
        }
        let full = self.full_state(&node_id).await?;
        let _ = tx.send(Ok(full));
        tracing::info!(node = %node_id, groups = hello.groups.len(), "node connected");

        let gateway = self.clone();
        let shutdown = self.inner.shutdown.clone();
        tokio::spawn(async move {
            loop {
                let report = tokio::select! {
                    _ = shutdown.cancelled() => break,
                    report = reports.next() => report,
                };
                let Some(report) = report else { break };
                let report = match report {
                    Ok(report) => report,
                    Err(status) => {
                        tracing::debug!(node = %node_id, %status, "sync stream error");
                        break;
                    }
                };
                let (clock, with_reports) = match &report.body {
                    Some(agent_report::Body::Group(status)) => (status.observed_unix_ms, true),
                    Some(agent_report::Body::Heartbeat(beat)) => (beat.node_time_unix_ms, false),
                    Some(agent_report::Body::Hello(hello)) => (
                        hello
                            .groups
                            .iter()
                            .map(|g| g.observed_unix_ms)
                            .max()
                            .unwrap_or(0),
                        !hello.groups.is_empty(),
                    ),
                    None => (0, false),
                };
                if let Err(err) = gateway.seen(&node_id, clock, with_reports).await {
                    tracing::error!(error = %err, node = %node_id, "cannot record heartbeat");
                }
                match report.body {
                    Some(agent_report::Body::Group(status)) => {
                        gateway.apply(&node_id, report.seq, &status)
                    }
                    Some(agent_report::Body::Heartbeat(_)) | None => {}
                    Some(agent_report::Body::Hello(hello)) => {
                        gateway.remember_endpoint(&node_id, &hello.agent_endpoint);
                        for status in &hello.groups {
                            gateway.apply(&node_id, report.seq, status);
                        }
                    }
                }
            }
            let mut sessions = lock(&gateway.inner.sessions);
            if sessions.get(&node_id).is_some_and(|s| s.epoch == epoch) {
                sessions.remove(&node_id);
            }
            tracing::info!(node = %node_id, "node disconnected");
        });

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
}
