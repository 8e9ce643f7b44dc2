//! Presence crossing the XMPP federation edge, through the availability model (MAP-3): a
//! generic XMPP server gets (and is read as) plain RFC 6121 presence.
//!
//! - Herald's own extension (`urn:x-herald:availability:0`) never crosses to a generic peer,
//!   and one arriving from outside is not trusted (a remote server could claim any state):
//!   it is removed, and the state it carried is written the RFC way (Busy → `away` with status
//!   "Busy", Idle → `away` with status "Idle", …) when it leaves.
//! - A `<show/>` value RFC 6121 does not define is read as Available (MAP-3 leniency) and
//!   removed, so that clients never see it.
//! - Everything else in the stanza (capabilities, avatars, idle, signed presence, several
//!   status languages) is kept as it is.

use herald_xmpp::Element;

use crate::availability::xmpp::HERALD_AVAILABILITY_NS;
use crate::availability::{from_presence, to_presence, PeerType};

/// Whether [`for_generic_peer`] changed the stanza.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Translated {
    /// Already plain RFC 6121 presence (or not an availability presence).
    Unchanged,
    /// `<show/>`/`<status/>` rewritten or Herald's extension removed.
    Rewritten,
}

const SHOW_VALUES: [&str; 4] = ["away", "chat", "dnd", "xa"];

/// Rewrites an available presence for (or from) a generic XMPP server. Presence of other types
/// and other stanzas are left alone.
pub fn for_generic_peer(p: &mut Element) -> Translated {
    if p.name() != "presence" || p.get_attr("type").is_some() {
        return Translated::Unchanged;
    }
    let ns = p.ns().to_string();
    let has_ext = p
        .get_child("availability", HERALD_AVAILABILITY_NS)
        .is_some();
    let show_ok = p
        .get_child("show", &ns)
        .is_none_or(|s| SHOW_VALUES.contains(&s.text().trim()));
    if !has_ext && show_ok {
        return Translated::Unchanged;
    }
    let Ok(a) = from_presence(p) else {
        return Translated::Unchanged;
    };
    let mut fresh = to_presence(&a, PeerType::GenericXmpp);
    herald_xmpp::s2s::swap_ns(&mut fresh, herald_xmpp::ns::CLIENT, &ns);
    p.remove_children("availability", HERALD_AVAILABILITY_NS);
    p.remove_children("show", &ns);
    if let Some(show) = fresh.get_child("show", &ns) {
        p.nodes_mut()
            .insert(0, herald_xmpp::Node::Element(show.clone()));
    }
    if p.get_child("status", &ns).is_none() {
        if let Some(status) = fresh.get_child("status", &ns) {
            p.push(status.clone());
        }
    }
    Translated::Rewritten
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_xmpp::ns;

    fn presence(children: Vec<Element>) -> Element {
        let mut p = Element::new("presence", ns::SERVER)
            .attr("from", "a@x")
            .attr("to", "b@y");
        for c in children {
            p.push(c);
        }
        p
    }
    fn show(v: &str) -> Element {
        Element::new("show", ns::SERVER).text_node(v)
    }
    fn status(v: &str) -> Element {
        Element::new("status", ns::SERVER).text_node(v)
    }
    fn ext(state: &str) -> Element {
        Element::new("availability", HERALD_AVAILABILITY_NS).attr("state", state)
    }
    fn shows(p: &Element) -> Vec<String> {
        p.children()
            .filter(|c| c.name() == "show")
            .map(Element::text)
            .collect()
    }
    fn statuses(p: &Element) -> Vec<String> {
        p.children()
            .filter(|c| c.name() == "status")
            .map(Element::text)
            .collect()
    }

    #[test]
    fn rows() {
        let caps = || Element::new("c", "http://jabber.org/protocol/caps").attr("node", "n");
        // (input children, changed, shows after, statuses after)
        type Row<'a> = (Vec<Element>, Translated, Vec<&'a str>, Vec<&'a str>);
        let rows: Vec<Row> = vec![
            (vec![], Translated::Unchanged, vec![], vec![]),
            (
                vec![show("away"), status("lunch")],
                Translated::Unchanged,
                vec!["away"],
                vec!["lunch"],
            ),
            (
                vec![show("chat")],
                Translated::Unchanged,
                vec!["chat"],
                vec![],
            ),
            (
                vec![show("sleeping")],
                Translated::Rewritten,
                vec![],
                vec![],
            ),
            (
                vec![ext("busy")],
                Translated::Rewritten,
                vec!["away"],
                vec!["Busy"],
            ),
            (
                vec![ext("busy"), status("In a meeting")],
                Translated::Rewritten,
                vec!["away"],
                vec!["In a meeting"],
            ),
            (
                vec![ext("do-not-disturb"), show("away")],
                Translated::Rewritten,
                vec!["dnd"],
                vec![],
            ),
            (
                vec![ext("idle")],
                Translated::Rewritten,
                vec!["away"],
                vec!["Idle"],
            ),
            (
                vec![caps(), ext("available")],
                Translated::Rewritten,
                vec![],
                vec![],
            ),
        ];
        for (children, changed, want_show, want_status) in rows {
            let input = presence(children.clone());
            let mut p = input.clone();
            assert_eq!(for_generic_peer(&mut p), changed, "{input:?}");
            assert_eq!(shows(&p), want_show, "{input:?}");
            assert_eq!(statuses(&p), want_status, "{input:?}");
            assert!(p
                .get_child("availability", HERALD_AVAILABILITY_NS)
                .is_none());
            assert_eq!(p.get_attr("to"), Some("b@y"));
            if children.iter().any(|c| c.name() == "c") {
                assert!(p
                    .get_child("c", "http://jabber.org/protocol/caps")
                    .is_some());
            }
        }
    }

    #[test]
    fn other_presence_types_and_stanzas_pass() {
        for t in ["unavailable", "subscribe", "probe", "error"] {
            let mut p = presence(vec![ext("busy")]).attr("type", t);
            assert_eq!(for_generic_peer(&mut p), Translated::Unchanged);
        }
        let mut m = Element::new("message", ns::SERVER).child(show("weird"));
        assert_eq!(for_generic_peer(&mut m), Translated::Unchanged);
    }
}
