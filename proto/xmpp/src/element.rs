//! A small XML element tree for stanzas: namespace-aware, owned, cheap to clone, with a
//! serializer that writes `xmlns` only where an element's namespace differs from its parent's.
//!
//! Attribute names are plain strings; the XML namespace's attributes use the `xml:` prefix
//! (`xml:lang`). Text is stored unescaped and escaped on output.

/// One XML element.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Element {
    name: String,
    ns: String,
    attrs: Vec<(String, String)>,
    children: Vec<Node>,
}

/// A child of an element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Element(Element),
    Text(String),
}

impl Element {
    /// A new element `name` in namespace `ns`.
    pub fn new(name: impl Into<String>, ns: impl Into<String>) -> Self {
        Element {
            name: name.into(),
            ns: ns.into(),
            attrs: Vec::new(),
            children: Vec::new(),
        }
    }

    /// Builder: sets an attribute (replacing one of the same name).
    pub fn attr(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.set_attr(name, value);
        self
    }

    /// Builder: sets an attribute when `value` is Some.
    pub fn attr_opt(self, name: impl Into<String>, value: Option<impl Into<String>>) -> Self {
        match value {
            Some(v) => self.attr(name, v),
            None => self,
        }
    }

    /// Builder: appends a child element.
    pub fn child(mut self, child: Element) -> Self {
        self.children.push(Node::Element(child));
        self
    }

    /// Builder: appends text.
    pub fn text_node(mut self, text: impl Into<String>) -> Self {
        self.children.push(Node::Text(text.into()));
        self
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn ns(&self) -> &str {
        &self.ns
    }

    /// True when this element is `name` in namespace `ns`.
    pub fn is(&self, name: &str, ns: &str) -> bool {
        self.name == name && self.ns == ns
    }

    pub fn get_attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn set_attr(&mut self, name: impl Into<String>, value: impl Into<String>) {
        let name = name.into();
        let value = value.into();
        match self.attrs.iter_mut().find(|(k, _)| *k == name) {
            Some(slot) => slot.1 = value,
            None => self.attrs.push((name, value)),
        }
    }

    pub fn remove_attr(&mut self, name: &str) -> Option<String> {
        let i = self.attrs.iter().position(|(k, _)| k == name)?;
        Some(self.attrs.remove(i).1)
    }

    pub fn attrs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.attrs.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn nodes(&self) -> &[Node] {
        &self.children
    }

    pub fn nodes_mut(&mut self) -> &mut Vec<Node> {
        &mut self.children
    }

    /// Child elements, in order.
    pub fn children(&self) -> impl Iterator<Item = &Element> {
        self.children.iter().filter_map(|n| match n {
            Node::Element(e) => Some(e),
            Node::Text(_) => None,
        })
    }

    /// Appends a child element.
    pub fn push(&mut self, child: Element) {
        self.children.push(Node::Element(child));
    }

    /// The first child `name` in `ns`.
    pub fn get_child(&self, name: &str, ns: &str) -> Option<&Element> {
        self.children().find(|e| e.is(name, ns))
    }

    pub fn get_child_mut(&mut self, name: &str, ns: &str) -> Option<&mut Element> {
        self.children.iter_mut().find_map(|n| match n {
            Node::Element(e) if e.is(name, ns) => Some(e),
            _ => None,
        })
    }

    /// Removes every child `name` in `ns`; returns how many were removed.
    pub fn remove_children(&mut self, name: &str, ns: &str) -> usize {
        let before = self.children.len();
        self.children
            .retain(|n| !matches!(n, Node::Element(e) if e.is(name, ns)));
        before - self.children.len()
    }

    /// The concatenated text directly inside this element.
    pub fn text(&self) -> String {
        let mut s = String::new();
        for n in &self.children {
            if let Node::Text(t) = n {
                s.push_str(t);
            }
        }
        s
    }

    /// Serializes this element as a child of an element in namespace `parent_ns`.
    pub fn write_to(&self, parent_ns: &str, out: &mut Vec<u8>) {
        out.push(b'<');
        out.extend_from_slice(self.name.as_bytes());
        if self.ns != parent_ns {
            out.extend_from_slice(b" xmlns='");
            escape_into(&self.ns, out, true);
            out.push(b'\'');
        }
        for (k, v) in &self.attrs {
            out.push(b' ');
            out.extend_from_slice(k.as_bytes());
            out.extend_from_slice(b"='");
            escape_into(v, out, true);
            out.push(b'\'');
        }
        if self.children.is_empty() {
            out.extend_from_slice(b"/>");
            return;
        }
        out.push(b'>');
        for n in &self.children {
            match n {
                Node::Element(e) => e.write_to(&self.ns, out),
                Node::Text(t) => escape_into(t, out, false),
            }
        }
        out.extend_from_slice(b"</");
        out.extend_from_slice(self.name.as_bytes());
        out.push(b'>');
    }

    /// Serializes this element as a child of an element in namespace `parent_ns`.
    pub fn to_bytes(&self, parent_ns: &str) -> Vec<u8> {
        let mut v = Vec::with_capacity(128);
        self.write_to(parent_ns, &mut v);
        v
    }

    /// Serialized as a standalone document fragment (with its own `xmlns`).
    pub fn to_xml_string(&self) -> String {
        String::from_utf8(self.to_bytes("")).unwrap_or_default()
    }
}

/// Escapes `s` for XML text (`attr = false`) or a single-quoted attribute value.
pub fn escape_into(s: &str, out: &mut Vec<u8>, attr: bool) {
    for b in s.bytes() {
        match b {
            b'&' => out.extend_from_slice(b"&amp;"),
            b'<' => out.extend_from_slice(b"&lt;"),
            b'>' => out.extend_from_slice(b"&gt;"),
            b'\'' if attr => out.extend_from_slice(b"&apos;"),
            b'"' if attr => out.extend_from_slice(b"&quot;"),
            b'\r' => out.extend_from_slice(b"&#xD;"),
            b'\t' if attr => out.extend_from_slice(b"&#x9;"),
            b'\n' if attr => out.extend_from_slice(b"&#xA;"),
            _ => out.push(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLIENT: &str = "jabber:client";

    #[test]
    fn serializes_with_minimal_xmlns_and_escaping() {
        let m = Element::new("message", CLIENT)
            .attr("to", "a@b")
            .attr("type", "chat")
            .child(Element::new("body", CLIENT).text_node("1 < 2 & 'x'"))
            .child(Element::new(
                "active",
                "http://jabber.org/protocol/chatstates",
            ));
        assert_eq!(
            String::from_utf8(m.to_bytes(CLIENT)).unwrap(),
            "<message to='a@b' type='chat'><body>1 &lt; 2 &amp; 'x'</body>\
             <active xmlns='http://jabber.org/protocol/chatstates'/></message>"
        );
        assert!(m
            .to_xml_string()
            .starts_with("<message xmlns='jabber:client' "));
    }

    #[test]
    fn accessors() {
        let mut e = Element::new("iq", CLIENT)
            .attr("id", "1")
            .attr_opt("to", None::<String>)
            .child(Element::new("query", "jabber:iq:roster"));
        assert_eq!(e.get_attr("id"), Some("1"));
        assert_eq!(e.get_attr("to"), None);
        e.set_attr("id", "2");
        assert_eq!(e.get_attr("id"), Some("2"));
        assert!(e.get_child("query", "jabber:iq:roster").is_some());
        assert!(e.get_child("query", "other").is_none());
        assert_eq!(e.remove_attr("id").as_deref(), Some("2"));
        assert_eq!(e.remove_children("query", "jabber:iq:roster"), 1);
        assert_eq!(e.children().count(), 0);
        let t = Element::new("status", CLIENT).text_node("a").text_node("b");
        assert_eq!(t.text(), "ab");
        assert!(t.is("status", CLIENT));
    }

    #[test]
    fn attribute_escaping() {
        let e = Element::new("x", "urn:x").attr("v", "a'\"<&\n");
        assert_eq!(
            e.to_xml_string(),
            "<x xmlns='urn:x' v='a&apos;&quot;&lt;&amp;&#xA;'/>"
        );
    }
}
