//! Simulated clusters: real owner loops and real disk storage, over the in-memory transport with
//! isolation, cut links and message loss (STYLE.md habit 13b).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use herald_cluster::handle::ClusterHandle;
use herald_cluster::raft_loop::{
    bootstrap_snapshot, Input, RaftConfig, RaftLoop, RaftStatus, Role,
};
use herald_cluster::state::StateMachine;
use herald_cluster::storage::DiskStorage;
use herald_cluster::transport::mem::MemHub;
use herald_grpc::config::{
    command::Op, config_object::Body, write_outcome, Command, ConfigObject, LocalDomain, NodeInfo,
    PutObject, WriteMode,
};

fn logger() -> slog::Logger {
    slog::Logger::root(slog::Discard, slog::o!())
}

fn info(id: u64) -> NodeInfo {
    NodeInfo {
        node_id: id,
        cluster_address: format!("mem-{id}"),
        admin_address: String::new(),
    }
}

fn put_domain(name: &str) -> Command {
    Command {
        audit: None,
        op: Some(Op::Put(PutObject {
            object: Some(ConfigObject::new(Body::Domain(LocalDomain {
                name: name.to_string(),
                ..Default::default()
            }))),
            mode: WriteMode::Create as i32,
            expected_revision: 0,
            confirm: false,
            fence: None,
        })),
    }
}

struct SimNode {
    handle: ClusterHandle,
    thread: Option<std::thread::JoinHandle<()>>,
}

struct Sim {
    /// Raft tuning of every node started from now on.
    cfg: fn(u64) -> RaftConfig,
    hub: MemHub,
    dir: tempfile::TempDir,
    nodes: HashMap<u64, SimNode>,
}

impl Sim {
    fn new() -> Self {
        Sim {
            cfg: RaftConfig::for_test,
            hub: MemHub::new(),
            dir: tempfile::tempdir().unwrap(),
            nodes: HashMap::new(),
        }
    }

    fn storage(&self, id: u64) -> DiskStorage {
        let d = self.dir.path().join(format!("n{id}"));
        std::fs::create_dir_all(&d).unwrap();
        DiskStorage::open(&d.join("raft.redb")).unwrap()
    }

    /// Initialises `ids` as the voters of a new cluster (each gets the same first snapshot).
    fn bootstrap(&mut self, ids: &[u64]) {
        let state = StateMachine::bootstrap(&["localhost".to_string()], info(ids[0])).unwrap();
        let mut snap = bootstrap_snapshot(ids[0], &state);
        snap.mut_metadata().mut_conf_state().voters = ids.to_vec();
        for &id in ids {
            let mut s = self.storage(id);
            if s.is_empty() {
                s.apply_snapshot(snap.clone()).unwrap();
            }
        }
    }

    fn start(&mut self, id: u64) {
        let storage = self.storage(id);
        let (tx, rx) = crossbeam_channel::bounded(65_536);
        let transport = self.hub.attach(id, tx.clone());
        let (lp, out) = RaftLoop::new((self.cfg)(id), storage, rx, transport, &logger()).unwrap();
        let thread = std::thread::spawn(move || {
            lp.run().unwrap();
        });
        let handle = ClusterHandle::new(info(id), tx, out.status, out.applied, Default::default());
        self.nodes.insert(
            id,
            SimNode {
                handle,
                thread: Some(thread),
            },
        );
    }

    fn stop(&mut self, id: u64) {
        if let Some(mut n) = self.nodes.remove(&id) {
            let _ = n.handle.inbox_for_tests().send(Input::Shutdown);
            n.thread.take().unwrap().join().unwrap();
        }
    }

    fn h(&self, id: u64) -> &ClusterHandle {
        &self.nodes[&id].handle
    }

    async fn wait_leader(&self, among: &[u64]) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            for &id in among {
                let st = self.h(id).status();
                if st.role == Role::Leader {
                    return id;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no leader elected among {among:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Writes through whichever of `among` leads, retrying across elections.
    async fn write(&self, among: &[u64], cmd: &Command) -> u64 {
        use prost::Message as _;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let leader = self.wait_leader(among).await;
            match self.h(leader).propose_local(cmd.encode_to_vec()).await {
                Ok(o) => match o.result {
                    Some(write_outcome::Result::Revision(r)) => return r,
                    other => panic!("write rejected: {other:?}"),
                },
                Err(e) => {
                    assert!(Instant::now() < deadline, "write kept failing: {e}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }

    /// Waits until node `id` sees exactly `voters` as voters and no learner.
    async fn wait_voters(&self, id: u64, voters: &[u64]) {
        self.wait_status(id, |st| st.voters == voters && st.learners.is_empty())
            .await
    }

    /// Waits until node `id`'s status satisfies `ok`.
    async fn wait_status(&self, id: u64, ok: impl Fn(&RaftStatus) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let st = self.h(id).status();
            if ok(&st) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "node {id}: unexpected status {st:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn wait_converged(&self, ids: &[u64], min_applied: u64) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let views: Vec<_> = ids.iter().map(|id| self.h(*id).applied()).collect();
            let same = views.windows(2).all(|w| w[0].digest() == w[1].digest());
            if same && views.iter().all(|v| v.state.applied_index() >= min_applied) {
                return views[0].digest().to_string();
            }
            assert!(
                Instant::now() < deadline,
                "nodes {ids:?} did not converge: {:?}",
                views
                    .iter()
                    .map(|v| (v.state.applied_index(), v.digest().to_string()))
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let ids: Vec<u64> = self.nodes.keys().copied().collect();
        for id in ids {
            self.stop(id);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicates_and_survives_leader_isolation() {
    let mut sim = Sim::new();
    sim.bootstrap(&[1, 2, 3]);
    for id in 1..=3 {
        sim.start(id);
    }
    let all = [1, 2, 3];
    for i in 0..20 {
        sim.write(&all, &put_domain(&format!("a{i}.test"))).await;
    }
    let last = sim.write(&all, &put_domain("before.test")).await;
    sim.wait_converged(&all, last).await;

    // Isolate the leader: the other two elect a new one and keep accepting writes.
    let old = sim.wait_leader(&all).await;
    sim.hub.isolate(old);
    let rest: Vec<u64> = all.iter().copied().filter(|i| *i != old).collect();
    let mut last = 0;
    for i in 0..20 {
        last = sim.write(&rest, &put_domain(&format!("b{i}.test"))).await;
    }
    sim.hub.heal();
    let digest = sim.wait_converged(&all, last).await;
    let state = &sim.h(old).applied().state;
    assert!(state
        .get(herald_grpc::config::ObjectKind::Domain, "b19.test")
        .is_some());
    assert_eq!(sim.h(old).applied().digest(), digest);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_under_message_loss_and_restarts_from_disk() {
    let mut sim = Sim::new();
    sim.bootstrap(&[1, 2, 3]);
    for id in 1..=3 {
        sim.start(id);
    }
    let all = [1, 2, 3];
    sim.hub.drop_every(4);
    let mut last = 0;
    for i in 0..30 {
        last = sim
            .write(&all, &put_domain(&format!("lossy{i}.test")))
            .await;
    }
    sim.hub.heal();
    let digest = sim.wait_converged(&all, last).await;

    // Restart every node from its data dir: the state comes back identical.
    for id in all {
        sim.stop(id);
    }
    for id in all {
        sim.start(id);
    }
    sim.wait_leader(&all).await;
    let after = sim.wait_converged(&all, last).await;
    assert_eq!(after, digest);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lagging_node_catches_up_by_snapshot_after_compaction() {
    let mut sim = Sim::new();
    sim.bootstrap(&[1, 2, 3]);
    for id in 1..=3 {
        sim.start(id);
    }
    let all = [1, 2, 3];
    let leader = sim.wait_leader(&all).await;
    let lagger = all.iter().copied().find(|i| *i != leader).unwrap();
    sim.stop(lagger);
    let rest: Vec<u64> = all.iter().copied().filter(|i| *i != lagger).collect();
    let mut last = 0;
    // More than RaftConfig::for_test's snapshot_entries (50): the log is compacted past the lagger.
    for i in 0..120 {
        last = sim.write(&rest, &put_domain(&format!("c{i}.test"))).await;
    }
    sim.start(lagger);
    sim.wait_converged(&all, last).await;
    assert!(sim
        .h(lagger)
        .applied()
        .state
        .get(herald_grpc::config::ObjectKind::Domain, "c0.test")
        .is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_add_and_remove() {
    let mut sim = Sim::new();
    sim.bootstrap(&[1]);
    sim.start(1);
    sim.wait_leader(&[1]).await;
    sim.write(&[1], &put_domain("one.test")).await;
    // Node 2 starts empty and is added as a learner: it receives a snapshot and then the log,
    // and the leader promotes it to voter once it has caught up.
    sim.start(2);
    let voters = sim
        .h(1)
        .change_membership_local(true, info(2))
        .await
        .unwrap();
    assert_eq!(voters, vec![1]);
    sim.wait_voters(1, &[1, 2]).await;
    let last = sim.write(&[1, 2], &put_domain("two.test")).await;
    sim.wait_converged(&[1, 2], last).await;
    // Removing the last voter is refused; removing node 2 works and stops it.
    let leader = sim.wait_leader(&[1, 2]).await;
    let other = if leader == 1 { 2 } else { 1 };
    let voters = sim
        .h(leader)
        .change_membership_local(false, info(other))
        .await
        .unwrap();
    assert_eq!(voters, vec![leader]);
    let err = sim
        .h(leader)
        .change_membership_local(false, info(leader))
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        herald_grpc::config::ErrorCode::FailedPrecondition
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joiner_that_never_catches_up_costs_no_quorum() {
    let mut sim = Sim::new();
    sim.bootstrap(&[1]);
    sim.start(1);
    sim.wait_leader(&[1]).await;
    // Node 2 is added but never starts (it died right after asking to join).
    let voters = sim
        .h(1)
        .change_membership_local(true, info(2))
        .await
        .unwrap();
    assert_eq!(voters, vec![1]);
    sim.wait_status(1, |st| st.voters == [1] && st.learners == [2])
        .await;
    // The lone voter still commits, and a second add of the learner is idempotent.
    for i in 0..5 {
        sim.write(&[1], &put_domain(&format!("alone{i}.test")))
            .await;
    }
    assert_eq!(
        sim.h(1)
            .change_membership_local(true, info(2))
            .await
            .unwrap(),
        vec![1]
    );
    sim.wait_status(1, |st| st.learners == [2]).await;
    // The half-joined learner can be removed.
    let voters = sim
        .h(1)
        .change_membership_local(false, info(2))
        .await
        .unwrap();
    assert_eq!(voters, vec![1]);
    sim.wait_status(1, |st| st.learners.is_empty()).await;
    assert!(sim
        .h(1)
        .applied()
        .state
        .nodes()
        .iter()
        .all(|n| n.node_id != 2));
    sim.write(&[1], &put_domain("after.test")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_joins_are_queued_not_dropped() {
    let mut sim = Sim::new();
    sim.bootstrap(&[1]);
    sim.start(1);
    sim.wait_leader(&[1]).await;
    sim.start(2);
    sim.start(3);
    let started = Instant::now();
    let (a, b) = tokio::join!(
        sim.h(1).change_membership_local(true, info(2)),
        sim.h(1).change_membership_local(true, info(3)),
    );
    a.unwrap();
    b.unwrap();
    // Both answered without waiting for a proposal timeout (5 s in the test config).
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    sim.wait_voters(1, &[1, 2, 3]).await;
    let last = sim.write(&[1, 2, 3], &put_domain("three.test")).await;
    sim.wait_converged(&[1, 2, 3], last).await;
}

/// A follower that lagged by less than the compaction window catches up from the log, though
/// the leader compacted several times meanwhile; past the window it needs a snapshot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_briefly_lagging_follower_catches_up_from_the_log_window() {
    for (lag, want_snapshot) in [(200, false), (0, true)] {
        let mut sim = Sim::new();
        sim.cfg = if lag > 0 {
            |id| RaftConfig {
                snapshot_entries: 10,
                compaction_lag: 200,
                ..RaftConfig::for_test(id)
            }
        } else {
            |id| RaftConfig {
                snapshot_entries: 10,
                compaction_lag: 0,
                ..RaftConfig::for_test(id)
            }
        };
        sim.bootstrap(&[1, 2, 3]);
        for id in 1..=3 {
            sim.start(id);
        }
        let all = [1, 2, 3];
        let leader = sim.wait_leader(&all).await;
        let lagger = all.iter().copied().find(|i| *i != leader).unwrap();
        sim.stop(lagger);
        let rest: Vec<u64> = all.iter().copied().filter(|i| *i != lagger).collect();
        let mut last = 0;
        for i in 0..60 {
            last = sim.write(&rest, &put_domain(&format!("w{i}.test"))).await;
        }
        sim.start(lagger);
        sim.wait_converged(&all, last).await;
        let installed = sim.h(lagger).status().snapshots_installed;
        assert_eq!(
            installed > 0,
            want_snapshot,
            "lag {lag}: {installed} snapshots"
        );
    }
}
