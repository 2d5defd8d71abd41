//! Prometheus `/metrics` of the apiserver (HTTPS with an operator token, and `--metrics-listen`
//! over plain HTTP) and of the agent (`--metrics-listen`), scraped as a scraper would and parsed
//! with `prometheus_client`'s strict OpenMetrics parser (Python, from PyPI).

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::harness::{Cluster, SUB, group_body, running};
use crate::real::python;

const RG: &str = "rg";
const PUT_ROUTE: &str = "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.ContainerInstance/containerGroups/{name}";
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// `text` parsed by `tests/python/prom_parse.py`: `{family: {type, samples: [{name, labels, value}]}}`.
pub(crate) async fn parse(text: &str) -> Value {
    use tokio::io::AsyncWriteExt as _;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/prom_parse.py");
    let mut child = tokio::process::Command::new(python())
        .arg(script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python runs");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(text.as_bytes())
        .await
        .expect("scrape written");
    drop(stdin);
    let output = child.wait_with_output().await.expect("python ends");
    assert!(
        output.status.success(),
        "the scrape does not parse: {}\n{text}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("the parser's JSON")
}

/// The samples named `sample` whose labels include every pair of `labels`.
pub(crate) fn samples<'a>(
    families: &'a Value,
    sample: &str,
    labels: &[(&str, &str)],
) -> Vec<&'a Value> {
    families
        .as_object()
        .into_iter()
        .flat_map(|f| f.values())
        .flat_map(|f| f["samples"].as_array().into_iter().flatten())
        .filter(|s| s["name"] == sample)
        .filter(|s| labels.iter().all(|(k, v)| s["labels"][*k] == *v))
        .collect()
}

/// The value of the one sample `sample` with `labels`.
pub(crate) fn value(families: &Value, sample: &str, labels: &[(&str, &str)]) -> f64 {
    let found = samples(families, sample, labels);
    assert_eq!(found.len(), 1, "{sample} {labels:?}: {found:?}");
    found[0]["value"].as_f64().expect("a number")
}

/// Asserts family `name` is there, of `kind`, and that its samples carry exactly `labels` (the
/// histogram's `le` aside).
pub(crate) fn assert_family(families: &Value, name: &str, kind: &str, labels: &[&str]) {
    let family = &families[name];
    assert_eq!(family["type"], kind, "{name}: {family}");
    for sample in family["samples"].as_array().into_iter().flatten() {
        let mut keys: Vec<&str> = sample["labels"]
            .as_object()
            .into_iter()
            .flat_map(|l| l.keys().map(String::as_str))
            .filter(|k| *k != "le")
            .collect();
        keys.sort_unstable();
        let mut want = labels.to_vec();
        want.sort_unstable();
        assert_eq!(keys, want, "{name}: {sample}");
    }
}

/// GET `url` with `token` (if any): status, content type, body.
pub(crate) async fn get(
    client: &reqwest::Client,
    url: &str,
    token: Option<&str>,
) -> (StatusCode, String, String) {
    let mut request = client.get(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("the server answers");
    let status = response.status();
    let kind = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (status, kind, response.text().await.expect("a body"))
}

pub(crate) fn https_client(ca_pem: &str) -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).expect("CA PEM"))
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

/// A port nothing listens on now (the agent binds it right after).
fn free_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("its address")
}

/// A DNS query for `name` (type A) over UDP to `server`; returns the response's RCODE.
async fn dns_query(server: SocketAddr, name: &str) -> u8 {
    let mut query = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.split('.') {
        query.push(label.len() as u8);
        query.extend(label.as_bytes());
    }
    query.extend([0, 0, 1, 0, 1]);
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("UDP socket");
    socket.send_to(&query, server).await.expect("query sent");
    let mut answer = [0u8; 512];
    let (len, _) = tokio::time::timeout(Duration::from_secs(5), socket.recv_from(&mut answer))
        .await
        .expect("an answer within 5 s")
        .expect("an answer");
    assert!(len >= 12, "a DNS header");
    answer[3] & 0x0F
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apiserver_and_agent_metrics_parse_and_count_what_happened() {
    let cluster = Cluster::start_with(|config| {
        config.metrics_listen = Some("127.0.0.1:0".parse().expect("literal address"));
    })
    .await;
    let tenant = cluster.tenant(&[SUB]).await;

    // A hollow node whose agent serves /metrics.
    let agent_metrics = free_port();
    let state_dir = cluster.dir().join("agent-n1");
    let mut config = berth_node_agent::AgentConfig::new(cluster.node_url(), &state_dir, "n1");
    config.join_token = Some(cluster.join_token(1).await);
    config.capacity = berth_proto::node::Resources {
        cpu_millis: 4000,
        memory_mib: 8192,
        gpu: 0,
        gpu_sku: String::new(),
    };
    config.metrics_listen = Some(agent_metrics);
    let agent_stop = tokio_util::sync::CancellationToken::new();
    let agent = tokio::spawn(berth_node_agent::run(config, agent_stop.clone()));
    cluster.wait_node("n1", "Ready").await;

    let (status, _, body) = tenant.put_group(SUB, RG, "web1", &group_body()).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    tenant.wait_group(SUB, RG, "web1", 20, running).await;
    let origin = &cluster.config.dns_zone;
    let (dns_udp, _) = cluster.dns_addrs.expect("the embedded DNS server");
    assert_eq!(
        dns_query(dns_udp, &format!("nothing-here.{origin}")).await,
        3,
        "NXDOMAIN"
    );

    // The HTTPS listener: an operator token only.
    let client = https_client(&cluster.ca_pem);
    let url = format!("{}/metrics", cluster.base);
    let (status, _, body) = get(&client, &url, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, _, body) = get(&client, &url, Some(tenant.token())).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains("GET /metrics"), "{body}");
    let (status, kind, text) = get(&client, &url, Some(&cluster.operator)).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(kind, OPENMETRICS);
    let families = parse(&text).await;

    assert_family(
        &families,
        "berth_api_request_duration_seconds",
        "histogram",
        &["route", "method", "code"],
    );
    let created = [("route", PUT_ROUTE), ("method", "PUT"), ("code", "201")];
    assert_eq!(
        value(
            &families,
            "berth_api_request_duration_seconds_count",
            &created
        ),
        1.0,
        "one PUT created a group"
    );
    assert!(
        value(
            &families,
            "berth_api_request_duration_seconds_count",
            &[("route", "/metrics"), ("method", "GET"), ("code", "403")]
        ) >= 1.0,
        "the tenant's refused scrape"
    );
    let routes: Vec<&str> = samples(&families, "berth_api_request_duration_seconds_count", &[])
        .iter()
        .filter_map(|s| s["labels"]["route"].as_str())
        .collect();
    assert!(
        routes
            .iter()
            .all(|r| !r.contains("web1") && !r.contains(SUB)),
        "routes are templates, never paths: {routes:?}"
    );

    assert_family(
        &families,
        "berth_scheduler_attempts",
        "counter",
        &["result"],
    );
    assert!(
        value(
            &families,
            "berth_scheduler_attempts_total",
            &[("result", "scheduled")]
        ) >= 1.0
    );
    assert_family(
        &families,
        "berth_scheduler_placement_duration_seconds",
        "histogram",
        &[],
    );
    assert!(
        value(
            &families,
            "berth_scheduler_placement_duration_seconds_count",
            &[]
        ) >= 1.0
    );
    assert_eq!(value(&families, "berth_scheduler_pending_groups", &[]), 0.0);
    assert_family(&families, "berth_nodes", "gauge", &["status"]);
    assert_eq!(value(&families, "berth_nodes", &[("status", "Ready")]), 1.0);
    assert_family(&families, "berth_groups", "gauge", &["state", "desired"]);
    assert_eq!(
        value(
            &families,
            "berth_groups",
            &[("state", "Succeeded"), ("desired", "Running")]
        ),
        1.0
    );
    assert_family(&families, "berth_ledger_rows", "gauge", &[]);
    assert!(value(&families, "berth_ledger_rows", &[]) >= 0.0);
    assert_family(
        &families,
        "berth_dns_queries",
        "counter",
        &["transport", "rcode"],
    );
    assert_eq!(
        value(
            &families,
            "berth_dns_queries_total",
            &[("transport", "udp"), ("rcode", "NXDOMAIN")]
        ),
        1.0
    );
    // Hollow nodes measure nothing: no per-container series (a family with no series is left out).
    assert!(
        families.get("container_cpu_usage_seconds").is_none(),
        "{}",
        families["container_cpu_usage_seconds"]
    );

    // --metrics-listen: the same families over plain HTTP, no token.
    let plain = reqwest::Client::new();
    let scraper = format!(
        "http://{}/metrics",
        cluster.metrics_addr().expect("--metrics-listen")
    );
    let (status, kind, text) = get(&plain, &scraper, None).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(kind, OPENMETRICS);
    let plain_families = parse(&text).await;
    assert_eq!(
        value(&plain_families, "berth_nodes", &[("status", "Ready")]),
        1.0
    );
    assert_eq!(
        value(
            &plain_families,
            "berth_api_request_duration_seconds_count",
            &created
        ),
        1.0
    );
    let (status, _, _) = get(
        &plain,
        &format!(
            "http://{}/admin/v1/nodes",
            cluster.metrics_addr().expect("addr")
        ),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "nothing but /metrics there");

    // The agent's.
    let (status, kind, text) = get(&plain, &format!("http://{agent_metrics}/metrics"), None).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(kind, OPENMETRICS);
    let agent_families = parse(&text).await;
    assert_family(
        &agent_families,
        "berth_agent_groups",
        "gauge",
        &["node", "phase"],
    );
    assert_eq!(
        value(
            &agent_families,
            "berth_agent_groups",
            &[("node", "n1"), ("phase", "Running")]
        ),
        1.0
    );
    assert_family(
        &agent_families,
        "berth_agent_sync_reconnects",
        "counter",
        &["node"],
    );
    assert_eq!(
        value(
            &agent_families,
            "berth_agent_sync_reconnects_total",
            &[("node", "n1")]
        ),
        0.0,
        "the stream never broke"
    );

    // Deleting the group shows in the next scrape.
    let (status, _) = tenant
        .call(
            Method::DELETE,
            &crate::harness::group_path(SUB, RG, "web1"),
            None,
        )
        .await;
    assert!(status.is_success(), "{status}");
    let (_, _, text) = get(&client, &url, Some(&cluster.operator)).await;
    let families = parse(&text).await;
    assert!(
        samples(&families, "berth_groups", &[]).is_empty(),
        "no group left: {}",
        families["berth_groups"]
    );
    agent_stop.cancel();
    let _ = agent.await;
}
