//! Node liveness: when each node was last heard from, the monitor that marks silent nodes NotReady,
//! and the writer that puts the heartbeats that moved into the store every few seconds (for all nodes
//! in one statement, never a write per heartbeat). A node turning Ready or NotReady tells the
//! scheduler that capacity changed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::lock;
use super::reports::ReportQueue;
use crate::handoff::SchedulerHandle;
use crate::store::{Heartbeat, NodeRecord, NodeStatus, Store, StoreError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seen {
    /// What the liveness monitor counts from: the last message, or this process's start.
    at_ms: i64,
    /// The node's last message (apiserver clock), or the store's word for it from before this
    /// process started.
    heard_ms: i64,
    ready: bool,
    node_clock_ms: i64,
    /// Heard from since the last heartbeat write.
    unwritten: bool,
}

/// Node id -> when its last message came, whether it is Ready as far as the store knows, and the
/// latest node clock it sent (its last heartbeat for billing, should it go silent).
type SeenMap = HashMap<String, Seen>;

pub(super) struct Tracker {
    store: Arc<dyn Store>,
    scheduler: SchedulerHandle,
    reports: ReportQueue,
    node_timeout_ms: i64,
    seen: Mutex<SeenMap>,
}

impl Tracker {
    /// After a restart every node known Ready gets a full timeout (from `now_ms`) to reconnect.
    pub(super) fn new(
        store: Arc<dyn Store>,
        scheduler: SchedulerHandle,
        reports: ReportQueue,
        node_timeout: Duration,
        known: &[NodeRecord],
        now_ms: i64,
    ) -> Self {
        let seen = known
            .iter()
            .map(|node| {
                let seen = Seen {
                    at_ms: now_ms,
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
            node_timeout_ms: node_timeout.as_millis() as i64,
            seen: Mutex::new(seen),
        }
    }

    /// Marks nodes NotReady once they have been silent for the timeout. Runs until shutdown.
    pub(super) async fn monitor(&self, shutdown: CancellationToken) {
        let period = Duration::from_millis((self.node_timeout_ms / 4).clamp(100, 1000) as u64);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(period) => {}
            }
            let silent = take_silent(&mut lock(&self.seen), crate::now_ms(), self.node_timeout_ms);
            for (id, seen) in silent {
                tracing::warn!(node = %id, "node missed its heartbeats: NotReady");
                self.scheduler.capacity_changed();
                match self
                    .store
                    .set_node_status(&id, NodeStatus::NotReady, seen.heard_ms, seen.node_clock_ms)
                    .await
                {
                    Ok(_) => {}
                    Err(err) => {
                        tracing::error!(error = %err, node = %id, "cannot mark node NotReady");
                        lock(&self.seen).entry(id).and_modify(|e| e.ready = true);
                    }
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
            self.write_heartbeats().await;
            if stopping {
                return;
            }
        }
    }
}

/// Notes a message from `node_id` at `now_ms`: returns whether the node was Ready before (it is now)
/// and its latest node clock.
fn heard(seen: &mut SeenMap, node_id: &str, now_ms: i64, node_clock_ms: i64) -> (bool, i64) {
    let update = |entry: &mut Seen| {
        entry.at_ms = now_ms;
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
                at_ms: now_ms,
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

/// The Ready nodes silent for longer than `timeout_ms`, marked not Ready.
fn take_silent(seen: &mut SeenMap, now_ms: i64, timeout_ms: i64) -> Vec<(String, Seen)> {
    seen.iter_mut()
        .filter(|(_, seen)| seen.ready && now_ms - seen.at_ms > timeout_ms)
        .map(|(id, seen)| {
            seen.ready = false;
            (id.clone(), *seen)
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

    #[test]
    fn a_node_is_lost_after_the_timeout_and_reported_once() {
        let mut seen = SeenMap::new();
        heard(&mut seen, "n1", 1_000, 0);
        heard(&mut seen, "n2", 5_000, 0);
        assert!(
            take_silent(&mut seen, 11_000, 10_000).is_empty(),
            "exactly the timeout is not silent"
        );
        let lost: Vec<String> = take_silent(&mut seen, 11_001, 10_000)
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        assert_eq!(lost, vec!["n1".to_owned()]);
        assert!(
            take_silent(&mut seen, 12_000, 10_000).is_empty(),
            "NotReady once"
        );
        assert!(!heard(&mut seen, "n1", 12_000, 0).0, "coming back is news");
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
