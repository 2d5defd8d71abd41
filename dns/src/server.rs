//! The authoritative server: binds UDP and TCP, answers from a [`Zone`] until shut down.
//!
//! UDP, where nearly all queries come, is served by `workers` dedicated threads, each with its own
//! blocking socket (`SO_REUSEPORT` spreads the load when there are several) and its own
//! [`Responder`], receiving and sending in batches (`recvmmsg`/`sendmmsg`): see [`crate::udp`].
//! TCP (2-byte length framing, several queries per connection, an idle timeout, at most
//! [`TCP_MAX_CONNECTIONS`] at once) runs on the caller's tokio runtime with hickory's framing: see
//! [`crate::tcp`]. Both answer through the same [`Responder`], so both answer alike.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::thread::JoinHandle;

use hickory_proto::ProtoError;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::responder::Responder;
use crate::zone::Zone;
use crate::{tcp, udp};

pub use crate::tcp::{TCP_IDLE_TIMEOUT, TCP_MAX_CONNECTIONS};

/// Where and how to serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// The UDP address; port 0 picks a free port.
    pub udp: SocketAddr,
    /// The TCP address; port 0 picks a free port: the UDP one when both are 0 on the same IP and
    /// it is free, so one port serves both as port 53 does.
    pub tcp: SocketAddr,
    /// TTL of A and AAAA answers (and of SOA and NS at the apex), in seconds.
    pub ttl: u32,
    /// UDP worker threads, each with its own socket (`SO_REUSEPORT` when more than one). At least 1.
    pub workers: usize,
    /// The zone's SOA; `None` derives one from the origin ([`Soa::for_origin`]).
    pub soa: Option<Soa>,
}

impl ServerConfig {
    /// Defaults: TTL 60 s, one UDP worker, the SOA derived from the origin.
    pub fn new(udp: SocketAddr, tcp: SocketAddr) -> Self {
        Self {
            udp,
            tcp,
            ttl: 60,
            workers: 1,
            soa: None,
        }
    }
}

/// The zone's SOA record, less the serial (the zone's, which increases with every change).
///
/// Its MNAME is also the zone's one NS record. Names may end with a dot or not; RNAME is a mailbox
/// in domain-name form (`hostmaster.example.com`; `hostmaster@example.com` is accepted too).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Soa {
    pub mname: String,
    pub rname: String,
    pub refresh: u32,
    pub retry: u32,
    pub expire: u32,
    /// The negative-caching TTL (RFC 2308): negative answers carry the SOA with
    /// min(minimum, the configured TTL) as its TTL.
    pub minimum: u32,
}

impl Soa {
    /// `ns1.<origin>`, `hostmaster.<origin>`; refresh 1 h, retry 10 min, expire 1 week, and
    /// negative answers cached 60 s, the default TTL: a name that starts to exist is seen within a
    /// minute by resolvers that asked before.
    pub fn for_origin(origin: &str) -> Self {
        let origin = origin.trim_end_matches('.');
        let under = |label: &str| {
            if origin.is_empty() {
                label.to_owned()
            } else {
                format!("{label}.{origin}")
            }
        };
        Self {
            mname: under("ns1"),
            rname: under("hostmaster"),
            refresh: 3600,
            retry: 600,
            expire: 604_800,
            minimum: 60,
        }
    }
}

/// Errors of starting the server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The UDP socket could not be bound (or set up).
    #[error("cannot bind the DNS UDP socket {addr}")]
    BindUdp {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    /// The TCP listener could not be bound (or set up).
    #[error("cannot bind the DNS TCP listener {addr}")]
    BindTcp {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    /// The origin or a name of the SOA is not a valid domain name.
    #[error("'{name}' is not a valid domain name")]
    InvalidName {
        name: String,
        #[source]
        source: ProtoError,
    },
    /// `workers` was 0.
    #[error("the DNS server needs at least one UDP worker")]
    NoWorkers,
    /// A UDP worker thread could not be started.
    #[error("cannot start a DNS UDP worker thread")]
    Thread(#[source] io::Error),
}

/// A server that is answering.
#[derive(Debug)]
pub struct Running {
    /// The bound UDP address (the actual port when port 0 was asked).
    pub udp: SocketAddr,
    /// The bound TCP address.
    pub tcp: SocketAddr,
    /// What it answered, by transport and response code.
    pub counts: crate::QueryCounts,
    tasks: TaskTracker,
    threads: Vec<JoinHandle<()>>,
}

impl Running {
    /// Returns once the server has been shut down (through the token given to [`serve`]) and
    /// every thread and task has ended, so its ports are free again.
    pub async fn wait(self) {
        self.tasks.close();
        self.tasks.wait().await;
        let threads = self.threads;
        // The UDP threads notice the shutdown within `udp::POLL`.
        let joined = tokio::task::spawn_blocking(move || {
            threads.into_iter().all(|thread| thread.join().is_ok())
        })
        .await;
        if !matches!(joined, Ok(true)) {
            warn!("a DNS UDP worker thread panicked");
        }
    }
}

/// How many fresh UDP ports [`bind`] tries when both ports are left to the kernel and the TCP
/// twin of the one it got is taken.
const PAIR_ATTEMPTS: usize = 16;

/// Binds the UDP sockets and the TCP listener of `config`.
///
/// When both ask for port 0 on one IP, the two share a port, as port 53 does, so `dig -p` reaches
/// either: a UDP port whose TCP twin is taken (by another process, or a test next door) is let go
/// and another one tried. After [`PAIR_ATTEMPTS`], TCP takes any port.
fn bind(config: &ServerConfig) -> Result<(Vec<UdpSocket>, SocketAddr, TcpListener), ServerError> {
    let udp_error = |source| ServerError::BindUdp {
        addr: config.udp,
        source,
    };
    let pair =
        config.udp.port() == 0 && config.tcp.port() == 0 && config.udp.ip() == config.tcp.ip();
    let mut attempt = 1;
    loop {
        let sockets = udp::bind(config.udp, config.workers).map_err(udp_error)?;
        let udp_addr = match sockets.first() {
            Some(socket) => socket.local_addr().map_err(udp_error)?,
            None => config.udp,
        };
        let tcp_addr = if pair { udp_addr } else { config.tcp };
        let listener = match tcp::listen(tcp_addr) {
            Ok(listener) => listener,
            Err(_) if pair && attempt < PAIR_ATTEMPTS => {
                attempt += 1;
                continue;
            }
            Err(_) if pair => tcp::listen(config.tcp).map_err(|source| ServerError::BindTcp {
                addr: config.tcp,
                source,
            })?,
            Err(source) => {
                return Err(ServerError::BindTcp {
                    addr: config.tcp,
                    source,
                });
            }
        };
        return Ok((sockets, udp_addr, listener));
    }
}

/// Serves `zone` on the addresses of `config` until `shutdown` is cancelled.
///
/// Returns once the sockets are bound and answering. Must be called within a tokio runtime, which
/// runs the TCP side; the UDP side has threads of its own.
pub async fn serve(
    config: ServerConfig,
    zone: Zone,
    shutdown: CancellationToken,
) -> Result<Running, ServerError> {
    if config.workers == 0 {
        return Err(ServerError::NoWorkers);
    }
    let origin = zone.origin().to_owned();
    let responder = Responder::new(&config, zone)?;
    let counts = responder.counts();
    let (sockets, udp_addr, listener) = bind(&config)?;
    let tcp_addr = listener
        .local_addr()
        .map_err(|source| ServerError::BindTcp {
            addr: config.tcp,
            source,
        })?;

    // Stops what started so far if a later step fails; the caller's token stops it all otherwise.
    let stop = shutdown.child_token();
    let mut threads = Vec::with_capacity(sockets.len());
    for (i, socket) in sockets.into_iter().enumerate() {
        let responder = responder.clone();
        let stop_worker = stop.clone();
        let thread = std::thread::Builder::new()
            .name(format!("dns-udp-{i}"))
            .spawn(move || udp::run(socket, responder, stop_worker));
        match thread {
            Ok(thread) => threads.push(thread),
            Err(source) => {
                stop.cancel();
                return Err(ServerError::Thread(source));
            }
        }
    }
    let tasks = TaskTracker::new();
    tasks.spawn(tcp::accept(listener, responder, stop, tasks.clone()));
    info!(udp = %udp_addr, tcp = %tcp_addr, %origin, workers = config.workers, "DNS server answering");
    Ok(Running {
        udp: udp_addr,
        tcp: tcp_addr,
        counts,
        tasks,
        threads,
    })
}
