//! Containers' measurements, as nodes sample them (every `--metrics-interval` on the agent): what
//! ACI's metrics route (`…/providers/Microsoft.Insights/metrics`) and the cluster-wide `/metrics`
//! read. Kept for at least 24 h (`prune_samples` drops older ones), whichever replica received them.

use super::Result;

/// One measurement of one container of a group, or of the group itself (its network namespace).
#[derive(Debug, Clone, PartialEq)]
pub struct MetricSample {
    pub group_id: String,
    /// A container's name; `""` for the group's own row (network counters, shared by its containers).
    pub container: String,
    /// Node clock when it was taken, Unix ms (the clock billing reads too).
    pub at_ms: i64,
    /// Container rows: CPU time since the container's current run started, ns.
    pub cpu_usage_ns: u64,
    /// Container rows: average CPU use since the previous sample, millicores.
    pub cpu_millicores: f64,
    /// Container rows: memory working set, bytes.
    pub memory_bytes: u64,
    /// Group rows: bytes received and sent since the network namespace was made.
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    /// Group rows: bytes per second since the previous sample.
    pub rx_bytes_per_second: f64,
    pub tx_bytes_per_second: f64,
}

/// A sample with the ARM names of its group (for labels), as the cluster-wide `/metrics` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct LabeledSample {
    pub subscription: String,
    pub resource_group: String,
    /// The container group's name.
    pub group_name: String,
    pub sample: MetricSample,
}

/// Measurements of containers and groups.
#[async_trait::async_trait]
pub trait MetricStore: Send + Sync {
    /// Stores `samples` of groups assigned to `node_id` now; samples of any other group (a node
    /// reporting what is not, or no longer, its own) are dropped. Returns how many were stored.
    async fn record_samples(&self, node_id: &str, samples: &[MetricSample]) -> Result<u64>;
    /// Group `group_id`'s samples with `from_ms <= at_ms < to_ms`, oldest first.
    async fn group_samples(
        &self,
        group_id: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<MetricSample>>;
    /// The newest sample of every container and group row taken at or after `since_ms`, of groups
    /// that exist, with their ARM names.
    async fn latest_samples(&self, since_ms: i64) -> Result<Vec<LabeledSample>>;
    /// Deletes samples taken before `before_ms`; returns how many.
    async fn prune_samples(&self, before_ms: i64) -> Result<u64>;
}

/// The columns of `container_samples`, in the order both backends write and read them.
pub(crate) const SAMPLE_COLUMNS: &str = "group_id, container, at_ms, cpu_usage_ns, cpu_millicores, \
     memory_bytes, rx_bytes, tx_bytes, rx_bytes_per_second, tx_bytes_per_second";

/// A counter as a signed column: saturated at `i64::MAX` (2^63 ns is 292 years of CPU time).
pub(crate) fn stored(counter: u64) -> i64 {
    i64::try_from(counter).unwrap_or(i64::MAX)
}

/// A stored counter back as the unsigned value it was (never negative: [`stored`] saturates).
pub(crate) fn counter(column: i64) -> u64 {
    u64::try_from(column).unwrap_or(0)
}

/// A rate as a column: a node's NaN or infinity (a clock that did not move) is stored as 0.
pub(crate) fn finite(rate: f64) -> f64 {
    if rate.is_finite() { rate } else { 0.0 }
}
