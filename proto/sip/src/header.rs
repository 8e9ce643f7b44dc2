//! Header names (with the compact forms of RFC 3261 §7.3.3 and later RFCs) and the ordered
//! header list of a message.
//!
//! Values are kept as text, unfolded and trimmed; typed views live in [`crate::typed`]. Headers
//! that RFC 3261 §7.3.1 allows to be combined with commas ([`HeaderName::is_list`]) are split on
//! demand by [`Headers::values`], so `Via: a, b` and two `Via` lines read the same.

use std::fmt;

use crate::uri::split_outside_quotes;

macro_rules! header_names {
    ($( $(#[$doc:meta])* $variant:ident = $canon:literal, $compact:expr, $list:literal; )*) => {
        /// A header name. Known names are variants (compact forms parse to them); anything
        /// else is kept as written in [`HeaderName::Other`].
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub enum HeaderName {
            $( $(#[$doc])* $variant, )*
            /// A header this crate has no variant for, as written.
            Other(String),
        }

        const KNOWN: &[(HeaderName, &str, Option<u8>, bool)] = &[
            $( (HeaderName::$variant, $canon, $compact, $list), )*
        ];

        impl HeaderName {
            /// The canonical spelling (used when serializing).
            pub fn as_str(&self) -> &str {
                match self {
                    $( HeaderName::$variant => $canon, )*
                    HeaderName::Other(s) => s,
                }
            }
        }
    };
}

header_names! {
    /// `Accept`.
    Accept = "Accept", None, true;
    /// `Accept-Contact` (`a`, RFC 3841).
    AcceptContact = "Accept-Contact", Some(b'a'), true;
    /// `Accept-Encoding`.
    AcceptEncoding = "Accept-Encoding", None, true;
    /// `Accept-Language`.
    AcceptLanguage = "Accept-Language", None, true;
    /// `Allow`.
    Allow = "Allow", None, true;
    /// `Allow-Events` (`u`, RFC 6665).
    AllowEvents = "Allow-Events", Some(b'u'), true;
    /// `Authorization`.
    Authorization = "Authorization", None, false;
    /// `Call-ID` (`i`).
    CallId = "Call-ID", Some(b'i'), false;
    /// `Contact` (`m`).
    Contact = "Contact", Some(b'm'), true;
    /// `Content-Disposition`.
    ContentDisposition = "Content-Disposition", None, false;
    /// `Content-Encoding` (`e`).
    ContentEncoding = "Content-Encoding", Some(b'e'), true;
    /// `Content-Language`.
    ContentLanguage = "Content-Language", None, true;
    /// `Content-Length` (`l`). The decoder consumes it; the encoder writes it.
    ContentLength = "Content-Length", Some(b'l'), false;
    /// `Content-Type` (`c`).
    ContentType = "Content-Type", Some(b'c'), false;
    /// `CSeq`.
    CSeq = "CSeq", None, false;
    /// `Date`.
    Date = "Date", None, false;
    /// `Event` (`o`, RFC 6665).
    Event = "Event", Some(b'o'), false;
    /// `Expires`.
    Expires = "Expires", None, false;
    /// `From` (`f`).
    From = "From", Some(b'f'), false;
    /// `Identity` (`y`, RFC 8224).
    Identity = "Identity", Some(b'y'), false;
    /// `Max-Forwards`.
    MaxForwards = "Max-Forwards", None, false;
    /// `Min-Expires`.
    MinExpires = "Min-Expires", None, false;
    /// `Proxy-Authenticate`.
    ProxyAuthenticate = "Proxy-Authenticate", None, false;
    /// `Proxy-Authorization`.
    ProxyAuthorization = "Proxy-Authorization", None, false;
    /// `Proxy-Require`.
    ProxyRequire = "Proxy-Require", None, true;
    /// `Record-Route`.
    RecordRoute = "Record-Route", None, true;
    /// `Refer-To` (`r`, RFC 3515).
    ReferTo = "Refer-To", Some(b'r'), false;
    /// `Referred-By` (`b`, RFC 3892).
    ReferredBy = "Referred-By", Some(b'b'), false;
    /// `Reject-Contact` (`j`, RFC 3841).
    RejectContact = "Reject-Contact", Some(b'j'), true;
    /// `Request-Disposition` (`d`, RFC 3841).
    RequestDisposition = "Request-Disposition", Some(b'd'), true;
    /// `Require`.
    Require = "Require", None, true;
    /// `Retry-After`.
    RetryAfter = "Retry-After", None, false;
    /// `Route`.
    Route = "Route", None, true;
    /// `Server`.
    Server = "Server", None, false;
    /// `Session-Expires` (`x`, RFC 4028).
    SessionExpires = "Session-Expires", Some(b'x'), false;
    /// `Subject` (`s`).
    Subject = "Subject", Some(b's'), false;
    /// `Subscription-State` (RFC 6665).
    SubscriptionState = "Subscription-State", None, false;
    /// `Supported` (`k`).
    Supported = "Supported", Some(b'k'), true;
    /// `Timestamp`.
    Timestamp = "Timestamp", None, false;
    /// `To` (`t`).
    To = "To", Some(b't'), false;
    /// `Unsupported`.
    Unsupported = "Unsupported", None, true;
    /// `User-Agent`.
    UserAgent = "User-Agent", None, false;
    /// `Via` (`v`).
    Via = "Via", Some(b'v'), true;
    /// `Warning`.
    Warning = "Warning", None, true;
    /// `WWW-Authenticate`.
    WwwAuthenticate = "WWW-Authenticate", None, false;
}

impl HeaderName {
    /// The name for `s` (full or compact form, any case). `s` must be a token; the decoder
    /// checks that before calling this.
    pub fn parse(s: &str) -> HeaderName {
        if let [c] = s.as_bytes() {
            let c = c.to_ascii_lowercase();
            if let Some((n, ..)) = KNOWN.iter().find(|k| k.2 == Some(c)) {
                return n.clone();
            }
        }
        match KNOWN.iter().find(|k| k.1.eq_ignore_ascii_case(s)) {
            Some((n, ..)) => n.clone(),
            None => HeaderName::Other(s.to_string()),
        }
    }

    /// The compact form, if the header has one.
    pub fn compact(&self) -> Option<char> {
        KNOWN
            .iter()
            .find(|k| &k.0 == self)
            .and_then(|k| k.2)
            .map(char::from)
    }

    /// Whether RFC 3261 §7.3.1 allows several values in one line, separated by commas.
    pub fn is_list(&self) -> bool {
        KNOWN.iter().any(|k| &k.0 == self && k.3)
    }

    /// Case-insensitive comparison with a spelled name (full or compact).
    pub fn is(&self, name: &str) -> bool {
        match self {
            HeaderName::Other(s) => s.eq_ignore_ascii_case(name),
            known => known == &HeaderName::parse(name),
        }
    }
}

impl fmt::Display for HeaderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<&str> for HeaderName {
    fn from(s: &str) -> Self {
        HeaderName::parse(s)
    }
}

/// Whether `b` may appear in a header name (RFC 3261 `token`).
pub(crate) fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b)
}

/// One header line: name and its unfolded, trimmed value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The name.
    pub name: HeaderName,
    /// The value.
    pub value: String,
}

/// The headers of a message, in order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Headers(Vec<Header>);

impl Headers {
    /// No headers.
    pub fn new() -> Self {
        Headers(Vec::new())
    }

    /// Appends a header line.
    pub fn push(&mut self, name: impl Into<HeaderName>, value: impl Into<String>) {
        self.0.push(Header {
            name: name.into(),
            value: value.into(),
        });
    }

    /// Inserts a header line before all others (a proxy's new top Via or Record-Route).
    pub fn push_front(&mut self, name: impl Into<HeaderName>, value: impl Into<String>) {
        self.0.insert(
            0,
            Header {
                name: name.into(),
                value: value.into(),
            },
        );
    }

    /// Replaces every line of `name` with one line (appended if there was none).
    pub fn set(&mut self, name: impl Into<HeaderName>, value: impl Into<String>) {
        let name = name.into();
        let value = value.into();
        match self.0.iter().position(|h| h.name == name) {
            Some(i) => {
                self.0[i].value = value;
                let mut seen = false;
                self.0.retain(|h| {
                    if h.name != name {
                        return true;
                    }
                    let keep = !seen;
                    seen = true;
                    keep
                });
            }
            None => self.push(name, value),
        }
    }

    /// Removes every line of `name`; returns how many there were.
    pub fn remove(&mut self, name: &HeaderName) -> usize {
        let before = self.0.len();
        self.0.retain(|h| &h.name != name);
        before - self.0.len()
    }

    /// The first line's value of `name`.
    pub fn get(&self, name: &HeaderName) -> Option<&str> {
        self.0
            .iter()
            .find(|h| &h.name == name)
            .map(|h| h.value.as_str())
    }

    /// Every line's value of `name`, unsplit.
    pub fn get_all(&self, name: &HeaderName) -> impl Iterator<Item = &str> + '_ {
        let name = name.clone();
        self.0
            .iter()
            .filter(move |h| h.name == name)
            .map(|h| h.value.as_str())
    }

    /// Every value of `name`: for list headers each comma-separated item of each line
    /// (commas inside quotes and `<…>` do not split), otherwise each line.
    pub fn values(&self, name: &HeaderName) -> impl Iterator<Item = &str> + '_ {
        let list = name.is_list();
        self.get_all(name).flat_map(move |v| {
            if list {
                split_outside_quotes(v, b',')
                    .into_iter()
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .collect::<Vec<_>>()
            } else {
                vec![v]
            }
        })
    }

    /// How many lines carry `name`.
    pub fn count(&self, name: &HeaderName) -> usize {
        self.0.iter().filter(|h| &h.name == name).count()
    }

    /// Whether any line carries `name`.
    pub fn contains(&self, name: &HeaderName) -> bool {
        self.0.iter().any(|h| &h.name == name)
    }

    /// All lines in order.
    pub fn iter(&self) -> std::slice::Iter<'_, Header> {
        self.0.iter()
    }

    /// Number of lines.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no lines.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Removes and returns the first value of `name` (for a list header the first
    /// comma-separated item, the rest of its line stays): a proxy popping a Route.
    pub fn pop_first_value(&mut self, name: &HeaderName) -> Option<String> {
        let i = self.0.iter().position(|h| &h.name == name)?;
        if name.is_list() {
            let parts = split_outside_quotes(&self.0[i].value, b',');
            if parts.len() > 1 {
                let first = parts[0].trim().to_string();
                let rest = parts[1..].join(",").trim().to_string();
                self.0[i].value = rest;
                return Some(first);
            }
        }
        Some(self.0.remove(i).value)
    }
}

impl<'a> IntoIterator for &'a Headers {
    type Item = &'a Header;
    type IntoIter = std::slice::Iter<'a, Header>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}
