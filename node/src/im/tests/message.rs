//! RFC 6121 §8.5 delivery rules and XEP-0160 offline storage.

use super::*;
use crate::im::Effect;

const BOB: &str = "bob@x.org/p";

/// A user whose sessions are (resource, Some(priority)) when available, (resource, None) when
/// only bound.
fn with_sessions(sessions: &[(&str, Option<i8>)]) -> UserCore {
    let mut c = core();
    for (res, prio) in sessions {
        match prio {
            Some(p) => online(&mut c, res, *p),
            None => {
                c.session_bound(res);
            }
        }
    }
    c
}

/// (sessions, to, type, resources given the message or other effects)
type Row<'a> = (Vec<(&'a str, Option<i8>)>, &'a str, &'a str, Vec<&'a str>);

#[test]
fn delivery_by_type_and_priority() {
    let off = "persist";
    let bounce = "route message[error] alice@example.com->bob@x.org/p !service-unavailable";
    let bounce_full =
        "route message[error] alice@example.com/gone->bob@x.org/p !service-unavailable";
    #[rustfmt::skip]
    let rows: Vec<Row> = vec![
        // To the bare JID: chat and normal go to the highest non-negative priority.
        (vec![("a", Some(1)), ("b", Some(5))], ME, "chat", vec!["b"]),
        (vec![("a", Some(5)), ("b", Some(5))], ME, "chat", vec!["a", "b"]),
        (vec![("a", Some(0)), ("b", Some(-1))], ME, "", vec!["a"]),
        (vec![("a", Some(2)), ("b", Some(1))], ME, "normal", vec!["a"]),
        (vec![("a", Some(2))], ME, "bogus", vec!["a"]),
        (vec![("a", Some(-1))], ME, "chat", vec![off]),
        (vec![("a", None)], ME, "chat", vec![off]),
        (vec![], ME, "normal", vec![off]),
        // Headline: every non-negative resource, or nobody.
        (vec![("a", Some(1)), ("b", Some(0)), ("c", Some(-1))], ME, "headline", vec!["a", "b"]),
        (vec![("a", Some(-1))], ME, "headline", vec![]),
        (vec![], ME, "headline", vec![]),
        // Groupchat to a user: service-unavailable; errors: dropped.
        (vec![("a", Some(1))], ME, "groupchat", vec![bounce]),
        (vec![("a", Some(1))], ME, "error", vec![]),
        // To a full JID: that session if bound, whatever its presence.
        (vec![("a", Some(1)), ("b", None)], "alice@example.com/b", "chat", vec!["b"]),
        (vec![("a", Some(1)), ("b", Some(-5))], "alice@example.com/b", "groupchat", vec!["b"]),
        // A full JID with no session: as the bare JID, except groupchat.
        (vec![("a", Some(1))], "alice@example.com/gone", "chat", vec!["a"]),
        (vec![("a", Some(1))], "alice@example.com/gone", "normal", vec!["a"]),
        (vec![("a", Some(1))], "alice@example.com/gone", "headline", vec!["a"]),
        (vec![], "alice@example.com/gone", "chat", vec![off]),
        (vec![("a", Some(1))], "alice@example.com/gone", "groupchat", vec![bounce_full]),
        (vec![("a", Some(1))], "alice@example.com/gone", "error", vec![]),
    ];
    for (sessions, to, typ, want) in rows {
        let mut c = with_sessions(&sessions);
        let fx = c.from_outside(msg(BOB, to, typ), 7);
        let got: Vec<String> = fx
            .iter()
            .map(|e| match e {
                Effect::ToSession { resource, stanza } => {
                    assert_eq!(stanza.get_attr("to"), Some(to));
                    resource.clone()
                }
                other => summary(std::slice::from_ref(other)).join(""),
            })
            .collect();
        assert_eq!(got, want, "{sessions:?} {to} {typ}");
        assert_eq!(c.data.offline.len(), usize::from(want == [off]));
        check_persist(&fx);
    }
}

#[test]
fn offline_storage_redelivery_and_limit() {
    let mut c = core();
    c.limits.offline_max = 2;
    c.session_bound("a");
    let t1 = 1_700_000_000_123;
    assert_eq!(
        summary(&c.from_outside(msg(BOB, ME, "chat"), t1)),
        ["persist"]
    );
    assert_eq!(
        summary(&c.from_outside(msg("carol@y/q", ME, ""), t1 + 1000)),
        ["persist"]
    );
    // Over the limit: refused, nothing stored.
    assert_eq!(
        summary(&c.from_outside(msg("dave@z/r", ME, "chat"), t1 + 2000)),
        ["route message[error] alice@example.com->dave@z/r !service-unavailable"]
    );
    // Messages with nothing to read (chat states) are not stored.
    let composing = Element::new("message", ns::CLIENT)
        .attr("from", BOB)
        .attr("to", ME)
        .attr("type", "chat")
        .child(Element::new(
            "composing",
            "http://jabber.org/protocol/chatstates",
        ));
    assert!(c.from_outside(composing, t1).is_empty());
    assert_eq!(c.data.offline.len(), 2);
    // Negative priority: kept.
    let fx = c.from_client("a", avail(-1), t1 + 3000);
    assert!(!fx.contains(&Effect::Persist));
    assert_eq!(c.data.offline.len(), 2);
    // Non-negative: delivered oldest first with a delay stamp, then removed.
    let fx = c.from_client("a", avail(0), t1 + 4000);
    assert_eq!(fx.last(), Some(&Effect::Persist));
    check_persist(&fx);
    let delivered: Vec<&Element> = to_sessions(&fx)
        .into_iter()
        .filter(|(_, s)| s.name() == "message")
        .map(|(_, s)| s)
        .collect();
    assert_eq!(delivered.len(), 2);
    let d = delivered[0].get_child("delay", ns::DELAY).expect("delay");
    assert_eq!(d.get_attr("stamp"), Some("2023-11-14T22:13:20.123Z"));
    assert_eq!(d.get_attr("from"), Some("example.com"));
    assert_eq!(delivered[0].get_attr("from"), Some(BOB));
    assert_eq!(
        delivered[0].get_child("body", ns::CLIENT).map(|b| b.text()),
        Some("hi".to_string())
    );
    assert_eq!(delivered[1].get_attr("from"), Some("carol@y/q"));
    let d = delivered[1].get_child("delay", ns::DELAY).expect("delay");
    assert_eq!(d.get_attr("stamp"), Some("2023-11-14T22:13:21.123Z"));
    assert!(c.data.offline.is_empty());
    // A stored stanza that cannot be read back is dropped, the rest delivered.
    let mut c = core();
    c.data.offline.push(herald_grpc::config::StoredStanza {
        xml: "<message".into(),
        stored_at_ms: 0,
        stanza_id: String::new(),
    });
    c.session_bound("a");
    let fx = c.from_client("a", avail(0), 0);
    assert_eq!(
        summary(&fx),
        [
            "a <= presence[] alice@example.com/a->alice@example.com/a",
            "persist"
        ]
    );
    assert!(c.data.offline.is_empty());
}

#[test]
fn outbound_messages() {
    let mut c = core();
    online(&mut c, "a", 0);
    online(&mut c, "b", 0);
    c.data.blocked = vec!["evil.com".into(), "x@y/r".into()];
    let rows: Vec<(Element, Vec<&str>)> = vec![
        (
            msg("", "bob@x.org", "chat"),
            vec!["route message[chat] alice@example.com/a->bob@x.org"],
        ),
        (
            msg("", "x@y/other", "chat"),
            vec!["route message[chat] alice@example.com/a->x@y/other"],
        ),
        (
            msg("", "x@y/r", "chat"),
            vec!["a <= message[error] x@y/r->alice@example.com/a !not-acceptable !blocked"],
        ),
        (
            msg("", "m@evil.com/r", ""),
            vec!["a <= message[error] m@evil.com/r->alice@example.com/a !not-acceptable !blocked"],
        ),
        (msg("", "m@evil.com", "error"), vec![]),
        (
            msg("", "bad jid@x", "chat"),
            vec!["a <= message[error] bad jid@x->alice@example.com/a !jid-malformed"],
        ),
        // To the user's own account: delivered here.
        (
            msg("", "alice@example.com/b", "chat"),
            vec!["b <= message[chat] alice@example.com/a->alice@example.com/b"],
        ),
        (
            msg("", "", "chat"),
            vec![
                "a <= message[chat] alice@example.com/a->alice@example.com",
                "b <= message[chat] alice@example.com/a->alice@example.com",
            ],
        ),
    ];
    for (input, want) in rows {
        let fx = c.from_client("a", input.clone(), 0);
        assert_eq!(summary(&fx), want, "{}", input.to_xml_string());
    }
}

/// The same message handed on twice between nodes (same XEP-0359 id) is stored once and
/// delivered once; another message is not taken for it.
#[test]
fn a_message_arriving_twice_counts_once() {
    let stamped = |id: &str| {
        msg(BOB, ME, "chat").child(
            Element::new("stanza-id", ns::SID)
                .attr("id", id)
                .attr("by", "alice@example.com"),
        )
    };
    let mut c = core();
    // Offline: stored once, even when the second copy comes after the actor forgot what it
    // saw (a new home reading the stored state).
    assert!(c.from_outside(stamped("m1"), 1).contains(&Effect::Persist));
    assert!(c.from_outside(stamped("m1"), 2).is_empty());
    c.seen_ids.clear();
    assert!(c.from_outside(stamped("m1"), 3).is_empty());
    assert_eq!(c.data.offline.len(), 1);
    assert_eq!(c.data.offline[0].stanza_id, "m1");
    // An id given for another account does not count as ours.
    let other = msg(BOB, ME, "chat").child(
        Element::new("stanza-id", ns::SID)
            .attr("id", "m1")
            .attr("by", "zed@example.com"),
    );
    assert!(c.from_outside(other, 4).contains(&Effect::Persist));
    assert_eq!(c.data.offline.len(), 2);
    // Online: delivered once.
    online(&mut c, "a", 0);
    let fx = c.from_outside(stamped("m2"), 5);
    assert_eq!(to_sessions(&fx).len(), 1);
    assert!(c.from_outside(stamped("m2"), 6).is_empty());
    // The memory is bounded.
    for i in 0..(crate::im::stanza_id::REMEMBERED + 10) {
        c.from_outside(stamped(&format!("n{i}")), 7);
    }
    assert_eq!(c.seen_ids.len(), crate::im::stanza_id::REMEMBERED);
}

/// A message that reached a session which stopped before writing it (or whose client never
/// acknowledged it) comes back to the account with the id the home already handled: it goes
/// to another resource or offline, not dropped as a repeat; two copies of that hand-back still
/// count once.
#[test]
fn a_message_handed_back_by_a_stopped_session_is_kept() {
    let stamped = msg(BOB, ME, "chat").child(
        Element::new("stanza-id", ns::SID)
            .attr("id", "m1")
            .attr("by", "alice@example.com"),
    );
    let mut c = core();
    online(&mut c, "a", 0);
    let fx = c.from_outside(stamped, 1);
    let delivered = match to_sessions(&fx).as_slice() {
        [(res, stanza)] if *res == "a" => (*stanza).clone(),
        other => panic!("delivered to {other:?}"),
    };
    // The session stops with it unwritten; its resource is gone when the hand-back arrives.
    c.session_closed("a", 2);
    let back = crate::xmpp::users::for_the_account(delivered).expect("a chat message goes back");
    assert_eq!(back.get_attr("to"), Some(ME));
    let fx = c.from_outside(back.clone(), 3);
    assert!(fx.contains(&Effect::Persist), "{}", summary(&fx).join("; "));
    assert_eq!(c.data.offline.len(), 1, "stored for the next sign-in");
    assert!(
        c.from_outside(back, 4).is_empty(),
        "the same hand-back twice counts once"
    );
    assert_eq!(c.data.offline.len(), 1);
}
