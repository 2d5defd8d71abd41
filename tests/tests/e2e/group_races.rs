//! The group service under a placement that lands between its read and its write: the node the
//! change's own transaction saw is the one told. A store in front of the real one makes the race
//! deterministic: just before the stop (or restart) commits, it frees the only node and places the
//! group there, as the scheduler would, assignment sent and all.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use berth_apiserver::groups::{GroupName, ServiceStore};
use berth_apiserver::handoff::PlacementSink as _;
use berth_apiserver::model::GroupSpec;
use berth_apiserver::nodes::NodeGateway;
use berth_apiserver::store::{
    Change, GroupKey, GroupRecord, NewGroup, OperationRecord, Placement, Result, Store,
};
use berth_proto::node::DesiredState;
use berth_proto::node::node_service_client::NodeServiceClient;
use reqwest::StatusCode;
use serde_json::json;
use tonic::transport::Identity;

use crate::harness::{Cluster, SUB};
use crate::nodes::{channel, csr, hello, join_request};

/// One core, 1 GB: what the node below holds (one group of these at a time).
fn small_group() -> serde_json::Value {
    json!({
        "location": "local",
        "properties": {
            "osType": "Linux",
            "containers": [{"name": "app", "properties": {
                "image": "registry.local/busybox:1",
                "resources": {"requests": {"cpu": 1.0, "memoryInGB": 1.0}}
            }}]
        }
    })
}

/// A node speaking the gRPC protocol itself, so the test sees exactly what it is told.
pub(crate) struct FakeNode {
    pub(crate) id: String,
    desired: tonic::Streaming<DesiredState>,
    /// Kept open: the stream lives while the node does.
    _reports: tokio::sync::mpsc::Sender<berth_proto::node::AgentReport>,
}

impl FakeNode {
    /// Joins `name` (1 core, 1 GB) and opens its Sync stream; returns once it is Ready.
    pub(crate) async fn join(cluster: &Cluster, name: &str) -> FakeNode {
        let token = cluster.join_token(1).await;
        let (csr_pem, key) = csr();
        let joined =
            NodeServiceClient::new(channel(cluster, None, &cluster.ca_pem).await.expect("dial"))
                .join(join_request(&token, name, &csr_pem))
                .await
                .expect("join")
                .into_inner();
        let identity = Identity::from_pem(joined.certificate_pem, key.serialize_pem());
        let mut client = NodeServiceClient::new(
            channel(cluster, Some(identity), &cluster.ca_pem)
                .await
                .expect("dial with cert"),
        );
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tx.send(hello()).await.expect("send");
        let desired = client
            .sync(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .expect("sync")
            .into_inner();
        cluster.wait_node(name, "Ready").await;
        let id = cluster.node_info(name).await["id"]
            .as_str()
            .expect("node id")
            .to_owned();
        FakeNode {
            id,
            desired,
            _reports: tx,
        }
    }

    /// Reads what the node is told until `seen` says it has what it waited for (then `true`), or
    /// `secs` pass without it (then `false`).
    pub(crate) async fn told(
        &mut self,
        secs: u64,
        mut seen: impl FnMut(&DesiredState) -> bool,
    ) -> bool {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            match tokio::time::timeout_at(deadline, self.desired.message()).await {
                Ok(Ok(Some(message))) if seen(&message) => return true,
                Ok(Ok(Some(_))) => {}
                Ok(other) => panic!("the node's stream ended: {other:?}"),
                Err(_) => return false,
            }
        }
    }
}

fn assigns(message: &DesiredState, group: &str) -> Option<u64> {
    message
        .groups
        .iter()
        .find(|a| a.group_id == group)
        .map(|a| a.generation)
}

/// The real store, except that `stop_group` and `restart_group` of `racer` first make room on
/// `node` (deleting `blocker`) and place `racer` there, as a scheduler round would.
struct PlacedMeanwhile {
    inner: Arc<dyn Store>,
    gateway: NodeGateway,
    racer: String,
    blocker: String,
    node: String,
}

impl PlacedMeanwhile {
    async fn place_racer(&self, id: &str) {
        if id != self.racer {
            return;
        }
        let now = berth_apiserver::now_ms();
        self.inner
            .delete_group(&self.blocker, now)
            .await
            .expect("delete the blocker");
        self.gateway.remove(&self.node, &self.blocker);
        let racer = self
            .inner
            .group_by_id(id)
            .await
            .expect("read")
            .expect("racer exists");
        let placement = Placement {
            group_id: racer.id.clone(),
            node_id: self.node.clone(),
            requests: racer.requests,
            generation: racer.generation,
        };
        let committed = self
            .inner
            .commit_placements(&[placement], now)
            .await
            .expect("commit placement");
        self.gateway.placed(committed).await;
        // Whoever placed it (this or the real scheduler, had it woken meanwhile), it is placed now.
        let placed = self
            .inner
            .group_by_id(id)
            .await
            .expect("read")
            .expect("racer");
        assert_eq!(placed.node_id.as_deref(), Some(self.node.as_str()));
    }
}

#[async_trait::async_trait]
impl ServiceStore for PlacedMeanwhile {
    async fn group(&self, key: &GroupKey) -> Result<Option<GroupRecord>> {
        self.inner.group(key).await
    }
    async fn group_by_id(&self, id: &str) -> Result<Option<GroupRecord>> {
        self.inner.group_by_id(id).await
    }
    async fn list_groups(
        &self,
        subscription: &str,
        resource_group: Option<&str>,
        after: i64,
        limit: i64,
    ) -> Result<Vec<GroupRecord>> {
        self.inner
            .list_groups(subscription, resource_group, after, limit)
            .await
    }
    async fn create_group(&self, group: &NewGroup) -> Result<()> {
        self.inner.create_group(group).await
    }
    async fn update_group(
        &self,
        id: &str,
        expected_generation: i64,
        spec: &GroupSpec,
        sealed: &[u8],
        tags: &BTreeMap<String, String>,
        fqdn: Option<&str>,
        operation: &OperationRecord,
        now_ms: i64,
    ) -> Result<Change> {
        self.place_racer(id).await;
        self.inner
            .update_group(
                id,
                expected_generation,
                spec,
                sealed,
                tags,
                fqdn,
                operation,
                now_ms,
            )
            .await
    }
    async fn set_tags(&self, id: &str, tags: &BTreeMap<String, String>, now_ms: i64) -> Result<()> {
        self.inner.set_tags(id, tags, now_ms).await
    }
    async fn delete_group(&self, id: &str, now_ms: i64) -> Result<Option<GroupRecord>> {
        self.inner.delete_group(id, now_ms).await
    }
    async fn stop_group(&self, id: &str, now_ms: i64) -> Result<Option<GroupRecord>> {
        self.place_racer(id).await;
        self.inner.stop_group(id, now_ms).await
    }
    async fn start_group(
        &self,
        id: &str,
        operation: &OperationRecord,
        now_ms: i64,
    ) -> Result<Change> {
        self.inner.start_group(id, operation, now_ms).await
    }
    async fn restart_group(
        &self,
        id: &str,
        operation: &OperationRecord,
        now_ms: i64,
    ) -> Result<Option<String>> {
        self.place_racer(id).await;
        self.inner.restart_group(id, operation, now_ms).await
    }
    async fn sealed_spec(&self, id: &str) -> Result<Option<Vec<u8>>> {
        self.inner.sealed_spec(id).await
    }
    async fn insert_operation(&self, operation: &OperationRecord) -> Result<()> {
        self.inner.insert_operation(operation).await
    }
}

/// A node holding `blocker` (placed, told) and `racer` waiting for room; returns the service over
/// the racing store, the node and both ids.
async fn blocked(cluster: &Cluster) -> (berth_apiserver::groups::GroupService, FakeNode, String) {
    let mut node = FakeNode::join(cluster, "tight").await;
    let api = cluster.tenant(&[SUB]).await;
    let (status, _, body) = api.put_group(SUB, "rg1", "blocker", &small_group()).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let state = cluster.state();
    let blocker = state
        .store
        .group(&GroupKey::new(SUB, "rg1", "blocker"))
        .await
        .expect("read")
        .expect("blocker")
        .id;
    assert!(
        node.told(20, |m| assigns(m, &blocker).is_some()).await,
        "the blocker is placed on the only node"
    );
    let (status, _, body) = api.put_group(SUB, "rg1", "racer", &small_group()).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let racer = state
        .store
        .group(&GroupKey::new(SUB, "rg1", "racer"))
        .await
        .expect("read")
        .expect("racer");
    assert_eq!(racer.node_id, None, "no room for the racer yet");
    let service = state.groups.with_store(Arc::new(PlacedMeanwhile {
        inner: state.store.clone(),
        gateway: state.gateway.clone(),
        racer: racer.id.clone(),
        blocker,
        node: node.id.clone(),
    }));
    (service, node, racer.id)
}

/// Whether the node was sent `group` (the racing placement), and then `group` again at a newer
/// generation (the change that raced it), within a few seconds.
async fn placed_then_newer(node: &mut FakeNode, group: &str) -> (bool, bool) {
    let mut first = None;
    let newer = node
        .told(5, |m| match (assigns(m, group), first) {
            (Some(generation), None) => {
                first = Some(generation);
                false
            }
            (Some(generation), Some(placed)) => generation > placed,
            (None, _) => false,
        })
        .await;
    (first.is_some(), newer)
}

#[tokio::test]
async fn a_group_placed_while_it_stops_is_removed_from_its_node() {
    let cluster = Cluster::start().await;
    let (service, mut node, racer) = blocked(&cluster).await;

    service
        .stop(&GroupName::new(SUB, "rg1", "racer"))
        .await
        .expect("stop");

    // The placement reached the node before the stop committed; the stop must follow it there.
    let mut assigned = false;
    let removed = node
        .told(5, |m| {
            assigned |= assigns(m, &racer).is_some();
            assigned && m.removed.contains(&racer)
        })
        .await;
    assert!(assigned, "the racing placement was sent to the node");
    assert!(
        removed,
        "the stopped group was never removed from the node it was placed on"
    );
    let stopped = cluster
        .state()
        .store
        .group_by_id(&racer)
        .await
        .expect("read")
        .expect("racer");
    assert_eq!(stopped.node_id, None);
    let free = cluster.node_info("tight").await;
    assert_eq!(
        free["allocated"]["cpu"], 0.0,
        "its capacity is released: {free}"
    );
}

#[tokio::test]
async fn a_group_placed_while_it_restarts_is_restarted_on_its_node() {
    let cluster = Cluster::start().await;
    let (service, mut node, racer) = blocked(&cluster).await;

    service
        .restart(&GroupName::new(SUB, "rg1", "racer"))
        .await
        .expect("restart");

    // The node got the placement at the old generation; the restart's generation must follow.
    let (placed, restarted) = placed_then_newer(&mut node, &racer).await;
    assert!(placed, "the racing placement was sent to the node");
    assert!(
        restarted,
        "the node never heard of the restart of the group placed meanwhile"
    );
}

#[tokio::test]
async fn a_group_placed_while_it_updates_gets_the_new_spec_on_its_node() {
    let cluster = Cluster::start().await;
    let (service, mut node, racer) = blocked(&cluster).await;

    // The same group with one more environment variable: a change applied in place.
    let mut body = small_group();
    body["properties"]["containers"][0]["properties"]["environmentVariables"] =
        json!([{"name": "MODE", "value": "new"}]);
    let arm: berth_proto::arm::ContainerGroup = serde_json::from_value(body).expect("arm");
    let state = cluster.state();
    let valid = berth_apiserver::validate::container_group(
        &arm,
        "racer",
        &state.config.region,
        "2023-05-01",
        &state.limits,
    )
    .expect("valid");
    service
        .create(&GroupName::new(SUB, "rg1", "racer"), valid)
        .await
        .expect("update");

    // The node got the placement at the old generation; the update's generation must follow.
    let (placed, updated) = placed_then_newer(&mut node, &racer).await;
    assert!(placed, "the racing placement was sent to the node");
    assert!(
        updated,
        "the node never heard of the new spec of the group placed meanwhile"
    );
}
