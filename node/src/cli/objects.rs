//! Conversion of parsed commands into [`Plan`]s: request messages and edits. No I/O here
//! except reading a password from the given reader when `--password-stdin` asks for it.

use super::args::{
    AclCmd, CalendarCmd, CalendarKindArg, DomainCmd, NamedCmd, SipDomainCmd, StaticRouteCmd,
    UserCmd,
};
use super::args_singletons::{
    ClusterCmd, EmailFederationCmd, FederationRoutingCmd, LogCmd, PolicyExceptionCmd,
    RoutingNodeCmd, XmppFederationCmd, XmppPolicyCmd,
};
use super::plan::{Edit, Modify, Plan, View};
use super::{AdminCommand, CliError};
use herald_grpc::admin::{
    AddNodeRequest, AddUserRequest, DeleteRequest, GetRequest, ListRequest, PutRequest,
    RemoveNodeRequest, SetPasswordRequest,
};
use herald_grpc::config::{
    config_object::Body, AddPolicyException, CalendarAuthMethod, CalendarCredentials,
    CalendarGateway, CalendarKind, ConfigObject, EmailDomain, EmailFederationSettings,
    IncomingAclEntry, LocalDomain, ObjectKind, PolicyException, RemovePolicyException,
    SipFederatedDomain, StaticRoute, TlsPeerSubject, WriteMode,
};
use herald_grpc::objects::{calendar_credentials_key, kind_name};
use std::io::BufRead;

/// Turns `cmd` into the RPCs it performs. `stdin` is read only for `--password-stdin`.
pub(crate) fn plan(cmd: AdminCommand, stdin: &mut dyn BufRead) -> Result<Plan, CliError> {
    match cmd {
        AdminCommand::Cluster(c) => Ok(cluster(c)),
        AdminCommand::Domain(c) => Ok(domain(c)),
        AdminCommand::User(c) => user(c, stdin),
        AdminCommand::SipDomain(c) => Ok(sip_domain(c)),
        AdminCommand::Acl(c) => Ok(acl(c)),
        AdminCommand::StaticRoute(c) => static_route(c),
        AdminCommand::TlsPeer(c) => Ok(named(ObjectKind::TlsPeer, c)),
        AdminCommand::EmailDomain(c) => Ok(named(ObjectKind::EmailDomain, c)),
        AdminCommand::CalendarGateway(c) => calendar(c, stdin),
        AdminCommand::XmppFederation(c) => Ok(xmpp_federation(c)),
        AdminCommand::XmppPolicy(c) => Ok(xmpp_policy(c)),
        AdminCommand::EmailFederation(c) => Ok(email_federation(c)),
        AdminCommand::RoutingNode(c) => Ok(routing_node(c)),
        AdminCommand::FederationRouting(c) => Ok(federation_routing(c)),
        AdminCommand::Log(c) => Ok(log(c)),
        AdminCommand::Troubleshoot(_) => Err(CliError::Usage(
            "troubleshoot is not a plan of admin calls".into(),
        )),
        AdminCommand::Audit(_) => Err(CliError::Usage("audit is not a plan of admin calls".into())),
    }
}

/// Derives the reversed destination pattern of a static route from a domain:
/// `example.com` → `.com.example.*`. A leading `*.` and a trailing dot are ignored.
pub fn reversed_pattern(domain: &str) -> Result<String, CliError> {
    let d = domain.trim().trim_end_matches('.');
    let d = d.strip_prefix("*.").unwrap_or(d).to_ascii_lowercase();
    let bad = |why: &str| CliError::Usage(format!("--domain {domain:?}: {why}"));
    if d.is_empty() {
        return Err(bad("empty domain"));
    }
    let labels: Vec<&str> = d.split('.').collect();
    for label in &labels {
        if label.is_empty() {
            return Err(bad("empty label"));
        }
        if !label
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(bad("labels may hold only letters, digits, '-' and '_'"));
        }
    }
    let mut out = String::with_capacity(d.len() + 3);
    for label in labels.iter().rev() {
        out.push('.');
        out.push_str(label);
    }
    out.push_str(".*");
    Ok(out)
}

/// Resolves a password from the flag/env value or, with `from_stdin`, the first line of `stdin`.
pub(crate) fn resolve_password(
    value: Option<String>,
    from_stdin: bool,
    stdin: &mut dyn BufRead,
) -> Result<String, CliError> {
    let pw = if from_stdin {
        let mut line = String::new();
        stdin.read_line(&mut line).map_err(CliError::Stdin)?;
        line.trim_end_matches(['\r', '\n']).to_string()
    } else {
        value.ok_or_else(|| {
            CliError::Usage(
                "a password is required: --password, the environment variable or --password-stdin"
                    .into(),
            )
        })?
    };
    if pw.is_empty() {
        return Err(CliError::Usage("the password is empty".into()));
    }
    Ok(pw)
}

fn get(kind: ObjectKind, key: String, view: View) -> Plan {
    Plan::Get(
        GetRequest {
            kind: kind as i32,
            key,
            linearizable: true,
        },
        view,
    )
}

fn list(kind: ObjectKind) -> Plan {
    Plan::List(ListRequest {
        kind: kind as i32,
        linearizable: true,
    })
}

fn create(body: Body) -> Plan {
    Plan::Put(PutRequest {
        object: Some(ConfigObject::new(body)),
        mode: WriteMode::Create as i32,
        expected_revision: 0,
        confirm: false,
    })
}

fn delete(kind: ObjectKind, key: String, revision: Option<u64>) -> Plan {
    Plan::Delete(DeleteRequest {
        kind: kind as i32,
        key,
        expected_revision: revision.unwrap_or(0),
    })
}

fn modify(kind: ObjectKind, key: String, revision: Option<u64>, edit: Edit) -> Plan {
    let mode = if herald_grpc::objects::is_singleton(kind) {
        WriteMode::Upsert
    } else {
        WriteMode::Update
    };
    Plan::Modify(Modify {
        kind,
        key,
        mode,
        revision,
        edit,
    })
}

/// The error for an edit applied to an object of another kind.
fn wrong(want: ObjectKind, body: &Body) -> CliError {
    CliError::WrongKind {
        want: kind_name(want),
        got: kind_name(body.kind()),
    }
}

/// Sets `field` to `value` when the flag was given.
fn set<T>(field: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *field = v;
    }
}

fn cluster(c: ClusterCmd) -> Plan {
    match c {
        ClusterCmd::Status => Plan::Status,
        ClusterCmd::AddNode { id, address } => Plan::AddNode(AddNodeRequest {
            node_id: id,
            address,
        }),
        ClusterCmd::RemoveNode { id } => Plan::RemoveNode(RemoveNodeRequest { node_id: id }),
        ClusterCmd::ReloadCerts { this_node_only } => {
            Plan::ReloadCerts(herald_grpc::admin::ReloadCertsRequest { this_node_only })
        }
    }
}

fn domain(c: DomainCmd) -> Plan {
    const K: ObjectKind = ObjectKind::Domain;
    match c {
        DomainCmd::Add { name, description } => create(Body::Domain(LocalDomain {
            name,
            description: description.unwrap_or_default(),
            user_count: 0,
        })),
        DomainCmd::List => list(K),
        DomainCmd::Show { name } => get(K, name, View::Object),
        DomainCmd::Update {
            name,
            description,
            revision,
        } => modify(
            K,
            name,
            revision,
            Box::new(move |body| match body {
                Body::Domain(d) => {
                    set(&mut d.description, description);
                    Ok(())
                }
                other => Err(wrong(K, other)),
            }),
        ),
        DomainCmd::Remove { name, revision } => delete(K, name, revision),
    }
}

fn user(c: UserCmd, stdin: &mut dyn BufRead) -> Result<Plan, CliError> {
    const K: ObjectKind = ObjectKind::User;
    Ok(match c {
        UserCmd::Add {
            jid,
            password,
            mail_id,
            pin_node,
        } => Plan::AddUser(AddUserRequest {
            jid,
            password: resolve_password(password.password, password.password_stdin, stdin)?,
            mail_id: mail_id.unwrap_or_default(),
            pinned_home_node: pin_node.unwrap_or(0),
        }),
        UserCmd::List => list(K),
        UserCmd::Show { jid } => get(K, jid, View::User),
        UserCmd::Remove { jid, revision } => delete(K, jid, revision),
        UserCmd::Passwd {
            jid,
            password,
            revision,
        } => Plan::SetPassword(SetPasswordRequest {
            jid,
            password: resolve_password(password.password, password.password_stdin, stdin)?,
            expected_revision: revision.unwrap_or(0),
        }),
        UserCmd::Update {
            jid,
            mail_id,
            pin_node,
            calendar_enabled,
            calendar_mailbox,
            revision,
        } => modify(
            K,
            jid,
            revision,
            Box::new(move |body| match body {
                Body::User(u) => {
                    set(&mut u.mail_id, mail_id);
                    set(&mut u.pinned_home_node, pin_node);
                    set(&mut u.calendar_enabled, calendar_enabled);
                    set(&mut u.calendar_mailbox, calendar_mailbox);
                    Ok(())
                }
                other => Err(wrong(K, other)),
            }),
        ),
    })
}

fn sip_domain(c: SipDomainCmd) -> Plan {
    const K: ObjectKind = ObjectKind::SipDomain;
    match c {
        SipDomainCmd::Add {
            domain,
            integration_type,
            description,
            direct_federation,
        } => create(Body::SipDomain(SipFederatedDomain {
            domain,
            description: description.unwrap_or_default(),
            integration_type: herald_grpc::config::SipIntegrationType::from(integration_type)
                as i32,
            direct_federation,
            incoming_acl_id: String::new(),
        })),
        SipDomainCmd::List => list(K),
        SipDomainCmd::Show { domain } => get(K, domain, View::Object),
        SipDomainCmd::Update {
            domain,
            integration_type,
            description,
            direct_federation,
            revision,
        } => modify(
            K,
            domain,
            revision,
            Box::new(move |body| match body {
                Body::SipDomain(d) => {
                    if let Some(t) = integration_type {
                        d.set_integration_type(t.into());
                    }
                    set(&mut d.description, description);
                    set(&mut d.direct_federation, direct_federation);
                    Ok(())
                }
                other => Err(wrong(K, other)),
            }),
        ),
        SipDomainCmd::Remove { domain, revision } => delete(K, domain, revision),
    }
}

fn acl(c: AclCmd) -> Plan {
    const K: ObjectKind = ObjectKind::Acl;
    match c {
        AclCmd::Add {
            id,
            kind,
            pattern,
            description,
        } => create(Body::Acl(IncomingAclEntry {
            id,
            description: description.unwrap_or_default(),
            pattern_kind: herald_grpc::config::AclPatternKind::from(kind) as i32,
            pattern: pattern.unwrap_or_default(),
            owner_federated_domain: String::new(),
        })),
        AclCmd::List => list(K),
        AclCmd::Show { id } => get(K, id, View::Object),
        AclCmd::Update {
            id,
            kind,
            pattern,
            description,
            revision,
        } => modify(
            K,
            id,
            revision,
            Box::new(move |body| match body {
                Body::Acl(a) => {
                    if let Some(k) = kind {
                        a.set_pattern_kind(k.into());
                    }
                    set(&mut a.pattern, pattern);
                    set(&mut a.description, description);
                    Ok(())
                }
                other => Err(wrong(K, other)),
            }),
        ),
        AclCmd::Remove { id, revision } => delete(K, id, revision),
    }
}

/// The destination pattern from `--pattern` or `--domain`, if either was given.
fn destination(
    pattern: Option<String>,
    domain: Option<String>,
) -> Result<Option<String>, CliError> {
    match (pattern, domain) {
        (Some(p), None) => Ok(Some(p)),
        (None, Some(d)) => reversed_pattern(&d).map(Some),
        (None, None) => Ok(None),
        (Some(_), Some(_)) => Err(CliError::Usage(
            "give either --pattern or --domain, not both".into(),
        )),
    }
}

fn static_route(c: StaticRouteCmd) -> Result<Plan, CliError> {
    const K: ObjectKind = ObjectKind::StaticRoute;
    Ok(match c {
        StaticRouteCmd::Add {
            id,
            pattern,
            domain,
            next_hop,
            port,
            transport,
            route_type,
            priority,
            weight,
            out_of_service,
            blocked,
            description,
        } => {
            let destination_pattern = destination(pattern, domain)?.ok_or_else(|| {
                CliError::Usage("a destination is required: --pattern or --domain".into())
            })?;
            create(Body::StaticRoute(StaticRoute {
                id,
                description: description.unwrap_or_default(),
                destination_pattern,
                next_hop,
                next_hop_port: port,
                route_type: herald_grpc::config::RouteType::from(route_type) as i32,
                transport: herald_grpc::config::Transport::from(transport) as i32,
                priority,
                weight,
                in_service: !out_of_service,
                blocked,
            }))
        }
        StaticRouteCmd::List => list(K),
        StaticRouteCmd::Show { id } => get(K, id, View::Object),
        StaticRouteCmd::Update {
            id,
            pattern,
            domain,
            next_hop,
            port,
            transport,
            route_type,
            priority,
            weight,
            in_service,
            blocked,
            description,
            revision,
        } => {
            let dest = destination(pattern, domain)?;
            modify(
                K,
                id,
                revision,
                Box::new(move |body| match body {
                    Body::StaticRoute(r) => {
                        set(&mut r.destination_pattern, dest);
                        set(&mut r.next_hop, next_hop);
                        set(&mut r.next_hop_port, port);
                        if let Some(t) = transport {
                            r.set_transport(t.into());
                        }
                        if let Some(t) = route_type {
                            r.set_route_type(t.into());
                        }
                        set(&mut r.priority, priority);
                        set(&mut r.weight, weight);
                        set(&mut r.in_service, in_service);
                        set(&mut r.blocked, blocked);
                        set(&mut r.description, description);
                        Ok(())
                    }
                    other => Err(wrong(K, other)),
                }),
            )
        }
        StaticRouteCmd::Remove { id, revision } => delete(K, id, revision),
    })
}

/// The body of a name-and-description object (`tls-peer`, `email-domain`).
fn named_body(kind: ObjectKind, name: String, description: String) -> Body {
    if kind == ObjectKind::EmailDomain {
        Body::EmailDomain(EmailDomain {
            name,
            description,
            management: 0,
        })
    } else {
        Body::TlsPeer(TlsPeerSubject { name, description })
    }
}

fn named(kind: ObjectKind, c: NamedCmd) -> Plan {
    match c {
        NamedCmd::Add { name, description } => {
            create(named_body(kind, name, description.unwrap_or_default()))
        }
        NamedCmd::List => list(kind),
        NamedCmd::Show { name } => get(kind, name, View::Object),
        NamedCmd::Update {
            name,
            description,
            revision,
        } => modify(
            kind,
            name,
            revision,
            Box::new(move |body| {
                let field = match body {
                    Body::TlsPeer(p) if kind == ObjectKind::TlsPeer => &mut p.description,
                    Body::EmailDomain(d) if kind == ObjectKind::EmailDomain => &mut d.description,
                    other => return Err(wrong(kind, other)),
                };
                set(field, description);
                Ok(())
            }),
        ),
        NamedCmd::Remove { name, revision } => delete(kind, name, revision),
    }
}

/// The default authentication method of a calendar kind.
fn default_auth(kind: CalendarKindArg) -> CalendarAuthMethod {
    match kind {
        CalendarKindArg::Ews | CalendarKindArg::Webdav => CalendarAuthMethod::Ntlm,
        CalendarKindArg::Caldav => CalendarAuthMethod::Basic,
    }
}

/// Why `--kind webdav` is refused.
const WEBDAV_REFUSED: &str = "--kind webdav: Exchange WebDAV is not supported (Exchange 2010 removed WebDAV calendar access and 2007 is long out of support); use --kind ews or --kind caldav";

/// A gateway kind Herald can use for a new or changed gateway.
fn supported_kind(kind: CalendarKindArg) -> Result<CalendarKindArg, CliError> {
    match kind {
        CalendarKindArg::Webdav => Err(CliError::Usage(WEBDAV_REFUSED.into())),
        k => Ok(k),
    }
}

fn calendar(c: CalendarCmd, stdin: &mut dyn BufRead) -> Result<Plan, CliError> {
    const K: ObjectKind = ObjectKind::CalendarGateway;
    Ok(match c {
        CalendarCmd::Add {
            id,
            kind,
            host,
            port,
            path,
            not_eligible,
            description,
        } => create(Body::CalendarGateway(CalendarGateway {
            kind: CalendarKind::from(supported_kind(kind)?) as i32,
            id,
            description: description.unwrap_or_default(),
            host,
            port,
            path: path.unwrap_or_default(),
            eligible: !not_eligible,
        })),
        CalendarCmd::List => list(K),
        CalendarCmd::Status => Plan::CalendarStatus,
        CalendarCmd::Show { id } => get(K, id, View::Object),
        CalendarCmd::Update {
            id,
            kind,
            host,
            port,
            path,
            eligible,
            description,
            revision,
        } => {
            kind.map(supported_kind).transpose()?;
            modify(
                K,
                id,
                revision,
                Box::new(move |body| match body {
                    Body::CalendarGateway(g) => {
                        if let Some(k) = kind {
                            g.set_kind(k.into());
                        }
                        set(&mut g.host, host);
                        set(&mut g.port, port);
                        set(&mut g.path, path);
                        set(&mut g.eligible, eligible);
                        set(&mut g.description, description);
                        Ok(())
                    }
                    other => Err(wrong(K, other)),
                }),
            )
        }
        CalendarCmd::Remove { id, revision } => delete(K, id, revision),
        CalendarCmd::SetCredentials {
            kind,
            account,
            password,
            auth,
            no_impersonation,
            revision,
        } => Plan::Put(PutRequest {
            object: Some(ConfigObject::new(Body::CalendarCredentials(
                CalendarCredentials {
                    kind: CalendarKind::from(kind) as i32,
                    account_name: account,
                    password: resolve_password(password.password, password.password_stdin, stdin)?,
                    auth_method: auth.map(Into::into).unwrap_or(default_auth(kind)) as i32,
                    use_impersonation: !no_impersonation,
                },
            ))),
            mode: WriteMode::Upsert as i32,
            expected_revision: revision.unwrap_or(0),
            confirm: false,
        }),
        CalendarCmd::ShowCredentials { kind } => get(
            ObjectKind::CalendarCredentials,
            calendar_credentials_key(kind.into()),
            View::Object,
        ),
    })
}

fn xmpp_federation(c: XmppFederationCmd) -> Plan {
    const K: ObjectKind = ObjectKind::XmppFederation;
    match c {
        XmppFederationCmd::Show => get(K, String::new(), View::Object),
        XmppFederationCmd::Set {
            security_mode,
            require_client_certs,
            sasl_external_inbound,
            sasl_outbound,
            dialback_secret,
            enable_node,
            disable_node,
            revision,
        } => modify(
            K,
            String::new(),
            revision,
            Box::new(move |body| match body {
                Body::XmppFederation(s) => {
                    if let Some(m) = security_mode {
                        s.set_security_mode(m.into());
                    }
                    set(&mut s.require_client_certificates, require_client_certs);
                    set(&mut s.sasl_external_inbound, sasl_external_inbound);
                    set(&mut s.sasl_outbound, sasl_outbound);
                    set(&mut s.dialback_secret, dialback_secret);
                    for n in enable_node {
                        if !s.enabled_nodes.contains(&n) {
                            s.enabled_nodes.push(n);
                        }
                    }
                    s.enabled_nodes.retain(|n| !disable_node.contains(n));
                    s.enabled_nodes.sort_unstable();
                    Ok(())
                }
                other => Err(wrong(K, other)),
            }),
        ),
    }
}

fn xmpp_policy(c: XmppPolicyCmd) -> Plan {
    const K: ObjectKind = ObjectKind::XmppPolicy;
    match c {
        XmppPolicyCmd::Show => get(K, String::new(), View::Object),
        XmppPolicyCmd::Set {
            default_action,
            revision,
        } => modify(
            K,
            String::new(),
            revision,
            Box::new(move |body| match body {
                Body::XmppPolicy(p) => {
                    p.set_default_action(default_action.into());
                    Ok(())
                }
                other => Err(wrong(K, other)),
            }),
        ),
        XmppPolicyCmd::Exception(PolicyExceptionCmd::Add {
            pattern,
            direction,
            description,
        }) => Plan::AddException(AddPolicyException {
            exception: Some(PolicyException {
                domain_pattern: pattern,
                direction: herald_grpc::config::PolicyDirection::from(direction) as i32,
                description: description.unwrap_or_default(),
            }),
        }),
        XmppPolicyCmd::Exception(PolicyExceptionCmd::Remove { pattern }) => {
            Plan::RemoveException(RemovePolicyException {
                domain_pattern: pattern,
            })
        }
        XmppPolicyCmd::Exception(PolicyExceptionCmd::List) => {
            get(K, String::new(), View::Exceptions)
        }
    }
}

fn email_federation(c: EmailFederationCmd) -> Plan {
    let (enabled, confirm, revision) = match c {
        EmailFederationCmd::Show => {
            return get(ObjectKind::EmailFederation, String::new(), View::Object)
        }
        EmailFederationCmd::Enable { confirm, revision } => (true, confirm, revision),
        EmailFederationCmd::Disable { confirm, revision } => (false, confirm, revision),
    };
    Plan::Put(PutRequest {
        object: Some(ConfigObject::new(Body::EmailFederation(
            EmailFederationSettings { enabled },
        ))),
        mode: WriteMode::Upsert as i32,
        expected_revision: revision.unwrap_or(0),
        confirm,
    })
}

fn routing_node(c: RoutingNodeCmd) -> Plan {
    const K: ObjectKind = ObjectKind::RoutingNode;
    match c {
        RoutingNodeCmd::Show => get(K, String::new(), View::Object),
        RoutingNodeCmd::Set {
            node_id,
            fallbacks,
            revision,
        } => {
            let order: Vec<u64> = std::iter::once(node_id).chain(fallbacks).collect();
            modify(
                K,
                String::new(),
                revision,
                Box::new(move |body| match body {
                    Body::RoutingNode(r) => {
                        r.node_order = order;
                        Ok(())
                    }
                    other => Err(wrong(K, other)),
                }),
            )
        }
    }
}

fn federation_routing(c: FederationRoutingCmd) -> Plan {
    const K: ObjectKind = ObjectKind::FederationRouting;
    match c {
        FederationRoutingCmd::Show => get(K, String::new(), View::Object),
        FederationRoutingCmd::Set {
            fqdn,
            default_routing_domain,
            virtual_ip,
            server_name,
            revision,
        } => modify(
            K,
            String::new(),
            revision,
            Box::new(move |body| match body {
                Body::FederationRouting(f) => {
                    set(&mut f.federation_routing_fqdn, fqdn);
                    set(
                        &mut f.default_federation_routing_domain,
                        default_routing_domain,
                    );
                    set(&mut f.virtual_ip_address, virtual_ip);
                    set(&mut f.server_name, server_name);
                    Ok(())
                }
                other => Err(wrong(K, other)),
            }),
        ),
    }
}

fn log(c: LogCmd) -> Plan {
    use herald_grpc::admin::{GetLogFilterRequest, SetLogFilterRequest};
    match c {
        LogCmd::Show { all_nodes } => Plan::GetLogFilter(GetLogFilterRequest { all_nodes }),
        LogCmd::Set {
            directives,
            all_nodes,
        } => Plan::SetLogFilter(SetLogFilterRequest {
            directives,
            all_nodes,
            reset: false,
        }),
        LogCmd::Reset { all_nodes } => Plan::SetLogFilter(SetLogFilterRequest {
            directives: String::new(),
            all_nodes,
            reset: true,
        }),
    }
}
