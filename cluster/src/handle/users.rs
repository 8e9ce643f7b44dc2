//! The handle's side of the user-state Raft group (see [`crate::users_group`]): where users'
//! data is read, written and barriered, and how a removed node leaves the group.

use std::sync::Arc;
use std::time::Duration;

use herald_grpc::config::{Command, ErrorDetail};

use super::{ClusterHandle, GroupLink, Written};
use crate::raft_loop::{Applied, Group};

impl ClusterHandle {
    /// Connects the user-state group's loop (once, at start).
    pub fn set_users_group(&self, link: GroupLink) {
        let _ = self.inner.users.set(link);
    }

    /// Waits (at most `limit`) until this node, removed from the config group, is out of the
    /// user-state group too (its leader removes it, and this node must still answer for that
    /// to commit: a two-node cluster that loses one keeps a working group). True when it is.
    pub async fn leave_users_group(&self, limit: Duration) -> bool {
        let Some(u) = self.inner.users.get() else {
            return true;
        };
        let me = self.node_id();
        let mut rx = u.status.clone();
        let out = tokio::time::timeout(
            limit,
            rx.wait_for(|st| {
                st.stopped || st.removed || !st.voters.contains(&me) && !st.learners.contains(&me)
            }),
        )
        .await;
        matches!(out, Ok(Ok(_)))
    }

    /// The user-state group's loop, when this node runs one.
    pub fn users_group(&self) -> Option<&GroupLink> {
        self.inner.users.get()
    }

    /// The group users' data is written to: the user-state group, or the config group when
    /// this node runs no other.
    fn user_group(&self) -> Group {
        if self.inner.users.get().is_some() {
            Group::Users
        } else {
            Group::Config
        }
    }

    /// The applied state that holds users' data on this node: the user-state group's (the
    /// config group's when this node runs no other).
    pub fn user_applied(&self) -> Arc<Applied> {
        match self.inner.users.get() {
            Some(u) => u.applied.borrow().clone(),
            None => self.applied(),
        }
    }

    /// A user's stored data and its revision in the group that holds it. Data that an older
    /// version kept in the config group (before the user-state group existed) is returned with
    /// revision 0 until the user's first write moves it; `None`: nothing stored.
    pub fn user_data(&self, jid: &str) -> Option<(herald_grpc::config::UserData, u64)> {
        if let Some((d, revision)) = self.user_applied().state.user_data(jid) {
            return Some((d.clone(), revision));
        }
        self.inner.users.get()?;
        self.applied()
            .state
            .user_data(jid)
            .map(|(d, _)| (d.clone(), 0))
    }

    /// Writes a user's data (a fenced `UserData` put, or its delete) through the leader of the
    /// user-state group ([`Self::write`] when this node runs no other group).
    pub async fn write_user(&self, cmd: &Command) -> Result<Written, ErrorDetail> {
        self.write_in(self.user_group(), cmd).await
    }

    /// [`Self::read_barrier`] on the group that holds users' data.
    pub async fn user_read_barrier(&self) -> Result<u64, ErrorDetail> {
        self.read_barrier_in(self.user_group()).await
    }
}
