//! An apiserver restart loses nothing: tokens, groups, operations, nodes and their assignments.

use reqwest::{Method, StatusCode};

use crate::harness::{Cluster, SUB, group_body, running};

#[tokio::test]
async fn apiserver_restart_loses_nothing() {
    let cluster = Cluster::start().await;
    let node = cluster.add_node("node-a", 4.0, 8.0).await;
    let api = cluster.tenant(&[SUB]).await;
    let token = api.token().to_owned();
    let (status, headers, _) = api.put_group(SUB, "rg1", "keep", &group_body()).await;
    assert_eq!(status, StatusCode::CREATED);
    let op_url = headers["azure-asyncoperation"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let before = api.wait_group(SUB, "rg1", "keep", 20, running).await;

    let cluster = cluster.restart().await;
    let api = cluster.api(&token);
    let (status, after) = api.get_group(SUB, "rg1", "keep").await;
    assert_eq!(status, StatusCode::OK, "{after}");
    assert_eq!(
        after["properties"]["containers"][0]["properties"]["image"],
        before["properties"]["containers"][0]["properties"]["image"]
    );
    assert_eq!(after["id"], before["id"]);
    assert_eq!(
        after["properties"]["ipAddress"]["ip"],
        before["properties"]["ipAddress"]["ip"]
    );
    let (status, op) = api.call(Method::GET, &op_url, None).await;
    assert_eq!(status, StatusCode::OK, "{op}");
    assert_eq!(op["status"], "Succeeded");
    // The agent reconnects by itself and the group is still Running; new work is placed.
    cluster.wait_node("node-a", "Ready").await;
    api.wait_group(SUB, "rg1", "keep", 20, running).await;
    let (status, _, _) = api.put_group(SUB, "rg1", "new", &group_body()).await;
    assert_eq!(status, StatusCode::CREATED);
    api.wait_group(SUB, "rg1", "new", 20, running).await;
    drop(node);
}
