//! Presence (RFC 6121 §4): initial, subsequent and unavailable presence, probes, directed
//! presence, and inbound presence from contacts.

use std::cell::OnceCell;
use std::sync::Arc;

use herald_xmpp::{ns, Element, Jid};

use super::errors::{Condition, StanzaError};
use super::subscription::SubKind;
use super::{presence, readdress, stanza_type, xml, Effect, Out, SharedStanza, UserCore};

/// The `<priority/>` of a presence (RFC 6121 §4.7.2.3); absent or invalid is 0.
pub fn priority_of(p: &Element) -> i8 {
    p.get_child("priority", ns::CLIENT)
        .and_then(|e| e.text().trim().parse::<i8>().ok())
        .unwrap_or(0)
}

impl UserCore {
    /// A presence stanza from one of the user's sessions.
    pub(crate) fn client_presence(
        &mut self,
        resource: &str,
        stanza: Element,
        _now_ms: u64,
        out: &mut Out,
    ) {
        let typ = stanza_type(&stanza).to_string();
        if let Some(kind) = SubKind::parse(&typ) {
            return self.client_subscription(resource, kind, stanza, out);
        }
        let Some(full) = self.full_jid(resource) else {
            return;
        };
        let to = match stanza.get_attr("to").map(Jid::parse) {
            None => None,
            Some(Ok(j)) if j == self.jid => None,
            Some(Ok(j)) => Some(j),
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
        let mut stanza = stanza;
        stanza.set_attr("from", full.to_string());
        match (to, typ.as_str()) {
            (None, "") => self.available_presence(resource, &full, stanza, out),
            (None, "unavailable") => {
                stanza.remove_attr("to");
                let was = self.sessions.get(resource).is_some_and(|s| s.available);
                if let Some(s) = self.sessions.get_mut(resource) {
                    s.available = false;
                    s.presence = None;
                }
                // §4.5.2: also to the resource that sent it.
                if was {
                    out.send_session(resource, readdress(&stanza, &full));
                }
                self.broadcast_unavailable(resource, &stanza, was, out);
            }
            (Some(to), t) => {
                if t == "error" {
                    out.route(readdress(&stanza, &to));
                    return;
                }
                if self.is_blocked(&to) {
                    out.reject(resource, Some(&full), &stanza, &StanzaError::blocked());
                    return;
                }
                match t {
                    // §4.6.2: directed presence, remembered until unavailable (§4.6.3).
                    "" => {
                        let subscriber = self.item(&to).is_some_and(|i| i.sub_from);
                        if !subscriber {
                            self.directed.get_or_default(resource).insert(to.clone());
                        }
                        out.route(readdress(&self.for_watchers(&stanza), &to));
                    }
                    "unavailable" => {
                        if let Some(set) = self.directed.get_mut(resource) {
                            set.remove(&to);
                        }
                        out.route(readdress(&stanza, &to));
                    }
                    // §4.3: probes are sent from the bare JID.
                    "probe" => out.route(presence(&self.jid, &to.bare(), Some("probe"))),
                    _ => {}
                }
            }
            // Probes, errors and unknown types without a `to`: nothing to do.
            (None, _) => {}
        }
    }

    /// Available presence without `to`: initial (§4.2.2) or subsequent (§4.4.2).
    fn available_presence(
        &mut self,
        resource: &str,
        full: &Jid,
        mut stanza: Element,
        out: &mut Out,
    ) {
        stanza.remove_attr("to");
        let prio = priority_of(&stanza);
        let Some(session) = self.sessions.get_mut(resource) else {
            return;
        };
        let initial = !session.available;
        session.available = true;
        session.priority = prio;
        session.presence = Some(Box::new(stanza.clone()));
        let own = self.jid.clone();
        if initial {
            // §4.2.2: probe every contact the user is subscribed to.
            for item in self.data.roster.iter().filter(|i| i.sub_to) {
                if let Ok(c) = Jid::parse(&item.jid) {
                    if !self.is_blocked(&c) {
                        out.route(presence(&own, &c, Some("probe")));
                    }
                }
            }
        }
        // §4.2.2 / §4.4.2: to every subscriber, and every available resource of the user
        // (the sender included).
        out.broadcast(self.for_watchers(&stanza), full, self.subscribers());
        for (res, _) in self.available() {
            if let Some(full) = self.full_jid(res) {
                out.send_session(res, readdress(&stanza, &full));
            }
        }
        if initial {
            // The new resource learns about the user's other resources.
            let me = self.full_jid(resource);
            for (_, s) in self.available().filter(|(r, _)| r.as_str() != resource) {
                if let (Some(p), Some(me)) = (&s.presence, &me) {
                    out.send_session(resource, readdress(p, me));
                }
            }
            self.redeliver_requests(resource, out);
        }
        if prio >= 0 {
            self.flush_offline(resource, out);
        }
    }

    /// §3.1.3: pending inbound subscription requests are shown again at each login.
    fn redeliver_requests(&self, resource: &str, out: &mut Out) {
        for item in self.data.roster.iter().filter(|i| i.pending_in) {
            let parsed = xml::parse(&item.pending_in_stanza).ok();
            let req = parsed.unwrap_or_else(|| {
                Element::new("presence", ns::CLIENT)
                    .attr("from", item.jid.clone())
                    .attr("to", self.jid.to_string())
                    .attr("type", "subscribe")
            });
            out.send_session(resource, req);
        }
    }

    /// Bare JIDs of roster contacts that receive the user's presence (not blocked), from the
    /// watcher index (built at the first broadcast after a change of roster or block list).
    pub(crate) fn subscribers(&self) -> Arc<[Jid]> {
        let index = self
            .watchers
            .get_or_init(|| self.find_subscribers().into())
            .clone();
        debug_assert_eq!(*index, *self.find_subscribers(), "stale watcher index");
        index
    }

    fn find_subscribers(&self) -> Vec<Jid> {
        self.data
            .roster
            .iter()
            .filter(|i| i.sub_from)
            .filter_map(|i| Jid::parse(&i.jid).ok())
            .filter(|c| !self.is_blocked(c))
            .collect()
    }

    /// Drops the watcher and roster indexes (the roster or the block list may change).
    pub(crate) fn forget_watchers(&mut self) {
        self.watchers = OnceCell::new();
        self.roster_index = OnceCell::new();
    }

    /// A contact's presence broadcast ([`Effect::Broadcast`]) reaching this user: what
    /// [`UserCore::from_outside`] does with it addressed to the user's bare JID, without a copy
    /// per resource — available or unavailable presence goes to every available resource if
    /// the user is subscribed to the contact (§4.4.3, §4.5.3), and nowhere if the contact is
    /// blocked (XEP-0191 §3.5). Other stanzas take the general path.
    pub fn contact_presence(&mut self, stanza: &Arc<SharedStanza>, now_ms: u64) -> Vec<Effect> {
        let el = stanza.stanza();
        let plain = el.name() == "presence"
            && el.ns() == ns::CLIENT
            && matches!(stanza_type(el), "" | "unavailable");
        if !plain {
            let to = self.jid.clone();
            return self.from_outside(stanza.addressed(&to), now_ms);
        }
        let mut out = Out::default();
        let from = stanza.from();
        if !self.is_blocked(from) && self.subscribed_to(from) {
            for (res, _) in self.available() {
                out.send_session_shared(res, stanza.clone());
            }
        }
        out.finish()
    }

    /// Unavailable presence of `resource` (§4.5.2, §4.6.3): to subscribers and the user's other
    /// resources if it was available, and to directed-presence recipients; forgets those.
    pub(crate) fn broadcast_unavailable(
        &mut self,
        resource: &str,
        stanza: &Element,
        was_available: bool,
        out: &mut Out,
    ) {
        let subscribers: Arc<[Jid]> = if was_available {
            self.subscribers()
        } else {
            Arc::new([])
        };
        if let Some(full) = self.full_jid(resource) {
            out.broadcast(stanza.clone(), &full, subscribers.clone());
        }
        if let Some(set) = self.directed.remove(resource) {
            for to in set {
                if !subscribers.contains(&to.bare()) && !self.is_blocked(&to) {
                    out.route(readdress(stanza, &to));
                }
            }
        }
        if was_available {
            for (res, _) in self.available().filter(|(r, _)| r.as_str() != resource) {
                if let Some(full) = self.full_jid(res) {
                    out.send_session(res, readdress(stanza, &full));
                }
            }
        }
    }

    /// Current presence of every available resource, to `contact` (§3.1.5, XEP-0191 unblock).
    pub(crate) fn send_current_presence(&self, contact: &Jid, out: &mut Out) {
        for (_, s) in self.available() {
            if let Some(p) = &s.presence {
                out.route(readdress(&self.for_watchers(p), contact));
            }
        }
    }

    /// Unavailable presence from every available resource to `contact` (§3.2.2, XEP-0191).
    pub(crate) fn send_unavailable_to(&self, contact: &Jid, out: &mut Out) {
        for (res, _) in self.available() {
            if let Some(full) = self.full_jid(res) {
                out.route(presence(&full, contact, Some("unavailable")));
            }
        }
    }

    /// Presence from someone else (§4.2.3, §4.3.2, §4.4.3, §4.5.3, §4.6.2, §3).
    pub(crate) fn inbound_presence(
        &mut self,
        from: &Jid,
        to: &Jid,
        stanza: Element,
        out: &mut Out,
    ) {
        // XEP-0191 §3.5: presence from a blocked entity is dropped silently.
        if self.is_blocked(from) {
            return;
        }
        let typ = stanza_type(&stanza).to_string();
        if let Some(kind) = SubKind::parse(&typ) {
            return self.inbound_subscription(from, kind, stanza, out);
        }
        match typ.as_str() {
            "" | "unavailable" => {
                if let Some(res) = to.resource() {
                    // Directed to a full JID (§4.6.2): that session, if it is there.
                    if self.sessions.contains_key(res) {
                        out.send_session(res, stanza);
                    }
                } else if self.item(from).is_some_and(|i| i.sub_to) {
                    // §4.4.3: to every available resource of a subscribed user.
                    self.deliver_to_available(stanza, out);
                }
            }
            "probe" => self.answer_probe(from, out),
            // Presence errors and unknown types are dropped.
            _ => {}
        }
    }

    /// §4.3.2: answer a probe.
    fn answer_probe(&self, from: &Jid, out: &mut Out) {
        if self.item(from).is_some_and(|i| i.sub_from) {
            let mut any = false;
            for (_, s) in self.available() {
                if let Some(p) = &s.presence {
                    out.route(readdress(&self.for_watchers(p), from));
                    any = true;
                }
            }
            if !any {
                out.route(presence(&self.jid, from, Some("unavailable")));
            }
            return;
        }
        // Not a subscriber: a recipient of directed presence still gets that presence back
        // (§4.6.2); anyone else is told there is no subscription.
        let mut any = false;
        for (res, set) in &self.directed {
            if set.contains(from) {
                if let Some(p) = self.sessions.get(res).and_then(|s| s.presence.as_ref()) {
                    out.route(readdress(&self.for_watchers(p), from));
                    any = true;
                }
            }
        }
        if !any {
            out.route(presence(&self.jid, &from.bare(), Some("unsubscribed")));
        }
    }
}
