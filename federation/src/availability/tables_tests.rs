use super::*;
use crate::availability::cell::StatusSpec;
use crate::availability::model::{with_calendar, Overlay, IN_A_MEETING};

use State::*;
use System::*;

fn set() -> MappingSet {
    match MappingSet::defaults() {
        Ok(set) => set,
        Err(e) => panic!("built-in tables: {e}"),
    }
}

fn av(state: State) -> Availability {
    Availability::new(state)
}

fn avs(state: State, status: &str) -> Availability {
    Availability::with_status(state, status)
}

/// The seed tables, parsed as printed (before amendments).
fn seed_tables() -> Vec<MappingTable> {
    DEFAULT_FILES[..7]
        .iter()
        .flat_map(|(file, text)| match parse_tsv(text) {
            Ok(tables) => tables,
            Err(e) => panic!("{file}: {e}"),
        })
        .collect()
}

/// Cells the amendments change: (source, target, source cell).
const AMENDED: [(System, System, State); 2] = [
    (LyncS4b, GenericXmpp, Busy),
    (LyncS4b, GenericXmpp, DoNotDisturb),
];

#[test]
fn defaults_load_every_seed_table() {
    let set = set();
    let pairs: Vec<(System, System)> = set.tables().map(|t| (t.source, t.target)).collect();
    assert_eq!(pairs.len(), 16, "{pairs:?}");
    for t in seed_tables() {
        assert!(
            set.table(t.source, t.target).is_some(),
            "{} {}",
            t.source,
            t.target
        );
    }
    assert_eq!(set.calendar().rows().len(), 4);
}

#[test]
fn every_seed_row_maps_as_printed() {
    let set = set();
    let mut checked = 0;
    for seed in seed_tables() {
        let table = set.table(seed.source, seed.target).expect("loaded");
        for (seed_row, row) in seed.rows.iter().zip(&table.rows) {
            assert_eq!(seed_row.source, row.source);
            let amended = AMENDED.contains(&(seed.source, seed.target, row.source.state));
            assert_eq!(seed_row.target != row.target, amended, "{seed_row:?}");
            let free_texts: &[Option<&str>] = match row.source.status {
                StatusSpec::Text(_) => &[None],
                _ => &[None, Some("lunch")],
            };
            for &free in free_texts {
                let input = row.source.example(free);
                let want_status = match (&row.target.status, &row.source.status) {
                    (StatusSpec::Text(t), _) => Some(t.clone()),
                    (StatusSpec::Message, _) => input.status.clone(),
                    (StatusSpec::Plain, StatusSpec::Text(_)) => None,
                    (StatusSpec::Plain, _) => input.status.clone(),
                };
                let want = Availability {
                    state: row.target.state,
                    status: want_status,
                    overlay: None,
                };
                let got = set.map(seed.source, seed.target, &input);
                assert_eq!(
                    got, want,
                    "{} -> {}: {} (input {input:?})",
                    seed.source, seed.target, row.source
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 80, "only {checked} rows checked");
}

#[test]
fn asymmetries_and_resolution_pins() {
    let mut meeting = avs(Busy, IN_A_MEETING);
    meeting.overlay = Some(Overlay::InAMeeting);
    let cases: Vec<(&str, System, System, Availability, Availability)> = vec![
        (
            "T1 Lync Busy -> Jabber",
            LyncS4b,
            Jabber,
            av(Busy),
            av(Busy),
        ),
        ("T1 rule", LyncS4b, GenericXmpp, av(Busy), avs(Away, "Busy")),
        (
            "T1 rule DND",
            LyncS4b,
            GenericXmpp,
            av(DoNotDisturb),
            avs(Away, "Busy"),
        ),
        (
            "T1 DND -> Jabber Busy",
            LyncS4b,
            Jabber,
            av(DoNotDisturb),
            av(Busy),
        ),
        (
            "T1 BRB, MAP-6",
            LyncS4b,
            GenericXmpp,
            av(BeRightBack),
            av(Away),
        ),
        (
            "T1 BRB -> Jabber",
            LyncS4b,
            Jabber,
            av(BeRightBack),
            av(Away),
        ),
        (
            "T1 free text kept",
            LyncS4b,
            Jabber,
            avs(Away, "lunch"),
            avs(Away, "lunch"),
        ),
        (
            "T2 DND -> Busy",
            Jabber,
            LyncS4b,
            av(DoNotDisturb),
            av(Busy),
        ),
        (
            "T3 XA -> Away",
            GenericXmpp,
            LyncS4b,
            av(ExtendedAway),
            av(Away),
        ),
        (
            "T3 DND -> Busy",
            GenericXmpp,
            LyncS4b,
            av(DoNotDisturb),
            av(Busy),
        ),
        (
            "T4 meeting, case-insensitive",
            Sametime,
            Jabber,
            avs(Available, "in a MEETING"),
            avs(Available, "in a MEETING"),
        ),
        (
            "T4 meeting to XMPP",
            Sametime,
            GenericXmpp,
            avs(Available, "In a meeting"),
            avs(Available, "In a meeting"),
        ),
        (
            "T5 meeting becomes available",
            Webex,
            GenericXmpp,
            avs(Away, "In a meeting"),
            avs(Available, "In a meeting"),
        ),
        (
            "T5 other away text",
            Webex,
            GenericXmpp,
            avs(Away, "gym"),
            avs(Away, "gym"),
        ),
        ("T6 Busy -> Webex Idle", Jabber, Webex, av(Busy), av(Idle)),
        (
            "T6 Busy -> Sametime Away",
            Jabber,
            Sametime,
            av(Busy),
            av(Away),
        ),
        (
            "T6 Busy -> XMPP Away",
            Jabber,
            GenericXmpp,
            av(Busy),
            av(Away),
        ),
        (
            "T7 idle -> Jabber",
            GenericXmpp,
            FederatedHerald,
            avs(Away, "Idle"),
            av(Idle),
        ),
        (
            "T7 idle -> XMPP",
            GenericXmpp,
            GenericXmpp,
            avs(Away, "idle"),
            avs(Away, "Idle"),
        ),
        (
            "T7 XA -> Webex",
            GenericXmpp,
            Webex,
            av(ExtendedAway),
            av(ExtendedAway),
        ),
        (
            "T7 XA -> Sametime",
            GenericXmpp,
            Sametime,
            av(ExtendedAway),
            av(Away),
        ),
        (
            "XEP-0319 idle via T7",
            GenericXmpp,
            Webex,
            av(Idle),
            avs(Away, "Idle"),
        ),
        (
            "XEP-0319 idle to Jabber",
            GenericXmpp,
            FederatedHerald,
            av(Idle),
            av(Idle),
        ),
        (
            "Jabber Away -> Lync (no row)",
            Jabber,
            LyncS4b,
            av(Away),
            av(Away),
        ),
        (
            "Jabber Idle -> Lync (no row)",
            Jabber,
            LyncS4b,
            av(Idle),
            avs(Away, "Idle"),
        ),
        (
            "no table: Sametime -> Lync",
            Sametime,
            LyncS4b,
            av(Idle),
            avs(Away, "Idle"),
        ),
        (
            "no table: Lync -> Webex",
            LyncS4b,
            Webex,
            av(Busy),
            avs(Away, "Busy"),
        ),
        (
            "same system",
            LyncS4b,
            LyncS4b,
            av(BeRightBack),
            av(BeRightBack),
        ),
        (
            "lossless pair",
            FederatedHerald,
            LocalCanonical,
            meeting.clone(),
            meeting.clone(),
        ),
        (
            "lossless pair back",
            LocalCanonical,
            FederatedHerald,
            av(ExtendedAway),
            av(ExtendedAway),
        ),
        (
            "local -> Lync via Jabber",
            LocalCanonical,
            LyncS4b,
            av(DoNotDisturb),
            av(Busy),
        ),
        (
            "local XA -> Lync via XMPP rows",
            LocalCanonical,
            LyncS4b,
            av(ExtendedAway),
            av(Away),
        ),
        (
            "local BRB -> Lync natively",
            LocalCanonical,
            LyncS4b,
            av(BeRightBack),
            av(BeRightBack),
        ),
        (
            "idle with text is not the T7 cell",
            GenericXmpp,
            Webex,
            avs(Idle, "zzz"),
            avs(Idle, "zzz"),
        ),
        (
            "source without the state",
            LyncS4b,
            GenericXmpp,
            av(ExtendedAway),
            av(ExtendedAway),
        ),
        (
            "local Idle -> XMPP via T6",
            LocalCanonical,
            GenericXmpp,
            av(Idle),
            av(Idle),
        ),
        (
            "local Away -> XMPP via T7",
            LocalCanonical,
            GenericXmpp,
            av(Away),
            av(Away),
        ),
        (
            "local Busy -> Webex via T6",
            LocalCanonical,
            Webex,
            av(Busy),
            av(Idle),
        ),
        (
            "Lync -> local via Jabber",
            LyncS4b,
            LocalCanonical,
            av(DoNotDisturb),
            av(Busy),
        ),
        (
            "Webex -> local via Jabber",
            Webex,
            LocalCanonical,
            avs(Away, "In a meeting"),
            avs(Away, "In a meeting"),
        ),
        (
            "XMPP -> local",
            GenericXmpp,
            LocalCanonical,
            avs(Away, "Idle"),
            avs(Away, "Idle"),
        ),
        (
            "MAP-10 meeting -> Lync",
            LocalCanonical,
            LyncS4b,
            meeting.clone(),
            meeting.clone(),
        ),
        (
            "MAP-10 meeting -> XMPP",
            LocalCanonical,
            GenericXmpp,
            meeting.clone(),
            Availability {
                state: Away,
                ..meeting.clone()
            },
        ),
    ];
    let set = set();
    for (name, from, to, input, want) in cases {
        assert_eq!(set.map(from, to, &input), want, "{name}");
    }
}

#[test]
fn offline_always_maps_to_offline() {
    let set = set();
    for from in System::ALL {
        for to in System::ALL {
            for input in [av(Offline), avs(Offline, "bye")] {
                let got = set.map(from, to, &input);
                assert_eq!(got, input, "{from} -> {to}");
            }
        }
    }
}

#[test]
fn results_are_states_the_target_shows() {
    let set = set();
    for t in set.tables() {
        for row in &t.rows {
            assert!(
                t.source.supports(row.source.state),
                "{} {}",
                t.source,
                row.source
            );
            assert!(
                t.target.supports(row.target.state),
                "{} {}",
                t.target,
                row.target
            );
        }
    }
    for from in System::ALL {
        for to in System::ALL {
            for state in State::ALL {
                let got = set.map(from, to, &av(state));
                assert!(
                    to.supports(got.state),
                    "{from} -> {to}: {state} gave {got:?}"
                );
            }
        }
    }
}

#[test]
fn round_trips_where_the_tables_allow() {
    // (there, back, state, what comes back)
    let cases = [
        (LyncS4b, Jabber, Available, av(Available)),
        (LyncS4b, Jabber, Busy, av(Busy)),
        (LyncS4b, Jabber, Away, av(Away)),
        (LyncS4b, Jabber, DoNotDisturb, av(Busy)),
        (LyncS4b, Jabber, BeRightBack, av(Away)),
        (LyncS4b, Jabber, Offline, av(Offline)),
        (GenericXmpp, LyncS4b, Available, av(Available)),
        (GenericXmpp, LyncS4b, Away, av(Away)),
        (GenericXmpp, LyncS4b, ExtendedAway, av(Away)),
        (GenericXmpp, LyncS4b, DoNotDisturb, avs(Away, "Busy")),
        (Jabber, FederatedHerald, Busy, av(Busy)),
        (Jabber, FederatedHerald, Idle, av(Idle)),
        (GenericXmpp, GenericXmpp, ExtendedAway, av(ExtendedAway)),
    ];
    let set = set();
    for (a, b, state, want) in cases {
        let there = set.map(a, b, &av(state));
        let back = set.map(b, a, &there);
        assert_eq!(back, want, "{a} -> {b} -> {a}: {state}");
    }
}

#[test]
fn calendar_rows_of_table_1_1() {
    let set = set();
    // Table 1-1 as printed: Free/Tentative → Available, Busy → Idle/Busy, OOF/Away → Away.
    let cases = [
        (CalendarState::Free, Available),
        (CalendarState::Tentative, Available),
        (CalendarState::Busy, Busy),
        (CalendarState::OutOfOffice, Away),
    ];
    for (cal, want) in cases {
        assert_eq!(set.calendar().state_for(cal), Some(want), "{cal:?}");
        let got = set.with_calendar(&av(Available), cal, true);
        assert_eq!(got.state, want, "{cal:?}");
        assert_eq!(got.overlay, cal.overlay(), "{cal:?}");
    }
    // The table-driven overlay agrees with the built-in one for every base state.
    for base in State::ALL {
        for cal in CalendarState::ALL {
            let b = avs(base, "mine");
            assert_eq!(set.with_calendar(&b, cal, true), with_calendar(&b, cal));
        }
    }
}

#[test]
fn operator_tables_replace_defaults() {
    let mut set = set();
    assert_eq!(set.map(Jabber, LyncS4b, &av(DoNotDisturb)), av(Busy));
    let custom = "JABBER\tLYNC_S4B\nDo Not Disturb\tDo Not Disturb\nAway\tBe Right Back\n";
    let table = MappingTable::parse(custom).expect("parses");
    let old = set.replace(table);
    assert_eq!(old.map(|t| t.rows.len()), Some(4));
    assert_eq!(
        set.map(Jabber, LyncS4b, &av(DoNotDisturb)),
        av(DoNotDisturb)
    );
    assert_eq!(set.map(Jabber, LyncS4b, &av(Away)), av(BeRightBack));
    // Rows the operator left out fall back.
    assert_eq!(set.map(Jabber, LyncS4b, &av(Busy)), av(Busy));
    assert!(set.remove(Jabber, LyncS4b).is_some());
    assert_eq!(
        set.map(Jabber, LyncS4b, &av(DoNotDisturb)),
        av(DoNotDisturb)
    );

    let calendar = CalendarTable::parse("OUTLOOK_CALENDAR\tLOCAL_CANONICAL\nTentative\tBusy\n")
        .expect("parses");
    set.replace_calendar(calendar);
    let got = set.with_calendar(&av(Available), CalendarState::Tentative, true);
    assert_eq!(got.state, Busy);
    let got = set.with_calendar(&av(Away), CalendarState::Busy, true);
    assert_eq!(got, av(Away), "Busy is no longer in the table");
}

#[test]
fn parse_errors() {
    let cases: Vec<(&str, TableError)> = vec![
        ("", TableError::MissingHeader),
        ("# only a comment\n", TableError::MissingHeader),
        (
            "JABBER\tICQ\n",
            TableError::UnknownSystem {
                line: 1,
                name: "ICQ".into(),
            },
        ),
        ("JABBER\n", TableError::TooFewColumns { line: 1 }),
        (
            "JABBER\tLYNC_S4B\n\nBusy\n",
            TableError::CellCount {
                line: 3,
                expected: 2,
                found: 1,
            },
        ),
        (
            "JABBER\tLYNC_S4B\nBusy\tNapping\n",
            TableError::Cell {
                line: 2,
                column: 2,
                error: CellError::UnknownState("Napping".into()),
            },
        ),
        (
            "JABBER\tLYNC_S4B\nBusy\tBusy\nbusy\tAway\n",
            TableError::DuplicateRow {
                line: 3,
                cell: "Busy".into(),
            },
        ),
        (
            "JABBER\tLYNC_S4B\tWEBEX\nBusy\tBusy\tIdle\n",
            TableError::NotOnePair { columns: 3 },
        ),
    ];
    for (text, want) in cases {
        assert_eq!(MappingTable::parse(text), Err(want), "{text:?}");
    }
}

#[test]
fn crlf_and_comments_are_accepted() {
    let text = "# note\r\nJABBER\tLYNC_S4B\r\n# row comment\r\nBusy\tAway\r\n";
    let table = MappingTable::parse(text).expect("parses");
    assert_eq!(table.rows.len(), 1);
    assert_eq!(table.rows[0].target, Cell::plain(Away));
}

#[test]
fn duplicate_tables_and_stray_amendments_are_errors() {
    let one = || MappingTable::parse("JABBER\tLYNC_S4B\nBusy\tBusy\n").expect("parses");
    let calendar = set().calendar().clone();
    assert_eq!(
        MappingSet::from_tables([one(), one()], calendar.clone()),
        Err(TableError::DuplicateTable {
            from: Jabber,
            to: LyncS4b
        })
    );
    let mut small = MappingSet::from_tables([one()], calendar).expect("one table");
    let amendments = parse_amendments("H\nJABBER\tAway\tLYNC_S4B\tBusy\n").expect("parses");
    assert_eq!(
        small.amend(&amendments[0]),
        Err(TableError::AmendmentWithoutRow {
            line: 2,
            from: Jabber,
            to: LyncS4b,
            cell: "Away".into(),
        })
    );
    assert_eq!(
        parse_amendments("H\nJABBER\tAway\tLYNC_S4B\n"),
        Err(TableError::CellCount {
            line: 2,
            expected: 4,
            found: 3
        })
    );
}
