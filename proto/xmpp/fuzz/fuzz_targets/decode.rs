//! Feeds arbitrary bytes, cut into arbitrary chunks, to the stream decoder.
//!
//! The first input byte chooses the chunking and whether a valid stream header goes first
//! (so that the fuzzer reaches stanza parsing quickly). Properties: no panic; the bytes held
//! for one element never exceed the limit; a failed decoder stays failed; the events do not
//! depend on the chunking (compared with feeding everything at once); every decoded stanza,
//! encoded again under the header that was read, decodes to the same element.

#![no_main]

use herald_xmpp::codec::{encode, stream_header, StreamEvent};
use herald_xmpp_fuzz::{decode_all, CLIENT_HEADER};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&seed, rest)) = data.split_first() else {
        return;
    };
    let prefix: &[u8] = if seed & 0x80 != 0 { CLIENT_HEADER } else { b"" };
    let (events, err) = decode_all(prefix, rest, seed);

    // The same input in one piece.
    let mut whole = prefix.to_vec();
    whole.extend_from_slice(rest);
    let (events_whole, err_whole) = decode_all(&whole, b"", 0x1f);
    // A whitespace keepalive is reported as soon as its first byte is read, so a run of
    // whitespace followed by a bad byte in the same read gives no event: compare the rest.
    let solid = |evs: &[StreamEvent]| -> Vec<StreamEvent> {
        evs.iter()
            .filter(|e| !matches!(e, StreamEvent::Whitespace))
            .cloned()
            .collect()
    };
    let (a, b) = (solid(&events), solid(&events_whole));
    // rxml may see that a token is bad only when the byte after it arrives, so one side can
    // fail while the other still waits for more input: the failing side's events are then a
    // prefix of the other's. Likewise, when both fail, the first fault seen may differ (a
    // stray character against invalid UTF-8 further on, bad-format against
    // unsupported-encoding), and so may the events before it. Otherwise the events are the
    // same.
    match (&err, &err_whole) {
        (Some(_), Some(_)) => assert!(a.starts_with(&b) || b.starts_with(&a)),
        (None, None) => assert_eq!(a, b, "events depend on chunking"),
        (Some(_), None) => assert!(b.starts_with(&a)),
        (None, Some(_)) => assert!(a.starts_with(&b)),
    }

    // Round trip: header and stanzas re-encoded decode to the same events.
    let Some(StreamEvent::Open(h)) = events.first() else {
        return;
    };
    let mut again = stream_header(h);
    let mut want = vec![StreamEvent::Open(h.clone())];
    for ev in &events[1..] {
        match ev {
            StreamEvent::Stanza(e) => {
                again.extend_from_slice(&encode(e, &h.default_ns));
                want.push(ev.clone());
            }
            StreamEvent::Open(_) | StreamEvent::Close => break,
            StreamEvent::Whitespace => {}
        }
    }
    // Escaping can make an element longer than the input was: only compare those that fit.
    if again.len() > herald_xmpp_fuzz::LIMITS.max_stanza_bytes {
        return;
    }
    let (got, err) = decode_all(&again, b"", 0x1f);
    assert_eq!(
        err,
        None,
        "re-encoded stream fails: {}",
        String::from_utf8_lossy(&again)
    );
    let got: Vec<_> = got
        .into_iter()
        .filter(|e| !matches!(e, StreamEvent::Whitespace))
        .collect();
    assert_eq!(
        got,
        want,
        "round trip of {}",
        String::from_utf8_lossy(&again)
    );
});
