//! Cross-object rules per kind: the §24.9 invariants, references between objects, automatic
//! objects (the ACL entry of a SIP federated domain, EMD-3 email domains) and warnings.

use super::apply::{failed, failed_on, Plan};
use super::derived::auto_acl_id;
use super::names::pattern_covers;
use super::routes::OPEN_FEDERATION_ROUTE_ID;
use super::validate::check_secret;
use super::{mail_domain, user_domain, Change, StateMachine};
use super::{WARN_EMAIL_FEDERATION_CHANGED, WARN_REGENERATE_S2S_CERT};
use herald_grpc::config::config_object::Body;
use herald_grpc::config::{
    AclPatternKind, CalendarGateway, CalendarKind, ConfigObject, EmailDomain, ErrorDetail,
    IncomingAclEntry, ObjectKind, PolicyException, StaticRoute, User,
};

type Res<T> = Result<T, ErrorDetail>;

impl StateMachine {
    /// Cross-object checks of a put; returns the body to store (possibly completed from the
    /// stored object) and adds extra changes and warnings to `plan`.
    pub(super) fn check_put(
        &self,
        index: u64,
        body: Body,
        current: Option<&ConfigObject>,
        confirm: bool,
        plan: &mut Plan,
    ) -> Res<Body> {
        let current_body = current.and_then(|o| o.body.as_ref());
        Ok(match body {
            Body::Domain(d) => {
                if self.stored(ObjectKind::SipDomain, &d.name).is_some() {
                    return Err(ErrorDetail::invalid(
                        "name",
                        format!("'{}' is a SIP federated domain (SCOPE-6)", d.name),
                    ));
                }
                if self
                    .policy_exceptions()
                    .iter()
                    .any(|e| e.domain_pattern == d.name)
                {
                    return Err(ErrorDetail::invalid(
                        "name",
                        format!("'{}' is an XMPP federation policy exception target", d.name),
                    ));
                }
                if current.is_none() {
                    plan.warnings.push(WARN_REGENERATE_S2S_CERT.to_string());
                }
                Body::Domain(d)
            }
            Body::UserData(d) => {
                // The user-state group holds no users: the config group deletes a user, and
                // the user-state group's leader then deletes its data (`users_group` module).
                if !self.users_group && self.stored(ObjectKind::User, &d.jid).is_none() {
                    return Err(failed_on(
                        "jid",
                        format!("no user '{}': user data needs an existing user", d.jid),
                    ));
                }
                Body::UserData(d)
            }
            Body::User(u) => {
                let old = match current_body {
                    Some(Body::User(old)) => Some(old),
                    _ => None,
                };
                Body::User(self.check_user(index, u, old, plan)?)
            }
            Body::SipDomain(d) => {
                self.check_sip_domain_free(&d.domain)?;
                let acl_id = auto_acl_id(&d.domain);
                if self.stored(ObjectKind::Acl, &acl_id).is_none() {
                    plan.changes.push(Change::put(ConfigObject {
                        revision: index,
                        body: Some(Body::Acl(IncomingAclEntry {
                            id: acl_id,
                            description: format!(
                                "Automatic entry for SIP federated domain {}",
                                d.domain
                            ),
                            pattern_kind: AclPatternKind::Domain as i32,
                            pattern: d.domain.clone(),
                            owner_federated_domain: d.domain.clone(),
                        })),
                    }));
                }
                Body::SipDomain(d)
            }
            Body::StaticRoute(r) => Body::StaticRoute(check_route(r, current_body, plan)?),
            Body::XmppFederation(x) => {
                self.check_members("enabled_nodes", &x.enabled_nodes)?;
                Body::XmppFederation(x)
            }
            Body::XmppPolicy(p) => {
                for e in &p.exceptions {
                    self.check_exception(e)?;
                }
                Body::XmppPolicy(p)
            }
            Body::EmailFederation(e) => {
                let was = matches!(current_body, Some(Body::EmailFederation(o)) if o.enabled);
                if e.enabled != was {
                    if !confirm {
                        return Err(failed_on(
                            "enabled",
                            "turning email for federation on or off requires confirm = true \
                             (remote users must re-add contacts)",
                        ));
                    }
                    plan.warnings
                        .push(WARN_EMAIL_FEDERATION_CHANGED.to_string());
                }
                Body::EmailFederation(e)
            }
            Body::EmailDomain(d) => {
                if self.stored(ObjectKind::SipDomain, &d.name).is_some() {
                    return Err(ErrorDetail::invalid(
                        "name",
                        format!("'{}' is a SIP federated domain (SCOPE-6)", d.name),
                    ));
                }
                if !self.email_domain_listed(&d.name) {
                    plan.warnings.push(WARN_REGENERATE_S2S_CERT.to_string());
                }
                Body::EmailDomain(d)
            }
            Body::RoutingNode(r) => {
                self.check_members("node_order", &r.node_order)?;
                Body::RoutingNode(r)
            }
            Body::CalendarGateway(g) => {
                self.check_calendar_mix(&g)?;
                Body::CalendarGateway(g)
            }
            other @ (Body::Acl(_)
            | Body::TlsPeer(_)
            | Body::FederationRouting(_)
            | Body::CalendarCredentials(_)
            | Body::Node(_)
            | Body::Placement(_)) => other,
        })
    }

    /// Cross-object checks of a delete of `current`; adds cascaded changes and warnings.
    pub(super) fn check_delete(
        &self,
        index: u64,
        current: &ConfigObject,
        plan: &mut Plan,
    ) -> Res<()> {
        match current.body.as_ref() {
            Some(Body::Domain(d)) => {
                let n = self.user_count(&d.name);
                if n > 0 {
                    return Err(failed(format!(
                        "local domain '{}' still has {n} user(s); delete them first",
                        d.name
                    )));
                }
                plan.warnings.push(WARN_REGENERATE_S2S_CERT.to_string());
            }
            Some(Body::SipDomain(d)) => {
                plan.changes
                    .push(Change::Delete(ObjectKind::Acl, auto_acl_id(&d.domain)));
            }
            Some(Body::EmailDomain(_)) => {
                plan.warnings.push(WARN_REGENERATE_S2S_CERT.to_string());
            }
            Some(Body::User(u)) => {
                self.release_mail_domain(index, &u.mail_id, plan);
                if self.stored(ObjectKind::UserData, &u.jid).is_some() {
                    plan.changes
                        .push(Change::Delete(ObjectKind::UserData, u.jid.clone()));
                }
            }
            Some(Body::CalendarCredentials(c)) => {
                let users = self
                    .stored_of_kind(ObjectKind::CalendarGateway)
                    .find_map(|o| match &o.body {
                        Some(Body::CalendarGateway(g)) if g.kind == c.kind => Some(g.id.clone()),
                        _ => None,
                    });
                if let Some(id) = users {
                    return Err(failed(format!(
                        "calendar gateway '{id}' uses these credentials; delete it first"
                    )));
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Put/Delete of an ACL entry owned by a SIP federated domain is refused.
    pub(super) fn check_acl_not_owned(&self, id: &str) -> Res<()> {
        if let Some(Body::Acl(a)) = self
            .stored(ObjectKind::Acl, id)
            .and_then(|o| o.body.as_ref())
        {
            if !a.owner_federated_domain.is_empty() {
                return Err(failed(format!(
                    "ACL entry '{id}' is owned by SIP federated domain {}; delete the domain instead",
                    a.owner_federated_domain
                )));
            }
        }
        Ok(())
    }

    /// An XMPP policy exception may not target a SIP federated domain (exact or covered by a
    /// `*.` pattern, SCOPE-5) nor a local domain.
    pub(super) fn check_exception(&self, e: &PolicyException) -> Res<()> {
        let p = &e.domain_pattern;
        if let Some(sip) = self
            .stored_of_kind(ObjectKind::SipDomain)
            .map(ConfigObject::key)
            .find(|d| pattern_covers(p, d))
        {
            return Err(ErrorDetail::invalid(
                "domain_pattern",
                format!("'{p}' covers SIP federated domain '{sip}' (SCOPE-5)"),
            ));
        }
        if self.stored(ObjectKind::Domain, p).is_some() {
            return Err(ErrorDetail::invalid(
                "domain_pattern",
                format!("'{p}' is a local domain"),
            ));
        }
        Ok(())
    }

    fn policy_exceptions(&self) -> Vec<PolicyException> {
        match self
            .stored(ObjectKind::XmppPolicy, "")
            .and_then(|o| o.body.as_ref())
        {
            Some(Body::XmppPolicy(p)) => p.exceptions.clone(),
            _ => Vec::new(),
        }
    }

    /// A SIP federated domain may not be a local or email domain (SCOPE-6) nor covered by an
    /// XMPP policy exception (SCOPE-5).
    fn check_sip_domain_free(&self, domain: &str) -> Res<()> {
        if self.stored(ObjectKind::Domain, domain).is_some() {
            return Err(ErrorDetail::invalid(
                "domain",
                format!("'{domain}' is a local domain (SCOPE-6)"),
            ));
        }
        if self.email_domain_listed(domain) {
            return Err(ErrorDetail::invalid(
                "domain",
                format!("'{domain}' is an email domain (SCOPE-6)"),
            ));
        }
        if let Some(e) = self
            .policy_exceptions()
            .into_iter()
            .find(|e| pattern_covers(&e.domain_pattern, domain))
        {
            return Err(ErrorDetail::invalid(
                "domain",
                format!(
                    "'{domain}' conflicts with XMPP federation policy exception '{}' (SCOPE-5)",
                    e.domain_pattern
                ),
            ));
        }
        Ok(())
    }

    fn check_members(&self, field: &str, ids: &[u64]) -> Res<()> {
        match ids.iter().find(|id| !self.is_member(**id)) {
            Some(id) => Err(failed_on(
                field,
                format!("node {id} is not a cluster member"),
            )),
            None => Ok(()),
        }
    }

    fn check_user(
        &self,
        index: u64,
        mut u: User,
        old: Option<&User>,
        plan: &mut Plan,
    ) -> Res<User> {
        let domain = user_domain(&u.jid).unwrap_or_default();
        if self.stored(ObjectKind::Domain, domain).is_none() {
            return Err(failed_on(
                "jid",
                format!("local domain '{domain}' does not exist"),
            ));
        }
        let new_mail = mail_domain(&u.mail_id);
        if let Some(md) = new_mail {
            if self.stored(ObjectKind::SipDomain, md).is_some() {
                return Err(ErrorDetail::invalid(
                    "mail_id",
                    format!("'{md}' is a SIP federated domain (SCOPE-6)"),
                ));
            }
        }
        if u.pinned_home_node != 0 && !self.is_member(u.pinned_home_node) {
            return Err(failed_on(
                "pinned_home_node",
                format!("node {} is not a cluster member", u.pinned_home_node),
            ));
        }
        match old {
            Some(old) => {
                if u.scram_sha256.is_none() {
                    u.scram_sha256 = old.scram_sha256.clone();
                }
                if u.scram_sha1.is_none() {
                    u.scram_sha1 = old.scram_sha1.clone();
                }
            }
            None => {
                check_secret("scram_sha256", &u.scram_sha256)?;
                check_secret("scram_sha1", &u.scram_sha1)?;
            }
        }
        let old_mail = old.map(|o| o.mail_id.as_str()).unwrap_or_default();
        if mail_domain(old_mail) != new_mail {
            if let Some(md) = new_mail {
                if !self.email_domain_listed(md) {
                    plan.warnings.push(WARN_REGENERATE_S2S_CERT.to_string());
                }
            }
            self.release_mail_domain(index, old_mail, plan);
        }
        Ok(u)
    }

    /// EMD-3: when the last user with a mail id in a domain leaves it, the domain stays listed
    /// as an admin-managed entry.
    fn release_mail_domain(&self, index: u64, mail_id: &str, plan: &mut Plan) {
        let Some(md) = mail_domain(mail_id) else {
            return;
        };
        let last = self.users_per_mail_domain.get(md).copied() == Some(1);
        if last && self.stored(ObjectKind::EmailDomain, md).is_none() {
            plan.changes.push(Change::put(ConfigObject {
                revision: index,
                body: Some(Body::EmailDomain(EmailDomain {
                    name: md.to_string(),
                    description: String::new(),
                    management: 0,
                })),
            }));
        }
    }

    /// CAL-6: at most one Exchange WebDAV gateway, never WebDAV and EWS together.
    fn check_calendar_mix(&self, g: &CalendarGateway) -> Res<()> {
        let webdav = CalendarKind::ExchangeWebdav as i32;
        let ews = CalendarKind::ExchangeEws as i32;
        for o in self.stored_of_kind(ObjectKind::CalendarGateway) {
            let Some(Body::CalendarGateway(other)) = &o.body else {
                continue;
            };
            if other.id == g.id {
                continue;
            }
            if g.kind == webdav && other.kind == webdav {
                return Err(failed_on(
                    "kind",
                    format!(
                        "at most one Exchange WebDAV gateway is allowed; '{}' exists (CAL-6)",
                        other.id
                    ),
                ));
            }
            if (g.kind == webdav && other.kind == ews) || (g.kind == ews && other.kind == webdav) {
                return Err(failed_on(
                    "kind",
                    format!(
                        "Exchange WebDAV and EWS gateways cannot be mixed; '{}' exists (CAL-6)",
                        other.id
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// OPEN-1/2: the predefined route keeps its pattern (an attempt to change it is refused), its
/// route type, priority and weight (re-populated, with a warning); it cannot be created anew.
fn check_route(mut r: StaticRoute, current: Option<&Body>, plan: &mut Plan) -> Res<StaticRoute> {
    if r.id != OPEN_FEDERATION_ROUTE_ID {
        return Ok(r);
    }
    let Some(Body::StaticRoute(old)) = current else {
        return Err(failed(format!(
            "route id '{OPEN_FEDERATION_ROUTE_ID}' is reserved for the predefined open-federation route"
        )));
    };
    if r.destination_pattern != old.destination_pattern {
        return Err(failed_on(
            "destination_pattern",
            "the destination pattern of the predefined open-federation route cannot be changed",
        ));
    }
    let mut kept = Vec::new();
    if r.route_type != old.route_type {
        kept.push("route_type");
        r.route_type = old.route_type;
    }
    if r.priority != old.priority {
        kept.push("priority");
        r.priority = old.priority;
    }
    if r.weight != old.weight {
        kept.push("weight");
        r.weight = old.weight;
    }
    if !kept.is_empty() {
        plan.warnings.push(format!(
            "fixed fields of the predefined open-federation route were kept: {}",
            kept.join(", ")
        ));
    }
    Ok(r)
}
