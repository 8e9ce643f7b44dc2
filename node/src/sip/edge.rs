//! The SIP ⇄ XMPP page-mode IM mapping as pure functions, tested row by row: what an inbound
//! request gets (an XMPP message to deliver, or a SIP status), the SIP MESSAGE an XMPP message
//! leaves as (RFC 3428, RFC 7572 addressing), and which XMPP error a final SIP response becomes.

use herald_grpc::config::IncomingAclEntry;
use herald_sip::{HeaderName, Method, Request, SipUri, Uri, Via};
use herald_xmpp::error::StanzaCondition;
use herald_xmpp::{ns, Element, Jid};

use super::policy::{self, Sender};

/// Methods this edge answers (the `Allow` header).
pub const ALLOW: &str = "MESSAGE, OPTIONS, SUBSCRIBE, NOTIFY, INVITE, ACK, BYE";

/// What the edge knows about the cluster when it judges an inbound request.
pub trait Directory {
    /// A configured `sip-domain` (lowercase).
    fn is_federated(&self, domain: &str) -> bool;
    /// The incoming ACL entries.
    fn acl(&self) -> Vec<IncomingAclEntry>;
    /// A local XMPP domain.
    fn is_local_domain(&self, domain: &str) -> bool;
    /// A local user (bare JID).
    fn user_exists(&self, bare: &Jid) -> bool;
    /// Email for federation (EMAIL-2, EMAIL-4): the local user an address from outside names
    /// (`Ok(Some)`: a user's email address), `Ok(None)` to take the address as it is, `Err`
    /// when it must not reach anyone (a user's raw JID while they federate by email).
    fn local_address(&self, _addr: &Jid) -> Result<Option<Jid>, &'static str> {
        Ok(None)
    }
}

/// The answer to an inbound request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    /// Deliver this XMPP message, answer 200.
    Deliver(Element),
    /// Answer 200 with nothing to deliver (OPTIONS).
    Ok,
    /// A SUBSCRIBE from `watcher` (a user of an admitted SIP domain) to the local `user`: for
    /// the subscription table.
    Subscribe { watcher: Jid, user: Jid },
    /// A NOTIFY from an admitted SIP domain: for the subscription table.
    Notify,
    /// An INVITE opening an IM session (session mode) from `remote` to the local `user`.
    Invite { remote: Jid, user: Jid },
    /// A request inside a dialog (MESSAGE, BYE, re-INVITE) for the dialog table.
    InDialog,
    /// Answer with this status and reason; `label` is the metric reason.
    Reject {
        status: u16,
        reason: String,
        label: &'static str,
    },
}

impl Inbound {
    fn reject(status: u16, reason: impl Into<String>, label: &'static str) -> Inbound {
        Inbound::Reject {
            status,
            reason: reason.into(),
            label,
        }
    }
}

/// The domain of the sender (the From URI's host), lowercase; `None` when From is not a SIP URI.
pub fn from_domain(req: &Request) -> Option<String> {
    let from = req.headers.from().ok()?;
    Some(from.uri.sip()?.host.to_ascii_lowercase())
}

/// Judges an inbound request out of dialog (RFC 3428 page mode): admission (SUB-1, ACL-6)
/// first for every method, then per method.
pub fn inbound(req: &Request, who: &Sender<'_>, dir: &impl Directory) -> Inbound {
    if req.method == Method::Ack {
        // Never answered; the caller ignores it.
        return Inbound::Ok;
    }
    let from = match req.headers.from() {
        Ok(f) => f,
        Err(_) => return Inbound::reject(400, "Invalid From Header Field", "malformed"),
    };
    let Some(from_uri) = from.uri.sip() else {
        return Inbound::reject(416, "Unsupported URI Scheme", "malformed");
    };
    let domain = from_uri.host.to_ascii_lowercase();
    if let Err(r) = policy::admit(&domain, |d| dir.is_federated(d), &dir.acl(), who) {
        return Inbound::reject(403, r.reason(), r.label());
    }
    match req.method {
        Method::Options => Inbound::Ok,
        // Inside a session: addressed to our Contact, known by its dialog.
        Method::Message | Method::Invite | Method::Bye
            if req.headers.to().is_ok_and(|t| t.tag().is_some()) =>
        {
            Inbound::InDialog
        }
        Method::Message => message(req, from_uri, dir),
        // A refresh inside a dialog is addressed to our Contact: the table knows the dialog.
        Method::Subscribe if req.headers.to().is_ok_and(|t| t.tag().is_some()) => {
            let aor = |na: Result<herald_sip::NameAddr, _>| {
                na.ok()
                    .and_then(|n| n.uri.sip().cloned())
                    .and_then(|u| {
                        let user = u.user_name()?.to_string();
                        Jid::parse(&format!("{user}@{}", u.host.to_ascii_lowercase())).ok()
                    })
                    .map(|j| j.bare())
            };
            match (aor(req.headers.from()), aor(req.headers.to())) {
                (Some(watcher), Some(user)) => Inbound::Subscribe { watcher, user },
                _ => Inbound::reject(400, "Invalid From Or To Header Field", "malformed"),
            }
        }
        Method::Subscribe => match parties(req, from_uri, dir) {
            Ok((watcher, user)) => Inbound::Subscribe { watcher, user },
            Err(r) => r,
        },
        Method::Notify => Inbound::Notify,
        Method::Bye => Inbound::reject(481, "Call/Transaction Does Not Exist", "no_dialog"),
        Method::Invite => match parties(req, from_uri, dir) {
            Ok((remote, user)) => Inbound::Invite { remote, user },
            Err(r) => r,
        },
        _ => Inbound::reject(405, "Method Not Allowed", "method"),
    }
}

/// The sender (From AOR) and the local user the request is for (Request-URI), or the answer.
// The error is the answer itself, built once per request: boxing it buys nothing.
#[allow(clippy::result_large_err)]
fn parties(req: &Request, from_uri: &SipUri, dir: &impl Directory) -> Result<(Jid, Jid), Inbound> {
    if req.headers.to().is_err() {
        return Err(Inbound::reject(400, "Invalid To Header Field", "malformed"));
    }
    let Some(target) = req.uri.sip() else {
        return Err(Inbound::reject(416, "Unsupported URI Scheme", "malformed"));
    };
    let (Some(user), Some(from_user)) = (target.user_name(), from_uri.user_name()) else {
        return Err(Inbound::reject(404, "Not Found", "no_user"));
    };
    let host = target.host.to_ascii_lowercase();
    let Ok(from) = Jid::parse(&format!(
        "{from_user}@{}",
        from_uri.host.to_ascii_lowercase()
    )) else {
        return Err(Inbound::reject(
            400,
            "Invalid From Header Field",
            "malformed",
        ));
    };
    if let Ok(addressed) = Jid::parse(&format!("{user}@{host}")) {
        match dir.local_address(&addressed) {
            Ok(Some(local)) => return Ok((from.bare(), local.bare())),
            Ok(None) => {}
            // Not revealed: as if there were no such user.
            Err(_) => return Err(Inbound::reject(404, "Not Found", "email_drop")),
        }
    }
    if !dir.is_local_domain(&host) {
        return Err(Inbound::reject(
            404,
            "Domain Not Served Here",
            "not_local_domain",
        ));
    }
    let Ok(to) = Jid::parse(&format!("{user}@{host}")) else {
        return Err(Inbound::reject(404, "Not Found", "no_user"));
    };
    if !dir.user_exists(&to.bare()) {
        return Err(Inbound::reject(404, "Not Found", "no_user"));
    }
    Ok((from.bare(), to.bare()))
}

fn message(req: &Request, from_uri: &SipUri, dir: &impl Directory) -> Inbound {
    match parties(req, from_uri, dir) {
        Ok((from, to)) => chat(req, &from, &to),
        Err(r) => r,
    }
}

/// The XMPP chat message a SIP MESSAGE (page mode, or inside a session) from `from` to the
/// local user `to` becomes, or the status that refuses it (media type, encoding).
pub fn chat(req: &Request, from: &Jid, to: &Jid) -> Inbound {
    match req.headers.content_type() {
        Ok(Some(ct)) if ct.is("text/plain") => {}
        Ok(None) if req.body.is_empty() => {}
        Ok(_) => return Inbound::reject(415, "Unsupported Media Type", "media_type"),
        Err(_) => return Inbound::reject(400, "Invalid Content-Type Header Field", "malformed"),
    }
    let Ok(body) = std::str::from_utf8(&req.body) else {
        return Inbound::reject(400, "Body Is Not UTF-8", "malformed");
    };
    if body.chars().any(is_xml_forbidden) {
        return Inbound::reject(400, "Body Not Representable In XMPP", "malformed");
    }
    let mut msg = Element::new("message", ns::CLIENT)
        .attr("from", from.to_string())
        .attr("to", to.to_string())
        .attr("type", "chat")
        .child(Element::new("body", ns::CLIENT).text_node(body));
    if let Ok(call_id) = req.headers.call_id() {
        msg.set_attr("id", call_id);
    }
    Inbound::Deliver(msg)
}

/// Characters XML 1.0 cannot carry.
fn is_xml_forbidden(c: char) -> bool {
    matches!(c, '\u{0}'..='\u{8}' | '\u{b}' | '\u{c}' | '\u{e}'..='\u{1f}' | '\u{fffe}' | '\u{ffff}')
}

/// The protocol ids of one outbound request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ids {
    /// Via branch without the magic cookie.
    pub branch: String,
    pub call_id: String,
    pub from_tag: String,
}

/// This node's address as written in Via.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Local {
    pub host: String,
    pub port: u16,
}

/// Why an XMPP stanza cannot leave as SIP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unsendable {
    /// Presence and bodiless messages (chat states): not carried in this slice; counted.
    NotCarried(&'static str),
    /// Answered with this error.
    Bounce(StanzaCondition, &'static str),
}

/// The SIP MESSAGE an XMPP message from a local user to `to` (a user of a SIP domain) becomes,
/// sent to the next hop `hop` (host, port) as its outbound proxy (a loose Route).
pub fn outbound_message(
    stanza: &Element,
    local: &Local,
    hop: (&str, u16),
    ids: &Ids,
) -> Result<Request, Unsendable> {
    match stanza.name() {
        "message" => {}
        "presence" => return Err(Unsendable::NotCarried("presence")),
        _ => {
            return Err(Unsendable::Bounce(
                StanzaCondition::ServiceUnavailable,
                "only messages reach SIP domains",
            ))
        }
    }
    let Some(view) = herald_xmpp::stanza::Message::view(stanza) else {
        return Err(Unsendable::NotCarried("not_a_message"));
    };
    match view.kind() {
        Ok(herald_xmpp::stanza::MessageType::Error) => return Err(Unsendable::NotCarried("error")),
        Ok(herald_xmpp::stanza::MessageType::Groupchat) => {
            return Err(Unsendable::Bounce(
                StanzaCondition::FeatureNotImplemented,
                "group chat does not reach SIP domains",
            ))
        }
        Ok(_) => {}
        Err(_) => {
            return Err(Unsendable::Bounce(
                StanzaCondition::BadRequest,
                "unknown message type",
            ))
        }
    }
    let Some(body) = view.body() else {
        return Err(Unsendable::NotCarried("no_body"));
    };
    let (Some(from), Some(to)) = (
        stanza.get_attr("from").and_then(|f| Jid::parse(f).ok()),
        stanza.get_attr("to").and_then(|t| Jid::parse(t).ok()),
    ) else {
        return Err(Unsendable::Bounce(
            StanzaCondition::JidMalformed,
            "bad from or to",
        ));
    };
    let (Some(from_user), Some(to_user)) = (from.local(), to.local()) else {
        return Err(Unsendable::Bounce(
            StanzaCondition::ServiceUnavailable,
            "a SIP domain has no server entity here",
        ));
    };
    let target = SipUri::new(Some(to_user), to.domain());
    let from_uri = SipUri::new(Some(from_user), from.domain());
    let via = Via::new(
        "TCP",
        &local.host,
        Some(local.port),
        &format!("{}{}", herald_sip::MAGIC_COOKIE, ids.branch),
    );
    let mut route = SipUri::new(None, hop.0);
    route.port = Some(hop.1);
    route.params.set("transport", Some("tcp"));
    route.params.set("lr", None::<String>);
    Ok(Request::new(Method::Message, Uri::from(target.clone()))
        .header(HeaderName::Via, via.to_string())
        .header(HeaderName::MaxForwards, "70")
        .header(HeaderName::Route, format!("<{route}>"))
        .header(
            HeaderName::From,
            format!("<{from_uri}>;tag={}", ids.from_tag),
        )
        .header(HeaderName::To, format!("<{target}>"))
        .header(HeaderName::CallId, ids.call_id.clone())
        .header(HeaderName::CSeq, "1 MESSAGE")
        .with_body("text/plain;charset=UTF-8", body.into_bytes()))
}

/// The XMPP error a final non-2xx response to an outbound MESSAGE becomes (RFC 7248 §5 and the
/// status classes of RFC 3261 §21).
pub fn response_condition(status: u16) -> StanzaCondition {
    match status {
        400 | 416 | 420 => StanzaCondition::BadRequest,
        401 | 407 => StanzaCondition::NotAuthorized,
        403 | 603 => StanzaCondition::Forbidden,
        404 | 604 => StanzaCondition::ItemNotFound,
        405 | 501 => StanzaCondition::FeatureNotImplemented,
        408 | 504 => StanzaCondition::RemoteServerTimeout,
        413 | 415 | 488 | 606 => StanzaCondition::NotAcceptable,
        480 | 486 | 600 => StanzaCondition::RecipientUnavailable,
        484 | 485 => StanzaCondition::ItemNotFound,
        500 => StanzaCondition::InternalServerError,
        300..=399 => StanzaCondition::Redirect(None),
        _ => StanzaCondition::ServiceUnavailable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_grpc::config::AclPatternKind;
    use herald_sip::{Decoder, Frame, Limits, Message};

    struct Dir;
    impl Directory for Dir {
        fn is_federated(&self, d: &str) -> bool {
            d == "sip.test"
        }
        fn acl(&self) -> Vec<IncomingAclEntry> {
            vec![IncomingAclEntry {
                id: "lo".into(),
                pattern_kind: AclPatternKind::Ip as i32,
                pattern: "127.0.0.9".into(),
                ..Default::default()
            }]
        }
        fn is_local_domain(&self, d: &str) -> bool {
            d == "h.test"
        }
        fn user_exists(&self, bare: &Jid) -> bool {
            bare.to_string() == "alice@h.test"
        }
    }

    /// Email for federation on: alice federates as first.last@mail.test.
    struct MailDir;
    impl Directory for MailDir {
        fn is_federated(&self, d: &str) -> bool {
            Dir.is_federated(d)
        }
        fn acl(&self) -> Vec<IncomingAclEntry> {
            Dir.acl()
        }
        fn is_local_domain(&self, d: &str) -> bool {
            Dir.is_local_domain(d)
        }
        fn user_exists(&self, bare: &Jid) -> bool {
            Dir.user_exists(bare)
        }
        fn local_address(&self, addr: &Jid) -> Result<Option<Jid>, &'static str> {
            match addr.to_string().as_str() {
                "first.last@mail.test" => Ok(Some(Jid::parse("alice@h.test").unwrap())),
                "alice@h.test" => Err("raw JID"),
                _ => Ok(None),
            }
        }
    }

    #[test]
    fn email_for_federation_maps_the_address_and_drops_the_raw_jid() {
        let ok = who("127.0.0.9");
        let m = |to: &str| {
            inbound(
                &sip("MESSAGE", to, "bob@sip.test", Some("text/plain"), "hi"),
                &ok,
                &MailDir,
            )
        };
        match m("first.last@mail.test") {
            Inbound::Deliver(msg) => assert_eq!(msg.get_attr("to"), Some("alice@h.test")),
            other => panic!("{other:?}"),
        }
        match m("alice@h.test") {
            Inbound::Reject { status, label, .. } => {
                assert_eq!((status, label), (404, "email_drop"))
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(status(&m("nobody@mail.test")), 404);
        match inbound(
            &sip("INVITE", "first.last@mail.test", "bob@sip.test", None, ""),
            &ok,
            &MailDir,
        ) {
            Inbound::Invite { user, .. } => assert_eq!(user.to_string(), "alice@h.test"),
            other => panic!("{other:?}"),
        }
    }

    fn request(text: &str) -> Request {
        let mut d = Decoder::new(Limits::default());
        d.feed(text.as_bytes());
        match d.next() {
            Ok(Some(Frame::Message(Message::Request(r)))) => r,
            other => panic!("not a request: {other:?}"),
        }
    }

    fn sip(method: &str, to: &str, from: &str, ct: Option<&str>, body: &str) -> Request {
        let ct = ct
            .map(|c| format!("Content-Type: {c}\r\n"))
            .unwrap_or_default();
        request(&format!(
            "{method} sip:{to} SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.9:5060;branch=z9hG4bKx\r\n\
             Max-Forwards: 70\r\nFrom: <sip:{from}>;tag=1\r\nTo: <sip:{to}>\r\nCall-ID: c1\r\n\
             CSeq: 1 {method}\r\n{ct}Content-Length: {}\r\n\r\n{body}",
            body.len()
        ))
    }

    fn who(ip: &str) -> Sender<'static> {
        Sender {
            ip: ip.parse().unwrap(),
            tls_name: None,
        }
    }

    fn status(i: &Inbound) -> u16 {
        match i {
            Inbound::Deliver(_) | Inbound::Ok => 200,
            // Handed to the dialog table, which answers.
            Inbound::Subscribe { .. }
            | Inbound::Notify
            | Inbound::Invite { .. }
            | Inbound::InDialog => 1,
            Inbound::Reject { status, .. } => *status,
        }
    }

    #[test]
    fn inbound_requests_get_the_right_answer() {
        let ok = who("127.0.0.9");
        let rows = [
            (
                "MESSAGE",
                "alice@h.test",
                "bob@sip.test",
                Some("text/plain"),
                "hi",
                ok.clone(),
                200,
            ),
            (
                "MESSAGE",
                "alice@H.TEST",
                "bob@SIP.test",
                Some("text/plain;charset=UTF-8"),
                "hi",
                ok.clone(),
                200,
            ),
            (
                "MESSAGE",
                "alice@h.test",
                "bob@other.test",
                Some("text/plain"),
                "hi",
                ok.clone(),
                403,
            ),
            (
                "MESSAGE",
                "alice@h.test",
                "bob@sip.test",
                Some("text/plain"),
                "hi",
                who("127.0.0.1"),
                403,
            ),
            (
                "OPTIONS",
                "alice@h.test",
                "bob@other.test",
                None,
                "",
                ok.clone(),
                403,
            ),
            (
                "MESSAGE",
                "nobody@h.test",
                "bob@sip.test",
                Some("text/plain"),
                "hi",
                ok.clone(),
                404,
            ),
            (
                "MESSAGE",
                "alice@elsewhere.test",
                "bob@sip.test",
                Some("text/plain"),
                "hi",
                ok.clone(),
                404,
            ),
            (
                "MESSAGE",
                "h.test",
                "bob@sip.test",
                Some("text/plain"),
                "hi",
                ok.clone(),
                404,
            ),
            (
                "MESSAGE",
                "alice@h.test",
                "bob@sip.test",
                Some("text/html"),
                "<b>hi</b>",
                ok.clone(),
                415,
            ),
            (
                "MESSAGE",
                "alice@h.test",
                "bob@sip.test",
                Some("text/plain"),
                "a\u{1}b",
                ok.clone(),
                400,
            ),
            (
                "OPTIONS",
                "alice@h.test",
                "bob@sip.test",
                None,
                "",
                ok.clone(),
                200,
            ),
            (
                "SUBSCRIBE",
                "alice@h.test",
                "bob@sip.test",
                None,
                "",
                ok.clone(),
                1,
            ),
            (
                "SUBSCRIBE",
                "nobody@h.test",
                "bob@sip.test",
                None,
                "",
                ok.clone(),
                404,
            ),
            (
                "SUBSCRIBE",
                "alice@h.test",
                "bob@other.test",
                None,
                "",
                ok.clone(),
                403,
            ),
            (
                "INFO",
                "alice@h.test",
                "bob@sip.test",
                None,
                "",
                ok.clone(),
                405,
            ),
        ];
        for (m, to, from, ct, body, w, want) in rows {
            let got = inbound(&sip(m, to, from, ct, body), &w, &Dir);
            assert_eq!(status(&got), want, "{m} {to} {from} {ct:?}: {got:?}");
        }
    }

    #[test]
    fn inbound_message_becomes_a_chat_message() {
        let r = sip(
            "MESSAGE",
            "alice@h.test",
            "Bob@sip.test",
            Some("text/plain"),
            "héllo <&>",
        );
        let Inbound::Deliver(m) = inbound(&r, &who("127.0.0.9"), &Dir) else {
            panic!("not delivered");
        };
        assert_eq!(m.get_attr("from"), Some("bob@sip.test"));
        assert_eq!(m.get_attr("to"), Some("alice@h.test"));
        assert_eq!(m.get_attr("type"), Some("chat"));
        assert_eq!(m.get_attr("id"), Some("c1"));
        let body = herald_xmpp::stanza::Message::view(&m).unwrap().body();
        assert_eq!(body.as_deref(), Some("héllo <&>"));
    }

    fn chat(from: &str, to: &str, kind: Option<&str>, body: Option<&str>) -> Element {
        let mut e = Element::new("message", ns::CLIENT)
            .attr("from", from)
            .attr("to", to)
            .attr_opt("type", kind);
        if let Some(b) = body {
            e = e.child(Element::new("body", ns::CLIENT).text_node(b));
        }
        e
    }

    fn ids() -> Ids {
        Ids {
            branch: "b1".into(),
            call_id: "call1@h".into(),
            from_tag: "t1".into(),
        }
    }

    #[test]
    fn outbound_message_is_a_well_formed_sip_message() {
        let local = Local {
            host: "127.0.0.5".into(),
            port: 5060,
        };
        let req = outbound_message(
            &chat(
                "alice@h.test/phone",
                "bob@sip.test",
                Some("chat"),
                Some("hi ✓"),
            ),
            &local,
            ("127.0.0.9", 5070),
            &ids(),
        )
        .unwrap();
        let wire = Message::from(req.clone()).encode();
        // What we write, our own decoder (which validates mandatory headers) reads back.
        let back = request(std::str::from_utf8(&wire).unwrap());
        assert_eq!(back, req);
        assert_eq!(back.uri.to_string(), "sip:bob@sip.test");
        assert_eq!(back.headers.from().unwrap().tag(), Some("t1"));
        assert_eq!(
            back.headers.from().unwrap().uri.to_string(),
            "sip:alice@h.test"
        );
        assert_eq!(back.headers.top_via().unwrap().branch(), Some("z9hG4bKb1"));
        assert_eq!(back.headers.call_id().unwrap(), "call1@h");
        assert_eq!(
            back.headers.get(&HeaderName::Route),
            Some("<sip:127.0.0.9:5070;transport=tcp;lr>")
        );
        assert_eq!(back.body, "hi ✓".as_bytes());
    }

    #[test]
    fn stanzas_that_do_not_leave_as_sip() {
        let local = Local {
            host: "h".into(),
            port: 1,
        };
        let hop = ("n", 2);
        let pres = Element::new("presence", ns::CLIENT)
            .attr("from", "alice@h.test")
            .attr("to", "bob@sip.test");
        let iq = Element::new("iq", ns::CLIENT)
            .attr("from", "alice@h.test")
            .attr("to", "bob@sip.test");
        let rows = [
            (pres, Unsendable::NotCarried("presence")),
            (
                iq,
                Unsendable::Bounce(
                    StanzaCondition::ServiceUnavailable,
                    "only messages reach SIP domains",
                ),
            ),
            (
                chat("alice@h.test", "bob@sip.test", Some("chat"), None),
                Unsendable::NotCarried("no_body"),
            ),
            (
                chat("alice@h.test", "bob@sip.test", Some("error"), Some("x")),
                Unsendable::NotCarried("error"),
            ),
            (
                chat("alice@h.test", "sip.test", None, Some("x")),
                Unsendable::Bounce(
                    StanzaCondition::ServiceUnavailable,
                    "a SIP domain has no server entity here",
                ),
            ),
        ];
        for (e, want) in rows {
            assert_eq!(
                outbound_message(&e, &local, hop, &ids()),
                Err(want),
                "{e:?}"
            );
        }
    }

    #[test]
    fn final_responses_map_to_stanza_errors() {
        let rows = [
            (403, "forbidden"),
            (404, "item-not-found"),
            (480, "recipient-unavailable"),
            (486, "recipient-unavailable"),
            (408, "remote-server-timeout"),
            (415, "not-acceptable"),
            (500, "internal-server-error"),
            (503, "service-unavailable"),
            (302, "redirect"),
            (699, "service-unavailable"),
        ];
        for (s, want) in rows {
            assert_eq!(response_condition(s).name(), want, "{s}");
        }
    }
}
