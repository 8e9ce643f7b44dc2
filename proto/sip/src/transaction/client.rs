//! Client transactions (RFC 3261 §17.1, RFC 6026 §8.4) on a reliable transport.
//!
//! INVITE: `Calling` —1xx→ `Proceeding` —2xx→ `Accepted` (timer M) → `Terminated`;
//! `Calling`/`Proceeding` —300-699→ ACK sent, `Completed` (timer D, 0 by default) →
//! `Terminated`; timer B in `Calling` → `Terminated(Timeout)`.
//!
//! Non-INVITE: `Trying` —1xx→ `Proceeding` —final→ `Completed` (timer K, 0 by default) →
//! `Terminated`; timer F in `Trying`/`Proceeding` → `Terminated(Timeout)`.

use std::time::Instant;

use super::{ack_for, Action, Config, Termination, TimerKind, Timers};
use crate::message::{Message, Method, Request, Response};

/// The state of a client transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientState {
    /// INVITE sent, nothing received.
    Calling,
    /// Non-INVITE sent, nothing received.
    Trying,
    /// A provisional response was received.
    Proceeding,
    /// A final response was received (INVITE: 300–699).
    Completed,
    /// INVITE: a 2xx was received; later 2xx are passed to the TU (RFC 6026).
    Accepted,
    /// Over.
    Terminated,
}

/// A client transaction. See the module documentation.
#[derive(Debug, Clone)]
pub struct ClientTransaction {
    request: Request,
    config: Config,
    state: ClientState,
    timers: Timers,
}

impl ClientTransaction {
    /// Starts a transaction for `request` (its top Via must carry a fresh branch): sends it
    /// and arms timer B (INVITE) or F.
    pub fn new(request: Request, config: Config, now: Instant) -> (Self, Vec<Action>) {
        let invite = request.method == Method::Invite;
        let mut t = ClientTransaction {
            request,
            config,
            state: if invite {
                ClientState::Calling
            } else {
                ClientState::Trying
            },
            timers: Timers::default(),
        };
        let mut out = vec![Action::Send(Message::Request(t.request.clone()))];
        let kind = if invite { TimerKind::B } else { TimerKind::F };
        t.timers.start(kind, now + config.timeout(), &mut out);
        (t, out)
    }

    /// The current state.
    pub fn state(&self) -> ClientState {
        self.state
    }

    /// The request this transaction sent.
    pub fn request(&self) -> &Request {
        &self.request
    }

    fn is_invite(&self) -> bool {
        self.request.method == Method::Invite
    }

    /// A response matched to this transaction arrived.
    pub fn on_response(&mut self, resp: Response, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        if self.is_invite() {
            self.invite_response(resp, now, &mut out);
        } else {
            self.non_invite_response(resp, now, &mut out);
        }
        out
    }

    fn invite_response(&mut self, resp: Response, now: Instant, out: &mut Vec<Action>) {
        use ClientState as S;
        match (self.state, resp.status) {
            (S::Calling | S::Proceeding, 100..=199) => {
                // Timer B guards Calling only (RFC 3261 figure 5).
                self.timers.clear();
                self.state = S::Proceeding;
                out.push(Action::Deliver(Message::Response(resp)));
            }
            (S::Calling | S::Proceeding, 200..=299) => {
                self.timers.clear();
                self.state = S::Accepted;
                out.push(Action::Deliver(Message::Response(resp)));
                self.timers
                    .start(TimerKind::M, now + self.config.timeout(), out);
            }
            (S::Calling | S::Proceeding, _) => {
                self.timers.clear();
                out.push(Action::Send(Message::Request(ack_for(
                    &self.request,
                    &resp,
                ))));
                out.push(Action::Deliver(Message::Response(resp)));
                self.state = S::Completed;
                let d = self.config.timer_d;
                if d.is_zero() {
                    self.terminate(Termination::Completed, out);
                } else {
                    self.timers.start(TimerKind::D, now + d, out);
                }
            }
            (S::Completed, 300..) => {
                // A retransmitted failure: ACK again, the TU already has it.
                out.push(Action::Send(Message::Request(ack_for(
                    &self.request,
                    &resp,
                ))));
            }
            (S::Accepted, 200..=299) => out.push(Action::Deliver(Message::Response(resp))),
            _ => {}
        }
    }

    fn non_invite_response(&mut self, resp: Response, now: Instant, out: &mut Vec<Action>) {
        use ClientState as S;
        match (self.state, resp.is_final()) {
            (S::Trying | S::Proceeding, false) => {
                self.state = S::Proceeding;
                out.push(Action::Deliver(Message::Response(resp)));
            }
            (S::Trying | S::Proceeding, true) => {
                self.timers.clear();
                self.state = S::Completed;
                out.push(Action::Deliver(Message::Response(resp)));
                let k = self.config.timer_k;
                if k.is_zero() {
                    self.terminate(Termination::Completed, out);
                } else {
                    self.timers.start(TimerKind::K, now + k, out);
                }
            }
            _ => {}
        }
    }

    /// A timer this transaction armed fired.
    pub fn on_timer(&mut self, kind: TimerKind, now: Instant) -> Vec<Action> {
        use ClientState as S;
        let mut out = Vec::new();
        if !self.timers.fire(kind, now) {
            return out;
        }
        match (self.state, kind) {
            (S::Calling, TimerKind::B) | (S::Trying | S::Proceeding, TimerKind::F) => {
                self.terminate(Termination::Timeout, &mut out);
            }
            (S::Completed, TimerKind::D | TimerKind::K) | (S::Accepted, TimerKind::M) => {
                self.terminate(Termination::Completed, &mut out);
            }
            _ => {}
        }
        out
    }

    /// The connection failed.
    pub fn on_transport_error(&mut self, _now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        if self.state != ClientState::Terminated {
            self.terminate(Termination::TransportError, &mut out);
        }
        out
    }

    fn terminate(&mut self, why: Termination, out: &mut Vec<Action>) {
        self.timers.clear();
        self.state = ClientState::Terminated;
        out.push(Action::Terminated(why));
    }
}
