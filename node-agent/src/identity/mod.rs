//! The node's identity on disk: its key, its certificate, the cluster CA and `node.json`, and the TLS
//! client configurations made from them.
//!
//! A state directory holds `node.key` (0600), `node.crt`, `ca.crt` and `node.json`. A node whose state
//! directory holds the three PEM files has joined and never joins again.

pub mod pin;
pub mod token;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};
use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};

pub use pin::PinnedCaVerifier;
pub use token::{JoinToken, JoinTokenError};

use crate::config::DEFAULT_HEARTBEAT;

const KEY_FILE: &str = "node.key";
const CERT_FILE: &str = "node.crt";
const CA_FILE: &str = "ca.crt";
const NODE_FILE: &str = "node.json";

/// Why an identity cannot be made, read, written or turned into TLS settings.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// A file of the state directory cannot be read or written.
    #[error("{action} {path}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `node.json` is not what this agent writes.
    #[error("{path} is not valid node.json")]
    NodeFile {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// A PEM file or string holds nothing usable.
    #[error("{what} holds no valid PEM {kind}")]
    Pem {
        what: String,
        kind: &'static str,
        #[source]
        source: Option<rustls_pki_types::pem::Error>,
    },
    /// Key or CSR generation failed.
    #[error("cannot generate the node key or CSR")]
    KeyGen(#[source] rcgen::Error),
    /// rustls refused the certificates or key.
    #[error("cannot build the TLS client configuration")]
    Tls(#[source] rustls::Error),
    /// The runtime shut down while the state directory was being read or written.
    #[error("interrupted while accessing the state directory")]
    Interrupted,
    /// The CA the apiserver returned at join is not the one the join token pins.
    #[error(
        "the CA returned by the apiserver (sha256 {got}) is not the one the join token pins ({want})"
    )]
    CaMismatch { got: String, want: String },
}

/// A fresh node key and the CSR for it.
pub struct KeyAndCsr {
    /// The private key (PKCS#8 PEM); written to `node.key` once the join succeeds.
    pub key_pem: String,
    /// The certificate signing request (PEM) sent in `JoinRequest`.
    pub csr_pem: String,
}

/// Makes an ECDSA P-256 key and a CSR whose subject CN is the node name (the apiserver chooses the
/// certificate's real subject).
pub fn generate_key_and_csr(node_name: &str) -> Result<KeyAndCsr, IdentityError> {
    let key =
        KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(IdentityError::KeyGen)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, node_name.to_string());
    let csr = params
        .serialize_request(&key)
        .map_err(IdentityError::KeyGen)?;
    let csr_pem = csr.pem().map_err(IdentityError::KeyGen)?;
    Ok(KeyAndCsr {
        key_pem: key.serialize_pem(),
        csr_pem,
    })
}

/// What `node.json` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct NodeFile {
    node_id: String,
    node_name: String,
    heartbeat_interval_ms: u32,
}

/// A joined node: who it is and the credentials it dials with.
#[derive(Clone)]
pub struct Identity {
    /// The id the apiserver gave the node.
    pub node_id: String,
    /// The node's name.
    pub node_name: String,
    /// How often to heartbeat.
    pub heartbeat_interval: Duration,
    cert_pem: String,
    key_pem: String,
    ca_pem: String,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("node_id", &self.node_id)
            .field("node_name", &self.node_name)
            .field("heartbeat_interval", &self.heartbeat_interval)
            .finish_non_exhaustive()
    }
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> IdentityError {
    let path = path.to_path_buf();
    move |source| IdentityError::Io {
        action,
        path,
        source,
    }
}

fn read(path: &Path) -> Result<String, IdentityError> {
    std::fs::read_to_string(path).map_err(io_err("cannot read", path))
}

/// Writes `contents` to `dir/name` through a temporary file and a rename, so a crash never leaves half a
/// file. `private` files are created 0600.
fn write_atomic(
    dir: &Path,
    name: &str,
    contents: &[u8],
    private: bool,
) -> Result<(), IdentityError> {
    let path = dir.join(name);
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if private { 0o600 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut file = options.open(&tmp).map_err(io_err("cannot create", &tmp))?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .map_err(io_err("cannot write", &tmp))?;
    std::fs::rename(&tmp, &path).map_err(io_err("cannot rename into", &path))
}

/// The file numbering the agent's starts, so report sequence numbers never repeat for a node.
const REPORT_EPOCH_FILE: &str = "report-epoch";

/// Counts one more start of the agent in `dir` and returns the new count (1 on the first start).
/// Reports are numbered `(epoch << 32) + n`, so a node's sequence numbers increase across restarts and
/// the apiserver can tell a replayed report from a new one by node and number alone.
pub fn next_report_epoch(dir: &Path) -> Result<u64, IdentityError> {
    let path = dir.join(REPORT_EPOCH_FILE);
    let previous = match std::fs::read_to_string(&path) {
        Ok(text) => text.trim().parse::<u64>().unwrap_or(0),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => 0,
        Err(err) => return Err(io_err("cannot read", &path)(err)),
    };
    let epoch = previous + 1;
    std::fs::create_dir_all(dir).map_err(io_err("cannot create", dir))?;
    write_atomic(dir, REPORT_EPOCH_FILE, epoch.to_string().as_bytes(), false)?;
    Ok(epoch)
}

impl Identity {
    /// Builds an identity from a successful join. Refuses a CA that is not the pinned one.
    pub fn from_join(
        node_name: &str,
        key_pem: String,
        response: &berth_proto::node::JoinResponse,
        pin: [u8; 32],
    ) -> Result<Self, IdentityError> {
        let ca = CertificateDer::from_pem_slice(response.ca_pem.as_bytes()).map_err(|e| {
            IdentityError::Pem {
                what: "the CA returned by the apiserver".into(),
                kind: "certificate",
                source: Some(e),
            }
        })?;
        let got = pin::cert_sha256(ca.as_ref());
        if got != pin {
            return Err(IdentityError::CaMismatch {
                got: hex::encode(got),
                want: hex::encode(pin),
            });
        }
        let identity = Self {
            node_id: response.node_id.clone(),
            node_name: node_name.to_string(),
            heartbeat_interval: heartbeat(response.heartbeat_interval_ms),
            cert_pem: response.certificate_pem.clone(),
            key_pem,
            ca_pem: response.ca_pem.clone(),
        };
        // Fail now, not on every reconnect, if the certificate is unusable.
        identity.certificates()?;
        Ok(identity)
    }

    /// Reads the identity in `dir`, or `None` if the node has not joined (any of `node.key`,
    /// `node.crt`, `ca.crt` missing). A missing `node.json` is tolerated: the name is then
    /// `node_name` and the heartbeat the default.
    pub fn load(dir: &Path, node_name: &str) -> Result<Option<Self>, IdentityError> {
        let files = [KEY_FILE, CERT_FILE, CA_FILE].map(|f| dir.join(f));
        if !files.iter().all(|f| f.is_file()) {
            return Ok(None);
        }
        let [key, cert, ca] = files;
        let node_path = dir.join(NODE_FILE);
        let node = match std::fs::read_to_string(&node_path) {
            Ok(text) => serde_json::from_str(&text).map_err(|source| IdentityError::NodeFile {
                path: node_path.clone(),
                source,
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                tracing::warn!(path = %node_path.display(), "no node.json; using defaults");
                NodeFile {
                    node_id: String::new(),
                    node_name: node_name.to_string(),
                    heartbeat_interval_ms: 0,
                }
            }
            Err(e) => return Err(io_err("cannot read", &node_path)(e)),
        };
        if node.node_name != node_name {
            tracing::warn!(
                configured = node_name,
                joined_as = node.node_name,
                "the state directory belongs to a node joined under another name; keeping that identity"
            );
        }
        Ok(Some(Self {
            node_id: node.node_id,
            node_name: node.node_name,
            heartbeat_interval: heartbeat(node.heartbeat_interval_ms),
            key_pem: read(&key)?,
            cert_pem: read(&cert)?,
            ca_pem: read(&ca)?,
        }))
    }

    /// Writes the identity into `dir` (created 0700 if missing). `node.crt` goes last: its presence
    /// marks a complete identity.
    pub fn save(&self, dir: &Path) -> Result<(), IdentityError> {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            builder.mode(0o700);
        }
        builder
            .create(dir)
            .map_err(io_err("cannot create directory", dir))?;
        let node = NodeFile {
            node_id: self.node_id.clone(),
            node_name: self.node_name.clone(),
            heartbeat_interval_ms: u32::try_from(self.heartbeat_interval.as_millis())
                .unwrap_or(u32::MAX),
        };
        let json = serde_json::to_vec_pretty(&node).map_err(|source| IdentityError::NodeFile {
            path: dir.join(NODE_FILE),
            source,
        })?;
        write_atomic(dir, KEY_FILE, self.key_pem.as_bytes(), true)?;
        write_atomic(dir, CA_FILE, self.ca_pem.as_bytes(), false)?;
        write_atomic(dir, NODE_FILE, &json, false)?;
        write_atomic(dir, CERT_FILE, self.cert_pem.as_bytes(), false)
    }

    fn certificates(&self) -> Result<Vec<CertificateDer<'static>>, IdentityError> {
        let pem_err = |source| IdentityError::Pem {
            what: "the node certificate".into(),
            kind: "certificate",
            source: Some(source),
        };
        let certs = CertificateDer::pem_slice_iter(self.cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(pem_err)?;
        if certs.is_empty() {
            return Err(IdentityError::Pem {
                what: "the node certificate".into(),
                kind: "certificate",
                source: None,
            });
        }
        Ok(certs)
    }

    /// The mutual-TLS client configuration: trusts only the cluster CA, presents the node certificate.
    pub fn client_config(
        &self,
        provider: Arc<CryptoProvider>,
    ) -> Result<ClientConfig, IdentityError> {
        let mut roots = RootCertStore::empty();
        for ca in CertificateDer::pem_slice_iter(self.ca_pem.as_bytes()) {
            let ca = ca.map_err(|source| IdentityError::Pem {
                what: CA_FILE.into(),
                kind: "certificate",
                source: Some(source),
            })?;
            roots.add(ca).map_err(IdentityError::Tls)?;
        }
        if roots.is_empty() {
            return Err(IdentityError::Pem {
                what: CA_FILE.into(),
                kind: "certificate",
                source: None,
            });
        }
        let key = PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).map_err(|source| {
            IdentityError::Pem {
                what: KEY_FILE.into(),
                kind: "private key",
                source: Some(source),
            }
        })?;
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(IdentityError::Tls)?
            .with_root_certificates(roots)
            .with_client_auth_cert(self.certificates()?, key)
            .map_err(IdentityError::Tls)?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(config)
    }
}

impl Identity {
    /// The mutual-TLS server configuration of the node's `AgentService`: presents the node certificate
    /// (SAN `<node-id>.node.berth.internal`) and requires a client certificate signed by the cluster
    /// CA. Which client may call is decided per call ([`crate::agent_service`]).
    pub fn agent_tls(&self) -> tonic::transport::ServerTlsConfig {
        tonic::transport::ServerTlsConfig::new()
            .identity(tonic::transport::Identity::from_pem(
                &self.cert_pem,
                &self.key_pem,
            ))
            .client_ca_root(tonic::transport::Certificate::from_pem(&self.ca_pem))
            .client_auth_optional(false)
    }
}

/// The client configuration for `Join`: no client certificate, server trusted through the pin.
pub fn join_client_config(
    pin: [u8; 32],
    provider: Arc<CryptoProvider>,
) -> Result<ClientConfig, IdentityError> {
    let verifier = Arc::new(PinnedCaVerifier::new(pin, Arc::clone(&provider)));
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(IdentityError::Tls)?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

fn heartbeat(ms: u32) -> Duration {
    if ms == 0 {
        DEFAULT_HEARTBEAT
    } else {
        Duration::from_millis(u64::from(ms))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use berth_proto::node::JoinResponse;
    use rcgen::{BasicConstraints, CertificateSigningRequestParams, IsCa, Issuer};

    fn provider() -> Arc<CryptoProvider> {
        Arc::new(rustls::crypto::ring::default_provider())
    }

    #[test]
    fn report_epochs_count_starts_and_survive_in_the_state_dir() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        assert_eq!(next_report_epoch(&state).unwrap(), 1);
        assert_eq!(next_report_epoch(&state).unwrap(), 2);
        assert_eq!(
            std::fs::read_to_string(state.join(REPORT_EPOCH_FILE)).unwrap(),
            "2"
        );
    }

    /// Signs the CSR like the apiserver would and answers the join.
    fn answer(csr_pem: &str) -> (JoinResponse, [u8; 32]) {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let csr = CertificateSigningRequestParams::from_pem(csr_pem).unwrap();
        let cert = csr.signed_by(&issuer).unwrap();
        (
            JoinResponse {
                node_id: "node-1".into(),
                certificate_pem: cert.pem(),
                ca_pem: ca.pem(),
                heartbeat_interval_ms: 0,
            },
            pin::cert_sha256(ca.der()),
        )
    }

    #[test]
    fn a_saved_identity_loads_back_and_makes_a_client_config() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        assert!(Identity::load(&state, "n1").unwrap().is_none());

        let fresh = generate_key_and_csr("n1").unwrap();
        assert!(fresh.csr_pem.contains("CERTIFICATE REQUEST"));
        let (response, pin) = answer(&fresh.csr_pem);
        let identity = Identity::from_join("n1", fresh.key_pem, &response, pin).unwrap();
        assert_eq!(identity.heartbeat_interval, DEFAULT_HEARTBEAT);
        identity.save(&state).unwrap();

        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(state.join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let loaded = Identity::load(&state, "n1").unwrap().unwrap();
        assert_eq!(loaded.node_id, "node-1");
        assert_eq!(loaded.node_name, "n1");
        assert_eq!(loaded.heartbeat_interval, DEFAULT_HEARTBEAT);
        loaded.client_config(provider()).unwrap();
    }

    #[test]
    fn a_ca_other_than_the_pinned_one_is_refused_at_join() {
        let fresh = generate_key_and_csr("n1").unwrap();
        let (response, _) = answer(&fresh.csr_pem);
        let err = Identity::from_join("n1", fresh.key_pem, &response, [7; 32]).unwrap_err();
        assert!(matches!(err, IdentityError::CaMismatch { .. }), "{err}");
    }

    #[test]
    fn a_partial_state_dir_is_not_an_identity() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(KEY_FILE), "x").unwrap();
        std::fs::write(dir.path().join(CA_FILE), "x").unwrap();
        assert!(Identity::load(dir.path(), "n1").unwrap().is_none());
    }
}
