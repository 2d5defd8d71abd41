//! ARM's calls around the containers that are not Microsoft.ContainerInstance's: the tenant, a
//! subscription, and the resource providers a subscription has (Microsoft.ContainerInstance alone).
//!
//! These routes are Microsoft.Resources', whose api-versions clients pick from their own SDK
//! (`az` sends 2022-12-01 for tenants and subscriptions, 2024-11-01 for resource groups): any
//! api-version of ARM's form is accepted ([`resources_api_version`]).

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use berth_proto::arm;
use serde_json::{Value, json};

use crate::AppState;
use crate::auth::Principal;
use crate::error::ApiError;

type Q = Query<HashMap<String, String>>;

const NAMESPACE: &str = "Microsoft.ContainerInstance";

/// Whether `version` has ARM's form: `yyyy-mm-dd`, optionally followed by `-` and a lower-case word
/// (`-preview`, `-privatepreview`, `-beta`).
pub(super) fn is_api_version(version: &str) -> bool {
    let (date, suffix) = match version.get(10..) {
        Some("") => (version, None),
        Some(rest) => match rest.strip_prefix('-') {
            Some(word) => (&version[..10], Some(word)),
            None => return false,
        },
        None => return false,
    };
    let digits = |range: std::ops::Range<usize>| {
        date.get(range)
            .filter(|d| d.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|d| d.parse::<u32>().ok())
    };
    let well_formed_date = date.as_bytes().get(4) == Some(&b'-')
        && date.as_bytes().get(7) == Some(&b'-')
        && digits(0..4).is_some()
        && digits(5..7).is_some_and(|m| (1..=12).contains(&m))
        && digits(8..10).is_some_and(|d| (1..=31).contains(&d));
    well_formed_date
        && suffix.is_none_or(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase()))
}

/// The api-version of a Microsoft.Resources route: required, and of ARM's form.
pub(super) fn resources_api_version(query: &HashMap<String, String>) -> Result<&str, ApiError> {
    let version = query.get("api-version").ok_or_else(|| {
        ApiError::bad_request(
            "MissingApiVersionParameter",
            "api-version",
            "The api-version query parameter (?api-version=) is required for all requests.",
        )
    })?;
    if is_api_version(version) {
        Ok(version)
    } else {
        Err(ApiError::bad_request(
            "InvalidApiVersionParameter",
            "api-version",
            format!(
                "The api-version '{version}' is invalid. The supported versions are of the form 'yyyy-mm-dd', \
                 optionally with a suffix such as '-preview'."
            ),
        ))
    }
}

/// ARM's subscription, as `GET /subscriptions` and `GET /subscriptions/{s}` answer it.
pub(super) fn subscription_body(tenant: &str, subscription: &str) -> Value {
    json!({
        "id": format!("/subscriptions/{subscription}"),
        "subscriptionId": subscription,
        "tenantId": tenant,
        "homeTenantId": tenant,
        "managedByTenants": [],
        "displayName": subscription,
        "state": "Enabled",
        "authorizationSource": "RoleBased",
        "subscriptionPolicies": {
            "locationPlacementId": "Public_2014-09-01",
            "quotaId": "PayAsYouGo_2014-09-01",
            "spendingLimit": "Off"
        }
    })
}

/// `GET /tenants`: the one tenant of this installation.
pub(super) async fn tenants(
    State(state): State<AppState>,
    _principal: Principal,
    Query(query): Q,
) -> Result<Response, ApiError> {
    resources_api_version(&query)?;
    let tenant = crate::auth::tenant_id(&state);
    Ok(Json(json!({
        "value": [{
            "id": format!("/tenants/{tenant}"),
            "tenantId": tenant,
            "tenantCategory": "Home",
            "displayName": "Berth",
            "domains": []
        }]
    }))
    .into_response())
}

/// `GET /subscriptions/{s}`.
pub(super) async fn get(
    State(state): State<AppState>,
    principal: Principal,
    Path(sub): Path<String>,
    Query(query): Q,
) -> Result<Response, ApiError> {
    principal.admit(&sub)?;
    resources_api_version(&query)?;
    Ok(Json(subscription_body(&crate::auth::tenant_id(&state), &sub)).into_response())
}

/// Microsoft.ContainerInstance as ARM describes a registered provider: its resource types, where
/// they are served and with which api-versions (newest first, as ARM lists them).
fn provider_body(state: &AppState, sub: &str) -> Value {
    let versions: Vec<&str> = arm::API_VERSIONS.iter().rev().copied().collect();
    let region = &state.config.region;
    let resource_type = |name: &str, locations: Vec<&str>| {
        json!({
            "resourceType": name,
            "locations": locations,
            "apiVersions": versions,
            "capabilities": "None"
        })
    };
    json!({
        "id": format!("/subscriptions/{sub}/providers/{NAMESPACE}"),
        "namespace": NAMESPACE,
        "registrationState": "Registered",
        "registrationPolicy": "RegistrationRequired",
        "resourceTypes": [
            resource_type("containerGroups", vec![region]),
            resource_type("locations", vec![]),
            resource_type("locations/operations", vec![region]),
            resource_type("locations/usages", vec![region]),
            resource_type("locations/capabilities", vec![region]),
            resource_type("locations/cachedImages", vec![region]),
            resource_type("operations", vec![]),
        ]
    })
}

fn namespace_served(namespace: &str) -> Result<(), ApiError> {
    if namespace.eq_ignore_ascii_case(NAMESPACE) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "InvalidResourceNamespace",
            format!(
                "The resource namespace '{namespace}' is invalid. This endpoint serves '{NAMESPACE}' only."
            ),
        )
        .with_target("resourceProviderNamespace"))
    }
}

/// `GET /subscriptions/{s}/providers`.
pub(super) async fn list_providers(
    State(state): State<AppState>,
    principal: Principal,
    Path(sub): Path<String>,
    Query(query): Q,
) -> Result<Response, ApiError> {
    principal.admit(&sub)?;
    resources_api_version(&query)?;
    Ok(Json(json!({ "value": [provider_body(&state, &sub)] })).into_response())
}

/// `GET /subscriptions/{s}/providers/{namespace}`, and `POST …/{namespace}/register`:
/// Microsoft.ContainerInstance is always registered, so registering answers the provider, as ARM's
/// answer to a registration is.
pub(super) async fn provider(
    State(state): State<AppState>,
    principal: Principal,
    Path((sub, namespace)): Path<(String, String)>,
    Query(query): Q,
) -> Result<Response, ApiError> {
    principal.admit(&sub)?;
    resources_api_version(&query)?;
    namespace_served(&namespace)?;
    Ok(Json(provider_body(&state, &sub)).into_response())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::is_api_version;

    #[test]
    fn api_versions_of_arm_form_are_accepted() {
        for good in [
            "2024-11-01",
            "2022-12-01",
            "2024-05-01-preview",
            "2019-06-01-privatepreview",
        ] {
            assert!(is_api_version(good), "{good}");
        }
        for bad in [
            "",
            "2024-11",
            "2024-13-01",
            "2024-11-00",
            "2024-11-32",
            "2024/11/01",
            "2024-11-01-",
            "2024-11-01preview",
            "2024-11-01-Preview",
            "2024-11-01-pre view",
            "+024-11-01",
            "2024-1é-01",
            "latest",
        ] {
            assert!(!is_api_version(bad), "{bad}");
        }
    }

    proptest! {
        /// No string makes the check panic (slicing at byte offsets of arbitrary UTF-8).
        #[test]
        fn any_string_is_judged_without_panicking(s in "\\PC{0,24}") {
            let _ = is_api_version(&s);
        }
    }
}
