//! Certificates: parsing DER into [`CertInfo`] and chains into [`CertFacts`], and the RFC 6125
//! name rule (pure).

use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use super::facts::{CertFacts, CertInfo, ChainTop};

pub use crate::tls::name_matches;

/// Whether any name of `cert`'s SAN DNS list covers `name`.
pub fn covers(cert: &CertInfo, name: &str) -> bool {
    cert.dns_names.iter().any(|p| name_matches(p, name))
}

fn info(c: &X509Certificate<'_>) -> CertInfo {
    let mut dns_names = Vec::new();
    if let Ok(Some(san)) = c.subject_alternative_name() {
        for n in &san.value.general_names {
            if let GeneralName::DNSName(d) = n {
                dns_names.push(d.to_ascii_lowercase());
            }
        }
    }
    let common_name = c
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_string);
    CertInfo {
        subject: c.subject().to_string(),
        issuer: c.issuer().to_string(),
        dns_names,
        common_name,
        not_before: c.validity().not_before.timestamp(),
        not_after: c.validity().not_after.timestamp(),
    }
}

/// Parses one DER certificate.
pub fn parse_one(der: &[u8]) -> Result<CertInfo, String> {
    X509Certificate::from_der(der)
        .map(|(_, c)| info(&c))
        .map_err(|e| format!("unparsable certificate: {e}"))
}

/// `child` names `parent` as its issuer and carries a signature `parent`'s key verifies.
fn signed_by(child: &X509Certificate<'_>, parent: &X509Certificate<'_>) -> bool {
    child.issuer() == parent.subject() && child.verify_signature(Some(parent.public_key())).is_ok()
}

/// Parses a chain (end-entity first) and finds where it ends, against `anchors` (DER).
pub fn parse_chain(chain: &[Vec<u8>], anchors: &[Vec<u8>]) -> CertFacts {
    let mut parsed = Vec::with_capacity(chain.len());
    for (i, der) in chain.iter().enumerate() {
        match X509Certificate::from_der(der) {
            Ok((_, c)) => parsed.push(c),
            Err(e) => {
                return CertFacts {
                    error: Some(format!("certificate {} of the chain: {e}", i + 1)),
                    ..Default::default()
                }
            }
        }
    }
    let Some(last) = parsed.last() else {
        return CertFacts {
            error: Some("the node presents no certificate".into()),
            ..Default::default()
        };
    };
    let links = parsed.windows(2).map(|w| signed_by(&w[0], &w[1])).collect();
    let top = if last.issuer() == last.subject() && signed_by(last, last) {
        ChainTop::SelfSigned
    } else {
        let anchor = anchors
            .iter()
            .filter_map(|a| X509Certificate::from_der(a).ok().map(|(_, c)| c))
            .find(|a| signed_by(last, a));
        match anchor {
            Some(a) => ChainTop::Anchored(a.subject().to_string()),
            None => ChainTop::UnknownIssuer(last.issuer().to_string()),
        }
    };
    CertFacts {
        chain: parsed.iter().map(info).collect(),
        links,
        top,
        error: None,
    }
}
