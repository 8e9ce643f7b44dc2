//! Stanza errors (RFC 6120 §8.3) as replies to a stanza, and XEP-0191's `<blocked/>`.

use herald_xmpp::{ns, Element};

use super::stanza_type;

/// The error types of RFC 6120 §8.3.2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorType {
    /// Do not retry.
    Cancel,
    /// Retry after changing the data sent.
    Modify,
    /// Retry after waiting.
    Wait,
    /// Retry after providing credentials.
    Auth,
}

impl ErrorType {
    /// The value of the `type` attribute.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorType::Cancel => "cancel",
            ErrorType::Modify => "modify",
            ErrorType::Wait => "wait",
            ErrorType::Auth => "auth",
        }
    }
}

/// The defined conditions (RFC 6120 §8.3.3) this module uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    /// `<bad-request/>`, type modify.
    BadRequest,
    /// `<feature-not-implemented/>`, type cancel.
    FeatureNotImplemented,
    /// `<item-not-found/>`, type cancel.
    ItemNotFound,
    /// `<jid-malformed/>`, type modify.
    JidMalformed,
    /// `<not-acceptable/>`, type modify.
    NotAcceptable,
    /// `<not-allowed/>`, type cancel.
    NotAllowed,
    /// `<resource-constraint/>`, type wait.
    ResourceConstraint,
    /// `<service-unavailable/>`, type cancel.
    ServiceUnavailable,
}

impl Condition {
    /// The element name.
    pub fn name(self) -> &'static str {
        match self {
            Condition::BadRequest => "bad-request",
            Condition::FeatureNotImplemented => "feature-not-implemented",
            Condition::ItemNotFound => "item-not-found",
            Condition::JidMalformed => "jid-malformed",
            Condition::NotAcceptable => "not-acceptable",
            Condition::NotAllowed => "not-allowed",
            Condition::ResourceConstraint => "resource-constraint",
            Condition::ServiceUnavailable => "service-unavailable",
        }
    }

    /// The error type RFC 6120 §8.3.3 gives in its examples for this condition.
    pub fn default_type(self) -> ErrorType {
        match self {
            Condition::BadRequest | Condition::JidMalformed | Condition::NotAcceptable => {
                ErrorType::Modify
            }
            Condition::ResourceConstraint => ErrorType::Wait,
            Condition::FeatureNotImplemented
            | Condition::ItemNotFound
            | Condition::NotAllowed
            | Condition::ServiceUnavailable => ErrorType::Cancel,
        }
    }
}

/// A stanza error to send back: a condition and an optional application-specific child.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("stanza error <{}/>", .condition.name())]
pub struct StanzaError {
    /// The defined condition.
    pub condition: Condition,
    /// An application-specific condition element (e.g. XEP-0191 `<blocked/>`).
    pub app: Option<Element>,
}

impl StanzaError {
    /// An error with only a defined condition.
    pub fn new(condition: Condition) -> Self {
        StanzaError {
            condition,
            app: None,
        }
    }

    /// XEP-0191 §3.6: `<not-acceptable/>` with `<blocked xmlns='urn:xmpp:blocking:errors'/>`.
    pub fn blocked() -> Self {
        StanzaError {
            condition: Condition::NotAcceptable,
            app: Some(Element::new("blocked", ns::BLOCKING_ERRORS)),
        }
    }

    /// The `<error/>` element.
    pub fn to_element(&self) -> Element {
        let mut e = Element::new("error", ns::CLIENT)
            .attr("type", self.condition.default_type().as_str())
            .child(Element::new(self.condition.name(), ns::STANZAS_ERR));
        if let Some(app) = &self.app {
            e.push(app.clone());
        }
        e
    }
}

impl From<Condition> for StanzaError {
    fn from(c: Condition) -> Self {
        StanzaError::new(c)
    }
}

/// The error reply to `stanza` (RFC 6120 §8.3.1): same name and id, `from`/`to` swapped,
/// type "error", the original payload followed by `<error/>`. `None` when `stanza` is itself
/// an error (never answer an error with an error).
pub fn error_reply(stanza: &Element, err: &StanzaError) -> Option<Element> {
    if stanza_type(stanza) == "error" {
        return None;
    }
    let mut reply = Element::new(stanza.name(), ns::CLIENT)
        .attr_opt("id", stanza.get_attr("id"))
        .attr_opt("from", stanza.get_attr("to"))
        .attr_opt("to", stanza.get_attr("from"))
        .attr("type", "error");
    // An IQ result carries no payload; for IQ get/set and the others, echo the payload.
    for child in stanza.children() {
        reply.push(child.clone());
    }
    reply.push(err.to_element());
    Some(reply)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_swaps_addresses_and_keeps_id() {
        let iq = Element::new("iq", ns::CLIENT)
            .attr("id", "q1")
            .attr("from", "a@x/r")
            .attr("to", "b@y")
            .attr("type", "get")
            .child(Element::new("query", "urn:x"));
        let r = error_reply(&iq, &Condition::ServiceUnavailable.into()).unwrap();
        assert_eq!(
            r.to_xml_string(),
            "<iq xmlns='jabber:client' id='q1' from='b@y' to='a@x/r' type='error'>\
             <query xmlns='urn:x'/><error type='cancel'>\
             <service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"
        );
    }

    #[test]
    fn no_error_for_error_and_blocked_shape() {
        let m = Element::new("message", ns::CLIENT).attr("type", "error");
        assert!(error_reply(&m, &StanzaError::blocked()).is_none());
        let e = StanzaError::blocked().to_element();
        assert_eq!(e.get_attr("type"), Some("modify"));
        assert!(e.get_child("not-acceptable", ns::STANZAS_ERR).is_some());
        assert!(e.get_child("blocked", ns::BLOCKING_ERRORS).is_some());
        let table = [
            (Condition::BadRequest, "modify"),
            (Condition::ItemNotFound, "cancel"),
            (Condition::ResourceConstraint, "wait"),
            (Condition::NotAllowed, "cancel"),
            (Condition::JidMalformed, "modify"),
            (Condition::FeatureNotImplemented, "cancel"),
        ];
        for (c, t) in table {
            assert_eq!(StanzaError::new(c).to_element().get_attr("type"), Some(t));
        }
    }
}
