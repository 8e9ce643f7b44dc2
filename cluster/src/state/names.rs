//! Syntax checks for the names the config store holds: DNS names, email domains, JIDs, ids.
//!
//! Every checker is pure and returns a human-readable reason on failure; the caller turns it into
//! an `INVALID_ARGUMENT` naming the offending field.

use std::net::IpAddr;

/// Longest DNS name we accept, in characters (RFC 1035 presentation form without trailing dot).
pub const MAX_DNS_NAME_LEN: usize = 253;
/// Longest DNS label.
pub const MAX_DNS_LABEL_LEN: usize = 63;
/// Longest email domain (EMD-4).
pub const MAX_EMAIL_DOMAIN_LEN: usize = 255;
/// Longest JID localpart, in bytes (RFC 7622).
pub const MAX_LOCALPART_BYTES: usize = 1023;
/// Longest object id (ACL entries, static routes, calendar gateways).
pub const MAX_ID_LEN: usize = 64;

/// Checks one DNS label: 1..=63 characters of `[A-Za-z0-9-]`, not starting or ending with '-'.
pub fn check_dns_label(label: &str) -> Result<(), String> {
    if label.is_empty() {
        return Err("empty label".into());
    }
    if label.len() > MAX_DNS_LABEL_LEN {
        return Err(format!(
            "label '{label}' is longer than {MAX_DNS_LABEL_LEN} characters"
        ));
    }
    if !label
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return Err(format!(
            "label '{label}' may contain only letters, digits and '-'"
        ));
    }
    if label.starts_with('-') || label.ends_with('-') {
        return Err(format!("label '{label}' must not start or end with '-'"));
    }
    Ok(())
}

/// Checks a DNS name (domain or host) and returns it lowercased.
pub fn normalize_dns_name(name: &str) -> Result<String, String> {
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if name.len() > MAX_DNS_NAME_LEN {
        return Err(format!(
            "'{name}' is longer than {MAX_DNS_NAME_LEN} characters"
        ));
    }
    for label in name.split('.') {
        check_dns_label(label).map_err(|e| format!("'{name}' is not a valid DNS name: {e}"))?;
    }
    Ok(name.to_ascii_lowercase())
}

/// Checks a DNS name that may start with a `*.` wildcard label; returns it lowercased.
pub fn normalize_wildcard_dns_name(name: &str) -> Result<String, String> {
    match name.strip_prefix("*.") {
        Some(rest) => normalize_dns_name(rest).map(|n| format!("*.{n}")),
        None => normalize_dns_name(name),
    }
}

/// Checks a host: an IP address (returned in canonical form) or a DNS name (lowercased).
pub fn normalize_host(host: &str) -> Result<String, String> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(ip.to_string());
    }
    normalize_dns_name(host).map_err(|e| format!("not an IP address or DNS name: {e}"))
}

/// Checks an email domain against EMD-4 and returns it lowercased: at most 255 characters of
/// letters, digits, '-' and '.'; no empty label; no label starting with '-'; the last label does
/// not start with a digit (`Abc.1om` is invalid).
pub fn normalize_email_domain(name: &str) -> Result<String, String> {
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if name.len() > MAX_EMAIL_DOMAIN_LEN {
        return Err(format!(
            "'{name}' is longer than {MAX_EMAIL_DOMAIN_LEN} characters"
        ));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    {
        return Err(format!(
            "'{name}' may contain only letters, digits, '-' and '.'"
        ));
    }
    let labels: Vec<&str> = name.split('.').collect();
    for label in &labels {
        if label.is_empty() {
            return Err(format!("'{name}' has an empty label"));
        }
        if label.starts_with('-') {
            return Err(format!("label '{label}' of '{name}' starts with '-'"));
        }
    }
    let last_starts_with_digit = labels
        .last()
        .and_then(|l| l.bytes().next())
        .is_some_and(|b| b.is_ascii_digit());
    if last_starts_with_digit {
        return Err(format!(
            "the last label of '{name}' must not start with a digit"
        ));
    }
    Ok(name.to_ascii_lowercase())
}

/// Characters a JID localpart may not contain (besides whitespace and control characters).
const LOCALPART_FORBIDDEN: &[char] = &['@', '/', '"', '&', '\'', ':', '<', '>'];

/// Checks a bare JID `localpart@domain` and returns it lowercased, with its domain.
pub fn normalize_jid(jid: &str) -> Result<(String, String), String> {
    let Some((local, domain)) = jid.split_once('@') else {
        return Err(format!("'{jid}' is not of the form localpart@domain"));
    };
    if local.is_empty() {
        return Err(format!("'{jid}' has an empty localpart"));
    }
    if local.len() > MAX_LOCALPART_BYTES {
        return Err(format!(
            "the localpart is longer than {MAX_LOCALPART_BYTES} bytes"
        ));
    }
    if let Some(c) = local
        .chars()
        .find(|c| LOCALPART_FORBIDDEN.contains(c) || c.is_whitespace() || c.is_control())
    {
        return Err(format!("the localpart of '{jid}' contains {c:?}"));
    }
    let domain = normalize_dns_name(domain).map_err(|e| format!("domain: {e}"))?;
    let local = local.to_lowercase();
    if local.len() > MAX_LOCALPART_BYTES {
        return Err(format!(
            "the localpart is longer than {MAX_LOCALPART_BYTES} bytes"
        ));
    }
    Ok((format!("{local}@{domain}"), domain))
}

/// Checks a full email address `x@domain` (domain per DNS and EMD-4 rules); returns it with its
/// domain lowercased, and the domain.
pub fn normalize_mail_id(mail: &str) -> Result<(String, String), String> {
    let Some((local, domain)) = mail.rsplit_once('@') else {
        return Err(format!("'{mail}' is not a full email address (x@domain)"));
    };
    if local.is_empty() {
        return Err(format!("'{mail}' has an empty local part"));
    }
    if local
        .chars()
        .any(|c| c == '@' || c.is_whitespace() || c.is_control())
    {
        return Err(format!(
            "the local part of '{mail}' contains '@', whitespace or a control character"
        ));
    }
    let domain = normalize_dns_name(domain).map_err(|e| format!("domain: {e}"))?;
    let domain = normalize_email_domain(&domain).map_err(|e| format!("domain: {e}"))?;
    Ok((format!("{local}@{domain}"), domain))
}

/// Checks an object id: 1..=64 characters of `[A-Za-z0-9._-]`.
pub fn check_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("must not be empty".into());
    }
    if id.len() > MAX_ID_LEN {
        return Err(format!("'{id}' is longer than {MAX_ID_LEN} characters"));
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err(format!(
            "'{id}' may contain only letters, digits, '.', '_' and '-'"
        ));
    }
    Ok(())
}

/// True when the XMPP policy pattern `pattern` (`example.com` or `*.example.com`) covers `domain`;
/// `*.example.com` covers `example.com` and all its subdomains. Both are expected lowercased.
pub fn pattern_covers(pattern: &str, domain: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(base) => {
            domain == base
                || domain
                    .strip_suffix(base)
                    .is_some_and(|prefix| prefix.ends_with('.'))
        }
        None => pattern == domain,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_names() {
        let long_label = "a".repeat(64);
        let long_name = ["a".repeat(63).as_str(); 4].join(".") + ".com";
        let table: &[(&str, Option<&str>)] = &[
            ("example.com", Some("example.com")),
            ("Example.COM", Some("example.com")),
            ("localhost", Some("localhost")),
            ("a-b.c1.d", Some("a-b.c1.d")),
            ("10.0.0.1", Some("10.0.0.1")),
            ("", None),
            ("-a.com", None),
            ("a-.com", None),
            ("a..com", None),
            (".a.com", None),
            ("a.com.", None),
            ("a_b.com", None),
            ("a b.com", None),
            ("é.com", None),
            (long_label.as_str(), None),
            (long_name.as_str(), None),
        ];
        for (input, want) in table {
            let got = normalize_dns_name(input).ok();
            assert_eq!(got.as_deref(), *want, "input {input:?}");
        }
        let max = vec!["a".repeat(63); 3].join(".") + "." + &"b".repeat(61);
        assert_eq!(max.len(), 253);
        assert!(normalize_dns_name(&max).is_ok());
    }

    #[test]
    fn wildcard_and_hosts() {
        assert_eq!(
            normalize_wildcard_dns_name("*.Ex.com").as_deref(),
            Ok("*.ex.com")
        );
        assert!(normalize_wildcard_dns_name("*").is_err());
        assert!(normalize_wildcard_dns_name("a.*.com").is_err());
        assert_eq!(normalize_host("::1").as_deref(), Ok("::1"));
        assert_eq!(normalize_host("0:0::1").as_deref(), Ok("::1"));
        assert_eq!(
            normalize_host("Gw.Example.com").as_deref(),
            Ok("gw.example.com")
        );
        assert!(normalize_host("1.2.3.4:5").is_err());
        assert!(normalize_host("").is_err());
    }

    #[test]
    fn email_domains() {
        let table: &[(&str, Option<&str>)] = &[
            ("example.com", Some("example.com")),
            ("Mail.Example.com", Some("mail.example.com")),
            ("a-.com", Some("a-.com")),
            ("x.c0m", Some("x.c0m")),
            ("Abc.1om", None),
            ("1abc", None),
            ("-a.com", None),
            ("a.-com", None),
            ("a..com", None),
            ("a_b.com", None),
            ("", None),
        ];
        for (input, want) in table {
            let got = normalize_email_domain(input).ok();
            assert_eq!(got.as_deref(), *want, "input {input:?}");
        }
        assert!(normalize_email_domain(&("a".repeat(252) + ".com")).is_err());
    }

    #[test]
    fn jids() {
        let long = "a".repeat(1024);
        let table: &[(&str, Option<(&str, &str)>)] = &[
            (
                "Alice@Example.com",
                Some(("alice@example.com", "example.com")),
            ),
            ("ÄLICE@localhost", Some(("älice@localhost", "localhost"))),
            ("alice", None),
            ("@example.com", None),
            ("a@b@example.com", None),
            ("a b@example.com", None),
            ("a/b@example.com", None),
            ("a:b@example.com", None),
            ("a<b@example.com", None),
            ("a'b@example.com", None),
            ("a\"b@example.com", None),
            ("a&b@example.com", None),
            ("a@bad_domain", None),
            ("a@", None),
        ];
        for (input, want) in table {
            let got = normalize_jid(input).ok();
            let got = got.as_ref().map(|(j, d)| (j.as_str(), d.as_str()));
            assert_eq!(got, *want, "input {input:?}");
        }
        assert!(normalize_jid(&format!("{long}@example.com")).is_err());
    }

    #[test]
    fn mail_ids() {
        assert_eq!(
            normalize_mail_id("Bob.Smith@Mail.Example.com"),
            Ok((
                "Bob.Smith@mail.example.com".into(),
                "mail.example.com".into()
            ))
        );
        for bad in [
            "bob",
            "@example.com",
            "bob@",
            "bob@a..com",
            "bob@abc.1om",
            "b b@x.com",
        ] {
            assert!(normalize_mail_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ids() {
        for ok in ["a", "route-1", "A.b_c-9", &"x".repeat(64)] {
            assert!(check_id(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a b", "a/b", "é", &"x".repeat(65)] {
            assert!(check_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn coverage() {
        let table = [
            ("example.com", "example.com", true),
            ("example.com", "a.example.com", false),
            ("*.example.com", "example.com", true),
            ("*.example.com", "a.b.example.com", true),
            ("*.example.com", "badexample.com", false),
            ("*.example.com", "example.org", false),
        ];
        for (p, d, want) in table {
            assert_eq!(pattern_covers(p, d), want, "{p} {d}");
        }
    }
}
