//! RFC 6121 §2: roster get, set, remove, pushes and versioning.

use super::*;
use crate::im::roster::item_element;
use crate::im::subscription::SubState;

fn roster_q() -> Element {
    Element::new("query", ns::ROSTER)
}

fn set_item(attrs: &[(&str, &str)], groups: &[&str]) -> Element {
    let mut it = Element::new("item", ns::ROSTER);
    for (k, v) in attrs {
        it.set_attr(*k, *v);
    }
    for g in groups {
        it.push(Element::new("group", ns::ROSTER).text_node(*g));
    }
    iq("", "set", roster_q().child(it))
}

/// Two sessions: "a" interested and available, "b" available but never asked for the roster.
fn two() -> UserCore {
    let mut c = core();
    c.data.roster.push(item("bob@x.org", SubState::Both));
    let mut hidden = item("eve@y.net", SubState::NonePendingIn);
    hidden.in_roster = false;
    c.data.roster.push(hidden);
    c.data.roster_version = 7;
    online(&mut c, "a", 0);
    online(&mut c, "b", 0);
    c.from_client("a", iq("", "get", roster_q()), 0);
    c
}

#[test]
fn get_with_and_without_version() {
    // (ver sent by the client, items expected in the result; None = empty result)
    let rows: [(Option<&str>, Option<Vec<&str>>); 4] = [
        (None, Some(vec!["bob@x.org"])),
        (Some(""), Some(vec!["bob@x.org"])),
        (Some("3"), Some(vec!["bob@x.org"])),
        (Some("7"), None),
    ];
    for (ver, want) in rows {
        let mut c = two();
        let q = match ver {
            Some(v) => roster_q().attr("ver", v),
            None => roster_q(),
        };
        let fx = c.from_client("b", iq("", "get", q), 1);
        assert_eq!(fx.len(), 1, "{ver:?}");
        let (res, r) = to_sessions(&fx)[0];
        assert_eq!(res, "b");
        assert_eq!(brief(r).split(' ').next(), Some("iq[result]"));
        assert_eq!(r.get_attr("id"), Some("q1"));
        match want {
            None => assert_eq!(r.children().count(), 0, "{ver:?}"),
            Some(items) => {
                let q = r.get_child("query", ns::ROSTER).expect("query");
                assert_eq!(q.get_attr("ver"), Some("7"));
                let got: Vec<&str> = q.children().filter_map(|i| i.get_attr("jid")).collect();
                assert_eq!(got, items, "{ver:?}");
            }
        }
        assert!(c.sessions["b"].interested);
    }
}

#[test]
fn item_attributes() {
    let rows = [
        (
            SubState::None,
            "<item xmlns='jabber:iq:roster' jid='c@d' subscription='none'/>",
        ),
        (
            SubState::NonePendingOut,
            "<item xmlns='jabber:iq:roster' jid='c@d' subscription='none' ask='subscribe'/>",
        ),
        (
            SubState::To,
            "<item xmlns='jabber:iq:roster' jid='c@d' subscription='to'/>",
        ),
        (
            SubState::From,
            "<item xmlns='jabber:iq:roster' jid='c@d' subscription='from'/>",
        ),
        (
            SubState::Both,
            "<item xmlns='jabber:iq:roster' jid='c@d' subscription='both'/>",
        ),
    ];
    for (state, want) in rows {
        assert_eq!(item_element(&item("c@d", state)).to_xml_string(), want);
    }
    let mut it = item("c@d", SubState::None);
    it.name = "C".into();
    it.groups = vec!["g1".into()];
    it.approved = true;
    assert_eq!(
        item_element(&it).to_xml_string(),
        "<item xmlns='jabber:iq:roster' jid='c@d' subscription='none' name='C' \
         approved='true'><group>g1</group></item>"
    );
}

#[test]
fn set_adds_updates_and_pushes_to_interested_only() {
    let mut c = two();
    let fx = c.from_client(
        "b",
        set_item(
            &[("jid", "Carol@Z.org"), ("name", "Carol")],
            &["work", "friends"],
        ),
        1,
    );
    assert_eq!(
        summary(&fx),
        [
            "b <= iq[result] -->alice@example.com/b",
            "a <= iq[set] -->alice@example.com/a {query}",
            "persist",
        ]
    );
    assert_eq!(c.data.roster_version, 8);
    let (_, push) = to_sessions(&fx)[1];
    let q = push.get_child("query", ns::ROSTER).expect("query");
    assert_eq!(q.get_attr("ver"), Some("8"));
    assert_eq!(
        q.children()
            .next()
            .map(|i| i.to_xml_string())
            .unwrap_or_default(),
        "<item xmlns='jabber:iq:roster' jid='carol@z.org' subscription='none' name='Carol'>\
         <group>work</group><group>friends</group></item>"
    );
    // Update keeps the subscription; a hidden item becomes visible.
    let fx = c.from_client(
        "a",
        set_item(&[("jid", "bob@x.org"), ("name", "B")], &[]),
        2,
    );
    assert_eq!(summary(&fx).len(), 3);
    assert!(c
        .item(&j("bob@x.org"))
        .is_some_and(|i| i.sub_to && i.sub_from && i.name == "B"));
    c.from_client("a", set_item(&[("jid", "eve@y.net")], &[]), 3);
    assert!(c
        .item(&j("eve@y.net"))
        .is_some_and(|i| i.in_roster && i.pending_in));
    assert_eq!(c.data.roster_version, 10);
}

#[test]
fn set_errors() {
    let two_items = iq(
        "",
        "set",
        roster_q()
            .child(Element::new("item", ns::ROSTER).attr("jid", "x@y"))
            .child(Element::new("item", ns::ROSTER).attr("jid", "z@y")),
    );
    let long = "n".repeat(2000);
    let rows: Vec<(Element, &str)> = vec![
        (two_items, "bad-request"),
        (iq("", "set", roster_q()), "bad-request"),
        (
            set_item(&[("jid", "x@y"), ("subscription", "both")], &[]),
            "bad-request",
        ),
        (
            set_item(&[("jid", "x@y"), ("subscription", "none")], &[]),
            "bad-request",
        ),
        (set_item(&[("jid", ME)], &[]), "not-allowed"),
        (
            set_item(&[("jid", "Alice@Example.com")], &[]),
            "not-allowed",
        ),
        (set_item(&[("jid", "a b@y")], &[]), "jid-malformed"),
        (set_item(&[], &[]), "bad-request"),
        (set_item(&[("jid", "x@y/r")], &[]), "bad-request"),
        (
            set_item(&[("jid", "x@y"), ("name", &long)], &[]),
            "not-acceptable",
        ),
        (set_item(&[("jid", "x@y")], &[""]), "not-acceptable"),
        (set_item(&[("jid", "x@y")], &["g", "g"]), "bad-request"),
        (
            set_item(&[("jid", "x@y"), ("subscription", "remove")], &[]),
            "item-not-found",
        ),
        (
            set_item(&[("jid", "eve@y.net"), ("subscription", "remove")], &[]),
            "item-not-found",
        ),
    ];
    for (input, cond) in rows {
        let mut c = two();
        let before = c.data.clone();
        let fx = c.from_client("a", input.clone(), 1);
        assert_eq!(
            summary(&fx),
            [format!("a <= iq[error] -->alice@example.com/a !{cond}")],
            "{}",
            input.to_xml_string()
        );
        assert_eq!(c.data, before);
    }
    // The roster limit counts every item, hidden ones included.
    let mut c = two();
    c.limits.roster_max = 2;
    let fx = c.from_client("a", set_item(&[("jid", "x@y")], &[]), 1);
    assert_eq!(
        summary(&fx),
        ["a <= iq[error] -->alice@example.com/a !resource-constraint"]
    );
}

#[test]
fn remove_cancels_both_directions() {
    // (state, routed effects in order)
    let unav = "route presence[unavailable] alice@example.com/a->bob@x.org";
    let unsub = "route presence[unsubscribe] alice@example.com->bob@x.org";
    let unsubd = "route presence[unsubscribed] alice@example.com->bob@x.org";
    let rows: Vec<(SubState, Vec<&str>)> = vec![
        (SubState::None, vec![]),
        (SubState::NonePendingOut, vec![unsub]),
        (SubState::NonePendingIn, vec![unsubd]),
        (SubState::To, vec![unsub]),
        (
            SubState::From,
            vec![
                unav,
                "route presence[unavailable] alice@example.com/b->bob@x.org",
                unsubd,
            ],
        ),
        (
            SubState::Both,
            vec![
                unav,
                "route presence[unavailable] alice@example.com/b->bob@x.org",
                unsub,
                unsubd,
            ],
        ),
    ];
    for (state, routed) in rows {
        let mut c = two();
        c.data.roster[0] = item("bob@x.org", state);
        let fx = c.from_client(
            "a",
            set_item(&[("jid", "bob@x.org"), ("subscription", "remove")], &[]),
            1,
        );
        let mut want: Vec<String> = routed.iter().map(|s| s.to_string()).collect();
        want.push("a <= iq[result] -->alice@example.com/a".into());
        want.push("a <= iq[set] -->alice@example.com/a {query}".into());
        want.push("persist".into());
        assert_eq!(summary(&fx), want, "{state:?}");
        assert!(c.item(&j("bob@x.org")).is_none());
        let (_, push) = to_sessions(&fx)[1];
        let it = push
            .get_child("query", ns::ROSTER)
            .and_then(|q| q.children().next())
            .cloned()
            .unwrap_or_default();
        assert_eq!(it.get_attr("subscription"), Some("remove"));
        assert_eq!(c.data.roster_version, 8);
    }
}
