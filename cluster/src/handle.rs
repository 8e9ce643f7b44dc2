//! [`ClusterHandle`]: what the rest of a node uses to read and change the replicated config.
//!
//! Writes go to the leader: proposed locally when this node leads, forwarded over the
//! node-to-node API otherwise, and retried while there is no leader (until a deadline). A write
//! returns once applied on the node that proposed it, so an acknowledged write is committed on a
//! majority and durable there.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crossbeam_channel::{Sender, TrySendError};
use herald_grpc::cluster::{MembershipChange, ProposeRequest, StatusReply, StatusRequest};
use herald_grpc::config::{
    write_outcome, AuditContext, Command, ErrorCode, ErrorDetail, NodeInfo, WriteOutcome,
};
use prost::Message as _;
use tokio::sync::{oneshot, watch};

use crate::client::{peer_client, PeerClient, PeerOptions};
use crate::metrics as m;
use crate::raft_loop::{Applied, Group, Input, RaftStatus, Role};

mod users;

/// Message of the retryable error a non-leader gives.
pub const NOT_LEADER: &str = "not the leader";

/// How long a write or read waits for a leader before giving up with UNAVAILABLE.
const LEADER_WAIT: Duration = Duration::from_secs(10);
const PEER_CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// A successful write.
#[derive(Debug, Clone, PartialEq)]
pub struct Written {
    pub revision: u64,
    pub warnings: Vec<String>,
}

/// A Raft group's owner loop as the handle reaches it: its inbox and what it publishes.
pub struct GroupLink {
    pub inbox: Sender<Input>,
    pub status: watch::Receiver<RaftStatus>,
    pub applied: watch::Receiver<Arc<Applied>>,
}

#[derive(Clone)]
pub struct ClusterHandle {
    inner: Arc<Inner>,
}

struct Inner {
    me: NodeInfo,
    inbox: Sender<Input>,
    status: watch::Receiver<RaftStatus>,
    applied: watch::Receiver<Arc<Applied>>,
    peer_opts: PeerOptions,
    clients: Mutex<HashMap<String, PeerClient>>,
    routes: crate::routing::Routes,
    /// The control-plane runtime (current when the handle was made): peer clients are created
    /// inside it, so their connection tasks never run on a data-plane thread.
    rt: Option<tokio::runtime::Handle>,
    /// The node layer's facts and log filter, registered once at start.
    local: OnceLock<Arc<dyn crate::local::LocalNode>>,
    /// This node's secrets key (set once at start).
    secrets: OnceLock<crate::secrets::Keyring>,
    /// Agreed placement: the leader's keeper, this node's lease, the views seen.
    own: Mutex<Ownership>,
    /// The placement epoch last given to `own.tracker` (a lock-free fast path).
    seen_epoch: std::sync::atomic::AtomicU64,
    /// The user-state group's loop (set once at start; absent in tests that run the config
    /// group alone, where users' data is written to the config group as before).
    users: OnceLock<GroupLink>,
}

#[derive(Default)]
struct Ownership {
    keeper: crate::ownership::Keeper,
    lease: crate::ownership::Lease,
    tracker: crate::ownership::Tracker,
    /// The epoch of the placement change being proposed.
    proposing: Option<u64>,
    /// Whether this node served at the last look (to log and count transitions).
    serving: Option<bool>,
}

fn unavailable(msg: impl Into<String>) -> ErrorDetail {
    ErrorDetail::new(ErrorCode::Unavailable, msg)
}

fn is_not_leader(e: &ErrorDetail) -> bool {
    e.code() == ErrorCode::Unavailable && (e.message == NOT_LEADER || e.message == "no leader")
}

impl ClusterHandle {
    pub fn new(
        me: NodeInfo,
        inbox: Sender<Input>,
        status: watch::Receiver<RaftStatus>,
        applied: watch::Receiver<Arc<Applied>>,
        peer_opts: PeerOptions,
    ) -> Self {
        let node_id = me.node_id;
        ClusterHandle {
            inner: Arc::new(Inner {
                me,
                inbox,
                status,
                applied,
                routes: crate::routing::Routes::new(node_id, peer_opts.clone()),
                rt: tokio::runtime::Handle::try_current().ok(),
                peer_opts,
                clients: Mutex::new(HashMap::new()),
                local: OnceLock::new(),
                secrets: OnceLock::new(),
                own: Mutex::new(Ownership::default()),
                seen_epoch: std::sync::atomic::AtomicU64::new(u64::MAX),
                users: OnceLock::new(),
            }),
        }
    }

    pub fn node_id(&self) -> u64 {
        self.inner.me.node_id
    }

    fn inbox_of(&self, group: Group) -> &Sender<Input> {
        match (group, self.inner.users.get()) {
            (Group::Users, Some(u)) => &u.inbox,
            _ => &self.inner.inbox,
        }
    }

    fn status_rx(&self, group: Group) -> &watch::Receiver<RaftStatus> {
        match (group, self.inner.users.get()) {
            (Group::Users, Some(u)) => &u.status,
            _ => &self.inner.status,
        }
    }

    /// A group's Raft status on this node.
    pub fn status_of(&self, group: Group) -> RaftStatus {
        self.status_rx(group).borrow().clone()
    }

    pub fn me(&self) -> &NodeInfo {
        &self.inner.me
    }

    /// This node's Raft status now.
    pub fn status(&self) -> RaftStatus {
        self.inner.status.borrow().clone()
    }

    /// A receiver that sees every status change (for readiness and shutdown).
    pub fn watch_status(&self) -> watch::Receiver<RaftStatus> {
        self.inner.status.clone()
    }

    /// The applied config state on this node (a local, possibly stale read).
    pub fn applied(&self) -> Arc<Applied> {
        self.inner.applied.borrow().clone()
    }

    /// A receiver that sees every newly applied state (config watch).
    pub fn watch_applied(&self) -> watch::Receiver<Arc<Applied>> {
        self.inner.applied.clone()
    }

    /// Registers the node layer's facts and log filter (once; later calls change nothing).
    pub fn set_local_node(&self, local: Arc<dyn crate::local::LocalNode>) {
        let _ = self.inner.local.set(local);
    }

    /// Registers this node's secrets key (once; later calls change nothing).
    pub fn set_secrets(&self, ring: crate::secrets::Keyring) {
        let _ = self.inner.secrets.set(ring);
    }

    /// This node's secrets key, when one was registered.
    pub fn secrets(&self) -> Option<&crate::secrets::Keyring> {
        self.inner.secrets.get()
    }

    pub(crate) fn local_node(&self) -> Option<&Arc<dyn crate::local::LocalNode>> {
        self.inner.local.get()
    }

    /// Routing between nodes and liveness.
    pub fn routes(&self) -> &crate::routing::Routes {
        &self.inner.routes
    }

    /// Queues a routed item for `node` (stanzas, session events), in order per node.
    pub fn route(
        &self,
        node: u64,
        kind: herald_grpc::cluster::route_message::Kind,
    ) -> Result<(), crate::routing::RouteError> {
        let addr = self.address_of(node).unwrap_or_default();
        self.inner.routes.send(node, &addr, kind)
    }

    /// Voters that are currently alive (this node included), sorted.
    pub fn live_nodes(&self) -> Vec<u64> {
        let mut v: Vec<u64> = self
            .status()
            .voters
            .into_iter()
            .filter(|n| self.inner.routes.is_live(*n))
            .collect();
        v.sort_unstable();
        v
    }

    /// The home node of `user` in the committed placement view: the pinned node if it is in
    /// the view, else rendezvous hashing over the view's nodes. Every node computes the same
    /// answer from the same applied epoch.
    pub fn home_node(&self, user: &str, pinned: u64) -> Option<u64> {
        self.with_placement(|v| v.home(user, pinned))
    }

    /// A value that changes whenever any user's home may have changed (the placement view or
    /// a pin), and only then: sessions and user actors look again at their homes when it
    /// does, instead of each polling.
    pub fn homes_guard(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let view = self.placement();
        let mut h = std::collections::hash_map::DefaultHasher::new();
        view.epoch.hash(&mut h);
        view.nodes.hash(&mut h);
        self.applied().state.pins_fingerprint().hash(&mut h);
        h.finish()
    }

    /// The committed placement view this node has applied (noted for the hold rule).
    pub fn placement(&self) -> crate::ownership::View {
        self.with_placement(|v| v.clone())
    }

    /// `f` over the committed placement view (as [`Self::placement`], without copying it: a
    /// user actor looks at it for every input).
    pub fn with_placement<R>(&self, f: impl FnOnce(&crate::ownership::View) -> R) -> R {
        use std::sync::atomic::Ordering;
        let applied = self.applied();
        let view = applied.placement();
        if self.inner.seen_epoch.load(Ordering::Acquire) != view.epoch {
            let mut own = self.own();
            own.tracker.observe(view, Instant::now());
            if let Some(cur) = own.tracker.current() {
                self.inner.seen_epoch.store(cur.epoch, Ordering::Release);
                metrics::gauge!(m::PLACEMENT_EPOCH).set(cur.epoch as f64);
            }
        }
        f(view)
    }

    fn own(&self) -> std::sync::MutexGuard<'_, Ownership> {
        self.inner.own.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The placement epoch a follower must have applied to be granted a lease by this node
    /// (`None` when this node grants none: it does not lead, or lost its own lease).
    fn lease_grant(&self) -> Option<u64> {
        let st = self.status();
        if st.role != Role::Leader {
            return None;
        }
        let epoch = self.placement().epoch;
        let own = self.own();
        let leader = Some((st.term, st.voters.as_slice()));
        own.lease
            .valid(Instant::now(), self.node_id(), leader, epoch)
            .then(|| own.proposing.unwrap_or(epoch).max(epoch))
    }

    /// Whether this node may act as a home at all now: it holds a lease (see
    /// [`crate::ownership`]) and is not shutting down.
    pub fn serving(&self) -> bool {
        if self.inner.routes.is_stopping() {
            return false;
        }
        // The status is copied only on the leader (its voters); followers need its role.
        let leader = {
            let st = self.inner.status.borrow();
            (st.role == Role::Leader).then(|| (st.term, st.voters.clone()))
        };
        let epoch = self.with_placement(|v| v.epoch);
        let mut own = self.own();
        let leader = leader.as_ref().map(|(t, v)| (*t, v.as_slice()));
        let ok = own
            .lease
            .valid(Instant::now(), self.node_id(), leader, epoch);
        if own.serving != Some(ok) {
            if own.serving.is_some() {
                if ok {
                    tracing::info!(epoch, "placement lease held again: serving as a home");
                } else {
                    tracing::warn!(
                        epoch,
                        "placement lease lost (no recent answer from the leader or a quorum): \
                         not serving as a home until it is back"
                    );
                }
            }
            metrics::counter!(m::LEASE_CHANGES, "serving" => if ok { "yes" } else { "no" })
                .increment(1);
            own.serving = Some(ok);
        }
        ok
    }

    /// Whether this node may serve `user` now: it is the user's home in the applied view, it
    /// holds its lease, and it is not waiting out a hand-over from a previous home.
    pub fn may_serve(&self, user: &str, pinned: u64) -> bool {
        self.home_and_may_serve(user, pinned).1
    }

    /// [`Self::home_node`] and [`Self::may_serve`] from one look at the placement view (a
    /// user actor asks both for every input).
    pub fn home_and_may_serve(&self, user: &str, pinned: u64) -> (Option<u64>, bool) {
        let home = self.with_placement(|v| v.home(user, pinned));
        if home != Some(self.node_id()) || !self.serving() {
            return (home, false);
        }
        let held = self
            .own()
            .tracker
            .held(user, pinned, self.node_id(), Instant::now());
        (home, !held)
    }

    /// Any exchange with member `node` (for the leader's placement keeper).
    pub fn heard_from(&self, node: u64) {
        self.own().keeper.heard(node, Instant::now());
    }

    /// The answer to a status request this node sent to `node` at `sent_at`.
    pub(crate) fn status_answer(&self, node: u64, sent_at: Instant, reply: &StatusReply) {
        let st = self.status();
        let mut own = self.own();
        own.keeper.heard(node, Instant::now());
        if st.role == Role::Leader {
            if reply.leader_id == self.node_id() && reply.term == st.term {
                own.lease.ack(st.term, node, sent_at);
            }
        } else if reply.node_id == st.leader_id && reply.grants_lease {
            own.lease.from_leader(sent_at, reply.placement_epoch);
        }
    }

    /// On the leader, once per liveness tick: commits a new placement view when members died,
    /// came back, left or are shutting down.
    pub(crate) fn keep_placement(&self) {
        let st = self.status();
        if st.role != Role::Leader {
            self.own().keeper.not_leading();
            return;
        }
        let view = self.placement();
        // Voters only: a learner still catching up is no home.
        let members: Vec<u64> = self
            .applied()
            .state
            .nodes()
            .iter()
            .map(|n| n.node_id)
            .filter(|n| st.voters.contains(n))
            .collect();
        let mut leaving = self.inner.routes.leaving_nodes();
        if self.inner.routes.is_stopping() {
            leaving.push(self.node_id());
        }
        let decision = {
            let mut own = self.own();
            if own.proposing.is_some() {
                return;
            }
            let d = own.keeper.decide(
                self.node_id(),
                st.term,
                Instant::now(),
                &members,
                &leaving,
                &view,
            );
            if d.is_some() {
                own.proposing = Some(view.epoch + 1);
            }
            d
        };
        let Some((nodes, reason)) = decision else {
            return;
        };
        tracing::warn!(epoch = view.epoch + 1, from = ?view.nodes, to = ?nodes, %reason,
            "changing the placement view");
        let h = self.clone();
        let cmd = Command {
            op: Some(herald_grpc::config::command::Op::SetPlacement(
                herald_grpc::config::SetPlacement {
                    expected_epoch: view.epoch,
                    nodes,
                    reason,
                },
            )),
            audit: None,
        };
        let task = async move {
            let res = h.write(&cmd).await;
            match &res {
                Ok(_) => metrics::counter!(m::PLACEMENT_CHANGES).increment(1),
                Err(e) => tracing::warn!(error = %e, "placement change not committed"),
            }
            h.own().proposing = None;
        };
        match &self.inner.rt {
            Some(rt) => drop(rt.spawn(task)),
            None => drop(tokio::spawn(task)),
        }
    }

    /// Asks the owner loops to stop after their current round.
    pub fn shutdown(&self) {
        if let Some(u) = self.inner.users.get() {
            let _ = u.inbox.send(Input::Shutdown);
        }
        let _ = self.inner.inbox.send(Input::Shutdown);
    }

    pub(crate) fn inbox(&self) -> &Sender<Input> {
        &self.inner.inbox
    }

    /// The owner loop's inbox, for simulated-cluster tests that drive the loop directly.
    #[doc(hidden)]
    pub fn inbox_for_tests(&self) -> &Sender<Input> {
        &self.inner.inbox
    }

    fn submit_to(&self, group: Group, input: Input) -> Result<(), ErrorDetail> {
        match self.inbox_of(group).try_send(input) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => Err(unavailable("raft inbox is full; retry")),
            Err(TrySendError::Disconnected(_)) => Err(unavailable("raft loop has stopped")),
        }
    }

    /// Proposes on this node, which must be the leader; answers once applied here.
    pub async fn propose_local(&self, command: Vec<u8>) -> Result<WriteOutcome, ErrorDetail> {
        self.propose_local_in(Group::Config, command).await
    }

    /// [`Self::propose_local`] in either group.
    pub async fn propose_local_in(
        &self,
        group: Group,
        command: Vec<u8>,
    ) -> Result<WriteOutcome, ErrorDetail> {
        let (tx, rx) = oneshot::channel();
        self.submit_to(group, Input::Propose { command, reply: tx })?;
        rx.await
            .map_err(|_| unavailable("raft loop stopped before answering"))?
    }

    /// Membership change on this node, which must be the leader.
    pub async fn change_membership_local(
        &self,
        add: bool,
        node: NodeInfo,
    ) -> Result<Vec<u64>, ErrorDetail> {
        self.change_membership_local_audited(add, node, None).await
    }

    /// [`Self::change_membership_local`], recorded in the audit log when `audit` is set.
    pub async fn change_membership_local_audited(
        &self,
        add: bool,
        node: NodeInfo,
        audit: Option<AuditContext>,
    ) -> Result<Vec<u64>, ErrorDetail> {
        self.change_membership_in(Group::Config, add, node, audit)
            .await
    }

    /// A membership change of either group on this node, which must lead it.
    pub async fn change_membership_in(
        &self,
        group: Group,
        add: bool,
        node: NodeInfo,
        audit: Option<AuditContext>,
    ) -> Result<Vec<u64>, ErrorDetail> {
        let (tx, rx) = oneshot::channel();
        self.submit_to(
            group,
            Input::ConfChange {
                add,
                node,
                audit,
                reply: tx,
            },
        )?;
        rx.await
            .map_err(|_| unavailable("raft loop stopped before answering"))?
    }

    /// A client for a member's node-to-node API, by node id.
    pub fn peer(&self, node_id: u64) -> Result<PeerClient, ErrorDetail> {
        let addr = self
            .address_of(node_id)
            .ok_or_else(|| unavailable(format!("no address known for node {node_id}")))?;
        self.peer_at(&addr)
    }

    /// The node-to-node address of a member.
    pub fn address_of(&self, node_id: u64) -> Option<String> {
        self.applied()
            .state
            .nodes()
            .into_iter()
            .find(|n| n.node_id == node_id)
            .map(|n| n.cluster_address)
    }

    /// A client for a node-to-node API at `address`, cached.
    pub fn peer_at(&self, address: &str) -> Result<PeerClient, ErrorDetail> {
        let mut clients = self.inner.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = clients.get(address) {
            return Ok(c.clone());
        }
        let _on_control_plane = self.inner.rt.as_ref().map(|rt| rt.enter());
        let c = peer_client(address, &self.inner.peer_opts)
            .map_err(|s| ErrorDetail::from_status(&s))?;
        clients.insert(address.to_string(), c.clone());
        Ok(c)
    }

    /// Waits (bounded) until the status changes.
    async fn wait_change(&self, deadline: Instant) {
        self.wait_change_in(Group::Config, deadline).await
    }

    async fn wait_change_in(&self, group: Group, deadline: Instant) {
        let mut rx = self.status_rx(group).clone();
        let left = deadline.saturating_duration_since(Instant::now());
        let _ = tokio::time::timeout(left.min(Duration::from_millis(200)), rx.changed()).await;
    }

    /// Writes a command through the leader. `Ok` carries the revision; a validation failure
    /// comes back as the state machine's error.
    pub async fn write(&self, cmd: &Command) -> Result<Written, ErrorDetail> {
        self.write_in(Group::Config, cmd).await
    }

    async fn write_in(&self, group: Group, cmd: &Command) -> Result<Written, ErrorDetail> {
        let bytes = cmd.encode_to_vec();
        let deadline = Instant::now() + LEADER_WAIT;
        loop {
            let st = self.status_of(group);
            if st.stopped {
                return Err(unavailable("this node has stopped"));
            }
            let res = if st.role == Role::Leader {
                self.propose_local_in(group, bytes.clone()).await
            } else if st.leader_id != 0 {
                self.forward(group, st.leader_id, bytes.clone()).await
            } else {
                Err(unavailable("no leader"))
            };
            match res {
                Ok(outcome) => return outcome_result(outcome),
                Err(e) if is_not_leader(&e) && Instant::now() < deadline => {
                    self.wait_change_in(group, deadline).await;
                }
                Err(e) => {
                    let reason = if is_not_leader(&e) {
                        "no_leader"
                    } else {
                        "error"
                    };
                    metrics::counter!(m::PROPOSALS_FAILED, "reason" => reason).increment(1);
                    return Err(e);
                }
            }
        }
    }

    async fn forward(
        &self,
        group: Group,
        leader: u64,
        command: Vec<u8>,
    ) -> Result<WriteOutcome, ErrorDetail> {
        metrics::counter!(m::FORWARDED_WRITES, "group" => group.label()).increment(1);
        let mut client = self.peer(leader)?;
        let mut req = tonic::Request::new(ProposeRequest {
            command,
            origin_node: self.node_id(),
            group: group.wire(),
        });
        req.set_timeout(PEER_CALL_TIMEOUT);
        match client.propose(req).await {
            Ok(r) => Ok(r.into_inner()),
            Err(s) => {
                let e = ErrorDetail::from_status(&s);
                if e.message == NOT_LEADER {
                    return Err(e);
                }
                if s.code() == tonic::Code::Unavailable && s.message().contains("connect error") {
                    // Never sent (the leader is gone): retried once a new leader is known.
                    tracing::debug!(leader, "the leader cannot be reached; waiting for another");
                    return Err(unavailable(NOT_LEADER));
                }
                tracing::warn!(leader, status = %s, "forwarding a write to the leader failed");
                Err(ErrorDetail::new(
                    ErrorCode::Unavailable,
                    format!("forwarding to leader {leader} failed: {}", s.message()),
                ))
            }
        }
    }

    /// Adds or removes a voter through the leader.
    pub async fn change_membership(
        &self,
        add: bool,
        node: NodeInfo,
    ) -> Result<Vec<u64>, ErrorDetail> {
        self.change_membership_audited(add, node, None).await
    }

    /// [`Self::change_membership`], recorded in the audit log (in the same Raft entry) when
    /// `audit` is set.
    pub async fn change_membership_audited(
        &self,
        add: bool,
        node: NodeInfo,
        audit: Option<AuditContext>,
    ) -> Result<Vec<u64>, ErrorDetail> {
        let deadline = Instant::now() + LEADER_WAIT;
        loop {
            let st = self.status();
            let res = if st.role == Role::Leader {
                self.change_membership_local_audited(add, node.clone(), audit.clone())
                    .await
            } else if st.leader_id != 0 {
                match self.peer(st.leader_id) {
                    Ok(mut c) => {
                        let mut req = tonic::Request::new(MembershipChange {
                            add,
                            node: Some(node.clone()),
                            audit: audit.clone(),
                        });
                        req.set_timeout(PEER_CALL_TIMEOUT);
                        match c.change_membership(req).await {
                            Ok(r) => {
                                let r = r.into_inner();
                                match r.error {
                                    Some(e) => Err(e),
                                    None => Ok(r.voters),
                                }
                            }
                            Err(s) => Err(ErrorDetail::from_status(&s)),
                        }
                    }
                    Err(e) => Err(e),
                }
            } else {
                Err(unavailable("no leader"))
            };
            match res {
                Err(e) if is_not_leader(&e) && Instant::now() < deadline => {
                    self.wait_change(deadline).await;
                }
                other => return other,
            }
        }
    }

    /// Linearizable read barrier: returns once this node applied everything the leader had
    /// committed when the read was issued.
    pub async fn read_barrier(&self) -> Result<u64, ErrorDetail> {
        self.read_barrier_in(Group::Config).await
    }

    async fn read_barrier_in(&self, group: Group) -> Result<u64, ErrorDetail> {
        let deadline = Instant::now() + LEADER_WAIT;
        loop {
            let (tx, rx) = oneshot::channel();
            self.submit_to(group, Input::ReadIndex { reply: tx })?;
            let res = rx
                .await
                .map_err(|_| unavailable("raft loop stopped before answering"))?;
            match res {
                Err(e) if e.code() == ErrorCode::Unavailable && Instant::now() < deadline => {
                    self.wait_change_in(group, deadline).await;
                }
                other => return other,
            }
        }
    }

    /// The client sessions of `bare` on every live node: (full JID, node).
    pub async fn user_sessions(&self, bare: &str) -> Vec<(String, u64)> {
        let nodes: Vec<NodeInfo> = self
            .applied()
            .state
            .nodes()
            .into_iter()
            .filter(|n| self.inner.routes.is_live(n.node_id))
            .collect();
        let calls = nodes.into_iter().map(|n| {
            let bare = bare.to_string();
            async move {
                if n.node_id == self.node_id() {
                    let list = match self.inner.routes.sink() {
                        Some(sink) => sink.local_sessions(bare).await,
                        None => vec![],
                    };
                    return list.into_iter().map(|j| (j, n.node_id)).collect::<Vec<_>>();
                }
                let Ok(mut c) = self.peer_at(&n.cluster_address) else {
                    return vec![];
                };
                let mut req =
                    tonic::Request::new(herald_grpc::cluster::LocalSessionsRequest { jid: bare });
                req.set_timeout(Duration::from_secs(2));
                match c.local_sessions(req).await {
                    Ok(r) => r
                        .into_inner()
                        .full_jids
                        .into_iter()
                        .map(|j| (j, n.node_id))
                        .collect(),
                    Err(_) => vec![],
                }
            }
        });
        let mut all: Vec<(String, u64)> = futures::future::join_all(calls)
            .await
            .into_iter()
            .flatten()
            .collect();
        all.sort();
        all
    }

    /// This node's own status as the node-to-node API reports it.
    pub fn local_status(&self) -> StatusReply {
        let grant = self.lease_grant();
        let st = self.status();
        let applied = self.applied();
        StatusReply {
            node_id: st.node_id,
            leader_id: st.leader_id,
            role: st.role.as_str().to_string(),
            term: st.term,
            commit_index: st.commit,
            applied_index: applied.state.applied_index(),
            config_digest: applied.digest().to_string(),
            voters: st.voters,
            learners: st.learners,
            stopping: self.routes().is_stopping(),
            placement_epoch: grant.unwrap_or(applied.placement().epoch),
            grants_lease: grant.is_some(),
            users_group: self.inner.users.get().map(|u| {
                let st = u.status.borrow().clone();
                let applied = u.applied.borrow().clone();
                herald_grpc::cluster::GroupStatus {
                    leader_id: st.leader_id,
                    role: st.role.as_str().to_string(),
                    term: st.term,
                    commit_index: st.commit,
                    applied_index: applied.state.applied_index(),
                    voters: st.voters,
                    learners: st.learners,
                    digest: applied.digest().to_string(),
                }
            }),
        }
    }

    /// Every member's status, asked in parallel; `Err` for members that did not answer.
    pub async fn member_statuses(&self) -> Vec<(NodeInfo, Result<StatusReply, ErrorDetail>)> {
        let nodes = self.applied().state.nodes();
        let calls = nodes.into_iter().map(|n| async move {
            if n.node_id == self.node_id() {
                return (n, Ok(self.local_status()));
            }
            let res = match self.peer_at(&n.cluster_address) {
                Ok(mut c) => {
                    let mut req = tonic::Request::new(StatusRequest {
                        from_node: self.node_id(),
                    });
                    req.set_timeout(Duration::from_secs(2));
                    c.status(req)
                        .await
                        .map(|r| r.into_inner())
                        .map_err(|s| ErrorDetail::from_status(&s))
                }
                Err(e) => Err(e),
            };
            (n, res)
        });
        futures::future::join_all(calls).await
    }
}

fn outcome_result(o: WriteOutcome) -> Result<Written, ErrorDetail> {
    match o.result {
        Some(write_outcome::Result::Revision(revision)) => Ok(Written {
            revision,
            warnings: o.warnings,
        }),
        Some(write_outcome::Result::Error(e)) => Err(e),
        None => Err(ErrorDetail::new(ErrorCode::Internal, "empty write outcome")),
    }
}
