//! Server side of client-to-server stream negotiation (RFC 6120 §4–§7, XEP-0368), sans-io.
//!
//! The I/O layer (the node's session actor) owns the socket and drives a [`C2s`]:
//! it passes [`Input`]s (bytes read, TLS up, the answers to our questions) to [`C2s::handle`]
//! and carries out the [`Action`]s it gets back, in order.
//!
//! ```text
//! header → features(starttls required) → <starttls/> → <proceed/> + StartTls
//!   (TlsEstablished) → header → features(mechanisms) → <auth/> … LookupUser (Credentials) …
//!   <success/> + Authenticated → header → features(bind, session, extra) → bind iq → Bind
//!   (BindResult) → iq result + Established → Stanza, Stanza, …
//! ```
//!
//! With direct TLS (XEP-0368) the machine starts as if STARTTLS had completed. While it waits
//! for [`Input::Credentials`] or [`Input::BindResult`] it reads nothing more from the client;
//! buffered input is processed once the answer arrives.
//!
//! Submodules: [`features`] builds the feature lists and SASL elements; `stanzas` holds the
//! per-state element handling.

mod features;
mod stanzas;

use std::fmt;
use std::sync::Arc;

use crate::codec::{
    encode, stream_header, Decoder, Limits, StreamEvent, StreamHeader, STREAM_CLOSE,
};
use crate::element::Element;
use crate::error::{StreamCondition, StreamError};
use crate::jid::Jid;
use crate::ns;
use crate::sasl::{Credentials, Mechanism, SaslError, SaslServer, Step};

/// Most SASL failures tolerated on one connection; the next one closes the stream.
pub const MAX_AUTH_FAILURES: u8 = 3;

/// What a c2s listener offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct C2sConfig {
    /// Served domains (lowercase); a header's `to` must name one of them.
    pub domains: Vec<String>,
    /// STARTTLS can be offered (a certificate is configured).
    pub tls_available: bool,
    /// The stream already runs inside TLS (XEP-0368 port).
    pub direct_tls: bool,
    /// Allow SASL without TLS. Never set in production; exists for tests of plain sockets.
    pub allow_plain_without_tls: bool,
    /// Mechanisms offered, in order of preference (only after TLS, except as above).
    pub mechanisms: Vec<Mechanism>,
    /// Decoder limits.
    pub limits: Limits,
    /// Features offered after authentication next to bind and session (`<sm/>`, `<ver/>`, …).
    /// Top-level elements in these features' namespaces are passed on as [`Action::Stanza`].
    pub extra_features: Vec<Element>,
}

impl Default for C2sConfig {
    fn default() -> Self {
        C2sConfig {
            domains: Vec::new(),
            tls_available: true,
            direct_tls: false,
            allow_plain_without_tls: false,
            mechanisms: vec![
                Mechanism::ScramSha256,
                Mechanism::ScramSha1,
                Mechanism::Plain,
            ],
            limits: Limits::default(),
            extra_features: Vec::new(),
        }
    }
}

impl C2sConfig {
    /// A config serving `example.com` with TLS available and all mechanisms.
    pub fn for_test() -> Self {
        C2sConfig {
            domains: vec!["example.com".to_string()],
            ..C2sConfig::default()
        }
    }
}

/// Why a bind request failed; decided by the caller (resource policy, conflicts).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BindError {
    /// The resource is in use and the policy is to refuse the new session.
    #[error("resource conflict")]
    Conflict,
    /// The requested resource is not acceptable (bad characters, too long).
    #[error("bad resource: {0}")]
    BadResource(String),
    /// The user may not open another session.
    #[error("not allowed")]
    NotAllowed,
    /// Too many sessions, or the server is short of resources.
    #[error("resource constraint")]
    ResourceConstraint,
}

/// An input to the machine.
#[derive(Debug)]
pub enum Input<'a> {
    /// Bytes read from the socket (plaintext, after TLS decryption if any).
    Bytes(&'a [u8]),
    /// The TLS handshake requested by [`Action::StartTls`] completed.
    TlsEstablished,
    /// The answer to [`Action::LookupUser`] (None: no such user).
    Credentials(Option<Credentials>),
    /// The answer to [`Action::Bind`]: the full JID bound, or why not.
    BindResult(Result<Jid, BindError>),
    /// A fresh server nonce (at least 16 random bytes) for the next SASL exchange.
    Nonce(Vec<u8>),
}

/// What the I/O layer must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Write these bytes.
    Send(Vec<u8>),
    /// After writing what was sent (`<proceed/>`), do the TLS handshake as server, then feed
    /// [`Input::TlsEstablished`].
    StartTls,
    /// Look up the user; reply with [`Input::Credentials`].
    LookupUser {
        /// The served domain of this stream.
        domain: String,
        /// The SASL authentication identity.
        localpart: String,
    },
    /// SASL succeeded for this bare JID.
    Authenticated {
        /// The authenticated bare JID.
        jid: Jid,
        /// The mechanism used.
        mechanism: Mechanism,
    },
    /// A SASL attempt failed with this condition (for metrics and rate limiting).
    AuthFailed {
        /// The SASL condition sent (`not-authorized`, `aborted`, …).
        condition: &'static str,
    },
    /// The client asks to bind a resource (None: the caller generates one). Reply with
    /// [`Input::BindResult`].
    Bind {
        /// The resource the client asked for.
        requested: Option<String>,
    },
    /// Negotiation is done; from now on client stanzas come as [`Action::Stanza`].
    Established {
        /// The bound full JID.
        full_jid: Jid,
    },
    /// A client stanza after establishment (`from`/`to` not yet stamped or checked).
    Stanza(Element),
    /// Close the connection once everything sent has been written. The stream error (if
    /// any) and our `</stream:stream>` were part of the preceding [`Action::Send`].
    Close {
        /// The stream error sent, if the close is an error.
        error: Option<StreamError>,
    },
}

/// Where the negotiation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Waiting for the client's stream header.
    AwaitHeader,
    /// Features offered STARTTLS (required); waiting for `<starttls/>`.
    AwaitStartTls,
    /// `<proceed/>` sent; waiting for [`Input::TlsEstablished`].
    TlsHandshake,
    /// Mechanisms offered; waiting for `<auth/>` (or a `<response/>` mid-exchange).
    Authenticating,
    /// Waiting for [`Input::Credentials`].
    AwaitCredentials,
    /// Authenticated, bind offered; waiting for the bind iq.
    AwaitBind,
    /// Waiting for [`Input::BindResult`].
    Binding,
    /// Negotiated; stanzas flow.
    Established,
    /// The stream is closed.
    Closed,
}

/// A SASL exchange in progress, as the machine drives it. Implemented by
/// [`SaslServer`]; tests substitute their own.
pub trait SaslExchange: fmt::Debug + Send {
    /// See [`SaslServer::provide_credentials`].
    fn provide_credentials(&mut self, creds: Option<Credentials>) -> Result<Step, SaslError>;
    /// See [`SaslServer::step`].
    fn step(&mut self, response: &[u8]) -> Result<Step, SaslError>;
}

impl SaslExchange for SaslServer {
    fn provide_credentials(&mut self, creds: Option<Credentials>) -> Result<Step, SaslError> {
        SaslServer::provide_credentials(self, creds)
    }

    fn step(&mut self, response: &[u8]) -> Result<Step, SaslError> {
        SaslServer::step(self, response)
    }
}

/// Starts a SASL exchange: (mechanism, initial response, server nonce).
pub type SaslStart =
    fn(Mechanism, &[u8], &[u8]) -> Result<(Box<dyn SaslExchange>, Step), SaslError>;

/// The real SASL implementation, [`SaslServer::start`].
pub fn sasl_server_start(
    mechanism: Mechanism,
    initial: &[u8],
    nonce: &[u8],
) -> Result<(Box<dyn SaslExchange>, Step), SaslError> {
    let (server, step) = SaslServer::start(mechanism, initial, nonce)?;
    Ok((Box::new(server), step))
}

/// One client connection's negotiation. See the module documentation.
#[derive(Debug)]
pub struct C2s {
    cfg: Arc<C2sConfig>,
    stream_id: Box<str>,
    nonce: Vec<u8>,
    sasl_start: SaslStart,
    decoder: Decoder,
    state: State,
    tls: bool,
    /// Our header was sent for the current stream (restarts clear it).
    header_sent: bool,
    /// The served domain the client asked for.
    domain: Option<String>,
    sasl: Option<(Box<dyn SaslExchange>, Mechanism)>,
    attempts: u32,
    failures: u8,
    authenticated: Option<Box<Jid>>,
    /// The bind iq waiting for [`Input::BindResult`].
    pending_bind: Option<Box<Element>>,
}

impl C2s {
    /// A machine for a new connection. `stream_id` is sent in our headers; `nonce` (at least
    /// 16 random bytes) seeds SASL server nonces.
    pub fn new(cfg: impl Into<Arc<C2sConfig>>, stream_id: String, nonce: Vec<u8>) -> Self {
        C2s::with_sasl(cfg, stream_id, nonce, sasl_server_start)
    }

    /// Like [`C2s::new`] with another SASL implementation.
    pub fn with_sasl(
        cfg: impl Into<Arc<C2sConfig>>,
        stream_id: String,
        nonce: Vec<u8>,
        sasl_start: SaslStart,
    ) -> Self {
        let cfg = cfg.into();
        C2s {
            decoder: Decoder::new(cfg.limits),
            tls: cfg.direct_tls,
            cfg,
            stream_id: stream_id.into_boxed_str(),
            nonce,
            sasl_start,
            state: State::AwaitHeader,
            header_sent: false,
            domain: None,
            sasl: None,
            attempts: 0,
            failures: 0,
            authenticated: None,
            pending_bind: None,
        }
    }

    /// The negotiation settings this machine runs with.
    pub fn config(&self) -> &Arc<C2sConfig> {
        &self.cfg
    }

    /// The bare JID the client authenticated as (SASL succeeded).
    pub fn authenticated(&self) -> Option<&Jid> {
        self.authenticated.as_deref()
    }

    /// The id sent in our stream headers.
    pub fn stream_id(&self) -> &str {
        &self.stream_id
    }

    /// Where the negotiation stands.
    pub fn state(&self) -> State {
        self.state
    }

    /// True once the stream runs over TLS.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// Bytes of the element currently being read (for metrics).
    pub fn buffered(&self) -> usize {
        self.decoder.buffered()
    }

    /// Handles one input; returns what to do.
    pub fn handle(&mut self, input: Input<'_>) -> Vec<Action> {
        let mut out = Vec::new();
        if self.state == State::Closed {
            return out;
        }
        match input {
            Input::Bytes(b) => self.decoder.feed(b),
            Input::TlsEstablished => {
                if self.state == State::TlsHandshake {
                    self.tls = true;
                    self.restart();
                }
            }
            Input::Credentials(creds) => {
                if self.state == State::AwaitCredentials {
                    self.state = State::Authenticating;
                    let step = match self.sasl.as_mut() {
                        Some((ex, _)) => ex.provide_credentials(creds),
                        None => Err(SaslError::TemporaryAuthFailure),
                    };
                    self.sasl_step(step, &mut out);
                }
            }
            Input::BindResult(result) => {
                if self.state == State::Binding {
                    self.bind_result(result, &mut out);
                }
            }
            Input::Nonce(n) => self.nonce = n,
        }
        self.drain(&mut out);
        out
    }

    /// Server-initiated close, with an optional stream error.
    pub fn close(&mut self, err: Option<StreamError>) -> Vec<Action> {
        let mut out = Vec::new();
        if self.state != State::Closed {
            self.fail_or_close(err, &mut out);
        }
        out
    }

    /// Processes buffered input while the state allows reading.
    fn drain(&mut self, out: &mut Vec<Action>) {
        while matches!(
            self.state,
            State::AwaitHeader
                | State::AwaitStartTls
                | State::Authenticating
                | State::AwaitBind
                | State::Established
        ) {
            match self.decoder.next() {
                Ok(None) => break,
                Ok(Some(StreamEvent::Whitespace)) => {}
                Ok(Some(StreamEvent::Open(h))) => self.on_header(h, out),
                Ok(Some(StreamEvent::Close)) => {
                    out.push(Action::Send(STREAM_CLOSE.to_vec()));
                    out.push(Action::Close { error: None });
                    self.state = State::Closed;
                }
                Ok(Some(StreamEvent::Stanza(e))) => self.on_element(e, out),
                Err(e) => self.fail_or_close(Some(e), out),
            }
        }
    }

    /// A stream restart (after TLS or SASL success): a fresh decoder and a new header.
    fn restart(&mut self) {
        self.decoder.reset();
        self.header_sent = false;
        self.state = State::AwaitHeader;
    }

    fn our_header(&self) -> Vec<u8> {
        stream_header(&StreamHeader {
            to: None,
            from: self
                .domain
                .clone()
                .or_else(|| self.cfg.domains.first().cloned()),
            id: Some(self.stream_id.to_string()),
            version: Some("1.0".to_string()),
            lang: Some("en".to_string()),
            default_ns: ns::CLIENT.to_string(),
        })
    }

    /// Sends (our header if not yet sent,) the error if any and `</stream:stream>`; closes.
    fn fail_or_close(&mut self, err: Option<StreamError>, out: &mut Vec<Action>) {
        let mut bytes = Vec::new();
        if !self.header_sent {
            bytes.extend(self.our_header());
            self.header_sent = true;
        }
        if let Some(e) = &err {
            bytes.extend(e.to_bytes());
        }
        bytes.extend_from_slice(STREAM_CLOSE);
        out.push(Action::Send(bytes));
        out.push(Action::Close { error: err });
        self.state = State::Closed;
    }

    fn on_header(&mut self, h: StreamHeader, out: &mut Vec<Action>) {
        if let Err(e) = self.check_header(&h) {
            return self.fail_or_close(Some(e), out);
        }
        let mut bytes = self.our_header();
        self.header_sent = true;
        let feats = if self.authenticated.is_some() {
            self.state = State::AwaitBind;
            features::after_auth(&self.cfg.extra_features)
        } else if self.tls || self.cfg.allow_plain_without_tls {
            self.state = State::Authenticating;
            let starttls = !self.tls && self.cfg.tls_available;
            features::mechanisms(&self.cfg.mechanisms, self.tls, starttls)
        } else if self.cfg.tls_available {
            self.state = State::AwaitStartTls;
            features::starttls_required()
        } else {
            out.push(Action::Send(bytes));
            let err = StreamError::with_text(
                StreamCondition::InternalServerError,
                "TLS is required but not configured",
            );
            return self.fail_or_close(Some(err), out);
        };
        bytes.extend(encode(&feats, ns::CLIENT));
        out.push(Action::Send(bytes));
    }

    fn check_header(&mut self, h: &StreamHeader) -> Result<(), StreamError> {
        if h.default_ns != ns::CLIENT {
            return Err(StreamError::with_text(
                StreamCondition::InvalidNamespace,
                "expected jabber:client",
            ));
        }
        let to = h.to.as_deref().unwrap_or("");
        let domain = match Jid::parse(to) {
            Ok(j) if j.local().is_none() && j.resource().is_none() => j.domain().to_string(),
            _ => String::new(),
        };
        let served = self.cfg.domains.contains(&domain);
        let same = self.domain.as_ref().is_none_or(|d| *d == domain);
        if !served || !same {
            return Err(StreamError::new(StreamCondition::HostUnknown));
        }
        self.domain = Some(domain);
        let major = h
            .version
            .as_deref()
            .and_then(|v| v.split_once('.'))
            .and_then(|(maj, _)| maj.parse::<u32>().ok());
        if major != Some(1) {
            return Err(StreamError::with_text(
                StreamCondition::UnsupportedVersion,
                "version 1.0 is required",
            ));
        }
        Ok(())
    }

    /// A server nonce for the next exchange: the given nonce plus the attempt number, so
    /// that retries on one connection never reuse one.
    fn next_nonce(&mut self) -> Vec<u8> {
        self.attempts += 1;
        let mut n = self.nonce.clone();
        n.extend_from_slice(self.attempts.to_string().as_bytes());
        n
    }
}

#[cfg(test)]
mod tests;
