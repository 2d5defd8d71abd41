//! `AgentService` over real mutual TLS with a throw-away cluster CA: who may call, what `Logs`
//! answers from log files written into a temp dir, and how `Exec` treats its protocol. `exec` runs
//! processes in real containers.

mod exec;

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_proto::node::agent_service_client::AgentServiceClient;
use berth_proto::node::{
    ContainerRun, ContainerState, ContainerStatus, ExecInput, ExecStart, GroupAssignment,
    GroupStatus, JoinResponse, LogsRequest, TerminalSize, exec_input,
};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};
use rustls_pki_types::pem::PemObject as _;
use tokio_util::sync::CancellationToken;
use tonic::Code;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use super::*;
use crate::runtime::{BoxFuture, RuntimeError};

/// A runtime that runs nothing and keeps the logs of some containers in given directories; its
/// groups' statuses are whatever the test sets.
struct LogsOnly {
    dirs: HashMap<(String, String), PathBuf>,
    statuses: Mutex<HashMap<String, GroupStatus>>,
}

impl LogsOnly {
    fn set_status(&self, status: GroupStatus) {
        self.statuses
            .lock()
            .unwrap()
            .insert(status.group_id.clone(), status);
    }

    fn forget(&self, group_id: &str) {
        self.statuses.lock().unwrap().remove(group_id);
    }
}

/// Group `g1` in `phase`, its container `web` in `state`.
fn g1(phase: GroupPhase, state: ContainerState) -> GroupStatus {
    GroupStatus {
        group_id: "g1".into(),
        phase: phase as i32,
        containers: vec![ContainerStatus {
            name: "web".into(),
            current: Some(ContainerRun {
                state: state as i32,
                ..Default::default()
            }),
            ..Default::default()
        }],
        ..Default::default()
    }
}

impl Runtime for LogsOnly {
    fn start<'a>(&'a self, _: &'a GroupAssignment) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async { Ok(()) })
    }
    fn stop<'a>(&'a self, _: &'a GroupAssignment) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async { Ok(()) })
    }
    fn remove<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async { Ok(()) })
    }
    fn status(&self, group_id: &str) -> Option<GroupStatus> {
        self.statuses.lock().unwrap().get(group_id).cloned()
    }
    fn groups(&self) -> Vec<GroupStatus> {
        Vec::new()
    }
    fn log_dir(&self, group_id: &str, container: &str) -> Option<PathBuf> {
        self.dirs
            .get(&(group_id.to_owned(), container.to_owned()))
            .cloned()
    }
}

struct Pki {
    ca_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// (certificate PEM, key PEM)
type Pair = (String, String);

impl Pki {
    fn new() -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "test cluster CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = params.self_signed(&key).unwrap();
        Self {
            ca_pem: ca.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A certificate as the apiserver's CA issues them: `cn`, DNS SANs `sans`, the given usages.
    fn issue(&self, cn: &str, sans: &[&str], usages: &[ExtendedKeyUsagePurpose]) -> Pair {
        let key = KeyPair::generate().unwrap();
        let sans: Vec<String> = sans.iter().map(|s| (*s).to_owned()).collect();
        let mut params = CertificateParams::new(sans).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = usages.to_vec();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn node(&self, id: &str) -> Pair {
        self.issue(
            &format!("node:{id}"),
            &[&names::node(id)],
            &[
                ExtendedKeyUsagePurpose::ClientAuth,
                ExtendedKeyUsagePurpose::ServerAuth,
            ],
        )
    }

    fn apiserver(&self) -> Pair {
        self.issue(
            names::APISERVER,
            &[names::APISERVER],
            &[ExtendedKeyUsagePurpose::ClientAuth],
        )
    }

    /// The node's identity as the agent keeps it after joining.
    fn identity(&self, id: &str) -> crate::identity::Identity {
        let (cert_pem, key_pem) = self.node(id);
        let response = JoinResponse {
            node_id: id.to_owned(),
            certificate_pem: cert_pem,
            ca_pem: self.ca_pem.clone(),
            heartbeat_interval_ms: 0,
        };
        let ca_der = rustls_pki_types::CertificateDer::from_pem_slice(self.ca_pem.as_bytes());
        let pin = crate::identity::pin::cert_sha256(ca_der.unwrap().as_ref());
        crate::identity::Identity::from_join(id, key_pem, &response, pin).unwrap()
    }
}

struct Agent {
    pki: Pki,
    addr: SocketAddr,
    logs: tempfile::TempDir,
    /// The runtime of [`Agent::start`] (unused by [`Agent::serving`]).
    fake: Arc<LogsOnly>,
    shutdown: CancellationToken,
    server: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Agent {
    /// Node `n1` serving the logs of container `web` of group `g1` (running) from a temp dir.
    async fn start() -> Self {
        Self::serve(None).await
    }

    /// Node `n1` serving `runtime`.
    async fn serving(runtime: Arc<dyn Runtime>) -> Self {
        Self::serve(Some(runtime)).await
    }

    async fn serve(runtime: Option<Arc<dyn Runtime>>) -> Self {
        let pki = Pki::new();
        let logs = tempfile::tempdir().unwrap();
        let fake = Arc::new(LogsOnly {
            dirs: HashMap::from([(("g1".into(), "web".into()), logs.path().to_path_buf())]),
            statuses: Mutex::default(),
        });
        fake.set_status(g1(GroupPhase::Running, ContainerState::Running));
        let runtime = runtime.unwrap_or_else(|| Arc::clone(&fake) as Arc<dyn Runtime>);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let serving = AgentServer::new(runtime, shutdown.clone())
            .with_poll(Duration::from_millis(20))
            .serve(listener, pki.identity("n1").agent_tls())
            .unwrap();
        let server = tokio::spawn(serving);
        Self {
            pki,
            addr,
            logs,
            fake,
            shutdown,
            server,
        }
    }

    fn dir(&self) -> &Path {
        self.logs.path()
    }

    /// A client verifying the agent as node `n1`, presenting `identity` (or no certificate).
    async fn client(&self, identity: Option<Pair>) -> Result<AgentServiceClient<Channel>, Status> {
        let mut tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.pki.ca_pem))
            .domain_name(names::node("n1"));
        if let Some((cert, key)) = identity {
            tls = tls.identity(Identity::from_pem(cert, key));
        }
        let channel = Endpoint::from_shared(format!("https://{}", self.addr))
            .unwrap()
            .tls_config(tls)
            .unwrap()
            .connect()
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        Ok(AgentServiceClient::new(channel))
    }

    async fn apiserver(&self) -> AgentServiceClient<Channel> {
        self.client(Some(self.pki.apiserver())).await.unwrap()
    }
}

fn request(tail: Option<u32>, timestamps: bool, follow: bool, previous: bool) -> LogsRequest {
    LogsRequest {
        group_id: "g1".into(),
        container: "web".into(),
        tail,
        timestamps,
        follow,
        previous,
        since_unix_ms: None,
    }
}

/// The whole answer of a call that ends.
async fn read_all(
    client: &mut AgentServiceClient<Channel>,
    request: LogsRequest,
) -> Result<String, Status> {
    let mut stream = client.logs(request).await?.into_inner();
    let mut text = Vec::new();
    while let Some(chunk) = stream.message().await? {
        text.extend(chunk.data);
    }
    Ok(String::from_utf8(text).unwrap())
}

fn write(dir: &Path, file: &str, text: &str) {
    std::fs::write(dir.join(file), text).unwrap();
}

fn append(dir: &Path, file: &str, text: &str) {
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(dir.join(file))
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
}

const T1: &str = "2025-01-01T00:00:01Z";
const T2: &str = "2025-01-01T00:00:02Z";
const T3: &str = "2025-01-01T00:00:03Z";

fn write_run(dir: &Path) {
    write(
        dir,
        "current.log.1",
        &format!("{T1} stdout one\n{T2} stderr two\n"),
    );
    write(dir, "current.log", &format!("{T3} stdout three\n"));
    write(dir, "previous.log", &format!("{T1} stdout before\n"));
}

#[tokio::test]
async fn the_apiserver_reads_logs_with_tail_timestamps_and_previous() {
    let agent = Agent::start().await;
    write_run(agent.dir());
    let mut client = agent.apiserver().await;

    let all = read_all(&mut client, request(None, false, false, false)).await;
    assert_eq!(all.unwrap(), "one\ntwo\nthree\n");
    let tail = read_all(&mut client, request(Some(2), true, false, false)).await;
    assert_eq!(tail.unwrap(), format!("{T2} two\n{T3} three\n"));
    let none = read_all(&mut client, request(Some(0), false, false, false)).await;
    assert_eq!(none.unwrap(), "");
    let previous = read_all(&mut client, request(None, false, false, true)).await;
    assert_eq!(previous.unwrap(), "before\n");
    // Following a previous run just reads it: it no longer grows.
    let previous = read_all(&mut client, request(None, false, true, true)).await;
    assert_eq!(previous.unwrap(), "before\n");
}

#[tokio::test]
async fn a_large_log_arrives_whole_in_chunks() {
    let agent = Agent::start().await;
    let line = "x".repeat(1000);
    let text: String = (0..300).map(|_| format!("{T1} stdout {line}\n")).collect();
    write(agent.dir(), "current.log", &text);
    let mut client = agent.apiserver().await;
    let mut stream = client
        .logs(request(None, false, false, false))
        .await
        .unwrap()
        .into_inner();
    let mut chunks = 0;
    let mut received = 0;
    while let Some(chunk) = stream.message().await.unwrap() {
        assert!(chunk.data.len() <= CHUNK);
        chunks += 1;
        received += chunk.data.len();
    }
    assert_eq!(received, 300 * 1001);
    assert!(chunks > 1, "{chunks} chunk(s)");
}

#[tokio::test]
async fn an_unknown_container_is_not_found() {
    let agent = Agent::start().await;
    let mut client = agent.apiserver().await;
    let mut other = request(None, false, false, false);
    other.container = "db".into();
    let status = read_all(&mut client, other).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status}");
    let mut other = request(None, false, false, false);
    other.group_id = "g2".into();
    let status = read_all(&mut client, other).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status}");
}

#[tokio::test]
async fn a_node_certificate_is_refused() {
    let agent = Agent::start().await;
    write_run(agent.dir());
    // Signed by the same CA, valid for client auth: still not the apiserver.
    let mut node = agent.client(Some(agent.pki.node("n2"))).await.unwrap();
    let status = read_all(&mut node, request(None, false, false, false))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status}");
    // Nor is a certificate that merely calls itself the apiserver in its CN but names others.
    let impostor = agent.pki.issue(
        names::APISERVER,
        &["n3.node.berth.internal"],
        &[ExtendedKeyUsagePurpose::ClientAuth],
    );
    let mut impostor = agent.client(Some(impostor)).await.unwrap();
    let status = read_all(&mut impostor, request(None, false, false, false))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status}");
}

#[tokio::test]
async fn a_client_without_a_certificate_or_from_another_ca_is_refused() {
    let agent = Agent::start().await;
    write_run(agent.dir());
    let answer = match agent.client(None).await {
        Ok(mut client) => read_all(&mut client, request(None, false, false, false)).await,
        Err(status) => Err(status),
    };
    let status = answer.unwrap_err();
    assert_ne!(status.code(), Code::Ok);

    // The apiserver's name, from a CA the agent does not trust.
    let stranger = Pki::new().apiserver();
    let answer = match agent.client(Some(stranger)).await {
        Ok(mut client) => read_all(&mut client, request(None, false, false, false)).await,
        Err(status) => Err(status),
    };
    assert!(answer.is_err(), "{answer:?}");
}

/// Reads from a followed stream until the text received so far ends with `want`.
async fn expect(stream: &mut tonic::Streaming<LogChunk>, received: &mut String, want: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !received.ends_with(want) {
        let next = tokio::time::timeout_at(deadline, stream.message()).await;
        let chunk = next
            .unwrap_or_else(|_| panic!("never got {want:?}; got {received:?}"))
            .unwrap()
            .expect("the followed stream stays open");
        received.push_str(std::str::from_utf8(&chunk.data).unwrap());
    }
}

#[tokio::test]
async fn following_sees_appends_rotations_new_runs_and_truncation() {
    let agent = Agent::start().await;
    let dir = agent.dir();
    write_run(dir);
    let mut client = agent.apiserver().await;
    let mut stream = client
        .logs(request(Some(1), true, true, false))
        .await
        .unwrap()
        .into_inner();
    let mut got = String::new();
    expect(&mut stream, &mut got, &format!("{T3} three\n")).await;
    assert_eq!(
        got,
        format!("{T3} three\n"),
        "tail applies to the first answer"
    );

    // Appended, in two writes that split a line.
    append(dir, "current.log", &format!("{T1} stdout fo"));
    tokio::time::sleep(Duration::from_millis(60)).await;
    append(dir, "current.log", "ur\n");
    expect(&mut stream, &mut got, &format!("{T1} four\n")).await;

    // Rotated as berth-logger does, with a last line written just before the rename.
    append(dir, "current.log", &format!("{T2} stdout five\n"));
    std::fs::rename(dir.join("current.log.1"), dir.join("current.log.2")).unwrap();
    std::fs::rename(dir.join("current.log"), dir.join("current.log.1")).unwrap();
    append(dir, "current.log", &format!("{T3} stderr six\n"));
    expect(&mut stream, &mut got, &format!("{T2} five\n{T3} six\n")).await;

    // A new run: the current files become the previous run's.
    std::fs::rename(dir.join("current.log"), dir.join("previous.log")).unwrap();
    append(dir, "current.log", &format!("{T1} stdout seven\n"));
    expect(&mut stream, &mut got, &format!("{T1} seven\n")).await;

    // Truncated in place (no rotated files kept).
    append(dir, "current.log", &format!("{T1} stdout eight\n"));
    expect(&mut stream, &mut got, &format!("{T1} eight\n")).await;
    std::fs::OpenOptions::new()
        .write(true)
        .open(dir.join("current.log"))
        .unwrap()
        .set_len(0)
        .unwrap();
    tokio::time::sleep(Duration::from_millis(60)).await;
    append(dir, "current.log", &format!("{T2} stdout 9\n"));
    expect(&mut stream, &mut got, &format!("{T2} 9\n")).await;

    assert_eq!(
        got,
        format!("{T3} three\n{T1} four\n{T2} five\n{T3} six\n{T1} seven\n{T1} eight\n{T2} 9\n"),
        "every line exactly once, in order"
    );
}

#[tokio::test]
async fn following_a_log_that_does_not_exist_yet_waits_for_it() {
    let agent = Agent::start().await;
    let mut client = agent.apiserver().await;
    let mut stream = client
        .logs(request(None, false, true, false))
        .await
        .unwrap()
        .into_inner();
    append(agent.dir(), "current.log", &format!("{T1} stdout hello\n"));
    let mut got = String::new();
    expect(&mut stream, &mut got, "hello\n").await;
    assert_eq!(got, "hello\n");
}

#[tokio::test]
async fn an_open_follow_does_not_hold_up_shutdown() {
    let mut agent = Agent::start().await;
    write_run(agent.dir());
    let mut client = agent.apiserver().await;
    let mut stream = client
        .logs(request(None, false, true, false))
        .await
        .unwrap()
        .into_inner();
    let mut got = String::new();
    expect(&mut stream, &mut got, "three\n").await;
    agent.shutdown.cancel();
    // The followed stream ends, and the server with it.
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        while let Ok(Some(_)) = stream.message().await {}
    })
    .await;
    assert!(ended.is_ok(), "the follow never ended");
    let server = tokio::time::timeout(Duration::from_secs(10), &mut agent.server).await;
    assert!(server.is_ok(), "the server never stopped");
}

/// Reads a followed stream until it ends (`None` if it did not within 10 s).
async fn until_end(stream: &mut tonic::Streaming<LogChunk>, received: &mut String) -> Option<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::time::timeout_at(deadline, stream.message()).await {
            Err(_) => return None,
            Ok(Ok(Some(chunk))) => received.push_str(std::str::from_utf8(&chunk.data).unwrap()),
            Ok(Ok(None)) => return Some(()),
            Ok(Err(status)) => panic!("the followed stream failed: {status}"),
        }
    }
}

/// Unix ms of an RFC 3339 time.
fn unix_ms(rfc3339: &str) -> i64 {
    let time = time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
        .unwrap();
    i64::try_from(time.unix_timestamp_nanos() / 1_000_000).unwrap()
}

#[tokio::test]
async fn since_keeps_the_lines_logged_at_or_after_it_in_reads_and_follows() {
    let agent = Agent::start().await;
    let dir = agent.dir();
    write_run(dir);
    let mut client = agent.apiserver().await;
    let since = |ms, tail, follow| LogsRequest {
        since_unix_ms: Some(ms),
        ..request(tail, true, follow, false)
    };

    let read = read_all(&mut client, since(unix_ms(T2), None, false)).await;
    assert_eq!(read.unwrap(), format!("{T2} two\n{T3} three\n"));
    // `tail` counts among the lines since.
    let read = read_all(&mut client, since(unix_ms(T2), Some(1), false)).await;
    assert_eq!(read.unwrap(), format!("{T3} three\n"));
    let read = read_all(&mut client, since(unix_ms(T3) + 1, None, false)).await;
    assert_eq!(read.unwrap(), "");

    let mut stream = client
        .logs(since(unix_ms(T3), None, true))
        .await
        .unwrap()
        .into_inner();
    let mut got = String::new();
    expect(&mut stream, &mut got, &format!("{T3} three\n")).await;
    // Appended lines are filtered too (a clock can go back, a file can hold older lines).
    append(
        dir,
        "current.log",
        &format!("{T1} stdout old\n{T3} stdout new\n"),
    );
    expect(&mut stream, &mut got, &format!("{T3} new\n")).await;
    assert_eq!(got, format!("{T3} three\n{T3} new\n"));
}

#[tokio::test]
async fn a_followed_log_ends_once_the_container_has_stopped_for_good() {
    let agent = Agent::start().await;
    let dir = agent.dir();
    write_run(dir);
    let mut client = agent.apiserver().await;
    let follow = || request(None, false, true, false);

    // Terminated, but the group runs on (it restarts under Always): the log may grow again.
    let mut stream = client.logs(follow()).await.unwrap().into_inner();
    let mut got = String::new();
    expect(&mut stream, &mut got, "three\n").await;
    agent
        .fake
        .set_status(g1(GroupPhase::Running, ContainerState::Terminated));
    tokio::time::sleep(Duration::from_millis(200)).await;
    append(dir, "current.log", &format!("{T1} stdout four\n"));
    expect(&mut stream, &mut got, "four\n").await;

    // Succeeded: what is written just after the exit still comes, then the stream ends.
    agent
        .fake
        .set_status(g1(GroupPhase::Succeeded, ContainerState::Terminated));
    append(dir, "current.log", &format!("{T1} stdout last\n"));
    assert!(until_end(&mut stream, &mut got).await.is_some(), "{got:?}");
    assert_eq!(got, "one\ntwo\nthree\nfour\nlast\n");

    // A follow begun after the end reads what there is and ends.
    let all = read_all(&mut client, follow()).await.unwrap();
    assert_eq!(all, "one\ntwo\nthree\nfour\nlast\n");

    // Stopped, with the container still waiting to restart: nothing will run again.
    agent
        .fake
        .set_status(g1(GroupPhase::Stopped, ContainerState::Waiting));
    let all = read_all(&mut client, follow()).await.unwrap();
    assert_eq!(all, "one\ntwo\nthree\nfour\nlast\n");

    // The group is removed from the node while the log is followed.
    agent
        .fake
        .set_status(g1(GroupPhase::Running, ContainerState::Running));
    let mut stream = client.logs(follow()).await.unwrap().into_inner();
    let mut got = String::new();
    expect(&mut stream, &mut got, "last\n").await;
    agent.fake.forget("g1");
    assert!(until_end(&mut stream, &mut got).await.is_some(), "{got:?}");
}

fn start_message(group_id: &str, container: &str, command: &[&str]) -> ExecInput {
    ExecInput {
        input: Some(exec_input::Input::Start(ExecStart {
            group_id: group_id.into(),
            container: container.into(),
            command: command.iter().map(|s| (*s).to_owned()).collect(),
            tty: false,
            stdin: false,
            size: None,
        })),
    }
}

/// The status an `Exec` call whose inbound messages are `messages` fails with.
async fn exec_refusal(
    client: &mut AgentServiceClient<Channel>,
    messages: Vec<ExecInput>,
) -> Status {
    let call = client.exec(tokio_stream::iter(messages)).await;
    match call {
        Err(status) => status,
        Ok(response) => {
            let mut output = response.into_inner();
            match output.message().await {
                Err(status) => status,
                other => panic!("Exec was not refused: {other:?}"),
            }
        }
    }
}

#[tokio::test]
async fn exec_starts_with_start_and_only_the_apiserver_may_call_it() {
    let agent = Agent::start().await;
    let mut client = agent.apiserver().await;
    let resize = ExecInput {
        input: Some(exec_input::Input::Resize(TerminalSize { rows: 1, cols: 1 })),
    };
    let status = exec_refusal(&mut client, vec![resize]).await;
    assert_eq!(status.code(), Code::InvalidArgument, "{status}");
    let status = exec_refusal(&mut client, vec![]).await;
    assert_eq!(status.code(), Code::InvalidArgument, "{status}");
    let status = exec_refusal(&mut client, vec![start_message("g1", "web", &[])]).await;
    assert_eq!(status.code(), Code::InvalidArgument, "{status}");
    // A runtime that runs no processes.
    let status = exec_refusal(&mut client, vec![start_message("g1", "web", &["ls"])]).await;
    assert_eq!(status.code(), Code::Unimplemented, "{status}");

    let mut node = agent.client(Some(agent.pki.node("n2"))).await.unwrap();
    let status = exec_refusal(&mut node, vec![start_message("g1", "web", &["ls"])]).await;
    assert_eq!(status.code(), Code::PermissionDenied, "{status}");
}

#[tokio::test]
async fn the_hollow_runtime_cannot_exec() {
    let hollow = crate::runtime::hollow::HollowRuntime::new(
        crate::HollowConfig::default(),
        "n1",
        crate::runtime::Changes::default(),
    );
    let agent = Agent::serving(Arc::new(hollow)).await;
    let mut client = agent.apiserver().await;
    let status = exec_refusal(&mut client, vec![start_message("g1", "web", &["ls"])]).await;
    assert_eq!(status.code(), Code::Unimplemented, "{status}");
}

#[test]
fn the_apiserver_is_named_by_its_san_or_else_its_cn() {
    let pki = Pki::new();
    let der = |pair: &Pair| {
        rustls_pki_types::CertificateDer::from_pem_slice(pair.0.as_bytes())
            .unwrap()
            .as_ref()
            .to_vec()
    };
    assert!(names_apiserver(&der(&pki.apiserver())));
    assert!(!names_apiserver(&der(&pki.node("n1"))));
    let cn_only = pki.issue(names::APISERVER, &[], &[]);
    assert!(names_apiserver(&der(&cn_only)));
    let other_san = pki.issue(names::APISERVER, &["elsewhere.example"], &[]);
    assert!(!names_apiserver(&der(&other_san)));
    assert!(!names_apiserver(b"not a certificate"));
}

#[test]
fn endpoint_urls_bracket_ipv6() {
    assert_eq!(
        endpoint_url("10.0.0.5".parse().unwrap(), 8445),
        "https://10.0.0.5:8445"
    );
    assert_eq!(
        endpoint_url("::1".parse().unwrap(), 8445),
        "https://[::1]:8445"
    );
}
