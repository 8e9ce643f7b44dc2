//! Server side of SASL (RFC 4422) for c2s: SCRAM-SHA-256 and SCRAM-SHA-1 (RFC 5802, RFC 7677,
//! without channel binding) and PLAIN (RFC 4616). Sans-io: bytes in, steps out; the caller
//! supplies the server nonce (randomness) and looks up the user's stored secrets.
//!
//! Flow: [`SaslServer::start`] with the client's initial response → [`Step::Challenge`] (empty,
//! when there was no initial response; the client's answer goes to [`SaslServer::step`]) or
//! [`Step::NeedCredentials`] → [`SaslServer::provide_credentials`] → for PLAIN
//! [`Step::Success`]; for SCRAM a [`Step::Challenge`] (server-first), then
//! [`SaslServer::step`] with the client-final message → [`Step::Success`] carrying
//! `v=ServerSignature`. Any error ends the exchange: later calls return
//! [`SaslError::Aborted`], as do calls after success or out of turn.
//!
//! - `saslprep`: username and password preparation (what of SASLprep/PRECIS we apply).
//! - `crypto`: the SCRAM key schedule and constant-time comparison.
//! - `scram`, `plain`: the two mechanisms' message parsing and checks.
//!
//! Unknown users are not revealed: SCRAM answers with a made-up salt (stable per username)
//! and the usual iteration count and fails at the end with not-authorized; PLAIN spends the
//! same key derivation before failing.
//!
//! An authzid is accepted only when it is empty or a bare JID whose localpart is the authcid;
//! this module does not know the stream's domain, so the caller must check that the domain of
//! a returned authzid is the one the client authenticates to.

mod crypto;
mod plain;
mod saslprep;
mod scram;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_fuzz;
#[cfg(test)]
mod tests_plain;

use std::fmt;

use crate::jid::Jid;

pub use saslprep::{prepare_password, prepare_username, UsernameError, MAX_USERNAME};

/// The largest client message (initial response or response, after base64 decoding) accepted,
/// in bytes; larger ones fail with malformed-request.
pub const MAX_MESSAGE: usize = 4096;

/// A salted SCRAM secret as stored: never the password.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StoredSecret {
    /// The salt given to PBKDF2.
    pub salt: Vec<u8>,
    /// The PBKDF2 iteration count (counts below 4096 from our own store are still accepted).
    pub iterations: u32,
    /// StoredKey = H(HMAC(SaltedPassword, "Client Key")).
    pub stored_key: Vec<u8>,
    /// ServerKey = HMAC(SaltedPassword, "Server Key").
    pub server_key: Vec<u8>,
}

/// What the server holds for one user.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Credentials {
    /// The SCRAM-SHA-256 secret (also preferred for PLAIN), if any.
    pub scram_sha256: Option<StoredSecret>,
    /// The SCRAM-SHA-1 secret, if any.
    pub scram_sha1: Option<StoredSecret>,
}

/// A SASL mechanism we implement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mechanism {
    /// SCRAM-SHA-256 (RFC 7677), without channel binding.
    ScramSha256,
    /// SCRAM-SHA-1 (RFC 5802), without channel binding.
    ScramSha1,
    /// PLAIN (RFC 4616); to be offered over TLS only.
    Plain,
}

impl Mechanism {
    /// The IANA name, e.g. "SCRAM-SHA-256".
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::ScramSha1 => "SCRAM-SHA-1",
            Mechanism::Plain => "PLAIN",
        }
    }

    /// The mechanism with this IANA name (case-sensitive, as SASL names are upper case).
    pub fn from_name(name: &str) -> Option<Mechanism> {
        match name {
            "SCRAM-SHA-256" => Some(Mechanism::ScramSha256),
            "SCRAM-SHA-1" => Some(Mechanism::ScramSha1),
            "PLAIN" => Some(Mechanism::Plain),
            _ => None,
        }
    }
}

/// SASL failure conditions (RFC 6120 §6.5), each an element name under the SASL namespace.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SaslError {
    /// Bad credentials, unknown user, or a tampered exchange.
    #[error("not-authorized")]
    NotAuthorized,
    /// The client message does not parse (or is too large); says why.
    #[error("malformed-request: {0}")]
    MalformedRequest(String),
    /// The client asked for a mechanism we do not offer (used by the caller).
    #[error("invalid-mechanism")]
    InvalidMechanism,
    /// The authzid is not empty and not the authcid's bare JID.
    #[error("invalid-authzid")]
    InvalidAuthzid,
    /// The element's base64 is invalid (used by the caller).
    #[error("incorrect-encoding")]
    IncorrectEncoding,
    /// A call out of turn: after success, after a failure, or before its time.
    #[error("aborted")]
    Aborted,
    /// A server-side problem (e.g. an unusable server nonce from the caller).
    #[error("temporary-auth-failure")]
    TemporaryAuthFailure,
}

impl SaslError {
    /// The condition element's name (`not-authorized`, ...).
    pub fn condition(&self) -> &'static str {
        match self {
            SaslError::NotAuthorized => "not-authorized",
            SaslError::MalformedRequest(_) => "malformed-request",
            SaslError::InvalidMechanism => "invalid-mechanism",
            SaslError::InvalidAuthzid => "invalid-authzid",
            SaslError::IncorrectEncoding => "incorrect-encoding",
            SaslError::Aborted => "aborted",
            SaslError::TemporaryAuthFailure => "temporary-auth-failure",
        }
    }
}

/// What the server must do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Look up the user `authcid` (a localpart, SASLprep'd as far as we do it) and call
    /// [`SaslServer::provide_credentials`] (None when there is no such user: the exchange then
    /// fails with not-authorized without revealing that).
    NeedCredentials {
        /// The prepared username (lowercased localpart).
        authcid: String,
    },
    /// Send `<challenge/>` with these bytes (base64 by the caller).
    Challenge(Vec<u8>),
    /// Authentication succeeded: send `<success/>` with `additional` (may be empty).
    Success {
        /// The prepared username (lowercased localpart).
        authcid: String,
        /// The normalised bare JID the client asked to act as, if any: its localpart is the
        /// authcid; the caller must check its domain.
        authzid: Option<String>,
        /// Additional data for `<success/>` (`v=ServerSignature` for SCRAM, empty for PLAIN).
        additional: Vec<u8>,
    },
}

/// Where an exchange stands.
enum State {
    /// An empty challenge was sent; the client's first message comes with `step`.
    AwaitFirst,
    /// PLAIN: the message is parsed; the user's credentials are needed.
    PlainNeedCredentials(plain::PlainPending),
    /// SCRAM: client-first is parsed; the user's credentials are needed.
    ScramNeedCredentials(scram::ClientFirst),
    /// SCRAM: server-first was sent; client-final comes with `step`.
    ScramAwaitFinal(Box<scram::AwaitFinal>),
    /// Succeeded, failed, or aborted: nothing more is accepted.
    Done,
}

impl State {
    fn name(&self) -> &'static str {
        match self {
            State::AwaitFirst => "await-first",
            State::PlainNeedCredentials(_) => "plain-need-credentials",
            State::ScramNeedCredentials(_) => "scram-need-credentials",
            State::ScramAwaitFinal(_) => "scram-await-final",
            State::Done => "done",
        }
    }
}

/// One SASL exchange.
pub struct SaslServer {
    mechanism: Mechanism,
    /// The server's part of the SCRAM nonce (empty for PLAIN).
    server_nonce: String,
    state: State,
}

impl fmt::Debug for SaslServer {
    /// Shows the mechanism and where the exchange stands, never a password or a key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SaslServer")
            .field("mechanism", &self.mechanism)
            .field("state", &self.state.name())
            .finish()
    }
}

impl SaslServer {
    /// Starts an exchange with the client's initial response (already base64-decoded; empty
    /// when the client sent none or "=" ). `server_nonce` must be at least 16 random bytes.
    ///
    /// For SCRAM, a `server_nonce` shorter than 16 or longer than 256 bytes is the caller's
    /// fault and fails with temporary-auth-failure; printable ASCII nonces (no ',') are used
    /// as they are, others are base64-encoded. PLAIN ignores `server_nonce`.
    pub fn start(
        mechanism: Mechanism,
        initial_response: &[u8],
        server_nonce: &[u8],
    ) -> Result<(SaslServer, Step), SaslError> {
        let server_nonce = match mechanism {
            Mechanism::Plain => String::new(),
            Mechanism::ScramSha256 | Mechanism::ScramSha1 => {
                scram::server_nonce_part(server_nonce)?
            }
        };
        let mut server = SaslServer {
            mechanism,
            server_nonce,
            state: State::AwaitFirst,
        };
        let step = if initial_response.is_empty() {
            Step::Challenge(Vec::new())
        } else {
            server.step(initial_response)?
        };
        Ok((server, step))
    }

    /// Supplies the credentials asked for by [`Step::NeedCredentials`].
    pub fn provide_credentials(&mut self, creds: Option<Credentials>) -> Result<Step, SaslError> {
        match std::mem::replace(&mut self.state, State::Done) {
            State::PlainNeedCredentials(pending) => plain::verify(pending, creds),
            State::ScramNeedCredentials(first) => {
                let secret = creds.and_then(|c| match self.mechanism {
                    Mechanism::ScramSha1 => c.scram_sha1,
                    _ => c.scram_sha256,
                });
                let (next, challenge) =
                    scram::server_first(first, secret.as_ref(), &self.server_nonce);
                self.state = State::ScramAwaitFinal(Box::new(next));
                Ok(Step::Challenge(challenge))
            }
            _ => Err(SaslError::Aborted),
        }
    }

    /// Handles a `<response/>` (base64-decoded).
    pub fn step(&mut self, response: &[u8]) -> Result<Step, SaslError> {
        let state = std::mem::replace(&mut self.state, State::Done);
        if matches!(state, State::Done) {
            return Err(SaslError::Aborted);
        }
        if response.len() > MAX_MESSAGE {
            return Err(SaslError::MalformedRequest(format!(
                "message longer than {MAX_MESSAGE} bytes"
            )));
        }
        match state {
            State::AwaitFirst => {
                let (next, authcid) = match self.mechanism {
                    Mechanism::Plain => {
                        let pending = plain::parse(response)?;
                        let authcid = pending.authcid.clone();
                        (State::PlainNeedCredentials(pending), authcid)
                    }
                    Mechanism::ScramSha256 => {
                        let first = scram::parse_client_first(crypto::HashAlg::Sha256, response)?;
                        let authcid = first.authcid.clone();
                        (State::ScramNeedCredentials(first), authcid)
                    }
                    Mechanism::ScramSha1 => {
                        let first = scram::parse_client_first(crypto::HashAlg::Sha1, response)?;
                        let authcid = first.authcid.clone();
                        (State::ScramNeedCredentials(first), authcid)
                    }
                };
                self.state = next;
                Ok(Step::NeedCredentials { authcid })
            }
            State::ScramAwaitFinal(await_final) => scram::client_final(*await_final, response),
            // A response while credentials are awaited (or after the end) is out of turn.
            _ => Err(SaslError::Aborted),
        }
    }
}

/// Prepares an authcid, mapping failures to malformed-request.
fn username(authcid: &str) -> Result<String, SaslError> {
    prepare_username(authcid).map_err(|e| SaslError::MalformedRequest(e.to_string()))
}

/// Checks an authzid against the (prepared) authcid: empty means none; otherwise it must be a
/// bare JID whose localpart is the authcid. Returns the normalised bare JID.
fn check_authzid(authzid: &str, authcid: &str) -> Result<Option<String>, SaslError> {
    if authzid.is_empty() {
        return Ok(None);
    }
    let jid = Jid::parse(authzid).map_err(|_| SaslError::InvalidAuthzid)?;
    if !jid.is_bare() || jid.local() != Some(authcid) {
        return Err(SaslError::InvalidAuthzid);
    }
    Ok(Some(jid.to_string()))
}

/// Derives the SCRAM-SHA-256 secret for `password` (PBKDF2-HMAC-SHA-256).
///
/// The password is first prepared with [`prepare_password`] (RFC 4013 mapping, no NFKC), as
/// PLAIN verification does. An iteration count of 0 behaves as 1.
pub fn derive_scram_sha256(password: &str, salt: &[u8], iterations: u32) -> StoredSecret {
    crypto::HashAlg::Sha256.derive(password, salt, iterations)
}

/// Derives the SCRAM-SHA-1 secret for `password` (PBKDF2-HMAC-SHA-1), with the same password
/// preparation as [`derive_scram_sha256`].
pub fn derive_scram_sha1(password: &str, salt: &[u8], iterations: u32) -> StoredSecret {
    crypto::HashAlg::Sha1.derive(password, salt, iterations)
}
