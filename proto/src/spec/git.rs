//! gitRepo volumes: which repositories a group may clone, into which directory, at which revision.
//!
//! ACI clones a public repository URL. Only network transports with a host are accepted (`https`,
//! `http`, `git`, `ssh`): never `file://`, a bare path, `ext::` or a transport helper, which would make
//! git read the node itself. The node clones inside the group's network namespace as an unprivileged
//! user with git's `protocol.allow` limited to [`TRANSPORTS`], so what passes here still reaches only
//! what the group could reach.

/// The transports a gitRepo volume may use (git's `protocol.<name>.allow`).
pub const TRANSPORTS: [&str; 4] = ["https", "http", "git", "ssh"];

/// The longest repository URL accepted, in bytes.
pub const MAX_URL: usize = 2048;

/// The longest revision accepted, in bytes.
pub const MAX_REVISION: usize = 255;

/// Why a gitRepo field is refused; the text completes "The value of '<field>' is invalid: …".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GitError {
    #[error(
        "a repository is an https://, http://, git:// or ssh:// URL with a host, of at most {MAX_URL} bytes, \
         without spaces or control characters"
    )]
    Repository,
    #[error(
        "the directory {0:?} must be a relative path inside the volume: no '..', no leading '/' or '-', no \
         control characters"
    )]
    Directory(String),
    #[error(
        "a revision is a commit, branch or tag name of at most {MAX_REVISION} bytes, not starting with '-', \
         without spaces or control characters"
    )]
    Revision,
}

/// A repository URL: `scheme://[user@]host[:port][/path]` with a scheme of [`TRANSPORTS`] (in lower
/// case, as git matches them), in printable ASCII without spaces or backslashes, no part of it able to
/// pass for an option.
pub fn repository(url: &str) -> Result<(), GitError> {
    if url.len() > MAX_URL || !url.bytes().all(|b| b.is_ascii_graphic() && b != b'\\') {
        return Err(GitError::Repository);
    }
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(GitError::Repository);
    };
    if !TRANSPORTS.contains(&scheme) {
        return Err(GitError::Repository);
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let (user, host_port) = match authority.rsplit_once('@') {
        Some((user, host_port)) => (Some(user), host_port),
        None => (None, authority),
    };
    if user.is_some_and(|u| u.is_empty() || u.starts_with('-')) || !host(host_port) {
        return Err(GitError::Repository);
    }
    Ok(())
}

/// `host[:port]`: a DNS name or IPv4 address, or an IPv6 address in brackets, and a numeric port.
fn host(host_port: &str) -> bool {
    let (host, port) = if let Some(rest) = host_port.strip_prefix('[') {
        let Some((v6, after)) = rest.split_once(']') else {
            return false;
        };
        if v6.parse::<std::net::Ipv6Addr>().is_err() {
            return false;
        }
        match after {
            "" => return true,
            after => match after.strip_prefix(':') {
                Some(port) => ("v6", Some(port)),
                None => return false,
            },
        }
    } else {
        match host_port.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (host_port, None),
        }
    };
    let label = |l: &str| {
        !l.is_empty()
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    host.split('.').all(label) && port.is_none_or(|p| p.parse::<u16>().is_ok_and(|p| p > 0))
}

/// The directory a clone goes to when the spec names none: the last segment of the repository's path
/// without `.git`, as `git clone` itself chooses; `repo` when the URL has no path.
pub fn default_directory(url: &str) -> String {
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    let path = after_scheme
        .split(['?', '#'])
        .next()
        .unwrap_or_default()
        .split_once('/')
        .map_or("", |(_, path)| path)
        .trim_end_matches('/');
    let base = path.rsplit('/').next().unwrap_or_default();
    let base = base.strip_suffix(".git").unwrap_or(base);
    if base.is_empty() || base.contains([':', '@']) {
        "repo".to_owned()
    } else {
        base.to_owned()
    }
}

/// The directory a clone goes to, inside the volume: `directory` if given, else
/// [`default_directory`]; either must stay inside the volume.
pub fn directory(url: &str, directory: &str) -> Result<String, GitError> {
    let dir = if directory.is_empty() {
        default_directory(url)
    } else {
        directory.to_owned()
    };
    let inside = !dir.starts_with('/')
        && !dir.starts_with('-')
        && dir.len() <= 1024
        && !dir.chars().any(char::is_control)
        && dir
            .split('/')
            .all(|c| c != ".." && c.len() <= super::paths::MAX_COMPONENT);
    if inside {
        Ok(dir)
    } else {
        Err(GitError::Directory(dir))
    }
}

/// A revision to check out after the clone (empty: the remote's default branch).
pub fn revision(revision: &str) -> Result<(), GitError> {
    let valid = revision.len() <= MAX_REVISION
        && !revision.starts_with('-')
        && !revision
            .chars()
            .any(|c| c.is_whitespace() || c.is_control());
    if valid {
        Ok(())
    } else {
        Err(GitError::Revision)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn only_network_transports_with_a_host() {
        for ok in [
            "https://github.com/Azure-Samples/aci-helloworld",
            "https://github.com/x/y.git",
            "https://example.com:8443/r",
            "https://example.com",
            "http://10.0.0.5/r.git",
            "git://example.com/r",
            "ssh://git@example.com:2222/r.git",
            "https://user:token@example.com/r",
            "http://[::1]:8080/r",
            "http://[fd00::1]/r",
        ] {
            assert_eq!(repository(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "file:///etc",
            "FILE:///etc/repo",
            "/srv/repo",
            "./repo",
            "repo",
            "--upload-pack=touch /tmp/x",
            "-u",
            "ext::sh -c touch% /tmp/x",
            "git@github.com:x/y.git",
            "https://",
            "https:///path",
            "https://user@/x",
            "https://-host/x",
            "https://host:99999/x",
            "https://host:0/x",
            "https://ho st/x",
            "https://host/x y",
            "https://host/\nx",
            "fd::x",
            "http://[::1/x",
            "gopher://host/x",
            "HTTPS://example.com/r",
            "https://@example.com/r",
            "ssh://-user@host/r",
            "ssh://-oProxyCommand=id/r",
            "https://example.com\\@evil/r",
            "https://h\u{e9}/r",
        ] {
            assert_eq!(repository(bad), Err(GitError::Repository), "{bad:?}");
        }
        assert!(repository(&format!("https://h/{}", "a".repeat(MAX_URL))).is_err());
    }

    #[test]
    fn directories_stay_inside_the_volume() {
        let url = "https://example.com/a/site.git";
        assert_eq!(directory(url, "").as_deref(), Ok("site"));
        assert_eq!(directory(url, "code").as_deref(), Ok("code"));
        assert_eq!(directory(url, ".").as_deref(), Ok("."));
        assert_eq!(directory(url, "a/b").as_deref(), Ok("a/b"));
        assert_eq!(directory("https://example.com/", "").as_deref(), Ok("repo"));
        assert_eq!(directory("https://example.com", "").as_deref(), Ok("repo"));
        assert_eq!(
            directory("https://example.com/..", ""),
            Err(GitError::Directory("..".into()))
        );
        for bad in ["/etc", "..", "../x", "a/../../x", "-x", "a\0b"] {
            assert!(directory(url, bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn revisions_cannot_be_options() {
        assert_eq!(revision(""), Ok(()));
        assert_eq!(revision("v1.2.3"), Ok(()));
        assert_eq!(revision("0123abcd"), Ok(()));
        for bad in ["-b", "--orphan", "a b", "a\nb"] {
            assert_eq!(revision(bad), Err(GitError::Revision), "{bad:?}");
        }
    }

    proptest! {
        /// An accepted URL names one of the transports and never starts like an option or a path.
        #[test]
        fn accepted_urls_are_network_urls(url in "(https?|git|ssh|file|ext)?(://|:|/)?[a-z@:.\\[\\]0-9-]{0,20}(/[a-z.]{0,5}){0,3}") {
            if repository(&url).is_ok() {
                let scheme = url.split("://").next().unwrap_or_default();
                prop_assert!(TRANSPORTS.contains(&scheme), "{url}");
                prop_assert!(!url.starts_with('-') && !url.starts_with('/'));
            }
        }

        /// Whatever directory is accepted (given or derived) stays inside the volume.
        #[test]
        fn accepted_directories_never_climb(url in "https://h(/[a-z.]{0,4}){0,3}/?", dir in "(\\.\\.|\\.|/|-|[a-z]{1,3}){0,5}") {
            if let Ok(d) = directory(&url, &dir) {
                let path = std::path::Path::new(&d);
                prop_assert!(path.components().all(|c| matches!(c, std::path::Component::Normal(_) | std::path::Component::CurDir)), "{d:?}");
            }
        }
    }
}
