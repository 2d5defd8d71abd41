//! What a container's process gets from the spec: its argv, its environment values and its Linux
//! capabilities.
//!
//! The kernel cannot pass a NUL inside an argument or an environment entry, so a spec with one would be
//! refused by runc at start. Capabilities are Linux's names; adding one beyond Kubernetes' *baseline*
//! Pod Security set (Docker's defaults without `NET_RAW`) is an operator's decision, like privileged
//! containers, because `SYS_ADMIN`, `DAC_READ_SEARCH`, `SYS_MODULE`, `SYS_PTRACE` and their kin let a
//! container reach the node.

/// Every Linux capability (without the `CAP_` prefix), as of Linux 6.x.
pub const CAPABILITIES: [&str; 41] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// Capabilities any tenant may add: Kubernetes' baseline Pod Security Standard.
pub const BASELINE_CAPABILITIES: [&str; 13] = [
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

/// Why a process field is refused; the text completes "The value of '<field>' is invalid: …".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProcessError {
    #[error("a command argument or environment value cannot contain a NUL character")]
    Nul,
    #[error("'{0}' is not a Linux capability (e.g. NET_BIND_SERVICE or CAP_NET_BIND_SERVICE)")]
    UnknownCapability(String),
    #[error(
        "adding capability '{0}' needs an operator's permission for privileged containers; any container may \
         add {baseline}",
        baseline = BASELINE_CAPABILITIES.join(", ")
    )]
    PrivilegedCapability(String),
}

/// One command argument or environment value.
pub fn text(value: &str) -> Result<(), ProcessError> {
    if value.contains('\0') {
        Err(ProcessError::Nul)
    } else {
        Ok(())
    }
}

/// The canonical name (`CAP_NET_ADMIN`) of a capability written `NET_ADMIN` or `CAP_NET_ADMIN`, in
/// upper case as ACI writes it.
pub fn capability(name: &str) -> Result<String, ProcessError> {
    let bare = name.strip_prefix("CAP_").unwrap_or(name);
    if CAPABILITIES.contains(&bare) {
        Ok(format!("CAP_{bare}"))
    } else {
        Err(ProcessError::UnknownCapability(name.to_owned()))
    }
}

/// A capability to drop: a name, or `ALL`.
pub fn capability_to_drop(name: &str) -> Result<Option<String>, ProcessError> {
    if name == "ALL" {
        Ok(None)
    } else {
        capability(name).map(Some)
    }
}

/// A capability to add: a name of the baseline set, or any name if privileged containers are allowed.
pub fn capability_to_add(name: &str, allow_privileged: bool) -> Result<String, ProcessError> {
    let canonical = capability(name)?;
    if allow_privileged || BASELINE_CAPABILITIES.contains(&&canonical[4..]) {
        Ok(canonical)
    } else {
        Err(ProcessError::PrivilegedCapability(name.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_are_linux_names() {
        assert_eq!(capability("NET_ADMIN").as_deref(), Ok("CAP_NET_ADMIN"));
        assert_eq!(capability("CAP_CHOWN").as_deref(), Ok("CAP_CHOWN"));
        for bad in ["", "CAP_", "net_admin", "FOO", "CAP_CAP_CHOWN", "ALL", "_"] {
            assert!(capability(bad).is_err(), "{bad}");
        }
        assert_eq!(capability_to_drop("ALL"), Ok(None));
        assert!(capability_to_drop("all").is_err());
    }

    #[test]
    fn adding_beyond_the_baseline_is_the_operators_call() {
        assert_eq!(
            capability_to_add("NET_BIND_SERVICE", false).as_deref(),
            Ok("CAP_NET_BIND_SERVICE")
        );
        for escape in [
            "SYS_ADMIN",
            "CAP_DAC_READ_SEARCH",
            "SYS_MODULE",
            "NET_ADMIN",
            "NET_RAW",
        ] {
            assert_eq!(
                capability_to_add(escape, false),
                Err(ProcessError::PrivilegedCapability(escape.into()))
            );
            assert!(capability_to_add(escape, true).is_ok());
        }
        assert!(capability_to_add("ALL", true).is_err());
        for cap in BASELINE_CAPABILITIES {
            assert!(CAPABILITIES.contains(&cap), "{cap}");
        }
    }

    #[test]
    fn nul_cannot_reach_exec() {
        assert_eq!(text("sh -c 'echo hi'"), Ok(()));
        assert_eq!(text("a\0b"), Err(ProcessError::Nul));
    }
}
