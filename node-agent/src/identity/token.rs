//! The join token: `<id>.<secret>.<ca-hash>` (kubeadm's shape plus the CA pin).

use std::fmt;
use std::str::FromStr;

/// A parsed join token. `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct JoinToken {
    id: String,
    secret: String,
    ca_sha256: [u8; 32],
}

/// Why a string is not a join token. Messages never contain the secret.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum JoinTokenError {
    /// Not three dot-separated parts.
    #[error(
        "a join token has three dot-separated parts, <id>.<secret>.<ca-sha256>, but this one has {0}"
    )]
    Parts(usize),
    /// The id is not 6 lower-case alphanumerics.
    #[error("the join token id must be 6 lower-case letters or digits")]
    Id,
    /// The secret is not 16 lower-case alphanumerics.
    #[error("the join token secret must be 16 lower-case letters or digits")]
    Secret,
    /// The CA pin is not 64 hex digits.
    #[error("the join token CA hash must be 64 hex digits (the SHA-256 of the cluster CA's DER)")]
    CaHash,
}

fn lower_alnum(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

impl FromStr for JoinToken {
    type Err = JoinTokenError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.trim().split('.').collect();
        let [id, secret, hash] = parts[..] else {
            return Err(JoinTokenError::Parts(parts.len()));
        };
        if !lower_alnum(id, 6) {
            return Err(JoinTokenError::Id);
        }
        if !lower_alnum(secret, 16) {
            return Err(JoinTokenError::Secret);
        }
        let mut ca_sha256 = [0u8; 32];
        if hash.len() != 64 || hex::decode_to_slice(hash, &mut ca_sha256).is_err() {
            return Err(JoinTokenError::CaHash);
        }
        Ok(Self {
            id: id.to_string(),
            secret: secret.to_string(),
            ca_sha256,
        })
    }
}

impl JoinToken {
    /// The token id (public; names the token in logs and on the server).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// What `JoinRequest.token` carries: `<id>.<secret>`, without the pin.
    pub fn credential(&self) -> String {
        format!("{}.{}", self.id, self.secret)
    }

    /// The SHA-256 of the cluster CA certificate's DER that the server's chain must contain.
    pub fn ca_sha256(&self) -> [u8; 32] {
        self.ca_sha256
    }
}

impl fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinToken")
            .field("id", &self.id)
            .field("secret", &"<redacted>")
            .field("ca_sha256", &hex::encode(self.ca_sha256))
            .finish()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const HASH: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn a_well_formed_token_parses() {
        let token: JoinToken = format!("abc123.0123456789abcdef.{HASH}").parse().unwrap();
        assert_eq!(token.id(), "abc123");
        assert_eq!(token.credential(), "abc123.0123456789abcdef");
        assert_eq!(hex::encode(token.ca_sha256()), HASH);
    }

    #[test]
    fn an_upper_case_hash_is_accepted() {
        let token: JoinToken = format!("abc123.0123456789abcdef.{}", HASH.to_uppercase())
            .parse()
            .unwrap();
        assert_eq!(hex::encode(token.ca_sha256()), HASH);
    }

    #[test]
    fn bad_shapes_are_rejected_with_the_reason() {
        let cases = [
            ("", JoinTokenError::Parts(1)),
            ("abc123.0123456789abcdef", JoinTokenError::Parts(2)),
            (
                &format!("abc123.0123456789abcdef.{HASH}.x"),
                JoinTokenError::Parts(4),
            ),
            (
                &format!("abc12.0123456789abcdef.{HASH}"),
                JoinTokenError::Id,
            ),
            (
                &format!("ABC123.0123456789abcdef.{HASH}"),
                JoinTokenError::Id,
            ),
            (
                &format!("abc123.0123456789abcde.{HASH}"),
                JoinTokenError::Secret,
            ),
            (
                &format!("abc123.0123456789abcde-.{HASH}"),
                JoinTokenError::Secret,
            ),
            ("abc123.0123456789abcdef.abcd", JoinTokenError::CaHash),
            (
                &format!("abc123.0123456789abcdef.{}", HASH.replace('a', "g")),
                JoinTokenError::CaHash,
            ),
        ];
        for (input, want) in cases {
            assert_eq!(input.parse::<JoinToken>(), Err(want), "input {input:?}");
        }
    }

    #[test]
    fn errors_and_debug_never_show_the_secret() {
        let token: JoinToken = format!("abc123.s3cr3ts3cr3ts3cr.{HASH}").parse().unwrap();
        assert!(!format!("{token:?}").contains("s3cr3t"));
        let err = format!("abc123.s3cr3t.{HASH}")
            .parse::<JoinToken>()
            .unwrap_err();
        assert!(!err.to_string().contains("s3cr3t"));
        assert!(err.to_string().contains("16 lower-case"));
    }
}
