//! Placement through the whole system: waiting for capacity, never-fits, races for the last capacity.

use berth_apiserver::scheduler::{Policy, Scheduler, SchedulerHandle};
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::harness::{Cluster, SUB, group_body, group_path, running};

fn sized(cpu: f64, memory: f64) -> serde_json::Value {
    let mut body = group_body();
    body["properties"]["containers"][0]["properties"]["resources"]["requests"] =
        json!({"cpu": cpu, "memoryInGB": memory});
    body
}

#[tokio::test]
async fn waits_for_capacity_then_places() {
    let cluster = Cluster::start().await;
    let _node = cluster.add_node("node-a", 2.0, 4.0).await;
    let api = cluster.tenant(&[SUB]).await;
    let (status, _, _) = api.put_group(SUB, "rg1", "big", &sized(2.0, 2.0)).await;
    assert_eq!(status, StatusCode::CREATED);
    api.wait_group(SUB, "rg1", "big", 20, running).await;

    let (status, _, _) = api.put_group(SUB, "rg1", "next", &sized(1.0, 1.0)).await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "fits a node, just not now: accepted"
    );
    let waiting = api
        .wait_group(SUB, "rg1", "next", 20, |g| {
            g["properties"]["instanceView"]["events"]
                .as_array()
                .is_some_and(|e| e.iter().any(|e| e["name"] == "FailedScheduling"))
        })
        .await;
    assert_eq!(
        waiting["properties"]["provisioningState"], "Pending",
        "{waiting}"
    );
    let event = waiting["properties"]["instanceView"]["events"]
        .as_array()
        .expect("events")
        .iter()
        .find(|e| e["name"] == "FailedScheduling")
        .cloned()
        .expect("event");
    assert!(
        event["message"]
            .as_str()
            .expect("message")
            .contains("1 CPU"),
        "{event}"
    );

    let (status, _) = api
        .call(Method::DELETE, &group_path(SUB, "rg1", "big"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    api.wait_group(SUB, "rg1", "next", 20, running).await;
}

#[tokio::test]
async fn a_group_no_node_could_ever_hold_fails_at_once() {
    let cluster = Cluster::start().await;
    let _node = cluster.add_node("node-a", 2.0, 4.0).await;
    let api = cluster.tenant(&[SUB]).await;
    let (status, _, answer) = api.put_group(SUB, "rg1", "huge", &sized(3.0, 2.0)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    assert_eq!(answer["error"]["code"], "ServiceUnavailable");
    let message = answer["error"]["message"].as_str().expect("message");
    assert!(
        message.contains("'3' CPU '2' GB memory 'Linux' OS"),
        "{message}"
    );
    let (status, _) = api.get_group(SUB, "rg1", "huge").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "nothing persisted");
    // Windows: no Windows node at all.
    let mut win = sized(1.0, 1.0);
    win["properties"]["osType"] = json!("Windows");
    let (status, _, answer) = api.put_group(SUB, "rg1", "win", &win).await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .expect("message")
            .contains("'Windows' OS")
    );
}

#[tokio::test]
async fn concurrent_creates_race_for_the_last_capacity_exactly_one_wins() {
    let cluster = Cluster::start().await;
    let _node = cluster.add_node("node-a", 2.0, 4.0).await;
    let api = cluster.tenant(&[SUB]).await;
    // A second scheduler on the same store races the apiserver's own: placement commits must still
    // never overcommit.
    let state = cluster.state().clone();
    let rival = Scheduler::new(
        state.store.clone(),
        state.gateway.clone(),
        SchedulerHandle::default(),
        Policy::Spread,
    );
    let rival_stop = tokio_util::sync::CancellationToken::new();
    let rival_task = tokio::spawn(rival.run(rival_stop.clone()));

    let creates = (0..12).map(|i| {
        let api = api.clone();
        tokio::spawn(async move {
            api.put_group(SUB, "race", &format!("r{i}"), &sized(2.0, 2.0))
                .await
                .0
        })
    });
    for create in creates {
        assert_eq!(create.await.expect("task"), StatusCode::CREATED);
    }
    // Let both schedulers settle, then count.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    let placed = loop {
        let nodes = state.store.nodes().await.expect("nodes");
        let used = nodes[0].used;
        assert!(used.cpu_millis <= 2000, "node overcommitted: {used:?}");
        let (_, list) = api.call(Method::GET, &format!("/subscriptions/{SUB}/resourceGroups/race/providers/Microsoft.ContainerInstance/containerGroups?api-version=2023-05-01"), None).await;
        let states: Vec<String> = list["value"]
            .as_array()
            .expect("value")
            .iter()
            .map(|g| {
                g["properties"]["provisioningState"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect();
        let placed = states.iter().filter(|s| *s != "Pending").count();
        if placed >= 1 || tokio::time::Instant::now() > deadline {
            break placed;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    rival_stop.cancel();
    let _ = rival_task.await;
    let nodes = state.store.nodes().await.expect("nodes");
    assert_eq!(
        nodes[0].used.cpu_millis, 2000,
        "exactly one 2-CPU group holds the node"
    );
    let on_node = state
        .store
        .groups_on_node(&nodes[0].id)
        .await
        .expect("groups");
    assert_eq!(on_node.len(), 1, "exactly one wins");
    assert_eq!(placed, 1);
}

#[tokio::test]
async fn a_replica_that_did_not_see_the_join_accepts_what_fits() {
    let cluster = Cluster::start().await;
    let replica = cluster.replica().await;
    // The node joins through the first apiserver; the replica hears nothing of it.
    let _node = cluster.add_node("node-a", 2.0, 4.0).await;
    let tenant = cluster.tenant(&[SUB]).await;
    let on_replica = replica.api(tenant.token());
    let (status, _, answer) = on_replica
        .put_group(SUB, "rg1", "fits", &sized(2.0, 2.0))
        .await;
    assert_eq!(status, StatusCode::CREATED, "no false 409: {answer}");
    let (status, _, answer) = on_replica
        .put_group(SUB, "rg1", "huge", &sized(3.0, 2.0))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    assert_eq!(answer["error"]["code"], "ServiceUnavailable");
}
