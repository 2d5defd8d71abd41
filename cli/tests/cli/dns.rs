//! `berth dns check` against a scripted DNS responder on 127.0.0.1 (UDP and TCP on one port): what it
//! prints, how it says what went wrong, and its exit codes. Berth's real server is tested in dns/.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::SOA;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, UdpSocket};

use super::{Run, run};

/// A DNS responder for zone `berth.internal` with a few scripted names; records which transport
/// each query came over.
struct Responder {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<(&'static str, String)>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Responder {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// The answer to `query` over `transport`; `None` to stay silent.
fn respond(query: &Message, transport: &'static str) -> Option<Message> {
    let question = query.queries.first()?;
    let name = question.name.to_ascii().to_ascii_lowercase();
    let mut answer = Message::response(query.metadata.id, query.metadata.op_code);
    answer.metadata.authoritative = true;
    answer.add_query(question.clone());
    let a = |ip: [u8; 4]| {
        Record::from_rdata(
            question.name.clone(),
            60,
            RData::A(Ipv4Addr::from(ip).into()),
        )
    };
    match (name.as_str(), question.query_type) {
        ("web.local.berth.internal.", RecordType::A) => {
            answer.add_answer(a([10, 0, 0, 5]));
        }
        ("web.local.berth.internal.", _) => {}
        ("big.local.berth.internal.", RecordType::A) if transport == "udp" => {
            answer.metadata.truncation = true;
        }
        ("big.local.berth.internal.", RecordType::A) => {
            answer.add_answer(a([10, 0, 0, 6]));
            answer.add_answer(a([10, 0, 0, 7]));
        }
        ("berth.internal.", RecordType::SOA) => {
            let soa = SOA::new(
                Name::from_ascii("ns1.berth.internal.").ok()?,
                Name::from_ascii("hostmaster.berth.internal.").ok()?,
                42,
                3600,
                600,
                86400,
                60,
            );
            answer.add_answer(Record::from_rdata(
                question.name.clone(),
                3600,
                RData::SOA(soa),
            ));
        }
        ("silent.local.berth.internal.", _) => return None,
        (name, _) if name.ends_with(".berth.internal.") => {
            answer.metadata.response_code = ResponseCode::NXDomain;
        }
        _ => answer.metadata.response_code = ResponseCode::Refused,
    }
    Some(answer)
}

impl Responder {
    async fn start() -> Self {
        let seen = Arc::new(Mutex::new(Vec::new()));
        // UDP on port 0, then TCP on the same port (retried in the unlikely case it is taken).
        let (udp, tcp) = loop {
            let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            if let Ok(tcp) = TcpListener::bind(udp.local_addr().unwrap()).await {
                break (udp, tcp);
            }
        };
        let addr = udp.local_addr().unwrap();
        let udp_seen = seen.clone();
        let udp_task = tokio::spawn(async move {
            let mut buffer = vec![0; 4096];
            loop {
                let Ok((n, from)) = udp.recv_from(&mut buffer).await else {
                    return;
                };
                let Ok(query) = Message::from_vec(&buffer[..n]) else {
                    continue;
                };
                udp_seen.lock().unwrap().push(("udp", query_name(&query)));
                if let Some(answer) = respond(&query, "udp") {
                    let _ = udp.send_to(&answer.to_vec().unwrap(), from).await;
                }
            }
        });
        let tcp_seen = seen.clone();
        let tcp_task = tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = tcp.accept().await else {
                    return;
                };
                let seen = tcp_seen.clone();
                tokio::spawn(async move {
                    let Ok(length) = stream.read_u16().await else {
                        return;
                    };
                    let mut query = vec![0; usize::from(length)];
                    if stream.read_exact(&mut query).await.is_err() {
                        return;
                    }
                    let query = Message::from_vec(&query).unwrap();
                    seen.lock().unwrap().push(("tcp", query_name(&query)));
                    if let Some(answer) = respond(&query, "tcp") {
                        let answer = answer.to_vec().unwrap();
                        let mut framed =
                            u16::try_from(answer.len()).unwrap().to_be_bytes().to_vec();
                        framed.extend_from_slice(&answer);
                        let _ = stream.write_all(&framed).await;
                    } else {
                        // Hold the connection open without answering, as a stuck server would.
                        std::future::pending::<()>().await;
                    }
                });
            }
        });
        Self {
            addr,
            seen,
            tasks: vec![udp_task, tcp_task],
        }
    }

    fn seen(&self) -> Vec<(&'static str, String)> {
        self.seen.lock().unwrap().clone()
    }

    /// `berth dns check ARGS… --server <this>` with a clean environment (no config, no endpoint).
    async fn check(&self, args: &[&str]) -> Run {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_berth"));
        cmd.env_clear()
            .env("BERTH_CONFIG", dir.path().join("config.toml"))
            .stdin(std::process::Stdio::null());
        let server = self.addr.to_string();
        let mut line = vec!["dns", "check"];
        line.extend_from_slice(args);
        line.extend_from_slice(&["--server", &server]);
        run(&mut cmd, &line).await
    }
}

fn query_name(query: &Message) -> String {
    query
        .queries
        .first()
        .map(|q| q.name.to_ascii())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_check_prints_the_answers_and_exits_0() {
    let dns = Responder::start().await;

    let out = dns.check(&["Web.Local.berth.internal"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout, "10.0.0.5\n");
    assert_eq!(
        dns.seen(),
        [("udp", "Web.Local.berth.internal.".to_owned())]
    );

    let out = dns
        .check(&["web.local.berth.internal.", "--tcp", "-o", "json"])
        .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let json: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        json,
        serde_json::json!([{"name": "web.local.berth.internal.", "type": "A", "ttl": 60, "data": "10.0.0.5"}])
    );
    assert_eq!(dns.seen()[1].0, "tcp");

    let out = dns.check(&["berth.internal", "--type", "soa"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.stdout,
        "ns1.berth.internal. hostmaster.berth.internal. 42 3600 600 86400 60\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_udp_answer_is_asked_again_over_tcp() {
    let dns = Responder::start().await;
    let out = dns.check(&["big.local.berth.internal"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout, "10.0.0.6\n10.0.0.7\n");
    let transports: Vec<_> = dns.seen().into_iter().map(|(t, _)| t).collect();
    assert_eq!(transports, ["udp", "tcp"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_check_says_why_a_name_does_not_resolve_and_exits_1() {
    let dns = Responder::start().await;
    let server = dns.addr.to_string();
    let cases: [(&[&str], String); 5] = [
        (
            &["missing.local.berth.internal"],
            format!(
                "error: NXDOMAIN: missing.local.berth.internal. does not exist (asked {server})"
            ),
        ),
        (
            &["www.example.com"],
            format!("error: REFUSED: {server} does not serve www.example.com."),
        ),
        (
            &["web.local.berth.internal", "--type", "AAAA"],
            format!("error: no AAAA record for web.local.berth.internal. (asked {server})"),
        ),
        (
            &["silent.local.berth.internal", "--timeout", "1"],
            format!("error: no answer from {server} over UDP within 1s"),
        ),
        (
            &["silent.local.berth.internal", "--timeout", "1", "--tcp"],
            format!("error: no answer from {server} over TCP within 1s"),
        ),
    ];
    for (args, message) in cases {
        let out = dns.check(args).await;
        assert_eq!(out.code, 1, "{args:?}: {}", out.stderr);
        assert_eq!(out.stdout, "", "{args:?}");
        assert!(
            out.stderr.starts_with(&message),
            "{args:?}: {} does not start with {message}",
            out.stderr
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_check_asks_the_endpoints_host_on_5353_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_berth"));
    // Nothing answers DNS on this loopback address: the error names where the query went.
    cmd.env_clear()
        .env("BERTH_CONFIG", dir.path().join("config.toml"))
        .env("BERTH_ENDPOINT", "https://127.0.83.83:8443")
        .stdin(std::process::Stdio::null());
    let out = run(
        &mut cmd,
        &["dns", "check", "web.local.berth.internal", "--timeout", "1"],
    )
    .await;
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("127.0.83.83:5353"), "{}", out.stderr);

    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_berth"));
    cmd.env_clear()
        .env("BERTH_CONFIG", dir.path().join("config.toml"))
        .stdin(std::process::Stdio::null());
    let out = run(&mut cmd, &["dns", "check", "web.local.berth.internal"]).await;
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("pass --server HOST:PORT"),
        "{}",
        out.stderr
    );
}
