//! Reads arbitrary bytes as a WebDAV `multistatus` (CalDAV PROPFIND and REPORT answers) and
//! the helpers the gateway applies to the result.
//!
//! Properties: no panic; never more responses than the limit; the home itself is never listed
//! among its calendars; calendar data is taken only from responses that carry it; the same input
//! gives the same answer; the whole-document reading (sync token) has the same responses, and
//! sync tokens are found for a home's calendars only when every one has a non-empty token.

#![no_main]

use herald_federation::calendar::dav::{
    calendar_data_in, calendars_in, multistatus, multistatus_doc, path_of, status_is_2xx,
    sync_tokens_in, MAX_RESPONSES,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let r = multistatus(data);
    assert_eq!(multistatus(data), r);
    let doc = multistatus_doc(data);
    assert_eq!(doc.as_ref().map(|d| &d.responses), r.as_ref());
    if let Ok(d) = &doc {
        assert!(d.sync_token.as_ref().is_none_or(|t| !t.is_empty()));
    }
    let Ok(responses) = r else {
        return;
    };
    assert!(responses.len() <= MAX_RESPONSES);
    for resp in &responses {
        let _ = path_of(&resp.href);
        if let Some(s) = &resp.status {
            let _ = status_is_2xx(s);
        }
    }
    for home in ["/", "/alice/", "/dav/calendars/alice/"] {
        let cals = calendars_in(&responses, home);
        if let Some(tokens) = sync_tokens_in(&responses, &cals) {
            assert_eq!(tokens.len(), cals.len());
            assert!(tokens.iter().all(|t| !t.is_empty()));
        }
        for c in cals {
            let p = path_of(&c);
            assert_ne!(
                p.trim_end_matches('/'),
                home.trim_end_matches('/'),
                "the home itself"
            );
        }
    }
    let with_data = responses
        .iter()
        .filter(|r| r.ok.calendar_data.is_some())
        .count();
    assert!(calendar_data_in(responses).len() <= with_data);
});
