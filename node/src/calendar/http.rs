//! The few HTTPS requests the calendar gateways need: HTTP/1.1 (hyper's connection API) over
//! tokio-rustls, Basic authentication, one connection per poll (its requests go one after the
//! other on it; a new one when the server closed it, as Radicale does after every answer),
//! every step under a deadline, bodies bounded.
//!
//! Certificates are checked by [`crate::s2s::tls::PeerTrust`]'s verifier (system roots plus
//! `--tls-ca`, RFC 6125 names: SANs, the wildcard only as the whole left-most label); a
//! failure is an [`HttpError::Certificate`] naming the reason.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
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
            HttpError::Auth(_) => "auth",
            HttpError::Status(_) => "status",
            HttpError::TooLarge(_) => "too_large",
            HttpError::Timeout(_) => "timeout",
            HttpError::Protocol(_) => "protocol",
        }
    }
}

/// Where and as whom.
#[derive(Clone)]
pub struct Target {
    /// Host as configured (DNS name or IP address); also the name the certificate must carry.
    pub host: String,
    pub port: u16,
    /// `user:password`, sent as Basic authentication.
    pub basic: Option<(String, String)>,
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
}

/// An answer.
pub struct Answer {
    pub status: u16,
    pub body: Bytes,
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
        }
        Ok(&mut self.send)
    }

    /// One request (`Depth` header when given, XML body); the answer, whatever its status.
    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        depth: Option<&str>,
        body: String,
    ) -> Result<Answer, HttpError> {
        let limits = self.limits;
        let host_header = if self.target.port == 443 {
            self.target.host.clone()
        } else {
            format!("{}:{}", self.target.host, self.target.port)
        };
        let method = hyper::Method::from_bytes(method.as_bytes())
            .map_err(|e| HttpError::Protocol(e.to_string()))?;
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", host_header)
            .header("user-agent", concat!("herald/", env!("CARGO_PKG_VERSION")))
            .header("content-type", "application/xml; charset=utf-8")
            .header("accept", "application/xml, text/xml");
        if let Some(d) = depth {
            req = req.header("depth", d);
        }
        if let Some((u, p)) = &self.target.basic {
            let token = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
            req = req.header("authorization", format!("Basic {token}"));
        }
        let req = req
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| HttpError::Protocol(e.to_string()))?;
        let send = self.ready().await?;
        deadline(limits.timeout, async move {
            send.ready()
                .await
                .map_err(|e| HttpError::Protocol(e.to_string()))?;
            let resp = send
                .send_request(req)
                .await
                .map_err(|e| HttpError::Protocol(e.to_string()))?;
            let status = resp.status().as_u16();
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
            if status == 401 || status == 403 {
                return Err(HttpError::Auth(status));
            }
            Ok(Answer { status, body })
        })
        .await
    }
}
