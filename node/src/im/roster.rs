//! Roster management (RFC 6121 §2): get with versioning (§2.6), set and remove, pushes to
//! interested resources.

use std::collections::BTreeSet;

use herald_grpc::config::RosterItem;
use herald_xmpp::{ns, Element, Jid};

use super::errors::{Condition, StanzaError};
use super::{presence, Out, UserCore};

/// Longest roster item name accepted, in bytes (RFC 6121 §2.3.3 lets the server choose).
pub const MAX_NAME: usize = 1023;
/// Most groups per item.
pub const MAX_GROUPS: usize = 64;

/// The `subscription` attribute value of an item (RFC 6121 §2.1.2.5).
pub fn subscription_attr(item: &RosterItem) -> &'static str {
    match (item.sub_to, item.sub_from) {
        (true, true) => "both",
        (true, false) => "to",
        (false, true) => "from",
        (false, false) => "none",
    }
}

/// The `<item/>` of a roster result or push (RFC 6121 §2.1.2).
pub fn item_element(item: &RosterItem) -> Element {
    let mut e = Element::new("item", ns::ROSTER)
        .attr("jid", item.jid.clone())
        .attr("subscription", subscription_attr(item));
    if !item.name.is_empty() {
        e.set_attr("name", item.name.clone());
    }
    if item.pending_out {
        e.set_attr("ask", "subscribe");
    }
    if item.approved {
        e.set_attr("approved", "true");
    }
    for g in &item.groups {
        e.push(Element::new("group", ns::ROSTER).text_node(g.clone()));
    }
    e
}

/// A validated roster set (RFC 6121 §2.3.3 / §2.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RosterSet {
    /// Add or update an item.
    Update {
        /// The contact's bare JID.
        jid: Jid,
        /// Handle, possibly empty.
        name: String,
        /// Groups, without duplicates.
        groups: Vec<String>,
    },
    /// Remove the item (subscription='remove').
    Remove(Jid),
}

/// Validates the `<query/>` of a roster set sent by the user `own`.
pub fn parse_set(query: &Element, own: &Jid) -> Result<RosterSet, StanzaError> {
    let mut items = query.children().filter(|c| c.is("item", ns::ROSTER));
    let item = items.next().ok_or(Condition::BadRequest)?;
    if items.next().is_some() {
        return Err(Condition::BadRequest.into());
    }
    let jid = item.get_attr("jid").ok_or(Condition::BadRequest)?;
    let jid = Jid::parse(jid).map_err(|_| Condition::JidMalformed)?;
    if !jid.is_bare() {
        return Err(Condition::BadRequest.into());
    }
    if jid == *own {
        return Err(Condition::NotAllowed.into());
    }
    match item.get_attr("subscription") {
        None => {}
        Some("remove") => return Ok(RosterSet::Remove(jid)),
        Some(_) => return Err(Condition::BadRequest.into()),
    }
    let name = item.get_attr("name").unwrap_or("").to_string();
    if name.len() > MAX_NAME {
        return Err(Condition::NotAcceptable.into());
    }
    let mut seen = BTreeSet::new();
    let mut groups = Vec::new();
    for g in item.children().filter(|c| c.is("group", ns::ROSTER)) {
        let g = g.text();
        if g.is_empty() || g.len() > MAX_NAME {
            return Err(Condition::NotAcceptable.into());
        }
        if !seen.insert(g.clone()) {
            return Err(Condition::BadRequest.into());
        }
        groups.push(g);
    }
    if groups.len() > MAX_GROUPS {
        return Err(Condition::NotAcceptable.into());
    }
    Ok(RosterSet::Update { jid, name, groups })
}

/// The empty IQ result to `iq`.
pub(crate) fn iq_result(iq: &Element, own_full: Option<&Jid>) -> Element {
    Element::new("iq", ns::CLIENT)
        .attr_opt("id", iq.get_attr("id"))
        .attr_opt("to", own_full.map(|j| j.to_string()))
        .attr("type", "result")
}

impl UserCore {
    /// Roster get (RFC 6121 §2.2, with versioning §2.6.3): marks the resource interested.
    pub(crate) fn roster_get(
        &mut self,
        resource: &str,
        iq: &Element,
        query: &Element,
        out: &mut Out,
    ) {
        if let Some(s) = self.sessions.get_mut(resource) {
            s.interested = true;
        }
        let full = self.full_jid(resource);
        let mut result = iq_result(iq, full.as_ref());
        let ver = self.data.roster_version.to_string();
        // §2.6.3: an unchanged roster is answered with an empty result; pushes follow.
        if query.get_attr("ver") != Some(ver.as_str()) {
            let mut q = Element::new("query", ns::ROSTER).attr("ver", ver);
            for item in self.data.roster.iter().filter(|i| i.in_roster) {
                q.push(item_element(item));
            }
            result.push(q);
        }
        out.send_session(resource, result);
    }

    /// Roster set (RFC 6121 §2.3 add/update, §2.5 remove).
    pub(crate) fn roster_set(
        &mut self,
        resource: &str,
        iq: &Element,
        query: &Element,
        out: &mut Out,
    ) -> Result<(), StanzaError> {
        match parse_set(query, &self.jid)? {
            RosterSet::Update { jid, name, groups } => {
                let item = match self.item_index(&jid) {
                    Some(i) => &mut self.data.roster[i],
                    None => {
                        if self.data.roster.len() >= self.limits.roster_max {
                            return Err(Condition::ResourceConstraint.into());
                        }
                        self.data.roster.push(RosterItem {
                            jid: jid.to_string(),
                            ..Default::default()
                        });
                        let last = self.data.roster.len() - 1;
                        &mut self.data.roster[last]
                    }
                };
                item.name = name;
                item.groups = groups;
                item.in_roster = true;
                let pushed = item_element(item);
                out.send_session(resource, iq_result(iq, self.full_jid(resource).as_ref()));
                self.roster_push(pushed, out);
            }
            RosterSet::Remove(jid) => {
                let idx = self
                    .item_index(&jid)
                    .filter(|&i| self.data.roster[i].in_roster)
                    .ok_or(Condition::ItemNotFound)?;
                let item = self.data.roster.remove(idx);
                let own = self.jid.clone();
                // §2.5.2: cancel both directions. The contact stops receiving presence, so
                // it first sees the user go offline (as in §3.2.2).
                if item.sub_from {
                    for (res, _) in self.available() {
                        if let Ok(full) = own.with_resource(res) {
                            out.route(presence(&full, &jid, Some("unavailable")));
                        }
                    }
                }
                if item.sub_to || item.pending_out {
                    out.route(presence(&own, &jid, Some("unsubscribe")));
                }
                if item.sub_from || item.pending_in {
                    out.route(presence(&own, &jid, Some("unsubscribed")));
                }
                out.send_session(resource, iq_result(iq, self.full_jid(resource).as_ref()));
                let removed = Element::new("item", ns::ROSTER)
                    .attr("jid", jid.to_string())
                    .attr("subscription", "remove");
                self.roster_push(removed, out);
            }
        }
        Ok(())
    }

    /// A roster change: bumps the version and pushes `item` to every interested resource
    /// (RFC 6121 §2.1.6, §2.3.2: including the one that caused it).
    pub(crate) fn roster_push(&mut self, item: Element, out: &mut Out) {
        self.data.roster_version += 1;
        out.changed();
        let ver = self.data.roster_version.to_string();
        let targets: Vec<String> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.interested)
            .map(|(r, _)| r.clone())
            .collect();
        for res in targets {
            let id = self.gen_id("push");
            let push = Element::new("iq", ns::CLIENT)
                .attr("id", id)
                .attr_opt("to", self.full_jid(&res).map(|j| j.to_string()))
                .attr("type", "set")
                .child(
                    Element::new("query", ns::ROSTER)
                        .attr("ver", ver.clone())
                        .child(item.clone()),
                );
            out.send_session(&res, push);
        }
    }

    /// Pushes the current state of the item for `contact` if it is visible.
    pub(crate) fn push_item_of(&mut self, contact: &Jid, out: &mut Out) {
        let el = self.item(contact).filter(|i| i.in_roster).map(item_element);
        match el {
            Some(el) => self.roster_push(el, out),
            None => out.changed(),
        }
    }
}
