//! `GET …/containers/{c}/logs`: checked like every route, then read from the group's node through the
//! agent's own service over mutual TLS, or a clear ACI-shaped error saying why there is nothing to
//! read. Hollow nodes run no containers, so the log text itself is tested with containerd elsewhere.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::harness::{Api, Cluster, SUB, group_body, group_path, running};

fn logs_path(name: &str, container: &str, query: &str) -> String {
    group_path(SUB, "rg1", name).replace(
        "?api-version",
        &format!("/containers/{container}/logs?{query}api-version"),
    )
}

async fn logs(api: &Api, name: &str, container: &str, query: &str) -> (StatusCode, Value) {
    api.call(Method::GET, &logs_path(name, container, query), None)
        .await
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or_default()
}

fn with_cpu(cpu: f64) -> Value {
    let mut body = group_body();
    body["properties"]["containers"][0]["properties"]["resources"]["requests"]["cpu"] = json!(cpu);
    body
}

#[tokio::test]
async fn a_hollow_node_serves_no_logs_and_says_so() {
    let cluster = Cluster::start().await;
    let _node = cluster.add_node("node-a", 4.0, 8.0).await;
    let api = cluster.tenant(&[SUB]).await;
    let (status, _, _) = api.put_group(SUB, "rg1", "web", &group_body()).await;
    assert_eq!(status, StatusCode::CREATED);
    api.wait_group(SUB, "rg1", "web", 20, running).await;

    let (status, body) = logs(&api, "web", "web", "tail=10&timestamps=true&").await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(code(&body), "LogsNotAvailable", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("'web'") && m.contains("does not serve container logs")),
        "{body}"
    );

    let (status, body) = logs(&api, "web", "nope", "").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(code(&body), "ContainerNotFound", "{body}");
    let (status, body) = logs(&api, "absent", "web", "").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(code(&body), "ResourceNotFound", "{body}");

    for (query, target) in [
        ("tail=abc&", "tail"),
        ("tail=-1&", "tail"),
        ("timestamps=maybe&", "timestamps"),
    ] {
        let (status, body) = logs(&api, "web", "web", query).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert_eq!(code(&body), "InvalidParameter", "{body}");
        assert_eq!(body["error"]["target"], target, "{body}");
    }
}

#[tokio::test]
async fn a_group_that_runs_nowhere_has_no_logs_yet() {
    let cluster = Cluster::start().await;
    let _node = cluster.add_node("node-a", 4.0, 8.0).await;
    let api = cluster.tenant(&[SUB]).await;
    for name in ["first", "second"] {
        let (status, _, _) = api.put_group(SUB, "rg1", name, &with_cpu(3.0)).await;
        assert_eq!(status, StatusCode::CREATED);
    }
    api.wait_group(SUB, "rg1", "first", 20, running).await;
    // The node holds one of them: the other waits for capacity.
    let (status, body) = logs(&api, "second", "web", "").await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(code(&body), "ContainerGroupNotRunning", "{body}");

    let stop = group_path(SUB, "rg1", "first").replace("?api-version", "/stop?api-version");
    let (status, body) = api.call(Method::POST, &stop, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (status, body) = logs(&api, "first", "web", "").await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(code(&body), "ContainerGroupStopped", "{body}");
    assert_eq!(
        body["error"]["message"],
        "Container Group 'first' in resource group 'rg1' is stopped."
    );
}

/// A hollow agent that also serves `AgentService` on a loopback port; stopped when dropped.
struct ServingNode {
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Drop for ServingNode {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl ServingNode {
    async fn start(cluster: &Cluster, name: &str) -> Self {
        let state_dir = cluster.dir().join(format!("agent-{name}"));
        let mut config = berth_node_agent::AgentConfig::new(cluster.node_url(), state_dir, name);
        config.join_token = Some(cluster.join_token(1).await);
        config.capacity = berth_proto::node::Resources {
            cpu_millis: 4000,
            memory_mib: 8192,
            gpu: 0,
            gpu_sku: String::new(),
        };
        config.agent_listen = Some("127.0.0.1:0".parse().expect("literal address"));
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(berth_node_agent::run(config, shutdown.clone()));
        cluster.wait_node(name, "Ready").await;
        Self {
            shutdown,
            task: Some(task),
        }
    }

    async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

#[tokio::test]
async fn the_apiserver_reaches_the_agent_over_mutual_tls_and_says_when_it_cannot() {
    let cluster = Cluster::start().await;
    let node = ServingNode::start(&cluster, "node-a").await;
    let api = cluster.tenant(&[SUB]).await;
    let (status, _, _) = api.put_group(SUB, "rg1", "web", &group_body()).await;
    assert_eq!(status, StatusCode::CREATED);
    api.wait_group(SUB, "rg1", "web", 20, running).await;

    // The apiserver dialled the agent, both certificates were accepted, and the agent answered that
    // its (hollow) runtime has no such container: anything else (a TLS failure, a refused caller)
    // would be a 503 or a 502.
    let (status, body) = logs(&api, "web", "web", "tail=5&").await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(code(&body), "ContainerGroupNotRunning", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("has not started on its node")),
        "{body}"
    );

    // With the agent gone the node is unreachable: a prompt 503, never a hang.
    node.stop().await;
    let started = tokio::time::Instant::now();
    let (status, body) = logs(&api, "web", "web", "").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(code(&body), "NodeUnavailable", "{body}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn a_replica_reaches_the_agent_of_a_node_streaming_to_another() {
    let cluster = Cluster::start().await;
    let _node = ServingNode::start(&cluster, "node-a").await;
    let api = cluster.tenant(&[SUB]).await;
    let (status, _, _) = api.put_group(SUB, "rg1", "web", &group_body()).await;
    assert_eq!(status, StatusCode::CREATED);
    api.wait_group(SUB, "rg1", "web", 20, running).await;

    // The node's Hello went to the first apiserver only; the replica learns its endpoint from the
    // store and dials it: the (hollow) agent's own answer, not "serves no logs".
    let replica = cluster.replica().await;
    let (status, body) = logs(&replica.api(api.token()), "web", "web", "tail=5&").await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(code(&body), "ContainerGroupNotRunning", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("has not started on its node")),
        "{body}"
    );
}

#[tokio::test]
async fn exec_and_attach_validate_and_say_why_a_hollow_node_cannot() {
    let cluster = Cluster::start().await;
    let _node = cluster.add_node("node-a", 4.0, 8.0).await;
    let api = cluster.tenant(&[SUB]).await;
    let (status, _, _) = api.put_group(SUB, "rg1", "web", &group_body()).await;
    assert_eq!(status, StatusCode::CREATED);
    api.wait_group(SUB, "rg1", "web", 20, running).await;
    let path = |verb: &str| logs_path("web", "web", "").replace("/logs?", &format!("/{verb}?"));

    for (body, target) in [
        (json!({}), "command"),
        (json!({"command": ""}), "command"),
        (json!({"command": []}), "command"),
        (json!({"command": 7}), "command"),
        (
            json!({"command": "sh", "terminalSize": {"rows": -1, "cols": 80}}),
            "terminalSize.rows",
        ),
        (
            json!({"command": "sh", "terminalSize": {"rows": 24, "cols": 100000}}),
            "terminalSize.cols",
        ),
        (json!({"command": "sh", "tty": "yes"}), "tty"),
        (json!({"command": "sh", "extra": 1}), "body"),
    ] {
        let (status, answer) = api
            .call(Method::POST, &path("exec"), Some(body.clone()))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        assert!(
            answer["error"]["target"]
                .as_str()
                .is_some_and(|t| t == target || (target == "body" && !t.is_empty())),
            "{body}: {answer}"
        );
    }
    let (status, answer) = api
        .call(
            Method::POST,
            &path("exec"),
            Some(json!({"command": "/bin/sh"})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    assert_eq!(code(&answer), "ExecNotAvailable", "{answer}");
    let (status, answer) = api.call(Method::POST, &path("attach"), None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    assert_eq!(code(&answer), "ExecNotAvailable", "{answer}");
    let (status, answer) = api
        .call(Method::POST, &path("attach"), Some(json!([1])))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    let (status, answer) = api
        .call(
            Method::POST,
            &path("exec").replace("/web/exec", "/nope/exec"),
            Some(json!({"command": "sh"})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");
    assert_eq!(code(&answer), "ContainerNotFound", "{answer}");
    for (query, target) in [
        ("follow=true&previous=true&", "follow"),
        ("since=1d&", "since"),
        ("follow=yes&", "follow"),
    ] {
        let (status, body) = logs(&api, "web", "web", query).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert_eq!(body["error"]["target"], target, "{body}");
    }
    // A websocket URL without a session, and a plain GET of one.
    let (status, answer) = api.call(Method::GET, "/exec/no-such-session", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(code(&answer), "WebSocketRequired", "{answer}");
}
