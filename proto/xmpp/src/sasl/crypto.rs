//! The SCRAM key schedule (RFC 5802 §3) for SHA-1 and SHA-256, and constant-time comparison.
//!
//! SaltedPassword = PBKDF2-HMAC-H(Normalize(password), salt, i);
//! ClientKey = HMAC(SaltedPassword, "Client Key"); StoredKey = H(ClientKey);
//! ServerKey = HMAC(SaltedPassword, "Server Key").

use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};

use super::saslprep::prepare_password;
use super::StoredSecret;

/// Iteration count used for the made-up secret of an unknown user (the value new secrets get).
pub(crate) const FAKE_ITERATIONS: u32 = 4096;

/// The hash a SCRAM mechanism is built on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HashAlg {
    Sha1,
    Sha256,
}

impl HashAlg {
    /// Output length in bytes.
    pub(crate) fn len(self) -> usize {
        match self {
            HashAlg::Sha1 => 20,
            HashAlg::Sha256 => 32,
        }
    }

    /// H(msg).
    pub(crate) fn digest(self, msg: &[u8]) -> Vec<u8> {
        match self {
            HashAlg::Sha1 => Sha1::digest(msg).to_vec(),
            HashAlg::Sha256 => Sha256::digest(msg).to_vec(),
        }
    }

    /// HMAC-H(key, msg).
    pub(crate) fn hmac(self, key: &[u8], msg: &[u8]) -> Vec<u8> {
        // HMAC accepts keys of any length (longer ones are hashed), so `new_from_slice` cannot
        // fail whatever the input.
        match self {
            HashAlg::Sha1 => {
                let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(key)
                    .expect("HMAC accepts keys of any length");
                mac.update(msg);
                mac.finalize().into_bytes().to_vec()
            }
            HashAlg::Sha256 => {
                let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key)
                    .expect("HMAC accepts keys of any length");
                mac.update(msg);
                mac.finalize().into_bytes().to_vec()
            }
        }
    }

    /// The full key schedule for `password` (prepared with [`prepare_password`]).
    /// An iteration count of 0 behaves as 1 (PBKDF2 always runs the first round).
    pub(crate) fn derive(self, password: &str, salt: &[u8], iterations: u32) -> StoredSecret {
        let prepared = prepare_password(password);
        let mut salted = vec![0u8; self.len()];
        match self {
            HashAlg::Sha1 => {
                pbkdf2::pbkdf2_hmac::<Sha1>(prepared.as_bytes(), salt, iterations, &mut salted)
            }
            HashAlg::Sha256 => {
                pbkdf2::pbkdf2_hmac::<Sha256>(prepared.as_bytes(), salt, iterations, &mut salted)
            }
        }
        let client_key = self.hmac(&salted, b"Client Key");
        StoredSecret {
            salt: salt.to_vec(),
            iterations,
            stored_key: self.digest(&client_key),
            server_key: self.hmac(&salted, b"Server Key"),
        }
    }

    /// Whether a stored secret can be used with this hash: a salt, at least one iteration and
    /// keys of the hash's length. Anything else is treated like a missing secret.
    pub(crate) fn usable(self, s: &StoredSecret) -> bool {
        !s.salt.is_empty()
            && s.iterations > 0
            && s.stored_key.len() == self.len()
            && s.server_key.len() == self.len()
    }

    /// A secret for a user we do not know (or who has no secret for this hash): a salt that
    /// depends only on the username, so that repeated attempts see the same salt as they would
    /// for a real user, and keys nobody can match.
    pub(crate) fn fake_secret(self, username: &str) -> StoredSecret {
        let mut salt = self.hmac(b"herald fake SCRAM salt", username.as_bytes());
        salt.truncate(16);
        StoredSecret {
            stored_key: self.hmac(&salt, b"stored"),
            server_key: self.hmac(&salt, b"server"),
            salt,
            iterations: FAKE_ITERATIONS,
        }
    }
}

/// Compares two byte strings in time that depends only on their lengths.
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_compare() {
        let table: &[(&[u8], &[u8], bool)] = &[
            (b"", b"", true),
            (b"abc", b"abc", true),
            (b"abc", b"abd", false),
            (b"abc", b"ab", false),
            (b"\x00", b"\x80", false),
        ];
        for (a, b, want) in table {
            assert_eq!(ct_eq(a, b), *want, "{a:?} {b:?}");
        }
    }

    #[test]
    fn fake_secret_is_stable_per_user_and_usable() {
        for alg in [HashAlg::Sha1, HashAlg::Sha256] {
            let a = alg.fake_secret("alice");
            assert_eq!(a, alg.fake_secret("alice"));
            assert_ne!(a.salt, alg.fake_secret("bob").salt);
            assert_eq!(a.salt.len(), 16);
            assert!(alg.usable(&a));
        }
    }

    #[test]
    fn unusable_secrets() {
        let good = HashAlg::Sha256.derive("pw", b"salt", 1);
        assert!(HashAlg::Sha256.usable(&good));
        assert!(!HashAlg::Sha1.usable(&good), "wrong key length");
        let mut s = good.clone();
        s.salt.clear();
        assert!(!HashAlg::Sha256.usable(&s));
        let mut s = good.clone();
        s.iterations = 0;
        assert!(!HashAlg::Sha256.usable(&s));
        let mut s = good;
        s.server_key.pop();
        assert!(!HashAlg::Sha256.usable(&s));
    }
}
