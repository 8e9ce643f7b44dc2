//! SessionActor: one per client connection. Runs the sans-io c2s machine over the bytes the
//! socket task hands it, authenticates against the replicated store, and after binding passes
//! every client stanza to the user's UserActor (on this node or the user's home node) and
//! writes what the UserActor delivers back to the socket.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use herald_grpc::cluster::{route_message::Kind, ClientStanza};
use herald_grpc::config::{config_object::Body, ObjectKind};
use herald_xmpp::c2s::{BindError, C2s, Input};
use herald_xmpp::error::{StreamCondition, StreamError};
use herald_xmpp::sasl::Credentials;
use herald_xmpp::{c2s::Action, ns, Element, Jid, StanzaError};

pub use super::deliver::Deliver;
use rand::RngCore;

use super::io::{Out, OutQueue};
use super::limiter::{Shape, Shaper};
use super::metrics as xm;
use super::sm::{SmReply, StreamMgmt};
use super::users::{ClientStanzaMsg, SessionClosed, SessionLoc, SessionOpened, UserActor};
use super::{server_iq, Shared};
use crate::scram::from_stored;

/// Bytes read from the socket.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Inbound(pub Vec<u8>);

/// The STARTTLS handshake completed.
#[derive(Message)]
#[rtype(result = "()")]
pub struct TlsDone;

/// The socket closed.
#[derive(Message)]
#[rtype(result = "()")]
pub struct IoClosed;

/// Close the session with a stream error (e.g. `conflict` when another session took the resource).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Kick(pub StreamError);

/// How long a client may take from connecting to binding a resource.
pub const NEGOTIATION_TIMEOUT: Duration = Duration::from_secs(60);

pub struct SessionActor {
    shared: Arc<Shared>,
    c2s: C2s,
    out: OutQueue,
    peer: SocketAddr,
    full_jid: Option<Jid>,
    /// Node of the user's actor, once bound.
    home: Option<u64>,
    /// The user's actor when it lives on this node: stanzas go to it directly.
    user: Option<Addr<UserActor>>,
    /// The last broadcast presence the client sent, replayed when the user's home moves.
    last_presence: Option<Box<Element>>,
    auth_failures: u32,
    /// The account (`local@domain`) the client last tried to log in as.
    account: Option<Box<str>>,
    closing: bool,
    sm: StreamMgmt,
    /// ` to='bare JID'`, escaped, for shared stanzas (made at the first).
    to_attr: Option<Box<[u8]>>,
    /// Rate limits of what the client sends: stanzas and bytes per second.
    stanza_rate: Shaper,
    byte_rate: Shaper,
    /// The next stanza was already charged against the rate (a batch resumed after a wait).
    prepaid: bool,
}

fn nonce() -> Vec<u8> {
    let mut n = vec![0u8; 18];
    rand::rng().fill_bytes(&mut n);
    n
}

impl SessionActor {
    pub fn new(shared: Arc<Shared>, out: OutQueue, peer: SocketAddr, direct_tls: bool) -> Self {
        let cfg = shared.c2s_config(direct_tls);
        let mut id = [0u8; 12];
        rand::rng().fill_bytes(&mut id);
        let stream_id = hex::encode(id);
        let c2s = C2s::new(cfg, stream_id, nonce());
        let now = std::time::Instant::now();
        let limits = shared.session_limits;
        SessionActor {
            stanza_rate: Shaper::new(limits.max_stanzas_per_second, now),
            byte_rate: Shaper::new(limits.max_bytes_per_second, now),
            prepaid: false,
            account: None,
            shared,
            c2s,
            out,
            peer,
            full_jid: None,
            home: None,
            user: None,
            last_presence: None,
            auth_failures: 0,
            closing: false,
            to_attr: None,
            sm: StreamMgmt::default(),
        }
    }

    fn send_bytes(&mut self, bytes: Vec<u8>, ctx: &mut Context<Self>) {
        if self.out.try_send(Out::Bytes(bytes)).is_err() {
            metrics::counter!(xm::MAILBOX_DROPS, "mailbox" => "socket").increment(1);
            tracing::warn!(peer = %self.peer, jid = ?self.full_jid.as_ref().map(|j| j.to_string()),
                "client is not reading fast enough; closing the session");
            self.closing = true;
            let _ = self.out.try_send(Out::Close);
            ctx.stop();
        }
    }

    fn run(&mut self, actions: Vec<Action>, ctx: &mut Context<Self>) {
        let mut queue: std::collections::VecDeque<Action> = actions.into();
        while let Some(a) = queue.pop_front() {
            match a {
                Action::Send(b) => self.send_bytes(b, ctx),
                Action::StartTls => {
                    let _ = self.out.try_send(Out::StartTls);
                }
                Action::LookupUser { domain, localpart } => {
                    // Verifying a PLAIN password runs PBKDF2 (milliseconds by design): the
                    // machine goes to the blocking pool with the credentials, and this session
                    // handles nothing else until it is back. The rest of this batch follows.
                    // An account with many recent failures (from anywhere) waits first.
                    let account = format!("{localpart}@{domain}");
                    let found = lookup(&self.shared, &account);
                    let shared = self.shared.clone();
                    let jid = account.clone();
                    self.account = Some(account.as_str().into());
                    let placeholder =
                        C2s::new(self.c2s.config().clone(), String::new(), vec![0; 16]);
                    let mut c2s = std::mem::replace(&mut self.c2s, placeholder);
                    let rest: Vec<Action> = queue.drain(..).collect();
                    let ask = self
                        .shared
                        .auth_limiter
                        .send(super::limiter::AccountDelay(account));
                    let verify = async move {
                        if let Ok(d) = ask.await {
                            if !d.is_zero() {
                                tokio::time::sleep(d).await;
                            }
                        }
                        let creds = match found {
                            Some(c) => Some(c),
                            None => lookup_after_barrier(&shared, &jid).await,
                        };
                        tokio::task::spawn_blocking(move || {
                            let actions = c2s.handle(Input::Credentials(creds));
                            (c2s, actions)
                        })
                        .await
                    };
                    ctx.wait(actix::fut::wrap_future(verify).map(
                        move |res, act: &mut SessionActor, ctx| match res {
                            Ok((c2s, actions)) => {
                                act.c2s = c2s;
                                let mut next = actions;
                                next.extend(rest);
                                act.run(next, ctx);
                            }
                            Err(e) => {
                                tracing::error!(peer = %act.peer, error = %e,
                                    "credential check failed to run");
                                act.closing = true;
                                let _ = act.out.try_send(Out::Close);
                                ctx.stop();
                            }
                        },
                    ));
                    return;
                }
                Action::Authenticated { jid, mechanism } => {
                    metrics::counter!(xm::AUTH, "result" => "success").increment(1);
                    // Only failures are counted per account: nothing to keep for the session.
                    self.account = None;
                    tracing::debug!(%jid, mechanism = mechanism.name(), peer = %self.peer, "authenticated");
                }
                Action::AuthFailed { condition } => {
                    metrics::counter!(xm::AUTH, "result" => "failure").increment(1);
                    self.auth_failures += 1;
                    tracing::info!(peer = %self.peer, condition, failures = self.auth_failures,
                        "SASL authentication failed");
                    self.shared.auth_limiter.do_send(super::limiter::Failed {
                        ip: self.peer.ip(),
                        account: self.account.as_deref().map(String::from),
                    });
                    queue.extend(self.c2s.handle(Input::Nonce(nonce())));
                    // Slow down guessing: nothing more is read from this client for a while.
                    let delay = Duration::from_millis(500 * u64::from(self.auth_failures.min(6)));
                    ctx.wait(actix::fut::wrap_future(tokio::time::sleep(delay)));
                }
                Action::Bind { requested } => {
                    let result = self.bind(requested);
                    queue.extend(self.c2s.handle(Input::BindResult(result)));
                }
                Action::Established { full_jid } => self.established(full_jid, ctx),
                Action::Stanza(el) => {
                    if std::mem::take(&mut self.prepaid) {
                        self.client_stanza(el, ctx);
                        continue;
                    }
                    match self.shape(true, 1, ctx) {
                        None => return,
                        Some(None) => self.client_stanza(el, ctx),
                        // Over the rate: this stanza and the rest of the batch wait (nothing
                        // else is handled meanwhile, so nothing more is read either).
                        Some(Some(d)) => {
                            let mut rest = vec![Action::Stanza(el)];
                            rest.extend(queue.drain(..));
                            ctx.wait(actix::fut::wrap_future(tokio::time::sleep(d)).map(
                                move |_, act: &mut SessionActor, ctx| {
                                    if act.closing {
                                        return;
                                    }
                                    act.prepaid = true;
                                    act.run(rest, ctx);
                                },
                            ));
                            return;
                        }
                    }
                }
                Action::Close { error } => {
                    if let Some(e) = &error {
                        metrics::counter!(xm::STREAM_ERRORS, "condition" => e.condition.name())
                            .increment(1);
                        tracing::info!(peer = %self.peer, condition = e.condition.name(),
                            text = ?e.text, "closing client stream with an error");
                    }
                    self.closing = true;
                    let _ = self.out.try_send(Out::Close);
                    ctx.stop();
                    return;
                }
            }
        }
    }

    /// Charges `units` stanzas (`stanzas`) or bytes against the session's rate. `None`: the
    /// session was closed for staying over it; `Some(Some(d))`: over the rate, wait `d`.
    fn shape(
        &mut self,
        stanzas: bool,
        units: usize,
        ctx: &mut Context<Self>,
    ) -> Option<Option<Duration>> {
        let now = std::time::Instant::now();
        let limits = self.shared.session_limits;
        let (shaper, rate, limit) = if stanzas {
            (
                &mut self.stanza_rate,
                limits.max_stanzas_per_second,
                "stanza_rate",
            )
        } else {
            (
                &mut self.byte_rate,
                limits.max_bytes_per_second,
                "byte_rate",
            )
        };
        match shaper.charge(rate, units, now) {
            Shape::Pass => Some(None),
            Shape::Delay(d) => {
                metrics::counter!(xm::LIMIT_HITS, "limit" => limit).increment(1);
                Some(Some(d))
            }
            Shape::Disconnect => {
                metrics::counter!(xm::LIMIT_HITS, "limit" => limit).increment(1);
                tracing::info!(peer = %self.peer, jid = ?self.full_jid.as_ref().map(|j| j.to_string()),
                    limit, "client stayed over its rate limit; closing the session");
                self.fail(
                    StreamCondition::PolicyViolation,
                    format!("sending too fast ({limit})"),
                    ctx,
                );
                None
            }
        }
    }

    /// Closes the stream with an error.
    fn fail(&mut self, condition: StreamCondition, text: String, ctx: &mut Context<Self>) {
        self.close_with(
            StreamError {
                condition,
                text: Some(text),
            },
            ctx,
        );
    }

    /// Sends the stream error and our stream close, then stops (once).
    fn close_with(&mut self, error: StreamError, ctx: &mut Context<Self>) {
        if self.closing {
            return;
        }
        let actions = self.c2s.close(Some(error));
        self.run(actions, ctx);
        if !self.closing {
            self.closing = true;
            let _ = self.out.try_send(Out::Close);
            ctx.stop();
        }
    }

    /// XEP-0198: messages the client never acknowledged go back to the user's account, to be
    /// delivered to another resource or stored offline.
    fn return_unacked(&mut self) {
        let (Some(full), Some(home)) = (self.full_jid.clone(), self.home) else {
            return;
        };
        let back = self.sm.take_unacked_messages();
        if back.is_empty() {
            return;
        }
        tracing::info!(jid = %full, count = back.len(), "returning unacknowledged messages to the account");
        for mut m in back {
            m.set_attr("to", full.bare().to_string());
            let Some(m) = super::registry::for_the_account(m) else {
                continue;
            };
            // A failure is logged and counted where it happens (mailbox full); a route to
            // another node that cannot be queued is logged here.
            if home == self.shared.node_id {
                let _ = self.shared.to_user(&full.bare(), m);
            } else if let Err(e) = self
                .shared
                .cluster
                .route(home, Kind::ToUser(m.to_xml_string()))
            {
                tracing::warn!(jid = %full, home, error = %e,
                    "an unacknowledged message could not be returned to the account's home");
            }
        }
    }

    fn bind(&self, requested: Option<String>) -> Result<Jid, BindError> {
        let bare = self.c2s_bare().ok_or(BindError::NotAllowed)?;
        let resource = match requested.filter(|r| !r.trim().is_empty()) {
            Some(r) => r,
            None => {
                let mut b = [0u8; 6];
                rand::rng().fill_bytes(&mut b);
                format!("herald-{}", hex::encode(b))
            }
        };
        bare.with_resource(&resource)
            .map_err(|e| BindError::BadResource(e.to_string()))
    }

    fn c2s_bare(&self) -> Option<Jid> {
        self.c2s.authenticated().cloned()
    }

    fn established(&mut self, full: Jid, ctx: &mut Context<Self>) {
        metrics::gauge!(xm::SESSIONS, "state" => "negotiating").decrement(1.0);
        metrics::gauge!(xm::SESSIONS, "state" => "established").increment(1.0);
        tracing::info!(jid = %full, peer = %self.peer, "session established");
        // Read before the home is: if homes move after this, the registry has the session look
        // again (`CheckHome`); no timer per session.
        let homes_guard = self.shared.cluster.homes_guard();
        self.shared
            .shard(&full)
            .do_send(super::users::RegisterLocal {
                full_jid: full.to_string(),
                addr: ctx.address(),
                homes_guard,
            });
        self.full_jid = Some(full);
        self.open_at_home(ctx);
    }

    fn open_at_home(&mut self, ctx: &mut Context<Self>) {
        let Some(full) = self.full_jid.clone() else {
            return;
        };
        let home = self.shared.home_of(&full.bare());
        self.home = Some(home);
        self.user = None;
        if home == self.shared.node_id {
            // Found or started at once (on this session's arbiter when new); the session then
            // sends to its user actor directly.
            let opened = SessionOpened {
                full_jid: full.clone(),
                loc: SessionLoc::Local(ctx.address()),
            };
            match self.shared.user_actor(&full.bare(), opened) {
                Ok(user) => self.user = Some(user),
                Err(_) => {
                    metrics::counter!(xm::MAILBOX_DROPS, "mailbox" => "user").increment(1);
                    tracing::warn!(user = %full.bare(), "user actor mailbox full; session open dropped");
                }
            }
        } else if let Err(e) = self
            .shared
            .cluster
            .route(home, Kind::SessionOpened(full.to_string()))
        {
            tracing::warn!(jid = %full, home, error = %e, "cannot reach the user's home node");
        }
    }

    fn close_at_home(&mut self) {
        let (Some(full), Some(home)) = (self.full_jid.clone(), self.home) else {
            return;
        };
        if home == self.shared.node_id {
            match self.user.take() {
                Some(user) => user.do_send(SessionClosed { full_jid: full }),
                None => {
                    if let Some(user) = self.shared.directory.get(&full.bare()) {
                        user.do_send(SessionClosed { full_jid: full });
                    }
                }
            }
        } else {
            let _ = self
                .shared
                .cluster
                .route(home, Kind::SessionClosed(full.to_string()));
        }
    }

    /// Follows the user's actor when placement moves it (a node died or came back).
    fn check_home(&mut self, ctx: &mut Context<Self>) {
        let Some(full) = self.full_jid.clone() else {
            return;
        };
        let now = self.shared.home_of(&full.bare());
        if Some(now) == self.home {
            return;
        }
        tracing::info!(jid = %full, from = ?self.home, to = now, "user re-homed; moving the session");
        if self
            .home
            .is_some_and(|h| self.shared.cluster.routes().is_live(h))
        {
            self.close_at_home();
        }
        self.open_at_home(ctx);
        if let Some(p) = self.last_presence.clone() {
            self.forward_to_user(*p, ctx);
        }
    }

    fn client_stanza(&mut self, mut el: Element, ctx: &mut Context<Self>) {
        let Some(full) = self.full_jid.clone() else {
            return;
        };
        if StreamMgmt::is_sm(&el) {
            match self.sm.handle(&el, self.c2s.stream_id()) {
                SmReply::Send(reply) => {
                    let bytes = herald_xmpp::codec::encode(&reply, ns::CLIENT);
                    self.send_bytes(bytes, ctx);
                }
                SmReply::Violation(why) => {
                    tracing::info!(jid = %full, %why, "stream management violation");
                    self.fail(StreamCondition::UndefinedCondition, why, ctx);
                }
                SmReply::Nothing => {}
            }
            return;
        }
        self.sm.received();
        metrics::counter!(xm::STANZAS, "kind" => xm::kind(el.name()), "direction" => "in")
            .increment(1);
        // RFC 6120 §8.1.2.1: the server stamps the sender's full JID.
        el.set_attr("from", full.to_string());
        let to = match el.get_attr("to").map(Jid::parse) {
            None => None,
            Some(Ok(j)) => Some(j),
            Some(Err(_)) => {
                let err = StanzaError::new(herald_xmpp::error::StanzaCondition::JidMalformed);
                if let Some(reply) = err.reply_to(&el, None) {
                    Handler::handle(self, Deliver::new(reply, None), ctx);
                }
                return;
            }
        };
        if let Some(to) = &to {
            if to.local().is_none()
                && to.resource().is_none()
                && self.shared.is_local_domain(to.domain())
            {
                if el.name() == "iq" {
                    if let Some(reply) = server_iq::handle(&el, to, &self.shared) {
                        Handler::handle(self, Deliver::new(reply, None), ctx);
                    }
                }
                return;
            }
        }
        // The message's XEP-0359 id, given here where it enters the cluster, makes it count
        // once if an item carrying it is handed on twice between nodes.
        crate::im::stanza_id::stamp(&mut el, |d| self.shared.is_local_domain(d));
        if el.is("presence", ns::CLIENT) && to.is_none() {
            match el.get_attr("type") {
                None => self.last_presence = Some(Box::new(el.clone())),
                Some("unavailable") => self.last_presence = None,
                _ => {}
            }
        }
        self.forward_to_user(el, ctx);
    }

    fn forward_to_user(&mut self, el: Element, ctx: &mut Context<Self>) {
        let (Some(full), Some(home)) = (self.full_jid.clone(), self.home) else {
            return;
        };
        let started = std::time::Instant::now();
        if home == self.shared.node_id {
            let msg = ClientStanzaMsg {
                full_jid: full.clone(),
                stanza: el,
                loc: SessionLoc::Local(ctx.address()),
            };
            let via_registry = match &self.user {
                Some(user) => match user.try_send(msg) {
                    Ok(()) => None,
                    Err(SendError::Full(_)) => {
                        metrics::counter!(xm::MAILBOX_DROPS, "mailbox" => "user").increment(1);
                        tracing::warn!(jid = %full, "user actor mailbox full; stanza dropped");
                        None
                    }
                    // The actor stopped (its user moved away and back): find it anew.
                    Err(SendError::Closed(msg)) => {
                        self.user = None;
                        Some(msg)
                    }
                },
                None => Some(msg),
            };
            if let Some(msg) = via_registry {
                match self.shared.user_actor(&full.bare(), msg) {
                    Ok(user) => self.user = Some(user),
                    Err(_) => {
                        metrics::counter!(xm::MAILBOX_DROPS, "mailbox" => "user").increment(1);
                    }
                }
            }
        } else {
            let kind = Kind::FromClient(ClientStanza {
                full_jid: full.to_string(),
                stanza: el.to_xml_string(),
                session_node: 0,
            });
            if let Err(e) = self.shared.cluster.route(home, kind) {
                tracing::warn!(jid = %full, home, error = %e, "stanza for the user's home node dropped; the client is told");
                // Not silence: a message or IQ is answered (wait: try again later).
                let err = StanzaError::new(herald_xmpp::error::StanzaCondition::ResourceConstraint);
                if let Some(reply) = (el.name() != "presence")
                    .then(|| err.reply_to(&el, None))
                    .flatten()
                {
                    Handler::handle(self, Deliver::new(reply, None), ctx);
                }
            }
        }
        metrics::histogram!(xm::ROUTE_DURATION).record(started.elapsed().as_secs_f64());
    }
}

/// The account's credentials as this node has applied them.
fn lookup(shared: &Shared, jid: &str) -> Option<Credentials> {
    let applied = shared.cluster.applied();
    match applied.state.get(ObjectKind::User, jid)?.body? {
        Body::User(u) => Some(Credentials {
            scram_sha256: u.scram_sha256.as_ref().map(from_stored),
            scram_sha1: u.scram_sha1.as_ref().map(from_stored),
        }),
        _ => None,
    }
}

/// How long a login for an account this node does not know waits for it to catch up with the
/// leader before it is refused.
const MISS_BARRIER: Duration = Duration::from_secs(2);

/// An account this node does not know may have been added a moment ago through another node
/// (`user add` returns once the leader applied it; a follower learns it on the next round):
/// wait until this node has applied everything committed when the login arrived (a Raft read
/// barrier, bounded), then look again. Only a miss pays for this; a wrong password does not.
async fn lookup_after_barrier(shared: &Shared, jid: &str) -> Option<Credentials> {
    match tokio::time::timeout(MISS_BARRIER, shared.cluster.read_barrier()).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            tracing::debug!(%jid, error = %e, "read barrier for an unknown account failed");
        }
        Err(_) => tracing::debug!(%jid, "read barrier for an unknown account timed out"),
    }
    lookup(shared, jid)
}

impl Actor for SessionActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(super::deliver::SESSION_MAILBOX);
        metrics::gauge!(xm::SESSIONS, "state" => "negotiating").increment(1.0);
        // An address with many recent failed logins waits before it is heard at all.
        let ask = self
            .shared
            .auth_limiter
            .send(super::limiter::DelayFor(self.peer.ip()));
        ctx.wait(actix::fut::wrap_future(async move {
            if let Ok(d) = ask.await {
                if !d.is_zero() {
                    tracing::info!(
                        delay_ms = d.as_millis() as u64,
                        "delaying a client after repeated failed logins"
                    );
                    tokio::time::sleep(d).await;
                }
            }
        }));
        // A connection that does not finish negotiating in time is closed (slowloris).
        ctx.run_later(NEGOTIATION_TIMEOUT, |act, ctx| {
            if act.full_jid.is_none() && !act.closing {
                tracing::info!(peer = %act.peer, "client did not finish negotiating in time");
                act.fail(
                    StreamCondition::ConnectionTimeout,
                    "negotiation took too long".into(),
                    ctx,
                );
            }
        });
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        if self.full_jid.is_none() {
            metrics::gauge!(xm::SESSIONS, "state" => "negotiating").decrement(1.0);
        }
        if let Some(full) = self.full_jid.clone() {
            metrics::gauge!(xm::SESSIONS, "state" => "established").decrement(1.0);
            self.close_at_home();
            self.return_unacked();
            self.shared
                .shard(&full)
                .do_send(super::users::UnregisterLocal {
                    full_jid: full.to_string(),
                });
            tracing::info!(jid = %full, "session closed");
        }
        let _ = self.out.try_send(Out::Close);
    }
}

impl Handler<Inbound> for SessionActor {
    type Result = ();
    fn handle(&mut self, msg: Inbound, ctx: &mut Context<Self>) {
        if self.closing {
            return;
        }
        // Bytes already read are handled; an over-rate client is not read from for a while.
        let wait = match self.shape(false, msg.0.len(), ctx) {
            None => return,
            Some(wait) => wait,
        };
        let actions = self.c2s.handle(Input::Bytes(&msg.0));
        self.run(actions, ctx);
        if let Some(d) = wait {
            ctx.wait(actix::fut::wrap_future(tokio::time::sleep(d)));
        }
    }
}

impl Handler<TlsDone> for SessionActor {
    type Result = ();
    fn handle(&mut self, _: TlsDone, ctx: &mut Context<Self>) {
        let actions = self.c2s.handle(Input::TlsEstablished);
        self.run(actions, ctx);
    }
}

impl Handler<IoClosed> for SessionActor {
    type Result = ();
    fn handle(&mut self, _: IoClosed, ctx: &mut Context<Self>) {
        self.closing = true;
        ctx.stop();
    }
}

impl Handler<Deliver> for SessionActor {
    type Result = ();
    fn handle(&mut self, msg: Deliver, ctx: &mut Context<Self>) {
        let stanza = msg.into_stanza();
        if self.closing {
            // Not written: handed back to the account when the session stops (after it told
            // the home it closed), with the unacknowledged ones.
            self.sm.keep_unsent(stanza);
            return;
        }
        xm::stanza_out(stanza.name());
        let mut bytes = herald_xmpp::codec::encode(&stanza, ns::CLIENT);
        match self.sm.sent(&stanza, bytes.len()) {
            Ok(Some(request)) => bytes.extend(herald_xmpp::codec::encode(&request, ns::CLIENT)),
            Ok(None) => {}
            Err(over) => {
                // Not sent: it goes back to the account with the unacknowledged ones.
                self.sm.keep_unsent(stanza);
                metrics::counter!(xm::LIMIT_HITS, "limit" => "unacked").increment(1);
                self.fail(
                    StreamCondition::ResourceConstraint,
                    format!(
                        "{} stanzas ({} bytes) left unacknowledged",
                        over.stanzas, over.bytes
                    ),
                    ctx,
                );
                return;
            }
        }
        self.send_bytes(bytes, ctx);
    }
}

impl Handler<super::deliver::DeliverShared> for SessionActor {
    type Result = ();
    fn handle(&mut self, msg: super::deliver::DeliverShared, ctx: &mut Context<Self>) {
        let Some(bare) = self.c2s.authenticated() else {
            return;
        };
        if self.closing || self.sm.enabled() {
            // Kept or counted as a stanza of its own: the general path.
            let stanza = msg.0.addressed(bare);
            return Handler::handle(self, Deliver::new(stanza, None), ctx);
        }
        xm::stanza_out(msg.0.stanza().name());
        let to = self
            .to_attr
            .get_or_insert_with(|| crate::im::shared::to_attribute(bare).into());
        let bytes = msg.0.encode_for_client(to);
        self.send_bytes(bytes, ctx);
    }
}

impl Handler<super::deliver::Overloaded> for SessionActor {
    type Result = ();
    fn handle(&mut self, _: super::deliver::Overloaded, ctx: &mut Context<Self>) {
        if self.closing {
            return;
        }
        tracing::warn!(peer = %self.peer, jid = ?self.full_jid.as_ref().map(|j| j.to_string()),
            "client is not reading: its session's queue is full; closing the session");
        self.fail(
            StreamCondition::ResourceConstraint,
            format!(
                "more than {} stanzas waiting for this client",
                super::deliver::SESSION_MAILBOX
            ),
            ctx,
        );
    }
}

impl Handler<super::users::CheckHome> for SessionActor {
    type Result = ();
    fn handle(&mut self, _: super::users::CheckHome, ctx: &mut Context<Self>) {
        if !self.closing {
            self.check_home(ctx);
        }
    }
}

impl Handler<Kick> for SessionActor {
    type Result = ();
    fn handle(&mut self, msg: Kick, ctx: &mut Context<Self>) {
        self.close_with(msg.0, ctx);
    }
}

/// The stream error for a session replaced by another with the same resource.
pub fn conflict() -> StreamError {
    StreamError {
        condition: StreamCondition::Conflict,
        text: Some("another session bound this resource".into()),
    }
}
