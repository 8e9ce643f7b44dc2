//! Table 1-1 (calendar state → published state) as data.
//!
//! File format: the first data line is the header `OUTLOOK_CALENDAR<TAB>LOCAL_CANONICAL`; each
//! row is `calendar states<TAB>state`. A source cell may list alternatives (`Free/Tentative`)
//! and carry footnote marks (`Out-of-Office ¹`), which are ignored. An empty target cell is a
//! merged cell and repeats the row above. A target cell listing alternatives (`Idle/Busy`)
//! resolves to the least available of them (Busy, MAP-9): a watcher should not be invited to
//! interrupt. A calendar state may be named twice (Out-of-Office and Away) if both rows agree.
//! Lines starting with `#` and blank lines are skipped.

use super::model::{normalize_words, CalendarState, State};
use super::system::System;
use super::tables::{data_lines, TableError};

/// One row of Table 1-1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CalendarRow {
    /// The calendar state.
    pub calendar: CalendarState,
    /// The state published while the calendar shows it (Available = no change).
    pub state: State,
}

/// Table 1-1, one row per calendar state named in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CalendarTable {
    rows: Vec<CalendarRow>,
}

/// The superscript digits the seed uses as footnote marks.
const FOOTNOTE_MARKS: &[char] = &['⁰', '¹', '²', '³', '⁴', '⁵', '⁶', '⁷', '⁸', '⁹'];

impl CalendarTable {
    /// Parses the file format described in the module documentation.
    pub fn parse(text: &str) -> Result<CalendarTable, TableError> {
        let mut lines = data_lines(text);
        let (line, header) = lines.next().ok_or(TableError::MissingHeader)?;
        let names: Vec<&str> = header.split('\t').map(str::trim).collect();
        let want = [System::OutlookCalendar, System::LocalCanonical];
        if names.len() != 2
            || names
                .iter()
                .zip(want)
                .any(|(n, s)| System::from_name(n) != Some(s))
        {
            return Err(TableError::CalendarHeader { line });
        }
        let mut rows: Vec<CalendarRow> = Vec::new();
        let mut previous: Option<State> = None;
        for (line, text) in lines {
            let mut cells = text.split('\t');
            let source = cells.next().unwrap_or_default();
            let target = cells.next().unwrap_or_default();
            if let Some(extra) = cells.next().filter(|c| !c.trim().is_empty()) {
                return Err(TableError::ExtraCell {
                    line,
                    cell: extra.to_owned(),
                });
            }
            let state = match parse_target(line, target)? {
                Some(state) => state,
                None => previous.ok_or(TableError::EmptyFirstCell { line })?,
            };
            previous = Some(state);
            for name in source.trim_matches(FOOTNOTE_MARKS).split('/') {
                let name = normalize_words(name.trim_matches(FOOTNOTE_MARKS));
                let calendar = CalendarState::from_label(&name)
                    .ok_or(TableError::UnknownCalendarState { line, name })?;
                // Outlook 2003/2007 "Out-of-Office" and Outlook 2010 "Away" are one state: a
                // repeat is fine when it agrees.
                match rows.iter().find(|r| r.calendar == calendar) {
                    Some(r) if r.state == state => {}
                    Some(_) => return Err(TableError::DuplicateCalendarState { line, calendar }),
                    None => rows.push(CalendarRow { calendar, state }),
                }
            }
        }
        Ok(CalendarTable { rows })
    }

    /// The rows, in file order (one per calendar state).
    pub fn rows(&self) -> &[CalendarRow] {
        &self.rows
    }

    /// The state the table publishes for `calendar`; None when the table does not name it.
    pub fn state_for(&self, calendar: CalendarState) -> Option<State> {
        self.rows
            .iter()
            .find(|r| r.calendar == calendar)
            .map(|r| r.state)
    }
}

/// A target cell: None when empty (merged), else the least available of its alternatives.
fn parse_target(line: usize, cell: &str) -> Result<Option<State>, TableError> {
    if cell.trim().is_empty() {
        return Ok(None);
    }
    let mut best: Option<State> = None;
    for name in cell.split('/') {
        let state = State::from_label(name).ok_or_else(|| TableError::UnknownCalendarTarget {
            line,
            cell: cell.to_owned(),
        })?;
        if best.is_none_or(|b| state.activity_rank() > b.activity_rank()) {
            best = Some(state);
        }
    }
    Ok(best)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "OUTLOOK_CALENDAR\tLOCAL_CANONICAL\n";

    #[test]
    fn parses_alternatives_footnotes_and_merged_cells() {
        let text = format!(
            "{HEADER}# comment\nFree/Tentative\tAvailable\nBusy\tIdle/Busy\nOut-of-Office ¹\tAway\nAway ²\t\n"
        );
        let table = CalendarTable::parse(&text).expect("parses");
        let want = [
            (CalendarState::Free, State::Available),
            (CalendarState::Tentative, State::Available),
            (CalendarState::Busy, State::Busy),
            (CalendarState::OutOfOffice, State::Away),
        ];
        for (cal, state) in want {
            assert_eq!(table.state_for(cal), Some(state), "{cal:?}");
        }
    }

    #[test]
    fn rejects_bad_tables() {
        let cases: Vec<(String, TableError)> = vec![
            (String::new(), TableError::MissingHeader),
            (
                "JABBER\tLYNC_S4B\nBusy\tBusy\n".into(),
                TableError::CalendarHeader { line: 1 },
            ),
            (
                format!("{HEADER}Busy\t\n"),
                TableError::EmptyFirstCell { line: 2 },
            ),
            (
                format!("{HEADER}Lunch\tAway\n"),
                TableError::UnknownCalendarState {
                    line: 2,
                    name: "Lunch".into(),
                },
            ),
            (
                format!("{HEADER}Busy\tMeeting\n"),
                TableError::UnknownCalendarTarget {
                    line: 2,
                    cell: "Meeting".into(),
                },
            ),
            (
                format!("{HEADER}Busy\tBusy\nBusy\tAway\n"),
                TableError::DuplicateCalendarState {
                    line: 3,
                    calendar: CalendarState::Busy,
                },
            ),
            (
                format!("{HEADER}Busy\tBusy\tAway\n"),
                TableError::ExtraCell {
                    line: 2,
                    cell: "Away".into(),
                },
            ),
        ];
        for (text, want) in cases {
            assert_eq!(CalendarTable::parse(&text), Err(want), "{text:?}");
        }
    }

    #[test]
    fn a_table_may_leave_a_calendar_state_out() {
        let table = CalendarTable::parse(&format!("{HEADER}Busy\tBusy\n")).expect("parses");
        assert_eq!(table.state_for(CalendarState::OutOfOffice), None);
        assert_eq!(table.rows().len(), 1);
    }
}
