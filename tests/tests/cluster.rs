//! Real-process tests of the replicated config store: clusters of `herald` processes on
//! 127.x.y.z, driven through the admin CLI exactly as an operator would.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use herald_tests::{wait_until, Mode, Sandbox};

fn three_nodes() -> Result<Sandbox> {
    let mut sb = Sandbox::new();
    sb.start_three()?;
    Ok(sb)
}

#[test]
fn single_node_embedded_default_and_dev_certificate() -> Result<()> {
    let mut sb = Sandbox::new();
    sb.start_ready(1, Mode::Bootstrap)?;
    assert_eq!(sb.domains(1)?, vec!["localhost".to_string()]);
    let st = sb.status(1)?;
    assert_eq!(st["leader_id"], 1);
    assert_eq!(st["nodes"][0]["role"], "leader");
    assert_eq!(st["nodes"][0]["address"], sb.cluster_addr(1));
    let ca = std::fs::read(sb.data_dir(1).join("tls/ca.pem"))?;
    assert!(String::from_utf8_lossy(&ca).contains("BEGIN CERTIFICATE"));
    let (code, body) = sb.http_get(1, "/healthz")?;
    assert_eq!(code, 200, "{body}");

    // Restart with the same command line: same CA, same config, same cluster.
    sb.cli_ok(1, &["domain", "add", "example.test"])?;
    let status = sb.terminate(1)?;
    assert!(
        status.success(),
        "SIGTERM should stop the node cleanly: {status}"
    );
    sb.restart(1)?;
    sb.wait_ready(1)?;
    assert_eq!(std::fs::read(sb.data_dir(1).join("tls/ca.pem"))?, ca);
    assert_eq!(
        sb.domains(1)?,
        vec!["example.test".to_string(), "localhost".to_string()]
    );
    Ok(())
}

#[test]
fn write_through_follower_read_everywhere() -> Result<()> {
    let sb = three_nodes()?;
    let leader = sb.leader(1)?;
    let follower = (1..=3).find(|n| *n != leader).unwrap();
    sb.cli_ok(follower, &["domain", "add", "example.test"])?;
    sb.cli_ok(
        follower,
        &[
            "user",
            "add",
            "alice@example.test",
            "--password",
            "s3cret-pw",
        ],
    )?;
    sb.cli_ok(
        follower,
        &["sip-domain", "add", "partner.test", "--type", "lync"],
    )?;
    for n in 1..=3 {
        wait_until("replicated domain", Duration::from_secs(10), || {
            Ok(sb
                .domains(n)?
                .contains(&"example.test".to_string())
                .then_some(()))
        })?;
        let user = sb.cli_json(n, &["user", "show", "alice@example.test"])?;
        assert_eq!(user["jid"], "alice@example.test");
        let home = user["home_node"].as_u64().unwrap_or(0);
        assert!((1..=3).contains(&home), "home_node {home}");
        let text = user.to_string();
        assert!(
            !text.contains("stored_key") && !text.contains("s3cret"),
            "{text}"
        );
        // The automatic ACL entry of the SIP domain is replicated too.
        let acls = sb.cli_json(n, &["acl", "list"])?;
        assert!(acls.to_string().contains("partner.test"), "{acls}");
    }
    sb.wait_converged(2, &[1, 2, 3])?;
    Ok(())
}

#[test]
fn acknowledged_writes_survive_leader_kill() -> Result<()> {
    let sb = three_nodes()?;
    let leader = sb.leader(1)?;
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let alive: Arc<Mutex<Vec<u64>>> = Arc::new(Mutex::new(vec![1, 2, 3]));
    let stop = Arc::new(AtomicBool::new(false));
    let sb = Arc::new(Mutex::new(sb));

    // A writer sends a stream of writes to live nodes, round robin, recording each OK.
    let writer = {
        let (acked, alive, stop, sb) = (acked.clone(), alive.clone(), stop.clone(), sb.clone());
        std::thread::spawn(move || {
            // Bounded in time and count. The count alone (it was 400) ran out before the new
            // leader was elected once writes became fast (admin responses no longer wait for
            // a delayed ACK), leaving nothing to acknowledge after the kill.
            let deadline = std::time::Instant::now() + Duration::from_secs(120);
            let mut i = 0u64;
            while !stop.load(Ordering::SeqCst) && i < 20_000 && std::time::Instant::now() < deadline
            {
                let nodes = alive.lock().unwrap().clone();
                let node = nodes[(i as usize) % nodes.len()];
                let name = format!("w{i}.test");
                let out = {
                    let sb = sb.lock().unwrap();
                    sb.cli(node, &["domain", "add", &name])
                };
                if let Ok(out) = out {
                    if out.status.success() {
                        acked.lock().unwrap().push(name);
                    }
                }
                i += 1;
            }
        })
    };
    wait_until("some acknowledged writes", Duration::from_secs(30), || {
        Ok((acked.lock().unwrap().len() >= 15).then_some(()))
    })?;
    alive.lock().unwrap().retain(|n| *n != leader);
    sb.lock().unwrap().kill9(leader)?;
    let before_kill = acked.lock().unwrap().len();
    wait_until("writes after the kill", Duration::from_secs(30), || {
        Ok((acked.lock().unwrap().len() >= before_kill + 15).then_some(()))
    })?;
    stop.store(true, Ordering::SeqCst);
    writer.join().unwrap();

    let mut sb = Arc::try_unwrap(sb)
        .map_err(|_| anyhow::anyhow!("sandbox still shared"))?
        .into_inner()
        .unwrap();
    sb.restart(leader)?;
    sb.wait_ready(leader)?;
    sb.wait_converged(leader, &[1, 2, 3])?;
    let acked: BTreeSet<String> = acked.lock().unwrap().iter().cloned().collect();
    assert!(acked.len() >= 30);
    for n in 1..=3 {
        let have: BTreeSet<String> = sb.domains(n)?.into_iter().collect();
        let missing: Vec<&String> = acked.difference(&have).collect();
        assert!(
            missing.is_empty(),
            "node {n} lost acknowledged writes: {missing:?}"
        );
    }
    Ok(())
}

#[test]
fn full_restart_keeps_config_and_digest() -> Result<()> {
    let mut sb = three_nodes()?;
    for i in 0..5 {
        sb.cli_ok(1 + i % 3, &["domain", "add", &format!("r{i}.test")])?;
    }
    sb.cli_ok(
        1,
        &["user", "add", "bob@r1.test", "--password", "pw-bob-123"],
    )?;
    let digest = sb.wait_converged(1, &[1, 2, 3])?;
    for n in 1..=3 {
        let st = sb.terminate(n)?;
        assert!(st.success(), "node {n} exit status {st}");
    }
    for n in 1..=3 {
        sb.restart(n)?;
    }
    for n in 1..=3 {
        sb.wait_ready(n)?;
    }
    let after = sb.wait_converged(2, &[1, 2, 3])?;
    assert_eq!(after, digest);
    assert!(sb.domains(3)?.contains(&"r4.test".to_string()));
    Ok(())
}

#[test]
fn add_and_remove_nodes() -> Result<()> {
    let mut sb = three_nodes()?;
    // Remove node 3: it stops by itself, cleanly.
    sb.cli_ok(1, &["cluster", "remove-node", "--id", "3"])?;
    let st = sb.wait_exit(3, Duration::from_secs(20))?;
    assert!(st.success(), "removed node exit status {st}");
    sb.wait_converged(1, &[1, 2])?;
    sb.cli_ok(2, &["domain", "add", "after-removal.test"])?;
    // Add node 4 by admin command, then start it with --join: it catches up.
    let addr4 = sb.cluster_addr(4);
    sb.cli_ok(
        2,
        &["cluster", "add-node", "--id", "4", "--address", &addr4],
    )?;
    sb.start(4, Mode::Join(2))?;
    sb.wait_ready(4)?;
    sb.wait_converged(1, &[1, 2, 4])?;
    assert!(sb.domains(4)?.contains(&"after-removal.test".to_string()));
    // The last voter cannot be removed; an unknown node is NOT_FOUND.
    let out = sb.cli(1, &["cluster", "remove-node", "--id", "9"])?;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a member"));
    // Down to one node: each removed node waits until it is out of the user-state group too,
    // so the survivor keeps a user-state group with a quorum (it would lose its leader, with
    // check-quorum, if the group still counted a stopped node).
    for (gone, left) in [(4, &[1, 2][..]), (2, &[1][..])] {
        sb.cli_ok(1, &["cluster", "remove-node", "--id", &gone.to_string()])?;
        let st = sb.wait_exit(gone, Duration::from_secs(20))?;
        assert!(st.success(), "removed node {gone} exit status {st}");
        sb.wait_converged(1, left)?;
    }
    std::thread::sleep(Duration::from_secs(3));
    let st = sb.status(1)?;
    assert_eq!(st["users_leader_id"], 1, "{st}");
    assert_eq!(st["nodes"][0]["users_group"]["role"], "leader", "{st}");
    Ok(())
}

#[test]
fn admin_errors_are_clear() -> Result<()> {
    let mut sb = Sandbox::new();
    sb.start_ready(1, Mode::Bootstrap)?;
    let err = |args: &[&str]| -> Result<String> {
        let out = sb.cli(1, args)?;
        assert!(!out.status.success(), "{args:?} should fail");
        Ok(String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let e = err(&["domain", "add", "bad_domain!"])?;
    assert!(e.to_lowercase().contains("invalid"), "{e}");
    let e = err(&["domain", "remove", "nope.test"])?;
    assert!(e.to_lowercase().contains("not"), "{e}");
    let e = err(&[
        "user",
        "add",
        "carol@unknown.test",
        "--password",
        "pw-carol-1",
    ])?;
    assert!(!e.is_empty());
    sb.cli_ok(1, &["domain", "add", "rev.test"])?;
    let e = err(&["domain", "remove", "rev.test", "--revision", "1"])?;
    assert!(e.to_lowercase().contains("revision"), "{e}");
    // The domain is still there: a rejected write changes nothing.
    assert!(sb.domains(1)?.contains(&"rev.test".to_string()));
    let e = err(&[
        "static-route",
        "add",
        "r1",
        "--pattern",
        ".example.com",
        "--next-hop",
        "h.test",
    ])?;
    assert!(e.contains("destination_pattern"), "{e}");
    Ok(())
}

#[test]
fn admin_token_is_enforced() -> Result<()> {
    let mut sb = Sandbox::new();
    sb.extra_args = vec!["--admin-token".into(), "tok-123456".into()];
    sb.start_ready(1, Mode::Bootstrap)?;
    let out = sb.cli(1, &["domain", "list"])?;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("token"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    sb.admin_token = Some("tok-123456".into());
    assert_eq!(sb.domains(1)?, vec!["localhost".to_string()]);
    Ok(())
}

/// A token that cannot travel in a header used to switch the admin check off (fail-open); now
/// the node refuses to start and says why.
#[test]
fn admin_token_that_is_not_a_header_value_refuses_to_start() -> Result<()> {
    for (token, why) in [
        ("tok 123456", "cannot be sent in a header"),
        ("tok-12345\u{7f}", "cannot be sent in a header"),
        ("short", "shorter than 8"),
    ] {
        let mut sb = Sandbox::new();
        sb.extra_args = vec!["--admin-token".into(), token.into()];
        sb.start(1, Mode::Bootstrap)?;
        let st = sb.wait_exit(1, Duration::from_secs(20))?;
        assert_eq!(st.code(), Some(2), "{token:?}: exit status {st:?}");
        let log = std::fs::read_to_string(sb.log_path(1))?;
        assert!(
            log.contains("admin_token") && log.contains(why),
            "{token:?}: {log}"
        );
    }
    Ok(())
}

#[test]
fn metrics_pass_promtool() -> Result<()> {
    let mut sb = Sandbox::new();
    sb.start_ready(1, Mode::Bootstrap)?;
    sb.cli_ok(1, &["domain", "add", "m.test"])?;
    let (code, body) = sb.http_get(1, "/metrics")?;
    assert_eq!(code, 200);
    for name in [
        "herald_raft_term",
        "herald_raft_applied_index",
        "herald_raft_proposal_duration_seconds",
        "herald_admin_requests_total",
        "process_resident_memory_bytes",
    ] {
        assert!(body.contains(name), "missing {name} in /metrics");
    }
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| {
            anyhow::anyhow!(
                "promtool not found ({e}); the test command installs Debian's prometheus"
            )
        })?;
    use std::io::Write as _;
    child.stdin.take().unwrap().write_all(body.as_bytes())?;
    let out = child.wait_with_output()?;
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}
