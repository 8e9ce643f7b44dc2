//! Secrets at rest: values that must never sit in the replicated store (and so in the Raft log,
//! snapshots and `raft.redb`) in the clear — calendar service-account passwords and the XMPP
//! dialback secret — are sealed by the admin service before they are proposed, and opened only
//! where they are used.
//!
//! Envelope: `enc:v1:<key id>:<base64url(nonce ‖ ciphertext ‖ tag)>`, ChaCha20-Poly1305 with a
//! 256-bit key, a random 96-bit nonce per value, and the field's name as associated data (a
//! sealed calendar password cannot be replayed as a dialback secret). The key id (8 hex digits
//! of a hash of the key) says which key sealed a value, so a key can be rotated later (a keyring
//! holding the old and new keys) and a node with the wrong key says so instead of failing
//! silently.
//!
//! Every node of a cluster must hold the same key. On the embedded default (no key given) the
//! bootstrap node generates one in its data dir, and a node that joins without a key adopts the
//! cluster's in the join reply (a member receives the replicated data anyway; off loopback the
//! node-to-node API requires the cluster's mutual TLS).

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use sha2::{Digest, Sha256};

/// Prefix of every sealed value.
pub const ENVELOPE_PREFIX: &str = "enc:v1:";
/// Associated data of a calendar service-account password.
pub const FIELD_CALENDAR_PASSWORD: &str = "calendar-credentials.password";
/// Associated data of the XMPP dialback secret.
pub const FIELD_DIALBACK_SECRET: &str = "xmpp-federation.dialback-secret";
/// Name of the generated (or adopted) key file in a data dir.
pub const DATA_DIR_KEY_FILE: &str = "secrets.key";

const NONCE_BYTES: usize = 12;
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    #[error("no secrets key is loaded on this node (it has not joined its cluster yet?)")]
    NoKey,
    #[error(
        "the value was sealed with secrets key {sealed_with}, this node holds key {have}: \
         every node must use the same key (--secrets-key-file or HERALD_SECRETS_KEY)"
    )]
    WrongKey { sealed_with: String, have: String },
    #[error("malformed sealed value: {0}")]
    Malformed(&'static str),
    #[error("sealed value failed authentication (tampered, or sealed for another field)")]
    Unauthentic,
    #[error("a secrets key must be 32 bytes, as 64 hex digits or base64: {0}")]
    BadKey(String),
}

/// One 256-bit key and its id. `Debug` never shows the key.
#[derive(Clone)]
pub struct SecretKey {
    id: String,
    bytes: [u8; 32],
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretKey({})", self.id)
    }
}

impl SecretKey {
    pub fn new(bytes: [u8; 32]) -> Self {
        let mut h = Sha256::new();
        h.update(b"herald secrets key id\0");
        h.update(bytes);
        SecretKey {
            id: hex::encode(&h.finalize()[..4]),
            bytes,
        }
    }

    /// A fresh random key.
    pub fn generate() -> Self {
        SecretKey::new(rand::random())
    }

    /// Parses a key written as 64 hex digits, base64 (standard or URL-safe, padded or not) of
    /// 32 bytes, or 32 raw bytes. Surrounding whitespace is ignored.
    pub fn parse(raw: &[u8]) -> Result<Self, SecretError> {
        let text = std::str::from_utf8(raw).map(str::trim).unwrap_or("");
        let decoded = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            hex::decode(text).ok()
        } else if !text.is_empty() {
            use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
            STANDARD
                .decode(text)
                .or_else(|_| URL_SAFE.decode(text))
                .or_else(|_| URL_SAFE_NO_PAD.decode(text))
                .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(text))
                .ok()
        } else {
            None
        };
        let bytes = match decoded {
            Some(b) => b,
            None if raw.len() == 32 => raw.to_vec(),
            None => return Err(SecretError::BadKey("not hex or base64".into())),
        };
        let arr: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| SecretError::BadKey(format!("{} bytes", bytes.len())))?;
        Ok(SecretKey::new(arr))
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// The key as 64 hex digits (for writing a key file).
    pub fn to_hex(&self) -> String {
        hex::encode(self.bytes)
    }

    pub fn bytes(&self) -> &[u8; 32] {
        &self.bytes
    }

    /// Seals `plaintext` for `field` with a fresh random nonce.
    pub fn seal(&self, field: &str, plaintext: &str) -> String {
        let cipher = ChaCha20Poly1305::new(Key::from_slice(&self.bytes));
        let nonce_bytes: [u8; NONCE_BYTES] = rand::random();
        let ct = cipher
            .encrypt(
                Nonce::from_slice(&nonce_bytes),
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: field.as_bytes(),
                },
            )
            .expect("ChaCha20-Poly1305 encryption of an in-memory buffer cannot fail");
        let mut blob = Vec::with_capacity(NONCE_BYTES + ct.len());
        blob.extend_from_slice(&nonce_bytes);
        blob.extend_from_slice(&ct);
        format!("{ENVELOPE_PREFIX}{}:{}", self.id, B64.encode(blob))
    }

    /// Opens a value sealed for `field`.
    pub fn open(&self, field: &str, sealed: &str) -> Result<String, SecretError> {
        let (id, body) = split(sealed)?;
        if id != self.id {
            return Err(SecretError::WrongKey {
                sealed_with: id.to_string(),
                have: self.id.clone(),
            });
        }
        let blob = B64
            .decode(body)
            .map_err(|_| SecretError::Malformed("not base64"))?;
        if blob.len() < NONCE_BYTES + 16 {
            return Err(SecretError::Malformed("too short"));
        }
        let (nonce, ct) = blob.split_at(NONCE_BYTES);
        let cipher = ChaCha20Poly1305::new(Key::from_slice(&self.bytes));
        let pt = cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ct,
                    aad: field.as_bytes(),
                },
            )
            .map_err(|_| SecretError::Unauthentic)?;
        String::from_utf8(pt).map_err(|_| SecretError::Malformed("not UTF-8"))
    }
}

/// True when `value` is a sealed envelope (rather than a value stored before encryption).
pub fn is_sealed(value: &str) -> bool {
    value.starts_with(ENVELOPE_PREFIX)
}

/// The key id a sealed value names.
pub fn sealed_key_id(value: &str) -> Option<&str> {
    split(value).ok().map(|(id, _)| id)
}

fn split(sealed: &str) -> Result<(&str, &str), SecretError> {
    let rest = sealed
        .strip_prefix(ENVELOPE_PREFIX)
        .ok_or(SecretError::Malformed("no enc:v1: prefix"))?;
    rest.split_once(':')
        .ok_or(SecretError::Malformed("no key id"))
}

/// Where this node's key came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// `HERALD_SECRETS_KEY`.
    Environment,
    /// `--secrets-key-file` / `secrets_key_file`.
    File(PathBuf),
    /// Generated on the embedded default (this node bootstrapped the cluster).
    Generated(PathBuf),
    /// Received from the cluster when this node joined (embedded default).
    Adopted(PathBuf),
}

impl KeySource {
    /// Keys of the embedded default are handed to joining nodes; operator keys never are
    /// (operators give every node the same key themselves).
    pub fn shareable(&self) -> bool {
        matches!(self, KeySource::Generated(_) | KeySource::Adopted(_))
    }
}

#[derive(Debug, Default)]
struct KeyringState {
    key: Option<(SecretKey, KeySource)>,
    /// Where to write a key received at join (embedded default), if this node has none.
    adopt_into: Option<PathBuf>,
}

/// This node's secrets key, shared by the admin service (seal) and the users of secrets
/// (open). Empty until a joining node on the embedded default receives the cluster's key.
#[derive(Debug, Clone, Default)]
pub struct Keyring(Arc<RwLock<KeyringState>>);

impl Keyring {
    pub fn with_key(key: SecretKey, source: KeySource) -> Self {
        let k = Keyring::default();
        k.write().key = Some((key, source));
        k
    }

    /// No key yet: the cluster's key will be written to `path` when this node joins.
    pub fn awaiting_join(path: PathBuf) -> Self {
        let k = Keyring::default();
        k.write().adopt_into = Some(path);
        k
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, KeyringState> {
        self.0.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, KeyringState> {
        self.0.write().unwrap_or_else(|p| p.into_inner())
    }

    pub fn key_id(&self) -> Option<String> {
        self.read().key.as_ref().map(|(k, _)| k.id().to_string())
    }

    pub fn has_key(&self) -> bool {
        self.read().key.is_some()
    }

    /// True while this node waits for the cluster's key at join.
    pub fn awaiting(&self) -> bool {
        let s = self.read();
        s.key.is_none() && s.adopt_into.is_some()
    }

    /// The key to hand to a joining node: only a key of the embedded default.
    pub fn shareable_key(&self) -> Option<SecretKey> {
        match &self.read().key {
            Some((k, src)) if src.shareable() => Some(k.clone()),
            _ => None,
        }
    }

    /// Seals `plaintext` for `field` (an empty value stays empty: "not set").
    pub fn seal(&self, field: &str, plaintext: &str) -> Result<String, SecretError> {
        if plaintext.is_empty() {
            return Ok(String::new());
        }
        match &self.read().key {
            Some((k, _)) => Ok(k.seal(field, plaintext)),
            None => Err(SecretError::NoKey),
        }
    }

    /// Opens a stored value. A value that is not sealed (written before secrets were encrypted)
    /// is returned as it is; it is sealed the next time an admin writes it.
    pub fn open(&self, field: &str, stored: &str) -> Result<String, SecretError> {
        if !is_sealed(stored) {
            return Ok(stored.to_string());
        }
        match &self.read().key {
            Some((k, _)) => k.open(field, stored),
            None => Err(SecretError::NoKey),
        }
    }

    /// Installs the cluster's key received at join, if this node is waiting for one: writes it
    /// to the data dir (mode 0600) first. Returns what happened, for the log.
    pub fn adopt(&self, raw: &[u8]) -> Result<Option<String>, String> {
        let mut s = self.write();
        let Some(path) = s.adopt_into.clone() else {
            return Ok(None);
        };
        if s.key.is_some() {
            return Ok(None);
        }
        let key = SecretKey::parse(raw).map_err(|e| e.to_string())?;
        write_key_file(&path, &key).map_err(|e| format!("writing {}: {e}", path.display()))?;
        let id = key.id().to_string();
        s.key = Some((key, KeySource::Adopted(path)));
        s.adopt_into = None;
        Ok(Some(id))
    }
}

/// Writes `key` as hex to `path` with mode 0600 (created new, then renamed into place).
pub fn write_key_file(path: &Path, key: &SecretKey) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("key.tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(format!("{}\n", key.to_hex()).as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_then_open_round_trips_with_a_fresh_nonce_each_time() {
        let k = SecretKey::generate();
        let a = k.seal(FIELD_CALENDAR_PASSWORD, "hunter2-pw");
        let b = k.seal(FIELD_CALENDAR_PASSWORD, "hunter2-pw");
        assert_ne!(a, b, "a random nonce per value");
        assert!(is_sealed(&a) && !a.contains("hunter2"));
        assert_eq!(sealed_key_id(&a), Some(k.id()));
        assert_eq!(k.open(FIELD_CALENDAR_PASSWORD, &a).unwrap(), "hunter2-pw");
        assert_eq!(k.open(FIELD_CALENDAR_PASSWORD, &b).unwrap(), "hunter2-pw");
    }

    #[test]
    fn wrong_key_wrong_field_and_tampering_are_refused() {
        let k = SecretKey::generate();
        let other = SecretKey::generate();
        let s = k.seal(FIELD_DIALBACK_SECRET, "0123456789abcdef");
        assert!(matches!(
            other.open(FIELD_DIALBACK_SECRET, &s),
            Err(SecretError::WrongKey { .. })
        ));
        assert_eq!(
            k.open(FIELD_CALENDAR_PASSWORD, &s),
            Err(SecretError::Unauthentic)
        );
        // Flip one character of the ciphertext.
        let mut t = s.clone().into_bytes();
        let last = t.len() - 3;
        t[last] = if t[last] == b'A' { b'B' } else { b'A' };
        let t = String::from_utf8(t).unwrap();
        assert_eq!(
            k.open(FIELD_DIALBACK_SECRET, &t),
            Err(SecretError::Unauthentic)
        );
        assert!(k.open(FIELD_DIALBACK_SECRET, "enc:v1:nokeyid").is_err());
        assert!(k
            .open(FIELD_DIALBACK_SECRET, &format!("enc:v1:{}:!!", k.id()))
            .is_err());
    }

    #[test]
    fn keys_parse_from_hex_base64_and_raw_bytes() {
        let k = SecretKey::generate();
        let hex_text = format!("  {}\n", k.to_hex());
        assert_eq!(SecretKey::parse(hex_text.as_bytes()).unwrap().id(), k.id());
        let b64 = base64::engine::general_purpose::STANDARD.encode(k.bytes());
        assert_eq!(SecretKey::parse(b64.as_bytes()).unwrap().id(), k.id());
        assert_eq!(SecretKey::parse(k.bytes()).unwrap().id(), k.id());
        assert!(SecretKey::parse(b"too short").is_err());
        assert!(SecretKey::parse(b"").is_err());
        assert!(!format!("{k:?}").contains(&k.to_hex()));
    }

    #[test]
    fn keyring_passes_legacy_plaintext_and_empty_values_through() {
        let ring = Keyring::with_key(SecretKey::generate(), KeySource::Environment);
        assert_eq!(ring.seal(FIELD_CALENDAR_PASSWORD, "").unwrap(), "");
        assert_eq!(
            ring.open(FIELD_CALENDAR_PASSWORD, "legacy").unwrap(),
            "legacy"
        );
        assert!(
            ring.shareable_key().is_none(),
            "operator keys are never sent"
        );
        let empty = Keyring::default();
        assert_eq!(
            empty.seal(FIELD_CALENDAR_PASSWORD, "x"),
            Err(SecretError::NoKey)
        );
    }

    #[test]
    fn a_joining_node_adopts_the_cluster_key_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(DATA_DIR_KEY_FILE);
        let ring = Keyring::awaiting_join(path.clone());
        assert!(ring.awaiting());
        let k = SecretKey::generate();
        assert_eq!(ring.adopt(k.bytes()).unwrap(), Some(k.id().to_string()));
        assert_eq!(ring.key_id().as_deref(), Some(k.id()));
        assert!(ring.shareable_key().is_some());
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let on_disk = SecretKey::parse(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(on_disk.id(), k.id());
        // A second key is ignored.
        assert_eq!(ring.adopt(SecretKey::generate().bytes()).unwrap(), None);
        assert_eq!(ring.key_id().as_deref(), Some(k.id()));
    }
}
