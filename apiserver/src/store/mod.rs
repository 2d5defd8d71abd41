//! The state store: one trait per concern, [`Store`] over all of them, and its two backends: SQLite
//! (`sqlite`, the embedded default) and PostgreSQL (`postgres`, for several apiserver replicas).
//!
//! The traits speak the control plane's types only (no driver, no protobuf): [`TokenStore`],
//! [`NodeStore`], [`GroupStore`], [`SchedulingStore`], [`ReportStore`], [`UsageStore`],
//! [`OperationStore`], [`ResourceGroupStore`], [`LeaseStore`], [`ExecSessionStore`],
//! [`AgentEndpointStore`], [`MetricStore`], [`CensusStore`]. Callers hold an `Arc<dyn Store>`.
//!
//! Every write that belongs together is one transaction: a group and its operation; a placement and
//! its capacity reservation; a status report and the operations it finishes. Every read-modify-write
//! is one statement or guarded (by a generation or the old value), so it stays correct with many
//! writers, not only with SQLite's one. Node capacity is also guarded by `CHECK` constraints, so no
//! bug above the store can overcommit a node. `conformance` is the suite any backend must pass.

mod agent_endpoints;
mod census;
mod exec_sessions;
mod groups;
mod leases;
mod metrics;
mod node_lifecycle;
mod nodes;
mod operations;
pub(crate) mod postgres;
mod reports;
mod resource_groups;
mod rows;
mod scheduling;
mod sqlite;
mod sqlx_error;
mod tokens;
mod usage;
mod usage_rows;

#[cfg(test)]
pub(crate) mod conformance;

pub use agent_endpoints::*;
pub use census::{Census, CensusStore, GroupCount};
pub use exec_sessions::*;
pub use groups::*;
pub use leases::*;
pub use metrics::*;
pub use node_lifecycle::*;
pub use nodes::*;
pub use operations::*;
pub use postgres::PgStore;
pub use reports::*;
pub use resource_groups::*;
pub use scheduling::*;
pub use sqlite::SqliteStore;
pub use tokens::*;
pub use usage::*;

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend failed or refused a statement.
    #[error("database error")]
    Backend(#[source] BackendError),
    /// A stored JSON column did not parse.
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// A uniqueness rule was broken.
    #[error("{0}")]
    Conflict(Conflict),
    /// The store is shutting down or its writer failed.
    #[error("the store is unavailable")]
    Unavailable,
    /// A guarded write kept losing to concurrent writers; nothing changed, the caller may retry.
    #[error("too many concurrent changes of one row")]
    Contended,
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

/// A backend's failure, opaque above the store: what kind it is and the backend's own words (for
/// logs; never shown to clients).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind:?}: {message}")]
pub struct BackendError {
    pub kind: BackendErrorKind,
    pub message: String,
}

/// What kind of backend failure; lets callers decide whether to retry without knowing the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendErrorKind {
    /// Could not reach or keep the database (I/O, pool closed or timed out, busy): may pass.
    Unavailable,
    /// The database refused a row (a constraint the store relies on as a guard).
    Constraint,
    /// The schema could not be brought up to date.
    Migration,
    /// Any other failure of a statement or its result.
    Statement,
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

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Which backend a `--store` URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// `sqlite://PATH`: one file, one apiserver.
    Sqlite,
    /// `postgres://…` or `postgresql://…`: one database, any number of apiserver replicas.
    Postgres,
}

impl Backend {
    /// The backend of `url`, by its scheme; `None` for any other.
    pub fn of(url: &str) -> Option<Self> {
        let (scheme, _) = url.split_once("://")?;
        match scheme {
            "sqlite" => Some(Backend::Sqlite),
            "postgres" | "postgresql" => Some(Backend::Postgres),
            _ => None,
        }
    }
}

/// The whole store: every concern's trait. Any type with all of them is one.
pub trait Store:
    TokenStore
    + NodeStore
    + NodeLifecycleStore
    + GroupStore
    + SchedulingStore
    + ReportStore
    + UsageStore
    + OperationStore
    + ResourceGroupStore
    + LeaseStore
    + ExecSessionStore
    + AgentEndpointStore
    + MetricStore
    + CensusStore
    + Send
    + Sync
    + 'static
{
}

impl<T> Store for T where
    T: TokenStore
        + NodeStore
        + NodeLifecycleStore
        + GroupStore
        + SchedulingStore
        + ReportStore
        + UsageStore
        + OperationStore
        + ResourceGroupStore
        + LeaseStore
        + ExecSessionStore
        + AgentEndpointStore
        + MetricStore
        + CensusStore
        + Send
        + Sync
        + 'static
{
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scheme_picks_the_backend() {
        assert_eq!(
            Backend::of("sqlite:///var/lib/berth/berth.db"),
            Some(Backend::Sqlite)
        );
        assert_eq!(
            Backend::of("postgres://berth@db:5432/berth"),
            Some(Backend::Postgres)
        );
        assert_eq!(
            Backend::of("postgresql://berth@db/berth"),
            Some(Backend::Postgres)
        );
        assert_eq!(Backend::of("mysql://db/berth"), None);
        assert_eq!(Backend::of("/var/lib/berth/berth.db"), None);
        assert_eq!(
            Backend::of("Postgres://db/berth"),
            None,
            "schemes as written"
        );
    }
}
