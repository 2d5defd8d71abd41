//! A machine dies: two real nodes (each its own containerd, CNI bridge and agent), one of them
//! killed outright (agent, containerd, shims and containers, SIGKILL, nothing told). Its group runs
//! on the other node within `--node-lost-after` + 10 s, at a new IP, under the same DNS name; the
//! dead machine boots again on its disk and runs none of it (fenced by the apiserver: not in its
//! desired state, reports ignored), leaves nothing of it behind, and the ledger bills each second
//! of the group once.

use std::net::SocketAddr;
use std::time::Duration;

use berth_proto::clock::now_ms;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::harness::{Api, Cluster, SUB, group_path};
use crate::real::{RealNode, RealOptions, SLOW, http_get, real_group, state_of};

const RG: &str = "rg";
/// What the group's web server answers.
const PAGE: &str = "served-by-berth";
/// The apiserver's timers: heartbeat every 500 ms, NotReady after 2 s, lost after 4 s.
const NODE_TIMEOUT_SECS: u64 = 2;
const NODE_LOST_AFTER_SECS: u64 = 4;
/// The agents fence themselves after 3 s without an apiserver (below lost-after).
const FENCE_AFTER_SECS: &str = "3";

/// busybox `httpd` on port 80 serving [`PAGE`], with a public IP and DNS name label `label`.
fn web(image: &str, label: &str) -> Value {
    let script =
        format!("mkdir -p /www && echo {PAGE} > /www/index.html && exec httpd -f -p 80 -h /www");
    let mut body = real_group(image, "Always", &[("app", &["sh", "-c", &script])]);
    body["properties"]["containers"][0]["properties"]["ports"] = json!([{"port": 80}]);
    body["properties"]["ipAddress"] =
        json!({"type": "Public", "ports": [{"port": 80}], "dnsNameLabel": label});
    body
}

fn ip_of(body: &Value) -> String {
    body["properties"]["ipAddress"]["ip"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Whether `ip` is in `node`'s `/24`.
fn on(node: &RealNode, ip: &str) -> bool {
    !ip.is_empty() && ip.starts_with(node.subnet.trim_end_matches("0/24"))
}

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

/// The operator export's vCPU rows of group `gid` from `from` on.
async fn vcpu_rows(operator: &Api, from: i64, gid: &str) -> Vec<Value> {
    let path = format!(
        "/admin/billing/usage?from={}&to={}&format=jsonl",
        rfc3339(from),
        rfc3339(now_ms() + 60_000)
    );
    let (status, _, text) = operator.text(&path).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    text.lines()
        .map(|line| serde_json::from_str::<Value>(line).expect("a JSON line"))
        .filter(|row| row["SkuId"] == "linux/vcpu_seconds" && row["x_GroupId"] == gid)
        .collect()
}

/// The node list's entry for `name`.
async fn node_view(operator: &Api, name: &str) -> Value {
    let (status, body) = operator.call(Method::GET, "/admin/v1/nodes", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["value"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|n| n["name"] == name)
        .cloned()
        .unwrap_or(Value::Null)
}

/// Asks the embedded DNS server until `name` resolves to exactly `ip` (or panics after `secs`).
async fn wait_resolves(server: SocketAddr, name: &str, ip: &str, secs: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let answer = crate::dns::resolve(server, &format!("{name}."), false).await;
        if answer == Ok(vec![ip.to_owned()]) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name} never resolved to {ip}: {answer:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until `ip:80` serves [`PAGE`] to the host.
async fn wait_served(ip: &str, secs: u64) {
    let addr: SocketAddr = format!("{ip}:80").parse().expect("an IPv4 address");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let answer = http_get(addr).await;
        if answer.as_deref().is_some_and(|a| a.contains(PAGE)) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{addr} never served the page: {answer:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_machines_group_moves_to_the_other_node_and_never_runs_twice() {
    let cluster = Cluster::start_with(|c| {
        c.heartbeat_interval_ms = 500;
        c.node_timeout_secs = NODE_TIMEOUT_SECS;
        c.node_lost_after_secs = NODE_LOST_AFTER_SECS;
    })
    .await;
    let (dns, _) = cluster.dns_addrs.expect("the embedded DNS server runs");
    let from = now_ms() - 60_000;
    let api = cluster.tenant(&[SUB]).await;
    let operator = cluster.operator_api();
    let options = RealOptions {
        agent_env: vec![("BERTH_FENCE_AFTER".to_owned(), FENCE_AFTER_SECS.to_owned())],
        ..RealOptions::default()
    };

    // The group runs on A (the only node yet), serving its page at its IP and DNS name.
    let mut a = RealNode::start(&cluster, "loss-a", options.clone()).await;
    let (status, _, answer) = api
        .put_group(SUB, RG, "web", &web(&a.image, "moving1"))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    let fqdn = answer["properties"]["ipAddress"]["fqdn"]
        .as_str()
        .expect("an fqdn")
        .to_owned();
    let body = crate::real::wait_group(&api, &a, RG, "web", |b| {
        state_of(b, "app") == "Running" && !ip_of(b).is_empty()
    })
    .await;
    let ip_a = ip_of(&body);
    assert!(on(&a, &ip_a), "{ip_a} is not in A's {}", a.subnet);
    let gid = match a.group_ids().as_slice() {
        [gid] => gid.clone(),
        other => panic!("one group on A: {other:?}"),
    };
    wait_served(&ip_a, SLOW).await;
    wait_resolves(dns, &fqdn, &ip_a, 30).await;

    // B joins; A's machine dies. B pulls the image from the same registry (not A's machine).
    let b = RealNode::start(&cluster, "loss-b", options).await;
    let id_a = node_view(&operator, "loss-a").await["id"]
        .as_str()
        .expect("A's id")
        .to_owned();
    let id_b = node_view(&operator, "loss-b").await["id"]
        .as_str()
        .expect("B's id")
        .to_owned();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let killed = now_ms();
    a.kill_machine().await;

    // Within --node-lost-after + 10 s: Running on B, at B's IP, under the same name.
    let bound = Duration::from_secs(NODE_LOST_AFTER_SECS + 10);
    let deadline = tokio::time::Instant::now() + bound;
    let body = loop {
        let (status, body) = api.get_group(SUB, RG, "web").await;
        if status == StatusCode::OK && state_of(&body, "app") == "Running" && on(&b, &ip_of(&body))
        {
            break body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not running on B {bound:?} after A died: {body}\n--- B's agent log ---\n{}",
            b.agent_log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let moved_after = now_ms() - killed;
    let ip_b = ip_of(&body);
    assert_ne!(ip_a, ip_b);
    let events: Vec<&str> = body["properties"]["instanceView"]["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["name"].as_str())
        .collect();
    assert!(
        events.contains(&"NodeLost"),
        "the events say why: {events:?}"
    );
    assert_eq!(node_view(&operator, "loss-a").await["status"], "Lost");
    let (status, placed) = operator
        .call(Method::GET, &format!("/admin/v1/groups/{gid}"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{placed}");
    assert_eq!(
        (placed["node"].as_str(), placed["state"].as_str()),
        (Some("loss-b"), Some("Running")),
        "{placed}"
    );
    wait_served(&ip_b, 10).await;
    wait_resolves(dns, &fqdn, &ip_b, 10).await;

    // A boots on its disk: Ready again, and none of the group runs there, for a while; then nothing
    // of it is left on A.
    a.boot().await;
    cluster.wait_node("loss-a", "Ready").await;
    let watch_until = tokio::time::Instant::now() + Duration::from_secs(5);
    while tokio::time::Instant::now() < watch_until {
        for (id, _) in a.tasks().await {
            assert!(
                !(id.contains(&gid) && a.task_running(&id).await),
                "the moved group runs on A again: task {id}\n--- A's agent log ---\n{}",
                a.agent_log()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(SLOW);
    loop {
        let left = a.leftovers(&gid, &ip_a).await;
        if left.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "A keeps the moved group: {left:#?}\n--- A's agent log ---\n{}",
            a.agent_log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The same group id runs on B, whose mounts (namespace, root filesystem) are B's, not A's.
    let on_b = b.leftovers(&gid, &ip_b).await;
    assert!(
        on_b.iter().any(|l| l.starts_with("mount ")),
        "B runs the group: {on_b:#?}"
    );
    // B still runs it, at the same IP and name: A's return changed nothing of it.
    let (_, body) = api.get_group(SUB, RG, "web").await;
    assert_eq!(
        (state_of(&body, "app"), ip_of(&body)),
        ("Running".to_owned(), ip_b.clone()),
        "{body}"
    );
    assert_eq!(node_view(&operator, "loss-a").await["groups"], 0);
    assert_eq!(node_view(&operator, "loss-b").await["groups"], 1);
    wait_served(&ip_b, 10).await;
    wait_resolves(dns, &fqdn, &ip_b, 10).await;

    // The ledger: A's run ends at A's last heartbeat, B's starts after A was lost; nothing overlaps,
    // the silence between is not billed, and every billed second is a second of a run.
    let (status, answer) = api
        .call(Method::DELETE, &group_path(SUB, RG, "web"), None)
        .await;
    assert!(status.is_success(), "{answer}");
    let deleted = now_ms();
    let mut rows = vcpu_rows(&operator, from, &gid).await;
    assert!(rows.iter().all(|r| r["x_Accrued"] == false), "{rows:#?}");
    rows.sort_by_key(|r| ms(&r["ChargePeriodStart"]));
    for pair in rows.windows(2) {
        assert!(
            ms(&pair[0]["ChargePeriodEnd"]) <= ms(&pair[1]["ChargePeriodStart"]),
            "billed twice: {pair:#?}"
        );
    }
    let on_node =
        |id: &str| -> Vec<&Value> { rows.iter().filter(|r| r["x_NodeId"] == id).collect() };
    let (rows_a, rows_b) = (on_node(&id_a), on_node(&id_b));
    assert_eq!(
        rows_a.len() + rows_b.len(),
        rows.len(),
        "every row is A's or B's: {rows:#?}"
    );
    let a_end = rows_a
        .iter()
        .map(|r| ms(&r["ChargePeriodEnd"]))
        .max()
        .expect("A's run is billed");
    let b_start = rows_b
        .iter()
        .map(|r| ms(&r["ChargePeriodStart"]))
        .min()
        .expect("B's run is billed");
    let b_end = rows_b
        .iter()
        .map(|r| ms(&r["ChargePeriodEnd"]))
        .max()
        .expect("B's run is billed");
    assert!(
        a_end <= killed + 200 && a_end >= killed - 2_000,
        "A's run ends at its last heartbeat: {a_end} vs killed at {killed}"
    );
    assert!(
        b_start >= killed + 2_000,
        "B's run starts once A was lost, not before: {b_start} vs killed at {killed} \
         (moved after {moved_after} ms)"
    );
    assert!(
        b_end <= deleted && b_end >= deleted - 2_000,
        "{b_end} vs {deleted}"
    );
    let billed: f64 = rows
        .iter()
        .map(|r| r["ConsumedQuantity"].as_f64().expect("a number") / 0.5)
        .sum();
    let ran: f64 = rows
        .iter()
        .map(|r| (ms(&r["ChargePeriodEnd"]) - ms(&r["ChargePeriodStart"])) as f64 / 1000.0)
        .sum();
    assert!(
        (billed - ran).abs() < 0.01,
        "{billed} s billed for {ran} s of runs: {rows:#?}"
    );
    let first = ms(&rows[0]["ChargePeriodStart"]);
    assert!(
        billed <= (b_end - first - (b_start - a_end)) as f64 / 1000.0 + 0.01,
        "the gap between the runs is not billed: {billed} s"
    );
    drop(b);
}
