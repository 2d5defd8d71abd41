//! The web console (`console/` at the repository root): its files, compiled into the binary, served
//! at `/` and `/console/…` on the API's own listener, and the two routes of its own under
//! `/console/v1` (who the caller is; an ACI YAML/JSON file read as `berth container create --file`
//! reads it).
//!
//! TODO(lane server): security headers on every console answer (CSP, frame-ancestors,
//! X-Frame-Options, nosniff, Referrer-Policy, Cache-Control), `POST /console/v1/manifests`, tests.

mod assets;
mod me;

use axum::Router;
use axum::routing::get;

use crate::AppState;

/// The console's routes, merged into the API's router.
pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(assets::index))
        .route("/console/vendor/{file}", get(assets::vendor))
        .route("/console/{*path}", get(assets::app))
        .route("/console/v1/me", get(me::me))
}
