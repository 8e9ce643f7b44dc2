//! Derived fields, singleton defaults, and the read side (`get`, `list`).

use super::validate::{AUTO_ACL_PREFIX, DEFAULT_FEDERATION_ROUTING_DOMAIN};
use super::{names, StateMachine};
use herald_grpc::config::config_object::Body;
use herald_grpc::config::{
    ConfigObject, EmailDomain, EmailFederationSettings, FederationRoutingSettings, Management,
    ObjectKind, PolicyAction, RoutingNodeSettings, XmppFederationPolicy, XmppFederationSettings,
    XmppSecurityMode,
};
use herald_grpc::objects::is_singleton;

/// The value of a singleton that was never written (`None` for kinds that are not singletons):
/// FederationRouting with `default_federation_routing_domain = "aol.com"`, XmppPolicy ALLOW,
/// XmppFederation TLS_REQUIRED with client certificates required, the rest empty.
pub fn default_singleton(kind: ObjectKind) -> Option<Body> {
    Some(match kind {
        ObjectKind::XmppFederation => Body::XmppFederation(XmppFederationSettings {
            security_mode: XmppSecurityMode::TlsRequired as i32,
            require_client_certificates: true,
            ..Default::default()
        }),
        ObjectKind::XmppPolicy => Body::XmppPolicy(XmppFederationPolicy {
            default_action: PolicyAction::Allow as i32,
            exceptions: Vec::new(),
        }),
        ObjectKind::EmailFederation => Body::EmailFederation(EmailFederationSettings::default()),
        ObjectKind::RoutingNode => Body::RoutingNode(RoutingNodeSettings::default()),
        ObjectKind::FederationRouting => Body::FederationRouting(FederationRoutingSettings {
            default_federation_routing_domain: DEFAULT_FEDERATION_ROUTING_DOMAIN.to_string(),
            ..Default::default()
        }),
        _ => return None,
    })
}

/// Id of the automatic ACL entry of a SIP federated domain.
pub fn auto_acl_id(domain: &str) -> String {
    format!("{AUTO_ACL_PREFIX}{domain}")
}

/// The key under which an object is stored, as a reader may type it: domain-like keys are
/// lowercased, JIDs normalised; other keys are returned as given.
pub fn normalize_key(kind: ObjectKind, key: &str) -> String {
    match kind {
        ObjectKind::Domain
        | ObjectKind::SipDomain
        | ObjectKind::EmailDomain
        | ObjectKind::TlsPeer => key.to_ascii_lowercase(),
        ObjectKind::User | ObjectKind::UserData => names::normalize_jid(key)
            .map(|(jid, _)| jid)
            .unwrap_or_else(|_| key.to_lowercase()),
        _ => key.to_string(),
    }
}

impl StateMachine {
    /// The stored object under (kind, key) as stored — derived fields not filled, singletons
    /// only once written — without copying it: for hot paths that only check existence or
    /// read a stored field.
    pub fn peek(&self, kind: ObjectKind, key: &str) -> Option<&ConfigObject> {
        // Stored keys are normalised and normalising is idempotent, so a key found as it is
        // was already in normal form: the hot paths (routing, placement) pass keys taken from
        // parsed JIDs and skip the normalisation.
        if let Some(o) = self.stored(kind, key) {
            return Some(o);
        }
        let normal = normalize_key(kind, key);
        if normal == key {
            return None;
        }
        self.stored(kind, &normal)
    }

    /// A user's stored data and its revision, borrowed (as [`Self::peek`] finds it).
    pub fn user_data(&self, jid: &str) -> Option<(&herald_grpc::config::UserData, u64)> {
        match self.peek(ObjectKind::UserData, jid) {
            Some(ConfigObject {
                revision,
                body: Some(Body::UserData(d)),
            }) => Some((d, *revision)),
            _ => None,
        }
    }

    /// The stored objects of a kind, sorted by key, as stored (derived fields not filled) and
    /// without copying them: for passes over many objects that read stored fields (a node's
    /// calendar service reading 10,000 users every time the store changes).
    pub fn peek_all(&self, kind: ObjectKind) -> impl Iterator<Item = &ConfigObject> {
        self.stored_of_kind(kind)
    }

    /// One object with derived fields filled in (LocalDomain.user_count, EmailDomain.management,
    /// SipFederatedDomain.incoming_acl_id, IncomingAclEntry.owner_federated_domain). Singletons
    /// (key "") return their stored value, or their default with revision 0 if never written.
    /// Email domains derived from users' `mail_id` are returned (SYSTEM, revision 0) even
    /// without an admin entry. The key is normalised as by [`normalize_key`].
    pub fn get(&self, kind: ObjectKind, key: &str) -> Option<ConfigObject> {
        if is_singleton(kind) {
            if !key.is_empty() {
                return None;
            }
            return Some(match self.stored(kind, "") {
                Some(o) => o.clone(),
                None => ConfigObject {
                    revision: 0,
                    body: default_singleton(kind),
                },
            });
        }
        let key = normalize_key(kind, key);
        match self.stored(kind, &key) {
            Some(o) => Some(self.with_derived(o)),
            None if kind == ObjectKind::EmailDomain && self.email_domain_is_system(&key) => {
                Some(system_email_domain(&key))
            }
            None => None,
        }
    }

    /// All objects of a kind, sorted by key, derived fields filled (a singleton kind gives its
    /// one value; email domains include those derived from users).
    pub fn list(&self, kind: ObjectKind) -> Vec<ConfigObject> {
        if kind == ObjectKind::Unspecified {
            return Vec::new();
        }
        if is_singleton(kind) {
            return self.get(kind, "").into_iter().collect();
        }
        let mut out: Vec<ConfigObject> = self
            .stored_of_kind(kind)
            .map(|o| self.with_derived(o))
            .collect();
        if kind == ObjectKind::EmailDomain {
            let derived_only = self
                .users_per_mail_domain
                .keys()
                .filter(|d| self.stored(kind, d).is_none())
                .map(|d| system_email_domain(d));
            out.extend(derived_only);
            out.sort_by_key(ConfigObject::key);
        }
        out
    }

    /// Number of users in a local domain.
    pub fn user_count(&self, domain: &str) -> u64 {
        self.users_per_domain.get(domain).copied().unwrap_or(0)
    }

    /// The user whose `mail_id` is `mail` (case-insensitive); None when no user or several
    /// users have it (email for federation then cannot tell them apart).
    pub fn user_by_mail(&self, mail: &str) -> Option<&str> {
        let set = self.users_by_mail.get(&mail.to_ascii_lowercase())?;
        (set.len() == 1)
            .then(|| set.iter().next().map(String::as_str))
            .flatten()
    }

    /// True when `domain` is an email domain: administered, or some user's `mail_id` is in it.
    pub fn is_email_domain(&self, domain: &str) -> bool {
        self.users_per_mail_domain.contains_key(domain)
            || self.peek(ObjectKind::EmailDomain, domain).is_some()
    }

    /// True while some user's `mail_id` lies in `domain` (the domain is SYSTEM-managed).
    pub fn email_domain_is_system(&self, domain: &str) -> bool {
        self.users_per_mail_domain.contains_key(domain)
    }

    /// True when `domain` is listed as an email domain (admin entry or derived from users).
    pub(super) fn email_domain_listed(&self, domain: &str) -> bool {
        self.email_domain_is_system(domain)
            || self.stored(ObjectKind::EmailDomain, domain).is_some()
    }

    /// A copy of a stored object with its derived fields filled in.
    fn with_derived(&self, o: &ConfigObject) -> ConfigObject {
        let mut o = o.clone();
        match o.body.as_mut() {
            Some(Body::Domain(d)) => d.user_count = self.user_count(&d.name),
            Some(Body::EmailDomain(d)) => {
                d.management = if self.email_domain_is_system(&d.name) {
                    Management::System as i32
                } else {
                    Management::Admin as i32
                }
            }
            Some(Body::SipDomain(d)) => {
                let id = auto_acl_id(&d.domain);
                if self.stored(ObjectKind::Acl, &id).is_some() {
                    d.incoming_acl_id = id;
                }
            }
            _ => {}
        }
        o
    }
}

/// The derived entry of an email domain that only users' `mail_id`s define.
fn system_email_domain(name: &str) -> ConfigObject {
    ConfigObject {
        revision: 0,
        body: Some(Body::EmailDomain(EmailDomain {
            name: name.to_string(),
            description: String::new(),
            management: Management::System as i32,
        })),
    }
}
