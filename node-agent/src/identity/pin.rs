//! Trusting the apiserver before the node has a CA: the CA pin from the join token.

use std::fmt;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{CertificateError, DigitallySignedStruct, OtherError, RootCertStore, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use sha2::{Digest, Sha256};

/// Accepts the server's chain only if one certificate in it (end-entity or intermediates) hashes
/// (SHA-256 of the DER) to the pin, and the end-entity verifies against that certificate as the only
/// root, for the name dialled.
pub struct PinnedCaVerifier {
    pin: [u8; 32],
    provider: Arc<CryptoProvider>,
}

impl PinnedCaVerifier {
    /// A verifier for the CA whose DER hashes to `pin`.
    pub fn new(pin: [u8; 32], provider: Arc<CryptoProvider>) -> Self {
        Self { pin, provider }
    }
}

impl fmt::Debug for PinnedCaVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PinnedCaVerifier")
            .field("pin", &hex::encode(self.pin))
            .finish_non_exhaustive()
    }
}

/// The server's chain holds no certificate with the pinned hash.
#[derive(thiserror::Error)]
#[error("the server's certificate chain does not contain the CA pinned by the join token ({pin})")]
pub struct PinMismatch {
    pin: String,
}

// rustls shows `CertificateError::Other` with `Debug`: make that the readable message.
impl fmt::Debug for PinMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// SHA-256 of a certificate's DER.
pub(crate) fn cert_sha256(der: &[u8]) -> [u8; 32] {
    Sha256::digest(der).into()
}

impl ServerCertVerifier for PinnedCaVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let pinned = std::iter::once(end_entity)
            .chain(intermediates)
            .find(|cert| cert_sha256(cert.as_ref()) == self.pin)
            .ok_or_else(|| {
                rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(
                    PinMismatch {
                        pin: hex::encode(self.pin),
                    },
                ))))
            })?;
        let mut roots = RootCertStore::empty();
        roots
            .add(pinned.clone().into_owned())
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
        let inner = WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::clone(&self.provider),
        )
        .build()
        .map_err(|e| rustls::Error::General(e.to_string()))?;
        inner.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

    struct Ca {
        der: CertificateDer<'static>,
        issuer: Issuer<'static, KeyPair>,
    }

    fn ca(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).unwrap();
        Ca {
            der: cert.der().clone(),
            issuer: Issuer::new(params, key),
        }
    }

    fn server_cert(ca: &Ca) -> CertificateDer<'static> {
        let key = KeyPair::generate().unwrap();
        let params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params.signed_by(&key, &ca.issuer).unwrap().der().clone()
    }

    fn verify(
        pin_of: &CertificateDer<'_>,
        leaf: &CertificateDer<'_>,
        chain: &[CertificateDer<'_>],
    ) -> Result<ServerCertVerified, rustls::Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = PinnedCaVerifier::new(cert_sha256(pin_of), provider);
        verifier.verify_server_cert(
            leaf,
            chain,
            &ServerName::try_from("localhost").unwrap(),
            &[],
            UnixTime::now(),
        )
    }

    #[test]
    fn accepts_a_chain_that_contains_the_pinned_ca() {
        let ca = ca("cluster");
        let leaf = server_cert(&ca);
        verify(&ca.der, &leaf, std::slice::from_ref(&ca.der)).unwrap();
    }

    #[test]
    fn refuses_a_leaf_signed_by_another_ca_even_with_the_pinned_ca_in_the_chain() {
        let pinned = ca("cluster");
        let other = ca("intruder");
        let leaf = server_cert(&other);
        let err = verify(&pinned.der, &leaf, &[pinned.der.clone(), other.der.clone()]).unwrap_err();
        assert!(
            matches!(err, rustls::Error::InvalidCertificate(_)),
            "got {err:?}"
        );
    }

    #[test]
    fn refuses_a_chain_whose_ca_hash_differs_from_the_pin() {
        let ca = ca("cluster");
        let pinned = ca_named_elsewhere();
        let leaf = server_cert(&ca);
        let err = verify(&pinned, &leaf, std::slice::from_ref(&ca.der)).unwrap_err();
        assert!(err.to_string().contains("pinned"), "got {err}");
    }

    #[test]
    fn refuses_a_wrong_server_name() {
        let ca = ca("cluster");
        let leaf = server_cert(&ca);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = PinnedCaVerifier::new(cert_sha256(&ca.der), provider);
        let err = verifier
            .verify_server_cert(
                &leaf,
                std::slice::from_ref(&ca.der),
                &ServerName::try_from("example.com").unwrap(),
                &[],
                UnixTime::now(),
            )
            .unwrap_err();
        assert!(matches!(err, rustls::Error::InvalidCertificate(_)));
    }

    fn ca_named_elsewhere() -> CertificateDer<'static> {
        ca("cluster").der
    }
}
