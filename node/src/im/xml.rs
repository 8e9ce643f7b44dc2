//! Reading back the stanzas this module stores as XML (`StoredStanza.xml`), and XEP-0082 UTC
//! timestamps for XEP-0203 delay stamps.
//!
//! The reader accepts what [`Element::to_xml_string`] writes: elements, attributes in single or
//! double quotes, default-namespace `xmlns` declarations, text with the five predefined entities
//! and character references. It refuses everything else (prefixed elements, comments,
//! processing instructions, DTDs, CDATA), and limits depth. It is not a stream parser: the
//! session's XML stream is decoded by `herald-xmpp`.

use herald_xmpp::Element;

/// Deepest element nesting accepted.
pub const MAX_DEPTH: usize = 64;

/// Why stored XML could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XmlError {
    /// The input ended inside markup.
    #[error("unexpected end of input")]
    Eof,
    /// A character that does not belong at this position.
    #[error("unexpected {0:?} at byte {1}")]
    Unexpected(char, usize),
    /// An end tag that does not match its start tag.
    #[error("mismatched end tag </{0}>")]
    Mismatch(String),
    /// An unknown entity or bad character reference.
    #[error("bad entity &{0};")]
    Entity(String),
    /// Comments, PIs, DTDs, CDATA or prefixed element names.
    #[error("unsupported XML construct")]
    Unsupported,
    /// Nesting deeper than [`MAX_DEPTH`].
    #[error("elements nested too deep")]
    TooDeep,
    /// Something other than whitespace after the root element.
    #[error("content after the root element")]
    Trailing,
}

struct Reader<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Reader<'a> {
    fn peek(&self) -> Option<char> {
        self.s[self.pos..].chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn expect(&mut self, want: char) -> Result<(), XmlError> {
        match self.bump() {
            Some(c) if c == want => Ok(()),
            Some(c) => Err(XmlError::Unexpected(c, self.pos - c.len_utf8())),
            None => Err(XmlError::Eof),
        }
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(|c| c.is_ascii_whitespace()) {
            self.pos += 1;
        }
    }

    fn name(&mut self) -> Result<&'a str, XmlError> {
        let start = self.pos;
        while let Some(c) = self.peek() {
            if c.is_whitespace() || matches!(c, '/' | '>' | '=' | '<' | '\'' | '"' | '&') {
                break;
            }
            self.pos += c.len_utf8();
        }
        if self.pos == start {
            return match self.peek() {
                Some(c) => Err(XmlError::Unexpected(c, self.pos)),
                None => Err(XmlError::Eof),
            };
        }
        Ok(&self.s[start..self.pos])
    }

    /// Text up to (not including) `stop`, with entities resolved.
    fn text_until(&mut self, stop: char) -> Result<String, XmlError> {
        let mut out = String::new();
        loop {
            match self.peek() {
                None => return Err(XmlError::Eof),
                Some(c) if c == stop => return Ok(out),
                Some('&') => {
                    self.pos += 1;
                    let rest = &self.s[self.pos..];
                    let end = rest.find(';').ok_or(XmlError::Eof)?;
                    let ent = &rest[..end];
                    out.push(resolve_entity(ent)?);
                    self.pos += end + 1;
                }
                Some(c) => {
                    if c == '<' && stop != '<' {
                        return Err(XmlError::Unexpected(c, self.pos));
                    }
                    out.push(c);
                    self.pos += c.len_utf8();
                }
            }
        }
    }

    /// An element whose `<` has been consumed, in the default namespace `parent_ns`.
    fn element(&mut self, parent_ns: &str, depth: usize) -> Result<Element, XmlError> {
        if depth > MAX_DEPTH {
            return Err(XmlError::TooDeep);
        }
        let name = self.name()?;
        if name.contains(':') || name.starts_with(['!', '?']) {
            return Err(XmlError::Unsupported);
        }
        let mut attrs = Vec::new();
        let mut ns = parent_ns.to_string();
        let empty = loop {
            self.skip_ws();
            match self.peek() {
                Some('/') => {
                    self.pos += 1;
                    self.expect('>')?;
                    break true;
                }
                Some('>') => {
                    self.pos += 1;
                    break false;
                }
                None => return Err(XmlError::Eof),
                Some(_) => {
                    let k = self.name()?;
                    self.skip_ws();
                    self.expect('=')?;
                    self.skip_ws();
                    let q = self.bump().ok_or(XmlError::Eof)?;
                    if q != '\'' && q != '"' {
                        return Err(XmlError::Unexpected(q, self.pos - 1));
                    }
                    let v = self.text_until(q)?;
                    self.pos += 1;
                    if k == "xmlns" {
                        ns = v;
                    } else if k.starts_with("xmlns:") {
                        return Err(XmlError::Unsupported);
                    } else {
                        attrs.push((k, v));
                    }
                }
            }
        };
        let mut el = Element::new(name, ns.clone());
        for (k, v) in attrs {
            el.set_attr(k, v);
        }
        if empty {
            return Ok(el);
        }
        loop {
            if self.s[self.pos..].starts_with("</") {
                self.pos += 2;
                let end = self.name()?;
                if end != name {
                    return Err(XmlError::Mismatch(end.to_string()));
                }
                self.skip_ws();
                self.expect('>')?;
                return Ok(el);
            }
            match self.peek() {
                None => return Err(XmlError::Eof),
                Some('<') => {
                    self.pos += 1;
                    if matches!(self.peek(), Some('!' | '?')) {
                        return Err(XmlError::Unsupported);
                    }
                    let child = self.element(&ns, depth + 1)?;
                    el.push(child);
                }
                Some(_) => {
                    let t = self.text_until('<')?;
                    el = el.text_node(t);
                }
            }
        }
    }
}

fn resolve_entity(ent: &str) -> Result<char, XmlError> {
    let bad = || XmlError::Entity(ent.to_string());
    match ent {
        "amp" => Ok('&'),
        "lt" => Ok('<'),
        "gt" => Ok('>'),
        "apos" => Ok('\''),
        "quot" => Ok('"'),
        _ => {
            let code = if let Some(hex) = ent.strip_prefix("#x") {
                u32::from_str_radix(hex, 16).map_err(|_| bad())?
            } else if let Some(dec) = ent.strip_prefix('#') {
                dec.parse::<u32>().map_err(|_| bad())?
            } else {
                return Err(bad());
            };
            char::from_u32(code).ok_or_else(bad)
        }
    }
}

/// Parses one element written by [`Element::to_xml_string`].
pub fn parse(s: &str) -> Result<Element, XmlError> {
    let mut r = Reader { s, pos: 0 };
    r.skip_ws();
    r.expect('<')?;
    let el = r.element("", 0)?;
    r.skip_ws();
    if r.pos != s.len() {
        return Err(XmlError::Trailing);
    }
    Ok(el)
}

/// XEP-0082 DateTime in UTC with milliseconds: `2024-05-06T07:08:09.010Z`.
pub fn utc_stamp(ms: u64) -> String {
    let secs = ms / 1000;
    let millis = ms % 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = herald_federation::calendar::time::civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_xmpp::ns;

    #[test]
    fn round_trips_serializer_output() {
        let m = Element::new("message", ns::CLIENT)
            .attr("to", "a@b")
            .attr("xml:lang", "en")
            .attr("v", "a'\"<&\n\t\r")
            .child(Element::new("body", ns::CLIENT).text_node("1 < 2 & 'x' \r é"))
            .child(Element::new("x", "urn:x").child(Element::new("y", "urn:x")))
            .child(Element::new("z", ns::CLIENT));
        let s = m.to_xml_string();
        assert_eq!(parse(&s).unwrap(), m, "{s}");
    }

    #[test]
    fn rejects() {
        let table = [
            ("", XmlError::Eof),
            ("<a>", XmlError::Eof),
            ("<a></b>", XmlError::Mismatch("b".into())),
            ("<a/>x", XmlError::Trailing),
            ("<a>&bogus;</a>", XmlError::Entity("bogus".into())),
            ("<a><!-- c --></a>", XmlError::Unsupported),
            ("<p:a/>", XmlError::Unsupported),
            ("<a xmlns:p='u'/>", XmlError::Unsupported),
            ("<a b=c/>", XmlError::Unexpected('c', 5)),
            ("<a b='<'/>", XmlError::Unexpected('<', 6)),
        ];
        for (input, want) in table {
            assert_eq!(parse(input).unwrap_err(), want, "{input}");
        }
        let deep = "<a>".repeat(MAX_DEPTH + 2);
        assert_eq!(parse(&deep).unwrap_err(), XmlError::TooDeep);
    }

    #[test]
    fn stamps() {
        let table = [
            (0, "1970-01-01T00:00:00.000Z"),
            (951_782_400_000, "2000-02-29T00:00:00.000Z"),
            (1_700_000_000_123, "2023-11-14T22:13:20.123Z"),
            (4_102_444_799_999, "2099-12-31T23:59:59.999Z"),
        ];
        for (ms, want) in table {
            assert_eq!(utc_stamp(ms), want, "{ms}");
        }
    }
}
