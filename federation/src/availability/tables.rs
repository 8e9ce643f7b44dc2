//! Data-driven availability mapping (MAP-2, MAP-11): the seed's Tables 1–7 as tab-separated
//! files under `federation/tables/`, compiled in as defaults, replaceable one by one.
//!
//! File format (`*.tsv`): the first data line is the header, one system name per column
//! ([`System::name`]); each further line is one seed row, cells copied verbatim from the seed
//! and parsed by [`Cell::parse`]. Column 0 is the source; every other column is one target, so a
//! file with N columns gives N−1 [`MappingTable`]s. Lines starting with `#` and blank lines are
//! skipped. `amendments.tsv` holds the rules printed next to a table (Table 1: Lync Busy and Do
//! Not Disturb reach a third-party XMPP client as Away with status "Busy"), as replacement cells.
//!
//! [`MappingSet::map`] resolves a (source, target) pair in this order:
//!
//! 1. the (source, target) table: the most specific row for the input; failing that, a row
//!    that names the input's XMPP form ([`xmpp_form`]: Idle ≡ the cell `Away with status
//!    "Idle"`, Busy ≡ `Away with status "Busy"`);
//! 2. the same system on both sides, or two lossless systems: the input unchanged;
//! 3. stand-in tables: for a `LOCAL_CANONICAL` source the Jabber rows, then the third-party XMPP
//!    rows; for a `LOCAL_CANONICAL` target the Jabber column;
//! 4. no row anywhere: the input degraded to what the target shows ([`degrade`]).
//!
//! Offline always maps to Offline (MAP-8): every table has the row, and [`degrade`] keeps it.

use std::collections::BTreeMap;
use std::iter;

use super::calendar::CalendarTable;
use super::cell::{Cell, CellError, StatusSpec};
use super::model::{overlay_calendar, Availability, CalendarState, State};
use super::system::{degrade, xmpp_form, System};

/// Why a table did not load. Line numbers are 1-based.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    /// No header line.
    #[error("the table has no header line")]
    MissingHeader,
    /// A header names an unknown system.
    #[error("line {line}: unknown system {name:?}")]
    UnknownSystem {
        /// Line number.
        line: usize,
        /// The name found.
        name: String,
    },
    /// A mapping table needs a source and at least one target column.
    #[error("line {line}: a mapping table needs a source and at least one target column")]
    TooFewColumns {
        /// Line number.
        line: usize,
    },
    /// A table that must map one pair has more target columns.
    #[error("expected one source and one target column, found {columns} columns")]
    NotOnePair {
        /// Columns found.
        columns: usize,
    },
    /// A row's cell count differs from the header's.
    #[error("line {line}: expected {expected} cells, found {found}")]
    CellCount {
        /// Line number.
        line: usize,
        /// Header columns.
        expected: usize,
        /// Cells in the row.
        found: usize,
    },
    /// A cell did not parse.
    #[error("line {line}, column {column}: {error}")]
    Cell {
        /// Line number.
        line: usize,
        /// 1-based column.
        column: usize,
        /// The cell error.
        error: CellError,
    },
    /// Two rows of one table have the same source cell.
    #[error("line {line}: source cell {cell:?} appears twice")]
    DuplicateRow {
        /// Line number.
        line: usize,
        /// The repeated cell.
        cell: String,
    },
    /// Two tables map the same (source, target) pair.
    #[error("two tables map {from} to {to}")]
    DuplicateTable {
        /// Source system.
        from: System,
        /// Target system.
        to: System,
    },
    /// An amendment names a table or row that does not exist.
    #[error("line {line}: no row {cell:?} in a {from} -> {to} table")]
    AmendmentWithoutRow {
        /// Line number.
        line: usize,
        /// Source system.
        from: System,
        /// Target system.
        to: System,
        /// The source cell named.
        cell: String,
    },
    /// The calendar table's header is not `OUTLOOK_CALENDAR<TAB>LOCAL_CANONICAL`.
    #[error("line {line}: the calendar table header must be OUTLOOK_CALENDAR<TAB>LOCAL_CANONICAL")]
    CalendarHeader {
        /// Line number.
        line: usize,
    },
    /// A calendar row has a third cell.
    #[error("line {line}: unexpected cell {cell:?}")]
    ExtraCell {
        /// Line number.
        line: usize,
        /// The extra cell.
        cell: String,
    },
    /// The first calendar row has an empty (merged) target cell.
    #[error("line {line}: the first row's target cell is empty")]
    EmptyFirstCell {
        /// Line number.
        line: usize,
    },
    /// An unknown calendar state name.
    #[error("line {line}: unknown calendar state {name:?}")]
    UnknownCalendarState {
        /// Line number.
        line: usize,
        /// The name found.
        name: String,
    },
    /// A calendar state named twice with different target states.
    #[error("line {line}: calendar state {calendar:?} appears twice with different states")]
    DuplicateCalendarState {
        /// Line number.
        line: usize,
        /// The repeated state.
        calendar: CalendarState,
    },
    /// A calendar target cell that is not a state (or `/`-separated states).
    #[error("line {line}: {cell:?} is not a state")]
    UnknownCalendarTarget {
        /// Line number.
        line: usize,
        /// The cell.
        cell: String,
    },
    /// A built-in table failed to load (a bug in the shipped data).
    #[error("built-in {file}: {error}")]
    BuiltIn {
        /// File name under `federation/tables/`.
        file: &'static str,
        /// What failed.
        error: Box<TableError>,
    },
}

/// One row: a source cell and the target cell it maps to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappingRow {
    /// Source cell.
    pub source: Cell,
    /// Target cell.
    pub target: Cell,
}

/// One direction between two systems (§24.8 `AvailabilityMappingTable`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappingTable {
    /// Source system.
    pub source: System,
    /// Target system.
    pub target: System,
    /// Rows in file order.
    pub rows: Vec<MappingRow>,
}

impl MappingTable {
    /// Parses a two-column table (one source and one target system), e.g. an operator's
    /// replacement for one default table (MAP-11).
    pub fn parse(text: &str) -> Result<MappingTable, TableError> {
        let mut tables = parse_tsv(text)?;
        match tables.len() {
            1 => Ok(tables.remove(0)),
            n => Err(TableError::NotOnePair { columns: n + 1 }),
        }
    }

    /// The target for `a` from the most specific matching row: a row naming `a`'s status text
    /// beats a row without one. None when no row matches.
    pub fn lookup_exact(&self, a: &Availability) -> Option<Availability> {
        let named = |r: &&MappingRow| matches!(r.source.status, StatusSpec::Text(_));
        let row = self
            .rows
            .iter()
            .filter(named)
            .find(|r| r.source.matches(a))
            .or_else(|| self.rows.iter().find(|r| r.source.matches(a)))?;
        Some(row.target.render(&row.source, a))
    }

    /// [`MappingTable::lookup_exact`] on `a`; failing that, a row whose source cell names a
    /// status text and matches the [`xmpp_form`] of `a` (so XEP-0319 Idle finds Table 7's
    /// `Away with status "Idle"` row). A plain `Away` row never catches Idle or Busy.
    pub fn lookup(&self, a: &Availability) -> Option<Availability> {
        self.lookup_exact(a).or_else(|| {
            let form = xmpp_form(a)?;
            let row = self.rows.iter().find(|r| {
                matches!(r.source.status, StatusSpec::Text(_)) && r.source.matches(&form)
            })?;
            Some(row.target.render(&row.source, &form))
        })
    }
}

/// The non-comment, non-blank lines of `text` with their 1-based numbers, `\r` removed.
pub(crate) fn data_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim_end_matches('\r')))
        .filter(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
}

fn parse_header(line: usize, header: &str) -> Result<Vec<System>, TableError> {
    header
        .split('\t')
        .map(|name| {
            System::from_name(name).ok_or_else(|| TableError::UnknownSystem {
                line,
                name: name.trim().to_owned(),
            })
        })
        .collect()
}

fn parse_cell(line: usize, column: usize, text: &str) -> Result<Cell, TableError> {
    Cell::parse(text).map_err(|error| TableError::Cell {
        line,
        column,
        error,
    })
}

/// Parses a seed-shaped table with any number of target columns (module documentation).
pub fn parse_tsv(text: &str) -> Result<Vec<MappingTable>, TableError> {
    let mut lines = data_lines(text);
    let (line, header) = lines.next().ok_or(TableError::MissingHeader)?;
    let systems = parse_header(line, header)?;
    let Some((&source, targets)) = systems.split_first().filter(|(_, t)| !t.is_empty()) else {
        return Err(TableError::TooFewColumns { line });
    };
    let mut tables: Vec<MappingTable> = targets
        .iter()
        .map(|&target| MappingTable {
            source,
            target,
            rows: Vec::new(),
        })
        .collect();
    for (line, text) in lines {
        let cells: Vec<&str> = text.split('\t').collect();
        if cells.len() != systems.len() {
            return Err(TableError::CellCount {
                line,
                expected: systems.len(),
                found: cells.len(),
            });
        }
        let source_cell = parse_cell(line, 1, cells[0])?;
        if tables[0].rows.iter().any(|r| r.source == source_cell) {
            return Err(TableError::DuplicateRow {
                line,
                cell: source_cell.to_string(),
            });
        }
        for (i, (table, cell)) in tables.iter_mut().zip(&cells[1..]).enumerate() {
            table.rows.push(MappingRow {
                source: source_cell.clone(),
                target: parse_cell(line, i + 2, cell)?,
            });
        }
    }
    Ok(tables)
}

/// One replacement cell from `amendments.tsv`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Amendment {
    line: usize,
    from: System,
    source: Cell,
    to: System,
    target: Cell,
}

fn parse_amendments(text: &str) -> Result<Vec<Amendment>, TableError> {
    // The header names the columns, not systems; it is skipped.
    let mut out = Vec::new();
    for (line, text) in data_lines(text).skip(1) {
        let cells: Vec<&str> = text.split('\t').collect();
        let [from, source, to, target] = cells[..] else {
            return Err(TableError::CellCount {
                line,
                expected: 4,
                found: cells.len(),
            });
        };
        let system = |name: &str| {
            System::from_name(name).ok_or_else(|| TableError::UnknownSystem {
                line,
                name: name.trim().to_owned(),
            })
        };
        out.push(Amendment {
            line,
            from: system(from)?,
            source: parse_cell(line, 2, source)?,
            to: system(to)?,
            target: parse_cell(line, 4, target)?,
        });
    }
    Ok(out)
}

/// The built-in tables: (file name, contents), in seed order; the last two are the calendar
/// table and the amendments.
pub const DEFAULT_FILES: [(&str, &str); 9] = [
    (
        "table1_lync.tsv",
        include_str!("../../tables/table1_lync.tsv"),
    ),
    (
        "table2_jabber_to_lync.tsv",
        include_str!("../../tables/table2_jabber_to_lync.tsv"),
    ),
    (
        "table3_xmpp_to_lync.tsv",
        include_str!("../../tables/table3_xmpp_to_lync.tsv"),
    ),
    (
        "table4_sametime.tsv",
        include_str!("../../tables/table4_sametime.tsv"),
    ),
    (
        "table5_webex.tsv",
        include_str!("../../tables/table5_webex.tsv"),
    ),
    (
        "table6_jabber_to_federated.tsv",
        include_str!("../../tables/table6_jabber_to_federated.tsv"),
    ),
    (
        "table7_xmpp_to_federated.tsv",
        include_str!("../../tables/table7_xmpp_to_federated.tsv"),
    ),
    (
        "table1_1_calendar.tsv",
        include_str!("../../tables/table1_1_calendar.tsv"),
    ),
    (
        "amendments.tsv",
        include_str!("../../tables/amendments.tsv"),
    ),
];

/// Every mapping table in force plus Table 1-1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappingSet {
    tables: BTreeMap<(System, System), MappingTable>,
    calendar: CalendarTable,
}

impl MappingSet {
    /// The seed tables (Tables 1–7 with the Table 1 rule, Table 1-1). Fails only if the shipped
    /// data is broken, which the tests rule out.
    pub fn defaults() -> Result<MappingSet, TableError> {
        let built_in = |file: &'static str, error: TableError| TableError::BuiltIn {
            file,
            error: Box::new(error),
        };
        let (mapping_files, rest) = DEFAULT_FILES.split_at(7);
        let mut tables = Vec::new();
        for (file, text) in mapping_files {
            tables.extend(parse_tsv(text).map_err(|e| built_in(file, e))?);
        }
        let mut calendar = None;
        let mut amendments = Vec::new();
        for &(file, text) in rest {
            if file == "amendments.tsv" {
                amendments = parse_amendments(text).map_err(|e| built_in(file, e))?;
            } else {
                calendar = Some(CalendarTable::parse(text).map_err(|e| built_in(file, e))?);
            }
        }
        let calendar = calendar.ok_or(TableError::BuiltIn {
            file: "table1_1_calendar.tsv",
            error: Box::new(TableError::MissingHeader),
        })?;
        let mut set = MappingSet::from_tables(tables, calendar)?;
        for a in amendments {
            set.amend(&a).map_err(|e| built_in("amendments.tsv", e))?;
        }
        Ok(set)
    }

    /// A set from explicit tables; two tables for one (source, target) pair are an error.
    pub fn from_tables(
        tables: impl IntoIterator<Item = MappingTable>,
        calendar: CalendarTable,
    ) -> Result<MappingSet, TableError> {
        let mut map = BTreeMap::new();
        for table in tables {
            let key = (table.source, table.target);
            if map.insert(key, table).is_some() {
                return Err(TableError::DuplicateTable {
                    from: key.0,
                    to: key.1,
                });
            }
        }
        Ok(MappingSet {
            tables: map,
            calendar,
        })
    }

    fn amend(&mut self, a: &Amendment) -> Result<(), TableError> {
        let row = self
            .tables
            .get_mut(&(a.from, a.to))
            .and_then(|t| t.rows.iter_mut().find(|r| r.source == a.source))
            .ok_or_else(|| TableError::AmendmentWithoutRow {
                line: a.line,
                from: a.from,
                to: a.to,
                cell: a.source.to_string(),
            })?;
        row.target = a.target.clone();
        Ok(())
    }

    /// Puts `table` in force for its (source, target) pair, returning the one it replaces.
    pub fn replace(&mut self, table: MappingTable) -> Option<MappingTable> {
        self.tables.insert((table.source, table.target), table)
    }

    /// Removes the table for (source, target); that pair then maps by stand-ins and fallback.
    pub fn remove(&mut self, source: System, target: System) -> Option<MappingTable> {
        self.tables.remove(&(source, target))
    }

    /// Puts `calendar` in force as Table 1-1.
    pub fn replace_calendar(&mut self, calendar: CalendarTable) {
        self.calendar = calendar;
    }

    /// The table for (source, target), if one is in force.
    pub fn table(&self, source: System, target: System) -> Option<&MappingTable> {
        self.tables.get(&(source, target))
    }

    /// Every table in force, ordered by (source, target).
    pub fn tables(&self) -> impl Iterator<Item = &MappingTable> {
        self.tables.values()
    }

    /// Table 1-1.
    pub fn calendar(&self) -> &CalendarTable {
        &self.calendar
    }

    /// What a `target` watcher sees of `a`, published on `source` (module documentation for
    /// the resolution order).
    pub fn map(&self, source: System, target: System, a: &Availability) -> Availability {
        if let Some(out) = self.lookup(source, target, a) {
            return out;
        }
        if source == target || (source.is_lossless() && target.is_lossless()) {
            return degrade(target, a);
        }
        let sources = iter::once(source).chain(source.source_stand_ins().iter().copied());
        for s in sources {
            let targets = iter::once(target).chain(target.target_stand_ins().iter().copied());
            for t in targets.filter(|&t| (s, t) != (source, target)) {
                if let Some(out) = self.lookup(s, t, a) {
                    return degrade(target, &out);
                }
            }
        }
        degrade(target, a)
    }

    fn lookup(&self, source: System, target: System, a: &Availability) -> Option<Availability> {
        self.tables.get(&(source, target))?.lookup(a)
    }

    /// MAP-9 with this set's Table 1-1: the state the table gives for `calendar` (Available or
    /// no row = no change), with [`overlay_calendar`]'s precedence.
    pub fn with_calendar(
        &self,
        base: &Availability,
        calendar: CalendarState,
        manual_state_overrides_calendar: bool,
    ) -> Availability {
        let published = self
            .calendar
            .state_for(calendar)
            .filter(|&s| s != State::Available);
        overlay_calendar(base, calendar, published, manual_state_overrides_calendar)
    }
}

#[cfg(test)]
#[path = "tables_tests.rs"]
mod tests;
