//! Access tokens: JWTs signed with HS256 under the installation's sign-in key.
//!
//! The apiserver is the only party that verifies them, so a shared-secret MAC is enough and no key
//! is published (`jwks_uri` lists none). The payload is readable without the key, as Azure AD's
//! is: clients such as `az` decode it, unverified, for `tid`, `oid` and `appid`. What a token may do
//! is not in it: `appid` names the Berth credential it was issued for, and every request is judged
//! by that credential's current standing (revoked or expired: refused).

use std::path::Path;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::tls::{TlsError, write_file};

const KEY_LEN: usize = 32;

/// Why the sign-in key could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("sign-in key file")]
    File(#[source] TlsError),
    #[error("the sign-in key file {0} must hold exactly 32 bytes")]
    Length(String),
}

/// Why an access token is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// Not a JWT, not signed with this installation's key, or not of its shape.
    Invalid,
    /// Signed by us, but past its `exp` (milliseconds since the epoch).
    Expired { at_ms: i64 },
}

/// The claims of an access token (Azure AD's v1 names).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub aud: String,
    pub iss: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    /// The installation's tenant ([`crate::auth::tenant_id`]).
    pub tid: String,
    /// The principal's object id: a GUID derived from the credential id ([`object_id`]).
    pub oid: String,
    pub sub: String,
    /// The Berth credential (token id) this token was issued for: the OAuth client id.
    pub appid: String,
    pub idtyp: String,
    pub ver: String,
}

/// What a token is issued for.
#[derive(Debug, Clone)]
pub struct Grant<'a> {
    pub credential: &'a str,
    pub audience: &'a str,
    pub issuer: &'a str,
    pub tenant: &'a str,
}

/// Signs and verifies access tokens.
pub struct AccessTokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    kid: String,
    lifetime_secs: i64,
}

impl std::fmt::Debug for AccessTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessTokens")
            .field("kid", &self.kid)
            .field("lifetime_secs", &self.lifetime_secs)
            .finish_non_exhaustive()
    }
}

/// The principal's object id for credential `id`: a version-8 UUID over a label and the id, so the
/// same credential is the same principal on every replica and across restarts.
pub fn object_id(credential: &str) -> String {
    super::derived_guid(b"berth principal\0", credential.as_bytes())
}

impl AccessTokens {
    /// Loads the key at `path`, making a random one (0600) if there is none.
    pub fn load_or_create(path: &Path, lifetime_secs: u64) -> Result<Self, KeyError> {
        if !path.exists() {
            let mut key = [0u8; KEY_LEN];
            rand::rng().fill_bytes(&mut key);
            write_file(path, &key, true).map_err(KeyError::File)?;
        }
        let bytes = std::fs::read(path).map_err(|source| {
            KeyError::File(TlsError::Io {
                path: path.to_owned(),
                source,
            })
        })?;
        if bytes.len() != KEY_LEN {
            return Err(KeyError::Length(path.display().to_string()));
        }
        Ok(Self::with_key(&bytes, lifetime_secs))
    }

    /// Tokens under `key`, each valid for `lifetime_secs` (at least 1).
    pub fn with_key(key: &[u8], lifetime_secs: u64) -> Self {
        let kid = hex::encode(
            &Sha256::new()
                .chain_update(b"berth kid\0")
                .chain_update(key)
                .finalize()[..8],
        );
        Self {
            encoding: EncodingKey::from_secret(key),
            decoding: DecodingKey::from_secret(key),
            kid,
            lifetime_secs: i64::try_from(lifetime_secs.max(1)).unwrap_or(i64::MAX / 2000),
        }
    }

    /// Seconds a token is valid for.
    pub fn lifetime_secs(&self) -> i64 {
        self.lifetime_secs
    }

    /// A signed token for `grant`, valid from `now_ms` for the lifetime.
    pub fn issue(
        &self,
        grant: &Grant<'_>,
        now_ms: i64,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        let now = now_ms.div_euclid(1000);
        let oid = object_id(grant.credential);
        let claims = Claims {
            aud: grant.audience.to_owned(),
            iss: grant.issuer.to_owned(),
            iat: now,
            nbf: now,
            exp: now.saturating_add(self.lifetime_secs),
            tid: grant.tenant.to_owned(),
            sub: oid.clone(),
            oid,
            appid: grant.credential.to_owned(),
            idtyp: "app".to_owned(),
            ver: "1.0".to_owned(),
        };
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, &claims, &self.encoding)
    }

    /// The claims of `token` if it is ours and not expired at `now_ms`.
    pub fn verify(&self, token: &str, now_ms: i64) -> Result<Claims, Rejection> {
        let mut validation = Validation::new(Algorithm::HS256);
        // Time is judged here against `now_ms`, and the audience by the issuer (every token it
        // issues is for this API).
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)
            .map_err(|_| Rejection::Invalid)?;
        let claims = data.claims;
        let at_ms = claims.exp.saturating_mul(1000);
        if now_ms >= at_ms {
            return Err(Rejection::Expired { at_ms });
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;

    use super::*;

    const TENANT: &str = "8d6f1f4a-0000-8000-8000-000000000001";

    fn grant() -> Grant<'static> {
        Grant {
            credential: "abcdefghijkl",
            audience: "https://berth.example:8443/",
            issuer: "https://berth.example:8443/adfs",
            tenant: TENANT,
        }
    }

    fn payload(token: &str) -> serde_json::Value {
        let part = token.split('.').nth(1).unwrap();
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[test]
    fn a_token_verifies_until_it_expires() {
        let tokens = AccessTokens::with_key(&[7; 32], 3600);
        let token = tokens.issue(&grant(), 1_000_000).unwrap();
        let claims = tokens.verify(&token, 1_000_000).unwrap();
        assert_eq!(claims.appid, "abcdefghijkl");
        assert_eq!((claims.iat, claims.exp), (1000, 4600));
        assert!(tokens.verify(&token, 4_599_999).is_ok());
        assert_eq!(
            tokens.verify(&token, 4_600_000),
            Err(Rejection::Expired { at_ms: 4_600_000 })
        );
    }

    #[test]
    fn the_payload_reads_without_the_key_as_az_reads_it() {
        let tokens = AccessTokens::with_key(&[7; 32], 3600);
        let token = tokens.issue(&grant(), 5_000).unwrap();
        let claims = payload(&token);
        for key in [
            "aud", "iss", "exp", "iat", "nbf", "tid", "oid", "appid", "sub",
        ] {
            assert!(claims.get(key).is_some(), "{key} in {claims}");
        }
        assert_eq!(claims["tid"], TENANT);
        assert_eq!(claims["oid"], object_id("abcdefghijkl"));
        assert_eq!(claims["aud"], "https://berth.example:8443/");
        let header = token.split('.').next().unwrap();
        let header: serde_json::Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(header)
                .unwrap(),
        )
        .unwrap();
        assert_eq!(header["alg"], "HS256");
        assert_eq!(header["kid"].as_str().map(str::len), Some(16));
    }

    #[test]
    fn tokens_of_another_key_tampered_or_unsigned_are_invalid() {
        let ours = AccessTokens::with_key(&[7; 32], 3600);
        let theirs = AccessTokens::with_key(&[8; 32], 3600);
        let token = theirs.issue(&grant(), 5_000).unwrap();
        assert_eq!(ours.verify(&token, 5_000), Err(Rejection::Invalid));

        // Another credential's payload under our header and signature.
        let good = ours.issue(&grant(), 5_000).unwrap();
        let other = ours
            .issue(
                &Grant {
                    credential: "zzzzzzzzzzzz",
                    ..grant()
                },
                5_000,
            )
            .unwrap();
        let parts: Vec<&str> = good.split('.').collect();
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            other.split('.').nth(1).unwrap(),
            parts[2]
        );
        assert_eq!(ours.verify(&forged, 5_000), Err(Rejection::Invalid));

        // alg "none" with no signature.
        let none = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(br#"{"alg":"none","typ":"JWT"}"#);
        let unsigned = format!("{none}.{}.", parts[1]);
        assert_eq!(ours.verify(&unsigned, 5_000), Err(Rejection::Invalid));

        for junk in ["", "a.b.c", "berth_x_y", "..."] {
            assert_eq!(ours.verify(junk, 5_000), Err(Rejection::Invalid));
        }
    }

    #[test]
    fn the_key_is_kept_in_the_data_dir() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("signin.key");
        let one = AccessTokens::load_or_create(&path, 60).unwrap();
        let token = one.issue(&grant(), 0).unwrap();
        let again = AccessTokens::load_or_create(&path, 60).unwrap();
        assert!(again.verify(&token, 0).is_ok());
        std::fs::write(&path, b"short").unwrap();
        assert!(matches!(
            AccessTokens::load_or_create(&path, 60),
            Err(KeyError::Length(_))
        ));
    }

    #[test]
    fn object_ids_are_guids_per_credential() {
        assert_eq!(object_id("a"), object_id("a"));
        assert_ne!(object_id("a"), object_id("b"));
        assert!(uuid::Uuid::parse_str(&object_id("a")).is_ok());
    }
}
