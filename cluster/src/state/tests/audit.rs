//! The audit log: appended with the change in one apply, bounded, redacted, replicated through
//! snapshots and the digest.

use super::*;
use crate::state::audit::{redact, summary, DEFAULT_KEEP, REDACTED};
use herald_grpc::config::{
    AuditContext, RemovePolicyException, SetUserSecrets, XmppFederationSettings, XmppSecurityMode,
};

fn ctx(keep: u32) -> AuditContext {
    AuditContext {
        actor: "token:0a1b2c3d".into(),
        node_id: 2,
        at_ms: 1_700_000_000_123,
        keep,
    }
}

fn audited(mut cmd: Command, keep: u32) -> Command {
    cmd.audit = Some(ctx(keep));
    cmd
}

#[test]
fn an_admin_change_and_its_record_are_applied_together() {
    let mut h = Harness::new();
    let (rev, _) = h.ok(&audited(create(domain("d.test")), 0));
    let log = h.sm.audit_log();
    assert_eq!(log.len(), 1);
    let r = &log[0];
    assert_eq!(r.index, rev);
    assert_eq!(r.actor, "token:0a1b2c3d");
    assert_eq!(r.node_id, 2);
    assert_eq!(r.at_ms, 1_700_000_000_123);
    assert_eq!(r.kind(), ObjectKind::Domain);
    assert_eq!(r.key, "d.test");
    assert_eq!(r.operation, "create");
    assert!(r.summary.starts_with("LocalDomain {"), "{}", r.summary);

    h.ok(&audited(update(domain("d.test")), 0));
    h.ok(&audited(delete(ObjectKind::Domain, "d.test"), 0));
    let ops: Vec<&str> =
        h.sm.audit_log()
            .iter()
            .map(|r| r.operation.as_str())
            .collect();
    assert_eq!(ops, ["create", "update", "delete"]);

    // A rejected command changes nothing and records nothing.
    let e = h.err(&audited(delete(ObjectKind::Domain, "d.test"), 0));
    assert_eq!(e.code(), ErrorCode::NotFound);
    assert_eq!(h.sm.audit_log().len(), 3);
}

#[test]
fn writes_without_an_audit_context_leave_no_record() {
    let mut h = Harness::new();
    h.ok(&create(domain("d.test")));
    h.ok(&create(user("a@example.com")));
    assert!(h.sm.audit_log().is_empty());
}

#[test]
fn the_log_keeps_the_newest_n_identically_everywhere() {
    let mut a = Harness::new();
    for i in 0..7 {
        a.ok(&audited(create(domain(&format!("d{i}.test"))), 3));
    }
    let keys: Vec<&str> = a.sm.audit_log().iter().map(|r| r.key.as_str()).collect();
    assert_eq!(keys, ["d4.test", "d5.test", "d6.test"]);
    // Replay on another node: the same log and digest; through a snapshot too.
    let mut b = Harness::new();
    for i in 0..7 {
        b.ok(&audited(create(domain(&format!("d{i}.test"))), 3));
    }
    assert_eq!(a.sm.digest(), b.sm.digest());
    let restored = StateMachine::from_snapshot(&a.sm.to_snapshot()).unwrap();
    assert_eq!(restored.audit_log(), a.sm.audit_log());
    assert_eq!(restored.digest(), a.sm.digest());
    // The record changes the digest: an audit log that differs is a state that differs.
    let mut c = Harness::new();
    for i in 0..7 {
        c.ok(&create(domain(&format!("d{i}.test"))));
    }
    assert_ne!(c.sm.digest(), a.sm.digest());
    assert_eq!(DEFAULT_KEEP, 10_000);
}

#[test]
fn secrets_never_reach_a_record() {
    let mut h = Harness::new();
    h.ok(&audited(
        upsert(Body::CalendarCredentials(CalendarCredentials {
            kind: CalendarKind::Caldav as i32,
            account_name: "svc@example.com".into(),
            password: "hunter2-plain".into(),
            auth_method: 3,
            use_impersonation: false,
        })),
        0,
    ));
    h.ok(&audited(
        upsert(Body::XmppFederation(XmppFederationSettings {
            security_mode: XmppSecurityMode::TlsOptional as i32,
            dialback_secret: "dialback-secret-0123456789".into(),
            ..Default::default()
        })),
        0,
    ));
    h.ok(&audited(create(user("a@example.com")), 0));
    let secret = ScramSecret {
        salt: vec![1; 16],
        iterations: 4096,
        stored_key: vec![7; 32],
        server_key: vec![9; 32],
    };
    h.ok(&audited(
        Command {
            audit: None,
            op: Some(Op::SetUserSecrets(SetUserSecrets {
                jid: "a@example.com".into(),
                scram_sha256: Some(secret.clone()),
                scram_sha1: Some(ScramSecret {
                    stored_key: vec![7; 20],
                    server_key: vec![9; 20],
                    ..secret
                }),
                expected_revision: 0,
            })),
        },
        0,
    ));
    let log = h.sm.audit_log();
    let all: String = log
        .iter()
        .map(|r| format!("{} {}\n", r.operation, r.summary))
        .collect();
    assert!(!all.contains("hunter2"), "{all}");
    assert!(!all.contains("dialback-secret"), "{all}");
    assert!(!all.contains("stored_key: [7"), "{all}");
    assert!(all.contains(REDACTED), "{all}");
    assert_eq!(log[3].operation, "set-password");
    assert_eq!(log[3].key, "a@example.com");
}

#[test]
fn policy_exceptions_are_recorded_against_the_policy() {
    let mut h = Harness::new();
    h.ok(&audited(
        add_exception("*.example.org", PolicyDirection::All),
        0,
    ));
    h.ok(&audited(
        Command {
            audit: None,
            op: Some(Op::RemovePolicyException(RemovePolicyException {
                domain_pattern: "*.example.org".into(),
            })),
        },
        0,
    ));
    let log = h.sm.audit_log();
    assert_eq!(log[0].kind(), ObjectKind::XmppPolicy);
    assert_eq!(log[0].operation, "add-exception");
    assert!(log[0].summary.contains("*.example.org"));
    assert_eq!(log[1].operation, "remove-exception");
}

#[test]
fn membership_changes_can_be_recorded() {
    let mut h = Harness::new();
    h.sm.add_node(10, node(4));
    h.sm.audit_membership(10, &ctx(0), true, 4, "127.0.0.4:7470");
    h.sm.remove_node(11, 4);
    h.sm.audit_membership(11, &ctx(0), false, 4, "");
    let ops: Vec<(&str, &str)> =
        h.sm.audit_log()
            .iter()
            .map(|r| (r.operation.as_str(), r.key.as_str()))
            .collect();
    assert_eq!(ops, [("add-node", "4"), ("remove-node", "4")]);
}

#[test]
fn redaction_and_bounded_summaries() {
    let b = Body::CalendarCredentials(CalendarCredentials {
        password: "p".into(),
        ..Default::default()
    });
    match redact(&b) {
        Body::CalendarCredentials(c) => assert_eq!(c.password, REDACTED),
        _ => unreachable!(),
    }
    // An unset secret stays visibly unset.
    let empty = Body::CalendarCredentials(CalendarCredentials::default());
    assert!(summary(&empty).contains("password: \"\""));
    let long = Body::Domain(LocalDomain {
        name: "d.test".into(),
        description: "x".repeat(5_000),
        user_count: 0,
    });
    let s = summary(&long);
    assert!(s.chars().count() <= crate::state::audit::MAX_SUMMARY_CHARS + 1);
    assert!(s.ends_with('…'));
}
