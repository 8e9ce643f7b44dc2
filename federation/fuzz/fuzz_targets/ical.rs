//! Reads arbitrary text as iCalendar (RFC 5545) objects, as the calendar gateway does with
//! what a CalDAV server returns: unfolding, components, time zones, recurrence.
//!
//! Properties: no panic and no runaway (limits are small: lines, line length, nesting,
//! intervals, recurrence steps); never more intervals than the limit; every interval is
//! non-empty and overlaps the window asked for; the same input gives the same answer.

#![no_main]

use herald_federation::calendar::{busy_intervals, IcalLimits};
use libfuzzer_sys::fuzz_target;

const LIMITS: IcalLimits = IcalLimits {
    max_lines: 200,
    max_line_bytes: 1024,
    max_depth: 6,
    max_intervals: 64,
    max_recurrence_steps: 500,
};

/// 2026-01-01T00:00:00Z and a week later.
const FROM: i64 = 1_767_225_600;
const TO: i64 = FROM + 7 * 86_400;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut out = Vec::new();
    let r = busy_intervals(text, FROM, TO, &LIMITS, &mut out);
    assert!(out.len() <= LIMITS.max_intervals, "{} intervals", out.len());
    for i in &out {
        assert!(i.start < i.end, "empty interval {i:?}");
        assert!(i.start < TO && i.end > FROM, "{i:?} outside the window");
    }
    let mut again = Vec::new();
    assert_eq!(busy_intervals(text, FROM, TO, &LIMITS, &mut again), r);
    assert_eq!(again, out);
});
