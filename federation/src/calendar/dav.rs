//! WebDAV / CalDAV (RFC 4918, RFC 4791) requests Herald sends and the `207 Multi-Status`
//! answers it reads, as bytes in and values out.
//!
//! - [`propfind_calendars`]: `PROPFIND` `Depth: 1` body on a calendar home, listing its
//!   collections; [`calendars_in`] keeps those whose `resourcetype` has `C:calendar`.
//! - [`calendar_query`]: the `REPORT` body of a time-range `calendar-query` for `VEVENT`s;
//!   [`calendar_data_in`] collects each `C:calendar-data` of a `200` propstat.
//! - [`sync_collection`]: the `REPORT` body asking what changed in a calendar since a sync
//!   token (RFC 6578); the PROPFIND asks each calendar's `D:sync-token` ([`sync_tokens_in`]),
//!   and [`multistatus_doc`] reads the answer's new token.
//!
//! The XML reader is rxml (namespace-aware, no DTDs, no entities beyond the predefined ones);
//! the document size is bounded by the caller (HTTP body limit) and here by
//! [`MAX_RESPONSES`] and [`MAX_DEPTH`].

use rxml::{Event, Parse, Parser};

use super::time::{format_utc, Timestamp};

/// WebDAV's namespace.
pub const DAV: &str = "DAV:";
/// CalDAV's namespace.
pub const CALDAV: &str = "urn:ietf:params:xml:ns:caldav";

/// Most `<D:response>` elements read from one multistatus.
pub const MAX_RESPONSES: usize = 10_000;
/// Deepest element nesting accepted.
pub const MAX_DEPTH: usize = 32;

/// Why a multistatus could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DavError {
    /// Not well-formed XML (or a construct the reader refuses: DTD, PI, entities).
    #[error("malformed XML: {0}")]
    Xml(String),
    /// The root is not `D:multistatus`.
    #[error("not a multistatus document (root <{0}>)")]
    NotMultistatus(String),
    /// More than [`MAX_RESPONSES`] responses.
    #[error("more than {MAX_RESPONSES} responses")]
    TooManyResponses,
    /// Deeper than [`MAX_DEPTH`].
    #[error("elements nested deeper than {MAX_DEPTH}")]
    TooDeep,
}

/// The PROPFIND body listing a home's collections.
pub fn propfind_calendars() -> &'static str {
    concat!(
        r#"<?xml version="1.0" encoding="utf-8"?>"#,
        r#"<D:propfind xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav">"#,
        r#"<D:prop><D:resourcetype/><D:displayname/><D:sync-token/></D:prop></D:propfind>"#
    )
}

/// The REPORT body asking for the members of a calendar changed since `token` (RFC 6578
/// §3.2), their etags only: an empty answer means nothing changed.
pub fn sync_collection(token: &str) -> String {
    format!(
        concat!(
            r#"<?xml version="1.0" encoding="utf-8"?>"#,
            r#"<D:sync-collection xmlns:D="DAV:"><D:sync-token>{}</D:sync-token>"#,
            r#"<D:sync-level>1</D:sync-level><D:prop><D:getetag/></D:prop>"#,
            r#"</D:sync-collection>"#
        ),
        super::xml_escape(token)
    )
}

/// The REPORT body: every `VEVENT` overlapping `[from, to)`, with its calendar data.
pub fn calendar_query(from: Timestamp, to: Timestamp) -> String {
    format!(
        concat!(
            r#"<?xml version="1.0" encoding="utf-8"?>"#,
            r#"<C:calendar-query xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav">"#,
            r#"<D:prop><C:calendar-data/></D:prop>"#,
            r#"<C:filter><C:comp-filter name="VCALENDAR"><C:comp-filter name="VEVENT">"#,
            r#"<C:time-range start="{}" end="{}"/>"#,
            r#"</C:comp-filter></C:comp-filter></C:filter></C:calendar-query>"#
        ),
        format_utc(from),
        format_utc(to)
    )
}

/// One `<D:response>`: its href, and per propstat the status line and the properties read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DavResponse {
    /// `D:href` (as sent: percent-encoded path or URL).
    pub href: String,
    /// `D:status` directly under the response (e.g. a 404 for the whole resource).
    pub status: Option<String>,
    /// The properties of propstats whose status is 2xx.
    pub ok: Props,
}

/// The properties Herald reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Props {
    /// `resourcetype` contains `C:calendar`.
    pub is_calendar: bool,
    /// `resourcetype` contains `D:collection`.
    pub is_collection: bool,
    /// `C:calendar-data` text.
    pub calendar_data: Option<String>,
    /// `D:displayname`.
    pub display_name: Option<String>,
    /// `D:sync-token` (RFC 6578 §4), on a collection that supports sync.
    pub sync_token: Option<String>,
}

/// A whole `D:multistatus`: its responses, and the `D:sync-token` a sync-collection REPORT
/// answers with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Multistatus {
    /// The `D:response` elements, in order.
    pub responses: Vec<DavResponse>,
    /// The top-level `D:sync-token`, if any.
    pub sync_token: Option<String>,
}

/// Parses a `D:multistatus` document (its responses).
pub fn multistatus(body: &[u8]) -> Result<Vec<DavResponse>, DavError> {
    multistatus_doc(body).map(|m| m.responses)
}

/// Parses a `D:multistatus` document.
pub fn multistatus_doc(body: &[u8]) -> Result<Multistatus, DavError> {
    let mut sync_token = None;
    let mut parser = Parser::new();
    let mut input = body;
    // Path of (namespace, local name) from the root.
    let mut path: Vec<(String, String)> = Vec::new();
    let mut text = String::new();
    let mut out: Vec<DavResponse> = Vec::new();
    let mut cur: Option<DavResponse> = None;
    let mut propstat = Props::default();
    let mut propstat_status: Option<String> = None;
    loop {
        let ev = match parser.parse(&mut input, true) {
            Ok(Some(ev)) => ev,
            Ok(None) => break,
            Err(rxml::error::EndOrError::Error(e)) => return Err(DavError::Xml(e.to_string())),
            Err(rxml::error::EndOrError::NeedMoreData) => {
                return Err(DavError::Xml("the document ends early".into()))
            }
        };
        match ev {
            Event::XmlDeclaration(..) => {}
            Event::StartElement(_, (ns, name), _) => {
                let (ns, name) = (ns.as_str().to_owned(), name.as_str().to_owned());
                if path.is_empty() && !(ns == DAV && name == "multistatus") {
                    return Err(DavError::NotMultistatus(name));
                }
                if path.len() >= MAX_DEPTH {
                    return Err(DavError::TooDeep);
                }
                text.clear();
                match (ns.as_str(), name.as_str(), path.len()) {
                    (DAV, "response", 1) => {
                        if out.len() >= MAX_RESPONSES {
                            return Err(DavError::TooManyResponses);
                        }
                        cur = Some(DavResponse::default());
                    }
                    (DAV, "propstat", 2) => {
                        propstat = Props::default();
                        propstat_status = None;
                    }
                    _ => {}
                }
                if path.len() == 5 && in_resourcetype(&path) {
                    match (ns.as_str(), name.as_str()) {
                        (CALDAV, "calendar") => propstat.is_calendar = true,
                        (DAV, "collection") => propstat.is_collection = true,
                        _ => {}
                    }
                }
                path.push((ns, name));
            }
            Event::Text(_, t) => {
                if text.len() + t.len() <= body.len() {
                    text.push_str(&t);
                }
            }
            Event::EndElement(_) => {
                let Some((ns, name)) = path.pop() else {
                    continue;
                };
                let depth = path.len();
                match (ns.as_str(), name.as_str(), depth) {
                    (DAV, "href", 2) => {
                        if let Some(r) = cur.as_mut() {
                            r.href = text.trim().to_owned();
                        }
                    }
                    (DAV, "status", 2) => {
                        if let Some(r) = cur.as_mut() {
                            r.status = Some(text.trim().to_owned());
                        }
                    }
                    (DAV, "status", 3) => propstat_status = Some(text.trim().to_owned()),
                    (CALDAV, "calendar-data", 4) => {
                        propstat.calendar_data = Some(std::mem::take(&mut text))
                    }
                    (DAV, "displayname", 4) => propstat.display_name = Some(text.trim().to_owned()),
                    (DAV, "sync-token", 4) => propstat.sync_token = Some(text.trim().to_owned()),
                    (DAV, "sync-token", 1) => sync_token = Some(text.trim().to_owned()),
                    (DAV, "propstat", 2) => {
                        let ok = propstat_status.as_deref().is_none_or(status_is_2xx);
                        if let (true, Some(r)) = (ok, cur.as_mut()) {
                            let p = std::mem::take(&mut propstat);
                            r.ok.is_calendar |= p.is_calendar;
                            r.ok.is_collection |= p.is_collection;
                            if p.calendar_data.is_some() {
                                r.ok.calendar_data = p.calendar_data;
                            }
                            if p.display_name.is_some() {
                                r.ok.display_name = p.display_name;
                            }
                            if p.sync_token.as_deref().is_some_and(|t| !t.is_empty()) {
                                r.ok.sync_token = p.sync_token;
                            }
                        }
                    }
                    (DAV, "response", 1) => {
                        if let Some(r) = cur.take() {
                            out.push(r);
                        }
                    }
                    _ => {}
                }
                text.clear();
            }
        }
    }
    Ok(Multistatus {
        responses: out,
        sync_token: sync_token.filter(|t| !t.is_empty()),
    })
}

fn in_resourcetype(path: &[(String, String)]) -> bool {
    path.last()
        .is_some_and(|(ns, n)| ns == DAV && n == "resourcetype")
}

/// Whether an HTTP status line (`HTTP/1.1 200 OK`) says 2xx.
pub fn status_is_2xx(line: &str) -> bool {
    line.split_whitespace()
        .nth(1)
        .is_some_and(|code| code.len() == 3 && code.starts_with('2'))
}

/// The hrefs of the calendar collections in a PROPFIND answer (the home itself excluded:
/// `home` is its path as requested).
pub fn calendars_in(responses: &[DavResponse], home: &str) -> Vec<String> {
    let norm = |s: &str| s.trim_end_matches('/').to_owned();
    responses
        .iter()
        .filter(|r| r.ok.is_calendar)
        .filter(|r| norm(&path_of(&r.href)) != norm(home))
        .map(|r| r.href.clone())
        .collect()
}

/// The sync token of each of `calendars` (hrefs) in a PROPFIND answer; `None` unless every
/// one of them has one (then the home can be polled by sync-collection).
pub fn sync_tokens_in(responses: &[DavResponse], calendars: &[String]) -> Option<Vec<String>> {
    calendars
        .iter()
        .map(|c| {
            responses
                .iter()
                .find(|r| &r.href == c)
                .and_then(|r| r.ok.sync_token.clone())
        })
        .collect()
}

/// The path of an href that may be an absolute URL.
pub fn path_of(href: &str) -> String {
    match href.split_once("://") {
        Some((_, rest)) => rest
            .find('/')
            .map_or_else(|| "/".to_owned(), |i| rest[i..].to_owned()),
        None => href.to_owned(),
    }
}

/// Every `calendar-data` in a REPORT answer.
pub fn calendar_data_in(responses: Vec<DavResponse>) -> Vec<String> {
    responses
        .into_iter()
        .filter_map(|r| r.ok.calendar_data)
        .collect()
}

/// Joins the gateway's base path and a user's calendar mailbox into the calendar home path
/// (`/` + `alice` → `/alice/`; `/dav/` + `a@b.c` → `/dav/a%40b.c/`), percent-encoding what a
/// path segment may not hold.
pub fn home_path(base: &str, mailbox: &str) -> String {
    let mut p = String::from("/");
    for seg in base.split('/').filter(|s| !s.is_empty()) {
        p.push_str(seg);
        p.push('/');
    }
    // A mailbox of "." or ".." (both valid JID localparts) would be a dot segment that climbs out
    // of the base (RFC 3986 §5.2.4): its dots are escaped, so it stays one plain segment.
    let dot_segment = mailbox == "." || mailbox == "..";
    for b in mailbox.bytes() {
        if (b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:".contains(&b))
            && !(dot_segment && b == b'.')
        {
            p.push(b as char);
        } else {
            p.push_str(&format!("%{b:02X}"));
        }
    }
    p.push('/');
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn home_paths() {
        let cases = [
            ("/", "alice", "/alice/"),
            ("", "alice", "/alice/"),
            ("/dav/cal", "alice", "/dav/cal/alice/"),
            ("/dav/", "a@b.c", "/dav/a%40b.c/"),
            ("/", "a b/../c", "/a%20b%2F..%2Fc/"),
            ("/dav/", "..", "/dav/%2E%2E/"),
            ("/dav/", ".", "/dav/%2E/"),
            ("/dav/", "a..b", "/dav/a..b/"),
        ];
        for (base, mb, want) in cases {
            assert_eq!(home_path(base, mb), want, "{base} + {mb}");
        }
    }

    #[test]
    fn status_lines() {
        assert!(status_is_2xx("HTTP/1.1 200 OK"));
        assert!(!status_is_2xx("HTTP/1.1 404 Not Found"));
        assert!(!status_is_2xx("garbage"));
    }

    #[test]
    fn query_body_names_the_window() {
        let q = calendar_query(0, 3600);
        assert!(q.contains(r#"start="19700101T000000Z" end="19700101T010000Z""#));
        assert!(multistatus(q.as_bytes()).is_err(), "not a multistatus");
    }

    #[test]
    fn bad_documents() {
        type Check = fn(&DavError) -> bool;
        let cases: Vec<(&[u8], Check)> = vec![
            (b"<html><body>hi</body></html>", |e| {
                matches!(e, DavError::NotMultistatus(_))
            }),
            (b"<D:multistatus xmlns:D='DAV:'>", |e| {
                matches!(e, DavError::Xml(_))
            }),
            (b"not xml at all", |e| matches!(e, DavError::Xml(_))),
            (
                b"<!DOCTYPE x [<!ENTITY a 'b'>]><D:multistatus xmlns:D='DAV:'/>",
                |e| matches!(e, DavError::Xml(_)),
            ),
        ];
        for (doc, ok) in cases {
            let got = multistatus(doc).expect_err("refused");
            assert!(ok(&got), "{:?}: {got:?}", String::from_utf8_lossy(doc));
        }
        let deep = format!(
            "<D:multistatus xmlns:D='DAV:'>{}{}</D:multistatus>",
            "<D:x>".repeat(40),
            "</D:x>".repeat(40)
        );
        assert_eq!(multistatus(deep.as_bytes()), Err(DavError::TooDeep));
        let many = format!(
            "<D:multistatus xmlns:D='DAV:'>{}</D:multistatus>",
            "<D:response><D:href>/x</D:href></D:response>".repeat(MAX_RESPONSES + 1)
        );
        assert_eq!(
            multistatus(many.as_bytes()),
            Err(DavError::TooManyResponses)
        );
    }

    #[test]
    fn non_2xx_propstats_are_ignored() {
        let doc = br#"<?xml version="1.0"?>
<multistatus xmlns="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav">
 <response><href>/alice/cal/</href>
  <propstat><prop><resourcetype><collection/><C:calendar/></resourcetype></prop>
   <status>HTTP/1.1 404 Not Found</status></propstat>
 </response>
</multistatus>"#;
        let r = multistatus(doc).unwrap();
        assert_eq!(r.len(), 1);
        assert!(!r[0].ok.is_calendar);
    }

    /// RFC 6578 §4 and §3.2: the tokens of a home's calendars, and a sync-collection answer
    /// with nothing changed, one changed member and one removed member.
    #[test]
    fn sync_tokens_and_sync_answers() {
        let propfind = br#"<?xml version="1.0"?>
<multistatus xmlns="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav">
 <response><href>/alice/</href>
  <propstat><prop><resourcetype><collection/></resourcetype></prop>
   <status>HTTP/1.1 200 OK</status></propstat>
  <propstat><prop><sync-token/></prop><status>HTTP/1.1 404 Not Found</status></propstat>
 </response>
 <response><href>/alice/work/</href>
  <propstat><prop><resourcetype><collection/><C:calendar/></resourcetype>
   <sync-token>http://radicale.org/ns/sync/abc</sync-token></prop>
   <status>HTTP/1.1 200 OK</status></propstat>
 </response>
 <response><href>/alice/home/</href>
  <propstat><prop><resourcetype><collection/><C:calendar/></resourcetype></prop>
   <status>HTTP/1.1 200 OK</status></propstat>
  <propstat><prop><sync-token/></prop><status>HTTP/1.1 404 Not Found</status></propstat>
 </response>
</multistatus>"#;
        let r = multistatus(propfind).unwrap();
        let cals = calendars_in(&r, "/alice/");
        assert_eq!(cals, ["/alice/work/", "/alice/home/"]);
        // One calendar without a token: the home is not synced.
        assert_eq!(sync_tokens_in(&r, &cals), None);
        assert_eq!(
            sync_tokens_in(&r, &cals[..1]),
            Some(vec!["http://radicale.org/ns/sync/abc".to_string()])
        );

        let unchanged =
            br#"<multistatus xmlns="DAV:"><sync-token>tok-2</sync-token></multistatus>"#;
        let m = multistatus_doc(unchanged).unwrap();
        assert!(m.responses.is_empty());
        assert_eq!(m.sync_token.as_deref(), Some("tok-2"));

        let changed = br#"<D:multistatus xmlns:D="DAV:">
 <D:response><D:href>/alice/work/1.ics</D:href>
  <D:propstat><D:prop><D:getetag>"2"</D:getetag></D:prop>
   <D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response>
 <D:response><D:href>/alice/work/2.ics</D:href><D:status>HTTP/1.1 404 Not Found</D:status>
 </D:response>
 <D:sync-token>tok-3</D:sync-token>
</D:multistatus>"#;
        let m = multistatus_doc(changed).unwrap();
        assert_eq!(m.responses.len(), 2);
        assert_eq!(m.sync_token.as_deref(), Some("tok-3"));

        let body = sync_collection("http://x/sync/<1>&");
        assert!(
            body.contains("<D:sync-token>http://x/sync/&lt;1&gt;&amp;</D:sync-token>"),
            "{body}"
        );
    }
}
