//! SIP watchers of local users: SUBSCRIBE judged by the user's rules, NOTIFYs of the
//! user's presence as the home node reports it.

use super::*;

impl Table {
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
                .header(
                    HeaderName::Contact,
                    contact(&local, &env.address_of(user), tls_port),
                )
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
            .header(
                HeaderName::Contact,
                contact(&local, &env.address_of(user), tls_port),
            )
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
    pub(super) fn notify(
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
            let entity = format!("sip:{}", env.address_of(&user));
            let doc = crate::sip::presence::pidf(&entity, &shown);
            req = req.with_body(CONTENT_TYPE, doc.to_xml().into_bytes());
        }
        vec![Action::Send {
            request: req,
            hop,
            key: ReqKey::Notify(key.0.clone(), key.1.clone()),
        }]
    }

    pub(super) fn inbound_of(&self, watcher: &Jid, user: &Jid) -> Vec<(String, String)> {
        self.inbound
            .iter()
            .filter(|(_, s)| &s.watcher == watcher && &s.user == user)
            .map(|(k, _)| k.clone())
            .collect()
    }
}
