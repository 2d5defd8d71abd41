//! [`crate::run`] against a minimal in-process `NodeService` over real TLS: just enough server to see
//! the agent join, say `Hello`, converge a group, reconnect and shut down. The real apiserver is tested
//! end to end elsewhere.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use berth_proto::node::agent_report::Body;
use berth_proto::node::node_service_server::{NodeService, NodeServiceServer};
use berth_proto::node::{
    AgentReport, Container, DesiredPhase, DesiredState, GroupAssignment, GroupPhase, GroupSpec,
    GroupStatus, Hello, JoinRequest, JoinResponse, Resources,
};
use futures::Stream;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, IsCa, Issuer, KeyPair,
};
use tokio::sync::mpsc;
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tokio_util::sync::CancellationToken;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tonic::{Request, Response, Status, Streaming};

use crate::{AgentConfig, HollowConfig, RuntimeKind};

const TOKEN: &str = "abc123.0123456789abcdef";

/// One `Sync` stream as the test sees it: what the agent reports, and a sender for desired states.
struct Conn {
    reports: mpsc::UnboundedReceiver<AgentReport>,
    desired: mpsc::Sender<Result<DesiredState, Status>>,
}

struct Fake {
    issuer: Issuer<'static, KeyPair>,
    ca_pem: String,
    heartbeat_ms: u32,
    conns: mpsc::UnboundedSender<Conn>,
}

type DesiredStream = Pin<Box<dyn Stream<Item = Result<DesiredState, Status>> + Send>>;

#[tonic::async_trait]
impl NodeService for Fake {
    async fn join(&self, request: Request<JoinRequest>) -> Result<Response<JoinResponse>, Status> {
        let request = request.into_inner();
        if request.token != TOKEN {
            return Err(Status::unauthenticated("join token unknown or used up"));
        }
        let csr = CertificateSigningRequestParams::from_pem(&request.csr_pem)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let cert = csr
            .signed_by(&self.issuer)
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(JoinResponse {
            node_id: format!("id-{}", request.node_name),
            certificate_pem: cert.pem(),
            ca_pem: self.ca_pem.clone(),
            heartbeat_interval_ms: self.heartbeat_ms,
        }))
    }

    type SyncStream = DesiredStream;

    async fn sync(
        &self,
        request: Request<Streaming<AgentReport>>,
    ) -> Result<Response<Self::SyncStream>, Status> {
        if request.peer_certs().is_none_or(|certs| certs.is_empty()) {
            return Err(Status::unauthenticated("client certificate required"));
        }
        let mut inbound = request.into_inner();
        let (reports_tx, reports) = mpsc::unbounded_channel();
        let (desired, desired_rx) = mpsc::channel(16);
        tokio::spawn(async move {
            while let Some(Ok(report)) = inbound.next().await {
                if reports_tx.send(report).is_err() {
                    break;
                }
            }
        });
        let _ = self.conns.send(Conn { reports, desired });
        Ok(Response::new(Box::pin(ReceiverStream::new(desired_rx))))
    }
}

struct Harness {
    addr: SocketAddr,
    ca_sha256: String,
    conns: mpsc::UnboundedReceiver<Conn>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn serve() -> Harness {
    serve_with_heartbeat(200).await
}

async fn serve_with_heartbeat(heartbeat_ms: u32) -> Harness {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let server_key = KeyPair::generate().unwrap();
    let server_cert = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&server_key, &issuer)
        .unwrap();
    let tls = ServerTlsConfig::new()
        .identity(Identity::from_pem(
            format!("{}{}", server_cert.pem(), ca.pem()),
            server_key.serialize_pem(),
        ))
        .client_ca_root(Certificate::from_pem(ca.pem()))
        .client_auth_optional(true);
    let (conns_tx, conns) = mpsc::unbounded_channel();
    let fake = Fake {
        issuer,
        ca_pem: ca.pem(),
        heartbeat_ms,
        conns: conns_tx,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        Server::builder()
            .tls_config(tls)
            .unwrap()
            .add_service(NodeServiceServer::new(fake))
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
    });
    Harness {
        addr,
        ca_sha256: hex::encode(crate::identity::pin::cert_sha256(ca.der())),
        conns,
        _stop: stop,
    }
}

fn config(harness: &Harness, state_dir: &std::path::Path, token: &str) -> AgentConfig {
    let mut config = AgentConfig::new(format!("https://{}", harness.addr), state_dir, "node-a");
    config.join_token = Some(format!("{token}.{}", harness.ca_sha256));
    config.capacity = Resources {
        cpu_millis: 4000,
        memory_mib: 8192,
        ..Default::default()
    };
    config.labels.insert("zone".into(), "a".into());
    config.runtime = RuntimeKind::Hollow(HollowConfig {
        start_delay: Duration::from_millis(50),
        ..HollowConfig::default()
    });
    config
}

async fn within<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), future)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

async fn next_conn(harness: &mut Harness) -> Conn {
    within("a Sync stream", harness.conns.recv()).await.unwrap()
}

async fn next_hello(conn: &mut Conn) -> (u64, Hello) {
    let report = within("Hello", conn.reports.recv()).await.unwrap();
    match report.body {
        Some(Body::Hello(hello)) => (report.seq, hello),
        other => panic!("first message is not Hello: {other:?}"),
    }
}

/// The next group status, skipping heartbeats.
async fn group_status(conn: &mut Conn) -> GroupStatus {
    loop {
        let report = within("a GroupStatus", conn.reports.recv()).await.unwrap();
        match report.body {
            Some(Body::Group(status)) => return status,
            Some(Body::Heartbeat(_)) => continue,
            other => panic!("unexpected report {other:?}"),
        }
    }
}

fn group(id: &str, generation: u64) -> GroupAssignment {
    GroupAssignment {
        placement: 1,
        group_id: id.into(),
        generation,
        phase: DesiredPhase::Running as i32,
        spec: Some(GroupSpec {
            name: id.into(),
            restart_policy: "Always".into(),
            containers: vec![Container {
                name: "web".into(),
                image: "nginx".into(),
                ..Default::default()
            }],
            ..Default::default()
        }),
    }
}

#[tokio::test]
async fn joins_syncs_converges_reconnects_and_shuts_down() {
    let mut harness = serve().await;
    let dir = tempfile::tempdir().unwrap();
    let shutdown = CancellationToken::new();
    let agent = tokio::spawn(crate::run(
        config(&harness, dir.path(), TOKEN),
        shutdown.clone(),
    ));

    let mut conn = next_conn(&mut harness).await;
    let (seq, hello) = next_hello(&mut conn).await;
    assert_eq!(
        seq & 0xffff_ffff,
        1,
        "the first report of a start: {seq:#x}"
    );
    assert!(seq >> 32 >= 1, "numbered within a start epoch: {seq:#x}");
    assert!(hello.groups.is_empty());
    assert_eq!(hello.capacity.unwrap().cpu_millis, 4000);
    assert_eq!(hello.labels, HashMap::from([("zone".into(), "a".into())]));
    for file in ["node.key", "node.crt", "ca.crt", "node.json"] {
        assert!(dir.path().join(file).is_file(), "{file} written");
    }
    let node: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("node.json")).unwrap()).unwrap();
    assert_eq!(node["node_id"], "id-node-a");
    assert_eq!(node["heartbeat_interval_ms"], 200);

    conn.desired
        .send(Ok(DesiredState {
            seq: 1,
            full: true,
            groups: vec![group("g1", 1)],
            removed: vec![],
            dns_server: String::new(),
        }))
        .await
        .unwrap();
    let pending = group_status(&mut conn).await;
    assert_eq!(
        (pending.group_id.as_str(), pending.phase()),
        ("g1", GroupPhase::Pending)
    );
    let running = group_status(&mut conn).await;
    assert_eq!(running.phase(), GroupPhase::Running);

    // A heartbeat arrives within the interval the join answered.
    loop {
        let report = within("a heartbeat", conn.reports.recv()).await.unwrap();
        if matches!(report.body, Some(Body::Heartbeat(_))) {
            break;
        }
    }

    // The server ends the stream: the agent comes back with Hello, the group still running.
    drop(conn);
    let mut conn = next_conn(&mut harness).await;
    let (seq, hello) = next_hello(&mut conn).await;
    assert!(seq > 3, "seq keeps increasing across streams: {seq}");
    assert_eq!(hello.groups.len(), 1);
    assert_eq!(hello.groups[0].phase(), GroupPhase::Running);

    // Full state without g1: torn down, REMOVED once.
    conn.desired
        .send(Ok(DesiredState {
            seq: 1,
            full: true,
            groups: vec![],
            removed: vec![],
            dns_server: String::new(),
        }))
        .await
        .unwrap();
    let mut status = group_status(&mut conn).await;
    while status.phase() != GroupPhase::Removed {
        status = group_status(&mut conn).await;
    }
    assert_eq!(status.generation, 1);

    shutdown.cancel();
    within("run to return", agent).await.unwrap().unwrap();

    // With state on disk, a restarted agent does not join again (no token needed).
    let mut config = config(&harness, dir.path(), TOKEN);
    config.join_token = None;
    let shutdown = CancellationToken::new();
    let agent = tokio::spawn(crate::run(config, shutdown.clone()));
    let mut conn = next_conn(&mut harness).await;
    let (_, hello) = next_hello(&mut conn).await;
    assert!(
        hello.groups.is_empty(),
        "hollow groups vanish with the process"
    );
    shutdown.cancel();
    within("run to return", agent).await.unwrap().unwrap();
}

#[tokio::test]
async fn a_refused_join_is_fatal_with_the_servers_message() {
    let harness = serve().await;
    let dir = tempfile::tempdir().unwrap();
    let result = within(
        "run to fail",
        crate::run(
            config(&harness, dir.path(), "zzz999.0123456789abcdef"),
            CancellationToken::new(),
        ),
    )
    .await;
    let error = result.unwrap_err().to_string();
    assert_eq!(
        error,
        "node node-a cannot join: the apiserver refused the join (Unauthenticated): join token unknown or used up"
    );
    assert!(!dir.path().join("node.crt").exists());
}

#[tokio::test]
async fn many_hollow_nodes_join_and_sync_independently() {
    let mut harness = serve().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(&harness, dir.path(), TOKEN);
    config.hollow_nodes = 40;
    let shutdown = CancellationToken::new();
    let agent = tokio::spawn(crate::run(config, shutdown.clone()));
    for _ in 0..40 {
        let mut conn = next_conn(&mut harness).await;
        next_hello(&mut conn).await;
    }
    for i in [0, 17, 39] {
        let path = dir.path().join(format!("node-a-{i}")).join("node.json");
        // Forty hellos may include a reconnect under load: wait for this node's identity file.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while !path.exists() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let node: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(node["node_id"], format!("id-node-a-{i}"));
    }
    shutdown.cancel();
    within("run to return", agent).await.unwrap().unwrap();
}

/// How long `BERTH_BENCH_NODES` (default 2000) hollow nodes take to join and open their streams, and
/// the process's memory (agent and this fake server together). Run with
/// `cargo test -p berth-node-agent --release bench_ -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "benchmark"]
async fn bench_thousands_of_hollow_nodes_join() {
    let nodes: u32 = std::env::var("BERTH_BENCH_NODES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let mut harness = serve_with_heartbeat(5000).await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(&harness, dir.path(), TOKEN);
    config.hollow_nodes = nodes;
    let shutdown = CancellationToken::new();
    let started = std::time::Instant::now();
    let agent = tokio::spawn(crate::run(config, shutdown.clone()));
    let mut conns = Vec::new();
    for _ in 0..nodes {
        let mut conn = next_conn(&mut harness).await;
        next_hello(&mut conn).await;
        conns.push(conn);
    }
    let elapsed = started.elapsed();
    let rss = std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS"))
        .unwrap_or_default()
        .to_string();
    eprintln!("{nodes} nodes joined and said Hello in {elapsed:?}; {rss}");
    shutdown.cancel();
    within("run to return", agent).await.unwrap().unwrap();
    assert!(
        elapsed < Duration::from_secs(120),
        "joining took {elapsed:?}"
    );
}
