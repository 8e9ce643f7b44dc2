//! The systems availability is mapped between (REQUIREMENTS §24.8 `source_system` /
//! `target_system`), what each can show, and how a state it cannot show degrades.

use std::fmt;

use super::model::{Availability, State};

/// A presence system: one side of a mapping table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum System {
    /// Herald's own model (lossless); a local user seen by local watchers.
    LocalCanonical,
    /// A Cisco Jabber–style rich client on our side (Busy and Idle, no Extended Away).
    Jabber,
    /// An RFC 6121 XMPP client or server (`<show/>` values, plus Idle as XEP-0319 or
    /// Away with status "Idle").
    GenericXmpp,
    /// Microsoft Lync / Skype for Business / Office 365 over SIP.
    LyncS4b,
    /// IBM Sametime.
    Sametime,
    /// Webex Connect.
    Webex,
    /// A federated Herald (or Cisco IM and Presence) cluster; the seed's "Federated Cisco Jabber".
    FederatedHerald,
    /// An Outlook / Exchange calendar (Table 1-1); see `MappingSet::with_calendar`.
    OutlookCalendar,
}

impl System {
    /// Every system.
    pub const ALL: [System; 8] = [
        System::LocalCanonical,
        System::Jabber,
        System::GenericXmpp,
        System::LyncS4b,
        System::Sametime,
        System::Webex,
        System::FederatedHerald,
        System::OutlookCalendar,
    ];

    /// The name used in table headers ("LYNC_S4B").
    pub fn name(self) -> &'static str {
        match self {
            System::LocalCanonical => "LOCAL_CANONICAL",
            System::Jabber => "JABBER",
            System::GenericXmpp => "GENERIC_XMPP",
            System::LyncS4b => "LYNC_S4B",
            System::Sametime => "SAMETIME",
            System::Webex => "WEBEX",
            System::FederatedHerald => "FEDERATED_HERALD",
            System::OutlookCalendar => "OUTLOOK_CALENDAR",
        }
    }

    /// Parses [`System::name`], ignoring ASCII case; `FEDERATED_IMP` (the §24.8 spelling) is
    /// accepted for [`System::FederatedHerald`].
    pub fn from_name(name: &str) -> Option<System> {
        let name = name.trim();
        if name.eq_ignore_ascii_case("FEDERATED_IMP") {
            return Some(System::FederatedHerald);
        }
        System::ALL
            .into_iter()
            .find(|s| s.name().eq_ignore_ascii_case(name))
    }

    /// True when the system can show `state` natively. Derived from the seed tables: every
    /// target cell of a table names a state its target system supports (a test checks this).
    pub fn supports(self, state: State) -> bool {
        use State::*;
        match self {
            System::LocalCanonical | System::FederatedHerald | System::OutlookCalendar => true,
            System::Jabber => matches!(
                state,
                Available | Busy | DoNotDisturb | Away | Idle | Offline
            ),
            System::GenericXmpp | System::Webex => matches!(
                state,
                Available | DoNotDisturb | Away | ExtendedAway | Idle | Offline
            ),
            System::LyncS4b => matches!(
                state,
                Available | Busy | DoNotDisturb | BeRightBack | Away | Offline
            ),
            System::Sametime => matches!(state, Available | DoNotDisturb | Away | Idle | Offline),
        }
    }

    /// True for the systems that carry Herald's model without loss.
    pub fn is_lossless(self) -> bool {
        matches!(self, System::LocalCanonical | System::FederatedHerald)
    }

    /// Source systems whose tables stand in for this one when no table has it as source:
    /// Herald's local user is the seed's IM and Presence user, i.e. the Jabber rows first, then
    /// the third-party XMPP rows (for Extended Away, which Jabber lacks).
    pub(crate) fn source_stand_ins(self) -> &'static [System] {
        match self {
            System::LocalCanonical => &[System::Jabber, System::GenericXmpp],
            _ => &[],
        }
    }

    /// Target systems whose tables stand in for this one when no table has it as target:
    /// Herald's local watcher sees what the seed's Jabber client sees.
    pub(crate) fn target_stand_ins(self) -> &'static [System] {
        match self {
            System::LocalCanonical => &[System::Jabber],
            _ => &[],
        }
    }
}

impl fmt::Display for System {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One step towards a plainer equivalent (MAP-3, MAP-4, MAP-6): Do Not Disturb → Busy,
/// Busy → Away with status "Busy", Idle → Away with status "Idle" (the status only when there is
/// none), Be Right Back and Extended Away → Away. None for Available, Away and Offline, which
/// every system shows. Status text and overlay are otherwise kept (MAP-5).
pub fn plainer(a: &Availability) -> Option<Availability> {
    let (next, marker) = match a.state {
        State::DoNotDisturb => (State::Busy, None),
        State::Busy => (State::Away, Some("Busy")),
        State::Idle => (State::Away, Some("Idle")),
        State::BeRightBack | State::ExtendedAway => (State::Away, None),
        State::Available | State::Away | State::Offline => return None,
    };
    let mut out = a.clone();
    out.state = next;
    if out.status.is_none() {
        out.status = marker.map(str::to_owned);
    }
    Some(out)
}

/// The XMPP form of Idle and Busy without status text (MAP-3, MAP-4, Table 1 rule): Away with
/// status "Idle" / "Busy". None for anything else.
pub fn xmpp_form(a: &Availability) -> Option<Availability> {
    let marker = match a.state {
        State::Idle => "Idle",
        State::Busy => "Busy",
        _ => return None,
    };
    a.status.is_none().then(|| Availability {
        state: State::Away,
        status: Some(marker.to_owned()),
        overlay: a.overlay,
    })
}

/// Applies [`plainer`] until `system` supports the state.
pub fn degrade(system: System, a: &Availability) -> Availability {
    let mut out = a.clone();
    while !system.supports(out.state) {
        match plainer(&out) {
            Some(next) => out = next,
            None => break,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for s in System::ALL {
            assert_eq!(System::from_name(s.name()), Some(s));
            assert_eq!(System::from_name(&s.name().to_lowercase()), Some(s));
        }
        assert_eq!(
            System::from_name("FEDERATED_IMP"),
            Some(System::FederatedHerald)
        );
        assert_eq!(System::from_name("ICQ"), None);
    }

    #[test]
    fn every_system_shows_available_away_and_offline() {
        for s in System::ALL {
            for state in [State::Available, State::Away, State::Offline] {
                assert!(s.supports(state), "{s} {state}");
            }
        }
    }

    #[test]
    fn degrade_table() {
        use State::*;
        let cases: Vec<(System, Availability, Availability)> = vec![
            (
                System::GenericXmpp,
                Availability::new(Busy),
                Availability::with_status(Away, "Busy"),
            ),
            (
                System::GenericXmpp,
                Availability::new(Idle),
                Availability::new(Idle),
            ),
            (
                System::Jabber,
                Availability::new(BeRightBack),
                Availability::new(Away),
            ),
            (
                System::GenericXmpp,
                Availability::with_status(Busy, "call"),
                Availability::with_status(Away, "call"),
            ),
            (
                System::GenericXmpp,
                Availability::new(BeRightBack),
                Availability::new(Away),
            ),
            (
                System::Jabber,
                Availability::new(ExtendedAway),
                Availability::new(Away),
            ),
            (
                System::LyncS4b,
                Availability::new(Idle),
                Availability::with_status(Away, "Idle"),
            ),
            (
                System::LyncS4b,
                Availability::new(ExtendedAway),
                Availability::new(Away),
            ),
            (
                System::Webex,
                Availability::new(Busy),
                Availability::with_status(Away, "Busy"),
            ),
            (
                System::Sametime,
                Availability::new(ExtendedAway),
                Availability::new(Away),
            ),
            (
                System::LyncS4b,
                Availability::new(Busy),
                Availability::new(Busy),
            ),
            (
                System::LocalCanonical,
                Availability::new(Idle),
                Availability::new(Idle),
            ),
            (
                System::Sametime,
                Availability::offline(),
                Availability::offline(),
            ),
        ];
        for (system, input, want) in cases {
            assert_eq!(degrade(system, &input), want, "{system} {input:?}");
        }
    }

    #[test]
    fn degrade_always_lands_on_a_supported_state() {
        for system in System::ALL {
            for state in State::ALL {
                let out = degrade(system, &Availability::new(state));
                assert!(system.supports(out.state), "{system} {state} -> {out:?}");
            }
        }
    }
}
