//! SIP federation edge (first slice: page-mode IM over TCP and mutual TLS).
//!
//! Message flow:
//! - Inbound: every node binds `sip_port` and `sip_tls_port`; only the routing node
//!   ([`policy::routing_node`] over the stored `routing-node` order and the live nodes) serves
//!   requests. Every other node relays each accepted connection, unopened, to the routing node's
//!   listener behind a PROXY protocol v2 header with the peer's address ([`relay`]; with
//!   `sip_relay` off, or the routing node unreachable, it answers 503). On the routing node,
//!   [`tls`] handshakes and checks the peer against `tls-peer` (TLS port) before any SIP.
//!   [`inbound::serve`] runs one connection: the herald-sip decoder frames and validates,
//!   decoder errors are answered with their status, each request is judged by
//!   [`edge::inbound`] (federated domain, incoming ACL, local user) and an admitted MESSAGE is
//!   handed to the XMPP dispatcher as a chat message from `user@sipdomain`, which forwards it to
//!   the user's home node.
//! - Outbound: the dispatcher ([`crate::xmpp::router`]) hands a stanza for a configured
//!   `sip-domain` to [`Sip::send`]; everything leaves from the routing node. The next hop comes
//!   from the domain's plan ([`policy::route_plan`], walked in [`route`]): the most specific
//!   static route ([`policy::static_routes`]), else the DNS SRV records `_sipfederationtls._tcp`
//!   / `_sip._tls` through the federation resolver (`--dns-resolver`), and for AOL-type domains
//!   then the default federation routing domain's route and records. A chat message goes inside
//!   the pair's IM session ([`subs`], opened with an INVITE on demand) or, when the peer refused
//!   one, as a page-mode MESSAGE ([`edge::outbound_message`]), on the [`outbound`] link of that
//!   next hop (TCP, or TLS): one task per hop with a bounded queue, backoff
//!   (`federation::edge::link`) and a transaction timeout; a non-2xx final answer, a timeout or
//!   a failed connection bounces the message to its XMPP sender ([`edge::response_condition`]).
//!
//! Settings (`sip-domain`, `acl`, `static-route`, `routing-node`) are read from the replicated
//! store on every decision, so changes apply without a restart.

mod broadcast;
pub mod edge;
pub mod inbound;
pub mod metrics;
pub mod outbound;
pub mod policy;
pub mod presence;
pub mod proxy_v2;
pub mod relay;
mod route;
pub mod subs;
pub mod tls;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};

use herald_cluster::{Applied, ClusterHandle};
use herald_grpc::config::config_object::Body;
use herald_grpc::config::{IncomingAclEntry, ObjectKind};
use herald_xmpp::error::{StanzaCondition, StanzaError};
use herald_xmpp::{Element, Jid};
use tokio::sync::mpsc;

use crate::xmpp::Shared;
use broadcast::{forward_failed, not_routing_node};
use route::{SrvEntry, REROUTED_ATTR};
pub use route::{DOWN_FOR, MAX_WAITING_FOR_DNS, SRV_TTL};

/// The store as the inbound judge sees it.
pub struct StoreView(pub Arc<Applied>);

impl edge::Directory for StoreView {
    fn is_federated(&self, domain: &str) -> bool {
        self.0.state.peek(ObjectKind::SipDomain, domain).is_some()
    }
    fn acl(&self) -> Vec<IncomingAclEntry> {
        self.0
            .state
            .list(ObjectKind::Acl)
            .into_iter()
            .filter_map(|o| match o.body {
                Some(Body::Acl(a)) => Some(a),
                _ => None,
            })
            .collect()
    }
    fn is_local_domain(&self, domain: &str) -> bool {
        self.0.state.peek(ObjectKind::Domain, domain).is_some()
    }
    fn user_exists(&self, bare: &Jid) -> bool {
        self.0
            .state
            .peek(ObjectKind::User, &bare.to_string())
            .is_some()
    }
    fn local_address(&self, addr: &Jid) -> Result<Option<Jid>, &'static str> {
        if !email_enabled(&self.0) {
            return Ok(None);
        }
        let bare = addr.bare().to_string();
        if let Some(jid) = self.0.state.user_by_mail(&bare) {
            return Ok(Jid::parse(jid).ok());
        }
        if let Some(Body::User(u)) = self
            .0
            .state
            .peek(ObjectKind::User, &bare)
            .and_then(|o| o.body.as_ref())
        {
            let has_mail = Jid::parse(&u.mail_id).is_ok_and(|m| m.local().is_some());
            if has_mail && !u.mail_id.eq_ignore_ascii_case(&bare) {
                return Err(
                    "addressed to the user's JID while the user federates by email address",
                );
            }
        }
        Ok(None)
    }
}

/// Whether email for federation is on (EMAIL-1).
fn email_enabled(applied: &Applied) -> bool {
    matches!(
        applied.state.peek(ObjectKind::EmailFederation, "").and_then(|o| o.body.as_ref()),
        Some(Body::EmailFederation(e)) if e.enabled
    )
}

/// The address a local user federates as (EMAIL-2, EMAIL-3): their `mail_id` while email for
/// federation is on and it is a full address, else their bare JID.
fn federated_address(applied: &Applied, user: &Jid) -> Jid {
    let bare = user.bare();
    if !email_enabled(applied) {
        return bare;
    }
    match applied
        .state
        .peek(ObjectKind::User, &bare.to_string())
        .and_then(|o| o.body.as_ref())
    {
        Some(Body::User(u)) => Jid::parse(&u.mail_id)
            .ok()
            .filter(|m| m.local().is_some() && m.resource().is_none())
            .unwrap_or(bare),
        _ => bare,
    }
}

/// The SIP edge of one node.
pub struct Sip {
    pub node_id: u64,
    pub cluster: ClusterHandle,
    pub xmpp: Weak<Shared>,
    /// This node's SIP address as written in Via.
    pub local: edge::Local,
    pub limits: herald_sip::Limits,
    /// Where link tasks run (the control plane).
    runtime: tokio::runtime::Handle,
    /// One outbound link per next hop (host, port, transport).
    links: Mutex<HashMap<outbound::Hop, mpsc::Sender<outbound::Outgoing>>>,
    /// SIP over TLS (set once at start; unset when no TLS configuration could be built).
    pub tls: OnceLock<Arc<tls::SipTls>>,
    /// Presence subscriptions both ways (held while this node is the routing node).
    subs: Mutex<subs::Table>,
    /// The federation resolver (`--dns-resolver`, shared with XMPP federation).
    pub dns: Arc<crate::s2s::dns::Dns>,
    /// SRV answers per SIP domain (see [`Sip::prepare`]).
    srv: Mutex<HashMap<String, SrvEntry>>,
    /// Stanzas waiting for their domain's DNS lookup, in arrival order.
    resolving: Mutex<HashMap<String, Vec<Element>>>,
    /// Next hops whose link failed to connect, and when.
    down: Mutex<HashMap<outbound::Hop, std::time::Instant>>,
}

/// What the subscription table reads of the cluster: the replicated store (users' rosters and
/// block lists, static routes) and this node's addresses.
struct SubsEnv<'a> {
    sip: &'a Sip,
    applied: Arc<Applied>,
    /// The applied state that holds users' data (the user-state group's).
    users: Arc<Applied>,
}

impl SubsEnv<'_> {
    /// The user's stored data, borrowed (read on every NOTIFY and inbound message: no copy of
    /// the roster and offline queue).
    /// Data an older version kept in the config group is read there until the user's first
    /// write moves it.
    fn user_data(&self, user: &Jid) -> Option<&herald_grpc::config::UserData> {
        let key = user.to_string();
        self.users
            .state
            .user_data(&key)
            .or_else(|| self.applied.state.user_data(&key))
            .map(|(d, _)| d)
    }
}

impl subs::Env for SubsEnv<'_> {
    fn relation(&self, user: &Jid, watcher: &Jid) -> subs::Relation {
        let Some(d) = self.user_data(user) else {
            return subs::Relation::Unknown;
        };
        if d.blocked
            .iter()
            .any(|b| crate::im::blocking::blocks(b, watcher))
        {
            return subs::Relation::Blocked;
        }
        let w = watcher.bare().to_string();
        if d.roster.iter().any(|i| i.jid == w && i.sub_from) {
            subs::Relation::Allowed
        } else {
            subs::Relation::Unknown
        }
    }
    fn wants(&self, user: &Jid, contact: &Jid) -> bool {
        let c = contact.bare().to_string();
        self.user_data(user).is_some_and(|d| {
            d.roster
                .iter()
                .any(|i| i.jid == c && (i.sub_to || i.pending_out))
        })
    }
    fn route(&self, domain: &str) -> Option<outbound::Hop> {
        self.sip.hop_for(domain).ok()
    }
    fn token(&mut self) -> String {
        random_token()
    }
    fn local(&self) -> &edge::Local {
        &self.sip.local
    }
    fn tls_port(&self) -> Option<u16> {
        self.sip.tls.get().map(|t| t.port)
    }
    fn address_of(&self, user: &Jid) -> Jid {
        federated_address(&self.applied, user)
    }
}

impl Sip {
    pub fn new(
        cluster: ClusterHandle,
        xmpp: &Arc<Shared>,
        local: edge::Local,
        limits: herald_sip::Limits,
        runtime: tokio::runtime::Handle,
        dns: Arc<crate::s2s::dns::Dns>,
    ) -> Arc<Sip> {
        metrics::describe();
        Arc::new(Sip {
            node_id: cluster.node_id(),
            cluster,
            xmpp: Arc::downgrade(xmpp),
            local,
            limits,
            runtime,
            links: Mutex::new(HashMap::new()),
            tls: OnceLock::new(),
            subs: Mutex::new(subs::Table::new()),
            dns,
            srv: Mutex::new(HashMap::new()),
            resolving: Mutex::new(HashMap::new()),
            down: Mutex::new(HashMap::new()),
        })
    }

    /// The store now.
    pub fn view(&self) -> StoreView {
        StoreView(self.cluster.applied())
    }

    /// Whether `domain` is a configured SIP federated domain (outbound goes through SIP).
    pub fn is_sip_domain(&self, domain: &str) -> bool {
        self.cluster
            .applied()
            .state
            .peek(ObjectKind::SipDomain, domain)
            .is_some()
    }

    /// The routing node now (`None` when no node is live).
    pub fn routing_node(&self) -> Option<u64> {
        let applied = self.cluster.applied();
        let order = match applied
            .state
            .get(ObjectKind::RoutingNode, "")
            .and_then(|o| o.body)
        {
            Some(Body::RoutingNode(r)) => r.node_order,
            _ => Vec::new(),
        };
        policy::routing_node(&order, &self.cluster.live_nodes())
    }

    /// Hands a message that arrived from a SIP peer to the dispatcher (which forwards it to the
    /// recipient's home node).
    pub fn deliver(&self, mut stanza: Element) -> bool {
        match self.xmpp.upgrade() {
            Some(x) => {
                crate::im::stanza_id::stamp(&mut stanza, |d| x.is_local_domain(d));
                x.router().route(stanza);
                true
            }
            None => false,
        }
    }

    /// Sends a stanza from one of our users to a user of a SIP federated domain (or bounces it).
    pub fn send(self: &Arc<Self>, mut stanza: Element) {
        // Only this edge stamps stanzas it forwards (a user's own stamp would skew the metric).
        stanza.remove_attr(metrics::STAMP_ATTR);
        stanza.remove_attr(REROUTED_ATTR);
        let Some(domain) = stanza
            .get_attr("to")
            .and_then(|t| Jid::parse(t).ok())
            .map(|j| j.domain().to_string())
        else {
            return;
        };
        // Only our own users reach SIP domains through us: never relay for another domain.
        let from_local = stanza
            .get_attr("from")
            .and_then(|f| Jid::parse(f).ok())
            .is_some_and(|f| {
                self.cluster
                    .applied()
                    .state
                    .peek(ObjectKind::Domain, f.domain())
                    .is_some()
            });
        if !from_local {
            tracing::info!(domain = %domain, from = ?stanza.get_attr("from"), "stanza for a SIP domain from outside refused (no relaying)");
            metrics::failure("outbound", "not_local_sender");
            self.bounce(
                &stanza,
                StanzaCondition::NotAllowed,
                "only local users reach SIP domains through this server",
            );
            return;
        }
        // Everything for SIP domains leaves through the routing node: it holds the sessions and
        // subscriptions, and peers see one SIP face. It picks the route (`from_cluster`).
        match self.routing_node() {
            Some(n) if n != self.node_id => {
                self.forward(n, stanza);
                return;
            }
            None if stanza.name() == "presence" => {
                tracing::info!("presence for a SIP domain dropped: no routing node is live");
                metrics::failure("outbound", "no_routing_node");
                return;
            }
            // No routing node: a message still leaves from here (page mode).
            _ => {}
        }
        self.route_and_send(stanza, domain);
    }

    /// Sends `stanza` from this node (the routing node): presence through the subscription
    /// table, a chat message inside the pair's IM session if one is open, else page mode.
    fn send_here(self: &Arc<Self>, stanza: Element, hop: Option<outbound::Hop>, domain: String) {
        if stanza.name() == "presence" {
            let now = std::time::Instant::now();
            let actions = {
                let mut env = self.env();
                self.table().on_xmpp(&stanza, now, &mut env)
            };
            self.gauges();
            self.execute(actions);
            return;
        }
        match self.session_send(&stanza) {
            subs::SessionSend::Message(request, session_hop) => {
                self.send_in_session(stanza, request, &session_hop);
                return;
            }
            subs::SessionSend::Held(actions) => {
                self.gauges();
                self.execute(actions);
                return;
            }
            subs::SessionSend::PageMode => {}
        }
        let Some(hop) = hop else {
            // Checked by the caller (messages need a route); nothing to send without one.
            return;
        };
        let tls = if hop.tls {
            self.tls.get().cloned()
        } else {
            None
        };
        let ids = edge::Ids {
            branch: random_token(),
            call_id: format!("{}@{}", random_token(), self.local.host),
            from_tag: random_token(),
        };
        // With email for federation, the SIP side knows the sender by their email address.
        let mut wire = stanza.clone();
        if let Some(from) = stanza.get_attr("from").and_then(|f| Jid::parse(f).ok()) {
            let addr = federated_address(&self.cluster.applied(), &from);
            if addr != from.bare() {
                wire.set_attr("from", addr.to_string());
            }
        }
        let req = match edge::outbound_message(&wire, &self.local, (&hop.host, hop.port), &ids) {
            Ok(mut r) => {
                if let Some(t) = &tls {
                    tls::over_tls(&mut r, &self.local.host, t.port, (&hop.host, hop.port));
                }
                r
            }
            Err(edge::Unsendable::NotCarried(reason)) => {
                tracing::debug!(domain = %domain, reason, "stanza for a SIP domain not carried");
                ::metrics::counter!(metrics::NOT_CARRIED, "reason" => reason).increment(1);
                return;
            }
            Err(edge::Unsendable::Bounce(c, why)) => {
                self.bounce(&stanza, c, why);
                return;
            }
        };
        let item = outbound::Outgoing {
            stanza,
            request: req,
            domain,
            answer: None,
        };
        if let Err(e) = self.link(&hop).try_send(item) {
            let (reason, item) = match e {
                mpsc::error::TrySendError::Full(i) => ("queue_full", i),
                mpsc::error::TrySendError::Closed(i) => ("link_closed", i),
            };
            metrics::failure("outbound", reason);
            self.bounce(
                &item.stanza,
                StanzaCondition::ResourceConstraint,
                "the SIP link is overloaded",
            );
        }
    }

    /// Hands `stanza` to the routing node `n` over the node-to-node stream.
    fn forward(&self, n: u64, mut stanza: Element) {
        stanza.set_attr(metrics::STAMP_ATTR, metrics::now_micros().to_string());
        let kind = if stanza.name() == "presence" {
            "presence"
        } else {
            "message"
        };
        if let Err(e) = self.cluster.route(
            n,
            herald_grpc::cluster::route_message::Kind::ToSip(stanza.to_xml_string()),
        ) {
            tracing::warn!(routing_node = n, error = %e, "stanza for a SIP domain not forwarded to the routing node");
            forward_failed(&e);
            self.bounce(
                &stanza,
                StanzaCondition::RemoteServerTimeout,
                "the SIP routing node cannot be reached",
            );
        } else {
            ::metrics::counter!(metrics::FORWARDED, "kind" => kind).increment(1);
        }
    }

    /// Where a chat message goes in session mode ([`subs::SessionSend`]); page mode for
    /// anything that is not a chat message with a body.
    fn session_send(&self, stanza: &Element) -> subs::SessionSend {
        let Some(view) = herald_xmpp::stanza::Message::view(stanza) else {
            return subs::SessionSend::PageMode;
        };
        if !matches!(
            view.kind(),
            Ok(herald_xmpp::stanza::MessageType::Chat | herald_xmpp::stanza::MessageType::Normal)
        ) {
            return subs::SessionSend::PageMode;
        }
        let Some(body) = view.body() else {
            return subs::SessionSend::PageMode;
        };
        let mut env = self.env();
        self.table()
            .session_message(stanza, &body, std::time::Instant::now(), &mut env)
    }

    /// Queues a MESSAGE inside an IM session on its hop's link (a failure bounces `stanza`).
    fn send_in_session(
        self: &Arc<Self>,
        stanza: Element,
        request: herald_sip::Request,
        hop: &outbound::Hop,
    ) {
        let item = outbound::Outgoing {
            stanza,
            request,
            domain: hop.host.clone(),
            answer: None,
        };
        if let Err(e) = self.link(hop).try_send(item) {
            let item = match e {
                mpsc::error::TrySendError::Full(i) | mpsc::error::TrySendError::Closed(i) => i,
            };
            metrics::failure("outbound", "queue_full");
            self.bounce(
                &item.stanza,
                StanzaCondition::ResourceConstraint,
                "the SIP link is overloaded",
            );
        }
    }

    /// A stanza another node forwarded for the SIP edge (this node should be the routing node;
    /// when the role moved while it travelled, messages still leave from here in page mode and
    /// presence is dropped — never forwarded again, so two nodes with different views cannot
    /// pass it back and forth).
    pub fn from_cluster(self: &Arc<Self>, stanza: Element, from_node: u64) {
        let Some(domain) = stanza
            .get_attr("to")
            .and_then(|t| Jid::parse(t).ok())
            .map(|j| j.domain().to_string())
        else {
            return;
        };
        metrics::forward_leg(&stanza, "to_routing_node");
        if stanza.name() == "presence" && self.routing_node() != Some(self.node_id) {
            not_routing_node(&domain, 1, Some(from_node));
            return;
        }
        self.route_and_send(stanza, domain);
    }

    fn env(&self) -> SubsEnv<'_> {
        SubsEnv {
            sip: self,
            applied: self.cluster.applied(),
            users: self.cluster.user_applied(),
        }
    }

    fn table(&self) -> std::sync::MutexGuard<'_, subs::Table> {
        self.subs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An admitted SUBSCRIBE from `watcher` to the local `user`.
    pub fn on_subscribe(
        self: &Arc<Self>,
        req: &herald_sip::Request,
        watcher: &Jid,
        user: &Jid,
        tls: bool,
    ) -> (herald_sip::Response, Vec<subs::Action>) {
        let mut env = self.env();
        let r =
            self.table()
                .on_subscribe(req, watcher, user, tls, std::time::Instant::now(), &mut env);
        self.gauges();
        r
    }

    /// Whether the local recipient of `msg` (an inbound chat message) blocks its sender.
    pub fn sender_blocked(&self, msg: &Element) -> bool {
        let jid = |a: &str| msg.get_attr(a).and_then(|v| Jid::parse(v).ok());
        match (jid("from"), jid("to")) {
            (Some(from), Some(to)) => {
                subs::Env::relation(&self.env(), &to.bare(), &from) == subs::Relation::Blocked
            }
            _ => false,
        }
    }

    /// An admitted INVITE (IM session) from `remote` to the local `user`.
    pub fn on_invite(
        self: &Arc<Self>,
        req: &herald_sip::Request,
        remote: &Jid,
        user: &Jid,
        tls: bool,
    ) -> herald_sip::Response {
        let mut env = self.env();
        let r = self
            .table()
            .on_invite(req, remote, user, tls, std::time::Instant::now(), &mut env);
        self.gauges();
        r
    }

    /// A request inside an IM session.
    pub fn on_in_dialog(self: &Arc<Self>, req: &herald_sip::Request) -> subs::InDialog {
        let mut env = self.env();
        let r = self
            .table()
            .on_in_dialog(req, std::time::Instant::now(), &mut env);
        self.gauges();
        r
    }

    /// An admitted NOTIFY (for one of our outbound subscriptions).
    pub fn on_notify(
        self: &Arc<Self>,
        req: &herald_sip::Request,
        tls: bool,
    ) -> (herald_sip::Response, Vec<subs::Action>) {
        let mut env = self.env();
        let r = self
            .table()
            .on_notify(req, tls, std::time::Instant::now(), &mut env);
        self.gauges();
        r
    }

    fn gauges(&self) {
        let c = self.table().counts();
        ::metrics::gauge!(metrics::SUBSCRIPTIONS, "direction" => "inbound", "state" => "active")
            .set(c.inbound_active as f64);
        ::metrics::gauge!(metrics::SUBSCRIPTIONS, "direction" => "inbound", "state" => "pending")
            .set(c.inbound_pending as f64);
        ::metrics::gauge!(metrics::SUBSCRIPTIONS, "direction" => "outbound", "state" => "any")
            .set(c.outbound as f64);
        ::metrics::gauge!(metrics::SESSIONS).set(c.sessions as f64);
    }

    /// Carries out what the subscription table decided: stanzas into XMPP, requests out over
    /// the links (their final responses come back to the table).
    pub fn execute(self: &Arc<Self>, actions: Vec<subs::Action>) {
        for a in actions {
            match a {
                subs::Action::Xmpp(el) => {
                    self.deliver(el);
                }
                subs::Action::Message {
                    request,
                    hop,
                    stanza,
                } => self.send_in_session(stanza, request, &hop),
                subs::Action::Resend(stanza) => {
                    tracing::info!(to = ?stanza.get_attr("to"), "IM session refused or unavailable: message sent in page mode");
                    ::metrics::counter!(metrics::PAGE_MODE_FALLBACKS).increment(1);
                    let Some(domain) = stanza
                        .get_attr("to")
                        .and_then(|t| Jid::parse(t).ok())
                        .map(|j| j.domain().to_string())
                    else {
                        continue;
                    };
                    self.route_and_send(stanza, domain);
                }
                subs::Action::Fail { stanza, text } => {
                    let domain = stanza
                        .get_attr("to")
                        .and_then(|t| Jid::parse(t).ok())
                        .map(|j| j.domain().to_string())
                        .unwrap_or_default();
                    let Some(stanza) = self.try_reroute(stanza, &domain) else {
                        continue;
                    };
                    metrics::failure("outbound", "session");
                    self.bounce(&stanza, StanzaCondition::RemoteServerTimeout, &text);
                }
                subs::Action::Send {
                    request,
                    hop,
                    key: subs::ReqKey::Ack,
                } => {
                    // No answer comes to an ACK: the link writes it and forgets it.
                    let item = outbound::Outgoing {
                        stanza: Element::new("presence", herald_xmpp::ns::CLIENT),
                        request,
                        domain: hop.host.clone(),
                        answer: None,
                    };
                    if self.link(&hop).try_send(item).is_err() {
                        metrics::failure("outbound", "queue_full");
                    }
                }
                subs::Action::Send { request, hop, key } => {
                    let method = request.method.as_str().to_string();
                    ::metrics::counter!(metrics::PRESENCE_REQUESTS, "method" => method.clone())
                        .increment(1);
                    let (tx, rx) = tokio::sync::oneshot::channel();
                    let item = outbound::Outgoing {
                        stanza: Element::new("presence", herald_xmpp::ns::CLIENT),
                        request,
                        domain: hop.host.clone(),
                        answer: Some(tx),
                    };
                    if let Err(e) = self.link(&hop).try_send(item) {
                        let item = match e {
                            mpsc::error::TrySendError::Full(i)
                            | mpsc::error::TrySendError::Closed(i) => i,
                        };
                        tracing::warn!(next_hop = %hop.host, %method, "SIP presence request not sent: link queue full");
                        metrics::failure("outbound", "queue_full");
                        // The table hears of it as of any request that got no answer.
                        let resp = herald_sip::Response::for_request(
                            &item.request,
                            503,
                            Some("Link Queue Full"),
                        );
                        self.answered(&key, &resp);
                        continue;
                    }
                    let sip = self.clone();
                    self.runtime.spawn(async move {
                        // A link that ends without answering: as a timeout.
                        let resp = rx.await.unwrap_or_else(|_| herald_sip::Response::new(408));
                        sip.answered(&key, &resp);
                    });
                }
            }
        }
    }

    /// The final response (or a made-up one) to a request the table sent.
    fn answered(self: &Arc<Self>, key: &subs::ReqKey, resp: &herald_sip::Response) {
        let actions = {
            let mut env = self.env();
            self.table()
                .on_response(key, resp, std::time::Instant::now(), &mut env)
        };
        self.gauges();
        self.execute(actions);
    }

    /// The subscription timers, once a second, for as long as the node runs; a node that
    /// loses the routing role ends its inbound subscriptions with `deactivated` (the watchers
    /// subscribe again, reaching the new routing node).
    pub async fn tick_loop(self: Arc<Self>) {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        loop {
            tick.tick().await;
            let now = std::time::Instant::now();
            let routing = self.routing_node() == Some(self.node_id);
            let actions = {
                let mut env = self.env();
                let mut t = self.table();
                if routing {
                    t.tick(now, &mut env)
                } else {
                    t.deactivate_all(now, &mut env)
                }
            };
            if !actions.is_empty() {
                self.gauges();
            }
            self.execute(actions);
        }
    }

    /// The link of a next hop, started on first use.
    fn link(self: &Arc<Self>, hop: &outbound::Hop) -> mpsc::Sender<outbound::Outgoing> {
        let mut links = self.links.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = links.get(hop).filter(|tx| !tx.is_closed()) {
            return tx.clone();
        }
        let (tx, rx) = mpsc::channel(outbound::QUEUE);
        self.runtime
            .spawn(outbound::run(self.clone(), hop.clone(), rx));
        links.insert(hop.clone(), tx.clone());
        tx
    }

    /// Answers `stanza` (from one of our users) with an error, unless it is presence or an
    /// error itself.
    pub fn bounce(&self, stanza: &Element, condition: StanzaCondition, why: &str) {
        if stanza.name() == "presence" || stanza.get_attr("type") == Some("error") {
            return;
        }
        ::metrics::counter!(metrics::BOUNCED, "condition" => condition.name()).increment(1);
        let err = StanzaError::with_text(condition, why);
        if let (Some(reply), Some(x)) = (err.reply_to(stanza, None), self.xmpp.upgrade()) {
            x.router().route(reply);
        }
    }

    /// Shutdown, first step: inbound subscriptions end with `deactivated` NOTIFYs (queued on
    /// the links, which [`Sip::stop`] then closes after writing what they hold).
    pub fn deactivate(self: &Arc<Self>) -> usize {
        let actions = {
            let mut env = self.env();
            self.table()
                .deactivate_all(std::time::Instant::now(), &mut env)
        };
        let n = actions.len();
        self.execute(actions);
        n
    }

    /// Closes every link (shutdown): queued messages are bounced by their tasks.
    pub fn stop(&self) {
        self.links.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

/// 16 random hex digits: Via branches, Call-IDs and tags of requests we originate.
fn random_token() -> String {
    let mut b = [0u8; 8];
    rand::fill(&mut b);
    hex::encode(b)
}

/// Most inbound SIP connections served at once (federation peers are few; a flood of
/// connections is refused, counted, and never queued).
pub const MAX_INBOUND_CONNECTIONS: usize = 1024;
/// Most of them from one source (/32 IPv4, /64 IPv6), so that one host holding connections
/// open (slowloris) cannot take every slot; cluster members relaying their peers' connections
/// (by their literal cluster address) are not counted.
pub const MAX_INBOUND_PER_SOURCE: usize = 256;

/// Accepts inbound SIP connections (over TLS when `tls`): each one is served, relayed to the
/// routing node (when `relay` and another node holds the role) or refused by
/// [`relay::accepted`], on the control plane. Relays and served connections share the slots.
pub async fn accept_loop(listener: tokio::net::TcpListener, sip: Arc<Sip>, tls: bool, relay: bool) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_INBOUND_CONNECTIONS));
    let sources = Arc::new(crate::xmpp::limiter::ConnLimits::new(
        MAX_INBOUND_CONNECTIONS,
        MAX_INBOUND_PER_SOURCE,
    ));
    loop {
        match listener.accept().await {
            Ok((tcp, peer)) => match slots.clone().try_acquire_owned() {
                Ok(slot) => {
                    let counted = if relay::is_member_address(&sip, peer.ip()) {
                        None
                    } else {
                        match sources.open(peer.ip()) {
                            Ok(p) => Some(p),
                            Err(_) => {
                                tracing::warn!(peer = %peer, tls, "SIP connection refused: too many connections from this source");
                                metrics::failure("inbound", "too_many_from_source");
                                continue;
                            }
                        }
                    };
                    let sip = sip.clone();
                    let sources = sources.clone();
                    let _ = tcp.set_nodelay(true);
                    tokio::spawn(async move {
                        relay::accepted(sip, tcp, peer, tls, relay).await;
                        if let Some(p) = counted {
                            sources.close(p);
                        }
                        drop(slot);
                    });
                }
                Err(_) => {
                    tracing::warn!(peer = %peer, tls, "SIP connection refused: too many connections");
                    metrics::failure("inbound", "too_many_connections");
                    drop(tcp);
                }
            },
            Err(e) => {
                tracing::warn!(error = %e, "accepting a SIP connection failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}
