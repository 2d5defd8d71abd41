//! `berth-apiserver`: Berth's control plane.
//!
//! # Layout
//! - [`config`]: flags, the TOML file and defaults, resolved into [`Config`].
//! - [`http`]: the REST API (ACI's routes and `/admin/v1`), served over rustls by [`serve`].
//! - [`validate`]: ARM JSON in, a [`model::GroupSpec`] out, or a 400 naming the field.
//! - [`model`]: the validated group with exact integer sizes; `model::reported`: what a node reported.
//! - [`render`]: a stored group back into ACI's JSON.
//! - [`groups`]: the group service, a container group's lifecycle with typed errors and its
//!   after-commit effects in one place; the HTTP handlers call it.
//! - [`auth`]: bearer tokens (issue, cache trusted for a second, expiry, revocation) and the
//!   `Principal` extractor.
//! - [`billing`]: per-second metering rules, the price sheet, FOCUS-style exports (the ledger itself
//!   lives in the store).
//! - [`store`]: one trait per concern (`Store` is all of them), the SQLite backend (one apiserver),
//!   the PostgreSQL backend (several replicas), and the conformance suite both pass.
//! - [`scheduler`]: pure placement and the loop that commits it.
//! - [`nodes`]: the node gateway: the gRPC `NodeService` (Join, Sync), the live streams, the
//!   assignments sent down them, the report writer, node liveness.
//! - [`handoff`]: what the scheduler and the gateway tell each other (the scheduler's wake-up handle,
//!   the sink for committed placements), so neither imports the other.
//! - [`cluster`]: what replicas share beyond the store: the leader lease (who runs the scheduler
//!   and the liveness monitor) and the bus (signals between replicas).
//! - [`dns`]: the DNS zone kept equal to the store, the embedded DNS server, `DnsService.Watch`.
//! - [`agents`]: dialling node agents' `AgentService` (logs, exec) with the apiserver's client
//!   certificate; [`exec`]: the single-use exec and attach sessions.
//! - [`signin`]: the ADFS-style sign-in authority (client credentials in, JWT access tokens out).
//! - [`prometheus`]: `GET /metrics` (operator token) and the `--metrics-listen` listener: request
//!   durations, the scheduler, the store's census, DNS queries, every container's newest sample.
//! - [`tls`]: the cluster CA and certificates; [`secrets`]: encryption at rest.
//! - [`error`]: `ApiError`, ACI's error shape.

pub mod agents;
pub mod auth;
pub mod billing;
pub mod cluster;
pub mod config;
pub mod dns;
pub mod error;
pub mod exec;
pub mod groups;
pub mod handoff;
pub mod http;
pub mod model;
pub mod monitor;
pub mod nodes;
pub mod prometheus;
pub mod render;
pub mod scheduler;
pub mod secrets;
pub mod signin;
pub mod store;
pub mod tls;
pub mod validate;

mod serve;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use config::Config;
pub use serve::serve;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::agents::AgentDialer;
use crate::auth::Authenticator;
use crate::model::Size;
use crate::nodes::NodeGateway;
use crate::scheduler::{Scheduler, SchedulerHandle};
use crate::secrets::{SecretBox, SecretError};
use crate::store::{PgStore, SqliteStore, Store, StoreError};
use crate::tls::{ClusterCa, ServerIdentity, TlsError};

/// Re-reads the price sheet on every SIGHUP until shutdown; a sheet that does not parse is refused
/// (logged) and the one in use stays.
async fn reload_prices_on_sighup(prices: billing::prices::Prices, shutdown: CancellationToken) {
    let Ok(mut hangups) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
    else {
        tracing::warn!("cannot listen for SIGHUP: the price sheet will not be reloaded");
        return;
    };
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            Some(()) = hangups.recv() => match prices.reload() {
                Ok(sheet) => tracing::info!(currency = %sheet.currency, meters = sheet.prices.len(), "price sheet reloaded"),
                Err(err) => tracing::error!(error = %err, "price sheet refused; keeping the one in use"),
            },
        }
    }
}

/// Milliseconds since the Unix epoch: the apiserver's one clock ([`berth_proto::clock`]).
pub use berth_proto::clock::now_ms;

/// Per-subscription quotas.
#[derive(Debug, Clone, Copy)]
pub struct Quota {
    pub groups: i64,
    pub cpu_millis: u64,
}

/// Shared state of the HTTP handlers: cheap handles only.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    /// A container group's lifecycle: what every handler that changes a group calls.
    pub groups: groups::GroupService,
    pub config: Arc<Config>,
    pub limits: Arc<validate::Limits>,
    pub quota: Quota,
    pub secrets: Arc<SecretBox>,
    pub auth: Arc<Authenticator>,
    pub scheduler: SchedulerHandle,
    pub gateway: NodeGateway,
    /// Connections to node agents, for logs, exec and attach.
    pub agents: AgentDialer,
    /// Exec and attach sessions handed out and not yet opened.
    pub sessions: Arc<exec::Sessions>,
    /// The DNS records of groups, and the poke that has them recomputed.
    pub zone: berth_dns::Zone,
    pub zone_dirty: dns::ZoneDirty,
    pub ca: Arc<ClusterCa>,
    /// The price sheet exports cost usage with.
    pub prices: billing::prices::Prices,
    /// Signs and verifies the sign-in authority's access tokens.
    pub signin: Arc<signin::AccessTokens>,
    /// Whether this replica holds the leader lease (runs the scheduler and the liveness monitor).
    pub leadership: cluster::Leadership,
    /// What `/metrics` shows of this process.
    pub metrics: prometheus::Metrics,
}

/// Why the apiserver could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("the configuration is refused")]
    Config(#[from] config::ConfigError),
    #[error("cannot create data directory {path}")]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS setup failed")]
    Tls(#[from] TlsError),
    #[error("secret key setup failed")]
    Secrets(#[from] SecretError),
    #[error("state store failed")]
    Store(#[from] StoreError),
    /// Carries the URL's scheme only (the rest may hold a password).
    #[error(
        "unsupported store URL scheme '{0}': use sqlite://PATH or postgres://USER@HOST:PORT/DATABASE"
    )]
    StoreUrl(String),
    #[error("cannot bind {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("gRPC server failed")]
    Grpc(#[from] tonic::transport::Error),
    #[error("the embedded DNS server cannot start")]
    Dns(#[from] berth_dns::ServerError),
    #[error("sign-in key setup failed")]
    Signin(#[from] signin::KeyError),
    #[error("the price sheet was refused")]
    Prices(#[from] billing::prices::PriceError),
    #[error("the bus between replicas cannot start")]
    Bus(#[from] cluster::BusError),
}

fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// Where the leader lease is kept: the store itself, but on PostgreSQL through connections of its
/// own, so a store busy with every pooled connection does not cost the leader its term.
async fn lease_store(
    url: &str,
    store: &Arc<dyn Store>,
) -> Result<Arc<dyn store::LeaseStore>, StartError> {
    if is_postgres(url) {
        return Ok(Arc::new(store::PgStore::connect(url).await?));
    }
    Ok(store.clone())
}

/// The bus between the replicas on the store at `url`: PostgreSQL's `LISTEN`/`NOTIFY` for a
/// PostgreSQL store, the process's own for SQLite (shared by replicas in this process on one file).
async fn cluster_bus(
    url: &str,
    shutdown: CancellationToken,
) -> Result<Arc<dyn cluster::Bus>, StartError> {
    if is_postgres(url) {
        return Ok(Arc::new(cluster::PgBus::connect(url, shutdown).await?));
    }
    let path = url
        .strip_prefix("sqlite://")
        .map(|rest| rest.split('?').next().unwrap_or(rest))
        .filter(|path| !path.is_empty() && !path.contains(":memory:"))
        .map(std::path::Path::new);
    Ok(Arc::new(cluster::LocalBus::for_database(path)))
}

/// A running apiserver.
pub struct Running {
    pub https_addr: SocketAddr,
    pub node_addr: SocketAddr,
    /// The initial operator token, if this start created it.
    pub initial_operator_token: Option<String>,
    /// Where the embedded DNS server answers (UDP, TCP), if it runs.
    pub dns_addrs: Option<(SocketAddr, SocketAddr)>,
    /// Where `--metrics-listen` serves `/metrics` over plain HTTP, if it does.
    pub metrics_addr: Option<SocketAddr>,
    pub ca_pem: String,
    pub ca_hash: String,
    pub state: AppState,
    tasks: TaskTracker,
}

impl Running {
    /// Waits until every task has stopped (after the shutdown token is cancelled).
    pub async fn wait(self) {
        self.tasks.wait().await;
    }
}

/// Opens the store, loads or makes the CA and keys, binds both listeners and starts serving.
pub async fn start(config: Config, shutdown: CancellationToken) -> Result<Running, StartError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    config.check()?;
    std::fs::create_dir_all(&config.data_dir).map_err(|source| StartError::DataDir {
        path: config.data_dir.clone(),
        source,
    })?;
    let ca = Arc::new(ClusterCa::load_or_create(
        &config.data_dir,
        config.ca.as_ref().map(|(c, k)| (c.as_path(), k.as_path())),
    )?);
    let identity = match &config.tls {
        Some((cert, key)) => ServerIdentity::load(cert, key)?,
        None => {
            let mut names = vec![
                "localhost".to_owned(),
                "127.0.0.1".to_owned(),
                "::1".to_owned(),
            ];
            if let Ok(host) = std::fs::read_to_string("/etc/hostname") {
                let host = host.trim();
                if !host.is_empty() {
                    names.push(host.to_owned());
                }
            }
            names.extend(config.tls_san.iter().cloned());
            let (chain_pem, key_pem) = ca.issue_server(&names)?;
            ServerIdentity { chain_pem, key_pem }
        }
    };
    let agents = AgentDialer::new(&ca)?;
    let prices = billing::prices::Prices::load(config.price_sheet.as_deref())?;
    let secrets = Arc::new(SecretBox::load_or_create(
        &config.data_dir.join("secrets.key"),
    )?);
    let access_tokens = Arc::new(signin::AccessTokens::load_or_create(
        &config.data_dir.join("signin.key"),
        config.access_token_lifetime_secs,
    )?);
    let store: Arc<dyn Store> = match store::Backend::of(&config.store) {
        Some(store::Backend::Sqlite) => Arc::new(
            SqliteStore::connect(&config.store)
                .await?
                .with_billing(config.billing),
        ),
        Some(store::Backend::Postgres) => Arc::new(
            PgStore::connect(&config.store)
                .await?
                .with_billing(config.billing),
        ),
        None => {
            let scheme = config.store.split_once("://").map_or("", |(s, _)| s);
            return Err(StartError::StoreUrl(scheme.to_owned()));
        }
    };

    let auth = Arc::new(Authenticator::new(store.clone()));
    let initial_operator_token = if store.count_tokens().await? == 0 {
        let token = auth
            .issue(&[], true, None, now_ms())
            .await
            .map_err(StartError::Store)?
            .token;
        tls::write_file(
            &config.data_dir.join("operator.token"),
            token.as_bytes(),
            true,
        )?;
        tracing::info!(path = %config.data_dir.join("operator.token").display(), "created the initial operator token");
        Some(token)
    } else {
        None
    };

    let tasks = TaskTracker::new();
    let bus = cluster_bus(&config.store, shutdown.clone()).await?;
    let holder = uuid::Uuid::new_v4().to_string();
    let (lease, leadership) = cluster::Lease::new(
        lease_store(&config.store, &store).await?,
        &holder,
        cluster::Timing::default(),
    );
    tracing::info!(replica = %holder, "this replica's id for the leader lease");
    tasks.spawn(lease.run(shutdown.clone()));
    let scheduler_handle = SchedulerHandle::linked(bus.clone(), leadership.clone());
    let zone = berth_dns::Zone::new(&config.dns_zone);
    let zone_dirty = dns::ZoneDirty::linked(bus.clone());
    let gateway = NodeGateway::new(
        store.clone(),
        ca.clone(),
        secrets.clone(),
        nodes::Liveness {
            heartbeat_interval_ms: config.heartbeat_interval_ms,
            node_timeout: Duration::from_secs(config.node_timeout_secs),
            node_lost_after: Duration::from_secs(config.node_lost_after_secs),
        },
        nodes::Listeners {
            scheduler: scheduler_handle.clone(),
            zone_dirty: zone_dirty.clone(),
            replica: cluster::Replica {
                bus,
                leadership: leadership.clone(),
            },
        },
        config.dns_advertise,
        shutdown.clone(),
    )
    .await?;

    let https = TcpListener::bind(config.listen)
        .await
        .map_err(|source| StartError::Bind {
            addr: config.listen,
            source,
        })?;
    let nodes = TcpListener::bind(config.node_listen)
        .await
        .map_err(|source| StartError::Bind {
            addr: config.node_listen,
            source,
        })?;
    let https_addr = https.local_addr().map_err(|source| StartError::Bind {
        addr: config.listen,
        source,
    })?;
    let node_addr = nodes.local_addr().map_err(|source| StartError::Bind {
        addr: config.node_listen,
        source,
    })?;
    let metrics_listener = match config.metrics_listen {
        Some(addr) => {
            let bind_error = |source| StartError::Bind { addr, source };
            let listener = TcpListener::bind(addr).await.map_err(bind_error)?;
            let bound = listener.local_addr().map_err(bind_error)?;
            Some((listener, bound))
        }
        None => None,
    };

    let limits = validate::Limits {
        max_group: Size {
            cpu_millis: config.max_group_cpu_millis,
            memory_mib: config.max_group_memory_mib,
            gpu: 4,
        },
        allow_privileged: config.allow_privileged,
        ..validate::Limits::default()
    };
    let quota = Quota {
        groups: config.quota_groups,
        cpu_millis: config.quota_cpu_millis,
    };
    let policy = config.placement;
    let pending_timeout = Duration::from_secs(config.pending_timeout_secs);
    let heartbeat_store_interval = Duration::from_millis(config.heartbeat_store_interval_ms);
    let config_ttl = config.exec_ttl_secs;
    let groups = groups::GroupService::new(
        Arc::new(store.clone()),
        groups::Effects::new(
            gateway.clone(),
            scheduler_handle.clone(),
            zone_dirty.clone(),
        ),
        gateway.clone(),
        secrets.clone(),
        (&config.region, &config.dns_zone),
        quota,
    );
    let state = AppState {
        store: store.clone(),
        groups,
        config: Arc::new(config),
        limits: Arc::new(limits),
        quota,
        secrets,
        auth,
        scheduler: scheduler_handle.clone(),
        gateway: gateway.clone(),
        agents,
        sessions: Arc::new(exec::Sessions::new(
            Duration::from_secs(config_ttl),
            store.clone(),
        )),
        zone: zone.clone(),
        zone_dirty: zone_dirty.clone(),
        ca: ca.clone(),
        prices: prices.clone(),
        signin: access_tokens,
        leadership: leadership.clone(),
        metrics: prometheus::Metrics::new(),
    };

    tasks.spawn(reload_prices_on_sighup(prices, shutdown.clone()));
    tasks.spawn(
        Scheduler::new(store.clone(), gateway.clone(), scheduler_handle, policy)
            .with_leadership(leadership)
            .with_pending_timeout(pending_timeout)
            .with_metrics(state.metrics.scheduler())
            .run(shutdown.clone()),
    );
    tasks.spawn(gateway.clone().monitor(shutdown.clone()));
    tasks.spawn(monitor::retention::run(
        store.clone(),
        state.config.metrics_retention,
        shutdown.clone(),
    ));
    tasks.spawn(
        gateway
            .clone()
            .record_heartbeats(heartbeat_store_interval, shutdown.clone()),
    );
    tasks.spawn(
        state
            .auth
            .clone()
            .record_uses(auth::USE_WRITE_INTERVAL, shutdown.clone()),
    );
    let grpc_tls = tonic::transport::ServerTlsConfig::new()
        .identity(tonic::transport::Identity::from_pem(
            &identity.chain_pem,
            &identity.key_pem,
        ))
        .client_ca_root(tonic::transport::Certificate::from_pem(ca.cert_pem()))
        .client_auth_optional(true);
    let grpc = tonic::transport::Server::builder()
        .tls_config(grpc_tls)?
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .add_service(berth_proto::node::node_service_server::NodeServiceServer::new(gateway))
        .add_service(
            berth_proto::node::dns_service_server::DnsServiceServer::new(dns::DnsWatch::new(
                zone.clone(),
                shutdown.clone(),
            )),
        )
        .serve_with_incoming_shutdown(
            // No Nagle: reports are small writes that must not wait for a delayed ACK.
            tokio_stream::StreamExt::map(
                tokio_stream::wrappers::TcpListenerStream::new(nodes),
                |accepted| {
                    accepted.inspect(|stream| {
                        let _ = stream.set_nodelay(true);
                    })
                },
            ),
            {
                let shutdown = shutdown.clone();
                async move { shutdown.cancelled().await }
            },
        );
    let grpc_shutdown = shutdown.clone();
    tasks.spawn(async move {
        tokio::pin!(grpc);
        let grace = async {
            grpc_shutdown.cancelled().await;
            tokio::time::sleep(Duration::from_secs(5)).await;
        };
        tokio::select! {
            result = &mut grpc => {
                if let Err(err) = result {
                    tracing::error!(error = %err, "node gateway stopped");
                }
            }
            _ = grace => tracing::warn!("node connections still open 5 s after shutdown; closing"),
        }
    });
    tasks.spawn(
        dns::Publisher::new(zone.clone(), store.clone(), zone_dirty.clone()).run(shutdown.clone()),
    );
    let dns_addrs = match state.config.dns_listen {
        Some(addr) => {
            let mut dns_config = berth_dns::ServerConfig::new(addr, addr);
            dns_config.ttl = state.config.dns_ttl;
            dns_config.workers = state.config.dns_workers;
            let running = berth_dns::serve(dns_config, zone.clone(), shutdown.clone()).await?;
            let addrs = (running.udp, running.tcp);
            state.metrics.watch_dns(running.counts.clone());
            tracing::info!(udp = %addrs.0, tcp = %addrs.1, zone = %zone.origin(), "DNS server answering");
            tasks.spawn(running.wait());
            Some(addrs)
        }
        None => None,
    };
    let rustls_config = identity.https_config()?;
    tasks.spawn(serve(
        https,
        rustls_config,
        http::service(state.clone()),
        shutdown.clone(),
    ));
    let metrics_addr = metrics_listener.map(|(listener, addr)| {
        tracing::info!(%addr, "serving /metrics over plain HTTP");
        tasks.spawn(prometheus::serve_plain(
            listener,
            state.clone(),
            shutdown.clone(),
        ));
        addr
    });
    tasks.close();
    tracing::info!(%https_addr, %node_addr, ca = %ca.hash_hex(), "berth-apiserver started");
    Ok(Running {
        https_addr,
        node_addr,
        initial_operator_token,
        dns_addrs,
        metrics_addr,
        ca_pem: ca.cert_pem().to_owned(),
        ca_hash: ca.hash_hex(),
        state,
        tasks,
    })
}
