//! Inbound federation streams: one task per accepted connection. It negotiates (STARTTLS, SASL
//! EXTERNAL, dialback — verifying the peer's key with its authoritative server, or by its
//! certificate), answers `db:verify` requests about keys we issued, and passes stanzas from
//! the domains the stream authenticated, under the inbound policy, to the dispatcher.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use herald_federation::edge::policy::Direction;
use herald_grpc::config::XmppSecurityMode;
use herald_xmpp::error::{StreamCondition, StreamError};
use herald_xmpp::s2s::{self as wire, Dialback, Offer};
use herald_xmpp::{ns, Element, Jid, StreamEvent};
use tokio::net::TcpStream;

use super::metrics as m;
use super::stream::{Conn, ReadError};
use super::S2s;

/// Time allowed from accepting a connection until its stream is authenticated (in total: a
/// peer that only sends whitespace keepalives does not extend it).
const NEGOTIATION: Duration = Duration::from_secs(60);

struct Inbound {
    s2s: Arc<S2s>,
    conn: Conn,
    peer: SocketAddr,
    /// Our stream id (dialback keys are bound to it).
    id: String,
    /// The local domain the peer addressed.
    local: Option<String>,
    /// The domain the peer's header claims.
    claimed: Option<String>,
    /// Domains this stream authenticated.
    authenticated: HashSet<String>,
    header_sent: bool,
    /// The connection came in on the direct-TLS port (XEP-0368).
    direct_tls: bool,
    /// When negotiation must be over (accepted + NEGOTIATION).
    negotiation_deadline: Instant,
}

/// Serves one accepted connection until it closes.
pub async fn serve(s2s: Arc<S2s>, tcp: TcpStream, peer: SocketAddr, direct_tls: bool) {
    let negotiation_deadline = Instant::now() + NEGOTIATION;
    let mut conn = Conn::new(tcp, s2s.limits);
    if direct_tls {
        // XEP-0368: TLS from the first byte, ALPN `xmpp-server`; the certificate by SNI.
        let cfg = super::tls::server_config(s2s.certs.clone(), String::new(), true);
        let done = match cfg {
            Ok(cfg) => tokio::time::timeout(NEGOTIATION, conn.tls_server(cfg))
                .await
                .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into())),
            Err(e) => Err(std::io::Error::other(e.to_string())),
        };
        if let Err(e) = done {
            m::failure("inbound", "tls");
            tracing::info!(peer = %peer, error = %e, "inbound federation direct-TLS handshake failed");
            return;
        }
    }
    let mut gauge = m::ConnGauge::new("inbound");
    let mut st = Inbound {
        s2s,
        conn,
        peer,
        id: String::new(),
        local: None,
        claimed: None,
        authenticated: HashSet::new(),
        header_sent: false,
        direct_tls,
        negotiation_deadline,
    };
    let err = st.run(&mut gauge).await;
    if let Some(e) = err {
        tracing::info!(peer = %st.peer, domain = st.claimed.as_deref().unwrap_or("?"), condition = e.condition.name(), text = e.text.as_deref().unwrap_or(""), "inbound federation stream refused");
        m::failure("inbound", reason_of(&e));
        if !st.header_sent {
            let from = st.local.clone().unwrap_or_default();
            let _ = st
                .conn
                .write(&wire::stream_header(&from, None, Some(&new_id())))
                .await;
        }
        st.conn.fail(&e).await;
    }
}

fn reason_of(e: &StreamError) -> &'static str {
    match e.condition {
        StreamCondition::NotAuthorized | StreamCondition::InvalidFrom => "auth",
        StreamCondition::PolicyViolation => "policy",
        StreamCondition::ConnectionTimeout => "timeout",
        _ => "stream",
    }
}

fn new_id() -> String {
    let mut b = [0u8; 12];
    rand::fill(&mut b);
    hex::encode(b)
}

fn err(c: StreamCondition, text: impl Into<String>) -> StreamError {
    StreamError::with_text(c, text)
}

impl Inbound {
    /// Runs the stream; returns the stream error to send, if it ends with one.
    async fn run(&mut self, gauge: &mut m::ConnGauge) -> Option<StreamError> {
        let mut enabled = self.s2s.enabled();
        loop {
            if !*enabled.borrow_and_update() {
                return Some(err(
                    StreamCondition::SystemShutdown,
                    "XMPP federation was disabled on this node",
                ));
            }
            let timeout = if self.authenticated.is_empty() {
                let left = self
                    .negotiation_deadline
                    .saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Some(err(
                        StreamCondition::ConnectionTimeout,
                        "not authenticated within the negotiation time",
                    ));
                }
                left
            } else {
                super::outbound::IDLE
            };
            let next = tokio::select! {
                ev = self.conn.next(timeout) => ev,
                r = enabled.changed() => {
                    if r.is_err() {
                        return None;
                    }
                    continue;
                }
            };
            let ev = match next {
                Ok(ev) => ev,
                Err(ReadError::Stream(e)) => return Some(e),
                Err(ReadError::Timeout) => {
                    return Some(err(StreamCondition::ConnectionTimeout, "no traffic"))
                }
                Err(ReadError::Io(_)) => return None,
            };
            let result = match ev {
                StreamEvent::Open(h) => self.open(h).await,
                StreamEvent::Whitespace => Ok(()),
                StreamEvent::Close => {
                    self.conn.close().await;
                    return None;
                }
                StreamEvent::Stanza(el) => self.element(el, gauge).await,
            };
            if let Err(e) = result {
                return Some(e);
            }
        }
    }

    async fn send(&mut self, el: &Element) -> Result<(), StreamError> {
        self.conn
            .write(&herald_xmpp::codec::encode(el, ns::SERVER))
            .await
            .map_err(|_| err(StreamCondition::UndefinedCondition, "write failed"))
    }

    async fn open(&mut self, h: herald_xmpp::StreamHeader) -> Result<(), StreamError> {
        self.local = h.to.clone();
        wire::check_header(&h).map_err(|e| err(StreamCondition::InvalidNamespace, e))?;
        let Some(to) = h.to.clone().filter(|t| self.s2s.serves_domain(t)) else {
            return Err(err(
                StreamCondition::HostUnknown,
                format!("'{}' is not served here", h.to.as_deref().unwrap_or("")),
            ));
        };
        let settings = self.s2s.settings();
        if !self.s2s.enabled_here(&settings) {
            return Err(err(
                StreamCondition::PolicyViolation,
                "XMPP federation is not enabled on this node",
            ));
        }
        if let Some(f) = &h.from {
            if self.claimed.as_deref().is_some_and(|c| c != f) {
                return Err(err(
                    StreamCondition::InvalidFrom,
                    "the stream's 'from' changed",
                ));
            }
            self.claimed = Some(f.clone());
        }
        self.id = new_id();
        self.conn
            .write(&wire::stream_header(&to, h.from.as_deref(), Some(&self.id)))
            .await
            .map_err(|_| err(StreamCondition::UndefinedCondition, "write failed"))?;
        self.header_sent = true;
        if h.version.as_deref() != Some("1.0") {
            return Ok(()); // pre-1.0 peers get no features (dialback only)
        }
        let mode = settings.mode();
        let tls = self.conn.io.is_tls();
        let offer = if !self.authenticated.is_empty() {
            Offer::default() // after SASL: nothing more to negotiate
        } else if !tls && mode == XmppSecurityMode::TlsRequired {
            Offer {
                starttls: true,
                starttls_required: true,
                ..Offer::default()
            }
        } else {
            let cert_ok = tls && self.cert_valid_for_claimed();
            Offer {
                starttls: !tls && mode != XmppSecurityMode::NoTls,
                starttls_required: false,
                external: tls && cert_ok && settings.federation.sasl_external_inbound,
                dialback: true,
            }
        };
        self.send(&wire::features(offer)).await
    }

    fn cert_valid_for(&self, domain: &str) -> Result<(), String> {
        if !self.conn.io.is_tls() {
            return Err("no TLS".into());
        }
        self.s2s
            .trust
            .verify(self.conn.io.peer_certs().as_deref(), domain)
    }

    fn cert_valid_for_claimed(&self) -> bool {
        self.claimed
            .as_deref()
            .is_some_and(|d| self.cert_valid_for(d).is_ok())
    }

    async fn element(&mut self, el: Element, gauge: &mut m::ConnGauge) -> Result<(), StreamError> {
        if !self.header_sent {
            return Err(err(StreamCondition::NotAuthorized, "no stream header"));
        }
        if el.is("starttls", ns::TLS) {
            let mode = self.s2s.settings().mode();
            if self.conn.io.is_tls() || mode == XmppSecurityMode::NoTls {
                return Err(err(
                    StreamCondition::PolicyViolation,
                    "STARTTLS is not offered",
                ));
            }
            self.send(&Element::new("proceed", ns::TLS)).await?;
            // SNI names the certificate; peers that send none get the one of the domain
            // their stream header addressed.
            let cfg = match super::tls::server_config(
                self.s2s.certs.clone(),
                self.local.clone().unwrap_or_default(),
                false,
            ) {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(error = %e, "federation TLS configuration failed");
                    return Err(err(StreamCondition::InternalServerError, "TLS unavailable"));
                }
            };
            let left = self
                .negotiation_deadline
                .saturating_duration_since(Instant::now());
            if let Err(e) = tokio::time::timeout(left, self.conn.tls_server(cfg))
                .await
                .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
            {
                m::failure("inbound", "tls");
                tracing::info!(peer = %self.peer, domain = self.claimed.as_deref().unwrap_or("?"), error = %e, "inbound federation TLS handshake failed");
                return Err(err(
                    StreamCondition::UndefinedCondition,
                    "TLS handshake failed",
                ));
            }
            self.header_sent = false;
            return Ok(());
        }
        if el.is("auth", ns::SASL) {
            return self.sasl(el).await;
        }
        if let Some(db) = Dialback::parse(&el) {
            return self.dialback(db, gauge).await;
        }
        if el.ns() == ns::SERVER && matches!(el.name(), "message" | "presence" | "iq") {
            return self.stanza(el);
        }
        if self.authenticated.is_empty() {
            return Err(err(
                StreamCondition::NotAuthorized,
                "stanza before authentication",
            ));
        }
        Err(err(
            StreamCondition::UnsupportedStanzaType,
            format!("'{}' is not a stanza", el.name()),
        ))
    }

    async fn sasl(&mut self, el: Element) -> Result<(), StreamError> {
        let settings = self.s2s.settings();
        let failure = |c: &str| Element::new("failure", ns::SASL).child(Element::new(c, ns::SASL));
        if el.get_attr("mechanism") != Some("EXTERNAL")
            || !self.conn.io.is_tls()
            || !settings.federation.sasl_external_inbound
        {
            return self.send(&failure("invalid-mechanism")).await;
        }
        let Ok(authzid) = wire::sasl_external_authzid(&el) else {
            return self.send(&failure("incorrect-encoding")).await;
        };
        let Some(domain) = authzid.or_else(|| self.claimed.clone()) else {
            return self.send(&failure("invalid-authzid")).await;
        };
        let ok = match self.cert_valid_for(&domain) {
            Ok(()) => true,
            Err(why) => {
                tracing::info!(peer = %self.peer, domain = %domain, reason = %why, "SASL EXTERNAL refused: certificate not valid for the domain");
                false
            }
        };
        metrics::counter!(m::AUTH, "direction" => "inbound", "method" => "sasl_external", "result" => if ok { "ok" } else { "failed" }).increment(1);
        if !ok {
            self.send(&failure("not-authorized")).await?;
            return Err(err(
                StreamCondition::NotAuthorized,
                "certificate not valid for the claimed domain",
            ));
        }
        let d = settings.decide(&domain, Direction::Inbound);
        if !d.allowed {
            tracing::info!(domain = %domain, rule = %d.rule, "inbound federation denied by policy");
            self.send(&failure("not-authorized")).await?;
            return Err(err(
                StreamCondition::PolicyViolation,
                format!("federation with {domain} is not allowed"),
            ));
        }
        self.send(&Element::new("success", ns::SASL)).await?;
        tracing::info!(peer = %self.peer, domain = %domain, direct_tls = self.direct_tls, "inbound federation stream authenticated (SASL EXTERNAL)");
        self.authenticated.insert(domain.to_ascii_lowercase());
        self.conn.restart();
        self.header_sent = false;
        Ok(())
    }

    async fn dialback(
        &mut self,
        db: Dialback,
        gauge: &mut m::ConnGauge,
    ) -> Result<(), StreamError> {
        let settings = self.s2s.settings();
        if db.kind.is_some() {
            return Ok(()); // answers are for outbound streams; ignore strays
        }
        if db.verify {
            // A server asks whether a key it got is ours (we are the originating domain).
            let id = db.id.clone().unwrap_or_default();
            let valid = self.s2s.serves_domain(&db.to)
                && wire::keys_equal(
                    &db.key,
                    &wire::dialback_key(&settings.secret, &db.from, &db.to, &id),
                );
            tracing::debug!(receiving = %db.from, originating = %db.to, valid, "db:verify answered");
            return self.send(&db.answer(valid)).await;
        }
        // db:result: the peer asks to be accepted as `from` for our `to`.
        if !self.conn.io.is_tls() && settings.mode() == XmppSecurityMode::TlsRequired {
            return Err(err(
                StreamCondition::NotAuthorized,
                "TLS is required before dialback",
            ));
        }
        if !self.s2s.serves_domain(&db.to) {
            return self.send(&db.error("item-not-found")).await;
        }
        let Ok(from) = Jid::parse(&db.from) else {
            return Err(err(
                StreamCondition::ImproperAddressing,
                "invalid dialback 'from'",
            ));
        };
        let from = from.domain().to_string();
        let d = settings.decide(&from, Direction::Inbound);
        if !d.allowed {
            tracing::info!(domain = %from, rule = %d.rule, "inbound federation denied by policy");
            m::failure("inbound", "policy");
            return self.send(&db.error("policy-violation")).await;
        }
        let cert = self.cert_valid_for(&from);
        let certs_required = settings.federation.require_client_certificates
            && settings.mode() == XmppSecurityMode::TlsRequired;
        let (valid, method) = if let (Err(why), true) = (&cert, certs_required) {
            tracing::info!(peer = %self.peer, domain = %from, reason = %why, "dialback refused: a valid client certificate is required");
            (false, "dialback")
        } else if cert.is_ok() {
            (true, "dialback_cert")
        } else {
            match super::outbound::verify_key(&self.s2s, &db.to, &from, &self.id, &db.key).await {
                Ok(v) => (v, "dialback"),
                Err(f) => {
                    tracing::info!(peer = %self.peer, domain = %from, reason = f.reason, detail = %f.detail, "dialback verification failed");
                    m::failure("inbound", "dialback");
                    return self.send(&db.error("remote-server-not-found")).await;
                }
            }
        };
        metrics::counter!(m::AUTH, "direction" => "inbound", "method" => method, "result" => if valid { "ok" } else { "failed" }).increment(1);
        self.send(&db.answer(valid)).await?;
        if valid {
            tracing::info!(peer = %self.peer, domain = %from, method, direct_tls = self.direct_tls, "inbound federation stream authenticated");
            self.authenticated.insert(from.to_ascii_lowercase());
            gauge.established();
            Ok(())
        } else {
            Err(err(
                StreamCondition::NotAuthorized,
                format!("dialback key for {from} not valid"),
            ))
        }
    }

    fn stanza(&mut self, el: Element) -> Result<(), StreamError> {
        if self.authenticated.is_empty() {
            return Err(err(
                StreamCondition::NotAuthorized,
                "stanza before authentication",
            ));
        }
        let from = el.get_attr("from").and_then(|f| Jid::parse(f).ok());
        let to = el.get_attr("to").and_then(|t| Jid::parse(t).ok());
        let (Some(from), Some(to)) = (from, to) else {
            return Err(err(
                StreamCondition::ImproperAddressing,
                "stanza without valid 'from' and 'to'",
            ));
        };
        if !self
            .authenticated
            .contains(&from.domain().to_ascii_lowercase())
        {
            return Err(err(
                StreamCondition::InvalidFrom,
                format!("'{}' was not authenticated on this stream", from.domain()),
            ));
        }
        if !self.s2s.serves_domain(to.domain()) {
            return Err(err(
                StreamCondition::HostUnknown,
                format!("'{}' is not served here", to.domain()),
            ));
        }
        let d = self
            .s2s
            .settings()
            .decide(from.domain(), Direction::Inbound);
        if !d.allowed {
            tracing::info!(domain = from.domain(), rule = %d.rule, "inbound federated stanza denied by policy");
            // The policy changed since this stream authenticated: end it (a new stream is
            // refused at authentication).
            return Err(err(
                StreamCondition::PolicyViolation,
                format!(
                    "federation with {} is not allowed ({})",
                    from.domain(),
                    d.rule
                ),
            ));
        }
        self.s2s.deliver(el);
        Ok(())
    }
}
