//! TLS for server-to-server streams. Handshakes accept any certificate (with real signature
//! checks), because in XMPP a bad certificate is not the end of a stream: the stream may still
//! authenticate with dialback when the security mode allows it. Whether a peer's certificate is
//! valid *for the domain it claims* is decided after the handshake by [`PeerTrust::verify`]:
//! chain to a trusted root (system roots plus `--tls-ca`), validity dates, and RFC 6125 name
//! matching (webpki: DNS SANs, the wildcard only as the whole left-most label, so `*.a.com`
//! matches `foo.a.com` but neither `bar.foo.a.com` nor `a.com`).

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

use rustls::sign::CertifiedKey;

use crate::tls::certs::{CertStore, Present};
use crate::tls::{provider, read_certs, TlsError};

/// XEP-0368's ALPN protocol name for server-to-server direct TLS.
pub const ALPN: &[u8] = b"xmpp-server";

/// The trust anchors for peers and the verifier built over them.
pub struct PeerTrust {
    verifier: Arc<WebPkiServerVerifier>,
    /// How many roots are trusted (for the start-up log).
    pub roots: usize,
}

impl PeerTrust {
    /// System roots plus every certificate in `extra` (PEM).
    pub fn new(extra: Option<&std::path::Path>) -> Result<PeerTrust, TlsError> {
        let mut roots = rustls::RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        for c in native.certs {
            let _ = roots.add(c);
        }
        if let Some(path) = extra {
            for cert in read_certs(path)? {
                roots.add(cert).map_err(|e| TlsError::Trust {
                    path: path.to_path_buf(),
                    reason: e.to_string(),
                })?;
            }
        }
        let n = roots.len();
        let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .map_err(|e| TlsError::Trust {
                path: extra.map(|p| p.to_path_buf()).unwrap_or_default(),
                reason: e.to_string(),
            })?;
        Ok(PeerTrust { verifier, roots: n })
    }

    /// A client configuration that checks servers with this trust during the handshake (for
    /// HTTPS to calendar gateways: no client certificate, a bad certificate ends it).
    pub fn client_config(&self) -> Result<Arc<rustls::ClientConfig>, TlsError> {
        let cfg = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(self.verifier.clone())
            .with_no_client_auth();
        Ok(Arc::new(cfg))
    }

    /// Whether `chain` (leaf first) is a valid certificate for `domain`; the reason when not.
    pub fn verify(
        &self,
        chain: Option<&[CertificateDer<'static>]>,
        domain: &str,
    ) -> Result<(), String> {
        let chain = chain
            .filter(|c| !c.is_empty())
            .ok_or("no certificate presented")?;
        let name = ServerName::try_from(domain.to_string())
            .map_err(|_| format!("'{domain}' is not a DNS name"))?;
        self.verifier
            .verify_server_cert(&chain[0], &chain[1..], &name, &[], UnixTime::now())
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

#[derive(Debug)]
struct AnyCert(Arc<CryptoProvider>);

impl AnyCert {
    fn tls12(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn tls13(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // Checked after the handshake against the domain the stream is for (PeerTrust).
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls12(m, c, d)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls13(m, c, d)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.schemes()
    }
}

impl ClientCertVerifier for AnyCert {
    fn offer_client_auth(&self) -> bool {
        true
    }
    fn client_auth_mandatory(&self) -> bool {
        false
    }
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }
    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        // Checked after the handshake against the domain the peer claims (PeerTrust).
        Ok(ClientCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls12(m, c, d)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls13(m, c, d)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.schemes()
    }
}

/// The server side of s2s TLS: presents the certificate of the domain the peer names (SNI),
/// else of `domain` (the stream's `to`), asks for (but does not require) a client certificate.
pub fn server_config(
    certs: Arc<CertStore>,
    domain: String,
    direct: bool,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(Arc::new(AnyCert(provider())))
        .with_cert_resolver(Arc::new(SniOr { certs, domain }));
    if direct {
        cfg.alpn_protocols = vec![ALPN.to_vec()];
    }
    Ok(Arc::new(cfg))
}

#[derive(Debug)]
struct SniOr {
    certs: Arc<CertStore>,
    domain: String,
}

impl rustls::server::ResolvesServerCert for SniOr {
    fn resolve(&self, hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.certs
                .for_domain(hello.server_name().unwrap_or(&self.domain)),
        )
    }
}

/// The client side of s2s TLS: presents `cert` (the local domain's, for SASL EXTERNAL at the
/// peer), checks the peer's certificate after the handshake.
pub fn client_config(
    cert: Arc<CertifiedKey>,
    direct: bool,
) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert(provider())))
        .with_client_cert_resolver(Arc::new(Present(cert)));
    if direct {
        cfg.alpn_protocols = vec![ALPN.to_vec()];
    }
    Ok(Arc::new(cfg))
}
