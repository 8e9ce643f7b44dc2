//! Local users watching SIP users: one SUBSCRIBE dialog per pair, NOTIFYs turned into
//! XMPP subscription answers and presence.

use super::*;

impl Table {
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
        let resp = Response::for_request(req, 200, Some("OK")).header(
            HeaderName::Contact,
            contact(&local, &env.address_of(&user), tls_port),
        );
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

    /// Starts (or reports) the outbound subscription of `user` to `contact`.
    pub(super) fn watch(
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
                local_uri: sip_uri_of(&env.address_of(user)).to_string(),
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
    pub(super) fn unwatch(
        &mut self,
        user: &Jid,
        contact_jid: &Jid,
        env: &mut impl Env,
    ) -> Vec<Action> {
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
    pub(super) fn subscribe(
        &mut self,
        pair: &(Jid, Jid),
        expires: u32,
        env: &mut impl Env,
    ) -> Option<Action> {
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
}
