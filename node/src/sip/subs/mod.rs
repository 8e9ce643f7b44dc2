//! SIP presence subscriptions (RFC 6665, RFC 3856) held by the routing node, as a pure state
//! machine: SIP requests, SIP responses, XMPP presence stanzas and clock ticks in; SIP
//! responses, SIP requests to send and XMPP stanzas to route out. No I/O, no clock, no
//! randomness (tokens come from the [`Env`]).
//!
//! Two kinds of subscription meet here:
//! - **Inbound** (a SIP watcher subscribes to a local user). Authorization follows the guides'
//!   "presence subscriptions and blocking levels" after the edge admitted the domain: the local
//!   user's block list first (blocked → accepted, the watcher sees the user offline: polite
//!   blocking), then the user's roster (the watcher already receives the user's presence →
//!   active, and a probe asks the user's home for the current presence), else pending: 202,
//!   a `pending` NOTIFY, and an XMPP subscription request to the user, whose answer
//!   (`subscribed` / `unsubscribed`, stored in the roster by the user's home as their rule)
//!   comes back here and turns the subscription active or terminates it (`rejected`).
//!   Presence the user's home sends to the watcher's JID arrives as XMPP presence, is kept per
//!   resource and leaves as a NOTIFY with PIDF (mapped through the Lync tables).
//! - **Outbound** (a local user watches a SIP user): one SUBSCRIBE dialog per local watcher
//!   and contact, started by the user's `subscribe` or by the probe the user's home sends at
//!   login, refreshed before it expires while the roster still wants it, ended by
//!   `unsubscribe`. NOTIFYs become `subscribed` (first active state), presence (PIDF mapped
//!   back) and `unsubscribed` (terminated with `rejected` / `noresource`, or a final refusal).

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use herald_federation::availability::{self, Availability, MappingSet, State, System};
use herald_sip::pidf::{Activity, Basic, Presence, CONTENT_TYPE};
use herald_sip::{
    HeaderName, Method, NameAddr, Request, Response, SipUri, SubState, SubscriptionState, Uri, Via,
    MAGIC_COOKIE,
};
use herald_xmpp::{ns, Element, Jid};

use super::edge::Local;

mod sessions;
#[cfg(test)]
mod tests;
mod watchers;
mod watching;

use sessions::ImSession;
pub use sessions::{InDialog, SessionSend, PAGE_MODE_AFTER_REFUSAL, SESSION_IDLE};

/// Shortest subscription accepted (RFC 6665 §4.2.1.1: 423 below it).
pub const MIN_EXPIRES: u32 = 60;
/// Longest subscription granted (longer requests are shortened).
pub const MAX_EXPIRES: u32 = 7200;
/// Duration of a subscription when the SUBSCRIBE has no Expires (RFC 3856 §6.4).
pub const DEFAULT_EXPIRES: u32 = 3600;
/// Duration asked for in our own SUBSCRIBEs.
pub const OUR_EXPIRES: u32 = 3600;
/// An allowed watcher's first NOTIFY waits this long for the probe's answer at most.
pub const FIRST_NOTIFY_WAIT: Duration = Duration::from_secs(2);
/// A failed outbound subscription is tried again after this long.
pub const RETRY: Duration = Duration::from_secs(60);
/// Most subscriptions each way (a flood is refused with 503, never grows without bound).
pub const MAX_SUBSCRIPTIONS: usize = 100_000;

/// What the local user's stored rules say of a watcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relation {
    /// On the block list (the JID or its domain): polite blocking.
    Blocked,
    /// Already receives the user's presence (roster subscription "from" or "both").
    Allowed,
    /// Neither: the user decides.
    Unknown,
}

pub use super::outbound::Hop;

/// What the table needs from the cluster.
pub trait Env {
    /// The local user's rule for `watcher`.
    fn relation(&self, user: &Jid, watcher: &Jid) -> Relation;
    /// Whether the local user still wants `contact`'s presence (roster `to` or a pending ask).
    fn wants(&self, user: &Jid, contact: &Jid) -> bool;
    /// The next hop for a SIP domain (static routes), if any.
    fn route(&self, domain: &str) -> Option<Hop>;
    /// A fresh random token (tags, branches, Call-IDs).
    fn token(&mut self) -> String;
    /// This node's SIP address (TCP port).
    fn local(&self) -> &Local;
    /// This node's SIP over TLS port, when TLS is configured.
    fn tls_port(&self) -> Option<u16>;
    /// The address the local `user` federates as (their email address with email for
    /// federation, EMAIL-2), in our requests' From and presence documents.
    fn address_of(&self, user: &Jid) -> Jid {
        user.bare()
    }
}

/// Which request a response belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ReqKey {
    /// A NOTIFY of the inbound subscription (Call-ID, our tag).
    Notify(String, String),
    /// A SUBSCRIBE of the outbound subscription of (user, contact), with its Call-ID.
    Subscribe(Jid, Jid, String),
    /// A BYE ending an idle IM session (its answer changes nothing).
    Bye,
    /// Our INVITE opening an IM session (Call-ID, our tag).
    Invite(String, String),
    /// The ACK of a 2xx to our INVITE: no answer comes (the link sends it and forgets it).
    Ack,
}

/// Something to do. (Short-lived, a few per event: not worth boxing the request.)
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Send this request to `hop`; its final response comes back to
    /// [`Table::on_response`] with `key`.
    Send {
        request: Request,
        hop: Hop,
        key: ReqKey,
    },
    /// Route this stanza into XMPP (to a local user).
    Xmpp(Element),
    /// Send this MESSAGE (inside an IM session) for the local user's chat message `stanza`,
    /// which is bounced to its sender if the MESSAGE fails.
    Message {
        request: Request,
        hop: Hop,
        stanza: Element,
    },
    /// Send this local user's chat message again, in page mode (its session was refused).
    Resend(Element),
    /// Bounce this local user's chat message: its session could not be opened (no answer).
    Fail { stanza: Element, text: String },
}

/// The SIP side of a dialog (RFC 3261 §12).
#[derive(Debug, Clone)]
struct Dialog {
    call_id: String,
    local_tag: String,
    remote_tag: Option<String>,
    local_uri: String,
    remote_uri: String,
    remote_target: Option<SipUri>,
    /// Route set in the order requests carry it.
    route_set: Vec<String>,
    local_cseq: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Auth {
    Pending,
    Active,
}

#[derive(Debug, Clone)]
struct InSub {
    dialog: Dialog,
    watcher: Jid,
    user: Jid,
    auth: Auth,
    expires_at: Instant,
    /// The first NOTIFY with a state is still owed (waiting for the probe's answer) until then.
    first_notify_by: Option<Instant>,
    /// A NOTIFY of this dialog awaits its final response: the next one waits (RFC 6665
    /// §4.2.2), and only the newest state goes when it may (changes in between coalesce).
    notify_in_flight: bool,
    /// The state changed while a NOTIFY was in flight.
    notify_owed: bool,
}

#[derive(Debug, Clone)]
struct OutSub {
    dialog: Dialog,
    /// The first hop (static route) the dialog's requests go to when no route set is known.
    hop: Hop,
    /// The contact accepted (2xx) or a NOTIFY arrived.
    confirmed: bool,
    /// `subscribed` went to the user.
    told: bool,
    /// The contact's last presence as sent to the user.
    last: Option<Element>,
    refresh_at: Option<Instant>,
    retry_at: Option<Instant>,
    /// A SUBSCRIBE is in flight.
    in_flight: bool,
    /// The dialog ends once the in-flight SUBSCRIBE (Expires: 0) is answered.
    ending: bool,
}

/// Counts for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub inbound_active: usize,
    pub inbound_pending: usize,
    pub outbound: usize,
    pub sessions: usize,
}

/// All SIP presence subscriptions of this node. See the module documentation.
#[derive(Default)]
pub struct Table {
    inbound: HashMap<(String, String), InSub>,
    outbound: HashMap<(Jid, Jid), OutSub>,
    /// Presence the local user's home sent to a watcher: (watcher, user) → resource → state.
    seen: HashMap<(Jid, Jid), BTreeMap<String, (Availability, i8)>>,
    /// IM sessions by (Call-ID, our tag).
    sessions: HashMap<(String, String), ImSession>,
    /// Pairs (local user, SIP user) whose messages use page mode until then (their INVITE was
    /// refused).
    page_mode: HashMap<(Jid, Jid), Instant>,
}

fn tables() -> &'static MappingSet {
    static SET: std::sync::OnceLock<MappingSet> = std::sync::OnceLock::new();
    SET.get_or_init(|| MappingSet::defaults().expect("the built-in mapping tables parse"))
}

/// What a PIDF document from a SIP domain says, in Herald's model (Lync/SIP table applied):
/// closed → Offline; open with busy, on-the-phone, meeting, appointment or presentation →
/// Busy; away, vacation, holiday, sleeping, travel, in-transit, meal → Away; else Available.
/// The note is the status text.
pub fn from_pidf(p: &Presence) -> Availability {
    let note = p.note().map(str::to_string);
    let state = if p.basic() == Basic::Closed {
        State::Offline
    } else if p.activities().iter().any(|a| {
        matches!(
            a,
            Activity::Busy
                | Activity::OnThePhone
                | Activity::Meeting
                | Activity::Appointment
                | Activity::Presentation
        )
    }) {
        State::Busy
    } else if p.activities().iter().any(|a| {
        matches!(
            a,
            Activity::Away
                | Activity::Vacation
                | Activity::Holiday
                | Activity::Sleeping
                | Activity::Travel
                | Activity::InTransit
                | Activity::Meal
                | Activity::PermanentAbsence
        )
    }) {
        State::Away
    } else {
        State::Available
    };
    let seen = Availability {
        state,
        status: note,
        overlay: None,
    };
    tables().map(System::LyncS4b, System::LocalCanonical, &seen)
}

/// The XMPP presence a local watcher gets for `a` (a SIP contact's availability).
pub fn xmpp_presence(from: &Jid, to: &Jid, a: &Availability) -> Element {
    let mut p = availability::xmpp::to_presence(a, availability::xmpp::PeerType::GenericXmpp);
    p.set_attr("from", from.to_string());
    p.set_attr("to", to.to_string());
    p
}

fn sub_presence(from: &Jid, to: &Jid, typ: &str) -> Element {
    Element::new("presence", ns::CLIENT)
        .attr("from", from.to_string())
        .attr("to", to.to_string())
        .attr("type", typ)
}

fn sip_uri_of(j: &Jid) -> SipUri {
    SipUri::new(j.local(), j.domain())
}

/// The SIP URI of the first Contact, if any (a dialog's remote target).
fn first_contact(headers: &herald_sip::Headers) -> Option<SipUri> {
    headers
        .contacts()
        .ok()
        .and_then(|c| c.into_iter().next())
        .and_then(|c| c.uri.sip().cloned())
}

/// The hop a URI names: its host and port, `transport` parameter (`sips:` means TLS).
pub fn hop_of(uri: &SipUri) -> Hop {
    let tls = uri.secure
        || uri
            .transport()
            .is_some_and(|t| t.eq_ignore_ascii_case("tls"));
    Hop {
        host: uri
            .host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase(),
        port: uri.port.unwrap_or(if tls { 5061 } else { 5060 }),
        tls,
    }
}

/// Our Contact for `user`: this node's address for the transport (TLS when `tls_port`).
fn contact(local: &Local, user: &Jid, tls_port: Option<u16>) -> String {
    let mut c = SipUri::new(user.local(), local.host.as_str());
    c.port = Some(tls_port.unwrap_or(local.port));
    c.params.set(
        "transport",
        Some(if tls_port.is_some() { "tls" } else { "tcp" }),
    );
    format!("<{c}>")
}

/// A loose Route naming `hop`.
fn route_to(hop: &Hop) -> String {
    let mut route = SipUri::new(None, hop.host.as_str());
    route.port = Some(hop.port);
    route
        .params
        .set("transport", Some(if hop.tls { "tls" } else { "tcp" }));
    route.params.set("lr", None::<String>);
    format!("<{route}>")
}

impl Dialog {
    /// The hop of the dialog's next request: the first route, else the remote target.
    fn hop(&self) -> Option<Hop> {
        if let Some(first) = self.route_set.first() {
            return NameAddr::parse(first)
                .ok()
                .and_then(|na| na.uri.sip().map(hop_of));
        }
        self.remote_target.as_ref().map(hop_of)
    }

    /// A request inside this dialog (RFC 3261 §12.2.1.1).
    fn request(&mut self, method: Method, env: &mut impl Env, user: &Jid) -> Option<Request> {
        let target = self.remote_target.clone()?;
        let hop = self.hop()?;
        self.local_cseq += 1;
        let local = env.local().clone();
        let tls_port = env.tls_port().filter(|_| hop.tls);
        let via = Via::new(
            if hop.tls { "TLS" } else { "TCP" },
            &local.host,
            Some(tls_port.unwrap_or(local.port)),
            &format!("{MAGIC_COOKIE}{}", env.token()),
        );
        let mut to = format!("<{}>", self.remote_uri);
        if let Some(t) = &self.remote_tag {
            to.push_str(&format!(";tag={t}"));
        }
        let mut req = Request::new(method.clone(), Uri::from(target))
            .header(HeaderName::Via, via.to_string())
            .header(HeaderName::MaxForwards, "70");
        for r in &self.route_set {
            req = req.header(HeaderName::Route, r.clone());
        }
        Some(
            req.header(
                HeaderName::From,
                format!("<{}>;tag={}", self.local_uri, self.local_tag),
            )
            .header(HeaderName::To, to)
            .header(HeaderName::CallId, self.call_id.clone())
            .header(
                HeaderName::CSeq,
                format!("{} {}", self.local_cseq, method.as_str()),
            )
            .header(
                HeaderName::Contact,
                contact(&local, &env.address_of(user), tls_port),
            ),
        )
    }
}

/// The status and reason of a refusal.
type Refusal = (u16, &'static str);

impl Table {
    pub fn new() -> Table {
        Table::default()
    }

    /// Subscriptions now, for metrics and status.
    pub fn counts(&self) -> Counts {
        Counts {
            inbound_active: self
                .inbound
                .values()
                .filter(|s| s.auth == Auth::Active)
                .count(),
            inbound_pending: self
                .inbound
                .values()
                .filter(|s| s.auth == Auth::Pending)
                .count(),
            outbound: self.outbound.len(),
            sessions: self.sessions.len(),
        }
    }

    /// The final response (or a synthesized 408 when none came) to a request we sent.
    pub fn on_response(
        &mut self,
        key: &ReqKey,
        resp: &Response,
        now: Instant,
        env: &mut impl Env,
    ) -> Vec<Action> {
        match key {
            ReqKey::Bye | ReqKey::Ack => Vec::new(),
            ReqKey::Invite(call_id, tag) => {
                self.on_invite_answer((call_id.clone(), tag.clone()), resp, now, env)
            }
            ReqKey::Notify(call_id, tag) => {
                let k = (call_id.clone(), tag.clone());
                if matches!(resp.status, 481 | 404 | 410 | 403 | 603) {
                    // The watcher is gone (RFC 6665 §4.2.2): the subscription ends.
                    self.inbound.remove(&k);
                    return Vec::new();
                }
                let Some(sub) = self.inbound.get_mut(&k) else {
                    return Vec::new();
                };
                sub.notify_in_flight = false;
                if std::mem::take(&mut sub.notify_owed) {
                    return self.notify(&k, None, now, env);
                }
                Vec::new()
            }
            ReqKey::Subscribe(user, contact_jid, call_id) => {
                let pair = (user.clone(), contact_jid.clone());
                let Some(sub) = self.outbound.get_mut(&pair) else {
                    return Vec::new();
                };
                if &sub.dialog.call_id != call_id {
                    return Vec::new();
                }
                sub.in_flight = false;
                if sub.ending {
                    self.outbound.remove(&pair);
                    return Vec::new();
                }
                if resp.is_success() {
                    sub.confirmed = true;
                    if sub.dialog.remote_tag.is_none() {
                        sub.dialog.remote_tag = resp
                            .headers
                            .to()
                            .ok()
                            .and_then(|t| t.tag().map(str::to_string));
                    }
                    if let Some(c) = first_contact(&resp.headers) {
                        sub.dialog.remote_target = Some(c);
                    }
                    if let Ok(rr) = resp.headers.record_routes() {
                        if !rr.is_empty() {
                            // A UAC uses the Record-Route set in reverse (RFC 3261 §12.1.2).
                            sub.dialog.route_set =
                                rr.iter().rev().map(|na| na.to_string()).collect();
                        }
                    }
                    let granted = resp
                        .headers
                        .expires()
                        .ok()
                        .flatten()
                        .unwrap_or(OUR_EXPIRES)
                        .max(MIN_EXPIRES / 2);
                    sub.refresh_at = Some(now + Duration::from_secs(u64::from(granted) * 4 / 5));
                    sub.retry_at = None;
                    return Vec::new();
                }
                match resp.status {
                    423 => {
                        // Ask again with the contact's minimum.
                        sub.retry_at = Some(now);
                        sub.confirmed = false;
                        Vec::new()
                    }
                    481 => {
                        sub.confirmed = false;
                        sub.dialog.remote_tag = None;
                        sub.dialog.route_set.clear();
                        sub.retry_at = Some(now);
                        Vec::new()
                    }
                    403 | 404 | 489 | 603 | 604 => {
                        let mut actions = Vec::new();
                        if sub.told || sub.last.is_some() {
                            actions.push(Action::Xmpp(sub_presence(
                                contact_jid,
                                user,
                                "unavailable",
                            )));
                        }
                        actions.push(Action::Xmpp(sub_presence(
                            contact_jid,
                            user,
                            "unsubscribed",
                        )));
                        self.outbound.remove(&pair);
                        actions
                    }
                    _ => {
                        sub.retry_at = Some(now + RETRY);
                        Vec::new()
                    }
                }
            }
        }
    }

    /// A presence stanza from a local user to a user of a SIP domain (routed here by XMPP).
    pub fn on_xmpp(&mut self, stanza: &Element, now: Instant, env: &mut impl Env) -> Vec<Action> {
        if stanza.name() != "presence" {
            return Vec::new();
        }
        let (Some(from), Some(to)) = (
            stanza.get_attr("from").and_then(|f| Jid::parse(f).ok()),
            stanza.get_attr("to").and_then(|t| Jid::parse(t).ok()),
        ) else {
            return Vec::new();
        };
        if to.local().is_none() {
            return Vec::new();
        }
        let (user, contact_jid) = (from.bare(), to.bare());
        let typ = stanza.get_attr("type").unwrap_or("");
        match typ {
            "subscribe" => self.watch(&user, &contact_jid, now, env),
            "probe" => {
                if let Some(sub) = self.outbound.get(&(user.clone(), contact_jid.clone())) {
                    return sub.last.iter().cloned().map(Action::Xmpp).collect();
                }
                if env.wants(&user, &contact_jid) {
                    self.watch(&user, &contact_jid, now, env)
                } else {
                    Vec::new()
                }
            }
            "unsubscribe" => self.unwatch(&user, &contact_jid, env),
            "subscribed" => {
                let keys = self.inbound_of(&contact_jid, &user);
                let mut actions = Vec::new();
                for k in keys {
                    if let Some(s) = self.inbound.get_mut(&k) {
                        s.auth = Auth::Active;
                    }
                    actions.extend(self.notify(&k, None, now, env));
                }
                actions
            }
            "unsubscribed" => {
                let keys = self.inbound_of(&contact_jid, &user);
                self.seen.remove(&(contact_jid.clone(), user.clone()));
                let mut actions = Vec::new();
                for k in keys {
                    actions.extend(self.notify(&k, Some("rejected"), now, env));
                    self.inbound.remove(&k);
                }
                actions
            }
            "" | "unavailable" => {
                let seen = match typ {
                    "" => availability::xmpp::from_presence_with_priority(stanza).ok(),
                    _ => None,
                };
                self.presence_seen(&from, &contact_jid, typ, seen.as_ref(), now, env)
            }
            _ => Vec::new(),
        }
    }

    /// One availability broadcast (`stanza`: presence of type "" or "unavailable", without
    /// `to`) from the local user `from` to `watchers`, bare JIDs of SIP users: mapped once,
    /// then noted and notified per watcher as [`Table::on_xmpp`] does for each addressed copy.
    pub fn on_xmpp_broadcast(
        &mut self,
        stanza: &Element,
        from: &Jid,
        watchers: &[Jid],
        now: Instant,
        env: &mut impl Env,
    ) -> Vec<Action> {
        let typ = stanza.get_attr("type").unwrap_or("");
        let seen = match typ {
            "" => availability::xmpp::from_presence_with_priority(stanza).ok(),
            "unavailable" => None,
            _ => return Vec::new(),
        };
        let mut actions = Vec::new();
        for w in watchers.iter().filter(|w| w.local().is_some()) {
            actions.extend(self.presence_seen(from, &w.bare(), typ, seen.as_ref(), now, env));
        }
        actions
    }

    /// The local user `from` (a full or bare JID) sent `typ` ("" with the availability it
    /// maps to, or "unavailable") to `contact_jid`: kept per resource, and the active inbound
    /// subscriptions of the pair are notified.
    fn presence_seen(
        &mut self,
        from: &Jid,
        contact_jid: &Jid,
        typ: &str,
        seen: Option<&(Availability, i8)>,
        now: Instant,
        env: &mut impl Env,
    ) -> Vec<Action> {
        let user = from.bare();
        let pair = (contact_jid.clone(), user.clone());
        let resource = from.resource().unwrap_or("").to_string();
        let entry = self.seen.entry(pair).or_default();
        if typ == "unavailable" {
            if resource.is_empty() {
                entry.clear();
            } else {
                entry.remove(&resource);
            }
            // Remember "known offline" so the first NOTIFY need not wait.
        } else if let Some(a) = seen {
            entry.insert(resource, a.clone());
        }
        let keys: Vec<(String, String)> = self
            .inbound_of(contact_jid, &user)
            .into_iter()
            .filter(|k| self.inbound.get(k).is_some_and(|s| s.auth == Auth::Active))
            .collect();
        let mut actions = Vec::new();
        for k in keys {
            actions.extend(self.notify(&k, None, now, env));
        }
        actions
    }

    /// Timers: expired inbound subscriptions end (`timeout`), owed first NOTIFYs go out,
    /// outbound subscriptions are refreshed or retried while the user still wants them.
    pub fn tick(&mut self, now: Instant, env: &mut impl Env) -> Vec<Action> {
        let mut actions = Vec::new();
        let expired: Vec<(String, String)> = self
            .inbound
            .iter()
            .filter(|(_, s)| s.expires_at <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for k in expired {
            actions.extend(self.notify(&k, Some("timeout"), now, env));
            self.inbound.remove(&k);
        }
        let owed: Vec<(String, String)> = self
            .inbound
            .iter()
            .filter(|(_, s)| s.first_notify_by.is_some_and(|t| t <= now))
            .map(|(k, _)| k.clone())
            .collect();
        for k in owed {
            actions.extend(self.notify(&k, None, now, env));
        }
        self.page_mode.retain(|_, until| *until > now);
        let idle: Vec<(String, String)> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.inviting.is_none() && now.duration_since(s.last) >= SESSION_IDLE)
            .map(|(k, _)| k.clone())
            .collect();
        for k in idle {
            if let Some(session) = self.sessions.remove(&k) {
                actions.extend(Table::bye(session, env));
            }
        }
        let due: Vec<(Jid, Jid)> = self
            .outbound
            .iter()
            .filter(|(_, s)| {
                !s.in_flight
                    && (s.refresh_at.is_some_and(|t| t <= now)
                        || s.retry_at.is_some_and(|t| t <= now))
            })
            .map(|(k, _)| k.clone())
            .collect();
        for pair in due {
            if env.wants(&pair.0, &pair.1) {
                actions.extend(self.subscribe(&pair, OUR_EXPIRES, env));
            } else {
                actions.extend(self.unwatch(&pair.0, &pair.1, env));
            }
        }
        actions
    }

    /// Shutdown or loss of the routing role: every inbound subscription ends with
    /// `deactivated` (the watcher subscribes again at once, reaching the next routing node).
    pub fn deactivate_all(&mut self, now: Instant, env: &mut impl Env) -> Vec<Action> {
        let keys: Vec<(String, String)> = self.inbound.keys().cloned().collect();
        let mut actions = Vec::new();
        for k in keys {
            actions.extend(self.notify(&k, Some("deactivated"), now, env));
        }
        let sessions: Vec<ImSession> = self.sessions.drain().map(|(_, s)| s).collect();
        for mut session in sessions {
            match session.inviting.take() {
                // Not confirmed yet: no BYE; its waiting messages go in page mode.
                Some(waiting) => {
                    self.page_mode.insert(
                        (session.user.clone(), session.remote.clone()),
                        now + PAGE_MODE_AFTER_REFUSAL,
                    );
                    actions.extend(waiting.into_iter().map(Action::Resend));
                }
                None => actions.extend(Table::bye(session, env)),
            }
        }
        self.inbound.clear();
        self.outbound.clear();
        self.seen.clear();
        actions
    }
}
