//! Where a domain's servers are: DNS SRV answers put in RFC 2782 order (lowest priority first,
//! weighted random among equal priorities), with the fallback to the domain itself when there
//! are none. DNS is the caller's business; this is the pure part.

/// One SRV answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Srv {
    /// Priority (lower first).
    pub priority: u16,
    /// Weight among equal priorities.
    pub weight: u16,
    /// Target host name (without a trailing dot).
    pub target: String,
    /// Port.
    pub port: u16,
}

/// A place to connect to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// TLS from the first byte (XEP-0368 `_xmpps-server`) rather than STARTTLS.
    pub direct_tls: bool,
}

/// What the SRV lookups found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// Records (possibly none: NXDOMAIN or no SRV).
    Records(Vec<Srv>),
    /// The domain says the service is not offered (a single record with target ".").
    Refused,
}

/// Orders SRV records per RFC 2782. `random(n)` returns a number in `0..=n` (the caller's RNG,
/// so that tests are deterministic).
pub fn order(mut records: Vec<Srv>, mut random: impl FnMut(u32) -> u32) -> Vec<Srv> {
    records.sort_by_key(|r| r.priority);
    let mut out = Vec::with_capacity(records.len());
    while !records.is_empty() {
        let prio = records[0].priority;
        let end = records
            .iter()
            .position(|r| r.priority != prio)
            .unwrap_or(records.len());
        let mut group: Vec<Srv> = records.drain(..end).collect();
        // Zero weights first, as the RFC says, so that they get a small chance.
        group.sort_by_key(|r| r.weight != 0);
        while !group.is_empty() {
            let total: u32 = group.iter().map(|r| u32::from(r.weight)).sum();
            let pick = random(total);
            let mut run = 0;
            let i = group
                .iter()
                .position(|r| {
                    run += u32::from(r.weight);
                    run >= pick
                })
                .unwrap_or(0);
            out.push(group.remove(i));
        }
    }
    out
}

/// The targets to try in order for an XMPP server domain: `_xmpps-server` (direct TLS) and
/// `_xmpp-server` answers merged by priority (direct TLS first among equals), else the domain
/// itself on `default_port`. Empty when both lookups say the service is refused.
pub fn xmpp_targets(
    domain: &str,
    direct: Lookup,
    starttls: Lookup,
    default_port: u16,
    mut random: impl FnMut(u32) -> u32,
) -> Vec<Target> {
    let refused = matches!(direct, Lookup::Refused) && matches!(starttls, Lookup::Refused);
    let records = |l: Lookup| match l {
        Lookup::Records(r) => r,
        Lookup::Refused => Vec::new(),
    };
    let mut both: Vec<(Srv, bool)> = Vec::new();
    both.extend(
        order(records(direct), &mut random)
            .into_iter()
            .map(|s| (s, true)),
    );
    both.extend(
        order(records(starttls), &mut random)
            .into_iter()
            .map(|s| (s, false)),
    );
    // Stable: within a priority the direct-TLS answers (pushed first) stay first.
    both.sort_by_key(|(s, _)| s.priority);
    let mut out: Vec<Target> = both
        .into_iter()
        .map(|(s, direct_tls)| Target {
            host: s.target.trim_end_matches('.').to_string(),
            port: s.port,
            direct_tls,
        })
        .collect();
    if out.is_empty() && !refused {
        out.push(Target {
            host: domain.to_string(),
            port: default_port,
            direct_tls: false,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn srv(priority: u16, weight: u16, target: &str, port: u16) -> Srv {
        Srv {
            priority,
            weight,
            target: target.into(),
            port,
        }
    }

    #[test]
    fn lower_priority_first_whatever_the_weight() {
        let out = order(vec![srv(20, 100, "b", 1), srv(10, 0, "a", 1)], |n| n);
        assert_eq!(
            out.iter().map(|s| s.target.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
    }

    #[test]
    fn weights_pick_in_proportion() {
        // With weights 1 and 3, a draw of 0..=1 picks the first, 2..=4 the second.
        let recs = vec![srv(10, 1, "light", 1), srv(10, 3, "heavy", 1)];
        assert_eq!(order(recs.clone(), |_| 1)[0].target, "light");
        assert_eq!(order(recs.clone(), |_| 2)[0].target, "heavy");
        assert_eq!(order(recs, |n| n)[0].target, "heavy");
    }

    #[test]
    fn targets_merge_direct_tls_and_fall_back() {
        let t = xmpp_targets(
            "p.test",
            Lookup::Records(vec![srv(10, 0, "tls.p.test.", 5270)]),
            Lookup::Records(vec![
                srv(5, 0, "a.p.test.", 5269),
                srv(10, 0, "b.p.test", 5269),
            ]),
            5269,
            |n| n,
        );
        let got: Vec<_> = t
            .iter()
            .map(|t| (t.host.as_str(), t.port, t.direct_tls))
            .collect();
        assert_eq!(
            got,
            [
                ("a.p.test", 5269, false),
                ("tls.p.test", 5270, true),
                ("b.p.test", 5269, false)
            ]
        );
        let none = xmpp_targets(
            "p.test",
            Lookup::Records(vec![]),
            Lookup::Records(vec![]),
            5269,
            |n| n,
        );
        assert_eq!(
            none,
            [Target {
                host: "p.test".into(),
                port: 5269,
                direct_tls: false
            }]
        );
        let refused = xmpp_targets("p.test", Lookup::Refused, Lookup::Refused, 5269, |n| n);
        assert!(refused.is_empty());
    }
}
