//! Table tests for the `im` module, one file per feature. Effects are compared through a
//! compact one-line summary of each effect (see [`summary`]).

mod blocking;
mod iq;
mod message;
mod presence;
mod roster;
mod subscription;

use herald_grpc::config::{RosterItem, UserData};
use herald_xmpp::{ns, Element, Jid};

use super::subscription::SubState;
use super::{Effect, ImLimits, UserCore};

pub(super) const ME: &str = "alice@example.com";

pub(super) fn j(s: &str) -> Jid {
    Jid::parse(s).expect("test JID")
}

/// A user with no session.
pub(super) fn core() -> UserCore {
    UserCore::new(j(ME), UserData::default(), ImLimits::default())
}

/// A visible roster item for `jid` in `state`.
pub(super) fn item(jid: &str, state: SubState) -> RosterItem {
    let mut i = RosterItem {
        jid: jid.to_string(),
        in_roster: true,
        ..Default::default()
    };
    state.apply(&mut i);
    i
}

/// A presence stanza.
pub(super) fn pres(from: &str, to: &str, typ: &str) -> Element {
    Element::new("presence", ns::CLIENT)
        .attr_opt("from", (!from.is_empty()).then_some(from))
        .attr_opt("to", (!to.is_empty()).then_some(to))
        .attr_opt("type", (!typ.is_empty()).then_some(typ))
}

/// Available presence with a priority.
pub(super) fn avail(prio: i8) -> Element {
    pres("", "", "").child(Element::new("priority", ns::CLIENT).text_node(prio.to_string()))
}

/// A message with a body.
pub(super) fn msg(from: &str, to: &str, typ: &str) -> Element {
    Element::new("message", ns::CLIENT)
        .attr_opt("from", (!from.is_empty()).then_some(from))
        .attr_opt("to", (!to.is_empty()).then_some(to))
        .attr_opt("type", (!typ.is_empty()).then_some(typ))
        .attr("id", "m1")
        .child(Element::new("body", ns::CLIENT).text_node("hi"))
}

/// An IQ with one payload.
pub(super) fn iq(to: &str, typ: &str, payload: Element) -> Element {
    Element::new("iq", ns::CLIENT)
        .attr("id", "q1")
        .attr_opt("to", (!to.is_empty()).then_some(to))
        .attr("type", typ)
        .child(payload)
}

/// Binds `res` and sends available presence with `prio`; the effects are discarded.
pub(super) fn online(c: &mut UserCore, res: &str, prio: i8) {
    c.session_bound(res);
    c.from_client(res, avail(prio), 0);
}

/// `name[type] from->to`, then ` !condition` for errors and ` {payload}` for IQs.
pub(super) fn brief(e: &Element) -> String {
    let mut s = format!(
        "{}[{}] {}->{}",
        e.name(),
        e.get_attr("type").unwrap_or(""),
        e.get_attr("from").unwrap_or("-"),
        e.get_attr("to").unwrap_or("-")
    );
    if let Some(err) = e.get_child("error", ns::CLIENT) {
        for c in err.children() {
            s.push_str(&format!(" !{}", c.name()));
        }
    } else if e.name() == "iq" {
        if let Some(p) = e.children().next() {
            s.push_str(&format!(" {{{}}}", p.name()));
        }
    }
    s
}

/// One line per effect: `res <= stanza`, `route stanza`, `persist`.
/// A broadcast reads as one `route` per recipient, a shared stanza as the copy it stands for.
pub(super) fn summary(effects: &[Effect]) -> Vec<String> {
    effects
        .iter()
        .flat_map(|e| match e {
            Effect::ToSession { resource, stanza } => {
                vec![format!("{resource} <= {}", brief(stanza))]
            }
            Effect::ToSessionShared { resource, stanza } => {
                vec![format!("{resource} <= {} (shared)", brief(stanza.stanza()))]
            }
            Effect::Route(s) => vec![format!("route {}", brief(s))],
            Effect::Broadcast { stanza, to } => to
                .iter()
                .map(|c| format!("route {}", brief(&stanza.addressed(c))))
                .collect(),
            Effect::Persist => vec!["persist".to_string()],
        })
        .collect()
}

/// The stanzas given to sessions.
pub(super) fn to_sessions(effects: &[Effect]) -> Vec<(&str, &Element)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::ToSession { resource, stanza } => Some((resource.as_str(), stanza)),
            _ => None,
        })
        .collect()
}

/// Asserts that `effects` has at most one `Persist`, and only as the last effect.
pub(super) fn check_persist(effects: &[Effect]) {
    let n = effects.iter().filter(|e| **e == Effect::Persist).count();
    assert!(n <= 1, "more than one Persist: {:?}", summary(effects));
    if n == 1 {
        assert_eq!(effects.last(), Some(&Effect::Persist));
    }
}

#[test]
fn summary_shapes() {
    let e = vec![
        Effect::Route(pres(ME, "bob@x", "subscribe")),
        Effect::ToSession {
            resource: "r".into(),
            stanza: iq("", "get", Element::new("query", ns::ROSTER)),
        },
        Effect::Persist,
    ];
    assert_eq!(
        summary(&e),
        [
            "route presence[subscribe] alice@example.com->bob@x",
            "r <= iq[get] -->- {query}",
            "persist",
        ]
    );
    check_persist(&e);
}
