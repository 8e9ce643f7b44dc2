//! RFC 6121 Appendix A (every row of A.2.1–A.3.4) and §3 behaviour.

use super::*;
use crate::im::subscription::{SubKind, SubState};
use SubKind::*;
use SubState::{
    Both, From, FromPendingOut as FPO, None as N, NonePendingIn as NPI, NonePendingOut as NPO,
    NonePendingOutIn as NPOI, To, ToPendingIn as TPI,
};

const STATES: [SubState; 9] = [N, NPO, NPI, NPOI, To, TPI, From, FPO, Both];
const BOB: &str = "bob@x.org";
const STORED: &str = "<presence xmlns='jabber:client' from='bob@x.org' to='alice@example.com' \
                      type='subscribe'/>";

#[test]
fn appendix_a_transitions() {
    // Expected new state for each of STATES, in order.
    let outbound = [
        (Subscribe, [NPO, NPO, NPOI, NPOI, To, TPI, FPO, FPO, Both]), // A.2.1
        (Unsubscribe, [N, N, NPI, NPI, N, NPI, From, From, From]),    // A.2.2
        (Subscribed, [N, NPO, From, FPO, To, Both, From, FPO, Both]), // A.2.3
        (Unsubscribed, [N, NPO, N, NPO, To, To, N, NPO, To]),         // A.2.4
    ];
    let inbound = [
        (Subscribe, [NPI, NPOI, NPI, NPOI, TPI, TPI, From, FPO, Both]), // A.3.1
        (Unsubscribe, [N, NPO, N, NPO, To, To, N, NPO, To]),            // A.3.2
        (Subscribed, [N, To, NPI, TPI, To, TPI, From, Both, Both]),     // A.3.3
        (Unsubscribed, [N, N, NPI, NPI, N, NPI, From, From, From]),     // A.3.4
    ];
    for (kind, want) in outbound {
        for (s, w) in STATES.iter().zip(want) {
            assert_eq!(s.outbound(kind), w, "outbound {kind:?} from {s:?}");
        }
    }
    for (kind, want) in inbound {
        for (s, w) in STATES.iter().zip(want) {
            assert_eq!(s.inbound(kind), w, "inbound {kind:?} from {s:?}");
        }
    }
    // The flags round-trip through a roster item.
    for s in STATES {
        assert_eq!(SubState::of(Some(&item(BOB, s))), s);
    }
    assert_eq!(SubState::of(None), N);
}

/// A user online as "r" (interested) with bob in `state`.
fn setup(state: SubState) -> UserCore {
    let mut c = core();
    let mut it = item(BOB, state);
    if it.pending_in {
        it.pending_in_stanza = STORED.to_string();
    }
    c.data.roster.push(it);
    online(&mut c, "r", 0);
    if let Some(s) = c.sessions.get_mut("r") {
        s.interested = true;
    }
    c
}

const PUSH: &str = "r <= iq[set] -->alice@example.com/r {query}";
const P: &str = "persist";
const CUR: &str = "route presence[] alice@example.com/r->bob@x.org";
const UNAV: &str = "route presence[unavailable] alice@example.com/r->bob@x.org";

fn r(kind: SubKind) -> String {
    format!(
        "route presence[{}] alice@example.com->bob@x.org",
        kind.as_str()
    )
}

fn d(kind: SubKind) -> String {
    format!(
        "r <= presence[{}] bob@x.org->alice@example.com",
        kind.as_str()
    )
}

#[test]
fn appendix_a2_outbound_effects() {
    let rr = r;
    #[rustfmt::skip]
    let rows: Vec<(SubState, SubKind, SubState, Vec<String>)> = vec![
        (N, Subscribe, NPO, vec![rr(Subscribe), PUSH.into(), P.into()]),
        (NPO, Subscribe, NPO, vec![rr(Subscribe)]),
        (NPI, Subscribe, NPOI, vec![rr(Subscribe), PUSH.into(), P.into()]),
        (NPOI, Subscribe, NPOI, vec![rr(Subscribe)]),
        (To, Subscribe, To, vec![rr(Subscribe)]),
        (TPI, Subscribe, TPI, vec![rr(Subscribe)]),
        (From, Subscribe, FPO, vec![rr(Subscribe), PUSH.into(), P.into()]),
        (FPO, Subscribe, FPO, vec![rr(Subscribe)]),
        (Both, Subscribe, Both, vec![rr(Subscribe)]),
        (N, Unsubscribe, N, vec![rr(Unsubscribe)]),
        (NPO, Unsubscribe, N, vec![rr(Unsubscribe), PUSH.into(), P.into()]),
        (NPI, Unsubscribe, NPI, vec![rr(Unsubscribe)]),
        (NPOI, Unsubscribe, NPI, vec![rr(Unsubscribe), PUSH.into(), P.into()]),
        (To, Unsubscribe, N, vec![rr(Unsubscribe), PUSH.into(), P.into()]),
        (TPI, Unsubscribe, NPI, vec![rr(Unsubscribe), PUSH.into(), P.into()]),
        (From, Unsubscribe, From, vec![rr(Unsubscribe)]),
        (FPO, Unsubscribe, From, vec![rr(Unsubscribe), PUSH.into(), P.into()]),
        (Both, Unsubscribe, From, vec![rr(Unsubscribe), PUSH.into(), P.into()]),
        // No pending request: pre-approval (§3.4), pushed with approved='true', not routed.
        (N, Subscribed, N, vec![PUSH.into(), P.into()]),
        (NPO, Subscribed, NPO, vec![PUSH.into(), P.into()]),
        (NPI, Subscribed, From, vec![rr(Subscribed), PUSH.into(), CUR.into(), P.into()]),
        (NPOI, Subscribed, FPO, vec![rr(Subscribed), PUSH.into(), CUR.into(), P.into()]),
        (To, Subscribed, To, vec![PUSH.into(), P.into()]),
        (TPI, Subscribed, Both, vec![rr(Subscribed), PUSH.into(), CUR.into(), P.into()]),
        (From, Subscribed, From, vec![]),
        (FPO, Subscribed, FPO, vec![]),
        (Both, Subscribed, Both, vec![]),
        (N, Unsubscribed, N, vec![]),
        (NPO, Unsubscribed, NPO, vec![]),
        (NPI, Unsubscribed, N, vec![rr(Unsubscribed), PUSH.into(), P.into()]),
        (NPOI, Unsubscribed, NPO, vec![rr(Unsubscribed), PUSH.into(), P.into()]),
        (To, Unsubscribed, To, vec![]),
        (TPI, Unsubscribed, To, vec![rr(Unsubscribed), PUSH.into(), P.into()]),
        (From, Unsubscribed, N, vec![UNAV.into(), rr(Unsubscribed), PUSH.into(), P.into()]),
        (FPO, Unsubscribed, NPO, vec![UNAV.into(), rr(Unsubscribed), PUSH.into(), P.into()]),
        (Both, Unsubscribed, To, vec![UNAV.into(), rr(Unsubscribed), PUSH.into(), P.into()]),
    ];
    assert_eq!(rows.len(), 36);
    for (state, kind, want_state, want) in rows {
        let mut c = setup(state);
        // A full JID as target is treated as the bare JID (§3.1.2).
        let fx = c.from_client("r", pres("", "bob@x.org/home", kind.as_str()), 1);
        assert_eq!(summary(&fx), want, "{state:?} {kind:?}");
        assert_eq!(
            SubState::of(c.item(&j(BOB))),
            want_state,
            "{state:?} {kind:?}"
        );
        check_persist(&fx);
        let it = c.item(&j(BOB)).cloned().unwrap_or_default();
        let pre_approved = kind == Subscribed && matches!(state, N | NPO | To);
        assert_eq!(it.approved, pre_approved, "{state:?} {kind:?}");
        if !it.pending_in {
            assert!(it.pending_in_stanza.is_empty());
        }
    }
}

#[test]
fn appendix_a3_inbound_effects() {
    #[rustfmt::skip]
    let rows: Vec<(SubState, SubKind, SubState, Vec<String>)> = vec![
        (N, Subscribe, NPI, vec![d(Subscribe), P.into()]),
        (NPO, Subscribe, NPOI, vec![d(Subscribe), P.into()]),
        (NPI, Subscribe, NPI, vec![d(Subscribe)]),
        (NPOI, Subscribe, NPOI, vec![d(Subscribe)]),
        (To, Subscribe, TPI, vec![d(Subscribe), P.into()]),
        (TPI, Subscribe, TPI, vec![d(Subscribe)]),
        (From, Subscribe, From, vec![r(Subscribed)]),
        (FPO, Subscribe, FPO, vec![r(Subscribed)]),
        (Both, Subscribe, Both, vec![r(Subscribed)]),
        (N, Unsubscribe, N, vec![]),
        (NPO, Unsubscribe, NPO, vec![]),
        (NPI, Unsubscribe, N, vec![PUSH.into(), d(Unsubscribe), P.into()]),
        (NPOI, Unsubscribe, NPO, vec![PUSH.into(), d(Unsubscribe), P.into()]),
        (To, Unsubscribe, To, vec![]),
        (TPI, Unsubscribe, To, vec![PUSH.into(), d(Unsubscribe), P.into()]),
        (From, Unsubscribe, N, vec![UNAV.into(), PUSH.into(), d(Unsubscribe), P.into()]),
        (FPO, Unsubscribe, NPO, vec![UNAV.into(), PUSH.into(), d(Unsubscribe), P.into()]),
        (Both, Unsubscribe, To, vec![UNAV.into(), PUSH.into(), d(Unsubscribe), P.into()]),
        (N, Subscribed, N, vec![]),
        (NPO, Subscribed, To, vec![PUSH.into(), d(Subscribed), P.into()]),
        (NPI, Subscribed, NPI, vec![]),
        (NPOI, Subscribed, TPI, vec![PUSH.into(), d(Subscribed), P.into()]),
        (To, Subscribed, To, vec![]),
        (TPI, Subscribed, TPI, vec![]),
        (From, Subscribed, From, vec![]),
        (FPO, Subscribed, Both, vec![PUSH.into(), d(Subscribed), P.into()]),
        (Both, Subscribed, Both, vec![]),
        (N, Unsubscribed, N, vec![]),
        (NPO, Unsubscribed, N, vec![PUSH.into(), d(Unsubscribed), P.into()]),
        (NPI, Unsubscribed, NPI, vec![]),
        (NPOI, Unsubscribed, NPI, vec![PUSH.into(), d(Unsubscribed), P.into()]),
        (To, Unsubscribed, N, vec![PUSH.into(), d(Unsubscribed), P.into()]),
        (TPI, Unsubscribed, NPI, vec![PUSH.into(), d(Unsubscribed), P.into()]),
        (From, Unsubscribed, From, vec![]),
        (FPO, Unsubscribed, From, vec![PUSH.into(), d(Unsubscribed), P.into()]),
        (Both, Unsubscribed, From, vec![PUSH.into(), d(Unsubscribed), P.into()]),
    ];
    assert_eq!(rows.len(), 36);
    for (state, kind, want_state, want) in rows {
        let mut c = setup(state);
        // The sender's full JID is reduced to the bare JID (§3.1.3).
        let fx = c.from_outside(pres("bob@x.org/home", ME, kind.as_str()), 1);
        assert_eq!(summary(&fx), want, "{state:?} {kind:?}");
        assert_eq!(
            SubState::of(c.item(&j(BOB))),
            want_state,
            "{state:?} {kind:?}"
        );
        check_persist(&fx);
        let it = c.item(&j(BOB)).cloned().unwrap_or_default();
        assert_eq!(
            it.pending_in_stanza.is_empty(),
            !it.pending_in,
            "{state:?} {kind:?}"
        );
    }
}

#[test]
fn unknown_contact_request_is_hidden_then_redelivered_and_approved() {
    let mut c = core();
    c.session_bound("r");
    // Offline: kept durably as a hidden item, not delivered.
    let fx = c.from_outside(pres("carol@y.net/pc", ME, "subscribe"), 1);
    assert_eq!(summary(&fx), ["persist"]);
    let it = c.item(&j("carol@y.net")).cloned().unwrap_or_default();
    assert!(it.pending_in && !it.in_roster);
    // Hidden: not in the roster result.
    let fx = c.from_client("r", iq("", "get", Element::new("query", ns::ROSTER)), 2);
    let (_, res) = to_sessions(&fx)[0];
    let q = res.get_child("query", ns::ROSTER).expect("query");
    assert_eq!(q.children().count(), 0);
    // Redelivered on the next available presence, after the user's own presence.
    let fx = c.from_client("r", avail(1), 3);
    assert_eq!(
        summary(&fx),
        [
            "r <= presence[] alice@example.com/r->alice@example.com/r",
            "r <= presence[subscribe] carol@y.net->alice@example.com",
        ]
    );
    // Approving shows the item (subscription from) and sends current presence.
    let fx = c.from_client("r", pres("", "carol@y.net", "subscribed"), 4);
    assert_eq!(
        summary(&fx),
        [
            "route presence[subscribed] alice@example.com->carol@y.net",
            "r <= iq[set] -->alice@example.com/r {query}",
            "route presence[] alice@example.com/r->carol@y.net",
            "persist",
        ]
    );
    let it = c.item(&j("carol@y.net")).cloned().unwrap_or_default();
    assert!(it.in_roster && it.sub_from && !it.pending_in && it.pending_in_stanza.is_empty());
}

#[test]
fn denying_a_hidden_request_forgets_it() {
    let mut c = core();
    online(&mut c, "r", 0);
    c.from_outside(pres("carol@y.net", ME, "subscribe"), 1);
    let fx = c.from_client("r", pres("", "carol@y.net", "unsubscribed"), 2);
    assert_eq!(
        summary(&fx),
        [
            "route presence[unsubscribed] alice@example.com->carol@y.net",
            "persist"
        ]
    );
    assert!(c.item(&j("carol@y.net")).is_none());
}

#[test]
fn pre_approved_request_is_accepted_automatically() {
    let mut c = setup(NPO);
    c.from_client("r", pres("", BOB, "subscribed"), 1);
    assert!(c.item(&j(BOB)).is_some_and(|i| i.approved));
    let fx = c.from_outside(pres(BOB, ME, "subscribe"), 2);
    assert_eq!(
        summary(&fx),
        [r(Subscribed), PUSH.into(), CUR.into(), P.into()]
    );
    let it = c.item(&j(BOB)).cloned().unwrap_or_default();
    assert_eq!(SubState::of(Some(&it)), FPO);
    assert!(!it.approved);
    // Without server support there is no pre-approval.
    let mut c = setup(N);
    c.limits.pre_approval = false;
    let fx = c.from_client("r", pres("", BOB, "subscribed"), 1);
    assert!(fx.is_empty());
    // Unsubscribed cancels a pre-approval without routing anything.
    let mut c = setup(N);
    c.from_client("r", pres("", BOB, "subscribed"), 1);
    let fx = c.from_client("r", pres("", BOB, "unsubscribed"), 2);
    assert_eq!(summary(&fx), [PUSH, P]);
    assert!(!c.item(&j(BOB)).is_some_and(|i| i.approved));
}

#[test]
fn outbound_errors_and_limits() {
    let mut c = core();
    c.limits.roster_max = 0;
    online(&mut c, "r", 0);
    let rows = [
        (
            pres("", "", "subscribe"),
            vec!["r <= presence[error] -->alice@example.com/r !bad-request"],
        ),
        (
            pres("", "a b@x", "subscribe"),
            vec!["r <= presence[error] a b@x->alice@example.com/r !jid-malformed"],
        ),
        (
            pres("", BOB, "subscribe"),
            vec!["r <= presence[error] bob@x.org->alice@example.com/r !resource-constraint"],
        ),
        (pres("", ME, "subscribe"), vec![]),
    ];
    for (input, want) in rows {
        let input = {
            let mut i = input;
            i.set_attr("from", "alice@example.com/r");
            i
        };
        let fx = c.from_client("r", input.clone(), 1);
        assert_eq!(summary(&fx), want, "{}", input.to_xml_string());
    }
    // Inbound requests over the limit are dropped, nothing stored.
    let fx = c.from_outside(pres(BOB, ME, "subscribe"), 1);
    assert!(fx.is_empty());
    assert!(c.data.roster.is_empty());
}

#[test]
fn large_requests_are_stored_without_payload() {
    let mut c = core();
    let big = pres(BOB, ME, "subscribe")
        .child(Element::new("status", ns::CLIENT).text_node("x".repeat(10_000)));
    let fx = c.from_outside(big, 1);
    assert_eq!(summary(&fx), ["persist"]);
    let it = c.item(&j(BOB)).cloned().unwrap_or_default();
    assert_eq!(
        it.pending_in_stanza,
        "<presence xmlns='jabber:client' from='bob@x.org' to='alice@example.com' type='subscribe'/>"
    );
}
