//! Published ports, failures, refusals and lost namespaces of real sandboxes.

use super::*;

#[tokio::test]
async fn published_ports_reach_the_sandbox_through_the_host() {
    if !privileged() {
        return;
    }
    let net = TestNet::new(2, |config, _| config.publish_ports = true);
    let port = 30000 + (std::process::id() % 30000) as u16;
    let spec = PortSpec {
        port,
        protocol: Protocol::Tcp,
    };
    let sandbox = net.network.setup("published", &[spec]).await.unwrap();

    let mut server = tokio::process::Command::new("nsenter")
        .arg(format!("--net={}", sandbox.netns.display()))
        .args(["busybox", "nc", "-l", "-p", &port.to_string()])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // The bridge's address is a host address: the connection goes through portmap's DNAT.
    let host = (sandbox.gateway.unwrap(), port);
    let mut stream = None;
    for _ in 0..50 {
        if let Ok(connected) = tokio::net::TcpStream::connect(host).await {
            stream = Some(connected);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut stream = stream.expect("the published port never accepted a connection");
    stream.write_all(b"hello berth\n").await.unwrap();
    stream.shutdown().await.unwrap();
    drop(stream);
    let mut stdout = server.stdout.take().unwrap();
    let mut received = String::new();
    let read = tokio::io::AsyncReadExt::read_to_string(&mut stdout, &mut received);
    tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(received, "hello berth\n");
    let _ = server.kill().await;

    let dport = |rules: &str| {
        rules
            .lines()
            .any(|line| line.contains("dport") && line.contains(&port.to_string()))
    };
    let rules = || {
        String::from_utf8_lossy(&run("iptables", &["-w", "-t", "nat", "-S"]).stdout).into_owned()
    };
    assert!(dport(&rules()));
    net.network.teardown("published").await.unwrap();
    assert!(!dport(&rules()), "portmap rules survived the teardown");
}

#[tokio::test]
async fn a_failing_plugin_leaves_nothing_behind() {
    if !privileged() {
        return;
    }
    let net = TestNet::new(3, |config, dir| {
        // Real plugins, except a portmap that refuses every ADD: it fails after bridge succeeded.
        let bin = dir.join("bin");
        fs::create_dir(&bin).unwrap();
        for plugin in ["loopback", "bridge", "host-local", "firewall"] {
            std::os::unix::fs::symlink(config.cni_bin_dir.join(plugin), bin.join(plugin)).unwrap();
        }
        let script = "#!/bin/sh\ncat >/dev/null\n[ \"$CNI_COMMAND\" = DEL ] && exit 0\n\
                      echo '{\"cniVersion\":\"1.0.0\",\"code\":7,\"msg\":\"fake portmap refuses\",\"details\":\"test\"}'\n\
                      exit 1\n";
        fs::write(bin.join("portmap"), script).unwrap();
        fs::set_permissions(bin.join("portmap"), fs::Permissions::from_mode(0o755)).unwrap();
        config.cni_bin_dir = bin;
    });
    let error = net.network.setup("doomed", &[]).await.unwrap_err();
    assert!(
        matches!(&error, NetworkError::Plugin { plugin, code: 7, .. } if plugin == "portmap"),
        "{error:?}"
    );
    assert!(
        error.to_string().contains("fake portmap refuses"),
        "{error}"
    );

    assert!(net.network.sandboxes().is_empty());
    assert!(list_dir(&net.network.netns_dir()).is_empty());
    assert!(list_dir(&net.network.records_dir()).is_empty());
    assert!(net.leases().is_empty(), "{:?}", net.leases());
    assert!(net.bridge_ports().is_empty(), "{:?}", net.bridge_ports());
    assert!(net.nat_rules().is_empty(), "{:?}", net.nat_rules());
    let chain = isolation::group_chain(net.bridge(), "doomed");
    assert!(
        !net.isolation_rules(&["doomed"])
            .iter()
            .any(|rule| rule.contains(&chain)),
        "{:#?}",
        net.isolation_rules(&["doomed"])
    );
}

#[tokio::test]
async fn invalid_ids_and_ports_are_refused() {
    if !privileged() {
        return;
    }
    let net = TestNet::new(4, |_, _| {});
    let network = &net.network;
    for bad in ["", "..", "../escape", "a/b", "Group", &"a".repeat(65)] {
        let error = network.setup(bad, &[]).await.unwrap_err();
        assert!(
            matches!(error, NetworkError::InvalidId { .. }),
            "{bad:?}: {error:?}"
        );
        assert!(matches!(
            network.teardown(bad).await,
            Err(NetworkError::InvalidId { .. })
        ));
        assert_eq!(network.existing(bad), None);
    }
    let port_zero = PortSpec {
        port: 0,
        protocol: Protocol::Tcp,
    };
    assert!(matches!(
        network.setup("ok", &[port_zero]).await,
        Err(NetworkError::InvalidPort)
    ));
    assert!(network.sandboxes().is_empty());
    assert!(list_dir(&network.netns_dir()).is_empty());
}

#[tokio::test]
async fn a_lost_namespace_is_replaced_and_its_lease_released() {
    if !privileged() {
        return;
    }
    let net = TestNet::new(5, |_, _| {});
    let network = &net.network;
    let first = network.setup("rebooted", &[]).await.unwrap();
    // What a reboot does: the namespace mount and the iptables rules are gone, the saved result
    // and the lease (both on disk) remain.
    nix::mount::umount2(&first.netns, MntFlags::MNT_DETACH).unwrap();
    net.forget_nat_rules();
    network.isolation.remove_node().await.unwrap();
    assert!(net.isolation_rules(&["rebooted"]).is_empty());
    assert_eq!(network.existing("rebooted"), None);
    assert_eq!(network.sandboxes(), ["rebooted"]);

    let second = network.setup("rebooted", &[]).await.unwrap();
    assert!(netns_is_live(&second.netns));
    assert!(ping_from_host(second.ip));
    let chain = isolation::group_chain(net.bridge(), "rebooted");
    let jump = format!(
        "-A {} -d {}/32 -j {chain}",
        isolation::forward_chain(net.bridge()),
        second.ip
    );
    let rules = net.isolation_rules(&["rebooted"]);
    assert_eq!(
        rules.iter().filter(|rule| **rule == jump).count(),
        1,
        "{rules:#?}"
    );
    assert_eq!(net.leases(), BTreeSet::from([second.ip.to_string()]));
    assert_eq!(net.bridge_ports().len(), 1, "{:?}", net.bridge_ports());
    network.teardown("rebooted").await.unwrap();
    assert!(net.nat_rules().is_empty(), "{:?}", net.nat_rules());
    assert!(net.group_rules("rebooted", second.ip).is_empty());
}
