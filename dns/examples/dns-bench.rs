//! The DNS server for `scripts/bench dns`, and an in-process timing of the two request paths.
//!
//! ```text
//! dns-bench serve --origin ZONE --records FILE [--udp ADDR] [--tcp ADDR] [--workers N]
//! dns-bench paths --origin ZONE --records FILE --queries FILE [--seconds S]
//! ```
//!
//! `--records`: one name a line, then its addresses (`web.local.berth.internal 10.0.0.5 fd00::5`).
//! `--queries`: dnsperf's format (`web.local.berth.internal A`).
//!
//! `serve` fills a [`Zone`], calls [`serve`] and prints `udp ADDR tcp ADDR` once answering, then
//! runs until SIGTERM or SIGINT. `paths` builds the query messages and times
//! [`Responder::answer`] (fast path first) against [`Responder::answer_general`] (hickory only)
//! on them, without sockets: the CPU cost of a query on each path.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use berth_dns::{Record, Responder, ServerConfig, Transport, Zone, serve};
use tokio_util::sync::CancellationToken;

type Error = Box<dyn std::error::Error>;

fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str| -> Option<String> {
        args.iter()
            .position(|arg| arg == name)
            .and_then(|at| args.get(at + 1).cloned())
    };
    let required = |name: &str| flag(name).ok_or_else(|| format!("{name} is required"));
    let origin = required("--origin")?;
    let zone = Zone::new(&origin);
    zone.replace_all(read_records(&required("--records")?)?)?;
    match args.first().map(String::as_str) {
        Some("serve") => {
            let any = "127.0.0.1:0".to_owned();
            let mut config = ServerConfig::new(
                flag("--udp").unwrap_or_else(|| any.clone()).parse()?,
                flag("--tcp").unwrap_or(any).parse()?,
            );
            config.workers = flag("--workers").map_or(Ok(1), |w| w.parse())?;
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(run(config, zone))
        }
        Some("paths") => {
            let seconds = flag("--seconds").map_or(Ok(2.0), |s| s.parse::<f64>())?;
            time_paths(
                zone,
                &required("--queries")?,
                Duration::from_secs_f64(seconds),
            )
        }
        _ => Err("usage: dns-bench serve|paths --origin ZONE --records FILE …".into()),
    }
}

async fn run(config: ServerConfig, zone: Zone) -> Result<(), Error> {
    let shutdown = CancellationToken::new();
    let running = serve(config, zone, shutdown.clone()).await?;
    println!("udp {} tcp {}", running.udp, running.tcp);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    shutdown.cancel();
    running.wait().await;
    Ok(())
}

fn read_records(path: &str) -> Result<Vec<Record>, Error> {
    let mut records = Vec::new();
    for line in std::fs::read_to_string(path)?.lines() {
        let mut fields = line.split_whitespace();
        let Some(name) = fields.next() else { continue };
        let addresses = fields
            .map(|address| address.parse::<IpAddr>())
            .collect::<Result<_, _>>()?;
        records.push(Record {
            name: name.to_owned(),
            addresses,
        });
    }
    Ok(records)
}

/// A query message for `name` and `qtype` (A, AAAA, …) with the ID `id`.
fn query(id: u16, name: &str, qtype: &str) -> Vec<u8> {
    let qtype: u16 = match qtype {
        "A" => 1,
        "NS" => 2,
        "SOA" => 6,
        "MX" => 15,
        "AAAA" => 28,
        "ANY" => 255,
        other => other.parse().unwrap_or(1),
    };
    let mut bytes = id.to_be_bytes().to_vec();
    bytes.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.') {
        bytes.push(u8::try_from(label.len()).unwrap_or(0));
        bytes.extend_from_slice(label.as_bytes());
    }
    bytes.push(0);
    bytes.extend_from_slice(&qtype.to_be_bytes());
    bytes.extend_from_slice(&[0, 1]);
    bytes
}

fn time_paths(zone: Zone, queries: &str, duration: Duration) -> Result<(), Error> {
    let queries: Vec<Vec<u8>> = std::fs::read_to_string(queries)?
        .lines()
        .zip(0u16..)
        .filter_map(|(line, id)| {
            let mut fields = line.split_whitespace();
            Some(query(id, fields.next()?, fields.next().unwrap_or("A")))
        })
        .collect();
    if queries.is_empty() {
        return Err("no queries".into());
    }
    let any: SocketAddr = "127.0.0.1:0".parse()?;
    let mut responder = Responder::new(&ServerConfig::new(any, any), zone)?;
    let mut out = Vec::with_capacity(512);
    let mut fast = 0;
    for query in &queries {
        fast += usize::from(responder.answer_fast(query, Transport::Udp, &mut out));
    }
    println!(
        "paths: {} queries, {fast} taken by the fast path",
        queries.len()
    );
    for (name, general_only) in [("fast path first", false), ("hickory path only", true)] {
        let started = Instant::now();
        let mut answered = 0u64;
        while started.elapsed() < duration {
            for query in &queries {
                let sent = if general_only {
                    responder.answer_general(query, Transport::Udp, &mut out)
                } else {
                    responder.answer(query, Transport::Udp, &mut out)
                };
                answered += u64::from(sent);
            }
        }
        let elapsed = started.elapsed().as_secs_f64();
        println!(
            "paths: {name}: {:.0} ns/query, {:.0} queries/s on one core (no sockets)",
            elapsed * 1e9 / answered as f64,
            answered as f64 / elapsed
        );
    }
    Ok(())
}
