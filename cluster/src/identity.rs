//! Who is calling: with mutual TLS between nodes, each node's certificate (issued by the
//! cluster CA) names its node id as a URI subject alternative name, [`node_uri`]. The
//! node-to-node service checks that what a caller claims (the `from` of a Raft message or a
//! routed item, the id it joins as) is what its certificate says, and that membership and
//! write RPCs come from members.

use tonic::{Request, Status};

/// The URI SAN that names node `id` in its cluster certificate.
pub fn node_uri(id: u64) -> String {
    format!("urn:herald:node:{id}")
}

/// The node id a DER certificate names (its `urn:herald:node:N` URI SAN), if exactly one.
pub fn node_id_of(cert_der: &[u8]) -> Option<u64> {
    use x509_parser::extensions::GeneralName;
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der).ok()?;
    let san = cert.subject_alternative_name().ok()??;
    let mut ids = san.value.general_names.iter().filter_map(|n| match n {
        GeneralName::URI(u) => u.strip_prefix("urn:herald:node:")?.parse::<u64>().ok(),
        _ => None,
    });
    let id = ids.next()?;
    (ids.next().is_none() && id > 0).then_some(id)
}

/// The calling node as its client certificate names it. `Ok(None)` when node-to-node TLS is
/// off (token-only, loopback); an error when it is on and the certificate names no node.
pub fn caller<T>(req: &Request<T>, required: bool) -> Result<Option<u64>, Status> {
    if !required {
        return Ok(None);
    }
    let certs = req
        .peer_certs()
        .ok_or_else(|| Status::unauthenticated("node-to-node call without a client certificate"))?;
    let leaf = certs
        .first()
        .ok_or_else(|| Status::unauthenticated("node-to-node call without a client certificate"))?;
    node_id_of(leaf.as_ref()).map(Some).ok_or_else(|| {
        Status::unauthenticated(
            "the client certificate names no node (expected one URI SAN urn:herald:node:<id>)",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert_with_sans(sans: Vec<rcgen::SanType>) -> Vec<u8> {
        let mut params = rcgen::CertificateParams::new(vec!["n.example".into()]).unwrap();
        params.subject_alt_names.extend(sans);
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    fn uri(s: &str) -> rcgen::SanType {
        rcgen::SanType::URI(s.try_into().unwrap())
    }

    #[test]
    fn the_node_uri_names_the_node() {
        assert_eq!(
            node_id_of(&cert_with_sans(vec![uri(&node_uri(3))])),
            Some(3)
        );
        assert_eq!(node_id_of(&cert_with_sans(vec![])), None);
        assert_eq!(
            node_id_of(&cert_with_sans(vec![uri("urn:herald:node:x")])),
            None
        );
        assert_eq!(
            node_id_of(&cert_with_sans(vec![uri("urn:herald:node:0")])),
            None
        );
        // Two node names: ambiguous, refused.
        let two = cert_with_sans(vec![uri(&node_uri(1)), uri(&node_uri(2))]);
        assert_eq!(node_id_of(&two), None);
    }

    #[test]
    fn garbage_is_no_identity() {
        assert_eq!(node_id_of(b"not a certificate"), None);
        assert_eq!(node_uri(7), "urn:herald:node:7");
    }
}
