//! Session-mode IM with SIP users (an INVITE dialog per conversation, MESSAGE inside it, page
//! mode after a refusal, BYE when idle) and the e-mail form of a user's SIP address.

use super::*;

fn chat(from: &str, to: &str, text: &str) -> Element {
    Element::new("message", ns::CLIENT)
        .attr("from", from)
        .attr("to", to)
        .attr("type", "chat")
        .child(Element::new("body", ns::CLIENT).text_node(text))
}

/// The UAS's 2xx to our INVITE: its tag, Contact and one Record-Route.
fn invite_ok(invite: &Request) -> Response {
    let mut r = Response::for_request(invite, 200, None)
        .header(
            HeaderName::Contact,
            "<sip:erin@10.9.9.8:5070;transport=udp>",
        )
        .header(
            HeaderName::RecordRoute,
            "<sip:10.9.9.9:5061;transport=tls;lr>",
        );
    let mut to = invite.headers.to().unwrap();
    to.set_tag("erin-tag");
    r.headers.set(HeaderName::To, to.to_string());
    r
}

fn invite_key(actions: &[Action]) -> (ReqKey, Request) {
    match actions {
        [Action::Send { request, key, .. }] if request.method == Method::Invite => {
            (key.clone(), request.clone())
        }
        other => panic!("expected one INVITE, got {other:?}"),
    }
}

/// Sends `text` from `from` to `to` when no session is open: the message must wait (`Held`) for
/// the one INVITE it starts, whose key and request are returned.
fn held_invite(
    t: &mut Table,
    env: &mut TestEnv,
    now: Instant,
    (from, to, text): (&str, &str, &str),
) -> (ReqKey, Request) {
    match t.session_message(&chat(from, to, text), text, now, env) {
        SessionSend::Held(actions) => invite_key(&actions),
        other => panic!("{text:?} from {from} should wait for an INVITE, got {other:?}"),
    }
}

#[test]
fn outbound_im_opens_one_session_and_reuses_it_both_ways() {
    let mut t = Table::new();
    let mut env = TestEnv::new();
    let now = Instant::now();
    let (alice, erin) = ("alice@h.test/phone", "erin@sip.test");
    // The first message opens the session: one INVITE offering m=message, the message waits.
    let (key, invite) = held_invite(&mut t, &mut env, now, (alice, erin, "one"));
    assert!(
        body(&invite).contains("m=message 5061 sip null"),
        "{}",
        body(&invite)
    );
    assert_eq!(invite.uri.to_string(), "sip:erin@sip.test");
    assert_eq!(
        invite.headers.get(&HeaderName::Route),
        Some("<sip:proxy.sip.test:5061;transport=tls;lr>")
    );
    // A second message while the INVITE is out waits too: no second INVITE.
    match t.session_message(&chat(alice, erin, "two"), "two", now, &mut env) {
        SessionSend::Held(a) => assert!(a.is_empty(), "{a:?}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(t.counts().sessions, 1);
    // 2xx: ACK (same CSeq number, remote tag, Record-Route as the route) and both MESSAGEs.
    let actions = t.on_response(&key, &invite_ok(&invite), now, &mut env);
    let reqs = sent(&actions);
    assert_eq!(reqs.len(), 1, "{actions:?}");
    let ack = reqs[0];
    assert_eq!(ack.method, Method::Ack);
    assert_eq!(ack.headers.get(&HeaderName::CSeq), Some("1 ACK"));
    assert_eq!(ack.uri.to_string(), "sip:erin@10.9.9.8:5070;transport=udp");
    assert!(ack
        .headers
        .get(&HeaderName::To)
        .unwrap()
        .contains("tag=erin-tag"));
    assert_eq!(
        ack.headers.get(&HeaderName::Route),
        Some("<sip:10.9.9.9:5061;transport=tls;lr>")
    );
    let messages: Vec<(&Request, &Element)> = actions
        .iter()
        .filter_map(|a| match a {
            Action::Message {
                request, stanza, ..
            } => Some((request, stanza)),
            _ => None,
        })
        .collect();
    assert_eq!(messages.len(), 2, "{actions:?}");
    for ((m, stanza), (cseq, text)) in messages.iter().zip([(2, "one"), (3, "two")]) {
        assert_eq!(m.method, Method::Message);
        assert_eq!(
            m.headers.call_id().unwrap(),
            invite.headers.call_id().unwrap()
        );
        assert_eq!(
            m.headers.get(&HeaderName::CSeq).map(str::to_string),
            Some(format!("{cseq} MESSAGE"))
        );
        assert_eq!(body(m), text);
        assert_eq!(stanza.get_attr("to"), Some(erin));
    }
    // Later messages go straight inside the dialog.
    match t.session_message(&chat(alice, erin, "three"), "three", now, &mut env) {
        SessionSend::Message(m, hop) => {
            assert_eq!(m.headers.get(&HeaderName::CSeq), Some("4 MESSAGE"));
            assert_eq!(
                (hop.host.as_str(), hop.port, hop.tls),
                ("10.9.9.9", 5061, true)
            );
        }
        other => panic!("{other:?}"),
    }
    // The SIP user's MESSAGE inside our dialog (To carries our tag) reaches alice.
    let our_tag = invite.headers.from().unwrap().tag().unwrap().to_string();
    let call_id = invite.headers.call_id().unwrap().to_string();
    let in_dialog = |method: &str, cseq: u32| {
        parse(&format!(
            "{method} sip:alice@10.0.0.1:5061;transport=tls SIP/2.0\r\n\
             Via: SIP/2.0/TLS 10.9.9.9:5061;branch=z9hG4bKin{cseq}\r\nMax-Forwards: 70\r\n\
             From: <sip:erin@sip.test>;tag=erin-tag\r\nTo: <sip:alice@h.test>;tag={our_tag}\r\n\
             Call-ID: {call_id}\r\nCSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n"
        ))
    };
    match t.on_in_dialog(&in_dialog("MESSAGE", 1), now, &mut env) {
        InDialog::Deliver { remote, user } => {
            assert_eq!((remote, user), (jid("erin@sip.test"), jid("alice@h.test")))
        }
        other => panic!("{other:?}"),
    }
    // BYE from the SIP side ends it; the next message opens a new session.
    match t.on_in_dialog(&in_dialog("BYE", 2), now, &mut env) {
        InDialog::Respond(r) => assert_eq!(r.status, 200),
        other => panic!("{other:?}"),
    }
    assert_eq!(t.counts().sessions, 0);
    let (_, again) = held_invite(&mut t, &mut env, now, (alice, erin, "four"));
    assert_ne!(
        again.headers.call_id().unwrap(),
        invite.headers.call_id().unwrap()
    );
}

#[test]
fn refused_invite_falls_back_to_page_mode_for_a_while() {
    let mut t = Table::new();
    let mut env = TestEnv::new();
    let now = Instant::now();
    let (alice, erin) = ("alice@h.test/phone", "erin@sip.test");
    let (key, invite) = held_invite(&mut t, &mut env, now, (alice, erin, "one"));
    let _ = t.session_message(&chat(alice, erin, "two"), "two", now, &mut env);
    // 488 (no IM sessions here): both waiting messages go again, in page mode, in order.
    let mut refused = Response::for_request(&invite, 488, Some("Not Acceptable Here"));
    let mut to = invite.headers.to().unwrap();
    to.set_tag("erin-tag");
    refused.headers.set(HeaderName::To, to.to_string());
    let actions = t.on_response(&key, &refused, now, &mut env);
    let resent: Vec<String> = actions
        .iter()
        .map(|a| match a {
            Action::Resend(m) => herald_xmpp::stanza::Message::view(m)
                .unwrap()
                .body()
                .unwrap(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(resent, ["one", "two"]);
    assert_eq!(t.counts().sessions, 0);
    // The pair stays in page mode for a while, then tries a session again.
    assert!(matches!(
        t.session_message(&chat(alice, erin, "three"), "three", now, &mut env),
        SessionSend::PageMode
    ));
    let later = now + PAGE_MODE_AFTER_REFUSAL + Duration::from_secs(1);
    assert!(matches!(
        t.session_message(&chat(alice, erin, "four"), "four", later, &mut env),
        SessionSend::Held(_)
    ));
    // No route to the domain: page mode (whose own failure bounces to the sender).
    assert!(matches!(
        t.session_message(&chat(alice, "x@elsewhere.test", "hi"), "hi", now, &mut env),
        SessionSend::PageMode
    ));
    // No answer at all (the link made up a 408 without a To tag): the waiting message bounces.
    let (key, invite) = held_invite(&mut t, &mut env, now, (alice, "bob@sip.test", "lost"));
    let made_up = Response::for_request(&invite, 408, Some("Request Timeout (connect)"));
    match t.on_response(&key, &made_up, now, &mut env).as_slice() {
        [Action::Fail { text, .. }] => assert!(text.contains("cannot be reached"), "{text}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        t.session_message(
            &chat(alice, "bob@sip.test", "again"),
            "again",
            now,
            &mut env
        ),
        SessionSend::Held(_)
    ));
    // A session that was never answered is not ended by the idle timer (its INVITE times out
    // in the link, which answers 408: page mode again).
    let idle = t.tick(later + SESSION_IDLE * 2, &mut env);
    assert!(sent(&idle).is_empty(), "{idle:?}");
}

#[test]
fn confirmed_outbound_session_ends_with_bye_when_idle() {
    let mut t = Table::new();
    let mut env = TestEnv::new();
    let now = Instant::now();
    let (key, invite) = held_invite(
        &mut t,
        &mut env,
        now,
        ("alice@h.test", "erin@sip.test", "hi"),
    );
    let _ = t.on_response(&key, &invite_ok(&invite), now, &mut env);
    let actions = t.tick(now + SESSION_IDLE, &mut env);
    let reqs = sent(&actions);
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].method, Method::Bye);
    assert!(reqs[0]
        .headers
        .get(&HeaderName::To)
        .unwrap()
        .contains("tag=erin-tag"));
    assert_eq!(t.counts().sessions, 0);
}

#[test]
fn email_for_federation_names_the_user_by_email_on_the_wire() {
    let mut t = Table::new();
    let mut env = TestEnv::new();
    env.mail
        .insert("alice@h.test".into(), "first.last@mail.test".into());
    let now = Instant::now();
    let (_, invite) = held_invite(
        &mut t,
        &mut env,
        now,
        ("alice@h.test/pc", "erin@sip.test", "hi"),
    );
    assert!(
        invite
            .headers
            .get(&HeaderName::From)
            .unwrap()
            .starts_with("<sip:first.last@mail.test>"),
        "{:?}",
        invite.headers.get(&HeaderName::From)
    );
    let actions = t.on_xmpp(
        &presence("alice@h.test/pc", "erin@sip.test", Some("subscribe"), None),
        now,
        &mut env,
    );
    let sub = sent(&actions);
    assert!(sub[0]
        .headers
        .get(&HeaderName::From)
        .unwrap()
        .starts_with("<sip:first.last@mail.test>"));
}
