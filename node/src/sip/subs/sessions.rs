//! IM sessions (session mode): an INVITE offering `m=message ... sip` opens a dialog whose
//! MESSAGEs reach the local user, whose replies go inside it; BYE, idleness or shutdown end it.

use super::*;

/// An IM session idle this long is ended with a BYE.
pub const SESSION_IDLE: Duration = Duration::from_secs(600);

/// An IM session (session mode: INVITE, then MESSAGEs inside the dialog) between a SIP user
/// and a local user.
#[derive(Debug, Clone)]
pub(super) struct ImSession {
    pub(super) dialog: Dialog,
    pub(super) remote: Jid,
    pub(super) user: Jid,
    pub(super) last: Instant,
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
