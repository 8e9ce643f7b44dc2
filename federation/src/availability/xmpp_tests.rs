use super::*;
use crate::availability::model::IN_A_MEETING;

fn presence(children: &[(&str, &str)]) -> Element {
    let mut p = Element::new("presence", ns::CLIENT);
    for (name, text) in children {
        p.push(Element::new(*name, ns::CLIENT).text_node(*text));
    }
    p
}

fn av(state: State, status: Option<&str>) -> Availability {
    Availability {
        state,
        status: status.map(str::to_owned),
        overlay: None,
    }
}

#[test]
fn reads_each_show_value() {
    let cases: Vec<(Vec<(&str, &str)>, Availability)> = vec![
        (vec![], av(State::Available, None)),
        (vec![("show", "chat")], av(State::Available, None)),
        (vec![("show", "away")], av(State::Away, None)),
        (vec![("show", " xa ")], av(State::ExtendedAway, None)),
        (vec![("show", "dnd")], av(State::DoNotDisturb, None)),
        (vec![("show", "busy")], av(State::Available, None)),
        (vec![("show", "")], av(State::Available, None)),
        (
            vec![("show", "away"), ("status", "Busy")],
            av(State::Away, Some("Busy")),
        ),
        (
            vec![("show", "away"), ("status", "Idle")],
            av(State::Away, Some("Idle")),
        ),
        (vec![("status", "  ")], av(State::Available, None)),
        (
            vec![("status", "first"), ("status", "second")],
            av(State::Available, Some("first")),
        ),
    ];
    for (children, want) in cases {
        assert_eq!(
            from_presence(&presence(&children)),
            Ok(want),
            "{children:?}"
        );
    }
}

#[test]
fn reads_unavailable_and_rejects_other_types() {
    let mut off = presence(&[("status", "gone home")]);
    off.set_attr("type", "unavailable");
    assert_eq!(
        from_presence(&off),
        Ok(av(State::Offline, Some("gone home")))
    );
    for kind in ["subscribe", "subscribed", "probe", "error", "bogus"] {
        let p = presence(&[]).attr("type", kind);
        assert_eq!(
            from_presence(&p),
            Err(WireError::NotAvailability(kind.to_owned())),
            "{kind}"
        );
    }
    let message = Element::new("message", ns::CLIENT);
    assert_eq!(
        from_presence(&message),
        Err(WireError::NotPresence("message".into()))
    );
}

#[test]
fn reads_server_namespace_presence() {
    let p = Element::new("presence", ns::SERVER)
        .child(Element::new("show", ns::SERVER).text_node("dnd"))
        .child(Element::new("status", ns::SERVER).text_node("call"));
    assert_eq!(from_presence(&p), Ok(av(State::DoNotDisturb, Some("call"))));
}

#[test]
fn xep0319_idle() {
    let idle = || Element::new("idle", IDLE_NS).attr("since", "2024-01-01T00:00:00Z");
    let cases = [
        (None, State::Idle),
        (Some("away"), State::Idle),
        (Some("chat"), State::Idle),
        (Some("xa"), State::ExtendedAway),
        (Some("dnd"), State::DoNotDisturb),
    ];
    for (show, want) in cases {
        let mut p = presence(&[]);
        if let Some(show) = show {
            p.push(Element::new("show", ns::CLIENT).text_node(show));
        }
        p.push(idle());
        assert_eq!(from_presence(&p).map(|a| a.state), Ok(want), "{show:?}");
    }
}

#[test]
fn priority() {
    let cases: Vec<(Option<&str>, Result<i8, WireError>)> = vec![
        (None, Ok(0)),
        (Some("5"), Ok(5)),
        (Some(" -128 "), Ok(-128)),
        (Some("127"), Ok(127)),
        (Some("128"), Err(WireError::BadPriority("128".into()))),
        (Some("high"), Err(WireError::BadPriority("high".into()))),
        (Some(""), Err(WireError::BadPriority(String::new()))),
    ];
    for (text, want) in cases {
        let mut p = presence(&[("show", "away")]);
        if let Some(text) = text {
            p.push(Element::new("priority", ns::CLIENT).text_node(text));
        }
        let got = from_presence_with_priority(&p).map(|(a, prio)| {
            assert_eq!(a.state, State::Away);
            prio
        });
        assert_eq!(got, want, "{text:?}");
    }
}

fn show_and_status(e: &Element) -> (Option<String>, Option<String>, Option<String>) {
    (
        e.get_attr("type").map(str::to_owned),
        e.get_child("show", ns::CLIENT).map(Element::text),
        e.get_child("status", ns::CLIENT).map(Element::text),
    )
}

#[test]
fn writes_generic_xmpp() {
    let s = |v: &str| Some(v.to_owned());
    let cases = [
        (av(State::Available, None), (None, None, None)),
        (av(State::Busy, None), (None, s("away"), s("Busy"))),
        (av(State::Busy, Some("call")), (None, s("away"), s("call"))),
        (av(State::DoNotDisturb, None), (None, s("dnd"), None)),
        (av(State::BeRightBack, None), (None, s("away"), None)),
        (
            av(State::Away, Some("lunch")),
            (None, s("away"), s("lunch")),
        ),
        (av(State::ExtendedAway, None), (None, s("xa"), None)),
        (av(State::Idle, None), (None, s("away"), s("Idle"))),
        (av(State::Offline, None), (s("unavailable"), None, None)),
        (
            av(State::Offline, Some("bye")),
            (s("unavailable"), None, s("bye")),
        ),
    ];
    for (a, want) in cases {
        let e = to_presence(&a, PeerType::GenericXmpp);
        assert!(e.is("presence", ns::CLIENT));
        assert_eq!(show_and_status(&e), want, "{a:?}");
        assert!(e
            .get_child("availability", HERALD_AVAILABILITY_NS)
            .is_none());
    }
}

#[test]
fn generic_round_trip_for_the_states_rfc6121_has() {
    for state in [
        State::Available,
        State::Away,
        State::ExtendedAway,
        State::DoNotDisturb,
        State::Offline,
    ] {
        for status in [None, Some("text")] {
            let a = av(state, status);
            let back = from_presence(&to_presence(&a, PeerType::GenericXmpp));
            assert_eq!(back, Ok(a.clone()), "{a:?}");
        }
    }
    // The rest arrive in their XMPP form (MAP-3, MAP-4, MAP-6).
    let lossy = [
        (State::Busy, av(State::Away, Some("Busy"))),
        (State::Idle, av(State::Away, Some("Idle"))),
        (State::BeRightBack, av(State::Away, None)),
    ];
    for (state, want) in lossy {
        let back = from_presence(&to_presence(&av(state, None), PeerType::GenericXmpp));
        assert_eq!(back, Ok(want), "{state}");
    }
}

#[test]
fn herald_round_trip_is_lossless() {
    for state in State::ALL {
        for overlay in [None, Some(Overlay::InAMeeting), Some(Overlay::OutOfOffice)] {
            for status in [None, Some(IN_A_MEETING)] {
                if state == State::Offline && overlay.is_some() {
                    continue; // an offline presence carries no overlay
                }
                let a = Availability {
                    state,
                    status: status.map(str::to_owned),
                    overlay,
                };
                let back = from_presence(&to_presence(&a, PeerType::Herald));
                assert_eq!(back, Ok(a.clone()), "{a:?}");
            }
        }
    }
}

#[test]
fn herald_form_still_reads_as_rfc6121_elsewhere() {
    let a = av(State::Busy, None);
    let e = to_presence(&a, PeerType::Herald);
    assert_eq!(show_and_status(&e), (None, Some("away".to_owned()), None));
    let ext = e.get_child("availability", HERALD_AVAILABILITY_NS);
    assert_eq!(ext.and_then(|x| x.get_attr("state")), Some("busy"));
}

#[test]
fn unusable_extension_falls_back_to_rfc_form() {
    let bad = [
        Element::new("availability", HERALD_AVAILABILITY_NS).attr("state", "napping"),
        Element::new("availability", HERALD_AVAILABILITY_NS),
        Element::new("availability", HERALD_AVAILABILITY_NS)
            .attr("state", "busy")
            .attr("overlay", "lunch"),
        Element::new("availability", HERALD_AVAILABILITY_NS).attr("state", "offline"),
    ];
    for ext in bad {
        let p = presence(&[("show", "xa")]).child(ext.clone());
        assert_eq!(
            from_presence(&p),
            Ok(av(State::ExtendedAway, None)),
            "{ext:?}"
        );
    }
}

#[test]
fn state_tokens_round_trip() {
    for s in State::ALL {
        assert_eq!(state_from_token(state_token(s)), Some(s));
    }
    assert_eq!(state_from_token("Busy"), None);
}

#[test]
fn table_then_wire_end_to_end() {
    use crate::availability::{MappingSet, System};
    let set = match MappingSet::defaults() {
        Ok(set) => set,
        Err(e) => panic!("built-in tables: {e}"),
    };
    let s = |v: &str| Some(v.to_owned());
    // (source system, source availability, what a third-party XMPP watcher gets on the wire)
    let cases = [
        (
            System::LyncS4b,
            av(State::Busy, None),
            (None, s("away"), s("Busy")),
        ),
        (
            System::LyncS4b,
            av(State::DoNotDisturb, None),
            (None, s("away"), s("Busy")),
        ),
        (
            System::LyncS4b,
            av(State::BeRightBack, None),
            (None, s("away"), None),
        ),
        (
            System::Jabber,
            av(State::Idle, None),
            (None, s("away"), s("Idle")),
        ),
        (
            System::Jabber,
            av(State::DoNotDisturb, None),
            (None, s("dnd"), None),
        ),
        (
            System::Webex,
            av(State::Away, Some("In a meeting")),
            (None, None, s("In a meeting")),
        ),
        (
            System::Sametime,
            av(State::Offline, None),
            (s("unavailable"), None, None),
        ),
    ];
    for (source, a, want) in cases {
        let mapped = set.map(source, System::GenericXmpp, &a);
        let wire = to_presence(&mapped, PeerType::GenericXmpp);
        assert_eq!(show_and_status(&wire), want, "{source} {a:?}");
    }
}
