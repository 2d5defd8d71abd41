//! `/admin/v1`: operator-only administration ACI does not have (join tokens, nodes, DNS server
//! certificates; API tokens are in `tokens`).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use berth_proto::admin::{DnsCertificate, JoinToken, JoinTokenRequest, Node, NodeResources};
use berth_proto::arm::ListResult;

use super::ArmJson;
use crate::auth::{Operator, random_lower};
use crate::error::ApiError;
use crate::model::{Size, cpu_cores, memory_gb};
use crate::render::timestamp;
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

pub(super) async fn list_nodes(
    State(state): State<AppState>,
    _operator: Operator,
) -> Result<Response, ApiError> {
    let nodes = state.store.nodes().await?;
    let mut counts = std::collections::HashMap::<String, u64>::new();
    for id in state.store.group_counts_by_node().await? {
        *counts.entry(id).or_default() += 1;
    }
    let resources = |size: &Size| NodeResources {
        cpu: cpu_cores(size.cpu_millis),
        gpu: u64::from(size.gpu),
        memory_in_gb: memory_gb(size.memory_mib),
    };
    let value: Vec<Node> = nodes
        .iter()
        .map(|n| Node {
            agent_version: Some(n.agent_version.clone()),
            allocated: resources(&n.used),
            capacity: resources(&n.capacity),
            cordoned: n.cordoned,
            draining: n.draining,
            groups: counts.get(&n.id).copied().unwrap_or(0),
            id: n.id.clone(),
            labels: n.labels.clone(),
            last_heartbeat: Some(timestamp(last_heartbeat(&state, n))),
            name: n.name.clone(),
            os_type: n.os_type.as_str().to_owned(),
            status: n.status.as_str().to_owned(),
        })
        .collect();
    Ok(Json(ListResult {
        value,
        next_link: None,
    })
    .into_response())
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
