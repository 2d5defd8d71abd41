//! The SQLite store: one writer connection (SQLite has one writer anyway) and a pool of readers, WAL.

use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};

use super::rows::*;
use super::sqlx_error::is_unique_violation;
use super::*;
use crate::billing::meter::{CapCause, MeterEvent};
use crate::model::reported::ReportedStatus;
use crate::model::{GroupSpec, Size};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

mod agent_endpoints;
mod batch;
mod billing;
mod census;
mod exec_sessions;
mod leases;
mod metrics;
mod node_lifecycle;
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

async fn insert_operation(conn: &mut sqlx::SqliteConnection, op: &OperationRecord) -> Result<()> {
    sqlx::query(
        "INSERT INTO operations (id, subscription, group_id, resource_id, kind, generation, status, error_code, \
         error_message, started_ms, ended_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&op.id)
    .bind(&op.subscription)
    .bind(&op.group_id)
    .bind(&op.resource_id)
    .bind(op.kind.as_str())
    .bind(op.generation)
    .bind(op.status.as_str())
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

/// Why a guarded change of a group matched no row: it is gone, or it moved.
async fn refused(mut tx: sqlx::Transaction<'_, sqlx::Sqlite>, id: &str) -> Result<Change> {
    let exists: Option<i64> = sqlx::query_scalar("SELECT 1 FROM groups WHERE id = ?")
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(if exists.is_some() {
        Change::Moved
    } else {
        Change::NotFound
    })
}

/// How often a guarded read-modify-write is retried after losing to a concurrent writer.
const RETRIES: usize = 16;

/// Takes a group off its node and gives back the capacity it held there, if any (delete and stop);
/// returns the group as it was. The read and the unassignment are guarded by the node id read, so
/// with many writers the capacity is released exactly once and a placement committed in between is
/// not lost.
async fn unassign(conn: &mut sqlx::SqliteConnection, id: &str) -> Result<Option<GroupRecord>> {
    let sql = format!("SELECT {GROUP_COLUMNS} FROM groups g WHERE g.id = ?");
    for _ in 0..RETRIES {
        let Some(row) = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?
        else {
            return Ok(None);
        };
        let group = group_from_row(&row)?;
        // `IS` compares NULLs too (PostgreSQL: `IS NOT DISTINCT FROM`); the row is locked from here.
        let claimed = sqlx::query("UPDATE groups SET node_id = NULL WHERE id = ? AND node_id IS ?")
            .bind(id)
            .bind(&group.node_id)
            .execute(&mut *conn)
            .await?;
        if claimed.rows_affected() != 1 {
            continue;
        }
        if let Some(node) = &group.node_id {
            release(conn, node, &group.requests).await?;
        }
        return Ok(Some(group));
    }
    Err(StoreError::Contended)
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
    status: OperationStatus,
    error: Option<(&str, &str)>,
    now_ms: i64,
) -> Result<()> {
    sqlx::query(
        "UPDATE operations SET status = ?, error_code = ?, error_message = ?, ended_ms = ? \
         WHERE group_id = ? AND status = 'Pending' AND generation <= ?",
    )
    .bind(status.as_str())
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

/// Folds one node report into its group and finishes the operations it completes.
pub(super) async fn apply_one(
    tx: &mut sqlx::SqliteConnection,
    node_id: &str,
    status: &ReportedStatus,
    now_ms: i64,
) -> Result<StatusOutcome> {
    // One statement: the guard (assigned to this node in this placement, not an older generation)
    // is in the WHERE.
    let row = sqlx::query(
        "UPDATE groups SET status = ?1, provisioning_state = COALESCE(?2, provisioning_state), \
         updated_ms = ?3 WHERE id = ?4 AND node_id = ?5 AND generation <= ?6 AND placement = ?7 \
         RETURNING generation, provisioning_state",
    )
    .bind(encode_status(status))
    .bind(provisioning_for(status).map(ProvisioningState::as_str))
    .bind(now_ms)
    .bind(&status.group_id)
    .bind(node_id)
    .bind(status.generation as i64)
    .bind(status.placement as i64)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row else {
        return Ok(StatusOutcome::Ignored);
    };
    let generation: i64 = row.try_get("generation")?;
    let provisioning: String = row.try_get("provisioning_state")?;
    let provisioning = ProvisioningState::parse(&provisioning)
        .ok_or_else(|| corrupt("groups.provisioning_state", &provisioning))?;
    match provisioning {
        ProvisioningState::Succeeded => {
            finish_operations(
                tx,
                &status.group_id,
                generation,
                OperationStatus::Succeeded,
                None,
                now_ms,
            )
            .await?
        }
        ProvisioningState::Failed => {
            let (code, message) = failure(status);
            finish_operations(
                tx,
                &status.group_id,
                generation,
                OperationStatus::Failed,
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
impl NodeStore for SqliteStore {
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
    ) -> Result<bool> {
        let mut tx = self.writer.begin().await?;
        billing::nodes_seen(&mut tx, &[(id.to_owned(), node_clock_ms)]).await?;
        // NotReady is a judgement on silence: it holds only if nobody (another replica) has heard
        // from the node since `last_heartbeat_ms`, and only for a node that is Ready.
        let changed = sqlx::query(
            "UPDATE nodes SET status = ?1, \
             last_heartbeat_ms = CASE WHEN ?2 > last_heartbeat_ms THEN ?2 ELSE last_heartbeat_ms END \
             WHERE id = ?3 AND (?1 = 'Ready' OR (status = 'Ready' AND last_heartbeat_ms <= ?2))",
        )
        .bind(status.as_str())
        .bind(last_heartbeat_ms)
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            > 0;
        if changed && status == NodeStatus::NotReady {
            if self.billing {
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
                "UPDATE groups SET provisioning_state = 'Unhealthy', updated_ms = ? WHERE node_id = ? AND desired = 'Running'",
            )
            .bind(last_heartbeat_ms)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(changed)
    }

    async fn record_heartbeats(&self, beats: &[Heartbeat]) -> Result<()> {
        batch::record_heartbeats(&self.writer, beats).await
    }

    async fn group_counts_by_node(&self) -> Result<Vec<String>> {
        Ok(
            sqlx::query_scalar("SELECT node_id FROM groups WHERE node_id IS NOT NULL")
                .fetch_all(&self.reader)
                .await?,
        )
    }
}

#[async_trait::async_trait]
impl GroupStore for SqliteStore {
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
        expected_generation: i64,
        spec: &GroupSpec,
        sealed: &[u8],
        tags: &BTreeMap<String, String>,
        fqdn: Option<&str>,
        operation: &OperationRecord,
        now_ms: i64,
    ) -> Result<Change> {
        let mut tx = self.writer.begin().await?;
        let generation: Option<i64> = sqlx::query_scalar(
            "UPDATE groups SET spec = ?1, sealed_spec = ?2, tags = ?3, generation = generation + 1, \
             provisioning_state = CASE WHEN desired = 'Running' THEN 'Updating' ELSE provisioning_state END, \
             pending_since_ms = CASE WHEN settled_ms IS NULL THEN pending_since_ms ELSE ?4 END, \
             settled_ms = NULL, updated_ms = ?4, fqdn = ?7 WHERE id = ?5 AND generation = ?6 RETURNING generation",
        )
        .bind(json(&spec.redacted()))
        .bind(sealed)
        .bind(json(tags))
        .bind(now_ms)
        .bind(id)
        .bind(expected_generation)
        .bind(fqdn)
        .fetch_optional(&mut *tx)
        .await
        .map_err(|err| {
            if is_unique_violation(&err) {
                StoreError::Conflict(Conflict::DnsLabel)
            } else {
                err.into()
            }
        })?;
        match generation {
            Some(generation) => Ok(Change::Applied {
                generation: record_operation(tx, generation, operation).await?,
            }),
            None => refused(tx, id).await,
        }
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

    async fn start_group(
        &self,
        id: &str,
        operation: &OperationRecord,
        now_ms: i64,
    ) -> Result<Change> {
        let mut tx = self.writer.begin().await?;
        // Only a stopped group (which holds no node and no capacity) starts.
        let generation: Option<i64> = sqlx::query_scalar(
            "UPDATE groups SET desired = 'Running', node_id = NULL, status = NULL, generation = generation + 1, \
             provisioning_state = 'Pending', events = '[]', updated_ms = ?1, pending_since_ms = ?1, \
             settled_ms = NULL WHERE id = ?2 AND desired = 'Stopped' RETURNING generation",
        )
        .bind(now_ms)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        match generation {
            Some(generation) => Ok(Change::Applied {
                generation: record_operation(tx, generation, operation).await?,
            }),
            None => refused(tx, id).await,
        }
    }

    async fn restart_group(
        &self,
        id: &str,
        operation: &OperationRecord,
        now_ms: i64,
    ) -> Result<Option<String>> {
        let mut tx = self.writer.begin().await?;
        let sql = format!(
            "UPDATE groups SET generation = generation + 1, {}, updated_ms = ?1 \
             WHERE id = ?2 RETURNING generation, node_id",
            restart_columns("?1")
        );
        let (generation, node_id): (i64, Option<String>) = sqlx::query_as(&sql)
            .bind(now_ms)
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
        record_operation(tx, generation, operation).await?;
        Ok(node_id)
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
        for row in &rows {
            records.extend(dns_record(row)?);
        }
        Ok(records)
    }
}

#[async_trait::async_trait]
impl SchedulingStore for SqliteStore {
    async fn pending_groups(&self, limit: i64) -> Result<Vec<PendingGroup>> {
        let sql = format!(
            "SELECT {PENDING_COLUMNS} FROM groups WHERE node_id IS NULL AND desired = 'Running' \
             AND settled_ms IS NULL AND provisioning_state != 'Failed' ORDER BY seq LIMIT ?"
        );
        let rows = sqlx::query(&sql)
            .bind(limit)
            .fetch_all(&self.writer)
            .await?;
        rows.iter().map(pending_from_row).collect()
    }

    async fn commit_placements(
        &self,
        placements: &[Placement],
        now_ms: i64,
    ) -> Result<Vec<Placement>> {
        batch::commit_placements(&self.writer, placements, now_ms, self.billing).await
    }

    async fn record_event(&self, group_id: &str, event: GroupEvent) -> Result<()> {
        // Compare-and-swap on the events as read: a concurrent writer's event is never overwritten.
        for _ in 0..RETRIES {
            let Some(stored) =
                sqlx::query_scalar::<_, String>("SELECT events FROM groups WHERE id = ?")
                    .bind(group_id)
                    .fetch_optional(&self.writer)
                    .await?
            else {
                return Ok(());
            };
            let mut events: Vec<GroupEvent> =
                serde_json::from_str(&stored).map_err(|e| corrupt("groups.events", e))?;
            merge_event(&mut events, event.clone());
            let swapped = sqlx::query("UPDATE groups SET events = ? WHERE id = ? AND events = ?")
                .bind(json(&events))
                .bind(group_id)
                .bind(&stored)
                .execute(&self.writer)
                .await?;
            if swapped.rows_affected() == 1 {
                return Ok(());
            }
        }
        Err(StoreError::Contended)
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
                OperationStatus::Failed,
                Some((code, message)),
                now_ms,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

#[async_trait::async_trait]
impl ReportStore for SqliteStore {
    async fn apply_status(
        &self,
        node_id: &str,
        status: &ReportedStatus,
        now_ms: i64,
    ) -> Result<StatusOutcome> {
        let mut tx = self.writer.begin().await?;
        let outcome = apply_one(&mut tx, node_id, status, now_ms).await?;
        if self.billing {
            let report = NodeReport {
                node_id: node_id.to_owned(),
                seq: 0,
                status: status.clone(),
            };
            let epochs = batch::placements(&mut tx, &[status.group_id.as_str()]).await?;
            billing::record(&mut tx, &metered(std::slice::from_ref(&report), &epochs)).await?;
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
}

#[async_trait::async_trait]
impl UsageStore for SqliteStore {
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

    fn usage_reader(&self) -> Result<Box<dyn UsageReader>> {
        let path = self.path.as_ref().ok_or(StoreError::Unsupported(
            "an in-memory store cannot be exported",
        ))?;
        Ok(Box::new(usage_reader::SqliteUsageReader::open(path)?))
    }
}

#[async_trait::async_trait]
impl OperationStore for SqliteStore {
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
pub(crate) mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::model::reported::GroupPhase;
    use crate::store::conformance::{self, Subject, fixtures};

    /// A fresh store in a temporary directory, for the conformance suite.
    pub(crate) async fn fresh() -> Subject {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("t.db")).await.unwrap();
        Subject {
            store: Arc::new(store),
            _keep: Box::new(dir),
        }
    }

    mod conformance_suite {
        crate::store::conformance::store_conformance!(super::fresh);
    }

    /// What only this backend keeps: the node clock of the last message (`last_node_ms`).
    #[tokio::test]
    async fn the_node_clock_of_heartbeats_never_moves_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("t.db")).await.unwrap();
        fixtures::join(&store, "n1", 4000).await;
        let beat = |at_ms, node_clock_ms| Heartbeat {
            node_id: "n1".to_owned(),
            at_ms,
            node_clock_ms,
        };
        let last_node_ms = || async {
            sqlx::query_scalar::<_, i64>("SELECT last_node_ms FROM nodes WHERE id = 'n1'")
                .fetch_one(&store.reader)
                .await
                .unwrap()
        };
        store.record_heartbeats(&[beat(500, 400)]).await.unwrap();
        assert_eq!(last_node_ms().await, 400);
        store.record_heartbeats(&[beat(600, 200)]).await.unwrap();
        assert_eq!(last_node_ms().await, 400, "late writes change nothing");
        let _ = conformance::fixtures::spec(1);
    }

    /// Places and runs one group per store, reported through the multi-row report fold: billing on,
    /// the run and its ledger rows are written (with who the group is, its GPU model included);
    /// billing off, nothing of it is.
    #[tokio::test]
    async fn the_report_fold_meters_runs_unless_billing_is_off() {
        for billing in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let store = SqliteStore::open(&dir.path().join("t.db"))
                .await
                .unwrap()
                .with_billing(billing);
            let node = "n1".to_owned();
            fixtures::join(&store, &node, 4000).await;
            let mut g = fixtures::new_group("m", 1000);
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
                status: ReportedStatus {
                    run_started_unix_ms: 1_000,
                    observed_unix_ms: observed,
                    run_finished_unix_ms: finished,
                    ..fixtures::report(&g.id, 1, GroupPhase::Running)
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
