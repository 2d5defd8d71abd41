//! Clients that say exactly what a test needs on the wire: raw HTTP/1.1 bytes over TLS (malformed
//! heads, `Expect: 100-continue`, pipelining), reqwest pinned to one protocol, and `curl`.

use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, ServerName};
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// HTTP/1.1 or HTTP/2, for tests that run over both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    H1,
    H2,
}

pub const BOTH: [Proto; 2] = [Proto::H1, Proto::H2];

/// A reqwest client trusting `ca_pem` that speaks only `proto`.
pub fn client(ca_pem: &str, proto: Proto) -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let builder = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).expect("CA PEM"))
        .timeout(Duration::from_secs(30));
    match proto {
        Proto::H1 => builder.http1_only(),
        Proto::H2 => builder.http2_prior_knowledge(),
    }
    .build()
    .expect("client")
}

/// One HTTP/1.1 response as read off the wire.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|_| {
            Value::String(format!(
                "not JSON: {:?}",
                String::from_utf8_lossy(&self.body)
            ))
        })
    }
}

/// A TLS connection speaking HTTP/1.1 (ALPN `http/1.1`) to `base` (`https://localhost:<port>`).
pub struct RawConn {
    tls: tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    buf: Vec<u8>,
}

impl RawConn {
    pub async fn open(base: &str, ca_pem: &str) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let port = base.rsplit(':').next().expect("port in base URL");
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            roots.add(cert.expect("CA PEM")).expect("CA certificate");
        }
        let mut config = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let tcp = tokio::net::TcpStream::connect(format!("127.0.0.1:{port}"))
            .await
            .expect("connect");
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(ServerName::try_from("localhost").expect("name"), tcp)
            .await
            .expect("TLS handshake");
        Self {
            tls,
            buf: Vec::new(),
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.tls.write_all(bytes).await.expect("write");
        self.tls.flush().await.expect("flush");
    }

    /// Writes `bytes`, tolerating a server that stopped reading (it may have answered already).
    pub async fn send_lossy(&mut self, bytes: &[u8]) {
        let _ = self.tls.write_all(bytes).await;
        let _ = self.tls.flush().await;
    }

    /// Reads one response (head, then a `Content-Length` body, or up to EOF); panics after 10 s.
    pub async fn response(&mut self) -> RawResponse {
        tokio::time::timeout(Duration::from_secs(10), self.read_response())
            .await
            .expect("a response within 10 s")
    }

    /// The bytes the server sends within `wait` (the connection may stay open).
    pub async fn read_for(&mut self, wait: Duration) -> Vec<u8> {
        let _ = tokio::time::timeout(wait, async {
            loop {
                let mut chunk = [0u8; 8192];
                match self.tls.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                }
            }
        })
        .await;
        std::mem::take(&mut self.buf)
    }

    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 8192];
        match self.tls.read(&mut chunk).await {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }

    async fn read_response(&mut self) -> RawResponse {
        let head_end = loop {
            if let Some(at) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            assert!(
                self.fill().await,
                "connection closed before a response head; got {:?}",
                String::from_utf8_lossy(&self.buf)
            );
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).into_owned();
        let mut lines = head.split("\r\n");
        let status_line = lines.next().expect("status line");
        let status: u16 = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
        let headers: Vec<(String, String)> = lines
            .filter(|l| !l.is_empty())
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
            .collect();
        self.buf.drain(..head_end);
        let length = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.parse::<usize>().ok());
        let body = match length {
            Some(n) => {
                while self.buf.len() < n {
                    assert!(self.fill().await, "connection closed inside a body");
                }
                self.buf.drain(..n).collect()
            }
            None if (100..200).contains(&status) => Vec::new(),
            None => {
                while self.fill().await {}
                std::mem::take(&mut self.buf)
            }
        };
        RawResponse {
            status,
            headers,
            body,
        }
    }
}

/// One request on a fresh connection; the answer.
pub async fn raw(base: &str, ca_pem: &str, request: &[u8]) -> RawResponse {
    let mut conn = RawConn::open(base, ca_pem).await;
    conn.send_lossy(request).await;
    conn.response().await
}

/// `curl` with the cluster's CA: the HTTP status and the body.
pub fn curl(ca_file: &std::path::Path, args: &[&str]) -> (u16, Vec<u8>) {
    let out = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "30", "--cacert"])
        .arg(ca_file)
        .args(["-o", "-", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("curl runs");
    let mut stdout = out.stdout;
    let at = stdout
        .iter()
        .rposition(|b| *b == b'\n')
        .expect("curl wrote the status");
    let code = String::from_utf8_lossy(&stdout[at + 1..]).trim().to_owned();
    stdout.truncate(at);
    (
        code.parse().unwrap_or_else(|_| {
            panic!(
                "curl status {code:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        }),
        stdout,
    )
}
