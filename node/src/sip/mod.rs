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
//!   `sip-domain` to [`Sip::send`], which picks the next hop by the domain's plan
//!   ([`policy::route_plan`]: the most specific static route ([`policy::static_routes`]), else
//!   the DNS SRV records `_sipfederationtls._tcp` / `_sip._tls` through the federation
//!   resolver (`--dns-resolver`), and for AOL-type domains then the default federation routing
//!   domain's route and records) and pushes a SIP MESSAGE ([`edge::outbound_message`]) to the [`outbound`] link of that next
//!   hop (TCP, or TLS for a route with transport `tls`): one task per hop with a bounded queue, backoff (`federation::edge::link`) and a
//!   transaction timeout; a non-2xx final answer, a timeout or a failed connection bounces the
//!   message to its XMPP sender ([`edge::response_condition`]).
//!
//! Settings (`sip-domain`, `acl`, `static-route`, `routing-node`) are read from the replicated
//! store on every decision, so changes apply without a restart.

pub mod edge;
pub mod inbound;
pub mod metrics;
pub mod outbound;
pub mod policy;
pub mod presence;
pub mod proxy_v2;
pub mod relay;
pub mod subs;
pub mod tls;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};

use herald_cluster::{Applied, ClusterHandle};
use herald_grpc::config::config_object::Body;
use herald_grpc::config::{IncomingAclEntry, ObjectKind, StaticRoute, Transport};
use herald_xmpp::error::{StanzaCondition, StanzaError};
use herald_xmpp::{Element, Jid};
use tokio::sync::mpsc;

use crate::xmpp::Shared;

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

/// What the DNS said of one domain's SIP servers.
struct SrvEntry {
    /// The next hops, in RFC 2782 order (all TLS); empty when there were no records.
    hops: Vec<outbound::Hop>,
    /// The lookup failed (neither name answered): why.
    error: Option<String>,
    at: std::time::Instant,
}

/// SRV answers are looked up again after this long (a stale answer still serves the
/// subscription table's refreshes in the meantime).
pub const SRV_TTL: std::time::Duration = std::time::Duration::from_secs(60);
/// Internal mark of a message already sent again by another route (at most once).
const REROUTED_ATTR: &str = "herald-sip-rerouted";
/// A next hop that failed to connect is passed over for this long while the domain has another
/// (a backup static route, the next SRV target).
pub const DOWN_FOR: std::time::Duration = std::time::Duration::from_secs(30);
/// Most stanzas waiting for one domain's DNS lookup (more are bounced).
pub const MAX_WAITING_FOR_DNS: usize = 1024;

/// What the subscription table reads of the cluster: the replicated store (users' rosters and
/// block lists, static routes) and this node's addresses.
struct SubsEnv<'a> {
    sip: &'a Sip,
    applied: Arc<Applied>,
}

impl SubsEnv<'_> {
    /// The user's stored data, borrowed (read on every NOTIFY and inbound message: no copy of
    /// the roster and offline queue).
    fn user_data(&self, user: &Jid) -> Option<&herald_grpc::config::UserData> {
        match self
            .applied
            .state
            .peek(ObjectKind::UserData, &user.to_string())
            .and_then(|o| o.body.as_ref())
        {
            Some(Body::UserData(d)) => Some(d),
            _ => None,
        }
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

/// Why a SIP domain cannot be reached from this node.
struct NoRoute {
    reason: &'static str,
    text: String,
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
    pub fn deliver(&self, stanza: Element) -> bool {
        match self.xmpp.upgrade() {
            Some(x) => {
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

    /// Finds the next hop of `stanza` (looking the domain up in DNS first when its route
    /// depends on SRV records not known yet) and sends it from here. Stanzas for a domain
    /// being looked up wait, in order, for that one lookup.
    fn route_and_send(self: &Arc<Self>, stanza: Element, domain: String) {
        let wants_route = stanza.name() == "message"
            || matches!(stanza.get_attr("type"), Some("subscribe" | "probe"));
        if !wants_route || !self.needs_dns(&domain) {
            if let Some(hop) = self.usable_hop(&stanza, &domain) {
                self.send_here(stanza, hop, domain);
            }
            return;
        }
        let first = {
            let mut r = self.resolving.lock().unwrap_or_else(|p| p.into_inner());
            match r.get_mut(&domain) {
                Some(waiting) if waiting.len() >= MAX_WAITING_FOR_DNS => {
                    drop(r);
                    metrics::failure("outbound", "queue_full");
                    self.bounce(
                        &stanza,
                        StanzaCondition::ResourceConstraint,
                        "too many messages waiting for the SIP domain's DNS lookup",
                    );
                    return;
                }
                Some(waiting) => {
                    waiting.push(stanza);
                    false
                }
                None => {
                    r.insert(domain.clone(), vec![stanza]);
                    true
                }
            }
        };
        if !first {
            return;
        }
        let sip = self.clone();
        self.runtime.spawn(async move {
            sip.prepare(&domain).await;
            let waiting = sip
                .resolving
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&domain)
                .unwrap_or_default();
            for stanza in waiting {
                if let Some(hop) = sip.usable_hop(&stanza, &domain) {
                    sip.send_here(stanza, hop, domain.clone());
                }
            }
        });
    }

    /// The route lookup steps of `domain` (static routes, SRV, and for AOL-type domains the
    /// default federation routing domain's).
    fn plan(&self, domain: &str) -> Vec<policy::Step> {
        let applied = self.cluster.applied();
        let aol = matches!(
            applied.state.peek(ObjectKind::SipDomain, domain).and_then(|o| o.body.as_ref()),
            Some(Body::SipDomain(d))
                if d.integration_type == herald_grpc::config::SipIntegrationType::Aol as i32
        );
        let default_domain = match applied
            .state
            .peek(ObjectKind::FederationRouting, "")
            .and_then(|o| o.body.as_ref())
        {
            Some(Body::FederationRouting(f)) if !f.default_federation_routing_domain.is_empty() => {
                f.default_federation_routing_domain.clone()
            }
            _ => policy::DEFAULT_ROUTING_DOMAIN.to_string(),
        };
        policy::route_plan(domain, aol, &default_domain)
    }

    /// Whether the route of `domain` hangs on SRV records not looked up recently: the plan
    /// reaches an SRV step with no fresh answer before a static route or a found record.
    fn needs_dns(&self, domain: &str) -> bool {
        let now = std::time::Instant::now();
        for step in self.plan(domain) {
            match step {
                policy::Step::Static(d) => {
                    if self.static_route(&d).is_some() {
                        return false;
                    }
                }
                policy::Step::Srv(d) => {
                    let srv = self.srv.lock().unwrap_or_else(|p| p.into_inner());
                    match srv.get(&d) {
                        Some(e) if now.duration_since(e.at) < SRV_TTL => {
                            if !e.hops.is_empty() {
                                return false;
                            }
                        }
                        _ => return true,
                    }
                }
            }
        }
        false
    }

    /// Looks up, through the federation resolver, the SRV records the route of `domain`
    /// depends on (walking its plan until a static route or a record is found) and keeps them.
    async fn prepare(&self, domain: &str) {
        for step in self.plan(domain) {
            match step {
                policy::Step::Static(d) => {
                    if self.static_route(&d).is_some() {
                        return;
                    }
                }
                policy::Step::Srv(d) => {
                    let fresh = self
                        .srv
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .get(&d)
                        .filter(|e| e.at.elapsed() < SRV_TTL)
                        .map(|e| !e.hops.is_empty());
                    let found = match fresh {
                        Some(found) => found,
                        None => self.lookup_srv(&d).await,
                    };
                    if found {
                        return;
                    }
                }
            }
        }
    }

    /// One domain's SRV lookups (`_sipfederationtls._tcp`, then `_sip._tls`), kept in the
    /// cache; whether a record was found.
    async fn lookup_srv(&self, domain: &str) -> bool {
        use herald_federation::edge::resolve::{order, Lookup};
        let mut hops = Vec::new();
        let mut errors = Vec::new();
        for name in policy::srv_names(domain) {
            match self.dns.srv(&name).await {
                Ok(Lookup::Records(recs)) if !recs.is_empty() => {
                    hops = order(recs, |n| rand::random_range(0..=n))
                        .into_iter()
                        .filter(|r| !r.target.is_empty() && r.port != 0)
                        .map(|r| outbound::Hop {
                            host: r.target.trim_end_matches('.').to_ascii_lowercase(),
                            port: r.port,
                            tls: true,
                        })
                        .collect();
                    if !hops.is_empty() {
                        break;
                    }
                }
                Ok(_) => {}
                Err(e) => errors.push(format!("{name}: {e}")),
            }
        }
        let result = if !hops.is_empty() {
            "found"
        } else if errors.len() == 2 {
            "error"
        } else {
            "none"
        };
        ::metrics::counter!(metrics::DNS_LOOKUPS, "result" => result).increment(1);
        tracing::info!(domain, result, targets = ?hops.iter().map(|h| format!("{}:{}", h.host, h.port)).collect::<Vec<_>>(), errors = ?errors, "SIP DNS SRV lookup");
        let found = !hops.is_empty();
        self.srv.lock().unwrap_or_else(|p| p.into_inner()).insert(
            domain.to_string(),
            SrvEntry {
                hops,
                error: (result == "error").then(|| errors.join("; ")),
                at: std::time::Instant::now(),
            },
        );
        found
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

    /// Whether the link to `hop` failed to connect within [`DOWN_FOR`].
    fn is_down(&self, hop: &outbound::Hop) -> bool {
        self.down
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(hop)
            .is_some_and(|at| at.elapsed() < DOWN_FOR)
    }

    /// The link to `hop` could not connect (`down`) or connected.
    pub fn hop_state(&self, hop: &outbound::Hop, down: bool) {
        let mut d = self.down.lock().unwrap_or_else(|p| p.into_inner());
        if down {
            d.insert(hop.clone(), std::time::Instant::now());
        } else {
            d.remove(hop);
        }
    }

    /// Sends a chat message whose next hop could not be reached by the domain's next route (a
    /// backup static route, the next SRV target), once: `Some(stanza)` back when it cannot go
    /// another way (already rerouted, not a SIP domain, no other next hop up), for the caller
    /// to bounce.
    fn try_reroute(self: &Arc<Self>, mut stanza: Element, domain: &str) -> Option<Element> {
        // Only after a connection failure (a hop just marked down), never after a timeout.
        let just_failed = self
            .down
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .any(|at| at.elapsed() < std::time::Duration::from_secs(5));
        if stanza.get_attr(REROUTED_ATTR).is_some()
            || !just_failed
            || !self.is_sip_domain(domain)
            || !self.hop_for(domain).is_ok_and(|h| !self.is_down(&h))
        {
            return Some(stanza);
        }
        tracing::info!(domain = %domain, "next hop unreachable: the message goes by the next route");
        ::metrics::counter!(metrics::REROUTED).increment(1);
        stanza.set_attr(REROUTED_ATTR, "1");
        self.route_and_send(stanza, domain.to_string());
        None
    }

    /// The usable static routes of `domain`, best first.
    fn static_routes(&self, domain: &str) -> Vec<StaticRoute> {
        let routes: Vec<StaticRoute> = self
            .cluster
            .applied()
            .state
            .list(ObjectKind::StaticRoute)
            .into_iter()
            .filter_map(|o| match o.body {
                Some(Body::StaticRoute(r)) => Some(r),
                _ => None,
            })
            .collect();
        policy::static_routes(&routes, domain)
            .into_iter()
            .filter(|r| !r.next_hop.is_empty())
            .cloned()
            .collect()
    }

    /// The most specific usable static route of `domain`.
    fn static_route(&self, domain: &str) -> Option<StaticRoute> {
        let routes: Vec<StaticRoute> = self
            .cluster
            .applied()
            .state
            .list(ObjectKind::StaticRoute)
            .into_iter()
            .filter_map(|o| match o.body {
                Some(Body::StaticRoute(r)) => Some(r),
                _ => None,
            })
            .collect();
        policy::static_routes(&routes, domain)
            .into_iter()
            .find(|r| !r.next_hop.is_empty())
            .cloned()
    }

    /// The next hop for a SIP domain, by its plan ([`policy::route_plan`]): a static route, or
    /// the first target of the SRV answer kept by [`Sip::prepare`] (a stale one too).
    fn hop_for(&self, domain: &str) -> Result<outbound::Hop, NoRoute> {
        let mut dns_error = None;
        let mut looked = Vec::new();
        for step in self.plan(domain) {
            match step {
                policy::Step::Static(d) => {
                    let routes = self.static_routes(&d);
                    if !routes.is_empty() {
                        // Best first; a route whose next hop failed lately is passed over while
                        // another is up (RTE-4: the backup serves while the primary is down).
                        let hops: Vec<Result<outbound::Hop, NoRoute>> =
                            routes.iter().map(|r| self.route_hop(domain, r)).collect();
                        let usable: Vec<outbound::Hop> = hops
                            .iter()
                            .filter_map(|h| h.as_ref().ok().cloned())
                            .collect();
                        if let Some(h) = policy::first_up(&usable, |h| self.is_down(h)) {
                            return Ok(h.clone());
                        }
                        return hops.into_iter().next().expect("not empty");
                    }
                }
                policy::Step::Srv(d) => {
                    let srv = self.srv.lock().unwrap_or_else(|p| p.into_inner());
                    if let Some(e) = srv.get(&d) {
                        if let Some(h) = policy::first_up(&e.hops, |h| self.is_down(h)) {
                            if self.tls.get().is_none() {
                                return Err(NoRoute {
                                    reason: "transport",
                                    text: format!("the SIP domain {domain} is reached over TLS (DNS SRV), which is not configured on this node"),
                                });
                            }
                            return Ok(h.clone());
                        }
                        if let Some(why) = &e.error {
                            dns_error = Some(why.clone());
                        }
                    }
                    looked.extend(policy::srv_names(&d));
                }
            }
        }
        if let Some(why) = dns_error {
            tracing::info!(domain = %domain, error = %why, "SIP domain unreachable: the DNS lookup failed");
            return Err(NoRoute {
                reason: "dns",
                text: format!("no route to the SIP domain {domain}: no static route, and the DNS lookup failed"),
            });
        }
        tracing::info!(domain = %domain, srv = ?looked, "no usable static route and no DNS SRV record for the SIP domain");
        Err(NoRoute {
            reason: "no_route",
            text: format!(
                "no route to the SIP domain {domain}: no static route and no DNS SRV record ({})",
                looked.join(", ")
            ),
        })
    }

    /// The next hop of a static route.
    fn route_hop(&self, domain: &str, route: &StaticRoute) -> Result<outbound::Hop, NoRoute> {
        let tls = match Transport::try_from(route.transport).unwrap_or_default() {
            Transport::Tcp => false,
            Transport::Tls if self.tls.get().is_some() => true,
            Transport::Tls => {
                tracing::warn!(domain = %domain, route = %route.id, "SIP route over TLS, but TLS is not configured on this node");
                return Err(NoRoute {
                    reason: "transport",
                    text:
                        "the route to the SIP domain uses TLS, which is not configured on this node"
                            .into(),
                });
            }
            _ => {
                tracing::info!(domain = %domain, route = %route.id, "SIP route needs a transport other than TCP or TLS");
                return Err(NoRoute {
                    reason: "transport",
                    text: "the route to the SIP domain uses a transport this node does not speak (only TCP and TLS)".into(),
                });
            }
        };
        let port = u16::try_from(route.next_hop_port)
            .ok()
            .filter(|p| *p != 0)
            .unwrap_or(if tls { 5061 } else { 5060 });
        Ok(outbound::Hop {
            host: route.next_hop.to_ascii_lowercase(),
            port,
            tls,
        })
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
            metrics::failure("outbound", "forward");
            let reason = match e {
                herald_cluster::routing::RouteError::UnknownNode(_) => "unknown_node",
                herald_cluster::routing::RouteError::Overloaded(_) => "queue_full",
            };
            ::metrics::counter!(metrics::FORWARD_FAILURES, "reason" => reason).increment(1);
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
            tracing::info!(
                from_node,
                "presence for a SIP domain dropped: this node is no longer the routing node"
            );
            metrics::failure("outbound", "not_routing_node");
            ::metrics::counter!(metrics::FORWARD_FAILURES, "reason" => "not_routing_node")
                .increment(1);
            return;
        }
        self.route_and_send(stanza, domain);
    }

    /// The next hop `stanza` needs, `Some(None)` when it needs none, `None` when it cannot
    /// leave (answered). Presence for a SIP watcher (the user's approval, the answer to a
    /// probe, every change) leaves on the watcher's subscription dialog, towards its Contact or
    /// Record-Route: no route of ours is needed. Our own subscriptions and messages need a
    /// route for the domain (static, or DNS SRV).
    #[allow(clippy::option_option)]
    fn usable_hop(&self, stanza: &Element, domain: &str) -> Option<Option<outbound::Hop>> {
        match self.hop_for(domain) {
            Ok(h) => Some(Some(h)),
            Err(_)
                if stanza.name() == "presence" && stanza.get_attr("type") != Some("subscribe") =>
            {
                Some(None)
            }
            Err(e) => {
                metrics::failure("outbound", e.reason);
                self.bounce(stanza, StanzaCondition::RemoteServerNotFound, &e.text);
                None
            }
        }
    }

    fn env(&self) -> SubsEnv<'_> {
        SubsEnv {
            sip: self,
            applied: self.cluster.applied(),
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

/// Accepts inbound SIP connections (over TLS when `tls`): each one is served, relayed to the
/// routing node (when `relay` and another node holds the role) or refused by
/// [`relay::accepted`], on the control plane. Relays and served connections share the slots.
pub async fn accept_loop(listener: tokio::net::TcpListener, sip: Arc<Sip>, tls: bool, relay: bool) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_INBOUND_CONNECTIONS));
    loop {
        match listener.accept().await {
            Ok((tcp, peer)) => match slots.clone().try_acquire_owned() {
                Ok(slot) => {
                    let sip = sip.clone();
                    let _ = tcp.set_nodelay(true);
                    tokio::spawn(async move {
                        relay::accepted(sip, tcp, peer, tls, relay).await;
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
