//! The socket side of a client connection: reads go to the [`SessionActor`], writes come from
//! it over an [`OutQueue`]; STARTTLS switches the same socket to TLS.
//!
//! Memory per idle connection is what decides how many users a node holds, so this task keeps
//! no buffer of its own while it waits: bytes are read into one scratch buffer per thread, TLS
//! runs on rustls' unbuffered API over that scratch (a partial record is the only thing kept
//! between reads, usually nothing), and output is encrypted into a second per-thread scratch and
//! written straight away; only what the socket does not take at once is kept. Output that piles
//! up while the socket is busy is written in one go (one TLS record, one syscall for many
//! stanzas).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::poll_fn;
use std::io;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use actix::Addr;
use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{ConnectionState, EncodeError, EncryptError};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

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

/// Largest read from a client socket at once: one full TLS record.
pub const READ_BUFFER: usize = 16 * 1024 + 512;
/// Bytes of output a session may have queued for a client that does not read; beyond it the
/// session is closed (see `SessionActor::send_bytes`).
pub const OUT_QUEUE_LIMIT: usize = 4 * 1024 * 1024;
/// Plaintext gathered into one TLS record / one write.
const BATCH: usize = 16 * 1024;
/// Undelivered TLS input kept for one connection: a handshake message may span records up to
/// 64 KiB (rustls' own bound), application records are at most 16 KiB + overhead.
const PENDING_IN_LIMIT: usize = 70 * 1024;
/// How long a closing connection may take to flush its last bytes.
const CLOSE_FLUSH: Duration = Duration::from_secs(5);
/// How long a closed connection's late input is read and discarded (see `Conn::close`).
const LINGER: Duration = Duration::from_secs(2);
/// The most input discarded while lingering.
const LINGER_BYTES: usize = 1 << 20;

/// Reads and drops input until EOF, an error or [`LINGER_BYTES`].
async fn discard_input(tcp: &TcpStream) {
    let mut buf = [0u8; 4096];
    let mut left = LINGER_BYTES;
    while left > 0 {
        if tcp.readable().await.is_err() {
            return;
        }
        match tcp.try_read(&mut buf) {
            Ok(0) => return,
            Ok(n) => left = left.saturating_sub(n),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(_) => return,
        }
    }
}
/// Bound on rustls state transitions for one batch of input (each consumes bytes or output).
const MAX_TLS_STEPS: usize = 100_000;

thread_local! {
    static READ_SCRATCH: RefCell<Vec<u8>> = RefCell::new(vec![0; READ_BUFFER]);
    static WIRE_SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

struct QueueState {
    items: RefCell<VecDeque<Out>>,
    bytes: Cell<usize>,
    limit: usize,
    waker: Cell<Option<Waker>>,
    sender_gone: Cell<bool>,
}

impl QueueState {
    fn wake(&self) {
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }
}

/// The session's end of its output queue (same thread as the socket task). Dropping it closes
/// the connection once what was queued is written.
pub struct OutQueue(Rc<QueueState>);

/// The socket task's end.
pub struct OutReceiver(Rc<QueueState>);

/// A queue holding at most `limit` bytes of stanzas (control items always fit).
pub fn out_queue(limit: usize) -> (OutQueue, OutReceiver) {
    let s = Rc::new(QueueState {
        items: RefCell::new(VecDeque::new()),
        bytes: Cell::new(0),
        limit,
        waker: Cell::new(None),
        sender_gone: Cell::new(false),
    });
    (OutQueue(s.clone()), OutReceiver(s))
}

impl OutQueue {
    /// Queues `o`; gives it back when the bytes would exceed the limit.
    pub fn try_send(&self, o: Out) -> Result<(), Out> {
        let s = &self.0;
        if let Out::Bytes(b) = &o {
            let total = s.bytes.get() + b.len();
            if total > s.limit {
                return Err(o);
            }
            s.bytes.set(total);
        }
        s.items.borrow_mut().push_back(o);
        s.wake();
        Ok(())
    }
}

impl Drop for OutQueue {
    fn drop(&mut self) {
        self.0.sender_gone.set(true);
        self.0.wake();
    }
}

impl OutReceiver {
    fn pop(&self) -> Option<Out> {
        let s = &self.0;
        let mut items = s.items.borrow_mut();
        let o = items.pop_front()?;
        if let Out::Bytes(b) = &o {
            s.bytes.set(s.bytes.get() - b.len());
        }
        if items.is_empty() && items.capacity() > 0 {
            *items = VecDeque::new();
        }
        Some(o)
    }

    /// Pops the next item if it is bytes and fits in `room`.
    fn pop_bytes(&self, room: usize) -> Option<Vec<u8>> {
        let fits = matches!(self.0.items.borrow().front(), Some(Out::Bytes(b)) if b.len() <= room);
        match fits.then(|| self.pop()).flatten() {
            Some(Out::Bytes(b)) => Some(b),
            _ => None,
        }
    }

    fn poll_next(&self, cx: &mut Context<'_>) -> Poll<Option<Out>> {
        if let Some(o) = self.pop() {
            return Poll::Ready(Some(o));
        }
        if self.0.sender_gone.get() {
            return Poll::Ready(None);
        }
        self.0.waker.set(Some(cx.waker().clone()));
        Poll::Pending
    }
}

/// Why a connection ended (for the debug log).
#[derive(Debug, thiserror::Error)]
enum End {
    #[error("closed by the server")]
    Server,
    #[error("closed by the client")]
    Client,
    #[error("socket: {0}")]
    Io(#[from] io::Error),
    /// Boxed: rustls' error is 64 bytes, and a connection's task keeps room for an `End`.
    #[error("TLS: {0}")]
    Tls(Box<rustls::Error>),
    #[error("session actor gone")]
    Session,
}

impl From<rustls::Error> for End {
    fn from(e: rustls::Error) -> Self {
        End::Tls(Box::new(e))
    }
}

/// What rustls made of a batch of input.
#[derive(Debug, Default)]
struct Driven {
    /// Bytes of the input consumed.
    used: usize,
    /// The peer sent close_notify.
    peer_closed: bool,
    /// `send` could not be encrypted yet (the handshake is still running).
    unsent: bool,
}

/// Runs rustls over `incoming` until it needs more input. Handshake records and encrypted
/// `send` (once the connection may send application data) are appended to `wire`, decrypted
/// application data to `plain`. With `close`, a close_notify follows `send`.
fn drive(
    conn: &mut UnbufferedServerConnection,
    incoming: &mut [u8],
    plain: &mut Vec<u8>,
    wire: &mut Vec<u8>,
    mut send: Option<&[u8]>,
    mut close: bool,
) -> Result<Driven, rustls::Error> {
    let mut d = Driven::default();
    for _ in 0..MAX_TLS_STEPS {
        let status = conn.process_tls_records(&mut incoming[d.used..]);
        let discard = status.discard;
        let state = match status.state {
            Ok(state) => state,
            Err(e) => {
                // rustls queued the alert that tells the peer why (RFC 8446 §6.2): it goes
                // out before the connection closes.
                encode_alert(conn, wire);
                return Err(e);
            }
        };
        match state {
            ConnectionState::ReadTraffic(mut rt) => {
                let mut failed = None;
                while let Some(rec) = rt.next_record() {
                    match rec {
                        Ok(rec) => plain.extend_from_slice(rec.payload),
                        Err(e) => {
                            failed = Some(e);
                            break;
                        }
                    }
                }
                if let Some(e) = failed {
                    encode_alert(conn, wire);
                    return Err(e);
                }
            }
            ConnectionState::EncodeTlsData(mut enc) => {
                append_with(wire, 4096, |buf| match enc.encode(buf) {
                    Ok(n) => Ok(n),
                    Err(EncodeError::InsufficientSize(e)) => Err(Some(e.required_size)),
                    Err(_) => Err(None),
                })?;
            }
            ConnectionState::TransmitTlsData(mut t) => {
                // The caller writes `wire` before anything else, so it counts as transmitted.
                if let (Some(data), Some(mut w)) = (send, t.may_encrypt_app_data()) {
                    encrypt(&mut w, data, wire)?;
                    send = None;
                }
                t.done();
            }
            ConnectionState::WriteTraffic(mut w) => {
                if let Some(data) = send.take() {
                    encrypt(&mut w, data, wire)?;
                } else if close {
                    close = false;
                    append_with(wire, 64, |buf| match w.queue_close_notify(buf) {
                        Ok(n) => Ok(n),
                        Err(EncryptError::InsufficientSize(e)) => Err(Some(e.required_size)),
                        Err(_) => Err(None),
                    })?;
                } else {
                    d.used += discard;
                    return Ok(d);
                }
            }
            ConnectionState::BlockedHandshake | ConnectionState::Closed => {
                d.used += discard;
                d.unsent = send.is_some();
                return Ok(d);
            }
            ConnectionState::PeerClosed => d.peer_closed = true,
            // Early data is not enabled in our config; anything else is a state this code
            // does not know.
            other => {
                return Err(rustls::Error::General(format!(
                    "unexpected TLS state {other:?}"
                )))
            }
        }
        d.used += discard;
    }
    Err(rustls::Error::General(
        "TLS processing did not settle".into(),
    ))
}

/// After a TLS error: appends the fatal alert rustls queued (if any) to `wire`.
fn encode_alert(conn: &mut UnbufferedServerConnection, wire: &mut Vec<u8>) {
    for _ in 0..4 {
        // No input: only what is queued comes out; the failed records are not read again.
        let status = conn.process_tls_records(&mut []);
        let Ok(ConnectionState::EncodeTlsData(mut enc)) = status.state else {
            return;
        };
        let encoded = append_with(wire, 64, |buf| match enc.encode(buf) {
            Ok(n) => Ok(n),
            Err(EncodeError::InsufficientSize(e)) => Err(Some(e.required_size)),
            Err(_) => Err(None),
        });
        if encoded.is_err() {
            return;
        }
    }
}

fn encrypt(
    w: &mut rustls::unbuffered::WriteTraffic<'_, rustls::server::ServerConnectionData>,
    data: &[u8],
    wire: &mut Vec<u8>,
) -> Result<(), rustls::Error> {
    // 5 bytes of header, 1 of content type and 16 of tag per 16 KiB record.
    let hint = data.len() + (data.len() / (16 * 1024) + 1) * 32;
    append_with(wire, hint, |buf| match w.encrypt(data, buf) {
        Ok(n) => Ok(n),
        Err(EncryptError::InsufficientSize(e)) => Err(Some(e.required_size)),
        Err(_) => Err(None),
    })
}

/// Appends what `f` writes into fresh room at the end of `wire`; `f` answers `Err(Some(n))`
/// when it needs `n` bytes of room.
fn append_with(
    wire: &mut Vec<u8>,
    hint: usize,
    mut f: impl FnMut(&mut [u8]) -> Result<usize, Option<usize>>,
) -> Result<(), rustls::Error> {
    let start = wire.len();
    let mut room = hint;
    for _ in 0..2 {
        wire.resize(start + room, 0);
        match f(&mut wire[start..]) {
            Ok(n) => {
                wire.truncate(start + n);
                return Ok(());
            }
            Err(Some(needed)) if needed > room => room = needed,
            Err(_) => break,
        }
    }
    wire.truncate(start);
    Err(rustls::Error::General("TLS record encoding failed".into()))
}

/// Writes what the socket takes now; keeps the rest in `pending`, in order.
fn emit(tcp: &TcpStream, pending: &mut Vec<u8>, data: &[u8]) -> Result<(), End> {
    if data.is_empty() {
        return Ok(());
    }
    if !pending.is_empty() {
        pending.extend_from_slice(data);
        return try_flush(tcp, pending);
    }
    let off = write_some(tcp, data)?;
    pending.extend_from_slice(&data[off..]);
    Ok(())
}

/// Writes as much of `pending` as the socket takes now.
fn try_flush(tcp: &TcpStream, pending: &mut Vec<u8>) -> Result<(), End> {
    let off = write_some(tcp, pending)?;
    if off == pending.len() {
        *pending = Vec::new();
    } else {
        pending.drain(..off);
    }
    Ok(())
}

/// Non-blocking writes until the socket would block; returns the bytes written.
fn write_some(tcp: &TcpStream, data: &[u8]) -> Result<usize, End> {
    let mut off = 0;
    while off < data.len() {
        match tcp.try_write(&data[off..]) {
            Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero).into()),
            Ok(n) => off += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(off)
}

/// What a read produced.
enum Read {
    /// Nothing yet (spurious readiness).
    Nothing,
    /// Plaintext for the session (may be empty during the handshake).
    Data(Vec<u8>),
    /// The client closed its side.
    Eof,
}

struct Conn {
    tcp: TcpStream,
    tls: Option<UnbufferedServerConnection>,
    /// Bytes for the socket that it did not take yet; usually empty.
    pending_out: Vec<u8>,
    /// What a connection needs only now and then, boxed (and dropped when empty) so that an
    /// idle connection's task stays small.
    extra: Option<Box<Extra>>,
}

/// The rarely used part of a [`Conn`].
#[derive(Default)]
struct Extra {
    /// TLS bytes received but not yet processed (a partial record).
    pending_in: Vec<u8>,
    /// Plaintext the session sent before the TLS handshake completed; sent right after it.
    early_plain: Vec<u8>,
    /// A STARTTLS handshake is running; the session hears when it completes.
    upgrading: bool,
}

impl Extra {
    fn is_empty(&self) -> bool {
        self.pending_in.is_empty() && self.early_plain.is_empty() && !self.upgrading
    }
}

impl Conn {
    fn start_tls(&mut self, cfg: &Arc<rustls::ServerConfig>) -> Result<(), End> {
        self.tls = Some(UnbufferedServerConnection::new(cfg.clone())?);
        Ok(())
    }

    fn handshaking(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.is_handshaking())
    }

    /// Drops the rarely used part once it holds nothing.
    fn tidy(&mut self) {
        if self.extra.as_ref().is_some_and(|x| x.is_empty()) {
            self.extra = None;
        }
    }

    /// Once a STARTTLS handshake completed: sends what the session wrote meanwhile, and says
    /// whether the upgrade just finished (the session is told then).
    fn handshake_done(&mut self) -> Result<bool, End> {
        if self.handshaking() {
            return Ok(false);
        }
        let Some(x) = self.extra.as_mut() else {
            return Ok(false);
        };
        let early = std::mem::take(&mut x.early_plain);
        let upgraded = std::mem::take(&mut x.upgrading);
        self.tidy();
        if !early.is_empty() {
            self.send(&early, false)?;
        }
        Ok(upgraded)
    }

    fn pending_in_len(&self) -> usize {
        self.extra.as_ref().map_or(0, |x| x.pending_in.len())
    }

    /// One non-blocking read; TLS records are processed at once.
    fn read(&mut self) -> Result<Read, End> {
        READ_SCRATCH.with_borrow_mut(|scratch| {
            let n = match self.tcp.try_read(scratch) {
                Ok(0) => return Ok(Read::Eof),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Read::Nothing),
                Err(e) => return Err(e.into()),
            };
            let Some(tls) = self.tls.as_mut() else {
                return Ok(Read::Data(scratch[..n].to_vec()));
            };
            let mut plain = Vec::new();
            let driven = WIRE_SCRATCH.with_borrow_mut(|wire| {
                wire.clear();
                let driven = match self.extra.as_mut() {
                    Some(x) if !x.pending_in.is_empty() => {
                        x.pending_in.extend_from_slice(&scratch[..n]);
                        let d = drive(tls, &mut x.pending_in, &mut plain, wire, None, false);
                        if let Ok(d) = &d {
                            x.pending_in.drain(..d.used);
                            if x.pending_in.is_empty() {
                                x.pending_in = Vec::new();
                            }
                        }
                        d
                    }
                    _ => {
                        let d = drive(tls, &mut scratch[..n], &mut plain, wire, None, false);
                        if let Ok(d) = &d {
                            if d.used < n {
                                let x = self.extra.get_or_insert_with(Box::default);
                                x.pending_in.extend_from_slice(&scratch[d.used..n]);
                            }
                        }
                        d
                    }
                };
                // Handshake records (and alerts) go out even when processing failed.
                let sent = emit(&self.tcp, &mut self.pending_out, wire);
                let driven = driven?;
                sent?;
                Ok::<_, End>(driven)
            })?;
            if self.pending_in_len() > PENDING_IN_LIMIT {
                return Err(rustls::Error::General("TLS record too large".into()).into());
            }
            self.tidy();
            if driven.peer_closed && plain.is_empty() {
                return Ok(Read::Eof);
            }
            Ok(Read::Data(plain))
        })
    }

    /// Encrypts (under TLS) and writes `data`, and with `close` a close_notify after it.
    fn send(&mut self, data: &[u8], close: bool) -> Result<(), End> {
        let Some(tls) = self.tls.as_mut() else {
            return emit(&self.tcp, &mut self.pending_out, data);
        };
        WIRE_SCRATCH.with_borrow_mut(|wire| {
            wire.clear();
            let mut plain = Vec::new();
            let send = (!data.is_empty()).then_some(data);
            if drive(tls, &mut [], &mut plain, wire, send, close)?.unsent {
                let early = &mut self.extra.get_or_insert_with(Box::default).early_plain;
                if early.len() + data.len() > OUT_QUEUE_LIMIT {
                    return Err(rustls::Error::General(
                        "output piled up during the handshake".into(),
                    )
                    .into());
                }
                early.extend_from_slice(data);
            }
            if !plain.is_empty() {
                // Cannot happen: all input is processed as it is read.
                tracing::warn!(bytes = plain.len(), "TLS plaintext left over while sending");
            }
            let r = emit(&self.tcp, &mut self.pending_out, wire);
            if wire.capacity() > 4 * BATCH {
                *wire = Vec::new();
            }
            r
        })
    }

    /// Waits until everything pending is written.
    async fn flush(&mut self) -> Result<(), End> {
        while !self.pending_out.is_empty() {
            self.tcp.writable().await?;
            try_flush(&self.tcp, &mut self.pending_out)?;
        }
        Ok(())
    }

    /// close_notify (under TLS), flush, FIN; bounded in time.
    async fn close(&mut self) {
        let tls_up = self.tls.is_some() && !self.handshaking();
        if tls_up && self.send(&[], true).is_err() {
            return;
        }
        if tokio::time::timeout(CLOSE_FLUSH, self.flush())
            .await
            .is_ok_and(|r| r.is_ok())
        {
            let _ = self.tcp.shutdown().await;
            // Lingering close: closing a socket with unread input makes the kernel send a
            // reset, which can destroy our stream error before the client reads it (a client
            // cut for flooding always has unread input). Read and discard until the client
            // closes too, bounded in time and bytes.
            let _ = tokio::time::timeout(LINGER, discard_input(&self.tcp)).await;
        }
    }

    /// Writes what the stopped session left queued, up to its `Close`, then closes.
    async fn last_words(&mut self, out: &OutReceiver) {
        while let Some(item) = out.pop() {
            match item {
                Out::Bytes(b) => {
                    if self.send(&b, false).is_err() {
                        return;
                    }
                }
                Out::Close => break,
                Out::StartTls => return,
            }
        }
        Box::pin(self.close()).await;
    }

    async fn serve(
        &mut self,
        cfg: &Arc<rustls::ServerConfig>,
        session: &Addr<SessionActor>,
        out: &OutReceiver,
    ) -> Result<(), End> {
        loop {
            let idle_out = self.pending_out.is_empty();
            // One hand-written poll instead of `select!` over `TcpStream::ready`: readiness is
            // kept in the socket's registration, so an idle connection's task carries no waiter
            // (what keeps this task in a smaller allocator size class, see `run`).
            let wake = poll_fn(|cx| {
                if idle_out {
                    if let Poll::Ready(o) = out.poll_next(cx) {
                        return Poll::Ready(Ok(Wake::Out(o)));
                    }
                }
                let writable = match idle_out {
                    true => false,
                    false => match self.tcp.poll_write_ready(cx) {
                        Poll::Ready(r) => r.map(|()| true)?,
                        Poll::Pending => false,
                    },
                };
                let readable = match self.tcp.poll_read_ready(cx) {
                    Poll::Ready(r) => r.map(|()| true)?,
                    Poll::Pending => false,
                };
                if readable || writable {
                    Poll::Ready(Ok::<_, io::Error>(Wake::Socket { readable, writable }))
                } else {
                    Poll::Pending
                }
            })
            .await?;
            match wake {
                Wake::Out(None | Some(Out::Close)) => {
                    // Boxed: rare, and its timer would otherwise make every idle
                    // connection's task larger.
                    Box::pin(self.close()).await;
                    return Err(End::Server);
                }
                Wake::Out(Some(Out::StartTls)) => {
                    Box::pin(self.flush()).await?;
                    self.start_tls(cfg)?;
                    self.extra.get_or_insert_with(Box::default).upgrading = true;
                }
                Wake::Out(Some(Out::Bytes(mut b))) => {
                    while b.len() < BATCH {
                        match out.pop_bytes(BATCH - b.len()) {
                            Some(more) => b.extend_from_slice(&more),
                            None => break,
                        }
                    }
                    self.send(&b, false)?;
                }
                Wake::Socket { readable, writable } => {
                    if writable {
                        try_flush(&self.tcp, &mut self.pending_out)?;
                    }
                    if readable {
                        match self.read()? {
                            Read::Nothing => {}
                            Read::Eof => return Err(End::Client),
                            Read::Data(plain) => {
                                if self.handshake_done()? {
                                    // The mailbox is ordered: the session hears of TLS before
                                    // it gets the input that follows.
                                    session.do_send(TlsDone);
                                }
                                if !plain.is_empty() {
                                    // Waiting for the actor is the backpressure: nothing more
                                    // is read until it processed these bytes.
                                    // Boxed: actix' request future is large and an idle
                                    // connection should not carry its space.
                                    Box::pin(session.send(Inbound(plain)))
                                        .await
                                        .map_err(|_| End::Session)?;
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// What woke a connection's task.
enum Wake {
    /// The session's output queue (idle socket output only).
    Out(Option<Out>),
    Socket {
        readable: bool,
        writable: bool,
    },
}

/// Runs a connection until either side closes. `tls_first` is direct TLS (XEP-0368);
/// `release` is dropped when the connection ends.
///
/// An `async` block rather than an `async fn`: a function's future keeps its arguments and the
/// locals they are moved into side by side, and the connection (rustls' state is most of it)
/// would be stored twice in every idle connection's task.
pub fn run<R: 'static>(
    tcp: TcpStream,
    tls_first: bool,
    cfg: Arc<rustls::ServerConfig>,
    session: Addr<SessionActor>,
    out: OutReceiver,
    release: R,
) -> impl std::future::Future<Output = ()> {
    let mut conn = Conn {
        tcp,
        tls: None,
        pending_out: Vec::new(),
        extra: None,
    };
    async move {
        let end = if tls_first {
            conn.start_tls(&cfg)
        } else {
            Ok(())
        };
        let end = match end {
            Ok(()) => conn.serve(&cfg, &session, &out).await,
            Err(e) => Err(e),
        };
        if matches!(end, Err(End::Session)) {
            // The session stopped while this task waited for it to take input (e.g. it cut a
            // flooding client): what it queued last — a stream error, the stream close — still
            // goes out, then the connection closes cleanly.
            Box::pin(conn.last_words(&out)).await;
        }
        if let Err(e) = end {
            match e {
                End::Server | End::Client | End::Session => {}
                End::Tls(_) if conn.handshaking() => {
                    tracing::debug!(error = %e, "client TLS handshake failed")
                }
                _ => tracing::debug!(error = %e, "client connection ended"),
            }
        }
        session.do_send(IoClosed);
        drop(release);
    }
}

#[cfg(test)]
mod tests;
