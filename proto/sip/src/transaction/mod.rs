//! RFC 3261 §17 transactions for reliable transports (TCP, TLS), as pure state machines,
//! with the RFC 6026 `Accepted` states for INVITE 2xx.
//!
//! Each machine takes inputs (a response, a retransmitted request or ACK, a response from the
//! transaction user (TU), a timer that fired, a transport error) together with `now`, and
//! returns [`Action`]s: messages to send, messages for the TU, timers to arm, termination.
//! The owner keeps the machines in a map by [`TransactionKey`], arms real timers for
//! [`Action::StartTimer`] and calls `on_timer(kind, now)` when they fire (a timer that is no
//! longer armed, or fired early, is ignored, so cancelling timers is optional).
//!
//! On a reliable transport nothing is retransmitted by the transaction layer, so timers
//! A, E and G are never started, and timers D, I, J and K are zero by default (the machine
//! goes straight to `Terminated`; [`Config`] can make them non-zero). The timeouts that
//! remain: B (INVITE client, no response), F (non-INVITE client, no final response), H
//! (INVITE server, no ACK after a failure response), L and M (RFC 6026: absorb 2xx and ACK
//! retransmissions), all 64·T1.
//!
//! - [`client`]: [`ClientTransaction`] (INVITE and non-INVITE).
//! - [`server`]: [`ServerTransaction`] (INVITE and non-INVITE).
//! - here: shared types, transaction keys (§17.1.3, §17.2.3), ACK and CANCEL construction.

pub mod client;
pub mod server;

use std::time::{Duration, Instant};

use crate::header::HeaderName;
use crate::message::{Message, Method, Request, Response};
use crate::typed::HeaderError;

pub use client::{ClientState, ClientTransaction};
pub use server::{ServerState, ServerTransaction};

/// Timer durations. The defaults are RFC 3261's for a reliable transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// T1, the RTT estimate (500 ms); B, F, H, L and M are 64·T1.
    pub t1: Duration,
    /// Timer D (INVITE client, Completed → Terminated): 0 on reliable transports.
    pub timer_d: Duration,
    /// Timer I (INVITE server, Confirmed → Terminated): 0 on reliable transports.
    pub timer_i: Duration,
    /// Timer J (non-INVITE server, Completed → Terminated): 0 on reliable transports.
    pub timer_j: Duration,
    /// Timer K (non-INVITE client, Completed → Terminated): 0 on reliable transports.
    pub timer_k: Duration,
    /// Whether an INVITE server transaction sends 100 Trying at once (§17.2.1 allows
    /// skipping it only when the TU answers within 200 ms, which a machine cannot know).
    pub send_trying: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            t1: Duration::from_millis(500),
            timer_d: Duration::ZERO,
            timer_i: Duration::ZERO,
            timer_j: Duration::ZERO,
            timer_k: Duration::ZERO,
            send_trying: true,
        }
    }
}

impl Config {
    /// 64·T1: timers B, F, H, L, M.
    pub fn timeout(&self) -> Duration {
        self.t1 * 64
    }
}

/// The RFC 3261 (and RFC 6026) timers used on reliable transports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimerKind {
    /// INVITE client transaction timeout (Calling).
    B,
    /// INVITE client: wait for response retransmissions (Completed).
    D,
    /// Non-INVITE client transaction timeout (Trying, Proceeding).
    F,
    /// INVITE server: wait for ACK (Completed).
    H,
    /// INVITE server: wait for ACK retransmissions (Confirmed).
    I,
    /// Non-INVITE server: wait for request retransmissions (Completed).
    J,
    /// Non-INVITE client: wait for response retransmissions (Completed).
    K,
    /// INVITE server: absorb INVITE retransmissions after a 2xx (Accepted, RFC 6026).
    L,
    /// INVITE client: accept 2xx retransmissions (Accepted, RFC 6026).
    M,
}

/// Why a transaction ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Termination {
    /// The exchange finished normally.
    Completed,
    /// Timer B or F (no response; the TU acts as if it got 408) or H (no ACK).
    Timeout,
    /// The transport reported an error (connection lost); the TU treats it like 503.
    TransportError,
}

/// What the owner of a transaction must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send this message on the transaction's connection.
    Send(Message),
    /// Pass this message to the transaction user.
    Deliver(Message),
    /// Arm a timer; call `on_timer(kind, now)` when it fires.
    StartTimer {
        /// Which timer.
        kind: TimerKind,
        /// When it fires.
        at: Instant,
    },
    /// The transaction is over; forget it.
    Terminated(Termination),
}

/// Identifies a transaction for matching messages to it.
///
/// Client side (§17.1.3): top Via branch and CSeq method. Server side (§17.2.3): top Via
/// branch, sent-by and method, with ACK matching INVITE. Only RFC 3261 branches (magic
/// cookie) identify transactions reliably; RFC 2543 peers are not supported.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TransactionKey {
    /// The top Via branch.
    pub branch: String,
    /// The top Via sent-by (server keys only; empty for client keys).
    pub sent_by: String,
    /// The method (INVITE for an ACK on the server side).
    pub method: Method,
}

impl TransactionKey {
    /// The key of a client transaction sending `req`.
    pub fn client(req: &Request) -> Result<Self, HeaderError> {
        let via = req.headers.top_via()?;
        Ok(TransactionKey {
            branch: branch(&via)?,
            sent_by: String::new(),
            method: req.method.clone(),
        })
    }

    /// The key of the client transaction `resp` belongs to.
    pub fn for_response(resp: &Response) -> Result<Self, HeaderError> {
        let via = resp.headers.top_via()?;
        Ok(TransactionKey {
            branch: branch(&via)?,
            sent_by: String::new(),
            method: resp.headers.cseq()?.method,
        })
    }

    /// The key of the server transaction `req` belongs to (or creates).
    pub fn for_request(req: &Request) -> Result<Self, HeaderError> {
        let via = req.headers.top_via()?;
        let method = match req.method {
            Method::Ack => Method::Invite,
            ref m => m.clone(),
        };
        Ok(TransactionKey {
            branch: branch(&via)?,
            sent_by: via.sent_by().to_ascii_lowercase(),
            method,
        })
    }

    /// For a CANCEL, the key of the INVITE server transaction it cancels (§9.2).
    pub fn cancelled_invite(cancel: &Request) -> Result<Self, HeaderError> {
        let mut key = TransactionKey::for_request(cancel)?;
        key.method = Method::Invite;
        Ok(key)
    }
}

fn branch(via: &crate::typed::Via) -> Result<String, HeaderError> {
    via.branch()
        .map(str::to_string)
        .ok_or(HeaderError::Invalid {
            name: HeaderName::Via,
            reason: "no branch",
        })
}

/// Copies every line of `names` from `from` into `to`, in order.
fn copy_headers(from: &Request, to: &mut Request, names: &[HeaderName]) {
    for h in from.headers.iter() {
        if names.contains(&h.name) {
            to.headers.push(h.name.clone(), h.value.clone());
        }
    }
}

/// The ACK a client INVITE transaction sends for a 300–699 response (§17.1.1.3): same
/// Request-URI, top Via only, From, Call-ID and Route of the INVITE, To of the response,
/// CSeq number of the INVITE with method ACK.
pub fn ack_for(invite: &Request, resp: &Response) -> Request {
    let mut ack = Request::new(Method::Ack, invite.uri.clone());
    if let Some(via) = invite.headers.values(&HeaderName::Via).next() {
        ack.headers.push(HeaderName::Via, via);
    }
    ack.headers.push(HeaderName::MaxForwards, "70");
    copy_headers(invite, &mut ack, &[HeaderName::From]);
    if let Some(to) = resp.headers.get(&HeaderName::To) {
        ack.headers.push(HeaderName::To, to);
    }
    copy_headers(invite, &mut ack, &[HeaderName::CallId]);
    let seq = invite.headers.cseq().map(|c| c.seq).unwrap_or(0);
    ack.headers.push(HeaderName::CSeq, format!("{seq} ACK"));
    copy_headers(invite, &mut ack, &[HeaderName::Route]);
    ack
}

/// The CANCEL for a pending request (§9.1): same Request-URI, top Via, From, To, Call-ID,
/// Route and CSeq number, method CANCEL. Send it in its own client transaction.
pub fn cancel_for(req: &Request) -> Request {
    let mut cancel = Request::new(Method::Cancel, req.uri.clone());
    if let Some(via) = req.headers.values(&HeaderName::Via).next() {
        cancel.headers.push(HeaderName::Via, via);
    }
    cancel.headers.push(HeaderName::MaxForwards, "70");
    copy_headers(
        req,
        &mut cancel,
        &[HeaderName::From, HeaderName::To, HeaderName::CallId],
    );
    let seq = req.headers.cseq().map(|c| c.seq).unwrap_or(0);
    cancel
        .headers
        .push(HeaderName::CSeq, format!("{seq} CANCEL"));
    copy_headers(req, &mut cancel, &[HeaderName::Route]);
    cancel
}

/// Armed timers of one machine: a fired timer counts only if it is armed and due.
#[derive(Debug, Default, Clone)]
struct Timers(Vec<(TimerKind, Instant)>);

impl Timers {
    fn start(&mut self, kind: TimerKind, at: Instant, out: &mut Vec<Action>) {
        self.0.retain(|(k, _)| *k != kind);
        self.0.push((kind, at));
        out.push(Action::StartTimer { kind, at });
    }

    /// Whether `kind` is armed and due at `now`; disarms it if so.
    fn fire(&mut self, kind: TimerKind, now: Instant) -> bool {
        match self.0.iter().position(|(k, at)| *k == kind && *at <= now) {
            Some(i) => {
                self.0.swap_remove(i);
                true
            }
            None => false,
        }
    }

    fn clear(&mut self) {
        self.0.clear();
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_server;
