//! RFC 6121 §4: broadcast, probes, unavailable, directed presence, inbound presence.

use super::*;
use crate::im::presence::priority_of;
use crate::im::subscription::SubState;

/// Contacts in every useful state; blk@x is blocked.
fn contacts() -> UserCore {
    let mut c = core();
    for (jid, st) in [
        ("to@x", SubState::To),
        ("from@x", SubState::From),
        ("both@x", SubState::Both),
        ("none@x", SubState::NonePendingOut),
        ("blk@x", SubState::Both),
    ] {
        c.data.roster.push(item(jid, st));
    }
    c.data.blocked.push("blk@x".into());
    c
}

#[test]
fn initial_then_subsequent_presence() {
    let mut c = contacts();
    c.session_bound("a");
    let fx = c.from_client("a", avail(1), 0);
    assert_eq!(
        summary(&fx),
        [
            "route presence[probe] alice@example.com->to@x",
            "route presence[probe] alice@example.com->both@x",
            "route presence[] alice@example.com/a->from@x",
            "route presence[] alice@example.com/a->both@x",
            "a <= presence[] alice@example.com/a->alice@example.com/a",
        ]
    );
    assert!(c.sessions["a"].available);
    assert_eq!(c.sessions["a"].priority, 1);
    let stored = c.sessions["a"].presence.clone().unwrap_or_default();
    assert_eq!(stored.get_attr("to"), None);
    // A second resource: probes again, and it learns the first resource's presence.
    c.session_bound("b");
    let fx = c.from_client("b", avail(-1), 0);
    assert_eq!(
        summary(&fx),
        [
            "route presence[probe] alice@example.com->to@x",
            "route presence[probe] alice@example.com->both@x",
            "route presence[] alice@example.com/b->from@x",
            "route presence[] alice@example.com/b->both@x",
            "a <= presence[] alice@example.com/b->alice@example.com/a",
            "b <= presence[] alice@example.com/b->alice@example.com/b",
            "b <= presence[] alice@example.com/a->alice@example.com/b",
        ]
    );
    // Subsequent presence: no probes.
    let fx = c.from_client("a", avail(5), 0);
    assert_eq!(
        summary(&fx),
        [
            "route presence[] alice@example.com/a->from@x",
            "route presence[] alice@example.com/a->both@x",
            "a <= presence[] alice@example.com/a->alice@example.com/a",
            "b <= presence[] alice@example.com/a->alice@example.com/b",
        ]
    );
    assert_eq!(c.sessions["a"].priority, 5);
}

#[test]
fn unavailable_reaches_subscribers_directed_and_own_resources() {
    let mut c = contacts();
    online(&mut c, "a", 0);
    online(&mut c, "b", 0);
    // Directed presence: tracked unless the target is a subscriber anyway (§4.6.2).
    let fx = c.from_client("a", pres("", "dir@y/r", ""), 0);
    assert_eq!(
        summary(&fx),
        ["route presence[] alice@example.com/a->dir@y/r"]
    );
    let fx = c.from_client("a", pres("", "from@x/r", ""), 0);
    assert_eq!(
        summary(&fx),
        ["route presence[] alice@example.com/a->from@x/r"]
    );
    assert_eq!(c.directed["a"].len(), 1);
    let fx = c.from_client("a", pres("", "", "unavailable"), 0);
    assert_eq!(
        summary(&fx),
        [
            "a <= presence[unavailable] alice@example.com/a->alice@example.com/a",
            "route presence[unavailable] alice@example.com/a->from@x",
            "route presence[unavailable] alice@example.com/a->both@x",
            "route presence[unavailable] alice@example.com/a->dir@y/r",
            "b <= presence[unavailable] alice@example.com/a->alice@example.com/b",
        ]
    );
    assert!(!c.sessions["a"].available && c.sessions["a"].presence.is_none());
    assert!(!c.directed.contains_key("a"));
    // Already unavailable: nothing more.
    assert!(c
        .from_client("a", pres("", "", "unavailable"), 0)
        .is_empty());
    // A session that disappears.
    let fx = c.session_closed("b", 0);
    assert_eq!(
        summary(&fx),
        [
            "route presence[unavailable] alice@example.com/b->from@x",
            "route presence[unavailable] alice@example.com/b->both@x",
        ]
    );
    assert!(!c.sessions.contains_key("b"));
    // Directed presence sent while unavailable is still withdrawn when the session closes.
    c.from_client("a", pres("", "dir@y/r", ""), 0);
    let fx = c.session_closed("a", 0);
    assert_eq!(
        summary(&fx),
        ["route presence[unavailable] alice@example.com/a->dir@y/r"]
    );
}

#[test]
fn directed_presence_variants() {
    let mut c = contacts();
    online(&mut c, "a", 0);
    let rows: Vec<(Element, Vec<&str>)> = vec![
        (
            pres("", "dir@y", "unavailable"),
            vec!["route presence[unavailable] alice@example.com/a->dir@y"],
        ),
        (
            pres("", "dir@y/r", "probe"),
            vec!["route presence[probe] alice@example.com->dir@y"],
        ),
        (
            pres("", "dir@y/r", "error"),
            vec!["route presence[error] alice@example.com/a->dir@y/r"],
        ),
        (pres("", "dir@y/r", "bogus"), vec![]),
        (
            pres("", "blk@x/r", ""),
            vec!["a <= presence[error] blk@x/r->alice@example.com/a !not-acceptable !blocked"],
        ),
        (
            pres("", "a b@y", ""),
            vec!["a <= presence[error] a b@y->alice@example.com/a !jid-malformed"],
        ),
        (pres("", "", "probe"), vec![]),
        (pres("", "", "error"), vec![]),
    ];
    for (input, want) in rows {
        let fx = c.from_client("a", input.clone(), 0);
        assert_eq!(summary(&fx), want, "{}", input.to_xml_string());
    }
    // Presence to the own bare JID is a broadcast.
    let fx = c.from_client("a", pres("", ME, ""), 0);
    assert_eq!(summary(&fx).len(), 3);
    // Unknown session: ignored.
    assert!(c.from_client("zzz", avail(0), 0).is_empty());
}

#[test]
fn inbound_presence_and_probes() {
    let online_a = |c: &mut UserCore| {
        online(c, "a", 0);
        c.session_bound("b");
    };
    #[rustfmt::skip]
    let rows: Vec<(bool, Element, Vec<&str>)> = vec![
        (true, pres("to@x/p", ME, ""), vec!["a <= presence[] to@x/p->alice@example.com"]),
        (true, pres("both@x/p", ME, "unavailable"), vec!["a <= presence[unavailable] both@x/p->alice@example.com"]),
        (true, pres("from@x/p", ME, ""), vec![]),
        (true, pres("none@x/p", "alice@example.com/b", ""), vec!["b <= presence[] none@x/p->alice@example.com/b"]),
        (true, pres("none@x/p", "alice@example.com/zzz", ""), vec![]),
        (true, pres("blk@x/p", ME, ""), vec![]),
        (true, pres("blk@x", ME, "probe"), vec![]),
        (true, pres("to@x/p", ME, "error"), vec![]),
        (true, pres("to@x/p", ME, "bogus"), vec![]),
        (true, pres("", ME, ""), vec![]),
        (true, pres("to@x/p", "bob@example.com", ""), vec![]),
        (true, pres("from@x", ME, "probe"), vec!["route presence[] alice@example.com/a->from@x"]),
        (false, pres("from@x", ME, "probe"), vec!["route presence[unavailable] alice@example.com->from@x"]),
        (true, pres("to@x", ME, "probe"), vec!["route presence[unsubscribed] alice@example.com->to@x"]),
        (true, pres("stranger@z", ME, "probe"), vec!["route presence[unsubscribed] alice@example.com->stranger@z"]),
    ];
    for (is_online, input, want) in rows {
        let mut c = contacts();
        if is_online {
            online_a(&mut c);
        }
        let fx = c.from_outside(input.clone(), 0);
        assert_eq!(summary(&fx), want, "{}", input.to_xml_string());
    }
    // A recipient of directed presence may probe and gets that presence.
    let mut c = contacts();
    online_a(&mut c);
    c.from_client("a", pres("", "dir@y/r", ""), 0);
    let fx = c.from_outside(pres("dir@y/r", ME, "probe"), 0);
    assert_eq!(
        summary(&fx),
        ["route presence[] alice@example.com/a->dir@y/r"]
    );
}

#[test]
fn priorities() {
    let rows = [
        (None, 0),
        (Some("5"), 5),
        (Some(" -3 "), -3),
        (Some("127"), 127),
        (Some("128"), 0),
        (Some("x"), 0),
    ];
    for (p, want) in rows {
        let mut e = pres("", "", "");
        if let Some(p) = p {
            e.push(Element::new("priority", ns::CLIENT).text_node(p));
        }
        assert_eq!(priority_of(&e), want, "{p:?}");
    }
}

#[test]
fn rebinding_a_resource_closes_the_old_session() {
    let mut c = contacts();
    online(&mut c, "a", 0);
    let fx = c.session_bound("a");
    assert_eq!(
        summary(&fx),
        [
            "route presence[unavailable] alice@example.com/a->from@x",
            "route presence[unavailable] alice@example.com/a->both@x",
        ]
    );
    assert_eq!(c.sessions["a"], Default::default());
    assert!(c.session_bound("b").is_empty());
}

/// Where a contact's shared broadcast goes, as (resource, stanza addressed to the bare JID).
fn shared_deliveries(fx: &[Effect]) -> Vec<(String, Element)> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::ToSessionShared { resource, stanza } => {
                Some((resource.clone(), stanza.addressed(&j(ME))))
            }
            Effect::ToSession { resource, stanza } => Some((resource.clone(), stanza.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn a_contacts_shared_broadcast_reaches_what_a_routed_copy_reaches() {
    use crate::im::SharedStanza;
    for contact in ["to@x", "from@x", "both@x", "none@x", "blk@x", "stranger@x"] {
        for typ in ["", "unavailable", "subscribe", "probe"] {
            let mut c = contacts();
            online(&mut c, "a", 0);
            online(&mut c, "b", 3);
            c.session_bound("quiet");
            let mut general = c.clone();
            let from = j(&format!("{contact}/phone"));
            let stanza = pres(&from.to_string(), "", typ)
                .child(Element::new("status", ns::CLIENT).text_node("busy"));
            let shared = SharedStanza::new(stanza, from);
            let fx = c.contact_presence(&shared, 0);
            let want = general.from_outside(shared.addressed(&j(ME)), 0);
            let (got, want_sessions) = (shared_deliveries(&fx), shared_deliveries(&want));
            assert_eq!(got, want_sessions, "{contact} {typ:?}");
            // Anything else (probe answers, subscription handling) is the general path's.
            assert_eq!(
                summary(&fx).len(),
                summary(&want).len(),
                "{contact} {typ:?}"
            );
            if typ.is_empty() && matches!(contact, "to@x" | "both@x") {
                assert_eq!(got.len(), 2, "both available resources, not the quiet one");
            }
        }
    }
}

#[test]
fn the_watcher_index_follows_roster_and_block_list_changes() {
    let recipients = |fx: &[Effect]| -> Vec<String> {
        fx.iter()
            .filter_map(|e| match e {
                Effect::Broadcast { to, .. } => {
                    Some(to.iter().map(|c| c.to_string()).collect::<Vec<_>>())
                }
                _ => None,
            })
            .flatten()
            .collect()
    };
    let mut c = contacts();
    online(&mut c, "a", 0);
    assert_eq!(
        recipients(&c.from_client("a", avail(1), 0)),
        ["from@x", "both@x"]
    );
    // A new subscriber, approved: it is in the next broadcast.
    c.from_outside(pres("new@x", ME, "subscribe"), 0);
    c.from_client("a", pres("", "new@x", "subscribed"), 0);
    assert_eq!(
        recipients(&c.from_client("a", avail(2), 0)),
        ["from@x", "both@x", "new@x"]
    );
    // Blocked: out of it (XEP-0191); unblocked: back.
    let block = |name: &str| {
        Element::new(name, ns::BLOCKING)
            .child(Element::new("item", ns::BLOCKING).attr("jid", "both@x"))
    };
    c.from_client("a", iq("", "set", block("block")), 0);
    assert_eq!(
        recipients(&c.from_client("a", avail(3), 0)),
        ["from@x", "new@x"]
    );
    c.from_client("a", iq("", "set", block("unblock")), 0);
    assert_eq!(
        recipients(&c.from_client("a", avail(4), 0)),
        ["from@x", "both@x", "new@x"]
    );
    // The subscription cancelled by the contact: gone.
    c.from_outside(pres("from@x", ME, "unsubscribe"), 0);
    assert_eq!(
        recipients(&c.from_client("a", avail(5), 0)),
        ["both@x", "new@x"]
    );
    // A stored copy reloaded (the actor's refresh) replaces the index too.
    let mut data = c.data.clone();
    data.roster.retain(|i| i.jid != "new@x");
    c.set_data(data);
    assert_eq!(recipients(&c.from_client("a", avail(6), 0)), ["both@x"]);
}
