//! A Docker Registry HTTP API v2 client: manifests and blobs, anonymous first, then `Basic` or
//! `Bearer` (token service) authentication from a `WWW-Authenticate` challenge.
//!
//! Credentials only ever travel in `Authorization` headers; no error or log names a password.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use futures::StreamExt as _;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, WWW_AUTHENTICATE};
use reqwest::{Response, StatusCode};
use serde::Deserialize;

use super::manifest::{MANIFEST_ACCEPT, sha256_digest};
use super::reference::{Reference, is_sha256_digest};
use super::{PullError, RegistryCredential};

/// How long a TCP/TLS connection to a registry may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a registry may stay silent mid-response.
const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// The largest manifest or index accepted.
pub(super) const MAX_MANIFEST_BYTES: usize = 4 << 20;
/// The largest image config accepted.
pub(super) const MAX_CONFIG_BYTES: usize = 8 << 20;
/// The largest token-service or error body read.
const MAX_SMALL_BODY_BYTES: usize = 1 << 20;
/// How long a `Basic` authorization is remembered for a registry.
const BASIC_AUTH_TTL: Duration = Duration::from_secs(3600);
/// Tokens are dropped this long before the token service says they expire.
const TOKEN_EXPIRY_MARGIN: Duration = Duration::from_secs(10);
/// Token lifetime when the service does not say (the distribution spec's minimum).
const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(60);

/// Registry HTTP state shared by every pull of one [`super::ImageService`].
pub(super) struct RegistryClient {
    http: reqwest::Client,
    /// Registries (`host` or `host:port`, lowercase) spoken to over plain HTTP.
    insecure: Vec<String>,
    /// Authorizations learnt from challenges, per registry, scope and credential.
    authorizations: Mutex<HashMap<AuthKey, CachedAuthorization>>,
    /// Blob downloads started (a test and benchmark probe).
    blobs_fetched: AtomicU64,
}

/// What an authorization is valid for. `identity` is a hash of the credential (empty when
/// anonymous) so that one tenant's token never serves another's pull.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct AuthKey {
    registry: String,
    scope: String,
    identity: String,
}

struct CachedAuthorization {
    header: String,
    expires: Instant,
}

impl RegistryClient {
    /// A client speaking plain HTTP to loopback registries and to `insecure` ones.
    pub(super) fn new(insecure: Vec<String>) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT)
            .user_agent(concat!("berth-node-agent/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_else(|error| {
                tracing::warn!(%error, "registry HTTP client with defaults");
                reqwest::Client::new()
            });
        Self {
            http,
            insecure: insecure
                .into_iter()
                .map(|h| h.trim().to_ascii_lowercase())
                .collect(),
            authorizations: Mutex::default(),
            blobs_fetched: AtomicU64::new(0),
        }
    }

    /// How many blob downloads were started.
    pub(super) fn blobs_fetched(&self) -> u64 {
        self.blobs_fetched.load(Ordering::Relaxed)
    }

    /// A session for pulling `reference` (written by the user as `image`), authenticating with
    /// `credential` when the registry asks.
    pub(super) fn session<'a>(
        &'a self,
        reference: &'a Reference,
        image: &'a str,
        credential: Option<&'a RegistryCredential>,
    ) -> Session<'a> {
        let scheme = if self.is_plain_http(reference) {
            "http"
        } else {
            "https"
        };
        let base = format!(
            "{scheme}://{}/v2/{}",
            reference.registry_host(),
            reference.repository
        );
        let default_key = AuthKey {
            registry: reference.registry_host().to_string(),
            scope: pull_scope(reference),
            identity: credential.map(identity).unwrap_or_default(),
        };
        let authorization = self.cached(&default_key);
        Session {
            client: self,
            reference,
            image,
            base,
            credential,
            authorization: Mutex::new(authorization),
        }
    }

    fn is_plain_http(&self, reference: &Reference) -> bool {
        let host = reference.host_without_port().to_ascii_lowercase();
        let loopback =
            host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
        loopback
            || self
                .insecure
                .iter()
                .any(|h| *h == host || *h == reference.domain.to_ascii_lowercase())
    }

    fn cached(&self, key: &AuthKey) -> Option<String> {
        let cache = self
            .authorizations
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        cache
            .get(key)
            .filter(|auth| auth.expires > Instant::now())
            .map(|auth| auth.header.clone())
    }

    fn remember(&self, key: AuthKey, header: &str, ttl: Duration) {
        let mut cache = self
            .authorizations
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        cache.retain(|_, auth| auth.expires > now);
        cache.insert(
            key,
            CachedAuthorization {
                header: header.to_string(),
                expires: now + ttl,
            },
        );
    }
}

/// `repository:<path>:pull`, the scope a pull needs.
fn pull_scope(reference: &Reference) -> String {
    format!("repository:{}:pull", reference.repository)
}

/// A one-way fingerprint of a credential, for cache keys.
pub(super) fn identity(credential: &RegistryCredential) -> String {
    sha256_digest(format!("{}\0{}", credential.username, credential.password).as_bytes())
}

/// A manifest as the registry served it, digest-verified.
#[derive(Debug)]
pub(super) struct FetchedManifest {
    /// The response's media type (parameters stripped).
    pub(super) content_type: String,
    pub(super) bytes: Bytes,
    /// `sha256:` of `bytes`.
    pub(super) digest: String,
}

/// One pull's conversation with one registry.
pub(super) struct Session<'a> {
    client: &'a RegistryClient,
    reference: &'a Reference,
    image: &'a str,
    /// `scheme://host/v2/<repository>`.
    base: String,
    credential: Option<&'a RegistryCredential>,
    /// The `Authorization` header to send, once known.
    authorization: Mutex<Option<String>>,
}

impl Session<'_> {
    /// Fetches the manifest or index named by `tag_or_digest` and verifies it against a pinned
    /// digest and the registry's `Docker-Content-Digest`.
    pub(super) async fn manifest(&self, tag_or_digest: &str) -> Result<FetchedManifest, PullError> {
        let what = if is_sha256_digest(tag_or_digest) {
            format!("manifest {tag_or_digest}")
        } else {
            format!("tag '{tag_or_digest}'")
        };
        let url = format!("{}/manifests/{tag_or_digest}", self.base);
        let response = self.get(&url, Some(MANIFEST_ACCEPT), &what).await?;
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .unwrap_or_default()
            .trim()
            .to_string();
        let announced = response
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let bytes = self
            .read_limited(response, MAX_MANIFEST_BYTES, &what)
            .await?;
        let digest = sha256_digest(&bytes);
        let expected = if is_sha256_digest(tag_or_digest) {
            Some(tag_or_digest.to_string())
        } else {
            announced.filter(|d| d.starts_with("sha256:"))
        };
        if let Some(expected) = expected
            && expected != digest
        {
            return Err(self.invalid(format!(
                "the registry served {what} with digest {digest}, expected {expected}"
            )));
        }
        Ok(FetchedManifest {
            content_type,
            bytes,
            digest,
        })
    }

    /// Starts downloading the blob `digest`; the caller streams and verifies the body.
    pub(super) async fn blob(&self, digest: &str) -> Result<Response, PullError> {
        self.client.blobs_fetched.fetch_add(1, Ordering::Relaxed);
        let url = format!("{}/blobs/{digest}", self.base);
        self.get(&url, None, &format!("blob {digest}")).await
    }

    /// Downloads a small blob (a config) whole, verifying its size and digest.
    pub(super) async fn small_blob(&self, digest: &str, size: i64) -> Result<Bytes, PullError> {
        let what = format!("blob {digest}");
        let limit = usize::try_from(size).unwrap_or(usize::MAX);
        if limit > MAX_CONFIG_BYTES {
            return Err(self.invalid(format!(
                "{what} is {size} bytes, more than the {MAX_CONFIG_BYTES} accepted for a config"
            )));
        }
        let response = self.blob(digest).await?;
        let bytes = self.read_limited(response, limit, &what).await?;
        let actual = sha256_digest(&bytes);
        if actual != digest || bytes.len() != limit {
            return Err(self.invalid(format!(
                "the registry served {what} with digest {actual} and {} bytes, expected {size} bytes",
                bytes.len()
            )));
        }
        Ok(bytes)
    }

    /// The error for a body that broke off mid-download.
    pub(super) fn body_error(&self, what: &str, error: &reqwest::Error) -> PullError {
        self.unreachable(format!(
            "the download of {what} broke off: {}",
            error_chain(error)
        ))
    }

    /// An [`PullError::Invalid`] about this pull.
    pub(super) fn invalid(&self, detail: String) -> PullError {
        PullError::Invalid {
            reference: self.image.to_string(),
            detail,
        }
    }

    fn unreachable(&self, detail: String) -> PullError {
        PullError::Unreachable {
            reference: self.image.to_string(),
            registry: self.reference.domain.clone(),
            detail,
        }
    }

    fn auth(&self, detail: String) -> PullError {
        PullError::Auth {
            reference: self.image.to_string(),
            registry: self.reference.domain.clone(),
            detail,
        }
    }

    /// GETs `url` with what authorization we have; on a 401 answers the challenge once and retries.
    async fn get(
        &self,
        url: &str,
        accept: Option<&str>,
        what: &str,
    ) -> Result<Response, PullError> {
        let current = self.current_authorization();
        let response = self.send(url, accept, current.as_deref()).await?;
        if response.status() != StatusCode::UNAUTHORIZED {
            return self.check(response, what).await;
        }
        let authorization = self.answer_challenge(response.headers()).await?;
        let retried = self.send(url, accept, Some(&authorization)).await?;
        if matches!(
            retried.status(),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
        ) {
            return Err(self.refused(retried.status()));
        }
        self.check(retried, what).await
    }

    fn current_authorization(&self) -> Option<String> {
        self.authorization
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    async fn send(
        &self,
        url: &str,
        accept: Option<&str>,
        authorization: Option<&str>,
    ) -> Result<Response, PullError> {
        let mut request = self.client.http.get(url);
        if let Some(accept) = accept {
            request = request.header(ACCEPT, accept);
        }
        if let Some(authorization) = authorization {
            request = request.header(AUTHORIZATION, authorization);
        }
        request
            .send()
            .await
            .map_err(|error| self.unreachable(error_chain(&error)))
    }

    /// Maps a final response's status to success or a [`PullError`].
    async fn check(&self, response: Response, what: &str) -> Result<Response, PullError> {
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
            return Err(self.refused(status));
        }
        let codes = self.error_codes(response).await;
        let detail = format!("{status}{codes}");
        let not_found = status == StatusCode::NOT_FOUND
            || ["MANIFEST_UNKNOWN", "NAME_UNKNOWN", "BLOB_UNKNOWN"]
                .iter()
                .any(|code| codes.contains(code));
        if not_found {
            return Err(PullError::NotFound {
                reference: self.image.to_string(),
                detail: format!(
                    "registry {} has no {what} in repository '{}' ({detail})",
                    self.reference.domain, self.reference.repository
                ),
            });
        }
        if status.is_server_error()
            || matches!(
                status,
                StatusCode::TOO_MANY_REQUESTS | StatusCode::REQUEST_TIMEOUT
            )
        {
            return Err(self.unreachable(format!("it answered {detail} for {what}")));
        }
        Err(self.invalid(format!(
            "registry {} answered {detail} for {what}",
            self.reference.domain
        )))
    }

    /// `", CODE: message"` from a registry's JSON error body, or nothing.
    async fn error_codes(&self, response: Response) -> String {
        #[derive(Deserialize)]
        struct Errors {
            #[serde(default)]
            errors: Vec<RegistryError>,
        }
        #[derive(Deserialize)]
        struct RegistryError {
            #[serde(default)]
            code: String,
            #[serde(default)]
            message: String,
        }
        let Ok(body) = self
            .read_limited(response, MAX_SMALL_BODY_BYTES, "error")
            .await
        else {
            return String::new();
        };
        let Ok(parsed) = serde_json::from_slice::<Errors>(&body) else {
            return String::new();
        };
        parsed
            .errors
            .iter()
            .map(|e| format!(", {}: {}", e.code, e.message))
            .collect()
    }

    /// The error for a registry that refused us after we answered its challenge.
    fn refused(&self, status: StatusCode) -> PullError {
        match self.credential {
            Some(credential) => self.auth(format!(
                "the registry refused the credentials of user '{}' ({status})",
                credential.username
            )),
            None => self.auth(format!(
                "the registry requires credentials and none were given for it ({status}); \
                 some registries also answer this way for a repository that does not exist"
            )),
        }
    }

    /// Answers a 401's `WWW-Authenticate` challenge: `Basic` with the credential, or a token from
    /// the `Bearer` realm. Remembers the result for this session and for later pulls.
    async fn answer_challenge(&self, headers: &HeaderMap) -> Result<String, PullError> {
        let challenges: Vec<Challenge> = headers
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(parse_challenges)
            .collect();
        let bearer = challenges.iter().find(|c| c.scheme == "bearer");
        let basic = challenges.iter().find(|c| c.scheme == "basic");
        let identity = self.credential.map(identity).unwrap_or_default();
        let (authorization, key, ttl) = if let Some(bearer) = bearer {
            let scope = bearer
                .params
                .get("scope")
                .cloned()
                .unwrap_or_else(|| pull_scope(self.reference));
            let (token, ttl) = self.fetch_token(bearer, &scope).await?;
            let key = AuthKey {
                registry: self.reference.registry_host().to_string(),
                scope,
                identity,
            };
            (format!("Bearer {token}"), key, ttl)
        } else if basic.is_some() {
            let Some(credential) = self.credential else {
                return Err(self.refused(StatusCode::UNAUTHORIZED));
            };
            let key = AuthKey {
                registry: self.reference.registry_host().to_string(),
                scope: pull_scope(self.reference),
                identity,
            };
            (basic_authorization(credential), key, BASIC_AUTH_TTL)
        } else {
            return Err(self.auth(
                "it answered 401 Unauthorized without a Basic or Bearer challenge".to_string(),
            ));
        };
        tracing::debug!(registry = %self.reference.domain, scope = %key.scope, "authorized");
        self.client.remember(key, &authorization, ttl);
        *self
            .authorization
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(authorization.clone());
        Ok(authorization)
    }

    /// Gets a token from a `Bearer` challenge's realm, with the credential if there is one.
    async fn fetch_token(
        &self,
        challenge: &Challenge,
        scope: &str,
    ) -> Result<(String, Duration), PullError> {
        #[derive(Deserialize)]
        struct TokenResponse {
            #[serde(default)]
            token: Option<String>,
            #[serde(default)]
            access_token: Option<String>,
            #[serde(default)]
            expires_in: Option<u64>,
        }
        let Some(realm) = challenge.params.get("realm") else {
            return Err(self.auth("its Bearer challenge names no token realm".to_string()));
        };
        let realm_url = reqwest::Url::parse(realm)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .ok_or_else(|| self.auth(format!("its token realm '{realm}' is not an http(s) URL")))?;
        let mut query: Vec<(&str, &str)> = vec![("scope", scope)];
        if let Some(service) = challenge.params.get("service") {
            query.push(("service", service));
        }
        let mut request = self.client.http.get(realm_url).query(&query);
        if let Some(credential) = self.credential {
            request = request.basic_auth(&credential.username, Some(&credential.password));
        }
        let response = request
            .send()
            .await
            .map_err(|e| self.unreachable(format!("its token service: {}", error_chain(&e))))?;
        let status = response.status();
        if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
            return Err(self.refused(status));
        }
        if !status.is_success() {
            return Err(self.unreachable(format!("its token service answered {status}")));
        }
        let body = self
            .read_limited(response, MAX_SMALL_BODY_BYTES, "token")
            .await?;
        let parsed: TokenResponse = serde_json::from_slice(&body)
            .map_err(|e| self.auth(format!("its token service sent an unreadable answer: {e}")))?;
        let token = parsed
            .token
            .or(parsed.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| self.auth("its token service sent no token".to_string()))?;
        let ttl = parsed
            .expires_in
            .map_or(DEFAULT_TOKEN_TTL, Duration::from_secs)
            .max(DEFAULT_TOKEN_TTL)
            .saturating_sub(TOKEN_EXPIRY_MARGIN);
        Ok((token, ttl))
    }

    /// Reads a whole body of at most `limit` bytes.
    async fn read_limited(
        &self,
        response: Response,
        limit: usize,
        what: &str,
    ) -> Result<Bytes, PullError> {
        let mut body = BytesMut::new();
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| self.body_error(what, &e))?;
            if body.len() + chunk.len() > limit {
                return Err(self.invalid(format!("the {what} is larger than {limit} bytes")));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    }
}

fn basic_authorization(credential: &RegistryCredential) -> String {
    let pair = format!("{}:{}", credential.username, credential.password);
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

/// An error and its causes on one line (`error sending request: connection refused`).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// One `WWW-Authenticate` challenge: a scheme (lowercase) and its parameters (keys lowercase).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Challenge {
    scheme: String,
    params: HashMap<String, String>,
}

/// Parses a `WWW-Authenticate` value, which may hold several challenges
/// (`Basic realm="r", Bearer realm="https://a",scope="repository:x:pull,push"`).
fn parse_challenges(header: &str) -> Vec<Challenge> {
    let mut challenges: Vec<Challenge> = Vec::new();
    let mut cursor = Cursor {
        chars: header.chars().collect(),
        at: 0,
    };
    while let Some(word) = cursor.token() {
        if cursor.eat_equals() {
            let value = cursor.value();
            if let Some(challenge) = challenges.last_mut() {
                challenge.params.insert(word.to_ascii_lowercase(), value);
            }
        } else {
            challenges.push(Challenge {
                scheme: word.to_ascii_lowercase(),
                params: HashMap::new(),
            });
        }
    }
    challenges
}

struct Cursor {
    chars: Vec<char>,
    at: usize,
}

impl Cursor {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.at).copied()
    }

    fn skip_while(&mut self, skip: impl Fn(char) -> bool) {
        while self.peek().is_some_and(&skip) {
            self.at += 1;
        }
    }

    /// The next scheme or parameter name, skipping separators.
    fn token(&mut self) -> Option<String> {
        self.skip_while(|c| c.is_whitespace() || c == ',');
        let start = self.at;
        self.skip_while(|c| !c.is_whitespace() && c != ',' && c != '=');
        (self.at > start).then(|| self.chars[start..self.at].iter().collect())
    }

    fn eat_equals(&mut self) -> bool {
        let save = self.at;
        self.skip_while(char::is_whitespace);
        if self.peek() == Some('=') {
            self.at += 1;
            true
        } else {
            self.at = save;
            false
        }
    }

    /// A quoted string (with `\` escapes) or a bare token.
    fn value(&mut self) -> String {
        self.skip_while(char::is_whitespace);
        let mut value = String::new();
        if self.peek() == Some('"') {
            self.at += 1;
            while let Some(c) = self.peek() {
                self.at += 1;
                match c {
                    '"' => break,
                    '\\' => {
                        if let Some(escaped) = self.peek() {
                            value.push(escaped);
                            self.at += 1;
                        }
                    }
                    c => value.push(c),
                }
            }
        } else {
            let start = self.at;
            self.skip_while(|c| !c.is_whitespace() && c != ',');
            value = self.chars[start..self.at].iter().collect();
        }
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parses_bearer_challenges_with_commas_in_quotes() {
        let header = r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull,push""#;
        assert_eq!(
            parse_challenges(header),
            vec![Challenge {
                scheme: "bearer".into(),
                params: params(&[
                    ("realm", "https://auth.docker.io/token"),
                    ("service", "registry.docker.io"),
                    ("scope", "repository:library/busybox:pull,push"),
                ]),
            }]
        );
    }

    #[test]
    fn parses_several_challenges_and_bare_values() {
        let header =
            r#"Basic realm="a \"b\"", Bearer realm=https://t/token , error=insufficient_scope"#;
        assert_eq!(
            parse_challenges(header),
            vec![
                Challenge {
                    scheme: "basic".into(),
                    params: params(&[("realm", r#"a "b""#)]),
                },
                Challenge {
                    scheme: "bearer".into(),
                    params: params(&[
                        ("realm", "https://t/token"),
                        ("error", "insufficient_scope")
                    ]),
                },
            ]
        );
        assert!(parse_challenges("").is_empty());
    }

    #[test]
    fn loopback_and_listed_registries_use_plain_http() {
        let client = RegistryClient::new(vec!["Reg.Internal:5000".into(), "other.lan".into()]);
        let scheme = |image: &str| {
            let reference = Reference::parse(image).unwrap();
            client.is_plain_http(&reference)
        };
        assert!(scheme("localhost:5000/x"));
        assert!(scheme("127.0.0.1:5000/x"));
        assert!(scheme("127.8.0.1/x"));
        assert!(scheme("[::1]:5000/x"));
        assert!(scheme("reg.internal:5000/x"));
        assert!(scheme("other.lan:443/x"));
        assert!(!scheme("reg.internal:5001/x"));
        assert!(!scheme("busybox"));
        assert!(!scheme("10.0.0.1:5000/x"));
    }

    #[test]
    fn identities_never_contain_the_password() {
        let credential = RegistryCredential {
            server: "r".into(),
            username: "u".into(),
            password: "hunter2".into(),
        };
        assert!(!identity(&credential).contains("hunter2"));
        assert_ne!(
            identity(&credential),
            identity(&RegistryCredential {
                password: "other".into(),
                ..credential.clone()
            })
        );
    }
}
