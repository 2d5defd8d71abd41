//! Building `GroupAssignment`s: a group's record and its sealed spec in, the spec unsealed and turned
//! into the node's protobuf out. Reads the store; sends nothing (the sessions do).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use berth_proto::node::{DesiredPhase, GroupAssignment};

use crate::model::GroupSpec;
use crate::secrets::SecretBox;
use crate::store::{GroupRecord, Placement, Store, StoreError};

pub(super) struct Assignments {
    store: Arc<dyn Store>,
    secrets: Arc<SecretBox>,
}

impl Assignments {
    pub(super) fn new(store: Arc<dyn Store>, secrets: Arc<SecretBox>) -> Self {
        Self { store, secrets }
    }

    /// The assignment of one group, secrets included, or None if it is gone.
    pub(super) async fn one(&self, group_id: &str) -> Result<Option<GroupAssignment>, StoreError> {
        match self.store.group_with_sealed(group_id).await? {
            Some((group, sealed)) => self.build(&group, &sealed).map(Some),
            None => Ok(None),
        }
    }

    /// The assignments of committed placements, by node, in one read. A group that is gone is left
    /// out; one whose spec cannot be opened is logged and left out.
    pub(super) async fn placed(
        &self,
        placements: &[Placement],
    ) -> Result<BTreeMap<String, Vec<GroupAssignment>>, StoreError> {
        let ids: Vec<String> = placements.iter().map(|p| p.group_id.clone()).collect();
        let node_of: HashMap<&str, &str> = placements
            .iter()
            .map(|p| (p.group_id.as_str(), p.node_id.as_str()))
            .collect();
        let rows = self.store.groups_with_sealed(&ids).await?;
        let mut by_node: BTreeMap<String, Vec<GroupAssignment>> = BTreeMap::new();
        for (group, sealed) in rows {
            let Some(node) = node_of.get(group.id.as_str()) else {
                continue;
            };
            match self.build(&group, &sealed) {
                Ok(a) => by_node.entry((*node).to_owned()).or_default().push(a),
                Err(err) => {
                    tracing::error!(error = %err, group = %group.id, "cannot build assignment")
                }
            }
        }
        Ok(by_node)
    }

    /// The assignments of groups `ids` that are on `node_id` now, in one read (another replica
    /// placed or changed them; one that moved or is gone is left out).
    pub(super) async fn of_node(
        &self,
        node_id: &str,
        ids: &[String],
    ) -> Result<Vec<GroupAssignment>, StoreError> {
        let mut groups = Vec::with_capacity(ids.len());
        for (group, sealed) in self.store.groups_with_sealed(ids).await? {
            if group.node_id.as_deref() != Some(node_id) {
                continue;
            }
            match self.build(&group, &sealed) {
                Ok(a) => groups.push(a),
                Err(err) => {
                    tracing::error!(error = %err, group = %group.id, "cannot build assignment")
                }
            }
        }
        Ok(groups)
    }

    /// Everything assigned to `node_id` now (its full state).
    pub(super) async fn on_node(&self, node_id: &str) -> Result<Vec<GroupAssignment>, StoreError> {
        let ids: Vec<String> = self
            .store
            .groups_on_node(node_id)
            .await?
            .into_iter()
            .map(|g| g.id)
            .collect();
        let mut groups = Vec::with_capacity(ids.len());
        for (group, sealed) in self.store.groups_with_sealed(&ids).await? {
            // Only what is still assigned here: a group may have moved since the first read.
            if group.node_id.as_deref() == Some(node_id) {
                groups.push(self.build(&group, &sealed)?);
            }
        }
        Ok(groups)
    }

    fn build(&self, group: &GroupRecord, sealed: &[u8]) -> Result<GroupAssignment, StoreError> {
        let plain = self
            .secrets
            .open(sealed)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        assignment(group, &plain)
    }
}

/// The assignment of `group` whose unsealed spec is `plain` (its JSON).
fn assignment(group: &GroupRecord, plain: &[u8]) -> Result<GroupAssignment, StoreError> {
    let spec: GroupSpec = serde_json::from_slice(plain)
        .map_err(|e| StoreError::Corrupt(format!("sealed spec: {e}")))?;
    Ok(GroupAssignment {
        group_id: group.id.clone(),
        generation: group.generation as u64,
        phase: DesiredPhase::Running as i32,
        placement: group.placement as u64,
        spec: Some(spec.to_proto(
            &group.name,
            &group.subscription,
            &group.resource_group,
            group.fqdn.as_deref(),
        )),
    })
}
