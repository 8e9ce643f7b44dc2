//! One owner per user: the agreed placement view, the leader's decisions about it, and each
//! node's right to serve as a home. Pure logic over `Instant`s and events (no I/O, no clocks
//! read here), driven by the liveness loop and checked by a deterministic simulation
//! (`ownership_sim.rs`).
//!
//! - **View.** The nodes that may be a user's home, with an epoch, committed through Raft
//!   ([`herald_grpc::config::SetPlacement`], compare-and-set on the epoch). Every node computes
//!   a user's home from the committed view (rendezvous hashing, [`crate::placement`]), never
//!   from its own idea of who is alive.
//! - **Keeper** (the leader only). A member not heard from — in either direction, status asked
//!   or answered — for [`DEAD_AFTER`] leaves the view; a member heard from continuously for
//!   [`REJOIN_AFTER`] (and not shutting down) comes back. A new leader gives every member a
//!   full [`DEAD_AFTER`] of grace before judging it.
//! - **Lease.** A node serves as a home only while it has a lease: a follower from the leader's
//!   answer to a status request sent less than [`LEASE`] ago, naming a placement epoch the
//!   follower has applied; the leader from such answers of a quorum of voters that follow it in
//!   its term. Since the leader removes a node only after [`DEAD_AFTER`] (> [`LEASE`]) without
//!   any exchange with it, a removed node's lease has run out before the new view exists.
//! - **Hold.** A node that gains a user from a home that is still in the view (a node came
//!   back, so rendezvous hashing moves users to it) waits [`HOLD`] (> [`LEASE`] plus apply
//!   skew) after it sees the new view: by then the previous home has either applied the view or
//!   lost its lease. A node that starts, or that skipped an epoch, holds every user.
//!
//! Durable writes are fenced independently of all this: a user-data write carries (owner,
//! epoch) and the state machine refuses it unless that owner is the user's home in the current
//! epoch, so even a node whose clock or lease logic misbehaved cannot overwrite.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// A member silent this long (no status asked or answered) leaves the view.
pub const DEAD_AFTER: Duration = Duration::from_millis(2500);
/// A follower's lease: from sending the status request the leader answered.
pub const LEASE: Duration = Duration::from_millis(1500);
/// How long a node waits before serving a user it gained from a home still in the view.
pub const HOLD: Duration = Duration::from_millis(2000);
/// A member not in the view must be heard from continuously this long to come back.
pub const REJOIN_AFTER: Duration = Duration::from_millis(1000);

/// A committed placement view. `nodes` sorted, without duplicates.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct View {
    pub epoch: u64,
    pub nodes: Vec<u64>,
}

impl View {
    pub fn new(epoch: u64, mut nodes: Vec<u64>) -> Self {
        nodes.sort_unstable();
        nodes.dedup();
        View { epoch, nodes }
    }

    /// The user's home in this view (`pinned` wins when it is in the view).
    pub fn home(&self, user: &str, pinned: u64) -> Option<u64> {
        crate::placement::home_node(user, pinned, &self.nodes)
    }
}

/// The leader's bookkeeping: when it last heard from each member.
#[derive(Debug, Default)]
pub struct Keeper {
    heard: HashMap<u64, Instant>,
    /// Start of the current unbroken run of contact per member.
    up_since: HashMap<u64, Instant>,
    /// (term, when this node became leader in it).
    leading: Option<(u64, Instant)>,
}

impl Keeper {
    /// Any exchange with `node` (it answered us, or it asked us).
    pub fn heard(&mut self, node: u64, now: Instant) {
        let last = self.heard.insert(node, now);
        if last.is_none_or(|l| now.saturating_duration_since(l) >= DEAD_AFTER) {
            self.up_since.insert(node, now);
        }
    }

    fn alive(&self, node: u64, now: Instant) -> bool {
        let grace = self.leading.map(|(_, since)| since);
        let last = match (self.heard.get(&node).copied(), grace) {
            (Some(h), Some(g)) => Some(h.max(g)),
            (h, g) => h.or(g),
        };
        last.is_some_and(|l| now.saturating_duration_since(l) < DEAD_AFTER)
    }

    fn back(&self, node: u64, now: Instant) -> bool {
        let heard_recently = self
            .heard
            .get(&node)
            .is_some_and(|h| now.saturating_duration_since(*h) < DEAD_AFTER);
        heard_recently
            && self
                .up_since
                .get(&node)
                .is_some_and(|s| now.saturating_duration_since(*s) >= REJOIN_AFTER)
    }

    /// What the view should be, when it differs from `view`: (nodes, reason). Called by the
    /// leader `me` of `term` on every liveness tick; `members` are the voters, `leaving` the
    /// members that said they are shutting down.
    pub fn decide(
        &mut self,
        me: u64,
        term: u64,
        now: Instant,
        members: &[u64],
        leaving: &[u64],
        view: &View,
    ) -> Option<(Vec<u64>, String)> {
        if self.leading.map(|(t, _)| t) != Some(term) {
            self.leading = Some((term, now));
        }
        let mut want = Vec::new();
        let mut why = Vec::new();
        for &m in members {
            let in_view = view.nodes.contains(&m);
            let keep = if leaving.contains(&m) {
                false
            } else if m == me {
                true
            } else if in_view {
                self.alive(m, now)
            } else {
                self.back(m, now)
            };
            if keep {
                want.push(m);
                if !in_view {
                    why.push(format!("node {m} is back"));
                }
            } else if in_view {
                if leaving.contains(&m) {
                    why.push(format!("node {m} is shutting down"));
                } else {
                    why.push(format!("node {m} silent for {} ms", DEAD_AFTER.as_millis()));
                }
            }
        }
        for n in &view.nodes {
            if !members.contains(n) {
                why.push(format!("node {n} is no longer a member"));
            }
        }
        want.sort_unstable();
        if want.is_empty() {
            return None;
        }
        if view.epoch == 0 {
            // Epoch 0 is "every member" (never committed): commit a real view at once, so that
            // every later change — a member joining included — bumps the epoch.
            why.insert(0, "first placement view".to_string());
            return Some((want, why.join("; ")));
        }
        if want == view.nodes {
            return None;
        }
        Some((want, why.join("; ")))
    }

    /// This node stopped leading: the next time it leads, members get a fresh grace period.
    pub fn not_leading(&mut self) {
        self.leading = None;
    }
}

/// A node's right to serve as a home.
#[derive(Debug, Default)]
pub struct Lease {
    /// Follower: valid until, and the leader's placement epoch then.
    until: Option<Instant>,
    leader_epoch: u64,
    /// Leader: per voter, the send time of the latest request it answered as our follower in
    /// `term`.
    term: u64,
    acks: HashMap<u64, Instant>,
}

impl Lease {
    /// A follower's status request sent at `sent_at` was answered by the leader, which holds
    /// its own lease and requires placement epoch `leader_epoch` (its applied one, or the next
    /// while it proposes a change).
    pub fn from_leader(&mut self, sent_at: Instant, leader_epoch: u64) {
        let until = sent_at + LEASE;
        if self.until.is_none_or(|u| until >= u) {
            self.until = Some(until);
            self.leader_epoch = leader_epoch;
        }
    }

    /// The leader's status request sent at `sent_at` was answered by `node`, which follows this
    /// leader in `term`.
    pub fn ack(&mut self, term: u64, node: u64, sent_at: Instant) {
        if term != self.term {
            self.term = term;
            self.acks.clear();
        }
        let e = self.acks.entry(node).or_insert(sent_at);
        if sent_at > *e {
            *e = sent_at;
        }
    }

    /// Whether this node may serve now. `leader`: this node leads in `term` with `voters`;
    /// otherwise it follows, having applied placement epoch `applied_epoch`.
    pub fn valid(
        &self,
        now: Instant,
        me: u64,
        leader: Option<(u64, &[u64])>,
        applied_epoch: u64,
    ) -> bool {
        match leader {
            Some((term, voters)) => {
                let need = voters.len() / 2;
                if need == 0 {
                    return voters.contains(&me) || voters.is_empty();
                }
                if term != self.term {
                    return false;
                }
                let mut sent: Vec<Instant> = voters
                    .iter()
                    .filter(|v| **v != me)
                    .filter_map(|v| self.acks.get(v).copied())
                    .collect();
                if sent.len() < need {
                    return false;
                }
                sent.sort_unstable_by(|a, b| b.cmp(a));
                sent[need - 1] + LEASE > now
            }
            None => self.until.is_some_and(|u| u > now) && applied_epoch >= self.leader_epoch,
        }
    }
}

/// The views this node has seen recently, for the [`HOLD`] rule.
#[derive(Debug, Default)]
pub struct Tracker {
    current: Option<View>,
    /// Views replaced less than [`HOLD`] ago, with when; `None`: unknown (this node started, or
    /// skipped an epoch): every user is held.
    recent: VecDeque<(Option<View>, Instant)>,
}

impl Tracker {
    /// Notes the view this node has applied now.
    pub fn observe(&mut self, view: &View, now: Instant) {
        match &self.current {
            Some(c) if c.epoch >= view.epoch => {}
            Some(c) => {
                let prev = (view.epoch == c.epoch + 1).then(|| c.clone());
                self.recent.push_back((prev, now));
                self.current = Some(view.clone());
            }
            None => {
                // A node that starts with a committed view may have been replaced meanwhile
                // (it restarts with old data): it holds everyone until it has seen the cluster
                // for a while. Epoch 0 (a new cluster) has had no other home.
                if view.epoch > 0 {
                    self.recent.push_back((None, now));
                }
                self.current = Some(view.clone());
            }
        }
        while self
            .recent
            .front()
            .is_some_and(|(_, at)| now.saturating_duration_since(*at) >= HOLD)
        {
            self.recent.pop_front();
        }
        if self.recent.len() > 64 {
            // A storm of view changes: hold everything rather than remember them all.
            self.recent.clear();
            self.recent.push_back((None, now));
        }
    }

    /// The last view observed.
    pub fn current(&self) -> Option<&View> {
        self.current.as_ref()
    }

    /// Whether `me` must still wait before serving `user`: some view replaced less than
    /// [`HOLD`] ago put the user on another node that is still in the current view (or the
    /// replaced view is unknown).
    pub fn held(&self, user: &str, pinned: u64, me: u64, now: Instant) -> bool {
        let Some(cur) = &self.current else {
            return true;
        };
        self.recent.iter().any(|(v, at)| {
            if now.saturating_duration_since(*at) >= HOLD {
                return false;
            }
            match v {
                None => true,
                Some(v) => match v.home(user, pinned) {
                    Some(h) => h != me && cur.nodes.contains(&h),
                    None => false,
                },
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> Instant {
        Instant::now()
    }
    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn keeper_removes_silent_and_readds_after_rejoin() {
        let t = t0();
        let mut k = Keeper::default();
        // Epoch 0 is replaced by a committed view at once.
        let d = k.decide(1, 5, t, &[1, 2, 3], &[], &View::new(0, vec![1, 2, 3]));
        assert_eq!(d.map(|d| d.0), Some(vec![1, 2, 3]));
        let view = View::new(1, vec![1, 2, 3]);
        // A new leader gives grace.
        assert_eq!(k.decide(1, 5, t, &[1, 2, 3], &[], &view), None);
        k.heard(2, t + 200 * MS);
        // Node 3 silent since the grace started.
        let d = k.decide(1, 5, t + 2600 * MS, &[1, 2, 3], &[], &view);
        assert_eq!(d.as_ref().map(|d| d.0.clone()), Some(vec![1, 2]));
        assert!(d.unwrap().1.contains("node 3 silent"));
        let view = View::new(2, vec![1, 2]);
        k.heard(2, t + 2600 * MS);
        // Node 3 heard again: back only after REJOIN_AFTER of contact.
        k.heard(3, t + 3000 * MS);
        assert_eq!(k.decide(1, 5, t + 3100 * MS, &[1, 2, 3], &[], &view), None);
        k.heard(2, t + 3900 * MS);
        k.heard(3, t + 3900 * MS);
        let d = k.decide(1, 5, t + 4100 * MS, &[1, 2, 3], &[], &view);
        assert_eq!(d.map(|d| d.0), Some(vec![1, 2, 3]));
    }

    #[test]
    fn keeper_drops_leaving_and_non_members() {
        let t = t0();
        let mut k = Keeper::default();
        let view = View::new(3, vec![1, 2, 3, 4]);
        let d = k.decide(1, 1, t, &[1, 2, 3], &[2], &view).unwrap();
        assert_eq!(d.0, vec![1, 3]);
        assert!(d.1.contains("node 2 is shutting down"));
        assert!(d.1.contains("node 4 is no longer a member"));
    }

    #[test]
    fn follower_lease_needs_fresh_answer_and_applied_epoch() {
        let t = t0();
        let mut l = Lease::default();
        assert!(!l.valid(t, 2, None, 1));
        l.from_leader(t, 4);
        assert!(
            !l.valid(t + MS, 2, None, 3),
            "leader is ahead: not caught up"
        );
        assert!(l.valid(t + MS, 2, None, 4));
        assert!(!l.valid(t + LEASE, 2, None, 4));
    }

    #[test]
    fn leader_lease_needs_a_quorum_in_its_term() {
        let t = t0();
        let mut l = Lease::default();
        let voters = [1, 2, 3];
        assert!(!l.valid(t, 1, Some((7, &voters)), 0));
        l.ack(7, 2, t);
        assert!(l.valid(t + MS, 1, Some((7, &voters)), 0));
        assert!(!l.valid(t + MS, 1, Some((8, &voters)), 0), "another term");
        assert!(!l.valid(t + LEASE, 1, Some((7, &voters)), 0));
        // A single voter leads alone.
        assert!(Lease::default().valid(t, 1, Some((1, &[1])), 0));
        // Five voters need two others.
        let five = [1, 2, 3, 4, 5];
        l.ack(9, 2, t);
        assert!(!l.valid(t, 1, Some((9, &five)), 0));
        l.ack(9, 3, t + 10 * MS);
        assert!(l.valid(t + 20 * MS, 1, Some((9, &five)), 0));
    }

    #[test]
    fn tracker_holds_moves_from_live_homes_only() {
        let t = t0();
        let mut tr = Tracker::default();
        let mut fresh = Tracker::default();
        fresh.observe(&View::new(0, vec![1]), t);
        assert!(!fresh.held("a@x", 0, 1, t), "a new cluster holds nobody");
        let v1 = View::new(1, vec![1, 2]);
        tr.observe(&v1, t);
        // Just started: everything held.
        assert!(tr.held("a@x", 0, 1, t + MS));
        assert!(!tr.held("a@x", 0, 1, t + HOLD));
        // Node 3 comes back: users moving from 1 or 2 to 3 are held on 3.
        let v2 = View::new(2, vec![1, 2, 3]);
        let later = t + HOLD + MS;
        tr.observe(&v2, later);
        let users: Vec<String> = (0..200).map(|i| format!("u{i}@x")).collect();
        let moved: Vec<&String> = users.iter().filter(|u| v2.home(u, 0) == Some(3)).collect();
        assert!(!moved.is_empty());
        for u in &moved {
            assert!(tr.held(u, 0, 3, later + MS));
            assert!(!tr.held(u, 0, 3, later + HOLD));
        }
        // A node's own unmoved users are not held.
        let stay = users.iter().find(|u| v2.home(u, 0) == Some(1)).unwrap();
        assert!(!tr.held(stay, 0, 1, later + MS));
        // Node 3 dies: its users move to 1/2 from a node no longer in the view: no hold.
        let v3 = View::new(3, vec![1, 2]);
        let later2 = later + HOLD + MS;
        tr.observe(&v3, later2);
        for u in &moved {
            let h = v3.home(u, 0).unwrap();
            assert!(!tr.held(u, 0, h, later2 + MS));
        }
        // A skipped epoch holds everyone.
        tr.observe(&View::new(5, vec![1, 2]), later2 + HOLD);
        assert!(tr.held(stay, 0, 1, later2 + HOLD + MS));
    }
}
