//! Command dispatch and the generic write semantics: modes, expected revisions, deletes.
//!
//! Every function here only reads the state and returns a [`Plan`]; the caller commits the plan
//! whole, so a rejected command never leaves a partial write behind.

use super::derived::normalize_key;
use super::names::normalize_jid;
use super::routes::OPEN_FEDERATION_ROUTE_ID;
use super::validate::{self, check_secret, required_enum};
use super::{Change, StateMachine};
use herald_grpc::config::command::Op;
use herald_grpc::config::config_object::Body;
use herald_grpc::config::{
    AddPolicyException, Command, ConfigObject, DeleteObject, ErrorCode, ErrorDetail, ObjectKind,
    PutObject, RemovePolicyException, SetUserSecrets, WriteMode, XmppFederationPolicy,
};
use herald_grpc::objects::{is_singleton, kind_name};

/// The validated effects of one command.
#[derive(Debug, Default)]
pub(super) struct Plan {
    /// Changes to commit, in order.
    pub changes: Vec<Change>,
    /// Warnings for the operator.
    pub warnings: Vec<String>,
}

pub(super) fn failed(msg: impl Into<String>) -> ErrorDetail {
    ErrorDetail::new(ErrorCode::FailedPrecondition, msg)
}

/// A FAILED_PRECONDITION that also names a field.
pub(super) fn failed_on(field: &str, msg: impl Into<String>) -> ErrorDetail {
    let mut e = failed(msg);
    e.field = field.to_string();
    e
}

/// `expected != 0` must equal the current revision (0 for an absent object).
pub(super) fn check_revision(expected: u64, current: u64) -> Result<(), ErrorDetail> {
    if expected != 0 && expected != current {
        return Err(failed(format!(
            "revision {expected} does not match current revision {current}"
        )));
    }
    Ok(())
}

const NODE_WRITE: &str = "node objects follow cluster membership: use cluster add-node/remove-node";

impl StateMachine {
    /// Validates a command against the current state and returns its effects.
    pub(super) fn plan(&self, index: u64, cmd: &Command) -> Result<Plan, ErrorDetail> {
        match &cmd.op {
            None => Err(ErrorDetail::invalid("op", "the command has no operation")),
            Some(Op::Put(p)) => self.plan_put(index, p),
            Some(Op::Delete(d)) => self.plan_delete(index, d),
            Some(Op::AddPolicyException(a)) => self.plan_add_exception(index, a),
            Some(Op::RemovePolicyException(r)) => self.plan_remove_exception(index, r),
            Some(Op::SetUserSecrets(s)) => self.plan_set_secrets(index, s),
        }
    }

    fn plan_put(&self, index: u64, p: &PutObject) -> Result<Plan, ErrorDetail> {
        let obj = p
            .object
            .as_ref()
            .ok_or_else(|| ErrorDetail::invalid("object", "missing"))?;
        let body = obj
            .body
            .as_ref()
            .ok_or_else(|| ErrorDetail::invalid("object", "the object has no body"))?;
        let kind = body.kind();
        if kind == ObjectKind::Node {
            return Err(failed(NODE_WRITE));
        }
        let mode: WriteMode = required_enum(p.mode, "mode")?;
        if kind == ObjectKind::Acl {
            self.check_acl_not_owned(&body.key())?;
        }
        let body = validate::normalize(body.clone())?;
        let key = body.key();
        let current = self.stored(kind, &key);
        if !is_singleton(kind) {
            match (mode, current) {
                (WriteMode::Create, Some(_)) => {
                    return Err(ErrorDetail::new(
                        ErrorCode::AlreadyExists,
                        format!("{} '{key}' already exists", kind_name(kind)),
                    ))
                }
                (WriteMode::Update, None) => {
                    if kind == ObjectKind::EmailDomain && self.email_domain_is_system(&key) {
                        return Err(failed(format!(
                            "email domain '{key}' is system-managed (derived from users' mail ids) \
                             and read-only; create an admin entry instead"
                        )));
                    }
                    return Err(not_found(kind, &key));
                }
                _ => {}
            }
        }
        let current_revision = current.map_or(0, |o| o.revision);
        check_revision(p.expected_revision, current_revision)?;
        let mut plan = Plan::default();
        let body = self.check_put(index, body, current, p.confirm, &mut plan)?;
        plan.changes.insert(
            0,
            Change::put(ConfigObject {
                revision: index,
                body: Some(body),
            }),
        );
        Ok(plan)
    }

    fn plan_delete(&self, index: u64, d: &DeleteObject) -> Result<Plan, ErrorDetail> {
        let kind: ObjectKind = required_enum(d.kind, "kind")?;
        if kind == ObjectKind::Node {
            return Err(failed(NODE_WRITE));
        }
        if is_singleton(kind) {
            return Err(failed(format!(
                "{} is a singleton and cannot be deleted; write new values instead",
                kind_name(kind)
            )));
        }
        let key = normalize_key(kind, &d.key);
        match kind {
            ObjectKind::Acl => self.check_acl_not_owned(&key)?,
            ObjectKind::StaticRoute if key == OPEN_FEDERATION_ROUTE_ID => {
                return Err(failed(
                    "the predefined open-federation route cannot be deleted; block it instead",
                ))
            }
            ObjectKind::EmailDomain if self.email_domain_is_system(&key) => {
                return Err(failed(format!(
                    "email domain '{key}' is system-managed: {} user(s) have a mail id in it",
                    self.users_per_mail_domain.get(&key).copied().unwrap_or(0)
                )))
            }
            _ => {}
        }
        let current = self
            .stored(kind, &key)
            .ok_or_else(|| not_found(kind, &key))?;
        check_revision(d.expected_revision, current.revision)?;
        let mut plan = Plan {
            changes: vec![Change::Delete(kind, key.clone())],
            warnings: Vec::new(),
        };
        self.check_delete(index, current, &mut plan)?;
        Ok(plan)
    }

    /// The policy singleton as stored, or its default (revision 0).
    fn policy(&self) -> XmppFederationPolicy {
        match self.get(ObjectKind::XmppPolicy, "").and_then(|o| o.body) {
            Some(Body::XmppPolicy(p)) => p,
            _ => XmppFederationPolicy::default(),
        }
    }

    fn policy_plan(index: u64, policy: XmppFederationPolicy) -> Plan {
        Plan {
            changes: vec![Change::put(ConfigObject {
                revision: index,
                body: Some(Body::XmppPolicy(policy)),
            })],
            warnings: Vec::new(),
        }
    }

    fn plan_add_exception(&self, index: u64, a: &AddPolicyException) -> Result<Plan, ErrorDetail> {
        let e = a
            .exception
            .clone()
            .ok_or_else(|| ErrorDetail::invalid("exception", "missing"))?;
        let e = validate::policy_exception(e)?;
        let mut policy = self.policy();
        if policy
            .exceptions
            .iter()
            .any(|x| x.domain_pattern == e.domain_pattern)
        {
            return Err(ErrorDetail::new(
                ErrorCode::AlreadyExists,
                format!("policy exception '{}' already exists", e.domain_pattern),
            ));
        }
        self.check_exception(&e)?;
        policy.exceptions.push(e);
        Ok(Self::policy_plan(index, policy))
    }

    fn plan_remove_exception(
        &self,
        index: u64,
        r: &RemovePolicyException,
    ) -> Result<Plan, ErrorDetail> {
        let pattern = r.domain_pattern.to_ascii_lowercase();
        let mut policy = self.policy();
        let before = policy.exceptions.len();
        policy.exceptions.retain(|x| x.domain_pattern != pattern);
        if policy.exceptions.len() == before {
            return Err(ErrorDetail::new(
                ErrorCode::NotFound,
                format!("policy exception '{pattern}' does not exist"),
            ));
        }
        Ok(Self::policy_plan(index, policy))
    }

    fn plan_set_secrets(&self, index: u64, s: &SetUserSecrets) -> Result<Plan, ErrorDetail> {
        let (jid, _) = normalize_jid(&s.jid).map_err(|e| ErrorDetail::invalid("jid", e))?;
        let current = self
            .stored(ObjectKind::User, &jid)
            .ok_or_else(|| not_found(ObjectKind::User, &jid))?;
        check_revision(s.expected_revision, current.revision)?;
        check_secret("scram_sha256", &s.scram_sha256)?;
        check_secret("scram_sha1", &s.scram_sha1)?;
        let mut o = current.clone();
        if let Some(Body::User(u)) = o.body.as_mut() {
            u.scram_sha256 = s.scram_sha256.clone();
            u.scram_sha1 = s.scram_sha1.clone();
        }
        o.revision = index;
        Ok(Plan {
            changes: vec![Change::put(o)],
            warnings: Vec::new(),
        })
    }
}

pub(super) fn not_found(kind: ObjectKind, key: &str) -> ErrorDetail {
    ErrorDetail::new(
        ErrorCode::NotFound,
        format!("{} '{key}' does not exist", kind_name(kind)),
    )
}
