//! [`GroupError`] as ACI answers it: one place for the codes, messages and targets.

use axum::http::StatusCode;

use crate::error::ApiError;
use crate::groups::GroupError;
use crate::model::{cpu_cores, memory_gb};

impl From<GroupError> for ApiError {
    fn from(err: GroupError) -> Self {
        match err {
            GroupError::NotFound {
                resource_group,
                name,
            } => ApiError::group_not_found(&resource_group, &name),
            GroupError::DnsLabelTaken { label, name } => ApiError::new(
                StatusCode::CONFLICT,
                "DnsNameLabelNotAvailable",
                format!(
                    "The DNS name label '{label}' in container group '{name}' not available. Try using a different label."
                ),
            )
            .with_target("properties.ipAddress.dnsNameLabel"),
            GroupError::QuotaExceeded {
                region,
                quota,
                used_groups,
                used_cpu_millis,
                requested_cpu_millis,
            } => ApiError::new(
                StatusCode::CONFLICT,
                "QuotaExceeded",
                format!(
                    "Resource type 'Microsoft.ContainerInstance/containerGroups' quota exceeded in region '{region}'. \
                     Limits: {} container groups, {} cores; usage: {used_groups} groups, {} cores; requested: 1 group, \
                     {} cores.",
                    quota.groups,
                    cpu_cores(quota.cpu_millis),
                    cpu_cores(used_cpu_millis),
                    cpu_cores(requested_cpu_millis)
                ),
            ),
            GroupError::NoCapacity {
                region,
                os_type,
                requests: r,
            } => ApiError::new(
                StatusCode::CONFLICT,
                "ServiceUnavailable",
                format!(
                    "The requested resource is not available in the location '{region}' at this moment. Please retry with a \
                     different resource request or in another location. Resource requested: '{}' CPU '{}' GB memory '{}' OS{}",
                    cpu_cores(r.cpu_millis),
                    memory_gb(r.memory_mib),
                    os_type.as_str(),
                    if r.gpu > 0 {
                        format!(" '{}' GPU", r.gpu)
                    } else {
                        String::new()
                    }
                ),
            ),
            GroupError::Stopped {
                resource_group,
                name,
            } => ApiError::new(
                StatusCode::CONFLICT,
                "ContainerGroupStopped",
                format!("Container Group '{name}' in resource group '{resource_group}' is stopped."),
            ),
            GroupError::Busy { name } => ApiError::new(
                StatusCode::CONFLICT,
                "Conflict",
                format!("Container group '{name}' is being changed by another request; retry."),
            ),
            GroupError::Refused(api) => api,
            GroupError::Store(err) => err.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Quota;
    use crate::model::{OsType, Size};
    use crate::store::StoreError;

    fn shape(err: GroupError) -> (StatusCode, String, String, Option<String>) {
        let api = ApiError::from(err);
        (api.status, api.code.to_owned(), api.message, api.target)
    }

    #[test]
    fn a_taken_label_names_the_label_and_targets_the_field() {
        let (status, code, message, target) = shape(GroupError::DnsLabelTaken {
            label: "web".into(),
            name: "g1".into(),
        });
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(code, "DnsNameLabelNotAvailable");
        assert_eq!(
            message,
            "The DNS name label 'web' in container group 'g1' not available. Try using a different label."
        );
        assert_eq!(target.as_deref(), Some("properties.ipAddress.dnsNameLabel"));
    }

    #[test]
    fn quota_names_limits_usage_and_request() {
        let (status, code, message, _) = shape(GroupError::QuotaExceeded {
            region: "local".into(),
            quota: Quota {
                groups: 10,
                cpu_millis: 4000,
            },
            used_groups: 3,
            used_cpu_millis: 3500,
            requested_cpu_millis: 1000,
        });
        assert_eq!(
            (status, code.as_str()),
            (StatusCode::CONFLICT, "QuotaExceeded")
        );
        assert_eq!(
            message,
            "Resource type 'Microsoft.ContainerInstance/containerGroups' quota exceeded in region 'local'. Limits: \
             10 container groups, 4 cores; usage: 3 groups, 3.5 cores; requested: 1 group, 1 cores."
        );
    }

    #[test]
    fn no_capacity_is_acis_service_unavailable_with_the_request() {
        let requests = |gpu| Size {
            cpu_millis: 1500,
            memory_mib: 2048,
            gpu,
        };
        let (status, code, message, _) = shape(GroupError::NoCapacity {
            region: "local".into(),
            os_type: OsType::Linux,
            requests: requests(0),
        });
        assert_eq!(
            (status, code.as_str()),
            (StatusCode::CONFLICT, "ServiceUnavailable")
        );
        assert!(
            message.starts_with(
                "The requested resource is not available in the location 'local' at this moment."
            ),
            "{message}"
        );
        assert!(
            message.ends_with("Resource requested: '1.5' CPU '2' GB memory 'Linux' OS"),
            "{message}"
        );
        let (_, _, with_gpu, _) = shape(GroupError::NoCapacity {
            region: "local".into(),
            os_type: OsType::Linux,
            requests: requests(2),
        });
        assert!(with_gpu.ends_with("'Linux' OS '2' GPU"), "{with_gpu}");
    }

    #[test]
    fn stopped_busy_and_not_found() {
        let (status, code, message, _) = shape(GroupError::Stopped {
            resource_group: "RG1".into(),
            name: "g1".into(),
        });
        assert_eq!(
            (status, code.as_str()),
            (StatusCode::CONFLICT, "ContainerGroupStopped")
        );
        assert_eq!(
            message,
            "Container Group 'g1' in resource group 'RG1' is stopped."
        );
        let (status, code, message, _) = shape(GroupError::Busy { name: "g1".into() });
        assert_eq!((status, code.as_str()), (StatusCode::CONFLICT, "Conflict"));
        assert!(message.ends_with("retry."), "{message}");
        let (status, code, _, _) = shape(GroupError::NotFound {
            resource_group: "rg".into(),
            name: "g".into(),
        });
        assert_eq!(
            (status, code.as_str()),
            (StatusCode::NOT_FOUND, "ResourceNotFound")
        );
    }

    #[test]
    fn store_failures_do_not_leak() {
        let (status, _, message, _) = shape(GroupError::Store(StoreError::Corrupt(
            "sealed spec: secret detail".into(),
        )));
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!message.contains("secret detail"), "{message}");
    }
}
