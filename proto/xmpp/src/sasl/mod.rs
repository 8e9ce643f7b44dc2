//! Server side of SASL (RFC 4422) for c2s: SCRAM-SHA-256 and SCRAM-SHA-1 (RFC 5802, RFC 7677,
//! without channel binding) and PLAIN (RFC 4616). Sans-io: bytes in, steps out; the caller
//! supplies the server nonce (randomness) and looks up the user's stored secrets.
//!
//! INTERFACE STUB — the implementation is being written on branch helper/sasl.

/// A salted SCRAM secret as stored: never the password.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StoredSecret {
    pub salt: Vec<u8>,
    pub iterations: u32,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
}

/// What the server holds for one user.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Credentials {
    pub scram_sha256: Option<StoredSecret>,
    pub scram_sha1: Option<StoredSecret>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mechanism {
    ScramSha256,
    ScramSha1,
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
    #[error("not-authorized")]
    NotAuthorized,
    #[error("malformed-request: {0}")]
    MalformedRequest(String),
    #[error("invalid-mechanism")]
    InvalidMechanism,
    #[error("invalid-authzid")]
    InvalidAuthzid,
    #[error("incorrect-encoding")]
    IncorrectEncoding,
    #[error("aborted")]
    Aborted,
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
    NeedCredentials { authcid: String },
    /// Send `<challenge/>` with these bytes (base64 by the caller).
    Challenge(Vec<u8>),
    /// Authentication succeeded: send `<success/>` with `additional` (may be empty).
    Success {
        authcid: String,
        authzid: Option<String>,
        additional: Vec<u8>,
    },
}

/// One SASL exchange.
#[derive(Debug)]
pub struct SaslServer {
    _private: (),
}

impl SaslServer {
    /// Starts an exchange with the client's initial response (already base64-decoded; empty
    /// when the client sent none or "=" ). `server_nonce` must be at least 16 random bytes.
    pub fn start(
        _mechanism: Mechanism,
        _initial_response: &[u8],
        _server_nonce: &[u8],
    ) -> Result<(SaslServer, Step), SaslError> {
        unimplemented!("helper/sasl")
    }

    /// Supplies the credentials asked for by [`Step::NeedCredentials`].
    pub fn provide_credentials(&mut self, _creds: Option<Credentials>) -> Result<Step, SaslError> {
        unimplemented!("helper/sasl")
    }

    /// Handles a `<response/>` (base64-decoded).
    pub fn step(&mut self, _response: &[u8]) -> Result<Step, SaslError> {
        unimplemented!("helper/sasl")
    }
}

/// Derives the SCRAM-SHA-256 secret for `password` (PBKDF2-HMAC-SHA-256).
pub fn derive_scram_sha256(_password: &str, _salt: &[u8], _iterations: u32) -> StoredSecret {
    unimplemented!("helper/sasl")
}

/// Derives the SCRAM-SHA-1 secret for `password`.
pub fn derive_scram_sha1(_password: &str, _salt: &[u8], _iterations: u32) -> StoredSecret {
    unimplemented!("helper/sasl")
}
