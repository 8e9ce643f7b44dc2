//! Exchange Web Services (EWS) SOAP, sans I/O: the `GetUserAvailability` request Herald sends
//! for one mailbox (merged free/busy over a window around now, `DetailedMerged` view so that
//! each calendar item's `BusyType` is known) and the reader of its answer, bounded.
//!
//! Shapes follow Microsoft's published schema (`Messages.xsd`, `Types.xsd`, 2006 namespaces):
//! `m:GetUserAvailabilityRequest` = `t:TimeZone` + `m:MailboxDataArray` +
//! `t:FreeBusyViewOptions`; the answer's `m:FreeBusyResponse` holds a `m:ResponseMessage`
//! (`ResponseClass` Success | Warning | Error, `m:ResponseCode`, `m:MessageText`) and a
//! `m:FreeBusyView` with `t:CalendarEventArray` / `t:CalendarEvent` (`t:StartTime`,
//! `t:EndTime`, `t:BusyType` Free | Tentative | Busy | OOF | NoData | WorkingElsewhere).
//! Every time is sent and read in UTC (the request's time zone has bias 0).
//!
//! Access to other users' mailboxes goes through impersonation (CAL-13): the SOAP header
//! `t:ExchangeImpersonation/t:ConnectingSID/t:SmtpAddress` names the mailbox, unless the
//! credentials say `--no-impersonation` (the account then needs free/busy read rights only,
//! which `GetUserAvailability` honours for any mailbox).

use rxml::{Event, Parse, Parser};

use super::ical::{BusyInterval, BusyKind};
use super::time::{civil_from_days, days_from_civil, Timestamp};
use super::xml_escape as escape;

/// The next event of a SOAP answer (`None` at its end), errors as [`EwsError::Xml`].
pub(super) fn next_event(
    parser: &mut Parser,
    input: &mut &[u8],
) -> Result<Option<Event>, EwsError> {
    match parser.parse(input, true) {
        Ok(ev) => Ok(ev),
        Err(rxml::error::EndOrError::Error(e)) => Err(EwsError::Xml(e.to_string())),
        Err(rxml::error::EndOrError::NeedMoreData) => {
            Err(EwsError::Xml("the document ends early".into()))
        }
    }
}

/// Checks an element opening at `depth`: the root must be a SOAP envelope, nothing deeper
/// than [`MAX_DEPTH`].
pub(super) fn check_open(depth: usize, ns: &str, name: &str) -> Result<(), EwsError> {
    if depth == 0 && !((ns == SOAP || ns == SOAP12) && name == "Envelope") {
        return Err(EwsError::NotSoap(name.to_owned()));
    }
    if depth >= MAX_DEPTH {
        return Err(EwsError::TooDeep);
    }
    Ok(())
}

/// SOAP 1.1 envelope namespace.
pub const SOAP: &str = "http://schemas.xmlsoap.org/soap/envelope/";
/// SOAP 1.2 envelope namespace (accepted on answers).
pub const SOAP12: &str = "http://www.w3.org/2003/05/soap-envelope";
/// EWS types namespace.
pub const TYPES: &str = "http://schemas.microsoft.com/exchange/services/2006/types";
/// EWS messages namespace.
pub const MESSAGES: &str = "http://schemas.microsoft.com/exchange/services/2006/messages";

/// Deepest element nesting accepted.
pub const MAX_DEPTH: usize = 32;
/// Most calendar events read from one answer.
pub const MAX_EVENTS: usize = 10_000;
/// Longest text kept from one element.
pub const MAX_TEXT: usize = 64 * 1024;

/// Why an EWS answer gives no availability.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EwsError {
    /// Not well-formed XML (or a construct the reader refuses: DTD, PI, entities).
    #[error("malformed XML: {0}")]
    Xml(String),
    /// The root is not a SOAP envelope.
    #[error("not a SOAP envelope (root <{0}>)")]
    NotSoap(String),
    /// Deeper than [`MAX_DEPTH`].
    #[error("elements nested deeper than {MAX_DEPTH}")]
    TooDeep,
    /// More than [`MAX_EVENTS`] calendar events.
    #[error("more than {MAX_EVENTS} calendar events")]
    TooManyEvents,
    /// A SOAP fault (`faultcode`, `faultstring`, and the EWS `ResponseCode` of its detail).
    #[error("SOAP fault {code}: {text}")]
    Fault {
        /// The EWS response code of the detail, else `faultcode`.
        code: String,
        /// `faultstring`.
        text: String,
    },
    /// `ResponseClass="Error"`: the EWS `ResponseCode` and `MessageText`.
    #[error("EWS error {code}: {text}")]
    Response {
        /// `ResponseCode`.
        code: String,
        /// `MessageText`.
        text: String,
    },
    /// No `FreeBusyResponse` in a well-formed envelope.
    #[error("no FreeBusyResponse in the answer")]
    NoAnswer,
    /// A date-time that is not `xs:dateTime`.
    #[error("bad date-time {0:?}")]
    BadTime(String),
}

impl EwsError {
    /// The error concerns one mailbox (denied impersonation, unknown mailbox), not the
    /// gateway: other users keep working through it (CAL-13).
    pub fn per_mailbox(&self) -> bool {
        let code = match self {
            EwsError::Fault { code, .. } | EwsError::Response { code, .. } => code.as_str(),
            _ => return false,
        };
        [
            "ErrorImpersonateUserDenied",
            "ErrorNonExistentMailbox",
            "ErrorMailRecipientNotFound",
            "ErrorAccessDenied",
            "ErrorFreeBusyGenerationFailed",
        ]
        .iter()
        .any(|c| code.ends_with(c))
    }
}

/// Formats a Unix time as an `xs:dateTime` without zone (read in the request's UTC zone).
pub fn format_datetime(t: Timestamp) -> String {
    let (y, m, d) = civil_from_days(t.div_euclid(86_400));
    let s = t.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        s / 3600,
        (s / 60) % 60,
        s % 60
    )
}

/// Reads an `xs:dateTime`: `YYYY-MM-DDTHH:MM:SS`, optional fraction, optional `Z` or
/// `±HH:MM` (none: UTC, the request's zone).
pub fn parse_datetime(raw: &str) -> Result<Timestamp, EwsError> {
    let bad = || EwsError::BadTime(raw.chars().take(64).collect());
    let s = raw.trim();
    let num = |r: std::ops::Range<usize>| -> Result<i64, EwsError> {
        let part = s.get(r).ok_or_else(bad)?;
        if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        part.parse::<i64>().map_err(|_| bad())
    };
    if s.len() < 19 || s.as_bytes()[4] != b'-' || s.as_bytes()[7] != b'-' {
        return Err(bad());
    }
    if !matches!(s.as_bytes()[10], b'T' | b't') || s.as_bytes()[13] != b':' {
        return Err(bad());
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 24 || mi > 59 || se > 60 {
        return Err(bad());
    }
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return Err(bad());
        }
        rest = &frac[n..];
    }
    let offset = match rest {
        "" | "Z" | "z" => 0,
        o if o.len() == 6 && (o.starts_with('+') || o.starts_with('-')) && &o[3..4] == ":" => {
            let hh: i64 = o[1..3].parse().map_err(|_| bad())?;
            let mm: i64 = o[4..6].parse().map_err(|_| bad())?;
            let v = hh * 3600 + mm * 60;
            if o.starts_with('-') {
                -v
            } else {
                v
            }
        }
        _ => return Err(bad()),
    };
    let days = days_from_civil(y, mo as u32, d as u32);
    Ok(days * 86_400 + h * 3600 + mi * 60 + se - offset)
}

/// The `GetUserAvailability` request for `mailbox` over `[from, to)`, impersonating the
/// mailbox when `impersonate`. `interval_minutes` is the merged free/busy granularity.
pub fn get_user_availability(
    mailbox: &str,
    impersonate: bool,
    from: Timestamp,
    to: Timestamp,
) -> String {
    let mb = escape(mailbox);
    let impersonation = if impersonate {
        format!(
            "<t:ExchangeImpersonation><t:ConnectingSID><t:SmtpAddress>{mb}</t:SmtpAddress>\
             </t:ConnectingSID></t:ExchangeImpersonation>"
        )
    } else {
        String::new()
    };
    // A zone with bias 0 and no daylight saving: every time in the exchange is UTC.
    let utc_rule = "<t:Bias>0</t:Bias><t:Time>00:00:00</t:Time><t:DayOrder>1</t:DayOrder>\
                    <t:Month>1</t:Month><t:DayOfWeek>Sunday</t:DayOfWeek>";
    format!(
        concat!(
            r#"<?xml version="1.0" encoding="utf-8"?>"#,
            r#"<soap:Envelope xmlns:soap="{soap}" xmlns:t="{t}" xmlns:m="{m}">"#,
            r#"<soap:Header><t:RequestServerVersion Version="Exchange2010_SP1"/>{imp}</soap:Header>"#,
            r#"<soap:Body><m:GetUserAvailabilityRequest>"#,
            r#"<t:TimeZone><t:Bias>0</t:Bias><t:StandardTime>{rule}</t:StandardTime>"#,
            r#"<t:DaylightTime>{rule}</t:DaylightTime></t:TimeZone>"#,
            r#"<m:MailboxDataArray><t:MailboxData><t:Email><t:Address>{mb}</t:Address></t:Email>"#,
            r#"<t:AttendeeType>Required</t:AttendeeType><t:ExcludeConflicts>false</t:ExcludeConflicts>"#,
            r#"</t:MailboxData></m:MailboxDataArray>"#,
            r#"<t:FreeBusyViewOptions><t:TimeWindow><t:StartTime>{from}</t:StartTime>"#,
            r#"<t:EndTime>{to}</t:EndTime></t:TimeWindow>"#,
            r#"<t:MergedFreeBusyIntervalInMinutes>15</t:MergedFreeBusyIntervalInMinutes>"#,
            r#"<t:RequestedView>DetailedMerged</t:RequestedView></t:FreeBusyViewOptions>"#,
            r#"</m:GetUserAvailabilityRequest></soap:Body></soap:Envelope>"#
        ),
        soap = SOAP,
        t = TYPES,
        m = MESSAGES,
        imp = impersonation,
        rule = utc_rule,
        mb = mb,
        from = format_datetime(from),
        to = format_datetime(to),
    )
}

/// One `t:CalendarEvent` as read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct RawEvent {
    start: Option<String>,
    end: Option<String>,
    busy: Option<String>,
}

/// Maps an EWS `BusyType` to the overlay's kind (Table 1-1): Free, NoData and
/// WorkingElsewhere show nothing.
pub fn busy_kind(busy_type: &str) -> Option<BusyKind> {
    match busy_type.trim() {
        "Tentative" => Some(BusyKind::Tentative),
        "Busy" => Some(BusyKind::Busy),
        "OOF" => Some(BusyKind::OutOfOffice),
        _ => None,
    }
}

/// Reads a `GetUserAvailability` answer: the busy intervals of the (one) mailbox asked for.
/// A SOAP fault or `ResponseClass="Error"` is an error naming the EWS response code.
pub fn availability_response(body: &[u8]) -> Result<Vec<BusyInterval>, EwsError> {
    let mut parser = Parser::new();
    let mut input = body;
    let mut path: Vec<(String, String)> = Vec::new();
    let mut text = String::new();
    let mut events: Vec<RawEvent> = Vec::new();
    let mut cur: Option<RawEvent> = None;
    let mut fault: Option<(String, String, Option<String>)> = None;
    let mut error_class = false;
    let mut response_code: Option<String> = None;
    let mut message_text: Option<String> = None;
    let mut saw_answer = false;
    loop {
        let Some(ev) = next_event(&mut parser, &mut input)? else {
            break;
        };
        match ev {
            Event::XmlDeclaration(..) => {}
            Event::StartElement(_, (ns, name), attrs) => {
                let (ns, name) = (ns.as_str().to_owned(), name.as_str().to_owned());
                check_open(path.len(), &ns, &name)?;
                text.clear();
                match name.as_str() {
                    "Fault" if ns == SOAP || ns == SOAP12 => {
                        fault = Some((String::new(), String::new(), None))
                    }
                    "FreeBusyResponse" => saw_answer = true,
                    "ResponseMessage" => {
                        let class = attrs
                            .iter()
                            .find(|((ans, an), _)| ans.is_none() && an.as_str() == "ResponseClass")
                            .map(|(_, v)| v.to_string());
                        if class.as_deref() == Some("Error") {
                            error_class = true;
                        }
                    }
                    "CalendarEvent" if ns == TYPES => {
                        if events.len() >= MAX_EVENTS {
                            return Err(EwsError::TooManyEvents);
                        }
                        cur = Some(RawEvent::default());
                    }
                    _ => {}
                }
                path.push((ns, name));
            }
            Event::Text(_, t) => {
                if text.len() + t.len() <= MAX_TEXT {
                    text.push_str(&t);
                }
            }
            Event::EndElement(_) => {
                let Some((ns, name)) = path.pop() else {
                    continue;
                };
                let parent = path.last().map(|(_, n)| n.as_str()).unwrap_or("");
                let value = text.trim().to_owned();
                match name.as_str() {
                    "faultcode" | "Code" if fault.is_some() && ns != TYPES => {
                        if let Some(f) = fault.as_mut() {
                            if f.0.is_empty() {
                                f.0 = value;
                            }
                        }
                    }
                    "Value" if fault.is_some() && parent == "Code" => {
                        if let Some(f) = fault.as_mut() {
                            f.0 = value;
                        }
                    }
                    "faultstring" | "Text" if fault.is_some() => {
                        if let Some(f) = fault.as_mut() {
                            f.1 = value;
                        }
                    }
                    "ResponseCode" => {
                        if let Some(f) = fault.as_mut() {
                            f.2 = Some(value.clone());
                        }
                        response_code = Some(value);
                    }
                    "MessageText" => message_text = Some(value),
                    "StartTime" if parent == "CalendarEvent" => {
                        if let Some(e) = cur.as_mut() {
                            e.start = Some(value)
                        }
                    }
                    "EndTime" if parent == "CalendarEvent" => {
                        if let Some(e) = cur.as_mut() {
                            e.end = Some(value)
                        }
                    }
                    "BusyType" if parent == "CalendarEvent" => {
                        if let Some(e) = cur.as_mut() {
                            e.busy = Some(value)
                        }
                    }
                    "CalendarEvent" if ns == TYPES => {
                        if let Some(e) = cur.take() {
                            events.push(e);
                        }
                    }
                    _ => {}
                }
                text.clear();
            }
        }
    }
    if let Some((code, text, detail)) = fault {
        return Err(EwsError::Fault {
            code: detail.unwrap_or(code),
            text,
        });
    }
    if error_class {
        return Err(EwsError::Response {
            code: response_code.unwrap_or_else(|| "(no ResponseCode)".into()),
            text: message_text.unwrap_or_default(),
        });
    }
    if !saw_answer {
        return Err(EwsError::NoAnswer);
    }
    let mut out = Vec::with_capacity(events.len());
    for e in events {
        let Some(kind) = e.busy.as_deref().and_then(busy_kind) else {
            continue;
        };
        let start = parse_datetime(e.start.as_deref().unwrap_or(""))?;
        let end = parse_datetime(e.end.as_deref().unwrap_or(""))?;
        if end > start {
            out.push(BusyInterval { start, end, kind });
        }
    }
    Ok(out)
}

/// Reads any SOAP answer to a gateway check: a well-formed envelope (success, an EWS error
/// or a fault) proves an authenticated EWS endpoint; anything else is an error.
pub fn check_response(body: &[u8]) -> Result<(), EwsError> {
    match availability_response(body) {
        Ok(_) | Err(EwsError::Fault { .. } | EwsError::Response { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ANSWER: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/">
 <s:Header><h:ServerVersionInfo MajorVersion="14" MinorVersion="1" xmlns:h="http://schemas.microsoft.com/exchange/services/2006/types"/></s:Header>
 <s:Body>
  <GetUserAvailabilityResponse xmlns="http://schemas.microsoft.com/exchange/services/2006/messages">
   <FreeBusyResponseArray><FreeBusyResponse>
    <ResponseMessage ResponseClass="Success"><ResponseCode>NoError</ResponseCode></ResponseMessage>
    <FreeBusyView>
     <FreeBusyViewType xmlns="http://schemas.microsoft.com/exchange/services/2006/types">DetailedMerged</FreeBusyViewType>
     <MergedFreeBusy xmlns="http://schemas.microsoft.com/exchange/services/2006/types">0220</MergedFreeBusy>
     <CalendarEventArray xmlns="http://schemas.microsoft.com/exchange/services/2006/types">
      <CalendarEvent><StartTime>2026-12-06T09:00:00</StartTime><EndTime>2026-12-06T10:00:00</EndTime><BusyType>Busy</BusyType>
       <CalendarEventDetails><Subject>Review &amp; plan</Subject><IsMeeting>true</IsMeeting></CalendarEventDetails></CalendarEvent>
      <CalendarEvent><StartTime>2026-12-06T11:00:00Z</StartTime><EndTime>2026-12-06T13:00:00.000+01:00</EndTime><BusyType>OOF</BusyType></CalendarEvent>
      <CalendarEvent><StartTime>2026-12-06T13:00:00</StartTime><EndTime>2026-12-06T14:00:00</EndTime><BusyType>Tentative</BusyType></CalendarEvent>
      <CalendarEvent><StartTime>2026-12-06T15:00:00</StartTime><EndTime>2026-12-06T16:00:00</EndTime><BusyType>Free</BusyType></CalendarEvent>
     </CalendarEventArray>
    </FreeBusyView>
   </FreeBusyResponse></FreeBusyResponseArray>
  </GetUserAvailabilityResponse>
 </s:Body>
</s:Envelope>"#;

    fn t(s: &str) -> Timestamp {
        parse_datetime(s).unwrap()
    }

    #[test]
    fn reads_events_by_busy_type() {
        let got = availability_response(ANSWER.as_bytes()).unwrap();
        let iv = |a: &str, b: &str, kind| BusyInterval {
            start: t(a),
            end: t(b),
            kind,
        };
        assert_eq!(
            got,
            vec![
                iv(
                    "2026-12-06T09:00:00Z",
                    "2026-12-06T10:00:00Z",
                    BusyKind::Busy
                ),
                // 13:00+01:00 is 12:00Z.
                iv(
                    "2026-12-06T11:00:00Z",
                    "2026-12-06T12:00:00Z",
                    BusyKind::OutOfOffice
                ),
                iv(
                    "2026-12-06T13:00:00Z",
                    "2026-12-06T14:00:00Z",
                    BusyKind::Tentative
                ),
            ]
        );
    }

    #[test]
    fn datetimes() {
        assert_eq!(t("1970-01-01T00:00:00"), 0);
        assert_eq!(t("1970-01-01T01:00:00+01:00"), 0);
        assert_eq!(t("1970-01-01T00:00:00.123Z"), 0);
        assert_eq!(t("1969-12-31T23:00:00-01:00"), 0);
        assert_eq!(format_datetime(86_400 + 3661), "1970-01-02T01:01:01");
        for bad in [
            "",
            "2026-12-06",
            "2026-13-01T00:00:00",
            "2026-12-06T00:00:00+1",
            "x",
        ] {
            assert!(parse_datetime(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn request_shape() {
        let r = get_user_availability("a&b@example.test", true, 0, 3600);
        assert!(r.contains("<t:SmtpAddress>a&amp;b@example.test</t:SmtpAddress>"));
        assert!(r.contains("<t:StartTime>1970-01-01T00:00:00</t:StartTime>"));
        assert!(r.contains("<t:RequestedView>DetailedMerged</t:RequestedView>"));
        assert!(!get_user_availability("a@b", false, 0, 1).contains("ExchangeImpersonation"));
        // Well-formed, and not mistaken for an answer.
        assert_eq!(availability_response(r.as_bytes()), Err(EwsError::NoAnswer));
    }

    #[test]
    fn faults_and_errors() {
        let fault = r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><s:Fault>
<faultcode xmlns:a="http://schemas.microsoft.com/exchange/services/2006/types">a:ErrorImpersonateUserDenied</faultcode>
<faultstring xml:lang="en-US">The account does not have permission to impersonate the requested user.</faultstring>
<detail><e:ResponseCode xmlns:e="http://schemas.microsoft.com/exchange/services/2006/errors">ErrorImpersonateUserDenied</e:ResponseCode></detail>
</s:Fault></s:Body></s:Envelope>"#;
        let e = availability_response(fault.as_bytes()).unwrap_err();
        assert!(
            matches!(&e, EwsError::Fault { code, .. } if code == "ErrorImpersonateUserDenied"),
            "{e:?}"
        );
        assert!(e.per_mailbox());
        assert_eq!(check_response(fault.as_bytes()), Ok(()));
        let err = ANSWER.replace(
            r#"ResponseClass="Success"><ResponseCode>NoError</ResponseCode>"#,
            r#"ResponseClass="Error"><MessageText>No mailbox.</MessageText><ResponseCode>ErrorMailRecipientNotFound</ResponseCode>"#,
        );
        let e = availability_response(err.as_bytes()).unwrap_err();
        assert_eq!(
            e,
            EwsError::Response {
                code: "ErrorMailRecipientNotFound".into(),
                text: "No mailbox.".into()
            }
        );
        assert!(e.per_mailbox());
        let busy = r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><s:Fault><faultcode>s:Server</faultcode><faultstring>ErrorServerBusy</faultstring></s:Fault></s:Body></s:Envelope>"#;
        assert!(!availability_response(busy.as_bytes())
            .unwrap_err()
            .per_mailbox());
    }

    #[test]
    fn bad_documents() {
        type Check = fn(&EwsError) -> bool;
        let cases: Vec<(&[u8], Check)> = vec![
            (b"<html><body>Outlook Web App</body></html>", |e| {
                matches!(e, EwsError::NotSoap(_))
            }),
            (b"\x00\xff garbage", |e| matches!(e, EwsError::Xml(_))),
            (
                b"<s:Envelope xmlns:s='http://schemas.xmlsoap.org/soap/envelope/'>",
                |e| matches!(e, EwsError::Xml(_)),
            ),
            (
                b"<!DOCTYPE x [<!ENTITY a 'b'>]><s:Envelope xmlns:s='http://schemas.xmlsoap.org/soap/envelope/'/>",
                |e| matches!(e, EwsError::Xml(_)),
            ),
            (
                b"<s:Envelope xmlns:s='http://schemas.xmlsoap.org/soap/envelope/'><s:Body/></s:Envelope>",
                |e| matches!(e, EwsError::NoAnswer),
            ),
        ];
        for (doc, ok) in cases {
            let got = availability_response(doc).expect_err("refused");
            assert!(ok(&got), "{:?}: {got:?}", String::from_utf8_lossy(doc));
            assert!(check_response(doc).is_err());
        }
        let deep = format!(
            "<s:Envelope xmlns:s='{SOAP}'>{}{}</s:Envelope>",
            "<x>".repeat(40),
            "</x>".repeat(40)
        );
        assert_eq!(
            availability_response(deep.as_bytes()),
            Err(EwsError::TooDeep)
        );
        let ev = "<CalendarEvent><StartTime>2026-12-06T09:00:00</StartTime><EndTime>2026-12-06T10:00:00</EndTime><BusyType>Busy</BusyType></CalendarEvent>";
        let many = format!(
            "<s:Envelope xmlns:s='{SOAP}'><s:Body><FreeBusyResponse><CalendarEventArray xmlns='{TYPES}'>{}</CalendarEventArray></FreeBusyResponse></s:Body></s:Envelope>",
            ev.repeat(MAX_EVENTS + 1)
        );
        assert_eq!(
            availability_response(many.as_bytes()),
            Err(EwsError::TooManyEvents)
        );
        let bad_time = ANSWER.replace("2026-12-06T09:00:00", "tomorrow");
        assert!(matches!(
            availability_response(bad_time.as_bytes()),
            Err(EwsError::BadTime(_))
        ));
    }

    #[test]
    fn split_anywhere_is_not_a_concern_but_truncation_is_an_error() {
        // The node reads the whole body (bounded) before parsing: every prefix is refused.
        for n in (0..ANSWER.len()).step_by(37) {
            assert!(
                availability_response(&ANSWER.as_bytes()[..n]).is_err(),
                "{n}"
            );
        }
    }
}
