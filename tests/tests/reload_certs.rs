//! `herald cluster reload-certs`: certificate files in `--tls-cert-dir` are re-read on every
//! member without a restart — also a file replaced with its old modification time kept, which
//! the 5-second poll cannot see — and a file that does not load is reported while the
//! certificate in force stays.

use std::os::unix::fs::PermissionsExt as _;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use anyhow::{anyhow, Context, Result};
use herald_tests::{wait_until, Mode, Sandbox};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use serde_json::Value;

const DOMAIN: &str = "reload.example";

/// A CA-signed certificate for [`DOMAIN`] valid for `days`, written over `<dir>/<DOMAIN>.pem`
/// and `.key` with their modification times set to `mtime`.
fn write_cert(dir: &std::path::Path, days: i64, mtime: SystemTime) -> Result<()> {
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "reload test CA");
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(vec![DOMAIN.to_string()])?;
    let now = rcgen::date_time_ymd(2026, 1, 1);
    params.not_before = now;
    params.not_after = now + Duration::from_secs(days as u64 * 86_400);
    let cert = params.signed_by(&key, &issuer)?;
    for (ext, pem) in [("pem", cert.pem()), ("key", key.serialize_pem())] {
        let p = dir.join(format!("{DOMAIN}.{ext}"));
        std::fs::write(&p, pem)?;
        // Private keys readable by others are refused (start and reload).
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600))?;
        std::fs::File::options()
            .write(true)
            .open(&p)?
            .set_modified(mtime)?;
    }
    Ok(())
}

/// The `notAfter` of the certificate node `node` presents on direct TLS for [`DOMAIN`].
fn presented_not_after(sb: &Sandbox, node: u64) -> Result<String> {
    let s_client = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &format!("{}:5223", sb.ip(node)),
            "-servername",
            DOMAIN,
        ])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .context("running openssl s_client (openssl installed?)")?;
    let mut x509 = Command::new("openssl")
        .args(["x509", "-noout", "-enddate"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    use std::io::Write as _;
    x509.stdin
        .take()
        .ok_or_else(|| anyhow!("no stdin"))?
        .write_all(&s_client.stdout)?;
    let out = x509.wait_with_output()?;
    if !out.status.success() {
        return Err(anyhow!(
            "no certificate from node {node}: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The `not_after` of [`DOMAIN`] in one node's entry of a `reload-certs -o json` reply.
fn listed_not_after(node: &Value) -> Option<&str> {
    node["certificates"]
        .as_array()?
        .iter()
        .find(|c| c["name"] == DOMAIN)?["not_after"]
        .as_str()
}

#[test]
fn reload_certs_rereads_files_on_every_member_and_keeps_the_old_one_on_error() -> Result<()> {
    let mut sb = Sandbox::new();
    let dir = sb.dir().join("certs");
    std::fs::create_dir_all(&dir)?;
    let mtime = SystemTime::now() - Duration::from_secs(3_600);
    write_cert(&dir, 400, mtime)?;
    sb.extra_args = vec!["--tls-cert-dir".into(), dir.display().to_string()];
    sb.start_ready(1, Mode::Bootstrap)?;
    sb.start_ready(2, Mode::Join(1))?;
    sb.wait_converged(1, &[1, 2])?;

    let old = presented_not_after(&sb, 2)?;
    assert!(old.contains("Feb  5"), "400 days after 2026-01-01: {old}");

    // Replaced with the same modification time: the poll does not see it.
    write_cert(&dir, 800, mtime)?;
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(presented_not_after(&sb, 2)?, old, "the poll cannot see it");

    let reply = sb.cli_json(1, &["cluster", "reload-certs"])?;
    let nodes = reply.as_array().context("an array of nodes")?;
    assert_eq!(nodes.len(), 2, "{reply}");
    for n in nodes {
        assert_eq!(n["error"], "", "{reply}");
        assert!(n["reloaded"].as_u64() >= Some(1), "{reply}");
        assert_eq!(
            listed_not_after(n),
            Some("2028-03-11T00:00:00Z"),
            "800 days after 2026-01-01: {reply}"
        );
    }
    for node in [1, 2] {
        let new = wait_until(
            "the new certificate presented",
            Duration::from_secs(5),
            || {
                let now = presented_not_after(&sb, node)?;
                Ok((now != old).then_some(now))
            },
        )?;
        assert!(new.contains("Mar 11") && new.contains("2028"), "{new}");
    }

    // A broken file is reported (non-zero exit) and the certificate in force stays.
    std::fs::write(dir.join(format!("{DOMAIN}.pem")), "not a certificate")?;
    failed_reload_keeps_the_certificate(&sb, DOMAIN)?;
    assert!(presented_not_after(&sb, 1)?.contains("2028"));

    // A good pair whose key every user may read: refused on reload with the fix named, the
    // certificate in force stays; and a node will not start with it.
    write_cert(&dir, 1200, SystemTime::now())?;
    let key = dir.join(format!("{DOMAIN}.key"));
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644))?;
    failed_reload_keeps_the_certificate(&sb, "chmod 600")?;
    sb.terminate(2)?;
    sb.restart(2)?;
    let st = sb.wait_exit(2, Duration::from_secs(20))?;
    assert!(!st.success(), "node 2 started with a world-readable key");
    let log = std::fs::read_to_string(sb.log_path(2))?;
    assert!(
        log.contains("refusing to start") && log.contains("chmod 600"),
        "{log}"
    );
    Ok(())
}

/// `cluster reload-certs` fails (non-zero exit), every node lists a failure that mentions
/// `why`, and the 800-day certificate stays in force.
fn failed_reload_keeps_the_certificate(sb: &Sandbox, why: &str) -> Result<()> {
    let out = sb.cli(1, &["cluster", "reload-certs", "-o", "json"])?;
    assert!(!out.status.success(), "a failed file is a failure");
    let reply: Value = serde_json::from_slice(&out.stdout)?;
    for n in reply.as_array().context("nodes")? {
        let failures = n["failures"].as_array().context("failures")?;
        assert!(
            failures
                .iter()
                .any(|f| f.as_str().is_some_and(|f| f.contains(why))),
            "{reply}"
        );
        assert_eq!(listed_not_after(n), Some("2028-03-11T00:00:00Z"), "{reply}");
    }
    Ok(())
}
