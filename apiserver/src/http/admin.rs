//! `/admin/v1`: operator-only administration ACI does not have (join tokens, nodes, DNS server
//! certificates; API tokens are in `tokens`).
//!
//! Nodes are named in paths by name or id. Cordon stops new placements on a node; drain cordons it
//! and takes every group off it (each stopped with the normal grace; the ones their restart policy
//! runs again are placed elsewhere); delete removes an empty node, or with `force=true` treats it as
//! lost first. Every change is followed by what the gateway does when groups leave a node.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use berth_proto::admin::{
    DnsCertificate, JoinToken, JoinTokenRequest, Node, NodeEvacuation, NodeResources,
};
use berth_proto::arm::ListResult;

use super::ArmJson;
use crate::auth::{Operator, random_lower};
use crate::error::ApiError;
use crate::model::{Size, cpu_cores, memory_gb};
use crate::render::{resource_id, timestamp};
use crate::store::{NodeDeleteRefusal, NodeRecord, Unassigned};
use crate::validate::code;
use crate::{AppState, now_ms};

pub(super) async fn create_join_token(
    State(state): State<AppState>,
    _operator: Operator,
    ArmJson(req): ArmJson<JoinTokenRequest>,
) -> Result<Response, ApiError> {
    let uses = req.uses.unwrap_or(1);
    if !(1..=100_000).contains(&uses) {
        return Err(ApiError::bad_request(
            code::INVALID_VALUE,
            "uses",
            "uses is between 1 and 100000.",
        ));
    }
    let ttl = req.ttl_seconds.unwrap_or(3600);
    if !(1..=31 * 24 * 3600).contains(&ttl) {
        return Err(ApiError::bad_request(
            code::INVALID_VALUE,
            "ttlSeconds",
            "ttlSeconds is between 1 and 2678400 (31 days).",
        ));
    }
    let (id, secret) = (random_lower(6), random_lower(16));
    let now = now_ms();
    let expires = now + ttl * 1000;
    state
        .store
        .insert_join_token(&id, &crate::auth::hash(&secret), uses as u32, expires, now)
        .await?;
    let token = format!("{id}.{secret}.{}", state.ca.hash_hex());
    Ok((
        StatusCode::CREATED,
        Json(JoinToken {
            expires_at: timestamp(expires),
            token,
            uses,
        }),
    )
        .into_response())
}

/// The node's last message: this process's word if it has heard from it since it started (the store
/// lags by up to `--heartbeat-store-interval-ms`), else the store's.
fn last_heartbeat(state: &AppState, node: &crate::store::NodeRecord) -> i64 {
    state
        .gateway
        .last_heartbeat(&node.id)
        .map_or(node.last_heartbeat_ms, |ms| ms.max(node.last_heartbeat_ms))
}

fn resources(size: &Size) -> NodeResources {
    NodeResources {
        cpu: cpu_cores(size.cpu_millis),
        gpu: u64::from(size.gpu),
        memory_in_gb: memory_gb(size.memory_mib),
    }
}

/// A node as `/admin/v1/nodes` shows it, with `groups` placed on it.
fn node_view(state: &AppState, n: &NodeRecord, groups: u64) -> Node {
    Node {
        agent_version: Some(n.agent_version.clone()),
        allocated: resources(&n.used),
        capacity: resources(&n.capacity),
        cordoned: n.cordoned,
        draining: n.draining,
        groups,
        id: n.id.clone(),
        labels: n.labels.clone(),
        last_heartbeat: Some(timestamp(last_heartbeat(state, n))),
        name: n.name.clone(),
        os_type: n.os_type.as_str().to_owned(),
        status: n.status.as_str().to_owned(),
    }
}

pub(super) async fn list_nodes(
    State(state): State<AppState>,
    _operator: Operator,
) -> Result<Response, ApiError> {
    let nodes = state.store.nodes().await?;
    let mut counts = HashMap::<String, u64>::new();
    for id in state.store.group_counts_by_node().await? {
        *counts.entry(id).or_default() += 1;
    }
    let value: Vec<Node> = nodes
        .iter()
        .map(|n| node_view(&state, n, counts.get(&n.id).copied().unwrap_or(0)))
        .collect();
    Ok(Json(ListResult {
        value,
        next_link: None,
    })
    .into_response())
}

fn node_not_found(key: &str) -> ApiError {
    let key: String = key.chars().take(100).collect();
    ApiError::new(
        StatusCode::NOT_FOUND,
        "NodeNotFound",
        format!("The node '{key}' was not found."),
    )
}

/// The node `key` names: its id, or else its name.
async fn find_node(state: &AppState, key: &str) -> Result<NodeRecord, ApiError> {
    let nodes = state.store.nodes().await?;
    let by_id = nodes.iter().position(|n| n.id == key);
    let found = by_id.or_else(|| nodes.iter().position(|n| n.name == key));
    found
        .and_then(|i| nodes.into_iter().nth(i))
        .ok_or_else(|| node_not_found(key))
}

/// The node `id` as it is now, in the view (404 if it went meanwhile).
async fn current_view(state: &AppState, id: &str) -> Result<Node, ApiError> {
    let node = state
        .store
        .node(id)
        .await?
        .ok_or_else(|| node_not_found(id))?;
    let groups = state
        .store
        .group_counts_by_node()
        .await?
        .iter()
        .filter(|n| *n == id)
        .count() as u64;
    Ok(node_view(state, &node, groups))
}

/// `GET /admin/v1/nodes/{node}`.
pub(super) async fn get_node(
    State(state): State<AppState>,
    _operator: Operator,
    Path(key): Path<String>,
) -> Result<Response, ApiError> {
    let node = find_node(&state, &key).await?;
    Ok(Json(current_view(&state, &node.id).await?).into_response())
}

async fn set_cordoned(state: &AppState, key: &str, cordoned: bool) -> Result<Response, ApiError> {
    let node = find_node(state, key).await?;
    if !state.store.set_cordoned(&node.id, cordoned).await? {
        return Err(node_not_found(key));
    }
    tracing::info!(node = %node.name, cordoned, "node cordon changed");
    // The scheduler's view of the candidates changed either way.
    state.scheduler.capacity_changed();
    Ok(Json(current_view(state, &node.id).await?).into_response())
}

/// `POST /admin/v1/nodes/{node}/cordon`: no new placement on the node.
pub(super) async fn cordon_node(
    State(state): State<AppState>,
    _operator: Operator,
    Path(key): Path<String>,
) -> Result<Response, ApiError> {
    set_cordoned(&state, &key, true).await
}

/// `POST /admin/v1/nodes/{node}/uncordon`: placements again (a drain ends too).
pub(super) async fn uncordon_node(
    State(state): State<AppState>,
    _operator: Operator,
    Path(key): Path<String>,
) -> Result<Response, ApiError> {
    set_cordoned(&state, &key, false).await
}

/// The ARM ids of groups by their store ids (a group deleted meanwhile is left out).
async fn arm_ids(state: &AppState, ids: Vec<String>) -> Result<Vec<String>, ApiError> {
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(g) = state.store.group_by_id(&id).await? {
            out.push(resource_id(&g.subscription, &g.resource_group, &g.name));
        }
    }
    Ok(out)
}

/// The answer naming the groups taken off as a client names them (their ARM ids).
async fn evacuation(
    state: &AppState,
    node: Node,
    unassigned: Unassigned,
) -> Result<NodeEvacuation, ApiError> {
    Ok(NodeEvacuation {
        node,
        moved: arm_ids(state, unassigned.moved).await?,
        settled: arm_ids(state, unassigned.settled).await?,
    })
}

/// `POST /admin/v1/nodes/{node}/drain`: cordons the node and takes every group off it; the node
/// stops them with their normal grace, the scheduler places the moved ones elsewhere.
pub(super) async fn drain_node(
    State(state): State<AppState>,
    _operator: Operator,
    Path(key): Path<String>,
) -> Result<Response, ApiError> {
    let node = find_node(&state, &key).await?;
    let Some(unassigned) = state.store.drain_node(&node.id, now_ms()).await? else {
        return Err(node_not_found(&key));
    };
    tracing::info!(node = %node.name, moved = unassigned.moved.len(), settled = unassigned.settled.len(), "node drained");
    state.gateway.evacuated(&node.id, &unassigned);
    let view = current_view(&state, &node.id).await?;
    Ok(Json(evacuation(&state, view, unassigned).await?).into_response())
}

/// `DELETE /admin/v1/nodes/{node}[?force=true]`: deletes a node with no group on it (409
/// `NodeNotEmpty` otherwise); `force=true` first treats it as lost (its groups taken off it and
/// the ones their restart policy runs again placed elsewhere). Answers 200 with the node as it was
/// last and the groups taken off it (none without force). Its stream is closed and its next Sync
/// refused.
pub(super) async fn delete_node(
    State(state): State<AppState>,
    _operator: Operator,
    Path(key): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let force = match query.get("force").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => {
            return Err(ApiError::bad_request(
                code::INVALID_VALUE,
                "force",
                "force is true or false.",
            ));
        }
    };
    let node = find_node(&state, &key).await?;
    let unassigned = if force {
        let now = now_ms();
        let Some(unassigned) = state.store.lose_node(&node.id, now, now, true).await? else {
            return Err(node_not_found(&key));
        };
        state.gateway.evacuated(&node.id, &unassigned);
        unassigned
    } else {
        Unassigned::default()
    };
    let view = current_view(&state, &node.id).await?;
    match state.store.delete_node(&node.id).await? {
        Ok(true) => {}
        Ok(false) => return Err(node_not_found(&key)),
        Err(NodeDeleteRefusal::NotEmpty { groups }) => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "NodeNotEmpty",
                format!(
                    "The node '{}' has {groups} container group(s) on it; drain it first or pass \
                     force=true.",
                    node.name
                ),
            ));
        }
    }
    tracing::warn!(node = %node.name, id = %node.id, force, "node deleted");
    state.gateway.deleted(&node.id);
    Ok(Json(evacuation(&state, view, unassigned).await?).into_response())
}

/// `POST /admin/v1/dns-certificates`: a client certificate for a standalone `berth-dns`, which it
/// presents to `DnsService.Watch` on the node port. The key is made here and returned once; nothing
/// of it is stored.
pub(super) async fn create_dns_certificate(
    State(state): State<AppState>,
    _operator: Operator,
) -> Result<Response, ApiError> {
    let id = random_lower(8);
    let identity = state.ca.issue_dns_client(&id).map_err(|error| {
        tracing::error!(%error, "cannot issue a DNS server certificate");
        ApiError::internal()
    })?;
    let body = DnsCertificate {
        ca: state.ca.cert_pem().to_owned(),
        certificate: identity.cert_pem,
        id,
        key: identity.key_pem,
    };
    Ok((StatusCode::CREATED, Json(body)).into_response())
}
