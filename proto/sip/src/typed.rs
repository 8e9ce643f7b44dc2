//! Typed views of the headers Herald needs: Via, From/To, Call-ID, CSeq, Max-Forwards,
//! Contact, Route/Record-Route, Expires, Event, Subscription-State, Content-Type,
//! Allow-Events, Supported, Require.
//!
//! Each type parses from a header value and prints back to one (`parse(x.to_string()) == x`).
//! The accessors on [`Headers`] return `Err(HeaderError)` naming the header when it is
//! missing (for mandatory ones) or malformed.

use std::fmt;

use crate::header::{is_token_char, HeaderName, Headers};
use crate::message::Method;
use crate::uri::{split_host_port, NameAddr, Params, UriError};

/// The branch magic cookie of RFC 3261 §8.1.1.7: every branch Herald makes starts with it.
pub const MAGIC_COOKIE: &str = "z9hG4bK";

/// A header that is missing or does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// The header is required here but absent.
    #[error("missing {0} header")]
    Missing(HeaderName),
    /// The header's value does not parse.
    #[error("invalid {name} header: {reason}")]
    Invalid {
        /// The header.
        name: HeaderName,
        /// What is wrong.
        reason: &'static str,
    },
}

impl HeaderError {
    /// The header concerned.
    pub fn name(&self) -> &HeaderName {
        match self {
            HeaderError::Missing(n) | HeaderError::Invalid { name: n, .. } => n,
        }
    }
}

fn invalid(name: HeaderName) -> impl Fn(UriError) -> HeaderError {
    move |e| HeaderError::Invalid {
        name: name.clone(),
        reason: e.0,
    }
}

fn bad(name: HeaderName, reason: &'static str) -> HeaderError {
    HeaderError::Invalid { name, reason }
}

/// One Via value (RFC 3261 §20.42): `SIP/2.0/TLS host:port;branch=…;received=…;rport`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via {
    /// The transport, uppercase as conventionally written (`TCP`, `TLS`, `UDP`, `WS`…).
    pub transport: String,
    /// The sent-by host.
    pub host: String,
    /// The sent-by port.
    pub port: Option<u16>,
    /// All parameters (`branch`, `received`, `rport`, `maddr`, `ttl`, …).
    pub params: Params,
}

impl Via {
    /// A Via for `transport` at `host:port` with a branch.
    pub fn new(transport: &str, host: &str, port: Option<u16>, branch: &str) -> Self {
        let mut params = Params::new();
        params.set("branch", Some(branch));
        Via {
            transport: transport.to_ascii_uppercase(),
            host: host.to_string(),
            port,
            params,
        }
    }

    /// Parses one Via value.
    pub fn parse(s: &str) -> Result<Via, HeaderError> {
        let e = |r| bad(HeaderName::Via, r);
        let s = s.trim();
        let (proto, rest) = s.split_once([' ', '\t']).ok_or(e("no sent-by"))?;
        let mut parts = proto.split('/').map(str::trim);
        let (Some(name), Some(version), Some(transport), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(e("bad sent-protocol"));
        };
        if !name.eq_ignore_ascii_case("SIP") || version != "2.0" {
            return Err(e("not SIP/2.0"));
        }
        if transport.is_empty() || !transport.bytes().all(is_token_char) {
            return Err(e("bad transport"));
        }
        let rest = rest.trim_start();
        let (sent_by, params) = match rest.find(';') {
            Some(i) => (rest[..i].trim(), &rest[i..]),
            None => (rest.trim(), ""),
        };
        let (host, port) = split_host_port(sent_by).map_err(|_| e("bad sent-by"))?;
        let params = Params::parse(params).map_err(|_| e("bad parameters"))?;
        if params.get("branch") == Some(None) {
            return Err(e("branch without a value"));
        }
        if let Some(Some(p)) = params.get("rport") {
            p.parse::<u16>().map_err(|_| e("bad rport"))?;
        }
        Ok(Via {
            transport: transport.to_string(),
            host: host.to_string(),
            port,
            params,
        })
    }

    /// The `branch` parameter.
    pub fn branch(&self) -> Option<&str> {
        self.params.value("branch")
    }

    /// The `received` parameter.
    pub fn received(&self) -> Option<&str> {
        self.params.value("received")
    }

    /// `rport`: `None` if absent, `Some(None)` if requested (no value), `Some(Some(p))` if
    /// filled in.
    pub fn rport(&self) -> Option<Option<u16>> {
        self.params
            .get("rport")
            .map(|v| v.and_then(|p| p.parse().ok()))
    }

    /// `host[:port]` as written in the Via.
    pub fn sent_by(&self) -> String {
        match self.port {
            Some(p) => format!("{}:{p}", self.host),
            None => self.host.clone(),
        }
    }

    /// Whether the branch carries the RFC 3261 magic cookie (transactions can then be
    /// matched by branch alone, §17.1.3 / §17.2.3).
    pub fn is_rfc3261(&self) -> bool {
        self.branch().is_some_and(|b| b.starts_with(MAGIC_COOKIE))
    }
}

impl fmt::Display for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SIP/2.0/{} {}", self.transport, self.sent_by())?;
        write!(f, "{}", self.params)
    }
}

/// A CSeq value (RFC 3261 §20.16).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CSeq {
    /// The sequence number (< 2^31).
    pub seq: u32,
    /// The method.
    pub method: Method,
}

impl CSeq {
    /// Parses `1234 INVITE`.
    pub fn parse(s: &str) -> Result<CSeq, HeaderError> {
        let e = |r| bad(HeaderName::CSeq, r);
        let mut it = s.split_ascii_whitespace();
        let (Some(n), Some(m), None) = (it.next(), it.next(), it.next()) else {
            return Err(e("expected number and method"));
        };
        let seq = parse_u32(n)
            .filter(|v| *v < 1 << 31)
            .ok_or(e("bad number"))?;
        if !m.bytes().all(is_token_char) {
            return Err(e("bad method"));
        }
        Ok(CSeq {
            seq,
            method: Method::parse(m),
        })
    }
}

impl fmt::Display for CSeq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.seq, self.method)
    }
}

/// A decimal of at most 10 digits that fits a u32.
fn parse_u32(s: &str) -> Option<u32> {
    if s.is_empty() || s.len() > 10 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// An Event value (RFC 6665 §8.2.1): `presence;id=abc`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The event package (`presence`, `presence.winfo`, …), as written.
    pub package: String,
    /// Parameters (`id`, …).
    pub params: Params,
}

impl Event {
    /// Parses an Event value.
    pub fn parse(s: &str) -> Result<Event, HeaderError> {
        let s = s.trim();
        let (pkg, params) = match s.find(';') {
            Some(i) => (s[..i].trim(), &s[i..]),
            None => (s, ""),
        };
        if pkg.is_empty() || !pkg.bytes().all(is_token_char) {
            return Err(bad(HeaderName::Event, "bad event package"));
        }
        Ok(Event {
            package: pkg.to_string(),
            params: Params::parse(params).map_err(invalid(HeaderName::Event))?,
        })
    }

    /// The `id` parameter.
    pub fn id(&self) -> Option<&str> {
        self.params.value("id")
    }

    /// Whether the package is `name` (case-insensitively).
    pub fn is(&self, name: &str) -> bool {
        self.package.eq_ignore_ascii_case(name)
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.package, self.params)
    }
}

/// The state in a Subscription-State header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubState {
    /// `active`.
    Active,
    /// `pending`.
    Pending,
    /// `terminated`.
    Terminated,
    /// An extension value, as written.
    Other(String),
}

/// A Subscription-State value (RFC 6665 §8.2.3): `active;expires=3600`,
/// `terminated;reason=timeout`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionState {
    /// The state.
    pub state: SubState,
    /// Parameters (`expires`, `reason`, `retry-after`).
    pub params: Params,
}

impl SubscriptionState {
    /// A state with an optional `expires` (active, pending) or `reason` (terminated).
    pub fn new(state: SubState, expires: Option<u32>, reason: Option<&str>) -> Self {
        let mut params = Params::new();
        if let Some(e) = expires {
            params.set("expires", Some(e.to_string()));
        }
        if let Some(r) = reason {
            params.set("reason", Some(r));
        }
        SubscriptionState { state, params }
    }

    /// Parses a Subscription-State value.
    pub fn parse(s: &str) -> Result<SubscriptionState, HeaderError> {
        let name = HeaderName::SubscriptionState;
        let s = s.trim();
        let (st, params) = match s.find(';') {
            Some(i) => (s[..i].trim(), &s[i..]),
            None => (s, ""),
        };
        let state = match st.to_ascii_lowercase().as_str() {
            "active" => SubState::Active,
            "pending" => SubState::Pending,
            "terminated" => SubState::Terminated,
            _ if !st.is_empty() && st.bytes().all(is_token_char) => SubState::Other(st.into()),
            _ => return Err(bad(name, "bad state")),
        };
        let params = Params::parse(params).map_err(invalid(name.clone()))?;
        for p in ["expires", "retry-after"] {
            if let Some(v) = params.get(p) {
                v.and_then(parse_u32)
                    .ok_or(bad(name.clone(), "bad delta-seconds"))?;
            }
        }
        Ok(SubscriptionState { state, params })
    }

    /// The `expires` parameter.
    pub fn expires(&self) -> Option<u32> {
        self.params.value("expires").and_then(parse_u32)
    }

    /// The `reason` parameter.
    pub fn reason(&self) -> Option<&str> {
        self.params.value("reason")
    }

    /// The `retry-after` parameter.
    pub fn retry_after(&self) -> Option<u32> {
        self.params.value("retry-after").and_then(parse_u32)
    }
}

impl fmt::Display for SubscriptionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match &self.state {
            SubState::Active => "active",
            SubState::Pending => "pending",
            SubState::Terminated => "terminated",
            SubState::Other(s) => s,
        };
        write!(f, "{s}{}", self.params)
    }
}

/// A Content-Type value: `application/pidf+xml;charset=utf-8`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentType {
    /// The type, lowercased (`application`).
    pub kind: String,
    /// The subtype, lowercased (`pidf+xml`).
    pub subtype: String,
    /// Parameters.
    pub params: Params,
}

impl ContentType {
    /// Parses a media type.
    pub fn parse(s: &str) -> Result<ContentType, HeaderError> {
        let name = HeaderName::ContentType;
        let s = s.trim();
        let (media, params) = match s.find(';') {
            Some(i) => (s[..i].trim(), &s[i..]),
            None => (s, ""),
        };
        let (k, st) = media
            .split_once('/')
            .ok_or(bad(name.clone(), "no subtype"))?;
        let (k, st) = (k.trim(), st.trim());
        let tok = |t: &str| !t.is_empty() && t.bytes().all(is_token_char);
        if !tok(k) || !tok(st) {
            return Err(bad(name, "bad media type"));
        }
        Ok(ContentType {
            kind: k.to_ascii_lowercase(),
            subtype: st.to_ascii_lowercase(),
            params: Params::parse(params).map_err(invalid(name))?,
        })
    }

    /// Whether this is `kind/subtype` (given lowercase).
    pub fn is(&self, media: &str) -> bool {
        media.split_once('/') == Some((self.kind.as_str(), self.subtype.as_str()))
    }
}

impl fmt::Display for ContentType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}{}", self.kind, self.subtype, self.params)
    }
}

impl Headers {
    fn one(&self, name: HeaderName) -> Result<&str, HeaderError> {
        self.get(&name).ok_or(HeaderError::Missing(name))
    }

    fn name_addr(&self, name: HeaderName) -> Result<NameAddr, HeaderError> {
        NameAddr::parse(self.one(name.clone())?).map_err(invalid(name))
    }

    fn name_addrs(&self, name: HeaderName) -> Result<Vec<NameAddr>, HeaderError> {
        self.values(&name)
            .map(|v| NameAddr::parse(v).map_err(invalid(name.clone())))
            .collect()
    }

    fn tokens(&self, name: HeaderName) -> Vec<&str> {
        self.values(&name).collect()
    }

    /// All Via values, top first.
    pub fn vias(&self) -> Result<Vec<Via>, HeaderError> {
        self.values(&HeaderName::Via).map(Via::parse).collect()
    }

    /// The top Via.
    pub fn top_via(&self) -> Result<Via, HeaderError> {
        let v = self
            .values(&HeaderName::Via)
            .next()
            .ok_or(HeaderError::Missing(HeaderName::Via))?;
        Via::parse(v)
    }

    /// From.
    pub fn from(&self) -> Result<NameAddr, HeaderError> {
        self.name_addr(HeaderName::From)
    }

    /// To.
    pub fn to(&self) -> Result<NameAddr, HeaderError> {
        self.name_addr(HeaderName::To)
    }

    /// Call-ID.
    pub fn call_id(&self) -> Result<&str, HeaderError> {
        self.one(HeaderName::CallId)
    }

    /// CSeq.
    pub fn cseq(&self) -> Result<CSeq, HeaderError> {
        CSeq::parse(self.one(HeaderName::CSeq)?)
    }

    /// Max-Forwards, if present.
    pub fn max_forwards(&self) -> Result<Option<u32>, HeaderError> {
        self.get(&HeaderName::MaxForwards)
            .map(|v| parse_u32(v.trim()).ok_or(bad(HeaderName::MaxForwards, "not a number")))
            .transpose()
    }

    /// Expires, if present.
    pub fn expires(&self) -> Result<Option<u32>, HeaderError> {
        self.get(&HeaderName::Expires)
            .map(|v| parse_u32(v.trim()).ok_or(bad(HeaderName::Expires, "not delta-seconds")))
            .transpose()
    }

    /// Contact values (a `*` Contact is an error here; Herald does not do REGISTER).
    pub fn contacts(&self) -> Result<Vec<NameAddr>, HeaderError> {
        self.name_addrs(HeaderName::Contact)
    }

    /// Route values, first first.
    pub fn routes(&self) -> Result<Vec<NameAddr>, HeaderError> {
        self.name_addrs(HeaderName::Route)
    }

    /// Record-Route values, first first.
    pub fn record_routes(&self) -> Result<Vec<NameAddr>, HeaderError> {
        self.name_addrs(HeaderName::RecordRoute)
    }

    /// Event, if present.
    pub fn event(&self) -> Result<Option<Event>, HeaderError> {
        self.get(&HeaderName::Event).map(Event::parse).transpose()
    }

    /// Subscription-State, if present.
    pub fn subscription_state(&self) -> Result<Option<SubscriptionState>, HeaderError> {
        self.get(&HeaderName::SubscriptionState)
            .map(SubscriptionState::parse)
            .transpose()
    }

    /// Content-Type, if present.
    pub fn content_type(&self) -> Result<Option<ContentType>, HeaderError> {
        self.get(&HeaderName::ContentType)
            .map(ContentType::parse)
            .transpose()
    }

    /// Allow-Events tokens.
    pub fn allow_events(&self) -> Vec<&str> {
        self.tokens(HeaderName::AllowEvents)
    }

    /// Supported option tags.
    pub fn supported(&self) -> Vec<&str> {
        self.tokens(HeaderName::Supported)
    }

    /// Require option tags.
    pub fn require(&self) -> Vec<&str> {
        self.tokens(HeaderName::Require)
    }
}
