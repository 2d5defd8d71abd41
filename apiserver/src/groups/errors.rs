//! Why a group operation was refused or failed.

use crate::Quota;
use crate::error::ApiError;
use crate::model::{OsType, Size};
use crate::store::StoreError;

/// Errors of the group service. The HTTP layer turns each into ACI's code, message and target.
#[derive(Debug, thiserror::Error)]
pub enum GroupError {
    /// No group of that name (or the caller may not see it).
    #[error("container group '{name}' in resource group '{resource_group}' not found")]
    NotFound {
        /// As the caller wrote it.
        resource_group: String,
        name: String,
    },
    /// Another group holds the FQDN this group's DNS name label gives.
    #[error("the DNS name label '{label}' of container group '{name}' is taken")]
    DnsLabelTaken { label: String, name: String },
    /// Creating the group would pass the subscription's quota.
    #[error("quota exceeded in region '{region}'")]
    QuotaExceeded {
        region: String,
        quota: Quota,
        /// The subscription's usage before the request.
        used_groups: i64,
        used_cpu_millis: u64,
        requested_cpu_millis: u64,
    },
    /// No node of the cluster, however empty, could hold the group.
    #[error("no {} node could ever hold the group", os_type.as_str())]
    NoCapacity {
        region: String,
        os_type: OsType,
        requests: Size,
    },
    /// Restart of a stopped group.
    #[error("container group '{name}' in resource group '{resource_group}' is stopped")]
    Stopped {
        resource_group: String,
        name: String,
    },
    /// The name was taken when the insert ran and gone when it was read back: another request is
    /// changing the group; retrying settles it.
    #[error("container group '{name}' is being changed by another request")]
    Busy { name: String },
    /// The change is not one a group takes in place (OS, sizes, restart policy, network).
    #[error("the change cannot be made in place")]
    Refused(#[source] ApiError),
    /// The store failed.
    #[error("store error")]
    Store(#[from] StoreError),
}
