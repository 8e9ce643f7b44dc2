//! Calendar-driven presence, sans I/O (REQUIREMENTS §17 CAL, MAP-9): what a CalDAV server says
//! and what watchers should see because of it. Time is always an argument.
//!
//! Flow for one user and one poll: [`dav::calendar_query`] (the REPORT body the node sends to
//! each calendar of the user's home, found with [`dav::propfind_calendars`]) → the server's
//! 207 → [`dav::multistatus`] → each `calendar-data` → [`ical::busy_intervals`] →
//! [`overlay::state_at`] → on a change, the user's actor re-broadcasts each session's presence
//! through [`overlay::overlay_presence`].
//!
//! - [`time`]: iCalendar dates, durations and `VTIMEZONE` offsets as Unix seconds.
//! - [`ical`]: `VEVENT` / `VFREEBUSY` → busy intervals, bounded.
//! - [`dav`]: WebDAV/CalDAV request bodies and the multistatus reader, bounded.
//! - [`ews`]: Exchange Web Services `GetUserAvailability` request and answer, bounded.
//! - [`ews_events`]: EWS pull notifications (`Subscribe`, `GetEvents`), bounded.
//! - [`ntlm`]: NTLM (MS-NLMP) client messages with NTLMv2 responses only.
//! - [`overlay`]: intervals → calendar state; calendar state → a watcher's presence stanza.
//! - [`pool`]: which gateway serves which user (round-robin over healthy ones, reassignment).

pub mod dav;
pub mod ews;
pub mod ews_events;
pub mod ical;
pub mod ntlm;
pub mod overlay;
pub mod pool;
pub mod time;

pub use ical::{busy_intervals, BusyInterval, BusyKind, IcalError, IcalLimits};

/// Escapes text for an XML element or attribute value.
pub(crate) fn xml_escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            c => o.push(c),
        }
    }
    o
}
pub use overlay::{next_change, overlay_presence, state_at};
