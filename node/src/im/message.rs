//! Message delivery (RFC 6121 §5, §8.5) and offline storage (XEP-0160, stamped with XEP-0203
//! delay).

use herald_grpc::config::StoredStanza;
use herald_xmpp::{ns, Element, Jid};

use super::errors::{error_reply, Condition, StanzaError};
use super::{stanza_id, stanza_type, xml, Out, UserCore};

/// Whether a message is worth keeping offline: it says something (a body or a subject).
/// Chat states and receipts alone are not stored (XEP-0160 §4 leaves the choice to the server).
pub fn worth_storing(m: &Element) -> bool {
    m.get_child("body", ns::CLIENT).is_some() || m.get_child("subject", ns::CLIENT).is_some()
}

impl UserCore {
    /// A message from one of the user's sessions: routed out (§5.1), refused to a blocked
    /// JID (XEP-0191 §3.6), handled here when addressed to the user's own account.
    pub(crate) fn client_message(
        &mut self,
        resource: &str,
        stanza: Element,
        now_ms: u64,
        out: &mut Out,
    ) {
        let Some(full) = self.full_jid(resource) else {
            return;
        };
        let to = match stanza.get_attr("to").map(Jid::parse) {
            None => self.jid.clone(),
            Some(Ok(j)) => j,
            Some(Err(_)) => {
                out.reject(
                    resource,
                    Some(&full),
                    &stanza,
                    &Condition::JidMalformed.into(),
                );
                return;
            }
        };
        if self.is_blocked(&to) {
            out.reject(resource, Some(&full), &stanza, &StanzaError::blocked());
            return;
        }
        let mut stanza = stanza;
        stanza.set_attr("from", full.to_string());
        stanza.set_attr("to", to.to_string());
        if to.bare() == self.jid {
            self.inbound_message(&full, &to, stanza, now_ms, out);
        } else {
            out.route(stanza);
        }
    }

    /// Sends the error reply to `stanza` back to its sender.
    pub(crate) fn bounce(&self, stanza: &Element, err: StanzaError, out: &mut Out) {
        if let Some(mut r) = error_reply(stanza, &err) {
            if r.get_attr("from").is_none() {
                r.set_attr("from", self.jid.to_string());
            }
            out.route(r);
        }
    }

    /// A message for the user (RFC 6121 §8.5.2 bare JID, §8.5.3 full JID).
    pub(crate) fn inbound_message(
        &mut self,
        from: &Jid,
        to: &Jid,
        stanza: Element,
        now_ms: u64,
        out: &mut Out,
    ) {
        // XEP-0191 §3.5: messages from blocked entities get service-unavailable.
        if self.is_blocked(from) {
            return self.bounce(&stanza, Condition::ServiceUnavailable.into(), out);
        }
        if self.already_handled(&stanza) {
            return;
        }
        // §8.5.3.1: a connected full JID gets it whatever the type.
        if let Some(res) = to.resource() {
            if self.sessions.contains_key(res) {
                out.send_session(res, stanza);
                return;
            }
        }
        // §8.5.2 (bare JID) and §8.5.3.2.1 (full JID of no session: treated as bare).
        let typ = match stanza_type(&stanza) {
            "" => "normal",
            t => t,
        }
        .to_string();
        match typ.as_str() {
            "error" => {}
            "groupchat" => self.bounce(&stanza, Condition::ServiceUnavailable.into(), out),
            "headline" => {
                for res in self.non_negative() {
                    out.send_session(&res, stanza.clone());
                }
            }
            // "normal", "chat", and unknown types handled as "normal" (RFC 6121 §5.2.2).
            _ => {
                let best = self.best_resources();
                if best.is_empty() {
                    self.store_offline(stanza, now_ms, out);
                } else {
                    for res in best {
                        out.send_session(&res, stanza.clone());
                    }
                }
            }
        }
    }

    /// Available resources with a non-negative priority.
    pub fn non_negative(&self) -> Vec<String> {
        self.available()
            .filter(|(_, s)| s.priority >= 0)
            .map(|(r, _)| r.clone())
            .collect()
    }

    /// The available resources of highest non-negative priority (all of them on a tie;
    /// RFC 6121 §8.5.2.1.1).
    pub fn best_resources(&self) -> Vec<String> {
        let Some(top) = self
            .available()
            .map(|(_, s)| s.priority)
            .filter(|&p| p >= 0)
            .max()
        else {
            return Vec::new();
        };
        self.available()
            .filter(|(_, s)| s.priority == top)
            .map(|(r, _)| r.clone())
            .collect()
    }

    /// Whether this message was handled before (the same item handed on twice between nodes):
    /// its stanza id is among those seen lately or those of the stored messages. Remembers it
    /// otherwise.
    fn already_handled(&mut self, stanza: &Element) -> bool {
        // An error reply may carry the original message, id included, back to its sender (the
        // user itself, for a message to its own account): it is not a repeat of it.
        if stanza_type(stanza) == "error" {
            return false;
        }
        let Some(id) = stanza_id::of(stanza, &self.jid) else {
            return false;
        };
        if self.seen_ids.iter().any(|s| s == id)
            || self.data.offline.iter().any(|s| s.stanza_id == id)
        {
            metrics::counter!(crate::xmpp::metrics::DUPLICATES).increment(1);
            tracing::info!(user = %self.jid, stanza_id = id,
                "message handed on twice between nodes; handled once");
            return true;
        }
        if self.seen_ids.len() >= stanza_id::REMEMBERED {
            self.seen_ids.pop_front();
        }
        self.seen_ids.push_back(id.to_string());
        false
    }

    /// XEP-0160 §3: keep the message for later, within `offline_max`.
    fn store_offline(&mut self, stanza: Element, now_ms: u64, out: &mut Out) {
        if !worth_storing(&stanza) {
            return;
        }
        if self.data.offline.len() >= self.limits.offline_max {
            return self.bounce(&stanza, Condition::ServiceUnavailable.into(), out);
        }
        self.data.offline.push(StoredStanza {
            xml: stanza.to_xml_string(),
            stored_at_ms: now_ms,
            stanza_id: stanza_id::of(&stanza, &self.jid)
                .unwrap_or_default()
                .to_string(),
        });
        out.changed();
    }

    /// XEP-0160 §5: stored messages go to the resource that became available with a
    /// non-negative priority, oldest first, each with an XEP-0203 delay stamp.
    pub(crate) fn flush_offline(&mut self, resource: &str, out: &mut Out) {
        if self.data.offline.is_empty() {
            return;
        }
        let stored = std::mem::take(&mut self.data.offline);
        out.changed();
        for s in stored {
            // A stored stanza that cannot be read back is dropped rather than kept forever.
            let Ok(mut m) = xml::parse(&s.xml) else {
                continue;
            };
            m.push(
                Element::new("delay", ns::DELAY)
                    .attr("stamp", xml::utc_stamp(s.stored_at_ms))
                    .attr("from", self.jid.domain()),
            );
            out.send_session(resource, m);
        }
    }
}
