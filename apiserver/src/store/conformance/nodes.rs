//! Join tokens and nodes: a use is consumed once, a name is taken once, times never move back.

use std::sync::Arc;

use super::fixtures::{create_placed, group, join, new_group, node};
use crate::store::{
    Desired, Heartbeat, JoinRefusal, NodeRecord, NodeStatus, ProvisioningState, Store,
};

pub(crate) async fn a_join_token_use_is_consumed_once_by_racing_joins(store: Arc<dyn Store>) {
    store
        .insert_join_token("once", "secret", 1, i64::MAX, 0)
        .await
        .unwrap();
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let node = node(&format!("n{i}"), 1000);
                store.join_node("once", "secret", &node).await.unwrap()
            })
        })
        .collect();
    let mut joined = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(()) => joined += 1,
            Err(refusal) => assert_eq!(refusal, JoinRefusal::InvalidToken),
        }
    }
    assert_eq!(joined, 1);
    assert_eq!(store.nodes().await.unwrap().len(), 1);
}

pub(crate) async fn a_taken_name_is_refused_and_consumes_no_use(store: Arc<dyn Store>) {
    store
        .insert_join_token("two", "secret", 2, 1_000, 0)
        .await
        .unwrap();
    let first = node("n1", 1000);
    assert_eq!(
        store.join_node("two", "secret", &first).await.unwrap(),
        Ok(())
    );
    let same_name = NodeRecord {
        id: "n2".to_owned(),
        ..first.clone()
    };
    assert_eq!(
        store.join_node("two", "secret", &same_name).await.unwrap(),
        Err(JoinRefusal::NameTaken)
    );
    let wrong_secret = node("n3", 1000);
    assert_eq!(
        store
            .join_node("two", "guess", &wrong_secret)
            .await
            .unwrap(),
        Err(JoinRefusal::InvalidToken)
    );
    // The refused joins left the second use.
    assert_eq!(
        store
            .join_node("two", "secret", &node("n4", 1000))
            .await
            .unwrap(),
        Ok(())
    );
    assert_eq!(
        store
            .join_node("two", "secret", &node("n5", 1000))
            .await
            .unwrap(),
        Err(JoinRefusal::InvalidToken)
    );
    store
        .insert_join_token("expired", "secret", 5, 10, 0)
        .await
        .unwrap();
    let late = NodeRecord {
        joined_ms: 10,
        ..node("n6", 1000)
    };
    assert_eq!(
        store.join_node("expired", "secret", &late).await.unwrap(),
        Err(JoinRefusal::InvalidToken)
    );
    let names: Vec<String> = store
        .nodes()
        .await
        .unwrap()
        .into_iter()
        .map(|n| n.name)
        .collect();
    assert_eq!(names, ["n1", "n4"]);
    assert_eq!(store.node("n4").await.unwrap().unwrap(), node("n4", 1000));
    assert_eq!(store.node("n2").await.unwrap(), None);
}

pub(crate) async fn heartbeats_never_move_back(store: Arc<dyn Store>) {
    join(&*store, "n1", 4000).await;
    let beat = |at_ms, node_clock_ms| Heartbeat {
        node_id: "n1".to_owned(),
        at_ms,
        node_clock_ms,
    };
    let stored = || {
        let store = store.clone();
        async move {
            let record = store.node("n1").await.unwrap().unwrap();
            (record.last_heartbeat_ms, record.status)
        }
    };
    let unknown = Heartbeat {
        node_id: "gone".to_owned(),
        at_ms: 9,
        node_clock_ms: 9,
    };
    store
        .record_heartbeats(&[beat(500, 400), unknown])
        .await
        .unwrap();
    assert_eq!(stored().await, (500, NodeStatus::Ready));
    store.record_heartbeats(&[beat(300, 200)]).await.unwrap();
    assert_eq!(
        stored().await,
        (500, NodeStatus::Ready),
        "late writes change nothing"
    );
    assert!(
        !store
            .set_node_status("n1", NodeStatus::NotReady, 100, 0)
            .await
            .unwrap(),
        "heard from at 500: a judgement of silence since 100 is refused"
    );
    assert_eq!(stored().await, (500, NodeStatus::Ready));
    assert!(
        store
            .set_node_status("n1", NodeStatus::NotReady, 500, 0)
            .await
            .unwrap()
    );
    assert_eq!(stored().await, (500, NodeStatus::NotReady));
    assert!(
        !store
            .set_node_status("n1", NodeStatus::NotReady, 500, 0)
            .await
            .unwrap(),
        "NotReady once"
    );
    assert!(
        store
            .set_node_status("n1", NodeStatus::Ready, 900, 0)
            .await
            .unwrap()
    );
    assert_eq!(stored().await, (900, NodeStatus::Ready));
}

pub(crate) async fn not_ready_marks_running_groups_unhealthy(store: Arc<dyn Store>) {
    join(&*store, "n1", 4000).await;
    let (running, stopped) = (new_group("running", 100), new_group("stopped", 100));
    create_placed(&*store, &running, "n1").await;
    create_placed(&*store, &stopped, "n1").await;
    store.stop_group(&stopped.id, 3).await.unwrap();
    store
        .set_node_status("n1", NodeStatus::NotReady, 10, 0)
        .await
        .unwrap();
    let running = group(&*store, &running.id).await;
    assert_eq!(running.provisioning_state, ProvisioningState::Unhealthy);
    assert_eq!(running.node_id.as_deref(), Some("n1"));
    let stopped = group(&*store, &stopped.id).await;
    assert_eq!(stopped.desired, Desired::Stopped);
    assert_ne!(stopped.provisioning_state, ProvisioningState::Unhealthy);
    assert_eq!(store.group_counts_by_node().await.unwrap(), ["n1"]);
}
