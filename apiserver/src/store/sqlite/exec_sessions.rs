//! Exec and attach sessions in SQLite: inserted with the expired and the surplus cleared in the same
//! transaction, taken with `DELETE … RETURNING` (one statement: one taker).

use super::SqliteStore;
use crate::store::exec_sessions::{SESSION_COLUMNS, SessionRow};
use crate::store::{ExecSessionStore, PendingSession, Result};

#[async_trait::async_trait]
impl ExecSessionStore for SqliteStore {
    async fn insert_exec_session(
        &self,
        session: &PendingSession,
        now_ms: i64,
        keep: usize,
    ) -> Result<()> {
        let row = SessionRow::from(session);
        let mut tx = self.writer.begin().await?;
        sqlx::query("DELETE FROM exec_sessions WHERE expires_ms <= ?")
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
        let waiting: i64 = sqlx::query_scalar("SELECT count(*) FROM exec_sessions")
            .fetch_one(&mut *tx)
            .await?;
        let surplus = waiting.saturating_sub(keep as i64).saturating_add(1);
        if surplus > 0 {
            sqlx::query(
                "DELETE FROM exec_sessions WHERE id IN \
                 (SELECT id FROM exec_sessions ORDER BY expires_ms, id LIMIT ?)",
            )
            .bind(surplus)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(&format!(
            "INSERT INTO exec_sessions ({SESSION_COLUMNS}) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        ))
        .bind(row.id)
        .bind(row.password_hash)
        .bind(row.kind)
        .bind(row.command)
        .bind(row.tty)
        .bind(row.stdin)
        .bind(row.term_rows)
        .bind(row.term_cols)
        .bind(row.token_id)
        .bind(row.subscription)
        .bind(row.resource_group)
        .bind(row.group_name)
        .bind(row.group_id)
        .bind(row.container)
        .bind(row.expires_ms)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn take_exec_session(&self, id: &str) -> Result<Option<PendingSession>> {
        let row: Option<SessionRow> = sqlx::query_as(&format!(
            "DELETE FROM exec_sessions WHERE id = ? RETURNING {SESSION_COLUMNS}"
        ))
        .bind(id)
        .fetch_optional(&self.writer)
        .await?;
        row.map(PendingSession::try_from).transpose()
    }

    async fn exec_session_pending(&self, id: &str, now_ms: i64) -> Result<bool> {
        let found: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM exec_sessions WHERE id = ? AND expires_ms > ?")
                .bind(id)
                .bind(now_ms)
                .fetch_optional(&self.reader)
                .await?;
        Ok(found.is_some())
    }
}
