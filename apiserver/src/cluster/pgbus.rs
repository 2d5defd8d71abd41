//! The bus over PostgreSQL: every replica `LISTEN`s on channel `berth` on a connection of its own
//! and publishes with `SELECT pg_notify('berth', payload)`. One task sends, in order, what was
//! published since its last send as few payloads as fit (coalesced, at most one send per
//! [`MIN_GAP`]); one task listens and fans what other replicas sent out to this replica's
//! subscribers. A broken listener is reconnected, and then every subscriber is told
//! [`Heard::Resync`]: what was sent meanwhile is lost, and full state covers it.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use super::bus::{Bus, Event, FANOUT, Heard, Note, Subscription, next_handle_id};
use super::wire;

/// The `LISTEN`/`NOTIFY` channel.
pub(super) const CHANNEL: &str = "berth";
/// The shortest time between two sends: wake-ups of a burst of creates coalesce into one.
const MIN_GAP: Duration = Duration::from_millis(5);
/// How long to wait before reconnecting a listener that failed to connect.
const RECONNECT_BACKOFF: Duration = Duration::from_millis(200);

/// Why the bus could not start.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("cannot connect the bus to PostgreSQL")]
    Connect(#[source] sqlx::Error),
}

/// The bus over PostgreSQL `LISTEN`/`NOTIFY`.
#[derive(Debug, Clone)]
pub struct PgBus {
    queue: mpsc::UnboundedSender<Event>,
    fanout: broadcast::Sender<Note>,
    me: u64,
}

impl PgBus {
    /// Connects (a listener and a small pool to send with) and starts the bus's two tasks, which
    /// stop at `shutdown`.
    pub async fn connect(url: &str, shutdown: CancellationToken) -> Result<Self, BusError> {
        let options = PgConnectOptions::from_str(url).map_err(BusError::Connect)?;
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .map_err(BusError::Connect)?;
        let listener = listen(url).await.map_err(BusError::Connect)?;
        let origin = uuid::Uuid::new_v4().to_string();
        let (queue, rx) = mpsc::unbounded_channel();
        let fanout = broadcast::channel(FANOUT).0;
        tokio::spawn(send(pool, origin.clone(), rx, shutdown.clone()));
        tokio::spawn(receive(
            url.to_owned(),
            listener,
            origin,
            fanout.clone(),
            shutdown,
        ));
        Ok(Self {
            queue,
            fanout,
            me: next_handle_id(),
        })
    }
}

impl Bus for PgBus {
    fn publish(&self, event: Event) {
        // The sender ends only at shutdown; nothing is left to tell then.
        let _ = self.queue.send(event);
    }

    fn subscribe(&self) -> Subscription {
        Subscription {
            rx: self.fanout.subscribe(),
            me: self.me,
        }
    }
}

async fn listen(url: &str) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect(url).await?;
    listener.listen(CHANNEL).await?;
    Ok(listener)
}

/// Sends what was published, batch by batch, until shutdown.
async fn send(
    pool: PgPool,
    origin: String,
    mut rx: mpsc::UnboundedReceiver<Event>,
    shutdown: CancellationToken,
) {
    loop {
        let first = tokio::select! {
            () = shutdown.cancelled() => break,
            event = rx.recv() => match event {
                Some(event) => event,
                None => break,
            },
        };
        let started = tokio::time::Instant::now();
        let mut batch = vec![first];
        while let Ok(event) = rx.try_recv() {
            batch.push(event);
        }
        for payload in wire::pack(&origin, batch) {
            let sent = sqlx::query("SELECT pg_notify($1, $2)")
                .bind(CHANNEL)
                .bind(&payload)
                .execute(&pool)
                .await;
            if let Err(err) = sent {
                // Lost: the other replicas' level-triggered fallbacks (poll, full state) cover it.
                tracing::warn!(error = %err, bytes = payload.len(), "cannot publish on the bus");
            }
        }
        tokio::time::sleep_until(started + MIN_GAP).await;
    }
    pool.close().await;
}

/// Hears other replicas' payloads and fans their events out, until shutdown; reconnects a broken
/// listener and tells subscribers to resync.
async fn receive(
    url: String,
    mut listener: PgListener,
    origin: String,
    fanout: broadcast::Sender<Note>,
    shutdown: CancellationToken,
) {
    let tell = |heard: Heard| {
        let _ = fanout.send(Note {
            from: 0,
            heard: Arc::new(heard),
        });
    };
    loop {
        let received = tokio::select! {
            () = shutdown.cancelled() => return,
            received = listener.try_recv() => received,
        };
        match received {
            Ok(Some(notification)) => match wire::unpack(notification.payload()) {
                Ok((from, _)) if from == origin => {}
                Ok((_, events)) => events.into_iter().for_each(|e| tell(Heard::Event(e))),
                Err(err) => {
                    tracing::warn!(error = %err, "a bus payload was refused; resyncing");
                    tell(Heard::Resync);
                }
            },
            Ok(None) | Err(_) => {
                tracing::warn!("the bus's listener lost its connection; reconnecting");
                listener = loop {
                    match listen(&url).await {
                        Ok(listener) => break listener,
                        Err(err) => {
                            tracing::warn!(error = %err, "cannot reconnect the bus's listener");
                            tokio::select! {
                                () = shutdown.cancelled() => return,
                                () = tokio::time::sleep(RECONNECT_BACKOFF) => {}
                            }
                        }
                    }
                };
                tracing::info!("the bus's listener is back; subscribers resync");
                tell(Heard::Resync);
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::time::Instant;

    use super::*;

    async fn next(sub: &mut Subscription, within: Duration) -> Option<Heard> {
        tokio::time::timeout(within, sub.recv())
            .await
            .ok()
            .flatten()
            .map(|heard| (*heard).clone())
    }

    async fn two_replicas() -> (PgBus, PgBus, String, CancellationToken) {
        let pg = berth_testkit::postgres::TempPostgres::shared().unwrap();
        let url = pg.fresh_database("bus").unwrap();
        let shutdown = CancellationToken::new();
        let a = PgBus::connect(&url, shutdown.clone()).await.unwrap();
        let b = PgBus::connect(&url, shutdown.clone()).await.unwrap();
        (a, b, url, shutdown)
    }

    #[tokio::test]
    async fn an_event_reaches_the_other_replica_at_once_and_not_its_own() {
        let (a, b, _url, shutdown) = two_replicas().await;
        let (mut on_a, mut on_b) = (a.subscribe(), b.subscribe());
        let sent = Instant::now();
        a.publish(Event::NodeJoined {
            os: crate::model::OsType::Linux,
            size: crate::model::Size {
                cpu_millis: 4000,
                memory_mib: 8192,
                gpu: 0,
            },
        });
        let heard = next(&mut on_b, Duration::from_secs(2)).await;
        assert!(
            matches!(heard, Some(Heard::Event(Event::NodeJoined { .. }))),
            "{heard:?}"
        );
        assert!(
            sent.elapsed() < Duration::from_millis(100),
            "{:?}",
            sent.elapsed()
        );
        assert_eq!(next(&mut on_a, Duration::from_millis(200)).await, None);
        shutdown.cancel();
    }

    #[tokio::test]
    async fn a_placement_of_thousands_of_groups_arrives_whole() {
        let (a, b, _url, shutdown) = two_replicas().await;
        let mut on_b = b.subscribe();
        let ids: Vec<String> = (0..2000)
            .map(|_| uuid::Uuid::new_v4().to_string())
            .collect();
        a.publish(Event::Assign {
            node: "n1".to_owned(),
            upserted: ids.clone(),
            removed: vec!["gone".to_owned()],
        });
        let (mut upserted, mut removed) = (Vec::new(), Vec::new());
        while upserted.len() < ids.len() || removed.is_empty() {
            match next(&mut on_b, Duration::from_secs(2)).await {
                Some(Heard::Event(Event::Assign {
                    node,
                    upserted: u,
                    removed: r,
                })) => {
                    assert_eq!(node, "n1");
                    upserted.extend(u);
                    removed.extend(r);
                }
                other => panic!("expected the rest of the assignment, got {other:?}"),
            }
        }
        assert_eq!(upserted, ids);
        assert_eq!(removed, vec!["gone".to_owned()]);
        shutdown.cancel();
    }

    #[tokio::test]
    async fn a_broken_listener_reconnects_and_subscribers_resync() {
        let (a, b, url, shutdown) = two_replicas().await;
        let mut on_b = b.subscribe();
        let admin = PgPoolOptions::new()
            .max_connections(1)
            .connect(&url)
            .await
            .unwrap();
        // Every listening backend of this database: both replicas' listeners.
        let killed: Vec<bool> = sqlx::query_scalar(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid() AND query ILIKE 'LISTEN%'",
        )
        .fetch_all(&admin)
        .await
        .unwrap();
        assert_eq!(killed.len(), 2, "both listeners found");
        assert_eq!(
            next(&mut on_b, Duration::from_secs(5)).await,
            Some(Heard::Resync)
        );
        a.publish(Event::ZoneDirty);
        assert_eq!(
            next(&mut on_b, Duration::from_secs(2)).await,
            Some(Heard::Event(Event::ZoneDirty)),
            "events flow again"
        );
        shutdown.cancel();
    }
}
