//! The socket side of a client connection: reads go to the [`SessionActor`], writes come from
//! it over a bounded channel; STARTTLS swaps the plain stream for a TLS one in place.

use actix::Addr;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;

use super::session::{Inbound, IoClosed, SessionActor, TlsDone};

/// What the session asks of the socket.
#[derive(Debug)]
pub enum Out {
    Bytes(Vec<u8>),
    /// Everything before was written: do the TLS handshake now.
    StartTls,
    /// Flush and close.
    Close,
}

/// Bytes read from a client socket at once.
pub const READ_BUFFER: usize = 4096;

enum PhaseEnd<S> {
    Upgrade(S),
    Done,
}

async fn phase<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    session: &Addr<SessionActor>,
    out: &mut mpsc::Receiver<Out>,
) -> PhaseEnd<S> {
    let (mut rd, mut wr) = tokio::io::split(stream);
    // Every idle connection holds this buffer while it waits: keep it small (a larger stanza
    // simply takes several reads).
    let mut buf = vec![0u8; READ_BUFFER];
    loop {
        tokio::select! {
            biased;
            o = out.recv() => match o {
                Some(Out::Bytes(b)) => {
                    if wr.write_all(&b).await.is_err() {
                        return PhaseEnd::Done;
                    }
                }
                Some(Out::StartTls) => {
                    if wr.flush().await.is_err() {
                        return PhaseEnd::Done;
                    }
                    return PhaseEnd::Upgrade(rd.unsplit(wr));
                }
                Some(Out::Close) | None => {
                    let _ = wr.flush().await;
                    let _ = wr.shutdown().await;
                    return PhaseEnd::Done;
                }
            },
            r = rd.read(&mut buf) => match r {
                Ok(0) | Err(_) => return PhaseEnd::Done,
                Ok(n) => {
                    // Waiting for the actor is the backpressure: no more reads until it
                    // processed these bytes.
                    if session.send(Inbound(buf[..n].to_vec())).await.is_err() {
                        return PhaseEnd::Done;
                    }
                }
            }
        }
    }
}

/// Runs a connection until either side closes. `tls_first` is direct TLS (XEP-0368).
pub async fn run(
    tcp: TcpStream,
    tls_first: bool,
    acceptor: TlsAcceptor,
    session: Addr<SessionActor>,
    mut out: mpsc::Receiver<Out>,
) {
    let tls_stream = if tls_first {
        match acceptor.accept(tcp).await {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(error = %e, "direct TLS handshake failed");
                session.do_send(IoClosed);
                return;
            }
        }
    } else {
        match phase(tcp, &session, &mut out).await {
            PhaseEnd::Done => {
                session.do_send(IoClosed);
                return;
            }
            PhaseEnd::Upgrade(tcp) => match acceptor.accept(tcp).await {
                Ok(s) => {
                    if session.send(TlsDone).await.is_err() {
                        return;
                    }
                    s
                }
                Err(e) => {
                    tracing::debug!(error = %e, "STARTTLS handshake failed");
                    session.do_send(IoClosed);
                    return;
                }
            },
        }
    };
    if let PhaseEnd::Upgrade(_) = phase(tls_stream, &session, &mut out).await {
        tracing::debug!("STARTTLS requested inside TLS; closing");
    }
    session.do_send(IoClosed);
}
