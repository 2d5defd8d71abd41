//! The PostgreSQL store: for several apiserver replicas sharing one database (`--store
//! postgres://…`). sqlx's PostgreSQL driver, a connection pool, its own append-only migrations
//! (`apiserver/migrations/postgres`).
//!
//! Transactions run at READ COMMITTED, PostgreSQL's default. Every read-modify-write is either one
//! statement (a conditional `UPDATE … WHERE <guard>`, re-evaluated on the newest row version when
//! another writer got there first), or takes the rows it decides on with `SELECT … FOR UPDATE` first;
//! ARCHITECTURE.md ("Many writers") lists which does what.

use std::str::FromStr;
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use super::*;

mod agent_endpoints;
mod billing;
mod exec_sessions;
mod usage;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Connections per apiserver replica.
const POOL_SIZE: u32 = 16;

/// PostgreSQL, shared by every replica.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
    /// The database's URL, for connections of their own (exports, `LISTEN`).
    url: String,
    /// Whether state changes are metered (`--billing off`: no meter work at all).
    billing: bool,
}

impl PgStore {
    /// Connects to `postgres://…` and brings the schema up to date (replicas starting together
    /// take turns: sqlx's migrator holds an advisory lock while it runs).
    pub async fn connect(url: &str) -> Result<Self> {
        let options = PgConnectOptions::from_str(url)?;
        let pool = PgPoolOptions::new()
            .max_connections(POOL_SIZE)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await?;
        MIGRATOR.run(&pool).await?;
        Ok(Self {
            pool,
            url: url.to_owned(),
            billing: true,
        })
    }

    /// The same store, metering state changes or not (on by default).
    pub fn with_billing(mut self, on: bool) -> Self {
        self.billing = on;
        self
    }

    /// The database's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod tests {
    use super::*;

    #[allow(dead_code)]
    /// A store on a fresh database of this test binary's own PostgreSQL server.
    pub(crate) async fn fresh_store() -> PgStore {
        let pg = berth_testkit::postgres::TempPostgres::shared().unwrap();
        let url = pg.fresh_database("store").unwrap();
        PgStore::connect(&url).await.unwrap()
    }

    #[tokio::test]
    async fn migrations_run_once_however_many_replicas_connect() {
        let pg = berth_testkit::postgres::TempPostgres::shared().unwrap();
        let url = pg.fresh_database("migrate").unwrap();
        let (a, b) = tokio::join!(PgStore::connect(&url), PgStore::connect(&url));
        let (a, b) = (a.unwrap(), b.unwrap());
        let tables: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public' AND table_name = 'groups'",
        )
        .fetch_one(&a.pool)
        .await
        .unwrap();
        assert_eq!(tables, 1);
        b.close().await;
        a.close().await;
    }
}
