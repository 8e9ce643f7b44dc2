//! The one owner loop of a node's Raft group (STYLE.md habit 5).
//!
//! A dedicated OS thread owns the `RawNode`, its [`DiskStorage`] and the [`StateMachine`]. Every
//! input arrives as an [`Input`] on one channel; time advances by `tick()` every `tick`
//! interval. Each round follows raft-rs's documented Ready order: send messages, install a
//! snapshot, apply committed entries, persist entries and hard state (fsync), send persisted
//! messages, advance, then the LightReady's commit index, messages and committed entries.
//!
//! What the rest of the node sees is published on two `watch` channels: [`RaftStatus`] (role,
//! leader, term, indexes) and [`Applied`] (an immutable copy of the applied state and its digest).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{Receiver, RecvTimeoutError};
use herald_grpc::config::{
    write_outcome, Command, ErrorCode, ErrorDetail, StoreSnapshot, WriteOutcome,
};
use prost::Message as _;
use raft::eraftpb::{Entry, EntryType, Message, Snapshot};
use raft::{RawNode, SnapshotStatus, StateRole};
use tokio::sync::{oneshot, watch};

use crate::metrics as m;
use crate::state::StateMachine;
use crate::storage::{DiskStorage, StorageError};
use crate::transport::Transport;

mod compaction;
mod membership;
mod types;

pub use types::*;
use types::{
    decode_ctx, encode_ctx, unavailable, Answer, ConfRequest, Pending, PendingEntry, ReadReply,
    ReadRound,
};

/// Builds the first snapshot of a brand-new cluster: this node as the only voter, and the
/// bootstrap state (default domains, this node).
pub fn bootstrap_snapshot(node_id: u64, state: &StateMachine) -> Snapshot {
    let mut snap = Snapshot::default();
    snap.mut_metadata().index = 1;
    snap.mut_metadata().term = 1;
    snap.mut_metadata().mut_conf_state().voters = vec![node_id];
    let mut s = state.to_snapshot();
    s.applied_index = 1;
    snap.data = s.encode_to_vec().into();
    snap
}

/// ReadIndex rounds issued by every loop in this process (for tests; `/metrics` has
/// [`m::READ_INDEX_ROUNDS`]).
pub static READ_INDEX_ROUNDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The owner loop. Create with [`RaftLoop::new`], then [`RaftLoop::run`] on its own thread.
pub struct RaftLoop {
    cfg: RaftConfig,
    group: Group,
    raw: RawNode<DiskStorage>,
    state: StateMachine,
    inbox: Receiver<Input>,
    transport: Arc<dyn Transport>,
    status_tx: watch::Sender<RaftStatus>,
    applied_tx: watch::Sender<Arc<Applied>>,
    events: tokio::sync::mpsc::UnboundedSender<Event>,
    pending: HashMap<u64, PendingEntry>,
    /// Read rounds waiting for a read state, by request number. At most one is in flight: reads
    /// that arrive meanwhile wait in `reads_waiting` and share the next round, so a burst of
    /// linearizable reads costs a handful of ReadIndex rounds, not one each.
    reads_pending: HashMap<u64, ReadRound>,
    reads_waiting: Vec<ReadReply>,
    reads_ready: Vec<(u64, ReadReply)>,
    /// Replies to writes and membership changes applied in this round, sent once the state
    /// they produced is published.
    answers: Vec<Answer>,
    next_seq: u64,
    last_snapshot_index: u64,
    /// Size of the last snapshot's state, and bytes of entries applied since a snapshot was
    /// last started (see `compaction`).
    snapshot_bytes: u64,
    log_bytes: u64,
    last_leader: u64,
    snapshots_installed: u64,
    removed: bool,
    dirty: bool,
    /// Membership changes waiting for their turn, oldest first (raft-rs silently drops a conf
    /// change proposed while another is pending, so the loop proposes them one at a time).
    conf_queue: std::collections::VecDeque<ConfRequest>,
    /// The snapshot being encoded off this thread, if any (see `compaction`).
    building: Option<compaction::Build>,
    /// A membership change was applied: snapshot now, so that the snapshot a new member gets
    /// names it as a voter (raft-rs ignores a snapshot whose conf state lacks the receiver).
    force_snapshot: bool,
}

/// The channels a [`RaftLoop`] publishes on, for the handle to read.
pub struct LoopOutputs {
    pub status: watch::Receiver<RaftStatus>,
    pub applied: watch::Receiver<Arc<Applied>>,
    pub events: tokio::sync::mpsc::UnboundedReceiver<Event>,
}

impl RaftLoop {
    /// Opens the Raft group over `storage`. A storage that was never written must have been
    /// bootstrapped (given a first snapshot) or belong to a node that will join: it then starts
    /// with no voters and waits for the leader to send it a snapshot.
    pub fn new(
        cfg: RaftConfig,
        storage: DiskStorage,
        inbox: Receiver<Input>,
        transport: Arc<dyn Transport>,
        logger: &slog::Logger,
    ) -> Result<(Self, LoopOutputs), LoopError> {
        Self::new_group(cfg, Group::Config, storage, inbox, transport, logger)
    }

    /// [`Self::new`] for either of a node's groups.
    pub fn new_group(
        cfg: RaftConfig,
        group: Group,
        storage: DiskStorage,
        inbox: Receiver<Input>,
        transport: Arc<dyn Transport>,
        logger: &slog::Logger,
    ) -> Result<(Self, LoopOutputs), LoopError> {
        let snap = storage.latest_snapshot().clone();
        let state = match (snap.data.is_empty(), group) {
            (true, Group::Config) => StateMachine::default(),
            (true, Group::Users) => StateMachine::for_users_group(),
            (false, _) => restore_state(&snap, group)?,
        };
        let applied = snap.get_metadata().index;
        let raft_cfg = raft::Config {
            id: cfg.node_id,
            election_tick: cfg.election_ticks,
            heartbeat_tick: cfg.heartbeat_ticks,
            applied,
            max_size_per_msg: cfg.max_size_per_msg,
            max_inflight_msgs: 256,
            check_quorum: true,
            pre_vote: true,
            ..Default::default()
        };
        raft_cfg.validate().map_err(LoopError::Raft)?;
        let raw = RawNode::new(&raft_cfg, storage, logger).map_err(LoopError::Raft)?;
        for n in state.nodes() {
            transport.learn_address(n.node_id, &n.cluster_address);
        }
        let (status_tx, status) = watch::channel(RaftStatus {
            node_id: cfg.node_id,
            ..Default::default()
        });
        let (applied_tx, applied_rx) = watch::channel(Arc::new(Applied::new(state.clone())));
        let (events_tx, events) = tokio::sync::mpsc::unbounded_channel();
        let mut me = RaftLoop {
            cfg,
            group,
            raw,
            state,
            inbox,
            transport,
            status_tx,
            applied_tx,
            events: events_tx,
            pending: HashMap::new(),
            reads_pending: HashMap::new(),
            reads_waiting: Vec::new(),
            reads_ready: Vec::new(),
            answers: Vec::new(),
            next_seq: 1,
            last_snapshot_index: applied,
            snapshot_bytes: snap.data.len() as u64,
            log_bytes: 0,
            last_leader: 0,
            snapshots_installed: 0,
            removed: false,
            dirty: false,
            force_snapshot: false,
            conf_queue: std::collections::VecDeque::new(),
            building: None,
        };
        // A lone voter needs nobody's vote: lead at once instead of after an election timeout.
        let voters = me.raw.store().conf_state().voters.clone();
        if voters == [me.cfg.node_id] {
            let _ = me.raw.campaign();
        }
        me.publish_status();
        Ok((
            me,
            LoopOutputs {
                status,
                applied: applied_rx,
                events,
            },
        ))
    }

    /// Runs until shutdown, removal, or a storage failure (which is returned).
    pub fn run(mut self) -> Result<(), LoopError> {
        let mut next_tick = Instant::now() + self.cfg.tick;
        let result = loop {
            let now = Instant::now();
            let wait = next_tick.saturating_duration_since(now);
            let mut stop = false;
            match self.inbox.recv_timeout(wait) {
                Ok(input) => {
                    stop |= self.handle(input);
                    // Batch whatever else is already queued into the same Ready.
                    for _ in 0..1024 {
                        match self.inbox.try_recv() {
                            Ok(input) => stop |= self.handle(input),
                            Err(_) => break,
                        }
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => stop = true,
            }
            if Instant::now() >= next_tick {
                self.raw.tick();
                next_tick += self.cfg.tick;
                if next_tick < Instant::now() {
                    next_tick = Instant::now() + self.cfg.tick;
                }
                self.expire(Instant::now());
            }
            self.drive_membership(Instant::now());
            if let Err(e) = self.finish_snapshot_build() {
                break Err(e);
            }
            self.issue_reads();
            if let Err(e) = self.on_ready() {
                break Err(e);
            }
            // A round that completed lets the reads that waited behind it go at once.
            if self.issue_reads() {
                if let Err(e) = self.on_ready() {
                    break Err(e);
                }
            }
            if stop || self.removed {
                break Ok(());
            }
        };
        self.fail_all("node is shutting down");
        let mut st = self.status_tx.borrow().clone();
        st.stopped = true;
        st.removed = self.removed;
        st.role = Role::Follower;
        st.leader_id = 0;
        let _ = self.status_tx.send(st);
        if let Err(e) = &result {
            tracing::error!(error = %e, group = self.group.label(), "raft loop stopped on a storage failure");
        }
        result
    }

    /// Returns true when the loop must stop.
    fn handle(&mut self, input: Input) -> bool {
        match input {
            Input::Propose { command, reply } => self.propose(command, reply),
            Input::ConfChange {
                add,
                node,
                audit,
                reply,
            } => self.queue_conf(ConfRequest {
                add,
                node,
                audit,
                reply,
                deadline: Instant::now() + self.cfg.proposal_timeout,
            }),
            Input::Raft {
                message,
                from_address,
            } => {
                if !from_address.is_empty() {
                    self.transport.learn_address(message.from, &from_address);
                }
                if let Err(e) = self.raw.step(*message) {
                    tracing::debug!(error = %e, "raft step ignored a message");
                }
            }
            Input::ReadIndex { reply } => self.reads_waiting.push(reply),
            Input::Unreachable(id) => self.raw.report_unreachable(id),
            Input::SnapshotSent { to, ok } => {
                let st = if ok {
                    SnapshotStatus::Finish
                } else {
                    SnapshotStatus::Failure
                };
                self.raw.report_snapshot(to, st);
            }
            Input::Removed => {
                self.removed = true;
                return true;
            }
            Input::Shutdown => return true,
        }
        false
    }

    fn seq(&mut self) -> u64 {
        let s = self.next_seq;
        self.next_seq += 1;
        s
    }

    fn propose(&mut self, command: Vec<u8>, reply: oneshot::Sender<WriteResult>) {
        if self.raw.raft.state != StateRole::Leader {
            metrics::counter!(m::PROPOSALS_FAILED, "reason" => "not_leader").increment(1);
            let _ = reply.send(Err(unavailable("not the leader")));
            return;
        }
        let seq = self.seq();
        let ctx = encode_ctx(self.cfg.node_id, seq, &[]);
        match self.raw.propose(ctx, command) {
            Ok(()) => {
                let now = Instant::now();
                self.pending.insert(
                    seq,
                    PendingEntry {
                        reply: Pending::Write(reply),
                        started: now,
                        deadline: now + self.cfg.proposal_timeout,
                    },
                );
            }
            Err(e) => {
                metrics::counter!(m::PROPOSALS_FAILED, "reason" => "dropped").increment(1);
                let _ = reply.send(Err(unavailable(format!("proposal dropped: {e}"))));
            }
        }
    }

    fn on_ready(&mut self) -> Result<(), LoopError> {
        if !self.raw.has_ready() {
            self.publish_status();
            return Ok(());
        }
        let mut ready = self.raw.ready();
        self.send(ready.take_messages());
        if !ready.snapshot().is_empty() {
            let snap = ready.snapshot().clone();
            self.install_snapshot(snap)?;
        }
        let committed = ready.take_committed_entries();
        self.apply_entries(committed)?;
        // Entries and hard state in one fsync; a hard state that only moved the commit index
        // is kept in memory (the storage decides: it compares term and vote).
        if !ready.entries().is_empty() || ready.hs().is_some() {
            let hs = ready.hs().cloned();
            self.raw.mut_store().persist(ready.entries(), hs.as_ref())?;
        }
        self.send(ready.take_persisted_messages());
        for rs in ready.take_read_states() {
            let seq = rs
                .request_ctx
                .get(..8)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_be_bytes);
            if let Some(round) = seq.and_then(|s| self.reads_pending.remove(&s)) {
                self.reads_ready
                    .extend(round.replies.into_iter().map(|r| (rs.index, r)));
            }
        }
        let mut light = self.raw.advance(ready);
        if let Some(commit) = light.commit_index() {
            self.raw.mut_store().set_commit(commit)?;
        }
        self.send(light.take_messages());
        let committed = light.take_committed_entries();
        self.apply_entries(committed)?;
        self.raw.advance_apply();
        // Published before anyone is answered: a caller that reads this node's applied state
        // right after its write or read barrier returns sees at least what it waited for.
        // (The snapshot build also starts from the published state.)
        self.publish_applied();
        self.finish_reads();
        self.send_answers();
        self.maybe_compact()?;
        self.publish_status();
        Ok(())
    }

    fn send(&mut self, msgs: Vec<Message>) {
        for msg in msgs {
            self.transport.send(msg);
        }
    }

    fn install_snapshot(&mut self, snap: Snapshot) -> Result<(), LoopError> {
        let index = snap.get_metadata().index;
        let snap_bytes = snap.data.len() as u64;
        let state = restore_state(&snap, self.group)?;
        self.raw.mut_store().apply_snapshot(snap)?;
        self.state = state;
        self.state.set_applied_index(index);
        self.last_snapshot_index = index;
        self.snapshot_bytes = snap_bytes;
        self.log_bytes = 0;
        for n in self.state.nodes() {
            self.transport.learn_address(n.node_id, &n.cluster_address);
        }
        metrics::counter!(m::SNAPSHOTS_INSTALLED).increment(1);
        self.snapshots_installed += 1;
        tracing::info!(
            index,
            group = self.group.label(),
            "installed a snapshot from the leader"
        );
        self.dirty = true;
        Ok(())
    }

    fn apply_entries(&mut self, entries: Vec<Entry>) -> Result<(), LoopError> {
        for e in entries {
            if e.index <= self.state.applied_index() {
                continue;
            }
            match e.get_entry_type() {
                EntryType::EntryNormal => self.apply_normal(&e),
                EntryType::EntryConfChange => self.apply_conf(&e)?,
                EntryType::EntryConfChangeV2 => {
                    tracing::warn!(index = e.index, "ignoring an unexpected ConfChangeV2 entry");
                }
            }
            self.state.set_applied_index(e.index);
            self.log_bytes += e.data.len() as u64;
            self.dirty = true;
        }
        Ok(())
    }

    fn apply_normal(&mut self, e: &Entry) {
        if e.data.is_empty() {
            return; // A new leader's empty entry.
        }
        let outcome = match Command::decode(&e.data[..]) {
            Ok(cmd) => {
                let outcome = self.state.apply(e.index, &cmd);
                if cmd.audit.is_some()
                    && matches!(outcome.result, Some(write_outcome::Result::Revision(_)))
                {
                    metrics::counter!(m::AUDIT_RECORDS).increment(1);
                }
                outcome
            }
            Err(err) => WriteOutcome {
                result: Some(write_outcome::Result::Error(ErrorDetail::new(
                    ErrorCode::Internal,
                    format!("undecodable command at index {}: {err}", e.index),
                ))),
                warnings: vec![],
            },
        };
        if let Some((node, seq, _)) = decode_ctx(&e.context) {
            if node == self.cfg.node_id {
                if let Some(p) = self.pending.remove(&seq) {
                    metrics::histogram!(m::PROPOSAL_DURATION)
                        .record(p.started.elapsed().as_secs_f64());
                    if let Pending::Write(reply) = p.reply {
                        self.answers.push(Answer::Write(reply, Ok(outcome)));
                    }
                }
            }
        }
    }

    /// Issues one ReadIndex round for every read waiting, unless a round is in flight. Returns
    /// true when it issued one.
    fn issue_reads(&mut self) -> bool {
        if self.reads_waiting.is_empty() || !self.reads_pending.is_empty() {
            return false;
        }
        let seq = self.seq();
        self.raw.read_index(seq.to_be_bytes().to_vec());
        let now = Instant::now();
        let replies = std::mem::take(&mut self.reads_waiting);
        metrics::counter!(m::READ_INDEX_ROUNDS).increment(1);
        metrics::counter!(m::LINEARIZABLE_READS).increment(replies.len() as u64);
        READ_INDEX_ROUNDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.reads_pending.insert(
            seq,
            ReadRound {
                replies,
                deadline: now + self.cfg.proposal_timeout,
                last: now,
            },
        );
        true
    }

    fn finish_reads(&mut self) {
        let applied = self.state.applied_index();
        let mut i = 0;
        while i < self.reads_ready.len() {
            if self.reads_ready[i].0 <= applied {
                let (idx, reply) = self.reads_ready.swap_remove(i);
                let _ = reply.send(Ok(idx));
            } else {
                i += 1;
            }
        }
    }

    fn expire(&mut self, now: Instant) {
        let expired: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(k, _)| *k)
            .collect();
        for seq in expired {
            if let Some(p) = self.pending.remove(&seq) {
                metrics::counter!(m::PROPOSALS_FAILED, "reason" => "timeout").increment(1);
                let err = ErrorDetail::new(
                    ErrorCode::Aborted,
                    "the write was not applied in time (leadership may have changed); \
                     its outcome is unknown: read before retrying",
                );
                match p.reply {
                    Pending::Write(r) => {
                        let _ = r.send(Err(err));
                    }
                    Pending::Conf(r) => {
                        let _ = r.send(Err(err));
                    }
                }
            }
        }
        // raft-rs drops a read request that arrives before the leader committed an entry in its
        // term, or while no leader is known: ask again every other tick until answered.
        let retry_after = self.cfg.tick * 2;
        for (seq, round) in self.reads_pending.iter_mut() {
            if round.last + retry_after <= now {
                round.last = now;
                self.raw.read_index(seq.to_be_bytes().to_vec());
            }
        }
        let expired: Vec<u64> = self
            .reads_pending
            .iter()
            .filter(|(_, round)| round.deadline <= now)
            .map(|(k, _)| *k)
            .collect();
        for seq in expired {
            if let Some(round) = self.reads_pending.remove(&seq) {
                for r in round.replies {
                    let _ = r.send(Err(unavailable(
                        "no leader confirmed the read in time; retry",
                    )));
                }
            }
        }
    }

    fn send_answers(&mut self) {
        for a in self.answers.drain(..) {
            match a {
                Answer::Write(r, v) => {
                    let _ = r.send(v);
                }
                Answer::Conf(r, v) => {
                    let _ = r.send(v);
                }
            }
        }
    }

    fn fail_all(&mut self, why: &str) {
        // Applied already: these are answered with their outcome, not failed.
        self.publish_applied();
        self.send_answers();
        for req in self.conf_queue.drain(..) {
            let _ = req.reply.send(Err(unavailable(why)));
        }
        for (_, p) in self.pending.drain() {
            let err = ErrorDetail::new(ErrorCode::Aborted, format!("{why}; outcome unknown"));
            match p.reply {
                Pending::Write(r) => {
                    let _ = r.send(Err(err));
                }
                Pending::Conf(r) => {
                    let _ = r.send(Err(err));
                }
            }
        }
        let rounds = self.reads_pending.drain().flat_map(|(_, r)| r.replies);
        for r in rounds.chain(self.reads_waiting.drain(..)) {
            let _ = r.send(Err(unavailable(why)));
        }
        for (_, r) in self.reads_ready.drain(..) {
            let _ = r.send(Err(unavailable(why)));
        }
    }

    fn publish_applied(&mut self) {
        if !self.dirty {
            return;
        }
        self.dirty = false;
        let _ = self
            .applied_tx
            .send(Arc::new(Applied::new(self.state.clone())));
    }

    fn publish_status(&mut self) {
        let raft = &self.raw.raft;
        let role = match raft.state {
            StateRole::Leader => Role::Leader,
            StateRole::Follower => Role::Follower,
            StateRole::Candidate => Role::Candidate,
            StateRole::PreCandidate => Role::PreCandidate,
        };
        let st = RaftStatus {
            node_id: self.cfg.node_id,
            leader_id: raft.leader_id,
            term: raft.term,
            role,
            commit: raft.raft_log.committed,
            applied: self.state.applied_index(),
            voters: self.raw.store().conf_state().voters.clone(),
            learners: self.raw.store().conf_state().learners.clone(),
            snapshots_installed: self.snapshots_installed,
            removed: self.removed,
            stopped: false,
        };
        if st.leader_id != self.last_leader {
            if st.leader_id != 0 {
                metrics::counter!(m::LEADER_CHANGES, "group" => self.group.label()).increment(1);
                tracing::info!(
                    leader = st.leader_id,
                    term = st.term,
                    group = self.group.label(),
                    "raft leader changed"
                );
            }
            self.last_leader = st.leader_id;
        }
        let g = self.group.label();
        metrics::gauge!(m::TERM, "group" => g).set(st.term as f64);
        metrics::gauge!(m::COMMIT_INDEX, "group" => g).set(st.commit as f64);
        metrics::gauge!(m::APPLIED_INDEX, "group" => g).set(st.applied as f64);
        metrics::gauge!(m::IS_LEADER, "group" => g).set(if role == Role::Leader {
            1.0
        } else {
            0.0
        });
        metrics::gauge!(m::VOTERS, "group" => g).set(st.voters.len() as f64);
        metrics::gauge!(m::LEARNERS, "group" => g).set(st.learners.len() as f64);
        self.status_tx.send_if_modified(|cur| {
            if *cur != st {
                *cur = st;
                true
            } else {
                false
            }
        });
    }
}

fn restore_state(snap: &Snapshot, group: Group) -> Result<StateMachine, LoopError> {
    let s = StoreSnapshot::decode(&snap.data[..])
        .map_err(|e| LoopError::Corrupt(format!("snapshot data: {e}")))?;
    let mut sm = StateMachine::from_snapshot(&s)
        .map_err(|e| LoopError::Corrupt(format!("snapshot state: {e}")))?;
    if group == Group::Users {
        sm.set_users_group();
    }
    sm.set_applied_index(snap.get_metadata().index);
    Ok(sm)
}

/// Why the loop could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum LoopError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("raft: {0}")]
    Raft(raft::Error),
    #[error("corrupt replicated data: {0}")]
    Corrupt(String),
}
