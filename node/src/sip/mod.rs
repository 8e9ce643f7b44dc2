//! SIP federation edge (first slice: page-mode IM over TCP and mutual TLS).
//!
//! Message flow:
//! - Inbound: every node binds `sip_port` and `sip_tls_port` (TLS: [`tls`] handshakes and
//!   checks the peer against `tls-peer` first); only the routing node ([`policy::routing_node`] over
//!   the stored `routing-node` order and the live nodes) serves requests, the others answer 503.
//!   [`inbound::serve`] runs one connection: the herald-sip decoder frames and validates,
//!   decoder errors are answered with their status, each request is judged by
//!   [`edge::inbound`] (federated domain, incoming ACL, local user) and an admitted MESSAGE is
//!   handed to the XMPP dispatcher as a chat message from `user@sipdomain`, which forwards it to
//!   the user's home node.
//! - Outbound: the dispatcher ([`crate::xmpp::router`]) hands a stanza for a configured
//!   `sip-domain` to [`Sip::send`], which picks the static route ([`policy::static_routes`])
//!   and pushes a SIP MESSAGE ([`edge::outbound_message`]) to the [`outbound`] link of that next
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
}

impl Sip {
    pub fn new(
        cluster: ClusterHandle,
        xmpp: &Arc<Shared>,
        local: edge::Local,
        limits: herald_sip::Limits,
        runtime: tokio::runtime::Handle,
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
    pub fn send(self: &Arc<Self>, stanza: Element) {
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
        let Some(route) = policy::static_routes(&routes, &domain)
            .into_iter()
            .find(|r| !r.next_hop.is_empty())
            .cloned()
        else {
            tracing::info!(domain = %domain, "no usable static route for the SIP domain");
            metrics::failure("outbound", "no_route");
            self.bounce(
                &stanza,
                StanzaCondition::RemoteServerNotFound,
                "no route to the SIP domain",
            );
            return;
        };
        let transport = Transport::try_from(route.transport).unwrap_or_default();
        let tls = match transport {
            Transport::Tcp => None,
            Transport::Tls => match self.tls.get() {
                Some(t) => Some(t.clone()),
                None => {
                    tracing::warn!(domain = %domain, route = %route.id, "SIP route over TLS, but TLS is not configured on this node");
                    metrics::failure("outbound", "transport");
                    self.bounce(
                        &stanza,
                        StanzaCondition::RemoteServerNotFound,
                        "the route to the SIP domain uses TLS, which is not configured on this node",
                    );
                    return;
                }
            },
            _ => {
                tracing::info!(domain = %domain, route = %route.id, "SIP route needs a transport other than TCP or TLS");
                metrics::failure("outbound", "transport");
                self.bounce(
                    &stanza,
                    StanzaCondition::RemoteServerNotFound,
                    "the route to the SIP domain uses a transport this node does not speak (only TCP and TLS)",
                );
                return;
            }
        };
        let port = u16::try_from(route.next_hop_port)
            .ok()
            .filter(|p| *p != 0)
            .unwrap_or(if tls.is_some() { 5061 } else { 5060 });
        let hop = outbound::Hop {
            host: route.next_hop.to_ascii_lowercase(),
            port,
            tls: tls.is_some(),
        };
        let ids = edge::Ids {
            branch: random_token(),
            call_id: format!("{}@{}", random_token(), self.local.host),
            from_tag: random_token(),
        };
        let req = match edge::outbound_message(&stanza, &self.local, (&hop.host, hop.port), &ids) {
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

/// Accepts inbound SIP connections (over TLS when `tls`: [`tls::serve`] handshakes and checks
/// the peer first); each one is served on the control plane.
pub async fn accept_loop(listener: tokio::net::TcpListener, sip: Arc<Sip>, tls: bool) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_INBOUND_CONNECTIONS));
    loop {
        match listener.accept().await {
            Ok((tcp, peer)) => match slots.clone().try_acquire_owned() {
                Ok(slot) => {
                    let sip = sip.clone();
                    let _ = tcp.set_nodelay(true);
                    tokio::spawn(async move {
                        if tls {
                            tls::serve(sip, tcp, peer).await;
                        } else {
                            inbound::serve(sip, tcp, peer, "tcp", None).await;
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
