use super::*;

const HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
     xmlns:stream='http://etherx.jabber.org/streams' to='example.com' version='1.0' xml:lang='en'>";

/// Feeds `chunks` one after another, draining events after each; the error ends the list.
fn run(limits: Limits, chunks: &[&[u8]]) -> (Vec<StreamEvent>, Option<StreamError>) {
    let mut d = Decoder::new(limits);
    let mut evs = Vec::new();
    for c in chunks {
        d.feed(c);
        loop {
            match d.next() {
                Ok(Some(ev)) => evs.push(ev),
                Ok(None) => break,
                Err(e) => return (evs, Some(e)),
            }
        }
    }
    (evs, None)
}

fn whole(input: &[u8]) -> (Vec<StreamEvent>, Option<StreamError>) {
    run(Limits::default(), &[input])
}

fn condition(input: &[u8]) -> Option<StreamCondition> {
    whole(input).1.map(|e| e.condition)
}

fn stream(body: &str) -> Vec<u8> {
    format!("{HEADER}{body}").into_bytes()
}

#[test]
fn decodes_header_stanzas_whitespace_and_close() {
    let input = stream(
        "<message to='romeo@example.net' type='chat'><body>hi &amp; bye</body></message> \n \
         <presence/></stream:stream>",
    );
    let (evs, err) = whole(&input);
    assert_eq!(err, None);
    assert_eq!(evs.len(), 5, "{evs:?}");
    let StreamEvent::Open(h) = &evs[0] else {
        panic!("{:?}", evs[0]);
    };
    assert_eq!(h.to.as_deref(), Some("example.com"));
    assert_eq!(h.version.as_deref(), Some("1.0"));
    assert_eq!(h.lang.as_deref(), Some("en"));
    assert_eq!(h.from, None);
    assert_eq!(h.default_ns, ns::CLIENT);
    let want = Element::new("message", ns::CLIENT)
        .attr("to", "romeo@example.net")
        .attr("type", "chat")
        .child(Element::new("body", ns::CLIENT).text_node("hi & bye"));
    assert_eq!(evs[1], StreamEvent::Stanza(want));
    assert_eq!(evs[2], StreamEvent::Whitespace);
    assert_eq!(
        evs[3],
        StreamEvent::Stanza(Element::new("presence", ns::CLIENT))
    );
    assert_eq!(evs[4], StreamEvent::Close);
}

#[test]
fn prefixes_and_nested_namespaces_resolve() {
    let input = stream(
        "<stream:features/><auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>=</auth>\
         <iq type='get' id='1'><q:query xmlns:q='jabber:iq:roster' xml:lang='de'><q:item/><x/></q:query></iq>",
    );
    let (evs, err) = whole(&input);
    assert_eq!(err, None);
    assert_eq!(
        evs[1],
        StreamEvent::Stanza(Element::new("features", ns::STREAM))
    );
    assert_eq!(
        evs[2],
        StreamEvent::Stanza(
            Element::new("auth", ns::SASL)
                .attr("mechanism", "PLAIN")
                .text_node("=")
        )
    );
    let query = Element::new("query", ns::ROSTER)
        .attr("xml:lang", "de")
        .child(Element::new("item", ns::ROSTER))
        .child(Element::new("x", ns::CLIENT));
    let iq = Element::new("iq", ns::CLIENT)
        .attr("type", "get")
        .attr("id", "1")
        .child(query);
    assert_eq!(evs[3], StreamEvent::Stanza(iq));
}

#[test]
fn round_trip_encode_decode() {
    let stanzas = vec![
        Element::new("message", ns::CLIENT)
            .attr("to", "a@b")
            .attr("id", "x'\"<>&")
            .child(Element::new("body", ns::CLIENT).text_node("tab\t cr\r nl\n <&> 🦀 ü"))
            .child(Element::new(
                "active",
                "http://jabber.org/protocol/chatstates",
            )),
        Element::new("iq", ns::CLIENT)
            .attr("type", "set")
            .attr("id", "b1")
            .child(
                Element::new("bind", ns::BIND)
                    .child(Element::new("resource", ns::BIND).text_node("phone")),
            ),
        Element::new("features", ns::STREAM)
            .child(Element::new("starttls", ns::TLS).child(Element::new("required", ns::TLS))),
        StreamError::with_text(StreamCondition::SeeOtherHost("[::1]:5222".into()), "moved")
            .to_element(),
        Element::new("presence", ns::CLIENT)
            .attr("xml:lang", "fr")
            .child(Element::new("x", "urn:a").child(Element::new("y", "urn:b"))),
    ];
    let mut input = stream("");
    for s in &stanzas {
        input.extend(encode(s, ns::CLIENT));
    }
    let (evs, err) = whole(&input);
    assert_eq!(err, None);
    let got: Vec<Element> = evs
        .into_iter()
        .filter_map(|e| match e {
            StreamEvent::Stanza(s) => Some(s),
            _ => None,
        })
        .collect();
    assert_eq!(got, stanzas);
}

#[test]
fn stream_header_encoding_parses_back() {
    let h = StreamHeader {
        to: Some("juliet@example.com".into()),
        from: Some("example.com".into()),
        id: Some("s'1".into()),
        version: Some("1.0".into()),
        lang: Some("en".into()),
        default_ns: ns::CLIENT.into(),
    };
    let bytes = stream_header(&h);
    assert!(bytes.starts_with(b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "));
    let (evs, err) = whole(&bytes);
    assert_eq!(err, None);
    assert_eq!(evs, vec![StreamEvent::Open(h)]);
}

/// Every split point of a stream with a 4-byte UTF-8 character, an attribute and entity
/// references gives the same events, and so does byte-by-byte input.
#[test]
fn split_anywhere_gives_identical_events() {
    let input = stream(
        "<message to='juliet@example.com' id='a&amp;b'><body>cr🦀b &lt;x&gt;</body></message>\
         \n\t <iq type='get' id='p'><ping xmlns='urn:xmpp:ping'/></iq>  </stream:stream>",
    );
    let (want, err) = whole(&input);
    assert_eq!(err, None);
    assert_eq!(want.len(), 6, "{want:?}");
    for i in 0..=input.len() {
        for j in i..=input.len().min(i + 9) {
            let (got, err) = run(Limits::default(), &[&input[..i], &input[i..j], &input[j..]]);
            assert_eq!(err, None, "split at {i}/{j}");
            assert_eq!(got, want, "split at {i}/{j}");
        }
    }
    let bytes: Vec<&[u8]> = input.chunks(1).collect();
    assert_eq!(run(Limits::default(), &bytes), (want, None));
}

/// An element is handed out as soon as its last byte arrives (a client waits for our answer
/// to `<starttls/>` before sending anything else).
#[test]
fn no_lookahead_needed() {
    for tail in [
        "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>",
        "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGEAYg==</auth>",
        " ",
    ] {
        let (evs, err) = whole(&stream(tail));
        assert_eq!(err, None);
        assert_eq!(evs.len(), 2, "{tail}: {evs:?}");
    }
    let (evs, _) = whole(HEADER.as_bytes());
    assert_eq!(evs.len(), 1);
}

#[test]
fn oversized_stanza_fails_early() {
    let limits = Limits {
        max_stanza_bytes: 1000,
        max_depth: 32,
    };
    let mut d = Decoder::new(limits);
    d.feed(&stream("<message><body>"));
    assert_eq!(d.next().map(|e| e.is_some()), Ok(true));
    assert_eq!(d.next(), Ok(None));
    let filler = vec![b'a'; 300];
    let mut fed = 0;
    let err = loop {
        d.feed(&filler);
        fed += filler.len();
        assert!(fed < 2000, "the limit was not enforced");
        match d.next() {
            Ok(None) => assert!(d.buffered() <= 1000),
            Ok(Some(ev)) => panic!("unexpected {ev:?}"),
            Err(e) => break e,
        }
    };
    assert_eq!(err.condition, StreamCondition::PolicyViolation);
    assert!(err.text.as_deref().unwrap_or("").contains("1000"));
    // Failed for good.
    d.feed(b"</body></message>");
    assert_eq!(d.next(), Err(err));
}

#[test]
fn a_huge_single_feed_is_refused_without_parsing_it_all() {
    let limits = Limits {
        max_stanza_bytes: 4096,
        max_depth: 32,
    };
    let mut input = stream("<message><body>");
    input.extend(std::iter::repeat_n(b'x', 10 << 20));
    let mut d = Decoder::new(limits);
    d.feed(&input);
    assert!(d.next().unwrap().is_some());
    let err = d.next().unwrap_err();
    assert_eq!(err.condition, StreamCondition::PolicyViolation);
    assert_eq!(d.pending_input(), 0, "input is dropped once failed");
}

#[test]
fn deep_nesting_is_a_policy_violation() {
    let limits = Limits {
        max_stanza_bytes: 1 << 20,
        max_depth: 8,
    };
    let ok = stream(&format!("{}{}", "<a>".repeat(8), "</a>".repeat(8)));
    assert_eq!(run(limits, &[&ok]).1, None);
    let deep = stream(&"<a>".repeat(9));
    let err = run(limits, &[&deep]).1.unwrap();
    assert_eq!(err.condition, StreamCondition::PolicyViolation);
}

#[test]
fn error_condition_table() {
    use StreamCondition as C;
    let hdr = |ns: &str| {
        format!("<stream:stream xmlns='{ns}' xmlns:stream='http://etherx.jabber.org/streams'>")
    };
    let table: Vec<(Vec<u8>, C)> = vec![
        (
            b"<?xml version='1.0'?><!DOCTYPE lolz [<!ENTITY lol 'lol'><!ENTITY lol2 '&lol;&lol;'>]><stream:stream/>".to_vec(),
            C::RestrictedXml,
        ),
        (stream("<!DOCTYPE x>"), C::RestrictedXml),
        (stream("<message><!-- hi --></message>"), C::RestrictedXml),
        (stream("<?php echo 1; ?>"), C::RestrictedXml),
        (stream("<message>&lol;</message>"), C::RestrictedXml),
        (
            b"<?xml version='1.0' encoding='ISO-8859-1'?><stream:stream/>".to_vec(),
            C::UnsupportedEncoding,
        ),
        (stream("<message></presence>"), C::NotWellFormed),
        (stream("<message a='1' a='2'/>"), C::NotWellFormed),
        (stream("<x:message/>"), C::NotWellFormed),
        (stream("<message b:a='1'/>"), C::NotWellFormed),
        (stream("hello"), C::BadFormat),
        (
            b"<message xmlns='jabber:client'/>".to_vec(),
            C::InvalidNamespace,
        ),
        (
            b"<stream:stream xmlns:stream='urn:wrong' xmlns='jabber:client'>".to_vec(),
            C::InvalidNamespace,
        ),
        (hdr("jabber:component:accept").into_bytes(), C::InvalidNamespace),
        (
            b"<stream:stream xmlns:stream='http://etherx.jabber.org/streams'>".to_vec(),
            C::InvalidNamespace,
        ),
        (
            b"<stream:features xmlns:stream='http://etherx.jabber.org/streams' xmlns='jabber:client'>"
                .to_vec(),
            C::BadFormat,
        ),
    ];
    for (input, want) in table {
        assert_eq!(
            condition(&input),
            Some(want.clone()),
            "{}",
            String::from_utf8_lossy(&input)
        );
    }
    assert_eq!(condition(hdr(ns::SERVER).as_bytes()), None);
}

#[test]
fn invalid_utf8_is_unsupported_encoding() {
    let mut input = stream("<message><body>");
    input.extend_from_slice(&[0xC3, 0x28]);
    input.extend_from_slice(b"</body></message>");
    assert_eq!(
        condition(&input),
        Some(StreamCondition::UnsupportedEncoding)
    );
    let mut input = stream("<message to='");
    input.extend_from_slice(&[0xF0, 0x9F, 0x80]);
    input.extend_from_slice(b"'/>");
    assert_eq!(
        condition(&input),
        Some(StreamCondition::UnsupportedEncoding)
    );
}

#[test]
fn reset_starts_a_new_stream() {
    let mut d = Decoder::new(Limits::default());
    d.feed(&stream(
        "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>",
    ));
    assert!(matches!(d.next(), Ok(Some(StreamEvent::Open(_)))));
    let next = d.next();
    assert!(matches!(next, Ok(Some(StreamEvent::Stanza(_)))), "{next:?}");
    d.reset();
    d.feed(HEADER.as_bytes());
    assert!(matches!(d.next(), Ok(Some(StreamEvent::Open(_)))));
    assert_eq!(d.next(), Ok(None));
}

#[test]
fn after_close_input_is_ignored() {
    let mut input = stream("</stream:stream>");
    input.extend_from_slice(b"<garbage");
    let (evs, err) = whole(&input);
    assert_eq!(err, None);
    assert_eq!(evs.last(), Some(&StreamEvent::Close));
}

#[test]
fn size_pins() {
    assert!(std::mem::size_of::<StreamEvent>() <= 152);
    assert!(std::mem::size_of::<Element>() <= 96);
    assert!(std::mem::size_of::<StreamError>() <= 64);
    assert!(std::mem::size_of::<Result<Option<StreamEvent>, StreamError>>() <= 160);
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
    b"<",
    b">",
    b"/>",
    b"</",
    b"<a>",
    b"</a>",
    b"&amp;",
    b"&lol;",
    b"&#x0;",
    b"<!DOCTYPE x>",
    b"<!--",
    b"<?pi?>",
    b"<![CDATA[x]]>",
    b" xmlns='urn:x'",
    b" xmlns:p='urn:p'",
    b"<p:x/>",
    b" a='1'",
    b"'",
    b"\xF0\x9F\xA6\x80",
    b"\xF0\x9F",
    b"\xFF",
    b"</stream:stream>",
    b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>",
];

fn mutate(rng: &mut Rng, base: &[u8]) -> Vec<u8> {
    let mut v = base.to_vec();
    for _ in 0..=rng.below(4) {
        let at = rng.below(v.len() + 1);
        match rng.below(6) {
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
            4 => {
                let end = (at + rng.below(64)).min(v.len());
                let dup: Vec<u8> = v[at..end].repeat(1 + rng.below(40));
                v.splice(at..at, dup);
            }
            _ => {
                let t: &[u8] = if rng.below(2) == 0 { b"<a>" } else { b"</a>" };
                let n = rng.below(40);
                v.splice(at..at, t.repeat(n));
            }
        }
    }
    v
}

/// 10 000 seeded mutations of valid streams, fed in random splits: no panic, and the
/// decoder's memory stays within its limits at every step.
#[test]
fn mutated_streams_never_panic_and_stay_bounded() {
    let limits = Limits {
        max_stanza_bytes: 2048,
        max_depth: 8,
    };
    let bases = [
        stream(
            "<message to='a@b' id='1'><body>hi 🦀 &amp; bye</body></message> \
             <presence><show>dnd</show></presence><iq type='get' id='2'>\
             <query xmlns='jabber:iq:roster'/></iq></stream:stream>",
        ),
        stream(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGEAYg==</auth>\
             <a:x xmlns:a='urn:a' xml:lang='en'><a:y>t</a:y></a:x>",
        ),
    ];
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut errors = 0;
    for _ in 0..10_000 {
        let base = &bases[rng.below(bases.len())];
        let input = mutate(&mut rng, base);
        let mut d = Decoder::new(limits);
        let mut rest = &input[..];
        let mut failed = None;
        while !rest.is_empty() && failed.is_none() {
            let n = (1 + rng.below(300)).min(rest.len());
            d.feed(&rest[..n]);
            rest = &rest[n..];
            loop {
                match d.next() {
                    Ok(Some(StreamEvent::Stanza(e))) => {
                        assert!(e.to_bytes(ns::CLIENT).len() <= 8 * limits.max_stanza_bytes)
                    }
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
                assert!(d.buffered() <= limits.max_stanza_bytes);
                assert!(d.stack.len() <= limits.max_depth);
            }
            assert!(d.buffered() <= limits.max_stanza_bytes);
            assert!(d.stack.len() <= limits.max_depth);
            assert!(d.input.len() <= input.len());
        }
        if let Some(e) = failed {
            errors += 1;
            assert_eq!(d.next(), Err(e), "a failed decoder stays failed");
        }
    }
    // The mutations must exercise the error paths, not only the happy one.
    assert!(errors > 1000, "{errors}");
}

#[test]
fn long_text_and_jid_sized_attributes_survive_the_small_token_limit() {
    // Text longer than the per-token limit arrives in several runs and is joined again; an
    // attribute as long as the longest JID still fits.
    let body = "x".repeat(3 * MAX_TOKEN + 17);
    let local = "l".repeat(1023);
    let domain = format!("{}.test", "d".repeat(60));
    let resource = "r".repeat(1023);
    let to = format!("{local}@{domain}/{resource}");
    let input = stream(&format!("<message to='{to}'><body>{body}</body></message>"));
    let (events, err) = whole(&input);
    assert!(err.is_none(), "{err:?}");
    let msg = events
        .iter()
        .find_map(|e| match e {
            StreamEvent::Stanza(el) => Some(el.clone()),
            _ => None,
        })
        .expect("a message");
    assert_eq!(msg.get_attr("to"), Some(to.as_str()));
    assert_eq!(msg.get_child("body", "jabber:client").unwrap().text(), body);
}

#[test]
fn idle_streams_hold_no_parser_and_resume_where_they_were() {
    let drain = |d: &mut Decoder| {
        let mut evs = Vec::new();
        while let Some(ev) = d.next().expect("no error") {
            evs.push(ev);
        }
        evs
    };
    for root in ["stream:stream", "s:stream"] {
        let header = HEADER.replace("stream:stream", root).replace(
            "xmlns:stream=",
            if root == "s:stream" {
                "xmlns:s="
            } else {
                "xmlns:stream="
            },
        );
        let mut d = Decoder::new(Limits::default());
        d.feed(header.as_bytes());
        assert!(matches!(drain(&mut d).as_slice(), [StreamEvent::Open(_)]));
        assert!(d.parser.is_none(), "{root}: dropped after the header");
        // A partial stanza keeps the parser; its end lets it go again.
        d.feed(b"<message to='a@b'><bo");
        assert!(drain(&mut d).is_empty());
        assert!(d.parser.is_some(), "{root}: kept while a stanza is open");
        d.feed(b"dy>x</body></message>");
        assert!(
            matches!(drain(&mut d).as_slice(), [StreamEvent::Stanza(m)] if m.name() == "message")
        );
        assert!(d.parser.is_none(), "{root}: dropped between stanzas");
        // A partial closing tag of the root is a partial token: the parser stays.
        d.feed(format!(" </{root}").as_bytes());
        assert!(matches!(
            drain(&mut d).as_slice(),
            [StreamEvent::Whitespace]
        ));
        assert!(d.parser.is_some(), "{root}: kept with a partial token");
        d.feed(b">");
        assert!(matches!(drain(&mut d).as_slice(), [StreamEvent::Close]));
    }
    // The resumed parser still checks the root's end tag.
    let mut d = Decoder::new(Limits::default());
    d.feed(HEADER.as_bytes());
    drain(&mut d);
    assert!(d.parser.is_none());
    d.feed(b"</stream:other>");
    assert!(d.next().is_err());
}

/// Found by the `xmpp_decode` fuzz target: `<xml:x/>` (the `xml` prefix is bound without a
/// declaration) gave an element in the XML namespace, which encodes as
/// `<x xmlns='http://www.w3.org/XML/1998/namespace'/>`, a reserved binding every XML parser
/// refuses. Routed inside a message, it would have closed the recipient's stream. Such
/// elements are refused where they are read.
#[test]
fn elements_in_the_xml_namespace_are_refused() {
    for body in [
        "<xml:x/>",
        "<message to='a@example.com'><xml:x/></message>",
        "<message><body>hi</body><xml:lang_x a='1'>t</xml:lang_x></message>",
    ] {
        assert_eq!(
            condition(&stream(body)),
            Some(StreamCondition::NotWellFormed),
            "{body}"
        );
    }
    // The `xml:` prefix on attributes stays fine.
    let (evs, err) = whole(&stream("<message xml:lang='de'/>"));
    assert_eq!(err, None);
    assert_eq!(evs.len(), 2);
}

/// Found by boofuzz (tests/xmpp/test_outside_fuzz.py): declarations that other parsers refuse
/// were passed on to the recipient, whose client then dropped its connection.
#[test]
fn namespace_names_other_parsers_refuse_are_refused() {
    for body in [
        "<message><x xmlns='http://www.w3.org/2000/xmlns/'/></message>",
        "<message><p:x xmlns:p='http://www.w3.org/2000/xmlns/'/></message>",
        "<message><x xmlns:p='http://www.w3.org/2000/xmlns/'/></message>",
        "<message><x xmlns='}'/></message>",
        "<message><x xmlns='urn:a b'/></message>",
        "<message><x xmlns:p=''/></message>",
        "<message><x xmlns='urn:&lt;x&gt;'/></message>",
    ] {
        assert_eq!(
            condition(&stream(body)),
            Some(StreamCondition::NotWellFormed),
            "{body}"
        );
    }
    // Ordinary names, IRIs and undeclaring the default namespace stay fine.
    for body in [
        "<message><x xmlns='urn:xmpp:receipts'/><y xmlns='http://jabber.org/protocol/chatstates'/></message>",
        "<message><x xmlns='urn:example:caf\u{e9}%20#frag?q=1'/></message>",
        "<message><x xmlns=''/></message>",
    ] {
        let (evs, err) = whole(&stream(body));
        assert_eq!(err, None, "{body}");
        assert_eq!(evs.len(), 2, "{body}");
    }
}
