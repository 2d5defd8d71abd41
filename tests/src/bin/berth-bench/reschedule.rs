//! `--mode reschedule` (`scripts/bench reschedule`): hollow nodes in this process (two sets, the
//! library's `testing::hollow`), groups created over HTTPS until every node holds some, then the
//! `--lost` set dies at once like machines whose power went (its connections fall silent). Waits
//! until every group is placed again and Running, then reads every group once and reports, from the
//! apiserver's and the nodes' own timestamps (one machine, one clock): the time from each lost
//! node's last heartbeat to its groups Running again (the figure, against `--node-lost-after-secs`
//! + 5 s), and where it went.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use berth_node_agent::testing::hollow::HollowNodes;
use berth_node_agent::{AgentConfig, HollowConfig, RuntimeKind};
use serde_json::{Value, json};

use super::{Args, client};

/// Generous bounds on every wait (the bench measures; it does not judge a slow machine).
const PATIENCE: Duration = Duration::from_secs(600);

fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn rfc3339_ms(text: &str) -> Option<i64> {
    let at =
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()?;
    Some((at.unix_timestamp_nanos() / 1_000_000) as i64)
}

/// The restart policies, in turn: all of them run again elsewhere while running.
const POLICIES: [&str; 3] = ["Always", "OnFailure", "Never"];

struct Bench {
    client: reqwest::Client,
    endpoints: Vec<String>,
    token: String,
    operator: String,
    sub: String,
    prefix: String,
}

impl Bench {
    fn path(&self, i: usize) -> String {
        format!(
            "/subscriptions/{}/resourceGroups/reschedule-{}/providers/Microsoft.ContainerInstance/containerGroups/{}{i}?api-version=2023-05-01",
            self.sub,
            i % 16,
            self.prefix
        )
    }

    async fn nodes(&self) -> anyhow::Result<Vec<Value>> {
        let list: Value = self
            .client
            .get(format!("{}/admin/v1/nodes", self.endpoints[0]))
            .bearer_auth(&self.operator)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        Ok(list["value"].as_array().cloned().unwrap_or_default())
    }

    async fn get(&self, i: usize) -> anyhow::Result<Value> {
        let endpoint = &self.endpoints[i % self.endpoints.len()];
        let resp = self
            .client
            .get(format!("{endpoint}{}", self.path(i)))
            .bearer_auth(&self.token)
            .send()
            .await?;
        let status = resp.status();
        let body: Value = resp.json().await?;
        if !status.is_success() {
            bail!("GET group {i}: {status} {body}");
        }
        Ok(body)
    }
}

/// Runs `work(i)` for `0..n`, `concurrency` at a time; the results in order.
async fn each<T, F, Fut>(n: usize, concurrency: usize, work: F) -> anyhow::Result<Vec<T>>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<T>> + Send,
{
    let work = Arc::new(work);
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..concurrency.max(1) {
        let (work, next) = (work.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            let mut done = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return Ok::<_, anyhow::Error>(done);
                }
                done.push((i, work(i).await?));
            }
        }));
    }
    let mut all = Vec::with_capacity(n);
    for worker in workers {
        all.extend(worker.await??);
    }
    all.sort_by_key(|(i, _)| *i);
    Ok(all.into_iter().map(|(_, t)| t).collect())
}

/// Polls `check` every 200 ms until it gives `Some`; an error naming `what` after [`PATIENCE`].
async fn until<T, Fut>(what: &str, mut check: impl FnMut() -> Fut) -> anyhow::Result<T>
where
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(found) = check().await? {
            return Ok(found);
        }
        if Instant::now() > deadline {
            bail!("{what}: not after {PATIENCE:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The group-level event `name` last seen (`lastTimestamp`, unix ms: events of one name merge), if
/// any.
fn group_event(group: &Value, name: &str) -> Option<(i64, String)> {
    group["properties"]["instanceView"]["events"]
        .as_array()?
        .iter()
        .filter(|e| e["name"] == name)
        .filter_map(|e| {
            Some((
                rfc3339_ms(e["lastTimestamp"].as_str()?)?,
                e["message"].as_str().unwrap_or_default().to_owned(),
            ))
        })
        .max_by_key(|(at, _)| *at)
}

/// The first container's event `name` (unix ms): the node's, of the run it reports.
fn container_event(group: &Value, name: &str) -> Option<i64> {
    group["properties"]["containers"][0]["properties"]["instanceView"]["events"]
        .as_array()?
        .iter()
        .filter(|e| e["name"] == name)
        .filter_map(|e| rfc3339_ms(e["firstTimestamp"].as_str()?))
        .max()
}

fn running(group: &Value) -> bool {
    group["properties"]["instanceView"]["state"] == "Running"
}

/// One moved group's timeline (unix ms).
#[derive(Debug, Clone, Copy)]
struct Moved {
    /// Its lost node's last heartbeat (the apiserver's last message from it).
    heard: i64,
    lost: i64,
    /// Whether the group's events still show `NodeLost` (else `lost` is when the node was seen Lost).
    lost_event: bool,
    /// Placed again (its `Scheduled` event after `NodeLost`, if the apiserver records one).
    scheduled: Option<i64>,
    /// The new node accepted it (`Pulling`).
    pulling: i64,
    /// Its containers run on the new node (`Started`).
    started: i64,
}

/// What the sampler saw of a dead node: its last heartbeat (the apiserver's last message from it)
/// and when a node list first showed it `Lost` (unix ms).
#[derive(Debug, Clone, Copy, Default)]
struct Death {
    heard: i64,
    seen_lost: i64,
}

/// A moved group's timeline once its new run runs (`Started` after `died_ms`). The time it was
/// taken off its node is its `NodeLost` event if the group still shows one, else when the node was
/// first seen `Lost`.
fn timeline(group: &Value, death: Death, died_ms: i64) -> Option<Moved> {
    if !running(group) {
        return None;
    }
    let started = container_event(group, "Started").filter(|at| *at > died_ms)?;
    let pulling = container_event(group, "Pulling")?;
    let lost_event = group_event(group, "NodeLost").map(|(at, _)| at);
    let lost = lost_event.unwrap_or(death.seen_lost);
    let scheduled = group_event(group, "Scheduled")
        .map(|(at, _)| at)
        .filter(|at| *at > died_ms);
    Some(Moved {
        heard: death.heard,
        lost,
        lost_event: lost_event.is_some(),
        scheduled,
        pulling,
        started,
    })
}

/// The node a group's last `Scheduled` event names ("Placed on node N.").
fn placed_on(group: &Value) -> Option<String> {
    let (_, message) = group_event(group, "Scheduled")?;
    let name = message.strip_prefix("Placed on node ")?.strip_suffix('.')?;
    Some(name.to_owned())
}

/// `p50 / p99 / max` of `values`, in seconds.
fn spread(mut values: Vec<i64>) -> String {
    if values.is_empty() {
        return "-".to_owned();
    }
    values.sort_unstable();
    let at = |p: f64| values[((values.len() - 1) as f64 * p).round() as usize] as f64 / 1000.0;
    format!(
        "p50 {:.2} s, p99 {:.2} s, max {:.2} s",
        at(0.5),
        at(0.99),
        at(1.0)
    )
}

pub(crate) async fn run(args: &Args) -> anyhow::Result<()> {
    let ca_file = args.ca_file.as_ref().context("--ca-file is needed")?;
    let bench = Arc::new(Bench {
        client: client(&std::fs::read(ca_file)?)?,
        endpoints: if args.endpoints.is_empty() {
            vec![args.endpoint.clone().context("--endpoint is needed")?]
        } else {
            args.endpoints.clone()
        },
        token: args.token.clone().context("--token is needed")?,
        operator: args
            .operator_token
            .clone()
            .context("--operator-token is needed")?,
        sub: args
            .subscription
            .clone()
            .context("--subscription is needed")?,
        prefix: args.prefix.clone(),
    });
    if args.node_servers.is_empty() {
        bail!("--node-servers is needed");
    }
    if args.lost == 0 || args.lost >= args.nodes {
        bail!("--lost must be between 1 and --nodes - 1");
    }
    let join_token = args.join_token.clone().context("--join-token is needed")?;
    let state_dir = args.state_dir.clone().context("--state-dir is needed")?;
    let hollow = |name: &str, nodes: u32| {
        let mut config = AgentConfig::new(
            args.node_servers[0].clone(),
            state_dir.join(name),
            name.to_owned(),
        );
        config.servers = args.node_servers.clone();
        config.join_token = Some(join_token.clone());
        config.hollow_nodes = nodes;
        config.capacity = berth_proto::node::Resources {
            cpu_millis: 4_000,
            memory_mib: 16 * 1024,
            gpu: 0,
            gpu_sku: String::new(),
        };
        config.runtime = RuntimeKind::Hollow(HollowConfig {
            start_delay: Duration::from_millis(args.hollow_start_delay_ms),
            ..HollowConfig::default()
        });
        config
    };
    let mut live = HollowNodes::start(hollow("live", args.nodes - args.lost)).await?;
    let mut doomed = HollowNodes::start(hollow("doomed", args.lost)).await?;
    let doomed_names: Vec<String> = doomed.names().to_vec();
    let t0 = Instant::now();
    until("every node Ready", || {
        let bench = bench.clone();
        async move {
            let nodes = bench.nodes().await?;
            let ready = nodes.iter().filter(|n| n["status"] == "Ready").count();
            Ok((ready >= args.nodes as usize).then_some(()))
        }
    })
    .await?;
    println!(
        "nodes Ready:             {} in {:.1} s ({} to lose)",
        args.nodes,
        t0.elapsed().as_secs_f64(),
        args.lost
    );

    let t0 = Instant::now();
    let creator = bench.clone();
    each(args.groups, args.concurrency, move |i| {
        let bench = creator.clone();
        async move {
            let endpoint = &bench.endpoints[i % bench.endpoints.len()];
            let body = json!({
                "location": "local",
                "properties": {
                    "osType": "Linux",
                    "restartPolicy": POLICIES[i % POLICIES.len()],
                    "containers": [{"name": "app", "properties": {
                        "image": "registry.local/busybox:latest",
                        "resources": {"requests": {"cpu": 0.25, "memoryInGB": 0.5}}
                    }}]
                }
            });
            let resp = bench
                .client
                .put(format!("{endpoint}{}", bench.path(i)))
                .bearer_auth(&bench.token)
                .json(&body)
                .send()
                .await?;
            let status = resp.status();
            if status.as_u16() != 201 {
                bail!(
                    "create {i}: {status} {}",
                    resp.text().await.unwrap_or_default()
                );
            }
            Ok(())
        }
    })
    .await?;
    let placed_count = |nodes: &[Value]| -> u64 {
        nodes
            .iter()
            .map(|n| n["groups"].as_u64().unwrap_or(0))
            .sum()
    };
    until("every group placed", || {
        let bench = bench.clone();
        async move {
            let nodes = bench.nodes().await?;
            Ok((placed_count(&nodes) >= args.groups as u64).then_some(()))
        }
    })
    .await?;
    let all = until("every group Running, its node known", || {
        let bench = bench.clone();
        async move {
            let gets = bench.clone();
            let groups = each(args.groups, 64, move |i| {
                let bench = gets.clone();
                async move { bench.get(i).await }
            })
            .await?;
            // Their `Scheduled` events (written after the placement) name their nodes.
            let known = groups.iter().all(|g| running(g) && placed_on(g).is_some());
            Ok(known.then_some(groups))
        }
    })
    .await?;
    let on_doomed: BTreeMap<usize, String> = all
        .iter()
        .enumerate()
        .filter_map(|(i, g)| {
            let node = placed_on(g)?;
            doomed_names.contains(&node).then_some((i, node))
        })
        .collect();
    drop(all);
    let nodes = bench.nodes().await?;
    let counted: u64 = nodes
        .iter()
        .filter(|n| {
            n["name"]
                .as_str()
                .is_some_and(|name| doomed_names.iter().any(|d| d == name))
        })
        .map(|n| n["groups"].as_u64().unwrap_or(0))
        .sum();
    if counted != on_doomed.len() as u64 {
        bail!(
            "the nodes to lose hold {counted} groups, but {} name them in their Scheduled event",
            on_doomed.len()
        );
    }
    println!(
        "groups Running:          {} in {:.1} s ({counted} on the nodes to lose)",
        args.groups,
        t0.elapsed().as_secs_f64()
    );

    let died_ms = unix_ms();
    doomed.die().await?;
    println!("-- {} nodes died at once", args.lost);

    // Every 100 ms: when each dead node is first seen Lost; done once all are, emptied, and every
    // group is placed again.
    let mut deaths: HashMap<String, Death> = HashMap::new();
    let deadline = Instant::now() + PATIENCE;
    loop {
        let nodes = bench.nodes().await?;
        let seen_ms = unix_ms();
        let mut done = true;
        for node in &nodes {
            let Some(name) = node["name"].as_str() else {
                continue;
            };
            if !doomed_names.iter().any(|d| d == name) {
                continue;
            }
            if node["status"] == "Lost" {
                let death = deaths.entry(name.to_owned()).or_insert(Death {
                    heard: 0,
                    seen_lost: seen_ms,
                });
                death.heard = node["lastHeartbeat"]
                    .as_str()
                    .and_then(rfc3339_ms)
                    .unwrap_or(died_ms);
            }
            done &= node["status"] == "Lost" && node["groups"] == 0;
        }
        if done && placed_count(&nodes) >= args.groups as u64 {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "the dead nodes not all Lost, or their groups not placed again, after {PATIENCE:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The moved groups, until their new runs run.
    let mut moved: BTreeMap<usize, Moved> = BTreeMap::new();
    let deadline = Instant::now() + PATIENCE;
    while moved.len() < on_doomed.len() {
        for (&i, node) in &on_doomed {
            if moved.contains_key(&i) {
                continue;
            }
            let group = bench.get(i).await?;
            let death = deaths.get(node).copied().unwrap_or_default();
            if let Some(timeline) = timeline(&group, death, died_ms) {
                moved.insert(i, timeline);
            }
        }
        if moved.len() < on_doomed.len() {
            if Instant::now() > deadline {
                bail!(
                    "{} of {} moved groups not Running after {PATIENCE:?}",
                    on_doomed.len() - moved.len(),
                    on_doomed.len()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let heard: HashMap<&String, i64> = deaths.iter().map(|(n, d)| (n, d.heard)).collect();
    let latest_heard = heard.values().copied().max().unwrap_or(died_ms);
    let lost_seen: Vec<i64> = deaths.values().map(|d| d.seen_lost).collect();

    let moved: Vec<Moved> = moved.into_values().collect();
    let lost_after_ms = (args.node_lost_after_secs * 1000.0) as i64;
    let last_running = moved.iter().map(|m| m.started).max().unwrap_or(died_ms);
    let worst = moved.iter().map(|m| m.started - m.heard).max().unwrap_or(0);
    let first_lost = moved.iter().map(|m| m.lost).min().unwrap_or(died_ms);
    let last_lost = moved.iter().map(|m| m.lost).max().unwrap_or(died_ms);
    println!(
        "moved:                   {} groups, all that were on the dead nodes, Running again ({} still show their NodeLost event)",
        moved.len(),
        moved.iter().filter(|m| m.lost_event).count()
    );
    println!(
        "last heartbeat → Running again, per group (its node's last heartbeat → its new run Started): {}  (target ≤ node-lost-after + 5 s = {:.1} s: {})",
        spread(moved.iter().map(|m| m.started - m.heard).collect()),
        (lost_after_ms + 5_000) as f64 / 1000.0,
        if worst <= lost_after_ms + 5_000 {
            "met"
        } else {
            "NOT met"
        }
    );
    println!(
        "the dead nodes' latest last heartbeat → the last group Running: {:.2} s (the kill → it: {:.2} s; last heartbeats {:.2}–{:.2} s before the kill)",
        (last_running - latest_heard) as f64 / 1000.0,
        (last_running - died_ms) as f64 / 1000.0,
        (died_ms - heard.values().copied().min().unwrap_or(died_ms)) as f64 / 1000.0,
        (died_ms - latest_heard) as f64 / 1000.0,
    );
    println!("where the time goes (per group):");
    println!(
        "  judgement   last heartbeat → taken off:          {}  (NodeLost, or the node first seen Lost; node-lost-after {:.0} s, + the monitor's period, + queueing behind other nodes' lose transactions)",
        spread(moved.iter().map(|m| m.lost - m.heard).collect()),
        args.node_lost_after_secs
    );
    println!(
        "              beyond node-lost-after:             {}",
        spread(
            moved
                .iter()
                .map(|m| m.lost - m.heard - lost_after_ms)
                .collect()
        )
    );
    println!(
        "  lose        first → last node taken off:         {:.2} s over {} nodes (first seen Lost {:.2} s, last {:.2} s after the kill)",
        (last_lost - first_lost) as f64 / 1000.0,
        heard.len(),
        (lost_seen.iter().copied().min().unwrap_or(died_ms) - died_ms) as f64 / 1000.0,
        (lost_seen.iter().copied().max().unwrap_or(died_ms) - died_ms) as f64 / 1000.0
    );
    let with_scheduled: Vec<&Moved> = moved.iter().filter(|m| m.scheduled.is_some()).collect();
    if with_scheduled.is_empty() {
        println!(
            "  rounds+send NodeLost → new node Pulling:         {}  (no Scheduled event to split it)",
            spread(moved.iter().map(|m| m.pulling - m.lost).collect())
        );
    } else {
        println!(
            "  rounds      NodeLost → Scheduled:                {}",
            spread(
                with_scheduled
                    .iter()
                    .filter_map(|m| Some(m.scheduled? - m.lost))
                    .collect()
            )
        );
        println!(
            "  send        Scheduled → new node Pulling:        {}",
            spread(
                with_scheduled
                    .iter()
                    .filter_map(|m| Some(m.pulling - m.scheduled?))
                    .collect()
            )
        );
    }
    println!(
        "  start       Pulling → Started (hollow, {} ms):    {}",
        args.hollow_start_delay_ms,
        spread(moved.iter().map(|m| m.started - m.pulling).collect())
    );
    live.stop().await?;
    Ok(())
}
