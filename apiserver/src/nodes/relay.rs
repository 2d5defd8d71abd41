//! What other replicas send this one over the bus: groups for nodes streaming here (built from the
//! store, so the bus carries ids only), node joins for the capacity view, and after events may
//! have been missed ([`Heard::Resync`]) the whole desired state of every node streaming here and
//! every node size in the store.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::NodeGateway;
use crate::cluster::{Event, Heard, Subscription};
use crate::store::StoreError;

impl NodeGateway {
    /// Acts on what other replicas say until `shutdown`.
    pub(super) async fn relay(self, mut heard: Subscription, shutdown: CancellationToken) {
        loop {
            let next: Option<Arc<Heard>> = tokio::select! {
                () = shutdown.cancelled() => return,
                next = heard.recv() => next,
            };
            let Some(next) = next else { return };
            let done = match &*next {
                Heard::Event(Event::Assign {
                    node,
                    upserted,
                    removed,
                }) => self.deliver(node, upserted, removed).await,
                Heard::Event(Event::NodeJoined { os, size }) => {
                    self.inner.capacities.remember(*os, *size);
                    Ok(())
                }
                Heard::Event(Event::SchedulerWake { .. } | Event::ZoneDirty) => Ok(()),
                Heard::Resync => self.resync().await,
            };
            if let Err(err) = done {
                // The node gets these with its next full state (a resync or its reconnect).
                tracing::error!(error = %err, "cannot act on another replica's news");
            }
        }
    }

    /// Sends a node streaming here the groups another replica changed.
    async fn deliver(
        &self,
        node_id: &str,
        upserted: &[String],
        removed: &[String],
    ) -> Result<(), StoreError> {
        if !self.inner.sessions.has(node_id) {
            return Ok(());
        }
        let groups = if upserted.is_empty() {
            Vec::new()
        } else {
            self.inner.assignments.of_node(node_id, upserted).await?
        };
        if !groups.is_empty() || !removed.is_empty() {
            self.inner.sessions.send(node_id, groups, removed.to_vec());
        }
        Ok(())
    }

    /// Level-triggered again: every node streaming here gets its whole desired state, and the
    /// capacity view every node size in the store.
    async fn resync(&self) -> Result<(), StoreError> {
        for node in self.inner.store.nodes().await? {
            self.inner.capacities.remember(node.os_type, node.capacity);
        }
        for node_id in self.inner.sessions.connected() {
            let groups = self.inner.assignments.on_node(&node_id).await?;
            self.inner.sessions.send_full(&node_id, groups);
        }
        Ok(())
    }
}
