//! The rule builder and the listing parser.

#![allow(clippy::unwrap_used)]

use super::*;

/// iptables chain names are at most 28 characters.
const MAX_CHAIN_LEN: usize = 28;

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|arg| arg.to_string()).collect()
}

fn port(port: u16, protocol: Protocol) -> PortSpec {
    PortSpec { port, protocol }
}

#[test]
fn chain_names_fit_iptables_and_differ_per_node_and_group() {
    let longest = "a-bridge-name15";
    for name in [
        forward_chain(longest),
        input_chain(longest),
        group_chain(longest, &"g".repeat(64)),
    ] {
        assert!(name.len() <= MAX_CHAIN_LEN, "{name}");
    }
    assert_eq!(forward_chain("berth0"), "BERTH-FWD-berth0");
    assert_eq!(input_chain("berth0"), "BERTH-IN-berth0");
    let chain = group_chain("berth0", "group-a");
    // Stable across agent versions: it is found again after an upgrade.
    assert_eq!(chain, "BERTH-G-e92f0af841f62a91");
    assert_eq!(chain.len(), 24);
    assert_ne!(chain, group_chain("berth1", "group-a"));
    assert_ne!(chain, group_chain("berth0", "group-b"));
    // The separator keeps (bridge, id) pairs apart.
    assert_ne!(group_chain("ab", "c"), group_chain("a", "bc"));
}

#[test]
fn the_node_drops_what_no_group_accepts_and_answers_only_dns() {
    let node = node_rules(Family::V4, "berth0", "10.88.0.0/16");
    assert_eq!(
        node.chains,
        ["BERTH-FWD-berth0", "BERTH-IN-berth0", "CNI-FORWARD"]
    );
    let rules: Vec<(String, Vec<String>)> = node
        .rules
        .iter()
        .map(|rule| (rule.chain.clone(), rule.spec.clone()))
        .collect();
    let fwd = "BERTH-FWD-berth0".to_string();
    let input = "BERTH-IN-berth0".to_string();
    assert_eq!(
        rules,
        [
            (
                fwd.clone(),
                strings(&[
                    "-d",
                    "10.88.0.0/16",
                    "-m",
                    "conntrack",
                    "--ctstate",
                    "RELATED,ESTABLISHED",
                    "-j",
                    "ACCEPT"
                ])
            ),
            (
                fwd.clone(),
                strings(&["-i", "berth0", "-d", "169.254.0.0/16", "-j", "DROP"])
            ),
            (fwd, strings(&["-d", "10.88.0.0/16", "-j", "DROP"])),
            (
                input.clone(),
                strings(&[
                    "-m",
                    "conntrack",
                    "--ctstate",
                    "RELATED,ESTABLISHED",
                    "-j",
                    "ACCEPT"
                ])
            ),
            (
                input.clone(),
                strings(&["-p", "udp", "-m", "udp", "--dport", "53", "-j", "ACCEPT"])
            ),
            (
                input.clone(),
                strings(&["-p", "tcp", "-m", "tcp", "--dport", "53", "-j", "ACCEPT"])
            ),
            (input, strings(&["-j", "DROP"])),
        ]
    );
    let hooks: Vec<String> = node.hooks.iter().map(Rule::to_string).collect();
    assert_eq!(
        hooks,
        [
            "-A CNI-FORWARD -m comment --comment \"CNI firewall plugin admin overrides\" -j BERTH-FWD-berth0",
            "-A FORWARD -m comment --comment \"CNI firewall plugin rules\" -j CNI-FORWARD",
            "-A INPUT -i berth0 -j BERTH-IN-berth0",
        ]
    );
    assert_eq!(
        node.hooks[0].args("-I", Some("1")),
        strings(&[
            "-I",
            "CNI-FORWARD",
            "1",
            "-m",
            "comment",
            "--comment",
            "CNI firewall plugin admin overrides",
            "-j",
            "BERTH-FWD-berth0"
        ])
    );
}

#[test]
fn an_ipv6_node_allows_neighbour_discovery_and_has_no_link_local_v4_rule() {
    let node = node_rules(Family::V6, "berth6", "fd00:88::/64");
    let listed: Vec<String> = node.rules.iter().map(Rule::to_string).collect();
    assert!(!listed.iter().any(|rule| rule.contains("169.254")));
    let forward: Vec<&String> = listed
        .iter()
        .filter(|rule| rule.starts_with("-A BERTH-FWD-berth6 "))
        .collect();
    assert_eq!(
        forward,
        [
            "-A BERTH-FWD-berth6 -d fd00:88::/64 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
            "-A BERTH-FWD-berth6 -p ipv6-icmp -m icmp6 --icmpv6-type 135 -j ACCEPT",
            "-A BERTH-FWD-berth6 -p ipv6-icmp -m icmp6 --icmpv6-type 136 -j ACCEPT",
            "-A BERTH-FWD-berth6 -d fd00:88::/64 -j DROP",
        ]
    );
    let input: Vec<&String> = listed
        .iter()
        .filter(|rule| rule.starts_with("-A BERTH-IN-berth6 "))
        .collect();
    assert_eq!(
        input,
        [
            "-A BERTH-IN-berth6 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
            "-A BERTH-IN-berth6 -p udp -m udp --dport 53 -j ACCEPT",
            "-A BERTH-IN-berth6 -p tcp -m tcp --dport 53 -j ACCEPT",
            "-A BERTH-IN-berth6 -p ipv6-icmp -m icmp6 --icmpv6-type 135 -j ACCEPT",
            "-A BERTH-IN-berth6 -p ipv6-icmp -m icmp6 --icmpv6-type 136 -j ACCEPT",
            "-A BERTH-IN-berth6 -j DROP",
        ]
    );
    assert_eq!(Family::V6.program(), "ip6tables");
    let group = group_rules("berth6", "g", "fd00:88::5".parse().unwrap(), &[]);
    assert_eq!(
        group.jump.spec,
        strings(&["-d", "fd00:88::5/128", "-j", &group.chain])
    );
}

#[test]
fn a_group_accepts_exactly_its_exposed_ports() {
    let ip = "10.88.0.7".parse().unwrap();
    let ports = [port(80, Protocol::Tcp), port(53, Protocol::Udp)];
    let group = group_rules("berth0", "group-a", ip, &ports);
    let chain = group_chain("berth0", "group-a");
    assert_eq!(group.chain, chain);
    let args: Vec<Vec<String>> = group.rules.iter().map(|r| r.args("-A", None)).collect();
    assert_eq!(
        args,
        [
            strings(&[
                "-A", &chain, "-p", "tcp", "-m", "tcp", "--dport", "80", "-j", "ACCEPT"
            ]),
            strings(&[
                "-A", &chain, "-p", "udp", "-m", "udp", "--dport", "53", "-j", "ACCEPT"
            ]),
        ]
    );
    assert_eq!(
        group.jump.args("-I", Some("1")),
        strings(&[
            "-I",
            "BERTH-FWD-berth0",
            "1",
            "-d",
            "10.88.0.7/32",
            "-j",
            &chain
        ])
    );
    let closed = group_rules("berth0", "group-a", ip, &[]);
    assert!(closed.rules.is_empty());
    assert_eq!(closed.jump, group.jump);
}

#[test]
fn listings_are_split_like_iptables_quotes_them() {
    assert_eq!(
        split_rule(
            r#"-A CNI-FORWARD -m comment --comment "CNI firewall plugin admin overrides" -j X"#
        ),
        strings(&[
            "-A",
            "CNI-FORWARD",
            "-m",
            "comment",
            "--comment",
            "CNI firewall plugin admin overrides",
            "-j",
            "X"
        ])
    );
    assert_eq!(
        split_rule(r#"  -A  C --comment "a \"b\" \\ c"  -j  D "#),
        strings(&["-A", "C", "--comment", r#"a "b" \ c"#, "-j", "D"])
    );
    assert!(split_rule("").is_empty());

    let listing = "-N BERTH-FWD-b\n\
                   -A BERTH-FWD-b -d 10.1.0.3/32 -j BERTH-G-1\n\
                   -A BERTH-FWD-b -d 10.1.0.2/32 -j BERTH-G-2\n\
                   -A BERTH-FWD-b -d 10.1.0.0/24 -j DROP\n\
                   -A BERTH-FWD-b -d 10.1.0.9/32 -j BERTH-G-1\n\
                   -A OTHER -j BERTH-G-1\n";
    let rules = listed_rules(listing, "BERTH-FWD-b");
    assert_eq!(rules.len(), 4);
    let jumps: Vec<String> = jumps_to(&rules, "BERTH-G-1")
        .into_iter()
        .map(|rule| rule.args("-D", None).join(" "))
        .collect();
    assert_eq!(
        jumps,
        [
            "-D BERTH-FWD-b -d 10.1.0.3/32 -j BERTH-G-1",
            "-D BERTH-FWD-b -d 10.1.0.9/32 -j BERTH-G-1"
        ]
    );
    assert!(jumps_to(&rules, "BERTH-G-").is_empty());
    // A group's rules read back from a listing compare equal to the ones built.
    let group = group_rules(
        "b",
        "g",
        "10.1.0.2".parse().unwrap(),
        &[port(80, Protocol::Tcp)],
    );
    let listing = format!("-N {}\n{}\n", group.chain, group.rules[0]);
    assert_eq!(listed_rules(&listing, &group.chain), group.rules);
}
