//! No group takes another's addresses on the node's bridge: a tenant's container keeps CAP_NET_RAW
//! (its `ping` works) and writes whatever frames it likes onto its `eth0`, yet gratuitous ARP for
//! another group's address or the gateway's, frames from another group's MAC and packets from
//! another group's IP never reach the node or another group.

use std::net::IpAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;

use super::{
    EXPOSED, OutsideServer, RG, SECRET, UNEXPOSED, create, fetch_from, gateway, setup, wait_served,
    web_group,
};
use crate::harness::{Api, OTHER_SUB, SUB, group_path};
use crate::real::{RealNode, SLOW, real_group, state_of, wait_group_in};

const BROADCAST: &str = "ff:ff:ff:ff:ff:ff";
const NO_MAC: &str = "00:00:00:00:00:00";

/// Runs `cmd args` in the network namespace of task `pid` (as root: the node's view of a group).
fn in_netns(pid: u32, cmd: &str, args: &[&str]) -> String {
    let output = Command::new("nsenter")
        .args(["-t", &pid.to_string(), "-n", cmd])
        .args(args)
        .output()
        .expect("nsenter runs");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The word after `key` in `text`.
fn word_after(text: &str, key: &str) -> Option<String> {
    text.split_whitespace()
        .skip_while(|word| *word != key)
        .nth(1)
        .map(str::to_owned)
}

/// The MAC of `eth0` in the network namespace of task `pid`.
pub(super) fn mac_of(pid: u32) -> String {
    let link = in_netns(pid, "ip", &["-o", "link", "show", "eth0"]);
    word_after(&link, "link/ether").unwrap_or_else(|| panic!("no MAC in {link:?}"))
}

/// The link-local IPv6 address of `eth0` in the network namespace of task `pid`.
fn link_local_of(pid: u32) -> String {
    let addr = in_netns(
        pid,
        "ip",
        &["-6", "-o", "addr", "show", "dev", "eth0", "scope", "link"],
    );
    word_after(&addr, "inet6")
        .and_then(|cidr| cidr.split('/').next().map(str::to_owned))
        .unwrap_or_else(|| panic!("no link-local address in {addr:?}"))
}

/// The link-layer address the neighbour table in task `pid`'s namespace (or the node's, on
/// `bridge`) has for `ip`.
fn neighbour(pid: Option<u32>, bridge: &str, ip: IpAddr) -> Option<String> {
    let ip = ip.to_string();
    let table = match pid {
        Some(pid) => in_netns(pid, "ip", &["neigh", "show", &ip]),
        None => {
            let output = Command::new("ip")
                .args(["neigh", "show", "dev", bridge, &ip])
                .output()
                .expect("ip runs");
            String::from_utf8_lossy(&output.stdout).into_owned()
        }
    };
    word_after(&table, "lladdr")
}

/// The bridge port the node's bridge sends frames for `mac` to.
pub(super) fn fdb_port(bridge: &str, mac: &str) -> Option<String> {
    let output = Command::new("bridge")
        .args(["fdb", "show", "br", bridge])
        .output()
        .expect("bridge runs");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find(|line| line.starts_with(&format!("{mac} dev ")))
        .and_then(|line| line.split_whitespace().nth(2))
        .map(str::to_owned)
}

/// Writes raw frames (`scripts/lib/send-frames.pl`) onto `eth0` in the network namespace of task
/// `pid` with no capability but CAP_NET_RAW, which the container itself has: what its tenant may do
/// with any program of its image.
fn send_frames(pid: u32, args: &[&str]) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/lib/send-frames.pl");
    let output = Command::new("nsenter")
        .args(["-t", &pid.to_string(), "-n"])
        .args(["setpriv", "--bounding-set", "-all,+net_raw", "perl"])
        .arg(script)
        .arg("eth0")
        .args(args)
        .output()
        .expect("nsenter runs");
    assert!(
        output.status.success(),
        "send-frames {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `GET /` on `[<link-local>%eth0]:port` from the network namespace of task `pid`.
fn fetch_link_local(pid: u32, link_local: &str, port: u16) -> bool {
    let url = format!("http://[{link_local}%eth0]:{port}/");
    let output = Command::new("nsenter")
        .args(["-t", &pid.to_string(), "-n", "busybox", "timeout", "5"])
        .args(["busybox", "wget", "-q", "-O", "-", &url])
        .output()
        .expect("nsenter runs");
    output.status.success() && String::from_utf8_lossy(&output.stdout).contains(SECRET)
}

/// The log of tenant B's container `container` in group `name`, through the API.
async fn log_of(api: &Api, name: &str, container: &str) -> String {
    let path = group_path(OTHER_SUB, RG, name).replace(
        "?api-version",
        &format!("/containers/{container}/logs?api-version"),
    );
    let (status, body) = api.call(Method::GET, &path, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["content"].as_str().unwrap_or_default().to_owned()
}

/// The task pid of the container named `name` (names are unique in these tests).
async fn pid_of(node: &RealNode, name: &str) -> u32 {
    let id = node
        .containers()
        .await
        .into_iter()
        .find(|(_, container)| container == name)
        .map(|(id, _)| id)
        .unwrap_or_else(|| panic!("no container {name}"));
    node.task_pid(&id).await.expect("its task runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_cannot_take_another_groups_or_the_gateways_address() {
    let (_cluster, tenant_a, tenant_b, node) = setup("real-spoofing").await;
    let world = OutsideServer::start("world", "198.18", "bwo").await;

    // Tenant A: a web group and a client of it; tenant B: a group that pings the world each second.
    create(&tenant_a, SUB, "web", &web_group(&node.image, true)).await;
    let pinger = format!(
        "while :; do if ping -c1 -W1 {} >/dev/null 2>&1; then echo world=reached; \
         else echo world=unreached; fi; sleep 1; done",
        world.addr
    );
    create(
        &tenant_b,
        OTHER_SUB,
        "attacker",
        &real_group(
            &node.image,
            "Always",
            &[("attacker", &["sh", "-c", &pinger])],
        ),
    )
    .await;
    create(
        &tenant_a,
        SUB,
        "client",
        &real_group(&node.image, "Always", &[("client", &["sleep", "3600"])]),
    )
    .await;
    let body = wait_group_in(&tenant_a, &node, SUB, RG, "web", |b| {
        state_of(b, "web") == "Running" && b["properties"]["ipAddress"]["ip"].is_string()
    })
    .await;
    let web: IpAddr = body["properties"]["ipAddress"]["ip"]
        .as_str()
        .and_then(|ip| ip.parse().ok())
        .expect("the group's IP");
    wait_group_in(&tenant_a, &node, SUB, RG, "client", |b| {
        state_of(b, "client") == "Running"
    })
    .await;
    wait_group_in(&tenant_b, &node, OTHER_SUB, RG, "attacker", |b| {
        state_of(b, "attacker") == "Running"
    })
    .await;
    let (web_pid, client_pid, attacker_pid) = (
        pid_of(&node, "web").await,
        pid_of(&node, "client").await,
        pid_of(&node, "attacker").await,
    );
    let (web_mac, client_mac, attacker_mac) =
        (mac_of(web_pid), mac_of(client_pid), mac_of(attacker_pid));
    let attacker_ip: IpAddr = in_netns(attacker_pid, "ip", &["-4", "-o", "addr", "show", "eth0"])
        .split_whitespace()
        .skip_while(|word| *word != "inet")
        .nth(1)
        .and_then(|cidr| cidr.split('/').next()?.parse().ok())
        .expect("the attacker's address");
    let gateway = gateway(&node);
    let gateway_mac = std::fs::read_to_string(format!("/sys/class/net/{}/address", node.bridge))
        .expect("the bridge's MAC")
        .trim()
        .to_owned();

    // Everyone knows everyone as they are: the node and the client talk to the web group (which
    // answers the node through the gateway).
    wait_served((web, EXPOSED).into()).await;
    wait_served((web, UNEXPOSED).into()).await;
    assert!(fetch_from(client_pid, (web, EXPOSED).into()));
    let web_port = fdb_port(&node.bridge, &web_mac).expect("the bridge knows the web group");
    assert_eq!(neighbour(None, &node.bridge, web), Some(web_mac.clone()));
    assert_eq!(
        neighbour(Some(web_pid), &node.bridge, gateway),
        Some(gateway_mac.clone())
    );
    assert_eq!(
        neighbour(Some(client_pid), &node.bridge, web),
        Some(web_mac.clone())
    );
    let web_link_local = link_local_of(web_pid);
    // The kernel lets an ARP change a neighbour entry a second after its last change.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // What everyone sees after each attack, asserted at the end so that a failure shows every hole.
    let mut seen: Vec<(&str, Option<String>, Option<String>)> = Vec::new();

    // ARP, each frame five times: "the web group's address is at my MAC", gratuitously to everyone
    // and as replies to the node and to the client; "the gateway is at my MAC", to everyone and to
    // the web group.
    let client_ip = word_after(
        &in_netns(client_pid, "ip", &["-4", "-o", "addr", "show", "eth0"]),
        "inet",
    )
    .and_then(|cidr| cidr.split('/').next().map(str::to_owned))
    .expect("the client's address");
    let (web_ip, gateway_ip) = (web.to_string(), gateway.to_string());
    let a = attacker_mac.as_str();
    let arp = |dst: &str, op: &str, spa: &str, tha: &str, tpa: &str| {
        send_frames(attacker_pid, &["5", dst, a, "arp", op, a, spa, tha, tpa]);
    };
    arp(BROADCAST, "1", &web_ip, NO_MAC, &web_ip);
    arp(&gateway_mac, "2", &web_ip, &gateway_mac, &gateway_ip);
    arp(&client_mac, "2", &web_ip, &client_mac, &client_ip);
    arp(BROADCAST, "1", &gateway_ip, NO_MAC, &gateway_ip);
    arp(&web_mac, "2", &gateway_ip, &web_mac, &web_ip);
    seen.push((
        "the node's neighbour entry for the web group",
        neighbour(None, &node.bridge, web),
        Some(web_mac.clone()),
    ));
    seen.push((
        "the client's neighbour entry for the web group",
        neighbour(Some(client_pid), &node.bridge, web),
        Some(web_mac.clone()),
    ));
    seen.push((
        "the web group's neighbour entry for the gateway",
        neighbour(Some(web_pid), &node.bridge, gateway),
        Some(gateway_mac.clone()),
    ));

    // A frame from the web group's MAC: the bridge would send the web group's frames to the
    // attacker's port.
    send_frames(
        attacker_pid,
        &[
            "1",
            &gateway_mac,
            &web_mac,
            "udp",
            &web_ip,
            &gateway_ip,
            "9",
            "x",
        ],
    );
    seen.push((
        "the bridge port of the web group's MAC",
        fdb_port(&node.bridge, &web_mac),
        Some(web_port),
    ));

    // DNS queries from the web group's address, then from the attacker's own.
    let dns = tokio::net::UdpSocket::bind((gateway, 53))
        .await
        .expect("bind udp 53 on the bridge address");
    let udp = |source: &str, payload: &str| {
        send_frames(
            attacker_pid,
            &[
                "3",
                &gateway_mac,
                a,
                "udp",
                source,
                &gateway_ip,
                "53",
                payload,
            ],
        );
    };
    udp(&web_ip, "forged-source");
    udp(&attacker_ip.to_string(), "own-source");
    let mut received = Vec::new();
    let mut datagram = [0u8; 512];
    while let Ok(Ok((n, from))) =
        tokio::time::timeout(Duration::from_secs(2), dns.recv_from(&mut datagram)).await
    {
        received.push(format!(
            "{} from {}",
            String::from_utf8_lossy(&datagram[..n]),
            from.ip()
        ));
    }
    received.dedup();
    seen.push((
        "the DNS queries the node received from the attacker",
        Some(received.join(", ")),
        Some(format!("own-source from {attacker_ip}")),
    ));

    // Link-local IPv6, which the isolation rules (IPv4 here) do not see.
    seen.push((
        "the attacker reaches the web group's unexposed port over IPv6 link-local",
        Some(fetch_link_local(attacker_pid, &web_link_local, UNEXPOSED).to_string()),
        Some("false".to_owned()),
    ));
    // And the web group still serves its client.
    seen.push((
        "the client reaches the web group's exposed port",
        Some(fetch_from(client_pid, (web, EXPOSED).into()).to_string()),
        Some("true".to_owned()),
    ));
    let wrong: Vec<String> = seen
        .iter()
        .filter(|(_, now, expected)| now != expected)
        .map(|(what, now, expected)| format!("{what}: {now:?}, not {expected:?}"))
        .collect();
    assert!(wrong.is_empty(), "{wrong:#?}");

    // The attacker's own traffic goes on: its container pings the world (with its CAP_NET_RAW).
    let before = log_of(&tenant_b, "attacker", "attacker")
        .await
        .matches("world=reached")
        .count();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(SLOW);
    loop {
        let log = log_of(&tenant_b, "attacker", "attacker").await;
        if log.matches("world=reached").count() > before {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the attacker's container no longer pings the world: {log}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// The node's anti-spoofing table in an order of its own (no counters): the map's elements
/// `<port> -> <chain>`, sorted, then each chain's rules as `<chain>: <rule>`. Empty without a table.
pub(super) fn spoofing_rules(node: &RealNode) -> Vec<String> {
    let table = format!("berth-{}", node.bridge);
    let output = Command::new("nft")
        .args(["-j", "list", "table", "bridge", &table])
        .output()
        .expect("nft runs");
    if !output.status.success() {
        return Vec::new();
    }
    let listing: Value = serde_json::from_slice(&output.stdout).expect("nft prints JSON");
    let objects = listing["nftables"].as_array().cloned().unwrap_or_default();
    let mut rules: Vec<String> = objects
        .iter()
        .filter_map(|object| object["map"]["elem"].as_array())
        .flatten()
        .map(|element| {
            format!(
                "{} -> {}",
                element[0].as_str().unwrap_or("?"),
                element[1]["jump"]["target"].as_str().unwrap_or("?")
            )
        })
        .collect();
    rules.sort();
    for chain in objects.iter().filter_map(|o| o["chain"]["name"].as_str()) {
        let output = Command::new("nft")
            .args(["-s", "list", "chain", "bridge", &table, chain])
            .output()
            .expect("nft runs");
        rules.extend(
            String::from_utf8_lossy(&output.stdout)
                .lines()
                .map(str::trim)
                .filter(|line| !line.is_empty() && !line.ends_with('{') && *line != "}")
                .map(|rule| format!("{chain}: {rule}")),
        );
    }
    rules
}
