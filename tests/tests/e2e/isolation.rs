//! Groups isolated on the network, seen from two tenants' real groups on one real node (containerd,
//! runc, CNI and iptables are real processes, see `real.rs`): a group is reached from outside only on
//! its `ipAddress.ports`, and from inside a group the node answers DNS and nothing else, nor does any
//! link-local (metadata) address.

use std::net::{IpAddr, SocketAddr};
use std::process::Command;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::harness::{Api, Cluster, OTHER_SUB, SUB, group_path};
use crate::real::{
    RealNode, RealOptions, SLOW, log_until_done, real_group, state_of, wait_group_in,
};

mod spoofing;

const RG: &str = "rg";
/// What tenant A's web servers serve.
const SECRET: &str = "tenant-a-secret";
/// The port tenant A exposes, and one its container also serves but does not expose.
const EXPOSED: u16 = 8080;
const UNEXPOSED: u16 = 8081;

async fn setup(name: &str) -> (Cluster, Api, Api, RealNode) {
    let cluster = Cluster::start().await;
    let tenant_a = cluster.tenant(&[SUB]).await;
    let tenant_b = cluster.tenant(&[OTHER_SUB]).await;
    let node = RealNode::start(&cluster, name, RealOptions::default()).await;
    (cluster, tenant_a, tenant_b, node)
}

async fn create(api: &Api, sub: &str, name: &str, body: &Value) {
    let (status, _, answer) = api.put_group(sub, RG, name, body).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
}

/// Tenant A's web server: busybox `httpd` on [`EXPOSED`] and [`UNEXPOSED`], both container ports;
/// with `ip`, an `ipAddress` exposing [`EXPOSED`] only, else no `ipAddress` at all.
fn web_group(image: &str, ip: bool) -> Value {
    let script = format!(
        "mkdir -p /www && echo {SECRET} > /www/index.html && httpd -p {UNEXPOSED} -h /www && \
         exec httpd -f -p {EXPOSED} -h /www"
    );
    let mut body = real_group(image, "Always", &[("web", &["sh", "-c", &script])]);
    body["properties"]["containers"][0]["properties"]["ports"] =
        json!([{"port": EXPOSED, "protocol": "TCP"}, {"port": UNEXPOSED, "protocol": "TCP"}]);
    if ip {
        body["properties"]["ipAddress"] =
            json!({"type": "Public", "ports": [{"port": EXPOSED, "protocol": "TCP"}]});
    }
    body
}

/// The address the node's CNI gave group `gid`, from the agent's saved sandbox record (a group
/// without `ipAddress` shows none in the API, as in ACI).
fn sandbox_ip(node: &RealNode, gid: &str) -> IpAddr {
    let path = node
        .state_dir
        .join(format!("runtime/network/sandboxes/{gid}.json"));
    let record: Value = serde_json::from_slice(&std::fs::read(&path).expect("sandbox record"))
        .expect("sandbox record is JSON");
    record["ip"]
        .as_str()
        .and_then(|ip| ip.parse().ok())
        .expect("an IP in the sandbox record")
}

/// The node's bridge address, the groups' gateway: one of the node's own addresses.
fn gateway(node: &RealNode) -> IpAddr {
    let prefix = node.subnet.trim_end_matches("0/24");
    format!("{prefix}1").parse().expect("gateway address")
}

/// The group id (the agent's) that appeared on the node since `before`.
fn new_group_id(node: &RealNode, before: &[String]) -> String {
    let mut new: Vec<String> = node
        .group_ids()
        .into_iter()
        .filter(|id| !before.contains(id))
        .collect();
    assert_eq!(new.len(), 1, "{new:?}");
    new.remove(0)
}

/// `GET /` over HTTP/1.0 from the host (whose own processes Berth does not filter): the body, or
/// `None` if nothing answered within a few seconds.
async fn http_get(addr: SocketAddr) -> Option<String> {
    let get = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
        stream.write_all(b"GET / HTTP/1.0\r\n\r\n").await.ok()?;
        stream.shutdown().await.ok()?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.ok()?;
        Some(answer)
    };
    tokio::time::timeout(Duration::from_secs(5), get)
        .await
        .ok()
        .flatten()
}

/// Waits until `addr` serves [`SECRET`] to the host: proof the server is up before a tenant probes it.
async fn wait_served(addr: SocketAddr) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(SLOW);
    while !http_get(addr)
        .await
        .is_some_and(|body| body.contains(SECRET))
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{addr} never served the page to the host"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A TCP listener that writes `banner` to every connection and closes it once the peer has.
async fn banner_server(addr: SocketAddr, banner: &'static str) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .expect("bind a host listener");
    let local = listener.local_addr().expect("listener address");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = stream.write_all(banner.as_bytes()).await;
                let _ = stream.shutdown().await;
                // Closing with unread data would reset the connection before the banner is read.
                let mut sink = Vec::new();
                let read = stream.read_to_end(&mut sink);
                let _ = tokio::time::timeout(Duration::from_secs(10), read).await;
            });
        }
    });
    local
}

/// A web server in a network namespace of the test's own, routed from the host through a veth pair:
/// on a link-local address, the test's stand-in for a cloud's metadata service at 169.254.169.254,
/// or on another one, the world beyond the node. Killing the server (on drop) destroys the
/// namespace and with it the veth pair and route.
struct OutsideServer {
    addr: IpAddr,
    host_veth: String,
    _server: tokio::process::Child,
    _root: tempfile::TempDir,
}

impl Drop for OutsideServer {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "delete", &self.host_veth])
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// Waits until `unshare` (process `pid`) has left the test's network namespace: until then a veth
/// end moved "into" its namespace would land in ours.
async fn wait_for_own_namespace(pid: &str) {
    let ours = std::fs::read_link("/proc/self/ns/net").expect("our network namespace");
    let theirs = format!("/proc/{pid}/ns/net");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::fs::read_link(&theirs).is_ok_and(|ns| ns == ours) {
        assert!(
            std::time::Instant::now() < deadline,
            "`unshare --net` made no namespace within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn ip(args: &[&str]) {
    let status = Command::new("ip").args(args).status().expect("ip runs");
    assert!(status.success(), "ip {args:?}");
}

impl OutsideServer {
    /// Serves `banner` at `<net>.<n>.2` (`net`: two octets), the host being `<net>.<n>.1`; the
    /// veth pair's names start with `tag` (3 characters).
    async fn start(banner: &str, net: &str, tag: &str) -> Self {
        let root = tempfile::tempdir().expect("temp dir");
        std::fs::write(root.path().join("index.html"), format!("{banner}\n")).expect("index");
        // `unshare` execs httpd in a new network namespace: httpd's pid names that namespace.
        let server = tokio::process::Command::new("unshare")
            .args(["--net", "busybox", "httpd", "-f", "-p", "80", "-h"])
            .arg(root.path())
            .kill_on_drop(true)
            .spawn()
            .expect("unshare runs");
        let pid = server.id().expect("the server's pid").to_string();
        wait_for_own_namespace(&pid).await;
        let n = std::process::id() % 250;
        let host_veth = format!("{tag}{}h", std::process::id() % 100_000);
        let peer = format!("{tag}{}p", std::process::id() % 100_000);
        let (host_ip, addr) = (format!("{net}.{n}.1"), format!("{net}.{n}.2"));
        ip(&[
            "link", "add", &host_veth, "type", "veth", "peer", "name", &peer, "netns", &pid,
        ]);
        let server = OutsideServer {
            addr: addr.parse().expect("an IPv4 address"),
            host_veth,
            _server: server,
            _root: root,
        };
        ip(&[
            "addr",
            "add",
            &format!("{host_ip}/30"),
            "dev",
            &server.host_veth,
        ]);
        ip(&["link", "set", &server.host_veth, "up"]);
        let inside = |args: &[&str]| {
            let status = Command::new("nsenter")
                .args(["-t", &pid, "-n", "ip"])
                .args(args)
                .status()
                .expect("nsenter runs");
            assert!(status.success(), "ip {args:?} in the server's namespace");
        };
        inside(&["addr", "add", &format!("{addr}/30"), "dev", &peer]);
        inside(&["link", "set", &peer, "up"]);
        inside(&["link", "set", "lo", "up"]);
        server
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_tenant_reaches_only_exposed_ports_and_the_node_only_answers_dns() {
    let (_cluster, tenant_a, tenant_b, node) = setup("real-isolation").await;

    // Tenant A: a group without ipAddress, then one exposing one of its two ports.
    create(&tenant_a, SUB, "hidden", &web_group(&node.image, false)).await;
    wait_group_in(&tenant_a, &node, SUB, RG, "hidden", |b| {
        state_of(b, "web") == "Running"
    })
    .await;
    let hidden = sandbox_ip(&node, &new_group_id(&node, &[]));
    let before = node.group_ids();
    create(&tenant_a, SUB, "web", &web_group(&node.image, true)).await;
    let body = wait_group_in(&tenant_a, &node, SUB, RG, "web", |b| {
        state_of(b, "web") == "Running" && b["properties"]["ipAddress"]["ip"].is_string()
    })
    .await;
    let web: IpAddr = body["properties"]["ipAddress"]["ip"]
        .as_str()
        .and_then(|ip| ip.parse().ok())
        .expect("the group's IP");
    assert_eq!(web, sandbox_ip(&node, &new_group_id(&node, &before)));
    // Every server answers the host, so what the other tenant cannot reach is blocked, not down.
    for addr in [(web, EXPOSED), (web, UNEXPOSED), (hidden, EXPOSED)] {
        wait_served(addr.into()).await;
    }

    // The node's own services: one on every address, DNS on the bridge's; a link-local server.
    let gateway = gateway(&node);
    let node_port = banner_server((IpAddr::from([0, 0, 0, 0]), 0).into(), "node-secret\n")
        .await
        .port();
    banner_server((gateway, 53).into(), "dns-tcp\n").await;
    let dns_udp = tokio::net::UdpSocket::bind((gateway, 53))
        .await
        .expect("bind udp 53 on the bridge address");
    let metadata = OutsideServer::start("metadata-secret", "169.254", "bll").await;
    for (addr, banner) in [
        ((gateway, node_port), "node-secret"),
        ((gateway, 53), "dns-tcp"),
        ((metadata.addr, 80), "metadata-secret"),
    ] {
        let answer = http_get(addr.into()).await.unwrap_or_default();
        assert!(
            answer.contains(banner),
            "{addr:?} answers the host: {answer:?}"
        );
    }

    // Tenant B's group probes all of them.
    let probes = [
        (
            "exposed",
            format!("timeout 5 wget -q -O - http://{web}:{EXPOSED}/ | grep -q {SECRET}"),
        ),
        (
            "unexposed",
            format!("timeout 5 wget -q -O - http://{web}:{UNEXPOSED}/ | grep -q {SECRET}"),
        ),
        (
            "no-ip-address",
            format!("timeout 5 wget -q -O - http://{hidden}:{EXPOSED}/ | grep -q {SECRET}"),
        ),
        (
            "node",
            format!("nc -w 3 {gateway} {node_port} </dev/null | grep -q node-secret"),
        ),
        (
            "metadata",
            format!(
                "timeout 5 wget -q -O - http://{}/ | grep -q metadata-secret",
                metadata.addr
            ),
        ),
        (
            "dns-tcp",
            format!("nc -w 3 {gateway} 53 </dev/null | grep -q dns-tcp"),
        ),
    ];
    let mut script = String::new();
    for (name, probe) in &probes {
        script.push_str(&format!(
            "if sh -c '{probe}' >/dev/null 2>&1; then echo {name}=reached; else echo {name}=blocked; fi\n"
        ));
    }
    script.push_str(&format!(
        "timeout 3 nslookup berth-dns-probe {gateway} >/dev/null 2>&1\necho done\nsleep 3600\n"
    ));
    let prober = real_group(&node.image, "Never", &[("prober", &["sh", "-c", &script])]);
    create(&tenant_b, OTHER_SUB, "prober", &prober).await;
    let log = log_until_done(&tenant_b, &node, (OTHER_SUB, RG, "prober"), "prober").await;
    let expected = "exposed=reached\nunexposed=blocked\nno-ip-address=blocked\nnode=blocked\n\
                    metadata=blocked\ndns-tcp=reached\ndone\n";
    assert_eq!(log, expected, "tenant B's view of the network");

    // The DNS query (labels are length-prefixed) reached the node's port 53.
    let mut datagram = [0u8; 512];
    let received = tokio::time::timeout(Duration::from_secs(5), dns_udp.recv(&mut datagram))
        .await
        .expect("the DNS query arrived")
        .expect("recv");
    let query = &datagram[..received];
    assert!(
        query.windows(16).any(|w| w == b"\x0fberth-dns-probe"),
        "{query:?}"
    );
}

/// The filter-table lines of the node's isolation: its own chains and the group chains they jump to.
fn isolation_rules(node: &RealNode) -> Vec<String> {
    let output = Command::new("iptables-save")
        .args(["-t", "filter"])
        .output()
        .expect("iptables-save runs");
    let all = String::from_utf8_lossy(&output.stdout).into_owned();
    let own = [
        format!("BERTH-FWD-{}", node.bridge),
        format!("BERTH-IN-{}", node.bridge),
    ];
    let mut chains: Vec<String> = own.to_vec();
    for line in all.lines() {
        if line.starts_with(&format!("-A {} ", own[0]))
            && let Some((_, target)) = line.rsplit_once(" -j ")
            && target.starts_with("BERTH-G-")
        {
            chains.push(target.to_owned());
        }
    }
    all.lines()
        .filter(|line| {
            line.split(' ')
                .any(|word| chains.iter().any(|c| word == c || *word == format!(":{c}")))
        })
        .map(str::to_owned)
        .collect()
}

/// The group chain the node's forward chain sends `ip`'s traffic to.
fn group_chain(rules: &[String], ip: IpAddr) -> String {
    rules
        .iter()
        .find_map(|line| {
            let rest = line.split_once(&format!(" -d {ip}/32 -j "))?.1;
            Some(rest.to_owned())
        })
        .unwrap_or_else(|| panic!("no jump for {ip} in {rules:#?}"))
}

/// `wget` from inside the network namespace of the task `pid` (tenant B's container).
fn fetch_from(pid: u32, addr: SocketAddr) -> bool {
    let url = format!("http://{addr}/");
    let output = Command::new("nsenter")
        .args(["-t", &pid.to_string(), "-n", "busybox", "timeout", "5"])
        .args(["busybox", "wget", "-q", "-O", "-"])
        .arg(&url)
        .output()
        .expect("nsenter runs");
    output.status.success() && String::from_utf8_lossy(&output.stdout).contains(SECRET)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isolation_survives_an_agent_restart_and_goes_with_the_group() {
    let (cluster, tenant_a, tenant_b, mut node) = setup("real-isolation-restart").await;
    create(&tenant_a, SUB, "web", &web_group(&node.image, true)).await;
    let body = wait_group_in(&tenant_a, &node, SUB, RG, "web", |b| {
        state_of(b, "web") == "Running" && b["properties"]["ipAddress"]["ip"].is_string()
    })
    .await;
    let web: IpAddr = body["properties"]["ipAddress"]["ip"]
        .as_str()
        .and_then(|ip| ip.parse().ok())
        .expect("the group's IP");
    create(
        &tenant_b,
        OTHER_SUB,
        "client",
        &real_group(&node.image, "Always", &[("client", &["sleep", "3600"])]),
    )
    .await;
    wait_group_in(&tenant_b, &node, OTHER_SUB, RG, "client", |b| {
        state_of(b, "client") == "Running"
    })
    .await;
    let client_id = node
        .containers()
        .await
        .into_iter()
        .find(|(_, name)| name == "client")
        .map(|(id, _)| id)
        .expect("tenant B's container");
    let client = node.task_pid(&client_id).await.expect("its task runs");
    for port in [EXPOSED, UNEXPOSED] {
        wait_served((web, port).into()).await;
    }
    let isolated = || {
        (
            fetch_from(client, (web, EXPOSED).into()),
            fetch_from(client, (web, UNEXPOSED).into()),
        )
    };
    assert_eq!(
        isolated(),
        (true, false),
        "exposed reached, unexposed blocked"
    );
    let before = isolation_rules(&node);
    let web_chain = group_chain(&before, web);
    let web_pid = node
        .task_pid(
            &node
                .containers()
                .await
                .into_iter()
                .find(|(_, name)| name == "web")
                .map(|(id, _)| id)
                .expect("tenant A's container"),
        )
        .await
        .expect("its task runs");
    let web_veth = spoofing::fdb_port(&node.bridge, &spoofing::mac_of(web_pid))
        .expect("the web group's bridge port");
    let spoof_before = spoofing::spoofing_rules(&node);
    let web_element = spoof_before
        .iter()
        .find(|rule| rule.starts_with(&format!("{web_veth} -> ")))
        .cloned()
        .unwrap_or_else(|| panic!("no anti-spoofing element for {web_veth}: {spoof_before:#?}"));
    let web_spoof_chain = web_element
        .rsplit(' ')
        .next()
        .expect("the element's chain")
        .to_owned();

    // A crash between two rule changes, then a new agent: the lost jump is back, nothing twice.
    node.kill_agent().await;
    let jump = format!("-d {web}/32 -j {web_chain}");
    let status = Command::new("sh")
        .args([
            "-c",
            &format!("iptables -w -D BERTH-FWD-{} {jump}", node.bridge),
        ])
        .status()
        .expect("iptables runs");
    assert!(status.success());
    let status = Command::new("nft")
        .args([
            "delete",
            "element",
            "bridge",
            &format!("berth-{}", node.bridge),
        ])
        .args(["groups", &format!("{{ \"{web_veth}\" }}")])
        .status()
        .expect("nft runs");
    assert!(status.success());
    assert_eq!(
        isolated(),
        (false, false),
        "without its jump, the group is closed"
    );
    node.start_agent();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(SLOW);
    while !node.agent_log().contains("adopting a group") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the agent never adopted: {}",
            node.agent_log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cluster.wait_node(&node.name, "Ready").await;
    let after = isolation_rules(&node);
    let mut sorted = (before.clone(), after.clone());
    sorted.0.sort();
    sorted.1.sort();
    assert_eq!(sorted.0, sorted.1, "the same rules after the restart");
    let mut unique = sorted.1.clone();
    unique.dedup();
    assert_eq!(unique.len(), after.len(), "no rule twice: {after:#?}");
    assert_eq!(
        spoofing::spoofing_rules(&node),
        spoof_before,
        "the same anti-spoofing table after the restart"
    );
    assert_eq!(
        isolated(),
        (true, false),
        "isolation holds after the restart"
    );

    // Deleting the group removes its chain and every rule naming its address.
    let (status, _) = tenant_a
        .call(Method::DELETE, &group_path(SUB, RG, "web"), None)
        .await;
    assert!(status.is_success(), "{status}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(SLOW);
    while node.group_ids().len() > 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the group is still on the node\n{}",
            node.agent_log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let saved = Command::new("iptables-save")
        .output()
        .expect("iptables-save runs");
    let saved = String::from_utf8_lossy(&saved.stdout).into_owned();
    let leftovers: Vec<&str> = saved
        .lines()
        .filter(|line| line.contains(&web_chain) || line.contains(&format!("{web}/32")))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:#?}");
    let remaining = isolation_rules(&node);
    assert!(
        remaining.len() < before.len() && !remaining.is_empty(),
        "tenant B's rules stay: {remaining:#?}"
    );
    let spoof_remaining = spoofing::spoofing_rules(&node);
    assert!(
        !spoof_remaining
            .iter()
            .any(|rule| rule.contains(&web_veth) || rule.contains(&web_spoof_chain)),
        "{spoof_remaining:#?}"
    );
    let elements = spoof_remaining.iter().filter(|rule| rule.contains(" -> "));
    assert_eq!(
        elements.count(),
        1,
        "tenant B's stays: {spoof_remaining:#?}"
    );
}
