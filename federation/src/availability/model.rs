//! The canonical availability model (MAP-1): one internal form rich enough to carry every state
//! the seed tables name (Tables 1–7 and 1-1) without loss, plus free status text and the calendar
//! overlay.
//!
//! Two user-level operations live here as pure functions:
//!
//! - [`aggregate`]: one availability for a user with several resources (sessions);
//! - [`with_calendar`] / [`overlay_calendar`]: the calendar overlay of MAP-9 on top of it.
//!
//! Order of application: aggregate the sessions first, then overlay the calendar, then map the
//! result to each watcher's system (`tables`) and wire form (`xmpp`).

use std::cmp::Reverse;
use std::fmt;

/// An availability state. Every state named by the seed tables has its own variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum State {
    /// Available (XMPP: no `<show/>` or `chat`).
    Available,
    /// Busy (Lync, Jabber); XMPP has no equivalent (Away with status "Busy").
    Busy,
    /// Do not disturb (XMPP `dnd`).
    DoNotDisturb,
    /// Be right back (Lync only; Away elsewhere, MAP-6).
    BeRightBack,
    /// Away (XMPP `away`).
    Away,
    /// Extended away (XMPP `xa`).
    ExtendedAway,
    /// Idle (Jabber, Webex, Sametime; Away with status "Idle" on XMPP, MAP-4).
    Idle,
    /// Offline (XMPP `type='unavailable'`).
    Offline,
}

impl State {
    /// Every state, in declaration order.
    pub const ALL: [State; 8] = [
        State::Available,
        State::Busy,
        State::DoNotDisturb,
        State::BeRightBack,
        State::Away,
        State::ExtendedAway,
        State::Idle,
        State::Offline,
    ];

    /// The state's name as the seed tables spell it ("Do Not Disturb").
    pub fn label(self) -> &'static str {
        match self {
            State::Available => "Available",
            State::Busy => "Busy",
            State::DoNotDisturb => "Do Not Disturb",
            State::BeRightBack => "Be Right Back",
            State::Away => "Away",
            State::ExtendedAway => "Extended Away",
            State::Idle => "Idle",
            State::Offline => "Offline",
        }
    }

    /// Parses a seed label, ignoring ASCII case and runs of white space.
    pub fn from_label(text: &str) -> Option<State> {
        let wanted = normalize_words(text);
        State::ALL
            .into_iter()
            .find(|s| s.label().eq_ignore_ascii_case(&wanted))
    }

    /// How available the state is, 0 = most. The order follows the activity ranking of
    /// Microsoft's availability values (Available, idle-online, Busy, Do Not Disturb, Be Right
    /// Back, Away, Offline) with Extended Away after Away; [`aggregate`] uses it to break ties.
    pub fn activity_rank(self) -> u8 {
        match self {
            State::Available => 0,
            State::Idle => 1,
            State::Busy => 2,
            State::DoNotDisturb => 3,
            State::BeRightBack => 4,
            State::Away => 5,
            State::ExtendedAway => 6,
            State::Offline => 7,
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// A calendar-derived overlay on the availability (MAP-9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Overlay {
    /// The calendar shows a meeting now (Outlook Busy).
    InAMeeting,
    /// The calendar shows out-of-office (Outlook 2003/2007 Out-of-Office, Outlook 2010 Away).
    OutOfOffice,
}

impl Overlay {
    /// Both overlays.
    pub const ALL: [Overlay; 2] = [Overlay::InAMeeting, Overlay::OutOfOffice];

    /// A stable lower-case token ("in-a-meeting"), used on Herald's own wire form.
    pub fn token(self) -> &'static str {
        match self {
            Overlay::InAMeeting => "in-a-meeting",
            Overlay::OutOfOffice => "out-of-office",
        }
    }

    /// Parses [`Overlay::token`].
    pub fn from_token(token: &str) -> Option<Overlay> {
        Overlay::ALL.into_iter().find(|o| o.token() == token)
    }
}

/// The status text Herald publishes while the calendar shows a meeting (MAP-9).
pub const IN_A_MEETING: &str = "In a meeting";

/// One availability: a state, optional free status text, optional calendar overlay.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Availability {
    /// The state.
    pub state: State,
    /// Free status text ("In a meeting", "Busy", or whatever the user typed).
    pub status: Option<String>,
    /// The calendar overlay in force, if any.
    pub overlay: Option<Overlay>,
}

impl Availability {
    /// `state` with no status text and no overlay.
    pub fn new(state: State) -> Self {
        Availability {
            state,
            status: None,
            overlay: None,
        }
    }

    /// `state` with status text `status`.
    pub fn with_status(state: State, status: impl Into<String>) -> Self {
        Availability {
            state,
            status: Some(status.into()),
            overlay: None,
        }
    }

    /// Offline, no status.
    pub fn offline() -> Self {
        Availability::new(State::Offline)
    }

    /// True when the status text equals `text`, ignoring ASCII case and surrounding or repeated
    /// white space (so `"in a  meeting "` matches `"In a meeting"`).
    pub fn status_is(&self, text: &str) -> bool {
        self.status
            .as_deref()
            .is_some_and(|s| normalize_words(s).eq_ignore_ascii_case(&normalize_words(text)))
    }
}

impl Default for Availability {
    /// Offline: a user with no session.
    fn default() -> Self {
        Availability::offline()
    }
}

/// A user's calendar state as the calendar gateway reports it (Table 1-1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CalendarState {
    /// No meeting.
    Free,
    /// A tentative meeting (treated like Free).
    Tentative,
    /// A meeting now.
    Busy,
    /// Out of office: Outlook 2003/2007 "Out-of-Office" and Outlook 2010 "Away" are this state.
    OutOfOffice,
}

impl CalendarState {
    /// Every calendar state.
    pub const ALL: [CalendarState; 4] = [
        CalendarState::Free,
        CalendarState::Tentative,
        CalendarState::Busy,
        CalendarState::OutOfOffice,
    ];

    /// Parses an Outlook name as Table 1-1 prints it: "Free", "Tentative", "Busy",
    /// "Out-of-Office" (or "Out of Office") and the Outlook 2010 name "Away". ASCII case and
    /// white space are ignored.
    pub fn from_label(text: &str) -> Option<CalendarState> {
        let t = normalize_words(&text.replace('-', " ")).to_ascii_lowercase();
        match t.as_str() {
            "free" => Some(CalendarState::Free),
            "tentative" => Some(CalendarState::Tentative),
            "busy" => Some(CalendarState::Busy),
            "out of office" | "away" => Some(CalendarState::OutOfOffice),
            _ => None,
        }
    }

    /// The overlay this calendar state puts on the user (None for Free and Tentative).
    pub fn overlay(self) -> Option<Overlay> {
        match self {
            CalendarState::Free | CalendarState::Tentative => None,
            CalendarState::Busy => Some(Overlay::InAMeeting),
            CalendarState::OutOfOffice => Some(Overlay::OutOfOffice),
        }
    }

    /// The state the built-in Table 1-1 publishes for this calendar state; None = no change
    /// (Free/Tentative leave the user's own state alone). The seed's "Idle/Busy" is Busy (MAP-9).
    pub fn default_state(self) -> Option<State> {
        match self {
            CalendarState::Free | CalendarState::Tentative => None,
            CalendarState::Busy => Some(State::Busy),
            CalendarState::OutOfOffice => Some(State::Away),
        }
    }
}

/// One availability for a user with several sessions, given as (availability, RFC 6121
/// priority) pairs.
///
/// Online sessions are preferred over offline ones; among them the highest priority wins (a
/// negative priority still counts for presence); on equal priority the most available state wins
/// ([`State::activity_rank`]); on a full tie the first session in the slice wins. The winner's
/// status text and overlay are kept. With no online session the result is the highest-priority
/// offline entry (keeping its status text), or plain Offline for an empty slice.
pub fn aggregate(sessions: &[(Availability, i8)]) -> Availability {
    let best = |online: bool| {
        sessions
            .iter()
            .filter(|(a, _)| (a.state != State::Offline) == online)
            .min_by_key(|(a, priority)| (Reverse(*priority), a.state.activity_rank()))
            .map(|(a, _)| a.clone())
    };
    best(true)
        .or_else(|| best(false))
        .unwrap_or_else(Availability::offline)
}

/// MAP-9 with the built-in Table 1-1 and the default policy (a manual Do Not Disturb wins over
/// the calendar, `CalendarSettings.manual_state_overrides_calendar = true`).
///
/// - Offline, or Do Not Disturb set by the user: unchanged.
/// - Calendar Busy: Busy with status "In a meeting" and overlay [`Overlay::InAMeeting`].
/// - Calendar Out-of-Office (Outlook 2010 "Away"): Away with overlay [`Overlay::OutOfOffice`],
///   keeping the user's status text.
/// - Free or Tentative: unchanged.
pub fn with_calendar(base: &Availability, calendar: CalendarState) -> Availability {
    overlay_calendar(base, calendar, calendar.default_state(), true)
}

/// MAP-9 with an explicit published state (from an operator's Table 1-1; None = no change) and
/// policy. `manual_state_overrides_calendar` lets a manual Do Not Disturb win over the calendar;
/// Offline always wins (a calendar never makes an offline user look online, MAP-8).
pub fn overlay_calendar(
    base: &Availability,
    calendar: CalendarState,
    published: Option<State>,
    manual_state_overrides_calendar: bool,
) -> Availability {
    let Some(state) = published else {
        return base.clone();
    };
    if base.state == State::Offline
        || (manual_state_overrides_calendar && base.state == State::DoNotDisturb)
    {
        return base.clone();
    }
    let overlay = calendar.overlay();
    let status = match overlay {
        Some(Overlay::InAMeeting) => Some(IN_A_MEETING.to_owned()),
        _ => base.status.clone(),
    };
    Availability {
        state,
        status,
        overlay,
    }
}

/// Trims and collapses runs of white space to one space.
pub(crate) fn normalize_words(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn av(state: State) -> Availability {
        Availability::new(state)
    }

    #[test]
    fn labels_round_trip_and_ignore_case_and_spacing() {
        for s in State::ALL {
            assert_eq!(State::from_label(s.label()), Some(s));
            assert_eq!(State::from_label(&s.label().to_uppercase()), Some(s));
        }
        assert_eq!(
            State::from_label("  do   not disturb "),
            Some(State::DoNotDisturb)
        );
        assert_eq!(State::from_label("Lunch"), None);
        assert_eq!(State::from_label(""), None);
    }

    #[test]
    fn calendar_labels() {
        let cases = [
            ("Free", Some(CalendarState::Free)),
            ("tentative", Some(CalendarState::Tentative)),
            ("Busy", Some(CalendarState::Busy)),
            ("Out-of-Office", Some(CalendarState::OutOfOffice)),
            ("Out of Office", Some(CalendarState::OutOfOffice)),
            ("Away", Some(CalendarState::OutOfOffice)),
            ("Working elsewhere", None),
        ];
        for (text, want) in cases {
            assert_eq!(CalendarState::from_label(text), want, "{text}");
        }
    }

    #[test]
    fn status_is_ignores_case_and_spacing() {
        let a = Availability::with_status(State::Away, " in a  MEETING ");
        assert!(a.status_is("In a meeting"));
        assert!(!a.status_is("In a meeting room"));
        assert!(!av(State::Away).status_is("In a meeting"));
    }

    #[test]
    fn aggregation_table() {
        use State::*;
        let s = |state: State, p: i8| (av(state), p);
        type Case = (&'static str, Vec<(Availability, i8)>, State);
        let cases: Vec<Case> = vec![
            ("no session", vec![], Offline),
            ("one session", vec![s(Away, 0)], Away),
            (
                "priority beats state",
                vec![s(Available, 0), s(Away, 5)],
                Away,
            ),
            ("negative priority still counts", vec![s(Away, -1)], Away),
            (
                "online beats offline",
                vec![s(Offline, 10), s(Away, -5)],
                Away,
            ),
            (
                "tie: available",
                vec![s(Away, 1), s(Available, 1)],
                Available,
            ),
            ("tie: idle over busy", vec![s(Busy, 1), s(Idle, 1)], Idle),
            (
                "tie: busy over dnd",
                vec![s(DoNotDisturb, 1), s(Busy, 1)],
                Busy,
            ),
            (
                "tie: dnd over away",
                vec![s(Away, 1), s(DoNotDisturb, 1)],
                DoNotDisturb,
            ),
            (
                "tie: brb over away",
                vec![s(Away, 1), s(BeRightBack, 1)],
                BeRightBack,
            ),
            (
                "tie: away over xa",
                vec![s(ExtendedAway, 1), s(Away, 1)],
                Away,
            ),
            ("all offline", vec![s(Offline, 1), s(Offline, 2)], Offline),
        ];
        for (name, sessions, want) in cases {
            assert_eq!(aggregate(&sessions).state, want, "{name}");
        }
    }

    #[test]
    fn aggregation_keeps_the_winners_status_and_overlay() {
        let mut meeting = Availability::with_status(State::Busy, IN_A_MEETING);
        meeting.overlay = Some(Overlay::InAMeeting);
        let sessions = [
            (Availability::with_status(State::Away, "gone"), 0),
            (meeting.clone(), 3),
        ];
        assert_eq!(aggregate(&sessions), meeting);

        let offline = [
            (Availability::with_status(State::Offline, "low"), 0),
            (Availability::with_status(State::Offline, "high"), 9),
        ];
        assert_eq!(
            aggregate(&offline),
            Availability::with_status(State::Offline, "high")
        );

        let tie = [
            (Availability::with_status(State::Away, "first"), 0),
            (Availability::with_status(State::Away, "second"), 0),
        ];
        assert_eq!(aggregate(&tie).status.as_deref(), Some("first"));
    }

    #[test]
    fn calendar_precedence_table() {
        use CalendarState::{Busy as CalBusy, Free, OutOfOffice, Tentative};
        use State::*;
        let mut meeting = Availability::with_status(Busy, IN_A_MEETING);
        meeting.overlay = Some(Overlay::InAMeeting);
        let oof = |base: Availability| Availability {
            state: Away,
            status: base.status,
            overlay: Some(Overlay::OutOfOffice),
        };
        let lunch = |state| Availability::with_status(state, "lunch");
        let cases: Vec<(Availability, CalendarState, Availability)> = vec![
            (av(Available), Free, av(Available)),
            (av(Available), Tentative, av(Available)),
            (lunch(Away), Free, lunch(Away)),
            (av(Available), CalBusy, meeting.clone()),
            (lunch(Available), CalBusy, meeting.clone()),
            (av(Away), CalBusy, meeting.clone()),
            (av(Idle), CalBusy, meeting.clone()),
            (av(Busy), CalBusy, meeting.clone()),
            (av(DoNotDisturb), CalBusy, av(DoNotDisturb)),
            (av(Offline), CalBusy, av(Offline)),
            (av(Available), OutOfOffice, oof(av(Available))),
            (lunch(Available), OutOfOffice, oof(lunch(Available))),
            (av(ExtendedAway), OutOfOffice, oof(av(ExtendedAway))),
            (av(DoNotDisturb), OutOfOffice, av(DoNotDisturb)),
            (av(Offline), OutOfOffice, av(Offline)),
        ];
        for (base, cal, want) in cases {
            assert_eq!(with_calendar(&base, cal), want, "{base:?} + {cal:?}");
        }
    }

    #[test]
    fn calendar_can_win_over_dnd_when_the_policy_says_so_but_never_over_offline() {
        let dnd = av(State::DoNotDisturb);
        let got = overlay_calendar(&dnd, CalendarState::Busy, Some(State::Busy), false);
        assert_eq!(got.state, State::Busy);
        assert_eq!(got.overlay, Some(Overlay::InAMeeting));
        let off = av(State::Offline);
        assert_eq!(
            overlay_calendar(&off, CalendarState::Busy, Some(State::Busy), false),
            off
        );
    }

    #[test]
    fn overlay_tokens_round_trip() {
        for o in Overlay::ALL {
            assert_eq!(Overlay::from_token(o.token()), Some(o));
        }
        assert_eq!(Overlay::from_token("lunch"), None);
    }
}
