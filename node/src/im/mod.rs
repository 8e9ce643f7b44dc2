//! Instant messaging and presence semantics of one user, as plain functions over plain state.
//!
//! This is the behaviour of a user's `UserActor` (RFC 6121, XEP-0191 blocking, XEP-0160 offline
//! messages) without actors, I/O or a clock: the caller passes stanzas and the current time in,
//! and gets [`Effect`]s back (stanzas to the user's sessions, stanzas to route, and "persist the
//! durable state"). The actor owns a [`UserCore`] and only dispatches.
//!
//! Layout, one module per feature:
//! - [`roster`]: roster get/set/push and versioning (RFC 6121 §2).
//! - [`subscription`]: the subscription state machine of Appendix A and §3.
//! - [`presence`]: broadcast, probes, directed presence (§4).
//! - [`message`]: delivery rules (§8.5, §5) and offline storage (XEP-0160).
//! - [`blocking`]: XEP-0191 block lists and their effects.
//! - [`iq`]: IQ routing and the account's own IQ handlers (disco#info).
//! - [`errors`]: stanza error replies.
//! - [`stanza_id`]: XEP-0359 ids, which make a message handed on twice count once.
//! - [`xml`]: reading stored stanzas back, and XEP-0082 timestamps.

pub mod blocking;
pub mod calendar;
pub mod errors;
pub mod iq;
pub mod message;
pub mod presence;
pub mod resources;
pub mod roster;
pub mod shared;
pub mod stanza_id;
pub mod subscription;
pub mod xml;

#[cfg(test)]
mod tests;

use std::cell::OnceCell;
use std::collections::BTreeSet;
use std::sync::Arc;

use herald_grpc::config::{RosterItem, UserData};
use herald_xmpp::{ns, Element, Jid, Node};

pub use resources::ResourceMap;
pub use shared::SharedStanza;

/// Per-user limits and server options that change IM behaviour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImLimits {
    /// Most offline messages kept (XEP-0160); more are refused with service-unavailable.
    pub offline_max: usize,
    /// Most roster items (visible and hidden ones) per user.
    pub roster_max: usize,
    /// Most XEP-0191 block list entries.
    pub blocked_max: usize,
    /// The server advertises subscription pre-approval (RFC 6121 §3.4).
    pub pre_approval: bool,
    /// Most bytes of stored state per user (roster, block list, offline queue, encoded); a
    /// change that would exceed it is refused with resource-constraint.
    pub max_user_bytes: usize,
}

impl Default for ImLimits {
    fn default() -> Self {
        ImLimits {
            offline_max: 100,
            roster_max: 1000,
            blocked_max: 1000,
            max_user_bytes: 1 << 20,
            pre_approval: true,
        }
    }
}

/// One bound resource of the user.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SessionState {
    /// Sent initial presence and not unavailable since.
    pub available: bool,
    /// Priority of the last available presence (RFC 6121 §4.7.2.3).
    pub priority: i8,
    /// Last available presence broadcast (without `to`, `from` = the full JID).
    pub presence: Option<Box<Element>>,
    /// Requested the roster (RFC 6121 §2.1.6 "interested resource").
    pub interested: bool,
    /// XEP-0191: gets block/unblock pushes only if it asked for the block list.
    pub blocklist_requested: bool,
}

/// What the caller must do after an input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// To one of this user's own sessions (by resource).
    ToSession {
        /// The resource of the session.
        resource: String,
        /// The stanza, `to` set to the session's full JID or the user's bare JID.
        stanza: Element,
    },
    /// Out to another entity (to is set; from is this user's bare or full JID): the router
    /// delivers it locally, to another node, or to another domain.
    Route(Element),
    /// One stanza to several contacts, each addressed by its bare JID (a presence broadcast
    /// to the user's subscribers): routed like one `Route` per contact, built and encoded once.
    Broadcast {
        /// The stanza, without `to`.
        stanza: Arc<SharedStanza>,
        /// The contacts' bare JIDs.
        to: Arc<[Jid]>,
    },
    /// A shared stanza to one of the user's own sessions, addressed to the user's bare JID
    /// (a contact's presence broadcast).
    ToSessionShared {
        /// The resource of the session.
        resource: String,
        /// The stanza, without `to`.
        stanza: Arc<SharedStanza>,
    },
    /// `data` changed: the caller persists it (through Raft) before acknowledging.
    Persist,
}

/// The live and durable IM state of one user.
#[derive(Debug, Clone)]
pub struct UserCore {
    /// Bare JID of the user.
    pub jid: Jid,
    /// Durable: roster (with subscription states), blocked list, offline queue.
    pub data: UserData,
    /// Bound sessions, by resource.
    pub sessions: ResourceMap<SessionState>,
    /// Full JIDs of others this user sent directed presence to, per own resource (RFC 6121 §4.6).
    pub directed: ResourceMap<BTreeSet<Jid>>,
    /// Limits and options.
    pub limits: ImLimits,
    /// Counter for the ids of server-generated IQs (roster and block list pushes).
    pub next_id: u64,
    /// What the user's calendar shows now (the CalendarActor's last report; never stored).
    pub calendar: herald_federation::availability::CalendarState,
    /// Stanza ids of the messages handled lately, oldest first (at most
    /// [`stanza_id::REMEMBERED`]; never stored: those kept offline carry their own).
    pub seen_ids: std::collections::VecDeque<String>,
    /// The watcher index: the contacts that get the user's presence ([`Self::subscribers`]),
    /// parsed once and kept until an input that may change the roster or the block list.
    watchers: OnceCell<Arc<[Jid]>>,
    /// The contacts the user is subscribed to ([`Self::subscribed_to`]), for contacts'
    /// presence broadcasts; dropped with the watcher index.
    roster_index: OnceCell<SubscribedTo>,
}

/// The contacts the user is subscribed to (`sub_to`), as a set of keyed 64-bit hashes of
/// their bare JIDs in an open-addressing table: a contact's presence broadcast is checked with
/// one probe into one cache line, instead of comparing its JID with every roster item (10,000
/// watchers of 100 contacts each: a million string comparisons per round of status changes).
/// The hash is keyed per process (SipHash with a random key), so a false match needs a 64-bit
/// collision nobody can aim for (odds about n / 2^64 per lookup).
#[derive(Debug, Clone, Default)]
struct SubscribedTo {
    /// Slots; 0 is empty. A power of two, at least twice the entries.
    slots: Box<[u64]>,
}

/// The per-process key of [`SubscribedTo`]'s hash.
fn bare_hasher() -> &'static std::collections::hash_map::RandomState {
    static KEY: std::sync::OnceLock<std::collections::hash_map::RandomState> =
        std::sync::OnceLock::new();
    KEY.get_or_init(std::collections::hash_map::RandomState::new)
}

/// The keyed hash of a bare JID's text, fed in parts (`local`, `@`, `domain`) or whole, with
/// the same result (never 0).
fn bare_hash(parts: &[&[u8]]) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = bare_hasher().build_hasher();
    let mut len = 0;
    for p in parts {
        // SipHash is a streaming hash: the result does not depend on how the text is split
        // (the test below checks it).
        h.write(p);
        len += p.len();
    }
    h.write_usize(len);
    h.finish().max(1)
}

fn jid_bare_hash(jid: &Jid) -> u64 {
    match jid.local() {
        Some(l) => bare_hash(&[l.as_bytes(), b"@", jid.domain().as_bytes()]),
        None => bare_hash(&[jid.domain().as_bytes()]),
    }
}

impl SubscribedTo {
    fn build(roster: &[RosterItem]) -> Self {
        let n = roster.iter().filter(|i| i.sub_to).count();
        if n == 0 {
            return SubscribedTo::default();
        }
        let mut slots = vec![0u64; (2 * n).next_power_of_two()];
        let mask = slots.len() - 1;
        for item in roster.iter().filter(|i| i.sub_to) {
            let h = bare_hash(&[item.jid.as_bytes()]);
            let mut at = (h as usize) & mask;
            while slots[at] != 0 && slots[at] != h {
                at = (at + 1) & mask;
            }
            slots[at] = h;
        }
        SubscribedTo {
            slots: slots.into(),
        }
    }

    fn contains(&self, contact: &Jid) -> bool {
        if self.slots.is_empty() {
            return false;
        }
        let h = jid_bare_hash(contact);
        let mask = self.slots.len() - 1;
        let mut at = (h as usize) & mask;
        // Bounded: the table is at most half full.
        loop {
            match self.slots[at] {
                0 => return false,
                x if x == h => return true,
                _ => at = (at + 1) & mask,
            }
        }
    }
}

/// Effects being collected for one input; `Persist` is appended once, at the end.
#[derive(Debug, Default)]
pub(crate) struct Out {
    effects: Vec<Effect>,
    dirty: bool,
}

impl Out {
    pub(crate) fn send_session(&mut self, resource: &str, stanza: Element) {
        self.effects.push(Effect::ToSession {
            resource: resource.to_string(),
            stanza,
        });
    }

    pub(crate) fn route(&mut self, stanza: Element) {
        self.effects.push(Effect::Route(stanza));
    }

    pub(crate) fn send_session_shared(&mut self, resource: &str, stanza: Arc<SharedStanza>) {
        self.effects.push(Effect::ToSessionShared {
            resource: resource.to_string(),
            stanza,
        });
    }

    /// `stanza` (`from` = `from`) to every one of `to` (bare JIDs); nothing when `to` is empty.
    pub(crate) fn broadcast(&mut self, stanza: Element, from: &Jid, to: Arc<[Jid]>) {
        if to.is_empty() {
            return;
        }
        self.effects.push(Effect::Broadcast {
            stanza: SharedStanza::new(stanza, from.clone()),
            to,
        });
    }

    /// Notes that `data` changed.
    pub(crate) fn changed(&mut self) {
        self.dirty = true;
    }

    /// The error reply to `stanza`, to the session `resource` (full JID `me`) that sent it.
    pub(crate) fn reject(
        &mut self,
        resource: &str,
        me: Option<&Jid>,
        stanza: &Element,
        err: &errors::StanzaError,
    ) {
        if let Some(mut r) = errors::error_reply(stanza, err) {
            if let Some(me) = me {
                r.set_attr("to", me.to_string());
            }
            self.send_session(resource, r);
        }
    }

    fn finish(mut self) -> Vec<Effect> {
        if self.dirty {
            self.effects.push(Effect::Persist);
        }
        self.effects
    }
}

/// The `type` attribute, or "" when absent.
pub(crate) fn stanza_type(e: &Element) -> &str {
    e.get_attr("type").unwrap_or("")
}

/// Parses an address attribute; `None` when absent or malformed.
pub(crate) fn jid_attr(e: &Element, name: &str) -> Option<Jid> {
    e.get_attr(name).and_then(|s| Jid::parse(s).ok())
}

/// A presence stanza in `jabber:client`.
pub(crate) fn presence(from: &Jid, to: &Jid, typ: Option<&str>) -> Element {
    Element::new("presence", ns::CLIENT)
        .attr("from", from.to_string())
        .attr("to", to.to_string())
        .attr_opt("type", typ)
}

/// `stanza` with every element in `jabber:server` moved to `jabber:client` (RFC 6120 §4.8.3:
/// a server-to-server stanza is delivered to clients in the client namespace).
pub fn client_ns(stanza: Element) -> Element {
    fn convert(e: &Element) -> Element {
        let ns = if e.ns() == ns::SERVER {
            ns::CLIENT
        } else {
            e.ns()
        };
        let mut out = Element::new(e.name(), ns);
        for (k, v) in e.attrs() {
            out.set_attr(k, v);
        }
        for n in e.nodes() {
            match n {
                Node::Element(c) => out.push(convert(c)),
                Node::Text(t) => out = out.text_node(t.clone()),
            }
        }
        out
    }
    if stanza.ns() != ns::SERVER {
        return stanza;
    }
    convert(&stanza)
}

/// Clone of `stanza` addressed to `to`.
/// Whether `s` is `jid`'s bare JID as text (`contact.bare().to_string() == s`, without
/// building the string: roster lookups run for every inbound presence).
fn is_bare_of(s: &str, jid: &Jid) -> bool {
    let domain = jid.domain();
    match jid.local() {
        None => s == domain,
        Some(local) => {
            s.len() == local.len() + 1 + domain.len()
                && s.starts_with(local)
                && s.as_bytes()[local.len()] == b'@'
                && s.ends_with(domain)
        }
    }
}

pub(crate) fn readdress(stanza: &Element, to: &Jid) -> Element {
    let mut s = stanza.clone();
    s.set_attr("to", to.to_string());
    s
}

impl UserCore {
    /// A user with no session; `jid` is reduced to its bare form.
    pub fn new(jid: Jid, data: UserData, limits: ImLimits) -> Self {
        UserCore {
            jid: jid.bare(),
            data,
            sessions: ResourceMap::new(),
            directed: ResourceMap::new(),
            limits,
            next_id: 1,
            calendar: herald_federation::availability::CalendarState::Free,
            seen_ids: std::collections::VecDeque::new(),
            watchers: OnceCell::new(),
            roster_index: OnceCell::new(),
        }
    }

    /// Replaces the durable state (the stored copy was reloaded).
    pub fn set_data(&mut self, data: UserData) {
        self.data = data;
        self.forget_watchers();
    }

    /// A session bound `resource` (RFC 6120 §7). Nothing is sent until its initial presence.
    /// A previous session with the same resource (a replaced one) is closed first.
    pub fn session_bound(&mut self, resource: &str) -> Vec<Effect> {
        let effects = if self.sessions.contains_key(resource) {
            self.session_closed(resource, 0)
        } else {
            Vec::new()
        };
        self.sessions
            .insert(resource.to_string(), SessionState::default());
        self.directed.remove(resource);
        effects
    }

    /// The session went away (clean or not): unavailable to subscribers and directed-presence
    /// recipients if it was available (RFC 6121 §4.5.3 / §4.6.3), then forget it.
    pub fn session_closed(&mut self, resource: &str, _now_ms: u64) -> Vec<Effect> {
        let mut out = Out::default();
        let was_available = self.sessions.get(resource).is_some_and(|s| s.available);
        self.sessions.remove(resource);
        if let Ok(full) = self.jid.with_resource(resource) {
            let unavailable = Element::new("presence", ns::CLIENT)
                .attr("from", full.to_string())
                .attr("type", "unavailable");
            self.broadcast_unavailable(resource, &unavailable, was_available, &mut out);
        }
        self.directed.remove(resource);
        out.finish()
    }

    /// A stanza from one of the user's own sessions, `from` already stamped with the full JID.
    pub fn from_client(&mut self, resource: &str, stanza: Element, now_ms: u64) -> Vec<Effect> {
        let mut out = Out::default();
        // Only the user's own broadcast presence leaves the roster and block list as they are;
        // after anything else the watcher index is built again when next needed.
        let keeps_watchers = stanza.name() == "presence"
            && stanza.get_attr("to").is_none()
            && matches!(stanza_type(&stanza), "" | "unavailable");
        if !keeps_watchers {
            self.forget_watchers();
        }
        if self.sessions.contains_key(resource) && stanza.ns() == ns::CLIENT {
            match stanza.name() {
                "presence" => self.client_presence(resource, stanza, now_ms, &mut out),
                "message" => self.client_message(resource, stanza, now_ms, &mut out),
                "iq" => self.client_iq(resource, stanza, now_ms, &mut out),
                _ => {}
            }
        }
        if !keeps_watchers {
            self.forget_watchers();
        }
        out.finish()
    }

    /// A stanza from anyone else addressed to this user's bare or full JID (`from` is trusted).
    pub fn from_outside(&mut self, stanza: Element, now_ms: u64) -> Vec<Effect> {
        let mut out = Out::default();
        // Presence that is not a subscription change leaves the roster as it is (see
        // `from_client`).
        let keeps_watchers = stanza.name() == "presence"
            && matches!(stanza_type(&stanza), "" | "unavailable" | "probe" | "error");
        if !keeps_watchers {
            self.forget_watchers();
        }
        if stanza.ns() == ns::CLIENT || stanza.ns() == ns::SERVER {
            self.outside(client_ns(stanza), now_ms, &mut out);
        }
        if !keeps_watchers {
            self.forget_watchers();
        }
        out.finish()
    }

    fn outside(&mut self, stanza: Element, now_ms: u64, out: &mut Out) {
        // Without a sender there is nobody to answer: drop (RFC 6120 §8.1.2.1 needs a from
        // on server-delivered stanzas).
        let Some(from) = jid_attr(&stanza, "from") else {
            return;
        };
        let to = match stanza.get_attr("to") {
            None => self.jid.clone(),
            Some(s) => match Jid::parse(s) {
                Ok(j) if j.bare() == self.jid => j,
                _ => return,
            },
        };
        match stanza.name() {
            "presence" => self.inbound_presence(&from, &to, stanza, out),
            "message" => self.inbound_message(&from, &to, stanza, now_ms, out),
            "iq" => self.inbound_iq(&from, &to, stanza, out),
            _ => {}
        }
    }

    /// The user's full JID for `resource`.
    pub fn full_jid(&self, resource: &str) -> Option<Jid> {
        self.jid.with_resource(resource).ok()
    }

    /// Resources that sent available presence, with their state.
    pub fn available(&self) -> impl Iterator<Item = (&String, &SessionState)> {
        self.sessions.iter().filter(|(_, s)| s.available)
    }

    /// The roster item for `contact` (any JID; compared by bare JID), hidden ones included.
    pub fn item(&self, contact: &Jid) -> Option<&RosterItem> {
        self.data
            .roster
            .iter()
            .find(|i| is_bare_of(&i.jid, contact))
    }

    /// Whether the user is subscribed to `contact`'s presence (its roster item's `sub_to`), from
    /// the index (built at the first use after a change): for inputs that change no roster.
    pub(crate) fn subscribed_to(&self, contact: &Jid) -> bool {
        let found = self
            .roster_index
            .get_or_init(|| SubscribedTo::build(&self.data.roster))
            .contains(contact);
        debug_assert_eq!(
            found,
            self.item(contact).is_some_and(|i| i.sub_to),
            "stale roster index"
        );
        found
    }

    pub(crate) fn item_index(&self, contact: &Jid) -> Option<usize> {
        self.data
            .roster
            .iter()
            .position(|i| is_bare_of(&i.jid, contact))
    }

    /// A fresh id for a server-generated stanza.
    pub(crate) fn gen_id(&mut self, prefix: &str) -> String {
        let id = format!("{prefix}-{}", self.next_id);
        self.next_id += 1;
        id
    }
}

#[cfg(test)]
mod bare_of_tests {
    use super::*;

    #[test]
    fn the_subscription_index_answers_as_a_scan_does() {
        let roster: Vec<RosterItem> = [
            ("a@x.org", true),
            ("b@x.org", false),
            ("x.org", true),
            ("A@y.org", true),
            ("b@x.or", true),
        ]
        .iter()
        .map(|(j, sub_to)| RosterItem {
            jid: j.to_string(),
            sub_to: *sub_to,
            ..Default::default()
        })
        .collect();
        let index = SubscribedTo::build(&roster);
        for probe in [
            "a@x.org/r",
            "b@x.org",
            "x.org/r",
            "a@y.org",
            "c@x.org",
            "b@x.or",
            "y.org",
        ] {
            let jid = Jid::parse(probe).unwrap();
            let by_scan = roster.iter().any(|i| i.sub_to && is_bare_of(&i.jid, &jid));
            assert_eq!(index.contains(&jid), by_scan, "{probe}");
        }
        assert!(!SubscribedTo::build(&[]).contains(&Jid::parse("a@x.org").unwrap()));
        for split in 0..=7 {
            let (a, b) = b"a@x.org".split_at(split);
            assert_eq!(bare_hash(&[a, b]), bare_hash(&[b"a@x.org"]), "{split}");
        }
        assert_eq!(bare_hash(&[b"a", b"@", b"x.org"]), bare_hash(&[b"a@x.org"]));
        assert_ne!(bare_hash(&[b"a@x.org"]), bare_hash(&[b"a@x.or"]));
    }

    #[test]
    fn bare_text_matches_as_the_built_string_would() {
        for (s, j) in [
            ("a@x.org", "a@x.org/r"),
            ("a@x.org", "a@x.org"),
            ("x.org", "x.org/r"),
            ("a@x.org", "b@x.org"),
            ("a@x.org", "a@y.org"),
            ("ab@x.org", "a@bx.org"),
            ("a@x.org", "x.org"),
            ("x.org", "a@x.org"),
            ("a@x.orgg", "a@x.org"),
        ] {
            let jid = Jid::parse(j).unwrap();
            assert_eq!(
                is_bare_of(s, &jid),
                jid.bare().to_string() == s,
                "{s} vs {j}"
            );
        }
    }
}
