//! Operations in PostgreSQL: inserted with the change they wait for, finished by node reports,
//! canceled by stop and delete.

use sqlx::PgConnection;

use super::PgStore;
use crate::store::rows::operation_from_row;
use crate::store::{OperationRecord, OperationStatus, OperationStore, Result};

pub(super) async fn insert(conn: &mut PgConnection, op: &OperationRecord) -> Result<()> {
    sqlx::query(
        "INSERT INTO operations (id, subscription, group_id, resource_id, kind, generation, status, error_code, \
         error_message, started_ms, ended_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
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

/// Ends a group's pending operations as Canceled.
pub(super) async fn cancel(conn: &mut PgConnection, group_id: &str, at_ms: i64) -> Result<()> {
    sqlx::query(
        "UPDATE operations SET status = 'Canceled', ended_ms = $1 WHERE group_id = $2 AND status = 'Pending'",
    )
    .bind(at_ms)
    .bind(group_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Ends a group's pending operations up to `generation` with `status` (and the error, if any).
pub(super) async fn finish(
    conn: &mut PgConnection,
    group_id: &str,
    generation: i64,
    status: OperationStatus,
    error: Option<(&str, &str)>,
    now_ms: i64,
) -> Result<()> {
    sqlx::query(
        "UPDATE operations SET status = $1, error_code = $2, error_message = $3, ended_ms = $4 \
         WHERE group_id = $5 AND status = 'Pending' AND generation <= $6",
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

#[async_trait::async_trait]
impl OperationStore for PgStore {
    async fn insert_operation(&self, operation: &OperationRecord) -> Result<()> {
        let mut conn = self.pool.acquire().await?;
        insert(&mut conn, operation).await
    }

    async fn operation(&self, id: &str) -> Result<Option<OperationRecord>> {
        let row = sqlx::query("SELECT * FROM operations WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(operation_from_row).transpose()
    }
}
