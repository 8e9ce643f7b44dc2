//! IQs a client addresses to the server domain itself: service discovery, ping, version.

use herald_xmpp::error::{StanzaCondition, StanzaError};
use herald_xmpp::{ns, Element, Jid};

use super::Shared;

/// Features the server advertises (XEP-0030).
pub const FEATURES: &[&str] = &[
    ns::DISCO_INFO,
    ns::DISCO_ITEMS,
    ns::PING,
    ns::VERSION,
    ns::BLOCKING,
    ns::ROSTER,
    ns::OFFLINE,
];

/// The reply to an IQ for the server (None for results and errors, which need no reply).
pub fn handle(iq: &Element, to: &Jid, _shared: &Shared) -> Option<Element> {
    handle_iq(iq, to)
}

fn handle_iq(iq: &Element, to: &Jid) -> Option<Element> {
    let ty = iq.get_attr("type").unwrap_or("");
    if ty == "result" || ty == "error" {
        return None;
    }
    // RFC 6120 §8.2.3: an IQ needs an id, a known type, and get/set exactly one payload.
    let well_formed =
        iq.get_attr("id").is_some() && (ty == "get" || ty == "set") && iq.children().count() == 1;
    if !well_formed {
        return StanzaError::new(StanzaCondition::BadRequest).reply_to(iq, Some(to));
    }
    let payload = iq.children().next();
    let result = |child: Option<Element>| {
        let mut r = Element::new("iq", ns::CLIENT)
            .attr("type", "result")
            .attr("from", to.to_string())
            .attr_opt("to", iq.get_attr("from"))
            .attr_opt("id", iq.get_attr("id"));
        if let Some(c) = child {
            r.push(c);
        }
        r
    };
    match payload.map(|p| (p.name(), p.ns(), ty)) {
        Some(("ping", ns::PING, "get")) => Some(result(None)),
        Some(("query", ns::DISCO_INFO, "get")) => {
            let mut q = Element::new("query", ns::DISCO_INFO).child(
                Element::new("identity", ns::DISCO_INFO)
                    .attr("category", "server")
                    .attr("type", "im")
                    .attr("name", "Herald"),
            );
            for f in FEATURES {
                q.push(Element::new("feature", ns::DISCO_INFO).attr("var", *f));
            }
            Some(result(Some(q)))
        }
        Some(("query", ns::DISCO_ITEMS, "get")) => {
            Some(result(Some(Element::new("query", ns::DISCO_ITEMS))))
        }
        Some(("query", ns::VERSION, "get")) => Some(result(Some(
            Element::new("query", ns::VERSION)
                .child(Element::new("name", ns::VERSION).text_node("Herald"))
                .child(Element::new("version", ns::VERSION).text_node(env!("CARGO_PKG_VERSION"))),
        ))),
        _ => StanzaError::new(StanzaCondition::ServiceUnavailable).reply_to(iq, Some(to)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(xml: &str) -> Option<Element> {
        let iq = crate::xmpp::parse_stanza(xml).expect("test stanza");
        let to = Jid::parse("example.test").unwrap();
        handle_iq(&iq, &to)
    }

    fn condition(reply: &Element) -> Option<String> {
        let err = reply.get_child("error", ns::CLIENT)?;
        err.children().next().map(|c| c.name().to_string())
    }

    #[test]
    fn malformed_iqs_to_the_server_are_bad_requests() {
        let ping = "<ping xmlns='urn:xmpp:ping'/>";
        for (what, xml) in [
            ("no id", format!("<iq type='get'>{ping}</iq>")),
            (
                "two payloads",
                format!("<iq type='get' id='a'>{ping}{ping}</iq>"),
            ),
            ("no payload", "<iq type='get' id='a'/>".to_string()),
            (
                "unknown type",
                format!("<iq type='fetch' id='a'>{ping}</iq>"),
            ),
        ] {
            let r = answer(&xml).unwrap_or_else(|| panic!("{what}: no answer"));
            assert_eq!(r.get_attr("type"), Some("error"), "{what}");
            assert_eq!(condition(&r).as_deref(), Some("bad-request"), "{what}");
        }
        let ok = answer(&format!("<iq type='get' id='p'>{ping}</iq>")).unwrap();
        assert_eq!(ok.get_attr("type"), Some("result"));
        assert_eq!(ok.get_attr("id"), Some("p"));
        assert!(answer("<iq type='result' id='r'/>").is_none());
        let unknown = answer("<iq type='get' id='u'><x xmlns='urn:example:nope'/></iq>").unwrap();
        assert_eq!(condition(&unknown).as_deref(), Some("service-unavailable"));
    }
}
