//! `POST /console/v1/manifests`: an ACI YAML/JSON group file read into the PUT it stands for, by
//! the same [`berth_proto::manifest`] as `berth container create --file`, so the console's *Create*
//! page takes exactly the files the CLI takes. Reading only: nothing is stored, and the PUT that
//! follows is checked as any other.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use berth_proto::manifest::{Format, Manifest, ManifestError};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::http::ArmJson;

/// The error code of a file that does not make a PUT.
const INVALID_MANIFEST: &str = "InvalidManifest";

/// The request: the file's text, how it is written, and the name the caller gives it (as `--name`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ManifestRequest {
    text: String,
    format: Format,
    #[serde(default)]
    name: Option<String>,
}

/// `{"name", "apiVersion", "body"}`: where and how to PUT the group. The location, when the file
/// has none, is this cluster's region. Any token may ask (the answer holds nothing but the file).
pub(super) async fn read(
    _caller: Principal,
    State(state): State<AppState>,
    ArmJson(request): ArmJson<ManifestRequest>,
) -> Result<Json<Value>, ApiError> {
    let region = state.config.region.clone();
    let format = request.format;
    // Parsing up to a whole body's worth of YAML is CPU work: off the async workers.
    let parsed = tokio::task::spawn_blocking(move || {
        Manifest::parse(
            &request.text,
            format,
            request.name.as_deref(),
            None,
            &region,
        )
    })
    .await
    .map_err(|_| ApiError::internal())?;
    let manifest = parsed.map_err(invalid)?;
    Ok(Json(json!({
        "name": manifest.name,
        "apiVersion": manifest.api_version,
        "body": manifest.body,
    })))
}

/// 400 naming the request field at fault: `name` when the name is missing or disagrees, else `text`.
fn invalid(err: ManifestError) -> ApiError {
    let target = match err {
        ManifestError::NameDiffers { .. } | ManifestError::NoName => "name",
        ManifestError::Yaml(_)
        | ManifestError::Json(_)
        | ManifestError::NotAMapping
        | ManifestError::NotAString { .. }
        | ManifestError::TooDeep { .. } => "text",
    };
    ApiError::new(StatusCode::BAD_REQUEST, INVALID_MANIFEST, err.to_string()).with_target(target)
}
