//! Isolation and anti-spoofing rules of real sandboxes.

use super::*;

#[tokio::test]
async fn sandboxes_reach_only_exposed_ports_and_teardown_removes_everything() {
    if !privileged() {
        return;
    }
    let net = TestNet::new(1, |_, _| {});
    let network = &net.network;
    let web = PortSpec {
        port: 8080,
        protocol: Protocol::Tcp,
    };
    // Concurrently, as the supervisor starts groups.
    let exposed = [web];
    let (a, b) = tokio::join!(
        network.setup("group-a", &exposed),
        network.setup("group-b", &[])
    );
    let (a, b) = (a.unwrap(), b.unwrap());

    assert_ne!(a.ip, b.ip);
    for sandbox in [&a, &b] {
        assert!(
            sandbox.ip.to_string().starts_with(&net.prefix),
            "{sandbox:?}"
        );
        assert_eq!(
            sandbox.gateway,
            Some(format!("{}1", net.prefix).parse().unwrap())
        );
        assert!(netns_is_live(&sandbox.netns));
    }
    assert_eq!(a.netns, network.config.state_dir.join("netns/group-a"));

    // Servers on an exposed and an unexposed port of a, and on the same port of b (which
    // exposes nothing); each answers the host.
    let root = tempfile::tempdir().unwrap();
    let _servers = [
        serve(&a.netns, 8080, root.path()),
        serve(&a.netns, 8081, root.path()),
        serve(&b.netns, 8080, root.path()),
    ];
    for (ip, port) in [(a.ip, 8080), (a.ip, 8081), (b.ip, 8080)] {
        wait_served(ip, port).await;
    }
    assert!(
        fetch(Some(&b.netns), a.ip, 8080),
        "b cannot reach a's exposed port"
    );
    assert!(
        !fetch(Some(&b.netns), a.ip, 8081),
        "b reaches a's unexposed port"
    );
    assert!(
        !fetch(Some(&a.netns), b.ip, 8080),
        "a reaches b, which exposes nothing"
    );
    assert!(!ping_from(&b.netns, &a.ip.to_string()), "b pings a");
    assert!(!ping_from(&a.netns, &b.ip.to_string()), "a pings b");
    assert!(ping_from(&a.netns, "127.0.0.1"), "lo is not up in a");
    let gateway = a.gateway.unwrap();
    assert!(
        !ping_from(&a.netns, &gateway.to_string()),
        "the node answers a"
    );
    assert!(
        ping_from_host(a.ip) && ping_from_host(b.ip),
        "the host reaches both"
    );
    let chain_a = isolation::group_chain(net.bridge(), "group-a");
    let rules = net.isolation_rules(&["group-a", "group-b"]);
    assert!(
        rules.contains(&format!(
            "-A {chain_a} -p tcp -m tcp --dport 8080 -j ACCEPT"
        )),
        "{rules:#?}"
    );

    assert_eq!(network.sandboxes(), ["group-a", "group-b"]);
    assert_eq!(
        net.leases(),
        BTreeSet::from([a.ip.to_string(), b.ip.to_string()])
    );
    let veth_a = net.host_veth("group-a");
    assert_eq!(net.bridge_ports().len(), 2);
    assert!(net.bridge_ports().contains(&veth_a));
    let spoof = net.spoofing_rules();
    let spoof_a = spoofing::group_chain(net.bridge(), "group-a");
    let spoof_b = spoofing::group_chain(net.bridge(), "group-b");
    let veth_b = net.host_veth("group-b");
    let elements: Vec<&String> = spoof.iter().filter(|rule| rule.contains(" -> ")).collect();
    let mut expected = [
        format!("{veth_a} -> {spoof_a}"),
        format!("{veth_b} -> {spoof_b}"),
    ];
    expected.sort();
    assert_eq!(elements, expected.iter().collect::<Vec<_>>(), "{spoof:#?}");
    // What the kernel holds is the builder's rules for a's own MAC, as a's namespace shows it.
    let link_a = spoofing::Link {
        veth: veth_a.clone(),
        mac: spoofing::Mac::parse(&sandbox_mac(&a.netns)).unwrap(),
        ip: a.ip,
    };
    assert_eq!(
        net.spoofing_chain("group-a"),
        spoofing::group_rules(&link_a)
    );
    assert!(
        spoof.contains(&"prerouting: iifname vmap @groups".to_string()),
        "{spoof:#?}"
    );
    assert!(
        net.nat_rules()
            .iter()
            .any(|rule| rule.contains(&a.ip.to_string()))
    );

    // Idempotent setup, and the view after an agent restart; the rules are there once.
    assert_eq!(network.setup("group-a", &[web]).await.unwrap(), a);
    assert_eq!(net.isolation_rules(&["group-a", "group-b"]), rules);
    assert_eq!(net.spoofing_rules(), spoof);
    assert_eq!(network.existing("group-a"), Some(a.clone()));
    assert_eq!(network.existing("group-c"), None);

    network.teardown("group-a").await.unwrap();
    assert!(!a.netns.exists());
    assert!(
        !all_links().contains(&format!(" {veth_a}@")),
        "{veth_a} is still there"
    );
    assert_eq!(net.leases(), BTreeSet::from([b.ip.to_string()]));
    assert!(
        !net.nat_rules()
            .iter()
            .any(|rule| rule.contains(&format!("{}/32", a.ip)))
    );
    let left = net.group_rules("group-a", a.ip);
    assert!(left.is_empty(), "{left:#?}");
    let left = net.spoofing_rules();
    assert!(
        !left
            .iter()
            .any(|rule| rule.contains(&spoof_a) || rule.contains(&veth_a)),
        "{left:#?}"
    );
    assert_eq!(network.existing("group-a"), None);
    assert_eq!(network.sandboxes(), ["group-b"]);
    assert!(ping_from_host(b.ip), "b lost its network");
    network.teardown("group-a").await.unwrap();
    network.teardown("never-set-up").await.unwrap();

    network.teardown("group-b").await.unwrap();
    assert!(network.sandboxes().is_empty());
    assert!(net.leases().is_empty());
    assert!(net.bridge_ports().is_empty());
    assert!(net.nat_rules().is_empty(), "{:?}", net.nat_rules());
    assert!(net.group_rules("group-b", b.ip).is_empty());

    // Removing the node removes its chains and the jumps to them, and its table.
    assert!(!net.isolation_rules(&[]).is_empty());
    assert_eq!(
        net.spoofing_rules(),
        [
            "prerouting: type filter hook prerouting priority dstnat; policy accept;",
            "prerouting: iifname vmap @groups"
        ]
    );
    network.purge().await.unwrap();
    assert!(
        net.isolation_rules(&[]).is_empty(),
        "{:#?}",
        net.isolation_rules(&[])
    );
    assert!(
        net.spoofing_rules().is_empty(),
        "{:#?}",
        net.spoofing_rules()
    );
}

#[tokio::test]
async fn isolation_is_restored_once_by_a_new_agent_and_a_crash_leaves_no_rule() {
    if !privileged() {
        return;
    }
    let net = TestNet::new(6, |_, _| {});
    let web = PortSpec {
        port: 8080,
        protocol: Protocol::Tcp,
    };
    let a = net.network.setup("group-a", &[web]).await.unwrap();
    let b = net.network.setup("group-b", &[]).await.unwrap();
    let root = tempfile::tempdir().unwrap();
    let _server = serve(&a.netns, 8080, root.path());
    wait_served(a.ip, 8080).await;
    assert!(fetch(Some(&b.netns), a.ip, 8080));
    let rules = net.isolation_rules(&["group-a", "group-b"]);
    let spoof = net.spoofing_rules();

    // What a crash or an operator may lose: a's jump, b's chain, the node's INPUT hook.
    let forward = isolation::forward_chain(net.bridge());
    let jump = format!(
        "-d {}/32 -j {}",
        a.ip,
        isolation::group_chain(net.bridge(), "group-a")
    );
    let chain_b = isolation::group_chain(net.bridge(), "group-b");
    let input = isolation::input_chain(net.bridge());
    let table = spoofing::table(net.bridge());
    let spoof_b = spoofing::group_chain(net.bridge(), "group-b");
    for script in [
        format!("iptables -w -D {forward} {jump}"),
        format!(
            "iptables -w -D {forward} -d {}/32 -j {chain_b} && iptables -w -X {chain_b}",
            b.ip
        ),
        format!("iptables -w -D INPUT -i {} -j {input}", net.bridge()),
        // The same of the anti-spoofing table: a's element, b's element and chain, the base
        // chain's lookup.
        format!(
            "nft delete element bridge {table} groups '{{ \"{}\" }}'",
            net.host_veth("group-a")
        ),
        format!(
            "nft delete element bridge {table} groups '{{ \"{}\" }}' && \
             nft delete chain bridge {table} {spoof_b}",
            net.host_veth("group-b")
        ),
        format!("nft flush chain bridge {table} prerouting"),
    ] {
        assert!(run("sh", &["-c", &script]).status.success(), "{script}");
    }
    assert!(
        !fetch(Some(&b.netns), a.ip, 8080),
        "a lost its jump: closed, not open"
    );

    // A new agent on the same state: everything back, once, twice over.
    let restarted = Network::new(net.network.config.clone()).unwrap();
    for _ in 0..2 {
        restarted.restore().await.unwrap();
        let mut now = net.isolation_rules(&["group-a", "group-b"]);
        let mut before = rules.clone();
        now.sort();
        before.sort();
        assert_eq!(now, before);
        let mut now = net.spoofing_rules();
        let mut before = spoof.clone();
        now.sort();
        before.sort();
        assert_eq!(now, before);
    }
    assert!(
        fetch(Some(&b.netns), a.ip, 8080),
        "a's exposed port is back"
    );
    assert!(!ping_from(&b.netns, &b.gateway.unwrap().to_string()));

    // A setup that died after its rules but before its record: teardown still finds them.
    restarted
        .isolation
        .ensure_group("crashed", "10.1.2.3".parse().unwrap(), &[web])
        .await
        .unwrap();
    let crashed = "10.1.2.3".parse().unwrap();
    let link = spoofing::Link {
        veth: "vethcrashed".to_string(),
        mac: spoofing::Mac::parse("02:00:0a:01:02:03").unwrap(),
        ip: crashed,
    };
    restarted
        .spoofing
        .ensure_group("crashed", &link)
        .await
        .unwrap();
    assert_eq!(net.group_rules("crashed", crashed).len(), 3);
    assert_eq!(net.spoofing_chain("crashed"), spoofing::group_rules(&link));
    restarted.teardown("crashed").await.unwrap();
    assert!(net.group_rules("crashed", crashed).is_empty());
    assert!(net.spoofing_chain("crashed").is_empty());
    assert!(
        !net.spoofing_rules()
            .iter()
            .any(|rule| rule.contains("vethcrashed"))
    );
}

#[tokio::test]
async fn a_sandbox_cannot_claim_another_sandboxs_addresses() {
    if !privileged() {
        return;
    }
    let net = TestNet::new(8, |_, _| {});
    let a = net.network.setup("group-a", &[]).await.unwrap();
    let b = net.network.setup("group-b", &[]).await.unwrap();
    let (mac_a, mac_b) = (sandbox_mac(&a.netns), sandbox_mac(&b.netns));
    let veth_a = net.host_veth("group-a");
    let gateway = a.gateway.unwrap().to_string();
    assert!(ping_from_host(a.ip) && ping_from_host(b.ip));
    assert_eq!(neighbour(net.bridge(), a.ip), Some(mac_a.clone()));
    assert_eq!(fdb_port(net.bridge(), &mac_a), Some(veth_a.clone()));
    // The kernel lets an ARP change a neighbour entry a second after the last change.
    tokio::time::sleep(Duration::from_millis(1100)).await;

    // b announces a's address as its own (a gratuitous ARP), then answers for it to the node.
    let (ip_a, broadcast, zero) = (a.ip.to_string(), "ff:ff:ff:ff:ff:ff", "00:00:00:00:00:00");
    let node_mac = fs::read_to_string(format!("/sys/class/net/{}/address", net.bridge()))
        .unwrap()
        .trim()
        .to_string();
    send_frames(
        &b.netns,
        &[
            "eth0", "3", broadcast, &mac_b, "arp", "1", &mac_b, &ip_a, zero, &ip_a,
        ],
    );
    send_frames(
        &b.netns,
        &[
            "eth0", "3", &node_mac, &mac_b, "arp", "2", &mac_b, &ip_a, &node_mac, &gateway,
        ],
    );
    assert_eq!(
        neighbour(net.bridge(), a.ip),
        Some(mac_a.clone()),
        "b took a's address in the node's neighbour table"
    );
    // b sends from a's MAC: the bridge would send a's frames to b.
    send_frames(
        &b.netns,
        &[
            "eth0", "3", broadcast, &mac_a, "arp", "1", &mac_a, &ip_a, zero, &gateway,
        ],
    );
    assert_eq!(
        fdb_port(net.bridge(), &mac_a),
        Some(veth_a),
        "b took a's MAC on the bridge"
    );
    assert!(ping_from_host(a.ip) && ping_from_host(b.ip));
}

#[tokio::test]
async fn an_ipv6_subnet_is_isolated_with_ip6tables() {
    if !privileged() {
        return;
    }
    let net = TestNet::new(7, |config, _| {
        config.subnet = format!("fd00:{:x}:7::/64", std::process::id() % 65536);
    });
    let network = &net.network;
    let web = [PortSpec {
        port: 8080,
        protocol: Protocol::Tcp,
    }];
    let a = network.setup("group-a", &web).await.unwrap();
    let b = network.setup("group-b", &[]).await.unwrap();
    assert!(a.ip.is_ipv6(), "{a:?}");
    let root = tempfile::tempdir().unwrap();
    let _servers = [
        serve(&a.netns, 8080, root.path()),
        serve(&a.netns, 8081, root.path()),
    ];
    wait_served(a.ip, 8080).await;
    wait_served(a.ip, 8081).await;
    assert!(
        fetch(Some(&b.netns), a.ip, 8080),
        "b cannot reach a's exposed port"
    );
    assert!(
        !fetch(Some(&b.netns), a.ip, 8081),
        "b reaches a's unexposed port"
    );
    let chain = isolation::group_chain(net.bridge(), "group-a");
    let rules = net.isolation_rules(&["group-a"]);
    assert!(
        rules.contains(&format!("-A {chain} -p tcp -m tcp --dport 8080 -j ACCEPT")),
        "{rules:#?}"
    );

    network.teardown("group-a").await.unwrap();
    assert!(net.group_rules("group-a", a.ip).is_empty());
    network.purge().await.unwrap();
    assert!(
        net.isolation_rules(&[]).is_empty(),
        "{:#?}",
        net.isolation_rules(&[])
    );
}
