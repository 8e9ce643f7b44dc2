//! The certificates Herald presents to federation peers, one per local domain: SNI picks the
//! certificate on inbound TLS, the stream's local domain picks it on outbound TLS.
//!
//! Sources, in order: `tls_cert_dir` (`<domain>.pem` + `<domain>.key` per domain), the node
//! certificate (`tls_cert`/`tls_key`, or the development one) when its names cover the domain,
//! and — in development mode only, for domains the cluster serves — a certificate the
//! development CA issues on first use (domains added with `domain add` after start). Files are
//! re-read when they change ([`CertStore::reload_changed`], polled), no restart needed.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::{load_files, name_matches, provider, TlsError, TlsMaterial};

/// A loaded certificate with the names it covers and the files it came from.
#[derive(Clone)]
struct Entry {
    key: Arc<CertifiedKey>,
    names: Vec<String>,
    files: Option<(PathBuf, PathBuf, Option<SystemTime>)>,
    /// Expiry, seconds since the Unix epoch (0 when unreadable).
    not_after: i64,
}

/// What one reload did ([`CertStore::reload`]).
#[derive(Debug, Default)]
pub struct ReloadReport {
    /// Certificates (re)loaded.
    pub reloaded: u32,
    /// Files that could not be loaded, with the reason; the previous certificate stays.
    pub failures: Vec<String>,
}

/// One certificate in force ([`CertStore::in_force`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InForce {
    /// `node`, or the domain of a per-domain certificate.
    pub name: String,
    /// The certificate file; `None` for a development certificate.
    pub path: Option<PathBuf>,
    pub dns_names: Vec<String>,
    pub not_after: i64,
}

fn mtime(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

fn newest(a: &Path, b: &Path) -> Option<SystemTime> {
    mtime(a).max(mtime(b))
}

fn entry(m: &TlsMaterial, files: Option<(PathBuf, PathBuf)>) -> Result<Entry, TlsError> {
    let key = CertifiedKey::from_der(m.cert_chain.clone(), m.key.clone_key(), &provider())?;
    let names = m
        .cert_chain
        .first()
        .map(|c| dns_names(c))
        .unwrap_or_default();
    let not_after = m
        .cert_chain
        .first()
        .and_then(|c| x509_parser::parse_x509_certificate(c.as_ref()).ok())
        .map(|(_, c)| c.validity().not_after.timestamp())
        .unwrap_or(0);
    let files = files.map(|(c, k)| {
        let t = newest(&c, &k);
        (c, k, t)
    });
    Ok(Entry {
        key: Arc::new(key),
        names,
        files,
        not_after,
    })
}

/// The DNS names in a certificate's subject alternative names (lower case).
pub fn dns_names(der: &[u8]) -> Vec<String> {
    use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
    let Ok((_, c)) = X509Certificate::from_der(der) else {
        return Vec::new();
    };
    let Ok(Some(san)) = c.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::DNSName(d) => Some(d.to_ascii_lowercase()),
            _ => None,
        })
        .collect()
}

/// Which domains the cluster serves (development certificates are issued only for those).
pub type Serves = Box<dyn Fn(&str) -> bool + Send + Sync>;

/// The certificate store. See the module documentation.
pub struct CertStore {
    node: RwLock<Entry>,
    dir: Option<PathBuf>,
    per_domain: RwLock<HashMap<String, Entry>>,
    /// The development CA's directory, when no operator certificate is configured.
    dev_dir: Option<PathBuf>,
    serves: RwLock<Option<Serves>>,
}

impl fmt::Debug for CertStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertStore")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl CertStore {
    /// `node` is the node certificate (operator's or development); `dir` the per-domain
    /// directory; `dev_dir` set in development mode.
    pub fn new(
        node: &TlsMaterial,
        operator_files: bool,
        dir: Option<PathBuf>,
        dev_dir: Option<PathBuf>,
    ) -> Result<CertStore, TlsError> {
        let files = operator_files.then(|| (node.cert_path.clone(), node.key_path.clone()));
        let store = CertStore {
            node: RwLock::new(entry(node, files)?),
            dir,
            per_domain: RwLock::new(HashMap::new()),
            dev_dir,
            serves: RwLock::new(None),
        };
        store.reload_changed();
        Ok(store)
    }

    /// Tells the store which domains the cluster serves (for development certificates).
    pub fn set_serves(&self, serves: Serves) {
        *self.serves.write().unwrap_or_else(|p| p.into_inner()) = Some(serves);
    }

    /// The certificate to present for `domain`.
    pub fn for_domain(&self, domain: &str) -> Arc<CertifiedKey> {
        let d = domain.trim_end_matches('.').to_ascii_lowercase();
        if let Some(e) = self
            .per_domain
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&d)
        {
            return e.key.clone();
        }
        if let Some(k) = self.load_from_dir(&d) {
            return k;
        }
        let node = self.node.read().unwrap_or_else(|p| p.into_inner()).clone();
        if node.names.iter().any(|n| name_matches(n, &d)) || d.is_empty() {
            return node.key;
        }
        if let Some(k) = self.dev_issue(&d) {
            return k;
        }
        node.key
    }

    /// Loads `<dir>/<domain>.pem` now if it exists (files dropped in since the last poll).
    fn load_from_dir(&self, domain: &str) -> Option<Arc<CertifiedKey>> {
        let dir = self.dir.as_ref()?;
        let plain = !domain.is_empty()
            && domain
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
            && !domain.starts_with('.');
        if !plain {
            return None;
        }
        let pem = dir.join(format!("{domain}.pem"));
        if !pem.is_file() {
            return None;
        }
        self.load_pair(domain.to_string(), pem)
    }

    fn load_pair(&self, domain: String, path: PathBuf) -> Option<Arc<CertifiedKey>> {
        self.try_load_pair(domain, path).ok()
    }

    fn try_load_pair(&self, domain: String, path: PathBuf) -> Result<Arc<CertifiedKey>, String> {
        let key = path.with_extension("key");
        if let Err(err) = crate::secrets::exposed_key(&key, "domain private key file") {
            tracing::warn!(domain = %domain, error = %err, "domain certificate not loaded");
            return Err(err.to_string());
        }
        match load_files(&path, &key).and_then(|m| entry(&m, Some((path.clone(), key.clone())))) {
            Ok(e) => {
                tracing::info!(domain = %domain, cert = %path.display(), "domain certificate loaded");
                let k = e.key.clone();
                self.per_domain
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(domain, e);
                Ok(k)
            }
            Err(err) => {
                tracing::warn!(domain = %domain, cert = %path.display(), error = %err, "domain certificate cannot be loaded; keeping the previous one");
                Err(format!("{}: {err}", path.display()))
            }
        }
    }

    fn dev_issue(&self, domain: &str) -> Option<Arc<CertifiedKey>> {
        let dir = self.dev_dir.as_ref()?;
        let serves = self.serves.read().unwrap_or_else(|p| p.into_inner());
        if !serves.as_ref().is_some_and(|s| s(domain)) {
            return None;
        }
        match super::dev::issue_for_domain(dir, domain).and_then(|m| entry(&m, None)) {
            Ok(e) => {
                tracing::info!(
                    domain,
                    "development certificate issued for a domain added after start"
                );
                let key = e.key.clone();
                self.per_domain
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(domain.to_string(), e);
                Some(key)
            }
            Err(err) => {
                tracing::warn!(domain, error = %err, "issuing a development certificate failed");
                None
            }
        }
    }

    /// Re-reads the node certificate files and the per-domain directory where they changed;
    /// returns how many certificates were (re)loaded. A file that fails to load keeps the
    /// previous certificate and is logged.
    pub fn reload_changed(&self) -> usize {
        self.reload(false).reloaded as usize
    }

    /// Re-reads certificate files: those that changed since they were read, or (`force`, for
    /// `herald cluster reload-certs`) all of them — a file replaced within the file system's
    /// timestamp resolution, or with its old time kept, is then picked up too. A file that
    /// fails to load keeps the previous certificate; the report says which and why.
    pub fn reload(&self, force: bool) -> ReloadReport {
        let mut report = ReloadReport::default();
        let node = self.node.read().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some((c, k, t)) = &node.files {
            if force || newest(c, k) != *t {
                match load_files(c, k).and_then(|m| entry(&m, Some((c.clone(), k.clone())))) {
                    Ok(e) => {
                        tracing::info!(cert = %c.display(), "TLS certificate reloaded");
                        super::record_expiry("c2s", e.not_after);
                        *self.node.write().unwrap_or_else(|p| p.into_inner()) = e;
                        report.reloaded += 1;
                    }
                    Err(err) => {
                        tracing::warn!(cert = %c.display(), error = %err, "TLS certificate cannot be loaded; keeping the previous one");
                        report.failures.push(format!("{}: {err}", c.display()));
                    }
                }
            }
        }
        let Some(dir) = &self.dir else { return report };
        let read = match std::fs::read_dir(dir) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "certificate directory unreadable");
                report
                    .failures
                    .push(format!("{}: directory unreadable: {e}", dir.display()));
                return report;
            }
        };
        for f in read.flatten() {
            let path = f.path();
            if path.extension().and_then(|e| e.to_str()) != Some("pem") {
                continue;
            }
            let Some(domain) = path
                .file_stem()
                .and_then(|s| s.to_str())
                .map(str::to_ascii_lowercase)
            else {
                continue;
            };
            let key = path.with_extension("key");
            let known = self
                .per_domain
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .get(&domain)
                .and_then(|e| e.files.clone());
            if !force
                && known
                    .as_ref()
                    .is_some_and(|(_, _, t)| *t == newest(&path, &key))
            {
                continue;
            }
            match self.try_load_pair(domain, path) {
                Ok(_) => report.reloaded += 1,
                Err(e) => report.failures.push(e),
            }
        }
        report
    }

    /// Every certificate in force: the node's first, then per-domain ones by domain.
    pub fn in_force(&self) -> Vec<InForce> {
        let one = |name: String, e: &Entry| InForce {
            name,
            path: e.files.as_ref().map(|(c, _, _)| c.clone()),
            dns_names: e.names.clone(),
            not_after: e.not_after,
        };
        let mut all = vec![one(
            "node".to_string(),
            &self.node.read().unwrap_or_else(|p| p.into_inner()),
        )];
        let per = self.per_domain.read().unwrap_or_else(|p| p.into_inner());
        let mut domains: Vec<_> = per.iter().map(|(d, e)| one(d.clone(), e)).collect();
        domains.sort_by(|a, b| a.name.cmp(&b.name));
        all.extend(domains);
        all
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.for_domain(hello.server_name().unwrap_or("")))
    }
}

/// A client certificate resolver that always presents one certificate.
#[derive(Debug)]
pub struct Present(pub Arc<CertifiedKey>);

impl rustls::client::ResolvesClientCert for Present {
    fn resolve(&self, _: &[&[u8]], _: &[rustls::SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
    fn has_certs(&self) -> bool {
        true
    }
}
