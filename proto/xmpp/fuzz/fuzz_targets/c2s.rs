//! Drives the client-to-server negotiation machine (header, features, SASL over base64 in
//! `<auth/>`/`<response/>`, bind, then stanzas) with arbitrary bytes, on a direct-TLS stream.
//!
//! The first input byte picks the chunking and whether a valid header and `<auth/>` for PLAIN
//! go first. Lookups are answered for one user, `alice` (password `pencil`); bind requests
//! with the requested resource. Properties: no panic; nothing is sent after the close; a
//! session is established only after authentication, for `alice@example.com` only; stanzas
//! are passed on only once established; the decoder never holds more than its limit.

#![no_main]

use std::sync::OnceLock;

use herald_xmpp::c2s::{Action, BindError, C2s, C2sConfig, Input};
use herald_xmpp::jid::Jid;
use herald_xmpp::sasl::{derive_scram_sha1, derive_scram_sha256, Credentials};
use herald_xmpp_fuzz::{CLIENT_HEADER, LIMITS};
use libfuzzer_sys::fuzz_target;

fn creds() -> &'static Credentials {
    static C: OnceLock<Credentials> = OnceLock::new();
    C.get_or_init(|| Credentials {
        scram_sha256: Some(derive_scram_sha256("pencil", b"0123456789abcdef", 1)),
        scram_sha1: Some(derive_scram_sha1("pencil", b"0123456789abcdef", 1)),
    })
}

/// `<auth mechanism='PLAIN'>` for alice/pencil.
const PLAIN_AUTH: &[u8] = b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' \
    mechanism='PLAIN'>AGFsaWNlAHBlbmNpbA==</auth>";

#[derive(Default)]
struct Seen {
    closed: bool,
    authenticated: Option<Jid>,
    established: bool,
}

fn apply(c: &mut C2s, actions: Vec<Action>, seen: &mut Seen, depth: u8) {
    for a in actions {
        assert!(!seen.closed, "{a:?} after the close");
        let next = match a {
            Action::Send(_) | Action::StartTls | Action::AuthFailed { .. } => None,
            Action::LookupUser { domain, localpart } => {
                assert_eq!(domain, "example.com");
                let known = localpart == "alice";
                Some(Input::Credentials(known.then(|| creds().clone())))
            }
            Action::Authenticated { jid, .. } => {
                assert_eq!(jid.to_string(), "alice@example.com");
                assert!(seen.authenticated.is_none(), "authenticated twice");
                seen.authenticated = Some(jid);
                None
            }
            Action::Bind { requested } => {
                let bare = seen
                    .authenticated
                    .as_ref()
                    .expect("bind before authentication");
                let r = requested.as_deref().unwrap_or("fuzz");
                Some(Input::BindResult(
                    bare.with_resource(r)
                        .map_err(|e| BindError::BadResource(e.to_string())),
                ))
            }
            Action::Established { full_jid } => {
                let bare = seen
                    .authenticated
                    .as_ref()
                    .expect("established before auth");
                assert_eq!(&full_jid.bare(), bare);
                assert!(!seen.established, "established twice");
                seen.established = true;
                None
            }
            Action::Stanza(_) => {
                assert!(seen.established, "stanza passed on before establishment");
                None
            }
            Action::Close { .. } => {
                seen.closed = true;
                None
            }
        };
        if let Some(input) = next {
            assert!(depth < 8, "answers never end");
            let more = c.handle(input);
            apply(c, more, seen, depth + 1);
        }
        assert!(c.buffered() <= LIMITS.max_stanza_bytes);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&seed, mut rest)) = data.split_first() else {
        return;
    };
    let cfg = C2sConfig {
        direct_tls: true,
        limits: LIMITS,
        ..C2sConfig::for_test()
    };
    let mut c = C2s::new(cfg, "fuzz-stream".into(), b"0123456789abcdefghij".to_vec());
    let mut seen = Seen::default();
    if seed & 0x80 != 0 {
        let actions = c.handle(Input::Bytes(CLIENT_HEADER));
        apply(&mut c, actions, &mut seen, 0);
        if seed & 0x40 != 0 {
            let actions = c.handle(Input::Bytes(PLAIN_AUTH));
            apply(&mut c, actions, &mut seen, 0);
        }
    }
    let mut chunk = usize::from(seed & 0x1f) + 1;
    while !rest.is_empty() && !seen.closed {
        let n = chunk.min(rest.len());
        let actions = c.handle(Input::Bytes(&rest[..n]));
        rest = &rest[n..];
        apply(&mut c, actions, &mut seen, 0);
        chunk = (chunk * 7 + 3) % 61 + 1;
    }
});
