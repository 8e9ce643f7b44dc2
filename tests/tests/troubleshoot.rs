//! Real-process tests of `herald troubleshoot` and `herald log`: a 3-node cluster on
//! 127.x.y.z driven through the CLI exactly as an operator would.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use herald_tests::{wait_until, Sandbox};
use serde_json::Value;

/// DNS for the SRV checks: nothing listens on this port, so lookups fail fast (a warning,
/// never a failure) whatever the machine's resolver is.
const NO_DNS: &str = "127.0.0.1:9";

fn troubleshoot(sb: &Sandbox, via: u64) -> Result<(std::process::Output, Value)> {
    let out = sb.cli(
        via,
        &["troubleshoot", "-o", "json", "--dns-resolver", NO_DNS],
    )?;
    let text = String::from_utf8_lossy(&out.stdout);
    let v: Value = serde_json::from_str(&text).with_context(|| {
        format!(
            "troubleshoot JSON ({}): {text}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    Ok((out, v))
}

fn rows<'a>(v: &'a Value, check: &str) -> Vec<&'a Value> {
    v["checks"]
        .as_array()
        .map(|a| a.iter().filter(|c| c["check"] == check).collect())
        .unwrap_or_default()
}

#[test]
fn troubleshoot_passes_on_a_healthy_cluster_and_fails_when_a_node_dies() -> Result<()> {
    let mut sb = Sandbox::new();
    // The development certificates name the domains given at start; a domain added later
    // is not covered (the certificate-names check would fail, rightly).
    sb.extra_args = vec!["--domain".into(), "example.test".into()];
    sb.start_three()?;
    sb.cli_ok(1, &["routing-node", "set", "1", "2", "3"])?;

    // Healthy: nothing fails (the digests may differ for a moment after the writes).
    let (out, v) = wait_until("a healthy report", Duration::from_secs(20), || {
        let (out, v) = troubleshoot(&sb, 2)?;
        Ok((v["summary"]["fail"] == 0).then_some((out, v)))
    })?;
    assert!(out.status.success(), "{}: {v:#}", out.status);
    for c in v["checks"].as_array().expect("checks") {
        assert!(c["verdict"] == "pass" || c["verdict"] == "warn", "{c}");
        if c["verdict"] == "warn" {
            assert!(
                !c["fix"].as_str().unwrap_or("").is_empty(),
                "a warning without a fix: {c}"
            );
        }
    }
    assert_eq!(v["answered_by"], 2);
    let reach = rows(&v, "reachable");
    assert_eq!(reach.len(), 3, "{v:#}");
    assert!(reach.iter().all(|r| r["verdict"] == "pass"));
    for check in [
        "leader",
        "config-digest",
        "certificate-names",
        "certificate-chain",
        "certificate-expiry",
        "routing-node",
    ] {
        let r = rows(&v, check);
        assert!(
            !r.is_empty() && r.iter().all(|r| r["verdict"] == "pass"),
            "{check}: {r:?}"
        );
    }
    assert_eq!(rows(&v, "clock-skew").len(), 2);
    assert_eq!(rows(&v, "applied-index").len(), 2);
    // Unreachable DNS is a warning with the resolver in the fix.
    let dns = rows(&v, "dns-srv");
    assert_eq!(dns.len(), 3, "3 services x 1 domain: {dns:?}");
    assert!(dns.iter().all(|r| r["verdict"] == "warn"), "{dns:?}");

    // The table form says the same and exits 0.
    let table = sb.cli_ok(2, &["troubleshoot", "--dns-resolver", NO_DNS])?;
    assert!(
        table.contains("0 failed (gathered through node 2)"),
        "{table}"
    );

    // Kill node 3: reachability fails, the exit status is non-zero, the fix names the node.
    sb.kill9(3)?;
    let (out, v) = troubleshoot(&sb, 1)?;
    assert!(!out.status.success(), "exit status must be non-zero: {v:#}");
    assert_eq!(out.status.code(), Some(1));
    let reach = rows(&v, "reachable");
    let dead = reach
        .iter()
        .find(|r| r["subject"] == "node 3")
        .ok_or_else(|| anyhow!("no row for node 3: {v:#}"))?;
    assert_eq!(dead["verdict"], "fail");
    assert!(
        dead["fix"].as_str().unwrap_or("").contains("Start node 3"),
        "{dead}"
    );
    assert!(v["summary"]["fail"].as_u64().unwrap_or(0) >= 1);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("(see above)"), "{stderr}");
    // The routing fallback on node 3 is down: a warning, not a failure.
    let fb = rows(&v, "routing-fallback");
    assert!(
        fb.iter()
            .any(|r| r["subject"] == "node 3" && r["verdict"] == "warn"),
        "{fb:?}"
    );
    Ok(())
}

/// Sends garbage to the direct-TLS port and reads until the node closes the connection; the
/// node logs "client TLS handshake failed" at debug level before it closes.
fn failed_handshake(sb: &Sandbox, node: u64) -> Result<()> {
    let mut s = TcpStream::connect(format!("{}:5223", sb.ip(node)))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(b"this is not a TLS client hello\r\n\r\n")?;
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    Ok(())
}

fn count_in_log(sb: &Sandbox, node: u64, needle: &str) -> usize {
    std::fs::read_to_string(sb.log_path(node))
        .unwrap_or_default()
        .matches(needle)
        .count()
}

#[test]
fn log_levels_change_at_run_time() -> Result<()> {
    const LINE: &str = "client TLS handshake failed";
    let mut sb = Sandbox::new();
    sb.start_three()?;

    // Started with RUST_LOG=info,raft=warn: the debug line is not logged.
    let shown = sb.cli_json(1, &["log", "show"])?;
    assert_eq!(shown[0]["node_id"], 1);
    assert_eq!(shown[0]["filter"], "info,raft=warn");
    failed_handshake(&sb, 1)?;
    assert_eq!(count_in_log(&sb, 1, LINE), 0);

    // Raise xmpp to debug on node 1 only: the line appears, without a restart.
    let set = sb.cli_json(1, &["log", "set", "xmpp=debug"])?;
    assert_eq!(set[0]["filter"], "info,raft=warn,herald_node::xmpp=debug");
    failed_handshake(&sb, 1)?;
    wait_until("the debug line", Duration::from_secs(10), || {
        Ok((count_in_log(&sb, 1, LINE) == 1).then_some(()))
    })?;
    // Node 2 was not changed.
    failed_handshake(&sb, 2)?;
    assert_eq!(count_in_log(&sb, 2, LINE), 0);
    assert_eq!(
        sb.cli_json(2, &["log", "show"])?[0]["filter"],
        "info,raft=warn"
    );

    // Every node at once.
    let all = sb.cli_json(
        2,
        &["log", "set", "cluster=debug,xmpp=debug", "--all-nodes"],
    )?;
    let all = all.as_array().expect("array");
    assert_eq!(all.len(), 3, "{all:?}");
    for n in all {
        assert_eq!(n["error"], "", "{n}");
        assert!(
            n["filter"]
                .as_str()
                .unwrap_or("")
                .contains("herald_cluster=debug"),
            "{n}"
        );
    }
    failed_handshake(&sb, 3)?;
    wait_until("the debug line on node 3", Duration::from_secs(10), || {
        Ok((count_in_log(&sb, 3, LINE) == 1).then_some(()))
    })?;

    // A bad directive: INVALID_ARGUMENT with a clear message, nothing changed.
    let out = sb.cli(1, &["log", "set", "federation=loud"])?;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("INVALID_ARGUMENT"), "{err}");
    assert!(
        err.contains("invalid log directive `federation=loud`"),
        "{err}"
    );
    assert!(err.contains("COMPONENT=LEVEL"), "{err}");
    let out = sb.cli(1, &["log", "set", "debg", "--all-nodes"])?;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("INVALID_ARGUMENT"));
    assert_eq!(
        sb.cli_json(1, &["log", "show"])?[0]["filter"],
        "info,raft=warn,herald_node::xmpp=debug,herald_cluster=debug"
    );

    // Reset goes back to the start-up filter.
    let reset = sb.cli_json(1, &["log", "reset", "--all-nodes"])?;
    for n in reset.as_array().expect("array") {
        assert_eq!(n["filter"], "info,raft=warn", "{n}");
    }
    failed_handshake(&sb, 1)?;
    failed_handshake(&sb, 1)?;
    assert_eq!(count_in_log(&sb, 1, LINE), 1);
    Ok(())
}
