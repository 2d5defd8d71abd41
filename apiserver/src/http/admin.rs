//! `/admin/v1`: operator-only administration ACI does not have (join tokens, nodes, DNS server
//! certificates; API tokens are in `tokens`).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::ArmJson;
use crate::auth::{Operator, random_lower};
use crate::error::ApiError;
use crate::model::{cpu_cores, memory_gb};
use crate::render::timestamp;
use crate::validate::code;
use crate::{AppState, now_ms};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct JoinTokenRequest {
    uses: Option<i64>,
    ttl_seconds: Option<i64>,
}

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
        Json(json!({"token": token, "expiresAt": timestamp(expires), "uses": uses})),
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

pub(super) async fn list_nodes(
    State(state): State<AppState>,
    _operator: Operator,
) -> Result<Response, ApiError> {
    let nodes = state.store.nodes().await?;
    let mut counts = std::collections::HashMap::<String, i64>::new();
    for id in state.store.group_counts_by_node().await? {
        *counts.entry(id).or_default() += 1;
    }
    let value: Vec<_> = nodes
        .iter()
        .map(|n| {
            json!({
                "id": n.id,
                "name": n.name,
                "osType": n.os_type.as_str(),
                "status": n.status.as_str(),
                "capacity": {"cpu": cpu_cores(n.capacity.cpu_millis), "memoryInGB": memory_gb(n.capacity.memory_mib), "gpu": n.capacity.gpu},
                "allocated": {"cpu": cpu_cores(n.used.cpu_millis), "memoryInGB": memory_gb(n.used.memory_mib), "gpu": n.used.gpu},
                "groups": counts.get(&n.id).copied().unwrap_or(0),
                "labels": n.labels,
                "lastHeartbeat": timestamp(last_heartbeat(&state, n)),
                "agentVersion": n.agent_version,
            })
        })
        .collect();
    Ok(Json(json!({ "value": value })).into_response())
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
    let body = json!({
        "id": id,
        "certificate": identity.cert_pem,
        "key": identity.key_pem,
        "ca": state.ca.cert_pem(),
    });
    Ok((StatusCode::CREATED, Json(body)).into_response())
}
