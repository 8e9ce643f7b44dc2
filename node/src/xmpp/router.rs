//! Router: where a stanza addressed to `to` goes — a user homed on this node (its UserActor),
//! a user homed on another node (node-to-node stream), or another domain: a configured SIP
//! federated domain (`crate::sip`), else XMPP federation (`crate::s2s`).

use std::fmt::Write as _;

use actix::dev::SendError;
use actix::Addr;
use std::sync::Arc;

use herald_grpc::cluster::route_message::Kind;
use herald_grpc::cluster::Broadcast;
use herald_xmpp::error::{StanzaCondition, StanzaError};
use herald_xmpp::{Element, Jid};

use super::metrics as xm;
use super::users::{ContactPresence, UserActor};
use super::Shared;
use crate::im::SharedStanza;

/// Recipients per node-to-node broadcast message (a few dozen bytes each: far below the
/// message cap).
pub(crate) const BATCH: usize = 1000;

/// The node-to-node messages carrying a broadcast's stanza (`xml`, without `to`) to `to`,
/// [`BATCH`] recipients each; `forwarded`: for a federation carrier or the SIP routing node.
pub(crate) fn batches<'a>(
    xml: &'a str,
    to: &'a [String],
    forwarded: bool,
) -> impl Iterator<Item = Broadcast> + 'a {
    to.chunks(BATCH).map(move |c| Broadcast {
        stanza: xml.to_string(),
        to: c.to_vec(),
        forwarded,
    })
}

#[derive(Clone)]
pub struct Router {
    shared: Arc<Shared>,
}

impl Router {
    pub fn new(shared: Arc<Shared>) -> Self {
        Router { shared }
    }

    /// Sends `stanza` (with `from` and `to` set) towards its recipient.
    pub fn route(&self, stanza: Element) {
        let Some(to) = stanza.get_attr("to").and_then(|t| Jid::parse(t).ok()) else {
            tracing::debug!("stanza without a usable 'to' dropped by the router");
            return;
        };
        if !self.shared.is_local_domain(to.domain()) {
            if let Some(sip) = self
                .shared
                .sip
                .get()
                .filter(|s| s.is_sip_domain(to.domain()))
            {
                sip.send(stanza);
                return;
            }
            match self.shared.s2s.get() {
                Some(s2s) => s2s.send(stanza, false),
                None => {
                    tracing::debug!(domain = to.domain(), "no federation edge on this node");
                    self.bounce(&stanza, StanzaCondition::RemoteServerNotFound);
                }
            }
            return;
        }
        let Some(_) = to.local() else {
            // Addressed to the server itself by another entity: nothing to do for it here.
            return;
        };
        let bare = to.bare();
        let Some(home) = self.shared.home_of_existing(&bare) else {
            self.bounce(&stanza, StanzaCondition::ServiceUnavailable);
            return;
        };
        if home == self.shared.node_id {
            // Straight to the user's actor (started here when it has none).
            if let Err(stanza) = self.shared.to_user(&bare, stanza) {
                self.bounce(&stanza, StanzaCondition::ResourceConstraint);
            }
        } else if let Err(e) = self
            .shared
            .cluster
            .route(home, Kind::ToUser(stanza.to_xml_string()))
        {
            tracing::warn!(user = %bare, home, error = %e, "stanza for a user on another node not sent; its sender is told");
            self.bounce(&stanza, StanzaCondition::ResourceConstraint);
        }
    }

    /// Sends the shared `stanza` to each of `to` (bare JIDs: a presence broadcast). Users homed
    /// on this node get the shared copy (no copy, parse or encode per watcher); users homed on
    /// another node get one message per node carrying the stanza once and their JIDs; users of
    /// another domain one hand-over per domain to its federation edge (XMPP or SIP), which
    /// encodes and maps the stanza once for all of them. The store and the placement view are
    /// read once for the whole broadcast.
    ///
    /// `actors` remembers, by position in `to`, the watchers' actors on this node (the caller
    /// keeps it for as long as `to` is its watcher list), so a user's next status change is
    /// sent to them without looking each one up again.
    pub fn broadcast(
        &self,
        stanza: &Arc<SharedStanza>,
        to: &[Jid],
        actors: &mut Vec<Option<Addr<UserActor>>>,
    ) {
        // Counted where the broadcast starts (not again by the nodes that hand out batches).
        metrics::histogram!(xm::BROADCAST_RECIPIENTS).record(to.len() as f64);
        self.broadcast_as(stanza, to, actors, false)
    }

    /// [`Router::broadcast`]; `forwarded`: this node received the broadcast as the federation
    /// carrier or SIP routing node, so recipients of other domains are not forwarded again.
    pub fn broadcast_as(
        &self,
        stanza: &Arc<SharedStanza>,
        to: &[Jid],
        actors: &mut Vec<Option<Addr<UserActor>>>,
        forwarded: bool,
    ) {
        actors.resize(to.len(), None);
        let homes = self.shared.homes();
        let mut key = String::with_capacity(64);
        let mut last_domain: Option<(&str, bool)> = None;
        // Recipients homed on other nodes, by node; recipients of other domains, by domain.
        let mut nodes: Vec<(u64, Vec<String>)> = Vec::new();
        let mut domains: Vec<(&str, Vec<Jid>)> = Vec::new();
        for (c, known) in to.iter().zip(actors.iter_mut()) {
            // A watcher whose actor lives here gets it straight away (were its home to have
            // moved meanwhile, the actor hands it on, as it does any input).
            if known.is_none() {
                *known = self.shared.directory.get(c);
            }
            if let Some(addr) = known {
                match addr.try_send(ContactPresence(stanza.clone())) {
                    Ok(()) => continue,
                    Err(SendError::Full(_)) => {
                        metrics::counter!(xm::MAILBOX_DROPS, "mailbox" => "user").increment(1);
                        tracing::warn!(user = %c, "user actor mailbox full; presence not queued");
                        continue;
                    }
                    // Stopped meanwhile: the general way below.
                    Err(SendError::Closed(_)) => *known = None,
                }
            }
            let local_domain = match last_domain {
                Some((d, local)) if d == c.domain() => local,
                _ => {
                    let local = homes.is_local_domain(c.domain());
                    last_domain = Some((c.domain(), local));
                    local
                }
            };
            if c.resource().is_some() || (local_domain && c.local().is_none()) {
                self.route(stanza.addressed(c));
                continue;
            }
            if !local_domain {
                match domains.iter_mut().find(|(d, _)| *d == c.domain()) {
                    Some((_, v)) => v.push(c.clone()),
                    None => domains.push((c.domain(), vec![c.clone()])),
                }
                continue;
            }
            key.clear();
            let _ = write!(key, "{c}");
            match homes.home_of_existing(&key) {
                // No such user: presence is dropped, as `route` does.
                None => {}
                Some(home) if home == self.shared.node_id => {
                    match self.shared.user_actor(c, ContactPresence(stanza.clone())) {
                        Ok(addr) => *known = Some(addr),
                        Err(_) => {
                            metrics::counter!(xm::MAILBOX_DROPS, "mailbox" => "user").increment(1);
                            tracing::warn!(user = %c, "user actor mailbox full; presence not queued");
                        }
                    }
                }
                Some(home) => match nodes.iter_mut().find(|(n, _)| *n == home) {
                    Some((_, v)) => v.push(key.clone()),
                    None => nodes.push((home, vec![key.clone()])),
                },
            }
        }
        if !nodes.is_empty() {
            let xml = stanza.stanza().to_xml_string();
            for (home, users) in nodes {
                self.to_node(home, &xml, &users);
            }
        }
        for (domain, users) in domains {
            self.to_domain(stanza, domain, users, forwarded);
        }
    }

    /// Recipients of a broadcast homed on node `node`: one message per [`BATCH`] of them.
    fn to_node(&self, node: u64, xml: &str, users: &[String]) {
        for batch in batches(xml, users, false) {
            let n = batch.to.len();
            metrics::histogram!(xm::BATCH_RECIPIENTS, "path" => "node").record(n as f64);
            if let Err(e) = self.shared.cluster.route(node, Kind::Broadcast(batch)) {
                tracing::warn!(node, recipients = n, error = %e,
                    "presence for users on another node not sent");
            }
        }
    }

    /// Recipients of a broadcast in another domain: to its federation edge, once.
    fn to_domain(
        &self,
        stanza: &Arc<SharedStanza>,
        domain: &str,
        users: Vec<Jid>,
        forwarded: bool,
    ) {
        if let Some(sip) = self.shared.sip.get().filter(|s| s.is_sip_domain(domain)) {
            sip.broadcast(stanza, domain, users, forwarded);
            return;
        }
        match self.shared.s2s.get() {
            Some(s2s) => s2s.broadcast(stanza, domain, users, forwarded),
            None => tracing::debug!(domain, "no federation edge on this node; presence dropped"),
        }
    }

    /// Returns an error to the sender for messages and IQs (presence is dropped silently).
    pub(crate) fn bounce(&self, stanza: &Element, condition: StanzaCondition) {
        if stanza.name() == "presence" {
            return;
        }
        if let Some(reply) = StanzaError::new(condition).reply_to(stanza, None) {
            // The sender is one of our users, or a user of another domain (the answer then goes
            // out through federation).
            self.route(reply);
        }
    }
}
