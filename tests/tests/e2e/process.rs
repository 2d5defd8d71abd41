//! Berth's binaries as processes of their own: `berth-apiserver` started (and SIGKILLed) by a test,
//! alone or as one of several replicas on one store.

use std::path::Path;
use std::time::Duration;

use serde_json::json;

use crate::real::{RealNode, RealOptions, SLOW, bin_dir};

/// The `berth-apiserver` binary as a child process, so a test can SIGKILL it mid-flight. Its ports are
/// chosen once, so the process started again binds the same ones and node agents reconnect by
/// themselves; its data dir (CA, operator token, SQLite) outlives the process and goes on drop.
/// Replicas of one cluster ([`crate::pg_replicas::Replicas`]) are several of these on one `--store`.
pub struct ApiserverProcess {
    /// `https://localhost:<port>`.
    pub base: String,
    /// Where node agents dial: `https://127.0.0.1:<port>`.
    pub node_url: String,
    pub ca_pem: String,
    pub operator: String,
    args: Vec<String>,
    child: Option<tokio::process::Child>,
    // Last: removed once the process is gone.
    dir: tempfile::TempDir,
}

impl Drop for ApiserverProcess {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
    }
}

/// Two distinct free loopback TCP ports (held together while chosen, so they differ).
fn free_ports() -> (u16, u16) {
    let a = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let b = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    (
        a.local_addr().expect("addr").port(),
        b.local_addr().expect("addr").port(),
    )
}

impl ApiserverProcess {
    /// Starts `berth-apiserver` (no DNS server) with `extra` flags and waits until it answers.
    pub async fn start(extra: &[&str]) -> Self {
        let mut server = Self::prepare(extra);
        server.spawn().await;
        server
    }

    /// Its data dir and ports, not started yet (files may be put in [`Self::dir`] first; then
    /// [`Self::launch`]).
    pub fn prepare(extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let (https, node) = free_ports();
        let mut args: Vec<String> = [
            "--data-dir",
            &dir.path().to_string_lossy(),
            "--listen",
            &format!("127.0.0.1:{https}"),
            "--node-listen",
            &format!("127.0.0.1:{node}"),
            "--no-dns",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        Self {
            base: format!("https://localhost:{https}"),
            node_url: format!("https://127.0.0.1:{node}"),
            ca_pem: String::new(),
            operator: String::new(),
            args,
            child: None,
            dir,
        }
    }

    /// Starts a prepared process and waits until it answers the operator token: the one it wrote
    /// (`operator.token`, an empty store), else [`Self::operator`] as set by the caller (a replica
    /// of a store that has tokens writes none).
    pub async fn launch(&mut self) {
        assert!(self.child.is_none(), "already running");
        self.spawn().await;
    }

    /// The process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(tokio::process::Child::id)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Kills the process with SIGKILL (no shutdown of any kind) and waits until it is gone.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.start_kill().expect("SIGKILL the apiserver");
            let _ = child.wait().await;
        }
    }

    /// Starts the process again on the same data dir and ports and waits until it answers.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "kill it first");
        self.spawn().await;
    }

    /// The process's log so far (for assertion messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("apiserver.log")).unwrap_or_default()
    }

    async fn spawn(&mut self) {
        let binary = bin_dir().join("berth-apiserver");
        assert!(
            binary.exists(),
            "{} is missing: cargo build --workspace --bins",
            binary.display()
        );
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("apiserver.log"))
            .expect("apiserver log");
        let child = tokio::process::Command::new(binary)
            .args(&self.args)
            .env("RUST_LOG", "info,sqlx=warn,h2=warn")
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("berth-apiserver runs");
        self.child = Some(child);
        // The listeners are bound after the CA and the operator token are written.
        let port = self.base.rsplit(':').next().expect("port").to_owned();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(SLOW);
        while tokio::net::TcpStream::connect(format!("127.0.0.1:{port}"))
            .await
            .is_err()
        {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("the apiserver exited: {status}\n{}", self.log());
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the apiserver never listened\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.ca_pem =
            std::fs::read_to_string(self.dir.path().join("ca.crt")).expect("the cluster CA");
        if let Ok(token) = std::fs::read_to_string(self.dir.path().join("operator.token")) {
            self.operator = token.trim().to_owned();
        }
        assert!(
            !self.operator.is_empty(),
            "no operator.token written and none given\n{}",
            self.log()
        );
        let (status, body) = self
            .operator_api()
            .call(reqwest::Method::GET, "/admin/v1/nodes", None)
            .await;
        assert_eq!(status, reqwest::StatusCode::OK, "{body}");
    }

    pub fn api(&self, token: &str) -> crate::harness::Api {
        crate::harness::Api::new(&self.base, &self.ca_pem, token)
    }

    pub fn operator_api(&self) -> crate::harness::Api {
        self.api(&self.operator)
    }

    /// A tenant token for `subs`.
    pub async fn tenant(&self, subs: &[&str]) -> crate::harness::Api {
        let (status, body) = self
            .operator_api()
            .call(
                reqwest::Method::POST,
                "/admin/v1/tokens",
                Some(json!({"subscriptions": subs})),
            )
            .await;
        assert_eq!(status, reqwest::StatusCode::CREATED, "{body}");
        self.api(body["token"].as_str().expect("token in answer"))
    }

    pub async fn join_token(&self) -> String {
        let (status, body) = self
            .operator_api()
            .call(
                reqwest::Method::POST,
                "/admin/v1/join-tokens",
                Some(json!({"uses": 1})),
            )
            .await;
        assert_eq!(status, reqwest::StatusCode::CREATED, "{body}");
        body["token"].as_str().expect("token").to_owned()
    }

    /// Starts a [`RealNode`] joined to this apiserver and waits until it is Ready.
    pub async fn real_node(&self, name: &str, options: RealOptions) -> RealNode {
        let token = self.join_token().await;
        let node = RealNode::join(&self.node_url, &token, name, options).await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(SLOW);
        loop {
            let (_, body) = self
                .operator_api()
                .call(reqwest::Method::GET, "/admin/v1/nodes", None)
                .await;
            let ready = body["value"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|n| n["name"] == name && n["status"] == "Ready");
            if ready {
                return node;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "node {name} never became Ready: {body}\n--- agent log ---\n{}",
                node.agent_log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
