//! `GET /admin/v1/groups/{id}`: a container group by its Berth id or by its ARM id (percent-encoded
//! as one segment; the ids a drain or a forced delete names, `admin::NodeEvacuation`), for
//! operators: an operator's token need not see the group's subscription, so the ARM routes would not
//! show it. `berth admin node drain` follows the moved groups here until each runs elsewhere.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use berth_proto::admin::{GroupPlacement, GroupPlacementEvent};

use crate::AppState;
use crate::auth::Operator;
use crate::error::ApiError;
use crate::render::{group_state, resource_id};
use crate::store::{GroupKey, GroupRecord};

pub(super) async fn get_group(
    State(state): State<AppState>,
    _operator: Operator,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let found = match arm_key(&id) {
        Some(key) => state.store.group(&key).await?,
        None => state.store.group_by_id(&id).await?,
    };
    let Some(group) = found else {
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

/// The key of an ARM id, `/subscriptions/{sub}/resourceGroups/{rg}/providers/
/// Microsoft.ContainerInstance/containerGroups/{name}` (segment names in any case); `None` for
/// anything else (a Berth id).
fn arm_key(id: &str) -> Option<GroupKey> {
    let parts: Vec<&str> = id.strip_prefix('/')?.split('/').collect();
    match parts.as_slice() {
        [
            subscriptions,
            sub,
            groups,
            rg,
            providers,
            namespace,
            kind,
            name,
        ] if subscriptions.eq_ignore_ascii_case("subscriptions")
            && groups.eq_ignore_ascii_case("resourceGroups")
            && providers.eq_ignore_ascii_case("providers")
            && namespace.eq_ignore_ascii_case("Microsoft.ContainerInstance")
            && kind.eq_ignore_ascii_case("containerGroups") =>
        {
            Some(GroupKey::new(sub, rg, name))
        }
        _ => None,
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_arm_id_names_its_group_and_anything_else_is_a_berth_id() {
        assert_eq!(
            arm_key(
                "/subscriptions/S/resourceGroups/My-RG/providers/Microsoft.ContainerInstance/containerGroups/web"
            ),
            Some(GroupKey::new("S", "My-RG", "web"))
        );
        assert_eq!(
            arm_key(
                "/subscriptions/S/resourcegroups/rg/providers/microsoft.containerinstance/containergroups/web"
            ),
            Some(GroupKey::new("S", "rg", "web"))
        );
        for other in [
            "7f0c6a9e-0000-4000-8000-000000000001",
            "/subscriptions/S/resourceGroups/rg",
            "/subscriptions/S/resourceGroups/rg/providers/Microsoft.Other/things/web",
            "/subscriptions/S/resourceGroups/rg/providers/Microsoft.ContainerInstance/containerGroups/web/x",
        ] {
            assert_eq!(arm_key(other), None, "{other}");
        }
    }
}
