//! Decodes arbitrary bytes after a client (or server) stream header and reads every stanza
//! through the stanza views.
//!
//! Properties: no panic in any view; a stanza error parsed from an `<error/>` writes back to
//! an element that parses to the same error; an error reply to a non-error stanza is itself an
//! error stanza (and is never answered again) with the same id and swapped addresses; an iq
//! that validates has a payload when it is a get or set, and its result keeps the id.

#![no_main]

use herald_xmpp::codec::StreamEvent;
use herald_xmpp::error::{StanzaCondition, StanzaError, StreamCondition};
use herald_xmpp::stanza::{self, Iq, IqType, Message, Presence, StanzaKind};
use herald_xmpp::Element;
use herald_xmpp_fuzz::{decode_all, CLIENT_HEADER, SERVER_HEADER};
use libfuzzer_sys::fuzz_target;

fn check(e: &Element) {
    let _ = StreamCondition::from_element(e);
    let _ = stanza::id(e);
    for addr in [stanza::from(e), stanza::to(e)] {
        if let Ok(Some(j)) = addr {
            assert_eq!(j.to_string().parse(), Ok(j));
        }
    }
    let Some(kind) = StanzaKind::of(e) else {
        return;
    };
    match kind {
        StanzaKind::Message => {
            let m = Message::view(e).expect("a message has a message view");
            let _ = (m.kind(), m.body());
        }
        StanzaKind::Presence => {
            let p = Presence::view(e).expect("a presence has a presence view");
            let _ = (p.kind(), p.show(), p.priority(), p.status());
        }
        StanzaKind::Iq => {
            let iq = Iq::view(e).expect("an iq has an iq view");
            let payload = iq.payload();
            if stanza::validate_iq(e).is_ok() {
                let kind = iq.kind().expect("a valid iq has a type");
                if matches!(kind, IqType::Get | IqType::Set) {
                    assert!(matches!(payload, Ok(Some(_))));
                }
                let r = stanza::iq_result(e, None);
                assert_eq!(r.get_attr("id"), e.get_attr("id"));
                assert_eq!(r.get_attr("type"), Some("result"));
            }
        }
    }
    for child in e.children().filter(|c| c.name() == "error") {
        if let Some(err) = StanzaError::from_element(child) {
            let back = err.to_element(e.ns(), None);
            assert_eq!(StanzaError::from_element(&back), Some(err.clone()));
        }
    }
    let err = StanzaError::new(StanzaCondition::ServiceUnavailable);
    match err.reply_to(e, None) {
        None => assert_eq!(e.get_attr("type"), Some("error")),
        Some(reply) => {
            assert_eq!(reply.get_attr("type"), Some("error"));
            assert_eq!(reply.get_attr("id"), e.get_attr("id"));
            assert_eq!(reply.get_attr("to"), e.get_attr("from"));
            assert_eq!(reply.get_attr("from"), e.get_attr("to"));
            assert!(
                err.reply_to(&reply, None).is_none(),
                "an error answered with an error"
            );
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&seed, rest)) = data.split_first() else {
        return;
    };
    let header = if seed & 0x80 != 0 {
        SERVER_HEADER
    } else {
        CLIENT_HEADER
    };
    let (events, _) = decode_all(header, rest, seed);
    for ev in &events {
        if let StreamEvent::Stanza(e) = ev {
            check(e);
        }
    }
});
