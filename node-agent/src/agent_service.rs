//! The agent's own gRPC service, `AgentService` (`Logs` and `Exec`; `Attach` later), which the
//! apiserver dials to proxy a user's request.
//!
//! It listens on its own port (default 8445) with mutual TLS: the node presents its certificate (SAN
//! `<node-id>.node.berth.internal`, the name the apiserver verifies), the client must present one
//! signed by the cluster CA, and then that certificate must name `apiserver.berth.internal`: a node
//! certificate, which the same CA signs, is refused with `PermissionDenied`.
//!
//! `Logs` reads the files `berth-logger` writes (see [`crate::runtime::containerd::logs`]) where the
//! runtime says a container's logs are, renders them as ACI's log `content` and streams that in
//! chunks, only lines logged at or after `since_unix_ms` if given. With `follow` it keeps polling
//! `current.log` and sends what is appended, across rotations (`current.log` renamed to
//! `current.log.1`), new runs (renamed to `previous.log`) and truncation, until the caller goes away,
//! the agent stops, or the container has stopped for good: its group is gone from the runtime, or the
//! container is not running and the group is stopped, succeeded or failed. That is checked before
//! every poll; once it holds, the stream ends at the first poll after that brings nothing new (so the
//! last lines `berth-logger` writes after the exit are still sent).
//!
//! `Exec` reads the `start` message, has the runtime start the process ([`Runtime::exec`]), answers
//! `started_pid`, then forwards both ways in one loop: stdin, resizes and the end of stdin to the
//! process; its output, each read as it comes, to the caller; last its exit code. A caller whose
//! inbound stream fails, or who stops reading the answer, has gone away: the process is dropped, which
//! kills it. An inbound stream that ends cleanly means no more input: without a terminal the process's
//! stdin is closed; on a terminal nothing happens (the caller sends ^D). Stdin the process does not
//! read yet holds up reading the caller's messages, never forwarding the output.

use std::fs::File;
use std::future::Future;
use std::io::{Read as _, Seek as _, SeekFrom};
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use berth_proto::names;
use berth_proto::node::agent_service_server::{AgentService, AgentServiceServer};
use berth_proto::node::{
    ContainerState, ExecInput, ExecOutput, GroupPhase, LogChunk, LogsRequest, exec_input,
    exec_output,
};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tokio_util::sync::CancellationToken;
use tonic::transport::{Server, ServerTlsConfig};
use tonic::{Request, Response, Status, Streaming};
use x509_parser::extensions::GeneralName;

use crate::connection::dial::ServerAddr;
use crate::runtime::containerd::logs::{self, Line};
use crate::runtime::{ExecProcess, ProcessInput, ProcessOutput, Runtime};

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;

/// The port of `AgentService` when `--agent-listen` names none.
pub const DEFAULT_PORT: u16 = berth_proto::ports::AGENT;
/// How often a followed log is checked for new lines.
pub const FOLLOW_POLL: Duration = Duration::from_millis(200);
/// The largest piece of log text in one message.
const CHUNK: usize = 64 * 1024;
/// Chunks queued towards a slow reader before reading the files waits.
const QUEUED_CHUNKS: usize = 8;
/// Exec messages queued towards a slow caller before reading the process's output waits.
const QUEUED_OUTPUT: usize = 16;

/// Why the agent service could not start.
#[derive(Debug, thiserror::Error)]
pub enum AgentServiceError {
    /// The listen address cannot be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// No default URL to advertise: the local address towards the apiserver is unknown.
    #[error("cannot tell the local address that reaches {server}; pass --agent-advertise")]
    LocalAddress {
        server: String,
        #[source]
        source: std::io::Error,
    },
    /// tonic refused the TLS settings.
    #[error("cannot set up TLS for the agent service")]
    Tls(#[source] tonic::transport::Error),
}

/// Serves `AgentService` for one node's runtime.
#[derive(Clone)]
pub struct AgentServer {
    runtime: Arc<dyn Runtime>,
    poll: Duration,
    shutdown: CancellationToken,
}

impl AgentServer {
    /// A server for `runtime`; followed logs and exec sessions end when `shutdown` is cancelled (the
    /// processes are killed).
    pub fn new(runtime: Arc<dyn Runtime>, shutdown: CancellationToken) -> Self {
        Self {
            runtime,
            poll: FOLLOW_POLL,
            shutdown,
        }
    }

    /// Checks followed logs every `poll` instead of [`FOLLOW_POLL`].
    pub fn with_poll(mut self, poll: Duration) -> Self {
        self.poll = poll;
        self
    }

    /// Serves on `listener` with `tls` (which must require client certificates from the cluster CA,
    /// as [`crate::identity::Identity::agent_tls`] does) until the shutdown token is cancelled.
    pub fn serve(
        self,
        listener: TcpListener,
        tls: ServerTlsConfig,
    ) -> Result<impl Future<Output = Result<(), tonic::transport::Error>> + Send, AgentServiceError>
    {
        let shutdown = self.shutdown.clone();
        let router = Server::builder()
            .tls_config(tls)
            .map_err(AgentServiceError::Tls)?
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .add_service(AgentServiceServer::new(self));
        // No Nagle: exec output is many small writes, and one held back behind the delayed ACK of
        // the last costs 40 ms (tonic sets this only on listeners it binds itself).
        let incoming = TcpListenerStream::new(listener).map(|accepted| {
            accepted.inspect(|stream| {
                let _ = stream.set_nodelay(true);
            })
        });
        Ok(router.serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned()))
    }
}

/// Binds `listen`, serves `AgentService` for one node in the background until `shutdown`, and returns
/// the URL to advertise in `Hello`: `advertise` if given, else `https://<the local address used to
/// reach server>:<the bound port>` (or the bound address itself if it is not a wildcard).
pub(crate) async fn start(
    listen: SocketAddr,
    advertise: Option<&str>,
    server: &ServerAddr,
    tls: ServerTlsConfig,
    runtime: Arc<dyn Runtime>,
    shutdown: CancellationToken,
) -> Result<String, AgentServiceError> {
    let bind_err = |source| AgentServiceError::Bind {
        addr: listen,
        source,
    };
    let listener = TcpListener::bind(listen).await.map_err(bind_err)?;
    let bound = listener.local_addr().map_err(bind_err)?;
    let endpoint = match advertise {
        Some(url) => url.to_owned(),
        None => {
            let ip = if bound.ip().is_unspecified() {
                local_ip_towards(server).await.map_err(|source| {
                    AgentServiceError::LocalAddress {
                        server: server.to_string(),
                        source,
                    }
                })?
            } else {
                bound.ip()
            };
            endpoint_url(ip, bound.port())
        }
    };
    let serving = AgentServer::new(runtime, shutdown).serve(listener, tls)?;
    tokio::spawn(async move {
        if let Err(error) = serving.await {
            tracing::error!(%error, "the agent service stopped");
        }
    });
    tracing::info!(%bound, %endpoint, "agent service listening");
    Ok(endpoint)
}

/// The local address the kernel would use to reach `server` (a connected UDP socket sends nothing).
async fn local_ip_towards(server: &ServerAddr) -> std::io::Result<IpAddr> {
    let target = tokio::net::lookup_host((server.host(), server.port()))
        .await?
        .next()
        .ok_or_else(|| std::io::Error::other("the server's name resolves to no address"))?;
    let any: SocketAddr = if target.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = std::net::UdpSocket::bind(any)?;
    socket.connect(target)?;
    Ok(socket.local_addr()?.ip())
}

fn endpoint_url(ip: IpAddr, port: u16) -> String {
    match ip {
        IpAddr::V4(ip) => format!("https://{ip}:{port}"),
        IpAddr::V6(ip) => format!("https://[{ip}]:{port}"),
    }
}

/// Whether a verified client certificate names the apiserver: in a DNS SAN if it has any (RFC 6125),
/// else in its CN.
pub fn names_apiserver(der: &[u8]) -> bool {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return false;
    };
    let dns_names: Vec<&str> = match cert.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|name| match name {
                GeneralName::DNSName(dns) => Some(*dns),
                _ => None,
            })
            .collect(),
        Ok(None) => Vec::new(),
        Err(_) => return false,
    };
    if !dns_names.is_empty() {
        return dns_names
            .iter()
            .any(|dns| dns.eq_ignore_ascii_case(names::APISERVER));
    }
    cert.subject().iter_common_name().any(|cn| {
        cn.as_str()
            .is_ok_and(|cn| cn.eq_ignore_ascii_case(names::APISERVER))
    })
}

/// Lets the call through only if the peer's (CA-verified) certificate is the apiserver's.
fn authorize<T>(request: &Request<T>) -> Result<(), Status> {
    let leaf = request
        .peer_certs()
        .and_then(|certs| certs.first().cloned())
        .ok_or_else(|| Status::unauthenticated("AgentService needs a client certificate"))?;
    if names_apiserver(leaf.as_ref()) {
        Ok(())
    } else {
        Err(Status::permission_denied(
            "only the apiserver may call AgentService",
        ))
    }
}

type LogStream = ReceiverStream<Result<LogChunk, Status>>;
type ExecStream = ReceiverStream<Result<ExecOutput, Status>>;

#[tonic::async_trait]
impl AgentService for AgentServer {
    type LogsStream = LogStream;
    type ExecStream = ExecStream;

    async fn logs(
        &self,
        request: Request<LogsRequest>,
    ) -> Result<Response<Self::LogsStream>, Status> {
        authorize(&request)?;
        let request = request.into_inner();
        let dir = self
            .runtime
            .log_dir(&request.group_id, &request.container)
            .ok_or_else(|| {
                Status::not_found(format!(
                    "this node runs no container '{}' in group '{}'",
                    request.container, request.group_id
                ))
            })?;
        let (tx, rx) = mpsc::channel(QUEUED_CHUNKS);
        tokio::spawn(stream_logs(
            Arc::clone(&self.runtime),
            dir,
            request,
            tx,
            self.poll,
            self.shutdown.clone(),
        ));
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn exec(
        &self,
        request: Request<Streaming<ExecInput>>,
    ) -> Result<Response<Self::ExecStream>, Status> {
        authorize(&request)?;
        let mut inbound = request.into_inner();
        let start = match inbound.message().await? {
            Some(ExecInput {
                input: Some(exec_input::Input::Start(start)),
            }) => start,
            _ => {
                return Err(Status::invalid_argument(
                    "the first message of Exec must be `start`",
                ));
            }
        };
        if start.command.first().is_none_or(String::is_empty) {
            return Err(Status::invalid_argument("the command is empty"));
        }
        let process = self.runtime.exec(&start).await?;
        let (tx, rx) = mpsc::channel(QUEUED_OUTPUT);
        let started = ExecOutput {
            output: Some(exec_output::Output::StartedPid(process.pid)),
        };
        // The channel is new and empty: this cannot wait.
        let _ = tx.try_send(Ok(started));
        tokio::spawn(pump_exec(
            process,
            inbound,
            tx,
            start.tty,
            self.shutdown.clone(),
        ));
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

type ExecOutbox = mpsc::Sender<Result<ExecOutput, Status>>;

/// Forwards between the caller and an exec process until it exits (its exit code is the last
/// message) or the caller goes away (returning drops `process`, which kills it).
async fn pump_exec(
    mut process: ExecProcess,
    mut inbound: Streaming<ExecInput>,
    tx: ExecOutbox,
    tty: bool,
    shutdown: CancellationToken,
) {
    let message = |output| -> Result<ExecOutput, Status> {
        Ok(ExecOutput {
            output: Some(output),
        })
    };
    // Input the process cannot take yet; the caller is not read meanwhile.
    let mut pending: Option<ProcessInput> = None;
    let mut inbound_open = true;
    loop {
        tokio::select! {
            output = process.output.recv() => {
                let output = match output {
                    Some(ProcessOutput::Stdout(data)) => exec_output::Output::Stdout(data),
                    Some(ProcessOutput::Stderr(data)) => exec_output::Output::Stderr(data),
                    Some(ProcessOutput::Exited(code)) => {
                        let _ = tx.send(message(exec_output::Output::ExitCode(code))).await;
                        return;
                    }
                    None => {
                        let status = Status::internal("the process's output ended without an exit code");
                        let _ = tx.send(Err(status)).await;
                        return;
                    }
                };
                if tx.send(message(output)).await.is_err() {
                    return;
                }
            }
            permit = process.input.reserve(), if pending.is_some() => {
                // No permit: the process's task is finishing, and its output says how.
                if let (Ok(permit), Some(input)) = (permit, pending.take()) {
                    permit.send(input);
                }
            }
            received = inbound.message(), if inbound_open && pending.is_none() => {
                let input = match received {
                    Ok(Some(ExecInput { input: Some(input) })) => match input {
                        exec_input::Input::Stdin(data) => Some(ProcessInput::Stdin(data)),
                        exec_input::Input::CloseStdin(_) => Some(ProcessInput::CloseStdin),
                        exec_input::Input::Resize(size) => Some(ProcessInput::Resize {
                            rows: size.rows,
                            cols: size.cols,
                        }),
                        exec_input::Input::Start(_) => {
                            let status = Status::invalid_argument("`start` may only come first");
                            let _ = tx.send(Err(status)).await;
                            return;
                        }
                    },
                    Ok(Some(ExecInput { input: None })) => None,
                    Ok(None) => {
                        inbound_open = false;
                        (!tty).then_some(ProcessInput::CloseStdin)
                    }
                    // The caller went away.
                    Err(_) => return,
                };
                if let Some(input) = input {
                    match process.input.try_send(input) {
                        Ok(()) => {}
                        Err(mpsc::error::TrySendError::Full(input)) => pending = Some(input),
                        Err(mpsc::error::TrySendError::Closed(_)) => {}
                    }
                }
            }
            () = tx.closed() => return,
            () = shutdown.cancelled() => {
                let _ = tx.send(Err(Status::unavailable("the agent is shutting down"))).await;
                return;
            }
        }
    }
}

type Outbox = mpsc::Sender<Result<LogChunk, Status>>;

/// Sends `bytes` in chunks; `false` once the caller has gone.
async fn send_chunks(tx: &Outbox, bytes: &[u8]) -> bool {
    for chunk in bytes.chunks(CHUNK) {
        let chunk = LogChunk {
            data: chunk.to_vec(),
        };
        if tx.send(Ok(chunk)).await.is_err() {
            return false;
        }
    }
    true
}

/// Runs file work on the blocking pool.
async fn off_runtime<T: Send + 'static>(
    work: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<T, Status> {
    match tokio::task::spawn_blocking(work).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(Status::internal(format!("cannot read the logs: {error}"))),
        Err(_) => Err(Status::internal("reading the logs was interrupted")),
    }
}

/// Whether `container`'s log can grow no more: its group is gone from the runtime, or the container is
/// not running and its group is stopped, succeeded or failed (so it will not start again by itself).
fn has_stopped_for_good(runtime: &dyn Runtime, group_id: &str, container: &str) -> bool {
    let Some(status) = runtime.status(group_id) else {
        return true;
    };
    let over = matches!(
        status.phase(),
        GroupPhase::Stopped | GroupPhase::Succeeded | GroupPhase::Failed | GroupPhase::Removed
    );
    let running = status
        .containers
        .iter()
        .find(|c| c.name == container)
        .and_then(|c| c.current.as_ref())
        .is_some_and(|run| run.state() == ContainerState::Running);
    over && !running
}

/// Streams one `Logs` answer into `tx`.
async fn stream_logs(
    runtime: Arc<dyn Runtime>,
    dir: PathBuf,
    request: LogsRequest,
    tx: Outbox,
    poll: Duration,
    shutdown: CancellationToken,
) {
    let tail = request
        .tail
        .map(|t| usize::try_from(t).unwrap_or(usize::MAX));
    let timestamps = request.timestamps;
    let since = request.since_unix_ms;
    // A previous run no longer grows: following it is just reading it.
    if !request.follow || request.previous {
        let previous = request.previous;
        let read = off_runtime(move || {
            logs::read(&dir, previous, since, tail).map(|lines| logs::render(&lines, timestamps))
        })
        .await;
        match read {
            Ok(text) => {
                send_chunks(&tx, text.as_bytes()).await;
            }
            Err(status) => {
                let _ = tx.send(Err(status)).await;
            }
        }
        return;
    }

    let opened = off_runtime(move || Follower::open(&dir, since, tail, timestamps)).await;
    let mut follower = match opened {
        Ok((follower, text)) => {
            if !send_chunks(&tx, text.as_bytes()).await {
                return;
            }
            follower
        }
        Err(status) => {
            let _ = tx.send(Err(status)).await;
            return;
        }
    };
    // Whether the container had stopped for good at the previous poll.
    let mut ending = false;
    loop {
        tokio::select! {
            () = tx.closed() => return,
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(poll) => {}
        }
        // Before reading: whatever was written before it stopped is read below.
        let stopped = has_stopped_for_good(&*runtime, &request.group_id, &request.container);
        let polled = off_runtime(move || {
            let mut follower = follower;
            let appended = follower.poll()?;
            Ok((follower, appended))
        })
        .await;
        match polled {
            Ok((back, appended)) => {
                follower = back;
                if !send_chunks(&tx, &appended).await {
                    return;
                }
                // berth-logger may write the last lines just after the exit is known: end after
                // a whole poll interval brought nothing more.
                if ending && stopped && appended.is_empty() {
                    return;
                }
                ending = stopped;
            }
            Err(status) => {
                let _ = tx.send(Err(status)).await;
                return;
            }
        }
    }
}

/// (device, inode): tells a replaced `current.log` from the one held open.
fn file_id(meta: &std::fs::Metadata) -> (u64, u64) {
    (meta.dev(), meta.ino())
}

fn parse_lines(raw: &[u8], since: Option<i64>) -> Vec<Line> {
    let mut lines = String::from_utf8_lossy(raw)
        .lines()
        .map(logs::parse)
        .collect();
    logs::keep_since(&mut lines, since);
    lines
}

/// Follows a container's `current.log` from where the first answer ended.
struct Follower {
    path: PathBuf,
    /// The file being followed, even after it was renamed; `None` until `current.log` exists.
    file: Option<File>,
    id: Option<(u64, u64)>,
    /// Bytes of `file` read so far.
    offset: u64,
    /// A line read without its newline yet.
    partial: Vec<u8>,
    timestamps: bool,
    /// Only lines logged at or after this (Unix ms).
    since: Option<i64>,
}

impl Follower {
    /// Opens `dir/current.log` and renders the current run so far (its last `tail` lines of those
    /// logged since `since`).
    fn open(
        dir: &Path,
        since: Option<i64>,
        tail: Option<usize>,
        timestamps: bool,
    ) -> std::io::Result<(Self, String)> {
        let mut follower = Self {
            path: dir.join("current.log"),
            file: None,
            id: None,
            offset: 0,
            partial: Vec::new(),
            timestamps,
            since,
        };
        // current.log first: should it be rotated from now on, `poll` sees that, and its rotated copy
        // is not read twice below.
        follower.reopen()?;
        let mut lines = Vec::new();
        for path in logs::run_files(dir, "current") {
            if path == follower.path {
                continue;
            }
            let mut file = match File::open(&path) {
                Ok(file) => file,
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
                Err(error) => return Err(error),
            };
            if Some(file_id(&file.metadata()?)) == follower.id {
                continue;
            }
            let mut raw = Vec::new();
            file.read_to_end(&mut raw)?;
            lines.extend(parse_lines(&raw, since));
        }
        lines.extend(parse_lines(&follower.read_appended()?, since));
        if let Some(tail) = tail {
            let skip = lines.len().saturating_sub(tail);
            lines.drain(..skip);
        }
        Ok((follower, logs::render(&lines, timestamps)))
    }

    /// (Re)opens `current.log` from its start; nothing to follow yet if it does not exist.
    fn reopen(&mut self) -> std::io::Result<()> {
        self.offset = 0;
        match File::open(&self.path) {
            Ok(file) => {
                self.id = Some(file_id(&file.metadata()?));
                self.file = Some(file);
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                self.id = None;
                self.file = None;
            }
            Err(error) => return Err(error),
        }
        Ok(())
    }

    /// The whole lines appended to the open file since the last read (an unfinished last line waits).
    fn read_appended(&mut self) -> std::io::Result<Vec<u8>> {
        let Some(file) = &mut self.file else {
            return Ok(Vec::new());
        };
        file.seek(SeekFrom::Start(self.offset))?;
        let mut raw = std::mem::take(&mut self.partial);
        let read = file.read_to_end(&mut raw)?;
        self.offset += read as u64;
        let whole = raw.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        self.partial = raw.split_off(whole);
        Ok(raw)
    }

    /// What was appended since the last poll, rendered.
    fn poll(&mut self) -> std::io::Result<Vec<u8>> {
        let mut raw = self.read_appended()?;
        match std::fs::metadata(&self.path) {
            Ok(meta) if Some(file_id(&meta)) != self.id => {
                // Rotated, or a new run began (or the file appeared): finish the old file, then
                // start on the new one.
                raw.extend(self.read_appended()?);
                if !self.partial.is_empty() {
                    raw.append(&mut self.partial);
                    raw.push(b'\n');
                }
                self.reopen()?;
                raw.extend(self.read_appended()?);
            }
            Ok(meta) if meta.len() < self.offset => {
                // Truncated in place (no rotated files are kept).
                self.offset = 0;
                self.partial.clear();
                raw.extend(self.read_appended()?);
            }
            Ok(_) => {}
            // Between a rename and the new file: keep following the old one.
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(error),
        }
        Ok(logs::render(&parse_lines(&raw, self.since), self.timestamps).into_bytes())
    }
}
