#![allow(clippy::unwrap_used)]

use std::os::unix::process::ExitStatusExt as _;
use std::path::PathBuf;

use super::*;
use crate::runtime::containerd::network::Protocol;

fn sample_config() -> NetworkConfig {
    NetworkConfig {
        cni_bin_dir: PathBuf::from("/usr/lib/cni"),
        state_dir: PathBuf::from("/var/lib/berth/network"),
        bridge: "berth7".to_string(),
        subnet: "10.77.0.0/16".to_string(),
        publish_ports: true,
    }
}

#[test]
fn the_conflist_chains_bridge_portmap_and_firewall() {
    let config = sample_config();
    let conflist = build_conflist(&config, Subnet::parse(&config.subnet).unwrap());
    assert_eq!(conflist["cniVersion"], "1.0.0");
    assert_eq!(conflist["name"], "berth-berth7");
    let plugins = conflist["plugins"].as_array().unwrap();
    let types: Vec<&str> = plugins.iter().map(plugin_type).collect();
    assert_eq!(types, ["bridge", "portmap", "firewall"]);

    let bridge = &plugins[0];
    assert_eq!(bridge["bridge"], "berth7");
    for flag in ["isGateway", "ipMasq", "hairpinMode"] {
        assert_eq!(bridge[flag], true, "{flag}");
    }
    let ipam = &bridge["ipam"];
    assert_eq!(ipam["type"], "host-local");
    assert_eq!(ipam["ranges"], json!([[{"subnet": "10.77.0.0/16"}]]));
    assert_eq!(ipam["routes"], json!([{"dst": "0.0.0.0/0"}]));
    assert_eq!(ipam["dataDir"], "/var/lib/berth/network/cni/ipam");
    assert_eq!(plugins[1]["capabilities"], json!({"portMappings": true}));
    assert_eq!(
        plugins[2],
        json!({
            "type": "firewall",
            "backend": "iptables",
            "iptablesAdminChainName": "BERTH-FWD-berth7",
        })
    );

    let v6 = build_conflist(&config, Subnet::parse("fd00:88::/64").unwrap());
    assert_eq!(v6["plugins"][0]["ipam"]["routes"], json!([{"dst": "::/0"}]));
}

#[test]
fn chained_plugins_get_version_name_prev_result_and_their_capabilities() {
    let config = sample_config();
    let conflist = build_conflist(&config, Subnet::parse(&config.subnet).unwrap());
    let plugins = conflist["plugins"].as_array().unwrap();
    let prev = json!({"cniVersion": "1.0.0", "ips": [{"address": "10.77.0.2/16"}]});
    let mappings = port_mappings(&[PortSpec {
        port: 8080,
        protocol: Protocol::Udp,
    }]);

    let bridge = plugin_stdin("berth-berth7", &plugins[0], None, &mappings);
    assert_eq!(bridge["cniVersion"], "1.0.0");
    assert_eq!(bridge["name"], "berth-berth7");
    assert!(bridge.get("prevResult").is_none());
    assert!(
        bridge.get("runtimeConfig").is_none(),
        "bridge declares no capability"
    );

    let portmap = plugin_stdin("berth-berth7", &plugins[1], Some(&prev), &mappings);
    assert_eq!(portmap["prevResult"], prev);
    assert_eq!(
        portmap["runtimeConfig"],
        json!({"portMappings": [{"hostPort": 8080, "containerPort": 8080, "protocol": "udp"}]})
    );
    let unpublished = plugin_stdin("berth-berth7", &plugins[1], Some(&prev), &[]);
    assert!(unpublished.get("runtimeConfig").is_none());
}

fn exit(code: i32) -> ExitStatus {
    ExitStatus::from_raw(code << 8)
}

#[test]
fn cni_errors_name_the_plugin_and_its_message() {
    let stdout = br#"{"cniVersion":"1.0.0","code":11,"msg":"failed to allocate for range 0","details":"no IP addresses available"}"#;
    let error = interpret_output("bridge", CniCommand::Add, exit(1), stdout, b"").unwrap_err();
    assert!(
        matches!(error, NetworkError::Plugin { code: 11, .. }),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "CNI plugin \"bridge\" failed ADD (code 11): failed to allocate for range 0 \
         (no IP addresses available)"
    );

    let error =
        interpret_output("portmap", CniCommand::Del, exit(2), b"", b"panic: boom\n").unwrap_err();
    assert_eq!(
        error.to_string(),
        "CNI plugin \"portmap\" failed DEL (exit status: 2): panic: boom"
    );

    let long = vec![b'x'; 5000];
    let error = interpret_output("bridge", CniCommand::Add, exit(1), &long, b"").unwrap_err();
    assert!(error.to_string().len() < MAX_OUTPUT_IN_ERROR + 100);

    let result = interpret_output("bridge", CniCommand::Add, exit(0), br#"{"ips":[]}"#, b"");
    assert_eq!(result.unwrap(), Some(json!({"ips": []})));
    let error = interpret_output("bridge", CniCommand::Add, exit(0), b"oops", b"").unwrap_err();
    assert!(matches!(error, NetworkError::BadResult { .. }), "{error:?}");
    assert_eq!(
        interpret_output("bridge", CniCommand::Del, exit(0), b"", b"").unwrap(),
        None
    );
}

#[test]
fn the_sandbox_address_is_the_one_on_the_sandbox_interface() {
    let result = json!({
        "interfaces": [
            {"name": "berth0", "mac": "aa"},
            {"name": "veth1", "mac": "bb"},
            {"name": "eth0", "mac": "cc", "sandbox": "/x/netns/a"},
        ],
        "ips": [
            {"interface": 0, "address": "10.88.0.1/16"},
            {"interface": 2, "address": "10.88.0.5/16", "gateway": "10.88.0.1"},
        ],
    });
    assert_eq!(
        sandbox_address(&result).unwrap(),
        (
            "10.88.0.5".parse().unwrap(),
            Some("10.88.0.1".parse().unwrap())
        )
    );
    let bare = json!({"ips": [{"address": "fd00::7/64"}]});
    assert_eq!(
        sandbox_address(&bare).unwrap(),
        ("fd00::7".parse().unwrap(), None)
    );
    assert!(sandbox_address(&json!({"ips": []})).is_err());
    assert!(sandbox_address(&json!({"ips": [{"address": "nope/8"}]})).is_err());
}
