//! Agents over real gRPC with mutual TLS: joining, refusing wrong identities, NotReady, reconnects.

use std::time::Duration;

use berth_proto::clock::now_ms;
use berth_proto::node::node_service_client::NodeServiceClient;
use berth_proto::node::{AgentReport, Hello, JoinRequest, OsType, Resources, agent_report};
use reqwest::StatusCode;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

use crate::harness::{Cluster, SUB, group_body, running};

pub(crate) fn csr() -> (String, rcgen::KeyPair) {
    let key = rcgen::KeyPair::generate().expect("key");
    let csr = rcgen::CertificateParams::new(Vec::<String>::new())
        .expect("params")
        .serialize_request(&key)
        .expect("csr")
        .pem()
        .expect("pem");
    (csr, key)
}

pub(crate) async fn channel(
    cluster: &Cluster,
    identity: Option<Identity>,
    ca_pem: &str,
) -> Result<tonic::transport::Channel, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca_pem))
        .domain_name("localhost");
    if let Some(identity) = identity {
        tls = tls.identity(identity);
    }
    Endpoint::from_shared(format!("https://localhost:{}", cluster.node_addr.port()))?
        .tls_config(tls)?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
}

pub(crate) fn join_request(token: &str, name: &str, csr: &str) -> JoinRequest {
    JoinRequest {
        token: token.rsplit_once('.').expect("pin").0.to_owned(),
        node_name: name.to_owned(),
        csr_pem: csr.to_owned(),
        os_type: OsType::Linux as i32,
        capacity: Some(Resources {
            cpu_millis: 1000,
            memory_mib: 1024,
            gpu: 0,
            gpu_sku: String::new(),
        }),
        ..Default::default()
    }
}

pub(crate) fn hello() -> AgentReport {
    AgentReport {
        seq: 1,
        body: Some(agent_report::Body::Hello(Hello::default())),
    }
}

#[tokio::test]
async fn join_tokens_are_one_time_and_names_unique() {
    let cluster = Cluster::start().await;
    let token = cluster.join_token(1).await;
    let (csr_pem, _) = csr();
    let mut client = NodeServiceClient::new(
        channel(&cluster, None, &cluster.ca_pem)
            .await
            .expect("dial"),
    );
    let joined = client
        .join(join_request(&token, "n1", &csr_pem))
        .await
        .expect("join")
        .into_inner();
    assert!(joined.certificate_pem.contains("BEGIN CERTIFICATE"));
    assert_eq!(joined.ca_pem, cluster.ca_pem);

    let again = client
        .join(join_request(&token, "n2", &csr_pem))
        .await
        .expect_err("a used token is refused");
    assert_eq!(again.code(), tonic::Code::Unauthenticated);
    let fresh = cluster.join_token(2).await;
    let taken = client
        .join(join_request(&fresh, "n1", &csr_pem))
        .await
        .expect_err("name taken");
    assert_eq!(taken.code(), tonic::Code::AlreadyExists);
    let bad = client
        .join(join_request("abcdef.0123456789abcdef.00", "n3", &csr_pem))
        .await
        .expect_err("unknown token");
    assert_eq!(bad.code(), tonic::Code::Unauthenticated);
    // The pin in the token is the CA's hash.
    assert!(fresh.ends_with(&cluster.ca_hash), "{fresh}");
}

#[tokio::test]
async fn sync_needs_a_certificate_from_the_cluster_ca() {
    let cluster = Cluster::start().await;
    // No client certificate: the TLS handshake succeeds (Join needs none) but Sync is refused.
    let mut anonymous = NodeServiceClient::new(
        channel(&cluster, None, &cluster.ca_pem)
            .await
            .expect("dial"),
    );
    let refused = anonymous
        .sync(tokio_stream::iter(vec![hello()]))
        .await
        .expect_err("no certificate");
    assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused}");

    // A certificate from another CA: refused in the handshake.
    let rogue_dir = tempfile::tempdir().expect("dir");
    let rogue =
        berth_apiserver::tls::ClusterCa::load_or_create(rogue_dir.path(), None).expect("rogue CA");
    let (csr_pem, key) = csr();
    let cert = rogue.sign_node_csr(&csr_pem, "forged").expect("sign");
    let outcome = match channel(
        &cluster,
        Some(Identity::from_pem(cert, key.serialize_pem())),
        &cluster.ca_pem,
    )
    .await
    {
        Err(_) => None,
        Ok(ch) => Some(
            NodeServiceClient::new(ch)
                .sync(tokio_stream::iter(vec![hello()]))
                .await,
        ),
    };
    assert!(
        matches!(outcome, None | Some(Err(_))),
        "a foreign certificate must not open Sync"
    );

    // A proper node certificate works.
    let token = cluster.join_token(1).await;
    let (csr_pem, key) = csr();
    let mut client = NodeServiceClient::new(
        channel(&cluster, None, &cluster.ca_pem)
            .await
            .expect("dial"),
    );
    let joined = client
        .join(join_request(&token, "real", &csr_pem))
        .await
        .expect("join")
        .into_inner();
    let mut node = NodeServiceClient::new(
        channel(
            &cluster,
            Some(Identity::from_pem(
                joined.certificate_pem,
                key.serialize_pem(),
            )),
            &cluster.ca_pem,
        )
        .await
        .expect("dial with cert"),
    );
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(hello()).await.expect("send");
    let mut desired = node
        .sync(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .expect("sync")
        .into_inner();
    let first = desired
        .message()
        .await
        .expect("message")
        .expect("full state");
    assert!(first.full, "the first message is the full desired state");
    cluster.wait_node("real", "Ready").await;
}

#[tokio::test]
async fn silent_nodes_go_not_ready_and_come_back() {
    let cluster = Cluster::start_with(|c| {
        c.node_timeout_secs = 1;
        c.heartbeat_interval_ms = 200;
    })
    .await;
    let node = cluster.add_node("flaky", 2.0, 4.0).await;
    let api = cluster.tenant(&[SUB]).await;
    let (status, _, _) = api.put_group(SUB, "rg1", "svc", &group_body()).await;
    assert_eq!(status, StatusCode::CREATED);
    api.wait_group(SUB, "rg1", "svc", 20, running).await;

    let state_dir = node.stop().await;
    cluster.wait_node("flaky", "NotReady").await;
    let lost = api
        .wait_group(SUB, "rg1", "svc", 20, |g| {
            g["properties"]["provisioningState"] == "Unhealthy"
        })
        .await;
    let events = lost["properties"]["instanceView"]["events"]
        .as_array()
        .expect("events");
    assert!(events.iter().any(|e| e["name"] == "NodeNotReady"), "{lost}");

    // The same node comes back (its identity is on disk; no new join) and runs the group again.
    let _back = cluster.start_node("flaky", state_dir, 2.0, 4.0, None).await;
    api.wait_group(SUB, "rg1", "svc", 20, running).await;
}

/// `lastHeartbeat` as Unix milliseconds.
async fn last_heartbeat(cluster: &Cluster, name: &str) -> i64 {
    let node = cluster.node_info(name).await;
    let text = node["lastHeartbeat"].as_str().expect("lastHeartbeat");
    let at = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .expect("RFC 3339");
    (at.unix_timestamp_nanos() / 1_000_000) as i64
}

#[tokio::test]
async fn last_heartbeat_follows_the_node_and_survives_a_restart() {
    let cluster = Cluster::start_with(|c| {
        c.node_timeout_secs = 1;
        c.heartbeat_interval_ms = 100;
        c.heartbeat_store_interval_ms = 300;
    })
    .await;
    let node = cluster.add_node("beating", 2.0, 4.0).await;
    let id = cluster.node_info("beating").await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let first = last_heartbeat(&cluster, "beating").await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let later = last_heartbeat(&cluster, "beating").await;
    assert!(
        later >= first + 700 && later <= now_ms(),
        "lastHeartbeat moves with the heartbeats: {first} then {later}"
    );
    // And it reaches the store, not only this process's memory.
    let stored = cluster
        .state()
        .store
        .node(&id)
        .await
        .expect("store")
        .expect("node")
        .last_heartbeat_ms;
    assert!(
        stored >= first + 300,
        "the store's lastHeartbeat is at most a write interval behind: {first} then {stored}"
    );

    // The apiserver stops while the node beats; the node goes away meanwhile and never comes back.
    let stopped_at = now_ms();
    let stopped = cluster.stop().await;
    let state_dir = node.stop().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let restarted_at = now_ms();
    let cluster = stopped.start().await;
    cluster.wait_node("beating", "NotReady").await;
    let silent = last_heartbeat(&cluster, "beating").await;
    assert!(
        silent <= stopped_at + 200 && silent >= stopped_at - 800,
        "lastHeartbeat is the last beat before the restart ({stopped_at}), not {silent}"
    );
    assert!(silent < restarted_at, "{silent} vs restart {restarted_at}");
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        last_heartbeat(&cluster, "beating").await,
        silent,
        "a silent node's lastHeartbeat stays"
    );

    // Back again: it moves on.
    let _back = cluster
        .start_node("beating", state_dir, 2.0, 4.0, None)
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(last_heartbeat(&cluster, "beating").await > restarted_at);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_moves_to_another_replica_when_its_apiserver_stops() {
    let cluster = Cluster::start().await;
    let replica = cluster.replica().await;
    // The agent knows both; it joins through and streams to the first.
    let state_dir = cluster.dir().join("agent-node-a");
    let mut config = berth_node_agent::AgentConfig::new(cluster.node_url(), state_dir, "node-a");
    config.servers.push(replica.node_url());
    config.join_token = Some(cluster.join_token(1).await);
    config.capacity = Resources {
        cpu_millis: 4000,
        memory_mib: 8192,
        gpu: 0,
        gpu_sku: String::new(),
    };
    let shutdown = tokio_util::sync::CancellationToken::new();
    let _stop_agent = shutdown.clone().drop_guard();
    let _agent = tokio::spawn(berth_node_agent::run(config, shutdown));
    cluster.wait_node("node-a", "Ready").await;
    let token = cluster.tenant(&[SUB]).await.token().to_owned();

    // The first apiserver goes away; its data (the SQLite file) stays for the replica.
    let _stopped = cluster.stop().await;
    replica.wait_node("node-a", "Ready").await;
    let api = replica.api(&token);
    let (status, _, answer) = api.put_group(SUB, "rg1", "after", &group_body()).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    api.wait_group(SUB, "rg1", "after", 20, running).await;
    let node = replica.node_info("node-a").await;
    assert_eq!(node["status"], "Ready", "{node}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_joins_through_the_first_server_that_answers() {
    let cluster = Cluster::start().await;
    // The first server it is given is down (nothing listens there).
    let down = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    let state_dir = cluster.dir().join("agent-node-b");
    let mut config =
        berth_node_agent::AgentConfig::new(format!("https://{down}"), state_dir, "node-b");
    config.servers.push(cluster.node_url());
    config.join_token = Some(cluster.join_token(1).await);
    config.capacity = Resources {
        cpu_millis: 1000,
        memory_mib: 1024,
        gpu: 0,
        gpu_sku: String::new(),
    };
    let shutdown = tokio_util::sync::CancellationToken::new();
    let _stop_agent = shutdown.clone().drop_guard();
    let _agent = tokio::spawn(berth_node_agent::run(config, shutdown));
    cluster.wait_node("node-b", "Ready").await;
}
