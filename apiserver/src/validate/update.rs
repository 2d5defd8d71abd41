//! ACI's rule for PUT on an existing group: some changes need delete and re-create.

use axum::http::StatusCode;

use crate::error::ApiError;
use crate::model::*;

/// Refuses an update that changes the OS, restart policy, sizes, GPU or network of `existing`.
pub fn update(existing: &GroupSpec, new: &GroupSpec, group: &str) -> Result<(), ApiError> {
    let network = |s: &GroupSpec| {
        s.ip_address.as_ref().map(|ip| {
            (
                ip.kind.clone(),
                ip.ports.clone(),
                ip.dns_name_label.clone(),
                ip.label_scope.clone(),
            )
        })
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
