//! The scheduler: pure placement ([`place`]) and the loop that commits it ([`Scheduler`]).
//!
//! Each round takes every group waiting for a node (oldest first), places them one by one on a private
//! copy of the Ready nodes' free capacity, and commits all placements in one transaction in which each
//! placement reserves its capacity conditionally. A placement that no longer holds (the node filled up
//! or went NotReady, the group was deleted) drops out and is retried next round on fresh numbers, so
//! two schedulers — or a scheduler racing a delete — can never overcommit a node. The committed
//! placements go to a [`PlacementSink`]; news of capacity comes in through the [`SchedulerHandle`]
//! (both in `crate::handoff`, so the scheduler knows nothing of the node gateway).
//!
//! With several replicas only the holder of the leader lease runs rounds
//! ([`Scheduler::with_leadership`]); the others' wake-ups reach it over the bus (see
//! [`SchedulerHandle::linked`]), and it polls every [`POLL`] anyway. Two schedulers at once (a lease
//! handing over mid-round) are safe, only wasteful: the store is the judge.
//!
//! Policy: `pack` (default) puts a group on the feasible node with the least capacity left after it
//! (best fit: fewest nodes in use, big holes kept for big groups); `spread` on the one with the most.
//! Cordoned nodes are no candidates (and the store's commit refuses them too). Each placement adds
//! a `Scheduled` event naming the node; a group that has waited longer than `--pending-timeout`
//! fails instead ([`timed_out`]), as ACI's provisioning timeout fails it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::cluster::{Heard, Leadership};
pub use crate::handoff::{PlacementSink, SchedulerHandle};
use crate::model::{OsType, Size, cpu_cores, memory_gb};
use crate::prometheus::{Attempt, SchedulerMetrics};
use crate::store::{EventKind, GroupEvent, NodeStatus, PendingGroup, Placement, Store};

/// Where groups go when several nodes fit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// Best fit: the feasible node with the least capacity left.
    #[default]
    Pack,
    /// Worst fit: the feasible node with the most capacity left.
    Spread,
}

/// A node as the scheduler sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub id: String,
    /// The node's name, for the group's `Scheduled` event.
    pub name: String,
    pub os_type: OsType,
    pub capacity: Size,
    pub free: Size,
}

/// The decision for one group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Place(Placement),
    /// Nothing fits now; the reason is shown in the group's events.
    Wait {
        group_id: String,
        reason: String,
    },
}

/// The error code of a group that found no node within the provisioning timeout (ACI documents
/// none for it; this names what happened in ACI's style).
pub const PROVISIONING_TIMEOUT: &str = "ContainerGroupProvisioningTimeout";

/// Whether `group` has waited for a node longer than `timeout_ms` at `now_ms`.
pub fn timed_out(group: &PendingGroup, now_ms: i64, timeout_ms: i64) -> bool {
    now_ms.saturating_sub(group.pending_since_ms) > timeout_ms
}

/// Why a group that waited past the provisioning timeout failed: the wait and the last reason it
/// could not be placed.
pub fn timeout_message(group: &PendingGroup, now_ms: i64, timeout_ms: i64) -> String {
    let waited = now_ms.saturating_sub(group.pending_since_ms) / 1000;
    let limit = timeout_ms / 1000;
    match &group.last_reason {
        Some(reason) => format!(
            "The container group waited {waited} s for a node, longer than the provisioning timeout of \
             {limit} s, and failed. The last reason it could not be placed: {reason}"
        ),
        None => format!(
            "The container group waited {waited} s for a node, longer than the provisioning timeout of \
             {limit} s, and failed."
        ),
    }
}

/// The group's event for a placement.
fn scheduled_event(node_name: &str, now_ms: i64) -> GroupEvent {
    GroupEvent {
        name: "Scheduled".to_owned(),
        message: format!("Placed on node {node_name}."),
        kind: EventKind::Normal,
        count: 1,
        first_ms: now_ms,
        last_ms: now_ms,
    }
}

/// Score of the capacity left on a node: the larger of its CPU and memory shares.
fn leftover(node: &Candidate, request: &Size) -> u64 {
    // u64, not u128: a u128 division is a library call, and this runs once per feasible node per
    // group. Millicores and MiB times a million stay far below u64::MAX (saturating regardless).
    let left = node.free.saturating_sub(request);
    let cpu = left.cpu_millis.saturating_mul(1_000_000) / node.capacity.cpu_millis.max(1);
    let mem = left.memory_mib.saturating_mul(1_000_000) / node.capacity.memory_mib.max(1);
    cpu.saturating_add(mem)
}

/// Places `groups` in order on `nodes`, updating each chosen node's free capacity so that later
/// groups of the same round see it. Pure: no I/O, deterministic for the same input.
pub fn place(groups: &[PendingGroup], nodes: &mut [Candidate], policy: Policy) -> Vec<Decision> {
    groups
        .iter()
        .map(|group| {
            let feasible = nodes
                .iter()
                .enumerate()
                .filter(|(_, n)| n.os_type == group.os_type && group.requests.fits_in(&n.free));
            // Ties on leftover go to the smallest node id (pack) or the smallest too (spread's
            // `Reverse`), so a round is deterministic. The id is compared by reference: this runs
            // once per feasible node per group, and a clone each time was most of a round's cost
            // with thousands of nodes.
            let chosen = match policy {
                Policy::Pack => feasible
                    .map(|(index, n)| (leftover(n, &group.requests), &n.id, index))
                    .min(),
                Policy::Spread => feasible
                    .map(|(index, n)| {
                        (
                            leftover(n, &group.requests),
                            std::cmp::Reverse(&n.id),
                            index,
                        )
                    })
                    .max()
                    .map(|(left, std::cmp::Reverse(id), index)| (left, id, index)),
            };
            match chosen {
                Some((_, _, index)) => {
                    let node = &mut nodes[index];
                    node.free = node.free.saturating_sub(&group.requests);
                    Decision::Place(Placement {
                        group_id: group.id.clone(),
                        node_id: node.id.clone(),
                        requests: group.requests,
                        generation: group.generation,
                    })
                }
                None => Decision::Wait {
                    group_id: group.id.clone(),
                    reason: wait_reason(group, nodes),
                },
            }
        })
        .collect()
}

fn wait_reason(group: &PendingGroup, nodes: &[Candidate]) -> String {
    let same_os = nodes.iter().filter(|n| n.os_type == group.os_type).count();
    format!(
        "No Ready {} node has {} CPU, {} GB memory and {} GPU free now ({} node(s) considered); the group is placed \
         when capacity frees.",
        group.os_type.as_str(),
        cpu_cores(group.requests.cpu_millis),
        memory_gb(group.requests.memory_mib),
        group.requests.gpu,
        same_os
    )
}

/// The scheduling loop.
///
/// It keeps its own view of the Ready nodes' free capacity between rounds and subtracts what it
/// places, re-reading the nodes only when that view may be wrong: capacity freed or nodes changed
/// ([`SchedulerHandle::capacity_changed`]), a placement that did not stick, or once a second. The
/// view is only a guess (Omega's optimistic concurrency): the store's conditional reservation is the
/// judge, so a stale view costs a retry, never an overcommit. What it commits goes to `sink` (the
/// node gateway, which tells the nodes).
pub struct Scheduler<S> {
    store: Arc<dyn Store>,
    sink: S,
    handle: SchedulerHandle,
    policy: Policy,
    leadership: Leadership,
    pending_timeout_ms: i64,
    view: Mutex<Option<(Vec<Candidate>, Instant)>>,
    metrics: SchedulerMetrics,
}

/// ACI's provisioning limit: the default `--pending-timeout`.
pub const PENDING_TIMEOUT: Duration = Duration::from_secs(1800);

/// How often the leader's scheduler looks for waiting groups without being woken: a wake-up lost
/// on the bus costs at most this.
pub const POLL: Duration = Duration::from_secs(1);

/// How long the scheduler trusts its node view without news.
const VIEW_TTL: Duration = Duration::from_secs(1);

/// Groups taken per round.
const BATCH: i64 = 2048;

impl<S: PlacementSink> Scheduler<S> {
    pub fn new(store: Arc<dyn Store>, sink: S, handle: SchedulerHandle, policy: Policy) -> Self {
        Self {
            store,
            sink,
            handle,
            policy,
            leadership: Leadership::always(),
            pending_timeout_ms: PENDING_TIMEOUT.as_millis() as i64,
            view: Mutex::new(None),
            metrics: SchedulerMetrics::default(),
        }
    }

    /// The same scheduler, failing groups that have waited for a node longer than `timeout`.
    pub fn with_pending_timeout(mut self, timeout: Duration) -> Self {
        self.pending_timeout_ms = timeout.as_millis().min(i64::MAX as u128) as i64;
        self
    }

    /// The same scheduler, counting its attempts and timing its rounds into `metrics`.
    pub fn with_metrics(mut self, metrics: SchedulerMetrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// The same scheduler, running rounds only while `leadership` says this replica leads.
    pub fn with_leadership(mut self, leadership: Leadership) -> Self {
        self.leadership = leadership;
        self
    }

    pub async fn run(self, shutdown: CancellationToken) {
        if let Some(mut peers) = self.handle.subscribe() {
            let handle = self.handle.clone();
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                loop {
                    let heard = tokio::select! {
                        () = shutdown.cancelled() => return,
                        heard = peers.recv() => heard,
                    };
                    match heard.as_deref() {
                        None => return,
                        Some(Heard::Event(crate::cluster::Event::SchedulerWake {
                            capacity_changed,
                        })) => handle.woken_by_peer(*capacity_changed),
                        Some(Heard::Resync) => handle.woken_by_peer(true),
                        Some(Heard::Event(_)) => {}
                    }
                }
            });
        }
        let mut leadership = self.leadership.clone();
        loop {
            if !leadership.is_leader() {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    () = leadership.acquired() => {}
                }
                // A new term: what this replica knew of the nodes is old.
                *self.view.lock().await = None;
                tracing::info!("the scheduler runs on this replica");
            }
            let more = match self.round().await {
                Ok(more) => more,
                Err(err) => {
                    tracing::error!(error = %err, "scheduling round failed");
                    self.metrics.attempted(Attempt::Error, 1);
                    false
                }
            };
            if more {
                continue;
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                () = self.handle.woken() => {}
                // A safety net: capacity can free without a wake-up (a node coming back Ready), a
                // wake-up can be lost on the bus, and leadership can end.
                _ = tokio::time::sleep(POLL) => {}
            }
        }
    }

    /// One round; returns whether a full batch was placed (so another round should follow at once).
    pub async fn round(&self) -> Result<bool, crate::store::StoreError> {
        let pending = self.store.pending_groups(BATCH).await?;
        if pending.is_empty() {
            return Ok(false);
        }
        let taken = pending.len();
        let started = Instant::now();
        let now = crate::now_ms();
        let (expired, pending): (Vec<_>, Vec<_>) = pending
            .into_iter()
            .partition(|g| timed_out(g, now, self.pending_timeout_ms));
        for group in &expired {
            self.fail_timed_out(group, now).await?;
        }
        let mut view = self.view.lock().await;
        let stale = self.handle.take_capacity_changed();
        if stale || view.as_ref().is_none_or(|(_, at)| at.elapsed() > VIEW_TTL) {
            let nodes = self
                .store
                .nodes()
                .await?
                .into_iter()
                .filter(|n| n.status == NodeStatus::Ready && !n.cordoned)
                .map(|n| Candidate {
                    free: n.free(),
                    id: n.id,
                    name: n.name,
                    os_type: n.os_type,
                    capacity: n.capacity,
                })
                .collect();
            *view = Some((nodes, Instant::now()));
        }
        let Some((nodes, _)) = view.as_mut() else {
            return Ok(false);
        };
        let decisions = place(&pending, nodes, self.policy);
        let names: std::collections::HashMap<&str, &str> = nodes
            .iter()
            .map(|n| (n.id.as_str(), n.name.as_str()))
            .collect();
        let mut placements = Vec::new();
        for (decision, group) in decisions.into_iter().zip(&pending) {
            match decision {
                Decision::Place(p) => placements.push(p),
                Decision::Wait { group_id, reason } => {
                    self.metrics.attempted(Attempt::Unschedulable, 1);
                    if group.last_reason.as_deref() != Some(reason.as_str()) {
                        let event = GroupEvent {
                            name: "FailedScheduling".to_owned(),
                            message: reason,
                            kind: EventKind::Warning,
                            count: 1,
                            first_ms: now,
                            last_ms: now,
                        };
                        self.store.record_event(&group_id, event).await?;
                    }
                }
            }
        }
        let placed = if placements.is_empty() {
            0
        } else {
            let committed = self.store.commit_placements(&placements, now).await?;
            let placed = committed.len();
            self.metrics.attempted(Attempt::Scheduled, placed as u64);
            self.metrics.attempted(
                Attempt::Conflict,
                placements.len().saturating_sub(placed) as u64,
            );
            let events: Vec<(String, GroupEvent)> = committed
                .iter()
                .map(|p| {
                    let name = names.get(p.node_id.as_str()).copied().unwrap_or(&p.node_id);
                    (p.group_id.clone(), scheduled_event(name, now))
                })
                .collect();
            if placed < placements.len() {
                // The view promised more than the store held: read it again next round.
                *view = None;
            }
            self.sink.placed(committed).await;
            // After the nodes heard: the events are for people reading the group, not on the way
            // to its start.
            tokio::spawn(record_events(self.store.clone(), events));
            placed
        };
        if !pending.is_empty() {
            self.metrics.round_took(started.elapsed());
        }
        // Another round at once if this one was full and made progress.
        Ok(taken as i64 == BATCH && (placed > 0 || !expired.is_empty()))
    }

    /// Fails a group that waited past the provisioning timeout, with the reason in its events and
    /// its pending operations.
    async fn fail_timed_out(
        &self,
        group: &PendingGroup,
        now: i64,
    ) -> Result<(), crate::store::StoreError> {
        let message = timeout_message(group, now, self.pending_timeout_ms);
        tracing::warn!(group = %group.id, "no node within the provisioning timeout: failed");
        self.store
            .fail_group(&group.id, PROVISIONING_TIMEOUT, &message, now)
            .await?;
        let event = GroupEvent {
            name: "ProvisioningTimeout".to_owned(),
            message,
            kind: EventKind::Warning,
            count: 1,
            first_ms: now,
            last_ms: now,
        };
        self.store.record_event(&group.id, event).await
    }
}

/// Adds each group's event, one after another (a failure is logged: the event is only news).
async fn record_events(store: Arc<dyn Store>, events: Vec<(String, GroupEvent)>) {
    for (group_id, event) in events {
        if let Err(err) = store.record_event(&group_id, event).await {
            tracing::warn!(error = %err, group = %group_id, "cannot record the Scheduled event");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};

    use proptest::prelude::*;

    use super::*;

    fn node(id: &str, os: OsType, cpu: u64, mem: u64) -> Candidate {
        let size = Size {
            cpu_millis: cpu,
            memory_mib: mem,
            gpu: 0,
        };
        Candidate {
            id: id.to_owned(),
            name: format!("name-{id}"),
            os_type: os,
            capacity: size,
            free: size,
        }
    }

    fn group(id: &str, os: OsType, cpu: u64, mem: u64) -> PendingGroup {
        PendingGroup {
            pending_since_ms: 0,
            id: id.to_owned(),
            os_type: os,
            requests: Size {
                cpu_millis: cpu,
                memory_mib: mem,
                gpu: 0,
            },
            generation: 1,
            last_reason: None,
        }
    }

    fn placed_on(decisions: &[Decision]) -> Vec<Option<String>> {
        decisions
            .iter()
            .map(|d| match d {
                Decision::Place(p) => Some(p.node_id.clone()),
                Decision::Wait { .. } => None,
            })
            .collect()
    }

    #[test]
    fn equal_nodes_are_chosen_by_smallest_id_whatever_their_order() {
        for policy in [Policy::Pack, Policy::Spread] {
            let mut nodes = vec![
                node("c", OsType::Linux, 4000, 8192),
                node("a", OsType::Linux, 4000, 8192),
                node("b", OsType::Linux, 4000, 8192),
            ];
            let decisions = place(&[group("g", OsType::Linux, 1000, 1024)], &mut nodes, policy);
            assert_eq!(
                placed_on(&decisions),
                vec![Some("a".to_owned())],
                "{policy:?}"
            );
        }
    }

    #[test]
    fn pack_fills_one_node_before_the_next() {
        let mut nodes = vec![
            node("a", OsType::Linux, 4000, 8192),
            node("b", OsType::Linux, 4000, 8192),
        ];
        let groups: Vec<_> = (0..4)
            .map(|i| group(&format!("g{i}"), OsType::Linux, 1000, 1024))
            .collect();
        let decisions = place(&groups, &mut nodes, Policy::Pack);
        let on: HashSet<_> = placed_on(&decisions).into_iter().flatten().collect();
        assert_eq!(
            on.len(),
            1,
            "four 1-CPU groups fit one 4-CPU node: {decisions:?}"
        );
    }

    #[test]
    fn spread_uses_every_node() {
        let mut nodes = vec![
            node("a", OsType::Linux, 4000, 8192),
            node("b", OsType::Linux, 4000, 8192),
        ];
        let groups: Vec<_> = (0..2)
            .map(|i| group(&format!("g{i}"), OsType::Linux, 1000, 1024))
            .collect();
        let decisions = place(&groups, &mut nodes, Policy::Spread);
        let on: HashSet<_> = placed_on(&decisions).into_iter().flatten().collect();
        assert_eq!(on.len(), 2);
    }

    #[test]
    fn a_group_that_does_not_fit_waits_with_a_reason() {
        let mut nodes = vec![node("a", OsType::Linux, 1000, 1024)];
        let decisions = place(
            &[group("g", OsType::Linux, 2000, 1024)],
            &mut nodes,
            Policy::Pack,
        );
        match &decisions[0] {
            Decision::Wait { reason, .. } => assert!(reason.contains("2 CPU"), "{reason}"),
            other => panic!("expected to wait, got {other:?}"),
        }
    }

    #[test]
    fn a_group_times_out_after_waiting_longer_than_the_limit() {
        let mut g = group("g", OsType::Linux, 1000, 1024);
        g.pending_since_ms = 10_000;
        assert!(!timed_out(&g, 1_810_000, 1_800_000), "exactly the limit");
        assert!(timed_out(&g, 1_810_001, 1_800_000));
        let message = timeout_message(&g, 1_811_000, 1_800_000);
        assert_eq!(
            message,
            "The container group waited 1801 s for a node, longer than the provisioning timeout of \
             1800 s, and failed."
        );
        g.last_reason = Some("No Ready Linux node has 1 CPU free now.".to_owned());
        let message = timeout_message(&g, 1_811_000, 1_800_000);
        assert!(
            message.ends_with("could not be placed: No Ready Linux node has 1 CPU free now."),
            "{message}"
        );
    }

    #[test]
    fn os_type_must_match() {
        let mut nodes = vec![node("win", OsType::Windows, 4000, 8192)];
        let decisions = place(
            &[group("g", OsType::Linux, 1000, 1024)],
            &mut nodes,
            Policy::Pack,
        );
        assert_eq!(placed_on(&decisions), vec![None]);
    }

    proptest! {
        /// Under any sequence of creates and deletes: no node goes over capacity, the OS always matches,
        /// and a group is on exactly one node or none (never split).
        #[test]
        fn never_overcommits(
            node_specs in prop::collection::vec((any::<bool>(), 1u64..8, 1u64..16), 1..8),
            ops in prop::collection::vec((any::<bool>(), any::<bool>(), 1u64..4000, 1u64..8192, any::<prop::sample::Index>()), 1..120),
        ) {
            let mut nodes: Vec<Candidate> = node_specs
                .iter()
                .enumerate()
                .map(|(i, (win, cpu, mem))| node(&format!("n{i}"), if *win { OsType::Windows } else { OsType::Linux }, cpu * 1000, mem * 1024))
                .collect();
            let os_of: HashMap<String, OsType> = nodes.iter().map(|n| (n.id.clone(), n.os_type)).collect();
            let mut running: HashMap<String, (String, Size)> = HashMap::new();
            let mut waiting: Vec<PendingGroup> = Vec::new();
            for (n, (create, win, cpu, mem, pick)) in ops.into_iter().enumerate() {
                if create || running.is_empty() {
                    waiting.push(group(&format!("g{n}"), if win { OsType::Windows } else { OsType::Linux }, cpu, mem));
                } else {
                    let mut ids: Vec<_> = running.keys().cloned().collect();
                    ids.sort();
                    let id = pick.get(&ids).clone();
                    let (node_id, size) = running.remove(&id).expect("picked from the map");
                    let node = nodes.iter_mut().find(|n| n.id == node_id).expect("placed on a known node");
                    node.free = node.free.add(&size);
                }
                let decisions = place(&waiting, &mut nodes, Policy::Pack);
                let mut still = Vec::new();
                for (d, g) in decisions.into_iter().zip(waiting.drain(..)) {
                    match d {
                        Decision::Place(p) => {
                            prop_assert_eq!(os_of[&p.node_id], g.os_type);
                            prop_assert!(running.insert(p.group_id.clone(), (p.node_id, p.requests)).is_none());
                        }
                        Decision::Wait { .. } => still.push(g),
                    }
                }
                waiting = still;
                for n in &nodes {
                    let used: Size = running.values().filter(|(id, _)| *id == n.id).fold(Size::default(), |s, (_, r)| s.add(r));
                    prop_assert!(used.fits_in(&n.capacity), "node {} over capacity: {:?} > {:?}", n.id, used, n.capacity);
                    prop_assert_eq!(n.free, n.capacity.saturating_sub(&used));
                }
            }
        }
    }
}
