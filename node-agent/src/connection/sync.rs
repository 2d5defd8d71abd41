//! The `Sync` stream: `Hello`, then deltas both ways, heartbeats, and reconnects: to the next of the
//! known apiserver replicas at once, with back-off only once each has failed ([`Rotation`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use berth_proto::clock::now_ms;
use berth_proto::node::agent_report::Body;
use berth_proto::node::node_service_client::NodeServiceClient;
use berth_proto::node::{AgentReport, GroupStatus, Heartbeat, Hello, Resources};
use rand::Rng;
use rustls::ClientConfig;
use tokio::sync::mpsc;
use tokio::time::MissedTickBehavior;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

use super::RECONNECT;
use super::dial::{ServerAddr, dial};
use super::servers::{Rotation, Servers};
use super::silence::Silence;
use crate::sampling::Outgoing;
use crate::supervisor::Supervisor;

/// The agent's version, reported in `Hello` and `Join`.
pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The largest `DesiredState` accepted (a full state of a busy node).
const MAX_MESSAGE: usize = 64 * 1024 * 1024;
/// Reports queued towards the server before the session waits.
const OUTBOX: usize = 256;

/// Why a session ended, other than shutdown.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The server could not be reached.
    #[error("cannot reach the apiserver")]
    Dial(#[source] tonic::transport::Error),
    /// The server refused to open the stream.
    #[error("the apiserver refused the Sync stream")]
    Open(#[source] tonic::Status),
    /// The stream failed.
    #[error("the Sync stream failed")]
    Stream(#[source] tonic::Status),
    /// The server ended the stream.
    #[error("the apiserver closed the Sync stream")]
    Closed,
    /// The outgoing half of the stream is gone.
    #[error("the Sync stream no longer accepts reports")]
    Outbox,
    /// No apiserver was heard for `--fence-after`: the node fenced itself.
    #[error("no apiserver heard for {} s", .0.as_secs())]
    Silent(Duration),
}

/// What a node says about itself on every stream.
#[derive(Debug, Clone)]
pub struct NodeFacts {
    /// Capacity reported in `Hello`.
    pub capacity: Resources,
    /// Labels reported in `Hello`.
    pub labels: HashMap<String, String>,
    /// How often to heartbeat.
    pub heartbeat: Duration,
    /// Where the node serves `AgentService` (`https://…`); empty if it does not.
    pub agent_endpoint: String,
    /// This start's number ([`crate::identity::next_report_epoch`]): reports are numbered from
    /// `epoch << 32`, so numbers never repeat across restarts.
    pub report_epoch: u64,
    /// Stop every group after this long without a `DesiredState` from any apiserver; `None`: never.
    pub fence_after: Option<Duration>,
}

/// How many heartbeat intervals fencing waits at least: the answers to three heartbeats in a row must
/// be missing, however short `--fence-after` is.
const FENCE_MIN_HEARTBEATS: u32 = 3;

/// The silence after which the node fences: `--fence-after`, but never under three heartbeats.
fn fence_after(facts: &NodeFacts) -> Option<Duration> {
    let after = facts.fence_after?;
    let floor = facts.heartbeat.saturating_mul(FENCE_MIN_HEARTBEATS);
    if after < floor {
        tracing::warn!(
            ?after,
            heartbeat = ?facts.heartbeat,
            "--fence-after is under three heartbeats; fencing after {floor:?} instead"
        );
    }
    Some(after.max(floor))
}

/// Numbers a node's reports, increasing across reconnects and, through the report epoch, restarts.
#[derive(Debug, Default)]
struct Seq(u64);

impl Seq {
    fn report(&mut self, body: Body) -> AgentReport {
        self.0 += 1;
        AgentReport {
            seq: self.0,
            body: Some(body),
        }
    }
}

/// Keeps one `Sync` stream up until `shutdown`, to one of `servers` at a time, starting each stream
/// over with `Hello` (the node's whole state: level-triggered, whichever replica hears it). A stream
/// that breaks or cannot be opened moves on to the next server at once; once every server has failed
/// in a row, the agent waits a jittered back-off. Groups keep running across reconnects, unless no
/// apiserver is heard for `--fence-after`: then the node fences itself (stops its groups) and, if a
/// stream is up but silent, drops it. The node's samples (`metrics`) go out on whichever stream is
/// up.
pub async fn sync_until_shutdown(
    servers: &Servers,
    tls: &Arc<ClientConfig>,
    facts: &NodeFacts,
    supervisor: &mut Supervisor,
    metrics: &mut Outgoing,
    shutdown: &CancellationToken,
) {
    let mut backoff = RECONNECT.delays();
    let mut seq = Seq(facts.report_epoch << 32);
    let mut round = servers.resolve().await;
    let mut rotation = Rotation::new(round.len());
    // Consecutive failed attempts since the last stream that worked.
    let mut failures: u32 = 0;
    let silence = Silence::new(fence_after(facts));
    loop {
        let server = Arc::clone(&round[rotation.current() % round.len()]);
        let server = &server;
        let mut established = false;
        // Shutdown drops the session wherever it is: that closes the stream, and nothing a session
        // leaves half-done matters to a process that is exiting. So does a silence past
        // `--fence-after`: the stream, if any, carries nothing.
        let error = tokio::select! {
            () = shutdown.cancelled() => return,
            silent = silence.expired() => SyncError::Silent(silent),
            result = run_stream(server, tls, facts, Local { supervisor, metrics }, &mut seq, &mut established, &silence) => match result {
                Ok(never) => match never {},
                Err(error) => error,
            },
        };
        if let SyncError::Silent(silent) = error {
            supervisor.fence(silent).await;
        }
        if established {
            backoff.reset();
            failures = 0;
        }
        failures += 1;
        if !rotation.failed(established) {
            let next = &round[rotation.current() % round.len()];
            tracing::info!(error = %error_chain(&error), %server, %next, "sync stream down; trying the next server");
            // Not at once after a stream that worked: servers that each accept and then drop the
            // stream would otherwise be dialled in a tight loop.
            if established {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(RECONNECT.initial) => {}
                    silent = silence.expired() => supervisor.fence(silent).await,
                }
            }
            continue;
        }
        let delay = backoff.next_delay();
        if should_warn(failures) {
            tracing::warn!(error = %error_chain(&error), %server, failures, ?delay, "sync stream down; reconnecting");
        } else {
            tracing::debug!(error = %error_chain(&error), %server, failures, ?delay, "sync stream down; reconnecting");
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(delay) => {}
            silent = silence.expired() => supervisor.fence(silent).await,
        }
        round = servers.resolve().await;
        rotation.resize(round.len());
    }
}

/// Whether the `attempt`-th consecutive failure is worth a warning: the first and every 20th, so
/// thousands of nodes waiting for a server that is down do not flood the log.
pub(crate) fn should_warn(attempt: u32) -> bool {
    attempt == 1 || attempt.is_multiple_of(20)
}

/// `error` and its sources, joined with ": ". A source that says exactly what the error above it said
/// (tonic's wrappers display their inner error and also return it as the source) is said once.
pub(crate) fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut last = error.to_string();
    let mut text = last.clone();
    let mut source = error.source();
    while let Some(inner) = source {
        let said = inner.to_string();
        if said != last {
            text.push_str(": ");
            text.push_str(&said);
            last = said;
        }
        source = inner.source();
    }
    text
}

/// What of the node a stream serves: its supervisor (desired states in, statuses out) and its samples.
struct Local<'a> {
    supervisor: &'a mut Supervisor,
    metrics: &'a mut Outgoing,
}

/// One stream, from dial to break: it only ever ends in an error. `established` is set once the
/// server has answered with a desired state.
async fn run_stream(
    server: &Arc<ServerAddr>,
    tls: &Arc<ClientConfig>,
    facts: &NodeFacts,
    local: Local<'_>,
    seq: &mut Seq,
    established: &mut bool,
    silence: &Silence,
) -> Result<std::convert::Infallible, SyncError> {
    let Local {
        supervisor,
        metrics,
    } = local;
    let channel = dial(server, Arc::clone(tls))
        .await
        .map_err(SyncError::Dial)?;
    let mut client = NodeServiceClient::new(channel).max_decoding_message_size(MAX_MESSAGE);
    let (outbox, requests) = mpsc::channel(OUTBOX);
    let hello = seq.report(Body::Hello(Hello {
        capacity: Some(facts.capacity.clone()),
        groups: supervisor.hello_groups(),
        agent_version: AGENT_VERSION.to_string(),
        labels: facts.labels.clone(),
        agent_endpoint: facts.agent_endpoint.clone(),
    }));
    outbox.send(hello).await.map_err(|_| SyncError::Outbox)?;
    let response = client
        .sync(ReceiverStream::new(requests))
        .await
        .map_err(SyncError::Open)?;
    let mut inbound = response.into_inner();
    tracing::info!(server = %server, "sync stream open");

    let changes = supervisor.changes().clone();
    // The first heartbeat at a random point of the interval spreads many nodes' heartbeats out.
    let first = rand::rng().random_range(Duration::ZERO..=facts.heartbeat);
    let mut heartbeat =
        tokio::time::interval_at(tokio::time::Instant::now() + first, facts.heartbeat);
    heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);

    loop {
        let statuses: Vec<GroupStatus> = tokio::select! {
            biased;
            message = inbound.message() => match message.map_err(SyncError::Stream)? {
                Some(desired) => {
                    *established = true;
                    silence.heard();
                    tracing::debug!(
                        seq = desired.seq,
                        full = desired.full,
                        groups = desired.groups.len(),
                        removed = desired.removed.len(),
                        "desired state"
                    );
                    supervisor.apply(desired).await
                }
                None => return Err(SyncError::Closed),
            },
            ids = changes.next() => supervisor.on_changes(ids).await,
            metrics = metrics.next() => {
                tracing::debug!(groups = metrics.groups.len(), "metrics");
                let report = seq.report(Body::Metrics(metrics));
                outbox.send(report).await.map_err(|_| SyncError::Outbox)?;
                continue;
            }
            _ = heartbeat.tick() => {
                let beat = seq.report(Body::Heartbeat(Heartbeat { node_time_unix_ms: now_ms() }));
                outbox.send(beat).await.map_err(|_| SyncError::Outbox)?;
                continue;
            }
        };
        for status in statuses {
            tracing::debug!(group = %status.group_id, generation = status.generation, phase = ?status.phase(), "status");
            outbox
                .send(seq.report(Body::Group(status)))
                .await
                .map_err(|_| SyncError::Outbox)?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("{text}")]
    struct Layer {
        text: &'static str,
        #[source]
        inner: Option<Box<Layer>>,
    }

    #[test]
    fn error_chains_say_each_thing_once() {
        let error = Layer {
            text: "outer",
            inner: Some(Box::new(Layer {
                text: "middle",
                inner: Some(Box::new(Layer {
                    text: "middle",
                    inner: Some(Box::new(Layer {
                        text: "root",
                        inner: None,
                    })),
                })),
            })),
        };
        assert_eq!(error_chain(&error), "outer: middle: root");
    }

    #[test]
    fn only_the_first_and_every_twentieth_failure_warns() {
        let warned: Vec<u32> = (1..=45).filter(|&n| should_warn(n)).collect();
        assert_eq!(warned, [1, 20, 40]);
    }
}
