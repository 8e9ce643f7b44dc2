//! TLS certificates and rustls configurations, with the ring provider only.
//!
//! [`load_or_generate`] either loads the operator's PEM files (`tls_cert`/`tls_key`) or keeps a
//! development CA and a node certificate under `<data_dir>/tls` (see `dev.rs`). Every rustls
//! config is built with [`provider`] so that no process-wide default provider is needed.

pub mod certs;
mod dev;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::NodeConfig;

/// Why TLS material could not be loaded, generated or turned into a rustls config.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file or directory could not be read or written.
    #[error("cannot {action} {}", path.display())]
    Io {
        /// What was being done ("read", "write", "create directory", …).
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A PEM file could not be parsed.
    #[error("invalid PEM in {}", path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// The parse error.
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    /// A PEM file holds no item of the wanted kind.
    #[error("{} contains no {what}", path.display())]
    Missing {
        /// The file.
        path: PathBuf,
        /// "certificate" or "private key".
        what: &'static str,
    },
    /// Certificate generation failed.
    #[error("generating the {what} failed")]
    Generate {
        /// The certificate being generated.
        what: &'static str,
        /// The rcgen error.
        #[source]
        source: rcgen::Error,
    },
    /// The development CA files are in an unusable state.
    #[error("development CA in {}: {reason}", dir.display())]
    DevCa {
        /// `<data_dir>/tls`.
        dir: PathBuf,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// rustls rejected the material (for example a key that does not match the certificate).
    #[error("the TLS configuration was rejected")]
    Rustls(#[from] rustls::Error),
    /// A CA bundle could not be used as trust anchors.
    #[error("trust anchors from {}: {reason}", path.display())]
    Trust {
        /// The CA file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// The node's certificate chain and key, and where they came from.
#[derive(Debug)]
pub struct TlsMaterial {
    /// End-entity certificate first, then any intermediates.
    pub cert_chain: Vec<CertificateDer<'static>>,
    /// The private key of the end-entity certificate.
    pub key: PrivateKeyDer<'static>,
    /// The development CA certificate (clients trust it); `None` for operator certificates.
    pub ca_pem_path: Option<PathBuf>,
    /// The PEM file of the certificate chain.
    pub cert_path: PathBuf,
    /// The PEM file of the private key.
    pub key_path: PathBuf,
}

impl Clone for TlsMaterial {
    fn clone(&self) -> Self {
        TlsMaterial {
            cert_chain: self.cert_chain.clone(),
            key: self.key.clone_key(),
            ca_pem_path: self.ca_pem_path.clone(),
            cert_path: self.cert_path.clone(),
            key_path: self.key_path.clone(),
        }
    }
}

/// With tls_cert/tls_key: load them (PEM via rustls::pki_types::pem::PemObject). Without: a
/// development CA under `<data_dir>/tls/ca.pem` + `ca-key.pem` (created once, reused on restart),
/// and a node certificate `<data_dir>/tls/node.pem` + `node-key.pem` signed by it, with SANs for
/// every configured domain, `*.`+domain, the advertise host / bind IP, "localhost" and 127.0.0.1,
/// EKU serverAuth+clientAuth; regenerated (same CA) when the wanted SAN set changes. Keys written
/// with mode 0600. Logs where the CA is.
///
/// The key is checked against the certificate either way.
pub fn load_or_generate(cfg: &NodeConfig) -> Result<TlsMaterial, TlsError> {
    let material = match (&cfg.tls_cert, &cfg.tls_key) {
        (Some(cert), Some(key)) => {
            let m = load_files(cert, key)?;
            tracing::info!(cert = %cert.display(), "using configured TLS certificate");
            m
        }
        _ => dev::ensure(cfg)?,
    };
    check_key_matches(&material)?;
    Ok(material)
}

/// Loads a PEM certificate chain and a PEM private key (PKCS#8, PKCS#1 or SEC1).
pub fn load_files(cert_path: &Path, key_path: &Path) -> Result<TlsMaterial, TlsError> {
    let cert_chain = read_certs(cert_path)?;
    let key = PrivateKeyDer::from_pem_file(key_path)
        .map_err(|e| pem_error(key_path, e, "private key"))?;
    Ok(TlsMaterial {
        cert_chain,
        key,
        ca_pem_path: None,
        cert_path: cert_path.to_path_buf(),
        key_path: key_path.to_path_buf(),
    })
}

/// Reads every certificate of a PEM file; at least one is required.
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| pem_error(path, e, "certificate"))?;
    if certs.is_empty() {
        return Err(TlsError::Missing {
            path: path.to_path_buf(),
            what: "certificate",
        });
    }
    Ok(certs)
}

fn pem_error(path: &Path, e: rustls::pki_types::pem::Error, what: &'static str) -> TlsError {
    match e {
        rustls::pki_types::pem::Error::Io(source) => TlsError::Io {
            action: "read",
            path: path.to_path_buf(),
            source,
        },
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::Missing {
            path: path.to_path_buf(),
            what,
        },
        source => TlsError::Pem {
            path: path.to_path_buf(),
            source,
        },
    }
}

fn check_key_matches(m: &TlsMaterial) -> Result<(), TlsError> {
    rustls::sign::CertifiedKey::from_der(m.cert_chain.clone(), m.key.clone_key(), &provider())?;
    Ok(())
}

/// The one crypto provider Herald uses: ring.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A server config presenting `m` without client authentication, TLS 1.2 and 1.3, no ALPN
/// (callers that need ALPN, such as tonic's `h2`, clone the config and set it).
pub fn server_config(m: &TlsMaterial) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(m.cert_chain.clone(), m.key.clone_key())?;
    Ok(Arc::new(cfg))
}

/// A server config without client authentication presenting the certificate of the domain
/// the client names (SNI) from `certs`.
pub fn server_config_resolving(
    certs: Arc<certs::CertStore>,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(certs);
    Ok(Arc::new(cfg))
}

/// PEM material for mutual TLS between nodes: the cluster CA and this node's certificate.
pub struct ClusterTls {
    pub ca_pem: Vec<u8>,
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
    pub cert_path: PathBuf,
}

/// The node-to-node TLS material when `cluster_ca` is set (issuing this node's certificate
/// with `cluster_ca_key` when no `cluster_cert` is given); `None` when node-to-node TLS is off.
/// The certificate must name this node (`urn:herald:node:<id>`): a certificate for another
/// node is refused here rather than at the first peer's handshake.
pub fn cluster_tls(cfg: &NodeConfig) -> Result<Option<ClusterTls>, TlsError> {
    let Some(ca) = &cfg.cluster_ca else {
        return Ok(None);
    };
    let (cert_path, key_path) =
        match (&cfg.cluster_cert, &cfg.cluster_key, &cfg.cluster_ca_key) {
            (Some(c), Some(k), _) => (c.clone(), k.clone()),
            (_, _, Some(ca_key)) => dev::issue_cluster_cert(cfg, ca, ca_key)?,
            _ => return Err(TlsError::Missing {
                path: ca.clone(),
                what: "node certificate to go with it (cluster_cert/cluster_key or cluster_ca_key)",
            }),
        };
    let read = |p: &Path| {
        std::fs::read(p).map_err(|source| TlsError::Io {
            action: "read",
            path: p.to_path_buf(),
            source,
        })
    };
    let leaf = first_cert(&cert_path)?;
    match herald_cluster::identity::node_id_of(leaf.as_ref()) {
        Some(id) if id == cfg.node_id => {}
        other => {
            return Err(TlsError::Missing {
                path: cert_path.clone(),
                what: if other.is_some() {
                    "URI SAN for this node (it names another node)"
                } else {
                    "URI SAN urn:herald:node:<node_id>"
                },
            })
        }
    }
    Ok(Some(ClusterTls {
        ca_pem: read(ca)?,
        cert_pem: read(&cert_path)?,
        key_pem: read(&key_path)?,
        cert_path,
    }))
}

/// When the first certificate of a PEM file expires, in seconds since the Unix epoch.
pub fn not_after(path: &Path) -> Result<i64, TlsError> {
    let der = first_cert(path)?;
    let (_, cert) =
        x509_parser::parse_x509_certificate(der.as_ref()).map_err(|e| TlsError::DevCa {
            dir: path.to_path_buf(),
            reason: format!("not a parsable X.509 certificate: {e}"),
        })?;
    Ok(cert.validity().not_after.timestamp())
}

/// The first certificate of a PEM file.
pub(crate) fn first_cert(path: &Path) -> Result<CertificateDer<'static>, TlsError> {
    read_certs(path)?
        .into_iter()
        .next()
        .ok_or_else(|| TlsError::Missing {
            path: path.to_path_buf(),
            what: "certificate",
        })
}

/// A root store holding every certificate of the PEM file `ca_pem`.
pub fn root_store(ca_pem: &Path) -> Result<rustls::RootCertStore, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in read_certs(ca_pem)? {
        roots.add(cert).map_err(|e| TlsError::Trust {
            path: ca_pem.to_path_buf(),
            reason: e.to_string(),
        })?;
    }
    Ok(roots)
}

/// A client config that trusts exactly the CA certificates in `ca_pem` (no client
/// certificate).
pub fn client_config_trusting(ca_pem: &Path) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(root_store(ca_pem)?)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

#[cfg(test)]
mod tests;

/// Whether the DNS name `pattern` from a certificate covers `name` (RFC 6125 §6.4.3): exact
/// match ignoring case and a trailing dot, or `*.` followed by the parent of `name` — the
/// wildcard stands for exactly one whole left-most label (`*.a.com` covers `foo.a.com`, not
/// `bar.foo.a.com` nor `a.com`). Partial-label wildcards (`f*.a.com`) and wildcards over a
/// single-label parent (`*.com`) cover nothing.
pub fn name_matches(pattern: &str, name: &str) -> bool {
    let p = pattern.trim_end_matches('.').to_ascii_lowercase();
    let n = name.trim_end_matches('.').to_ascii_lowercase();
    if p.is_empty() || n.is_empty() {
        return false;
    }
    match p.strip_prefix("*.") {
        Some(parent) => {
            if parent.contains('*') || !parent.contains('.') {
                return false;
            }
            match n.split_once('.') {
                Some((label, rest)) => !label.is_empty() && rest == parent,
                None => false,
            }
        }
        None => !p.contains('*') && p == n,
    }
}

/// Exports when a certificate expires (`herald_cert_expiry_timestamp_seconds`-style gauge).
pub fn record_expiry(which: &'static str, not_after_unix: i64) {
    metrics::gauge!(crate::metrics::CERT_EXPIRY, "certificate" => which).set(not_after_unix as f64);
}
