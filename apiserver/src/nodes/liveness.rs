//! Node liveness: when each node was last heard from, the monitor that marks silent nodes NotReady,
//! and the writer that puts the heartbeats that moved into the store every few seconds (for all nodes
//! in one statement, never a write per heartbeat).

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{Incoming, NodeGateway, lock};
use crate::store::{Heartbeat, NodeStatus, StoreError};

#[derive(Debug, Clone, Copy)]
pub(super) struct Seen {
    /// What the liveness monitor counts from: the last message, or this process's start.
    pub(super) at_ms: i64,
    /// The node's last message (apiserver clock), or the store's word for it from before this
    /// process started.
    pub(super) heard_ms: i64,
    pub(super) ready: bool,
    pub(super) node_clock_ms: i64,
    /// Heard from since the last heartbeat write.
    pub(super) unwritten: bool,
}

impl NodeGateway {
    /// Marks nodes NotReady once they have been silent for the timeout. Runs until shutdown.
    pub async fn monitor(self, shutdown: CancellationToken) {
        let period =
            Duration::from_millis((self.inner.node_timeout_ms / 4).clamp(100, 1000) as u64);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(period) => {}
            }
            let now = crate::now_ms();
            let silent: Vec<(String, Seen)> = lock(&self.inner.liveness)
                .iter_mut()
                .filter(|(_, seen)| seen.ready && now - seen.at_ms > self.inner.node_timeout_ms)
                .map(|(id, seen)| {
                    seen.ready = false;
                    (id.clone(), *seen)
                })
                .collect();
            for (id, seen) in silent {
                tracing::warn!(node = %id, "node missed its heartbeats: NotReady");
                self.inner.scheduler.capacity_changed();
                if let Err(err) = self
                    .inner
                    .store
                    .set_node_status(&id, NodeStatus::NotReady, seen.heard_ms, seen.node_clock_ms)
                    .await
                {
                    tracing::error!(error = %err, node = %id, "cannot mark node NotReady");
                    lock(&self.inner.liveness)
                        .entry(id)
                        .and_modify(|e| e.ready = true);
                }
            }
        }
    }

    /// The node's last message (apiserver clock) as this process knows it: newer than the store's
    /// by up to a heartbeat write interval. `None` for a node it does not know.
    pub fn last_heartbeat(&self, node_id: &str) -> Option<i64> {
        lock(&self.inner.liveness)
            .get(node_id)
            .map(|seen| seen.heard_ms)
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
        let (was_ready, clock) = {
            let mut liveness = lock(&self.inner.liveness);
            let entry = liveness.entry(node_id.to_owned()).or_insert(Seen {
                at_ms: now,
                heard_ms: now,
                ready: false,
                node_clock_ms: 0,
                unwritten: false,
            });
            entry.at_ms = now;
            entry.heard_ms = entry.heard_ms.max(now);
            entry.node_clock_ms = entry.node_clock_ms.max(node_clock_ms);
            entry.unwritten = true;
            (
                std::mem::replace(&mut entry.ready, true),
                entry.node_clock_ms,
            )
        };
        if with_reports && node_clock_ms > 0 {
            let _ = self
                .inner
                .reports
                .send(Incoming::Clock(node_id.to_owned(), node_clock_ms));
        }
        if !was_ready {
            self.inner
                .store
                .set_node_status(node_id, NodeStatus::Ready, now, clock)
                .await?;
            self.inner.scheduler.capacity_changed();
        }
        Ok(())
    }

    /// The nodes heard from since the last write, marked written.
    fn unwritten_heartbeats(&self) -> Vec<Heartbeat> {
        lock(&self.inner.liveness)
            .iter_mut()
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

    async fn write_heartbeats(&self) {
        let beats = self.unwritten_heartbeats();
        if let Err(err) = self.inner.store.record_heartbeats(&beats).await {
            tracing::warn!(error = %err, nodes = beats.len(), "cannot record heartbeats; retrying later");
            let mut liveness = lock(&self.inner.liveness);
            for beat in beats {
                if let Some(seen) = liveness.get_mut(&beat.node_id) {
                    seen.unwritten = true;
                }
            }
        }
    }

    /// Writes the heartbeats that moved every `every` until shutdown, and once more then.
    pub async fn record_heartbeats(self, every: Duration, shutdown: CancellationToken) {
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
