//! Samples are kept for `--metrics-retention` (at least 24 h, so a day of charts always reads back):
//! every few minutes, those older are deleted. Every replica runs it; the delete is idempotent.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::store::Store;

/// How often old samples are deleted: a few minutes' worth of rows per delete.
pub const PRUNE_EVERY: Duration = Duration::from_secs(300);

/// The shortest retention: ACI's metrics read back over the last day.
pub const MIN_RETENTION: Duration = Duration::from_secs(24 * 3600);

/// Deletes samples older than `retention` before `now_ms`; returns how many.
pub async fn prune_once(store: &dyn Store, retention: Duration, now_ms: i64) -> u64 {
    let keep_ms = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
    match store.prune_samples(now_ms.saturating_sub(keep_ms)).await {
        Ok(deleted) => deleted,
        Err(err) => {
            tracing::warn!(error = %err, "old metric samples were not deleted; trying again later");
            0
        }
    }
}

/// Prunes every [`PRUNE_EVERY`] until `shutdown`.
pub async fn run(store: Arc<dyn Store>, retention: Duration, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(PRUNE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {
                let deleted = prune_once(&*store, retention, crate::now_ms()).await;
                if deleted > 0 {
                    tracing::debug!(deleted, "old metric samples deleted");
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::store::MetricSample;
    use crate::store::conformance::fixtures;

    #[tokio::test]
    async fn samples_older_than_the_retention_are_deleted_and_newer_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(
            crate::store::SqliteStore::open(&dir.path().join("t.db"))
                .await
                .unwrap(),
        );
        fixtures::join(&*store, "n1", 4000).await;
        let g = fixtures::new_group("web", 100);
        fixtures::create_placed(&*store, &g, "n1").await;
        let now = 100 * 3_600_000;
        let at = |hours_ago: i64| MetricSample {
            group_id: g.id.clone(),
            container: "c".into(),
            at_ms: now - hours_ago * 3_600_000,
            cpu_usage_ns: 1,
            cpu_millicores: 1.0,
            memory_bytes: 1,
            rx_bytes: 0,
            tx_bytes: 0,
            rx_bytes_per_second: 0.0,
            tx_bytes_per_second: 0.0,
        };
        store
            .record_samples("n1", &[at(25), at(23), at(1)])
            .await
            .unwrap();
        assert_eq!(prune_once(&*store, MIN_RETENTION, now).await, 1);
        let left = store.group_samples(&g.id, 0, i64::MAX).await.unwrap();
        assert_eq!(left.len(), 2, "a day's worth stays");
    }
}
