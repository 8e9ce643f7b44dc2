//! Server transaction tables.

use std::time::{Duration, Instant};

use super::tests::{request, summary};
use super::*;
use crate::message::{Method, Request, Response};

/// Inputs of the server tables.
#[derive(Debug, Clone, Copy)]
enum In {
    /// The TU sends this status.
    Respond(u16),
    /// The request arrives again.
    Retransmit,
    /// An ACK arrives.
    Ack,
    /// Timer fired at t0 + ms.
    Timer(TimerKind, u64),
    TransportError,
}

fn apply(t: &mut ServerTransaction, req: &Request, input: In, t0: Instant) -> Vec<Action> {
    let now = t0 + Duration::from_millis(10);
    match input {
        In::Respond(s) => t.respond(Response::for_request(req, s, None), now),
        In::Retransmit => t.on_request(req.clone(), now),
        In::Ack => {
            let mut ack = req.clone();
            ack.method = Method::Ack;
            ack.headers.set("CSeq", "7 ACK");
            t.on_request(ack, now)
        }
        In::Timer(k, ms) => t.on_timer(k, t0 + Duration::from_millis(ms)),
        In::TransportError => t.on_transport_error(now),
    }
}

#[allow(clippy::type_complexity)]
type Row<'a> = (&'a str, Config, &'a [In], In, ServerState, &'a [&'a str]);

fn run_rows(method: Method, rows: &[Row]) {
    for (name, config, prelude, input, state, want) in rows {
        let t0 = Instant::now();
        let req = request(method.clone(), "z9hG4bKsrv");
        let (mut t, _) = ServerTransaction::new(req.clone(), *config, t0);
        for p in *prelude {
            apply(&mut t, &req, *p, t0);
        }
        let out = apply(&mut t, &req, *input, t0);
        assert_eq!(summary(&out, t0), *want, "{name}");
        assert_eq!(t.state(), *state, "{name}");
    }
}

#[test]
fn server_transactions_start_by_delivering() {
    let t0 = Instant::now();
    let (t, out) =
        ServerTransaction::new(request(Method::Invite, "z9hG4bK1"), Config::default(), t0);
    assert_eq!(t.state(), ServerState::Proceeding);
    assert_eq!(summary(&out, t0), ["send 100", "deliver INVITE"]);
    let quiet = Config {
        send_trying: false,
        ..Config::default()
    };
    let (_, out) = ServerTransaction::new(request(Method::Invite, "z9hG4bK1"), quiet, t0);
    assert_eq!(summary(&out, t0), ["deliver INVITE"]);
    let (t, out) =
        ServerTransaction::new(request(Method::Message, "z9hG4bK2"), Config::default(), t0);
    assert_eq!(t.state(), ServerState::Trying);
    assert_eq!(summary(&out, t0), ["deliver MESSAGE"]);
}

#[test]
fn server_invite_table() {
    use In::*;
    use ServerState as S;
    use TimerKind as K;
    let d = Config::default();
    let quiet = Config {
        send_trying: false,
        ..d
    };
    let i5 = Config {
        timer_i: Duration::from_secs(5),
        ..d
    };
    let rows: &[Row] = &[
        (
            "Proceeding 180",
            d,
            &[],
            Respond(180),
            S::Proceeding,
            &["send 180"],
        ),
        (
            "Proceeding 200",
            d,
            &[],
            Respond(200),
            S::Accepted,
            &["send 200", "timer L +32010ms"],
        ),
        (
            "Proceeding 486",
            d,
            &[],
            Respond(486),
            S::Completed,
            &["send 486", "timer H +32010ms"],
        ),
        (
            "Proceeding retransmit: 100 again",
            d,
            &[],
            Retransmit,
            S::Proceeding,
            &["send 100"],
        ),
        (
            "Proceeding retransmit: last 1xx",
            d,
            &[Respond(180)],
            Retransmit,
            S::Proceeding,
            &["send 180"],
        ),
        (
            "Proceeding retransmit, nothing sent",
            quiet,
            &[],
            Retransmit,
            S::Proceeding,
            &[],
        ),
        ("Proceeding ACK ignored", d, &[], Ack, S::Proceeding, &[]),
        (
            "Proceeding transport error",
            d,
            &[],
            TransportError,
            S::Terminated,
            &["terminated TransportError"],
        ),
        (
            "Completed retransmit: final again",
            d,
            &[Respond(486)],
            Retransmit,
            S::Completed,
            &["send 486"],
        ),
        (
            "Completed ACK, I=0",
            d,
            &[Respond(486)],
            Ack,
            S::Terminated,
            &["terminated Completed"],
        ),
        (
            "Completed ACK, I=5s",
            i5,
            &[Respond(486)],
            Ack,
            S::Confirmed,
            &["timer I +5010ms"],
        ),
        (
            "Completed timer H",
            d,
            &[Respond(486)],
            Timer(K::H, 32_010),
            S::Terminated,
            &["terminated Timeout"],
        ),
        (
            "Completed timer H early",
            d,
            &[Respond(486)],
            Timer(K::H, 32_009),
            S::Completed,
            &[],
        ),
        (
            "Completed second final dropped",
            d,
            &[Respond(486)],
            Respond(500),
            S::Completed,
            &[],
        ),
        (
            "Completed transport error",
            d,
            &[Respond(486)],
            TransportError,
            S::Terminated,
            &["terminated TransportError"],
        ),
        (
            "Confirmed absorbs ACK",
            i5,
            &[Respond(486), Ack],
            Ack,
            S::Confirmed,
            &[],
        ),
        (
            "Confirmed absorbs INVITE",
            i5,
            &[Respond(486), Ack],
            Retransmit,
            S::Confirmed,
            &[],
        ),
        (
            "Confirmed: H disarmed",
            i5,
            &[Respond(486), Ack],
            Timer(K::H, 32_010),
            S::Confirmed,
            &[],
        ),
        (
            "Confirmed timer I",
            i5,
            &[Respond(486), Ack],
            Timer(K::I, 5_010),
            S::Terminated,
            &["terminated Completed"],
        ),
        (
            "Accepted TU 2xx retransmission",
            d,
            &[Respond(200)],
            Respond(200),
            S::Accepted,
            &["send 200"],
        ),
        (
            "Accepted absorbs INVITE",
            d,
            &[Respond(200)],
            Retransmit,
            S::Accepted,
            &[],
        ),
        (
            "Accepted passes ACK to TU",
            d,
            &[Respond(200)],
            Ack,
            S::Accepted,
            &["deliver ACK"],
        ),
        (
            "Accepted 486 dropped",
            d,
            &[Respond(200)],
            Respond(486),
            S::Accepted,
            &[],
        ),
        (
            "Accepted timer L",
            d,
            &[Respond(200)],
            Timer(K::L, 32_010),
            S::Terminated,
            &["terminated Completed"],
        ),
        (
            "Terminated drops responses",
            d,
            &[TransportError],
            Respond(200),
            S::Terminated,
            &[],
        ),
    ];
    run_rows(Method::Invite, rows);
}

#[test]
fn server_non_invite_table() {
    use In::*;
    use ServerState as S;
    use TimerKind as K;
    let d = Config::default();
    let j5 = Config {
        timer_j: Duration::from_secs(5),
        ..d
    };
    let rows: &[Row] = &[
        (
            "Trying 100",
            d,
            &[],
            Respond(100),
            S::Proceeding,
            &["send 100"],
        ),
        (
            "Trying 200, J=0",
            d,
            &[],
            Respond(200),
            S::Terminated,
            &["send 200", "terminated Completed"],
        ),
        (
            "Trying 403, J=5s",
            j5,
            &[],
            Respond(403),
            S::Completed,
            &["send 403", "timer J +5010ms"],
        ),
        (
            "Trying absorbs retransmission",
            d,
            &[],
            Retransmit,
            S::Trying,
            &[],
        ),
        (
            "Trying transport error",
            d,
            &[],
            TransportError,
            S::Terminated,
            &["terminated TransportError"],
        ),
        (
            "Proceeding retransmit: last 1xx",
            d,
            &[Respond(100)],
            Retransmit,
            S::Proceeding,
            &["send 100"],
        ),
        (
            "Proceeding 1xx",
            d,
            &[Respond(100)],
            Respond(183),
            S::Proceeding,
            &["send 183"],
        ),
        (
            "Proceeding final",
            d,
            &[Respond(100)],
            Respond(202),
            S::Terminated,
            &["send 202", "terminated Completed"],
        ),
        (
            "Completed retransmit: final again",
            j5,
            &[Respond(200)],
            Retransmit,
            S::Completed,
            &["send 200"],
        ),
        (
            "Completed second final dropped",
            j5,
            &[Respond(200)],
            Respond(500),
            S::Completed,
            &[],
        ),
        (
            "Completed timer J",
            j5,
            &[Respond(200)],
            Timer(K::J, 5_010),
            S::Terminated,
            &["terminated Completed"],
        ),
        (
            "Completed stray timer H",
            j5,
            &[Respond(200)],
            Timer(K::H, 99_000),
            S::Completed,
            &[],
        ),
        (
            "Terminated ignores retransmissions",
            d,
            &[Respond(200)],
            Retransmit,
            S::Terminated,
            &[],
        ),
    ];
    run_rows(Method::Subscribe, rows);
}

#[test]
fn a_response_to_a_retransmission_is_the_same_bytes() {
    let t0 = Instant::now();
    let req = request(Method::Message, "z9hG4bKb");
    let (mut t, _) = ServerTransaction::new(
        req.clone(),
        Config {
            timer_j: Duration::from_secs(1),
            ..Config::default()
        },
        t0,
    );
    let ok = Response::for_request(&req, 200, None).header("Contact", "<sip:herald.example>");
    let first = t.respond(ok, t0);
    let again = t.on_request(req, t0);
    assert_eq!(first[0], again[0]);
}
