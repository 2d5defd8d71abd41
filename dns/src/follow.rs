//! Following the apiserver's zone, for a standalone `berth-dns` on another machine.
//!
//! A standalone server has no store: it learns the zone from `DnsService.Watch` on the apiserver's node
//! port (mutual TLS, the client certificate naming `<id>.dns.berth.internal`). The stream starts with the
//! whole zone (`full`) and goes on with changes; every (re)connection starts with the whole zone again,
//! which replaces whatever the follower had, so nothing missed while disconnected can linger.
//!
//! The point of running DNS apart is that it keeps answering while the apiserver is away. So the
//! follower never empties the zone when the stream breaks: it keeps the last state, reconnects forever
//! with capped exponential back-off (with jitter, so a fleet of followers does not stampede a restarted
//! apiserver), and saves the last state to a file ([`ZoneState`]) so that a restarted `berth-dns`
//! answers from it before it can reach the apiserver again.
//!
//! [`Follower`] applies the stream to a [`Zone`]; [`Standalone`] is the whole `berth-dns`: the saved
//! state or the apiserver's first answer, the DNS server on top of the zone, and the follower.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use berth_proto::backoff::{Backoff, Delays};
use berth_proto::node::dns_service_client::DnsServiceClient;
use berth_proto::node::{WatchZoneRequest, ZoneUpdate};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tonic::Streaming;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
use tracing::{debug, info, warn};

use crate::{Record, ServerConfig, ServerError, Zone, normalize};

/// The apiserver's node port, when `--server` names none.
pub const DEFAULT_APISERVER_PORT: u16 = berth_proto::ports::NODE;

/// How far apart reconnection attempts are, unless the config says otherwise: 500 ms doubling to
/// 30 s, back to the start once a stream has delivered the zone.
pub const DEFAULT_BACKOFF: Backoff = Backoff {
    initial: Duration::from_millis(500),
    max: Duration::from_secs(30),
};

/// How a [`Follower`] reaches the apiserver and where it keeps its state.
#[derive(Debug, Clone)]
pub struct FollowConfig {
    /// The apiserver's node port, `https://HOST:8444` (the port defaults to 8444).
    pub server: String,
    /// The name the apiserver's certificate must carry; the host of `server` if `None`. For an
    /// apiserver reached through an address its certificate does not name.
    pub server_name: Option<String>,
    /// The cluster CA (PEM): the only root trusted.
    pub ca_pem: Vec<u8>,
    /// This server's client certificate (PEM), from `POST /admin/v1/dns-certificates`.
    pub cert_pem: Vec<u8>,
    /// Its private key (PEM).
    pub key_pem: Vec<u8>,
    /// Where the last state is saved, and read back at start.
    pub state_file: Option<PathBuf>,
    /// The zone's origin was chosen by the operator (`--zone`): a stream with another origin is
    /// followed anyway (records outside the zone skipped) instead of ending with
    /// [`FollowError::OriginChanged`].
    pub fixed_origin: bool,
    pub backoff: Backoff,
    /// The state file is written at most once per this interval (changes can come in bursts).
    pub save_interval: Duration,
    /// Bound on the TCP + TLS connection, and on the wait for the first (whole-zone) message.
    pub connect_timeout: Duration,
}

impl FollowConfig {
    /// Following `server` with the given PEMs; no state file, default timings.
    pub fn new(
        server: impl Into<String>,
        ca_pem: impl Into<Vec<u8>>,
        cert_pem: impl Into<Vec<u8>>,
        key_pem: impl Into<Vec<u8>>,
    ) -> Self {
        Self {
            server: server.into(),
            server_name: None,
            ca_pem: ca_pem.into(),
            cert_pem: cert_pem.into(),
            key_pem: key_pem.into(),
            state_file: None,
            fixed_origin: false,
            backoff: DEFAULT_BACKOFF,
            save_interval: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(10),
        }
    }
}

/// Why following stopped for good (a broken stream is not one: it is retried).
#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    /// `--server` is not `https://HOST[:PORT]`.
    #[error("invalid apiserver URL '{url}': expected https://HOST:PORT")]
    BadServerUrl { url: String },
    /// The CA, the certificate or the key cannot make a TLS client configuration.
    #[error("invalid TLS configuration for the apiserver connection")]
    Tls(#[source] tonic::transport::Error),
    /// The apiserver now serves another origin than the zone being followed (its `--dns-zone`
    /// changed). A [`Zone`]'s origin is fixed, so the caller serves a new zone built from `state`
    /// (already saved to the state file).
    #[error("the apiserver's zone is now '{}', not '{from}'", state.origin)]
    OriginChanged { from: String, state: ZoneState },
}

/// Why one stream ended or could not start; logged and retried.
#[derive(Debug, thiserror::Error)]
enum StreamError {
    #[error("cannot connect to the apiserver")]
    Connect(#[source] tonic::transport::Error),
    #[error("no answer from the apiserver within {0:?}")]
    Timeout(Duration),
    // A status says its cause in its own Display (and its Debug-ish default is noisy), hence no #[source].
    #[error("the apiserver refused the zone watch: {}", status_text(.0))]
    Refused(tonic::Status),
    #[error("the zone stream broke: {}", status_text(.0))]
    Broken(tonic::Status),
    #[error("the apiserver ended the zone stream")]
    Ended,
    #[error("the zone stream did not start with the whole zone")]
    NotFull,
    #[error("the apiserver's zone names no origin")]
    NoOrigin,
}

/// Errors reading or writing the state file.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The file exists but cannot be read.
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not a saved zone.
    #[error("{} is not a saved zone", path.display())]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// The file (or its temporary sibling) cannot be written.
    #[error("cannot write {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The zone as the state file keeps it: JSON, names sorted, so it diffs and reads well.
///
/// ```json
/// {"origin": "berth.internal", "serial": 42, "records": {"web.local.berth.internal": ["10.0.0.5"]}}
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZoneState {
    /// The zone's origin, lower case, no trailing dot.
    pub origin: String,
    /// The apiserver's serial of the last update applied (0 if none was).
    #[serde(default)]
    pub serial: u32,
    /// Name -> addresses.
    #[serde(default)]
    pub records: BTreeMap<String, Vec<IpAddr>>,
}

impl ZoneState {
    /// The state of `zone` now; `serial` is the apiserver's.
    pub fn capture(zone: &Zone, serial: u32) -> Self {
        Self {
            origin: zone.origin().to_owned(),
            serial,
            records: zone
                .records()
                .into_iter()
                .map(|record| (record.name, record.addresses))
                .collect(),
        }
    }

    /// A whole-zone update as a state. Addresses that do not parse are left out (and logged).
    fn from_update(update: &ZoneUpdate) -> Self {
        let mut records = BTreeMap::new();
        for record in &update.upserts {
            let addresses = parse_addresses(&record.name, &record.addresses);
            if !addresses.is_empty() {
                records.insert(normalize(&record.name), addresses);
            }
        }
        Self {
            origin: normalize(&update.origin),
            serial: update.serial,
            records,
        }
    }

    /// A zone holding these records under `origin` (the state's own unless overridden). Names
    /// outside the origin are left out and logged: with `--zone`, the apiserver's zone may be wider.
    pub fn to_zone(&self, origin: Option<&str>) -> Zone {
        let zone = Zone::new(origin.unwrap_or(&self.origin));
        set_records(&zone, &self.records);
        zone
    }

    /// The saved state at `path`; `None` if there is no file.
    pub fn load(path: &Path) -> Result<Option<Self>, StateError> {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(StateError::Read {
                    path: path.to_owned(),
                    source,
                });
            }
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| StateError::Parse {
                path: path.to_owned(),
                source,
            })
    }

    /// Writes the state to `path` atomically: a temporary file in the same directory, synced, then
    /// renamed over `path`, so a crash leaves the old state or the new one, never half of one.
    pub fn save(&self, path: &Path) -> Result<(), StateError> {
        use std::io::Write as _;

        let write_error = |source| StateError::Write {
            path: path.to_owned(),
            source,
        };
        // Serialising a map of strings to addresses cannot fail; keep the error path anyway.
        let json =
            serde_json::to_vec_pretty(self).map_err(|e| write_error(std::io::Error::other(e)))?;
        let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
        tmp_name.push(".tmp");
        let tmp = path.with_file_name(tmp_name);
        let mut file = std::fs::File::create(&tmp).map_err(write_error)?;
        file.write_all(&json).map_err(write_error)?;
        file.write_all(b"\n").map_err(write_error)?;
        file.sync_all().map_err(write_error)?;
        std::fs::rename(&tmp, path).map_err(write_error)?;
        // The rename itself is durable once the directory is synced; losing it only loses freshness.
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
            && let Ok(dir) = std::fs::File::open(dir)
        {
            let _ = dir.sync_all();
        }
        Ok(())
    }
}

/// Replaces `zone`'s records with `records`, leaving out (and logging) names outside its origin.
fn set_records(zone: &Zone, records: &BTreeMap<String, Vec<IpAddr>>) {
    let mut outside = Vec::new();
    let inside: Vec<Record> = records
        .iter()
        .filter(|(name, _)| {
            let keep = zone.contains(name);
            if !keep {
                outside.push(name.as_str());
            }
            keep
        })
        .map(|(name, addresses)| Record {
            name: name.clone(),
            addresses: addresses.clone(),
        })
        .collect();
    if !outside.is_empty() {
        warn!(
            origin = zone.origin(),
            skipped = outside.len(),
            first = outside[0],
            "records outside the zone are not served"
        );
    }
    if let Err(e) = zone.replace_all(inside) {
        // Every name was checked against the origin above.
        warn!(error = %e, "zone not replaced");
    }
}

/// The addresses of a `DnsRecord`; one that does not parse is skipped with a warning rather than
/// failing the whole update.
fn parse_addresses(name: &str, addresses: &[String]) -> Vec<IpAddr> {
    addresses
        .iter()
        .filter_map(|address| match address.trim().parse() {
            Ok(ip) => Some(ip),
            Err(_) => {
                warn!(name, address, "not an IP address; skipped");
                None
            }
        })
        .collect()
}

/// What a [`Follower`] is doing, for logs, health and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FollowStatus {
    /// A stream is open and its whole zone has been applied.
    pub connected: bool,
    /// The apiserver's serial of the last update applied.
    pub serial: Option<u32>,
    /// How many streams have delivered the whole zone so far (the first one included).
    pub syncs: u64,
    /// Why the last stream ended or could not start (the whole chain of causes).
    pub last_error: Option<String>,
}

/// The apiserver's address and the TLS client configuration, ready to dial.
#[derive(Debug, Clone)]
struct Dialer {
    endpoint: Endpoint,
    connect_timeout: Duration,
}

/// A whole-zone message can be large (10,000 names are ~0.5 MB); tonic's default cap is 4 MiB.
const MAX_MESSAGE_BYTES: usize = 256 * 1024 * 1024;

impl Dialer {
    fn new(config: &FollowConfig) -> Result<Self, FollowError> {
        let uri = apiserver_uri(&config.server)?;
        let mut tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&config.ca_pem))
            .identity(Identity::from_pem(&config.cert_pem, &config.key_pem));
        if let Some(name) = &config.server_name {
            tls = tls.domain_name(name.clone());
        }
        let endpoint = Endpoint::from(uri)
            .tls_config(tls)
            .map_err(FollowError::Tls)?
            .connect_timeout(config.connect_timeout)
            .tcp_nodelay(true)
            // A watch may be quiet for hours: pings find an apiserver that vanished without a FIN.
            .http2_keep_alive_interval(Duration::from_secs(20))
            .keep_alive_timeout(Duration::from_secs(10))
            .keep_alive_while_idle(true);
        Ok(Self {
            endpoint,
            connect_timeout: config.connect_timeout,
        })
    }

    /// A new connection (never a cached one) and the stream's first message, which must be `full`.
    async fn open(&self) -> Result<(Streaming<ZoneUpdate>, ZoneUpdate), StreamError> {
        let timeout = self.connect_timeout;
        // One bound over TCP, TLS, the call and the first message: a peer that accepts and then says
        // nothing must not hold the follower forever.
        let first = async {
            let channel = self
                .endpoint
                .connect()
                .await
                .map_err(StreamError::Connect)?;
            let mut client =
                DnsServiceClient::new(channel).max_decoding_message_size(MAX_MESSAGE_BYTES);
            let mut stream = client
                .watch(WatchZoneRequest {})
                .await
                .map_err(StreamError::Refused)?
                .into_inner();
            match stream.message().await {
                Ok(Some(update)) if update.full && update.origin.trim().is_empty() => {
                    Err(StreamError::NoOrigin)
                }
                Ok(Some(update)) if update.full => Ok((stream, update)),
                Ok(Some(_)) => Err(StreamError::NotFull),
                Ok(None) => Err(StreamError::Ended),
                Err(status) => Err(StreamError::Refused(status)),
            }
        };
        tokio::time::timeout(timeout, first)
            .await
            .map_err(|_| StreamError::Timeout(timeout))?
    }
}

/// `https://HOST[:PORT]`, the port 8444 if none is given.
fn apiserver_uri(url: &str) -> Result<http::Uri, FollowError> {
    let bad = || FollowError::BadServerUrl {
        url: url.to_owned(),
    };
    let uri: http::Uri = url.parse().map_err(|_| bad())?;
    if uri.scheme_str() != Some("https") || uri.host().is_none_or(str::is_empty) {
        return Err(bad());
    }
    let authority = uri.authority().ok_or_else(bad)?;
    if authority.port().is_some() {
        return Ok(uri);
    }
    format!("https://{authority}:{DEFAULT_APISERVER_PORT}")
        .parse()
        .map_err(|_| bad())
}

/// The apiserver's whole zone, as soon as it can be had: retried with back-off until then. `None`
/// if `shutdown` came first. For a `berth-dns` that has no saved state and so nothing to answer with.
pub async fn fetch(
    config: &FollowConfig,
    shutdown: &CancellationToken,
) -> Result<Option<ZoneState>, FollowError> {
    let dialer = Dialer::new(config)?;
    let mut delays = config.backoff.delays();
    // As in `Follower::follow`: a new reason is a warning, the same one again only debug.
    let mut last_logged: Option<String> = None;
    loop {
        let opened = tokio::select! {
            () = shutdown.cancelled() => return Ok(None),
            opened = dialer.open() => opened,
        };
        match opened {
            Ok((_, first)) => return Ok(Some(ZoneState::from_update(&first))),
            Err(e) => {
                let delay = delays.next_delay();
                let error = chain(&e);
                if last_logged.as_deref() != Some(error.as_str()) {
                    warn!(error, retry_in = ?delay, "waiting for the apiserver's zone");
                } else {
                    debug!(error, retry_in = ?delay, "still waiting for the apiserver's zone");
                }
                last_logged = Some(error);
                tokio::select! {
                    () = shutdown.cancelled() => return Ok(None),
                    () = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}

/// Keeps a [`Zone`] equal to the apiserver's, and the state file up to date.
#[derive(Debug)]
pub struct Follower {
    dialer: Dialer,
    config: FollowConfig,
    zone: Zone,
    status: watch::Sender<FollowStatus>,
}

impl Follower {
    /// Checks the URL and the TLS material now, so a mistake shows at start, not at the first dial.
    pub fn new(config: FollowConfig, zone: Zone) -> Result<Self, FollowError> {
        Ok(Self {
            dialer: Dialer::new(&config)?,
            config,
            zone,
            status: watch::Sender::new(FollowStatus::default()),
        })
    }

    /// The follower's status, updated as streams come and go.
    pub fn status(&self) -> watch::Receiver<FollowStatus> {
        self.status.subscribe()
    }

    /// Follows until `shutdown` (then `Ok`) or until the apiserver's origin changes under a zone
    /// whose origin is not fixed. Saves the state a last time before returning.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), FollowError> {
        let (dirty, dirty_rx) = watch::channel(());
        let saver_stop = CancellationToken::new();
        let saver = self.config.state_file.clone().map(|path| {
            tokio::spawn(save_loop(
                path,
                self.zone.clone(),
                self.status.subscribe(),
                dirty_rx,
                self.config.save_interval,
                saver_stop.clone(),
            ))
        });
        let result = self.follow(&shutdown, &dirty).await;
        saver_stop.cancel();
        if let Some(saver) = saver {
            let _ = saver.await;
        }
        if let (Err(FollowError::OriginChanged { state, .. }), Some(path)) =
            (&result, &self.config.state_file)
        {
            save(path.clone(), state.clone()).await;
        }
        drop(dirty);
        result
    }

    async fn follow(
        &self,
        shutdown: &CancellationToken,
        dirty: &watch::Sender<()>,
    ) -> Result<(), FollowError> {
        let mut delays = self.config.backoff.delays();
        // Each new reason is logged as a warning once; retries failing the same way only at debug,
        // so an apiserver away for hours does not flood the log.
        let mut last_logged: Option<String> = None;
        loop {
            let ended = tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                ended = self.session(&mut delays, dirty) => ended,
            };
            let error = match ended {
                Ok(error) => error,
                Err(fatal) => return Err(fatal),
            };
            let delay = delays.next_delay();
            let was_connected = self.status.borrow().connected;
            let error_text = chain(&error);
            if was_connected {
                warn!(error = %error_text, retry_in = ?delay, "lost the apiserver; answering from the last state");
            } else if last_logged.as_deref() != Some(error_text.as_str()) {
                warn!(error = %error_text, retry_in = ?delay, "apiserver not reachable; answering from the last state");
            } else {
                debug!(error = %error_text, retry_in = ?delay, "apiserver still not reachable");
            }
            last_logged = Some(error_text.clone());
            self.status.send_modify(|status| {
                status.connected = false;
                status.last_error = Some(error_text);
            });
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                () = tokio::time::sleep(delay) => {}
            }
        }
    }

    /// One stream: open, apply the whole zone, apply changes until it breaks. Returns why it ended,
    /// or a [`FollowError`] that ends following.
    async fn session(
        &self,
        delays: &mut Delays,
        dirty: &watch::Sender<()>,
    ) -> Result<StreamError, FollowError> {
        let (mut stream, first) = match self.dialer.open().await {
            Ok(opened) => opened,
            Err(e) => return Ok(e),
        };
        self.apply_full(&first)?;
        dirty.send_replace(());
        delays.reset();
        let syncs = self.status.borrow().syncs + 1;
        self.status.send_modify(|status| {
            status.connected = true;
            status.serial = Some(first.serial);
            status.syncs = syncs;
        });
        info!(
            origin = self.zone.origin(),
            serial = first.serial,
            records = first.upserts.len(),
            "following the apiserver's zone"
        );
        loop {
            let update = match stream.message().await {
                Ok(Some(update)) => update,
                Ok(None) => return Ok(StreamError::Ended),
                Err(status) => return Ok(StreamError::Broken(status)),
            };
            if update.full {
                // The contract sends `full` first only, but a whole zone is always safe to apply.
                self.apply_full(&update)?;
            } else {
                self.apply_delta(&update);
            }
            dirty.send_replace(());
            self.status
                .send_modify(|status| status.serial = Some(update.serial));
        }
    }

    /// Replaces the zone with a whole-zone update, unless the apiserver's origin moved away from the
    /// zone's and the origin is not fixed.
    fn apply_full(&self, update: &ZoneUpdate) -> Result<(), FollowError> {
        let state = ZoneState::from_update(update);
        if !state.origin.is_empty() && state.origin != self.zone.origin() {
            if !self.config.fixed_origin {
                return Err(FollowError::OriginChanged {
                    from: self.zone.origin().to_owned(),
                    state,
                });
            }
            debug!(
                apiserver = state.origin,
                served = self.zone.origin(),
                "serving the --zone origin"
            );
        }
        set_records(&self.zone, &state.records);
        Ok(())
    }

    fn apply_delta(&self, update: &ZoneUpdate) {
        for record in &update.upserts {
            let addresses = parse_addresses(&record.name, &record.addresses);
            if let Err(e) = self.zone.upsert(&record.name, addresses) {
                debug!(error = %e, "record outside the zone not served");
            }
        }
        for name in &update.removals {
            self.zone.remove(name);
        }
    }
}

/// Saves the zone when it changed, at most once per `interval`, and once more at `stop` if it
/// changed since the last save.
async fn save_loop(
    path: PathBuf,
    zone: Zone,
    status: watch::Receiver<FollowStatus>,
    mut dirty: watch::Receiver<()>,
    interval: Duration,
    stop: CancellationToken,
) {
    let state = |status: &watch::Receiver<FollowStatus>| {
        ZoneState::capture(&zone, status.borrow().serial.unwrap_or_default())
    };
    loop {
        tokio::select! {
            biased;
            () = stop.cancelled() => break,
            changed = dirty.changed() => if changed.is_err() { break },
        }
        save(path.clone(), state(&status)).await;
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep(interval) => {}
        }
    }
    if dirty.has_changed().unwrap_or(false) {
        save(path, state(&status)).await;
    }
}

/// [`ZoneState::save`] off the async threads; a failure is logged (the zone is still served).
async fn save(path: PathBuf, state: ZoneState) {
    let shown = path.display().to_string();
    match tokio::task::spawn_blocking(move || state.save(&path)).await {
        Ok(Ok(())) => debug!(path = shown, "zone saved"),
        Ok(Err(e)) => warn!(error = %chain(&e), "zone not saved"),
        Err(e) => warn!(error = %e, path = shown, "zone not saved"),
    }
}

/// `PermissionDenied: not a DNS server's certificate`, and the transport's causes if any.
fn status_text(status: &tonic::Status) -> String {
    let mut parts = vec![format!("{:?}", status.code()), status.message().to_owned()];
    causes(std::error::Error::source(status), &mut parts);
    join(parts)
}

/// An error and its causes, `a: b: c` (tonic's transport errors say little without their source).
fn chain(error: &dyn std::error::Error) -> String {
    let mut parts = vec![error.to_string()];
    causes(error.source(), &mut parts);
    join(parts)
}

fn causes(mut source: Option<&dyn std::error::Error>, parts: &mut Vec<String>) {
    while let Some(cause) = source {
        parts.push(cause.to_string());
        source = cause.source();
    }
}

/// Joins with `: `, leaving out a part that repeats the one before (wrappers often say the same).
fn join(mut parts: Vec<String>) -> String {
    parts.dedup();
    parts.retain(|part| !part.is_empty());
    parts.join(": ")
}

/// Everything a standalone `berth-dns` runs with.
#[derive(Debug)]
pub struct StandaloneConfig {
    pub follow: FollowConfig,
    /// Where and how to answer; `udp`/`tcp` may have port 0 (see [`Standalone::serving`]).
    pub server: ServerConfig,
    /// `--zone`: serve this origin whatever the apiserver or the state file say.
    pub zone: Option<String>,
}

/// What a running standalone server answers from and on.
#[derive(Debug, Clone)]
pub struct Serving {
    pub udp: SocketAddr,
    pub tcp: SocketAddr,
    pub zone: Zone,
    pub status: watch::Receiver<FollowStatus>,
}

/// Why a standalone server stopped.
#[derive(Debug, thiserror::Error)]
pub enum StandaloneError {
    #[error(transparent)]
    Follow(#[from] FollowError),
    /// The DNS server could not start (an address in use, say).
    #[error("the DNS server cannot start")]
    Serve(#[source] ServerError),
}

/// The standalone `berth-dns`: answers from the saved state at once if there is one (else from the
/// apiserver's first answer), and follows the apiserver from then on.
#[derive(Debug)]
pub struct Standalone {
    config: StandaloneConfig,
    serving: watch::Sender<Option<Serving>>,
}

impl Standalone {
    pub fn new(mut config: StandaloneConfig) -> Self {
        config.follow.fixed_origin = config.zone.is_some();
        Self {
            config,
            serving: watch::Sender::new(None),
        }
    }

    /// The addresses and zone being served: `None` until the server answers (and between the two
    /// servers of an origin change).
    pub fn serving(&self) -> watch::Receiver<Option<Serving>> {
        self.serving.subscribe()
    }

    /// Runs until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), StandaloneError> {
        let Self {
            mut config,
            serving,
        } = self;
        // A wrong URL or PEM is a mistake to say at once, not after a wait for the apiserver.
        Dialer::new(&config.follow)?;
        let saved = match &config.follow.state_file {
            Some(path) => match ZoneState::load(path) {
                Ok(saved) => saved,
                Err(e) => {
                    // A broken file must not keep DNS down: the apiserver has the truth.
                    warn!(error = %chain(&e), "ignoring the saved zone");
                    None
                }
            },
            None => None,
        };
        let mut state = match saved {
            Some(state) => {
                info!(
                    origin = state.origin,
                    records = state.records.len(),
                    "answering from the saved zone until the apiserver answers"
                );
                state
            }
            None => {
                info!(
                    server = config.follow.server,
                    "no saved zone: waiting for the apiserver's"
                );
                match fetch(&config.follow, &shutdown).await? {
                    Some(state) => state,
                    None => return Ok(()),
                }
            }
        };
        loop {
            let zone = state.to_zone(config.zone.as_deref());
            let follower = Follower::new(config.follow.clone(), zone.clone())?;
            let stop_server = shutdown.child_token();
            let running = crate::serve(config.server.clone(), zone.clone(), stop_server.clone())
                .await
                .map_err(StandaloneError::Serve)?;
            // An origin change serves again on the very same ports, even if port 0 was asked.
            config.server.udp = running.udp;
            config.server.tcp = running.tcp;
            info!(udp = %running.udp, tcp = %running.tcp, origin = zone.origin(), "answering");
            serving.send_replace(Some(Serving {
                udp: running.udp,
                tcp: running.tcp,
                zone,
                status: follower.status(),
            }));
            let followed = follower.run(shutdown.clone()).await;
            serving.send_replace(None);
            stop_server.cancel();
            running.wait().await;
            match followed {
                Ok(()) => return Ok(()),
                Err(FollowError::OriginChanged { from, state: next }) => {
                    warn!(
                        from,
                        to = next.origin,
                        "the apiserver's zone changed origin; serving the new one"
                    );
                    state = next;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::net::Ipv4Addr;

    use berth_proto::node::DnsRecord;

    use super::*;

    #[test]
    fn server_urls_must_be_https_and_get_the_node_port() {
        for bad in ["http://h:8444", "h:8444", "https://", "not a url"] {
            assert!(
                matches!(apiserver_uri(bad), Err(FollowError::BadServerUrl { .. })),
                "{bad}"
            );
        }
        let uri = |url: &str| apiserver_uri(url).unwrap().to_string();
        assert_eq!(uri("https://apiserver"), "https://apiserver:8444/");
        assert_eq!(uri("https://[::1]"), "https://[::1]:8444/");
        assert_eq!(uri("https://10.0.0.1:9000"), "https://10.0.0.1:9000/");
    }

    #[test]
    fn broken_pems_are_refused_at_start() {
        let config = FollowConfig::new("https://apiserver", "no CA", "no cert", "no key");
        let err = Follower::new(config, Zone::new("berth.internal")).unwrap_err();
        assert!(matches!(err, FollowError::Tls(_)), "{err}");
    }

    #[test]
    fn state_round_trips_through_the_file_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("zone.json");
        assert_eq!(ZoneState::load(&path).unwrap(), None);
        let zone = Zone::new("berth.internal");
        let ip = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 5));
        zone.upsert("web.local.berth.internal", vec![ip]).unwrap();
        let state = ZoneState::capture(&zone, 7);
        state.save(&path).unwrap();
        let loaded = ZoneState::load(&path).unwrap().unwrap();
        assert_eq!(loaded, state);
        assert!(!dir.path().join("zone.json.tmp").exists());
        let zone = loaded.to_zone(None);
        assert_eq!(zone.origin(), "berth.internal");
        assert_eq!(
            zone.lookup("web.local.berth.internal").unwrap().to_vec(),
            [ip]
        );

        std::fs::write(&path, "{not json").unwrap();
        assert!(matches!(
            ZoneState::load(&path),
            Err(StateError::Parse { .. })
        ));
    }

    #[test]
    fn a_narrower_origin_keeps_only_its_names() {
        let update = ZoneUpdate {
            origin: "Berth.Internal.".into(),
            serial: 3,
            full: true,
            upserts: vec![
                DnsRecord {
                    name: "a.eu.berth.internal".into(),
                    addresses: vec!["10.0.0.1".into(), "bogus".into()],
                },
                DnsRecord {
                    name: "b.us.berth.internal".into(),
                    addresses: vec!["10.0.0.2".into()],
                },
                DnsRecord {
                    name: "c.eu.berth.internal".into(),
                    addresses: vec!["nope".into()],
                },
            ],
            removals: vec![],
        };
        let state = ZoneState::from_update(&update);
        assert_eq!(state.origin, "berth.internal");
        assert_eq!(state.records.len(), 2, "c has no usable address");
        let zone = state.to_zone(Some("eu.berth.internal"));
        assert_eq!(
            zone.records(),
            [Record {
                name: "a.eu.berth.internal".into(),
                addresses: vec![IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))],
            }]
        );
    }
}
