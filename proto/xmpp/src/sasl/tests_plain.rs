//! Exchange-level tests: PLAIN, out-of-turn calls, size limits, key derivation.

use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};

use super::tests::{creds_for, need, rfc_creds, success, NONCE};
use super::*;

fn plain(msg: &[u8], creds: Option<Credentials>) -> Result<Step, SaslError> {
    let (mut server, step) = SaslServer::start(Mechanism::Plain, msg, b"")?;
    let Step::NeedCredentials { .. } = step else {
        panic!("expected NeedCredentials, got {step:?}");
    };
    let got = server.provide_credentials(creds);
    assert_eq!(server.step(b"x"), Err(SaslError::Aborted));
    got
}

#[test]
fn plain_table() {
    let sha1_only = || {
        Some(Credentials {
            scram_sha256: None,
            scram_sha1: creds_for("pw").scram_sha1,
        })
    };
    let m = |s: &str| SaslError::MalformedRequest(s.to_string());
    type Row = (&'static [u8], Option<Credentials>, Result<Step, SaslError>);
    let table: Vec<Row> = vec![
        (
            b"\0user\0pencil",
            Some(rfc_creds()),
            Ok(success("user", None, "")),
        ),
        (
            b"\0User\0pencil",
            Some(rfc_creds()),
            Ok(success("user", None, "")),
        ),
        (b"\0ivan\0pw", sha1_only(), Ok(success("ivan", None, ""))),
        (
            b"ivan@example.com\0ivan\0pw",
            sha1_only(),
            Ok(success("ivan", Some("ivan@example.com"), "")),
        ),
        (
            b"\0user\0Pencil",
            Some(rfc_creds()),
            Err(SaslError::NotAuthorized),
        ),
        (b"\0user\0pencil", None, Err(SaslError::NotAuthorized)),
        (
            b"\0user\0pencil",
            Some(Credentials::default()),
            Err(SaslError::NotAuthorized),
        ),
        (
            b"other@example.com\0user\0pencil",
            Some(rfc_creds()),
            Err(SaslError::InvalidAuthzid),
        ),
        (
            b"user@example.com/r\0user\0pencil",
            Some(rfc_creds()),
            Err(SaslError::InvalidAuthzid),
        ),
    ];
    for (msg, creds, want) in table {
        assert_eq!(
            plain(msg, creds),
            want,
            "{:?}",
            String::from_utf8_lossy(msg)
        );
    }
    let malformed: &[(&[u8], SaslError)] = &[
        (b"userpencil", m("PLAIN needs exactly two NUL separators")),
        (b"user\0pencil", m("PLAIN needs exactly two NUL separators")),
        (
            b"\0user\0pen\0cil",
            m("PLAIN needs exactly two NUL separators"),
        ),
        (b"\0\0pencil", m("empty authcid")),
        (b"\0user\0", m("empty password")),
        (b"\0us\xffer\0pencil", m("not UTF-8")),
        (b"\0user\0pen\xffcil", m("not UTF-8")),
        (
            b"\0us er\0pencil",
            m("forbidden character ' ' in the username"),
        ),
        (
            b"\0user@example.com\0pencil",
            m("forbidden character '@' in the username"),
        ),
    ];
    for (msg, want) in malformed {
        let got = SaslServer::start(Mechanism::Plain, msg, b"");
        assert_eq!(
            got.map(|(_, s)| s).err().as_ref(),
            Some(want),
            "{:?}",
            String::from_utf8_lossy(msg)
        );
    }
}

#[test]
fn plain_after_empty_challenge_and_password_preparation() {
    let (mut server, step) = SaslServer::start(Mechanism::Plain, b"", b"").expect("start");
    assert_eq!(step, Step::Challenge(Vec::new()));
    assert_eq!(server.provide_credentials(None), Err(SaslError::Aborted));
    // The exchange is over after an out-of-turn call.
    assert_eq!(server.step(b"\0user\0pencil"), Err(SaslError::Aborted));

    let (mut server, _) = SaslServer::start(Mechanism::Plain, b"", b"").expect("start");
    assert_eq!(
        server.step("\0jo\0a\u{00A0}b\u{00AD}c".as_bytes()),
        Ok(need("jo"))
    );
    let creds = Credentials {
        scram_sha256: Some(derive_scram_sha256("a bc", b"salt", 4096)),
        scram_sha1: None,
    };
    assert_eq!(
        server.provide_credentials(Some(creds)),
        Ok(success("jo", None, ""))
    );
}

#[test]
fn out_of_turn_calls_abort() {
    for mech in [
        Mechanism::ScramSha256,
        Mechanism::ScramSha1,
        Mechanism::Plain,
    ] {
        let first: &[u8] = if mech == Mechanism::Plain {
            b"\0a\0b"
        } else {
            b"n,,n=a,r=b"
        };
        // A response while credentials are awaited.
        let (mut s, _) = SaslServer::start(mech, first, NONCE).expect("start");
        assert_eq!(s.step(first), Err(SaslError::Aborted));
        assert_eq!(s.provide_credentials(None), Err(SaslError::Aborted));
        // Credentials before the first message.
        let (mut s, _) = SaslServer::start(mech, b"", NONCE).expect("start");
        assert_eq!(s.provide_credentials(None), Err(SaslError::Aborted));
        // After a failure.
        let (mut s, _) = SaslServer::start(mech, b"", NONCE).expect("start");
        assert!(matches!(
            s.step(b"garbage"),
            Err(SaslError::MalformedRequest(_))
        ));
        assert_eq!(s.step(first), Err(SaslError::Aborted));
        assert_eq!(
            format!("{s:?}"),
            format!("SaslServer {{ mechanism: {mech:?}, state: \"done\" }}")
        );
    }
}

#[test]
fn oversized_messages_are_malformed() {
    for mech in [
        Mechanism::ScramSha256,
        Mechanism::ScramSha1,
        Mechanism::Plain,
    ] {
        let big = vec![b'a'; MAX_MESSAGE + 1];
        let got = SaslServer::start(mech, &big, NONCE).map(|(_, s)| s);
        assert!(
            matches!(got, Err(SaslError::MalformedRequest(_))),
            "{mech:?}"
        );
        let (mut s, _) = SaslServer::start(mech, b"", NONCE).expect("start");
        assert!(
            matches!(s.step(&big), Err(SaslError::MalformedRequest(_))),
            "{mech:?}"
        );
        assert_eq!(s.step(b"\0a\0b"), Err(SaslError::Aborted));
    }
    // Exactly the limit is fine.
    let mut msg = b"\0kim\0".to_vec();
    msg.resize(MAX_MESSAGE, b'p');
    let password = String::from_utf8(msg[5..].to_vec()).expect("ascii");
    let creds = Credentials {
        scram_sha256: Some(derive_scram_sha256(&password, b"s", 2)),
        scram_sha1: None,
    };
    assert_eq!(plain(&msg, Some(creds)), Ok(success("kim", None, "")));
    // An oversized client-final after a good start.
    let (mut s, _) = SaslServer::start(Mechanism::ScramSha1, b"n,,n=a,r=b", NONCE).expect("start");
    assert!(matches!(
        s.provide_credentials(None),
        Ok(Step::Challenge(_))
    ));
    let got = s.step(&vec![b'c'; MAX_MESSAGE + 1]);
    assert!(matches!(got, Err(SaslError::MalformedRequest(_))));
}

#[test]
fn derive_matches_an_independent_computation() {
    let password = "correct horse battery staple";
    let salt = b"\x01\x02NaCl\xfe";
    let iterations = 4096;
    let s256 = derive_scram_sha256(password, salt, iterations);
    let mut salted = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), salt, iterations, &mut salted);
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&salted).expect("key");
    mac.update(b"Client Key");
    let client_key = mac.finalize().into_bytes();
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&salted).expect("key");
    mac.update(b"Server Key");
    assert_eq!(s256.stored_key, Sha256::digest(client_key).to_vec());
    assert_eq!(s256.server_key, mac.finalize().into_bytes().to_vec());
    assert_eq!(
        (s256.salt.as_slice(), s256.iterations),
        (&salt[..], iterations)
    );

    let s1 = derive_scram_sha1(password, salt, iterations);
    let mut salted = [0u8; 20];
    pbkdf2::pbkdf2_hmac::<Sha1>(password.as_bytes(), salt, iterations, &mut salted);
    let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(&salted).expect("key");
    mac.update(b"Client Key");
    let client_key = mac.finalize().into_bytes();
    let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(&salted).expect("key");
    mac.update(b"Server Key");
    assert_eq!(s1.stored_key, Sha1::digest(client_key).to_vec());
    assert_eq!(s1.server_key, mac.finalize().into_bytes().to_vec());
    assert_eq!((s1.salt.as_slice(), s1.iterations), (&salt[..], iterations));

    // The password preparation is applied: mapped forms derive the same secret.
    assert_eq!(
        derive_scram_sha256("a\u{3000}b", b"s", 2),
        derive_scram_sha256("a b", b"s", 2)
    );
    assert_eq!(
        derive_scram_sha1("x\u{FEFF}y", b"s", 2),
        derive_scram_sha1("xy", b"s", 2)
    );
}

#[test]
fn mechanism_names_and_conditions() {
    for mech in [
        Mechanism::ScramSha256,
        Mechanism::ScramSha1,
        Mechanism::Plain,
    ] {
        assert_eq!(Mechanism::from_name(mech.name()), Some(mech));
    }
    assert_eq!(Mechanism::from_name("scram-sha-1"), None);
    assert_eq!(Mechanism::from_name("SCRAM-SHA-256-PLUS"), None);
    assert_eq!(
        SaslError::MalformedRequest("x".into()).condition(),
        "malformed-request"
    );
    assert_eq!(SaslError::NotAuthorized.to_string(), "not-authorized");
}
