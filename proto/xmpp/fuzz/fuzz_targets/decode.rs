//! Feeds arbitrary bytes, cut into arbitrary chunks, to the stream decoder.
//!
//! The first input byte chooses the chunking and whether a valid stream header goes first
//! (so that the fuzzer reaches stanza parsing quickly). Properties: no panic, the bytes held
//! for one element never exceed the limit, and a failed decoder stays failed.

#![no_main]

use herald_xmpp::codec::{Decoder, Limits};
use libfuzzer_sys::fuzz_target;

const HEADER: &[u8] = b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
    xmlns:stream='http://etherx.jabber.org/streams' to='example.com' version='1.0'>";

fuzz_target!(|data: &[u8]| {
    let Some((&seed, mut rest)) = data.split_first() else {
        return;
    };
    let limits = Limits {
        max_stanza_bytes: 4096,
        max_depth: 16,
    };
    let mut d = Decoder::new(limits);
    if seed & 0x80 != 0 {
        d.feed(HEADER);
    }
    let mut chunk = usize::from(seed & 0x1f) + 1;
    while !rest.is_empty() {
        let n = chunk.min(rest.len());
        d.feed(&rest[..n]);
        rest = &rest[n..];
        loop {
            match d.next() {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) => {
                    assert_eq!(d.next(), Err(e));
                    return;
                }
            }
            assert!(d.buffered() <= limits.max_stanza_bytes);
        }
        chunk = (chunk * 7 + 3) % 61 + 1;
    }
});
