//! Parses arbitrary bytes as a PIDF document.
//!
//! Properties: no panic; a document that parses writes back to XML that parses to the same
//! value.

#![no_main]

use herald_sip::pidf::{PidfLimits, Presence};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = PidfLimits {
        max_bytes: 8192,
        max_depth: 12,
        max_items: 32,
    };
    if let Ok(p) = Presence::parse_with(data, limits) {
        // Escaping can make the document longer than the input.
        let roomy = PidfLimits {
            max_bytes: 1 << 20,
            ..limits
        };
        let again = Presence::parse_with(p.to_xml().as_bytes(), roomy);
        assert_eq!(again, Ok(p));
    }
});
