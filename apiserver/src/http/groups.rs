//! Container-group routes: PUT, GET, LIST, PATCH, DELETE, restart, stop, start.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::header::WARNING;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use berth_proto::arm;
use sha2::{Digest as _, Sha256};

use super::extract::{ArmJson, RawBody, api_version, ignored_warning, parse_group};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::model::{GroupSpec, cpu_cores, memory_gb};
use crate::render;
use crate::store::{
    Change, Desired, GroupKey, GroupRecord, NewGroup, OperationKind, OperationRecord,
    OperationStatus, ProvisioningState, StoreError,
};
use crate::validate;
use crate::{AppState, now_ms};

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

pub(super) async fn load(
    state: &AppState,
    principal: &Principal,
    (sub, rg, name): &(String, String, String),
    query: &HashMap<String, String>,
) -> Result<GroupRecord, ApiError> {
    admit(principal, sub, query)?;
    state
        .store
        .group(&GroupKey::new(sub, rg, name))
        .await?
        .ok_or_else(|| ApiError::group_not_found(rg, name))
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

fn new_operation(sub: &str, group: &GroupRecord, kind: OperationKind, now: i64) -> OperationRecord {
    OperationRecord {
        id: uuid::Uuid::new_v4().to_string(),
        subscription: sub.to_owned(),
        group_id: group.id.clone(),
        resource_id: render::resource_id(sub, &group.resource_group, &group.name),
        kind,
        generation: group.generation,
        status: OperationStatus::Pending,
        error_code: None,
        error_message: None,
        started_ms: now,
        ended_ms: None,
    }
}

/// `<label>.<region>.<zone>`, or with a reuse policy `<label>-<hash>.<region>.<zone>` where the hash
/// binds the label to its owner (subscription, resource group) or is random (`Noreuse`).
fn fqdn(state: &AppState, spec: &GroupSpec, sub: &str, rg: &str) -> Option<String> {
    let ip = spec.ip_address.as_ref()?;
    let label = ip.dns_name_label.as_ref()?;
    let suffix = format!("{}.{}", state.config.region, state.config.dns_zone);
    let owner = match ip.label_scope.as_str() {
        "Unsecure" => return Some(format!("{label}.{suffix}")),
        "TenantReuse" | "SubscriptionReuse" => sub.to_ascii_lowercase(),
        "ResourceGroupReuse" => format!("{}/{}", sub.to_ascii_lowercase(), rg.to_ascii_lowercase()),
        _ => uuid::Uuid::new_v4().to_string(),
    };
    let digest = Sha256::digest(format!("{owner}/{label}").as_bytes());
    let hash: String = digest
        .iter()
        .take(5)
        .map(|b| char::from(b"abcdefghijklmnopqrstuvwxyz0123456789"[usize::from(*b) % 36]))
        .collect();
    Some(format!("{label}-{hash}.{suffix}"))
}

fn service_unavailable(state: &AppState, spec: &GroupSpec) -> ApiError {
    let r = spec.requests();
    ApiError::new(
        StatusCode::CONFLICT,
        "ServiceUnavailable",
        format!(
            "The requested resource is not available in the location '{}' at this moment. Please retry with a \
             different resource request or in another location. Resource requested: '{}' CPU '{}' GB memory '{}' OS{}",
            state.config.region,
            cpu_cores(r.cpu_millis),
            memory_gb(r.memory_mib),
            spec.os_type.as_str(),
            if r.gpu > 0 {
                format!(" '{}' GPU", r.gpu)
            } else {
                String::new()
            }
        ),
    )
}

fn open_spec(state: &AppState, sealed: &[u8]) -> Result<GroupSpec, ApiError> {
    let plain = state
        .secrets
        .open(sealed)
        .map_err(|e| ApiError::from(StoreError::Corrupt(e.to_string())))?;
    serde_json::from_slice(&plain).map_err(|e| ApiError::from(StoreError::Corrupt(e.to_string())))
}

fn seal(state: &AppState, spec: &GroupSpec) -> Vec<u8> {
    state
        .secrets
        .seal(&serde_json::to_vec(spec).expect("plain data types always serialise to JSON"))
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
    let mut response = create_or_update(state, &headers, (sub, rg, name), version, body).await?;
    if let Some(warning) = ignored_warning(&ignored, version) {
        response.headers_mut().insert(WARNING, warning);
    }
    Ok(response)
}

async fn create_or_update(
    state: AppState,
    headers: &HeaderMap,
    (sub, rg, name): (String, String, String),
    version: &str,
    body: arm::ContainerGroup,
) -> Result<Response, ApiError> {
    let valid =
        validate::container_group(&body, &name, &state.config.region, version, &state.limits)?;
    let requests = valid.spec.requests();
    if !state.gateway.could_ever_fit(valid.spec.os_type, &requests) {
        return Err(service_unavailable(&state, &valid.spec));
    }
    let key = GroupKey::new(&sub, &rg, &name);
    let now = now_ms();

    // Creates are the common case: try the insert first; a name that exists turns into an update.
    let fqdn = fqdn(&state, &valid.spec, &sub, &rg);
    let new = NewGroup {
        id: uuid::Uuid::new_v4().to_string(),
        key: key.clone(),
        resource_group_as: rg.clone(),
        location: valid.location.clone(),
        tags: valid.tags.clone(),
        sealed_spec: seal(&state, &valid.spec),
        spec: valid.spec,
        fqdn,
        now_ms: now,
        operation_id: uuid::Uuid::new_v4().to_string(),
        resource_id: render::resource_id(&sub, &rg, &name),
        quota: (state.quota.groups, state.quota.cpu_millis),
    };
    match state.store.create_group(&new).await {
        Ok(()) => {}
        Err(StoreError::Conflict(what)) if what == "fqdn" => {
            let label = new
                .spec
                .ip_address
                .as_ref()
                .and_then(|ip| ip.dns_name_label.clone())
                .unwrap_or_default();
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "DnsNameLabelNotAvailable",
                format!("The DNS name label '{label}' in container group '{name}' not available. Try using a different label."),
            )
            .with_target("properties.ipAddress.dnsNameLabel"));
        }
        Err(StoreError::QuotaExceeded { groups, cpu_millis }) => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "QuotaExceeded",
                format!(
                    "Resource type 'Microsoft.ContainerInstance/containerGroups' quota exceeded in region '{}'. \
                     Limits: {} container groups, {} cores; usage: {groups} groups, {} cores; requested: 1 group, \
                     {} cores.",
                    state.config.region,
                    state.quota.groups,
                    cpu_cores(state.quota.cpu_millis),
                    cpu_cores(cpu_millis),
                    cpu_cores(requests.cpu_millis)
                ),
            ));
        }
        Err(StoreError::Conflict(_)) => {
            let existing = state.store.group(&key).await?.ok_or_else(|| {
                ApiError::new(
                    StatusCode::CONFLICT,
                    "Conflict",
                    format!("Container group '{name}' is being changed by another request; retry."),
                )
            })?;
            let valid = validate::ValidGroup {
                location: new.location,
                tags: new.tags,
                spec: new.spec,
            };
            return update(&state, headers, &sub, version, existing, valid).await;
        }
        Err(err) => return Err(err.into()),
    }
    state.scheduler.wake();
    // Rendered from what was just committed; no second read.
    let group = GroupRecord {
        id: new.id.clone(),
        seq: 0,
        subscription: sub.clone(),
        resource_group: rg.clone(),
        name: name.clone(),
        location: new.location.clone(),
        tags: new.tags.clone(),
        spec: new.spec.redacted(),
        requests,
        fqdn: new.fqdn.clone(),
        generation: 1,
        desired: Desired::Running,
        provisioning_state: ProvisioningState::Pending,
        node_id: None,
        status: None,
        events: Vec::new(),
        created_ms: now,
        updated_ms: now,
    };
    let response = (
        StatusCode::CREATED,
        Json(render::for_version(
            render::container_group(&group, true),
            version,
        )),
    )
        .into_response();
    Ok(with_operation(
        response,
        &operation_url(&state, headers, &sub, &new.operation_id),
    ))
}

/// PUT on an existing group: the same spec is a no-op; an allowed change restarts it in place; a
/// change of OS, sizes, restart policy or network needs delete and re-create (ACI's rule).
async fn update(
    state: &AppState,
    headers: &HeaderMap,
    sub: &str,
    version: &str,
    existing: GroupRecord,
    valid: validate::ValidGroup,
) -> Result<Response, ApiError> {
    validate::update(&existing.spec, &valid.spec, &existing.name)?;
    let sealed = state
        .store
        .sealed_spec(&existing.id)
        .await?
        .ok_or_else(|| ApiError::group_not_found(&existing.resource_group, &existing.name))?;
    let current = open_spec(state, &sealed)?;
    let now = now_ms();
    let op = new_operation(sub, &existing, OperationKind::Update, now);
    let op_id = op.id.clone();
    if current == valid.spec {
        // Idempotent PUT: nothing restarts. The operation finishes with the group's current state.
        let status = match existing.provisioning_state {
            ProvisioningState::Succeeded => OperationStatus::Succeeded,
            ProvisioningState::Failed => OperationStatus::Failed,
            _ => OperationStatus::Pending,
        };
        let op = OperationRecord {
            status,
            ended_ms: status.is_done().then_some(now),
            ..op
        };
        state.store.insert_operation(&op).await?;
        if existing.tags != valid.tags {
            state.store.set_tags(&existing.id, &valid.tags, now).await?;
        }
    } else {
        let change = state
            .store
            .update_group(
                &existing.id,
                existing.generation,
                &valid.spec,
                &seal(state, &valid.spec),
                &valid.tags,
                &op,
                now,
            )
            .await?;
        match change {
            Change::Applied { .. } => {}
            Change::Moved => {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "Conflict",
                    format!(
                        "Container group '{}' is being changed by another request; retry.",
                        existing.name
                    ),
                ));
            }
            Change::NotFound => {
                return Err(ApiError::group_not_found(
                    &existing.resource_group,
                    &existing.name,
                ));
            }
        }
        state.zone_dirty.poke();
        if let Some(node) = &existing.node_id {
            state.gateway.refresh(node, &existing.id).await;
        }
    }
    let group = state
        .store
        .group_by_id(&existing.id)
        .await?
        .ok_or_else(ApiError::internal)?;
    let body = render::for_version(render::container_group(&group, true), version);
    let response = (StatusCode::OK, Json(body)).into_response();
    Ok(with_operation(
        response,
        &operation_url(state, headers, sub, &op_id),
    ))
}

pub(super) async fn get(
    State(state): State<AppState>,
    principal: Principal,
    Path(path): GroupPath,
    Query(query): Q,
) -> Result<Response, ApiError> {
    let group = load(&state, &principal, &path, &query).await?;
    let version = admit(&principal, &path.0, &query)?;
    Ok(Json(render::for_version(
        render::container_group(&group, true),
        version,
    ))
    .into_response())
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
    let mut groups = state.store.list_groups(sub, rg, after, page + 1).await?;
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
    let group = load(&state, &principal, &path, &query).await?;
    let tags = body.tags.unwrap_or_default();
    validate::tags(&tags, "tags")?;
    state.store.set_tags(&group.id, &tags, now_ms()).await?;
    let group = state
        .store
        .group_by_id(&group.id)
        .await?
        .ok_or_else(|| ApiError::group_not_found(&path.1, &path.2))?;
    let version = admit(&principal, &path.0, &query)?;
    Ok(Json(render::for_version(
        render::container_group(&group, true),
        version,
    ))
    .into_response())
}

/// Deletes a group: its capacity released, its billing ended, its node told, its DNS record gone.
/// Returns the group as it was, or `None` if it was gone already.
pub(super) async fn remove(state: &AppState, id: &str) -> Result<Option<GroupRecord>, ApiError> {
    let deleted = state.store.delete_group(id, crate::now_ms()).await?;
    state.zone_dirty.poke();
    if let Some(node) = deleted.as_ref().and_then(|d| d.node_id.as_ref()) {
        state.gateway.remove(node, id);
        state.scheduler.capacity_changed();
    }
    Ok(deleted)
}

pub(super) async fn delete(
    State(state): State<AppState>,
    principal: Principal,
    Path((sub, rg, name)): GroupPath,
    Query(query): Q,
) -> Result<Response, ApiError> {
    let version = admit(&principal, &sub, &query)?;
    let Some(group) = state.store.group(&GroupKey::new(&sub, &rg, &name)).await? else {
        return Ok(StatusCode::NO_CONTENT.into_response());
    };
    let Some(deleted) = remove(&state, &group.id).await? else {
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
    let group = load(&state, &principal, &path, &query).await?;
    if group.desired == Desired::Stopped {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "ContainerGroupStopped",
            format!(
                "Container Group '{}' in resource group '{}' is stopped.",
                group.name, group.resource_group
            ),
        ));
    }
    let now = now_ms();
    let op = new_operation(&path.0, &group, OperationKind::Restart, now);
    state.store.restart_group(&group.id, &op, now).await?;
    state.zone_dirty.poke();
    if let Some(node) = &group.node_id {
        state.gateway.refresh(node, &group.id).await;
    }
    Ok(with_operation(
        StatusCode::NO_CONTENT.into_response(),
        &operation_url(&state, &headers, &path.0, &op.id),
    ))
}

pub(super) async fn stop(
    State(state): State<AppState>,
    principal: Principal,
    Path(path): GroupPath,
    Query(query): Q,
) -> Result<Response, ApiError> {
    let group = load(&state, &principal, &path, &query).await?;
    if group.desired == Desired::Running {
        state.store.stop_group(&group.id, now_ms()).await?;
        state.zone_dirty.poke();
        if let Some(node) = &group.node_id {
            state.gateway.remove(node, &group.id);
            state.scheduler.capacity_changed();
        }
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(super) async fn start(
    State(state): State<AppState>,
    principal: Principal,
    Path(path): GroupPath,
    Query(query): Q,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let group = load(&state, &principal, &path, &query).await?;
    if group.desired == Desired::Running {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    if !state
        .gateway
        .could_ever_fit(group.spec.os_type, &group.requests)
    {
        return Err(service_unavailable(&state, &group.spec));
    }
    let now = now_ms();
    let op = new_operation(&path.0, &group, OperationKind::Start, now);
    match state.store.start_group(&group.id, &op, now).await? {
        Change::Applied { .. } => {}
        // Started by a concurrent request meanwhile: nothing left for this one to do.
        Change::Moved => return Ok(StatusCode::NO_CONTENT.into_response()),
        Change::NotFound => return Err(ApiError::group_not_found(&path.1, &path.2)),
    }
    state.zone_dirty.poke();
    state.scheduler.wake();
    Ok(with_operation(
        StatusCode::ACCEPTED.into_response(),
        &operation_url(&state, &headers, &path.0, &op.id),
    ))
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
