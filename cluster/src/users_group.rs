//! The user-state Raft group's upkeep, done by whichever node leads that group.
//!
//! Every member runs a second Raft group (`<data dir>/users/`) that holds each user's roster,
//! block list and offline messages, so that config writes never queue behind user traffic and
//! the config store stays small. The group keeps no config of its own; its leader keeps it in
//! step with the config group:
//! - **membership**: every config member (voter or learner) is added (as a learner, promoted
//!   once caught up, like a config joiner) and a node removed from the config is removed here;
//! - **placement**: the config group's committed placement view is mirrored into this group's
//!   log ([`herald_grpc::config::MirrorPlacement`]), so that its fence check refuses an owner
//!   of an older epoch even before any new owner wrote (writers also bring their view);
//! - **clean-up**: the data of a user deleted from the config is deleted here, and data an
//!   older version kept in the config group is deleted there once this group holds the user's.
//!
//! Which node starts the group: the node that bootstraps a new cluster; on a cluster that
//! existed before the group did, the config voter with the highest node id (a StatefulSet's
//! rolling update restarts it first), and every other node waits to be added.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use herald_grpc::config::{
    command::Op, config_object::Body, Command, DeleteObject, MirrorPlacement, ObjectKind,
    PlacementView,
};

use crate::handle::ClusterHandle;
use crate::raft_loop::{Group, Role};
use crate::state::StateMachine;

/// How often the leader compares the groups.
const FOLLOW_EVERY: Duration = Duration::from_millis(100);
/// How often it looks for data to clean up, and how much one pass deletes at most.
const CLEANUP_EVERY: Duration = Duration::from_secs(5);
const CLEANUP_BATCH: usize = 64;

/// Whether a node that resumes from a data dir made before the user-state group existed
/// starts the group: the highest-id voter of the config group does.
pub fn starts_the_group(me: u64, config_voters: &[u64]) -> bool {
    config_voters.iter().max() == Some(&me)
}

/// Runs while this node runs both groups; acts only while it leads the user-state group.
pub async fn follow(handle: ClusterHandle) {
    let mut next_cleanup = Instant::now() + CLEANUP_EVERY;
    let mut adding: Option<(u64, Instant)> = None;
    loop {
        tokio::time::sleep(FOLLOW_EVERY).await;
        let users = handle.status_of(Group::Users);
        let config = handle.status();
        // A node removed from the config keeps following until it is out of this group too
        // (if it leads here, it removes itself); a node shutting down stops here.
        if users.stopped || (config.stopped && !config.removed) {
            return;
        }
        if users.role != Role::Leader {
            continue;
        }
        mirror_placement(&handle).await;
        follow_membership(&handle, &mut adding).await;
        if Instant::now() >= next_cleanup {
            next_cleanup = Instant::now() + CLEANUP_EVERY;
            clean_up(&handle).await;
        }
    }
}

/// Whether `next` (the config group's view) is one the user-state group has not seen: a newer
/// epoch, or at epoch 0 (no view committed yet: every member) more members.
pub fn view_is_newer(next: &crate::ownership::View, cur: &crate::ownership::View) -> bool {
    next.epoch > cur.epoch
        || (next.epoch == 0
            && cur.epoch == 0
            && next.nodes.len() > cur.nodes.len()
            && cur.nodes.iter().all(|n| next.nodes.contains(n)))
}

async fn mirror_placement(handle: &ClusterHandle) {
    let config = handle.applied().placement().clone();
    let users = handle.user_applied();
    // Before the group has any view its placement is epoch 0 with no nodes: any view is newer.
    if !view_is_newer(&config, &users.state.placement()) {
        return;
    }
    let cmd = Command {
        op: Some(Op::MirrorPlacement(MirrorPlacement {
            view: Some(PlacementView {
                epoch: config.epoch,
                nodes: config.nodes.clone(),
                reason: "mirrored from the config group".into(),
            }),
        })),
        audit: None,
    };
    match handle.write_user(&cmd).await {
        Ok(_) => tracing::info!(
            epoch = config.epoch,
            nodes = ?config.nodes,
            "user-state group took the config group's placement view"
        ),
        Err(e) => tracing::warn!(epoch = config.epoch, error = %e,
            "mirroring the placement view into the user-state group failed; retrying"),
    }
}

async fn follow_membership(handle: &ClusterHandle, adding: &mut Option<(u64, Instant)>) {
    let config = handle.status();
    let users = handle.status_of(Group::Users);
    let want: BTreeSet<u64> = config
        .voters
        .iter()
        .chain(&config.learners)
        .copied()
        .collect();
    let have: BTreeSet<u64> = users
        .voters
        .iter()
        .chain(&users.learners)
        .copied()
        .collect();
    if want.is_empty() {
        return;
    }
    // One change at a time (the loop queues them anyway); a failed add is retried after a pause.
    if let Some(id) = want.difference(&have).next().copied() {
        if adding.is_some_and(|(n, at)| n == id && at.elapsed() < Duration::from_secs(2)) {
            return;
        }
        let Some(node) = handle
            .applied()
            .state
            .nodes()
            .into_iter()
            .find(|n| n.node_id == id)
        else {
            return;
        };
        *adding = Some((id, Instant::now()));
        match handle
            .change_membership_in(Group::Users, true, node, None)
            .await
        {
            Ok(_) => tracing::info!(node = id, "node added to the user-state group"),
            Err(e) => tracing::warn!(node = id, error = %e,
                "adding a node to the user-state group failed; retrying"),
        }
        return;
    }
    if let Some(id) = have.difference(&want).next().copied() {
        let node = herald_grpc::config::NodeInfo {
            node_id: id,
            ..Default::default()
        };
        match handle
            .change_membership_in(Group::Users, false, node, None)
            .await
        {
            Ok(_) => tracing::info!(node = id, "node removed from the user-state group"),
            Err(e) => tracing::warn!(node = id, error = %e,
                "removing a node from the user-state group failed; retrying"),
        }
    }
}

/// Deletes, a batch at a time, the data of users that no longer exist (here) and data an older
/// version left in the config group (there). Each delete names the revision it saw, so data
/// written meanwhile is never deleted.
async fn clean_up(handle: &ClusterHandle) {
    let users = handle.user_applied();
    let config = handle.applied();
    let orphans = data_where(&users.state, |jid| {
        config.state.peek(ObjectKind::User, jid).is_none()
    });
    let legacy = data_where(&config.state, |jid| users.state.user_data(jid).is_some());
    drop((users, config));
    if !orphans.is_empty() {
        // A user created since this node last applied the config must not lose its data: look
        // again after a linearizable read of the config group. (The revision read above comes
        // first: data written by a user created after the barrier has a newer one.)
        if handle.read_barrier().await.is_err() {
            return;
        }
        let config = handle.applied();
        for (jid, revision) in orphans {
            if config.state.peek(ObjectKind::User, &jid).is_some() {
                continue;
            }
            match handle.write_user(&delete(&jid, revision)).await {
                Ok(_) => tracing::info!(user = %jid, "deleted the data of a deleted user"),
                Err(e) => tracing::debug!(user = %jid, error = %e,
                    "data of a deleted user not deleted (written meanwhile?)"),
            }
        }
    }
    for (jid, revision) in legacy {
        match handle.write(&delete(&jid, revision)).await {
            Ok(_) => tracing::info!(user = %jid,
                "deleted a user's data from the config group (the user-state group holds it)"),
            Err(e) => tracing::debug!(user = %jid, error = %e,
                "old copy of a user's data in the config group not deleted"),
        }
    }
}

/// The users (and revisions) whose data `state` holds and `keep` picks, a batch at most.
fn data_where(state: &StateMachine, keep: impl Fn(&str) -> bool) -> Vec<(String, u64)> {
    state
        .peek_all(ObjectKind::UserData)
        .filter_map(|o| match &o.body {
            Some(Body::UserData(d)) if keep(&d.jid) => Some((d.jid.clone(), o.revision)),
            _ => None,
        })
        .take(CLEANUP_BATCH)
        .collect()
}

fn delete(jid: &str, revision: u64) -> Command {
    Command {
        op: Some(Op::Delete(DeleteObject {
            kind: ObjectKind::UserData as i32,
            key: jid.to_string(),
            expected_revision: revision,
        })),
        audit: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ownership::View;

    #[test]
    fn the_highest_voter_starts_the_group_on_an_existing_cluster() {
        assert!(starts_the_group(3, &[1, 2, 3]));
        assert!(!starts_the_group(2, &[1, 2, 3]));
        assert!(
            !starts_the_group(4, &[1, 2, 3]),
            "a learner never starts it"
        );
        assert!(!starts_the_group(1, &[]));
    }

    #[test]
    fn views_only_move_forward() {
        let v = |e, n: &[u64]| View::new(e, n.to_vec());
        assert!(view_is_newer(&v(2, &[1]), &v(1, &[1, 2])));
        assert!(!view_is_newer(&v(1, &[1, 2, 3]), &v(2, &[1])));
        assert!(!view_is_newer(&v(2, &[1, 2]), &v(2, &[1, 2])));
        // Epoch 0 (no view committed): members only join.
        assert!(view_is_newer(&v(0, &[1, 2, 3]), &v(0, &[1, 2])));
        assert!(!view_is_newer(&v(0, &[1, 2]), &v(0, &[1, 2, 3])));
        assert!(!view_is_newer(&v(0, &[1, 4]), &v(0, &[1, 2])));
    }
}
