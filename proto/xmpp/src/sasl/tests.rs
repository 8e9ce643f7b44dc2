//! Exchange-level SCRAM tests: the RFC exchanges verbatim, failures, tampering, authzid rules.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};

use super::*;

const SHA1_CLIENT_FIRST: &str = "n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL";
const SHA1_SERVER_NONCE: &str = "3rfcNHYJY1ZVvWVs7j";
const SHA1_SERVER_FIRST: &str =
    "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096";
const SHA1_CLIENT_FINAL: &str =
    "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=";
const SHA1_SERVER_FINAL: &str = "v=rmF9pqV8S7suAoZWja4dJRkFsKQ=";

const SHA256_CLIENT_FIRST: &str = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
const SHA256_SERVER_NONCE: &str = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
const SHA256_SERVER_FIRST: &str =
    "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
const SHA256_CLIENT_FINAL: &str = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
const SHA256_SERVER_FINAL: &str = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

/// A server nonce for tests that do not replay an RFC exchange.
pub(super) const NONCE: &[u8] = b"0123456789abcdefghij";

fn b64(s: &str) -> Vec<u8> {
    B64.decode(s).expect("test base64")
}

/// The stored credentials of the RFC user ("user" / "pencil" with the RFC's salts).
pub(super) fn rfc_creds() -> Credentials {
    Credentials {
        scram_sha256: Some(derive_scram_sha256(
            "pencil",
            &b64("W22ZaJ0SNY7soEsUEjb6gQ=="),
            4096,
        )),
        scram_sha1: Some(derive_scram_sha1("pencil", &b64("QSXCR+Q6sek8bf92"), 4096)),
    }
}

pub(super) fn need(authcid: &str) -> Step {
    Step::NeedCredentials {
        authcid: authcid.to_string(),
    }
}

pub(super) fn success(authcid: &str, authzid: Option<&str>, additional: &str) -> Step {
    Step::Success {
        authcid: authcid.to_string(),
        authzid: authzid.map(str::to_string),
        additional: additional.as_bytes().to_vec(),
    }
}

fn challenge(s: &str) -> Step {
    Step::Challenge(s.as_bytes().to_vec())
}

/// Replays one RFC exchange, with the client-first as initial response or after an empty
/// challenge.
fn rfc_exchange(
    mech: Mechanism,
    msgs: [&str; 4],
    server_nonce: &str,
    initial: bool,
) -> Result<(), SaslError> {
    let [client_first, server_first, client_final, server_final] = msgs;
    let mut server = if initial {
        let (server, step) =
            SaslServer::start(mech, client_first.as_bytes(), server_nonce.as_bytes())?;
        assert_eq!(step, need("user"));
        server
    } else {
        let (mut server, step) = SaslServer::start(mech, b"", server_nonce.as_bytes())?;
        assert_eq!(step, Step::Challenge(Vec::new()));
        assert_eq!(server.step(client_first.as_bytes())?, need("user"));
        server
    };
    assert_eq!(
        server.provide_credentials(Some(rfc_creds()))?,
        challenge(server_first)
    );
    assert_eq!(
        server.step(client_final.as_bytes())?,
        success("user", None, server_final)
    );
    assert_eq!(server.step(b""), Err(SaslError::Aborted));
    assert_eq!(server.provide_credentials(None), Err(SaslError::Aborted));
    Ok(())
}

#[test]
fn rfc5802_sha1_exchange_verbatim() {
    let msgs = [
        SHA1_CLIENT_FIRST,
        SHA1_SERVER_FIRST,
        SHA1_CLIENT_FINAL,
        SHA1_SERVER_FINAL,
    ];
    for initial in [true, false] {
        assert_eq!(
            rfc_exchange(Mechanism::ScramSha1, msgs, SHA1_SERVER_NONCE, initial),
            Ok(())
        );
    }
}

#[test]
fn rfc7677_sha256_exchange_verbatim() {
    let msgs = [
        SHA256_CLIENT_FIRST,
        SHA256_SERVER_FIRST,
        SHA256_CLIENT_FINAL,
        SHA256_SERVER_FINAL,
    ];
    for initial in [true, false] {
        assert_eq!(
            rfc_exchange(Mechanism::ScramSha256, msgs, SHA256_SERVER_NONCE, initial),
            Ok(())
        );
    }
}

/// An independent SCRAM client computation (hmac/sha/pbkdf2 used directly).
fn client_proof(
    mech: Mechanism,
    password: &str,
    salt: &[u8],
    iterations: u32,
    auth: &str,
) -> String {
    fn mac<M: Mac + hmac::digest::KeyInit>(key: &[u8], msg: &[u8]) -> Vec<u8> {
        let mut m = <M as hmac::digest::KeyInit>::new_from_slice(key).expect("hmac key");
        m.update(msg);
        m.finalize().into_bytes().to_vec()
    }
    let (client_key, stored_key, sig) = match mech {
        Mechanism::ScramSha1 => {
            let mut salted = [0u8; 20];
            pbkdf2::pbkdf2_hmac::<Sha1>(password.as_bytes(), salt, iterations, &mut salted);
            let ck = mac::<Hmac<Sha1>>(&salted, b"Client Key");
            let sk = Sha1::digest(&ck).to_vec();
            let sig = mac::<Hmac<Sha1>>(&sk, auth.as_bytes());
            (ck, sk, sig)
        }
        _ => {
            let mut salted = [0u8; 32];
            pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), salt, iterations, &mut salted);
            let ck = mac::<Hmac<Sha256>>(&salted, b"Client Key");
            let sk = Sha256::digest(&ck).to_vec();
            let sig = mac::<Hmac<Sha256>>(&sk, auth.as_bytes());
            (ck, sk, sig)
        }
    };
    assert_eq!(stored_key.len(), sig.len());
    let proof: Vec<u8> = client_key.iter().zip(&sig).map(|(a, b)| a ^ b).collect();
    B64.encode(proof)
}

/// Parses a server-first message into (nonce, salt, iterations).
fn parse_server_first(msg: &[u8]) -> (String, Vec<u8>, u32) {
    let s = std::str::from_utf8(msg).expect("utf-8");
    let mut it = s.split(',');
    let r = it.next().and_then(|a| a.strip_prefix("r=")).expect("r=");
    let salt = it.next().and_then(|a| a.strip_prefix("s=")).expect("s=");
    let i = it.next().and_then(|a| a.strip_prefix("i=")).expect("i=");
    assert_eq!(it.next(), None);
    (r.to_string(), b64(salt), i.parse().expect("count"))
}

/// Runs a SCRAM exchange as a correct client with `password`; `tamper` may rewrite the
/// client-final message before it is sent. Returns the final step.
fn scram_login(
    mech: Mechanism,
    client_first: &str,
    creds: Option<Credentials>,
    password: &str,
    tamper: &dyn Fn(String) -> String,
) -> Result<Step, SaslError> {
    let (mut server, step) = SaslServer::start(mech, client_first.as_bytes(), NONCE)?;
    assert!(matches!(step, Step::NeedCredentials { .. }));
    let Step::Challenge(server_first) = server.provide_credentials(creds)? else {
        panic!("expected a challenge");
    };
    let (nonce, salt, iterations) = parse_server_first(&server_first);
    let (gs2, bare) = match client_first
        .find(",n=")
        .or_else(|| client_first.find(",m="))
    {
        Some(i) => client_first.split_at(i + 1),
        None => panic!("no bare part"),
    };
    let without_proof = format!("c={},r={}", B64.encode(gs2), nonce);
    let auth = format!(
        "{},{},{}",
        bare,
        String::from_utf8_lossy(&server_first),
        without_proof
    );
    let proof = client_proof(mech, password, &salt, iterations, &auth);
    server.step(tamper(format!("{without_proof},p={proof}")).as_bytes())
}

pub(super) fn creds_for(password: &str) -> Credentials {
    Credentials {
        scram_sha256: Some(derive_scram_sha256(password, b"salt-256", 4096)),
        scram_sha1: Some(derive_scram_sha1(password, b"salt-1", 4096)),
    }
}

const SCRAMS: [Mechanism; 2] = [Mechanism::ScramSha256, Mechanism::ScramSha1];

#[test]
fn scram_good_and_wrong_password() {
    let same = |s: String| s;
    for mech in SCRAMS {
        let ok = scram_login(
            mech,
            "n,,n=Alice,r=abc",
            Some(creds_for("secret")),
            "secret",
            &same,
        );
        assert!(
            matches!(&ok, Ok(Step::Success { authcid, authzid: None, additional })
                if authcid == "alice" && additional.starts_with(b"v=")),
            "{mech:?}: {ok:?}"
        );
        let bad = scram_login(
            mech,
            "n,,n=alice,r=abc",
            Some(creds_for("secret")),
            "Secret",
            &same,
        );
        assert_eq!(bad, Err(SaslError::NotAuthorized), "{mech:?}");
    }
}

#[test]
fn scram_accepts_low_iteration_counts_from_the_store() {
    for mech in SCRAMS {
        let creds = Credentials {
            scram_sha256: Some(derive_scram_sha256("pw", b"s", 1)),
            scram_sha1: Some(derive_scram_sha1("pw", b"s", 1)),
        };
        let got = scram_login(mech, "n,,n=bob,r=x", Some(creds), "pw", &|s| s);
        assert!(matches!(got, Ok(Step::Success { .. })), "{mech:?}: {got:?}");
    }
}

#[test]
fn scram_unknown_user_gets_a_normal_challenge_then_fails() {
    for mech in SCRAMS {
        let known = |creds| {
            let (mut s, _) = SaslServer::start(mech, b"n,,n=carol,r=abc", NONCE)?;
            s.provide_credentials(creds)
        };
        let Ok(Step::Challenge(real)) = known(Some(creds_for("pw"))) else {
            panic!("no challenge");
        };
        let Ok(Step::Challenge(fake)) = known(None) else {
            panic!("no challenge");
        };
        let Ok(Step::Challenge(fake_again)) = known(None) else {
            panic!("no challenge");
        };
        let (real_nonce, real_salt, real_i) = parse_server_first(&real);
        let (fake_nonce, fake_salt, fake_i) = parse_server_first(&fake);
        assert_eq!(real_nonce, fake_nonce);
        assert_eq!(real_i, fake_i);
        assert_eq!(fake_salt.len(), 16);
        assert_ne!(real_salt, fake_salt);
        assert_eq!(fake, fake_again, "the made-up salt is stable per user");

        // No password works for the made-up secret, nor does a user without this hash.
        for pw in ["pw", "", "pencil"] {
            let got = scram_login(mech, "n,,n=carol,r=abc", None, pw, &|s| s);
            assert_eq!(got, Err(SaslError::NotAuthorized), "{mech:?} {pw:?}");
        }
        let only_other = match mech {
            Mechanism::ScramSha1 => Credentials {
                scram_sha256: creds_for("pw").scram_sha256,
                scram_sha1: None,
            },
            _ => Credentials {
                scram_sha256: None,
                scram_sha1: creds_for("pw").scram_sha1,
            },
        };
        let got = scram_login(mech, "n,,n=carol,r=abc", Some(only_other), "pw", &|s| s);
        assert_eq!(got, Err(SaslError::NotAuthorized), "{mech:?}");
        // A corrupt stored secret is treated as missing.
        let mut broken = creds_for("pw");
        if let Some(s) = broken.scram_sha256.as_mut() {
            s.stored_key.pop();
        }
        if let Some(s) = broken.scram_sha1.as_mut() {
            s.iterations = 0;
        }
        let got = scram_login(mech, "n,,n=carol,r=abc", Some(broken), "pw", &|s| s);
        assert_eq!(got, Err(SaslError::NotAuthorized), "{mech:?}");
    }
}

#[test]
fn scram_tampering() {
    type Tamper = fn(String) -> String;
    let table: &[(&str, Tamper, Result<(), SaslError>)] = &[
        ("untouched", |s| s, Ok(())),
        (
            "extension",
            |s| s.replacen(",p=", ",x=ext,p=", 1),
            Err(SaslError::NotAuthorized),
        ),
        (
            "nonce",
            |s| s.replacen(",r=abc", ",r=abd", 1),
            Err(SaslError::NotAuthorized),
        ),
        (
            "nonce cut",
            |s| s.replacen(",r=abc", ",r=ab", 1),
            Err(SaslError::NotAuthorized),
        ),
        (
            "cbind y",
            |s| s.replacen("c=biws", "c=eSws", 1),
            Err(SaslError::NotAuthorized),
        ),
        (
            "cbind data",
            |s| s.replacen("c=biws", "c=cD10bHMtdW5pcXVlLCxYWFg=", 1),
            Err(SaslError::NotAuthorized),
        ),
        (
            "proof bit",
            |s| {
                let (head, proof) = s.rsplit_once(",p=").expect("proof");
                let mut p = b64(proof);
                p[0] ^= 1;
                format!("{head},p={}", B64.encode(p))
            },
            Err(SaslError::NotAuthorized),
        ),
        (
            "proof short",
            |s| {
                let (head, proof) = s.rsplit_once(",p=").expect("proof");
                let p = b64(proof);
                format!("{head},p={}", B64.encode(&p[1..]))
            },
            Err(SaslError::NotAuthorized),
        ),
        (
            "proof not base64",
            |s| format!("{s}!"),
            Err(SaslError::MalformedRequest(String::new())),
        ),
        (
            "cbind not base64",
            |s| s.replacen("c=biws", "c=b!ws", 1),
            Err(SaslError::MalformedRequest(String::new())),
        ),
        (
            "no proof",
            |s| s.rsplit_once(",p=").expect("proof").0.to_string(),
            Err(SaslError::MalformedRequest(String::new())),
        ),
        (
            "no cbind",
            |s| s.replacen("c=biws,", "", 1),
            Err(SaslError::MalformedRequest(String::new())),
        ),
        (
            "order",
            |s| {
                s.replacen("c=biws,r=", "r=", 1)
                    .replacen(",p=", ",c=biws,p=", 1)
            },
            Err(SaslError::MalformedRequest(String::new())),
        ),
    ];
    for mech in SCRAMS {
        for (name, tamper, want) in table {
            let got = scram_login(mech, "n,,n=dave,r=abc", Some(creds_for("pw")), "pw", tamper);
            let got = got.map(|_| ()).map_err(|e| match e {
                SaslError::MalformedRequest(_) => SaslError::MalformedRequest(String::new()),
                e => e,
            });
            // The "extension" case changes the AuthMessage the client signed, so it fails.
            assert_eq!(&got, want, "{mech:?} {name}");
        }
    }
}

#[test]
fn scram_extension_signed_by_the_client_is_accepted() {
    // A client that puts an extension in client-final and signs it: the AuthMessage covers it.
    let (mut server, _) =
        SaslServer::start(Mechanism::ScramSha256, b"n,,n=erin,r=abc,x=first", NONCE)
            .expect("start");
    let Ok(Step::Challenge(sf)) = server.provide_credentials(Some(creds_for("pw"))) else {
        panic!("no challenge");
    };
    let (nonce, salt, i) = parse_server_first(&sf);
    let without_proof = format!("c=biws,r={nonce},y=ext");
    let auth = format!(
        "n=erin,r=abc,x=first,{},{without_proof}",
        String::from_utf8_lossy(&sf)
    );
    let proof = client_proof(Mechanism::ScramSha256, "pw", &salt, i, &auth);
    let got = server.step(format!("{without_proof},p={proof}").as_bytes());
    assert!(matches!(got, Ok(Step::Success { .. })), "{got:?}");
}

#[test]
fn scram_gs2_flags_and_authzid() {
    let creds = || Some(creds_for("pw"));
    let ok = |authzid: Option<&'static str>| {
        move |r: Result<Step, SaslError>| {
            matches!(r, Ok(Step::Success { authcid, authzid: z, .. })
                if authcid == "frank" && z.as_deref() == authzid)
        }
    };
    for mech in SCRAMS {
        let got = scram_login(mech, "y,,n=frank,r=abc", creds(), "pw", &|s| s);
        assert!(ok(None)(got), "{mech:?} y flag");
        let got = scram_login(
            mech,
            "n,a=frank@example.com,n=frank,r=abc",
            creds(),
            "pw",
            &|s| s,
        );
        assert!(ok(Some("frank@example.com"))(got), "{mech:?} authzid");
        let got = scram_login(
            mech,
            "n,a=Frank@Example.COM,n=FRANK,r=abc",
            creds(),
            "pw",
            &|s| s,
        );
        assert!(ok(Some("frank@example.com"))(got), "{mech:?} authzid case");

        let start = |first: &str| SaslServer::start(mech, first.as_bytes(), NONCE).map(|(_, s)| s);
        let table: &[(&str, Result<Step, SaslError>)] = &[
            (
                "n,a=george@example.com,n=frank,r=abc",
                Err(SaslError::InvalidAuthzid),
            ),
            (
                "n,a=frank@example.com/res,n=frank,r=abc",
                Err(SaslError::InvalidAuthzid),
            ),
            (
                "n,a=example.com,n=frank,r=abc",
                Err(SaslError::InvalidAuthzid),
            ),
            ("n,a=frank@,n=frank,r=abc", Err(SaslError::InvalidAuthzid)),
            (
                "n,a=,n=frank,r=abc",
                Err(SaslError::MalformedRequest("empty name".into())),
            ),
            ("n,a=fr=2Cank@x,n=fr=2Cank,r=abc", Ok(need("fr,ank"))),
            (
                "n,a=fr=2Cank@x,n=frank,r=abc",
                Err(SaslError::InvalidAuthzid),
            ),
            (
                "p=tls-unique,,n=frank,r=abc",
                Err(SaslError::MalformedRequest(
                    "channel binding is not offered".into(),
                )),
            ),
            ("n,,n=a=2Cb,r=abc", Ok(need("a,b"))),
            ("n,,n=a=3Db,r=abc", Ok(need("a=b"))),
            (
                "n,,n=a=2cb,r=abc",
                Err(SaslError::MalformedRequest(
                    "bad '=' escape in a name".into(),
                )),
            ),
            (
                "n,,n=a=3E,r=abc",
                Err(SaslError::MalformedRequest(
                    "bad '=' escape in a name".into(),
                )),
            ),
            (
                "n,,n=a=,r=abc",
                Err(SaslError::MalformedRequest(
                    "bad '=' escape in a name".into(),
                )),
            ),
        ];
        for (first, want) in table {
            assert_eq!(&start(first), want, "{mech:?} {first}");
        }
    }
    // An escaped name goes through the whole exchange, and the authzid is the escaped form.
    let got = scram_login(
        Mechanism::ScramSha256,
        "n,,n=h=2Ci=3Dj,r=abc",
        creds(),
        "pw",
        &|s| s,
    );
    assert!(
        matches!(&got, Ok(Step::Success { authcid, .. }) if authcid == "h,i=j"),
        "{got:?}"
    );
}

#[test]
fn scram_server_nonce_limits() {
    for mech in SCRAMS {
        let got = SaslServer::start(mech, b"n,,n=a,r=b", &[7u8; 15]).map(|(_, s)| s);
        assert_eq!(got, Err(SaslError::TemporaryAuthFailure));
        // A binary nonce is sent as base64.
        let (mut s, _) = SaslServer::start(mech, b"n,,n=a,r=b", &[0xffu8; 18]).expect("start");
        let Ok(Step::Challenge(sf)) = s.provide_credentials(None) else {
            panic!("no challenge");
        };
        let (nonce, _, _) = parse_server_first(&sf);
        assert_eq!(nonce, format!("b{}", B64.encode([0xffu8; 18])));
    }
}

#[test]
fn scram_final_not_utf8() {
    let (mut s, _) =
        SaslServer::start(Mechanism::ScramSha256, b"n,,n=a,r=b", NONCE).expect("start");
    assert!(matches!(
        s.provide_credentials(None),
        Ok(Step::Challenge(_))
    ));
    let got = s.step(b"c=biws,r=b\xff,p=AAAA");
    assert_eq!(got, Err(SaslError::MalformedRequest("not UTF-8".into())));
}
