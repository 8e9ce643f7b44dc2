//! Decodes arbitrary bytes as a server-to-server stream (after a valid `jabber:server` header
//! declaring dialback, or a header from the input) and reads every element as the s2s edge
//! does: header check, XEP-0220 dialback elements, stream features, SASL EXTERNAL `<auth/>`.
//!
//! Properties: no panic; a parsed dialback request rebuilt with `Dialback::request` parses to
//! the same request; its answer parses with the addresses swapped; the answer, encoded with
//! the `db:` prefix after a server header, decodes to the same element; an EXTERNAL authzid
//! that parses survives a round trip through `sasl_external_auth`; the namespace swap to
//! `jabber:client` and back leaves a stanza without `jabber:client` elements unchanged.

#![no_main]

use herald_xmpp::codec::{encode, StreamEvent};
use herald_xmpp::ns;
use herald_xmpp::s2s::{self, Dialback};
use herald_xmpp::Element;
use herald_xmpp_fuzz::{decode_all, LIMITS, SERVER_HEADER};
use libfuzzer_sys::fuzz_target;

fn has_ns(e: &Element, ns: &str) -> bool {
    e.ns() == ns || e.children().any(|c| has_ns(c, ns))
}

fn check(e: &Element) {
    if let Some(d) = Dialback::parse(e) {
        let req = Dialback::request(&d.from, &d.to, d.id.as_deref(), &d.key);
        let back = Dialback::parse(&req).expect("a request parses");
        assert_eq!(back.verify, d.id.is_some());
        assert_eq!(
            (&back.from, &back.to, &back.id, &back.key),
            (&d.from, &d.to, &d.id, &d.key)
        );
        assert_eq!(back.kind, None);
        for valid in [true, false] {
            let answer = d.answer(valid);
            let a = Dialback::parse(&answer).expect("an answer parses");
            assert_eq!(
                (a.from.as_str(), a.to.as_str()),
                (d.to.as_str(), d.from.as_str())
            );
            assert_eq!(
                a.kind.as_deref(),
                Some(if valid { "valid" } else { "invalid" })
            );
            let bytes = encode(&answer, ns::SERVER);
            if bytes.len() > LIMITS.max_stanza_bytes {
                continue;
            }
            let mut wire = SERVER_HEADER.to_vec();
            wire.extend_from_slice(&bytes);
            let (events, err) = decode_all(&wire, b"", 0x1f);
            assert_eq!(err, None, "{}", String::from_utf8_lossy(&wire));
            assert_eq!(events.get(1), Some(&StreamEvent::Stanza(answer)));
        }
        let _ = d.error("item-not-found");
    }
    if e.is("features", ns::STREAM) {
        let offer = s2s::parse_features(e);
        assert_eq!(s2s::parse_features(&s2s::features(offer)), offer);
    }
    if e.is("auth", ns::SASL) {
        if let Ok(Some(z)) = s2s::sasl_external_authzid(e) {
            let again = s2s::sasl_external_authzid(&s2s::sasl_external_auth(&z));
            assert_eq!(again, Ok(Some(z)));
        }
    }
    if !has_ns(e, ns::CLIENT) {
        let mut swapped = e.clone();
        s2s::swap_ns(&mut swapped, ns::SERVER, ns::CLIENT);
        assert!(!has_ns(&swapped, ns::SERVER));
        s2s::swap_ns(&mut swapped, ns::CLIENT, ns::SERVER);
        assert_eq!(&swapped, e);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&seed, rest)) = data.split_first() else {
        return;
    };
    let header: &[u8] = if seed & 0x80 != 0 { SERVER_HEADER } else { b"" };
    let (events, _) = decode_all(header, rest, seed);
    for ev in &events {
        match ev {
            StreamEvent::Open(h) => {
                assert_eq!(s2s::check_header(h).is_ok(), h.default_ns == ns::SERVER);
            }
            StreamEvent::Stanza(e) => check(e),
            _ => {}
        }
    }
    let k = s2s::dialback_key("secret", "example.com", "remote.example", "id");
    assert!(s2s::keys_equal(&k, &k));
});
