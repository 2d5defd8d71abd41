//! The sign-in authority's routes under `/adfs` (see [`crate::signin`]): discovery documents, the
//! token endpoint (client credentials), an empty key set, and an authorize endpoint that says
//! interactive sign-in is not offered. All unauthenticated; errors in OAuth's shape.

use axum::Json;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{Value, json};

use super::groups::base_url;
use crate::auth::{Refusal, tenant_id};
use crate::render::timestamp;
use crate::signin::oauth::{self, OAuthError};
use crate::signin::{self, Grant};
use crate::{AppState, now_ms};

/// `/adfs/.well-known/openid-configuration`: what MSAL fetches for an ADFS authority.
pub(super) async fn openid_configuration(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Json<Value> {
    let base = base_url(&state, &headers);
    Json(signin::openid_configuration(
        &base,
        &signin::authority(&base),
        "oauth2/token",
    ))
}

/// `/adfs/{tenant}/v2.0/.well-known/openid-configuration` (and without `v2.0`).
pub(super) async fn tenant_openid_configuration(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(tenant): Path<String>,
) -> Result<Json<Value>, OAuthError> {
    check_tenant(&state, &tenant)?;
    let base = base_url(&state, &headers);
    let root = format!("{}/{tenant}", signin::authority(&base));
    Ok(Json(signin::openid_configuration(
        &base,
        &root,
        "oauth2/v2.0/token",
    )))
}

/// `POST /adfs/oauth2/token`.
pub(super) async fn token(
    State(state): State<AppState>,
    request: Request,
) -> Result<Response, OAuthError> {
    let (headers, body) = form_body(&state, request).await?;
    grant(&state, &headers, &body).await
}

/// `POST /adfs/{tenant}/oauth2/v2.0/token` (and `/adfs/{tenant}/oauth2/token`).
pub(super) async fn tenant_token(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    request: Request,
) -> Result<Response, OAuthError> {
    check_tenant(&state, &tenant)?;
    let (headers, body) = form_body(&state, request).await?;
    grant(&state, &headers, &body).await
}

/// The head and the form body of a token request: at most `--max-body-bytes`, and
/// `application/x-www-form-urlencoded` if it says what it is (RFC 6749 §4.4.2).
async fn form_body(state: &AppState, request: Request) -> Result<(HeaderMap, Bytes), OAuthError> {
    let (parts, body) = request.into_parts();
    if let Some(value) = parts.headers.get(header::CONTENT_TYPE) {
        let essence = value
            .to_str()
            .unwrap_or_default()
            .split(';')
            .next()
            .unwrap_or_default()
            .trim();
        if !essence.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
            return Err(OAuthError::invalid_request(
                "The token request's body is application/x-www-form-urlencoded.",
            ));
        }
    }
    let limit = state.config.max_body_bytes;
    let body = axum::body::to_bytes(body, limit).await.map_err(|_| {
        OAuthError::invalid_request(format!(
            "The token request's body could not be read, or is over {limit} bytes."
        ))
    })?;
    Ok((parts.headers, body))
}

/// `/adfs/discovery/keys`: access tokens are HS256 under a key only the apiserver holds, so there is
/// no public key to publish.
pub(super) async fn keys() -> Json<Value> {
    Json(json!({ "keys": [] }))
}

/// `/adfs/oauth2/authorize`: no interactive sign-in.
pub(super) async fn authorize() -> OAuthError {
    OAuthError::unsupported_response_type()
}

fn check_tenant(state: &AppState, tenant: &str) -> Result<(), OAuthError> {
    if signin::serves_tenant(tenant, &tenant_id(state)) {
        Ok(())
    } else {
        Err(OAuthError::invalid_tenant(tenant))
    }
}

/// The client-credentials grant: the client is a Berth token (id, token), the answer an access
/// token with the token's rights for as long as it stands.
async fn grant(state: &AppState, headers: &HeaderMap, body: &[u8]) -> Result<Response, OAuthError> {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let request = oauth::parse(body, authorization)?;
    let refuse = |description: String| {
        let mut error = OAuthError::invalid_client(description);
        error.basic = request.basic;
        error
    };
    // The whole token, or only its secret part after `berth_<id>_`.
    let secret = if request.client_secret.starts_with("berth_") {
        request.client_secret.clone()
    } else {
        format!("berth_{}_{}", request.client_id, request.client_secret)
    };
    let now = now_ms();
    let principal = match state.auth.authenticate(&secret, now).await {
        Ok(Ok(principal)) => principal,
        Ok(Err(Refusal::Unknown)) => {
            return Err(refuse(
                "The client secret is not a Berth token of this installation.".to_owned(),
            ));
        }
        Ok(Err(Refusal::Revoked)) => {
            return Err(refuse("The Berth token has been revoked.".to_owned()));
        }
        Ok(Err(Refusal::Expired { at_ms })) => {
            return Err(refuse(format!(
                "The Berth token expired at '{}'.",
                timestamp(at_ms)
            )));
        }
        Err(error) => {
            tracing::error!(%error, "sign-in: cannot read the token store");
            return Err(OAuthError::server_error());
        }
    };
    if !principal.token_id.eq_ignore_ascii_case(&request.client_id) {
        return Err(refuse(format!(
            "The client_id '{}' is not the id of the Berth token given as the client secret.",
            request.client_id
        )));
    }
    let base = base_url(state, headers);
    let audience = match request.resource {
        Some(resource) if signin::is_this_api(&base, &resource) => resource,
        Some(resource) => {
            return Err(OAuthError::invalid_scope(format!(
                "The resource '{resource}' is not this Berth API ({base}/): ask for \
                 '{base}//.default'."
            )));
        }
        None => format!("{base}/"),
    };
    let tenant = tenant_id(state);
    let issuer = signin::authority(&base);
    let access_token = state
        .signin
        .issue(
            &Grant {
                credential: &principal.token_id,
                audience: &audience,
                issuer: &issuer,
                tenant: &tenant,
            },
            now,
        )
        .map_err(|error| {
            tracing::error!(%error, "sign-in: cannot sign an access token");
            OAuthError::server_error()
        })?;
    tracing::info!(token = %principal.token_id, "sign-in: access token issued");
    let lifetime = state.signin.lifetime_secs();
    let mut response = Json(json!({
        "token_type": "Bearer",
        "access_token": access_token,
        "expires_in": lifetime,
        "ext_expires_in": lifetime,
        "resource": audience,
    }))
    .into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    Ok(response)
}
