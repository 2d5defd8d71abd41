//! Extractors that answer in ACI's error shape: JSON bodies and the api-version parameter.
//!
//! A container group's body is read the way ARM reads it ([`berth_proto::arm::lenient`]): what that
//! leaves out is named to the client in a `Warning` header ([`ignored_warning`]).

use std::collections::HashMap;

use axum::body::{Bytes, HttpBody as _};
use axum::extract::{FromRequest, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderValue, StatusCode};
use berth_proto::arm::{self, lenient};
use serde::de::DeserializeOwned;

use super::media;
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

/// The raw body of a request that takes JSON: at most `--max-body-bytes` (413 past it, refused before
/// reading when the declared length says so), and JSON by its media type (415 otherwise, see
/// [`media`]). An empty body is empty whatever its headers say.
#[derive(Debug)]
pub(super) struct RawBody(pub(super) Bytes);

fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "RequestEntityTooLarge",
        format!("The request body is larger than the limit of {limit} bytes."),
    )
    .with_target("body")
}

impl FromRequest<AppState> for RawBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let limit = state.config.max_body_bytes;
        let (parts, body) = request.into_parts();
        if body.is_end_stream() {
            return Ok(RawBody(Bytes::new()));
        }
        let declared = body.size_hint().exact();
        media::check(&parts.headers, declared.is_some_and(|n| n > 0))?;
        if declared.is_some_and(|n| n > limit as u64) {
            // Before reading: an `Expect: 100-continue` client never sends it.
            return Err(too_large(limit));
        }
        let bytes = axum::body::to_bytes(body, limit).await.map_err(|err| {
            let err = err.into_inner();
            if err.is::<http_body_util::LengthLimitError>() {
                too_large(limit)
            } else {
                ApiError::bad_request(
                    code::INVALID_CONTENT,
                    "body",
                    "The request body could not be read to its end.",
                )
            }
        })?;
        if !bytes.is_empty() && !parts.headers.contains_key(CONTENT_TYPE) {
            return Err(media::missing_type());
        }
        Ok(RawBody(bytes))
    }
}

fn empty_body(body: &Bytes) -> Result<(), ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            code::INVALID_CONTENT,
            "body",
            "The request body is empty; a JSON object is required.",
        ));
    }
    Ok(())
}

fn invalid_at(path: String, why: impl std::fmt::Display) -> ApiError {
    let target = if path == "." { "body".to_owned() } else { path };
    ApiError::bad_request(
        code::INVALID_CONTENT,
        target.clone(),
        format!("The request content is invalid at '{target}': {why}."),
    )
}

fn path_error<E: std::fmt::Display>(err: serde_path_to_error::Error<E>) -> ApiError {
    let path = err.path().to_string();
    invalid_at(path, err.into_inner())
}

/// Parses a JSON body, naming the path of the first problem.
pub(super) fn parse<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    empty_body(body)?;
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(path_error)
}

/// A container group's body as ARM reads it for `version`, and the JSON paths it left out.
pub(super) fn parse_group(
    body: &Bytes,
    version: &str,
) -> Result<(arm::ContainerGroup, Vec<String>), ApiError> {
    empty_body(body)?;
    let de = &mut serde_json::Deserializer::from_slice(body);
    let lenient::StrictValue(value) = serde_path_to_error::deserialize(de).map_err(path_error)?;
    let reading = lenient::read(value, &lenient::schema::CONTAINER_GROUP, version)
        .map_err(|err| invalid_at(err.path().to_owned(), &err))?;
    let group = serde_path_to_error::deserialize(reading.value).map_err(path_error)?;
    Ok((group, reading.ignored))
}

/// The most ignored paths a warning lists, and the longest one it shows.
const WARNING_PATHS: usize = 20;
const WARNING_PATH_CHARS: usize = 200;

/// The `Warning` header (RFC 9110's field, code 299 "miscellaneous persistent warning", as Kubernetes
/// answers its API warnings) naming the properties ignored; `None` when there are none. Keys are the
/// client's: anything but printable ASCII is escaped, and the list is bounded.
pub(super) fn ignored_warning(ignored: &[String], version: &str) -> Option<HeaderValue> {
    if ignored.is_empty() {
        return None;
    }
    let escape = |path: &String| -> String {
        let mut out = String::new();
        for c in path.chars().take(WARNING_PATH_CHARS) {
            match c {
                ' '..='~' if c != '"' && c != '\\' => out.push(c),
                _ => out.push_str(&format!("\\u{{{:x}}}", u32::from(c))),
            }
        }
        out
    };
    let mut list: Vec<String> = ignored.iter().take(WARNING_PATHS).map(escape).collect();
    if ignored.len() > WARNING_PATHS {
        list.push(format!("and {} more", ignored.len() - WARNING_PATHS));
    }
    let text = format!(
        "299 - \"Ignored properties that api-version {version} of Microsoft.ContainerInstance does not have: {}\"",
        list.join(", ")
    );
    HeaderValue::from_str(&text).ok()
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
