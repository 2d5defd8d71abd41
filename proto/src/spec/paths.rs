//! Mount paths: where a volume appears inside a container.
//!
//! A path is compared and mounted in its normal form ([`mount_path`]): `/d`, `/d/` and `//d/./` are one
//! path. The rule refuses what runc would refuse or what would shadow the container's own root, proc
//! filesystem or the files the node writes for the group (`/etc/hosts`, `/etc/resolv.conf`,
//! `/etc/hostname`).

/// The longest mount path accepted, in bytes (well under the kernel's `PATH_MAX` of 4096).
pub const MAX_MOUNT_PATH: usize = 1024;

/// The longest path component, in bytes (the kernel's `NAME_MAX`).
pub const MAX_COMPONENT: usize = 255;

/// Files the node bind-mounts into every container of a group.
pub const MANAGED_FILES: [&str; 3] = ["/etc/hosts", "/etc/resolv.conf", "/etc/hostname"];

/// Why a mount path is refused; the text completes "The value of '<field>' is invalid: …".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("a mount path is absolute (starts with '/')")]
    Relative,
    #[error("a mount path has no ':', NUL or control characters")]
    Character,
    #[error("a mount path may not contain '..'")]
    Parent,
    #[error(
        "a mount path has at most {MAX_MOUNT_PATH} bytes and components of at most {MAX_COMPONENT}"
    )]
    TooLong,
    #[error("a volume cannot be mounted over the container's root '/'")]
    Root,
    #[error("a volume cannot be mounted in /proc")]
    Proc,
    #[error("'{0}' is written by Berth for every container and cannot be a mount path")]
    Managed(&'static str),
}

/// The normal form of a mount path (`//a/./b/` -> `/a/b`), or why it is refused.
pub fn mount_path(path: &str) -> Result<String, PathError> {
    if !path.starts_with('/') {
        return Err(PathError::Relative);
    }
    if path.chars().any(|c| c == ':' || c.is_control()) {
        return Err(PathError::Character);
    }
    if path.len() > MAX_MOUNT_PATH {
        return Err(PathError::TooLong);
    }
    let mut normal = String::with_capacity(path.len());
    for component in path.split('/') {
        match component {
            "" | "." => {}
            ".." => return Err(PathError::Parent),
            c if c.len() > MAX_COMPONENT => return Err(PathError::TooLong),
            c => {
                normal.push('/');
                normal.push_str(c);
            }
        }
    }
    if normal.is_empty() {
        return Err(PathError::Root);
    }
    if normal == "/proc" || normal.starts_with("/proc/") {
        return Err(PathError::Proc);
    }
    if let Some(managed) = MANAGED_FILES.iter().find(|m| **m == normal) {
        return Err(PathError::Managed(managed));
    }
    Ok(normal)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn paths_are_normalised() {
        assert_eq!(mount_path("/d").as_deref(), Ok("/d"));
        assert_eq!(mount_path("/d/").as_deref(), Ok("/d"));
        assert_eq!(mount_path("//a/./b//").as_deref(), Ok("/a/b"));
        assert_eq!(mount_path("/etc/hosts.d").as_deref(), Ok("/etc/hosts.d"));
        assert_eq!(mount_path("/procfs").as_deref(), Ok("/procfs"));
    }

    #[test]
    fn what_the_node_cannot_mount_is_refused() {
        let cases = [
            ("", PathError::Relative),
            ("data", PathError::Relative),
            ("/", PathError::Root),
            ("//./", PathError::Root),
            ("/a\0b", PathError::Character),
            ("/a\nb", PathError::Character),
            ("C:/x", PathError::Relative),
            ("/c:/x", PathError::Character),
            ("/data/../etc", PathError::Parent),
            ("/proc", PathError::Proc),
            ("/proc/sys/x", PathError::Proc),
            ("/etc/resolv.conf", PathError::Managed("/etc/resolv.conf")),
            ("/etc//hosts/", PathError::Managed("/etc/hosts")),
        ];
        for (path, expected) in cases {
            assert_eq!(mount_path(path), Err(expected), "{path:?}");
        }
        assert_eq!(mount_path(&"/a".repeat(2500)), Err(PathError::TooLong));
        assert_eq!(
            mount_path(&format!("/{}", "x".repeat(256))),
            Err(PathError::TooLong)
        );
    }

    proptest! {
        /// The normal form is stable, absolute, short enough, and never climbs or shadows `/`.
        #[test]
        fn normal_forms_are_fixed_points(path in "(/|//|/\\.|/\\.\\.|/[a-z]{1,3}|/proc|/etc/hosts|:|\\x00){0,8}") {
            if let Ok(normal) = mount_path(&path) {
                prop_assert_eq!(mount_path(&normal), Ok(normal.clone()));
                prop_assert!(normal.starts_with('/') && normal.len() > 1);
                prop_assert!(!normal.ends_with('/') && !normal.contains("//"));
                prop_assert!(!normal.split('/').any(|c| c == ".." || c == "."));
                prop_assert!(normal.len() <= MAX_MOUNT_PATH);
            }
        }
    }
}
