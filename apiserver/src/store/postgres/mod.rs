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
mod census;
mod creates;
mod exec_sessions;
mod groups;
mod leases;
mod metrics;
mod node_lifecycle;
mod nodes;
mod operations;
mod reports;
mod resource_groups;
mod scheduling;
mod tokens;
mod usage;
mod usage_reader;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Connections per apiserver replica.
const POOL_SIZE: u32 = 16;

/// The class of the two-key advisory locks (`pg_advisory_xact_lock(class, key)`) that serialise
/// one subscription's new resource groups (the limit is a count); two-key locks never meet sqlx's
/// migration lock, which is a one-key lock.
const RESOURCE_GROUP_LOCK: i32 = 1;

/// PostgreSQL, shared by every replica.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
    /// Creates go through a few tasks that commit them in batches (see `creates`).
    creates: tokio::sync::mpsc::Sender<creates::CreateRequest>,
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
            creates: creates::spawn(pool.clone()),
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
    use std::sync::Arc;

    use super::*;
    use crate::store::conformance::Subject;

    /// A store on a fresh database of this test binary's own PostgreSQL server.
    pub(crate) async fn fresh_store() -> PgStore {
        let pg = berth_testkit::postgres::TempPostgres::shared().unwrap();
        let url = pg.fresh_database("store").unwrap();
        PgStore::connect(&url).await.unwrap()
    }

    /// A fresh store for the conformance suite, metering as in production.
    pub(crate) async fn fresh() -> Subject {
        let store = fresh_store().await;
        Subject {
            store: Arc::new(store),
            _keep: Box::new(()),
        }
    }

    mod conformance_suite {
        crate::store::conformance::store_conformance!(super::fresh);
    }

    /// `--store postgres://…` (or `postgresql://`) starts the apiserver on PostgreSQL; a second
    /// replica on the same database finds the operator token the first one wrote and writes none.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn apiservers_start_on_a_postgres_url_and_share_its_state() {
        let pg = berth_testkit::postgres::TempPostgres::shared().unwrap();
        let url = pg.fresh_database("start").unwrap();
        let start = |store: String| async move {
            let dir = tempfile::tempdir().unwrap();
            let mut config = crate::Config::with_data_dir(dir.path());
            config.listen = "127.0.0.1:0".parse().unwrap();
            config.node_listen = "127.0.0.1:0".parse().unwrap();
            config.dns_listen = None;
            config.store = store;
            let shutdown = tokio_util::sync::CancellationToken::new();
            let running = crate::start(config, shutdown.clone()).await.unwrap();
            (running, shutdown, dir)
        };
        let (a, stop_a, _dir_a) = start(url.clone()).await;
        let other_scheme = url.replacen("postgres://", "postgresql://", 1);
        let (b, stop_b, _dir_b) = start(other_scheme).await;
        assert!(a.initial_operator_token.is_some());
        assert_eq!(b.initial_operator_token, None, "the first replica wrote it");
        assert_eq!(b.state.store.count_tokens().await.unwrap(), 1);
        stop_a.cancel();
        stop_b.cancel();
        a.wait().await;
        b.wait().await;
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
