//! The web console (`console/` at the repository root): its files, compiled into the binary, served
//! at `/` and `/console/…` on the API's own listener, and the two routes of its own under
//! `/console/v1` (who the caller is; an ACI YAML/JSON file read as `berth container create --file`
//! reads it).
//!
//! # Layout
//! - `assets`: the embedded files, with ETags; unknown ones are 404 in ACI's shape.
//! - `headers`: the security and cache headers of every answer to a console path.
//! - `me`: `GET /console/v1/me`, who the token is.
//! - `manifests`: `POST /console/v1/manifests`, a group file read into its PUT.

mod assets;
mod headers;
mod manifests;
mod me;

use axum::Router;
use axum::routing::{get, post};

pub(super) use headers::add as headers;

use crate::AppState;

/// The console's routes, merged into the API's router.
pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(assets::index))
        .route("/console/vendor/{file}", get(assets::vendor))
        .route("/console/{*path}", get(assets::app))
        .route("/console/v1/me", get(me::me))
        .route("/console/v1/manifests", post(manifests::read))
}
