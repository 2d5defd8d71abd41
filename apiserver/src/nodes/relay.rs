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
                Heard::Event(Event::NodeDeleted { node }) => {
                    self.disconnect(node);
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::cluster::{Leadership, PgBus, Replica};
    use crate::handoff::{PlacementSink, SchedulerHandle};
    use crate::nodes::{Listeners, Liveness};
    use crate::secrets::SecretBox;
    use crate::store::conformance::fixtures;
    use crate::store::{SqliteStore, Store};
    use crate::tls::ClusterCa;

    /// Two gateways on one store, each with a bus of its own on one PostgreSQL database, as two
    /// replicas are: what one commits for a node reaches the node's stream on the other.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_placement_on_one_replica_reaches_a_stream_on_another_over_postgresql() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(&dir.path().join("t.db")).await.unwrap());
        fixtures::join(&*store, "n1", 4000).await;
        let secrets = Arc::new(SecretBox::load_or_create(&dir.path().join("secrets.key")).unwrap());
        let ca = Arc::new(ClusterCa::load_or_create(dir.path(), None).unwrap());
        let pg = berth_testkit::postgres::TempPostgres::shared().unwrap();
        let url = pg.fresh_database("relay").unwrap();
        let shutdown = CancellationToken::new();
        let mut replicas = Vec::new();
        for _ in 0..2 {
            let bus = PgBus::connect(&url, shutdown.clone()).await.unwrap();
            let gateway = NodeGateway::new(
                store.clone(),
                ca.clone(),
                secrets.clone(),
                Liveness {
                    heartbeat_interval_ms: 5_000,
                    node_timeout: Duration::from_secs(40),
                    node_lost_after: Duration::from_secs(80),
                },
                Listeners {
                    scheduler: SchedulerHandle::default(),
                    zone_dirty: crate::dns::ZoneDirty::default(),
                    replica: Replica {
                        bus: Arc::new(bus),
                        leadership: Leadership::always(),
                    },
                },
                None,
                shutdown.clone(),
            )
            .await
            .unwrap();
            replicas.push(gateway);
        }
        let (a, b) = (&replicas[0], &replicas[1]);
        let mut stream = b.inner.sessions.open("n1");

        let mut g = fixtures::new_group("g", 1000);
        g.sealed_spec = secrets.seal(&serde_json::to_vec(&g.spec).unwrap());
        fixtures::create_placed(&*store, &g, "n1").await;
        let sent = Instant::now();
        a.placed(vec![fixtures::placement(&g, "n1", 1)]).await;
        let told = tokio::time::timeout(Duration::from_secs(2), stream.rx.recv())
            .await
            .expect("the placement reaches the other replica's stream")
            .unwrap()
            .unwrap();
        let took = sent.elapsed();
        assert!(!told.full);
        let ids: Vec<&str> = told.groups.iter().map(|a| a.group_id.as_str()).collect();
        assert_eq!(ids, [g.id.as_str()]);
        assert!(took < Duration::from_millis(100), "took {took:?}");

        a.remove("n1", &g.id);
        let told = tokio::time::timeout(Duration::from_secs(2), stream.rx.recv())
            .await
            .expect("the removal reaches it too")
            .unwrap()
            .unwrap();
        assert_eq!(told.removed, [g.id.clone()]);
        shutdown.cancel();
    }
}
