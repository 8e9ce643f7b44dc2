//! Where this node's secrets key comes from, and the start-up refusal of private key files that
//! others can read. The envelope itself lives in `herald_cluster::secrets`.
//!
//! Order: `HERALD_SECRETS_KEY` (the key itself) → `secrets_key_file` → `<data_dir>/secrets.key`
//! (generated earlier, or adopted at join) → a joining node waits for the cluster's key →
//! otherwise (bootstrap on the embedded default) a new key is generated into the data dir.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use herald_cluster::secrets::{write_key_file, KeySource, Keyring, SecretKey, DATA_DIR_KEY_FILE};

use crate::config::NodeConfig;

/// The variable that may hold the key itself (hex or base64).
pub const KEY_ENV: &str = "HERALD_SECRETS_KEY";

/// Refuses a private key file that others may read or write, or that the group may read when
/// this process owns the file (`chmod 600` fixes it). A group-readable file owned by someone
/// else — a read-only file the platform hands over, such as a Kubernetes secret volume with an
/// `fsGroup` (root-owned, mode 0440) — is accepted with a warning: this process cannot change it
/// and reads it only through that group.
pub fn check_private_file(path: &Path, what: &str) -> anyhow::Result<()> {
    exposed_key(path, what).map_err(|e| anyhow::anyhow!("{e}; refusing to start"))
}

/// [`check_private_file`]'s rule, for a key read while running (a certificate reload):
/// the file is not used.
pub fn exposed_key(path: &Path, what: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
    let meta = std::fs::metadata(path).with_context(|| format!("{what} {}", path.display()))?;
    let mode = meta.permissions().mode() & 0o777;
    let refuse = |who: &str| {
        anyhow::anyhow!(
            "{what} {} is accessible to {who} (mode {mode:04o}): run `chmod 600 {}`",
            path.display(),
            path.display()
        )
    };
    if mode & 0o007 != 0 {
        return Err(refuse("every user"));
    }
    if mode & 0o070 != 0 {
        // /proc/self belongs to this process's effective user (Linux); elsewhere be strict.
        let me = std::fs::metadata("/proc/self").map(|m| m.uid()).ok();
        if me.is_none_or(|uid| uid == meta.uid()) {
            return Err(refuse("its group"));
        }
        tracing::warn!(
            file = %path.display(),
            mode = %format!("{mode:04o}"),
            "{what} is group-readable but owned by another user (a read-only platform mount?); \
             accepted: make sure only this service is in that group"
        );
    }
    Ok(())
}

/// Every private key file the configuration names, with what it is.
fn private_files(cfg: &NodeConfig) -> Vec<(&Path, &'static str)> {
    let mut v: Vec<(&Path, &'static str)> = Vec::new();
    if let Some(p) = &cfg.secrets_key_file {
        v.push((p, "secrets key file"));
    }
    if let Some(p) = &cfg.tls_key {
        v.push((p, "TLS private key file (tls_key)"));
    }
    if let Some(p) = &cfg.cluster_key {
        v.push((p, "cluster private key file (cluster_key)"));
    }
    if let Some(p) = &cfg.cluster_ca_key {
        v.push((p, "cluster CA private key file (cluster_ca_key)"));
    }
    v
}

/// Refuses to start when a configured private key file, or a `<domain>.key` in
/// `tls_cert_dir`, is group- or world-accessible.
pub fn check_key_files(cfg: &NodeConfig) -> anyhow::Result<()> {
    for (p, what) in private_files(cfg) {
        check_private_file(p, what)?;
    }
    if let Some(dir) = &cfg.tls_cert_dir {
        // An unreadable directory is reported where certificates are loaded.
        for f in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = f.path();
            if p.extension().is_some_and(|e| e == "key") && p.is_file() {
                check_private_file(&p, "domain private key file (tls_cert_dir)")?;
            }
        }
    }
    Ok(())
}

/// This node's keyring, logging where the key came from. `joining`: the node starts with a join
/// target and an empty data dir, so on the embedded default it adopts the cluster's key.
pub fn load(cfg: &NodeConfig, joining: bool) -> anyhow::Result<Keyring> {
    load_from(cfg, joining, std::env::var(KEY_ENV).ok())
}

fn load_from(cfg: &NodeConfig, joining: bool, env: Option<String>) -> anyhow::Result<Keyring> {
    if let Some(text) = env.filter(|t| !t.trim().is_empty()) {
        let key = SecretKey::parse(text.as_bytes()).context(KEY_ENV)?;
        tracing::info!(key_id = %key.id(), "secrets at rest sealed with the key from {KEY_ENV}");
        return Ok(Keyring::with_key(key, KeySource::Environment));
    }
    if let Some(path) = &cfg.secrets_key_file {
        check_private_file(path, "secrets key file")?;
        let key = read_key(path)?;
        tracing::info!(key_id = %key.id(), file = %path.display(), "secrets at rest sealed with the configured key file");
        return Ok(Keyring::with_key(key, KeySource::File(path.clone())));
    }
    let path: PathBuf = cfg.data_dir.join(DATA_DIR_KEY_FILE);
    if path.exists() {
        check_private_file(&path, "secrets key file")?;
        let key = read_key(&path)?;
        tracing::warn!(
            key_id = %key.id(),
            file = %path.display(),
            "no secrets key configured: secrets at rest are sealed with the key kept in the data \
             dir (embedded default). Anyone who can read the data dir can read it: in production \
             give every node the same --secrets-key-file or HERALD_SECRETS_KEY, kept apart from the data"
        );
        return Ok(Keyring::with_key(key, KeySource::Generated(path)));
    }
    if joining {
        tracing::warn!(
            file = %path.display(),
            "no secrets key configured: this node will adopt the cluster's key when it joins \
             (embedded default) and keep it in its data dir"
        );
        return Ok(Keyring::awaiting_join(path));
    }
    let key = SecretKey::generate();
    write_key_file(&path, &key).with_context(|| format!("writing {}", path.display()))?;
    tracing::warn!(
        key_id = %key.id(),
        file = %path.display(),
        "no secrets key configured: generated one in the data dir (mode 0600) to seal secrets at \
         rest (embedded default); nodes that join adopt it. Anyone who can read the data dir can \
         read it: in production give every node the same --secrets-key-file or HERALD_SECRETS_KEY"
    );
    Ok(Keyring::with_key(key, KeySource::Generated(path)))
}

fn read_key(path: &Path) -> anyhow::Result<SecretKey> {
    let raw = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    SecretKey::parse(&raw).with_context(|| format!("secrets key file {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn cfg(dir: &Path) -> NodeConfig {
        NodeConfig {
            data_dir: dir.to_path_buf(),
            ..NodeConfig::default()
        }
    }

    #[test]
    fn world_or_group_readable_key_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k");
        std::fs::write(&p, SecretKey::generate().to_hex()).unwrap();
        for (mode, ok) in [
            (0o600, true),
            (0o400, true),
            (0o640, false),
            (0o644, false),
            (0o604, false),
        ] {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
            let r = check_private_file(&p, "secrets key file");
            assert_eq!(r.is_ok(), ok, "mode {mode:o}: {r:?}");
            if let Err(e) = r {
                assert!(e.to_string().contains("chmod 600"), "{e}");
            }
        }
        let mut c = cfg(dir.path());
        c.secrets_key_file = Some(p.clone());
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(load_from(&c, false, None).is_err());
        assert!(check_key_files(&c).is_err());
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(load_from(&c, false, None).unwrap().has_key());

        // Keys in tls_cert_dir too (certificates themselves may be public).
        let certs = dir.path().join("certs");
        std::fs::create_dir(&certs).unwrap();
        std::fs::write(certs.join("example.test.pem"), "public").unwrap();
        let key = certs.join("example.test.key");
        std::fs::write(&key, "private").unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        c.tls_cert_dir = Some(certs);
        let err = check_key_files(&c).unwrap_err().to_string();
        assert!(
            err.contains("example.test.key") && err.contains("refusing to start"),
            "{err}"
        );
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        check_key_files(&c).unwrap();
    }

    #[test]
    fn the_embedded_default_generates_once_and_joiners_wait() {
        let dir = tempfile::tempdir().unwrap();
        let c = cfg(dir.path());
        let joiner = load_from(&c, true, None).unwrap();
        assert!(joiner.awaiting() && !joiner.has_key());
        let first = load_from(&c, false, None).unwrap();
        let id = first.key_id().unwrap();
        let mode = std::fs::metadata(dir.path().join(DATA_DIR_KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        // Restart: the same key.
        assert_eq!(load_from(&c, false, None).unwrap().key_id().unwrap(), id);
        assert!(first.shareable_key().is_some());
        // The environment wins and is never handed out.
        let env = SecretKey::generate();
        let r = load_from(&c, false, Some(env.to_hex())).unwrap();
        assert_eq!(r.key_id().unwrap(), env.id());
        assert!(r.shareable_key().is_none());
        assert!(load_from(&c, false, Some("nope".into())).is_err());
    }
}
