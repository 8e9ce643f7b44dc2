//! Tables for URIs, name-addrs, header names and typed header values.

use crate::header::{HeaderName, Headers};
use crate::message::Method;
use crate::typed::*;
use crate::uri::*;

#[test]
fn sip_uris_parse_and_print_back() {
    // (input, secure, user, host, port, transport, lr)
    #[allow(clippy::type_complexity)]
    let ok: &[(
        &str,
        bool,
        Option<&str>,
        &str,
        Option<u16>,
        Option<&str>,
        bool,
    )] = &[
        (
            "sip:alice@herald.example",
            false,
            Some("alice"),
            "herald.example",
            None,
            None,
            false,
        ),
        (
            "SIPS:Bob@Partner.Example:5061",
            true,
            Some("Bob"),
            "Partner.Example",
            Some(5061),
            None,
            false,
        ),
        (
            "sip:edge.partner.example;transport=TLS;lr",
            false,
            None,
            "edge.partner.example",
            None,
            Some("tls"),
            true,
        ),
        (
            "sip:bob:secret@10.0.0.7:5060;maddr=239.255.255.1",
            false,
            Some("bob"),
            "10.0.0.7",
            Some(5060),
            None,
            false,
        ),
        (
            "sip:[2001:db8::10]:5070;transport=tcp",
            false,
            None,
            "[2001:db8::10]",
            Some(5070),
            Some("tcp"),
            false,
        ),
        (
            "sip:+1-212-555-1212%3A1234@gateway.com;user=phone",
            false,
            Some("+1-212-555-1212%3A1234"),
            "gateway.com",
            None,
            None,
            false,
        ),
        (
            "sip:alice@atlanta.com?subject=project%20x&priority=urgent",
            false,
            Some("alice"),
            "atlanta.com",
            None,
            None,
            false,
        ),
    ];
    for &(s, secure, user, host, port, transport, lr) in ok {
        let u = SipUri::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        assert_eq!(u.secure, secure, "{s}");
        assert_eq!(u.user_name(), user, "{s}");
        assert_eq!(u.host, host, "{s}");
        assert_eq!(u.port, port, "{s}");
        assert_eq!(u.transport().as_deref(), transport, "{s}");
        assert_eq!(u.lr(), lr, "{s}");
        let printed = u.to_string();
        assert_eq!(SipUri::parse(&printed).unwrap(), u, "{s}");
        assert!(printed.eq_ignore_ascii_case(s), "{s} printed as {printed}");
    }
    for bad in [
        "sip:",
        "sip:@host",
        "sip:alice@",
        "sip:alice@host:",
        "sip:alice@host:99999",
        "sip:alice@host:5x",
        "sip:alice@ho st",
        "sip:alice@[::1",
        "sip:alice@[zz]",
        "sip:alice@host;=x",
        "sip:alice@host;a=",
        "tel:+123",
        "alice@host",
    ] {
        assert!(SipUri::parse(bad).is_err(), "{bad}");
    }
    assert_eq!(
        Uri::parse("tel:+1-201-555-0123").unwrap(),
        Uri::Other("tel:+1-201-555-0123".into())
    );
    assert_eq!(
        Uri::parse("pres:bob@partner.example").unwrap().scheme(),
        "pres"
    );
    assert!(Uri::parse("1x:y").is_err());
    assert!(Uri::parse("nocolon").is_err());
}

#[test]
fn name_addrs() {
    let cases: &[(&str, Option<&str>, &str, Option<&str>)] = &[
        (
            "\"Bob, \\\"B\\\"\" <sip:bob@p.example>;tag=12",
            Some("Bob, \"B\""),
            "sip:bob@p.example",
            Some("12"),
        ),
        (
            "Bob Smith <sip:bob@p.example;transport=tls>",
            Some("Bob Smith"),
            "sip:bob@p.example;transport=tls",
            None,
        ),
        (
            "<sip:bob@p.example;lr>;tag=x",
            None,
            "sip:bob@p.example;lr",
            Some("x"),
        ),
        // addr-spec form: the parameters belong to the header.
        (
            "sip:bob@p.example;tag=abc",
            None,
            "sip:bob@p.example",
            Some("abc"),
        ),
        ("  <tel:+15551234> ", None, "tel:+15551234", None),
    ];
    for &(s, display, uri, tag) in cases {
        let na = NameAddr::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        assert_eq!(na.display.as_deref(), display, "{s}");
        assert_eq!(na.uri.to_string(), uri, "{s}");
        assert_eq!(na.tag(), tag, "{s}");
        assert_eq!(NameAddr::parse(&na.to_string()).unwrap(), na, "{s}");
    }
    for bad in [
        "\"open <sip:a@b>",
        "<sip:a@b",
        "Bob sip:a@b",
        "<>",
        "<sip:a@b>;=1",
    ] {
        assert!(NameAddr::parse(bad).is_err(), "{bad}");
    }
    let mut na = NameAddr::new(SipUri::new(Some("alice"), "herald.example"));
    na.set_tag("t1");
    assert_eq!(na.to_string(), "<sip:alice@herald.example>;tag=t1");
}

#[test]
fn header_names_and_compact_forms() {
    for (compact, full) in [
        ("f", HeaderName::From),
        ("T", HeaderName::To),
        ("i", HeaderName::CallId),
        ("v", HeaderName::Via),
        ("l", HeaderName::ContentLength),
        ("m", HeaderName::Contact),
        ("c", HeaderName::ContentType),
        ("k", HeaderName::Supported),
        ("s", HeaderName::Subject),
        ("e", HeaderName::ContentEncoding),
        ("o", HeaderName::Event),
        ("u", HeaderName::AllowEvents),
    ] {
        assert_eq!(HeaderName::parse(compact), full);
        assert_eq!(HeaderName::parse(&full.as_str().to_uppercase()), full);
        assert_eq!(full.compact(), compact.to_lowercase().chars().next());
    }
    assert_eq!(HeaderName::parse("cseq"), HeaderName::CSeq);
    assert_eq!(
        HeaderName::parse("X-Ms-Foo"),
        HeaderName::Other("X-Ms-Foo".into())
    );
    assert!(HeaderName::Other("X-Ms-Foo".into()).is("x-ms-foo"));
    assert!(HeaderName::Via.is("v") && HeaderName::Via.is_list());
    assert!(!HeaderName::CallId.is_list() && !HeaderName::Other("q".into()).is_list());
}

#[test]
fn headers_list_operations() {
    let mut h = Headers::new();
    h.push("Route", "<sip:a.example;lr>, \"x,y\" <sip:b.example;lr>");
    h.push("Route", "<sip:c.example;lr>");
    h.push("Subject", "a, b");
    let routes = h.routes().unwrap();
    assert_eq!(routes.len(), 3);
    assert_eq!(routes[1].display.as_deref(), Some("x,y"));
    assert_eq!(h.values(&HeaderName::Subject).collect::<Vec<_>>(), ["a, b"]);
    assert_eq!(
        h.pop_first_value(&HeaderName::Route).as_deref(),
        Some("<sip:a.example;lr>")
    );
    assert_eq!(h.routes().unwrap().len(), 2);
    assert_eq!(
        h.pop_first_value(&HeaderName::Route).as_deref(),
        Some("\"x,y\" <sip:b.example;lr>")
    );
    assert_eq!(h.count(&HeaderName::Route), 1);
    h.set("Subject", "c");
    h.push("Subject", "d");
    h.set("Subject", "e");
    assert_eq!(h.get_all(&HeaderName::Subject).collect::<Vec<_>>(), ["e"]);
    h.push_front("Via", "SIP/2.0/TLS h;branch=z9hG4bK1");
    assert_eq!(h.iter().next().unwrap().name, HeaderName::Via);
    assert_eq!(h.remove(&HeaderName::Subject), 1);
    assert_eq!(h.len(), 2);
}

#[test]
fn typed_values_round_trip() {
    let via =
        Via::parse("SIP/2.0/TLS  192.0.2.1:5061 ; branch=z9hG4bKabc;received=10.0.0.1;rport=5070")
            .unwrap();
    assert_eq!((via.host.as_str(), via.port), ("192.0.2.1", Some(5061)));
    assert_eq!(via.branch(), Some("z9hG4bKabc"));
    assert_eq!(via.received(), Some("10.0.0.1"));
    assert_eq!(via.rport(), Some(Some(5070)));
    assert_eq!(Via::parse(&via.to_string()).unwrap(), via);
    let v6 = Via::parse("SIP/2.0/TCP [2001:db8::1];branch=z9hG4bK2").unwrap();
    assert_eq!(v6.sent_by(), "[2001:db8::1]");
    assert!(!Via::parse("SIP/2.0/TCP h;branch=abc").unwrap().is_rfc3261());
    for bad in [
        "SIP/2.0/TCP",
        "SIP/2.0 h",
        "SIP/2.0/TCP h;branch",
        "SIP/2.0/TCP h;rport=x",
        "SIP/2.0/TCP h:x",
    ] {
        assert!(Via::parse(bad).is_err(), "{bad}");
    }

    let cseq = CSeq::parse(" 42   SUBSCRIBE ").unwrap();
    assert_eq!((cseq.seq, &cseq.method), (42, &Method::Subscribe));
    assert_eq!(cseq.to_string(), "42 SUBSCRIBE");
    for bad in [
        "42",
        "x INVITE",
        "2147483648 INVITE",
        "1 IN VITE",
        "1 INV@TE",
    ] {
        assert!(CSeq::parse(bad).is_err(), "{bad}");
    }

    let ev = Event::parse("presence;id=7").unwrap();
    assert!(ev.is("Presence"));
    assert_eq!(ev.id(), Some("7"));
    assert_eq!(Event::parse(&ev.to_string()).unwrap(), ev);
    assert!(Event::parse("").is_err());

    for (s, state, expires, reason) in [
        ("active;expires=3600", SubState::Active, Some(3600), None),
        ("Pending", SubState::Pending, None, None),
        (
            "terminated;reason=noresource",
            SubState::Terminated,
            None,
            Some("noresource"),
        ),
        ("waiting;x=1", SubState::Other("waiting".into()), None, None),
    ] {
        let ss = SubscriptionState::parse(s).unwrap();
        assert_eq!(
            (&ss.state, ss.expires(), ss.reason()),
            (&state, expires, reason)
        );
        assert_eq!(SubscriptionState::parse(&ss.to_string()).unwrap(), ss);
    }
    assert!(SubscriptionState::parse("active;expires=soon").is_err());
    let built = SubscriptionState::new(SubState::Terminated, None, Some("timeout"));
    assert_eq!(built.to_string(), "terminated;reason=timeout");

    let ct = ContentType::parse("Application/PIDF+XML; charset=\"utf-8\"").unwrap();
    assert!(ct.is("application/pidf+xml"));
    assert_eq!(ct.params.value("charset"), Some("\"utf-8\""));
    assert_eq!(ContentType::parse(&ct.to_string()).unwrap(), ct);
    assert!(ContentType::parse("text").is_err());
}

#[test]
fn accessors_name_the_missing_or_bad_header() {
    let mut h = Headers::new();
    assert_eq!(h.call_id(), Err(HeaderError::Missing(HeaderName::CallId)));
    assert_eq!(h.top_via().unwrap_err().name(), &HeaderName::Via);
    assert_eq!(h.expires(), Ok(None));
    assert!(h.supported().is_empty());
    h.push("Expires", "-1");
    h.push("k", "100rel, timer");
    h.push("Require", "eventlist");
    assert_eq!(h.expires().unwrap_err().name(), &HeaderName::Expires);
    assert_eq!(h.supported(), ["100rel", "timer"]);
    assert_eq!(h.require(), ["eventlist"]);
}
