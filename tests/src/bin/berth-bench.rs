//! `berth-bench placement`: drives a running apiserver over HTTPS and reports placements per second
//! and create-acknowledgement latency. Started by `scripts/bench placement`, which also starts the
//! apiserver and the hollow nodes.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Parser;
use serde_json::{Value, json};

/// Load generator for Berth benchmarks.
#[derive(Debug, Parser)]
struct Args {
    /// HTTPS endpoint of the apiserver.
    #[arg(long)]
    endpoint: String,
    /// CA certificate (PEM).
    #[arg(long)]
    ca_file: std::path::PathBuf,
    /// Tenant token.
    #[arg(long)]
    token: String,
    /// Operator token (reads node allocations to see placements).
    #[arg(long)]
    operator_token: String,
    /// Subscription of the tenant token.
    #[arg(long)]
    subscription: String,
    /// Groups to create.
    #[arg(long, default_value_t = 20_000)]
    groups: usize,
    /// Concurrent requests in flight.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Prefix of group names, so several runs can share a cluster.
    #[arg(long, default_value = "g")]
    prefix: String,
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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let ca = std::fs::read(&args.ca_file)
        .with_context(|| format!("while reading {}", args.ca_file.display()))?;
    let client = client(&ca)?;
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

    let base = placed(&client, &args.endpoint, &args.operator_token).await?;
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..args.concurrency {
        let (client, next, body) = (client.clone(), next.clone(), body.clone());
        let prefix = args.prefix.clone();
        let (endpoint, token, sub, total) = (
            args.endpoint.clone(),
            args.token.clone(),
            args.subscription.clone(),
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
    let mut done = placed(&client, &args.endpoint, &args.operator_token).await?;
    while done < target {
        if Instant::now() > deadline {
            bail!(
                "only {} of {} groups placed after 300 s",
                done - base,
                args.groups
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        done = placed(&client, &args.endpoint, &args.operator_token).await?;
    }
    let all_placed = started.elapsed();
    latencies.sort();
    println!(
        "-- {} groups, {} requests in flight",
        args.groups, args.concurrency
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
    Ok(())
}
