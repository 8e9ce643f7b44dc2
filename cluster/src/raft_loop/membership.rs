//! Membership changes of the owner loop: learner-first joins, promotion once caught up, removal.
//!
//! A node that joins (or that an admin adds) enters as a **learner**: it receives the log and
//! snapshots but does not vote, so the quorum is unchanged while it catches up. A joiner that
//! dies half-way never costs the cluster its quorum (a one-node cluster keeps committing) and can
//! be removed like any member. The leader promotes a learner to voter once its log is within
//! [`super::RaftConfig::promote_lag`] entries of the leader's and it has acknowledged a matching
//! log (it installed its snapshot, when it needed one).
//!
//! raft-rs accepts one conf change at a time and silently turns a second one into an empty entry,
//! so requests wait in a queue and are proposed one by one, each once the previous is applied.

use std::time::Instant;

use herald_grpc::config::{ErrorCode, ErrorDetail, MembershipContext, NodeInfo};
use prost::Message as _;
use protobuf::Message as _;
use raft::eraftpb::{ConfChange, ConfChangeType, Entry};
use raft::{ProgressState, StateRole};

use super::types::{
    decode_ctx, encode_ctx, unavailable, Answer, ConfRequest, Pending, PendingEntry,
};
use super::{Event, LoopError, RaftLoop};
use crate::handle::NOT_LEADER;
use crate::metrics as m;

impl RaftLoop {
    pub(super) fn queue_conf(&mut self, req: ConfRequest) {
        if self.raw.raft.state != StateRole::Leader {
            let _ = req.reply.send(Err(unavailable(NOT_LEADER)));
            return;
        }
        self.conf_queue.push_back(req);
        self.drive_membership(Instant::now());
    }

    /// Proposes the next queued membership change, or a promotion, when none is in flight.
    /// Called every round.
    pub(super) fn drive_membership(&mut self, now: Instant) {
        if self.raw.raft.state != StateRole::Leader {
            // The handle retries "not the leader" through the new leader.
            for req in self.conf_queue.drain(..) {
                let _ = req.reply.send(Err(unavailable(NOT_LEADER)));
            }
            return;
        }
        while self.conf_queue.front().is_some_and(|r| r.deadline <= now) {
            if let Some(req) = self.conf_queue.pop_front() {
                let _ = req.reply.send(Err(ErrorDetail::new(
                    ErrorCode::Aborted,
                    "the membership change waited too long behind others; retry",
                )));
            }
        }
        if self.raw.raft.has_pending_conf() {
            return;
        }
        if let Some(req) = self.conf_queue.pop_front() {
            self.propose_conf(req);
            return;
        }
        self.maybe_promote();
    }

    fn propose_conf(&mut self, req: ConfRequest) {
        let ConfRequest {
            add,
            node,
            audit,
            reply,
            ..
        } = req;
        let cs = self.raw.store().conf_state();
        let voters = cs.voters.clone();
        let is_voter = voters.contains(&node.node_id);
        let is_learner = cs.learners.contains(&node.node_id);
        if add && (is_voter || is_learner) {
            // Idempotent: a restarted joiner asks again; a learner is promoted once caught up.
            let _ = reply.send(Ok(voters));
            return;
        }
        if !add && !is_voter && !is_learner {
            let _ = reply.send(Err(ErrorDetail::new(
                ErrorCode::NotFound,
                format!("node {} is not a member", node.node_id),
            )));
            return;
        }
        if !add && is_voter && voters.len() == 1 {
            let _ = reply.send(Err(ErrorDetail::new(
                ErrorCode::FailedPrecondition,
                "cannot remove the last voter",
            )));
            return;
        }
        let change = if add {
            ConfChangeType::AddLearnerNode
        } else {
            ConfChangeType::RemoveNode
        };
        let context = MembershipContext {
            node_id: node.node_id,
            cluster_address: node.cluster_address.clone(),
            admin_address: node.admin_address.clone(),
            audit,
        };
        let seq = self.seq();
        if let Err(e) = self.propose_cc(change, context, seq) {
            let _ = reply.send(Err(unavailable(format!("membership change dropped: {e}"))));
            return;
        }
        let now = Instant::now();
        self.pending.insert(
            seq,
            PendingEntry {
                reply: Pending::Conf(reply),
                started: now,
                deadline: now + self.cfg.proposal_timeout,
            },
        );
    }

    fn propose_cc(
        &mut self,
        change: ConfChangeType,
        context: MembershipContext,
        seq: u64,
    ) -> raft::Result<()> {
        let mut cc = ConfChange {
            node_id: context.node_id,
            ..Default::default()
        };
        cc.set_change_type(change);
        // Wire-compatible with a bare NodeInfo (what older nodes wrote and read).
        cc.context = encode_ctx(self.cfg.node_id, seq, &context.encode_to_vec()).into();
        self.raw.propose_conf_change(vec![], cc)
    }

    /// Promotes the first learner that has caught up: it has acknowledged a matching log (so it
    /// installed its snapshot, if it needed one), recently, and its log is within `promote_lag`
    /// of the leader's.
    fn maybe_promote(&mut self) {
        let learners = self.raw.store().conf_state().learners.clone();
        if learners.is_empty() {
            return;
        }
        let last = self.raw.raft.raft_log.last_index();
        let caught_up = learners.into_iter().find(|id| {
            self.raw.raft.prs().get(*id).is_some_and(|pr| {
                // Probe with a match (an idle cluster never moves it to replicate) or
                // replicate; never while a snapshot is on its way.
                pr.state != ProgressState::Snapshot
                    && pr.pending_snapshot == 0
                    && pr.recent_active
                    && pr.matched > 0
                    && pr.matched + self.cfg.promote_lag >= last
            })
        });
        let Some(id) = caught_up else {
            return;
        };
        let info = self
            .state
            .nodes()
            .into_iter()
            .find(|n| n.node_id == id)
            .unwrap_or(NodeInfo {
                node_id: id,
                ..Default::default()
            });
        let context = MembershipContext {
            node_id: id,
            cluster_address: info.cluster_address,
            admin_address: info.admin_address,
            audit: None,
        };
        let seq = self.seq();
        match self.propose_cc(ConfChangeType::AddNode, context, seq) {
            Ok(()) => tracing::info!(node = id, last, "learner caught up; promoting it to voter"),
            Err(e) => tracing::debug!(node = id, error = %e, "learner promotion not proposed"),
        }
    }

    pub(super) fn apply_conf(&mut self, e: &Entry) -> Result<(), LoopError> {
        let cc = ConfChange::parse_from_bytes(&e.data)
            .map_err(|err| LoopError::Corrupt(format!("conf change at {}: {err}", e.index)))?;
        let ctx = decode_ctx(&cc.context);
        let context = ctx
            .and_then(|(_, _, extra)| MembershipContext::decode(extra).ok())
            .unwrap_or(MembershipContext {
                node_id: cc.node_id,
                ..Default::default()
            });
        let info = NodeInfo {
            node_id: context.node_id,
            cluster_address: context.cluster_address.clone(),
            admin_address: context.admin_address.clone(),
        };
        let was_learner = self.raw.store().conf_state().learners.contains(&cc.node_id);
        let cs = self.raw.apply_conf_change(&cc).map_err(LoopError::Raft)?;
        self.raw.mut_store().set_conf_state(cs.clone())?;
        self.force_snapshot = true;
        match cc.get_change_type() {
            ConfChangeType::AddNode if was_learner => {
                // A promotion: the node is already in the state (added with the learner entry).
                let known = self
                    .state
                    .nodes()
                    .into_iter()
                    .find(|n| n.node_id == info.node_id);
                if known.as_ref() != Some(&info) && !info.cluster_address.is_empty() {
                    self.state.add_node(e.index, info.clone());
                }
                tracing::info!(node = info.node_id, "learner promoted to voter");
            }
            ConfChangeType::AddNode | ConfChangeType::AddLearnerNode => {
                self.transport
                    .learn_address(info.node_id, &info.cluster_address);
                self.state.add_node(e.index, info.clone());
                if let Some(a) = &context.audit {
                    self.state.audit_membership(
                        e.index,
                        a,
                        true,
                        info.node_id,
                        &info.cluster_address,
                    );
                    metrics::counter!(m::AUDIT_RECORDS).increment(1);
                }
                let as_what = if cc.get_change_type() == ConfChangeType::AddLearnerNode {
                    "learner"
                } else {
                    "voter"
                };
                tracing::info!(node = info.node_id, address = %info.cluster_address, as_what, "node added");
            }
            ConfChangeType::RemoveNode => {
                let known = self
                    .state
                    .nodes()
                    .into_iter()
                    .find(|n| n.node_id == cc.node_id)
                    .unwrap_or(info.clone());
                self.state.remove_node(e.index, cc.node_id);
                if let Some(a) = &context.audit {
                    self.state
                        .audit_membership(e.index, a, false, cc.node_id, "");
                    metrics::counter!(m::AUDIT_RECORDS).increment(1);
                }
                tracing::info!(node = cc.node_id, "node removed");
                if cc.node_id == self.cfg.node_id {
                    self.removed = true;
                } else {
                    if self.raw.raft.state == StateRole::Leader {
                        let _ = self.events.send(Event::PeerRemoved(known, e.index));
                    }
                    self.transport.forget(cc.node_id);
                }
            }
        }
        if let Some((node, seq, _)) = ctx {
            if node == self.cfg.node_id {
                if let Some(p) = self.pending.remove(&seq) {
                    if let Pending::Conf(reply) = p.reply {
                        self.answers
                            .push(Answer::Conf(reply, Ok(cs.voters.clone())));
                    }
                }
            }
        }
        Ok(())
    }
}
