//! The admin API behind mutual TLS (`--admin-client-ca`): only clients holding a certificate
//! from that CA get in.

use anyhow::Result;
use herald_tests::{Mode, Sandbox};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};

/// A CA and one client certificate it signed, written as PEM files: (ca, cert, key).
fn client_ca(dir: &std::path::Path, name: &str) -> Result<(String, String, String)> {
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, format!("{name} admin CA"));
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(vec!["operator".to_string()])?;
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.signed_by(&key, &issuer)?;
    let paths = [
        (format!("{name}-ca.pem"), ca_cert.pem()),
        (format!("{name}-client.pem"), cert.pem()),
        (format!("{name}-client-key.pem"), key.serialize_pem()),
    ];
    let mut out = Vec::new();
    for (file, pem) in paths {
        let p = dir.join(file);
        std::fs::write(&p, pem)?;
        out.push(p.display().to_string());
    }
    Ok((out[0].clone(), out[1].clone(), out[2].clone()))
}

#[test]
fn admin_requires_a_client_certificate_from_the_configured_ca() -> Result<()> {
    let mut sb = Sandbox::new();
    let (ca, cert, key) = client_ca(sb.dir(), "good")?;
    let (_, bad_cert, bad_key) = client_ca(sb.dir(), "other")?;
    sb.extra_args = vec!["--admin-client-ca".into(), ca];
    sb.start_ready(1, Mode::Bootstrap)?;
    let server_ca = sb.data_dir(1).join("tls/ca.pem").display().to_string();

    let ok = sb.cli_ok(
        1,
        &[
            "--admin-ca",
            &server_ca,
            "--admin-cert",
            &cert,
            "--admin-key",
            &key,
            "domain",
            "list",
            "-o",
            "json",
        ],
    )?;
    assert!(ok.contains("localhost"), "{ok}");

    for args in [
        // No client certificate.
        vec!["--admin-ca", server_ca.as_str(), "domain", "list"],
        // A certificate from another CA.
        vec![
            "--admin-ca",
            server_ca.as_str(),
            "--admin-cert",
            bad_cert.as_str(),
            "--admin-key",
            bad_key.as_str(),
            "domain",
            "list",
        ],
        // Plaintext.
        vec!["domain", "list"],
    ] {
        let out = sb.cli(1, &args)?;
        assert!(!out.status.success(), "{args:?} should be refused");
    }
    Ok(())
}
