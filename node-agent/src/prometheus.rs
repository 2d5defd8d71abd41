//! The agent's `/metrics`, served over plain HTTP without auth where `--metrics-listen` says (off
//! by default): for every node of the process, the newest sample of each container (cAdvisor's
//! names, from the sampling [`Board`]), its groups by phase, and how often its `Sync` stream had to
//! be dialled again. The OpenMetrics text format, by `prometheus-client`'s encoder.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse as _, Response};
use axum::routing::get;
use berth_proto::cadvisor::Families;
use berth_proto::node::GroupPhase;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::runtime::Runtime;
use crate::sampling::{Board, SampledGroup};

/// The media type of the answer.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeLabels {
    node: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabels {
    node: String,
    phase: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GroupLabels {
    node: String,
    subscription: String,
    resource_group: String,
    container_group: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ContainerLabels {
    node: String,
    subscription: String,
    resource_group: String,
    container_group: String,
    container: String,
}

/// The agent process's metrics: cheap to clone (shared).
#[derive(Clone, Default)]
pub struct AgentMetrics {
    reconnects: Family<NodeLabels, Counter>,
    /// Each node's runtime, read at scrape time for its groups' phases.
    runtimes: Arc<Mutex<BTreeMap<String, Arc<dyn Runtime>>>>,
}

impl std::fmt::Debug for AgentMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentMetrics").finish_non_exhaustive()
    }
}

impl AgentMetrics {
    /// Node `node`'s runtime, whose groups a scrape counts by phase.
    pub(crate) fn watch_runtime(&self, node: &str, runtime: Arc<dyn Runtime>) {
        self.lock().insert(node.to_owned(), runtime);
    }

    /// The counter node `node`'s sync loop adds one to each time it dials again.
    pub(crate) fn reconnects(&self, node: &str) -> Counter {
        self.reconnects.get_or_create_owned(&NodeLabels {
            node: node.to_owned(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Arc<dyn Runtime>>> {
        self.runtimes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The exposition: every family, in the OpenMetrics text format.
    pub fn render(&self, board: &Board) -> Result<String, std::fmt::Error> {
        let mut registry = Registry::default();
        registry.register(
            "berth_agent_sync_reconnects",
            "Times the node dialled its Sync stream again after it ended or could not be opened",
            self.reconnects.clone(),
        );
        let phases = Family::<PhaseLabels, Gauge>::default();
        let runtimes: Vec<(String, Arc<dyn Runtime>)> = self
            .lock()
            .iter()
            .map(|(node, runtime)| (node.clone(), Arc::clone(runtime)))
            .collect();
        for (node, runtime) in runtimes {
            for group in runtime.groups() {
                let phase = GroupPhase::try_from(group.phase).unwrap_or(GroupPhase::Unspecified);
                phases
                    .get_or_create(&PhaseLabels {
                        node: node.clone(),
                        phase: phase_label(phase),
                    })
                    .inc();
            }
        }
        registry.register(
            "berth_agent_groups",
            "The node's container groups by phase",
            phases,
        );
        register_samples(&mut registry, &board.snapshot());
        let mut text = String::new();
        encode_registry(&mut text, &registry)?;
        encode_eof(&mut text)?;
        Ok(text)
    }
}

fn phase_label(phase: GroupPhase) -> &'static str {
    match phase {
        GroupPhase::Unspecified => "Unspecified",
        GroupPhase::Pending => "Pending",
        GroupPhase::Running => "Running",
        GroupPhase::Succeeded => "Succeeded",
        GroupPhase::Failed => "Failed",
        GroupPhase::Stopped => "Stopped",
        GroupPhase::Removed => "Removed",
    }
}

/// The per-container series (and the groups' network counters), with cAdvisor's names.
fn register_samples(registry: &mut Registry, nodes: &[(String, Arc<Vec<SampledGroup>>)]) {
    let families = Families::<ContainerLabels, GroupLabels>::default();
    for (node, groups) in nodes {
        for group in groups.iter() {
            let labels = GroupLabels {
                node: node.clone(),
                subscription: group.subscription.clone(),
                resource_group: group.resource_group.clone(),
                container_group: group.name.clone(),
            };
            families.group(&labels, group.sample.rx_bytes, group.sample.tx_bytes);
            for container in &group.sample.containers {
                let labels = ContainerLabels {
                    node: labels.node.clone(),
                    subscription: labels.subscription.clone(),
                    resource_group: labels.resource_group.clone(),
                    container_group: labels.container_group.clone(),
                    container: container.name.clone(),
                };
                families.container(
                    &labels,
                    container.cpu_usage_ns,
                    container.memory_working_set_bytes,
                );
            }
        }
    }
    families.register(registry);
}

#[derive(Clone)]
struct Served {
    metrics: AgentMetrics,
    board: Board,
}

async fn metrics(State(served): State<Served>) -> Response {
    match served.metrics.render(&served.board) {
        Ok(text) => {
            let mut response = text.into_response();
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
            response
        }
        Err(_) => {
            tracing::error!("the metrics could not be encoded");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// Serves `GET /metrics` on `listener` until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    metrics: AgentMetrics,
    board: Board,
    shutdown: CancellationToken,
) {
    let app = Router::new()
        .route("/metrics", get(self::metrics))
        .with_state(Served { metrics, board });
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await;
    if let Err(error) = served {
        tracing::error!(%error, "the metrics listener stopped");
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use berth_proto::node::{ContainerSample, GroupSample};

    use super::*;

    #[test]
    fn samples_become_cadvisor_series_labelled_with_the_node_and_arm_names() {
        let board = Board::default();
        board.publish(
            "n1",
            vec![SampledGroup {
                subscription: "sub".to_owned(),
                resource_group: "rg".to_owned(),
                name: "web".to_owned(),
                sample: GroupSample {
                    group_id: "g1".to_owned(),
                    rx_bytes: 7,
                    tx_bytes: 8,
                    containers: vec![ContainerSample {
                        name: "app".to_owned(),
                        cpu_usage_ns: 1_500_000_000,
                        cpu_millicores: 10.0,
                        memory_working_set_bytes: 2048,
                    }],
                    ..GroupSample::default()
                },
            }],
        );
        let metrics = AgentMetrics::default();
        metrics.reconnects("n1").inc();
        let text = metrics.render(&board).unwrap();
        for line in [
            "berth_agent_sync_reconnects_total{node=\"n1\"} 1",
            "container_cpu_usage_seconds_total{node=\"n1\",subscription=\"sub\",resource_group=\"rg\",container_group=\"web\",container=\"app\"} 1.5",
            "container_memory_working_set_bytes{node=\"n1\",subscription=\"sub\",resource_group=\"rg\",container_group=\"web\",container=\"app\"} 2048",
            "container_network_receive_bytes_total{node=\"n1\",subscription=\"sub\",resource_group=\"rg\",container_group=\"web\"} 7",
            "container_network_transmit_bytes_total{node=\"n1\",subscription=\"sub\",resource_group=\"rg\",container_group=\"web\"} 8",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from\n{text}"
            );
        }
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
