//! Stored rows into the store's records, for both backends: the tables and their encodings (JSON
//! text, the node protocol's bytes for reports, integers for sizes and flags) are the same in SQLite
//! and PostgreSQL, so each record is decoded once, over [`Columns`], whatever driver read the row.

use berth_proto::node;
use prost::Message as _;

use super::*;
use crate::model::reported::{GroupPhase, ReportedStatus};
use crate::model::{GroupSpec, OsType, Size};

/// The group columns every read of a group selects (`g` is the `groups` table).
pub(super) const GROUP_COLUMNS: &str = "g.id, g.seq, g.subscription, g.resource_group_as, g.name, g.location, g.tags, g.spec, \
     g.cpu_millis, g.memory_mib, g.gpu, g.fqdn, g.generation, g.desired, g.provisioning_state, g.node_id, g.placement, \
     g.status, g.events, g.created_ms, g.updated_ms";

/// What a restart sets besides the generation (`now`: the placeholder of the time): a placed group
/// is redeployed where it is; an unplaced one waits anew from now; a settled one (taken off a lost
/// or drained node after it had finished) is placed again, its old status cleared.
pub(super) fn restart_columns(now: &str) -> String {
    format!(
        "provisioning_state = CASE WHEN node_id IS NOT NULL OR settled_ms IS NOT NULL THEN 'Pending' \
         ELSE provisioning_state END, status = CASE WHEN settled_ms IS NULL THEN status END, \
         pending_since_ms = CASE WHEN node_id IS NULL THEN {now} ELSE pending_since_ms END, settled_ms = NULL"
    )
}

/// The token columns, in the order inserts bind them.
pub(super) const TOKEN_COLUMNS: &str =
    "id, hash, prefix, subscriptions, operator, created_ms, expires_ms, revoked_ms, last_used_ms";

/// The resource group columns reads select.
pub(super) const RESOURCE_GROUP_COLUMNS: &str =
    "subscription, name_as, location, tags, created_ms, updated_ms";

/// The columns of a row, by name, as the store's tables hold them (text, integers, bytes).
pub(super) trait Columns {
    fn text(&self, column: &str) -> Result<String>;
    fn text_opt(&self, column: &str) -> Result<Option<String>>;
    fn int(&self, column: &str) -> Result<i64>;
    fn int_opt(&self, column: &str) -> Result<Option<i64>>;
    fn bytes_opt(&self, column: &str) -> Result<Option<Vec<u8>>>;
}

macro_rules! columns_of {
    ($row:ty) => {
        impl Columns for $row {
            fn text(&self, column: &str) -> Result<String> {
                Ok(sqlx::Row::try_get(self, column)?)
            }
            fn text_opt(&self, column: &str) -> Result<Option<String>> {
                Ok(sqlx::Row::try_get(self, column)?)
            }
            fn int(&self, column: &str) -> Result<i64> {
                Ok(sqlx::Row::try_get(self, column)?)
            }
            fn int_opt(&self, column: &str) -> Result<Option<i64>> {
                Ok(sqlx::Row::try_get(self, column)?)
            }
            fn bytes_opt(&self, column: &str) -> Result<Option<Vec<u8>>> {
                Ok(sqlx::Row::try_get(self, column)?)
            }
        }
    };
}

columns_of!(sqlx::sqlite::SqliteRow);
columns_of!(sqlx::postgres::PgRow);

pub(super) fn corrupt(what: &str, err: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {err}"))
}

pub(super) fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("plain data types always serialise to JSON")
}

fn parsed<T>(column: &str, value: String, parse: impl Fn(&str) -> Option<T>) -> Result<T> {
    parse(&value).ok_or_else(|| corrupt(column, &value))
}

fn from_json<T: serde::de::DeserializeOwned>(column: &str, value: &str) -> Result<T> {
    serde_json::from_str(value).map_err(|e| corrupt(column, e))
}

fn size(row: &impl Columns, cpu: &str, memory: &str, gpu: &str) -> Result<Size> {
    Ok(Size {
        cpu_millis: row.int(cpu)? as u64,
        memory_mib: row.int(memory)? as u64,
        gpu: row.int(gpu)? as u32,
    })
}

/// Reports are kept in the node protocol's encoding (the store's private format).
pub(super) fn encode_status(status: &ReportedStatus) -> Vec<u8> {
    node::GroupStatus::from(status).encode_to_vec()
}

pub(super) fn decode_status(bytes: &[u8]) -> Result<ReportedStatus> {
    node::GroupStatus::decode(bytes)
        .map(ReportedStatus::from)
        .map_err(|e| corrupt("groups.status", e))
}

/// The DNS record of a group with an FQDN and a stored report: its addresses, if its node reports
/// it Running with any and ready (no container with a readiness probe is failing it).
pub(super) fn dns_record(row: &impl Columns) -> Result<Option<(String, Vec<std::net::IpAddr>)>> {
    let Some(status) = row.bytes_opt("status")? else {
        return Ok(None);
    };
    let status = decode_status(&status)?;
    if status.phase != GroupPhase::Running || status.not_ready {
        return Ok(None);
    }
    let addresses = status.addresses();
    if addresses.is_empty() {
        return Ok(None);
    }
    Ok(Some((row.text("fqdn")?, addresses)))
}

pub(super) fn node_from_row(row: &impl Columns) -> Result<NodeRecord> {
    Ok(NodeRecord {
        id: row.text("id")?,
        name: row.text("name")?,
        os_type: parsed("nodes.os_type", row.text("os_type")?, OsType::parse)?,
        capacity: size(row, "cpu_millis", "memory_mib", "gpu")?,
        used: size(row, "cpu_used", "memory_used", "gpu_used")?,
        labels: from_json("nodes.labels", &row.text("labels")?)?,
        agent_version: row.text("agent_version")?,
        status: parsed("nodes.status", row.text("status")?, NodeStatus::parse)?,
        last_heartbeat_ms: row.int("last_heartbeat_ms")?,
        joined_ms: row.int("joined_ms")?,
        cordoned: row.int("cordoned")? != 0,
        draining: row.int("draining")? != 0,
    })
}

/// A group from [`GROUP_COLUMNS`].
pub(super) fn group_from_row(row: &impl Columns) -> Result<GroupRecord> {
    Ok(GroupRecord {
        id: row.text("id")?,
        seq: row.int("seq")?,
        subscription: row.text("subscription")?,
        resource_group: row.text("resource_group_as")?,
        name: row.text("name")?,
        location: row.text("location")?,
        tags: from_json("groups.tags", &row.text("tags")?)?,
        spec: from_json::<GroupSpec>("groups.spec", &row.text("spec")?)?,
        requests: size(row, "cpu_millis", "memory_mib", "gpu")?,
        fqdn: row.text_opt("fqdn")?,
        generation: row.int("generation")?,
        desired: parsed("groups.desired", row.text("desired")?, Desired::parse)?,
        provisioning_state: provisioning(row)?,
        node_id: row.text_opt("node_id")?,
        placement: row.int("placement")?,
        status: row
            .bytes_opt("status")?
            .as_deref()
            .map(decode_status)
            .transpose()?,
        events: events(row)?,
        created_ms: row.int("created_ms")?,
        updated_ms: row.int("updated_ms")?,
    })
}

/// A row's `provisioning_state`.
pub(super) fn provisioning(row: &impl Columns) -> Result<ProvisioningState> {
    parsed(
        "groups.provisioning_state",
        row.text("provisioning_state")?,
        ProvisioningState::parse,
    )
}

/// A row's `events` (JSON).
pub(super) fn events(row: &impl Columns) -> Result<Vec<GroupEvent>> {
    from_json("groups.events", &row.text("events")?)
}

/// The columns of a group waiting for a node, as [`pending_from_row`] reads them.
pub(super) const PENDING_COLUMNS: &str = "id, os_type, cpu_millis, memory_mib, gpu, generation, events, \
     COALESCE(pending_since_ms, created_ms) AS pending_since_ms";

/// A group waiting for a node, from [`PENDING_COLUMNS`].
pub(super) fn pending_from_row(row: &impl Columns) -> Result<PendingGroup> {
    let events = events(row)?;
    Ok(PendingGroup {
        id: row.text("id")?,
        os_type: parsed("groups.os_type", row.text("os_type")?, OsType::parse)?,
        requests: size(row, "cpu_millis", "memory_mib", "gpu")?,
        generation: row.int("generation")?,
        last_reason: events
            .iter()
            .rev()
            .find(|e| e.name == "FailedScheduling")
            .map(|e| e.message.clone()),
        pending_since_ms: row.int("pending_since_ms")?,
    })
}

pub(super) fn operation_from_row(row: &impl Columns) -> Result<OperationRecord> {
    Ok(OperationRecord {
        id: row.text("id")?,
        subscription: row.text("subscription")?,
        group_id: row.text("group_id")?,
        resource_id: row.text("resource_id")?,
        kind: parsed("operations.kind", row.text("kind")?, OperationKind::parse)?,
        generation: row.int("generation")?,
        status: parsed(
            "operations.status",
            row.text("status")?,
            OperationStatus::parse,
        )?,
        error_code: row.text_opt("error_code")?,
        error_message: row.text_opt("error_message")?,
        started_ms: row.int("started_ms")?,
        ended_ms: row.int_opt("ended_ms")?,
    })
}

/// A token from [`TOKEN_COLUMNS`] (`operator` is an integer flag in both backends).
pub(super) fn token_from_row(row: &impl Columns) -> Result<TokenRecord> {
    Ok(TokenRecord {
        id: row.text("id")?,
        hash: row.text("hash")?,
        prefix: row.text("prefix")?,
        subscriptions: from_json("tokens.subscriptions", &row.text("subscriptions")?)?,
        operator: row.int("operator")? != 0,
        created_ms: row.int("created_ms")?,
        expires_ms: row.int_opt("expires_ms")?,
        revoked_ms: row.int_opt("revoked_ms")?,
        last_used_ms: row.int_opt("last_used_ms")?,
    })
}

/// A resource group from [`RESOURCE_GROUP_COLUMNS`].
pub(super) fn resource_group_from_row(row: &impl Columns) -> Result<ResourceGroupRecord> {
    Ok(ResourceGroupRecord {
        subscription: row.text("subscription")?,
        name: row.text("name_as")?,
        location: row.text("location")?,
        tags: from_json("resource_groups.tags", &row.text("tags")?)?,
        created_ms: row.int("created_ms")?,
        updated_ms: row.int("updated_ms")?,
    })
}
