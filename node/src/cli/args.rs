//! Command-line definitions of the keyed objects: domains, users, SIP domains, ACL entries,
//! static routes, TLS peers, email domains and calendar gateways.

use clap::{Args, Subcommand, ValueEnum};
use herald_grpc::config::{
    AclPatternKind, CalendarAuthMethod, CalendarKind, RouteType, SipIntegrationType, Transport,
};

/// A password for a user: `--password`, env `HERALD_USER_PASSWORD`, or `--password-stdin`.
#[derive(Args, Debug, Clone, Default)]
pub struct PasswordArgs {
    /// The password (prefer HERALD_USER_PASSWORD or --password-stdin to keep it out of history).
    #[arg(long, env = "HERALD_USER_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    /// Read the password from the first line of standard input.
    #[arg(long)]
    pub password_stdin: bool,
}

/// The calendar service account password: `--password`, env `HERALD_CALENDAR_PASSWORD`, or
/// `--password-stdin`.
#[derive(Args, Debug, Clone, Default)]
pub struct CalendarPasswordArgs {
    /// The password (prefer HERALD_CALENDAR_PASSWORD or --password-stdin).
    #[arg(long, env = "HERALD_CALENDAR_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    /// Read the password from the first line of standard input.
    #[arg(long)]
    pub password_stdin: bool,
}

/// `herald domain ...`
#[derive(Subcommand, Debug, Clone)]
pub enum DomainCmd {
    /// Adds a local domain.
    Add {
        /// Domain name.
        name: String,
        /// Description.
        #[arg(long)]
        description: Option<String>,
    },
    /// Lists local domains.
    List,
    /// Shows one domain.
    Show {
        /// Domain name.
        name: String,
    },
    /// Changes a domain's description.
    Update {
        /// Domain name.
        name: String,
        /// New description.
        #[arg(long)]
        description: Option<String>,
        /// Expected revision (default: the one read).
        #[arg(long)]
        revision: Option<u64>,
    },
    /// Removes a domain.
    Remove {
        /// Domain name.
        name: String,
        /// Expected revision.
        #[arg(long)]
        revision: Option<u64>,
    },
}

/// `herald user ...`
#[derive(Subcommand, Debug, Clone)]
pub enum UserCmd {
    /// Adds a user with a password.
    Add {
        /// Bare JID, localpart@domain.
        jid: String,
        /// The user's password.
        #[command(flatten)]
        password: PasswordArgs,
        /// Full email address used for email for federation.
        #[arg(long)]
        mail_id: Option<String>,
        /// Pin the user to this node id.
        #[arg(long)]
        pin_node: Option<u64>,
    },
    /// Lists users.
    List,
    /// Shows one user and its home node.
    Show {
        /// Bare JID.
        jid: String,
    },
    /// Removes a user.
    Remove {
        /// Bare JID.
        jid: String,
        /// Expected revision.
        #[arg(long)]
        revision: Option<u64>,
    },
    /// Sets a user's password.
    Passwd {
        /// Bare JID.
        jid: String,
        /// The new password.
        #[command(flatten)]
        password: PasswordArgs,
        /// Expected revision.
        #[arg(long)]
        revision: Option<u64>,
    },
    /// Changes the given fields of a user.
    Update {
        /// Bare JID.
        jid: String,
        /// Full email address (empty to clear).
        #[arg(long)]
        mail_id: Option<String>,
        /// Pin to this node id (0: unpin, placement by hashing).
        #[arg(long)]
        pin_node: Option<u64>,
        /// Enable calendar presence.
        #[arg(long, value_name = "true|false")]
        calendar_enabled: Option<bool>,
        /// Calendar mailbox override (empty to clear).
        #[arg(long)]
        calendar_mailbox: Option<String>,
        /// Expected revision (default: the one read).
        #[arg(long)]
        revision: Option<u64>,
    },
}

/// SIP integration type on the command line.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum SipTypeArg {
    /// Microsoft OCS / Lync / Skype for Business / Office 365.
    Lync,
    /// AOL.
    Aol,
    /// Any other SIP federation.
    GenericSip,
}

impl From<SipTypeArg> for SipIntegrationType {
    fn from(a: SipTypeArg) -> Self {
        match a {
            SipTypeArg::Lync => SipIntegrationType::Lync,
            SipTypeArg::Aol => SipIntegrationType::Aol,
            SipTypeArg::GenericSip => SipIntegrationType::GenericSip,
        }
    }
}

/// `herald sip-domain ...`
#[derive(Subcommand, Debug, Clone)]
pub enum SipDomainCmd {
    /// Adds a SIP federated domain.
    Add {
        /// Domain name.
        domain: String,
        /// Integration type.
        #[arg(long = "type", value_enum)]
        integration_type: SipTypeArg,
        /// Description shown to end users.
        #[arg(long)]
        description: Option<String>,
        /// Federate directly (no intercluster routing).
        #[arg(long)]
        direct_federation: bool,
    },
    /// Lists SIP federated domains.
    List,
    /// Shows one SIP federated domain.
    Show {
        /// Domain name.
        domain: String,
    },
    /// Changes the given fields of a SIP federated domain.
    Update {
        /// Domain name.
        domain: String,
        /// Integration type.
        #[arg(long = "type", value_enum)]
        integration_type: Option<SipTypeArg>,
        /// Description shown to end users.
        #[arg(long)]
        description: Option<String>,
        /// Direct federation.
        #[arg(long, value_name = "true|false")]
        direct_federation: Option<bool>,
        /// Expected revision (default: the one read).
        #[arg(long)]
        revision: Option<u64>,
    },
    /// Removes a SIP federated domain (and its automatic ACL entry).
    Remove {
        /// Domain name.
        domain: String,
        /// Expected revision.
        #[arg(long)]
        revision: Option<u64>,
    },
}

/// ACL pattern kind on the command line.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum AclKindArg {
    /// An IP address.
    Ip,
    /// A host name.
    Fqdn,
    /// A domain.
    Domain,
    /// Everything.
    All,
}

impl From<AclKindArg> for AclPatternKind {
    fn from(a: AclKindArg) -> Self {
        match a {
            AclKindArg::Ip => AclPatternKind::Ip,
            AclKindArg::Fqdn => AclPatternKind::Fqdn,
            AclKindArg::Domain => AclPatternKind::Domain,
            AclKindArg::All => AclPatternKind::All,
        }
    }
}

/// `herald acl ...`
#[derive(Subcommand, Debug, Clone)]
pub enum AclCmd {
    /// Adds an incoming ACL entry.
    Add {
        /// Entry id.
        id: String,
        /// Pattern kind.
        #[arg(long, value_enum)]
        kind: AclKindArg,
        /// IP address, FQDN or domain (none for `all`).
        #[arg(long)]
        pattern: Option<String>,
        /// Description.
        #[arg(long)]
        description: Option<String>,
    },
    /// Lists ACL entries.
    List,
    /// Shows one ACL entry.
    Show {
        /// Entry id.
        id: String,
    },
    /// Changes the given fields of an ACL entry.
    Update {
        /// Entry id.
        id: String,
        /// Pattern kind.
        #[arg(long, value_enum)]
        kind: Option<AclKindArg>,
        /// Pattern.
        #[arg(long)]
        pattern: Option<String>,
        /// Description.
        #[arg(long)]
        description: Option<String>,
        /// Expected revision (default: the one read).
        #[arg(long)]
        revision: Option<u64>,
    },
    /// Removes an ACL entry.
    Remove {
        /// Entry id.
        id: String,
        /// Expected revision.
        #[arg(long)]
        revision: Option<u64>,
    },
}

/// SIP transport on the command line.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportArg {
    /// TLS over TCP.
    Tls,
    /// Plain TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl From<TransportArg> for Transport {
    fn from(a: TransportArg) -> Self {
        match a {
            TransportArg::Tls => Transport::Tls,
            TransportArg::Tcp => Transport::Tcp,
            TransportArg::Udp => Transport::Udp,
        }
    }
}

/// Static route type on the command line.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteTypeArg {
    /// Route by domain.
    Domain,
    /// Route by user.
    User,
}

impl From<RouteTypeArg> for RouteType {
    fn from(a: RouteTypeArg) -> Self {
        match a {
            RouteTypeArg::Domain => RouteType::Domain,
            RouteTypeArg::User => RouteType::User,
        }
    }
}

/// `herald static-route ...`
#[derive(Subcommand, Debug, Clone)]
pub enum StaticRouteCmd {
    /// Adds a static route.
    Add {
        /// Route id.
        id: String,
        /// Destination in reversed form, e.g. `.com.example.*`.
        #[arg(long, required_unless_present = "domain", conflicts_with = "domain")]
        pattern: Option<String>,
        /// Destination domain, e.g. `example.com` (becomes `.com.example.*`).
        #[arg(long)]
        domain: Option<String>,
        /// Next hop: FQDN, host name or IP address.
        #[arg(long)]
        next_hop: String,
        /// Next hop port.
        #[arg(long, default_value_t = 5061)]
        port: u32,
        /// Transport to the next hop.
        #[arg(long, value_enum, default_value_t = TransportArg::Tls)]
        transport: TransportArg,
        /// Route type.
        #[arg(long, value_enum, default_value_t = RouteTypeArg::Domain)]
        route_type: RouteTypeArg,
        /// Priority.
        #[arg(long, default_value_t = 0)]
        priority: u32,
        /// Weight.
        #[arg(long, default_value_t = 0)]
        weight: u32,
        /// Create the route out of service.
        #[arg(long)]
        out_of_service: bool,
        /// Create the route blocked.
        #[arg(long)]
        blocked: bool,
        /// Description.
        #[arg(long)]
        description: Option<String>,
    },
    /// Lists static routes.
    List,
    /// Shows one static route.
    Show {
        /// Route id.
        id: String,
    },
    /// Changes the given fields of a static route.
    Update {
        /// Route id.
        id: String,
        /// Destination in reversed form.
        #[arg(long, conflicts_with = "domain")]
        pattern: Option<String>,
        /// Destination domain (becomes the reversed pattern).
        #[arg(long)]
        domain: Option<String>,
        /// Next hop.
        #[arg(long)]
        next_hop: Option<String>,
        /// Next hop port.
        #[arg(long)]
        port: Option<u32>,
        /// Transport.
        #[arg(long, value_enum)]
        transport: Option<TransportArg>,
        /// Route type.
        #[arg(long, value_enum)]
        route_type: Option<RouteTypeArg>,
        /// Priority.
        #[arg(long)]
        priority: Option<u32>,
        /// Weight.
        #[arg(long)]
        weight: Option<u32>,
        /// In service.
        #[arg(long, value_name = "true|false")]
        in_service: Option<bool>,
        /// Blocked.
        #[arg(long, value_name = "true|false")]
        blocked: Option<bool>,
        /// Description.
        #[arg(long)]
        description: Option<String>,
        /// Expected revision (default: the one read).
        #[arg(long)]
        revision: Option<u64>,
    },
    /// Removes a static route.
    Remove {
        /// Route id.
        id: String,
        /// Expected revision.
        #[arg(long)]
        revision: Option<u64>,
    },
}

/// Verbs of objects that only have a name and a description (`tls-peer`, `email-domain`).
#[derive(Subcommand, Debug, Clone)]
pub enum NamedCmd {
    /// Adds one.
    Add {
        /// Name.
        name: String,
        /// Description.
        #[arg(long)]
        description: Option<String>,
    },
    /// Lists them.
    List,
    /// Shows one.
    Show {
        /// Name.
        name: String,
    },
    /// Changes the description.
    Update {
        /// Name.
        name: String,
        /// Description.
        #[arg(long)]
        description: Option<String>,
        /// Expected revision (default: the one read).
        #[arg(long)]
        revision: Option<u64>,
    },
    /// Removes one.
    Remove {
        /// Name.
        name: String,
        /// Expected revision.
        #[arg(long)]
        revision: Option<u64>,
    },
}

/// `herald tls-peer ...`: expected TLS peer subject names.
pub type TlsPeerCmd = NamedCmd;
/// `herald email-domain ...`
pub type EmailDomainCmd = NamedCmd;

/// Calendar backend kind on the command line.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum CalendarKindArg {
    /// Exchange Web Services.
    Ews,
    /// Exchange WebDAV.
    Webdav,
    /// CalDAV.
    Caldav,
}

impl From<CalendarKindArg> for CalendarKind {
    fn from(a: CalendarKindArg) -> Self {
        match a {
            CalendarKindArg::Ews => CalendarKind::ExchangeEws,
            CalendarKindArg::Webdav => CalendarKind::ExchangeWebdav,
            CalendarKindArg::Caldav => CalendarKind::Caldav,
        }
    }
}

/// Calendar authentication method on the command line.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum CalendarAuthArg {
    /// NTLM; Herald answers with NTLMv2 responses only (NTLMv1 is never sent).
    Ntlm,
    /// NTLMv2 (same as ntlm).
    Ntlmv2,
    /// HTTP Basic.
    Basic,
}

impl From<CalendarAuthArg> for CalendarAuthMethod {
    fn from(a: CalendarAuthArg) -> Self {
        match a {
            CalendarAuthArg::Ntlm => CalendarAuthMethod::Ntlm,
            CalendarAuthArg::Ntlmv2 => CalendarAuthMethod::Ntlmv2,
            CalendarAuthArg::Basic => CalendarAuthMethod::Basic,
        }
    }
}

/// `herald calendar-gateway ...`
#[derive(Subcommand, Debug, Clone)]
pub enum CalendarCmd {
    /// Adds a calendar gateway.
    Add {
        /// Gateway id.
        id: String,
        /// Backend kind.
        #[arg(long, value_enum)]
        kind: CalendarKindArg,
        /// Server host (FQDN recommended; must match its certificate).
        #[arg(long)]
        host: String,
        /// Server port.
        #[arg(long, default_value_t = 443)]
        port: u32,
        /// URL path.
        #[arg(long)]
        path: Option<String>,
        /// Keep the gateway out of the pool for new user assignments.
        #[arg(long)]
        not_eligible: bool,
        /// Description.
        #[arg(long)]
        description: Option<String>,
    },
    /// Lists calendar gateways.
    List,
    /// Shows one calendar gateway.
    Show {
        /// Gateway id.
        id: String,
    },
    /// Changes the given fields of a calendar gateway.
    Update {
        /// Gateway id.
        id: String,
        /// Backend kind.
        #[arg(long, value_enum)]
        kind: Option<CalendarKindArg>,
        /// Server host.
        #[arg(long)]
        host: Option<String>,
        /// Server port.
        #[arg(long)]
        port: Option<u32>,
        /// URL path.
        #[arg(long)]
        path: Option<String>,
        /// Member of the pool for new assignments.
        #[arg(long, value_name = "true|false")]
        eligible: Option<bool>,
        /// Description.
        #[arg(long)]
        description: Option<String>,
        /// Expected revision (default: the one read).
        #[arg(long)]
        revision: Option<u64>,
    },
    /// Removes a calendar gateway.
    Remove {
        /// Gateway id.
        id: String,
        /// Expected revision.
        #[arg(long)]
        revision: Option<u64>,
    },
    /// Sets the credentials shared by every gateway of one kind.
    SetCredentials {
        /// Backend kind.
        #[arg(long, value_enum)]
        kind: CalendarKindArg,
        /// Service account (`user@domain` or `DOMAIN\user`).
        #[arg(long)]
        account: String,
        /// The account's password.
        #[command(flatten)]
        password: CalendarPasswordArgs,
        /// Authentication method (default: ntlm for Exchange, basic for CalDAV).
        #[arg(long, value_enum)]
        auth: Option<CalendarAuthArg>,
        /// EWS: do not send the ExchangeImpersonation header (the account then needs free/busy
        /// read rights on every mailbox instead of the ApplicationImpersonation role).
        #[arg(long)]
        no_impersonation: bool,
        /// Expected revision.
        #[arg(long)]
        revision: Option<u64>,
    },
    /// Shows the credentials of one kind (password masked).
    ShowCredentials {
        /// Backend kind.
        #[arg(long, value_enum)]
        kind: CalendarKindArg,
    },
    /// Each gateway as the node answering sees it: reachable, certificate, authenticated,
    /// users assigned, last error and when.
    Status,
}
