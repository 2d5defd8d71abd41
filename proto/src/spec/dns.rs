//! `dnsConfig`: the name servers, search domains and resolver options the node writes into the
//! group's `/etc/resolv.conf`. Each value becomes text on a line of that file, so no value may carry a
//! line break or anything else a resolver would read as a second directive.

use std::net::IpAddr;

/// Why a dnsConfig value is refused; the text completes "The value of '<field>' is invalid: …".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    #[error("'{0}' is not an IP address")]
    NameServer(String),
    #[error(
        "'{0}' is not a domain name (labels of letters, digits, '-' and '_', at most 253 characters)"
    )]
    SearchDomain(String),
    #[error(
        "'{0}' is not a resolver option (letters, digits, ':', '.', '_' and '-', e.g. ndots:2)"
    )]
    Option(String),
}

/// A name server.
pub fn name_server(server: &str) -> Result<(), DnsError> {
    server
        .parse::<IpAddr>()
        .map(|_| ())
        .map_err(|_| DnsError::NameServer(server.to_owned()))
}

/// A space-separated list of search domains, as ACI's `searchDomains` string carries it.
pub fn search_domains(domains: &str) -> Result<(), DnsError> {
    domains
        .split(' ')
        .filter(|d| !d.is_empty())
        .try_for_each(|domain| {
            let name = domain.strip_suffix('.').unwrap_or(domain);
            let label = |l: &str| {
                (1..=63).contains(&l.len())
                    && l.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            };
            if name.len() <= 253 && name.split('.').all(label) {
                Ok(())
            } else {
                Err(DnsError::SearchDomain(domain.to_owned()))
            }
        })
}

/// A space-separated list of resolver options (`ndots:2 timeout:1 rotate`).
pub fn options(options: &str) -> Result<(), DnsError> {
    options
        .split(' ')
        .filter(|o| !o.is_empty())
        .try_for_each(|option| {
            let valid = option.len() <= 64
                && option
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '.' | '_' | '-'));
            if valid {
                Ok(())
            } else {
                Err(DnsError::Option(option.to_owned()))
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_one_line_of_resolv_conf() {
        assert_eq!(name_server("10.0.0.10"), Ok(()));
        assert_eq!(name_server("fd00::53"), Ok(()));
        assert!(name_server("dns.example.com").is_err());
        assert_eq!(search_domains("svc.cluster.local example.com."), Ok(()));
        assert_eq!(search_domains(""), Ok(()));
        assert_eq!(options("ndots:2 timeout:1 rotate"), Ok(()));
        for bad in ["a\nnameserver 1.2.3.4", "a..b", "a/b", "x\u{0}"] {
            assert!(search_domains(bad).is_err(), "{bad:?}");
            assert!(
                options(bad).is_err() || !bad.contains(['\n', '\0']),
                "{bad:?}"
            );
        }
        assert!(options("ndots:2\nnameserver 1.1.1.1").is_err());
        assert!(options("a;b").is_err());
    }
}
