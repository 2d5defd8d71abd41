//! Berth's sign-in authority: an ADFS-style OAuth 2.0 authority at `<public URL>/adfs`, so that
//! clients built on MSAL (`az login --service-principal`) sign in without Azure AD.
//!
//! A Berth API token is an OAuth confidential client: its id is the `client_id`, the token itself
//! (`berth_<id>_<secret>`) the `client_secret`. The client-credentials grant trades it for a JWT
//! access token ([`jwt`]) valid for an hour (`--access-token-lifetime-secs`), which the API takes
//! as a bearer token with the credential's rights; revoking or expiring the credential refuses its
//! access tokens from the next request on (within [`crate::auth::TRUST_MS`] on other replicas).
//!
//! - [`jwt`]: issuing and verifying the access tokens, and the sign-in key in the data dir.
//! - [`oauth`]: the token request and OAuth's error shape.
//! - this module: the discovery document and which tenants and resources the authority serves.

pub mod jwt;
pub mod oauth;

pub use jwt::{AccessTokens, Claims, Grant, KeyError, Rejection};

use serde_json::{Value, json};

/// The tenant MSAL uses for every ADFS authority.
pub const ADFS_TENANT: &str = "adfs";

/// A version-8 (custom) UUID from SHA-256 over `label` and `data`.
pub(crate) fn derived_guid(label: &[u8], data: &[u8]) -> String {
    use sha2::{Digest as _, Sha256};
    let digest = Sha256::new()
        .chain_update(label)
        .chain_update(data)
        .finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    bytes[6] = (bytes[6] & 0x0f) | 0x80;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    uuid::Uuid::from_bytes(bytes).to_string()
}

/// The authority's URL for the public base URL `base` (no trailing slash).
pub fn authority(base: &str) -> String {
    format!("{base}/{ADFS_TENANT}")
}

/// The audiences tokens are issued for: the resource manager URL, as ARM's metadata names it
/// (with the trailing slash; az asks for `<audience>/.default`).
pub fn audiences(base: &str) -> Vec<String> {
    vec![format!("{base}/")]
}

/// Whether `resource` is this API (`base` with or without the trailing slash, scheme and host
/// without regard to case).
pub fn is_this_api(base: &str, resource: &str) -> bool {
    resource
        .trim_end_matches('/')
        .eq_ignore_ascii_case(base.trim_end_matches('/'))
}

/// Whether the authority answers for `tenant`: its own tenant id, or the names MSAL and Azure AD
/// use for "the tenant of this authority".
pub fn serves_tenant(tenant: &str, own: &str) -> bool {
    tenant.eq_ignore_ascii_case(own)
        || ["adfs", "organizations", "common"]
            .iter()
            .any(|t| tenant.eq_ignore_ascii_case(t))
}

/// The OpenID Connect discovery document of the authority whose endpoints are under `root`
/// (`<base>/adfs` or `<base>/adfs/<tenant>`), with `token_path` under it.
pub fn openid_configuration(base: &str, root: &str, token_path: &str) -> Value {
    let issuer = authority(base);
    json!({
        "issuer": issuer,
        "access_token_issuer": issuer,
        "authorization_endpoint": format!("{root}/oauth2/authorize"),
        "token_endpoint": format!("{root}/{token_path}"),
        "jwks_uri": format!("{issuer}/discovery/keys"),
        "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
        "grant_types_supported": ["client_credentials"],
        "response_types_supported": ["token"],
        "response_modes_supported": ["query", "fragment", "form_post"],
        "scopes_supported": ["openid"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["HS256"],
        "claims_supported": ["aud", "iss", "iat", "nbf", "exp", "tid", "oid", "sub", "appid"],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_names_the_token_endpoint_msal_posts_to() {
        let doc = openid_configuration("https://h:1", "https://h:1/adfs", "oauth2/token");
        assert_eq!(doc["token_endpoint"], "https://h:1/adfs/oauth2/token");
        assert_eq!(doc["issuer"], "https://h:1/adfs");
        // MSAL reads both; it takes the tenant from the token endpoint's first path segment.
        assert!(doc["authorization_endpoint"].is_string());
        let tenant = openid_configuration("https://h:1", "https://h:1/adfs/T", "oauth2/v2.0/token");
        assert_eq!(
            tenant["token_endpoint"],
            "https://h:1/adfs/T/oauth2/v2.0/token"
        );
    }

    #[test]
    fn resources_and_tenants() {
        assert!(is_this_api(
            "https://Localhost:8443",
            "https://localhost:8443/"
        ));
        assert!(is_this_api(
            "https://localhost:8443",
            "https://localhost:8443"
        ));
        assert!(!is_this_api(
            "https://localhost:8443",
            "https://management.azure.com/"
        ));
        assert!(!is_this_api(
            "https://localhost:8443",
            "https://localhost:8444/"
        ));
        let own = "5e0f0a3c-0000-8000-8000-000000000000";
        assert!(serves_tenant(&own.to_ascii_uppercase(), own));
        assert!(serves_tenant("adfs", own) && serves_tenant("organizations", own));
        assert!(!serves_tenant("72f988bf-86f1-41af-91ab-2d7cd011db47", own));
    }
}
