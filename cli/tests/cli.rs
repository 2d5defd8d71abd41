//! The `berth` binary against a scripted HTTPS server in this process: TLS with a private CA, the
//! requests it sends, what it prints and its exit codes. The real apiserver is driven by berth-tests.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpListener;

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

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

fn reply(status: u16, body: Value) -> Reply {
    Reply {
        status,
        headers: vec![],
        body: body.to_string(),
    }
}

fn empty(status: u16) -> Reply {
    Reply {
        status,
        headers: vec![],
        body: String::new(),
    }
}

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

/// HTTP/1.1 with keep-alive, enough for reqwest: Content-Length bodies only.
async fn serve<S>(stream: S, handler: Handler, recorded: Arc<Mutex<Vec<Recorded>>>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
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
        recorded.lock().unwrap().push(request);
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
        let out = stream.get_mut();
        if out.write_all(head.as_bytes()).await.is_err()
            || out.write_all(answer.body.as_bytes()).await.is_err()
            || out.flush().await.is_err()
        {
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
            "Linux",
            "1.5/4",
            "3/16",
            "2",
            "2025-01-01T00:00:00Z"
        ]
    );
}
