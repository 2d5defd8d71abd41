//! The records the service writes and answers with, and the PUT-on-existing decision: pure.

use crate::model::GroupSpec;
use crate::render;
use crate::store::{
    Desired, GroupRecord, NewGroup, OperationKind, OperationRecord, OperationStatus,
    ProvisioningState,
};

/// A new operation on `group`, pending since `now`.
pub(crate) fn operation(group: &GroupRecord, kind: OperationKind, now: i64) -> OperationRecord {
    OperationRecord {
        id: uuid::Uuid::new_v4().to_string(),
        subscription: group.subscription.clone(),
        group_id: group.id.clone(),
        resource_id: render::resource_id(&group.subscription, &group.resource_group, &group.name),
        kind,
        generation: group.generation,
        status: OperationStatus::Pending,
        error_code: None,
        error_message: None,
        started_ms: now,
        ended_ms: None,
    }
}

/// What a PUT on an existing group does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PutPlan {
    /// The same spec: nothing restarts; the operation is recorded already ended with the group's
    /// provisioning state if that is final (`Succeeded`, `Failed`), else pending with the group.
    Unchanged { status: OperationStatus },
    /// A new spec, applied in place with a new generation.
    Change,
}

/// Decides a PUT on an existing group whose spec (secrets included) is `current`.
pub(crate) fn put_plan(
    current: &GroupSpec,
    new: &GroupSpec,
    provisioning_state: ProvisioningState,
) -> PutPlan {
    if current != new {
        return PutPlan::Change;
    }
    let status = match provisioning_state {
        ProvisioningState::Succeeded => OperationStatus::Succeeded,
        ProvisioningState::Failed => OperationStatus::Failed,
        _ => OperationStatus::Pending,
    };
    PutPlan::Unchanged { status }
}

/// The group `new` makes, as the store holds it right after the insert (so a create needs no
/// second read). `resource_group` as its creator wrote it.
pub(crate) fn created(new: &NewGroup, resource_group: &str) -> GroupRecord {
    GroupRecord {
        id: new.id.clone(),
        seq: 0,
        subscription: new.key.subscription.clone(),
        resource_group: resource_group.to_owned(),
        name: new.key.name.clone(),
        location: new.location.clone(),
        tags: new.tags.clone(),
        spec: new.spec.redacted(),
        requests: new.spec.requests(),
        fqdn: new.fqdn.clone(),
        generation: 1,
        desired: Desired::Running,
        provisioning_state: ProvisioningState::Pending,
        placement: 0,
        node_id: None,
        status: None,
        events: Vec::new(),
        created_ms: new.now_ms,
        updated_ms: new.now_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(cpu: f64, secret: &str) -> GroupSpec {
        let body = serde_json::json!({
            "location": "local",
            "properties": {"osType": "Linux", "containers": [{"name": "app", "properties": {
                "image": "busybox",
                "environmentVariables": [{"name": "KEY", "secureValue": secret}],
                "resources": {"requests": {"cpu": cpu, "memoryInGB": 1.0}}
            }}]}
        });
        let group: berth_proto::arm::ContainerGroup = serde_json::from_value(body).unwrap();
        crate::validate::container_group(&group, "g", "local", "2023-05-01", &Default::default())
            .unwrap()
            .spec
    }

    #[test]
    fn the_same_spec_changes_nothing_and_reports_the_groups_state() {
        let same = spec(1.0, "s");
        for (state, status) in [
            (ProvisioningState::Succeeded, OperationStatus::Succeeded),
            (ProvisioningState::Failed, OperationStatus::Failed),
            (ProvisioningState::Pending, OperationStatus::Pending),
            (ProvisioningState::Creating, OperationStatus::Pending),
            (ProvisioningState::Unhealthy, OperationStatus::Pending),
        ] {
            assert_eq!(
                put_plan(&same, &same.clone(), state),
                PutPlan::Unchanged { status },
                "{state:?}"
            );
        }
    }

    #[test]
    fn any_difference_even_only_a_secret_is_a_change() {
        assert_eq!(
            put_plan(
                &spec(1.0, "s"),
                &spec(2.0, "s"),
                ProvisioningState::Succeeded
            ),
            PutPlan::Change
        );
        // The stored spec is compared with its secrets: a new secret value must reach the node.
        assert_eq!(
            put_plan(
                &spec(1.0, "old"),
                &spec(1.0, "new"),
                ProvisioningState::Succeeded
            ),
            PutPlan::Change
        );
    }
}
