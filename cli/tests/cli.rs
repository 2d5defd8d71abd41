//! The `berth` binary against a scripted HTTPS server in this process: TLS with a private CA, the
//! requests it sends, what it prints and its exit codes. The real apiserver is driven by berth-tests.
//!
//! The server also speaks just enough of the websocket side of exec and attach (`Reply::upgrade`)
//! and streams chunked bodies (`Reply::chunks`) for `logs --follow` and `billing export`.

#![allow(clippy::unwrap_used)]

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{SinkExt as _, StreamExt as _};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{Value, json};
use tokio::io::{
    AsyncBufReadExt as _, AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, BufReader,
};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};

#[path = "cli/billing.rs"]
mod billing;
#[path = "cli/dns.rs"]
mod dns;
#[path = "cli/metrics.rs"]
mod metrics;
#[path = "cli/nodes.rs"]
mod nodes;

const SUB: &str = "dev";
const GROUP_PATH: &str = "/subscriptions/dev/resourceGroups/rg/providers/Microsoft.ContainerInstance/containerGroups/web";

/// One request as the server saw it.
#[derive(Debug, Clone)]
struct Recorded {
    method: String,
    path: String,
    query: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Recorded {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    fn api_version(&self) -> Option<&str> {
        self.query
            .split('&')
            .find_map(|kv| kv.strip_prefix("api-version="))
    }
}

/// Whatever the server's side of a connection is, once it is a websocket.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// The server's end of a websocket.
type Ws = WebSocketStream<Box<dyn Io>>;

/// What the server does on a websocket it accepted.
type Session = Box<dyn FnOnce(Ws) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
    /// Accept a websocket upgrade and run this on it.
    upgrade: Option<Session>,
    /// Send the body chunked, each piece as it comes, until the sender is dropped.
    chunks: Option<mpsc::UnboundedReceiver<String>>,
}

fn reply(status: u16, body: Value) -> Reply {
    Reply {
        status,
        headers: vec![],
        body: body.to_string(),
        upgrade: None,
        chunks: None,
    }
}

fn empty(status: u16) -> Reply {
    Reply {
        status,
        headers: vec![],
        body: String::new(),
        upgrade: None,
        chunks: None,
    }
}

/// 101, choosing `protocol`, then `session` on the websocket.
fn upgrade<F, Fut>(protocol: Option<&str>, session: F) -> Reply
where
    F: FnOnce(Ws) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut answer = empty(101)
        .header("upgrade", "websocket")
        .header("connection", "Upgrade");
    if let Some(protocol) = protocol {
        answer = answer.header("sec-websocket-protocol", protocol);
    }
    answer.upgrade = Some(Box::new(move |ws| Box::pin(session(ws))));
    answer
}

/// 200 `text/plain`, chunked: what `chunks` carries.
fn streamed(chunks: mpsc::UnboundedReceiver<String>) -> Reply {
    streamed_as("text/plain; charset=utf-8", chunks)
}

/// 200 `content_type`, chunked: what `chunks` carries; [`BREAK_STREAM`] drops the connection there.
fn streamed_as(content_type: &str, chunks: mpsc::UnboundedReceiver<String>) -> Reply {
    let mut answer = empty(200).header("content-type", content_type);
    answer.chunks = Some(chunks);
    answer
}

/// A chunk that makes the server hang up in the middle of a chunked body, as a crashed one would.
const BREAK_STREAM: &str = "\u{0}break the stream";

impl Reply {
    fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }
}

type Handler = Arc<dyn Fn(&Recorded) -> Reply + Send + Sync>;

/// A throwaway CA; its PEM is what `--ca-file` names.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        Self {
            issuer: CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap(),
        }
    }
}

/// A TLS server on 127.0.0.1:0 answering with `handler` and recording every request.
struct Server {
    addr: SocketAddr,
    dir: tempfile::TempDir,
    requests: Arc<Mutex<Vec<Recorded>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    async fn start(handler: impl Fn(&Recorded) -> Reply + Send + Sync + 'static) -> Self {
        let ca = Ca::new();
        let key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .unwrap()
            .signed_by(&key, &ca.issuer)
            .unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(leaf.der().to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));

        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca.issuer.pem()).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let handler: Handler = Arc::new(handler);
        let recorded = requests.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let (acceptor, handler, recorded) =
                    (acceptor.clone(), handler.clone(), recorded.clone());
                tokio::spawn(async move {
                    // A client that does not trust the CA hangs up here.
                    if let Ok(tls) = acceptor.accept(tcp).await {
                        serve(tls, handler, recorded).await;
                    }
                });
            }
        });
        Self {
            addr,
            dir,
            requests,
            task,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.addr)
    }

    fn ca_file(&self) -> String {
        self.dir.path().join("ca.pem").display().to_string()
    }

    fn config_file(&self) -> String {
        self.dir
            .path()
            .join("config")
            .join("config.toml")
            .display()
            .to_string()
    }

    fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }

    /// `berth` with a clean environment: this server, token "t", subscription "dev", a config file
    /// of its own.
    fn berth(&self) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_berth"));
        cmd.env_clear()
            .env("BERTH_ENDPOINT", self.url(""))
            .env("BERTH_TOKEN", "t")
            .env("BERTH_CA_FILE", self.ca_file())
            .env("BERTH_SUBSCRIPTION", SUB)
            .env("BERTH_CONFIG", self.config_file())
            .stdin(Stdio::null());
        cmd
    }
}

/// HTTP/1.1 with keep-alive, enough for reqwest: Content-Length request bodies; answers with a
/// Content-Length, chunked, or a websocket upgrade.
async fn serve<S>(stream: S, handler: Handler, recorded: Arc<Mutex<Vec<Recorded>>>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut stream = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if stream.read_line(&mut line).await.unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let (method, target) = (
            parts.next().unwrap_or("").to_owned(),
            parts.next().unwrap_or(""),
        );
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let (path, query) = (path.to_owned(), query.to_owned());
        let mut headers = Vec::new();
        loop {
            let mut header = String::new();
            if stream.read_line(&mut header).await.unwrap_or(0) == 0 {
                return;
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((k, v)) = header.split_once(':') {
                headers.push((k.trim().to_owned(), v.trim().to_owned()));
            }
        }
        let length: usize = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; length];
        if stream.read_exact(&mut body).await.is_err() {
            return;
        }
        let request = Recorded {
            method,
            path,
            query,
            headers,
            body,
        };
        let answer = handler(&request);
        let key = request.header("sec-websocket-key").map(str::to_owned);
        recorded.lock().unwrap().push(request);
        if let Some(session) = answer.upgrade {
            let key = key.expect("a websocket upgrade has a key");
            let mut head = "HTTP/1.1 101 Switching Protocols\r\n".to_owned();
            for (k, v) in &answer.headers {
                head.push_str(&format!("{k}: {v}\r\n"));
            }
            let accept =
                tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
            head.push_str(&format!("sec-websocket-accept: {accept}\r\n\r\n"));
            let out = stream.get_mut();
            if out.write_all(head.as_bytes()).await.is_err() || out.flush().await.is_err() {
                return;
            }
            let io: Box<dyn Io> = Box::new(stream);
            session(WebSocketStream::from_raw_socket(io, Role::Server, None).await).await;
            return;
        }
        if let Some(mut chunks) = answer.chunks {
            let mut head = format!(
                "HTTP/1.1 {} X\r\ntransfer-encoding: chunked\r\n",
                answer.status
            );
            for (k, v) in &answer.headers {
                head.push_str(&format!("{k}: {v}\r\n"));
            }
            head.push_str("\r\n");
            let out = stream.get_mut();
            if out.write_all(head.as_bytes()).await.is_err() || out.flush().await.is_err() {
                return;
            }
            while let Some(chunk) = chunks.recv().await {
                if chunk == BREAK_STREAM {
                    return;
                }
                let piece = format!("{:x}\r\n{chunk}\r\n", chunk.len());
                if out.write_all(piece.as_bytes()).await.is_err() || out.flush().await.is_err() {
                    return;
                }
            }
            if out.write_all(b"0\r\n\r\n").await.is_err() || out.flush().await.is_err() {
                return;
            }
            continue;
        }
        let mut head = format!(
            "HTTP/1.1 {} X\r\ncontent-length: {}\r\n",
            answer.status,
            answer.body.len()
        );
        if !answer.body.is_empty() {
            head.push_str("content-type: application/json\r\n");
        }
        for (k, v) in &answer.headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        // Head and body in one write, as hyper does: a refused websocket upgrade's body then comes
        // with its head.
        head.push_str(&answer.body);
        let out = stream.get_mut();
        if out.write_all(head.as_bytes()).await.is_err() || out.flush().await.is_err() {
            return;
        }
    }
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

async fn run(cmd: &mut tokio::process::Command, args: &[&str]) -> Run {
    let out = cmd.args(args).output().await.unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

fn group(state: &str) -> Value {
    json!({
        "id": GROUP_PATH,
        "name": "web",
        "type": "Microsoft.ContainerInstance/containerGroups",
        "location": "local",
        "properties": {
            "provisioningState": state,
            "containers": [{"name": "web", "properties": {
                "image": "nginx", "ports": [{"port": 80, "protocol": "TCP"}], "environmentVariables": [],
                "resources": {"requests": {"cpu": 1.0, "memoryInGB": 1.5}}
            }}],
            "osType": "Linux",
            "restartPolicy": "Always",
            "instanceView": {"events": [], "state": if state == "Succeeded" { "Running" } else { "Pending" }}
        }
    })
}

fn operation(status: &str) -> Value {
    json!({"id": "/op", "name": "op1", "status": status, "startTime": "2025-01-01T00:00:00Z"})
}

fn not_found() -> Reply {
    reply(
        404,
        json!({"error": {"code": "ResourceNotFound", "message": "The Resource 'Microsoft.ContainerInstance/containerGroups/web' under resource group 'rg' was not found.", "target": "web"}}),
    )
}

const OPERATION_URL: &str = "https://management.azure.com/subscriptions/dev/providers/Microsoft.ContainerInstance/locations/local/operations/op1?api-version=2018-06-01";
const OPERATION_PATH: &str =
    "/subscriptions/dev/providers/Microsoft.ContainerInstance/locations/local/operations/op1";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_checks_the_token_and_writes_a_private_config() {
    let server = Server::start(|r| match r.path.as_str() {
        "/subscriptions" => reply(
            200,
            json!({"value": [{"id": "/subscriptions/dev", "subscriptionId": "dev", "displayName": "dev", "state": "Enabled"}]}),
        ),
        _ => reply(200, json!({"value": []})),
    })
    .await;
    let (endpoint, ca) = (server.url(""), server.ca_file());
    let mut login = server.berth();
    login
        .env_remove("BERTH_SUBSCRIPTION")
        .env_remove("BERTH_TOKEN");
    let out = run(
        &mut login,
        &[
            "login",
            "--endpoint",
            &endpoint,
            "--token",
            "secret",
            "--ca-file",
            &ca,
            "-l",
            "lab",
        ],
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains(&server.config_file()), "{}", out.stdout);

    let sent = &server.requests()[0];
    assert_eq!(
        (sent.method.as_str(), sent.path.as_str()),
        ("GET", "/subscriptions")
    );
    assert_eq!(sent.api_version(), Some("2020-01-01"));
    assert_eq!(sent.header("authorization"), Some("Bearer secret"));

    let text = std::fs::read_to_string(server.config_file()).unwrap();
    let saved: toml::Table = toml::from_str(&text).unwrap();
    assert_eq!(saved["endpoint"].as_str(), Some(endpoint.as_str()));
    assert_eq!(saved["token"].as_str(), Some("secret"));
    assert_eq!(saved["ca_file"].as_str(), Some(ca.as_str()));
    assert_eq!(saved["subscription"].as_str(), Some("dev"));
    assert_eq!(saved["location"].as_str(), Some("lab"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(server.config_file())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    // Later commands need nothing but the config file.
    let mut list = tokio::process::Command::new(env!("CARGO_BIN_EXE_berth"));
    list.env_clear().env("BERTH_CONFIG", server.config_file());
    let out = run(&mut list, &["container", "list", "-o", "json"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout.trim(), "[]");
    let sent = server.requests().pop().unwrap();
    assert_eq!(
        sent.path,
        "/subscriptions/dev/providers/Microsoft.ContainerInstance/containerGroups"
    );
    assert_eq!(sent.api_version(), Some("2023-05-01"));
    assert_eq!(sent.header("authorization"), Some("Bearer secret"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_with_several_subscriptions_asks_to_pick_one() {
    let server = Server::start(|_| {
        reply(
            200,
            json!({"value": [{"subscriptionId": "a"}, {"subscriptionId": "b"}]}),
        )
    })
    .await;
    let mut cmd = server.berth();
    cmd.env_remove("BERTH_SUBSCRIPTION");
    let out = run(&mut cmd, &["login"]).await;
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("a, b") && out.stderr.contains("--subscription"),
        "{}",
        out.stderr
    );
    assert!(!std::path::Path::new(&server.config_file()).exists());

    let out = run(&mut server.berth(), &["login", "--subscription", "b"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let text = std::fs::read_to_string(server.config_file()).unwrap();
    assert!(text.contains("subscription = \"b\""), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_puts_the_group_waits_and_prints_it() {
    let polls = Arc::new(AtomicUsize::new(0));
    let seen = polls.clone();
    let server = Server::start(move |r| match (r.method.as_str(), r.path.as_str()) {
        ("PUT", GROUP_PATH) => reply(201, group("Pending"))
            .header("Azure-AsyncOperation", OPERATION_URL)
            .header("Retry-After", "0"),
        ("GET", OPERATION_PATH) => {
            let n = seen.fetch_add(1, Ordering::SeqCst);
            reply(200, operation(if n < 2 { "Pending" } else { "succeeded" }))
                .header("Retry-After", "0")
        }
        ("GET", GROUP_PATH) => reply(200, group("Succeeded")),
        _ => not_found(),
    })
    .await;
    let out = run(
        &mut server.berth(),
        &[
            "container",
            "create",
            "-g",
            "rg",
            "-n",
            "web",
            "--image",
            "nginx",
            "-o",
            "json",
        ],
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        serde_json::from_str::<Value>(&out.stdout).unwrap(),
        group("Succeeded")
    );
    assert_eq!(polls.load(Ordering::SeqCst), 3);

    let requests = server.requests();
    let put = &requests[0];
    assert_eq!(put.method, "PUT");
    assert_eq!(put.api_version(), Some("2023-05-01"));
    assert_eq!(put.header("authorization"), Some("Bearer t"));
    assert_eq!(put.header("content-type"), Some("application/json"));
    assert_eq!(
        put.json(),
        json!({
            "location": "local",
            "properties": {
                "containers": [{"name": "web", "properties": {
                    "image": "nginx",
                    "ports": [{"port": 80, "protocol": "TCP"}],
                    "resources": {"requests": {"cpu": 1.0, "memoryInGB": 1.5}}
                }}],
                "osType": "Linux",
                "restartPolicy": "Always"
            }
        })
    );
    // The monitor on another host is polled on the endpoint, with its own api-version.
    for poll in &requests[1..4] {
        assert_eq!(poll.path, OPERATION_PATH);
        assert_eq!(poll.api_version(), Some("2018-06-01"));
        assert_eq!(poll.header("authorization"), Some("Bearer t"));
    }
    assert_eq!(
        (requests[4].method.as_str(), requests[4].path.as_str()),
        ("GET", GROUP_PATH)
    );

    // Table output of the same.
    polls.store(0, Ordering::SeqCst);
    let out = run(
        &mut server.berth(),
        &[
            "container",
            "create",
            "-g",
            "rg",
            "-n",
            "web",
            "--image",
            "nginx",
        ],
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(lines[0].starts_with("Name"), "{}", out.stdout);
    assert!(lines[2].starts_with("web   rg"), "{}", out.stdout);
    assert!(lines[2].contains("Running"), "{}", out.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_from_a_yaml_file_uses_its_api_version() {
    let server = Server::start(|r| match (r.method.as_str(), r.path.as_str()) {
        ("PUT", GROUP_PATH) => {
            reply(201, group("Pending")).header("Azure-AsyncOperation", OPERATION_URL)
        }
        _ => not_found(),
    })
    .await;
    let file = server.dir.path().join("web.yaml");
    std::fs::write(
        &file,
        "apiVersion: 2018-10-01\nname: web\ntype: Microsoft.ContainerInstance/containerGroups\nlocation: eastus\n\
         properties:\n  osType: Linux\n  containers:\n  - name: web\n    properties:\n      image: nginx\n\
         \x20     resources: {requests: {cpu: 1, memoryInGB: 1.5}}\n      environmentVariables:\n\
         \x20     - {name: SECRET, secureValue: s3cret}\n",
    )
    .unwrap();
    let out = run(
        &mut server.berth(),
        &[
            "container",
            "create",
            "-g",
            "rg",
            "-f",
            file.to_str().unwrap(),
            "--no-wait",
            "-o",
            "json",
        ],
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        serde_json::from_str::<Value>(&out.stdout).unwrap(),
        group("Pending")
    );
    let requests = server.requests();
    assert_eq!(requests.len(), 1, "--no-wait does not poll");
    assert_eq!(requests[0].api_version(), Some("2018-10-01"));
    assert_eq!(
        requests[0].json(),
        json!({
            "location": "eastus",
            "properties": {"osType": "Linux", "containers": [{"name": "web", "properties": {
                "image": "nginx",
                "resources": {"requests": {"cpu": 1, "memoryInGB": 1.5}},
                "environmentVariables": [{"name": "SECRET", "secureValue": "s3cret"}]
            }}]}
        })
    );

    let out = run(
        &mut server.berth(),
        &[
            "container",
            "create",
            "-g",
            "rg",
            "-n",
            "other",
            "-f",
            file.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("differs"), "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_operation_exits_non_zero_with_its_message() {
    let server = Server::start(|r| match (r.method.as_str(), r.path.as_str()) {
        ("PUT", GROUP_PATH) => reply(201, group("Pending"))
            .header("Azure-AsyncOperation", OPERATION_URL)
            .header("Retry-After", "0"),
        ("GET", OPERATION_PATH) => reply(
            200,
            json!({"id": "/op", "name": "op1", "status": "Failed", "error": {"code": "InaccessibleImage", "message": "The image 'nope' in container group 'web' is not accessible."}}),
        ),
        _ => not_found(),
    })
    .await;
    let out = run(
        &mut server.berth(),
        &[
            "container",
            "create",
            "-g",
            "rg",
            "-n",
            "web",
            "--image",
            "nope",
        ],
    )
    .await;
    assert_eq!(out.code, 1);
    assert_eq!(
        out.stderr.trim(),
        "error: InaccessibleImage: The image 'nope' in container group 'web' is not accessible."
    );
    assert_eq!(out.stdout, "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_gives_up_after_the_timeout() {
    let server = Server::start(|r| match (r.method.as_str(), r.path.as_str()) {
        ("POST", p) if p.ends_with("/restart") => empty(204)
            .header("Azure-AsyncOperation", OPERATION_URL)
            .header("Retry-After", "1"),
        ("GET", OPERATION_PATH) => reply(200, operation("Pending")).header("Retry-After", "1"),
        _ => not_found(),
    })
    .await;
    let started = std::time::Instant::now();
    let out = run(
        &mut server.berth(),
        &[
            "container",
            "restart",
            "-g",
            "rg",
            "-n",
            "web",
            "--timeout",
            "2",
        ],
    )
    .await;
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("gave up after 2 s") && out.stderr.contains("Pending"),
        "{}",
        out.stderr
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_restart_and_stop() {
    let server = Server::start(|r| match (r.method.as_str(), r.path.as_str()) {
        ("POST", p) if p.ends_with("/start") => empty(204),
        ("POST", p) if p.ends_with("/stop") => empty(204),
        ("POST", p) if p.ends_with("/restart") => empty(204)
            .header("Azure-AsyncOperation", OPERATION_URL)
            .header("Retry-After", "0"),
        ("GET", OPERATION_PATH) => reply(200, operation("Succeeded")),
        _ => not_found(),
    })
    .await;
    let out = run(
        &mut server.berth(),
        &["container", "start", "-g", "rg", "-n", "web"],
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("already running"), "{}", out.stderr);
    let out = run(
        &mut server.berth(),
        &["container", "restart", "-g", "rg", "-n", "web"],
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        server.requests().iter().any(|r| r.path == OPERATION_PATH),
        "restart waits"
    );
    let out = run(
        &mut server.berth(),
        &["container", "stop", "-g", "rg", "-n", "web"],
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let stop = server.requests().pop().unwrap();
    assert_eq!(
        (stop.method.as_str(), stop.path.clone()),
        ("POST", format!("{GROUP_PATH}/stop"))
    );
    assert_eq!(stop.api_version(), Some("2023-05-01"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_map_to_exit_codes() {
    let server = Server::start(|r| {
        if r.header("authorization") != Some("Bearer t") {
            return reply(
                401,
                json!({"error": {"code": "AuthenticationFailed", "message": "bad token"}}),
            );
        }
        match r.path.as_str() {
            GROUP_PATH => not_found(),
            _ => reply(
                500,
                json!({"error": {"code": "InternalServerError", "message": "boom"}}),
            ),
        }
    })
    .await;
    let out = run(
        &mut server.berth(),
        &["container", "show", "-g", "rg", "-n", "web"],
    )
    .await;
    assert_eq!(out.code, 3);
    assert_eq!(
        out.stderr,
        "error: ResourceNotFound: The Resource 'Microsoft.ContainerInstance/containerGroups/web' under resource group 'rg' was not found. (target: web)\n"
    );
    let out = run(
        &mut server.berth(),
        &[
            "container",
            "show",
            "-g",
            "rg",
            "-n",
            "web",
            "--token",
            "bad",
        ],
    )
    .await;
    assert_eq!(out.code, 4, "{}", out.stderr);
    assert_eq!(out.stderr, "error: AuthenticationFailed: bad token\n");
    let out = run(&mut server.berth(), &["container", "list"]).await;
    assert_eq!(out.code, 5, "{}", out.stderr);
    let out = run(&mut server.berth(), &["container", "show", "-g", "rg"]).await;
    assert_eq!(out.code, 2, "clap usage error");

    // A server whose certificate the CA file does not vouch for.
    let other = Server::start(|_| reply(200, json!({}))).await;
    let mut cmd = server.berth();
    cmd.env("BERTH_CA_FILE", other.ca_file());
    let out = run(&mut cmd, &["container", "list"]).await;
    assert_eq!(out.code, 5, "{}", out.stderr);
    assert!(
        out.stderr.to_lowercase().contains("certificate"),
        "{}",
        out.stderr
    );

    // Nothing is listening.
    let mut cmd = server.berth();
    cmd.env("BERTH_ENDPOINT", "https://127.0.0.1:1");
    let out = run(&mut cmd, &["container", "list"]).await;
    assert_eq!(out.code, 5);
    // Plain HTTP is refused before any request.
    let mut cmd = server.berth();
    cmd.env("BERTH_ENDPOINT", format!("http://{}", server.addr));
    let out = run(&mut cmd, &["container", "list"]).await;
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("https://"), "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_follows_next_links() {
    let page2 = Arc::new(Mutex::new(String::new()));
    let link = page2.clone();
    let server = Server::start(move |r| {
        let mut second = group("Succeeded");
        second["name"] = json!("api");
        if r.query.contains("skipToken=2") {
            reply(200, json!({"value": [second]}))
        } else {
            reply(
                200,
                json!({"value": [group("Succeeded")], "nextLink": *link.lock().unwrap()}),
            )
        }
    })
    .await;
    *page2.lock().unwrap() = server.url("/subscriptions/dev/resourceGroups/rg/providers/Microsoft.ContainerInstance/containerGroups?api-version=2023-05-01&%24skipToken=2");
    let out = run(
        &mut server.berth(),
        &["container", "list", "-g", "rg", "-o", "yaml"],
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let names: Vec<Value> = serde_norway::from_str::<Vec<Value>>(&out.stdout)
        .unwrap()
        .iter()
        .map(|g| g["name"].clone())
        .collect();
    assert_eq!(names, [json!("web"), json!("api")]);
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(
        requests[0].path,
        "/subscriptions/dev/resourceGroups/rg/providers/Microsoft.ContainerInstance/containerGroups"
    );
    assert_eq!(requests[1].query, "api-version=2023-05-01&%24skipToken=2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_asks_and_tells_about_missing_groups() {
    let server = Server::start(|r| match r.method.as_str() {
        "DELETE" if r.path.ends_with("/gone") => empty(204),
        "DELETE" => reply(200, group("Succeeded")),
        _ => not_found(),
    })
    .await;
    let out = run(
        &mut server.berth(),
        &["container", "delete", "-g", "rg", "-n", "web"],
    )
    .await;
    assert_eq!(out.code, 2, "no terminal to ask on: {}", out.stderr);
    assert!(out.stderr.contains("--yes"), "{}", out.stderr);
    assert!(server.requests().is_empty());

    let out = run(
        &mut server.berth(),
        &[
            "container",
            "delete",
            "-g",
            "rg",
            "-n",
            "web",
            "--yes",
            "-o",
            "json",
        ],
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        serde_json::from_str::<Value>(&out.stdout).unwrap()["name"],
        "web"
    );

    let out = run(
        &mut server.berth(),
        &["container", "delete", "-g", "rg", "-n", "gone", "-y"],
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("not found"), "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_commands() {
    let server = Server::start(|r| match (r.method.as_str(), r.path.as_str()) {
        ("POST", "/admin/v1/tokens") => {
            let mut answer = r.json();
            answer["token"] = json!("berth_abc");
            reply(201, answer)
        }
        ("POST", "/admin/v1/join-tokens") => reply(
            201,
            json!({"token": "abcdef.0123456789abcdef.ff", "expiresAt": "2025-01-01T01:00:00Z", "uses": 2}),
        ),
        ("GET", "/admin/v1/tokens") => reply(
            200,
            json!({"value": [
                {"id": "abc", "prefix": "berth_abc_Xy12", "subscriptions": ["a", "b"], "operator": false,
                 "createdAt": "2025-01-01T00:00:00Z", "expiresAt": "2025-01-31T00:00:00Z", "revokedAt": null,
                 "lastUsedAt": null},
                {"id": "op", "prefix": "berth_op_Zz99", "subscriptions": [], "operator": true,
                 "createdAt": "2025-01-01T00:00:00Z", "expiresAt": null, "revokedAt": null, "lastUsedAt": null}
            ]}),
        ),
        ("DELETE", "/admin/v1/tokens/abc") => reply(
            200,
            json!({"id": "abc", "prefix": "berth_abc_Xy12", "subscriptions": ["a", "b"], "operator": false,
                   "createdAt": "2025-01-01T00:00:00Z", "expiresAt": null,
                   "revokedAt": "2025-01-02T00:00:00Z", "lastUsedAt": null}),
        ),
        ("GET", "/admin/v1/nodes") => reply(
            200,
            json!({"value": [{"id": "n-1", "name": "node-1", "osType": "Linux", "status": "Ready",
                "capacity": {"cpu": 4.0, "memoryInGB": 16.0, "gpu": 0},
                "allocated": {"cpu": 1.5, "memoryInGB": 3.0, "gpu": 0},
                "groups": 2, "labels": {}, "lastHeartbeat": "2025-01-01T00:00:00Z", "agentVersion": "0.1.0"}]}),
        ),
        _ => not_found(),
    })
    .await;
    let out = run(
        &mut server.berth(),
        &[
            "admin",
            "token",
            "create",
            "--subscription",
            "a",
            "b",
            "--subscription",
            "c",
        ],
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout, "berth_abc\n");
    assert_eq!(
        server.requests()[0].json(),
        json!({"subscriptions": ["a", "b", "c"], "operator": false})
    );
    let out = run(
        &mut server.berth(),
        &["admin", "token", "create", "--operator", "-o", "json"],
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        serde_json::from_str::<Value>(&out.stdout).unwrap(),
        json!({"subscriptions": [], "operator": true, "token": "berth_abc"})
    );
    let out = run(
        &mut server.berth(),
        &[
            "admin",
            "token",
            "create",
            "--operator",
            "--expires-in",
            "1d12h",
        ],
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        server.requests().pop().unwrap().json(),
        json!({"subscriptions": [], "operator": true, "expiresInSeconds": 129600})
    );
    let before = server.requests().len();
    let out = run(
        &mut server.berth(),
        &[
            "admin",
            "token",
            "create",
            "--operator",
            "--expires-in",
            "12",
        ],
    )
    .await;
    assert_eq!(out.code, 2, "a duration without a unit is a usage error");
    assert!(out.stderr.contains("30d"), "{}", out.stderr);
    assert_eq!(server.requests().len(), before, "nothing was sent");

    let out = run(&mut server.berth(), &["admin", "token", "list"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let rows: Vec<Vec<&str>> = out
        .stdout
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows[0],
        [
            "ID",
            "PREFIX",
            "SUBSCRIPTIONS",
            "OPERATOR",
            "CREATED",
            "EXPIRES",
            "REVOKED"
        ]
    );
    assert_eq!(
        rows[2],
        [
            "abc",
            "berth_abc_Xy12",
            "a,b",
            "false",
            "2025-01-01T00:00:00Z",
            "2025-01-31T00:00:00Z",
            "-"
        ]
    );
    assert_eq!(
        rows[3],
        [
            "op",
            "berth_op_Zz99",
            "-",
            "true",
            "2025-01-01T00:00:00Z",
            "never",
            "-"
        ]
    );
    let out = run(
        &mut server.berth(),
        &["admin", "token", "list", "-o", "json"],
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let listed: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(listed[1]["id"], "op", "{listed}");
    let out = run(&mut server.berth(), &["admin", "token", "revoke", "abc"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let revoke = server.requests().pop().unwrap();
    assert_eq!(
        (revoke.method.as_str(), revoke.path.as_str()),
        ("DELETE", "/admin/v1/tokens/abc")
    );
    assert!(
        out.stdout
            .lines()
            .nth(2)
            .is_some_and(|l| l.ends_with("2025-01-02T00:00:00Z")),
        "{}",
        out.stdout
    );
    let out = run(&mut server.berth(), &["admin", "token", "revoke", "nope"]).await;
    assert_eq!(
        out.code, 3,
        "an unknown token exits as not found: {}",
        out.stderr
    );

    let out = run(
        &mut server.berth(),
        &[
            "admin",
            "join-token",
            "create",
            "--uses",
            "2",
            "--ttl",
            "600",
        ],
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout, "abcdef.0123456789abcdef.ff\n");
    assert_eq!(
        server.requests().pop().unwrap().json(),
        json!({"uses": 2, "ttlSeconds": 600})
    );

    let out = run(&mut server.berth(), &["admin", "node", "list"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(lines[0].starts_with("NAME"), "{}", out.stdout);
    assert_eq!(
        lines[2].split_whitespace().collect::<Vec<_>>(),
        [
            "node-1",
            "Ready",
            "-",
            "Linux",
            "1.5/4",
            "3/16",
            "2",
            "2025-01-01T00:00:00Z"
        ]
    );
}

// ---- logs, exec and attach ----

const CONTAINER_PATH: &str = "/subscriptions/dev/resourceGroups/rg/providers/Microsoft.ContainerInstance/containerGroups/web/containers/web";
const PASSWORD: &str = "s3cret-pw[[EOM]]";

/// `berth` with `input` on its stdin (then closed).
async fn run_with_input(cmd: &mut tokio::process::Command, args: &[&str], input: &[u8]) -> Run {
    let mut child = cmd
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input).await.unwrap();
    drop(stdin);
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("berth ends")
        .unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

/// The next binary frame from the client, `None` once it has gone.
async fn next_frame(ws: &mut Ws) -> Option<Vec<u8>> {
    while let Some(message) = ws.next().await {
        match message {
            Ok(Message::Binary(data)) => return Some(data.to_vec()),
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => {}
        }
    }
    None
}

async fn send_frame(ws: &mut Ws, channel: u8, payload: &[u8]) {
    let mut frame = vec![channel];
    frame.extend_from_slice(payload);
    ws.send(Message::Binary(frame.into())).await.unwrap();
}

/// Closes with `code` and waits for the client to answer (or go).
async fn close(ws: &mut Ws, code: u16, reason: &str) {
    let frame = CloseFrame {
        code: CloseCode::from(code),
        reason: reason.into(),
    };
    let _ = ws.send(Message::Close(Some(frame))).await;
    while let Some(Ok(_)) = ws.next().await {}
}

/// Kubernetes' `metav1.Status` for an exit code.
fn exit_status(code: u32) -> Value {
    if code == 0 {
        return json!({"metadata": {}, "status": "Success"});
    }
    json!({"metadata": {}, "status": "Failure",
           "message": format!("command terminated with non-zero exit code: {code}"),
           "reason": "NonZeroExitCode",
           "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]}})
}

/// `POST …/exec` and `…/attach`: a session URL on this server whose id is `id`.
fn session_answer(r: &Recorded, kind: &str, id: &str) -> Reply {
    let host = r.header("host").unwrap();
    reply(
        200,
        json!({"webSocketUri": format!("wss://{host}/{kind}/{id}?rows=24&cols=80"), "password": PASSWORD}),
    )
}

fn refused() -> Reply {
    reply(
        401,
        json!({"error": {"code": "AuthenticationFailed", "message": "The exec or attach password is invalid, expired or already used; ask for a new one."}}),
    )
}

type Frames = Arc<Mutex<Vec<Vec<u8>>>>;

/// An exec server whose session `cat` echoes stdin to stdout until `[255, 0]`, then says `bye` on
/// stderr and exits with `code`; session `fail` cannot run its command. Every frame the client sends
/// is kept in `frames`.
async fn exec_server(frames: Frames) -> Server {
    Server::start(move |r| {
        let frames = frames.clone();
        match (r.method.as_str(), r.path.as_str()) {
            ("GET", GROUP_PATH) => reply(200, group("Succeeded")),
            ("POST", p) if p == format!("{CONTAINER_PATH}/exec") => {
                let argv = r.json()["command"].clone();
                let code = argv[1].as_str().unwrap_or("0").to_owned();
                session_answer(r, "exec", &format!("{}-{code}", argv[0].as_str().unwrap()))
            }
            ("GET", p) if p.starts_with("/exec/") => {
                let expected = format!("Bearer {PASSWORD}");
                if r.header("authorization") != Some(expected.as_str())
                    || r.header("sec-websocket-protocol") != Some("v5.channel.k8s.io")
                    || p.starts_with("/exec/refuse-")
                {
                    return refused();
                }
                let (kind, code) = p["/exec/".len()..].split_once('-').unwrap();
                let code: u32 = code.parse().unwrap();
                let kind = kind.to_owned();
                upgrade(Some("v5.channel.k8s.io"), move |mut ws| async move {
                    if kind == "fail" {
                        let status = json!({"metadata": {}, "status": "Failure", "reason": "InternalError",
                            "message": "executable file not found in $PATH: \"nope\""});
                        send_frame(&mut ws, 3, status.to_string().as_bytes()).await;
                        return close(&mut ws, 1000, "").await;
                    }
                    while let Some(frame) = next_frame(&mut ws).await {
                        frames.lock().unwrap().push(frame.clone());
                        match frame[0] {
                            0 => send_frame(&mut ws, 1, &frame[1..]).await,
                            255 => break,
                            _ => {}
                        }
                    }
                    send_frame(&mut ws, 2, b"bye\n").await;
                    send_frame(&mut ws, 3, exit_status(code).to_string().as_bytes()).await;
                    close(&mut ws, 1000, "").await;
                })
            }
            _ => not_found(),
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_sends_the_argv_pipes_stdin_and_routes_the_streams() {
    let frames = Frames::default();
    let server = exec_server(frames.clone()).await;
    let out = run_with_input(
        &mut server.berth(),
        &[
            "container",
            "exec",
            "-g",
            "rg",
            "web",
            "--",
            "cat",
            "7",
            "a  b",
        ],
        b"hi\n",
    )
    .await;
    assert_eq!(out.stdout, "hi\n", "{}", out.stderr);
    assert_eq!(out.stderr, "bye\ncommand terminated with exit code 7\n");
    assert_eq!(out.code, 7, "the command's exit code");

    let requests = server.requests();
    let methods: Vec<(&str, &str)> = requests
        .iter()
        .map(|r| (r.method.as_str(), r.path.as_str()))
        .collect();
    assert_eq!(
        methods,
        [
            ("GET", GROUP_PATH),
            ("POST", &*format!("{CONTAINER_PATH}/exec")),
            ("GET", "/exec/cat-7"),
        ],
        "the only container is the default"
    );
    assert_eq!(
        requests[1].json(),
        json!({"command": ["cat", "7", "a  b"], "tty": false, "stdin": true,
               "terminalSize": {"rows": 24, "cols": 80}})
    );
    assert_eq!(requests[1].header("authorization"), Some("Bearer t"));
    assert_eq!(requests[2].query, "rows=24&cols=80");

    let frames = frames.lock().unwrap().clone();
    let (last, data) = frames.split_last().unwrap();
    assert_eq!(last, &[255, 0], "stdin ends with a close of channel 0");
    assert!(data.iter().all(|f| f[0] == 0), "{frames:?}");
    let sent: Vec<u8> = data.iter().flat_map(|f| f[1..].to_vec()).collect();
    assert_eq!(sent, b"hi\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_exits_as_the_command_did() {
    let frames = Frames::default();
    let server = exec_server(frames.clone()).await;
    let exec = |argv: &'static [&'static str]| {
        let mut args = vec!["container", "exec", "-g", "rg", "-n", "web"];
        args.push("--container");
        args.push("web");
        args.push("--");
        args.extend_from_slice(argv);
        args
    };
    // Stdin is not a terminal (here /dev/null): it is forwarded, and its end says so.
    let out = run(&mut server.berth(), &exec(&["cat", "0"])).await;
    assert_eq!((out.code, out.stdout.as_str()), (0, ""), "{}", out.stderr);
    assert_eq!(out.stderr, "bye\n");
    assert_eq!(frames.lock().unwrap().clone(), [vec![255, 0]]);
    assert_eq!(
        server.requests()[0].method,
        "POST",
        "--container needs no GET"
    );

    let out = run(&mut server.berth(), &exec(&["cat", "255"])).await;
    assert_eq!(out.code, 255, "{}", out.stderr);

    let out = run(&mut server.berth(), &exec(&["fail"])).await;
    assert_eq!(out.code, 1);
    assert_eq!(
        out.stderr,
        "error: executable file not found in $PATH: \"nope\"\n"
    );

    // A password the server refuses at the upgrade.
    let mut cmd = server.berth();
    let out = run(&mut cmd, &exec(&["refuse"])).await;
    assert_eq!(out.code, 4, "{}", out.stderr);
    assert!(
        out.stderr.starts_with("error: AuthenticationFailed:"),
        "{}",
        out.stderr
    );

    // No command, or no `--` before it.
    let before = server.requests().len();
    let out = run(
        &mut server.berth(),
        &["container", "exec", "-g", "rg", "web"],
    )
    .await;
    assert_eq!(out.code, 2, "{}", out.stderr);
    let out = run(
        &mut server.berth(),
        &["container", "exec", "-g", "rg", "web", "ls"],
    )
    .await;
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("[NAME] -- <COMMAND>..."),
        "{}",
        out.stderr
    );
    assert_eq!(server.requests().len(), before, "usage errors send nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_of_several_containers_needs_container() {
    let server = Server::start(|r| match (r.method.as_str(), r.path.as_str()) {
        ("GET", GROUP_PATH) => {
            let mut g = group("Succeeded");
            let sidecar = json!({"name": "sidecar", "properties": {"image": "busybox"}});
            g["properties"]["containers"]
                .as_array_mut()
                .unwrap()
                .push(sidecar);
            reply(200, g)
        }
        _ => not_found(),
    })
    .await;
    for args in [
        &["container", "logs", "-g", "rg", "web"][..],
        &["container", "exec", "-g", "rg", "web", "--", "sh"],
        &["container", "attach", "-g", "rg", "web"],
    ] {
        let out = run(&mut server.berth(), args).await;
        assert_eq!(out.code, 2, "{args:?}: {}", out.stderr);
        assert_eq!(
            out.stderr,
            "error: container group \"web\" has 2 containers (web, sidecar): pass --container\n"
        );
    }
    assert!(server.requests().iter().all(|r| r.method == "GET"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_prints_the_content() {
    let server = Server::start(|r| match (r.method.as_str(), r.path.as_str()) {
        ("GET", p) if p == format!("{CONTAINER_PATH}/logs") => {
            reply(200, json!({"content": "one\ntwo"}))
        }
        _ => not_found(),
    })
    .await;
    let out = run(
        &mut server.berth(),
        &[
            "container",
            "logs",
            "-g",
            "rg",
            "-n",
            "web",
            "--container",
            "web",
            "--tail",
            "2",
            "--timestamps",
            "--previous",
            "--since",
            "1h30m",
        ],
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout, "one\ntwo\n");
    let sent = server.requests().pop().unwrap();
    assert_eq!(
        sent.query,
        "tail=2&timestamps=true&previous=true&since=1h30m&api-version=2023-05-01"
    );
    let out = run(
        &mut server.berth(),
        &["container", "logs", "-g", "rg", "nope", "--container", "x"],
    )
    .await;
    assert_eq!(out.code, 3, "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_follow_prints_lines_as_they_come() {
    let (lines, stream) = mpsc::unbounded_channel::<String>();
    let stream = Mutex::new(Some(stream));
    let server = Server::start(move |r| match (r.method.as_str(), r.path.as_str()) {
        ("GET", GROUP_PATH) => reply(200, group("Succeeded")),
        ("GET", p) if p == format!("{CONTAINER_PATH}/logs") => {
            streamed(stream.lock().unwrap().take().expect("one follow"))
        }
        _ => not_found(),
    })
    .await;
    lines.send("first line\n".to_owned()).unwrap();
    let mut child = server
        .berth()
        .args(["container", "logs", "-g", "rg", "web", "-f", "--tail", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    // The first line shows while the answer is still open: nothing waits for its end.
    tokio::time::timeout(Duration::from_secs(20), stdout.read_line(&mut line))
        .await
        .expect("the first line shows before the stream ends")
        .unwrap();
    assert_eq!(line, "first line\n");
    lines.send("second ".to_owned()).unwrap();
    lines.send("line\n".to_owned()).unwrap();
    drop(lines);
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).await.unwrap();
    assert_eq!(rest, "second line\n");
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0));
    let sent = server.requests().pop().unwrap();
    assert_eq!(sent.query, "tail=1&follow=true&api-version=2023-05-01");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attach_prints_frames_until_the_server_closes() {
    let server = Server::start(|r| match (r.method.as_str(), r.path.as_str()) {
        ("GET", GROUP_PATH) => reply(200, group("Succeeded")),
        ("POST", p) if p == format!("{CONTAINER_PATH}/attach") => {
            assert!(r.body.is_empty(), "attach has no body");
            session_answer(r, "attach", "a1")
        }
        ("GET", "/attach/a1") => {
            // ACI's way: the bare password, no subprotocol.
            if r.header("authorization") != Some(PASSWORD)
                || r.header("sec-websocket-protocol").is_some()
            {
                return refused();
            }
            upgrade(None, |mut ws| async move {
                for line in ["line 1\n", "line 2\n"] {
                    ws.send(Message::Binary(line.as_bytes().to_vec().into()))
                        .await
                        .unwrap();
                }
                close(&mut ws, 1000, "container stopped").await;
            })
        }
        ("GET", "/attach/gone") => upgrade(None, |mut ws| async move {
            close(&mut ws, 1008, "invalid or expired password").await;
        }),
        _ => not_found(),
    })
    .await;
    let out = run(
        &mut server.berth(),
        &["container", "attach", "-g", "rg", "web"],
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout, "line 1\nline 2\n");
    assert_eq!(out.stderr, "");
    let paths: Vec<String> = server.requests().iter().map(|r| r.path.clone()).collect();
    assert_eq!(
        paths,
        [
            GROUP_PATH.to_owned(),
            format!("{CONTAINER_PATH}/attach"),
            "/attach/a1".to_owned()
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attach_tells_a_refused_session_and_ctrl_c_ends_it() {
    // Whether the client closed the websocket with a close frame, once it is gone.
    let (goodbyes, mut said_goodbye) = mpsc::unbounded_channel::<bool>();
    let server = Server::start(move |r| match (r.method.as_str(), r.path.as_str()) {
        ("POST", p) if p.ends_with("/gone/attach") => session_answer(r, "attach", "gone"),
        ("POST", p) if p.ends_with("/quiet/attach") => session_answer(r, "attach", "quiet"),
        ("GET", "/attach/gone") => upgrade(None, |mut ws| async move {
            close(&mut ws, 1008, "invalid or expired password").await;
        }),
        ("GET", "/attach/quiet") => {
            let goodbyes = goodbyes.clone();
            upgrade(None, move |mut ws| async move {
                ws.send(Message::Binary(b"hello\n".to_vec().into()))
                    .await
                    .unwrap();
                // Says nothing more until the client goes.
                let mut closed = false;
                while let Some(Ok(message)) = ws.next().await {
                    closed |= matches!(message, Message::Close(_));
                }
                goodbyes.send(closed).unwrap();
            })
        }
        _ => not_found(),
    })
    .await;
    let attach = |container: &'static str| {
        [
            "container",
            "attach",
            "-g",
            "rg",
            "web",
            "--container",
            container,
        ]
    };
    let out = run(&mut server.berth(), &attach("gone")).await;
    assert_eq!(out.code, 4, "{}", out.stderr);
    assert_eq!(
        out.stderr,
        "error: the server closed the session: invalid or expired password (websocket close code 1008)\n"
    );

    let mut child = server
        .berth()
        .args(attach("quiet"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    tokio::time::timeout(Duration::from_secs(20), stdout.read_line(&mut line))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(line, "hello\n");
    signal(&child, rustix::process::Signal::INT);
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("Ctrl-C ends attach")
        .unwrap();
    assert_eq!(status.code(), Some(130));
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .await
        .unwrap();
    assert_eq!(stderr, "", "Ctrl-C is no error");
    let closed = tokio::time::timeout(Duration::from_secs(20), said_goodbye.recv())
        .await
        .unwrap();
    assert_eq!(closed, Some(true), "attach closes the websocket");
}

fn signal(child: &tokio::process::Child, signal: rustix::process::Signal) {
    let pid = rustix::process::Pid::from_raw(child.id().unwrap() as i32).unwrap();
    rustix::process::kill_process(pid, signal).unwrap();
}

/// `exec -it` on a real pseudo-terminal: raw while the session lasts (keys such as Ctrl-C go to the
/// command), the size sent at the start and on SIGWINCH, and the terminal as it was afterwards.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_on_a_terminal_is_raw_for_the_session_and_put_back() {
    use std::io::{Read as _, Write as _};

    use rustix::fs::{Mode, OFlags};
    use rustix::pty::OpenptFlags;
    use rustix::termios::{self, LocalModes, Winsize};

    let (received, mut frames) = mpsc::unbounded_channel::<Vec<u8>>();
    let server = Server::start(move |r| match (r.method.as_str(), r.path.as_str()) {
        ("GET", GROUP_PATH) => reply(200, group("Succeeded")),
        ("POST", p) if p == format!("{CONTAINER_PATH}/exec") => session_answer(r, "exec", "tty"),
        ("GET", "/exec/tty") => {
            let received = received.clone();
            upgrade(Some("v5.channel.k8s.io"), move |mut ws| async move {
                // Every frame goes to the test, until Ctrl-C arrives as a key.
                while let Some(frame) = next_frame(&mut ws).await {
                    let interrupt = frame == [0, 3];
                    received.send(frame).unwrap();
                    if interrupt {
                        break;
                    }
                }
                send_frame(&mut ws, 1, b"^C\r\nhello\r\n").await;
                send_frame(&mut ws, 3, exit_status(3).to_string().as_bytes()).await;
                close(&mut ws, 1000, "").await;
            })
        }
        _ => not_found(),
    })
    .await;

    let master = rustix::pty::openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY).unwrap();
    rustix::pty::grantpt(&master).unwrap();
    rustix::pty::unlockpt(&master).unwrap();
    let name = rustix::pty::ptsname(&master, Vec::new()).unwrap();
    let terminal = rustix::fs::open(
        name.as_c_str(),
        OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .unwrap();
    let size = |rows, cols| Winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    termios::tcsetwinsize(&terminal, size(30, 100)).unwrap();
    let cooked = |fd: &std::os::fd::OwnedFd| {
        let modes = termios::tcgetattr(fd).unwrap().local_modes;
        (
            modes.contains(LocalModes::ICANON),
            modes.contains(LocalModes::ECHO),
            modes.contains(LocalModes::ISIG),
        )
    };
    assert_eq!(cooked(&terminal), (true, true, true), "a new terminal");

    let mut child = server
        .berth()
        .args(["container", "exec", "-it", "-g", "rg", "web", "--", "sh"])
        .stdin(Stdio::from(terminal.try_clone().unwrap()))
        .stdout(Stdio::from(terminal.try_clone().unwrap()))
        .stderr(Stdio::from(terminal.try_clone().unwrap()))
        .spawn()
        .unwrap();
    let next = async |frames: &mut mpsc::UnboundedReceiver<Vec<u8>>| {
        tokio::time::timeout(Duration::from_secs(20), frames.recv())
            .await
            .expect("a frame from berth")
            .expect("the session is open")
    };

    // The size at the start, then on every change of it.
    assert_eq!(
        next(&mut frames).await,
        b"\x04{\"Width\":100,\"Height\":30}"
    );
    assert_eq!(
        cooked(&terminal),
        (false, false, false),
        "raw during the session"
    );
    termios::tcsetwinsize(&terminal, size(40, 120)).unwrap();
    signal(&child, rustix::process::Signal::WINCH);
    assert_eq!(
        next(&mut frames).await,
        b"\x04{\"Width\":120,\"Height\":40}"
    );
    // Ctrl-C is a key for the command, not a signal for berth.
    let mut keyboard = std::fs::File::from(master.try_clone().unwrap());
    keyboard.write_all(b"\x03").unwrap();
    assert_eq!(next(&mut frames).await, [0, 3]);

    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("berth ends with the command")
        .unwrap();
    assert_eq!(status.code(), Some(3));
    assert_eq!(cooked(&terminal), (true, true, true), "put back");
    let request = server
        .requests()
        .into_iter()
        .find(|r| r.method == "POST")
        .unwrap();
    assert_eq!(
        request.json(),
        json!({"command": ["sh"], "tty": true, "stdin": true,
               "terminalSize": {"rows": 30, "cols": 100}})
    );

    // What the terminal showed: the command's output, then berth's last word.
    drop(terminal);
    let screen = tokio::task::spawn_blocking(move || {
        let mut screen = Vec::new();
        let mut screen_reader = std::fs::File::from(master);
        // Once every other end is closed, the rest is read and then the read fails (EIO).
        let _ = screen_reader.read_to_end(&mut screen);
        String::from_utf8_lossy(&screen).into_owned()
    })
    .await
    .unwrap();
    assert_eq!(
        screen,
        "^C\r\nhello\r\ncommand terminated with exit code 3\r\n"
    );
}
