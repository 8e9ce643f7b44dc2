//! Tests of the state machine: a small harness, object builders and a table runner shared by
//! the per-kind tables (`kinds`, `kinds_more`) and the semantic tests (`semantics`).

mod audit;
mod kinds;
mod kinds_more;
mod placement;
mod semantics;

use super::StateMachine;
use herald_grpc::config::command::Op;
use herald_grpc::config::config_object::Body;
use herald_grpc::config::{
    write_outcome, AclPatternKind, AddPolicyException, CalendarCredentials, CalendarGateway,
    CalendarKind, Command, ConfigObject, DeleteObject, ErrorCode, ErrorDetail, IncomingAclEntry,
    LocalDomain, NodeInfo, ObjectKind, PolicyDirection, PolicyException, PutObject, RouteType,
    ScramSecret, SipFederatedDomain, SipIntegrationType, StaticRoute, Transport, User, WriteMode,
    WriteOutcome,
};

/// Local domains every test cluster starts with.
pub(super) const DOMAINS: &[&str] = &["example.com", "localhost"];

/// A bootstrapped state machine (nodes 1, 2, 3) and the next Raft index to use.
pub(super) struct Harness {
    pub sm: StateMachine,
    pub next: u64,
}

pub(super) fn node(id: u64) -> NodeInfo {
    NodeInfo {
        node_id: id,
        cluster_address: format!("127.0.0.{id}:7470"),
        admin_address: format!("127.0.0.{id}:7471"),
    }
}

impl Harness {
    pub fn new() -> Self {
        let domains: Vec<String> = DOMAINS.iter().map(|d| d.to_string()).collect();
        let mut sm = StateMachine::bootstrap(&domains, node(1)).expect("bootstrap");
        sm.add_node(2, node(2));
        sm.add_node(3, node(3));
        Harness { sm, next: 4 }
    }

    /// Applies a command at the next index.
    pub fn apply(&mut self, cmd: &Command) -> WriteOutcome {
        let index = self.next;
        self.next += 1;
        self.sm.apply(index, cmd)
    }

    /// Applies a command that must succeed; returns its revision and warnings.
    pub fn ok(&mut self, cmd: &Command) -> (u64, Vec<String>) {
        let index = self.next;
        let out = self.apply(cmd);
        match out.result {
            Some(write_outcome::Result::Revision(r)) => {
                assert_eq!(r, index, "revision of a write is its index");
                (r, out.warnings)
            }
            other => panic!("command {cmd:?} failed: {other:?}"),
        }
    }

    /// Applies a command that must fail; checks that nothing but the applied index changed.
    pub fn err(&mut self, cmd: &Command) -> ErrorDetail {
        let before = self.sm.clone();
        let digest = self.sm.digest();
        let out = self.apply(cmd);
        assert!(out.warnings.is_empty(), "no warnings on a rejected command");
        let e = match out.result {
            Some(write_outcome::Result::Error(e)) => e,
            other => panic!("command {cmd:?} should have failed, got {other:?}"),
        };
        assert_eq!(
            self.sm.digest(),
            digest,
            "digest changed by rejected {cmd:?}"
        );
        assert_eq!(
            self.sm.applied_index(),
            self.next - 1,
            "applied index advances"
        );
        let mut after = self.sm.clone();
        after.set_applied_index(before.applied_index());
        assert_eq!(after, before, "state changed by rejected {cmd:?}");
        e
    }

    /// Applies a command that must fail with `code` (and `field`, when not empty).
    pub fn err_with(&mut self, cmd: &Command, code: ErrorCode, field: &str) -> ErrorDetail {
        let e = self.err(cmd);
        assert_eq!(e.code(), code, "code of {e:?} for {cmd:?}");
        if !field.is_empty() {
            assert_eq!(e.field, field, "field of {e:?} for {cmd:?}");
        }
        e
    }

    /// The stored-or-derived object (panics when absent).
    pub fn get(&self, kind: ObjectKind, key: &str) -> ConfigObject {
        self.sm
            .get(kind, key)
            .unwrap_or_else(|| panic!("{kind:?} '{key}' missing"))
    }
}

/// What a table row expects.
#[derive(Debug, Clone, Copy)]
pub(super) enum Want {
    /// The command succeeds.
    Ok,
    /// The command fails with this code and field ("" = any field).
    Err(ErrorCode, &'static str),
}

/// One table row: commands that must succeed first, then the command under test.
pub(super) struct Case {
    pub name: &'static str,
    pub setup: Vec<Command>,
    pub cmd: Command,
    pub want: Want,
}

pub(super) fn case(name: &'static str, cmd: Command, want: Want) -> Case {
    Case {
        name,
        setup: Vec::new(),
        cmd,
        want,
    }
}

pub(super) fn case_after(
    name: &'static str,
    setup: Vec<Command>,
    cmd: Command,
    want: Want,
) -> Case {
    Case {
        name,
        setup,
        cmd,
        want,
    }
}

/// Runs each row on a fresh harness; rejected rows also prove nothing changed.
pub(super) fn run_table(cases: Vec<Case>) {
    for c in cases {
        let mut h = Harness::new();
        for s in &c.setup {
            let out = h.apply(s);
            assert!(
                matches!(out.result, Some(write_outcome::Result::Revision(_))),
                "{}: setup {s:?} failed: {out:?}",
                c.name
            );
        }
        match c.want {
            Want::Ok => {
                let out = h.apply(&c.cmd);
                assert!(
                    matches!(out.result, Some(write_outcome::Result::Revision(_))),
                    "{}: expected success, got {out:?}",
                    c.name
                );
            }
            Want::Err(code, field) => {
                let e = h.err(&c.cmd);
                assert_eq!(e.code(), code, "{}: {e:?}", c.name);
                if !field.is_empty() {
                    assert_eq!(e.field, field, "{}: {e:?}", c.name);
                }
                assert!(!e.message.is_empty(), "{}: error without message", c.name);
            }
        }
    }
}

// ---- command builders ----

pub(super) fn put_mode(body: Body, mode: WriteMode, expected_revision: u64) -> Command {
    Command {
        audit: None,
        op: Some(Op::Put(PutObject {
            object: Some(ConfigObject::new(body)),
            mode: mode as i32,
            expected_revision,
            confirm: false,
            fence: None,
        })),
    }
}

pub(super) fn create(body: Body) -> Command {
    put_mode(body, WriteMode::Create, 0)
}

pub(super) fn update(body: Body) -> Command {
    put_mode(body, WriteMode::Update, 0)
}

pub(super) fn upsert(body: Body) -> Command {
    put_mode(body, WriteMode::Upsert, 0)
}

pub(super) fn confirmed(body: Body) -> Command {
    Command {
        audit: None,
        op: Some(Op::Put(PutObject {
            object: Some(ConfigObject::new(body)),
            mode: WriteMode::Upsert as i32,
            expected_revision: 0,
            confirm: true,
            fence: None,
        })),
    }
}

pub(super) fn delete(kind: ObjectKind, key: &str) -> Command {
    delete_at(kind, key, 0)
}

pub(super) fn delete_at(kind: ObjectKind, key: &str, expected_revision: u64) -> Command {
    Command {
        audit: None,
        op: Some(Op::Delete(DeleteObject {
            kind: kind as i32,
            key: key.to_string(),
            expected_revision,
        })),
    }
}

pub(super) fn add_exception(pattern: &str, direction: PolicyDirection) -> Command {
    Command {
        audit: None,
        op: Some(Op::AddPolicyException(AddPolicyException {
            exception: Some(PolicyException {
                domain_pattern: pattern.to_string(),
                direction: direction as i32,
                description: String::new(),
            }),
        })),
    }
}

// ---- object builders ----

pub(super) fn domain(name: &str) -> Body {
    Body::Domain(LocalDomain {
        name: name.to_string(),
        description: format!("domain {name}"),
        user_count: 0,
    })
}

pub(super) fn secret(iterations: u32) -> ScramSecret {
    ScramSecret {
        salt: vec![1, 2, 3, 4],
        iterations,
        stored_key: vec![5; 32],
        server_key: vec![6; 32],
    }
}

pub(super) fn user_body(jid: &str, mail_id: &str) -> User {
    User {
        jid: jid.to_string(),
        mail_id: mail_id.to_string(),
        scram_sha256: Some(secret(4096)),
        scram_sha1: Some(secret(4096)),
        ..Default::default()
    }
}

pub(super) fn user(jid: &str) -> Body {
    Body::User(user_body(jid, ""))
}

pub(super) fn user_mail(jid: &str, mail_id: &str) -> Body {
    Body::User(user_body(jid, mail_id))
}

pub(super) fn sip(domain: &str) -> Body {
    Body::SipDomain(SipFederatedDomain {
        domain: domain.to_string(),
        description: "partner".to_string(),
        integration_type: SipIntegrationType::Lync as i32,
        direct_federation: false,
        incoming_acl_id: String::new(),
    })
}

pub(super) fn acl(id: &str, kind: AclPatternKind, pattern: &str) -> Body {
    Body::Acl(IncomingAclEntry {
        id: id.to_string(),
        description: String::new(),
        pattern_kind: kind as i32,
        pattern: pattern.to_string(),
        owner_federated_domain: String::new(),
    })
}

pub(super) fn route_body(id: &str, pattern: &str, next_hop: &str) -> StaticRoute {
    StaticRoute {
        id: id.to_string(),
        description: String::new(),
        destination_pattern: pattern.to_string(),
        next_hop: next_hop.to_string(),
        next_hop_port: 5061,
        route_type: RouteType::Domain as i32,
        transport: Transport::Tls as i32,
        priority: 1,
        weight: 1,
        in_service: true,
        blocked: false,
    }
}

pub(super) fn route(id: &str, pattern: &str, next_hop: &str) -> Body {
    Body::StaticRoute(route_body(id, pattern, next_hop))
}

pub(super) fn gateway(id: &str, kind: CalendarKind) -> Body {
    Body::CalendarGateway(CalendarGateway {
        id: id.to_string(),
        description: String::new(),
        kind: kind as i32,
        host: "cas.example.com".to_string(),
        port: 0,
        path: "/EWS/Exchange.asmx".to_string(),
        eligible: true,
    })
}

pub(super) fn credentials(kind: CalendarKind, account: &str) -> Body {
    Body::CalendarCredentials(CalendarCredentials {
        kind: kind as i32,
        account_name: account.to_string(),
        password: "secret".to_string(),
        auth_method: 0,
        use_impersonation: true,
    })
}
