//! A local user's availability as a SIP watcher sees it: Herald's canonical model mapped through
//! the federation crate's tables to the SIP side (Lync/S4B semantics, MAP-2), then written as
//! PIDF with RPID activities (RFC 3863, RFC 4480). Pure, tested row by row.

use std::sync::OnceLock;

use herald_federation::availability::{Availability, MappingSet, State, System};
use herald_sip::pidf::{Activity, Basic, Presence};

fn tables() -> &'static MappingSet {
    static SET: OnceLock<MappingSet> = OnceLock::new();
    SET.get_or_init(|| MappingSet::defaults().expect("the built-in mapping tables parse"))
}

/// What a SIP watcher sees of `a` (the local user's aggregated availability).
pub fn for_sip_watcher(a: &Availability) -> Availability {
    tables().map(System::LocalCanonical, System::LyncS4b, a)
}

/// The PIDF document for `entity` (`sip:alice@example.com`) showing `a` after mapping: closed
/// when offline; otherwise open, with the RPID activity of the state (busy, away) and the status
/// text (or the state's label) as the note.
pub fn pidf(entity: &str, a: &Availability) -> Presence {
    let seen = for_sip_watcher(a);
    if seen.state == State::Offline {
        return Presence::new(entity, Basic::Closed, None, vec![]);
    }
    let activities = match seen.state {
        State::Available | State::Offline => vec![],
        State::Busy | State::DoNotDisturb => vec![Activity::Busy],
        State::BeRightBack | State::Away | State::ExtendedAway | State::Idle => {
            vec![Activity::Away]
        }
    };
    let note = seen
        .status
        .clone()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| seen.state.label().to_string());
    Presence::new(entity, Basic::Open, Some(&note), activities)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_map_to_basic_activity_and_note() {
        let rows = [
            (
                Availability::new(State::Available),
                Basic::Open,
                None,
                "Available",
            ),
            (
                Availability::new(State::Busy),
                Basic::Open,
                Some(Activity::Busy),
                "Busy",
            ),
            (
                Availability::new(State::Away),
                Basic::Open,
                Some(Activity::Away),
                "Away",
            ),
            (
                Availability::with_status(State::Available, "at lunch"),
                Basic::Open,
                None,
                "at lunch",
            ),
            (Availability::offline(), Basic::Closed, None, ""),
        ];
        for (a, basic, activity, note) in rows {
            let p = pidf("sip:alice@h.test", &a);
            assert_eq!(p.basic(), basic, "{a:?}");
            assert_eq!(p.activities().first(), activity.as_ref(), "{a:?}");
            assert_eq!(p.note().unwrap_or(""), note, "{a:?}");
            // What we write, we read back the same.
            let back = Presence::parse(p.to_xml().as_bytes()).unwrap();
            assert_eq!(back.basic(), basic);
        }
    }

    #[test]
    fn every_state_is_open_except_offline() {
        for s in State::ALL {
            let p = pidf("sip:a@h.test", &Availability::new(s));
            assert_eq!(p.basic() == Basic::Closed, s == State::Offline, "{s:?}");
        }
    }
}
