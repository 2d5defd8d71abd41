//! `GET /metadata/endpoints`: ARM's cloud metadata, unauthenticated, pointing at this apiserver and
//! its sign-in authority. `az cloud register --endpoint-resource-manager` reads the 2022-09-01
//! shape, as does Terraform's `metadata_host`; Azure Stack's clients read the older 2015-01-01 one.

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use serde_json::{Value, json};

use super::groups::base_url;
use crate::AppState;
use crate::signin;

/// The cloud's name in the metadata (`az cloud register -n` names it locally anyway).
const CLOUD_NAME: &str = "Berth";

/// api-versions answered in Azure Stack's legacy shape; every other one gets the current shape.
const LEGACY_VERSIONS: &[&str] = &["2015-01-01", "1.0"];

pub(super) async fn endpoints(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Json<Value> {
    let legacy = query.as_deref().is_some_and(|q| {
        form_urlencoded::parse(q.as_bytes()).any(|(name, value)| {
            name.eq_ignore_ascii_case("api-version") && LEGACY_VERSIONS.contains(&value.as_ref())
        })
    });
    Json(document(&base_url(&state, &headers), legacy))
}

/// The metadata for the apiserver at `base` (no trailing slash).
pub(super) fn document(base: &str, legacy: bool) -> Value {
    let login = signin::authority(base);
    let audiences = signin::audiences(base);
    if legacy {
        return json!({
            "galleryEndpoint": format!("{base}/"),
            "graphEndpoint": "",
            "portalEndpoint": format!("{base}/"),
            "authentication": { "loginEndpoint": login, "audiences": audiences },
        });
    }
    json!({
        "name": CLOUD_NAME,
        "resourceManager": format!("{base}/"),
        "portal": base,
        "authentication": {
            "loginEndpoint": login,
            "audiences": audiences,
            "tenant": signin::ADFS_TENANT,
            "identityProvider": "ADFS",
        },
        // Berth serves container instances only: no storage, Key Vault, SQL or registry suffixes.
        "suffixes": {},
    })
}

#[cfg(test)]
mod tests {
    use super::document;

    #[test]
    fn the_current_shape_is_what_az_and_terraform_read() {
        let doc = document("https://berth.example:8443", false);
        assert_eq!(doc["name"], "Berth");
        assert_eq!(doc["resourceManager"], "https://berth.example:8443/");
        let auth = &doc["authentication"];
        // az: active_directory = loginEndpoint; an authority ending in /adfs is ADFS to it.
        assert_eq!(auth["loginEndpoint"], "https://berth.example:8443/adfs");
        // az: active_directory_resource_id = management = audiences[0].
        assert_eq!(auth["audiences"][0], "https://berth.example:8443/");
        assert_eq!(auth["tenant"], "adfs");
        assert_eq!(auth["identityProvider"], "ADFS");
        assert!(doc["suffixes"].is_object() && doc["portal"].is_string());
    }

    #[test]
    fn the_legacy_shape_is_azure_stacks() {
        let doc = document("https://h", true);
        assert_eq!(doc["authentication"]["loginEndpoint"], "https://h/adfs");
        assert_eq!(doc["authentication"]["audiences"][0], "https://h/");
        assert_eq!(doc["portalEndpoint"], "https://h/");
        assert!(doc["galleryEndpoint"].is_string() && doc.get("name").is_none());
    }
}
