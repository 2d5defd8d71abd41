//! The hostile-input suite: a deterministic generator (fixed seed) mutates valid ACI bodies, query
//! strings, paths and headers, and sends a few thousand requests over real HTTPS, alternating HTTP/1.1
//! and HTTP/2, to one cluster with no node. It asserts: never a 5xx; every non-2xx answer in ACI's
//! error shape with a non-empty `code` and `message`; a rejected PUT leaves nothing (its group reads
//! 404, the subscription's list holds only what was accepted); no panic on the apiserver's threads
//! and no error in its log.
//!
//! `BERTH_HOSTILE_SEED` and `BERTH_HOSTILE_CASES` change the seed and the number of cases; a failure
//! names its case, which the same seed regenerates.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use reqwest::Method;
use serde_json::Value;
use tracing_subscriber::layer::SubscriberExt as _;

mod generate;

use generate::{Case, Token, bases, generate, group_url};

use crate::harness::{Cluster, SUB};
use crate::wire::{self, Proto};

const SEED: u64 = 0x00be_27b0_57de;
const CASES: usize = 6000;
const IN_FLIGHT: usize = 8;
const RG: &str = "rg-hostile";
/// The apiserver's threads, so panics elsewhere (other tests) are not counted.
const THREADS: &str = "berth-hostile";

/// What the apiserver's threads did wrong: panics and error-level events.
#[derive(Default)]
struct Incidents(Mutex<Vec<String>>);

impl Incidents {
    fn push(&self, what: String) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(what);
    }

    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

struct ErrorEvents(Arc<Incidents>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for ErrorEvents {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        if *event.metadata().level() <= tracing::Level::WARN {
            let mut fields = String::new();
            event.record(
                &mut |field: &tracing::field::Field, value: &dyn std::fmt::Debug| {
                    fields.push_str(&format!(" {}={value:?}", field.name()));
                },
            );
            let line = format!(
                "{} {}:{fields}",
                event.metadata().level(),
                event.metadata().target()
            );
            eprintln!("LOG {line}");
            if *event.metadata().level() == tracing::Level::ERROR || fields.contains("panic") {
                self.0.push(line);
            }
        }
    }
}

thread_local! {
    static LOG: RefCell<Option<tracing::dispatcher::DefaultGuard>> = const { RefCell::new(None) };
}

/// A runtime whose threads are named [`THREADS`] and log into `incidents`.
fn server_runtime(incidents: Arc<Incidents>) -> tokio::runtime::Runtime {
    let dispatch =
        tracing::Dispatch::new(tracing_subscriber::registry().with(ErrorEvents(incidents)));
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(THREADS)
        .enable_all()
        .on_thread_start(move || {
            let guard = tracing::dispatcher::set_default(&dispatch);
            LOG.with(|log| *log.borrow_mut() = Some(guard));
        })
        .on_thread_stop(|| LOG.with(|log| drop(log.borrow_mut().take())))
        .build()
        .expect("runtime")
}

fn install_panic_hook(incidents: Arc<Incidents>) {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if std::thread::current()
            .name()
            .is_some_and(|n| n.starts_with(THREADS))
        {
            incidents.push(format!("panic: {info}"));
        }
        previous(info);
    }));
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn hostile_input_never_breaks_the_apiserver() {
    let seed: u64 = env_or("BERTH_HOSTILE_SEED", SEED);
    let cases: usize = env_or("BERTH_HOSTILE_CASES", CASES);
    let incidents = Arc::new(Incidents::default());
    install_panic_hook(incidents.clone());
    let server = server_runtime(incidents.clone());
    // The detectors detect: a panic and an error on the apiserver's threads are both seen.
    let panicked = server.block_on(server.spawn(async { panic!("hostile self-check (expected)") }));
    assert!(panicked.is_err_and(|e| e.is_panic()));
    server
        .block_on(server.spawn(async { tracing::error!("hostile self-check") }))
        .expect("logs");
    let seen = incidents.take();
    assert!(
        seen.len() == 2 && seen.iter().all(|i| i.contains("hostile self-check")),
        "the detectors missed: {seen:?}"
    );
    let (cluster, tenant) = server.block_on(async {
        let cluster = Cluster::start().await;
        let tenant = cluster.tenant(&[SUB]).await;
        (cluster, tenant.token().to_owned())
    });
    let client = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let started = Instant::now();
    let report = client.block_on(run(&cluster, &tenant, seed, cases));
    let elapsed = started.elapsed();
    // Its connections close with it (their tasks live there).
    drop(client);
    // A graceful stop, so that its log counts too; the data dir goes only after the runtime.
    let stopped = server.block_on(cluster.stop());
    let incidents = incidents.take();
    server.shutdown_timeout(Duration::from_secs(5));
    drop(stopped);

    println!(
        "hostile: {cases} cases (seed {seed:#x}) in {:.1} s; answers by status: {:?}; accepted: {}",
        elapsed.as_secs_f64(),
        report.statuses,
        report.accepted
    );
    assert!(
        report.failures.is_empty() && incidents.is_empty(),
        "{} failures:\n{}\n{} apiserver incidents:\n{}",
        report.failures.len(),
        report
            .failures
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n"),
        incidents.len(),
        incidents
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n"),
    );
}

#[derive(Default)]
struct Report {
    statuses: BTreeMap<u16, usize>,
    failures: Vec<String>,
    accepted: usize,
}

struct Clients {
    base: String,
    h1: reqwest::Client,
    h2: reqwest::Client,
    tenant: String,
    operator: String,
}

impl Clients {
    fn client(&self, index: usize) -> &reqwest::Client {
        if index.is_multiple_of(2) {
            &self.h1
        } else {
            &self.h2
        }
    }

    fn token(&self, token: Token) -> &str {
        match token {
            Token::Tenant => &self.tenant,
            Token::Operator => &self.operator,
        }
    }

    async fn get(&self, index: usize, path: &str) -> Result<(u16, Value), String> {
        let resp = self
            .client(index)
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.tenant)
            .send()
            .await
            .map_err(|e| format!("GET {path}: {e:?}"))?;
        let status = resp.status().as_u16();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| format!("GET {path} body: {e:?}"))?;
        Ok((
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        ))
    }
}

/// Checks one answer; `Err` says what was wrong.
fn check_answer(status: u16, bytes: &[u8]) -> Result<(), String> {
    if status >= 500 {
        return Err(format!(
            "status {status}: {}",
            String::from_utf8_lossy(bytes)
        ));
    }
    if (200..300).contains(&status) {
        return Ok(());
    }
    let body: Value = serde_json::from_slice(bytes).map_err(|_| {
        format!(
            "status {status}, not JSON: {:?}",
            String::from_utf8_lossy(bytes)
        )
    })?;
    let error = &body["error"];
    let nonempty = |v: &Value| v.as_str().is_some_and(|s| !s.is_empty());
    if !nonempty(&error["code"]) || !nonempty(&error["message"]) {
        return Err(format!("status {status}, not ACI's error shape: {body}"));
    }
    if body.as_object().is_some_and(|o| o.len() != 1) {
        return Err(format!(
            "status {status}, more than `error` at the top: {body}"
        ));
    }
    Ok(())
}

async fn one(clients: &Clients, case: &Case) -> Result<(u16, bool), String> {
    let mut req = clients
        .client(case.index)
        .request(
            case.method.clone(),
            format!("{}{}", clients.base, case.path),
        )
        .bearer_auth(clients.token(case.token));
    if let Some(ct) = case.content_type {
        req = req.header("content-type", ct);
    }
    if let Some(body) = &case.body {
        req = req.body(body.clone());
    }
    let resp = req.send().await.map_err(|e| format!("no answer: {e:?}"))?;
    let status = resp.status().as_u16();
    let bytes = resp
        .bytes()
        .await
        .map_err(|e| format!("no whole body: {e:?}"))?;
    check_answer(status, &bytes)?;
    let accepted = (200..300).contains(&status);
    if case.method == Method::PUT
        && !accepted
        && let Some(url) = &case.creates
    {
        let (status, body) = clients
            .get(case.index, &format!("{url}?api-version=2023-05-01"))
            .await?;
        if status != 404 {
            return Err(format!(
                "rejected PUT left a group: GET answered {status} {body}"
            ));
        }
    }
    Ok((
        status,
        accepted && case.method == Method::PUT && case.creates.is_some(),
    ))
}

async fn listed(clients: &Clients) -> Result<BTreeSet<String>, String> {
    let mut names = BTreeSet::new();
    let mut next = Some(format!(
        "/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.ContainerInstance/containerGroups?api-version=2023-05-01"
    ));
    while let Some(path) = next.take() {
        let path = path.strip_prefix(&clients.base).unwrap_or(&path).to_owned();
        let (status, body) = clients.get(0, &path).await?;
        if status != 200 {
            return Err(format!("list answered {status}: {body}"));
        }
        for g in body["value"].as_array().into_iter().flatten() {
            names.insert(g["name"].as_str().unwrap_or_default().to_owned());
        }
        next = body["nextLink"].as_str().map(str::to_owned);
    }
    Ok(names)
}

async fn run(cluster: &Cluster, tenant: &str, seed: u64, cases: usize) -> Report {
    let clients = Clients {
        base: cluster.base.clone(),
        h1: wire::client(&cluster.ca_pem, Proto::H1),
        h2: wire::client(&cluster.ca_pem, Proto::H2),
        tenant: tenant.to_owned(),
        operator: cluster.operator.clone(),
    };
    let bases = bases();
    let mut report = Report::default();
    // The starting points are valid: each gets as far as "no node could hold it".
    for (name, body) in &bases {
        let resp = clients
            .h1
            .put(format!(
                "{}{}?api-version=2023-05-01",
                clients.base,
                group_url(SUB, RG, &format!("base-{name}"))
            ))
            .bearer_auth(tenant)
            .json(body)
            .send()
            .await
            .expect("answer");
        let status = resp.status().as_u16();
        let answer: Value = resp.json().await.unwrap_or(Value::Null);
        assert_eq!(
            (status, answer["error"]["code"].as_str()),
            (409, Some("ServiceUnavailable")),
            "base body {name} is not valid: {answer}"
        );
    }
    let mut accepted = BTreeSet::new();
    let mut results = futures::stream::iter(0..cases)
        .map(|index| {
            let case = generate(seed, index, &bases);
            let clients = &clients;
            async move {
                let result = one(clients, &case).await;
                (case, result)
            }
        })
        .buffer_unordered(IN_FLIGHT);
    while let Some((case, result)) = results.next().await {
        match result {
            Ok((status, created)) => {
                *report.statuses.entry(status).or_default() += 1;
                if created && let Some(url) = &case.creates {
                    accepted.insert(url.rsplit('/').next().unwrap_or_default().to_owned());
                }
            }
            Err(why) => report.failures.push(format!(
                "{}: {why}\n    {} {}",
                case.what, case.method, case.path
            )),
        }
    }
    drop(results);
    report.accepted = accepted.len();
    match listed(&clients).await {
        Ok(names) if names == accepted => {}
        Ok(names) => report.failures.push(format!(
            "the list holds {names:?}, but only {accepted:?} were accepted"
        )),
        Err(why) => report.failures.push(why),
    }
    report
}
