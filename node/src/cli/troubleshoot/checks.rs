//! The checks: pure functions from [`Facts`] to [`Row`]s, one per thing checked, each with a
//! verdict and, unless it passed, the fix in one sentence.

use std::collections::BTreeSet;
use std::net::IpAddr;

use herald_grpc::config::StaticRoute;
use serde::Serialize;

use super::certs::covers;
use super::facts::{ChainTop, DnsAnswer, Facts, NodeFact, Probe, SrvRecord};

/// A check's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Pass,
    Warn,
    Fail,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Warn => "warn",
            Verdict::Fail => "fail",
        }
    }
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Row {
    /// Which check (`reachable`, `config-digest`, `certificate-names`, …).
    pub check: &'static str,
    /// What it looked at (`node 2`, `example.com`, `_xmpp-server._tcp.example.com`).
    pub subject: String,
    pub verdict: Verdict,
    /// What was found.
    pub detail: String,
    /// What to do about it (empty when it passed).
    pub fix: String,
}

fn row(
    check: &'static str,
    subject: impl Into<String>,
    verdict: Verdict,
    detail: impl Into<String>,
    fix: impl Into<String>,
) -> Row {
    Row {
        check,
        subject: subject.into(),
        verdict,
        detail: detail.into(),
        fix: if verdict == Verdict::Pass {
            String::new()
        } else {
            fix.into()
        },
    }
}

fn pass(check: &'static str, subject: impl Into<String>, detail: impl Into<String>) -> Row {
    row(check, subject, Verdict::Pass, detail, "")
}

/// Applied-index lag behind the leader that is still "close".
pub const LAG_WARN: u64 = 100;
/// Lag past which a node is failing to keep up.
pub const LAG_FAIL: u64 = 10_000;
/// Clock skew (beyond the round-trip uncertainty) worth a warning, ms.
pub const SKEW_WARN_MS: i64 = 500;
/// Clock skew that fails the check, ms (TLS validity, SIP and calendar times go wrong).
pub const SKEW_FAIL_MS: i64 = 5_000;
/// Certificates expiring sooner than this many days get a warning.
pub const EXPIRY_WARN_DAYS: i64 = 30;

/// Every check, in report order.
pub fn all(f: &Facts) -> Vec<Row> {
    let mut rows = Vec::new();
    rows.extend(reachable(f));
    rows.extend(leader(f));
    rows.extend(config_digest(f));
    rows.extend(applied_index(f));
    rows.extend(clock_skew(f));
    rows.extend(routing_node(f));
    rows.extend(certificates(f));
    rows.extend(dns_srv(f));
    rows.extend(sip_routes(f));
    rows.extend(probes(f));
    rows
}

fn node_label(n: &NodeFact) -> String {
    format!("node {}", n.id)
}

/// Every member answered the answering node.
pub fn reachable(f: &Facts) -> Vec<Row> {
    f.nodes
        .iter()
        .map(|n| match &n.error {
            None => pass("reachable", node_label(n), format!("answered ({} µs round trip)", n.rtt_us)),
            Some(e) => row(
                "reachable",
                node_label(n),
                Verdict::Fail,
                format!("{} did not answer node {}: {e}", n.address, f.answered_by),
                format!(
                    "Start node {} (`herald agent` with its usual flags) or open the node-to-node port between node {} and {}.",
                    n.id, f.answered_by, n.address
                ),
            ),
        })
        .collect()
}

/// One leader, known to every reachable node.
pub fn leader(f: &Facts) -> Vec<Row> {
    let up: Vec<&NodeFact> = f.nodes.iter().filter(|n| n.reachable()).collect();
    let leaders: Vec<u64> = up
        .iter()
        .filter(|n| n.role == "leader")
        .map(|n| n.id)
        .collect();
    let known: BTreeSet<u64> = up.iter().map(|n| n.leader_id).collect();
    let r = match leaders.as_slice() {
        [] => row(
            "leader",
            "cluster",
            Verdict::Fail,
            format!("no reachable node is the leader ({} of {} reachable)", up.len(), f.nodes.len()),
            "Bring a majority of the voters up and able to reach each other; until then no config write succeeds.",
        ),
        [l] if known.len() == 1 && known.contains(l) => {
            pass("leader", "cluster", format!("node {l}, known to every reachable node"))
        }
        [l] => row(
            "leader",
            "cluster",
            Verdict::Warn,
            format!("node {l} leads but the reachable nodes name leaders {known:?}"),
            "Run the check again in a few seconds; if it persists, look for a network partition between the nodes.",
        ),
        many => row(
            "leader",
            "cluster",
            Verdict::Fail,
            format!("several nodes claim to lead: {many:?}"),
            "Check the network between the nodes; a leader that cannot reach a majority steps down within an election timeout.",
        ),
    };
    vec![r]
}

/// Every reachable node holds the same config (same digest at the same applied index).
pub fn config_digest(f: &Facts) -> Vec<Row> {
    let up: Vec<&NodeFact> = f.nodes.iter().filter(|n| n.reachable()).collect();
    let digests: BTreeSet<&str> = up.iter().map(|n| n.config_digest.as_str()).collect();
    if digests.len() <= 1 {
        let d = digests.iter().next().map_or("", |d| &d[..d.len().min(12)]);
        return vec![pass(
            "config-digest",
            "cluster",
            format!("{} reachable nodes agree ({d})", up.len()),
        )];
    }
    // Same index, different digest: the replicas diverged.
    for a in &up {
        for b in &up {
            if a.id < b.id
                && a.applied_index == b.applied_index
                && a.config_digest != b.config_digest
            {
                return vec![row(
                    "config-digest",
                    "cluster",
                    Verdict::Fail,
                    format!(
                        "nodes {} and {} differ at applied index {}",
                        a.id, b.id, a.applied_index
                    ),
                    format!(
                        "Stop node {} and restart it with an empty data dir and --join so that it takes a snapshot from the leader; keep its old data dir for a bug report.",
                        b.id
                    ),
                )];
            }
        }
    }
    vec![row(
        "config-digest",
        "cluster",
        Verdict::Warn,
        "digests differ, but so do applied indexes (writes in flight)",
        "Run the check again when writes have settled.",
    )]
}

/// Every reachable node's applied index is close to the leader's.
pub fn applied_index(f: &Facts) -> Vec<Row> {
    let Some(leader) = f.nodes.iter().find(|n| n.reachable() && n.role == "leader") else {
        return Vec::new();
    };
    f.nodes
        .iter()
        .filter(|n| n.reachable() && n.id != leader.id)
        .map(|n| {
            let lag = leader.applied_index.saturating_sub(n.applied_index);
            let detail = format!("applied {} of the leader's {} (behind by {lag})", n.applied_index, leader.applied_index);
            let fix = format!(
                "Check node {}'s disk (fsync latency) and CPU and its link to node {}; a node this far behind catches up by snapshot once it keeps pace.",
                n.id, leader.id
            );
            let v = if lag > LAG_FAIL {
                Verdict::Fail
            } else if lag > LAG_WARN {
                Verdict::Warn
            } else {
                Verdict::Pass
            };
            row("applied-index", node_label(n), v, detail, fix)
        })
        .collect()
}

/// Clocks agree: the skew beyond what the round trip leaves uncertain.
pub fn clock_skew(f: &Facts) -> Vec<Row> {
    f.nodes
        .iter()
        .filter(|n| n.reachable() && n.id != f.answered_by)
        .map(|n| {
            let bound = (n.rtt_us / 2_000) as i64 + 1;
            let skew = (n.clock_offset_ms.abs() - bound).max(0);
            let detail = format!(
                "{:+} ms against node {} (± {bound} ms)",
                n.clock_offset_ms, f.answered_by
            );
            let v = if skew > SKEW_FAIL_MS {
                Verdict::Fail
            } else if skew > SKEW_WARN_MS {
                Verdict::Warn
            } else {
                Verdict::Pass
            };
            row(
                "clock-skew",
                node_label(n),
                v,
                detail,
                format!("Synchronise the clocks of nodes {} and {} with NTP (chrony or systemd-timesyncd).", n.id, f.answered_by),
            )
        })
        .collect()
}

fn is_live(f: &Facts, id: u64) -> bool {
    let answered = f.nodes.iter().find(|n| n.id == f.answered_by);
    f.nodes.iter().any(|n| n.id == id && n.reachable())
        && answered.is_none_or(|a| a.live_nodes.is_empty() || a.live_nodes.contains(&id))
}

/// The SIP routing node is set, a member and alive; its fallbacks are live.
pub fn routing_node(f: &Facts) -> Vec<Row> {
    let order = &f.config.routing_order;
    let members: BTreeSet<u64> = f.nodes.iter().map(|n| n.id).collect();
    let Some(&designated) = order.first() else {
        let needed = !f.config.sip_domains.is_empty();
        return vec![row(
            "routing-node",
            "cluster",
            if needed { Verdict::Fail } else { Verdict::Warn },
            if needed {
                "not set, but SIP domains are federated: inbound SIP has nowhere to land"
            } else {
                "not set (needed once SIP federation is used)"
            },
            "Set it with `herald routing-node set NODE [FALLBACK...]`.",
        )];
    };
    let mut rows = Vec::new();
    let live_fallback = order[1..].iter().copied().find(|id| is_live(f, *id));
    let d = if !members.contains(&designated) {
        row(
            "routing-node",
            format!("node {designated}"),
            Verdict::Fail,
            "the designated routing node is not a member of the cluster",
            "Name a member with `herald routing-node set NODE [FALLBACK...]`.",
        )
    } else if is_live(f, designated) {
        pass(
            "routing-node",
            format!("node {designated}"),
            "designated routing node is live",
        )
    } else {
        match live_fallback {
            Some(fb) => row(
                "routing-node",
                format!("node {designated}"),
                Verdict::Warn,
                format!("the designated routing node is down; fallback node {fb} has the role"),
                format!("Start node {designated} again, or make node {fb} the designated one."),
            ),
            None => row(
                "routing-node",
                format!("node {designated}"),
                Verdict::Fail,
                "the designated routing node and every fallback are down",
                format!("Start node {designated}, or add a live node as a fallback with `herald routing-node set`."),
            ),
        }
    };
    rows.push(d);
    for &fb in &order[1..] {
        let r = if !members.contains(&fb) {
            row(
                "routing-fallback",
                format!("node {fb}"),
                Verdict::Warn,
                "not a member of the cluster",
                "Remove it from `herald routing-node set` or add the node.",
            )
        } else if is_live(f, fb) {
            pass("routing-fallback", format!("node {fb}"), "live")
        } else {
            row(
                "routing-fallback",
                format!("node {fb}"),
                Verdict::Warn,
                "down",
                format!("Start node {fb} so that the routing role has somewhere to go."),
            )
        };
        rows.push(r);
    }
    rows
}

/// Each reachable node's certificate: names, chain, validity.
pub fn certificates(f: &Facts) -> Vec<Row> {
    let mut names: Vec<&str> = f
        .config
        .domains
        .iter()
        .chain(&f.config.email_domains)
        .map(String::as_str)
        .collect();
    names.sort_unstable();
    names.dedup();
    let mut rows = Vec::new();
    for n in f.nodes.iter().filter(|n| n.reachable()) {
        let subject = node_label(n);
        if let Some(e) = &n.cert.error {
            rows.push(row(
                "certificate",
                subject,
                Verdict::Fail,
                e.clone(),
                "Give the node a valid PEM chain with --tls-cert/--tls-key.",
            ));
            continue;
        }
        let Some(leaf) = n.cert.chain.first() else {
            continue;
        };
        // Names.
        let missing: Vec<&str> = names.iter().copied().filter(|d| !covers(leaf, d)).collect();
        rows.push(if missing.is_empty() {
            pass("certificate-names", subject.clone(), format!("covers {}", names.join(", ")))
        } else {
            row(
                "certificate-names",
                subject.clone(),
                Verdict::Fail,
                format!("does not cover {} (SAN: {})", missing.join(", "), leaf.dns_names.join(", ")),
                format!("Reissue node {}'s certificate with a DNS SAN for each of {} (a `*.` name covers one label only).", n.id, missing.join(", ")),
            )
        });
        // Chain.
        let broken = n.cert.links.iter().position(|ok| !ok);
        rows.push(match (broken, &n.cert.top) {
            (Some(i), _) => row(
                "certificate-chain",
                subject.clone(),
                Verdict::Fail,
                format!("certificate {} ({}) is not signed by the next one ({})", i + 1, n.cert.chain[i].subject, n.cert.chain[i + 1].subject),
                "Put the chain in order in the PEM file: the node's certificate first, then each issuer.",
            ),
            (None, ChainTop::UnknownIssuer(issuer)) => row(
                "certificate-chain",
                subject.clone(),
                Verdict::Fail,
                format!("incomplete: the chain ends at an issuer not in it and not trusted here ({issuer})"),
                format!("Append the intermediate certificate(s) up to a trusted root to node {}'s --tls-cert file.", n.id),
            ),
            (None, ChainTop::SelfSigned) if n.cert.chain.len() == 1 => row(
                "certificate-chain",
                subject.clone(),
                Verdict::Warn,
                "self-signed: federated servers will not trust it",
                "Use a certificate from a CA your federation peers trust.",
            ),
            (None, ChainTop::SelfSigned) => pass("certificate-chain", subject.clone(), format!("complete, {} certificates up to a root", n.cert.chain.len())),
            (None, ChainTop::Anchored(a)) => pass("certificate-chain", subject.clone(), format!("complete up to {a}")),
        });
        // Validity of every certificate in the chain.
        let (i, soonest) = n
            .cert
            .chain
            .iter()
            .enumerate()
            .min_by_key(|(_, c)| c.not_after)
            .unwrap_or((0, leaf));
        let days = (soonest.not_after - f.now_unix).div_euclid(86_400);
        let not_yet = n.cert.chain.iter().find(|c| c.not_before > f.now_unix);
        let which = if i == 0 {
            "the certificate".to_string()
        } else {
            format!("chain certificate {} ({})", i + 1, soonest.subject)
        };
        let renew = format!(
            "Renew node {}'s certificate and restart the node with the new --tls-cert/--tls-key.",
            n.id
        );
        rows.push(if soonest.not_after <= f.now_unix {
            row(
                "certificate-expiry",
                subject.clone(),
                Verdict::Fail,
                format!("{which} expired {} days ago", -days),
                renew,
            )
        } else if let Some(c) = not_yet {
            row(
                "certificate-expiry",
                subject.clone(),
                Verdict::Fail,
                format!("{} is not valid yet (the clock may be wrong)", c.subject),
                "Check the node's clock (NTP), then the certificate's start date.",
            )
        } else if days < EXPIRY_WARN_DAYS {
            row(
                "certificate-expiry",
                subject.clone(),
                Verdict::Warn,
                format!("{which} expires in {days} days"),
                renew,
            )
        } else {
            pass(
                "certificate-expiry",
                subject.clone(),
                format!("valid for {days} more days"),
            )
        });
    }
    rows
}

/// The three SRV services checked per local domain, and which node port each must name.
/// Which port of a node an SRV record must name (`None`: any).
pub type PortOf = Option<fn(&NodeFact) -> u16>;

pub const SRV_SERVICES: [(&str, PortOf); 3] = [
    ("_xmpp-server._tcp", Some(|n| n.s2s_port)),
    ("_xmpps-server._tcp", None),
    ("_sipfederationtls._tcp", Some(|n| n.sip_tls_port)),
];

/// The SRV query names of `domain`.
pub fn srv_names(domain: &str) -> Vec<String> {
    SRV_SERVICES
        .iter()
        .map(|(s, _)| format!("{s}.{domain}"))
        .collect()
}

/// The node an SRV target designates (by name, or by one of the addresses it resolved to).
fn node_of<'a>(f: &'a Facts, rec: &SrvRecord) -> Option<&'a NodeFact> {
    f.nodes.iter().find(|n| {
        let host = n.advertise_host.trim_end_matches('.').to_ascii_lowercase();
        if host.is_empty() {
            return false;
        }
        if host == rec.target {
            return true;
        }
        let mut ips: Vec<IpAddr> = f.host_addrs.get(&host).cloned().unwrap_or_default();
        if let Ok(ip) = host.parse::<IpAddr>() {
            ips.push(ip);
        }
        rec.addrs.iter().any(|a| ips.contains(a))
    })
}

/// SRV records of every local domain point at this cluster's nodes and ports.
pub fn dns_srv(f: &Facts) -> Vec<Row> {
    let xmpp_on = !f.config.xmpp_federation_nodes.is_empty();
    let sip_on = !f.config.sip_domains.is_empty();
    let mut rows = Vec::new();
    for domain in &f.config.domains {
        for (service, port_of) in SRV_SERVICES {
            let name = format!("{service}.{domain}");
            let Some(answer) = f.srv.get(&name) else {
                continue;
            };
            let in_use = if service.contains("sip") {
                sip_on
            } else {
                xmpp_on
            };
            let publish = format!(
                "Publish `{name}` SRV records naming the cluster's nodes ({}).",
                advertised(f, port_of)
            );
            rows.push(match answer {
                DnsAnswer::Failed(e) => row(
                    "dns-srv",
                    name.clone(),
                    Verdict::Warn,
                    format!("lookup failed: {e}"),
                    "Check the resolver (`--dns-resolver IP[:PORT]` picks another) and run again.",
                ),
                DnsAnswer::NoRecords => row(
                    "dns-srv",
                    name.clone(),
                    if in_use { Verdict::Fail } else { Verdict::Warn },
                    if in_use {
                        "no record, but this federation is enabled"
                    } else {
                        "no record (needed once this federation is enabled)"
                    },
                    publish,
                ),
                DnsAnswer::Records(recs) if recs.iter().all(|r| r.target == ".") => row(
                    "dns-srv",
                    name.clone(),
                    if in_use { Verdict::Fail } else { Verdict::Warn },
                    "the record says the service is not offered (target `.`)",
                    publish,
                ),
                DnsAnswer::Records(recs) => {
                    let mut wrong = Vec::new();
                    let mut ok = Vec::new();
                    for r in recs.iter().filter(|r| r.target != ".") {
                        match node_of(f, r) {
                            Some(n) if port_of.is_none_or(|p| p(n) == r.port) => {
                                ok.push(format!("{}:{} (node {})", r.target, r.port, n.id))
                            }
                            Some(n) => wrong.push(format!(
                                "{}:{} (node {} listens on {})",
                                r.target,
                                r.port,
                                n.id,
                                port_of.map_or(0, |p| p(n))
                            )),
                            None => wrong.push(format!(
                                "{}:{} (not a node of this cluster)",
                                r.target, r.port
                            )),
                        }
                    }
                    if wrong.is_empty() {
                        pass("dns-srv", name.clone(), ok.join(", "))
                    } else {
                        row(
                            "dns-srv",
                            name.clone(),
                            Verdict::Fail,
                            wrong.join(", "),
                            publish,
                        )
                    }
                }
            });
        }
    }
    rows
}

fn advertised(f: &Facts, port_of: PortOf) -> String {
    f.nodes
        .iter()
        .filter(|n| !n.advertise_host.is_empty())
        .map(|n| match port_of {
            Some(p) => format!("{}:{}", n.advertise_host, p(n)),
            None => n.advertise_host.clone(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether a static route's destination pattern (`.com.example.*`, `.*`) covers `domain`.
pub fn route_covers(pattern: &str, domain: &str) -> bool {
    if pattern == ".*" {
        return true;
    }
    let Some(inner) = pattern.strip_suffix(".*") else {
        return false;
    };
    let reversed: String = domain
        .trim_end_matches('.')
        .to_ascii_lowercase()
        .rsplit('.')
        .map(|l| format!(".{l}"))
        .collect();
    let inner = inner.to_ascii_lowercase();
    reversed == inner || reversed.starts_with(&format!("{inner}."))
}

/// The usable static route for `domain`: in service, not blocked, with a next hop; the most
/// specific pattern wins, then the lowest priority value.
pub fn static_route_for<'a>(routes: &'a [StaticRoute], domain: &str) -> Option<&'a StaticRoute> {
    routes
        .iter()
        .filter(|r| {
            r.in_service
                && !r.blocked
                && !r.next_hop.is_empty()
                && route_covers(&r.destination_pattern, domain)
        })
        .min_by_key(|r| (std::cmp::Reverse(r.destination_pattern.len()), r.priority))
}

/// The SRV query of a federated SIP domain.
pub fn sip_srv_name(domain: &str) -> String {
    format!("_sipfederationtls._tcp.{domain}")
}

/// The default federation routing domain (RTE-8): as set, else `aol.com`.
pub fn default_routing_domain(c: &super::facts::ConfigFacts) -> String {
    if c.default_routing_domain.is_empty() {
        "aol.com".to_string()
    } else {
        c.default_routing_domain.to_ascii_lowercase()
    }
}

/// A domain's own route: `Ok(detail)` for a static route or an SRV target, `Err` with the
/// verdict and detail otherwise.
fn own_route(f: &Facts, d: &str) -> Result<String, (Verdict, String)> {
    if let Some(r) = static_route_for(&f.config.static_routes, d) {
        return Ok(format!(
            "static route {} → {}:{}",
            r.id, r.next_hop, r.next_hop_port
        ));
    }
    match f.srv.get(&sip_srv_name(d)) {
        Some(DnsAnswer::Records(recs)) if recs.iter().any(|r| r.target != ".") => {
            let best = recs
                .iter()
                .filter(|r| r.target != ".")
                .min_by_key(|r| r.priority)
                .map(|r| format!("{}:{}", r.target, r.port))
                .unwrap_or_default();
            Ok(format!("SRV → {best}"))
        }
        Some(DnsAnswer::Failed(e)) => Err((
            Verdict::Warn,
            format!("no static route; SRV lookup failed: {e}"),
        )),
        _ => Err((
            Verdict::Fail,
            "no static route and no SRV record".to_string(),
        )),
    }
}

/// Every federated SIP domain has a route: a static route or an SRV record; a domain of type
/// AOL without either is reached through the default federation routing domain's (RTE-7).
pub fn sip_routes(f: &Facts) -> Vec<Row> {
    f.config
        .sip_domains
        .iter()
        .map(|d| {
            let own = match own_route(f, d) {
                Ok(detail) => return pass("sip-route", d.clone(), detail),
                Err(e) => e,
            };
            let default = default_routing_domain(&f.config);
            if f.config.aol_domains.iter().any(|a| a == d) && &default != d {
                if let Ok(detail) = own_route(f, &default) {
                    return pass("sip-route", d.clone(), format!("no route of its own; through the default federation routing domain {default}: {detail}"));
                }
            }
            let fix = format!("Add a static route (`herald static-route add ID --domain {d} --next-hop HOST`) or ask {d} to publish `{}`.", sip_srv_name(d));
            let (verdict, detail) = own;
            row("sip-route", d.clone(), verdict, detail, fix)
        })
        .collect()
}

/// `--probe`: the next hop of each federated SIP domain completes a TLS handshake with a
/// certificate naming one of the `tls-peer` subjects.
pub fn probes(f: &Facts) -> Vec<Row> {
    let Some(probes) = &f.probes else {
        return Vec::new();
    };
    probes
        .iter()
        .map(|(domain, p)| match p {
            Probe::Failed { host, port, error } => row(
                "tls-probe",
                domain.clone(),
                Verdict::Fail,
                if host.is_empty() { error.clone() } else { format!("{host}:{port}: {error}") },
                format!("Check that {domain}'s federation edge listens for TLS there and that this machine can reach it."),
            ),
            Probe::Connected { host, port, peer } => {
                let mut names: Vec<String> = peer.dns_names.clone();
                names.extend(peer.common_name.iter().map(|c| c.to_ascii_lowercase()));
                let matched = f.config.tls_peers.iter().find(|want| names.iter().any(|n| super::certs::name_matches(n, want)));
                let expired = peer.not_after <= f.now_unix;
                match matched {
                    Some(m) if !expired => pass("tls-probe", domain.clone(), format!("{host}:{port} presents {m}")),
                    Some(_) => row("tls-probe", domain.clone(), Verdict::Fail, format!("{host}:{port}: its certificate has expired"), format!("Ask {domain} to renew its certificate.")),
                    None => row(
                        "tls-probe",
                        domain.clone(),
                        Verdict::Fail,
                        format!("{host}:{port} presents {} — none is a tls-peer subject", if names.is_empty() { "no names".to_string() } else { names.join(", ") }),
                        format!("Add the peer's name with `herald tls-peer add NAME` if {domain} is who you expect."),
                    ),
                }
            }
        })
        .collect()
}
