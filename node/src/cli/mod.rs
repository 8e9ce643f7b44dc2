//! The `herald` admin command-line client.
//!
//! `herald [--admin IP:PORT] [-o table|json] <object> <verb> ...` talks to the admin gRPC API
//! ([`herald_grpc::admin`]) of any node. Layout:
//!
//! - this file: global options, the top-level [`AdminCommand`], [`run`], connection and errors;
//! - `args` / `args_singletons`: the clap definitions of each object's verbs;
//! - `objects`: pure conversion of a parsed command into a `plan::Plan` of RPCs and edits;
//! - `plan`: the plan type and its execution against an `AdminClient`;
//! - `render`: JSON and table rendering of replies.
//!
//! Flow: clap parses → `objects::plan` (no I/O, unit-tested) → `plan::execute` (RPCs) →
//! `render` builds the text → [`run`] prints it.

mod args;
mod args_singletons;
pub mod audit;
mod objects;
mod plan;
mod render;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_render;
#[cfg(test)]
mod tests_server;
pub mod troubleshoot;

pub use args::{
    AclCmd, AclKindArg, CalendarAuthArg, CalendarCmd, CalendarKindArg, CalendarPasswordArgs,
    DomainCmd, EmailDomainCmd, PasswordArgs, RouteTypeArg, SipDomainCmd, SipTypeArg,
    StaticRouteCmd, TlsPeerCmd, TransportArg, UserCmd,
};
pub use args_singletons::{
    ClusterCmd, EmailFederationCmd, FederationRoutingCmd, LogCmd, PolicyActionArg,
    PolicyDirectionArg, PolicyExceptionCmd, RoutingNodeCmd, SecurityModeArg, XmppFederationCmd,
    XmppPolicyCmd,
};

use herald_grpc::admin::admin_client::AdminClient;
use std::time::Duration;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Status};

/// Connect timeout of the admin API connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Deadline of each admin API call.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How command output is rendered.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputFormat {
    /// Aligned columns with a header row.
    #[default]
    Table,
    /// JSON: objects with the .proto field names, arrays for lists.
    Json,
}

/// Options shared by every admin command (accepted before or after the verb).
#[derive(clap::Args, Debug, Clone)]
pub struct GlobalOpts {
    /// Admin API address (IP:PORT) of any node.
    #[arg(
        long,
        global = true,
        env = "HERALD_ADMIN",
        default_value = "127.0.0.1:7471"
    )]
    pub admin: String,
    /// Output format.
    #[arg(short = 'o', long = "output", global = true, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
    /// Bearer token sent with every admin call.
    #[arg(
        long,
        global = true,
        env = "HERALD_ADMIN_TOKEN",
        hide_env_values = true
    )]
    pub admin_token: Option<String>,
    /// CA certificate (PEM) that signed the admin API's server certificate: connects over TLS.
    #[arg(long, global = true, env = "HERALD_ADMIN_CA")]
    pub admin_ca: Option<std::path::PathBuf>,
    /// Client certificate (PEM) for an admin API that requires one (with --admin-key).
    #[arg(long, global = true, env = "HERALD_ADMIN_CERT", requires = "admin_key")]
    pub admin_cert: Option<std::path::PathBuf>,
    /// Private key (PEM) of --admin-cert.
    #[arg(long, global = true, env = "HERALD_ADMIN_KEY", requires = "admin_cert")]
    pub admin_key: Option<std::path::PathBuf>,
    /// Server name to check in the admin API's certificate (default: the host of --admin).
    #[arg(long, global = true, env = "HERALD_ADMIN_SERVER_NAME")]
    pub admin_server_name: Option<String>,
}

/// TLS settings of the admin connection.
#[derive(Debug, Clone, Default)]
pub struct AdminTls {
    pub ca: Option<std::path::PathBuf>,
    pub cert: Option<std::path::PathBuf>,
    pub key: Option<std::path::PathBuf>,
    pub server_name: Option<String>,
}

impl GlobalOpts {
    /// The TLS settings, when any TLS flag is given.
    pub fn tls(&self) -> Option<AdminTls> {
        if self.admin_ca.is_none() && self.admin_cert.is_none() {
            return None;
        }
        Some(AdminTls {
            ca: self.admin_ca.clone(),
            cert: self.admin_cert.clone(),
            key: self.admin_key.clone(),
            server_name: self.admin_server_name.clone(),
        })
    }
}

/// The admin client's objects; each takes a verb.
#[derive(clap::Subcommand, Debug, Clone)]
pub enum AdminCommand {
    /// Cluster membership and status.
    #[command(subcommand)]
    Cluster(ClusterCmd),
    /// Local (presence) domains.
    #[command(subcommand)]
    Domain(DomainCmd),
    /// Users.
    #[command(subcommand)]
    User(UserCmd),
    /// SIP federated domains.
    #[command(subcommand)]
    SipDomain(SipDomainCmd),
    /// Incoming SIP access control entries.
    #[command(subcommand)]
    Acl(AclCmd),
    /// SIP static routes.
    #[command(subcommand)]
    StaticRoute(StaticRouteCmd),
    /// Expected TLS peer subjects.
    #[command(subcommand)]
    TlsPeer(TlsPeerCmd),
    /// XMPP federation settings (singleton).
    #[command(subcommand)]
    XmppFederation(XmppFederationCmd),
    /// XMPP federation policy and its exceptions (singleton).
    #[command(subcommand)]
    XmppPolicy(XmppPolicyCmd),
    /// Email for federation switch (singleton).
    #[command(subcommand)]
    EmailFederation(EmailFederationCmd),
    /// Email domains.
    #[command(subcommand)]
    EmailDomain(EmailDomainCmd),
    /// SIP routing node and its fallbacks (singleton).
    #[command(subcommand)]
    RoutingNode(RoutingNodeCmd),
    /// Federation routing parameters (singleton).
    #[command(subcommand)]
    FederationRouting(FederationRoutingCmd),
    /// Calendar gateways and their shared credentials.
    #[command(subcommand)]
    CalendarGateway(CalendarCmd),
    /// Log levels per component, changed at run time.
    #[command(subcommand)]
    Log(LogCmd),
    /// The audit log of admin changes (who, what, when), newest first.
    #[command(subcommand)]
    Audit(audit::AuditCmd),
    /// Checks the cluster, its certificates, DNS and federation routes; exit status 1 when
    /// any check fails.
    Troubleshoot(troubleshoot::TroubleshootArgs),
}

/// Errors of the admin client.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The server answered with a gRPC error status.
    #[error("{code}: {message}")]
    Rpc {
        /// The status code name, e.g. `INVALID_ARGUMENT`.
        code: &'static str,
        /// The server's message.
        message: String,
    },
    /// `--admin` is not a usable address.
    #[error("invalid admin address {addr:?}")]
    BadAddress {
        /// The address given.
        addr: String,
        /// Why it was rejected.
        #[source]
        source: tonic::transport::Error,
    },
    /// The admin API could not be reached.
    #[error("cannot connect to the admin API at {addr}")]
    Connect {
        /// The address given.
        addr: String,
        /// The transport error.
        #[source]
        source: tonic::transport::Error,
    },
    /// The admin token cannot be sent as a header value.
    #[error("the admin token must be printable ASCII")]
    BadToken,
    /// A command-line value is not acceptable.
    #[error("{0}")]
    Usage(String),
    /// A password could not be read from standard input.
    #[error("reading the password from standard input")]
    Stdin(#[source] std::io::Error),
    /// A reply lacked the object it should carry.
    #[error("the server reply carries no object")]
    MissingObject,
    /// A reply carried an object of another kind than asked for.
    #[error("the server returned a {got} object where a {want} was expected")]
    WrongKind {
        /// The kind asked for.
        want: &'static str,
        /// The kind received.
        got: &'static str,
    },
}

impl From<Status> for CliError {
    fn from(s: Status) -> Self {
        CliError::Rpc {
            code: code_name(s.code()),
            message: s.message().to_string(),
        }
    }
}

/// The canonical upper-case name of a gRPC status code (`INVALID_ARGUMENT`).
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// Adds `authorization: Bearer <token>` to every call when a token is configured.
#[derive(Clone, Debug, Default)]
pub struct BearerAuth {
    header: Option<MetadataValue<Ascii>>,
}

impl BearerAuth {
    /// An interceptor for `token` (none: calls go out without the header).
    pub fn new(token: Option<&str>) -> Result<Self, CliError> {
        let header = match token {
            None => None,
            Some(t) => {
                let mut v = MetadataValue::try_from(format!("Bearer {t}"))
                    .map_err(|_| CliError::BadToken)?;
                v.set_sensitive(true);
                Some(v)
            }
        };
        Ok(BearerAuth { header })
    }
}

impl tonic::service::Interceptor for BearerAuth {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        if let Some(v) = &self.header {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

/// The admin client type used by the CLI.
pub type Client = AdminClient<InterceptedService<Channel, BearerAuth>>;

/// Connects to the admin API at `admin` (`IP:PORT`).
pub async fn connect(
    admin: &str,
    token: Option<&str>,
    tls: Option<&AdminTls>,
) -> Result<Client, CliError> {
    let auth = BearerAuth::new(token)?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut endpoint = Endpoint::from_shared(format!("{scheme}://{admin}"))
        .map_err(|source| CliError::BadAddress {
            addr: admin.to_string(),
            source,
        })?
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT);
    if let Some(tls) = tls {
        let read = |p: &std::path::PathBuf| {
            std::fs::read(p).map_err(|e| CliError::Usage(format!("reading {}: {e}", p.display())))
        };
        let host = admin
            .rsplit_once(':')
            .map(|(h, _)| h.trim_matches(['[', ']']))
            .unwrap_or(admin);
        let mut cfg = tonic::transport::ClientTlsConfig::new()
            .domain_name(tls.server_name.clone().unwrap_or_else(|| host.to_string()));
        if let Some(ca) = &tls.ca {
            cfg = cfg.ca_certificate(tonic::transport::Certificate::from_pem(read(ca)?));
        }
        if let (Some(cert), Some(key)) = (&tls.cert, &tls.key) {
            cfg = cfg.identity(tonic::transport::Identity::from_pem(
                read(cert)?,
                read(key)?,
            ));
        }
        endpoint = endpoint
            .tls_config(cfg)
            .map_err(|source| CliError::BadAddress {
                addr: admin.to_string(),
                source,
            })?;
    }
    let channel = endpoint
        .connect()
        .await
        .map_err(|source| CliError::Connect {
            addr: admin.to_string(),
            source,
        })?;
    Ok(AdminClient::with_interceptor(channel, auth))
}

/// Text a command produced: what goes to stdout, and warnings for stderr.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Output {
    /// Rendered result (ends with a newline when non-empty).
    pub stdout: String,
    /// Lines for stderr (`warning: ...`), without newlines.
    pub stderr: Vec<String>,
    /// Failed items (troubleshooter checks, nodes that refused a change); when non-zero the
    /// exit status is too.
    pub failures: usize,
}

/// Runs one admin command and returns its rendered output without printing it.
pub async fn execute(global: &GlobalOpts, cmd: AdminCommand) -> Result<Output, CliError> {
    let tls = global.tls();
    if let AdminCommand::Troubleshoot(args) = cmd {
        let mut client =
            connect(&global.admin, global.admin_token.as_deref(), tls.as_ref()).await?;
        return troubleshoot::execute(&mut client, args, global.output).await;
    }
    if let AdminCommand::Audit(cmd) = cmd {
        let req = audit::request(&cmd)?;
        let mut client =
            connect(&global.admin, global.admin_token.as_deref(), tls.as_ref()).await?;
        return audit::execute(&mut client, req, global.output).await;
    }
    // Everything that can fail locally (bad flags, stdin passwords) fails before connecting.
    let plan = objects::plan(cmd, &mut std::io::stdin().lock())?;
    let mut client = connect(&global.admin, global.admin_token.as_deref(), tls.as_ref()).await?;
    plan::execute(&mut client, plan, global.output).await
}

/// Runs one admin command and prints its output; gRPC errors carry the server's message.
pub async fn run(global: &GlobalOpts, cmd: AdminCommand) -> anyhow::Result<()> {
    let out = execute(global, cmd).await?;
    for line in &out.stderr {
        eprintln!("{line}");
    }
    print!("{}", out.stdout);
    if out.failures > 0 {
        anyhow::bail!(
            "{} (see above)",
            plural(out.failures, "failure", "failures")
        );
    }
    Ok(())
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}
