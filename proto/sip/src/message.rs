//! The message model (RFC 3261 §7): requests, responses, methods, status codes, and their
//! serialization.
//!
//! A decoded message never holds a `Content-Length` header: on a stream it is framing, which
//! the decoder consumes and the encoder writes from the body's length, so the two can never
//! disagree. Header names are written in their full canonical form.

use std::fmt;

use crate::header::{HeaderName, Headers};
use crate::uri::Uri;

/// A request method. Extension methods are kept as written (methods are case-sensitive).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    /// INVITE.
    Invite,
    /// ACK.
    Ack,
    /// BYE.
    Bye,
    /// CANCEL.
    Cancel,
    /// OPTIONS.
    Options,
    /// REGISTER.
    Register,
    /// SUBSCRIBE (RFC 6665).
    Subscribe,
    /// NOTIFY (RFC 6665).
    Notify,
    /// MESSAGE (RFC 3428).
    Message,
    /// INFO (RFC 6086).
    Info,
    /// PRACK (RFC 3262).
    Prack,
    /// UPDATE (RFC 3311).
    Update,
    /// REFER (RFC 3515).
    Refer,
    /// PUBLISH (RFC 3903).
    Publish,
    /// Any other token.
    Other(String),
}

const METHODS: &[(Method, &str)] = &[
    (Method::Invite, "INVITE"),
    (Method::Ack, "ACK"),
    (Method::Bye, "BYE"),
    (Method::Cancel, "CANCEL"),
    (Method::Options, "OPTIONS"),
    (Method::Register, "REGISTER"),
    (Method::Subscribe, "SUBSCRIBE"),
    (Method::Notify, "NOTIFY"),
    (Method::Message, "MESSAGE"),
    (Method::Info, "INFO"),
    (Method::Prack, "PRACK"),
    (Method::Update, "UPDATE"),
    (Method::Refer, "REFER"),
    (Method::Publish, "PUBLISH"),
];

impl Method {
    /// The method for a token (the caller checks it is a token).
    pub fn parse(s: &str) -> Method {
        METHODS
            .iter()
            .find(|(_, name)| *name == s)
            .map(|(m, _)| m.clone())
            .unwrap_or_else(|| Method::Other(s.to_string()))
    }

    /// The method name.
    pub fn as_str(&self) -> &str {
        match self {
            Method::Other(s) => s,
            known => METHODS
                .iter()
                .find(|(m, _)| m == known)
                .map(|(_, n)| *n)
                .unwrap_or(""),
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The standard reason phrase of a status code (RFC 3261 §21 and extensions), or "Unknown".
pub fn default_reason(code: u16) -> &'static str {
    match code {
        100 => "Trying",
        180 => "Ringing",
        181 => "Call Is Being Forwarded",
        182 => "Queued",
        183 => "Session Progress",
        200 => "OK",
        202 => "Accepted",
        204 => "No Notification",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Moved Temporarily",
        305 => "Use Proxy",
        380 => "Alternative Service",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        410 => "Gone",
        413 => "Request Entity Too Large",
        414 => "Request-URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Unsupported URI Scheme",
        420 => "Bad Extension",
        421 => "Extension Required",
        423 => "Interval Too Brief",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        482 => "Loop Detected",
        483 => "Too Many Hops",
        484 => "Address Incomplete",
        485 => "Ambiguous",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        489 => "Bad Event",
        491 => "Request Pending",
        493 => "Undecipherable",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Server Time-out",
        505 => "Version Not Supported",
        513 => "Message Too Large",
        600 => "Busy Everywhere",
        603 => "Decline",
        604 => "Does Not Exist Anywhere",
        606 => "Not Acceptable",
        _ => "Unknown",
    }
}

/// A request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The method.
    pub method: Method,
    /// The Request-URI.
    pub uri: Uri,
    /// Headers in order (never `Content-Length`).
    pub headers: Headers,
    /// The body.
    pub body: Vec<u8>,
}

impl Request {
    /// A request without headers or body.
    pub fn new(method: Method, uri: impl Into<Uri>) -> Self {
        Request {
            method,
            uri: uri.into(),
            headers: Headers::new(),
            body: Vec::new(),
        }
    }

    /// Builder: appends a header.
    pub fn header(mut self, name: impl Into<HeaderName>, value: impl Into<String>) -> Self {
        self.headers.push(name, value);
        self
    }

    /// Builder: sets the body and its `Content-Type`.
    pub fn with_body(mut self, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        self.headers.set(HeaderName::ContentType, content_type);
        self.body = body.into();
        self
    }
}

/// A response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code, 100–699.
    pub status: u16,
    /// The reason phrase.
    pub reason: String,
    /// Headers in order (never `Content-Length`).
    pub headers: Headers,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// A response with the default reason phrase and no headers.
    pub fn new(status: u16) -> Self {
        Response {
            status,
            reason: default_reason(status).to_string(),
            headers: Headers::new(),
            body: Vec::new(),
        }
    }

    /// The response a UAS or proxy builds for `req` (RFC 3261 §8.2.6.2): Via (all values, in
    /// order), From, To, Call-ID and CSeq copied; the TU adds a To tag when it needs one. Works
    /// on a request the decoder rejected too, copying whatever of those headers it has.
    pub fn for_request(req: &Request, status: u16, reason: Option<&str>) -> Self {
        let mut resp = Response::new(status);
        if let Some(r) = reason {
            resp.reason = r.to_string();
        }
        for h in req.headers.iter() {
            if matches!(
                h.name,
                HeaderName::Via
                    | HeaderName::From
                    | HeaderName::To
                    | HeaderName::CallId
                    | HeaderName::CSeq
            ) {
                resp.headers.push(h.name.clone(), h.value.clone());
            }
        }
        resp
    }

    /// Builder: appends a header.
    pub fn header(mut self, name: impl Into<HeaderName>, value: impl Into<String>) -> Self {
        self.headers.push(name, value);
        self
    }

    /// 1xx.
    pub fn is_provisional(&self) -> bool {
        self.status < 200
    }

    /// 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// 200–699.
    pub fn is_final(&self) -> bool {
        self.status >= 200
    }
}

/// A request or a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A request.
    Request(Request),
    /// A response.
    Response(Response),
}

impl Message {
    /// The headers.
    pub fn headers(&self) -> &Headers {
        match self {
            Message::Request(r) => &r.headers,
            Message::Response(r) => &r.headers,
        }
    }

    /// The headers, mutably.
    pub fn headers_mut(&mut self) -> &mut Headers {
        match self {
            Message::Request(r) => &mut r.headers,
            Message::Response(r) => &mut r.headers,
        }
    }

    /// The body.
    pub fn body(&self) -> &[u8] {
        match self {
            Message::Request(r) => &r.body,
            Message::Response(r) => &r.body,
        }
    }

    /// The request, if this is one.
    pub fn as_request(&self) -> Option<&Request> {
        match self {
            Message::Request(r) => Some(r),
            Message::Response(_) => None,
        }
    }

    /// The response, if this is one.
    pub fn as_response(&self) -> Option<&Response> {
        match self {
            Message::Response(r) => Some(r),
            Message::Request(_) => None,
        }
    }

    /// The wire form: start line, headers (full names, any `Content-Length` header dropped),
    /// `Content-Length` from the body, blank line, body.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(512 + self.body().len());
        self.encode_into(&mut out);
        out
    }

    /// Appends the wire form to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        use std::io::Write;
        // Writing to a Vec cannot fail.
        let _ = match self {
            Message::Request(r) => write!(out, "{} {} SIP/2.0\r\n", r.method, r.uri),
            Message::Response(r) => write!(out, "SIP/2.0 {} {}\r\n", r.status, r.reason),
        };
        for h in self.headers() {
            if h.name == HeaderName::ContentLength {
                continue;
            }
            out.extend_from_slice(h.name.as_str().as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(h.value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        let _ = write!(out, "Content-Length: {}\r\n\r\n", self.body().len());
        out.extend_from_slice(self.body());
    }
}

impl From<Request> for Message {
    fn from(r: Request) -> Self {
        Message::Request(r)
    }
}

impl From<Response> for Message {
    fn from(r: Response) -> Self {
        Message::Response(r)
    }
}
