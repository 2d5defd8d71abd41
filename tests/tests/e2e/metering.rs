//! Metering through the node gateway with hollow nodes: a node that goes silent stops being billed at
//! its last heartbeat, and a group it runs again when it is back is billed from its new start.

use std::time::Duration;

use berth_proto::clock::now_ms;
use reqwest::StatusCode;
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::harness::{Api, Cluster, SUB, group_body, running};

fn ms(text: &Value) -> i64 {
    let time =
        OffsetDateTime::parse(text.as_str().expect("a timestamp"), &Rfc3339).expect("RFC 3339");
    (time.unix_timestamp_nanos() / 1_000_000) as i64
}

fn rfc3339(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .expect("a time")
        .format(&Rfc3339)
        .expect("formats")
}

/// The vCPU rows of the export between `from` and now + 1 min.
async fn vcpu_rows(api: &Api, from: i64) -> Vec<Value> {
    let path = format!(
        "/admin/billing/usage?from={}&to={}&format=jsonl",
        rfc3339(from),
        rfc3339(now_ms() + 60_000)
    );
    let (status, headers, text) = api.text(&path).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(headers["content-type"], "application/x-ndjson");
    text.lines()
        .map(|line| serde_json::from_str::<Value>(line).expect("a JSON line"))
        .filter(|row| row["SkuId"] == "linux/vcpu_seconds")
        .collect()
}

#[tokio::test]
async fn a_silent_node_is_billed_to_its_last_heartbeat_and_again_once_back() {
    let cluster = Cluster::start_with(|c| {
        c.node_timeout_secs = 1;
        c.heartbeat_interval_ms = 200;
    })
    .await;
    let from = now_ms() - 60_000;
    let node = cluster.add_node("flaky", 2.0, 4.0).await;
    let api = cluster.tenant(&[SUB]).await;
    let operator = cluster.operator_api();
    let (status, _, _) = api.put_group(SUB, "rg1", "svc", &group_body()).await;
    assert_eq!(status, StatusCode::CREATED);
    api.wait_group(SUB, "rg1", "svc", 20, running).await;

    // While it runs, the run is open: accrued to the moment of the export.
    let open = vcpu_rows(&operator, from).await;
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!(open[0]["x_Accrued"], true);
    assert_eq!(open[0]["x_LedgerId"], Value::Null);
    let started = ms(&open[0]["ChargePeriodStart"]);

    tokio::time::sleep(Duration::from_secs(1)).await;
    let silenced = now_ms();
    let state_dir = node.stop().await;
    cluster.wait_node("flaky", "NotReady").await;
    let closed = vcpu_rows(&operator, from).await;
    assert!(closed.iter().all(|r| r["x_Accrued"] == false), "{closed:?}");
    let end = closed
        .iter()
        .map(|r| ms(&r["ChargePeriodEnd"]))
        .max()
        .expect("rows");
    // The last heartbeat: at most one interval (200 ms) and some scheduling slack before the silence.
    assert!(
        end <= silenced && end >= silenced - 1_000,
        "billed to {end}, silenced at {silenced}"
    );
    let seconds: f64 = closed
        .iter()
        .map(|r| r["ConsumedQuantity"].as_f64().expect("a number"))
        .sum();
    assert!(
        (seconds - (end - started) as f64 / 1000.0).abs() < 0.002,
        "1 vCPU: {seconds} s for {started}..{end}"
    );
    // Not accruing while the node is away.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let still = vcpu_rows(&operator, from).await;
    assert_eq!(still, closed);

    // Back (a hollow node forgets its groups): the group runs again and is billed from its new start.
    let _back = cluster.start_node("flaky", state_dir, 2.0, 4.0, None).await;
    api.wait_group(SUB, "rg1", "svc", 20, running).await;
    let again = vcpu_rows(&operator, from).await;
    let accrued: Vec<&Value> = again.iter().filter(|r| r["x_Accrued"] == true).collect();
    assert_eq!(accrued.len(), 1, "{again:?}");
    assert!(ms(&accrued[0]["ChargePeriodStart"]) > end);
    let kept: Vec<&Value> = again.iter().filter(|r| r["x_Accrued"] == false).collect();
    assert_eq!(kept.len(), closed.len());

    // The tenant sees the same usage on its own route, and nothing of anyone else's.
    let path = format!(
        "/subscriptions/{SUB}/providers/Microsoft.ContainerInstance/usage?from={}&format=csv",
        rfc3339(from)
    );
    let (status, headers, csv) = api.text(&path).await;
    assert_eq!(status, StatusCode::OK, "{csv}");
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let mut lines = csv.lines();
    assert!(
        lines
            .next()
            .unwrap()
            .starts_with("BillingPeriodStart,BillingPeriodEnd,")
    );
    assert!(lines.all(|l| l.contains(SUB)), "{csv}");
}

#[tokio::test]
async fn the_price_sheet_is_reported_and_reloaded_on_sighup() {
    let dir = tempfile::tempdir().expect("temp dir");
    let sheet = dir.path().join("prices.toml");
    std::fs::write(
        &sheet,
        "currency = \"EUR\"\n[prices]\n\"linux/vcpu_seconds\" = \"0.00001\"\n",
    )
    .expect("writes");
    let cluster = Cluster::start_with(|c| c.price_sheet = Some(sheet.clone())).await;
    let operator = cluster.operator_api();
    let (status, body) = operator
        .call(reqwest::Method::GET, "/admin/billing/prices", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["currency"], "EUR");
    assert_eq!(body["prices"]["linux/vcpu_seconds"], "0.00001");

    std::fs::write(
        &sheet,
        "currency = \"EUR\"\n[prices]\n\"linux/vcpu_seconds\" = \"0.00002\"\n",
    )
    .expect("writes");
    // SIGHUP to ourselves: the apiserver runs in this process.
    let status = std::process::Command::new("kill")
        .args(["-HUP", &std::process::id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, body) = operator
            .call(reqwest::Method::GET, "/admin/billing/prices", None)
            .await;
        if body["prices"]["linux/vcpu_seconds"] == "0.00002" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never reloaded: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A tenant may not read it.
    let tenant = cluster.tenant(&[SUB]).await;
    let (status, body) = tenant
        .call(reqwest::Method::GET, "/admin/billing/prices", None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
}

/// A real node whose agent dies: billing stops at its last heartbeat; when the agent is back and its
/// `Hello` says the group kept running (containerd never stopped it), billing resumes from where it
/// stopped, so no second of the real run is lost or counted twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_back_from_silence_is_billed_for_the_time_the_group_kept_running() {
    use crate::real::{RealNode, RealOptions, real_group, state_of};
    let cluster = Cluster::start_with(|c| {
        c.node_timeout_secs = 1;
        c.heartbeat_interval_ms = 200;
    })
    .await;
    let from = now_ms() - 60_000;
    let api = cluster.tenant(&[SUB]).await;
    let operator = cluster.operator_api();
    let mut node = RealNode::start(&cluster, "real-silent", RealOptions::default()).await;
    let body = real_group(&node.image, "Always", &[("app", &["sleep", "3600"])]);
    let (status, _, answer) = api.put_group(SUB, "rg", "kept", &body).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    crate::real::wait_group(&api, &node, "rg", "kept", |b| {
        state_of(b, "app") == "Running"
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    node.kill_agent().await;
    cluster.wait_node(&node.name, "NotReady").await;
    let silent = vcpu_rows(&operator, from).await;
    assert!(silent.iter().all(|r| r["x_Accrued"] == false), "{silent:?}");
    tokio::time::sleep(Duration::from_secs(1)).await;

    node.start_agent();
    cluster.wait_node(&node.name, "Ready").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let rows = vcpu_rows(&operator, from).await;
        if rows.iter().any(|r| r["x_Accrued"] == true) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "billing never resumed: {rows:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (status, _) = api
        .call(
            reqwest::Method::DELETE,
            &crate::harness::group_path(SUB, "rg", "kept"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let deleted = now_ms();

    let mut rows = vcpu_rows(&operator, from).await;
    assert!(rows.iter().all(|r| r["x_Accrued"] == false), "{rows:?}");
    rows.sort_by_key(|r| ms(&r["ChargePeriodStart"]));
    // One run, billed without a gap across the silence: each piece starts where the last ended.
    for pair in rows.windows(2) {
        assert_eq!(
            ms(&pair[0]["ChargePeriodEnd"]),
            ms(&pair[1]["ChargePeriodStart"]),
            "{rows:?}"
        );
    }
    let start = ms(&rows[0]["ChargePeriodStart"]);
    let end = ms(&rows[rows.len() - 1]["ChargePeriodEnd"]);
    assert!(
        end <= deleted && end >= deleted - 2_000,
        "{end} vs {deleted}"
    );
    let seconds: f64 = rows
        .iter()
        .map(|r| r["ConsumedQuantity"].as_f64().expect("a number") / 0.5)
        .sum();
    assert!(
        (seconds - (end - start) as f64 / 1000.0).abs() < 0.01,
        "{seconds} s billed for {start}..{end}"
    );
    assert!(seconds > 3.0, "the silence is billed too: {seconds} s");
}
