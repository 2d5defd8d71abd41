//! The sample writer: the `Metrics` a node sends every `--metrics-interval` are checked, turned into
//! the store's rows ([`MetricSample`]: one per container, and one per group, container `""`, for the
//! network), queued and written by one task, which takes whatever has arrived and stores each node's
//! rows with one `record_samples` call. The queue is bounded: when the store falls behind, samples
//! are dropped (the next ones replace them), never node reports.
//!
//! A node is not trusted with what it says: a group or container name that is no name, a rate that
//! is negative or not a number, a counter or time from far away is dropped here; the store keeps only
//! samples of groups assigned to the node that sent them.

use std::collections::BTreeMap;
use std::sync::Arc;

use berth_proto::node;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::store::{MetricSample, Store, StoreError};

/// Messages (one node's `Metrics` each) waiting for the writer before new ones are dropped.
const QUEUE: usize = 4096;
/// Most messages written in one round.
const BATCH: usize = 512;
/// How far behind the apiserver's clock a sample may be: a node that was cut off sends its newest
/// sample when it is back, not older ones.
const MAX_AGE_MS: i64 = 60 * 60 * 1000;
/// How far ahead: nodes' clocks differ a little, not by minutes.
const MAX_AHEAD_MS: i64 = 5 * 60 * 1000;
/// Beyond any node: a million cores.
const MAX_MILLICORES: f64 = 1e9;
/// Beyond any interface: 10 Tbit/s.
const MAX_BYTES_PER_SECOND: f64 = 1.25e12;
/// Longest group id and container name kept (ids are UUIDs, ACI's names at most 63 characters).
const MAX_NAME: usize = 128;
/// Most rows taken from one message (ACI allows 60 containers in a group).
const MAX_ROWS: usize = 20_000;

/// The queue into the sample writer; clones share one writer.
#[derive(Debug, Clone)]
pub(super) struct SampleQueue {
    tx: mpsc::Sender<(String, Vec<MetricSample>)>,
}

impl SampleQueue {
    /// Starts the writer; it runs until `shutdown`.
    pub(super) fn start(store: Arc<dyn Store>, shutdown: CancellationToken) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(write_samples(store, rx, shutdown));
        Self { tx }
    }

    /// Queues what `node_id` measured; dropped if the writer is this far behind.
    pub(super) fn metrics(&self, node_id: &str, metrics: &node::Metrics) {
        let rows = to_samples(metrics, crate::now_ms());
        if rows.is_empty() {
            return;
        }
        if self.tx.try_send((node_id.to_owned(), rows)).is_err() {
            tracing::debug!(node = %node_id, "the sample writer is behind; dropping samples");
        }
    }
}

/// The store's rows of one `Metrics` message received at `now_ms`, without what no node could have
/// measured.
fn to_samples(metrics: &node::Metrics, now_ms: i64) -> Vec<MetricSample> {
    let mut rows = Vec::new();
    for group in &metrics.groups {
        if !plausible_group(group, now_ms) {
            tracing::debug!(group = %group.group_id.escape_debug(), "dropping an implausible sample");
            continue;
        }
        let row = |container: &str| MetricSample {
            group_id: group.group_id.clone(),
            container: container.to_owned(),
            at_ms: group.observed_unix_ms,
            cpu_usage_ns: 0,
            cpu_millicores: 0.0,
            memory_bytes: 0,
            rx_bytes: 0,
            tx_bytes: 0,
            rx_bytes_per_second: 0.0,
            tx_bytes_per_second: 0.0,
        };
        rows.push(MetricSample {
            rx_bytes: group.rx_bytes,
            tx_bytes: group.tx_bytes,
            rx_bytes_per_second: group.rx_bytes_per_second,
            tx_bytes_per_second: group.tx_bytes_per_second,
            ..row("")
        });
        for container in &group.containers {
            rows.push(MetricSample {
                cpu_usage_ns: container.cpu_usage_ns,
                cpu_millicores: container.cpu_millicores,
                memory_bytes: container.memory_working_set_bytes,
                ..row(&container.name)
            });
        }
        if rows.len() > MAX_ROWS {
            tracing::debug!(rows = rows.len(), "dropping a message of too many samples");
            return Vec::new();
        }
    }
    rows
}

/// Whether a group's sample is one a node could have taken: named, taken about now, its rates
/// numbers within reach, each container named once and its rate plausible too. One bad part drops
/// the whole group's sample.
fn plausible_group(group: &node::GroupSample, now_ms: i64) -> bool {
    let rate = |value: f64, max: f64| value.is_finite() && (0.0..=max).contains(&value);
    let mut names = std::collections::BTreeSet::new();
    plausible_name(&group.group_id)
        && group.observed_unix_ms >= now_ms.saturating_sub(MAX_AGE_MS)
        && group.observed_unix_ms <= now_ms.saturating_add(MAX_AHEAD_MS)
        && rate(group.rx_bytes_per_second, MAX_BYTES_PER_SECOND)
        && rate(group.tx_bytes_per_second, MAX_BYTES_PER_SECOND)
        && group.containers.iter().all(|container| {
            plausible_name(&container.name)
                && names.insert(container.name.as_str())
                && rate(container.cpu_millicores, MAX_MILLICORES)
                && i64::try_from(container.cpu_usage_ns).is_ok()
                && i64::try_from(container.memory_working_set_bytes).is_ok()
        })
        && i64::try_from(group.rx_bytes).is_ok()
        && i64::try_from(group.tx_bytes).is_ok()
}

/// A group id or container name: not empty, not long, printable ASCII without spaces.
fn plausible_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_NAME && name.bytes().all(|b| b.is_ascii_graphic())
}

async fn write_samples(
    store: Arc<dyn Store>,
    mut rx: mpsc::Receiver<(String, Vec<MetricSample>)>,
    shutdown: CancellationToken,
) {
    let mut incoming = Vec::with_capacity(BATCH);
    let mut unsupported_said = false;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            n = rx.recv_many(&mut incoming, BATCH) => {
                if n == 0 {
                    return;
                }
            }
        }
        let mut by_node: BTreeMap<String, Vec<MetricSample>> = BTreeMap::new();
        for (node, rows) in incoming.drain(..) {
            by_node.entry(node).or_default().extend(rows);
        }
        for (node, rows) in by_node {
            match store.record_samples(&node, &rows).await {
                Ok(_) => {}
                Err(StoreError::Unsupported(what)) => {
                    if !unsupported_said {
                        tracing::debug!(what, "the store keeps no samples; dropping them");
                        unsupported_said = true;
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %err, node = %node, rows = rows.len(), "cannot store samples");
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const NOW: i64 = 1_800_000_000_000;

    fn group(id: &str, at_ms: i64) -> node::GroupSample {
        node::GroupSample {
            group_id: id.into(),
            placement: 2,
            observed_unix_ms: at_ms,
            rx_bytes: 1000,
            tx_bytes: 2000,
            rx_bytes_per_second: 10.0,
            tx_bytes_per_second: 20.0,
            containers: vec![
                node::ContainerSample {
                    name: "web".into(),
                    cpu_usage_ns: 5_000_000_000,
                    cpu_millicores: 250.0,
                    memory_working_set_bytes: 64 << 20,
                },
                node::ContainerSample {
                    name: "sidecar".into(),
                    cpu_usage_ns: 1,
                    cpu_millicores: 0.5,
                    memory_working_set_bytes: 1 << 20,
                },
            ],
        }
    }

    #[test]
    fn a_group_becomes_a_network_row_and_a_row_per_container() {
        let metrics = node::Metrics {
            groups: vec![group("g1", NOW - 500)],
        };
        let rows = to_samples(&metrics, NOW);
        let shape: Vec<(&str, i64)> = rows
            .iter()
            .map(|r| (r.container.as_str(), r.at_ms))
            .collect();
        assert_eq!(
            shape,
            [("", NOW - 500), ("web", NOW - 500), ("sidecar", NOW - 500)]
        );
        assert_eq!(
            rows[0],
            MetricSample {
                group_id: "g1".into(),
                container: String::new(),
                at_ms: NOW - 500,
                cpu_usage_ns: 0,
                cpu_millicores: 0.0,
                memory_bytes: 0,
                rx_bytes: 1000,
                tx_bytes: 2000,
                rx_bytes_per_second: 10.0,
                tx_bytes_per_second: 20.0,
            }
        );
        assert_eq!(rows[1].cpu_millicores, 250.0);
        assert_eq!(rows[1].cpu_usage_ns, 5_000_000_000);
        assert_eq!(rows[1].memory_bytes, 64 << 20);
        assert_eq!(rows[1].rx_bytes, 0, "network is the group's row");
    }

    #[test]
    fn implausible_samples_are_dropped_and_the_others_kept() {
        let mut bad = Vec::new();
        let mut with = |change: fn(&mut node::GroupSample)| {
            let mut sample = group("bad", NOW);
            change(&mut sample);
            bad.push(sample);
        };
        with(|g| g.containers[0].cpu_millicores = f64::NAN);
        with(|g| g.containers[0].cpu_millicores = -1.0);
        with(|g| g.containers[0].cpu_millicores = f64::INFINITY);
        with(|g| g.rx_bytes_per_second = -0.5);
        with(|g| g.tx_bytes_per_second = f64::NAN);
        with(|g| g.rx_bytes_per_second = 1e300);
        with(|g| g.observed_unix_ms = NOW - 2 * 60 * 60 * 1000);
        with(|g| g.observed_unix_ms = NOW + 60 * 60 * 1000);
        with(|g| g.observed_unix_ms = i64::MIN);
        with(|g| g.group_id = String::new());
        with(|g| g.group_id = "g 1\n".into());
        with(|g| g.group_id = "x".repeat(500));
        with(|g| g.containers[1].name = String::new());
        with(|g| g.containers[1].name = "web".into());
        with(|g| g.containers[0].memory_working_set_bytes = u64::MAX);
        with(|g| g.rx_bytes = u64::MAX);
        let count = bad.len();
        let mut groups = bad;
        groups.push(group("good", NOW));
        let rows = to_samples(&node::Metrics { groups }, NOW);
        assert!(count >= 16);
        assert!(rows.iter().all(|r| r.group_id == "good"), "{rows:#?}");
        assert_eq!(rows.len(), 3);
    }

    proptest! {
        #[test]
        fn whatever_a_node_sends_every_row_kept_is_plausible(
            millicores in any::<f64>(), rx_rate in any::<f64>(), at in any::<i64>(),
            name in "\\PC{0,10}", usage in any::<u64>(),
        ) {
            let mut sample = group("g", at);
            sample.containers[0].cpu_millicores = millicores;
            sample.containers[0].name = name;
            sample.containers[0].cpu_usage_ns = usage;
            sample.rx_bytes_per_second = rx_rate;
            for row in to_samples(&node::Metrics { groups: vec![sample] }, NOW) {
                prop_assert!(row.cpu_millicores.is_finite() && row.cpu_millicores >= 0.0);
                prop_assert!(row.rx_bytes_per_second.is_finite() && row.rx_bytes_per_second >= 0.0);
                prop_assert!((row.at_ms - NOW).abs() <= MAX_AGE_MS);
                prop_assert!(!row.group_id.is_empty());
                prop_assert!(i64::try_from(row.cpu_usage_ns).is_ok());
            }
        }
    }
}
