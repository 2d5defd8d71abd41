//! `GET /console/v1/me`: who the bearer token is, for the console's sign-in and navigation.

use axum::Json;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::auth::Principal;

/// `{"operator": bool, "subscriptions": [..]}` (sorted, lower case as stored).
pub(super) async fn me(principal: Principal) -> Response {
    let mut subscriptions: Vec<&String> = principal.subscriptions.iter().collect();
    subscriptions.sort();
    Json(json!({
        "operator": principal.operator,
        "subscriptions": subscriptions,
    }))
    .into_response()
}
