//! Where a stanza for a SIP domain goes (RTE-4, RTE-5, RTE-7): the domain's plan
//! ([`policy::route_plan`]) walked over static routes and DNS SRV answers (looked up through
//! the federation resolver and kept [`SRV_TTL`]), next hops that failed to connect passed over
//! for [`DOWN_FOR`], and a message whose next hop failed sent once by the next route.

use std::sync::Arc;

use herald_grpc::config::config_object::Body;
use herald_grpc::config::{ObjectKind, StaticRoute, Transport};
use herald_xmpp::error::StanzaCondition;
use herald_xmpp::Element;

use super::{metrics, outbound, policy, Sip};

/// What the DNS said of one domain's SIP servers.
pub(super) struct SrvEntry {
    /// The next hops, in RFC 2782 order (all TLS); empty when there were no records.
    pub(super) hops: Vec<outbound::Hop>,
    /// The lookup failed (neither name answered): why.
    pub(super) error: Option<String>,
    pub(super) at: std::time::Instant,
}

/// SRV answers are looked up again after this long (a stale answer still serves the
/// subscription table's refreshes in the meantime).
pub const SRV_TTL: std::time::Duration = std::time::Duration::from_secs(60);
/// Internal mark of a message already sent again by another route (at most once).
pub(super) const REROUTED_ATTR: &str = "herald-sip-rerouted";
/// A next hop that failed to connect is passed over for this long while the domain has another
/// (a backup static route, the next SRV target).
pub const DOWN_FOR: std::time::Duration = std::time::Duration::from_secs(30);
/// Most stanzas waiting for one domain's DNS lookup (more are bounced).
pub const MAX_WAITING_FOR_DNS: usize = 1024;

/// Why a SIP domain cannot be reached from this node.
pub(super) struct NoRoute {
    pub(super) reason: &'static str,
    pub(super) text: String,
}

impl Sip {
    /// Finds the next hop of `stanza` (looking the domain up in DNS first when its route
    /// depends on SRV records not known yet) and sends it from here. Stanzas for a domain
    /// being looked up wait, in order, for that one lookup.
    pub(super) fn route_and_send(self: &Arc<Self>, stanza: Element, domain: String) {
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
    pub(super) fn plan(&self, domain: &str) -> Vec<policy::Step> {
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
    pub(super) fn needs_dns(&self, domain: &str) -> bool {
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
    pub(super) async fn prepare(&self, domain: &str) {
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
    pub(super) async fn lookup_srv(&self, domain: &str) -> bool {
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

    /// Whether the link to `hop` failed to connect within [`DOWN_FOR`].
    pub(super) fn is_down(&self, hop: &outbound::Hop) -> bool {
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
    pub(super) fn try_reroute(
        self: &Arc<Self>,
        mut stanza: Element,
        domain: &str,
    ) -> Option<Element> {
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
    pub(super) fn static_routes(&self, domain: &str) -> Vec<StaticRoute> {
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
    pub(super) fn static_route(&self, domain: &str) -> Option<StaticRoute> {
        self.static_routes(domain).into_iter().next()
    }

    /// The next hop for a SIP domain, by its plan ([`policy::route_plan`]): a static route, or
    /// the first target of the SRV answer kept by [`Sip::prepare`] (a stale one too).
    pub(super) fn hop_for(&self, domain: &str) -> Result<outbound::Hop, NoRoute> {
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
    pub(super) fn route_hop(
        &self,
        domain: &str,
        route: &StaticRoute,
    ) -> Result<outbound::Hop, NoRoute> {
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

    /// The next hop `stanza` needs, `Some(None)` when it needs none, `None` when it cannot
    /// leave (answered). Presence for a SIP watcher (the user's approval, the answer to a
    /// probe, every change) leaves on the watcher's subscription dialog, towards its Contact or
    /// Record-Route: no route of ours is needed. Our own subscriptions and messages need a
    /// route for the domain (static, or DNS SRV).
    #[allow(clippy::option_option)]
    pub(super) fn usable_hop(
        &self,
        stanza: &Element,
        domain: &str,
    ) -> Option<Option<outbound::Hop>> {
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
}
