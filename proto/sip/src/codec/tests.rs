use super::samples::{self, ALL};
use super::*;
use crate::typed::{SubState, Via};

/// Feeds `chunks` one after another, draining frames after each; an error is recorded and
/// decoding goes on while it is not fatal.
fn run_with(mut d: Decoder, chunks: &[&[u8]]) -> Vec<Result<Frame, DecodeError>> {
    let mut out = Vec::new();
    for c in chunks {
        d.feed(c);
        loop {
            match d.next() {
                Ok(Some(f)) => out.push(Ok(f)),
                Ok(None) => break,
                Err(e) => {
                    let fatal = e.is_fatal();
                    out.push(Err(e));
                    if fatal {
                        return out;
                    }
                }
            }
        }
    }
    out
}

fn run(chunks: &[&[u8]]) -> Vec<Result<Frame, DecodeError>> {
    run_with(Decoder::new(Limits::default()), chunks)
}

fn one(input: &str) -> Message {
    let out = run(&[input.as_bytes()]);
    assert_eq!(out.len(), 1, "{out:?}");
    match out.into_iter().next() {
        Some(Ok(Frame::Message(m))) => m,
        other => panic!("{other:?}"),
    }
}

fn error_of(input: &[u8]) -> DecodeError {
    error_with(Limits::default(), input)
}

fn error_with(limits: Limits, input: &[u8]) -> DecodeError {
    let whole = run_with(Decoder::new(limits), &[input]);
    // The same error whatever the chunking: byte by byte too.
    let bytes: Vec<&[u8]> = input.chunks(1).collect();
    assert_eq!(run_with(Decoder::new(limits), &bytes), whole);
    match whole.into_iter().find_map(Result::err) {
        Some(e) => e,
        None => panic!("no error for {:?}", String::from_utf8_lossy(input)),
    }
}

#[test]
fn decodes_the_samples_with_typed_headers() {
    let Message::Request(inv) = one(samples::INVITE) else {
        panic!("not a request")
    };
    assert_eq!(inv.method, Method::Invite);
    let uri = inv.uri.sip().unwrap();
    assert_eq!(uri.aor(), "alice@herald.example");
    assert_eq!(uri.transport().as_deref(), Some("tls"));
    let h = &inv.headers;
    let via = h.top_via().unwrap();
    assert_eq!(via.transport, "TLS");
    assert_eq!(via.sent_by(), "edge.partner.example:5061");
    assert_eq!(via.branch(), Some("z9hG4bK776asdhds"));
    assert_eq!(via.rport(), Some(None));
    assert!(via.is_rfc3261());
    let from = h.from().unwrap();
    assert_eq!(from.display.as_deref(), Some("Bob, the builder"));
    assert_eq!(from.tag(), Some("1928301774"));
    assert_eq!(h.to().unwrap().tag(), None);
    assert_eq!(h.call_id().unwrap(), "a84b4c76e66710@pc33.partner.example");
    let cseq = h.cseq().unwrap();
    assert_eq!((cseq.seq, cseq.method), (314159, Method::Invite));
    assert_eq!(h.max_forwards().unwrap(), Some(70));
    assert_eq!(h.contacts().unwrap()[0].uri.sip().unwrap().port, Some(5061));
    assert!(h.record_routes().unwrap()[0].uri.sip().unwrap().lr());
    assert_eq!(h.supported(), ["ms-dialog-route-set-update", "timer"]);
    assert!(h.content_type().unwrap().unwrap().is("application/sdp"));
    assert!(!h.contains(&HeaderName::ContentLength));
    assert_eq!(inv.body.len(), 133);

    // Compact forms.
    let msg = one(samples::MESSAGE);
    let h = msg.headers();
    assert_eq!(h.top_via().unwrap().host, "192.0.2.4");
    assert_eq!(h.to().unwrap().tag(), Some("a73kszlfl"));
    assert_eq!(h.call_id().unwrap(), "a84b4c76e66710@pc33.partner.example");
    let ct = h.content_type().unwrap().unwrap();
    assert!(ct.is("text/plain"));
    assert_eq!(ct.params.value("charset"), Some("UTF-8"));
    assert_eq!(
        std::str::from_utf8(msg.body()).unwrap(),
        "Hello, Alice! ça va? 🦀"
    );

    // Folded, comma-separated Via; folded Accept.
    let sub = one(samples::SUBSCRIBE);
    let h = sub.headers();
    let vias = h.vias().unwrap();
    assert_eq!(vias.len(), 2);
    assert_eq!(vias[1].received(), Some("198.51.100.1"));
    assert_eq!(
        h.get(&HeaderName::Accept),
        Some("application/pidf+xml, application/rlmi+xml")
    );
    assert!(h.event().unwrap().unwrap().is("presence"));
    assert_eq!(h.expires().unwrap(), Some(6300));
    assert_eq!(h.allow_events(), ["presence", "presence.winfo"]);

    let notify = one(samples::NOTIFY);
    let st = notify.headers().subscription_state().unwrap().unwrap();
    assert_eq!((&st.state, st.expires()), (&SubState::Active, Some(6300)));
    assert!(notify.body().starts_with(b"<?xml"));

    let Message::Response(ok) = one(samples::OK) else {
        panic!("not a response")
    };
    assert_eq!((ok.status, ok.reason.as_str()), (200, "OK"));
    assert_eq!(ok.headers.vias().unwrap().len(), 2);
    let Message::Response(r) = one(samples::NOT_EXIST) else {
        panic!("not a response")
    };
    assert_eq!(r.status, 481);
    assert_eq!(r.reason, "Call/Transaction Does Not Exist");
    assert_eq!(r.headers.cseq().unwrap().method, Method::Notify);
}

#[test]
fn round_trip() {
    for s in ALL {
        let m = one(s);
        let wire = m.encode();
        let again = one(std::str::from_utf8(&wire).unwrap());
        assert_eq!(again, m);
        assert_eq!(again.encode(), wire, "encoding is stable");
    }
    // Built messages round-trip too, and Content-Length always follows the body.
    let req = Request::new(
        Method::Message,
        crate::SipUri::new(Some("bob"), "partner.example"),
    )
    .header(
        "Via",
        Via::new("tls", "herald.example", Some(5061), "z9hG4bKx").to_string(),
    )
    .header("From", "<sip:alice@herald.example>;tag=1")
    .header("To", "<sip:bob@partner.example>")
    .header("Call-ID", "c1")
    .header("CSeq", "1 MESSAGE")
    .header("Content-Length", "999")
    .with_body("text/plain", "hi");
    let wire = Message::from(req.clone()).encode();
    let text = String::from_utf8(wire.clone()).unwrap();
    assert!(text.contains("Content-Length: 2\r\n\r\nhi"), "{text}");
    assert!(!text.contains("999"));
    let Message::Request(back) = one(&text) else {
        panic!()
    };
    assert_eq!(back.body, b"hi");
    assert_eq!(back.headers.top_via().unwrap().transport, "TLS");
}

#[test]
fn split_anywhere_gives_identical_frames() {
    let mut stream = Vec::new();
    for (i, s) in ALL.iter().enumerate() {
        stream.extend_from_slice(s.as_bytes());
        if i % 2 == 0 {
            stream.extend_from_slice(PING);
        }
    }
    let whole = run(&[&stream]);
    assert_eq!(whole.len(), ALL.len() + 3, "{whole:?}");
    assert!(whole.iter().all(Result::is_ok));
    for cut in 0..=stream.len() {
        assert_eq!(
            run(&[&stream[..cut], &stream[cut..]]),
            whole,
            "cut at {cut}"
        );
    }
    let bytes: Vec<&[u8]> = stream.chunks(1).collect();
    assert_eq!(run(&bytes), whole);
    for n in [2, 3, 7, 64, 1000] {
        let chunks: Vec<&[u8]> = stream.chunks(n).collect();
        assert_eq!(run(&chunks), whole, "chunks of {n}");
    }
    // Outbound: each CRLF is a pong, still chunking-independent.
    let out = |chunks: &[&[u8]]| run_with(Decoder::outbound(Limits::default()), chunks);
    let whole = out(&[&stream]);
    assert_eq!(whole.len(), ALL.len() + 6);
    for cut in (0..=stream.len()).step_by(7) {
        assert_eq!(
            out(&[&stream[..cut], &stream[cut..]]),
            whole,
            "cut at {cut}"
        );
    }
}

#[test]
fn keepalives() {
    // Inbound: double CRLF is a ping, a lone CRLF before a message is ignored.
    let mut input = b"\r\n\r\n\r\n\r\n\r\n".to_vec();
    input.extend_from_slice(samples::OK.as_bytes());
    let frames = run(&[&input]);
    assert_eq!(frames.len(), 3);
    assert_eq!(frames[0], Ok(Frame::Ping));
    assert_eq!(frames[1], Ok(Frame::Ping));
    assert!(matches!(frames[2], Ok(Frame::Message(_))));
    // A ping cut after its first CRLF waits for the rest.
    let mut d = Decoder::new(Limits::default());
    d.feed(b"\r\n");
    assert_eq!(d.next(), Ok(None));
    d.feed(b"\r\n");
    assert_eq!(d.next(), Ok(Some(Frame::Ping)));
    assert_eq!(d.buffered(), 0);
    // Outbound: a CRLF is a pong at once.
    let mut d = Decoder::outbound(Limits::default());
    d.feed(b"\r\n");
    assert_eq!(d.next(), Ok(Some(Frame::Pong)));
    assert_eq!(d.next(), Ok(None));
}

fn with_header_removed(msg: &str, name: &str) -> String {
    msg.split("\r\n")
        .filter(|l| !l.starts_with(&format!("{name}:")))
        .collect::<Vec<_>>()
        .join("\r\n")
}

#[test]
fn malformed_messages_map_to_their_status() {
    use DecodeError as E;
    let bad_start: &[(&str, &str)] = &[
        ("GET / HTTP/1.1\r\n\r\n", "bad SIP version"),
        (
            "INVITE sip:a@b\r\n\r\n",
            "expected method, Request-URI and version",
        ),
        (
            "INVITE  sip:a@b SIP/2.0\r\n\r\n",
            "expected method, Request-URI and version",
        ),
        ("INV@TE sip:a@b SIP/2.0\r\n\r\n", "bad method"),
        (
            "INVITE sip:a@b c SIP/2.0\r\n\r\n",
            "expected method, Request-URI and version",
        ),
        ("INVITE sip:a@[::1 SIP/2.0\r\n\r\n", "bad Request-URI"),
        ("SIP/2.0 2000 OK\r\n\r\n", "bad status code"),
        ("SIP/2.0 099 Odd\r\n\r\n", "status code out of range"),
        ("SIP/2.0 200 O\x01K\r\n\r\n", "control character"),
        ("\n\r\n", "empty line"),
    ];
    for (input, reason) in bad_start {
        let e = error_of(input.as_bytes());
        assert_eq!(e, E::BadStartLine { reason }, "{input:?}");
        assert_eq!((e.status(), e.is_fatal()), (400, true));
    }
    let e = error_of(b"OPTIONS sip:a@b SIP/3.0\r\n");
    assert_eq!(
        e,
        E::UnsupportedVersion {
            version: "SIP/3.0".into()
        }
    );
    assert_eq!(
        (e.status(), e.reason().as_str()),
        (505, "Version Not Supported")
    );

    // Missing mandatory headers name the header (in the RFC's order of checking).
    for (name, want) in [
        ("Via", HeaderName::Via),
        ("From", HeaderName::From),
        ("To", HeaderName::To),
        ("Call-ID", HeaderName::CallId),
        ("CSeq", HeaderName::CSeq),
    ] {
        let input = with_header_removed(samples::NOT_EXIST, name);
        let e = error_of(input.as_bytes());
        assert_eq!(e, E::MissingHeader { name: want.clone() });
        assert_eq!(e.status(), 400);
        assert_eq!(e.reason(), format!("Missing {want} Header Field"));
        assert!(!e.is_fatal());
    }
    let cases: &[(&str, &str, DecodeError, u16)] = &[
        (
            "CSeq: 1 NOTIFY",
            "CSeq: 1 NOTIFY\r\nCSeq: 3 NOTIFY",
            E::DuplicateHeader {
                name: HeaderName::CSeq,
            },
            400,
        ),
        (
            "CSeq: 1 NOTIFY",
            "CSeq: 1 BYE",
            E::BadHeader {
                name: HeaderName::CSeq,
                reason: "method differs from the request method",
            },
            400,
        ),
        (
            "CSeq: 1 NOTIFY",
            "CSeq: x NOTIFY",
            E::BadHeader {
                name: HeaderName::CSeq,
                reason: "bad number",
            },
            400,
        ),
        (
            "Via: SIP/2.0/TLS herald-0.herald.example:5061;branch=z9hG4bK.n1",
            "Via: SIP/1.0/TLS h",
            E::BadHeader {
                name: HeaderName::Via,
                reason: "not SIP/2.0",
            },
            400,
        ),
        (
            "From: <sip:alice@herald.example>;tag=h-77",
            "From: <sip:alice@herald.example",
            E::BadHeader {
                name: HeaderName::From,
                reason: "unclosed '<'",
            },
            400,
        ),
        (
            "Max-Forwards: 70",
            "Max-Forwards: lots",
            E::BadHeader {
                name: HeaderName::MaxForwards,
                reason: "not a number",
            },
            400,
        ),
        (
            "Event: presence",
            "Event presence",
            E::BadHeader {
                name: HeaderName::Other(String::new()),
                reason: "no colon",
            },
            400,
        ),
        (
            "Event: presence",
            "Ev ent: presence",
            E::BadHeader {
                name: HeaderName::Other(String::new()),
                reason: "bad header name",
            },
            400,
        ),
        (
            "NOTIFY sip:bob@198.51.100.20:5061;transport=tls SIP/2.0",
            "NOTIFY pres:bob@partner.example SIP/2.0",
            E::UnsupportedUriScheme {
                scheme: "pres".into(),
            },
            416,
        ),
    ];
    for (from, to, want, status) in cases {
        let input = samples::NOTIFY.replacen(from, to, 1);
        assert_ne!(input, samples::NOTIFY);
        let e = error_of(input.as_bytes());
        assert_eq!(&e, want, "{to}");
        assert_eq!(e.status(), *status);
        assert!(!e.is_fatal());
    }
    let e = error_of(
        b"NOTIFY sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\nX: \xff\r\n\r\n",
    );
    assert_eq!(
        e,
        E::MissingContentLength,
        "a bad line is skipped; framing still needs a length"
    );
    let mut bad_utf8 = with_header_removed(samples::OK, "Server").into_bytes();
    bad_utf8.splice(20..20, b"Server: caf\xe9\r\n".iter().copied());
    let e = error_of(&bad_utf8);
    assert!(
        matches!(
            e,
            E::BadHeader {
                reason: "not UTF-8",
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn content_length_is_required_and_checked() {
    use DecodeError as E;
    let no_len = with_header_removed(samples::OK, "Content-Length");
    let e = error_of(no_len.as_bytes());
    assert_eq!(
        (e.clone(), e.status(), e.is_fatal()),
        (E::MissingContentLength, 400, true)
    );
    assert_eq!(e.reason(), "Missing Content-Length Header Field");
    for bad in [
        "Content-Length: -1",
        "Content-Length: 1e3",
        "Content-Length: 99999999999999999999",
        "l: 0\r\nContent-Length: 1",
    ] {
        let input = samples::OK.replace("Content-Length: 0", bad);
        assert_eq!(error_of(input.as_bytes()), E::BadContentLength, "{bad}");
    }
    // Two equal lengths are fine.
    let twice = samples::OK.replace("Content-Length: 0", "Content-Length: 0\r\nl: 0");
    one(&twice);
    // A body longer than declared: the rest is read as the next start line.
    let longer = samples::MESSAGE.replace("l: 26", "l: 20") + samples::OK;
    let out = run(&[longer.as_bytes()]);
    assert!(matches!(out[0], Ok(Frame::Message(_))));
    assert!(matches!(out[1], Err(E::BadStartLine { .. })), "{out:?}");
    // A body shorter than declared: the decoder waits for the rest.
    let shorter = samples::MESSAGE.replace("l: 26", "l: 40");
    let mut d = Decoder::new(Limits::default());
    d.feed(shorter.as_bytes());
    assert_eq!(d.next(), Ok(None));
}

#[test]
fn limits_each_have_their_error() {
    use DecodeError as E;
    let small = Limits {
        max_message_bytes: 1024,
        max_body_bytes: 300,
        max_headers: 12,
        max_line_bytes: 200,
    };
    // Oversized header section, noticed before its end.
    let mut big = b"NOTIFY sip:a@b SIP/2.0\r\n".to_vec();
    for i in 0..10 {
        big.extend_from_slice(format!("X-Pad-{i}: {}\r\n", "p".repeat(150)).as_bytes());
    }
    let e = error_with(small, &big);
    assert_eq!(
        (e.clone(), e.status()),
        (E::MessageTooLarge { limit: 1024 }, 513)
    );
    assert_eq!(e.reason(), "Message Too Large");
    // Header section plus body.
    let body = samples::NOTIFY.replace("Content-Length: 395", "Content-Length: 299");
    let tight = Limits {
        max_message_bytes: 700,
        ..small
    };
    let e = error_with(tight, body.as_bytes());
    assert_eq!(e, E::MessageTooLarge { limit: 700 });
    // Body over its own limit (the body is never read).
    let e = error_with(small, samples::NOTIFY.as_bytes());
    assert_eq!(
        e,
        E::BodyTooLarge {
            length: 395,
            limit: 300
        }
    );
    assert_eq!(
        (e.status(), e.reason().as_str()),
        (413, "Request Entity Too Large")
    );
    // One long line, noticed without its end.
    let long = format!("NOTIFY sip:a@b SIP/2.0\r\nSubject: {}", "s".repeat(300));
    let e = error_with(small, long.as_bytes());
    assert_eq!(
        (e.clone(), e.status()),
        (E::LineTooLong { limit: 200 }, 400)
    );
    // A flood of short headers.
    let flood = format!("NOTIFY sip:a@b SIP/2.0\r\n{}", "X: 1\r\n".repeat(50));
    let e = error_with(small, flood.as_bytes());
    assert_eq!(
        (e.clone(), e.status()),
        (E::TooManyHeaders { limit: 12 }, 400)
    );
    assert_eq!(e.reason(), "Too Many Header Fields");
    // Exactly at the limits is fine.
    let exact = Limits {
        max_message_bytes: samples::OK.len(),
        max_body_bytes: 0,
        max_headers: 9,
        max_line_bytes: samples::OK.lines().map(str::len).max().unwrap(),
    };
    let out = run_with(Decoder::new(exact), &[samples::OK.as_bytes()]);
    assert!(matches!(out[..], [Ok(Frame::Message(_))]), "{out:?}");
}

#[test]
fn a_huge_feed_fails_without_waiting_for_its_end() {
    let mut d = Decoder::new(Limits::default());
    d.feed(b"MESSAGE sip:a@b SIP/2.0\r\n");
    for _ in 0..100 {
        d.feed(&[b'x'; 1000]);
    }
    assert_eq!(d.next(), Err(DecodeError::LineTooLong { limit: 8192 }));
}

#[test]
fn non_fatal_errors_reject_one_message_and_keep_the_stream() {
    let bad = with_header_removed(samples::SUBSCRIBE, "Call-ID");
    let mut input = bad.into_bytes();
    input.extend_from_slice(samples::MESSAGE.as_bytes());
    let mut d = Decoder::new(Limits::default());
    d.feed(&input);
    let e = d.next().unwrap_err();
    assert_eq!(
        e,
        DecodeError::MissingHeader {
            name: HeaderName::CallId
        }
    );
    let Some(Message::Request(rejected)) = d.take_rejected() else {
        panic!("the rejected request is kept")
    };
    assert_eq!(d.take_rejected(), None);
    let answer = Response::for_request(&rejected, e.status(), Some(&e.reason()));
    let wire = String::from_utf8(Message::from(answer).encode()).unwrap();
    assert!(
        wire.starts_with(
            "SIP/2.0 400 Missing Call-ID Header Field\r\nVia: SIP/2.0/TLS 198.51.100.20"
        ),
        "{wire}"
    );
    assert!(wire.contains("\r\nCSeq: 1 SUBSCRIBE\r\n"));
    assert!(matches!(d.next(), Ok(Some(Frame::Message(_)))));
    assert_eq!(d.next(), Ok(None));
}

#[test]
fn a_fatal_error_sticks() {
    let mut d = Decoder::new(Limits::default());
    d.feed(b"HELLO\r\n");
    let e = d.next().unwrap_err();
    assert!(e.is_fatal());
    d.feed(samples::OK.as_bytes());
    assert_eq!(d.next(), Err(e));
    assert_eq!(d.buffered(), 0);
}

#[test]
fn size_pins() {
    use std::mem::size_of;
    assert!(size_of::<Message>() <= 176, "{}", size_of::<Message>());
    assert!(size_of::<Frame>() <= 176, "{}", size_of::<Frame>());
    assert!(
        size_of::<DecodeError>() <= 40,
        "{}",
        size_of::<DecodeError>()
    );
    assert!(size_of::<Result<Option<Frame>, DecodeError>>() <= 184);
    assert!(size_of::<Header>() <= 48, "{}", size_of::<Header>());
    assert!(
        size_of::<crate::SipUri>() <= 112,
        "{}",
        size_of::<crate::SipUri>()
    );
    // One per connection, not hot; pinned so that growth is noticed.
    assert!(size_of::<Decoder>() <= 480, "{}", size_of::<Decoder>());
}

/// A small deterministic PRNG (xorshift64*) for the mutation test.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const TOKENS: &[&[u8]] = &[
    b"\r\n",
    b"\r\n\r\n",
    b"\r",
    b"\n",
    b" ",
    b"\t",
    b":",
    b";",
    b",",
    b"<",
    b">",
    b"\"",
    b"@",
    b"Content-Length: 5\r\n",
    b"l: 99999999999\r\n",
    b"SIP/2.0 200 OK\r\n",
    b"\xF0\x9F\xA6\x80",
    b"\xF0\x9F",
    b"\xFF",
];

fn mutate(rng: &mut Rng, base: &[u8]) -> Vec<u8> {
    let mut v = base.to_vec();
    for _ in 0..=rng.below(4) {
        let at = rng.below(v.len() + 1);
        match rng.below(5) {
            0 if at < v.len() => v[at] ^= 1 << rng.below(8),
            1 => v.insert(at, rng.next() as u8),
            2 => {
                let end = (at + rng.below(16)).min(v.len());
                v.drain(at..end);
            }
            3 => {
                let t = TOKENS[rng.below(TOKENS.len())];
                v.splice(at..at, t.iter().copied());
            }
            _ => {
                let end = (at + rng.below(64)).min(v.len());
                let dup: Vec<u8> = v[at..end].repeat(1 + rng.below(40));
                v.splice(at..at, dup);
            }
        }
    }
    v
}

/// 5 000 seeded mutations of valid streams: no panic, the same frames and errors for two
/// random chunkings, and typed accessors and the encoder never panic on what decodes.
#[test]
fn mutated_streams_never_panic_and_decode_the_same_in_any_chunks() {
    let limits = Limits {
        max_message_bytes: 2048,
        max_body_bytes: 1024,
        max_headers: 20,
        max_line_bytes: 300,
    };
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for _ in 0..5000 {
        let a = ALL[rng.below(ALL.len())].as_bytes();
        let b = ALL[rng.below(ALL.len())].as_bytes();
        let input = mutate(&mut rng, &[a, b].concat());
        let whole = run_with(Decoder::new(limits), &[&input]);
        let mut chunks = Vec::new();
        let mut rest = &input[..];
        while !rest.is_empty() {
            let n = (1 + rng.below(40)).min(rest.len());
            chunks.push(&rest[..n]);
            rest = &rest[n..];
        }
        assert_eq!(run_with(Decoder::new(limits), &chunks), whole);
        for f in whole.iter().flatten() {
            if let Frame::Message(m) = f {
                let h = m.headers();
                let _ = (
                    h.vias(),
                    h.contacts(),
                    h.routes(),
                    h.record_routes(),
                    h.event(),
                );
                let _ = (h.subscription_state(), h.content_type(), h.expires());
                let wire = m.encode();
                assert_eq!(
                    run(&[&wire]),
                    vec![Ok(f.clone())],
                    "re-encoding decodes the same"
                );
            }
        }
    }
}
