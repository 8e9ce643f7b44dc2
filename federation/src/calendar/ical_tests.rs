//! Tests of the iCalendar reader, on Radicale 3.1.8's own answers (captured from a real server
//! with events created by the `caldav` Python client; `federation/tests/fixtures/caldav/`) and
//! on hand-written objects for what Radicale does not produce (VFREEBUSY, bad input).

use super::*;
use crate::availability::model::CalendarState;
use crate::calendar::dav::{calendar_data_in, calendars_in, multistatus};
use crate::calendar::overlay::{next_change, state_at};
use crate::calendar::time::{format_utc, parse_written};

const PROPFIND_HOME: &str = include_str!("../../tests/fixtures/caldav/radicale-propfind-home.xml");
const REPORT_WORK: &str = include_str!("../../tests/fixtures/caldav/radicale-report-work.xml");
const REPORT_PERSONAL: &str =
    include_str!("../../tests/fixtures/caldav/radicale-report-personal.xml");

fn t(s: &str) -> Timestamp {
    parse_written(s).unwrap().naive
}

/// Busy intervals of every calendar-data in a REPORT answer, window 00:00–06:00Z on the day
/// the fixtures were captured.
fn intervals(report: &str) -> Vec<BusyInterval> {
    let mut out = Vec::new();
    for data in calendar_data_in(multistatus(report.as_bytes()).unwrap()) {
        busy_intervals(
            &data,
            t("20261205T000000Z"),
            t("20261205T060000Z"),
            &IcalLimits::default(),
            &mut out,
        )
        .unwrap();
    }
    out.sort();
    out
}

fn show(ivs: &[BusyInterval]) -> Vec<(String, String, BusyKind)> {
    ivs.iter()
        .map(|i| (format_utc(i.start), format_utc(i.end), i.kind))
        .collect()
}

#[test]
fn radicale_home_lists_its_calendars() {
    let r = multistatus(PROPFIND_HOME.as_bytes()).unwrap();
    assert_eq!(r.len(), 3);
    assert_eq!(
        calendars_in(&r, "/alice/"),
        vec!["/alice/work/".to_owned(), "/alice/personal/".to_owned()]
    );
    assert_eq!(r[1].ok.display_name.as_deref(), Some("Work"));
}

#[test]
fn radicale_work_calendar() {
    // ev-utc: busy 00:50–01:50Z; ev-tz: 08:00–09:00 Asia/Kolkata (+05:30) = 02:30–03:30Z;
    // ev-tent: tentative 03:00–04:00Z; ev-transp (TRANSPARENT) and ev-cancel (CANCELLED): none.
    let s = |a: &str, b: &str, k| (a.to_owned(), b.to_owned(), k);
    assert_eq!(
        show(&intervals(REPORT_WORK)),
        vec![
            s("20261205T005000Z", "20261205T015000Z", BusyKind::Busy),
            s("20261205T023000Z", "20261205T033000Z", BusyKind::Busy),
            s("20261205T030000Z", "20261205T040000Z", BusyKind::Tentative),
        ]
    );
}

#[test]
fn radicale_personal_calendar() {
    // ev-allday: all of 2026-12-05, X-MICROSOFT-CDO-BUSYSTATUS:OOF; ev-weekly: Tuesdays and
    // Saturdays 01:30Z for 30 minutes (2026-12-05 is a Saturday).
    let s = |a: &str, b: &str, k| (a.to_owned(), b.to_owned(), k);
    assert_eq!(
        show(&intervals(REPORT_PERSONAL)),
        vec![
            s(
                "20261205T000000Z",
                "20261206T000000Z",
                BusyKind::OutOfOffice
            ),
            s("20261205T013000Z", "20261205T020000Z", BusyKind::Busy),
        ]
    );
}

#[test]
fn radicale_states_through_the_morning() {
    let work = intervals(REPORT_WORK);
    let rows = [
        ("20261205T004000Z", CalendarState::Free),
        ("20261205T005000Z", CalendarState::Busy),
        ("20261205T020000Z", CalendarState::Free),
        ("20261205T031500Z", CalendarState::Busy),
        ("20261205T033000Z", CalendarState::Tentative),
        ("20261205T040000Z", CalendarState::Free),
    ];
    for (at, want) in rows {
        assert_eq!(state_at(&work, t(at)), want, "{at}");
    }
    assert_eq!(
        next_change(&work, t("20261205T020000Z")).map(format_utc),
        Some("20261205T023000Z".into())
    );
    // With both calendars, the all-day out-of-office wins all day.
    let mut all = work;
    all.extend(intervals(REPORT_PERSONAL));
    assert_eq!(
        state_at(&all, t("20261205T010000Z")),
        CalendarState::OutOfOffice
    );
}

fn one(text: &str, from: &str, to: &str) -> Result<Vec<BusyInterval>, IcalError> {
    let mut out = Vec::new();
    busy_intervals(text, t(from), t(to), &IcalLimits::default(), &mut out)?;
    out.sort();
    Ok(out)
}

fn cal(body: &str) -> String {
    format!("BEGIN:VCALENDAR\r\nVERSION:2.0\r\n{body}END:VCALENDAR\r\n")
}

#[test]
fn freebusy_periods() {
    // RFC 4791 §7.10 style answer.
    let text = cal("BEGIN:VFREEBUSY\r\n\
DTSTART:20060104T140000Z\r\n\
DTEND:20060105T000000Z\r\n\
FREEBUSY;FBTYPE=BUSY-TENTATIVE:20060104T150000Z/PT1H\r\n\
FREEBUSY:20060104T190000Z/PT1H\r\n\
FREEBUSY;FBTYPE=BUSY-UNAVAILABLE:20060104T200000Z/20060104T210000Z,\r\n 20060104T220000Z/PT30M\r\n\
FREEBUSY;FBTYPE=FREE:20060104T160000Z/PT1H\r\n\
END:VFREEBUSY\r\n");
    let got = one(&text, "20060104T000000Z", "20060105T000000Z").unwrap();
    let s = |a: &str, b: &str, k| (a.to_owned(), b.to_owned(), k);
    assert_eq!(
        show(&got),
        vec![
            s("20060104T150000Z", "20060104T160000Z", BusyKind::Tentative),
            s("20060104T190000Z", "20060104T200000Z", BusyKind::Busy),
            s(
                "20060104T200000Z",
                "20060104T210000Z",
                BusyKind::OutOfOffice
            ),
            s(
                "20060104T220000Z",
                "20060104T223000Z",
                BusyKind::OutOfOffice
            ),
        ]
    );
}

#[test]
fn recurrence_overrides_and_dst_zones() {
    // Daily 09:00 Europe/Berlin across the March DST change; the 2024-03-30 instance moved
    // to 11:00 by a RECURRENCE-ID override.
    let text = cal("BEGIN:VTIMEZONE\r\nTZID:Europe/Berlin\r\n\
BEGIN:DAYLIGHT\r\nTZOFFSETFROM:+0100\r\nTZOFFSETTO:+0200\r\nDTSTART:19700329T020000\r\n\
RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU\r\nEND:DAYLIGHT\r\n\
BEGIN:STANDARD\r\nTZOFFSETFROM:+0200\r\nTZOFFSETTO:+0100\r\nDTSTART:19701025T030000\r\n\
RRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU\r\nEND:STANDARD\r\nEND:VTIMEZONE\r\n\
BEGIN:VEVENT\r\nUID:d\r\nDTSTART;TZID=Europe/Berlin:20240325T090000\r\n\
DTEND;TZID=Europe/Berlin:20240325T093000\r\nRRULE:FREQ=DAILY;UNTIL=20240402T000000Z\r\nEND:VEVENT\r\n\
BEGIN:VEVENT\r\nUID:d\r\nRECURRENCE-ID;TZID=Europe/Berlin:20240330T090000\r\n\
DTSTART;TZID=Europe/Berlin:20240330T110000\r\nDTEND;TZID=Europe/Berlin:20240330T113000\r\nEND:VEVENT\r\n");
    let got = one(&text, "20240329T000000Z", "20240402T000000Z").unwrap();
    let starts: Vec<String> = got.iter().map(|i| format_utc(i.start)).collect();
    assert_eq!(
        starts,
        vec![
            "20240329T080000Z", // CET
            "20240330T100000Z", // the override, CET
            "20240331T070000Z", // CEST from 2024-03-31
            "20240401T070000Z",
        ]
    );
}

#[test]
fn monthly_count_and_durations() {
    let text = cal(
        "BEGIN:VEVENT\r\nUID:m\r\nDTSTART:20240131T100000Z\r\nDURATION:PT1H\r\n\
RRULE:FREQ=MONTHLY;COUNT=4\r\nEND:VEVENT\r\n",
    );
    let got = one(&text, "20240101T000000Z", "20250101T000000Z").unwrap();
    let starts: Vec<String> = got.iter().map(|i| format_utc(i.start)).collect();
    // February and April have no 31st: no occurrence; COUNT counts real occurrences.
    assert_eq!(
        starts,
        vec![
            "20240131T100000Z",
            "20240331T100000Z",
            "20240531T100000Z",
            "20240731T100000Z"
        ]
    );
}

#[test]
fn events_that_do_not_block() {
    let rows = [
        (
            "zero length",
            "DTSTART:20240101T100000Z\r\nDTEND:20240101T100000Z\r\n",
        ),
        ("no end, date-time", "DTSTART:20240101T100000Z\r\n"),
        (
            "transparent",
            "DTSTART:20240101T100000Z\r\nDURATION:PT1H\r\nTRANSP:TRANSPARENT\r\n",
        ),
        (
            "cancelled",
            "DTSTART:20240101T100000Z\r\nDURATION:PT1H\r\nSTATUS:CANCELLED\r\n",
        ),
        (
            "Microsoft free",
            "DTSTART:20240101T100000Z\r\nDURATION:PT1H\r\nX-MICROSOFT-CDO-BUSYSTATUS:FREE\r\n",
        ),
        (
            "outside the window",
            "DTSTART:20230101T100000Z\r\nDURATION:PT1H\r\n",
        ),
        ("no DTSTART", "DURATION:PT1H\r\n"),
    ];
    for (name, props) in rows {
        let text = cal(&format!("BEGIN:VEVENT\r\nUID:x\r\n{props}END:VEVENT\r\n"));
        let got = one(&text, "20240101T000000Z", "20240102T000000Z").unwrap();
        assert!(got.is_empty(), "{name}: {got:?}");
    }
    // A date without an end is one day; a floating time is read as UTC; an unknown TZID too.
    let text = cal("BEGIN:VEVENT\r\nUID:a\r\nDTSTART;VALUE=DATE:20240101\r\nEND:VEVENT\r\n\
BEGIN:VEVENT\r\nUID:b\r\nDTSTART:20240101T100000\r\nDURATION:PT1H\r\nEND:VEVENT\r\n\
BEGIN:VEVENT\r\nUID:c\r\nDTSTART;TZID=\"Mars/Olympus; Mons\":20240101T120000\r\nDURATION:PT1H\r\nEND:VEVENT\r\n");
    let got = one(&text, "20240101T000000Z", "20240102T000000Z").unwrap();
    let s = |a: &str, b: &str| (a.to_owned(), b.to_owned(), BusyKind::Busy);
    assert_eq!(
        show(&got),
        vec![
            s("20240101T000000Z", "20240102T000000Z"),
            s("20240101T100000Z", "20240101T110000Z"),
            s("20240101T120000Z", "20240101T130000Z"),
        ]
    );
}

#[test]
fn bad_and_oversized_input() {
    let lim = IcalLimits {
        max_lines: 50,
        max_line_bytes: 100,
        max_depth: 3,
        max_intervals: 3,
        max_recurrence_steps: 100,
    };
    let run = |text: &str| {
        let mut out = Vec::new();
        busy_intervals(text, 0, i64::MAX / 4, &lim, &mut out)
    };
    assert_eq!(run("hello"), Err(IcalError::BadLine(1)));
    assert_eq!(
        run("BEGIN:VEVENT\r\nEND:VEVENT\r\n"),
        Err(IcalError::NotCalendar)
    );
    assert_eq!(run("BEGIN:VCALENDAR\r\n"), Err(IcalError::Unbalanced(1)));
    assert_eq!(run("END:VCALENDAR\r\n"), Err(IcalError::Unbalanced(1)));
    assert_eq!(
        run("BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nEND:VCALENDAR\r\n"),
        Err(IcalError::Unbalanced(3))
    );
    assert_eq!(run(&"X:y\r\n".repeat(51)), Err(IcalError::TooManyLines(50)));
    assert_eq!(
        run(&format!("X:{}\r\n", "y".repeat(200))),
        Err(IcalError::LineTooLong(1))
    );
    assert_eq!(
        run(&format!("X:y\r\n{}\r\n", " z".repeat(100))),
        Err(IcalError::LineTooLong(1)),
        "folded lines count after unfolding"
    );
    assert_eq!(
        run("BEGIN:A\r\nBEGIN:B\r\nBEGIN:C\r\nBEGIN:D\r\n"),
        Err(IcalError::TooDeep(3))
    );
    assert!(matches!(
        run(&cal(
            "BEGIN:VEVENT\r\nDTSTART:2024-01-01\r\nDURATION:PT1H\r\nEND:VEVENT\r\n"
        )),
        Err(IcalError::Time(_))
    ));
    let many = cal(
        &"BEGIN:VEVENT\r\nDTSTART:20240101T100000Z\r\nDURATION:PT1H\r\nEND:VEVENT\r\n".repeat(4),
    );
    assert_eq!(run(&many), Err(IcalError::TooManyIntervals(3)));
    // An unbounded daily rule stops at the step limit (and the interval limit first here).
    let endless = cal("BEGIN:VEVENT\r\nDTSTART:19700101T100000Z\r\nDURATION:PT1H\r\nRRULE:FREQ=DAILY\r\nEND:VEVENT\r\n");
    let mut out = Vec::new();
    let far = IcalLimits {
        max_intervals: 1000,
        ..lim
    };
    busy_intervals(&endless, 0, i64::MAX / 4, &far, &mut out).unwrap();
    assert_eq!(out.len(), 100);
}

/// Found by the `fed_ical` fuzz target: a time zone rule whose BYDAY ends in a multi-byte
/// character (`-ԬU`) split a string inside that character and panicked.
#[test]
fn time_zone_byday_with_multibyte_character_is_refused_not_a_panic() {
    let cal = "BEGIN:VCALENDAR\r\nBEGIN:VTIMEZONE\r\nTZID:X\r\nBEGIN:STANDARD\r\n\
        DTSTART:19701025T030000\r\nTZOFFSETFROM:+0200\r\nTZOFFSETTO:+0100\r\n\
        RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-\u{52C}U\r\nEND:STANDARD\r\nEND:VTIMEZONE\r\n\
        BEGIN:VEVENT\r\nDTSTART;TZID=X:20260101T100000\r\nDTEND;TZID=X:20260101T110000\r\n\
        END:VEVENT\r\nEND:VCALENDAR\r\n";
    let mut out = Vec::new();
    let _ = busy_intervals(cal, 0, i64::MAX / 2, &IcalLimits::default(), &mut out);
}
