use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::dev::{verify_node_cert, wanted_sans, CA_FILE, CA_KEY_FILE, NODE_FILE, NODE_KEY_FILE};
use super::*;

fn cfg_in(dir: &Path) -> NodeConfig {
    NodeConfig::for_test(1, IpAddr::V4(Ipv4Addr::LOCALHOST), dir.to_path_buf())
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn ca_of(m: &TlsMaterial) -> &Path {
    m.ca_pem_path
        .as_deref()
        .expect("development material has a CA")
}

/// Runs a TLS handshake over an in-memory pipe and moves a few bytes through it.
async fn handshake(
    server: Arc<rustls::ServerConfig>,
    client: Arc<rustls::ClientConfig>,
    name: &str,
) -> Result<(), String> {
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    let acceptor = tokio_rustls::TlsAcceptor::from(server);
    let connector = tokio_rustls::TlsConnector::from(client);
    let name = ServerName::try_from(name.to_string()).map_err(|e| e.to_string())?;
    let serve = async move {
        let mut tls = acceptor.accept(server_io).await?;
        tls.write_all(b"hello").await?;
        tls.shutdown().await
    };
    let connect = async move {
        let mut tls = connector.connect(name, client_io).await?;
        let mut buf = Vec::new();
        tls.read_to_end(&mut buf).await?;
        Ok::<_, std::io::Error>(buf)
    };
    let (served, received) = tokio::join!(serve, connect);
    let received = received.map_err(|e| format!("client: {e}"))?;
    served.map_err(|e| format!("server: {e}"))?;
    if received == b"hello" {
        Ok(())
    } else {
        Err(format!("client received {received:?}"))
    }
}

#[tokio::test]
async fn dev_certs_are_generated_and_handshake() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = cfg_in(dir.path());
    cfg.domains = vec!["example.test".into(), "localhost".into()];
    let m = load_or_generate(&cfg).expect("generate");
    let tls = dir.path().join("tls");
    for (file, mode) in [
        (CA_KEY_FILE, 0o600),
        (NODE_KEY_FILE, 0o600),
        (CA_FILE, 0o644),
    ] {
        let got = std::fs::metadata(tls.join(file))
            .expect("metadata")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(got, mode, "{file}");
    }
    assert_eq!(m.cert_path, tls.join(NODE_FILE));
    assert_eq!(m.key_path, tls.join(NODE_KEY_FILE));
    let server = server_config(&m).expect("server config");
    let client = client_config_trusting(ca_of(&m)).expect("client config");
    for name in ["localhost", "127.0.0.1", "example.test", "muc.example.test"] {
        handshake(server.clone(), client.clone(), name)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    let err = handshake(server, client, "other.invalid").await;
    assert!(err.is_err(), "a name outside the SANs must fail");
}

#[tokio::test]
async fn wrong_ca_is_rejected() {
    let a = tempfile::tempdir().expect("tempdir");
    let b = tempfile::tempdir().expect("tempdir");
    let ma = load_or_generate(&cfg_in(a.path())).expect("generate a");
    let mb = load_or_generate(&cfg_in(b.path())).expect("generate b");
    assert_ne!(
        read(ca_of(&ma)),
        read(ca_of(&mb)),
        "each data dir gets its own CA"
    );
    let server = server_config(&ma).expect("server config");
    let client = client_config_trusting(ca_of(&mb)).expect("client config");
    let err = handshake(server, client, "localhost")
        .await
        .expect_err("foreign CA");
    assert!(
        err.contains("UnknownIssuer") || err.contains("issuer"),
        "{err}"
    );
}

#[test]
fn restart_reuses_ca_and_node_cert() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = cfg_in(dir.path());
    let first = load_or_generate(&cfg).expect("first");
    let ca = read(ca_of(&first));
    let node = read(&first.cert_path);
    let second = load_or_generate(&cfg).expect("second");
    assert_eq!(read(ca_of(&second)), ca);
    assert_eq!(read(&second.cert_path), node);
    assert_eq!(second.cert_chain, first.cert_chain);
}

#[tokio::test]
async fn san_change_reissues_node_cert_with_same_ca() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = cfg_in(dir.path());
    let first = load_or_generate(&cfg).expect("first");
    let ca = read(ca_of(&first));
    let node = read(&first.cert_path);
    cfg.domains.push("new.example".into());
    let second = load_or_generate(&cfg).expect("second");
    assert_eq!(read(ca_of(&second)), ca, "same CA");
    assert_ne!(read(&second.cert_path), node, "new node certificate");
    let server = server_config(&second).expect("server config");
    let client = client_config_trusting(ca_of(&second)).expect("client config");
    handshake(server, client, "new.example")
        .await
        .expect("new name served");
    let second_bytes = read(&second.cert_path);
    // an advertise host is a SAN too
    cfg.advertise_host = Some("node1.example".into());
    assert!(wanted_sans(&cfg).contains(&"node1.example".to_string()));
    let third = load_or_generate(&cfg).expect("third");
    assert_ne!(read(&third.cert_path), second_bytes);
}

#[test]
fn wanted_sans_cover_domains_wildcards_and_addresses() {
    let mut cfg = cfg_in(Path::new("d"));
    cfg.bind = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    cfg.domains = vec!["Example.test".into()];
    assert_eq!(
        wanted_sans(&cfg),
        vec![
            "*.example.test",
            "127.0.0.1",
            "127.0.0.2",
            "example.test",
            "localhost"
        ]
    );
    cfg.bind = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
    assert!(!wanted_sans(&cfg).contains(&"0.0.0.0".to_string()));
}

#[test]
fn node_cert_validity_window() {
    let dir = tempfile::tempdir().expect("tempdir");
    let m = load_or_generate(&cfg_in(dir.path())).expect("generate");
    let now = SystemTime::now();
    verify_node_cert(ca_of(&m), &m.cert_chain, now).expect("valid now");
    verify_node_cert(
        ca_of(&m),
        &m.cert_chain,
        now + Duration::from_secs(86_400 * 300),
    )
    .expect("valid in 300 days");
    let err = verify_node_cert(
        ca_of(&m),
        &m.cert_chain,
        now + Duration::from_secs(86_400 * 400),
    )
    .expect_err("expired after 397 days");
    assert!(err.to_lowercase().contains("expired"), "{err}");
}

#[test]
fn configured_files_are_loaded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let dev = load_or_generate(&cfg_in(dir.path())).expect("generate");
    let mut cfg = cfg_in(&dir.path().join("other"));
    cfg.tls_cert = Some(dev.cert_path.clone());
    cfg.tls_key = Some(dev.key_path.clone());
    let m = load_or_generate(&cfg).expect("load");
    assert_eq!(m.ca_pem_path, None);
    assert_eq!(m.cert_chain, dev.cert_chain);
    assert!(
        !dir.path().join("other").exists(),
        "no dev CA when files are configured"
    );
}

#[test]
fn bad_files_give_clear_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let dev = load_or_generate(&cfg_in(dir.path())).expect("generate");
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a pem file\n").expect("write");
    let bad_b64 = dir.path().join("bad.pem");
    std::fs::write(
        &bad_b64,
        "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
    )
    .expect("write");
    let missing = dir.path().join("missing.pem");
    let ca_key = dir.path().join("tls").join(CA_KEY_FILE);

    let cases: Vec<(&str, &Path, &Path, &str)> = vec![
        ("missing cert", &missing, &dev.key_path, "missing.pem"),
        ("missing key", &dev.cert_path, &missing, "missing.pem"),
        (
            "no cert in file",
            &garbage,
            &dev.key_path,
            "contains no certificate",
        ),
        (
            "no key in file",
            &dev.cert_path,
            &garbage,
            "contains no private key",
        ),
        ("bad base64", &bad_b64, &dev.key_path, "invalid PEM in"),
        (
            "key of another cert",
            &dev.cert_path,
            &ca_key,
            "TLS configuration",
        ),
    ];
    for (name, cert, key, want) in cases {
        let mut cfg = cfg_in(dir.path());
        cfg.tls_cert = Some(cert.to_path_buf());
        cfg.tls_key = Some(key.to_path_buf());
        let err = load_or_generate(&cfg).expect_err(name).to_string();
        assert!(err.contains(want), "{name}: `{err}` lacks `{want}`");
    }
    let err = client_config_trusting(&garbage)
        .expect_err("no CA")
        .to_string();
    assert!(err.contains("contains no certificate"), "{err}");
}

#[test]
fn lone_ca_file_is_not_overwritten() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = cfg_in(dir.path());
    load_or_generate(&cfg).expect("generate");
    let key = dir.path().join("tls").join(CA_KEY_FILE);
    std::fs::remove_file(&key).expect("remove CA key");
    let err = load_or_generate(&cfg).expect_err("CA key gone").to_string();
    assert!(
        err.contains("ca.pem exists but ca-key.pem does not"),
        "{err}"
    );
    assert!(!key.exists());
}
