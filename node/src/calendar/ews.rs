//! EWS exchanges (I/O here; the SOAP documents and their reading in
//! `herald_federation::calendar::ews`): one poll is one `GetUserAvailability` POST for the
//! user's mailbox on the gateway's EWS URL, authenticated with NTLM (NTLMv2) or Basic, with
//! the impersonation header unless the credentials say otherwise; the gateway check is the
//! same request for the service account's own mailbox, where any well-formed SOAP answer
//! (success, an EWS error, a fault) proves an authenticated EWS endpoint.
//!
//! Notifications (`Subscribe` pull subscriptions, `GetEvents`) are not used yet: every user is
//! polled at the configured interval.

use std::sync::Arc;

use herald_federation::calendar::ews;
use herald_federation::calendar::time::Timestamp;
use herald_federation::calendar::BusyInterval;

use super::caldav::PollError;
use super::http::{Conn, HttpError, HttpLimits, Target};

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

async fn availability(
    conn: &mut Conn,
    path: &str,
    body: String,
) -> Result<hyper::body::Bytes, PollError> {
    let a = conn
        .request_typed("POST", path, None, SOAP_TYPE, body)
        .await?;
    match a.status {
        // Exchange answers SOAP faults with 500.
        200 | 500 => Ok(a.body),
        s => Err(HttpError::Status(s).into()),
    }
}

/// Reads `mailbox`'s availability for `[from, to)`.
#[allow(clippy::too_many_arguments)]
pub async fn poll(
    tls: Arc<rustls::ClientConfig>,
    target: Target,
    limits: HttpLimits,
    path: String,
    mailbox: String,
    impersonate: bool,
    from: Timestamp,
    to: Timestamp,
) -> Result<Vec<BusyInterval>, PollError> {
    let mut conn = Conn::open(tls, target, limits).await?;
    let body = availability(
        &mut conn,
        &ews_path(&path),
        ews::get_user_availability(&mailbox, impersonate, from, to),
    )
    .await?;
    Ok(ews::availability_response(&body)?)
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
    let body = availability(
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
