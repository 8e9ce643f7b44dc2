//! Real-process tests of Raft hygiene (issue 9): learner-first joins, log catch-up of a briefly
//! lagging follower, chunked snapshots larger than the gRPC message cap.

use nix::sys::signal::Signal;

use std::time::Duration;

use anyhow::{anyhow, Result};
use herald_tests::{wait_until, Mode, Sandbox};
use serde_json::Value;

/// Node `id`'s entry in `cluster status` through `via`.
fn node_status(sb: &Sandbox, via: u64, id: u64) -> Result<Option<Value>> {
    let st = sb.status(via)?;
    Ok(st["nodes"]
        .as_array()
        .and_then(|l| l.iter().find(|n| n["id"].as_u64() == Some(id)).cloned()))
}

/// A joiner that dies before it caught up stays a learner: the one-node cluster keeps its quorum,
/// commits config writes, shows the learner in `cluster status`, and can remove it. A normal
/// join still ends with a voter.
#[test]
fn a_joiner_killed_before_catching_up_leaves_a_learner_not_a_stuck_cluster() -> Result<()> {
    let mut sb = Sandbox::new();
    sb.start_ready(1, Mode::Bootstrap)?;
    // Node 2 advertises an address where nothing listens (as if it died or was cut off right
    // after asking): the leader can never bring it up to date.
    let mut args = sb.args(2, &Mode::Join(1));
    args.extend(["--advertise-host".into(), sb.ip(9)]);
    sb.start_with_args(2, args)?;
    let learner = wait_until("node 2 listed", Duration::from_secs(30), || {
        node_status(&sb, 1, 2)
    })?;
    sb.kill9(2)?;
    assert_eq!(learner["membership"], "learner", "{learner}");
    // The lone voter still commits writes.
    for i in 0..3 {
        sb.cli_ok(1, &["domain", "add", &format!("alone{i}.test")])?;
    }
    assert!(sb.domains(1)?.contains(&"alone2.test".to_string()));
    let st = sb.status(1)?;
    let n2 = node_status(&sb, 1, 2)?.ok_or_else(|| anyhow!("node 2 gone: {st}"))?;
    assert_eq!(n2["membership"], "learner", "{st}");
    assert_eq!(n2["role"], "unreachable", "{st}");
    let n1 = node_status(&sb, 1, 1)?.ok_or_else(|| anyhow!("node 1 missing: {st}"))?;
    assert_eq!(
        (n1["role"].as_str(), n1["membership"].as_str()),
        (Some("leader"), Some("voter"))
    );
    let table = sb.cli_ok(1, &["cluster", "status"])?;
    assert!(table.contains("learner"), "{table}");
    // The half-joined learner can be removed; writes go on.
    sb.cli_ok(1, &["cluster", "remove-node", "--id", "2"])?;
    wait_until("node 2 removed", Duration::from_secs(10), || {
        Ok(node_status(&sb, 1, 2)?.is_none().then_some(()))
    })?;
    sb.cli_ok(1, &["domain", "add", "after.test"])?;
    // A normal join ends as a voter: node 3 catches up and is promoted.
    sb.start(3, Mode::Join(1))?;
    sb.wait_ready(3)?;
    sb.wait_converged(1, &[1, 3])?;
    let st = sb.status(3)?;
    for n in st["nodes"].as_array().into_iter().flatten() {
        assert_eq!(n["membership"], "voter", "{st}");
    }
    assert!(sb.domains(3)?.contains(&"after.test".to_string()));
    Ok(())
}

/// A follower paused (SIGSTOP) while a few hundred writes go through, and the leader compacts
/// its log several times, catches up from the log when resumed: it installs no snapshot. (With
/// `--compaction-lag 0` the same run installs one.)
#[test]
fn a_paused_follower_catches_up_from_the_log_not_a_snapshot() -> Result<()> {
    let mut sb = Sandbox::new();
    sb.extra_args = vec!["--snapshot-entries".into(), "50".into()];
    sb.start_three()?;
    let leader = sb.leader(1)?;
    let follower = (1..=3).find(|n| *n != leader).unwrap_or(2);
    let other = (1..=3)
        .find(|n| *n != leader && *n != follower)
        .unwrap_or(3);
    const INSTALLED: &str = "herald_raft_snapshots_installed_total";
    const TAKEN: &str = "herald_raft_snapshots_taken_total";
    let installed_before = sb.metric(follower, INSTALLED)?;
    let taken_before = sb.metric(leader, TAKEN)?;
    sb.signal(follower, Signal::SIGSTOP)?;
    let writes = 300;
    let result = (|| -> Result<()> {
        for i in 0..writes {
            sb.cli_ok(leader, &["domain", "add", &format!("lag{i}.test")])?;
        }
        Ok(())
    })();
    sb.signal(follower, Signal::SIGCONT)?;
    result?;
    let taken = sb.metric(leader, TAKEN)? - taken_before;
    assert!(
        taken >= 5.0,
        "the leader compacted only {taken} times during {writes} writes"
    );
    sb.wait_converged(other, &[1, 2, 3])?;
    let installed = sb.metric(follower, INSTALLED)? - installed_before;
    assert_eq!(
        installed, 0.0,
        "the resumed follower installed {installed} snapshots"
    );
    assert!(sb
        .domains(follower)?
        .contains(&format!("lag{}.test", writes - 1)));
    Ok(())
}

/// A follower paused past the log window catches up from a snapshot larger than the gRPC
/// message cap (lowered to its minimum, 64 KiB, so that a few hundred users are enough): the
/// snapshot goes in chunks on InstallSnapshot, never on the Raft stream.
#[test]
fn a_far_behind_follower_catches_up_from_a_chunked_snapshot_over_the_message_cap() -> Result<()> {
    const CAP: u64 = 64 * 1024;
    let mut sb = Sandbox::new();
    sb.extra_args = vec![
        "--max-grpc-message-bytes".into(),
        CAP.to_string(),
        "--snapshot-entries".into(),
        "50".into(),
        "--compaction-lag".into(),
        "20".into(),
    ];
    sb.start_three()?;
    let leader = sb.leader(1)?;
    let follower = (1..=3).find(|n| *n != leader).unwrap_or(2);
    let other = (1..=3)
        .find(|n| *n != leader && *n != follower)
        .unwrap_or(3);
    const INSTALLED: &str = "herald_raft_snapshots_installed_total";
    let installed_before = sb.metric(follower, INSTALLED)?;
    sb.signal(follower, Signal::SIGSTOP)?;
    let users = 600;
    let result = (|| -> Result<()> {
        for i in 0..users {
            sb.cli_ok(
                leader,
                &[
                    "user",
                    "add",
                    &format!("u{i}@localhost"),
                    "--password",
                    "pw-long-enough-1",
                ],
            )?;
        }
        Ok(())
    })();
    sb.signal(follower, Signal::SIGCONT)?;
    result?;
    sb.wait_converged(other, &[1, 2, 3])?;
    let installed = sb.metric(follower, INSTALLED)? - installed_before;
    assert!(
        installed >= 1.0,
        "the resumed follower installed no snapshot"
    );
    // The leader says how large the snapshot it sent was.
    let log = std::fs::read_to_string(sb.log_path(leader))?;
    let sent: Vec<u64> = log
        .lines()
        .filter(|l| l.contains("snapshot sent") && l.contains(&format!("peer={follower}")))
        .filter_map(|l| {
            let b = l.split("bytes=").nth(1)?;
            b.split_whitespace().next()?.parse().ok()
        })
        .collect();
    let biggest = sent.iter().copied().max().unwrap_or(0);
    assert!(
        biggest > CAP,
        "largest snapshot sent: {biggest} bytes, not over the {CAP} cap"
    );
    let v = sb.cli_json(follower, &["user", "list"])?;
    let n = v.as_array().map(|a| a.len()).unwrap_or(0);
    assert!(n >= users, "the follower holds {n} users: {v}");
    Ok(())
}
