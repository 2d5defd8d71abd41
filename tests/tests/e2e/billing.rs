//! Per-second billing, end to end: real groups on a real node are started, stopped, started again,
//! restarted and deleted while the apiserver (a process of its own) is killed with SIGKILL and started
//! again; the usage export must then bill each run for what its containers really ran — within 1 s —
//! with no second lost across the crash and none counted twice. Tenants see only their own usage.
//!
//! The clock of the test, the apiserver and the node are the same machine's, so the times the test
//! records (API calls, container start and finish times, a task seen gone in containerd) compare
//! directly with the export's `ChargePeriodStart`/`End`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use berth_proto::clock::now_ms;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::harness::{Api, OTHER_SUB, SUB, group_path};
use crate::real::{ApiserverProcess, RealNode, RealOptions, SLOW, real_group, state_of, view};

const RG: &str = "billing";

/// What billing may differ from the containers' real run time by, per interval (the issue's bound).
const TOLERANCE_MS: i64 = 1000;

/// A long-running container that stops at once on SIGTERM (a bare `sleep` as PID 1 ignores it and
/// would run out the agent's stop grace after billing ended at the API's stop).
const STEADY: [&str; 3] = ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"];

/// `steady` requests 1 vCPU and 1.5 GB; `oneshot` what `real_group` gives (0.5 vCPU, 0.25 GB).
/// Rates in units of 10^-13 of the meter's unit per millisecond.
fn rate_per_ms(group: &str, sku: &str) -> i128 {
    const PER_MS: i128 = 10_000_000_000; // 10^13 / 1000
    let (cpu_milli, memory_milli) = match group {
        "steady" => (1000, 1500),
        "oneshot" => (500, 250),
        other => panic!("a group the test did not create: {other}"),
    };
    match sku {
        "linux/vcpu_seconds" => cpu_milli * PER_MS / 1000,
        "linux/memory_gib_seconds" => memory_milli * PER_MS / 1000,
        other => panic!("unexpected meter {other}"),
    }
}

pub(crate) fn ms_of(text: &str) -> i64 {
    let time = OffsetDateTime::parse(text, &Rfc3339)
        .unwrap_or_else(|e| panic!("{text:?} is not RFC 3339: {e}"));
    (time.unix_timestamp_nanos() / 1_000_000) as i64
}

/// `2026-11-22T19:00:00.123Z`: RFC 3339 with milliseconds, as the export writes times.
pub(crate) fn iso(ms: i64) -> String {
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .expect("a time")
        .format(&format)
        .expect("formats")
}

/// When an API call was sent and when its answer came back.
#[derive(Debug, Clone, Copy)]
struct Call {
    sent: i64,
    done: i64,
}

async fn act(api: &Api, method: Method, path: &str) -> Call {
    let sent = now_ms();
    let (status, body) = api.call(method.clone(), path, None).await;
    let done = now_ms();
    assert!(status.is_success(), "{method} {path}: {status} {body}");
    Call { sent, done }
}

fn verb_path(sub: &str, name: &str, verb: &str) -> String {
    group_path(sub, RG, name).replace("?api-version", &format!("/{verb}?api-version"))
}

/// The last `n` characters of a log, for failure messages.
fn tail(text: &str, n: usize) -> &str {
    let start = text.len().saturating_sub(n);
    let start = (start..text.len())
        .find(|i| text.is_char_boundary(*i))
        .unwrap_or(text.len());
    &text[start..]
}

/// Polls GET until `check` holds (bounded by [`SLOW`]); both logs go into the failure message.
async fn wait_for(
    server: &ApiserverProcess,
    api: &Api,
    node: &RealNode,
    sub: &str,
    name: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(SLOW);
    loop {
        let (status, body) = api.get_group(sub, RG, name).await;
        if status == StatusCode::OK && check(&body) {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "group {name} never reached the expected state: {body}\n--- apiserver ---\n{}\n--- agent ---\n{}",
            tail(&server.log(), 6000),
            tail(&node.agent_log(), 6000),
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn started_at(body: &Value, container: &str) -> Option<i64> {
    view(body, container)["currentState"]["startTime"]
        .as_str()
        .map(ms_of)
}

/// The containerd id and task pid of the running container labelled `name` on the node.
async fn running_container(node: &RealNode, name: &str) -> (String, u32) {
    for (id, label) in node.containers().await {
        if label == name
            && let Some(pid) = node.task_pid(&id).await
        {
            return (id, pid);
        }
    }
    panic!("no running container {name} on the node")
}

/// Polls containerd until container `id`'s task no longer runs; the moment it was first seen so
/// (the container's real end, to within the polling interval).
async fn task_ended(node: &RealNode, id: &str) -> i64 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(SLOW);
    while node.task_running(id).await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the task of {id} never ended"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    now_ms()
}

/// One row of a usage export.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub(crate) group_id: String,
    pub(crate) name: String,
    pub(crate) subscription: String,
    pub(crate) resource_id: String,
    pub(crate) node_id: String,
    pub(crate) sku: String,
    pub(crate) class: String,
    pub(crate) start: i64,
    pub(crate) end: i64,
    /// `ConsumedQuantity` exactly, in units of 10^-13.
    pub(crate) quantity: i128,
    pub(crate) accrued: bool,
    pub(crate) ledger_id: Option<i64>,
}

/// An exact decimal (`-12.5`, `3`, `0.0000009765625`) in units of 10^-13.
fn decimal_e13(text: &str) -> i128 {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    assert!(
        fraction.len() <= 13
            && !whole.is_empty()
            && whole.bytes().all(|b| b.is_ascii_digit())
            && fraction.bytes().all(|b| b.is_ascii_digit()),
        "not an exact decimal of at most 13 places: {text:?}"
    );
    let mut value: i128 = whole.parse().expect("digits");
    for i in 0..13 {
        let digit = fraction
            .as_bytes()
            .get(i)
            .map_or(0, |b| i128::from(b - b'0'));
        value = value * 10 + digit;
    }
    if negative { -value } else { value }
}

/// The JSON number of `key` in a JSON line as written, not through a float.
fn raw_number<'a>(line: &'a str, key: &str) -> &'a str {
    let needle = format!("\"{key}\":");
    let at = line
        .find(&needle)
        .unwrap_or_else(|| panic!("no {key} in {line}"))
        + needle.len();
    let rest = &line[at..];
    let end = rest.find([',', '}']).expect("the number ends");
    rest[..end].trim()
}

pub(crate) fn parse_rows(text: &str) -> Vec<Row> {
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
            let s = |key: &str| {
                v[key]
                    .as_str()
                    .unwrap_or_else(|| panic!("{key} is not a string: {line}"))
                    .to_owned()
            };
            // The quantity is a JSON number (exact decimal), never a string.
            assert!(v["ConsumedQuantity"].is_number(), "{line}");
            assert_eq!(
                raw_number(line, "ConsumedQuantity"),
                raw_number(line, "PricingQuantity"),
                "{line}"
            );
            Row {
                group_id: s("x_GroupId"),
                name: s("ResourceName"),
                subscription: s("SubAccountId"),
                resource_id: s("ResourceId"),
                node_id: s("x_NodeId"),
                sku: s("SkuId"),
                class: s("ChargeClass"),
                start: ms_of(&s("ChargePeriodStart")),
                end: ms_of(&s("ChargePeriodEnd")),
                quantity: decimal_e13(raw_number(line, "ConsumedQuantity")),
                accrued: v["x_Accrued"].as_bool().expect("x_Accrued is a bool"),
                ledger_id: v["x_LedgerId"].as_i64(),
            }
        })
        .collect()
}

pub(crate) fn usage_query(from: i64, to: i64, granularity: &str, format: &str) -> String {
    format!(
        "from={}&to={}&granularity={granularity}&format={format}",
        iso(from),
        iso(to)
    )
}

async fn export(api: &Api, path: &str, query: &str) -> Vec<Row> {
    export_with_estimate(api, path, query).await.0
}

/// The rows and the `x-berth-row-estimate` header (ledger rows in the window).
pub(crate) async fn export_with_estimate(api: &Api, path: &str, query: &str) -> (Vec<Row>, usize) {
    let (status, headers, text) = api.text(&format!("{path}?{query}")).await;
    assert_eq!(status, StatusCode::OK, "{path}?{query}: {text}");
    assert_eq!(headers["content-type"], "application/x-ndjson", "{query}");
    let estimate = headers["x-berth-row-estimate"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("a count");
    (parse_rows(&text), estimate)
}

fn tenant_usage_path(sub: &str) -> String {
    format!("/subscriptions/{sub}/providers/Microsoft.ContainerInstance/usage")
}

/// A run as its containers lived it, and how billing should end it.
#[derive(Debug)]
struct RealRun {
    label: &'static str,
    group: &'static str,
    /// The container's start (instance view).
    start: i64,
    /// The container's real end: its task seen ended in containerd, or the node's finish time.
    end: i64,
    /// The stop or delete whose acceptance is the billed end, if one is.
    ended_by: Option<Call>,
}

/// A run as billed: its ledger rows of one meter merged.
#[derive(Debug)]
struct BilledRun {
    start: i64,
    end: i64,
    /// Σ quantity / rate: the billed milliseconds.
    ms: i128,
}

/// Rows of one group and meter, each assigned to the real run it belongs to: the last run whose
/// container started at most [`TOLERANCE_MS`] after the row (billing starts at the image pull,
/// shortly before the container).
fn billed_runs(rows: &[&Row], runs: &[&RealRun]) -> Vec<BilledRun> {
    let mut per_run: Vec<Vec<&Row>> = vec![Vec::new(); runs.len()];
    for row in rows {
        let i = runs
            .iter()
            .rposition(|run| run.start - TOLERANCE_MS <= row.start)
            .unwrap_or_else(|| panic!("a row before any run started: {row:?}"));
        per_run[i].push(row);
    }
    per_run
        .into_iter()
        .zip(runs)
        .map(|(mut rows, run)| {
            assert!(!rows.is_empty(), "run {} was not billed at all", run.label);
            rows.sort_by_key(|r| (r.start, r.end));
            let rate = rate_per_ms(&rows[0].name, &rows[0].sku);
            let mut ms = 0;
            for row in &rows {
                assert_eq!(row.quantity % rate, 0, "not rate × duration: {row:?}");
                ms += row.quantity / rate;
            }
            for pair in rows.windows(2) {
                assert_eq!(
                    pair[0].end, pair[1].start,
                    "run {}: a gap or an overlap between {:?} and {:?}",
                    run.label, pair[0], pair[1]
                );
            }
            let (start, end) = (rows[0].start, rows[rows.len() - 1].end);
            assert_eq!(
                ms,
                i128::from(end - start),
                "run {}: its rows do not add up to its span",
                run.label
            );
            BilledRun { start, end, ms }
        })
        .collect()
}

/// At no instant is a group's meter billed twice (or negatively): the signed rows covering any
/// instant sum to 0 or 1 run. Positive rows of one group and meter never overlap.
pub(crate) fn assert_no_double_billing(rows: &[Row]) {
    let mut by_key: BTreeMap<(&str, &str), Vec<&Row>> = BTreeMap::new();
    for row in rows {
        by_key
            .entry((&row.group_id, &row.sku))
            .or_default()
            .push(row);
    }
    for ((group, sku), rows) in by_key {
        let mut edges: BTreeMap<i64, i64> = BTreeMap::new();
        for row in &rows {
            let sign = if row.quantity < 0 { -1 } else { 1 };
            *edges.entry(row.start).or_default() += sign;
            *edges.entry(row.end).or_default() -= sign;
        }
        let mut depth = 0;
        for (at, change) in edges {
            depth += change;
            assert!(
                (0..=1).contains(&depth),
                "{group} {sku}: billed {depth} times from {}",
                iso(at)
            );
        }
        let mut positive: Vec<&&Row> = rows.iter().filter(|r| r.quantity > 0).collect();
        positive.sort_by_key(|r| r.start);
        for pair in positive.windows(2) {
            assert!(
                pair[0].end <= pair[1].start,
                "{group} {sku}: rows overlap: {:?} and {:?}",
                pair[0],
                pair[1]
            );
        }
    }
}

/// Σ quantity per (group, meter), exactly.
fn totals(rows: &[Row]) -> BTreeMap<(String, String), i128> {
    let mut sums = BTreeMap::new();
    for row in rows {
        *sums
            .entry((row.group_id.clone(), row.sku.clone()))
            .or_default() += row.quantity;
    }
    sums
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_matches_real_run_times_across_stop_restart_delete_and_an_apiserver_sigkill() {
    let began = Instant::now();
    let test_start = now_ms();
    let mut server = ApiserverProcess::start(&[
        "--heartbeat-interval-ms",
        "1000",
        // The node must not be declared lost while the apiserver is down: this test is about a
        // crash of the apiserver, not of the node.
        "--node-timeout-secs",
        "60",
        "--node-lost-after",
        "120",
    ])
    .await;
    let node = server
        .real_node("billing-node", RealOptions::default())
        .await;
    let alice = server.tenant(&[SUB]).await;
    let bob = server.tenant(&[OTHER_SUB]).await;

    // Run A: created, runs ~3 s, stopped.
    let mut steady = real_group(&node.image, "Always", &[("app", &STEADY)]);
    steady["properties"]["containers"][0]["properties"]["resources"] =
        json!({"requests": {"cpu": 1.0, "memoryInGB": 1.5}});
    let (status, _, answer) = alice.put_group(SUB, RG, "steady", &steady).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    let steady_arm_id = answer["id"].as_str().expect("id").to_owned();
    let running = |b: &Value| state_of(b, "app") == "Running";
    let body = wait_for(&server, &alice, &node, SUB, "steady", running).await;
    let a_start = started_at(&body, "app").expect("a start time");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (id, _) = running_container(&node, "app").await;
    let a_stop = act(&alice, Method::POST, &verb_path(SUB, "steady", "stop")).await;
    let a_end = task_ended(&node, &id).await;

    // Run B: started again after a second stopped, runs ~3 s, restarted.
    tokio::time::sleep(Duration::from_secs(1)).await;
    act(&alice, Method::POST, &verb_path(SUB, "steady", "start")).await;
    let body = wait_for(&server, &alice, &node, SUB, "steady", |b| {
        running(b) && started_at(b, "app").is_some_and(|t| t > a_start)
    })
    .await;
    let b_start = started_at(&body, "app").expect("a start time");
    tokio::time::sleep(Duration::from_secs(3)).await;
    act(&alice, Method::POST, &verb_path(SUB, "steady", "restart")).await;

    // Run C: the restart's run, still running when the apiserver is killed.
    let body = wait_for(&server, &alice, &node, SUB, "steady", |b| {
        running(b) && started_at(b, "app").is_some_and(|t| t > b_start)
    })
    .await;
    let c_start = started_at(&body, "app").expect("a start time");
    let b_end = ms_of(
        view(&body, "app")["previousState"]["finishTime"]
            .as_str()
            .unwrap_or_else(|| panic!("the restarted run's finish time: {body}")),
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (c_id, c_pid) = running_container(&node, "app").await;

    // Bob's one-shot group: its 2 s end while the apiserver is down.
    let oneshot = real_group(&node.image, "Never", &[("job", &["sleep", "2"])]);
    let (status, _, answer) = bob.put_group(OTHER_SUB, RG, "oneshot", &oneshot).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    let body = wait_for(&server, &bob, &node, OTHER_SUB, "oneshot", |b| {
        state_of(b, "job") == "Running"
    })
    .await;
    let o_start = started_at(&body, "job").expect("a start time");

    server.kill().await;
    let killed = now_ms();
    tokio::time::sleep(Duration::from_secs(4)).await;
    server.restart().await;
    let back = now_ms();
    // Clients of the new process (the old connections died with the old one).
    let alice = server.api(alice.token());
    let bob = server.api(bob.token());
    let operator = server.operator_api();

    // The node reconnects by itself and tells what happened meanwhile.
    let body = wait_for(&server, &bob, &node, OTHER_SUB, "oneshot", |b| {
        state_of(b, "job") == "Terminated"
    })
    .await;
    assert_eq!(view(&body, "job")["currentState"]["exitCode"], 0, "{body}");
    assert_eq!(started_at(&body, "job"), Some(o_start), "{body}");
    let o_end = ms_of(
        view(&body, "job")["currentState"]["finishTime"]
            .as_str()
            .expect("a finish time"),
    );
    assert!(
        killed < o_end && o_end < back,
        "the one-shot should end while the apiserver is down: killed {}, ended {}, back {}",
        iso(killed),
        iso(o_end),
        iso(back)
    );
    // Run C lived through it: the same container start, the same process.
    let body = wait_for(&server, &alice, &node, SUB, "steady", running).await;
    assert_eq!(started_at(&body, "app"), Some(c_start), "{body}");
    assert_eq!(node.task_pid(&c_id).await, Some(c_pid));

    // While it runs, run C shows accrued to now, from where run B's rows end.
    let now = now_ms();
    let rows = export(
        &operator,
        "/admin/billing/usage",
        &usage_query(test_start - 60_000, now + 60_000, "raw", "jsonl"),
    )
    .await;
    let accrued: Vec<&Row> = rows
        .iter()
        .filter(|r| r.name == "steady" && r.accrued)
        .collect();
    assert!(
        !accrued.is_empty(),
        "no accrued row for the open run: {rows:#?}"
    );
    for row in &accrued {
        assert_eq!(row.ledger_id, None, "{row:?}");
        assert!((row.end - now).abs() <= 5_000, "accrued to now: {row:?}");
    }
    let ledgered_end = rows
        .iter()
        .filter(|r| r.name == "steady" && !r.accrued && r.sku == "linux/vcpu_seconds")
        .map(|r| r.end)
        .max()
        .expect("runs A and B are in the ledger");
    let accrued_start = accrued.iter().map(|r| r.start).min().expect("rows");
    assert_eq!(
        accrued_start, ledgered_end,
        "run C accrues from where B ends"
    );

    // Run C ends with the group's deletion; Bob's group is deleted long after it ended.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let c_delete = act(&alice, Method::DELETE, &group_path(SUB, RG, "steady")).await;
    let c_end = task_ended(&node, &c_id).await;
    let o_delete = act(&bob, Method::DELETE, &group_path(OTHER_SUB, RG, "oneshot")).await;
    let finished = now_ms();

    let real = [
        RealRun {
            label: "A (create → stop)",
            group: "steady",
            start: a_start,
            end: a_end,
            ended_by: Some(a_stop),
        },
        RealRun {
            label: "B (start → restart)",
            group: "steady",
            start: b_start,
            end: b_end,
            ended_by: None,
        },
        RealRun {
            label: "C (restart → SIGKILL → delete)",
            group: "steady",
            start: c_start,
            end: c_end,
            ended_by: Some(c_delete),
        },
        RealRun {
            label: "oneshot (exits in the downtime)",
            group: "oneshot",
            start: o_start,
            end: o_end,
            ended_by: None,
        },
    ];

    // The whole export, every subscription.
    let (from, to) = (test_start - 60_000, finished + 60_000);
    let (rows, estimate) = export_with_estimate(
        &operator,
        "/admin/billing/usage",
        &usage_query(from, to, "raw", "jsonl"),
    )
    .await;
    assert!(!rows.is_empty());
    assert_eq!(estimate, rows.len(), "every row is a ledger row");
    let ids: BTreeSet<i64> = rows
        .iter()
        .map(|r| {
            r.ledger_id
                .unwrap_or_else(|| panic!("an unledgered row: {r:?}"))
        })
        .collect();
    assert_eq!(ids.len(), rows.len(), "duplicate x_LedgerId");
    let names: BTreeSet<&str> = rows.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, BTreeSet::from(["oneshot", "steady"]));
    for row in &rows {
        assert!(!row.accrued, "nothing runs any more: {row:?}");
        assert_eq!(row.node_id, rows[0].node_id, "one node: {row:?}");
        assert!(!row.node_id.is_empty());
        assert!(
            row.start < row.end
                && row.start.div_euclid(86_400_000) == (row.end - 1).div_euclid(86_400_000),
            "a ledger row stays within a UTC day: {row:?}"
        );
        if row.quantity < 0 {
            assert_eq!(row.class, "Correction", "{row:?}");
        } else {
            assert_eq!(row.class, "", "{row:?}");
        }
    }
    for name in ["steady", "oneshot"] {
        let ids: BTreeSet<&str> = rows
            .iter()
            .filter(|r| r.name == name)
            .map(|r| r.group_id.as_str())
            .collect();
        assert_eq!(
            ids.len(),
            1,
            "{name} is one group through all its runs: {ids:?}"
        );
    }
    assert!(
        rows.iter()
            .filter(|r| r.name == "steady")
            .all(|r| r.resource_id.eq_ignore_ascii_case(&steady_arm_id) && r.subscription == SUB),
        "steady's rows name its ARM id {steady_arm_id} and Alice's subscription"
    );
    assert!(
        rows.iter()
            .filter(|r| r.name == "oneshot")
            .all(|r| r.subscription == OTHER_SUB)
    );
    let corrections: Vec<&Row> = rows.iter().filter(|r| r.quantity < 0).collect();
    if !corrections.is_empty() {
        println!("corrections in the ledger: {corrections:#?}");
    }
    assert_no_double_billing(&rows);

    // Memory is billed for exactly the same milliseconds as vCPU, at the group's size.
    let mut by_span: HashMap<(&str, i64, i64, bool), BTreeMap<&str, i128>> = HashMap::new();
    for row in &rows {
        by_span
            .entry((&row.name, row.start, row.end, row.quantity < 0))
            .or_default()
            .insert(&row.sku, row.quantity);
    }
    for ((name, start, end, _), meters) in &by_span {
        let cpu = meters.get("linux/vcpu_seconds");
        let memory = meters.get("linux/memory_gib_seconds");
        let (Some(cpu), Some(memory)) = (cpu, memory) else {
            panic!(
                "{name} {}..{}: one meter without the other: {meters:?}",
                iso(*start),
                iso(*end)
            );
        };
        assert_eq!(
            cpu * rate_per_ms(name, "linux/memory_gib_seconds"),
            memory * rate_per_ms(name, "linux/vcpu_seconds"),
            "{name} {}..{}: {meters:?}",
            iso(*start),
            iso(*end)
        );
        if *name == "steady" {
            assert_eq!(memory * 2, cpu * 3, "1.5 GiB per vCPU");
        }
    }

    // Each run billed as its containers really ran.
    println!(
        "\n{:<32} {:>24} {:>24} {:>9} | {:>24} {:>24} {:>9} | {:>7}",
        "run",
        "container start",
        "container end",
        "real s",
        "billed from",
        "billed to",
        "billed s",
        "Δ s"
    );
    let mut billed_by_run = Vec::new();
    for group in ["steady", "oneshot"] {
        let runs: Vec<&RealRun> = real.iter().filter(|r| r.group == group).collect();
        let mut per_meter = Vec::new();
        for sku in ["linux/vcpu_seconds", "linux/memory_gib_seconds"] {
            let rows: Vec<&Row> = rows
                .iter()
                .filter(|r| r.name == group && r.sku == sku)
                .collect();
            per_meter.push(billed_runs(&rows, &runs));
        }
        // Both meters cut the runs alike.
        for (cpu, memory) in per_meter[0].iter().zip(&per_meter[1]) {
            assert_eq!(
                (cpu.start, cpu.end, cpu.ms),
                (memory.start, memory.end, memory.ms)
            );
        }
        for (run, billed) in runs.into_iter().zip(per_meter.swap_remove(0)) {
            let real_ms = run.end - run.start;
            let delta = billed.ms as i64 - real_ms;
            println!(
                "{:<32} {:>24} {:>24} {:>9.3} | {:>24} {:>24} {:>9.3} | {:>+7.3}",
                run.label,
                iso(run.start),
                iso(run.end),
                real_ms as f64 / 1000.0,
                iso(billed.start),
                iso(billed.end),
                billed.ms as f64 / 1000.0,
                delta as f64 / 1000.0,
            );
            billed_by_run.push((run, billed));
        }
    }
    for (run, billed) in &billed_by_run {
        let label = run.label;
        // Billing starts at the image pull: a little before the container, never after it.
        assert!(
            billed.start <= run.start && run.start - billed.start <= TOLERANCE_MS,
            "{label}: billed from {} but the container started {}",
            iso(billed.start),
            iso(run.start)
        );
        assert!(
            (billed.end - run.end).abs() <= TOLERANCE_MS,
            "{label}: billed to {} but the container ran to {}",
            iso(billed.end),
            iso(run.end)
        );
        assert!(
            (billed.ms as i64 - (run.end - run.start)).abs() <= TOLERANCE_MS,
            "{label}: billed {} ms, ran {} ms",
            billed.ms,
            run.end - run.start
        );
        // A stop or delete ends billing when the API accepts it (the apiserver's clock).
        if let Some(call) = run.ended_by {
            assert!(
                call.sent <= billed.end && billed.end <= call.done,
                "{label}: billed to {}, the call ran {}..{}",
                iso(billed.end),
                iso(call.sent),
                iso(call.done)
            );
        }
    }
    let billed = |label: &str| {
        &billed_by_run
            .iter()
            .find(|(run, _)| run.label.starts_with(label))
            .expect("run")
            .1
    };
    // The restart: run B ends exactly where run C's billing begins, nothing in between, nothing twice.
    assert_eq!(billed("B").end, billed("C").start);
    // The apiserver's downtime is billed: the node kept running C, and said so when it came back.
    assert!(billed("C").start < killed && billed("C").end > back);
    // Bob's group is billed for its run, not until it was deleted.
    assert!(billed("oneshot").end < o_delete.sent - TOLERANCE_MS);
    println!(
        "apiserver SIGKILLed at {}, serving again at {} ({:.3} s down)",
        iso(killed),
        iso(back),
        (back - killed) as f64 / 1000.0
    );

    // Rollups sum to the raw ledger exactly.
    let raw_totals = totals(&rows);
    for (granularity, period) in [("hourly", 3_600_000), ("daily", 86_400_000), ("monthly", 0)] {
        let rolled = export(
            &operator,
            "/admin/billing/usage",
            &usage_query(from, to, granularity, "jsonl"),
        )
        .await;
        assert_eq!(totals(&rolled), raw_totals, "{granularity}");
        for row in &rolled {
            assert_eq!(row.ledger_id, None, "{granularity}: {row:?}");
            if period > 0 {
                assert_eq!(row.start.rem_euclid(period), 0, "{granularity}: {row:?}");
                assert_eq!(row.end - row.start, period, "{granularity}: {row:?}");
            } else {
                assert!(iso(row.start).ends_with("-01T00:00:00.000Z"), "{row:?}");
            }
        }
    }
    // CSV (the default format) carries the same rows.
    let (status, headers, csv) = operator
        .text(&format!(
            "/admin/billing/usage?from={}&to={}",
            iso(from),
            iso(to)
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{csv}");
    assert!(
        headers["content-type"]
            .to_str()
            .expect("ascii")
            .starts_with("text/csv")
    );
    let mut lines = csv.lines();
    assert!(
        lines
            .next()
            .is_some_and(|h| h.starts_with("BillingPeriodStart,BillingPeriodEnd,ChargePeriodStart")),
        "{csv}"
    );
    assert_eq!(lines.filter(|l| !l.is_empty()).count(), rows.len(), "{csv}");

    // Tenants: no admin export; each sees its own subscription's usage and nobody else's.
    for path in ["/admin/billing/usage", "/admin/billing/prices"] {
        let (status, body) = alice.call(Method::GET, path, None).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}: {body}");
        assert!(body["error"]["code"].is_string(), "{path}: {body}");
        assert!(body["error"]["message"].is_string(), "{path}: {body}");
    }
    let query = usage_query(from, to, "raw", "jsonl");
    for (api, sub, name) in [(&alice, SUB, "steady"), (&bob, OTHER_SUB, "oneshot")] {
        let own = export(api, &tenant_usage_path(sub), &query).await;
        assert!(own.iter().all(|r| r.subscription == sub && r.name == name));
        let mine: BTreeSet<Option<i64>> = own.iter().map(|r| r.ledger_id).collect();
        let expected: BTreeSet<Option<i64>> = rows
            .iter()
            .filter(|r| r.subscription == sub)
            .map(|r| r.ledger_id)
            .collect();
        assert_eq!(mine, expected, "{sub}");
    }
    for (api, other) in [(&alice, OTHER_SUB), (&bob, SUB)] {
        let (status, _, body) = api
            .text(&format!("{}?{query}", tenant_usage_path(other)))
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    }
    let (status, body) = alice
        .call(
            Method::GET,
            &format!("{}?granularity=weekly", tenant_usage_path(SUB)),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["target"], "granularity", "{body}");
    let (status, body) = operator
        .call(Method::GET, "/admin/billing/usage?from=yesterday", None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["target"], "from", "{body}");

    drop(node);
    server.kill().await;
    println!("billing e2e took {:.1} s", began.elapsed().as_secs_f64());
}

// The checks above must be able to fail: they are tried here on made-up rows.

fn made_up(start: i64, end: i64, seconds_e13: i128) -> Row {
    Row {
        group_id: "g".into(),
        name: "steady".into(),
        subscription: SUB.into(),
        resource_id: String::new(),
        node_id: "n".into(),
        sku: "linux/vcpu_seconds".into(),
        class: String::new(),
        start,
        end,
        quantity: seconds_e13,
        accrued: false,
        ledger_id: None,
    }
}

fn made_up_run(start: i64, end: i64) -> RealRun {
    RealRun {
        label: "made up",
        group: "steady",
        start,
        end,
        ended_by: None,
    }
}

const MS: i128 = 10_000_000_000;

#[test]
fn decimals_are_read_exactly() {
    assert_eq!(decimal_e13("3"), 30_000_000_000_000);
    assert_eq!(decimal_e13("-1.5"), -15_000_000_000_000);
    assert_eq!(decimal_e13("0.0000009765625"), 9_765_625);
    assert_eq!(
        raw_number(r#"{"ConsumedQuantity":4.2,"x":1}"#, "ConsumedQuantity"),
        "4.2"
    );
}

#[test]
#[should_panic(expected = "billed 2 times")]
fn an_instant_billed_twice_is_caught() {
    assert_no_double_billing(&[made_up(0, 1000, 1000 * MS), made_up(500, 1500, 1000 * MS)]);
}

#[test]
fn a_correction_that_takes_back_a_stretch_is_no_double_billing() {
    // Billed to 2 s, corrected back to 1 s, then billed on to 1.5 s.
    assert_no_double_billing(&[
        made_up(0, 2000, 2000 * MS),
        made_up(1000, 2000, -1000 * MS),
        made_up(2000, 2500, 500 * MS),
    ]);
}

#[test]
#[should_panic(expected = "a gap or an overlap")]
fn a_gap_inside_a_run_is_caught() {
    let rows = [made_up(0, 1000, 1000 * MS), made_up(1200, 2000, 800 * MS)];
    let rows: Vec<&Row> = rows.iter().collect();
    billed_runs(&rows, &[&made_up_run(100, 2000)]);
}

#[test]
fn rows_go_to_the_run_they_belong_to() {
    let rows = [
        made_up(0, 1000, 1000 * MS),
        made_up(5000, 6000, 1000 * MS),
        made_up(6000, 9000, 3000 * MS),
    ];
    let rows: Vec<&Row> = rows.iter().collect();
    let runs = [made_up_run(300, 1000), made_up_run(5100, 9000)];
    let billed = billed_runs(&rows, &[&runs[0], &runs[1]]);
    assert_eq!(
        billed
            .iter()
            .map(|b| (b.start, b.end, b.ms))
            .collect::<Vec<_>>(),
        [(0, 1000, 1000), (5000, 9000, 4000)]
    );
}
