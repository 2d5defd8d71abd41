//! Leases: a named row that one holder has until it expires, for work that one replica at a time
//! must do (the scheduler and the liveness monitor hold lease `control`).

use super::Result;

/// Named leases with an expiry. The backend's clock judges expiry (PostgreSQL's own on
/// PostgreSQL, so replicas' clock skew does not matter).
#[async_trait::async_trait]
pub trait LeaseStore: Send + Sync {
    /// Takes lease `name` for `holder` for `ttl_ms` from now, in one statement: inserts it if
    /// nobody has it, takes it over if it expired, renews it if `holder` has it. Returns whether
    /// `holder` has it now; `false` means another holder's lease runs.
    async fn acquire_lease(&self, name: &str, holder: &str, ttl_ms: i64) -> Result<bool>;
    /// Gives lease `name` up at once if `holder` has it (nothing otherwise).
    async fn release_lease(&self, name: &str, holder: &str) -> Result<()>;
}
