//! The token endpoint's request (RFC 6749 §4.4, form-encoded) and its errors in OAuth's shape.
//!
//! Parsing is pure: the body and the `Authorization` header in, a [`TokenRequest`] or an
//! [`OAuthError`] out. Which credential it names is checked by the handler.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::json;

/// An OAuth error answer: `{"error","error_description"}` with the status RFC 6749 §5.2 gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthError {
    pub status: StatusCode,
    pub error: &'static str,
    pub description: String,
    /// Whether the client authenticated with HTTP Basic (then a 401 names the scheme).
    pub basic: bool,
}

impl OAuthError {
    fn new(status: StatusCode, error: &'static str, description: impl Into<String>) -> Self {
        Self {
            status,
            error,
            description: description.into(),
            basic: false,
        }
    }

    pub fn invalid_request(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", description)
    }

    /// Client authentication failed: 401 (RFC 6749 §5.2 allows it always, and wants it with Basic).
    pub fn invalid_client(description: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "invalid_client", description)
    }

    pub fn invalid_scope(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_scope", description)
    }

    pub fn unsupported_grant_type(grant: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            format!(
                "The grant type '{grant}' is not supported; Berth's sign-in authority supports \
                 client_credentials."
            ),
        )
    }

    /// Azure AD's answer for a tenant it does not know.
    pub fn invalid_tenant(tenant: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_tenant",
            format!("Tenant '{tenant}' not found: this Berth installation has one tenant."),
        )
    }

    pub fn unsupported_response_type() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "unsupported_response_type",
            "Interactive sign-in is not supported: sign in with the client_credentials grant \
             (az login --service-principal).",
        )
    }

    pub fn server_error() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "The sign-in authority could not read its store; try again.",
        )
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            Json(json!({ "error": self.error, "error_description": self.description })),
        )
            .into_response();
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
        if self.status == StatusCode::UNAUTHORIZED && self.basic {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"berth\""),
            );
        }
        response
    }
}

/// A client-credentials token request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequest {
    pub client_id: String,
    pub client_secret: String,
    /// The resource asked for (a scope's part before `/.default`, or `resource`), if any.
    pub resource: Option<String>,
    /// Whether the client authenticated with HTTP Basic.
    pub basic: bool,
}

/// Parses a token request: `body` (`application/x-www-form-urlencoded`) and the `Authorization`
/// header, if any. Unknown parameters are ignored and a repeated one refused (RFC 6749 §3.2).
pub fn parse(body: &[u8], authorization: Option<&str>) -> Result<TokenRequest, OAuthError> {
    let mut params: Vec<(String, String)> = Vec::new();
    for (name, value) in form_urlencoded::parse(body) {
        if params.iter().any(|(n, _)| *n == name) {
            return Err(OAuthError::invalid_request(format!(
                "The parameter '{name}' is given more than once."
            )));
        }
        params.push((name.into_owned(), value.into_owned()));
    }
    let param = |name: &str| {
        params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    };
    let grant = param("grant_type")
        .ok_or_else(|| OAuthError::invalid_request("The parameter 'grant_type' is missing."))?;
    if grant != "client_credentials" {
        return Err(OAuthError::unsupported_grant_type(grant));
    }
    let basic = authorization.map(basic_credentials).transpose()?;
    let posted = (param("client_id"), param("client_secret"));
    let (client_id, client_secret, basic) = match (basic, posted) {
        (Some(_), (_, Some(_))) => {
            return Err(OAuthError::invalid_request(
                "The client authenticated in more than one way (Authorization header and \
                 client_secret).",
            ));
        }
        (Some((id, secret)), (posted_id, None)) => {
            if posted_id.is_some_and(|p| p != id) {
                return Err(OAuthError::invalid_request(
                    "client_id differs from the client of the Authorization header.",
                ));
            }
            (id, secret, true)
        }
        (None, (Some(id), Some(secret))) => (id.to_owned(), secret.to_owned(), false),
        (None, (None, _)) => {
            return Err(OAuthError::invalid_client(
                "The client is not authenticated: give client_id and client_secret (the Berth \
                 token's id and the token).",
            ));
        }
        (None, (Some(_), None)) => {
            return Err(OAuthError::invalid_client(
                "The parameter 'client_secret' is missing: it is the Berth token.",
            ));
        }
    };
    let resource = match param("scope") {
        Some(scope) => Some(resource_of_scope(scope)?),
        None => param("resource").map(str::to_owned),
    };
    Ok(TokenRequest {
        client_id,
        client_secret,
        resource,
        basic,
    })
}

/// The resource of a v2 scope list: every scope `<resource>/.default` for one resource
/// (`offline_access`, `openid` and `profile`, which MSAL may add, aside).
fn resource_of_scope(scope: &str) -> Result<String, OAuthError> {
    let mut resource: Option<&str> = None;
    for item in scope.split(' ').filter(|s| !s.is_empty()) {
        if matches!(item, "openid" | "profile" | "offline_access") {
            continue;
        }
        let Some(r) = item.strip_suffix("/.default") else {
            return Err(OAuthError::invalid_scope(format!(
                "The scope '{item}' is not '<resource>/.default': the client-credentials grant \
                 takes a resource's .default scope."
            )));
        };
        if resource.is_some_and(|seen| seen != r) {
            return Err(OAuthError::invalid_scope(
                "The scopes name more than one resource.",
            ));
        }
        resource = Some(r);
    }
    resource
        .map(str::to_owned)
        .ok_or_else(|| OAuthError::invalid_scope("The scope names no resource."))
}

/// `Basic base64(urlencode(id):urlencode(secret))` (RFC 6749 §2.3.1).
fn basic_credentials(header: &str) -> Result<(String, String), OAuthError> {
    let bad = || {
        let mut err = OAuthError::invalid_client("The Authorization header is not HTTP Basic.");
        err.basic = true;
        err
    };
    let encoded = header
        .strip_prefix("Basic ")
        .or_else(|| header.strip_prefix("basic "))
        .ok_or_else(bad)?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| bad())?;
    let text = String::from_utf8(decoded).map_err(|_| bad())?;
    let (id, secret) = text.split_once(':').ok_or_else(bad)?;
    let unescape = |s: &str| {
        form_urlencoded::parse(format!("v={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    Ok((unescape(id), unescape(secret)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSAL: &str = "client_id=abc&client_secret=berth_abc_S3cr%2Bt&grant_type=client_credentials\
                        &scope=https%3A%2F%2Flocalhost%3A8443%2F%2F.default&client_info=1";

    #[test]
    fn msal_client_credentials_parse() {
        let request = parse(MSAL.as_bytes(), None).unwrap();
        assert_eq!(
            request,
            TokenRequest {
                client_id: "abc".to_owned(),
                client_secret: "berth_abc_S3cr+t".to_owned(),
                resource: Some("https://localhost:8443/".to_owned()),
                basic: false,
            }
        );
    }

    #[test]
    fn basic_authentication_and_resource_parse() {
        let header = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("abc:berth_abc_S3cr%2Bt")
        );
        let request = parse(
            b"grant_type=client_credentials&resource=https%3A%2F%2Fh%2F",
            Some(&header),
        )
        .unwrap();
        assert_eq!(request.client_secret, "berth_abc_S3cr+t");
        assert_eq!(request.resource.as_deref(), Some("https://h/"));
        assert!(request.basic);
        // No resource at all: the handler picks the default.
        let request = parse(
            b"grant_type=client_credentials&client_id=a&client_secret=b",
            None,
        )
        .unwrap();
        assert_eq!(request.resource, None);
    }

    #[test]
    fn refusals_are_oauth_errors() {
        let error = |body: &str, auth: Option<&str>| {
            let e = parse(body.as_bytes(), auth).unwrap_err();
            (e.status.as_u16(), e.error)
        };
        assert_eq!(
            error("client_id=a&client_secret=b", None),
            (400, "invalid_request")
        );
        assert_eq!(
            error("grant_type=password&username=a&password=b", None),
            (400, "unsupported_grant_type")
        );
        assert_eq!(
            error("grant_type=client_credentials", None),
            (401, "invalid_client")
        );
        assert_eq!(
            error("grant_type=client_credentials&client_id=a", None),
            (401, "invalid_client")
        );
        assert_eq!(
            error(
                "grant_type=client_credentials&grant_type=client_credentials",
                None
            ),
            (400, "invalid_request")
        );
        assert_eq!(
            error(
                "grant_type=client_credentials&client_id=a&client_secret=b",
                Some("Basic YTpi")
            ),
            (400, "invalid_request")
        );
        assert_eq!(
            error("grant_type=client_credentials", Some("Bearer x")),
            (401, "invalid_client")
        );
        assert_eq!(
            error(
                "grant_type=client_credentials&client_id=a&client_secret=b&scope=https://h/user.read",
                None
            ),
            (400, "invalid_scope")
        );
        assert_eq!(
            error(
                "grant_type=client_credentials&client_id=a&client_secret=b&scope=https://a/.default+https://b/.default",
                None
            ),
            (400, "invalid_scope")
        );
    }

    #[test]
    fn errors_answer_in_oauths_shape_and_are_not_cached() {
        let mut err = OAuthError::invalid_client("no");
        err.basic = true;
        let response = err.into_response();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
        assert!(response.headers().contains_key(header::WWW_AUTHENTICATE));
    }
}
