//! Extractors that answer in ACI's error shape: JSON bodies and the api-version parameter.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use crate::AppState;
use crate::error::ApiError;
use crate::validate::code;

/// A JSON body: malformed JSON, wrong types, unknown fields and oversized bodies are 400/413 naming
/// the JSON path at fault.
#[derive(Debug)]
pub struct ArmJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for ArmJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let RawBody(body) = RawBody::from_request(request, state).await?;
        parse(&body).map(ArmJson)
    }
}

/// The raw body, at most `--max-body-bytes`; a larger one is a 413 in ACI's shape.
#[derive(Debug)]
pub(super) struct RawBody(pub(super) Bytes);

impl FromRequest<AppState> for RawBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let limit = state.config.max_body_bytes;
        axum::body::to_bytes(request.into_body(), limit)
            .await
            .map(RawBody)
            .map_err(|_| {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "RequestEntityTooLarge",
                    format!("The request body is larger than the limit of {limit} bytes."),
                )
            })
    }
}

/// Parses a JSON body, naming the path of the first problem.
pub(super) fn parse<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            code::INVALID_CONTENT,
            "body",
            "The request body is empty; a JSON object is required.",
        ));
    }
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|err| {
        let path = err.path().to_string();
        let target = if path == "." { "body".to_owned() } else { path };
        let inner = err.into_inner();
        ApiError::bad_request(
            code::INVALID_CONTENT,
            target.clone(),
            format!("The request content is invalid at '{target}': {inner}."),
        )
    })
}

/// The `api-version` query parameter, checked against the versions served.
pub(super) fn api_version<'a>(
    query: &'a HashMap<String, String>,
    accepted: &[&str],
) -> Result<&'a str, ApiError> {
    let version = query
        .get("api-version")
        .map(String::as_str)
        .ok_or_else(|| {
            ApiError::bad_request(
                "MissingApiVersionParameter",
                "api-version",
                "The api-version query parameter (?api-version=) is required for all requests.",
            )
        })?;
    if accepted.contains(&version) {
        Ok(version)
    } else {
        Err(ApiError::bad_request(
            "NoRegisteredProviderFound",
            "api-version",
            format!(
                "No registered resource provider found for API version '{version}' and type 'containerGroups'. The \
                 supported api-versions are '{}'.",
                accepted.join(", ")
            ),
        ))
    }
}
