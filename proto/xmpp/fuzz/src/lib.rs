//! Helpers shared by the fuzz targets: decoding a byte string into stream events with the
//! chunking the first input byte picks.

use herald_xmpp::codec::{Decoder, Limits, StreamEvent};
use herald_xmpp::StreamError;

/// Limits small enough that the fuzzer reaches them.
pub const LIMITS: Limits = Limits {
    max_stanza_bytes: 4096,
    max_depth: 16,
};

/// A client stream header.
pub const CLIENT_HEADER: &[u8] = b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
    xmlns:stream='http://etherx.jabber.org/streams' to='example.com' version='1.0'>";

/// A server stream header declaring dialback.
pub const SERVER_HEADER: &[u8] = b"<?xml version='1.0'?><stream:stream xmlns='jabber:server' \
    xmlns:db='jabber:server:dialback' xmlns:stream='http://etherx.jabber.org/streams' \
    from='remote.example' to='example.com' version='1.0'>";

/// Decodes `prefix` then `rest` (cut into chunks derived from `seed`), checking on the way
/// that the decoder holds at most one element's limit and that a failure sticks. Returns the
/// events and the error, if any.
pub fn decode_all(
    prefix: &[u8],
    mut rest: &[u8],
    seed: u8,
) -> (Vec<StreamEvent>, Option<StreamError>) {
    let mut d = Decoder::new(LIMITS);
    let mut events = Vec::new();
    d.feed(prefix);
    let mut chunk = usize::from(seed & 0x1f) + 1;
    let mut first = true;
    while first || !rest.is_empty() {
        first = false;
        let n = chunk.min(rest.len());
        d.feed(&rest[..n]);
        rest = &rest[n..];
        loop {
            match d.next() {
                Ok(Some(ev)) => events.push(ev),
                Ok(None) => break,
                Err(e) => {
                    assert_eq!(d.next(), Err(e.clone()), "a failed decoder stays failed");
                    return (events, Some(e));
                }
            }
            assert!(d.buffered() <= LIMITS.max_stanza_bytes);
        }
        chunk = (chunk * 7 + 3) % 61 + 1;
    }
    (events, None)
}
