//! The HTTPS client of Berth's API.
//!
//! One [`Client`] holds the endpoint, the bearer token and a `reqwest` client that trusts only the CA in
//! `--ca-file` (Berth signs its own certificates). Every request carries `Authorization: Bearer …` and an
//! `api-version` (2023-05-01 unless the caller or the URL names another). URLs the server hands back
//! (`Azure-AsyncOperation`, `nextLink`) are followed only on the endpoint's origin: one naming another host
//! is re-based onto the endpoint, so the token never leaves for a host the user did not name.
//!
//! [`Client::websocket`] opens the sessions of `exec` and `attach`: a `wss://` URL the server handed out
//! with a single-use password, over TLS that trusts the same CA. That URL is followed as given (the
//! apiserver names the host that holds the session); only the session's password goes there, never the
//! token, and only to a host whose certificate the CA vouches for.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use berth_proto::arm::CloudError;
use reqwest::header::{self, HeaderMap};
use reqwest::{Method, StatusCode, Url};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

/// The api-version of every request that does not name its own.
pub const API_VERSION: &str = berth_proto::arm::API_VERSION;

/// The header that names a long-running operation's status monitor.
pub const ASYNC_OPERATION: &str = "azure-asyncoperation";

const USER_AGENT: &str = concat!("berth-cli/", env!("CARGO_PKG_VERSION"));

/// How long a request may take, body included; streamed answers ([`Client::stream`]) have no limit.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// How long connecting may take, TCP and TLS (and the websocket upgrade for [`Client::websocket`]).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// An open websocket session of `exec` or `attach`.
pub type WebSocket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// What can go wrong talking to the apiserver.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error status. `code`, `message` and `target` come from its
    /// `{"error":{…}}` body, or from the status when the body is not one.
    #[error("{code}: {message}{}", target.as_ref().map(|t| format!(" (target: {t})")).unwrap_or_default())]
    Api {
        status: u16,
        code: String,
        message: String,
        target: Option<String>,
    },
    /// No answer: refused connection, DNS, TLS handshake (an untrusted certificate), timeout.
    #[error("{method} {url} failed")]
    Transport {
        method: Method,
        url: Url,
        #[source]
        source: reqwest::Error,
    },
    /// A success status with a body that is not what the request returns.
    #[error("unexpected answer to {method} {url}")]
    Decode {
        method: Method,
        url: Url,
        #[source]
        source: serde_json::Error,
    },
    /// A request body that JSON cannot express (a map with non-string keys).
    #[error("cannot encode the request body")]
    Encode(#[source] serde_json::Error),
    /// The endpoint is not an `https://` URL without query or fragment.
    #[error("invalid endpoint {endpoint:?}: {reason}")]
    InvalidEndpoint { endpoint: String, reason: String },
    /// The CA file cannot be read.
    #[error("cannot read the CA file {}", path.display())]
    CaFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The CA file holds no PEM certificate, or broken PEM.
    #[error("the CA file {} holds no usable PEM certificate", path.display())]
    CaPem {
        path: PathBuf,
        #[source]
        source: Option<rustls::pki_types::pem::Error>,
    },
    /// A certificate of the CA file that cannot be a trusted root (not DER X.509).
    #[error("the CA file {} holds a certificate that cannot be trusted as a root", path.display())]
    CaCertificate {
        path: PathBuf,
        #[source]
        source: rustls::Error,
    },
    /// `reqwest` refused the TLS configuration.
    #[error("cannot set up the HTTPS client")]
    Build(#[source] reqwest::Error),
    /// rustls refused the TLS configuration of websockets.
    #[error("cannot set up TLS for websockets")]
    Tls(#[source] rustls::Error),
    /// The server handed out a websocket URL the client will not connect to.
    #[error("the server handed out an unusable websocket URL {url:?}: {reason}")]
    WebSocketUrl { url: String, reason: String },
    /// The websocket could not be opened: refused connection, TLS (an untrusted certificate), a
    /// subprotocol the server did not choose, a timeout. An upgrade refused with an error status is a
    /// [`ClientError::Api`] instead.
    #[error("websocket {url} failed")]
    WebSocket {
        url: Url,
        #[source]
        source: Box<tungstenite::Error>,
    },
}

impl ClientError {
    /// The HTTP status of an [`ClientError::Api`] error.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// A successful answer, read to the end.
#[derive(Debug)]
pub struct Response {
    pub method: Method,
    pub url: Url,
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Response {
    /// The body as `T`.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, ClientError> {
        serde_json::from_slice(&self.body).map_err(|source| ClientError::Decode {
            method: self.method.clone(),
            url: self.url.clone(),
            source,
        })
    }

    /// The `Azure-AsyncOperation` URL, if the operation goes on after this answer.
    pub fn async_operation(&self) -> Option<&str> {
        self.headers
            .get(ASYNC_OPERATION)?
            .to_str()
            .ok()
            .filter(|s| !s.is_empty())
    }

    /// `Retry-After` in seconds (an HTTP date is not honoured).
    pub fn retry_after(&self) -> Option<Duration> {
        let value = self.headers.get(header::RETRY_AFTER)?.to_str().ok()?;
        value.trim().parse::<u64>().ok().map(Duration::from_secs)
    }
}

/// A successful answer whose body is read as it arrives.
#[derive(Debug)]
pub struct Streaming {
    method: Method,
    url: Url,
    answer: reqwest::Response,
}

impl Streaming {
    /// The `Content-Type` of the answer, without parameters, lower-case.
    pub fn content_type(&self) -> Option<String> {
        let value = self
            .answer
            .headers()
            .get(header::CONTENT_TYPE)?
            .to_str()
            .ok()?;
        let essence = value.split(';').next().unwrap_or(value).trim();
        Some(essence.to_ascii_lowercase())
    }

    /// A header of the answer, if it is there and text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.answer.headers().get(name)?.to_str().ok()
    }

    /// A [`ClientError::Decode`] for a piece of this answer's body that is not what the request
    /// returns (a body read piece by piece is decoded by the caller).
    pub fn decode_error(&self, source: serde_json::Error) -> ClientError {
        ClientError::Decode {
            method: self.method.clone(),
            url: self.url.clone(),
            source,
        }
    }

    /// The next piece of the body as the server sent it, `None` at its end.
    pub async fn chunk(&mut self) -> Result<Option<bytes::Bytes>, ClientError> {
        self.answer
            .chunk()
            .await
            .map_err(|source| ClientError::Transport {
                method: self.method.clone(),
                url: self.url.clone(),
                source: source.without_url(),
            })
    }

    /// The rest of the body.
    pub async fn bytes(self) -> Result<Vec<u8>, ClientError> {
        let Self {
            method,
            url,
            answer,
        } = self;
        match answer.bytes().await {
            Ok(body) => Ok(body.to_vec()),
            Err(source) => Err(ClientError::Transport {
                method,
                url,
                source: source.without_url(),
            }),
        }
    }
}

/// Berth's API at one endpoint, with one token.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    /// The TLS of websockets: the same roots as `http`, HTTP/1.1 only (the upgrade is HTTP/1.1).
    websocket_tls: Arc<rustls::ClientConfig>,
    base: Url,
    /// Other replicas of the same API, tried in turn when `base` cannot be connected to.
    fallbacks: Vec<Url>,
    token: String,
}

impl Client {
    /// A client of `endpoint` (`https://host:port`) that trusts only the certificates in `ca_file`.
    /// Several comma-separated endpoints are replicas of one API: requests go to the first, and to
    /// the next when one cannot be connected to (nothing was sent, so any request may go again).
    pub fn new(endpoint: &str, token: &str, ca_file: &Path) -> Result<Self, ClientError> {
        let mut endpoints = endpoint
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(parse_endpoint);
        let base = endpoints.next().unwrap_or_else(|| parse_endpoint(""))?;
        let fallbacks = endpoints.collect::<Result<Vec<_>, _>>()?;
        let certs = read_ca(ca_file)?;
        let mut roots = rustls::RootCertStore::empty();
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .https_only(true)
            .user_agent(USER_AGENT)
            .connect_timeout(CONNECT_TIMEOUT);
        for cert in certs {
            builder = builder.add_root_certificate(
                reqwest::Certificate::from_der(&cert).map_err(ClientError::Build)?,
            );
            roots
                .add(cert)
                .map_err(|source| ClientError::CaCertificate {
                    path: ca_file.to_path_buf(),
                    source,
                })?;
        }
        let http = builder.build().map_err(ClientError::Build)?;
        let mut websocket_tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(ClientError::Tls)?
        .with_root_certificates(roots)
        .with_no_client_auth();
        websocket_tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            http,
            websocket_tls: Arc::new(websocket_tls),
            base,
            fallbacks,
            token: token.to_owned(),
        })
    }

    pub fn endpoint(&self) -> &Url {
        &self.base
    }

    /// `GET target` with the default api-version.
    pub async fn get(&self, target: &str) -> Result<Response, ClientError> {
        self.send(Method::GET, target, API_VERSION, None).await
    }

    /// `DELETE target` with the default api-version.
    pub async fn delete(&self, target: &str) -> Result<Response, ClientError> {
        self.send(Method::DELETE, target, API_VERSION, None).await
    }

    /// `POST target` with an optional JSON body and the default api-version.
    pub async fn post<B: Serialize + ?Sized>(
        &self,
        target: &str,
        body: Option<&B>,
    ) -> Result<Response, ClientError> {
        let body = body.map(to_json).transpose()?;
        self.send(Method::POST, target, API_VERSION, body).await
    }

    /// `PUT target` with a JSON body.
    pub async fn put<B: Serialize + ?Sized>(
        &self,
        target: &str,
        api_version: &str,
        body: &B,
    ) -> Result<Response, ClientError> {
        let body = to_json(body)?;
        self.send(Method::PUT, target, api_version, Some(body))
            .await
    }

    /// Sends one request. `target` is a path (`/subscriptions/…`, may carry a query) or a URL the
    /// server handed out; `api_version` is added unless the target's query already has one.
    /// A status outside 2xx is a [`ClientError::Api`].
    pub async fn send(
        &self,
        method: Method,
        target: &str,
        api_version: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Response, ClientError> {
        let request = self.request(method.clone(), target, api_version, body);
        let answer = self
            .start(method, request.timeout(REQUEST_TIMEOUT), "application/json")
            .await?;
        let (method, url) = (answer.method.clone(), answer.url.clone());
        let status = answer.answer.status();
        let headers = answer.answer.headers().clone();
        let body = answer.bytes().await?;
        Ok(Response {
            method,
            url,
            status,
            headers,
            body,
        })
    }

    /// `GET target` with the default api-version, for an answer that may go on for as long as the
    /// server sends (`logs --follow`): no overall time limit, the body is read piece by piece.
    pub async fn stream(&self, target: &str, accept: &str) -> Result<Streaming, ClientError> {
        let request = self.request(Method::GET, target, API_VERSION, None);
        self.start(Method::GET, request, accept).await
    }

    fn request(
        &self,
        method: Method,
        target: &str,
        api_version: &str,
        body: Option<Vec<u8>>,
    ) -> reqwest::RequestBuilder {
        let url = self.url_for(target, api_version);
        let mut request = self.http.request(method, url).bearer_auth(&self.token);
        if let Some(body) = body {
            request = request
                .header(header::CONTENT_TYPE, "application/json")
                .body(body);
        }
        request
    }

    /// Sends `request` and reads the head of the answer; an error status is read to the end and
    /// becomes a [`ClientError::Api`].
    async fn start(
        &self,
        method: Method,
        request: reqwest::RequestBuilder,
        accept: &str,
    ) -> Result<Streaming, ClientError> {
        let request = request
            .header(header::ACCEPT, accept)
            .build()
            .map_err(ClientError::Build)?;
        let mut url = request.url().clone();
        let spare = if self.fallbacks.is_empty() {
            None
        } else {
            request.try_clone()
        };
        let mut answer = self.http.execute(request).await;
        for fallback in &self.fallbacks {
            if !matches!(&answer, Err(e) if e.is_connect()) {
                break;
            }
            let Some(mut retry) = spare.as_ref().and_then(reqwest::Request::try_clone) else {
                break;
            };
            url = rebase(retry.url(), &self.base, fallback);
            *retry.url_mut() = url.clone();
            answer = self.http.execute(retry).await;
        }
        let answer = answer.map_err(|source| ClientError::Transport {
            method: method.clone(),
            url: url.clone(),
            source: source.without_url(),
        })?;
        let status = answer.status();
        let streaming = Streaming {
            method,
            url,
            answer,
        };
        if !status.is_success() {
            let body = streaming.bytes().await?;
            return Err(api_error(status, &body));
        }
        Ok(streaming)
    }

    /// Opens the websocket at `url` (a `wss://` URL from an `exec` or `attach` answer) with
    /// `Authorization: <authorization>` and, if given, the one subprotocol `protocol`, which the
    /// server must choose. An upgrade refused with an error status is a [`ClientError::Api`].
    pub async fn websocket(
        &self,
        url: &str,
        authorization: &str,
        protocol: Option<&str>,
    ) -> Result<WebSocket, ClientError> {
        let unusable = |reason: &str| ClientError::WebSocketUrl {
            url: url.to_owned(),
            reason: reason.to_owned(),
        };
        let parsed = Url::parse(url).map_err(|e| unusable(&e.to_string()))?;
        if parsed.scheme() != "wss" {
            return Err(unusable(
                "not wss://, and a session is never opened in clear text",
            ));
        }
        let failed = |source: tungstenite::Error| ClientError::WebSocket {
            url: parsed.clone(),
            source: Box::new(source),
        };
        let mut request = url.into_client_request().map_err(failed)?;
        let headers = request.headers_mut();
        let value = |v: &str| {
            header::HeaderValue::from_str(v)
                .map_err(|_| unusable("the password or protocol is not a valid header value"))
        };
        headers.insert(header::AUTHORIZATION, value(authorization)?);
        headers.insert(header::USER_AGENT, value(USER_AGENT)?);
        if let Some(protocol) = protocol {
            headers.insert(header::SEC_WEBSOCKET_PROTOCOL, value(protocol)?);
        }
        let connector = tokio_tungstenite::Connector::Rustls(self.websocket_tls.clone());
        // No Nagle: a key typed into a terminal goes out at once.
        let connect =
            tokio_tungstenite::connect_async_tls_with_config(request, None, true, Some(connector));
        match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
            Ok(Ok((socket, _))) => Ok(socket),
            Ok(Err(tungstenite::Error::Http(answer))) => Err(refused_upgrade(
                answer.status(),
                answer.body().as_deref().unwrap_or_default(),
            )),
            Ok(Err(e)) => Err(failed(e)),
            Err(_) => Err(failed(tungstenite::Error::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no session within {} s", CONNECT_TIMEOUT.as_secs()),
            )))),
        }
    }

    /// The URL of `target` on this endpoint, with an `api-version`.
    pub fn url_for(&self, target: &str, api_version: &str) -> Url {
        let mut url = self.base.clone();
        match Url::parse(target) {
            // Keep only the path and query of a URL: the host is always the endpoint's.
            Ok(absolute) => {
                if absolute.origin() == self.base.origin() {
                    url = absolute;
                } else {
                    url.set_path(&join_paths(self.base.path(), absolute.path()));
                    url.set_query(absolute.query());
                }
            }
            Err(_) => {
                let (path, query) = target.split_once('?').unwrap_or((target, ""));
                url.set_path(&join_paths(self.base.path(), path));
                url.set_query(Some(query).filter(|q| !q.is_empty()));
            }
        }
        if !url
            .query_pairs()
            .any(|(k, _)| k.eq_ignore_ascii_case("api-version"))
        {
            url.query_pairs_mut()
                .append_pair("api-version", api_version);
        }
        url
    }
}

/// The certificates of the PEM file `path`; at least one.
fn read_ca(path: &Path) -> Result<Vec<CertificateDer<'static>>, ClientError> {
    let pem = std::fs::read(path).map_err(|source| ClientError::CaFile {
        path: path.to_path_buf(),
        source,
    })?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| ClientError::CaPem {
            path: path.to_path_buf(),
            source: Some(source),
        })?;
    if certs.is_empty() {
        return Err(ClientError::CaPem {
            path: path.to_path_buf(),
            source: None,
        });
    }
    Ok(certs)
}

fn to_json<B: Serialize + ?Sized>(body: &B) -> Result<Vec<u8>, ClientError> {
    serde_json::to_vec(body).map_err(ClientError::Encode)
}

fn parse_endpoint(endpoint: &str) -> Result<Url, ClientError> {
    let invalid = |reason: &str| ClientError::InvalidEndpoint {
        endpoint: endpoint.to_owned(),
        reason: reason.to_owned(),
    };
    let url = Url::parse(endpoint).map_err(|e| invalid(&e.to_string()))?;
    if url.scheme() != "https" {
        return Err(invalid("Berth is served over HTTPS only; use https://"));
    }
    if url.host().is_none() {
        return Err(invalid("no host"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("no query or fragment, please"));
    }
    Ok(url)
}

/// `url` (on endpoint `from`) on endpoint `to`: the same path below the endpoint's, the same query.
fn rebase(url: &Url, from: &Url, to: &Url) -> Url {
    let below = url
        .path()
        .strip_prefix(from.path().trim_end_matches('/'))
        .unwrap_or(url.path());
    let mut moved = to.clone();
    moved.set_path(&format!("{}{below}", to.path().trim_end_matches('/')));
    moved.set_query(url.query());
    moved
}

/// `base` (the endpoint's path, often `/`) followed by `path`.
fn join_paths(base: &str, path: &str) -> String {
    format!(
        "{}/{}",
        base.trim_end_matches('/'),
        path.trim_start_matches('/')
    )
}

/// An error status's body as ARM's `CloudError`, else the status itself.
fn api_error(status: StatusCode, body: &[u8]) -> ClientError {
    if let Ok(CloudError { error }) = serde_json::from_slice::<CloudError>(body) {
        return ClientError::Api {
            status: status.as_u16(),
            code: error.code,
            message: error.message,
            target: error.target,
        };
    }
    let reason = status.canonical_reason().unwrap_or("Error");
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    let message = if text.is_empty() {
        format!("HTTP {}", status.as_u16())
    } else {
        format!(
            "HTTP {}: {}",
            status.as_u16(),
            text.chars().take(500).collect::<String>()
        )
    };
    ClientError::Api {
        status: status.as_u16(),
        code: reason.replace(' ', ""),
        message,
        target: None,
    }
}

/// A websocket upgrade refused with `status`. `body` is what came with the head, maybe not all of
/// the body: ARM's error when it is whole, else a message that says what was refused.
fn refused_upgrade(status: StatusCode, body: &[u8]) -> ClientError {
    if serde_json::from_slice::<CloudError>(body).is_ok() {
        return api_error(status, body);
    }
    ClientError::Api {
        status: status.as_u16(),
        code: status
            .canonical_reason()
            .unwrap_or("Error")
            .replace(' ', ""),
        message: format!(
            "HTTP {}: the server refused to open the session",
            status.as_u16()
        ),
        target: None,
    }
}

/// `s` as one percent-encoded path segment.
pub fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'(' | b')') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn client(endpoint: &str) -> Client {
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
        Client {
            http: reqwest::Client::new(),
            websocket_tls: Arc::new(tls),
            base: parse_endpoint(endpoint).unwrap(),
            fallbacks: Vec::new(),
            token: "t".into(),
        }
    }

    #[test]
    fn a_request_moves_to_another_endpoint_below_its_path() {
        let url = Url::parse("https://a:1/subscriptions/s?api-version=v").unwrap();
        let from = parse_endpoint("https://a:1").unwrap();
        assert_eq!(
            rebase(&url, &from, &parse_endpoint("https://b:2/berth/").unwrap()).as_str(),
            "https://b:2/berth/subscriptions/s?api-version=v"
        );
        let prefixed = Url::parse("https://a:1/berth/x").unwrap();
        assert_eq!(
            rebase(
                &prefixed,
                &parse_endpoint("https://a:1/berth/").unwrap(),
                &parse_endpoint("https://b:2").unwrap()
            )
            .as_str(),
            "https://b:2/x"
        );
    }

    #[test]
    fn paths_get_the_endpoint_and_an_api_version() {
        let c = client("https://127.0.0.1:8443");
        assert_eq!(
            c.url_for("/subscriptions/s/providers/x", API_VERSION)
                .as_str(),
            "https://127.0.0.1:8443/subscriptions/s/providers/x?api-version=2023-05-01"
        );
        assert_eq!(
            c.url_for("/subscriptions?api-version=2020-01-01", API_VERSION)
                .as_str(),
            "https://127.0.0.1:8443/subscriptions?api-version=2020-01-01"
        );
        assert_eq!(
            c.url_for("/x/logs?tail=5", "2018-10-01").as_str(),
            "https://127.0.0.1:8443/x/logs?tail=5&api-version=2018-10-01"
        );
        let prefixed = client("https://h/berth/");
        assert_eq!(
            prefixed.url_for("/a", "v").as_str(),
            "https://h/berth/a?api-version=v"
        );
    }

    #[test]
    fn server_urls_stay_on_the_endpoint() {
        let c = client("https://127.0.0.1:8443");
        let same = "https://127.0.0.1:8443/subscriptions/s/operations/1?api-version=2018-06-01";
        assert_eq!(c.url_for(same, API_VERSION).as_str(), same);
        let foreign = "https://management.azure.com/subscriptions/s/providers/Microsoft.ContainerInstance/locations/l/operations/1?api-version=2018-06-01";
        assert_eq!(
            c.url_for(foreign, API_VERSION).as_str(),
            "https://127.0.0.1:8443/subscriptions/s/providers/Microsoft.ContainerInstance/locations/l/operations/1?api-version=2018-06-01"
        );
    }

    #[test]
    fn only_https_endpoints() {
        assert!(matches!(
            parse_endpoint("http://127.0.0.1:8443"),
            Err(ClientError::InvalidEndpoint { .. })
        ));
        assert!(parse_endpoint("127.0.0.1:8443").is_err());
        assert!(parse_endpoint("https://h:1?x=1").is_err());
    }

    #[test]
    fn error_bodies_become_api_errors() {
        let body = br#"{"error":{"code":"ResourceNotFound","message":"gone","target":"web"}}"#;
        let err = api_error(StatusCode::NOT_FOUND, body);
        assert_eq!(err.to_string(), "ResourceNotFound: gone (target: web)");
        assert_eq!(err.status(), Some(404));
        let err = api_error(StatusCode::BAD_GATEWAY, b"<html>upstream</html>");
        assert_eq!(
            err.to_string(),
            "BadGateway: HTTP 502: <html>upstream</html>"
        );
        let err = api_error(StatusCode::UNAUTHORIZED, b"");
        assert_eq!(err.to_string(), "Unauthorized: HTTP 401");
    }

    #[test]
    fn refused_upgrades_say_what_was_refused() {
        let body = br#"{"error":{"code":"AuthenticationFailed","message":"ask for a new one"}}"#;
        let err = refused_upgrade(StatusCode::UNAUTHORIZED, body);
        assert_eq!(err.to_string(), "AuthenticationFailed: ask for a new one");
        let err = refused_upgrade(StatusCode::UNAUTHORIZED, &body[..10]);
        assert_eq!(
            err.to_string(),
            "Unauthorized: HTTP 401: the server refused to open the session"
        );
        assert_eq!(err.status(), Some(401));
    }

    #[test]
    fn segments_are_escaped() {
        assert_eq!(segment("my-rg.(1)_x"), "my-rg.(1)_x");
        assert_eq!(segment("a b/c?"), "a%20b%2Fc%3F");
    }

    #[test]
    fn retry_after_and_async_operation_headers() {
        let mut headers = HeaderMap::new();
        headers.insert("Azure-AsyncOperation", "https://h/op".parse().unwrap());
        headers.insert(header::RETRY_AFTER, "3".parse().unwrap());
        let r = Response {
            method: Method::PUT,
            url: Url::parse("https://h/").unwrap(),
            status: StatusCode::CREATED,
            headers,
            body: vec![],
        };
        assert_eq!(r.async_operation(), Some("https://h/op"));
        assert_eq!(r.retry_after(), Some(Duration::from_secs(3)));
    }
}
