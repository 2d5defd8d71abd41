//! Liveness and readiness probes on a real node (containerd, runc, CNI: see `real.rs`), through the
//! public API: a failing liveness probe restarts its container as the restart policy says, with
//! `Unhealthy` and `Killing` events carrying the probe's output; a readiness probe decides the
//! container's `instanceView.ready`.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{Api, Cluster, SUB};
use crate::real::{RealNode, RealOptions, real_group, state_of, view};

const RG: &str = "rg";

async fn setup(name: &str) -> (Cluster, Api, RealNode) {
    let cluster = Cluster::start().await;
    let api = cluster.tenant(&[SUB]).await;
    let node = RealNode::start(&cluster, name, RealOptions::default()).await;
    (cluster, api, node)
}

/// A group of one container `app` running `script` under `policy`, with `probes` (ARM JSON, e.g.
/// `{"livenessProbe": {...}}`) added to its properties.
fn probed(node: &RealNode, policy: &str, script: &str, probes: Value) -> Value {
    let mut body = real_group(&node.image, policy, &[("app", &["sh", "-c", script])]);
    let properties = &mut body["properties"]["containers"][0]["properties"];
    for (key, value) in probes.as_object().into_iter().flatten() {
        properties[key] = value.clone();
    }
    body
}

async fn create(api: &Api, name: &str, body: &Value) {
    let (status, _, answer) = api.put_group(SUB, RG, name, body).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
}

async fn wait(api: &Api, node: &RealNode, name: &str, check: impl Fn(&Value) -> bool) -> Value {
    crate::real::wait_group(api, node, RG, name, check).await
}

fn restarts(body: &Value) -> i64 {
    view(body, "app")["restartCount"].as_i64().unwrap_or(0)
}

/// The message of the container's event `name`, if there is one.
fn event(body: &Value, name: &str) -> Option<String> {
    view(body, "app")["events"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["name"] == name)
        .map(|e| e["message"].as_str().unwrap_or_default().to_owned())
}

fn ready(body: &Value) -> Option<bool> {
    view(body, "app")["ready"].as_bool()
}

/// Polls group `name` for `duration`, asserting `holds` on every answer.
async fn holds_for(api: &Api, name: &str, duration: Duration, holds: impl Fn(&Value) -> bool) {
    let until = tokio::time::Instant::now() + duration;
    while tokio::time::Instant::now() < until {
        let (status, body) = api.get_group(SUB, RG, name).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(holds(&body), "{body}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_exec_liveness_probe_restarts_the_container_with_its_output() {
    let (_cluster, api, node) = setup("probe-exec").await;
    let body = probed(
        &node,
        "Always",
        "touch /tmp/healthy; sleep 8; rm /tmp/healthy; exec sleep 3600",
        json!({"livenessProbe": {
            "exec": {"command": ["cat", "/tmp/healthy"]},
            "periodSeconds": 1,
            "failureThreshold": 2,
            "timeoutSeconds": 10,
        }}),
    );
    create(&api, "live", &body).await;
    let body = wait(&api, &node, "live", |b| state_of(b, "app") == "Running").await;
    assert_eq!(restarts(&body), 0, "{body}");
    let body = wait(&api, &node, "live", |b| {
        restarts(b) >= 1 && event(b, "Killing").is_some()
    })
    .await;
    let unhealthy = event(&body, "Unhealthy").unwrap_or_default();
    assert!(
        unhealthy.contains("/tmp/healthy"),
        "the Unhealthy event carries cat's complaint: {body}"
    );
    let killing = event(&body, "Killing").unwrap_or_default();
    assert!(!killing.is_empty(), "{body}");
    // Restarted as the policy says: running again.
    wait(&api, &node, "live", |b| {
        state_of(b, "app") == "Running" && restarts(b) >= 1
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_liveness_probe_passes_while_httpd_serves_and_restarts_once_the_file_goes() {
    let (_cluster, api, node) = setup("probe-http").await;
    let body = probed(
        &node,
        "Always",
        "mkdir -p /www && echo ok > /www/healthz.html && httpd -f -p 8080 -h /www & \
         sleep 12; rm /www/healthz.html; wait",
        json!({"livenessProbe": {
            "httpGet": {"path": "/healthz.html", "port": 8080, "scheme": "http",
                        "httpHeaders": [{"name": "X-Probe", "value": "berth"}]},
            "periodSeconds": 1,
            "failureThreshold": 2,
            "timeoutSeconds": 5,
        }}),
    );
    create(&api, "web", &body).await;
    wait(&api, &node, "web", |b| state_of(b, "app") == "Running").await;
    // While the file is served, probes pass: no restart.
    holds_for(&api, "web", Duration::from_secs(6), |b| {
        restarts(b) == 0 && event(b, "Unhealthy").is_none()
    })
    .await;
    let body = wait(&api, &node, "web", |b| {
        restarts(b) >= 1 && event(b, "Unhealthy").is_some()
    })
    .await;
    let unhealthy = event(&body, "Unhealthy").unwrap_or_default();
    assert!(
        unhealthy.contains("404"),
        "busybox httpd answers 404: {body}"
    );
    assert!(event(&body, "Killing").is_some(), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_is_not_ready_until_its_readiness_probe_passes() {
    let (_cluster, api, node) = setup("probe-ready").await;
    let body = probed(
        &node,
        "Never",
        "sleep 8; touch /tmp/ready; exec sleep 3600",
        json!({"readinessProbe": {
            "exec": {"command": ["cat", "/tmp/ready"]},
            "periodSeconds": 1,
            "timeoutSeconds": 10,
        }}),
    );
    create(&api, "ready", &body).await;
    let body = wait(&api, &node, "ready", |b| state_of(b, "app") == "Running").await;
    assert_eq!(
        ready(&body),
        Some(false),
        "running but not yet ready: {body}"
    );
    let body = wait(&api, &node, "ready", |b| ready(b) == Some(true)).await;
    // Readiness never restarts anything.
    assert_eq!(restarts(&body), 0, "{body}");
    assert_eq!(state_of(&body, "app"), "Running", "{body}");

    // A container without a readiness probe is ready once it runs.
    let plain = real_group(&node.image, "Never", &[("app", &["sleep", "3600"])]);
    create(&api, "plain", &plain).await;
    wait(&api, &node, "plain", |b| {
        state_of(b, "app") == "Running" && ready(b) == Some(true)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_policy_never_kills_an_unhealthy_container_and_leaves_it_dead() {
    let (_cluster, api, node) = setup("probe-never").await;
    let body = probed(
        &node,
        "Never",
        "exec sleep 3600",
        json!({"livenessProbe": {
            "exec": {"command": ["sh", "-c", "echo sick; exit 1"]},
            "initialDelaySeconds": 2,
            "periodSeconds": 1,
            "failureThreshold": 2,
            "timeoutSeconds": 10,
        }}),
    );
    create(&api, "never", &body).await;
    let body = wait(&api, &node, "never", |b| {
        state_of(b, "app") == "Terminated" && event(b, "Killing").is_some()
    })
    .await;
    assert!(
        event(&body, "Unhealthy").is_some_and(|m| m.contains("sick")),
        "{body}"
    );
    holds_for(&api, "never", Duration::from_secs(5), |b| {
        restarts(b) == 0 && state_of(b, "app") == "Terminated"
    })
    .await;
}
