//! Names in a spec that the node turns into path components, cgroup names or environment entries:
//! containers, volumes, environment variables, secret files, Azure file shares and storage accounts.
//!
//! Each rule is ACI's (or Azure Storage's, for shares), and each one implies the node's own need: a
//! name that passes is one plain path component with no NUL, no `/` and no `.`/`..`.

/// Why a name breaks its rule; the text completes "The value of '<field>' is invalid: …".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// A container name: 1-63 lower-case letters, digits and hyphens, not starting or ending with one.
    #[error(
        "'{0}' is not a container name: 1 to 63 lower-case letters, digits and hyphens, starting and ending \
         with a letter or digit"
    )]
    Container(String),
    /// A volume name: 5-63 lower-case letters, digits and hyphens, no `--`, not starting or ending
    /// with a hyphen.
    #[error(
        "'{0}' is not a volume name: 5 to 63 lower-case letters, digits and hyphens, starting and ending with \
         a letter or digit, without '--'"
    )]
    Volume(String),
    /// An environment variable name: a letter, then letters, digits and underscores, not ending in an
    /// underscore, 1-63 characters.
    #[error(
        "'{0}' is not an environment variable name: 1 to 63 letters, digits and underscores, starting with a \
         letter and ending with a letter or digit"
    )]
    EnvVar(String),
    /// A secret volume's file name: one path component of 1-255 bytes.
    #[error(
        "{0:?} is not a secret file name: 1 to 255 bytes without '/', NUL or control characters, not '.' or '..'"
    )]
    SecretFile(String),
    /// An Azure file share name (Azure Storage's rule).
    #[error(
        "'{0}' is not a file share name: 3 to 63 lower-case letters, digits and hyphens, starting and ending \
         with a letter or digit, without '--'"
    )]
    Share(String),
    /// A storage account name (Azure Storage's rule).
    #[error("'{0}' is not a storage account name: 3 to 24 lower-case letters and digits")]
    StorageAccount(String),
}

fn lower_alnum(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

/// Lower-case letters, digits and hyphens, `min..=max` long, starting and ending with a letter or digit,
/// and (if `no_double_hyphen`) without `--`.
fn dns_like(name: &str, min: usize, max: usize, no_double_hyphen: bool) -> bool {
    let (Some(first), Some(last)) = (name.chars().next(), name.chars().last()) else {
        return false;
    };
    (min..=max).contains(&name.len())
        && lower_alnum(first)
        && lower_alnum(last)
        && name.chars().all(|c| lower_alnum(c) || c == '-')
        && !(no_double_hyphen && name.contains("--"))
}

/// A container's (or init container's) name.
pub fn container(name: &str) -> Result<(), NameError> {
    if dns_like(name, 1, 63, false) {
        Ok(())
    } else {
        Err(NameError::Container(name.to_owned()))
    }
}

/// A volume's name.
pub fn volume(name: &str) -> Result<(), NameError> {
    if dns_like(name, 5, 63, true) {
        Ok(())
    } else {
        Err(NameError::Volume(name.to_owned()))
    }
}

/// An environment variable's name. A leading digit is refused: no shell can name such a variable.
pub fn env_var(name: &str) -> Result<(), NameError> {
    let alnum = |c: char| c.is_ascii_alphanumeric();
    let valid = (1..=63).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.ends_with(alnum)
        && name.chars().all(|c| alnum(c) || c == '_');
    if valid {
        Ok(())
    } else {
        Err(NameError::EnvVar(name.to_owned()))
    }
}

/// Whether `name` is one plain path component: not empty, not `.` or `..`, no `/` and no NUL.
pub fn is_plain(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\0'])
}

/// A file name in a secret volume.
pub fn secret_file(name: &str) -> Result<(), NameError> {
    if is_plain(name) && name.len() <= 255 && !name.chars().any(char::is_control) {
        Ok(())
    } else {
        Err(NameError::SecretFile(name.to_owned()))
    }
}

/// An Azure file share's name.
pub fn share(name: &str) -> Result<(), NameError> {
    if dns_like(name, 3, 63, true) {
        Ok(())
    } else {
        Err(NameError::Share(name.to_owned()))
    }
}

/// A storage account's name.
pub fn storage_account(name: &str) -> Result<(), NameError> {
    if (3..=24).contains(&name.len()) && name.chars().all(lower_alnum) {
        Ok(())
    } else {
        Err(NameError::StorageAccount(name.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn names_follow_aci() {
        for ok in ["a", "web", "a-b", "0", "x".repeat(63).as_str()] {
            assert_eq!(container(ok), Ok(()), "{ok}");
        }
        for bad in ["", "-a", "a-", "A", "a_b", "a.b", "x".repeat(64).as_str()] {
            assert!(container(bad).is_err(), "{bad}");
        }
        for ok in ["cache", "my-vol-1", "12345"] {
            assert_eq!(volume(ok), Ok(()), "{ok}");
        }
        for bad in ["abc", "my--vol", "-abcd", "Abcde", "a/bcd", "..abc"] {
            assert!(volume(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn env_names_start_with_a_letter() {
        for ok in ["A", "PATH", "my_var", "X1", "a_b_c"] {
            assert_eq!(env_var(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "1abc",
            "_A",
            "A_",
            "A-B",
            "A B",
            "A=B",
            "Ä",
            "x".repeat(64).as_str(),
        ] {
            assert!(env_var(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn shares_and_accounts_follow_azure_storage() {
        assert_eq!(share("keep"), Ok(()));
        assert_eq!(storage_account("acct"), Ok(()));
        for bad in ["../../..", "a/b", "..", "ab", "a--b", "A"] {
            assert!(share(bad).is_err(), "{bad}");
            assert!(storage_account(bad).is_err(), "{bad}");
        }
        assert!(storage_account("a-b").is_err());
        assert!(storage_account(&"a".repeat(25)).is_err());
    }

    #[test]
    fn secret_files_are_one_component() {
        assert_eq!(secret_file("tls.crt"), Ok(()));
        assert_eq!(secret_file(".hidden"), Ok(()));
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "/a",
            "a\0b",
            "a\nb",
            "x".repeat(256).as_str(),
        ] {
            assert!(secret_file(bad).is_err(), "{bad:?}");
        }
    }

    proptest! {
        /// Whatever a name rule accepts is one plain path component: it cannot climb out of the
        /// directory the node puts it in.
        #[test]
        fn accepted_names_are_plain_components(name in "\\PC{0,70}|[a-z0-9./-]{0,12}") {
            for rule in [container, volume, env_var, secret_file, share, storage_account] {
                if rule(&name).is_ok() {
                    prop_assert!(is_plain(&name), "{name:?}");
                    prop_assert!(!name.chars().any(char::is_control), "{name:?}");
                }
            }
        }
    }
}
