//! Deterministic simulation of agreed placement (`herald_cluster::ownership`): the production
//! Keeper, Lease and Tracker driven on simulated time by a model of the cluster around them —
//! status pings both ways every 500 ms with random delays, loss, an 800 ms timeout; a leader
//! that commits placement views (compare-and-set on the epoch) only while it reaches a
//! majority; followers that apply committed views late and only while they hear the leader;
//! elections when the leader is unreachable; and faults: crashes with restart (state kept,
//! process state lost), pauses (SIGSTOP: the clock runs on, the node does nothing), symmetric
//! and one-way partitions.
//!
//! Checked at every 2 ms step, for every user: at most one node may serve it (safety). After
//! the faults end: every user is served by exactly one node within 12 s (liveness).
//!
//! `HERALD_SIM_SEEDS=N` runs more seeds (CI runs the default); a failure prints its seed, and
//! `HERALD_SIM_SEED=S` replays one.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use herald_cluster::ownership::{Keeper, Lease, Tracker, View};

fn trace(now: u64, what: &str) {
    if std::env::var_os("HERALD_SIM_TRACE").is_some() {
        eprintln!("{now:>6} ms  {what}");
    }
}

/// SplitMix64: small, deterministic, good enough for schedules.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }
    fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }
}

const STEP: u64 = 2;
const PING_EVERY: u64 = 500;
const PING_TIMEOUT: u64 = 800;
const ELECTION_AFTER: u64 = 1000;

#[derive(Clone, Copy, PartialEq, Debug)]
enum Run {
    Up,
    Paused,
    Down,
}

struct Node {
    id: u64,
    run: Run,
    /// Index into the committed views this node has applied (kept across a crash: on disk).
    applied: usize,
    /// Raft: the term and leader this node knows.
    term: u64,
    leader: u64,
    keeper: Keeper,
    lease: Lease,
    tracker: Tracker,
    /// When the leader last reached a majority (leader only), for elections.
    next_ping: u64,
    /// A commit this (leader) node has in flight: (commit at, expected epoch, nodes).
    proposing: Option<(u64, u64, Vec<u64>)>,
    /// Inputs that arrived while paused, handled on resume (in order).
    inbox: Vec<Msg>,
}

#[derive(Clone, Debug)]
enum Msg {
    /// A status request from `from` sent at `sent`.
    Ask { from: u64, to: u64, sent: u64 },
    /// The answer of `from` to `to`'s request sent at `sent`.
    Answer {
        from: u64,
        to: u64,
        sent: u64,
        /// The answering leader holds its own lease (it grants one).
        grants: bool,
        leader: u64,
        term: u64,
        epoch: u64,
    },
}

struct World {
    rng: Rng,
    now: u64,
    base: Instant,
    nodes: Vec<Node>,
    /// Committed views in order (index 0: epoch 0, every member).
    views: Vec<View>,
    /// When each view was committed.
    committed_at: Vec<u64>,
    /// Per (node, view index): extra apply delay.
    apply_delay: HashMap<(u64, usize), u64>,
    /// In-flight messages by delivery time.
    wire: BTreeMap<(u64, u64), Msg>,
    seq: u64,
    /// One-way cuts: (from, to) → until.
    cut: HashMap<(u64, u64), u64>,
    loss_per_mille: u64,
    users: Vec<String>,
    homes: HashMap<u64, Vec<u64>>,
    /// Since when no leader has been usable (for elections).
    lost_since: Option<u64>,
    /// Crashed nodes' restart times, paused nodes' resume times.
    restarts: Vec<(u64, u64)>,
    resumes: Vec<(u64, u64)>,
    /// When the last fault ends (restart, resume or cut healed).
    fault_end: u64,
}

impl World {
    fn new(seed: u64, n: u64) -> Self {
        let members: Vec<u64> = (1..=n).collect();
        let base = Instant::now();
        let nodes = members
            .iter()
            .map(|&id| Node {
                id,
                run: Run::Up,
                applied: 0,
                term: 1,
                leader: 1,
                keeper: Keeper::default(),
                lease: Lease::default(),
                tracker: Tracker::default(),
                next_ping: id * 37 % PING_EVERY,
                proposing: None,
                inbox: Vec::new(),
            })
            .collect();
        World {
            rng: Rng(seed),
            now: 0,
            base,
            nodes,
            views: vec![View::new(0, members)],
            committed_at: vec![0],
            apply_delay: HashMap::new(),
            wire: BTreeMap::new(),
            seq: 0,
            cut: HashMap::new(),
            loss_per_mille: 0,
            users: (0..12).map(|i| format!("user{i}@sim.test")).collect(),
            homes: HashMap::new(),
            lost_since: None,
            restarts: Vec::new(),
            resumes: Vec::new(),
            fault_end: 0,
        }
    }

    fn at(&self, t: u64) -> Instant {
        self.base + Duration::from_millis(t)
    }

    fn node(&mut self, id: u64) -> &mut Node {
        &mut self.nodes[(id - 1) as usize]
    }

    fn members(&self) -> Vec<u64> {
        self.nodes.iter().map(|n| n.id).collect()
    }

    fn link_ok(&self, from: u64, to: u64) -> bool {
        self.cut
            .get(&(from, to))
            .is_none_or(|until| *until <= self.now)
    }

    fn send(&mut self, msg: Msg, from: u64, to: u64) {
        if !self.link_ok(from, to) || self.rng.chance(self.loss_per_mille) {
            return;
        }
        let delay = self.rng.between(1, 30);
        self.seq += 1;
        self.wire.insert((self.now + delay, self.seq), msg);
    }

    fn quorum(&self) -> usize {
        self.nodes.len() / 2 + 1
    }

    /// Nodes that are up and mutually connected with `id` (itself included).
    fn reachable_from(&self, id: u64) -> Vec<u64> {
        self.nodes
            .iter()
            .filter(|n| {
                n.id == id || (n.run == Run::Up && self.link_ok(id, n.id) && self.link_ok(n.id, id))
            })
            .map(|n| n.id)
            .collect()
    }

    fn view_of(&self, id: u64) -> View {
        self.views[self.nodes[(id - 1) as usize].applied].clone()
    }

    /// The true current leader and term (the highest term any node knows).
    fn top(&self) -> (u64, u64) {
        let t = self.nodes.iter().map(|n| n.term).max().unwrap_or(1);
        let l = self
            .nodes
            .iter()
            .find(|n| n.term == t && n.leader == n.id)
            .map_or(0, |n| n.id);
        (t, l)
    }

    fn step_raft(&mut self) {
        let (term, leader) = self.top();
        // Election: the leader is down, paused, or cut from a majority for a while.
        let leader_ok = leader != 0
            && self.nodes[(leader - 1) as usize].run == Run::Up
            && self.reachable_from(leader).len() >= self.quorum();
        if !leader_ok {
            // Candidates: up nodes reaching a majority, with the longest applied log (Raft's
            // vote rule: the winner holds every committed entry, so give it all of them).
            let cands: Vec<u64> = self
                .nodes
                .iter()
                .filter(|n| n.run == Run::Up && self.reachable_from(n.id).len() >= self.quorum())
                .map(|n| n.id)
                .collect();
            let since_ok = self.node_stat_lost_since();
            if !cands.is_empty() && since_ok >= ELECTION_AFTER {
                let w = cands[self.rng.below(cands.len() as u64) as usize];
                let voters = self.reachable_from(w);
                let last = self.views.len() - 1;
                for v in voters {
                    let n = self.node(v);
                    n.term = term + 1;
                    n.leader = w;
                }
                let n = self.node(w);
                n.applied = last;
                n.proposing = None;
                self.lost_since = None;
            }
        } else {
            self.lost_since = None;
            // Followers connected to the leader learn its term and apply committed views.
            let reach = self.reachable_from(leader);
            for id in reach {
                let last = self.views.len() - 1;
                let now = self.now;
                let mut next = self.nodes[(id - 1) as usize].applied;
                while next < last {
                    let idx = next + 1;
                    let extra = *self
                        .apply_delay
                        .entry((id, idx))
                        .or_insert_with(|| self.rng.between(0, 60));
                    if self.committed_at[idx] + extra > now {
                        break;
                    }
                    next = idx;
                }
                let n = self.node(id);
                if n.term < term || n.leader != leader {
                    n.term = term;
                    n.leader = leader;
                }
                if id != leader {
                    n.applied = next;
                }
            }
        }
        // The leader's commit in flight lands if it still leads and reaches a majority.
        let (term, leader) = self.top();
        if leader == 0 {
            return;
        }
        let now = self.now;
        let majority = self.reachable_from(leader).len() >= self.quorum();
        let up = self.nodes[(leader - 1) as usize].run == Run::Up;
        if let Some((at, expected, nodes)) = self.nodes[(leader - 1) as usize].proposing.clone() {
            if at <= now && up {
                self.node(leader).proposing = None;
                let cur = self.views.len() - 1;
                if majority && self.views[cur].epoch == expected {
                    trace(
                        now,
                        &format!("leader {leader} commits epoch {} {:?}", expected + 1, nodes),
                    );
                    self.views.push(View::new(expected + 1, nodes));
                    self.committed_at.push(now);
                    self.node(leader).applied = cur + 1;
                }
            }
        }
        let _ = term;
    }

    fn node_stat_lost_since(&mut self) -> u64 {
        let now = self.now;
        let since = *self.lost_since.get_or_insert(now);
        now - since
    }

    fn deliver(&mut self) {
        while let Some((&(t, s), _)) = self.wire.iter().next() {
            if t > self.now {
                break;
            }
            let msg = self.wire.remove(&(t, s)).unwrap();
            let to = match &msg {
                Msg::Ask { to, .. } | Msg::Answer { to, .. } => *to,
            };
            match self.nodes[(to - 1) as usize].run {
                Run::Down => {}
                Run::Paused => self.node(to).inbox.push(msg),
                Run::Up => self.handle(msg),
            }
        }
    }

    fn handle(&mut self, msg: Msg) {
        let now = self.now;
        let at = self.at(now);
        match msg {
            Msg::Ask { from, to, sent } => {
                self.node(to).keeper.heard(from, at);
                let voters = self.members();
                let n = &self.nodes[(to - 1) as usize];
                let applied = self.views[n.applied].epoch;
                let grants = n.leader == n.id
                    && n.lease
                        .valid(at, n.id, Some((n.term, voters.as_slice())), applied);
                let answer = Msg::Answer {
                    from: to,
                    to: from,
                    sent,
                    grants,
                    leader: n.leader,
                    term: n.term,
                    epoch: applied + u64::from(n.proposing.is_some()),
                };
                self.send(answer, to, from);
            }
            Msg::Answer {
                from,
                to,
                sent,
                grants,
                leader,
                term,
                epoch,
            } => {
                if now - sent > PING_TIMEOUT {
                    return;
                }
                let sent_at = self.at(sent);
                let n = self.node(to);
                n.keeper.heard(from, at);
                trace(now, &format!("node {to} answered by {from} (sent {sent}, leader {leader}, epoch {epoch})"));
                if n.leader == n.id {
                    if leader == n.id && term == n.term {
                        let t = n.term;
                        n.lease.ack(t, from, sent_at);
                    }
                } else if from == n.leader && grants {
                    n.lease.from_leader(sent_at, epoch);
                }
                if term > n.term {
                    n.term = term;
                    n.leader = leader;
                }
            }
        }
    }

    fn tick_nodes(&mut self) {
        let now = self.now;
        let members = self.members();
        for id in members.clone() {
            if self.nodes[(id - 1) as usize].run != Run::Up {
                continue;
            }
            if self.nodes[(id - 1) as usize].next_ping > now {
                continue;
            }
            self.node(id).next_ping = now + PING_EVERY;
            for &m in &members {
                if m != id {
                    self.send(
                        Msg::Ask {
                            from: id,
                            to: m,
                            sent: now,
                        },
                        id,
                        m,
                    );
                }
            }
            // The leader's keeper, once per tick.
            let n = &self.nodes[(id - 1) as usize];
            if n.leader == n.id && n.proposing.is_none() {
                let view = self.view_of(id);
                let (term, at) = (n.term, self.at(now));
                let d = self
                    .node(id)
                    .keeper
                    .decide(id, term, at, &members, &[], &view);
                if let Some((nodes, _)) = d {
                    let delay = self.rng.between(5, 50);
                    self.node(id).proposing = Some((now + delay, view.epoch, nodes));
                }
            } else if n.leader != n.id {
                self.node(id).keeper.not_leading();
            }
        }
    }

    fn homes_of(&mut self, view: &View) -> Vec<u64> {
        let users = self.users.clone();
        self.homes
            .entry(view.epoch * 1000 + view.nodes.len() as u64)
            .or_insert_with(|| users.iter().map(|u| view.home(u, 0).unwrap_or(0)).collect())
            .clone()
    }

    /// Which up node serves each user now (as each node itself decides).
    fn serving(&mut self) -> Vec<Vec<u64>> {
        let mut out = vec![Vec::new(); self.users.len()];
        let at = self.at(self.now);
        let ids: Vec<u64> = self.nodes.iter().map(|n| n.id).collect();
        for &id in &ids {
            if self.nodes[(id - 1) as usize].run != Run::Up {
                continue;
            }
            let view = self.view_of(id);
            let homes = self.homes_of(&view);
            let n = self.node(id);
            n.tracker.observe(&view, at);
            let is_leader = n.leader == n.id;
            let voters: Vec<u64> = (1..=ids.len() as u64).collect();
            let leader = is_leader.then_some((n.term, voters.as_slice()));
            if !n.lease.valid(at, id, leader, view.epoch) {
                continue;
            }
            for (i, u) in self.users.iter().enumerate() {
                if homes[i] == id && !self.nodes[(id - 1) as usize].tracker.held(u, 0, id, at) {
                    out[i].push(id);
                }
            }
        }
        out
    }

    fn fault(&mut self, fault_until: u64) {
        if self.now >= fault_until {
            self.loss_per_mille = 0;
            return;
        }
        if !self.rng.chance(3) {
            return;
        }
        // At most one node out of service at a time in this schedule (so a majority remains).
        if self.nodes.iter().any(|n| n.run != Run::Up) || self.cut.values().any(|u| *u > self.now) {
            return;
        }
        let n = self.nodes.len() as u64;
        let victim = 1 + self.rng.below(n);
        let dur = self.rng.between(300, 12_000);
        self.fault_end = self.fault_end.max(self.now + dur);
        trace(self.now, &format!("fault on node {victim} for {dur} ms"));
        let kinds = if n >= 5 { 5 } else { 4 };
        match self.rng.below(kinds) {
            0 => {
                // Crash, restart later with the disk (applied views) but a fresh process.
                self.node(victim).run = Run::Down;
                self.restarts.push((self.now + dur, victim));
            }
            1 => {
                self.node(victim).run = Run::Paused;
                self.resumes.push((self.now + dur, victim));
            }
            2 => {
                for m in 1..=n {
                    if m != victim {
                        self.cut.insert((victim, m), self.now + dur);
                        self.cut.insert((m, victim), self.now + dur);
                    }
                }
            }
            4 => {
                // A minority of two (often with the leader) cut from the rest.
                let (_, leader) = self.top();
                let other = if leader != 0 && leader != victim && self.rng.chance(600) {
                    leader
                } else {
                    1 + (victim % n)
                };
                trace(self.now, &format!("minority [{victim}, {other}] cut off"));
                for m in 1..=n {
                    if m != victim && m != other {
                        for a in [victim, other] {
                            self.cut.insert((a, m), self.now + dur);
                            self.cut.insert((m, a), self.now + dur);
                        }
                    }
                }
            }
            _ => {
                // One way: the victim hears nobody (its answers still go out).
                for m in 1..=n {
                    if m != victim {
                        self.cut.insert((m, victim), self.now + dur);
                    }
                }
            }
        }
        self.loss_per_mille = self.rng.below(80);
    }

    fn recover(&mut self) {
        let now = self.now;
        let due: Vec<(u64, u64)> = self
            .restarts
            .iter()
            .copied()
            .filter(|(t, _)| *t <= now)
            .collect();
        self.restarts.retain(|(t, _)| *t > now);
        for (_, id) in due {
            let n = self.node(id);
            n.run = Run::Up;
            n.keeper = Keeper::default();
            n.lease = Lease::default();
            n.tracker = Tracker::default();
            n.proposing = None;
            n.inbox.clear();
            n.leader = 0;
        }
        let due: Vec<(u64, u64)> = self
            .resumes
            .iter()
            .copied()
            .filter(|(t, _)| *t <= now)
            .collect();
        self.resumes.retain(|(t, _)| *t > now);
        for (_, id) in due {
            self.node(id).run = Run::Up;
            let inbox = std::mem::take(&mut self.node(id).inbox);
            for m in inbox {
                self.handle(m);
            }
        }
    }
}

impl World {
    fn run(seed: u64, nodes: u64, faults_ms: u64, settle_ms: u64) -> Result<(), String> {
        let mut w = World::new(seed, nodes);
        let end = faults_ms + settle_ms;
        while w.now < end {
            w.recover();
            w.fault(faults_ms);
            w.deliver();
            w.step_raft();
            w.tick_nodes();
            let serving = w.serving();
            let state = |w: &World| {
                w.nodes
                    .iter()
                    .map(|n| (n.id, n.run, n.term, n.leader, w.views[n.applied].clone()))
                    .collect::<Vec<_>>()
            };
            for (i, s) in serving.iter().enumerate() {
                if s.len() > 1 {
                    return Err(format!(
                        "seed {seed}: at {} ms user {} served by {:?} (nodes: {:?})",
                        w.now,
                        w.users[i],
                        s,
                        state(&w)
                    ));
                }
            }
            let settled = w.now >= faults_ms && w.now >= w.fault_end + 12_000;
            if settled && !serving.iter().all(|s| s.len() == 1) {
                return Err(format!(
                    "seed {seed}: at {} ms, 12 s after the last fault ended ({} ms), not every \
                     user has one serving home: {:?} (nodes: {:?})",
                    w.now,
                    w.fault_end,
                    serving,
                    state(&w)
                ));
            }
            w.now += STEP;
        }
        Ok(())
    }
}

#[test]
fn one_home_per_user_under_faults() {
    if let Some(seed) = std::env::var("HERALD_SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        let nodes = if seed % 4 == 3 { 5 } else { 3 };
        World::run(seed, nodes, 30_000, 25_000).unwrap();
        return;
    }
    let seeds: u64 = std::env::var("HERALD_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    let mut failures = Vec::new();
    for seed in 0..seeds {
        let nodes = if seed % 4 == 3 { 5 } else { 3 };
        if let Err(e) = World::run(seed, nodes, 30_000, 25_000) {
            failures.push(e);
            if failures.len() >= 5 {
                break;
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
