//! Bearer tokens: issuing, hashing, authenticating, revoking, and the `Principal` extractor.
//!
//! A token is `berth_<id>_<secret>`; only its SHA-256 is stored, with the prefix listings show
//! (`berth_<id>_` and the secret's first few characters). Each token is scoped to subscriptions;
//! operator tokens also reach `/admin/v1`. A token may expire, and may be revoked.
//!
//! Lookups are cached per process, but an entry is trusted for at most [`TRUST_MS`] after it was
//! read from the store: a revocation through any replica of the store is seen here within a
//! second, one through this process at once. Expiry is checked on every request. So
//! authentication costs one hash and one short lock per request, and one store read per token per
//! second; when an entry goes stale, one request reads the store and the others with the same token
//! wait for its answer. When a token was last used is kept in the cache and written every
//! [`USE_WRITE_INTERVAL`], for all tokens in one statement.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{FromRequestParts, MatchedPath};
use axum::http::StatusCode;
use axum::http::request::Parts;
use rand::Rng as _;
use rand::distr::Alphanumeric;
use sha2::{Digest as _, Sha256};
use tokio_util::sync::CancellationToken;

use crate::AppState;
use crate::error::ApiError;
use crate::store::{Revocation, Store, StoreError, TokenRecord};

/// How long a token read from the store is trusted without reading it again (milliseconds).
pub const TRUST_MS: i64 = 1000;
/// How often the last use of tokens is written to the store.
pub const USE_WRITE_INTERVAL: Duration = Duration::from_secs(5);
/// Random characters after `berth_<id>_`.
const SECRET_LEN: usize = 40;
/// Characters of the secret a listing shows: enough to tell tokens apart by eye, 4 of 40 (the
/// remaining 36 alphanumerics are over 200 bits).
const PREFIX_SECRET_CHARS: usize = 4;
/// Cache entries neither read nor used for this long are dropped (milliseconds).
const IDLE_MS: i64 = 10 * 60 * 1000;

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub token_id: String,
    pub subscriptions: HashSet<String>,
    pub operator: bool,
}

impl Principal {
    /// Whether this caller may see `subscription` (compared without case, as ARM does).
    pub fn can_see(&self, subscription: &str) -> bool {
        self.subscriptions
            .contains(&subscription.to_ascii_lowercase())
    }

    /// Admits the caller to a route under `/subscriptions/{subscription}`: a subscription id that is
    /// not a GUID is 400 `InvalidSubscriptionId` for everyone (its shape alone decides, so it tells
    /// nothing about which subscriptions exist); a well-formed one the caller may not see is 404, as
    /// if it did not exist.
    pub fn admit(&self, subscription: &str) -> Result<(), ApiError> {
        crate::validate::subscription(subscription)?;
        if self.can_see(subscription) {
            Ok(())
        } else {
            Err(ApiError::subscription_not_found(subscription))
        }
    }
}

/// A caller with an operator token; any other valid token is 403 naming the route.
#[derive(Debug, Clone)]
pub struct Operator(pub Principal);

impl FromRequestParts<AppState> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let principal = Principal::from_request_parts(parts, state).await?;
        if principal.operator {
            return Ok(Operator(principal));
        }
        let route = parts
            .extensions
            .get::<MatchedPath>()
            .map_or_else(|| parts.uri.path(), MatchedPath::as_str);
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "AuthorizationFailed",
            "The client does not have authorization to perform this action: an operator token is required.",
        )
        .with_target(format!("{} {route}", parts.method)))
    }
}

/// Why a bearer token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Unknown,
    Revoked,
    Expired { at_ms: i64 },
}

impl From<Refusal> for ApiError {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::Unknown => ApiError::new(
                StatusCode::UNAUTHORIZED,
                "InvalidAuthenticationToken",
                "The access token is invalid.",
            )
            .with_target("Authorization"),
            Refusal::Revoked => ApiError::new(
                StatusCode::UNAUTHORIZED,
                "InvalidAuthenticationToken",
                "The access token has been revoked.",
            )
            .with_target("Authorization"),
            Refusal::Expired { at_ms } => ApiError::new(
                StatusCode::UNAUTHORIZED,
                "ExpiredAuthenticationToken",
                format!(
                    "The access token expired at '{}'.",
                    crate::render::timestamp(at_ms)
                ),
            )
            .with_target("Authorization"),
        }
    }
}

/// The installation's tenant id (a GUID): every subscription of this Berth belongs to this one
/// tenant. It is derived from the cluster CA certificate, so every replica (they share the CA)
/// agrees on it with nothing more to store, and it stays the same across restarts; an installation
/// that replaces its CA gets a new tenant id. ARM's `GET /tenants`, subscriptions' `tenantId`, the
/// sign-in authority and the `tid` of its access tokens all use it.
pub fn tenant_id(state: &AppState) -> String {
    tenant_of_ca(state.ca.cert_der().as_ref())
}

/// A version-8 (custom) UUID from SHA-256 over a label and the CA certificate's DER.
pub fn tenant_of_ca(ca_der: &[u8]) -> String {
    crate::signin::derived_guid(b"berth tenant id\0", ca_der)
}

/// A token just made: the only time its secret exists in clear.
#[derive(Debug, Clone)]
pub struct Issued {
    pub token: String,
    pub record: TokenRecord,
}

pub fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn random(len: usize) -> String {
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

/// Random lower-case alphanumerics (join tokens use kubeadm's alphabet).
pub fn random_lower(len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..len)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect()
}

/// What the store said about a token.
#[derive(Debug, Clone)]
enum Standing {
    Valid {
        principal: Principal,
        expires_ms: Option<i64>,
    },
    /// Final: a revoked token never becomes valid again.
    Revoked,
}

#[derive(Debug)]
struct Cached {
    token_id: String,
    standing: Standing,
    /// When the store was read (the request's time, which is no later than the read).
    read_ms: i64,
    /// The latest request it authenticated (0: none), and the latest of those written.
    used_ms: i64,
    written_used_ms: i64,
    /// Held by the one request that re-reads a stale entry.
    refresh: Arc<tokio::sync::Mutex<()>>,
}

impl Cached {
    fn new(record: &TokenRecord, standing: Standing, now_ms: i64) -> Self {
        Self {
            token_id: record.id.clone(),
            standing,
            read_ms: now_ms,
            used_ms: 0,
            written_used_ms: record.last_used_ms.unwrap_or(0),
            refresh: Arc::default(),
        }
    }

    /// Trusted at `now_ms`: read less than [`TRUST_MS`] ago (either way, should the clock step back).
    fn fresh(&self, now_ms: i64) -> bool {
        now_ms.abs_diff(self.read_ms) < TRUST_MS as u64
    }

    /// The answer for a request at `now_ms`; a request it lets through counts as a use.
    fn answer(&mut self, now_ms: i64) -> Result<Principal, Refusal> {
        match &self.standing {
            Standing::Revoked => Err(Refusal::Revoked),
            Standing::Valid {
                expires_ms: Some(at_ms),
                ..
            } if now_ms >= *at_ms => Err(Refusal::Expired { at_ms: *at_ms }),
            Standing::Valid { principal, .. } => {
                self.used_ms = self.used_ms.max(now_ms);
                Ok(principal.clone())
            }
        }
    }
}

/// How a credential is looked up: by its hash (bearer tokens) or its id (access tokens issued
/// for it). Both kinds share the cache: hashes are hex, id keys are `id:<id>`.
enum By {
    Hash(String),
    Id(String),
}

impl By {
    fn cache_key(&self) -> String {
        match self {
            By::Hash(hash) => hash.clone(),
            By::Id(id) => format!("id:{id}"),
        }
    }
}

enum Lookup {
    Fresh(Result<Principal, Refusal>),
    Stale(Arc<tokio::sync::Mutex<()>>),
    Missing,
}

/// Issues, authenticates and revokes tokens.
pub struct Authenticator {
    store: Arc<dyn Store>,
    /// Token hash -> what the store said and when.
    cache: Mutex<HashMap<String, Cached>>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator").finish_non_exhaustive()
    }
}

impl Authenticator {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            cache: Mutex::default(),
        }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<String, Cached>> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes a token, stores its hash, and returns it. `expires_ms`: `None` for never.
    pub async fn issue(
        &self,
        subscriptions: &[String],
        operator: bool,
        expires_ms: Option<i64>,
        now_ms: i64,
    ) -> Result<Issued, StoreError> {
        let id = random_lower(12);
        let secret = random(SECRET_LEN);
        let token = format!("berth_{id}_{secret}");
        let record = TokenRecord {
            prefix: format!("berth_{id}_{}", &secret[..PREFIX_SECRET_CHARS]),
            id,
            hash: hash(&token),
            subscriptions: subscriptions
                .iter()
                .map(|s| s.to_ascii_lowercase())
                .collect(),
            operator,
            created_ms: now_ms,
            expires_ms,
            revoked_ms: None,
            last_used_ms: None,
        };
        self.store.insert_token(&record).await?;
        Ok(Issued { token, record })
    }

    /// Who `token` is at `now_ms`, or why it is refused.
    pub async fn authenticate(
        &self,
        token: &str,
        now_ms: i64,
    ) -> Result<Result<Principal, Refusal>, StoreError> {
        self.standing_of(By::Hash(hash(token)), now_ms).await
    }

    /// Who the credential with id `id` is at `now_ms` (for access tokens issued for it, which
    /// carry its id), under the same cache and trust rule as [`Authenticator::authenticate`].
    pub async fn authenticate_id(
        &self,
        id: &str,
        now_ms: i64,
    ) -> Result<Result<Principal, Refusal>, StoreError> {
        self.standing_of(By::Id(id.to_owned()), now_ms).await
    }

    async fn standing_of(
        &self,
        by: By,
        now_ms: i64,
    ) -> Result<Result<Principal, Refusal>, StoreError> {
        let key = by.cache_key();
        let gate = match self.lookup(&key, now_ms) {
            Lookup::Fresh(answer) => return Ok(answer),
            Lookup::Stale(gate) => Some(gate),
            Lookup::Missing => None,
        };
        // One request re-reads a stale entry; the others with the same token wait for its answer.
        let _refreshing = match gate {
            Some(gate) => {
                let guard = gate.lock_owned().await;
                if let Lookup::Fresh(answer) = self.lookup(&key, now_ms) {
                    return Ok(answer);
                }
                Some(guard)
            }
            None => None,
        };
        let record = match &by {
            By::Hash(hash) => self.store.token_by_hash(hash).await?,
            By::Id(id) => self.store.token_by_id(id).await?,
        };
        Ok(self.remember(key, record, now_ms))
    }

    fn lookup(&self, hash: &str, now_ms: i64) -> Lookup {
        let mut cache = self.cache();
        match cache.get_mut(hash) {
            Some(entry) if entry.fresh(now_ms) => Lookup::Fresh(entry.answer(now_ms)),
            Some(entry) => Lookup::Stale(entry.refresh.clone()),
            None => Lookup::Missing,
        }
    }

    /// Caches what the store said (read at `now_ms` or later) and answers from it. A token the
    /// store does not have is not cached: made-up tokens must not grow the cache.
    fn remember(
        &self,
        hash: String,
        record: Option<TokenRecord>,
        now_ms: i64,
    ) -> Result<Principal, Refusal> {
        let Some(record) = record else {
            return Err(Refusal::Unknown);
        };
        let standing = match record.revoked_ms {
            Some(_) => Standing::Revoked,
            None => Standing::Valid {
                principal: Principal {
                    token_id: record.id.clone(),
                    subscriptions: record.subscriptions.iter().cloned().collect(),
                    operator: record.operator,
                },
                expires_ms: record.expires_ms,
            },
        };
        let mut cache = self.cache();
        let entry = match cache.entry(hash) {
            Entry::Occupied(occupied) => {
                let entry = occupied.into_mut();
                // A read that raced a revocation through this process must not bring it back.
                if !matches!(entry.standing, Standing::Revoked) {
                    entry.standing = standing;
                }
                entry.read_ms = now_ms;
                entry
            }
            Entry::Vacant(vacant) => vacant.insert(Cached::new(&record, standing, now_ms)),
        };
        entry.answer(now_ms)
    }

    /// Revokes token `id`; this process refuses it from now on, other replicas within [`TRUST_MS`].
    pub async fn revoke(&self, id: &str, now_ms: i64) -> Result<Revocation, StoreError> {
        let outcome = self.store.revoke_token(id, now_ms).await?;
        if let Revocation::Revoked(record) = &outcome {
            let mut cache = self.cache();
            let entry = cache
                .entry(record.hash.clone())
                .or_insert_with(|| Cached::new(record, Standing::Revoked, now_ms));
            entry.standing = Standing::Revoked;
            entry.read_ms = now_ms;
            if let Some(entry) = cache.get_mut(&By::Id(record.id.clone()).cache_key()) {
                entry.standing = Standing::Revoked;
                entry.read_ms = now_ms;
            }
        }
        Ok(outcome)
    }

    /// Token id -> the latest request this process let through with it (written or not yet).
    pub fn last_uses(&self) -> HashMap<String, i64> {
        let mut uses = HashMap::new();
        for entry in self.cache().values().filter(|e| e.used_ms > 0) {
            let at = uses.entry(entry.token_id.clone()).or_insert(0);
            *at = entry.used_ms.max(*at);
        }
        uses
    }

    /// Writes the uses not written yet, in one statement, and drops entries idle for long.
    async fn write_uses(&self, now_ms: i64) {
        let pending: Vec<(String, i64)> = self
            .cache()
            .values()
            .filter(|e| e.used_ms > e.written_used_ms)
            .map(|e| (e.token_id.clone(), e.used_ms))
            .collect();
        if let Err(error) = self.store.record_token_use(&pending).await {
            tracing::warn!(%error, tokens = pending.len(), "cannot record token use; retrying later");
            return;
        }
        let written: HashMap<String, i64> = pending.into_iter().collect();
        self.cache().retain(|_, entry| {
            if let Some(at) = written.get(&entry.token_id) {
                entry.written_used_ms = entry.written_used_ms.max(*at);
            }
            let idle = now_ms - entry.read_ms.max(entry.used_ms) > IDLE_MS;
            !(idle && entry.used_ms <= entry.written_used_ms)
        });
    }

    /// Writes token uses every `every` until shutdown, and once more then.
    pub async fn record_uses(self: Arc<Self>, every: Duration, shutdown: CancellationToken) {
        loop {
            let stopping = tokio::select! {
                () = shutdown.cancelled() => true,
                () = tokio::time::sleep(every) => false,
            };
            self.write_uses(crate::now_ms()).await;
            if stopping {
                return;
            }
        }
    }
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "AuthenticationFailed",
                    "Authentication failed. The 'Authorization' header is missing.",
                )
                .with_target("Authorization")
            })?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "AuthenticationFailedInvalidHeader",
                    "Authentication failed. The 'Authorization' header is provided in an invalid format.",
                )
                .with_target("Authorization")
            })?;
        let now = crate::now_ms();
        if token.starts_with("berth_") {
            return Ok(state.auth.authenticate(token, now).await??);
        }
        // An access token of the sign-in authority: signed by us and unexpired, then judged by the
        // standing of the credential it was issued for.
        let claims = state
            .signin
            .verify(token, now)
            .map_err(|rejection| match rejection {
                crate::signin::Rejection::Invalid => Refusal::Unknown,
                crate::signin::Rejection::Expired { at_ms } => Refusal::Expired { at_ms },
            })?;
        Ok(state.auth.authenticate_id(&claims.appid, now).await??)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SqliteStore;

    async fn authenticator() -> (tempfile::TempDir, Arc<dyn Store>, Authenticator) {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(&dir.path().join("t.db")).await.unwrap());
        let auth = Authenticator::new(store.clone());
        (dir, store, auth)
    }

    async fn check(auth: &Authenticator, token: &str, now_ms: i64) -> Result<Principal, Refusal> {
        auth.authenticate(token, now_ms).await.unwrap()
    }

    #[tokio::test]
    async fn a_cached_token_is_trusted_for_at_most_a_second() {
        let (_dir, store, auth) = authenticator().await;
        let issued = auth
            .issue(&["Sub".to_owned()], false, None, 0)
            .await
            .unwrap();
        let principal = check(&auth, &issued.token, 10_000).await.unwrap();
        assert!(principal.can_see("sub") && !principal.operator);
        // Another replica revokes it: this process trusts what it read for under a second...
        store.revoke_token(&issued.record.id, 10_100).await.unwrap();
        assert!(check(&auth, &issued.token, 10_999).await.is_ok());
        // ...then reads the store again.
        assert_eq!(
            check(&auth, &issued.token, 11_000).await,
            Err(Refusal::Revoked)
        );
    }

    #[tokio::test]
    async fn a_clock_stepping_back_does_not_extend_trust() {
        let (_dir, store, auth) = authenticator().await;
        let issued = auth.issue(&["s".to_owned()], false, None, 0).await.unwrap();
        assert!(check(&auth, &issued.token, 50_000).await.is_ok());
        store.revoke_token(&issued.record.id, 50_001).await.unwrap();
        assert_eq!(
            check(&auth, &issued.token, 40_000).await,
            Err(Refusal::Revoked)
        );
    }

    #[tokio::test]
    async fn a_revocation_through_this_process_takes_effect_at_once() {
        let (_dir, _store, auth) = authenticator().await;
        let issued = auth.issue(&["s".to_owned()], false, None, 0).await.unwrap();
        assert!(check(&auth, &issued.token, 1_000).await.is_ok());
        assert!(matches!(
            auth.revoke(&issued.record.id, 1_001).await.unwrap(),
            Revocation::Revoked(_)
        ));
        assert_eq!(
            check(&auth, &issued.token, 1_002).await,
            Err(Refusal::Revoked)
        );
        // A store read that started before the revocation and lands after it changes nothing.
        let stale = TokenRecord {
            revoked_ms: None,
            ..issued.record.clone()
        };
        assert_eq!(
            auth.remember(issued.record.hash.clone(), Some(stale), 1_003),
            Err(Refusal::Revoked)
        );
    }

    #[tokio::test]
    async fn a_credential_looked_up_by_id_is_revoked_like_its_token() {
        let (_dir, store, auth) = authenticator().await;
        let a = auth.issue(&["s".to_owned()], false, None, 0).await.unwrap();
        let b = auth.issue(&["s".to_owned()], false, None, 0).await.unwrap();
        let by_id = |id: String, now| {
            let auth = &auth;
            async move { auth.authenticate_id(&id, now).await.unwrap() }
        };
        assert_eq!(
            by_id(a.record.id.clone(), 10).await.unwrap().token_id,
            a.record.id
        );
        assert_eq!(by_id("nope".to_owned(), 10).await, Err(Refusal::Unknown));
        // Through this process: at once.
        auth.revoke(&a.record.id, 20).await.unwrap();
        assert_eq!(by_id(a.record.id.clone(), 21).await, Err(Refusal::Revoked));
        // Through another replica: within the second the entry is trusted.
        assert!(by_id(b.record.id.clone(), 1_000).await.is_ok());
        store.revoke_token(&b.record.id, 1_001).await.unwrap();
        assert!(by_id(b.record.id.clone(), 1_999).await.is_ok());
        assert_eq!(
            by_id(b.record.id.clone(), 2_000).await,
            Err(Refusal::Revoked)
        );
    }

    #[tokio::test]
    async fn expiry_is_checked_on_every_request() {
        let (_dir, _store, auth) = authenticator().await;
        let issued = auth
            .issue(&["s".to_owned()], false, Some(5_000), 0)
            .await
            .unwrap();
        assert!(check(&auth, &issued.token, 4_900).await.is_ok());
        // Still within the second the entry is trusted, but past the expiry.
        assert_eq!(
            check(&auth, &issued.token, 5_000).await,
            Err(Refusal::Expired { at_ms: 5_000 })
        );
    }

    #[tokio::test]
    async fn unknown_tokens_are_refused_and_not_cached() {
        let (_dir, _store, auth) = authenticator().await;
        assert_eq!(
            check(&auth, "berth_nope_nope", 0).await,
            Err(Refusal::Unknown)
        );
        assert!(auth.cache().is_empty());
    }

    #[tokio::test]
    async fn prefixes_hold_the_id_and_a_little_of_the_secret() {
        let (_dir, store, auth) = authenticator().await;
        let issued = auth.issue(&[], true, None, 7).await.unwrap();
        let record = &issued.record;
        assert_eq!(record.id.len(), 12);
        assert_eq!(
            record.prefix.len(),
            "berth_".len() + 12 + 1 + PREFIX_SECRET_CHARS
        );
        assert!(issued.token.starts_with(&record.prefix));
        assert_eq!(
            issued.token.len(),
            record.prefix.len() + SECRET_LEN - PREFIX_SECRET_CHARS
        );
        assert_eq!(
            store.token_by_hash(&record.hash).await.unwrap().as_ref(),
            Some(record)
        );
    }

    #[tokio::test]
    async fn uses_are_written_later_and_together() {
        let (_dir, store, auth) = authenticator().await;
        let a = auth.issue(&["s".to_owned()], false, None, 0).await.unwrap();
        let b = auth.issue(&["s".to_owned()], false, None, 0).await.unwrap();
        for now in [100, 200, 300] {
            check(&auth, &a.token, now).await.unwrap();
        }
        check(&auth, &b.token, 250).await.unwrap();
        let stored = |hash: String| {
            let store = store.clone();
            async move {
                store
                    .token_by_hash(&hash)
                    .await
                    .unwrap()
                    .unwrap()
                    .last_used_ms
            }
        };
        assert_eq!(stored(a.record.hash.clone()).await, None, "not per request");
        assert_eq!(auth.last_uses().get(&a.record.id), Some(&300));
        auth.write_uses(400).await;
        assert_eq!(stored(a.record.hash.clone()).await, Some(300));
        assert_eq!(stored(b.record.hash.clone()).await, Some(250));
        // Idle entries go once their use is written.
        auth.write_uses(300 + IDLE_MS + 1).await;
        assert!(auth.cache().is_empty());
    }

    #[test]
    fn the_tenant_id_is_a_stable_guid_per_ca() {
        let one = tenant_of_ca(b"ca one");
        assert_eq!(one, tenant_of_ca(b"ca one"));
        assert_ne!(one, tenant_of_ca(b"ca two"));
        let parsed = uuid::Uuid::parse_str(&one).unwrap();
        assert_eq!(parsed.get_version_num(), 8);
        assert_eq!(one, one.to_ascii_lowercase());
    }

    #[test]
    fn a_malformed_subscription_is_400_for_everyone_an_invisible_one_404() {
        let sub = "00000000-0000-0000-0000-00000000000a";
        let principal = Principal {
            token_id: "t".to_owned(),
            subscriptions: [sub.to_owned()].into(),
            operator: false,
        };
        assert_eq!(principal.admit(sub), Ok(()));
        assert_eq!(principal.admit(&sub.to_ascii_uppercase()), Ok(()));
        for who in [
            principal.clone(),
            Principal {
                operator: true,
                ..principal.clone()
            },
        ] {
            let err = who.admit("not-a-guid").unwrap_err();
            assert_eq!(
                (err.status.as_u16(), err.code),
                (400, "InvalidSubscriptionId")
            );
            assert_eq!(err.target.as_deref(), Some("subscriptionId"));
        }
        let err = principal
            .admit("00000000-0000-0000-0000-00000000000b")
            .unwrap_err();
        assert_eq!(
            (err.status.as_u16(), err.code),
            (404, "SubscriptionNotFound")
        );
    }
}
