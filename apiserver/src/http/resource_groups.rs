//! Resource groups, as ARM answers them: PUT, GET, HEAD, PATCH, DELETE, the list, the resources in
//! one, and the operation a DELETE hands out.
//!
//! A resource group is stored (`resource_groups`): created by PUT, or implicitly by the first
//! container-group PUT into it (ARM would answer that PUT 404 `ResourceGroupNotFound`; Berth has
//! always created groups into any resource group, and its clients rely on it). DELETE deletes its
//! container groups, each as a container-group DELETE does, then the group, as ARM deletes every
//! resource in a group it deletes.

use std::collections::{BTreeMap, HashMap};

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::extract::{RawBody, parse};
use super::groups::base_url;
use super::subscriptions::resources_api_version;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::store::{
    OperationKind, OperationRecord, OperationStatus, ResourceGroupCreation, ResourceGroupDeletion,
    ResourceGroupRecord, StoreError,
};
use crate::validate::{self, normalize_location};
use crate::{AppState, now_ms};

type Q = Query<HashMap<String, String>>;

/// How many times DELETE empties a group that container-group creates keep filling, before it gives up.
const DELETE_ROUNDS: usize = 3;

/// The body of a PUT or PATCH. ARM ignores what it does not know here; so does Berth.
#[derive(Debug, Deserialize)]
struct ResourceGroupBody {
    #[serde(default, alias = "Location")]
    location: Option<String>,
    #[serde(default, alias = "Tags")]
    tags: Option<BTreeMap<String, String>>,
}

fn not_found(name: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "ResourceGroupNotFound",
        format!("Resource group '{name}' could not be found."),
    )
}

/// The subscription visible to the caller, a Microsoft.Resources api-version, a valid name.
fn admit<'a>(
    principal: &Principal,
    sub: &str,
    rg: &str,
    query: &'a HashMap<String, String>,
) -> Result<&'a str, ApiError> {
    principal.admit(sub)?;
    let version = resources_api_version(query)?;
    validate::resource_group(rg)?;
    Ok(version)
}

fn body(group: &ResourceGroupRecord) -> Value {
    let mut body = json!({
        "id": format!("/subscriptions/{}/resourceGroups/{}", group.subscription, group.name),
        "name": group.name,
        "type": "Microsoft.Resources/resourceGroups",
        "location": group.location,
        "properties": {"provisioningState": "Succeeded"},
    });
    // ARM leaves `tags` out of a group that has none.
    if !group.tags.is_empty() {
        body["tags"] = json!(group.tags);
    }
    body
}

async fn load(state: &AppState, sub: &str, rg: &str) -> Result<ResourceGroupRecord, ApiError> {
    state
        .store
        .resource_group(sub, rg)
        .await?
        .ok_or_else(|| not_found(rg))
}

pub(super) async fn get(
    State(state): State<AppState>,
    principal: Principal,
    Path((sub, rg)): Path<(String, String)>,
    Query(query): Q,
) -> Result<Response, ApiError> {
    admit(&principal, &sub, &rg, &query)?;
    Ok(Json(body(&load(&state, &sub, &rg).await?)).into_response())
}

/// HEAD: 204 if the group exists, 404 if not (no body either way).
pub(super) async fn exists(
    State(state): State<AppState>,
    principal: Principal,
    Path((sub, rg)): Path<(String, String)>,
    Query(query): Q,
) -> Result<Response, ApiError> {
    admit(&principal, &sub, &rg, &query)?;
    Ok(match state.store.resource_group(&sub, &rg).await? {
        Some(_) => StatusCode::NO_CONTENT.into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    })
}

pub(super) async fn list(
    State(state): State<AppState>,
    principal: Principal,
    Path(sub): Path<String>,
    Query(query): Q,
) -> Result<Response, ApiError> {
    principal.admit(&sub)?;
    resources_api_version(&query)?;
    let value: Vec<Value> = state
        .store
        .resource_groups(&sub)
        .await?
        .iter()
        .map(body)
        .collect();
    Ok(Json(json!({ "value": value })).into_response())
}

/// The location of a PUT: required, and the region served here.
fn location(state: &AppState, given: Option<&str>) -> Result<String, ApiError> {
    let given = given.ok_or_else(|| {
        ApiError::bad_request(
            "LocationRequired",
            "location",
            "The location property is required for this definition.",
        )
    })?;
    if normalize_location(given) == state.config.region {
        Ok(state.config.region.clone())
    } else {
        Err(ApiError::bad_request(
            "LocationNotAvailableForResourceGroup",
            "location",
            format!(
                "The provided location '{given}' is not available for resource group. List of available regions is \
                 '{}'.",
                state.config.region
            ),
        ))
    }
}

/// PUT: 201 with the new group, or 200 with the existing one, its tags replaced by the body's.
pub(super) async fn put(
    State(state): State<AppState>,
    principal: Principal,
    Path((sub, rg)): Path<(String, String)>,
    Query(query): Q,
    RawBody(raw): RawBody,
) -> Result<Response, ApiError> {
    admit(&principal, &sub, &rg, &query)?;
    let request: ResourceGroupBody = parse(&raw)?;
    let location = location(&state, request.location.as_deref())?;
    let tags = request.tags.unwrap_or_default();
    validate::tags(&tags, "tags")?;
    let now = now_ms();
    let record = ResourceGroupRecord {
        subscription: sub.clone(),
        name: rg.clone(),
        location: location.clone(),
        tags: tags.clone(),
        created_ms: now,
        updated_ms: now,
    };
    match state.store.create_resource_group(&record).await? {
        ResourceGroupCreation::Created => {
            return Ok((StatusCode::CREATED, Json(body(&record))).into_response());
        }
        ResourceGroupCreation::LimitReached => return Err(StoreError::ResourceGroupLimit.into()),
        ResourceGroupCreation::Exists => {}
    }
    let existing = load(&state, &sub, &rg).await?;
    if existing.location != location {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "InvalidResourceGroupLocation",
            format!(
                "Invalid resource group location '{location}'. The Resource group already exists in location '{}'.",
                existing.location
            ),
        )
        .with_target("location"));
    }
    state
        .store
        .set_resource_group_tags(&sub, &rg, &tags, now)
        .await?;
    let updated = ResourceGroupRecord {
        tags,
        updated_ms: now,
        ..existing
    };
    Ok((StatusCode::OK, Json(body(&updated))).into_response())
}

/// PATCH: the tags, if the body has them; the location cannot change.
pub(super) async fn patch(
    State(state): State<AppState>,
    principal: Principal,
    Path((sub, rg)): Path<(String, String)>,
    Query(query): Q,
    RawBody(raw): RawBody,
) -> Result<Response, ApiError> {
    admit(&principal, &sub, &rg, &query)?;
    let request: ResourceGroupBody = parse(&raw)?;
    let existing = load(&state, &sub, &rg).await?;
    let Some(tags) = request.tags else {
        return Ok(Json(body(&existing)).into_response());
    };
    validate::tags(&tags, "tags")?;
    let now = now_ms();
    state
        .store
        .set_resource_group_tags(&sub, &rg, &tags, now)
        .await?;
    let updated = ResourceGroupRecord {
        tags,
        updated_ms: now,
        ..existing
    };
    Ok(Json(body(&updated)).into_response())
}

/// Deletes every container group in the resource group, as a container-group DELETE does each.
async fn empty(state: &AppState, sub: &str, rg: &str) -> Result<(), ApiError> {
    let page = state.config.page_size.max(1) as i64;
    loop {
        let groups = state.groups.list(sub, Some(rg), 0, page).await?;
        if groups.is_empty() {
            return Ok(());
        }
        for group in &groups {
            state.groups.delete_by_id(&group.id).await?;
        }
    }
}

/// DELETE: the container groups in it, then the group; 202 with a `Location` that answers 200, as
/// ARM's asynchronous delete does (Berth finishes before it answers).
pub(super) async fn delete(
    State(state): State<AppState>,
    principal: Principal,
    Path((sub, rg)): Path<(String, String)>,
    Query(query): Q,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let version = admit(&principal, &sub, &rg, &query)?;
    let group = load(&state, &sub, &rg).await?;
    let mut rounds = 0;
    loop {
        empty(&state, &sub, &rg).await?;
        match state.store.delete_resource_group(&sub, &rg).await? {
            ResourceGroupDeletion::Deleted | ResourceGroupDeletion::NotFound => break,
            ResourceGroupDeletion::NotEmpty if rounds + 1 < DELETE_ROUNDS => rounds += 1,
            ResourceGroupDeletion::NotEmpty => {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "Conflict",
                    format!(
                        "Container groups are being created in resource group '{rg}' while it is deleted; retry."
                    ),
                ));
            }
        }
    }
    let now = now_ms();
    let operation = OperationRecord {
        id: uuid::Uuid::new_v4().to_string(),
        subscription: sub.clone(),
        group_id: String::new(),
        resource_id: format!("/subscriptions/{sub}/resourceGroups/{}", group.name),
        kind: OperationKind::DeleteResourceGroup,
        generation: 0,
        status: OperationStatus::Succeeded,
        error_code: None,
        error_message: None,
        started_ms: now,
        ended_ms: Some(now),
    };
    state.store.insert_operation(&operation).await?;
    let url = format!(
        "{}/subscriptions/{sub}/operationresults/{}?api-version={version}",
        base_url(&state, &headers),
        operation.id
    );
    let mut response = StatusCode::ACCEPTED.into_response();
    if let Ok(value) = HeaderValue::from_str(&url) {
        response.headers_mut().insert("Location", value);
    }
    response
        .headers_mut()
        .insert("Retry-After", HeaderValue::from_static("1"));
    Ok(response)
}

/// The `Location` of a resource-group DELETE: 200 once it is done (it always is by the time a
/// client asks).
pub(super) async fn operation_result(
    State(state): State<AppState>,
    principal: Principal,
    Path((sub, id)): Path<(String, String)>,
    Query(query): Q,
) -> Result<Response, ApiError> {
    principal.admit(&sub)?;
    resources_api_version(&query)?;
    let operation = state
        .store
        .operation(&id)
        .await?
        .filter(|op| {
            op.subscription.eq_ignore_ascii_case(&sub)
                && op.kind == OperationKind::DeleteResourceGroup
        })
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "OperationNotFound",
                format!("The operation '{id}' was not found."),
            )
        })?;
    Ok(match operation.status {
        OperationStatus::Pending => StatusCode::ACCEPTED.into_response(),
        _ => StatusCode::OK.into_response(),
    })
}

/// `GET …/resourceGroups/{rg}/resources`: its container groups as ARM's generic resources (Terraform
/// reads it before deleting a resource group).
pub(super) async fn resources(
    State(state): State<AppState>,
    principal: Principal,
    Path((sub, rg)): Path<(String, String)>,
    Query(query): Q,
) -> Result<Response, ApiError> {
    admit(&principal, &sub, &rg, &query)?;
    load(&state, &sub, &rg).await?;
    let page = state.config.page_size.max(1) as i64;
    let mut value = Vec::new();
    let mut after = 0;
    loop {
        let groups = state.groups.list(&sub, Some(&rg), after, page).await?;
        let Some(last) = groups.last() else { break };
        after = last.seq;
        value.extend(groups.iter().map(|g| {
            json!({
                "id": crate::render::resource_id(&g.subscription, &g.resource_group, &g.name),
                "name": g.name,
                "type": "Microsoft.ContainerInstance/containerGroups",
                "location": g.location,
                "tags": g.tags,
            })
        }));
    }
    Ok(Json(json!({ "value": value })).into_response())
}
