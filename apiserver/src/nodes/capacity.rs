//! The distinct node sizes per OS, for "could any joined node ever hold this group?" (a group none
//! could is refused at once rather than left Pending for ever). Nodes are never forgotten here: one
//! that is NotReady may come back. What this replica saw join is kept in memory; a miss reads the
//! store's nodes again before answering no, so a node that joined through another replica counts.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::lock;
use crate::model::{OsType, Size};
use crate::store::{NodeStore, StoreError};

pub(super) struct Capacities {
    store: Arc<dyn NodeStore>,
    sizes: Mutex<HashMap<OsType, Vec<Size>>>,
}

impl Capacities {
    pub(super) fn new(store: Arc<dyn NodeStore>) -> Self {
        Self {
            store,
            sizes: Mutex::default(),
        }
    }

    /// A node of `size` running `os` has joined (or was in the store at start).
    pub(super) fn remember(&self, os: OsType, size: Size) {
        let mut sizes = lock(&self.sizes);
        let list = sizes.entry(os).or_default();
        if !list.contains(&size) {
            list.push(size);
        }
    }

    /// Whether some joined node (Ready or not) is large enough for `request` at all, through any
    /// replica: what this one knows, else what the store knows now.
    pub(super) async fn could_ever_fit(
        &self,
        os: OsType,
        request: &Size,
    ) -> Result<bool, StoreError> {
        if self.known_fit(os, request) {
            return Ok(true);
        }
        for node in self.store.nodes().await? {
            self.remember(node.os_type, node.capacity);
        }
        Ok(self.known_fit(os, request))
    }

    fn known_fit(&self, os: OsType, request: &Size) -> bool {
        lock(&self.sizes)
            .get(&os)
            .is_some_and(|sizes| sizes.iter().any(|s| request.fits_in(s)))
    }

    #[cfg(test)]
    fn distinct(&self, os: OsType) -> usize {
        lock(&self.sizes).get(&os).map_or(0, Vec::len)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::store::SqliteStore;
    use crate::store::conformance::fixtures;

    fn size(cpu_millis: u64, memory_mib: u64, gpu: u32) -> Size {
        Size {
            cpu_millis,
            memory_mib,
            gpu,
        }
    }

    /// Capacities over an empty store (and the directory keeping it).
    async fn empty() -> (Capacities, Arc<SqliteStore>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(&dir.path().join("t.db")).await.unwrap());
        (Capacities::new(store.clone()), store, dir)
    }

    #[tokio::test]
    async fn nothing_fits_before_a_node_joins() {
        let (caps, _store, _dir) = empty().await;
        assert!(
            !caps
                .could_ever_fit(OsType::Linux, &size(1, 1, 0))
                .await
                .unwrap()
        );
    }

    #[tokio::test]
    async fn a_request_must_fit_one_node_in_every_dimension() {
        let (caps, _store, _dir) = empty().await;
        caps.remember(OsType::Linux, size(4000, 2048, 0));
        caps.remember(OsType::Linux, size(1000, 16384, 0));
        let fits = |s: Size| {
            let caps = &caps;
            async move { caps.could_ever_fit(OsType::Linux, &s).await.unwrap() }
        };
        assert!(fits(size(4000, 2048, 0)).await, "exactly one node");
        assert!(fits(size(1000, 16384, 0)).await);
        assert!(
            !fits(size(4000, 16384, 0)).await,
            "CPU of one node and memory of the other is no node"
        );
        assert!(!fits(size(1000, 1024, 1)).await, "no GPU anywhere");
    }

    #[tokio::test]
    async fn the_os_must_match() {
        let (caps, _store, _dir) = empty().await;
        caps.remember(OsType::Windows, size(8000, 8192, 0));
        assert!(
            !caps
                .could_ever_fit(OsType::Linux, &size(1000, 1024, 0))
                .await
                .unwrap()
        );
        assert!(
            caps.could_ever_fit(OsType::Windows, &size(1000, 1024, 0))
                .await
                .unwrap()
        );
    }

    #[tokio::test]
    async fn a_size_is_kept_once() {
        let (caps, _store, _dir) = empty().await;
        for _ in 0..3 {
            caps.remember(OsType::Linux, size(2000, 4096, 0));
        }
        caps.remember(OsType::Linux, size(2000, 4096, 1));
        assert_eq!(caps.distinct(OsType::Linux), 2);
    }

    #[tokio::test]
    async fn a_node_that_joined_through_another_replica_fits() {
        let (caps, store, _dir) = empty().await;
        // Joined through the store, not through this replica's `remember`.
        fixtures::join(&*store, "elsewhere", 4000).await;
        assert!(
            caps.could_ever_fit(OsType::Linux, &size(4000, 1024, 0))
                .await
                .unwrap(),
            "the store's nodes are read on a miss"
        );
        assert!(
            !caps
                .could_ever_fit(OsType::Linux, &size(4001, 1024, 0))
                .await
                .unwrap()
        );
    }
}
