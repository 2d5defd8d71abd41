//! Container-group routes: PUT, GET, LIST, PATCH, DELETE, restart, stop, start. Each parses and
//! checks the request, calls the [`GroupService`](crate::groups::GroupService) and renders its answer.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::header::WARNING;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use berth_proto::arm;

use super::extract::{ArmJson, RawBody, api_version, ignored_warning, parse_group};
use crate::AppState;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::groups::{Applied, GroupName, Put};
use crate::render;
use crate::store::GroupRecord;
use crate::validate;

type GroupPath = Path<(String, String, String)>;
type Q = Query<HashMap<String, String>>;

/// Checks the subscription (a malformed id is 400; one the caller may not see answers exactly like
/// one that does not exist), then api-version.
pub(super) fn admit<'a>(
    principal: &Principal,
    sub: &str,
    query: &'a HashMap<String, String>,
) -> Result<&'a str, ApiError> {
    principal.admit(sub)?;
    api_version(query, arm::API_VERSIONS)
}

fn group_name((sub, rg, name): &(String, String, String)) -> GroupName {
    GroupName::new(sub, rg, name)
}

pub(super) async fn load(
    state: &AppState,
    principal: &Principal,
    path: &(String, String, String),
    query: &HashMap<String, String>,
) -> Result<GroupRecord, ApiError> {
    admit(principal, &path.0, query)?;
    Ok(state.groups.get(&group_name(path)).await?)
}

/// The base of URLs we hand out: `--public-url`, or the Host the client used.
pub(super) fn base_url(state: &AppState, headers: &HeaderMap) -> String {
    if let Some(url) = &state.config.public_url {
        return url.trim_end_matches('/').to_owned();
    }
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    format!("https://{host}")
}

fn operation_url(state: &AppState, headers: &HeaderMap, sub: &str, op: &str) -> String {
    format!(
        "{}/subscriptions/{sub}/providers/Microsoft.ContainerInstance/locations/{}/operations/{op}?api-version={}",
        base_url(state, headers),
        state.config.region,
        arm::ASYNC_OPERATION_API_VERSION
    )
}

fn with_operation(mut response: Response, url: &str) -> Response {
    if let Ok(value) = HeaderValue::from_str(url) {
        response.headers_mut().insert("Azure-AsyncOperation", value);
    }
    response
        .headers_mut()
        .insert("Retry-After", HeaderValue::from_static("1"));
    response
}

fn render_group(group: &GroupRecord, version: &str) -> Json<serde_json::Value> {
    Json(render::for_version(
        render::container_group(group, true),
        version,
    ))
}

pub(super) async fn put(
    State(state): State<AppState>,
    principal: Principal,
    Path((sub, rg, name)): GroupPath,
    Query(query): Q,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let version = admit(&principal, &sub, &query)?;
    validate::resource_group(&rg)?;
    validate::group_name(&name)?;
    let (body, ignored) = parse_group(&body, version)?;
    let valid =
        validate::container_group(&body, &name, &state.config.region, version, &state.limits)?;
    let (status, applied) = match state
        .groups
        .create(&GroupName::new(&sub, &rg, &name), valid)
        .await?
    {
        Put::Created(applied) => (StatusCode::CREATED, applied),
        Put::Updated(applied) => (StatusCode::OK, applied),
    };
    let Applied {
        group,
        operation_id,
    } = applied;
    let response = (status, render_group(&group, version)).into_response();
    let mut response = with_operation(
        response,
        &operation_url(&state, &headers, &sub, &operation_id),
    );
    if let Some(warning) = ignored_warning(&ignored, version) {
        response.headers_mut().insert(WARNING, warning);
    }
    Ok(response)
}

pub(super) async fn get(
    State(state): State<AppState>,
    principal: Principal,
    Path(path): GroupPath,
    Query(query): Q,
) -> Result<Response, ApiError> {
    let group = load(&state, &principal, &path, &query).await?;
    let version = admit(&principal, &path.0, &query)?;
    Ok(render_group(&group, version).into_response())
}

async fn list(
    state: &AppState,
    principal: &Principal,
    sub: &str,
    rg: Option<&str>,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
    path: &str,
) -> Result<Response, ApiError> {
    let version = admit(principal, sub, query)?;
    let after = match query.get("$skipToken") {
        Some(token) => token.parse::<i64>().map_err(|_| {
            ApiError::bad_request(
                validate::code::INVALID_VALUE,
                "$skipToken",
                "The $skipToken is not one this server issued.",
            )
        })?,
        None => 0,
    };
    let page = state.config.page_size as i64;
    let mut groups = state.groups.list(sub, rg, after, page + 1).await?;
    let next_link = if groups.len() as i64 > page {
        groups.truncate(page as usize);
        let last = groups.last().map_or(after, |g| g.seq);
        Some(format!(
            "{}{path}?api-version={version}&$skipToken={last}",
            base_url(state, headers)
        ))
    } else {
        None
    };
    let value = groups
        .iter()
        .map(|g| render::for_version(render::container_group(g, false), version))
        .collect();
    Ok(Json(arm::ListResult { value, next_link }).into_response())
}

pub(super) async fn list_by_subscription(
    State(state): State<AppState>,
    principal: Principal,
    Path(sub): Path<String>,
    Query(query): Q,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let path =
        format!("/subscriptions/{sub}/providers/Microsoft.ContainerInstance/containerGroups");
    list(&state, &principal, &sub, None, &query, &headers, &path).await
}

pub(super) async fn list_by_resource_group(
    State(state): State<AppState>,
    principal: Principal,
    Path((sub, rg)): Path<(String, String)>,
    Query(query): Q,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let path = format!(
        "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.ContainerInstance/containerGroups"
    );
    list(&state, &principal, &sub, Some(&rg), &query, &headers, &path).await
}

pub(super) async fn patch(
    State(state): State<AppState>,
    principal: Principal,
    Path(path): GroupPath,
    Query(query): Q,
    ArmJson(body): ArmJson<arm::TagsPatch>,
) -> Result<Response, ApiError> {
    let version = admit(&principal, &path.0, &query)?;
    let tags = body.tags.unwrap_or_default();
    validate::tags(&tags, "tags")?;
    let group = state.groups.set_tags(&group_name(&path), &tags).await?;
    Ok(render_group(&group, version).into_response())
}

pub(super) async fn delete(
    State(state): State<AppState>,
    principal: Principal,
    Path(path): GroupPath,
    Query(query): Q,
) -> Result<Response, ApiError> {
    let version = admit(&principal, &path.0, &query)?;
    let Some(deleted) = state.groups.delete(&group_name(&path)).await? else {
        return Ok(StatusCode::NO_CONTENT.into_response());
    };
    let mut body = render::container_group(&deleted, true);
    if let Some(props) = body.properties.as_mut() {
        props.provisioning_state = Some("Succeeded".to_owned());
    }
    Ok((StatusCode::OK, Json(render::for_version(body, version))).into_response())
}

pub(super) async fn restart(
    State(state): State<AppState>,
    principal: Principal,
    Path(path): GroupPath,
    Query(query): Q,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    admit(&principal, &path.0, &query)?;
    let operation = state.groups.restart(&group_name(&path)).await?;
    Ok(with_operation(
        StatusCode::NO_CONTENT.into_response(),
        &operation_url(&state, &headers, &path.0, &operation),
    ))
}

pub(super) async fn stop(
    State(state): State<AppState>,
    principal: Principal,
    Path(path): GroupPath,
    Query(query): Q,
) -> Result<Response, ApiError> {
    admit(&principal, &path.0, &query)?;
    state.groups.stop(&group_name(&path)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(super) async fn start(
    State(state): State<AppState>,
    principal: Principal,
    Path(path): GroupPath,
    Query(query): Q,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    admit(&principal, &path.0, &query)?;
    Ok(match state.groups.start(&group_name(&path)).await? {
        Some(operation) => with_operation(
            StatusCode::ACCEPTED.into_response(),
            &operation_url(&state, &headers, &path.0, &operation),
        ),
        None => StatusCode::NO_CONTENT.into_response(),
    })
}

pub(super) async fn outbound_dependencies(
    State(state): State<AppState>,
    principal: Principal,
    Path(path): GroupPath,
    Query(query): Q,
) -> Result<Response, ApiError> {
    load(&state, &principal, &path, &query).await?;
    Ok(Json(Vec::<String>::new()).into_response())
}
