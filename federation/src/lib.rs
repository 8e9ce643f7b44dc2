//! Herald's edges to other domains (DESIGN.md §2).
//!
//! This crate will hold the S2S (XMPP server-to-server) and SIP federation edges, per-destination
//! outbound queues, routing decisions (static routes, DNS SRV behind a trait, the default
//! federation routing domain) and policy decisions (federated domains, XMPP policy, ACLs, TLS
//! peer subjects). It depends on the `proto/*` crates only, never on `cluster` or `node`, and
//! holds no runtime: everything here is a pure function or a sans-io state machine.
//!
//! Today it holds [`availability`]: the canonical availability model (REQUIREMENTS §4, MAP-1),
//! the seed mapping tables as data (`federation/tables/*.tsv`, MAP-2, MAP-11), the calendar
//! overlay (MAP-9) and the RFC 6121 presence wire form (MAP-3); and [`edge`]: the XMPP federation
//! policy, DNS SRV ordering and the per-destination outbound queue with backoff that the
//! node's s2s actors drive.

#![deny(missing_docs)]

pub mod availability;
pub mod calendar;
pub mod edge;
