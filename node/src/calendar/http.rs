//! The few HTTPS requests the calendar gateways need: HTTP/1.1 (hyper's connection API) over
//! tokio-rustls, Basic or NTLM authentication, one connection per poll (its requests go one
//! after the other on it; a new one when the server closed it, as Radicale does after every
//! answer), every step under a deadline, bodies bounded.
//!
//! NTLM authenticates the connection, not the request (MS-NTHT): the first request on a
//! connection goes with `Authorization: NTLM <negotiate>`, the `401`'s
//! `WWW-Authenticate: NTLM <challenge>` is answered on the same connection with the
//! AUTHENTICATE message (NTLMv2 responses only, `herald_federation::calendar::ntlm`), and the
//! later requests on that connection carry no header. A server that closes the connection in
//! the middle of the handshake, offers no NTLM, or only NTLMv1, is an authentication failure
//! with the reason.
//!
//! Certificates are checked by [`crate::s2s::tls::PeerTrust`]'s verifier (system roots plus
//! `--tls-ca`, RFC 6125 names: SANs, the wildcard only as the whole left-most label); a
//! failure is an [`HttpError::Certificate`] naming the reason.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use herald_federation::calendar::ntlm;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;

/// Why a request failed; the variant says which side and whether the gateway is to blame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    /// Name resolution or TCP connect failed.
    #[error("cannot connect to {0}: {1}")]
    Connect(String, String),
    /// The server's certificate is not valid for the gateway host.
    #[error("certificate rejected: {0}")]
    Certificate(String),
    /// TLS failed for another reason.
    #[error("TLS handshake failed: {0}")]
    Tls(String),
    /// 401 or 403: the service account was refused.
    #[error("the service account was refused (HTTP {0})")]
    Auth(u16),
    /// The authentication exchange itself failed (no NTLM offered, only NTLMv1, a broken
    /// challenge, the connection closed mid-handshake).
    #[error("authentication failed: {0}")]
    AuthExchange(String),
    /// Another status than the caller expects.
    #[error("unexpected HTTP status {0}")]
    Status(u16),
    /// The answer is larger than the body limit.
    #[error("response larger than {0} bytes")]
    TooLarge(usize),
    /// No answer in time.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The connection broke or the HTTP framing was wrong.
    #[error("HTTP exchange failed: {0}")]
    Protocol(String),
}

impl HttpError {
    /// A short label for metrics and status.
    pub fn label(&self) -> &'static str {
        match self {
            HttpError::Connect(..) => "connect",
            HttpError::Certificate(_) => "certificate",
            HttpError::Tls(_) => "tls",
            HttpError::Auth(_) | HttpError::AuthExchange(_) => "auth",
            HttpError::Status(_) => "status",
            HttpError::TooLarge(_) => "too_large",
            HttpError::Timeout(_) => "timeout",
            HttpError::Protocol(_) => "protocol",
        }
    }
}

/// How requests authenticate.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum Auth {
    /// No credentials configured.
    #[default]
    None,
    /// `user`, `password` as HTTP Basic.
    Basic(String, String),
    /// NTLM with NTLMv2 responses.
    Ntlm(ntlm::Credentials),
}

/// Where and as whom.
#[derive(Clone, PartialEq, Eq)]
pub struct Target {
    /// Host as configured (DNS name or IP address); also the name the certificate must carry.
    pub host: String,
    pub port: u16,
    /// The service account.
    pub auth: Auth,
}

/// Limits of one exchange.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// Connect + TLS handshake, and each request's full answer.
    pub timeout: Duration,
    /// Largest answer body read.
    pub max_body: usize,
}

/// An open HTTPS connection to one gateway.
pub struct Conn {
    send: SendRequest<Full<Bytes>>,
    tls: Arc<rustls::ClientConfig>,
    target: Target,
    limits: HttpLimits,
    /// NTLM completed on the current connection.
    ntlm_done: bool,
}

/// An answer.
pub struct Answer {
    pub status: u16,
    pub body: Bytes,
    /// `WWW-Authenticate` values (bounded).
    pub www_authenticate: Vec<String>,
}

async fn deadline<T>(
    d: Duration,
    f: impl std::future::Future<Output = Result<T, HttpError>>,
) -> Result<T, HttpError> {
    tokio::time::timeout(d, f)
        .await
        .unwrap_or(Err(HttpError::Timeout(d)))
}

fn tls_error(e: std::io::Error) -> HttpError {
    let inner = e
        .get_ref()
        .and_then(|i| i.downcast_ref::<rustls::Error>())
        .cloned();
    match inner {
        Some(rustls::Error::InvalidCertificate(c)) => HttpError::Certificate(match c {
            rustls::CertificateError::NotValidForName
            | rustls::CertificateError::NotValidForNameContext { .. } => {
                "the certificate does not name the gateway host (subject/SAN mismatch)".into()
            }
            rustls::CertificateError::UnknownIssuer => {
                "issued by an untrusted CA (add it with --tls-ca)".into()
            }
            other => format!("{other:?}"),
        }),
        Some(other) => HttpError::Tls(other.to_string()),
        None => HttpError::Tls(e.to_string()),
    }
}

/// TCP connect, TLS handshake and the HTTP/1.1 handshake: the request half of a connection.
async fn connect(
    tls: Arc<rustls::ClientConfig>,
    t: &Target,
    limits: HttpLimits,
) -> Result<SendRequest<Full<Bytes>>, HttpError> {
    deadline(limits.timeout, async move {
        let addr = format!("{}:{}", t.host, t.port);
        let host = t
            .host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let tcp = tokio::net::TcpStream::connect((host.as_str(), t.port))
            .await
            .map_err(|e| HttpError::Connect(addr.clone(), e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        let name = ServerName::try_from(host.clone())
            .map_err(|_| HttpError::Tls(format!("'{host}' is not a DNS name or IP address")))?;
        let stream = tokio_rustls::TlsConnector::from(tls)
            .connect(name, tcp)
            .await
            .map_err(tls_error)?;
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| HttpError::Protocol(e.to_string()))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(send)
    })
    .await
}

impl Conn {
    /// Where and as whom this connection talks (a pooled connection is reused only for the
    /// same target).
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// Connects and completes the TLS handshake.
    pub async fn open(
        tls: Arc<rustls::ClientConfig>,
        target: Target,
        limits: HttpLimits,
    ) -> Result<Conn, HttpError> {
        let send = connect(tls.clone(), &target, limits).await?;
        Ok(Conn {
            send,
            tls,
            target,
            limits,
            ntlm_done: false,
        })
    }

    /// The connection for the next request: the open one while the server keeps it, else a
    /// new one (servers such as Radicale close after every answer).
    async fn ready(&mut self) -> Result<&mut SendRequest<Full<Bytes>>, HttpError> {
        let alive = !self.send.is_closed()
            && tokio::time::timeout(self.limits.timeout, self.send.ready())
                .await
                .is_ok_and(|r| r.is_ok());
        if !alive {
            self.send = connect(self.tls.clone(), &self.target, self.limits).await?;
            self.ntlm_done = false;
        }
        Ok(&mut self.send)
    }

    /// One request (`Depth` header when given, XML body); the answer, whatever its status
    /// (401 and 403 are [`HttpError::Auth`]).
    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        depth: Option<&str>,
        body: String,
    ) -> Result<Answer, HttpError> {
        self.request_typed(method, path, depth, "application/xml; charset=utf-8", body)
            .await
    }

    /// [`Conn::request`] with a content type (EWS wants `text/xml`).
    pub async fn request_typed(
        &mut self,
        method: &str,
        path: &str,
        depth: Option<&str>,
        content_type: &str,
        body: String,
    ) -> Result<Answer, HttpError> {
        let body = Bytes::from(body);
        let host_header = if self.target.port == 443 {
            self.target.host.clone()
        } else {
            format!("{}:{}", self.target.host, self.target.port)
        };
        let build = |auth: Option<String>| -> Result<hyper::Request<Full<Bytes>>, HttpError> {
            let method = hyper::Method::from_bytes(method.as_bytes())
                .map_err(|e| HttpError::Protocol(e.to_string()))?;
            let mut req = hyper::Request::builder()
                .method(method)
                .uri(path)
                .header("host", host_header.as_str())
                .header("user-agent", concat!("herald/", env!("CARGO_PKG_VERSION")))
                .header("content-type", content_type)
                .header("accept", "application/xml, text/xml");
            if let Some(d) = depth {
                req = req.header("depth", d);
            }
            if let Some(a) = auth {
                req = req.header("authorization", a);
            }
            req.body(Full::new(body.clone()))
                .map_err(|e| HttpError::Protocol(e.to_string()))
        };
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        let creds = match &self.target.auth {
            Auth::None => return auth_status(self.exchange(build(None)?, true).await?),
            Auth::Basic(u, p) => {
                let token = b64(format!("{u}:{p}").as_bytes());
                return auth_status(
                    self.exchange(build(Some(format!("Basic {token}")))?, true)
                        .await?,
                );
            }
            Auth::Ntlm(c) => c.clone(),
        };
        self.ready().await?;
        if self.ntlm_done {
            let a = self.exchange(build(None)?, false).await?;
            if a.status != 401 {
                return auth_status(a);
            }
            // The server forgot the connection's authentication: once more from the start.
            self.ntlm_done = false;
        }
        let negotiate = format!("NTLM {}", b64(&ntlm::negotiate()));
        let a = self.exchange(build(Some(negotiate))?, false).await?;
        if a.status != 401 {
            // Accepted without a challenge (anonymous access): nothing more to do.
            return auth_status(a);
        }
        let offered: Vec<String> = a.www_authenticate.clone();
        let token = offered
            .iter()
            .find_map(|h| {
                let (scheme, rest) = h.split_once(' ').unwrap_or((h.as_str(), ""));
                scheme
                    .eq_ignore_ascii_case("NTLM")
                    .then(|| rest.trim().to_owned())
            })
            .filter(|t| !t.is_empty());
        let Some(token) = token else {
            return Err(HttpError::AuthExchange(if offered.is_empty() {
                "the server answered 401 without an NTLM challenge".into()
            } else {
                format!(
                    "the server does not offer NTLM (WWW-Authenticate: {})",
                    offered.join(", ")
                )
            }));
        };
        let raw = base64::engine::general_purpose::STANDARD
            .decode(token.as_bytes())
            .map_err(|e| HttpError::AuthExchange(format!("NTLM challenge is not base64: {e}")))?;
        let challenge =
            ntlm::parse_challenge(&raw).map_err(|e| HttpError::AuthExchange(e.to_string()))?;
        let client_challenge: [u8; 8] = rand::random();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let msg = ntlm::authenticate(
            &creds,
            &challenge,
            client_challenge,
            ntlm::filetime(now),
            "HERALD",
        );
        let a = self
            .exchange(build(Some(format!("NTLM {}", b64(&msg))))?, false)
            .await?;
        let a = auth_status(a)?;
        self.ntlm_done = true;
        Ok(a)
    }

    /// Sends one request on the connection (a new connection only when `may_reconnect`) and
    /// reads the whole bounded answer.
    async fn exchange(
        &mut self,
        req: hyper::Request<Full<Bytes>>,
        may_reconnect: bool,
    ) -> Result<Answer, HttpError> {
        let limits = self.limits;
        let send = if may_reconnect {
            self.ready().await?
        } else {
            if self.send.is_closed() {
                self.ntlm_done = false;
                return Err(HttpError::AuthExchange(
                    "the server closed the connection during the NTLM handshake (NTLM needs HTTP keep-alive)".into(),
                ));
            }
            &mut self.send
        };
        deadline(limits.timeout, async move {
            send.ready()
                .await
                .map_err(|e| HttpError::Protocol(e.to_string()))?;
            let resp = send
                .send_request(req)
                .await
                .map_err(|e| HttpError::Protocol(e.to_string()))?;
            let status = resp.status().as_u16();
            let www_authenticate = resp
                .headers()
                .get_all("www-authenticate")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .map(|v| v.chars().take(4096).collect())
                .take(8)
                .collect();
            if let Some(len) = resp
                .headers()
                .get("content-length")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<usize>().ok())
            {
                if len > limits.max_body {
                    return Err(HttpError::TooLarge(limits.max_body));
                }
            }
            let body = Limited::new(resp.into_body(), limits.max_body)
                .collect()
                .await
                .map_err(|e| {
                    if e.is::<http_body_util::LengthLimitError>() {
                        HttpError::TooLarge(limits.max_body)
                    } else {
                        HttpError::Protocol(e.to_string())
                    }
                })?
                .to_bytes();
            Ok(Answer {
                status,
                body,
                www_authenticate,
            })
        })
        .await
    }
}

/// 401 and 403 are the service account's refusal.
fn auth_status(a: Answer) -> Result<Answer, HttpError> {
    if a.status == 401 || a.status == 403 {
        return Err(HttpError::Auth(a.status));
    }
    Ok(a)
}
