use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use super::*;
use crate::sasl::StoredSecret;

/// A stand-in for SASL: the initial response (or the first response after an empty
/// challenge) is the user name; the user exists when credentials are found; the name "zed"
/// asks to be authorized as someone else.
#[derive(Debug)]
struct FakeSasl {
    authcid: String,
}

impl SaslExchange for FakeSasl {
    fn provide_credentials(&mut self, creds: Option<Credentials>) -> Result<Step, SaslError> {
        match creds {
            Some(_) => Ok(Step::Success {
                authcid: self.authcid.clone(),
                authzid: (self.authcid == "zed").then(|| "juliet@example.com".to_string()),
                additional: b"v=ok".to_vec(),
            }),
            None => Err(SaslError::NotAuthorized),
        }
    }

    fn step(&mut self, response: &[u8]) -> Result<Step, SaslError> {
        self.authcid = String::from_utf8_lossy(response).into_owned();
        Ok(Step::NeedCredentials {
            authcid: self.authcid.clone(),
        })
    }
}

fn fake_start(
    _m: Mechanism,
    initial: &[u8],
    nonce: &[u8],
) -> Result<(Box<dyn SaslExchange>, Step), SaslError> {
    assert!(nonce.len() >= 16);
    let mut ex = FakeSasl {
        authcid: String::new(),
    };
    let step = if initial.is_empty() {
        Step::Challenge(b"who?".to_vec())
    } else {
        ex.step(initial)?
    };
    Ok((Box::new(ex), step))
}

fn config() -> C2sConfig {
    C2sConfig {
        extra_features: vec![Element::new("sm", ns::SM)],
        ..C2sConfig::for_test()
    }
}

fn machine(cfg: C2sConfig) -> C2s {
    C2s::with_sasl(cfg, "s1".into(), b"0123456789abcdef".to_vec(), fake_start)
}

fn creds() -> Credentials {
    Credentials {
        scram_sha256: Some(StoredSecret::default()),
        scram_sha1: None,
    }
}

const HEADER: &str = "<?xml version='1.0'?><stream:stream to='example.com' version='1.0' \
    xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>";

fn auth(mech: &str, user: &str) -> String {
    format!(
        "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='{mech}'>{}</auth>",
        STANDARD.encode(user)
    )
}

const BIND: &str = "<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>\
    <resource>balcony</resource></bind></iq>";
const SESSION: &str =
    "<iq type='set' id='s1'><session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>";
const MESSAGE: &str = "<message to='romeo@example.net' type='chat'><body>hi</body></message>";

/// What an action must look like.
#[derive(Debug)]
enum Want {
    /// Send whose bytes contain all of these and none of the `!`-prefixed ones.
    Send(&'static [&'static str]),
    StartTls,
    Lookup(&'static str),
    Authenticated(&'static str),
    AuthFailed(&'static str),
    Bind(Option<&'static str>),
    Established(&'static str),
    Stanza(&'static str),
    Close(Option<StreamCondition>),
}

fn check(actions: &[Action], want: &[Want], ctx: &str) {
    assert_eq!(actions.len(), want.len(), "{ctx}: {actions:#?}");
    for (a, w) in actions.iter().zip(want) {
        let ok = match (a, w) {
            (Action::Send(b), Want::Send(parts)) => {
                let s = String::from_utf8_lossy(b);
                parts.iter().all(|p| match p.strip_prefix('!') {
                    Some(absent) => !s.contains(absent),
                    None => s.contains(p),
                })
            }
            (Action::StartTls, Want::StartTls) => true,
            (Action::LookupUser { domain, localpart }, Want::Lookup(l)) => {
                domain == "example.com" && localpart == l
            }
            (Action::Authenticated { jid, .. }, Want::Authenticated(j)) => jid.to_string() == *j,
            (Action::AuthFailed { condition }, Want::AuthFailed(c)) => condition == c,
            (Action::Bind { requested }, Want::Bind(r)) => requested.as_deref() == *r,
            (Action::Established { full_jid }, Want::Established(j)) => full_jid.to_string() == *j,
            (Action::Stanza(e), Want::Stanza(name)) => e.name() == *name,
            (Action::Close { error }, Want::Close(c)) => {
                error.as_ref().map(|e| e.condition.clone()) == *c
            }
            _ => false,
        };
        assert!(ok, "{ctx}: got {a:?}, want {w:?}");
    }
}

enum In {
    B(String),
    Tls,
    Creds(Option<Credentials>),
    Bound(Result<&'static str, BindError>),
}

fn b(s: &str) -> In {
    In::B(s.to_string())
}

fn feed(m: &mut C2s, input: &In, byte_by_byte: bool) -> Vec<Action> {
    match input {
        In::B(s) if byte_by_byte => s
            .as_bytes()
            .chunks(1)
            .flat_map(|c| m.handle(Input::Bytes(c)))
            .collect(),
        In::B(s) => m.handle(Input::Bytes(s.as_bytes())),
        In::Tls => m.handle(Input::TlsEstablished),
        In::Creds(c) => m.handle(Input::Credentials(c.clone())),
        In::Bound(r) => m.handle(Input::BindResult(
            r.clone().map(|j| Jid::parse(j).expect("test jid")),
        )),
    }
}

fn conversation() -> Vec<(In, Vec<Want>, State)> {
    use Want::*;
    vec![
        (
            b(HEADER),
            vec![Send(&[
                "<?xml version='1.0'?><stream:stream xmlns='jabber:client'",
                "id='s1' from='example.com' version='1.0'",
                "<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/>",
                "!mechanisms",
            ])],
            State::AwaitStartTls,
        ),
        (b(" "), vec![], State::AwaitStartTls),
        (
            b("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"),
            vec![
                Send(&["<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"]),
                StartTls,
            ],
            State::TlsHandshake,
        ),
        (In::Tls, vec![], State::AwaitHeader),
        (
            b(HEADER),
            vec![Send(&[
                "<stream:stream",
                "<mechanism>SCRAM-SHA-256</mechanism><mechanism>SCRAM-SHA-1</mechanism>\
                 <mechanism>PLAIN</mechanism>",
                "!starttls",
            ])],
            State::Authenticating,
        ),
        (
            b("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'/>"),
            vec![Send(&[
                "<challenge xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>d2hvPw==</challenge>",
            ])],
            State::Authenticating,
        ),
        (
            b("<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>bm9ib2R5</response>"),
            vec![Lookup("nobody")],
            State::AwaitCredentials,
        ),
        (
            In::Creds(None),
            vec![
                Send(&[
                    "<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/></failure>",
                ]),
                AuthFailed("not-authorized"),
            ],
            State::Authenticating,
        ),
        (
            b(&auth("SCRAM-SHA-256", "juliet")),
            vec![Lookup("juliet")],
            State::AwaitCredentials,
        ),
        (
            In::Creds(Some(creds())),
            vec![
                Send(&["<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>dj1vaw==</success>"]),
                Authenticated("juliet@example.com"),
            ],
            State::AwaitHeader,
        ),
        (
            b(HEADER),
            vec![Send(&[
                "<stream:stream",
                "<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>",
                "<session xmlns='urn:ietf:params:xml:ns:xmpp-session'><optional/></session>",
                "<sm xmlns='urn:xmpp:sm:3'/>",
                "!mechanisms",
            ])],
            State::AwaitBind,
        ),
        (b(BIND), vec![Bind(Some("balcony"))], State::Binding),
        (
            In::Bound(Err(BindError::Conflict)),
            vec![Send(&[
                "type='error'",
                "<conflict xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>",
            ])],
            State::AwaitBind,
        ),
        (b(BIND), vec![Bind(Some("balcony"))], State::Binding),
        (
            In::Bound(Ok("juliet@example.com/balcony")),
            vec![
                Send(&[
                    "<iq id='b1' type='result'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>\
                     <jid>juliet@example.com/balcony</jid></bind></iq>",
                ]),
                Established("juliet@example.com/balcony"),
            ],
            State::Established,
        ),
        (
            b(SESSION),
            vec![Send(&["<iq id='s1' type='result'/>"])],
            State::Established,
        ),
        (
            b(&format!(
                "{MESSAGE}\n<enable xmlns='urn:xmpp:sm:3'/><presence/>"
            )),
            vec![Stanza("message"), Stanza("enable"), Stanza("presence")],
            State::Established,
        ),
        (
            b("</stream:stream>"),
            vec![Send(&["</stream:stream>"]), Close(None)],
            State::Closed,
        ),
        (b(MESSAGE), vec![], State::Closed),
    ]
}

#[test]
fn full_conversation() {
    for byte_by_byte in [false, true] {
        let mut m = machine(config());
        for (i, (input, want, state)) in conversation().into_iter().enumerate() {
            let actions = feed(&mut m, &input, byte_by_byte);
            let ctx = format!("step {i} (byte by byte: {byte_by_byte})");
            check(&actions, &want, &ctx);
            assert_eq!(m.state(), state, "{ctx}");
        }
    }
}

#[test]
fn direct_tls_starts_with_mechanisms() {
    let mut m = machine(C2sConfig {
        direct_tls: true,
        ..config()
    });
    let a = m.handle(Input::Bytes(HEADER.as_bytes()));
    check(
        &a,
        &[Want::Send(&["<mechanism>PLAIN</mechanism>", "!starttls"])],
        "direct",
    );
    assert!(m.is_tls());
    assert_eq!(m.state(), State::Authenticating);
}

#[test]
fn plain_is_refused_without_tls_even_when_sasl_is_allowed() {
    let mut m = machine(C2sConfig {
        allow_plain_without_tls: true,
        ..config()
    });
    let a = m.handle(Input::Bytes(HEADER.as_bytes()));
    check(
        &a,
        &[Want::Send(&[
            "<starttls xmlns",
            "SCRAM-SHA-1",
            "!PLAIN",
            "!required",
        ])],
        "hdr",
    );
    let a = m.handle(Input::Bytes(auth("PLAIN", "juliet").as_bytes()));
    check(
        &a,
        &[
            Want::Send(&["<invalid-mechanism/>"]),
            Want::AuthFailed("invalid-mechanism"),
        ],
        "plain",
    );
}

/// Input pipelined behind a bind request waits for the bind result.
#[test]
fn waits_for_the_caller_while_binding() {
    let mut m = machine(config());
    for input in [
        b(HEADER),
        b("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"),
        In::Tls,
    ] {
        feed(&mut m, &input, false);
    }
    feed(
        &mut m,
        &b(&format!("{HEADER}{}", auth("SCRAM-SHA-1", "juliet"))),
        false,
    );
    let a = feed(&mut m, &In::Creds(Some(creds())), false);
    assert!(matches!(
        a[1],
        Action::Authenticated {
            mechanism: Mechanism::ScramSha1,
            ..
        }
    ));
    let a = feed(&mut m, &b(&format!("{HEADER}{BIND}{MESSAGE}")), false);
    check(
        &a,
        &[Want::Send(&["<bind"]), Want::Bind(Some("balcony"))],
        "bind",
    );
    let a = feed(&mut m, &In::Bound(Ok("juliet@example.com/x")), false);
    check(
        &a,
        &[
            Want::Send(&["<jid>"]),
            Want::Established("juliet@example.com/x"),
            Want::Stanza("message"),
        ],
        "after bind",
    );
}

/// Drives a fresh machine through `inputs` and returns the stream error it closed with.
fn closes_with(cfg: C2sConfig, inputs: &[In]) -> (Option<StreamCondition>, Vec<Action>) {
    let mut m = machine(cfg);
    let mut all = Vec::new();
    for i in inputs {
        all.extend(feed(&mut m, i, false));
    }
    assert_eq!(m.state(), State::Closed, "{all:#?}");
    let cond = match all.last() {
        Some(Action::Close { error }) => error.as_ref().map(|e| e.condition.clone()),
        other => panic!("last action {other:?}"),
    };
    (cond, all)
}

#[test]
fn stream_error_table() {
    use StreamCondition as C;
    let tls = || {
        vec![
            b(HEADER),
            b("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"),
            In::Tls,
            b(HEADER),
        ]
    };
    let authed = || {
        let mut v = tls();
        v.extend([
            b(&auth("PLAIN", "juliet")),
            In::Creds(Some(creds())),
            b(HEADER),
        ]);
        v
    };
    let with = |mut v: Vec<In>, more: &str| {
        v.push(b(more));
        v
    };
    let hdr = |attrs: &str| {
        b(&format!(
            "<stream:stream {attrs} xmlns:stream='http://etherx.jabber.org/streams'>"
        ))
    };
    let table: Vec<(&str, C2sConfig, Vec<In>, C)> = vec![
        (
            "unknown to",
            config(),
            vec![hdr("to='other.org' version='1.0' xmlns='jabber:client'")],
            C::HostUnknown,
        ),
        (
            "missing to",
            config(),
            vec![hdr("version='1.0' xmlns='jabber:client'")],
            C::HostUnknown,
        ),
        (
            "version 2",
            config(),
            vec![hdr("to='example.com' version='2.0' xmlns='jabber:client'")],
            C::UnsupportedVersion,
        ),
        (
            "no version",
            config(),
            vec![hdr("to='example.com' xmlns='jabber:client'")],
            C::UnsupportedVersion,
        ),
        (
            "server ns",
            config(),
            vec![hdr("to='example.com' version='1.0' xmlns='jabber:server'")],
            C::InvalidNamespace,
        ),
        ("garbage", config(), vec![b("<<<")], C::NotWellFormed),
        (
            "message before tls",
            config(),
            vec![b(HEADER), b(MESSAGE)],
            C::PolicyViolation,
        ),
        (
            "auth before tls",
            config(),
            vec![b(HEADER), b(&auth("PLAIN", "x"))],
            C::PolicyViolation,
        ),
        (
            "message before auth",
            config(),
            with(tls(), MESSAGE),
            C::NotAuthorized,
        ),
        (
            "unknown element",
            config(),
            with(tls(), "<foo xmlns='urn:x'/>"),
            C::UnsupportedStanzaType,
        ),
        (
            "unknown client element",
            config(),
            with(tls(), "<foo/>"),
            C::UnsupportedStanzaType,
        ),
        (
            "message before bind",
            config(),
            with(authed(), MESSAGE),
            C::NotAuthorized,
        ),
        (
            "auth after auth",
            config(),
            with(authed(), &auth("PLAIN", "x")),
            C::PolicyViolation,
        ),
        (
            "unknown after bind",
            config(),
            {
                let mut v = with(authed(), BIND);
                v.push(In::Bound(Ok("juliet@example.com/r")));
                v.push(b("<r xmlns='urn:x'/>"));
                v
            },
            C::UnsupportedStanzaType,
        ),
        (
            "oversized",
            C2sConfig {
                limits: Limits {
                    max_stanza_bytes: 600,
                    max_depth: 8,
                },
                ..config()
            },
            vec![
                b(HEADER),
                b(&format!("<message>{}</message>", "x".repeat(700))),
            ],
            C::PolicyViolation,
        ),
        (
            "no tls configured",
            C2sConfig {
                tls_available: false,
                ..config()
            },
            vec![b(HEADER)],
            C::InternalServerError,
        ),
        (
            "three failures",
            config(),
            {
                let mut v = tls();
                for _ in 0..3 {
                    v.push(b(&auth("PLAIN", "x")));
                    v.push(In::Creds(None));
                }
                v
            },
            C::PolicyViolation,
        ),
    ];
    for (name, cfg, inputs, want) in table {
        let (got, actions) = closes_with(cfg, &inputs);
        assert_eq!(got, Some(want.clone()), "{name}");
        let Some(Action::Send(last)) = actions.iter().rev().nth(1) else {
            panic!("{name}: no send before close");
        };
        let text = String::from_utf8_lossy(last);
        assert!(text.ends_with("</stream:stream>"), "{name}: {text}");
        assert!(
            text.contains(&format!("<{}", want.name())),
            "{name}: {text}"
        );
        // Our header always precedes the error.
        let sent: String = actions
            .iter()
            .filter_map(|a| match a {
                Action::Send(b) => Some(String::from_utf8_lossy(b).into_owned()),
                _ => None,
            })
            .collect();
        assert!(
            sent.starts_with("<?xml version='1.0'?><stream:stream"),
            "{name}: {sent}"
        );
    }
}

#[test]
fn three_failures_report_each_one() {
    let mut m = machine(config());
    for input in [
        b(HEADER),
        b("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"),
        In::Tls,
        b(HEADER),
    ] {
        feed(&mut m, &input, false);
    }
    let mut failed = 0;
    for _ in 0..3 {
        feed(&mut m, &b(&auth("SCRAM-SHA-256", "x")), false);
        let a = feed(&mut m, &In::Creds(None), false);
        failed += a
            .iter()
            .filter(|a| matches!(a, Action::AuthFailed { .. }))
            .count();
    }
    assert_eq!(failed, 3);
    assert_eq!(m.state(), State::Closed);
}

#[test]
fn abort_bad_base64_and_authzid() {
    let mut m = machine(config());
    for input in [
        b(HEADER),
        b("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"),
        In::Tls,
        b(HEADER),
    ] {
        feed(&mut m, &input, false);
    }
    let a = feed(
        &mut m,
        &b("<abort xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>"),
        false,
    );
    check(
        &a,
        &[Want::Send(&["<aborted/>"]), Want::AuthFailed("aborted")],
        "abort",
    );
    let a = feed(
        &mut m,
        &b("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>!!</auth>"),
        false,
    );
    check(
        &a,
        &[
            Want::Send(&["<incorrect-encoding/>"]),
            Want::AuthFailed("incorrect-encoding"),
        ],
        "b64",
    );
    // Two failures so far; the third closes the stream.
    feed(&mut m, &b(&auth("PLAIN", "zed")), false);
    let a = feed(&mut m, &In::Creds(Some(creds())), false);
    check(
        &a,
        &[
            Want::Send(&["<invalid-authzid/>"]),
            Want::AuthFailed("invalid-authzid"),
            Want::Send(&["<policy-violation"]),
            Want::Close(Some(StreamCondition::PolicyViolation)),
        ],
        "authzid",
    );
}

#[test]
fn server_initiated_close() {
    let mut m = machine(config());
    let a = m.close(Some(StreamError::new(StreamCondition::SystemShutdown)));
    check(
        &a,
        &[
            Want::Send(&["<stream:stream", "<system-shutdown", "</stream:stream>"]),
            Want::Close(Some(StreamCondition::SystemShutdown)),
        ],
        "close",
    );
    assert!(m.close(None).is_empty());
    assert!(m.handle(Input::Bytes(HEADER.as_bytes())).is_empty());
}

#[test]
fn starttls_without_tls_available_fails() {
    let mut m = machine(C2sConfig {
        tls_available: false,
        allow_plain_without_tls: true,
        ..config()
    });
    let a = m.handle(Input::Bytes(HEADER.as_bytes()));
    check(&a, &[Want::Send(&["<mechanisms", "!starttls"])], "hdr");
    let a = m.handle(Input::Bytes(
        b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>",
    ));
    check(
        &a,
        &[
            Want::Send(&["<failure xmlns='urn:ietf:params:xml:ns:xmpp-tls'/></stream:stream>"]),
            Want::Close(None),
        ],
        "starttls",
    );
}
