//! The SQLite store: one writer connection (SQLite has one writer anyway) and a pool of readers, WAL.

use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use berth_proto::node::{self, GroupPhase};
use prost::Message as _;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{Row, SqlitePool};

use super::*;
use crate::billing::meter::{CapCause, MeterEvent};
use crate::model::{GroupSpec, OsType, Size};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

mod batch;
mod billing;
mod resource_groups;
mod tokens;
mod usage_reader;

/// SQLite, one file, WAL.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
    /// Creates go through one task that commits them in batches (see `batch`).
    creates: tokio::sync::mpsc::Sender<batch::CreateRequest>,
    /// The database file, for exports' own connections; `None` in memory.
    path: Option<std::path::PathBuf>,
    /// Whether state changes are metered (`--billing off`: no meter work at all).
    billing: bool,
}

const GROUP_COLUMNS: &str = "g.id, g.seq, g.subscription, g.resource_group_as, g.name, g.location, g.tags, g.spec, \
     g.cpu_millis, g.memory_mib, g.gpu, g.fqdn, g.generation, g.desired, g.provisioning_state, g.node_id, g.status, \
     g.events, g.created_ms, g.updated_ms";

impl SqliteStore {
    /// Opens (creating if missing) the database at `path` and runs migrations.
    pub async fn open(path: &Path) -> Result<Self> {
        Self::with_options(tuned(SqliteConnectOptions::new().filename(path))).await
    }

    /// Opens a store from a `sqlite://path` URL.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::with_options(tuned(SqliteConnectOptions::from_str(url)?)).await
    }

    async fn with_options(options: SqliteConnectOptions) -> Result<Self> {
        let path = options.get_filename().to_owned();
        let path = (path.as_os_str() != ":memory:" && !path.as_os_str().is_empty()).then_some(path);
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await?;
        MIGRATOR.run(&writer).await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.read_only(true))
            .await?;
        let (creates, rx) = tokio::sync::mpsc::channel(4096);
        tokio::spawn(batch::create_writer(writer.clone(), rx));
        Ok(Self {
            writer,
            reader,
            creates,
            path,
            billing: true,
        })
    }

    /// The same store, metering state changes or not (on by default).
    pub fn with_billing(mut self, on: bool) -> Self {
        self.billing = on;
        self
    }

    pub async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }
}

/// WAL, NORMAL sync (a commit survives a process crash; an OS crash may lose the last ones), a 64 MiB
/// page cache and memory-mapped reads.
fn tuned(options: SqliteConnectOptions) -> SqliteConnectOptions {
    options
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(10))
        .foreign_keys(true)
        .pragma("cache_size", "-65536")
        .pragma("mmap_size", "268435456")
}

fn corrupt(what: &str, err: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {err}"))
}

fn node_from_row(row: &SqliteRow) -> Result<NodeRecord> {
    let os: String = row.try_get("os_type")?;
    let status: String = row.try_get("status")?;
    let labels: String = row.try_get("labels")?;
    Ok(NodeRecord {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        os_type: OsType::parse(&os).ok_or_else(|| corrupt("nodes.os_type", &os))?,
        capacity: Size {
            cpu_millis: row.try_get::<i64, _>("cpu_millis")? as u64,
            memory_mib: row.try_get::<i64, _>("memory_mib")? as u64,
            gpu: row.try_get::<i64, _>("gpu")? as u32,
        },
        used: Size {
            cpu_millis: row.try_get::<i64, _>("cpu_used")? as u64,
            memory_mib: row.try_get::<i64, _>("memory_used")? as u64,
            gpu: row.try_get::<i64, _>("gpu_used")? as u32,
        },
        labels: serde_json::from_str(&labels).map_err(|e| corrupt("nodes.labels", e))?,
        agent_version: row.try_get("agent_version")?,
        status: if status == "Ready" {
            NodeStatus::Ready
        } else {
            NodeStatus::NotReady
        },
        last_heartbeat_ms: row.try_get("last_heartbeat_ms")?,
        joined_ms: row.try_get("joined_ms")?,
    })
}

fn group_from_row(row: &SqliteRow) -> Result<GroupRecord> {
    let tags: String = row.try_get("tags")?;
    let spec: String = row.try_get("spec")?;
    let events: String = row.try_get("events")?;
    let desired: String = row.try_get("desired")?;
    let status: Option<Vec<u8>> = row.try_get("status")?;
    Ok(GroupRecord {
        id: row.try_get("id")?,
        seq: row.try_get("seq")?,
        subscription: row.try_get("subscription")?,
        resource_group: row.try_get("resource_group_as")?,
        name: row.try_get("name")?,
        location: row.try_get("location")?,
        tags: serde_json::from_str(&tags).map_err(|e| corrupt("groups.tags", e))?,
        spec: serde_json::from_str::<GroupSpec>(&spec).map_err(|e| corrupt("groups.spec", e))?,
        requests: Size {
            cpu_millis: row.try_get::<i64, _>("cpu_millis")? as u64,
            memory_mib: row.try_get::<i64, _>("memory_mib")? as u64,
            gpu: row.try_get::<i64, _>("gpu")? as u32,
        },
        fqdn: row.try_get("fqdn")?,
        generation: row.try_get("generation")?,
        desired: if desired == "Stopped" {
            Desired::Stopped
        } else {
            Desired::Running
        },
        provisioning_state: row.try_get("provisioning_state")?,
        node_id: row.try_get("node_id")?,
        status: match status {
            Some(bytes) => Some(
                node::GroupStatus::decode(bytes.as_slice())
                    .map_err(|e| corrupt("groups.status", e))?,
            ),
            None => None,
        },
        events: serde_json::from_str(&events).map_err(|e| corrupt("groups.events", e))?,
        created_ms: row.try_get("created_ms")?,
        updated_ms: row.try_get("updated_ms")?,
    })
}

fn operation_from_row(row: &SqliteRow) -> Result<OperationRecord> {
    Ok(OperationRecord {
        id: row.try_get("id")?,
        subscription: row.try_get("subscription")?,
        group_id: row.try_get("group_id")?,
        resource_id: row.try_get("resource_id")?,
        kind: row.try_get("kind")?,
        generation: row.try_get("generation")?,
        status: row.try_get("status")?,
        error_code: row.try_get("error_code")?,
        error_message: row.try_get("error_message")?,
        started_ms: row.try_get("started_ms")?,
        ended_ms: row.try_get("ended_ms")?,
    })
}

fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("plain data types always serialise to JSON")
}

fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_unique_violation())
}

async fn insert_operation(conn: &mut sqlx::SqliteConnection, op: &OperationRecord) -> Result<()> {
    sqlx::query(
        "INSERT INTO operations (id, subscription, group_id, resource_id, kind, generation, status, error_code, \
         error_message, started_ms, ended_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&op.id)
    .bind(&op.subscription)
    .bind(&op.group_id)
    .bind(&op.resource_id)
    .bind(&op.kind)
    .bind(op.generation)
    .bind(&op.status)
    .bind(&op.error_code)
    .bind(&op.error_message)
    .bind(op.started_ms)
    .bind(op.ended_ms)
    .execute(conn)
    .await?;
    Ok(())
}

/// Records the operation that waits for `generation` and commits the change that bumped it.
async fn record_operation(
    mut tx: sqlx::Transaction<'_, sqlx::Sqlite>,
    generation: i64,
    operation: &OperationRecord,
) -> Result<i64> {
    insert_operation(
        &mut tx,
        &OperationRecord {
            generation,
            ..operation.clone()
        },
    )
    .await?;
    tx.commit().await?;
    Ok(generation)
}

/// Reads a group and gives back the capacity it holds on its node, if any (delete and stop).
async fn unassign(conn: &mut sqlx::SqliteConnection, id: &str) -> Result<Option<GroupRecord>> {
    let sql = format!("SELECT {GROUP_COLUMNS} FROM groups g WHERE g.id = ?");
    let Some(row) = sqlx::query(&sql)
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
    else {
        return Ok(None);
    };
    let group = group_from_row(&row)?;
    if let Some(node) = &group.node_id {
        release(conn, node, &group.requests).await?;
    }
    Ok(Some(group))
}

/// Ends a group's pending operations as Canceled.
async fn cancel_operations(
    conn: &mut sqlx::SqliteConnection,
    group_id: &str,
    at_ms: i64,
) -> Result<()> {
    sqlx::query("UPDATE operations SET status = 'Canceled', ended_ms = ? WHERE group_id = ? AND status = 'Pending'")
        .bind(at_ms)
        .bind(group_id)
        .execute(conn)
        .await?;
    Ok(())
}

pub(super) async fn finish_operations(
    conn: &mut sqlx::SqliteConnection,
    group_id: &str,
    generation: i64,
    status: &str,
    error: Option<(&str, &str)>,
    now_ms: i64,
) -> Result<()> {
    sqlx::query(
        "UPDATE operations SET status = ?, error_code = ?, error_message = ?, ended_ms = ? \
         WHERE group_id = ? AND status = 'Pending' AND generation <= ?",
    )
    .bind(status)
    .bind(error.map(|e| e.0))
    .bind(error.map(|e| e.1))
    .bind(now_ms)
    .bind(group_id)
    .bind(generation)
    .execute(conn)
    .await?;
    Ok(())
}

async fn release(conn: &mut sqlx::SqliteConnection, node_id: &str, size: &Size) -> Result<()> {
    sqlx::query(
        "UPDATE nodes SET cpu_used = cpu_used - ?, memory_used = memory_used - ?, gpu_used = gpu_used - ? WHERE id = ?",
    )
    .bind(size.cpu_millis as i64)
    .bind(size.memory_mib as i64)
    .bind(i64::from(size.gpu))
    .bind(node_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// The API stopped or deleted `group` at `now_ms`: its runs end there at the latest.
fn capped(group: &GroupRecord, now_ms: i64, cause: CapCause) -> MeterEvent {
    MeterEvent::Capped {
        group_id: group.id.clone(),
        generation: group.generation,
        at_ms: now_ms,
        cause,
    }
}

/// Provisioning state that a node's report implies.
pub(super) fn provisioning_for(status: &node::GroupStatus) -> Option<&'static str> {
    match status.phase() {
        GroupPhase::Pending => Some("Creating"),
        GroupPhase::Running | GroupPhase::Succeeded => Some("Succeeded"),
        GroupPhase::Failed => {
            // A group whose containers ran and then failed was deployed (ACI: Succeeded, state Failed);
            // one that never started a container failed to deploy.
            let ran = status.containers.iter().any(|c| {
                c.current.as_ref().is_some_and(|r| r.start_time_unix_ms > 0)
                    || c.previous
                        .as_ref()
                        .is_some_and(|r| r.start_time_unix_ms > 0)
            });
            Some(if ran { "Succeeded" } else { "Failed" })
        }
        GroupPhase::Stopped | GroupPhase::Removed | GroupPhase::Unspecified => None,
    }
}

/// ACI's error code and message for a group that failed to deploy: the node's group-level warning
/// when it names an ACI code (`InaccessibleImage`), else the last warning of any container.
fn failure(status: &node::GroupStatus) -> (&'static str, String) {
    const CODES: [&str; 1] = ["InaccessibleImage"];
    if let Some((code, event)) = status.events.iter().rev().find_map(|e| {
        CODES
            .iter()
            .find(|code| e.r#type == "Warning" && e.name == **code)
            .map(|code| (*code, e))
    }) {
        return (code, event.message.clone());
    }
    let message = status
        .containers
        .iter()
        .flat_map(|c| c.events.iter())
        .chain(status.events.iter())
        .rfind(|e| e.r#type == "Warning")
        .map(|e| e.message.clone())
        .unwrap_or_else(|| "The container group failed to start.".to_owned());
    ("ContainerGroupDeploymentFailed", message)
}

/// Folds one node report into its group and finishes the operations it completes.
pub(super) async fn apply_one(
    tx: &mut sqlx::SqliteConnection,
    node_id: &str,
    status: &node::GroupStatus,
    now_ms: i64,
) -> Result<StatusOutcome> {
    // One statement: the guard (assigned to this node, not an older generation) is in the WHERE.
    let row = sqlx::query(
        "UPDATE groups SET status = ?1, provisioning_state = COALESCE(?2, provisioning_state), \
         updated_ms = ?3 WHERE id = ?4 AND node_id = ?5 AND generation <= ?6 \
         RETURNING generation, provisioning_state",
    )
    .bind(status.encode_to_vec())
    .bind(provisioning_for(status))
    .bind(now_ms)
    .bind(&status.group_id)
    .bind(node_id)
    .bind(status.generation as i64)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row else {
        return Ok(StatusOutcome::Ignored);
    };
    let generation: i64 = row.try_get("generation")?;
    let provisioning: String = row.try_get("provisioning_state")?;
    match provisioning.as_str() {
        "Succeeded" => {
            finish_operations(tx, &status.group_id, generation, "Succeeded", None, now_ms).await?
        }
        "Failed" => {
            let (code, message) = failure(status);
            finish_operations(
                tx,
                &status.group_id,
                generation,
                "Failed",
                Some((code, &message)),
                now_ms,
            )
            .await?
        }
        _ => {}
    }
    Ok(StatusOutcome::Applied {
        provisioning_state: provisioning,
    })
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    async fn insert_token(&self, token: &TokenRecord) -> Result<()> {
        tokens::insert(&self.writer, token).await
    }

    async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRecord>> {
        tokens::by_hash(&self.reader, hash).await
    }

    async fn token_by_id(&self, id: &str) -> Result<Option<TokenRecord>> {
        tokens::by_id(&self.reader, id).await
    }

    async fn tokens(&self) -> Result<Vec<TokenRecord>> {
        tokens::all(&self.reader).await
    }

    async fn revoke_token(&self, id: &str, now_ms: i64) -> Result<Revocation> {
        tokens::revoke(&self.writer, id, now_ms).await
    }

    async fn record_token_use(&self, used: &[(String, i64)]) -> Result<()> {
        tokens::record_use(&self.writer, used).await
    }

    async fn count_tokens(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM tokens")
            .fetch_one(&self.reader)
            .await?)
    }

    async fn insert_join_token(
        &self,
        id: &str,
        secret_hash: &str,
        uses: u32,
        expires_ms: i64,
        now_ms: i64,
    ) -> Result<()> {
        sqlx::query("INSERT INTO join_tokens (id, secret_hash, uses_left, expires_ms, created_ms) VALUES (?, ?, ?, ?, ?)")
            .bind(id)
            .bind(secret_hash)
            .bind(i64::from(uses))
            .bind(expires_ms)
            .bind(now_ms)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn join_node(
        &self,
        token_id: &str,
        secret_hash: &str,
        node: &NodeRecord,
    ) -> Result<Result<(), JoinRefusal>> {
        let mut tx = self.writer.begin().await?;
        let used = sqlx::query(
            "UPDATE join_tokens SET uses_left = uses_left - 1 \
             WHERE id = ? AND secret_hash = ? AND uses_left > 0 AND expires_ms > ?",
        )
        .bind(token_id)
        .bind(secret_hash)
        .bind(node.joined_ms)
        .execute(&mut *tx)
        .await?;
        if used.rows_affected() != 1 {
            return Ok(Err(JoinRefusal::InvalidToken));
        }
        let inserted = sqlx::query(
            "INSERT INTO nodes (id, name, os_type, cpu_millis, memory_mib, gpu, labels, agent_version, status, \
             last_heartbeat_ms, joined_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&node.id)
        .bind(&node.name)
        .bind(node.os_type.as_str())
        .bind(node.capacity.cpu_millis as i64)
        .bind(node.capacity.memory_mib as i64)
        .bind(i64::from(node.capacity.gpu))
        .bind(json(&node.labels))
        .bind(&node.agent_version)
        .bind(node.status.as_str())
        .bind(node.last_heartbeat_ms)
        .bind(node.joined_ms)
        .execute(&mut *tx)
        .await;
        match inserted {
            Ok(_) => {}
            Err(err) if is_unique_violation(&err) => return Ok(Err(JoinRefusal::NameTaken)),
            Err(err) => return Err(err.into()),
        }
        tx.commit().await?;
        Ok(Ok(()))
    }

    async fn nodes(&self) -> Result<Vec<NodeRecord>> {
        let rows = sqlx::query("SELECT * FROM nodes ORDER BY name")
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(node_from_row).collect()
    }

    async fn node(&self, id: &str) -> Result<Option<NodeRecord>> {
        let row = sqlx::query("SELECT * FROM nodes WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.reader)
            .await?;
        row.as_ref().map(node_from_row).transpose()
    }

    async fn set_node_status(
        &self,
        id: &str,
        status: NodeStatus,
        last_heartbeat_ms: i64,
        node_clock_ms: i64,
    ) -> Result<()> {
        let mut tx = self.writer.begin().await?;
        billing::nodes_seen(&mut tx, &[(id.to_owned(), node_clock_ms)]).await?;
        if status == NodeStatus::NotReady && self.billing {
            let last = billing::last_node_ms(&mut tx, id).await?;
            if last > 0 {
                let lost = MeterEvent::NodeLost {
                    node_id: id.to_owned(),
                    at_ms: last,
                };
                billing::record(&mut tx, &[lost]).await?;
            }
        }
        sqlx::query(
            "UPDATE nodes SET status = ?1, \
             last_heartbeat_ms = CASE WHEN ?2 > last_heartbeat_ms THEN ?2 ELSE last_heartbeat_ms END \
             WHERE id = ?3",
        )
        .bind(status.as_str())
        .bind(last_heartbeat_ms)
        .bind(id)
            .execute(&mut *tx)
            .await?;
        if status == NodeStatus::NotReady {
            sqlx::query(
                "UPDATE groups SET provisioning_state = 'Unhealthy', updated_ms = ? WHERE node_id = ? AND desired = 'Running'",
            )
            .bind(last_heartbeat_ms)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn record_heartbeats(&self, beats: &[Heartbeat]) -> Result<()> {
        batch::record_heartbeats(&self.writer, beats).await
    }

    async fn group(&self, key: &GroupKey) -> Result<Option<GroupRecord>> {
        let sql = format!(
            "SELECT {GROUP_COLUMNS} FROM groups g WHERE g.subscription = ? AND g.resource_group = ? AND g.name = ?"
        );
        let row = sqlx::query(&sql)
            .bind(&key.subscription)
            .bind(&key.resource_group)
            .bind(&key.name)
            .fetch_optional(&self.reader)
            .await?;
        row.as_ref().map(group_from_row).transpose()
    }

    async fn group_by_id(&self, id: &str) -> Result<Option<GroupRecord>> {
        let sql = format!("SELECT {GROUP_COLUMNS} FROM groups g WHERE g.id = ?");
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.reader)
            .await?;
        row.as_ref().map(group_from_row).transpose()
    }

    async fn list_groups(
        &self,
        subscription: &str,
        resource_group: Option<&str>,
        after: i64,
        limit: i64,
    ) -> Result<Vec<GroupRecord>> {
        let rows = match resource_group {
            Some(rg) => {
                let sql = format!(
                    "SELECT {GROUP_COLUMNS} FROM groups g WHERE g.subscription = ? AND g.resource_group = ? AND g.seq > ? \
                     ORDER BY g.seq LIMIT ?"
                );
                sqlx::query(&sql)
                    .bind(subscription)
                    .bind(rg.to_ascii_lowercase())
                    .bind(after)
                    .bind(limit)
                    .fetch_all(&self.reader)
                    .await?
            }
            None => {
                let sql = format!(
                    "SELECT {GROUP_COLUMNS} FROM groups g WHERE g.subscription = ? AND g.seq > ? ORDER BY g.seq LIMIT ?"
                );
                sqlx::query(&sql)
                    .bind(subscription)
                    .bind(after)
                    .bind(limit)
                    .fetch_all(&self.reader)
                    .await?
            }
        };
        rows.iter().map(group_from_row).collect()
    }

    async fn create_group(&self, g: &NewGroup) -> Result<()> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.creates
            .send((g.clone(), reply))
            .await
            .map_err(|_| StoreError::Unavailable)?;
        answer.await.map_err(|_| StoreError::Unavailable)?
    }

    async fn update_group(
        &self,
        id: &str,
        spec: &GroupSpec,
        sealed: &[u8],
        tags: &BTreeMap<String, String>,
        operation: &OperationRecord,
        now_ms: i64,
    ) -> Result<i64> {
        let mut tx = self.writer.begin().await?;
        let generation: i64 = sqlx::query_scalar(
            "UPDATE groups SET spec = ?, sealed_spec = ?, tags = ?, generation = generation + 1, \
             provisioning_state = CASE WHEN desired = 'Running' THEN 'Updating' ELSE provisioning_state END, \
             updated_ms = ? WHERE id = ? RETURNING generation",
        )
        .bind(json(&spec.redacted()))
        .bind(sealed)
        .bind(json(tags))
        .bind(now_ms)
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
        record_operation(tx, generation, operation).await
    }

    async fn set_tags(&self, id: &str, tags: &BTreeMap<String, String>, now_ms: i64) -> Result<()> {
        sqlx::query("UPDATE groups SET tags = ?, updated_ms = ? WHERE id = ?")
            .bind(json(tags))
            .bind(now_ms)
            .bind(id)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn delete_group(&self, id: &str, now_ms: i64) -> Result<Option<GroupRecord>> {
        let mut tx = self.writer.begin().await?;
        let Some(group) = unassign(&mut tx, id).await? else {
            return Ok(None);
        };
        cancel_operations(&mut tx, id, now_ms).await?;
        if self.billing {
            billing::remember_group(&mut tx, &group).await?;
            billing::record(&mut tx, &[capped(&group, now_ms, CapCause::Delete)]).await?;
        }
        sqlx::query("DELETE FROM groups WHERE id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE subscription_usage SET groups = groups - 1, cpu_millis = cpu_millis - ? \
             WHERE subscription = ?",
        )
        .bind(group.requests.cpu_millis as i64)
        .bind(&group.subscription)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(group))
    }

    async fn stop_group(&self, id: &str, now_ms: i64) -> Result<Option<GroupRecord>> {
        let mut tx = self.writer.begin().await?;
        let Some(group) = unassign(&mut tx, id).await? else {
            return Ok(None);
        };
        sqlx::query(
            "UPDATE groups SET desired = 'Stopped', node_id = NULL, provisioning_state = 'Succeeded', updated_ms = ? \
             WHERE id = ?",
        )
        .bind(now_ms)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        cancel_operations(&mut tx, id, now_ms).await?;
        if self.billing {
            billing::record(&mut tx, &[capped(&group, now_ms, CapCause::Stop)]).await?;
        }
        tx.commit().await?;
        Ok(Some(group))
    }

    async fn start_group(&self, id: &str, operation: &OperationRecord, now_ms: i64) -> Result<i64> {
        let mut tx = self.writer.begin().await?;
        let generation: i64 = sqlx::query_scalar(
            "UPDATE groups SET desired = 'Running', node_id = NULL, status = NULL, generation = generation + 1, \
             provisioning_state = 'Pending', events = '[]', updated_ms = ? WHERE id = ? RETURNING generation",
        )
        .bind(now_ms)
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
        record_operation(tx, generation, operation).await
    }

    async fn restart_group(
        &self,
        id: &str,
        operation: &OperationRecord,
        now_ms: i64,
    ) -> Result<i64> {
        let mut tx = self.writer.begin().await?;
        let generation: i64 = sqlx::query_scalar(
            "UPDATE groups SET generation = generation + 1, \
             provisioning_state = CASE WHEN node_id IS NULL THEN provisioning_state ELSE 'Pending' END, \
             updated_ms = ? WHERE id = ? RETURNING generation",
        )
        .bind(now_ms)
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
        record_operation(tx, generation, operation).await
    }

    async fn sealed_spec(&self, id: &str) -> Result<Option<Vec<u8>>> {
        Ok(
            sqlx::query_scalar("SELECT sealed_spec FROM groups WHERE id = ?")
                .bind(id)
                .fetch_optional(&self.reader)
                .await?,
        )
    }

    async fn group_with_sealed(&self, id: &str) -> Result<Option<(GroupRecord, Vec<u8>)>> {
        let sql = format!("SELECT {GROUP_COLUMNS}, g.sealed_spec FROM groups g WHERE g.id = ?");
        let Some(row) = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.reader)
            .await?
        else {
            return Ok(None);
        };
        Ok(Some((group_from_row(&row)?, row.try_get("sealed_spec")?)))
    }

    async fn groups_with_sealed(&self, ids: &[String]) -> Result<Vec<(GroupRecord, Vec<u8>)>> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(500) {
            let sql = format!(
                "SELECT {GROUP_COLUMNS}, g.sealed_spec FROM groups g WHERE g.id IN ({})",
                vec!["?"; chunk.len()].join(", ")
            );
            let mut query = sqlx::query(&sql);
            for id in chunk {
                query = query.bind(id);
            }
            for row in query.fetch_all(&self.reader).await? {
                out.push((group_from_row(&row)?, row.try_get("sealed_spec")?));
            }
        }
        Ok(out)
    }

    async fn groups_on_node(&self, node_id: &str) -> Result<Vec<GroupRecord>> {
        let sql =
            format!("SELECT {GROUP_COLUMNS} FROM groups g WHERE g.node_id = ? ORDER BY g.seq");
        let rows = sqlx::query(&sql)
            .bind(node_id)
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(group_from_row).collect()
    }

    async fn dns_records(&self) -> Result<Vec<(String, Vec<std::net::IpAddr>)>> {
        let rows = sqlx::query(
            "SELECT fqdn, status FROM groups \
             WHERE fqdn IS NOT NULL AND desired = 'Running' AND node_id IS NOT NULL AND status IS NOT NULL",
        )
        .fetch_all(&self.reader)
        .await?;
        let mut records = Vec::new();
        for row in rows {
            let fqdn: String = row.try_get("fqdn")?;
            let status: Vec<u8> = row.try_get("status")?;
            let status = node::GroupStatus::decode(status.as_slice())
                .map_err(|e| corrupt("groups.status", e))?;
            if status.phase != node::GroupPhase::Running as i32 {
                continue;
            }
            let addresses: Vec<std::net::IpAddr> = status
                .ip
                .split(',')
                .filter_map(|ip| ip.trim().parse().ok())
                .collect();
            if !addresses.is_empty() {
                records.push((fqdn, addresses));
            }
        }
        Ok(records)
    }

    async fn usage(&self, subscription: &str) -> Result<(i64, Size)> {
        let row =
            sqlx::query("SELECT groups, cpu_millis FROM subscription_usage WHERE subscription = ?")
                .bind(subscription)
                .fetch_optional(&self.reader)
                .await?;
        Ok(match row {
            Some(row) => (
                row.try_get("groups")?,
                Size {
                    cpu_millis: row.try_get::<i64, _>("cpu_millis")? as u64,
                    ..Size::default()
                },
            ),
            None => (0, Size::default()),
        })
    }

    async fn resource_group(
        &self,
        subscription: &str,
        name: &str,
    ) -> Result<Option<ResourceGroupRecord>> {
        resource_groups::get(&self.reader, subscription, name).await
    }

    async fn resource_groups(&self, subscription: &str) -> Result<Vec<ResourceGroupRecord>> {
        resource_groups::list(&self.reader, subscription).await
    }

    async fn create_resource_group(
        &self,
        group: &ResourceGroupRecord,
    ) -> Result<ResourceGroupCreation> {
        resource_groups::create(&self.writer, group).await
    }

    async fn set_resource_group_tags(
        &self,
        subscription: &str,
        name: &str,
        tags: &BTreeMap<String, String>,
        now_ms: i64,
    ) -> Result<()> {
        resource_groups::set_tags(&self.writer, subscription, name, tags, now_ms).await
    }

    async fn delete_resource_group(
        &self,
        subscription: &str,
        name: &str,
    ) -> Result<ResourceGroupDeletion> {
        resource_groups::delete(&self.writer, subscription, name).await
    }

    async fn pending_groups(&self, limit: i64) -> Result<Vec<PendingGroup>> {
        let rows = sqlx::query(
            "SELECT id, os_type, cpu_millis, memory_mib, gpu, generation, events FROM groups \
             WHERE node_id IS NULL AND desired = 'Running' AND provisioning_state != 'Failed' ORDER BY seq LIMIT ?",
        )
        .bind(limit)
        .fetch_all(&self.writer)
        .await?;
        rows.iter()
            .map(|row| {
                let os: String = row.try_get("os_type")?;
                let events: String = row.try_get("events")?;
                let events: Vec<GroupEvent> =
                    serde_json::from_str(&events).map_err(|e| corrupt("groups.events", e))?;
                Ok(PendingGroup {
                    id: row.try_get("id")?,
                    os_type: OsType::parse(&os).ok_or_else(|| corrupt("groups.os_type", &os))?,
                    requests: Size {
                        cpu_millis: row.try_get::<i64, _>("cpu_millis")? as u64,
                        memory_mib: row.try_get::<i64, _>("memory_mib")? as u64,
                        gpu: row.try_get::<i64, _>("gpu")? as u32,
                    },
                    generation: row.try_get("generation")?,
                    last_reason: events
                        .iter()
                        .rev()
                        .find(|e| e.name == "FailedScheduling")
                        .map(|e| e.message.clone()),
                })
            })
            .collect()
    }

    async fn commit_placements(
        &self,
        placements: &[Placement],
        now_ms: i64,
    ) -> Result<Vec<Placement>> {
        batch::commit_placements(&self.writer, placements, now_ms, self.billing).await
    }

    async fn record_event(&self, group_id: &str, event: GroupEvent) -> Result<()> {
        let mut tx = self.writer.begin().await?;
        let Some(events) =
            sqlx::query_scalar::<_, String>("SELECT events FROM groups WHERE id = ?")
                .bind(group_id)
                .fetch_optional(&mut *tx)
                .await?
        else {
            return Ok(());
        };
        let mut events: Vec<GroupEvent> =
            serde_json::from_str(&events).map_err(|e| corrupt("groups.events", e))?;
        match events.iter_mut().find(|e| e.name == event.name) {
            Some(existing) => {
                existing.count += 1;
                existing.last_ms = event.last_ms;
                existing.message = event.message;
                existing.kind = event.kind;
            }
            None => events.push(event),
        }
        sqlx::query("UPDATE groups SET events = ? WHERE id = ?")
            .bind(json(&events))
            .bind(group_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn fail_group(
        &self,
        group_id: &str,
        code: &str,
        message: &str,
        now_ms: i64,
    ) -> Result<()> {
        let mut tx = self.writer.begin().await?;
        let generation: Option<i64> = sqlx::query_scalar(
            "UPDATE groups SET provisioning_state = 'Failed', updated_ms = ? WHERE id = ? AND node_id IS NULL \
             RETURNING generation",
        )
        .bind(now_ms)
        .bind(group_id)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(generation) = generation {
            finish_operations(
                &mut tx,
                group_id,
                generation,
                "Failed",
                Some((code, message)),
                now_ms,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn apply_status(
        &self,
        node_id: &str,
        status: &node::GroupStatus,
        now_ms: i64,
    ) -> Result<StatusOutcome> {
        let mut tx = self.writer.begin().await?;
        let outcome = apply_one(&mut tx, node_id, status, now_ms).await?;
        if self.billing {
            billing::record(&mut tx, &[billing::observation(node_id, 0, status)]).await?;
        }
        tx.commit().await?;
        Ok(outcome)
    }

    async fn apply_statuses(
        &self,
        reports: &[NodeReport],
        node_clocks: &[(String, i64)],
        now_ms: i64,
    ) -> Result<Vec<StatusOutcome>> {
        batch::apply_statuses(&self.writer, reports, node_clocks, now_ms, self.billing).await
    }

    async fn group_counts_by_node(&self) -> Result<Vec<String>> {
        Ok(
            sqlx::query_scalar("SELECT node_id FROM groups WHERE node_id IS NOT NULL")
                .fetch_all(&self.reader)
                .await?,
        )
    }

    fn usage_reader(&self) -> Result<Box<dyn UsageReader>> {
        let path = self.path.as_ref().ok_or(StoreError::Unsupported(
            "an in-memory store cannot be exported",
        ))?;
        Ok(Box::new(usage_reader::SqliteUsageReader::open(path)?))
    }

    async fn insert_operation(&self, operation: &OperationRecord) -> Result<()> {
        let mut conn = self.writer.acquire().await?;
        insert_operation(&mut conn, operation).await
    }

    async fn operation(&self, id: &str) -> Result<Option<OperationRecord>> {
        let row = sqlx::query("SELECT * FROM operations WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.reader)
            .await?;
        row.as_ref().map(operation_from_row).transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ContainerSpec, RestartPolicy};

    fn spec(cpu_millis: u64) -> GroupSpec {
        GroupSpec {
            os_type: OsType::Linux,
            restart_policy: RestartPolicy::Always,
            sku: "Standard".to_owned(),
            containers: vec![ContainerSpec {
                name: "c".to_owned(),
                image: "img".to_owned(),
                command: Vec::new(),
                ports: Vec::new(),
                env: Vec::new(),
                requests: Size {
                    cpu_millis,
                    memory_mib: 1024,
                    gpu: 0,
                },
                limits: None,
                gpu_sku: None,
                volume_mounts: Vec::new(),
                liveness_probe: None,
                readiness_probe: None,
                security_context: None,
            }],
            init_containers: Vec::new(),
            volumes: Vec::new(),
            registry_credentials: Vec::new(),
            ip_address: None,
            dns_config: None,
            priority: None,
        }
    }

    fn new_group(name: &str, cpu_millis: u64) -> NewGroup {
        NewGroup {
            id: uuid::Uuid::new_v4().to_string(),
            key: GroupKey::new("sub", "rg", name),
            resource_group_as: "rg".to_owned(),
            location: "local".to_owned(),
            tags: BTreeMap::new(),
            spec: spec(cpu_millis),
            sealed_spec: vec![1, 2, 3],
            fqdn: None,
            now_ms: 1,
            operation_id: uuid::Uuid::new_v4().to_string(),
            resource_id: format!("/x/{name}"),
            quota: (100, 100_000),
        }
    }

    async fn store_with_node(cpu_millis: u64) -> (tempfile::TempDir, SqliteStore, String) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("t.db")).await.unwrap();
        store
            .insert_join_token("tokenx", "hash", 1, i64::MAX, 0)
            .await
            .unwrap();
        let node = NodeRecord {
            id: "n1".to_owned(),
            name: "n1".to_owned(),
            os_type: OsType::Linux,
            capacity: Size {
                cpu_millis,
                memory_mib: 64 * 1024,
                gpu: 0,
            },
            used: Size::default(),
            labels: BTreeMap::new(),
            agent_version: "t".to_owned(),
            status: NodeStatus::Ready,
            last_heartbeat_ms: 1,
            joined_ms: 1,
        };
        store
            .join_node("tokenx", "hash", &node)
            .await
            .unwrap()
            .unwrap();
        (dir, store, "n1".to_owned())
    }

    #[tokio::test]
    async fn a_create_makes_its_resource_group_which_is_deleted_only_when_empty() {
        let (_dir, store, _node) = store_with_node(4000).await;
        let mut g = new_group("a", 100);
        g.key = GroupKey::new("sub", "MyRG", "a");
        g.resource_group_as = "MyRG".to_owned();
        store.create_group(&g).await.unwrap();
        let rg = store.resource_group("sub", "myrg").await.unwrap().unwrap();
        assert_eq!((rg.name.as_str(), rg.location.as_str()), ("MyRG", "local"));
        let again = ResourceGroupRecord {
            name: "MYRG".to_owned(),
            ..rg.clone()
        };
        assert_eq!(
            store.create_resource_group(&again).await.unwrap(),
            ResourceGroupCreation::Exists
        );
        assert_eq!(
            store.delete_resource_group("sub", "myrg").await.unwrap(),
            ResourceGroupDeletion::NotEmpty
        );
        store.delete_group(&g.id, 2).await.unwrap();
        assert_eq!(
            store.delete_resource_group("sub", "MYRG").await.unwrap(),
            ResourceGroupDeletion::Deleted
        );
        assert_eq!(
            store.delete_resource_group("sub", "MYRG").await.unwrap(),
            ResourceGroupDeletion::NotFound
        );
        assert!(store.resource_groups("sub").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn past_the_resource_group_limit_nothing_is_created_and_quota_is_given_back() {
        let (_dir, store, _node) = store_with_node(4000).await;
        for i in 0..RESOURCE_GROUPS_PER_SUBSCRIPTION {
            let rg = ResourceGroupRecord {
                subscription: "sub".to_owned(),
                name: format!("rg{i}"),
                location: "local".to_owned(),
                tags: BTreeMap::new(),
                created_ms: 1,
                updated_ms: 1,
            };
            assert_eq!(
                store.create_resource_group(&rg).await.unwrap(),
                ResourceGroupCreation::Created
            );
        }
        let one_more = ResourceGroupRecord {
            subscription: "sub".to_owned(),
            name: "extra".to_owned(),
            location: "local".to_owned(),
            tags: BTreeMap::new(),
            created_ms: 1,
            updated_ms: 1,
        };
        assert_eq!(
            store.create_resource_group(&one_more).await.unwrap(),
            ResourceGroupCreation::LimitReached
        );
        // A container group into a new resource group is refused; into an existing one it is not.
        let mut refused = new_group("a", 100);
        refused.key = GroupKey::new("sub", "extra", "a");
        refused.resource_group_as = "extra".to_owned();
        assert!(matches!(
            store.create_group(&refused).await,
            Err(StoreError::ResourceGroupLimit)
        ));
        assert!(store.group(&refused.key).await.unwrap().is_none());
        assert_eq!(store.usage("sub").await.unwrap().0, 0);
        let mut fits = new_group("b", 100);
        fits.key = GroupKey::new("sub", "RG7", "b");
        fits.resource_group_as = "RG7".to_owned();
        store.create_group(&fits).await.unwrap();
        assert_eq!(store.usage("sub").await.unwrap().0, 1);
        assert_eq!(
            store.resource_groups("sub").await.unwrap().len() as i64,
            RESOURCE_GROUPS_PER_SUBSCRIPTION
        );
    }

    #[tokio::test]
    async fn heartbeats_are_written_together_and_never_move_back() {
        let (_dir, store, node) = store_with_node(4000).await;
        let beat = |at_ms, node_clock_ms| Heartbeat {
            node_id: node.clone(),
            at_ms,
            node_clock_ms,
        };
        let stored = || async {
            let last_node_ms: i64 =
                sqlx::query_scalar("SELECT last_node_ms FROM nodes WHERE id = ?")
                    .bind(&node)
                    .fetch_one(&store.reader)
                    .await
                    .unwrap();
            let record = store.node(&node).await.unwrap().unwrap();
            (record.last_heartbeat_ms, last_node_ms, record.status)
        };
        let unknown = Heartbeat {
            node_id: "gone".to_owned(),
            at_ms: 9,
            node_clock_ms: 9,
        };
        store
            .record_heartbeats(&[beat(500, 400), unknown])
            .await
            .unwrap();
        assert_eq!(stored().await, (500, 400, NodeStatus::Ready));
        store.record_heartbeats(&[beat(300, 200)]).await.unwrap();
        assert_eq!(
            stored().await,
            (500, 400, NodeStatus::Ready),
            "late writes change nothing"
        );
        store
            .set_node_status(&node, NodeStatus::NotReady, 100, 0)
            .await
            .unwrap();
        assert_eq!(stored().await, (500, 400, NodeStatus::NotReady));
        store
            .set_node_status(&node, NodeStatus::Ready, 900, 0)
            .await
            .unwrap();
        assert_eq!(stored().await, (900, 400, NodeStatus::Ready));
    }

    #[tokio::test]
    async fn concurrent_creates_of_one_name_create_it_once() {
        let (_dir, store, _) = store_with_node(4000).await;
        let (one, two) = (new_group("same", 100), new_group("same", 100));
        let (a, b) = tokio::join!(store.create_group(&one), store.create_group(&two));
        let outcomes = [a, b];
        assert_eq!(
            outcomes.iter().filter(|r| r.is_ok()).count(),
            1,
            "{outcomes:?}"
        );
        assert!(
            outcomes
                .iter()
                .any(|r| matches!(r, Err(StoreError::Conflict(k)) if k == "name"))
        );
        assert_eq!(
            store.usage("sub").await.unwrap().0,
            1,
            "the loser is not counted"
        );
    }

    #[tokio::test]
    async fn placements_never_overcommit_and_give_back_what_did_not_stick() {
        let (_dir, store, node) = store_with_node(2000).await;
        let groups = [
            new_group("a", 1500),
            new_group("b", 1500),
            new_group("c", 500),
        ];
        for g in &groups {
            store.create_group(g).await.unwrap();
        }
        let placement = |g: &NewGroup| Placement {
            group_id: g.id.clone(),
            node_id: node.clone(),
            requests: g.spec.requests(),
            generation: 1,
        };
        // a + b together exceed the node: the node's reservation fails and nothing is placed.
        let committed = store
            .commit_placements(&[placement(&groups[0]), placement(&groups[1])], 2)
            .await
            .unwrap();
        assert!(committed.is_empty());
        assert_eq!(store.node(&node).await.unwrap().unwrap().used.cpu_millis, 0);

        // c is deleted before its placement commits: its reservation is given back.
        store.delete_group(&groups[2].id, 10).await.unwrap();
        let committed = store
            .commit_placements(&[placement(&groups[0]), placement(&groups[2])], 3)
            .await
            .unwrap();
        assert_eq!(committed.len(), 1);
        assert_eq!(committed[0].group_id, groups[0].id);
        assert_eq!(
            store.node(&node).await.unwrap().unwrap().used.cpu_millis,
            1500
        );

        // Placing a twice changes nothing.
        let again = store
            .commit_placements(&[placement(&groups[0])], 4)
            .await
            .unwrap();
        assert!(again.is_empty());
        assert_eq!(
            store.node(&node).await.unwrap().unwrap().used.cpu_millis,
            1500
        );

        // Deleting a releases its capacity.
        store.delete_group(&groups[0].id, 10).await.unwrap();
        assert_eq!(store.node(&node).await.unwrap().unwrap().used.cpu_millis, 0);
    }

    #[tokio::test]
    async fn reports_from_the_wrong_node_or_an_old_generation_are_ignored() {
        let (_dir, store, node) = store_with_node(4000).await;
        let g = new_group("r", 1000);
        store.create_group(&g).await.unwrap();
        let placement = Placement {
            group_id: g.id.clone(),
            node_id: node.clone(),
            requests: g.spec.requests(),
            generation: 1,
        };
        assert_eq!(
            store
                .commit_placements(&[placement], 2)
                .await
                .unwrap()
                .len(),
            1
        );
        let running = node::GroupStatus {
            group_id: g.id.clone(),
            generation: 1,
            phase: node::GroupPhase::Running as i32,
            ..Default::default()
        };
        let other = store
            .apply_status("someone-else", &running, 3)
            .await
            .unwrap();
        assert_eq!(other, StatusOutcome::Ignored);
        let old = node::GroupStatus {
            generation: 0,
            ..running.clone()
        };
        assert_eq!(
            store.apply_status(&node, &old, 3).await.unwrap(),
            StatusOutcome::Ignored
        );
        let applied = store
            .apply_statuses(
                &[
                    NodeReport {
                        node_id: node.clone(),
                        seq: 1,
                        status: running.clone(),
                    },
                    NodeReport {
                        node_id: node.clone(),
                        seq: 2,
                        status: running,
                    },
                ],
                &[],
                4,
            )
            .await
            .unwrap();
        assert!(applied.iter().all(|o| matches!(o, StatusOutcome::Applied { provisioning_state } if provisioning_state == "Succeeded")));
        let op = store.operation(&g.operation_id).await.unwrap().unwrap();
        assert_eq!(op.status, "Succeeded");
    }

    /// Places and runs one group per store, reported through the multi-row report fold: billing on,
    /// the run and its ledger rows are written (with who the group is, its GPU model included);
    /// billing off, nothing of it is.
    #[tokio::test]
    async fn the_report_fold_meters_runs_unless_billing_is_off() {
        for billing in [true, false] {
            let (_dir, store, node) = store_with_node(4000).await;
            let store = store.with_billing(billing);
            let mut g = new_group("m", 1000);
            g.spec.containers[0].gpu_sku = Some("V100".to_owned());
            store.create_group(&g).await.unwrap();
            let placement = Placement {
                group_id: g.id.clone(),
                node_id: node.clone(),
                requests: g.spec.requests(),
                generation: 1,
            };
            store.commit_placements(&[placement], 2).await.unwrap();
            let status = |observed: i64, finished: i64| NodeReport {
                node_id: node.clone(),
                seq: observed as u64,
                status: node::GroupStatus {
                    group_id: g.id.clone(),
                    generation: 1,
                    phase: node::GroupPhase::Running as i32,
                    run_started_unix_ms: 1_000,
                    observed_unix_ms: observed,
                    run_finished_unix_ms: finished,
                    ..Default::default()
                },
            };
            store
                .apply_statuses(&[status(1_000, 0), status(3_000, 0)], &[], 4)
                .await
                .unwrap();
            store
                .apply_statuses(&[status(9_000, 9_000)], &[(node.clone(), 9_000)], 5)
                .await
                .unwrap();
            let runs: Vec<(i64, i64, Option<String>)> =
                sqlx::query_as("SELECT billed_until_ms, open, gpu_sku FROM usage_runs")
                    .fetch_all(&store.writer)
                    .await
                    .unwrap();
            let cpu: i64 = sqlx::query_scalar(
                "SELECT COALESCE(SUM(quantity), 0) FROM usage_ledger WHERE meter = 'linux/vcpu_seconds'",
            )
            .fetch_one(&store.writer)
            .await
            .unwrap();
            let days: i64 = sqlx::query_scalar("SELECT COALESCE(SUM(rows), 0) FROM usage_days")
                .fetch_one(&store.writer)
                .await
                .unwrap();
            let last_node_ms: i64 = sqlx::query_scalar("SELECT last_node_ms FROM nodes")
                .fetch_one(&store.writer)
                .await
                .unwrap();
            assert_eq!(last_node_ms, 9_000, "the node's clock is kept either way");
            if billing {
                assert_eq!(runs, vec![(9_000, 0, Some("v100".to_owned()))]);
                assert_eq!(cpu, 1000 * 8_000);
                assert_eq!(days, 2, "one row per meter");
            } else {
                assert_eq!(runs, vec![]);
                assert_eq!((cpu, days), (0, 0));
            }
        }
    }
}
