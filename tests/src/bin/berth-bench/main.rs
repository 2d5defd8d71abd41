//! Load generator for `scripts/bench`, which also starts the processes it drives:
//!
//! - `--mode placement` (`scripts/bench placement`): creates groups over HTTPS with many requests in
//!   flight and reports placements per second and create-acknowledgement latency.
//! - `--mode start` (`scripts/bench start`): creates groups one at a time and reports the latency from
//!   sending the PUT to the first GET that shows the group and its container Running; then deletes
//!   them (unless `--keep`).
//! - `--mode delete`: deletes the groups `--mode start --keep` left (`<prefix>0..<groups>`).
//! - `--mode exec` (`scripts/bench exec`): in group `<prefix>0`'s container `app` (made by `--mode
//!   start --keep`), times exec session setup (POST …/exec, websocket, the process's first output)
//!   and keystroke round trips through a TTY (a byte in, its echo out) over Berth's channel protocol.
//! - `--mode pull` (hidden): times one cold pull through the node agent's own image code
//!   (`ImageService::ensure`) into a containerd namespace, and prints `<ms> <blobs fetched>`.
//! - `--mode failover` (`scripts/bench failover`): a steady stream of creates to replicas of one
//!   control plane while one of them (`--kill-pid`) is SIGKILLed; reports the gap in placements,
//!   acknowledged creates lost and how long the nodes took to reach the survivor (`failover.rs`).
//! - `--mode reschedule` (`scripts/bench reschedule`): runs hollow nodes itself, fills them, kills
//!   `--lost` of them at once like dead machines, and reports the time from their last heartbeat to
//!   their groups Running again elsewhere, and where it goes (`reschedule.rs`).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::{Parser, ValueEnum};
use serde_json::{Value, json};

mod failover;
mod reschedule;

/// What to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// Placements/s and create-ack latency, many requests in flight.
    Placement,
    /// Create→Running latency, one group at a time.
    Start,
    /// Deletes the groups a `start --keep` run left.
    Delete,
    /// Exec session setup and keystroke round trips, in group `<prefix>0`.
    Exec,
    /// One cold image pull through the agent's `ImageService` (needs `--containerd`).
    #[value(hide = true)]
    Pull,
    /// Creates at a steady rate while the replica `--kill-pid` is SIGKILLed.
    Failover,
    /// Runs hollow nodes, kills `--lost` of them at once, times their groups' move.
    Reschedule,
}

/// Load generator for Berth benchmarks.
#[derive(Debug, Parser)]
struct Args {
    /// What to measure.
    #[arg(long, value_enum, default_value_t = Mode::Placement)]
    mode: Mode,
    /// HTTPS endpoint of the apiserver.
    #[arg(long)]
    endpoint: Option<String>,
    /// HTTPS endpoints of several replicas, comma-separated: placement spreads its requests over
    /// them; failover starts worker `i` on endpoint `i % n` and moves it on when one stops answering.
    #[arg(long, value_delimiter = ',')]
    endpoints: Vec<String>,
    /// CA certificate (PEM).
    #[arg(long)]
    ca_file: Option<PathBuf>,
    /// Tenant token.
    #[arg(long)]
    token: Option<String>,
    /// Operator token (reads node allocations to see placements).
    #[arg(long)]
    operator_token: Option<String>,
    /// Subscription of the tenant token.
    #[arg(long)]
    subscription: Option<String>,
    /// The apiserver's process id, to print its CPU time per placement (from /proc/<pid>/stat);
    /// repeated for replicas (their CPU time is added up).
    #[arg(long)]
    apiserver_pid: Vec<u32>,
    /// Groups to create.
    #[arg(long, default_value_t = 20_000)]
    groups: usize,
    /// Concurrent requests in flight (placement).
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Prefix of group names, so several runs can share a cluster.
    #[arg(long, default_value = "g")]
    prefix: String,
    /// The image the groups run (start), or the image to pull (pull).
    #[arg(long, default_value = "registry.local/busybox:latest")]
    image: String,
    /// Resource group of the groups (start, delete).
    #[arg(long, default_value = "bench-start")]
    resource_group: String,
    /// Milliseconds between GETs while waiting for Running (start).
    #[arg(long, default_value_t = 5)]
    poll_ms: u64,
    /// Leave the groups running (start).
    #[arg(long)]
    keep: bool,
    /// Seconds one group may take to be Running (start).
    #[arg(long, default_value_t = 300)]
    timeout_secs: u64,
    /// Exec sessions to open, and keystrokes to send (exec).
    #[arg(long, default_value_t = 30)]
    sessions: usize,
    #[arg(long, default_value_t = 1000)]
    keystrokes: usize,
    /// containerd's socket (pull).
    #[arg(long, hide = true)]
    containerd: Option<PathBuf>,
    /// containerd namespace to pull into; should be new and empty (pull).
    #[arg(long, hide = true)]
    namespace: Option<String>,
    /// The replica to SIGKILL (failover): its process id, and its place in `--endpoints`.
    #[arg(long)]
    kill_pid: Option<u32>,
    #[arg(long, default_value_t = 0)]
    kill_index: usize,
    /// Seconds of creates before the kill (failover).
    #[arg(long, default_value_t = 5.0)]
    kill_after_secs: f64,
    /// Creates a second, all workers together (failover).
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
    /// The apiservers' node gateways the hollow nodes reach, comma-separated (reschedule).
    #[arg(long, value_delimiter = ',')]
    node_servers: Vec<String>,
    /// A join token with a use for every node (reschedule).
    #[arg(long)]
    join_token: Option<String>,
    /// Hollow nodes to run, and how many of them die (reschedule).
    #[arg(long, default_value_t = 500)]
    nodes: u32,
    #[arg(long, default_value_t = 50)]
    lost: u32,
    /// The apiserver's `--node-lost-after` (reschedule: the target is this + 5 s).
    #[arg(long, default_value_t = 30.0)]
    node_lost_after_secs: f64,
    /// The hollow runtime's time from accepting a group to running it (reschedule).
    #[arg(long, default_value_t = 100)]
    hollow_start_delay_ms: u64,
    /// Where the hollow nodes keep their identities (reschedule).
    #[arg(long)]
    state_dir: Option<PathBuf>,
}

/// What the HTTP modes need.
struct Api {
    client: reqwest::Client,
    endpoint: String,
    token: String,
    subscription: String,
}

impl Api {
    fn new(args: &Args) -> anyhow::Result<Self> {
        let ca_file = args.ca_file.as_ref().context("--ca-file is needed")?;
        let ca = std::fs::read(ca_file)
            .with_context(|| format!("while reading {}", ca_file.display()))?;
        Ok(Self {
            client: client(&ca)?,
            endpoint: args.endpoint.clone().context("--endpoint is needed")?,
            token: args.token.clone().context("--token is needed")?,
            subscription: args
                .subscription
                .clone()
                .context("--subscription is needed")?,
        })
    }

    fn group_url(&self, resource_group: &str, name: &str) -> String {
        format!(
            "{}/subscriptions/{}/resourceGroups/{resource_group}/providers/Microsoft.ContainerInstance/containerGroups/{name}?api-version=2023-05-01",
            self.endpoint, self.subscription
        )
    }
}

fn client(ca: &[u8]) -> anyhow::Result<reqwest::Client> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    Ok(reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca)?)
        .pool_max_idle_per_host(1024)
        .timeout(Duration::from_secs(60))
        .build()?)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

async fn placed(client: &reqwest::Client, endpoint: &str, operator: &str) -> anyhow::Result<u64> {
    let nodes: Value = client
        .get(format!("{endpoint}/admin/v1/nodes"))
        .bearer_auth(operator)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(nodes["value"].as_array().map_or(0, |v| {
        v.iter().map(|n| n["groups"].as_u64().unwrap_or(0)).sum()
    }))
}

async fn placement(args: &Args) -> anyhow::Result<()> {
    let api = Api::new(args)?;
    let operator = args
        .operator_token
        .as_deref()
        .context("--operator-token is needed")?;
    let client = api.client.clone();
    let body = Arc::new(serde_json::to_vec(&json!({
        "location": "local",
        "properties": {
            "osType": "Linux",
            "restartPolicy": "Always",
            "containers": [{"name": "app", "properties": {
                "image": "registry.local/busybox:latest",
                "resources": {"requests": {"cpu": 0.25, "memoryInGB": 0.5}}
            }}]
        }
    }))?);

    let endpoints = if args.endpoints.is_empty() {
        vec![api.endpoint.clone()]
    } else {
        args.endpoints.clone()
    };
    let base = placed(&client, &api.endpoint, operator).await?;
    let cpu_before = cpu_ticks_of(&args.apiserver_pid)?;
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for worker in 0..args.concurrency {
        let (client, next, body) = (client.clone(), next.clone(), body.clone());
        let prefix = args.prefix.clone();
        let (endpoint, token, sub, total) = (
            endpoints[worker % endpoints.len()].clone(),
            api.token.clone(),
            api.subscription.clone(),
            args.groups,
        );
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return Ok::<_, anyhow::Error>(latencies);
                }
                let url = format!(
                    "{endpoint}/subscriptions/{sub}/resourceGroups/bench-{}/providers/Microsoft.ContainerInstance/containerGroups/{prefix}{i}?api-version=2023-05-01",
                    i % 16
                );
                let t = Instant::now();
                let resp = client.put(url).bearer_auth(&token).header("content-type", "application/json").body(body.as_ref().clone()).send().await?;
                let status = resp.status();
                let _ = resp.bytes().await?;
                latencies.push(t.elapsed());
                if status.as_u16() != 201 {
                    bail!("create {i} answered {status}");
                }
            }
        }));
    }
    let mut latencies = Vec::with_capacity(args.groups);
    for w in workers {
        latencies.extend(w.await??);
    }
    let acked = started.elapsed();
    // Wait until the scheduler has placed every group.
    let deadline = Instant::now() + Duration::from_secs(300);
    let target = base + args.groups as u64;
    let mut done = placed(&client, &api.endpoint, operator).await?;
    while done < target {
        if Instant::now() > deadline {
            bail!(
                "only {} of {} groups placed after 300 s",
                done - base,
                args.groups
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        done = placed(&client, &api.endpoint, operator).await?;
    }
    let all_placed = started.elapsed();
    // The apiserver's work for these placements goes on after the last is placed (the nodes report
    // them running): count it until the apiserver is idle again.
    let cpu = match cpu_before {
        Some(before) => Some(settled_cpu_ticks(&args.apiserver_pid).await? - before),
        None => None,
    };
    latencies.sort();
    println!(
        "-- {} groups, {} requests in flight to {} endpoint(s)",
        args.groups,
        args.concurrency,
        endpoints.len()
    );
    println!(
        "creates acknowledged in: {:.2} s ({:.0} creates/s)",
        acked.as_secs_f64(),
        args.groups as f64 / acked.as_secs_f64()
    );
    println!("all placed after:        {:.2} s", all_placed.as_secs_f64());
    println!(
        "placements/s:            {:.0}",
        args.groups as f64 / all_placed.as_secs_f64()
    );
    println!(
        "create ack p50:          {:.2} ms",
        percentile(&latencies, 0.50).as_secs_f64() * 1000.0
    );
    println!(
        "create ack p99:          {:.2} ms",
        percentile(&latencies, 0.99).as_secs_f64() * 1000.0
    );
    if let Some(ticks) = cpu {
        println!(
            "apiserver CPU/placement: {:.0} µs (user+system, until idle{})",
            ticks as f64 * 1e6 / CLOCK_TICKS_PER_SECOND / args.groups as f64,
            if args.apiserver_pid.len() > 1 {
                ", all replicas"
            } else {
                ""
            }
        );
    }
    Ok(())
}

/// `/proc/<pid>/stat` counts CPU time in USER_HZ, which Linux fixes at 100 for user space.
const CLOCK_TICKS_PER_SECOND: f64 = 100.0;

/// User plus system CPU time of a process so far, in clock ticks.
fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces) in parentheses: state is field 3,
    // utime 14 and stime 15.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .context("unreadable /proc/<pid>/stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| -> anyhow::Result<u64> {
        Ok(fields
            .get(n - 3)
            .context("short /proc/<pid>/stat")?
            .parse()?)
    };
    Ok(field(14)? + field(15)?)
}

/// The CPU ticks of all of `pids` together; `None` for no pids.
fn cpu_ticks_of(pids: &[u32]) -> anyhow::Result<Option<u64>> {
    if pids.is_empty() {
        return Ok(None);
    }
    let mut sum = 0;
    for pid in pids {
        sum += cpu_ticks(*pid)?;
    }
    Ok(Some(sum))
}

/// The processes' CPU ticks once they have used under 10% of a core over half a second (the hollow
/// nodes' heartbeats keep them a little busy), or after 10 s.
async fn settled_cpu_ticks(pids: &[u32]) -> anyhow::Result<u64> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = cpu_ticks_of(pids)?.unwrap_or(0);
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = cpu_ticks_of(pids)?.unwrap_or(0);
        if now - last <= 5 || Instant::now() > deadline {
            return Ok(now);
        }
        last = now;
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    match args.mode {
        Mode::Placement => placement(&args).await,
        Mode::Start => start(&args).await,
        Mode::Delete => delete(&Api::new(&args)?, &args).await,
        Mode::Pull => pull(&args).await,
        Mode::Exec => exec(&args).await,
        Mode::Failover => failover::run(&args).await,
        Mode::Reschedule => reschedule::run(&args).await,
    }
}

/// Whether a GET body shows the group Running and every container's current state Running.
fn running(group: &Value) -> bool {
    let properties = &group["properties"];
    if properties["instanceView"]["state"] != "Running" {
        return false;
    }
    let Some(containers) = properties["containers"].as_array() else {
        return false;
    };
    !containers.is_empty()
        && containers
            .iter()
            .all(|c| c["properties"]["instanceView"]["currentState"]["state"] == "Running")
}

/// Whether a GET body shows the group failed (so waiting for Running is pointless).
fn failed(group: &Value) -> bool {
    group["properties"]["instanceView"]["state"] == "Failed"
        || group["properties"]["provisioningState"] == "Failed"
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn unix_ms_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

/// The agent's container events of the first container (`Pulling`, `Pulled`, `Created`, `Started`)
/// as unix milliseconds.
fn event_times(group: &Value) -> std::collections::HashMap<String, f64> {
    let format = time::format_description::well_known::Rfc3339;
    group["properties"]["containers"][0]["properties"]["instanceView"]["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let name = e["name"].as_str()?;
            let at = time::OffsetDateTime::parse(e["firstTimestamp"].as_str()?, &format).ok()?;
            Some((name.to_owned(), at.unix_timestamp_nanos() as f64 / 1e6))
        })
        .collect()
}

/// Where a create's time went, from the PUT to the GET that showed Running, by the agent's events
/// (millisecond timestamps, same clock): each stage's samples.
#[derive(Default)]
struct Stages {
    /// PUT sent → `Pulling` (the apiserver stores and places the group, the agent receives it).
    to_agent: Vec<f64>,
    /// `Pulling` → `Pulled` (the image check; a pull for a cold image).
    image: Vec<f64>,
    /// `Pulled` → `Created` (network namespace and CNI, /etc files, OCI spec, snapshot, container).
    sandbox: Vec<f64>,
    /// `Created` → `Started` (the task: shim, runc create, log driver, start).
    task: Vec<f64>,
    /// `Started` → the GET showing Running (the report to the apiserver, stored, and the poll).
    report: Vec<f64>,
}

impl Stages {
    fn add(
        &mut self,
        sent_unix_ms: f64,
        seen_unix_ms: f64,
        events: &std::collections::HashMap<String, f64>,
    ) {
        let get = |name: &str| events.get(name).copied();
        if let (Some(pulling), Some(pulled), Some(created), Some(started)) = (
            get("Pulling"),
            get("Pulled"),
            get("Created"),
            get("Started"),
        ) {
            self.to_agent.push(pulling - sent_unix_ms);
            self.image.push(pulled - pulling);
            self.sandbox.push(created - pulled);
            self.task.push(started - created);
            self.report.push(seen_unix_ms - started);
        }
    }

    fn line(&self) -> String {
        let p50 = |v: &[f64]| {
            let mut v = v.to_vec();
            v.sort_by(f64::total_cmp);
            v.get(((v.len().max(1) - 1) as f64 * 0.5).round() as usize)
                .copied()
                .unwrap_or(f64::NAN)
        };
        format!(
            "berth where the time goes (p50 of each stage, agent event timestamps, ms resolution, N={}): PUT→agent Pulling {:.0} ms | image check {:.0} ms | netns+CNI+spec+container {:.0} ms | task create+start {:.0} ms | Started→GET shows Running {:.0} ms",
            self.to_agent.len(),
            p50(&self.to_agent),
            p50(&self.image),
            p50(&self.sandbox),
            p50(&self.task),
            p50(&self.report),
        )
    }
}

/// Creates `--groups` groups one after another; each is timed from sending its PUT to the first GET
/// (every `--poll-ms`) showing it and its container Running.
async fn start(args: &Args) -> anyhow::Result<()> {
    let api = Api::new(args)?;
    let body = serde_json::to_vec(&json!({
        "location": "local",
        "properties": {
            "osType": "Linux",
            "restartPolicy": "Always",
            "containers": [{"name": "app", "properties": {
                "image": args.image,
                "command": ["sleep", "3600"],
                "resources": {"requests": {"cpu": 0.1, "memoryInGB": 0.1}}
            }}]
        }
    }))?;
    let poll = Duration::from_millis(args.poll_ms);
    let timeout = Duration::from_secs(args.timeout_secs);
    let mut to_running = Vec::with_capacity(args.groups);
    let mut acks = Vec::with_capacity(args.groups);
    let mut gets = 0usize;
    let mut stages = Stages::default();
    for i in 0..args.groups {
        let url = api.group_url(&args.resource_group, &format!("{}{i}", args.prefix));
        let sent_unix_ms = unix_ms_now();
        let sent = Instant::now();
        let response = api
            .client
            .put(&url)
            .bearer_auth(&api.token)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await?;
        let status = response.status();
        let text = response.text().await?;
        acks.push(sent.elapsed());
        if !status.is_success() {
            bail!("create {i} answered {status}: {text}");
        }
        loop {
            let response = api.client.get(&url).bearer_auth(&api.token).send().await?;
            gets += 1;
            let status = response.status();
            let text = response.text().await?;
            if !status.is_success() {
                bail!("GET of group {i} answered {status}: {text}");
            }
            let group: Value = serde_json::from_str(&text)?;
            if running(&group) {
                to_running.push(sent.elapsed());
                stages.add(sent_unix_ms, unix_ms_now(), &event_times(&group));
                break;
            }
            if failed(&group) {
                bail!("group {i} failed: {group:#}");
            }
            if sent.elapsed() > timeout {
                bail!("group {i} is not Running after {timeout:?}: {group:#}");
            }
            tokio::time::sleep(poll).await;
        }
    }
    let first = to_running.first().copied().unwrap_or_default();
    let mut sorted = to_running.clone();
    sorted.sort();
    acks.sort();
    let n = sorted.len();
    println!(
        "berth create→Running (N={n}, one at a time, GET every {} ms): p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms  min {:.1} ms  (first group {:.1} ms; PUT ack p50 {:.1} ms; {:.1} GETs/group)",
        args.poll_ms,
        ms(percentile(&sorted, 0.50)),
        ms(percentile(&sorted, 0.99)),
        ms(sorted.last().copied().unwrap_or_default()),
        ms(sorted.first().copied().unwrap_or_default()),
        ms(first),
        ms(percentile(&acks, 0.50)),
        gets as f64 / n.max(1) as f64,
    );
    println!("{}", stages.line());
    // The samples in creation order, for the script (ratios, medians).
    println!(
        "samples_ms {}",
        to_running
            .iter()
            .map(|d| format!("{:.3}", ms(*d)))
            .collect::<Vec<_>>()
            .join(" ")
    );
    if !args.keep {
        delete(&api, args).await?;
    }
    Ok(())
}

/// Deletes `<prefix>0..<groups>` in `--resource-group`; returns when every DELETE is answered
/// (the agent removes the containers afterwards: the script waits for containerd to be empty).
async fn delete(api: &Api, args: &Args) -> anyhow::Result<()> {
    for i in 0..args.groups {
        let url = api.group_url(&args.resource_group, &format!("{}{i}", args.prefix));
        let response = api
            .client
            .delete(&url)
            .bearer_auth(&api.token)
            .send()
            .await?;
        let status = response.status();
        if !status.is_success() {
            bail!(
                "delete of group {i} answered {status}: {}",
                response.text().await?
            );
        }
        // ACI's DELETE answers before the group is gone; GET says 404 once it is.
        let deadline = Instant::now() + Duration::from_secs(args.timeout_secs);
        loop {
            let response = api.client.get(&url).bearer_auth(&api.token).send().await?;
            if response.status() == reqwest::StatusCode::NOT_FOUND {
                break;
            }
            if Instant::now() > deadline {
                bail!(
                    "group {i} still answers {} after its DELETE",
                    response.status()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    Ok(())
}

/// One pull through the agent's own image code, timed around `ImageService::ensure`.
async fn pull(args: &Args) -> anyhow::Result<()> {
    use berth_node_agent::runtime::containerd::image::ImageService;
    let socket = args.containerd.as_ref().context("--containerd is needed")?;
    let namespace = args.namespace.as_deref().context("--namespace is needed")?;
    let channel = containerd_client::connect(socket)
        .await
        .with_context(|| format!("connecting to {}", socket.display()))?;
    let images = ImageService::new(channel, namespace, "overlayfs");
    let started = Instant::now();
    let pulled = images.ensure(&args.image, &[]).await?;
    let elapsed = started.elapsed();
    if pulled.cached {
        bail!(
            "{} was already in namespace {namespace}: not a cold pull",
            args.image
        );
    }
    println!("{:.3} {}", ms(elapsed), images.blobs_fetched());
    Ok(())
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens an exec session in `<prefix>0`/`app` running `command`: POST, then the websocket with
/// Berth's channel protocol.
async fn open_exec(
    api: &Api,
    args: &Args,
    tls: &tokio_tungstenite::Connector,
    command: &[&str],
    tty: bool,
) -> anyhow::Result<(Socket, Duration, Duration)> {
    let started = Instant::now();
    use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
    let url = api
        .group_url(&args.resource_group, &format!("{}0", args.prefix))
        .replace("?api-version", "/containers/app/exec?api-version");
    let response = api
        .client
        .post(&url)
        .bearer_auth(&api.token)
        .json(&json!({"command": command, "tty": tty, "terminalSize": {"rows": 24, "cols": 80}}))
        .send()
        .await?;
    let status = response.status();
    let answer: Value = response.json().await?;
    if !status.is_success() {
        bail!("POST exec answered {status}: {answer}");
    }
    let posted = started.elapsed();
    let uri = answer["webSocketUri"].as_str().context("no webSocketUri")?;
    let password = answer["password"].as_str().context("no password")?;
    let mut request = uri.into_client_request()?;
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", "v5.channel.k8s.io".parse()?);
    request
        .headers_mut()
        .insert("Authorization", format!("Bearer {password}").parse()?);
    let (socket, _) =
        tokio_tungstenite::connect_async_tls_with_config(request, None, true, Some(tls.clone()))
            .await?;
    Ok((socket, posted, started.elapsed()))
}

/// The next stdout bytes of a channel session (`None` once it ends).
async fn next_stdout(socket: &mut Socket) -> anyhow::Result<Option<Vec<u8>>> {
    use futures::StreamExt as _;
    use tokio_tungstenite::tungstenite::Message;
    loop {
        match socket.next().await {
            Some(Ok(Message::Binary(bytes))) => match bytes.first() {
                Some(1) => return Ok(Some(bytes[1..].to_vec())),
                Some(3) => {
                    let status: Value = serde_json::from_slice(&bytes[1..])?;
                    if status["status"] != "Success" {
                        bail!("the exec failed: {status}");
                    }
                }
                _ => {}
            },
            Some(Ok(Message::Close(_))) | None => return Ok(None),
            Some(Ok(_)) => {}
            Some(Err(error)) => return Err(error.into()),
        }
    }
}

fn summary(samples: &mut [Duration]) -> String {
    samples.sort();
    format!(
        "p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms  min {:.2} ms (N={})",
        ms(percentile(samples, 0.5)),
        ms(percentile(samples, 0.99)),
        ms(percentile(samples, 1.0)),
        ms(percentile(samples, 0.0)),
        samples.len()
    )
}

async fn exec(args: &Args) -> anyhow::Result<()> {
    use futures::SinkExt as _;
    use tokio_tungstenite::tungstenite::Message;
    let api = Api::new(args)?;
    let ca = std::fs::read(args.ca_file.as_ref().context("--ca-file is needed")?)?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::pem::PemObject::pem_slice_iter(&ca) {
        let cert: rustls_pki_types::CertificateDer<'static> = cert?;
        roots.add(cert)?;
    }
    let tls = tokio_tungstenite::Connector::Rustls(Arc::new(
        rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    ));

    // Setup: from POST …/exec to the first byte the process prints.
    let mut setups = Vec::with_capacity(args.sessions);
    let (mut posts, mut upgrades) = (Vec::new(), Vec::new());
    for _ in 0..args.sessions {
        let started = Instant::now();
        let (mut socket, posted, upgraded) =
            open_exec(&api, args, &tls, &["echo", "ready"], false).await?;
        let first = next_stdout(&mut socket).await?.context("no output")?;
        setups.push(started.elapsed());
        posts.push(posted);
        upgrades.push(upgraded - posted);
        if first.is_empty() {
            bail!("empty first output");
        }
        while next_stdout(&mut socket).await?.is_some() {}
    }
    println!(
        "setup: POST exec → websocket → first output, one session at a time: {}",
        summary(&mut setups)
    );
    let p50 = |samples: &mut Vec<Duration>| {
        samples.sort();
        ms(percentile(samples, 0.5))
    };
    let (post, upgrade) = (p50(&mut posts), p50(&mut upgrades));
    println!(
        "setup: where the time goes (p50): POST exec {post:.2} ms | websocket (TCP, TLS, upgrade) {upgrade:.2} ms | agent exec start to first output {:.2} ms",
        p50(&mut setups) - post - upgrade
    );

    // Keystrokes: a TTY running cat; each byte comes back as the terminal's echo.
    let (mut socket, _, _) = open_exec(&api, args, &tls, &["cat"], true).await?;
    let mut round_trips = Vec::with_capacity(args.keystrokes);
    let warmup = 20;
    for i in 0..args.keystrokes + warmup {
        let key = b'a' + (i % 26) as u8;
        let sent = Instant::now();
        socket.send(Message::Binary(vec![0, key].into())).await?;
        let mut echoed = false;
        while !echoed {
            let out = next_stdout(&mut socket).await?.context("cat ended")?;
            echoed = out.contains(&key);
        }
        if i >= warmup {
            round_trips.push(sent.elapsed());
        }
        // Keep cat's line short: a newline now and then (its echo and cat's output are read above).
        if i % 64 == 63 {
            socket.send(Message::Binary(vec![0, b'\r'].into())).await?;
            let mut lines = 0;
            while lines < 2 {
                let out = next_stdout(&mut socket).await?.context("cat ended")?;
                lines += out.iter().filter(|&&b| b == b'\n').count();
            }
        }
    }
    socket.send(Message::Binary(vec![0, 4].into())).await?;
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while let Ok(Some(_)) = next_stdout(&mut socket).await {}
    })
    .await;
    println!(
        "keystroke: byte in → its echo out through the TTY, one at a time: {}",
        summary(&mut round_trips)
    );
    Ok(())
}
