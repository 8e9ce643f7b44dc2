//! One XMPP client connection: TCP from a chosen source address, STARTTLS (or direct TLS),
//! SCRAM, stream restart, resource binding, roster fetch and initial presence; then stanza
//! send/receive on the TLS stream.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use herald_xmpp::codec::{encode, stream_header, Decoder, Limits, StreamEvent, StreamHeader};
use herald_xmpp::{ns, Element};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::scram::{Hash, ScramClient, ScramError};
use crate::stamped::{RxStamp, StampedTcp};

/// Why a client failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Socket error.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// TLS configuration error (CA file).
    #[error("tls: {0}")]
    Tls(String),
    /// The server's XML stream was not well-formed or hit a limit.
    #[error("xml stream: {0:?}")]
    Stream(herald_xmpp::StreamError),
    /// SCRAM failed.
    #[error("scram: {0}")]
    Scram(#[from] ScramError),
    /// The server answered something unexpected (failure, error, closed stream).
    #[error("protocol: {0}")]
    Protocol(String),
    /// The step did not finish in time.
    #[error("timed out")]
    Timeout,
}

/// How to reach the server and who to be.
#[derive(Clone)]
pub struct ConnectConfig {
    /// Server address (IP:PORT).
    pub server: SocketAddr,
    /// XMPP domain (also the TLS server name).
    pub domain: String,
    /// Source addresses to spread connections over (round robin by user index).
    pub sources: Vec<IpAddr>,
    /// TLS client configuration trusting the given CA.
    pub tls: Arc<rustls::ClientConfig>,
    /// Direct TLS (XEP-0368, port 5223) instead of STARTTLS.
    pub direct_tls: bool,
    /// SCRAM hash to use.
    pub hash: Hash,
    /// Whole-login timeout.
    pub timeout: Duration,
    /// Print the time of each login step to stderr.
    pub trace: bool,
}

/// Builds a rustls client configuration (ring provider) trusting only the CA certificates in
/// the PEM file `ca`.
pub fn tls_config(ca: &std::path::Path) -> Result<Arc<rustls::ClientConfig>, ClientError> {
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(ca)
        .map_err(|e| ClientError::Tls(format!("{}: {e}", ca.display())))?;
    for cert in certs {
        let cert = cert.map_err(|e| ClientError::Tls(format!("{}: {e}", ca.display())))?;
        roots
            .add(cert)
            .map_err(|e| ClientError::Tls(format!("{}: {e}", ca.display())))?;
    }
    if roots.is_empty() {
        return Err(ClientError::Tls(format!(
            "{}: no certificate found",
            ca.display()
        )));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

/// Size of the socket read buffer.
const READ_BUF: usize = 16 * 1024;

/// An XML stream over some byte stream: decoder plus read buffer.
/// The largest stanza the generator reads. A client trusts its own server (a server's 256 KiB
/// default is for what it reads from clients), and a publisher with 10,000 watchers gets its
/// roster (~600 KB) in one result at sign-in.
const CLIENT_MAX_STANZA: usize = 16 << 20;

struct Xml<S> {
    io: S,
    dec: Decoder,
    buf: Vec<u8>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Xml<S> {
    fn new(io: S) -> Self {
        Xml {
            io,
            dec: Decoder::new(Limits {
                max_stanza_bytes: CLIENT_MAX_STANZA,
                ..Limits::default()
            }),
            buf: vec![0u8; READ_BUF],
        }
    }

    async fn open(&mut self, domain: &str) -> Result<(), ClientError> {
        self.dec.reset();
        let header = stream_header(&StreamHeader {
            to: Some(domain.to_string()),
            version: Some("1.0".into()),
            default_ns: ns::CLIENT.into(),
            ..StreamHeader::default()
        });
        self.io.write_all(&header).await?;
        self.io.flush().await?;
        match self.event().await? {
            StreamEvent::Open(_) => Ok(()),
            other => Err(ClientError::Protocol(format!(
                "expected a stream header, got {other:?}"
            ))),
        }
    }

    async fn send(&mut self, e: &Element) -> Result<(), ClientError> {
        self.io.write_all(&encode(e, ns::CLIENT)).await?;
        self.io.flush().await?;
        Ok(())
    }

    /// The next event other than whitespace.
    async fn event(&mut self) -> Result<StreamEvent, ClientError> {
        loop {
            match self.dec.next().map_err(ClientError::Stream)? {
                Some(StreamEvent::Whitespace) => continue,
                Some(ev) => return Ok(ev),
                None => {}
            }
            let n = self.io.read(&mut self.buf).await?;
            if n == 0 {
                return Err(ClientError::Protocol("connection closed".into()));
            }
            self.dec.feed(&self.buf[..n]);
        }
    }

    async fn stanza(&mut self) -> Result<Element, ClientError> {
        match self.event().await? {
            StreamEvent::Stanza(e) => Ok(e),
            StreamEvent::Close => Err(ClientError::Protocol("stream closed".into())),
            other => Err(ClientError::Protocol(format!("unexpected {other:?}"))),
        }
    }

    /// Reads until an iq result/error with `id`; other stanzas are dropped.
    async fn iq_result(&mut self, id: &str) -> Result<Element, ClientError> {
        loop {
            let e = self.stanza().await?;
            if e.name() == "iq" && e.get_attr("id") == Some(id) {
                return match e.get_attr("type") {
                    Some("result") => Ok(e),
                    _ => Err(ClientError::Protocol(format!(
                        "iq {id} failed: {}",
                        e.to_xml_string()
                    ))),
                };
            }
        }
    }
}

/// What the TLS handshake settled on, as rustls names it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsInfo {
    /// Protocol version, e.g. "TLSv1_3".
    pub version: String,
    /// Cipher suite, e.g. "TLS13_AES_256_GCM_SHA384".
    pub cipher: String,
}

impl TlsInfo {
    fn of(conn: &rustls::ClientConnection) -> TlsInfo {
        TlsInfo {
            version: conn
                .protocol_version()
                .map(|v| format!("{v:?}"))
                .unwrap_or_else(|| "unknown".into()),
            cipher: conn
                .negotiated_cipher_suite()
                .map(|s| format!("{:?}", s.suite()))
                .unwrap_or_else(|| "unknown".into()),
        }
    }
}

/// An authenticated, bound, available session.
pub struct Session {
    xml: Xml<TlsStream<StampedTcp>>,
    /// Kernel receive time of the bytes the last [`Session::fill`] decoded.
    rx: RxStamp,
    /// The full JID the server bound.
    pub jid: String,
    /// Number of roster items the server returned at login.
    pub roster_items: usize,
    /// Bare JIDs of the items the user was subscribed to at login (subscription `to` or
    /// `both`): a scenario need not ask for those again.
    pub subscribed_to: std::collections::HashSet<String>,
    /// Negotiated TLS version and cipher suite.
    pub tls: TlsInfo,
}

impl Session {
    /// Connects, authenticates `user` (localpart) with `password`, binds, fetches the roster
    /// and sends initial presence; all within `cfg.timeout`. `index` picks the source address.
    pub async fn login(
        cfg: &ConnectConfig,
        index: usize,
        user: &str,
        password: &str,
    ) -> Result<Session, ClientError> {
        tokio::time::timeout(cfg.timeout, Self::login_inner(cfg, index, user, password))
            .await
            .map_err(|_| ClientError::Timeout)?
    }

    async fn login_inner(
        cfg: &ConnectConfig,
        index: usize,
        user: &str,
        password: &str,
    ) -> Result<Session, ClientError> {
        let t0 = std::time::Instant::now();
        let trace = |step: &str| {
            if cfg.trace {
                eprintln!("login {user}: {step} at {:?}", t0.elapsed());
            }
        };
        let tcp = StampedTcp::new(connect_from(cfg, index).await?);
        let rx = tcp.stamp();
        trace("tcp connected");
        let name = ServerName::try_from(cfg.domain.clone())
            .map_err(|e| ClientError::Tls(format!("server name {}: {e}", cfg.domain)))?;
        let connector = TlsConnector::from(cfg.tls.clone());
        let tls = if cfg.direct_tls {
            connector.connect(name, tcp).await?
        } else {
            let mut plain = Xml::new(tcp);
            plain.open(&cfg.domain).await?;
            let features = plain.stanza().await?;
            if features.get_child("starttls", ns::TLS).is_none() {
                return Err(ClientError::Protocol("server offers no STARTTLS".into()));
            }
            plain.send(&Element::new("starttls", ns::TLS)).await?;
            let proceed = plain.stanza().await?;
            if !proceed.is("proceed", ns::TLS) {
                return Err(ClientError::Protocol(format!(
                    "STARTTLS refused: {}",
                    proceed.to_xml_string()
                )));
            }
            connector.connect(name, plain.io).await?
        };
        trace("tls established");
        let tls_info = TlsInfo::of(tls.get_ref().1);
        let mut xml = Xml::new(tls);
        xml.open(&cfg.domain).await?;
        let features = xml.stanza().await?;
        let offered = features
            .get_child("mechanisms", ns::SASL)
            .map(|m| m.children().map(|c| c.text()).collect::<Vec<_>>())
            .unwrap_or_default();
        if !offered.iter().any(|m| m == cfg.hash.mechanism()) {
            return Err(ClientError::Protocol(format!(
                "{} not offered (offered: {offered:?})",
                cfg.hash.mechanism()
            )));
        }
        trace("features read");
        authenticate(&mut xml, cfg.hash, user, password).await?;
        trace("authenticated");
        xml.open(&cfg.domain).await?;
        trace("stream restarted");
        let features = xml.stanza().await?;
        let bind = Element::new("iq", ns::CLIENT)
            .attr("type", "set")
            .attr("id", "bind")
            .child(
                Element::new("bind", ns::BIND)
                    .child(Element::new("resource", ns::BIND).text_node(format!("lg{index}"))),
            );
        xml.send(&bind).await?;
        let result = xml.iq_result("bind").await?;
        trace("bound");
        let jid = result
            .get_child("bind", ns::BIND)
            .and_then(|b| b.get_child("jid", ns::BIND))
            .map(|j| j.text())
            .ok_or_else(|| ClientError::Protocol("bind result without jid".into()))?;
        // RFC 3921 sessions: only when the server says they are not optional.
        if let Some(s) = features.get_child("session", ns::SESSION) {
            if s.get_child("optional", ns::SESSION).is_none() {
                let iq = Element::new("iq", ns::CLIENT)
                    .attr("type", "set")
                    .attr("id", "sess")
                    .child(Element::new("session", ns::SESSION));
                xml.send(&iq).await?;
                xml.iq_result("sess").await?;
            }
        }
        let roster = Element::new("iq", ns::CLIENT)
            .attr("type", "get")
            .attr("id", "roster")
            .child(Element::new("query", ns::ROSTER));
        xml.send(&roster).await?;
        let result = xml.iq_result("roster").await?;
        trace("roster received");
        let items: Vec<&Element> = result
            .get_child("query", ns::ROSTER)
            .map(|q| q.children().collect())
            .unwrap_or_default();
        let roster_items = items.len();
        let subscribed_to = items
            .iter()
            .filter(|i| matches!(i.get_attr("subscription"), Some("to" | "both")))
            .filter_map(|i| i.get_attr("jid").map(str::to_owned))
            .collect();
        xml.send(&Element::new("presence", ns::CLIENT)).await?;
        Ok(Session {
            xml,
            rx,
            jid,
            roster_items,
            subscribed_to,
            tls: tls_info,
        })
    }

    /// Sends one stanza (written and flushed).
    pub async fn send(&mut self, e: &Element) -> Result<(), ClientError> {
        self.xml.send(e).await
    }

    /// Sends pre-encoded bytes (written and flushed): one call, one TLS record as long as
    /// `bytes` fits one (16 KiB), normally one `write` on the socket.
    pub async fn send_raw(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        self.xml.io.write_all(bytes).await?;
        self.xml.io.flush().await?;
        Ok(())
    }

    /// The next complete stanza already decoded, without reading the socket.
    pub fn buffered_stanza(&mut self) -> Result<Option<Element>, ClientError> {
        loop {
            match self.xml.dec.next().map_err(ClientError::Stream)? {
                Some(StreamEvent::Stanza(e)) => return Ok(Some(e)),
                Some(StreamEvent::Whitespace) | Some(StreamEvent::Open(_)) => continue,
                Some(StreamEvent::Close) => {
                    return Err(ClientError::Protocol("stream closed".into()))
                }
                None => return Ok(None),
            }
        }
    }

    /// Reads the socket once (cancel-safe) and feeds the decoder; `Ok(false)` at end of input.
    pub async fn fill(&mut self) -> Result<bool, ClientError> {
        let n = self.xml.io.read(&mut self.xml.buf).await?;
        if n == 0 {
            return Ok(false);
        }
        self.xml.dec.feed(&self.xml.buf[..n]);
        Ok(true)
    }

    /// When the stanzas decoded by the last [`Session::fill`] reached this host: the kernel's
    /// receive time of the socket data that completed them, µs since the Unix epoch (see
    /// [`crate::stamped`]); the current time if the kernel gave none.
    pub fn received_at_us(&self) -> u64 {
        self.rx.get().unwrap_or_else(crate::stamped::wall_us)
    }

    /// Sends `</stream:stream>` and shuts the TLS stream down (best effort).
    pub async fn close(mut self) {
        let _ = self
            .xml
            .io
            .write_all(herald_xmpp::codec::STREAM_CLOSE)
            .await;
        let _ = self.xml.io.shutdown().await;
    }
}

async fn connect_from(cfg: &ConnectConfig, index: usize) -> Result<TcpStream, ClientError> {
    let sock = match cfg.server {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    if !cfg.sources.is_empty() {
        let src = cfg.sources[index % cfg.sources.len()];
        sock.bind(SocketAddr::new(src, 0))?;
    }
    let tcp = sock.connect(cfg.server).await?;
    tcp.set_nodelay(true)?;
    Ok(tcp)
}

async fn authenticate<S: AsyncRead + AsyncWrite + Unpin>(
    xml: &mut Xml<S>,
    hash: Hash,
    user: &str,
    password: &str,
) -> Result<(), ClientError> {
    let nonce: String = {
        use rand::Rng as _;
        let mut rng = rand::rng();
        (0..24)
            .map(|_| char::from(rng.random_range(b'a'..=b'z')))
            .collect()
    };
    let mut scram = ScramClient::new(hash, user, password, &nonce);
    let auth = Element::new("auth", ns::SASL)
        .attr("mechanism", hash.mechanism())
        .text_node(B64.encode(scram.client_first()));
    xml.send(&auth).await?;
    let challenge = sasl_answer(xml, "challenge").await?;
    let response = scram.client_final(&challenge)?;
    xml.send(&Element::new("response", ns::SASL).text_node(B64.encode(response)))
        .await?;
    let server_final = sasl_answer(xml, "success").await?;
    scram.verify_server_final(&server_final)?;
    Ok(())
}

/// Waits for `<challenge/>` or `<success/>` and returns its decoded payload.
async fn sasl_answer<S: AsyncRead + AsyncWrite + Unpin>(
    xml: &mut Xml<S>,
    want: &str,
) -> Result<Vec<u8>, ClientError> {
    let e = xml.stanza().await?;
    if !e.is(want, ns::SASL) {
        return Err(ClientError::Protocol(format!(
            "SASL: expected {want}, got {}",
            e.to_xml_string()
        )));
    }
    B64.decode(e.text().trim())
        .map_err(|_| ClientError::Protocol(format!("SASL {want} is not base64")))
}
