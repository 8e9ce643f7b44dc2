//! IM sessions (session mode, IM-1..IM-3): one INVITE dialog per pair of a local user and a
//! SIP user, whoever opened it, carrying MESSAGEs both ways; BYE, idleness or shutdown end it.
//!
//! - Inbound: an INVITE offering `m=message ... sip` is answered 200; its MESSAGEs reach the
//!   local user, whose replies go inside it.
//! - Outbound: a local user's chat message to a SIP user with no session opens one (INVITE
//!   with an `m=message` offer; the message waits, with any that follow, for the answer); on
//!   2xx the ACK and the waiting messages go inside the dialog, later messages too. On a
//!   non-2xx final answer (or none within Timer B) the waiting messages fall back to page mode
//!   (RFC 3428 MESSAGE outside a dialog, whose own failure bounces to the sender as an XMPP
//!   error), and so does the pair for [`PAGE_MODE_AFTER_REFUSAL`]: a peer that refuses IM
//!   sessions (488, 405, 415...) may still take page mode, and one that refuses the user (404,
//!   480, 403) says so again to the MESSAGE, whose answer then reaches the sender.

use super::*;

/// An IM session idle this long is ended with a BYE.
pub const SESSION_IDLE: Duration = Duration::from_secs(600);
/// After a refused INVITE, a pair's messages use page mode for this long.
pub const PAGE_MODE_AFTER_REFUSAL: Duration = Duration::from_secs(600);
/// Most messages waiting for one session's INVITE to be answered (more go in page mode).
pub const MAX_WAITING: usize = 100;

/// An IM session (session mode: INVITE, then MESSAGEs inside the dialog) between a SIP user
/// and a local user.
#[derive(Debug, Clone)]
pub(super) struct ImSession {
    pub(super) dialog: Dialog,
    pub(super) remote: Jid,
    pub(super) user: Jid,
    pub(super) last: Instant,
    /// Our INVITE awaits its final answer (outbound session): the messages waiting for it.
    pub(super) inviting: Option<Vec<Element>>,
}

/// Where a local user's chat message to a SIP user goes.
#[derive(Debug)]
pub enum SessionSend {
    /// Inside the pair's session: this MESSAGE to this hop.
    Message(Request, Hop),
    /// Held until the pair's INVITE is answered; these actions (the INVITE) go first.
    Held(Vec<Action>),
    /// Page mode (no route for a session, or the peer refused one lately).
    PageMode,
}

/// What a request inside a session becomes.
#[derive(Debug)]
pub enum InDialog {
    /// Answer with this.
    Respond(Response),
    /// Deliver the MESSAGE from `remote` to the local `user` (the caller builds the stanza and
    /// answers 200, or the refusal the body gets).
    Deliver { remote: Jid, user: Jid },
}

impl Table {
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
        let mut resp = Response::for_request(req, 200, Some("OK")).header(
            HeaderName::Contact,
            contact(&local, &env.address_of(user), tls_port),
        );
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
                inviting: None,
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

    /// A chat message (`stanza`, text `body`) from the local `user` to `remote`: inside their
    /// session if one is open (whoever opened it), held if ours is being opened, else a new
    /// session is opened (the INVITE is in the answer) — or page mode (see the module doc).
    pub fn session_message(
        &mut self,
        stanza: &Element,
        body: &str,
        now: Instant,
        env: &mut impl Env,
    ) -> SessionSend {
        let jid = |a: &str| stanza.get_attr(a).and_then(|v| Jid::parse(v).ok());
        let (Some(user), Some(remote)) =
            (jid("from").map(|j| j.bare()), jid("to").map(|j| j.bare()))
        else {
            return SessionSend::PageMode;
        };
        let pair = (user.clone(), remote.clone());
        if self.page_mode.get(&pair).is_some_and(|until| *until > now) {
            return SessionSend::PageMode;
        }
        self.page_mode.remove(&pair);
        if let Some(session) = self
            .sessions
            .values_mut()
            .filter(|s| s.user == user && s.remote == remote)
            .max_by_key(|s| (s.inviting.is_none(), s.last))
        {
            if let Some(waiting) = session.inviting.as_mut() {
                if waiting.len() >= MAX_WAITING {
                    return SessionSend::PageMode;
                }
                waiting.push(stanza.clone());
                return SessionSend::Held(Vec::new());
            }
            session.last = now;
            let Some(hop) = session.dialog.hop() else {
                return SessionSend::PageMode;
            };
            return match session.dialog.request(Method::Message, env, &user) {
                Some(req) => SessionSend::Message(
                    req.with_body("text/plain;charset=UTF-8", body.as_bytes().to_vec()),
                    hop,
                ),
                None => SessionSend::PageMode,
            };
        }
        if self.sessions.len() >= MAX_SUBSCRIPTIONS {
            return SessionSend::PageMode;
        }
        let Some(hop) = env.route(remote.domain()) else {
            return SessionSend::PageMode;
        };
        let local = env.local().clone();
        let tls_port = env.tls_port().filter(|_| hop.tls);
        let mut dialog = Dialog {
            call_id: format!("{}@{}", env.token(), local.host),
            local_tag: env.token(),
            remote_tag: None,
            local_uri: sip_uri_of(&env.address_of(&user)).to_string(),
            remote_uri: sip_uri_of(&remote).to_string(),
            remote_target: Some(sip_uri_of(&remote)),
            route_set: vec![route_to(&hop)],
            local_cseq: 0,
        };
        let offer = format!(
            "v=0\r\no=- 0 0 IN IP4 {host}\r\ns=session\r\nc=IN IP4 {host}\r\nt=0 0\r\n\
             m=message {port} sip null\r\na=accept-types:text/plain\r\n",
            host = local.host,
            port = tls_port.unwrap_or(local.port)
        );
        let Some(invite) = dialog.request(Method::Invite, env, &user) else {
            return SessionSend::PageMode;
        };
        let invite = invite.with_body("application/sdp", offer.into_bytes());
        let key = ReqKey::Invite(dialog.call_id.clone(), dialog.local_tag.clone());
        self.sessions.insert(
            (dialog.call_id.clone(), dialog.local_tag.clone()),
            ImSession {
                dialog,
                remote,
                user,
                last: now,
                inviting: Some(vec![stanza.clone()]),
            },
        );
        SessionSend::Held(vec![Action::Send {
            request: invite,
            hop,
            key,
        }])
    }

    /// The final answer to our INVITE: on 2xx the dialog is confirmed (remote tag, target,
    /// route set), the ACK and the waiting messages go inside it; otherwise the waiting
    /// messages go in page mode, as the pair's next ones will for a while.
    pub(super) fn on_invite_answer(
        &mut self,
        key: (String, String),
        resp: &Response,
        now: Instant,
        env: &mut impl Env,
    ) -> Vec<Action> {
        let Some(session) = self.sessions.get_mut(&key) else {
            return Vec::new();
        };
        let Some(waiting) = session.inviting.take() else {
            // A 2xx retransmission for a confirmed session: nothing new.
            return Vec::new();
        };
        if !resp.is_success() {
            let session = self.sessions.remove(&key).expect("present");
            // Every answer from a UA or proxy carries a To tag (RFC 3261 §8.2.6.2); one without
            // was made up by our link (connection failed, closed, or no answer within Timer B):
            // the peer cannot be reached, and page mode would go the same way.
            let answered = resp.headers.to().is_ok_and(|t| t.tag().is_some());
            if !answered {
                let text = format!("the SIP peer cannot be reached ({})", resp.reason);
                return waiting
                    .into_iter()
                    .map(|stanza| Action::Fail {
                        stanza,
                        text: text.clone(),
                    })
                    .collect();
            }
            self.page_mode.insert(
                (session.user.clone(), session.remote.clone()),
                now + PAGE_MODE_AFTER_REFUSAL,
            );
            return waiting.into_iter().map(Action::Resend).collect();
        }
        let d = &mut session.dialog;
        d.remote_tag = resp
            .headers
            .to()
            .ok()
            .and_then(|t| t.tag().map(str::to_string));
        if let Some(c) = first_contact(&resp.headers) {
            d.remote_target = Some(c);
        }
        if let Ok(rr) = resp.headers.record_routes() {
            if !rr.is_empty() {
                // A UAC uses the Record-Route set in reverse (RFC 3261 §12.1.2).
                d.route_set = rr.iter().rev().map(|na| na.to_string()).collect();
            }
        }
        session.last = now;
        let user = session.user.clone();
        let mut actions = Vec::new();
        // The ACK of a 2xx is its own transaction with the INVITE's CSeq number (§13.2.2.4).
        session.dialog.local_cseq -= 1;
        if let (Some(ack), Some(hop)) = (
            session.dialog.request(Method::Ack, env, &user),
            session.dialog.hop(),
        ) {
            actions.push(Action::Send {
                request: ack,
                hop,
                key: ReqKey::Ack,
            });
        }
        for stanza in waiting {
            let body = herald_xmpp::stanza::Message::view(&stanza)
                .and_then(|m| m.body())
                .unwrap_or_default();
            match (
                session.dialog.hop(),
                session.dialog.request(Method::Message, env, &user),
            ) {
                (Some(hop), Some(req)) => actions.push(Action::Message {
                    request: req.with_body("text/plain;charset=UTF-8", body.into_bytes()),
                    hop,
                    stanza,
                }),
                _ => actions.push(Action::Resend(stanza)),
            }
        }
        actions
    }

    /// The BYE that ends `session` (idle or shutdown; its answer changes nothing).
    pub(super) fn bye(mut session: ImSession, env: &mut impl Env) -> Option<Action> {
        let user = session.user.clone();
        let hop = session.dialog.hop()?;
        let request = session.dialog.request(Method::Bye, env, &user)?;
        Some(Action::Send {
            request,
            hop,
            key: ReqKey::Bye,
        })
    }
}
