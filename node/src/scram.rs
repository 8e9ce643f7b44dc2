//! Salted SCRAM secrets for new passwords: what the store keeps instead of a password.
//!
//! The derivation itself lives in `herald_xmpp::sasl` (one implementation for storing and for
//! verifying logins, with the same password preparation); this module picks the salt and the
//! iteration count and converts to the stored protobuf form.

use herald_grpc::config::ScramSecret;
use herald_xmpp::sasl::{derive_scram_sha1, derive_scram_sha256, StoredSecret};
use rand::RngCore;

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

/// The stored (protobuf) form of a secret.
pub fn to_stored(s: StoredSecret) -> ScramSecret {
    ScramSecret {
        salt: s.salt,
        iterations: s.iterations,
        stored_key: s.stored_key,
        server_key: s.server_key,
    }
}

/// The SASL form of a stored secret.
pub fn from_stored(s: &ScramSecret) -> StoredSecret {
    StoredSecret {
        salt: s.salt.clone(),
        iterations: s.iterations,
        stored_key: s.stored_key.clone(),
        server_key: s.server_key.clone(),
    }
}

/// Fresh SHA-256 and SHA-1 secrets, each with its own random salt.
pub fn new_secrets(password: &str) -> Result<(ScramSecret, ScramSecret), PasswordError> {
    check_password(password)?;
    let mut rng = rand::rng();
    let mut s256 = [0u8; SALT_LEN];
    let mut s1 = [0u8; SALT_LEN];
    rng.fill_bytes(&mut s256);
    rng.fill_bytes(&mut s1);
    Ok((
        to_stored(derive_scram_sha256(password, &s256, ITERATIONS)),
        to_stored(derive_scram_sha1(password, &s1, ITERATIONS)),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

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
        // Round trip through the SASL form gives back the same secret.
        assert_eq!(to_stored(from_stored(&a)), a);
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
