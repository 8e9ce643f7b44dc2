//! `loadgen caldav-serve`: the calendar server of the calendar-burst benchmark
//! ([`crate::scenarios::calendar`]).
//!
//! It is a load responder, not a CalDAV server: over HTTPS (HTTP/1.1, keep-alive, Basic
//! authentication) it answers exactly the requests Herald's CalDAV gateway client makes — the
//! gateway check (`PROPFIND Depth: 0`), the listing of a user's calendar home (`PROPFIND
//! Depth: 1` on `/<mailbox>/`: one calendar, `/<mailbox>/work/`, no sync token) and the
//! time-range `calendar-query` `REPORT` on that calendar — and gives every user the same
//! calendar: empty until the meeting start is written into `--start-file` (Unix seconds),
//! then one 30-minute meeting from that instant. Anything else gets 400/404/405/411. The
//! benchmark measures Herald's burst handling, so the calendar server must cost next to
//! nothing; CalDAV correctness is tested against Radicale (`tests/xmpp/test_calendar.py`).
//!
//! The request parsing and the answers are pure functions ([`parse_head`], [`answer`]), unit
//! tested here and checked against Herald's own multistatus and iCalendar readers.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

/// Largest request head read.
const MAX_HEAD: usize = 16 * 1024;
/// Largest request body read.
const MAX_BODY: usize = 64 * 1024;
/// A connection idle this long is closed.
const IDLE: Duration = Duration::from_secs(60);
/// Length of the meeting, seconds.
pub const MEETING_SECONDS: i64 = 1800;

/// What the responder needs.
pub struct ServeConfig {
    pub listen: SocketAddr,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// `user:password` expected in Basic authentication.
    pub credentials: String,
    /// File holding the meeting start (Unix seconds); absent or empty: no meeting.
    pub start_file: PathBuf,
    /// Longest run.
    pub limit: Duration,
}

/// One parsed request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub method: String,
    pub path: String,
    pub depth: Option<String>,
    pub content_length: Option<usize>,
    pub chunked: bool,
    pub authorization: Option<String>,
    pub close: bool,
}

/// Parses a request head (without the final blank line). `None`: not HTTP/1.x.
pub fn parse_head(head: &str) -> Option<Head> {
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let (method, path, version) = (first.next()?, first.next()?, first.next()?);
    if !version.starts_with("HTTP/1.") || first.next().is_some() {
        return None;
    }
    let mut h = Head {
        method: method.to_owned(),
        path: path.to_owned(),
        depth: None,
        content_length: None,
        chunked: false,
        authorization: None,
        close: version == "HTTP/1.0",
    };
    for line in lines {
        let (name, value) = line.split_once(':')?;
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "depth" => h.depth = Some(value.to_owned()),
            "content-length" => h.content_length = Some(value.parse().ok()?),
            "transfer-encoding" => h.chunked = value.eq_ignore_ascii_case("chunked"),
            "authorization" => h.authorization = Some(value.to_owned()),
            "connection" => h.close = value.eq_ignore_ascii_case("close"),
            _ => {}
        }
    }
    Some(h)
}

/// An answer: status, reason and body (XML when not empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub reason: &'static str,
    pub body: String,
    /// Ask for Basic credentials.
    pub challenge: bool,
}

impl Answer {
    fn new(status: u16, reason: &'static str, body: String) -> Self {
        Answer {
            status,
            reason,
            body,
            challenge: false,
        }
    }

    /// The bytes on the wire.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = format!(
            "HTTP/1.1 {} {}\r\nContent-Length: {}\r\n",
            self.status,
            self.reason,
            self.body.len()
        );
        if !self.body.is_empty() {
            out.push_str("Content-Type: application/xml; charset=utf-8\r\n");
        }
        if self.challenge {
            out.push_str("WWW-Authenticate: Basic realm=\"bench\"\r\n");
        }
        out.push_str("\r\n");
        out.push_str(&self.body);
        out.into_bytes()
    }
}

/// What one request shows and how it is answered; `basic` is the expected
/// `Authorization` value, `start` the meeting start (None: no meeting).
pub fn answer(h: &Head, basic: &str, start: Option<i64>) -> (Answer, Kind) {
    if h.authorization.as_deref() != Some(basic) {
        let mut a = Answer::new(401, "Unauthorized", String::new());
        a.challenge = true;
        return (a, Kind::Refused);
    }
    let segs: Vec<&str> = h.path.split('/').filter(|s| !s.is_empty()).collect();
    match (h.method.as_str(), h.depth.as_deref(), segs.as_slice()) {
        ("PROPFIND", Some("0"), []) => (
            Answer::new(207, "Multi-Status", multistatus(&[collection("/", false)])),
            Kind::Check,
        ),
        ("PROPFIND", Some("1"), [mailbox]) => {
            let home = format!("/{mailbox}/");
            let cal = format!("/{mailbox}/work/");
            let body = multistatus(&[collection(&home, false), collection(&cal, true)]);
            (Answer::new(207, "Multi-Status", body), Kind::Home)
        }
        ("REPORT", _, [mailbox, "work"]) => {
            let responses = match start {
                Some(t) => vec![event(mailbox, t)],
                None => vec![],
            };
            let kind = if start.is_some() {
                Kind::Meeting
            } else {
                Kind::Empty
            };
            (
                Answer::new(207, "Multi-Status", multistatus(&responses)),
                kind,
            )
        }
        ("PROPFIND" | "REPORT", ..) => {
            (Answer::new(404, "Not Found", String::new()), Kind::Refused)
        }
        _ => (
            Answer::new(405, "Method Not Allowed", String::new()),
            Kind::Refused,
        ),
    }
}

/// What a request was, for the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Check,
    Home,
    Empty,
    Meeting,
    Refused,
}

fn multistatus(responses: &[String]) -> String {
    let mut s = String::from(concat!(
        r#"<?xml version="1.0" encoding="utf-8"?>"#,
        r#"<D:multistatus xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav">"#
    ));
    for r in responses {
        s.push_str(r);
    }
    s.push_str("</D:multistatus>");
    s
}

fn collection(href: &str, calendar: bool) -> String {
    let kind = if calendar {
        "<D:collection/><C:calendar/>"
    } else {
        "<D:collection/>"
    };
    format!(
        "<D:response><D:href>{href}</D:href><D:propstat><D:prop><D:resourcetype>{kind}</D:resourcetype></D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response>"
    )
}

/// The meeting of `mailbox` from `start`, as a calendar-query response.
fn event(mailbox: &str, start: i64) -> String {
    let (s, e) = (utc(start), utc(start + MEETING_SECONDS));
    format!(
        "<D:response><D:href>/{mailbox}/work/standup.ics</D:href><D:propstat><D:prop><D:getetag>\"{start}\"</D:getetag><C:calendar-data>BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//herald-bench//EN\r\nBEGIN:VEVENT\r\nUID:burst-{start}@bench\r\nDTSTAMP:{s}\r\nDTSTART:{s}\r\nDTEND:{e}\r\nSUMMARY:All hands\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n</C:calendar-data></D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response>"
    )
}

/// `YYYYMMDDTHHMMSSZ` for Unix seconds.
pub fn utc(t: i64) -> String {
    herald_federation::calendar::time::format_utc(t)
}

/// Requests served, by kind.
#[derive(Default)]
struct Counts {
    check: AtomicU64,
    home: AtomicU64,
    empty: AtomicU64,
    meeting: AtomicU64,
    refused: AtomicU64,
}

impl Counts {
    fn add(&self, k: Kind) {
        let c = match k {
            Kind::Check => &self.check,
            Kind::Home => &self.home,
            Kind::Empty => &self.empty,
            Kind::Meeting => &self.meeting,
            Kind::Refused => &self.refused,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    fn line(&self) -> String {
        format!(
            "caldav-serve: checks {} homes {} empty {} meeting {} refused {}",
            self.check.load(Ordering::Relaxed),
            self.home.load(Ordering::Relaxed),
            self.empty.load(Ordering::Relaxed),
            self.meeting.load(Ordering::Relaxed),
            self.refused.load(Ordering::Relaxed)
        )
    }
}

/// Serves until `cfg.limit` has passed; prints its counters every 10 s to stderr.
pub async fn serve(cfg: ServeConfig) -> Result<(), String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cfg.cert)
        .and_then(|it| it.collect())
        .map_err(|e| format!("{}: {e}", cfg.cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(&cfg.key)
        .map_err(|e| format!("{}: {e}", cfg.key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| e.to_string())?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let listener = TcpListener::bind(cfg.listen)
        .await
        .map_err(|e| format!("{}: {e}", cfg.listen))?;
    let basic = format!("Basic {}", base64_encode(cfg.credentials.as_bytes()));
    let basic: Arc<str> = basic.into();
    let start = Arc::new(AtomicI64::new(i64::MIN));
    let counts = Arc::new(Counts::default());
    eprintln!("caldav-serve: listening on {}", cfg.listen);
    let deadline = tokio::time::Instant::now() + cfg.limit;
    let mut every = tokio::time::interval(Duration::from_millis(200));
    let mut ticks = 0u64;
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => break,
            _ = every.tick() => {
                let t = std::fs::read_to_string(&cfg.start_file)
                    .ok()
                    .and_then(|s| s.trim().parse::<i64>().ok())
                    .unwrap_or(i64::MIN);
                start.store(t, Ordering::Relaxed);
                ticks += 1;
                if ticks.is_multiple_of(50) {
                    eprintln!("{}", counts.line());
                }
            }
            accepted = listener.accept() => {
                let Ok((tcp, _)) = accepted else { continue };
                let _ = tcp.set_nodelay(true);
                let (acceptor, basic, start, counts) =
                    (acceptor.clone(), basic.clone(), start.clone(), counts.clone());
                tokio::spawn(async move {
                    if let Ok(Ok(tls)) = tokio::time::timeout(IDLE, acceptor.accept(tcp)).await {
                        let _ = connection(tls, &basic, &start, &counts).await;
                    }
                });
            }
        }
    }
    eprintln!("{}", counts.line());
    Ok(())
}

/// Serves one connection: requests in order until the peer closes, asks to, or idles.
async fn connection<S: AsyncRead + AsyncWrite + Unpin>(
    mut io: S,
    basic: &str,
    start: &AtomicI64,
    counts: &Counts,
) -> std::io::Result<()> {
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    loop {
        // The head.
        let head_end = loop {
            if let Some(i) = find(&buf, b"\r\n\r\n") {
                break i;
            }
            if buf.len() > MAX_HEAD {
                let a = Answer::new(431, "Request Header Fields Too Large", String::new());
                io.write_all(&a.encode()).await?;
                return Ok(());
            }
            if !read_more(&mut io, &mut buf).await? {
                return Ok(());
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        buf.drain(..head_end + 4);
        let Some(h) = parse_head(&head) else {
            let a = Answer::new(400, "Bad Request", String::new());
            io.write_all(&a.encode()).await?;
            return Ok(());
        };
        if h.chunked {
            let a = Answer::new(411, "Length Required", String::new());
            io.write_all(&a.encode()).await?;
            return Ok(());
        }
        let len = h.content_length.unwrap_or(0);
        if len > MAX_BODY {
            let a = Answer::new(413, "Content Too Large", String::new());
            io.write_all(&a.encode()).await?;
            return Ok(());
        }
        while buf.len() < len {
            if !read_more(&mut io, &mut buf).await? {
                return Ok(());
            }
        }
        buf.drain(..len);
        let t = start.load(Ordering::Relaxed);
        let (a, kind) = answer(&h, basic, (t != i64::MIN).then_some(t));
        counts.add(kind);
        io.write_all(&a.encode()).await?;
        io.flush().await?;
        if h.close {
            let _ = io.shutdown().await;
            return Ok(());
        }
    }
}

/// Appends what one read gives (within [`IDLE`]); false at end of input.
async fn read_more<S: AsyncRead + Unpin>(io: &mut S, buf: &mut Vec<u8>) -> std::io::Result<bool> {
    let mut chunk = [0u8; 8192];
    let n = tokio::time::timeout(IDLE, io.read(&mut chunk))
        .await
        .map_err(|_| std::io::ErrorKind::TimedOut)??;
    buf.extend_from_slice(&chunk[..n]);
    Ok(n > 0)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn base64_encode(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_federation::calendar::dav;
    use herald_federation::calendar::{busy_intervals, IcalLimits};

    const BASIC: &str = "Basic c3ZjOnB3"; // svc:pw

    fn head(method: &str, path: &str, depth: Option<&str>) -> Head {
        Head {
            method: method.into(),
            path: path.into(),
            depth: depth.map(Into::into),
            content_length: Some(0),
            chunked: false,
            authorization: Some(BASIC.into()),
            close: false,
        }
    }

    #[test]
    fn heads() {
        let h = parse_head(
            "REPORT /alice/work/ HTTP/1.1\r\nHost: x\r\nDepth: 1\r\ncontent-length: 12\r\nAuthorization: Basic abc",
        )
        .unwrap();
        assert_eq!(h.method, "REPORT");
        assert_eq!(h.path, "/alice/work/");
        assert_eq!(h.depth.as_deref(), Some("1"));
        assert_eq!(h.content_length, Some(12));
        assert_eq!(h.authorization.as_deref(), Some("Basic abc"));
        assert!(!h.close);
        for bad in [
            "",
            "GET /",
            "GET / SPDY/3",
            "GET / HTTP/1.1 extra",
            "GET / HTTP/1.1\r\nno colon",
            "GET / HTTP/1.1\r\nContent-Length: many",
        ] {
            assert_eq!(parse_head(bad), None, "{bad:?}");
        }
        assert!(parse_head("GET / HTTP/1.0").unwrap().close);
        assert!(
            parse_head("GET / HTTP/1.1\r\nTransfer-Encoding: chunked")
                .unwrap()
                .chunked
        );
    }

    #[test]
    fn wrong_or_missing_credentials_are_challenged() {
        let mut h = head("PROPFIND", "/", Some("0"));
        for auth in [None, Some("Basic d3Jvbmc6cHc=")] {
            h.authorization = auth.map(Into::into);
            let (a, k) = answer(&h, BASIC, Some(0));
            assert_eq!((a.status, k), (401, Kind::Refused));
            assert!(String::from_utf8(a.encode())
                .unwrap()
                .contains("WWW-Authenticate: Basic"));
        }
    }

    #[test]
    fn the_home_lists_one_calendar_as_herald_reads_it() {
        let (a, k) = answer(&head("PROPFIND", "/u7/", Some("1")), BASIC, None);
        assert_eq!((a.status, k), (207, Kind::Home));
        let listed = dav::multistatus(a.body.as_bytes()).unwrap();
        assert_eq!(dav::calendars_in(&listed, "/u7/"), vec!["/u7/work/"]);
        assert_eq!(dav::sync_tokens_in(&listed, &["/u7/work/".into()]), None);
        let (check, k) = answer(&head("PROPFIND", "/", Some("0")), BASIC, None);
        assert_eq!((check.status, k), (207, Kind::Check));
        dav::multistatus(check.body.as_bytes()).unwrap();
    }

    #[test]
    fn the_meeting_is_busy_from_its_start_for_half_an_hour() {
        let (empty, k) = answer(&head("REPORT", "/u7/work/", Some("1")), BASIC, None);
        assert_eq!(k, Kind::Empty);
        let data = dav::calendar_data_in(dav::multistatus(empty.body.as_bytes()).unwrap());
        assert!(data.is_empty());
        let t = 1_796_378_400; // 2026-12-04T10:00:00Z
        assert_eq!(utc(t), "20261204T100000Z");
        let (a, k) = answer(&head("REPORT", "/u7/work/", Some("1")), BASIC, Some(t));
        assert_eq!((a.status, k), (207, Kind::Meeting));
        let data = dav::calendar_data_in(dav::multistatus(a.body.as_bytes()).unwrap());
        assert_eq!(data.len(), 1);
        let mut busy = Vec::new();
        busy_intervals(
            &data[0],
            t - 3600,
            t + 7200,
            &IcalLimits::default(),
            &mut busy,
        )
        .unwrap();
        assert_eq!(busy.len(), 1);
        assert_eq!((busy[0].start, busy[0].end), (t, t + MEETING_SECONDS));
    }

    #[test]
    fn other_requests_are_refused() {
        let cases = [
            (head("GET", "/u7/work/", None), 405),
            (head("PROPFIND", "/a/b/c/", Some("1")), 404),
            (head("REPORT", "/u7/other/", Some("1")), 404),
            (head("DELETE", "/u7/", None), 405),
        ];
        for (h, status) in cases {
            let (a, k) = answer(&h, BASIC, Some(0));
            assert_eq!((a.status, k), (status, Kind::Refused), "{h:?}");
        }
    }

    #[test]
    fn civil_dates() {
        let cases = [
            (0, "19700101T000000Z"),
            (951_782_400, "20000229T000000Z"),
            (1_798_761_599, "20261231T235959Z"),
        ];
        for (t, want) in cases {
            assert_eq!(utc(t), want);
        }
    }
}
