//! Leases on PostgreSQL: one `INSERT … ON CONFLICT DO UPDATE … WHERE` (PostgreSQL locks the row it
//! conflicts with and evaluates the guard on its newest version, so two replicas racing for a lease
//! never both get it), timed by the database's clock.

use super::*;

/// The database's clock in milliseconds since the Unix epoch.
const DB_NOW_MS: &str = "(extract(epoch FROM clock_timestamp()) * 1000)::bigint";

#[async_trait::async_trait]
impl LeaseStore for PgStore {
    async fn acquire_lease(&self, name: &str, holder: &str, ttl_ms: i64) -> Result<bool> {
        let sql = format!(
            "INSERT INTO leases (name, holder, expires_ms) VALUES ($1, $2, {DB_NOW_MS} + $3) \
             ON CONFLICT (name) DO UPDATE SET holder = EXCLUDED.holder, expires_ms = EXCLUDED.expires_ms \
             WHERE leases.holder = EXCLUDED.holder OR leases.expires_ms <= {DB_NOW_MS}"
        );
        let done = sqlx::query(&sql)
            .bind(name)
            .bind(holder)
            .bind(ttl_ms)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn release_lease(&self, name: &str, holder: &str) -> Result<()> {
        sqlx::query("DELETE FROM leases WHERE name = $1 AND holder = $2")
            .bind(name)
            .bind(holder)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

/// The conformance cases on PostgreSQL (until the suite runs there whole).
#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::store::conformance::leases;
    use crate::store::postgres::tests::fresh_store;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn of_racing_holders_one_gets_the_lease_and_renews_it() {
        leases::of_racing_holders_one_gets_the_lease_and_renews_it(Arc::new(fresh_store().await))
            .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn an_expired_lease_passes_to_the_next_holder() {
        leases::an_expired_lease_passes_to_the_next_holder(Arc::new(fresh_store().await)).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_released_lease_passes_at_once() {
        leases::a_released_lease_passes_at_once(Arc::new(fresh_store().await)).await;
    }
}
