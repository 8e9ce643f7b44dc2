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

/// An IM session (session mode: INVITE, then MESSAGEs inside the dialog) between a SIP user
/// and a local user.
#[derive(Debug, Clone)]
struct ImSession {
    dialog: Dialog,
    remote: Jid,
    user: Jid,
    last: Instant,
}

/// An IM session idle this long is ended with a BYE.
pub const SESSION_IDLE: Duration = Duration::from_secs(600);

/// What a request inside a session becomes.
#[derive(Debug)]
pub enum InDialog {
    /// Answer with this.
    Respond(Response),
    /// Deliver the MESSAGE from `remote` to the local `user` (the caller builds the stanza and
    /// answers 200, or the refusal the body gets).
    Deliver { remote: Jid, user: Jid },
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
            .header(HeaderName::Contact, contact(&local, user, tls_port)),
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

    /// An admitted INVITE from `remote` to the local `user`: an IM session (session mode, the
    /// SDP offers `m=message ... sip`) is accepted with 200; a blocked sender gets 480 as if the
    /// user were offline; other media 488.
    pub fn on_invite(
        &mut self,
        req: &Request,
        remote: &Jid,
        user: &Jid,
        tls: bool,
        now: Instant,
        env: &mut impl Env,
    ) -> Response {
        let tls_port = env.tls_port().filter(|_| tls);
        let refuse = |status: u16, reason: &str| Response::for_request(req, status, Some(reason));
        let sdp = String::from_utf8_lossy(&req.body);
        let is_im = req
            .headers
            .content_type()
            .ok()
            .flatten()
            .is_some_and(|ct| ct.is("application/sdp"))
            && sdp.lines().any(|l| {
                let l = l.trim().to_ascii_lowercase();
                l.starts_with("m=message") && l.contains(" sip ")
            });
        if !is_im {
            return refuse(488, "Not Acceptable Here: IM Sessions Only")
                .header(HeaderName::Accept, "application/sdp");
        }
        if env.relation(user, remote) == Relation::Blocked {
            return refuse(480, "Temporarily Unavailable");
        }
        if self.sessions.len() >= MAX_SUBSCRIPTIONS {
            return refuse(503, "Too Many Sessions");
        }
        let (Ok(call_id), Ok(from), Ok(to)) =
            (req.headers.call_id(), req.headers.from(), req.headers.to())
        else {
            return refuse(400, "Invalid Dialog Identifiers");
        };
        let Some(target) = first_contact(&req.headers) else {
            return refuse(400, "Missing Or Unusable Contact");
        };
        let Some(remote_tag) = from.tag().map(str::to_string) else {
            return refuse(400, "Missing From Tag");
        };
        let local_tag = env.token();
        let route_set: Vec<String> = req
            .headers
            .get_all(&HeaderName::RecordRoute)
            .map(str::to_string)
            .collect();
        let local = env.local().clone();
        let mut resp = Response::for_request(req, 200, Some("OK"))
            .header(HeaderName::Contact, contact(&local, user, tls_port));
        let mut na = to.clone();
        na.set_tag(&local_tag);
        resp.headers.set(HeaderName::To, na.to_string());
        for rr in &route_set {
            resp.headers.push(HeaderName::RecordRoute, rr.clone());
        }
        let answer = format!(
            "v=0\r\no=- 0 0 IN IP4 {host}\r\ns=session\r\nc=IN IP4 {host}\r\nt=0 0\r\n\
             m=message {port} sip null\r\na=accept-types:text/plain\r\n",
            host = local.host,
            port = tls_port.unwrap_or(local.port)
        );
        resp.headers.set(HeaderName::ContentType, "application/sdp");
        resp.body = answer.into_bytes();
        let route_set = req
            .headers
            .record_routes()
            .map(|v| v.iter().map(|na| na.to_string()).collect())
            .unwrap_or_default();
        self.sessions.insert(
            (call_id.to_string(), local_tag.clone()),
            ImSession {
                dialog: Dialog {
                    call_id: call_id.to_string(),
                    local_tag,
                    remote_tag: Some(remote_tag),
                    local_uri: to.uri.to_string(),
                    remote_uri: from.uri.to_string(),
                    remote_target: Some(target),
                    route_set,
                    local_cseq: 0,
                },
                remote: remote.clone(),
                user: user.clone(),
                last: now,
            },
        );
        resp
    }

    /// A MESSAGE, BYE or re-INVITE inside an IM session.
    pub fn on_in_dialog(&mut self, req: &Request, now: Instant, env: &mut impl Env) -> InDialog {
        let refuse = |status: u16, reason: &str| {
            InDialog::Respond(Response::for_request(req, status, Some(reason)))
        };
        let (Ok(call_id), Ok(to)) = (req.headers.call_id(), req.headers.to()) else {
            return refuse(400, "Invalid Dialog Identifiers");
        };
        let key = (
            call_id.to_string(),
            to.tag().unwrap_or_default().to_string(),
        );
        let Some(session) = self.sessions.get_mut(&key) else {
            return refuse(481, "Call/Transaction Does Not Exist");
        };
        session.last = now;
        let (remote, user) = (session.remote.clone(), session.user.clone());
        match req.method {
            Method::Bye => {
                self.sessions.remove(&key);
                InDialog::Respond(Response::for_request(req, 200, Some("OK")))
            }
            Method::Message if env.relation(&user, &remote) == Relation::Blocked => {
                refuse(480, "Temporarily Unavailable")
            }
            Method::Message => InDialog::Deliver { remote, user },
            // A session refresh or media change: IM sessions have nothing to renegotiate.
            _ => refuse(488, "Not Acceptable Here"),
        }
    }

    /// A chat message from the local `user` to `remote` goes inside their open IM session
    /// (session mode both ways), if there is one: the MESSAGE to send.
    pub fn session_message(
        &mut self,
        user: &Jid,
        remote: &Jid,
        body: &str,
        now: Instant,
        env: &mut impl Env,
    ) -> Option<(Request, Hop)> {
        let session = self
            .sessions
            .values_mut()
            .filter(|s| &s.user == user && &s.remote == remote)
            .max_by_key(|s| s.last)?;
        session.last = now;
        let hop = session.dialog.hop()?;
        let req = session
            .dialog
            .request(Method::Message, env, user)?
            .with_body("text/plain;charset=UTF-8", body.as_bytes().to_vec());
        Some((req, hop))
    }

    /// An admitted SUBSCRIBE (the edge checked domain, ACL and that `user` is a local user;
    /// `watcher` is the From AOR). Returns the response and what follows it.
    pub fn on_subscribe(
        &mut self,
        req: &Request,
        watcher: &Jid,
        user: &Jid,
        tls: bool,
        now: Instant,
        env: &mut impl Env,
    ) -> (Response, Vec<Action>) {
        let tls_port = env.tls_port().filter(|_| tls);
        let refuse = |(status, reason): Refusal| {
            (Response::for_request(req, status, Some(reason)), Vec::new())
        };
        match req.headers.event() {
            Ok(Some(e)) if e.is("presence") => {}
            Ok(_) => {
                let r = Response::for_request(req, 489, Some("Bad Event"))
                    .header(HeaderName::AllowEvents, "presence");
                return (r, Vec::new());
            }
            Err(_) => return refuse((400, "Invalid Event Header Field")),
        }
        let accept: Vec<&str> = req.headers.values(&HeaderName::Accept).collect();
        if !accept.is_empty()
            && !accept.iter().any(|a| {
                let a = a.to_ascii_lowercase();
                a.contains("application/pidf+xml")
                    || a.contains("*/*")
                    || a.contains("application/*")
            })
        {
            let r = Response::for_request(req, 406, Some("Not Acceptable"))
                .header(HeaderName::Accept, CONTENT_TYPE);
            return (r, Vec::new());
        }
        let expires = match req.headers.expires() {
            Ok(e) => e.unwrap_or(DEFAULT_EXPIRES),
            Err(_) => return refuse((400, "Invalid Expires Header Field")),
        };
        if expires != 0 && expires < MIN_EXPIRES {
            let r = Response::for_request(req, 423, Some("Interval Too Brief"))
                .header(HeaderName::MinExpires, MIN_EXPIRES.to_string());
            return (r, Vec::new());
        }
        let expires = expires.min(MAX_EXPIRES);
        let Ok(call_id) = req.headers.call_id().map(str::to_string) else {
            return refuse((400, "Missing Call-ID"));
        };
        let (Ok(from), Ok(to)) = (req.headers.from(), req.headers.to()) else {
            return refuse((400, "Invalid From Or To Header Field"));
        };
        let local = env.local().clone();
        if let Some(tag) = to.tag().map(str::to_string) {
            // A refresh or an unsubscribe inside an existing dialog.
            let key = (call_id, tag);
            let Some(sub) = self.inbound.get_mut(&key) else {
                return refuse((481, "Subscription Does Not Exist"));
            };
            let resp = Response::for_request(req, 200, Some("OK"))
                .header(HeaderName::Contact, contact(&local, user, tls_port))
                .header(HeaderName::Expires, expires.to_string());
            if expires == 0 {
                let actions = self.notify(&key, Some("timeout"), now, env);
                self.inbound.remove(&key);
                return (resp, actions);
            }
            sub.expires_at = now + Duration::from_secs(expires.into());
            let actions = self.notify(&key, None, now, env);
            return (resp, actions);
        }
        if self.inbound.len() >= MAX_SUBSCRIPTIONS {
            return refuse((503, "Too Many Subscriptions"));
        }
        let Some(target) = first_contact(&req.headers) else {
            return refuse((400, "Missing Or Unusable Contact"));
        };
        let Some(remote_tag) = from.tag().map(str::to_string) else {
            return refuse((400, "Missing From Tag"));
        };
        let local_tag = env.token();
        let route_set: Vec<String> = req
            .headers
            .record_routes()
            .map(|v| v.iter().map(|na| na.to_string()).collect())
            .unwrap_or_default();
        let relation = env.relation(user, watcher);
        let auth = match relation {
            Relation::Unknown => Auth::Pending,
            Relation::Blocked | Relation::Allowed => Auth::Active,
        };
        let key = (call_id.clone(), local_tag.clone());
        let sub = InSub {
            dialog: Dialog {
                call_id,
                local_tag: local_tag.clone(),
                remote_tag: Some(remote_tag),
                local_uri: to.uri.to_string(),
                remote_uri: from.uri.to_string(),
                remote_target: Some(target),
                route_set,
                local_cseq: 0,
            },
            watcher: watcher.clone(),
            user: user.clone(),
            auth,
            expires_at: now + Duration::from_secs(expires.into()),
            first_notify_by: None,
            notify_in_flight: false,
            notify_owed: false,
        };
        self.inbound.insert(key.clone(), sub);
        let (status, reason) = match auth {
            Auth::Active => (200, "OK"),
            Auth::Pending => (202, "Accepted"),
        };
        let mut resp = Response::for_request(req, status, Some(reason))
            .header(HeaderName::Contact, contact(&local, user, tls_port))
            .header(HeaderName::Expires, expires.to_string());
        let mut na = to.clone();
        na.set_tag(&local_tag);
        resp.headers.set(HeaderName::To, na.to_string());
        // RFC 3261 §12.1.1: the dialog-creating response carries the Record-Route set back.
        for rr in req.headers.get_all(&HeaderName::RecordRoute) {
            resp.headers.push(HeaderName::RecordRoute, rr.to_string());
        }
        let mut actions = Vec::new();
        if expires == 0 {
            // A fetch: one NOTIFY with the state now, then the subscription is gone.
            actions.extend(self.notify(&key, Some("timeout"), now, env));
            self.inbound.remove(&key);
            return (resp, actions);
        }
        match relation {
            Relation::Blocked => actions.extend(self.notify(&key, None, now, env)),
            Relation::Allowed => {
                // The current presence comes from the user's home; the first NOTIFY waits
                // for it (bounded), unless it is already known.
                if self.seen.contains_key(&(watcher.clone(), user.clone())) {
                    actions.extend(self.notify(&key, None, now, env));
                } else {
                    if let Some(s) = self.inbound.get_mut(&key) {
                        s.first_notify_by = Some(now + FIRST_NOTIFY_WAIT);
                    }
                    actions.push(Action::Xmpp(sub_presence(watcher, user, "probe")));
                }
            }
            Relation::Unknown => {
                actions.extend(self.notify(&key, None, now, env));
                actions.push(Action::Xmpp(sub_presence(watcher, user, "subscribe")));
            }
        }
        (resp, actions)
    }

    /// The NOTIFY of an inbound subscription with its state now; `terminated` ends it with that
    /// reason. Blocked watchers see the user offline, pending ones get no document.
    fn notify(
        &mut self,
        key: &(String, String),
        terminated: Option<&str>,
        now: Instant,
        env: &mut impl Env,
    ) -> Vec<Action> {
        let Some(sub) = self.inbound.get(key) else {
            return Vec::new();
        };
        let (watcher, user, auth, expires_at) = (
            sub.watcher.clone(),
            sub.user.clone(),
            sub.auth,
            sub.expires_at,
        );
        let blocked = env.relation(&user, &watcher) == Relation::Blocked;
        let shown = if blocked {
            Availability::offline()
        } else {
            let sessions: Vec<(Availability, i8)> = self
                .seen
                .get(&(watcher.clone(), user.clone()))
                .map(|m| m.values().cloned().collect())
                .unwrap_or_default();
            availability::aggregate(&sessions)
        };
        let Some(sub) = self.inbound.get_mut(key) else {
            return Vec::new();
        };
        sub.first_notify_by = None;
        if terminated.is_none() && sub.notify_in_flight {
            sub.notify_owed = true;
            return Vec::new();
        }
        sub.notify_in_flight = terminated.is_none();
        sub.notify_owed = false;
        let Some(hop) = sub.dialog.hop() else {
            return Vec::new();
        };
        let Some(mut req) = sub.dialog.request(Method::Notify, env, &user) else {
            return Vec::new();
        };
        // What is left of the subscription (never 0 while it lasts).
        let left = u32::try_from(expires_at.saturating_duration_since(now).as_secs())
            .unwrap_or(MAX_EXPIRES)
            .max(1);
        let state = match (terminated, auth) {
            (Some(reason), _) => SubscriptionState::new(SubState::Terminated, None, Some(reason)),
            (None, Auth::Active) => SubscriptionState::new(SubState::Active, Some(left), None),
            (None, Auth::Pending) => SubscriptionState::new(SubState::Pending, Some(left), None),
        };
        req = req
            .header(HeaderName::Event, "presence")
            .header(HeaderName::SubscriptionState, state.to_string());
        if auth == Auth::Active {
            let entity = format!("sip:{user}");
            let doc = super::presence::pidf(&entity, &shown);
            req = req.with_body(CONTENT_TYPE, doc.to_xml().into_bytes());
        }
        vec![Action::Send {
            request: req,
            hop,
            key: ReqKey::Notify(key.0.clone(), key.1.clone()),
        }]
    }

    /// An admitted NOTIFY: for one of our outbound subscriptions, or 481.
    pub fn on_notify(
        &mut self,
        req: &Request,
        tls: bool,
        now: Instant,
        env: &mut impl Env,
    ) -> (Response, Vec<Action>) {
        let tls_port = env.tls_port().filter(|_| tls);
        let refuse = |status: u16, reason: &str| {
            (Response::for_request(req, status, Some(reason)), Vec::new())
        };
        match req.headers.event() {
            Ok(Some(e)) if e.is("presence") => {}
            Ok(_) => return refuse(489, "Bad Event"),
            Err(_) => return refuse(400, "Invalid Event Header Field"),
        }
        let state = match req.headers.subscription_state() {
            Ok(Some(s)) => s,
            _ => return refuse(400, "Missing Or Invalid Subscription-State"),
        };
        let (Ok(call_id), Ok(to), Ok(from)) =
            (req.headers.call_id(), req.headers.to(), req.headers.from())
        else {
            return refuse(400, "Invalid Dialog Identifiers");
        };
        let Some(pair) = self
            .outbound
            .iter()
            .find(|(_, s)| {
                s.dialog.call_id == call_id && to.tag() == Some(s.dialog.local_tag.as_str())
            })
            .map(|(k, _)| k.clone())
        else {
            return refuse(481, "Subscription Does Not Exist");
        };
        let doc = if req.body.is_empty() {
            None
        } else {
            match req.headers.content_type() {
                Ok(Some(ct)) if ct.is(CONTENT_TYPE) => match Presence::parse(&req.body) {
                    Ok(p) => Some(p),
                    Err(_) => return refuse(400, "Malformed PIDF Document"),
                },
                _ => {
                    return (
                        Response::for_request(req, 415, Some("Unsupported Media Type"))
                            .header(HeaderName::Accept, CONTENT_TYPE),
                        Vec::new(),
                    )
                }
            }
        };
        let (user, contact_jid) = pair.clone();
        let local = env.local().clone();
        let resp = Response::for_request(req, 200, Some("OK"))
            .header(HeaderName::Contact, contact(&local, &user, tls_port));
        let Some(sub) = self.outbound.get_mut(&pair) else {
            return refuse(481, "Subscription Does Not Exist");
        };
        // The NOTIFY may come before the 2xx: it establishes the dialog too.
        if sub.dialog.remote_tag.is_none() {
            sub.dialog.remote_tag = from.tag().map(str::to_string);
        }
        if let Some(c) = first_contact(&req.headers) {
            sub.dialog.remote_target = Some(c);
        }
        if !sub.confirmed && sub.dialog.route_set.is_empty() {
            if let Ok(rr) = req.headers.record_routes() {
                sub.dialog.route_set = rr.iter().map(|na| na.to_string()).collect();
            }
        }
        sub.confirmed = true;
        let mut actions = Vec::new();
        match state.state {
            SubState::Active => {
                if !sub.told {
                    sub.told = true;
                    actions.push(Action::Xmpp(sub_presence(
                        &contact_jid,
                        &user,
                        "subscribed",
                    )));
                }
                if let Some(e) = state.expires() {
                    let e = e.max(MIN_EXPIRES / 2);
                    let at = now + Duration::from_secs(u64::from(e) * 4 / 5);
                    if sub.refresh_at.is_none_or(|r| at < r) {
                        sub.refresh_at = Some(at);
                    }
                }
                if let Some(doc) = doc {
                    let p = xmpp_presence(&contact_jid, &user, &from_pidf(&doc));
                    sub.last = Some(p.clone());
                    actions.push(Action::Xmpp(p));
                }
            }
            SubState::Pending | SubState::Other(_) => {}
            SubState::Terminated => {
                let reason = state.reason().unwrap_or("").to_ascii_lowercase();
                if sub.last.is_some() || sub.told {
                    actions.push(Action::Xmpp(sub_presence(
                        &contact_jid,
                        &user,
                        "unavailable",
                    )));
                }
                match reason.as_str() {
                    "rejected" | "noresource" => {
                        actions.push(Action::Xmpp(sub_presence(
                            &contact_jid,
                            &user,
                            "unsubscribed",
                        )));
                        self.outbound.remove(&pair);
                    }
                    _ => {
                        // deactivated / probation / timeout / giveup: subscribe again (at
                        // once for deactivated, else after retry-after or the retry delay).
                        let wait = match reason.as_str() {
                            "deactivated" => Duration::ZERO,
                            _ => state
                                .retry_after()
                                .map(|s| Duration::from_secs(s.into()))
                                .unwrap_or(RETRY),
                        };
                        sub.last = None;
                        sub.confirmed = false;
                        sub.refresh_at = None;
                        sub.retry_at = Some(now + wait);
                        sub.dialog.remote_tag = None;
                        sub.dialog.route_set.clear();
                    }
                }
            }
        }
        (resp, actions)
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
            ReqKey::Bye => Vec::new(),
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
                } else if let Ok(a) = availability::xmpp::from_presence_with_priority(stanza) {
                    entry.insert(resource, a);
                }
                let keys: Vec<(String, String)> = self
                    .inbound_of(&contact_jid, &user)
                    .into_iter()
                    .filter(|k| self.inbound.get(k).is_some_and(|s| s.auth == Auth::Active))
                    .collect();
                let mut actions = Vec::new();
                for k in keys {
                    actions.extend(self.notify(&k, None, now, env));
                }
                actions
            }
            _ => Vec::new(),
        }
    }

    fn inbound_of(&self, watcher: &Jid, user: &Jid) -> Vec<(String, String)> {
        self.inbound
            .iter()
            .filter(|(_, s)| &s.watcher == watcher && &s.user == user)
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Starts (or reports) the outbound subscription of `user` to `contact`.
    fn watch(
        &mut self,
        user: &Jid,
        contact_jid: &Jid,
        now: Instant,
        env: &mut impl Env,
    ) -> Vec<Action> {
        let pair = (user.clone(), contact_jid.clone());
        if let Some(sub) = self.outbound.get(&pair) {
            let mut actions = Vec::new();
            if sub.told {
                actions.push(Action::Xmpp(sub_presence(contact_jid, user, "subscribed")));
            }
            actions.extend(sub.last.iter().cloned().map(Action::Xmpp));
            return actions;
        }
        if self.outbound.len() >= MAX_SUBSCRIPTIONS {
            return Vec::new();
        }
        let Some(hop) = env.route(contact_jid.domain()) else {
            return Vec::new();
        };
        let sub = OutSub {
            dialog: Dialog {
                call_id: format!("{}@{}", env.token(), env.local().host),
                local_tag: env.token(),
                remote_tag: None,
                local_uri: sip_uri_of(user).to_string(),
                remote_uri: sip_uri_of(contact_jid).to_string(),
                remote_target: Some(sip_uri_of(contact_jid)),
                route_set: vec![route_to(&hop)],
                local_cseq: 0,
            },
            hop,
            confirmed: false,
            told: false,
            last: None,
            refresh_at: None,
            retry_at: None,
            in_flight: false,
            ending: false,
        };
        self.outbound.insert(pair.clone(), sub);
        let _ = now;
        self.subscribe(&pair, OUR_EXPIRES, env)
            .into_iter()
            .collect()
    }

    /// Ends the outbound subscription of `user` to `contact` (SUBSCRIBE with Expires: 0).
    fn unwatch(&mut self, user: &Jid, contact_jid: &Jid, env: &mut impl Env) -> Vec<Action> {
        let pair = (user.clone(), contact_jid.clone());
        let Some(sub) = self.outbound.get_mut(&pair) else {
            return Vec::new();
        };
        if !sub.confirmed {
            self.outbound.remove(&pair);
            return Vec::new();
        }
        sub.ending = true;
        self.subscribe(&pair, 0, env).into_iter().collect()
    }

    /// A SUBSCRIBE for the outbound subscription `pair` (initial or in-dialog).
    fn subscribe(&mut self, pair: &(Jid, Jid), expires: u32, env: &mut impl Env) -> Option<Action> {
        let sub = self.outbound.get_mut(pair)?;
        let hop = if sub.confirmed {
            sub.dialog.hop().unwrap_or_else(|| sub.hop.clone())
        } else {
            sub.hop.clone()
        };
        if !sub.confirmed {
            // A new dialog: fresh tag and Call-ID, the static route as the route set.
            sub.dialog.remote_tag = None;
            sub.dialog.remote_target = Some(sip_uri_of(&pair.1));
            sub.dialog.route_set = vec![route_to(&sub.hop)];
        }
        let req = sub
            .dialog
            .request(Method::Subscribe, env, &pair.0)?
            .header(HeaderName::Event, "presence")
            .header(HeaderName::Accept, CONTENT_TYPE)
            .header(HeaderName::Expires, expires.to_string());
        sub.in_flight = true;
        sub.retry_at = None;
        sub.refresh_at = None;
        Some(Action::Send {
            request: req,
            hop,
            key: ReqKey::Subscribe(pair.0.clone(), pair.1.clone(), sub.dialog.call_id.clone()),
        })
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
        let idle: Vec<(String, String)> = self
            .sessions
            .iter()
            .filter(|(_, s)| now.duration_since(s.last) >= SESSION_IDLE)
            .map(|(k, _)| k.clone())
            .collect();
        for k in idle {
            if let Some(mut s) = self.sessions.remove(&k) {
                let user = s.user.clone();
                if let (Some(hop), Some(bye)) =
                    (s.dialog.hop(), s.dialog.request(Method::Bye, env, &user))
                {
                    actions.push(Action::Send {
                        request: bye,
                        hop,
                        key: ReqKey::Bye,
                    });
                }
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
        for mut s in sessions {
            let user = s.user.clone();
            if let (Some(hop), Some(bye)) =
                (s.dialog.hop(), s.dialog.request(Method::Bye, env, &user))
            {
                actions.push(Action::Send {
                    request: bye,
                    hop,
                    key: ReqKey::Bye,
                });
            }
        }
        self.inbound.clear();
        self.outbound.clear();
        self.seen.clear();
        actions
    }
}
