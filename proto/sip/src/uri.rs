//! SIP URIs (RFC 3261 §19.1), other URIs, parameters and name-addr values (From, To,
//! Contact, Route, Record-Route).
//!
//! Parsing keeps the text of every part as written (escapes are not decoded), so that
//! `parse(x.to_string()) == x` for every parsed value. Comparisons the RFC asks to be
//! case-insensitive (scheme, host, parameter names) are offered by methods, not by `==`.

use std::fmt;

/// Why a URI or name-addr did not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid URI: {0}")]
pub struct UriError(pub &'static str);

/// `;name[=value]` parameters, in order. Names compare case-insensitively.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Params(Vec<(String, Option<String>)>);

impl Params {
    /// No parameters.
    pub fn new() -> Self {
        Params(Vec::new())
    }

    /// The value of `name`: `None` if absent, `Some(None)` if present without a value.
    pub fn get(&self, name: &str) -> Option<Option<&str>> {
        self.0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_deref())
    }

    /// The value of `name` if it is present with a value.
    pub fn value(&self, name: &str) -> Option<&str> {
        self.get(name).flatten()
    }

    /// Whether `name` is present (with or without a value).
    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Sets `name` (replacing an existing one in place, else appending).
    pub fn set(&mut self, name: impl Into<String>, value: Option<impl Into<String>>) {
        let name = name.into();
        let value = value.map(Into::into);
        match self
            .0
            .iter_mut()
            .find(|(k, _)| k.eq_ignore_ascii_case(&name))
        {
            Some(slot) => slot.1 = value,
            None => self.0.push((name, value)),
        }
    }

    /// Removes `name`; returns whether it was present.
    pub fn remove(&mut self, name: &str) -> bool {
        let before = self.0.len();
        self.0.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
        before != self.0.len()
    }

    /// All parameters in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, Option<&str>)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_deref()))
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Parses `;a=b;c` (the leading `;` included). Values may be quoted strings (kept with
    /// their quotes). Whitespace around `;` and `=` is allowed and dropped.
    pub fn parse(s: &str) -> Result<Params, UriError> {
        let mut out = Params::new();
        let s = s.trim();
        if s.is_empty() {
            return Ok(out);
        }
        let Some(rest) = s.strip_prefix(';') else {
            return Err(UriError("parameters must start with ';'"));
        };
        for part in split_outside_quotes(rest, b';') {
            let part = part.trim();
            let (name, value) = match part.split_once('=') {
                Some((n, v)) => (n.trim(), Some(v.trim())),
                None => (part, None),
            };
            if name.is_empty() || !name.bytes().all(is_param_char) {
                return Err(UriError("bad parameter name"));
            }
            if let Some(v) = value {
                let ok = if v.starts_with('"') {
                    quoted_len(v) == Some(v.len())
                } else {
                    !v.is_empty()
                        && v.bytes()
                            .all(|b| is_param_char(b) || b == b'[' || b == b']')
                };
                if !ok {
                    return Err(UriError("bad parameter value"));
                }
            }
            out.0.push((name.to_string(), value.map(str::to_string)));
        }
        Ok(out)
    }
}

impl fmt::Display for Params {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (k, v) in &self.0 {
            match v {
                Some(v) => write!(f, ";{k}={v}")?,
                None => write!(f, ";{k}")?,
            }
        }
        Ok(())
    }
}

/// Characters of parameter names and unquoted values (token characters plus what SIP URI
/// parameters allow: `:`, `/`, `&`, `+`, `$`, `%` escapes).
fn is_param_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-_.!~*'()%:/&+$`".contains(&b)
}

/// The length of the quoted string at the start of `s` (quotes included), if it is closed.
pub(crate) fn quoted_len(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    if b.first() != Some(&b'"') {
        return None;
    }
    let mut i = 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// Splits on `sep` outside double quotes and angle brackets.
pub(crate) fn split_outside_quotes(s: &str, sep: u8) -> Vec<&str> {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let (mut start, mut i, mut quoted, mut angle) = (0, 0, false, false);
    while i < b.len() {
        match b[i] {
            b'\\' if quoted => i += 1,
            b'"' => quoted = !quoted,
            b'<' if !quoted => angle = true,
            b'>' if !quoted => angle = false,
            c if c == sep && !quoted && !angle => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    out.push(&s[start..]);
    out
}

/// A `sip:` or `sips:` URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipUri {
    /// `sips:` rather than `sip:`.
    pub secure: bool,
    /// The userinfo before `@` as written (escapes kept; a `:password` is kept too).
    pub user: Option<String>,
    /// Host name, IPv4 address or bracketed IPv6 reference, as written.
    pub host: String,
    /// Port, if given.
    pub port: Option<u16>,
    /// URI parameters (`transport`, `lr`, `maddr`, `user`, …).
    pub params: Params,
    /// The `?headers` part without the `?`, as written.
    pub headers: Option<String>,
}

impl SipUri {
    /// `sip:user@host` (or `sip:host` without a user).
    pub fn new(user: Option<&str>, host: impl Into<String>) -> Self {
        SipUri {
            secure: false,
            user: user.map(str::to_string),
            host: host.into(),
            port: None,
            params: Params::new(),
            headers: None,
        }
    }

    /// Parses a SIP or SIPS URI.
    pub fn parse(s: &str) -> Result<SipUri, UriError> {
        let (secure, rest) = if let Some(r) = strip_prefix_ci(s, "sips:") {
            (true, r)
        } else if let Some(r) = strip_prefix_ci(s, "sip:") {
            (false, r)
        } else {
            return Err(UriError("not a sip: or sips: URI"));
        };
        if rest
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control() || b"<>\"".contains(&b))
        {
            return Err(UriError("forbidden character"));
        }
        let (user, rest) = match rest.find('@') {
            Some(0) => return Err(UriError("empty user")),
            Some(at) => (Some(rest[..at].to_string()), &rest[at + 1..]),
            None => (None, rest),
        };
        let (rest, headers) = match rest.split_once('?') {
            Some((r, h)) => (r, Some(h.to_string())),
            None => (rest, None),
        };
        let (hostport, params) = match rest.find(';') {
            Some(i) => (&rest[..i], Params::parse(&rest[i..])?),
            None => (rest, Params::new()),
        };
        let (host, port) = split_host_port(hostport)?;
        Ok(SipUri {
            secure,
            user,
            host: host.to_string(),
            port,
            params,
            headers,
        })
    }

    /// The user part without a `:password`.
    pub fn user_name(&self) -> Option<&str> {
        self.user
            .as_deref()
            .map(|u| u.split(':').next().unwrap_or(u))
    }

    /// `user@host` (or `host`), the address-of-record form used for policy decisions.
    pub fn aor(&self) -> String {
        match self.user_name() {
            Some(u) => format!("{u}@{}", self.host),
            None => self.host.clone(),
        }
    }

    /// The `transport` parameter, lowercased.
    pub fn transport(&self) -> Option<String> {
        self.params.value("transport").map(str::to_ascii_lowercase)
    }

    /// Whether the `lr` (loose routing) parameter is present.
    pub fn lr(&self) -> bool {
        self.params.has("lr")
    }

    /// Whether the host matches `host` (case-insensitively).
    pub fn host_is(&self, host: &str) -> bool {
        self.host.eq_ignore_ascii_case(host)
    }
}

impl fmt::Display for SipUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.secure { "sips:" } else { "sip:" })?;
        if let Some(u) = &self.user {
            write!(f, "{u}@")?;
        }
        f.write_str(&self.host)?;
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        write!(f, "{}", self.params)?;
        if let Some(h) = &self.headers {
            write!(f, "?{h}")?;
        }
        Ok(())
    }
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

/// Splits `host[:port]`, checking the host's characters.
pub(crate) fn split_host_port(s: &str) -> Result<(&str, Option<u16>), UriError> {
    let (host, port) = if s.starts_with('[') {
        let end = s.find(']').ok_or(UriError("unclosed IPv6 reference"))?;
        let inner = &s[1..end];
        if inner.is_empty()
            || !inner
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return Err(UriError("bad IPv6 reference"));
        }
        match &s[end + 1..] {
            "" => (&s[..=end], None),
            p => (
                &s[..=end],
                Some(
                    p.strip_prefix(':')
                        .ok_or(UriError("junk after IPv6 reference"))?,
                ),
            ),
        }
    } else {
        match s.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    if !host.starts_with('[')
        && (host.is_empty()
            || !host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.'))
    {
        return Err(UriError("bad host"));
    }
    let port = match port {
        None => None,
        Some(p) if !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) => {
            Some(p.parse().map_err(|_| UriError("port out of range"))?)
        }
        Some(_) => return Err(UriError("bad port")),
    };
    Ok((host, port))
}

/// Any URI a SIP header may carry: a SIP URI, or another scheme kept as text (`tel:`,
/// `pres:`, `im:`, …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Uri {
    /// `sip:` / `sips:`.
    Sip(SipUri),
    /// Another scheme, as written.
    Other(String),
}

impl Uri {
    /// Parses a URI; a scheme other than sip/sips gives [`Uri::Other`] after a syntax check.
    pub fn parse(s: &str) -> Result<Uri, UriError> {
        let (scheme, rest) = s.split_once(':').ok_or(UriError("no scheme"))?;
        if scheme.eq_ignore_ascii_case("sip") || scheme.eq_ignore_ascii_case("sips") {
            return SipUri::parse(s).map(Uri::Sip);
        }
        let scheme_ok = scheme
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic())
            && scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b));
        if !scheme_ok
            || rest.is_empty()
            || s.bytes()
                .any(|b| b.is_ascii_whitespace() || b.is_ascii_control() || b"<>\"".contains(&b))
        {
            return Err(UriError("bad URI"));
        }
        Ok(Uri::Other(s.to_string()))
    }

    /// The SIP URI, if this is one.
    pub fn sip(&self) -> Option<&SipUri> {
        match self {
            Uri::Sip(u) => Some(u),
            Uri::Other(_) => None,
        }
    }

    /// The scheme as written.
    pub fn scheme(&self) -> &str {
        match self {
            Uri::Sip(u) if u.secure => "sips",
            Uri::Sip(_) => "sip",
            Uri::Other(s) => s.split(':').next().unwrap_or(""),
        }
    }
}

impl From<SipUri> for Uri {
    fn from(u: SipUri) -> Self {
        Uri::Sip(u)
    }
}

impl fmt::Display for Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Uri::Sip(u) => u.fmt(f),
            Uri::Other(s) => f.write_str(s),
        }
    }
}

/// A name-addr or addr-spec with header parameters: the value of From, To, Contact, Route and
/// Record-Route (RFC 3261 §20.10).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr {
    /// The display name, unquoted (escapes resolved).
    pub display: Option<String>,
    /// The URI.
    pub uri: Uri,
    /// Header parameters (`tag`, `expires`, `q`, …), not URI parameters.
    pub params: Params,
}

impl NameAddr {
    /// `<uri>` without display name or parameters.
    pub fn new(uri: impl Into<Uri>) -> Self {
        NameAddr {
            display: None,
            uri: uri.into(),
            params: Params::new(),
        }
    }

    /// The `tag` parameter (From and To).
    pub fn tag(&self) -> Option<&str> {
        self.params.value("tag")
    }

    /// Sets the `tag` parameter.
    pub fn set_tag(&mut self, tag: &str) {
        self.params.set("tag", Some(tag));
    }

    /// Parses `"Display" <uri>;p=v`, `Display Name <uri>`, `<uri>` or `uri;p=v` (in the last
    /// form parameters belong to the header, RFC 3261 §20).
    pub fn parse(s: &str) -> Result<NameAddr, UriError> {
        let s = s.trim();
        let (display, rest) = if s.starts_with('"') {
            let n = quoted_len(s).ok_or(UriError("unclosed quoted display name"))?;
            (Some(unquote(&s[..n])), s[n..].trim_start())
        } else if let Some(lt) = s.find('<') {
            let name = s[..lt].trim();
            if name.bytes().any(|b| b == b'"' || b == b'>') {
                return Err(UriError("bad display name"));
            }
            ((!name.is_empty()).then(|| name.to_string()), &s[lt..])
        } else {
            (None, s)
        };
        let (uri, params) = if let Some(inner) = rest.strip_prefix('<') {
            let end = inner.find('>').ok_or(UriError("unclosed '<'"))?;
            (&inner[..end], inner[end + 1..].trim_start())
        } else if display.is_some() {
            return Err(UriError("display name without <uri>"));
        } else {
            match rest.find(';') {
                Some(i) => (&rest[..i], &rest[i..]),
                None => (rest, ""),
            }
        };
        Ok(NameAddr {
            display,
            uri: Uri::parse(uri.trim())?,
            params: Params::parse(params)?,
        })
    }
}

impl fmt::Display for NameAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(d) = &self.display {
            f.write_str("\"")?;
            for c in d.chars() {
                if c == '"' || c == '\\' {
                    f.write_str("\\")?;
                }
                write!(f, "{c}")?;
            }
            f.write_str("\" ")?;
        }
        write!(f, "<{}>{}", self.uri, self.params)
    }
}

/// Removes the quotes of a quoted string and resolves `\x` escapes.
pub(crate) fn unquote(q: &str) -> String {
    let inner = &q[1..q.len() - 1];
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}
