//! The subscription table, scenario by scenario, with an in-memory [`Env`].

use std::collections::HashMap;
use std::time::{Duration, Instant};

use herald_sip::{Decoder, Frame, HeaderName, Limits, Message, Request, Response};
use herald_xmpp::{ns, Element, Jid};

use super::*;
use crate::sip::edge::Local;

struct TestEnv {
    relations: HashMap<(String, String), Relation>,
    wants: bool,
    n: u32,
    local: Local,
    /// Email for federation: local user → the address they federate as.
    mail: HashMap<String, String>,
}

impl TestEnv {
    fn new() -> TestEnv {
        TestEnv {
            relations: HashMap::new(),
            wants: true,
            n: 0,
            local: Local {
                host: "10.0.0.1".into(),
                port: 5060,
            },
            mail: HashMap::new(),
        }
    }
}

impl Env for TestEnv {
    fn relation(&self, user: &Jid, watcher: &Jid) -> Relation {
        self.relations
            .get(&(user.to_string(), watcher.to_string()))
            .copied()
            .unwrap_or(Relation::Unknown)
    }
    fn wants(&self, _: &Jid, _: &Jid) -> bool {
        self.wants
    }
    fn route(&self, domain: &str) -> Option<Hop> {
        (domain == "sip.test").then(|| Hop {
            host: "proxy.sip.test".into(),
            port: 5061,
            tls: true,
        })
    }
    fn token(&mut self) -> String {
        self.n += 1;
        format!("t{}", self.n)
    }
    fn local(&self) -> &Local {
        &self.local
    }
    fn tls_port(&self) -> Option<u16> {
        Some(5061)
    }
    fn address_of(&self, user: &Jid) -> Jid {
        self.mail
            .get(&user.bare().to_string())
            .map(|m| jid(m))
            .unwrap_or_else(|| user.bare())
    }
}

fn parse(text: &str) -> Request {
    let mut d = Decoder::new(Limits::default());
    d.feed(text.as_bytes());
    match d.next() {
        Ok(Some(Frame::Message(Message::Request(r)))) => r,
        other => panic!("not a request: {other:?}"),
    }
}

fn subscribe(to_tag: Option<&str>, extra: &str) -> Request {
    let to_tag = to_tag.map(|t| format!(";tag={t}")).unwrap_or_default();
    parse(&format!(
        "SUBSCRIBE sip:alice@h.test SIP/2.0\r\nVia: SIP/2.0/TLS 10.9.9.9:5061;branch=z9hG4bKs\r\n\
         Max-Forwards: 70\r\nFrom: <sip:bob@sip.test>;tag=bt\r\nTo: <sip:alice@h.test>{to_tag}\r\n\
         Call-ID: call-1\r\nCSeq: 1 SUBSCRIBE\r\nContact: <sip:bob@10.9.9.9:5061;transport=tls>\r\n\
         Record-Route: <sip:proxy.sip.test:5061;transport=tls;lr>\r\n{extra}Content-Length: 0\r\n\r\n"
    ))
}

fn jid(s: &str) -> Jid {
    Jid::parse(s).unwrap()
}

fn sent(actions: &[Action]) -> Vec<&Request> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send { request, .. } => Some(request),
            _ => None,
        })
        .collect()
}

fn stanzas(actions: &[Action]) -> Vec<&Element> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Xmpp(e) => Some(e),
            _ => None,
        })
        .collect()
}

fn state(r: &Request) -> String {
    r.headers
        .get(&HeaderName::SubscriptionState)
        .unwrap_or("")
        .to_string()
}

fn body(r: &Request) -> String {
    String::from_utf8_lossy(&r.body).to_string()
}

fn presence(from: &str, to: &str, typ: Option<&str>, show: Option<&str>) -> Element {
    let mut p = Element::new("presence", ns::CLIENT)
        .attr("from", from)
        .attr("to", to);
    if let Some(t) = typ {
        p.set_attr("type", t);
    }
    if let Some(s) = show {
        p.push(Element::new("show", ns::CLIENT).text_node(s));
    }
    p
}

/// Answers every NOTIFY in `actions` with 200; returns what follows (owed NOTIFYs).
fn ok_all(t: &mut Table, env: &mut TestEnv, actions: &[Action]) -> Vec<Action> {
    let mut out = Vec::new();
    for a in actions {
        if let Action::Send { request, key, .. } = a {
            if request.method.as_str() == "NOTIFY" {
                let r = Response::for_request(request, 200, None);
                out.extend(t.on_response(key, &r, Instant::now(), env));
            }
        }
    }
    out
}

fn to_tag(r: &Response) -> String {
    r.headers.to().unwrap().tag().unwrap().to_string()
}

#[test]
fn unknown_watcher_waits_pending_until_the_user_decides() {
    let mut t = Table::new();
    let mut env = TestEnv::new();
    let now = Instant::now();
    let (bob, alice) = (jid("bob@sip.test"), jid("alice@h.test"));
    let (resp, actions) = t.on_subscribe(
        &subscribe(None, "Event: presence\r\n"),
        &bob,
        &alice,
        true,
        now,
        &mut env,
    );
    assert_eq!(resp.status, 202);
    assert_eq!(resp.headers.get(&HeaderName::Expires), Some("3600"));
    assert!(resp
        .headers
        .get(&HeaderName::Contact)
        .unwrap()
        .contains("transport=tls"));
    let tag = to_tag(&resp);
    let reqs = sent(&actions);
    assert_eq!(reqs.len(), 1);
    assert!(state(reqs[0]).starts_with("pending"), "{}", state(reqs[0]));
    assert!(reqs[0].body.is_empty(), "a pending NOTIFY shows nothing");
    // In the dialog: To carries bob's tag, the route set is the Record-Route, the target bob.
    assert!(reqs[0]
        .headers
        .get(&HeaderName::To)
        .unwrap()
        .contains("tag=bt"));
    assert!(reqs[0]
        .headers
        .get(&HeaderName::From)
        .unwrap()
        .contains(&format!("tag={tag}")));
    assert!(reqs[0]
        .headers
        .get(&HeaderName::Route)
        .unwrap()
        .contains("proxy.sip.test"));
    assert_eq!(
        reqs[0].uri.to_string(),
        "sip:bob@10.9.9.9:5061;transport=tls"
    );
    match &actions[0] {
        Action::Send { hop, .. } => assert_eq!(
            (hop.host.as_str(), hop.port, hop.tls),
            ("proxy.sip.test", 5061, true)
        ),
        other => panic!("{other:?}"),
    }
    let xs = stanzas(&actions);
    assert_eq!(xs.len(), 1);
    assert_eq!(xs[0].get_attr("type"), Some("subscribe"));
    assert_eq!(xs[0].get_attr("from"), Some("bob@sip.test"));
    assert_eq!(t.counts().inbound_pending, 1);
    assert!(ok_all(&mut t, &mut env, &actions).is_empty());

    // Presence before the decision does not leak.
    let a = t.on_xmpp(
        &presence("alice@h.test/pc", "bob@sip.test", None, None),
        now,
        &mut env,
    );
    assert!(sent(&a).is_empty());

    // The user approves: active, with the presence known so far.
    let a = t.on_xmpp(
        &presence("alice@h.test", "bob@sip.test", Some("subscribed"), None),
        now,
        &mut env,
    );
    let reqs = sent(&a);
    assert_eq!(reqs.len(), 1);
    assert!(
        state(reqs[0]).starts_with("active;expires="),
        "{}",
        state(reqs[0])
    );
    assert!(
        body(reqs[0]).contains("<basic>open</basic>"),
        "{}",
        body(reqs[0])
    );
    assert_eq!(t.counts().inbound_active, 1);
    assert!(ok_all(&mut t, &mut env, &a).is_empty());

    // A change: Do Not Disturb reaches SIP as busy.
    let a = t.on_xmpp(
        &presence("alice@h.test/pc", "bob@sip.test", None, Some("dnd")),
        now,
        &mut env,
    );
    assert!(body(sent(&a)[0]).contains("busy"), "{}", body(sent(&a)[0]));
    assert!(ok_all(&mut t, &mut env, &a).is_empty());
    // Offline: closed.
    let a = t.on_xmpp(
        &presence("alice@h.test/pc", "bob@sip.test", Some("unavailable"), None),
        now,
        &mut env,
    );
    assert!(body(sent(&a)[0]).contains("<basic>closed</basic>"));

    // While a NOTIFY is unanswered the next one waits, and changes in between coalesce
    // (RFC 6665 §4.2.2): two changes, then the answer, then one NOTIFY with the newest state.
    let a1 = t.on_xmpp(
        &presence("alice@h.test/pc", "bob@sip.test", None, Some("away")),
        now,
        &mut env,
    );
    let a2 = t.on_xmpp(
        &presence("alice@h.test/pc", "bob@sip.test", None, None),
        now,
        &mut env,
    );
    assert!(
        sent(&a1).is_empty() && sent(&a2).is_empty(),
        "{a1:?} {a2:?}"
    );
    let follow = ok_all(&mut t, &mut env, &a);
    assert_eq!(sent(&follow).len(), 1);
    let newest = body(sent(&follow)[0]);
    assert!(
        newest.contains("<basic>open</basic>") && !newest.contains("away"),
        "{newest}"
    );
    assert!(ok_all(&mut t, &mut env, &follow).is_empty());

    // The user cancels: terminated;reason=rejected, and the subscription is gone.
    let a = t.on_xmpp(
        &presence("alice@h.test", "bob@sip.test", Some("unsubscribed"), None),
        now,
        &mut env,
    );
    assert_eq!(state(sent(&a)[0]), "terminated;reason=rejected");
    assert_eq!(t.counts(), Counts::default());
}

#[test]
fn blocked_watcher_is_accepted_and_sees_offline() {
    let mut t = Table::new();
    let mut env = TestEnv::new();
    env.relations.insert(
        ("alice@h.test".into(), "bob@sip.test".into()),
        Relation::Blocked,
    );
    let now = Instant::now();
    let (bob, alice) = (jid("bob@sip.test"), jid("alice@h.test"));
    let (resp, actions) = t.on_subscribe(
        &subscribe(None, "Event: presence\r\n"),
        &bob,
        &alice,
        true,
        now,
        &mut env,
    );
    assert_eq!(resp.status, 200);
    assert!(stanzas(&actions).is_empty(), "the user is not troubled");
    let reqs = sent(&actions);
    assert!(state(reqs[0]).starts_with("active"));
    assert!(body(reqs[0]).contains("<basic>closed</basic>"));
    assert!(ok_all(&mut t, &mut env, &actions).is_empty());
    // Whatever the user does, the watcher sees offline.
    let a = t.on_xmpp(
        &presence("alice@h.test/pc", "bob@sip.test", None, None),
        now,
        &mut env,
    );
    assert!(body(sent(&a)[0]).contains("<basic>closed</basic>"));
}

#[test]
fn allowed_watcher_gets_the_probe_answer_or_offline_after_a_bound() {
    let mut t = Table::new();
    let mut env = TestEnv::new();
    env.relations.insert(
        ("alice@h.test".into(), "bob@sip.test".into()),
        Relation::Allowed,
    );
    let now = Instant::now();
    let (bob, alice) = (jid("bob@sip.test"), jid("alice@h.test"));
    let (resp, actions) = t.on_subscribe(
        &subscribe(None, "Event: presence\r\n"),
        &bob,
        &alice,
        false,
        now,
        &mut env,
    );
    assert_eq!(resp.status, 200);
    assert!(resp
        .headers
        .get(&HeaderName::Contact)
        .unwrap()
        .contains("transport=tcp"));
    assert!(sent(&actions).is_empty());
    assert_eq!(stanzas(&actions)[0].get_attr("type"), Some("probe"));
    // Nothing yet before the bound; then a closed NOTIFY.
    assert!(t
        .tick(now + Duration::from_millis(500), &mut env)
        .is_empty());
    let a = t.tick(now + FIRST_NOTIFY_WAIT, &mut env);
    assert!(body(sent(&a)[0]).contains("<basic>closed</basic>"));
    assert!(ok_all(&mut t, &mut env, &a).is_empty());
    // The answer comes: open, away.
    let a = t.on_xmpp(
        &presence("alice@h.test/pc", "bob@sip.test", None, Some("away")),
        now,
        &mut env,
    );
    assert!(body(sent(&a)[0]).contains("away"));
}

#[test]
fn refresh_unsubscribe_expiry_and_unknown_dialogs() {
    let mut t = Table::new();
    let mut env = TestEnv::new();
    env.relations.insert(
        ("alice@h.test".into(), "bob@sip.test".into()),
        Relation::Blocked,
    );
    let now = Instant::now();
    let (bob, alice) = (jid("bob@sip.test"), jid("alice@h.test"));
    let (resp, first) = t.on_subscribe(
        &subscribe(None, "Event: presence\r\nExpires: 600\r\n"),
        &bob,
        &alice,
        true,
        now,
        &mut env,
    );
    assert_eq!(resp.headers.get(&HeaderName::Expires), Some("600"));
    assert!(ok_all(&mut t, &mut env, &first).is_empty());
    let tag = to_tag(&resp);
    // Refresh in the dialog.
    let (r, a) = t.on_subscribe(
        &subscribe(Some(&tag), "Event: presence\r\nExpires: 900\r\n"),
        &bob,
        &alice,
        true,
        now,
        &mut env,
    );
    assert_eq!(r.status, 200);
    assert!(state(sent(&a)[0]).starts_with("active;expires=9"));
    // An unknown dialog.
    let (r, _) = t.on_subscribe(
        &subscribe(Some("nope"), "Event: presence\r\n"),
        &bob,
        &alice,
        true,
        now,
        &mut env,
    );
    assert_eq!(r.status, 481);
    // Expiry: terminated;reason=timeout.
    let a = t.tick(now + Duration::from_secs(901), &mut env);
    assert_eq!(state(sent(&a)[0]), "terminated;reason=timeout");
    assert_eq!(t.counts(), Counts::default());
    // Unsubscribe (Expires: 0) in a new dialog.
    let (resp, _) = t.on_subscribe(
        &subscribe(None, "Event: presence\r\n"),
        &bob,
        &alice,
        true,
        now,
        &mut env,
    );
    let tag = to_tag(&resp);
    let (r, a) = t.on_subscribe(
        &subscribe(Some(&tag), "Event: presence\r\nExpires: 0\r\n"),
        &bob,
        &alice,
        true,
        now,
        &mut env,
    );
    assert_eq!(r.status, 200);
    assert_eq!(state(sent(&a)[0]), "terminated;reason=timeout");
    assert_eq!(t.counts(), Counts::default());
}

#[test]
fn bad_subscribes_get_their_status() {
    let mut t = Table::new();
    let mut env = TestEnv::new();
    let now = Instant::now();
    let (bob, alice) = (jid("bob@sip.test"), jid("alice@h.test"));
    for (extra, want) in [
        ("Event: dialog\r\n", 489),
        ("", 489),
        ("Event: presence\r\nExpires: 10\r\n", 423),
        ("Event: presence\r\nAccept: text/html\r\n", 406),
        ("Event: presence\r\nExpires: x\r\n", 400),
    ] {
        let (r, a) = t.on_subscribe(&subscribe(None, extra), &bob, &alice, true, now, &mut env);
        assert_eq!(r.status, want, "{extra:?}");
        assert!(a.is_empty());
    }
    assert_eq!(t.counts(), Counts::default());
}

fn notify(call_id: &str, to_tag: &str, sub_state: &str, pidf: Option<&str>) -> Request {
    let (ct, b) = match pidf {
        Some(b) => (
            "Content-Type: application/pidf+xml\r\n".to_string(),
            b.to_string(),
        ),
        None => (String::new(), String::new()),
    };
    parse(&format!(
        "NOTIFY sip:alice@10.0.0.1:5061;transport=tls SIP/2.0\r\nVia: SIP/2.0/TLS 10.9.9.9:5061;branch=z9hG4bKn\r\n\
         Max-Forwards: 70\r\nFrom: <sip:bob@sip.test>;tag=bt\r\nTo: <sip:alice@h.test>;tag={to_tag}\r\n\
         Call-ID: {call_id}\r\nCSeq: 1 NOTIFY\r\nContact: <sip:bob@10.9.9.9:5061;transport=tls>\r\n\
         Event: presence\r\nSubscription-State: {sub_state}\r\n{ct}Content-Length: {}\r\n\r\n{b}",
        b.len()
    ))
}

const BUSY: &str = r#"<?xml version="1.0"?><presence xmlns="urn:ietf:params:xml:ns:pidf" xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model" xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid" entity="sip:bob@sip.test"><tuple id="a"><status><basic>open</basic></status></tuple><dm:person id="p"><rpid:activities><rpid:busy/></rpid:activities></dm:person></presence>"#;

#[test]
fn a_local_user_watches_a_sip_user() {
    let mut t = Table::new();
    let mut env = TestEnv::new();
    let now = Instant::now();
    let a = t.on_xmpp(
        &presence("alice@h.test", "bob@sip.test", Some("subscribe"), None),
        now,
        &mut env,
    );
    let (req, key) = match &a[..] {
        [Action::Send { request, key, hop }] => {
            assert!(hop.tls);
            (request.clone(), key.clone())
        }
        other => panic!("{other:?}"),
    };
    assert_eq!(req.method.as_str(), "SUBSCRIBE");
    assert_eq!(req.uri.to_string(), "sip:bob@sip.test");
    assert_eq!(req.headers.get(&HeaderName::Event), Some("presence"));
    assert_eq!(req.headers.get(&HeaderName::Expires), Some("3600"));
    assert!(req
        .headers
        .get(&HeaderName::Via)
        .unwrap()
        .starts_with("SIP/2.0/TLS 10.0.0.1:5061"));
    assert!(req
        .headers
        .get(&HeaderName::Route)
        .unwrap()
        .contains("proxy.sip.test:5061;transport=tls;lr"));
    let call_id = req.headers.call_id().unwrap().to_string();
    let our_tag = req.headers.from().unwrap().tag().unwrap().to_string();
    assert_eq!(t.counts().outbound, 1);
    // A second subscribe while in flight sends nothing new.
    let again = t.on_xmpp(
        &presence("alice@h.test", "bob@sip.test", Some("subscribe"), None),
        now,
        &mut env,
    );
    assert!(sent(&again).is_empty());

    // 200 OK: the dialog is confirmed; the refresh comes at 4/5 of the granted time.
    let ok = Response::for_request(&req, 200, Some("OK")).header(HeaderName::Expires, "600");
    let mut ok = ok;
    ok.headers.set(HeaderName::To, "<sip:bob@sip.test>;tag=bt");
    assert!(t.on_response(&key, &ok, now, &mut env).is_empty());

    // A NOTIFY for another dialog: 481.
    let (r, _) = t.on_notify(
        &notify("other", &our_tag, "active", None),
        true,
        now,
        &mut env,
    );
    assert_eq!(r.status, 481);
    // Active with a busy document: subscribed, then away "Busy" (the Lync table).
    let (r, a) = t.on_notify(
        &notify(&call_id, &our_tag, "active;expires=600", Some(BUSY)),
        true,
        now,
        &mut env,
    );
    assert_eq!(r.status, 200);
    let xs = stanzas(&a);
    assert_eq!(xs[0].get_attr("type"), Some("subscribed"));
    assert_eq!(xs[0].get_attr("to"), Some("alice@h.test"));
    assert_eq!(xs[1].get_attr("from"), Some("bob@sip.test"));
    let shown = xs[1].to_xml_string();
    assert!(
        shown.contains("<show>away</show>") && shown.contains("Busy"),
        "{shown}"
    );
    // The user's home probes at login: the last presence comes back at once.
    let a = t.on_xmpp(
        &presence("alice@h.test", "bob@sip.test", Some("probe"), None),
        now,
        &mut env,
    );
    assert_eq!(stanzas(&a).len(), 1);
    // A malformed document: 400, nothing delivered.
    let (r, a) = t.on_notify(
        &notify(&call_id, &our_tag, "active", Some("<presence")),
        true,
        now,
        &mut env,
    );
    assert_eq!(r.status, 400);
    assert!(a.is_empty());

    // Refresh before expiry, inside the dialog (bob's tag, CSeq 2).
    let a = t.tick(now + Duration::from_secs(481), &mut env);
    let refresh = sent(&a)[0];
    assert!(refresh
        .headers
        .get(&HeaderName::To)
        .unwrap()
        .contains("tag=bt"));
    assert_eq!(refresh.headers.cseq().unwrap().seq, 2);

    // The contact's side ends it with rejected: unavailable, then unsubscribed.
    let (_, a) = t.on_notify(
        &notify(&call_id, &our_tag, "terminated;reason=rejected", None),
        true,
        now,
        &mut env,
    );
    let types: Vec<_> = stanzas(&a)
        .iter()
        .map(|e| e.get_attr("type").unwrap_or(""))
        .collect();
    assert_eq!(types, ["unavailable", "unsubscribed"]);
    assert_eq!(t.counts().outbound, 0);
}

#[test]
fn refused_and_failed_outbound_subscriptions() {
    let mut t = Table::new();
    let mut env = TestEnv::new();
    let now = Instant::now();
    // No route: nothing sent, nothing kept.
    let a = t.on_xmpp(
        &presence(
            "alice@h.test",
            "carol@nowhere.test",
            Some("subscribe"),
            None,
        ),
        now,
        &mut env,
    );
    assert!(a.is_empty());
    assert_eq!(t.counts().outbound, 0);
    // 403: the user is told unsubscribed.
    let a = t.on_xmpp(
        &presence("alice@h.test", "bob@sip.test", Some("subscribe"), None),
        now,
        &mut env,
    );
    let Action::Send { request, key, .. } = &a[0] else {
        panic!()
    };
    let a = t.on_response(
        key,
        &Response::for_request(request, 403, None),
        now,
        &mut env,
    );
    assert_eq!(stanzas(&a)[0].get_attr("type"), Some("unsubscribed"));
    assert_eq!(t.counts().outbound, 0);
    // A timeout (408 from the link): tried again after the retry delay.
    let a = t.on_xmpp(
        &presence("alice@h.test", "bob@sip.test", Some("subscribe"), None),
        now,
        &mut env,
    );
    let Action::Send { request, key, .. } = &a[0] else {
        panic!()
    };
    assert!(t
        .on_response(
            key,
            &Response::for_request(request, 408, None),
            now,
            &mut env
        )
        .is_empty());
    assert!(t.tick(now + Duration::from_secs(1), &mut env).is_empty());
    assert_eq!(sent(&t.tick(now + RETRY, &mut env)).len(), 1);
    // The user no longer wants it: the next due refresh ends it instead.
    env.wants = false;
    let a = t.on_xmpp(
        &presence("alice@h.test", "bob@sip.test", Some("unsubscribe"), None),
        now,
        &mut env,
    );
    assert!(a.is_empty(), "never confirmed: dropped without a request");
    assert_eq!(t.counts().outbound, 0);
}

#[test]
fn shutdown_deactivates_every_inbound_subscription() {
    let mut t = Table::new();
    let mut env = TestEnv::new();
    env.relations.insert(
        ("alice@h.test".into(), "bob@sip.test".into()),
        Relation::Blocked,
    );
    let now = Instant::now();
    let (bob, alice) = (jid("bob@sip.test"), jid("alice@h.test"));
    t.on_subscribe(
        &subscribe(None, "Event: presence\r\n"),
        &bob,
        &alice,
        true,
        now,
        &mut env,
    );
    let a = t.deactivate_all(now, &mut env);
    assert_eq!(state(sent(&a)[0]), "terminated;reason=deactivated");
    assert_eq!(t.counts(), Counts::default());
}

#[test]
fn pidf_states_map_back_through_the_lync_table() {
    let p = herald_sip::pidf::Presence::parse(BUSY.as_bytes()).unwrap();
    assert_eq!(
        from_pidf(&p).state,
        herald_federation::availability::State::Busy
    );
    let closed =
        herald_sip::pidf::Presence::new("sip:b@s", herald_sip::pidf::Basic::Closed, None, vec![]);
    assert_eq!(
        from_pidf(&closed).state,
        herald_federation::availability::State::Offline
    );
    let open = herald_sip::pidf::Presence::new(
        "sip:b@s",
        herald_sip::pidf::Basic::Open,
        Some("lunch"),
        vec![],
    );
    let a = from_pidf(&open);
    assert_eq!(a.state, herald_federation::availability::State::Available);
    assert_eq!(a.status.as_deref(), Some("lunch"));
}

mod broadcast;
mod sessions;
