//! Calendar-driven presence on a node (REQUIREMENTS §17 CAL, DESIGN §3 CalendarActor).
//!
//! One [`actor::CalendarActor`] per node reads the calendars of the calendar-enabled users
//! homed on this node (`Shared::home_of`) through the stored `calendar-gateway`s and tells
//! each user's actor what the calendar shows ([`crate::xmpp::users::CalendarFor`]); the user's
//! actor re-broadcasts the user's presence to watchers with the overlay applied
//! ([`crate::im::calendar`]).
//!
//! - [`actor`]: the actor (users and gateways from the store, assignment, spread polling,
//!   gateway checks, status board).
//! - [`caldav`]: one poll and one gateway check, as HTTP exchanges.
//! - [`ews`]: the same for Exchange Web Services (`GetUserAvailability`).
//! - `kinds`: what differs by gateway kind (credentials, authentication, checks).
//! - [`http`]: the minimal HTTPS client (hyper over tokio-rustls, Basic or NTLMv2, bounded).
//! - [`metrics`]: metric names.
//!
//! What the pure parts decide lives in `herald_federation::calendar` (parsing, the overlay
//! table, the pool choice). Supported: CalDAV and Exchange EWS (polled); Exchange WebDAV is
//! refused by the CLI and shown as unsupported.

pub mod actor;
pub mod caldav;
pub mod ews;
pub mod http;
mod kinds;
pub mod metrics;

use std::time::Duration;

use herald_grpc::admin::CalendarGatewayState;
use tokio::sync::watch;

pub use actor::{CalendarActor, CalendarSettings};

/// Gateway states as this node sees them, for the admin API.
pub type StatusBoard = watch::Receiver<Vec<CalendarGatewayState>>;

/// A fresh board: the actor writes, the admin API reads.
pub fn board() -> (watch::Sender<Vec<CalendarGatewayState>>, StatusBoard) {
    watch::channel(Vec::new())
}

/// The default poll interval.
pub const DEFAULT_POLL: Duration = Duration::from_secs(60);

/// Starts the node's CalendarActor on `arbiter`, trusting the system roots plus `tls_ca` for
/// gateway certificates; `timeout` bounds each connect and each answer.
pub fn start(
    shared: std::sync::Arc<crate::xmpp::Shared>,
    arbiter: &actix_rt::ArbiterHandle,
    tls_ca: Option<&std::path::Path>,
    poll_interval: Duration,
    timeout: Duration,
    board: watch::Sender<Vec<CalendarGatewayState>>,
) -> anyhow::Result<actix::Addr<CalendarActor>> {
    use actix::Actor;
    let trust = crate::s2s::tls::PeerTrust::new(tls_ca)?;
    let tls = trust.client_config()?;
    let settings = CalendarSettings::new(poll_interval, timeout);
    Ok(CalendarActor::start_in_arbiter(arbiter, move |_| {
        CalendarActor::new(shared, tls, settings, board)
    }))
}
