//! Herald's XMPP load generator: real TLS XMPP clients (STARTTLS or direct TLS, SCRAM, bind,
//! roster, presence, messages) driven in scenarios that measure throughput and latency against
//! Herald, Prosody or ejabberd, writing rows into `bench/results/<scenario>.json`.
//!
//! - [`client`]: one client connection and its login.
//! - [`scram`]: the client side of SCRAM-SHA-1/-256.
//! - [`scenarios`]: login storm, idle hold, chat, presence fan-out, calendar burst, the SIP
//!   benchmark's XMPP side.
//! - [`caldav`]: the calendar burst's CalDAV responder (`loadgen caldav-serve`).
//! - [`report`]: percentiles, /proc readings, result rows.
//! - [`stamped`]: kernel receive timestamps for latency samples.
//!
//! Protocol-specific code lives in `client` and `scenarios`. The SIP benchmark (`bench/sip.sh`)
//! uses SIPp, a SIP generator we did not write, as the federated SIP peer; its XMPP side (the
//! Herald users receiving MESSAGEs and changing presence for SIP watchers) is
//! [`scenarios::sip_users`].

pub mod caldav;
pub mod client;
pub mod report;
pub mod scenarios;
pub mod scram;
pub mod stamped;
