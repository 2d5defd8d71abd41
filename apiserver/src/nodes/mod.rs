//! The node gateway: everything the apiserver says to its nodes and hears from them, one job per
//! module:
//! - `service`: the gRPC `NodeService` agents call (Join, Sync); it authenticates, parses and hands
//!   each message to the modules below.
//! - `sessions`: the live Sync streams (an epoch per connection) and the `DesiredState`s sent down
//!   them.
//! - `assignments`: a group's record and sealed spec into the `GroupAssignment` a node runs.
//! - `reports`: the queue and the writer that folds node reports into the store in batches.
//! - `samples`: the nodes' measurements checked and written to the store in batches (bounded: a
//!   store behind loses samples, never reports).
//! - `liveness`: when each node was last heard from, the monitor marking silent nodes NotReady and
//!   the heartbeat writer.
//! - `lost`: the monitor's second judgement: nodes silent past `--node-lost-after` are lost, their
//!   groups taken off them and placed elsewhere.
//! - `evacuation`: what follows groups being taken off a node (lost, drained, deleted): the node
//!   told to remove them, the scheduler and the DNS zone told; a deleted node's stream closed.
//! - `capacity`: the distinct node sizes per OS ("could any node ever hold this?"), re-read from
//!   the store on a miss.
//! - `endpoints`: where each agent serves `AgentService` (in the store, for every replica).
//! - `relay`: what other replicas send over the bus for this one's streams (assignments, node
//!   joins) and the resync after events may have been missed.
//!
//! With several replicas a node streams to one of them: the gateway sends every change for a node
//! both down a stream of its own (if the node streams here) and over the bus as the group ids, and
//! the replica holding the node's stream builds the assignments from the store and sends them.
//! [`NodeGateway`] is the handle the rest of the apiserver holds: the HTTP side refreshes and removes
//! groups through it, and the scheduler hands it committed placements as a
//! [`PlacementSink`](crate::handoff::PlacementSink). It tells the scheduler of nodes turning Ready or
//! NotReady through the [`SchedulerHandle`]; it does not know the scheduler otherwise.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::cluster::{Event, Replica};
use crate::handoff::{PlacementSink, SchedulerHandle};
use crate::model::{OsType, Size};
use crate::secrets::SecretBox;
use crate::store::{Placement, Store, StoreError};
use crate::tls::ClusterCa;

mod assignments;
mod capacity;
mod endpoints;
mod evacuation;
mod liveness;
mod lost;
mod relay;
mod reports;
mod samples;
mod service;
mod sessions;

use assignments::Assignments;
use capacity::Capacities;
use endpoints::Endpoints;
use reports::ReportQueue;
use samples::SampleQueue;
use sessions::Sessions;

struct Inner {
    store: Arc<dyn Store>,
    ca: Arc<ClusterCa>,
    heartbeat_interval_ms: u32,
    sessions: Sessions,
    liveness: liveness::Tracker,
    capacities: Capacities,
    endpoints: Endpoints,
    assignments: Assignments,
    /// Node reports and clocks on their way to the store.
    reports: ReportQueue,
    /// Node samples on their way to the store.
    samples: SampleQueue,
    /// The other replicas, and whether this one leads (runs the liveness monitor).
    replica: Replica,
    /// Told when nodes change (Ready, NotReady, lost, drained): capacity to re-read, groups to place.
    scheduler: SchedulerHandle,
    /// Poked when groups leave a node (their addresses leave the zone).
    zone_dirty: crate::dns::ZoneDirty,
    /// Ends every Sync stream when the apiserver stops, so graceful shutdown does not wait on them.
    shutdown: CancellationToken,
}

/// Cheap handle to the gateway; clones share everything.
#[derive(Clone)]
pub struct NodeGateway {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for NodeGateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeGateway").finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// How often nodes beat, how long the gateway waits for a beat before a node is NotReady, and how
/// long before it is lost (its groups placed elsewhere; more than `node_timeout`).
#[derive(Debug, Clone, Copy)]
pub struct Liveness {
    pub heartbeat_interval_ms: u32,
    pub node_timeout: Duration,
    pub node_lost_after: Duration,
}

/// Whom the gateway tells of what it hears: the scheduler (capacity), the DNS publisher (reports)
/// and the other replicas.
#[derive(Clone)]
pub struct Listeners {
    pub scheduler: SchedulerHandle,
    pub zone_dirty: crate::dns::ZoneDirty,
    pub replica: Replica,
}

impl NodeGateway {
    pub async fn new(
        store: Arc<dyn Store>,
        ca: Arc<ClusterCa>,
        secrets: Arc<SecretBox>,
        Liveness {
            heartbeat_interval_ms,
            node_timeout,
            node_lost_after,
        }: Liveness,
        Listeners {
            scheduler,
            zone_dirty,
            replica,
        }: Listeners,
        advertised_dns: Option<std::net::IpAddr>,
        shutdown: CancellationToken,
    ) -> Result<Self, StoreError> {
        let known = store.nodes().await?;
        let capacities = Capacities::new(store.clone());
        for node in &known {
            capacities.remember(node.os_type, node.capacity);
        }
        let reports = ReportQueue::start(store.clone(), zone_dirty.clone(), shutdown.clone());
        let samples = SampleQueue::start(store.clone(), shutdown.clone());
        let liveness = liveness::Tracker::new(
            store.clone(),
            scheduler.clone(),
            reports.clone(),
            liveness::Timeouts {
                not_ready: node_timeout,
                lost: node_lost_after,
            },
            &known,
        );
        let heard = replica.bus.subscribe();
        let gateway = Self {
            inner: Arc::new(Inner {
                assignments: Assignments::new(store.clone(), secrets),
                endpoints: Endpoints::new(store.clone()),
                store,
                ca,
                heartbeat_interval_ms,
                sessions: Sessions::new(advertised_dns),
                liveness,
                capacities,
                reports,
                samples,
                replica,
                scheduler,
                zone_dirty,
                shutdown: shutdown.clone(),
            }),
        };
        tokio::spawn(gateway.clone().relay(heard, shutdown));
        Ok(gateway)
    }

    /// A node of `size` running `os` joined (through this replica): every replica learns it.
    fn joined(&self, os: OsType, size: Size) {
        self.inner.capacities.remember(os, size);
        self.inner
            .replica
            .bus
            .publish(Event::NodeJoined { os, size });
    }

    /// Tells the replica holding `node_id`'s stream (maybe another) of groups to send or remove.
    fn tell_peers(&self, node_id: &str, upserted: Vec<String>, removed: Vec<String>) {
        self.inner.replica.bus.publish(Event::Assign {
            node: node_id.to_owned(),
            upserted,
            removed,
        });
    }

    /// Whether some joined node (Ready or not, joined through any replica) is large enough for
    /// `request` at all.
    pub async fn could_ever_fit(&self, os: OsType, request: &Size) -> Result<bool, StoreError> {
        self.inner.capacities.could_ever_fit(os, request).await
    }

    /// Re-sends one group's assignment (new generation: restart, update).
    pub async fn refresh(&self, node_id: &str, group_id: &str) {
        self.tell_peers(node_id, vec![group_id.to_owned()], Vec::new());
        if !self.inner.sessions.has(node_id) {
            return;
        }
        match self.inner.assignments.one(group_id).await {
            Ok(Some(a)) => self.inner.sessions.send(node_id, vec![a], Vec::new()),
            Ok(None) => {}
            Err(err) => tracing::error!(error = %err, group = %group_id, "cannot build assignment"),
        }
    }

    /// Tells a node to tear a group down.
    pub fn remove(&self, node_id: &str, group_id: &str) {
        self.tell_peers(node_id, Vec::new(), vec![group_id.to_owned()]);
        self.inner
            .sessions
            .send(node_id, Vec::new(), vec![group_id.to_owned()]);
    }

    /// Where node `node_id` serves `AgentService`, as its latest `Hello` (to any replica) said;
    /// `None` if it serves none or has not said. Kept after the stream breaks: the agent's service
    /// may well outlive a Sync stream, and a dead one is answered as unreachable.
    pub async fn agent_endpoint(&self, node_id: &str) -> Result<Option<String>, StoreError> {
        self.inner.endpoints.get(node_id).await
    }

    /// Node ids with a live Sync stream.
    pub fn connected(&self) -> Vec<String> {
        self.inner.sessions.connected()
    }

    /// The node's last message (apiserver clock) as this process knows it: newer than the store's
    /// by up to a heartbeat write interval. `None` for a node it does not know.
    pub fn last_heartbeat(&self, node_id: &str) -> Option<i64> {
        self.inner.liveness.last_heartbeat(node_id)
    }

    /// While this replica leads, marks nodes NotReady once they have been silent for the timeout,
    /// and loses them (their groups placed elsewhere) once silent for `node_lost_after`. Runs until
    /// shutdown.
    pub async fn monitor(self, shutdown: CancellationToken) {
        let leadership = self.inner.replica.leadership.clone();
        self.inner
            .liveness
            .monitor(leadership, &self, shutdown)
            .await;
    }

    /// Writes the heartbeats that moved every `every` until shutdown, and once more then.
    pub async fn record_heartbeats(self, every: Duration, shutdown: CancellationToken) {
        self.inner.liveness.record_heartbeats(every, shutdown).await;
    }
}

impl PlacementSink for NodeGateway {
    /// Sends new placements to their nodes, one delta per node: down the streams here, and over the
    /// bus for every node (its stream may be on another replica).
    async fn placed(&self, placements: Vec<Placement>) {
        let mut ids_by_node: std::collections::BTreeMap<&str, Vec<String>> = Default::default();
        for p in &placements {
            ids_by_node
                .entry(p.node_id.as_str())
                .or_default()
                .push(p.group_id.clone());
        }
        for (node_id, ids) in ids_by_node {
            self.tell_peers(node_id, ids, Vec::new());
        }
        let here: Vec<Placement> = placements
            .into_iter()
            .filter(|p| self.inner.sessions.has(&p.node_id))
            .collect();
        if here.is_empty() {
            return;
        }
        let placements = here;
        let by_node = match self.inner.assignments.placed(&placements).await {
            Ok(by_node) => by_node,
            Err(err) => {
                // The nodes get these groups with their next full state (on reconnect).
                tracing::error!(error = %err, groups = placements.len(), "cannot build assignments");
                return;
            }
        };
        for (node_id, groups) in by_node {
            self.inner.sessions.send(&node_id, groups, Vec::new());
        }
    }
}
