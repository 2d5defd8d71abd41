//! `/admin/v1/tokens`: issue, list and revoke API tokens (operator tokens only). A listing shows a
//! token's id and prefix, never its secret; the secret is in the answer to its creation only.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use berth_proto::admin::{IssuedToken, Token, TokenRequest};
use berth_proto::arm::ListResult;

use super::ArmJson;
use crate::auth::Operator;
use crate::error::ApiError;
use crate::render::timestamp;
use crate::store::{Revocation, TokenRecord};
use crate::validate::{self, code};
use crate::{AppState, now_ms};

/// The longest lifetime a token may be given: ten years.
const MAX_EXPIRES_IN_SECONDS: i64 = 10 * 365 * 86_400;

/// A token as listings show it. `last_used_ms` is the latest known to this process or the store.
fn view(record: &TokenRecord, last_used_ms: Option<i64>) -> Token {
    let at = |ms: Option<i64>| ms.map(timestamp);
    Token {
        created_at: Some(timestamp(record.created_ms)),
        expires_at: at(record.expires_ms),
        id: record.id.clone(),
        last_used_at: at(last_used_ms.max(record.last_used_ms)),
        operator: record.operator,
        prefix: record.prefix.clone(),
        revoked_at: at(record.revoked_ms),
        subscriptions: record.subscriptions.clone(),
    }
}

pub(super) async fn create(
    State(state): State<AppState>,
    _operator: Operator,
    ArmJson(req): ArmJson<TokenRequest>,
) -> Result<Response, ApiError> {
    if req.subscriptions.is_empty() && !req.operator {
        return Err(ApiError::bad_request(
            code::MISSING,
            "subscriptions",
            "A tenant token needs at least one subscription.",
        ));
    }
    for (i, sub) in req.subscriptions.iter().enumerate() {
        validate::subscription(sub).map_err(|e| e.with_target(format!("subscriptions[{i}]")))?;
    }
    if let Some(seconds) = req.expires_in_seconds
        && !(1..=MAX_EXPIRES_IN_SECONDS).contains(&seconds)
    {
        return Err(ApiError::bad_request(
            code::INVALID_VALUE,
            "expiresInSeconds",
            format!("expiresInSeconds is between 1 and {MAX_EXPIRES_IN_SECONDS} (ten years)."),
        ));
    }
    let now = now_ms();
    let expires_ms = req.expires_in_seconds.map(|s| now + s * 1000);
    let issued = state
        .auth
        .issue(&req.subscriptions, req.operator, expires_ms, now)
        .await?;
    let body = IssuedToken {
        info: Token {
            // As the caller wrote them (the record keeps them in lower case).
            subscriptions: req.subscriptions,
            ..view(&issued.record, None)
        },
        token: issued.token,
    };
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

pub(super) async fn list(
    State(state): State<AppState>,
    _operator: Operator,
) -> Result<Response, ApiError> {
    let uses: HashMap<String, i64> = state.auth.last_uses();
    let value: Vec<Token> = state
        .store
        .tokens()
        .await?
        .iter()
        .map(|t| view(t, uses.get(&t.id).copied()))
        .collect();
    Ok(Json(ListResult {
        value,
        next_link: None,
    })
    .into_response())
}

/// `DELETE /admin/v1/tokens/{id}`: revokes the token (again: the same answer). The next request
/// with it is refused here at once, on other replicas within a second.
pub(super) async fn revoke(
    State(state): State<AppState>,
    Operator(principal): Operator,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    match state.auth.revoke(&id, now_ms()).await? {
        Revocation::Revoked(record) => {
            if id == principal.token_id {
                tracing::info!(token = %id, "an operator token revoked itself");
            } else {
                tracing::info!(token = %id, by = %principal.token_id, "token revoked");
            }
            let last_used = state.auth.last_uses().get(&id).copied();
            Ok(Json(view(&record, last_used)).into_response())
        }
        Revocation::NotFound => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "TokenNotFound",
            format!("The token '{id}' was not found."),
        )),
        Revocation::LastOperator => Err(ApiError::new(
            StatusCode::CONFLICT,
            "LastOperatorToken",
            format!(
                "The token '{id}' is the last operator token that is neither revoked nor expired; \
                 create another operator token before revoking it."
            ),
        )),
    }
}
