//! Runs one SASL exchange (SCRAM-SHA-256, SCRAM-SHA-1 or PLAIN) with arbitrary client
//! messages: the SCRAM client-first and client-final parsers, PLAIN, SASLprep and the authzid
//! check.
//!
//! Input: byte 0 picks the mechanism, whether the user exists and whether the first message
//! goes in the initial response; byte 1 is the length of the first message; the rest is the
//! first message, then the second. Properties: no panic; the exchange succeeds only for the
//! existing user with the right password (never for SCRAM, whose proof the fuzzer cannot
//! compute), and only for the authcid asked about; an authzid on success is that user's bare
//! JID; after a success or a failure every further message is `aborted`.

#![no_main]

use herald_xmpp::sasl::{
    derive_scram_sha1, derive_scram_sha256, Credentials, Mechanism, SaslError, SaslServer, Step,
};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn creds() -> &'static Credentials {
    static C: OnceLock<Credentials> = OnceLock::new();
    C.get_or_init(|| Credentials {
        scram_sha256: Some(derive_scram_sha256("pencil", b"0123456789abcdef", 1)),
        scram_sha1: Some(derive_scram_sha1("pencil", b"0123456789abcdef", 1)),
    })
}

const NONCE: &[u8] = b"rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";

fuzz_target!(|data: &[u8]| {
    let [seed, len, rest @ ..] = data else {
        return;
    };
    let mechanism = [
        Mechanism::ScramSha256,
        Mechanism::ScramSha1,
        Mechanism::Plain,
    ][usize::from(seed % 3)];
    let user_exists = seed & 0x10 != 0;
    let (first, second) = rest.split_at(usize::from(*len).min(rest.len()));
    // An empty initial response is no initial response.
    let initial = seed & 0x20 != 0 && !first.is_empty();

    let (mut server, step) =
        match SaslServer::start(mechanism, if initial { first } else { b"" }, NONCE) {
            Ok(s) => s,
            Err(e) => {
                assert!(matches!(
                    e,
                    SaslError::MalformedRequest(_) | SaslError::InvalidAuthzid
                ));
                return;
            }
        };
    let step = if initial {
        Ok(step)
    } else {
        assert_eq!(step, Step::Challenge(Vec::new()));
        server.step(first)
    };
    let authcid = match step {
        Ok(Step::NeedCredentials { authcid }) => authcid,
        Ok(other) => panic!("first message answered with {other:?}"),
        Err(_) => {
            assert_eq!(server.step(second), Err(SaslError::Aborted));
            return;
        }
    };
    let known = user_exists && authcid == "alice";
    let step = server.provide_credentials(known.then(|| creds().clone()));
    let step = match (mechanism, step) {
        (Mechanism::Plain, s) => s,
        (_, Ok(Step::Challenge(server_first))) => {
            assert!(server_first.starts_with(b"r="));
            server.step(second)
        }
        (_, other) => panic!("SCRAM credentials answered with {other:?}"),
    };
    match step {
        Ok(Step::Success {
            authcid: who,
            authzid,
            ..
        }) => {
            assert!(known, "success for {who:?} without its credentials");
            assert_eq!(
                mechanism,
                Mechanism::Plain,
                "SCRAM success with a fuzzed proof"
            );
            assert_eq!(who, authcid);
            if let Some(z) = authzid {
                assert!(
                    z.starts_with(&format!("{who}@")) && !z.contains('/'),
                    "{z:?}"
                );
            }
        }
        Ok(other) => panic!("final answer {other:?}"),
        Err(_) => {}
    }
    assert_eq!(server.step(b"n,,n=alice,r=x"), Err(SaslError::Aborted));
});
