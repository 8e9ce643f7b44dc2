//! Tests of the admin service's helpers.

use super::*;
use herald_cluster::client::constant_time_eq;
use herald_grpc::config::{CalendarCredentials, ScramSecret};

#[test]
fn scrub_removes_secrets() {
    let u = scrub(ConfigObject::new(Body::User(User {
        jid: "a@b".into(),
        scram_sha256: Some(ScramSecret::default()),
        scram_sha1: Some(ScramSecret::default()),
        ..Default::default()
    })));
    match u.body {
        Some(Body::User(u)) => assert!(u.scram_sha1.is_none() && u.scram_sha256.is_none()),
        _ => panic!(),
    }
    let c = scrub(ConfigObject::new(Body::CalendarCredentials(
        CalendarCredentials {
            password: "hunter2".into(),
            ..Default::default()
        },
    )));
    match c.body {
        Some(Body::CalendarCredentials(c)) => assert_eq!(c.password, MASK),
        _ => panic!(),
    }
}

#[test]
fn actors_name_tokens_by_fingerprint_and_clients_by_certificate() {
    let a = token_actor("tok-123456");
    assert!(a.starts_with("token:") && a.len() == 14, "{a}");
    assert!(!a.contains("tok-123456"));
    assert_eq!(a, token_actor("tok-123456"));
    assert_ne!(a, token_actor("tok-123457"));
    let mut params = rcgen::CertificateParams::new(vec!["ops.example".into()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "ops-alice");
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let c = cert_actor(cert.der());
    assert!(c.starts_with("cert:") && c.contains("CN=ops-alice"), "{c}");
    assert!(c.contains("san=DNS:ops.example"), "{c}");
    assert_eq!(cert_actor(b"garbage"), "cert:<unparsable>");
}

#[test]
fn addresses_and_kinds() {
    assert!(check_address("127.0.0.1:7470").is_ok());
    assert!(check_address("node-1.herald:7470").is_ok());
    assert!(check_address("127.0.0.1").is_err());
    assert!(check_address(":7470").is_err());
    assert!(check_address("h:0").is_err());
    assert!(kind_of(0).is_err());
    assert!(kind_of(999).is_err());
    assert_eq!(kind_of(1).unwrap(), ObjectKind::Domain);
    assert!(constant_time_eq(b"Bearer x", b"Bearer x"));
    assert!(!constant_time_eq(b"Bearer x", b"Bearer y"));
    assert!(!constant_time_eq(b"Bearer", b"Bearer x"));
}

fn call(check: &mut AuthCheck, header: Option<&str>) -> Result<(), tonic::Code> {
    use tonic::service::Interceptor as _;
    let mut req = Request::new(());
    if let Some(h) = header {
        req.metadata_mut()
            .insert("authorization", h.parse().expect("test header"));
    }
    check.call(req).map(|_| ()).map_err(|s| s.code())
}

#[test]
fn auth_check_refuses_missing_wrong_and_malformed() {
    let mut check = AuthCheck::new(Some("tok-123456"));
    assert_eq!(call(&mut check, None), Err(tonic::Code::Unauthenticated));
    assert_eq!(
        call(&mut check, Some("Bearer tok-123457")),
        Err(tonic::Code::Unauthenticated)
    );
    assert_eq!(
        call(&mut check, Some("tok-123456")),
        Err(tonic::Code::Unauthenticated)
    );
    assert_eq!(
        call(&mut check, Some("Bearer tok-1234567")),
        Err(tonic::Code::Unauthenticated)
    );
    assert_eq!(call(&mut check, Some("Bearer tok-123456")), Ok(()));
    // No token configured: the agent allows this on loopback or behind mutual TLS only.
    assert_eq!(call(&mut AuthCheck::new(None), None), Ok(()));
}

/// The old check parsed `Bearer {token}` into a header value and dropped the check when
/// that failed: a token with a newline turned authentication off. Now it refuses everyone.
#[test]
fn a_token_that_is_not_a_header_value_fails_closed() {
    for token in ["tok\n123456", "jeton-sécurité", "tok\u{0}123456"] {
        let mut check = AuthCheck::new(Some(token));
        assert_eq!(
            call(&mut check, None),
            Err(tonic::Code::Unauthenticated),
            "{token:?}"
        );
        assert_eq!(
            call(&mut check, Some("Bearer tok")),
            Err(tonic::Code::Unauthenticated),
            "{token:?}"
        );
    }
}
