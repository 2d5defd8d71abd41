//! The state store: a [`Store`] trait and its SQLite implementation.
//!
//! Every write that belongs together is one transaction: a group and its operation; a placement and
//! its capacity reservation; a status report and the operations it finishes. Node capacity is also
//! guarded by `CHECK` constraints, so no bug above the store can overcommit a node.

mod sqlite;

use std::collections::BTreeMap;

pub use sqlite::SqliteStore;

use serde::{Deserialize, Serialize};

use crate::model::{GroupSpec, OsType, Size};

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed or refused a statement.
    #[error("database error")]
    Database(#[from] sqlx::Error),
    /// Running migrations failed.
    #[error("migration failed")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored JSON column did not parse.
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// A uniqueness rule was broken.
    #[error("{0}")]
    Conflict(Conflict),
    /// The store is shutting down or its writer failed.
    #[error("the store is unavailable")]
    Unavailable,
    /// An export's destination went away (the client disconnected) or failed.
    #[error("the export's destination failed")]
    Sink(#[source] std::io::Error),
    /// The store cannot serve this (an in-memory database has no file for an export to read).
    #[error("{0}")]
    Unsupported(&'static str),
    /// The subscription's quota would be exceeded; carries the usage before the request.
    #[error("quota exceeded: {groups} groups, {cpu_millis} millicores in use")]
    QuotaExceeded { groups: i64, cpu_millis: u64 },
    /// A new resource group would pass [`RESOURCE_GROUPS_PER_SUBSCRIPTION`].
    #[error("the subscription has {RESOURCE_GROUPS_PER_SUBSCRIPTION} resource groups already")]
    ResourceGroupLimit,
}

/// Which uniqueness rule a write broke. (A node name taken at join is a [`JoinRefusal`], not this.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Conflict {
    /// A group of that (subscription, resource group, name) exists.
    #[error("a container group of that name exists")]
    GroupName,
    /// Another group holds that FQDN (its DNS name label, in its reuse scope).
    #[error("the DNS name label is taken")]
    DnsLabel,
}

/// How many resource groups a subscription may have (ARM's limit).
pub const RESOURCE_GROUPS_PER_SUBSCRIPTION: i64 = 980;

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A stored API token (the secret itself is never stored, only its SHA-256).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    pub id: String,
    pub hash: String,
    /// What listings show of the token: `berth_<id>_` and the first few characters of the secret.
    pub prefix: String,
    pub subscriptions: Vec<String>,
    pub operator: bool,
    pub created_ms: i64,
    /// `None`: never expires.
    pub expires_ms: Option<i64>,
    pub revoked_ms: Option<i64>,
    /// When a request last carried it, as last written (every few seconds, not per request).
    pub last_used_ms: Option<i64>,
}

/// What revoking a token did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revocation {
    /// Revoked now, or already (then `revoked_ms` is the first revocation's).
    Revoked(TokenRecord),
    NotFound,
    /// Refused: it is the last operator token that is neither revoked nor expired, and without it
    /// nobody could administer the cluster.
    LastOperator,
}

/// A node's last message as the gateway saw it, for [`Store::record_heartbeats`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heartbeat {
    pub node_id: String,
    /// Apiserver clock.
    pub at_ms: i64,
    /// The node's clock in it (0: none).
    pub node_clock_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeStatus {
    Ready,
    NotReady,
}

impl NodeStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeStatus::Ready => "Ready",
            NodeStatus::NotReady => "NotReady",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct NodeRecord {
    pub id: String,
    pub name: String,
    pub os_type: OsType,
    pub capacity: Size,
    pub used: Size,
    pub labels: BTreeMap<String, String>,
    pub agent_version: String,
    pub status: NodeStatus,
    pub last_heartbeat_ms: i64,
    pub joined_ms: i64,
}

impl NodeRecord {
    pub fn free(&self) -> Size {
        self.capacity.saturating_sub(&self.used)
    }
}

/// Why a join was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JoinRefusal {
    /// Unknown token, wrong secret, no uses left or expired: deliberately one answer.
    InvalidToken,
    NameTaken,
}

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
}

/// An event the control plane adds to a group (scheduling, node health), shown in `instanceView.events`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupEvent {
    pub name: String,
    pub message: String,
    pub kind: String,
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
    pub provisioning_state: String,
    pub node_id: Option<String>,
    /// The node's last report, if any.
    pub status: Option<berth_proto::node::GroupStatus>,
    pub events: Vec<GroupEvent>,
    pub created_ms: i64,
    pub updated_ms: i64,
}

/// A resource group: a subscription's named set of container groups, with ARM's attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceGroupRecord {
    pub subscription: String,
    /// As its creator wrote it; compared without case.
    pub name: String,
    pub location: String,
    pub tags: BTreeMap<String, String>,
    pub created_ms: i64,
    pub updated_ms: i64,
}

/// What creating a resource group did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourceGroupCreation {
    Created,
    /// One of that name (in any case) exists; nothing changed.
    Exists,
    /// The subscription has [`RESOURCE_GROUPS_PER_SUBSCRIPTION`] already; nothing changed.
    LimitReached,
}

/// What deleting a resource group did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourceGroupDeletion {
    Deleted,
    NotFound,
    /// Container groups are (again) in it; nothing changed.
    NotEmpty,
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

/// A group waiting for a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingGroup {
    pub id: String,
    pub os_type: OsType,
    pub requests: Size,
    pub generation: i64,
    /// The last scheduling event's message, so an unchanged reason is not rewritten every round.
    pub last_reason: Option<String>,
}

/// A decision of the scheduler, to be committed with its capacity reservation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub group_id: String,
    pub node_id: String,
    pub requests: Size,
    pub generation: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperationRecord {
    pub id: String,
    pub subscription: String,
    pub group_id: String,
    pub resource_id: String,
    pub kind: String,
    pub generation: i64,
    pub status: String,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub started_ms: i64,
    pub ended_ms: Option<i64>,
}

/// A node's report of one group, with the node's sequence number for it.
#[derive(Debug, Clone)]
pub struct NodeReport {
    pub node_id: String,
    pub seq: u64,
    pub status: berth_proto::node::GroupStatus,
}

/// Which usage an export reads: rows starting in `[from_ms, to_ms)` after widening `from_ms` to its UTC
/// day (ledger rows never cross a day, so this holds every row that overlaps the window).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageFilter {
    pub from_ms: i64,
    pub to_ms: i64,
    pub subscription: Option<String>,
}

/// Who a usage row is about.
#[derive(Debug, Clone, Copy)]
pub struct UsageGroup<'a> {
    pub id: &'a str,
    pub subscription: &'a str,
    pub resource_group: &'a str,
    pub name: &'a str,
    pub location: &'a str,
    /// A JSON object.
    pub tags: &'a str,
    pub os_type: &'a str,
    pub node_id: &'a str,
}

/// One ledger row, or one day of an open run accrued to now (`ledger_id` 0, `accrued`).
#[derive(Debug, Clone, Copy)]
pub struct UsageRow<'a> {
    pub ledger_id: i64,
    /// Who on which node: the same number for every row of the same (group, node), so readers of
    /// many rows can keep per-subject work (`usage_subjects.key`).
    pub subject: i64,
    pub meter: &'a str,
    pub start_ms: i64,
    pub end_ms: i64,
    /// Integer units of the meter over the whole row; negative for a correction.
    pub quantity: i64,
    pub accrued: bool,
    pub group: UsageGroup<'a>,
}

/// Reads usage for an export on its own connection, from one consistent snapshot. Blocking: run it on
/// a blocking thread.
pub trait UsageReader: Send {
    /// About how many ledger rows the filter selects (for progress bars): the rows of the days the
    /// window touches, all subscriptions.
    fn estimate(&mut self, filter: &UsageFilter) -> Result<u64>;
    /// Calls `each` for every ledger row and accrued piece the filter selects, in order of start
    /// (then ledger id); stops at the first error `each` returns.
    fn read(
        &mut self,
        filter: &UsageFilter,
        now_ms: i64,
        each: &mut dyn FnMut(&UsageRow<'_>) -> std::io::Result<()>,
    ) -> Result<()>;
}

/// What changed when a node's report was applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatusOutcome {
    /// Stored; the group's provisioning state is now this.
    Applied { provisioning_state: String },
    /// The group is not assigned to this node, or the report is about an older generation.
    Ignored,
}

/// The state store. SQLite is the embedded default; PostgreSQL follows with the same schema.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    // ---- tokens ----
    async fn insert_token(&self, token: &TokenRecord) -> Result<()>;
    async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRecord>>;
    async fn token_by_id(&self, id: &str) -> Result<Option<TokenRecord>>;
    /// Every token, revoked and expired ones included, oldest first.
    async fn tokens(&self) -> Result<Vec<TokenRecord>>;
    /// Revokes a token at `now_ms` (idempotent), unless it is the last live operator token.
    async fn revoke_token(&self, id: &str, now_ms: i64) -> Result<Revocation>;
    /// Records when tokens `(id, at_ms)` were last used, in one statement; never moves a time back.
    async fn record_token_use(&self, used: &[(String, i64)]) -> Result<()>;
    async fn count_tokens(&self) -> Result<i64>;
    async fn insert_join_token(
        &self,
        id: &str,
        secret_hash: &str,
        uses: u32,
        expires_ms: i64,
        now_ms: i64,
    ) -> Result<()>;

    // ---- nodes ----
    /// Consumes one use of the join token and records the node, in one transaction.
    async fn join_node(
        &self,
        token_id: &str,
        secret_hash: &str,
        node: &NodeRecord,
    ) -> Result<Result<(), JoinRefusal>>;
    async fn nodes(&self) -> Result<Vec<NodeRecord>>;
    async fn node(&self, id: &str) -> Result<Option<NodeRecord>>;
    /// Sets a node's readiness; NotReady also marks its groups `Unhealthy` with an event.
    /// NotReady also ends billing of the node's runs at its last message (the latest node clock known,
    /// `node_clock_ms` or stored), until it reports them again. `last_heartbeat_ms` never moves the
    /// stored one back.
    async fn set_node_status(
        &self,
        id: &str,
        status: NodeStatus,
        last_heartbeat_ms: i64,
        node_clock_ms: i64,
    ) -> Result<()>;
    /// Records nodes' last messages in one statement per few hundred nodes (the gateway calls it
    /// every few seconds with the nodes whose heartbeat moved); never moves either time back.
    async fn record_heartbeats(&self, beats: &[Heartbeat]) -> Result<()>;

    // ---- groups ----
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
    /// Replaces the spec of an existing group in place (same node, same capacity), bumping its generation.
    async fn update_group(
        &self,
        id: &str,
        spec: &GroupSpec,
        sealed: &[u8],
        tags: &BTreeMap<String, String>,
        operation: &OperationRecord,
        now_ms: i64,
    ) -> Result<i64>;
    async fn set_tags(&self, id: &str, tags: &BTreeMap<String, String>, now_ms: i64) -> Result<()>;
    /// Deletes the group, releasing its capacity and ending its billing at `now_ms`; returns the group
    /// as it was.
    async fn delete_group(&self, id: &str, now_ms: i64) -> Result<Option<GroupRecord>>;
    /// Stops the group: releases capacity, unassigns it, cancels pending operations, ends its billing.
    /// Returns the group as the transaction found it (its `node_id` is the node to tell), `None` if
    /// it is gone.
    async fn stop_group(&self, id: &str, now_ms: i64) -> Result<Option<GroupRecord>>;
    /// Starts a stopped group again (back to the scheduler) with a new generation.
    async fn start_group(&self, id: &str, operation: &OperationRecord, now_ms: i64) -> Result<i64>;
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
    /// A subscription's group count and requested CPU (for usages).
    async fn usage(&self, subscription: &str) -> Result<(i64, Size)>;

    // ---- resource groups ----
    /// A resource group by name (compared without case).
    async fn resource_group(
        &self,
        subscription: &str,
        name: &str,
    ) -> Result<Option<ResourceGroupRecord>>;
    /// A subscription's resource groups, by name.
    async fn resource_groups(&self, subscription: &str) -> Result<Vec<ResourceGroupRecord>>;
    /// Creates a resource group unless one of its name exists or the subscription is at its limit.
    async fn create_resource_group(
        &self,
        group: &ResourceGroupRecord,
    ) -> Result<ResourceGroupCreation>;
    async fn set_resource_group_tags(
        &self,
        subscription: &str,
        name: &str,
        tags: &BTreeMap<String, String>,
        now_ms: i64,
    ) -> Result<()>;
    /// Deletes a resource group that holds no container group.
    async fn delete_resource_group(
        &self,
        subscription: &str,
        name: &str,
    ) -> Result<ResourceGroupDeletion>;

    // ---- scheduling ----
    async fn pending_groups(&self, limit: i64) -> Result<Vec<PendingGroup>>;
    /// Commits placements, each with its capacity reservation; returns the ones that held (a node
    /// that filled up or went NotReady meanwhile, or a group deleted meanwhile, drops out).
    async fn commit_placements(
        &self,
        placements: &[Placement],
        now_ms: i64,
    ) -> Result<Vec<Placement>>;
    /// Adds or refreshes an event on a group.
    async fn record_event(&self, group_id: &str, event: GroupEvent) -> Result<()>;
    /// Fails a group that can never be placed.
    async fn fail_group(
        &self,
        group_id: &str,
        code: &str,
        message: &str,
        now_ms: i64,
    ) -> Result<()>;

    // ---- node reports ----
    async fn apply_status(
        &self,
        node_id: &str,
        status: &berth_proto::node::GroupStatus,
        now_ms: i64,
    ) -> Result<StatusOutcome>;
    /// Applies many reports in one transaction, in order, metering each; records each node's latest
    /// clock (`node_clocks`: node id, node time of its latest message).
    async fn apply_statuses(
        &self,
        reports: &[NodeReport],
        node_clocks: &[(String, i64)],
        now_ms: i64,
    ) -> Result<Vec<StatusOutcome>>;

    /// The node id of every placed group (for per-node counts).
    async fn group_counts_by_node(&self) -> Result<Vec<String>>;

    // ---- billing ----
    /// A reader for exports, on its own connection.
    fn usage_reader(&self) -> Result<Box<dyn UsageReader>>;

    // ---- operations ----
    async fn insert_operation(&self, operation: &OperationRecord) -> Result<()>;
    async fn operation(&self, id: &str) -> Result<Option<OperationRecord>>;
}
