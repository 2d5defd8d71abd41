//! ACI's metrics route (`{group id}/providers/Microsoft.Insights/metrics`) as its clients read it: the
//! REST answer itself, Azure Monitor's Python SDK (`tests/python/test_monitor_metrics.py`, run with
//! pytest) and `az monitor metrics list`, over samples written into the store as a node's would be;
//! and on a real node, from the samples its agent takes of a busy and an idle container.

use std::path::Path;
use std::time::Duration;

use berth_apiserver::store::{GroupKey, MetricSample};
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::az::az_binary;
use crate::az::session::Az;
use crate::harness::{Api, Cluster, SUB, running};
use crate::real::{RealNode, RealOptions, SLOW, python, real_group, wait_group};

const RG: &str = "rg1";
const NAME: &str = "web";

fn resource_id() -> String {
    format!(
        "/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.ContainerInstance/containerGroups/{NAME}"
    )
}

fn metrics_path(query: &str) -> String {
    format!(
        "{}/providers/Microsoft.Insights/metrics?api-version=2018-01-01&{query}",
        resource_id()
    )
}

/// Ten minutes of samples every 10 s, up to now, as a node sends them: `busy` spins (~900
/// millicores), `idle` sleeps (~2), and the group's own row carries the network rates.
async fn record_samples(cluster: &Cluster) {
    let store = &cluster.state().store;
    let group = store
        .group(&GroupKey::new(SUB, RG, NAME))
        .await
        .expect("the store answers")
        .expect("the group exists");
    let node = group.node_id.clone().expect("the group is placed");
    let now = berth_apiserver::now_ms();
    let mut samples = Vec::new();
    for k in 0..60 {
        let at_ms = now - 600_000 + k * 10_000;
        let row = |container: &str, millicores: f64, memory_mib: u64| MetricSample {
            group_id: group.id.clone(),
            container: container.to_owned(),
            at_ms,
            cpu_usage_ns: (k as u64) * 10_000_000 * millicores as u64,
            cpu_millicores: millicores,
            memory_bytes: memory_mib << 20,
            rx_bytes: 0,
            tx_bytes: 0,
            rx_bytes_per_second: 0.0,
            tx_bytes_per_second: 0.0,
        };
        samples.push(row("busy", 900.0 + (k % 3) as f64 * 10.0, 8));
        samples.push(row("idle", 2.0, 1));
        samples.push(MetricSample {
            rx_bytes: k as u64 * 5_000,
            tx_bytes: k as u64 * 2_000,
            rx_bytes_per_second: 500.0,
            tx_bytes_per_second: 200.0,
            ..row("", 0.0, 0)
        });
    }
    let stored = store
        .record_samples(&node, &samples)
        .await
        .expect("samples are stored");
    assert_eq!(stored, samples.len() as u64);
}

async fn busy_group(cluster: &Cluster) -> Api {
    let api = cluster.tenant(&[SUB]).await;
    let body = busy_body("busybox");
    let (status, _, created) = api.put_group(SUB, RG, NAME, &body).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    api.wait_group(SUB, RG, NAME, 20, running).await;
    api
}

/// A container that spins and one that sleeps.
fn busy_body(image: &str) -> Value {
    real_group(
        image,
        "Always",
        &[
            ("busy", &["sh", "-c", "while :; do :; done"]),
            ("idle", &["sleep", "3600"]),
        ],
    )
}

fn series_of<'a>(metric: &'a Value, container: &str) -> &'a Value {
    metric["timeseries"]
        .as_array()
        .and_then(|all| {
            all.iter()
                .find(|s| s["metadatavalues"][0]["value"] == container)
        })
        .unwrap_or_else(|| panic!("no series of {container}: {metric}"))
}

fn averages(series: &Value) -> Vec<f64> {
    series["data"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["average"].as_f64())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_route_answers_per_container_and_per_group_in_azure_monitors_shape() {
    let cluster = Cluster::start().await;
    let _node = cluster.add_node("node-a", 4.0, 8.0).await;
    let api = busy_group(&cluster).await;
    record_samples(&cluster).await;

    let (status, body) = api
        .call(
            Method::GET,
            &metrics_path(
                "metricnames=CpuUsage,MemoryUsage&timespan=PT15M&interval=PT1M&aggregation=Average,Maximum&$filter=containerName%20eq%20'*'",
            ),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["namespace"],
        "Microsoft.ContainerInstance/containerGroups"
    );
    assert_eq!(body["interval"], "PT1M");
    assert_eq!(body["resourceregion"], "local");
    let cpu = &body["value"][0];
    assert_eq!(cpu["name"]["value"], "CpuUsage", "{body}");
    assert_eq!(
        cpu["id"],
        format!(
            "{}/providers/Microsoft.Insights/metrics/CpuUsage",
            resource_id()
        )
    );
    let busy = averages(series_of(cpu, "busy"));
    assert!(busy.len() >= 9, "ten minutes of samples: {busy:?}");
    assert!(busy.iter().all(|a| (900.0..=920.0).contains(a)), "{busy:?}");
    assert!(averages(series_of(cpu, "idle")).iter().all(|a| *a == 2.0));
    let memory = &body["value"][1];
    assert_eq!(memory["unit"], "Bytes");
    assert!(
        averages(series_of(memory, "busy"))
            .iter()
            .all(|a| *a == 8.0 * 1024.0 * 1024.0)
    );

    // Without a filter: the group, its containers added up at each sample.
    let (status, body) = api
        .call(
            Method::GET,
            &metrics_path("metricnames=CpuUsage,NetworkBytesTransmittedPerSecond&timespan=PT15M"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let group = &body["value"][0]["timeseries"][0];
    assert_eq!(group["metadatavalues"], Value::Array(vec![]));
    assert!(
        averages(group).iter().all(|a| (902.0..=922.0).contains(a)),
        "{group}"
    );
    let network = averages(&body["value"][1]["timeseries"][0]);
    assert!(
        !network.is_empty() && network.iter().all(|a| *a == 200.0),
        "{body}"
    );

    // A bad query is Azure Monitor's 400 naming the parameter.
    let (status, body) = api
        .call(
            Method::GET,
            &metrics_path("metricnames=CpuUsage&interval=PT2M"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["code"], "BadRequest");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("interval")),
        "{body}"
    );
    let (status, body) = api
        .call(Method::GET, &metrics_path("metricnames=CpuPercent"), None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("metricnames")),
        "{body}"
    );

    // Tenancy: another tenant gets what the group's GET gives it, 404.
    let other = cluster
        .tenant(&["00000000-0000-0000-0000-0000000000ff"])
        .await;
    let (get_status, _) = other.get_group(SUB, RG, NAME).await;
    let (status, body) = other
        .call(Method::GET, &metrics_path("metricnames=CpuUsage"), None)
        .await;
    assert_eq!(
        (get_status, status),
        (StatusCode::NOT_FOUND, StatusCode::NOT_FOUND),
        "{body}"
    );
    let (status, body) = api
        .call(
            Method::GET,
            &metrics_path("metricnames=CpuUsage").replace(NAME, "absent"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_monitors_python_sdk_reads_the_metrics() {
    let cluster = Cluster::start().await;
    let _node = cluster.add_node("node-a", 4.0, 8.0).await;
    let api = busy_group(&cluster).await;
    record_samples(&cluster).await;
    run_sdk_tests(&cluster, &api).await;
}

/// Runs `tests/python/test_monitor_metrics.py` (pytest) against the group `busy_group` made.
async fn run_sdk_tests(cluster: &Cluster, api: &Api) {
    let ca = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(ca.path(), &cluster.ca_pem).expect("CA file");
    let tests = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/test_monitor_metrics.py");
    let output = tokio::process::Command::new(python())
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs"])
        .arg(&tests)
        .env("BERTH_METRICS_ENDPOINT", &cluster.base)
        .env("BERTH_METRICS_TOKEN", api.token())
        .env("BERTH_METRICS_CA", ca.path())
        .env("BERTH_METRICS_GROUP", resource_id())
        .env("BERTH_METRICS_SUBSCRIPTION", SUB)
        .env("BERTH_METRICS_BUSY", "busy")
        .env("BERTH_METRICS_IDLE", "idle")
        .output()
        .await
        .expect("pytest runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("3 passed"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn az_monitor_metrics_list_reads_the_metrics() {
    let cluster = Cluster::start().await;
    let _node = cluster.add_node("node-a", 4.0, 8.0).await;
    let _api = busy_group(&cluster).await;
    record_samples(&cluster).await;
    let az = Az::sign_in(&cluster, &az_binary(crate::az::CURRENT), SUB).await;
    let id = resource_id();
    let listed = az
        .json(&[
            "monitor",
            "metrics",
            "list",
            "--resource",
            &id,
            "--metrics",
            "CpuUsage",
            "MemoryUsage",
            "--dimension",
            "containerName",
            "--interval",
            "PT1M",
            "--offset",
            "15m",
            "--aggregation",
            "Average",
        ])
        .await;
    assert_eq!(listed["interval"], "PT1M", "{listed}");
    let cpu = &listed["value"][0];
    assert_eq!(cpu["name"]["value"], "CpuUsage", "{listed}");
    let busy = averages(series_of(cpu, "busy"));
    assert!(
        busy.len() >= 9 && busy.iter().all(|a| *a >= 900.0),
        "{busy:?}"
    );
    let memory = &listed["value"][1];
    assert!(
        averages(series_of(memory, "idle"))
            .iter()
            .all(|a| *a == 1024.0 * 1024.0),
        "{listed}"
    );

    // az's table: a row per minute and container, the dimension as a column.
    let table = az
        .text(&[
            "monitor",
            "metrics",
            "list",
            "--resource",
            &id,
            "--metrics",
            "CpuUsage",
            "--dimension",
            "containerName",
            "--offset",
            "15m",
            "--output",
            "table",
        ])
        .await;
    assert!(
        table.contains("Containername") && table.contains("busy") && table.contains("CPU Usage"),
        "{table}"
    );

    // A bad interval: az exits non-zero, saying what Berth said.
    let (ok, _, stderr) = az
        .run(&[
            "monitor",
            "metrics",
            "list",
            "--resource",
            &id,
            "--metrics",
            "Bogus",
        ])
        .await;
    assert!(!ok && stderr.contains("metricnames"), "{stderr}");
}

/// On a real node (containerd, cgroups): a spinning container's CpuUsage is most of a core and both
/// containers' MemoryUsage is above zero, from the samples the agent took and sent up `Sync`; Azure
/// Monitor's Python SDK reads the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_container_on_a_real_node_shows_its_cpu_and_memory() {
    let cluster = Cluster::start().await;
    let node = RealNode::start(&cluster, "metrics-node", RealOptions::default()).await;
    let api = cluster.tenant(&[SUB]).await;
    let (status, _, created) = api.put_group(SUB, RG, NAME, &busy_body(&node.image)).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    wait_group(&api, &node, RG, NAME, running).await;

    // The agent samples every 10 s: wait until a minute holds a busy average.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(SLOW);
    let query = "metricnames=CpuUsage,MemoryUsage&timespan=PT10M&$filter=containerName%20eq%20'*'";
    let body = loop {
        let (status, body) = api.call(Method::GET, &metrics_path(query), None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let busy = body["value"][0]["timeseries"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|s| s["metadatavalues"][0]["value"] == "busy")
            .map(averages)
            .unwrap_or_default();
        if busy.iter().any(|a| *a > 100.0) {
            break body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no busy CpuUsage yet: {body}\n--- agent log ---\n{}",
            node.agent_log()
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    let peak = |values: Vec<f64>| values.into_iter().fold(0.0, f64::max);
    let busy = peak(averages(series_of(&body["value"][0], "busy")));
    let idle = peak(averages(series_of(&body["value"][0], "idle")));
    assert!(busy > 100.0 && idle < busy, "{body}");
    for container in ["busy", "idle"] {
        let memory = averages(series_of(&body["value"][1], container));
        assert!(
            !memory.is_empty() && memory.iter().all(|m| *m > 0.0),
            "{body}"
        );
    }
    // The cluster-wide scrape carries the same samples, with cAdvisor's names and ARM labels.
    let client = crate::metrics_prometheus::https_client(&cluster.ca_pem);
    let url = format!("{}/metrics", cluster.base);
    let (status, _, text) =
        crate::metrics_prometheus::get(&client, &url, Some(&cluster.operator)).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let families = crate::metrics_prometheus::parse(&text).await;
    for (sample, container) in [
        ("container_cpu_usage_seconds_total", "busy"),
        ("container_memory_working_set_bytes", "busy"),
        ("container_memory_working_set_bytes", "idle"),
    ] {
        let labels = [
            ("resource_group", RG),
            ("container_group", NAME),
            ("container", container),
        ];
        let value = crate::metrics_prometheus::value(&families, sample, &labels);
        assert!(value > 0.0, "{sample} {container}: {value}\n{text}");
    }
    run_sdk_tests(&cluster, &api).await;
}
