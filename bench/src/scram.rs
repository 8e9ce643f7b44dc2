//! Client side of SCRAM-SHA-1 and SCRAM-SHA-256 (RFC 5802, RFC 7677) without channel binding:
//! just enough for the load generator to authenticate like a real client.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};

/// Why a SCRAM exchange failed on the client side.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScramError {
    /// The server-first message was not `r=…,s=…,i=…` or was not valid base64/UTF-8.
    #[error("malformed server-first message: {0}")]
    ServerFirst(&'static str),
    /// The server nonce does not start with ours.
    #[error("server nonce does not extend the client nonce")]
    Nonce,
    /// The server-final message did not carry the expected `v=` signature.
    #[error("server signature mismatch")]
    ServerSignature,
}

/// Whether this process keeps each derived SaltedPassword (see [`cache_keys`]).
static CACHE_KEYS: AtomicBool = AtomicBool::new(false);

type KeyCache = Mutex<HashMap<(Hash, String, Vec<u8>, u32), Vec<u8>>>;

/// SaltedPassword by (hash, password, salt, iteration count), once [`cache_keys`] is on.
static KEYS: OnceLock<KeyCache> = OnceLock::new();

/// From now on, keep every SaltedPassword this process derives and reuse it when the server
/// sends the same salt and iteration count again, as a reconnecting client may (RFC 5802 §5.1:
/// the client can store SaltedPassword, or ClientKey and ServerKey, instead of the password),
/// so that a reconnect storm measures the server and the TLS handshake rather than the
/// generator's PBKDF2.
pub fn cache_keys() {
    CACHE_KEYS.store(true, Ordering::Relaxed);
}

/// The hash a SCRAM mechanism is built on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Hash {
    /// SCRAM-SHA-1.
    Sha1,
    /// SCRAM-SHA-256.
    Sha256,
}

impl Hash {
    /// The SASL mechanism name.
    pub fn mechanism(self) -> &'static str {
        match self {
            Hash::Sha1 => "SCRAM-SHA-1",
            Hash::Sha256 => "SCRAM-SHA-256",
        }
    }

    fn digest(self, m: &[u8]) -> Vec<u8> {
        match self {
            Hash::Sha1 => Sha1::digest(m).to_vec(),
            Hash::Sha256 => Sha256::digest(m).to_vec(),
        }
    }

    fn hmac(self, key: &[u8], m: &[u8]) -> Vec<u8> {
        // HMAC takes keys of any length, so new_from_slice cannot fail; fall back to an empty
        // MAC rather than panic if that ever changed.
        match self {
            Hash::Sha1 => <Hmac<Sha1> as Mac>::new_from_slice(key)
                .map(|mut mac| {
                    mac.update(m);
                    mac.finalize().into_bytes().to_vec()
                })
                .unwrap_or_default(),
            Hash::Sha256 => <Hmac<Sha256> as Mac>::new_from_slice(key)
                .map(|mut mac| {
                    mac.update(m);
                    mac.finalize().into_bytes().to_vec()
                })
                .unwrap_or_default(),
        }
    }

    fn salted_password(self, password: &str, salt: &[u8], iterations: u32) -> Vec<u8> {
        if !CACHE_KEYS.load(Ordering::Relaxed) {
            return self.derive(password, salt, iterations);
        }
        let key = (self, password.to_string(), salt.to_vec(), iterations);
        let cache = KEYS.get_or_init(Default::default);
        if let Some(k) = cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
        {
            return k.clone();
        }
        let k = self.derive(password, salt, iterations);
        cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key, k.clone());
        k
    }

    fn derive(self, password: &str, salt: &[u8], iterations: u32) -> Vec<u8> {
        let mut out = vec![0u8; if self == Hash::Sha1 { 20 } else { 32 }];
        match self {
            Hash::Sha1 => {
                pbkdf2::pbkdf2_hmac::<Sha1>(password.as_bytes(), salt, iterations, &mut out)
            }
            Hash::Sha256 => {
                pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), salt, iterations, &mut out)
            }
        }
        out
    }
}

/// One client-side SCRAM exchange.
#[derive(Debug)]
pub struct ScramClient {
    hash: Hash,
    username: String,
    password: String,
    nonce: String,
    auth_message: Option<String>,
    salted: Option<Vec<u8>>,
}

impl ScramClient {
    /// Starts an exchange for `username` (a plain localpart: no `=` or `,`) with a client
    /// nonce (printable, no `,`).
    pub fn new(hash: Hash, username: &str, password: &str, nonce: &str) -> Self {
        ScramClient {
            hash,
            username: username.replace('=', "=3D").replace(',', "=2C"),
            password: password.to_string(),
            nonce: nonce.to_string(),
            auth_message: None,
            salted: None,
        }
    }

    fn first_bare(&self) -> String {
        format!("n={},r={}", self.username, self.nonce)
    }

    /// The client-first message (gs2 header included), raw bytes (not base64).
    pub fn client_first(&self) -> Vec<u8> {
        format!("n,,{}", self.first_bare()).into_bytes()
    }

    /// Takes the raw server-first message, returns the raw client-final message.
    pub fn client_final(&mut self, server_first: &[u8]) -> Result<Vec<u8>, ScramError> {
        let sf = std::str::from_utf8(server_first).map_err(|_| ScramError::ServerFirst("utf-8"))?;
        let (mut r, mut s, mut i) = (None, None, None);
        for part in sf.split(',') {
            if let Some(v) = part.strip_prefix("r=") {
                r = Some(v);
            } else if let Some(v) = part.strip_prefix("s=") {
                s = Some(v);
            } else if let Some(v) = part.strip_prefix("i=") {
                i = Some(v);
            }
        }
        let r = r.ok_or(ScramError::ServerFirst("no nonce"))?;
        let salt = B64
            .decode(s.ok_or(ScramError::ServerFirst("no salt"))?)
            .map_err(|_| ScramError::ServerFirst("salt is not base64"))?;
        let iterations: u32 = i
            .ok_or(ScramError::ServerFirst("no iteration count"))?
            .parse()
            .map_err(|_| ScramError::ServerFirst("bad iteration count"))?;
        if !r.starts_with(&self.nonce) || r.len() == self.nonce.len() {
            return Err(ScramError::Nonce);
        }
        let salted = self.hash.salted_password(&self.password, &salt, iterations);
        let client_key = self.hash.hmac(&salted, b"Client Key");
        let stored_key = self.hash.digest(&client_key);
        let without_proof = format!("c=biws,r={r}");
        let auth = format!("{},{sf},{without_proof}", self.first_bare());
        let signature = self.hash.hmac(&stored_key, auth.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(signature.iter())
            .map(|(a, b)| a ^ b)
            .collect();
        self.auth_message = Some(auth);
        self.salted = Some(salted);
        Ok(format!("{without_proof},p={}", B64.encode(proof)).into_bytes())
    }

    /// Checks the raw server-final (`v=…`) message carried by `<success/>`.
    pub fn verify_server_final(&self, server_final: &[u8]) -> Result<(), ScramError> {
        let (Some(auth), Some(salted)) = (&self.auth_message, &self.salted) else {
            return Err(ScramError::ServerSignature);
        };
        let server_key = self.hash.hmac(salted, b"Server Key");
        let expected = B64.encode(self.hash.hmac(&server_key, auth.as_bytes()));
        let got = std::str::from_utf8(server_final)
            .ok()
            .and_then(|s| s.strip_prefix("v="))
            .ok_or(ScramError::ServerSignature)?;
        if got == expected {
            Ok(())
        } else {
            Err(ScramError::ServerSignature)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With the cache on, the same (password, salt, iterations) gives the same key without
    /// deriving it again, and a different salt still derives its own.
    #[test]
    fn cached_keys_match_derived_ones() {
        cache_keys();
        for hash in [Hash::Sha1, Hash::Sha256] {
            let a = hash.salted_password("pencil", b"salt-1", 64);
            assert_eq!(a, hash.derive("pencil", b"salt-1", 64));
            assert_eq!(hash.salted_password("pencil", b"salt-1", 64), a);
            let b = hash.salted_password("pencil", b"salt-2", 64);
            assert_ne!(a, b);
            assert_eq!(b, hash.derive("pencil", b"salt-2", 64));
        }
    }

    /// RFC 5802 §5 and RFC 7677 §3 example exchanges.
    #[test]
    fn rfc_examples() {
        let cases = [
            (
                Hash::Sha1,
                "fyko+d2lbbFgONRv9qkxdawL",
                "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096",
                "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
                "v=rmF9pqV8S7suAoZWja4dJRkFsKQ=",
            ),
            (
                Hash::Sha256,
                "rOprNGfwEbeRWgbNEkqO",
                "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
                "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
                "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
            ),
        ];
        for (hash, nonce, server_first, client_final, server_final) in cases {
            let mut c = ScramClient::new(hash, "user", "pencil", nonce);
            assert_eq!(
                c.client_first(),
                format!("n,,n=user,r={nonce}").into_bytes()
            );
            let got = c
                .client_final(server_first.as_bytes())
                .expect("client final");
            assert_eq!(String::from_utf8(got).expect("utf-8"), client_final);
            assert_eq!(c.verify_server_final(server_final.as_bytes()), Ok(()));
            assert_eq!(
                c.verify_server_final(b"v=AAAA"),
                Err(ScramError::ServerSignature)
            );
        }
    }

    #[test]
    fn rejects_bad_server_first() {
        let cases: [(&[u8], ScramError); 4] = [
            (
                b"s=QSXCR+Q6sek8bf92,i=4096",
                ScramError::ServerFirst("no nonce"),
            ),
            (b"r=abcX,i=4096", ScramError::ServerFirst("no salt")),
            (
                b"r=abcX,s=QSXCR+Q6sek8bf92,i=x",
                ScramError::ServerFirst("bad iteration count"),
            ),
            (b"r=zzz,s=QSXCR+Q6sek8bf92,i=1", ScramError::Nonce),
        ];
        for (input, want) in cases {
            let mut c = ScramClient::new(Hash::Sha1, "u", "p", "abc");
            assert_eq!(c.client_final(input), Err(want));
        }
    }
}
