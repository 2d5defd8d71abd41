//! Provider-level routes: subscriptions, the async-operation monitor, usages, capabilities, cached
//! images and the operations list.

use std::collections::{BTreeMap, HashMap};

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use berth_proto::arm;
use serde_json::json;

use crate::AppState;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::model::{OsType, Size, cpu_cores, memory_gb};
use crate::render::timestamp;
use crate::validate::normalize_location;

type Q = Query<HashMap<String, String>>;

fn location(state: &AppState, location: &str) -> Result<(), ApiError> {
    if normalize_location(location) == state.config.region {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "LocationNotAvailableForResourceType",
            format!(
                "The location '{location}' is not served here. The available location is '{}'.",
                state.config.region
            ),
        )
        .with_target("location"))
    }
}

fn any_version(query: &HashMap<String, String>) -> Result<(), ApiError> {
    // Provider-level routes accept whatever api-version a client's SDK sends, but one is required.
    if query.contains_key("api-version") {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "MissingApiVersionParameter",
            "api-version",
            "The api-version query parameter (?api-version=) is required for all requests.",
        ))
    }
}

/// A location route: api-version given, subscription visible to the caller, location served here.
fn admit(
    state: &AppState,
    principal: &Principal,
    sub: &str,
    loc: &str,
    query: &HashMap<String, String>,
) -> Result<(), ApiError> {
    principal.admit(sub)?;
    any_version(query)?;
    location(state, loc)
}

/// ARM's `GET /subscriptions`: the caller's subscriptions.
pub(super) async fn list_subscriptions(
    State(state): State<AppState>,
    principal: Principal,
    Query(query): Q,
) -> Result<Response, ApiError> {
    any_version(&query)?;
    let mut subs: Vec<&String> = principal.subscriptions.iter().collect();
    subs.sort();
    let tenant = crate::auth::tenant_id(&state);
    let value: Vec<_> = subs
        .into_iter()
        .map(|s| super::subscriptions::subscription_body(&tenant, s))
        .collect();
    Ok(Json(json!({ "value": value })).into_response())
}

pub(super) async fn operation_status(
    State(state): State<AppState>,
    principal: Principal,
    Path((sub, loc, id)): Path<(String, String, String)>,
    Query(query): Q,
) -> Result<Response, ApiError> {
    admit(&state, &principal, &sub, &loc, &query)?;
    let op = state
        .store
        .operation(&id)
        .await?
        .filter(|op| op.subscription.eq_ignore_ascii_case(&sub))
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "OperationNotFound",
                format!("The operation '{id}' was not found."),
            )
        })?;
    let body = arm::OperationStatus {
        id: op.resource_id.clone(),
        name: op.id.clone(),
        status: op.status.as_str().to_owned(),
        start_time: Some(timestamp(op.started_ms)),
        end_time: op.ended_ms.map(timestamp),
        properties: Some(arm::OperationProperties { events: Vec::new() }),
        error: op.error_code.as_ref().map(|code| arm::ErrorBody {
            code: code.clone(),
            message: op.error_message.clone().unwrap_or_default(),
            target: None,
            details: Vec::new(),
        }),
    };
    let pending = !op.status.is_done();
    let mut response = Json(body).into_response();
    if pending {
        // ARM's pollers wait what `Retry-After` says, else their own default (azure-core: 30 s): a
        // group that starts in a second is seen started a second later.
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    Ok(response)
}

pub(super) async fn usages(
    State(state): State<AppState>,
    principal: Principal,
    Path((sub, loc)): Path<(String, String)>,
    Query(query): Q,
) -> Result<Response, ApiError> {
    admit(&state, &principal, &sub, &loc, &query)?;
    let (groups, used) = state.store.usage(&sub).await?;
    let row = |name: &str, localized: &str, current: i64, limit: i64| arm::Usage {
        id: format!(
            "/subscriptions/{sub}/providers/Microsoft.ContainerInstance/locations/{}/usages/{name}",
            state.config.region
        ),
        unit: "Count".to_owned(),
        current_value: current,
        limit,
        name: arm::UsageName {
            value: name.to_owned(),
            localized_value: localized.to_owned(),
        },
    };
    let cores = |millis: u64| millis.div_ceil(1000) as i64;
    let value = vec![
        row(
            "ContainerGroups",
            "Container Groups",
            groups,
            state.quota.groups,
        ),
        row(
            "StandardCores",
            "Standard Cores",
            cores(used.cpu_millis),
            cores(state.quota.cpu_millis),
        ),
    ];
    Ok(Json(json!({ "value": value })).into_response())
}

pub(super) async fn capabilities(
    State(state): State<AppState>,
    principal: Principal,
    Path((sub, loc)): Path<(String, String)>,
    Query(query): Q,
) -> Result<Response, ApiError> {
    admit(&state, &principal, &sub, &loc, &query)?;
    // The largest group a node of each OS could hold, within the per-group limit.
    let mut largest: BTreeMap<&'static str, Size> = BTreeMap::new();
    for node in state.store.nodes().await? {
        let entry = largest.entry(node.os_type.as_str()).or_default();
        entry.cpu_millis = entry.cpu_millis.max(node.capacity.cpu_millis);
        entry.memory_mib = entry.memory_mib.max(node.capacity.memory_mib);
        entry.gpu = entry.gpu.max(node.capacity.gpu);
    }
    let max = state.limits.max_group;
    let value: Vec<arm::Capability> = [OsType::Linux, OsType::Windows]
        .into_iter()
        .filter_map(|os| largest.get(os.as_str()).map(|size| (os, *size)))
        .map(|(os, size)| arm::Capability {
            resource_type: "containerGroups".to_owned(),
            os_type: os.as_str().to_owned(),
            location: state.config.region.clone(),
            ip_address_type: "Public".to_owned(),
            gpu: if size.gpu > 0 { "V100" } else { "None" }.to_owned(),
            capabilities: arm::CapabilityLimits {
                max_memory_in_gb: memory_gb(size.memory_mib.min(max.memory_mib)),
                max_cpu: cpu_cores(size.cpu_millis.min(max.cpu_millis)),
                max_gpu_count: f64::from(size.gpu.min(max.gpu)),
            },
        })
        .collect();
    Ok(Json(arm::ListResult {
        value,
        next_link: None,
    })
    .into_response())
}

pub(super) async fn cached_images(
    State(state): State<AppState>,
    principal: Principal,
    Path((sub, loc)): Path<(String, String)>,
    Query(query): Q,
) -> Result<Response, ApiError> {
    admit(&state, &principal, &sub, &loc, &query)?;
    Ok(Json(arm::ListResult::<serde_json::Value> {
        value: Vec::new(),
        next_link: None,
    })
    .into_response())
}

pub(super) async fn operations(
    _principal: Principal,
    Query(query): Q,
) -> Result<Response, ApiError> {
    any_version(&query)?;
    let op = |name: &str, resource: &str, operation: &str, description: &str| arm::Operation {
        name: format!("Microsoft.ContainerInstance/{name}"),
        display: arm::OperationDisplay {
            provider: "Microsoft Container Instance".to_owned(),
            resource: resource.to_owned(),
            operation: operation.to_owned(),
            description: description.to_owned(),
        },
        origin: Some("User,System".to_owned()),
    };
    let value = vec![
        op(
            "containerGroups/read",
            "Container Group",
            "Get Container Group",
            "Get all container groups.",
        ),
        op(
            "containerGroups/write",
            "Container Group",
            "Create or Update Container Group",
            "Create or update a specific container group.",
        ),
        op(
            "containerGroups/delete",
            "Container Group",
            "Delete Container Group",
            "Delete the specific container group.",
        ),
        op(
            "containerGroups/restart/action",
            "Container Group",
            "Restart Container Group",
            "Restarts a specific container group.",
        ),
        op(
            "containerGroups/stop/action",
            "Container Group",
            "Stop Container Group",
            "Stops a specific container group.",
        ),
        op(
            "containerGroups/start/action",
            "Container Group",
            "Start Container Group",
            "Starts a specific container group.",
        ),
        op(
            "containerGroups/containers/logs/read",
            "Container",
            "Get Container Logs",
            "Get the logs for a specific container.",
        ),
        op(
            "containerGroups/containers/exec/action",
            "Container",
            "Exec Into Container",
            "Exec into a specific container.",
        ),
        op(
            "locations/usages/read",
            "Usage",
            "Get Usage",
            "Get the usage for a specific location.",
        ),
        op(
            "locations/capabilities/read",
            "Capabilities",
            "Get Capabilities",
            "Get the capabilities for a specific location.",
        ),
        op(
            "locations/operations/read",
            "Operation",
            "Get Operation",
            "Get the status of an asynchronous operation.",
        ),
    ];
    Ok(Json(arm::ListResult {
        value,
        next_link: None,
    })
    .into_response())
}
