//! Table-driven validation tests, part 2: singletons (XMPP federation and policy, email for
//! federation, routing node, federation routing), email domains and calendar objects.

use super::*;
use herald_grpc::config::{
    EmailDomain, EmailFederationSettings, FederationRoutingSettings, PolicyAction,
    RemovePolicyException, RoutingNodeSettings, XmppFederationPolicy, XmppFederationSettings,
    XmppSecurityMode,
};
use ErrorCode::{AlreadyExists, FailedPrecondition, InvalidArgument, NotFound};

fn xmpp(mode: XmppSecurityMode, f: impl FnOnce(&mut XmppFederationSettings)) -> Command {
    let mut x = XmppFederationSettings {
        security_mode: mode as i32,
        ..Default::default()
    };
    f(&mut x);
    upsert(Body::XmppFederation(x))
}

#[test]
fn xmpp_federation_settings() {
    use XmppSecurityMode::{NoTls, TlsOptional, TlsRequired};
    run_table(vec![
        case(
            "required",
            xmpp(TlsRequired, |x| x.require_client_certificates = true),
            Want::Ok,
        ),
        case(
            "optional + sasl",
            xmpp(TlsOptional, |x| x.sasl_outbound = true),
            Want::Ok,
        ),
        case("no tls plain", xmpp(NoTls, |_| {}), Want::Ok),
        case(
            "enabled nodes",
            xmpp(TlsRequired, |x| x.enabled_nodes = vec![1, 3]),
            Want::Ok,
        ),
        case(
            "create mode acts as upsert",
            {
                let mut c = xmpp(TlsRequired, |_| {});
                if let Some(Op::Put(p)) = c.op.as_mut() {
                    p.mode = WriteMode::Create as i32;
                }
                c
            },
            Want::Ok,
        ),
        case(
            "update never written",
            {
                let mut c = xmpp(TlsRequired, |_| {});
                if let Some(Op::Put(p)) = c.op.as_mut() {
                    p.mode = WriteMode::Update as i32;
                }
                c
            },
            Want::Ok,
        ),
        case(
            "unspecified mode",
            upsert(Body::XmppFederation(XmppFederationSettings::default())),
            Want::Err(InvalidArgument, "security_mode"),
        ),
        case(
            "no tls + client certs",
            xmpp(NoTls, |x| x.require_client_certificates = true),
            Want::Err(InvalidArgument, "require_client_certificates"),
        ),
        case(
            "no tls + sasl external",
            xmpp(NoTls, |x| x.sasl_external_inbound = true),
            Want::Err(InvalidArgument, "sasl_external_inbound"),
        ),
        case(
            "no tls + sasl outbound",
            xmpp(NoTls, |x| x.sasl_outbound = true),
            Want::Err(InvalidArgument, "sasl_outbound"),
        ),
        case(
            "short dialback secret",
            xmpp(TlsRequired, |x| x.dialback_secret = "short".into()),
            Want::Err(InvalidArgument, "dialback_secret"),
        ),
        case(
            "long dialback secret",
            xmpp(TlsRequired, |x| {
                x.dialback_secret = "0123456789abcdef".into()
            }),
            Want::Ok,
        ),
        case(
            "non-member node",
            xmpp(TlsRequired, |x| x.enabled_nodes = vec![1, 9]),
            Want::Err(FailedPrecondition, "enabled_nodes"),
        ),
        case(
            "duplicate node",
            xmpp(TlsRequired, |x| x.enabled_nodes = vec![2, 2]),
            Want::Err(InvalidArgument, "enabled_nodes"),
        ),
    ]);
}

fn policy(action: PolicyAction, patterns: &[&str]) -> Command {
    upsert(Body::XmppPolicy(XmppFederationPolicy {
        default_action: action as i32,
        exceptions: patterns
            .iter()
            .map(|p| PolicyException {
                domain_pattern: p.to_string(),
                direction: PolicyDirection::All as i32,
                description: String::new(),
            })
            .collect(),
    }))
}

fn remove_exception(pattern: &str) -> Command {
    Command {
        audit: None,
        op: Some(Op::RemovePolicyException(RemovePolicyException {
            domain_pattern: pattern.to_string(),
        })),
    }
}

#[test]
fn xmpp_policy() {
    use PolicyAction::{Allow, Deny};
    use PolicyDirection::{All, Inbound, Outbound, Unspecified};
    let sip_setup = || vec![create(sip("lync.partner.test"))];
    run_table(vec![
        case("put", policy(Deny, &["a.test", "*.b.test"]), Want::Ok),
        case(
            "put no action",
            policy(PolicyAction::Unspecified, &[]),
            Want::Err(InvalidArgument, "default_action"),
        ),
        case(
            "put bad pattern",
            policy(Allow, &["a..test"]),
            Want::Err(InvalidArgument, "domain_pattern"),
        ),
        case(
            "put duplicate",
            policy(Allow, &["a.test", "A.test"]),
            Want::Err(InvalidArgument, "domain_pattern"),
        ),
        case(
            "put local domain",
            policy(Allow, &["example.com"]),
            Want::Err(InvalidArgument, "domain_pattern"),
        ),
        case_after(
            "put covers sip",
            sip_setup(),
            policy(Allow, &["*.partner.test"]),
            Want::Err(InvalidArgument, "domain_pattern"),
        ),
        case("add", add_exception("a.test", Inbound), Want::Ok),
        case(
            "add wildcard",
            add_exception("*.a.test", Outbound),
            Want::Ok,
        ),
        case(
            "add bad",
            add_exception("*", All),
            Want::Err(InvalidArgument, "domain_pattern"),
        ),
        case(
            "add no direction",
            add_exception("a.test", Unspecified),
            Want::Err(InvalidArgument, "direction"),
        ),
        case(
            "add missing exception",
            Command {
                audit: None,
                op: Some(Op::AddPolicyException(AddPolicyException {
                    exception: None,
                })),
            },
            Want::Err(InvalidArgument, "exception"),
        ),
        case_after(
            "add duplicate",
            vec![add_exception("a.test", All)],
            add_exception("A.TEST", Inbound),
            Want::Err(AlreadyExists, ""),
        ),
        case(
            "add local domain",
            add_exception("localhost", All),
            Want::Err(InvalidArgument, "domain_pattern"),
        ),
        case(
            "add wildcard over local domain",
            add_exception("*.example.com", All),
            Want::Ok,
        ),
        case_after(
            "add sip exact",
            sip_setup(),
            add_exception("lync.partner.test", All),
            Want::Err(InvalidArgument, "domain_pattern"),
        ),
        case_after(
            "add sip covered",
            sip_setup(),
            add_exception("*.partner.test", All),
            Want::Err(InvalidArgument, "domain_pattern"),
        ),
        case_after(
            "add sip parent exact",
            sip_setup(),
            add_exception("partner.test", All),
            Want::Ok,
        ),
        case_after(
            "remove",
            vec![add_exception("a.test", All)],
            remove_exception("A.test"),
            Want::Ok,
        ),
        case(
            "remove missing",
            remove_exception("a.test"),
            Want::Err(NotFound, ""),
        ),
    ]);
}

#[test]
fn email_federation() {
    let set = |enabled: bool, confirm: bool| {
        let body = Body::EmailFederation(EmailFederationSettings { enabled });
        if confirm {
            confirmed(body)
        } else {
            upsert(body)
        }
    };
    run_table(vec![
        case(
            "enable without confirm",
            set(true, false),
            Want::Err(FailedPrecondition, "enabled"),
        ),
        case("enable with confirm", set(true, true), Want::Ok),
        case("unchanged needs no confirm", set(false, false), Want::Ok),
        case_after(
            "disable without confirm",
            vec![set(true, true)],
            set(false, false),
            Want::Err(FailedPrecondition, "enabled"),
        ),
        case_after(
            "disable with confirm",
            vec![set(true, true)],
            set(false, true),
            Want::Ok,
        ),
    ]);
}

fn email_domain(name: &str) -> Body {
    Body::EmailDomain(EmailDomain {
        name: name.to_string(),
        description: String::new(),
        management: 0,
    })
}

#[test]
fn email_domains() {
    let user_setup = || vec![create(user_mail("bob@example.com", "bob@mail.test"))];
    run_table(vec![
        case("valid", create(email_domain("mail.test")), Want::Ok),
        case(
            "equals a local domain",
            create(email_domain("example.com")),
            Want::Ok,
        ),
        case(
            "last label digit",
            create(email_domain("Abc.1om")),
            Want::Err(InvalidArgument, "name"),
        ),
        case(
            "label starts with dash",
            create(email_domain("a.-b.com")),
            Want::Err(InvalidArgument, "name"),
        ),
        case(
            "underscore",
            create(email_domain("a_b.com")),
            Want::Err(InvalidArgument, "name"),
        ),
        case(
            "too long",
            create(email_domain(&format!("{}.com", "a".repeat(252)))),
            Want::Err(InvalidArgument, "name"),
        ),
        case(
            "empty",
            create(email_domain("")),
            Want::Err(InvalidArgument, "name"),
        ),
        case_after(
            "sip domain",
            vec![create(sip("partner.test"))],
            create(email_domain("partner.test")),
            Want::Err(InvalidArgument, "name"),
        ),
        case_after(
            "admin entry over system domain",
            user_setup(),
            create(email_domain("mail.test")),
            Want::Ok,
        ),
        case_after(
            "update system-only",
            user_setup(),
            update(email_domain("mail.test")),
            Want::Err(FailedPrecondition, ""),
        ),
        case_after(
            "delete system-only",
            user_setup(),
            delete(ObjectKind::EmailDomain, "mail.test"),
            Want::Err(FailedPrecondition, ""),
        ),
        case_after(
            "delete system admin entry",
            vec![
                create(email_domain("mail.test")),
                create(user_mail("bob@example.com", "bob@mail.test")),
            ],
            delete(ObjectKind::EmailDomain, "mail.test"),
            Want::Err(FailedPrecondition, ""),
        ),
        case_after(
            "delete admin",
            vec![create(email_domain("mail.test"))],
            delete(ObjectKind::EmailDomain, "Mail.Test"),
            Want::Ok,
        ),
        case(
            "delete missing",
            delete(ObjectKind::EmailDomain, "mail.test"),
            Want::Err(NotFound, ""),
        ),
    ]);
}

#[test]
fn routing_node_settings() {
    let order = |ids: &[u64]| {
        upsert(Body::RoutingNode(RoutingNodeSettings {
            node_order: ids.to_vec(),
        }))
    };
    run_table(vec![
        case("valid", order(&[2, 1, 3]), Want::Ok),
        case("one", order(&[1]), Want::Ok),
        case(
            "empty",
            order(&[]),
            Want::Err(InvalidArgument, "node_order"),
        ),
        case(
            "duplicate",
            order(&[1, 2, 1]),
            Want::Err(InvalidArgument, "node_order"),
        ),
        case(
            "non-member",
            order(&[1, 4]),
            Want::Err(FailedPrecondition, "node_order"),
        ),
    ]);
}

#[test]
fn federation_routing_settings() {
    let fr = |fqdn: &str, dom: &str, vip: &str, server: &str| {
        upsert(Body::FederationRouting(FederationRoutingSettings {
            federation_routing_fqdn: fqdn.to_string(),
            default_federation_routing_domain: dom.to_string(),
            virtual_ip_address: vip.to_string(),
            server_name: server.to_string(),
        }))
    };
    run_table(vec![
        case("all empty", fr("", "", "", ""), Want::Ok),
        case(
            "all set",
            fr(
                "fed.example.com",
                "aol.test",
                "192.0.2.10",
                "lb.example.com",
            ),
            Want::Ok,
        ),
        case(
            "bad fqdn",
            fr("fed..example.com", "", "", ""),
            Want::Err(InvalidArgument, "federation_routing_fqdn"),
        ),
        case(
            "bad routing domain",
            fr("", "aol_com", "", ""),
            Want::Err(InvalidArgument, "default_federation_routing_domain"),
        ),
        case(
            "bad vip",
            fr("", "", "192.0.2", ""),
            Want::Err(InvalidArgument, "virtual_ip_address"),
        ),
        case(
            "bad server name",
            fr("", "", "", "lb .x"),
            Want::Err(InvalidArgument, "server_name"),
        ),
    ]);
    let mut h = Harness::new();
    h.ok(&fr("Fed.Example.com", "", "", ""));
    match h.get(ObjectKind::FederationRouting, "").body {
        Some(Body::FederationRouting(f)) => {
            assert_eq!(f.federation_routing_fqdn, "fed.example.com");
            assert_eq!(
                f.default_federation_routing_domain, "aol.com",
                "empty means aol.com"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn calendar_gateways() {
    use CalendarKind::{Caldav, ExchangeEws, ExchangeWebdav};
    let with = |id: &str, kind: CalendarKind, f: &dyn Fn(&mut CalendarGateway)| {
        let mut b = gateway(id, kind);
        if let Body::CalendarGateway(g) = &mut b {
            f(g);
        }
        create(b)
    };
    run_table(vec![
        case("ews", create(gateway("cas1", ExchangeEws)), Want::Ok),
        case(
            "ip host",
            with("cas1", ExchangeEws, &|g| g.host = "192.0.2.4".into()),
            Want::Ok,
        ),
        case(
            "explicit port",
            with("cas1", Caldav, &|g| g.port = 8443),
            Want::Ok,
        ),
        case(
            "bad port",
            with("cas1", Caldav, &|g| g.port = 65536),
            Want::Err(InvalidArgument, "port"),
        ),
        case(
            "bad host",
            with("cas1", Caldav, &|g| g.host = "cas_1".into()),
            Want::Err(InvalidArgument, "host"),
        ),
        case(
            "empty host",
            with("cas1", Caldav, &|g| g.host.clear()),
            Want::Err(InvalidArgument, "host"),
        ),
        case(
            "no kind",
            create(gateway("cas1", CalendarKind::Unspecified)),
            Want::Err(InvalidArgument, "kind"),
        ),
        case(
            "bad id",
            create(gateway("cas 1", Caldav)),
            Want::Err(InvalidArgument, "id"),
        ),
        case_after(
            "many ews",
            vec![create(gateway("cas1", ExchangeEws))],
            create(gateway("cas2", ExchangeEws)),
            Want::Ok,
        ),
        case_after(
            "second webdav",
            vec![create(gateway("w1", ExchangeWebdav))],
            create(gateway("w2", ExchangeWebdav)),
            Want::Err(FailedPrecondition, "kind"),
        ),
        case_after(
            "update the one webdav",
            vec![create(gateway("w1", ExchangeWebdav))],
            update(gateway("w1", ExchangeWebdav)),
            Want::Ok,
        ),
        case_after(
            "webdav after ews",
            vec![create(gateway("cas1", ExchangeEws))],
            create(gateway("w1", ExchangeWebdav)),
            Want::Err(FailedPrecondition, "kind"),
        ),
        case_after(
            "ews after webdav",
            vec![create(gateway("w1", ExchangeWebdav))],
            create(gateway("cas1", ExchangeEws)),
            Want::Err(FailedPrecondition, "kind"),
        ),
        case_after(
            "caldav beside webdav",
            vec![create(gateway("w1", ExchangeWebdav))],
            create(gateway("cd", Caldav)),
            Want::Ok,
        ),
        case_after(
            "switch the only gateway from ews to webdav",
            vec![create(gateway("g", ExchangeEws))],
            update(gateway("g", ExchangeWebdav)),
            Want::Ok,
        ),
    ]);
    let mut h = Harness::new();
    h.ok(&create(gateway("cas1", ExchangeEws)));
    match h.get(ObjectKind::CalendarGateway, "cas1").body {
        Some(Body::CalendarGateway(g)) => assert_eq!(g.port, 443, "port 0 means 443"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn calendar_credentials() {
    use CalendarKind::{ExchangeEws, ExchangeWebdav};
    let key = herald_grpc::objects::calendar_credentials_key(ExchangeEws);
    run_table(vec![
        case(
            "upn",
            create(credentials(ExchangeEws, "svc@corp.example.com")),
            Want::Ok,
        ),
        case(
            "down-level",
            create(credentials(ExchangeEws, "CORP\\svc")),
            Want::Ok,
        ),
        case(
            "plain name",
            create(credentials(ExchangeEws, "svc")),
            Want::Err(InvalidArgument, "account_name"),
        ),
        case(
            "bad upn domain",
            create(credentials(ExchangeEws, "svc@corp_x")),
            Want::Err(InvalidArgument, "account_name"),
        ),
        case(
            "no kind",
            create(credentials(CalendarKind::Unspecified, "svc@x.com")),
            Want::Err(InvalidArgument, "kind"),
        ),
        case_after(
            "exists",
            vec![create(credentials(ExchangeEws, "svc@x.com"))],
            create(credentials(ExchangeEws, "svc2@x.com")),
            Want::Err(AlreadyExists, ""),
        ),
        case_after(
            "delete unused",
            vec![create(credentials(ExchangeEws, "svc@x.com"))],
            delete(ObjectKind::CalendarCredentials, &key),
            Want::Ok,
        ),
        case_after(
            "delete in use",
            vec![
                create(credentials(ExchangeEws, "svc@x.com")),
                create(gateway("cas1", ExchangeEws)),
            ],
            delete(ObjectKind::CalendarCredentials, &key),
            Want::Err(FailedPrecondition, ""),
        ),
        case_after(
            "delete while gateways of another kind exist",
            vec![
                create(credentials(ExchangeEws, "svc@x.com")),
                create(gateway("w", ExchangeWebdav)),
            ],
            delete(ObjectKind::CalendarCredentials, &key),
            Want::Ok,
        ),
    ]);
}
