//! Dialling the node gateway: TCP, then rustls with our own [`ClientConfig`], under tonic.
//!
//! tonic's `ClientTlsConfig` cannot take a custom certificate verifier (needed for the CA pin), so the
//! agent brings its own connector and hands tonic an already-encrypted stream. tonic must then believe
//! the endpoint is plain `http://` (or it would try TLS itself); requests still carry the `https`
//! origin.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tonic::transport::{Channel, Endpoint};

/// The port of the node gateway when `--server` names none.
pub const DEFAULT_PORT: u16 = berth_proto::ports::NODE;

/// Why `--server` is not a usable address.
#[derive(Debug, thiserror::Error)]
pub enum ServerAddrError {
    /// Not a URI.
    #[error("{0:?} is not a URL like https://host:8444")]
    Invalid(String),
    /// A scheme other than https.
    #[error("the node gateway speaks TLS only: use https://, not {0}://")]
    Scheme(String),
    /// The host cannot be a TLS server name.
    #[error("{0:?} is neither a DNS name nor an IP address")]
    Host(String),
}

/// The apiserver's node gateway, parsed once from `--server`; possibly one of the addresses its name
/// resolves to ([`ServerAddr::at`]), still verified as the name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerAddr {
    host: String,
    port: u16,
    /// The address to connect to instead of resolving `host`.
    ip: Option<IpAddr>,
    server_name: ServerName<'static>,
    /// What tonic dials (it must not try TLS itself).
    plain: Uri,
    /// What requests say they go to.
    origin: Uri,
}

impl FromStr for ServerAddr {
    type Err = ServerAddrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let with_scheme = if s.contains("://") {
            s.to_string()
        } else {
            format!("https://{s}")
        };
        let uri: Uri = with_scheme
            .parse()
            .map_err(|_| ServerAddrError::Invalid(s.to_string()))?;
        match uri.scheme_str() {
            Some("https") => {}
            Some(other) => return Err(ServerAddrError::Scheme(other.to_string())),
            None => return Err(ServerAddrError::Invalid(s.to_string())),
        }
        let authority = uri
            .authority()
            .ok_or_else(|| ServerAddrError::Invalid(s.to_string()))?;
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        if host.is_empty() {
            return Err(ServerAddrError::Invalid(s.to_string()));
        }
        let port = authority.port_u16().unwrap_or(DEFAULT_PORT);
        let server_name =
            ServerName::try_from(host.clone()).map_err(|_| ServerAddrError::Host(host.clone()))?;
        let authority = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let plain = format!("http://{authority}")
            .parse()
            .map_err(|_| ServerAddrError::Invalid(s.to_string()))?;
        let origin = format!("https://{authority}")
            .parse()
            .map_err(|_| ServerAddrError::Invalid(s.to_string()))?;
        Ok(Self {
            host,
            port,
            ip: None,
            server_name,
            plain,
            origin,
        })
    }
}

impl ServerAddr {
    /// The server's host: a DNS name or an IP address (without brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The same server reached at `ip` (one of the addresses its name resolves to): connects there,
    /// still verifies the certificate for the name.
    pub fn at(&self, ip: IpAddr) -> Self {
        Self {
            ip: Some(ip),
            ..self.clone()
        }
    }

    /// Whether the host is an IP address (nothing to resolve).
    pub fn is_ip(&self) -> bool {
        self.host.parse::<IpAddr>().is_ok()
    }
}

impl std::fmt::Display for ServerAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.origin.fmt(f)?;
        match self.ip {
            Some(ip) => write!(f, " ({ip})"),
            None => Ok(()),
        }
    }
}

/// Why a connection could not be made.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    /// TCP connect failed.
    #[error("cannot connect to {addr}")]
    Connect {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    /// The server's certificate is not trusted (wrong CA, CA pin not in the chain, wrong name).
    #[error("the server at {addr} is not trusted")]
    Untrusted {
        addr: String,
        #[source]
        source: rustls::Error,
    },
    /// The TLS handshake failed otherwise.
    #[error("TLS handshake with {addr} failed")]
    Handshake {
        addr: String,
        #[source]
        source: std::io::Error,
    },
}

impl DialError {
    /// The [`DialError::Untrusted`] somewhere in `error`'s source chain, if any.
    pub fn find_untrusted<'a>(
        error: &'a (dyn std::error::Error + 'static),
    ) -> Option<&'a DialError> {
        let mut current = Some(error);
        while let Some(error) = current {
            if let Some(dial @ DialError::Untrusted { .. }) = error.downcast_ref::<DialError>() {
                return Some(dial);
            }
            current = error.source();
        }
        None
    }
}

/// A tower connector: TCP connect plus a rustls handshake offering ALPN `h2`.
#[derive(Clone)]
pub struct TlsDialer {
    config: Arc<ClientConfig>,
    server: Arc<ServerAddr>,
}

impl TlsDialer {
    /// A connector to `server` with `config` (which must offer ALPN `h2`).
    pub fn new(server: Arc<ServerAddr>, config: Arc<ClientConfig>) -> Self {
        Self { config, server }
    }

    async fn connect(self) -> Result<TokioIo<TlsStream<TcpStream>>, DialError> {
        let server = &self.server;
        let addr = match server.ip {
            Some(ip) => SocketAddr::new(ip, server.port).to_string(),
            None => format!("{}:{}", server.host, server.port),
        };
        let connected = match server.ip {
            Some(ip) => TcpStream::connect((ip, server.port)).await,
            None => TcpStream::connect((server.host.as_str(), server.port)).await,
        };
        let tcp = connected.map_err(|source| DialError::Connect {
            addr: addr.clone(),
            source,
        })?;
        // Latency matters more than packet count for small gRPC frames.
        let _ = tcp.set_nodelay(true);
        let tls = TlsConnector::from(self.config)
            .connect(self.server.server_name.clone(), tcp)
            .await
            .map_err(|source| classify(addr, source))?;
        Ok(TokioIo::new(tls))
    }
}

fn classify(addr: String, source: std::io::Error) -> DialError {
    let rustls_error = source
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    match rustls_error {
        Some(error @ rustls::Error::InvalidCertificate(_)) => DialError::Untrusted {
            addr,
            source: error.clone(),
        },
        _ => DialError::Handshake { addr, source },
    }
}

impl tower::Service<Uri> for TlsDialer {
    type Response = TokioIo<TlsStream<TcpStream>>;
    type Error = DialError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, DialError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: Uri) -> Self::Future {
        Box::pin(self.clone().connect())
    }
}

/// Connects a tonic channel to `server` over `config`.
pub async fn dial(
    server: &Arc<ServerAddr>,
    config: Arc<ClientConfig>,
) -> Result<Channel, tonic::transport::Error> {
    Endpoint::from(server.plain.clone())
        .origin(server.origin.clone())
        .connect_timeout(Duration::from_secs(10))
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(20))
        .connect_with_connector(TlsDialer::new(Arc::clone(server), config))
        .await
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn server_addresses_parse() {
        let addr: ServerAddr = "https://127.0.0.1:8444".parse().unwrap();
        assert_eq!((addr.host.as_str(), addr.port), ("127.0.0.1", 8444));
        assert_eq!(addr.plain.to_string(), "http://127.0.0.1:8444/");
        assert_eq!(addr.origin.to_string(), "https://127.0.0.1:8444/");

        let addr: ServerAddr = "berth.example.com".parse().unwrap();
        assert_eq!(
            (addr.host.as_str(), addr.port),
            ("berth.example.com", DEFAULT_PORT)
        );

        let addr: ServerAddr = "https://[::1]:9000/".parse().unwrap();
        assert_eq!((addr.host.as_str(), addr.port), ("::1", 9000));
        assert_eq!(addr.origin.to_string(), "https://[::1]:9000/");

        assert!(matches!(
            "http://127.0.0.1:8444".parse::<ServerAddr>(),
            Err(ServerAddrError::Scheme(_))
        ));
        assert!(
            "https://".parse::<ServerAddr>().is_err(),
            "a host is required"
        );
    }
}
