//! Azure Monitor's metrics route on a container group:
//! `GET {group id}/providers/Microsoft.Insights/metrics?api-version=…&metricnames=…&timespan=…`.
//! The group is found as its GET finds it (404 for one the caller may not see); the query is parsed
//! by [`monitor::query`](crate::monitor::query), and a refusal is Azure Monitor's 400 naming the
//! parameter.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::extract::api_version;
use crate::AppState;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::groups::GroupName;
use crate::monitor::{query, response};
use crate::render;

/// The metrics API's versions: az sends 2018-01-01, azure-mgmt-monitor 7 sends 2024-02-01.
pub(super) const API_VERSIONS: &[&str] = &["2018-01-01", "2021-05-01", "2023-10-01", "2024-02-01"];

pub(super) async fn metrics(
    State(state): State<AppState>,
    principal: Principal,
    Path((sub, rg, name)): Path<(String, String, String)>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    principal.admit(&sub)?;
    api_version(&params, API_VERSIONS)?;
    let group = state.groups.get(&GroupName::new(&sub, &rg, &name)).await?;
    let asked = match query::parse(&params, crate::now_ms()) {
        Ok(asked) => asked,
        Err(refused) => {
            return Ok((StatusCode::BAD_REQUEST, Json(response::refusal(&refused))).into_response());
        }
    };
    let samples = state
        .store
        .group_samples(&group.id, asked.from_ms, asked.to_ms)
        .await?;
    let id = render::resource_id(&group.subscription, &group.resource_group, &group.name);
    Ok(Json(response::metrics(
        &id,
        &state.config.region,
        &asked,
        &samples,
    ))
    .into_response())
}
