//! What a scrape reads at its time, and the registry it becomes: the store's census (nodes by
//! status, groups by state, groups waiting, ledger rows), the embedded DNS server's counts, and the
//! newest sample of every container of every node (as the metrics API keeps them).

use berth_proto::cadvisor::Families;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::store::{Census, LabeledSample, Store, StoreError};

/// Samples older than this are left out: their container is gone or its node silent.
pub(super) const FRESHNESS_MS: i64 = 2 * 60 * 1000;

/// What one scrape read.
#[derive(Debug, Default)]
pub(super) struct Taken {
    /// `None` if the store could not be read (the other families still go out).
    pub(super) census: Option<Census>,
    pub(super) dns: Vec<berth_dns::QueryCount>,
    pub(super) samples: Vec<LabeledSample>,
}

impl Taken {
    pub(super) async fn read(store: &dyn Store, dns: Option<&berth_dns::QueryCounts>) -> Self {
        let census = match store.census().await {
            Ok(census) => Some(census),
            Err(error) => {
                tracing::warn!(error = %error, "metrics: the store's counts cannot be read");
                None
            }
        };
        let since = crate::now_ms() - FRESHNESS_MS;
        let samples = match store.latest_samples(since).await {
            Ok(samples) => samples,
            // A store that keeps no samples: no per-container series.
            Err(StoreError::Unsupported(_)) => Vec::new(),
            Err(error) => {
                tracing::warn!(error = %error, "metrics: the containers' samples cannot be read");
                Vec::new()
            }
        };
        Self {
            census,
            dns: dns
                .map(berth_dns::QueryCounts::snapshot)
                .unwrap_or_default(),
            samples,
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GroupStateLabels {
    state: String,
    desired: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DnsLabels {
    transport: &'static str,
    rcode: &'static str,
}

/// A group's labels: its ARM names.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GroupLabels {
    subscription: String,
    resource_group: String,
    container_group: String,
}

/// A container's labels: its group's ARM names and its own.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ContainerLabels {
    subscription: String,
    resource_group: String,
    container_group: String,
    container: String,
}

fn gauge(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The families of one scrape.
pub(super) fn registry(taken: &Taken) -> Registry {
    let mut registry = Registry::default();
    if let Some(census) = &taken.census {
        let nodes = Family::<StatusLabels, Gauge>::default();
        for (status, n) in &census.nodes {
            nodes
                .get_or_create(&StatusLabels {
                    status: status.clone(),
                })
                .set(gauge(*n));
        }
        registry.register("berth_nodes", "Nodes by status", nodes);
        let groups = Family::<GroupStateLabels, Gauge>::default();
        for g in &census.groups {
            groups
                .get_or_create(&GroupStateLabels {
                    state: g.provisioning_state.clone(),
                    desired: g.desired.clone(),
                })
                .set(gauge(g.count));
        }
        registry.register(
            "berth_groups",
            "Container groups by provisioning state and desired state (Running or Stopped)",
            groups,
        );
        let pending = Gauge::<i64>::default();
        pending.set(gauge(census.pending_groups));
        registry.register(
            "berth_scheduler_pending_groups",
            "Groups waiting for a node",
            pending,
        );
        let ledger = Gauge::<i64>::default();
        ledger.set(gauge(census.ledger_rows));
        registry.register("berth_ledger_rows", "Rows in the usage ledger", ledger);
    }
    let dns = Family::<DnsLabels, Counter>::default();
    for q in &taken.dns {
        dns.get_or_create(&DnsLabels {
            transport: q.transport.as_str(),
            rcode: q.rcode,
        })
        .inc_by(q.count);
    }
    registry.register(
        "berth_dns_queries",
        "Queries the embedded DNS server answered, by transport and response code",
        dns,
    );
    register_samples(&mut registry, &taken.samples);
    registry
}

/// The per-container series, with cAdvisor's names.
fn register_samples(registry: &mut Registry, samples: &[LabeledSample]) {
    let families = Families::<ContainerLabels, GroupLabels>::default();
    for s in samples {
        let group = GroupLabels {
            subscription: s.subscription.clone(),
            resource_group: s.resource_group.clone(),
            container_group: s.group_name.clone(),
        };
        if s.sample.container.is_empty() {
            families.group(&group, s.sample.rx_bytes, s.sample.tx_bytes);
            continue;
        }
        let container = ContainerLabels {
            subscription: group.subscription,
            resource_group: group.resource_group,
            container_group: group.container_group,
            container: s.sample.container.clone(),
        };
        families.container(&container, s.sample.cpu_usage_ns, s.sample.memory_bytes);
    }
    families.register(registry);
}

#[cfg(test)]
mod tests {
    use prometheus_client::encoding::text::encode;

    use super::*;
    use crate::store::{GroupCount, MetricSample};

    fn sample(container: &str) -> LabeledSample {
        LabeledSample {
            subscription: "sub".to_owned(),
            resource_group: "rg".to_owned(),
            group_name: "web".to_owned(),
            sample: MetricSample {
                group_id: "g1".to_owned(),
                container: container.to_owned(),
                at_ms: 1,
                cpu_usage_ns: 2_500_000_000,
                cpu_millicores: 250.0,
                memory_bytes: 4096,
                rx_bytes: 10,
                tx_bytes: 20,
                rx_bytes_per_second: 0.0,
                tx_bytes_per_second: 0.0,
            },
        }
    }

    fn text(taken: &Taken) -> String {
        let mut out = String::new();
        encode(&mut out, &registry(taken)).unwrap();
        out
    }

    #[test]
    fn a_scrape_shows_the_census_dns_counts_and_containers_with_cadvisor_names() {
        let taken = Taken {
            census: Some(Census {
                nodes: vec![("Ready".to_owned(), 2)],
                groups: vec![GroupCount {
                    provisioning_state: "Succeeded".to_owned(),
                    desired: "Running".to_owned(),
                    count: 3,
                }],
                pending_groups: 4,
                ledger_rows: 5,
            }),
            dns: vec![berth_dns::QueryCount {
                transport: berth_dns::Transport::Udp,
                rcode: "NXDOMAIN",
                count: 6,
            }],
            samples: vec![sample("app"), sample("")],
        };
        let text = text(&taken);
        for line in [
            "berth_nodes{status=\"Ready\"} 2",
            "berth_groups{state=\"Succeeded\",desired=\"Running\"} 3",
            "berth_scheduler_pending_groups 4",
            "berth_ledger_rows 5",
            "berth_dns_queries_total{transport=\"udp\",rcode=\"NXDOMAIN\"} 6",
            "container_cpu_usage_seconds_total{subscription=\"sub\",resource_group=\"rg\",container_group=\"web\",container=\"app\"} 2.5",
            "container_memory_working_set_bytes{subscription=\"sub\",resource_group=\"rg\",container_group=\"web\",container=\"app\"} 4096",
            "container_network_receive_bytes_total{subscription=\"sub\",resource_group=\"rg\",container_group=\"web\"} 10",
            "container_network_transmit_bytes_total{subscription=\"sub\",resource_group=\"rg\",container_group=\"web\"} 20",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from\n{text}"
            );
        }
    }

    #[test]
    fn without_a_census_the_store_families_are_left_out() {
        let text = text(&Taken {
            dns: vec![berth_dns::QueryCount {
                transport: berth_dns::Transport::Tcp,
                rcode: "NOERROR",
                count: 1,
            }],
            ..Taken::default()
        });
        assert!(!text.contains("berth_nodes"), "{text}");
        assert!(!text.contains("berth_ledger_rows"), "{text}");
        assert!(
            text.contains("berth_dns_queries_total{transport=\"tcp\",rcode=\"NOERROR\"} 1"),
            "{text}"
        );
        assert!(!text.contains("container_cpu_usage_seconds"), "{text}");
    }
}
