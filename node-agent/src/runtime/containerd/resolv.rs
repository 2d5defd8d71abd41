//! The files that tell a group's containers who they are and where names resolve: `/etc/hostname`,
//! `/etc/hosts` and `/etc/resolv.conf`, as text (the worker writes them under the group's `etc/`).

use berth_proto::node::GroupSpec;

/// The node's own resolver configuration.
const NODE_RESOLV_CONF: &str = "/etc/resolv.conf";

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

/// `/etc/resolv.conf` of a group: its `dnsConfig` exactly when it names servers, else `node` (the
/// node's resolv.conf) minus loopback resolvers, which are unreachable from the group's namespace.
pub(super) fn resolv_conf(spec: &GroupSpec, node: &str) -> String {
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
    for line in node.lines() {
        let loopback = line
            .strip_prefix("nameserver")
            .map(str::trim)
            .is_some_and(|ip| ip.starts_with("127.") || ip == "::1");
        if !loopback {
            out.push_str(line);
            out.push('\n');
        }
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

    #[test]
    fn the_node_resolvers_minus_loopback() {
        let node = "nameserver 127.0.0.53\nnameserver 192.0.2.1\nnameserver ::1\nsearch lan\n";
        let conf = resolv_conf(&GroupSpec::default(), node);
        assert_eq!(conf, "nameserver 192.0.2.1\nsearch lan\n");
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
        let conf = resolv_conf(&spec, "nameserver 192.0.2.1\n");
        assert_eq!(
            conf,
            "nameserver 192.0.2.9\nnameserver 192.0.2.10\nsearch a.example b.example\n\
             options ndots:2 timeout:1\n"
        );
    }
}
