//! EWS exchanges (I/O here; the SOAP documents and their reading in
//! `herald_federation::calendar::ews`): one poll is one `GetUserAvailability` POST for the
//! user's mailbox on the gateway's EWS URL, authenticated with NTLM (NTLMv2) or Basic, with
//! the impersonation header unless the credentials say otherwise; the gateway check is the
//! same request for the service account's own mailbox, where any well-formed SOAP answer
//! (success, an EWS error, a fault) proves an authenticated EWS endpoint.
//!
//! Pull notifications: a user's first poll on a gateway also `Subscribe`s (a pull subscription
//! on the calendar folder, before reading, so no change falls between the two); later polls
//! ask `GetEvents` with the watermark and read the availability again only when an event
//! other than `StatusEvent` came (or the subscription was lost, or the last full read is older
//! than [`FULL_READ_EVERY`]). A gateway that refuses `Subscribe` is polled with
//! `GetUserAvailability` every time.
//!
//! Connections are reused between polls of one gateway (the actor keeps a few idle ones): NTLM
//! authenticates a connection once, not every poll. Gateway checks always open a new one.

use std::sync::Arc;

use herald_federation::calendar::ews;
use herald_federation::calendar::ews_events::{self, Subscription};
use herald_federation::calendar::time::Timestamp;
use herald_federation::calendar::BusyInterval;

use super::caldav::PollError;
use super::http::{Conn, HttpError, HttpLimits, Target};

/// A full `GetUserAvailability` at least this often even when no event came (the window
/// moves with time).
pub const FULL_READ_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);

/// The EWS URL path when the gateway has none.
pub const DEFAULT_PATH: &str = "/EWS/Exchange.asmx";

const SOAP_TYPE: &str = "text/xml; charset=utf-8";

/// The gateway's EWS path.
pub fn ews_path(path: &str) -> String {
    match path.trim() {
        "" | "/" => DEFAULT_PATH.to_owned(),
        p if p.starts_with('/') => p.to_owned(),
        p => format!("/{p}"),
    }
}

/// The SMTP address EWS knows a user by: the mailbox if it is one, else `mailbox@domain`.
pub fn smtp_address(mailbox: &str, domain: &str) -> String {
    if mailbox.contains('@') {
        mailbox.to_owned()
    } else {
        format!("{mailbox}@{domain}")
    }
}

/// POSTs one SOAP request; the answer's body (200, or 500 with a fault).
async fn post(conn: &mut Conn, path: &str, body: String) -> Result<hyper::body::Bytes, PollError> {
    let a = conn
        .request_typed("POST", path, None, SOAP_TYPE, body)
        .await?;
    match a.status {
        // Exchange answers SOAP faults with 500.
        200 | 500 => Ok(a.body),
        // OWA's forms-based login redirects (or answers 440 Login Timeout): EWS needs NTLM or
        // Basic enabled on its virtual directory (CAL-14).
        301 | 302 | 303 | 307 | 440 => Err(HttpError::AuthExchange(format!(
            "the server sends HTTP {} to a login page: forms-based authentication is not \
             supported; enable Windows (NTLM) or Basic authentication for EWS",
            a.status
        ))
        .into()),
        s => Err(HttpError::Status(s).into()),
    }
}

/// [`post`], where an unexpected HTTP status is `None` (an operation the server does not
/// offer, not a failure of the gateway).
async fn post_optional(
    conn: &mut Conn,
    path: &str,
    body: String,
) -> Result<Option<hyper::body::Bytes>, PollError> {
    match post(conn, path, body).await {
        Ok(b) => Ok(Some(b)),
        Err(PollError::Http(HttpError::Status(_))) => Ok(None),
        Err(e) => Err(e),
    }
}

/// How a poll went, beyond the intervals.
#[derive(Debug, Clone, Default)]
pub struct EwsPoll {
    /// The availability, when it was read (None: no change since the last read).
    pub intervals: Option<Vec<BusyInterval>>,
    /// The subscription to use next time.
    pub subscription: Option<Subscription>,
    /// The server refused `Subscribe`: poll this gateway without notifications.
    pub pull_refused: bool,
    /// What the notifications said, for metrics: changed, unchanged, lost, subscribed, refused.
    pub notification: Option<&'static str>,
}

/// What one poll asks of one mailbox.
#[derive(Debug, Clone)]
pub struct EwsAsk {
    /// The gateway's EWS path.
    pub path: String,
    /// The user's SMTP address.
    pub mailbox: String,
    /// Send the impersonation header.
    pub impersonate: bool,
    /// The availability window, `[from, to)`.
    pub from: Timestamp,
    pub to: Timestamp,
    /// The subscription from the last poll, if any.
    pub subscription: Option<Subscription>,
    /// Try `Subscribe` when there is no subscription.
    pub subscribe: bool,
    /// Read the availability even if no event came.
    pub full: bool,
    /// Minutes a subscription lives without `GetEvents`.
    pub subscription_minutes: u32,
}

/// One poll of `ask.mailbox`, on `conn` when given (an idle connection of an earlier poll,
/// NTLM already done on it) else a new one; the connection comes back for reuse when the
/// poll succeeded.
pub async fn poll(
    tls: Arc<rustls::ClientConfig>,
    target: Target,
    limits: HttpLimits,
    ask: EwsAsk,
    conn: Option<Conn>,
) -> (Result<EwsPoll, PollError>, Option<Conn>) {
    let mut conn = match conn {
        Some(c) => c,
        None => match Conn::open(tls, target, limits).await {
            Ok(c) => c,
            Err(e) => return (Err(e.into()), None),
        },
    };
    match poll_on(&mut conn, ask).await {
        Ok(p) => (Ok(p), Some(conn)),
        Err(e) => (Err(e), None),
    }
}

async fn poll_on(conn: &mut Conn, ask: EwsAsk) -> Result<EwsPoll, PollError> {
    let path = ews_path(&ask.path);
    let mut out = EwsPoll::default();
    let mut read = ask.full || ask.subscription.is_none();
    let mut sub = ask.subscription;
    if let Some(s) = sub.as_mut() {
        let body = ews_events::get_events(&ask.mailbox, ask.impersonate, s);
        let answer = post_optional(conn, &path, body).await?;
        match answer.map(|a| ews_events::get_events_response(&a)) {
            Some(Ok(ev)) => {
                s.watermark = ev.watermark;
                read |= ev.changed || ev.more;
                out.notification = Some(if ev.changed { "changed" } else { "unchanged" });
            }
            // Expired, unknown, refused, or unreadable: subscribe again, and read now.
            _ => {
                sub = None;
                read = true;
                out.notification = Some("lost");
            }
        }
    }
    if sub.is_none() && ask.subscribe {
        let body =
            ews_events::subscribe_pull(&ask.mailbox, ask.impersonate, ask.subscription_minutes);
        let answer = post_optional(conn, &path, body).await?;
        match answer.map(|a| ews_events::subscribe_response(&a)) {
            Some(Ok(s)) => {
                sub = Some(s);
                out.notification.get_or_insert("subscribed");
            }
            // This mailbox may not be read (impersonation denied): the user's error.
            Some(Err(e)) if e.per_mailbox() => return Err(e.into()),
            other => {
                let why = match other {
                    Some(Err(e)) => e.to_string(),
                    _ => "an HTTP error status".to_owned(),
                };
                tracing::info!(error = %why, "EWS Subscribe refused: polling this gateway");
                out.pull_refused = true;
                out.notification = Some("refused");
            }
        }
    }
    out.subscription = sub;
    if read {
        let body = post(
            conn,
            &path,
            ews::get_user_availability(&ask.mailbox, ask.impersonate, ask.from, ask.to),
        )
        .await?;
        out.intervals = Some(ews::availability_response(&body)?);
    }
    Ok(out)
}

/// Checks a gateway: connect, TLS, authentication, and a SOAP answer to a
/// `GetUserAvailability` for `account` (no impersonation) over the next hour.
pub async fn check(
    tls: Arc<rustls::ClientConfig>,
    target: Target,
    limits: HttpLimits,
    path: String,
    account: String,
    now: Timestamp,
) -> Result<(), PollError> {
    let mut conn = Conn::open(tls, target, limits).await?;
    let mailbox = if account.contains('@') {
        account
    } else {
        // `DOMAIN\user`: no SMTP address to ask for; any SOAP answer still proves the endpoint.
        "herald-gateway-check@invalid".to_owned()
    };
    let body = post(
        &mut conn,
        &ews_path(&path),
        ews::get_user_availability(&mailbox, false, now, now + 3600),
    )
    .await?;
    Ok(ews::check_response(&body)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_addresses() {
        assert_eq!(ews_path(""), DEFAULT_PATH);
        assert_eq!(ews_path("/"), DEFAULT_PATH);
        assert_eq!(ews_path("ews/x.asmx"), "/ews/x.asmx");
        assert_eq!(smtp_address("alice", "example.test"), "alice@example.test");
        assert_eq!(smtp_address("a@b.c", "example.test"), "a@b.c");
    }
}
