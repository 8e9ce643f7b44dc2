//! Herald's XMPP load generator: real TLS XMPP clients (STARTTLS or direct TLS, SCRAM, bind,
//! roster, presence, messages) driven in scenarios that measure throughput and latency against
//! Herald, Prosody or ejabberd, writing rows into `bench/results/<scenario>.json`.
//!
//! - [`client`]: one client connection and its login.
//! - [`scram`]: the client side of SCRAM-SHA-1/-256.
//! - [`scenarios`]: login storm, idle hold, chat, presence fan-out.
//! - [`report`]: percentiles, /proc readings, result rows.
//!
//! Protocol-specific code lives in `client` and `scenarios`; a SIP peer (MESSAGE, SUBSCRIBE
//! through the routing node) would be another client module driven by the same scenarios'
//! report rows.

pub mod client;
pub mod report;
pub mod scenarios;
pub mod scram;
