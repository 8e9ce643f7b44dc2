//! Reads arbitrary bytes as an EWS `GetUserAvailability` answer (and as a gateway-check answer),
//! as `Subscribe` and `GetEvents` answers, and as an NTLM CHALLENGE message, answering the
//! latter with an AUTHENTICATE message.
//!
//! Properties: no panic; never more events than the limit; every interval read is non-empty;
//! a check accepts whatever the availability reader accepts; the same input gives the same
//! answer; a challenge that parses yields an AUTHENTICATE message with an NTLMv2 (longer than
//! 24 bytes) response.

#![no_main]

use herald_federation::calendar::ews::{availability_response, check_response, MAX_EVENTS};
use herald_federation::calendar::ews_events::{get_events_response, subscribe_response};
use herald_federation::calendar::ntlm::{authenticate, parse_challenge, Credentials};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let r = availability_response(data);
    assert_eq!(availability_response(data), r);
    if let Ok(intervals) = &r {
        assert!(intervals.len() <= MAX_EVENTS);
        assert!(intervals.iter().all(|i| i.end > i.start));
        assert_eq!(check_response(data), Ok(()));
    }
    assert_eq!(subscribe_response(data), subscribe_response(data));
    if let Ok(ev) = get_events_response(data) {
        assert!(!ev.watermark.is_empty());
    }
    if let Ok(ch) = parse_challenge(data) {
        let creds = Credentials::from_account("CORP\\svc", "pw");
        let msg = authenticate(&creds, &ch, [7; 8], 0, "HERALD");
        let nt_len = u16::from_le_bytes([msg[20], msg[21]]);
        assert!(nt_len > 24, "an NTLMv2 response");
    }
});
