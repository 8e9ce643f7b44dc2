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
    let ty = iq.get_attr("type").unwrap_or("");
    if ty != "get" && ty != "set" {
        return None;
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
