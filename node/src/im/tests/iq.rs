//! IQ routing (RFC 6120 §8.2.3, RFC 6121 §8.5) and disco#info on the account.

use super::*;
use crate::im::iq::account_features;

fn ping() -> Element {
    Element::new("ping", ns::PING)
}

fn setup() -> UserCore {
    let mut c = core();
    online(&mut c, "a", 0);
    c.session_bound("b");
    c.data.blocked.push("evil.com".into());
    c
}

#[test]
fn from_the_users_sessions() {
    let no_id = {
        let mut e = iq("", "get", ping());
        e.remove_attr("id");
        e
    };
    let no_id_error = {
        let mut e = iq("bob@x.org", "error", ping());
        e.remove_attr("id");
        e
    };
    let two_children = iq("bob@x.org", "get", ping()).child(ping());
    #[rustfmt::skip]
    let rows: Vec<(Element, Vec<&str>)> = vec![
        // Out to someone else: routed with the full JID.
        (iq("bob@x.org/p", "get", ping()), vec!["route iq[get] alice@example.com/a->bob@x.org/p {ping}"]),
        (iq("bob@x.org/p", "result", ping()), vec!["route iq[result] alice@example.com/a->bob@x.org/p {ping}"]),
        (iq("m@evil.com", "get", ping()), vec!["a <= iq[error] m@evil.com->alice@example.com/a !not-acceptable !blocked"]),
        (iq("m@evil.com", "result", ping()), vec![]),
        (iq("a b@c", "get", ping()), vec!["a <= iq[error] a b@c->alice@example.com/a !jid-malformed"]),
        // Malformed IQs.
        (no_id, vec!["a <= iq[error] -->alice@example.com/a !bad-request"]),
        (two_children, vec!["a <= iq[error] bob@x.org->alice@example.com/a !bad-request"]),
        (iq("bob@x.org", "bogus", ping()), vec!["a <= iq[error] bob@x.org->alice@example.com/a !bad-request"]),
        (iq("", "bogus", ping()), vec!["a <= iq[error] -->alice@example.com/a !bad-request"]),
        // Never an error for an error, even a malformed one.
        (no_id_error, vec![]),
        // To the account: unknown payloads, and results, are not for a client.
        (iq("", "get", ping()), vec!["a <= iq[error] -->alice@example.com/a !service-unavailable"]),
        (iq(ME, "get", ping()), vec!["a <= iq[error] alice@example.com->alice@example.com/a !service-unavailable"]),
        (iq("", "set", Element::new("blocklist", ns::BLOCKING)), vec!["a <= iq[error] -->alice@example.com/a !service-unavailable"]),
        (iq("", "result", ping()), vec![]),
        // Another resource of the account: delivered if bound, else service-unavailable.
        (iq("alice@example.com/b", "get", ping()), vec!["b <= iq[get] alice@example.com/a->alice@example.com/b {ping}"]),
        (iq("alice@example.com/zz", "get", ping()), vec!["a <= iq[error] alice@example.com/zz->alice@example.com/a !service-unavailable"]),
        (iq("alice@example.com/zz", "result", ping()), vec![]),
        // Roster and block list gets are answered with the same id.
        (iq("", "get", Element::new("query", ns::ROSTER)), vec!["a <= iq[result] -->alice@example.com/a {query}"]),
        (iq(ME, "get", Element::new("blocklist", ns::BLOCKING)), vec!["a <= iq[result] -->alice@example.com/a {blocklist}"]),
        (iq("", "get", Element::new("query", ns::DISCO_INFO).attr("node", "x")), vec!["a <= iq[error] -->alice@example.com/a !item-not-found"]),
    ];
    for (input, want) in rows {
        let mut c = setup();
        let fx = c.from_client("a", input.clone(), 0);
        assert_eq!(summary(&fx), want, "{}", input.to_xml_string());
        for (_, s) in to_sessions(&fx) {
            if s.get_attr("from")
                .is_none_or(|f| f != "alice@example.com/a")
            {
                assert_eq!(
                    s.get_attr("id"),
                    input.get_attr("id"),
                    "{}",
                    input.to_xml_string()
                );
            }
        }
    }
}

#[test]
fn from_outside() {
    #[rustfmt::skip]
    let rows: Vec<(Element, Vec<&str>)> = vec![
        (iq(ME, "get", ping()), vec!["route iq[error] alice@example.com->bob@x.org/p !service-unavailable"]),
        (iq(ME, "set", ping()), vec!["route iq[error] alice@example.com->bob@x.org/p !service-unavailable"]),
        (iq(ME, "result", ping()), vec![]),
        (iq(ME, "error", ping()), vec![]),
        (iq("alice@example.com/a", "get", ping()), vec!["a <= iq[get] bob@x.org/p->alice@example.com/a {ping}"]),
        (iq("alice@example.com/b", "result", ping()), vec!["b <= iq[result] bob@x.org/p->alice@example.com/b {ping}"]),
        (iq("alice@example.com/zz", "get", ping()), vec!["route iq[error] alice@example.com/zz->bob@x.org/p !service-unavailable"]),
        (iq("alice@example.com/zz", "error", ping()), vec![]),
        // Not for this user at all, or no sender: dropped.
        (iq("eve@example.com", "get", ping()), vec![]),
    ];
    for (input, want) in rows {
        let mut c = setup();
        let input = input.attr("from", "bob@x.org/p");
        let fx = c.from_outside(input.clone(), 0);
        assert_eq!(summary(&fx), want, "{}", input.to_xml_string());
    }
    let mut c = setup();
    assert!(c.from_outside(iq(ME, "get", ping()), 0).is_empty());
}

#[test]
fn disco_info_on_the_account() {
    let mut c = setup();
    let fx = c.from_client("a", iq("", "get", Element::new("query", ns::DISCO_INFO)), 0);
    let (_, r) = to_sessions(&fx)[0];
    assert_eq!(r.get_attr("from"), Some(ME));
    assert_eq!(r.get_attr("id"), Some("q1"));
    let q = r.get_child("query", ns::DISCO_INFO).expect("query");
    let id = q.get_child("identity", ns::DISCO_INFO).expect("identity");
    assert_eq!(id.get_attr("category"), Some("account"));
    assert_eq!(id.get_attr("type"), Some("registered"));
    let vars: Vec<&str> = q
        .children()
        .filter(|f| f.name() == "feature")
        .filter_map(|f| f.get_attr("var"))
        .collect();
    assert_eq!(vars, account_features(true));
    for f in [
        ns::ROSTER_VER,
        ns::BLOCKING,
        ns::DISCO_INFO,
        ns::PRE_APPROVAL,
    ] {
        assert!(vars.contains(&f), "{f}");
    }
    assert!(!account_features(false).contains(&ns::PRE_APPROVAL));
}

#[test]
fn odd_input_never_panics() {
    let mut c = setup();
    let before = c.data.clone();
    let inputs = [
        Element::new("presence", ns::CLIENT)
            .attr("from", "::")
            .attr("to", "@@"),
        Element::new("message", ns::CLIENT)
            .attr("from", "x@y")
            .attr("to", "alice@example.com/"),
        Element::new("iq", ns::CLIENT).attr("from", "x@y"),
        Element::new("foo", ns::CLIENT).attr("from", "x@y"),
        Element::new("message", "urn:other").attr("from", "x@y"),
        Element::new("presence", ns::CLIENT)
            .attr("from", ME)
            .attr("type", "subscribe"),
    ];
    for input in inputs {
        let fx = c.from_outside(input.clone(), 0);
        assert!(
            fx.is_empty(),
            "{} -> {:?}",
            input.to_xml_string(),
            summary(&fx)
        );
        let fx = c.from_client("a", input.clone(), 0);
        check_persist(&fx);
    }
    assert_eq!(c.data, before);
}

#[test]
fn server_namespace_is_delivered_as_client() {
    let mut c = setup();
    let m = Element::new("message", ns::SERVER)
        .attr("from", "bob@x.org/p")
        .attr("to", ME)
        .attr("type", "chat")
        .child(Element::new("body", ns::SERVER).text_node("hi"))
        .child(Element::new("x", "urn:x").child(Element::new("y", ns::SERVER)));
    let fx = c.from_outside(m, 0);
    let (res, got) = to_sessions(&fx)[0];
    assert_eq!(res, "a");
    assert_eq!(
        got.to_xml_string(),
        "<message xmlns='jabber:client' from='bob@x.org/p' to='alice@example.com' type='chat'>\
         <body>hi</body><x xmlns='urn:x'><y xmlns='jabber:client'/></x></message>"
    );
    // Offline storage recognises the body too.
    let mut c = core();
    let m = Element::new("message", ns::SERVER)
        .attr("from", "bob@x.org/p")
        .attr("to", ME)
        .child(Element::new("body", ns::SERVER).text_node("hi"));
    assert_eq!(summary(&c.from_outside(m, 0)), ["persist"]);
}
