//! From busy intervals to a calendar state, and from a calendar state to what a watcher sees.
//!
//! - [`state_at`]: the [`CalendarState`] at an instant (out of office beats busy beats
//!   tentative beats free), and [`next_change`]: when it may change next.
//! - [`overlay_presence`]: one session's presence stanza as watchers see it under a calendar
//!   state (MAP-9 through [`with_calendar`]):
//!
//! | user's own state | calendar | watchers see |
//! |---|---|---|
//! | any online state but DND | Free, Tentative | the user's own presence, unchanged |
//! | Available, Away, XA, Idle, Busy | Busy | `<show>away</show>` "In a meeting" (Busy) |
//! | Do Not Disturb (set by the user) | Busy, Out of office | unchanged: DND wins |
//! | any online state but DND | Out of office | `<show>away</show>`, the user's status text |
//! | offline / unavailable | any | unchanged: a calendar never brings a user online |
//!
//! The rewritten stanza keeps everything else the client put in it (priority, caps, nick…)
//! and carries Herald's `<availability/>` extension with the exact state and overlay, so a
//! Herald reader sees "Busy, in a meeting" losslessly.

use herald_xmpp::{ns, Element};

use super::ical::{BusyInterval, BusyKind};
use super::time::Timestamp;
use crate::availability::model::{with_calendar, Availability, CalendarState, Overlay, State};
use crate::availability::xmpp::{from_presence, state_token, HERALD_AVAILABILITY_NS};

/// The calendar state at `now`.
pub fn state_at(intervals: &[BusyInterval], now: Timestamp) -> CalendarState {
    let strongest = intervals
        .iter()
        .filter(|i| i.start <= now && now < i.end)
        .map(|i| i.kind)
        .max();
    match strongest {
        None => CalendarState::Free,
        Some(BusyKind::Tentative) => CalendarState::Tentative,
        Some(BusyKind::Busy) => CalendarState::Busy,
        Some(BusyKind::OutOfOffice) => CalendarState::OutOfOffice,
    }
}

/// The first instant after `now` at which [`state_at`] may change (an interval starts or
/// ends), if any.
pub fn next_change(intervals: &[BusyInterval], now: Timestamp) -> Option<Timestamp> {
    intervals
        .iter()
        .flat_map(|i| [i.start, i.end])
        .filter(|&t| t > now)
        .min()
}

/// Whether a calendar state changes what watchers see at all (Free and Tentative do not).
pub fn is_overlay(calendar: CalendarState) -> bool {
    calendar.overlay().is_some()
}

/// `presence` (an available presence of one of the user's sessions) as watchers see it while
/// the calendar shows `calendar`. Returns the stanza unchanged when the overlay does not apply
/// (Free/Tentative, DND, offline, not an availability presence).
pub fn overlay_presence(presence: &Element, calendar: CalendarState) -> Element {
    let Ok(own) = from_presence(presence) else {
        return presence.clone();
    };
    let shown = with_calendar(&own, calendar);
    if shown == own {
        return presence.clone();
    }
    rewrite(presence, &shown)
}

/// `presence` with its `<show/>`, `<status/>` and Herald extension replaced by `a`'s.
fn rewrite(presence: &Element, a: &Availability) -> Element {
    let pns = presence.ns().to_owned();
    let mut out = presence.clone();
    out.remove_children("show", &pns);
    out.remove_children("availability", HERALD_AVAILABILITY_NS);
    let show = match a.state {
        State::Available | State::Offline => None,
        State::DoNotDisturb => Some("dnd"),
        State::ExtendedAway => Some("xa"),
        State::Busy | State::BeRightBack | State::Away | State::Idle => Some("away"),
    };
    if let Some(status) = &a.status {
        out.remove_children("status", &pns);
        out.push(Element::new("status", pns.clone()).text_node(status.clone()));
    }
    if let Some(show) = show {
        out.push(Element::new("show", pns.clone()).text_node(show));
    }
    out.push(
        Element::new("availability", HERALD_AVAILABILITY_NS)
            .attr("state", state_token(a.state))
            .attr_opt("overlay", a.overlay.map(Overlay::token)),
    );
    out
}

/// Whether a stanza is in the client or server namespace (a presence Herald may rewrite).
pub fn is_stanza_ns(e: &Element) -> bool {
    e.ns() == ns::CLIENT || e.ns() == ns::SERVER
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::availability::model::IN_A_MEETING;

    fn iv(start: i64, end: i64, kind: BusyKind) -> BusyInterval {
        BusyInterval { start, end, kind }
    }

    #[test]
    fn state_at_and_next_change() {
        use BusyKind::*;
        let ivs = [
            iv(10, 20, Tentative),
            iv(15, 30, Busy),
            iv(25, 26, OutOfOffice),
        ];
        let cases = [
            (0, CalendarState::Free, Some(10)),
            (10, CalendarState::Tentative, Some(15)),
            (15, CalendarState::Busy, Some(20)),
            (25, CalendarState::OutOfOffice, Some(26)),
            (26, CalendarState::Busy, Some(30)),
            (30, CalendarState::Free, None),
        ];
        for (t, want, next) in cases {
            assert_eq!(state_at(&ivs, t), want, "at {t}");
            assert_eq!(next_change(&ivs, t), next, "after {t}");
        }
        assert_eq!(state_at(&[], 5), CalendarState::Free);
    }

    fn pres(show: Option<&str>, status: Option<&str>) -> Element {
        let mut p = Element::new("presence", ns::CLIENT).attr("from", "alice@example.test/phone");
        if let Some(s) = show {
            p.push(Element::new("show", ns::CLIENT).text_node(s));
        }
        if let Some(s) = status {
            p.push(Element::new("status", ns::CLIENT).text_node(s));
        }
        p.push(Element::new("priority", ns::CLIENT).text_node("5"));
        p
    }

    fn seen(p: &Element) -> (Option<String>, Option<String>, Option<String>) {
        let child = |n: &str| p.get_child(n, ns::CLIENT).map(Element::text);
        let ext = p
            .get_child("availability", HERALD_AVAILABILITY_NS)
            .map(|e| {
                format!(
                    "{}/{}",
                    e.get_attr("state").unwrap_or(""),
                    e.get_attr("overlay").unwrap_or("")
                )
            });
        (child("show"), child("status"), ext)
    }

    /// The precedence table of the module documentation, row by row.
    #[test]
    fn overlay_table() {
        use CalendarState::{Busy, Free, OutOfOffice, Tentative};
        let s = |x: &str| Some(x.to_owned());
        type Row = (
            Option<&'static str>,
            Option<&'static str>,
            CalendarState,
            (Option<String>, Option<String>, Option<String>),
        );
        let rows: Vec<Row> = vec![
            (None, None, Free, (None, None, None)),
            (None, Some("hi"), Tentative, (None, s("hi"), None)),
            (
                None,
                None,
                Busy,
                (s("away"), s(IN_A_MEETING), s("busy/in-a-meeting")),
            ),
            (
                None,
                Some("lunch"),
                Busy,
                (s("away"), s(IN_A_MEETING), s("busy/in-a-meeting")),
            ),
            (
                Some("away"),
                None,
                Busy,
                (s("away"), s(IN_A_MEETING), s("busy/in-a-meeting")),
            ),
            (
                Some("xa"),
                None,
                Busy,
                (s("away"), s(IN_A_MEETING), s("busy/in-a-meeting")),
            ),
            (
                Some("chat"),
                None,
                Busy,
                (s("away"), s(IN_A_MEETING), s("busy/in-a-meeting")),
            ),
            (Some("dnd"), None, Busy, (s("dnd"), None, None)),
            (
                Some("dnd"),
                Some("focus"),
                OutOfOffice,
                (s("dnd"), s("focus"), None),
            ),
            (
                None,
                None,
                OutOfOffice,
                (s("away"), None, s("away/out-of-office")),
            ),
            (
                None,
                Some("on leave"),
                OutOfOffice,
                (s("away"), s("on leave"), s("away/out-of-office")),
            ),
        ];
        for (show, status, cal, want) in rows {
            let p = pres(show, status);
            let got = overlay_presence(&p, cal);
            assert_eq!(seen(&got), want, "{show:?}/{status:?} + {cal:?}");
            assert_eq!(
                got.get_child("priority", ns::CLIENT)
                    .map(Element::text)
                    .as_deref(),
                Some("5"),
                "other children kept"
            );
            assert_eq!(got.get_attr("from"), p.get_attr("from"));
        }
    }

    #[test]
    fn unavailable_and_non_availability_presences_are_left_alone() {
        let off = Element::new("presence", ns::CLIENT).attr("type", "unavailable");
        assert_eq!(overlay_presence(&off, CalendarState::Busy), off);
        let sub = Element::new("presence", ns::CLIENT).attr("type", "subscribe");
        assert_eq!(overlay_presence(&sub, CalendarState::Busy), sub);
        let msg = Element::new("message", ns::CLIENT);
        assert_eq!(overlay_presence(&msg, CalendarState::Busy), msg);
    }

    #[test]
    fn a_second_overlay_replaces_the_first() {
        let p = pres(None, Some("mine"));
        let busy = overlay_presence(&p, CalendarState::Busy);
        // The user's own presence is what is stored; overlays are always applied to it, but a
        // stanza already carrying an overlay is also rewritten cleanly.
        let oof = overlay_presence(&busy, CalendarState::OutOfOffice);
        let (_, _, ext) = seen(&oof);
        assert_eq!(ext.as_deref(), Some("away/out-of-office"));
        assert_eq!(
            oof.children()
                .filter(|c| c.name() == "availability")
                .count(),
            1
        );
    }
}
