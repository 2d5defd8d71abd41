//! The files that tell a group's containers who they are and where names resolve: `/etc/hostname`,
//! `/etc/hosts` and `/etc/resolv.conf`, as text (the worker writes them under the group's `etc/`).

use std::net::IpAddr;

use berth_proto::node::GroupSpec;

/// The node's own resolver configuration.
const NODE_RESOLV_CONF: &str = "/etc/resolv.conf";
/// The nameservers glibc and musl read from resolv.conf (`MAXNS`).
const MAX_NAMESERVERS: usize = 3;

/// The group's hostname: its name as a DNS label (lowercase letters, digits and `-`, at most 63).
pub(super) fn hostname(name: &str) -> String {
    let mut host: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(63)
        .collect();
    host = host.trim_matches('-').to_string();
    if host.is_empty() {
        "container-group".into()
    } else {
        host
    }
}

/// `/etc/hosts`: loopback, and the group's own name once its IP is known.
pub(super) fn hosts_file(ip: Option<&str>, host: &str) -> String {
    let mut out = String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    if let Some(ip) = ip {
        out.push_str(&format!("{ip}\t{host}\n"));
    }
    out
}

/// The node's `/etc/resolv.conf`, empty when it cannot be read.
pub(super) fn node_resolv_conf() -> String {
    std::fs::read_to_string(NODE_RESOLV_CONF).unwrap_or_default()
}

/// `/etc/resolv.conf` of a group: its `dnsConfig` exactly when it names servers; else Berth's
/// nameserver `berth` (if any) first, so other groups' names resolve, then `node` (the node's
/// resolv.conf) minus loopback resolvers, which are unreachable from the group's namespace, so
/// names outside Berth's zone resolve too: Berth's server answers those REFUSED, on which glibc
/// asks the next nameserver and musl waits for another's answer (see ARCHITECTURE.md, "Names from
/// inside"). Resolvers read at most [`MAX_NAMESERVERS`]; later ones are left out.
pub(super) fn resolv_conf(spec: &GroupSpec, berth: Option<IpAddr>, node: &str) -> String {
    let mut out = String::new();
    if let Some(dns) = spec
        .dns_config
        .as_ref()
        .filter(|d| !d.name_servers.is_empty())
    {
        for server in &dns.name_servers {
            out.push_str(&format!("nameserver {server}\n"));
        }
        if !dns.search_domains.is_empty() {
            out.push_str(&format!("search {}\n", dns.search_domains.join(" ")));
        }
        if !dns.options.is_empty() {
            out.push_str(&format!("options {}\n", dns.options));
        }
        return out;
    }
    let mut servers = 0;
    if let Some(berth) = berth {
        out.push_str(&format!("nameserver {berth}\n"));
        servers += 1;
    }
    for line in node.lines() {
        if let Some(server) = line.strip_prefix("nameserver").map(str::trim) {
            let loopback = server.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
            let listed = berth.is_some_and(|b| server.parse() == Ok(b));
            if loopback || listed || servers == MAX_NAMESERVERS {
                continue;
            }
            servers += 1;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use berth_proto::node::DnsConfig;

    use super::*;

    #[test]
    fn hostname_is_a_dns_label() {
        assert_eq!(hostname("Web_App.1"), "web-app-1");
        assert_eq!(hostname("--x--"), "x");
        assert_eq!(hostname("___"), "container-group");
        assert_eq!(hostname(&"a".repeat(80)).len(), 63);
    }

    #[test]
    fn hosts_names_the_group_once_its_ip_is_known() {
        assert!(!hosts_file(None, "web").contains("web"));
        assert!(hosts_file(Some("10.88.0.5"), "web").ends_with("10.88.0.5\tweb\n"));
    }

    const NODE: &str =
        "nameserver 127.0.0.53\nnameserver 192.0.2.1\nnameserver ::1\nsearch lan\noptions edns0\n";

    fn berth() -> Option<IpAddr> {
        Some(IpAddr::from([10, 88, 0, 1]))
    }

    #[test]
    fn the_node_resolvers_minus_loopback() {
        let conf = resolv_conf(&GroupSpec::default(), None, NODE);
        assert_eq!(conf, "nameserver 192.0.2.1\nsearch lan\noptions edns0\n");
    }

    #[test]
    fn berths_nameserver_comes_first_then_the_nodes() {
        let conf = resolv_conf(&GroupSpec::default(), berth(), NODE);
        assert_eq!(
            conf,
            "nameserver 10.88.0.1\nnameserver 192.0.2.1\nsearch lan\noptions edns0\n"
        );
    }

    #[test]
    fn berths_nameserver_is_listed_once_and_at_most_three_are() {
        let node = "nameserver 10.88.0.1\nnameserver 192.0.2.1\nnameserver 192.0.2.2\n\
                    nameserver 192.0.2.3\n";
        let conf = resolv_conf(&GroupSpec::default(), berth(), node);
        assert_eq!(
            conf,
            "nameserver 10.88.0.1\nnameserver 192.0.2.1\nnameserver 192.0.2.2\n"
        );
        let v6 = resolv_conf(&GroupSpec::default(), Some("fd00::53".parse().unwrap()), "");
        assert_eq!(v6, "nameserver fd00::53\n");
    }

    #[test]
    fn dns_config_is_honoured_exactly() {
        let spec = GroupSpec {
            dns_config: Some(DnsConfig {
                name_servers: vec!["192.0.2.9".into(), "192.0.2.10".into()],
                search_domains: vec!["a.example".into(), "b.example".into()],
                options: "ndots:2 timeout:1".into(),
            }),
            ..Default::default()
        };
        let expected = "nameserver 192.0.2.9\nnameserver 192.0.2.10\nsearch a.example b.example\n\
                        options ndots:2 timeout:1\n";
        assert_eq!(resolv_conf(&spec, None, NODE), expected);
        assert_eq!(
            resolv_conf(&spec, berth(), NODE),
            expected,
            "neither Berth's nameserver nor the node's are added"
        );
    }
}
