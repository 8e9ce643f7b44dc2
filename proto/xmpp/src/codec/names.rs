//! Namespace resolution (Namespaces in XML 1.0) over rxml's raw events.

use rxml::{NcName, RawQName};

use crate::error::{StreamCondition, StreamError};
use crate::ns;

/// An element header as read: physical names, declarations separated out.
#[derive(Debug)]
pub(super) struct Head {
    prefix: Option<NcName>,
    local: NcName,
    default_decl: Option<String>,
    decls: Vec<(NcName, String)>,
    attrs: Vec<(RawQName, String)>,
}

impl Head {
    pub(super) fn new(prefix: Option<NcName>, local: NcName) -> Self {
        Head {
            prefix,
            local,
            default_decl: None,
            decls: Vec::new(),
            attrs: Vec::new(),
        }
    }

    /// Records one attribute: a namespace declaration or an ordinary attribute.
    pub(super) fn attribute(&mut self, (prefix, local): RawQName, value: String) {
        match prefix.as_deref().map(|p| p.as_str()) {
            Some("xmlns") => self.decls.push((local, value)),
            None if local.as_str() == "xmlns" => self.default_decl = Some(value),
            _ => self.attrs.push(((prefix, local), value)),
        }
    }
}

/// An element header with its namespace resolved and attributes named as [`Element`] keeps
/// them (`name` or `xml:name`).
///
/// [`Element`]: crate::Element
#[derive(Debug)]
pub(super) struct Resolved {
    pub(super) name: String,
    pub(super) ns: String,
    pub(super) attrs: Vec<(String, String)>,
}

#[derive(Debug, Default)]
struct Scope {
    default_decl: Option<String>,
    decls: Vec<(NcName, String)>,
}

/// The stack of in-scope namespace declarations, one entry per open element.
#[derive(Debug, Default)]
pub(super) struct Scopes {
    stack: Vec<Scope>,
}

impl Scopes {
    /// Opens an element: pushes its declarations and resolves its names.
    pub(super) fn open(&mut self, head: Head) -> Result<Resolved, StreamError> {
        let Head {
            prefix,
            local,
            default_decl,
            decls,
            attrs,
        } = head;
        let mut seen = std::collections::HashSet::with_capacity(decls.len());
        if !decls.iter().all(|(p, _)| seen.insert(p.as_str())) {
            return Err(nwf("duplicate namespace declaration"));
        }
        if let Some(v) = &default_decl {
            check_ns_name(v, false)?;
        }
        for (_, v) in &decls {
            check_ns_name(v, true)?;
        }
        self.stack.push(Scope {
            default_decl,
            decls,
        });
        let ns = match prefix.as_deref().map(|p| p.as_str()) {
            None => self.default_ns().to_string(),
            // The `xml` prefix is for attributes (`xml:lang`): an element in the XML namespace
            // could only be written back with a reserved `xmlns` binding, which the next
            // parser (another client, a peer server) would refuse.
            Some("xml") => return Err(nwf("element in the reserved xml namespace")),
            Some(p) => self.lookup(p)?.to_string(),
        };
        let mut out = Vec::with_capacity(attrs.len());
        for ((p, l), v) in attrs {
            match p.as_deref().map(|p| p.as_str()) {
                None => out.push((l.as_str().to_string(), v)),
                Some("xml") => out.push((format!("xml:{}", l.as_str()), v)),
                // Attributes in other namespaces are checked, then dropped.
                Some(p) => {
                    self.lookup(p)?;
                }
            }
        }
        Ok(Resolved {
            name: local.as_str().to_string(),
            ns,
            attrs: out,
        })
    }

    /// Gives back spare capacity (an idle stream keeps only the root's declarations).
    pub(super) fn shrink(&mut self) {
        self.stack.shrink_to_fit();
        for s in &mut self.stack {
            s.decls.shrink_to_fit();
        }
    }

    /// Closes the innermost element.
    pub(super) fn close(&mut self) {
        self.stack.pop();
    }

    /// The default namespace in scope ("" when none).
    pub(super) fn default_ns(&self) -> &str {
        self.stack
            .iter()
            .rev()
            .find_map(|s| s.default_decl.as_deref())
            .unwrap_or("")
    }

    fn lookup(&self, prefix: &str) -> Result<&str, StreamError> {
        if prefix == "xml" {
            return Ok(ns::XML);
        }
        self.stack
            .iter()
            .rev()
            .find_map(|s| {
                s.decls
                    .iter()
                    .find(|(p, _)| p.as_str() == prefix)
                    .map(|(_, u)| u.as_str())
            })
            .ok_or_else(|| nwf(format!("undeclared namespace prefix {prefix:?}")))
    }
}

/// The namespace that only `xmlns` attributes are in (Namespaces in XML 1.0 §3).
const XMLNS: &str = "http://www.w3.org/2000/xmlns/";

/// Refuses a namespace declaration's value that Namespaces in XML 1.0 forbids, or that is no
/// URI reference (RFC 3986: no spaces, controls, quotes, angle brackets, backslash, caret,
/// backtick, braces or bar): such a name would be passed on to other users and peers whose
/// parsers refuse it, breaking their streams. The `xml` namespace is bound by the `xml` prefix
/// only, which rxml checks already.
fn check_ns_name(value: &str, prefixed: bool) -> Result<(), StreamError> {
    if value == XMLNS {
        return Err(nwf("the reserved xmlns namespace cannot be declared"));
    }
    if prefixed && value.is_empty() {
        return Err(nwf("a namespace prefix cannot be bound to the empty name"));
    }
    if value
        .chars()
        .any(|c| c.is_ascii() && (c <= ' ' || c == '\x7f' || "\"<>\\^`{|}".contains(c)))
    {
        return Err(nwf("a namespace name must be a URI reference"));
    }
    Ok(())
}

fn nwf(text: impl Into<String>) -> StreamError {
    StreamError::with_text(StreamCondition::NotWellFormed, text)
}
