//! The bus: signals from one replica to every other one. Fire and forget: a signal lost (a replica
//! restarting, a broken connection) is covered by level triggering: a subscriber told [`Heard::Resync`]
//! falls back to full state (every stream's full desired state, a scheduler round, a zone rebuild),
//! and the scheduler and the DNS publisher poll anyway.
//!
//! [`LocalBus`] is the bus of one process (SQLite); `PgBus` carries the same events over PostgreSQL's
//! `LISTEN`/`NOTIFY`. A replica never hears its own events back: it acts on them itself.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::model::{OsType, Size};

/// What one replica tells the others.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "k", rename_all = "snake_case")]
pub enum Event {
    /// Groups to (re)send to a node (`upserted`, built from the store by the replica holding the
    /// node's stream) and groups it should tear down (`removed`).
    Assign {
        node: String,
        upserted: Vec<String>,
        removed: Vec<String>,
    },
    /// Groups wait (or capacity changed): the leader's scheduler should run a round.
    SchedulerWake { capacity_changed: bool },
    /// The DNS zone may have changed: every replica rebuilds its copy.
    ZoneDirty,
    /// A node of this OS and size joined: every replica's "could it ever fit" view learns it.
    NodeJoined { os: OsType, size: Size },
    /// A node was deleted: the replica holding its stream closes it.
    NodeDeleted { node: String },
}

/// What a subscriber hears.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Heard {
    Event(Event),
    /// Events may have been missed (the connection broke, the subscriber fell behind): fall back to
    /// full state.
    Resync,
}

/// One message on a replica's fan-out channel, with the bus handle it came from (0: another replica).
#[derive(Debug, Clone)]
pub(super) struct Note {
    pub(super) from: u64,
    pub(super) heard: Arc<Heard>,
}

/// Messages a slow subscriber may fall behind by before it is told to resync.
pub(super) const FANOUT: usize = 4096;

/// The ids of bus handles in this process (never 0).
pub(super) fn next_handle_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Where a replica sends and hears signals.
pub trait Bus: Send + Sync + 'static {
    /// Tells every other replica; never waits (events are queued and sent in order).
    fn publish(&self, event: Event);
    /// A new subscriber: hears every event published by other replicas from now on.
    fn subscribe(&self) -> Subscription;
}

/// A subscriber's receiving end.
pub struct Subscription {
    pub(super) rx: broadcast::Receiver<Note>,
    /// This replica's handle: its own events are skipped.
    pub(super) me: u64,
}

impl Subscription {
    /// The next event of another replica, or [`Heard::Resync`]; `None` once the bus is gone.
    pub async fn recv(&mut self) -> Option<Arc<Heard>> {
        loop {
            match self.rx.recv().await {
                Ok(note) if note.from == self.me => continue,
                Ok(note) => return Some(note.heard),
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    return Some(Arc::new(Heard::Resync));
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

/// The bus inside one process: a broadcast channel. Replicas in one process on one SQLite file
/// (tests) share one channel ([`LocalBus::for_database`]); replicas in separate processes on one
/// SQLite file do not hear each other (SQLite is the single-node store: use PostgreSQL for HA).
#[derive(Debug, Clone)]
pub struct LocalBus {
    tx: Arc<broadcast::Sender<Note>>,
    me: u64,
}

impl Default for LocalBus {
    fn default() -> Self {
        Self {
            tx: Arc::new(broadcast::channel(FANOUT).0),
            me: next_handle_id(),
        }
    }
}

impl LocalBus {
    /// A bus shared by every replica in this process on the database file `path` (`None`: in
    /// memory, a bus of its own).
    pub fn for_database(path: Option<&Path>) -> Self {
        static SHARED: Mutex<Option<HashMap<PathBuf, Weak<broadcast::Sender<Note>>>>> =
            Mutex::new(None);
        let Some(path) = path else {
            return Self::default();
        };
        let key = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
        let mut shared = SHARED.lock().unwrap_or_else(|p| p.into_inner());
        let shared = shared.get_or_insert_with(HashMap::new);
        shared.retain(|_, tx| tx.strong_count() > 0);
        let tx = match shared.get(&key).and_then(Weak::upgrade) {
            Some(tx) => tx,
            None => {
                let tx = Arc::new(broadcast::channel(FANOUT).0);
                shared.insert(key, Arc::downgrade(&tx));
                tx
            }
        };
        Self {
            tx,
            me: next_handle_id(),
        }
    }
}

impl Bus for LocalBus {
    fn publish(&self, event: Event) {
        // No receiver is no one to tell.
        let _ = self.tx.send(Note {
            from: self.me,
            heard: Arc::new(Heard::Event(event)),
        });
    }

    fn subscribe(&self) -> Subscription {
        Subscription {
            rx: self.tx.subscribe(),
            me: self.me,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::time::Duration;

    use super::*;

    async fn next(sub: &mut Subscription) -> Option<Heard> {
        tokio::time::timeout(Duration::from_millis(200), sub.recv())
            .await
            .ok()
            .flatten()
            .map(|heard| (*heard).clone())
    }

    #[tokio::test]
    async fn replicas_on_one_file_hear_each_other_but_not_themselves() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("berth.db");
        std::fs::write(&file, b"").unwrap();
        let a = LocalBus::for_database(Some(&file));
        let b = LocalBus::for_database(Some(&dir.path().join(".").join("berth.db")));
        let other = LocalBus::for_database(Some(&dir.path().join("other.db")));
        let (mut on_a, mut on_b, mut on_other) = (a.subscribe(), b.subscribe(), other.subscribe());
        a.publish(Event::ZoneDirty);
        assert_eq!(next(&mut on_b).await, Some(Heard::Event(Event::ZoneDirty)));
        assert_eq!(next(&mut on_a).await, None, "not its own");
        assert_eq!(
            next(&mut on_other).await,
            None,
            "another database is another cluster"
        );
    }

    #[tokio::test]
    async fn a_subscriber_that_falls_behind_is_told_to_resync() {
        let a = LocalBus::default();
        let b = LocalBus {
            tx: a.tx.clone(),
            me: next_handle_id(),
        };
        let mut on_b = b.subscribe();
        for _ in 0..FANOUT + 1 {
            a.publish(Event::ZoneDirty);
        }
        assert_eq!(next(&mut on_b).await, Some(Heard::Resync));
        assert_eq!(next(&mut on_b).await, Some(Heard::Event(Event::ZoneDirty)));
    }
}
