//! ACI's rule for PUT on an existing group: some changes need delete and re-create.

use axum::http::StatusCode;

use crate::error::ApiError;
use crate::model::*;

/// Refuses an update that changes the OS, restart policy, sizes, GPU or network (address type,
/// ports) of `existing`. The DNS name label and its reuse scope may change: the group gets the new
/// name (`groups::GroupService` recomputes it, unique as at create).
pub fn update(existing: &GroupSpec, new: &GroupSpec, group: &str) -> Result<(), ApiError> {
    let network = |s: &GroupSpec| {
        s.ip_address
            .as_ref()
            .map(|ip| (ip.kind.clone(), ip.ports.clone()))
    };
    let sizes = |s: &GroupSpec| {
        s.containers
            .iter()
            .map(|c| (c.name.clone(), c.requests, c.gpu_sku.clone()))
            .collect::<Vec<_>>()
    };
    let changed = existing.os_type != new.os_type
        || existing.restart_policy != new.restart_policy
        || existing.requests() != new.requests()
        || network(existing) != network(new)
        || sizes(existing) != sizes(new);
    if changed {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "ContainerGroupUpdateRequiresRecreate",
            format!(
                "The updates on container group '{group}' are invalid. If you are going to update the os type, \
                 restart policy, network profile, CPU, memory or GPU resources for a container group, you must \
                 delete it first and then create a new one."
            ),
        )
        .with_target("properties"));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn spec(cpu_millis: u64, policy: RestartPolicy) -> GroupSpec {
        let json = serde_json::json!({
            "location": "local",
            "properties": {"osType": "Linux", "containers": [{"name": "app", "properties": {
                "image": "busybox", "resources": {"requests": {"cpu": cpu_millis as f64 / 1000.0, "memoryInGB": 1.0}}
            }}]}
        });
        let group: berth_proto::arm::ContainerGroup = serde_json::from_value(json).unwrap();
        let mut spec =
            super::super::container_group(&group, "g", "local", "2023-05-01", &Default::default())
                .unwrap()
                .spec;
        spec.restart_policy = policy;
        spec
    }

    proptest! {
        /// The same sizes and policy update in place; any other CPU or policy needs a re-create.
        #[test]
        fn only_unchanged_sizes_and_policies_update_in_place(a in 1u64..4000, b in 1u64..4000, never in any::<bool>()) {
            let policy = if never { RestartPolicy::Never } else { RestartPolicy::Always };
            let existing = spec(a, RestartPolicy::Always);
            let result = update(&existing, &spec(b, policy), "g");
            prop_assert_eq!(result.is_ok(), a == b && !never);
        }
    }
}
