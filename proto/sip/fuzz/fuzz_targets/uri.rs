//! Parses arbitrary strings as SIP URIs, name-addrs and typed header values, and reads a
//! header block through every typed accessor.
//!
//! The first input byte picks the parser (URI, SIP URI, name-addr, URI parameters, Via, CSeq,
//! Event, Subscription-State, Content-Type, or a whole header block). Properties: no panic;
//! every value that parses prints to a string that parses to the same value, and printing is
//! stable (print → parse → print gives the same string).

#![no_main]

use std::fmt::Display;

use herald_sip::header::Headers;
use herald_sip::typed::{CSeq, ContentType, Event, SubscriptionState, Via};
use herald_sip::uri::{NameAddr, Params, SipUri, Uri};
use libfuzzer_sys::fuzz_target;

fn round_trip<T, E>(s: &str, parse: impl Fn(&str) -> Result<T, E>)
where
    T: Display + PartialEq + std::fmt::Debug,
    E: std::fmt::Debug,
{
    let Ok(v) = parse(s) else {
        return;
    };
    let printed = v.to_string();
    let again = parse(&printed)
        .unwrap_or_else(|e| panic!("{s:?} printed as {printed:?}, which fails: {e:?}"));
    assert_eq!(again, v, "{s:?} printed as {printed:?}");
    assert_eq!(again.to_string(), printed);
}

fn header_block(s: &str) {
    let mut h = Headers::new();
    for line in s.lines() {
        if let Some((name, value)) = line.split_once(':') {
            h.push(name.trim(), value.trim());
        }
    }
    let _ = h.vias();
    let _ = h.top_via();
    let _ = h.from();
    let _ = h.to();
    let _ = h.call_id();
    let _ = h.cseq();
    let _ = h.max_forwards();
    let _ = h.expires();
    let _ = h.contacts();
    let _ = h.routes();
    let _ = h.record_routes();
    let _ = h.event();
    let _ = h.subscription_state();
    let _ = h.content_type();
    let _ = (h.allow_events(), h.supported(), h.require());
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let Ok(s) = std::str::from_utf8(rest) else {
        return;
    };
    match which % 10 {
        0 => round_trip(s, Uri::parse),
        1 => round_trip(s, SipUri::parse),
        2 => round_trip(s, NameAddr::parse),
        3 => round_trip(s, Params::parse),
        4 => round_trip(s, Via::parse),
        5 => round_trip(s, CSeq::parse),
        6 => round_trip(s, Event::parse),
        7 => round_trip(s, SubscriptionState::parse),
        8 => round_trip(s, ContentType::parse),
        _ => header_block(s),
    }
});
