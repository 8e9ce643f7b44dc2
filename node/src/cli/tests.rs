//! Unit tests without a server: command-line parsing and conversion to requests and edits.

use super::objects::{plan, resolve_password, reversed_pattern};
use super::plan::{modify_object, Plan, View};
use super::{AdminCommand, CliError, GlobalOpts, OutputFormat};
use clap::Parser;
use herald_grpc::config::{
    config_object::Body, AclPatternKind, CalendarAuthMethod, CalendarCredentials, CalendarGateway,
    CalendarKind, ConfigObject, EmailDomain, EmailFederationSettings, FederationRoutingSettings,
    IncomingAclEntry, LocalDomain, ObjectKind, PolicyAction, PolicyDirection, PolicyException,
    RouteType, RoutingNodeSettings, ScramSecret, SipFederatedDomain, SipIntegrationType,
    StaticRoute, TlsPeerSubject, Transport, User, WriteMode, XmppFederationPolicy,
    XmppFederationSettings, XmppSecurityMode,
};

#[derive(Parser, Debug)]
#[command(name = "herald")]
struct TestCli {
    #[command(flatten)]
    global: GlobalOpts,
    #[command(subcommand)]
    cmd: AdminCommand,
}

fn parse(line: &str) -> Result<TestCli, clap::Error> {
    TestCli::try_parse_from(std::iter::once("herald").chain(line.split_whitespace()))
}

/// Parses `line` and plans it, with `stdin` as standard input.
fn plan_of_with(line: &str, stdin: &str) -> Result<Plan, CliError> {
    let cli = parse(line).unwrap_or_else(|e| panic!("{line}: {e}"));
    plan(cli.cmd, &mut stdin.as_bytes())
}

fn plan_of(line: &str) -> Plan {
    plan_of_with(line, "").unwrap_or_else(|e| panic!("{line}: {e}"))
}

fn obj(body: Body, revision: u64) -> ConfigObject {
    ConfigObject {
        revision,
        body: Some(body),
    }
}

#[test]
fn representative_command_lines_parse() {
    let ok = [
        "cluster status",
        "--admin 10.0.0.1:7471 cluster add-node --id 4 --address 127.0.0.4:7470",
        "cluster remove-node --id 4 -o json",
        "domain add example.com --description Main",
        "domain list -o json",
        "domain show example.com",
        "domain update example.com --description New --revision 3",
        "domain remove example.com --revision 7",
        "user add alice@example.com --password pw --mail-id alice@mail.example.com --pin-node 2",
        "user add alice@example.com --password-stdin",
        "user list",
        "user show alice@example.com -o json",
        "user remove alice@example.com",
        "user passwd alice@example.com --password x",
        "user update alice@example.com --calendar-enabled true --calendar-mailbox a@x --pin-node 0",
        "sip-domain add lync.example --type lync --description Partner --direct-federation",
        "sip-domain add aol.com --type aol",
        "sip-domain add sip.example --type generic-sip",
        "sip-domain update lync.example --direct-federation false --revision 2",
        "sip-domain remove lync.example",
        "acl add a1 --kind ip --pattern 10.0.0.1 --description edge",
        "acl add everything --kind all",
        "acl update a1 --kind fqdn --pattern edge.example.com",
        "acl list",
        "static-route add r1 --pattern .com.example.* --next-hop edge.example.com",
        "static-route add r2 --domain example.com --next-hop 10.0.0.9 --port 5060 --transport tcp \
         --route-type user --priority 2 --weight 5 --out-of-service --blocked --description d",
        "static-route update r1 --in-service false --blocked true --domain other.org",
        "static-route show r1",
        "tls-peer add edge.example.com --description Edge",
        "tls-peer update edge.example.com --description x",
        "tls-peer remove edge.example.com --revision 1",
        "email-domain add mail.example.com",
        "email-domain list -o json",
        "calendar-gateway add ews1 --kind ews --host mail.example.com --path /EWS/Exchange.asmx",
        "calendar-gateway add cd --kind caldav --host cal.example.com --port 8443 --not-eligible",
        "calendar-gateway update ews1 --eligible false --port 444",
        "calendar-gateway set-credentials --kind ews --account svc@example.com --password pw \
         --auth ntlmv2 --no-impersonation",
        "calendar-gateway show-credentials --kind webdav",
        "xmpp-federation show",
        "xmpp-federation set --security-mode required --require-client-certs true \
         --sasl-external-inbound false --sasl-outbound true --dialback-secret s \
         --enable-node 1 --enable-node 2 --disable-node 3",
        "xmpp-policy show",
        "xmpp-policy set --default deny",
        "xmpp-policy exception add *.example.com --direction inbound --description partner",
        "xmpp-policy exception remove *.example.com",
        "xmpp-policy exception list -o json",
        "email-federation show",
        "email-federation enable --confirm",
        "email-federation disable --confirm --revision 9",
        "routing-node show",
        "routing-node set 1 2 3",
        "federation-routing show",
        "federation-routing set --fqdn fed.example.com --default-routing-domain aol.com \
         --virtual-ip 10.0.0.100 --server-name lb",
    ];
    for line in ok {
        if let Err(e) = parse(line) {
            panic!("{line}: {e}");
        }
    }
}

#[test]
fn bad_command_lines_are_rejected() {
    let bad = [
        "",
        "domain",
        "domain frobnicate",
        "sip-domain add x.example",
        "sip-domain add x.example --type msn",
        "acl add a1 --kind subnet",
        "static-route add r1 --next-hop h",
        "static-route add r1 --pattern .com.x.* --domain x.com --next-hop h",
        "static-route add r1 --domain x.com",
        "user update a@b --calendar-enabled maybe",
        "cluster add-node --id x --address h:1",
        "xmpp-policy set",
        "xmpp-policy exception add p --direction sideways",
        "routing-node set",
        "calendar-gateway add g --kind exchange --host h",
        "domain list -o yaml",
    ];
    for line in bad {
        assert!(parse(line).is_err(), "{line:?} should not parse");
    }
}

#[test]
fn global_options_anywhere() {
    let cli = parse("domain list --admin 127.0.0.9:1 -o json --admin-token t").expect("parses");
    assert_eq!(cli.global.admin, "127.0.0.9:1");
    assert_eq!(cli.global.output, OutputFormat::Json);
    assert_eq!(cli.global.admin_token.as_deref(), Some("t"));
    let cli = parse("-o table --admin 127.0.0.9:2 cluster status").expect("parses");
    assert_eq!(cli.global.output, OutputFormat::Table);
    assert_eq!(cli.global.admin, "127.0.0.9:2");
}

#[test]
fn reversed_patterns() {
    let cases = [
        ("example.com", Some(".com.example.*")),
        ("Sub.Example.COM.", Some(".com.example.sub.*")),
        ("*.example.com", Some(".com.example.*")),
        ("localhost", Some(".localhost.*")),
        ("my-host_1.example.org", Some(".org.example.my-host_1.*")),
        ("", None),
        ("example..com", None),
        (".example.com", None),
        ("exa mple.com", None),
        ("*", None),
        ("example.com/x", None),
    ];
    for (input, want) in cases {
        match (reversed_pattern(input), want) {
            (Ok(got), Some(want)) => assert_eq!(got, want, "{input:?}"),
            (Err(_), None) => {}
            (got, want) => panic!("{input:?}: got {got:?}, want {want:?}"),
        }
    }
}

#[test]
fn passwords_from_flag_or_stdin() {
    assert_eq!(
        resolve_password(Some("pw".into()), false, &mut "ignored".as_bytes()).ok(),
        Some("pw".to_string())
    );
    assert_eq!(
        resolve_password(None, true, &mut "s3cret\r\nmore\n".as_bytes()).ok(),
        Some("s3cret".to_string())
    );
    assert!(matches!(
        resolve_password(None, true, &mut "\n".as_bytes()),
        Err(CliError::Usage(_))
    ));
    assert!(matches!(
        resolve_password(None, false, &mut "x".as_bytes()),
        Err(CliError::Usage(_))
    ));
}

#[test]
fn keyed_adds_become_creates() {
    let cases: Vec<(&str, Body)> = vec![
        (
            "domain add example.com --description Main",
            Body::Domain(LocalDomain {
                name: "example.com".into(),
                description: "Main".into(),
                user_count: 0,
            }),
        ),
        (
            "sip-domain add lync.example --type lync --direct-federation",
            Body::SipDomain(SipFederatedDomain {
                domain: "lync.example".into(),
                integration_type: SipIntegrationType::Lync as i32,
                direct_federation: true,
                ..Default::default()
            }),
        ),
        (
            "acl add a1 --kind ip --pattern 10.0.0.1",
            Body::Acl(IncomingAclEntry {
                id: "a1".into(),
                pattern_kind: AclPatternKind::Ip as i32,
                pattern: "10.0.0.1".into(),
                ..Default::default()
            }),
        ),
        (
            "static-route add r1 --domain example.com --next-hop edge.example.com",
            Body::StaticRoute(StaticRoute {
                id: "r1".into(),
                destination_pattern: ".com.example.*".into(),
                next_hop: "edge.example.com".into(),
                next_hop_port: 5061,
                route_type: RouteType::Domain as i32,
                transport: Transport::Tls as i32,
                in_service: true,
                ..Default::default()
            }),
        ),
        (
            "static-route add r2 --pattern .* --next-hop h --port 5060 --transport udp \
             --route-type user --priority 3 --weight 4 --out-of-service --blocked",
            Body::StaticRoute(StaticRoute {
                id: "r2".into(),
                destination_pattern: ".*".into(),
                next_hop: "h".into(),
                next_hop_port: 5060,
                route_type: RouteType::User as i32,
                transport: Transport::Udp as i32,
                priority: 3,
                weight: 4,
                in_service: false,
                blocked: true,
                ..Default::default()
            }),
        ),
        (
            "tls-peer add edge.example.com --description Edge",
            Body::TlsPeer(TlsPeerSubject {
                name: "edge.example.com".into(),
                description: "Edge".into(),
            }),
        ),
        (
            "email-domain add mail.example.com",
            Body::EmailDomain(EmailDomain {
                name: "mail.example.com".into(),
                ..Default::default()
            }),
        ),
        (
            "calendar-gateway add ews1 --kind ews --host mail.example.com --not-eligible",
            Body::CalendarGateway(CalendarGateway {
                id: "ews1".into(),
                kind: CalendarKind::ExchangeEws as i32,
                host: "mail.example.com".into(),
                port: 443,
                eligible: false,
                ..Default::default()
            }),
        ),
    ];
    for (line, want) in cases {
        match plan_of(line) {
            Plan::Put(p) => {
                assert_eq!(p.mode, WriteMode::Create as i32, "{line}");
                assert_eq!(p.expected_revision, 0, "{line}");
                assert_eq!(p.object.and_then(|o| o.body), Some(want), "{line}");
            }
            other => panic!("{line}: {other:?}"),
        }
    }
}

#[test]
fn reads_and_deletes() {
    match plan_of("domain show example.com") {
        Plan::Get(r, View::Object) => {
            assert_eq!(
                (r.kind(), r.key.as_str()),
                (ObjectKind::Domain, "example.com")
            )
        }
        other => panic!("{other:?}"),
    }
    match plan_of("user show a@example.com") {
        Plan::Get(r, View::User) => assert_eq!(r.kind(), ObjectKind::User),
        other => panic!("{other:?}"),
    }
    match plan_of("calendar-gateway show-credentials --kind ews") {
        Plan::Get(r, View::Object) => {
            assert_eq!(r.kind(), ObjectKind::CalendarCredentials);
            assert_eq!(r.key, "exchange_ews");
        }
        other => panic!("{other:?}"),
    }
    match plan_of("xmpp-policy exception list") {
        Plan::Get(r, View::Exceptions) => {
            assert_eq!((r.kind(), r.key.as_str()), (ObjectKind::XmppPolicy, ""))
        }
        other => panic!("{other:?}"),
    }
    match plan_of("static-route list") {
        Plan::List(r) => assert_eq!(r.kind(), ObjectKind::StaticRoute),
        other => panic!("{other:?}"),
    }
    match plan_of("tls-peer remove edge --revision 5") {
        Plan::Delete(r) => {
            assert_eq!(r.kind(), ObjectKind::TlsPeer);
            assert_eq!((r.key.as_str(), r.expected_revision), ("edge", 5));
        }
        other => panic!("{other:?}"),
    }
    match plan_of("email-domain remove m.example") {
        Plan::Delete(r) => {
            assert_eq!(r.kind(), ObjectKind::EmailDomain);
            assert_eq!(r.expected_revision, 0);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn users_cluster_and_policy_rpcs() {
    match plan_of("user add a@example.com --password pw --mail-id a@m.example --pin-node 2") {
        Plan::AddUser(r) => {
            assert_eq!(r.jid, "a@example.com");
            assert_eq!(r.password, "pw");
            assert_eq!(r.mail_id, "a@m.example");
            assert_eq!(r.pinned_home_node, 2);
        }
        other => panic!("{other:?}"),
    }
    match plan_of_with("user passwd a@example.com --password-stdin", "fromstdin\n") {
        Ok(Plan::SetPassword(r)) => assert_eq!(
            (r.jid.as_str(), r.password.as_str()),
            ("a@example.com", "fromstdin")
        ),
        other => panic!("{other:?}"),
    }
    match plan_of("cluster add-node --id 4 --address 127.0.0.4:7470") {
        Plan::AddNode(r) => assert_eq!((r.node_id, r.address.as_str()), (4, "127.0.0.4:7470")),
        other => panic!("{other:?}"),
    }
    match plan_of("cluster remove-node --id 4") {
        Plan::RemoveNode(r) => assert_eq!(r.node_id, 4),
        other => panic!("{other:?}"),
    }
    match plan_of("xmpp-policy exception add *.example.com --direction outbound") {
        Plan::AddException(r) => assert_eq!(
            r.exception,
            Some(PolicyException {
                domain_pattern: "*.example.com".into(),
                direction: PolicyDirection::Outbound as i32,
                description: String::new(),
            })
        ),
        other => panic!("{other:?}"),
    }
    match plan_of("xmpp-policy exception remove *.example.com") {
        Plan::RemoveException(r) => assert_eq!(r.domain_pattern, "*.example.com"),
        other => panic!("{other:?}"),
    }
    match plan_of("email-federation enable --confirm") {
        Plan::Put(p) => {
            assert!(p.confirm);
            assert_eq!(p.mode, WriteMode::Upsert as i32);
            assert_eq!(
                p.object.and_then(|o| o.body),
                Some(Body::EmailFederation(EmailFederationSettings {
                    enabled: true
                }))
            );
        }
        other => panic!("{other:?}"),
    }
    match plan_of("calendar-gateway set-credentials --kind caldav --account svc --password pw") {
        Plan::Put(p) => {
            assert_eq!(p.mode, WriteMode::Upsert as i32);
            assert_eq!(
                p.object.and_then(|o| o.body),
                Some(Body::CalendarCredentials(CalendarCredentials {
                    kind: CalendarKind::Caldav as i32,
                    account_name: "svc".into(),
                    password: "pw".into(),
                    auth_method: CalendarAuthMethod::Basic as i32,
                    use_impersonation: true,
                }))
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        plan_of_with("user add a@example.com --password-stdin", ""),
        Err(CliError::Usage(_))
    ));
}

/// Plans `line` (a Modify), applies its edit to `before` and returns the result and the plan's
/// mode and `--revision`.
fn modified(line: &str, before: Body) -> (Body, WriteMode, Option<u64>) {
    match plan_of(line) {
        Plan::Modify(m) => {
            assert_eq!(m.kind, before.kind(), "{line}");
            let mode = m.mode;
            let revision = m.revision;
            let mut o = obj(before, 10);
            modify_object(&mut o, m.edit).unwrap_or_else(|e| panic!("{line}: {e}"));
            (
                o.body.unwrap_or_else(|| panic!("{line}: body gone")),
                mode,
                revision,
            )
        }
        other => panic!("{line}: {other:?}"),
    }
}

#[test]
fn updates_change_only_the_given_fields() {
    let route = StaticRoute {
        id: "r1".into(),
        description: "keep".into(),
        destination_pattern: ".com.a.*".into(),
        next_hop: "h".into(),
        next_hop_port: 5061,
        route_type: RouteType::Domain as i32,
        transport: Transport::Tls as i32,
        priority: 1,
        weight: 1,
        in_service: true,
        blocked: false,
    };
    let (b, mode, rev) = modified(
        "static-route update r1 --domain b.org --blocked true --transport tcp",
        Body::StaticRoute(route.clone()),
    );
    assert_eq!((mode, rev), (WriteMode::Update, None));
    assert_eq!(
        b,
        Body::StaticRoute(StaticRoute {
            destination_pattern: ".org.b.*".into(),
            blocked: true,
            transport: Transport::Tcp as i32,
            ..route
        })
    );

    let user = User {
        jid: "a@example.com".into(),
        mail_id: "old@m".into(),
        scram_sha256: Some(ScramSecret {
            iterations: 4096,
            ..Default::default()
        }),
        ..Default::default()
    };
    let (b, _, rev) = modified(
        "user update a@example.com --calendar-enabled true --pin-node 3 --revision 7",
        Body::User(user.clone()),
    );
    assert_eq!(rev, Some(7));
    assert_eq!(
        b,
        Body::User(User {
            calendar_enabled: true,
            pinned_home_node: 3,
            ..user
        })
    );

    let (b, _, _) = modified(
        "sip-domain update s.example --type aol --direct-federation true",
        Body::SipDomain(SipFederatedDomain {
            domain: "s.example".into(),
            description: "d".into(),
            integration_type: SipIntegrationType::Lync as i32,
            ..Default::default()
        }),
    );
    assert_eq!(
        b,
        Body::SipDomain(SipFederatedDomain {
            domain: "s.example".into(),
            description: "d".into(),
            integration_type: SipIntegrationType::Aol as i32,
            direct_federation: true,
            ..Default::default()
        })
    );

    let (b, _, _) = modified(
        "calendar-gateway update g --eligible false --host new.example",
        Body::CalendarGateway(CalendarGateway {
            id: "g".into(),
            host: "old.example".into(),
            port: 443,
            eligible: true,
            ..Default::default()
        }),
    );
    assert_eq!(
        b,
        Body::CalendarGateway(CalendarGateway {
            id: "g".into(),
            host: "new.example".into(),
            port: 443,
            eligible: false,
            ..Default::default()
        })
    );

    let (b, _, _) = modified(
        "tls-peer update p --description new",
        Body::TlsPeer(TlsPeerSubject {
            name: "p".into(),
            description: "old".into(),
        }),
    );
    assert_eq!(
        b,
        Body::TlsPeer(TlsPeerSubject {
            name: "p".into(),
            description: "new".into(),
        })
    );
}

#[test]
fn singleton_sets_upsert() {
    let (b, mode, _) = modified(
        "xmpp-federation set --security-mode optional --enable-node 3 --enable-node 1 \
         --disable-node 2 --sasl-outbound true",
        Body::XmppFederation(XmppFederationSettings {
            enabled_nodes: vec![1, 2],
            dialback_secret: "keep".into(),
            ..Default::default()
        }),
    );
    assert_eq!(mode, WriteMode::Upsert);
    assert_eq!(
        b,
        Body::XmppFederation(XmppFederationSettings {
            security_mode: XmppSecurityMode::TlsOptional as i32,
            sasl_outbound: true,
            dialback_secret: "keep".into(),
            enabled_nodes: vec![1, 3],
            ..Default::default()
        })
    );
    let exceptions = vec![PolicyException {
        domain_pattern: "x.org".into(),
        ..Default::default()
    }];
    let (b, _, _) = modified(
        "xmpp-policy set --default deny",
        Body::XmppPolicy(XmppFederationPolicy {
            default_action: PolicyAction::Allow as i32,
            exceptions: exceptions.clone(),
        }),
    );
    assert_eq!(
        b,
        Body::XmppPolicy(XmppFederationPolicy {
            default_action: PolicyAction::Deny as i32,
            exceptions,
        })
    );
    let (b, _, rev) = modified(
        "routing-node set 2 1 3 --revision 4",
        Body::RoutingNode(RoutingNodeSettings::default()),
    );
    assert_eq!(rev, Some(4));
    assert_eq!(
        b,
        Body::RoutingNode(RoutingNodeSettings {
            node_order: vec![2, 1, 3]
        })
    );
    let (b, _, _) = modified(
        "federation-routing set --fqdn fed.example.com",
        Body::FederationRouting(FederationRoutingSettings {
            server_name: "lb".into(),
            ..Default::default()
        }),
    );
    assert_eq!(
        b,
        Body::FederationRouting(FederationRoutingSettings {
            federation_routing_fqdn: "fed.example.com".into(),
            server_name: "lb".into(),
            ..Default::default()
        })
    );
}

#[test]
fn edit_of_wrong_kind_is_an_error() {
    match plan_of("domain update example.com --description x") {
        Plan::Modify(m) => {
            let mut o = obj(Body::TlsPeer(TlsPeerSubject::default()), 1);
            assert!(matches!(
                modify_object(&mut o, m.edit),
                Err(CliError::WrongKind {
                    want: "domain",
                    got: "tls-peer"
                })
            ));
        }
        other => panic!("{other:?}"),
    }
}

/// The lead's binary flattens [`AdminCommand`] next to `agent`; that shape must parse too.
#[test]
fn flattens_next_to_other_top_level_commands() {
    #[derive(clap::Args, Debug)]
    struct AgentArgs {
        #[arg(long)]
        node_id: Option<u64>,
    }
    #[derive(clap::Subcommand, Debug)]
    enum Top {
        Agent(AgentArgs),
        #[command(flatten)]
        Admin(AdminCommand),
    }
    #[derive(Parser, Debug)]
    #[command(name = "herald")]
    struct Cli {
        #[command(flatten)]
        global: GlobalOpts,
        #[command(subcommand)]
        command: Top,
    }
    let c = Cli::try_parse_from(["herald", "agent", "--node-id", "2"]).expect("agent parses");
    assert!(matches!(
        c.command,
        Top::Agent(AgentArgs { node_id: Some(2) })
    ));
    let c = Cli::try_parse_from(["herald", "domain", "list", "-o", "json"]).expect("parses");
    assert!(matches!(c.command, Top::Admin(AdminCommand::Domain(_))));
    assert_eq!(c.global.output, OutputFormat::Json);
}
