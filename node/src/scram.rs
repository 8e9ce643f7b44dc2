//! Salted SCRAM secrets (RFC 5802 / RFC 7677): what the store keeps instead of a password.
//!
//! StoredKey = H(HMAC(SaltedPassword, "Client Key")), ServerKey = HMAC(SaltedPassword,
//! "Server Key"), SaltedPassword = PBKDF2-HMAC-H(password, salt, iterations). The c2s SASL code
//! verifies logins against these without ever seeing a stored password.

use herald_grpc::config::ScramSecret;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha1::Sha1;
use sha2::{Digest, Sha256};

/// Iterations for new secrets (RFC 7677 asks for at least 4096).
pub const ITERATIONS: u32 = 4096;
const SALT_LEN: usize = 16;
/// Longest password accepted (bytes).
pub const MAX_PASSWORD: usize = 1024;

/// Why a password cannot be used.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PasswordError {
    #[error("password is empty")]
    Empty,
    #[error("password is longer than {MAX_PASSWORD} bytes")]
    TooLong,
    #[error("password contains control characters")]
    Control,
}

/// Checks a password before deriving secrets from it.
pub fn check_password(password: &str) -> Result<(), PasswordError> {
    if password.is_empty() {
        return Err(PasswordError::Empty);
    }
    if password.len() > MAX_PASSWORD {
        return Err(PasswordError::TooLong);
    }
    if password.chars().any(char::is_control) {
        return Err(PasswordError::Control);
    }
    Ok(())
}

macro_rules! scram_for {
    ($derive:ident, $hmac:ident, $hash:ty, $len:expr) => {
        /// Derives the secret for this hash with the given salt and iteration count.
        pub fn $derive(password: &str, salt: &[u8], iterations: u32) -> ScramSecret {
            let mut salted = [0u8; $len];
            pbkdf2::pbkdf2_hmac::<$hash>(password.as_bytes(), salt, iterations, &mut salted);
            let client_key = $hmac(&salted, b"Client Key");
            let server_key = $hmac(&salted, b"Server Key");
            ScramSecret {
                salt: salt.to_vec(),
                iterations,
                stored_key: <$hash>::digest(&client_key).to_vec(),
                server_key,
            }
        }

        /// HMAC with this hash.
        pub fn $hmac(key: &[u8], msg: &[u8]) -> Vec<u8> {
            let mut mac =
                <Hmac<$hash> as Mac>::new_from_slice(key).expect("HMAC accepts keys of any length");
            mac.update(msg);
            mac.finalize().into_bytes().to_vec()
        }
    };
}

scram_for!(derive_sha256, hmac_sha256, Sha256, 32);
scram_for!(derive_sha1, hmac_sha1, Sha1, 20);

/// Fresh SHA-256 and SHA-1 secrets, each with its own random salt.
pub fn new_secrets(password: &str) -> Result<(ScramSecret, ScramSecret), PasswordError> {
    check_password(password)?;
    let mut rng = rand::rng();
    let mut s256 = [0u8; SALT_LEN];
    let mut s1 = [0u8; SALT_LEN];
    rng.fill_bytes(&mut s256);
    rng.fill_bytes(&mut s1);
    Ok((
        derive_sha256(password, &s256, ITERATIONS),
        derive_sha1(password, &s1, ITERATIONS),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    fn b64(s: &str) -> Vec<u8> {
        base64::engine::general_purpose::STANDARD.decode(s).unwrap()
    }

    /// Checks a secret against a published exchange: the server signature proves ServerKey,
    /// and recovering ClientKey from the proof and hashing it proves StoredKey.
    fn check_exchange(
        s: &ScramSecret,
        auth_message: &str,
        proof: &str,
        server_sig: &str,
        mac: fn(&[u8], &[u8]) -> Vec<u8>,
        hash: fn(&[u8]) -> Vec<u8>,
    ) {
        assert_eq!(mac(&s.server_key, auth_message.as_bytes()), b64(server_sig));
        let client_sig = mac(&s.stored_key, auth_message.as_bytes());
        let client_key: Vec<u8> = b64(proof)
            .iter()
            .zip(client_sig.iter())
            .map(|(a, b)| a ^ b)
            .collect();
        assert_eq!(hash(&client_key), s.stored_key);
    }

    /// RFC 5802 §5: user "user", password "pencil".
    #[test]
    fn rfc5802_sha1_exchange() {
        let s = derive_sha1("pencil", &b64("QSXCR+Q6sek8bf92"), 4096);
        let auth = "n=user,r=fyko+d2lbbFgONRv9qkxdawL,\
                    r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096,\
                    c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j";
        check_exchange(
            &s,
            auth,
            "v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
            "rmF9pqV8S7suAoZWja4dJRkFsKQ=",
            hmac_sha1,
            |d| Sha1::digest(d).to_vec(),
        );
    }

    /// RFC 7677 §3: user "user", password "pencil".
    #[test]
    fn rfc7677_sha256_exchange() {
        let s = derive_sha256("pencil", &b64("W22ZaJ0SNY7soEsUEjb6gQ=="), 4096);
        let auth = "n=user,r=rOprNGfwEbeRWgbNEkqO,\
                    r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                    s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,\
                    c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
        check_exchange(
            &s,
            auth,
            "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
            "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
            hmac_sha256,
            |d| Sha256::digest(d).to_vec(),
        );
    }

    #[test]
    fn fresh_secrets_are_salted_and_never_the_password() {
        let (a, a1) = new_secrets("secret").unwrap();
        let (b, _) = new_secrets("secret").unwrap();
        assert_ne!(a.salt, b.salt);
        assert_ne!(a.stored_key, b.stored_key);
        assert_eq!(a.iterations, ITERATIONS);
        assert_eq!(a.stored_key.len(), 32);
        assert_eq!(a1.stored_key.len(), 20);
        assert!(!a.stored_key.windows(6).any(|w| w == b"secret"));
    }

    #[test]
    fn bad_passwords() {
        assert_eq!(new_secrets("").unwrap_err(), PasswordError::Empty);
        assert_eq!(
            new_secrets(&"x".repeat(MAX_PASSWORD + 1)).unwrap_err(),
            PasswordError::TooLong
        );
        assert_eq!(new_secrets("a\nb").unwrap_err(), PasswordError::Control);
    }
}
