//! Router: where a stanza addressed to `to` goes — a user homed on this node (its UserActor),
//! a user homed on another node (node-to-node stream), or another domain: a configured SIP
//! federated domain (`crate::sip`), else XMPP federation (`crate::s2s`).

use std::sync::Arc;

use herald_grpc::cluster::route_message::Kind;
use herald_xmpp::error::{StanzaCondition, StanzaError};
use herald_xmpp::{Element, Jid};

use super::Shared;

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
