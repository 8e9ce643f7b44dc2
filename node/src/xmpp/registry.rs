//! The per-arbiter user registry: local sessions by full JID, what other nodes send them, and
//! the hand-off of stanzas to user actors; homes followed when the placement view or a pin
//! changes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use herald_xmpp::{Element, Jid};

use super::deliver::{self, HandBack};
use super::metrics as xm;
use super::session::{Kick, SessionActor};
use super::users::{hand_over, FromOutside, Input, SessionLoc, StopUser, UserActor};
use super::Shared;

// ---- registry messages ----

/// A stanza for a user homed on this node, from anyone but the user's own sessions.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ToUser(pub Element);

/// A presence broadcast from another node for the users of this shard (and, `forwarded`,
/// users of other domains this node carries): it takes the same way as [`ToUser`], so a
/// sender's stanzas reach each recipient in the order sent.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ToUsers {
    pub stanza: Arc<crate::im::SharedStanza>,
    pub to: Vec<Jid>,
    pub forwarded: bool,
}

/// A stanza a user's session sent.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ClientStanzaMsg {
    pub full_jid: Jid,
    pub stanza: Element,
    pub loc: SessionLoc,
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct SessionOpened {
    pub full_jid: Jid,
    pub loc: SessionLoc,
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct SessionClosed {
    pub full_jid: Jid,
}

/// A session on this node, for stanzas addressed to it from other nodes.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RegisterLocal {
    pub full_jid: String,
    pub addr: Addr<SessionActor>,
    /// [`herald_cluster::ClusterHandle::homes_guard`] read before the session computed its
    /// home: the registry asks it to look again if homes changed since.
    pub homes_guard: u64,
}

/// Homes may have moved (the placement view or a pin changed): a session looks again at its
/// user's home and follows it.
#[derive(Message)]
#[rtype(result = "()")]
pub struct CheckHome;

#[derive(Message)]
#[rtype(result = "()")]
pub struct UnregisterLocal {
    pub full_jid: String,
}

/// Something a session on this node sent to its user's home, which turned out to be down: now
/// that placement picked this node, deliver it here with the session's own address.
#[derive(Message)]
#[rtype(result = "()")]
pub enum FromLocalSession {
    Opened(Jid),
    Closed(Jid),
    Stanza(Jid, Element),
}

impl Handler<FromLocalSession> for UserRegistry {
    type Result = ();
    fn handle(&mut self, msg: FromLocalSession, ctx: &mut Context<Self>) {
        let full = match &msg {
            FromLocalSession::Opened(j)
            | FromLocalSession::Closed(j)
            | FromLocalSession::Stanza(j, _) => j.clone(),
        };
        let Some(addr) = self.local_sessions.get(&full.to_string()).cloned() else {
            return;
        };
        let loc = SessionLoc::Local(addr);
        match msg {
            FromLocalSession::Opened(full_jid) => self.handle(SessionOpened { full_jid, loc }, ctx),
            FromLocalSession::Closed(full_jid) => self.handle(SessionClosed { full_jid }, ctx),
            FromLocalSession::Stanza(full_jid, stanza) => self.handle(
                ClientStanzaMsg {
                    full_jid,
                    stanza,
                    loc,
                },
                ctx,
            ),
        }
    }
}

/// Full JIDs of a user's sessions connected to this node.
#[derive(Message)]
#[rtype(result = "Vec<String>")]
pub struct LocalSessionsOf(pub Jid);

impl Handler<LocalSessionsOf> for UserRegistry {
    type Result = MessageResult<LocalSessionsOf>;
    fn handle(&mut self, msg: LocalSessionsOf, _: &mut Context<Self>) -> Self::Result {
        let prefix = format!("{}/", msg.0.bare());
        let mut v: Vec<String> = self
            .local_sessions
            .keys()
            .filter(|k| k.starts_with(&prefix))
            .cloned()
            .collect();
        v.sort();
        MessageResult(v)
    }
}

/// The node is stopping: close every local session with `system-shutdown`.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct ShutdownSessions;

/// A stanza for a session on this node (sent by a UserActor on another node).
#[derive(Message)]
#[rtype(result = "()")]
pub struct ToLocalSession {
    pub full_jid: String,
    pub stanza: Element,
}

pub struct UserRegistry {
    shared: Option<Arc<Shared>>,
    /// Which data-plane arbiter this registry runs on (0 also runs the placement scan).
    index: usize,
    local_sessions: HashMap<String, Addr<SessionActor>>,
    /// Live members and applied index at the last placement scan (see `evict_moved`).
    /// The homes guard when this registry last told its sessions (and user actors) to look.
    homes_seen: Option<u64>,
}

impl UserRegistry {
    pub fn new() -> Self {
        UserRegistry {
            shared: None,
            index: 0,
            local_sessions: HashMap::new(),
            homes_seen: None,
        }
    }

    pub(super) fn forward<M>(&mut self, jid: &Jid, msg: M)
    where
        M: Message<Result = ()> + Send + 'static,
        UserActor: Handler<M>,
    {
        let Some(shared) = self.shared.clone() else {
            return;
        };
        if shared.user_actor(&jid.bare(), msg).is_err() {
            metrics::counter!(xm::MAILBOX_DROPS, "mailbox" => "user").increment(1);
            tracing::warn!(user = %jid.bare(), "user actor mailbox full; stanza dropped");
        }
    }

    /// Whether `jid`'s user is homed on another node in the applied placement view: then what
    /// comes for it is handed over there instead of creating an actor here.
    pub(super) fn elsewhere(&self, jid: &Jid) -> bool {
        self.shared
            .as_ref()
            .is_some_and(|s| s.home_of(&jid.bare()) != s.node_id)
    }

    /// Stops the actors of users that the placement view now puts on another node. Placement
    /// depends only on the committed view and the stored users (pins), so the scan over every
    /// user actor runs only when the applied state changed since the last scan.
    /// When homes may have moved (the placement view or a pin changed; one comparison when
    /// nothing did): every session of this shard looks again at its home, and registry 0 stops
    /// the user actors this node no longer homes. Nothing polls per session or per user.
    fn follow_homes(&mut self) {
        let Some(shared) = self.shared.clone() else {
            return;
        };
        let guard = shared.cluster.homes_guard();
        if self.homes_seen == Some(guard) {
            return;
        }
        self.homes_seen = Some(guard);
        for addr in self.local_sessions.values() {
            addr.do_send(CheckHome);
        }
        // One registry scans the node's whole directory.
        if self.index != 0 {
            return;
        }
        let moved = shared
            .directory
            .take_where(|j| shared.home_of(j) != shared.node_id);
        for (jid, addr) in moved {
            metrics::counter!(xm::USERS_REHOMED).increment(1);
            tracing::info!(user = %jid, "user re-homed to another node; stopping its actor here");
            addr.do_send(StopUser);
        }
    }
}

impl Default for UserRegistry {
    fn default() -> Self {
        Self::new()
    }
}

/// Gives the registry its shared context (it is created before the context exists).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Init(pub Arc<Shared>, pub usize);

impl Actor for UserRegistry {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(65_536);
        ctx.run_interval(HOMES_CHECK, |act, _| act.follow_homes());
    }
}

impl Handler<Init> for UserRegistry {
    type Result = ();
    fn handle(&mut self, msg: Init, _: &mut Context<Self>) {
        self.shared = Some(msg.0);
        self.index = msg.1;
    }
}

impl Handler<ToUser> for UserRegistry {
    type Result = ();
    fn handle(&mut self, msg: ToUser, _: &mut Context<Self>) {
        let Some(to) = msg.0.get_attr("to").and_then(|t| Jid::parse(t).ok()) else {
            return;
        };
        if self.elsewhere(&to) {
            if let Some(shared) = &self.shared {
                hand_over(shared, &to, Input::Outside(msg.0));
            }
            return;
        }
        self.forward(&to, FromOutside(msg.0));
    }
}

impl Handler<ToUsers> for UserRegistry {
    type Result = ();
    fn handle(&mut self, msg: ToUsers, _: &mut Context<Self>) {
        if let Some(shared) = &self.shared {
            shared
                .router()
                .broadcast_as(&msg.stanza, &msg.to, &mut Vec::new(), msg.forwarded);
        }
    }
}

impl Handler<ClientStanzaMsg> for UserRegistry {
    type Result = ();
    fn handle(&mut self, mut msg: ClientStanzaMsg, _: &mut Context<Self>) {
        let Some(shared) = self.shared.clone() else {
            return;
        };
        // Handed over from a previous home: the session is one of ours.
        if matches!(msg.loc, SessionLoc::Remote(n) if n == shared.node_id) {
            match self.local_sessions.get(&msg.full_jid.to_string()) {
                Some(addr) => msg.loc = SessionLoc::Local(addr.clone()),
                None => {
                    tracing::debug!(jid = %msg.full_jid, "stanza of a session that is gone dropped");
                    return;
                }
            }
        }
        if self.elsewhere(&msg.full_jid) {
            hand_over(&shared, &msg.full_jid.bare(), Input::Client(msg));
            return;
        }
        let jid = msg.full_jid.clone();
        self.forward(&jid, msg);
    }
}

impl Handler<SessionOpened> for UserRegistry {
    type Result = ();
    fn handle(&mut self, msg: SessionOpened, _: &mut Context<Self>) {
        if self.elsewhere(&msg.full_jid) {
            // The session's node sees another view; its session follows the placement within
            // 250 ms (`CheckHome`), and its next stanza re-announces it to the right home.
            tracing::debug!(jid = %msg.full_jid, "session opened at a node that is not its user's home; ignored");
            return;
        }
        let jid = msg.full_jid.clone();
        self.forward(&jid, msg);
    }
}

impl Handler<SessionClosed> for UserRegistry {
    type Result = ();
    fn handle(&mut self, msg: SessionClosed, _: &mut Context<Self>) {
        // Only an existing actor cares; never create one for a goodbye.
        let addr = self
            .shared
            .as_ref()
            .and_then(|s| s.directory.get(&msg.full_jid.bare()));
        if let Some(addr) = addr {
            let _ = addr.try_send(msg);
        }
    }
}

impl Handler<RegisterLocal> for UserRegistry {
    type Result = ();
    fn handle(&mut self, msg: RegisterLocal, _: &mut Context<Self>) {
        if self.homes_seen != Some(msg.homes_guard) {
            // Homes changed around the session's start: it looks again.
            msg.addr.do_send(CheckHome);
        }
        self.local_sessions.insert(msg.full_jid, msg.addr);
    }
}

impl Handler<UnregisterLocal> for UserRegistry {
    type Result = ();
    fn handle(&mut self, msg: UnregisterLocal, _: &mut Context<Self>) {
        self.local_sessions.remove(&msg.full_jid);
    }
}

impl Handler<ShutdownSessions> for UserRegistry {
    type Result = usize;
    fn handle(&mut self, _: ShutdownSessions, _: &mut Context<Self>) -> usize {
        for addr in self.local_sessions.values() {
            addr.do_send(Kick(herald_xmpp::error::StreamError {
                condition: herald_xmpp::error::StreamCondition::SystemShutdown,
                text: Some("the server is shutting down".into()),
            }));
        }
        self.local_sessions.len()
    }
}

impl Handler<ToLocalSession> for UserRegistry {
    type Result = ();
    fn handle(&mut self, msg: ToLocalSession, _: &mut Context<Self>) {
        match self.local_sessions.get(&msg.full_jid) {
            Some(addr) => {
                // A session that stopped before it unregistered hands the message back.
                let back = self.shared.clone().map(|s| s as Arc<dyn HandBack>);
                deliver::to_session(addr, msg.stanza, back);
            }
            None => {
                // The session ended (its SessionClosed went to the home before this): a message
                // worth keeping goes back to the account (RFC 6121 §8.5.3.2.1: as if to the bare
                // JID — other resources or offline storage) instead of being lost.
                if let (Some(m), Some(shared)) = (for_the_account(msg.stanza), &self.shared) {
                    tracing::debug!(jid = %msg.full_jid, "message for a session that is gone handed back to the account");
                    shared.router().route(m);
                } else {
                    tracing::debug!(jid = %msg.full_jid, "stanza for a session that is gone dropped");
                }
            }
        }
    }
}

/// `stanza` readdressed to its bare JID when it is a message worth redelivering (a body, not an
/// error), for a session that ended before it could be written (or whose client never
/// acknowledged it), with its stanza id marked as handed back: the home has handled the
/// original and would otherwise drop this as a repeat of it.
pub fn for_the_account(mut stanza: Element) -> Option<Element> {
    if !super::sm::worth_redelivering(&stanza) {
        return None;
    }
    let bare = Jid::parse(stanza.get_attr("to")?).ok()?.bare();
    crate::im::stanza_id::handed_back(&mut stanza, &bare);
    stanza.set_attr("to", bare.to_string());
    Some(stanza)
}

/// How often each registry compares the homes guard (how soon sessions follow a move).
const HOMES_CHECK: Duration = Duration::from_millis(250);
