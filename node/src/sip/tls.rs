//! SIP over mutual TLS (RFC 3261 §26.3.1, the guides' "TLS peer subjects").
//!
//! Inbound (`sip_tls_port`, TLS 1.2 and 1.3): the server presents the certificate of the name
//! the peer asks for (SNI), else of the cluster's first local domain, from the same
//! [`CertStore`] as c2s and s2s. It asks every peer for a client certificate; a certificate
//! that does not chain to a trusted root (system roots, `--tls-ca`, the development CA) ends
//! the handshake with a TLS alert. After the handshake, [`judge`] decides over the stored
//! `tls-peer` subjects: with none configured, any peer goes on (the ACL still decides); with
//! some, the peer must have presented a certificate whose subject CN or a DNS SAN covers one
//! of them (RFC 6125, [`super::policy::tls_peer_match`]), else the connection is closed before
//! any SIP is read. Every refusal is logged with the peer address and counted
//! ([`super::metrics::TLS_FAILURES`] and [`super::metrics::FAILURES`]).
//!
//! Outbound (static route `--transport tls`): TLS to the next hop with SNI = the next-hop name,
//! its certificate checked against the same roots by that name (an IP next hop needs an IP
//! SAN), our own certificate presented as client certificate.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::sign::CertifiedKey;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::metrics as m;
use super::Sip;
use crate::tls::certs::{CertStore, Present};
use crate::tls::{provider, read_certs, TlsError};

/// Longest TLS handshake, either direction.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A byte stream SIP runs over: plain TCP or TLS.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// The name of the local domain whose certificate is presented when the peer sends no SNI.
pub type DefaultDomain = Box<dyn Fn() -> String + Send + Sync>;

/// TLS for the SIP edge of one node.
pub struct SipTls {
    /// The bound TLS port, written in Via when we send over TLS.
    pub port: u16,
    server: Arc<rustls::ServerConfig>,
    roots: Arc<rustls::RootCertStore>,
    certs: Arc<CertStore>,
    default_domain: Arc<DefaultDomain>,
}

impl SipTls {
    /// Trusts the system roots, `tls_ca` and the development CA `dev_ca` (each optional).
    pub fn new(
        port: u16,
        certs: Arc<CertStore>,
        tls_ca: Option<&Path>,
        dev_ca: Option<&Path>,
        default_domain: DefaultDomain,
    ) -> Result<SipTls, TlsError> {
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(c);
        }
        for path in [tls_ca, dev_ca].into_iter().flatten() {
            for cert in read_certs(path)? {
                roots.add(cert).map_err(|e| TlsError::Trust {
                    path: path.to_path_buf(),
                    reason: e.to_string(),
                })?;
            }
        }
        let roots = Arc::new(roots);
        let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
            .allow_unauthenticated()
            .build()
            .map_err(|e| TlsError::Trust {
                path: tls_ca.or(dev_ca).map(Path::to_path_buf).unwrap_or_default(),
                reason: e.to_string(),
            })?;
        let default_domain = Arc::new(default_domain);
        let server = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(Arc::new(SniOrLocal {
                certs: certs.clone(),
                default_domain: default_domain.clone(),
            }));
        Ok(SipTls {
            port,
            server: Arc::new(server),
            roots,
            certs,
            default_domain,
        })
    }

    /// The certificate we present as a client.
    fn our_cert(&self) -> Arc<CertifiedKey> {
        self.certs.for_domain(&(self.default_domain)())
    }

    /// Opens TLS over `tcp` to the next hop `host` (SNI and certificate name), presenting our
    /// certificate.
    pub async fn connect(
        &self,
        host: &str,
        tcp: TcpStream,
    ) -> Result<tokio_rustls::client::TlsStream<TcpStream>, String> {
        let name = ServerName::try_from(host.to_string())
            .map_err(|_| format!("'{host}' is neither a DNS name nor an IP address"))?;
        let cfg = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(self.roots.clone())
            .with_client_cert_resolver(Arc::new(Present(self.our_cert())));
        let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, connector.connect(name, tcp)).await {
            Ok(Ok(s)) => Ok(s),
            Ok(Err(e)) => {
                let reason = handshake_reason(&e);
                tls_failure("outbound", reason);
                Err(format!("TLS handshake failed ({reason}): {e}"))
            }
            Err(_) => {
                tls_failure("outbound", "tls_timeout");
                Err("TLS handshake timed out".to_string())
            }
        }
    }
}

#[derive(Clone)]
struct SniOrLocal {
    certs: Arc<CertStore>,
    default_domain: Arc<DefaultDomain>,
}

impl std::fmt::Debug for SniOrLocal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SniOrLocal")
    }
}

impl rustls::server::ResolvesServerCert for SniOrLocal {
    fn resolve(&self, hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(match hello.server_name() {
            Some(sni) => self.certs.for_domain(sni),
            None => self.certs.for_domain(&(self.default_domain)()),
        })
    }
}

/// Counts a TLS failure under both the TLS counter and the edge's failure counter.
pub(super) fn tls_failure(direction: &'static str, reason: &'static str) {
    ::metrics::counter!(m::TLS_FAILURES, "direction" => direction, "reason" => reason).increment(1);
    m::failure(direction, reason);
}

/// The metric reason of a failed handshake.
fn handshake_reason(e: &std::io::Error) -> &'static str {
    let inner = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>());
    match inner {
        Some(rustls::Error::InvalidCertificate(_)) => "bad_certificate",
        Some(rustls::Error::NoCertificatesPresented) => "no_certificate",
        Some(rustls::Error::AlertReceived(_)) => "tls_alert_received",
        Some(rustls::Error::InvalidMessage(_)) => "not_tls",
        _ => "tls_handshake",
    }
}

/// The names a peer certificate claims: its DNS SANs, then its subject CN (lower case).
pub fn cert_names(der: &CertificateDer<'_>) -> Vec<String> {
    let mut names = crate::tls::certs::dns_names(der.as_ref());
    if let Ok((_, c)) = x509_parser::parse_x509_certificate(der.as_ref()) {
        for cn in c.subject().iter_common_name() {
            if let Ok(s) = cn.as_str() {
                let s = s.to_ascii_lowercase();
                if !names.contains(&s) {
                    names.push(s);
                }
            }
        }
    }
    names
}

/// Makes a request built for TCP (one Via, one Route) leave over TLS: the Via says
/// `SIP/2.0/TLS` with our TLS port as sent-by, the Route names the next hop with
/// `transport=tls` (what Kamailio and Lync expect; URIs stay `sip:`, RFC 5630 §3.1.3).
pub fn over_tls(req: &mut herald_sip::Request, host: &str, tls_port: u16, hop: (&str, u16)) {
    use herald_sip::{HeaderName, SipUri, Via};
    if let Ok(via) = req.headers.top_via() {
        let mut v = Via::new("TLS", host, Some(tls_port), "");
        v.params = via.params;
        req.headers.set(HeaderName::Via, v.to_string());
    }
    if req.headers.get(&HeaderName::Route).is_some() {
        let mut route = SipUri::new(None, hop.0);
        route.port = Some(hop.1);
        route.params.set("transport", Some("tls"));
        route.params.set("lr", None::<String>);
        req.headers.set(HeaderName::Route, format!("<{route}>"));
    }
}

/// Why a TLS peer is refused after its handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerRefusal {
    /// `tls-peer` subjects are configured and the peer presented no certificate.
    NoCertificate,
    /// None of the certificate's names covers a `tls-peer` subject.
    NotATlsPeer { names: Vec<String> },
}

impl PeerRefusal {
    /// Metric label.
    pub fn label(&self) -> &'static str {
        match self {
            PeerRefusal::NoCertificate => "no_certificate",
            PeerRefusal::NotATlsPeer { .. } => "tls_peer",
        }
    }
}

impl std::fmt::Display for PeerRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PeerRefusal::NoCertificate => {
                f.write_str("no client certificate, and tls-peer entries are configured")
            }
            PeerRefusal::NotATlsPeer { names } => write!(
                f,
                "certificate names [{}] match no tls-peer entry",
                names.join(", ")
            ),
        }
    }
}

/// Whether a peer that completed the handshake may speak SIP, and as whom: `names` are its
/// certificate's names (`None` without a certificate; the chain was already verified in the
/// handshake), `subjects` the stored `tls-peer` entries. With no entries every peer is
/// admitted without a verified name (only IP and `all` ACL entries can then admit it); else the
/// matched subject becomes the peer's verified TLS name for the ACL.
pub fn judge(names: Option<&[String]>, subjects: &[String]) -> Result<Option<String>, PeerRefusal> {
    if subjects.is_empty() {
        return Ok(None);
    }
    let names = names.ok_or(PeerRefusal::NoCertificate)?;
    super::policy::tls_peer_match(names, subjects)
        .map(|s| Some(s.to_string()))
        .ok_or_else(|| PeerRefusal::NotATlsPeer {
            names: names.to_vec(),
        })
}

/// The stored `tls-peer` subjects.
fn tls_peer_subjects(sip: &Sip) -> Vec<String> {
    use herald_grpc::config::config_object::Body;
    sip.cluster
        .applied()
        .state
        .list(herald_grpc::config::ObjectKind::TlsPeer)
        .into_iter()
        .filter_map(|o| match o.body {
            Some(Body::TlsPeer(p)) => Some(p.name),
            _ => None,
        })
        .collect()
}

/// Handshakes, judges and (when admitted) serves one inbound SIP over TLS connection. `tcp`
/// is the accepted connection after any PROXY protocol header; `peer` the real peer (the
/// header's source for a connection relayed by a member).
pub async fn serve<S: Stream>(sip: Arc<Sip>, tcp: S, peer: SocketAddr) {
    let Some(tls) = sip.tls.get().cloned() else {
        tracing::warn!(peer = %peer, "SIP TLS connection closed: TLS is not configured on this node");
        tls_failure("inbound", "tls_unavailable");
        return;
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(tls.server.clone());
    let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            let reason = handshake_reason(&e);
            tracing::info!(peer = %peer, reason, error = %e, "SIP TLS handshake refused");
            tls_failure("inbound", reason);
            return;
        }
        Err(_) => {
            tracing::info!(peer = %peer, "SIP TLS handshake timed out");
            tls_failure("inbound", "tls_timeout");
            return;
        }
    };
    let (names, sni) = {
        let conn = stream.get_ref().1;
        (
            conn.peer_certificates()
                .and_then(|c| c.first())
                .map(cert_names),
            conn.server_name().map(str::to_string),
        )
    };
    let subjects = tls_peer_subjects(&sip);
    let tls_name = match judge(names.as_deref(), &subjects) {
        Ok(n) => n,
        Err(why) => {
            tracing::warn!(peer = %peer, sni = ?sni, reason = why.label(), detail = %why, "SIP TLS peer refused");
            tls_failure("inbound", why.label());
            let mut stream = stream;
            let _ = tokio::io::AsyncWriteExt::shutdown(&mut stream).await;
            return;
        }
    };
    tracing::info!(peer = %peer, tls_peer = ?tls_name, cert_names = ?names, "SIP TLS peer accepted");
    super::inbound::serve(sip, stream, peer, "tls", tls_name).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    /// Certificate names (or none), tls-peer subjects, the verdict (the admitted name, or the
    /// refusal's label).
    type Row<'a> = (
        Option<&'a [&'a str]>,
        &'a [&'a str],
        Result<Option<&'a str>, &'a str>,
    );

    #[test]
    fn judge_over_tls_peer_subjects() {
        let rows: &[Row] = &[
            // No tls-peer entries: anyone, without a verified name.
            (None, &[], Ok(None)),
            (Some(&["kam.test"]), &[], Ok(None)),
            // Entries: a certificate is required.
            (None, &["kam.test"], Err("no_certificate")),
            (Some(&["kam.test"]), &["kam.test"], Ok(Some("kam.test"))),
            (Some(&["KAM.test."]), &["kam.test"], Ok(Some("kam.test"))),
            // A CN or any SAN may match; the first matching subject is the name.
            (
                Some(&["other.test", "sip.kam.test"]),
                &["edge.x.test", "sip.kam.test"],
                Ok(Some("sip.kam.test")),
            ),
            // Wildcard certificate names cover exactly one left-most label.
            (
                Some(&["*.kam.test"]),
                &["sip.kam.test"],
                Ok(Some("sip.kam.test")),
            ),
            (Some(&["*.kam.test"]), &["a.sip.kam.test"], Err("tls_peer")),
            (Some(&["*.kam.test"]), &["kam.test"], Err("tls_peer")),
            // A subject is not a pattern: a wildcard entry covers no plain name.
            (Some(&["sip.kam.test"]), &["*.kam.test"], Err("tls_peer")),
            (Some(&["evil.test"]), &["kam.test"], Err("tls_peer")),
            (Some(&[]), &["kam.test"], Err("tls_peer")),
        ];
        for (names, subjects, want) in rows {
            let names = names.map(s);
            let got = judge(names.as_deref(), &s(subjects));
            let got = got
                .as_ref()
                .map(|o| o.as_deref())
                .map_err(PeerRefusal::label);
            assert_eq!(got, *want, "names {names:?} subjects {subjects:?}");
        }
    }

    #[test]
    fn over_tls_rewrites_via_and_route_only() {
        use herald_sip::{HeaderName, Method, Request, SipUri, Uri};
        let mut req = Request::new(
            Method::Message,
            Uri::from(SipUri::new(Some("carol"), "kam.test")),
        )
        .header(
            HeaderName::Via,
            "SIP/2.0/TCP 127.0.0.2:5060;branch=z9hG4bKabc",
        )
        .header(HeaderName::Route, "<sip:127.0.0.9:5061;transport=tcp;lr>")
        .header(HeaderName::From, "<sip:alice@example.test>;tag=1");
        over_tls(&mut req, "127.0.0.2", 5071, ("127.0.0.9", 5061));
        let via = req.headers.top_via().unwrap();
        assert_eq!(via.transport, "TLS");
        assert_eq!((via.host.as_str(), via.port), ("127.0.0.2", Some(5071)));
        assert_eq!(via.branch(), Some("z9hG4bKabc"));
        assert_eq!(
            req.headers.get(&HeaderName::Route),
            Some("<sip:127.0.0.9:5061;transport=tls;lr>")
        );
        assert_eq!(
            req.headers.get(&HeaderName::From),
            Some("<sip:alice@example.test>;tag=1")
        );
    }

    #[test]
    fn refusals_say_why() {
        let r = judge(Some(&s(&["a.test", "b.test"])), &s(&["kam.test"])).unwrap_err();
        assert_eq!(
            r.to_string(),
            "certificate names [a.test, b.test] match no tls-peer entry"
        );
        assert_eq!(
            judge(None, &s(&["kam.test"])).unwrap_err().label(),
            "no_certificate"
        );
    }

    #[test]
    fn cert_names_are_sans_then_cn() {
        let mut p = rcgen::CertificateParams::new(vec!["sip.kam.test".to_string()]).unwrap();
        p.distinguished_name
            .push(rcgen::DnType::CommonName, "Kam.Test");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = p.self_signed(&key).unwrap();
        assert_eq!(
            cert_names(cert.der()),
            vec!["sip.kam.test".to_string(), "kam.test".to_string()]
        );
    }
}
