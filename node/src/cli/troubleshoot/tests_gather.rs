//! The gathering side: chain parsing of real (rcgen) certificates, SRV lookups through
//! `--dns-resolver` against a fake DNS server on 127.0.0.1 (real UDP, real hickory resolver),
//! and `--probe` against a real TLS listener.

use std::net::Ipv4Addr;

use hickory_resolver::proto::op::{Message, OpCode, ResponseCode};
use hickory_resolver::proto::rr::rdata::{A, SRV};
use hickory_resolver::proto::rr::{Name, RData, Record, RecordType};

use super::certs::parse_chain;
use super::facts::{ChainTop, DnsAnswer, SrvRecord};
use super::gather::{resolver, srv, Options};

/// Answers `_xmpp-server._tcp.example.test` SRV and `xmpp1.example.test` A; NXDOMAIN else.
async fn fake_dns() -> std::net::SocketAddr {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = sock.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        loop {
            let Ok((n, from)) = sock.recv_from(&mut buf).await else {
                return;
            };
            let Ok(q) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let mut r = Message::response(q.metadata.id, OpCode::Query);
            let mut found = false;
            for query in &q.queries {
                r.add_query(query.clone());
                let name = query.name().to_ascii().to_ascii_lowercase();
                match (name.as_str(), query.query_type()) {
                    ("_xmpp-server._tcp.example.test.", RecordType::SRV) => {
                        let target = Name::from_ascii("xmpp1.example.test.").expect("name");
                        r.add_answer(Record::from_rdata(
                            query.name().clone(),
                            60,
                            RData::SRV(SRV::new(10, 5, 5269, target)),
                        ));
                        found = true;
                    }
                    ("xmpp1.example.test.", RecordType::A) => {
                        r.add_answer(Record::from_rdata(
                            query.name().clone(),
                            60,
                            RData::A(A(Ipv4Addr::new(127, 0, 0, 7))),
                        ));
                        found = true;
                    }
                    ("xmpp1.example.test.", _) => found = true,
                    _ => {}
                }
            }
            if !found {
                r.metadata.response_code = ResponseCode::NXDomain;
            }
            if let Ok(bytes) = r.to_vec() {
                let _ = sock.send_to(&bytes, from).await;
            }
        }
    });
    addr
}

#[tokio::test]
async fn srv_lookups_go_to_the_chosen_resolver() {
    let addr = fake_dns().await;
    let dns = resolver(&Options {
        dns_resolver: Some(addr.to_string()),
        ..Default::default()
    })
    .expect("resolver");
    assert_eq!(
        srv(&dns, "_xmpp-server._tcp.example.test").await,
        DnsAnswer::Records(vec![SrvRecord {
            priority: 10,
            weight: 5,
            port: 5269,
            target: "xmpp1.example.test".into(),
            addrs: vec!["127.0.0.7".parse().expect("ip")],
        }])
    );
    assert_eq!(
        srv(&dns, "_sipfederationtls._tcp.example.test").await,
        DnsAnswer::NoRecords
    );
}

#[tokio::test]
async fn a_silent_resolver_is_a_failed_lookup_not_a_missing_record() {
    // Bound but never answering: the lookup times out (one 2-second attempt).
    let silent = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let dns = resolver(&Options {
        dns_resolver: Some(silent.local_addr().expect("addr").to_string()),
        ..Default::default()
    })
    .expect("resolver");
    assert!(matches!(
        srv(&dns, "_xmpp-server._tcp.example.test").await,
        DnsAnswer::Failed(_)
    ));
}

/// `--probe` against a real TLS listener: the peer's certificate is read whatever its issuer;
/// a closed port is a failed probe.
#[tokio::test]
async fn probe_reads_the_peer_certificate() {
    use super::facts::Probe;
    let key = rcgen::KeyPair::generate().expect("key");
    let params =
        rcgen::CertificateParams::new(vec!["sip.partner.test".to_string()]).expect("params");
    let cert = params.self_signed(&key).expect("cert");
    let der = rustls::pki_types::CertificateDer::from(cert.der().to_vec());
    let pk = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).expect("key der");
    let server = rustls::ServerConfig::builder_with_provider(crate::tls::provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![der], pk)
        .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(server));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        if let Ok((tcp, _)) = listener.accept().await {
            let _ = acceptor.accept(tcp).await;
        }
    });
    match super::gather::probe("127.0.0.1".into(), port).await {
        Probe::Connected { peer, .. } => {
            assert_eq!(peer.dns_names, vec!["sip.partner.test".to_string()])
        }
        other => panic!("{other:?}"),
    }
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let closed_port = closed.local_addr().expect("addr").port();
    drop(closed);
    assert!(matches!(
        super::gather::probe("127.0.0.1".into(), closed_port).await,
        Probe::Failed { .. }
    ));
}

/// rcgen certificates: a CA, a leaf it signs, and a stranger.
fn chain_material() -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().expect("key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Test CA");
    let ca = ca_params.self_signed(&ca_key).expect("ca");
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate().expect("key");
    let leaf_params = CertificateParams::new(vec!["example.com".to_string()]).expect("params");
    let leaf = leaf_params.signed_by(&leaf_key, &issuer).expect("leaf");
    let other_key = KeyPair::generate().expect("key");
    let mut other_params = CertificateParams::new(Vec::<String>::new()).expect("params");
    other_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Other CA");
    let other = other_params.self_signed(&other_key).expect("other");
    (ca.der().to_vec(), leaf.der().to_vec(), other.der().to_vec())
}

#[test]
fn chains_are_parsed_and_linked() {
    let (ca, leaf, other) = chain_material();
    let anchored = parse_chain(std::slice::from_ref(&leaf), std::slice::from_ref(&ca));
    assert_eq!(anchored.error, None);
    assert!(
        matches!(&anchored.top, ChainTop::Anchored(a) if a.contains("Test CA")),
        "{anchored:?}"
    );
    assert_eq!(anchored.chain[0].dns_names, vec!["example.com".to_string()]);

    let unknown = parse_chain(std::slice::from_ref(&leaf), std::slice::from_ref(&other));
    assert!(
        matches!(&unknown.top, ChainTop::UnknownIssuer(i) if i.contains("Test CA")),
        "{unknown:?}"
    );

    let full = parse_chain(&[leaf.clone(), ca.clone()], &[]);
    assert_eq!(full.links, vec![true]);
    assert_eq!(full.top, ChainTop::SelfSigned);

    let reversed = parse_chain(&[ca.clone(), leaf.clone()], &[]);
    assert_eq!(reversed.links, vec![false]);

    let wrong = parse_chain(&[leaf, other], &[]);
    assert_eq!(wrong.links, vec![false]);

    assert!(parse_chain(&[], &[]).error.is_some());
    assert!(parse_chain(&[b"junk".to_vec()], &[]).error.is_some());
}
