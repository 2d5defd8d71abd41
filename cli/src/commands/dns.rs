//! `berth dns check NAME`: asks Berth's DNS server (not the system's resolver, which may cache or not
//! know the zone) and says whether the name resolves.
//!
//! One query, no recursion asked, over UDP (TCP with `--tcp`, or when the UDP answer is truncated),
//! bounded by `--timeout`. Exit 0 with the answers, one per line; exit 1 with the reason otherwise.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use hickory_proto::op::{Message, MessageType, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpStream, UdpSocket};

use crate::cli::{DnsCheckArgs, DnsRecordType};
use crate::config::Settings;
use crate::output::{self, OutputFormat};

/// The port of Berth's DNS server (the apiserver's embedded one and `berth-dns`).
pub const DEFAULT_DNS_PORT: u16 = berth_proto::ports::DNS;

/// Why a check failed; `main` exits 1 with this message.
#[derive(Debug, thiserror::Error)]
pub enum DnsCheckError {
    #[error("NXDOMAIN: {name} does not exist (asked {server})")]
    NxDomain { name: String, server: SocketAddr },
    #[error("REFUSED: {server} does not serve {name} (it is outside Berth's zone?)")]
    Refused { name: String, server: SocketAddr },
    #[error("{code}: {server} could not answer for {name}")]
    Failed {
        code: String,
        name: String,
        server: SocketAddr,
    },
    #[error("no {record_type} record for {name} (asked {server})")]
    NoAnswer {
        record_type: RecordType,
        name: String,
        server: SocketAddr,
    },
    #[error("no answer from {server} over {transport} within {timeout:?}")]
    Timeout {
        server: SocketAddr,
        transport: &'static str,
        timeout: Duration,
    },
}

/// Resolves `args.name` through Berth's DNS server and prints the answers.
pub async fn check(
    settings: &Settings,
    format: OutputFormat,
    args: &DnsCheckArgs,
) -> anyhow::Result<()> {
    let server = server_address(args.server.as_deref(), settings.endpoint.as_deref()).await?;
    let name = Name::from_ascii(&args.name)
        .with_context(|| format!("'{}' is not a DNS name", args.name))?;
    let name = if name.is_fqdn() {
        name
    } else {
        Name::from_ascii(format!("{}.", args.name))
            .with_context(|| format!("'{}' is not a DNS name", args.name))?
    };
    let record_type = RecordType::from(args.record_type);
    let timeout = Duration::from_secs(args.timeout);
    let answer = ask(server, &name, record_type, args.tcp, timeout).await?;
    let shown = name.to_string();
    match answer.metadata.response_code {
        ResponseCode::NoError => {}
        ResponseCode::NXDomain => {
            return Err(DnsCheckError::NxDomain {
                name: shown,
                server,
            }
            .into());
        }
        ResponseCode::Refused => {
            return Err(DnsCheckError::Refused {
                name: shown,
                server,
            }
            .into());
        }
        code => {
            return Err(DnsCheckError::Failed {
                code: code.to_string(),
                name: shown,
                server,
            }
            .into());
        }
    }
    let records: Vec<_> = answer
        .answers
        .iter()
        .filter(|r| r.record_type() == record_type)
        .collect();
    if records.is_empty() {
        return Err(DnsCheckError::NoAnswer {
            record_type,
            name: shown,
            server,
        }
        .into());
    }
    let document = Value::Array(
        records
            .iter()
            .map(|r| {
                json!({
                    "name": r.name.to_string(),
                    "type": r.record_type().to_string(),
                    "ttl": r.ttl,
                    "data": r.data.to_string(),
                })
            })
            .collect(),
    );
    match output::document(format, &document)? {
        Some(text) => output::emit(&text),
        None => {
            let lines: Vec<String> = records.iter().map(|r| r.data.to_string()).collect();
            output::emit(&lines.join("\n"))
        }
    }
}

/// `--server` (`HOST:PORT`, `[V6]:PORT`, or `HOST` for port 5353), else the host of the configured
/// endpoint on port 5353.
pub async fn server_address(
    flag: Option<&str>,
    endpoint: Option<&str>,
) -> anyhow::Result<SocketAddr> {
    let (host, port) = match flag {
        Some(server) => split_host_port(server)
            .with_context(|| format!("--server '{server}' is not HOST:PORT"))?,
        None => {
            let endpoint = endpoint.context(
                "no DNS server: pass --server HOST:PORT, or set an endpoint (berth login, --endpoint or BERTH_ENDPOINT) whose host runs it",
            )?;
            // Of several endpoints (replicas), the first.
            let endpoint = endpoint.split(',').next().unwrap_or(endpoint).trim();
            let url = reqwest::Url::parse(endpoint)
                .with_context(|| format!("the endpoint '{endpoint}' is not a URL"))?;
            let host = url
                .host_str()
                .with_context(|| format!("the endpoint '{endpoint}' names no host"))?;
            (unbracket(host).to_owned(), DEFAULT_DNS_PORT)
        }
    };
    if let Ok(ip) = host.parse() {
        return Ok(SocketAddr::new(ip, port));
    }
    tokio::net::lookup_host((host.as_str(), port))
        .await
        .with_context(|| format!("cannot resolve the DNS server's host '{host}'"))?
        .next()
        .with_context(|| format!("the DNS server's host '{host}' has no address"))
}

fn unbracket(host: &str) -> &str {
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

/// `host:port`, `[v6]:port`, `[v6]`, a bare IP address or `host` (the last three on port 5353).
fn split_host_port(server: &str) -> Option<(String, u16)> {
    if let Ok(addr) = server.parse::<SocketAddr>() {
        return Some((addr.ip().to_string(), addr.port()));
    }
    if let Ok(ip) = unbracket(server).parse::<std::net::IpAddr>() {
        return Some((ip.to_string(), DEFAULT_DNS_PORT));
    }
    let (host, port) = match server.rsplit_once(':') {
        Some((host, port)) => (host, port.parse().ok()?),
        None => (server, DEFAULT_DNS_PORT),
    };
    if host.is_empty() || host.contains([':', '[', ']']) {
        return None;
    }
    Some((host.to_owned(), port))
}

/// Sends the query and returns the server's answer to it: over UDP unless `tcp`, then over TCP if
/// the UDP answer came truncated.
async fn ask(
    server: SocketAddr,
    name: &Name,
    record_type: RecordType,
    tcp: bool,
    timeout: Duration,
) -> anyhow::Result<Message> {
    let mut query = Message::query();
    // An authoritative server answers for its zone; asking it to recurse means nothing here.
    query.metadata.recursion_desired = false;
    query.add_query(Query::query(name.clone(), record_type));
    let id = query.metadata.id;
    let bytes = query.to_vec().context("cannot encode the DNS query")?;
    if !tcp {
        let answer = bounded(server, "UDP", timeout, ask_udp(server, &bytes, id)).await?;
        if !answer.metadata.truncation {
            return Ok(answer);
        }
    }
    bounded(server, "TCP", timeout, ask_tcp(server, &bytes, id)).await
}

async fn bounded(
    server: SocketAddr,
    transport: &'static str,
    timeout: Duration,
    asking: impl Future<Output = anyhow::Result<Message>>,
) -> anyhow::Result<Message> {
    match tokio::time::timeout(timeout, asking).await {
        Ok(answer) => answer,
        Err(_) => Err(DnsCheckError::Timeout {
            server,
            transport,
            timeout,
        }
        .into()),
    }
}

/// Whether `answer` is the answer to query `id` (anything else on the socket is ignored).
fn answers(answer: &Message, id: u16) -> bool {
    answer.metadata.id == id && answer.metadata.message_type == MessageType::Response
}

async fn ask_udp(server: SocketAddr, query: &[u8], id: u16) -> anyhow::Result<Message> {
    let local: SocketAddr = if server.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(local)
        .await
        .context("cannot open a UDP socket")?;
    socket
        .connect(server)
        .await
        .with_context(|| format!("cannot reach {server} over UDP"))?;
    socket
        .send(query)
        .await
        .with_context(|| format!("cannot send the query to {server}"))?;
    let mut buffer = vec![0; 65_535];
    loop {
        let n = socket
            .recv(&mut buffer)
            .await
            .with_context(|| format!("no answer from {server} over UDP"))?;
        // A stray or garbled datagram is not the answer: keep waiting for it (within the timeout).
        if let Ok(answer) = Message::from_vec(&buffer[..n])
            && answers(&answer, id)
        {
            return Ok(answer);
        }
    }
}

async fn ask_tcp(server: SocketAddr, query: &[u8], id: u16) -> anyhow::Result<Message> {
    let mut stream = TcpStream::connect(server)
        .await
        .with_context(|| format!("cannot connect to {server} over TCP"))?;
    let length = u16::try_from(query.len()).context("the DNS query is too long")?;
    let mut framed = Vec::with_capacity(query.len() + 2);
    framed.extend_from_slice(&length.to_be_bytes());
    framed.extend_from_slice(query);
    stream
        .write_all(&framed)
        .await
        .with_context(|| format!("cannot send the query to {server}"))?;
    let read = async {
        let length = stream.read_u16().await?;
        let mut answer = vec![0; usize::from(length)];
        stream.read_exact(&mut answer).await?;
        Ok::<_, std::io::Error>(answer)
    };
    let answer = read
        .await
        .with_context(|| format!("{server} closed the TCP connection without an answer"))?;
    let answer = Message::from_vec(&answer)
        .with_context(|| format!("{server} answered with a malformed DNS message"))?;
    anyhow::ensure!(
        answers(&answer, id),
        "{server} answered another query over TCP"
    );
    Ok(answer)
}

impl From<DnsRecordType> for RecordType {
    fn from(value: DnsRecordType) -> Self {
        match value {
            DnsRecordType::A => Self::A,
            DnsRecordType::Aaaa => Self::AAAA,
            DnsRecordType::Soa => Self::SOA,
            DnsRecordType::Ns => Self::NS,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn server_flags_split_into_host_and_port() {
        let split = |s: &str| split_host_port(s);
        assert_eq!(split("127.0.0.1:53"), Some(("127.0.0.1".into(), 53)));
        assert_eq!(split("dns.example"), Some(("dns.example".into(), 5353)));
        assert_eq!(
            split("dns.example:5300"),
            Some(("dns.example".into(), 5300))
        );
        assert_eq!(split("[::1]:5300"), Some(("::1".into(), 5300)));
        assert_eq!(split("[::1]"), Some(("::1".into(), 5353)));
        assert_eq!(split("::1"), Some(("::1".into(), 5353)));
        assert_eq!(split("dns.example:port"), None);
        assert_eq!(split(":53"), None);
        assert_eq!(split(""), None);
    }

    #[tokio::test]
    async fn the_default_server_is_the_endpoints_host_on_5353() {
        let addr = server_address(None, Some("https://127.0.0.1:8443"))
            .await
            .unwrap();
        assert_eq!(addr, "127.0.0.1:5353".parse().unwrap());
        let addr = server_address(None, Some("https://[::1]:8443"))
            .await
            .unwrap();
        assert_eq!(addr, "[::1]:5353".parse().unwrap());
        let addr = server_address(Some("10.1.2.3:53"), Some("https://127.0.0.1:8443"))
            .await
            .unwrap();
        assert_eq!(addr, "10.1.2.3:53".parse().unwrap());
        let err = server_address(None, None).await.unwrap_err();
        assert!(err.to_string().contains("--server"), "{err}");
    }
}
