//! The ARM error codes validation answers, and the constructors every rule uses to say which field
//! broke which rule.

use berth_proto::spec::{Broken, Refusal};
use serde_json::Value;

use crate::error::ApiError;

/// Codes answered by validation.
pub mod code {
    pub const INVALID_CONTENT: &str = "InvalidRequestContent";
    pub const MISSING: &str = "MissingRequiredProperty";
    pub const INVALID_VALUE: &str = "InvalidPropertyValue";
    pub const UNSUPPORTED: &str = "UnsupportedProperty";
    pub const INVALID_NAME: &str = "InvalidResourceName";
    pub const INVALID_RESOURCE_GROUP: &str = "InvalidResourceGroupName";
    pub const INVALID_SUBSCRIPTION: &str = "InvalidSubscriptionId";
    pub const INVALID_LOCATION: &str = "LocationNotAvailableForResourceType";
    pub const INVALID_DNS_LABEL: &str = "InvalidDnsNameLabel";
    pub const DUPLICATE_NAME: &str = "DuplicateName";
    pub const TOO_MANY: &str = "LimitExceeded";
    pub const LIMIT_OVER_TOTAL: &str = "ContainerLimitGreaterThanContainerGroupTotalRequest";
    pub const GROUP_TOO_LARGE: &str = "ContainerGroupResourcesExceedLimit";
    pub const VOLUME_NOT_FOUND: &str = "VolumeNotFound";
    pub const PORT_NOT_EXPOSED: &str = "PortNotExposedByContainer";
    pub const DUPLICATE_PORT: &str = "DuplicatePort";
    pub const WINDOWS_MULTI: &str = "WindowsMultiContainerNotSupported";
    pub const PRIVILEGED: &str = "PrivilegedContainerNotAllowed";
}

/// 400 `MissingRequiredProperty` for `target`.
pub(super) fn missing(target: impl Into<String>) -> ApiError {
    let target = target.into();
    ApiError::bad_request(
        code::MISSING,
        target.clone(),
        format!("The property '{target}' is required."),
    )
}

/// 400 `InvalidPropertyValue` for `target`, saying why.
pub(super) fn invalid(target: impl Into<String>, why: impl std::fmt::Display) -> ApiError {
    let target = target.into();
    ApiError::bad_request(
        code::INVALID_VALUE,
        target.clone(),
        format!("The value of '{target}' is invalid: {why}."),
    )
}

/// 400 `InvalidResourceName` for `target`.
pub(super) fn invalid_name(target: impl Into<String>, why: impl std::fmt::Display) -> ApiError {
    let target = target.into();
    ApiError::bad_request(
        code::INVALID_NAME,
        target.clone(),
        format!("The value of '{target}' is invalid: {why}."),
    )
}

/// 400 `UnsupportedProperty`: a field Berth cannot honour yet.
pub(super) fn unsupported(target: impl Into<String>) -> ApiError {
    let target = target.into();
    ApiError::bad_request(
        code::UNSUPPORTED,
        target.clone(),
        format!(
            "The property '{target}' is not supported by Berth yet; remove it from the request."
        ),
    )
}

/// 400 `LimitExceeded`: more than `limit` of `what`.
pub(super) fn too_many(target: impl Into<String>, what: &str, limit: usize) -> ApiError {
    ApiError::bad_request(
        code::TOO_MANY,
        target,
        format!("A container group may have at most {limit} {what}."),
    )
}

/// 400 `DuplicateName`: a name used twice where names are unique.
pub(super) fn duplicate(target: &str, what: &str, name: &str) -> ApiError {
    ApiError::bad_request(
        code::DUPLICATE_NAME,
        target,
        format!("The {what} name '{name}' is used more than once."),
    )
}

/// Whether an optional JSON field was sent with a value (`null` counts as absent).
pub(super) fn present(value: &Option<Value>) -> bool {
    !matches!(value, None | Some(Value::Null))
}

/// A shared spec rule's refusal, in ARM's shape.
pub(super) fn refusal(refusal: Refusal) -> ApiError {
    let code = match &refusal.broken {
        Broken::Name(_) => code::INVALID_NAME,
        Broken::DuplicateName(_) => code::DUPLICATE_NAME,
        Broken::UnknownVolume(_) => code::VOLUME_NOT_FOUND,
        Broken::Privileged => code::PRIVILEGED,
        Broken::NoContainers => code::MISSING,
        _ => code::INVALID_VALUE,
    };
    let target = refusal.target;
    ApiError::bad_request(
        code,
        target.clone(),
        format!("The value of '{target}' is invalid: {}.", refusal.broken),
    )
}

#[cfg(test)]
mod tests {
    use berth_proto::spec::{git::GitError, names::NameError};
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn refusals_keep_their_target_and_pick_arms_code() {
        let err = refusal(Refusal {
            target: "properties.volumes[0].name".into(),
            broken: Broken::Name(NameError::Volume("x".into())),
        });
        assert_eq!(err.code, code::INVALID_NAME);
        let err = refusal(Refusal {
            target: "properties.containers[0].properties.volumeMounts[0].name".into(),
            broken: Broken::UnknownVolume("x".into()),
        });
        assert_eq!(err.code, code::VOLUME_NOT_FOUND);
    }

    proptest! {
        /// Whatever the field and the rule, a refusal is a 400 naming exactly that field.
        #[test]
        fn every_refusal_is_a_400_naming_its_field(target in "[a-zA-Z.\\[\\]0-9]{1,40}", which in 0usize..4) {
            let broken = match which {
                0 => Broken::Git(GitError::Repository),
                1 => Broken::NoSource,
                2 => Broken::DuplicateName("a".into()),
                _ => Broken::Privileged,
            };
            let err = refusal(Refusal { target: target.clone(), broken });
            prop_assert_eq!(err.status.as_u16(), 400);
            prop_assert_eq!(err.target.as_deref(), Some(target.as_str()));
            prop_assert!(err.message.contains(&target));
        }
    }
}
