//! The apiserver's side of DNS: keeping the zone equal to the store, serving it (the embedded
//! server), and streaming it to standalone `berth-dns` servers (`DnsService.Watch`).
//!
//! The zone is level-triggered, like everything between the store and the nodes: [`Publisher`]
//! recomputes the whole set of records from the store (`Store::dns_records`: groups that should run,
//! are placed, and whose node reports them Running with an IP) whenever something may have changed
//! it (a node report was written, a group was created, changed, stopped, started, restarted or
//! deleted: [`ZoneDirty::poke`]), at most every [`DEBOUNCE`], and every [`RESYNC`] anyway. The zone
//! itself bumps its serial only when a record really changed.
//!
//! Every replica keeps its own zone: a poke [`linked`](ZoneDirty::linked) to the bus reaches every
//! other replica's publisher too (at most one per [`PEER_POKE_GAP`]: a rebuild reads the store at
//! least a [`DEBOUNCE`] after the poke that caused it, so a poke dropped within that gap is covered).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_dns::{Record, Snapshot, Zone};
use berth_proto::node::dns_service_server::DnsService;
use berth_proto::node::{DnsRecord, WatchZoneRequest, ZoneUpdate};
use tokio::sync::{Notify, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::cluster::{Bus, Event, Heard};
use crate::store::Store;

/// The shortest time between two rebuilds of the zone.
pub const DEBOUNCE: Duration = Duration::from_millis(50);
/// The zone is rebuilt at least this often, whatever was poked.
pub const RESYNC: Duration = Duration::from_secs(5);

/// The shortest time between two pokes this replica sends the others.
pub const PEER_POKE_GAP: Duration = Duration::from_millis(20);

/// "Something the zone is made of may have changed": cheap to clone and to poke.
#[derive(Clone, Default)]
pub struct ZoneDirty {
    notify: Arc<Notify>,
    peers: Option<Peers>,
}

#[derive(Clone)]
struct Peers {
    bus: Arc<dyn Bus>,
    /// When this replica last told the others.
    told: Arc<Mutex<Option<Instant>>>,
}

impl std::fmt::Debug for ZoneDirty {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZoneDirty").finish_non_exhaustive()
    }
}

impl ZoneDirty {
    /// A poke that also reaches every other replica's publisher over `bus`.
    pub fn linked(bus: Arc<dyn Bus>) -> Self {
        Self {
            notify: Arc::default(),
            peers: Some(Peers {
                bus,
                told: Arc::default(),
            }),
        }
    }

    pub fn poke(&self) {
        self.notify.notify_one();
        if let Some(peers) = &self.peers {
            let now = Instant::now();
            let mut told = peers.told.lock().unwrap_or_else(|p| p.into_inner());
            if told.is_none_or(|at| now.duration_since(at) >= PEER_POKE_GAP) {
                *told = Some(now);
                peers.bus.publish(Event::ZoneDirty);
            }
        }
    }

    /// Forwards other replicas' pokes (and resyncs) to this replica's publisher until `shutdown`.
    async fn hear_peers(self, shutdown: CancellationToken) {
        let Some(mut heard) = self.peers.as_ref().map(|peers| peers.bus.subscribe()) else {
            return;
        };
        loop {
            let next = tokio::select! {
                () = shutdown.cancelled() => return,
                next = heard.recv() => next,
            };
            match next.as_deref() {
                None => return,
                Some(Heard::Event(Event::ZoneDirty) | Heard::Resync) => self.notify.notify_one(),
                Some(Heard::Event(_)) => {}
            }
        }
    }
}

/// Keeps a [`Zone`] equal to what the store says.
pub struct Publisher {
    zone: Zone,
    store: Arc<dyn Store>,
    dirty: ZoneDirty,
}

impl Publisher {
    pub fn new(zone: Zone, store: Arc<dyn Store>, dirty: ZoneDirty) -> Self {
        Self { zone, store, dirty }
    }

    /// Rebuilds the zone from the store once.
    pub async fn sync(&self) {
        match self.store.dns_records().await {
            Ok(rows) => {
                let records = rows
                    .into_iter()
                    .map(|(name, addresses)| Record { name, addresses })
                    .collect();
                if let Err(error) = self.zone.replace_all(records) {
                    tracing::error!(%error, "a group's FQDN is outside the DNS zone");
                }
            }
            Err(error) => tracing::warn!(%error, "cannot read DNS records from the store"),
        }
    }

    /// Rebuilds on every poke (debounced) and every [`RESYNC`], until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        tokio::spawn(self.dirty.clone().hear_peers(shutdown.clone()));
        loop {
            self.sync().await;
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = self.dirty.notify.notified() => {}
                () = tokio::time::sleep(RESYNC) => {}
            }
            tokio::time::sleep(DEBOUNCE).await;
        }
    }
}

/// Updates queued towards one slow follower before the stream waits.
const QUEUED_UPDATES: usize = 16;

/// `DnsService`: streams the zone to standalone DNS servers.
#[derive(Clone)]
pub struct DnsWatch {
    zone: Zone,
    shutdown: CancellationToken,
}

impl DnsWatch {
    pub fn new(zone: Zone, shutdown: CancellationToken) -> Self {
        Self { zone, shutdown }
    }
}

fn record(name: &str, addresses: &[IpAddr]) -> DnsRecord {
    DnsRecord {
        name: name.to_owned(),
        addresses: addresses.iter().map(ToString::to_string).collect(),
    }
}

/// What changed from `before` to `after`: `(upserts, removals)`.
fn diff(before: &Snapshot, after: &Snapshot) -> (Vec<DnsRecord>, Vec<String>) {
    let upserts = after
        .iter()
        .filter(|(name, addresses)| before.get(*name) != Some(*addresses))
        .map(|(name, addresses)| record(name, addresses))
        .collect();
    let removals = before
        .keys()
        .filter(|name| !after.contains_key(*name))
        .cloned()
        .collect();
    (upserts, removals)
}

#[tonic::async_trait]
impl DnsService for DnsWatch {
    type WatchStream = ReceiverStream<Result<ZoneUpdate, Status>>;

    async fn watch(
        &self,
        request: Request<WatchZoneRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let leaf = request
            .peer_certs()
            .and_then(|certs| certs.first().cloned())
            .ok_or_else(|| Status::unauthenticated("DnsService needs a client certificate"))?;
        let Some(id) = crate::tls::dns_id_from_cert(&leaf) else {
            return Err(Status::permission_denied(
                "only a DNS server's certificate may watch the zone",
            ));
        };
        tracing::info!(dns = %id, "a DNS server follows the zone");
        let (tx, rx) = mpsc::channel(QUEUED_UPDATES);
        let zone = self.zone.clone();
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            let mut changes = zone.changes();
            changes.borrow_and_update();
            let mut sent: Snapshot = Arc::new(HashMap::new());
            let mut full = true;
            loop {
                let now = zone.snapshot();
                let serial = zone.serial();
                let (upserts, removals) = diff(&sent, &now);
                if full || !upserts.is_empty() || !removals.is_empty() {
                    let update = ZoneUpdate {
                        origin: zone.origin().to_owned(),
                        serial,
                        full,
                        upserts,
                        removals: if full { Vec::new() } else { removals },
                    };
                    if tx.send(Ok(update)).await.is_err() {
                        break;
                    }
                    full = false;
                    sent = now;
                }
                tokio::select! {
                    changed = changes.changed() => if changed.is_err() { break },
                    () = tx.closed() => break,
                    () = shutdown.cancelled() => break,
                }
                changes.borrow_and_update();
            }
            tracing::info!(dns = %id, "a DNS server stopped following the zone");
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    #[test]
    fn diffs_name_what_changed() {
        let a = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
        let b = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
        let before: Snapshot = Arc::new(HashMap::from([
            ("same.z".to_owned(), Arc::from(vec![a])),
            ("moved.z".to_owned(), Arc::from(vec![a])),
            ("gone.z".to_owned(), Arc::from(vec![a])),
        ]));
        let after: Snapshot = Arc::new(HashMap::from([
            ("same.z".to_owned(), Arc::from(vec![a])),
            ("moved.z".to_owned(), Arc::from(vec![b])),
            ("new.z".to_owned(), Arc::from(vec![b])),
        ]));
        let (mut upserts, removals) = diff(&before, &after);
        upserts.sort_by(|x, y| x.name.cmp(&y.name));
        assert_eq!(upserts, [record("moved.z", &[b]), record("new.z", &[b])]);
        assert_eq!(removals, ["gone.z"]);
    }

    #[tokio::test]
    async fn a_poke_reaches_the_other_replicas_but_a_burst_sends_one() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("t.db");
        let here = ZoneDirty::linked(Arc::new(crate::cluster::LocalBus::for_database(Some(
            &file,
        ))));
        let there = ZoneDirty::linked(Arc::new(crate::cluster::LocalBus::for_database(Some(
            &file,
        ))));
        let mut heard = crate::cluster::LocalBus::for_database(Some(&file)).subscribe();
        let shutdown = CancellationToken::new();
        tokio::spawn(there.clone().hear_peers(shutdown.clone()));
        tokio::task::yield_now().await;
        for _ in 0..10 {
            here.poke();
        }
        let wait = Duration::from_millis(200);
        tokio::time::timeout(wait, there.notify.notified())
            .await
            .expect("the other replica's publisher is poked");
        assert_eq!(
            tokio::time::timeout(wait, heard.recv())
                .await
                .unwrap()
                .as_deref(),
            Some(&Heard::Event(Event::ZoneDirty))
        );
        assert!(
            tokio::time::timeout(Duration::from_millis(10), heard.recv())
                .await
                .is_err(),
            "a burst is one poke"
        );
        tokio::time::sleep(PEER_POKE_GAP).await;
        here.poke();
        assert!(
            tokio::time::timeout(wait, heard.recv()).await.is_ok(),
            "and a later one is sent"
        );
        shutdown.cancel();
    }
}
