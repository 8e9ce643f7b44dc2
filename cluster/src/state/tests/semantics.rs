//! Semantic tests: bootstrap, revisions, modes, derived objects, invariants, membership,
//! warnings, snapshots and the digest.

use super::*;
use crate::state::routes::{reversed_pattern_for_domain, OPEN_FEDERATION_ROUTE_ID};
use crate::state::{WARN_EMAIL_FEDERATION_CHANGED, WARN_REGENERATE_S2S_CERT};
use herald_grpc::config::{
    EmailDomain, EmailFederationSettings, Management, PolicyAction, RoutingNodeSettings,
    StoreSnapshot, XmppFederationPolicy, XmppFederationSettings, XmppSecurityMode,
};
use ErrorCode::{FailedPrecondition, InvalidArgument, NotFound};

fn body_of(o: ConfigObject) -> Body {
    o.body.expect("body")
}

#[test]
fn bootstrap_state() {
    let h = Harness::new();
    let domains: Vec<String> =
        h.sm.list(ObjectKind::Domain)
            .iter()
            .map(ConfigObject::key)
            .collect();
    assert_eq!(domains, vec!["example.com", "localhost"]);
    assert!(h
        .sm
        .list(ObjectKind::Domain)
        .iter()
        .all(|o| o.revision == 1));
    let route = h.get(ObjectKind::StaticRoute, OPEN_FEDERATION_ROUTE_ID);
    assert_eq!(route.revision, 1);
    match body_of(route) {
        Body::StaticRoute(r) => {
            assert_eq!(r.destination_pattern, ".*");
            assert!(r.blocked && r.in_service);
            assert_eq!(r.transport, Transport::Tls as i32);
            assert_eq!(r.next_hop_port, 5061);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        h.sm.nodes().iter().map(|n| n.node_id).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert_eq!(h.get(ObjectKind::Node, "1").revision, 1);
    let fresh = StateMachine::bootstrap(&["Example.COM".to_string()], node(1)).expect("ok");
    assert_eq!(fresh.applied_index(), 1);
    assert!(fresh.get(ObjectKind::Domain, "example.com").is_some());
    let bad = StateMachine::bootstrap(&["bad_domain".to_string()], node(1));
    assert_eq!(bad.err().map(|e| e.code()), Some(InvalidArgument));
    let zero = StateMachine::bootstrap(&[], node(0));
    assert_eq!(zero.err().map(|e| e.code()), Some(InvalidArgument));
}

#[test]
fn singleton_defaults() {
    let h = Harness::new();
    let table: Vec<(ObjectKind, Body)> = vec![
        (
            ObjectKind::XmppFederation,
            Body::XmppFederation(XmppFederationSettings {
                security_mode: XmppSecurityMode::TlsRequired as i32,
                require_client_certificates: true,
                ..Default::default()
            }),
        ),
        (
            ObjectKind::XmppPolicy,
            Body::XmppPolicy(XmppFederationPolicy {
                default_action: PolicyAction::Allow as i32,
                exceptions: vec![],
            }),
        ),
        (
            ObjectKind::EmailFederation,
            Body::EmailFederation(EmailFederationSettings { enabled: false }),
        ),
        (
            ObjectKind::RoutingNode,
            Body::RoutingNode(RoutingNodeSettings::default()),
        ),
    ];
    for (kind, want) in table {
        let got = h.get(kind, "");
        assert_eq!(got.revision, 0, "{kind:?}");
        assert_eq!(got.body, Some(want), "{kind:?}");
        assert_eq!(h.sm.list(kind), vec![got], "{kind:?}");
        assert!(
            h.sm.get(kind, "x").is_none(),
            "singletons live under the empty key"
        );
    }
    match body_of(h.get(ObjectKind::FederationRouting, "")) {
        Body::FederationRouting(f) => assert_eq!(f.default_federation_routing_domain, "aol.com"),
        other => panic!("{other:?}"),
    }
    assert!(h.sm.list(ObjectKind::Unspecified).is_empty());
}

#[test]
fn revisions_and_expected_revision() {
    let mut h = Harness::new();
    let (r1, _) = h.ok(&create(domain("a.test")));
    assert_eq!(h.get(ObjectKind::Domain, "a.test").revision, r1);
    let e = h.err_with(
        &put_mode(domain("a.test"), WriteMode::Update, r1 + 100),
        FailedPrecondition,
        "",
    );
    assert_eq!(
        e.message,
        format!("revision {} does not match current revision {r1}", r1 + 100)
    );
    let (r2, _) = h.ok(&put_mode(domain("a.test"), WriteMode::Update, r1));
    assert!(r2 > r1);
    assert_eq!(h.get(ObjectKind::Domain, "a.test").revision, r2);
    h.err_with(
        &put_mode(domain("a.test"), WriteMode::Upsert, r1),
        FailedPrecondition,
        "",
    );
    h.err_with(
        &put_mode(domain("b.test"), WriteMode::Create, 7),
        FailedPrecondition,
        "",
    );
    h.err_with(
        &delete_at(ObjectKind::Domain, "a.test", r1),
        FailedPrecondition,
        "",
    );
    h.ok(&delete_at(ObjectKind::Domain, "a.test", r2));
    assert!(h.sm.get(ObjectKind::Domain, "a.test").is_none());
    h.err_with(&delete(ObjectKind::Domain, "a.test"), NotFound, "");

    // Singletons: a never-written one has revision 0.
    let settings = Body::XmppFederation(XmppFederationSettings {
        security_mode: XmppSecurityMode::TlsOptional as i32,
        ..Default::default()
    });
    h.err_with(
        &put_mode(settings.clone(), WriteMode::Upsert, 3),
        FailedPrecondition,
        "",
    );
    let (s1, _) = h.ok(&put_mode(settings.clone(), WriteMode::Update, 0));
    h.err_with(
        &put_mode(settings.clone(), WriteMode::Create, s1 - 1),
        FailedPrecondition,
        "",
    );
    let (s2, _) = h.ok(&put_mode(settings, WriteMode::Create, s1));
    assert_eq!(h.get(ObjectKind::XmppFederation, "").revision, s2);
}

#[test]
fn upsert_replaces_and_update_keeps_secrets() {
    let mut h = Harness::new();
    h.ok(&upsert(user_mail("bob@example.com", "bob@mail.test")));
    let mut changed = user_body("bob@example.com", "");
    changed.scram_sha256 = None;
    changed.scram_sha1 = Some(ScramSecret::default());
    changed.calendar_enabled = true;
    h.ok(&upsert(Body::User(changed)));
    match body_of(h.get(ObjectKind::User, "BOB@example.com")) {
        Body::User(u) => {
            assert!(u.calendar_enabled);
            assert_eq!(u.mail_id, "");
            assert_eq!(u.scram_sha256, Some(secret(4096)), "kept");
            assert_eq!(u.scram_sha1, Some(secret(4096)), "kept");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn normalisation_on_store() {
    let mut h = Harness::new();
    h.ok(&create(user_mail("Alice@Example.COM", "Alice.S@Mail.Test")));
    let u = h.get(ObjectKind::User, "alice@example.com");
    assert_eq!(u.key(), "alice@example.com");
    match body_of(u) {
        Body::User(u) => assert_eq!(u.mail_id, "Alice.S@mail.test"),
        other => panic!("{other:?}"),
    }
    h.ok(&create(acl("v6", AclPatternKind::Ip, "2001:DB8:0::1")));
    match body_of(h.get(ObjectKind::Acl, "v6")) {
        Body::Acl(a) => assert_eq!(a.pattern, "2001:db8::1"),
        other => panic!("{other:?}"),
    }
    h.ok(&create(route("r", ".COM.Example.*", "GW.example.com")));
    match body_of(h.get(ObjectKind::StaticRoute, "r")) {
        Body::StaticRoute(r) => {
            assert_eq!(r.destination_pattern, ".com.example.*");
            assert_eq!(r.next_hop, "gw.example.com");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(reversed_pattern_for_domain("Example.com"), ".com.example.*");
}

#[test]
fn derived_fields_in_input_are_ignored() {
    let mut h = Harness::new();
    h.ok(&create(Body::Domain(LocalDomain {
        name: "d.test".into(),
        description: String::new(),
        user_count: 99,
    })));
    let mut s = sip("partner.test");
    if let Body::SipDomain(d) = &mut s {
        d.incoming_acl_id = "forged".into();
    }
    h.ok(&create(s));
    let mut a = acl("manual", AclPatternKind::Domain, "x.test");
    if let Body::Acl(a) = &mut a {
        a.owner_federated_domain = "partner.test".into();
    }
    h.ok(&create(a));
    h.ok(&create(Body::EmailDomain(EmailDomain {
        name: "mail.test".into(),
        description: String::new(),
        management: Management::System as i32,
    })));
    let table: Vec<(ObjectKind, &str, Body)> = vec![
        (
            ObjectKind::Domain,
            "d.test",
            Body::Domain(LocalDomain {
                name: "d.test".into(),
                description: String::new(),
                user_count: 0,
            }),
        ),
        (
            ObjectKind::Acl,
            "manual",
            acl("manual", AclPatternKind::Domain, "x.test"),
        ),
        (
            ObjectKind::EmailDomain,
            "mail.test",
            Body::EmailDomain(EmailDomain {
                name: "mail.test".into(),
                description: String::new(),
                management: Management::Admin as i32,
            }),
        ),
    ];
    for (kind, key, want) in table {
        assert_eq!(h.get(kind, key).body, Some(want), "{kind:?}");
    }
    match body_of(h.get(ObjectKind::SipDomain, "partner.test")) {
        Body::SipDomain(d) => assert_eq!(d.incoming_acl_id, "auto-partner.test"),
        other => panic!("{other:?}"),
    }
    // The manual entry stays writable: its forged owner was dropped.
    h.ok(&delete(ObjectKind::Acl, "manual"));
}

#[test]
fn automatic_acl_lifecycle() {
    let mut h = Harness::new();
    let (rev, _) = h.ok(&create(sip("Partner.Test")));
    let a = h.get(ObjectKind::Acl, "auto-partner.test");
    assert_eq!(a.revision, rev);
    let want = IncomingAclEntry {
        id: "auto-partner.test".into(),
        description: "Automatic entry for SIP federated domain partner.test".into(),
        pattern_kind: AclPatternKind::Domain as i32,
        pattern: "partner.test".into(),
        owner_federated_domain: "partner.test".into(),
    };
    assert_eq!(a.body, Some(Body::Acl(want)));
    // Updating the domain keeps its entry untouched.
    h.ok(&update(sip("partner.test")));
    assert_eq!(h.get(ObjectKind::Acl, "auto-partner.test").revision, rev);
    assert_eq!(h.sm.list(ObjectKind::Acl).len(), 1);
    let e = h.err_with(
        &delete(ObjectKind::Acl, "auto-partner.test"),
        FailedPrecondition,
        "",
    );
    assert!(e.message.contains("partner.test"), "{e:?}");
    h.ok(&delete(ObjectKind::SipDomain, "partner.test"));
    assert!(h.sm.get(ObjectKind::Acl, "auto-partner.test").is_none());
    assert!(h.sm.list(ObjectKind::Acl).is_empty());
}

fn management(h: &Harness, name: &str) -> Option<(u64, i32)> {
    h.sm.get(ObjectKind::EmailDomain, name)
        .map(|o| match o.body {
            Some(Body::EmailDomain(d)) => (o.revision, d.management),
            _ => (o.revision, -1),
        })
}

#[test]
fn system_email_domains() {
    let system = Management::System as i32;
    let admin = Management::Admin as i32;
    let mut h = Harness::new();
    let (_, w) = h.ok(&create(user_mail("bob@example.com", "bob@mail.test")));
    assert_eq!(
        w,
        vec![WARN_REGENERATE_S2S_CERT.to_string()],
        "new email domain"
    );
    assert_eq!(management(&h, "mail.test"), Some((0, system)));
    let listed: Vec<String> =
        h.sm.list(ObjectKind::EmailDomain)
            .iter()
            .map(ConfigObject::key)
            .collect();
    assert_eq!(listed, vec!["mail.test"]);
    let (_, w) = h.ok(&create(user_mail("carol@example.com", "carol@mail.test")));
    assert!(w.is_empty(), "domain already listed: {w:?}");
    h.ok(&create(Body::EmailDomain(EmailDomain {
        name: "admin.test".into(),
        ..Default::default()
    })));
    let listed: Vec<String> =
        h.sm.list(ObjectKind::EmailDomain)
            .iter()
            .map(ConfigObject::key)
            .collect();
    assert_eq!(
        listed,
        vec!["admin.test", "mail.test"],
        "sorted, admin and derived"
    );
    assert_eq!(management(&h, "admin.test").map(|m| m.1), Some(admin));
    // An admin entry used by a user reports SYSTEM.
    h.ok(&update(user_mail("carol@example.com", "carol@admin.test")));
    assert_eq!(management(&h, "admin.test").map(|m| m.1), Some(system));
    h.err_with(
        &delete(ObjectKind::EmailDomain, "admin.test"),
        FailedPrecondition,
        "",
    );
    // EMD-3: the last user leaving a derived domain leaves an admin-managed entry behind.
    let (rev, w) = h.ok(&delete(ObjectKind::User, "bob@example.com"));
    assert!(w.is_empty(), "{w:?}");
    assert_eq!(management(&h, "mail.test"), Some((rev, admin)));
    let (_, w) = h.ok(&delete(ObjectKind::EmailDomain, "mail.test"));
    assert_eq!(w, vec![WARN_REGENERATE_S2S_CERT.to_string()]);
    h.ok(&delete(ObjectKind::User, "carol@example.com"));
    assert_eq!(management(&h, "admin.test").map(|m| m.1), Some(admin));
}

#[test]
fn user_count() {
    let mut h = Harness::new();
    for jid in ["a@example.com", "b@example.com", "c@localhost"] {
        h.ok(&create(user(jid)));
    }
    let count = |h: &Harness, d: &str| match h.get(ObjectKind::Domain, d).body {
        Some(Body::Domain(d)) => d.user_count,
        other => panic!("{other:?}"),
    };
    assert_eq!(count(&h, "example.com"), 2);
    assert_eq!(count(&h, "localhost"), 1);
    let e = h.err_with(
        &delete(ObjectKind::Domain, "example.com"),
        FailedPrecondition,
        "",
    );
    assert!(e.message.contains("2 user"), "{e:?}");
    h.ok(&delete(ObjectKind::User, "a@example.com"));
    h.ok(&delete(ObjectKind::User, "b@example.com"));
    assert_eq!(count(&h, "example.com"), 0);
    let (_, w) = h.ok(&delete(ObjectKind::Domain, "example.com"));
    assert_eq!(w, vec![WARN_REGENERATE_S2S_CERT.to_string()]);
}

#[test]
fn warnings() {
    let mut h = Harness::new();
    let (_, w) = h.ok(&create(domain("new.test")));
    assert_eq!(w, vec![WARN_REGENERATE_S2S_CERT.to_string()]);
    let (_, w) = h.ok(&update(domain("new.test")));
    assert!(w.is_empty(), "{w:?}");
    let (_, w) = h.ok(&create(Body::EmailDomain(EmailDomain {
        name: "m.test".into(),
        ..Default::default()
    })));
    assert_eq!(w, vec![WARN_REGENERATE_S2S_CERT.to_string()]);
    let (_, w) = h.ok(&confirmed(Body::EmailFederation(EmailFederationSettings {
        enabled: true,
    })));
    assert_eq!(w, vec![WARN_EMAIL_FEDERATION_CHANGED.to_string()]);
    let (_, w) = h.ok(&confirmed(Body::EmailFederation(EmailFederationSettings {
        enabled: true,
    })));
    assert!(w.is_empty(), "unchanged: {w:?}");
}

#[test]
fn predefined_route_editing() {
    let mut h = Harness::new();
    let mut r = route_body(OPEN_FEDERATION_ROUTE_ID, ".*", "fed.example.com");
    r.transport = Transport::Tcp as i32;
    r.next_hop_port = 5060;
    r.blocked = false;
    r.in_service = false;
    r.priority = 50;
    r.weight = 1;
    r.route_type = RouteType::User as i32;
    r.description = "open federation via the edge".into();
    let (rev, w) = h.ok(&update(Body::StaticRoute(r)));
    assert_eq!(w, vec!["fixed fields of the predefined open-federation route were kept: route_type, priority, weight".to_string()]);
    let got = h.get(ObjectKind::StaticRoute, OPEN_FEDERATION_ROUTE_ID);
    assert_eq!(got.revision, rev);
    match body_of(got) {
        Body::StaticRoute(r) => {
            assert_eq!(
                (r.next_hop.as_str(), r.next_hop_port),
                ("fed.example.com", 5060)
            );
            assert_eq!(r.transport, Transport::Tcp as i32);
            assert!(!r.blocked && !r.in_service);
            assert_eq!(r.route_type, RouteType::Domain as i32);
            assert_eq!((r.priority, r.weight), (1, 10));
            assert_eq!(r.description, "open federation via the edge");
        }
        other => panic!("{other:?}"),
    }
    // A state that never had the route (no bootstrap) refuses the reserved id.
    let mut bare = StateMachine::default();
    let out = bare.apply(1, &create(route(OPEN_FEDERATION_ROUTE_ID, ".*", "x.test")));
    assert!(
        matches!(out.result, Some(write_outcome::Result::Error(ref e)) if e.code() == FailedPrecondition)
    );
}

#[test]
fn membership() {
    let mut h = Harness::new();
    h.ok(&upsert(Body::RoutingNode(RoutingNodeSettings {
        node_order: vec![2, 3, 1],
    })));
    h.ok(&upsert(Body::XmppFederation(XmppFederationSettings {
        security_mode: XmppSecurityMode::TlsRequired as i32,
        enabled_nodes: vec![1, 2],
        ..Default::default()
    })));
    let idx = h.next;
    h.next += 1;
    h.sm.remove_node(idx, 2);
    assert_eq!(h.sm.applied_index(), idx);
    assert_eq!(
        h.sm.nodes().iter().map(|n| n.node_id).collect::<Vec<_>>(),
        vec![1, 3]
    );
    let rn = h.get(ObjectKind::RoutingNode, "");
    assert_eq!(rn.revision, idx);
    assert_eq!(
        rn.body,
        Some(Body::RoutingNode(RoutingNodeSettings {
            node_order: vec![3, 1]
        }))
    );
    match h.get(ObjectKind::XmppFederation, "") {
        ConfigObject {
            revision,
            body: Some(Body::XmppFederation(x)),
        } => {
            assert_eq!(revision, idx);
            assert_eq!(x.enabled_nodes, vec![1]);
        }
        other => panic!("{other:?}"),
    }
    // Removing an unknown node changes nothing but the applied index.
    let digest = h.sm.digest();
    h.sm.remove_node(h.next, 42);
    h.next += 1;
    assert_eq!(h.sm.digest(), digest);
    // Re-adding updates addresses; nodes() sorts numerically.
    h.sm.add_node(h.next, node(10));
    h.next += 1;
    let mut moved = node(3);
    moved.cluster_address = "10.0.0.3:7470".into();
    h.sm.add_node(h.next, moved.clone());
    h.next += 1;
    assert_eq!(h.sm.nodes(), vec![node(1), moved, node(10)]);
    h.err_with(
        &upsert(Body::RoutingNode(RoutingNodeSettings {
            node_order: vec![2],
        })),
        FailedPrecondition,
        "node_order",
    );
}

/// A state with at least one object of every kind, built through commands.
fn rich() -> Harness {
    let mut h = Harness::new();
    let cmds = vec![
        create(user_mail("bob@example.com", "bob@mail.test")),
        create(sip("partner.test")),
        create(acl("edge", AclPatternKind::Ip, "10.0.0.1")),
        create(route("r1", ".com.domaina.*", "gw.domaina.com")),
        create(Body::TlsPeer(herald_grpc::config::TlsPeerSubject {
            name: "edge.test".into(),
            description: String::new(),
        })),
        upsert(Body::XmppFederation(XmppFederationSettings {
            security_mode: 2,
            enabled_nodes: vec![1],
            ..Default::default()
        })),
        add_exception("*.xmpp.test", PolicyDirection::Inbound),
        confirmed(Body::EmailFederation(EmailFederationSettings {
            enabled: true,
        })),
        create(Body::EmailDomain(EmailDomain {
            name: "admin.test".into(),
            ..Default::default()
        })),
        upsert(Body::RoutingNode(RoutingNodeSettings {
            node_order: vec![1, 2],
        })),
        upsert(Body::FederationRouting(Default::default())),
        create(gateway("cas1", CalendarKind::ExchangeEws)),
        create(credentials(CalendarKind::ExchangeEws, "svc@example.com")),
    ];
    for c in &cmds {
        h.ok(c);
    }
    h
}

#[test]
fn snapshot_round_trip() {
    let h = rich();
    let snap = h.sm.to_snapshot();
    assert_eq!(snap.applied_index, h.sm.applied_index());
    let keys: Vec<(i32, String)> = snap
        .objects
        .iter()
        .map(|o| (o.kind() as i32, o.key()))
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted, "sorted by (kind, key)");
    let kinds: std::collections::BTreeSet<i32> = keys.iter().map(|k| k.0).collect();
    assert_eq!(kinds.len(), 15, "every kind present: {kinds:?}");
    let back = StateMachine::from_snapshot(&snap).expect("restore");
    assert_eq!(back, h.sm);
    assert_eq!(back.digest(), h.sm.digest());
    assert_eq!(
        back.list(ObjectKind::EmailDomain),
        h.sm.list(ObjectKind::EmailDomain)
    );

    let mut bad = snap.clone();
    bad.objects.push(ConfigObject::default());
    assert_eq!(
        StateMachine::from_snapshot(&bad).err().map(|e| e.code()),
        Some(ErrorCode::Internal)
    );
    let mut dup = snap.clone();
    dup.objects.push(snap.objects[0].clone());
    assert_eq!(
        StateMachine::from_snapshot(&dup).err().map(|e| e.code()),
        Some(ErrorCode::Internal)
    );
    let empty = StateMachine::from_snapshot(&StoreSnapshot::default()).expect("empty");
    assert_eq!(empty, StateMachine::default());
}

#[test]
fn digest_properties() {
    let a = rich();
    let mut b = rich();
    assert_eq!(a.sm.digest(), b.sm.digest(), "same commands, same digest");
    assert_eq!(a.sm, b.sm, "deterministic");
    assert_eq!(a.sm.digest().len(), 64);
    let before = b.sm.digest();
    b.sm.set_applied_index(b.sm.applied_index() + 100);
    b.next += 100;
    assert_eq!(
        b.sm.digest(),
        before,
        "the applied index is not part of the digest"
    );
    b.ok(&create(domain("one-more.test")));
    assert_ne!(b.sm.digest(), before, "one more write changes the digest");
    // Rejected commands (the harness checks the digest of each).
    b.err(&create(domain("one-more.test")));
    b.err(&delete(ObjectKind::Domain, "example.com"));
    b.err(&create(sip("example.com")));
    // The digest is kept as the state changes: a state rebuilt from a snapshot (objects in
    // any order) has the same one, and undoing a write gives back the one before it.
    let snap = b.sm.to_snapshot();
    use prost::Message;
    assert_eq!(
        b.sm.encode_snapshot(),
        snap.encode_to_vec(),
        "the clone-free encoding"
    );
    let rebuilt = StateMachine::from_snapshot(&snap).unwrap();
    assert_eq!(rebuilt.digest(), b.sm.digest());
    let mut reversed = snap.clone();
    reversed.objects.reverse();
    reversed.audit.reverse();
    assert_eq!(
        StateMachine::from_snapshot(&reversed).unwrap().digest(),
        b.sm.digest()
    );
    let with_one_more = b.sm.digest();
    b.ok(&delete(ObjectKind::Domain, "one-more.test"));
    assert_ne!(b.sm.digest(), with_one_more);
    // (The deletion leaves an audit record only when audited; the harness's writes are not.)
    assert_eq!(
        b.sm.digest(),
        before,
        "deleting the domain undoes its write"
    );
}

#[test]
fn get_normalises_keys_and_lists_sort() {
    let mut h = Harness::new();
    for id in ["b", "a", "c"] {
        h.ok(&create(acl(id, AclPatternKind::All, "")));
    }
    let ids: Vec<String> =
        h.sm.list(ObjectKind::Acl)
            .iter()
            .map(ConfigObject::key)
            .collect();
    assert_eq!(ids, vec!["a", "b", "c"]);
    assert!(h.sm.get(ObjectKind::Domain, "EXAMPLE.com").is_some());
    h.ok(&create(user("dave@example.com")));
    assert!(h.sm.get(ObjectKind::User, "Dave@Example.com").is_some());
    assert!(
        h.sm.get(ObjectKind::Acl, "A").is_none(),
        "ids are case-sensitive"
    );
    assert!(h.sm.get(ObjectKind::Unspecified, "").is_none());
}

#[test]
fn same_log_same_outcomes_and_state() {
    let log = vec![
        create(domain("a.test")),
        create(domain("a.test")),
        create(user_mail("x@a.test", "x@m.test")),
        create(sip("m.test")),
        create(sip("p.test")),
        add_exception("*.p.test", PolicyDirection::All),
        delete(ObjectKind::Domain, "a.test"),
        delete(ObjectKind::User, "x@a.test"),
        delete(ObjectKind::Domain, "a.test"),
        Command::default(),
    ];
    let mut a = Harness::new();
    let mut b = Harness::new();
    let outs_a: Vec<WriteOutcome> = log.iter().map(|c| a.apply(c)).collect();
    let outs_b: Vec<WriteOutcome> = log.iter().map(|c| b.apply(c)).collect();
    assert_eq!(outs_a, outs_b);
    let failures = outs_a
        .iter()
        .filter(|o| matches!(o.result, Some(write_outcome::Result::Error(_))))
        .count();
    assert_eq!(failures, 5, "{outs_a:?}");
    assert_eq!(a.sm, b.sm);
    assert_eq!(a.sm.digest(), b.sm.digest());
    assert_eq!(a.sm.applied_index(), a.next - 1);
}

#[test]
fn peek_gives_the_stored_object_without_derived_fields() {
    let mut h = Harness::new();
    h.ok(&create(user("A@Example.com")));
    let peeked = h.sm.peek(ObjectKind::User, "a@EXAMPLE.com").cloned();
    assert_eq!(peeked, Some(h.get(ObjectKind::User, "a@example.com")));
    assert!(h.sm.peek(ObjectKind::User, "b@example.com").is_none());
    // Derived fields (a domain's user count) are not filled in.
    match h
        .sm
        .peek(ObjectKind::Domain, "example.com")
        .and_then(|o| o.body.clone())
    {
        Some(Body::Domain(d)) => assert_eq!(d.user_count, 0),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        h.get(ObjectKind::Domain, "example.com").body,
        Some(Body::Domain(d)) if d.user_count == 1
    ));
}

#[test]
fn users_are_found_by_mail_address_while_it_is_unambiguous() {
    let mut h = Harness::new();
    h.ok(&create(user_mail("alice@example.com", "Alice.S@Mail.Test")));
    assert_eq!(
        h.sm.user_by_mail("alice.s@mail.test"),
        Some("alice@example.com")
    );
    assert!(h.sm.is_email_domain("mail.test"));
    // A second user with the same address: ambiguous, nobody is found.
    h.ok(&create(user_mail("bob@example.com", "alice.s@mail.test")));
    assert_eq!(h.sm.user_by_mail("alice.s@mail.test"), None);
    h.ok(&delete(ObjectKind::User, "bob@example.com"));
    assert_eq!(
        h.sm.user_by_mail("ALICE.S@mail.test"),
        Some("alice@example.com")
    );
    // Cleared address: gone from the index, and so is the email domain.
    h.ok(&upsert(user_mail("alice@example.com", "")));
    assert_eq!(h.sm.user_by_mail("alice.s@mail.test"), None);
    assert!(!h.sm.users_per_mail_domain.contains_key("mail.test"));
}
