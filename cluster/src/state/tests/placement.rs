//! The placement view (compare-and-set by epoch, members only, never written by admins) and
//! fenced user-data writes (refused from a node that is not the user's home in the current
//! epoch; owners stamped and remembered).

use super::*;
use herald_grpc::config::{Fence, SetPlacement, UserData};

fn set_placement(expected_epoch: u64, nodes: &[u64]) -> Command {
    Command {
        op: Some(Op::SetPlacement(SetPlacement {
            expected_epoch,
            nodes: nodes.to_vec(),
            reason: "test".into(),
        })),
        audit: None,
    }
}

fn data_put(jid: &str, blocked: &str, fence: Option<(u64, u64)>) -> Command {
    Command {
        op: Some(Op::Put(PutObject {
            object: Some(ConfigObject::new(Body::UserData(UserData {
                jid: jid.into(),
                blocked: vec![blocked.into()],
                // Whatever a writer claims here is replaced by the state machine.
                owner_node: 99,
                ..Default::default()
            }))),
            mode: WriteMode::Upsert as i32,
            expected_revision: 0,
            confirm: false,
            fence: fence.map(|(owner_node, epoch)| Fence {
                owner_node,
                epoch,
                ..Default::default()
            }),
        })),
        audit: None,
    }
}

fn stored_data(h: &Harness, jid: &str) -> UserData {
    match h.get(ObjectKind::UserData, jid).body {
        Some(Body::UserData(d)) => d,
        other => panic!("not user data: {other:?}"),
    }
}

#[test]
fn epoch_zero_is_every_member_then_compare_and_set() {
    let mut h = Harness::new();
    let v = h.sm.placement();
    assert_eq!((v.epoch, v.nodes.clone()), (0, vec![1, 2, 3]));
    h.ok(&set_placement(0, &[1, 2, 3]));
    assert_eq!(h.sm.placement().epoch, 1);
    // A stale leader's change (expected epoch 0) is refused.
    h.err_with(&set_placement(0, &[1]), ErrorCode::FailedPrecondition, "");
    h.ok(&set_placement(1, &[3, 1]));
    let v = h.sm.placement();
    assert_eq!((v.epoch, v.nodes), (2, vec![1, 3]));
    // Non-members and empty views are invalid.
    h.err_with(
        &set_placement(2, &[1, 7]),
        ErrorCode::InvalidArgument,
        "nodes",
    );
    h.err_with(&set_placement(2, &[]), ErrorCode::InvalidArgument, "nodes");
    // Admins cannot write or delete it.
    let body = Body::Placement(herald_grpc::config::PlacementView {
        epoch: 9,
        nodes: vec![1],
        reason: String::new(),
    });
    h.err_with(&upsert(body), ErrorCode::FailedPrecondition, "");
    h.err_with(
        &delete(ObjectKind::Placement, ""),
        ErrorCode::FailedPrecondition,
        "",
    );
    // A member that leaves the cluster leaves the view with it.
    let i = h.next;
    h.next += 1;
    h.sm.remove_node(i, 3);
    assert_eq!(h.sm.placement().nodes, vec![1]);
}

#[test]
fn fenced_user_data_writes() {
    let mut h = Harness::new();
    h.ok(&create(user("ann@example.com")));
    h.ok(&set_placement(0, &[1, 2, 3]));
    let home = h.sm.home_of("ann@example.com").unwrap();
    let other = [1, 2, 3].into_iter().find(|n| *n != home).unwrap();
    // The home in the current epoch writes; its owner is stamped.
    let (r1, _) = h.ok(&data_put("ann@example.com", "a@x", Some((home, 1))));
    let d = stored_data(&h, "ann@example.com");
    assert_eq!((d.owner_node, d.owner_epoch), (home, 1));
    assert_eq!(d.owners.len(), 1);
    assert_eq!(d.owners[0].first_revision, r1);
    // Another node, or the home with a stale epoch, is refused, and nothing changes.
    let e = h.err_with(
        &data_put("ann@example.com", "b@x", Some((other, 1))),
        ErrorCode::FailedPrecondition,
        "",
    );
    assert!(e.message.starts_with("fenced:"), "{e:?}");
    h.ok(&set_placement(1, &[1, 2, 3]));
    h.err_with(
        &data_put("ann@example.com", "b@x", Some((home, 1))),
        ErrorCode::FailedPrecondition,
        "",
    );
    // The home moves (its node leaves the view): the new home writes in the new epoch, and the
    // history shows both owners in epoch order.
    let rest: Vec<u64> = [1, 2, 3].into_iter().filter(|n| *n != home).collect();
    h.ok(&set_placement(2, &rest));
    let new_home = h.sm.home_of("ann@example.com").unwrap();
    assert_ne!(new_home, home);
    h.err_with(
        &data_put("ann@example.com", "c@x", Some((home, 3))),
        ErrorCode::FailedPrecondition,
        "",
    );
    h.ok(&data_put("ann@example.com", "c@x", Some((new_home, 3))));
    h.ok(&data_put("ann@example.com", "d@x", Some((new_home, 3))));
    let d = stored_data(&h, "ann@example.com");
    let owners: Vec<(u64, u64)> = d.owners.iter().map(|o| (o.epoch, o.node)).collect();
    assert_eq!(owners, vec![(1, home), (3, new_home)]);
    assert_eq!(d.blocked, vec!["d@x".to_string()]);
    // An unfenced write (an operator's) keeps the last owner.
    h.ok(&data_put("ann@example.com", "e@x", None));
    let d = stored_data(&h, "ann@example.com");
    assert_eq!(
        (d.owner_node, d.owner_epoch, d.owners.len()),
        (new_home, 3, 2)
    );
}

#[test]
fn the_pins_fingerprint_changes_with_pins_only() {
    let mut h = Harness::new();
    let none = h.sm.pins_fingerprint();
    h.ok(&create(user("bob@example.com")));
    h.ok(&create(user("ann@example.com")));
    assert_eq!(h.sm.pins_fingerprint(), none, "unpinned users do not count");
    let mut pinned = user_body("bob@example.com", "");
    pinned.pinned_home_node = 2;
    h.ok(&upsert(Body::User(pinned.clone())));
    let bob_on_2 = h.sm.pins_fingerprint();
    assert_ne!(bob_on_2, none, "a new pin");
    let mut mailed = pinned.clone();
    mailed.mail_id = "bob@mail.test".into();
    h.ok(&upsert(Body::User(mailed)));
    assert_eq!(
        h.sm.pins_fingerprint(),
        bob_on_2,
        "another field of a pinned user"
    );
    pinned.pinned_home_node = 3;
    h.ok(&upsert(Body::User(pinned.clone())));
    assert_ne!(h.sm.pins_fingerprint(), bob_on_2, "a pin moved");
    assert_ne!(h.sm.pins_fingerprint(), none);
    let snap = StateMachine::from_snapshot(&h.sm.to_snapshot()).expect("restore");
    assert_eq!(
        snap.pins_fingerprint(),
        h.sm.pins_fingerprint(),
        "the same after a snapshot"
    );
    pinned.pinned_home_node = 0;
    h.ok(&upsert(Body::User(pinned)));
    assert_eq!(h.sm.pins_fingerprint(), none, "unpinned again");
}

/// A fenced write to the user-state group: the writer brings its view and the user's pin.
fn group_put(jid: &str, blocked: &str, owner: u64, view: (u64, &[u64]), pinned: u64) -> Command {
    let mut cmd = data_put(jid, blocked, Some((owner, view.0)));
    if let Some(Op::Put(p)) = cmd.op.as_mut() {
        let f = p.fence.as_mut().expect("fence");
        f.view = Some(herald_grpc::config::PlacementView {
            epoch: view.0,
            nodes: view.1.to_vec(),
            reason: String::new(),
        });
        f.pinned = pinned;
    }
    cmd
}

fn mirror(epoch: u64, nodes: &[u64]) -> Command {
    Command {
        op: Some(Op::MirrorPlacement(herald_grpc::config::MirrorPlacement {
            view: Some(herald_grpc::config::PlacementView {
                epoch,
                nodes: nodes.to_vec(),
                reason: "test".into(),
            }),
        })),
        audit: None,
    }
}

#[test]
fn the_user_state_group_fences_with_the_views_its_writers_bring() {
    let mut h = Harness {
        sm: StateMachine::for_users_group(),
        next: 2,
    };
    let jid = "ann@example.com";
    let all: &[u64] = &[1, 2, 3];
    let home = crate::ownership::View::new(1, all.to_vec())
        .home(jid, 0)
        .unwrap();
    let other = all.iter().copied().find(|n| *n != home).unwrap();
    // No user object is needed (the config group has them); the first write brings epoch 1.
    h.ok(&group_put(jid, "a@x", home, (1, all), 0));
    assert_eq!(h.sm.placement().epoch, 1, "the writer's view is adopted");
    let d = stored_data(&h, jid);
    assert_eq!((d.owner_node, d.owner_epoch), (home, 1));
    // Another node claiming the same epoch is not the home there.
    let e = h.err_with(
        &group_put(jid, "b@x", other, (1, all), 0),
        ErrorCode::FailedPrecondition,
        "",
    );
    assert!(e.message.starts_with("fenced:"), "{e:?}");
    // ... unless the user is pinned to it (the pin comes with the fence).
    h.ok(&group_put(jid, "b@x", other, (1, all), other));
    // The config group moves on (home's node leaves): the mirror lands before anyone writes,
    // and the old owner, still in epoch 1, is refused from then on.
    let rest: Vec<u64> = all.iter().copied().filter(|n| *n != home).collect();
    h.ok(&mirror(2, &rest));
    assert_eq!(h.sm.placement().epoch, 2);
    h.err_with(
        &group_put(jid, "c@x", home, (1, all), 0),
        ErrorCode::FailedPrecondition,
        "",
    );
    // A mirror or a writer's view never takes the group back.
    h.ok(&mirror(1, all));
    assert_eq!(h.sm.placement().nodes, rest);
    let new_home = h.sm.placement().home(jid, 0).unwrap();
    h.ok(&group_put(jid, "d@x", new_home, (2, &rest), 0));
    // A writer that saw a newer view than the group's brings it, and it fences the others.
    h.ok(&group_put(jid, "e@x", home, (3, all), 0));
    assert_eq!(h.sm.placement().epoch, 3);
    h.err_with(
        &group_put(jid, "f@x", new_home, (2, &rest), 0),
        ErrorCode::FailedPrecondition,
        "",
    );
    let owners: Vec<(u64, u64)> = stored_data(&h, jid)
        .owners
        .iter()
        .map(|o| (o.epoch, o.node))
        .collect();
    assert_eq!(
        owners,
        vec![(1, home), (1, other), (2, new_home), (3, home)]
    );
    // Config writes have no place here, and a mirror none in the config group.
    h.err_with(
        &create(user("bob@example.com")),
        ErrorCode::FailedPrecondition,
        "",
    );
    let mut config = Harness::new();
    config.err_with(&mirror(5, all), ErrorCode::FailedPrecondition, "");
    // Deleting a user's data (the leader's clean-up of a deleted user) works without a user.
    h.ok(&delete(ObjectKind::UserData, jid));
    assert!(h.sm.peek(ObjectKind::UserData, jid).is_none());
    // The group's flag survives a snapshot only through the loop (it is not replicated).
    let mut restored = StateMachine::from_snapshot(&h.sm.to_snapshot()).expect("restore");
    assert!(!restored.is_users_group());
    restored.set_users_group();
    assert_eq!(restored.placement().epoch, 3);
}

/// Random interleavings of mirrors and fenced writes in the user-state group, each carrying a
/// view the config group committed (any of them: writers and mirrors may be stale), from any
/// node, with or without a pin. Whatever the order: the group's epoch never goes back, its view
/// is always the committed view of that epoch, and an accepted write comes from the home of the
/// newest epoch the group has seen (under the writer's pin), never from an older epoch.
#[test]
fn the_user_state_group_never_accepts_an_owner_of_an_older_epoch() {
    use rand::{Rng, SeedableRng};
    let seeds: u64 = std::env::var("HERALD_FENCE_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    let jids = ["ann@example.com", "bob@example.com", "cy@example.com"];
    for seed in 0..seeds {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        // The config group's committed views, epoch 1.. (random non-empty subsets of 1..=5).
        let views: Vec<Vec<u64>> = (0..8)
            .map(|_| {
                let mut n: Vec<u64> = (1..=5).filter(|_| rng.random_bool(0.6)).collect();
                if n.is_empty() {
                    n.push(rng.random_range(1..=5));
                }
                n
            })
            .collect();
        let view_of = |e: u64| crate::ownership::View::new(e, views[e as usize - 1].clone());
        let mut h = Harness {
            sm: StateMachine::for_users_group(),
            next: 2,
        };
        let mut newest = 0u64;
        for step in 0..60 {
            // Views become known over time: at most `step / 6 + 1`.
            let known = (step / 6 + 1).min(views.len()) as u64;
            let e = rng.random_range(1..=known);
            let before = h.sm.placement().epoch;
            if rng.random_bool(0.2) {
                let out = h.apply(&mirror(e, &views[e as usize - 1]));
                assert!(
                    matches!(out.result, Some(write_outcome::Result::Revision(_))),
                    "seed {seed}: a mirror is never refused: {out:?}"
                );
            } else {
                let jid = jids[rng.random_range(0..jids.len())];
                let owner = rng.random_range(1..=5);
                let pinned = if rng.random_bool(0.2) {
                    rng.random_range(1..=5)
                } else {
                    0
                };
                let out = h.apply(&group_put(
                    jid,
                    "x@x",
                    owner,
                    (e, &views[e as usize - 1]),
                    pinned,
                ));
                if let Some(write_outcome::Result::Revision(_)) = out.result {
                    assert!(
                        e >= newest,
                        "seed {seed} step {step}: an owner of epoch {e} wrote after epoch {newest} was seen"
                    );
                    assert_eq!(
                        view_of(e).home(jid, pinned),
                        Some(owner),
                        "seed {seed} step {step}: a write accepted from a node that is not the home"
                    );
                }
            }
            let v = h.sm.placement();
            assert!(
                v.epoch >= before,
                "seed {seed} step {step}: the group's epoch went back"
            );
            newest = newest.max(v.epoch);
            assert_eq!(v.epoch, newest, "seed {seed}");
            if v.epoch == 0 {
                assert!(
                    v.nodes.is_empty(),
                    "seed {seed}: a view before any was adopted"
                );
            } else {
                assert_eq!(
                    v,
                    view_of(v.epoch),
                    "seed {seed}: a view that was never committed"
                );
            }
        }
    }
}
