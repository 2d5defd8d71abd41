//! `berth container metrics` against a scripted server: the Azure Monitor query it sends, the table
//! (a column per container) and the chart (a sparkline per container) it prints, and its refusals.

use serde_json::{Value, json};

use super::{GROUP_PATH, Server, not_found, reply, run};

fn answer() -> Value {
    let series = |name: &str, values: [Option<f64>; 3]| {
        let data: Vec<Value> = values
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let mut point = json!({"timeStamp": format!("2025-01-01T00:0{i}:00Z")});
                if let Some(v) = v {
                    point["average"] = json!(v);
                }
                point
            })
            .collect();
        json!({"metadatavalues": [{"name": {"value": "containername", "localizedValue": "containername"}, "value": name}],
               "data": data})
    };
    json!({"cost": 0, "timespan": "2025-01-01T00:00:00Z/2025-01-01T00:03:00Z", "interval": "PT1M",
        "namespace": "Microsoft.ContainerInstance/containerGroups", "resourceregion": "local",
        "value": [{"id": "x", "type": "Microsoft.Insights/metrics", "unit": "Count",
            "name": {"value": "CpuUsage", "localizedValue": "CPU Usage"},
            "timeseries": [series("web", [Some(250.0), None, Some(500.0)]), series("sidecar", [Some(5.0), Some(5.0), Some(5.0)])]}]})
}

fn metrics_server() -> impl Fn(&super::Recorded) -> super::Reply + Send + Sync + 'static {
    |r| match (r.method.as_str(), r.path.as_str()) {
        ("GET", p) if p == format!("{GROUP_PATH}/providers/Microsoft.Insights/metrics") => {
            reply(200, answer())
        }
        _ => not_found(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_prints_a_column_per_container_from_azure_monitors_route() {
    let server = Server::start(metrics_server()).await;
    let out = run(
        &mut server.berth(),
        &["container", "metrics", "-g", "rg", "web", "--since", "3h"],
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let lines: Vec<Vec<&str>> = out
        .stdout
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines[0], ["TIME", "web", "sidecar"], "{}", out.stdout);
    assert_eq!(
        lines[2],
        ["2025-01-01T00:00:00Z", "250m", "5m"],
        "{}",
        out.stdout
    );
    assert_eq!(
        lines[3],
        ["2025-01-01T00:01:00Z", "-", "5m"],
        "{}",
        out.stdout
    );
    let sent = server.requests().pop().unwrap();
    assert_eq!(
        sent.query,
        "api-version=2018-01-01&metricnames=CpuUsage&aggregation=Average&interval=PT5M&timespan=PT10800S\
         &$filter=containerName%20eq%20%27%2A%27"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_chart_draws_a_sparkline_per_container_and_one_container_is_asked_by_name() {
    let server = Server::start(metrics_server()).await;
    let out = run(
        &mut server.berth(),
        &[
            "container",
            "metrics",
            "-g",
            "rg",
            "-n",
            "web",
            "--container",
            "web",
            "--chart",
        ],
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        lines[0], "CpuUsage, last 1h, average per 1m:",
        "{}",
        out.stdout
    );
    assert_eq!(
        lines[1], "web      ▅ █  last 500m  peak 500m",
        "{}",
        out.stdout
    );
    assert_eq!(lines[2], "sidecar  ▁▁▁  last 5m  peak 5m", "{}", out.stdout);
    let sent = server.requests().pop().unwrap();
    assert!(
        sent.query
            .ends_with("&$filter=containerName%20eq%20%27web%27"),
        "{}",
        sent.query
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_refuses_what_aci_does_not_measure_before_asking() {
    let server = Server::start(metrics_server()).await;
    let out = run(
        &mut server.berth(),
        &[
            "container",
            "metrics",
            "-g",
            "rg",
            "web",
            "--metric",
            "CpuPercent",
        ],
    )
    .await;
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("CpuUsage, MemoryUsage"),
        "{}",
        out.stderr
    );
    let out = run(
        &mut server.berth(),
        &[
            "container",
            "metrics",
            "-g",
            "rg",
            "web",
            "--metric",
            "NetworkBytesReceivedPerSecond",
            "--container",
            "web",
        ],
    )
    .await;
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(server.requests().is_empty(), "nothing was asked");
}
