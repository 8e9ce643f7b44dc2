//! Availability: Herald's canonical model and how it maps to and from every other system.
//!
//! - [`model`]: [`Availability`] (state, status text, calendar overlay), aggregation over a
//!   user's sessions and the calendar overlay (MAP-1, MAP-9).
//! - [`system`]: the systems of REQUIREMENTS §24.8 and what each can show.
//! - [`cell`]: one seed table cell ("Away with status “In a meeting”").
//! - [`tables`]: the seed Tables 1–7 as data files and [`MappingSet::map`] (MAP-2, MAP-11).
//! - [`calendar`]: Table 1-1 as data.
//! - [`xmpp`]: the RFC 6121 wire form, both ways (MAP-3).
//!
//! Flow for one watcher: sessions → [`aggregate`] → [`with_calendar`] →
//! [`MappingSet::map`]`(source, target)` → wire form ([`xmpp::to_presence`], or PIDF later).

pub mod calendar;
pub mod cell;
pub mod model;
pub mod system;
pub mod tables;
pub mod xmpp;

pub use calendar::{CalendarRow, CalendarTable};
pub use cell::{Cell, CellError, StatusSpec};
pub use model::{
    aggregate, overlay_calendar, with_calendar, Availability, CalendarState, Overlay, State,
    IN_A_MEETING,
};
pub use system::{degrade, plainer, xmpp_form, System};
pub use tables::{parse_tsv, MappingRow, MappingSet, MappingTable, TableError};
pub use xmpp::{from_presence, from_presence_with_priority, to_presence, PeerType, WireError};
