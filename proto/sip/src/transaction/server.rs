//! Server transactions (RFC 3261 §17.2, RFC 6026 §8.5–8.7) on a reliable transport.
//!
//! INVITE: created in `Proceeding` (request delivered, 100 Trying sent) —TU 1xx→ sent,
//! `Proceeding` —TU 2xx→ sent, `Accepted` (timer L; TU 2xx retransmissions pass, ACKs go to
//! the TU) → `Terminated`; —TU 300-699→ sent, `Completed` (timer H) —ACK→ `Confirmed` (timer
//! I, 0 by default) → `Terminated`; timer H → `Terminated(Timeout)`.
//!
//! Non-INVITE: created in `Trying` (request delivered) —TU 1xx→ `Proceeding` —TU final→
//! `Completed` (timer J, 0 by default) → `Terminated`.
//!
//! A retransmitted request is answered with the last response sent (none in `Trying`).

use std::time::Instant;

use super::{Action, Config, Termination, TimerKind, Timers};
use crate::message::{Message, Method, Request, Response};

/// The state of a server transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerState {
    /// Non-INVITE received, the TU has not answered.
    Trying,
    /// INVITE received, or a provisional response sent.
    Proceeding,
    /// A final response sent (INVITE: 300–699, waiting for the ACK).
    Completed,
    /// INVITE: the ACK for a failure response arrived.
    Confirmed,
    /// INVITE: a 2xx was sent (RFC 6026).
    Accepted,
    /// Over.
    Terminated,
}

/// A server transaction. See the module documentation.
#[derive(Debug, Clone)]
pub struct ServerTransaction {
    method: Method,
    config: Config,
    state: ServerState,
    /// The last response sent, for retransmitted requests.
    last: Option<Response>,
    timers: Timers,
}

impl ServerTransaction {
    /// Starts a transaction for a new request: delivers it to the TU and, for an INVITE,
    /// answers 100 Trying when [`Config::send_trying`] is set.
    ///
    /// An ACK never starts a server transaction: the owner passes an ACK matching no
    /// transaction (the ACK of a 2xx) to the TU directly.
    pub fn new(request: Request, config: Config, _now: Instant) -> (Self, Vec<Action>) {
        let invite = request.method == Method::Invite;
        let mut t = ServerTransaction {
            method: request.method.clone(),
            config,
            state: if invite {
                ServerState::Proceeding
            } else {
                ServerState::Trying
            },
            last: None,
            timers: Timers::default(),
        };
        let mut out = Vec::with_capacity(2);
        if invite && config.send_trying {
            let trying = Response::for_request(&request, 100, None);
            t.last = Some(trying.clone());
            out.push(Action::Send(Message::Response(trying)));
        }
        out.push(Action::Deliver(Message::Request(request)));
        (t, out)
    }

    /// The current state.
    pub fn state(&self) -> ServerState {
        self.state
    }

    /// The method of the request that created the transaction.
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// The TU answers. Responses the state does not allow (a second final response, a
    /// response after termination) are dropped: nothing is sent.
    pub fn respond(&mut self, resp: Response, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        if self.method == Method::Invite {
            self.invite_respond(resp, now, &mut out);
        } else {
            self.non_invite_respond(resp, now, &mut out);
        }
        out
    }

    fn send(&mut self, resp: Response, out: &mut Vec<Action>) {
        self.last = Some(resp.clone());
        out.push(Action::Send(Message::Response(resp)));
    }

    fn invite_respond(&mut self, resp: Response, now: Instant, out: &mut Vec<Action>) {
        use ServerState as S;
        let timeout = now + self.config.timeout();
        match (self.state, resp.status) {
            (S::Proceeding, 100..=199) => self.send(resp, out),
            (S::Proceeding, 200..=299) => {
                self.send(resp, out);
                self.state = S::Accepted;
                self.timers.start(TimerKind::L, timeout, out);
            }
            (S::Proceeding, _) => {
                self.send(resp, out);
                self.state = S::Completed;
                // Timer G (retransmission) is not used on reliable transports.
                self.timers.start(TimerKind::H, timeout, out);
            }
            // The TU retransmits its 2xx until the ACK arrives (§13.3.1.4).
            (S::Accepted, 200..=299) => self.send(resp, out),
            _ => {}
        }
    }

    fn non_invite_respond(&mut self, resp: Response, now: Instant, out: &mut Vec<Action>) {
        use ServerState as S;
        match (self.state, resp.is_final()) {
            (S::Trying | S::Proceeding, false) => {
                self.send(resp, out);
                self.state = S::Proceeding;
            }
            (S::Trying | S::Proceeding, true) => {
                self.send(resp, out);
                self.state = S::Completed;
                let j = self.config.timer_j;
                if j.is_zero() {
                    self.terminate(Termination::Completed, out);
                } else {
                    self.timers.start(TimerKind::J, now + j, out);
                }
            }
            _ => {}
        }
    }

    /// A request matched to this transaction arrived: a retransmission, or the ACK of a
    /// failure response (or, in `Accepted`, of the 2xx).
    pub fn on_request(&mut self, req: Request, now: Instant) -> Vec<Action> {
        use ServerState as S;
        let mut out = Vec::new();
        if req.method == Method::Ack {
            match self.state {
                S::Completed => {
                    self.timers.clear();
                    self.state = S::Confirmed;
                    let i = self.config.timer_i;
                    if i.is_zero() {
                        self.terminate(Termination::Completed, &mut out);
                    } else {
                        self.timers.start(TimerKind::I, now + i, &mut out);
                    }
                }
                S::Accepted => out.push(Action::Deliver(Message::Request(req))),
                _ => {}
            }
            return out;
        }
        if req.method != self.method {
            return out;
        }
        if let (S::Proceeding | S::Completed, Some(last)) = (self.state, &self.last) {
            out.push(Action::Send(Message::Response(last.clone())));
        }
        out
    }

    /// A timer this transaction armed fired.
    pub fn on_timer(&mut self, kind: TimerKind, now: Instant) -> Vec<Action> {
        use ServerState as S;
        let mut out = Vec::new();
        if !self.timers.fire(kind, now) {
            return out;
        }
        match (self.state, kind) {
            (S::Completed, TimerKind::H) => self.terminate(Termination::Timeout, &mut out),
            (S::Confirmed, TimerKind::I)
            | (S::Completed, TimerKind::J)
            | (S::Accepted, TimerKind::L) => self.terminate(Termination::Completed, &mut out),
            _ => {}
        }
        out
    }

    /// The connection failed.
    pub fn on_transport_error(&mut self, _now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        if self.state != ServerState::Terminated {
            self.terminate(Termination::TransportError, &mut out);
        }
        out
    }

    fn terminate(&mut self, why: Termination, out: &mut Vec<Action>) {
        self.timers.clear();
        self.last = None;
        self.state = ServerState::Terminated;
        out.push(Action::Terminated(why));
    }
}
