//! Exec and attach sessions in PostgreSQL: inserted with the expired and the surplus cleared in the
//! same transaction, taken with `DELETE … RETURNING` (one statement: of replicas racing for a
//! session, the row lock lets one delete it and the others find nothing).

use super::PgStore;
use crate::store::exec_sessions::{SESSION_COLUMNS, SessionRow};
use crate::store::{ExecSessionStore, PendingSession, Result};

#[async_trait::async_trait]
impl ExecSessionStore for PgStore {
    async fn insert_exec_session(
        &self,
        session: &PendingSession,
        now_ms: i64,
        keep: usize,
    ) -> Result<()> {
        let row = SessionRow::from(session);
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM exec_sessions WHERE expires_ms <= $1")
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
        // Approximate under concurrent inserts (each counts without the others'), which the trait
        // allows: the bound is on memory, not a rule a client relies on.
        let waiting: i64 = sqlx::query_scalar("SELECT count(*) FROM exec_sessions")
            .fetch_one(&mut *tx)
            .await?;
        let surplus = waiting.saturating_sub(keep as i64).saturating_add(1);
        if surplus > 0 {
            sqlx::query(
                "DELETE FROM exec_sessions WHERE id IN \
                 (SELECT id FROM exec_sessions ORDER BY expires_ms, id LIMIT $1)",
            )
            .bind(surplus)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(&format!(
            "INSERT INTO exec_sessions ({SESSION_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
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
            "DELETE FROM exec_sessions WHERE id = $1 RETURNING {SESSION_COLUMNS}"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(PendingSession::try_from).transpose()
    }

    async fn exec_session_pending(&self, id: &str, now_ms: i64) -> Result<bool> {
        let found: Option<i32> =
            sqlx::query_scalar("SELECT 1 FROM exec_sessions WHERE id = $1 AND expires_ms > $2")
                .bind(id)
                .bind(now_ms)
                .fetch_optional(&self.pool)
                .await?;
        Ok(found.is_some())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::Arc;

    use crate::store::conformance::exec_sessions as cases;
    use crate::store::postgres::tests::fresh_store;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_session_round_trips_and_is_taken_once() {
        cases::a_session_round_trips_and_is_taken_once(Arc::new(fresh_store().await)).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn racing_takes_of_one_session_give_it_to_one() {
        cases::racing_takes_of_one_session_give_it_to_one(Arc::new(fresh_store().await)).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn expired_sessions_are_not_pending_and_are_purged_on_insert() {
        cases::expired_sessions_are_not_pending_and_are_purged_on_insert(Arc::new(
            fresh_store().await,
        ))
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn past_the_cap_the_soonest_expiring_make_room() {
        cases::past_the_cap_the_soonest_expiring_make_room(Arc::new(fresh_store().await)).await;
    }
}
