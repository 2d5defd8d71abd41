//! The files every container of a group sees at `/etc/hosts`, `/etc/resolv.conf` and
//! `/etc/hostname`.

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

pub(super) fn resolv_conf(spec: &berth_proto::node::GroupSpec) -> String {
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
    // The node's resolvers, minus loopback ones (unreachable from the group's namespace).
    let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    for line in host.lines() {
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

pub(super) fn hosts_file(ip: Option<&str>, host: &str) -> String {
    let mut out = String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    if let Some(ip) = ip {
        out.push_str(&format!("{ip}\t{host}\n"));
    }
    out
}
