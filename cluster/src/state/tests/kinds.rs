//! Table-driven validation tests, part 1: generic command errors, local domains, users,
//! SIP federated domains, ACL entries, static routes and TLS peer subjects.

use super::*;
use herald_grpc::config::{SetUserSecrets, TlsPeerSubject};
use ErrorCode::{AlreadyExists, FailedPrecondition, InvalidArgument, NotFound};

#[test]
fn generic_command_errors() {
    let no_body = Command {
        audit: None,
        op: Some(Op::Put(PutObject {
            object: Some(ConfigObject::default()),
            mode: WriteMode::Upsert as i32,
            expected_revision: 0,
            confirm: false,
            fence: None,
        })),
    };
    let no_object = Command {
        audit: None,
        op: Some(Op::Put(PutObject::default())),
    };
    run_table(vec![
        case(
            "no op",
            Command::default(),
            Want::Err(InvalidArgument, "op"),
        ),
        case("no object", no_object, Want::Err(InvalidArgument, "object")),
        case("no body", no_body, Want::Err(InvalidArgument, "object")),
        case(
            "unspecified mode",
            put_mode(domain("a.test"), WriteMode::Unspecified, 0),
            Want::Err(InvalidArgument, "mode"),
        ),
        case(
            "unknown mode",
            {
                let mut c = create(domain("a.test"));
                if let Some(Op::Put(p)) = c.op.as_mut() {
                    p.mode = 42;
                }
                c
            },
            Want::Err(InvalidArgument, "mode"),
        ),
        case(
            "delete kind unspecified",
            delete(ObjectKind::Unspecified, "x"),
            Want::Err(InvalidArgument, "kind"),
        ),
        case(
            "put node",
            upsert(Body::Node(node(9))),
            Want::Err(FailedPrecondition, ""),
        ),
        case(
            "delete node",
            delete(ObjectKind::Node, "2"),
            Want::Err(FailedPrecondition, ""),
        ),
        case(
            "delete singleton",
            delete(ObjectKind::XmppPolicy, ""),
            Want::Err(FailedPrecondition, ""),
        ),
    ]);
}

#[test]
fn local_domains() {
    run_table(vec![
        case("valid", create(domain("chat.test")), Want::Ok),
        case("upper case", create(domain("CHAT.Test")), Want::Ok),
        case("single label", create(domain("intranet")), Want::Ok),
        case(
            "empty",
            create(domain("")),
            Want::Err(InvalidArgument, "name"),
        ),
        case(
            "underscore",
            create(domain("a_b.test")),
            Want::Err(InvalidArgument, "name"),
        ),
        case(
            "leading dash",
            create(domain("-a.test")),
            Want::Err(InvalidArgument, "name"),
        ),
        case(
            "empty label",
            create(domain("a..test")),
            Want::Err(InvalidArgument, "name"),
        ),
        case(
            "trailing dot",
            create(domain("a.test.")),
            Want::Err(InvalidArgument, "name"),
        ),
        case(
            "label too long",
            create(domain(&format!("{}.test", "a".repeat(64)))),
            Want::Err(InvalidArgument, "name"),
        ),
        case(
            "exists",
            create(domain("example.com")),
            Want::Err(AlreadyExists, ""),
        ),
        case(
            "exists other case",
            create(domain("Example.COM")),
            Want::Err(AlreadyExists, ""),
        ),
        case(
            "update missing",
            update(domain("nope.test")),
            Want::Err(NotFound, ""),
        ),
        case("update existing", update(domain("example.com")), Want::Ok),
        case("upsert new", upsert(domain("new.test")), Want::Ok),
        case_after(
            "is a SIP domain",
            vec![create(sip("partner.test"))],
            create(domain("partner.test")),
            Want::Err(InvalidArgument, "name"),
        ),
        case_after(
            "is a policy exception",
            vec![add_exception("xmpp.test", PolicyDirection::All)],
            create(domain("xmpp.test")),
            Want::Err(InvalidArgument, "name"),
        ),
        case_after(
            "a wildcard exception is not exact",
            vec![add_exception("*.xmpp.test", PolicyDirection::All)],
            create(domain("xmpp.test")),
            Want::Ok,
        ),
        case_after(
            "may equal an email domain",
            vec![create(Body::EmailDomain(
                herald_grpc::config::EmailDomain {
                    name: "mail.test".into(),
                    ..Default::default()
                },
            ))],
            create(domain("mail.test")),
            Want::Ok,
        ),
        case("delete", delete(ObjectKind::Domain, "localhost"), Want::Ok),
        case(
            "delete missing",
            delete(ObjectKind::Domain, "nope.test"),
            Want::Err(NotFound, ""),
        ),
        case_after(
            "delete with users",
            vec![create(user("alice@example.com"))],
            delete(ObjectKind::Domain, "example.com"),
            Want::Err(FailedPrecondition, ""),
        ),
    ]);
}

#[test]
fn users() {
    let mut no_sha1 = user_body("bob@example.com", "");
    no_sha1.scram_sha1 = None;
    let mut weak = user_body("bob@example.com", "");
    weak.scram_sha256 = Some(secret(4095));
    let mut no_salt = user_body("bob@example.com", "");
    if let Some(s) = no_salt.scram_sha1.as_mut() {
        s.salt.clear();
    }
    let mut pinned = user_body("bob@example.com", "");
    pinned.pinned_home_node = 2;
    let mut pinned_bad = user_body("bob@example.com", "");
    pinned_bad.pinned_home_node = 7;
    let long = format!("{}@example.com", "a".repeat(1024));
    run_table(vec![
        case("valid", create(user("bob@example.com")), Want::Ok),
        case("localhost domain", create(user("bob@localhost")), Want::Ok),
        case("upper case", create(user("Bob@Example.com")), Want::Ok),
        case(
            "with mail id",
            create(user_mail("bob@example.com", "bob@mail.test")),
            Want::Ok,
        ),
        case("pinned to member", create(Body::User(pinned)), Want::Ok),
        case(
            "no at",
            create(user("bob")),
            Want::Err(InvalidArgument, "jid"),
        ),
        case(
            "empty local",
            create(user("@example.com")),
            Want::Err(InvalidArgument, "jid"),
        ),
        case(
            "slash",
            create(user("b/ob@example.com")),
            Want::Err(InvalidArgument, "jid"),
        ),
        case(
            "space",
            create(user("b ob@example.com")),
            Want::Err(InvalidArgument, "jid"),
        ),
        case(
            "quote",
            create(user("b'ob@example.com")),
            Want::Err(InvalidArgument, "jid"),
        ),
        case(
            "too long",
            create(user(&long)),
            Want::Err(InvalidArgument, "jid"),
        ),
        case(
            "bad domain",
            create(user("bob@bad_domain")),
            Want::Err(InvalidArgument, "jid"),
        ),
        case(
            "unknown domain",
            create(user("bob@other.test")),
            Want::Err(FailedPrecondition, "jid"),
        ),
        case(
            "mail id not an address",
            create(user_mail("bob@example.com", "bob")),
            Want::Err(InvalidArgument, "mail_id"),
        ),
        case(
            "mail id bad domain",
            create(user_mail("bob@example.com", "bob@abc.1om")),
            Want::Err(InvalidArgument, "mail_id"),
        ),
        case_after(
            "mail id in a SIP domain",
            vec![create(sip("partner.test"))],
            create(user_mail("bob@example.com", "bob@partner.test")),
            Want::Err(InvalidArgument, "mail_id"),
        ),
        case(
            "create without sha1",
            create(Body::User(no_sha1.clone())),
            Want::Err(InvalidArgument, "scram_sha1"),
        ),
        case(
            "iterations too low",
            create(Body::User(weak)),
            Want::Err(InvalidArgument, "scram_sha256"),
        ),
        case(
            "empty salt",
            create(Body::User(no_salt)),
            Want::Err(InvalidArgument, "scram_sha1"),
        ),
        case(
            "pinned to non-member",
            create(Body::User(pinned_bad)),
            Want::Err(FailedPrecondition, "pinned_home_node"),
        ),
        case_after(
            "update keeps secrets",
            vec![create(user("bob@example.com"))],
            update(Body::User(no_sha1)),
            Want::Ok,
        ),
        case_after(
            "exists",
            vec![create(user("bob@example.com"))],
            create(user("BOB@example.com")),
            Want::Err(AlreadyExists, ""),
        ),
        case(
            "update missing",
            update(user("bob@example.com")),
            Want::Err(NotFound, ""),
        ),
        case(
            "delete missing",
            delete(ObjectKind::User, "bob@example.com"),
            Want::Err(NotFound, ""),
        ),
    ]);
}

#[test]
fn user_secrets() {
    let set = |jid: &str, s256: Option<ScramSecret>, s1: Option<ScramSecret>| Command {
        audit: None,
        op: Some(Op::SetUserSecrets(SetUserSecrets {
            jid: jid.to_string(),
            scram_sha256: s256,
            scram_sha1: s1,
            expected_revision: 0,
        })),
    };
    let setup = || vec![create(user("bob@example.com"))];
    run_table(vec![
        case_after(
            "valid",
            setup(),
            set("Bob@example.com", Some(secret(8192)), Some(secret(8192))),
            Want::Ok,
        ),
        case(
            "no such user",
            set("bob@example.com", Some(secret(8192)), Some(secret(8192))),
            Want::Err(NotFound, ""),
        ),
        case_after(
            "missing sha1",
            setup(),
            set("bob@example.com", Some(secret(8192)), None),
            Want::Err(InvalidArgument, "scram_sha1"),
        ),
        case_after(
            "weak sha256",
            setup(),
            set("bob@example.com", Some(secret(10)), Some(secret(8192))),
            Want::Err(InvalidArgument, "scram_sha256"),
        ),
        case_after(
            "empty server key",
            setup(),
            set(
                "bob@example.com",
                Some(ScramSecret {
                    server_key: Vec::new(),
                    ..secret(4096)
                }),
                Some(secret(4096)),
            ),
            Want::Err(InvalidArgument, "scram_sha256"),
        ),
        case(
            "bad jid",
            set("bob", None, None),
            Want::Err(InvalidArgument, "jid"),
        ),
    ]);
    let mut h = Harness::new();
    h.ok(&create(user("bob@example.com")));
    let (rev, _) = h.ok(&set(
        "bob@example.com",
        Some(secret(9000)),
        Some(secret(9001)),
    ));
    let got = h.get(ObjectKind::User, "bob@example.com");
    assert_eq!(got.revision, rev);
    match got.body {
        Some(Body::User(u)) => {
            assert_eq!(u.scram_sha256.map(|s| s.iterations), Some(9000));
            assert_eq!(u.scram_sha1.map(|s| s.iterations), Some(9001));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn sip_domains() {
    let mut no_type = sip("partner.test");
    if let Body::SipDomain(d) = &mut no_type {
        d.integration_type = 0;
    }
    run_table(vec![
        case("valid", create(sip("partner.test")), Want::Ok),
        case(
            "bad name",
            create(sip("partner..test")),
            Want::Err(InvalidArgument, "domain"),
        ),
        case(
            "no type",
            create(no_type),
            Want::Err(InvalidArgument, "integration_type"),
        ),
        case(
            "local domain",
            create(sip("example.com")),
            Want::Err(InvalidArgument, "domain"),
        ),
        case_after(
            "email domain (admin)",
            vec![create(Body::EmailDomain(
                herald_grpc::config::EmailDomain {
                    name: "mail.test".into(),
                    ..Default::default()
                },
            ))],
            create(sip("mail.test")),
            Want::Err(InvalidArgument, "domain"),
        ),
        case_after(
            "email domain (system)",
            vec![create(user_mail("bob@example.com", "bob@mail.test"))],
            create(sip("mail.test")),
            Want::Err(InvalidArgument, "domain"),
        ),
        case_after(
            "exact policy exception",
            vec![add_exception("partner.test", PolicyDirection::All)],
            create(sip("partner.test")),
            Want::Err(InvalidArgument, "domain"),
        ),
        case_after(
            "covered by wildcard exception",
            vec![add_exception("*.partner.test", PolicyDirection::Inbound)],
            create(sip("a.partner.test")),
            Want::Err(InvalidArgument, "domain"),
        ),
        case_after(
            "sibling of an exception",
            vec![add_exception("*.partner.test", PolicyDirection::Inbound)],
            create(sip("otherpartner.test")),
            Want::Ok,
        ),
        case_after(
            "exists",
            vec![create(sip("partner.test"))],
            create(sip("partner.test")),
            Want::Err(AlreadyExists, ""),
        ),
        case(
            "delete missing",
            delete(ObjectKind::SipDomain, "x.test"),
            Want::Err(NotFound, ""),
        ),
    ]);
}

#[test]
fn acl_entries() {
    use AclPatternKind::{All, Domain, Fqdn, Ip};
    run_table(vec![
        case("ipv4", create(acl("edge", Ip, "10.10.10.1")), Want::Ok),
        case("ipv6", create(acl("edge6", Ip, "2001:db8::1")), Want::Ok),
        case(
            "fqdn",
            create(acl("exp", Fqdn, "expwyc.company.com")),
            Want::Ok,
        ),
        case("domain", create(acl("co", Domain, "company.com")), Want::Ok),
        case("all", create(acl("everyone", All, "")), Want::Ok),
        case(
            "bad ip",
            create(acl("x", Ip, "10.10.10")),
            Want::Err(InvalidArgument, "pattern"),
        ),
        case(
            "bad fqdn",
            create(acl("x", Fqdn, "a_b.com")),
            Want::Err(InvalidArgument, "pattern"),
        ),
        case(
            "empty domain",
            create(acl("x", Domain, "")),
            Want::Err(InvalidArgument, "pattern"),
        ),
        case(
            "all with pattern",
            create(acl("x", All, "a.com")),
            Want::Err(InvalidArgument, "pattern"),
        ),
        case(
            "no kind",
            create(acl("x", AclPatternKind::Unspecified, "a.com")),
            Want::Err(InvalidArgument, "pattern_kind"),
        ),
        case(
            "empty id",
            create(acl("", Ip, "10.0.0.1")),
            Want::Err(InvalidArgument, "id"),
        ),
        case(
            "id with space",
            create(acl("a b", Ip, "10.0.0.1")),
            Want::Err(InvalidArgument, "id"),
        ),
        case(
            "id too long",
            create(acl(&"a".repeat(65), Ip, "10.0.0.1")),
            Want::Err(InvalidArgument, "id"),
        ),
        case(
            "reserved prefix",
            create(acl("auto-x", Ip, "10.0.0.1")),
            Want::Err(InvalidArgument, "id"),
        ),
        case_after(
            "put owned entry",
            vec![create(sip("partner.test"))],
            upsert(acl("auto-partner.test", Domain, "partner.test")),
            Want::Err(FailedPrecondition, ""),
        ),
        case_after(
            "delete owned entry",
            vec![create(sip("partner.test"))],
            delete(ObjectKind::Acl, "auto-partner.test"),
            Want::Err(FailedPrecondition, ""),
        ),
        case_after(
            "delete manual entry",
            vec![create(acl("edge", Ip, "10.10.10.1"))],
            delete(ObjectKind::Acl, "edge"),
            Want::Ok,
        ),
    ]);
}

#[test]
fn static_routes() {
    let mut bad_port = route_body("r", ".com.a.*", "gw.a.com");
    bad_port.next_hop_port = 70000;
    let mut zero_port = route_body("r", ".com.a.*", "gw.a.com");
    zero_port.next_hop_port = 0;
    let mut no_transport = route_body("r", ".com.a.*", "gw.a.com");
    no_transport.transport = 0;
    let mut no_type = route_body("r", ".com.a.*", "gw.a.com");
    no_type.route_type = 0;
    let pattern = |p: &str| create(route("r", p, "gw.a.com"));
    let open = super::super::routes::OPEN_FEDERATION_ROUTE_ID;
    run_table(vec![
        case("valid", pattern(".com.domaina.*"), Want::Ok),
        case("match all", pattern(".*"), Want::Ok),
        case("tld only", pattern(".com.*"), Want::Ok),
        case(
            "ip next hop",
            create(route("r", ".com.a.*", "192.0.2.7")),
            Want::Ok,
        ),
        case(
            "not reversed form",
            pattern("domaina.com"),
            Want::Err(InvalidArgument, "destination_pattern"),
        ),
        case(
            "no trailing star",
            pattern(".com.a"),
            Want::Err(InvalidArgument, "destination_pattern"),
        ),
        case(
            "star alone",
            pattern("*"),
            Want::Err(InvalidArgument, "destination_pattern"),
        ),
        case(
            "empty label",
            pattern(".com..a.*"),
            Want::Err(InvalidArgument, "destination_pattern"),
        ),
        case(
            "bad label",
            pattern(".com.a_b.*"),
            Want::Err(InvalidArgument, "destination_pattern"),
        ),
        case(
            "empty next hop",
            create(route("r", ".*", "")),
            Want::Err(InvalidArgument, "next_hop"),
        ),
        case(
            "bad next hop",
            create(route("r", ".*", "gw..a")),
            Want::Err(InvalidArgument, "next_hop"),
        ),
        case(
            "port too big",
            create(Body::StaticRoute(bad_port)),
            Want::Err(InvalidArgument, "next_hop_port"),
        ),
        case(
            "port zero",
            create(Body::StaticRoute(zero_port)),
            Want::Err(InvalidArgument, "next_hop_port"),
        ),
        case(
            "no transport",
            create(Body::StaticRoute(no_transport)),
            Want::Err(InvalidArgument, "transport"),
        ),
        case(
            "no route type",
            create(Body::StaticRoute(no_type)),
            Want::Err(InvalidArgument, "route_type"),
        ),
        case(
            "bad id",
            create(route("a/b", ".*", "gw.a.com")),
            Want::Err(InvalidArgument, "id"),
        ),
        case(
            "delete predefined",
            delete(ObjectKind::StaticRoute, open),
            Want::Err(FailedPrecondition, ""),
        ),
        case(
            "predefined pattern change",
            update(route(open, ".com.a.*", "gw.a.com")),
            Want::Err(FailedPrecondition, "destination_pattern"),
        ),
        case(
            "predefined edit",
            update(route(open, ".*", "gw.a.com")),
            Want::Ok,
        ),
        case(
            "predefined unblocked without next hop",
            update(route(open, ".*", "")),
            Want::Err(InvalidArgument, "next_hop"),
        ),
        case(
            "predefined blocked without next hop",
            update({
                let mut r = route_body(open, ".*", "");
                r.blocked = true;
                Body::StaticRoute(r)
            }),
            Want::Ok,
        ),
        case(
            "create predefined again",
            create(route(open, ".*", "gw.a.com")),
            Want::Err(AlreadyExists, ""),
        ),
    ]);
}

#[test]
fn tls_peers() {
    let peer = |name: &str| {
        create(Body::TlsPeer(TlsPeerSubject {
            name: name.to_string(),
            description: String::new(),
        }))
    };
    run_table(vec![
        case("fqdn", peer("edge.partner.test"), Want::Ok),
        case("wildcard", peer("*.partner.test"), Want::Ok),
        case("bare star", peer("*"), Want::Err(InvalidArgument, "name")),
        case(
            "inner star",
            peer("a.*.test"),
            Want::Err(InvalidArgument, "name"),
        ),
        case("empty", peer(""), Want::Err(InvalidArgument, "name")),
        case(
            "space",
            peer("a b.test"),
            Want::Err(InvalidArgument, "name"),
        ),
        case_after(
            "exists",
            vec![peer("Edge.test")],
            peer("edge.test"),
            Want::Err(AlreadyExists, ""),
        ),
        case(
            "delete missing",
            delete(ObjectKind::TlsPeer, "edge.test"),
            Want::Err(NotFound, ""),
        ),
    ]);
}
