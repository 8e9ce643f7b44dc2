//! PLAIN (RFC 4616): `[authzid] NUL authcid NUL passwd`, checked against the stored SCRAM
//! secret by deriving it from the password with the stored salt and iteration count.

use std::fmt;

use super::crypto::{ct_eq, HashAlg, FAKE_ITERATIONS};
use super::{check_authzid, username, Credentials, SaslError, Step, StoredSecret};

/// A parsed PLAIN message waiting for the user's credentials.
pub(crate) struct PlainPending {
    /// The prepared username.
    pub(crate) authcid: String,
    authzid: Option<String>,
    password: String,
}

impl fmt::Debug for PlainPending {
    /// Never prints the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PlainPending")
            .field("authcid", &self.authcid)
            .field("authzid", &self.authzid)
            .finish_non_exhaustive()
    }
}

fn malformed(what: &str) -> SaslError {
    SaslError::MalformedRequest(what.to_string())
}

/// Parses a PLAIN message.
pub(crate) fn parse(msg: &[u8]) -> Result<PlainPending, SaslError> {
    let mut parts = msg.split(|&b| b == 0);
    let (Some(authzid), Some(authcid), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed("PLAIN needs exactly two NUL separators"));
    };
    fn text(b: &[u8]) -> Result<&str, SaslError> {
        std::str::from_utf8(b).map_err(|_| malformed("not UTF-8"))
    }
    let (authzid, authcid, password) = (text(authzid)?, text(authcid)?, text(password)?);
    if authcid.is_empty() {
        return Err(malformed("empty authcid"));
    }
    if password.is_empty() {
        return Err(malformed("empty password"));
    }
    let authcid = username(authcid)?;
    let authzid = check_authzid(authzid, &authcid)?;
    Ok(PlainPending {
        authcid,
        authzid,
        password: password.to_string(),
    })
}

/// Checks the password against the user's secret: SCRAM-SHA-256 when there is one, else
/// SCRAM-SHA-1. An unknown user costs the same key derivation and fails the same way.
pub(crate) fn verify(pending: PlainPending, creds: Option<Credentials>) -> Result<Step, SaslError> {
    let creds = creds.unwrap_or_default();
    let pick = |hash: HashAlg, s: Option<StoredSecret>| s.filter(|s| hash.usable(s));
    let found = pick(HashAlg::Sha256, creds.scram_sha256)
        .map(|s| (HashAlg::Sha256, s))
        .or_else(|| pick(HashAlg::Sha1, creds.scram_sha1).map(|s| (HashAlg::Sha1, s)));
    let ok = match found {
        Some((hash, secret)) => {
            let derived = hash.derive(&pending.password, &secret.salt, secret.iterations);
            ct_eq(&derived.stored_key, &secret.stored_key)
        }
        None => {
            let fake = HashAlg::Sha256.fake_secret(&pending.authcid);
            let derived = HashAlg::Sha256.derive(&pending.password, &fake.salt, FAKE_ITERATIONS);
            // Compared only to spend the same time as a real check; never accepted.
            let _ = ct_eq(&derived.stored_key, &fake.stored_key);
            false
        }
    };
    if !ok {
        return Err(SaslError::NotAuthorized);
    }
    Ok(Step::Success {
        authcid: pending.authcid,
        authzid: pending.authzid,
        additional: Vec::new(),
    })
}
