//! Two replicas of the control plane on one store (in one process, one SQLite file, so they share
//! the process's bus): one leads (scheduler, liveness monitor), any serves any request, and what one
//! commits reaches a node streaming to the other.

use std::time::{Duration, Instant};

use berth_proto::node::DesiredState;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::group_races::FakeNode;
use crate::harness::{Cluster, SUB, group_path};

/// A tenth of a core and of a GB: many fit the fake node's one core.
fn tiny() -> serde_json::Value {
    json!({
        "location": "local",
        "properties": {
            "osType": "Linux",
            "containers": [{"name": "app", "properties": {
                "image": "registry.local/busybox:1",
                "resources": {"requests": {"cpu": 0.1, "memoryInGB": 0.1}}
            }}]
        }
    })
}

/// Waits until exactly one of the two leads; returns whether `a` does.
async fn leader_of(a: &Cluster, b: &Cluster) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (la, lb) = (
            a.state().leadership.is_leader(),
            b.state().leadership.is_leader(),
        );
        assert!(!(la && lb), "two leaders at once");
        if la || lb {
            return la;
        }
        assert!(Instant::now() < deadline, "nobody leads");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn upserts(message: &DesiredState, name: &str) -> bool {
    !message.full
        && message
            .groups
            .iter()
            .any(|g| g.spec.as_ref().is_some_and(|s| s.name == name))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_placement_reaches_a_node_streaming_to_another_replica_within_100_ms() {
    let a = Cluster::start().await;
    let b = a.replica().await;
    assert!(leader_of(&a, &b).await, "the first replica leads");
    // The node streams to the follower; the leader learns of its join over the bus (no 409 there).
    let mut node = FakeNode::join(&b, "node-b").await;
    let (on_a, on_b) = (a.tenant(&[SUB]).await, b.tenant(&[SUB]).await);

    let mut took = Vec::new();
    for i in 0..6 {
        // Alternately on the leader and on the follower (whose wake-up reaches the leader's
        // scheduler over the bus).
        let api = if i % 2 == 0 { &on_a } else { &on_b };
        let name = format!("g{i}");
        let (status, _, body) = api.put_group(SUB, "rg", &name, &tiny()).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let created = Instant::now();
        assert!(
            node.told(5, |m| upserts(m, &name)).await,
            "{name} never reached the node"
        );
        took.push(created.elapsed());
    }
    took.sort();
    let median = took[took.len() / 2];
    assert!(
        median < Duration::from_millis(100),
        "create -> placed on the leader -> the node on the other replica: {took:?}"
    );

    // A delete on the leader reaches the node streaming to the follower too.
    let (status, body) = on_a
        .call(Method::DELETE, &group_path(SUB, "rg", "g0"), None)
        .await;
    assert!(status.is_success(), "{status} {body}");
    assert!(
        node.told(5, |m| !m.full && !m.removed.is_empty()).await,
        "the removal never reached the node"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_leader_hands_over_at_once_when_it_stops() {
    let a = Cluster::start().await;
    let b = a.replica().await;
    assert!(leader_of(&a, &b).await);
    let mut node = FakeNode::join(&b, "node-b").await;
    let stopped = a.stop().await;
    let handed = Instant::now();
    let deadline = handed + Duration::from_secs(5);
    while !b.state().leadership.is_leader() {
        assert!(
            Instant::now() < deadline,
            "the other replica never took over"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        handed.elapsed() < Duration::from_millis(1500),
        "released, not waited out: {:?}",
        handed.elapsed()
    );
    // The new leader schedules.
    let api = b.tenant(&[SUB]).await;
    let (status, _, body) = api.put_group(SUB, "rg", "after", &tiny()).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert!(node.told(5, |m| upserts(m, "after")).await);
    drop(stopped);
}

/// The leader judges a node streaming to another replica by the heartbeats that replica writes to
/// the store: not lost while it beats, lost once it stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_leader_judges_nodes_of_other_replicas_by_the_store() {
    let fast = |c: &mut berth_apiserver::Config| {
        c.node_timeout_secs = 2;
        c.heartbeat_interval_ms = 200;
        c.heartbeat_store_interval_ms = 300;
    };
    let a = Cluster::start_with(fast).await;
    let b = a.replica_with(fast).await;
    assert!(leader_of(&a, &b).await);
    let token = a.join_token(1).await;
    let node = b
        .start_node("beats", a.dir().join("agent-beats"), 2.0, 4.0, Some(token))
        .await;
    // Three timeouts: the leader hears nothing from it itself, and keeps it Ready.
    let until = Instant::now() + Duration::from_secs(6);
    while Instant::now() < until {
        assert_eq!(a.node_info("beats").await["status"], "Ready");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    node.stop().await;
    a.wait_node("beats", "NotReady").await;
}
