//! `httpGet` probes, from inside the group's network namespace as kubelet probes from the pod's: a
//! short-lived thread enters the namespace (`setns`) only to make the socket, which stays in that
//! namespace wherever it is used; the connection, TLS and request then run on the agent's runtime.
//! One GET to the group's address (loopback if it has none) on the probe's port, HTTP/1.1,
//! `Connection: close`, the spec's headers (a `Host` header among them replaces the default); the
//! response's status line and headers are read, up to [`MAX_HEAD`] bytes. 200-399 passes. `https`
//! verifies no certificate (as kubelet), only the handshake.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::AsFd as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use berth_proto::node::HttpGet;
use nix::sched::CloneFlags;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpSocket;

use super::state::Outcome;

/// The most of a response read looking for the end of its head.
pub(super) const MAX_HEAD: usize = 16 * 1024;

/// Why no status came back.
#[derive(Debug, thiserror::Error)]
pub(super) enum HttpError {
    #[error("cannot open network namespace {}: {source}", path.display())]
    Netns {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot enter network namespace {}: {source}", path.display())]
    Setns {
        path: PathBuf,
        #[source]
        source: nix::Error,
    },
    #[error("cannot make a socket: {0}")]
    Socket(#[source] std::io::Error),
    #[error("the thread making the socket died")]
    Thread,
    #[error("{0}")]
    Connect(#[source] std::io::Error),
    #[error("TLS handshake: {0}")]
    Tls(#[source] std::io::Error),
    #[error("{0}")]
    Io(#[source] std::io::Error),
    #[error("the connection closed before a response")]
    NoResponse,
    #[error("the response head is over {MAX_HEAD} bytes")]
    HeadTooLarge,
    #[error("malformed response: {0}")]
    Malformed(#[source] httparse::Error),
}

/// What one probe connects to and sends.
#[derive(Debug, Clone)]
pub(super) struct Request {
    pub netns: PathBuf,
    pub addr: SocketAddr,
    pub https: bool,
    /// The request's head, ready to send.
    pub head: Vec<u8>,
    /// The URL, for messages.
    pub url: String,
}

impl Request {
    /// The request of probe `get` to `ip` (loopback if none) in namespace `netns`.
    pub(super) fn new(netns: &Path, ip: Option<IpAddr>, get: &HttpGet) -> Self {
        let ip = ip.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
        let port = u16::try_from(get.port).unwrap_or(0);
        let addr = SocketAddr::new(ip, port);
        let https = get.scheme.eq_ignore_ascii_case("https");
        let path = if get.path.is_empty() {
            "/"
        } else {
            get.path.as_str()
        };
        let url = format!("{}://{addr}{path}", if https { "https" } else { "http" });
        Self {
            netns: netns.to_path_buf(),
            addr,
            https,
            head: head(path, &addr, get),
            url,
        }
    }
}

/// The request head: kubelet's defaults (`Host`, `User-Agent`, `Accept`), each replaced by a header of
/// the spec with the same name, then the spec's others. Names and values were admitted by
/// [`berth_proto::spec::probe`] (tokens; no CR or LF).
fn head(path: &str, addr: &SocketAddr, get: &HttpGet) -> Vec<u8> {
    let mut names: Vec<&String> = get.headers.keys().collect();
    names.sort();
    let given = |name: &str| names.iter().any(|n| n.eq_ignore_ascii_case(name));
    let mut head = format!("GET {path} HTTP/1.1\r\n");
    if !given("host") {
        head.push_str(&format!("Host: {addr}\r\n"));
    }
    if !given("user-agent") {
        head.push_str(&format!(
            "User-Agent: berth-probe/{}\r\n",
            env!("CARGO_PKG_VERSION")
        ));
    }
    if !given("accept") {
        head.push_str("Accept: */*\r\n");
    }
    for name in names {
        head.push_str(&format!("{name}: {}\r\n", get.headers[name]));
    }
    head.push_str("Connection: close\r\n\r\n");
    head.into_bytes()
}

/// Runs one probe within `timeout`.
pub(super) async fn run(request: &Request, tls: &Arc<ClientConfig>, timeout: Duration) -> Outcome {
    match tokio::time::timeout(timeout, status(request, tls)).await {
        Ok(Ok(code)) if (200..400).contains(&code) => {
            Outcome::Pass(format!("HTTP probe succeeded with status code {code}"))
        }
        Ok(Ok(code)) => Outcome::Fail(format!(
            "HTTP probe failed with status code {code} (GET {})",
            request.url
        )),
        Ok(Err(error)) => Outcome::Fail(format!("GET {}: {error}", request.url)),
        Err(_) => Outcome::Fail(format!(
            "GET {}: timed out after {}s",
            request.url,
            timeout.as_secs_f64()
        )),
    }
}

async fn status(request: &Request, tls: &Arc<ClientConfig>) -> Result<u16, HttpError> {
    let socket = socket_in(&request.netns, request.addr).await?;
    let stream = socket
        .connect(request.addr)
        .await
        .map_err(HttpError::Connect)?;
    if request.https {
        let name = ServerName::IpAddress(request.addr.ip().into());
        let stream = tokio_rustls::TlsConnector::from(Arc::clone(tls))
            .connect(name, stream)
            .await
            .map_err(HttpError::Tls)?;
        exchange(stream, &request.head).await
    } else {
        exchange(stream, &request.head).await
    }
}

/// A TCP socket made inside network namespace `netns`, by a thread of its own that enters it (a
/// thread from a pool would stay in the namespace).
async fn socket_in(netns: &Path, addr: SocketAddr) -> Result<TcpSocket, HttpError> {
    let netns = netns.to_path_buf();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("probe-netns".into())
        .spawn(move || {
            let made = (|| {
                let file = std::fs::File::open(&netns).map_err(|source| HttpError::Netns {
                    path: netns.clone(),
                    source,
                })?;
                nix::sched::setns(file.as_fd(), CloneFlags::CLONE_NEWNET).map_err(|source| {
                    HttpError::Setns {
                        path: netns.clone(),
                        source,
                    }
                })?;
                match addr {
                    SocketAddr::V4(_) => TcpSocket::new_v4(),
                    SocketAddr::V6(_) => TcpSocket::new_v6(),
                }
                .map_err(HttpError::Socket)
            })();
            let _ = tx.send(made);
        });
    spawned.map_err(HttpError::Socket)?;
    rx.await.map_err(|_| HttpError::Thread)?
}

/// Sends `head` and reads the response's status code.
async fn exchange(
    mut stream: impl AsyncRead + AsyncWrite + Unpin,
    head: &[u8],
) -> Result<u16, HttpError> {
    stream.write_all(head).await.map_err(HttpError::Io)?;
    stream.flush().await.map_err(HttpError::Io)?;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0_u8; 2048];
    loop {
        let n = stream.read(&mut chunk).await.map_err(HttpError::Io)?;
        if n == 0 {
            return Err(HttpError::NoResponse);
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(code) = status_code(&buf)? {
            return Ok(code);
        }
        if buf.len() > MAX_HEAD {
            return Err(HttpError::HeadTooLarge);
        }
    }
}

/// The status code of a response head read so far; `None` while incomplete.
fn status_code(buf: &[u8]) -> Result<Option<u16>, HttpError> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut headers);
    match response.parse(buf) {
        Ok(httparse::Status::Complete(_)) => Ok(response.code),
        Ok(httparse::Status::Partial) => Ok(None),
        // Over 64 headers: the status line is what matters, and it parsed.
        Err(httparse::Error::TooManyHeaders) => Ok(response.code),
        Err(error) => Err(HttpError::Malformed(error)),
    }
}

/// The TLS client of `https` probes: no certificate is verified (kubelet's `InsecureSkipVerify`); the
/// handshake's signatures still are.
pub(super) fn insecure_tls() -> Result<Arc<ClientConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(AnyCertificate {
        algorithms: provider.signature_verification_algorithms,
    });
    let config = ClientConfig::builder_with_provider(Arc::clone(&provider) as Arc<CryptoProvider>)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[derive(Debug)]
struct AnyCertificate {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::HashMap;

    use tokio::net::TcpListener;

    use super::*;

    fn get(port: u16, scheme: &str, path: &str, headers: &[(&str, &str)]) -> HttpGet {
        HttpGet {
            path: path.into(),
            port: u32::from(port),
            scheme: scheme.into(),
            headers: headers
                .iter()
                .map(|(n, v)| ((*n).to_string(), (*v).to_string()))
                .collect::<HashMap<_, _>>(),
        }
    }

    #[test]
    fn the_head_has_kubelets_defaults_unless_the_spec_replaces_them() {
        let addr: SocketAddr = "10.1.2.3:8080".parse().unwrap();
        let plain =
            String::from_utf8(head("/healthz?x=1", &addr, &get(8080, "", "", &[]))).unwrap();
        assert!(
            plain.starts_with("GET /healthz?x=1 HTTP/1.1\r\nHost: 10.1.2.3:8080\r\n"),
            "{plain}"
        );
        assert!(
            plain.contains("\r\nAccept: */*\r\n") && plain.ends_with("Connection: close\r\n\r\n")
        );
        let custom = String::from_utf8(head(
            "/",
            &addr,
            &get(8080, "", "", &[("host", "example.com"), ("X-Probe", "1")]),
        ))
        .unwrap();
        assert!(!custom.contains("10.1.2.3"), "{custom}");
        assert!(
            custom.contains("\r\nhost: example.com\r\n") && custom.contains("\r\nX-Probe: 1\r\n")
        );

        let request = Request::new(Path::new("/n"), None, &get(443, "HTTPS", "", &[]));
        assert!(request.https);
        assert_eq!(request.url, "https://127.0.0.1:443/");
    }

    #[test]
    fn the_status_code_comes_from_a_complete_head() {
        assert_eq!(status_code(b"HTTP/1.1 204 No Content\r\n").unwrap(), None);
        assert_eq!(
            status_code(b"HTTP/1.1 204 No Content\r\nA: b\r\n\r\nbody").unwrap(),
            Some(204)
        );
        assert!(status_code(b"SSH-2.0-OpenSSH\r\n\r\n").is_err());
    }

    /// A server answering each connection with `response` in our own namespace; the probe enters it
    /// through `/proc/self/ns/net` (the agent enters the group's).
    async fn serve(response: &'static [u8]) -> (SocketAddr, tokio::sync::mpsc::Receiver<Vec<u8>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        tokio::spawn(async move {
            loop {
                let (mut conn, _) = listener.accept().await.unwrap();
                let mut buf = vec![0_u8; 4096];
                let n = conn.read(&mut buf).await.unwrap_or(0);
                let _ = tx.send(buf[..n].to_vec()).await;
                let _ = conn.write_all(response).await;
            }
        });
        (addr, rx)
    }

    fn request_to(addr: SocketAddr, path: &str) -> Request {
        Request::new(
            Path::new("/proc/self/ns/net"),
            Some(addr.ip()),
            &get(addr.port(), "http", path, &[("X-Probe", "yes")]),
        )
    }

    #[tokio::test]
    async fn statuses_200_to_399_pass_and_others_fail_with_the_code() {
        let tls = insecure_tls().unwrap();
        let timeout = Duration::from_secs(5);
        let (ok, mut seen) = serve(b"HTTP/1.1 302 Found\r\nLocation: /x\r\n\r\n").await;
        let outcome = run(&request_to(ok, "/ready"), &tls, timeout).await;
        assert!(matches!(outcome, Outcome::Pass(_)), "{outcome:?}");
        let sent = String::from_utf8(seen.recv().await.unwrap()).unwrap();
        assert!(
            sent.starts_with("GET /ready HTTP/1.1\r\n") && sent.contains("X-Probe: yes"),
            "{sent}"
        );

        let (bad, _seen) = serve(b"HTTP/1.1 503 Service Unavailable\r\n\r\n").await;
        let Outcome::Fail(why) = run(&request_to(bad, "/"), &tls, timeout).await else {
            panic!("a 503 passed");
        };
        assert!(why.contains("status code 503"), "{why}");
    }

    #[tokio::test]
    async fn refused_silent_and_garbled_servers_fail() {
        let tls = insecure_tls().unwrap();
        // Nothing listens on a port just freed.
        let closed = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap();
        let Outcome::Fail(why) = run(&request_to(closed, "/"), &tls, Duration::from_secs(5)).await
        else {
            panic!("a refused connection passed");
        };
        assert!(why.contains("refused"), "{why}");

        // Accepts and never answers: the timeout ends it.
        let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = silent.local_addr().unwrap();
        let started = std::time::Instant::now();
        let Outcome::Fail(why) =
            run(&request_to(addr, "/"), &tls, Duration::from_millis(300)).await
        else {
            panic!("a silent server passed");
        };
        assert!(
            why.contains("timed out") && started.elapsed() < Duration::from_secs(3),
            "{why}"
        );
        drop(silent);

        let (garbled, _seen) = serve(b"not http at all\r\n\r\n").await;
        let outcome = run(&request_to(garbled, "/"), &tls, Duration::from_secs(5)).await;
        assert!(
            matches!(outcome, Outcome::Fail(ref why) if why.contains("malformed")),
            "{outcome:?}"
        );
    }

    #[tokio::test]
    async fn a_namespace_that_cannot_be_entered_fails() {
        let tls = insecure_tls().unwrap();
        let mut request = request_to("127.0.0.1:1".parse().unwrap(), "/");
        request.netns = PathBuf::from("/nonexistent/netns");
        let Outcome::Fail(why) = run(&request, &tls, Duration::from_secs(5)).await else {
            panic!("passed without a namespace");
        };
        assert!(why.contains("/nonexistent/netns"), "{why}");
    }
}
