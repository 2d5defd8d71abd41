//! The rule and script builders, the CNI result reader and the listing parser.

#![allow(clippy::unwrap_used)]

use serde_json::json;

use super::*;

fn link(ip: &str) -> Link {
    Link {
        veth: "veth1a2b3c4d".to_string(),
        mac: Mac::parse("0a:58:0A:58:00:07").unwrap(),
        ip: ip.parse().unwrap(),
    }
}

#[test]
fn names_are_per_node_and_share_the_isolation_hash() {
    assert_eq!(table("berth0"), "berth-berth0");
    // The same hash as the group's isolation chain, BERTH-G-e92f0af841f62a91.
    assert_eq!(group_chain("berth0", "group-a"), "g-e92f0af841f62a91");
    assert_ne!(
        group_chain("berth0", "group-a"),
        group_chain("berth1", "group-a")
    );
}

#[test]
fn macs_are_six_two_digit_hex_bytes() {
    assert_eq!(
        Mac::parse("0A:58:0a:58:00:07").unwrap().to_string(),
        "0a:58:0a:58:00:07"
    );
    for bad in [
        "",
        "0a:58:0a:58:00",
        "0a:58:0a:58:00:07:01",
        "a:58:0a:58:00:07",
        "0a:58:0a:58:00:0g",
        "0a-58-0a-58-00-07",
        "0a:58:0a:58:00:+7",
    ] {
        assert_eq!(Mac::parse(bad), None, "{bad:?}");
    }
}

#[test]
fn the_node_sends_each_port_to_its_group_before_the_bridge_sees_the_frame() {
    assert_eq!(
        node_script("berth0"),
        [
            "add table bridge berth-berth0",
            "add chain bridge berth-berth0 prerouting { type filter hook prerouting priority -300; \
             policy accept; }",
            "add map bridge berth-berth0 groups { type ifname : verdict; }",
            "flush chain bridge berth-berth0 prerouting",
            "add rule bridge berth-berth0 prerouting iifname vmap @groups",
        ]
    );
}

#[test]
fn an_ipv4_group_sends_arp_and_ipv4_from_its_own_addresses_and_link_local_discovery_only() {
    assert_eq!(
        group_rules(&link("10.88.0.7")),
        [
            "ether saddr != 0a:58:0a:58:00:07 counter drop",
            "arp hlen 6 arp plen 4 arp saddr ether 0a:58:0a:58:00:07 arp saddr ip 10.88.0.7 accept",
            "ip saddr 10.88.0.7 accept",
            "icmpv6 type { nd-router-advert, nd-redirect } counter drop",
            "icmpv6 type nd-neighbor-advert @th,64,16 & 0xffc0 != 0xfe80 counter drop",
            "ip6 saddr fe80::/10 icmpv6 type { nd-router-solicit, nd-neighbor-solicit, \
             nd-neighbor-advert, mld2-listener-report } accept",
            "ip6 saddr :: icmpv6 type { nd-router-solicit, nd-neighbor-solicit, \
             mld2-listener-report } accept",
            "counter drop",
        ]
    );
}

#[test]
fn an_ipv6_group_advertises_only_its_own_or_link_local_addresses_and_sends_no_ipv4() {
    let rules = group_rules(&link("fd00:88::7"));
    assert_eq!(
        rules[..4],
        [
            "ether saddr != 0a:58:0a:58:00:07 counter drop",
            "icmpv6 type { nd-router-advert, nd-redirect } counter drop",
            "icmpv6 type nd-neighbor-advert @th,64,128 != 0xfd000088000000000000000000000007 \
             @th,64,16 & 0xffc0 != 0xfe80 counter drop",
            "ip6 saddr fd00:88::7 accept",
        ]
    );
    assert_eq!(rules[4..], group_rules(&link("10.88.0.7"))[5..]);
    assert!(
        !rules
            .iter()
            .any(|rule| rule.contains("arp") || rule.contains("ip saddr"))
    );
}

#[test]
fn a_group_script_refills_its_chain_and_replaces_stale_elements() {
    let chain = "g-e92f0af841f62a91";
    let link = link("10.88.0.7");
    let script = group_script("berth0", "group-a", &link, None).unwrap();
    let node = node_script("berth0");
    assert_eq!(script[..node.len()], node);
    let mut expected = vec![
        format!("add chain bridge berth-berth0 {chain}"),
        format!("flush chain bridge berth-berth0 {chain}"),
    ];
    expected.extend(
        group_rules(&link)
            .iter()
            .map(|rule| format!("add rule bridge berth-berth0 {chain} {rule}")),
    );
    expected.push(format!(
        "add element bridge berth-berth0 groups {{ \"veth1a2b3c4d\" : jump {chain} }}"
    ));
    assert_eq!(script[node.len()..], expected);

    // The group's old port (a sandbox set up again), and its port sent to another chain (a port
    // name used again) go; the other groups' elements and the group's own stay.
    let state = TableState {
        chains: BTreeSet::from([chain.to_string()]),
        elements: vec![
            ("vetholdport".to_string(), chain.to_string()),
            ("veth1a2b3c4d".to_string(), "g-0000000000000000".to_string()),
            ("vethother".to_string(), "g-1111111111111111".to_string()),
        ],
    };
    let script = group_script("berth0", "group-a", &link, Some(&state)).unwrap();
    let deletes: Vec<&String> = script
        .iter()
        .filter(|line| line.starts_with("delete "))
        .collect();
    assert_eq!(
        deletes,
        [
            "delete element bridge berth-berth0 groups { \"vetholdport\" }",
            "delete element bridge berth-berth0 groups { \"veth1a2b3c4d\" }",
        ]
    );
    assert!(script.last().unwrap().starts_with("add element"));
    let current = TableState {
        chains: BTreeSet::from([chain.to_string()]),
        elements: vec![("veth1a2b3c4d".to_string(), chain.to_string())],
    };
    let again = group_script("berth0", "group-a", &link, Some(&current)).unwrap();
    assert!(!again.iter().any(|line| line.starts_with("delete ")));

    // What cannot be written back in nft's syntax is refused, not pasted into a script.
    let odd = TableState {
        chains: BTreeSet::new(),
        elements: vec![("a\" } ; flush ruleset ; {\"".to_string(), chain.to_string())],
    };
    assert!(group_script("berth0", "group-a", &link, Some(&odd)).is_err());
}

#[test]
fn removal_takes_the_groups_elements_and_chain_only() {
    let chain = "g-e92f0af841f62a91";
    let state = TableState {
        chains: BTreeSet::from([
            "prerouting".to_string(),
            chain.to_string(),
            "g-1111111111111111".to_string(),
        ]),
        elements: vec![
            ("veth1".to_string(), chain.to_string()),
            ("veth2".to_string(), "g-1111111111111111".to_string()),
            ("veth3".to_string(), chain.to_string()),
        ],
    };
    assert_eq!(
        removal_script("berth0", "group-a", &state).unwrap(),
        [
            "delete element bridge berth-berth0 groups { \"veth1\" }".to_string(),
            "delete element bridge berth-berth0 groups { \"veth3\" }".to_string(),
            format!("delete chain bridge berth-berth0 {chain}"),
        ]
    );
    assert!(removal_script("berth0", "gone", &state).unwrap().is_empty());
}

/// The final result of Berth's chain as the bridge plugin (1.1.1) and its followers return it.
fn cni_result() -> Value {
    json!({
        "cniVersion": "1.0.0",
        "interfaces": [
            {"name": "berth0", "mac": "b6:0e:3a:1c:2d:4f"},
            {"name": "veth1a2b3c4d", "mac": "7e:51:9f:00:aa:01"},
            {"name": "eth0", "mac": "0a:58:0a:58:00:07", "sandbox": "/var/lib/berth/netns/group-a"},
        ],
        "ips": [{"interface": 2, "address": "10.88.0.7/16", "gateway": "10.88.0.1"}],
    })
}

#[test]
fn the_link_is_the_sandbox_interface_with_the_address_and_the_host_veth() {
    let ip = "10.88.0.7".parse().unwrap();
    assert_eq!(link_of(&cni_result(), "berth0", ip), Ok(link("10.88.0.7")));

    // Without interface indexes, the one sandbox interface.
    let mut result = cni_result();
    result["ips"][0]
        .as_object_mut()
        .unwrap()
        .remove("interface");
    assert_eq!(link_of(&result, "berth0", ip), Ok(link("10.88.0.7")));
}

#[test]
fn an_unusable_result_gives_no_link() {
    let ip: IpAddr = "10.88.0.7".parse().unwrap();
    let broken = |edit: &dyn Fn(&mut Value)| {
        let mut result = cni_result();
        edit(&mut result);
        link_of(&result, "berth0", ip).unwrap_err()
    };
    let error = broken(&|r| r["interfaces"][2]["mac"] = json!("not-a-mac"));
    assert!(error.contains("no usable MAC"), "{error}");
    let error = broken(&|r| {
        r["interfaces"][2].as_object_mut().unwrap().remove("mac");
    });
    assert!(error.contains("no usable MAC"), "{error}");
    let error = broken(&|r| r["interfaces"][1]["name"] = json!("veth\" accept"));
    assert!(error.contains("not usable"), "{error}");
    let error = broken(&|r| r["interfaces"][1]["name"] = json!("a-very-long-interface"));
    assert!(error.contains("not usable"), "{error}");
    let error = broken(&|r| {
        r["interfaces"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "veth2"}))
    });
    assert!(error.contains("one host-side veth"), "{error}");
    let error = broken(&|r| {
        r["interfaces"].as_array_mut().unwrap().remove(2);
        r["ips"][0].as_object_mut().unwrap().remove("interface");
    });
    assert!(error.contains("no sandbox interface"), "{error}");
    assert!(link_of(&json!({"interfaces": 3}), "berth0", ip).is_err());
}

#[test]
fn a_table_listing_gives_its_chains_and_elements() {
    // `nft -j list table bridge berth-berth0` (nftables 1.0.6), rules left out.
    let listing = br#"{"nftables": [
        {"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}},
        {"table": {"family": "bridge", "name": "berth-berth0", "handle": 7}},
        {"map": {"family": "bridge", "name": "groups", "table": "berth-berth0", "type": "ifname",
                 "handle": 2, "map": "verdict",
                 "elem": [["veth1", {"jump": {"target": "g-e92f0af841f62a91"}}]]}},
        {"chain": {"family": "bridge", "table": "berth-berth0", "name": "prerouting", "handle": 1,
                   "type": "filter", "hook": "prerouting", "prio": -300, "policy": "accept"}},
        {"chain": {"family": "bridge", "table": "berth-berth0", "name": "g-e92f0af841f62a91",
                   "handle": 3}}
    ]}"#;
    assert_eq!(
        TableState::parse(listing).unwrap(),
        TableState {
            chains: BTreeSet::from(["prerouting".to_string(), "g-e92f0af841f62a91".to_string()]),
            elements: vec![("veth1".to_string(), "g-e92f0af841f62a91".to_string())],
        }
    );
    // An empty map has no "elem".
    let empty = br#"{"nftables": [{"map": {"name": "groups", "map": "verdict"}}]}"#;
    assert_eq!(TableState::parse(empty).unwrap(), TableState::default());
    let odd = br#"{"nftables": [{"map": {"name": "groups", "elem": [["veth1", "accept"]]}}]}"#;
    assert!(TableState::parse(odd).is_err());
    assert!(TableState::parse(b"not json").is_err());
}
