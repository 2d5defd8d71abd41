//! Node liveness: when each node was last heard from, the monitor that marks silent nodes NotReady,
//! and the writer that puts the heartbeats that moved into the store every few seconds (for all nodes
//! in one statement, never a write per heartbeat). A node turning Ready or NotReady tells the
//! scheduler that capacity changed.
//!
//! With several replicas each hears only the nodes streaming to it. The monitor runs on the leader
//! only and judges silence from the STORE's heartbeats (every replica's writer puts its own there)
//! and what this replica heard itself, whichever is later; a new leader gives every Ready node a
//! full timeout from its takeover. NotReady is guarded in the store (it holds only if nobody wrote a
//! later heartbeat), and a replica that hears a node the store says is NotReady, later than the
//! store's last heartbeat of it, sets it Ready again (the writer checks on every pass). A NotReady
//! node silent past the second timeout is lost (`lost`: the same judgement, then its groups move).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::NodeGateway;
use super::lock;
use super::reports::ReportQueue;
use crate::cluster::Leadership;
use crate::handoff::SchedulerHandle;
use crate::store::{Heartbeat, NodeRecord, NodeStatus, Store, StoreError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Seen {
    /// The node's last message (apiserver clock), or the store's word for it from before this
    /// process started.
    pub(super) heard_ms: i64,
    pub(super) ready: bool,
    pub(super) node_clock_ms: i64,
    /// Heard from since the last heartbeat write.
    unwritten: bool,
}

/// Node id -> when its last message came, whether it is Ready as far as the store knows, and the
/// latest node clock it sent (its last heartbeat for billing, should it go silent).
pub(super) type SeenMap = HashMap<String, Seen>;

/// How long a node may be silent before it is NotReady, and before it is lost.
#[derive(Debug, Clone, Copy)]
pub(super) struct Timeouts {
    pub(super) not_ready: Duration,
    pub(super) lost: Duration,
}

pub(super) struct Tracker {
    pub(super) store: Arc<dyn Store>,
    scheduler: SchedulerHandle,
    reports: ReportQueue,
    node_timeout_ms: i64,
    pub(super) node_lost_after_ms: i64,
    pub(super) seen: Mutex<SeenMap>,
}

impl Tracker {
    /// Starts from what the store knows of the nodes (`known`).
    pub(super) fn new(
        store: Arc<dyn Store>,
        scheduler: SchedulerHandle,
        reports: ReportQueue,
        timeouts: Timeouts,
        known: &[NodeRecord],
    ) -> Self {
        let seen = known
            .iter()
            .map(|node| {
                let seen = Seen {
                    heard_ms: node.last_heartbeat_ms,
                    ready: node.status == NodeStatus::Ready,
                    node_clock_ms: 0,
                    unwritten: false,
                };
                (node.id.clone(), seen)
            })
            .collect();
        Self {
            store,
            scheduler,
            reports,
            node_timeout_ms: timeouts.not_ready.as_millis() as i64,
            node_lost_after_ms: timeouts.lost.as_millis() as i64,
            seen: Mutex::new(seen),
        }
    }

    /// While this replica leads, marks nodes NotReady once they have been silent for the timeout
    /// (from the store's heartbeats and this replica's own, and from the start of its term at the
    /// earliest), and has `gateway` lose the NotReady ones silent past the second timeout. Runs
    /// until shutdown.
    pub(super) async fn monitor(
        &self,
        leadership: Leadership,
        gateway: &NodeGateway,
        shutdown: CancellationToken,
    ) {
        let period = Duration::from_millis((self.node_timeout_ms / 4).clamp(100, 1000) as u64);
        let mut term_from_ms: Option<i64> = None;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(period) => {}
            }
            if !leadership.is_leader() {
                term_from_ms = None;
                continue;
            }
            let now = crate::now_ms();
            let from_ms = *term_from_ms.get_or_insert(now);
            let nodes = match self.store.nodes().await {
                Ok(nodes) => nodes,
                Err(err) => {
                    tracing::warn!(error = %err, "cannot read nodes for the liveness monitor");
                    continue;
                }
            };
            let silent = take_silent(
                &mut lock(&self.seen),
                &nodes,
                from_ms,
                crate::now_ms(),
                self.node_timeout_ms,
            );
            for lost in silent {
                match self
                    .store
                    .set_node_status(
                        &lost.id,
                        NodeStatus::NotReady,
                        lost.heard_ms,
                        lost.node_clock_ms,
                    )
                    .await
                {
                    Ok(true) => {
                        tracing::warn!(node = %lost.id, "node missed its heartbeats: NotReady");
                        self.scheduler.capacity_changed();
                    }
                    // Another replica heard from it since: not lost.
                    Ok(false) => {}
                    Err(err) => {
                        tracing::error!(error = %err, node = %lost.id, "cannot mark node NotReady");
                    }
                }
            }
            gateway.lose_silent(&nodes, from_ms).await;
        }
    }

    /// Forgets a deleted node (its heartbeats are no longer written).
    pub(super) fn forget(&self, node_id: &str) {
        lock(&self.seen).remove(node_id);
    }

    /// Sets Ready again the nodes the store says are NotReady but this replica heard from later than
    /// the store's last heartbeat of them (another replica judged them lost on older news), and
    /// notes the NotReady ones so their next message here sets them Ready.
    async fn readmit(&self) {
        let nodes = match self.store.nodes().await {
            Ok(nodes) => nodes,
            Err(err) => {
                tracing::warn!(error = %err, "cannot read nodes to check readiness");
                return;
            }
        };
        let heard = take_readmitted(&mut lock(&self.seen), &nodes);
        for (id, seen) in heard {
            match self
                .store
                .set_node_status(&id, NodeStatus::Ready, seen.heard_ms, seen.node_clock_ms)
                .await
            {
                Ok(_) => {
                    tracing::info!(node = %id, "node marked NotReady elsewhere is heard here: Ready");
                    self.scheduler.capacity_changed();
                }
                Err(err) => {
                    tracing::warn!(error = %err, node = %id, "cannot set node Ready");
                    lock(&self.seen).entry(id).and_modify(|e| e.ready = false);
                }
            }
        }
    }

    /// The node's last message (apiserver clock) as this process knows it: newer than the store's
    /// by up to a heartbeat write interval. `None` for a node it does not know.
    pub(super) fn last_heartbeat(&self, node_id: &str) -> Option<i64> {
        lock(&self.seen).get(node_id).map(|seen| seen.heard_ms)
    }

    /// A message came from the node; `node_clock_ms` is the node's time in it (0: none). The clock
    /// of a message with reports goes to the report writer with them (`with_reports`); the others
    /// wait for the next heartbeat write.
    pub(super) async fn seen(
        &self,
        node_id: &str,
        node_clock_ms: i64,
        with_reports: bool,
    ) -> Result<(), StoreError> {
        let now = crate::now_ms();
        let (was_ready, clock) = heard(&mut lock(&self.seen), node_id, now, node_clock_ms);
        if with_reports && node_clock_ms > 0 {
            self.reports.clock(node_id, node_clock_ms);
        }
        if !was_ready {
            self.store
                .set_node_status(node_id, NodeStatus::Ready, now, clock)
                .await?;
            self.scheduler.capacity_changed();
        }
        Ok(())
    }

    async fn write_heartbeats(&self) {
        let beats = take_unwritten(&mut lock(&self.seen));
        if let Err(err) = self.store.record_heartbeats(&beats).await {
            tracing::warn!(error = %err, nodes = beats.len(), "cannot record heartbeats; retrying later");
            let mut seen = lock(&self.seen);
            for beat in beats {
                if let Some(seen) = seen.get_mut(&beat.node_id) {
                    seen.unwritten = true;
                }
            }
        }
    }

    /// Writes the heartbeats that moved every `every` until shutdown, and once more then.
    pub(super) async fn record_heartbeats(&self, every: Duration, shutdown: CancellationToken) {
        loop {
            let stopping = tokio::select! {
                () = shutdown.cancelled() => true,
                () = tokio::time::sleep(every) => false,
            };
            self.readmit().await;
            self.write_heartbeats().await;
            if stopping {
                return;
            }
        }
    }
}

/// Notes a message from `node_id` at `now_ms`: returns whether the node was Ready before (it is now)
/// and its latest node clock.
pub(super) fn heard(
    seen: &mut SeenMap,
    node_id: &str,
    now_ms: i64,
    node_clock_ms: i64,
) -> (bool, i64) {
    let update = |entry: &mut Seen| {
        entry.heard_ms = entry.heard_ms.max(now_ms);
        entry.node_clock_ms = entry.node_clock_ms.max(node_clock_ms);
        entry.unwritten = true;
        (
            std::mem::replace(&mut entry.ready, true),
            entry.node_clock_ms,
        )
    };
    // Looked up before inserting: no key is allocated for a known node's every message.
    match seen.get_mut(node_id) {
        Some(entry) => update(entry),
        None => {
            let mut first = Seen {
                heard_ms: now_ms,
                ready: false,
                node_clock_ms: 0,
                unwritten: false,
            };
            let answer = update(&mut first);
            seen.insert(node_id.to_owned(), first);
            answer
        }
    }
}

/// A node judged silent: the last message anyone heard from it and its latest node clock known here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Lost {
    pub(super) id: String,
    pub(super) heard_ms: i64,
    pub(super) node_clock_ms: i64,
}

/// When `node` was last heard from (the store's heartbeat or this replica's, `here`, whichever is
/// later), if that was more than `limit_ms` before `now_ms`, counting from `from_ms` (the start of
/// this leader's term) at the earliest; `None` while it is not that silent.
pub(super) fn silent_since(
    node: &NodeRecord,
    here: Option<&Seen>,
    from_ms: i64,
    now_ms: i64,
    limit_ms: i64,
) -> Option<i64> {
    let heard_ms = node.last_heartbeat_ms.max(here.map_or(0, |s| s.heard_ms));
    (now_ms - heard_ms.max(from_ms) > limit_ms).then_some(heard_ms)
}

/// The nodes Ready in the store (`nodes`) that nobody has heard from for longer than `timeout_ms`
/// (the store's last heartbeat or this replica's, whichever is later, and not before `from_ms`, the
/// start of this leader's term); marked not Ready here, so that a message from one sets it Ready.
fn take_silent(
    seen: &mut SeenMap,
    nodes: &[NodeRecord],
    from_ms: i64,
    now_ms: i64,
    timeout_ms: i64,
) -> Vec<Lost> {
    nodes
        .iter()
        .filter(|node| node.status == NodeStatus::Ready)
        .filter_map(|node| {
            let here = seen.get_mut(&node.id);
            let heard_ms = silent_since(node, here.as_deref(), from_ms, now_ms, timeout_ms)?;
            let node_clock_ms = here.map_or(0, |s| {
                s.ready = false;
                s.node_clock_ms
            });
            Some(Lost {
                id: node.id.clone(),
                heard_ms,
                node_clock_ms,
            })
        })
        .collect()
}

/// The nodes NotReady (or lost) in the store that this replica heard from after the store's last
/// heartbeat of them (to set Ready again, marked Ready here); every other NotReady or lost node is
/// marked not Ready here.
fn take_readmitted(seen: &mut SeenMap, nodes: &[NodeRecord]) -> Vec<(String, Seen)> {
    nodes
        .iter()
        .filter(|node| matches!(node.status, NodeStatus::NotReady | NodeStatus::Lost))
        .filter_map(|node| {
            let here = seen.get_mut(&node.id)?;
            if here.heard_ms > node.last_heartbeat_ms {
                here.ready = true;
                Some((node.id.clone(), *here))
            } else {
                here.ready = false;
                None
            }
        })
        .collect()
}

/// The nodes heard from since the last write, marked written.
fn take_unwritten(seen: &mut SeenMap) -> Vec<Heartbeat> {
    seen.iter_mut()
        .filter(|(_, seen)| seen.unwritten)
        .map(|(id, seen)| {
            seen.unwritten = false;
            Heartbeat {
                node_id: id.clone(),
                at_ms: seen.heard_ms,
                node_clock_ms: seen.node_clock_ms,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_first_message_makes_a_node_ready_once() {
        let mut seen = SeenMap::new();
        assert_eq!(
            heard(&mut seen, "n1", 1_000, 50),
            (false, 50),
            "was not Ready"
        );
        assert_eq!(
            heard(&mut seen, "n1", 2_000, 40),
            (true, 50),
            "the clock never goes back"
        );
        assert_eq!(seen["n1"].heard_ms, 2_000);
    }

    fn stored(id: &str, status: NodeStatus, last_heartbeat_ms: i64) -> NodeRecord {
        NodeRecord {
            status,
            last_heartbeat_ms,
            ..crate::store::conformance::fixtures::node(id, 1000)
        }
    }

    fn ids(lost: Vec<Lost>) -> Vec<String> {
        lost.into_iter().map(|l| l.id).collect()
    }

    #[test]
    fn a_node_is_lost_once_nobody_heard_it_for_the_timeout() {
        let mut seen = SeenMap::new();
        heard(&mut seen, "here", 1_000, 70);
        let nodes = [
            stored("here", NodeStatus::Ready, 500),
            stored("elsewhere", NodeStatus::Ready, 5_000),
            stored("gone", NodeStatus::NotReady, 0),
        ];
        assert!(
            take_silent(&mut seen, &nodes, 0, 11_000, 10_000).is_empty(),
            "exactly the timeout is not silent"
        );
        let lost = take_silent(&mut seen, &nodes, 0, 11_001, 10_000);
        assert_eq!(
            lost,
            vec![Lost {
                id: "here".to_owned(),
                heard_ms: 1_000,
                node_clock_ms: 70
            }],
            "judged on this replica's later news, with its node clock"
        );
        assert!(
            !heard(&mut seen, "here", 12_000, 0).0,
            "coming back is news"
        );
        assert_eq!(
            ids(take_silent(&mut seen, &nodes, 0, 15_001, 10_000)),
            ["elsewhere"],
            "another replica's heartbeats in the store count"
        );
    }

    #[test]
    fn a_new_leader_gives_every_node_a_full_timeout_from_its_takeover() {
        let mut seen = SeenMap::new();
        let nodes = [stored("n1", NodeStatus::Ready, 1_000)];
        assert!(take_silent(&mut seen, &nodes, 50_000, 60_000, 10_000).is_empty());
        assert_eq!(
            ids(take_silent(&mut seen, &nodes, 50_000, 60_001, 10_000)),
            ["n1"]
        );
    }

    #[test]
    fn a_node_heard_after_another_replica_lost_it_is_readmitted() {
        let mut seen = SeenMap::new();
        heard(&mut seen, "alive", 9_000, 0);
        heard(&mut seen, "stale", 2_000, 0);
        heard(&mut seen, "judged", 8_000, 0);
        let nodes = [
            stored("judged", NodeStatus::NotReady, 8_000),
            stored("alive", NodeStatus::NotReady, 8_000),
            stored("stale", NodeStatus::NotReady, 8_000),
            stored("ready", NodeStatus::Ready, 8_000),
            stored("unknown", NodeStatus::NotReady, 8_000),
            stored("back", NodeStatus::Lost, 1_000),
        ];
        let back: Vec<String> = take_readmitted(&mut seen, &nodes)
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        assert_eq!(
            back,
            ["alive"],
            "not one lost on exactly what this replica heard"
        );
        heard(&mut seen, "back", 3_000, 0);
        let back: Vec<String> = take_readmitted(&mut seen, &nodes)
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        assert!(
            back.contains(&"back".to_owned()),
            "a lost node heard here after its loss is Ready again: {back:?}"
        );
        assert!(
            !heard(&mut seen, "stale", 10_000, 0).0,
            "the next message of a node lost on newer news sets it Ready"
        );
        assert!(heard(&mut seen, "alive", 10_000, 0).0);
    }

    #[test]
    fn a_heartbeat_is_written_once_until_the_node_is_heard_again() {
        let mut seen = SeenMap::new();
        heard(&mut seen, "n1", 1_000, 700);
        let beats = take_unwritten(&mut seen);
        assert_eq!(beats.len(), 1);
        assert_eq!(
            (
                beats[0].node_id.as_str(),
                beats[0].at_ms,
                beats[0].node_clock_ms
            ),
            ("n1", 1_000, 700)
        );
        assert!(take_unwritten(&mut seen).is_empty());
        heard(&mut seen, "n1", 2_000, 800);
        assert_eq!(take_unwritten(&mut seen).len(), 1);
    }
}
