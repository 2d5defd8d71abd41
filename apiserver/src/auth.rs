//! Bearer tokens: issuing, hashing, looking up, and the `Principal` extractor.
//!
//! A token is `berth_<id>_<secret>`; only its SHA-256 is stored. Each token is scoped to subscriptions;
//! operator tokens also reach `/admin/v1`. Lookups are cached in memory (tokens are immutable once
//! issued), so authentication costs one hash per request.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use axum::extract::{FromRequestParts, MatchedPath};
use axum::http::StatusCode;
use axum::http::request::Parts;
use rand::Rng as _;
use rand::distr::Alphanumeric;
use sha2::{Digest as _, Sha256};

use crate::AppState;
use crate::error::ApiError;
use crate::store::{Store, StoreError, TokenRecord};

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

/// Issues tokens and authenticates requests.
pub struct Authenticator {
    store: Arc<dyn Store>,
    cache: Mutex<HashMap<String, Principal>>,
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

    /// Makes a token, stores its hash, and returns the token (the only time it exists in clear).
    pub async fn issue(
        &self,
        subscriptions: &[String],
        operator: bool,
        now_ms: i64,
    ) -> Result<String, StoreError> {
        let id = random_lower(12);
        let token = format!("berth_{id}_{}", random(40));
        let record = TokenRecord {
            id,
            hash: hash(&token),
            subscriptions: subscriptions
                .iter()
                .map(|s| s.to_ascii_lowercase())
                .collect(),
            operator,
            created_ms: now_ms,
        };
        self.store.insert_token(&record).await?;
        Ok(token)
    }

    pub async fn authenticate(&self, token: &str) -> Result<Option<Principal>, StoreError> {
        let hash = hash(token);
        if let Some(p) = self
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&hash)
        {
            return Ok(Some(p.clone()));
        }
        let Some(record) = self.store.token_by_hash(&hash).await? else {
            return Ok(None);
        };
        let principal = Principal {
            token_id: record.id,
            subscriptions: record.subscriptions.into_iter().collect(),
            operator: record.operator,
        };
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(hash, principal.clone());
        Ok(Some(principal))
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
        state.auth.authenticate(token).await?.ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "InvalidAuthenticationToken",
                "The access token is invalid.",
            )
            .with_target("Authorization")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
