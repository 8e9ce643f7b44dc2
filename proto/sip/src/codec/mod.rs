//! The bounded, incremental stream decoder for SIP over TCP and TLS (RFC 3261 §7, §18.3) with
//! CRLF keep-alives (RFC 5626 §3.5.1).
//!
//! [`Decoder`] is sans-io: the connection feeds whatever it read ([`Decoder::feed`]) and pulls
//! [`Frame`]s ([`Decoder::next`]) until `Ok(None)`. The frames and errors are the same for every
//! way of cutting the input into chunks.
//!
//! Flow of one message:
//! 1. Between messages, CRLFs are keep-alives. An inbound decoder ([`Decoder::new`], the side
//!    that accepted the connection) reports each `CRLFCRLF` as [`Frame::Ping`] (answer with
//!    [`PONG`]) and ignores a lone CRLF before a start line (RFC 3261 §7.5). An outbound
//!    decoder ([`Decoder::outbound`]) reports each CRLF as [`Frame::Pong`].
//! 2. The header section is scanned line by line as bytes arrive (CRLF or bare LF ends a line;
//!    a line starting with SP/HT continues the previous header, RFC 3261 §7.3.1, and is
//!    unfolded into one space). The start line is checked as soon as it is complete.
//!    The limits are enforced on partial input, so an attacker cannot make the decoder buffer
//!    more than the limit: [`Limits::max_line_bytes`], [`Limits::max_headers`],
//!    [`Limits::max_message_bytes`]. When several limits are crossed, the one crossed at the
//!    earliest byte wins, which keeps the result independent of chunking.
//! 3. At the blank line, `Content-Length` (required on streams) is read and checked against
//!    [`Limits::max_body_bytes`] and [`Limits::max_message_bytes`]; it is then removed from the
//!    headers (the encoder writes it from the body).
//! 4. When the body is complete the message is checked by [`validate`] (mandatory headers,
//!    their syntax, CSeq method, Request-URI scheme). A failure there rejects only this
//!    message: the error is returned, the message is kept for [`Decoder::take_rejected`],
//!    and decoding goes on.
//!
//! Fatal errors ([`DecodeError::is_fatal`]) leave the decoder failed: every later call
//! returns the same error and input is discarded.

mod validate;

pub use validate::validate;

use crate::error::DecodeError;
use crate::header::{is_token_char, Header, HeaderName, Headers};
use crate::message::{Message, Method, Request, Response};
use crate::uri::Uri;

/// What an inbound decoder's [`Frame::Ping`] is answered with (RFC 5626 §3.5.1).
pub const PONG: &[u8] = b"\r\n";
/// The keep-alive ping an outbound connection sends (RFC 5626 §3.5.1).
pub const PING: &[u8] = b"\r\n\r\n";

/// Resource limits of one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest message (header section plus body), in bytes. Over it: 513.
    pub max_message_bytes: usize,
    /// Largest Content-Length accepted. Over it: 413.
    pub max_body_bytes: usize,
    /// Most header lines (a folded header counts once). Over it: 400.
    pub max_headers: usize,
    /// Longest physical line in the header section (start line included, CRLF excluded).
    /// Over it: 400.
    pub max_line_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_bytes: 65_536,
            max_body_bytes: 60_000,
            max_headers: 100,
            max_line_bytes: 8_192,
        }
    }
}

/// One thing read from the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A complete, validated message.
    Message(Message),
    /// A `CRLFCRLF` keep-alive ping (inbound decoders): answer with [`PONG`].
    Ping,
    /// A CRLF keep-alive pong (outbound decoders).
    Pong,
}

/// A parsed start line.
#[derive(Debug)]
enum StartLine {
    Request(Method, Uri),
    Response(u16, String),
}

/// Progress through a header section.
#[derive(Debug, Default)]
struct Scan {
    /// Offset (from the message start) of the first line not yet complete.
    line_start: usize,
    start: Option<StartLine>,
    headers: Vec<Header>,
    /// Header lines started so far (continuations excluded, malformed ones included).
    header_lines: usize,
    /// The first problem that rejects this message without breaking the framing.
    deferred: Option<DecodeError>,
}

#[derive(Debug)]
enum Phase {
    /// Between messages.
    Idle,
    /// Reading the header section.
    Head(Scan),
    /// Reading a body of `len` bytes after a header section of `head` bytes.
    Body { scan: Scan, head: usize, len: usize },
    /// A fatal error was returned; it is returned again.
    Failed(DecodeError),
}

/// The incremental stream decoder. See the module documentation.
#[derive(Debug)]
pub struct Decoder {
    limits: Limits,
    outbound: bool,
    input: Vec<u8>,
    /// Start of the current message (or of unread input) in `input`.
    pos: usize,
    phase: Phase,
    rejected: Option<Message>,
}

impl Decoder {
    /// A decoder for a connection we accepted: `CRLFCRLF` is a ping.
    pub fn new(limits: Limits) -> Self {
        Decoder {
            limits,
            outbound: false,
            input: Vec::new(),
            pos: 0,
            phase: Phase::Idle,
            rejected: None,
        }
    }

    /// A decoder for a connection we opened: each CRLF between messages is a pong.
    pub fn outbound(limits: Limits) -> Self {
        Decoder {
            outbound: true,
            ..Decoder::new(limits)
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Feeds bytes; call [`Decoder::next`] until it returns `Ok(None)`.
    pub fn feed(&mut self, bytes: &[u8]) {
        if matches!(self.phase, Phase::Failed(_)) {
            return;
        }
        if self.pos > 0 {
            self.input.drain(..self.pos);
            self.pos = 0;
        }
        self.input.extend_from_slice(bytes);
    }

    /// Bytes fed but not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.input.len() - self.pos
    }

    /// The message behind the last non-fatal error, to answer it (once).
    pub fn take_rejected(&mut self) -> Option<Message> {
        self.rejected.take()
    }

    /// The next frame, `Ok(None)` when more input is needed.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<Frame>, DecodeError> {
        if let Phase::Failed(e) = &self.phase {
            return Err(e.clone());
        }
        match self.advance() {
            Ok(f) => Ok(f),
            Err(e) if e.is_fatal() => {
                self.phase = Phase::Failed(e.clone());
                self.input = Vec::new();
                self.pos = 0;
                Err(e)
            }
            Err(e) => Err(e),
        }
    }

    fn advance(&mut self) -> Result<Option<Frame>, DecodeError> {
        loop {
            let avail = &self.input[self.pos..];
            match &mut self.phase {
                Phase::Failed(e) => return Err(e.clone()),
                Phase::Idle => {
                    if avail.is_empty() {
                        // An idle connection keeps no buffer.
                        self.input = Vec::new();
                        self.pos = 0;
                        return Ok(None);
                    }
                    if avail[0] == b'\r' {
                        match keepalive(avail, self.outbound) {
                            Keepalive::Wait => return Ok(None),
                            Keepalive::Skip(n) => self.pos += n,
                            Keepalive::Frame(n, f) => {
                                self.pos += n;
                                return Ok(Some(f));
                            }
                            Keepalive::NotOne => self.phase = Phase::Head(Scan::default()),
                        }
                    } else {
                        self.phase = Phase::Head(Scan::default());
                    }
                }
                Phase::Head(scan) => {
                    let Some(head) = scan_head(scan, avail, &self.limits)? else {
                        return Ok(None);
                    };
                    let len = content_length(&mut scan.headers)?;
                    if len > self.limits.max_body_bytes as u64 {
                        return Err(DecodeError::BodyTooLarge {
                            length: len,
                            limit: self.limits.max_body_bytes,
                        });
                    }
                    // Fits in usize: at most max_body_bytes.
                    let len = len as usize;
                    if head + len > self.limits.max_message_bytes {
                        return Err(DecodeError::MessageTooLarge {
                            limit: self.limits.max_message_bytes,
                        });
                    }
                    let scan = std::mem::take(scan);
                    self.phase = Phase::Body { scan, head, len };
                }
                Phase::Body { head, len, .. } => {
                    let (head, len) = (*head, *len);
                    if avail.len() < head + len {
                        return Ok(None);
                    }
                    let body = avail[head..head + len].to_vec();
                    self.pos += head + len;
                    let Phase::Body { scan, .. } = std::mem::replace(&mut self.phase, Phase::Idle)
                    else {
                        unreachable!("phase checked above");
                    };
                    return self.finish(scan, body).map(Some);
                }
            }
        }
    }

    fn finish(&mut self, scan: Scan, body: Vec<u8>) -> Result<Frame, DecodeError> {
        let mut headers = Headers::new();
        for h in scan.headers {
            headers.push(h.name, h.value);
        }
        let msg = match scan.start {
            Some(StartLine::Request(method, uri)) => Message::Request(Request {
                method,
                uri,
                headers,
                body,
            }),
            Some(StartLine::Response(status, reason)) => Message::Response(Response {
                status,
                reason,
                headers,
                body,
            }),
            None => return Err(DecodeError::BadStartLine { reason: "missing" }),
        };
        match scan.deferred.map_or_else(|| validate(&msg), Err) {
            Ok(()) => Ok(Frame::Message(msg)),
            Err(e) => {
                self.rejected = Some(msg);
                Err(e)
            }
        }
    }
}

enum Keepalive {
    /// Cannot decide yet.
    Wait,
    /// Ignore this many bytes.
    Skip(usize),
    /// This many bytes make a frame.
    Frame(usize, Frame),
    /// Not a keep-alive: a message starts here.
    NotOne,
}

/// Classifies CRLFs at the start of `avail` (which starts with CR).
fn keepalive(avail: &[u8], outbound: bool) -> Keepalive {
    match avail.get(1) {
        None => return Keepalive::Wait,
        Some(b'\n') => {}
        Some(_) => return Keepalive::NotOne,
    }
    if outbound {
        return Keepalive::Frame(2, Frame::Pong);
    }
    match (avail.get(2), avail.get(3)) {
        (None, _) | (Some(b'\r'), None) => Keepalive::Wait,
        (Some(b'\r'), Some(b'\n')) => Keepalive::Frame(4, Frame::Ping),
        _ => Keepalive::Skip(2),
    }
}

/// Scans complete lines of the header section; `Some(length)` once the blank line is read.
fn scan_head(scan: &mut Scan, avail: &[u8], limits: &Limits) -> Result<Option<usize>, DecodeError> {
    loop {
        let ls = scan.line_start;
        let rest = &avail[ls..];
        let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
            let len = rest.len() - usize::from(rest.last() == Some(&b'\r'));
            check_limits(scan, limits, ls, len, avail.len(), rest.first().copied())?;
            return Ok(None);
        };
        let line = &rest[..nl];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let end = ls + nl + 1;
        check_limits(scan, limits, ls, line.len(), end, rest.first().copied())?;
        scan.line_start = end;
        if line.is_empty() {
            if scan.start.is_none() {
                return Err(DecodeError::BadStartLine {
                    reason: "empty line",
                });
            }
            return Ok(Some(end));
        }
        if scan.start.is_none() {
            scan.start = Some(parse_start_line(line)?);
        } else {
            header_line(scan, line);
        }
    }
}

/// Checks the limits on the line at `ls` whose content so far is `len` bytes and whose bytes
/// end at `end` (exclusive, relative to the message start). Of the limits crossed, the one
/// crossed at the earliest byte is reported.
fn check_limits(
    scan: &Scan,
    limits: &Limits,
    ls: usize,
    len: usize,
    end: usize,
    first: Option<u8>,
) -> Result<(), DecodeError> {
    let starts_header =
        scan.start.is_some() && first.is_some_and(|b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n'));
    if starts_header && scan.header_lines >= limits.max_headers {
        return Err(DecodeError::TooManyHeaders {
            limit: limits.max_headers,
        });
    }
    let too_big = (end > limits.max_message_bytes).then_some(limits.max_message_bytes);
    let too_long = (len > limits.max_line_bytes).then_some(ls + limits.max_line_bytes);
    match (too_big, too_long) {
        (Some(a), Some(b)) if b < a => Err(DecodeError::LineTooLong {
            limit: limits.max_line_bytes,
        }),
        (Some(_), _) => Err(DecodeError::MessageTooLarge {
            limit: limits.max_message_bytes,
        }),
        (None, Some(_)) => Err(DecodeError::LineTooLong {
            limit: limits.max_line_bytes,
        }),
        (None, None) => Ok(()),
    }
}

fn is_version(v: &str) -> bool {
    v.len() > 4
        && v.as_bytes()[..4].eq_ignore_ascii_case(b"SIP/")
        && v[4..].split_once('.').is_some_and(|(a, b)| {
            !a.is_empty()
                && !b.is_empty()
                && a.bytes().all(|c| c.is_ascii_digit())
                && b.bytes().all(|c| c.is_ascii_digit())
        })
}

fn check_version(v: &str) -> Result<(), DecodeError> {
    if v.eq_ignore_ascii_case("SIP/2.0") {
        Ok(())
    } else if is_version(v) {
        Err(DecodeError::UnsupportedVersion {
            version: v.chars().take(16).collect(),
        })
    } else {
        Err(DecodeError::BadStartLine {
            reason: "bad SIP version",
        })
    }
}

fn parse_start_line(line: &[u8]) -> Result<StartLine, DecodeError> {
    let bad = |reason| DecodeError::BadStartLine { reason };
    let s = std::str::from_utf8(line).map_err(|_| bad("not UTF-8"))?;
    if s.chars().any(|c| c.is_control() && c != '\t') {
        return Err(bad("control character"));
    }
    if s.len() >= 4 && s.as_bytes()[..4].eq_ignore_ascii_case(b"SIP/") {
        let (version, rest) = s.split_once(' ').unwrap_or((s, ""));
        check_version(version)?;
        let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
        if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("bad status code"));
        }
        let code: u16 = code.parse().map_err(|_| bad("bad status code"))?;
        if !(100..=699).contains(&code) {
            return Err(bad("status code out of range"));
        }
        return Ok(StartLine::Response(code, reason.to_string()));
    }
    let mut parts = s.split(' ');
    let (Some(method), Some(uri), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad("expected method, Request-URI and version"));
    };
    if method.is_empty() || !method.bytes().all(is_token_char) {
        return Err(bad("bad method"));
    }
    check_version(version)?;
    let uri = Uri::parse(uri).map_err(|_| bad("bad Request-URI"))?;
    Ok(StartLine::Request(Method::parse(method), uri))
}

/// Adds one complete header line (or continuation) to `scan`; problems are deferred.
fn header_line(scan: &mut Scan, line: &[u8]) {
    let defer = |scan: &mut Scan, name: HeaderName, reason| {
        scan.deferred
            .get_or_insert(DecodeError::BadHeader { name, reason });
    };
    if matches!(line[0], b' ' | b'\t') {
        let Some(last) = scan.headers.last_mut() else {
            defer(
                scan,
                HeaderName::Other(String::new()),
                "continuation line first",
            );
            return;
        };
        let name = last.name.clone();
        match text(line) {
            Ok(t) => {
                last.value.push(' ');
                last.value.push_str(t.trim_matches([' ', '\t']));
                let v = last.value.trim_matches([' ', '\t']).to_string();
                last.value = v;
            }
            Err(reason) => defer(scan, name, reason),
        }
        return;
    }
    scan.header_lines += 1;
    let Some(colon) = line.iter().position(|&b| b == b':') else {
        defer(scan, HeaderName::Other(String::new()), "no colon");
        return;
    };
    let name = line[..colon].trim_ascii_end();
    if name.is_empty() || !name.iter().all(|&b| is_token_char(b)) {
        defer(scan, HeaderName::Other(String::new()), "bad header name");
        return;
    }
    // Token characters are ASCII.
    let name = HeaderName::parse(std::str::from_utf8(name).unwrap_or_default());
    match text(&line[colon + 1..]) {
        Ok(v) => scan.headers.push(Header {
            name,
            value: v.trim_matches([' ', '\t']).to_string(),
        }),
        Err(reason) => defer(scan, name, reason),
    }
}

/// Header text: UTF-8 without control characters other than tab.
fn text(b: &[u8]) -> Result<&str, &'static str> {
    let s = std::str::from_utf8(b).map_err(|_| "not UTF-8")?;
    if s.chars().any(|c| c.is_control() && c != '\t') {
        return Err("control character");
    }
    Ok(s)
}

/// Reads and removes the Content-Length headers.
fn content_length(headers: &mut Vec<Header>) -> Result<u64, DecodeError> {
    let mut found: Option<u64> = None;
    for h in headers
        .iter()
        .filter(|h| h.name == HeaderName::ContentLength)
    {
        let v = h.value.as_str();
        if v.is_empty() || v.len() > 19 || !v.bytes().all(|b| b.is_ascii_digit()) {
            return Err(DecodeError::BadContentLength);
        }
        let n: u64 = v.parse().map_err(|_| DecodeError::BadContentLength)?;
        if found.is_some_and(|f| f != n) {
            return Err(DecodeError::BadContentLength);
        }
        found = Some(n);
    }
    headers.retain(|h| h.name != HeaderName::ContentLength);
    found.ok_or(DecodeError::MissingContentLength)
}

#[cfg(test)]
pub(crate) mod samples;
#[cfg(test)]
mod tests;
