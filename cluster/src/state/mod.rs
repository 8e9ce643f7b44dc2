//! The replicated state machine of the config store.
//!
//! Every node applies the same committed [`Command`]s in the same order to a [`StateMachine`],
//! which validates each one against the current state and either applies all of its effects or
//! none (a rejected command leaves the state untouched and returns an error outcome). The state
//! machine knows nothing about Raft, I/O, clocks or randomness.
//!
//! Layout:
//! - `mod.rs`: the state, bootstrap, membership, snapshots and digest;
//! - `apply`: command dispatch and the generic create/update/delete/revision semantics;
//! - `rules`: cross-object rules per kind (§24.9 invariants, references, warnings);
//! - `validate`: object-local syntax checks and normalisation;
//! - [`audit`]: the bounded audit log of admin changes, appended in the same apply;
//! - `derived`: derived fields, singleton defaults, `get` and `list`;
//! - [`names`] and [`routes`]: pure validators shared with the CLI and the tests.

mod apply;
pub mod audit;
mod derived;
pub mod names;
pub mod routes;
mod rules;
pub mod validate;

mod digest;
#[cfg(test)]
mod tests;

use herald_grpc::config::config_object::Body;
use herald_grpc::config::{
    write_outcome, AuditRecord, Command, ConfigObject, ErrorCode, ErrorDetail, LocalDomain,
    NodeInfo, ObjectKind, StoreSnapshot, WriteOutcome,
};
use imbl::{OrdMap, OrdSet};
use std::collections::VecDeque;
use std::sync::Arc;

pub use derived::default_singleton;

/// Warning returned when the set of local or email domains changes (EMD-7, TLS-6).
pub const WARN_REGENERATE_S2S_CERT: &str =
    "the set of IM/email domains changed: regenerate the s2s certificate";
/// Warning returned when email for federation is turned on or off (EMAIL-9).
pub const WARN_EMAIL_FEDERATION_CHANGED: &str =
    "email for federation changed: remote users must re-add contacts";

/// Storage key of an object: its kind (as the protobuf number) and its key within the kind.
type ObjectKey = (i32, String);

/// One effect of a command, applied only once the whole command has been validated.
#[derive(Debug, Clone, PartialEq)]
enum Change {
    /// Store this object (revision already set) under its kind and key.
    Put(Box<ConfigObject>),
    /// Remove the object under this kind and key.
    Delete(ObjectKind, String),
}

impl Change {
    fn put(o: ConfigObject) -> Self {
        Change::Put(Box::new(o))
    }
}

/// The replicated config state: plain data, deterministic, no I/O.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StateMachine {
    /// Raft index of the last entry applied (not part of the digest).
    applied_index: u64,
    /// Stored objects keyed by (kind, key), derived fields cleared (except the owner of
    /// automatic ACL entries, which only the state machine writes).
    /// Persistent maps: the published copy of the state (one per applied batch) shares their
    /// structure (a clone copies nothing; a write copies the path to its key), so publishing
    /// costs the same with 10 objects or 100,000 users' data.
    objects: OrdMap<ObjectKey, Arc<ConfigObject>>,
    /// Index: local domain name → number of users in it.
    users_per_domain: OrdMap<String, u64>,
    /// Index: email domain → number of users whose `mail_id` is in it.
    users_per_mail_domain: OrdMap<String, u64>,
    /// Index: full `mail_id` (lower case) → the JIDs of the users that have it.
    users_by_mail: OrdMap<String, OrdSet<String>>,
    /// The audit log of admin changes, oldest first, bounded (see [`audit`]). Shared with the
    /// published copies: only an audited write clones it.
    audit: Arc<VecDeque<AuditRecord>>,
    /// Index: a fingerprint of every user's pinned home node (XOR of a hash per pinned user),
    /// so that "did any pin change?" is one comparison.
    pins: u64,
    /// Index: the sum behind [`Self::digest`], kept as objects and audit records come and go.
    hash: digest::SetHash,
    /// This is the user-state Raft group's state: users' data and the placement view that
    /// fences their writes, nothing else (see `apply::plan_users`). Set by the owner loop of
    /// that group; not part of snapshots or the digest.
    users_group: bool,
}

impl StateMachine {
    /// Initial state of a freshly bootstrapped cluster: the given local domains, the predefined
    /// open-federation static route and the first node, all at revision 1 (the applied index is
    /// 1 too). Invalid domain names, or node id 0, return `INVALID_ARGUMENT`.
    pub fn bootstrap(domains: &[String], first_node: NodeInfo) -> Result<Self, ErrorDetail> {
        const INDEX: u64 = 1;
        if first_node.node_id == 0 {
            return Err(ErrorDetail::invalid("node_id", "node id 0 is not allowed"));
        }
        let mut sm = StateMachine::default();
        for d in domains {
            let name =
                names::normalize_dns_name(d).map_err(|e| ErrorDetail::invalid("domains", e))?;
            sm.commit(vec![Change::put(ConfigObject {
                revision: INDEX,
                body: Some(Body::Domain(LocalDomain {
                    name,
                    ..Default::default()
                })),
            })]);
        }
        sm.commit(vec![Change::put(ConfigObject {
            revision: INDEX,
            body: Some(Body::StaticRoute(routes::open_federation_route())),
        })]);
        sm.add_node(INDEX, first_node);
        sm.applied_index = INDEX;
        Ok(sm)
    }

    /// An empty state for the user-state Raft group.
    pub fn for_users_group() -> Self {
        StateMachine {
            users_group: true,
            ..Default::default()
        }
    }

    /// Marks a state (restored from a snapshot) as the user-state group's.
    pub fn set_users_group(&mut self) {
        self.users_group = true;
    }

    /// Whether this is the user-state group's state.
    pub fn is_users_group(&self) -> bool {
        self.users_group
    }

    /// Applies a committed command at Raft index `index` (greater than every earlier index).
    /// On success every object written gets `revision = index` and the outcome is
    /// `Revision(index)` plus warnings; on failure the outcome is `Error(detail)` and the config
    /// is untouched. Either way the applied index advances to `index`.
    pub fn apply(&mut self, index: u64, cmd: &Command) -> WriteOutcome {
        let outcome = match self.plan(index, cmd) {
            Ok(plan) => {
                let record = cmd
                    .audit
                    .as_ref()
                    .map(|ctx| (audit::record_for(self, index, cmd, ctx, &plan), ctx.keep));
                self.commit(plan.changes);
                if let Some((record, keep)) = record {
                    self.push_audit(record, keep);
                }
                WriteOutcome {
                    result: Some(write_outcome::Result::Revision(index)),
                    warnings: plan.warnings,
                }
            }
            Err(e) => WriteOutcome {
                result: Some(write_outcome::Result::Error(e)),
                warnings: Vec::new(),
            },
        };
        self.advance(index);
        outcome
    }

    /// Adds (or updates the addresses of) a cluster member, committed through a Raft conf
    /// change at `index`.
    pub fn add_node(&mut self, index: u64, node: NodeInfo) {
        self.commit(vec![Change::put(ConfigObject {
            revision: index,
            body: Some(Body::Node(node)),
        })]);
        self.advance(index);
    }

    /// Removes a cluster member (Raft conf change at `index`), and drops its id from
    /// `RoutingNodeSettings.node_order` and `XmppFederationSettings.enabled_nodes`.
    pub fn remove_node(&mut self, index: u64, node_id: u64) {
        let mut changes = vec![Change::Delete(ObjectKind::Node, node_id.to_string())];
        if let Some(mut o) = self.stored(ObjectKind::RoutingNode, "").cloned() {
            if let Some(Body::RoutingNode(r)) = o.body.as_mut() {
                if r.node_order.contains(&node_id) {
                    r.node_order.retain(|n| *n != node_id);
                    o.revision = index;
                    changes.push(Change::put(o));
                }
            }
        }
        if let Some(mut o) = self.stored(ObjectKind::XmppFederation, "").cloned() {
            if let Some(Body::XmppFederation(x)) = o.body.as_mut() {
                if x.enabled_nodes.contains(&node_id) {
                    x.enabled_nodes.retain(|n| *n != node_id);
                    o.revision = index;
                    changes.push(Change::put(o));
                }
            }
        }
        self.commit(changes);
        self.advance(index);
    }

    /// Records that entries up to `index` were applied (empty entries, conf changes and
    /// rejected commands all advance it).
    pub fn set_applied_index(&mut self, index: u64) {
        self.applied_index = index;
    }

    /// Raft index of the last applied entry.
    pub fn applied_index(&self) -> u64 {
        self.applied_index
    }

    /// Current cluster members, sorted by node id.
    pub fn nodes(&self) -> Vec<NodeInfo> {
        let mut nodes: Vec<NodeInfo> = self
            .stored_of_kind(ObjectKind::Node)
            .filter_map(|o| match &o.body {
                Some(Body::Node(n)) => Some(n.clone()),
                _ => None,
            })
            .collect();
        nodes.sort_by_key(|n| n.node_id);
        nodes
    }

    /// True when `node_id` is a current cluster member.
    pub fn is_member(&self, node_id: u64) -> bool {
        self.stored(ObjectKind::Node, &node_id.to_string())
            .is_some()
    }

    /// Full state for Raft snapshots: the stored objects sorted by (kind as i32, key), and the
    /// applied index.
    pub fn to_snapshot(&self) -> StoreSnapshot {
        StoreSnapshot {
            applied_index: self.applied_index,
            objects: self.objects.values().map(|o| (**o).clone()).collect(),
            audit: self.audit.iter().cloned().collect(),
        }
    }

    /// The encoding of [`Self::to_snapshot`], written straight from the stored objects (no copy
    /// of the state first: a snapshot of 100,000 users' data is built without doubling it in
    /// memory).
    pub fn encode_snapshot(&self) -> Vec<u8> {
        use prost::encoding::{encode_key, encode_varint, message, WireType};
        let mut buf = Vec::new();
        if self.applied_index != 0 {
            encode_key(1, WireType::Varint, &mut buf);
            encode_varint(self.applied_index, &mut buf);
        }
        for o in self.objects.values() {
            message::encode(2, &**o, &mut buf);
        }
        for r in self.audit.iter() {
            message::encode(3, r, &mut buf);
        }
        buf
    }

    /// Rebuilds a state machine from a snapshot. Objects are not revalidated (rules may have
    /// changed since they were written); a missing body, an unspecified kind or a duplicate
    /// key returns `INTERNAL`.
    pub fn from_snapshot(s: &StoreSnapshot) -> Result<Self, ErrorDetail> {
        let mut sm = StateMachine {
            applied_index: s.applied_index,
            ..Default::default()
        };
        for o in &s.objects {
            let kind = o.kind();
            if kind == ObjectKind::Unspecified {
                return Err(ErrorDetail::new(
                    ErrorCode::Internal,
                    "snapshot holds an object without a body",
                ));
            }
            if sm.objects.contains_key(&(kind as i32, o.key())) {
                return Err(ErrorDetail::new(
                    ErrorCode::Internal,
                    format!(
                        "snapshot holds {} '{}' twice",
                        herald_grpc::objects::kind_name(kind),
                        o.key()
                    ),
                ));
            }
            sm.commit(vec![Change::put(o.clone())]);
        }
        sm.audit = Arc::new(s.audit.iter().cloned().collect());
        for r in sm.audit.iter() {
            sm.hash.add_record(r);
        }
        Ok(sm)
    }

    /// Hex digest of the stored objects and the audit log (see [`digest`]: a SHA-256 over the
    /// sum of each one's SHA-256, kept current as they change, so reading it is cheap at any
    /// size), so two nodes holding the same config report the same digest whatever their
    /// applied index. The placement view is not operator config (it changes whenever a node
    /// stops or starts); each node's placement epoch is reported next to its digest instead.
    pub fn digest(&self) -> String {
        self.hash.hex()
    }

    fn advance(&mut self, index: u64) {
        self.applied_index = self.applied_index.max(index);
    }

    /// The stored object under (kind, key), without derived fields.
    fn stored(&self, kind: ObjectKind, key: &str) -> Option<&ConfigObject> {
        self.objects
            .get(&(kind as i32, key.to_string()))
            .map(|o| &**o)
    }

    /// Stored objects of one kind, sorted by key.
    fn stored_of_kind(&self, kind: ObjectKind) -> impl Iterator<Item = &ConfigObject> {
        let k = kind as i32;
        self.objects
            .range((k, String::new())..)
            .take_while(move |((kk, _), _)| *kk == k)
            .map(|(_, o)| &**o)
    }

    /// Applies validated changes; infallible, keeps the indexes in step.
    fn commit(&mut self, changes: Vec<Change>) {
        for c in changes {
            match c {
                Change::Put(o) => {
                    let o = *o;
                    let key = (o.kind() as i32, o.key());
                    if let Some(old) = self.objects.remove(&key) {
                        self.unindex(&old);
                    }
                    self.index(&o);
                    self.objects.insert(key, Arc::new(o));
                }
                Change::Delete(kind, key) => {
                    if let Some(old) = self.objects.remove(&(kind as i32, key)) {
                        self.unindex(&old);
                    }
                }
            }
        }
    }

    /// A fingerprint of every user's pinned home node: it changes whenever a pin is set,
    /// changed or removed (or a pinned user is added or removed), and only then. With the
    /// placement view, all a user's home depends on.
    pub fn pins_fingerprint(&self) -> u64 {
        self.pins
    }

    fn index(&mut self, o: &ConfigObject) {
        self.hash.add_object(o);
        if let Some(Body::User(u)) = &o.body {
            self.pins ^= pin_hash(&u.jid, u.pinned_home_node);
            if let Some(d) = user_domain(&u.jid) {
                *self.users_per_domain.entry(d.to_string()).or_default() += 1;
            }
            if let Some(d) = mail_domain(&u.mail_id) {
                *self.users_per_mail_domain.entry(d.to_string()).or_default() += 1;
                self.users_by_mail
                    .entry(u.mail_id.to_ascii_lowercase())
                    .or_default()
                    .insert(u.jid.clone());
            }
        }
    }

    fn unindex(&mut self, o: &ConfigObject) {
        self.hash.remove_object(o);
        if let Some(Body::User(u)) = &o.body {
            self.pins ^= pin_hash(&u.jid, u.pinned_home_node);
            if let Some(d) = user_domain(&u.jid) {
                decrement(&mut self.users_per_domain, d);
            }
            if let Some(d) = mail_domain(&u.mail_id) {
                decrement(&mut self.users_per_mail_domain, d);
                let key = u.mail_id.to_ascii_lowercase();
                if let Some(set) = self.users_by_mail.get_mut(&key) {
                    set.remove(&u.jid);
                    if set.is_empty() {
                        self.users_by_mail.remove(&key);
                    }
                }
            }
        }
    }
}

/// One pinned user's share of [`StateMachine::pins_fingerprint`] (0 for an unpinned user).
fn pin_hash(jid: &str, pinned: u64) -> u64 {
    use std::hash::{Hash, Hasher};
    if pinned == 0 {
        return 0;
    }
    let mut h = std::collections::hash_map::DefaultHasher::new();
    jid.hash(&mut h);
    pinned.hash(&mut h);
    h.finish()
}

fn decrement(map: &mut OrdMap<String, u64>, key: &str) {
    if let Some(n) = map.get_mut(key) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            map.remove(key);
        }
    }
}

/// Domain part of a stored (normalised) JID.
fn user_domain(jid: &str) -> Option<&str> {
    jid.split_once('@').map(|(_, d)| d)
}

/// Domain part of a stored (normalised) mail id, if any.
fn mail_domain(mail_id: &str) -> Option<&str> {
    mail_id
        .rsplit_once('@')
        .map(|(_, d)| d)
        .filter(|d| !d.is_empty())
}
