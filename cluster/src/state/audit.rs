//! The audit log: one [`AuditRecord`] per applied admin change, appended by the same apply
//! as the change (a command that carries an [`AuditContext`] either changes the state and
//! records it, or is rejected and records nothing). Records are bounded: the newest `keep`
//! (from the command, [`DEFAULT_KEEP`] when 0) are kept and older ones trimmed, identically on
//! every node because `keep` travels in the entry.
//!
//! Secrets never reach a record: summaries are rendered from a redacted copy of the new value
//! (SCRAM secrets dropped, calendar passwords and the dialback secret replaced by
//! [`REDACTED`]), and these values are already sealed by the admin service before they are
//! proposed.

use std::collections::VecDeque;
use std::sync::Arc;

use super::apply::Plan;
use super::{Change, StateMachine};
use herald_grpc::config::command::Op;
use herald_grpc::config::config_object::Body;
use herald_grpc::config::{AuditContext, AuditRecord, Command, ObjectKind};

/// Records kept when the command does not say.
pub const DEFAULT_KEEP: usize = 10_000;
/// What a secret that is set looks like in a summary.
pub const REDACTED: &str = "••••";
/// Summaries longer than this are cut (at a character boundary) and end with `…`.
pub const MAX_SUMMARY_CHARS: usize = 600;

/// A copy of `body` without secrets: SCRAM secrets removed, passwords and the dialback secret
/// shown as [`REDACTED`] when set (empty stays empty: "not set" is not a secret).
pub fn redact(body: &Body) -> Body {
    let mut b = body.clone();
    match &mut b {
        Body::User(u) => {
            u.scram_sha256 = None;
            u.scram_sha1 = None;
        }
        Body::CalendarCredentials(c) if !c.password.is_empty() => c.password = REDACTED.into(),
        Body::XmppFederation(x) if !x.dialback_secret.is_empty() => {
            x.dialback_secret = REDACTED.into()
        }
        _ => {}
    }
    b
}

/// A one-line rendering of the new value, secrets redacted, bounded in length.
pub fn summary(body: &Body) -> String {
    let text = format!("{:?}", redact(body));
    // `Variant(Message { .. })` → `Message { .. }`.
    let text = match text.split_once('(') {
        Some((variant, rest))
            if variant.chars().all(|c| c.is_ascii_alphanumeric()) && rest.ends_with(')') =>
        {
            rest[..rest.len() - 1].to_string()
        }
        _ => text,
    };
    bounded(text)
}

fn bounded(text: String) -> String {
    if text.chars().count() <= MAX_SUMMARY_CHARS {
        return text;
    }
    let mut s: String = text.chars().take(MAX_SUMMARY_CHARS).collect();
    s.push('…');
    s
}

/// The record that a command with `ctx` leaves when its `plan` is committed at `index`.
/// Called before the plan is committed (so "create" and "update" can be told apart).
pub(super) fn record_for(
    sm: &StateMachine,
    index: u64,
    cmd: &Command,
    ctx: &AuditContext,
    plan: &Plan,
) -> AuditRecord {
    let (kind, key, operation, summary_text) = match (&cmd.op, plan.changes.first()) {
        (Some(Op::Put(_)), Some(Change::Put(o))) => {
            let kind = o.kind();
            let key = o.key();
            let op = if sm.stored(kind, &key).is_some() {
                "update"
            } else {
                "create"
            };
            let s = o.body.as_ref().map(summary).unwrap_or_default();
            (kind, key, op, s)
        }
        (Some(Op::Delete(_)), Some(Change::Delete(kind, key))) => {
            (*kind, key.clone(), "delete", String::new())
        }
        (Some(Op::SetUserSecrets(_)), Some(Change::Put(o))) => (
            ObjectKind::User,
            o.key(),
            "set-password",
            "SCRAM secrets replaced".to_string(),
        ),
        (Some(Op::AddPolicyException(a)), _) => (
            ObjectKind::XmppPolicy,
            String::new(),
            "add-exception",
            bounded(format!("{:?}", a.exception.clone().unwrap_or_default())),
        ),
        (Some(Op::RemovePolicyException(r)), _) => (
            ObjectKind::XmppPolicy,
            String::new(),
            "remove-exception",
            bounded(format!("domain_pattern: {:?}", r.domain_pattern)),
        ),
        _ => (
            ObjectKind::Unspecified,
            String::new(),
            "other",
            String::new(),
        ),
    };
    AuditRecord {
        index,
        at_ms: ctx.at_ms,
        actor: ctx.actor.clone(),
        node_id: ctx.node_id,
        kind: kind as i32,
        key,
        operation: operation.to_string(),
        summary: summary_text,
    }
}

impl StateMachine {
    /// The audit log, oldest first.
    pub fn audit_log(&self) -> &VecDeque<AuditRecord> {
        &self.audit
    }

    /// Appends a record and trims the log to the newest `keep` (0: [`DEFAULT_KEEP`]).
    pub(super) fn push_audit(&mut self, record: AuditRecord, keep: u32) {
        let keep = if keep == 0 {
            DEFAULT_KEEP
        } else {
            keep as usize
        };
        self.hash.add_record(&record);
        let log = Arc::make_mut(&mut self.audit);
        log.push_back(record);
        while log.len() > keep {
            if let Some(old) = log.pop_front() {
                self.hash.remove_record(&old);
            }
        }
    }

    /// Records a membership change an admin asked for (applied through a Raft conf change at
    /// `index`).
    pub fn audit_membership(
        &mut self,
        index: u64,
        ctx: &AuditContext,
        add: bool,
        node_id: u64,
        address: &str,
    ) {
        let record = AuditRecord {
            index,
            at_ms: ctx.at_ms,
            actor: ctx.actor.clone(),
            node_id: ctx.node_id,
            kind: ObjectKind::Node as i32,
            key: node_id.to_string(),
            operation: if add { "add-node" } else { "remove-node" }.to_string(),
            summary: if add {
                format!("cluster_address: {address:?}")
            } else {
                String::new()
            },
        };
        self.push_audit(record, ctx.keep);
    }
}
