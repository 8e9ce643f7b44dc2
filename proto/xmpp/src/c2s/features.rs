//! Stream features and the SASL / STARTTLS elements the server sends (RFC 6120 §4.3, §5, §6).

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use crate::element::Element;
use crate::ns;
use crate::sasl::Mechanism;

/// `<stream:features>` offering only STARTTLS, required.
pub fn starttls_required() -> Element {
    Element::new("features", ns::STREAM)
        .child(Element::new("starttls", ns::TLS).child(Element::new("required", ns::TLS)))
}

/// `<stream:features>` with the SASL mechanisms; PLAIN only when `tls` is up. With
/// `starttls`, STARTTLS is offered too (not required).
pub fn mechanisms(offered: &[Mechanism], tls: bool, starttls: bool) -> Element {
    let mut mechs = Element::new("mechanisms", ns::SASL);
    for m in offered {
        if *m == Mechanism::Plain && !tls {
            continue;
        }
        mechs.push(Element::new("mechanism", ns::SASL).text_node(m.name()));
    }
    let mut f = Element::new("features", ns::STREAM);
    if starttls {
        f.push(Element::new("starttls", ns::TLS));
    }
    f.child(mechs)
}

/// The mechanisms [`mechanisms`] offers.
pub fn offered(offered: &[Mechanism], tls: bool) -> impl Iterator<Item = Mechanism> + '_ {
    offered
        .iter()
        .copied()
        .filter(move |m| tls || *m != Mechanism::Plain)
}

/// `<stream:features>` after authentication: bind, optional session, and `extra`.
pub fn after_auth(extra: &[Element]) -> Element {
    let mut f = Element::new("features", ns::STREAM)
        .child(Element::new("bind", ns::BIND))
        .child(Element::new("session", ns::SESSION).child(Element::new("optional", ns::SESSION)));
    for e in extra {
        f.push(e.clone());
    }
    f
}

/// A SASL element (`challenge`, `success`) carrying `data` in base64; empty data is "=" in
/// a challenge and nothing in a success (RFC 6120 §6.4.2, §6.4.6).
pub fn sasl_data(name: &str, data: &[u8]) -> Element {
    let e = Element::new(name, ns::SASL);
    if data.is_empty() {
        if name == "success" {
            e
        } else {
            e.text_node("=")
        }
    } else {
        e.text_node(STANDARD.encode(data))
    }
}

/// `<failure><condition/></failure>` in the SASL namespace.
pub fn sasl_failure(condition: &str) -> Element {
    Element::new("failure", ns::SASL).child(Element::new(condition, ns::SASL))
}

/// Decodes the base64 text of `<auth/>` or `<response/>`: empty text is no data, "=" is
/// empty data. None when it is not base64.
pub fn decode_sasl_text(text: &str) -> Option<Vec<u8>> {
    let t: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    if t.is_empty() || t == "=" {
        return Some(Vec::new());
    }
    STANDARD.decode(t.as_bytes()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_is_never_offered_without_tls() {
        let all = [Mechanism::ScramSha256, Mechanism::Plain];
        let f = mechanisms(&all, false, true);
        let xml = f.to_xml_string();
        assert!(!xml.contains("PLAIN"), "{xml}");
        assert!(xml.contains("<starttls"));
        assert!(mechanisms(&all, true, false)
            .to_xml_string()
            .contains("PLAIN"));
        assert_eq!(
            offered(&all, false).collect::<Vec<_>>(),
            vec![Mechanism::ScramSha256]
        );
    }

    #[test]
    fn sasl_base64_rules() {
        let table: &[(&str, Option<&[u8]>)] = &[
            ("", Some(b"")),
            ("=", Some(b"")),
            ("AGEAYg==", Some(b"\0a\0b")),
            ("AGEA\n Yg==", Some(b"\0a\0b")),
            ("!!", None),
        ];
        for (text, want) in table {
            assert_eq!(decode_sasl_text(text).as_deref(), *want, "{text:?}");
        }
        assert_eq!(sasl_data("challenge", b"").text(), "=");
        assert_eq!(sasl_data("success", b"").text(), "");
        assert_eq!(sasl_data("success", b"v=1").text(), "dj0x");
    }
}
