//! Process-wide counters of the Raft layer on simulated 3-node clusters (real owner loops and
//! redb stores, in-memory transport): durable writes (fsyncs) during a write burst, ReadIndex
//! rounds during a burst of linearizable reads. Its own test binary, so that the counters see
//! only these tests (each test reads a different counter). Numbers: `bench/README.md`.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use herald_cluster::handle::ClusterHandle;
use herald_cluster::raft_loop::{
    bootstrap_snapshot, RaftConfig, RaftLoop, Role, READ_INDEX_ROUNDS,
};
use herald_cluster::state::StateMachine;
use herald_cluster::storage::{DiskStorage, COMMITS_UNSYNCED, FSYNCS};
use herald_cluster::transport::mem::MemHub;
use herald_grpc::config::{
    command::Op, config_object::Body, write_outcome, Command, ConfigObject, LocalDomain, NodeInfo,
    PutObject, WriteMode,
};
use prost::Message as _;

fn info(id: u64) -> NodeInfo {
    NodeInfo {
        node_id: id,
        cluster_address: format!("mem-{id}"),
        admin_address: String::new(),
    }
}

fn put_domain(name: &str) -> Vec<u8> {
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
    .encode_to_vec()
}

/// Starts a 3-node cluster in `dir`; returns the handles and the leader's.
async fn three_nodes(dir: &std::path::Path) -> (Vec<ClusterHandle>, ClusterHandle) {
    let hub = MemHub::new();
    let ids = [1u64, 2, 3];
    let state = StateMachine::bootstrap(&["localhost".to_string()], info(1)).unwrap();
    let mut snap = bootstrap_snapshot(1, &state);
    snap.mut_metadata().mut_conf_state().voters = ids.to_vec();
    let logger = slog::Logger::root(slog::Discard, slog::o!());
    let mut handles: Vec<ClusterHandle> = Vec::new();
    for id in ids {
        let d = dir.join(format!("n{id}"));
        std::fs::create_dir_all(&d).unwrap();
        let mut storage = DiskStorage::open(&d.join("raft.redb")).unwrap();
        storage.apply_snapshot(snap.clone()).unwrap();
        let (tx, rx) = crossbeam_channel::bounded(65_536);
        let transport = hub.attach(id, tx.clone());
        let cfg = RaftConfig {
            snapshot_entries: 1000,
            ..RaftConfig::for_test(id)
        };
        let (lp, out) = RaftLoop::new(cfg, storage, rx, transport, &logger).unwrap();
        std::thread::spawn(move || lp.run().unwrap());
        handles.push(ClusterHandle::new(
            info(id),
            tx,
            out.status,
            out.applied,
            Default::default(),
        ));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let leader = loop {
        if let Some(h) = handles.iter().find(|h| h.status().role == Role::Leader) {
            break h.clone();
        }
        assert!(Instant::now() < deadline, "no leader");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    (handles, leader)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_only_readies_cost_no_fsync() {
    let dir = tempfile::tempdir().unwrap();
    let (_handles, leader) = three_nodes(dir.path()).await;
    // Let the election's writes settle, then count only the burst.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (f0, c0) = (
        FSYNCS.load(Ordering::Relaxed),
        COMMITS_UNSYNCED.load(Ordering::Relaxed),
    );
    let writes = 400u64;
    let started = Instant::now();
    // Half one at a time, half 16 at a time.
    for i in 0..writes / 2 {
        let o = leader
            .propose_local(put_domain(&format!("s{i}.test")))
            .await
            .unwrap();
        let Some(write_outcome::Result::Revision(rev)) = o.result else {
            panic!("write failed: {o:?}");
        };
        // Read-your-writes on the proposing node: published before the reply.
        assert!(leader.applied().state.applied_index() >= rev);
    }
    for batch in 0..writes / 2 / 16 {
        let calls =
            (0..16).map(|j| leader.propose_local(put_domain(&format!("c{batch}-{j}.test"))));
        for o in futures::future::join_all(calls).await {
            assert!(matches!(
                o.unwrap().result,
                Some(write_outcome::Result::Revision(_))
            ));
        }
    }
    let elapsed = started.elapsed();
    // Let followers apply the last commit.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let fsyncs = FSYNCS.load(Ordering::Relaxed) - f0;
    let unsynced = COMMITS_UNSYNCED.load(Ordering::Relaxed) - c0;
    let writes_done = writes / 2 + (writes / 2 / 16) * 16;
    eprintln!(
        "{writes_done} writes on 3 nodes in {elapsed:?}: {fsyncs} fsyncs ({:.2} per write, \
         {:.0}/s); {unsynced} commit-only updates kept in memory (each was an fsync before: \
         {} fsyncs, {:.2} per write)",
        fsyncs as f64 / writes_done as f64,
        fsyncs as f64 / elapsed.as_secs_f64(),
        fsyncs + unsynced,
        (fsyncs + unsynced) as f64 / writes_done as f64,
    );
    assert!(unsynced > 0, "no commit-only update seen");
    // Each write costs one append fsync per node (3), batching can only lower it; commit-only
    // updates add none.
    assert!(
        fsyncs <= writes_done * 3 + 10,
        "{fsyncs} fsyncs for {writes_done} writes"
    );
}

/// 10,000 concurrent linearizable reads on a follower (a node re-homing 10,000 users) share a
/// handful of ReadIndex rounds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_linearizable_reads_share_read_index_rounds() {
    let dir = tempfile::tempdir().unwrap();
    let (handles, leader) = three_nodes(dir.path()).await;
    let o = leader
        .propose_local(put_domain("before.test"))
        .await
        .unwrap();
    let Some(write_outcome::Result::Revision(rev)) = o.result else {
        panic!("write failed: {o:?}");
    };
    let follower = handles
        .iter()
        .find(|h| h.node_id() != leader.node_id())
        .unwrap()
        .clone();
    let r0 = READ_INDEX_ROUNDS.load(Ordering::Relaxed);
    let reads = 10_000;
    let started = Instant::now();
    let calls = (0..reads).map(|_| async {
        let idx = follower.read_barrier().await.unwrap();
        // What the barrier waited for is already visible in the node's published state.
        let seen = follower.applied().state.applied_index();
        (idx, seen)
    });
    for (idx, seen) in futures::future::join_all(calls).await {
        assert!(idx >= rev);
        assert!(
            seen >= idx,
            "read barrier at {idx} returned with {seen} published"
        );
    }
    let rounds = READ_INDEX_ROUNDS.load(Ordering::Relaxed) - r0;
    eprintln!(
        "{reads} linearizable reads on a follower: {rounds} ReadIndex rounds in {:?}",
        started.elapsed()
    );
    // One round is in flight at a time and every read that arrives meanwhile shares the next
    // one, so the count is about how long the 10,000 calls take to arrive divided by one
    // round's time (20–90 on a 2-vCPU VM); without sharing it would be 10,000.
    assert!(rounds <= 200, "{rounds} ReadIndex rounds for {reads} reads");
}

/// What publishing the applied state costs per applied batch (a `StateMachine` copy) for a store
/// of 10,000 users, next to the snapshot encoding that now runs off the Raft thread. Prints the
/// numbers (`bench/README.md`); asserts nothing about time.
#[test]
fn cost_of_a_published_copy_and_a_snapshot_of_10k_users() {
    use herald_grpc::config::{ScramSecret, User};
    let secret = ScramSecret {
        salt: vec![1, 2, 3, 4],
        iterations: 4096,
        stored_key: vec![5; 32],
        server_key: vec![6; 32],
    };
    let mut sm = StateMachine::bootstrap(&["localhost".to_string()], info(1)).unwrap();
    let users = 10_000u64;
    for i in 0..users {
        let cmd = Command {
            audit: None,
            op: Some(Op::Put(PutObject {
                object: Some(ConfigObject::new(Body::User(User {
                    jid: format!("user{i}@localhost"),
                    scram_sha256: Some(secret.clone()),
                    scram_sha1: Some(secret.clone()),
                    ..Default::default()
                }))),
                mode: WriteMode::Create as i32,
                expected_revision: 0,
                confirm: false,
                fence: None,
            })),
        };
        let o = sm.apply(2 + i, &cmd);
        assert!(
            matches!(o.result, Some(write_outcome::Result::Revision(_))),
            "{o:?}"
        );
    }
    let rounds = 20u32;
    let t = Instant::now();
    for _ in 0..rounds {
        std::hint::black_box(sm.clone());
    }
    let copy = t.elapsed() / rounds;
    let t = Instant::now();
    let bytes = sm.to_snapshot().encode_to_vec().len();
    let snap = t.elapsed();
    let t = Instant::now();
    let direct = sm.encode_snapshot().len();
    let encoded = t.elapsed();
    assert_eq!(direct, bytes);
    eprintln!(
        "{users} users: one published copy {copy:?} (debug build); snapshot {bytes} bytes encoded in {encoded:?} ({snap:?} through a copy of the state)"
    );
}
