//! Mutual TLS between nodes: a 3-node cluster whose nodes issue their own cluster certificates
//! from a CA made here; then calls made by hand with forged identities: a certificate for node 2
//! sending Raft messages and routed items as node 3, joining as another node, a non-member
//! proposing writes, a certificate from another CA, no certificate, plaintext. Each is refused
//! with the right status, and the cluster carries on.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use herald_grpc::cluster::node_api_client::NodeApiClient;
use herald_grpc::cluster::{
    route_message, JoinRequest, ProposeRequest, RaftEnvelope, RouteMessage, StatusRequest,
};
use herald_tests::{Mode, Sandbox};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    SanType,
};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::Code;

struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

fn make_ca(name: &str) -> Result<(Ca, String)> {
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    p.distinguished_name.push(DnType::CommonName, name);
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    let key = KeyPair::generate()?;
    let cert = p.self_signed(&key)?;
    let key_pem = key.serialize_pem();
    let pem = cert.pem();
    let issuer = Issuer::new(p, key);
    Ok((Ca { issuer, pem }, key_pem))
}

/// A client certificate naming `node` (URI SAN), issued by `ca`: (cert PEM, key PEM).
fn node_cert(ca: &Ca, node: u64) -> Result<(String, String)> {
    let mut p = CertificateParams::new(vec!["localhost".to_string()])?;
    p.subject_alt_names
        .push(SanType::URI(format!("urn:herald:node:{node}").try_into()?));
    p.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ClientAuth,
        ExtendedKeyUsagePurpose::ServerAuth,
    ];
    let key = KeyPair::generate()?;
    let cert = p.signed_by(&key, &ca.issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn write(dir: &Path, name: &str, text: &str) -> Result<PathBuf> {
    let p = dir.join(name);
    std::fs::write(&p, text).with_context(|| format!("writing {}", p.display()))?;
    if name.ends_with("key.pem") {
        // herald refuses private keys others can read.
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(p)
}

async fn client(
    addr: &str,
    trust: &str,
    identity: Option<(String, String)>,
) -> Result<NodeApiClient<Channel>, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(trust));
    if let Some((c, k)) = identity {
        tls = tls.identity(Identity::from_pem(c, k));
    }
    let ch = Endpoint::from_shared(format!("https://{addr}"))?
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(5))
        .tls_config(tls)?
        .connect()
        .await?;
    Ok(NodeApiClient::new(ch))
}

fn raft_from(from: u64, to: u64) -> RaftEnvelope {
    RaftEnvelope {
        from,
        to,
        from_address: "127.0.0.1:1".into(),
        message: Vec::new(),
        ..Default::default()
    }
}

#[test]
fn nodes_talk_over_mutual_tls_and_forged_identities_are_refused() -> Result<()> {
    let mut sb = Sandbox::new();
    let (ca, ca_key) = make_ca("test cluster CA")?;
    let ca_path = write(sb.dir(), "cluster-ca.pem", &ca.pem)?;
    let ca_key_path = write(sb.dir(), "cluster-ca-key.pem", &ca_key)?;
    sb.extra_args = vec![
        "--cluster-ca".into(),
        ca_path.display().to_string(),
        "--cluster-ca-key".into(),
        ca_key_path.display().to_string(),
    ];
    sb.start_three()?;
    // Replication works over mutual TLS: a write through node 3 is read on node 1.
    sb.cli_ok(3, &["domain", "add", "tls.test"])?;
    sb.wait_converged(1, &[1, 2, 3])?;
    assert!(sb.domains(1)?.contains(&"tls.test".to_string()));

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let n1 = sb.cluster_addr(1);
    let as_node2 = node_cert(&ca, 2)?;
    let as_node9 = node_cert(&ca, 9)?;
    let (other_ca, _) = make_ca("another CA")?;
    let foreign = node_cert(&other_ca, 2)?;
    rt.block_on(async {
        // Positive control: node 2's certificate may ask for status.
        let mut c2 = client(&n1, &ca.pem, Some(as_node2.clone())).await?;
        c2.status(StatusRequest::default()).await?;

        // Raft messages claiming to come from node 3.
        let err = c2
            .raft(tokio_stream::iter(vec![raft_from(3, 1)]))
            .await
            .expect_err("a raft message from 'node 3' with node 2's certificate");
        assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
        assert!(err.message().contains("node 2"), "{}", err.message());

        // A routed item claiming to come from node 3.
        let forged = RouteMessage {
            from_node: 3,
            kind: Some(route_message::Kind::ToUser("<message/>".into())),
        };
        // The stream is accepted (its first acknowledgement says 0 handled); the forged item
        // ends it with PERMISSION_DENIED, nothing handled.
        let mut acks = c2
            .route(tokio_stream::iter(vec![forged]))
            .await?
            .into_inner();
        let mut err = None;
        for _ in 0..4 {
            let next = tokio::time::timeout(Duration::from_secs(10), acks.message());
            match next
                .await
                .context("the routed stream neither failed nor ended")?
            {
                Ok(Some(ack)) => assert_eq!(ack.handled, 0, "the forged item was handled"),
                Ok(None) => break,
                Err(e) => {
                    err = Some(e);
                    break;
                }
            }
        }
        let err = err.expect("a routed item from 'node 3' with node 2's certificate");
        assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");

        // Joining as a node the certificate does not name.
        let err = c2
            .join(JoinRequest {
                node_id: 5,
                cluster_address: "127.0.0.99:7470".into(),
                admin_address: String::new(),
            })
            .await
            .expect_err("join as node 5 with node 2's certificate");
        assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");

        // A valid certificate of a node that is not a member may not propose writes.
        let mut c9 = client(&n1, &ca.pem, Some(as_node9)).await?;
        let err = c9
            .propose(ProposeRequest {
                command: Vec::new(),
                origin_node: 9,
                group: 0,
            })
            .await
            .expect_err("a write proposed by non-member node 9");
        assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");

        // A certificate from another CA, or none: the handshake fails (no call gets through).
        for (what, identity) in [("another CA", Some(foreign)), ("no certificate", None)] {
            let res = match client(&n1, &ca.pem, identity).await {
                Ok(mut c) => c.status(StatusRequest::default()).await.map(|_| ()),
                Err(e) => Err(tonic::Status::unavailable(e.to_string())),
            };
            let err = res.expect_err(what);
            assert!(
                matches!(
                    err.code(),
                    Code::Unavailable | Code::Unknown | Code::Unauthenticated | Code::Cancelled
                ),
                "{what}: {err:?}"
            );
        }
        // Plaintext HTTP/2 to the TLS port: refused too.
        let plain = Endpoint::from_shared(format!("http://{n1}"))?
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(5))
            .connect()
            .await;
        if let Ok(ch) = plain {
            let res = NodeApiClient::new(ch)
                .status(StatusRequest::default())
                .await;
            assert!(res.is_err(), "a plaintext call was answered: {res:?}");
        }
        anyhow::Ok(())
    })?;

    // The refusals are counted, and the cluster is unharmed.
    let (_, metrics) = sb.http_get(1, "/metrics")?;
    assert!(
        metrics.contains("herald_cluster_identity_refusals_total{rpc=\"raft\"}"),
        "no raft identity refusal counted"
    );
    sb.cli_ok(2, &["domain", "add", "after.test"])?;
    sb.wait_converged(1, &[1, 2, 3])?;
    assert!(sb.domains(3)?.contains(&"after.test".to_string()));
    Ok(())
}

#[test]
fn a_node_certificate_for_another_node_is_refused_at_start() -> Result<()> {
    let mut sb = Sandbox::new();
    let (ca, _) = make_ca("test cluster CA")?;
    let ca_path = write(sb.dir(), "cluster-ca.pem", &ca.pem)?;
    let (cert, key) = node_cert(&ca, 2)?;
    let cert_path = write(sb.dir(), "n.pem", &cert)?;
    let key_path = write(sb.dir(), "n-key.pem", &key)?;
    sb.extra_args = vec![
        "--cluster-ca".into(),
        ca_path.display().to_string(),
        "--cluster-cert".into(),
        cert_path.display().to_string(),
        "--cluster-key".into(),
        key_path.display().to_string(),
    ];
    sb.start(1, Mode::Bootstrap)?;
    let st = sb.wait_exit(1, Duration::from_secs(20))?;
    assert!(!st.success());
    let log = std::fs::read_to_string(sb.log_path(1))?;
    assert!(log.contains("names another node"), "{log}");
    Ok(())
}
