//! The runners against a real container (containerd, runc, CNI: see `containerd/tests.rs`): a
//! busybox `httpd` serving one file, probed by `exec` in the container and by `httpGet` from inside
//! its network namespace.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use berth_proto::node::HttpGet;

use super::state::Outcome;
use super::{exec, http};
use crate::runtime::containerd::group::container_id;
use crate::runtime::containerd::tests::TestNode;

/// Starts group `name` serving `/www/index.html` ("ok") on port 8080 and returns its container id,
/// its task's network namespace and its IP.
async fn serving(node: &TestNode, name: &str) -> (String, PathBuf, String) {
    let spec = node.group(
        name,
        &[
            "sh",
            "-c",
            "mkdir -p /www && echo ok > /www/index.html && exec httpd -f -p 8080 -h /www",
        ],
    );
    let status = node.run(spec, 1).await;
    let id = container_id(name, false, 0);
    let pid = node.runtime.inner.cd.task(&id).await.unwrap().unwrap().pid;
    (id, PathBuf::from(format!("/proc/{pid}/ns/net")), status.ip)
}

fn get(path: &str, port: u16) -> HttpGet {
    HttpGet {
        path: path.into(),
        port: u32::from(port),
        scheme: "http".into(),
        headers: HashMap::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_and_http_probes_judge_a_real_container() {
    let node = TestNode::start(|_| {}).await;
    let (id, netns, ip) = serving(&node, "probed").await;
    let inner = &node.runtime.inner;
    let root = inner.exec_root();
    let second = Duration::from_secs(20);
    let run = |command: &[&str]| {
        let command: Vec<String> = command.iter().map(|s| (*s).to_string()).collect();
        let (id, root) = (id.clone(), root.clone());
        async move { exec::run(&inner.cd, &root, &id, &command, second).await }
    };

    // exec: the container's own filesystem; exit 0 passes; output (both streams) comes back.
    let passed = run(&["cat", "/www/index.html"]).await;
    assert_eq!(passed, Outcome::Pass("ok".into()));
    let Outcome::Fail(why) = run(&["sh", "-c", "echo out; echo err >&2; exit 3"]).await else {
        panic!("exit 3 passed");
    };
    assert!(why.contains("out") && why.contains("err"), "{why}");
    let Outcome::Fail(why) = run(&["cat", "/tmp/healthy"]).await else {
        panic!("a missing file passed");
    };
    assert!(why.contains("/tmp/healthy"), "{why}");
    let Outcome::Fail(why) = run(&["/no/such/binary"]).await else {
        panic!("a missing binary passed");
    };
    assert!(!why.is_empty());
    // Bounded output.
    let Outcome::Pass(big) = run(&["sh", "-c", "yes | head -c 100000"]).await else {
        panic!("yes failed");
    };
    assert!(big.len() < exec::MAX_OUTPUT + 100, "{} bytes", big.len());
    // Timeout: fails in time, and the process is killed.
    let started = std::time::Instant::now();
    let Outcome::Fail(why) = exec::run(
        &inner.cd,
        &root,
        &id,
        &["sleep".into(), "77".into()],
        Duration::from_secs(1),
    )
    .await
    else {
        panic!("a sleep outlived its timeout and passed");
    };
    assert!(
        why.contains("timed out") && started.elapsed() < Duration::from_secs(10),
        "{why}"
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let Outcome::Pass(ps) = run(&["ps"]).await else {
            panic!("ps failed");
        };
        if !ps.contains("sleep 77") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the probe's sleep lives on: {ps}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // httpGet from inside the namespace: loopback there is the container's, not the node's.
    let tls = http::insecure_tls().unwrap();
    let probe = |ip: Option<&str>, get: HttpGet| {
        let request = http::Request::new(&netns, ip.map(|ip| ip.parse().unwrap()), &get);
        let tls = tls.clone();
        async move { http::run(&request, &tls, second).await }
    };
    let on_loopback = probe(None, get("/index.html", 8080)).await;
    assert!(matches!(on_loopback, Outcome::Pass(_)), "{on_loopback:?}");
    let on_ip = probe(Some(&ip), get("/", 8080)).await;
    assert!(matches!(on_ip, Outcome::Pass(_)), "{on_ip:?}");
    let Outcome::Fail(why) = probe(Some(&ip), get("/missing.html", 8080)).await else {
        panic!("a 404 passed");
    };
    assert!(why.contains("404"), "{why}");
    let Outcome::Fail(why) = probe(None, get("/", 8081)).await else {
        panic!("a closed port passed");
    };
    assert!(why.contains("refused"), "{why}");
    // httpd speaks no TLS: an https probe fails in the handshake, within its timeout.
    let mut https = get("/", 8080);
    https.scheme = "https".into();
    let outcome = probe(None, https).await;
    assert!(
        matches!(outcome, Outcome::Fail(ref why) if why.starts_with("GET https://")),
        "{outcome:?}"
    );
}
