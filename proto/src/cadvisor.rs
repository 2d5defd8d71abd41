//! The per-container Prometheus families with cAdvisor's names, which the apiserver's `/metrics`
//! (from stored samples, every node) and the agent's (its own board) both expose: written once here
//! so the two scrapes keep the same names, help and types. Each end brings its own label sets (the
//! agent adds `node`).

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// cAdvisor's container families: `C` labels a container, `G` its group (network counters are per
/// group: the containers share one network namespace).
pub struct Families<C, G> {
    cpu: Family<C, Counter<f64, AtomicU64>>,
    memory: Family<C, Gauge>,
    received: Family<G, Counter>,
    sent: Family<G, Counter>,
}

impl<C, G> Default for Families<C, G>
where
    C: Clone + std::hash::Hash + Eq,
    G: Clone + std::hash::Hash + Eq,
{
    fn default() -> Self {
        Self {
            cpu: Family::default(),
            memory: Family::default(),
            received: Family::default(),
            sent: Family::default(),
        }
    }
}

impl<C, G> Families<C, G>
where
    C: EncodeLabelSet + Clone + std::hash::Hash + Eq + std::fmt::Debug + Send + Sync + 'static,
    G: EncodeLabelSet + Clone + std::hash::Hash + Eq + std::fmt::Debug + Send + Sync + 'static,
{
    /// One container's run: CPU nanoseconds used and its memory working set in bytes.
    pub fn container(&self, labels: &C, cpu_usage_ns: u64, memory_working_set_bytes: u64) {
        self.cpu
            .get_or_create(labels)
            .inc_by(cpu_usage_ns as f64 / 1e9);
        self.memory
            .get_or_create(labels)
            .set(i64::try_from(memory_working_set_bytes).unwrap_or(i64::MAX));
    }

    /// One group's network namespace: bytes received and sent.
    pub fn group(&self, labels: &G, rx_bytes: u64, tx_bytes: u64) {
        self.received.get_or_create(labels).inc_by(rx_bytes);
        self.sent.get_or_create(labels).inc_by(tx_bytes);
    }

    /// Registers the four families (the counters gain `_total` when encoded).
    pub fn register(self, registry: &mut Registry) {
        registry.register(
            "container_cpu_usage_seconds",
            "CPU time the container used in its current run, seconds",
            self.cpu,
        );
        registry.register(
            "container_memory_working_set_bytes",
            "The container's memory working set",
            self.memory,
        );
        registry.register(
            "container_network_receive_bytes",
            "Bytes the group's network namespace received",
            self.received,
        );
        registry.register(
            "container_network_transmit_bytes",
            "Bytes the group's network namespace sent",
            self.sent,
        );
    }
}
