//! One async lock per sandbox id.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::OwnedMutexGuard;

/// One async lock per sandbox id, so that `setup` and `teardown` of one sandbox never interleave while
/// different sandboxes proceed in parallel. Entries are dropped when nobody holds or awaits them.
#[derive(Default)]
pub(super) struct IdLocks {
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

pub(super) struct IdGuard<'a> {
    locks: &'a IdLocks,
    id: String,
    lock: Arc<tokio::sync::Mutex<()>>,
    guard: Option<OwnedMutexGuard<()>>,
}

impl IdLocks {
    pub(super) async fn acquire(&self, id: &str) -> IdGuard<'_> {
        let lock = self
            .locks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(id.to_string())
            .or_default()
            .clone();
        let guard = lock.clone().lock_owned().await;
        IdGuard {
            locks: self,
            id: id.to_string(),
            lock,
            guard: Some(guard),
        }
    }
}

impl Drop for IdGuard<'_> {
    fn drop(&mut self) {
        self.guard.take();
        let mut locks = self
            .locks
            .locks
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Only the map and this guard hold it: nobody else waits for this id.
        if Arc::strong_count(&self.lock) == 2 {
            locks.remove(&self.id);
        }
    }
}
