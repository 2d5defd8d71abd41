//! `--mode failover` (`scripts/bench failover`): replicas of one control plane take a steady stream
//! of creates (worker `i` starts on endpoint `i % n`) while the replica `--kill-pid` (endpoint
//! `--kill-index`, the holder of the control lease) is SIGKILLed `--kill-after-secs` in. A worker
//! whose replica stops answering sends the same create to the next one (a PUT of the same name is
//! idempotent), as a client given several endpoints does. Meanwhile a survivor's node list is read
//! every 20 ms: groups placed (from the store) and each node's last heartbeat (the survivor's own
//! word once it hears the node). Prints:
//!
//! - the gap in placements: the last placement seen before the kill → the first one after it;
//! - acknowledged creates lost: answered 200/201 by either replica, yet absent on the survivor;
//! - agent reconnects: how long after the kill the survivor first heard each node.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

use crate::{Args, client, placed};

/// One read of the survivor's node list.
#[derive(Debug, Clone, Copy)]
struct Sample {
    asked_ms: i64,
    answered_ms: i64,
    placed: u64,
}

/// One acknowledged create.
#[derive(Debug, Clone)]
struct Ack {
    name: String,
    /// The endpoint that answered.
    by: usize,
    /// From the first send to the answer, retries on other replicas included.
    took: Duration,
    /// Whether it was sent again to another replica first.
    retried: bool,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn rfc3339_ms(text: &str) -> Option<i64> {
    let at =
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()?;
    Some((at.unix_timestamp_nanos() / 1_000_000) as i64)
}

/// The last placement seen before the kill (the answer to the first sample that shows A's last
/// placement count, read after A was gone), and the first sample asked after the kill that shows
/// more: `(last before, first after)`, unix ms.
fn gap(samples: &[Sample], killed_ms: i64) -> Option<(i64, Option<i64>)> {
    let baseline = samples.iter().find(|s| s.asked_ms > killed_ms)?.placed;
    let last_before = samples.iter().find(|s| s.placed >= baseline)?.answered_ms;
    let first_after = samples
        .iter()
        .find(|s| s.asked_ms > killed_ms && s.placed > baseline)
        .map(|s| s.answered_ms);
    Some((last_before, first_after))
}

/// What the sampler and the killer share with the rest of the run.
#[derive(Default)]
struct Watch {
    /// When the killed replica was seen gone (unix ms; 0 before).
    killed_ms: AtomicI64,
    samples: Mutex<Vec<Sample>>,
    /// Each node's first heartbeat after the kill, as the survivor reports it.
    heard: Mutex<HashMap<String, i64>>,
    /// Nodes in the last node list.
    nodes: AtomicUsize,
    done: AtomicBool,
}

/// Reads `endpoint`'s node list every 20 ms until `watch.done`: placement samples, and once the
/// kill is done each node's first heartbeat after it.
async fn sample(client: reqwest::Client, endpoint: String, operator: String, watch: Arc<Watch>) {
    while !watch.done.load(Ordering::Relaxed) {
        let asked_ms = now_ms();
        let answer = client
            .get(format!("{endpoint}/admin/v1/nodes"))
            .bearer_auth(&operator)
            .send()
            .await;
        if let Ok(resp) = answer
            && resp.status().is_success()
            && let Ok(list) = resp.json::<Value>().await
        {
            let answered_ms = now_ms();
            let value = list["value"].as_array().cloned().unwrap_or_default();
            watch.nodes.store(value.len(), Ordering::Relaxed);
            let placed = value
                .iter()
                .map(|n| n["groups"].as_u64().unwrap_or(0))
                .sum();
            if let Ok(mut samples) = watch.samples.lock() {
                samples.push(Sample {
                    asked_ms,
                    answered_ms,
                    placed,
                });
            }
            let killed = watch.killed_ms.load(Ordering::Relaxed);
            if killed > 0
                && let Ok(mut heard) = watch.heard.lock()
            {
                for node in &value {
                    let (Some(name), Some(beat)) = (
                        node["name"].as_str(),
                        node["lastHeartbeat"].as_str().and_then(rfc3339_ms),
                    ) else {
                        continue;
                    };
                    if beat > killed {
                        heard.entry(name.to_owned()).or_insert(beat);
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One create, sent until a replica acknowledges it: on no answer or a 5xx the worker moves to the
/// next endpoint (and stays there).
async fn create(
    client: &reqwest::Client,
    endpoints: &[String],
    current: &mut usize,
    url_path: &str,
    token: &str,
    body: &[u8],
) -> anyhow::Result<(usize, bool)> {
    let mut retried = false;
    for attempt in 0..endpoints.len() * 20 {
        let answer = client
            .put(format!("{}{url_path}", endpoints[*current]))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(body.to_vec())
            .send()
            .await;
        match answer {
            Ok(resp) if resp.status().is_success() => {
                let _ = resp.bytes().await;
                return Ok((*current, retried));
            }
            Ok(resp) if !resp.status().is_server_error() => {
                let status = resp.status();
                let text = resp.text().await.unwrap_or_default();
                bail!("{url_path}: {status} {text}");
            }
            _ => {
                retried = true;
                *current = (*current + 1) % endpoints.len();
                if attempt >= endpoints.len() {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
    bail!("{url_path}: no replica acknowledged it")
}

fn pct_ms(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

pub(crate) async fn run(args: &Args) -> anyhow::Result<()> {
    let ca_file = args.ca_file.as_ref().context("--ca-file is needed")?;
    let client = client(&std::fs::read(ca_file)?)?;
    let endpoints = args.endpoints.clone();
    if endpoints.len() < 2 {
        bail!("--endpoints needs two replicas or more");
    }
    let kill_pid = args.kill_pid.context("--kill-pid is needed")?;
    if args.kill_index >= endpoints.len() {
        bail!("--kill-index is a place in --endpoints");
    }
    let survivor = endpoints[(args.kill_index + 1) % endpoints.len()].clone();
    let token = args.token.clone().context("--token is needed")?;
    let operator = args
        .operator_token
        .clone()
        .context("--operator-token is needed")?;
    let sub = args
        .subscription
        .clone()
        .context("--subscription is needed")?;
    let prefix = args.prefix.clone();
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
    let path_of = move |i: usize| {
        format!(
            "/subscriptions/{sub}/resourceGroups/failover-{}/providers/Microsoft.ContainerInstance/containerGroups/{}{i}?api-version=2023-05-01",
            i % 16,
            prefix
        )
    };

    let base = placed(&client, &survivor, &operator).await?;
    let watch = Arc::new(Watch::default());
    let sampler = tokio::spawn(sample(
        client.clone(),
        survivor.clone(),
        operator.clone(),
        watch.clone(),
    ));

    let started = Instant::now();
    let killer = {
        let watch = watch.clone();
        let after = Duration::from_secs_f64(args.kill_after_secs);
        tokio::spawn(async move {
            tokio::time::sleep_until((started + after).into()).await;
            let status = tokio::process::Command::new("kill")
                .args(["-KILL", &kill_pid.to_string()])
                .status()
                .await?;
            if !status.success() {
                bail!("kill -KILL {kill_pid} failed");
            }
            // Gone once /proc no longer has it (or it is a zombie of the script's).
            for _ in 0..500 {
                let stat = std::fs::read_to_string(format!("/proc/{kill_pid}/stat"));
                if stat.map_or(true, |s| {
                    s.rsplit_once(") ").is_some_and(|(_, r)| r.starts_with('Z'))
                }) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            watch.killed_ms.store(now_ms(), Ordering::Relaxed);
            Ok::<_, anyhow::Error>(started.elapsed())
        })
    };

    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for worker in 0..args.concurrency {
        let (client, next, body, endpoints, token) = (
            client.clone(),
            next.clone(),
            body.clone(),
            endpoints.clone(),
            token.clone(),
        );
        let (total, rate, path_of) = (args.groups, args.rate, path_of.clone());
        workers.push(tokio::spawn(async move {
            let mut current = worker % endpoints.len();
            let mut acks = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return Ok::<_, anyhow::Error>(acks);
                }
                let slot = started + Duration::from_secs_f64(i as f64 / rate);
                tokio::time::sleep_until(slot.into()).await;
                let sent = Instant::now();
                let (by, retried) = create(
                    &client,
                    &endpoints,
                    &mut current,
                    &path_of(i),
                    &token,
                    &body,
                )
                .await?;
                acks.push(Ack {
                    name: path_of(i),
                    by,
                    took: sent.elapsed(),
                    retried,
                });
            }
        }));
    }
    let mut acks: Vec<Ack> = Vec::with_capacity(args.groups);
    for w in workers {
        acks.extend(w.await??);
    }
    let killed_after = killer.await??;
    let killed = watch.killed_ms.load(Ordering::Relaxed);

    // Every acknowledged create placed (some unacknowledged ones may have been committed too).
    let deadline = Instant::now() + Duration::from_secs(300);
    let target = base + acks.len() as u64;
    while placed(&client, &survivor, &operator).await? < target {
        if Instant::now() > deadline {
            bail!("the acknowledged groups were not all placed after 300 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Every node heard again, or 60 s after the kill.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let heard_all =
            watch.heard.lock().map_or(0, |h| h.len()) >= watch.nodes.load(Ordering::Relaxed);
        if heard_all || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    watch.done.store(true, Ordering::Relaxed);
    sampler.await?;

    // Lost: acknowledged, yet not there.
    let lost = Arc::new(AtomicUsize::new(0));
    let names = Arc::new(Mutex::new(
        acks.iter().map(|a| a.name.clone()).collect::<Vec<_>>(),
    ));
    let mut checkers = Vec::new();
    for _ in 0..32 {
        let (client, names, lost, survivor, token) = (
            client.clone(),
            names.clone(),
            lost.clone(),
            survivor.clone(),
            token.clone(),
        );
        checkers.push(tokio::spawn(async move {
            loop {
                let Some(name) = names.lock().ok().and_then(|mut n| n.pop()) else {
                    return Ok::<_, anyhow::Error>(());
                };
                let resp = client
                    .get(format!("{survivor}{name}"))
                    .bearer_auth(&token)
                    .send()
                    .await?;
                match resp.status().as_u16() {
                    200 => {}
                    404 => {
                        lost.fetch_add(1, Ordering::Relaxed);
                        eprintln!("lost: {name}");
                    }
                    other => bail!("GET {name}: {other}"),
                }
            }
        }));
    }
    for c in checkers {
        c.await??;
    }

    let samples = watch.samples.lock().map(|s| s.clone()).unwrap_or_default();
    let by_killed = acks.iter().filter(|a| a.by == args.kill_index).count();
    let retried = acks.iter().filter(|a| a.retried).count();
    let longest = acks.iter().map(|a| a.took).max().unwrap_or_default();
    println!(
        "-- {} creates at {:.0}/s from {} workers over {} replicas; replica {} (pid {kill_pid}) SIGKILLed at +{:.2} s",
        args.groups,
        args.rate,
        args.concurrency,
        endpoints.len(),
        args.kill_index,
        killed_after.as_secs_f64()
    );
    match gap(&samples, killed) {
        Some((last, Some(first))) => println!(
            "placements: last before the kill seen at {:+.3} s, first after at {:+.3} s: gap {:.2} s (target ≤ 5 s)",
            (last - killed) as f64 / 1000.0,
            (first - killed) as f64 / 1000.0,
            (first - last) as f64 / 1000.0
        ),
        Some((last, None)) => println!(
            "placements: last before the kill seen at {:+.3} s, NONE after it",
            (last - killed) as f64 / 1000.0
        ),
        None => println!("placements: no sample of the survivor after the kill"),
    }
    println!(
        "creates: {} acknowledged ({by_killed} by the killed replica), {} lost (target 0); {retried} sent again to another replica; longest create {:.0} ms",
        acks.len(),
        lost.load(Ordering::Relaxed),
        longest.as_secs_f64() * 1000.0
    );
    let mut reconnects: Vec<i64> = watch
        .heard
        .lock()
        .map(|h| h.values().map(|beat| beat - killed).collect())
        .unwrap_or_default();
    reconnects.sort_unstable();
    println!(
        "agents: {} of {} nodes heard by the survivor after the kill; p50 {:.2} s, max {:.2} s after it",
        reconnects.len(),
        watch.nodes.load(Ordering::Relaxed),
        pct_ms(&reconnects, 0.5) as f64 / 1000.0,
        pct_ms(&reconnects, 1.0) as f64 / 1000.0
    );
    if lost.load(Ordering::Relaxed) > 0 {
        bail!("acknowledged creates were lost");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(asked_ms: i64, answered_ms: i64, placed: u64) -> Sample {
        Sample {
            asked_ms,
            answered_ms,
            placed,
        }
    }

    #[test]
    fn the_gap_runs_from_the_last_placement_seen_before_the_kill_to_the_first_after() {
        let samples = [
            s(780, 800, 6),
            s(880, 900, 7),
            // Asked before the kill: the dying replica may still have placed after this read.
            s(990, 1050, 7),
            s(1190, 1200, 7),
            s(4190, 4200, 8),
        ];
        assert_eq!(gap(&samples, 1000), Some((900, Some(4200))));
        assert_eq!(gap(&samples[..4], 1000), Some((900, None)));
        assert_eq!(gap(&samples[..2], 1000), None);
    }
}
