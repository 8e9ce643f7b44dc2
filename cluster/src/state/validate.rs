//! Object-local validation: checks the syntax of one object on its own, returns it normalised
//! (names lowercased, defaults applied, derived fields cleared). Rules that look at other objects
//! live in `rules`.

use super::names::{
    check_id, normalize_dns_name, normalize_email_domain, normalize_host, normalize_jid,
    normalize_mail_id, normalize_wildcard_dns_name,
};
use super::routes::{normalize_destination_pattern, OPEN_FEDERATION_ROUTE_ID};
use herald_grpc::config::config_object::Body;
use herald_grpc::config::{
    AclPatternKind, CalendarCredentials, CalendarGateway, CalendarKind, ErrorDetail,
    FederationRoutingSettings, IncomingAclEntry, PolicyAction, PolicyDirection, PolicyException,
    RouteType, RoutingNodeSettings, ScramSecret, SipIntegrationType, StaticRoute, Transport, User,
    UserData, XmppFederationPolicy, XmppFederationSettings, XmppSecurityMode,
};
use std::collections::BTreeSet;
use std::net::IpAddr;

/// Prefix of the ids of automatic ACL entries; manual entries may not use it.
pub const AUTO_ACL_PREFIX: &str = "auto-";
/// Default `FederationRoutingSettings.default_federation_routing_domain`.
pub const DEFAULT_FEDERATION_ROUTING_DOMAIN: &str = "aol.com";
/// Smallest accepted SCRAM iteration count.
pub const MIN_SCRAM_ITERATIONS: u32 = 4096;
/// Shortest accepted dialback secret, in characters.
pub const MIN_DIALBACK_SECRET_CHARS: usize = 16;
/// Default calendar gateway port (HTTPS).
pub const DEFAULT_CALENDAR_PORT: u32 = 443;

type Res<T> = Result<T, ErrorDetail>;

/// Decodes a protobuf enum field that must be set to a known, non-zero value.
pub(crate) fn required_enum<E>(value: i32, field: &str) -> Res<E>
where
    E: TryFrom<i32> + Default + PartialEq,
{
    match E::try_from(value) {
        Ok(e) if e != E::default() => Ok(e),
        Ok(_) => Err(ErrorDetail::invalid(field, "must be set")),
        Err(_) => Err(ErrorDetail::invalid(
            field,
            format!("unknown value {value}"),
        )),
    }
}

fn dns(field: &str, value: &str) -> Res<String> {
    normalize_dns_name(value).map_err(|e| ErrorDetail::invalid(field, e))
}

fn optional_dns(field: &str, value: &str) -> Res<String> {
    if value.is_empty() {
        Ok(String::new())
    } else {
        dns(field, value)
    }
}

fn id(field: &str, value: &str) -> Res<()> {
    check_id(value).map_err(|e| ErrorDetail::invalid(field, e))
}

fn port(field: &str, value: u32) -> Res<()> {
    if (1..=65535).contains(&value) {
        Ok(())
    } else {
        Err(ErrorDetail::invalid(
            field,
            format!("port {value} is not in 1..=65535"),
        ))
    }
}

/// Validates and normalises one object body on its own. `NODE` bodies are refused by the caller
/// before this point and are returned unchanged.
pub fn normalize(body: Body) -> Res<Body> {
    Ok(match body {
        Body::Domain(mut d) => {
            d.name = dns("name", &d.name)?;
            d.user_count = 0;
            Body::Domain(d)
        }
        Body::User(u) => Body::User(user(u)?),
        Body::SipDomain(mut d) => {
            d.domain = dns("domain", &d.domain)?;
            required_enum::<SipIntegrationType>(d.integration_type, "integration_type")?;
            d.incoming_acl_id = String::new();
            Body::SipDomain(d)
        }
        Body::Acl(a) => Body::Acl(acl(a)?),
        Body::StaticRoute(r) => Body::StaticRoute(static_route(r)?),
        Body::TlsPeer(mut p) => {
            p.name = normalize_wildcard_dns_name(&p.name)
                .map_err(|e| ErrorDetail::invalid("name", e))?;
            Body::TlsPeer(p)
        }
        Body::XmppFederation(x) => Body::XmppFederation(xmpp_federation(x)?),
        Body::XmppPolicy(p) => Body::XmppPolicy(xmpp_policy(p)?),
        Body::EmailFederation(e) => Body::EmailFederation(e),
        Body::EmailDomain(mut d) => {
            d.name =
                normalize_email_domain(&d.name).map_err(|e| ErrorDetail::invalid("name", e))?;
            d.management = 0;
            Body::EmailDomain(d)
        }
        Body::RoutingNode(r) => Body::RoutingNode(routing_node(r)?),
        Body::FederationRouting(f) => Body::FederationRouting(federation_routing(f)?),
        Body::CalendarGateway(g) => Body::CalendarGateway(calendar_gateway(g)?),
        Body::CalendarCredentials(c) => Body::CalendarCredentials(calendar_credentials(c)?),
        Body::Node(n) => Body::Node(n),
        Body::Placement(p) => Body::Placement(p),
        Body::UserData(d) => Body::UserData(user_data(d)?),
    })
}

/// Hard caps on one user's durable IM state (the node's configured limits are lower).
pub const MAX_ROSTER_ITEMS: usize = 10_000;
pub const MAX_BLOCKED: usize = 10_000;
pub const MAX_OFFLINE: usize = 10_000;

fn user_data(mut d: UserData) -> Res<UserData> {
    let (jid, _) = normalize_jid(&d.jid).map_err(|e| ErrorDetail::invalid("jid", e))?;
    d.jid = jid;
    if d.roster.len() > MAX_ROSTER_ITEMS {
        return Err(ErrorDetail::invalid(
            "roster",
            format!("more than {MAX_ROSTER_ITEMS} roster items"),
        ));
    }
    if d.blocked.len() > MAX_BLOCKED {
        return Err(ErrorDetail::invalid(
            "blocked",
            format!("more than {MAX_BLOCKED} blocked entries"),
        ));
    }
    if d.offline.len() > MAX_OFFLINE {
        return Err(ErrorDetail::invalid(
            "offline",
            format!("more than {MAX_OFFLINE} offline messages"),
        ));
    }
    let mut seen = std::collections::BTreeSet::new();
    for item in &d.roster {
        if item.jid.is_empty() || item.jid.len() > 3071 || item.jid.contains('/') {
            return Err(ErrorDetail::invalid(
                "roster.jid",
                format!("{:?} is not a bare JID", item.jid),
            ));
        }
        if !seen.insert(item.jid.as_str()) {
            return Err(ErrorDetail::invalid(
                "roster.jid",
                format!("{} appears twice", item.jid),
            ));
        }
    }
    Ok(d)
}

/// True when a secret carries nothing (absent or all fields empty): "keep the stored one".
pub fn secret_is_empty(s: &Option<ScramSecret>) -> bool {
    s.as_ref().is_none_or(|s| *s == ScramSecret::default())
}

/// Checks one SCRAM secret: salt and keys non-empty, iterations >= 4096.
pub fn check_secret(field: &str, s: &Option<ScramSecret>) -> Res<()> {
    let Some(s) = s.as_ref() else {
        return Err(ErrorDetail::invalid(field, "must be present"));
    };
    if s.iterations < MIN_SCRAM_ITERATIONS {
        return Err(ErrorDetail::invalid(
            field,
            format!(
                "iterations {} below the minimum {MIN_SCRAM_ITERATIONS}",
                s.iterations
            ),
        ));
    }
    if s.salt.is_empty() || s.stored_key.is_empty() || s.server_key.is_empty() {
        return Err(ErrorDetail::invalid(
            field,
            "salt, stored_key and server_key must not be empty",
        ));
    }
    Ok(())
}

fn user(mut u: User) -> Res<User> {
    let (jid, _) = normalize_jid(&u.jid).map_err(|e| ErrorDetail::invalid("jid", e))?;
    u.jid = jid;
    if !u.mail_id.is_empty() {
        let (mail, _) =
            normalize_mail_id(&u.mail_id).map_err(|e| ErrorDetail::invalid("mail_id", e))?;
        u.mail_id = mail;
    }
    for (field, secret) in [
        ("scram_sha256", &mut u.scram_sha256),
        ("scram_sha1", &mut u.scram_sha1),
    ] {
        if secret_is_empty(secret) {
            *secret = None;
        } else {
            check_secret(field, secret)?;
        }
    }
    Ok(u)
}

fn acl(mut a: IncomingAclEntry) -> Res<IncomingAclEntry> {
    id("id", &a.id)?;
    if a.id.starts_with(AUTO_ACL_PREFIX) {
        return Err(ErrorDetail::invalid(
            "id",
            format!("ids starting with '{AUTO_ACL_PREFIX}' are reserved for automatic entries"),
        ));
    }
    let kind = required_enum::<AclPatternKind>(a.pattern_kind, "pattern_kind")?;
    a.pattern = match kind {
        AclPatternKind::Ip => a
            .pattern
            .parse::<IpAddr>()
            .map(|ip| ip.to_string())
            .map_err(|_| {
                ErrorDetail::invalid("pattern", format!("'{}' is not an IP address", a.pattern))
            })?,
        AclPatternKind::Fqdn | AclPatternKind::Domain => dns("pattern", &a.pattern)?,
        AclPatternKind::All if a.pattern.is_empty() => String::new(),
        AclPatternKind::All => {
            return Err(ErrorDetail::invalid(
                "pattern",
                "must be empty for pattern kind ALL",
            ))
        }
        AclPatternKind::Unspecified => {
            return Err(ErrorDetail::invalid("pattern_kind", "must be set"))
        }
    };
    a.owner_federated_domain = String::new();
    Ok(a)
}

fn static_route(mut r: StaticRoute) -> Res<StaticRoute> {
    id("id", &r.id)?;
    r.destination_pattern = normalize_destination_pattern(&r.destination_pattern)
        .map_err(|e| ErrorDetail::invalid("destination_pattern", e))?;
    // The predefined route may keep an empty next hop while it is blocked (open federation
    // not enabled yet, OPEN-2).
    if r.next_hop.is_empty() && r.id == OPEN_FEDERATION_ROUTE_ID {
        if !r.blocked {
            return Err(ErrorDetail::invalid(
                "next_hop",
                "set a next hop before unblocking the open-federation route",
            ));
        }
    } else {
        r.next_hop =
            normalize_host(&r.next_hop).map_err(|e| ErrorDetail::invalid("next_hop", e))?;
    }
    port("next_hop_port", r.next_hop_port)?;
    required_enum::<Transport>(r.transport, "transport")?;
    required_enum::<RouteType>(r.route_type, "route_type")?;
    Ok(r)
}

fn xmpp_federation(x: XmppFederationSettings) -> Res<XmppFederationSettings> {
    let mode = required_enum::<XmppSecurityMode>(x.security_mode, "security_mode")?;
    if mode == XmppSecurityMode::NoTls {
        for (field, set) in [
            ("require_client_certificates", x.require_client_certificates),
            ("sasl_external_inbound", x.sasl_external_inbound),
            ("sasl_outbound", x.sasl_outbound),
        ] {
            if set {
                return Err(ErrorDetail::invalid(
                    field,
                    "only allowed when security_mode is TLS_OPTIONAL or TLS_REQUIRED",
                ));
            }
        }
    }
    let n = x.dialback_secret.chars().count();
    if n != 0 && n < MIN_DIALBACK_SECRET_CHARS {
        return Err(ErrorDetail::invalid(
            "dialback_secret",
            format!("must be empty or at least {MIN_DIALBACK_SECRET_CHARS} characters"),
        ));
    }
    no_duplicates("enabled_nodes", &x.enabled_nodes)?;
    Ok(x)
}

fn no_duplicates(field: &str, ids: &[u64]) -> Res<()> {
    let mut seen = BTreeSet::new();
    match ids.iter().find(|id| !seen.insert(**id)) {
        Some(dup) => Err(ErrorDetail::invalid(
            field,
            format!("node {dup} is listed twice"),
        )),
        None => Ok(()),
    }
}

/// Validates and normalises one XMPP policy exception.
pub fn policy_exception(mut e: PolicyException) -> Res<PolicyException> {
    e.domain_pattern = normalize_wildcard_dns_name(&e.domain_pattern)
        .map_err(|err| ErrorDetail::invalid("domain_pattern", err))?;
    required_enum::<PolicyDirection>(e.direction, "direction")?;
    Ok(e)
}

fn xmpp_policy(mut p: XmppFederationPolicy) -> Res<XmppFederationPolicy> {
    required_enum::<PolicyAction>(p.default_action, "default_action")?;
    let mut seen = BTreeSet::new();
    let mut out = Vec::with_capacity(p.exceptions.len());
    for e in p.exceptions {
        let e = policy_exception(e)?;
        if !seen.insert(e.domain_pattern.clone()) {
            return Err(ErrorDetail::invalid(
                "domain_pattern",
                format!("exception '{}' is listed twice", e.domain_pattern),
            ));
        }
        out.push(e);
    }
    p.exceptions = out;
    Ok(p)
}

fn routing_node(r: RoutingNodeSettings) -> Res<RoutingNodeSettings> {
    if r.node_order.is_empty() {
        return Err(ErrorDetail::invalid(
            "node_order",
            "must name at least one node",
        ));
    }
    no_duplicates("node_order", &r.node_order)?;
    Ok(r)
}

fn federation_routing(mut f: FederationRoutingSettings) -> Res<FederationRoutingSettings> {
    f.federation_routing_fqdn =
        optional_dns("federation_routing_fqdn", &f.federation_routing_fqdn)?;
    f.default_federation_routing_domain = if f.default_federation_routing_domain.is_empty() {
        DEFAULT_FEDERATION_ROUTING_DOMAIN.to_string()
    } else {
        dns(
            "default_federation_routing_domain",
            &f.default_federation_routing_domain,
        )?
    };
    if !f.virtual_ip_address.is_empty() {
        f.virtual_ip_address = f
            .virtual_ip_address
            .parse::<IpAddr>()
            .map(|ip| ip.to_string())
            .map_err(|_| ErrorDetail::invalid("virtual_ip_address", "not an IP address"))?;
    }
    f.server_name = optional_dns("server_name", &f.server_name)?;
    Ok(f)
}

fn calendar_gateway(mut g: CalendarGateway) -> Res<CalendarGateway> {
    id("id", &g.id)?;
    required_enum::<CalendarKind>(g.kind, "kind")?;
    g.host = normalize_host(&g.host).map_err(|e| ErrorDetail::invalid("host", e))?;
    if g.port == 0 {
        g.port = DEFAULT_CALENDAR_PORT;
    }
    port("port", g.port)?;
    Ok(g)
}

fn calendar_credentials(c: CalendarCredentials) -> Res<CalendarCredentials> {
    required_enum::<CalendarKind>(c.kind, "kind")?;
    check_account_name(&c.account_name).map_err(|e| ErrorDetail::invalid("account_name", e))?;
    Ok(c)
}

/// Checks a calendar service account: `user@domain` or `DOMAIN\user`.
pub fn check_account_name(name: &str) -> Result<(), String> {
    let bad_char = |s: &str| s.chars().any(|c| c.is_whitespace() || c.is_control());
    if let Some((dom, user)) = name.split_once('\\') {
        if dom.is_empty()
            || user.is_empty()
            || user.contains('\\')
            || bad_char(dom)
            || bad_char(user)
        {
            return Err(format!("'{name}' is not of the form DOMAIN\\user"));
        }
        return Ok(());
    }
    if let Some((user, dom)) = name.split_once('@') {
        if user.is_empty() || bad_char(user) {
            return Err(format!("'{name}' is not of the form user@domain"));
        }
        return normalize_dns_name(dom)
            .map(|_| ())
            .map_err(|e| format!("domain: {e}"));
    }
    Err(format!("'{name}' must be user@domain or DOMAIN\\user"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_names() {
        for ok in ["svc@example.com", "EXAMPLE\\svc", "a.b@x.y"] {
            assert!(check_account_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "svc",
            "@example.com",
            "svc@",
            "svc@bad_dom",
            "\\svc",
            "EX\\",
            "a b@x.com",
            "A\\b\\c",
        ] {
            assert!(check_account_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn enums() {
        assert!(required_enum::<Transport>(1, "t").is_ok());
        let e = required_enum::<Transport>(0, "transport").err();
        assert_eq!(e.map(|e| e.field), Some("transport".to_string()));
        assert!(required_enum::<Transport>(99, "t").is_err());
    }
}
