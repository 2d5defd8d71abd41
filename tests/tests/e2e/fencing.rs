//! Fencing, the node's half, on a real node: an agent cut off from every apiserver (its machine still
//! up) stops its groups after `--fence-after`, before the control plane counts the node lost; once it
//! reaches the apiserver again, the full desired state brings the group back on the same node.
//!
//! The agent reaches the apiserver's node port only through a TCP proxy the test owns, so the test can
//! cut the partition in (live connections dropped, new ones closed at once) and heal it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{AbortHandle, JoinHandle};
use tokio::time::Instant;

use crate::harness::{Cluster, SUB, running};
use crate::real::{RealNode, RealOptions, SLOW, real_group, view};

const RG: &str = "rg";
/// The agent's `--fence-after`, in seconds.
const FENCE_AFTER: u64 = 3;
/// The cluster's heartbeat interval (each heartbeat is answered).
const HEARTBEAT: Duration = Duration::from_millis(500);

/// A TCP proxy to one upstream address that can be cut and healed.
struct Proxy {
    addr: SocketAddr,
    state: Arc<ProxyState>,
    accept: JoinHandle<()>,
}

#[derive(Default)]
struct ProxyState {
    cut: AtomicBool,
    live: Mutex<Vec<AbortHandle>>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("proxy binds");
        let addr = listener.local_addr().expect("proxy address");
        let state = Arc::new(ProxyState::default());
        let accept = tokio::spawn({
            let state = Arc::clone(&state);
            async move {
                while let Ok((mut inbound, _)) = listener.accept().await {
                    if state.cut.load(Ordering::SeqCst) {
                        // Closed at once: the agent's dial or TLS handshake fails.
                        drop(inbound);
                        continue;
                    }
                    let forward = tokio::spawn(async move {
                        if let Ok(mut outbound) = TcpStream::connect(upstream).await {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
                    let mut live = state.live.lock().unwrap_or_else(PoisonError::into_inner);
                    live.retain(|task| !task.is_finished());
                    live.push(forward.abort_handle());
                }
            }
        });
        Self {
            addr,
            state,
            accept,
        }
    }

    fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// The partition: every live connection dropped, new ones closed as they come.
    fn cut(&self) {
        self.state.cut.store(true, Ordering::SeqCst);
        let live = std::mem::take(
            &mut *self
                .state
                .live
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        for task in live {
            task.abort();
        }
    }

    fn heal(&self) {
        self.state.cut.store(false, Ordering::SeqCst);
    }
}

/// Ids of the node's containers with a running task.
async fn running_tasks(node: &RealNode) -> Vec<String> {
    let mut out = Vec::new();
    for (id, _) in node.containers().await {
        if node.task_running(&id).await {
            out.push(id);
        }
    }
    out
}

fn start_time(body: &Value) -> String {
    view(body, "app")["currentState"]["startTime"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn has_fenced_event(body: &Value) -> bool {
    body["properties"]["instanceView"]["events"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|e| e["name"] == "Fenced" && e["type"] == "Warning")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_node_stops_its_groups_and_runs_them_again_once_healed() {
    let cluster = Cluster::start_with(|config| {
        config.heartbeat_interval_ms = HEARTBEAT.as_millis() as u32;
        // Well past the agent's 3 s fence: the node is cut off, not lost, while the test looks.
        config.node_timeout_secs = 15;
        config.node_lost_after_secs = 60;
    })
    .await;
    let api = cluster.tenant(&[SUB]).await;
    let node_port: SocketAddr = cluster
        .node_url()
        .trim_start_matches("https://")
        .parse()
        .expect("node address");
    let proxy = Proxy::start(node_port).await;
    let token = cluster.join_token(1).await;
    let options = RealOptions {
        agent_env: vec![("BERTH_FENCE_AFTER".into(), FENCE_AFTER.to_string())],
        ..RealOptions::default()
    };
    let node = RealNode::join(&proxy.url(), &token, "fenced", options).await;
    cluster.wait_node("fenced", "Ready").await;

    let body = real_group(&node.image, "Always", &[("app", &["sleep", "3600"])]);
    let (status, _, answer) = api.put_group(SUB, RG, "web", &body).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    let before = crate::real::wait_group(&api, &node, RG, "web", running).await;
    let tasks = running_tasks(&node).await;
    assert_eq!(tasks.len(), 1, "one task runs: {tasks:?}");

    // The partition. Nothing happens before --fence-after: the group keeps running.
    proxy.cut();
    let cut = Instant::now();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        running_tasks(&node).await,
        tasks,
        "stopped before --fence-after\n--- agent log ---\n{}",
        node.agent_log()
    );
    // After it, no task of the group runs in the node's containerd.
    let deadline = cut + Duration::from_secs(SLOW);
    while !running_tasks(&node).await.is_empty() {
        assert!(
            Instant::now() < deadline,
            "the node never fenced itself\n--- agent log ---\n{}",
            node.agent_log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The last answer heard came at most one heartbeat before the cut.
    assert!(
        cut.elapsed() >= Duration::from_secs(FENCE_AFTER) - HEARTBEAT,
        "fenced after {:?}",
        cut.elapsed()
    );
    // The node fenced itself before the control plane gave up on it.
    let info = cluster.node_info("fenced").await;
    assert_ne!(info["status"], "Lost", "{info}");
    assert!(node.agent_log().contains("fencing"), "{}", node.agent_log());

    // Healed: the agent reconnects, says the run was fenced, and the group runs again on the node.
    proxy.heal();
    let again = crate::real::wait_group(&api, &node, RG, "web", |b| {
        running(b) && has_fenced_event(b) && start_time(b) != start_time(&before)
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(SLOW);
    loop {
        let now_running = running_tasks(&node).await;
        if now_running.len() == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the group never ran again on the node: {now_running:?}\n{again}\n--- agent log ---\n{}",
            node.agent_log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(cluster.node_info("fenced").await["status"], "Ready");
    drop(node);
}
