//! Parses arbitrary text as availability mapping tables (the seed-shaped TSV with several
//! target columns, an operator's two-column replacement table, the calendar table) and as
//! single cells.
//!
//! Properties: no panic; a cell that parses prints to text that parses to the same cell; in
//! every parsed table, each row's source cell (printed and parsed back unchanged) matches its
//! own example, so a lookup of that example finds a row.

#![no_main]

use herald_federation::availability::{parse_tsv, CalendarTable, Cell, MappingTable};
use libfuzzer_sys::fuzz_target;

fn cell_round_trip(c: &Cell) {
    let printed = c.to_string();
    let again = Cell::parse(&printed).unwrap_or_else(|e| panic!("{printed:?} fails: {e}"));
    assert_eq!(&again, c, "{printed:?}");
}

fn check_table(t: &MappingTable) {
    for row in &t.rows {
        cell_round_trip(&row.source);
        cell_round_trip(&row.target);
        let ex = row.source.example(Some("free text"));
        assert!(
            row.source.matches(&ex),
            "{} does not match its example",
            row.source
        );
        assert!(
            t.lookup_exact(&ex).is_some(),
            "no row for the example of {}",
            row.source
        );
        let _ = t.lookup(&ex);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    match which % 4 {
        0 => {
            if let Ok(tables) = parse_tsv(text) {
                tables.iter().for_each(check_table);
            }
        }
        1 => {
            if let Ok(t) = MappingTable::parse(text) {
                check_table(&t);
            }
        }
        2 => {
            let _ = CalendarTable::parse(text);
        }
        _ => {
            if let Ok(c) = Cell::parse(text) {
                cell_round_trip(&c);
            }
        }
    }
});
