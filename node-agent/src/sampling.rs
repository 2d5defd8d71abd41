//! The newest measurements of every node of this process: the sampling loop of each node publishes
//! there, and the agent's `/metrics` reads it.
//!
//! TODO(samples lane): the sampling loop (every `--metrics-interval`, through
//! [`crate::runtime::Runtime::sample`]) that sends `AgentReport.metrics` and publishes here.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use berth_proto::node::GroupSample;

/// One group's newest sample, with the ARM names its labels need.
#[derive(Debug, Clone, PartialEq)]
pub struct SampledGroup {
    pub subscription: String,
    pub resource_group: String,
    /// The container group's name.
    pub name: String,
    pub sample: GroupSample,
}

/// The newest samples of each node of the process, by node name. Cheap to clone (shared).
#[derive(Debug, Clone, Default)]
pub struct Board {
    nodes: Arc<Mutex<BTreeMap<String, Arc<Vec<SampledGroup>>>>>,
}

impl Board {
    /// Replaces what `node` measured last.
    pub fn publish(&self, node: &str, groups: Vec<SampledGroup>) {
        self.lock().insert(node.to_owned(), Arc::new(groups));
    }

    /// Every node's newest samples, by node name.
    pub fn snapshot(&self) -> Vec<(String, Arc<Vec<SampledGroup>>)> {
        self.lock()
            .iter()
            .map(|(node, groups)| (node.clone(), Arc::clone(groups)))
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Arc<Vec<SampledGroup>>>> {
        self.nodes.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
