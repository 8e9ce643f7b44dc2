//! One server-to-server connection's bytes: TCP, upgraded in place to TLS (either side), with a
//! bounded stream decoder in front of it. Reads are bounded in time by the caller.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use herald_xmpp::{Decoder, Limits, StreamError, StreamEvent};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

/// The transport under a stream.
pub enum Io {
    Plain(TcpStream),
    Client(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    Server(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    /// Transitional (only while upgrading).
    Gone,
}

impl Io {
    /// The peer's certificate chain, if TLS is up and it sent one.
    pub fn peer_certs(&self) -> Option<Vec<CertificateDer<'static>>> {
        match self {
            Io::Client(s) => s.get_ref().1.peer_certificates().map(|c| c.to_vec()),
            Io::Server(s) => s.get_ref().1.peer_certificates().map(|c| c.to_vec()),
            _ => None,
        }
    }

    pub fn is_tls(&self) -> bool {
        matches!(self, Io::Client(_) | Io::Server(_))
    }
}

macro_rules! each {
    ($self:ident, $s:ident => $e:expr) => {
        match $self.get_mut() {
            Io::Plain($s) => $e,
            Io::Client($s) => $e,
            Io::Server($s) => $e,
            Io::Gone => return Poll::Ready(Err(io::Error::from(io::ErrorKind::NotConnected))),
        }
    };
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        each!(self, s => Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        each!(self, s => Pin::new(s).poll_write(cx, buf))
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self, s => Pin::new(s).poll_flush(cx))
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self, s => Pin::new(s).poll_shutdown(cx))
    }
}

/// Why reading the next event failed.
#[derive(Debug)]
pub enum ReadError {
    /// The peer sent bytes that break the stream (the error to send back).
    Stream(StreamError),
    /// The socket failed or closed.
    Io(io::Error),
    /// Nothing arrived in time.
    Timeout,
}

/// A connection with its decoder.
pub struct Conn {
    pub io: Io,
    decoder: Decoder,
    buf: Vec<u8>,
}

impl Conn {
    pub fn new(tcp: TcpStream, limits: Limits) -> Conn {
        let _ = tcp.set_nodelay(true);
        Conn {
            io: Io::Plain(tcp),
            decoder: Decoder::new(limits),
            buf: vec![0; 16 * 1024],
        }
    }

    /// The next stream event, waiting at most `timeout` for it.
    pub async fn next(&mut self, timeout: Duration) -> Result<StreamEvent, ReadError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match self.decoder.next() {
                Ok(Some(ev)) => return Ok(ev),
                Ok(None) => {}
                Err(e) => return Err(ReadError::Stream(e)),
            }
            let n = tokio::time::timeout_at(deadline, self.io.read(&mut self.buf))
                .await
                .map_err(|_| ReadError::Timeout)?
                .map_err(ReadError::Io)?;
            if n == 0 {
                return Err(ReadError::Io(io::ErrorKind::UnexpectedEof.into()));
            }
            let Conn { decoder, buf, .. } = self;
            decoder.feed(&buf[..n]);
        }
    }

    pub async fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.io.write_all(bytes).await?;
        self.io.flush().await
    }

    /// Forgets the decoder's state (stream restart after TLS or SASL).
    pub fn restart(&mut self) {
        self.decoder.reset();
    }

    /// Upgrades to TLS as the client (`sni` = the domain we connect to).
    pub async fn tls_client(
        &mut self,
        cfg: Arc<rustls::ClientConfig>,
        sni: &str,
    ) -> io::Result<()> {
        let Io::Plain(tcp) = std::mem::replace(&mut self.io, Io::Gone) else {
            return Err(io::Error::other("TLS is already up"));
        };
        let name = ServerName::try_from(sni.to_string())
            .map_err(|_| io::Error::other(format!("'{sni}' is not a DNS name")))?;
        let tls = tokio_rustls::TlsConnector::from(cfg)
            .connect(name, tcp)
            .await?;
        self.io = Io::Client(Box::new(tls));
        self.restart();
        Ok(())
    }

    /// Upgrades to TLS as the server.
    pub async fn tls_server(&mut self, cfg: Arc<rustls::ServerConfig>) -> io::Result<()> {
        let Io::Plain(tcp) = std::mem::replace(&mut self.io, Io::Gone) else {
            return Err(io::Error::other("TLS is already up"));
        };
        let tls = tokio_rustls::TlsAcceptor::from(cfg).accept(tcp).await?;
        self.io = Io::Server(Box::new(tls));
        self.restart();
        Ok(())
    }

    /// Sends a stream error and closes (best effort, bounded).
    pub async fn fail(&mut self, err: &StreamError) {
        let mut out = err.to_bytes();
        out.extend_from_slice(herald_xmpp::codec::STREAM_CLOSE);
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            let _ = self.write(&out).await;
            let _ = self.io.shutdown().await;
        })
        .await;
    }

    /// Sends the stream footer and closes.
    pub async fn close(&mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            let _ = self.write(herald_xmpp::codec::STREAM_CLOSE).await;
            let _ = self.io.shutdown().await;
        })
        .await;
    }
}
