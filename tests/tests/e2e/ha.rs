//! Two apiserver replicas on one PostgreSQL and a real node whose agent knows both. Any replica
//! serves any request: a group created on A is read, listed, logged and exec'd through B, and an exec
//! session opened on A is joined on B. Then A, the holder of the control lease, is SIGKILLed in the
//! middle of a stream of creates (a client moving to B when A stops answering, as one given both
//! endpoints does): no acknowledged create is lost, B places again within 5 s, the node's groups keep
//! running and reporting through B, and the ledger bills every second of every group once: none
//! twice, none missing.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_proto::clock::now_ms;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::billing::{
    Row, assert_no_double_billing, export_with_estimate, iso, ms_of, usage_query,
};
use crate::exec::{Outcome, channel_socket_with_ca, exit_code, finish};
use crate::harness::{Api, SUB, group_path};
use crate::pg_replicas::{Replicas, node_on, placed, wait_node_status};
use crate::process::ApiserverProcess;
use crate::real::{RealNode, RealOptions, SLOW, state_of, view};

const RG: &str = "ha";

/// Placements must resume on the surviving replica within this long after the leader is gone.
const FAILOVER_BOUND_MS: i64 = 5_000;

/// Groups in the stream of creates, the pause between two, and after how many acknowledged
/// creates the leader is killed.
const STREAM: usize = 24;
const STREAM_PAUSE: Duration = Duration::from_millis(200);
const KILL_AFTER: usize = 8;

/// A container that says it started, then runs until SIGTERM (which it obeys at once).
const STEADY: [&str; 3] = [
    "sh",
    "-c",
    "echo started-on-the-node; trap 'exit 0' TERM; sleep 3600 & wait",
];

fn steady_group(image: &str) -> Value {
    json!({
        "location": "local",
        "properties": {
            "osType": "Linux",
            "restartPolicy": "Always",
            "containers": [{"name": "app", "properties": {
                "image": image,
                "command": STEADY,
                "resources": {"requests": {"cpu": 0.25, "memoryInGB": 0.25}}
            }}]
        }
    })
}

fn container_path(name: &str, verb: &str) -> String {
    group_path(SUB, RG, name).replace(
        "?api-version",
        &format!("/containers/app/{verb}?api-version"),
    )
}

/// `https://localhost:<port>` of a replica as `host:port`, to move a websocket URI between replicas.
fn authority(base: &str) -> &str {
    base.trim_start_matches("https://")
}

/// Opens an exec session running `echo <word>` with the POST on `post` and the websocket on
/// `socket_on`; returns what it printed and its exit code.
async fn exec_echo(
    post: &Api,
    post_on: &ApiserverProcess,
    socket_on: &ApiserverProcess,
    name: &str,
    word: &str,
) -> (String, i64) {
    let (status, answer) = post
        .call(
            Method::POST,
            &container_path(name, "exec"),
            Some(json!({"command": ["echo", word], "tty": false})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let uri = answer["webSocketUri"].as_str().expect("webSocketUri");
    assert!(uri.contains(authority(&post_on.base)), "{uri}");
    let uri = uri.replace(authority(&post_on.base), authority(&socket_on.base));
    let password = answer["password"].as_str().expect("password");
    let mut socket = channel_socket_with_ca(&socket_on.ca_pem, &uri, password).await;
    let mut outcome = Outcome::default();
    finish(&mut socket, &mut outcome).await;
    (outcome.stdout, exit_code(&outcome.status))
}

/// Polls GET on `api` until `check` holds (bounded by [`SLOW`]); both replicas' logs and the
/// agent's go into the failure message.
async fn wait_for(
    replicas: &Replicas,
    api: &Api,
    node: &RealNode,
    name: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(SLOW);
    loop {
        let (status, body) = api.get_group(SUB, RG, name).await;
        if status == StatusCode::OK && check(&body) {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "group {name} never reached the expected state: {body}\n--- A ---\n{}\n--- B ---\n{}\n--- agent ---\n{}",
            tail(&replicas.a().log()),
            tail(&replicas.b().log()),
            tail(&node.agent_log()),
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn tail(text: &str) -> &str {
    let mut start = text.len().saturating_sub(6000);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

fn running(body: &Value) -> bool {
    state_of(body, "app") == "Running"
}

fn started_at(body: &Value) -> Option<i64> {
    view(body, "app")["currentState"]["startTime"]
        .as_str()
        .map(ms_of)
}

/// One create of the stream, as the client saw it.
#[derive(Debug, Clone)]
struct Ack {
    name: String,
    /// The replica that answered 200/201 (0: A, 1: B).
    replica: usize,
    at: i64,
}

/// Creates `s0..s{STREAM}` one after another, on A until A stops answering, then on B; a create
/// with no answer is sent again to B (a PUT of the same name and body is idempotent).
async fn stream_of_creates(apis: [Api; 2], image: String, acks: Arc<Mutex<Vec<Ack>>>) {
    let body = serde_json::to_vec(&steady_group(&image)).expect("json");
    let mut replica = 0;
    for i in 0..STREAM {
        let name = format!("s{i}");
        loop {
            let answer = apis[replica]
                .try_raw(Method::PUT, &group_path(SUB, RG, &name), Some(body.clone()))
                .await;
            match answer {
                Ok((status, _, _)) if status.is_success() => {
                    acks.lock().expect("acks").push(Ack {
                        name: name.clone(),
                        replica,
                        at: now_ms(),
                    });
                    break;
                }
                Ok((status, _, answer)) if replica == 0 && status.is_server_error() => {
                    println!("{name}: A answered {status} {answer}; moving to B");
                    replica = 1;
                }
                Ok((status, _, answer)) => panic!("create {name}: {status} {answer}"),
                Err(error) if replica == 0 => {
                    println!("{name}: no answer from A ({error}); moving to B");
                    replica = 1;
                }
                Err(error) => panic!("create {name}: B did not answer: {error}"),
            }
        }
        tokio::time::sleep(STREAM_PAUSE).await;
    }
}

/// B's placed-groups count over time: `(asked at, answered at, count)`, every 50 ms until `stop`.
async fn sample_placements(
    operator_b: Api,
    samples: Arc<Mutex<Vec<(i64, i64, u64)>>>,
    stop: tokio_util::sync::CancellationToken,
) {
    while !stop.is_cancelled() {
        let asked = now_ms();
        if let Some(count) = placed(&operator_b).await {
            samples
                .lock()
                .expect("samples")
                .push((asked, now_ms(), count));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// From B's samples: when the count last rose before the kill (the answer to the first sample that
/// shows A's last placement), and the first answer after the kill that shows a placement of B's.
fn failover_gap(samples: &[(i64, i64, u64)], killed: i64) -> (i64, Option<i64>) {
    // Every placement A committed is visible to a read asked after A is gone.
    let baseline = samples
        .iter()
        .find(|(asked, _, _)| *asked > killed)
        .map(|(_, _, count)| *count)
        .expect("samples after the kill");
    let last_before = samples
        .iter()
        .find(|(_, _, count)| *count >= baseline)
        .map(|(_, answered, _)| *answered)
        .expect("a sample at the baseline");
    let first_after = samples
        .iter()
        .find(|(asked, _, count)| *asked > killed && *count > baseline)
        .map(|(_, answered, _)| *answered);
    (last_before, first_after)
}

/// Each group's rows of each meter cover one span exactly once: no instant billed twice, and no
/// instant between its first and last row unbilled. Returns the spans.
fn covered_once(rows: &[Row]) -> BTreeMap<(String, String), (i64, i64)> {
    let mut by_key: BTreeMap<(String, String), Vec<&Row>> = BTreeMap::new();
    for row in rows {
        by_key
            .entry((row.name.clone(), row.sku.clone()))
            .or_default()
            .push(row);
    }
    let mut spans = BTreeMap::new();
    for ((name, sku), rows) in by_key {
        let mut edges: BTreeMap<i64, i64> = BTreeMap::new();
        for row in &rows {
            let sign = if row.quantity < 0 { -1 } else { 1 };
            *edges.entry(row.start).or_default() += sign;
            *edges.entry(row.end).or_default() -= sign;
        }
        // A correction that takes back a run's tail leaves an edge where nothing changes.
        edges.retain(|_, change| *change != 0);
        let (first, last) = (
            *edges.keys().next().expect("rows"),
            *edges.keys().next_back().expect("rows"),
        );
        let mut depth = 0;
        for (at, change) in &edges {
            depth += change;
            if *at < last {
                assert_eq!(
                    depth,
                    1,
                    "{name} {sku}: billed {depth} times from {} (rows {rows:#?})",
                    iso(*at)
                );
            }
        }
        assert_eq!(depth, 0, "{name} {sku}: the rows do not close");
        spans.insert((name, sku), (first, last));
    }
    spans
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_replica_serves_and_a_sigkilled_leader_loses_no_group_and_no_second() {
    let test_start = now_ms();
    let mut replicas = Replicas::start(
        2,
        &[
            "--heartbeat-interval-ms",
            "1000",
            // Long enough that no node is judged lost while the lease changes hands.
            "--node-timeout-secs",
            "20",
        ],
    )
    .await;
    let node = replicas
        .real_node(
            "ha-node",
            RealOptions {
                capacity: Some((16.0, 32.0)),
                ..RealOptions::default()
            },
        )
        .await;
    let alice_a = replicas.a().tenant(&[SUB]).await;
    let alice_b = replicas.b().api(alice_a.token());

    // Created on A; read, listed, logged and exec'd on B.
    let (status, _, answer) = alice_a
        .put_group(SUB, RG, "first", &steady_group(&node.image))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    let body = wait_for(&replicas, &alice_b, &node, "first", running).await;
    let first_start = started_at(&body).expect("a start time");
    let (status, list) = alice_b
        .call(
            Method::GET,
            &format!(
                "/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.ContainerInstance/containerGroups?api-version=2023-05-01"
            ),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert!(
        list["value"]
            .as_array()
            .is_some_and(|v| v.iter().any(|g| g["name"] == "first")),
        "{list}"
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(SLOW);
    loop {
        let (status, logs) = alice_b
            .call(Method::GET, &container_path("first", "logs"), None)
            .await;
        if status == StatusCode::OK
            && logs["content"]
                .as_str()
                .is_some_and(|c| c.contains("started-on-the-node"))
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no logs through B: {status} {logs}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (b, a) = (replicas.b(), replicas.a());
    assert_eq!(
        exec_echo(&alice_b, b, b, "first", "exec-on-b").await,
        ("exec-on-b\n".to_owned(), 0)
    );
    assert_eq!(
        exec_echo(&alice_a, a, b, "first", "posted-on-a-joined-on-b").await,
        ("posted-on-a-joined-on-b\n".to_owned(), 0),
        "an exec session opened on A is joined through B"
    );
    let containers: Vec<String> = node
        .containers()
        .await
        .into_iter()
        .filter(|(_, label)| label == "app")
        .map(|(id, _)| id)
        .collect();
    assert_eq!(containers.len(), 1, "{containers:?}");
    let first_id = containers[0].clone();
    let first_pid = node.task_pid(&first_id).await.expect("first runs");

    // The stream of creates, and A killed in the middle of it.
    let holder = replicas.lease_holder().expect("A holds the control lease");
    let acks = Arc::new(Mutex::new(Vec::<Ack>::new()));
    let samples = Arc::new(Mutex::new(Vec::new()));
    let stop = tokio_util::sync::CancellationToken::new();
    let sampler = tokio::spawn(sample_placements(
        replicas.b().operator_api(),
        samples.clone(),
        stop.clone(),
    ));
    let stream = tokio::spawn(stream_of_creates(
        [alice_a.clone(), alice_b.clone()],
        node.image.clone(),
        acks.clone(),
    ));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(SLOW);
    while acks.lock().expect("acks").len() < KILL_AFTER {
        assert!(tokio::time::Instant::now() < deadline, "the stream stalled");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    replicas.a_mut().kill().await;
    let killed = now_ms();
    let new_holder = replicas.wait_new_holder(&holder, SLOW).await;
    let took_over = now_ms();
    stream.await.expect("the stream of creates");
    let acks = acks.lock().expect("acks").clone();
    assert_eq!(acks.len(), STREAM, "every create was acknowledged once");
    assert!(
        acks.iter().any(|a| a.replica == 0) && acks.iter().any(|a| a.replica == 1),
        "creates acknowledged by both replicas: {acks:?}"
    );

    // Every acknowledged create is there on B, and runs.
    let b = replicas.b();
    for ack in &acks {
        let (status, body) = alice_b.get_group(SUB, RG, &ack.name).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "{} was acknowledged at {} by replica {} and is lost: {body}",
            ack.name,
            iso(ack.at),
            ack.replica
        );
    }
    for ack in &acks {
        wait_for(&replicas, &alice_b, &node, &ack.name, running).await;
    }
    stop.cancel();
    sampler.await.expect("the sampler");

    // Placements resumed on B within the bound.
    let samples = samples.lock().expect("samples").clone();
    let (last_before, first_after) = failover_gap(&samples, killed);
    let first_after = first_after.unwrap_or_else(|| {
        panic!(
            "B never placed a group after the kill: {samples:?}\n--- B ---\n{}",
            tail(&b.log())
        )
    });
    println!(
        "A SIGKILLed at {}; lease {holder} -> {new_holder} seen at +{} ms; last placement before the \
         kill seen at {}, first after at +{} ms (gap {} ms)",
        iso(killed),
        took_over - killed,
        iso(last_before),
        first_after - killed,
        first_after - last_before
    );
    assert!(
        first_after - killed <= FAILOVER_BOUND_MS,
        "placements resumed {} ms after the kill",
        first_after - killed
    );

    // The node's first group kept running (the same process) and the node reports through B.
    assert_eq!(node.task_pid(&first_id).await, Some(first_pid));
    let body = wait_for(&replicas, &alice_b, &node, "first", running).await;
    assert_eq!(started_at(&body), Some(first_start), "{body}");
    assert_eq!(view(&body, "app")["restartCount"], 0, "{body}");
    wait_node_status(b, &node, "Ready").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(SLOW);
    loop {
        let listed = node_on(b, &node.name).await;
        if listed["lastHeartbeat"].as_str().map(ms_of) > Some(took_over) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the node never reported to B after the failover: {listed}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        exec_echo(&alice_b, b, b, "first", "exec-after-failover").await,
        ("exec-after-failover\n".to_owned(), 0)
    );
    assert_eq!(
        placed(&b.operator_api()).await,
        Some(STREAM as u64 + 1),
        "every group placed once"
    );

    // Everything deleted through B; the ledger, read through B's operator export.
    let mut deletes = BTreeMap::new();
    for name in std::iter::once("first".to_owned()).chain(acks.iter().map(|a| a.name.clone())) {
        let sent = now_ms();
        let (status, body) = alice_b
            .call(Method::DELETE, &group_path(SUB, RG, &name), None)
            .await;
        assert!(status.is_success(), "delete {name}: {status} {body}");
        deletes.insert(name, (sent, now_ms()));
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(SLOW);
    while !node.containers().await.is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "containers left on the node\n{}",
            tail(&node.agent_log())
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let finished = now_ms();
    // The meter closes runs from the node's reports: wait until nothing accrues any more.
    let query = usage_query(test_start - 60_000, finished + 60_000, "raw", "jsonl");
    let operator_b = b.operator_api();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(SLOW);
    let (rows, estimate) = loop {
        let (rows, estimate) =
            export_with_estimate(&operator_b, "/admin/billing/usage", &query).await;
        if !rows.is_empty() && rows.iter().all(|r| !r.accrued) {
            break (rows, estimate);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "runs still accrue after every group was deleted: {rows:#?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(estimate, rows.len(), "every row is a ledger row");
    let ids: BTreeSet<i64> = rows.iter().filter_map(|r| r.ledger_id).collect();
    assert_eq!(ids.len(), rows.len(), "a duplicate or missing x_LedgerId");
    assert_no_double_billing(&rows);
    let spans = covered_once(&rows);
    let billed: BTreeSet<&str> = spans.keys().map(|(name, _)| name.as_str()).collect();
    let expected: BTreeSet<&str> = deletes.keys().map(String::as_str).collect();
    assert_eq!(billed, expected, "every group billed, and no other");
    for ((name, sku), (start, end)) in &spans {
        let (sent, done) = deletes[name];
        assert!(
            sent <= *end && *end <= done,
            "{name} {sku}: billed to {}, deleted {}..{}",
            iso(*end),
            iso(sent),
            iso(done)
        );
        assert!(*start < *end, "{name} {sku}");
    }
    for sku in ["linux/vcpu_seconds", "linux/memory_gib_seconds"] {
        let (start, end) = spans[&("first".to_owned(), sku.to_owned())];
        assert!(
            start <= first_start && start < killed && end > took_over,
            "first is billed through the failover: {}..{}",
            iso(start),
            iso(end)
        );
    }
    println!(
        "ledger: {} rows, {} groups, each meter of each covered once",
        rows.len(),
        billed.len()
    );
}

// The checks above must be able to fail: they are tried here on made-up samples and rows.

fn row(name: &str, start: i64, end: i64, quantity: i128) -> Row {
    Row {
        group_id: format!("id-{name}"),
        name: name.to_owned(),
        subscription: SUB.to_owned(),
        resource_id: String::new(),
        node_id: "n".to_owned(),
        sku: "linux/vcpu_seconds".to_owned(),
        class: String::new(),
        start,
        end,
        quantity,
        accrued: false,
        ledger_id: None,
    }
}

#[test]
fn a_gap_in_a_group_s_rows_is_a_missing_second() {
    let rows = [row("g", 0, 1000, 1), row("g", 2000, 3000, 1)];
    assert!(std::panic::catch_unwind(|| covered_once(&rows)).is_err());
}

#[test]
fn an_overlap_is_a_second_billed_twice() {
    let rows = [row("g", 0, 2000, 1), row("g", 1000, 3000, 1)];
    assert!(std::panic::catch_unwind(|| covered_once(&rows)).is_err());
}

#[test]
fn contiguous_rows_and_a_correction_cover_once() {
    let rows = [
        row("g", 0, 1000, 1),
        row("g", 1000, 3000, 2),
        // Taken back, then billed again to where the run really ended.
        row("g", 2000, 3000, -1),
        row("h", 500, 700, 1),
    ];
    let spans = covered_once(&rows[..2]);
    assert_eq!(spans[&("g".into(), "linux/vcpu_seconds".into())], (0, 3000));
    let rows = [rows[0].clone(), rows[1].clone(), rows[3].clone()];
    let spans = covered_once(&rows);
    assert_eq!(spans.len(), 2);
    let shortened = [row("g", 0, 3000, 3), row("g", 2000, 3000, -1)];
    assert_eq!(
        covered_once(&shortened)[&("g".into(), "linux/vcpu_seconds".into())],
        (0, 2000),
        "a correction that takes back the end shortens the span"
    );
}

#[test]
fn the_gap_is_read_from_the_samples_around_the_kill() {
    // A placed up to 7 at 900; killed at 1000; B placed the 8th at 4200.
    let samples = [
        (790, 800, 6),
        (880, 900, 7),
        // Asked before the kill: A may still have placed after it was read.
        (990, 1050, 7),
        (1190, 1200, 7),
        (2990, 3000, 7),
        (4190, 4200, 8),
        (4290, 4300, 9),
    ];
    assert_eq!(failover_gap(&samples, 1000), (900, Some(4200)));
    assert_eq!(failover_gap(&samples[..5], 1000), (900, None));
}
