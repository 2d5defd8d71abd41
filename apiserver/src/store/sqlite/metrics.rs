//! Container measurements in SQLite.

// TODO(metrics-api lane): the table (migration), the four statements, the conformance suite.

use super::SqliteStore;
use crate::store::{LabeledSample, MetricSample, MetricStore, Result, StoreError};

const TODO: StoreError = StoreError::Unsupported("container metrics are not stored yet");

#[async_trait::async_trait]
impl MetricStore for SqliteStore {
    async fn record_samples(&self, _node_id: &str, _samples: &[MetricSample]) -> Result<u64> {
        Err(TODO)
    }

    async fn group_samples(
        &self,
        _group_id: &str,
        _from_ms: i64,
        _to_ms: i64,
    ) -> Result<Vec<MetricSample>> {
        Err(TODO)
    }

    async fn latest_samples(&self, _since_ms: i64) -> Result<Vec<LabeledSample>> {
        Err(TODO)
    }

    async fn prune_samples(&self, _before_ms: i64) -> Result<u64> {
        Err(TODO)
    }
}
