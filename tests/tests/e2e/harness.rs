//! Starting clusters for tests and talking to them as a client would.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use berth_apiserver::Config;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

pub const SUB: &str = "00000000-0000-0000-0000-00000000000a";
pub const OTHER_SUB: &str = "00000000-0000-0000-0000-00000000000b";

/// A running apiserver in its own temp dir.
pub struct Cluster {
    running: Option<berth_apiserver::Running>,
    dir: Option<tempfile::TempDir>,
    pub config: Config,
    pub operator: String,
    pub base: String,
    pub ca_pem: String,
    pub ca_hash: String,
    pub node_addr: std::net::SocketAddr,
    /// The embedded DNS server's UDP and TCP addresses.
    pub dns_addrs: Option<(std::net::SocketAddr, std::net::SocketAddr)>,
    shutdown: CancellationToken,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub fn loopback_config(dir: &std::path::Path) -> Config {
    let mut config = Config::with_data_dir(dir);
    config.listen = "127.0.0.1:0".parse().expect("literal address");
    config.node_listen = "127.0.0.1:0".parse().expect("literal address");
    config.dns_listen = Some("127.0.0.1:0".parse().expect("literal address"));
    config
}

impl Cluster {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = loopback_config(dir.path());
        tweak(&mut config);
        Self::start_in(dir, config).await
    }

    pub async fn start_in(dir: tempfile::TempDir, config: Config) -> Self {
        let shutdown = CancellationToken::new();
        let running = berth_apiserver::start(config.clone(), shutdown.clone())
            .await
            .expect("apiserver starts");
        let operator = match &running.initial_operator_token {
            Some(t) => t.clone(),
            None => std::fs::read_to_string(dir.path().join("operator.token"))
                .expect("operator token file"),
        };
        Self {
            base: format!("https://localhost:{}", running.https_addr.port()),
            ca_pem: running.ca_pem.clone(),
            ca_hash: running.ca_hash.clone(),
            node_addr: running.node_addr,
            dns_addrs: running.dns_addrs,
            operator,
            running: Some(running),
            dir: Some(dir),
            config,
            shutdown,
        }
    }

    /// A second apiserver on this one's data dir (the same SQLite file, CA and keys), as another
    /// replica of the control plane would be: its own ports, caches and tasks. No DNS server.
    pub async fn replica(&self) -> Cluster {
        self.replica_with(|_| {}).await
    }

    /// [`replica`](Self::replica) with its config changed by `tweak`.
    pub async fn replica_with(&self, tweak: impl FnOnce(&mut Config)) -> Cluster {
        let mut config = loopback_config(self.dir());
        config.dns_listen = None;
        tweak(&mut config);
        let shutdown = CancellationToken::new();
        let running = berth_apiserver::start(config.clone(), shutdown.clone())
            .await
            .expect("replica starts");
        Self {
            base: format!("https://localhost:{}", running.https_addr.port()),
            ca_pem: running.ca_pem.clone(),
            ca_hash: running.ca_hash.clone(),
            node_addr: running.node_addr,
            dns_addrs: None,
            operator: self.operator.clone(),
            running: Some(running),
            dir: None,
            config,
            shutdown,
        }
    }

    /// Stops the apiserver (waiting for it) and starts it again on the same data dir and ports.
    pub async fn restart(self) -> Self {
        self.stop().await.start().await
    }

    /// Stops the apiserver (waiting for it); [`Stopped::start`] starts it again on the same data dir
    /// and ports.
    pub async fn stop(mut self) -> Stopped {
        self.shutdown.cancel();
        if let Some(running) = self.running.take() {
            running.wait().await;
        }
        let dir = self.dir.take().expect("dir kept until drop");
        let mut config = self.config.clone();
        config.listen = format!("127.0.0.1:{}", self.base.rsplit(':').next().expect("port"))
            .parse()
            .expect("addr");
        config.node_listen = self.node_addr;
        if let Some((udp, _)) = self.dns_addrs {
            config.dns_listen = Some(udp);
        }
        Stopped { dir, config }
    }

    pub fn state(&self) -> &berth_apiserver::AppState {
        &self.running.as_ref().expect("running").state
    }

    /// Where `--metrics-listen` serves `/metrics` over plain HTTP, if it was asked to.
    pub fn metrics_addr(&self) -> Option<std::net::SocketAddr> {
        self.running.as_ref().and_then(|r| r.metrics_addr)
    }

    pub fn dir(&self) -> &std::path::Path {
        self.dir.as_ref().expect("dir kept until drop").path()
    }

    pub fn api(&self, token: &str) -> Api {
        Api::new(&self.base, &self.ca_pem, token)
    }

    pub fn operator_api(&self) -> Api {
        self.api(&self.operator)
    }

    /// A tenant token for `subs`.
    pub async fn tenant(&self, subs: &[&str]) -> Api {
        let (status, body) = self
            .operator_api()
            .call(
                Method::POST,
                "/admin/v1/tokens",
                Some(json!({"subscriptions": subs})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        self.api(body["token"].as_str().expect("token in answer"))
    }

    pub async fn join_token(&self, uses: u32) -> String {
        let (status, body) = self
            .operator_api()
            .call(
                Method::POST,
                "/admin/v1/join-tokens",
                Some(json!({"uses": uses})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["token"].as_str().expect("token").to_owned()
    }

    pub fn node_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.node_addr.port())
    }
}

/// An apiserver stopped by [`Cluster::stop`]: its data dir and the config to start it again with.
pub struct Stopped {
    dir: tempfile::TempDir,
    config: Config,
}

impl Stopped {
    pub async fn start(self) -> Cluster {
        Cluster::start_in(self.dir, self.config).await
    }
}

/// A REST client as a user holds it: endpoint, CA, token.
#[derive(Clone)]
pub struct Api {
    client: reqwest::Client,
    base: String,
    token: String,
}

impl Api {
    pub fn token(&self) -> &str {
        &self.token
    }

    pub fn new(base: &str, ca_pem: &str, token: &str) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(
                reqwest::Certificate::from_pem(ca_pem.as_bytes()).expect("CA PEM"),
            )
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client");
        Self {
            client,
            base: base.to_owned(),
            token: token.to_owned(),
        }
    }

    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        self.try_raw(method, path, body)
            .await
            .expect("request reaches the server")
    }

    /// [`Api::raw`] that says when no answer came (the server is down, the connection broke).
    pub async fn try_raw(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(StatusCode, reqwest::header::HeaderMap, Value), reqwest::Error> {
        let url = if path.starts_with("https://") {
            path.to_owned()
        } else {
            format!("{}{path}", self.base)
        };
        let mut req = self.client.request(method, url).bearer_auth(&self.token);
        if let Some(body) = body {
            req = req.header("content-type", "application/json").body(body);
        }
        let resp = req.send().await?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await?;
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        Ok((status, headers, value))
    }

    /// A GET whose body is text (CSV, JSON lines), returned as is.
    pub async fn text(&self, path: &str) -> (StatusCode, reqwest::header::HeaderMap, String) {
        let resp = self
            .client
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("request reaches the server");
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.expect("a whole body");
        (status, headers, text)
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let (status, _, value) = self
            .raw(
                method,
                path,
                body.map(|b| serde_json::to_vec(&b).expect("json")),
            )
            .await;
        (status, value)
    }

    pub async fn put_group(
        &self,
        sub: &str,
        rg: &str,
        name: &str,
        body: &Value,
    ) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        self.raw(
            Method::PUT,
            &group_path(sub, rg, name),
            Some(serde_json::to_vec(body).expect("json")),
        )
        .await
    }

    pub async fn get_group(&self, sub: &str, rg: &str, name: &str) -> (StatusCode, Value) {
        self.call(Method::GET, &group_path(sub, rg, name), None)
            .await
    }

    /// Polls GET until `check` holds (or panics after `secs`).
    pub async fn wait_group(
        &self,
        sub: &str,
        rg: &str,
        name: &str,
        secs: u64,
        check: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let (status, body) = self.get_group(sub, rg, name).await;
            if status == StatusCode::OK && check(&body) {
                return body;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "group {name} never reached the expected state: {body}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

pub fn group_path(sub: &str, rg: &str, name: &str) -> String {
    format!(
        "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.ContainerInstance/containerGroups/{name}?api-version=2023-05-01"
    )
}

/// A valid one-container Linux group with a public port.
pub fn group_body() -> Value {
    json!({
        "location": "local",
        "properties": {
            "osType": "Linux",
            "containers": [{
                "name": "web",
                "properties": {
                    "image": "registry.local/busybox:1",
                    "ports": [{"port": 80}],
                    "resources": {"requests": {"cpu": 1.0, "memoryInGB": 1.5}}
                }
            }],
            "ipAddress": {"type": "Public", "ports": [{"port": 80, "protocol": "TCP"}]}
        }
    })
}

/// One apiserver shared by the tests that need no nodes (validation): started once, on its own
/// runtime in its own thread, alive until the test binary exits.
pub struct Shared {
    pub base: String,
    pub ca_pem: String,
    pub operator: String,
    pub tenant: String,
}

pub static SHARED: LazyLock<Arc<Shared>> = LazyLock::new(|| {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let cluster = Cluster::start().await;
            let tenant = cluster.tenant(&[SUB]).await;
            tx.send(Arc::new(Shared {
                base: cluster.base.clone(),
                ca_pem: cluster.ca_pem.clone(),
                operator: cluster.operator.clone(),
                tenant: tenant.token().to_owned(),
            }))
            .expect("test thread waits");
            std::future::pending::<()>().await;
            drop(cluster);
        });
    });
    rx.recv().expect("shared cluster starts")
});

impl Shared {
    pub fn tenant_api() -> Api {
        let s = SHARED.clone();
        Api::new(&s.base, &s.ca_pem, &s.tenant)
    }

    pub fn operator_api() -> Api {
        let s = SHARED.clone();
        Api::new(&s.base, &s.ca_pem, &s.operator)
    }
}

/// A hollow node agent running in-process, stopped when dropped.
pub struct Node {
    pub name: String,
    pub state_dir: std::path::PathBuf,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Drop for Node {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Node {
    /// Stops the agent (its hollow containers vanish with it) and waits for it.
    pub async fn stop(mut self) -> std::path::PathBuf {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        self.state_dir.clone()
    }
}

impl Cluster {
    /// Joins a hollow Linux node with `cpu` cores and `memory_gb` GB and waits until it is Ready.
    pub async fn add_node(&self, name: &str, cpu: f64, memory_gb: f64) -> Node {
        let state_dir = self.dir().join(format!("agent-{name}"));
        self.start_node(
            name,
            state_dir,
            cpu,
            memory_gb,
            Some(self.join_token(1).await),
        )
        .await
    }

    pub async fn start_node(
        &self,
        name: &str,
        state_dir: std::path::PathBuf,
        cpu: f64,
        memory_gb: f64,
        join_token: Option<String>,
    ) -> Node {
        let mut config = berth_node_agent::AgentConfig::new(self.node_url(), &state_dir, name);
        config.join_token = join_token;
        config.capacity = berth_proto::node::Resources {
            cpu_millis: (cpu * 1000.0) as u64,
            memory_mib: (memory_gb * 1024.0) as u64,
            gpu: 0,
            gpu_sku: String::new(),
        };
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(berth_node_agent::run(config, shutdown.clone()));
        let node = Node {
            name: name.to_owned(),
            state_dir,
            shutdown,
            task: Some(task),
        };
        self.wait_node(name, "Ready").await;
        node
    }

    /// Polls the node list until `name` has `status`.
    pub async fn wait_node(&self, name: &str, status: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let (_, body) = self
                .operator_api()
                .call(Method::GET, "/admin/v1/nodes", None)
                .await;
            let found = body["value"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|n| n["name"] == name);
            if found.is_some_and(|n| n["status"] == status) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "node {name} never became {status}: {body}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn node_info(&self, name: &str) -> Value {
        let (_, body) = self
            .operator_api()
            .call(Method::GET, "/admin/v1/nodes", None)
            .await;
        body["value"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|n| n["name"] == name)
            .cloned()
            .unwrap_or(Value::Null)
    }
}

pub fn running(body: &Value) -> bool {
    body["properties"]["instanceView"]["state"] == "Running"
        && body["properties"]["provisioningState"] == "Succeeded"
}

impl Api {
    /// Follows an Azure-AsyncOperation URL until it is terminal; returns the last status body.
    pub async fn wait_operation(&self, url: &str, secs: u64) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let (status, body) = self.call(Method::GET, url, None).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            if matches!(
                body["status"].as_str(),
                Some("Succeeded" | "Failed" | "Canceled")
            ) {
                return body;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "operation never finished: {body}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
