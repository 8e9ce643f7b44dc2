//! One stanza for many recipients: a presence broadcast (RFC 6121 §4.2.2, §4.4.2, §4.5.2)
//! goes to every watcher with only `to` differing. It is built once, shared by reference
//! between the router, the watchers' user actors and their sessions, and encoded once: a
//! session writes the encoding with its own ` to='…'` spliced in after the element name
//! (attribute order has no meaning in XML), instead of cloning and serializing the stanza
//! per watcher.

use std::sync::{Arc, OnceLock};

use herald_xmpp::element::escape_into;
use herald_xmpp::{ns, Element, Jid};

/// A stanza without `to`, from a known sender, shared by its deliveries.
#[derive(Debug)]
pub struct SharedStanza {
    stanza: Element,
    from: Jid,
    /// The stanza as written to a client stream (without `to`), made at the first write.
    encoded: OnceLock<Vec<u8>>,
}

impl PartialEq for SharedStanza {
    fn eq(&self, other: &Self) -> bool {
        self.stanza == other.stanza && self.from == other.from
    }
}

impl Eq for SharedStanza {}

impl SharedStanza {
    /// `stanza` from `from` (its `from` attribute is set to it, its `to` removed).
    pub fn new(mut stanza: Element, from: Jid) -> Arc<Self> {
        stanza.remove_attr("to");
        stanza.set_attr("from", from.to_string());
        Arc::new(SharedStanza {
            stanza,
            from,
            encoded: OnceLock::new(),
        })
    }

    /// The stanza, without `to`.
    pub fn stanza(&self) -> &Element {
        &self.stanza
    }

    /// The sender (the stanza's `from`).
    pub fn from(&self) -> &Jid {
        &self.from
    }

    /// A copy addressed to `to` (for paths that need a stanza of their own: another node,
    /// another domain, a session with stream management).
    pub fn addressed(&self, to: &Jid) -> Element {
        let mut s = self.stanza.clone();
        s.set_attr("to", to.to_string());
        s
    }

    /// The bytes a client stream gets for this stanza addressed by `to_attr` (made by
    /// [`to_attribute`]): the shared encoding with the attribute spliced in after the name.
    pub fn encode_for_client(&self, to_attr: &[u8]) -> Vec<u8> {
        let enc = self
            .encoded
            .get_or_init(|| herald_xmpp::codec::encode(&self.stanza, ns::CLIENT));
        let mut out = Vec::with_capacity(enc.len() + to_attr.len());
        splice_to(&mut out, enc, self.stanza.name(), to_attr);
        out
    }
}

/// Appends to `out` the encoding `enc` of an unprefixed element named `name` (a stanza in its
/// stream's default namespace, without `to`) with `to_attr` (made by [`to_attribute`])
/// spliced in after the name: the stanza addressed, without encoding it again.
pub fn splice_to(out: &mut Vec<u8>, enc: &[u8], name: &str, to_attr: &[u8]) {
    // `<` and the element name.
    let at = (1 + name.len()).min(enc.len());
    out.extend_from_slice(&enc[..at]);
    out.extend_from_slice(to_attr);
    out.extend_from_slice(&enc[at..]);
}

/// ` to='…'` for `to`, escaped: what [`SharedStanza::encode_for_client`] splices in (a session
/// makes it once for its user's bare JID).
pub fn to_attribute(to: &Jid) -> Vec<u8> {
    let mut out = Vec::with_capacity(48);
    out.extend_from_slice(b" to='");
    escape_into(&to.to_string(), &mut out, true);
    out.push(b'\'');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn presence() -> Element {
        Element::new("presence", ns::CLIENT)
            .attr("from", "a@x.org/r")
            .attr("to", "ignored@x.org")
            .attr("id", "p'1")
            .child(Element::new("show", ns::CLIENT).text_node("away"))
            .child(Element::new("status", ns::CLIENT).text_node("lunch & <coffee>"))
            .child(Element::new("c", "http://jabber.org/protocol/caps").attr("node", "n"))
    }

    #[test]
    fn the_spliced_encoding_is_the_stanza_addressed_with_to_first() {
        let from = Jid::parse("a@x.org/r").unwrap();
        let shared = SharedStanza::new(presence(), from);
        assert_eq!(shared.stanza().get_attr("to"), None);
        for to in ["b@x.org", "zoë@x.org"] {
            let to = Jid::parse(to).unwrap();
            // What the old path wrote, with `to` as the first attribute.
            let mut want = Element::new("presence", ns::CLIENT).attr("to", to.to_string());
            for (k, v) in shared.stanza().attrs() {
                want.set_attr(k, v);
            }
            for n in shared.stanza().nodes() {
                want.nodes_mut().push(n.clone());
            }
            let got = shared.encode_for_client(&to_attribute(&to));
            assert_eq!(
                String::from_utf8(got).unwrap(),
                String::from_utf8(herald_xmpp::codec::encode(&want, ns::CLIENT)).unwrap()
            );
            // And it reads back as the addressed copy.
            let back = crate::im::xml::parse(
                std::str::from_utf8(&shared.encode_for_client(&to_attribute(&to))).unwrap(),
            );
            assert!(back.is_ok(), "{back:?}");
            assert_eq!(shared.addressed(&to).get_attr("to"), Some(&*to.to_string()));
        }
    }

    #[test]
    fn a_server_stream_encoding_spliced_is_the_addressed_copy() {
        // What the federation link does: the stanza moved to jabber:server, encoded once,
        // then each recipient's `to` spliced in.
        let mut el = SharedStanza::new(presence(), Jid::parse("a@x.org/r").unwrap())
            .stanza()
            .clone();
        herald_xmpp::s2s::swap_ns(&mut el, ns::CLIENT, ns::SERVER);
        let enc = herald_xmpp::codec::encode(&el, ns::SERVER);
        let mut out = Vec::new();
        let to: Vec<Jid> = ["b@p.test", "zoë@p.test"]
            .iter()
            .map(|t| Jid::parse(t).unwrap())
            .collect();
        for t in &to {
            splice_to(&mut out, &enc, el.name(), &to_attribute(t));
        }
        let mut want = Vec::new();
        for t in &to {
            let mut a = Element::new("presence", ns::SERVER).attr("to", t.to_string());
            for (k, v) in el.attrs() {
                a.set_attr(k, v);
            }
            for n in el.nodes() {
                a.nodes_mut().push(n.clone());
            }
            want.extend(herald_xmpp::codec::encode(&a, ns::SERVER));
        }
        assert_eq!(
            String::from_utf8(out).unwrap(),
            String::from_utf8(want).unwrap()
        );
    }

    #[test]
    fn an_empty_stanza_is_spliced_before_its_end() {
        let s = SharedStanza::new(
            Element::new("presence", ns::CLIENT),
            Jid::parse("a@x.org").unwrap(),
        );
        let to = Jid::parse("b@x.org").unwrap();
        assert_eq!(
            s.encode_for_client(&to_attribute(&to)),
            b"<presence to='b@x.org' from='a@x.org'/>".to_vec()
        );
    }
}
