//! XMPP federation (server-to-server, RFC 6120 server streams with XEP-0220 dialback and
//! XEP-0178 SASL EXTERNAL) on a federation-enabled node.
//!
//! Message flow:
//! - Outbound: the dispatcher ([`crate::xmpp::router`]) hands a stanza for another domain to
//!   [`S2s::send`]. The outbound policy decides first; then, on a node that carries federation,
//!   the stanza goes to the [`outbound::LinkActor`] of its (local domain, remote domain) pair —
//!   one actor per pair, with a bounded queue, backoff and bounces (`federation::edge::link`).
//!   A node that does not carry federation forwards it to one that does (node-to-node
//!   `to_remote`), chosen by the domain's hash among the live enabled nodes.
//! - Inbound: [`inbound::serve`] runs each accepted stream (STARTTLS, SASL EXTERNAL, dialback,
//!   answering `db:verify` for our own keys), checks every stanza's `from` against the domains
//!   the stream authenticated and the inbound policy, and hands it to the dispatcher, which
//!   routes it to the recipient's home node.
//!
//! Settings (`xmpp-federation`, `xmpp-policy`, local domains) are read from the replicated
//! store on every decision, so changes apply without a restart.

pub mod dns;
pub mod inbound;
pub mod metrics;
pub mod outbound;
pub mod stream;
pub mod tls;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use actix::Addr;
use herald_cluster::ClusterHandle;
use herald_federation::edge::policy::{self, Decision, Direction};
use herald_grpc::cluster::route_message::Kind;
use herald_grpc::config::config_object::Body;
use herald_grpc::config::{
    ObjectKind, XmppFederationPolicy, XmppFederationSettings, XmppSecurityMode,
};
use herald_xmpp::error::{StanzaCondition, StanzaError};
use herald_xmpp::{Element, Jid, Limits};

use crate::xmpp::Shared;

/// The federation settings in force, read from the store.
#[derive(Debug, Clone)]
pub struct Settings {
    pub federation: XmppFederationSettings,
    pub policy: XmppFederationPolicy,
    /// The dialback secret (the stored one, else this process's own).
    pub secret: String,
}

impl Settings {
    pub fn mode(&self) -> XmppSecurityMode {
        XmppSecurityMode::try_from(self.federation.security_mode)
            .unwrap_or(XmppSecurityMode::TlsRequired)
    }
    pub fn decide(&self, domain: &str, dir: Direction) -> Decision {
        policy::decide(&self.policy, domain, dir)
    }
}

/// The federation edge of one node.
pub struct S2s {
    pub node_id: u64,
    pub cluster: ClusterHandle,
    pub xmpp: Weak<Shared>,
    pub trust: tls::PeerTrust,
    pub certs: Arc<crate::tls::certs::CertStore>,
    pub dns: Arc<dns::Dns>,
    /// Port tried when a domain has no SRV records.
    pub default_port: u16,
    pub limits: Limits,
    /// Used when no dialback secret is stored (one node can then verify only its own keys).
    fallback_secret: String,
    /// Where link actors live.
    arbiter: actix_rt::ArbiterHandle,
    links: Mutex<HashMap<(String, String), Addr<outbound::LinkActor>>>,
    /// Whether this node carries federation now (`xmpp-federation set --enable-node`):
    /// the s2s listeners are open and streams run only while it is true.
    enabled: tokio::sync::watch::Sender<bool>,
}

impl S2s {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        cluster: ClusterHandle,
        xmpp: &Arc<Shared>,
        certs: Arc<crate::tls::certs::CertStore>,
        tls_ca: Option<&std::path::Path>,
        dns_server: Option<std::net::SocketAddr>,
        default_port: u16,
        limits: Limits,
        arbiter: actix_rt::ArbiterHandle,
    ) -> anyhow::Result<Arc<S2s>> {
        let trust = tls::PeerTrust::new(tls_ca)?;
        metrics::describe();
        tracing::info!(roots = trust.roots, "federation trust anchors loaded");
        let mut secret = [0u8; 32];
        rand::fill(&mut secret);
        let s2s = Arc::new(S2s {
            node_id: cluster.node_id(),
            cluster,
            xmpp: Arc::downgrade(xmpp),
            trust,
            certs,
            dns: Arc::new(dns::Dns::new(dns_server)?),
            default_port,
            limits,
            fallback_secret: hex::encode(secret),
            arbiter,
            links: Mutex::new(HashMap::new()),
            enabled: tokio::sync::watch::channel(false).0,
        });
        let on = s2s.enabled_here(&s2s.settings());
        s2s.enabled.send_replace(on);
        Ok(s2s)
    }

    /// Follows the stored settings: when this node is disabled for federation, its s2s
    /// listeners close (peers fall through to the next SRV target) and its streams end, so
    /// that traffic moves to the enabled nodes; when enabled again, the listeners reopen.
    /// Runs until the config store stops.
    pub async fn follow_enabled(self: Arc<Self>) {
        let mut applied = self.cluster.watch_applied();
        loop {
            let on = self.enabled_here(&self.settings());
            if self
                .enabled
                .send_if_modified(|v| std::mem::replace(v, on) != on)
            {
                if on {
                    tracing::info!("XMPP federation enabled on this node: s2s listeners open");
                } else {
                    tracing::warn!("XMPP federation disabled on this node: s2s listeners closed, streams ended");
                    self.stop();
                }
            }
            if applied.changed().await.is_err() {
                return;
            }
        }
    }

    /// A receiver of [`Self::follow_enabled`]'s view.
    pub fn enabled(&self) -> tokio::sync::watch::Receiver<bool> {
        self.enabled.subscribe()
    }

    /// The TLS client configuration for streams from our `local` domain (its certificate).
    pub fn client_tls(
        &self,
        local: &str,
        direct: bool,
    ) -> Result<Arc<rustls::ClientConfig>, crate::tls::TlsError> {
        tls::client_config(self.certs.for_domain(local), direct)
    }

    /// The settings in force now.
    pub fn settings(&self) -> Settings {
        let applied = self.cluster.applied();
        let federation = match applied
            .state
            .get(ObjectKind::XmppFederation, "")
            .and_then(|o| o.body)
        {
            Some(Body::XmppFederation(f)) => f,
            _ => XmppFederationSettings::default(),
        };
        let policy = match applied
            .state
            .get(ObjectKind::XmppPolicy, "")
            .and_then(|o| o.body)
        {
            Some(Body::XmppPolicy(p)) => p,
            _ => XmppFederationPolicy::default(),
        };
        let secret = if federation.dialback_secret.is_empty() {
            self.fallback_secret.clone()
        } else {
            // Sealed at rest: opened where it is used.
            let opened = match self.cluster.secrets() {
                Some(ring) => ring.open(
                    herald_cluster::secrets::FIELD_DIALBACK_SECRET,
                    &federation.dialback_secret,
                ),
                None => Ok(federation.dialback_secret.clone()),
            };
            match opened {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "cannot open the dialback secret; using this node's own");
                    self.fallback_secret.clone()
                }
            }
        };
        Settings {
            federation,
            policy,
            secret,
        }
    }

    /// Whether this node carries federation now.
    pub fn enabled_here(&self, s: &Settings) -> bool {
        s.federation.enabled_nodes.contains(&self.node_id)
    }

    pub fn is_local_domain(&self, domain: &str) -> bool {
        self.cluster
            .applied()
            .state
            .peek(ObjectKind::Domain, domain)
            .is_some()
    }

    /// Whether email for federation is on (EMAIL-1).
    pub fn email_enabled(&self) -> bool {
        matches!(
            self.cluster.applied().state.get(ObjectKind::EmailFederation, "").and_then(|o| o.body),
            Some(Body::EmailFederation(e)) if e.enabled
        )
    }

    /// Whether federation streams for `domain` are ours: a local domain, or an email domain
    /// while email for federation is on.
    pub fn serves_domain(&self, domain: &str) -> bool {
        self.is_local_domain(domain)
            || (self.email_enabled() && self.cluster.applied().state.is_email_domain(domain))
    }

    /// The address a local user federates as (EMAIL-2, EMAIL-3): their `mail_id` while email for
    /// federation is on and it is a full address, else their JID.
    fn federated_address(&self, user: &Jid) -> Option<Jid> {
        if !self.email_enabled() {
            return None;
        }
        let applied = self.cluster.applied();
        let o = applied
            .state
            .peek(ObjectKind::User, &user.bare().to_string())?;
        let Some(Body::User(u)) = &o.body else {
            return None;
        };
        let mail = Jid::parse(&u.mail_id)
            .ok()
            .filter(|m| m.local().is_some() && m.resource().is_none())?;
        match user.resource() {
            Some(r) => mail.with_resource(r).ok(),
            None => Some(mail),
        }
    }

    /// Maps an address from outside to the local user it names (EMAIL-2, EMAIL-4). `Ok(None)`:
    /// use it as it is; `Err`: drop the stanza (a user's raw JID while they federate by email).
    fn local_address(&self, to: &Jid) -> Result<Option<Jid>, &'static str> {
        if !self.email_enabled() {
            return Ok(None);
        }
        let applied = self.cluster.applied();
        let bare = to.bare().to_string();
        if let Some(jid) = applied.state.user_by_mail(&bare) {
            let Ok(user) = Jid::parse(jid) else {
                return Ok(None);
            };
            return Ok(Some(match to.resource() {
                Some(r) => user.with_resource(r).unwrap_or(user),
                None => user,
            }));
        }
        if let Some(Body::User(u)) = applied
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

    /// Sends a stanza from one of our users to another domain (or bounces it).
    pub fn send(self: &Arc<Self>, mut stanza: Element, forwarded: bool) {
        if !forwarded {
            if let Some(from) = stanza.get_attr("from").and_then(|f| Jid::parse(f).ok()) {
                if let Some(mail) = self.federated_address(&from) {
                    stanza.set_attr("from", mail.to_string());
                }
            }
        }
        let Some((from, to)) = addresses(&stanza) else {
            tracing::debug!("federated stanza without usable from/to dropped");
            return;
        };
        let remote = to.domain().to_string();
        let s = self.settings();
        let d = s.decide(&remote, Direction::Outbound);
        if !d.allowed {
            tracing::info!(domain = %remote, rule = %d.rule, "outbound federation denied by policy");
            metrics::failure("outbound", "policy");
            self.bounce(
                &stanza,
                StanzaCondition::RemoteServerNotFound,
                "denied by the federation policy",
            );
            return;
        }
        if self.enabled_here(&s) {
            self.link(from.domain(), &remote)
                .do_send(outbound::Push(stanza));
            return;
        }
        if forwarded {
            // The sender thought we carry federation; we no longer do.
            metrics::failure("outbound", "disabled");
            self.bounce(
                &stanza,
                StanzaCondition::RemoteServerNotFound,
                "XMPP federation is not enabled on this node",
            );
            return;
        }
        let carriers = self.carriers(&s, &remote);
        if carriers.is_empty() {
            tracing::info!(domain = %remote, "no live node carries XMPP federation");
            metrics::failure("outbound", "disabled");
            self.bounce(
                &stanza,
                StanzaCondition::RemoteServerNotFound,
                "XMPP federation is not enabled",
            );
            return;
        }
        let xml = stanza.to_xml_string();
        for n in carriers {
            match self.cluster.route(n, Kind::ToRemote(xml.clone())) {
                Ok(()) => {
                    ::metrics::counter!(metrics::FORWARDED).increment(1);
                    return;
                }
                Err(e) => {
                    tracing::warn!(node = n, domain = %remote, error = %e, "forwarding to a federation node failed")
                }
            }
        }
        self.bounce(
            &stanza,
            StanzaCondition::RemoteServerTimeout,
            "no federation node could be reached",
        );
    }

    /// The live federation-enabled nodes that may carry `remote`'s traffic, the preferred
    /// first (the domain's rendezvous hash).
    fn carriers(&self, s: &Settings, remote: &str) -> Vec<u64> {
        let live = self.cluster.live_nodes();
        let mut carriers: Vec<u64> = s
            .federation
            .enabled_nodes
            .iter()
            .copied()
            .filter(|n| live.contains(n))
            .collect();
        carriers.sort_by_key(|n| spread(remote, *n));
        carriers
    }

    /// The recipients in the XMPP federated domain `remote` of one presence broadcast (see
    /// [`crate::xmpp::router::Router::broadcast`]): the outbound policy is decided once, the
    /// sender's federated address looked up once, and on a node that carries federation the
    /// domain's link encodes the stanza once and writes it to all of them in one go. A node
    /// that does not carry federation forwards them in one message to a node that does
    /// (`forwarded`: this node is that node; they go no further).
    pub fn broadcast(
        self: &Arc<Self>,
        stanza: &Arc<crate::im::SharedStanza>,
        remote: &str,
        to: Vec<Jid>,
        forwarded: bool,
    ) {
        let s = self.settings();
        let d = s.decide(remote, Direction::Outbound);
        if !d.allowed {
            tracing::info!(domain = %remote, rule = %d.rule, recipients = to.len(),
                "outbound federation denied by policy: presence not sent");
            metrics::failure("outbound", "policy");
            return;
        }
        let from = stanza.from();
        if self.enabled_here(&s) {
            let mut el = stanza.stanza().clone();
            if let Some(mail) = self.federated_address(from) {
                el.set_attr("from", mail.to_string());
            }
            self.link(from.domain(), remote)
                .do_send(outbound::PushShared { stanza: el, to });
            return;
        }
        if forwarded {
            tracing::info!(domain = %remote, recipients = to.len(),
                "presence forwarded for XMPP federation, which this node no longer carries: dropped");
            metrics::failure("outbound", "disabled");
            return;
        }
        let carriers = self.carriers(&s, remote);
        if carriers.is_empty() {
            tracing::info!(domain = %remote, "no live node carries XMPP federation; presence not sent");
            metrics::failure("outbound", "disabled");
            return;
        }
        let xml = stanza.stanza().to_xml_string();
        let to: Vec<String> = to.iter().map(|j| j.to_string()).collect();
        for batch in crate::xmpp::router::batches(&xml, &to, true) {
            let sent = carriers.iter().any(|&n| {
                match self.cluster.route(n, Kind::Broadcast(batch.clone())) {
                    Ok(()) => true,
                    Err(e) => {
                        tracing::warn!(node = n, domain = %remote, error = %e,
                            "forwarding presence to a federation node failed");
                        false
                    }
                }
            });
            if sent {
                ::metrics::counter!(metrics::FORWARDED).increment(1);
            } else {
                metrics::failure("outbound", "forward");
            }
        }
    }

    /// The link actor of a (local, remote) domain pair, started on first use.
    fn link(self: &Arc<Self>, local: &str, remote: &str) -> Addr<outbound::LinkActor> {
        let key = (local.to_string(), remote.to_string());
        let mut links = self.links.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(a) = links.get(&key).filter(|a| a.connected()) {
            return a.clone();
        }
        let actor = outbound::LinkActor::new(self.clone(), key.0.clone(), key.1.clone());
        let addr =
            <outbound::LinkActor as actix::Actor>::start_in_arbiter(&self.arbiter, |_| actor);
        links.insert(key, addr.clone());
        addr
    }

    /// Answers `stanza` (from one of our users) with an error, unless it is presence or an
    /// error itself.
    pub fn bounce(&self, stanza: &Element, condition: StanzaCondition, why: &str) {
        if stanza.name() == "presence" || stanza.get_attr("type") == Some("error") {
            return;
        }
        ::metrics::counter!(metrics::BOUNCED, "condition" => condition.name()).increment(1);
        let err = StanzaError::with_text(condition, why);
        if let (Some(mut reply), Some(x)) = (err.reply_to(stanza, None), self.xmpp.upgrade()) {
            // The sender may have been given their email address on the way out.
            if let Some(to) = reply.get_attr("to").and_then(|t| Jid::parse(t).ok()) {
                if let Ok(Some(user)) = self.local_address(&to) {
                    reply.set_attr("to", user.to_string());
                }
            }
            x.router().route(reply);
        }
    }

    /// Hands a stanza that arrived from another domain to the dispatcher.
    pub fn deliver(&self, mut stanza: Element) {
        rewrite_presence(&mut stanza, "inbound");
        if let Some(to) = stanza.get_attr("to").and_then(|t| Jid::parse(t).ok()) {
            match self.local_address(&to) {
                Ok(Some(user)) => stanza.set_attr("to", user.to_string()),
                Ok(None) => {}
                Err(why) => {
                    tracing::info!(to = %to, reason = why, "federated stanza dropped (email for federation)");
                    ::metrics::counter!(metrics::EMAIL_DROPS).increment(1);
                    return;
                }
            }
        }
        herald_xmpp::s2s::swap_ns(
            &mut stanza,
            herald_xmpp::ns::SERVER,
            herald_xmpp::ns::CLIENT,
        );
        ::metrics::counter!(metrics::STANZAS, "direction" => "inbound").increment(1);
        if let Some(x) = self.xmpp.upgrade() {
            crate::im::stanza_id::stamp(&mut stanza, |d| x.is_local_domain(d));
            x.router().route(stanza);
        }
    }

    /// Closes every link (shutdown): queued stanzas are bounced.
    pub fn stop(&self) {
        let links = std::mem::take(&mut *self.links.lock().unwrap_or_else(|p| p.into_inner()));
        for (_, a) in links {
            a.do_send(outbound::Stop);
        }
    }
}

/// Presence crossing the edge goes through the availability model (plain RFC 6121 for a
/// generic XMPP server, Herald's own extension neither sent nor trusted).
pub fn rewrite_presence(stanza: &mut Element, direction: &'static str) {
    use herald_federation::edge::xmpp_presence::{for_generic_peer, Translated};
    if for_generic_peer(stanza) == Translated::Rewritten {
        ::metrics::counter!(metrics::PRESENCE_REWRITTEN, "direction" => direction).increment(1);
    }
}

/// Rendezvous weight of node `n` for `domain` (lowest first).
fn spread(domain: &str, n: u64) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    domain.hash(&mut h);
    n.hash(&mut h);
    h.finish()
}

/// `from` and `to` of a stanza, both parsed.
pub fn addresses(stanza: &Element) -> Option<(Jid, Jid)> {
    let from = Jid::parse(stanza.get_attr("from")?).ok()?;
    let to = Jid::parse(stanza.get_attr("to")?).ok()?;
    Some((from, to))
}

/// Accepts inbound federation connections while federation is enabled on this node; each one
/// is served on the control plane (a few streams per peer domain, not client-scale). While
/// disabled the socket is closed — connections are refused, so a peer tries the next SRV
/// target — and it is bound again on the same address when enabled.
pub async fn accept_loop(listener: tokio::net::TcpListener, s2s: Arc<S2s>, direct_tls: bool) {
    let addr = match listener.local_addr() {
        Ok(a) => a,
        Err(e) => {
            tracing::error!(error = %e, "federation listener has no address; not serving");
            return;
        }
    };
    let mut enabled = s2s.enabled();
    let mut listener = Some(listener);
    loop {
        if !*enabled.borrow_and_update() {
            if listener.take().is_some() {
                tracing::info!(%addr, direct_tls, "federation listener closed (disabled on this node)");
            }
            if enabled.wait_for(|on| *on).await.is_err() {
                return;
            }
            continue;
        }
        let Some(l) = &listener else {
            match rebind(addr) {
                Ok(l) => {
                    tracing::info!(%addr, direct_tls, "federation listener open again");
                    listener = Some(l);
                }
                Err(e) => {
                    tracing::warn!(%addr, error = %e, "cannot listen for federation again; retrying");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
            }
            continue;
        };
        tokio::select! {
            r = l.accept() => match r {
                Ok((tcp, peer)) => {
                    tokio::spawn(inbound::serve(s2s.clone(), tcp, peer, direct_tls));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a federation connection failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            },
            r = enabled.changed() => if r.is_err() { return },
        }
    }
}

fn rebind(addr: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}
