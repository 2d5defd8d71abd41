//! The cluster CA and the certificates it issues (rcgen), and the rustls configurations built on them.
//!
//! On first start the apiserver makes an ECDSA P-256 CA and keeps it in the data directory, unless the
//! operator hands in their own (`--ca-cert`, `--ca-key`). The server certificate for 8443 and 8444 is
//! issued fresh at every start from that CA (so new `--tls-san`s take effect), unless the operator gives
//! one (`--tls-cert`, `--tls-key`). Node certificates are issued from CSRs at join.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest as _, Sha256};

/// Errors of certificate handling.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// Reading or writing a certificate or key file failed.
    #[error("cannot access {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// rcgen could not make, parse or sign a certificate.
    #[error("certificate error")]
    Certificate(#[from] rcgen::Error),
    /// A PEM file held no usable certificate or key.
    #[error("{0}")]
    Pem(String),
    /// rustls refused the configuration.
    #[error("TLS configuration refused")]
    Rustls(#[from] rustls::Error),
}

fn read(path: &Path) -> Result<String, TlsError> {
    fs::read_to_string(path).map_err(|source| TlsError::Io {
        path: path.to_owned(),
        source,
    })
}

/// Writes `contents` to `path`; private files are created 0600.
pub fn write_file(path: &Path, contents: &[u8], private: bool) -> Result<(), TlsError> {
    let io = |source| TlsError::Io {
        path: path.to_owned(),
        source,
    };
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(io)?;
    file.write_all(contents).map_err(io)
}

/// The cluster CA: signs the server certificate and every node certificate.
pub struct ClusterCa {
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for ClusterCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterCa")
            .field("hash", &self.hash_hex())
            .finish_non_exhaustive()
    }
}

impl ClusterCa {
    /// Loads the operator's CA, or the one in `dir`, or makes and keeps a new one there.
    pub fn load_or_create(dir: &Path, operator: Option<(&Path, &Path)>) -> Result<Self, TlsError> {
        let (cert_path, key_path) = match operator {
            Some((cert, key)) => (cert.to_owned(), key.to_owned()),
            None => (dir.join("ca.crt"), dir.join("ca.key")),
        };
        if !cert_path.exists() && operator.is_none() {
            let key = KeyPair::generate()?;
            let mut params = CertificateParams::new(Vec::<String>::new())?;
            params
                .distinguished_name
                .push(DnType::CommonName, "Berth cluster CA");
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.key_usages = vec![
                KeyUsagePurpose::KeyCertSign,
                KeyUsagePurpose::CrlSign,
                KeyUsagePurpose::DigitalSignature,
            ];
            params.not_before = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
            params.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(3650);
            let cert = params.self_signed(&key)?;
            write_file(&key_path, key.serialize_pem().as_bytes(), true)?;
            write_file(&cert_path, cert.pem().as_bytes(), false)?;
        }
        let cert_pem = read(&cert_path)?;
        let key = KeyPair::from_pem(&read(&key_path)?)?;
        let cert_der = CertificateDer::from_pem_slice(cert_pem.as_bytes())
            .map_err(|e| TlsError::Pem(format!("{}: {e}", cert_path.display())))?;
        let issuer = Issuer::from_ca_cert_der(&cert_der, key)?;
        Ok(Self {
            cert_pem,
            cert_der,
            issuer,
        })
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// Lower-case hex SHA-256 of the CA certificate's DER: what a join token pins.
    pub fn hash_hex(&self) -> String {
        hex::encode(Sha256::digest(self.cert_der.as_ref()))
    }

    /// Issues a server certificate for `names` (DNS names or IP addresses). Returns (chain PEM, key PEM);
    /// the chain carries the CA so that a joining node can find the certificate its token pins.
    pub fn issue_server(&self, names: &[String]) -> Result<(String, String), TlsError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.subject_alt_names = names
            .iter()
            .map(|n| match n.parse::<std::net::IpAddr>() {
                Ok(ip) => Ok(SanType::IpAddress(ip)),
                Err(_) => Ok(SanType::DnsName(n.clone().try_into()?)),
            })
            .collect::<Result<_, rcgen::Error>>()?;
        params
            .distinguished_name
            .push(DnType::CommonName, "berth-apiserver");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.not_before = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
        params.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(365);
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok((
            format!("{}{}", cert.pem(), self.cert_pem),
            key.serialize_pem(),
        ))
    }

    /// Signs a node's CSR as `node:<node_id>`; whatever subject and names the CSR asked for are
    /// replaced. The certificate is the node's client certificate towards the gateway and its server
    /// certificate for its own `AgentService`, under the SAN `<node_id>.node.berth.internal`.
    pub fn sign_node_csr(&self, csr_pem: &str, node_id: &str) -> Result<String, TlsError> {
        let mut csr = CertificateSigningRequestParams::from_pem(csr_pem)?;
        let mut params = CertificateParams::new(vec![berth_proto::names::node(node_id)])?;
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{NODE_CN_PREFIX}{node_id}"));
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ClientAuth,
            ExtendedKeyUsagePurpose::ServerAuth,
        ];
        params.not_before = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
        params.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(365);
        csr.params = params;
        Ok(csr.signed_by(&self.issuer)?.pem())
    }

    /// Issues the apiserver's client certificate for dialling agents: CN and SAN
    /// `apiserver.berth.internal`, the only name an agent's `AgentService` accepts. Made fresh at every
    /// start and kept in memory only.
    pub fn issue_apiserver_client(&self) -> Result<ClientIdentity, TlsError> {
        let name = berth_proto::names::APISERVER;
        self.issue_client(name, name)
    }

    /// A client certificate for standalone DNS server `id`: CN `dns:<id>`, SAN
    /// `<id>.dns.berth.internal`, the only certificates `DnsService.Watch` accepts.
    pub fn issue_dns_client(&self, id: &str) -> Result<ClientIdentity, TlsError> {
        let san = format!("{id}{}", berth_proto::names::DNS_SUFFIX);
        self.issue_client(&format!("{DNS_CN_PREFIX}{id}"), &san)
    }

    /// A ClientAuth certificate and a new key, valid for a year.
    fn issue_client(&self, common_name: &str, san: &str) -> Result<ClientIdentity, TlsError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(vec![san.to_owned()])?;
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.not_before = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
        params.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(365);
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(ClientIdentity {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// A client certificate and its key, as PEM.
#[derive(Clone)]
pub struct ClientIdentity {
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientIdentity").finish_non_exhaustive()
    }
}

/// Node certificates are `CN=node:<node-id>`.
pub const NODE_CN_PREFIX: &str = "node:";

/// Standalone DNS servers' certificates are `CN=dns:<id>`.
pub const DNS_CN_PREFIX: &str = "dns:";

/// The DNS server id a verified client certificate names, if it is a DNS server's certificate (its
/// CN and its SAN agree).
pub fn dns_id_from_cert(der: &CertificateDer<'_>) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    let cn = cert.subject().iter_common_name().next()?.as_str().ok()?;
    let id = cn.strip_prefix(DNS_CN_PREFIX)?;
    let san = format!("{id}{}", berth_proto::names::DNS_SUFFIX);
    let named = cert
        .subject_alternative_name()
        .ok()??
        .value
        .general_names
        .iter()
        .any(|name| matches!(name, x509_parser::extensions::GeneralName::DNSName(dns) if dns.eq_ignore_ascii_case(&san)));
    named.then(|| id.to_owned())
}

/// The node id a verified client certificate names, if it is a node certificate.
pub fn node_id_from_cert(der: &CertificateDer<'_>) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    let cn = cert.subject().iter_common_name().next()?.as_str().ok()?;
    cn.strip_prefix(NODE_CN_PREFIX).map(str::to_owned)
}

/// The server's certificate chain and key, as PEM.
#[derive(Clone)]
pub struct ServerIdentity {
    pub chain_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for ServerIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerIdentity").finish_non_exhaustive()
    }
}

impl ServerIdentity {
    pub fn load(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        Ok(Self {
            chain_pem: read(cert)?,
            key_pem: read(key)?,
        })
    }

    /// rustls configuration for the HTTPS API: TLS 1.2 and 1.3, h2 and http/1.1.
    pub fn https_config(&self) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let chain = CertificateDer::pem_slice_iter(self.chain_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TlsError::Pem(format!("server certificate: {e}")))?;
        let key = PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes())
            .map_err(|e| TlsError::Pem(format!("server key: {e}")))?;
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_persists_and_signs_node_certificates() {
        let dir = tempfile::tempdir().unwrap();
        let ca = ClusterCa::load_or_create(dir.path(), None).unwrap();
        let again = ClusterCa::load_or_create(dir.path(), None).unwrap();
        assert_eq!(
            ca.hash_hex(),
            again.hash_hex(),
            "the CA is made once and kept"
        );
        assert_eq!(ca.hash_hex().len(), 64);

        let node_key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["evil".to_owned()]).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "node:someone-else");
        let csr = params.serialize_request(&node_key).unwrap().pem().unwrap();
        let cert_pem = ca.sign_node_csr(&csr, "n-123").unwrap();
        let der = CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap();
        assert_eq!(
            node_id_from_cert(&der).as_deref(),
            Some("n-123"),
            "the CA, not the CSR, names the node"
        );
    }

    /// DNS SANs and extended key usages of a PEM certificate.
    fn names_and_usages(pem: &str) -> (Vec<String>, Vec<&'static str>, String) {
        let der = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).unwrap();
        let sans = cert
            .subject_alternative_name()
            .unwrap()
            .map(|san| {
                san.value
                    .general_names
                    .iter()
                    .filter_map(|n| match n {
                        x509_parser::extensions::GeneralName::DNSName(d) => Some((*d).to_owned()),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        let mut usages = Vec::new();
        if eku.client_auth {
            usages.push("client");
        }
        if eku.server_auth {
            usages.push("server");
        }
        let cn = cert
            .subject()
            .iter_common_name()
            .next()
            .unwrap()
            .as_str()
            .unwrap()
            .to_owned();
        (sans, usages, cn)
    }

    #[test]
    fn node_certificates_serve_the_agent_service_under_the_node_name() {
        let dir = tempfile::tempdir().unwrap();
        let ca = ClusterCa::load_or_create(dir.path(), None).unwrap();
        let node_key = KeyPair::generate().unwrap();
        // A node asking for the apiserver's name gets its own name only.
        let mut params =
            CertificateParams::new(vec![berth_proto::names::APISERVER.to_owned()]).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, berth_proto::names::APISERVER);
        let csr = params.serialize_request(&node_key).unwrap().pem().unwrap();
        let (sans, usages, cn) = names_and_usages(&ca.sign_node_csr(&csr, "n-1").unwrap());
        assert_eq!(sans, ["n-1.node.berth.internal"]);
        assert_eq!(usages, ["client", "server"]);
        assert_eq!(cn, "node:n-1");
    }

    #[test]
    fn the_apiserver_client_certificate_names_the_apiserver() {
        let dir = tempfile::tempdir().unwrap();
        let ca = ClusterCa::load_or_create(dir.path(), None).unwrap();
        let client = ca.issue_apiserver_client().unwrap();
        let (sans, usages, cn) = names_and_usages(&client.cert_pem);
        assert_eq!(sans, ["apiserver.berth.internal"]);
        assert_eq!(usages, ["client"]);
        assert_eq!(cn, "apiserver.berth.internal");
        let der = CertificateDer::from_pem_slice(client.cert_pem.as_bytes()).unwrap();
        assert_eq!(node_id_from_cert(&der), None, "it is no node certificate");
    }

    #[test]
    fn server_chain_carries_the_ca() {
        let dir = tempfile::tempdir().unwrap();
        let ca = ClusterCa::load_or_create(dir.path(), None).unwrap();
        let (chain, key) = ca
            .issue_server(&["localhost".to_owned(), "127.0.0.1".to_owned()])
            .unwrap();
        assert_eq!(chain.matches("BEGIN CERTIFICATE").count(), 2);
        let identity = ServerIdentity {
            chain_pem: chain,
            key_pem: key,
        };
        identity.https_config().unwrap();
    }
}
