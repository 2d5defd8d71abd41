//! Container groups: create, read, list, change and delete, each change one transaction.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{OperationRecord, Result};
use crate::billing::meter::{CapCause, MeterEvent};
pub use crate::model::reported::EventKind;
use crate::model::reported::ReportedStatus;
use crate::model::{GroupSpec, Size};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Desired {
    Running,
    Stopped,
}

impl Desired {
    pub fn as_str(self) -> &'static str {
        match self {
            Desired::Running => "Running",
            Desired::Stopped => "Stopped",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "Running" => Some(Desired::Running),
            "Stopped" => Some(Desired::Stopped),
            _ => None,
        }
    }
}

/// A group's `provisioningState`: how far the control plane got with its current generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProvisioningState {
    /// Waiting for a node.
    Pending,
    /// Placed; the node is pulling images or making its sandbox.
    Creating,
    /// Its spec changed; the node has not reported the new generation yet.
    Updating,
    Succeeded,
    Failed,
    /// Its node stopped reporting; its state is unknown.
    Unhealthy,
}

impl ProvisioningState {
    /// ARM's canonical string (also as stored).
    pub fn as_str(self) -> &'static str {
        match self {
            ProvisioningState::Pending => "Pending",
            ProvisioningState::Creating => "Creating",
            ProvisioningState::Updating => "Updating",
            ProvisioningState::Succeeded => "Succeeded",
            ProvisioningState::Failed => "Failed",
            ProvisioningState::Unhealthy => "Unhealthy",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            ProvisioningState::Pending,
            ProvisioningState::Creating,
            ProvisioningState::Updating,
            ProvisioningState::Succeeded,
            ProvisioningState::Failed,
            ProvisioningState::Unhealthy,
        ]
        .into_iter()
        .find(|p| p.as_str() == s)
    }
}

/// An event the control plane adds to a group (scheduling, node health), shown in `instanceView.events`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupEvent {
    pub name: String,
    pub message: String,
    pub kind: EventKind,
    pub count: u32,
    pub first_ms: i64,
    pub last_ms: i64,
}

/// `(subscription, resource group, name)`; the resource group compares case-insensitively.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupKey {
    pub subscription: String,
    pub resource_group: String,
    pub name: String,
}

impl GroupKey {
    pub fn new(subscription: &str, resource_group: &str, name: &str) -> Self {
        Self {
            subscription: subscription.to_owned(),
            resource_group: resource_group.to_ascii_lowercase(),
            name: name.to_owned(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct GroupRecord {
    pub id: String,
    pub seq: i64,
    pub subscription: String,
    /// As its creator wrote it.
    pub resource_group: String,
    pub name: String,
    pub location: String,
    pub tags: BTreeMap<String, String>,
    /// Secrets removed.
    pub spec: GroupSpec,
    pub requests: Size,
    pub fqdn: Option<String>,
    pub generation: i64,
    pub desired: Desired,
    pub provisioning_state: ProvisioningState,
    pub node_id: Option<String>,
    /// The placement epoch: bumped by every placement (`GroupAssignment.placement`); a report with
    /// another one is about a copy left behind and is ignored.
    pub placement: i64,
    /// The node's last report, if any.
    pub status: Option<ReportedStatus>,
    pub events: Vec<GroupEvent>,
    pub created_ms: i64,
    pub updated_ms: i64,
}

/// What the store needs to create a group.
#[derive(Debug, Clone)]
pub struct NewGroup {
    pub id: String,
    pub key: GroupKey,
    pub resource_group_as: String,
    pub location: String,
    pub tags: BTreeMap<String, String>,
    pub spec: GroupSpec,
    pub sealed_spec: Vec<u8>,
    pub fqdn: Option<String>,
    pub now_ms: i64,
    pub operation_id: String,
    pub resource_id: String,
    /// The subscription's quota: groups and millicores.
    pub quota: (i64, u64),
}

/// What a guarded change of a group did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Done; the group's generation is now this.
    Applied {
        generation: i64,
    },
    /// Refused, nothing changed: the group changed since the caller read it (its generation moved,
    /// or a start found it running).
    Moved,
    NotFound,
}

/// Container groups.
#[async_trait::async_trait]
pub trait GroupStore: Send + Sync {
    async fn group(&self, key: &GroupKey) -> Result<Option<GroupRecord>>;
    async fn group_by_id(&self, id: &str) -> Result<Option<GroupRecord>>;
    /// Groups of a subscription (optionally one resource group) with `seq > after`, in `seq` order.
    async fn list_groups(
        &self,
        subscription: &str,
        resource_group: Option<&str>,
        after: i64,
        limit: i64,
    ) -> Result<Vec<GroupRecord>>;
    /// Inserts a new group and its create operation, counting it against the subscription's quota,
    /// and its resource group if that does not exist yet (with the group's location).
    /// `Conflict` if the name or FQDN is taken, `QuotaExceeded` past the quota, `ResourceGroupLimit`
    /// if the resource group is new and the subscription has as many as it may.
    async fn create_group(&self, group: &NewGroup) -> Result<()>;
    /// Replaces the spec (and FQDN: `None` for none) of an existing group in place (same node, same
    /// capacity), bumping its generation and recording `operation` for the new one, if the group is
    /// still at `expected_generation` (else `Moved`, nothing changed). `Conflict::DnsLabel` if
    /// another group holds `fqdn`.
    #[allow(clippy::too_many_arguments)]
    async fn update_group(
        &self,
        id: &str,
        expected_generation: i64,
        spec: &GroupSpec,
        sealed: &[u8],
        tags: &BTreeMap<String, String>,
        fqdn: Option<&str>,
        operation: &OperationRecord,
        now_ms: i64,
    ) -> Result<Change>;
    async fn set_tags(&self, id: &str, tags: &BTreeMap<String, String>, now_ms: i64) -> Result<()>;
    /// Deletes the group, releasing its capacity and ending its billing at `now_ms`; returns the group
    /// as it was. Of racing deletes one gets the group, the others `None`; capacity is released once.
    async fn delete_group(&self, id: &str, now_ms: i64) -> Result<Option<GroupRecord>>;
    /// Stops the group: releases capacity, unassigns it, cancels pending operations, ends its billing.
    /// Returns the group as it was when it was stopped (its `node_id` is the node to tell).
    async fn stop_group(&self, id: &str, now_ms: i64) -> Result<Option<GroupRecord>>;
    /// Starts a stopped group again (back to the scheduler) with a new generation; `Moved` if it is
    /// not stopped.
    async fn start_group(
        &self,
        id: &str,
        operation: &OperationRecord,
        now_ms: i64,
    ) -> Result<Change>;
    /// Restarts a running group in place with a new generation; returns the node the group is on as
    /// the transaction saw it (`None`: not placed), the one to tell.
    async fn restart_group(
        &self,
        id: &str,
        operation: &OperationRecord,
        now_ms: i64,
    ) -> Result<Option<String>>;
    /// The whole spec, secrets included, for the agent.
    async fn sealed_spec(&self, id: &str) -> Result<Option<Vec<u8>>>;
    /// A group with its sealed spec, in one read (for assignments).
    async fn group_with_sealed(&self, id: &str) -> Result<Option<(GroupRecord, Vec<u8>)>>;
    /// Many groups with their sealed specs (those that still exist), in few reads.
    async fn groups_with_sealed(&self, ids: &[String]) -> Result<Vec<(GroupRecord, Vec<u8>)>>;
    /// Groups assigned to a node.
    async fn groups_on_node(&self, node_id: &str) -> Result<Vec<GroupRecord>>;
    /// Every group with an FQDN and an address published: `(fqdn, addresses)` of the groups that
    /// should run, are placed, and whose node reports them running with an IP (for DNS).
    async fn dns_records(&self) -> Result<Vec<(String, Vec<std::net::IpAddr>)>>;
}

/// The API stopped or deleted `group` at `now_ms`: its runs end there at the latest.
pub(super) fn capped(group: &GroupRecord, now_ms: i64, cause: CapCause) -> MeterEvent {
    MeterEvent::Capped {
        group_id: group.id.clone(),
        generation: group.generation,
        at_ms: now_ms,
        cause,
    }
}
