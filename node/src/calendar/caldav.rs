//! CalDAV exchanges of one poll (I/O here; every decision in
//! `herald_federation::calendar`): list the calendars of a user's home (`PROPFIND Depth: 1`,
//! cached between polls), then one time-range `calendar-query` `REPORT` per calendar, all on
//! one connection; and the gateway check (`PROPFIND Depth: 0` on the gateway path).
//!
//! Where the server keeps sync tokens (RFC 6578) for every calendar of the home, a full read
//! takes the tokens first and reads events [`SYNC_HORIZON`] past the window; the polls after it
//! only ask each calendar what changed since its token (`sync-collection`, etags only), and
//! read everything again when something did, when the server refuses the token, or when the
//! window passes what was read.

use std::sync::Arc;

use herald_federation::calendar::dav::{self, DavError};
use herald_federation::calendar::ews::EwsError;
use herald_federation::calendar::time::Timestamp;
use herald_federation::calendar::{busy_intervals, BusyInterval, IcalError, IcalLimits};

use super::http::{Conn, HttpError, HttpLimits, Target};
use super::metrics as m;

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

/// How much further than the window a synced home's events are read (seconds).
pub const SYNC_HORIZON: Timestamp = 3600;

/// A synced home between polls: each calendar's sync token (in the order of the calendars)
/// and the end of the span its events were read for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncState {
    pub tokens: Vec<String>,
    pub read_to: Timestamp,
}

/// What one poll found.
#[derive(Debug, Clone, Default)]
pub struct PollOk {
    /// The calendar collections of the home (hrefs), to reuse next time.
    pub calendars: Vec<String>,
    /// Every busy interval overlapping the window (empty when `unchanged`).
    pub intervals: Vec<BusyInterval>,
    /// The home does not exist (404): no calendar, nothing busy.
    pub no_home: bool,
    /// Nothing changed since the last read (sync): the intervals read then still hold.
    pub unchanged: bool,
    /// The home's sync state for the next poll; `None` when the server keeps no tokens.
    pub sync: Option<SyncState>,
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
    sync: Option<SyncState>,
    from: Timestamp,
    to: Timestamp,
) -> Result<PollOk, PollError> {
    let mut conn = Conn::open(tls, target, limits).await?;
    if let (Some(cals), Some(s)) = (&calendars, &sync) {
        if to <= s.read_to && s.tokens.len() == cals.len() {
            if let Some(tokens) = changes_since(&mut conn, cals, &s.tokens).await? {
                return Ok(PollOk {
                    calendars: cals.clone(),
                    unchanged: true,
                    sync: Some(SyncState {
                        tokens,
                        read_to: s.read_to,
                    }),
                    ..Default::default()
                });
            }
        }
    }
    // A synced home is listed again: its fresh tokens must be taken before the events.
    let (calendars, tokens) = match calendars.filter(|_| sync.is_none()) {
        Some(c) => (c, None),
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
                207 => {
                    let listed = dav::multistatus(&a.body)?;
                    let cals = dav::calendars_in(&listed, &home);
                    let tokens = dav::sync_tokens_in(&listed, &cals).filter(|_| !cals.is_empty());
                    (cals, tokens)
                }
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
    let read_to = if tokens.is_some() {
        to + SYNC_HORIZON
    } else {
        to
    };
    let mut intervals = Vec::new();
    for cal in &calendars {
        let path = dav::path_of(cal);
        let a = conn
            .request(
                "REPORT",
                &path,
                Some("1"),
                dav::calendar_query(from, read_to),
            )
            .await?;
        match a.status {
            207 => {
                for data in dav::calendar_data_in(dav::multistatus(&a.body)?) {
                    busy_intervals(&data, from, read_to, &ical, &mut intervals)?;
                }
            }
            // A calendar deleted since the list was read: the next poll lists again.
            404 => {
                return Ok(PollOk {
                    intervals,
                    ..Default::default()
                })
            }
            s => return Err(HttpError::Status(s).into()),
        }
    }
    Ok(PollOk {
        calendars,
        intervals,
        sync: tokens.map(|tokens| SyncState { tokens, read_to }),
        ..Default::default()
    })
}

/// Asks each calendar what changed since its token: the new tokens when nothing did; `None`
/// when something changed or the server refused a token (read everything again).
async fn changes_since(
    conn: &mut Conn,
    calendars: &[String],
    tokens: &[String],
) -> Result<Option<Vec<String>>, PollError> {
    let mut next = Vec::with_capacity(tokens.len());
    for (cal, token) in calendars.iter().zip(tokens) {
        let a = conn
            .request(
                "REPORT",
                &dav::path_of(cal),
                Some("0"),
                dav::sync_collection(token),
            )
            .await?;
        match a.status {
            207 => {
                let doc = dav::multistatus_doc(&a.body)?;
                if !doc.responses.is_empty() {
                    metrics::counter!(m::CALDAV_SYNC, "result" => "changed").increment(1);
                    return Ok(None);
                }
                next.push(doc.sync_token.unwrap_or_else(|| token.clone()));
            }
            // RFC 6578 §3.2: a token the server no longer knows (403/409 with
            // DAV:valid-sync-token), or the calendar is gone.
            403 | 404 | 409 | 412 => {
                metrics::counter!(m::CALDAV_SYNC, "result" => "refused").increment(1);
                return Ok(None);
            }
            s => return Err(HttpError::Status(s).into()),
        }
    }
    metrics::counter!(m::CALDAV_SYNC, "result" => "unchanged").increment(1);
    Ok(Some(next))
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
