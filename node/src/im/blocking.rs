//! XEP-0191 blocking: the block list, its pushes, and polite blocking (the blocked entity sees
//! the user offline).
//!
//! Inbound rules (XEP-0191 §3.5), applied by the presence, message and iq modules: presence
//! (probes and subscription requests included) is dropped silently; messages are answered with
//! `<service-unavailable/>`; IQ get/set with `<service-unavailable/>`, other IQs dropped.
//! Outbound (§3.6): any stanza to a blocked JID gets `<not-acceptable/>` with
//! `<blocked xmlns='urn:xmpp:blocking:errors'/>`; presence broadcasts skip blocked contacts.

use herald_xmpp::{ns, Element, Jid};

use super::errors::{Condition, StanzaError};
use super::roster::iq_result;
use super::{Out, UserCore};

/// The block list entries that would match `jid`, most specific first (XEP-0191 §3.2 uses the
/// XEP-0016 §2.1 rules: a full JID or `domain/resource` matches only itself, a bare JID any
/// of its resources, a domain everything at that domain).
pub fn candidates(jid: &Jid) -> Vec<String> {
    let mut c = Vec::with_capacity(4);
    // A `domain/resource` entry matches only that JID, a `domain` entry everything there.
    if jid.resource().is_some() {
        c.push(jid.to_string());
    }
    if jid.local().is_some() {
        c.push(jid.bare().to_string());
    }
    c.push(jid.domain().to_string());
    c
}

/// Whether the block list entry `entry` (a normalised JID string) matches `jid`.
pub fn blocks(entry: &str, jid: &Jid) -> bool {
    candidates(jid).iter().any(|c| c == entry)
}

/// The JIDs of the `<item/>`s of a block or unblock element, normalised.
fn items_of(el: &Element) -> Result<Vec<String>, StanzaError> {
    let mut v: Vec<String> = Vec::new();
    for item in el.children().filter(|c| c.is("item", ns::BLOCKING)) {
        let j = item
            .get_attr("jid")
            .map(Jid::parse)
            .ok_or(Condition::BadRequest)?
            .map_err(|_| Condition::JidMalformed)?
            .to_string();
        if !v.contains(&j) {
            v.push(j);
        }
    }
    Ok(v)
}

fn items_element(name: &str, items: &[String]) -> Element {
    let mut e = Element::new(name, ns::BLOCKING);
    for j in items {
        e.push(Element::new("item", ns::BLOCKING).attr("jid", j.clone()));
    }
    e
}

impl UserCore {
    /// Whether stanzas from or to `jid` are blocked (XEP-0191 §3.2 matching).
    pub fn is_blocked(&self, jid: &Jid) -> bool {
        if self.data.blocked.is_empty() {
            return false;
        }
        let c = candidates(jid);
        self.data.blocked.iter().any(|b| c.contains(b))
    }

    /// XEP-0191 §3.1: the block list; the resource will get pushes from now on.
    pub(crate) fn blocklist_get(&mut self, resource: &str, iq: &Element, out: &mut Out) {
        if let Some(s) = self.sessions.get_mut(resource) {
            s.blocklist_requested = true;
        }
        let result = iq_result(iq, self.full_jid(resource).as_ref())
            .child(items_element("blocklist", &self.data.blocked));
        out.send_session(resource, result);
    }

    /// XEP-0191 §3.3: block JIDs; the blocked ones that were receiving presence see the user
    /// go offline.
    pub(crate) fn block(
        &mut self,
        resource: &str,
        iq: &Element,
        el: &Element,
        out: &mut Out,
    ) -> Result<(), StanzaError> {
        let items = items_of(el)?;
        if items.is_empty() {
            return Err(Condition::BadRequest.into());
        }
        let fresh: Vec<String> = items
            .iter()
            .filter(|j| !self.data.blocked.contains(j))
            .cloned()
            .collect();
        if self.data.blocked.len() + fresh.len() > self.limits.blocked_max {
            return Err(Condition::ResourceConstraint.into());
        }
        out.send_session(resource, iq_result(iq, self.full_jid(resource).as_ref()));
        if fresh.is_empty() {
            return Ok(());
        }
        // Polite blocking: unavailable presence to what was receiving the user's presence.
        let subscribers = self.subscribers();
        for entry in &fresh {
            for c in subscribers.iter() {
                if blocks(entry, c) {
                    self.send_unavailable_to(c, out);
                } else if let Ok(full) = Jid::parse(entry) {
                    // A full JID of a subscriber: only that resource is told.
                    if full.resource().is_some() && full.local().is_some() && full.bare() == *c {
                        self.send_unavailable_to(&full, out);
                    }
                }
            }
            let resources: Vec<String> = self.directed.keys().cloned().collect();
            for res in resources {
                let Some(full) = self.full_jid(&res) else {
                    continue;
                };
                let Some(set) = self.directed.get_mut(&res) else {
                    continue;
                };
                let hit: Vec<Jid> = set.iter().filter(|j| blocks(entry, j)).cloned().collect();
                for j in hit {
                    set.remove(&j);
                    let covered = subscribers
                        .iter()
                        .any(|c| *c == j.bare() && blocks(entry, c));
                    if !covered {
                        out.route(super::presence(&full, &j, Some("unavailable")));
                    }
                }
            }
        }
        self.data.blocked.extend(fresh.iter().cloned());
        out.changed();
        self.push_blocklist(items_element("block", &fresh), out);
        Ok(())
    }

    /// XEP-0191 §3.4: unblock JIDs (all of them when no item is given); subscribers that are
    /// no longer blocked get the user's current presence again.
    pub(crate) fn unblock(
        &mut self,
        resource: &str,
        iq: &Element,
        el: &Element,
        out: &mut Out,
    ) -> Result<(), StanzaError> {
        let items = items_of(el)?;
        let removed: Vec<String> = if items.is_empty() {
            std::mem::take(&mut self.data.blocked)
        } else {
            let r: Vec<String> = items
                .iter()
                .filter(|j| self.data.blocked.contains(j))
                .cloned()
                .collect();
            self.data.blocked.retain(|b| !r.contains(b));
            r
        };
        out.send_session(resource, iq_result(iq, self.full_jid(resource).as_ref()));
        if removed.is_empty() {
            return Ok(());
        }
        out.changed();
        let subscribers = self.subscribers();
        for c in subscribers.iter() {
            if removed.iter().any(|e| blocks(e, c)) {
                self.send_current_presence(c, out);
            }
        }
        let pushed = if items.is_empty() {
            items_element("unblock", &[])
        } else {
            items_element("unblock", &removed)
        };
        self.push_blocklist(pushed, out);
        Ok(())
    }

    /// Sends a block/unblock push to every resource that asked for the block list.
    fn push_blocklist(&mut self, payload: Element, out: &mut Out) {
        let targets: Vec<String> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.blocklist_requested)
            .map(|(r, _)| r.clone())
            .collect();
        for res in targets {
            let id = self.gen_id("block");
            let push = Element::new("iq", ns::CLIENT)
                .attr("id", id)
                .attr_opt("to", self.full_jid(&res).map(|j| j.to_string()))
                .attr("type", "set")
                .child(payload.clone());
            out.send_session(&res, push);
        }
    }
}
