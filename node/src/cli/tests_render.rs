//! Unit tests of rendering: JSON keys and values of every kind, masking, tables.

use super::render::{self, Table, MASK};
use super::{CliError, OutputFormat};
use herald_grpc::admin::{ClusterStatusReply, MembershipReply, NodeStatus, WriteReply};
use herald_grpc::config::{
    config_object::Body, AclPatternKind, CalendarAuthMethod, CalendarCredentials, CalendarGateway,
    CalendarKind, ConfigObject, EmailDomain, EmailFederationSettings, FederationRoutingSettings,
    IncomingAclEntry, LocalDomain, PolicyAction, PolicyDirection, PolicyException,
    RoutingNodeSettings, ScramSecret, SipFederatedDomain, SipIntegrationType, StaticRoute,
    TlsPeerSubject, Transport, User, XmppFederationPolicy, XmppFederationSettings,
    XmppSecurityMode,
};
use serde_json::{json, Value};

fn obj(body: Body, revision: u64) -> ConfigObject {
    ConfigObject {
        revision,
        body: Some(body),
    }
}

fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    k.sort();
    k
}

fn sorted(k: &[&str]) -> Vec<String> {
    let mut k: Vec<String> = k.iter().map(|s| s.to_string()).collect();
    k.sort();
    k
}

#[test]
fn json_keys_of_every_kind() {
    let cases: Vec<(Body, Vec<&str>)> = vec![
        (
            Body::Domain(LocalDomain::default()),
            vec!["name", "description", "user_count"],
        ),
        (
            Body::SipDomain(SipFederatedDomain::default()),
            vec![
                "domain",
                "description",
                "integration_type",
                "direct_federation",
                "incoming_acl_id",
            ],
        ),
        (
            Body::Acl(IncomingAclEntry::default()),
            vec![
                "id",
                "description",
                "pattern_kind",
                "pattern",
                "owner_federated_domain",
            ],
        ),
        (
            Body::StaticRoute(StaticRoute::default()),
            vec![
                "id",
                "description",
                "destination_pattern",
                "next_hop",
                "next_hop_port",
                "route_type",
                "transport",
                "priority",
                "weight",
                "in_service",
                "blocked",
            ],
        ),
        (
            Body::TlsPeer(TlsPeerSubject::default()),
            vec!["name", "description"],
        ),
        (
            Body::XmppFederation(XmppFederationSettings::default()),
            vec![
                "security_mode",
                "require_client_certificates",
                "sasl_external_inbound",
                "sasl_outbound",
                "dialback_secret",
                "enabled_nodes",
            ],
        ),
        (
            Body::XmppPolicy(XmppFederationPolicy::default()),
            vec!["default_action", "exceptions"],
        ),
        (
            Body::EmailFederation(EmailFederationSettings::default()),
            vec!["enabled"],
        ),
        (
            Body::EmailDomain(EmailDomain::default()),
            vec!["name", "description", "management"],
        ),
        (
            Body::RoutingNode(RoutingNodeSettings::default()),
            vec!["node_order"],
        ),
        (
            Body::FederationRouting(FederationRoutingSettings::default()),
            vec![
                "federation_routing_fqdn",
                "default_federation_routing_domain",
                "virtual_ip_address",
                "server_name",
            ],
        ),
        (
            Body::CalendarGateway(CalendarGateway::default()),
            vec![
                "id",
                "description",
                "kind",
                "host",
                "port",
                "path",
                "eligible",
            ],
        ),
        (
            Body::CalendarCredentials(CalendarCredentials::default()),
            vec![
                "kind",
                "account_name",
                "password",
                "auth_method",
                "use_impersonation",
            ],
        ),
        (
            Body::Node(herald_grpc::config::NodeInfo::default()),
            vec!["node_id", "cluster_address", "admin_address"],
        ),
        (
            Body::User(User::default()),
            vec![
                "jid",
                "mail_id",
                "calendar_enabled",
                "calendar_mailbox",
                "calendar_gateway",
                "pinned_home_node",
            ],
        ),
    ];
    for (body, mut want) in cases {
        let kind = body.kind();
        want.push("revision");
        let v = render::object_json(&obj(body, 1), None);
        assert_eq!(keys(&v), sorted(&want), "{kind:?}");
    }
}

#[test]
fn user_json_has_home_node_and_no_secrets() {
    let u = User {
        jid: "a@example.com".into(),
        mail_id: "a@m.example".into(),
        calendar_enabled: true,
        calendar_mailbox: "box".into(),
        calendar_gateway: "cal1".into(),
        pinned_home_node: 0,
        scram_sha256: Some(ScramSecret {
            salt: b"saltsalt".to_vec(),
            iterations: 4096,
            stored_key: b"storedkey".to_vec(),
            server_key: b"serverkey".to_vec(),
        }),
        scram_sha1: None,
    };
    let o = obj(Body::User(u), 12);
    let text = render::object(&o, Some(3), OutputFormat::Json);
    let v: Value = serde_json::from_str(&text).expect("valid JSON");
    assert_eq!(
        v,
        json!({
            "jid": "a@example.com", "mail_id": "a@m.example", "calendar_enabled": true,
            "calendar_mailbox": "box", "calendar_gateway": "cal1", "pinned_home_node": 0, "home_node": 3, "revision": 12,
        })
    );
    let table = render::object(&o, Some(3), OutputFormat::Table);
    for secret in ["salt", "storedkey", "serverkey", "4096"] {
        assert!(
            !text.contains(secret) && !table.contains(secret),
            "{secret} leaked"
        );
    }
}

#[test]
fn enums_render_as_short_lowercase_names() {
    let cases: Vec<(Body, &str, &str)> = vec![
        (
            Body::SipDomain(SipFederatedDomain {
                integration_type: SipIntegrationType::Lync as i32,
                ..Default::default()
            }),
            "integration_type",
            "lync",
        ),
        (
            Body::SipDomain(SipFederatedDomain {
                integration_type: SipIntegrationType::GenericSip as i32,
                ..Default::default()
            }),
            "integration_type",
            "generic_sip",
        ),
        (
            Body::XmppFederation(XmppFederationSettings {
                security_mode: XmppSecurityMode::TlsRequired as i32,
                ..Default::default()
            }),
            "security_mode",
            "tls_required",
        ),
        (
            Body::Acl(IncomingAclEntry {
                pattern_kind: AclPatternKind::Fqdn as i32,
                ..Default::default()
            }),
            "pattern_kind",
            "fqdn",
        ),
        (
            Body::StaticRoute(StaticRoute {
                transport: Transport::Udp as i32,
                ..Default::default()
            }),
            "transport",
            "udp",
        ),
        (
            Body::StaticRoute(StaticRoute::default()),
            "route_type",
            "unspecified",
        ),
        (
            Body::CalendarGateway(CalendarGateway {
                kind: CalendarKind::ExchangeEws as i32,
                ..Default::default()
            }),
            "kind",
            "exchange_ews",
        ),
        (
            Body::CalendarCredentials(CalendarCredentials {
                auth_method: CalendarAuthMethod::Ntlmv2 as i32,
                ..Default::default()
            }),
            "auth_method",
            "ntlmv2",
        ),
        (
            Body::XmppPolicy(XmppFederationPolicy {
                default_action: PolicyAction::Deny as i32,
                ..Default::default()
            }),
            "default_action",
            "deny",
        ),
        (
            Body::EmailDomain(EmailDomain {
                management: 99,
                ..Default::default()
            }),
            "management",
            "unknown(99)",
        ),
    ];
    for (body, key, want) in cases {
        let v = render::object_json(&obj(body, 1), None);
        assert_eq!(v[key], json!(want), "{key}");
    }
    let policy = obj(
        Body::XmppPolicy(XmppFederationPolicy {
            default_action: PolicyAction::Allow as i32,
            exceptions: vec![PolicyException {
                domain_pattern: "*.example.com".into(),
                direction: PolicyDirection::Inbound as i32,
                description: "p".into(),
            }],
        }),
        2,
    );
    assert_eq!(
        render::object_json(&policy, None)["exceptions"],
        json!([{"domain_pattern": "*.example.com", "direction": "inbound", "description": "p"}])
    );
    let text = render::exceptions(&policy, OutputFormat::Table);
    assert_eq!(
        text,
        "DOMAIN_PATTERN  DIRECTION  DESCRIPTION\n*.example.com   inbound    p\n"
    );
}

#[test]
fn secrets_are_masked() {
    let creds = obj(
        Body::CalendarCredentials(CalendarCredentials {
            password: "hunter2".into(),
            ..Default::default()
        }),
        1,
    );
    let fed = obj(
        Body::XmppFederation(XmppFederationSettings {
            dialback_secret: "dbsecret".into(),
            ..Default::default()
        }),
        1,
    );
    for o in [&creds, &fed] {
        for f in [OutputFormat::Json, OutputFormat::Table] {
            let text = render::object(o, None, f);
            assert!(text.contains(MASK), "{text}");
            assert!(
                !text.contains("hunter2") && !text.contains("dbsecret"),
                "{text}"
            );
        }
    }
}

#[test]
fn domain_list_json_and_table() {
    let objects = vec![
        obj(
            Body::Domain(LocalDomain {
                name: "a.example".into(),
                description: "A".into(),
                user_count: 3,
            }),
            5,
        ),
        obj(
            Body::Domain(LocalDomain {
                name: "bb.example".into(),
                description: String::new(),
                user_count: 0,
            }),
            6,
        ),
    ];
    let v: Value =
        serde_json::from_str(&render::list(&objects, OutputFormat::Json)).expect("valid JSON");
    assert_eq!(
        v,
        json!([
            {"name": "a.example", "description": "A", "user_count": 3, "revision": 5},
            {"name": "bb.example", "description": "", "user_count": 0, "revision": 6},
        ])
    );
    assert_eq!(
        render::list(&objects, OutputFormat::Table),
        "NAME        DESCRIPTION  USER_COUNT  REVISION\n\
         a.example   A            3           5\n\
         bb.example  -            0           6\n"
    );
    assert_eq!(render::list(&[], OutputFormat::Json).trim(), "[]");
    assert_eq!(render::list(&[], OutputFormat::Table), "");
}

#[test]
fn table_renderer_aligns_and_trims() {
    let mut t = Table::new(&["A", "LONGER"]);
    t.push(vec!["xyz".into(), "1".into()]);
    t.push(vec!["é".into()]);
    t.push(vec!["p".into(), "q".into(), "extra".into()]);
    assert_eq!(t.render(), "A    LONGER\nxyz  1\né\np    q       extra\n");
    assert_eq!(Table::new(&["ONLY"]).render(), "ONLY\n");
}

#[test]
fn writes_render_revision_and_warnings() {
    let reply = WriteReply {
        revision: 42,
        warnings: vec!["regenerate the s2s certificate".into()],
    };
    let t = render::write(&reply, OutputFormat::Table);
    assert_eq!(t.stdout, "revision 42\n");
    assert_eq!(
        t.stderr,
        vec!["warning: regenerate the s2s certificate".to_string()]
    );
    let j = render::write(&reply, OutputFormat::Json);
    assert!(j.stderr.is_empty());
    let v: Value = serde_json::from_str(&j.stdout).expect("valid JSON");
    assert_eq!(
        v,
        json!({"revision": 42, "warnings": ["regenerate the s2s certificate"]})
    );
}

#[test]
fn cluster_status_and_membership() {
    let digest = "0123456789abcdef0123456789abcdef";
    let reply = ClusterStatusReply {
        leader_id: 1,
        digests_agree: true,
        nodes: vec![
            NodeStatus {
                id: 1,
                address: "127.0.0.1:7470".into(),
                role: "leader".into(),
                applied_index: 10,
                config_digest: digest.into(),
                term: 2,
                commit_index: 10,
                admin_address: "127.0.0.1:7471".into(),
                placement_epoch: 3,
                membership: "voter".into(),
                users_role: "leader".into(),
                users_applied_index: 40,
                users_digest: "u1".into(),
            },
            NodeStatus {
                id: 2,
                address: "127.0.0.2:7470".into(),
                role: "follower".into(),
                applied_index: 9,
                config_digest: digest.into(),
                term: 2,
                commit_index: 10,
                admin_address: "127.0.0.2:7471".into(),
                placement_epoch: 3,
                membership: "learner".into(),
                users_role: "follower".into(),
                users_applied_index: 40,
                users_digest: "u1".into(),
            },
        ],
        placement_epoch: 3,
        placement_nodes: vec![1, 2],
        placement_reason: "node 2 is back".into(),
        users_leader_id: 1,
        users_digests_agree: true,
    };
    let v: Value = serde_json::from_str(&render::cluster_status(&reply, OutputFormat::Json))
        .expect("valid JSON");
    assert_eq!(
        keys(&v),
        sorted(&[
            "leader_id",
            "digests_agree",
            "nodes",
            "placement",
            "users_leader_id",
            "users_digests_agree"
        ])
    );
    assert_eq!(
        v["placement"],
        json!({"epoch": 3, "nodes": [1, 2], "reason": "node 2 is back"})
    );
    assert_eq!(
        v["nodes"][1],
        json!({
            "id": 2, "address": "127.0.0.2:7470", "role": "follower", "membership": "learner",
            "applied_index": 9,
            "commit_index": 10, "term": 2, "config_digest": digest,
            "admin_address": "127.0.0.2:7471", "placement_epoch": 3,
            "users_group": {"role": "follower", "applied_index": 40, "digest": "u1"},
        })
    );
    assert_eq!(
        render::cluster_status(&reply, OutputFormat::Table),
        "ID  ADDRESS         ROLE      MEMBER   APPLIED_INDEX  TERM  CONFIG_DIGEST\n\
         1   127.0.0.1:7470  leader    voter    10             2     0123456789ab\n\
         2   127.0.0.2:7470  follower  learner  9              2     0123456789ab\n\
         leader: 1\ndigests agree: yes\n\
         placement: epoch 3 on nodes [1, 2] (node 2 is back)\n\
         user-state group: leader 1, digests agree: yes\n"
    );
    let m = MembershipReply {
        voters: vec![1, 2, 3],
    };
    assert_eq!(render::voters(&m, OutputFormat::Table), "voters: 1, 2, 3\n");
    let v: Value =
        serde_json::from_str(&render::voters(&m, OutputFormat::Json)).expect("valid JSON");
    assert_eq!(v, json!({"voters": [1, 2, 3]}));
}

#[test]
fn status_errors_carry_code_and_message() {
    let e: CliError = tonic::Status::invalid_argument("name: not a valid DNS name").into();
    assert_eq!(
        e.to_string(),
        "INVALID_ARGUMENT: name: not a valid DNS name"
    );
    let e: CliError = tonic::Status::failed_precondition("stale revision").into();
    assert_eq!(e.to_string(), "FAILED_PRECONDITION: stale revision");
}

#[test]
fn utc_iso_formats_the_unix_epoch_leap_days_and_negative_times() {
    assert_eq!(render::utc_iso(0), "1970-01-01T00:00:00Z");
    assert_eq!(render::utc_iso(951_782_400), "2000-02-29T00:00:00Z");
    assert_eq!(render::utc_iso(1_830_297_600), "2028-01-01T00:00:00Z");
    assert_eq!(render::utc_iso(1_709_251_199), "2024-02-29T23:59:59Z");
    assert_eq!(render::utc_iso(-1), "1969-12-31T23:59:59Z");
}
