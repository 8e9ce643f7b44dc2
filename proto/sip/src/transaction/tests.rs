//! Client transaction tables, keys, ACK and CANCEL construction. Shared helpers for the
//! server tables.

use std::time::{Duration, Instant};

use super::*;
use crate::message::{Message, Method, Request, Response};
use crate::typed::Via;
use crate::uri::SipUri;

pub(super) fn request(method: Method, branch: &str) -> Request {
    Request::new(method.clone(), SipUri::new(Some("bob"), "partner.example"))
        .header(
            "Via",
            Via::new("TLS", "herald-0.herald.example", Some(5061), branch).to_string(),
        )
        .header("Max-Forwards", "70")
        .header("From", "<sip:alice@herald.example>;tag=a1")
        .header("To", "<sip:bob@partner.example>")
        .header("Call-ID", "tx-1@herald.example")
        .header("CSeq", format!("7 {method}"))
        .header("Route", "<sip:edge.partner.example;lr>")
}

pub(super) fn response_to(req: &Request, status: u16) -> Response {
    let mut r = Response::for_request(req, status, None);
    if status > 100 {
        r.headers.set("To", "<sip:bob@partner.example>;tag=b9");
    }
    r
}

/// One line per action, with timer deadlines relative to `t0`.
pub(super) fn summary(actions: &[Action], t0: Instant) -> Vec<String> {
    actions
        .iter()
        .map(|a| match a {
            Action::Send(m) => format!("send {}", label(m)),
            Action::Deliver(m) => format!("deliver {}", label(m)),
            Action::StartTimer { kind, at } => {
                format!("timer {kind:?} +{}ms", at.duration_since(t0).as_millis())
            }
            Action::Terminated(why) => format!("terminated {why:?}"),
        })
        .collect()
}

fn label(m: &Message) -> String {
    match m {
        Message::Request(r) => r.method.to_string(),
        Message::Response(r) => r.status.to_string(),
    }
}

/// Inputs of the client tables.
#[derive(Debug, Clone, Copy)]
enum In {
    Resp(u16),
    /// Timer fired at t0 + ms.
    Timer(TimerKind, u64),
    TransportError,
}

fn client_apply(t: &mut ClientTransaction, input: In, t0: Instant) -> Vec<Action> {
    match input {
        In::Resp(s) => {
            let r = response_to(t.request(), s);
            t.on_response(r, t0 + Duration::from_millis(10))
        }
        In::Timer(k, ms) => t.on_timer(k, t0 + Duration::from_millis(ms)),
        In::TransportError => t.on_transport_error(t0),
    }
}

#[test]
fn client_transactions_start_with_send_and_timeout() {
    let t0 = Instant::now();
    let (t, out) =
        ClientTransaction::new(request(Method::Invite, "z9hG4bK1"), Config::default(), t0);
    assert_eq!(t.state(), ClientState::Calling);
    assert_eq!(summary(&out, t0), ["send INVITE", "timer B +32000ms"]);
    let (t, out) = ClientTransaction::new(
        request(Method::Subscribe, "z9hG4bK2"),
        Config::default(),
        t0,
    );
    assert_eq!(t.state(), ClientState::Trying);
    assert_eq!(summary(&out, t0), ["send SUBSCRIBE", "timer F +32000ms"]);
}

#[test]
fn client_invite_table() {
    use ClientState as S;
    use In::*;
    use TimerKind as K;
    let d4 = Config {
        timer_d: Duration::from_secs(4),
        ..Config::default()
    };
    #[allow(clippy::type_complexity)]
    let rows: &[(&str, Config, &[In], In, S, &[&str])] = &[
        (
            "Calling 1xx",
            Config::default(),
            &[],
            Resp(180),
            S::Proceeding,
            &["deliver 180"],
        ),
        (
            "Calling 2xx",
            Config::default(),
            &[],
            Resp(200),
            S::Accepted,
            &["deliver 200", "timer M +32010ms"],
        ),
        (
            "Calling 486, D=0",
            Config::default(),
            &[],
            Resp(486),
            S::Terminated,
            &["send ACK", "deliver 486", "terminated Completed"],
        ),
        (
            "Calling 486, D=4s",
            d4,
            &[],
            Resp(486),
            S::Completed,
            &["send ACK", "deliver 486", "timer D +4010ms"],
        ),
        (
            "Calling timer B",
            Config::default(),
            &[],
            Timer(K::B, 32_000),
            S::Terminated,
            &["terminated Timeout"],
        ),
        (
            "Calling timer B early",
            Config::default(),
            &[],
            Timer(K::B, 31_999),
            S::Calling,
            &[],
        ),
        (
            "Calling stray timer",
            Config::default(),
            &[],
            Timer(K::M, 99_000),
            S::Calling,
            &[],
        ),
        (
            "Calling transport error",
            Config::default(),
            &[],
            TransportError,
            S::Terminated,
            &["terminated TransportError"],
        ),
        (
            "Proceeding 1xx",
            Config::default(),
            &[Resp(100)],
            Resp(183),
            S::Proceeding,
            &["deliver 183"],
        ),
        (
            "Proceeding 2xx",
            Config::default(),
            &[Resp(180)],
            Resp(200),
            S::Accepted,
            &["deliver 200", "timer M +32010ms"],
        ),
        (
            "Proceeding 603",
            Config::default(),
            &[Resp(180)],
            Resp(603),
            S::Terminated,
            &["send ACK", "deliver 603", "terminated Completed"],
        ),
        (
            "Proceeding: B no longer armed",
            Config::default(),
            &[Resp(180)],
            Timer(K::B, 40_000),
            S::Proceeding,
            &[],
        ),
        (
            "Completed 486 again",
            d4,
            &[Resp(486)],
            Resp(486),
            S::Completed,
            &["send ACK"],
        ),
        (
            "Completed 1xx ignored",
            d4,
            &[Resp(486)],
            Resp(180),
            S::Completed,
            &[],
        ),
        (
            "Completed timer D",
            d4,
            &[Resp(486)],
            Timer(K::D, 4_010),
            S::Terminated,
            &["terminated Completed"],
        ),
        (
            "Accepted 2xx again",
            Config::default(),
            &[Resp(200)],
            Resp(200),
            S::Accepted,
            &["deliver 200"],
        ),
        (
            "Accepted 486 ignored",
            Config::default(),
            &[Resp(200)],
            Resp(486),
            S::Accepted,
            &[],
        ),
        (
            "Accepted timer M",
            Config::default(),
            &[Resp(200)],
            Timer(K::M, 32_010),
            S::Terminated,
            &["terminated Completed"],
        ),
        (
            "Terminated ignores",
            Config::default(),
            &[TransportError],
            Resp(200),
            S::Terminated,
            &[],
        ),
        (
            "Terminated: no second error",
            Config::default(),
            &[Resp(486)],
            TransportError,
            S::Terminated,
            &[],
        ),
    ];
    for (name, config, prelude, input, state, want) in rows {
        let t0 = Instant::now();
        let (mut t, _) = ClientTransaction::new(request(Method::Invite, "z9hG4bKinv"), *config, t0);
        for p in *prelude {
            client_apply(&mut t, *p, t0);
        }
        let out = client_apply(&mut t, *input, t0);
        assert_eq!(summary(&out, t0), *want, "{name}");
        assert_eq!(t.state(), *state, "{name}");
    }
}

#[test]
fn client_non_invite_table() {
    use ClientState as S;
    use In::*;
    use TimerKind as K;
    let k5 = Config {
        timer_k: Duration::from_secs(5),
        ..Config::default()
    };
    #[allow(clippy::type_complexity)]
    let rows: &[(&str, Config, &[In], In, S, &[&str])] = &[
        (
            "Trying 1xx",
            Config::default(),
            &[],
            Resp(100),
            S::Proceeding,
            &["deliver 100"],
        ),
        (
            "Trying 200, K=0",
            Config::default(),
            &[],
            Resp(200),
            S::Terminated,
            &["deliver 200", "terminated Completed"],
        ),
        (
            "Trying 202, K=5s",
            k5,
            &[],
            Resp(202),
            S::Completed,
            &["deliver 202", "timer K +5010ms"],
        ),
        (
            "Trying 481",
            Config::default(),
            &[],
            Resp(481),
            S::Terminated,
            &["deliver 481", "terminated Completed"],
        ),
        (
            "Trying timer F",
            Config::default(),
            &[],
            Timer(K::F, 32_000),
            S::Terminated,
            &["terminated Timeout"],
        ),
        (
            "Trying timer F early",
            Config::default(),
            &[],
            Timer(K::F, 100),
            S::Trying,
            &[],
        ),
        (
            "Trying transport error",
            Config::default(),
            &[],
            TransportError,
            S::Terminated,
            &["terminated TransportError"],
        ),
        (
            "Proceeding 1xx",
            Config::default(),
            &[Resp(100)],
            Resp(180),
            S::Proceeding,
            &["deliver 180"],
        ),
        (
            "Proceeding final",
            Config::default(),
            &[Resp(100)],
            Resp(489),
            S::Terminated,
            &["deliver 489", "terminated Completed"],
        ),
        // Timer F keeps running in Proceeding.
        (
            "Proceeding timer F",
            Config::default(),
            &[Resp(100)],
            Timer(K::F, 32_000),
            S::Terminated,
            &["terminated Timeout"],
        ),
        (
            "Completed absorbs",
            k5,
            &[Resp(200)],
            Resp(200),
            S::Completed,
            &[],
        ),
        (
            "Completed: F disarmed",
            k5,
            &[Resp(200)],
            Timer(K::F, 32_000),
            S::Completed,
            &[],
        ),
        (
            "Completed timer K",
            k5,
            &[Resp(200)],
            Timer(K::K, 5_010),
            S::Terminated,
            &["terminated Completed"],
        ),
    ];
    for (name, config, prelude, input, state, want) in rows {
        let t0 = Instant::now();
        let (mut t, _) = ClientTransaction::new(request(Method::Notify, "z9hG4bKn"), *config, t0);
        for p in *prelude {
            client_apply(&mut t, *p, t0);
        }
        let out = client_apply(&mut t, *input, t0);
        assert_eq!(summary(&out, t0), *want, "{name}");
        assert_eq!(t.state(), *state, "{name}");
    }
}

#[test]
fn ack_for_a_failure_response() {
    let invite = request(Method::Invite, "z9hG4bKack");
    let mut invite2 = invite.clone();
    invite2
        .headers
        .push("Via", "SIP/2.0/TLS lower.example;branch=z9hG4bKlow");
    let resp = response_to(&invite2, 486);
    let t0 = Instant::now();
    let (mut t, _) = ClientTransaction::new(invite2, Config::default(), t0);
    let out = t.on_response(resp, t0);
    let Action::Send(Message::Request(ack)) = &out[0] else {
        panic!("{out:?}")
    };
    assert_eq!(ack.method, Method::Ack);
    assert_eq!(ack.uri, invite.uri);
    let h = &ack.headers;
    assert_eq!(h.vias().unwrap().len(), 1, "top Via only");
    assert_eq!(h.top_via().unwrap().branch(), Some("z9hG4bKack"));
    assert_eq!(h.to().unwrap().tag(), Some("b9"), "To from the response");
    assert_eq!(h.from().unwrap().tag(), Some("a1"));
    assert_eq!(h.cseq().unwrap().to_string(), "7 ACK");
    assert_eq!(h.routes().unwrap().len(), 1);
    assert_eq!(crate::validate(&Message::Request(ack.clone())), Ok(()));
    assert_eq!(
        TransactionKey::for_request(ack),
        TransactionKey::for_request(&invite)
    );
}

#[test]
fn cancel_matches_the_invite() {
    let invite = request(Method::Invite, "z9hG4bKc");
    let cancel = cancel_for(&invite);
    assert_eq!(cancel.headers.cseq().unwrap().to_string(), "7 CANCEL");
    assert_eq!(crate::validate(&Message::Request(cancel.clone())), Ok(()));
    assert_ne!(
        TransactionKey::for_request(&cancel),
        TransactionKey::for_request(&invite)
    );
    assert_eq!(
        TransactionKey::cancelled_invite(&cancel),
        TransactionKey::for_request(&invite)
    );
}

#[test]
fn keys_match_responses_and_retransmissions() {
    let sub = request(Method::Subscribe, "z9hG4bKk");
    let client = TransactionKey::client(&sub).unwrap();
    assert_eq!(
        TransactionKey::for_response(&response_to(&sub, 200)).unwrap(),
        client
    );
    // Same branch, other method (a CANCEL-like clash): another transaction.
    let notify = request(Method::Notify, "z9hG4bKk");
    assert_ne!(
        TransactionKey::for_response(&response_to(&notify, 200)).unwrap(),
        client
    );
    // Server side: sent-by is part of the key, case-insensitively.
    let server = TransactionKey::for_request(&sub).unwrap();
    let mut other_host = sub.clone();
    other_host
        .headers
        .set("Via", "SIP/2.0/TLS other.example:5061;branch=z9hG4bKk");
    assert_ne!(TransactionKey::for_request(&other_host).unwrap(), server);
    let mut upper = sub.clone();
    upper.headers.set(
        "Via",
        "SIP/2.0/TLS HERALD-0.herald.example:5061;branch=z9hG4bKk",
    );
    assert_eq!(TransactionKey::for_request(&upper).unwrap(), server);
    let mut no_branch = sub;
    no_branch.headers.set("Via", "SIP/2.0/TLS h");
    assert!(TransactionKey::for_request(&no_branch).is_err());
}

#[test]
fn size_pins() {
    assert!(
        std::mem::size_of::<Action>() <= 184,
        "{}",
        std::mem::size_of::<Action>()
    );
    assert!(std::mem::size_of::<ClientTransaction>() <= 304);
    assert!(std::mem::size_of::<ServerTransaction>() <= 232);
}
