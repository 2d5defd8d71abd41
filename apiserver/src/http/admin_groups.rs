//! `GET /admin/v1/groups/{id}`: a container group by its Berth id, for operators. The ids are those a
//! drain or a lost node names (`admin::NodeEvacuation`); an operator's token need not see the
//! group's subscription, so the ARM routes would not show it. `berth admin node drain` follows the
//! moved groups here until each runs elsewhere.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use berth_proto::admin::{GroupPlacement, GroupPlacementEvent};

use crate::AppState;
use crate::auth::Operator;
use crate::error::ApiError;
use crate::render::{group_state, resource_id};
use crate::store::GroupRecord;

pub(super) async fn get_group(
    State(state): State<AppState>,
    _operator: Operator,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let Some(group) = state.store.group_by_id(&id).await? else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "ResourceNotFound",
            format!("No container group has the id '{id}'."),
        )
        .with_target(id));
    };
    let node = match group.node_id.as_deref() {
        Some(node_id) => Some(
            state
                .store
                .node(node_id)
                .await?
                .map_or_else(|| node_id.to_owned(), |n| n.name),
        ),
        None => None,
    };
    Ok(Json(placement(&group, node)).into_response())
}

/// The answer for `group`, placed on the node named `node`.
fn placement(group: &GroupRecord, node: Option<String>) -> GroupPlacement {
    let last_event = group
        .events
        .iter()
        .max_by_key(|e| e.last_ms)
        .map(|e| GroupPlacementEvent {
            message: e.message.clone(),
            name: e.name.clone(),
        });
    GroupPlacement {
        id: group.id.clone(),
        last_event,
        node,
        provisioning_state: group.provisioning_state.as_str().to_owned(),
        resource_id: resource_id(&group.subscription, &group.resource_group, &group.name),
        state: group_state(group).to_owned(),
    }
}
