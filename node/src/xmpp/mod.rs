//! XMPP client service: listeners (STARTTLS on 5222, direct TLS on 5223), SessionActors,
//! the sharded UserRegistry and UserActors, the Router, and the sink for stanzas other nodes
//! route here.
//!
//! Flow: socket task → [`session::SessionActor`] (c2s machine) → the user's
//! [`users::UserActor`] on the user's home node (same node: actor message, straight to the
//! actor once the session has its address; other node: the node-to-node Route stream) →
//! [`crate::im::UserCore`] → effects: to the user's sessions, to the [`router::Router`] (other
//! users, here or on their home node), or persist through Raft.
//!
//! Threads: the accept loops run on the control plane and hand each connection to the
//! data-plane arbiter with the fewest live connections; the socket task and the SessionActor
//! live together on that arbiter. A user's actor starts on the arbiter of the thread that first
//! needs it — for a user who signs in, their session's — and every thread finds it in the
//! node's [`directory::Directory`] and sends to it directly. No actor sits on every stanza's
//! path, and a message between two local users crosses threads at most once.

pub mod deliver;
pub mod directory;
pub mod io;
pub mod limiter;
pub mod metrics;
mod node_sink;
pub mod registry;
pub mod router;
pub mod server_iq;
pub mod session;
pub mod sm;
pub mod users;

use std::sync::Arc;

use actix::prelude::*;
use herald_cluster::ClusterHandle;
use herald_grpc::cluster::route_message::Kind;
use herald_grpc::config::{config_object::Body, ObjectKind};
use herald_xmpp::c2s::C2sConfig;
use herald_xmpp::codec::{Decoder, Limits, StreamEvent};
use herald_xmpp::sasl::Mechanism;
use herald_xmpp::{ns, Element, Jid};

use crate::im::ImLimits;
use node_sink::{NodeSink, SharedBroadcast};
use router::Router;
use session::SessionActor;
use users::{
    ClientStanzaMsg, SessionClosed, SessionLoc, SessionOpened, ToLocalSession, ToUser, UserActor,
    UserRegistry,
};

/// Where the XMPP service runs: the control-plane runtime (accept loops, re-routing) and the
/// data-plane arbiters (sessions, user actors).
pub struct Planes {
    pub control: tokio::runtime::Handle,
    pub arbiters: Vec<actix_rt::ArbiterHandle>,
}

/// The shard (index into [`Shared::shards`]) of a JID's user: a hash of its bare part, so a
/// full JID and its bare JID agree.
pub fn shard_index(jid: &Jid, shards: usize) -> usize {
    use std::hash::{Hash, Hasher};
    if shards <= 1 {
        return 0;
    }
    let mut h = std::collections::hash_map::DefaultHasher::new();
    jid.local().hash(&mut h);
    jid.domain().hash(&mut h);
    (h.finish() % shards as u64) as usize
}

/// Per-connection and per-session limits of the c2s listeners.
#[derive(Debug, Clone, Copy)]
pub struct SessionLimits {
    pub max_connections: usize,
    pub max_connections_per_source: usize,
    pub max_stanzas_per_second: usize,
    pub max_bytes_per_second: usize,
}

/// What every XMPP actor of this node shares (read-only).
pub struct Shared {
    pub node_id: u64,
    pub cluster: ClusterHandle,
    /// One registry per data-plane arbiter: local sessions by full JID (for what other nodes
    /// send them), and the placement scan.
    pub shards: Vec<Addr<UserRegistry>>,
    /// This node's user actors, found and started by whichever thread needs one.
    pub directory: directory::Directory,
    /// The data-plane arbiters (user actors start on the caller's, or on the JID's shard).
    pub arbiters: Vec<actix_rt::ArbiterHandle>,
    pub im_limits: ImLimits,
    pub limits: Limits,
    pub session_limits: SessionLimits,
    pub auth_limiter: Addr<limiter::AuthLimiter>,
    /// The last c2s configurations handed out (STARTTLS port, direct TLS port): sessions share
    /// one copy while the served domains stay the same.
    pub c2s_configs: std::sync::Mutex<[Option<Arc<C2sConfig>>; 2]>,
    /// The federation edge (set once, right after start).
    pub s2s: std::sync::OnceLock<Arc<crate::s2s::S2s>>,
    /// The SIP federation edge (set once at start).
    pub sip: std::sync::OnceLock<Arc<crate::sip::Sip>>,
}

/// A snapshot of where users live ([`Shared::homes`]).
pub struct Homes {
    applied: Arc<herald_cluster::Applied>,
    view: herald_cluster::ownership::View,
    node_id: u64,
}

impl Homes {
    /// [`Shared::is_local_domain`] in this snapshot.
    pub fn is_local_domain(&self, domain: &str) -> bool {
        domain_in(&self.applied, domain)
    }

    /// [`Shared::home_of_existing`] in this snapshot, for the bare JID `key` as text.
    pub fn home_of_existing(&self, key: &str) -> Option<u64> {
        let pinned = pin_in(&self.applied, key)?;
        Some(self.view.home(key, pinned).unwrap_or(self.node_id))
    }
}

/// Whether `domain` is one of the local domains in `applied`.
fn domain_in(applied: &herald_cluster::Applied, domain: &str) -> bool {
    applied.state.peek(ObjectKind::Domain, domain).is_some()
}

/// The pinned home node of an existing user in `applied` (0: none); `None` when there is no
/// such user.
fn pin_in(applied: &herald_cluster::Applied, key: &str) -> Option<u64> {
    match applied
        .state
        .peek(ObjectKind::User, key)
        .map(|o| o.body.as_ref())
    {
        Some(Some(Body::User(u))) => Some(u.pinned_home_node),
        Some(_) => Some(0),
        None => None,
    }
}

impl Shared {
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new(self.clone())
    }

    /// The registry shard of `jid`'s user (full or bare JID).
    pub fn shard(&self, jid: &Jid) -> &Addr<UserRegistry> {
        &self.shards[shard_index(jid, self.shards.len())]
    }

    /// Queues `msg` at `bare`'s user actor on this node, starting the actor when there is none
    /// (on the calling thread's arbiter, else the JID's shard). Returns the actor's address.
    /// The caller has checked that this node is the user's home (the actor checks again).
    pub fn user_actor<M>(
        self: &Arc<Self>,
        bare: &Jid,
        msg: M,
    ) -> Result<Addr<UserActor>, SendError<M>>
    where
        M: Message<Result = ()> + Send + 'static,
        UserActor: Handler<M>,
    {
        self.directory.with_user(
            bare,
            || {
                let i = directory::current_data_plane()
                    .filter(|&i| i < self.arbiters.len())
                    .unwrap_or_else(|| shard_index(bare, self.arbiters.len()));
                directory::start_on(
                    &self.arbiters[i],
                    UserActor::new(self.clone(), bare.clone()),
                )
            },
            |addr| addr.try_send(msg).map(|()| addr.clone()),
        )
    }

    /// [`Shared::user_actor`] for a stanza from anyone but the user's own sessions; a full
    /// mailbox is counted and gives the stanza back.
    pub fn to_user(self: &Arc<Self>, bare: &Jid, stanza: Element) -> Result<(), Element> {
        match self.user_actor(bare, users::FromOutside(stanza)) {
            Ok(_) => Ok(()),
            Err(
                SendError::Full(users::FromOutside(s)) | SendError::Closed(users::FromOutside(s)),
            ) => {
                ::metrics::counter!(metrics::MAILBOX_DROPS, "mailbox" => "user").increment(1);
                tracing::warn!(user = %bare, "user actor mailbox full; stanza not queued");
                Err(s)
            }
        }
    }

    /// Closes every client session on this node with `system-shutdown`; returns how many.
    pub async fn shutdown_sessions(&self) -> usize {
        let asks: Vec<_> = self
            .shards
            .iter()
            .map(|s| s.send(users::ShutdownSessions))
            .collect();
        let mut n = 0;
        for a in asks {
            n += a.await.unwrap_or(0);
        }
        n
    }

    /// Whether `domain` is one of the cluster's local domains.
    pub fn is_local_domain(&self, domain: &str) -> bool {
        domain_in(&self.cluster.applied(), domain)
    }

    /// The user's pinned home node (0: none).
    pub(crate) fn pinned(&self, key: &str) -> u64 {
        self.user_pin(key).unwrap_or(0)
    }

    /// The pinned home node of an existing user (0: none); `None` when there is no such user.
    fn user_pin(&self, key: &str) -> Option<u64> {
        pin_in(&self.cluster.applied(), key)
    }

    /// [`Self::home_of`] for a user that exists; `None` when there is no such user (one look
    /// at the store, for the router).
    pub fn home_of_existing(&self, bare: &Jid) -> Option<u64> {
        let key = bare.to_string();
        let pinned = self.user_pin(&key)?;
        Some(self.cluster.home_node(&key, pinned).unwrap_or(self.node_id))
    }

    /// The applied store and the placement view as they are now, read once for many lookups
    /// (a presence broadcast to every watcher).
    pub fn homes(&self) -> Homes {
        Homes {
            applied: self.cluster.applied(),
            view: self.cluster.placement(),
            node_id: self.node_id,
        }
    }

    /// The node a user's actor lives on, from the committed placement view: the pinned node if
    /// it is in the view, else rendezvous hashing over the view's nodes.
    pub fn home_of(&self, bare: &Jid) -> u64 {
        let key = bare.to_string();
        let pinned = self.pinned(&key);
        self.cluster.home_node(&key, pinned).unwrap_or(self.node_id)
    }

    /// Whether this node may serve `bare`'s user now (see `herald_cluster::ownership`).
    pub fn serve_state(&self, bare: &Jid) -> users::Serve {
        let key = bare.to_string();
        let pinned = self.pinned(&key);
        self.serve_state_of(&key, pinned)
    }

    /// [`Self::serve_state`] for the bare JID `key` (as text) pinned to `pinned` (0: none).
    pub fn serve_state_of(&self, key: &str, pinned: u64) -> users::Serve {
        match self.cluster.home_and_may_serve(key, pinned) {
            (home, _) if home.unwrap_or(self.node_id) != self.node_id => users::Serve::Elsewhere,
            (_, true) => users::Serve::Now,
            (_, false) => users::Serve::Wait,
        }
    }

    /// The c2s negotiation settings for a new connection.
    /// The c2s configuration for a new connection, shared with earlier ones when unchanged.
    pub fn c2s_config(&self, direct_tls: bool) -> Arc<C2sConfig> {
        let mut fresh = self.build_c2s_config();
        fresh.direct_tls = direct_tls;
        let mut cache = self
            .c2s_configs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let slot = &mut cache[usize::from(direct_tls)];
        match slot {
            Some(c) if **c == fresh => c.clone(),
            _ => slot.insert(Arc::new(fresh)).clone(),
        }
    }

    fn build_c2s_config(&self) -> C2sConfig {
        let domains = self
            .cluster
            .applied()
            .state
            .list(ObjectKind::Domain)
            .into_iter()
            .filter_map(|o| match o.body {
                Some(Body::Domain(d)) => Some(d.name),
                _ => None,
            })
            .collect();
        C2sConfig {
            domains,
            tls_available: true,
            direct_tls: false,
            allow_plain_without_tls: false,
            mechanisms: vec![
                Mechanism::ScramSha256,
                Mechanism::ScramSha1,
                Mechanism::Plain,
            ],
            limits: self.limits,
            extra_features: vec![
                Element::new("ver", ns::ROSTER_VER),
                Element::new("sub", ns::PRE_APPROVAL),
                Element::new("sm", ns::SM),
            ],
        }
    }
}

/// Parses one stanza that was serialized with its own `xmlns` (as routed between nodes).
pub fn parse_stanza(xml: &str) -> Option<Element> {
    let mut d = Decoder::new(Limits::default());
    d.feed(
        b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>",
    );
    d.feed(xml.as_bytes());
    loop {
        match d.next() {
            Ok(Some(StreamEvent::Stanza(el))) => return Some(el),
            Ok(Some(_)) => continue,
            Ok(None) | Err(_) => return None,
        }
    }
}

/// The c2s listeners.
pub struct XmppListeners {
    pub c2s: std::net::TcpListener,
    pub c2s_tls: std::net::TcpListener,
}

/// Starts the XMPP service: one registry shard per data-plane arbiter, the accept loops on the
/// control plane. Returns the shared context.
pub fn start(
    cluster: ClusterHandle,
    planes: Planes,
    tls: Arc<rustls::ServerConfig>,
    listeners: XmppListeners,
    limits: Limits,
    im_limits: ImLimits,
    session_limits: SessionLimits,
) -> anyhow::Result<Arc<Shared>> {
    metrics::describe();
    anyhow::ensure!(
        !planes.arbiters.is_empty(),
        "at least one data-plane worker is needed"
    );
    let shards: Vec<Addr<UserRegistry>> = planes
        .arbiters
        .iter()
        .map(|a| UserRegistry::start_in_arbiter(a, |_| UserRegistry::new()))
        .collect();
    for (i, a) in planes.arbiters.iter().enumerate() {
        a.spawn_fn(move || directory::mark_data_plane(i));
    }
    let shared = Arc::new(Shared {
        node_id: cluster.node_id(),
        cluster: cluster.clone(),
        shards: shards.clone(),
        directory: directory::Directory::new(),
        arbiters: planes.arbiters.clone(),
        im_limits,
        limits,
        session_limits,
        auth_limiter: limiter::AuthLimiter::start_in_arbiter(&planes.arbiters[0], |_| {
            limiter::AuthLimiter::default()
        }),
        c2s_configs: Default::default(),
        s2s: Default::default(),
        sip: Default::default(),
    });
    for (i, s) in shards.iter().enumerate() {
        s.do_send(users::Init(shared.clone(), i));
    }
    cluster.routes().set_sink(Arc::new(NodeSink {
        shards,
        shared: Arc::downgrade(&shared),
    }));
    if let Some(lost) = cluster.routes().take_lost() {
        planes.control.spawn(reroute_lost(shared.clone(), lost));
    }
    let workers = Arc::new(Workers {
        load: planes
            .arbiters
            .iter()
            .map(|_| std::sync::atomic::AtomicUsize::new(0))
            .collect(),
        arbiters: planes.arbiters,
    });
    // XEP-0368: direct TLS names its protocol with ALPN `xmpp-client`. A client that offers
    // ALPN without it is refused by the handshake; one that offers none is served.
    let direct_tls = {
        let mut c = (*tls).clone();
        c.alpn_protocols = vec![b"xmpp-client".to_vec()];
        Arc::new(c)
    };
    for (listener, direct) in [(listeners.c2s, false), (listeners.c2s_tls, true)] {
        let tls = if direct { &direct_tls } else { &tls };
        let listener = {
            let _on_control_plane = planes.control.enter();
            tokio::net::TcpListener::from_std(listener)?
        };
        let (shared, tls, workers) = (shared.clone(), tls.clone(), workers.clone());
        let conns = Arc::new(limiter::ConnLimits::new(
            session_limits.max_connections,
            session_limits.max_connections_per_source,
        ));
        planes
            .control
            .spawn(accept_loop(listener, direct, shared, tls, workers, conns));
    }
    Ok(shared)
}

/// The data-plane arbiters and how many live connections each one serves.
struct Workers {
    arbiters: Vec<actix_rt::ArbiterHandle>,
    load: Vec<std::sync::atomic::AtomicUsize>,
}

impl Workers {
    /// The arbiter with the fewest live connections (the lowest index on a tie).
    fn least_loaded(&self) -> usize {
        use std::sync::atomic::Ordering::Relaxed;
        (0..self.load.len())
            .min_by_key(|&i| self.load[i].load(Relaxed))
            .unwrap_or(0)
    }
}

/// How long an item lost to a dead node waits for the placement view to move its user away
/// from that node before it is dropped (counted and logged).
const LOST_WAIT: std::time::Duration = std::time::Duration::from_secs(20);

/// The node an item lost to `dead` would go to now; `None` when it needs no home (re-sent at
/// once or dropped).
fn lost_target(shared: &Shared, kind: &Kind) -> Option<u64> {
    let user = match kind {
        Kind::ToUser(xml) => parse_stanza(xml)
            .and_then(|el| el.get_attr("to").and_then(|t| Jid::parse(t).ok()))
            .filter(|to| shared.is_local_domain(to.domain())),
        Kind::FromClient(cs) => Jid::parse(&cs.full_jid).ok(),
        Kind::SessionOpened(j) | Kind::SessionClosed(j) => Jid::parse(j).ok(),
        // All of a batch had the same home (users of other domains: sent again at once).
        Kind::Broadcast(b) => {
            b.to.first()
                .and_then(|t| Jid::parse(t).ok())
                .filter(|to| shared.is_local_domain(to.domain()))
        }
        Kind::ToSession(_) | Kind::ToRemote(_) | Kind::ToSip(_) => None,
    }?;
    Some(shared.home_of(&user.bare()))
}

/// Items this node sent to a node that turned out to be down: sent again once that node
/// answers again or the committed placement view no longer puts their user on it (the leader
/// removes a node silent for `DEAD_AFTER`), in their order.
async fn reroute_lost(
    shared: Arc<Shared>,
    mut lost: tokio::sync::mpsc::UnboundedReceiver<(u64, Kind)>,
) {
    use std::collections::VecDeque;
    let mut waiting: VecDeque<(std::time::Instant, u64, Kind)> = VecDeque::new();
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            item = lost.recv() => match item {
                Some((dead, kind)) => waiting.push_back((std::time::Instant::now(), dead, kind)),
                None => return,
            },
            _ = tick.tick() => {}
        }
        let mut still = VecDeque::new();
        for (since, dead, kind) in waiting.drain(..) {
            // Held while its user's home is still the node that could not be reached, until
            // that node answers again (it restarted in time) or the view moves the user.
            if lost_target(&shared, &kind) == Some(dead) && !shared.cluster.routes().is_live(dead) {
                if since.elapsed() < LOST_WAIT {
                    still.push_back((since, dead, kind));
                } else {
                    ::metrics::counter!(herald_cluster::routing::ROUTE_DROPPED, "reason" => "home_down")
                        .increment(1);
                    tracing::warn!(
                        node = dead,
                        "item for a user whose home stayed down dropped; its sender is told"
                    );
                    bounce_lost(&shared, kind);
                }
                continue;
            }
            resend_lost(&shared, kind);
        }
        waiting = still;
    }
}

/// A message or IQ that could not reach its user's home in time: its sender gets
/// `recipient-unavailable` (wait: try again later) instead of silence. Presence and session
/// notices are not answered.
fn bounce_lost(shared: &Arc<Shared>, kind: Kind) {
    use herald_xmpp::error::{StanzaCondition, StanzaError};
    let cond = StanzaCondition::RecipientUnavailable;
    match kind {
        Kind::ToUser(xml) => {
            if let Some(el) = parse_stanza(&xml) {
                shared.router().bounce(&el, cond);
            }
        }
        // The sender is a session on this node, on its way to its own home.
        Kind::FromClient(cs) => {
            let reply = parse_stanza(&cs.stanza)
                .filter(|el| el.name() != "presence")
                .and_then(|el| StanzaError::new(cond).reply_to(&el, None));
            if let (Some(reply), Ok(full)) = (reply, Jid::parse(&cs.full_jid)) {
                shared.shard(&full).do_send(ToLocalSession {
                    full_jid: cs.full_jid,
                    stanza: reply,
                });
            }
        }
        _ => {}
    }
}

/// Sends a lost item again, to its user's home now: another node when the view moved the
/// user, or the same node when it answers again (it restarted in time).
fn resend_lost(shared: &Arc<Shared>, kind: Kind) {
    use users::FromLocalSession;
    let to_home = |full: &Jid, local: FromLocalSession, remote: Kind| {
        let home = shared.home_of(&full.bare());
        if home == shared.node_id {
            shared.shard(full).do_send(local);
        } else if let Err(e) = shared.cluster.route(home, remote) {
            tracing::warn!(jid = %full, home, error = %e, "re-routing failed");
        }
    };
    match kind {
        Kind::ToUser(xml) => {
            if let Some(el) = parse_stanza(&xml) {
                shared.router().route(el);
            }
        }
        Kind::FromClient(cs) => {
            if let (Ok(full), Some(el)) = (Jid::parse(&cs.full_jid), parse_stanza(&cs.stanza)) {
                to_home(
                    &full,
                    FromLocalSession::Stanza(full.clone(), el),
                    Kind::FromClient(cs),
                );
            }
        }
        Kind::SessionOpened(j) => {
            if let Ok(full) = Jid::parse(&j) {
                to_home(
                    &full,
                    FromLocalSession::Opened(full.clone()),
                    Kind::SessionOpened(j),
                );
            }
        }
        Kind::SessionClosed(j) => {
            if let Ok(full) = Jid::parse(&j) {
                to_home(
                    &full,
                    FromLocalSession::Closed(full.clone()),
                    Kind::SessionClosed(j),
                );
            }
        }
        // The sessions of a dead node are gone with it.
        Kind::ToSession(_) => {}
        // Picks another federation node.
        Kind::ToRemote(xml) => {
            if let (Some(s2s), Some(el)) = (shared.s2s.get(), parse_stanza(&xml)) {
                s2s.send(el, false);
            }
        }
        // Each recipient to where it goes now; from here, federated recipients may go to
        // another carrier or routing node.
        Kind::Broadcast(b) => match SharedBroadcast::decode(&b) {
            Some(sb) => SharedBroadcast {
                forwarded: false,
                ..sb
            }
            .send(shared),
            None => tracing::warn!("undecodable presence broadcast dropped"),
        },
        // Goes to the routing node in office now.
        Kind::ToSip(xml) => {
            if let (Some(sip), Some(el)) = (shared.sip.get(), parse_stanza(&xml)) {
                sip.send(el);
            }
        }
    }
}

/// Accepts on the control plane and hands each connection to the least-loaded data-plane
/// arbiter, where its socket task and SessionActor live until it closes.
async fn accept_loop(
    listener: tokio::net::TcpListener,
    direct_tls: bool,
    shared: Arc<Shared>,
    tls: Arc<rustls::ServerConfig>,
    workers: Arc<Workers>,
    conns: Arc<limiter::ConnLimits>,
) {
    use std::sync::atomic::Ordering::Relaxed;
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "accepting a client connection failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let source = match conns.open(peer.ip()) {
            Ok(p) => p,
            Err(why) => {
                ::metrics::counter!(metrics::LIMIT_HITS, "limit" => why.label()).increment(1);
                tracing::debug!(%peer, limit = why.label(), direct_tls,
                    "client connection refused: too many open connections");
                drop(tcp);
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        // Leave this runtime's reactor; the arbiter registers the socket with its own.
        let tcp = match tcp.into_std() {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(%peer, error = %e, "cannot hand a client connection over");
                continue;
            }
        };
        let i = workers.least_loaded();
        workers.load[i].fetch_add(1, Relaxed);
        // Boxed: the connection's task keeps it, and 40 bytes more would move that task into
        // a larger allocation size class (see `io::run`).
        let release = Box::new(Release {
            workers: workers.clone(),
            worker: i,
            conns: conns.clone(),
            source,
        });
        let (shared, tls) = (shared.clone(), tls.clone());
        let handed = workers.arbiters[i].spawn_fn(move || {
            // Set up here, not in the task: what the task's future captures it keeps for the
            // connection's whole life (see `io::run`).
            match tokio::net::TcpStream::from_std(tcp) {
                Ok(tcp) => {
                    let (tx, rx) = io::out_queue(io::OUT_QUEUE_LIMIT);
                    let session = SessionActor::new(shared, tx, peer, direct_tls).start();
                    let fut = io::run(tcp, direct_tls, tls, session, rx, release);
                    actix_rt::spawn(fut);
                }
                Err(e) => {
                    tracing::warn!(%peer, error = %e, "cannot register a client connection")
                }
            }
        });
        if !handed {
            // The arbiter is gone (the node is stopping): the connection closes with it (and
            // `release` with the dropped closure).
            tracing::debug!(%peer, "client connection dropped: the node is stopping");
        }
    }
}

/// A client connection's claims on its arbiter's load and its source's connection count,
/// given back when the connection's task ends (or never starts).
struct Release {
    workers: Arc<Workers>,
    worker: usize,
    conns: Arc<limiter::ConnLimits>,
    source: limiter::SourcePrefix,
}

impl Drop for Release {
    fn drop(&mut self) {
        use std::sync::atomic::Ordering::Relaxed;
        self.workers.load[self.worker].fetch_sub(1, Relaxed);
        self.conns.close(self.source);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_and_bare_jids_share_a_shard_and_users_spread() {
        let mut counts = [0usize; 4];
        for i in 0..400 {
            let bare = Jid::parse(&format!("user{i}@example.test")).unwrap();
            let full = bare.with_resource("phone").unwrap();
            let s = shard_index(&bare, 4);
            assert_eq!(s, shard_index(&full, 4));
            counts[s] += 1;
        }
        assert!(counts.iter().all(|&c| c > 50), "uneven spread: {counts:?}");
        assert_eq!(shard_index(&Jid::parse("a@b").unwrap(), 1), 0);
    }

    /// An actor's task is tokio's task cell around actix' `ContextFut` (the actor, its context
    /// and mailbox): the future plus 96 bytes, rounded up to 128 (the cell's alignment). Every
    /// signed-in client has one session actor and one user actor; up to 928 bytes of future
    /// each is one 1,024-byte allocation, a few bytes more the next size class (1,280). So the
    /// rarely used parts of both actors are boxed: bench/README.md, "Fixes and their effect".
    #[test]
    fn session_and_user_actor_tasks_stay_in_their_size_class() {
        use std::mem::size_of;
        type Fut<A> = actix::dev::ContextFut<A, actix::Context<A>>;
        let session = size_of::<Fut<session::SessionActor>>();
        let user = size_of::<Fut<users::UserActor>>();
        assert!(
            session <= 928,
            "a session actor's task future is {session} bytes (> 928)"
        );
        assert!(
            user <= 928,
            "a user actor's task future is {user} bytes (> 928)"
        );
    }
}
