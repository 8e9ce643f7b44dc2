//! Jabber identifiers (RFC 7622): `[local@]domain[/resource]`.
//!
//! Normalisation here is a pragmatic subset of PRECIS: the localpart and domain are lowercased
//! (Unicode lowercase), a trailing dot on the domain is removed, and the resource is kept as
//! given. Each part is limited to 1023 bytes; the localpart may not contain the characters RFC
//! 7622 §3.3.1 forbids; no part may contain whitespace or control characters.

use std::fmt;

/// Longest part, in bytes (RFC 7622 §3).
pub const MAX_PART: usize = 1023;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Jid {
    local: Option<String>,
    domain: String,
    resource: Option<String>,
}

/// Why a string is not a JID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JidError {
    #[error("empty domain")]
    EmptyDomain,
    #[error("empty localpart")]
    EmptyLocal,
    #[error("empty resource")]
    EmptyResource,
    #[error("{0} part longer than 1023 bytes")]
    TooLong(&'static str),
    #[error("forbidden character {1:?} in the {0} part")]
    Forbidden(&'static str, char),
    #[error("invalid domain {0:?}")]
    BadDomain(String),
}

fn check_common(part: &'static str, s: &str) -> Result<(), JidError> {
    if s.len() > MAX_PART {
        return Err(JidError::TooLong(part));
    }
    if let Some(c) = s.chars().find(|c| c.is_control() || c.is_whitespace()) {
        return Err(JidError::Forbidden(part, c));
    }
    Ok(())
}

fn norm_local(s: &str) -> Result<String, JidError> {
    if s.is_empty() {
        return Err(JidError::EmptyLocal);
    }
    check_common("local", s)?;
    if let Some(c) = s
        .chars()
        .find(|c| matches!(c, '"' | '&' | '\'' | '/' | ':' | '<' | '>' | '@'))
    {
        return Err(JidError::Forbidden("local", c));
    }
    within_limit("local", s.to_lowercase())
}

/// Lowercasing can lengthen a part (U+0130 'İ' is 2 bytes, its lowercase 3): the limit holds
/// for the normalised part too, so that a JID's text always parses back.
fn within_limit(part: &'static str, s: String) -> Result<String, JidError> {
    if s.len() > MAX_PART {
        return Err(JidError::TooLong(part));
    }
    Ok(s)
}

fn norm_domain(s: &str) -> Result<String, JidError> {
    let s = s.strip_suffix('.').unwrap_or(s);
    if s.is_empty() {
        return Err(JidError::EmptyDomain);
    }
    check_common("domain", s)?;
    let d = within_limit("domain", s.to_lowercase())?;
    // An IPv6 literal, or labels of letters, digits, hyphens (and non-ASCII for IDNs).
    let ok = if d.starts_with('[') {
        d.ends_with(']')
    } else {
        d.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars()
                    .all(|c| c.is_alphanumeric() || c == '-' || c == '_')
        })
    };
    if !ok {
        return Err(JidError::BadDomain(d));
    }
    Ok(d)
}

fn norm_resource(s: &str) -> Result<String, JidError> {
    if s.is_empty() {
        return Err(JidError::EmptyResource);
    }
    if s.len() > MAX_PART {
        return Err(JidError::TooLong("resource"));
    }
    if let Some(c) = s.chars().find(|c| c.is_control()) {
        return Err(JidError::Forbidden("resource", c));
    }
    Ok(s.to_string())
}

impl Jid {
    /// Parses and normalises `s`.
    pub fn parse(s: &str) -> Result<Jid, JidError> {
        // The resource starts at the first '/'; the localpart ends at the first '@' before it.
        let (bare, resource) = match s.split_once('/') {
            Some((b, r)) => (b, Some(r)),
            None => (s, None),
        };
        let (local, domain) = match bare.split_once('@') {
            Some((l, d)) => (Some(l), d),
            None => (None, bare),
        };
        Ok(Jid {
            local: local.map(norm_local).transpose()?,
            domain: norm_domain(domain)?,
            resource: resource.map(norm_resource).transpose()?,
        })
    }

    /// Builds a JID from parts, normalising each.
    pub fn from_parts(
        local: Option<&str>,
        domain: &str,
        resource: Option<&str>,
    ) -> Result<Jid, JidError> {
        Ok(Jid {
            local: local.map(norm_local).transpose()?,
            domain: norm_domain(domain)?,
            resource: resource.map(norm_resource).transpose()?,
        })
    }

    pub fn local(&self) -> Option<&str> {
        self.local.as_deref()
    }

    pub fn domain(&self) -> &str {
        &self.domain
    }

    pub fn resource(&self) -> Option<&str> {
        self.resource.as_deref()
    }

    /// The JID without its resource.
    pub fn bare(&self) -> Jid {
        Jid {
            local: self.local.clone(),
            domain: self.domain.clone(),
            resource: None,
        }
    }

    pub fn is_bare(&self) -> bool {
        self.resource.is_none()
    }

    /// This JID with `resource` (normalised).
    pub fn with_resource(&self, resource: &str) -> Result<Jid, JidError> {
        Ok(Jid {
            local: self.local.clone(),
            domain: self.domain.clone(),
            resource: Some(norm_resource(resource)?),
        })
    }

    /// A domain-only JID.
    pub fn domain_jid(&self) -> Jid {
        Jid {
            local: None,
            domain: self.domain.clone(),
            resource: None,
        }
    }
}

impl fmt::Display for Jid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(l) = &self.local {
            write!(f, "{l}@")?;
        }
        f.write_str(&self.domain)?;
        if let Some(r) = &self.resource {
            write!(f, "/{r}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Jid {
    type Err = JidError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Jid::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_normalise() {
        let cases = [
            ("Alice@Example.COM/Phone", "alice@example.com/Phone"),
            ("example.com", "example.com"),
            ("example.com.", "example.com"),
            ("a@b/c/d@e", "a@b/c/d@e"),
            ("ÄLICE@example.com", "älice@example.com"),
            ("a@[::1]", "a@[::1]"),
        ];
        for (input, want) in cases {
            assert_eq!(Jid::parse(input).unwrap().to_string(), want, "{input}");
        }
        let j = Jid::parse("a@b.c/r").unwrap();
        assert_eq!(j.local(), Some("a"));
        assert_eq!(j.domain(), "b.c");
        assert_eq!(j.resource(), Some("r"));
        assert_eq!(j.bare().to_string(), "a@b.c");
        assert!(j.bare().is_bare());
        assert_eq!(j.domain_jid().to_string(), "b.c");
    }

    /// Lowercasing can lengthen a part ('İ', 2 bytes, becomes "i̇", 3 bytes): the 1023-byte
    /// limit applies to the normalised part too, or a JID accepted once would not parse
    /// again from its own text (the property the `xmpp_jid` fuzz target checks).
    #[test]
    fn limit_applies_after_lowercasing() {
        let local = "\u{130}".repeat(500); // 1000 bytes, 1500 once lowercased
        assert_eq!(
            Jid::parse(&format!("{local}@example.com")),
            Err(JidError::TooLong("local"))
        );
        let domain = format!("{}.example", "\u{130}".repeat(30)).repeat(12);
        assert!(domain.len() <= MAX_PART);
        assert_eq!(Jid::parse(&domain), Err(JidError::TooLong("domain")));
        // Within the limit after lowercasing: accepted, and parses again from its text.
        let j = Jid::parse(&format!("{}@example.com", "\u{130}".repeat(300))).unwrap();
        assert_eq!(Jid::parse(&j.to_string()), Ok(j));
    }

    #[test]
    fn rejects() {
        for bad in [
            "",
            "@b",
            "a@",
            "a@b/",
            "a b@c",
            "a@b c",
            "a\"@b",
            "a<@b",
            "a@-b.c",
            "a@b..c",
            "a@b/\u{7}",
        ] {
            assert!(Jid::parse(bad).is_err(), "{bad:?} should fail");
        }
        assert_eq!(
            Jid::parse(&format!("{}@b", "x".repeat(1024))).unwrap_err(),
            JidError::TooLong("local")
        );
    }
}
