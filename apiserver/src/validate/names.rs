//! Names in the request's path and envelope: subscription, resource group, container group, location
//! and tags.

use std::collections::BTreeMap;

use super::codes::{code, invalid, too_many};
use crate::error::ApiError;

const MAX_TAGS: usize = 50;

fn hex_run(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Whether `id` is a GUID (`8-4-4-4-12` hex digits), as ARM requires of subscription ids.
pub(super) fn is_guid(id: &str) -> bool {
    let parts: Vec<&str> = id.split('-').collect();
    parts.len() == 5
        && parts
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(part, len)| hex_run(part, len))
}

/// A subscription id: a GUID (ARM's `InvalidSubscriptionId` otherwise).
pub fn subscription(id: &str) -> Result<(), ApiError> {
    if is_guid(id) {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            code::INVALID_SUBSCRIPTION,
            "subscriptionId",
            format!("The provided subscription identifier '{id}' is malformed or invalid."),
        ))
    }
}

/// A resource group name: 1-90 letters, digits, `_`, `-`, `.`, `(`, `)`, not ending in `.`.
pub fn resource_group(name: &str) -> Result<(), ApiError> {
    let valid = (1..=90).contains(&name.chars().count())
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | '(' | ')'))
        && !name.ends_with('.');
    if valid {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            code::INVALID_RESOURCE_GROUP,
            "resourceGroupName",
            format!(
                "Resource group '{name}' is invalid: 1-90 letters, digits, underscores, hyphens, periods and \
                 parentheses, not ending in a period."
            ),
        ))
    }
}

/// A container group name: ACI's rule (that of a container name, without `--`).
pub fn group_name(name: &str) -> Result<(), ApiError> {
    if berth_proto::spec::names::container(name).is_ok() && !name.contains("--") {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            code::INVALID_NAME,
            "containerGroupName",
            format!(
                "The container group name '{name}' is invalid. It can contain only lowercase letters, numbers \
                 and hyphens, must start and end with a letter or number, may not contain '--', and must be \
                 1 to 63 characters long."
            ),
        ))
    }
}

/// ARM compares locations without case or spaces ("West US" == "westus").
pub fn normalize_location(location: &str) -> String {
    location
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_lowercase()
}

/// Tags: at most 50; names of 1-512 characters without `<>%&\?/`, values of at most 256.
pub fn tags(tags: &BTreeMap<String, String>, target: &str) -> Result<(), ApiError> {
    if tags.len() > MAX_TAGS {
        return Err(too_many(target, "tags", MAX_TAGS));
    }
    for (key, value) in tags {
        if key.is_empty() || key.len() > 512 || key.contains(['<', '>', '%', '&', '\\', '?', '/']) {
            return Err(invalid(
                format!("{target}.{key}"),
                "a tag name has 1-512 characters and none of <>%&\\?/",
            ));
        }
        if value.len() > 256 {
            return Err(invalid(
                format!("{target}.{key}"),
                "a tag value has at most 256 characters",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn subscriptions_are_guids() {
        assert!(subscription("00000000-0000-0000-0000-00000000000a").is_ok());
        assert!(subscription("ABCDEF01-2345-6789-abcd-ef0123456789").is_ok());
        for bad in [
            "",
            "sub",
            "00000000-0000-0000-0000-00000000000",
            "00000000-0000-0000-0000-00000000000g",
            "00000000000000000000000000000000",
            "0000-00000000-0000-0000-000000000000",
            "00000000-0000-0000-0000-00000000000a-",
        ] {
            let err = subscription(bad).unwrap_err();
            assert_eq!(err.code, code::INVALID_SUBSCRIPTION, "{bad}");
            assert_eq!(err.target.as_deref(), Some("subscriptionId"));
        }
    }

    #[test]
    fn resource_groups_and_group_names() {
        for ok in ["rg", "My_RG-1.(x)", "Ünïcode"] {
            assert!(resource_group(ok).is_ok(), "{ok}");
        }
        for bad in ["", "rg.", "a/b", "a b", &"x".repeat(91)] {
            assert!(resource_group(bad).is_err(), "{bad}");
        }
        assert!(group_name("web-1").is_ok());
        for bad in ["", "Web", "a--b", "-a", "a_b", &"a".repeat(64)] {
            assert!(group_name(bad).is_err(), "{bad}");
        }
        assert_eq!(normalize_location("West US 2"), "westus2");
    }

    #[test]
    fn tags_have_limits() {
        let ok: BTreeMap<_, _> = [("env".to_string(), "prod".to_string())].into();
        assert!(tags(&ok, "tags").is_ok());
        let bad: BTreeMap<_, _> = [("a/b".to_string(), String::new())].into();
        assert_eq!(
            tags(&bad, "tags").unwrap_err().target.as_deref(),
            Some("tags.a/b")
        );
        let many: BTreeMap<_, _> = (0..51).map(|i| (format!("t{i}"), String::new())).collect();
        assert_eq!(tags(&many, "tags").unwrap_err().code, code::TOO_MANY);
    }

    proptest! {
        #[test]
        fn guids_are_exactly_the_8_4_4_4_12_shape(id in "[0-9a-fA-F-]{0,40}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}") {
            let shape = id.len() == 36
                && id.char_indices().all(|(i, c)| if [8, 13, 18, 23].contains(&i) { c == '-' } else { c.is_ascii_hexdigit() });
            prop_assert_eq!(is_guid(&id), shape);
        }
    }
}
