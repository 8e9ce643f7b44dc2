//! Table tests of the checks (facts in, rows out), the name rule, chain parsing and the
//! resolver options.

use std::collections::BTreeMap;
use std::net::IpAddr;

use herald_grpc::config::StaticRoute;

use super::certs::name_matches;
use super::checks::{self, route_covers, Row, Verdict};
use super::facts::*;
use super::gather::{parse_resolver, resolv_conf_servers};

const NOW: i64 = 1_900_000_000;
const DAY: i64 = 86_400;

fn cert(names: &[&str], not_after: i64) -> CertFacts {
    CertFacts {
        chain: vec![CertInfo {
            subject: "CN=node".into(),
            issuer: "CN=ca".into(),
            dns_names: names.iter().map(|s| s.to_string()).collect(),
            common_name: Some("node".into()),
            not_before: NOW - DAY,
            not_after,
        }],
        links: vec![],
        top: ChainTop::Anchored("CN=ca".into()),
        error: None,
    }
}

fn node(id: u64, role: &str, applied: u64, digest: &str) -> NodeFact {
    NodeFact {
        id,
        address: format!("10.0.0.{id}:7470"),
        error: None,
        role: role.into(),
        leader_id: 1,
        applied_index: applied,
        config_digest: digest.into(),
        rtt_us: 400,
        clock_offset_ms: 0,
        live_nodes: vec![1, 2, 3],
        advertise_host: format!("10.0.0.{id}"),
        s2s_port: 5269,
        sip_tls_port: 5061,
        cert: cert(&["example.com", "*.example.com"], NOW + 300 * DAY),
    }
}

fn down(id: u64) -> NodeFact {
    NodeFact {
        id,
        address: format!("10.0.0.{id}:7470"),
        error: Some("connection refused".into()),
        advertise_host: format!("10.0.0.{id}"),
        ..Default::default()
    }
}

fn healthy() -> Facts {
    Facts {
        answered_by: 1,
        now_unix: NOW,
        nodes: vec![
            node(1, "leader", 40, "abc"),
            node(2, "follower", 40, "abc"),
            node(3, "follower", 39, "abc"),
        ],
        config: ConfigFacts {
            domains: vec!["example.com".into()],
            ..Default::default()
        },
        ..Default::default()
    }
}

fn verdicts(rows: &[Row]) -> Vec<(String, Verdict)> {
    rows.iter()
        .map(|r| (r.subject.clone(), r.verdict))
        .collect()
}

fn v(pairs: &[(&str, Verdict)]) -> Vec<(String, Verdict)> {
    pairs.iter().map(|(s, v)| (s.to_string(), *v)).collect()
}

use Verdict::{Fail, Pass, Warn};

#[test]
fn rfc6125_name_rule() {
    let cases = [
        ("a.com", "a.com", true),
        ("A.COM.", "a.com", true),
        ("*.a.com", "foo.a.com", true),
        ("*.a.com", "FOO.A.com", true),
        ("*.a.com", "bar.foo.a.com", false),
        ("*.a.com", "a.com", false),
        ("*.com", "a.com", false),
        ("f*.a.com", "foo.a.com", false),
        ("foo.*.com", "foo.a.com", false),
        ("*.*.a.com", "x.y.a.com", false),
        ("a.com", "b.a.com", false),
        ("", "a.com", false),
    ];
    for (pattern, name, want) in cases {
        assert_eq!(name_matches(pattern, name), want, "{pattern} vs {name}");
    }
}

#[test]
fn healthy_cluster_passes_everything() {
    let rows = checks::all(&healthy());
    let bad: Vec<&Row> = rows
        .iter()
        .filter(|r| r.verdict != Pass && r.check != "routing-node")
        .collect();
    assert!(bad.is_empty(), "{bad:#?}");
    assert!(rows.iter().all(|r| r.verdict == Pass || !r.fix.is_empty()));
    // Unset routing node with no SIP domain is only a warning.
    let rn: Vec<&Row> = rows.iter().filter(|r| r.check == "routing-node").collect();
    assert_eq!(rn.len(), 1);
    assert_eq!(rn[0].verdict, Warn);
}

#[test]
fn reachability_leader_digest_and_lag() {
    type Case = (
        &'static str,
        fn(&mut Facts),
        &'static str,
        Vec<(String, Verdict)>,
    );
    let cases: Vec<Case> = vec![
        (
            "all up",
            |_| {},
            "reachable",
            v(&[("node 1", Pass), ("node 2", Pass), ("node 3", Pass)]),
        ),
        (
            "one down",
            |f| f.nodes[2] = down(3),
            "reachable",
            v(&[("node 1", Pass), ("node 2", Pass), ("node 3", Fail)]),
        ),
        ("leader", |_| {}, "leader", v(&[("cluster", Pass)])),
        (
            "no leader",
            |f| f.nodes[0].role = "follower".into(),
            "leader",
            v(&[("cluster", Fail)]),
        ),
        (
            "two leaders",
            |f| f.nodes[1].role = "leader".into(),
            "leader",
            v(&[("cluster", Fail)]),
        ),
        (
            "leaders disagree",
            |f| f.nodes[2].leader_id = 2,
            "leader",
            v(&[("cluster", Warn)]),
        ),
        (
            "down node ignored by leader check",
            |f| f.nodes[2] = down(3),
            "leader",
            v(&[("cluster", Pass)]),
        ),
        (
            "digests agree",
            |_| {},
            "config-digest",
            v(&[("cluster", Pass)]),
        ),
        (
            "digests differ at different indexes",
            |f| f.nodes[2].config_digest = "old".into(),
            "config-digest",
            v(&[("cluster", Warn)]),
        ),
        (
            "digests differ at the same index",
            |f| f.nodes[1].config_digest = "evil".into(),
            "config-digest",
            v(&[("cluster", Fail)]),
        ),
        (
            "lag",
            |_| {},
            "applied-index",
            v(&[("node 2", Pass), ("node 3", Pass)]),
        ),
        (
            "lag warn",
            |f| f.nodes[0].applied_index = 40 + checks::LAG_WARN + 1,
            "applied-index",
            v(&[("node 2", Warn), ("node 3", Warn)]),
        ),
        (
            "lag of 40 is close",
            |f| f.nodes[2].applied_index = 0,
            "applied-index",
            v(&[("node 2", Pass), ("node 3", Pass)]),
        ),
        (
            "lag far",
            |f| f.nodes[0].applied_index = checks::LAG_FAIL + 100,
            "applied-index",
            v(&[("node 2", Fail), ("node 3", Fail)]),
        ),
        (
            "skew",
            |_| {},
            "clock-skew",
            v(&[("node 2", Pass), ("node 3", Pass)]),
        ),
        (
            "skew warn",
            |f| f.nodes[1].clock_offset_ms = 900,
            "clock-skew",
            v(&[("node 2", Warn), ("node 3", Pass)]),
        ),
        (
            "skew fail",
            |f| f.nodes[2].clock_offset_ms = -6_000,
            "clock-skew",
            v(&[("node 2", Pass), ("node 3", Fail)]),
        ),
        (
            "skew within the round-trip bound",
            |f| {
                f.nodes[1].rtt_us = 2_000_000;
                f.nodes[1].clock_offset_ms = 1_200;
            },
            "clock-skew",
            v(&[("node 2", Pass), ("node 3", Pass)]),
        ),
    ];
    for (name, edit, check, want) in cases {
        let mut f = healthy();
        edit(&mut f);
        let rows: Vec<Row> = checks::all(&f)
            .into_iter()
            .filter(|r| r.check == check)
            .collect();
        assert_eq!(verdicts(&rows), want, "{name}: {rows:#?}");
    }
}

#[test]
fn routing_node_and_fallbacks() {
    type Case = (
        &'static str,
        Vec<u64>,
        Vec<u64>,
        bool,
        Vec<(&'static str, &'static str, Verdict)>,
    );
    let cases: Vec<Case> = vec![
        (
            "unset, no SIP",
            vec![],
            vec![],
            false,
            vec![("routing-node", "cluster", Warn)],
        ),
        (
            "unset, SIP in use",
            vec![],
            vec![],
            true,
            vec![("routing-node", "cluster", Fail)],
        ),
        (
            "set, all live",
            vec![1, 2, 3],
            vec![],
            true,
            vec![
                ("routing-node", "node 1", Pass),
                ("routing-fallback", "node 2", Pass),
                ("routing-fallback", "node 3", Pass),
            ],
        ),
        (
            "designated down, fallback live",
            vec![3, 2],
            vec![3],
            true,
            vec![
                ("routing-node", "node 3", Warn),
                ("routing-fallback", "node 2", Pass),
            ],
        ),
        (
            "designated and fallback down",
            vec![3, 2],
            vec![2, 3],
            true,
            vec![
                ("routing-node", "node 3", Fail),
                ("routing-fallback", "node 2", Warn),
            ],
        ),
        (
            "not a member",
            vec![9],
            vec![],
            true,
            vec![("routing-node", "node 9", Fail)],
        ),
        (
            "fallback not a member",
            vec![1, 9],
            vec![],
            true,
            vec![
                ("routing-node", "node 1", Pass),
                ("routing-fallback", "node 9", Warn),
            ],
        ),
    ];
    for (name, order, down_ids, sip, want) in cases {
        let mut f = healthy();
        f.config.routing_order = order;
        if sip {
            f.config.sip_domains = vec!["partner.test".into()];
            f.config.static_routes = vec![route("partner.test")];
        }
        for id in down_ids {
            f.nodes[(id - 1) as usize] = down(id);
        }
        let rows: Vec<(&str, String, Verdict)> = checks::routing_node(&f)
            .into_iter()
            .map(|r| (r.check, r.subject, r.verdict))
            .collect();
        let want: Vec<(&str, String, Verdict)> = want
            .into_iter()
            .map(|(c, s, v)| (c, s.to_string(), v))
            .collect();
        assert_eq!(rows, want, "{name}");
    }
}

#[test]
fn certificate_rows() {
    type Case = (&'static str, fn(&mut Facts), Vec<(&'static str, Verdict)>);
    let cases: Vec<Case> = vec![
        (
            "good",
            |_| {},
            vec![
                ("certificate-names", Pass),
                ("certificate-chain", Pass),
                ("certificate-expiry", Pass),
            ],
        ),
        (
            "email domain not covered",
            |f| f.config.email_domains = vec!["mail.example.org".into()],
            vec![
                ("certificate-names", Fail),
                ("certificate-chain", Pass),
                ("certificate-expiry", Pass),
            ],
        ),
        (
            "wildcard covers one label only",
            |f| f.config.domains.push("a.b.example.com".into()),
            vec![
                ("certificate-names", Fail),
                ("certificate-chain", Pass),
                ("certificate-expiry", Pass),
            ],
        ),
        (
            "subdomain covered by the wildcard",
            |f| f.config.email_domains = vec!["mail.example.com".into()],
            vec![
                ("certificate-names", Pass),
                ("certificate-chain", Pass),
                ("certificate-expiry", Pass),
            ],
        ),
        (
            "expiring",
            |f| f.nodes[0].cert.chain[0].not_after = NOW + 10 * DAY,
            vec![
                ("certificate-names", Pass),
                ("certificate-chain", Pass),
                ("certificate-expiry", Warn),
            ],
        ),
        (
            "expired",
            |f| f.nodes[0].cert.chain[0].not_after = NOW - DAY,
            vec![
                ("certificate-names", Pass),
                ("certificate-chain", Pass),
                ("certificate-expiry", Fail),
            ],
        ),
        (
            "not yet valid",
            |f| f.nodes[0].cert.chain[0].not_before = NOW + DAY,
            vec![
                ("certificate-names", Pass),
                ("certificate-chain", Pass),
                ("certificate-expiry", Fail),
            ],
        ),
        (
            "unknown issuer",
            |f| f.nodes[0].cert.top = ChainTop::UnknownIssuer("CN=x".into()),
            vec![
                ("certificate-names", Pass),
                ("certificate-chain", Fail),
                ("certificate-expiry", Pass),
            ],
        ),
        (
            "self-signed leaf",
            |f| f.nodes[0].cert.top = ChainTop::SelfSigned,
            vec![
                ("certificate-names", Pass),
                ("certificate-chain", Warn),
                ("certificate-expiry", Pass),
            ],
        ),
        (
            "broken link",
            |f| {
                let c = &mut f.nodes[0].cert;
                c.chain.push(CertInfo {
                    subject: "CN=other".into(),
                    not_after: NOW + 900 * DAY,
                    ..Default::default()
                });
                c.links = vec![false];
            },
            vec![
                ("certificate-names", Pass),
                ("certificate-chain", Fail),
                ("certificate-expiry", Pass),
            ],
        ),
        (
            "intermediate expiring",
            |f| {
                let c = &mut f.nodes[0].cert;
                c.chain.push(CertInfo {
                    subject: "CN=int".into(),
                    not_after: NOW + 5 * DAY,
                    ..Default::default()
                });
                c.links = vec![true];
            },
            vec![
                ("certificate-names", Pass),
                ("certificate-chain", Pass),
                ("certificate-expiry", Warn),
            ],
        ),
        (
            "unparsable",
            |f| {
                f.nodes[0].cert = CertFacts {
                    error: Some("bad".into()),
                    ..Default::default()
                }
            },
            vec![("certificate", Fail)],
        ),
    ];
    for (name, edit, want) in cases {
        let mut f = healthy();
        f.nodes.truncate(1);
        edit(&mut f);
        let rows: Vec<(&str, Verdict)> = checks::certificates(&f)
            .into_iter()
            .map(|r| (r.check, r.verdict))
            .collect();
        assert_eq!(rows, want, "{name}");
    }
}

fn srv(target: &str, port: u16, addrs: &[&str]) -> SrvRecord {
    SrvRecord {
        priority: 10,
        weight: 10,
        port,
        target: target.into(),
        addrs: addrs
            .iter()
            .map(|a| a.parse::<IpAddr>().expect("ip"))
            .collect(),
    }
}

#[test]
fn dns_srv_rows() {
    type Case = (&'static str, Option<DnsAnswer>, bool, Verdict);
    let x = "_xmpp-server._tcp.example.com";
    let cases: Vec<Case> = vec![
        (
            "by address",
            Some(DnsAnswer::Records(vec![
                srv("xmpp1.example.com", 5269, &["10.0.0.1"]),
                srv("xmpp2.example.com", 5269, &["10.0.0.2"]),
            ])),
            true,
            Pass,
        ),
        (
            "by name",
            Some(DnsAnswer::Records(vec![srv(
                "node3.example.com",
                5269,
                &[],
            )])),
            true,
            Pass,
        ),
        (
            "wrong port",
            Some(DnsAnswer::Records(vec![srv(
                "xmpp1.example.com",
                5222,
                &["10.0.0.1"],
            )])),
            true,
            Fail,
        ),
        (
            "foreign host",
            Some(DnsAnswer::Records(vec![srv(
                "old.example.com",
                5269,
                &["192.0.2.1"],
            )])),
            true,
            Fail,
        ),
        (
            "missing, federation on",
            Some(DnsAnswer::NoRecords),
            true,
            Fail,
        ),
        (
            "missing, federation off",
            Some(DnsAnswer::NoRecords),
            false,
            Warn,
        ),
        (
            "not offered",
            Some(DnsAnswer::Records(vec![srv(".", 0, &[])])),
            false,
            Warn,
        ),
        (
            "lookup failed",
            Some(DnsAnswer::Failed("timeout".into())),
            true,
            Warn,
        ),
    ];
    for (name, answer, xmpp_on, want) in cases {
        let mut f = healthy();
        f.nodes[2].advertise_host = "node3.example.com".into();
        if xmpp_on {
            f.config.xmpp_federation_nodes = vec![1];
        }
        f.srv = BTreeMap::new();
        if let Some(a) = answer {
            f.srv.insert(x.to_string(), a);
        }
        let rows = checks::dns_srv(&f);
        assert_eq!(rows.len(), 1, "{name}");
        assert_eq!(rows[0].subject, x);
        assert_eq!(rows[0].verdict, want, "{name}: {:?}", rows[0]);
    }
    // The xmpps service has no Herald listener yet: any port of a node passes.
    let mut f = healthy();
    f.srv.insert(
        "_xmpps-server._tcp.example.com".into(),
        DnsAnswer::Records(vec![srv("n1", 5270, &["10.0.0.1"])]),
    );
    assert_eq!(checks::dns_srv(&f)[0].verdict, Pass);
    // SIP: the SIP TLS port.
    f.srv.insert(
        "_sipfederationtls._tcp.example.com".into(),
        DnsAnswer::Records(vec![srv("n1", 5061, &["10.0.0.1"])]),
    );
    f.host_addrs.insert("n1".into(), vec![]);
    let rows = checks::dns_srv(&f);
    assert_eq!(
        verdicts(&rows),
        v(&[
            ("_xmpps-server._tcp.example.com", Pass),
            ("_sipfederationtls._tcp.example.com", Pass)
        ])
    );
}

fn route(domain: &str) -> StaticRoute {
    StaticRoute {
        id: format!("r-{domain}"),
        destination_pattern: crate::cli::objects::reversed_pattern(domain).expect("pattern"),
        next_hop: "sip.partner.test".into(),
        next_hop_port: 5061,
        in_service: true,
        ..Default::default()
    }
}

#[test]
fn static_route_patterns() {
    let cases = [
        (".com.example.*", "example.com", true),
        (".com.example.*", "sip.example.com", true),
        (".com.example.*", "badexample.com", false),
        (".com.example.*", "example.org", false),
        (".*", "anything.test", true),
        (".com.example", "example.com", false),
    ];
    for (p, d, want) in cases {
        assert_eq!(route_covers(p, d), want, "{p} {d}");
    }
}

#[test]
fn aol_domains_borrow_the_default_routing_domains_route() {
    let mut f = healthy();
    f.config.sip_domains = vec!["hosted.test".into(), "plain.test".into()];
    f.config.aol_domains = vec!["hosted.test".into()];
    f.srv.insert(
        "_sipfederationtls._tcp.hosted.test".into(),
        DnsAnswer::NoRecords,
    );
    f.srv.insert(
        "_sipfederationtls._tcp.plain.test".into(),
        DnsAnswer::NoRecords,
    );
    // Unset default routing domain: aol.com, which has no route either.
    assert_eq!(
        verdicts(&checks::sip_routes(&f)),
        v(&[("hosted.test", Fail), ("plain.test", Fail)])
    );
    f.config.default_routing_domain = "GW.test".into();
    f.config.static_routes = vec![route("gw.test")];
    let rows = checks::sip_routes(&f);
    // Only the AOL-type domain goes through the default domain's route.
    assert_eq!(
        verdicts(&rows),
        v(&[("hosted.test", Pass), ("plain.test", Fail)])
    );
    assert!(
        rows[0]
            .detail
            .contains("default federation routing domain gw.test"),
        "{rows:?}"
    );
}

#[test]
fn sip_routes_and_probes() {
    let mut f = healthy();
    f.config.sip_domains = vec![
        "a.test".into(),
        "b.test".into(),
        "c.test".into(),
        "d.test".into(),
    ];
    let mut blocked = route("d.test");
    blocked.blocked = true;
    f.config.static_routes = vec![route("a.test"), blocked];
    f.srv.insert(
        "_sipfederationtls._tcp.b.test".into(),
        DnsAnswer::Records(vec![srv("sip.b.test", 5061, &[])]),
    );
    f.srv
        .insert("_sipfederationtls._tcp.c.test".into(), DnsAnswer::NoRecords);
    f.srv.insert(
        "_sipfederationtls._tcp.d.test".into(),
        DnsAnswer::Failed("timeout".into()),
    );
    assert_eq!(
        verdicts(&checks::sip_routes(&f)),
        v(&[
            ("a.test", Pass),
            ("b.test", Pass),
            ("c.test", Fail),
            ("d.test", Warn)
        ])
    );

    assert!(checks::probes(&f).is_empty(), "no rows without --probe");
    f.config.tls_peers = vec!["sip.a.test".into(), "edge.b.test".into()];
    let peer = |names: &[&str], cn: &str, not_after: i64| CertInfo {
        dns_names: names.iter().map(|s| s.to_string()).collect(),
        common_name: Some(cn.into()),
        not_after,
        ..Default::default()
    };
    let mut probes = BTreeMap::new();
    probes.insert(
        "a.test".into(),
        Probe::Connected {
            host: "sip.a.test".into(),
            port: 5061,
            peer: peer(&["*.a.test"], "x", NOW + DAY),
        },
    );
    probes.insert(
        "b.test".into(),
        Probe::Connected {
            host: "sip.b.test".into(),
            port: 5061,
            peer: peer(&[], "edge.b.test", NOW + DAY),
        },
    );
    probes.insert(
        "c.test".into(),
        Probe::Connected {
            host: "sip.c.test".into(),
            port: 5061,
            peer: peer(&["sip.c.test"], "sip.c.test", NOW + DAY),
        },
    );
    probes.insert(
        "d.test".into(),
        Probe::Failed {
            host: "sip.d.test".into(),
            port: 5061,
            error: "TLS handshake: refused".into(),
        },
    );
    probes.insert(
        "e.test".into(),
        Probe::Connected {
            host: "sip.a.test".into(),
            port: 5061,
            peer: peer(&["sip.a.test"], "x", NOW - DAY),
        },
    );
    f.probes = Some(probes);
    assert_eq!(
        verdicts(&checks::probes(&f)),
        v(&[
            ("a.test", Pass),
            ("b.test", Pass),
            ("c.test", Fail),
            ("d.test", Fail),
            ("e.test", Fail)
        ])
    );
}

#[test]
fn resolver_options() {
    assert_eq!(
        parse_resolver("10.0.0.53").expect("ip").to_string(),
        "10.0.0.53:53"
    );
    assert_eq!(
        parse_resolver("127.0.0.1:5353")
            .expect("ip:port")
            .to_string(),
        "127.0.0.1:5353"
    );
    assert_eq!(
        parse_resolver("[::1]:5353").expect("v6").to_string(),
        "[::1]:5353"
    );
    assert_eq!(parse_resolver("::1").expect("v6").to_string(), "[::1]:53");
    assert!(parse_resolver("dns.example.com").is_err());
    let conf = "# comment\nsearch example.com\nnameserver 10.0.0.2\nnameserver fe80::1%eth0\nnameserver bogus\noptions ndots:2\n";
    let got: Vec<String> = resolv_conf_servers(conf)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(got, vec!["10.0.0.2:53", "[fe80::1]:53"]);
}

#[test]
fn report_counts_and_shapes() {
    let mut f = healthy();
    f.nodes[2] = down(3);
    let rows = checks::all(&f);
    let out = super::report(1, &rows, crate::cli::OutputFormat::Json);
    let json: serde_json::Value = serde_json::from_str(&out.stdout).expect("json");
    assert_eq!(json["answered_by"], 1);
    assert_eq!(json["summary"]["fail"], 1);
    assert_eq!(out.failures, 1);
    let failed = json["checks"]
        .as_array()
        .expect("array")
        .iter()
        .find(|c| c["verdict"] == "fail")
        .expect("a failed row");
    assert_eq!(failed["check"], "reachable");
    assert_eq!(failed["subject"], "node 3");
    assert!(failed["fix"]
        .as_str()
        .expect("fix")
        .starts_with("Start node 3"));
    let table = super::report(1, &rows, crate::cli::OutputFormat::Table).stdout;
    assert!(table.starts_with("STATUS"), "{table}");
    assert!(
        table.contains("To fix:\n  fail reachable node 3: Start node 3"),
        "{table}"
    );
    assert!(
        table.contains("failed (gathered through node 1)"),
        "{table}"
    );
    let ok = super::report(1, &checks::all(&healthy()), crate::cli::OutputFormat::Table);
    assert_eq!(ok.failures, 0);
}
