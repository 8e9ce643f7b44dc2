//! Stream errors (RFC 6120 §4.9) and stanza errors (RFC 6120 §8.3), with their wire form.
//!
//! A [`StreamError`] is fatal to the stream: it is sent as `<stream:error>` followed by
//! `</stream:stream>`. A [`StanzaError`] answers one stanza; [`StanzaError::reply_to`] builds the
//! whole error reply.

use std::fmt;

use crate::element::Element;
use crate::jid::Jid;
use crate::ns;

/// A defined stream error condition (RFC 6120 §4.9.3).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum StreamCondition {
    /// XML that cannot be processed (§4.9.3.1).
    BadFormat,
    /// An unsupported or missing namespace prefix (§4.9.3.2).
    BadNamespacePrefix,
    /// A new stream for this entity replaces this one (§4.9.3.3).
    Conflict,
    /// No traffic for too long (§4.9.3.4).
    ConnectionTimeout,
    /// The `to` domain is no longer served (§4.9.3.5).
    HostGone,
    /// The `to` domain is not served here (§4.9.3.6).
    HostUnknown,
    /// A stanza lacks a required `to` or `from` (§4.9.3.7).
    ImproperAddressing,
    /// Misconfiguration or an internal failure (§4.9.3.8).
    InternalServerError,
    /// `from` does not match an authorized JID (§4.9.3.9).
    InvalidFrom,
    /// Wrong streams or content namespace (§4.9.3.10).
    InvalidNamespace,
    /// XML that fails validation (§4.9.3.11).
    InvalidXml,
    /// Data sent before the stream was negotiated (§4.9.3.12).
    NotAuthorized,
    /// XML that is not well-formed (§4.9.3.13).
    NotWellFormed,
    /// A local policy was violated, e.g. a size limit (§4.9.3.14).
    PolicyViolation,
    /// A needed remote connection failed (§4.9.3.15).
    RemoteConnectionFailed,
    /// The stream must be re-established, e.g. credentials changed (§4.9.3.16).
    Reset,
    /// The server lacks resources to serve the stream (§4.9.3.17).
    ResourceConstraint,
    /// Comments, processing instructions, DTDs or entity references (§4.9.3.18).
    RestrictedXml,
    /// Carries the host (and optional port) the client should reconnect to (§4.9.3.19).
    SeeOtherHost(String),
    /// The server is shutting down (§4.9.3.20).
    SystemShutdown,
    /// None of the others; used with an application condition (§4.9.3.21).
    UndefinedCondition,
    /// Not UTF-8, or invalid UTF-8 (§4.9.3.22).
    UnsupportedEncoding,
    /// A mandatory feature the peer does not support (§4.9.3.23).
    UnsupportedFeature,
    /// A top-level element the server does not support (§4.9.3.24).
    UnsupportedStanzaType,
    /// A `version` the server does not support (§4.9.3.25).
    UnsupportedVersion,
}

impl StreamCondition {
    /// The condition element's name, e.g. `not-well-formed`.
    pub fn name(&self) -> &'static str {
        use StreamCondition::*;
        match self {
            BadFormat => "bad-format",
            BadNamespacePrefix => "bad-namespace-prefix",
            Conflict => "conflict",
            ConnectionTimeout => "connection-timeout",
            HostGone => "host-gone",
            HostUnknown => "host-unknown",
            ImproperAddressing => "improper-addressing",
            InternalServerError => "internal-server-error",
            InvalidFrom => "invalid-from",
            InvalidNamespace => "invalid-namespace",
            InvalidXml => "invalid-xml",
            NotAuthorized => "not-authorized",
            NotWellFormed => "not-well-formed",
            PolicyViolation => "policy-violation",
            RemoteConnectionFailed => "remote-connection-failed",
            Reset => "reset",
            ResourceConstraint => "resource-constraint",
            RestrictedXml => "restricted-xml",
            SeeOtherHost(_) => "see-other-host",
            SystemShutdown => "system-shutdown",
            UndefinedCondition => "undefined-condition",
            UnsupportedEncoding => "unsupported-encoding",
            UnsupportedFeature => "unsupported-feature",
            UnsupportedStanzaType => "unsupported-stanza-type",
            UnsupportedVersion => "unsupported-version",
        }
    }

    /// Parses a condition element (name plus, for see-other-host, its text).
    pub fn from_element(e: &Element) -> Option<StreamCondition> {
        use StreamCondition::*;
        if e.ns() != ns::STREAMS_ERR {
            return None;
        }
        Some(match e.name() {
            "bad-format" => BadFormat,
            "bad-namespace-prefix" => BadNamespacePrefix,
            "conflict" => Conflict,
            "connection-timeout" => ConnectionTimeout,
            "host-gone" => HostGone,
            "host-unknown" => HostUnknown,
            "improper-addressing" => ImproperAddressing,
            "internal-server-error" => InternalServerError,
            "invalid-from" => InvalidFrom,
            "invalid-namespace" => InvalidNamespace,
            "invalid-xml" => InvalidXml,
            "not-authorized" => NotAuthorized,
            "not-well-formed" => NotWellFormed,
            "policy-violation" => PolicyViolation,
            "remote-connection-failed" => RemoteConnectionFailed,
            "reset" => Reset,
            "resource-constraint" => ResourceConstraint,
            "restricted-xml" => RestrictedXml,
            "see-other-host" => SeeOtherHost(e.text()),
            "system-shutdown" => SystemShutdown,
            "undefined-condition" => UndefinedCondition,
            "unsupported-encoding" => UnsupportedEncoding,
            "unsupported-feature" => UnsupportedFeature,
            "unsupported-stanza-type" => UnsupportedStanzaType,
            "unsupported-version" => UnsupportedVersion,
            _ => return None,
        })
    }
}

impl fmt::Display for StreamCondition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A stream-level error: the stream is closed after sending it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("stream error {condition}{}", text.as_deref().map(|t| format!(": {t}")).unwrap_or_default())]
pub struct StreamError {
    /// The RFC condition to send.
    pub condition: StreamCondition,
    /// Human-readable detail (sent in `<text xml:lang='en'>`).
    pub text: Option<String>,
}

impl StreamError {
    /// An error without text.
    pub fn new(condition: StreamCondition) -> Self {
        StreamError {
            condition,
            text: None,
        }
    }

    /// An error with descriptive text.
    pub fn with_text(condition: StreamCondition, text: impl Into<String>) -> Self {
        StreamError {
            condition,
            text: Some(text.into()),
        }
    }

    /// The `<stream:error>` element (name "error" in the streams namespace).
    pub fn to_element(&self) -> Element {
        let mut cond = Element::new(self.condition.name(), ns::STREAMS_ERR);
        if let StreamCondition::SeeOtherHost(host) = &self.condition {
            cond = cond.text_node(host.clone());
        }
        let mut e = Element::new("error", ns::STREAM).child(cond);
        if let Some(t) = &self.text {
            e.push(
                Element::new("text", ns::STREAMS_ERR)
                    .attr("xml:lang", "en")
                    .text_node(t.clone()),
            );
        }
        e
    }

    /// The bytes to write: `<stream:error>…</stream:error>` using the `stream:` prefix the
    /// stream header declared.
    pub fn to_bytes(&self) -> Vec<u8> {
        crate::codec::encode(&self.to_element(), ns::CLIENT)
    }
}

/// The type of a stanza error (RFC 6120 §8.3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorType {
    /// Retry after providing credentials.
    Auth,
    /// Do not retry: the error cannot be remedied.
    Cancel,
    /// Proceed: the condition was only a warning.
    Continue,
    /// Retry after changing the data sent.
    Modify,
    /// Retry after waiting: the error is temporary.
    Wait,
}

impl ErrorType {
    /// The `type` attribute value.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorType::Auth => "auth",
            ErrorType::Cancel => "cancel",
            ErrorType::Continue => "continue",
            ErrorType::Modify => "modify",
            ErrorType::Wait => "wait",
        }
    }

    /// Parses a `type` attribute value.
    pub fn parse(s: &str) -> Option<ErrorType> {
        Some(match s {
            "auth" => ErrorType::Auth,
            "cancel" => ErrorType::Cancel,
            "continue" => ErrorType::Continue,
            "modify" => ErrorType::Modify,
            "wait" => ErrorType::Wait,
            _ => return None,
        })
    }
}

/// A defined stanza error condition (RFC 6120 §8.3.3).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum StanzaCondition {
    /// Malformed or unprocessable stanza (§8.3.3.1).
    BadRequest,
    /// A resource or session with this name exists (§8.3.3.2).
    Conflict,
    /// The feature is not supported (§8.3.3.3).
    FeatureNotImplemented,
    /// Not allowed for this requester (§8.3.3.4).
    Forbidden,
    /// The recipient is gone; optionally the new address as an XMPP URI (§8.3.3.5).
    Gone(Option<String>),
    /// Misconfiguration or an internal failure (§8.3.3.6).
    InternalServerError,
    /// The addressed item or JID does not exist (§8.3.3.7).
    ItemNotFound,
    /// An address is not a valid JID (§8.3.3.8).
    JidMalformed,
    /// The request violates a local policy on content (§8.3.3.9).
    NotAcceptable,
    /// Nobody may perform this action (§8.3.3.10).
    NotAllowed,
    /// Authentication is needed first (§8.3.3.11).
    NotAuthorized,
    /// A local service policy was violated (§8.3.3.12).
    PolicyViolation,
    /// The recipient is temporarily unavailable (§8.3.3.13).
    RecipientUnavailable,
    /// Redirect to another entity, optionally as an XMPP URI (§8.3.3.14).
    Redirect(Option<String>),
    /// Registration is needed first (§8.3.3.15).
    RegistrationRequired,
    /// The remote domain does not exist or cannot be reached (§8.3.3.16).
    RemoteServerNotFound,
    /// The remote domain did not answer in time (§8.3.3.17).
    RemoteServerTimeout,
    /// The server lacks resources to handle the stanza (§8.3.3.18).
    ResourceConstraint,
    /// The service or recipient does not handle this (§8.3.3.19).
    ServiceUnavailable,
    /// A presence subscription is needed first (§8.3.3.20).
    SubscriptionRequired,
    /// None of the others; used with an application condition (§8.3.3.21).
    UndefinedCondition,
    /// Understood but not expected now (§8.3.3.22).
    UnexpectedRequest,
}

impl StanzaCondition {
    /// The condition element's name, e.g. `item-not-found`.
    pub fn name(&self) -> &'static str {
        use StanzaCondition::*;
        match self {
            BadRequest => "bad-request",
            Conflict => "conflict",
            FeatureNotImplemented => "feature-not-implemented",
            Forbidden => "forbidden",
            Gone(_) => "gone",
            InternalServerError => "internal-server-error",
            ItemNotFound => "item-not-found",
            JidMalformed => "jid-malformed",
            NotAcceptable => "not-acceptable",
            NotAllowed => "not-allowed",
            NotAuthorized => "not-authorized",
            PolicyViolation => "policy-violation",
            RecipientUnavailable => "recipient-unavailable",
            Redirect(_) => "redirect",
            RegistrationRequired => "registration-required",
            RemoteServerNotFound => "remote-server-not-found",
            RemoteServerTimeout => "remote-server-timeout",
            ResourceConstraint => "resource-constraint",
            ServiceUnavailable => "service-unavailable",
            SubscriptionRequired => "subscription-required",
            UndefinedCondition => "undefined-condition",
            UnexpectedRequest => "unexpected-request",
        }
    }

    /// The error type RFC 6120 §8.3.3 gives for this condition.
    pub fn default_type(&self) -> ErrorType {
        use StanzaCondition::*;
        match self {
            BadRequest | JidMalformed | NotAcceptable | PolicyViolation | Redirect(_) => {
                ErrorType::Modify
            }
            Forbidden | NotAuthorized | RegistrationRequired | SubscriptionRequired => {
                ErrorType::Auth
            }
            RecipientUnavailable | RemoteServerTimeout | ResourceConstraint | UnexpectedRequest => {
                ErrorType::Wait
            }
            Conflict
            | FeatureNotImplemented
            | Gone(_)
            | InternalServerError
            | ItemNotFound
            | NotAllowed
            | RemoteServerNotFound
            | ServiceUnavailable
            | UndefinedCondition => ErrorType::Cancel,
        }
    }

    /// Parses a condition element in the stanzas namespace.
    pub fn from_element(e: &Element) -> Option<StanzaCondition> {
        use StanzaCondition::*;
        if e.ns() != ns::STANZAS_ERR {
            return None;
        }
        let uri = || {
            let t = e.text();
            (!t.is_empty()).then_some(t)
        };
        Some(match e.name() {
            "bad-request" => BadRequest,
            "conflict" => Conflict,
            "feature-not-implemented" => FeatureNotImplemented,
            "forbidden" => Forbidden,
            "gone" => Gone(uri()),
            "internal-server-error" => InternalServerError,
            "item-not-found" => ItemNotFound,
            "jid-malformed" => JidMalformed,
            "not-acceptable" => NotAcceptable,
            "not-allowed" => NotAllowed,
            "not-authorized" => NotAuthorized,
            "policy-violation" => PolicyViolation,
            "recipient-unavailable" => RecipientUnavailable,
            "redirect" => Redirect(uri()),
            "registration-required" => RegistrationRequired,
            "remote-server-not-found" => RemoteServerNotFound,
            "remote-server-timeout" => RemoteServerTimeout,
            "resource-constraint" => ResourceConstraint,
            "service-unavailable" => ServiceUnavailable,
            "subscription-required" => SubscriptionRequired,
            "undefined-condition" => UndefinedCondition,
            "unexpected-request" => UnexpectedRequest,
            _ => return None,
        })
    }
}

impl fmt::Display for StanzaCondition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A stanza error (RFC 6120 §8.3): answers one stanza, the stream stays up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("stanza error {condition} ({})", kind.as_str())]
pub struct StanzaError {
    /// The error type (`type` attribute).
    pub kind: ErrorType,
    /// The defined condition.
    pub condition: StanzaCondition,
    /// Descriptive text (sent in `<text xml:lang='en'>`).
    pub text: Option<String>,
    /// An application-specific condition element (boxed: keeps `Result<_, StanzaError>`
    /// small).
    pub app: Option<Box<Element>>,
}

impl StanzaError {
    /// An error with the condition's default type and no text.
    pub fn new(condition: StanzaCondition) -> Self {
        StanzaError {
            kind: condition.default_type(),
            condition,
            text: None,
            app: None,
        }
    }

    /// An error with the condition's default type and descriptive text.
    pub fn with_text(condition: StanzaCondition, text: impl Into<String>) -> Self {
        StanzaError {
            text: Some(text.into()),
            ..StanzaError::new(condition)
        }
    }

    /// The `<error/>` element in `stanza_ns` (jabber:client or jabber:server).
    pub fn to_element(&self, stanza_ns: &str, by: Option<&Jid>) -> Element {
        let mut cond = Element::new(self.condition.name(), ns::STANZAS_ERR);
        if let StanzaCondition::Gone(Some(u)) | StanzaCondition::Redirect(Some(u)) = &self.condition
        {
            cond = cond.text_node(u.clone());
        }
        let mut e = Element::new("error", stanza_ns)
            .attr("type", self.kind.as_str())
            .attr_opt("by", by.map(|j| j.to_string()))
            .child(cond);
        if let Some(t) = &self.text {
            e.push(
                Element::new("text", ns::STANZAS_ERR)
                    .attr("xml:lang", "en")
                    .text_node(t.clone()),
            );
        }
        if let Some(app) = &self.app {
            e.push(Element::clone(app));
        }
        e
    }

    /// Parses the `<error/>` child of an error stanza.
    pub fn from_element(e: &Element) -> Option<StanzaError> {
        let kind = ErrorType::parse(e.get_attr("type")?)?;
        let mut condition = None;
        let mut text = None;
        let mut app = None;
        for c in e.children() {
            if c.is("text", ns::STANZAS_ERR) {
                text = Some(c.text());
            } else if let Some(cond) = StanzaCondition::from_element(c) {
                condition.get_or_insert(cond);
            } else if c.ns() != ns::STANZAS_ERR {
                app.get_or_insert_with(|| Box::new(c.clone()));
            }
        }
        Some(StanzaError {
            kind,
            condition: condition?,
            text,
            app,
        })
    }

    /// The error reply to `original` (RFC 6120 §8.3.1): same element name and id, `from` and
    /// `to` swapped, `type='error'`, the original children kept, and the `<error/>` appended.
    /// `by` names the entity that generated the error, when it is not the addressee. Returns
    /// None when `original` is itself an error: an error is never answered with an error.
    pub fn reply_to(&self, original: &Element, by: Option<&Jid>) -> Option<Element> {
        if original.get_attr("type") == Some("error") {
            return None;
        }
        let mut reply = Element::new(original.name(), original.ns())
            .attr_opt("id", original.get_attr("id"))
            .attr_opt("from", original.get_attr("to"))
            .attr_opt("to", original.get_attr("from"))
            .attr("type", "error");
        if let Some(lang) = original.get_attr("xml:lang") {
            reply.set_attr("xml:lang", lang);
        }
        reply.nodes_mut().extend(original.nodes().iter().cloned());
        reply.push(self.to_element(original.ns(), by));
        Some(reply)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_error_element_and_bytes() {
        let e = StreamError::with_text(StreamCondition::PolicyViolation, "too big");
        let el = e.to_element();
        assert!(el.is("error", ns::STREAM));
        assert!(el.get_child("policy-violation", ns::STREAMS_ERR).is_some());
        assert_eq!(
            el.get_child("text", ns::STREAMS_ERR).map(|t| t.text()),
            Some("too big".to_string())
        );
        assert_eq!(
            String::from_utf8(e.to_bytes()).unwrap(),
            "<stream:error><policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>\
             <text xmlns='urn:ietf:params:xml:ns:xmpp-streams' xml:lang='en'>too big</text>\
             </stream:error>"
        );
        assert_eq!(e.to_string(), "stream error policy-violation: too big");
    }

    #[test]
    fn stream_condition_names_round_trip() {
        use StreamCondition::*;
        let all = [
            BadFormat,
            BadNamespacePrefix,
            Conflict,
            ConnectionTimeout,
            HostGone,
            HostUnknown,
            ImproperAddressing,
            InternalServerError,
            InvalidFrom,
            InvalidNamespace,
            InvalidXml,
            NotAuthorized,
            NotWellFormed,
            PolicyViolation,
            RemoteConnectionFailed,
            Reset,
            ResourceConstraint,
            RestrictedXml,
            SeeOtherHost("other.example:5222".into()),
            SystemShutdown,
            UndefinedCondition,
            UnsupportedEncoding,
            UnsupportedFeature,
            UnsupportedStanzaType,
            UnsupportedVersion,
        ];
        assert_eq!(all.len(), 25);
        for c in all {
            let el = StreamError::new(c.clone()).to_element();
            let child = el.children().next().unwrap();
            assert_eq!(StreamCondition::from_element(child), Some(c));
        }
    }

    #[test]
    fn stanza_condition_default_types_follow_the_rfc_table() {
        use ErrorType::*;
        use StanzaCondition as C;
        let table = [
            (C::BadRequest, Modify),
            (C::Conflict, Cancel),
            (C::FeatureNotImplemented, Cancel),
            (C::Forbidden, Auth),
            (C::Gone(None), Cancel),
            (C::InternalServerError, Cancel),
            (C::ItemNotFound, Cancel),
            (C::JidMalformed, Modify),
            (C::NotAcceptable, Modify),
            (C::NotAllowed, Cancel),
            (C::NotAuthorized, Auth),
            (C::PolicyViolation, Modify),
            (C::RecipientUnavailable, Wait),
            (C::Redirect(None), Modify),
            (C::RegistrationRequired, Auth),
            (C::RemoteServerNotFound, Cancel),
            (C::RemoteServerTimeout, Wait),
            (C::ResourceConstraint, Wait),
            (C::ServiceUnavailable, Cancel),
            (C::SubscriptionRequired, Auth),
            (C::UndefinedCondition, Cancel),
            (C::UnexpectedRequest, Wait),
        ];
        for (cond, kind) in table {
            assert_eq!(cond.default_type(), kind, "{cond}");
            let err = StanzaError::new(cond.clone());
            let el = err.to_element(ns::CLIENT, None);
            assert_eq!(el.get_attr("type"), Some(kind.as_str()));
            assert_eq!(StanzaError::from_element(&el), Some(err));
        }
    }

    #[test]
    fn reply_swaps_addresses_and_keeps_payload() {
        let orig = Element::new("iq", ns::CLIENT)
            .attr("id", "q1")
            .attr("from", "juliet@example.com/balcony")
            .attr("to", "romeo@example.net")
            .attr("type", "get")
            .child(Element::new("query", ns::ROSTER));
        let by = Jid::parse("example.net").unwrap();
        let mut err = StanzaError::with_text(StanzaCondition::ServiceUnavailable, "no");
        err.app = Some(Box::new(Element::new("blocked", ns::BLOCKING_ERRORS)));
        let reply = err.reply_to(&orig, Some(&by)).unwrap();
        assert_eq!(reply.get_attr("id"), Some("q1"));
        assert_eq!(reply.get_attr("from"), Some("romeo@example.net"));
        assert_eq!(reply.get_attr("to"), Some("juliet@example.com/balcony"));
        assert_eq!(reply.get_attr("type"), Some("error"));
        assert!(reply.get_child("query", ns::ROSTER).is_some());
        let e = reply.get_child("error", ns::CLIENT).unwrap();
        assert_eq!(e.get_attr("type"), Some("cancel"));
        assert_eq!(e.get_attr("by"), Some("example.net"));
        assert!(e
            .get_child("service-unavailable", ns::STANZAS_ERR)
            .is_some());
        assert_eq!(StanzaError::from_element(e), Some(err));
    }

    #[test]
    fn size_pins() {
        assert!(std::mem::size_of::<StanzaError>() <= 80);
        assert!(std::mem::size_of::<Result<(), StanzaError>>() <= 80);
    }

    #[test]
    fn never_answers_an_error_with_an_error() {
        let orig = Element::new("message", ns::CLIENT).attr("type", "error");
        assert_eq!(
            StanzaError::new(StanzaCondition::BadRequest).reply_to(&orig, None),
            None
        );
    }

    #[test]
    fn redirect_and_gone_carry_their_uri() {
        let err = StanzaError::new(StanzaCondition::Gone(Some("xmpp:x@y".into())));
        let el = err.to_element(ns::SERVER, None);
        assert_eq!(
            el.get_child("gone", ns::STANZAS_ERR).map(|g| g.text()),
            Some("xmpp:x@y".to_string())
        );
        assert_eq!(StanzaError::from_element(&el), Some(err));
    }
}
