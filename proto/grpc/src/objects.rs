//! Kinds and keys of config objects: every object is stored under `(ObjectKind, key)`.

use crate::config::{config_object::Body, ConfigObject, ObjectKind};

/// Kinds that hold exactly one object, stored under the empty key.
pub const SINGLETONS: &[ObjectKind] = &[
    ObjectKind::XmppFederation,
    ObjectKind::XmppPolicy,
    ObjectKind::EmailFederation,
    ObjectKind::RoutingNode,
    ObjectKind::FederationRouting,
    ObjectKind::Placement,
];

/// Every kind an operator can address, with its command-line name.
pub const KIND_NAMES: &[(ObjectKind, &str)] = &[
    (ObjectKind::Domain, "domain"),
    (ObjectKind::User, "user"),
    (ObjectKind::SipDomain, "sip-domain"),
    (ObjectKind::Acl, "acl"),
    (ObjectKind::StaticRoute, "static-route"),
    (ObjectKind::TlsPeer, "tls-peer"),
    (ObjectKind::XmppFederation, "xmpp-federation"),
    (ObjectKind::XmppPolicy, "xmpp-policy"),
    (ObjectKind::EmailFederation, "email-federation"),
    (ObjectKind::EmailDomain, "email-domain"),
    (ObjectKind::RoutingNode, "routing-node"),
    (ObjectKind::FederationRouting, "federation-routing"),
    (ObjectKind::CalendarGateway, "calendar-gateway"),
    (ObjectKind::CalendarCredentials, "calendar-credentials"),
    (ObjectKind::Node, "node"),
    (ObjectKind::UserData, "user-data"),
    (ObjectKind::Placement, "placement"),
];

/// The command-line name of a kind (`sip-domain`), or `unspecified`.
pub fn kind_name(kind: ObjectKind) -> &'static str {
    KIND_NAMES
        .iter()
        .find(|(k, _)| *k == kind)
        .map(|(_, n)| *n)
        .unwrap_or("unspecified")
}

/// Parses a command-line kind name.
pub fn kind_from_name(name: &str) -> Option<ObjectKind> {
    KIND_NAMES.iter().find(|(_, n)| *n == name).map(|(k, _)| *k)
}

pub fn is_singleton(kind: ObjectKind) -> bool {
    SINGLETONS.contains(&kind)
}

impl Body {
    pub fn kind(&self) -> ObjectKind {
        match self {
            Body::Domain(_) => ObjectKind::Domain,
            Body::User(_) => ObjectKind::User,
            Body::SipDomain(_) => ObjectKind::SipDomain,
            Body::Acl(_) => ObjectKind::Acl,
            Body::StaticRoute(_) => ObjectKind::StaticRoute,
            Body::TlsPeer(_) => ObjectKind::TlsPeer,
            Body::XmppFederation(_) => ObjectKind::XmppFederation,
            Body::XmppPolicy(_) => ObjectKind::XmppPolicy,
            Body::EmailFederation(_) => ObjectKind::EmailFederation,
            Body::EmailDomain(_) => ObjectKind::EmailDomain,
            Body::RoutingNode(_) => ObjectKind::RoutingNode,
            Body::FederationRouting(_) => ObjectKind::FederationRouting,
            Body::CalendarGateway(_) => ObjectKind::CalendarGateway,
            Body::CalendarCredentials(_) => ObjectKind::CalendarCredentials,
            Body::Node(_) => ObjectKind::Node,
            Body::UserData(_) => ObjectKind::UserData,
            Body::Placement(_) => ObjectKind::Placement,
        }
    }

    /// The object's key within its kind (empty for singletons).
    pub fn key(&self) -> String {
        match self {
            Body::Domain(d) => d.name.clone(),
            Body::User(u) => u.jid.clone(),
            Body::SipDomain(d) => d.domain.clone(),
            Body::Acl(a) => a.id.clone(),
            Body::StaticRoute(r) => r.id.clone(),
            Body::TlsPeer(p) => p.name.clone(),
            Body::EmailDomain(d) => d.name.clone(),
            Body::CalendarGateway(g) => g.id.clone(),
            Body::CalendarCredentials(c) => calendar_credentials_key(c.kind()),
            Body::Node(n) => n.node_id.to_string(),
            Body::UserData(d) => d.jid.clone(),
            Body::XmppFederation(_)
            | Body::XmppPolicy(_)
            | Body::EmailFederation(_)
            | Body::RoutingNode(_)
            | Body::FederationRouting(_)
            | Body::Placement(_) => String::new(),
        }
    }
}

/// Key of the shared credentials of one calendar kind.
pub fn calendar_credentials_key(kind: crate::config::CalendarKind) -> String {
    kind.as_str_name()
        .trim_start_matches("CALENDAR_KIND_")
        .to_ascii_lowercase()
}

impl ConfigObject {
    pub fn new(body: Body) -> Self {
        ConfigObject {
            revision: 0,
            body: Some(body),
        }
    }

    pub fn kind(&self) -> ObjectKind {
        self.body
            .as_ref()
            .map(Body::kind)
            .unwrap_or(ObjectKind::Unspecified)
    }

    pub fn key(&self) -> String {
        self.body.as_ref().map(Body::key).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{CalendarKind, LocalDomain};

    #[test]
    fn names_round_trip() {
        for (kind, name) in KIND_NAMES {
            assert_eq!(kind_from_name(name), Some(*kind));
            assert_eq!(kind_name(*kind), *name);
        }
        assert_eq!(kind_from_name("nope"), None);
    }

    #[test]
    fn keys() {
        let o = ConfigObject::new(Body::Domain(LocalDomain {
            name: "example.test".into(),
            ..Default::default()
        }));
        assert_eq!(o.kind(), ObjectKind::Domain);
        assert_eq!(o.key(), "example.test");
        assert_eq!(
            calendar_credentials_key(CalendarKind::ExchangeEws),
            "exchange_ews"
        );
        assert_eq!(ConfigObject::default().kind(), ObjectKind::Unspecified);
    }
}
