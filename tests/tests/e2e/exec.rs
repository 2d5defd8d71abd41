//! Exec, attach and streamed logs through real containers: user ⇄ apiserver websocket (TLS) ⇄ agent
//! gRPC (mTLS) ⇄ containerd exec. ACI's protocol is driven by the `websocket-client` Python package
//! exactly as `az container exec` drives it; Berth's protocol (Kubernetes' channel framing) by a Rust
//! websocket client.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{SinkExt as _, StreamExt as _};
use reqwest::{Method, StatusCode};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

use crate::harness::{Api, Cluster, OTHER_SUB, SUB, group_path};
use crate::real::{RealNode, RealOptions, SLOW, python, real_group, state_of, view};

const RG: &str = "rg";

pub(crate) type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

async fn setup(
    name: &str,
    tweak: impl FnOnce(&mut berth_apiserver::Config),
) -> (Cluster, Api, RealNode) {
    let cluster = Cluster::start_with(tweak).await;
    let api = cluster.tenant(&[SUB]).await;
    let node = RealNode::start(&cluster, name, RealOptions::default()).await;
    (cluster, api, node)
}

/// Creates group `name` with one container `app` running `command` and waits until it runs.
async fn running_group(
    api: &Api,
    node: &RealNode,
    name: &str,
    policy: &str,
    command: &[&str],
) -> Value {
    let body = real_group(&node.image, policy, &[("app", command)]);
    let (status, _, answer) = api.put_group(SUB, RG, name, &body).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    wait(api, node, name, |b| state_of(b, "app") == "Running").await
}

async fn wait(api: &Api, node: &RealNode, name: &str, check: impl Fn(&Value) -> bool) -> Value {
    crate::real::wait_group(api, node, RG, name, check).await
}

fn container_path(name: &str, container: &str, verb: &str, query: &str) -> String {
    group_path(SUB, RG, name).replace(
        "?api-version",
        &format!("/containers/{container}/{verb}?{query}api-version"),
    )
}

/// `POST …/exec` (or attach): `(webSocketUri, password)`.
async fn session(api: &Api, name: &str, verb: &str, body: Option<Value>) -> (String, String) {
    let (status, answer) = api
        .call(Method::POST, &container_path(name, "app", verb, ""), body)
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let uri = answer["webSocketUri"]
        .as_str()
        .expect("webSocketUri")
        .to_owned();
    let password = answer["password"].as_str().expect("password").to_owned();
    (uri, password)
}

fn tls(ca_pem: &str) -> Connector {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.expect("CA PEM")).expect("CA certificate");
    }
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Connector::Rustls(Arc::new(config))
}

/// Opens a websocket with these subprotocols and `Authorization` header.
async fn connect(
    cluster: &Cluster,
    uri: &str,
    protocols: &[&str],
    authorization: Option<&str>,
) -> Result<(Socket, Option<String>), tungstenite::Error> {
    connect_with_ca(&cluster.ca_pem, uri, protocols, authorization).await
}

/// [`connect`] to a server known by its CA alone (an apiserver process).
async fn connect_with_ca(
    ca_pem: &str,
    uri: &str,
    protocols: &[&str],
    authorization: Option<&str>,
) -> Result<(Socket, Option<String>), tungstenite::Error> {
    let mut request = uri.into_client_request()?;
    if !protocols.is_empty() {
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_str(&protocols.join(", ")).expect("header"),
        );
    }
    if let Some(value) = authorization {
        request.headers_mut().insert(
            "Authorization",
            HeaderValue::from_str(value).expect("header"),
        );
    }
    let (socket, response) =
        tokio_tungstenite::connect_async_tls_with_config(request, None, false, Some(tls(ca_pem)))
            .await?;
    let protocol = response
        .headers()
        .get("Sec-WebSocket-Protocol")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    Ok((socket, protocol))
}

async fn channel_socket(cluster: &Cluster, uri: &str, password: &str) -> Socket {
    channel_socket_with_ca(&cluster.ca_pem, uri, password).await
}

/// A websocket of Berth's channel protocol to `uri`, the session's password as bearer.
pub(crate) async fn channel_socket_with_ca(ca_pem: &str, uri: &str, password: &str) -> Socket {
    let (socket, protocol) = connect_with_ca(
        ca_pem,
        uri,
        &["v5.channel.k8s.io"],
        Some(&format!("Bearer {password}")),
    )
    .await
    .expect("channel websocket");
    assert_eq!(protocol.as_deref(), Some("v5.channel.k8s.io"));
    socket
}

fn frame(channel: u8, data: &[u8]) -> Message {
    let mut bytes = vec![channel];
    bytes.extend_from_slice(data);
    Message::Binary(bytes.into())
}

/// What a channel session printed: stdout, stderr and the final status.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    pub(crate) stdout: String,
    pub(crate) stderr: String,
    pub(crate) status: Value,
    pub(crate) closed: bool,
}

/// Reads a channel session to its end (bounded by [`SLOW`]).
pub(crate) async fn finish(socket: &mut Socket, outcome: &mut Outcome) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(SLOW);
    loop {
        let message = tokio::time::timeout_at(deadline, socket.next())
            .await
            .unwrap_or_else(|_| panic!("the session never ended: {outcome:?}"));
        match message {
            Some(Ok(Message::Binary(bytes))) => {
                let (channel, data) = bytes.split_first().expect("a channel byte");
                let text = String::from_utf8_lossy(data);
                match channel {
                    1 => outcome.stdout.push_str(&text),
                    2 => outcome.stderr.push_str(&text),
                    3 => outcome.status = serde_json::from_slice(data).expect("status JSON"),
                    other => panic!("unexpected channel {other}"),
                }
            }
            Some(Ok(Message::Close(_))) | None => {
                outcome.closed = true;
                return;
            }
            Some(Ok(_)) => {}
            Some(Err(error)) => panic!("websocket error: {error} after {outcome:?}"),
        }
    }
}

/// Reads stdout until it contains `needle`.
async fn read_until(socket: &mut Socket, outcome: &mut Outcome, needle: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(SLOW);
    while !outcome.stdout.contains(needle) {
        let message = tokio::time::timeout_at(deadline, socket.next())
            .await
            .unwrap_or_else(|_| panic!("never saw {needle:?}: {outcome:?}"));
        match message {
            Some(Ok(Message::Binary(bytes))) if bytes.first() == Some(&1) => {
                outcome
                    .stdout
                    .push_str(&String::from_utf8_lossy(&bytes[1..]));
            }
            Some(Ok(Message::Binary(bytes))) if bytes.first() == Some(&2) => {
                outcome
                    .stderr
                    .push_str(&String::from_utf8_lossy(&bytes[1..]));
            }
            Some(Ok(Message::Close(_))) | None => panic!("closed before {needle:?}: {outcome:?}"),
            _ => {}
        }
    }
}

pub(crate) fn exit_code(status: &Value) -> i64 {
    if status["status"] == "Success" {
        return 0;
    }
    assert_eq!(status["reason"], "NonZeroExitCode", "{status}");
    status["details"]["causes"][0]["message"]
        .as_str()
        .and_then(|m| m.parse().ok())
        .expect("an exit code cause")
}

/// The pids of processes whose whole command line is `argv`.
fn pids_running(argv: &[&str]) -> Vec<u32> {
    let wanted: Vec<u8> = argv
        .iter()
        .flat_map(|a| [a.as_bytes(), b"\0"].concat())
        .collect();
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            (cmdline == wanted).then_some(pid)
        })
        .collect()
}

async fn wait_for(what: &str, check: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(SLOW);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn exec_dir_is_empty(node: &RealNode) -> bool {
    let dir = node.state_dir.join("runtime/exec");
    std::fs::read_dir(&dir).map_or(true, |mut entries| entries.next().is_none())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn berth_exec_passes_argv_splits_streams_and_returns_the_exit_code() {
    let (cluster, api, node) = setup("exec-channel", |_| {}).await;
    running_group(&api, &node, "shell", "Always", &["sleep", "3600"]).await;

    // argv exactly, stdout and stderr apart, the exit code last.
    let (uri, password) = session(
        &api,
        "shell",
        "exec",
        Some(json!({"command": ["sh", "-c", "echo out; echo 'e r r' >&2; exit 3"], "tty": false})),
    )
    .await;
    let mut socket = channel_socket(&cluster, &uri, &password).await;
    let mut outcome = Outcome::default();
    finish(&mut socket, &mut outcome).await;
    assert_eq!(outcome.stdout, "out\n", "{outcome:?}");
    assert_eq!(outcome.stderr, "e r r\n", "{outcome:?}");
    assert_eq!(exit_code(&outcome.status), 3, "{outcome:?}");
    assert!(outcome.closed);

    // stdin, then its end: cat echoes and exits 0.
    let (uri, password) = session(
        &api,
        "shell",
        "exec",
        Some(json!({"command": ["cat"], "tty": false, "stdin": true})),
    )
    .await;
    let mut socket = channel_socket(&cluster, &uri, &password).await;
    socket.send(frame(0, b"hello ")).await.expect("send");
    socket.send(frame(0, b"world\n")).await.expect("send");
    socket.send(frame(255, &[0])).await.expect("send");
    let mut outcome = Outcome::default();
    finish(&mut socket, &mut outcome).await;
    assert_eq!(outcome.stdout, "hello world\n", "{outcome:?}");
    assert_eq!(exit_code(&outcome.status), 0, "{outcome:?}");

    // A TTY: the size asked for, then a resize, as `stty size` sees them.
    let (uri, password) = session(
        &api,
        "shell",
        "exec",
        Some(json!({"command": ["sh"], "terminalSize": {"rows": 30, "cols": 90}})),
    )
    .await;
    let mut socket = channel_socket(&cluster, &uri, &password).await;
    let mut outcome = Outcome::default();
    socket.send(frame(0, b"stty size\n")).await.expect("send");
    read_until(&mut socket, &mut outcome, "30 90").await;
    socket
        .send(frame(4, br#"{"Width":123,"Height":45}"#))
        .await
        .expect("send");
    socket.send(frame(0, b"stty size\n")).await.expect("send");
    read_until(&mut socket, &mut outcome, "45 123").await;
    socket.send(frame(0, b"exit 7\n")).await.expect("send");
    finish(&mut socket, &mut outcome).await;
    assert_eq!(exit_code(&outcome.status), 7, "{outcome:?}");
    assert!(
        outcome.stderr.is_empty(),
        "a TTY has one stream: {outcome:?}"
    );

    // A terminal that does not know its size (`az container exec` under `script` or in CI sends 0×0):
    // the default size.
    let (uri, password) = session(
        &api,
        "shell",
        "exec",
        Some(json!({"command": ["sh"], "terminalSize": {"rows": 0, "cols": 0}})),
    )
    .await;
    let mut socket = channel_socket(&cluster, &uri, &password).await;
    let mut outcome = Outcome::default();
    socket.send(frame(0, b"stty size\n")).await.expect("send");
    read_until(&mut socket, &mut outcome, "24 80").await;
    socket.send(frame(0, b"exit\n")).await.expect("send");
    finish(&mut socket, &mut outcome).await;

    // No such executable: a status saying so, not a hang.
    let (uri, password) = session(
        &api,
        "shell",
        "exec",
        Some(json!({"command": ["/no/such/binary"], "tty": false})),
    )
    .await;
    let mut socket = channel_socket(&cluster, &uri, &password).await;
    let mut outcome = Outcome::default();
    finish(&mut socket, &mut outcome).await;
    assert_eq!(outcome.status["status"], "Failure", "{outcome:?}");
    assert!(
        outcome.status["message"]
            .as_str()
            .is_some_and(|m| m.contains("/no/such/binary")),
        "{outcome:?}"
    );
    wait_for("exec fifos removed", || exec_dir_is_empty(&node)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_posted_on_one_replica_opens_on_another_once() {
    let (cluster, api, node) = setup("exec-replica", |_| {}).await;
    running_group(&api, &node, "shell", "Always", &["sleep", "3600"]).await;
    let replica = cluster.replica().await;

    // POSTed on the first apiserver, opened on the replica (as a load balancer may send it).
    let (uri, password) = session(
        &api,
        "shell",
        "exec",
        Some(json!({"command": ["sh", "-c", "echo on the replica"], "tty": false})),
    )
    .await;
    let host = |base: &str| base.trim_start_matches("https://").to_owned();
    assert!(uri.contains(&host(&cluster.base)), "{uri}");
    let on_replica = uri.replace(&host(&cluster.base), &host(&replica.base));
    let mut socket = channel_socket(&replica, &on_replica, &password).await;
    let mut outcome = Outcome::default();
    finish(&mut socket, &mut outcome).await;
    assert_eq!(outcome.stdout, "on the replica\n", "{outcome:?}");
    assert_eq!(exit_code(&outcome.status), 0, "{outcome:?}");

    // Once: neither apiserver opens it again.
    for (server, uri) in [(&cluster, &uri), (&replica, &on_replica)] {
        let again = connect(
            server,
            uri,
            &["v5.channel.k8s.io"],
            Some(&format!("Bearer {password}")),
        )
        .await;
        match again {
            Err(tungstenite::Error::Http(response)) => {
                assert_eq!(response.status().as_u16(), 401);
            }
            other => panic!("a used session opened again: {:?}", other.map(|(_, p)| p)),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_the_socket_kills_the_process() {
    let (cluster, api, node) = setup("exec-close", |_| {}).await;
    running_group(&api, &node, "shell", "Always", &["sleep", "3600"]).await;
    let argv = ["sleep", "7321"];
    for tty in [false, true] {
        let (uri, password) = session(
            &api,
            "shell",
            "exec",
            Some(json!({"command": argv, "tty": tty})),
        )
        .await;
        let mut socket = channel_socket(&cluster, &uri, &password).await;
        wait_for("the exec'd process", || !pids_running(&argv).is_empty()).await;
        socket.close(None).await.expect("close");
        drop(socket);
        wait_for("the exec'd process to be gone", || {
            pids_running(&argv).is_empty()
        })
        .await;
        wait_for("exec fifos removed", || exec_dir_is_empty(&node)).await;
    }
    // The container itself is untouched.
    let (_, body) = api.get_group(SUB, RG, "shell").await;
    assert_eq!(state_of(&body, "app"), "Running", "{body}");
    assert_eq!(view(&body, "app")["restartCount"], 0, "{body}");
}

/// Runs `tests/python/aci_exec_client.py` against `uri`: `{output, close_code, close_reason, error}`.
async fn aci_client(cluster: &Cluster, uri: &str, password: &str, stdin: &str) -> Value {
    let ca = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(ca.path(), &cluster.ca_pem).expect("CA file");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/aci_exec_client.py");
    let output = tokio::process::Command::new(python())
        .arg(script)
        .args([uri, password, &ca.path().to_string_lossy(), stdin])
        .output()
        .await
        .expect("python runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aci_exec_works_as_az_container_exec_drives_it() {
    let (cluster, api, node) = setup("exec-aci", |config| config.exec_ttl_secs = 2).await;
    running_group(&api, &node, "shell", "Always", &["sleep", "3600"]).await;
    // ACI's body, exactly as az sends it.
    let body = json!({"command": "/bin/sh", "terminalSize": {"rows": 24, "cols": 80}});
    let (uri, password) = session(&api, "shell", "exec", Some(body.clone())).await;
    assert!(uri.starts_with("wss://"), "{uri}");
    assert!(uri.contains("rows=24") && uri.contains("cols=80"), "{uri}");
    assert!(password.ends_with("[[EOM]]"), "{password}");

    let result = aci_client(&cluster, &uri, &password, "echo hello-$((6*7))\nexit\n").await;
    assert!(
        result["output"]
            .as_str()
            .is_some_and(|o| o.contains("hello-42")),
        "{result}"
    );
    assert_eq!(result["close_code"], 1000, "{result}");

    // The same password again: refused, nothing runs.
    let again = aci_client(&cluster, &uri, &password, "echo again-$((6*7))\nexit\n").await;
    assert!(
        !again["output"]
            .as_str()
            .unwrap_or_default()
            .contains("again-42"),
        "{again}"
    );
    assert!(
        again["error"].as_str().is_some_and(|e| e.contains("401")),
        "{again}"
    );

    // A wrong password on a live session: closed with 1008, and the session is burnt.
    let (uri, password) = session(&api, "shell", "exec", Some(body.clone())).await;
    let (mut socket, _) = connect(&cluster, &uri, &[], None).await.expect("connects");
    socket
        .send(Message::text("not-it[[EOM]]"))
        .await
        .expect("send");
    match socket.next().await {
        Some(Ok(Message::Close(Some(close)))) => {
            assert_eq!(close.code, CloseCode::Policy, "{close:?}");
        }
        other => panic!("expected a close frame, got {other:?}"),
    }
    let burnt = aci_client(&cluster, &uri, &password, "exit\n").await;
    assert!(
        burnt["error"].as_str().is_some_and(|e| e.contains("401")),
        "{burnt}"
    );

    // An exec password does not open an attach socket.
    let (uri, password) = session(&api, "shell", "exec", Some(body.clone())).await;
    let attach_uri = uri
        .split('?')
        .next()
        .unwrap_or_default()
        .replace("/exec/", "/attach/");
    let (mut socket, _) = connect(&cluster, &attach_uri, &[], None)
        .await
        .expect("connects");
    socket.send(Message::text(password)).await.expect("send");
    let answer = tokio::time::timeout(Duration::from_secs(SLOW), socket.next()).await;
    match answer.expect("the attach socket answers") {
        Some(Ok(Message::Close(Some(close)))) => {
            assert_eq!(close.code, CloseCode::Policy, "{close:?}");
        }
        other => panic!("expected a close frame, got {other:?}"),
    }

    // An expired password (this cluster's passwords live 2 s).
    let (uri, password) = session(&api, "shell", "exec", Some(body)).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let expired = aci_client(&cluster, &uri, &password, "exit\n").await;
    assert!(
        expired["error"].as_str().is_some_and(|e| e.contains("401")),
        "{expired}"
    );
    let refused = connect(&cluster, &uri, &["v5.channel.k8s.io"], Some(&password)).await;
    assert!(refused.is_err(), "an expired password opened a session");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_tenant_can_neither_exec_nor_read_logs() {
    let (cluster, api, node) = setup("exec-tenant", |_| {}).await;
    running_group(&api, &node, "mine", "Always", &["sleep", "3600"]).await;
    let other = cluster.tenant(&[OTHER_SUB]).await;
    let both = cluster.tenant(&[OTHER_SUB, SUB]).await;
    let _ = both;
    for (method, verb, body) in [
        (Method::POST, "exec", Some(json!({"command": "/bin/sh"}))),
        (Method::POST, "attach", None),
        (Method::GET, "logs", None),
    ] {
        let path = container_path("mine", "app", verb, "");
        let (status, answer) = other.call(method.clone(), &path, body.clone()).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{verb}: {answer}");
        // The same request from the group's tenant works.
        let (status, answer) = api.call(method, &path, body).await;
        assert_eq!(status, StatusCode::OK, "{verb}: {answer}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_follow_previous_and_attach() {
    let (cluster, api, node) = setup("exec-logs", |_| {}).await;
    // Each run prints its number (kept on an emptyDir across restarts), then waits for a file that
    // an exec creates to fail and be restarted.
    let mut body = real_group(
        &node.image,
        "Always",
        &[(
            "app",
            &[
                "sh",
                "-c",
                "n=$(( $(cat /v/n 2>/dev/null || echo 0) + 1 )); echo $n > /v/n; echo run-$n; \
                 while [ ! -f /v/fail-$n ]; do sleep 0.1; done; exit 1",
            ],
        )],
    );
    body["properties"]["volumes"] = json!([{"name": "state", "emptyDir": {}}]);
    body["properties"]["containers"][0]["properties"]["volumeMounts"] =
        json!([{"name": "state", "mountPath": "/v"}]);
    let (status, _, answer) = api.put_group(SUB, RG, "logs", &body).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    wait(&api, &node, "logs", |b| state_of(b, "app") == "Running").await;

    // follow: a line printed by the container shows up within a second.
    let url = format!(
        "{}{}",
        cluster.base,
        container_path("logs", "app", "logs", "follow=true&")
    );
    let client = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(cluster.ca_pem.as_bytes()).expect("CA"),
        )
        .build()
        .expect("client");
    let mut response = client
        .get(&url)
        .bearer_auth(api.token())
        .send()
        .await
        .expect("logs follow");
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .is_ok_and(|t| t.starts_with("text/plain")),
        "{:?}",
        response.headers()
    );
    let mut seen = String::new();
    while !seen.contains("run-1\n") {
        let chunk = tokio::time::timeout(Duration::from_secs(SLOW), response.chunk())
            .await
            .expect("first lines")
            .expect("chunk")
            .expect("not the end");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    // Attach now: from here on, the output.
    let (attach_uri, attach_password) = session(&api, "logs", "attach", None).await;
    let (mut attach, _) = connect(&cluster, &attach_uri, &[], Some(&attach_password))
        .await
        .expect("attach");
    // An exec writes into the container's stdout.
    let (uri, password) = session(
        &api,
        "logs",
        "exec",
        Some(json!({"command": ["sh", "-c", "echo followed-line > /proc/1/fd/1"], "tty": false})),
    )
    .await;
    let mut socket = channel_socket(&cluster, &uri, &password).await;
    let mut outcome = Outcome::default();
    finish(&mut socket, &mut outcome).await;
    assert_eq!(exit_code(&outcome.status), 0, "{outcome:?}");
    let printed = Instant::now();
    while !seen.contains("followed-line\n") {
        let chunk = tokio::time::timeout(Duration::from_secs(SLOW), response.chunk())
            .await
            .expect("the followed line")
            .expect("chunk")
            .expect("not the end");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    let latency = printed.elapsed();
    assert!(
        latency < Duration::from_secs(1),
        "the line took {latency:?}"
    );
    let mut attached = String::new();
    while !attached.contains("followed-line\n") {
        match tokio::time::timeout(Duration::from_secs(SLOW), attach.next()).await {
            Ok(Some(Ok(Message::Binary(bytes)))) => {
                attached.push_str(&String::from_utf8_lossy(&bytes))
            }
            Ok(Some(Ok(_))) => {}
            other => panic!("attach ended before the line: {other:?} after {attached:?}"),
        }
    }
    assert!(
        !attached.contains("run-1"),
        "attach shows output from the moment it attached: {attached:?}"
    );

    // Make run 1 fail: the container restarts and prints run-2; `previous` is run 1.
    let (uri, password) = session(
        &api,
        "logs",
        "exec",
        Some(json!({"command": ["touch", "/v/fail-1"], "tty": false})),
    )
    .await;
    let mut socket = channel_socket(&cluster, &uri, &password).await;
    finish(&mut socket, &mut Outcome::default()).await;
    wait(&api, &node, "logs", |b| {
        view(b, "app")["restartCount"].as_i64() >= Some(1) && state_of(b, "app") == "Running"
    })
    .await;
    let logs = |query: &'static str| {
        let api = api.clone();
        async move {
            let (status, body) = api
                .call(
                    Method::GET,
                    &container_path("logs", "app", "logs", query),
                    None,
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
            body["content"].as_str().unwrap_or_default().to_owned()
        }
    };
    let previous = logs("previous=true&").await;
    assert!(
        previous.contains("run-1\n") && previous.contains("followed-line\n"),
        "{previous:?}"
    );
    assert!(!previous.contains("run-2"), "{previous:?}");
    let deadline = Instant::now() + Duration::from_secs(SLOW);
    loop {
        let current = logs("").await;
        if current.contains("run-2\n") {
            assert!(!current.contains("run-1"), "{current:?}");
            break;
        }
        assert!(Instant::now() < deadline, "run 2 never logged: {current:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The follow stream carried on into the new run.
    while !seen.contains("run-2\n") {
        let chunk = tokio::time::timeout(Duration::from_secs(SLOW), response.chunk())
            .await
            .expect("run 2 in the followed log")
            .expect("chunk")
            .expect("not the end");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    // `since` in the future: nothing yet.
    assert_eq!(logs("since=2999-01-01T00:00:00Z&").await, "");
    let (status, body) = api
        .call(
            Method::GET,
            &container_path("logs", "app", "logs", "since=soon&"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["target"], "since", "{body}");

    // Stopping the group ends the followed log and the attach.
    let stop = group_path(SUB, RG, "logs").replace("?api-version", "/stop?api-version");
    let (status, body) = api.call(Method::POST, &stop, None).await;
    assert!(status.is_success(), "{body}");
    let end = tokio::time::timeout(Duration::from_secs(SLOW), async {
        while let Ok(Some(_)) = response.chunk().await {}
    })
    .await;
    assert!(end.is_ok(), "the followed log did not end on stop");
    let closed = tokio::time::timeout(Duration::from_secs(SLOW), async {
        loop {
            match attach.next().await {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "attach did not end on stop");
}

/// A pseudo-terminal: the master side, and the terminal a program gets as its stdio.
struct Pty {
    master: std::os::fd::OwnedFd,
    terminal: std::os::fd::OwnedFd,
}

impl Pty {
    fn open(rows: u16, cols: u16) -> Self {
        use rustix::fs::{Mode, OFlags};
        use rustix::pty::OpenptFlags;
        let master = rustix::pty::openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY).expect("openpt");
        rustix::pty::grantpt(&master).expect("grantpt");
        rustix::pty::unlockpt(&master).expect("unlockpt");
        let name = rustix::pty::ptsname(&master, Vec::new()).expect("ptsname");
        let terminal = rustix::fs::open(
            name.as_c_str(),
            OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .expect("open the terminal");
        let pty = Self { master, terminal };
        pty.resize(rows, cols);
        pty
    }

    /// Sets the window size; the kernel sends SIGWINCH to the terminal's foreground process group.
    fn resize(&self, rows: u16, cols: u16) {
        rustix::termios::tcsetwinsize(
            &self.master,
            rustix::termios::Winsize {
                ws_row: rows,
                ws_col: cols,
                ws_xpixel: 0,
                ws_ypixel: 0,
            },
        )
        .expect("set the window size");
    }

    fn stdio(&self) -> std::process::Stdio {
        std::process::Stdio::from(self.terminal.try_clone().expect("dup"))
    }

    fn type_keys(&self, keys: &str) {
        rustix::io::write(&self.master, keys.as_bytes()).expect("type");
    }

    /// Everything the terminal shows, collected by a thread.
    fn screen(&self) -> Arc<std::sync::Mutex<String>> {
        let screen = Arc::new(std::sync::Mutex::new(String::new()));
        let master = self.master.try_clone().expect("dup");
        let shown = screen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = rustix::io::read(&master, &mut buf) {
                if n == 0 {
                    break;
                }
                shown
                    .lock()
                    .expect("screen")
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        screen
    }
}

async fn wait_screen(screen: &std::sync::Mutex<String>, needle: &str, retype: impl Fn()) {
    let deadline = Instant::now() + Duration::from_secs(SLOW);
    let mut last_typed = Instant::now();
    while !screen.lock().expect("screen").contains(needle) {
        assert!(
            Instant::now() < deadline,
            "never saw {needle:?} on the terminal: {:?}",
            screen.lock().expect("screen")
        );
        if last_typed.elapsed() > Duration::from_secs(2) {
            retype();
            last_typed = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_runs_a_shell_in_a_terminal_pipes_and_exits_as_the_command() {
    use crate::cli::{Cli, berth_binary};
    let (cluster, api, node) = setup("exec-cli", |_| {}).await;
    running_group(
        &api,
        &node,
        "shell",
        "Always",
        &["sh", "-c", "echo booted; exec sleep 3600"],
    )
    .await;
    let cli = Cli::new();
    let ca = cluster.dir().join("ca.crt");
    cli.ok(&[
        "login",
        "--endpoint",
        &cluster.base,
        "--token",
        api.token(),
        "--ca-file",
        ca.to_str().expect("utf-8"),
    ])
    .await;

    // `-it` in a terminal that is the CLI's controlling terminal (setsid -c), as in a user's shell.
    let pty = Pty::open(30, 90);
    let screen = pty.screen();
    let mut child = tokio::process::Command::new("setsid")
        .args(["-w", "-c"])
        .arg(berth_binary())
        .args(["container", "exec", "-g", RG, "shell", "-it", "--", "sh"])
        .env("BERTH_CONFIG", &cli.config)
        .stdin(pty.stdio())
        .stdout(pty.stdio())
        .stderr(pty.stdio())
        .spawn()
        .expect("berth runs");
    pty.type_keys("stty size\r");
    wait_screen(&screen, "30 90", || pty.type_keys("stty size\r")).await;
    pty.resize(45, 123);
    pty.type_keys("stty size\r");
    wait_screen(&screen, "45 123", || pty.type_keys("stty size\r")).await;
    pty.type_keys("exit 4\r");
    let status = tokio::time::timeout(Duration::from_secs(SLOW), child.wait())
        .await
        .expect("berth exits")
        .expect("status");
    assert_eq!(
        status.code(),
        Some(4),
        "{:?}",
        screen.lock().expect("screen")
    );

    // A pipe: stdin is forwarded and its end ends `cat`.
    let mut child = tokio::process::Command::new(berth_binary())
        .args(["container", "exec", "-g", RG, "shell", "--", "cat"])
        .env("BERTH_CONFIG", &cli.config)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("berth runs");
    {
        use tokio::io::AsyncWriteExt as _;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(b"hi\n").await.expect("write");
    }
    let out = tokio::time::timeout(Duration::from_secs(SLOW), child.wait_with_output())
        .await
        .expect("berth exits")
        .expect("output");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\n", "{out:?}");
    assert_eq!(out.status.code(), Some(0), "{out:?}");

    // The remote exit code becomes the CLI's, stderr stays stderr.
    let out = cli
        .run(&[
            "container",
            "exec",
            "-g",
            RG,
            "shell",
            "--",
            "sh",
            "-c",
            "echo oops >&2; exit 3",
        ])
        .await;
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("oops"),
        "{out:?}"
    );
    assert!(out.stdout.is_empty(), "{out:?}");

    // Logs through the CLI.
    let logs = cli
        .ok(&["container", "logs", "-g", RG, "shell", "--tail", "5"])
        .await;
    assert_eq!(logs, "booted\n");
}
