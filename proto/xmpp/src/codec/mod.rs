//! The bounded, incremental XML stream decoder (RFC 6120 §4, §11) and stream encoding.
//!
//! [`Decoder`] is sans-io: the connection feeds whatever bytes it read ([`Decoder::feed`]) and
//! pulls [`StreamEvent`]s ([`Decoder::next`]) until `Ok(None)`. Input may be cut anywhere (inside
//! a tag, an attribute or a UTF-8 character): the events are the same for every chunking.
//!
//! Parsing is done by `rxml`'s push parser at the raw level (it rejects DTDs, processing
//! instructions, comments and anything outside "restricted XML"); namespace resolution and
//! tree building are done here so that the stream header's default namespace is visible and
//! every limit is enforced while bytes arrive, not after a stanza was buffered:
//! - [`Limits::max_stanza_bytes`]: bytes of one top-level element (and of the stream header),
//!   counted as they are consumed; going over fails with `policy-violation`.
//! - [`Limits::max_depth`]: nesting depth inside a stanza; going over fails with
//!   `policy-violation`.
//!
//! Attributes in namespaces other than none and `xml:` are dropped (XMPP core does not use
//! them and [`Element`] keeps attributes by plain name).
//!
//! Once an error is returned the decoder stays failed until [`Decoder::reset`].

mod names;

use std::collections::HashSet;

use rxml::error::EndOrError;
use rxml::{Options, Parse, RawEvent, RawParser, WithOptions};

use crate::element::{escape_into, Element, Node};
use crate::error::{StreamCondition, StreamError};
use crate::ns;

use names::{Head, Scopes};

/// Resource limits of one stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest top-level element (stanza or negotiation element), in bytes of input.
    pub max_stanza_bytes: usize,
    /// Deepest element nesting inside a stanza (the stanza itself is depth 1).
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_stanza_bytes: 262_144,
            max_depth: 32,
        }
    }
}

/// One thing read from the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEvent {
    /// `<stream:stream …>` was opened.
    Open(StreamHeader),
    /// A complete top-level child of the stream: a stanza or a negotiation element
    /// (`<starttls/>`, `<auth/>`, …).
    Stanza(Element),
    /// Whitespace between top-level elements (a keepalive). A run of whitespace between two
    /// elements gives one event, as soon as its first byte is read.
    Whitespace,
    /// `</stream:stream>`.
    Close,
}

/// The attributes of a stream header.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StreamHeader {
    /// `to`.
    pub to: Option<String>,
    /// `from`.
    pub from: Option<String>,
    /// `id`.
    pub id: Option<String>,
    /// `version`.
    pub version: Option<String>,
    /// `xml:lang`.
    pub lang: Option<String>,
    /// The default (content) namespace: `jabber:client` or `jabber:server`.
    pub default_ns: String,
}

/// Stream footer.
pub const STREAM_CLOSE: &[u8] = b"</stream:stream>";

/// The bytes of a stream header: XML declaration plus `<stream:stream …>` with the default
/// namespace `h.default_ns` and the `stream` prefix bound to the streams namespace.
pub fn stream_header(h: &StreamHeader) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"<?xml version='1.0'?><stream:stream xmlns='");
    escape_into(&h.default_ns, &mut out, true);
    out.extend_from_slice(b"' xmlns:stream='");
    out.extend_from_slice(ns::STREAM.as_bytes());
    out.push(b'\'');
    for (name, value) in [
        ("id", &h.id),
        ("from", &h.from),
        ("to", &h.to),
        ("version", &h.version),
        ("xml:lang", &h.lang),
    ] {
        if let Some(v) = value {
            out.push(b' ');
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b"='");
            escape_into(v, &mut out, true);
            out.push(b'\'');
        }
    }
    out.push(b'>');
    out
}

/// Serializes a top-level element of a stream whose content namespace is `stream_ns`.
/// Elements in the streams namespace (`features`, `error`) use the `stream:` prefix declared
/// by the stream header, and dialback elements the `db:` prefix server stream headers declare
/// (some servers match dialback by prefix).
pub fn encode(stanza: &Element, stream_ns: &str) -> Vec<u8> {
    let prefix: &[u8] = if stanza.ns() == ns::STREAM {
        b"stream:"
    } else if stanza.ns() == crate::s2s::DIALBACK && stream_ns == ns::SERVER {
        b"db:"
    } else {
        return stanza.to_bytes(stream_ns);
    };
    let mut out = Vec::with_capacity(256);
    out.push(b'<');
    out.extend_from_slice(prefix);
    out.extend_from_slice(stanza.name().as_bytes());
    for (k, v) in stanza.attrs() {
        out.push(b' ');
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(b"='");
        escape_into(v, &mut out, true);
        out.push(b'\'');
    }
    if stanza.nodes().is_empty() {
        out.extend_from_slice(b"/>");
        return out;
    }
    out.push(b'>');
    // The prefix leaves the default namespace (stream_ns) in force for the children.
    for n in stanza.nodes() {
        match n {
            Node::Element(e) => e.write_to(stream_ns, &mut out),
            Node::Text(t) => escape_into(t, &mut out, false),
        }
    }
    out.extend_from_slice(b"</");
    out.extend_from_slice(prefix);
    out.extend_from_slice(stanza.name().as_bytes());
    out.push(b'>');
    out
}

/// Bytes handed to the parser at once: errors are noticed after at most this much input.
const CHUNK: usize = 4096;
/// Longest single token (name, attribute value, text run) rxml holds in memory. rxml reserves
/// this much scratch space per parser, i.e. per connection, so it is kept small: longer text is
/// delivered in several runs anyway, and the longest attribute XMPP needs (a JID: 3 × 1023
/// bytes plus separators) fits.
const MAX_TOKEN: usize = 4096;

#[derive(Debug)]
enum Phase {
    /// Waiting for `<stream:stream>`.
    Header,
    /// Inside the stream.
    Open,
    /// `</stream:stream>` was read; further input is ignored.
    Closed,
    /// An error was returned; it is returned again.
    Failed(StreamError),
}

/// The incremental stream decoder. See the module documentation.
#[derive(Debug)]
pub struct Decoder {
    limits: Limits,
    /// Dropped between stanzas when nothing is pending (an idle stream then holds no parser
    /// state); recreated on the next input, primed with the stream's root start tag.
    parser: Option<Box<RawParser>>,
    /// The stream root's qualified name as the peer wrote it (for priming a new parser).
    root: String,
    /// Bytes the parser consumed that no event has accounted for yet (rxml's events are
    /// consecutive, so zero means it holds no partial token).
    unclaimed: usize,
    input: Vec<u8>,
    pos: usize,
    phase: Phase,
    scopes: Scopes,
    /// Boxed: only there while a start tag is read, and an idle session keeps its decoder.
    head: Option<Box<Head>>,
    /// Elements being built; `stack[0]` is the stanza.
    stack: Vec<Element>,
    /// Input bytes consumed since the last top-level event.
    bytes: usize,
    /// The last event given out was Whitespace (runs are reported once).
    after_ws: bool,
}

impl Decoder {
    /// A decoder waiting for a stream header.
    pub fn new(limits: Limits) -> Self {
        Decoder {
            limits,
            parser: Some(Box::new(new_parser(limits))),
            root: String::new(),
            unclaimed: 0,
            input: Vec::new(),
            pos: 0,
            phase: Phase::Header,
            scopes: Scopes::default(),
            head: None,
            stack: Vec::new(),
            bytes: 0,
            after_ws: false,
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Feeds bytes; call [`Decoder::next`] until it returns `Ok(None)`.
    pub fn feed(&mut self, bytes: &[u8]) {
        if matches!(self.phase, Phase::Closed | Phase::Failed(_)) {
            return;
        }
        if self.pos > 0 {
            self.input.drain(..self.pos);
            self.pos = 0;
        }
        self.input.extend_from_slice(bytes);
    }

    /// The next event, `Ok(None)` when more input is needed.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<StreamEvent>, StreamError> {
        match &self.phase {
            Phase::Failed(e) => return Err(e.clone()),
            Phase::Closed => return Ok(None),
            Phase::Header | Phase::Open => {}
        }
        match self.advance() {
            Ok(ev) => Ok(ev),
            Err(e) => {
                self.phase = Phase::Failed(e.clone());
                self.input = Vec::new();
                self.pos = 0;
                self.stack = Vec::new();
                self.head = None;
                self.bytes = 0;
                Err(e)
            }
        }
    }

    /// Forgets all parser state for a stream restart (after STARTTLS or SASL success).
    /// Unread input is dropped too: nothing may follow the restart-causing element until the
    /// peer has seen our answer.
    pub fn reset(&mut self) {
        *self = Decoder::new(self.limits);
    }

    /// Bytes of the top-level element currently being read (for limits and metrics).
    pub fn buffered(&self) -> usize {
        self.bytes
    }

    /// Bytes fed but not yet parsed.
    pub fn pending_input(&self) -> usize {
        self.input.len() - self.pos
    }

    fn advance(&mut self) -> Result<Option<StreamEvent>, StreamError> {
        loop {
            if matches!(self.phase, Phase::Closed) {
                return Ok(None);
            }
            // The parser is called even without input: it may hold queued events (the end of
            // a `<x/>` that ended the last chunk).
            let avail = &self.input[self.pos..];
            let take = avail.len().min(CHUNK);
            let mut slice = &avail[..take];
            let parser = match &mut self.parser {
                Some(p) => p,
                None => self.parser.insert(resume_parser(self.limits, &self.root)?),
            };
            let result = parser.parse(&mut slice, false);
            let consumed = take - slice.len();
            self.pos += consumed;
            self.unclaimed += consumed;
            self.bytes = self.bytes.saturating_add(consumed);
            if self.bytes > self.limits.max_stanza_bytes {
                return Err(too_big(self.limits.max_stanza_bytes));
            }
            match result {
                Ok(Some(raw)) => {
                    self.unclaimed = self.unclaimed.saturating_sub(raw.metrics().len());
                    if let Some(ev) = self.on_raw(raw)? {
                        return Ok(Some(ev));
                    }
                }
                // The parser saw the end of the document; only possible after the root closed.
                Ok(None) => return Ok(None),
                Err(EndOrError::NeedMoreData) => {
                    if self.pos == self.input.len() {
                        // An idle stream keeps no input buffer.
                        self.input = Vec::new();
                        self.pos = 0;
                        if matches!(self.phase, Phase::Open)
                            && self.stack.is_empty()
                            && self.head.is_none()
                            && self.unclaimed == 0
                        {
                            self.parser = None;
                            self.stack = Vec::new();
                            self.scopes.shrink();
                        }
                        return Ok(None);
                    }
                    if consumed == 0 {
                        // Not expected from rxml; never spin on it.
                        return Ok(None);
                    }
                }
                Err(EndOrError::Error(e)) => return Err(map_xml_error(&e)),
            }
        }
    }

    fn on_raw(&mut self, raw: RawEvent) -> Result<Option<StreamEvent>, StreamError> {
        match raw {
            RawEvent::XmlDeclaration(..) => Ok(None),
            RawEvent::ElementHeadOpen(_, (prefix, local)) => {
                if matches!(self.phase, Phase::Header) {
                    self.root = match &prefix {
                        Some(p) => format!("{p}:{local}"),
                        None => local.to_string(),
                    };
                }
                if !matches!(self.phase, Phase::Header) && self.stack.len() >= self.limits.max_depth
                {
                    return Err(StreamError::with_text(
                        StreamCondition::PolicyViolation,
                        format!("elements nested deeper than {}", self.limits.max_depth),
                    ));
                }
                self.head = Some(Box::new(Head::new(prefix, local)));
                Ok(None)
            }
            RawEvent::Attribute(_, name, value) => {
                if let Some(head) = self.head.as_mut() {
                    head.attribute(name, value);
                }
                Ok(None)
            }
            RawEvent::ElementHeadClose(_) => {
                let Some(head) = self.head.take() else {
                    return Err(not_well_formed("attribute outside an element"));
                };
                self.head_closed(*head)
            }
            RawEvent::ElementFoot(_) => self.element_end(),
            RawEvent::Text(_, text) => self.text(text),
        }
    }

    fn head_closed(&mut self, head: Head) -> Result<Option<StreamEvent>, StreamError> {
        let resolved = self.scopes.open(head)?;
        if matches!(self.phase, Phase::Header) {
            return self.stream_open(resolved).map(Some);
        }
        let mut e = Element::new(resolved.name, resolved.ns);
        let mut seen = HashSet::with_capacity(resolved.attrs.len());
        for (k, v) in resolved.attrs {
            if !seen.insert(k.clone()) {
                return Err(not_well_formed("duplicate attribute"));
            }
            e.set_attr(k, v);
        }
        self.after_ws = false;
        self.stack.push(e);
        Ok(None)
    }

    fn stream_open(&mut self, el: names::Resolved) -> Result<StreamEvent, StreamError> {
        if el.ns != ns::STREAM {
            return Err(StreamError::with_text(
                StreamCondition::InvalidNamespace,
                "the stream element is not in the streams namespace",
            ));
        }
        if el.name != "stream" {
            return Err(StreamError::with_text(
                StreamCondition::BadFormat,
                "expected a stream header",
            ));
        }
        let default_ns = self.scopes.default_ns().to_string();
        if default_ns != ns::CLIENT && default_ns != ns::SERVER {
            return Err(StreamError::with_text(
                StreamCondition::InvalidNamespace,
                "the content namespace must be jabber:client or jabber:server",
            ));
        }
        let mut h = StreamHeader {
            default_ns,
            ..StreamHeader::default()
        };
        for (k, v) in el.attrs {
            match k.as_str() {
                "to" => h.to = Some(v),
                "from" => h.from = Some(v),
                "id" => h.id = Some(v),
                "version" => h.version = Some(v),
                "xml:lang" => h.lang = Some(v),
                _ => {}
            }
        }
        self.phase = Phase::Open;
        self.bytes = 0;
        self.after_ws = false;
        Ok(StreamEvent::Open(h))
    }

    fn element_end(&mut self) -> Result<Option<StreamEvent>, StreamError> {
        self.scopes.close();
        let Some(done) = self.stack.pop() else {
            // The stream element itself was closed.
            self.phase = Phase::Closed;
            self.input = Vec::new();
            self.pos = 0;
            self.bytes = 0;
            return Ok(Some(StreamEvent::Close));
        };
        match self.stack.last_mut() {
            Some(parent) => {
                parent.push(done);
                Ok(None)
            }
            None => {
                self.bytes = 0;
                self.after_ws = false;
                Ok(Some(StreamEvent::Stanza(done)))
            }
        }
    }

    fn text(&mut self, text: String) -> Result<Option<StreamEvent>, StreamError> {
        if let Some(current) = self.stack.last_mut() {
            let nodes = current.nodes_mut();
            match nodes.last_mut() {
                Some(Node::Text(t)) => t.push_str(&text),
                _ => nodes.push(Node::Text(text)),
            }
            return Ok(None);
        }
        // Character data directly inside <stream:stream>: only whitespace is allowed.
        if !text
            .bytes()
            .all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
        {
            return Err(StreamError::with_text(
                StreamCondition::BadFormat,
                "text outside any stanza",
            ));
        }
        self.bytes = 0;
        if self.after_ws || matches!(self.phase, Phase::Header) {
            return Ok(None);
        }
        self.after_ws = true;
        Ok(Some(StreamEvent::Whitespace))
    }
}

fn new_parser(limits: Limits) -> RawParser {
    let opts = Options {
        max_token_length: limits.max_stanza_bytes.clamp(64, MAX_TOKEN),
        ..Options::default()
    };
    let mut p = <RawParser as WithOptions>::with_options(opts);
    // Hand out text as it arrives (keepalives are seen at once).
    p.set_text_buffering(false);
    p
}

/// A parser that is inside the stream root again, as if it had read the stream header.
fn resume_parser(limits: Limits, root: &str) -> Result<Box<RawParser>, StreamError> {
    let mut p = Box::new(new_parser(limits));
    let open = format!("<{root}>");
    let mut slice = open.as_bytes();
    // Two events (head open, head close), then a request for more data.
    for _ in 0..4 {
        match p.parse(&mut slice, false) {
            Ok(Some(_)) => {}
            Err(EndOrError::NeedMoreData) if slice.is_empty() => return Ok(p),
            _ => break,
        }
    }
    Err(StreamError::with_text(
        StreamCondition::InternalServerError,
        "stream parser could not be resumed",
    ))
}

fn too_big(limit: usize) -> StreamError {
    StreamError::with_text(
        StreamCondition::PolicyViolation,
        format!("stanza larger than {limit} bytes"),
    )
}

fn not_well_formed(text: impl Into<String>) -> StreamError {
    StreamError::with_text(StreamCondition::NotWellFormed, text)
}

/// Maps an rxml error to the stream error RFC 6120 asks for.
fn map_xml_error(e: &rxml::Error) -> StreamError {
    use rxml::Error as X;
    let cond = match e {
        // §4.9.3.22: "improperly encoded the stream (e.g., by violating the rules of UTF-8)".
        X::InvalidUtf8Byte(_) => StreamCondition::UnsupportedEncoding,
        X::RestrictedXml(msg) if msg.contains("encoding") => StreamCondition::UnsupportedEncoding,
        X::RestrictedXml(msg) if msg.contains("long") => StreamCondition::PolicyViolation,
        // §11.1: comments, processing instructions, DTDs, non-standalone documents.
        X::RestrictedXml(_) | X::UndeclaredEntity => StreamCondition::RestrictedXml,
        // `<!` not followed by `--` or `[CDATA[`: a DTD declaration (`<!DOCTYPE`, `<!ENTITY`).
        X::InvalidSyntax(msg) if msg.contains("cdata or comment") => StreamCondition::RestrictedXml,
        _ => StreamCondition::NotWellFormed,
    };
    StreamError::with_text(cond, e.to_string())
}

#[cfg(test)]
mod tests;
