//! Image references, normalized by Docker's rules: `busybox` is `docker.io/library/busybox:latest`.
//!
//! The apiserver refuses an `image` this parser refuses (400 naming the field); the node agent parses
//! with it to pull.

use std::fmt;

/// Docker Hub's canonical domain in normalized references.
pub const DOCKER_HUB: &str = "docker.io";
/// Where Docker Hub's registry API actually answers.
pub const DOCKER_HUB_REGISTRY: &str = "registry-1.docker.io";
/// The names Docker Hub goes by in references and credentials.
pub const DOCKER_HUB_ALIASES: [&str; 4] = [
    "docker.io",
    "index.docker.io",
    "registry-1.docker.io",
    "registry.hub.docker.com",
];
/// The longest repository path (domain excluded) Docker accepts.
pub const MAX_NAME_LENGTH: usize = 255;

/// A parsed, normalized image reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// The registry as written in the reference (`docker.io`, `127.0.0.1:5000`).
    pub domain: String,
    /// The repository path within the registry (`library/busybox`).
    pub repository: String,
    /// The tag, `latest` when neither a tag nor a digest was given.
    pub tag: Option<String>,
    /// The pinned manifest digest (`sha256:...`), if any.
    pub digest: Option<String>,
}

/// Why a reference string is not a valid image reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error("the reference is empty")]
    Empty,
    #[error("the registry '{0}' is not a valid host[:port]")]
    Domain(String),
    #[error(
        "the repository '{0}' is not valid: use lowercase letters, digits and separators ('.', '_', '-', '/')"
    )]
    Repository(String),
    #[error("the tag '{0}' is not valid: use up to 128 letters, digits, '_', '.' or '-'")]
    Tag(String),
    #[error("the digest '{0}' is not valid: expected sha256: followed by 64 lowercase hex digits")]
    Digest(String),
    #[error("the repository name is longer than {MAX_NAME_LENGTH} characters")]
    TooLong,
}

impl Reference {
    /// Parses and normalizes `input` (`busybox`, `user/x:1`, `localhost:5000/x@sha256:...`).
    pub fn parse(input: &str) -> Result<Self, ReferenceError> {
        let input = input.trim();
        if input.is_empty() {
            return Err(ReferenceError::Empty);
        }
        let (name_and_tag, digest) = match input.split_once('@') {
            Some((rest, digest)) => (rest, Some(parse_digest(digest)?)),
            None => (input, None),
        };
        let (name, tag) = split_tag(name_and_tag);
        let (domain, repository) = split_domain(name)?;
        validate_repository(&repository)?;
        let tag = match tag {
            Some(tag) => Some(validate_tag(tag)?),
            None if digest.is_none() => Some("latest".to_string()),
            None => None,
        };
        Ok(Self {
            domain,
            repository,
            tag,
            digest,
        })
    }

    /// The host\[:port\] that serves the registry API (`registry-1.docker.io` for Docker Hub).
    pub fn registry_host(&self) -> &str {
        if self.domain == DOCKER_HUB {
            DOCKER_HUB_REGISTRY
        } else {
            &self.domain
        }
    }

    /// What to ask the registry's manifest endpoint for: the digest if pinned, else the tag.
    pub fn manifest_reference(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or("latest")
    }

    /// Whether a credential for `server` (as a user typed it, perhaps with a scheme or path) is meant
    /// for this reference's registry.
    pub fn matches_server(&self, server: &str) -> bool {
        let server = server_host(server);
        if self.domain == DOCKER_HUB {
            DOCKER_HUB_ALIASES.contains(&server.as_str())
        } else {
            server == self.domain.to_ascii_lowercase()
        }
    }

    /// The host part of the domain, without port or IPv6 brackets.
    pub fn host_without_port(&self) -> &str {
        host_without_port(&self.domain)
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.domain, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// `host[:port]` without the port, and without brackets for IPv6 (`[::1]:5000` -> `::1`).
pub fn host_without_port(domain: &str) -> &str {
    if let Some(rest) = domain.strip_prefix('[') {
        return rest.split_once(']').map_or(rest, |(host, _)| host);
    }
    domain.split_once(':').map_or(domain, |(host, _)| host)
}

/// A credential's server reduced to `host[:port]`, lowercase: `https://Index.Docker.io/v1/` ->
/// `index.docker.io`.
fn server_host(server: &str) -> String {
    let server = server.trim();
    let server = server
        .strip_prefix("https://")
        .or_else(|| server.strip_prefix("http://"))
        .unwrap_or(server);
    let host = server.split('/').next().unwrap_or(server);
    host.to_ascii_lowercase()
}

/// Splits `name[:tag]`; a colon before the last `/` belongs to the domain's port.
fn split_tag(name_and_tag: &str) -> (&str, Option<&str>) {
    let last_slash = name_and_tag.rfind('/').map_or(0, |i| i + 1);
    match name_and_tag[last_slash..].rfind(':') {
        Some(colon) => {
            let at = last_slash + colon;
            (&name_and_tag[..at], Some(&name_and_tag[at + 1..]))
        }
        None => (name_and_tag, None),
    }
}

/// Splits `[domain/]path` by Docker's rule: the first component is a domain if it contains `.` or
/// `:` or is `localhost`; Docker Hub names without a namespace live in `library/`.
fn split_domain(name: &str) -> Result<(String, String), ReferenceError> {
    let (domain, path) = match name.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            (first.to_string(), rest.to_string())
        }
        _ => (DOCKER_HUB.to_string(), name.to_string()),
    };
    validate_domain(&domain)?;
    let domain = if domain == "index.docker.io" {
        DOCKER_HUB.to_string()
    } else {
        domain
    };
    let path = if domain == DOCKER_HUB && !path.contains('/') {
        format!("library/{path}")
    } else {
        path
    };
    Ok((domain, path))
}

fn validate_domain(domain: &str) -> Result<(), ReferenceError> {
    let invalid = || ReferenceError::Domain(domain.to_string());
    let (host, port) = if let Some(rest) = domain.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(invalid)?;
        if host.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(invalid());
        }
        let port = match after {
            "" => None,
            after => Some(after.strip_prefix(':').ok_or_else(invalid)?),
        };
        (None, port)
    } else {
        match domain.split_once(':') {
            Some((host, port)) => (Some(host), Some(port)),
            None => (Some(domain), None),
        }
    };
    if let Some(host) = host {
        let label_ok = |label: &str| {
            !label.is_empty()
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        };
        if !host.split('.').all(label_ok) {
            return Err(invalid());
        }
    }
    if let Some(port) = port
        && port.parse::<u16>().is_err()
    {
        return Err(invalid());
    }
    Ok(())
}

/// Repository path components: `[a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*`, joined by `/`.
fn validate_repository(path: &str) -> Result<(), ReferenceError> {
    if path.len() > MAX_NAME_LENGTH {
        return Err(ReferenceError::TooLong);
    }
    if path.split('/').all(valid_path_component) {
        Ok(())
    } else {
        Err(ReferenceError::Repository(path.to_string()))
    }
}

fn valid_path_component(component: &str) -> bool {
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    let bytes: Vec<char> = component.chars().collect();
    let (Some(&first), Some(&last)) = (bytes.first(), bytes.last()) else {
        return false;
    };
    if !alnum(first) || !alnum(last) {
        return false;
    }
    // Between alphanumeric runs: one '.', one or two '_', or any number of '-'.
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let separator: String = bytes[start..i].iter().collect();
        let allowed = separator == "."
            || separator == "_"
            || separator == "__"
            || separator.chars().all(|c| c == '-');
        if !allowed {
            return false;
        }
    }
    true
}

fn validate_tag(tag: &str) -> Result<String, ReferenceError> {
    let mut chars = tag.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if first_ok && rest_ok && tag.len() <= 128 {
        Ok(tag.to_string())
    } else {
        Err(ReferenceError::Tag(tag.to_string()))
    }
}

/// Accepts only `sha256:<64 lowercase hex>`: the one algorithm registries use and we verify.
pub fn parse_digest(digest: &str) -> Result<String, ReferenceError> {
    if is_sha256_digest(digest) {
        Ok(digest.to_string())
    } else {
        Err(ReferenceError::Digest(digest.to_string()))
    }
}

/// Whether `digest` is `sha256:` and 64 lowercase hex digits.
pub fn is_sha256_digest(digest: &str) -> bool {
    digest.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64 && hex.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f'))
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn normalizes_like_docker() {
        let cases = [
            (
                "busybox",
                "docker.io/library/busybox:latest",
                "registry-1.docker.io",
            ),
            (
                "busybox:1.36",
                "docker.io/library/busybox:1.36",
                "registry-1.docker.io",
            ),
            (
                "library/busybox",
                "docker.io/library/busybox:latest",
                "registry-1.docker.io",
            ),
            ("user/x", "docker.io/user/x:latest", "registry-1.docker.io"),
            (
                "docker.io/busybox",
                "docker.io/library/busybox:latest",
                "registry-1.docker.io",
            ),
            (
                "index.docker.io/user/x:v1",
                "docker.io/user/x:v1",
                "registry-1.docker.io",
            ),
            ("localhost/x", "localhost/x:latest", "localhost"),
            (
                "localhost:5000/x",
                "localhost:5000/x:latest",
                "localhost:5000",
            ),
            (
                "127.0.0.1:5000/x:tag",
                "127.0.0.1:5000/x:tag",
                "127.0.0.1:5000",
            ),
            ("[::1]:5000/a/b:t", "[::1]:5000/a/b:t", "[::1]:5000"),
            (
                "reg.example.com/a/b/c",
                "reg.example.com/a/b/c:latest",
                "reg.example.com",
            ),
            (
                "mcr.microsoft.com/azuredocs/aci-helloworld",
                "mcr.microsoft.com/azuredocs/aci-helloworld:latest",
                "mcr.microsoft.com",
            ),
            (
                "a_b/c__d/e-f--g.h",
                "docker.io/a_b/c__d/e-f--g.h:latest",
                "registry-1.docker.io",
            ),
        ];
        for (input, normalized, host) in cases {
            let reference = Reference::parse(input).unwrap();
            assert_eq!(reference.to_string(), normalized, "{input}");
            assert_eq!(reference.registry_host(), host, "{input}");
        }
    }

    #[test]
    fn keeps_digests_and_asks_for_them() {
        let pinned = Reference::parse(&format!("reg.example.com/a/b@{DIGEST}")).unwrap();
        assert_eq!(pinned.to_string(), format!("reg.example.com/a/b@{DIGEST}"));
        assert_eq!(pinned.tag, None);
        assert_eq!(pinned.manifest_reference(), DIGEST);

        let both = Reference::parse(&format!("busybox:1.36@{DIGEST}")).unwrap();
        assert_eq!(
            both.to_string(),
            format!("docker.io/library/busybox:1.36@{DIGEST}")
        );
        assert_eq!(both.manifest_reference(), DIGEST);

        let tagged = Reference::parse("localhost:5000/x:v2").unwrap();
        assert_eq!(tagged.manifest_reference(), "v2");
    }

    #[test]
    fn rejects_invalid_references() {
        let cases = [
            ("", ReferenceError::Empty),
            ("   ", ReferenceError::Empty),
            (
                "BusyBox",
                ReferenceError::Repository("library/BusyBox".into()),
            ),
            ("user//x", ReferenceError::Repository("user//x".into())),
            ("x-", ReferenceError::Repository("library/x-".into())),
            ("a...b", ReferenceError::Repository("library/a...b".into())),
            ("busybox:", ReferenceError::Tag(String::new())),
            ("busybox:-x", ReferenceError::Tag("-x".into())),
            (
                "busybox@sha256:abc",
                ReferenceError::Digest("sha256:abc".into()),
            ),
            (
                "busybox@md5:0123",
                ReferenceError::Digest("md5:0123".into()),
            ),
            (
                "host:notaport/x",
                ReferenceError::Domain("host:notaport".into()),
            ),
            (
                "bad_host.com/x",
                ReferenceError::Domain("bad_host.com".into()),
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(Reference::parse(input), Err(expected), "{input:?}");
        }
        let long = format!("a/{}", "b".repeat(300));
        assert_eq!(Reference::parse(&long), Err(ReferenceError::TooLong));
    }

    #[test]
    fn matches_credentials_to_registries() {
        let hub = Reference::parse("user/x").unwrap();
        for server in [
            "docker.io",
            "index.docker.io",
            "https://index.docker.io/v1/",
            "registry-1.docker.io",
        ] {
            assert!(hub.matches_server(server), "{server}");
        }
        assert!(!hub.matches_server("ghcr.io"));

        let local = Reference::parse("127.0.0.1:5000/x").unwrap();
        assert!(local.matches_server("127.0.0.1:5000"));
        assert!(local.matches_server("http://127.0.0.1:5000"));
        assert!(!local.matches_server("127.0.0.1:5001"));
        assert!(!local.matches_server("docker.io"));
        assert_eq!(local.host_without_port(), "127.0.0.1");
        assert_eq!(host_without_port("[::1]:5000"), "::1");
    }
}
