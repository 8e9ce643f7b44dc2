//! XEP-0191: block list, pushes, matching, polite blocking, inbound and outbound rules.

use super::*;
use crate::im::blocking::blocks;
use crate::im::subscription::SubState;

fn block_el(name: &str, jids: &[&str]) -> Element {
    let mut e = Element::new(name, ns::BLOCKING);
    for jid in jids {
        e.push(Element::new("item", ns::BLOCKING).attr("jid", *jid));
    }
    e
}

/// "a" available and asked for the block list, "b" available and did not; contacts:
/// bob@x.org (Both), carol@x.org (From), dan@y.net (To).
fn setup() -> UserCore {
    let mut c = core();
    c.data.roster.push(item("bob@x.org", SubState::Both));
    c.data.roster.push(item("carol@x.org", SubState::From));
    c.data.roster.push(item("dan@y.net", SubState::To));
    online(&mut c, "a", 0);
    online(&mut c, "b", 0);
    c.from_client(
        "a",
        iq("", "get", Element::new("blocklist", ns::BLOCKING)),
        0,
    );
    c
}

#[test]
fn matching() {
    let rows = [
        ("x.org", "bob@x.org/p", true),
        ("x.org", "x.org", true),
        ("x.org", "bob@sub.x.org", false),
        ("bob@x.org", "bob@x.org/p", true),
        ("bob@x.org", "bob@x.org", true),
        ("bob@x.org", "eve@x.org", false),
        ("bob@x.org/p", "bob@x.org/p", true),
        ("bob@x.org/p", "bob@x.org/q", false),
        ("bob@x.org/p", "bob@x.org", false),
        ("x.org/p", "x.org/p", true),
        ("x.org/p", "bob@x.org/p", false),
    ];
    for (entry, jid, want) in rows {
        assert_eq!(blocks(entry, &j(jid)), want, "{entry} vs {jid}");
    }
}

#[test]
fn get_block_unblock() {
    let mut c = setup();
    c.data.blocked.push("old.example".into());
    let fx = c.from_client(
        "a",
        iq("", "get", Element::new("blocklist", ns::BLOCKING)),
        0,
    );
    let (_, r) = to_sessions(&fx)[0];
    let list = r.get_child("blocklist", ns::BLOCKING).expect("blocklist");
    let got: Vec<&str> = list.children().filter_map(|i| i.get_attr("jid")).collect();
    assert_eq!(got, ["old.example"]);
    // Block a domain: its subscribers see the user go offline, from each resource.
    let fx = c.from_client(
        "b",
        iq("", "set", block_el("block", &["X.org", "old.example"])),
        0,
    );
    assert_eq!(
        summary(&fx),
        [
            "b <= iq[result] -->alice@example.com/b",
            "route presence[unavailable] alice@example.com/a->bob@x.org",
            "route presence[unavailable] alice@example.com/b->bob@x.org",
            "route presence[unavailable] alice@example.com/a->carol@x.org",
            "route presence[unavailable] alice@example.com/b->carol@x.org",
            "a <= iq[set] -->alice@example.com/a {block}",
            "persist",
        ]
    );
    let (_, push) = to_sessions(&fx)[1];
    let items: Vec<&str> = push
        .get_child("block", ns::BLOCKING)
        .map(|b| b.children().filter_map(|i| i.get_attr("jid")).collect())
        .unwrap_or_default();
    assert_eq!(items, ["x.org"]);
    assert_eq!(c.data.blocked, ["old.example", "x.org"]);
    // Broadcasts now skip them.
    let fx = c.from_client("a", avail(1), 0);
    assert_eq!(
        summary(&fx),
        [
            "a <= presence[] alice@example.com/a->alice@example.com/a",
            "b <= presence[] alice@example.com/a->alice@example.com/b",
        ]
    );
    // Blocking again changes nothing.
    let fx = c.from_client("a", iq("", "set", block_el("block", &["x.org"])), 0);
    assert_eq!(summary(&fx), ["a <= iq[result] -->alice@example.com/a"]);
    // Unblock: the subscribers get the current presence back.
    let fx = c.from_client(
        "a",
        iq("", "set", block_el("unblock", &["x.org", "nope.org"])),
        0,
    );
    assert_eq!(
        summary(&fx),
        [
            "a <= iq[result] -->alice@example.com/a",
            "route presence[] alice@example.com/a->bob@x.org",
            "route presence[] alice@example.com/b->bob@x.org",
            "route presence[] alice@example.com/a->carol@x.org",
            "route presence[] alice@example.com/b->carol@x.org",
            "a <= iq[set] -->alice@example.com/a {unblock}",
            "persist",
        ]
    );
    assert_eq!(c.data.blocked, ["old.example"]);
    // Unblock everything.
    let fx = c.from_client("a", iq("", "set", block_el("unblock", &[])), 0);
    assert_eq!(
        summary(&fx),
        [
            "a <= iq[result] -->alice@example.com/a",
            "a <= iq[set] -->alice@example.com/a {unblock}",
            "persist",
        ]
    );
    assert!(c.data.blocked.is_empty());
    let fx = c.from_client("a", iq("", "set", block_el("unblock", &[])), 0);
    assert_eq!(summary(&fx), ["a <= iq[result] -->alice@example.com/a"]);
}

#[test]
fn polite_blocking_of_directed_and_full_jids() {
    let mut c = setup();
    c.from_client("a", pres("", "eve@z.org/r", ""), 0);
    let fx = c.from_client(
        "a",
        iq("", "set", block_el("block", &["eve@z.org", "bob@x.org/p"])),
        0,
    );
    assert_eq!(
        summary(&fx),
        [
            "a <= iq[result] -->alice@example.com/a",
            "route presence[unavailable] alice@example.com/a->eve@z.org/r",
            "route presence[unavailable] alice@example.com/a->bob@x.org/p",
            "route presence[unavailable] alice@example.com/b->bob@x.org/p",
            "a <= iq[set] -->alice@example.com/a {block}",
            "persist",
        ]
    );
    assert!(c.directed["a"].is_empty());
}

#[test]
fn block_errors() {
    let rows: Vec<(Element, &str)> = vec![
        (block_el("block", &[]), "bad-request"),
        (block_el("block", &["a b@c"]), "jid-malformed"),
        (
            block_el("block", &["x@y", "z@y", "w@y"]),
            "resource-constraint",
        ),
        (
            Element::new("block", ns::BLOCKING).child(Element::new("item", ns::BLOCKING)),
            "bad-request",
        ),
        (block_el("unblock", &["a b@c"]), "jid-malformed"),
    ];
    for (payload, cond) in rows {
        let mut c = setup();
        c.limits.blocked_max = 2;
        let before = c.data.clone();
        let fx = c.from_client("a", iq("", "set", payload.clone()), 0);
        assert_eq!(
            summary(&fx),
            [format!("a <= iq[error] -->alice@example.com/a !{cond}")],
            "{}",
            payload.to_xml_string()
        );
        assert_eq!(c.data, before);
    }
}

#[test]
fn inbound_from_blocked() {
    let ping = Element::new("ping", ns::PING);
    #[rustfmt::skip]
    let rows: Vec<(Element, Vec<&str>)> = vec![
        (pres("bob@x.org/p", ME, ""), vec![]),
        (pres("bob@x.org", ME, "probe"), vec![]),
        (pres("bob@x.org", ME, "subscribe"), vec![]),
        (pres("bob@x.org", ME, "unsubscribe"), vec![]),
        (msg("bob@x.org/p", ME, "chat"), vec!["route message[error] alice@example.com->bob@x.org/p !service-unavailable"]),
        (msg("bob@x.org/p", "alice@example.com/a", "chat"), vec!["route message[error] alice@example.com/a->bob@x.org/p !service-unavailable"]),
        (msg("bob@x.org/p", ME, "error"), vec![]),
        (iq("alice@example.com/a", "get", ping.clone()).attr("from", "bob@x.org/p"), vec!["route iq[error] alice@example.com/a->bob@x.org/p !service-unavailable"]),
        (iq("alice@example.com/a", "result", ping).attr("from", "bob@x.org/p"), vec![]),
    ];
    for (input, want) in rows {
        let mut c = setup();
        c.data.blocked.push("x.org".into());
        let before = c.data.clone();
        let fx = c.from_outside(input.clone(), 0);
        assert_eq!(summary(&fx), want, "{}", input.to_xml_string());
        assert_eq!(c.data, before);
    }
}
