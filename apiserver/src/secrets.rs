//! `SecretBox`: encryption at rest for everything secret in a group spec (ChaCha20-Poly1305).

use std::path::Path;

use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};

use crate::tls::{TlsError, write_file};

const NONCE_LEN: usize = 12;

/// Errors of sealing and opening.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The key file could not be read or made.
    #[error("secret key file")]
    KeyFile(#[source] TlsError),
    /// The key file does not hold 32 bytes.
    #[error("the secret key file must hold exactly 32 bytes")]
    KeyLength,
    /// A sealed value did not decrypt: wrong key or tampered data.
    #[error("sealed data does not open with this key")]
    Open,
}

/// Seals and opens values with the cluster's secret key.
pub struct SecretBox {
    cipher: ChaCha20Poly1305,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox")
    }
}

impl SecretBox {
    /// Loads the key at `path`, making a random one (0600) if there is none.
    pub fn load_or_create(path: &Path) -> Result<Self, SecretError> {
        if !path.exists() {
            let key = ChaCha20Poly1305::generate_key(&mut OsRng);
            write_file(path, key.as_slice(), true).map_err(SecretError::KeyFile)?;
        }
        let bytes = std::fs::read(path).map_err(|source| {
            SecretError::KeyFile(TlsError::Io {
                path: path.to_owned(),
                source,
            })
        })?;
        if bytes.len() != 32 {
            return Err(SecretError::KeyLength);
        }
        Ok(Self {
            cipher: ChaCha20Poly1305::new(Key::from_slice(&bytes)),
        })
    }

    /// A box with a fresh random key (tests).
    pub fn ephemeral() -> Self {
        Self {
            cipher: ChaCha20Poly1305::new(&ChaCha20Poly1305::generate_key(&mut OsRng)),
        }
    }

    /// `nonce || ciphertext`.
    pub fn seal(&self, plaintext: &[u8]) -> Vec<u8> {
        let nonce = ChaCha20Poly1305::generate_nonce(&mut OsRng);
        let ciphertext = self
            .cipher
            .encrypt(&nonce, plaintext)
            .expect("ChaCha20-Poly1305 encryption cannot fail");
        let mut out = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ciphertext);
        out
    }

    pub fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, SecretError> {
        if sealed.len() < NONCE_LEN {
            return Err(SecretError::Open);
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        self.cipher
            .decrypt(Nonce::from_slice(nonce), ciphertext)
            .map_err(|_| SecretError::Open)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_their_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets.key");
        let one = SecretBox::load_or_create(&path).unwrap();
        let sealed = one.seal(b"hunter2");
        assert!(
            !sealed.windows(7).any(|w| w == b"hunter2"),
            "plaintext must not appear in sealed bytes"
        );
        let same = SecretBox::load_or_create(&path).unwrap();
        assert_eq!(same.open(&sealed).unwrap(), b"hunter2");
        assert!(SecretBox::ephemeral().open(&sealed).is_err());
        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(same.open(&tampered).is_err());
    }
}
