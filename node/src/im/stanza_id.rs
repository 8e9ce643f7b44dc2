//! XEP-0359 stanza IDs, given to each message for a local user where it enters the cluster (a
//! client's session, the XMPP or SIP federation edge).
//!
//! Routing between nodes is at-least-once: when a node-to-node stream breaks between the peer
//! handling an item and acknowledging it, the item is handed on again (possibly to a new home of
//! its user). The recipient's [`UserCore`](super::UserCore) therefore remembers the ids of the
//! messages it handled lately and of the messages it keeps offline, and handles a message it
//! has seen once only. The id also reaches the recipient's client, which may use it as XEP-0359
//! intends (`by` is the recipient's bare JID: the account the id is unique for).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use herald_xmpp::{ns, Element, Jid};

/// How many recently handled ids a user remembers (beyond those of its offline messages).
pub const REMEMBERED: usize = 256;

static NEXT: AtomicU64 = AtomicU64::new(0);

/// A new id, unique across the cluster and across restarts: a random 64-bit prefix drawn once
/// per process, then a counter.
pub fn fresh() -> String {
    static PREFIX: OnceLock<u64> = OnceLock::new();
    let prefix = *PREFIX.get_or_init(rand::random::<u64>);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{prefix:016x}-{n:x}")
}

/// Prepares a stanza that enters the cluster from outside it: removes any stanza-id that claims
/// to be given by one of our own entities (XEP-0359 §5: an id an outsider chose must not pass
/// for ours), then gives a message for a user of a local domain a fresh id, `by` that user.
/// Errors and messages to the server itself get none.
pub fn stamp(el: &mut Element, is_local_domain: impl Fn(&str) -> bool) {
    if el.name() != "message" {
        return;
    }
    let ours = |c: &Element| {
        c.is("stanza-id", ns::SID)
            && c.get_attr("by")
                .and_then(|b| Jid::parse(b).ok())
                .is_some_and(|b| is_local_domain(b.domain()))
    };
    if el.children().any(ours) {
        el.nodes_mut().retain(|n| match n {
            herald_xmpp::Node::Element(c) => !ours(c),
            _ => true,
        });
    }
    if el.get_attr("type") == Some("error") {
        return;
    }
    let Some(to) = el.get_attr("to").and_then(|t| Jid::parse(t).ok()) else {
        return;
    };
    if to.local().is_none() || !is_local_domain(to.domain()) {
        return;
    }
    el.push(
        Element::new("stanza-id", ns::SID)
            .attr("id", fresh())
            .attr("by", to.bare().to_string()),
    );
}

/// The id a local entity gave `el` for the account `by` (a bare JID), if any.
pub fn of<'a>(el: &'a Element, by: &Jid) -> Option<&'a str> {
    let by = by.to_string();
    el.children()
        .filter(|c| c.is("stanza-id", ns::SID))
        .find(|c| c.get_attr("by") == Some(by.as_str()))
        .and_then(|c| c.get_attr("id"))
}

/// Marks a message that a session could not take (it stopped first, or its client never
/// acknowledged it) as it goes back to the account `by`: the home has handled its id already,
/// and would take the hand-back for a repeat of the original hand-on and drop it. The id
/// becomes `<id>.rN` (N counts hand-backs), derived from the original rather than drawn fresh,
/// so that two copies of the same hand-back (the same message queued for two sessions that
/// both stop, or one hand-back routed twice between nodes) still count once. A message
/// without an id of ours is left as it is.
pub fn handed_back(el: &mut Element, by: &Jid) {
    let by = by.to_string();
    let Some(c) = el.nodes_mut().iter_mut().find_map(|n| match n {
        herald_xmpp::Node::Element(c)
            if c.is("stanza-id", ns::SID) && c.get_attr("by") == Some(by.as_str()) =>
        {
            Some(c)
        }
        _ => None,
    }) else {
        return;
    };
    let Some(id) = c.get_attr("id") else {
        return;
    };
    let next = match id.rsplit_once(".r") {
        Some((base, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
            format!(
                "{base}.r{}",
                n.parse::<u64>().unwrap_or(0).saturating_add(1)
            )
        }
        _ => format!("{id}.r1"),
    };
    c.set_attr("id", next);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(d: &str) -> bool {
        d == "example.com"
    }

    fn msg(to: &str) -> Element {
        Element::new("message", ns::CLIENT)
            .attr("from", "sam@example.com/phone")
            .attr("to", to)
            .child(Element::new("body", ns::CLIENT).text_node("hi"))
    }

    #[test]
    fn a_message_for_a_local_user_gets_one_fresh_id_by_that_user() {
        let mut m = msg("ann@example.com/laptop");
        stamp(&mut m, local);
        let ann = Jid::parse("ann@example.com").unwrap();
        let id = of(&m, &ann).expect("stamped").to_string();
        let mut n = msg("ann@example.com");
        stamp(&mut n, local);
        assert_ne!(Some(id.as_str()), of(&n, &ann), "ids are unique");
        assert_eq!(
            m.children().filter(|c| c.is("stanza-id", ns::SID)).count(),
            1
        );
    }

    #[test]
    fn a_forged_id_of_ours_is_removed_and_others_are_kept() {
        let mut m = msg("ann@example.com")
            .child(
                Element::new("stanza-id", ns::SID)
                    .attr("id", "forged")
                    .attr("by", "ann@example.com"),
            )
            .child(
                Element::new("stanza-id", ns::SID)
                    .attr("id", "theirs")
                    .attr("by", "room@muc.elsewhere.org"),
            );
        stamp(&mut m, local);
        let ann = Jid::parse("ann@example.com").unwrap();
        assert_ne!(of(&m, &ann), Some("forged"));
        let ids: Vec<_> = m
            .children()
            .filter(|c| c.is("stanza-id", ns::SID))
            .filter_map(|c| c.get_attr("id"))
            .collect();
        assert_eq!(ids.len(), 2, "{ids:?}");
        assert!(ids.contains(&"theirs"));
    }

    #[test]
    fn remote_recipients_errors_and_other_stanzas_get_none() {
        for (mut el, why) in [
            (msg("bob@elsewhere.org"), "remote user"),
            (msg("example.com"), "the server"),
            (msg("ann@example.com").attr("type", "error"), "an error"),
            (
                Element::new("presence", ns::CLIENT).attr("to", "ann@example.com"),
                "presence",
            ),
        ] {
            stamp(&mut el, local);
            assert!(
                el.children().all(|c| !c.is("stanza-id", ns::SID)),
                "{why}: {}",
                el.to_xml_string()
            );
        }
    }

    #[test]
    fn a_handed_back_message_gets_an_id_derived_from_its_own() {
        let ann = Jid::parse("ann@example.com").unwrap();
        let mut m = msg("ann@example.com").child(
            Element::new("stanza-id", ns::SID)
                .attr("id", "abc-1")
                .attr("by", "ann@example.com"),
        );
        let mut twin = m.clone();
        handed_back(&mut m, &ann);
        assert_eq!(of(&m, &ann), Some("abc-1.r1"));
        handed_back(&mut twin, &ann);
        assert_eq!(
            of(&twin, &ann),
            of(&m, &ann),
            "two copies of one hand-back count once"
        );
        handed_back(&mut m, &ann);
        assert_eq!(of(&m, &ann), Some("abc-1.r2"));
        // Another account's id, or none: nothing to mark.
        let bob = Jid::parse("bob@example.com").unwrap();
        let before = m.to_xml_string();
        handed_back(&mut m, &bob);
        assert_eq!(m.to_xml_string(), before);
        let mut bare = msg("ann@example.com");
        handed_back(&mut bare, &ann);
        assert_eq!(of(&bare, &ann), None);
    }
}
