//! `NodeService/Join`: a join token and a CSR in, a node identity out.

use std::sync::Arc;

use berth_proto::node::node_service_client::NodeServiceClient;
use berth_proto::node::{JoinRequest, JoinResponse};
use rustls::crypto::CryptoProvider;
use tonic::Code;

use super::dial::{DialError, ServerAddr, dial};
use crate::identity::{IdentityError, JoinToken, join_client_config};

/// Why a join attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// The apiserver said no (bad or used-up token, name taken, invalid request). Fatal.
    #[error("the apiserver refused the join ({code:?}): {message}")]
    Refused { code: Code, message: String },
    /// The server's certificate is not trusted: the chain lacks the join token's CA pin, or the server
    /// certificate is not signed by it or not for the dialled name. Fatal.
    #[error("the apiserver's certificate is not trusted: {reason}")]
    Untrusted { reason: String },
    /// The identity could not be made or the answer is unusable. Fatal.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// The server could not be reached. Retried.
    #[error("cannot reach the apiserver")]
    Dial(#[source] tonic::transport::Error),
    /// The call failed in a way worth retrying (unavailable, timeout, internal).
    #[error("the join call failed")]
    Call(#[source] tonic::Status),
    /// No server to try (never with a validated config). Retried.
    #[error("no apiserver to join")]
    NoServer,
}

impl JoinError {
    /// Whether retrying cannot help.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            Self::Refused { .. } | Self::Untrusted { .. } | Self::Identity(_)
        )
    }
}

/// Codes that say "try again", not "no".
fn is_transient(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable
            | Code::DeadlineExceeded
            | Code::ResourceExhausted
            | Code::Aborted
            | Code::Internal
            | Code::Unknown
            | Code::Cancelled
    )
}

/// The verifier's own words, without rustls' wrapping of custom errors.
fn untrusted_reason(error: &rustls::Error) -> String {
    match error {
        rustls::Error::InvalidCertificate(rustls::CertificateError::Other(other)) => {
            other.0.to_string()
        }
        other => other.to_string(),
    }
}

/// One join attempt: dial with the pinned-CA verifier and call `Join`.
pub(crate) async fn join_once(
    server: &Arc<ServerAddr>,
    token: &JoinToken,
    request: JoinRequest,
    provider: Arc<CryptoProvider>,
) -> Result<JoinResponse, JoinError> {
    let config = join_client_config(token.ca_sha256(), provider)?;
    let channel = dial(server, Arc::new(config)).await.map_err(|error| {
        match DialError::find_untrusted(&error) {
            Some(DialError::Untrusted { source, .. }) => JoinError::Untrusted {
                reason: untrusted_reason(source),
            },
            _ => JoinError::Dial(error),
        }
    })?;
    let mut client = NodeServiceClient::new(channel);
    match client.join(request).await {
        Ok(response) => Ok(response.into_inner()),
        Err(status) if is_transient(status.code()) => Err(JoinError::Call(status)),
        Err(status) => Err(JoinError::Refused {
            code: status.code(),
            message: status.message().to_string(),
        }),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::identity::pin::cert_sha256;
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    use tokio::net::TcpListener;

    /// A TLS listener presenting [server cert, CA] for 127.0.0.1; it speaks no HTTP, which is enough
    /// to see the client's verdict on the chain.
    async fn tls_listener() -> (std::net::SocketAddr, CertificateDer<'static>) {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["127.0.0.1".to_string()])
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![leaf.der().clone(), ca.der().clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )
            .unwrap();
        config.alpn_protocols = vec![b"h2".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let _ = acceptor.accept(tcp).await;
                });
            }
        });
        (addr, ca.der().clone())
    }

    #[tokio::test]
    async fn a_server_without_the_pinned_ca_is_a_fatal_join_error() {
        let (addr, _ca) = tls_listener().await;
        let server = Arc::new(format!("https://{addr}").parse::<ServerAddr>().unwrap());
        let token: JoinToken = format!("abc123.0123456789abcdef.{}", "ab".repeat(32))
            .parse()
            .unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let err = join_once(&server, &token, JoinRequest::default(), provider)
            .await
            .unwrap_err();
        assert!(matches!(err, JoinError::Untrusted { .. }), "{err:?}");
        assert!(
            err.to_string()
                .ends_with("does not contain the CA pinned by the join token (abababababababababababababababababababababababababababababababab)"),
            "{err}"
        );
        assert!(err.is_fatal());
    }

    #[tokio::test]
    async fn a_server_with_the_pinned_ca_passes_tls() {
        let (addr, ca) = tls_listener().await;
        let server = Arc::new(format!("https://{addr}").parse::<ServerAddr>().unwrap());
        let token: JoinToken = format!(
            "abc123.0123456789abcdef.{}",
            hex::encode(cert_sha256(ca.as_ref()))
        )
        .parse()
        .unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let err = join_once(&server, &token, JoinRequest::default(), provider)
            .await
            .unwrap_err();
        // TLS is trusted; the listener then hangs up instead of speaking gRPC, which is retryable.
        assert!(!err.is_fatal(), "{err:?}");
    }

    #[tokio::test]
    async fn nobody_listening_is_retryable() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let server = Arc::new(format!("https://{addr}").parse::<ServerAddr>().unwrap());
        let token: JoinToken = format!("abc123.0123456789abcdef.{}", "ab".repeat(32))
            .parse()
            .unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let err = join_once(&server, &token, JoinRequest::default(), provider)
            .await
            .unwrap_err();
        assert!(matches!(err, JoinError::Dial(_)), "{err:?}");
        assert!(!err.is_fatal());
    }
}
