//! Names resolve from inside: on a real node, a group's containers ask Berth's DNS (the apiserver's
//! embedded server, listening on the groups' bridge gateway, port 53, and advertised to the agent)
//! with busybox `nslookup`, as a user's container would; a group's own `dnsConfig` replaces it; and
//! a readiness probe keeps a group's name unpublished until the group is ready.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Command, Stdio};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{Api, Cluster, SUB};
use crate::real::{
    RealNode, RealOptions, SLOW, fresh_network, log_until_done, real_group, state_of, wait_group,
};

const RG: &str = "rg";

/// A Linux bridge made before the node's agent (which then uses it as the groups' bridge) with the
/// subnet's gateway address, so a DNS server can listen there first. Deleted when dropped (the
/// node removes it too).
struct Bridge {
    name: String,
    gateway: Ipv4Addr,
}

impl Bridge {
    fn create(name: &str, subnet: &str) -> Self {
        let prefix = subnet.trim_end_matches("0/24");
        let gateway: Ipv4Addr = format!("{prefix}1").parse().expect("a /24 subnet");
        let ip = |args: &[&str]| {
            let status = Command::new("ip")
                .args(args)
                .stderr(Stdio::null())
                .status()
                .expect("ip runs");
            assert!(status.success(), "ip {args:?}");
        };
        ip(&["link", "add", "name", name, "type", "bridge"]);
        let bridge = Self {
            name: name.to_owned(),
            gateway,
        };
        ip(&["addr", "add", &format!("{gateway}/24"), "dev", name]);
        ip(&["link", "set", name, "up"]);
        bridge
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "delete", &self.name])
            .stderr(Stdio::null())
            .status();
    }
}

/// A cluster whose embedded DNS server answers on the groups' bridge gateway (port 53) and is
/// advertised to agents, and a real node on that bridge. The bridge is dropped last.
struct Setup {
    api: Api,
    node: RealNode,
    cluster: Cluster,
    _bridge: Bridge,
}

async fn setup(node_name: &str) -> Setup {
    let (bridge_name, subnet) = fresh_network();
    let bridge = Bridge::create(&bridge_name, &subnet);
    let gateway = bridge.gateway;
    let cluster = Cluster::start_with(|config| {
        config.dns_listen = Some(SocketAddr::from((gateway, 53)));
        config.dns_advertise = Some(gateway.into());
    })
    .await;
    let api = cluster.tenant(&[SUB]).await;
    let options = RealOptions {
        network: Some((bridge_name, subnet)),
        ..RealOptions::default()
    };
    let node = RealNode::start(&cluster, node_name, options).await;
    Setup {
        api,
        node,
        cluster,
        _bridge: bridge,
    }
}

/// `body` with a public address on port 80 named `label`.
fn labelled(mut body: Value, label: &str) -> Value {
    body["properties"]["ipAddress"] =
        json!({"type": "Public", "ports": [{"port": 80}], "dnsNameLabel": label});
    body["properties"]["containers"][0]["properties"]["ports"] = json!([{"port": 80}]);
    body
}

async fn put(api: &Api, name: &str, body: &Value) -> Value {
    let (status, _, answer) = api.put_group(SUB, RG, name, body).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    answer
}

async fn running_with_ip(api: &Api, node: &RealNode, name: &str) -> (Value, String) {
    let body = wait_group(api, node, RG, name, |b| {
        let ip = b["properties"]["ipAddress"]["ip"].as_str().unwrap_or("");
        state_of(b, "app") == "Running" && !ip.is_empty()
    })
    .await;
    let ip = body["properties"]["ipAddress"]["ip"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    (body, ip)
}

/// The node's own resolvers a group gets after Berth's: its non-loopback `nameserver` lines.
fn node_nameservers() -> Vec<String> {
    std::fs::read_to_string("/etc/resolv.conf")
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.strip_prefix("nameserver"))
        .map(|ip| ip.trim().to_owned())
        .filter(|ip| !ip.starts_with("127.") && ip != "::1")
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_resolves_another_groups_name_from_inside() {
    let Setup {
        api, node, cluster, ..
    } = setup("dns-inside").await;
    let gateway = cluster
        .config
        .dns_listen
        .expect("the embedded DNS server runs")
        .ip();

    let web = labelled(
        real_group(&node.image, "Always", &[("app", &["sleep", "3600"])]),
        "insideweb1",
    );
    let answer = put(&api, "web", &web).await;
    let fqdn = answer["properties"]["ipAddress"]["fqdn"]
        .as_str()
        .expect("an fqdn")
        .to_owned();
    let (_, ip) = running_with_ip(&api, &node, "web").await;

    // Another group, no dnsConfig: Berth's nameserver first, then the node's; the name resolves.
    let script = format!(
        "cat /etc/resolv.conf; echo ---; \
         until nslookup -type=a {fqdn} >/tmp/answer 2>&1; do sleep 1; done; cat /tmp/answer; echo done; \
         sleep 3600"
    );
    let client = real_group(&node.image, "Always", &[("app", &["sh", "-c", &script])]);
    put(&api, "client", &client).await;
    let log = log_until_done(&api, &node, (SUB, RG, "client"), "app").await;
    let (resolv_conf, answer) = log.split_once("---\n").expect("the separator");
    let servers: Vec<&str> = resolv_conf
        .lines()
        .filter_map(|line| line.strip_prefix("nameserver "))
        .collect();
    let mut expected = vec![gateway.to_string()];
    expected.extend(node_nameservers().into_iter().take(2));
    assert_eq!(servers, expected, "{resolv_conf}");
    assert!(
        answer.contains(&format!("Name:\t{fqdn}\nAddress: {ip}\n")),
        "nslookup from inside: {answer}"
    );

    // A group with dnsConfig: exactly its servers, search domains and options.
    let mut pinned = real_group(
        &node.image,
        "Always",
        &[(
            "app",
            &["sh", "-c", "cat /etc/resolv.conf; echo done; sleep 3600"],
        )],
    );
    pinned["properties"]["dnsConfig"] = json!({
        "nameServers": ["192.0.2.53", "192.0.2.54"],
        "searchDomains": "a.example b.example",
        "options": "ndots:2"
    });
    put(&api, "pinned", &pinned).await;
    let log = log_until_done(&api, &node, (SUB, RG, "pinned"), "app").await;
    assert_eq!(
        log,
        "nameserver 192.0.2.53\nnameserver 192.0.2.54\nsearch a.example b.example\n\
         options ndots:2\ndone\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_readiness_probe_keeps_the_name_unpublished_until_ready() {
    let Setup {
        api, node, cluster, ..
    } = setup("dns-ready").await;
    let server = cluster.dns_addrs.expect("the embedded DNS server runs").0;

    // Ready 20 s after it starts: its readiness probe fails until then.
    let mut web = labelled(
        real_group(
            &node.image,
            "Always",
            &[(
                "app",
                &["sh", "-c", "sleep 20; touch /tmp/ready; sleep 3600"],
            )],
        ),
        "readyweb1",
    );
    web["properties"]["containers"][0]["properties"]["readinessProbe"] = json!({
        "exec": {"command": ["cat", "/tmp/ready"]},
        "periodSeconds": 1,
        "failureThreshold": 1
    });
    let answer = put(&api, "web", &web).await;
    let fqdn = answer["properties"]["ipAddress"]["fqdn"]
        .as_str()
        .expect("an fqdn")
        .to_owned();
    let (_, ip) = running_with_ip(&api, &node, "web").await;

    // Running with an address, not ready: no name (the zone is rebuilt within a moment of any
    // report, so a name that would be published is by then).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (_, body) = api.get_group(SUB, RG, "web").await;
    assert_eq!(state_of(&body, "app"), "Running", "{body}");
    assert_eq!(
        crate::dns::resolve(server, &format!("{fqdn}."), false).await,
        Err("Non-Existent Domain".to_owned()),
        "published before the group is ready"
    );

    // Ready: the name resolves to the group's address.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(SLOW);
    loop {
        match crate::dns::resolve(server, &format!("{fqdn}."), false).await {
            Ok(addresses) if addresses == [ip.clone()] => break,
            other => assert!(
                tokio::time::Instant::now() < deadline,
                "never published once ready: {other:?}\n--- agent log ---\n{}",
                node.agent_log()
            ),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
