//! The user-state Raft group on a real single-node start (`herald_cluster::start`, redb stores,
//! the leader's upkeep task): users' data written there, data an older build left in the config
//! group read until moved and then deleted there, a deleted user's data deleted, and the group
//! started again on a data dir made before it existed (the upgrade path).

use std::path::Path;
use std::time::{Duration, Instant};

use herald_cluster::client::PeerOptions;
use herald_cluster::raft_loop::{Group, RaftConfig, Role};
use herald_cluster::{ClusterConfig, ClusterHandle};
use herald_grpc::config::{
    command::Op, config_object::Body, Command, ConfigObject, DeleteObject, Fence, NodeInfo,
    ObjectKind, PlacementView, PutObject, User, UserData, WriteMode,
};

const JID: &str = "ann@users.test";

fn start(dir: &Path) -> herald_cluster::Cluster {
    herald_cluster::start(
        ClusterConfig {
            raft: RaftConfig::for_test(1),
            data_dir: dir.to_path_buf(),
            me: NodeInfo {
                node_id: 1,
                cluster_address: "127.0.0.1:1".into(),
                admin_address: String::new(),
            },
            bootstrap_domains: vec!["users.test".into()],
            join: None,
            peer: PeerOptions::default(),
            secrets: Default::default(),
        },
        &slog::Logger::root(slog::Discard, slog::o!()),
    )
    .expect("start")
}

fn put(object: Body, mode: WriteMode, expected_revision: u64, fence: Option<Fence>) -> Command {
    Command {
        audit: None,
        op: Some(Op::Put(PutObject {
            object: Some(ConfigObject::new(object)),
            mode: mode as i32,
            expected_revision,
            confirm: false,
            fence,
        })),
    }
}

fn user() -> Body {
    let secret = |n: usize| herald_grpc::config::ScramSecret {
        salt: vec![7; 16],
        iterations: 4096,
        stored_key: vec![1; n],
        server_key: vec![2; n],
    };
    Body::User(User {
        jid: JID.into(),
        scram_sha256: Some(secret(32)),
        scram_sha1: Some(secret(20)),
        ..Default::default()
    })
}

fn data(blocked: &str) -> Body {
    Body::UserData(UserData {
        jid: JID.into(),
        blocked: vec![blocked.into()],
        ..Default::default()
    })
}

/// The fence a user actor on node 1 sends.
fn fence(h: &ClusterHandle) -> Fence {
    let view = h.placement();
    Fence {
        owner_node: 1,
        epoch: view.epoch,
        view: Some(PlacementView {
            epoch: view.epoch,
            nodes: view.nodes,
            reason: String::new(),
        }),
        pinned: 0,
    }
}

async fn wait_for(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !ok() {
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn leads_both(h: &ClusterHandle) {
    wait_for("leader of both groups", Duration::from_secs(10), || {
        h.status().role == Role::Leader && h.status_of(Group::Users).role == Role::Leader
    })
    .await;
}

fn blocked(h: &ClusterHandle) -> Option<(Vec<String>, u64)> {
    h.user_data(JID).map(|(d, r)| (d.blocked, r))
}

fn in_config(h: &ClusterHandle) -> bool {
    h.applied().state.peek(ObjectKind::UserData, JID).is_some()
}

async fn stop(c: herald_cluster::Cluster) {
    c.handle.shutdown();
    tokio::task::spawn_blocking(move || {
        c.thread
            .join()
            .expect("config thread")
            .expect("config loop");
        c.users_thread
            .join()
            .expect("users thread")
            .expect("users loop");
    })
    .await
    .expect("join");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_data_lives_in_its_group_and_old_copies_move_there() {
    let dir = tempfile::tempdir().unwrap();
    let c = start(dir.path());
    let h = c.handle.clone();
    leads_both(&h).await;
    h.write(&put(user(), WriteMode::Create, 0, None))
        .await
        .expect("user");

    // What an older build did: the user's data in the config group. It is read from there
    // (revision 0: not in the user-state group yet).
    h.write(&put(data("old@x"), WriteMode::Upsert, 0, None))
        .await
        .expect("legacy write");
    assert_eq!(blocked(&h), Some((vec!["old@x".to_string()], 0)));

    // A user actor's first write creates it in the user-state group; a second create (another
    // writer that also saw nothing) is refused.
    let w = h
        .write_user(&put(data("new@x"), WriteMode::Create, 0, Some(fence(&h))))
        .await
        .expect("first write");
    assert_eq!(blocked(&h), Some((vec!["new@x".to_string()], w.revision)));
    let e = h
        .write_user(&put(data("other@x"), WriteMode::Create, 0, Some(fence(&h))))
        .await
        .expect_err("second create");
    assert_eq!(
        e.code(),
        herald_grpc::config::ErrorCode::AlreadyExists,
        "{e:?}"
    );
    // The config group's copy is deleted by the leader's clean-up.
    wait_for("old copy deleted", Duration::from_secs(15), || {
        !in_config(&h)
    })
    .await;
    assert_eq!(blocked(&h), Some((vec!["new@x".to_string()], w.revision)));
    // The group mirrored the config group's placement view.
    assert_eq!(
        h.user_applied().state.placement(),
        h.applied().placement().clone()
    );
    // A stale fence (an epoch the group has not seen from the config group and a node that is
    // not a member) is refused.
    let mut stale = fence(&h);
    stale.owner_node = 7;
    let e = h
        .write_user(&put(
            data("x@x"),
            WriteMode::Upsert,
            w.revision,
            Some(stale),
        ))
        .await
        .expect_err("fenced");
    assert!(e.message.starts_with("fenced:"), "{e:?}");

    // Deleting the user deletes its data from the user-state group.
    h.write(&Command {
        audit: None,
        op: Some(Op::Delete(DeleteObject {
            kind: ObjectKind::User as i32,
            key: JID.into(),
            expected_revision: 0,
        })),
    })
    .await
    .expect("delete user");
    wait_for(
        "data of the deleted user deleted",
        Duration::from_secs(15),
        || {
            h.user_applied()
                .state
                .peek(ObjectKind::UserData, JID)
                .is_none()
        },
    )
    .await;
    stop(c).await;

    // A data dir from before the group existed (no users/): this node, the highest-id (and
    // only) voter, starts the group.
    std::fs::remove_dir_all(dir.path().join("users")).unwrap();
    let c = start(dir.path());
    leads_both(&c.handle).await;
    let h = c.handle.clone();
    h.write(&put(user(), WriteMode::Create, 0, None))
        .await
        .expect("user again");
    h.write_user(&put(data("again@x"), WriteMode::Create, 0, Some(fence(&h))))
        .await
        .expect("write after the upgrade");
    stop(c).await;
}
