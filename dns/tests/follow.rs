//! The standalone `berth-dns` follower against a fake apiserver's `DnsService` in this process, over
//! real mutual TLS with a throwaway cluster CA: the fake can be fed updates, killed and restarted.
//! Where it matters, names are resolved through the real DNS server over UDP.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_dns::ServerConfig;
use berth_dns::Zone;
use berth_dns::follow::{
    Backoff, FollowConfig, FollowStatus, Follower, Serving, Standalone, StandaloneConfig, ZoneState,
};
use berth_proto::node::dns_service_server::{DnsService, DnsServiceServer};
use berth_proto::node::{DnsRecord, WatchZoneRequest, ZoneUpdate};
use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::{TcpListenerStream, UnboundedReceiverStream};
use tokio_util::sync::CancellationToken;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tonic::{Request, Response, Status};

const ORIGIN: &str = "berth.internal";
/// Long enough for anything on a loaded 2-core machine; conditions are polled, not slept for.
const PATIENCE: Duration = Duration::from_secs(20);

/// A throwaway cluster CA.
struct Pki {
    ca_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// (certificate PEM, key PEM, certificate DER)
#[derive(Clone)]
struct Pair {
    cert: String,
    key: String,
    der: Vec<u8>,
}

impl Pki {
    fn new(name: &str) -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = params.self_signed(&key).unwrap();
        Self {
            ca_pem: ca.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    fn issue(&self, cn: &str, sans: &[&str], usage: ExtendedKeyUsagePurpose) -> Pair {
        let key = KeyPair::generate().unwrap();
        let sans: Vec<String> = sans.iter().map(|s| (*s).to_owned()).collect();
        let mut params = CertificateParams::new(sans).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![usage];
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Pair {
            cert: cert.pem(),
            key: key.serialize_pem(),
            der: cert.der().to_vec(),
        }
    }

    /// A standalone DNS server's client certificate, as `POST /admin/v1/dns-certificates` issues it.
    fn dns_client(&self, id: &str) -> Pair {
        self.issue(
            &format!("dns:{id}"),
            &[&format!("{id}{}", berth_proto::names::DNS_SUFFIX)],
            ExtendedKeyUsagePurpose::ClientAuth,
        )
    }

    fn apiserver(&self, sans: &[&str]) -> Pair {
        self.issue("apiserver", sans, ExtendedKeyUsagePurpose::ServerAuth)
    }
}

/// The fake apiserver's zone and its open watches.
#[derive(Default)]
struct FakeZone {
    origin: String,
    serial: u32,
    records: BTreeMap<String, Vec<String>>,
    watchers: Vec<mpsc::UnboundedSender<Result<ZoneUpdate, Status>>>,
    /// Watches accepted so far.
    watches: usize,
}

impl FakeZone {
    fn full(&self) -> ZoneUpdate {
        ZoneUpdate {
            origin: self.origin.clone(),
            serial: self.serial,
            full: true,
            upserts: self
                .records
                .iter()
                .map(|(name, addresses)| DnsRecord {
                    name: name.clone(),
                    addresses: addresses.clone(),
                })
                .collect(),
            removals: vec![],
        }
    }

    fn publish(&mut self, upserts: Vec<DnsRecord>, removals: Vec<String>) {
        let update = ZoneUpdate {
            origin: self.origin.clone(),
            serial: self.serial,
            full: false,
            upserts,
            removals,
        };
        self.watchers
            .retain(|watcher| watcher.send(Ok(update.clone())).is_ok());
    }
}

/// `DnsService` as the apiserver serves it: only the one DNS certificate it was told of may watch.
#[derive(Clone)]
struct FakeService {
    zone: Arc<Mutex<FakeZone>>,
    allowed: Vec<u8>,
}

#[tonic::async_trait]
impl DnsService for FakeService {
    type WatchStream = UnboundedReceiverStream<Result<ZoneUpdate, Status>>;

    async fn watch(
        &self,
        request: Request<WatchZoneRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let peer = request
            .peer_certs()
            .and_then(|certs| certs.first().cloned());
        if peer.as_ref().map(|c| c.as_ref()) != Some(self.allowed.as_slice()) {
            return Err(Status::permission_denied("not a DNS server's certificate"));
        }
        let (sender, receiver) = mpsc::unbounded_channel();
        let mut zone = self.zone.lock().unwrap();
        sender.send(Ok(zone.full())).unwrap();
        zone.watchers.push(sender);
        zone.watches += 1;
        Ok(Response::new(UnboundedReceiverStream::new(receiver)))
    }
}

/// The fake apiserver on a fixed 127.0.0.1 port, up or down.
struct FakeApiserver {
    addr: SocketAddr,
    tls: ServerTlsConfig,
    service: FakeService,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for FakeApiserver {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

impl FakeApiserver {
    /// Serving `records` under [`ORIGIN`] with a certificate for `sans`, to `allowed` only.
    async fn start(pki: &Pki, sans: &[&str], allowed: &Pair, records: &[(&str, &[&str])]) -> Self {
        let server = pki.apiserver(sans);
        let tls = ServerTlsConfig::new()
            .identity(Identity::from_pem(&server.cert, &server.key))
            .client_ca_root(Certificate::from_pem(&pki.ca_pem))
            .client_auth_optional(false);
        let zone = FakeZone {
            origin: ORIGIN.into(),
            serial: 100,
            ..FakeZone::default()
        };
        let mut fake = Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            tls,
            service: FakeService {
                zone: Arc::new(Mutex::new(zone)),
                allowed: allowed.der.clone(),
            },
            task: None,
        };
        fake.set_quietly(ORIGIN, records);
        fake.restart().await;
        fake
    }

    fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// Starts serving again on the same port.
    async fn restart(&mut self) {
        let listener = TcpListener::bind(self.addr).await.unwrap();
        self.addr = listener.local_addr().unwrap();
        let server = Server::builder()
            .tls_config(self.tls.clone())
            .unwrap()
            .add_service(DnsServiceServer::new(self.service.clone()));
        self.task = Some(tokio::spawn(async move {
            let _ = server
                .serve_with_incoming(TcpListenerStream::new(listener))
                .await;
        }));
    }

    /// Stops listening and breaks every open watch, as a dying apiserver does.
    async fn kill(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            // Once it is gone, its listener is closed and the port can be bound again.
            let _ = task.await;
        }
        let mut zone = self.service.zone.lock().unwrap();
        for watcher in zone.watchers.drain(..) {
            let _ = watcher.send(Err(Status::unavailable("apiserver going away")));
        }
    }

    /// Changes the zone without telling anyone (what changes while a follower is away).
    fn set_quietly(&self, origin: &str, records: &[(&str, &[&str])]) {
        let mut zone = self.service.zone.lock().unwrap();
        zone.origin = origin.into();
        zone.serial += 1;
        zone.records = records
            .iter()
            .map(|(name, addresses)| {
                (
                    (*name).to_owned(),
                    addresses.iter().map(|a| (*a).to_owned()).collect(),
                )
            })
            .collect();
    }

    fn upsert(&self, name: &str, addresses: &[&str]) {
        let mut zone = self.service.zone.lock().unwrap();
        let addresses: Vec<String> = addresses.iter().map(|a| (*a).to_owned()).collect();
        zone.serial += 1;
        zone.records.insert(name.into(), addresses.clone());
        zone.publish(
            vec![DnsRecord {
                name: name.into(),
                addresses,
            }],
            vec![],
        );
    }

    fn remove(&self, name: &str) {
        let mut zone = self.service.zone.lock().unwrap();
        zone.serial += 1;
        zone.records.remove(name);
        zone.publish(vec![], vec![name.into()]);
    }

    fn serial(&self) -> u32 {
        self.service.zone.lock().unwrap().serial
    }

    fn watches(&self) -> usize {
        self.service.zone.lock().unwrap().watches
    }
}

/// Follower settings for tests: quick back-off and saves.
fn config(url: &str, pki: &Pki, client: &Pair) -> FollowConfig {
    let mut config = FollowConfig::new(
        url,
        pki.ca_pem.clone(),
        client.cert.clone(),
        client.key.clone(),
    );
    config.backoff = Backoff {
        initial: Duration::from_millis(20),
        max: Duration::from_millis(200),
    };
    config.save_interval = Duration::from_millis(50);
    config.connect_timeout = Duration::from_secs(5);
    config
}

/// Waits until `status` satisfies `ok`.
async fn status_until(
    status: &mut watch::Receiver<FollowStatus>,
    what: &str,
    ok: impl Fn(&FollowStatus) -> bool,
) -> FollowStatus {
    let found = match tokio::time::timeout(PATIENCE, status.wait_for(|s| ok(s))).await {
        Ok(Ok(found)) => Some(found.clone()),
        _ => None,
    };
    found.unwrap_or_else(|| panic!("{what}: still {:?}", *status.borrow()))
}

/// Polls `check` until it holds.
async fn eventually(what: &str, check: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !check() {
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn ips(addresses: &[&str]) -> Vec<IpAddr> {
    addresses.iter().map(|a| a.parse().unwrap()).collect()
}

fn lookup(zone: &Zone, name: &str) -> Option<Vec<IpAddr>> {
    zone.lookup(name).map(|a| a.to_vec())
}

/// A follower of `config` on a fresh zone, running until the returned token is cancelled.
fn follow(
    config: FollowConfig,
) -> (
    Zone,
    watch::Receiver<FollowStatus>,
    CancellationToken,
    tokio::task::JoinHandle<Result<(), berth_dns::follow::FollowError>>,
) {
    let zone = Zone::new(ORIGIN);
    let follower = Follower::new(config, zone.clone()).unwrap();
    let status = follower.status();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(follower.run(shutdown.clone()));
    (zone, status, shutdown, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_zone_then_changes_are_applied() {
    let pki = Pki::new("cluster CA");
    let client = pki.dns_client("d1");
    let fake = FakeApiserver::start(
        &pki,
        &["127.0.0.1"],
        &client,
        &[("web.local.berth.internal", &["10.0.0.1"])],
    )
    .await;
    let (zone, mut status, shutdown, task) = follow(config(&fake.url(), &pki, &client));

    let synced = status_until(&mut status, "first sync", |s| s.connected).await;
    assert_eq!(synced.serial, Some(fake.serial()));
    assert_eq!(synced.syncs, 1);
    assert_eq!(
        lookup(&zone, "web.local.berth.internal"),
        Some(ips(&["10.0.0.1"]))
    );

    fake.upsert("db.local.berth.internal", &["10.0.0.2", "fd00::2"]);
    eventually("the upsert arrives", || {
        lookup(&zone, "db.local.berth.internal") == Some(ips(&["10.0.0.2", "fd00::2"]))
    })
    .await;
    fake.upsert("web.local.berth.internal", &["10.0.0.9"]);
    fake.remove("db.local.berth.internal");
    eventually("the removal arrives", || {
        lookup(&zone, "db.local.berth.internal").is_none()
    })
    .await;
    assert_eq!(
        lookup(&zone, "web.local.berth.internal"),
        Some(ips(&["10.0.0.9"]))
    );
    let serial = fake.serial();
    status_until(&mut status, "the last serial", |s| s.serial == Some(serial)).await;
    assert_eq!(fake.watches(), 1, "one stream did it all");

    shutdown.cancel();
    task.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnect_replaces_stale_records_and_the_zone_is_kept_meanwhile() {
    let pki = Pki::new("cluster CA");
    let client = pki.dns_client("d1");
    let mut fake = FakeApiserver::start(
        &pki,
        &["127.0.0.1"],
        &client,
        &[
            ("old.local.berth.internal", &["10.0.0.1"]),
            ("kept.local.berth.internal", &["10.0.0.2"]),
        ],
    )
    .await;
    let (zone, mut status, shutdown, task) = follow(config(&fake.url(), &pki, &client));
    status_until(&mut status, "first sync", |s| s.connected).await;

    fake.kill().await;
    let lost = status_until(&mut status, "the break is noticed", |s| !s.connected).await;
    assert!(lost.last_error.is_some());
    // Several reconnections fail while the apiserver is away; the zone stays as it was.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!status.borrow().connected);
    assert_eq!(
        lookup(&zone, "old.local.berth.internal"),
        Some(ips(&["10.0.0.1"]))
    );
    assert_eq!(zone.records().len(), 2);

    // Meanwhile `old` was deleted, `kept` moved and `new` appeared; no delta says so.
    fake.set_quietly(
        ORIGIN,
        &[
            ("kept.local.berth.internal", &["10.0.0.3"]),
            ("new.local.berth.internal", &["10.0.0.4"]),
        ],
    );
    fake.restart().await;
    let back = status_until(&mut status, "the second sync", |s| s.syncs == 2).await;
    assert!(back.connected);
    assert_eq!(back.serial, Some(fake.serial()));
    assert_eq!(lookup(&zone, "old.local.berth.internal"), None);
    assert_eq!(
        lookup(&zone, "kept.local.berth.internal"),
        Some(ips(&["10.0.0.3"]))
    );
    assert_eq!(
        lookup(&zone, "new.local.berth.internal"),
        Some(ips(&["10.0.0.4"]))
    );

    shutdown.cancel();
    task.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_the_apiserver_does_not_accept_never_syncs() {
    let pki = Pki::new("cluster CA");
    let client = pki.dns_client("d1");
    let fake = FakeApiserver::start(
        &pki,
        &["127.0.0.1"],
        &client,
        &[("web.local.berth.internal", &["10.0.0.1"])],
    )
    .await;

    // A DNS certificate from another CA: the TLS handshake fails.
    let other = Pki::new("another CA");
    let stranger = other.dns_client("d1");
    let mut config_other = config(&fake.url(), &pki, &client);
    config_other.cert_pem = stranger.cert.clone().into_bytes();
    config_other.key_pem = stranger.key.clone().into_bytes();
    // A certificate of the right CA that is not this DNS server's (a node's, say): refused per call.
    let node = pki.issue(
        "node:n1",
        &["n1.node.berth.internal"],
        ExtendedKeyUsagePurpose::ClientAuth,
    );
    let mut config_node = config(&fake.url(), &pki, &client);
    config_node.cert_pem = node.cert.clone().into_bytes();
    config_node.key_pem = node.key.clone().into_bytes();

    // The first is refused by the TLS handshake, before any call (the client may see the server's
    // UnknownCA alert or just the connection closing); the second by the service.
    for (what, config, expect) in [
        ("another CA", config_other, "the apiserver"),
        (
            "a node certificate",
            config_node,
            "PermissionDenied: not a DNS server's certificate",
        ),
    ] {
        let (zone, mut status, shutdown, task) = follow(config);
        let failed = status_until(&mut status, what, |s| s.last_error.is_some()).await;
        assert!(!failed.connected, "{what}");
        assert_eq!(failed.syncs, 0, "{what}");
        let error = failed.last_error.unwrap();
        assert!(error.contains(expect), "{what}: {error}");
        assert!(zone.records().is_empty(), "{what}");
        if what == "another CA" {
            assert!(!error.contains("PermissionDenied"), "{error}");
        }
        assert_eq!(fake.watches(), 0, "{what}");
        shutdown.cancel();
        task.await.unwrap().unwrap();
    }

    // The right certificate, for contrast.
    let (zone, mut status, shutdown, task) = follow(config(&fake.url(), &pki, &client));
    status_until(&mut status, "the DNS certificate syncs", |s| s.connected).await;
    assert_eq!(zone.records().len(), 1);
    shutdown.cancel();
    task.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_apiserver_is_verified_under_the_server_name() {
    let pki = Pki::new("cluster CA");
    let client = pki.dns_client("d1");
    // The apiserver's certificate names a host, not the address dialled.
    let fake = FakeApiserver::start(
        &pki,
        &["apiserver.example"],
        &client,
        &[("web.local.berth.internal", &["10.0.0.1"])],
    )
    .await;
    let (_, mut status, shutdown, task) = follow(config(&fake.url(), &pki, &client));
    let failed = status_until(&mut status, "a name mismatch", |s| s.last_error.is_some()).await;
    assert!(
        failed
            .last_error
            .as_deref()
            .unwrap()
            .contains("certificate not valid for name \"127.0.0.1\""),
        "{failed:?}"
    );
    assert_eq!(failed.syncs, 0);
    shutdown.cancel();
    task.await.unwrap().unwrap();

    let mut named = config(&fake.url(), &pki, &client);
    named.server_name = Some("apiserver.example".into());
    let (zone, mut status, shutdown, task) = follow(named);
    status_until(&mut status, "the right name", |s| s.connected).await;
    assert_eq!(zone.records().len(), 1);
    shutdown.cancel();
    task.await.unwrap().unwrap();
}

/// Asks the DNS server at `server` over UDP for the A and AAAA records of `name`.
async fn resolve(server: SocketAddr, name: &str) -> (ResponseCode, Vec<IpAddr>) {
    let mut addresses = Vec::new();
    let mut code = ResponseCode::NoError;
    for record_type in [RecordType::A, RecordType::AAAA] {
        let mut query = Message::query();
        query.add_query(Query::query(Name::from_ascii(name).unwrap(), record_type));
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        socket.connect(server).await.unwrap();
        socket.send(&query.to_vec().unwrap()).await.unwrap();
        let mut buffer = vec![0; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), socket.recv(&mut buffer))
            .await
            .expect("the DNS server answers")
            .unwrap();
        let answer = Message::from_vec(&buffer[..n]).unwrap();
        assert_eq!(answer.metadata.id, query.metadata.id);
        code = answer.metadata.response_code;
        for record in &answer.answers {
            match &record.data {
                RData::A(a) => addresses.push(IpAddr::V4(a.0)),
                RData::AAAA(aaaa) => addresses.push(IpAddr::V6(aaaa.0)),
                _ => {}
            }
        }
    }
    (code, addresses)
}

/// A whole standalone `berth-dns` on 127.0.0.1:0, following `fake`.
struct Dns {
    serving: watch::Receiver<Option<Serving>>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), berth_dns::follow::StandaloneError>>,
}

impl Dns {
    fn start(follow: FollowConfig, zone: Option<&str>) -> Self {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        let standalone = Standalone::new(StandaloneConfig {
            follow,
            server: ServerConfig::new(any, any),
            zone: zone.map(str::to_owned),
        });
        let serving = standalone.serving();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(standalone.run(shutdown.clone()));
        Self {
            serving,
            shutdown,
            task,
        }
    }

    /// What it serves once it answers.
    async fn answering(&mut self) -> Serving {
        let serving = tokio::time::timeout(PATIENCE, self.serving.wait_for(Option::is_some))
            .await
            .expect("berth-dns answers")
            .unwrap();
        serving.clone().unwrap()
    }

    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(PATIENCE, self.task)
            .await
            .expect("berth-dns stops")
            .unwrap()
            .unwrap();
    }
}

fn saved(path: &Path) -> Option<ZoneState> {
    ZoneState::load(path).ok().flatten()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_answers_while_the_apiserver_is_away_and_after_a_restart_from_the_state_file() {
    let pki = Pki::new("cluster CA");
    let client = pki.dns_client("d1");
    let mut fake = FakeApiserver::start(
        &pki,
        &["127.0.0.1"],
        &client,
        &[("web.local.berth.internal", &["10.0.0.1"])],
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let state_file = dir.path().join("zone.json");
    let mut follow = config(&fake.url(), &pki, &client);
    follow.state_file = Some(state_file.clone());

    // First start: no state, so it waits for the apiserver, then answers.
    let mut dns = Dns::start(follow.clone(), None);
    let serving = dns.answering().await;
    let mut status = serving.status.clone();
    status_until(&mut status, "first sync", |s| s.connected).await;
    assert_eq!(
        resolve(serving.udp, "web.local.berth.internal.").await,
        (ResponseCode::NoError, ips(&["10.0.0.1"]))
    );
    fake.upsert("db.local.berth.internal", &["10.0.0.2"]);
    eventually("the state file has the change", || {
        saved(&state_file).is_some_and(|s| s.records.contains_key("db.local.berth.internal"))
    })
    .await;

    // The apiserver goes away: the server keeps answering from what it had.
    fake.kill().await;
    status_until(&mut status, "the break is noticed", |s| !s.connected).await;
    assert_eq!(
        resolve(serving.udp, "DB.local.berth.internal.").await,
        (ResponseCode::NoError, ips(&["10.0.0.2"]))
    );

    // berth-dns restarts while the apiserver is still away: it answers from the state file.
    dns.stop().await;
    let mut dns = Dns::start(follow.clone(), None);
    let serving = dns.answering().await;
    assert!(!serving.status.borrow().connected);
    assert_eq!(
        resolve(serving.udp, "web.local.berth.internal.").await,
        (ResponseCode::NoError, ips(&["10.0.0.1"]))
    );
    assert_eq!(
        resolve(serving.udp, "db.local.berth.internal.").await,
        (ResponseCode::NoError, ips(&["10.0.0.2"]))
    );

    // The apiserver returns with changes made meanwhile: the server catches up.
    fake.set_quietly(ORIGIN, &[("web.local.berth.internal", &["10.0.0.7"])]);
    fake.restart().await;
    let mut status = serving.status.clone();
    status_until(&mut status, "the sync after the restart", |s| s.connected).await;
    assert_eq!(
        resolve(serving.udp, "web.local.berth.internal.").await,
        (ResponseCode::NoError, ips(&["10.0.0.7"]))
    );
    assert_eq!(
        resolve(serving.udp, "db.local.berth.internal.").await.0,
        ResponseCode::NXDomain
    );
    eventually("the state file follows", || {
        saved(&state_file).is_some_and(|s| s.records.len() == 1 && s.serial == fake.serial())
    })
    .await;
    dns.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_origin_is_served_on_the_same_ports_unless_zone_fixes_it() {
    let pki = Pki::new("cluster CA");
    let client = pki.dns_client("d1");
    let mut fake = FakeApiserver::start(
        &pki,
        &["127.0.0.1"],
        &client,
        &[("web.local.berth.internal", &["10.0.0.1"])],
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let state_file = dir.path().join("zone.json");
    let mut follow = config(&fake.url(), &pki, &client);
    follow.state_file = Some(state_file.clone());

    let mut dns = Dns::start(follow.clone(), None);
    let first = dns.answering().await;
    assert_eq!(first.zone.origin(), ORIGIN);

    // The apiserver comes back serving `example.test` (its --dns-zone changed).
    fake.kill().await;
    fake.set_quietly("example.test", &[("web.local.example.test", &["10.0.0.5"])]);
    fake.restart().await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let second = loop {
        if let Some(serving) = dns.serving.borrow().clone()
            && serving.zone.origin() == "example.test"
        {
            break serving;
        }
        assert!(tokio::time::Instant::now() < deadline, "no new origin");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!((second.udp, second.tcp), (first.udp, first.tcp));
    assert_eq!(
        resolve(second.udp, "web.local.example.test.").await,
        (ResponseCode::NoError, ips(&["10.0.0.5"]))
    );
    assert_eq!(saved(&state_file).unwrap().origin, "example.test");
    dns.stop().await;

    // With --zone, the origin is the operator's: names outside it are left out, the rest served.
    fake.set_quietly(
        "example.test",
        &[
            ("web.eu.example.test", &["10.0.0.6"]),
            ("web.us.example.test", &["10.0.0.7"]),
        ],
    );
    let mut fixed = follow.clone();
    fixed.state_file = None;
    let mut dns = Dns::start(fixed, Some("eu.example.test"));
    let serving = dns.answering().await;
    assert_eq!(serving.zone.origin(), "eu.example.test");
    let mut status = serving.status.clone();
    status_until(&mut status, "sync under --zone", |s| s.connected).await;
    assert_eq!(
        lookup(&serving.zone, "web.eu.example.test"),
        Some(ips(&["10.0.0.6"]))
    );
    assert_eq!(serving.zone.records().len(), 1);
    dns.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_accepts_and_says_nothing_times_out_and_is_retried() {
    let pki = Pki::new("cluster CA");
    let client = pki.dns_client("d1");
    // Accepts TCP connections and holds them without a word of TLS.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    let accepted = Arc::new(Mutex::new(Vec::new()));
    let held = accepted.clone();
    let silent = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            held.lock().unwrap().push(stream);
        }
    });
    let mut config = config(&url, &pki, &client);
    config.connect_timeout = Duration::from_millis(300);
    let (_, mut status, shutdown, task) = follow(config);
    let failed = status_until(&mut status, "a timeout", |s| s.last_error.is_some()).await;
    assert!(
        failed
            .last_error
            .as_deref()
            .unwrap()
            .contains("no answer from the apiserver within 300ms"),
        "{failed:?}"
    );
    eventually("it tries again", || accepted.lock().unwrap().len() >= 2).await;
    shutdown.cancel();
    task.await.unwrap().unwrap();
    silent.abort();
}
