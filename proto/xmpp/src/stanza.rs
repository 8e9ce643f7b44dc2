//! Typed, borrowing views of the three stanza kinds (RFC 6120 §8, RFC 6121 §4.7, §5.2) over
//! [`Element`]. Nothing is copied: the accessors read the element's attributes and children
//! and return the stanza error a bad value deserves.

use crate::element::Element;
use crate::error::{StanzaCondition, StanzaError};
use crate::jid::Jid;
use crate::ns;

/// Which stanza an element is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StanzaKind {
    /// `<message/>`.
    Message,
    /// `<presence/>`.
    Presence,
    /// `<iq/>`.
    Iq,
}

impl StanzaKind {
    /// The kind of `e` when it is a message, presence or iq in jabber:client or jabber:server.
    pub fn of(e: &Element) -> Option<StanzaKind> {
        if e.ns() != ns::CLIENT && e.ns() != ns::SERVER {
            return None;
        }
        match e.name() {
            "message" => Some(StanzaKind::Message),
            "presence" => Some(StanzaKind::Presence),
            "iq" => Some(StanzaKind::Iq),
            _ => None,
        }
    }
}

/// `type` of a message (RFC 6121 §5.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageType {
    /// One-to-one chat.
    Chat,
    /// An error reply.
    Error,
    /// A multi-user chat message.
    Groupchat,
    /// An alert that expects no reply.
    Headline,
    /// A standalone message (also when `type` is absent).
    Normal,
}

/// `type` of a presence (RFC 6121 §4.7.1); `Available` when absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PresenceType {
    /// Available (no `type`).
    Available,
    /// No longer available.
    Unavailable,
    /// A subscription request.
    Subscribe,
    /// A subscription approval.
    Subscribed,
    /// A request to end a subscription.
    Unsubscribe,
    /// A subscription denial or cancellation.
    Unsubscribed,
    /// A server's request for current presence.
    Probe,
    /// An error reply.
    Error,
}

/// `type` of an iq (RFC 6120 §8.2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IqType {
    /// A request for information.
    Get,
    /// A request to change something.
    Set,
    /// A successful answer.
    Result,
    /// An error answer.
    Error,
}

/// A presence's `<show/>` (RFC 6121 §4.7.2.1); absent means plain online.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Show {
    /// Temporarily away.
    Away,
    /// Free to chat.
    Chat,
    /// Do not disturb.
    Dnd,
    /// Extended away.
    Xa,
}

fn bad_request(text: impl Into<String>) -> StanzaError {
    StanzaError::with_text(StanzaCondition::BadRequest, text)
}

fn jid_attr(e: &Element, name: &str) -> Result<Option<Jid>, StanzaError> {
    e.get_attr(name)
        .map(|s| {
            Jid::parse(s).map_err(|err| {
                StanzaError::with_text(StanzaCondition::JidMalformed, format!("{name}: {err}"))
            })
        })
        .transpose()
}

/// `from`, parsed (Err jid-malformed when it is not a JID).
pub fn from(e: &Element) -> Result<Option<Jid>, StanzaError> {
    jid_attr(e, "from")
}

/// `to`, parsed (Err jid-malformed when it is not a JID).
pub fn to(e: &Element) -> Result<Option<Jid>, StanzaError> {
    jid_attr(e, "to")
}

/// `id`.
pub fn id(e: &Element) -> Option<&str> {
    e.get_attr("id")
}

/// A message stanza.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a>(pub &'a Element);

impl<'a> Message<'a> {
    /// A view of `e` when it is a message.
    pub fn view(e: &'a Element) -> Option<Self> {
        (StanzaKind::of(e) == Some(StanzaKind::Message)).then_some(Message(e))
    }

    /// The message type (absent = normal; unknown = bad-request).
    pub fn kind(&self) -> Result<MessageType, StanzaError> {
        Ok(match self.0.get_attr("type") {
            None | Some("normal") => MessageType::Normal,
            Some("chat") => MessageType::Chat,
            Some("error") => MessageType::Error,
            Some("groupchat") => MessageType::Groupchat,
            Some("headline") => MessageType::Headline,
            Some(other) => return Err(bad_request(format!("unknown message type {other:?}"))),
        })
    }

    /// The first `<body/>` text, if any.
    pub fn body(&self) -> Option<String> {
        self.0.get_child("body", self.0.ns()).map(Element::text)
    }
}

/// A presence stanza.
#[derive(Debug, Clone, Copy)]
pub struct Presence<'a>(pub &'a Element);

impl<'a> Presence<'a> {
    /// A view of `e` when it is a presence.
    pub fn view(e: &'a Element) -> Option<Self> {
        (StanzaKind::of(e) == Some(StanzaKind::Presence)).then_some(Presence(e))
    }

    /// The presence type (absent = available; unknown = bad-request).
    pub fn kind(&self) -> Result<PresenceType, StanzaError> {
        Ok(match self.0.get_attr("type") {
            None => PresenceType::Available,
            Some("unavailable") => PresenceType::Unavailable,
            Some("subscribe") => PresenceType::Subscribe,
            Some("subscribed") => PresenceType::Subscribed,
            Some("unsubscribe") => PresenceType::Unsubscribe,
            Some("unsubscribed") => PresenceType::Unsubscribed,
            Some("probe") => PresenceType::Probe,
            Some("error") => PresenceType::Error,
            Some(other) => return Err(bad_request(format!("unknown presence type {other:?}"))),
        })
    }

    /// `<show/>` (None = online; an unknown value = bad-request).
    pub fn show(&self) -> Result<Option<Show>, StanzaError> {
        let Some(s) = self.0.get_child("show", self.0.ns()) else {
            return Ok(None);
        };
        Ok(Some(match s.text().trim() {
            "away" => Show::Away,
            "chat" => Show::Chat,
            "dnd" => Show::Dnd,
            "xa" => Show::Xa,
            other => return Err(bad_request(format!("unknown show {other:?}"))),
        }))
    }

    /// `<priority/>` (-128..=127; absent = 0; anything else = bad-request).
    pub fn priority(&self) -> Result<i8, StanzaError> {
        match self.0.get_child("priority", self.0.ns()) {
            None => Ok(0),
            Some(p) => p
                .text()
                .trim()
                .parse::<i8>()
                .map_err(|_| bad_request("priority must be an integer in -128..127")),
        }
    }

    /// The first `<status/>` text, if any.
    pub fn status(&self) -> Option<String> {
        self.0.get_child("status", self.0.ns()).map(Element::text)
    }
}

/// An iq stanza.
#[derive(Debug, Clone, Copy)]
pub struct Iq<'a>(pub &'a Element);

impl<'a> Iq<'a> {
    /// A view of `e` when it is an iq.
    pub fn view(e: &'a Element) -> Option<Self> {
        (StanzaKind::of(e) == Some(StanzaKind::Iq)).then_some(Iq(e))
    }

    /// The iq type (required; missing or unknown = bad-request).
    pub fn kind(&self) -> Result<IqType, StanzaError> {
        Ok(match self.0.get_attr("type") {
            Some("get") => IqType::Get,
            Some("set") => IqType::Set,
            Some("result") => IqType::Result,
            Some("error") => IqType::Error,
            Some(other) => return Err(bad_request(format!("unknown iq type {other:?}"))),
            None => return Err(bad_request("iq without type")),
        })
    }

    /// The payload of a get or set: its single child element (bad-request otherwise). For a
    /// result, the optional child; for an error, the first child that is not `<error/>`.
    pub fn payload(&self) -> Result<Option<&'a Element>, StanzaError> {
        let mut children = self.0.children();
        match self.kind()? {
            IqType::Get | IqType::Set => match (children.next(), children.next()) {
                (Some(p), None) => Ok(Some(p)),
                _ => Err(bad_request("an iq get or set must have exactly one child")),
            },
            IqType::Result => Ok(children.next()),
            IqType::Error => Ok(children.find(|c| c.name() != "error")),
        }
    }
}

/// Checks the iq rules of RFC 6120 §8.2.3: an `id`, a known `type`, exactly one child in a get
/// or set, at most one child in a result.
pub fn validate_iq(e: &Element) -> Result<(), StanzaError> {
    let iq = Iq::view(e).ok_or_else(|| bad_request("not an iq"))?;
    if iq.0.get_attr("id").is_none() {
        return Err(bad_request("iq without id"));
    }
    iq.payload()?;
    if iq.kind()? == IqType::Result && e.children().count() > 1 {
        return Err(bad_request("an iq result has at most one child"));
    }
    Ok(())
}

/// The result of iq `req`: same id, addresses swapped, optional payload.
pub fn iq_result(req: &Element, payload: Option<Element>) -> Element {
    let mut e = Element::new("iq", req.ns())
        .attr_opt("id", req.get_attr("id"))
        .attr_opt("from", req.get_attr("to"))
        .attr_opt("to", req.get_attr("from"))
        .attr("type", "result");
    if let Some(p) = payload {
        e.push(p);
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    fn el(name: &str) -> Element {
        Element::new(name, ns::CLIENT)
    }

    #[test]
    fn kinds() {
        assert_eq!(StanzaKind::of(&el("message")), Some(StanzaKind::Message));
        assert_eq!(
            StanzaKind::of(&Element::new("iq", ns::SERVER)),
            Some(StanzaKind::Iq)
        );
        assert_eq!(StanzaKind::of(&Element::new("iq", "urn:x")), None);
        assert_eq!(StanzaKind::of(&el("starttls")), None);
    }

    #[test]
    fn message_types() {
        let table: &[(Option<&str>, Result<MessageType, ()>)] = &[
            (None, Ok(MessageType::Normal)),
            (Some("normal"), Ok(MessageType::Normal)),
            (Some("chat"), Ok(MessageType::Chat)),
            (Some("groupchat"), Ok(MessageType::Groupchat)),
            (Some("headline"), Ok(MessageType::Headline)),
            (Some("error"), Ok(MessageType::Error)),
            (Some("bogus"), Err(())),
        ];
        for (ty, want) in table {
            let m = el("message").attr_opt("type", *ty);
            let got = Message::view(&m).unwrap().kind();
            match want {
                Ok(w) => assert_eq!(got, Ok(*w)),
                Err(()) => assert_eq!(got.unwrap_err().condition, StanzaCondition::BadRequest),
            }
        }
    }

    #[test]
    fn presence_fields() {
        let p = el("presence")
            .child(el("show").text_node("dnd"))
            .child(el("priority").text_node("-5"))
            .child(el("status").text_node("busy"));
        let v = Presence::view(&p).unwrap();
        assert_eq!(v.kind(), Ok(PresenceType::Available));
        assert_eq!(v.show(), Ok(Some(Show::Dnd)));
        assert_eq!(v.priority(), Ok(-5));
        assert_eq!(v.status().as_deref(), Some("busy"));

        let table: &[(&str, Option<i8>)] = &[
            ("127", Some(127)),
            ("-128", Some(-128)),
            ("128", None),
            ("x", None),
        ];
        for (text, want) in table {
            let p = el("presence").child(el("priority").text_node(*text));
            let got = Presence(&p).priority().ok();
            assert_eq!(got, *want, "{text}");
        }
        let bare = el("presence").attr("type", "unsubscribed");
        assert_eq!(Presence(&bare).priority(), Ok(0));
        assert_eq!(Presence(&bare).show(), Ok(None));
        assert_eq!(Presence(&bare).kind(), Ok(PresenceType::Unsubscribed));
        let bad = el("presence").attr("type", "away");
        assert!(Presence(&bad).kind().is_err());
    }

    #[test]
    fn addresses() {
        let m = el("message").attr("from", "a@b/c").attr("to", "@bad");
        assert_eq!(from(&m), Ok(Some(Jid::parse("a@b/c").unwrap())));
        assert_eq!(to(&m).unwrap_err().condition, StanzaCondition::JidMalformed);
        assert_eq!(id(&m), None);
    }

    #[test]
    fn iq_validation_table() {
        let q = || Element::new("query", ns::ROSTER);
        let table: Vec<(Element, bool)> = vec![
            (
                el("iq").attr("id", "1").attr("type", "get").child(q()),
                true,
            ),
            (el("iq").attr("id", "1").attr("type", "set"), false),
            (
                el("iq")
                    .attr("id", "1")
                    .attr("type", "set")
                    .child(q())
                    .child(q()),
                false,
            ),
            (el("iq").attr("type", "get").child(q()), false),
            (el("iq").attr("id", "1").child(q()), false),
            (el("iq").attr("id", "1").attr("type", "result"), true),
            (
                el("iq")
                    .attr("id", "1")
                    .attr("type", "result")
                    .child(q())
                    .child(q()),
                false,
            ),
            (
                el("iq").attr("id", "1").attr("type", "nope").child(q()),
                false,
            ),
            (el("message").attr("id", "1"), false),
        ];
        for (iq, ok) in table {
            assert_eq!(validate_iq(&iq).is_ok(), ok, "{}", iq.to_xml_string());
        }
    }

    #[test]
    fn iq_payload_and_result() {
        let req = el("iq")
            .attr("id", "r1")
            .attr("from", "a@b/c")
            .attr("to", "b")
            .attr("type", "get")
            .child(Element::new("ping", ns::PING));
        assert!(Iq(&req).payload().unwrap().unwrap().is("ping", ns::PING));
        let res = iq_result(&req, None);
        assert_eq!(res.get_attr("id"), Some("r1"));
        assert_eq!(res.get_attr("to"), Some("a@b/c"));
        assert_eq!(res.get_attr("from"), Some("b"));
        assert_eq!(res.get_attr("type"), Some("result"));
        assert_eq!(res.children().count(), 0);
        assert_eq!(Iq(&res).payload(), Ok(None));
    }
}
