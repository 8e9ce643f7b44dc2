//! UserActor (one per user homed on this node, on the arbiter of the thread that first needed
//! it: see [`super::directory`]); the per-arbiter UserRegistry that hands it stanzas is in
//! [`super::registry`] (re-exported here).
//!
//! A UserActor owns the user's [`UserCore`] (live sessions, presence, roster, blocks, offline
//! queue), executes its effects, and is the only writer of the user's durable [`UserData`]
//! (through Raft, with the revision it last saw and a fence, so that a stale second writer is
//! refused); inputs handled back to back share one write (group commit).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix::prelude::*;
use herald_grpc::cluster::{route_message::Kind, ClientStanza};
use herald_grpc::config::{
    command::Op, config_object::Body, Command, ConfigObject, ErrorCode, Fence, ObjectKind,
    PutObject, UserData, WriteMode,
};
use herald_xmpp::{Element, Jid};

use super::deliver;
use super::metrics as xm;
use super::session::{conflict, Kick, SessionActor};
use super::Shared;
use crate::im::{Effect, SharedStanza, UserCore};

/// A watcher list and its watchers' actors on this node, by position.
type WatcherActors = (Arc<[Jid]>, Vec<Option<Addr<UserActor>>>);

/// Where a session lives.
#[derive(Clone)]
pub enum SessionLoc {
    Local(Addr<SessionActor>),
    Remote(u64),
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

pub use super::registry::*;

// ---- user actor ----

#[derive(Message)]
#[rtype(result = "()")]
pub struct FromOutside(pub Element);

/// A contact's presence broadcast ([`crate::im::Effect::Broadcast`]) for this user, addressed
/// to its bare JID; shared with the other watchers.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ContactPresence(pub Arc<SharedStanza>);

#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct StopUser;

pub struct UserActor {
    shared: Arc<Shared>,
    jid: Jid,
    core: Option<UserCore>,
    /// Revision of the stored UserData this actor last read or wrote (0: never stored).
    revision: u64,
    /// Applied index at which `revision` was last compared with the store (see `refresh`).
    checked_index: u64,
    locations: crate::im::ResourceMap<SessionLoc>,
    /// Changes handled but not yet written, with every effect waiting for that write.
    /// Boxed: only there while a write is pending, and 48 bytes less keep the actor's task
    /// in a smaller allocation size class (1,024 bytes instead of 1,280).
    batch: Option<Box<Batch>>,
    /// The bare JID as text, and its pinned home node as of an applied index: what deciding
    /// whether this node may serve the user needs for every input, read from the store only
    /// when something was applied since.
    key: Box<str>,
    /// (applied index, pinned node); index 0: not read yet (applied indexes start at 1).
    pin: (u64, u64),
    /// The watcher list of the user's last broadcast (the core's watcher index, kept until the
    /// roster changes) and its watchers' actors on this node, by position: see
    /// [`super::router::Router::broadcast`].
    watcher_actors: Option<Box<WatcherActors>>,
}

/// Group commit: the inputs a user actor handles back to back (those already in its mailbox)
/// share one durable write, and their effects — in the order the inputs came — wait for it.
/// A user with 10,000 subscribers answering at once writes its roster a few hundred times, not
/// 10,000 times; an input that changes nothing durable still waits behind a pending write, so
/// no one sees a later effect before an earlier one is stored.
#[derive(Default)]
struct Batch {
    effects: Vec<Effect>,
    causes: Vec<Cause>,
    persist: bool,
}

/// The most inputs one write covers: a flood of inputs is written in steps, and the first
/// effects wait at most this many inputs.
const BATCH_MAX: usize = 64;

/// Write the pending batch (queued behind what is in the mailbox now).
#[derive(Message)]
#[rtype(result = "()")]
struct Flush;

impl UserActor {
    pub(super) fn new(shared: Arc<Shared>, jid: Jid) -> Self {
        UserActor {
            shared,
            core: None,
            revision: 0,
            checked_index: 0,
            locations: crate::im::ResourceMap::new(),
            batch: None,
            key: jid.to_string().into(),
            pin: (0, 0),
            watcher_actors: None,
            jid,
        }
    }

    /// Whether this node may serve the user now ([`Shared::serve_state`]).
    fn serve_state(&mut self) -> Serve {
        let index = self.shared.cluster.applied().state.applied_index();
        let pinned = match self.pin {
            (at, pinned) if at == index && at != 0 => pinned,
            _ => {
                let pinned = self.shared.pinned(&self.key);
                self.pin = (index, pinned);
                pinned
            }
        };
        self.shared.serve_state_of(&self.key, pinned)
    }

    fn stored(&self) -> (UserData, u64) {
        self.shared.cluster.user_data(&self.key).unwrap_or_else(|| {
            (
                UserData {
                    jid: self.jid.to_string(),
                    ..Default::default()
                },
                0,
            )
        })
    }

    /// Executes the effects of one input. When the input changed the user's durable state,
    /// the write is committed first and the effects others can observe (pushes, deliveries,
    /// routed stanzas) follow only once it is; a refused or failed write is answered to whoever
    /// caused it, and the durable state is reloaded from the store (never overwritten).
    fn run(&mut self, effects: Vec<Effect>, cause: Cause, ctx: &mut Context<Self>) {
        let persist = effects.iter().any(|e| matches!(e, Effect::Persist));
        if !persist && self.batch.is_none() {
            self.execute(effects);
            return;
        }
        let batch = self.batch.get_or_insert_with(|| {
            // Runs once the mailbox has no more input ready (or after a write in flight).
            ctx.notify(Flush);
            Box::default()
        });
        batch.persist |= persist;
        batch.effects.extend(
            effects
                .into_iter()
                .filter(|e| !matches!(e, Effect::Persist)),
        );
        batch.causes.push(cause);
        if batch.causes.len() >= BATCH_MAX {
            self.flush(ctx);
        }
    }

    /// Writes the pending batch (if it changed anything durable) and then runs its effects.
    fn flush(&mut self, ctx: &mut Context<Self>) {
        let Some(batch) = self.batch.take() else {
            return;
        };
        let batch = *batch;
        metrics::histogram!(xm::BATCH_INPUTS).record(batch.causes.len() as f64);
        if batch.persist {
            self.persist_then(batch.effects, batch.causes, ctx);
        } else {
            self.execute(batch.effects);
        }
    }

    fn execute(&mut self, effects: Vec<Effect>) {
        for e in effects {
            match e {
                Effect::ToSession { resource, stanza } => {
                    self.deliver_to_session(&resource, stanza)
                }
                Effect::ToSessionShared { resource, stanza } => {
                    self.deliver_shared(&resource, stanza)
                }
                Effect::Route(stanza) => self.shared.router().route(stanza),
                Effect::Broadcast { stanza, to } => {
                    let mut known = match self.watcher_actors.take() {
                        Some(w) if Arc::ptr_eq(&w.0, &to) => w,
                        _ => Box::new((to, Vec::new())),
                    };
                    let (list, actors) = &mut *known;
                    self.shared.router().broadcast(&stanza, list, actors);
                    self.watcher_actors = Some(known);
                }
                Effect::Persist => {}
            }
        }
    }

    /// A shared stanza to a session: one on this node writes it from the shared encoding.
    fn deliver_shared(&mut self, resource: &str, stanza: Arc<SharedStanza>) {
        match self.locations.get(resource) {
            Some(SessionLoc::Local(addr)) => deliver::to_session_shared(addr, stanza),
            _ => {
                let addressed = stanza.addressed(&self.jid);
                self.deliver_to_session(resource, addressed);
            }
        }
    }

    fn deliver_to_session(&mut self, resource: &str, stanza: Element) {
        match self.locations.get(resource) {
            // A stopped session's SessionClosed is already in this actor's mailbox, so a
            // message handed back comes back after it, to the account.
            Some(SessionLoc::Local(addr)) => {
                deliver::to_session(addr, stanza, Some(self.shared.clone()));
            }
            Some(SessionLoc::Remote(node)) => {
                let full = format!("{}/{resource}", self.jid);
                let kind = Kind::ToSession(ClientStanza {
                    full_jid: full.clone(),
                    stanza: stanza.to_xml_string(),
                    session_node: 0,
                });
                if let Err(e) = self.shared.cluster.route(*node, kind) {
                    tracing::warn!(jid = %full, node, error = %e, "stanza for a remote session dropped");
                }
            }
            None => tracing::debug!(user = %self.jid, resource, "no such session; stanza dropped"),
        }
    }

    /// Writes the user's durable state through Raft with the revision this actor last saw,
    /// then runs `rest`. The actor handles nothing else until the write is answered, so what it
    /// tells others is never ahead of what is stored. When the write cannot be made, every
    /// input of the batch (`causes`) is answered with an error and the stored state reloaded.
    fn persist_then(&mut self, rest: Vec<Effect>, causes: Vec<Cause>, ctx: &mut Context<Self>) {
        let Some(core) = &self.core else {
            return;
        };
        let size = prost::Message::encoded_len(&core.data);
        if size > self.shared.im_limits.max_user_bytes {
            metrics::counter!(xm::LIMIT_HITS, "limit" => "user_bytes").increment(1);
            tracing::warn!(user = %self.jid, size, limit = self.shared.im_limits.max_user_bytes,
                "user state would exceed its byte limit; change refused");
            self.refuse_all(
                causes,
                herald_xmpp::error::StanzaCondition::ResourceConstraint,
                "stored data for this user is at its size limit",
            );
            self.reload();
            return;
        }
        let data = core.data.clone();
        let cluster = self.shared.cluster.clone();
        let expected = self.revision;
        // The state machine refuses the write unless this node is the user's home in this
        // epoch when it applies it (a stale owner never overwrites). The user-state group keeps
        // no config: the write brings the committed view and the user's pin it was made under.
        let view = cluster.placement();
        let fence = Fence {
            owner_node: self.shared.node_id,
            epoch: view.epoch,
            view: Some(herald_grpc::config::PlacementView {
                epoch: view.epoch,
                nodes: view.nodes,
                reason: String::new(),
            }),
            pinned: self.shared.pinned(&self.key),
        };
        // Never stored (in the group that holds it): create, so that a second writer that also
        // saw nothing is refused instead of overwriting.
        let mode = if expected == 0 {
            WriteMode::Create
        } else {
            WriteMode::Upsert
        };
        let fut = async move {
            cluster
                .write_user(&Command {
                    audit: None,
                    op: Some(Op::Put(PutObject {
                        object: Some(ConfigObject::new(Body::UserData(data))),
                        mode: mode as i32,
                        expected_revision: expected,
                        confirm: false,
                        fence: Some(fence),
                    })),
                })
                .await
        };
        ctx.wait(
            actix::fut::wrap_future(fut).map(move |res, act: &mut UserActor, _| match res {
                Ok(w) => {
                    metrics::counter!(xm::PERSISTS, "result" => "ok").increment(1);
                    act.revision = w.revision;
                    act.execute(rest);
                }
                Err(e) => {
                    let conflict = matches!(
                        e.code(),
                        ErrorCode::FailedPrecondition | ErrorCode::AlreadyExists
                    );
                    metrics::counter!(xm::PERSISTS, "result" => if conflict { "conflict" } else { "error" })
                        .increment(1);
                    tracing::warn!(user = %act.jid, error = %e, conflict,
                        "user state write refused or failed; answering the sender and reloading the stored state");
                    act.not_stored(causes);
                    act.reload();
                }
            }),
        );
    }

    /// Tells the senders of a batch that could not be stored that it did not happen.
    fn refuse_all(
        &mut self,
        causes: Vec<Cause>,
        condition: herald_xmpp::error::StanzaCondition,
        why: &str,
    ) {
        for cause in causes {
            self.refuse(cause, condition.clone(), why);
        }
    }

    /// [`Self::refuse_all`] for a write that failed or was refused.
    fn not_stored(&mut self, causes: Vec<Cause>) {
        self.refuse_all(
            causes,
            herald_xmpp::error::StanzaCondition::InternalServerError,
            "the change could not be stored; try again",
        );
    }

    /// Tells whoever caused a change that could not be stored that it did not happen.
    fn refuse(&mut self, cause: Cause, condition: herald_xmpp::error::StanzaCondition, why: &str) {
        let err = herald_xmpp::StanzaError::with_text(condition, why);
        match cause {
            Cause::Client { resource, stanza } => {
                if let Some(reply) = err.reply_to(&stanza, None) {
                    self.deliver_to_session(&resource, reply);
                }
            }
            Cause::Outside(stanza) => {
                if let Some(reply) = err.reply_to(&stanza, None) {
                    self.shared.router().route(reply);
                }
            }
            Cause::Internal => {}
        }
    }

    /// Replaces the in-memory durable state with the stored one (live sessions are kept).
    fn reload(&mut self) {
        let (data, revision) = self.stored();
        self.revision = revision;
        self.checked_index = self.shared.cluster.user_applied().state.applied_index();
        if let Some(core) = self.core.as_mut() {
            core.set_data(data);
        }
    }

    /// Before handling input: if this node's applied store holds a newer revision of this
    /// user's state than the one this actor knows (another node was the user's home meanwhile, e.g. while this
    /// node was paused or cut off), take it. Cheap when nothing was applied since the last look.
    fn refresh(&mut self) {
        let applied = self.shared.cluster.user_applied();
        let index = applied.state.applied_index();
        if index == self.checked_index {
            return;
        }
        self.checked_index = index;
        let stored = applied
            .state
            .peek(ObjectKind::UserData, &self.key)
            .map_or(0, |o| o.revision);
        // Only a newer revision counts: this node may not have applied our own last write yet
        // (it was committed through the leader), so an older stored revision is just lag.
        if stored > self.revision {
            metrics::counter!(xm::PERSISTS, "result" => "reloaded").increment(1);
            tracing::warn!(user = %self.jid, known = self.revision, stored,
                "user state was written elsewhere; reloading it");
            drop(applied);
            // Changes handled but not written are gone with the in-memory state they were
            // made on: their senders are told, their effects dropped.
            if let Some(batch) = self.batch.take() {
                self.not_stored(batch.causes);
            }
            self.reload();
        }
    }
}

/// The addressing of a stanza (name, namespace, id, type, from, to) without its payload: all an
/// error reply needs, kept per input in case its write fails.
fn header(el: &Element) -> Element {
    let mut h = Element::new(el.name(), el.ns());
    for (k, v) in el.attrs() {
        if matches!(k, "id" | "type" | "from" | "to") {
            h.set_attr(k, v);
        }
    }
    h
}

/// What caused a batch of effects (to answer it when the write it needs fails).
enum Cause {
    /// A stanza from one of the user's sessions.
    Client { resource: String, stanza: Element },
    /// A stanza from someone else.
    Outside(Element),
    /// A session opening or closing.
    Internal,
}

impl Actor for UserActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // (The mailbox was sized when the actor was started: `directory::start_on`.)
        // Wait until this node may serve the user (a previous home still in the view has had
        // time to stop), then load the durable state after a read barrier, so that what the
        // previous home wrote (and was acknowledged) is seen; nothing else runs until then.
        let (shared, jid) = (self.shared.clone(), self.jid.clone());
        ctx.wait(
            actix::fut::wrap_future(async move {
                wait_to_serve(shared.clone(), jid, SERVE_WAIT).await;
                shared.cluster.user_read_barrier().await
            })
            .map(|res, act: &mut UserActor, _| {
                if let Err(e) = res {
                    tracing::warn!(user = %act.jid, error = %e,
                            "read barrier failed; loading possibly stale user state");
                }
                let (data, revision) = act.stored();
                act.revision = revision;
                act.checked_index = act.shared.cluster.user_applied().state.applied_index();
                act.core = Some(UserCore::new(
                    act.jid.clone(),
                    data,
                    act.shared.im_limits.clone(),
                ));
            }),
        );
    }
}

impl Handler<FromOutside> for UserActor {
    type Result = ();
    fn handle(&mut self, msg: FromOutside, ctx: &mut Context<Self>) {
        self.admit(Input::Outside(msg.0), ctx);
    }
}

impl Handler<ContactPresence> for UserActor {
    type Result = ();
    fn handle(&mut self, msg: ContactPresence, ctx: &mut Context<Self>) {
        self.admit(Input::Contact(msg.0), ctx);
    }
}

impl Handler<ClientStanzaMsg> for UserActor {
    type Result = ();
    fn handle(&mut self, msg: ClientStanzaMsg, ctx: &mut Context<Self>) {
        self.admit(Input::Client(msg), ctx);
    }
}

impl Handler<SessionOpened> for UserActor {
    type Result = ();
    fn handle(&mut self, msg: SessionOpened, ctx: &mut Context<Self>) {
        self.admit(Input::Opened(msg), ctx);
    }
}

impl Handler<SessionClosed> for UserActor {
    type Result = ();
    fn handle(&mut self, msg: SessionClosed, ctx: &mut Context<Self>) {
        self.admit(Input::Closed(msg), ctx);
    }
}

impl UserActor {
    /// Runs `input` when this node may serve the user now; hands it to the user's home when
    /// the placement view puts the user elsewhere; otherwise (no lease, or a hand-over from the
    /// previous home still running) waits — the actor handles nothing else meanwhile, so order
    /// is kept — and decides again.
    fn admit(&mut self, input: Input, ctx: &mut Context<Self>) {
        match self.serve_state() {
            Serve::Now => self.process(input, ctx),
            Serve::Elsewhere => hand_over(&self.shared, &self.jid, input),
            Serve::Wait => {
                metrics::counter!(xm::HELD_INPUTS).increment(1);
                let (shared, jid) = (self.shared.clone(), self.jid.clone());
                ctx.wait(
                    actix::fut::wrap_future(wait_to_serve(shared, jid, SERVE_WAIT)).map(
                        move |state, act: &mut UserActor, ctx| match state {
                            Serve::Now => act.process(input, ctx),
                            Serve::Elsewhere => hand_over(&act.shared, &act.jid, input),
                            Serve::Wait => act.give_up(input),
                        },
                    ),
                );
            }
        }
    }

    /// This node could not serve the user for [`SERVE_WAIT`] (no lease: cut off from the
    /// cluster's majority): the sender is told, nothing is stored.
    fn give_up(&mut self, input: Input) {
        metrics::counter!(xm::HELD_GIVEN_UP).increment(1);
        tracing::warn!(user = %self.jid,
            "this node has not been allowed to serve the user for {} s (no placement lease); input refused",
            SERVE_WAIT.as_secs());
        let why = "the user's home node is cut off from the cluster; try again";
        let cond = herald_xmpp::error::StanzaCondition::ServiceUnavailable;
        match input {
            Input::Outside(el) => self.refuse(Cause::Outside(header(&el)), cond, why),
            Input::Client(msg) => {
                if let Some(resource) = msg.full_jid.resource().map(str::to_string) {
                    if !self.locations.contains_key(&resource) {
                        self.locations.insert(resource.clone(), msg.loc);
                    }
                    let cause = Cause::Client {
                        resource,
                        stanza: header(&msg.stanza),
                    };
                    self.refuse(cause, cond, why);
                }
            }
            Input::Opened(msg) => {
                if let Some(resource) = msg.full_jid.resource().map(str::to_string) {
                    self.locations.insert(resource, msg.loc);
                }
            }
            Input::Closed(msg) => {
                if let Some(resource) = msg.full_jid.resource() {
                    self.locations.remove(resource);
                }
            }
            // Presence is not answered with errors (RFC 6121 §4.3 aside): dropped.
            Input::Contact(_) | Input::Calendar(_) => {}
        }
    }

    fn process(&mut self, input: Input, ctx: &mut Context<Self>) {
        match input {
            Input::Outside(el) => {
                self.refresh();
                let Some(core) = self.core.as_mut() else {
                    return;
                };
                let cause = Cause::Outside(header(&el));
                let effects = core.from_outside(el, now_ms());
                self.run(effects, cause, ctx);
            }
            Input::Client(msg) => {
                let Some(resource) = msg.full_jid.resource().map(str::to_string) else {
                    return;
                };
                if !self.locations.contains_key(&resource) {
                    // A stanza from a session we have not seen open (e.g. after a re-homing race).
                    self.process(
                        Input::Opened(SessionOpened {
                            full_jid: msg.full_jid.clone(),
                            loc: msg.loc.clone(),
                        }),
                        ctx,
                    );
                }
                self.refresh();
                let Some(core) = self.core.as_mut() else {
                    return;
                };
                let cause = Cause::Client {
                    resource: resource.clone(),
                    stanza: header(&msg.stanza),
                };
                let effects = core.from_client(&resource, msg.stanza, now_ms());
                self.run(effects, cause, ctx);
            }
            Input::Opened(msg) => {
                let Some(resource) = msg.full_jid.resource().map(str::to_string) else {
                    return;
                };
                match (self.locations.get(&resource), &msg.loc) {
                    // The same session announced again (it followed a re-homing): nothing changes.
                    (Some(SessionLoc::Local(old)), SessionLoc::Local(new)) if old == new => return,
                    (Some(SessionLoc::Remote(a)), SessionLoc::Remote(b)) if a == b => return,
                    (Some(SessionLoc::Local(old)), _) => old.do_send(Kick(conflict())),
                    _ => {}
                }
                self.locations.insert(resource.clone(), msg.loc);
                self.refresh();
                let Some(core) = self.core.as_mut() else {
                    return;
                };
                let effects = core.session_bound(&resource);
                self.run(effects, Cause::Internal, ctx);
            }
            Input::Closed(msg) => {
                let Some(resource) = msg.full_jid.resource().map(str::to_string) else {
                    return;
                };
                if self.locations.remove(&resource).is_none() {
                    return;
                }
                self.refresh();
                let Some(core) = self.core.as_mut() else {
                    return;
                };
                let effects = core.session_closed(&resource, now_ms());
                self.run(effects, Cause::Internal, ctx);
            }
            Input::Calendar(state) => {
                self.refresh();
                let Some(core) = self.core.as_mut() else {
                    return;
                };
                let effects = core.calendar_changed(state);
                self.run(effects, Cause::Internal, ctx);
            }
            Input::Contact(stanza) => {
                self.refresh();
                let Some(core) = self.core.as_mut() else {
                    return;
                };
                let effects = core.contact_presence(&stanza, now_ms());
                // Presence is never answered with an error, so its cause is not kept.
                self.run(effects, Cause::Internal, ctx);
            }
        }
    }
}

/// How long a user actor waits for the right to serve before refusing what it holds.
const SERVE_WAIT: Duration = Duration::from_secs(30);

/// One input of a user actor (kept while it waits for the right to serve).
pub(super) enum Input {
    Outside(Element),
    Client(ClientStanzaMsg),
    Opened(SessionOpened),
    Closed(SessionClosed),
    Calendar(herald_federation::availability::CalendarState),
    /// A contact's presence broadcast, addressed to the user's bare JID.
    Contact(Arc<SharedStanza>),
}

/// Whether this node may serve a user now (see [`Shared::serve_state`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Serve {
    Now,
    /// This is the user's home, but it has no lease or waits out a hand-over.
    Wait,
    /// The placement view puts the user on another node.
    Elsewhere,
}

/// Polls until this node may serve `jid`, it is no longer the user's home, or `limit` passed.
async fn wait_to_serve(shared: Arc<Shared>, jid: Jid, limit: Duration) -> Serve {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let state = shared.serve_state(&jid);
        if state != Serve::Wait || tokio::time::Instant::now() >= deadline {
            return state;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sends what a node that is not (or no longer) the user's home received for the user to the
/// home in its placement view. A client stanza keeps naming the node its session is on.
pub(super) fn hand_over(shared: &Arc<Shared>, user: &Jid, input: Input) {
    metrics::counter!(xm::HANDED_OVER).increment(1);
    match input {
        Input::Outside(el) => shared.router().route(el),
        Input::Contact(stanza) => shared.router().route(stanza.addressed(user)),
        Input::Client(msg) => {
            let home = shared.home_of(&msg.full_jid.bare());
            let session_node = match &msg.loc {
                SessionLoc::Local(_) => 0,
                SessionLoc::Remote(n) => *n,
            };
            if home == shared.node_id {
                // Views moved on meanwhile: this node is the home again.
                let bare = msg.full_jid.bare();
                if shared.user_actor(&bare, msg).is_err() {
                    metrics::counter!(xm::MAILBOX_DROPS, "mailbox" => "user").increment(1);
                }
                return;
            }
            let kind = Kind::FromClient(ClientStanza {
                full_jid: msg.full_jid.to_string(),
                stanza: msg.stanza.to_xml_string(),
                session_node,
            });
            if let Err(e) = shared.cluster.route(home, kind) {
                tracing::warn!(jid = %msg.full_jid, home, error = %e,
                    "stanza handed to the user's new home dropped");
            }
        }
        // The session follows the placement by itself (it re-opens at the new home).
        Input::Opened(_) | Input::Closed(_) => {}
        // The calendar actor of the new home tells it.
        Input::Calendar(_) => {}
    }
}

impl Handler<StopUser> for UserActor {
    type Result = ();
    fn handle(&mut self, _: StopUser, ctx: &mut Context<Self>) {
        if self.batch.is_some() {
            // Written (or refused, and its senders told) first; the stop comes after.
            self.flush(ctx);
            ctx.notify(StopUser);
            return;
        }
        ctx.stop();
    }
}

impl Handler<Flush> for UserActor {
    type Result = ();
    fn handle(&mut self, _: Flush, ctx: &mut Context<Self>) {
        self.flush(ctx);
    }
}

// ---- calendar overlay (from the node's CalendarActor, `crate::calendar`) ----

/// What a local user's calendar shows now: the registry hands it to the user's actor
/// (creating it if needed), which re-broadcasts the user's presence to watchers with the
/// overlay applied when what they see changes. The overlay is never stored.
#[derive(Message)]
#[rtype(result = "()")]
pub struct CalendarFor {
    pub jid: Jid,
    pub state: herald_federation::availability::CalendarState,
}

#[derive(Message)]
#[rtype(result = "()")]
struct CalendarOverlay(herald_federation::availability::CalendarState);

impl Handler<CalendarFor> for UserRegistry {
    type Result = ();
    fn handle(&mut self, msg: CalendarFor, _: &mut Context<Self>) {
        if self.elsewhere(&msg.jid) {
            return;
        }
        self.forward(&msg.jid, CalendarOverlay(msg.state));
    }
}

impl Handler<CalendarOverlay> for UserActor {
    type Result = ();
    fn handle(&mut self, msg: CalendarOverlay, ctx: &mut Context<Self>) {
        self.admit(Input::Calendar(msg.0), ctx);
    }
}
