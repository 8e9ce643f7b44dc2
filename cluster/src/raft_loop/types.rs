//! The owner loop's public types: its configuration, inputs, published status and events, and
//! the proposal context codec.

use std::time::{Duration, Instant};

use herald_grpc::config::{AuditContext, ErrorCode, ErrorDetail, NodeInfo, WriteOutcome};
use raft::eraftpb::Message;
use tokio::sync::oneshot;

use crate::state::StateMachine;

/// Tuning of the Raft group.
#[derive(Debug, Clone)]
pub struct RaftConfig {
    pub node_id: u64,
    pub tick: Duration,
    pub election_ticks: usize,
    pub heartbeat_ticks: usize,
    /// Take a snapshot and compact the log after this many applied entries.
    pub snapshot_entries: u64,
    /// Entries kept in the log behind each snapshot, so that a follower that lags by up to this
    /// many entries catches up from the log instead of receiving a whole snapshot.
    pub compaction_lag: u64,
    /// A learner is promoted to voter once its log is within this many entries of the leader's.
    pub promote_lag: u64,
    /// Largest batch of entries in one append message, in bytes; keep it well below the gRPC
    /// message cap (a quarter of it), or a follower catching up from the log gets messages its
    /// server refuses.
    pub max_size_per_msg: u64,
    /// How long a proposal may wait to be applied before its caller is told the outcome is unknown.
    pub proposal_timeout: Duration,
}

/// Which of a node's Raft groups a loop runs. Every member runs both, over the same transport
/// and node-to-node API: the config group (domains, users, policies, placement) and the
/// user-state group (each user's roster, block list and offline messages), so that config
/// writes never queue behind user traffic and the config stays small.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    Config,
    Users,
}

impl Group {
    /// The group's number on the wire (`RaftEnvelope.group`, `ProposeRequest.group`).
    pub fn wire(self) -> u32 {
        match self {
            Group::Config => 0,
            Group::Users => 1,
        }
    }

    pub fn from_wire(n: u32) -> Option<Group> {
        match n {
            0 => Some(Group::Config),
            1 => Some(Group::Users),
            _ => None,
        }
    }

    /// Metric label and log field.
    pub fn label(self) -> &'static str {
        match self {
            Group::Config => "config",
            Group::Users => "users",
        }
    }
}

impl RaftConfig {
    pub fn for_test(node_id: u64) -> Self {
        RaftConfig {
            node_id,
            tick: Duration::from_millis(20),
            election_ticks: 10,
            heartbeat_ticks: 2,
            snapshot_entries: 50,
            compaction_lag: 20,
            promote_lag: 10,
            max_size_per_msg: 1 << 20,
            proposal_timeout: Duration::from_secs(5),
        }
    }
}

/// Reply to a write: the outcome as applied (which may itself be a validation error), or a
/// failure to get it applied at all.
pub type WriteResult = Result<WriteOutcome, ErrorDetail>;

/// Everything the owner loop reacts to.
pub enum Input {
    /// Propose an encoded [`Command`]; answered once applied on this node.
    Propose {
        command: Vec<u8>,
        reply: oneshot::Sender<WriteResult>,
    },
    /// Add a node (as a learner: the leader promotes it to voter once it has caught up) or
    /// remove a voter or learner; answered with the voters once applied.
    ConfChange {
        add: bool,
        node: NodeInfo,
        /// Who asked, when an admin did: recorded in the audit log with the change.
        audit: Option<AuditContext>,
        reply: oneshot::Sender<Result<Vec<u64>, ErrorDetail>>,
    },
    /// A Raft message from a peer, with the peer's address.
    Raft {
        message: Box<Message>,
        from_address: String,
    },
    /// A linearizable-read barrier: answered with an index once this node applied it.
    ReadIndex {
        reply: oneshot::Sender<Result<u64, ErrorDetail>>,
    },
    Unreachable(u64),
    SnapshotSent {
        to: u64,
        ok: bool,
    },
    /// The leader says this node was removed from the cluster.
    Removed,
    Shutdown,
}

/// Role of this node in the Raft group, as operators see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Role {
    Leader,
    #[default]
    Follower,
    Candidate,
    PreCandidate,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Leader => "leader",
            Role::Follower => "follower",
            Role::Candidate => "candidate",
            Role::PreCandidate => "pre-candidate",
        }
    }
}

/// A cheap snapshot of the Raft group's state on this node.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RaftStatus {
    pub node_id: u64,
    /// 0 when no leader is known.
    pub leader_id: u64,
    pub term: u64,
    pub role: Role,
    pub commit: u64,
    pub applied: u64,
    pub voters: Vec<u64>,
    /// Members that receive the log but do not vote yet (joined, still catching up).
    pub learners: Vec<u64>,
    /// Snapshots received from a leader and installed since this loop started.
    pub snapshots_installed: u64,
    /// This node was removed from the cluster and its loop has stopped.
    pub removed: bool,
    /// The loop has stopped (shutdown, removal or a storage failure).
    pub stopped: bool,
}

/// The applied config state, immutable once published.
#[derive(Debug, Clone, Default)]
pub struct Applied {
    pub state: StateMachine,
    /// Computed when first asked (`cluster status`), not on every applied batch: hashing the
    /// whole store per write would make writes cost O(store size).
    digest: std::sync::OnceLock<String>,
    /// The placement view, computed when first asked (every routed stanza asks).
    placement: std::sync::OnceLock<crate::ownership::View>,
}

impl Applied {
    /// The published state; its digest is computed on demand.
    pub fn new(state: StateMachine) -> Self {
        Applied {
            state,
            digest: std::sync::OnceLock::new(),
            placement: std::sync::OnceLock::new(),
        }
    }

    /// The placement view of this state (see [`StateMachine::placement`]).
    pub fn placement(&self) -> &crate::ownership::View {
        self.placement.get_or_init(|| self.state.placement())
    }

    /// Hex SHA-256 of the stored objects (see [`StateMachine::digest`]).
    pub fn digest(&self) -> &str {
        self.digest.get_or_init(|| self.state.digest())
    }
}

/// Something the node around the loop must act on.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// This leader removed `node` from the cluster at this Raft index: tell it, so that it
    /// stops.
    PeerRemoved(NodeInfo, u64),
}

impl RaftStatus {
    /// Voter or learner.
    pub fn is_member(&self, node: u64) -> bool {
        self.voters.contains(&node) || self.learners.contains(&node)
    }

    /// `voter`, `learner`, or empty when `node` is neither.
    pub fn membership_of(&self, node: u64) -> &'static str {
        if self.voters.contains(&node) {
            "voter"
        } else if self.learners.contains(&node) {
            "learner"
        } else {
            ""
        }
    }
}

pub(crate) type ReadReply = oneshot::Sender<Result<u64, ErrorDetail>>;

/// One ReadIndex round in flight, shared by every read that was waiting when it was issued.
pub(crate) struct ReadRound {
    pub(crate) replies: Vec<ReadReply>,
    pub(crate) deadline: Instant,
    /// When read_index was last issued for it (raft-rs drops some requests: it is re-issued).
    pub(crate) last: Instant,
}

/// A membership change waiting for its turn (raft-rs takes one at a time).
pub(crate) struct ConfRequest {
    pub(crate) add: bool,
    pub(crate) node: NodeInfo,
    pub(crate) audit: Option<AuditContext>,
    pub(crate) reply: oneshot::Sender<Result<Vec<u64>, ErrorDetail>>,
    pub(crate) deadline: Instant,
}

/// A reply held until the state it reports on is published.
pub(crate) enum Answer {
    Write(oneshot::Sender<WriteResult>, WriteResult),
    Conf(
        oneshot::Sender<Result<Vec<u64>, ErrorDetail>>,
        Result<Vec<u64>, ErrorDetail>,
    ),
}

pub(crate) enum Pending {
    Write(oneshot::Sender<WriteResult>),
    Conf(oneshot::Sender<Result<Vec<u64>, ErrorDetail>>),
}

pub(crate) struct PendingEntry {
    pub(crate) reply: Pending,
    pub(crate) started: Instant,
    pub(crate) deadline: Instant,
}

/// Proposal context: the proposing node and its request number, so that only the proposer
/// answers, and only the request that proposed the entry.
pub(crate) fn encode_ctx(node: u64, seq: u64, extra: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(16 + extra.len());
    v.extend_from_slice(&node.to_be_bytes());
    v.extend_from_slice(&seq.to_be_bytes());
    v.extend_from_slice(extra);
    v
}

pub(crate) fn decode_ctx(ctx: &[u8]) -> Option<(u64, u64, &[u8])> {
    if ctx.len() < 16 {
        return None;
    }
    let node = u64::from_be_bytes(ctx[0..8].try_into().ok()?);
    let seq = u64::from_be_bytes(ctx[8..16].try_into().ok()?);
    Some((node, seq, &ctx[16..]))
}

pub(crate) fn unavailable(msg: impl Into<String>) -> ErrorDetail {
    ErrorDetail::new(ErrorCode::Unavailable, msg)
}
