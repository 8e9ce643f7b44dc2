//! Feeds arbitrary bytes, cut into arbitrary chunks, to the SIP stream decoder.
//!
//! The first input byte chooses the chunking, the keep-alive side, and whether a valid
//! message goes first (so that the fuzzer reaches the second message's framing quickly).
//! Properties: no panic; the same frames and errors as feeding everything at once; the
//! decoder never holds more than the message limit plus one read beyond a message start;
//! a fatal error sticks; every decoded message re-encodes to bytes that decode to itself.

#![no_main]

use herald_sip::codec::{Decoder, Frame, Limits};
use herald_sip::DecodeError;
use libfuzzer_sys::fuzz_target;

const PRELUDE: &[u8] = b"MESSAGE sip:alice@herald.example SIP/2.0\r\n\
v: SIP/2.0/TLS 192.0.2.4:5061;branch=z9hG4bKfz\r\nf: <sip:bob@partner.example>;tag=1\r\n\
t: <sip:alice@herald.example>\r\ni: fz@partner.example\r\nCSeq: 1 MESSAGE\r\nl: 2\r\n\r\nhi";

const LIMITS: Limits = Limits {
    max_message_bytes: 4096,
    max_body_bytes: 2048,
    max_headers: 32,
    max_line_bytes: 512,
};

fn decoder(outbound: bool) -> Decoder {
    if outbound {
        Decoder::outbound(LIMITS)
    } else {
        Decoder::new(LIMITS)
    }
}

/// Drains `d`; returns false once a fatal error was seen.
fn drain(d: &mut Decoder, out: &mut Vec<Result<Frame, DecodeError>>) -> bool {
    loop {
        match d.next() {
            Ok(Some(f)) => out.push(Ok(f)),
            Ok(None) => return true,
            Err(e) => {
                let fatal = e.is_fatal();
                out.push(Err(e.clone()));
                if fatal {
                    assert_eq!(d.next(), Err(e));
                    return false;
                }
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&seed, rest)) = data.split_first() else {
        return;
    };
    let mut input = Vec::with_capacity(data.len() + PRELUDE.len());
    if seed & 0x80 != 0 {
        input.extend_from_slice(PRELUDE);
    }
    input.extend_from_slice(rest);
    let outbound = seed & 0x40 != 0;

    let mut whole = Vec::new();
    let mut d = decoder(outbound);
    d.feed(&input);
    drain(&mut d, &mut whole);

    let mut chunked = Vec::new();
    let mut d = decoder(outbound);
    let mut chunk = usize::from(seed & 0x1f) + 1;
    let mut rest = &input[..];
    while !rest.is_empty() {
        let n = chunk.min(rest.len());
        d.feed(&rest[..n]);
        rest = &rest[n..];
        if !drain(&mut d, &mut chunked) {
            break;
        }
        assert!(d.buffered() <= LIMITS.max_message_bytes + 61);
        chunk = (chunk * 7 + 3) % 61 + 1;
    }
    assert_eq!(chunked, whole);

    for f in whole.iter().flatten() {
        if let Frame::Message(m) = f {
            let mut d = Decoder::new(Limits::default());
            d.feed(&m.encode());
            assert_eq!(d.next(), Ok(Some(f.clone())));
        }
    }
});
