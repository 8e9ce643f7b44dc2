//! A presence broadcast handed to the table once for all its SIP watchers
//! ([`Table::on_xmpp_broadcast`]) does exactly what one addressed copy per watcher does
//! ([`Table::on_xmpp`]), for every kind of watcher.

use super::*;

/// A SUBSCRIBE from `name`@sip.test to alice in a dialog of its own.
fn subscribe_from(name: &str) -> Request {
    parse(&format!(
        "SUBSCRIBE sip:alice@h.test SIP/2.0\r\nVia: SIP/2.0/TLS 10.9.9.9:5061;branch=z9hG4bK{name}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:{name}@sip.test>;tag={name}t\r\nTo: <sip:alice@h.test>\r\n\
         Call-ID: call-{name}\r\nCSeq: 1 SUBSCRIBE\r\n\
         Contact: <sip:{name}@10.9.9.9:5061;transport=tls>\r\nEvent: presence\r\nContent-Length: 0\r\n\r\n"
    ))
}

/// bob may watch (active), carol is blocked (active, sees offline), dave is unknown
/// (pending), erin watches without a SIP subscription.
const WATCHERS: [&str; 4] = ["bob", "carol", "dave", "erin"];

fn table(now: Instant) -> (Table, TestEnv) {
    let mut t = Table::new();
    let mut env = TestEnv::new();
    for (name, r) in [
        ("bob", Relation::Allowed),
        ("carol", Relation::Blocked),
        ("erin", Relation::Allowed),
    ] {
        env.relations
            .insert(("alice@h.test".into(), format!("{name}@sip.test")), r);
    }
    for name in ["bob", "carol", "dave"] {
        let (_, a) = t.on_subscribe(
            &subscribe_from(name),
            &jid(&format!("{name}@sip.test")),
            &jid("alice@h.test"),
            true,
            now,
            &mut env,
        );
        assert!(ok_all(&mut t, &mut env, &a).is_empty());
    }
    let a = t.tick(now + FIRST_NOTIFY_WAIT, &mut env);
    assert!(ok_all(&mut t, &mut env, &a).is_empty());
    (t, env)
}

#[test]
fn a_broadcast_notifies_as_one_copy_per_watcher_does() {
    let now = Instant::now();
    let (mut each, mut env_each) = table(now);
    let (mut once, mut env_once) = table(now);
    let watchers: Vec<Jid> = WATCHERS
        .iter()
        .map(|n| jid(&format!("{n}@sip.test")))
        .collect();
    let steps: [(&str, Option<&str>, Option<&str>); 4] = [
        ("alice@h.test/pc", None, Some("dnd")),
        ("alice@h.test/phone", None, Some("away")),
        ("alice@h.test/pc", Some("unavailable"), None),
        ("alice@h.test/phone", Some("unavailable"), None),
    ];
    for (i, (from, typ, show)) in steps.into_iter().enumerate() {
        let later = now + FIRST_NOTIFY_WAIT + Duration::from_secs(i as u64);
        let mut per_watcher = Vec::new();
        for w in &watchers {
            let copy = presence(from, &w.to_string(), typ, show);
            per_watcher.extend(each.on_xmpp(&copy, later, &mut env_each));
        }
        let mut shared = presence(from, "x@sip.test", typ, show);
        shared.remove_attr("to");
        let batched = once.on_xmpp_broadcast(&shared, &jid(from), &watchers, later, &mut env_once);
        assert_eq!(
            format!("{per_watcher:?}"),
            format!("{batched:?}"),
            "step {i}"
        );
        // Not vacuous: bob and carol are notified at every step, dave and erin never.
        let notified: Vec<String> = sent(&batched).iter().map(|r| r.uri.to_string()).collect();
        assert_eq!(notified.len(), 2, "step {i}: {notified:?}");
        assert!(
            notified.iter().any(|u| u.starts_with("sip:bob@")),
            "{notified:?}"
        );
        assert!(
            notified.iter().any(|u| u.starts_with("sip:carol@")),
            "{notified:?}"
        );
        let body_of = |name: &str| {
            let r = sent(&batched)
                .into_iter()
                .find(|r| r.uri.to_string().starts_with(&format!("sip:{name}@")))
                .unwrap();
            body(r)
        };
        // The blocked watcher sees offline throughout; bob follows alice.
        assert!(
            body_of("carol").contains("<basic>closed</basic>"),
            "step {i}"
        );
        let want = ["busy", "busy", "away", "<basic>closed</basic>"][i];
        assert!(
            body_of("bob").contains(want),
            "step {i}: {}",
            body_of("bob")
        );
        for (t, env, a) in [
            (&mut each, &mut env_each, &per_watcher),
            (&mut once, &mut env_once, &batched),
        ] {
            assert!(ok_all(t, env, a).is_empty());
        }
    }
    assert_eq!(each.counts(), once.counts());
    assert_eq!(env_each.n, env_once.n);
}

#[test]
fn a_broadcast_of_another_type_or_to_servers_does_nothing() {
    let now = Instant::now();
    let (mut t, mut env) = table(now);
    let mut probe = presence("alice@h.test/pc", "x@sip.test", Some("probe"), None);
    probe.remove_attr("to");
    let all = [jid("bob@sip.test")];
    assert!(t
        .on_xmpp_broadcast(&probe, &jid("alice@h.test/pc"), &all, now, &mut env)
        .is_empty());
    let mut avail = presence("alice@h.test/pc", "x@sip.test", None, None);
    avail.remove_attr("to");
    assert!(t
        .on_xmpp_broadcast(
            &avail,
            &jid("alice@h.test/pc"),
            &[jid("sip.test")],
            now,
            &mut env
        )
        .is_empty());
}
