//! API tokens: issue, look up, list, revoke, and when they were last used.

use super::Result;

/// A stored API token (the secret itself is never stored, only its SHA-256).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    pub id: String,
    pub hash: String,
    /// What listings show of the token: `berth_<id>_` and the first few characters of the secret.
    pub prefix: String,
    pub subscriptions: Vec<String>,
    pub operator: bool,
    pub created_ms: i64,
    /// `None`: never expires.
    pub expires_ms: Option<i64>,
    pub revoked_ms: Option<i64>,
    /// When a request last carried it, as last written (every few seconds, not per request).
    pub last_used_ms: Option<i64>,
}

/// What revoking a token did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revocation {
    /// Revoked now, or already (then `revoked_ms` is the first revocation's).
    Revoked(TokenRecord),
    NotFound,
    /// Refused: it is the last operator token that is neither revoked nor expired, and without it
    /// nobody could administer the cluster.
    LastOperator,
}

/// API tokens.
#[async_trait::async_trait]
pub trait TokenStore: Send + Sync {
    async fn insert_token(&self, token: &TokenRecord) -> Result<()>;
    async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRecord>>;
    async fn token_by_id(&self, id: &str) -> Result<Option<TokenRecord>>;
    /// Every token, revoked and expired ones included, oldest first.
    async fn tokens(&self) -> Result<Vec<TokenRecord>>;
    /// Revokes a token at `now_ms` (idempotent), unless it is the last live operator token. The check
    /// and the revocation are one decision: two revokes of the last two operator tokens cannot both pass.
    async fn revoke_token(&self, id: &str, now_ms: i64) -> Result<Revocation>;
    /// Records when tokens `(id, at_ms)` were last used, in one statement; never moves a time back.
    async fn record_token_use(&self, used: &[(String, i64)]) -> Result<()>;
    async fn count_tokens(&self) -> Result<i64>;
}
