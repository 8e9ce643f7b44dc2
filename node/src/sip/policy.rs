//! Decisions of the SIP edge as pure functions over the stored config, tested row by row:
//! which node is the routing node, whether an inbound request is admitted (federated domain,
//! incoming ACL), whether a TLS peer's names match a `tls-peer` subject, and which static route
//! wins for an outbound domain.

use std::net::IpAddr;

use herald_grpc::config::{AclPatternKind, IncomingAclEntry, StaticRoute};

/// The routing node: the first live node of `node_order`; when the list is empty (never set)
/// or none of its nodes is live, the lowest-numbered live node. `None` only when no node is live.
///
/// The fallback to the lowest live node keeps SIP federation working on a fresh cluster (node 1
/// serves until an admin says otherwise) and when every listed node is down.
pub fn routing_node(node_order: &[u64], live: &[u64]) -> Option<u64> {
    node_order
        .iter()
        .copied()
        .find(|n| live.contains(n))
        .or_else(|| live.iter().copied().min())
}

/// Why an inbound request is refused with 403.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The From domain is not a configured SIP federated domain.
    DomainNotFederated,
    /// No incoming ACL entry admits the sending host.
    NotInAcl,
}

impl Refusal {
    /// Metric label.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::DomainNotFederated => "domain_not_federated",
            Refusal::NotInAcl => "acl",
        }
    }

    /// Reason phrase of the 403.
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::DomainNotFederated => "Domain Not Federated",
            Refusal::NotInAcl => "Forbidden By Access Control",
        }
    }
}

/// Who sent a request: the connection's source address and, on TLS, the verified peer name
/// (the `tls-peer` subject its certificate matched).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sender<'a> {
    pub ip: IpAddr,
    pub tls_name: Option<&'a str>,
}

/// Whether an ACL entry admits `who` (ACL-2, ACL-3): IP entries match the source address;
/// FQDN entries the verified TLS name exactly; domain entries the verified TLS name or any
/// host under it; `all` everyone. A plain-TCP sender has no verified name, so only IP and
/// `all` entries can admit it (a source address is never taken as a name).
pub fn acl_admits(entry: &IncomingAclEntry, who: &Sender<'_>) -> bool {
    let pattern = entry
        .pattern
        .trim()
        .trim_end_matches('.')
        .to_ascii_lowercase();
    match AclPatternKind::try_from(entry.pattern_kind).unwrap_or_default() {
        AclPatternKind::All => true,
        AclPatternKind::Ip => pattern.parse::<IpAddr>().is_ok_and(|ip| ip == who.ip),
        AclPatternKind::Fqdn => who
            .tls_name
            .is_some_and(|n| n.trim_end_matches('.').eq_ignore_ascii_case(&pattern)),
        AclPatternKind::Domain => who.tls_name.is_some_and(|n| {
            let n = n.trim_end_matches('.').to_ascii_lowercase();
            n == pattern || n.ends_with(&format!(".{pattern}"))
        }),
        AclPatternKind::Unspecified => false,
    }
}

/// Admission of an inbound request whose From domain is `from_domain` (SUB-1, ACL-6): the
/// domain must be federated (`is_federated`), then some ACL entry must admit the sender.
pub fn admit(
    from_domain: &str,
    is_federated: impl Fn(&str) -> bool,
    acl: &[IncomingAclEntry],
    who: &Sender<'_>,
) -> Result<(), Refusal> {
    if !is_federated(&from_domain.to_ascii_lowercase()) {
        return Err(Refusal::DomainNotFederated);
    }
    if !acl.iter().any(|e| acl_admits(e, who)) {
        return Err(Refusal::NotInAcl);
    }
    Ok(())
}

/// The `tls-peer` subject that one of the certificate's names covers (RFC 6125: the
/// certificate's names are the patterns, `*.a.com` covering exactly one left-most label).
pub fn tls_peer_match<'a>(cert_names: &[String], subjects: &'a [String]) -> Option<&'a str> {
    subjects
        .iter()
        .find(|s| cert_names.iter().any(|n| crate::tls::name_matches(n, s)))
        .map(String::as_str)
}

/// How specific a static route's destination pattern is for `domain`: the number of labels it
/// names, or `None` when it does not match. Patterns are reversed domains: `.com.example.*`
/// matches `example.com` and every name under it, `.com.example` only `example.com`, `.*`
/// everything (specificity 0).
pub fn pattern_specificity(pattern: &str, domain: &str) -> Option<usize> {
    let p = pattern.trim().trim_start_matches('.').to_ascii_lowercase();
    let reversed: Vec<String> = domain
        .trim_end_matches('.')
        .to_ascii_lowercase()
        .split('.')
        .rev()
        .map(str::to_string)
        .collect();
    let (labels, wildcard): (Vec<&str>, bool) = match p.strip_suffix('*') {
        Some(rest) => (
            rest.trim_end_matches('.')
                .split('.')
                .filter(|l| !l.is_empty())
                .collect(),
            true,
        ),
        None => (p.split('.').filter(|l| !l.is_empty()).collect(), false),
    };
    if labels.len() > reversed.len() || (!wildcard && labels.len() != reversed.len()) {
        return None;
    }
    labels
        .iter()
        .zip(&reversed)
        .all(|(a, b)| a == b)
        .then_some(labels.len())
}

/// The static routes to try for `domain`, best first: only matching, in-service, not blocked
/// routes; the most specific pattern wins, then the lower priority number, then the higher
/// weight. An empty list means "no static route: use DNS".
pub fn static_routes<'a>(routes: &'a [StaticRoute], domain: &str) -> Vec<&'a StaticRoute> {
    let mut hits: Vec<(usize, &StaticRoute)> = routes
        .iter()
        .filter(|r| r.in_service && !r.blocked)
        .filter_map(|r| pattern_specificity(&r.destination_pattern, domain).map(|s| (s, r)))
        .collect();
    let best = hits.iter().map(|(s, _)| *s).max();
    hits.retain(|(s, _)| Some(*s) == best);
    hits.sort_by(|(_, a), (_, b)| {
        a.priority
            .cmp(&b.priority)
            .then(b.weight.cmp(&a.weight))
            .then(a.id.cmp(&b.id))
    });
    hits.into_iter().map(|(_, r)| r).collect()
}

/// The first of `items` (best first) that is not `down`; when all are, the first (a next hop
/// that failed may be back: its link retries with backoff). `None` only for no items.
pub fn first_up<T>(items: &[T], down: impl Fn(&T) -> bool) -> Option<&T> {
    items.iter().find(|i| !down(i)).or_else(|| items.first())
}

/// One step of the outbound route lookup for a SIP domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// The static routes whose pattern matches this domain.
    Static(String),
    /// The DNS SRV records of this domain ([`srv_names`]).
    Srv(String),
}

/// Where a request for `domain` goes, as the steps to try in order (RTE-5, RTE-7): its static
/// routes, then its DNS SRV records. For a domain of type AOL (`aol`) that is not the default
/// federation routing domain `default_domain` itself, the chain then continues with the
/// static routes and the SRV records of `default_domain` (AOL as a clearing house for the
/// domains it hosts or federates with). Other types never borrow another domain's route.
pub fn route_plan(domain: &str, aol: bool, default_domain: &str) -> Vec<Step> {
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    let default_domain = default_domain.trim_end_matches('.').to_ascii_lowercase();
    let mut plan = vec![Step::Static(domain.clone()), Step::Srv(domain.clone())];
    if aol && !default_domain.is_empty() && default_domain != domain {
        plan.push(Step::Static(default_domain.clone()));
        plan.push(Step::Srv(default_domain));
    }
    plan
}

/// The default federation routing domain when none is stored (RTE-8).
pub const DEFAULT_ROUTING_DOMAIN: &str = "aol.com";

/// The SRV names looked up for a SIP domain, in order: `_sipfederationtls._tcp` (the
/// federation record the guides publish, RTE-6), then `_sip._tls`. Both mean TLS.
pub fn srv_names(domain: &str) -> [String; 2] {
    [
        format!("_sipfederationtls._tcp.{domain}"),
        format!("_sip._tls.{domain}"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routing_node_is_first_live_of_the_order_else_lowest_live() {
        let rows: &[(&[u64], &[u64], Option<u64>)] = &[
            (&[2, 3], &[1, 2, 3], Some(2)),
            (&[2, 3], &[1, 3], Some(3)),
            (&[2, 3], &[1], Some(1)),
            (&[], &[3, 1, 2], Some(1)),
            (&[], &[], None),
            (&[5], &[2, 4], Some(2)),
        ];
        for (order, live, want) in rows {
            assert_eq!(routing_node(order, live), *want, "{order:?} {live:?}");
        }
    }

    fn acl(kind: AclPatternKind, pattern: &str) -> IncomingAclEntry {
        IncomingAclEntry {
            id: pattern.into(),
            pattern_kind: kind as i32,
            pattern: pattern.into(),
            ..Default::default()
        }
    }

    #[test]
    fn acl_entries_admit_by_ip_name_domain_or_all() {
        let local: IpAddr = "127.0.0.9".parse().unwrap();
        let other: IpAddr = "10.0.0.1".parse().unwrap();
        let rows = [
            (acl(AclPatternKind::Ip, "127.0.0.9"), local, None, true),
            (acl(AclPatternKind::Ip, "127.0.0.9"), other, None, false),
            (acl(AclPatternKind::Ip, "not-an-ip"), local, None, false),
            (
                acl(AclPatternKind::Fqdn, "edge.sip.test"),
                local,
                Some("edge.sip.test"),
                true,
            ),
            (
                acl(AclPatternKind::Fqdn, "edge.sip.test"),
                local,
                Some("x.sip.test"),
                false,
            ),
            (
                acl(AclPatternKind::Fqdn, "edge.sip.test"),
                local,
                None,
                false,
            ),
            (
                acl(AclPatternKind::Domain, "sip.test"),
                local,
                Some("edge.sip.test"),
                true,
            ),
            (
                acl(AclPatternKind::Domain, "sip.test"),
                local,
                Some("SIP.test."),
                true,
            ),
            (
                acl(AclPatternKind::Domain, "sip.test"),
                local,
                Some("evilsip.test"),
                false,
            ),
            (acl(AclPatternKind::Domain, "sip.test"), local, None, false),
            (acl(AclPatternKind::All, ""), other, None, true),
            (acl(AclPatternKind::Unspecified, ""), other, None, false),
        ];
        for (entry, ip, name, want) in rows {
            let who = Sender { ip, tls_name: name };
            assert_eq!(acl_admits(&entry, &who), want, "{entry:?} {who:?}");
        }
    }

    #[test]
    fn admission_checks_the_domain_before_the_acl() {
        let fed = |d: &str| d == "sip.test";
        let who = Sender {
            ip: "127.0.0.9".parse().unwrap(),
            tls_name: None,
        };
        let open = [acl(AclPatternKind::Ip, "127.0.0.9")];
        assert_eq!(admit("sip.test", fed, &open, &who), Ok(()));
        assert_eq!(admit("SIP.TEST", fed, &open, &who), Ok(()));
        assert_eq!(
            admit("other.test", fed, &open, &who),
            Err(Refusal::DomainNotFederated)
        );
        let auto_only = [acl(AclPatternKind::Domain, "sip.test")];
        assert_eq!(
            admit("sip.test", fed, &auto_only, &who),
            Err(Refusal::NotInAcl)
        );
        let tls = Sender {
            tls_name: Some("proxy.sip.test"),
            ..who
        };
        assert_eq!(admit("sip.test", fed, &auto_only, &tls), Ok(()));
    }

    #[test]
    fn tls_peer_subjects_match_by_rfc_6125() {
        let subjects = vec!["proxy.sip.test".to_string(), "edge.other.test".to_string()];
        let rows: &[(&[&str], Option<&str>)] = &[
            (&["proxy.sip.test"], Some("proxy.sip.test")),
            (&["*.sip.test"], Some("proxy.sip.test")),
            (&["*.test"], None),
            (&["a.proxy.sip.test"], None),
            (&["x.test", "EDGE.other.test"], Some("edge.other.test")),
            (&[], None),
        ];
        for (names, want) in rows {
            let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
            assert_eq!(tls_peer_match(&names, &subjects), *want, "{names:?}");
        }
    }

    #[test]
    fn static_route_patterns_are_reversed_domains() {
        let rows = [
            (".com.example.*", "example.com", Some(2)),
            (".com.example.*", "a.example.com", Some(2)),
            (".com.example.*", "example.org", None),
            (".com.example", "example.com", Some(2)),
            (".com.example", "a.example.com", None),
            (".*", "anything.test", Some(0)),
            (".test.sip.a", "a.sip.test", Some(3)),
            (".test.sip.a.b", "a.sip.test", None),
        ];
        for (p, d, want) in rows {
            assert_eq!(pattern_specificity(p, d), want, "{p} {d}");
        }
    }

    fn route(id: &str, pattern: &str, priority: u32, weight: u32) -> StaticRoute {
        StaticRoute {
            id: id.into(),
            destination_pattern: pattern.into(),
            next_hop: format!("{id}.hop"),
            priority,
            weight,
            in_service: true,
            ..Default::default()
        }
    }

    #[test]
    fn most_specific_route_wins_then_priority_then_weight() {
        let mut blocked = route("blocked", ".test.sip.*", 0, 0);
        blocked.blocked = true;
        let mut down = route("down", ".test.sip.*", 0, 0);
        down.in_service = false;
        let routes = vec![
            route("any", ".*", 0, 0),
            route("backup", ".test.sip.*", 20, 0),
            route("primary", ".test.sip.*", 10, 0),
            route("heavy", ".test.sip.*", 20, 50),
            blocked,
            down,
        ];
        let ids = |d: &str| -> Vec<String> {
            static_routes(&routes, d)
                .into_iter()
                .map(|r| r.id.clone())
                .collect()
        };
        assert_eq!(ids("sip.test"), ["primary", "heavy", "backup"]);
        assert_eq!(ids("elsewhere.org"), ["any"]);
        assert!(static_routes(&routes[1..2], "elsewhere.org").is_empty());
    }
    #[test]
    fn first_up_passes_over_down_hops_but_never_leaves_none() {
        let hops = ["primary", "backup", "third"];
        assert_eq!(first_up(&hops, |_| false), Some(&"primary"));
        assert_eq!(first_up(&hops, |h| *h == "primary"), Some(&"backup"));
        assert_eq!(first_up(&hops, |h| *h != "third"), Some(&"third"));
        assert_eq!(first_up(&hops, |_| true), Some(&"primary"));
        assert_eq!(first_up::<&str>(&[], |_| false), None);
    }

    #[test]
    fn route_plan_static_then_srv_then_the_aol_chain() {
        use Step::*;
        let s = |d: &str| Static(d.to_string());
        let v = |d: &str| Srv(d.to_string());
        assert_eq!(
            route_plan("Sip.Test.", false, "aol.com"),
            [s("sip.test"), v("sip.test")]
        );
        // A hosted AOL domain: its own route and SRV, then the default domain's (steps 1-4).
        assert_eq!(
            route_plan("hosted.test", true, "aol.com"),
            [
                s("hosted.test"),
                v("hosted.test"),
                s("aol.com"),
                v("aol.com")
            ]
        );
        // The default domain itself: its route, then its SRV (steps 5-6).
        assert_eq!(
            route_plan("aol.com", true, "AOL.com"),
            [s("aol.com"), v("aol.com")]
        );
        // A changed default routing domain is followed.
        assert_eq!(
            route_plan("hosted.test", true, "gw.test"),
            [
                s("hosted.test"),
                v("hosted.test"),
                s("gw.test"),
                v("gw.test")
            ]
        );
        // Not AOL: never another domain's route.
        assert_eq!(route_plan("x.test", false, "gw.test").len(), 2);
        assert_eq!(
            srv_names("kam.test"),
            ["_sipfederationtls._tcp.kam.test", "_sip._tls.kam.test"]
        );
    }
}
