//! `berth admin node list|cordon|uncordon|drain|delete` against a scripted server: the routes they
//! call, what they print, how `drain` follows the moved groups and its exit codes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use super::{Server, empty, not_found, reply, run};

fn node(name: &str, status: &str, cordoned: bool, draining: bool, groups: u64) -> Value {
    json!({"id": format!("id-{name}"), "name": name, "osType": "Linux", "status": status,
        "cordoned": cordoned, "draining": draining,
        "capacity": {"cpu": 4.0, "memoryInGB": 16.0, "gpu": 0},
        "allocated": {"cpu": 0.0, "memoryInGB": 0.0, "gpu": 0},
        "groups": groups, "labels": {}, "lastHeartbeat": "2025-01-01T00:00:00Z", "agentVersion": "0.1.0"})
}

fn evacuation(moved: &[&str], settled: &[&str]) -> Value {
    json!({"node": node("node-a", "Ready", true, true, 0), "moved": moved, "settled": settled})
}

/// `GET /admin/v1/groups/{id}`'s answer.
fn placement(id: &str, name: &str, node: Option<&str>, provisioning: &str, state: &str) -> Value {
    json!({"id": id, "node": node, "provisioningState": provisioning, "state": state,
        "resourceId": format!("/subscriptions/dev/resourceGroups/rg/providers/Microsoft.ContainerInstance/containerGroups/{name}"),
        "lastEvent": {"name": "FailedScheduling", "message": "No node has 4 CPU and 1 GB free."}})
}

fn rows(stdout: &str) -> Vec<Vec<&str>> {
    stdout
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_shows_status_and_scheduling_and_cordon_flips_it() {
    let server = Server::start(|r| match (r.method.as_str(), r.path.as_str()) {
        ("GET", "/admin/v1/nodes") => reply(
            200,
            json!({"value": [node("node-a", "Ready", false, false, 2), node("node-b", "Lost", false, false, 0),
                             node("node-c", "NotReady", true, false, 1), node("node-d", "Ready", true, true, 0)]}),
        ),
        ("POST", "/admin/v1/nodes/node-a/cordon") => {
            reply(200, node("node-a", "Ready", true, false, 2))
        }
        ("POST", "/admin/v1/nodes/node-d/uncordon") => {
            reply(200, node("node-d", "Ready", false, false, 0))
        }
        _ => reply(
            404,
            json!({"error": {"code": "NodeNotFound", "message": "No node is named 'nope'."}}),
        ),
    })
    .await;
    let out = run(&mut server.berth(), &["admin", "node", "list"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let table = rows(&out.stdout);
    assert_eq!(table[0][..3], ["NAME", "STATUS", "SCHEDULING"]);
    let columns: Vec<&[&str]> = table[2..].iter().map(|r| &r[..3]).collect();
    assert_eq!(
        columns,
        [
            &["node-a", "Ready", "-"][..],
            &["node-b", "Lost", "-"],
            &["node-c", "NotReady", "Cordoned"],
            &["node-d", "Ready", "Draining"]
        ]
    );

    let out = run(&mut server.berth(), &["admin", "node", "cordon", "node-a"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let request = server.requests().pop().unwrap();
    assert_eq!(
        (request.method.as_str(), request.path.as_str()),
        ("POST", "/admin/v1/nodes/node-a/cordon")
    );
    assert_eq!(rows(&out.stdout)[2][..3], ["node-a", "Ready", "Cordoned"]);

    let out = run(
        &mut server.berth(),
        &["admin", "node", "uncordon", "node-d", "-o", "json"],
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let shown: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        (shown["cordoned"].clone(), shown["draining"].clone()),
        (json!(false), json!(false))
    );

    let out = run(&mut server.berth(), &["admin", "node", "cordon", "nope"]).await;
    assert_eq!(
        out.code, 3,
        "an unknown node exits as not found: {}",
        out.stderr
    );
    assert!(
        out.stderr.contains("No node is named 'nope'"),
        "{}",
        out.stderr
    );
}

/// A server whose drain of node-a moves `g1` and `g2`: `g1` runs on node-b from its third look,
/// `g2` on node-c from its fifth; `g3` (settled) is never looked at.
async fn draining_server() -> Server {
    let looks: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
    Server::start(move |r| {
        let path = r.path.as_str();
        if (r.method.as_str(), path) == ("POST", "/admin/v1/nodes/node-a/drain") {
            return reply(200, evacuation(&["g1", "g2"], &["g3"]));
        }
        let Some(id) = path.strip_prefix("/admin/v1/groups/") else {
            return not_found();
        };
        let n = {
            let mut looks = looks.lock().unwrap();
            let n = looks.entry(id.to_owned()).or_default();
            *n += 1;
            *n
        };
        match (id, n) {
            ("g1", 1) => reply(
                200,
                placement("g1", "web", Some("node-a"), "Succeeded", "Running"),
            ),
            ("g1", 2) => reply(
                200,
                placement("g1", "web", Some("node-b"), "Pending", "Pending"),
            ),
            ("g1", _) => reply(
                200,
                placement("g1", "web", Some("node-b"), "Succeeded", "Running"),
            ),
            ("g2", 1..=4) => reply(200, placement("g2", "api", None, "Pending", "Pending")),
            ("g2", _) => reply(
                200,
                placement("g2", "api", Some("node-c"), "Succeeded", "Running"),
            ),
            _ => not_found(),
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_shows_each_group_as_it_runs_elsewhere() {
    let server = draining_server().await;
    let out = run(&mut server.berth(), &["admin", "node", "drain", "node-a"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.stdout.lines().collect::<Vec<_>>(),
        [
            "Draining node node-a: 2 groups to place on other nodes, 1 finished group taken off.",
            "rg/web: Running on node node-b (1 of 2 moved)",
            "rg/api: Running on node node-c (2 of 2 moved)",
            "Node node-a drained: 2 of 2 moved."
        ]
    );
    let looked: Vec<String> = server
        .requests()
        .iter()
        .filter(|r| r.method == "GET")
        .map(|r| r.path.clone())
        .collect();
    assert!(!looked.iter().any(|p| p.ends_with("/g3")), "{looked:?}");
    // Once it ran elsewhere, a group is not looked at again.
    assert_eq!(
        looked.iter().filter(|p| p.ends_with("/g1")).count(),
        3,
        "{looked:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_without_waiting_prints_the_answer() {
    let server = draining_server().await;
    let out = run(
        &mut server.berth(),
        &[
            "admin",
            "node",
            "drain",
            "node-a",
            "--no-wait",
            "-o",
            "json",
        ],
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let answer: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(answer["moved"], json!(["g1", "g2"]));
    assert!(out.stderr.contains("2 groups to place"), "{}", out.stderr);
    assert_eq!(server.requests().len(), 1, "nothing but the drain");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_gives_up_after_the_timeout_naming_what_waits_and_why() {
    let server = Server::start(|r| match (r.method.as_str(), r.path.as_str()) {
        ("POST", "/admin/v1/nodes/node-a/drain") => reply(200, evacuation(&["g1", "g2"], &[])),
        ("GET", "/admin/v1/groups/g1") => reply(
            200,
            placement("g1", "web", Some("node-b"), "Succeeded", "Running"),
        ),
        ("GET", "/admin/v1/groups/g2") => {
            reply(200, placement("g2", "big", None, "Pending", "Pending"))
        }
        _ => not_found(),
    })
    .await;
    let started = std::time::Instant::now();
    let out = run(
        &mut server.berth(),
        &["admin", "node", "drain", "node-a", "--timeout", "2"],
    )
    .await;
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(started.elapsed() >= std::time::Duration::from_secs(2));
    assert!(
        out.stdout
            .contains("rg/web: Running on node node-b (1 of 2 moved)"),
        "{}",
        out.stdout
    );
    assert!(
        out.stderr.contains(
            "gave up after 2 s: 1 of 2 groups moved off node node-a; still waiting: rg/big (FailedScheduling: No node has 4 CPU and 1 GB free.)"
        ),
        "{}",
        out.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_is_refused_with_groups_unless_forced() {
    let server = Server::start(|r| match (r.method.as_str(), r.path.as_str(), r.query.as_str()) {
        ("DELETE", "/admin/v1/nodes/node-a", q) if q.contains("force=true") => {
            reply(200, evacuation(&["g1"], &["g2", "g3"]))
        }
        ("DELETE", "/admin/v1/nodes/node-a", _) => reply(
            409,
            json!({"error": {"code": "NodeNotEmpty", "message": "Node node-a has 3 groups; drain it first or pass force=true."}}),
        ),
        ("DELETE", "/admin/v1/nodes/empty", _) => empty(204),
        _ => not_found(),
    })
    .await;
    let out = run(&mut server.berth(), &["admin", "node", "delete", "node-a"]).await;
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("NodeNotEmpty: Node node-a has 3 groups; drain it first or pass force=true."),
        "{}",
        out.stderr
    );
    let refused = server.requests().pop().unwrap();
    assert!(!refused.query.contains("force"), "{}", refused.query);

    let out = run(
        &mut server.berth(),
        &["admin", "node", "delete", "node-a", "--force"],
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.stderr.trim(),
        "Deleted node node-a: 1 group placed again elsewhere, 2 finished groups taken off."
    );

    let out = run(&mut server.berth(), &["admin", "node", "delete", "empty"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stderr.trim(), "Deleted node empty.");

    let out = run(&mut server.berth(), &["admin", "node", "delete", "gone"]).await;
    assert_eq!(out.code, 3, "{}", out.stderr);
}
