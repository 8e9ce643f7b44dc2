//! CalDAV exchanges of one poll (I/O here; every decision in
//! `herald_federation::calendar`): list the calendars of a user's home (`PROPFIND Depth: 1`,
//! cached between polls), then one time-range `calendar-query` `REPORT` per calendar, all on
//! one connection; and the gateway check (`PROPFIND Depth: 0` on the gateway path).

use std::sync::Arc;

use herald_federation::calendar::dav::{self, DavError};
use herald_federation::calendar::ews::EwsError;
use herald_federation::calendar::time::Timestamp;
use herald_federation::calendar::{busy_intervals, BusyInterval, IcalError, IcalLimits};

use super::http::{Conn, HttpError, HttpLimits, Target};

/// Why a poll failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PollError {
    #[error(transparent)]
    Http(#[from] HttpError),
    #[error("unreadable multistatus: {0}")]
    Dav(#[from] DavError),
    #[error("unreadable calendar data: {0}")]
    Ical(#[from] IcalError),
    #[error("EWS: {0}")]
    Ews(#[from] EwsError),
}

impl PollError {
    /// A short label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            PollError::Http(h) => h.label(),
            PollError::Dav(_) => "bad_xml",
            PollError::Ical(_) => "bad_calendar",
            PollError::Ews(EwsError::Fault { .. }) => "soap_fault",
            PollError::Ews(EwsError::Response { .. }) => "ews_error",
            PollError::Ews(_) => "bad_xml",
        }
    }

    /// The error concerns this user's mailbox only (EWS: impersonation denied, no such
    /// mailbox): the gateway is not to blame (CAL-13).
    pub fn per_user(&self) -> bool {
        matches!(self, PollError::Ews(e) if e.per_mailbox())
    }

    /// The gateway itself is unusable (not this user's data): its users go elsewhere.
    pub fn gateway_down(&self) -> bool {
        matches!(
            self,
            PollError::Http(
                HttpError::Connect(..)
                    | HttpError::Certificate(_)
                    | HttpError::Tls(_)
                    | HttpError::Auth(_)
                    | HttpError::AuthExchange(_)
                    | HttpError::Timeout(_)
            )
        )
    }
}

/// What one poll found.
#[derive(Debug, Clone, Default)]
pub struct PollOk {
    /// The calendar collections of the home (hrefs), to reuse next time.
    pub calendars: Vec<String>,
    /// Every busy interval overlapping the window.
    pub intervals: Vec<BusyInterval>,
    /// The home does not exist (404): no calendar, nothing busy.
    pub no_home: bool,
}

/// Reads the calendars under `home` for `[from, to)`.
#[allow(clippy::too_many_arguments)]
pub async fn poll(
    tls: Arc<rustls::ClientConfig>,
    target: Target,
    limits: HttpLimits,
    ical: IcalLimits,
    home: String,
    calendars: Option<Vec<String>>,
    from: Timestamp,
    to: Timestamp,
) -> Result<PollOk, PollError> {
    let mut conn = Conn::open(tls, target, limits).await?;
    let calendars = match calendars {
        Some(c) => c,
        None => {
            let a = conn
                .request(
                    "PROPFIND",
                    &home,
                    Some("1"),
                    dav::propfind_calendars().to_owned(),
                )
                .await?;
            match a.status {
                207 => dav::calendars_in(&dav::multistatus(&a.body)?, &home),
                404 => {
                    return Ok(PollOk {
                        no_home: true,
                        ..Default::default()
                    })
                }
                s => return Err(HttpError::Status(s).into()),
            }
        }
    };
    let mut intervals = Vec::new();
    for cal in &calendars {
        let path = dav::path_of(cal);
        let a = conn
            .request("REPORT", &path, Some("1"), dav::calendar_query(from, to))
            .await?;
        match a.status {
            207 => {
                for data in dav::calendar_data_in(dav::multistatus(&a.body)?) {
                    busy_intervals(&data, from, to, &ical, &mut intervals)?;
                }
            }
            // A calendar deleted since the list was read: the next poll lists again.
            404 => {
                return Ok(PollOk {
                    calendars: Vec::new(),
                    intervals,
                    no_home: false,
                })
            }
            s => return Err(HttpError::Status(s).into()),
        }
    }
    Ok(PollOk {
        calendars,
        intervals,
        no_home: false,
    })
}

/// Checks a gateway: connect, TLS (certificate), and an authenticated `PROPFIND Depth: 0` on
/// its path answered with 207 (or 404: the path is wrong but the account was accepted).
pub async fn check(
    tls: Arc<rustls::ClientConfig>,
    target: Target,
    limits: HttpLimits,
    path: String,
) -> Result<(), PollError> {
    let mut conn = Conn::open(tls, target, limits).await?;
    let path = if path.is_empty() {
        "/".to_owned()
    } else {
        path
    };
    let a = conn
        .request(
            "PROPFIND",
            &path,
            Some("0"),
            dav::propfind_calendars().to_owned(),
        )
        .await?;
    match a.status {
        207 => {
            dav::multistatus(&a.body)?;
            Ok(())
        }
        404 => Ok(()),
        s => Err(HttpError::Status(s).into()),
    }
}
