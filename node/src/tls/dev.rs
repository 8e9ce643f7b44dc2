//! Development certificates under `<data_dir>/tls`: a CA created once and a node certificate
//! it signs, reissued when the wanted names change, when it expires within 30 days, or when it
//! no longer verifies against the CA.
//!
//! Files: `ca.pem`, `ca-key.pem` (0600), `node.pem`, `node-key.pem` (0600) and `node.sans`
//! (the names the node certificate was issued for, one per line).

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SerialNumber,
};
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

use super::{load_files, TlsError, TlsMaterial};
use crate::config::NodeConfig;

/// CA certificate file name.
pub(super) const CA_FILE: &str = "ca.pem";
/// CA private key file name.
pub(super) const CA_KEY_FILE: &str = "ca-key.pem";
/// Node certificate file name.
pub(super) const NODE_FILE: &str = "node.pem";
/// Node private key file name.
pub(super) const NODE_KEY_FILE: &str = "node-key.pem";
/// The SAN list the node certificate was issued for.
pub(super) const SANS_FILE: &str = "node.sans";

const DAY: Duration = Duration::from_secs(86_400);
const CA_VALIDITY: Duration = Duration::from_secs(86_400 * 3650);
const NODE_VALIDITY: Duration = Duration::from_secs(86_400 * 397);
const RENEW_BEFORE: Duration = Duration::from_secs(86_400 * 30);

/// The names the node certificate must carry, sorted and without duplicates.
pub(super) fn wanted_sans(cfg: &NodeConfig) -> Vec<String> {
    let mut set = BTreeSet::new();
    for d in &cfg.domains {
        let d = d.to_ascii_lowercase();
        set.insert(format!("*.{d}"));
        set.insert(d);
    }
    if let Some(host) = &cfg.advertise_host {
        set.insert(host.to_ascii_lowercase());
    }
    if !cfg.bind.is_unspecified() {
        set.insert(cfg.bind.to_string());
    }
    set.insert("localhost".to_string());
    set.insert("127.0.0.1".to_string());
    set.into_iter().collect()
}

/// Makes sure the development CA and a fitting node certificate exist; returns the latter.
pub(super) fn ensure(cfg: &NodeConfig) -> Result<TlsMaterial, TlsError> {
    let dir = cfg.tls_dir();
    if !dir.is_dir() {
        fs::create_dir_all(&dir).map_err(|source| io("create directory", &dir, source))?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))
            .map_err(|source| io("set permissions of", &dir, source))?;
    }
    let issuer = load_or_create_ca(&dir)?;
    let ca_path = dir.join(CA_FILE);
    let sans = wanted_sans(cfg);
    match reusable(&dir, &sans) {
        Ok(material) => {
            tracing::info!(ca = %ca_path.display(), "development TLS certificate reused; clients must trust this CA");
            return Ok(material);
        }
        Err(reason) => tracing::info!(%reason, "issuing a development node certificate"),
    }
    issue_node_cert(cfg, &dir, &issuer, &sans)?;
    let material = load_dev_files(&dir)?;
    verify_node_cert(&ca_path, &material.cert_chain, SystemTime::now()).map_err(|reason| {
        TlsError::DevCa {
            dir: dir.clone(),
            reason: format!(
                "a freshly issued node certificate does not verify ({reason}); do {CA_FILE} and {CA_KEY_FILE} belong together?"
            ),
        }
    })?;
    tracing::info!(ca = %ca_path.display(), names = %sans.join(","), "development TLS certificate issued; clients must trust this CA");
    Ok(material)
}

fn io(action: &'static str, path: &Path, source: std::io::Error) -> TlsError {
    TlsError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

fn generate(what: &'static str) -> impl FnOnce(rcgen::Error) -> TlsError {
    move |source| TlsError::Generate { what, source }
}

fn load_dev_files(dir: &Path) -> Result<TlsMaterial, TlsError> {
    let mut m = load_files(&dir.join(NODE_FILE), &dir.join(NODE_KEY_FILE))?;
    m.ca_pem_path = Some(dir.join(CA_FILE));
    Ok(m)
}

/// The existing node certificate when it fits; otherwise why not.
fn reusable(dir: &Path, sans: &[String]) -> Result<TlsMaterial, String> {
    let recorded =
        fs::read_to_string(dir.join(SANS_FILE)).map_err(|e| format!("no {SANS_FILE}: {e}"))?;
    let recorded: Vec<&str> = recorded.lines().collect();
    if recorded != sans {
        return Err(format!(
            "names changed from [{}] to [{}]",
            recorded.join(","),
            sans.join(",")
        ));
    }
    let material = load_dev_files(dir).map_err(|e| e.to_string())?;
    verify_node_cert(
        &dir.join(CA_FILE),
        &material.cert_chain,
        SystemTime::now() + RENEW_BEFORE,
    )
    .map_err(|e| {
        format!("node certificate does not verify against the CA 30 days from now: {e}")
    })?;
    Ok(material)
}

/// Checks that `chain` is valid for "localhost" under the CA in `ca_path` at time `at`.
pub(super) fn verify_node_cert(
    ca_path: &Path,
    chain: &[CertificateDer<'static>],
    at: SystemTime,
) -> Result<(), String> {
    let roots = super::root_store(ca_path).map_err(|e| e.to_string())?;
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        super::provider(),
    )
    .build()
    .map_err(|e| e.to_string())?;
    let (end_entity, intermediates) = chain.split_first().ok_or("empty certificate chain")?;
    let name = ServerName::try_from("localhost").map_err(|e| e.to_string())?;
    let since_epoch = at.duration_since(UNIX_EPOCH).map_err(|e| e.to_string())?;
    verifier
        .verify_server_cert(
            end_entity,
            intermediates,
            &name,
            &[],
            UnixTime::since_unix_epoch(since_epoch),
        )
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn load_or_create_ca(dir: &Path) -> Result<Issuer<'static, KeyPair>, TlsError> {
    let cert_path = dir.join(CA_FILE);
    let key_path = dir.join(CA_KEY_FILE);
    match (cert_path.exists(), key_path.exists()) {
        (false, false) => {
            create_ca(&cert_path, &key_path)?;
            tracing::info!(ca = %cert_path.display(), "created a development CA");
        }
        (true, true) => {}
        (has_cert, _) => {
            let (present, absent) = if has_cert {
                (CA_FILE, CA_KEY_FILE)
            } else {
                (CA_KEY_FILE, CA_FILE)
            };
            return Err(TlsError::DevCa {
                dir: dir.to_path_buf(),
                reason: format!(
                    "{present} exists but {absent} does not; restore it, or remove both to create a new CA"
                ),
            });
        }
    }
    let key_pem = fs::read_to_string(&key_path).map_err(|source| io("read", &key_path, source))?;
    let key = KeyPair::from_pem(&key_pem).map_err(|e| TlsError::DevCa {
        dir: dir.to_path_buf(),
        reason: format!("{CA_KEY_FILE} is not a usable private key: {e}"),
    })?;
    let ca_cert = super::first_cert(&cert_path)?;
    Issuer::from_ca_cert_der(&ca_cert, key).map_err(|e| TlsError::DevCa {
        dir: dir.to_path_buf(),
        reason: format!("{CA_FILE} is not a usable CA certificate: {e}"),
    })
}

fn create_ca(cert_path: &Path, key_path: &Path) -> Result<(), TlsError> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Herald");
    // A distinct name per CA, so that a certificate from another data dir's CA is reported
    // as an unknown issuer rather than a bad signature.
    let tag: [u8; 4] = rand::random();
    dn.push(
        DnType::CommonName,
        format!("Herald development CA {}", hex::encode(tag)),
    );
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    set_validity(&mut params, CA_VALIDITY);
    let key = KeyPair::generate().map_err(generate("CA key"))?;
    let cert = params
        .self_signed(&key)
        .map_err(generate("CA certificate"))?;
    write_file(key_path, key.serialize_pem().as_bytes(), 0o600)?;
    write_file(cert_path, cert.pem().as_bytes(), 0o644)
}

fn issue_node_cert(
    cfg: &NodeConfig,
    dir: &Path,
    issuer: &Issuer<'static, KeyPair>,
    sans: &[String],
) -> Result<(), TlsError> {
    let params = leaf_params(
        sans.to_vec(),
        format!("herald node {}", cfg.node_id),
        "node certificate",
    )?;
    let key = KeyPair::generate().map_err(generate("node key"))?;
    let cert = params
        .signed_by(&key, issuer)
        .map_err(generate("node certificate"))?;
    write_file(
        &dir.join(NODE_KEY_FILE),
        key.serialize_pem().as_bytes(),
        0o600,
    )?;
    write_file(&dir.join(NODE_FILE), cert.pem().as_bytes(), 0o644)?;
    let mut listing = sans.join("\n");
    listing.push('\n');
    write_file(&dir.join(SANS_FILE), listing.as_bytes(), 0o644)
}

/// An end-entity certificate's parameters: `sans`, Herald's organisation and `common_name`,
/// server and client authentication, the node validity.
fn leaf_params(
    sans: Vec<String>,
    common_name: String,
    what: &'static str,
) -> Result<CertificateParams, TlsError> {
    let mut params = CertificateParams::new(sans).map_err(generate(what))?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Herald");
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    set_validity(&mut params, NODE_VALIDITY);
    Ok(params)
}

/// Valid from a day ago (clock skew) for `validity`, with a random positive serial number.
fn set_validity(params: &mut CertificateParams, validity: Duration) {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let now = rcgen::date_time_ymd(1970, 1, 1) + since_epoch;
    params.not_before = now - DAY;
    params.not_after = now + validity;
    let mut serial: [u8; 16] = rand::random();
    serial[0] = (serial[0] & 0x7f) | 0x40;
    params.serial_number = Some(SerialNumber::from_slice(&serial));
}

/// Writes `contents` to `path` through a temporary file and a rename, creating the file with
/// `mode`.
fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), TlsError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp: PathBuf = path.with_file_name(format!(".{name}.tmp"));
    match fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => return Err(io("remove", &tmp, source)),
    }
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|source| io("create", &tmp, source))?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .map_err(|source| io("write", &tmp, source))?;
    fs::rename(&tmp, path).map_err(|source| io("rename into", path, source))
}

/// Cluster certificate file names (issued by the cluster CA for node-to-node TLS).
pub(super) const CLUSTER_NODE_FILE: &str = "cluster-node.pem";
pub(super) const CLUSTER_NODE_KEY_FILE: &str = "cluster-node-key.pem";

/// Issues this node's cluster certificate with the cluster CA (`ca_pem`, `ca_key_pem`): it
/// names the node (URI SAN `urn:herald:node:<id>`) and the addresses peers dial (advertised
/// host, bind IP). Written to `<data_dir>/tls`; reissued at every start. Returns the paths of
/// the certificate and its key.
pub(super) fn issue_cluster_cert(
    cfg: &NodeConfig,
    ca_pem: &Path,
    ca_key_pem: &Path,
) -> Result<(PathBuf, PathBuf), TlsError> {
    let dir = cfg.data_dir.join("tls");
    fs::create_dir_all(&dir).map_err(|source| io("create directory", &dir, source))?;
    let key_pem =
        fs::read_to_string(ca_key_pem).map_err(|source| io("read", ca_key_pem, source))?;
    let ca_key = KeyPair::from_pem(&key_pem).map_err(|e| TlsError::DevCa {
        dir: ca_key_pem.to_path_buf(),
        reason: format!("not a usable private key: {e}"),
    })?;
    let ca_cert = super::first_cert(ca_pem)?;
    let issuer = Issuer::from_ca_cert_der(&ca_cert, ca_key).map_err(|e| TlsError::DevCa {
        dir: ca_pem.to_path_buf(),
        reason: format!("not a usable CA certificate for this key: {e}"),
    })?;
    let mut names = BTreeSet::new();
    if let Some(host) = &cfg.advertise_host {
        names.insert(host.to_ascii_lowercase());
    }
    if !cfg.bind.is_unspecified() {
        names.insert(cfg.bind.to_string());
    }
    names.insert("localhost".to_string());
    let mut params = leaf_params(
        names.into_iter().collect(),
        format!("herald cluster node {}", cfg.node_id),
        "cluster certificate",
    )?;
    let uri = herald_cluster::identity::node_uri(cfg.node_id);
    params.subject_alt_names.push(rcgen::SanType::URI(
        uri.as_str()
            .try_into()
            .map_err(generate("cluster certificate"))?,
    ));
    let key = KeyPair::generate().map_err(generate("cluster node key"))?;
    let cert = params
        .signed_by(&key, &issuer)
        .map_err(generate("cluster certificate"))?;
    let (cert_path, key_path) = (dir.join(CLUSTER_NODE_FILE), dir.join(CLUSTER_NODE_KEY_FILE));
    write_file(&key_path, key.serialize_pem().as_bytes(), 0o600)?;
    write_file(&cert_path, cert.pem().as_bytes(), 0o644)?;
    Ok((cert_path, key_path))
}

/// A certificate for one more domain (`domain` and `*.domain`), issued by the development CA
/// in `dir` and kept in memory only (domains added with `domain add` after start).
pub(super) fn issue_for_domain(dir: &Path, domain: &str) -> Result<TlsMaterial, TlsError> {
    let issuer = load_or_create_ca(dir)?;
    let d = domain.to_ascii_lowercase();
    let params = leaf_params(
        vec![d.clone(), format!("*.{d}")],
        format!("herald {d}"),
        "domain certificate",
    )?;
    let key = KeyPair::generate().map_err(generate("domain key"))?;
    let cert = params
        .signed_by(&key, &issuer)
        .map_err(generate("domain certificate"))?;
    let key_der = rustls::pki_types::PrivatePkcs8KeyDer::from(key.serialize_der());
    Ok(TlsMaterial {
        cert_chain: vec![cert.der().clone()],
        key: key_der.into(),
        ca_pem_path: Some(dir.join(CA_FILE)),
        cert_path: PathBuf::new(),
        key_path: PathBuf::new(),
    })
}
