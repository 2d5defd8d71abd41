//! Nodes leaving, on hollow nodes: a lost node's groups placed elsewhere by their restart policy (and
//! none of them back on it when it returns), cordon, drain, delete, and the provisioning timeout of
//! a group no node takes. With one apiserver and with two replicas (the leader judges).

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::{Api, Cluster, Node, SUB, group_body, running};

/// Small timers: NotReady after 1 s of silence, lost after 3 s.
fn quick(c: &mut berth_apiserver::Config) {
    c.node_timeout_secs = 1;
    c.node_lost_after_secs = 3;
    c.heartbeat_interval_ms = 200;
    c.heartbeat_store_interval_ms = 300;
}

fn body(policy: &str, image: &str) -> Value {
    let mut body = group_body();
    body["properties"]["restartPolicy"] = json!(policy);
    body["properties"]["containers"][0]["properties"]["image"] = json!(image);
    body
}

const IMAGE: &str = "registry.local/busybox:1";
/// The hollow runtime fails a container whose image has this in it (exit 1).
const FAILING: &str = "registry.local/hollow/fail:1";

fn events(group: &Value) -> Vec<Value> {
    group["properties"]["instanceView"]["events"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn event(group: &Value, name: &str) -> Option<Value> {
    events(group).into_iter().find(|e| e["name"] == name)
}

/// Whether the group's latest placement was on node `node`.
fn placed_on(group: &Value, node: &str) -> bool {
    event(group, "Scheduled").is_some_and(|e| e["message"] == format!("Placed on node {node}."))
}

async fn create(api: &Api, name: &str, body: &Value) {
    let (status, _, answer) = api.put_group(SUB, "rg1", name, body).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
}

async fn admin(cluster: &Cluster, method: Method, path: &str) -> (StatusCode, Value) {
    cluster.operator_api().call(method, path, None).await
}

/// The node's entry in the list, `Null` if it is not listed.
async fn listed(cluster: &Cluster, name: &str) -> Value {
    cluster.node_info(name).await
}

/// Polls the node list until `check` holds for node `name` (or panics after `secs`).
async fn wait_listed(cluster: &Cluster, name: &str, secs: u64, check: impl Fn(&Value) -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let node = listed(cluster, name).await;
        if check(&node) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "node {name} never reached the expected state: {node}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Four groups on `node-a` (Always running, Never running, Never failed, OnFailure crash-looping);
/// `node-a` then dies: the three its policy runs again run on `node-b` within node-lost-after + 10 s,
/// the failed Never one is settled (taken off, not placed again); `node-a` comes back Ready and runs
/// none of them.
async fn lost_node_groups_move(a_side: &Cluster, b_side: &Cluster, state_root: &std::path::Path) {
    let api = a_side.tenant(&[SUB]).await;
    let a_dir = state_root.join("agent-node-a");
    let a: Node = a_side
        .start_node(
            "node-a",
            a_dir.clone(),
            8.0,
            16.0,
            Some(a_side.join_token(1).await),
        )
        .await;
    create(&api, "always", &body("Always", IMAGE)).await;
    create(&api, "never-running", &body("Never", IMAGE)).await;
    create(&api, "never-failed", &body("Never", FAILING)).await;
    create(&api, "onfailure", &body("OnFailure", FAILING)).await;
    for name in ["always", "never-running"] {
        api.wait_group(SUB, "rg1", name, 20, running).await;
    }
    api.wait_group(SUB, "rg1", "never-failed", 20, |g| {
        g["properties"]["instanceView"]["state"] == "Failed"
    })
    .await;
    api.wait_group(SUB, "rg1", "onfailure", 20, |g| {
        placed_on(g, "node-a")
            && g["properties"]["containers"][0]["properties"]["instanceView"]["restartCount"]
                .as_u64()
                .is_some_and(|n| n >= 1)
    })
    .await;
    let _b = b_side
        .start_node(
            "node-b",
            state_root.join("agent-node-b"),
            8.0,
            16.0,
            Some(b_side.join_token(1).await),
        )
        .await;

    // The machine dies.
    let died = tokio::time::Instant::now();
    a.stop().await;
    wait_listed(a_side, "node-a", 20, |n| n["status"] == "Lost").await;
    let within = 3 + 10;
    for name in ["always", "never-running"] {
        let moved = api
            .wait_group(SUB, "rg1", name, within, |g| {
                running(g) && placed_on(g, "node-b")
            })
            .await;
        let lost = event(&moved, "NodeLost").unwrap_or_else(|| panic!("a NodeLost event: {moved}"));
        assert_eq!(lost["type"], "Warning", "{lost}");
        assert!(
            lost["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("Node node-a stopped reporting at ")
                    && m.ends_with("placing the group on another node.")),
            "{lost}"
        );
        assert_eq!(
            event(&moved, "Scheduled").expect("placed")["count"],
            2,
            "placed twice: {moved}"
        );
    }
    assert!(
        died.elapsed() <= Duration::from_secs(within),
        "moved within node-lost-after + 10 s: {:?}",
        died.elapsed()
    );
    api.wait_group(SUB, "rg1", "onfailure", 10, |g| placed_on(g, "node-b"))
        .await;
    let settled = api
        .wait_group(SUB, "rg1", "never-failed", 10, |g| {
            event(g, "NodeLost").is_some()
        })
        .await;
    assert!(
        placed_on(&settled, "node-a"),
        "never placed again: {settled}"
    );
    assert_eq!(
        settled["properties"]["instanceView"]["state"], "Failed",
        "its last status is kept: {settled}"
    );
    let lost = listed(a_side, "node-a").await;
    assert_eq!(lost["groups"], 0, "{lost}");
    assert_eq!(lost["allocated"]["cpu"], 0.0, "capacity released: {lost}");
    assert_eq!(listed(a_side, "node-b").await["groups"], 3);

    // The machine comes back: Ready, and none of the moved groups return to it.
    let _a = a_side.start_node("node-a", a_dir, 8.0, 16.0, None).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let back = listed(a_side, "node-a").await;
    assert_eq!(
        (back["status"].as_str(), back["groups"].as_u64()),
        (Some("Ready"), Some(0)),
        "{back}"
    );
    for name in ["always", "never-running"] {
        let (_, group) = api.get_group(SUB, "rg1", name).await;
        assert!(running(&group) && placed_on(&group, "node-b"), "{group}");
    }
    let (_, settled) = api.get_group(SUB, "rg1", "never-failed").await;
    assert!(
        placed_on(&settled, "node-a") && event(&settled, "Scheduled").expect("event")["count"] == 1
    );
    assert_eq!(listed(a_side, "node-b").await["groups"], 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_nodes_groups_run_elsewhere_by_their_restart_policy() {
    let cluster = Cluster::start_with(quick).await;
    lost_node_groups_move(&cluster, &cluster, cluster.dir()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_two_replicas_the_leader_loses_a_node_streaming_to_the_other() {
    let cluster = Cluster::start_with(quick).await;
    let replica = cluster.replica_with(quick).await;
    // node-a streams to the replica, node-b to the first: whichever leads judges node-a from the
    // store's heartbeats or its own.
    lost_node_groups_move(&replica, &cluster, cluster.dir()).await;
}

#[tokio::test]
async fn a_cordoned_node_takes_no_new_group_until_uncordoned() {
    let cluster = Cluster::start().await;
    let _a = cluster.add_node("node-a", 2.0, 4.0).await;
    let api = cluster.tenant(&[SUB]).await;
    create(&api, "before", &group_body()).await;
    api.wait_group(SUB, "rg1", "before", 20, running).await;

    let id = listed(&cluster, "node-a").await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    // By id here, by name below.
    let (status, node) = admin(
        &cluster,
        Method::POST,
        &format!("/admin/v1/nodes/{id}/cordon"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{node}");
    assert_eq!(
        (
            &node["name"],
            &node["cordoned"],
            &node["draining"],
            &node["groups"]
        ),
        (&json!("node-a"), &json!(true), &json!(false), &json!(1)),
        "{node}"
    );
    let (status, got) = admin(&cluster, Method::GET, "/admin/v1/nodes/node-a").await;
    assert_eq!((status, &got["cordoned"]), (StatusCode::OK, &json!(true)));

    create(&api, "after", &group_body()).await;
    let waiting = api
        .wait_group(SUB, "rg1", "after", 20, |g| {
            event(g, "FailedScheduling").is_some()
        })
        .await;
    assert_eq!(waiting["properties"]["provisioningState"], "Pending");
    let (_, before) = api.get_group(SUB, "rg1", "before").await;
    assert!(running(&before), "a cordon moves nothing: {before}");

    let (status, node) = admin(&cluster, Method::POST, "/admin/v1/nodes/node-a/uncordon").await;
    assert_eq!(
        (status, &node["cordoned"]),
        (StatusCode::OK, &json!(false)),
        "{node}"
    );
    api.wait_group(SUB, "rg1", "after", 20, running).await;
}

#[tokio::test]
async fn node_administration_is_for_operators_and_names_known_nodes() {
    let cluster = Cluster::start().await;
    let _a = cluster.add_node("node-a", 2.0, 4.0).await;
    for (method, path) in [
        (Method::GET, "/admin/v1/nodes/nope"),
        (Method::POST, "/admin/v1/nodes/nope/cordon"),
        (Method::POST, "/admin/v1/nodes/nope/uncordon"),
        (Method::POST, "/admin/v1/nodes/nope/drain"),
        (Method::DELETE, "/admin/v1/nodes/nope"),
        (Method::DELETE, "/admin/v1/nodes/nope?force=true"),
    ] {
        let (status, answer) = admin(&cluster, method.clone(), path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {answer}");
        assert_eq!(answer["error"]["code"], "NodeNotFound", "{answer}");
        assert_eq!(answer["error"]["message"], "The node 'nope' was not found.");
    }
    let tenant = cluster.tenant(&[SUB]).await;
    for (method, path) in [
        (Method::GET, "/admin/v1/nodes/node-a"),
        (Method::POST, "/admin/v1/nodes/node-a/cordon"),
        (Method::POST, "/admin/v1/nodes/node-a/drain"),
        (Method::DELETE, "/admin/v1/nodes/node-a?force=true"),
    ] {
        let (status, answer) = tenant.call(method.clone(), path, None).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}: {answer}");
        assert!(answer["error"]["code"].is_string(), "{answer}");
    }
    let (status, answer) =
        admin(&cluster, Method::DELETE, "/admin/v1/nodes/node-a?force=yes").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    let node = listed(&cluster, "node-a").await;
    assert_eq!(
        (&node["status"], &node["cordoned"]),
        (&json!("Ready"), &json!(false)),
        "nothing changed: {node}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_moves_every_group_off_and_the_node_shows_draining() {
    let cluster = Cluster::start().await;
    let _a = cluster.add_node("node-a", 4.0, 8.0).await;
    let api = cluster.tenant(&[SUB]).await;
    create(&api, "one", &body("Always", IMAGE)).await;
    create(&api, "two", &body("Never", IMAGE)).await;
    for name in ["one", "two"] {
        api.wait_group(SUB, "rg1", name, 20, |g| {
            running(g) && placed_on(g, "node-a")
        })
        .await;
    }
    let _b = cluster.add_node("node-b", 4.0, 8.0).await;

    let (status, answer) = admin(&cluster, Method::POST, "/admin/v1/nodes/node-a/drain").await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let mut moved: Vec<&str> = answer["moved"]
        .as_array()
        .expect("moved")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    moved.sort();
    let mut ids = Vec::new();
    for name in ["one", "two"] {
        let (_, g) = api.get_group(SUB, "rg1", name).await;
        ids.push(g["id"].as_str().expect("id").to_owned());
    }
    assert_eq!(moved, ids, "moved, by their ARM ids: {answer}");
    assert_eq!(answer["settled"], json!([]), "{answer}");
    assert_eq!(
        (
            &answer["node"]["cordoned"],
            &answer["node"]["draining"],
            &answer["node"]["groups"]
        ),
        (&json!(true), &json!(true), &json!(0)),
        "{answer}"
    );
    for name in ["one", "two"] {
        let g = api
            .wait_group(SUB, "rg1", name, 20, |g| {
                running(g) && placed_on(g, "node-b")
            })
            .await;
        let drained =
            event(&g, "NodeDrained").unwrap_or_else(|| panic!("a NodeDrained event: {g}"));
        assert_eq!(drained["type"], "Normal", "{drained}");
    }
    let node = listed(&cluster, "node-a").await;
    assert_eq!(
        (
            &node["cordoned"],
            &node["draining"],
            &node["groups"],
            &node["status"]
        ),
        (&json!(true), &json!(true), &json!(0), &json!("Ready")),
        "{node}"
    );
    // New groups go elsewhere too.
    create(&api, "three", &group_body()).await;
    api.wait_group(SUB, "rg1", "three", 20, |g| {
        running(g) && placed_on(g, "node-b")
    })
    .await;
    let (status, node) = admin(&cluster, Method::POST, "/admin/v1/nodes/node-a/uncordon").await;
    assert_eq!(
        (status, &node["cordoned"], &node["draining"]),
        (StatusCode::OK, &json!(false), &json!(false)),
        "uncordon ends the drain: {node}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_groups_is_deleted_only_by_force() {
    let cluster = Cluster::start().await;
    let a = cluster.add_node("node-a", 2.0, 4.0).await;
    let api = cluster.tenant(&[SUB]).await;
    create(&api, "svc", &group_body()).await;
    api.wait_group(SUB, "rg1", "svc", 20, running).await;

    let (status, answer) = admin(&cluster, Method::DELETE, "/admin/v1/nodes/node-a").await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    assert_eq!(answer["error"]["code"], "NodeNotEmpty");
    let message = answer["error"]["message"].as_str().expect("message");
    assert!(
        message.contains("1 container group(s)") && message.contains("force=true"),
        "{message}"
    );
    assert_eq!(listed(&cluster, "node-a").await["status"], "Ready");

    let (status, answer) = admin(
        &cluster,
        Method::DELETE,
        "/admin/v1/nodes/node-a?force=true",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let (_, svc) = api.get_group(SUB, "rg1", "svc").await;
    assert_eq!(answer["moved"], json!([svc["id"]]), "{answer}");
    assert_eq!(answer["node"]["name"], "node-a");
    // Gone from the list, and its agent (still running, reconnecting) does not bring it back.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(listed(&cluster, "node-a").await, Value::Null);
    let waiting = api
        .wait_group(SUB, "rg1", "svc", 20, |g| {
            g["properties"]["provisioningState"] == "Pending" && event(g, "NodeLost").is_some()
        })
        .await;
    assert!(!running(&waiting), "{waiting}");
    drop(a);

    // Another node takes it; an empty node is deleted without force.
    let _b = cluster.add_node("node-b", 2.0, 4.0).await;
    api.wait_group(SUB, "rg1", "svc", 20, |g| {
        running(g) && placed_on(g, "node-b")
    })
    .await;
    let _c = cluster.add_node("node-c", 2.0, 4.0).await;
    let (status, answer) = admin(&cluster, Method::DELETE, "/admin/v1/nodes/node-c").await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(
        (&answer["moved"], &answer["settled"]),
        (&json!([]), &json!([]))
    );
    assert_eq!(listed(&cluster, "node-c").await, Value::Null);
}

#[tokio::test]
async fn a_group_no_node_takes_within_the_pending_timeout_fails_with_the_reason() {
    let cluster = Cluster::start_with(|c| c.pending_timeout_secs = 2).await;
    let _a = cluster.add_node("node-a", 2.0, 4.0).await;
    let api = cluster.tenant(&[SUB]).await;
    let mut big = group_body();
    big["properties"]["containers"][0]["properties"]["resources"]["requests"] =
        json!({"cpu": 2.0, "memoryInGB": 2.0});
    create(&api, "big", &big).await;
    api.wait_group(SUB, "rg1", "big", 20, running).await;

    let started = tokio::time::Instant::now();
    let (status, headers, answer) = api.put_group(SUB, "rg1", "late", &group_body()).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    let operation = headers["azure-asyncoperation"]
        .to_str()
        .expect("header")
        .to_owned();
    let failed = api
        .wait_group(SUB, "rg1", "late", 20, |g| {
            g["properties"]["provisioningState"] == "Failed"
        })
        .await;
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "not before the timeout: {:?}",
        started.elapsed()
    );
    let timeout = event(&failed, "ProvisioningTimeout").expect("the reason in the events");
    let message = timeout["message"].as_str().expect("message");
    assert!(
        message.contains("provisioning timeout of 2 s")
            && message
                .contains("The last reason it could not be placed: No Ready Linux node has 1 CPU"),
        "{message}"
    );
    let status = api.wait_operation(&operation, 10).await;
    assert_eq!(status["status"], "Failed", "{status}");
    assert_eq!(
        status["error"]["code"], "ContainerGroupProvisioningTimeout",
        "{status}"
    );
    // Failed is final: capacity freeing later does not place it.
    let (status, _) = api
        .call(
            Method::DELETE,
            &crate::harness::group_path(SUB, "rg1", "big"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (_, late) = api.get_group(SUB, "rg1", "late").await;
    assert_eq!(late["properties"]["provisioningState"], "Failed", "{late}");
}
