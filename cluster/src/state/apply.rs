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
const PLACEMENT_WRITE: &str =
    "the placement view is kept by the Raft leader from node liveness and cannot be written";
/// How many past owners a user's data remembers.
pub const OWNER_HISTORY: usize = 16;

impl StateMachine {
    /// Validates a command against the current state and returns its effects.
    pub(super) fn plan(&self, index: u64, cmd: &Command) -> Result<Plan, ErrorDetail> {
        if self.users_group {
            return self.plan_users(index, cmd);
        }
        match &cmd.op {
            None => Err(ErrorDetail::invalid("op", "the command has no operation")),
            Some(Op::Put(p)) => self.plan_put(index, p),
            Some(Op::Delete(d)) => self.plan_delete(index, d),
            Some(Op::AddPolicyException(a)) => self.plan_add_exception(index, a),
            Some(Op::RemovePolicyException(r)) => self.plan_remove_exception(index, r),
            Some(Op::SetUserSecrets(s)) => self.plan_set_secrets(index, s),
            Some(Op::SetPlacement(p)) => self.plan_set_placement(index, p),
            Some(Op::MirrorPlacement(_)) => Err(failed(
                "a placement mirror belongs to the user-state group, not the config group",
            )),
        }
    }

    /// The user-state group takes user-data writes and deletes and placement mirrors only.
    fn plan_users(&self, index: u64, cmd: &Command) -> Result<Plan, ErrorDetail> {
        match &cmd.op {
            None => Err(ErrorDetail::invalid("op", "the command has no operation")),
            Some(Op::Put(p))
                if matches!(
                    p.object.as_ref().and_then(|o| o.body.as_ref()),
                    Some(Body::UserData(_))
                ) =>
            {
                self.plan_put(index, p)
            }
            Some(Op::Delete(d)) if d.kind == ObjectKind::UserData as i32 => {
                self.plan_delete(index, d)
            }
            Some(Op::MirrorPlacement(m)) => {
                let view = m
                    .view
                    .as_ref()
                    .ok_or_else(|| ErrorDetail::invalid("view", "missing"))?;
                let mut plan = Plan::default();
                if let Some(change) = self.adopt_view(index, view) {
                    plan.changes.push(change);
                }
                Ok(plan)
            }
            Some(_) => Err(failed(
                "the user-state group stores users' data only: config writes go to the config group",
            )),
        }
    }

    /// The user-state group's view of placement, as the config group last committed it (as far
    /// as this group has seen): `None` before the first.
    fn users_view(&self) -> Option<crate::ownership::View> {
        match self
            .stored(ObjectKind::Placement, "")
            .and_then(|o| o.body.as_ref())
        {
            Some(Body::Placement(p)) => Some(crate::ownership::View::new(p.epoch, p.nodes.clone())),
            _ => None,
        }
    }

    /// A committed view of the config group that the user-state group has not seen yet (newer
    /// epoch; at epoch 0, before the config group committed any view, more members) becomes
    /// its own. Views never go back.
    fn adopt_view(&self, index: u64, v: &herald_grpc::config::PlacementView) -> Option<Change> {
        let next = crate::ownership::View::new(v.epoch, v.nodes.clone());
        let newer = match self.users_view() {
            None => true,
            Some(cur) => crate::users_group::view_is_newer(&next, &cur),
        };
        newer.then(|| {
            Change::put(ConfigObject {
                revision: index,
                body: Some(Body::Placement(herald_grpc::config::PlacementView {
                    epoch: next.epoch,
                    nodes: next.nodes,
                    reason: v.reason.chars().take(512).collect(),
                })),
            })
        })
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
        if kind == ObjectKind::Placement {
            return Err(failed(PLACEMENT_WRITE));
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
        let mut body = self.check_put(index, body, current, p.confirm, &mut plan)?;
        if let Body::UserData(d) = &mut body {
            if let Some(view) = self.fence_user_data(index, d, current, p.fence.as_ref())? {
                plan.changes.push(view);
            }
        }
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
        if kind == ObjectKind::Placement {
            return Err(failed(PLACEMENT_WRITE));
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

impl StateMachine {
    /// The placement view now: the stored one (members only), or every member at epoch 0
    /// before the leader first set it.
    pub fn placement(&self) -> crate::ownership::View {
        if self.users_group {
            // The config group's view as committed there (its members already applied).
            return self
                .users_view()
                .unwrap_or_else(|| crate::ownership::View::new(0, Vec::new()));
        }
        let members: Vec<u64> = self.nodes().iter().map(|n| n.node_id).collect();
        match self
            .stored(ObjectKind::Placement, "")
            .and_then(|o| o.body.as_ref())
        {
            Some(Body::Placement(p)) => crate::ownership::View::new(
                p.epoch,
                p.nodes
                    .iter()
                    .copied()
                    .filter(|n| members.contains(n))
                    .collect(),
            ),
            _ => crate::ownership::View::new(0, members),
        }
    }

    /// The home of `user` in the current placement view (its pin, when in the view).
    pub fn home_of(&self, user: &str) -> Option<u64> {
        let pinned = match self
            .stored(ObjectKind::User, user)
            .and_then(|o| o.body.as_ref())
        {
            Some(Body::User(u)) => u.pinned_home_node,
            _ => 0,
        };
        self.placement().home(user, pinned)
    }

    fn plan_set_placement(
        &self,
        index: u64,
        p: &herald_grpc::config::SetPlacement,
    ) -> Result<Plan, ErrorDetail> {
        let view = self.placement();
        if p.expected_epoch != view.epoch {
            return Err(failed(format!(
                "placement epoch {} expected, current is {}",
                p.expected_epoch, view.epoch
            )));
        }
        if p.nodes.is_empty() {
            return Err(ErrorDetail::invalid(
                "nodes",
                "a placement view needs a node",
            ));
        }
        if let Some(n) = p.nodes.iter().find(|n| !self.is_member(**n)) {
            return Err(ErrorDetail::invalid(
                "nodes",
                format!("node {n} is not a cluster member"),
            ));
        }
        let next = crate::ownership::View::new(view.epoch + 1, p.nodes.clone());
        Ok(Plan {
            changes: vec![Change::put(ConfigObject {
                revision: index,
                body: Some(Body::Placement(herald_grpc::config::PlacementView {
                    epoch: next.epoch,
                    nodes: next.nodes,
                    reason: p.reason.chars().take(512).collect(),
                })),
            })],
            warnings: Vec::new(),
        })
    }

    /// A user-data write: with a fence, refused unless its owner is the user's home in the
    /// current epoch; the owner and its history are stamped on the stored data (a write
    /// without a fence, e.g. by an operator, keeps the last owner).
    ///
    /// In the user-state group the view and the pin come with the fence (the group keeps no
    /// config): a committed view newer than the group's is adopted first (returned, to be
    /// stored with the write), so an owner of an older epoch is refused from then on.
    fn fence_user_data(
        &self,
        index: u64,
        d: &mut herald_grpc::config::UserData,
        current: Option<&ConfigObject>,
        fence: Option<&herald_grpc::config::Fence>,
    ) -> Result<Option<Change>, ErrorDetail> {
        let old = match current.and_then(|o| o.body.as_ref()) {
            Some(Body::UserData(old)) => Some(old),
            _ => None,
        };
        d.owners = old.map(|o| o.owners.clone()).unwrap_or_default();
        d.owner_node = old.map_or(0, |o| o.owner_node);
        d.owner_epoch = old.map_or(0, |o| o.owner_epoch);
        let Some(f) = fence else {
            return Ok(None);
        };
        let (view, home, adopted) = if self.users_group {
            let adopted = f.view.as_ref().and_then(|v| self.adopt_view(index, v));
            let view = match (&adopted, &f.view) {
                (Some(_), Some(v)) => crate::ownership::View::new(v.epoch, v.nodes.clone()),
                _ => self.placement(),
            };
            let home = view.home(&d.jid, f.pinned);
            (view, home, adopted)
        } else {
            (self.placement(), self.home_of(&d.jid), None)
        };
        if f.epoch != view.epoch || home != Some(f.owner_node) {
            return Err(failed(format!(
                "fenced: node {} in placement epoch {} is not the home of {} \
                 (epoch {}, home {})",
                f.owner_node,
                f.epoch,
                d.jid,
                view.epoch,
                home.map_or_else(|| "none".to_string(), |h| h.to_string())
            )));
        }
        if d.owners.last().map(|o| (o.epoch, o.node)) != Some((f.epoch, f.owner_node)) {
            d.owners.push(herald_grpc::config::OwnerRecord {
                epoch: f.epoch,
                node: f.owner_node,
                first_revision: index,
            });
            if d.owners.len() > OWNER_HISTORY {
                let extra = d.owners.len() - OWNER_HISTORY;
                d.owners.drain(..extra);
            }
        }
        d.owner_node = f.owner_node;
        d.owner_epoch = f.epoch;
        Ok(adopted)
    }
}

pub(super) fn not_found(kind: ObjectKind, key: &str) -> ErrorDetail {
    ErrorDetail::new(
        ErrorCode::NotFound,
        format!("{} '{key}' does not exist", kind_name(kind)),
    )
}
