//! The audit log and secrets at rest, against real processes: admin changes made with a bearer
//! token and with an mTLS client certificate show up in `herald audit list` (who, what, when,
//! which node) with secrets redacted; calendar passwords and the dialback secret never reach
//! `raft.redb` in the clear; a joining node adopts the cluster's generated key; key files that
//! others can read are refused at start.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result};
use herald_tests::{wait_until, Mode, Sandbox};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};
use serde_json::Value;

const TOKEN: &str = "tok-audit-0123456789";
const CAL_PASSWORD: &str = "Cal-S3cret-pw-4242";
const DIALBACK: &str = "dialback-s3cret-0123456789abcdef";

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

fn audit(sb: &Sandbox, node: u64, extra: &[&str]) -> Result<Vec<Value>> {
    let mut args = vec!["audit", "list"];
    args.extend_from_slice(extra);
    let v = sb.cli_json(node, &args)?;
    v.as_array()
        .cloned()
        .context("audit list -o json is an array")
}

#[test]
fn token_changes_are_audited_and_secrets_sealed_at_rest() -> Result<()> {
    let mut sb = Sandbox::new();
    sb.extra_args = vec!["--admin-token".into(), TOKEN.into()];
    sb.admin_token = Some(TOKEN.into());
    sb.start_ready(1, Mode::Bootstrap)?;
    sb.start(2, Mode::Join(1))?;
    sb.wait_ready(2)?;
    sb.wait_converged(1, &[1, 2])?;

    // Embedded default: node 1 generated the key, node 2 adopted it at join; both 0600.
    let k1 = sb.data_dir(1).join("secrets.key");
    let k2 = sb.data_dir(2).join("secrets.key");
    let read_key = |p: &Path| -> Result<Option<Vec<u8>>> { Ok(std::fs::read(p).ok()) };
    let key2 = wait_until("node 2 adopts the key", Duration::from_secs(15), || {
        read_key(&k2)
    })?;
    assert_eq!(std::fs::read(&k1)?, key2, "every node holds the same key");
    for p in [&k1, &k2] {
        let mode = std::fs::metadata(p)?.permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", p.display());
    }

    let t0 = now_ms();
    sb.cli_ok(
        1,
        &[
            "calendar-gateway",
            "set-credentials",
            "--kind",
            "caldav",
            "--account",
            "svc@example.com",
            "--password",
            CAL_PASSWORD,
        ],
    )?;
    sb.cli_ok(
        2,
        &[
            "xmpp-federation",
            "set",
            "--security-mode",
            "optional",
            "--dialback-secret",
            DIALBACK,
        ],
    )?;
    sb.cli_ok(1, &["domain", "add", "audit.test"])?;
    sb.cli_ok(1, &["domain", "remove", "audit.test"])?;
    let t1 = now_ms();

    // Newest first, who / what / when / which node.
    let records = audit(&sb, 1, &[])?;
    let ours: Vec<&Value> = records.iter().take(4).collect();
    let ops: Vec<(&str, &str, &str)> = ours
        .iter()
        .map(|r| {
            (
                r["operation"].as_str().unwrap_or(""),
                r["kind"].as_str().unwrap_or(""),
                r["key"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        ops,
        [
            ("delete", "domain", "audit.test"),
            ("create", "domain", "audit.test"),
            ("create", "xmpp-federation", ""),
            ("create", "calendar-credentials", "caldav"),
        ],
        "{records:#?}"
    );
    for r in &ours {
        let actor = r["actor"].as_str().unwrap_or("");
        assert!(actor.starts_with("token:") && actor.len() == 14, "{r}");
        assert!(!actor.contains(TOKEN), "{r}");
        let at = r["at_ms"].as_i64().unwrap_or(0);
        assert!(at >= t0 - 1000 && at <= t1 + 1000, "when: {r}");
        assert!(r["at"].as_str().unwrap_or("").ends_with('Z'), "{r}");
    }
    assert_eq!(ours[2]["node_id"], 2, "received by node 2: {}", ours[2]);
    assert_eq!(ours[3]["node_id"], 1, "{}", ours[3]);
    let cal = ours[3]["summary"].as_str().unwrap_or("");
    assert!(
        cal.contains("svc@example.com") && cal.contains("••••"),
        "{cal}"
    );
    // Every node holds the same log; the filters work.
    let via2 = audit(&sb, 2, &[])?;
    assert_eq!(via2.first(), records.first());
    let only_cal = audit(&sb, 1, &["--kind", "calendar-credentials"])?;
    assert_eq!(only_cal.len(), 1, "{only_cal:#?}");
    assert_eq!(audit(&sb, 1, &["--limit", "2"])?.len(), 2);
    assert!(audit(&sb, 1, &["--since", "2999-01-01"])?.is_empty());

    // The table names the same things; no output anywhere shows a secret.
    let table = sb.cli_ok(1, &["audit", "list"])?;
    assert!(table.contains("calendar-credentials") && table.contains("token:"));
    let show = sb.cli_ok(
        1,
        &["calendar-gateway", "show-credentials", "--kind", "caldav"],
    )?;
    let fed = sb.cli_ok(1, &["xmpp-federation", "show", "-o", "json"])?;
    for out in [&table, &show, &fed] {
        assert!(
            !out.contains(CAL_PASSWORD) && !out.contains(DIALBACK) && !out.contains("enc:v1:"),
            "{out}"
        );
    }
    // A change that does not touch the dialback secret keeps it (sealed, still set).
    sb.cli_ok(
        1,
        &["xmpp-federation", "set", "--security-mode", "required"],
    )?;
    let fed: Value = sb.cli_json(1, &["xmpp-federation", "show"])?;
    assert_eq!(fed["dialback_secret"], "********", "{fed}");
    let last = &audit(&sb, 1, &["--limit", "1"])?[0];
    assert_eq!(last["operation"], "update", "{last}");
    assert!(
        last["summary"].as_str().unwrap_or("").contains("••••"),
        "{last}"
    );

    // The raw store files (the store and its snapshot files): sealed values only.
    for node in [1, 2] {
        let raw = store_files(&sb.data_dir(node))?;
        assert!(
            !contains(&raw, CAL_PASSWORD),
            "node {node}: calendar password in the clear"
        );
        assert!(
            !contains(&raw, DIALBACK),
            "node {node}: dialback secret in the clear"
        );
        assert!(contains(&raw, "enc:v1:"), "node {node}: no sealed value");
    }
    // And nowhere in the logs.
    for node in [1, 2] {
        let log = std::fs::read_to_string(sb.log_path(node))?;
        assert!(
            !log.contains(CAL_PASSWORD) && !log.contains(DIALBACK) && !log.contains(TOKEN),
            "node {node} logged a secret"
        );
        assert!(log.contains("secrets key"), "node {node}: {log}");
    }

    // Membership changes are audited too (node 3 is added, never started, removed).
    let addr3 = sb.cluster_addr(3);
    sb.cli_ok(
        1,
        &["cluster", "add-node", "--id", "3", "--address", &addr3],
    )?;
    sb.cli_ok(1, &["cluster", "remove-node", "--id", "3"])?;
    let last: Vec<(String, String)> = audit(&sb, 1, &["--kind", "node", "--limit", "2"])?
        .iter()
        .map(|r| {
            (
                r["operation"].as_str().unwrap_or("").to_string(),
                r["key"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert_eq!(
        last,
        [
            ("remove-node".to_string(), "3".to_string()),
            ("add-node".to_string(), "3".to_string())
        ]
    );

    // Metrics: records written.
    let (_, metrics) = sb.http_get(1, "/metrics")?;
    let written: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("herald_audit_records_written_total "))
        .and_then(|v| v.trim().parse().ok())
        .context("herald_audit_records_written_total exported")?;
    assert!(written >= 4.0, "{written}");
    Ok(())
}

/// An admin CA and one client certificate (CN ops-alice) it signed: (ca, cert, key) paths.
fn client_ca(dir: &Path) -> Result<(PathBuf, PathBuf, PathBuf)> {
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "audit admin CA");
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(vec!["alice.ops.test".to_string()])?;
    params
        .distinguished_name
        .push(DnType::CommonName, "ops-alice");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.signed_by(&key, &issuer)?;
    let files = [
        (dir.join("audit-ca.pem"), ca_cert.pem()),
        (dir.join("audit-client.pem"), cert.pem()),
        (dir.join("audit-client-key.pem"), key.serialize_pem()),
    ];
    for (p, pem) in &files {
        std::fs::write(p, pem)?;
    }
    Ok((files[0].0.clone(), files[1].0.clone(), files[2].0.clone()))
}

#[test]
fn certificate_changes_are_audited_with_the_certificate_subject() -> Result<()> {
    let mut sb = Sandbox::new();
    let (ca, cert, key) = client_ca(sb.dir())?;
    sb.extra_args = vec!["--admin-client-ca".into(), ca.display().to_string()];
    sb.start_ready(1, Mode::Bootstrap)?;
    let server_ca = sb.data_dir(1).join("tls/ca.pem").display().to_string();
    let (cert, key) = (cert.display().to_string(), key.display().to_string());
    let tls = [
        "--admin-ca",
        server_ca.as_str(),
        "--admin-cert",
        cert.as_str(),
        "--admin-key",
        key.as_str(),
    ];
    let with_tls = |rest: &[&str]| -> Vec<String> {
        tls.iter()
            .chain(rest.iter())
            .map(|s| s.to_string())
            .collect()
    };
    let run = |rest: &[&str]| -> Result<String> {
        let a = with_tls(rest);
        let refs: Vec<&str> = a.iter().map(String::as_str).collect();
        sb.cli_ok(1, &refs)
    };
    run(&["domain", "add", "mtls.test"])?;
    run(&[
        "calendar-gateway",
        "set-credentials",
        "--kind",
        "caldav",
        "--account",
        "svc@example.com",
        "--password",
        CAL_PASSWORD,
    ])?;
    let out = run(&["audit", "list", "-o", "json"])?;
    let v: Value = serde_json::from_str(&out)?;
    let recs = v.as_array().context("array")?;
    assert_eq!(recs[0]["kind"], "calendar-credentials", "{out}");
    assert_eq!(recs[1]["key"], "mtls.test", "{out}");
    for r in &recs[..2] {
        let actor = r["actor"].as_str().unwrap_or("");
        assert!(
            actor.starts_with("cert:") && actor.contains("CN=ops-alice"),
            "{r}"
        );
        assert!(actor.contains("DNS:alice.ops.test"), "{r}");
    }
    assert!(!out.contains(CAL_PASSWORD), "{out}");
    let raw = store_files(&sb.data_dir(1))?;
    assert!(!contains(&raw, CAL_PASSWORD));
    Ok(())
}

#[test]
fn readable_key_files_are_refused_at_start() -> Result<()> {
    // A secrets key file the world can read.
    let mut sb = Sandbox::new();
    let key = sb.dir().join("secrets.key");
    std::fs::write(&key, format!("{}\n", "ab".repeat(32)))?;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644))?;
    sb.extra_args = vec!["--secrets-key-file".into(), key.display().to_string()];
    sb.start(1, Mode::Bootstrap)?;
    let st = sb.wait_exit(1, Duration::from_secs(20))?;
    assert!(!st.success(), "started with a world-readable key file");
    let log = std::fs::read_to_string(sb.log_path(1))?;
    assert!(
        log.contains("secrets key file") && log.contains("chmod 600"),
        "{log}"
    );

    // The same file, 0600: the node starts and uses it (no key generated in the data dir).
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))?;
    let mut ok = Sandbox::new();
    ok.extra_args = sb.extra_args.clone();
    ok.start_ready(1, Mode::Bootstrap)?;
    assert!(!ok.data_dir(1).join("secrets.key").exists());
    let log = std::fs::read_to_string(ok.log_path(1))?;
    assert!(log.contains("configured key file"), "{log}");

    // A TLS private key the group can read.
    let mut tls = Sandbox::new();
    let k = KeyPair::generate()?;
    let c = CertificateParams::new(vec!["localhost".to_string()])?.self_signed(&k)?;
    let (cp, kp) = (tls.dir().join("n.pem"), tls.dir().join("n-key.pem"));
    std::fs::write(&cp, c.pem())?;
    std::fs::write(&kp, k.serialize_pem())?;
    std::fs::set_permissions(&kp, std::fs::Permissions::from_mode(0o640))?;
    tls.extra_args = vec![
        "--tls-cert".into(),
        cp.display().to_string(),
        "--tls-key".into(),
        kp.display().to_string(),
    ];
    tls.start(1, Mode::Bootstrap)?;
    let st = tls.wait_exit(1, Duration::from_secs(20))?;
    assert!(!st.success(), "started with a group-readable TLS key");
    let log = std::fs::read_to_string(tls.log_path(1))?;
    assert!(
        log.contains("TLS private key file") && log.contains("chmod 600"),
        "{log}"
    );
    Ok(())
}

/// The bytes of a node's Raft store and of its snapshot files, one after the other.
fn store_files(data_dir: &std::path::Path) -> Result<Vec<u8>> {
    let mut raw = std::fs::read(data_dir.join("raft.redb"))?;
    for ent in std::fs::read_dir(data_dir)? {
        let ent = ent?;
        if ent
            .file_name()
            .to_string_lossy()
            .starts_with("raft-snapshot-")
        {
            raw.extend(std::fs::read(ent.path())?);
        }
    }
    Ok(raw)
}
