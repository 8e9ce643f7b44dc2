//! Presence subscriptions (RFC 6121 §3) and the state tables of Appendix A.

use herald_grpc::config::RosterItem;
use herald_xmpp::{Element, Jid};

use super::errors::{Condition, StanzaError};
use super::{presence, Out, UserCore};

/// Largest inbound subscription request kept verbatim in `pending_in_stanza`, in bytes.
pub const MAX_STORED_REQUEST: usize = 4096;

/// A subscription-related presence type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubKind {
    /// `subscribe`: ask for the other's presence.
    Subscribe,
    /// `subscribed`: approve a request.
    Subscribed,
    /// `unsubscribe`: stop receiving the other's presence.
    Unsubscribe,
    /// `unsubscribed`: deny a request or cancel the other's subscription.
    Unsubscribed,
}

impl SubKind {
    /// From a presence `type` attribute.
    pub fn parse(s: &str) -> Option<SubKind> {
        match s {
            "subscribe" => Some(SubKind::Subscribe),
            "subscribed" => Some(SubKind::Subscribed),
            "unsubscribe" => Some(SubKind::Unsubscribe),
            "unsubscribed" => Some(SubKind::Unsubscribed),
            _ => None,
        }
    }

    /// The presence `type` attribute.
    pub fn as_str(self) -> &'static str {
        match self {
            SubKind::Subscribe => "subscribe",
            SubKind::Subscribed => "subscribed",
            SubKind::Unsubscribe => "unsubscribe",
            SubKind::Unsubscribed => "unsubscribed",
        }
    }
}

/// The nine defined subscription states of RFC 6121 Appendix A.1, seen from the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubState {
    /// Neither is subscribed, nothing pending.
    None,
    /// The user asked the contact (ask='subscribe').
    NonePendingOut,
    /// The contact asked the user.
    NonePendingIn,
    /// Both asked.
    NonePendingOutIn,
    /// The user receives the contact's presence.
    To,
    /// "To", and the contact asked the user.
    ToPendingIn,
    /// The contact receives the user's presence.
    From,
    /// "From", and the user asked the contact.
    FromPendingOut,
    /// Both ways.
    Both,
}

impl SubState {
    /// The state of `item` (no item: None). Flags that cannot coexist are read as the
    /// established subscription (a pending request is moot once subscribed).
    pub fn of(item: Option<&RosterItem>) -> SubState {
        let Some(i) = item else {
            return SubState::None;
        };
        match (i.sub_to, i.sub_from) {
            (true, true) => SubState::Both,
            (true, false) if i.pending_in => SubState::ToPendingIn,
            (true, false) => SubState::To,
            (false, true) if i.pending_out => SubState::FromPendingOut,
            (false, true) => SubState::From,
            (false, false) => match (i.pending_out, i.pending_in) {
                (true, true) => SubState::NonePendingOutIn,
                (true, false) => SubState::NonePendingOut,
                (false, true) => SubState::NonePendingIn,
                (false, false) => SubState::None,
            },
        }
    }

    /// (sub_to, sub_from, pending_out, pending_in).
    pub fn flags(self) -> (bool, bool, bool, bool) {
        match self {
            SubState::None => (false, false, false, false),
            SubState::NonePendingOut => (false, false, true, false),
            SubState::NonePendingIn => (false, false, false, true),
            SubState::NonePendingOutIn => (false, false, true, true),
            SubState::To => (true, false, false, false),
            SubState::ToPendingIn => (true, false, false, true),
            SubState::From => (false, true, false, false),
            SubState::FromPendingOut => (false, true, true, false),
            SubState::Both => (true, true, false, false),
        }
    }

    /// Writes this state into `item`; clears the stored request when nothing is pending in.
    pub fn apply(self, item: &mut RosterItem) {
        let (to, from, out, inn) = self.flags();
        item.sub_to = to;
        item.sub_from = from;
        item.pending_out = out;
        item.pending_in = inn;
        if !inn {
            item.pending_in_stanza.clear();
        }
        if from {
            item.approved = false;
        }
    }

    /// The contact receives the user's presence.
    pub fn has_from(self) -> bool {
        self.flags().1
    }

    /// RFC 6121 Appendix A.2: the state after the user sends `kind` to the contact.
    pub fn outbound(self, kind: SubKind) -> SubState {
        use SubState::*;
        match (kind, self) {
            // A.2.1 subscribe
            (SubKind::Subscribe, None) => NonePendingOut,
            (SubKind::Subscribe, NonePendingIn) => NonePendingOutIn,
            (SubKind::Subscribe, From) => FromPendingOut,
            // A.2.2 unsubscribe
            (SubKind::Unsubscribe, NonePendingOut | To) => None,
            (SubKind::Unsubscribe, NonePendingOutIn | ToPendingIn) => NonePendingIn,
            (SubKind::Unsubscribe, FromPendingOut | Both) => From,
            // A.2.3 subscribed
            (SubKind::Subscribed, NonePendingIn) => From,
            (SubKind::Subscribed, NonePendingOutIn) => FromPendingOut,
            (SubKind::Subscribed, ToPendingIn) => Both,
            // A.2.4 unsubscribed
            (SubKind::Unsubscribed, NonePendingIn | From) => None,
            (SubKind::Unsubscribed, NonePendingOutIn | FromPendingOut) => NonePendingOut,
            (SubKind::Unsubscribed, ToPendingIn | Both) => To,
            (_, s) => s,
        }
    }

    /// RFC 6121 Appendix A.3: the state after the contact's `kind` reaches the user.
    pub fn inbound(self, kind: SubKind) -> SubState {
        use SubState::*;
        match (kind, self) {
            // A.3.1 subscribe
            (SubKind::Subscribe, None) => NonePendingIn,
            (SubKind::Subscribe, NonePendingOut) => NonePendingOutIn,
            (SubKind::Subscribe, To) => ToPendingIn,
            // A.3.2 unsubscribe
            (SubKind::Unsubscribe, NonePendingIn | From) => None,
            (SubKind::Unsubscribe, NonePendingOutIn | FromPendingOut) => NonePendingOut,
            (SubKind::Unsubscribe, ToPendingIn | Both) => To,
            // A.3.3 subscribed
            (SubKind::Subscribed, NonePendingOut) => To,
            (SubKind::Subscribed, NonePendingOutIn) => ToPendingIn,
            (SubKind::Subscribed, FromPendingOut) => Both,
            // A.3.4 unsubscribed
            (SubKind::Unsubscribed, NonePendingOut | To) => None,
            (SubKind::Unsubscribed, NonePendingOutIn | ToPendingIn) => NonePendingIn,
            (SubKind::Unsubscribed, FromPendingOut | Both) => From,
            (_, s) => s,
        }
    }
}

impl UserCore {
    /// The item for `contact`, created (hidden) when missing; `None` over `roster_max`.
    fn item_or_new(&mut self, contact: &Jid) -> Option<usize> {
        if let Some(i) = self.item_index(contact) {
            return Some(i);
        }
        if self.data.roster.len() >= self.limits.roster_max {
            return None;
        }
        self.data.roster.push(RosterItem {
            jid: contact.bare().to_string(),
            ..Default::default()
        });
        Some(self.data.roster.len() - 1)
    }

    /// Drops a hidden item that no longer carries anything (RFC 6121 §3.1.3: hidden items
    /// exist only for a pending inbound request).
    fn forget_if_hidden(&mut self, contact: &Jid) {
        if let Some(i) = self.item_index(contact) {
            let it = &self.data.roster[i];
            if !it.in_roster && !it.pending_in && !it.approved {
                self.data.roster.remove(i);
            }
        }
    }

    /// A subscription stanza from the user's own session (RFC 6121 §3.1.2, §3.1.5, §3.2.2,
    /// §3.3.2, §3.4; Appendix A.2).
    pub(crate) fn client_subscription(
        &mut self,
        resource: &str,
        kind: SubKind,
        stanza: Element,
        out: &mut Out,
    ) {
        let me = self.full_jid(resource);
        let fail = |out: &mut Out, err: StanzaError| {
            out.reject(resource, me.as_ref(), &stanza, &err);
        };
        let contact = match stanza.get_attr("to").map(Jid::parse) {
            Some(Ok(j)) => j.bare(),
            Some(Err(_)) => return fail(out, Condition::JidMalformed.into()),
            None => return fail(out, Condition::BadRequest.into()),
        };
        if contact == self.jid {
            return;
        }
        if self.is_blocked(&contact) {
            return fail(out, StanzaError::blocked());
        }
        // §3: subscription stanzas carry the bare JIDs of both parties.
        let mut stamped = stanza.clone();
        stamped.set_attr("from", self.jid.to_string());
        stamped.set_attr("to", contact.to_string());
        let old = SubState::of(self.item(&contact));
        let new = old.outbound(kind);
        match kind {
            SubKind::Subscribe => {
                // §3.1.2: always routed; the item is created (or shown) with ask='subscribe'.
                let Some(i) = self.item_or_new(&contact) else {
                    return fail(out, Condition::ResourceConstraint.into());
                };
                let was_visible = self.data.roster[i].in_roster;
                new.apply(&mut self.data.roster[i]);
                self.data.roster[i].in_roster = true;
                out.route(stamped);
                if old != new || !was_visible {
                    self.push_item_of(&contact, out);
                }
            }
            SubKind::Unsubscribe => {
                // §3.3.2: always routed; roster push when the state changes.
                out.route(stamped);
                if old != new {
                    if let Some(i) = self.item_index(&contact) {
                        new.apply(&mut self.data.roster[i]);
                    }
                    self.push_item_of(&contact, out);
                }
            }
            SubKind::Subscribed if old != new => {
                // §3.1.5: approve; route, push, then send current presence.
                if let Some(i) = self.item_index(&contact) {
                    new.apply(&mut self.data.roster[i]);
                    self.data.roster[i].in_roster = true;
                }
                out.route(stamped);
                self.push_item_of(&contact, out);
                self.send_current_presence(&contact, out);
            }
            SubKind::Subscribed => {
                // §3.4: no pending request → pre-approval, never routed.
                let can = matches!(
                    old,
                    SubState::None | SubState::NonePendingOut | SubState::To
                );
                let approved = self.item(&contact).is_some_and(|i| i.approved);
                if self.limits.pre_approval && can && !approved {
                    let Some(i) = self.item_or_new(&contact) else {
                        return fail(out, Condition::ResourceConstraint.into());
                    };
                    self.data.roster[i].approved = true;
                    self.data.roster[i].in_roster = true;
                    self.push_item_of(&contact, out);
                }
            }
            SubKind::Unsubscribed if old != new => {
                // §3.2.2: the contact sees the user go offline before the cancellation.
                if old.has_from() {
                    self.send_unavailable_to(&contact, out);
                }
                out.route(stamped);
                if let Some(i) = self.item_index(&contact) {
                    new.apply(&mut self.data.roster[i]);
                    self.data.roster[i].approved = false;
                }
                self.push_item_of(&contact, out);
                self.forget_if_hidden(&contact);
            }
            SubKind::Unsubscribed => {
                // §3.4: cancelling a pre-approval; nothing to route.
                if let Some(i) = self
                    .item_index(&contact)
                    .filter(|&i| self.data.roster[i].approved)
                {
                    self.data.roster[i].approved = false;
                    self.push_item_of(&contact, out);
                    self.forget_if_hidden(&contact);
                }
            }
        }
    }

    /// A subscription stanza from a contact (RFC 6121 §3.1.3, §3.1.6, §3.2.3, §3.3.3;
    /// Appendix A.3). The caller has already dropped stanzas from blocked senders.
    pub(crate) fn inbound_subscription(
        &mut self,
        from: &Jid,
        kind: SubKind,
        stanza: Element,
        out: &mut Out,
    ) {
        let contact = from.bare();
        if contact == self.jid {
            return;
        }
        let mut stamped = stanza;
        stamped.set_attr("from", contact.to_string());
        stamped.set_attr("to", self.jid.to_string());
        let old = SubState::of(self.item(&contact));
        let new = old.inbound(kind);
        match kind {
            SubKind::Subscribe if old.has_from() => {
                // §3.1.3: already subscribed: answer for the user, tell nobody.
                out.route(presence(&self.jid, &contact, Some("subscribed")));
            }
            SubKind::Subscribe if self.item(&contact).is_some_and(|i| i.approved) => {
                // §3.4: pre-approved: accept without asking the user.
                let accepted = new.outbound(SubKind::Subscribed);
                if let Some(i) = self.item_index(&contact) {
                    accepted.apply(&mut self.data.roster[i]);
                    self.data.roster[i].approved = false;
                    self.data.roster[i].in_roster = true;
                }
                out.route(presence(&self.jid, &contact, Some("subscribed")));
                self.push_item_of(&contact, out);
                self.send_current_presence(&contact, out);
            }
            SubKind::Subscribe => {
                // §3.1.3: keep the request (hidden item if needed) and show it to the user.
                let Some(i) = self.item_or_new(&contact) else {
                    return;
                };
                let mut xml = stamped.to_xml_string();
                if xml.len() > MAX_STORED_REQUEST {
                    // Durable state stays small: keep the request without its payload.
                    xml = presence(&contact, &self.jid, Some("subscribe")).to_xml_string();
                }
                let item = &mut self.data.roster[i];
                new.apply(item);
                if item.pending_in_stanza != xml || old != new {
                    item.pending_in_stanza = xml;
                    out.changed();
                }
                self.deliver_to_available(stamped, out);
            }
            _ if old == new => {
                // Appendix A.3: no state change → neither delivered nor pushed.
            }
            SubKind::Unsubscribe => {
                // §3.3.3: the contact no longer receives the user's presence.
                if old.has_from() {
                    self.send_unavailable_to(&contact, out);
                }
                if let Some(i) = self.item_index(&contact) {
                    new.apply(&mut self.data.roster[i]);
                    self.data.roster[i].approved = false;
                }
                self.push_item_of(&contact, out);
                self.forget_if_hidden(&contact);
                self.deliver_to_available(stamped, out);
            }
            SubKind::Subscribed | SubKind::Unsubscribed => {
                // §3.1.6 / §3.2.3: push the new state, then tell the available resources.
                if let Some(i) = self.item_index(&contact) {
                    new.apply(&mut self.data.roster[i]);
                }
                self.push_item_of(&contact, out);
                self.deliver_to_available(stamped, out);
            }
        }
    }

    /// Gives `stanza` to every available resource, addressed to the user's bare JID.
    /// The last resource gets the stanza itself, the others a copy (one resource, the common
    /// case of a presence fan-out, costs no copy).
    pub(crate) fn deliver_to_available(&self, stanza: Element, out: &mut Out) {
        let mut available = self.available().map(|(r, _)| r).peekable();
        while let Some(res) = available.next() {
            if available.peek().is_none() {
                out.send_session(res, stanza);
                return;
            }
            out.send_session(res, stanza.clone());
        }
    }
}
