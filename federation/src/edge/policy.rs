//! The XMPP federation policy (`xmpp-policy`): a default action and exceptions by domain
//! pattern and direction. An exception reverses the default for the domains it matches.
//!
//! Patterns: `example.com` matches exactly that name; `*.example.com` matches every name below
//! `example.com` (any depth) but not `example.com` itself. Names compare case-insensitively.

use herald_grpc::config::{PolicyAction, PolicyDirection, XmppFederationPolicy};

/// Which way traffic flows, seen from Herald.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From the other domain to Herald's users.
    Inbound,
    /// From Herald's users to the other domain.
    Outbound,
}

impl Direction {
    /// `inbound` / `outbound`, for logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }
}

/// The policy's answer for one domain and direction, with the rule that decided it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Traffic may flow.
    pub allowed: bool,
    /// `default allow`, `default deny`, or `exception PATTERN (DIRECTION)`.
    pub rule: String,
}

/// True when `pattern` (a policy exception target) matches `domain`.
pub fn pattern_matches(pattern: &str, domain: &str) -> bool {
    let domain = domain.trim_end_matches('.');
    match pattern.strip_prefix("*.") {
        Some(base) => {
            domain.len() > base.len() + 1
                && domain[domain.len() - base.len()..].eq_ignore_ascii_case(base)
                && domain.as_bytes()[domain.len() - base.len() - 1] == b'.'
        }
        None => pattern.eq_ignore_ascii_case(domain),
    }
}

fn applies(direction: i32, dir: Direction) -> bool {
    match PolicyDirection::try_from(direction).unwrap_or(PolicyDirection::All) {
        PolicyDirection::Inbound => dir == Direction::Inbound,
        PolicyDirection::Outbound => dir == Direction::Outbound,
        PolicyDirection::All | PolicyDirection::Unspecified => true,
    }
}

/// Decides whether traffic with `domain` in direction `dir` is allowed. The most specific
/// matching exception wins (an exact name over a wildcard, a longer wildcard over a shorter).
pub fn decide(policy: &XmppFederationPolicy, domain: &str, dir: Direction) -> Decision {
    let default_allow = PolicyAction::try_from(policy.default_action)
        .map(|a| a != PolicyAction::Deny)
        .unwrap_or(true);
    let best = policy
        .exceptions
        .iter()
        .filter(|e| applies(e.direction, dir) && pattern_matches(&e.domain_pattern, domain))
        .max_by_key(|e| {
            let exact = !e.domain_pattern.starts_with("*.");
            (exact, e.domain_pattern.len())
        });
    match best {
        Some(e) => Decision {
            allowed: !default_allow,
            rule: format!(
                "exception {} ({})",
                e.domain_pattern,
                match PolicyDirection::try_from(e.direction).unwrap_or(PolicyDirection::All) {
                    PolicyDirection::Inbound => "inbound",
                    PolicyDirection::Outbound => "outbound",
                    _ => "all",
                }
            ),
        },
        None => Decision {
            allowed: default_allow,
            rule: if default_allow {
                "default allow"
            } else {
                "default deny"
            }
            .to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_grpc::config::PolicyException;

    fn policy(default: PolicyAction, ex: &[(&str, PolicyDirection)]) -> XmppFederationPolicy {
        XmppFederationPolicy {
            default_action: default as i32,
            exceptions: ex
                .iter()
                .map(|(p, d)| PolicyException {
                    domain_pattern: p.to_string(),
                    direction: *d as i32,
                    description: String::new(),
                })
                .collect(),
        }
    }

    #[test]
    fn patterns() {
        // (pattern, domain, matches)
        let rows = [
            ("a.com", "a.com", true),
            ("a.com", "A.COM", true),
            ("a.com", "a.com.", true),
            ("a.com", "x.a.com", false),
            ("*.a.com", "x.a.com", true),
            ("*.a.com", "y.x.a.com", true),
            ("*.a.com", "a.com", false),
            ("*.a.com", "xa.com", false),
            ("*.a.com", "b.com", false),
        ];
        for (p, d, want) in rows {
            assert_eq!(pattern_matches(p, d), want, "{p} vs {d}");
        }
    }

    #[test]
    fn decisions() {
        use Direction::*;
        use PolicyAction::*;
        use PolicyDirection as D;
        // (default, exceptions, domain, direction, allowed, rule)
        type Row<'a> = (
            PolicyAction,
            Vec<(&'a str, D)>,
            &'a str,
            Direction,
            bool,
            &'a str,
        );
        let rows: Vec<Row> = vec![
            (Allow, vec![], "p.test", Outbound, true, "default allow"),
            (Deny, vec![], "p.test", Inbound, false, "default deny"),
            (
                Deny,
                vec![("p.test", D::All)],
                "p.test",
                Inbound,
                true,
                "exception p.test (all)",
            ),
            (
                Deny,
                vec![("p.test", D::Outbound)],
                "p.test",
                Inbound,
                false,
                "default deny",
            ),
            (
                Deny,
                vec![("p.test", D::Outbound)],
                "p.test",
                Outbound,
                true,
                "exception p.test (outbound)",
            ),
            (
                Allow,
                vec![("*.bad.test", D::All)],
                "x.bad.test",
                Outbound,
                false,
                "exception *.bad.test (all)",
            ),
            (
                Allow,
                vec![("*.bad.test", D::All)],
                "bad.test",
                Outbound,
                true,
                "default allow",
            ),
            (
                Allow,
                vec![("*.test", D::Inbound), ("*.ok.test", D::Inbound)],
                "a.ok.test",
                Inbound,
                false,
                "exception *.ok.test (inbound)",
            ),
            (
                Deny,
                vec![(" ", D::All)],
                "p.test",
                Outbound,
                false,
                "default deny",
            ),
        ];
        for (default, ex, domain, dir, allowed, rule) in rows {
            let d = decide(&policy(default, &ex), domain, dir);
            assert_eq!(
                (d.allowed, d.rule.as_str()),
                (allowed, rule),
                "{default:?} {ex:?} {domain} {dir:?}"
            );
        }
    }
}
