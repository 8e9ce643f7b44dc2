//! Parses arbitrary strings as JIDs.
//!
//! Properties: no panic; a JID that parses prints to a string that parses to the same JID and
//! prints the same (normalisation is idempotent); every part stays within 1023 bytes; the
//! bare JID drops only the resource; building from the parts gives the same JID.

#![no_main]

use herald_xmpp::jid::{Jid, MAX_PART};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(j) = Jid::parse(s) else {
        return;
    };
    for part in [j.local(), Some(j.domain()), j.resource()]
        .into_iter()
        .flatten()
    {
        assert!(!part.is_empty());
        assert!(part.len() <= MAX_PART, "part of {} bytes", part.len());
    }
    let printed = j.to_string();
    let again = Jid::parse(&printed).unwrap_or_else(|e| panic!("{printed:?} does not parse: {e}"));
    assert_eq!(again, j);
    assert_eq!(again.to_string(), printed);
    assert_eq!(
        Jid::from_parts(j.local(), j.domain(), j.resource()),
        Ok(j.clone())
    );
    let bare = j.bare();
    assert!(bare.is_bare());
    assert_eq!((bare.local(), bare.domain()), (j.local(), j.domain()));
    assert_eq!(j.is_bare(), j.resource().is_none());
});
