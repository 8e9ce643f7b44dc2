use super::*;

#[test]
fn builds_and_parses_back() {
    let docs = [
        Presence::new("sip:alice@herald.example", Basic::Open, None, vec![]),
        Presence::new(
            "sip:alice@herald.example",
            Basic::Open,
            Some("In a call <with> \"Bob\" & co\r\n🦀"),
            vec![Activity::OnThePhone, Activity::Busy],
        ),
        Presence::new(
            "pres:bob@partner.example",
            Basic::Closed,
            Some("Out of office"),
            vec![
                Activity::Away,
                Activity::Vacation,
                Activity::Other("Gardening & <stuff>".into()),
            ],
        ),
        Presence {
            entity: "sip:carol@herald.example".into(),
            tuples: vec![
                Tuple {
                    id: "t1".into(),
                    basic: Some(Basic::Closed),
                    contact: Some("sip:carol@10.0.0.9".into()),
                    notes: vec![],
                },
                Tuple {
                    id: "t2".into(),
                    basic: Some(Basic::Open),
                    contact: None,
                    notes: vec!["mobile".into(), "second".into()],
                },
            ],
            notes: vec!["document note".into()],
            person: Some(Person {
                id: "p9".into(),
                activities: vec![Activity::Meeting],
                notes: vec![],
            }),
        },
    ];
    for p in docs {
        let xml = p.to_xml();
        let back = Presence::parse(xml.as_bytes()).unwrap_or_else(|e| panic!("{e}: {xml}"));
        assert_eq!(back, p, "{xml}");
    }
}

#[test]
fn summary_accessors() {
    let busy = Presence::new(
        "sip:a@b",
        Basic::Open,
        Some("In a meeting"),
        vec![Activity::Meeting, Activity::Busy],
    );
    assert_eq!(busy.basic(), Basic::Open);
    assert_eq!(busy.note(), Some("In a meeting"));
    assert_eq!(busy.activities(), [Activity::Meeting, Activity::Busy]);
    let xml = busy.to_xml();
    assert!(
        xml.contains("<rpid:activities><rpid:meeting/><rpid:busy/></rpid:activities>"),
        "{xml}"
    );
    assert!(xml.contains("<tuple id=\"herald\"><status><basic>open</basic></status><note>In a meeting</note></tuple>"));

    let offline = Presence::new("sip:a@b", Basic::Closed, None, vec![]);
    assert_eq!(offline.basic(), Basic::Closed);
    assert_eq!(offline.note(), None);
    assert!(offline.person.is_none());
    assert!(offline.activities().is_empty());
    assert!(Presence::parse(offline.to_xml().as_bytes())
        .unwrap()
        .person
        .is_none());
}

#[test]
fn reads_foreign_documents_ignoring_extensions() {
    // Shaped like what Lync / Skype for Business and Kamailio's presence module send.
    let doc = r#"<?xml version="1.0" encoding="utf-8"?>
<presence xmlns="urn:ietf:params:xml:ns:pidf"
    xmlns:ep="urn:ietf:params:xml:ns:pidf:status:rpid"
    xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model"
    xmlns:r="urn:ietf:params:xml:ns:pidf:rpid"
    xmlns:c="urn:ietf:params:xml:ns:pidf:cipid"
    entity="sip:bob@partner.example">
  <tuple id="0x1a2b">
    <status><basic> open </basic><ep:activities><ep:activity>busy</ep:activity></ep:activities></status>
    <contact priority="0.8">sip:bob@partner.example</contact>
    <note xml:lang="en">Busy</note>
    <timestamp>2026-01-01T10:00:00Z</timestamp>
  </tuple>
  <dm:person id="p">
    <r:activities><r:on-the-phone/><r:future-thing/><x:y xmlns:x="urn:x"/></r:activities>
    <c:display-name>Bob</c:display-name>
    <dm:note>On the phone</dm:note>
  </dm:person>
  <dm:device id="d1"><dm:deviceID>urn:x</dm:deviceID></dm:device>
</presence>"#;
    let p = Presence::parse(doc.as_bytes()).unwrap();
    assert_eq!(p.entity, "sip:bob@partner.example");
    assert_eq!(p.basic(), Basic::Open);
    assert_eq!(p.tuples[0].id, "0x1a2b");
    assert_eq!(
        p.tuples[0].contact.as_deref(),
        Some("sip:bob@partner.example")
    );
    assert_eq!(p.tuples[0].notes, ["Busy"]);
    assert_eq!(p.note(), Some("On the phone"));
    assert_eq!(p.activities(), [Activity::OnThePhone]);

    let body = crate::codec::samples::NOTIFY
        .split("\r\n\r\n")
        .nth(1)
        .unwrap();
    let p = Presence::parse(body.as_bytes()).unwrap();
    assert_eq!(p.entity, "sip:alice@herald.example");
    assert_eq!((p.basic(), p.note()), (Basic::Open, Some("In a call")));
    assert_eq!(p.activities(), [Activity::Busy]);

    // Activities outside a person are not the person's.
    let stray = format!(
        "<presence xmlns='{NS_PIDF}' xmlns:r='{NS_RPID}' entity='sip:a@b'><tuple id='t'>\
         <r:activities><r:busy/></r:activities></tuple></presence>"
    );
    let p = Presence::parse(stray.as_bytes()).unwrap();
    assert!(p.activities().is_empty());
    assert_eq!(p.tuples[0].basic, None);
    assert_eq!(p.basic(), Basic::Closed);
}

#[test]
fn refuses_bad_documents() {
    let ok = Presence::new("sip:a@b", Basic::Open, Some("n"), vec![Activity::Away]).to_xml();
    type Check = fn(&PidfError) -> bool;
    let cases: Vec<(String, Check)> = vec![
        (ok[..ok.len() - 20].to_string(), |e| {
            matches!(e, PidfError::Xml(_))
        }),
        (
            "<!DOCTYPE lol [<!ENTITY a 'aaaa'>]><presence/>".into(),
            |e| matches!(e, PidfError::Xml(_)),
        ),
        (
            format!("<presence xmlns='{NS_PIDF}' entity='sip:a@b'>&lol;</presence>"),
            |e| matches!(e, PidfError::Xml(_)),
        ),
        ("<presence entity='sip:a@b'/>".into(), |e| {
            *e == PidfError::NotPidf("root is not pidf:presence")
        }),
        (format!("<presence xmlns='{NS_PIDF}'/>"), |e| {
            *e == PidfError::NotPidf("presence without entity")
        }),
        (
            format!(
                "<presence xmlns='{NS_PIDF}' entity='e'>{}</presence>",
                "<x>".repeat(20) + &"</x>".repeat(20)
            ),
            |e| *e == PidfError::TooDeep(16),
        ),
        (
            format!(
                "<presence xmlns='{NS_PIDF}' entity='e'>{}</presence>",
                "<tuple id='t'/>".repeat(65)
            ),
            |e| *e == PidfError::TooManyItems(64),
        ),
        (
            format!(
                "<presence xmlns='{NS_PIDF}' entity='e'><note>{}</note></presence>",
                "n".repeat(70_000)
            ),
            |e| *e == PidfError::TooLarge(65_536),
        ),
        (String::new(), |e| {
            matches!(e, PidfError::Xml(_) | PidfError::NotPidf(_))
        }),
    ];
    for (doc, check) in cases {
        let e = Presence::parse(doc.as_bytes()).unwrap_err();
        assert!(check(&e), "{e:?} for {}", &doc[..doc.len().min(80)]);
    }
}

#[test]
fn every_truncation_fails_cleanly() {
    let xml = Presence::new("sip:a@b", Basic::Open, Some("ça"), vec![Activity::Busy]).to_xml();
    for cut in 0..xml.len() - 1 {
        // Cut anywhere, even inside a UTF-8 character: an error, never a panic.
        assert!(
            Presence::parse(&xml.as_bytes()[..cut]).is_err(),
            "cut {cut}"
        );
    }
}

#[test]
fn activity_names() {
    for (a, n) in ACTIVITIES {
        assert_eq!(a.name(), *n);
        assert_eq!(Activity::from_name(n).as_ref(), Some(a));
    }
    assert_eq!(Activity::Other("x".into()).name(), "other");
    assert_eq!(Activity::from_name("other"), None);
}
