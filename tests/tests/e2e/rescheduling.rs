//! Many nodes lost at once: 500 hollow nodes, 5,000 groups of every restart policy, 50 nodes dying at
//! the same moment like machines whose power went (`testing::hollow`: their connections fall
//! silent, nothing more is heard from them). Every group of theirs that its policy runs again is
//! placed again on a live node and runs there, exactly once; the finished ones are settled off the
//! node; nothing is left on a lost node; every node's used capacity is the sum of its groups'
//! requests. Small timers (NotReady after 2 s, lost after 4 s) keep it short; every wait is generous,
//! nothing is timed.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use berth_apiserver::model::reported::GroupPhase;
use berth_apiserver::store::{GroupRecord, NodeRecord, NodeStatus, Store};
use berth_node_agent::testing::hollow::HollowNodes;
use berth_node_agent::{AgentConfig, HollowConfig, RuntimeKind};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::{Api, Cluster, SUB};

const NODES: u32 = 500;
const LOST: u32 = 50;
const GROUPS: usize = 5_000;
/// Creates in flight.
const CONCURRENCY: usize = 32;
/// Resource groups the groups are spread over.
const RESOURCE_GROUPS: usize = 10;
/// Every wait: far more than a slow machine needs, never a measure.
const PATIENCE: Duration = Duration::from_secs(300);

/// What each group is: its restart policy, and whether its container fails at once (a `Never` group
/// that fails is finished: on a lost node it is settled, not placed again).
fn kind(i: usize) -> (&'static str, bool) {
    match i % 20 {
        0 => ("Never", true),
        n if n % 3 == 0 => ("Always", false),
        n if n % 3 == 1 => ("OnFailure", false),
        _ => ("Never", false),
    }
}

fn body(i: usize) -> Value {
    let (policy, fails) = kind(i);
    let image = if fails {
        "registry.local/hollow/fail:1"
    } else {
        "registry.local/busybox:1"
    };
    json!({
        "location": "local",
        "properties": {
            "osType": "Linux",
            "restartPolicy": policy,
            "containers": [{"name": "app", "properties": {
                "image": image,
                "resources": {"requests": {"cpu": 0.25, "memoryInGB": 0.5}}
            }}]
        }
    })
}

fn name(i: usize) -> (String, String) {
    (format!("rg{}", i % RESOURCE_GROUPS), format!("g{i}"))
}

fn hollow(cluster: &Cluster, name: &str, nodes: u32, token: &str) -> AgentConfig {
    let mut config = AgentConfig::new(
        cluster.node_url(),
        cluster.dir().join(format!("agents-{name}")),
        name,
    );
    config.join_token = Some(token.to_owned());
    config.hollow_nodes = nodes;
    config.capacity = berth_proto::node::Resources {
        cpu_millis: 4_000,
        memory_mib: 16 * 1024,
        gpu: 0,
        gpu_sku: String::new(),
    };
    config.runtime = RuntimeKind::Hollow(HollowConfig {
        start_delay: Duration::from_millis(50),
        ..HollowConfig::default()
    });
    config
}

/// Every group of the subscription, from the store.
async fn all_groups(store: &Arc<dyn Store>) -> Vec<GroupRecord> {
    let mut groups = Vec::new();
    let mut after = 0;
    loop {
        let page = store
            .list_groups(SUB, None, after, 1_000)
            .await
            .expect("list groups");
        let Some(last) = page.last() else {
            return groups;
        };
        after = last.seq;
        groups.extend(page);
    }
}

fn phase(group: &GroupRecord) -> Option<GroupPhase> {
    group.status.as_ref().map(|s| s.phase)
}

/// Whether a group is where it should be once it settled: running (or, for the failing kind,
/// failed) on a Ready node, and the node's report is about this placement.
fn settled_in_place(group: &GroupRecord, ready: &BTreeSet<&str>, fails: bool) -> bool {
    let on_ready = group
        .node_id
        .as_deref()
        .is_some_and(|node| ready.contains(node));
    let reported = group
        .status
        .as_ref()
        .is_some_and(|s| s.placement == group.placement as u64);
    let want = if fails {
        GroupPhase::Failed
    } else {
        GroupPhase::Running
    };
    on_ready && reported && phase(group) == Some(want)
}

fn index_of(group: &GroupRecord) -> usize {
    group
        .name
        .strip_prefix('g')
        .and_then(|n| n.parse().ok())
        .expect("a group this test made")
}

async fn nodes_by_name(store: &Arc<dyn Store>) -> HashMap<String, NodeRecord> {
    store
        .nodes()
        .await
        .expect("nodes")
        .into_iter()
        .map(|n| (n.name.clone(), n))
        .collect()
}

/// Polls `done` every 200 ms until it holds; panics with `what` (and the last `done` detail) after
/// [`PATIENCE`].
async fn wait_for<F, Fut>(what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let deadline = Instant::now() + PATIENCE;
    loop {
        let outcome = done().await;
        match outcome {
            Ok(()) => return,
            Err(detail) => assert!(
                Instant::now() < deadline,
                "{what} not reached after {PATIENCE:?}: {detail}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn create_all(api: &Api) {
    let next = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..CONCURRENCY)
        .map(|_| {
            let (api, next) = (api.clone(), next.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= GROUPS {
                        return;
                    }
                    let (rg, name) = name(i);
                    let (status, _, answer) = api.put_group(SUB, &rg, &name, &body(i)).await;
                    assert_eq!(status, StatusCode::CREATED, "create {name}: {answer}");
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.expect("create worker");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_nodes_lost_at_once_their_groups_run_elsewhere_once() {
    let started = Instant::now();
    let cluster = Cluster::start_with(|c| {
        c.node_timeout_secs = 2;
        c.node_lost_after_secs = 4;
        c.heartbeat_interval_ms = 500;
        c.heartbeat_store_interval_ms = 500;
        c.quota_groups = 1_000_000;
        c.quota_cpu_millis = 1_000_000_000;
        c.dns_listen = None;
    })
    .await;
    let store = cluster.state().store.clone();
    let token = cluster.join_token(NODES).await;
    let mut live = HollowNodes::start(hollow(&cluster, "live", NODES - LOST, &token))
        .await
        .expect("live nodes start");
    let mut doomed = HollowNodes::start(hollow(&cluster, "doomed", LOST, &token))
        .await
        .expect("doomed nodes start");
    let doomed_names: BTreeSet<String> = doomed.names().iter().cloned().collect();

    wait_for("every node Ready", || {
        let store = store.clone();
        async move {
            let ready = nodes_by_name(&store)
                .await
                .values()
                .filter(|n| n.status == NodeStatus::Ready)
                .count();
            (ready == NODES as usize)
                .then_some(())
                .ok_or(format!("{ready} of {NODES} Ready"))
        }
    })
    .await;
    eprintln!("{NODES} nodes Ready after {:?}", started.elapsed());

    let api = cluster.tenant(&[SUB]).await;
    create_all(&api).await;
    eprintln!("{GROUPS} groups created after {:?}", started.elapsed());
    wait_for("every group running (or failed) on its node", || {
        let store = store.clone();
        async move {
            let ready: BTreeSet<String> = nodes_by_name(&store)
                .await
                .into_values()
                .filter(|n| n.status == NodeStatus::Ready)
                .map(|n| n.id)
                .collect();
            let ready: BTreeSet<&str> = ready.iter().map(String::as_str).collect();
            let groups = all_groups(&store).await;
            let waiting = groups
                .iter()
                .filter(|g| !settled_in_place(g, &ready, kind(index_of(g)).1))
                .count();
            (groups.len() == GROUPS && waiting == 0)
                .then_some(())
                .ok_or(format!("{} groups, {waiting} not in place", groups.len()))
        }
    })
    .await;
    eprintln!("every group in place after {:?}", started.elapsed());

    // What the doomed nodes hold when they die.
    let nodes = nodes_by_name(&store).await;
    let doomed_ids: BTreeSet<String> = doomed_names
        .iter()
        .map(|name| nodes[name].id.clone())
        .collect();
    let before: BTreeMap<String, GroupRecord> = all_groups(&store)
        .await
        .into_iter()
        .map(|g| (g.id.clone(), g))
        .collect();
    let on_doomed: Vec<&GroupRecord> = before
        .values()
        .filter(|g| g.node_id.as_ref().is_some_and(|n| doomed_ids.contains(n)))
        .collect();
    let (settle, moving): (Vec<&GroupRecord>, Vec<&GroupRecord>) = on_doomed
        .iter()
        .partition(|g| phase(g) == Some(GroupPhase::Failed));
    assert!(
        !moving.is_empty() && !settle.is_empty(),
        "the doomed nodes hold groups of both kinds: {} to move, {} to settle",
        moving.len(),
        settle.len()
    );

    let died = Instant::now();
    doomed
        .die()
        .await
        .expect("the doomed agent stopped cleanly");

    let moving_ids: BTreeSet<String> = moving.iter().map(|g| g.id.clone()).collect();
    wait_for("every moved group running elsewhere", || {
        let (store, doomed_ids, moving_ids) = (store.clone(), &doomed_ids, &moving_ids);
        async move {
            let nodes = nodes_by_name(&store).await;
            let not_lost = nodes
                .values()
                .filter(|n| doomed_ids.contains(&n.id) && n.status != NodeStatus::Lost)
                .count();
            let ready: BTreeSet<&str> = nodes
                .values()
                .filter(|n| n.status == NodeStatus::Ready)
                .map(|n| n.id.as_str())
                .collect();
            let groups = all_groups(&store).await;
            let waiting = groups
                .iter()
                .filter(|g| moving_ids.contains(&g.id) && !settled_in_place(g, &ready, false))
                .count();
            (not_lost == 0 && waiting == 0).then_some(()).ok_or(format!(
                "{not_lost} doomed nodes not Lost yet, {waiting} of {} moved groups not running",
                moving_ids.len()
            ))
        }
    })
    .await;
    eprintln!(
        "{} groups moved and running {:?} after the nodes died ({} settled)",
        moving.len(),
        died.elapsed(),
        settle.len()
    );

    // The store's view: where each group is, and what each node holds.
    let nodes = nodes_by_name(&store).await;
    let groups = all_groups(&store).await;
    assert_eq!(groups.len(), GROUPS, "no group lost or added");
    let mut held: HashMap<&str, (u64, u64, usize)> = HashMap::new();
    for group in &groups {
        if let Some(node) = group.node_id.as_deref() {
            assert!(
                !doomed_ids.contains(node),
                "{} is still on lost node {node}",
                group.name
            );
            let entry = held.entry(node).or_default();
            entry.0 += group.requests.cpu_millis;
            entry.1 += group.requests.memory_mib;
            entry.2 += 1;
        }
        // The epoch moves once when a group is taken off its node and once per placement: a
        // moved group was placed exactly once more, a settled one never again.
        let was = &before[&group.id];
        if moving_ids.contains(&group.id) {
            assert!(
                group.node_id.is_some() && group.node_id != was.node_id,
                "{} moved to another node: {:?}",
                group.name,
                group.node_id
            );
            assert_eq!(
                group.placement,
                was.placement + 2,
                "{}: taken off once and placed once more",
                group.name
            );
        } else if settle.iter().any(|g| g.id == group.id) {
            assert_eq!(
                group.node_id, None,
                "{} is settled off its node",
                group.name
            );
            assert_eq!(phase(group), Some(GroupPhase::Failed), "{}", group.name);
            assert_eq!(
                group.placement,
                was.placement + 1,
                "{}: taken off, not placed again",
                group.name
            );
        } else {
            assert_eq!(
                (&group.node_id, group.placement),
                (&was.node_id, was.placement),
                "{} was on a live node and stays where it was",
                group.name
            );
        }
    }
    for node in nodes.values() {
        let (cpu, memory, count) = held.get(node.id.as_str()).copied().unwrap_or_default();
        assert_eq!(
            (node.used.cpu_millis, node.used.memory_mib),
            (cpu, memory),
            "node {} ({:?}) holds {count} groups",
            node.name,
            node.status
        );
        if doomed_ids.contains(&node.id) {
            assert_eq!(node.status, NodeStatus::Lost, "{}", node.name);
            assert_eq!(count, 0, "{} holds nothing", node.name);
        }
    }

    // What a user sees of a moved group: running, and why it moved.
    for group in moving.iter().take(50) {
        let (status, body) = api.get_group(SUB, &group.resource_group, &group.name).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let view = &body["properties"]["instanceView"];
        assert_eq!(view["state"], "Running", "{body}");
        let events = view["events"].as_array().cloned().unwrap_or_default();
        assert!(
            events.iter().any(|e| e["name"] == "NodeLost"),
            "{}: {body}",
            group.name
        );
    }
    // The operator's view: the dead nodes are Lost, and hold nothing.
    let (status, list) = cluster
        .operator_api()
        .call(Method::GET, "/admin/v1/nodes", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{list}");
    for node in list["value"].as_array().into_iter().flatten() {
        if node["name"]
            .as_str()
            .is_some_and(|n| doomed_names.contains(n))
        {
            assert_eq!(node["status"], "Lost", "{node}");
            assert_eq!(node["groups"], 0, "{node}");
        }
    }

    live.stop().await.expect("the live agent stopped cleanly");
    eprintln!("done after {:?}", started.elapsed());
}
